/*
 * http_server.c - the API server: sockets, the API thread and its event loop,
 * routing, authentication, JSON replies and errors, and the table of commits in
 * flight.
 *
 * http_server_new binds http.listen (before privileges are dropped);
 * http_server_start runs an event_base with evhttp on a new thread. Every request
 * goes through one dispatcher (http_on_request): route by path, 405 with Allow
 * for a known path and another method, 404 otherwise, 401 without a valid
 * "Authorization: Bearer KEY", then the handler. Every answer is JSON, errors
 * included: {"error": {"status", "code", "message"}}.
 *
 * Commits: POST /v1/messages answers only once spool_commit says the message is
 * durable. The completion finds its request by a 64-bit cookie in a table, never
 * by a pointer: if the client's connection closes meanwhile, the close callback
 * forgets the request and the completion only records the events.
 *
 * Reload: http_server_reload binds the addresses a new conf adds on the main
 * loop (so that a failure is reported before anything changes), then hands the
 * conf and the sockets to the API thread, which swaps them in between two
 * requests: requests already read finish on the old conf (it stays referenced
 * until then), new ones see the new limits, timeouts and listeners.
 *
 * Stopping (http_server_stop, any thread): the listeners close at once, new
 * requests on open connections get 503, the commits in flight are answered, then
 * the loop ends and the thread is joined.
 */
#include "http/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "dkim/dkim.h"
#include "intake/intake.h"
#include "policy/policy.h"
#include "store/store.h"

enum {
	M_GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD,
	M_POST = EVHTTP_REQ_POST,
	M_DELETE = EVHTTP_REQ_DELETE,
};

struct http_route {
	const char *path;	/* exact, or the prefix of "/x/{id}" when tail */
	bool tail;
	unsigned methods;
	bool open;		/* no API key needed */
	void (*fn)(struct http_call *c);
};

static void http_api_openapi(struct http_call *c);
static void http_api_index(struct http_call *c);

static const struct http_route http_routes[] = {
	{"/v1/messages", false, M_POST, false, http_api_message_send},
	{"/v1/messages/", true, M_GET, false, http_api_message_get},
	{"/v1/events", false, M_GET, false, http_api_events},
	{"/v1/stats", false, M_GET, false, http_api_stats},
	{"/v1/suppressions", false, M_GET, false, http_api_suppressions_list},
	{"/v1/suppressions", false, M_POST, false, http_api_suppression_add},
	{"/v1/suppressions/", true, M_DELETE, false, http_api_suppression_del},
	{"/v1/webhooks", false, M_GET, false, http_api_webhooks_list},
	{"/v1/webhooks", false, M_POST, false, http_api_webhook_add},
	{"/v1/webhooks/", true, M_DELETE, false, http_api_webhook_del},
	{"/v1/openapi.json", false, M_GET, true, http_api_openapi},
	{"/v1/", false, M_GET, true, http_api_index},
	{"/v1/health", false, M_GET, true, http_api_health},
};

/* ---- replies ------------------------------------------------------------------ */

/* http_reason_phrase - see http_int.h. */
const char *http_reason_phrase(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		{200, "OK"},
		{201, "Created"},
		{202, "Accepted"},
		{400, "Bad Request"},
		{401, "Unauthorized"},
		{403, "Forbidden"},
		{404, "Not Found"},
		{405, "Method Not Allowed"},
		{408, "Request Timeout"},
		{411, "Length Required"},
		{413, "Payload Too Large"},
		{431, "Request Header Fields Too Large"},
		{500, "Internal Server Error"},
		{501, "Not Implemented"},
		{503, "Service Unavailable"},
	};
	for (size_t i = 0; i < ARRAY_LEN(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

/* http_reply_text - send a JSON document; json is free()d. */
void http_reply_text(struct evhttp_request *req, int status, char *json)
{
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, json, strlen(json));
	evbuffer_add(buf, "\n", 1);
	free(json);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_send_reply(req, status, http_reason_phrase(status), buf);
	evbuffer_free(buf);
}

/* http_reply_json - send body (its reference is taken over). */
void http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(body);
	if (s == NULL)
		fatal("event=json_dumps_failed");
	http_reply_text(req, status, s);
}

