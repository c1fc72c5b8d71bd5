/*
 * http.h - the HTTP side of relevo: the JSON API under /v1 (libevent evhttp, on
 * its own thread and event loop) and the webhook sender (libcurl multi, on its
 * own thread).
 *
 * The API authenticates with API keys (policy_apikey_check), builds MIME
 * messages from JSON, signs them with DKIM and queues them through the same
 * durable spool_commit as SMTP: 202 only once the message is on stable storage.
 * Store reads and writes happen on the API thread: it is not an SMTP loop, and
 * the store's hot lookups use their own read connection.
 *
 * Webhooks: the event sink hands every stored batch to http_webhooks_enqueue,
 * which turns it into durable jobs (store_webhook_jobs_add) for every matching
 * endpoint (the config's webhooks, and the account's own); the sender thread
 * POSTs them signed with X-Relevo-Signature: t=UNIXTIME,v1=HEX, HEX being
 * HMAC-SHA256(secret, t + "." + body), and retries non-2xx answers with backoff
 * for a day. Jobs live in the store, so a restart resumes them.
 */
#ifndef RELEVO_HTTP_H
#define RELEVO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct conf;
struct spool;
struct store;

/* ---- the API server (http_server.c, http_api*.c) ------------------------- */

struct http_server;
/* http_server_new - bind http.listen (before privileges are dropped). RC_OK with
 * *out NULL when no http.listen is configured. */
enum rc http_server_new(const struct conf *c, struct spool *sp, struct store *st,
			struct http_server **out);
/* http_server_reload - from the main loop: bind the http.listen addresses nc
 * adds, then hand nc to the API thread, which closes the addresses nc drops,
 * serves the new ones, applies its limits and reloads DKIM keys between two
 * requests, and then calls done(arg) there (not at all if it stops first).
 * RC_INVALID with "http.listen[N]: ADDRESS: reason" lines appended to *errs
 * when an address cannot be bound: then nothing changes. One at a time: the
 * next only after done. */
enum rc http_server_reload(struct http_server *h, const struct conf *nc, char **errs,
			   void (*done)(void *arg), void *arg);
/* http_server_start - serve on the API thread. */
enum rc http_server_start(struct http_server *h);
/* http_server_stop - stop accepting, answer the commits in flight, join the thread.
 * http_server_stop and http_server_free accept NULL. */
void http_server_stop(struct http_server *h);
void http_server_free(struct http_server *h);

/* ---- GET /metrics (http_metrics.c) ---------------------------------------- */

struct event_base;
struct http_metrics;
/* http_metrics_new - serve /metrics on base at http.metrics_listen (bind before
 * privileges are dropped). RC_OK with *out NULL when disabled, or when the
 * default address cannot be bound (logged); RC_IO when a configured one cannot. */
enum rc http_metrics_new(struct event_base *base, const struct conf *c, struct spool *sp,
			 struct http_metrics **out);
/* http_metrics_free - accepts NULL. */
void http_metrics_free(struct http_metrics *hm);

/* ---- messages from JSON (http_mime.c) ------------------------------------- */

/*
 * http_mime_build turns the JSON body of POST /v1/messages into an envelope and
 * an RFC 5322 message: pure (no I/O but a few random bytes for boundaries), so
 * that it is unit-tested and fuzzed on its own. The message is 7-bit clean with
 * CRLF line ends and no line over HTTP_MIME_LINE_MAX octets: text parts are 7bit
 * when they are short ASCII lines, else quoted-printable; attachments are
 * base64; non-ASCII in Subject and display names becomes RFC 2047 encoded-words.
 * Every header field the caller supplies is refused, never repaired, when it
 * could inject or override a field (CR, LF, NUL, a bad name, From/To/Date/...).
 */
#define HTTP_MIME_ADDR_MAX 254		/* an address (RFC 5321 4.5.3.1.3 path minus <>) */
#define HTTP_MIME_LOCAL_MAX 64		/* its local part (RFC 5321 4.5.3.1.1) */
#define HTTP_MIME_NAME_MAX 256		/* a display name, bytes of UTF-8 */
#define HTTP_MIME_SUBJECT_MAX 4096	/* Subject, bytes of UTF-8 */
#define HTTP_MIME_HEADERS_MAX 100	/* entries of "headers" */
#define HTTP_MIME_HEADER_NAME_MAX 76	/* a field name */
#define HTTP_MIME_ATTACH_MAX 100	/* entries of "attachments" */
#define HTTP_MIME_FILENAME_MAX 255	/* an attachment's filename, bytes of UTF-8 */
#define HTTP_MIME_LINE_MAX 998		/* RFC 5322 2.1.1 */
#define HTTP_MIME_FOLD 78		/* RFC 5322 2.1.1 SHOULD; folding target */

