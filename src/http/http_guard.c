/*
 * http_guard.c - what stands in front of evhttp: the API's listening sockets,
 * which pause instead of spinning when accept() fails for want of descriptors,
 * and a filter on every connection that enforces issue 12's limits.
 *
 * The filter (evhttp_set_bevcb: a bufferevent_filter over the socket's
 * bufferevent) sees each request's bytes before evhttp does. It holds a head
 * until it is complete (http_head_end), reads it (http_head_parse) and then
 * passes it on, or answers itself with the API's JSON error and closes:
 *   400 a malformed head (or a body on HEAD or TRACE), 501 a method evhttp does
 *   not know (or CONNECT), 411 a Transfer-Encoding (a body needs Content-Length),
 *   413 a Content-Length over http.max_request_size, 431 a head over
 *   HTTP_HEADERS_SIZE_MAX, 401 a body over HTTP_ANON_BODY_MAX without a valid
 *   key (checked before the body is read), 503 when the body would take the
 *   bodies in flight over http.memory_budget, 408 when the head is not complete
 *   within http.timeout_headers of its first byte or the body within
 *   http.timeout_body of the end of the head (totals: trickling does not extend
 *   them), 503 when the connection is over http.max_connections or
 *   http.max_connections_per_ip.
 * It passes exactly one request at a time (the body by its Content-Length) and
 * holds the next one until the answer is written; a connection with no request
 * for http.idle_timeout is closed.
 *
 * Output: evhttp's answers are written from the filter straight to the socket
 * (the underlying bufferevent's output stays empty): evhttp takes an empty
 * output as "written" and may then shut the socket down, which would cut
 * anything still buffered below it. The guard's own answer goes the same way
 * once evhttp has nothing left to write; the guard then makes evhttp drop the
 * connection (an EOF event on the filter), reads and discards what the client
 * still sends for at most HTTP_LINGER_MS (so that it sees the answer instead of
 * a reset) and closes the socket.
 *
 * Lifetimes: a struct http_conn per connection, owned by the server's list. It
 * outlives the filter (evhttp frees that; the filter's free_context tells us) and
 * owns the socket: the socket bufferevent does not close it, the guard does once
 * the filter's finalizers have run. Deferred work (timer, kick, writable) checks
 * that the filter is still alive first: evhttp may free a connection at any
 * callback, and the free_context only comes later.
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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "policy/policy.h"
#include "store/store.h"

enum http_conn_state {
	HTTP_CONN_IDLE,	   /* waiting for a request (http.idle_timeout) */
	HTTP_CONN_HEAD,	   /* reading a head (http.timeout_headers) */
	HTTP_CONN_BODY,	   /* passing a body on (http.timeout_body) */
	HTTP_CONN_BUSY,	   /* evhttp has the request; the answer is not written yet */
	HTTP_CONN_CLOSING, /* writing the guard's answer; the input is discarded */
	HTTP_CONN_GONE,	   /* the filter is freed: lingering, then closed */
	HTTP_CONN_NSTATES
};
static const char *const http_conn_state_names[] = {"idle", "head", "body", "busy", "closing",
						    "gone"};
_Static_assert(ARRAY_LEN(http_conn_state_names) == HTTP_CONN_NSTATES, "state names");

/* One client connection (see the file comment for ownership). */
struct http_conn {
	struct http_server *h;
	struct http_conn *prev, *next;	/* h->conns */
	struct bufferevent *bev;	/* the filter evhttp owns; NULL once freed */
	struct bufferevent *under;	/* the socket bufferevent (freed with it) */
	evutil_socket_t fd;		/* -1 until known; the guard closes it */
	char client[HTTP_CLIENT_MAX];	/* the peer's address ("" until known) */
	enum http_conn_state st;
	size_t scanned;			/* http_head_end's position */
	uint64_t body_left;		/* bytes of the body still to pass on */
	uint64_t charged;		/* this request's share of h->body_bytes */
	struct evbuffer *out;		/* the guard's answer */
	bool linger;			/* after the answer, read for HTTP_LINGER_MS */
	int64_t linger_until;		/* time_mono_ms */
	struct event *timer, *kick, *writable, *later, *lingering;
};