/* utf8_seq_len - the length of the well-formed UTF-8 sequence at p (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *p)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* http_utf8_clean - replace every byte of s that is not part of a valid UTF-8
 * sequence (or is a control character) with '?': error texts quote the client,
 * cut to a length that may split a character. */
void http_utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq_len(p);
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

/* http_error_json - the JSON error document as text. */
char *http_error_json(int status, const char *code, const char *msg)
{
	char clean[HTTP_ERROR_TEXT_MAX];
	str_lcpy(clean, msg, sizeof clean);
	http_utf8_clean(clean);
	json_t *e = json_pack("{s:{s:i,s:s,s:s}}", "error", "status", status, "code", code,
			      "message", clean);
	if (e == NULL) /* overlong forms and the like: say less */
		e = json_pack("{s:{s:i,s:s,s:s}}", "error", "status", status, "code", code,
			      "message", http_reason_phrase(status));
	char *s = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(e);
	if (s == NULL)
		fatal("event=json_dumps_failed");
	return s;
}

/* http_error - the JSON error document. */
void http_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
{
	char msg[HTTP_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	http_reply_text(req, status, http_error_json(status, code, msg));
}

/* ---- query strings and bodies ----------------------------------------------------- */

/* http_query_only - refuse parameters that the route does not know. */
bool http_query_only(struct http_call *c, const char *const *allowed)
{
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &c->query, next)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(kv->key, allowed[i]) == 0;
		if (!ok) {
			http_error(c->req, 400, "unknown_parameter",
				   "unknown query parameter \"%.64s\"", kv->key);
			return false;
		}
	}
	return true;
}

/* http_query_limit - "limit", 1..HTTP_LIMIT_MAX. */
bool http_query_limit(struct http_call *c, size_t *out)
{
	const char *v = evhttp_find_header(&c->query, "limit");
	uint64_t n = HTTP_LIMIT_DEFAULT;
	if (v != NULL && (!str_to_u64(v, &n) || n < 1 || n > HTTP_LIMIT_MAX)) {
		http_error(c->req, 400, "invalid_parameter", "limit must be a number from 1 to %d",
			   HTTP_LIMIT_MAX);
		return false;
	}
	*out = (size_t)n;
	return true;
}

static bool http_digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* http_parse_rfc3339 - "2026-11-26T13:05:39(.123)?(Z|+01:00)". A space stands
 * for '+' in the offset, since query strings decode '+' as a space. */
static bool http_parse_rfc3339(const char *s, int64_t *ms)
{
	int y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0;
	if (strlen(s) < 20 || !http_digits(s, 4, &y) || s[4] != '-' ||
	    !http_digits(s + 5, 2, &mo) || s[7] != '-' || !http_digits(s + 8, 2, &d) ||
	    !strchr("Tt ", s[10]) || !http_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !http_digits(s + 14, 2, &mi) || s[16] != ':' || !http_digits(s + 17, 2, &sec))
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			frac *= 10;
	}
	int sign = 0;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		sign = 0;
	} else if ((*p == '+' || *p == '-' || *p == ' ') && strlen(p) == 6 &&
		   http_digits(p + 1, 2, &oh) && p[3] == ':' && http_digits(p + 4, 2, &om)) {
		sign = *p == '-' ? -1 : 1;
	} else {
		return false;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || oh > 23 ||
	    om > 59)
		return false;
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			.tm_min = mi, .tm_sec = sec == 60 ? 59 : sec}; /* a leap second */
	time_t local = timegm(&tm);
	struct tm back;
	/* timegm() normalises 31 February into March: such a date is an error. */
	if (gmtime_r(&local, &back) == NULL || back.tm_mday != d || back.tm_mon != mo - 1)
		return false;
	int64_t t = (int64_t)local + (sec == 60) - (int64_t)sign * (oh * 3600 + om * 60);
	if (t < 0)
		return false; /* before 1970: no event is that old */
	*ms = t * 1000 + frac;
	return true;
}

