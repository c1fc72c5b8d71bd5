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
 * main loop; commands are short (one durable spool record per message), but
 * for "reload", which is answered once the reload it asked for has finished on
 * every thread (cli_reload.c): its connection waits in ctl->waiters meanwhile.
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
#define CTL_LATER (-1)			/* a handler's status: it answers later itself */

/* A client waiting for the records of its queue command to be durable. */
struct ctl_pending {
	struct bufferevent *bev;	/* owned; NULL once the client left */
};

/* A client waiting for the outcome of a reload. */
struct ctl_waiter {
	struct ctl_waiter *next;
	struct cli_ctl *ctl;
	struct bufferevent *bev;	/* owned */
	uint64_t gen;			/* answered by the reload of this number or later */
};

struct cli_ctl {
	struct evconnlistener *listener;
	struct spool *spool;
	struct mta *mta;
	uint64_t (*reload)(void *arg);	/* starts a reload; its number (NULL: none) */
	void *reload_arg;
	struct ctl_waiter *waiters;
	struct event_base *base;
	struct bufferevent *cur;	/* the client of the command being run */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static bool ctl_path(const char *data_dir, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/control.sock", data_dir);
	return n > 0 && (size_t)n < outsz;
}

static void ctl_on_write(struct bufferevent *bev, void *arg);
static void ctl_on_event(struct bufferevent *bev, short what, void *arg);

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

/* ctl_on_pending_event - the client of a queue command left (or timed out)
 * before its answer: the answer is dropped when it comes. */
static void ctl_on_pending_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_pending *p = arg;
	(void)what;
	bufferevent_free(bev);
	p->bev = NULL;
}

/* ctl_queue_done - a queue command's records are durable: answer its client. */
static void ctl_queue_done(void *arg, int status, struct evbuffer *text)
{
	struct ctl_pending *p = arg;
	if (p->bev != NULL) {
		struct evbuffer *out = bufferevent_get_output(p->bev);
		evbuffer_add_buffer(out, text);
		evbuffer_add_printf(out, "exit %d\n", status);
		bufferevent_setcb(p->bev, NULL, ctl_on_write, ctl_on_event, NULL);
	}
	free(p);
}

/* ctl_queue - "queue SUB ARGS...": the queue command table (cli_queue.c); its
 * spool records are written off this loop and the client is answered by
 * ctl_queue_done once they are durable. */
