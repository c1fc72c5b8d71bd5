/*
 * http_webhook.c - the webhook sender: stored events in, signed POSTs out.
 *
 * Two halves meet in the store. http_webhooks_enqueue runs on the event sink's
 * thread: for every event of a batch and every endpoint that wants its type (the
 * config's webhooks, and the per-account webhooks of the event's user, read
 * through a small cache refreshed every few seconds) it builds one job whose body
 * is http_event_json(ev), stores the whole batch's jobs with one
 * store_webhook_jobs_add, then wakes the sender. The sender thread drives one
 * libcurl multi handle with curl_multi_poll: it loads due jobs (at most
 * HOOK_INFLIGHT_MAX in flight, never one twice), POSTs each body signed at send
 * time, and records the outcome: 2xx deletes the job; anything else reschedules
 * it with backoff (30 s, 1 min, 2 min, 5 min, 10 min, 30 min, 1 h, then every
 * 2 h) until it is a day old, when it is given up (deleted, logged).
 *
 * Crash model: a job is durable before enqueue returns and is deleted only after
 * its outcome is known, so delivery is at least once: a crash or a stop while a
 * POST is in flight re-sends it at the next start. Receivers deduplicate by
 * X-Relevo-Event-Id (the event's seq; one event sent to one endpoint always
 * carries the same id and body).
 *
 * Tests: RELEVO_WEBHOOK_RETRY_MS=N (environment, read at http_webhooks_start)
 * replaces every retry delay of the schedule with N milliseconds, so end-to-end
 * tests see a retry within a second. The one-day limit still applies.
 *
 * Threads and ownership: struct http_webhooks belongs to its creator; the user
 * cache is behind cache_lock (enqueue's side), the in-flight list and the multi
 * handle are the sender thread's alone (curl_multi_wakeup is the one thread-safe
 * call made from other threads). A request owns its job (url, secret, body).
 * Logs never contain the secret, nor a URL's userinfo or query string.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "conf/conf.h"
#include "store/store.h"

#define HOOK_INFLIGHT_MAX       64    /* POSTs in flight at once */
#define HOOK_TIMEOUT_MS         10000 /* a whole request */
#define HOOK_CONNECT_TIMEOUT_MS 5000
#define HOOK_RESPONSE_MAX       (64 * 1024)          /* response bytes read (and dropped) */
#define HOOK_GIVE_UP_MS         (24 * 3600 * 1000LL) /* retried for a day after creation */
#define HOOK_USERS_MAX          256                  /* accounts in the endpoint cache */
#define HOOK_USER_TTL_MS        5000  /* an account's endpoints are re-read after this */
#define HOOK_IDLE_CHECK_MS      60000 /* look at the store at least this often */
#define HOOK_BUSY_CHECK_MS      1000  /* ... and this often while POSTs are in flight */
#define HOOK_STORE_ERR_MS       5000  /* after a store error */
#define HOOK_LOG_URL_MAX        256
#define HOOK_SIG_MAX            (32 + 2 * EVP_MAX_MD_SIZE)
#define HOOK_ALL_TYPES          ((1u << EVLOG__COUNT) - 1)
#define HOOK_RETRY_ENV          "RELEVO_WEBHOOK_RETRY_MS"

_Static_assert(EVLOG__COUNT <= 32, "event types must fit a uint32_t mask");

/* Delay after the Nth failed attempt (N = index + 1); the last one repeats. */
static const int64_t hook_backoff_ms[] = {
    30 * 1000LL,  60 * 1000LL,   120 * 1000LL,  300 * 1000LL,
    600 * 1000LL, 1800 * 1000LL, 3600 * 1000LL, 7200 * 1000LL,
};

/* One endpoint: a config webhook or an account's. Strings owned. */
struct hook_endpoint {
	char *url;
	char *secret;
	uint32_t types; /* bit (1 << enum evlog_type) per wanted type */
	bool operator;  /* from the configuration (webhooks:), not an account's */
};

/* An account's endpoints as last read from the store. */
struct hook_user {
	char *user;      /* NULL: a free slot */
	int64_t fetched; /* time_mono_ms of the read */
	struct hook_endpoint *eps;
	size_t neps;
};

/* One POST in flight. Owned by the sender's in-flight list. */
struct hook_req {
	struct store_webhook_job job; /* owned: url, secret, body */
	int64_t event_id;             /* the body's "id", 0 if none */
	CURL *easy;
	struct curl_slist *hdrs;
	size_t received; /* response bytes seen and dropped */
	bool blocked;    /* an account's URL led to a private address: refused */
	char err[CURL_ERROR_SIZE];
	struct hook_req *next;
};