/* http_parse_time - unix seconds or RFC 3339, as unix ms. */
bool http_parse_time(const char *s, int64_t *ms)
{
	uint64_t secs;
	if (str_to_u64(s, &secs)) {
		if (secs > (uint64_t)INT64_MAX / 1000)
			return false;
		*ms = (int64_t)secs * 1000;
		return true;
	}
	return http_parse_rfc3339(s, ms);
}

/* http_query_time - a time parameter, 0 when absent. */
bool http_query_time(struct http_call *c, const char *name, int64_t *out)
{
	const char *v = evhttp_find_header(&c->query, name);
	*out = 0;
	if (v == NULL)
		return true;
	if (!http_parse_time(v, out)) {
		http_error(c->req, 400, "invalid_parameter",
			   "%s must be unix seconds or an RFC 3339 date-time "
			   "(2026-11-26T13:05:39Z)", name);
		return false;
	}
	return true;
}

/* http_body_json - parse the body as one JSON object. */
json_t *http_body_json(struct http_call *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	const char *text = len ? (const char *)evbuffer_pullup(in, -1) : "";
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		http_error(c->req, 400, "invalid_json", "malformed JSON at line %d column %d: %s",
			   jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		http_error(c->req, 400, "invalid_json", "the request must be a JSON object");
		return NULL;
	}
	return j;
}

/* http_time_json - "2026-11-26T13:05:39.123Z". */
json_t *http_time_json(int64_t ms)
{
	char when[40];
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof when - n, ".%03dZ", (int)(ms % 1000));
	return json_string(when);
}

/* ---- commits in flight ------------------------------------------------------------- */

static size_t pending_slot(const struct http_server *h, uint64_t cookie)
{
	return (size_t)((cookie * 0x9E3779B97F4A7C15ULL) >> 32) & (h->pending_size - 1);
}

static void pending_insert(struct http_server *h, struct http_pending *p)
{
	size_t j = pending_slot(h, p->cookie);
	while (h->pending[j])
		j = (j + 1) & (h->pending_size - 1);
	h->pending[j] = p;
}

static void pending_grow(struct http_server *h)
{
	struct http_pending **old = h->pending;
	size_t oldn = h->pending_size;
	h->pending_size = oldn ? oldn * 2 : 64;
	h->pending = xcalloc(h->pending_size, sizeof *h->pending);
	for (size_t i = 0; i < oldn; i++)
		if (old[i])
			pending_insert(h, old[i]);
	free(old);
}

/* http_on_close - a connection with a commit in flight closed: forget its request. */
static void http_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct http_server *h = arg;
	for (size_t i = 0; i < h->pending_size; i++) {
		struct http_pending *p = h->pending[i];
		if (p == NULL || p->evcon != evcon || p->req == NULL)
			continue;
		/* A request that libevent detached from its connection (the client
		 * went away while we owed the answer) is ours to free; an attached one
		 * is freed by libevent right after this callback. */
		if (evhttp_request_get_connection(p->req) == NULL)
			evhttp_request_free(p->req);
		p->req = NULL;
		p->evcon = NULL;
	}
}

/* http_pending_add - register p under a new cookie. */
uint64_t http_pending_add(struct http_server *h, struct http_pending *p)
{
	if ((h->npending + 1) * 2 > h->pending_size)
		pending_grow(h);
	p->cookie = ++h->next_cookie;
	p->evcon = evhttp_request_get_connection(p->req);
	if (p->evcon)
		evhttp_connection_set_closecb(p->evcon, http_on_close, h);
	pending_insert(h, p);
	h->npending++;
	return p->cookie;
}