struct evbuffer;

struct http_mime_opts {
	const char *hostname;	/* the right-hand side of Message-ID */
	uint64_t id;		/* the queue id: the left-hand side of Message-ID */
	int64_t time;		/* Date:, unix seconds; 0: now */
	size_t max_recipients;	/* To + Cc + Bcc, duplicates removed */
	uint64_t max_size;	/* of the built message (RC_LIMIT beyond) */
};

/* The result; every pointer is owned (http_mime_msg_fini frees them). */
struct http_mime_msg {
	char *from;		/* the From: address, also the envelope sender */
	char *from_domain;	/* its domain, lower case */
	char **rcpt;		/* the envelope: To, Cc and Bcc addresses, in that order,
				 * duplicates (case-insensitive) removed */
	size_t nrcpt;
	bool bulk;		/* "stream": "bulk" */
	struct evbuffer *msg;	/* the message: header section, empty line, body */
	const char *error;	/* on failure: a short machine-readable code (static),
				 * "invalid_json", "header_injection", "too_large", ... */
};

/*
 * http_mime_build - the envelope and message of a JSON request. RC_OK with *out
 * filled; RC_INVALID (a 400: bad JSON, a missing or malformed field, an injection
 * attempt) or RC_LIMIT (a 413: the message would exceed max_size) with out->error
 * set, err holding a sentence for the client, and nothing else to free.
 */
enum rc http_mime_build(const char *json, size_t len, const struct http_mime_opts *o,
			struct http_mime_msg *out, char *err, size_t errsz);
/* http_mime_msg_fini - free what a successful http_mime_build filled in. */
void http_mime_msg_fini(struct http_mime_msg *m);
/* http_addr_valid - a strict address check: dot-atom@domain, ASCII, at most
 * HTTP_MIME_ADDR_MAX octets, the domain policy_domain_valid. */
bool http_addr_valid(const char *addr);

/* ---- events as JSON (http_event.c) --------------------------------------- */

/* http_event_json - the JSON object of one event (the API's and the webhooks'
 * format), as a new string. */
char *http_event_json(const struct evlog_event *ev);

/* A recipient's last reply as the API shows it (GET /v1/messages/{id}):
 * {"status": "4.2.0", "remote": "mx.example.org[192.0.2.1]", "reply": "421 4.2.0
 * busy", "code": 421}; a member not known is null (code: the reply does not start
 * with one), and the whole is JSON null when nothing is known. */
struct json_t;
/* http_last_reply - from an outcome's fields (an event's status, remote, reply). */
struct json_t *http_last_reply(const char *status, const char *remote, const char *reply);
/* http_last_reply_stored - from the text the spool keeps for a recipient
 * ("status=X remote=H reply=\"...\""; other text is taken as the reply). */
struct json_t *http_last_reply_stored(const char *stored);

/* ---- webhooks (http_webhook.c) ------------------------------------------- */

struct http_webhooks;
/* http_webhooks_start - start the sender thread; it resumes the stored jobs. */
enum rc http_webhooks_start(const struct conf *c, struct store *st, struct http_webhooks **out);
/* http_webhooks_enqueue - durable jobs for the endpoints that want these events
 * (called on the event sink's thread, after the events are stored). */
void http_webhooks_enqueue(struct http_webhooks *w, struct evlog_event *const *evs, size_t n);
/* http_webhooks_enqueue_offline - the same without a running sender (the CLI
 * with the daemon stopped): the jobs wait in the store for the daemon. */
void http_webhooks_enqueue_offline(const struct conf *c, struct store *st,
				   struct evlog_event *const *evs, size_t n);
/* http_webhooks_reload - use c's webhooks for the events enqueued from now on. */
void http_webhooks_reload(struct http_webhooks *w, const struct conf *c);
/* http_webhooks_stop - stop the thread (jobs not yet sent stay stored), free;
 * NULL is a no-op. */
void http_webhooks_stop(struct http_webhooks *w);
struct sockaddr;
/* http_webhook_url_private - does url name localhost or a private address
 * literal? (The check that counts is made on the address connected to.) */
bool http_webhook_url_private(const char *url);

/* http_webhook_signature - "t=UNIXTIME,v1=HEX" for body at time t. */
char *http_webhook_signature(const char *secret, int64_t t, const char *body, size_t len);
/* http_webhook_retry_at - when (unix ms) to retry a job created at created whose
 * attempt number attempts failed at now: 30 s, 1 min, 2 min, 5 min, 10 min,
 * 30 min, 1 h, then every 2 h (every fixed_delay_ms instead when it is > 0), never
 * past created + 24 h; 0 once that day is over: give up. */
int64_t http_webhook_retry_at(uint32_t attempts, int64_t created, int64_t now,
			      int64_t fixed_delay_ms);

#endif