struct http_webhooks {
	struct store *st;
	struct hook_endpoint *conf_eps; /* copies of c->webhooks; cache_lock (a reload
	                                 * replaces them) */
	size_t nconf_eps;
	int64_t fixed_retry_ms; /* RELEVO_WEBHOOK_RETRY_MS, or 0: the schedule */
	atomic_bool allow_private; /* http.webhooks_allow_private */
	CURLM *multi;
	pthread_t thread;
	atomic_bool stopping;
	atomic_bool kicked;         /* jobs added since the sender last looked */
	pthread_mutex_t cache_lock; /* users[] */
	struct hook_user users[HOOK_USERS_MAX];
	struct hook_req *inflight; /* sender thread only */
	size_t ninflight;
};

static pthread_once_t hook_curl_once = PTHREAD_ONCE_INIT;
static CURLcode hook_curl_rc;

static void hook_curl_init(void)
{
	hook_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- pure parts -------------------------------------------------------------- */

/* http_webhook_signature - "t=T,v1=HEX": HMAC-SHA256(secret, "T." + body). */
char *http_webhook_signature(const char *secret, int64_t t, const char *body, size_t len)
{
	char prefix[24];
	int plen = snprintf(prefix, sizeof prefix, "%lld.", (long long)t);
	unsigned char *msg = xmalloc((size_t)plen + len + 1);
	memcpy(msg, prefix, (size_t)plen);
	memcpy(msg + plen, body, len);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	const char *key = secret ? secret : "";
	if (HMAC(EVP_sha256(), key, (int)strlen(key), msg, (size_t)plen + len, mac, &maclen) ==
	    NULL)
		fatal("event=hmac_failed");
	free(msg);
	char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
	for (unsigned int i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	return xasprintf("t=%lld,v1=%s", (long long)t, hex);
}

/* http_webhook_retry_at - the next attempt of a failed job (unix ms), 0: give up. */
int64_t http_webhook_retry_at(uint32_t attempts, int64_t created, int64_t now,
                              int64_t fixed_delay_ms)
{
	int64_t deadline = created + HOOK_GIVE_UP_MS;
	if (now >= deadline)
		return 0;
	size_t i = attempts ? MIN((size_t)attempts - 1, ARRAY_LEN(hook_backoff_ms) - 1) : 0;
	int64_t delay = fixed_delay_ms > 0 ? fixed_delay_ms : hook_backoff_ms[i];
	return MIN(now + delay, deadline);
}

/* hook_types_parse - "delivered,bounced" to a type mask; "" (or NULL) is every
 * type. Unknown names are ignored (the API validated the list). */
static uint32_t hook_types_parse(const char *list)
{
	if (list == NULL || list[0] == '\0')
		return HOOK_ALL_TYPES;
	uint32_t mask = 0;
	const char *p = list;
	while (*p) {
		p += strspn(p, ", ");
		size_t n = strcspn(p, ", ");
		char name[32];
		enum evlog_type t;
		if (n > 0 && n < sizeof name) {
			memcpy(name, p, n);
			name[n] = '\0';
			if (evlog_type_parse(name, &t))
				mask |= 1u << t;
		}
		p += n;
	}
	return mask;
}

/* hook_url_for_log - the URL without userinfo and query, quotes and controls
 * replaced: what an operator needs to recognise the endpoint, and nothing that
 * might be a credential. */
static void hook_url_for_log(const char *url, char *out, size_t outsz)
{
	const char *rest = url;
	size_t o = 0;
	const char *sep = strstr(url, "://");
	if (sep) {
		size_t n = MIN((size_t)(sep + 3 - url), outsz - 1);
		memcpy(out, url, n);
		o = n;
		rest = sep + 3;
		size_t auth = strcspn(rest, "/?#");
		const char *at = memchr(rest, '@', auth);
		if (at)
			rest = at + 1;
	}
	for (; *rest && *rest != '?' && *rest != '#' && o + 1 < outsz; rest++)
		out[o++] = (*rest == '"' || (unsigned char)*rest <= 0x20) ? '_' : *rest;
	out[o] = '\0';
}

static void hook_endpoints_free(struct hook_endpoint *eps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(eps[i].url);
		free(eps[i].secret);
	}
	free(eps);
}

/* ---- enqueue: events to durable jobs ------------------------------------------- */

struct hook_list_acc {
	struct hook_endpoint *eps;
	size_t n, cap;
};

static bool hook_list_one(void *arg, const struct store_webhook *sw)
{
	struct hook_list_acc *acc = arg;
	if (acc->n == acc->cap) {
		acc->cap = acc->cap ? acc->cap * 2 : 4;
		acc->eps = xrealloc(acc->eps, acc->cap * sizeof *acc->eps);
	}
	acc->eps[acc->n++] = (struct hook_endpoint){
	    .url = xstrdup(sw->url),
	    .secret = xstrdup(sw->secret ? sw->secret : ""),
	    .types = hook_types_parse(sw->events),
	};
	return true;
}

/* hook_user_get - user's endpoints, from the cache or (stale or absent) the
 * store. Called with cache_lock held. NULL when the store read failed. The
 * result is valid until the next call (which may evict it). */
static struct hook_user *hook_user_get(struct http_webhooks *w, const char *user)
{
	int64_t now = time_mono_ms();
	struct hook_user *match = NULL, *empty = NULL, *oldest = NULL;
	for (size_t i = 0; i < HOOK_USERS_MAX && match == NULL; i++) {
		struct hook_user *u = &w->users[i];
		if (u->user == NULL)
			empty = empty ? empty : u;
		else if (strcmp(u->user, user) == 0)
			match = u;
		else if (oldest == NULL || u->fetched < oldest->fetched)
			oldest = u;
	}
	if (match && now - match->fetched < HOOK_USER_TTL_MS)
		return match;
	struct hook_user *slot = match ? match : empty ? empty : oldest;
	struct hook_list_acc acc = {0};
	enum rc rc = store_webhook_list(w->st, user, hook_list_one, &acc);
	if (rc != RC_OK) {
		hook_endpoints_free(acc.eps, acc.n);
		acc = (struct hook_list_acc){0};
		log_err("event=webhook_list_failed user=%s rc=%s", user, rc_name(rc));
		/* A name the store refuses never has webhooks: remember that. Other
		 * errors may pass: ask again for the next event. */
		if (rc != RC_INVALID)
			return NULL;
	}
	free(slot->user);
	hook_endpoints_free(slot->eps, slot->neps);
	*slot = (struct hook_user){
	    .user = xstrdup(user), .fetched = now, .eps = acc.eps, .neps = acc.n};
	return slot;
}

/* The jobs of one enqueued batch: url and secret owned, body borrowed from
 * bodies[] (one JSON document per event, made on first use). */
struct hook_batch {
	struct store_webhook_job *jobs;
	size_t n, cap;
	int64_t now;
};

static void hook_batch_add(struct hook_batch *b, const struct hook_endpoint *ep,
                           const struct evlog_event *ev, char **body)
{
	if (!(ep->types & (1u << ev->type)))
		return;
	if (*body == NULL)
		*body = http_event_json(ev);
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->jobs = xrealloc(b->jobs, b->cap * sizeof *b->jobs);
	}
	b->jobs[b->n++] = (struct store_webhook_job){
	    .url = xstrdup(ep->url),
	    .secret = xstrdup(ep->secret),
	    .body = *body,
	    .next_attempt = b->now,
	    .created = b->now,
	    .operator = ep->operator,
	};
}