/* http_pending_take - remove cookie's entry (backward-shift deletion). */
struct http_pending *http_pending_take(struct http_server *h, uint64_t cookie)
{
	if (h->pending_size == 0)
		return NULL;
	size_t mask = h->pending_size - 1, j;
	for (j = pending_slot(h, cookie); h->pending[j]; j = (j + 1) & mask)
		if (h->pending[j]->cookie == cookie)
			break;
	struct http_pending *p = h->pending[j];
	if (p == NULL)
		return NULL;
	h->pending[j] = NULL;
	h->npending--;
	for (size_t k = (j + 1) & mask; h->pending[k]; k = (k + 1) & mask) {
		struct http_pending *q = h->pending[k];
		h->pending[k] = NULL;
		pending_insert(h, q);
	}
	if (p->evcon)
		evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	return p;
}

void http_pending_free(struct http_pending *p)
{
	if (p == NULL)
		return;
	free(p);
}

/* http_server_idle - end the loop once stopping and nothing is in flight. */
void http_server_idle(struct http_server *h)
{
	if (h->stopping && h->npending == 0)
		event_base_loopexit(h->base, NULL);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void http_api_openapi(struct http_call *c)
{
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, http_openapi_json, http_openapi_json_len);
	evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
			  "application/json");
	evhttp_send_reply(c->req, 200, "OK", buf);
	evbuffer_free(buf);
}

/* http_api_index - GET /v1/: what answers here, without a key (the demo's banner
 * names this URL). */
static void http_api_index(struct http_call *c)
{
	if (!http_query_only(c, (const char *const[]){NULL}))
		return;
	http_reply_json(c->req, 200, json_pack("{s:s,s:s,s:s,s:s}", "name", "relevo", "version",
					      RELEVO_VERSION, "api", "v1", "openapi",
					      "/v1/openapi.json"));
}

/* http_route_path - does path name route r? Sets *tail for "/x/{id}" routes. */
static bool http_route_path(const struct http_route *r, const char *path, const char **tail)
{
	size_t n = strlen(r->path);
	if (!r->tail)
		return strcmp(path, r->path) == 0;
	if (strncmp(path, r->path, n) != 0 || path[n] == '\0' || strchr(path + n, '/'))
		return false;
	*tail = path + n;
	return true;
}

static void http_method_not_allowed(struct http_call *c, unsigned allowed)
{
	char allow[64] = "";
	static const struct {
		unsigned m;
		const char *name;
	} names[] = {{EVHTTP_REQ_GET, "GET"}, {EVHTTP_REQ_HEAD, "HEAD"},
		     {EVHTTP_REQ_POST, "POST"}, {EVHTTP_REQ_DELETE, "DELETE"}};
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (allowed & names[i].m)
			snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
				 allow[0] ? ", " : "", names[i].name);
	evhttp_add_header(evhttp_request_get_output_headers(c->req), "Allow", allow);
	http_error(c->req, 405, "method_not_allowed", "this path allows %s", allow);
}

/* http_bearer_key - see http_int.h. */
const char *http_bearer_key(const char *a)
{
	if (a == NULL || !str_has_prefix_ci(a, "Bearer "))
		return NULL;
	const char *key = a + 7;
	while (*key == ' ')
		key++;
	return key;
}

/* http_authenticate - the account of "Authorization: Bearer KEY", or a 401/503. */
static bool http_authenticate(struct http_call *c)
{
	const char *a = evhttp_find_header(evhttp_request_get_input_headers(c->req),
					   "Authorization");
	const char *key = http_bearer_key(a);
	enum rc rc = key ? policy_apikey_check(c->h->store, key, &c->user) : RC_PERMFAIL;
	if (rc == RC_OK)
		return true;
	if (rc == RC_TEMPFAIL) {
		log_err("event=http_auth_failed client=%s error=store_unavailable", c->client);
		http_error(c->req, 503, "unavailable", "cannot check the API key right now, "
			   "try again later");
		return false;
	}
	log_info("event=http_auth_refused client=%s reason=%s", c->client,
		 a == NULL ? "no_authorization" : "bad_key");
	evhttp_add_header(evhttp_request_get_output_headers(c->req), "WWW-Authenticate",
			  "Bearer realm=\"relevo\"");
	http_error(c->req, 401, "unauthorized",
		   a == NULL ? "an API key is required: Authorization: Bearer KEY"
			     : "the API key is not valid");
	return false;
}