static int ctl_queue(struct cli_ctl *ctl, int nwords, char **words, struct evbuffer *out)
{
	(void)out;
	struct ctl_pending *p = xcalloc(1, sizeof *p);
	p->bev = ctl->cur;
	bufferevent_setcb(p->bev, NULL, NULL, ctl_on_pending_event, p);
	cli_queue_ctl(ctl->spool, ctl->mta, ctl->base, nwords - 1, words + 1, ctl_queue_done, p);
	return CTL_LATER;
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

/* ctl_waiter_unlink - take w out of its ctl's list. */
static void ctl_waiter_unlink(struct ctl_waiter *w)
{
	for (struct ctl_waiter **pp = &w->ctl->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

/* ctl_on_waiter_event - a waiting client's socket failed. */
static void ctl_on_waiter_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_waiter *w = arg;
	ctl_waiter_unlink(w);
	bufferevent_free(w->bev);
	free(w);
}

/* ctl_cmd_reload - "reload": ask the daemon to re-read its config; the client
 * is answered by cli_ctl_reload_done. */
static void ctl_cmd_reload(struct cli_ctl *ctl, struct bufferevent *bev)
{
	if (ctl->reload == NULL) {
		evbuffer_add_printf(bufferevent_get_output(bev), "reload is not available\nexit 1\n");
		bufferevent_setcb(bev, NULL, ctl_on_write, ctl_on_event, ctl);
		return;
	}
	struct ctl_waiter *w = xcalloc(1, sizeof *w);
	w->ctl = ctl;
	w->bev = bev;
	w->next = ctl->waiters;
	ctl->waiters = w;
	bufferevent_setcb(bev, NULL, NULL, ctl_on_waiter_event, w);
	log_info("event=reload_requested via=control");
	w->gen = ctl->reload(ctl->reload_arg); /* never answers before returning */
}

/* cli_ctl_set_reload - the daemon's reload: fn starts one (or notes that one
 * more is wanted) and returns the number of the reload that will answer. */
void cli_ctl_set_reload(struct cli_ctl *ctl, uint64_t (*fn)(void *arg), void *arg)
{
	ctl->reload = fn;
	ctl->reload_arg = arg;
}

/* cli_ctl_reload_done - reload number gen has finished: answer every client
 * waiting for it or an earlier one with text and status. */
void cli_ctl_reload_done(struct cli_ctl *ctl, uint64_t gen, int status, const char *text)
{
	if (ctl == NULL)
		return;
	struct ctl_waiter **pp = &ctl->waiters;
	while (*pp) {
		struct ctl_waiter *w = *pp;
		if (w->gen > gen) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		struct evbuffer *out = bufferevent_get_output(w->bev);
		evbuffer_add_printf(out, "%sexit %d\n", text, status);
		bufferevent_setcb(w->bev, NULL, ctl_on_write, ctl_on_event, ctl);
		free(w);
	}
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
	bufferevent_disable(bev, EV_READ);
	if (strcmp(line, "reload") == 0) {
		free(line);
		ctl_cmd_reload(ctl, bev);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(bev);
	ctl->cur = bev;
	int status = ctl_run(ctl, line, out);
	ctl->cur = NULL;
	free(line);
	if (status == CTL_LATER)
		return; /* bev may be answered and freed already */
	evbuffer_add_printf(out, "exit %d\n", status);
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
	ctl->base = base;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!ctl_path(c->data_dir, ctl->path, sizeof ctl->path)) {
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
	while (ctl->waiters) {
		struct ctl_waiter *w = ctl->waiters;
		ctl->waiters = w->next;
		bufferevent_free(w->bev);
		free(w);
	}
	evconnlistener_free(ctl->listener);
	unlink(ctl->path);
	free(ctl);
}

/* ctl_exchange - send line, read the whole answer into buf (NUL-terminated);
 * the connect error in *err (0 if it connected). false if no answer came. */
static bool ctl_exchange(const char *data_dir, const char *line, char *buf, size_t bufsz,
			 int *err, char *path, size_t pathsz)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	*err = 0;
	buf[0] = '\0';
	if (!ctl_path(data_dir, sun.sun_path, sizeof sun.sun_path)) {
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
	if (!ctl_exchange(c->data_dir, line, buf, sizeof buf, &err, path, sizeof path))
		return false;
	char *last = ctl_last_exit(buf);
	return last != NULL && strtol(last + 5, NULL, 10) == 0;
}

/* cli_ctl_request - send one command line to the running daemon's control socket,
 * print its answer; returns the exit status. */
int cli_ctl_request(const struct conf *c, const char *line)
{
	return cli_ctl_request_dir(c->data_dir, line,
				   "the spool is locked by a running daemon, but its control "
				   "socket");
}

/* cli_ctl_request_dir - the same for the daemon serving data_dir; when it does
 * not answer, says "relevo: WHO PATH does not answer: REASON". */
int cli_ctl_request_dir(const char *data_dir, const char *line, const char *who)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)] = "";
	char *buf = xmalloc(CTL_ANSWER_MAX);
	int err;
	if (!ctl_exchange(data_dir, line, buf, CTL_ANSWER_MAX, &err, path, sizeof path)) {
		free(buf);
		if (err == ENAMETOOLONG)
			fprintf(stderr, "relevo: control socket path too long\n");
		else if (err != 0)
			fprintf(stderr, "relevo: %s %s does not answer: %s\n", who, path,
				strerror(err));
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