static void http_conn_enter(struct http_conn *g, enum http_conn_state st, unsigned secs);

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

/* ---- connections ---------------------------------------------------------- */

/* http_conn_alive - is the filter still there? evhttp frees it when it drops a
 * connection; freeing it clears the socket bufferevent's callbacks at once,
 * while our free_context only runs later. */
static bool http_conn_alive(struct http_conn *g)
{
	if (g->bev == NULL || g->under == NULL)
		return false;
	bufferevent_data_cb rcb = NULL;
	bufferevent_getcb(g->under, &rcb, NULL, NULL, NULL);
	return rcb != NULL;
}

static void http_conn_release(struct http_conn *g)
{
	g->h->body_bytes -= g->charged;
	g->charged = 0;
}

/* http_conn_enter - the one place a connection changes state (and its timer). */
static void http_conn_enter(struct http_conn *g, enum http_conn_state st, unsigned secs)
{
	g->st = st;
	event_del(g->timer);
	if (secs > 0) {
		struct timeval tv = {secs, 0};
		event_add(g->timer, &tv);
	}
}

/* http_conn_drop - make evhttp drop the connection (an EOF on its filter). Not
 * from inside the filter's own callbacks. */
static void http_conn_drop(struct http_conn *g)
{
	if (http_conn_alive(g))
		bufferevent_trigger_event(g->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
}

/* http_conn_write_own - write the guard's answer once evhttp's is out; drop
 * the connection when it is all written. */
static void http_conn_write_own(struct http_conn *g)
{
	if (!http_conn_alive(g) || g->fd < 0)
		return;
	if (evbuffer_get_length(bufferevent_get_output(g->bev)) > 0) {
		event_add(g->writable, NULL);
		return;
	}
	if (evbuffer_get_length(g->out) > 0 && evbuffer_write(g->out, g->fd) < 0 &&
	    errno != EAGAIN && errno != EINTR) {
		evbuffer_drain(g->out, evbuffer_get_length(g->out));
		g->linger = false;
	}
	if (evbuffer_get_length(g->out) > 0)
		event_add(g->writable, NULL);
	else
		http_conn_drop(g);
}

/* http_conn_refuse - answer status with the API's error document, then close.
 * Safe inside the filter: the writing happens from the kick. */
static void http_conn_refuse(struct http_conn *g, int status, const char *code, bool linger,
			     const char *extra, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void http_conn_refuse(struct http_conn *g, int status, const char *code, bool linger,
			     const char *extra, const char *fmt, ...)
{
	char msg[HTTP_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char *json = http_error_json(status, code, msg);
	evbuffer_add_printf(g->out,
			    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Cache-Control: no-store\r\nContent-Length: %zu\r\n%s"
			    "Connection: close\r\n\r\n%s\n",
			    status, http_reason_phrase(status), strlen(json) + 1, extra ? extra : "",
			    json);
	free(json);
	log_info("event=http_refused client=%s status=%d code=%s state=%s", g->client, status,
		 code, http_conn_state_names[g->st]);
	http_conn_release(g);
	g->linger = linger;
	http_conn_enter(g, HTTP_CONN_CLOSING, HTTP_ANSWER_MS / 1000);
	event_active(g->kick, 0, 0);
}

/* http_conn_key_ok - may a body of this head's size be read? Else refused. */
static bool http_conn_key_ok(struct http_conn *g, const struct http_head *hd)
{
	const char *key = hd->has_auth ? http_bearer_key(hd->auth) : NULL;
	struct store_user *user = NULL;
	enum rc rc = key ? policy_apikey_check(g->h->store, key, &user) : RC_PERMFAIL;
	store_user_free(user);
	if (rc == RC_OK)
		return true;
	if (rc == RC_TEMPFAIL) {
		http_conn_refuse(g, 503, "unavailable", true, "Retry-After: 5\r\n",
				 "cannot check the API key right now, try again later");
		return false;
	}
	log_info("event=http_auth_refused client=%s reason=%s before_body=yes", g->client,
		 hd->has_auth ? "bad_key" : "no_authorization");
	http_conn_refuse(g, 401, "unauthorized", true,
			 "WWW-Authenticate: Bearer realm=\"relevo\"\r\n",
			 hd->has_auth ? "the API key is not valid"
				      : "an API key is required: Authorization: Bearer KEY");
	return false;
}

/* http_conn_method_known - a method evhttp parses (CONNECT aside: not a proxy). */
static bool http_conn_method_known(const char *m)
{
	static const char *const known[] = {"GET",     "HEAD",  "POST",  "PUT",
					    "DELETE",  "OPTIONS", "TRACE", "PATCH"};
	for (size_t i = 0; i < ARRAY_LEN(known); i++)
		if (strcmp(m, known[i]) == 0)
			return true;
	return false;
}

/* http_conn_decide - a complete head: pass it on (true) or refuse it. */
static bool http_conn_decide(struct http_conn *g, const char *p, size_t n)
{
	const struct conf *c = g->h->conf;
	struct http_head hd;
	if (http_head_parse(p, n, &hd) != RC_OK) {
		http_conn_refuse(g, 400, "bad_request", true, NULL, "%s", hd.error);
		return false;
	}
	if (!http_conn_method_known(hd.method)) {
		http_conn_refuse(g, 501, "not_implemented", true, NULL,
				 "the method %s is not implemented here", hd.method);
		return false;
	}
	if (hd.length > 0 && (strcmp(hd.method, "HEAD") == 0 || strcmp(hd.method, "TRACE") == 0)) {
		http_conn_refuse(g, 400, "bad_request", true, NULL, "a %s request has no body",
				 hd.method);
		return false;
	}
	if (hd.has_te) {
		http_conn_refuse(g, 411, "length_required", true, NULL,
				 "send the body with Content-Length (Transfer-Encoding is not "
				 "accepted)");
		return false;
	}
	if (hd.length > c->http.max_request_size) {
		http_conn_refuse(g, 413, "too_large", true, NULL,
				 "the request is %llu bytes, the limit is %llu",
				 (unsigned long long)hd.length,
				 (unsigned long long)c->http.max_request_size);
		return false;
	}
	if (hd.length > HTTP_ANON_BODY_MAX && !http_conn_key_ok(g, &hd))
		return false;
	if (hd.length > 0 && g->h->body_bytes + hd.length > c->http.memory_budget) {
		log_warn("event=http_memory_budget_full client=%s in_flight=%llu length=%llu",
			 g->client, (unsigned long long)g->h->body_bytes,
			 (unsigned long long)hd.length);
		http_conn_refuse(g, 503, "busy", true, "Retry-After: 1\r\n",
				 "too many requests are being received right now, try again "
				 "shortly");
		return false;
	}
	g->charged = hd.length;
	g->h->body_bytes += hd.length;
	g->body_left = hd.length;
	return true;
}

/* http_conn_in - the input filter: hold a head until it is complete and
 * accepted, then pass it and its body to evhttp, one request at a time. */
static enum bufferevent_filter_result http_conn_in(struct evbuffer *src, struct evbuffer *dst,
						   ev_ssize_t lim, enum bufferevent_flush_mode mode,
						   void *ctx)
{
	struct http_conn *g = ctx;
	const struct conf *c = g->h->conf;
	bool moved = false;
	size_t len;
	while ((len = evbuffer_get_length(src)) > 0) {
		if (g->st == HTTP_CONN_CLOSING || g->st == HTTP_CONN_GONE) {
			evbuffer_drain(src, len);
			break;
		}
		if (g->st == HTTP_CONN_BUSY)
			break; /* the next request waits for this one's answer */
		if (g->st == HTTP_CONN_IDLE) {
			unsigned char b;
			evbuffer_copyout(src, &b, 1);
			if (b == '\r' || b == '\n') { /* RFC 7230 3.5: ignore empty lines */
				evbuffer_drain(src, 1);
				continue;
			}
			g->scanned = 0;
			http_conn_enter(g, HTTP_CONN_HEAD, c->http.timeout_headers);
		}
		if (g->st == HTTP_CONN_HEAD) {
			size_t n = MIN(len, (size_t)HTTP_HEADERS_SIZE_MAX + 1);
			const char *p = (const char *)evbuffer_pullup(src, (ev_ssize_t)n);
			size_t end = http_head_end(p, n, &g->scanned);
			if (end == 0 && n <= HTTP_HEADERS_SIZE_MAX)
				break; /* wait for more */
			if (end == 0)
				http_conn_refuse(g, 431, "headers_too_large", true, NULL,
						 "the request head is larger than %d bytes",
						 HTTP_HEADERS_SIZE_MAX);
			if (end == 0 || !http_conn_decide(g, p, end))
				continue; /* CLOSING: discard the rest */
			evbuffer_remove_buffer(src, dst, end);
			moved = true;
			if (g->body_left > 0)
				http_conn_enter(g, HTTP_CONN_BODY, c->http.timeout_body);
			else
				http_conn_enter(g, HTTP_CONN_BUSY, 0);
			continue;
		}
		/* HTTP_CONN_BODY */
		size_t n = (size_t)MIN((uint64_t)len, g->body_left);
		evbuffer_remove_buffer(src, dst, n);
		g->body_left -= n;
		moved = true;
		if (g->body_left == 0)
			http_conn_enter(g, HTTP_CONN_BUSY, 0);
	}
	return moved ? BEV_OK : BEV_NEED_MORE;
}

/* http_conn_out - the output filter: evhttp's bytes straight to the socket. */
static enum bufferevent_filter_result http_conn_out(struct evbuffer *src, struct evbuffer *dst,
						    ev_ssize_t lim, enum bufferevent_flush_mode mode,
						    void *ctx)
{
	struct http_conn *g = ctx;
	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	if (g->fd < 0)
		g->fd = bufferevent_getfd(g->under);
	int n = evbuffer_write(src, g->fd);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		/* the peer is gone: discard, the read side reports it */
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_OK;
	}
	if (evbuffer_get_length(src) > 0 || evbuffer_get_length(g->out) > 0)
		event_add(g->writable, NULL);
	return n > 0 ? BEV_OK : BEV_NEED_MORE;
}

static void http_conn_on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *g = arg;
	if (!http_conn_alive(g))
		return;
	if (evbuffer_get_length(bufferevent_get_output(g->bev)) > 0)
		bufferevent_flush(g->bev, EV_WRITE, BEV_NORMAL);
	if (g->st == HTTP_CONN_CLOSING && http_conn_alive(g))
		http_conn_write_own(g);
}

/* http_conn_count_ip - connections from g's address (g included). */
static size_t http_conn_count_ip(const struct http_conn *g)
{
	size_t n = 0;
	for (const struct http_conn *o = g->h->conns; o; o = o->next)
		if (o->st != HTTP_CONN_GONE && strcmp(o->client, g->client) == 0)
			n++;
	return n;
}

/* http_conn_on_output - evhttp added to its output, usually before it enables
 * writing (which does not run the filter): write from the loop. */
static void http_conn_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info,
				void *arg)
{
	struct http_conn *g = arg;
	if (info->n_added > 0)
		event_active(g->writable, EV_WRITE, 0);
}