/* http_webhooks_enqueue - one durable job per (event, endpoint that wants it),
 * all of the batch in one transaction; then wake the sender. One caller at a
 * time in practice (the event sink); never concurrently with _stop. */
void http_webhooks_enqueue(struct http_webhooks *w, struct evlog_event *const *evs, size_t n)
{
	if (w == NULL || n == 0)
		return;
	struct hook_batch b = {.now = time_now_ms()};
	char **bodies = xcalloc(n, sizeof *bodies);
	pthread_mutex_lock(&w->cache_lock);
	for (size_t i = 0; i < n; i++) {
		const struct evlog_event *ev = evs[i];
		if ((unsigned)ev->type >= EVLOG__COUNT)
			continue;
		for (size_t j = 0; j < w->nconf_eps; j++)
			hook_batch_add(&b, &w->conf_eps[j], ev, &bodies[i]);
		struct hook_user *u = ev->user ? hook_user_get(w, ev->user) : NULL;
		for (size_t j = 0; u && j < u->neps; j++)
			hook_batch_add(&b, &u->eps[j], ev, &bodies[i]);
	}
	pthread_mutex_unlock(&w->cache_lock);
	if (b.n > 0) {
		enum rc rc = store_webhook_jobs_add(w->st, b.jobs, b.n);
		if (rc != RC_OK)
			log_err("event=webhook_enqueue_failed jobs=%zu rc=%s", b.n, rc_name(rc));
	}
	for (size_t i = 0; i < b.n; i++) {
		free(b.jobs[i].url);
		free(b.jobs[i].secret);
	}
	free(b.jobs);
	for (size_t i = 0; i < n; i++)
		free(bodies[i]);
	free(bodies);
	if (b.n > 0) {
		atomic_store(&w->kicked, true);
		curl_multi_wakeup(w->multi);
	}
}

