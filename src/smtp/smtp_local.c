/*
 * smtp_local.c - local submission, the daemon's side of `relevo sendmail`: a
 * unix stream socket (local_submit.socket) on which an ordinary SMTP session
 * runs, already authenticated as the account the peer's uid maps to.
 *
 * Security model: the socket is mode 0666 in a directory every user can
 * search, so any local process can connect. Who it is comes from the kernel:
 * SO_PEERCRED gives the uid of the process that called connect(), which a
 * caller cannot forge (only root could, and root is trusted anyway). The uid's
 * user name is looked up (getpwuid_r) and must be a key of local_submit.users;
 * anyone else is refused before the greeting's 220. File modes only decide
 * who can reach the door; the uid decides who may come in. Everything after
 * the greeting is the SMTP path: sender and From: domains the account owns,
 * suppression, DKIM signing, limits, and 250 only once the message is on disk.
 *
 * Failure model: a socket that cannot be bound stops the daemon at start (as
 * a TCP listener does); a peer that cannot be identified is refused with a
 * reply that names the reason, and the refusal is logged by the session.
 */
#include "smtp/smtp_int.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "store/store.h"

/* local_warn_unreachable - say so if a directory above the socket is closed to
 * other users: they would get EACCES instead of a session. */
static void local_warn_unreachable(const char *path)
{
	char dir[PATH_MAX];
	struct stat st;
	str_lcpy(dir, path, sizeof dir);
	for (char *slash = strrchr(dir, '/'); slash != NULL && slash != dir;
	     slash = strrchr(dir, '/')) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && !(st.st_mode & S_IXOTH)) {
			log_warn("event=local_submit_unreachable socket=%s dir=%s mode=%04o "
			         "hint=\"other users cannot reach the socket: chmod o+x %s\"",
			         path, dir, (unsigned)(st.st_mode & 07777), dir);
			return;
		}
	}
}

/* local_prepare_dir - the socket's directory: created 0755 if missing. */
static enum rc local_prepare_dir(const char *path)
{
	char dir[PATH_MAX];
	struct stat st;
	str_lcpy(dir, path, sizeof dir);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return RC_OK;
	*slash = '\0';
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? RC_OK : RC_INVALID;
	if (file_mkdir_p(dir, 0755) != RC_OK || chmod(dir, 0755) != 0)
		return RC_IO;
	return RC_OK;
}

/* smtp_local_bind - see smtp_int.h. A stale socket (a crash) is replaced; the
 * spool lock, taken before, shows this daemon owns data_dir. Anything else at
 * the path is left alone and refused. */
evutil_socket_t smtp_local_bind(const struct conf *conf)
{
	const char *path = conf->local_submit.socket;
	const struct conf_listen *l = &conf->local_submit.listen;
	struct stat st;
	const char *what = "mkdir";
	evutil_socket_t fd = -1;
	if (local_prepare_dir(path) != RC_OK)
		goto fail;
	what = "exists and is not a socket";
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		goto fail;
	}
	what = "bind";
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (const struct sockaddr *)&l->sa, l->salen) != 0)
		goto fail;
	what = "chmod";
	if (chmod(path, 0666) != 0)
		goto fail;
	what = "listen";
	if (listen(fd, 1024) != 0)
		goto fail;
	local_warn_unreachable(path);
	return fd;
fail:;
	int e = errno;
	log_err("event=listen_failed address=%s mode=local step=\"%s\" error=\"%s\"", path, what,
	        strerror(e));
	if (fd >= 0)
		close(fd);
	errno = e;
	return -1;
}

/* smtp_local_unlink - remove the socket: with the daemon gone, a client gets
 * ENOENT at once. */
void smtp_local_unlink(const struct conf *conf)
{
	struct stat st;
	const char *path = conf->local_submit.socket;
	if (path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

/* local_user_name - the user name of uid, into name; false if it has none. */
static bool local_user_name(uid_t uid, char *name, size_t namesz)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || res == NULL)
		return false;
	str_lcpy(name, res->pw_name, namesz);
	return true;
}

/* smtp_local_identify - see smtp_int.h. Replies are greeting refusals (RFC 5321
 * 3.1: 554 instead of 220); their enhanced codes tell `relevo sendmail` which
 * exit status to use: 5.7.1 not allowed (EX_NOPERM), 5.3.5 the configuration
 * names an account that does not exist (EX_CONFIG), 4.3.0 try later. */
enum rc smtp_local_identify(struct smtp_server *srv, const struct conf *conf, evutil_socket_t fd,
                            long *uid, struct store_user **user, struct smtp_reply *r, char *text,
                            size_t textsz)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	char name[256] = "";
	*uid = -1;
	*user = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
		snprintf(text, textsz, "%s Cannot tell who you are (SO_PEERCRED: %s)",
		         conf->hostname, strerror(errno));
		*r = (struct smtp_reply){421, "4.3.0", text};
		return RC_TEMPFAIL;
	}
	*uid = (long)cred.uid;
	const char *account =
	    local_user_name(cred.uid, name, sizeof name) ? conf_local_account(conf, name) : NULL;
	if (account == NULL) {
		snprintf(text, textsz,
		         "%s Local submission refused: uid %ld (%s) is not in local_submit.users",
		         conf->hostname, *uid, name[0] ? name : "no user name");
		*r = (struct smtp_reply){554, "5.7.1", text};
		return RC_PERMFAIL;
	}
	enum rc rc = store_user_get(srv->store, account, user);
	if (rc == RC_NOTFOUND) {
		snprintf(text, textsz,
		         "%s Local submission refused: local_submit.users maps %s to account "
		         "%s, which does not exist",
		         conf->hostname, name, account);
		*r = (struct smtp_reply){554, "5.3.5", text};
		return RC_PERMFAIL;
	}
	if (rc != RC_OK) {
		snprintf(text, textsz,
		         "%s Temporary failure looking up account %s, try again later",
		         conf->hostname, account);
		*r = (struct smtp_reply){421, "4.3.0", text};
		return RC_TEMPFAIL;
	}
	return RC_OK;
}