/* http_conn_hello - the first kick: the socket and the peer are known now
 * (evhttp sets the descriptor after the bufferevent callback); apply the
 * connection limits. */
static void http_conn_hello(struct http_conn *g)
{
	const struct conf *c = g->h->conf;
	g->fd = bufferevent_getfd(g->under);
	struct sockaddr_storage sa;
	socklen_t salen = sizeof sa;
	const void *a = NULL;
	if (g->fd >= 0 && getpeername(g->fd, (struct sockaddr *)&sa, &salen) == 0)
		a = sa.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
		    : sa.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&sa)->sin_addr
					      : NULL;
	if (a == NULL || inet_ntop(sa.ss_family, a, g->client, sizeof g->client) == NULL)
		str_lcpy(g->client, "unknown", sizeof g->client);
	event_assign(g->writable, g->h->base, g->fd, EV_WRITE, http_conn_on_writable, g);
	if (g->h->nconns > c->http.max_connections)
		http_conn_refuse(g, 503, "too_many_connections", false, "Retry-After: 1\r\n",
				 "too many connections, try again shortly");
	else if (http_conn_count_ip(g) > c->http.max_connections_per_ip)
		http_conn_refuse(g, 503, "too_many_connections", false, "Retry-After: 1\r\n",
				 "too many connections from %s, try again shortly", g->client);
}