/* ---- the sender: jobs to POSTs ------------------------------------------------- */

static void hook_record(struct http_webhooks *w, struct hook_req *r, CURLcode res, long status);

static size_t hook_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hook_req *r = arg;
	(void)data;
	r->received += size * nmemb;
	/* Returning less than given aborts the transfer (CURLE_WRITE_ERROR): a
	 * receiver that talks on and on does not hold a slot. */
	return r->received > HOOK_RESPONSE_MAX ? 0 : size * nmemb;
}

/* hook_event_id - the "id" of a job's JSON body (the event's seq), 0 if none. */
static int64_t hook_event_id(const char *body)
{
	json_t *o = json_loads(body, 0, NULL);
	json_t *id = json_object_get(o, "id");
	int64_t v = json_is_integer(id) ? (int64_t)json_integer_value(id) : 0;
	json_decref(o);
	return v;
}

static void hook_req_free(struct hook_req *r)
{
	if (r == NULL)
		return;
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->job.url);
	free(r->job.secret);
	free(r->job.body);
	free(r);
}

/* hook_req_headers - the request's headers, the signature made now. */
static struct curl_slist *hook_req_headers(const struct hook_req *r)
{
	const char *body = r->job.body;
	char *sig = http_webhook_signature(r->job.secret, time_now_ms() / 1000, body, strlen(body));
	char line[HOOK_SIG_MAX + 32];
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, "Content-Type: application/json");
	h = h ? curl_slist_append(h, "User-Agent: relevo-webhook/1") : NULL;
	h = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
	snprintf(line, sizeof line, "X-Relevo-Signature: %s", sig);
	h = h ? curl_slist_append(h, line) : NULL;
	free(sig);
	if (h && r->event_id) {
		snprintf(line, sizeof line, "X-Relevo-Event-Id: %lld", (long long)r->event_id);
		h = curl_slist_append(h, line);
	}
	return h;
}

bool http_webhook_url_private(const char *url)
{
	const char *h = strstr(url, "://");
	if (h == NULL)
		return false;
	h += 3;
	const char *at = strpbrk(h, "@/?#");
	if (at != NULL && *at == '@')
		h = at + 1; /* user:pass@host */
	char host[256];
	size_t n;
	if (*h == '[') {
		n = strcspn(++h, "]");
	} else {
		n = strcspn(h, ":/?#");
	}
	if (n == 0 || n >= sizeof host)
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	size_t hl = strlen(host);
	if (str_ieq(host, "localhost") || (hl > 10 && str_ieq(host + hl - 10, ".localhost")))
		return true;
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, host, &v4.sin_addr) == 1)
		return conf_addr_is_private((const struct sockaddr *)&v4);
	if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1)
		return conf_addr_is_private((const struct sockaddr *)&v6);
	return false;
}

/* hook_open_socket - libcurl's socket for an account's webhook: refused when the
 * name resolved to a private address (checked on the address actually used, so
 * DNS tricks do not get around it). */
static curl_socket_t hook_open_socket(void *arg, curlsocktype purpose,
                                      struct curl_sockaddr *a)
{
	struct hook_req *r = arg;
	if (purpose == CURLSOCKTYPE_IPCXN && conf_addr_is_private(&a->addr)) {
		r->blocked = true;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype, a->protocol);
}