static void http_client_address(struct http_call *c)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
	char *addr = NULL;
	ev_uint16_t port = 0;
	if (evcon)
		evhttp_connection_get_peer(evcon, &addr, &port);
	str_lcpy(c->client, addr ? addr : "unknown", sizeof c->client);
}

/* http_dispatch - route, authenticate, run the handler. */
static void http_dispatch(struct http_call *c, const char *path)
{
	unsigned allowed = 0;
	for (size_t i = 0; i < ARRAY_LEN(http_routes); i++) {
		const struct http_route *r = &http_routes[i];
		const char *tail = NULL;
		if (!http_route_path(r, path, &tail))
			continue;
		allowed |= r->methods;
		if (!(r->methods & (unsigned)c->method))
			continue;
		char *decoded = NULL;
		if (tail) {
			size_t n = 0;
			decoded = evhttp_uridecode(tail, 0, &n);
			if (decoded == NULL || strlen(decoded) != n) {
				free(decoded);
				http_error(c->req, 400, "invalid_path", "the path is malformed");
				return;
			}
			c->tail = decoded;
		}
		if (r->open || http_authenticate(c))
			r->fn(c);
		free(decoded);
		return;
	}
	if (allowed)
		http_method_not_allowed(c, allowed);
	else
		http_error(c->req, 404, "not_found", "no such endpoint: %.200s", path);
}

/* http_on_request - every request (evhttp's generic callback). */
static void http_on_request(struct evhttp_request *req, void *arg)
{
	struct http_call c = {.h = arg, .req = req, .method = evhttp_request_get_command(req)};
	TAILQ_INIT(&c.query);
	http_guard_request(c.h, req);
	http_client_address(&c);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	if (path == NULL || path[0] == '\0')
		path = "/";
	if (c.h->stopping) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		http_error(req, 503, "shutting_down", "the server is shutting down, try again "
			   "shortly");
	} else if (query && evhttp_parse_query_str(query, &c.query) != 0) {
		http_error(req, 400, "invalid_query", "the query string is malformed");
	} else {
		http_dispatch(&c, path);
	}
	evhttp_clear_headers(&c.query);
	store_user_free(c.user);
}

/* ---- the thread ------------------------------------------------------------------------ */

static void http_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *h = arg;
	h->stopping = true;
	for (size_t i = 0; i < h->nsocks; i++) {
		if (h->socks[i] == NULL)
			continue;
		evhttp_del_accept_socket(h->http, h->socks[i]);
		health_listening(HEALTH_LISTENER_API, h->conf->http.listen[i].address, false);
	}
	h->nsocks = 0;
	log_info("event=http_stopping commits_in_flight=%zu", h->npending);
	http_server_idle(h);
}

