/*
 * http_int.h - what the API server's files share: the server, one request being
 * handled (struct http_call), JSON replies and errors, query-string helpers and
 * the table of commits in flight.
 *
 * Threads: everything here runs on the API thread, except http_server_stop's
 * event_active and the spool writer's event_active of commit completions.
 * Ownership: the server owns the pending table and each entry; an entry holds
 * the evhttp request it must answer, which libevent owns (it is set to NULL when
 * the connection closes first).
 */
#ifndef RELEVO_HTTP_INT_H
#define RELEVO_HTTP_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "conf/conf.h"
#include "core/core.h"
#include "http/http.h"

#define HTTP_PENDING_MAX 4096		/* commits in flight; beyond, 503 */
#define HTTP_HEADERS_SIZE_MAX 65536	/* request line and header fields */
#define HTTP_CLIENT_MAX 64		/* a client address as text */
#define HTTP_LIMIT_DEFAULT 100		/* page size of lists */
#define HTTP_LIMIT_MAX 1000
#define HTTP_ERROR_TEXT_MAX 512
#define HTTP_ACCEPT_PAUSE_MS 250	/* accept() failed for want of descriptors: pause */
#define HTTP_ACCEPT_LOG_MS 10000	/* and say so at most this often */
#define HTTP_ANON_BODY_MAX 8192		/* a body sent without a valid key: larger is
					 * refused (401) before it is read */
#define HTTP_ANSWER_MS 10000		/* the guard's own answer must be written
					 * within this, or the connection is cut */
#define HTTP_LINGER_MS 2000		/* after the guard's answer, read and discard
					 * what the client still sends, at most this */
#define HTTP_HEAD_AUTH_MAX 512		/* an Authorization value we look at */

struct spool;
struct store;
struct store_user;
struct dkim_cache;
struct bufferevent;
struct http_conn;

/* A POST /v1/messages waiting for its spool commit. */
struct http_pending {
	uint64_t cookie;
	struct evhttp_request *req;	/* NULL once the client is gone */
	struct evhttp_connection *evcon;
};

/* A reload for the API thread: the new conf and how to get to its listeners. */
struct http_reload {
	const struct conf *conf;	/* a reference */
	evutil_socket_t *fds;		/* per conf->http.listen entry: a new bound
					 * socket (taken over), or -1: keep one */
	size_t *keep;			/* per entry: the index of the socket kept */
	void (*done)(void *arg);	/* on the API thread, once applied */
	void *arg;
};

struct http_server {
	const struct conf *conf;	/* a reference; API thread only once started */
	const struct conf *listen_conf;	/* a reference, main loop only: the conf whose
					 * http.listen is served, or will be once the
					 * reload handed over is applied */
	pthread_mutex_t reload_lock;	/* guards reload */
	struct http_reload *reload;	/* handed over, not yet applied */
	struct event *reload_ev;
	struct spool *spool;
	struct store *store;
	struct dkim_cache *dkim;
	struct intake *intake;		/* owned: POST /v1/messages goes through it */
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket **socks;	/* per conf->http.listen entry; NULL
						 * when closed */
	size_t nsocks;
	struct event *stop_ev;		/* activated by http_server_stop */
	pthread_t thread;
	bool running;			/* the thread was started (main thread's view) */
	bool stopping;			/* API thread only */
	struct http_pending **pending;	/* open addressing by cookie */
	size_t pending_size, npending;
	uint64_t next_cookie;
	struct http_conn *conns;	/* every client connection (http_guard.c) */
	size_t nconns;
	uint64_t body_bytes;		/* request bodies in flight, as announced by
					 * their Content-Length (http.memory_budget) */
};

/* One request being handled. */
struct http_call {
	struct http_server *h;
	struct evhttp_request *req;
	enum evhttp_cmd_type method;
	const char *tail;		/* the decoded {id} of /v1/x/{id}, or NULL */
	struct evkeyvalq query;		/* decoded query parameters */
	struct store_user *user;	/* the key's account (NULL for open routes) */
	char client[HTTP_CLIENT_MAX];	/* the peer's address */
};

/* ---- replies (http_server.c) ----------------------------------------------- */

/* http_reply_json - send body (a reference is taken over) with status. */
void http_reply_json(struct evhttp_request *req, int status, json_t *body);
/* http_reason_phrase - the reason phrase of status ("Unknown" if not listed). */
const char *http_reason_phrase(int status);
/* http_error_json - the text of {"error": {"status", "code", "message"}}
 * (message cleaned of what is not UTF-8), for free(). */
char *http_error_json(int status, const char *code, const char *msg);
/* http_bearer_key - the key of an Authorization value "Bearer KEY", or NULL. */
const char *http_bearer_key(const char *authorization);
/* http_error - {"error": {"status", "code", "message"}} with status. */
void http_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* http_utf8_clean - '?' for every byte of s that is not valid UTF-8 or is a
 * control character, in place. */