/* http_conn_on_kick - deferred work: the first look at the connection, the
 * guard's answer, and the next request held while the last was answered. */
static void http_conn_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *g = arg;
	if (!http_conn_alive(g))
		return;
	if (g->fd < 0 || g->client[0] == '\0')
		http_conn_hello(g);
	if (g->st == HTTP_CONN_CLOSING)
		http_conn_write_own(g);
	else if (g->st == HTTP_CONN_IDLE && evbuffer_get_length(bufferevent_get_input(g->under)))
		bufferevent_trigger(g->under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

static void http_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *g = arg;
	if (!http_conn_alive(g))
		return;
	const struct conf *c = g->h->conf;
	switch (g->st) {
	case HTTP_CONN_IDLE:
		log_info("event=http_idle_closed client=%s idle_timeout=%u", g->client,
			 c->http.idle_timeout);
		http_conn_drop(g);
		break;
	case HTTP_CONN_HEAD:
		http_conn_refuse(g, 408, "request_timeout", true, NULL,
				 "the request head took longer than %u s", c->http.timeout_headers);
		break;
	case HTTP_CONN_BODY:
		http_conn_refuse(g, 408, "request_timeout", true, NULL,
				 "the request body took longer than %u s", c->http.timeout_body);
		break;
	case HTTP_CONN_CLOSING: /* the answer could not be written in time */
		evbuffer_drain(g->out, evbuffer_get_length(g->out));
		g->linger = false;
		http_conn_drop(g);
		break;
	default:
		break;
	}
}

