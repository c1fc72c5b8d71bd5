/*
 * cli_run_as.c - the CLI works as the daemon's user.
 *
 * Every command that reads or writes data_dir (domain, user, apikey, queue, ...)
 * loads its configuration through cli_load_conf(), which ends here: when the
 * command is run as root and run_as is set, it makes sure data_dir exists and
 * belongs to run_as, then becomes that user (groups, gid, uid) for good, before
 * it opens anything in data_dir. So every file it creates there (the store and
 * SQLite's -wal and -shm files, key directories and PEM files, spool records,
 * the spool lock) is owned by the user the daemon runs as, with the modes the
 * daemon expects (umask 077), without chown calls scattered through the
 * commands and without missing a file SQLite creates behind our back. Switching
 * once, early, in one place is the whole design; see docs/decisions.md.
 *
 * Run by any other user the command runs as that user (a run_as user runs the
 * CLI as itself). serve and check-config do not come here: serve drops
 * privileges itself once it has bound its ports.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"

/* run_as_hand_over - create data_dir if needed, owned by uid:gid, mode 0700 (what
 * the daemon makes of it at start). Only data_dir itself: its contents are the
 * daemon's already, and walking a tree another user can change, as root, is how
 * chown races are made. */
static bool run_as_hand_over(const struct conf *c, uid_t uid, gid_t gid)
{
	if (file_mkdir_p(c->data_dir, 0700) != RC_OK) {
		fprintf(stderr, "relevo: cannot create %s: %s\n", c->data_dir, strerror(errno));
		return false;
	}
	int fd = open(c->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "relevo: cannot open %s: %s\n", c->data_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool ok = true;
	if ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) != 0)
		ok = false;
	if (ok && (st.st_mode & 077) && fchmod(fd, 0700) != 0)
		ok = false;
	if (!ok)
		fprintf(stderr, "relevo: cannot hand %s over to %s: %s\n", c->data_dir, c->run_as,
		        strerror(errno));
	close(fd);
	return ok;
}

/* cli_become_run_as - when root and run_as is set: data_dir handed over, then
 * the process becomes run_as for good. false (said on stderr) on failure. */
bool cli_become_run_as(const struct conf *c)
{
	umask(077);
	if (c->run_as == NULL || geteuid() != 0)
		return true;
	errno = 0;
	struct passwd *pw = getpwnam(c->run_as);
	if (pw == NULL) {
		fprintf(stderr, "relevo: run_as: no user '%s'%s%s\n", c->run_as, errno ? ": " : "",
		        errno ? strerror(errno) : "");
		return false;
	}
	if (pw->pw_uid == 0)
		return true;
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	if (!run_as_hand_over(c, uid, gid))
		return false;
	if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
		fprintf(stderr, "relevo: cannot become %s: %s\n", c->run_as, strerror(errno));
		return false;
	}
	if (setuid(0) == 0) {
		fprintf(stderr, "relevo: could regain root after becoming %s\n", c->run_as);
		return false;
	}
	if (access(c->data_dir, R_OK | W_OK | X_OK) != 0) {
		fprintf(stderr,
		        "relevo: %s cannot use %s: %s (every directory above it must be "
		        "searchable by that user)\n",
		        c->run_as, c->data_dir, strerror(errno));
		return false;
	}
	return true;
}
