/*
 * http_guard.c - what stands in front of evhttp: the API's listening sockets,
 * which pause instead of spinning when accept() fails for want of descriptors.
 *
 * evhttp's own listeners (evhttp_bind_socket) have no error callback: on EMFILE
 * the listening socket stays readable, libevent logs "Error from accept() call"
 * and retries at once, forever (100 % CPU, the log grows by tens of MB/s). Here
 * relevo creates the evconnlistener itself, hands it to evhttp
 * (evhttp_bind_listener: evhttp takes over its accept callback and frees it with
 * the bound socket) and installs an error callback that disables it for
 * HTTP_ACCEPT_PAUSE_MS, logging once per HTTP_ACCEPT_LOG_MS at most with the
 * count of failures in between.
 *
 * Threads: everything runs on the API thread (the state below is that thread's).
 */
#include "http/http_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

/* The accept failures' log state (API thread only). */
static struct {
	int64_t last_log;  /* time_mono_ms of the last accept_failed line */
	uint64_t unlogged; /* failures since */
} http_accept_errs;

static void http_guard_relisten(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

/* http_guard_on_accept_error - pause the listener on descriptor or memory
 * exhaustion; log at most once per HTTP_ACCEPT_LOG_MS. */
static void http_guard_on_accept_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = time_mono_ms();
	http_accept_errs.unlogged++;
	if (http_accept_errs.last_log == 0 ||
	    now - http_accept_errs.last_log >= HTTP_ACCEPT_LOG_MS) {
		log_warn("event=accept_failed what=http error=\"%s\" failures=%llu pause_ms=%d",
		         evutil_socket_error_to_string(err),
		         (unsigned long long)http_accept_errs.unlogged, HTTP_ACCEPT_PAUSE_MS);
		http_accept_errs.last_log = now;
		http_accept_errs.unlogged = 0;
	}
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		evconnlistener_disable(l);
		struct timeval tv = {0, HTTP_ACCEPT_PAUSE_MS * 1000};
		event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, http_guard_relisten, l,
		                &tv);
	}
}

/* http_guard_listen - hand the bound socket fd of l to evhttp (it owns fd then,
 * also on failure). */
struct evhttp_bound_socket *http_guard_listen(struct http_server *h, const struct conf_listen *l,
					      evutil_socket_t fd)
{
	struct evconnlistener *lev = NULL;
	/* backlog 0: the socket already listens; no callback until evhttp sets its own */
	if (fd >= 0)
		lev = evconnlistener_new(h->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (lev == NULL) {
		log_err("event=listen_failed address=%s what=http error=\"%s\"", l->address,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct evhttp_bound_socket *s = evhttp_bind_listener(h->http, lev);
	if (s == NULL) {
		evconnlistener_free(lev);
		return NULL;
	}
	evconnlistener_set_error_cb(lev, http_guard_on_accept_error);
	return s;
}