void http_utf8_clean(char *s);
/* http_reply_text - a prepared JSON text (taken over: free()d). */
void http_reply_text(struct evhttp_request *req, int status, char *json);

/* ---- query strings and bodies (http_server.c) -------------------------------- */

/* http_query_only - true if every query parameter is in allowed (NULL-terminated);
 * else a 400 has been sent. */
bool http_query_only(struct http_call *c, const char *const *allowed);
/* http_query_limit - "limit" in 1..HTTP_LIMIT_MAX (default HTTP_LIMIT_DEFAULT);
 * false after a 400. */
bool http_query_limit(struct http_call *c, size_t *out);
/* http_query_time - "since"/"until" as unix ms (0 when absent): unix seconds or
 * RFC 3339; false after a 400. */
bool http_query_time(struct http_call *c, const char *name, int64_t *out);
/* http_parse_time - unix seconds or an RFC 3339 date-time, as unix ms. */
bool http_parse_time(const char *s, int64_t *ms);
/* http_body_json - the request body as a JSON object; NULL after a 400. */
json_t *http_body_json(struct http_call *c);
/* http_time_json - unix ms as an RFC 3339 string (UTC, milliseconds). */
json_t *http_time_json(int64_t ms);

/* ---- commits in flight (http_server.c) ----------------------------------------- */

/* http_pending_add - register p (taken over) under a new cookie and watch its
 * connection. */
uint64_t http_pending_add(struct http_server *h, struct http_pending *p);
/* http_pending_take - remove and return the entry of cookie (NULL if none). */
struct http_pending *http_pending_take(struct http_server *h, uint64_t cookie);
void http_pending_free(struct http_pending *p);
/* http_server_idle - a commit finished: end the loop if stopping and none is left. */
void http_server_idle(struct http_server *h);

/* ---- in front of evhttp (http_guard.c) ---------------------------------------- */

/* http_guard_bev - evhttp's bufferevent callback (evhttp_set_bevcb, arg: the
 * server): every connection goes through a filter that enforces the limits of
 * issue 12 (connections per address and in total, head and body deadlines, the
 * idle limit, the key before a large body, the memory budget). */
struct bufferevent *http_guard_bev(struct event_base *base, void *arg);
/* http_guard_request - a request reached the dispatcher: its connection is busy
 * until the answer is written. */
void http_guard_request(struct http_server *h, struct evhttp_request *req);
/* http_guard_fini - free what is left of the connections (after evhttp_free and
 * a last turn of the loop). */
void http_guard_fini(struct http_server *h);

/* A request head as the guard reads it (http_head.c). */
struct http_head {
	char method[16];
	bool has_length;
	uint64_t length;		/* Content-Length */
	bool has_te;			/* a Transfer-Encoding field */
	bool has_auth;
	char auth[HTTP_HEAD_AUTH_MAX];	/* the Authorization value, trimmed ("" when
					 * too long to be a key) */
	const char *error;		/* after RC_PROTO: a sentence for the client */
};
/* http_head_end - where the head in p[0..n) ends (its length), 0: not yet;
 * *scanned carries the position between calls (0 at first). */
size_t http_head_end(const char *p, size_t n, size_t *scanned);
/* http_head_parse - the fields of a complete head; RC_PROTO when malformed. */
enum rc http_head_parse(const char *p, size_t n, struct http_head *hd);

/* http_guard_listen - give evhttp a listener on fd (bound to l by the caller,
 * taken over) that pauses on EMFILE; NULL (logged, fd closed) on failure. */
struct evhttp_bound_socket *http_guard_listen(struct http_server *h, const struct conf_listen *l,
					      evutil_socket_t fd);

/* ---- handlers ---------------------------------------------------------------- */

/* http_api_messages.c */
void http_api_message_send(struct http_call *c);
void http_api_message_get(struct http_call *c);
/* http_health.c: GET /v1/health (no key), 200 or 503 naming what is wrong */
void http_api_health(struct http_call *c);
/* http_api_account.c */
void http_api_events(struct http_call *c);
void http_api_stats(struct http_call *c);
void http_api_suppressions_list(struct http_call *c);
void http_api_suppression_add(struct http_call *c);
void http_api_suppression_del(struct http_call *c);
void http_api_webhooks_list(struct http_call *c);
void http_api_webhook_add(struct http_call *c);
void http_api_webhook_del(struct http_call *c);

/* The OpenAPI document, embedded at build time (generated http_openapi.c). */
extern const unsigned char http_openapi_json[];
extern const size_t http_openapi_json_len;

#endif
