/*
 * cli_ctl.c - the daemon's control socket (data_dir/control.sock, owner-only)
 * and its client.
 *
 * Operators change the queue of a running daemon through it, since only the
 * daemon may write its spool. Protocol: the client sends one command line of
 * blank-separated words ("ping"; "status [--json]": cli_status.c; "dkim
 * changed": `relevo domain` changed keys, reload them now; "queue delete ID
 * ID...", "queue flush --all --older-than 2h", ...: the argument words of the
 * CLI, parsed again here by the same queue command table, cli_queue.c); the
 * daemon answers with text lines and a last line "exit N", N being the exit
 * status the client should return, then closes. The daemon side runs on the
 * main loop; commands are short (one durable spool record per message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dkim/dkim.h"
#include "mta/mta.h"
#include "spool/spool.h"

#define CTL_LINE_MAX 24576		/* a command line: QUEUE_IDS_MAX ids fit */
#define CTL_WORDS_MAX 1100		/* words of one command line */
#define CTL_ANSWER_MAX (1 << 20)	/* bytes of an answer the client reads */

struct cli_ctl {
	struct evconnlistener *listener;
	struct spool *spool;
	struct mta *mta;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static bool ctl_path(const struct conf *c, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/control.sock", c->data_dir);
	return n > 0 && (size_t)n < outsz;
}

/* ctl_ping - "ping": is the daemon there? */
static int ctl_ping(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out)
{
	evbuffer_add_printf(out, "pong\n");
	return 0;
}

/* ctl_dkim - "dkim changed": the CLI changed keys; drop the key cache now. */
static int ctl_dkim(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out)
{
	if (nwords != 2 || strcmp(words[1], "changed") != 0) {
		evbuffer_add_printf(out, "unknown command\n");
		return 2;
	}
	dkim_cache_changed();
	log_info("event=dkim_keys_changed via=control");
	evbuffer_add_printf(out, "ok\n");
	return 0;
}

/* ctl_status - "status [--json]": the report of cli_status.c. */
static int ctl_status(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out)
{
	bool json = nwords == 2 && strcmp(words[1], "--json") == 0;
	if (nwords > 2 || (nwords == 2 && !json)) {
		evbuffer_add_printf(out, "unknown command\n");
		return 2;
	}
	return cli_status_answer(ctl->spool, json, out);
}

/* ctl_queue - "queue SUB ARGS...": the queue command table (cli_queue.c). */
static int ctl_queue(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out)
{
	return cli_queue_ctl(ctl->spool, ctl->mta, nwords - 1, words + 1, out);
}

/* The commands: the first word of the line, and its handler (words[0] is it). */
static const struct {
	const char *name;
	int (*fn)(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out);
} ctl_cmds[] = {
	{"ping", ctl_ping},
	{"dkim", ctl_dkim},
	{"status", ctl_status},
	{"queue", ctl_queue},
};

/* ctl_run - split line into words, run its command writing the answer to out;
 * returns the exit status. line is modified. */
static int ctl_run(struct cli_ctl *ctl, char *line, struct evbuffer *out)
{
	char *words[CTL_WORDS_MAX];
	int n = 0;
	for (char *p = line; *p;) {
		while (*p == ' ')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (n == CTL_WORDS_MAX) {
			evbuffer_add_printf(out, "relevo: too many words in one command\n");
			return 2;
		}
		words[n++] = p;
		while (*p && *p != ' ')
			p++;
	}
	for (size_t i = 0; n > 0 && i < ARRAY_LEN(ctl_cmds); i++)
		if (strcmp(words[0], ctl_cmds[i].name) == 0)
			return ctl_cmds[i].fn(ctl, n, words, out);
	evbuffer_add_printf(out, "unknown command\n");
	return 2;
}

static void ctl_on_write(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void ctl_on_read(struct bufferevent *bev, void *arg)
{
	struct cli_ctl *ctl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CTL_LINE_MAX)
			bufferevent_free(bev);
		return;
	}
	if (n == 0 || n > CTL_LINE_MAX || strlen(line) != n) {
		free(line);
		bufferevent_free(bev);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(bev);
	int status = ctl_run(ctl, line, out);
	evbuffer_add_printf(out, "exit %d\n", status);
	free(line);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, ctl);
}