/* http_conn_on_complete - evhttp wrote the answer: wait for the next request. */
static void http_conn_on_complete(struct evhttp_request *req, void *arg)
{
	struct http_conn *g = arg;
	http_conn_release(g);
	if (g->st == HTTP_CONN_BUSY)
		http_conn_enter(g, HTTP_CONN_IDLE, g->h->conf->http.idle_timeout);
	event_active(g->kick, 0, 0);
}

/* http_guard_request - see http_int.h. */
void http_guard_request(struct http_server *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	for (struct http_conn *g = h->conns; g && bev; g = g->next) {
		if (g->bev == bev) {
			evhttp_request_set_on_complete_cb(req, http_conn_on_complete, g);
			return;
		}
	}
}

static void http_conn_free(struct http_conn *g)
{
	struct http_server *h = g->h;
	if (g->prev)
		g->prev->next = g->next;
	else
		h->conns = g->next;
	if (g->next)
		g->next->prev = g->prev;
	h->nconns--;
	health_api_connections_add(-1);
	if (g->fd >= 0)
		close(g->fd);
	event_free(g->timer);
	event_free(g->kick);
	event_free(g->writable);
	event_free(g->later);
	if (g->lingering)
		event_free(g->lingering);
	evbuffer_free(g->out);
	free(g);
}