/* hook_req_setup - the easy handle of one POST. RC_NOMEM if libcurl refuses. */
static enum rc hook_req_setup(struct http_webhooks *w, struct hook_req *r)
{
	r->easy = curl_easy_init();
	r->hdrs = r->easy ? hook_req_headers(r) : NULL;
	if (r->hdrs == NULL)
		return RC_NOMEM;
	CURL *e = r->easy;
	CURLcode cc = CURLE_OK;
	/* Only http and https, never redirects: a webhook URL must not become a
	 * file:// read or a hop to some other host. */
	cc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	cc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	cc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	cc |= curl_easy_setopt(e, CURLOPT_URL, r->job.url);
	cc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
	cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->job.body);
	cc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->job.body));
	cc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	cc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)HOOK_TIMEOUT_MS);
	cc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)HOOK_CONNECT_TIMEOUT_MS);
	cc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	cc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hook_on_body);
	cc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	cc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	cc |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	if (!atomic_load(&w->allow_private) && !r->job.operator) {
		/* An account's endpoint: connect directly (a proxy would hide the
		 * peer) and never to the operator's own network. Who created the
		 * job decides, never its URL: an account's webhook with the URL of
		 * an operator's must not inherit its trust (issue 12). */
		cc |= curl_easy_setopt(e, CURLOPT_PROXY, "");
		cc |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, hook_open_socket);
		cc |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	}
	return cc == CURLE_OK ? RC_OK : RC_NOMEM;
}

/* hook_send - start the POST of job; takes its strings (job's fields are NULL
 * after the call). */
static void hook_send(struct http_webhooks *w, struct store_webhook_job *job)
{
	struct hook_req *r = xcalloc(1, sizeof *r);
	r->job = *job;
	job->url = job->secret = job->body = NULL;
	r->event_id = hook_event_id(r->job.body);
	if (hook_req_setup(w, r) != RC_OK || curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
		/* A failed attempt like any other: retried with backoff, not at once
		 * in a loop. */
		hook_record(w, r, CURLE_FAILED_INIT, 0);
		hook_req_free(r);
		return;
	}
	r->next = w->inflight;
	w->inflight = r;
	w->ninflight++;
}

static bool hook_is_inflight(const struct http_webhooks *w, int64_t id)
{
	for (const struct hook_req *r = w->inflight; r; r = r->next)
		if (r->job.id == id)
			return true;
	return false;
}

/* hook_load - start the due jobs there is room for; returns when (unix ms) the
 * store should be looked at again. */
static int64_t hook_load(struct http_webhooks *w, int64_t now)
{
	size_t room = HOOK_INFLIGHT_MAX - w->ninflight;
	if (room > 0) {
		/* Ask for the jobs in flight too (they are still due in the store) so
		 * that room new ones come back even when they sort after them. */
		struct store_webhook_job *jobs = NULL;
		size_t n = 0;
		enum rc rc = store_webhook_jobs_due(w->st, now, room + w->ninflight, &jobs, &n);
		if (rc != RC_OK) {
			log_err("event=webhook_load_failed rc=%s", rc_name(rc));
			return now + HOOK_STORE_ERR_MS;
		}
		for (size_t i = 0; i < n && room > 0; i++) {
			if (!hook_is_inflight(w, jobs[i].id)) {
				hook_send(w, &jobs[i]);
				room--;
			}
		}
		store_webhook_jobs_free(jobs, n);
	}
	/* While POSTs are in flight their jobs are the store's earliest: poll. */
	if (w->ninflight > 0)
		return now + HOOK_BUSY_CHECK_MS;
	int64_t when;
	enum rc rc = store_webhook_job_next(w->st, &when);
	if (rc == RC_NOTFOUND)
		return now + HOOK_IDLE_CHECK_MS;
	if (rc != RC_OK) {
		log_err("event=webhook_load_failed rc=%s", rc_name(rc));
		return now + HOOK_STORE_ERR_MS;
	}
	return MIN(MAX(when, now + 1), now + HOOK_IDLE_CHECK_MS);
}

static void hook_unlink(struct http_webhooks *w, struct hook_req *r)
{
	for (struct hook_req **pp = &w->inflight; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			w->ninflight--;
			return;
		}
	}
	fatal("event=webhook_request_lost job=%lld", (long long)r->job.id);
}