static void ctl_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	struct event_base *base = evconnlistener_get_base(l);
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	struct timeval tv = {10, 0};
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setcb(bev, ctl_on_read, NULL, ctl_on_event, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* cli_ctl_start - listen on data_dir/control.sock (mode 0600). */
struct cli_ctl *cli_ctl_start(struct event_base *base, const struct conf *c, struct spool *sp,
			      struct mta *mta)
{
	struct cli_ctl *ctl = xcalloc(1, sizeof *ctl);
	ctl->spool = sp;
	ctl->mta = mta;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!ctl_path(c, ctl->path, sizeof ctl->path)) {
		log_err("event=control_socket_failed error=\"path too long\"");
		free(ctl);
		return NULL;
	}
	str_lcpy(sun.sun_path, ctl->path, sizeof sun.sun_path);
	unlink(ctl->path); /* a stale socket from a crash; the spool lock proves we own it */
	mode_t old = umask(077);
	ctl->listener = evconnlistener_new_bind(base, ctl_on_accept, ctl,
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
						(struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (ctl->listener == NULL) {
		log_err("event=control_socket_failed path=%s error=\"%s\"", ctl->path,
			strerror(errno));
		free(ctl);
		return NULL;
	}
	chmod(ctl->path, 0600);
	return ctl;
}

/* cli_ctl_stop - close and remove the control socket. */
void cli_ctl_stop(struct cli_ctl *ctl)
{
	if (ctl == NULL)
		return;
	evconnlistener_free(ctl->listener);
	unlink(ctl->path);
	free(ctl);
}

/* ctl_exchange - send line, read the whole answer into buf (NUL-terminated);
 * the connect error in *err (0 if it connected). false if no answer came. */
static bool ctl_exchange(const struct conf *c, const char *line, char *buf, size_t bufsz,
			 int *err, char *path, size_t pathsz)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	*err = 0;
	buf[0] = '\0';
	if (!ctl_path(c, sun.sun_path, sizeof sun.sun_path)) {
		*err = ENAMETOOLONG;
		return false;
	}
	str_lcpy(path, sun.sun_path, pathsz);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		*err = errno;
		if (fd >= 0)
			close(fd);
		return false;
	}
	char req[CTL_LINE_MAX + 3];
	int n = snprintf(req, sizeof req, "%s\r\n", line);
	if (n < 0 || (size_t)n >= sizeof req || file_write_all(fd, req, (size_t)n) != RC_OK) {
		fprintf(stderr, "relevo: cannot send the command to the daemon%s\n",
			n > 0 && (size_t)n >= sizeof req ? ": too long" : "");
		close(fd);
		return false;
	}
	size_t len = 0;
	ssize_t r;
	while (len < bufsz - 1 && (r = read(fd, buf + len, bufsz - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	return true;
}

/* ctl_last_exit - the final "exit N" line of an answer, or NULL. */
static char *ctl_last_exit(char *buf)
{
	char *last = NULL;
	for (char *p = buf; (p = strstr(p, "exit ")) != NULL; p++)
		if (p == buf || p[-1] == '\n')
			last = p;
	return last;
}

/* cli_ctl_tell - send line quietly; true if the daemon answered exit 0. */
bool cli_ctl_tell(const struct conf *c, const char *line)
{
	char buf[1024], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int err;
	if (!ctl_exchange(c, line, buf, sizeof buf, &err, path, sizeof path))
		return false;
	char *last = ctl_last_exit(buf);
	return last != NULL && strtol(last + 5, NULL, 10) == 0;
}

/* cli_ctl_request - send one command line to the running daemon's control socket,
 * print its answer; returns the exit status. */
int cli_ctl_request(const struct conf *c, const char *line)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)] = "";
	char *buf = xmalloc(CTL_ANSWER_MAX);
	int err;
	if (!ctl_exchange(c, line, buf, CTL_ANSWER_MAX, &err, path, sizeof path)) {
		free(buf);
		if (err == ENAMETOOLONG)
			fprintf(stderr, "relevo: control socket path too long\n");
		else if (err != 0)
			fprintf(stderr, "relevo: the spool is locked by a running daemon, but its "
					"control socket %s does not answer: %s\n", path, strerror(err));
		return 1;
	}
	char *last = ctl_last_exit(buf);
	if (last == NULL) {
		fprintf(stderr, "relevo: no answer from the daemon\n");
		free(buf);
		return 1;
	}
	int status = (int)strtol(last + 5, NULL, 10);
	fwrite(buf, 1, (size_t)(last - buf), status == 0 ? stdout : stderr);
	free(buf);
	return status;
}