static void *http_thread_main(void *arg)
{
	struct http_server *h = arg;
	health_thread_subsys(HEALTH_HTTP);
	event_base_loop(h->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* http_bind - a listening socket for one http.listen address, or -1 after
 * logging the address and the reason (and writing "ADDRESS: reason" to err). */
static evutil_socket_t http_bind(const struct conf_listen *l, char *err, size_t errsz)
{
	evutil_socket_t fd = net_listen_socket((const struct sockaddr *)&l->sa, l->salen);
	if (fd < 0) {
		snprintf(err, errsz, "%s: %s", l->address, strerror(errno));
		log_err("event=listen_failed address=%s what=http error=\"%s\"", l->address,
			strerror(errno));
	}
	return fd;
}

/* http_serve_fd - hand a bound socket to evhttp (which then owns it), through
 * http_guard_listen (a listener that pauses on EMFILE). */
static struct evhttp_bound_socket *http_serve_fd(struct http_server *h,
						 const struct conf_listen *l, evutil_socket_t fd)
{
	struct evhttp_bound_socket *s = http_guard_listen(h, l, fd);
	if (s == NULL)
		return NULL;
	log_info("event=listening address=%s mode=http", l->address);
	health_listening(HEALTH_LISTENER_API, l->address, true);
	return s;
}

/* http_apply_settings - the evhttp limits of h->conf. */
static void http_apply_settings(struct http_server *h)
{
	const struct conf *c = h->conf;
	evhttp_set_max_body_size(h->http, (ev_ssize_t)MIN(c->http.max_request_size,
							  (uint64_t)INT64_MAX));
	evhttp_set_timeout(h->http, (int)c->http.timeout);
}

static void http_reload_free(struct http_reload *r)
{
	if (r == NULL)
		return;
	for (size_t j = 0; j < r->conf->http.nlisten; j++)
		if (r->fds[j] >= 0)
			close(r->fds[j]);
	conf_unref(r->conf);
	free(r->fds);
	free(r->keep);
	free(r);
}

/* http_on_reload - on the API thread: the new listeners, conf and settings. */
static void http_on_reload(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *h = arg;
	pthread_mutex_lock(&h->reload_lock);
	struct http_reload *r = h->reload;
	h->reload = NULL;
	pthread_mutex_unlock(&h->reload_lock);
	if (r == NULL)
		return;
	if (h->stopping) {
		http_reload_free(r); /* listeners stay closed; nobody waits for done */
		return;
	}
	size_t n = r->conf->http.nlisten;
	struct evhttp_bound_socket **socks = xcalloc(n ? n : 1, sizeof *socks);
	for (size_t j = 0; j < n; j++) {
		if (r->fds[j] >= 0) {
			socks[j] = http_serve_fd(h, &r->conf->http.listen[j], r->fds[j]);
			r->fds[j] = -1;
		} else if (r->keep[j] < h->nsocks) {
			socks[j] = h->socks[r->keep[j]];
			h->socks[r->keep[j]] = NULL;
		}
	}
	for (size_t i = 0; i < h->nsocks; i++) {
		if (h->socks[i] == NULL)
			continue;
		log_info("event=listener_closed address=%s mode=http",
			 h->conf->http.listen[i].address);
		health_listening(HEALTH_LISTENER_API, h->conf->http.listen[i].address, false);
		evhttp_del_accept_socket(h->http, h->socks[i]);
	}
	free(h->socks);
	h->socks = socks;
	h->nsocks = n;
	conf_unref(h->conf);
	h->conf = conf_ref(r->conf);
	http_apply_settings(h);
	log_info("event=http_reloaded listeners=%zu", n);
	void (*done)(void *) = r->done;
	void *done_arg = r->arg;
	http_reload_free(r);
	if (done)
		done(done_arg);
}

/* http_server_reload - see http.h. */
enum rc http_server_reload(struct http_server *h, const struct conf *nc, char **errs,
			   void (*done)(void *arg), void *arg)
{
	const struct conf *oc = h->listen_conf;
	size_t n = nc->http.nlisten;
	struct http_reload *r = xcalloc(1, sizeof *r);
	r->conf = conf_ref(nc);
	r->fds = xcalloc(n ? n : 1, sizeof *r->fds);
	r->keep = xcalloc(n ? n : 1, sizeof *r->keep);
	r->done = done;
	r->arg = arg;
	bool ok = true;
	char err[512];
	for (size_t j = 0; j < n; j++) {
		size_t i;
		for (i = 0; i < oc->http.nlisten; i++)
			if (conf_listen_same(&oc->http.listen[i], &nc->http.listen[j]))
				break;
		r->keep[j] = i;
		r->fds[j] = -1;
		if (i < oc->http.nlisten)
			continue;
		r->fds[j] = http_bind(&nc->http.listen[j], err, sizeof err);
		if (r->fds[j] < 0) {
			char *s = xasprintf("%shttp.listen[%zu]: %s\n", *errs ? *errs : "", j, err);
			free(*errs);
			*errs = s;
			ok = false;
		}
	}
	if (!ok) {
		http_reload_free(r);
		return RC_INVALID;
	}
	conf_unref(h->listen_conf);
	h->listen_conf = conf_ref(nc);
	pthread_mutex_lock(&h->reload_lock);
	struct http_reload *stale = h->reload;
	h->reload = r;
	pthread_mutex_unlock(&h->reload_lock);
	if (stale != NULL)
		fatal("event=http_reload_overlap"); /* cli_reload.c runs one at a time */
	event_active(h->reload_ev, 0, 0);
	return RC_OK;
}

/* http_server_new - evhttp on a new event base, bound to http.listen. */
enum rc http_server_new(const struct conf *c, struct spool *sp, struct store *st,
			struct http_server **out)
{
	*out = NULL;
	if (c->http.nlisten == 0)
		return RC_OK;
	core_threads_init();
	struct http_server *h = xcalloc(1, sizeof *h);
	h->conf = conf_ref(c);
	h->listen_conf = conf_ref(c);
	pthread_mutex_init(&h->reload_lock, NULL);
	h->spool = sp;
	h->store = st;
	h->base = event_base_new();
	if (h->base == NULL)
		fatal("event=event_base_new_failed");
	h->http = evhttp_new(h->base);
	if (h->http == NULL)
		fatal("event=evhttp_new_failed");
	h->stop_ev = event_new(h->base, -1, 0, http_on_stop, h);
	h->reload_ev = event_new(h->base, -1, 0, http_on_reload, h);
	h->dkim = dkim_cache_new(policy_dkim_load, st);
	h->intake = intake_new(st, sp, h->dkim);
	evhttp_set_gencb(h->http, http_on_request, h);
	evhttp_set_bevcb(h->http, http_guard_bev, h);
	http_apply_settings(h);
	evhttp_set_max_headers_size(h->http, HTTP_HEADERS_SIZE_MAX);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	/* Read an oversized body to its end before answering 413, so that the client
	 * sees the answer instead of a reset connection. */
	evhttp_set_flags(h->http, EVHTTP_SERVER_LINGERING_CLOSE);
	h->socks = xcalloc(c->http.nlisten, sizeof *h->socks);
	char err[512];
	for (size_t i = 0; i < c->http.nlisten; i++, h->nsocks++) {
		evutil_socket_t fd = http_bind(&c->http.listen[i], err, sizeof err);
		if (fd < 0 || (h->socks[i] = http_serve_fd(h, &c->http.listen[i], fd)) == NULL) {
			http_server_free(h);
			return RC_IO;
		}
	}
	*out = h;
	return RC_OK;
}

/* http_server_start - the API thread. */
enum rc http_server_start(struct http_server *h)
{
	if (h == NULL)
		return RC_OK;
	if (pthread_create(&h->thread, NULL, http_thread_main, h) != 0)
		fatal("event=pthread_create_failed where=http");
	h->running = true;
	return RC_OK;
}

/* http_server_stop - close the listeners, answer the commits in flight, join. */
void http_server_stop(struct http_server *h)
{
	if (h == NULL || !h->running)
		return;
	event_active(h->stop_ev, 0, 0);
	pthread_join(h->thread, NULL);
	h->running = false;
}

/* http_server_free - close every connection and free (after http_server_stop). */
void http_server_free(struct http_server *h)
{
	if (h == NULL)
		return;
	http_server_stop(h);
	if (h->http)
		evhttp_free(h->http);
	/* evhttp_free freed the connections' filters; their finalizers and the
	 * guard's last callbacks run on the loop: let them, then free the rest. */
	for (int i = 0; h->base && i < 3; i++)
		event_base_loop(h->base, EVLOOP_NONBLOCK);
	http_guard_fini(h);
	for (size_t i = 0; i < h->pending_size; i++)
		http_pending_free(h->pending[i]);
	free(h->pending);
	free(h->socks);
	if (h->stop_ev)
		event_free(h->stop_ev);
	if (h->reload_ev)
		event_free(h->reload_ev);
	http_reload_free(h->reload);
	pthread_mutex_destroy(&h->reload_lock);
	conf_unref(h->conf);
	conf_unref(h->listen_conf);
	intake_free(h->intake);
	dkim_cache_free(h->dkim);
	event_base_free(h->base);
	free(h);
}