/* hook_record - store one attempt's outcome and log it. */
static void hook_record(struct http_webhooks *w, struct hook_req *r, CURLcode res, long status)
{
	const struct store_webhook_job *j = &r->job;
	uint32_t attempts = j->attempts + 1;
	int64_t now = time_now_ms();
	char url[HOOK_LOG_URL_MAX];
	hook_url_for_log(j->url, url, sizeof url);
	/* A 2xx whose body we cut short still counts: the receiver took the event. */
	bool ok = status >= 200 && status < 300 && (res == CURLE_OK || res == CURLE_WRITE_ERROR);
	metrics_inc(ok ? METRICS_WEBHOOK_OK
		    : status > 0 ? METRICS_WEBHOOK_HTTP_ERROR : METRICS_WEBHOOK_TRANSPORT_ERROR);
	/* A URL curl cannot even try will not start working tomorrow. */
	bool hopeless = res == CURLE_UNSUPPORTED_PROTOCOL || res == CURLE_URL_MALFORMAT ||
	                r->blocked;
	int64_t at = ok || hopeless
	                 ? 0
	                 : http_webhook_retry_at(attempts, j->created, now, w->fixed_retry_ms);
	enum rc rc = at ? store_webhook_job_retry(w->st, j->id, attempts, at)
	                : store_webhook_job_done(w->st, j->id);
	const char *err = res == CURLE_OK ? "" : (r->err[0] ? r->err : curl_easy_strerror(res));
	log_info("event=webhook job=%lld event_id=%lld url=%s status=%ld attempts=%u result=%s "
	         "next_in_ms=%lld error=\"%s\"",
	         (long long)j->id, (long long)r->event_id, url, status, attempts,
	         ok   ? "delivered"
	         : at ? "retry"
	              : "given_up",
	         (long long)(at ? at - now : 0), err);
	if (!ok && at == 0)
		log_warn("event=webhook_given_up job=%lld event_id=%lld url=%s attempts=%u "
		         "age_s=%lld reason=%s",
		         (long long)j->id, (long long)r->event_id, url, attempts,
		         (long long)((now - j->created) / 1000),
		         r->blocked ? "private_address" : hopeless ? "unusable_url" : "too_old");
	if (rc != RC_OK)
		log_err("event=webhook_record_failed job=%lld rc=%s", (long long)j->id,
		        rc_name(rc));
}

/* hook_reap - record every finished POST; returns how many finished. */
static size_t hook_reap(struct http_webhooks *w)
{
	size_t done = 0;
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		char *priv = NULL;
		CURLcode res = m->data.result;
		long status = 0;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		struct hook_req *r = (struct hook_req *)priv;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(w->multi, r->easy); /* m is invalid from here */
		hook_unlink(w, r);
		hook_record(w, r, res, status);
		hook_req_free(r);
		done++;
	}
	return done;
}

static void *hook_main(void *arg)
{
	struct http_webhooks *w = arg;
	int64_t next_check = 0; /* unix ms: when to look at the store again */
	health_thread_subsys(HEALTH_WEBHOOKS);
	while (!atomic_load(&w->stopping)) {
		int64_t now = time_now_ms();
		if (atomic_exchange(&w->kicked, false) || now >= next_check)
			next_check = hook_load(w, now);
		int running = 0;
		curl_multi_perform(w->multi, &running);
		if (hook_reap(w) > 0)
			next_check = 0; /* slots came free, retries were rescheduled */
		int64_t wait = next_check - time_now_ms();
		wait = MAX(0, MIN(wait, (int64_t)HOOK_IDLE_CHECK_MS));
		/* Returns on socket activity, libcurl's own timers, wait, or
		 * curl_multi_wakeup (enqueue, stop). */
		curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
	}
	/* Abandon what is in flight: the jobs stay due in the store. */
	if (w->ninflight > 0)
		log_info("event=webhooks_stopped abandoned=%zu", w->ninflight);
	while (w->inflight) {
		struct hook_req *r = w->inflight;
		w->inflight = r->next;
		curl_multi_remove_handle(w->multi, r->easy);
		hook_req_free(r);
	}
	w->ninflight = 0;
	return NULL;
}

/* ---- life cycle ----------------------------------------------------------------- */

static int64_t hook_fixed_retry_ms(void)
{
	const char *s = getenv(HOOK_RETRY_ENV);
	uint64_t v;
	if (s == NULL || s[0] == '\0')
		return 0;
	if (!str_to_u64(s, &v) || v > HOOK_GIVE_UP_MS) {
		log_warn("event=webhook_bad_env name=%s value=\"%s\"", HOOK_RETRY_ENV, s);
		return 0;
	}
	return (int64_t)v;
}

