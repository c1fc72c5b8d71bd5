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
/* http_server_start - serve on the API thread. */
enum rc http_server_start(struct http_server *h);
/* http_server_stop - stop accepting, answer the commits in flight, join the thread. */
void http_server_stop(struct http_server *h);
void http_server_free(struct http_server *h);

/* ---- events as JSON (http_event.c) --------------------------------------- */

/* http_event_json - the JSON object of one event (the API's and the webhooks'
 * format), as a new string. */
char *http_event_json(const struct evlog_event *ev);

/* ---- webhooks (http_webhook.c) ------------------------------------------- */

struct http_webhooks;
/* http_webhooks_start - start the sender thread; it resumes the stored jobs. */
enum rc http_webhooks_start(const struct conf *c, struct store *st, struct http_webhooks **out);
/* http_webhooks_enqueue - durable jobs for the endpoints that want these events
 * (called on the event sink's thread, after the events are stored). */
void http_webhooks_enqueue(struct http_webhooks *w, struct evlog_event *const *evs, size_t n);
/* http_webhooks_stop - stop the thread (jobs not yet sent stay stored), free. */
void http_webhooks_stop(struct http_webhooks *w);
/* http_webhook_signature - "t=UNIXTIME,v1=HEX" for body at time t. */
char *http_webhook_signature(const char *secret, int64_t t, const char *body, size_t len);

#endif