/* http_conn_on_linger - discard what the client still sends; close at its EOF,
 * after a quiet HTTP_LINGER_MS, or HTTP_LINGER_MS after the answer at most. */
static void http_conn_on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *g = arg;
	char buf[4096];
	ssize_t n = 0;
	if (what & EV_READ)
		n = read(fd, buf, sizeof buf);
	if ((what & EV_READ) && (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) &&
	    time_mono_ms() < g->linger_until)
		return;
	http_conn_free(g);
}

/* http_conn_on_later - the filter and its socket bufferevent are gone: linger
 * or close. */
static void http_conn_on_later(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *g = arg;
	if (g->linger && g->fd >= 0 && !g->h->stopping) {
		g->linger_until = time_mono_ms() + HTTP_LINGER_MS;
		g->lingering = event_new(g->h->base, g->fd, EV_READ | EV_PERSIST,
					 http_conn_on_linger, g);
		struct timeval tv = {HTTP_LINGER_MS / 1000, (HTTP_LINGER_MS % 1000) * 1000};
		event_add(g->lingering, &tv);
		return;
	}
	http_conn_free(g);
}

/* http_conn_free_ctx - the filter's free_context: evhttp freed the connection. */
static void http_conn_free_ctx(void *arg)
{
	struct http_conn *g = arg;
	if (g->fd < 0 && g->under)
		g->fd = bufferevent_getfd(g->under);
	http_conn_release(g);
	g->bev = NULL;
	g->under = NULL;
	g->st = HTTP_CONN_GONE;
	event_del(g->timer);
	event_del(g->kick);
	event_del(g->writable);
	/* the socket bufferevent's events are removed right after this returns:
	 * close the descriptor only then */
	event_active(g->later, 0, 0);
}

/* http_guard_bev - see http_int.h. */
struct bufferevent *http_guard_bev(struct event_base *base, void *arg)
{
	struct http_server *h = arg;
	struct bufferevent *under = bufferevent_socket_new(base, -1, 0);
	if (under == NULL)
		fatal("event=bufferevent_new_failed where=http");
	struct http_conn *g = xcalloc(1, sizeof *g);
	g->h = h;
	g->fd = -1;
	g->under = under;
	g->out = evbuffer_new();
	g->timer = evtimer_new(base, http_conn_on_timer, g);
	g->kick = event_new(base, -1, 0, http_conn_on_kick, g);
	g->later = event_new(base, -1, 0, http_conn_on_later, g);
	g->writable = event_new(base, -1, EV_WRITE, http_conn_on_writable, g);
	g->bev = bufferevent_filter_new(under, http_conn_in, http_conn_out, BEV_OPT_CLOSE_ON_FREE,
					http_conn_free_ctx, g);
	if (g->out == NULL || g->timer == NULL || g->kick == NULL || g->later == NULL ||
	    g->writable == NULL || g->bev == NULL)
		fatal("event=bufferevent_new_failed where=http");
	evbuffer_add_cb(bufferevent_get_output(g->bev), http_conn_on_output, g);
	g->next = h->conns;
	if (h->conns)
		h->conns->prev = g;
	h->conns = g;
	h->nconns++;
	health_api_connections_add(1);
	http_conn_enter(g, HTTP_CONN_IDLE, h->conf->http.idle_timeout);
	event_active(g->kick, 0, 0);
	return g->bev;
}

/* http_guard_fini - see http_int.h. */
void http_guard_fini(struct http_server *h)
{
	while (h->conns) {
		struct http_conn *g = h->conns;
		if (g->bev != NULL)
			g->fd = -1; /* still evhttp's (cannot happen after evhttp_free) */
		http_conn_free(g);
	}
}