static void hook_free(struct http_webhooks *w)
{
	if (w->multi)
		curl_multi_cleanup(w->multi);
	hook_endpoints_free(w->conf_eps, w->nconf_eps);
	for (size_t i = 0; i < HOOK_USERS_MAX; i++) {
		free(w->users[i].user);
		hook_endpoints_free(w->users[i].eps, w->users[i].neps);
	}
	pthread_mutex_destroy(&w->cache_lock);
	free(w);
}

/* hook_conf_endpoints - copies of c's webhooks (*n of them). */
static struct hook_endpoint *hook_conf_endpoints(const struct conf *c, size_t *n)
{
	struct hook_endpoint *eps = xcalloc(c->nwebhooks ? c->nwebhooks : 1, sizeof *eps);
	for (*n = 0; *n < c->nwebhooks; (*n)++) {
		const struct conf_webhook *cw = &c->webhooks[*n];
		struct hook_endpoint *ep = &eps[*n];
		ep->url = xstrdup(cw->url);
		ep->secret = xstrdup(cw->secret ? cw->secret : "");
		ep->operator = true;
		ep->types = cw->nevents ? 0 : HOOK_ALL_TYPES;
		for (size_t k = 0; k < cw->nevents; k++) {
			enum evlog_type t;
			if (evlog_type_parse(cw->events[k], &t))
				ep->types |= 1u << t;
		}
	}
	return eps;
}

/* http_webhooks_reload - the endpoints and settings of c, for events enqueued
 * from now on (jobs already stored keep their URL and body). Any thread. */
void http_webhooks_reload(struct http_webhooks *w, const struct conf *c)
{
	if (w == NULL)
		return;
	size_t n;
	struct hook_endpoint *eps = hook_conf_endpoints(c, &n);
	pthread_mutex_lock(&w->cache_lock);
	struct hook_endpoint *old = w->conf_eps;
	size_t nold = w->nconf_eps;
	w->conf_eps = eps;
	w->nconf_eps = n;
	pthread_mutex_unlock(&w->cache_lock);
	atomic_store(&w->allow_private, c->http.webhooks_allow_private);
	hook_endpoints_free(old, nold);
	log_info("event=webhooks_reloaded endpoints=%zu", n);
}

/* hook_new - the endpoints of c and the store's jobs, without the sender thread. */
static struct http_webhooks *hook_new(const struct conf *c, struct store *st)
{
	pthread_once(&hook_curl_once, hook_curl_init);
	if (hook_curl_rc != CURLE_OK) {
		log_err("event=curl_init_failed error=\"%s\"", curl_easy_strerror(hook_curl_rc));
		return NULL;
	}
	struct http_webhooks *w = xcalloc(1, sizeof *w);
	w->st = st;
	pthread_mutex_init(&w->cache_lock, NULL);
	atomic_init(&w->stopping, false);
	atomic_init(&w->kicked, false);
	w->fixed_retry_ms = hook_fixed_retry_ms();
	atomic_init(&w->allow_private, c->http.webhooks_allow_private);
	w->conf_eps = hook_conf_endpoints(c, &w->nconf_eps);
	w->multi = curl_multi_init();
	if (w->multi == NULL) {
		hook_free(w);
		return NULL;
	}
	return w;
}

/* http_webhooks_start - copy the config's endpoints, start the sender thread
 * (which first sends whatever jobs a previous run left due). */
enum rc http_webhooks_start(const struct conf *c, struct store *st, struct http_webhooks **out)
{
	*out = NULL;
	struct http_webhooks *w = hook_new(c, st);
	if (w == NULL)
		return RC_NOMEM;
	if (pthread_create(&w->thread, NULL, hook_main, w) != 0) {
		hook_free(w);
		return RC_NOMEM;
	}
	log_info("event=webhooks_started endpoints=%zu retry_ms=%lld", w->nconf_eps,
	         (long long)w->fixed_retry_ms);
	*out = w;
	return RC_OK;
}

/* http_webhooks_stop - abandon the POSTs in flight (their jobs stay stored),
 * join the thread, free everything. */
void http_webhooks_stop(struct http_webhooks *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->stopping, true);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	hook_free(w);
}

/* http_webhooks_enqueue_offline - the jobs for evs, stored for the daemon's
 * sender to post once it runs (an offline `queue delete`). */
void http_webhooks_enqueue_offline(const struct conf *c, struct store *st,
				   struct evlog_event *const *evs, size_t n)
{
	struct http_webhooks *w = hook_new(c, st);
	if (w == NULL)
		return;
	http_webhooks_enqueue(w, evs, n);
	hook_free(w);
}
