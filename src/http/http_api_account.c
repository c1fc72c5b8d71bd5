/*
 * http_api_account.c - the account's own data: GET /v1/events, GET /v1/stats,
 * /v1/suppressions and /v1/webhooks.
 *
 * Every query is scoped to the API key's account (store filters by user), so
 * one account never sees another's events, suppressions or webhooks.
 *
 * Pagination: lists return {"...": [...], "next": CURSOR or null}; the next page
 * is ?cursor=CURSOR with the same filters. An events cursor is the last event's
 * sequence number (the next page has the events after it in the order asked,
 * ?order=asc or desc); a suppressions cursor is the hex of the last address (opaque,
 * so that no address character needs URL-encoding).
 *
 * Store calls block: they run on the API thread (docs/decisions.md), which is
 * not an SMTP loop.
 */
#include "http/http_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/buffer.h>

#include "store/store.h"

#define SUPPRESSION_REASON_MAX 500
#define WEBHOOK_URL_MAX 2048
#define WEBHOOK_SECRET_MIN 16
#define WEBHOOK_SECRET_MAX 256
#define WEBHOOK_SECRET_BYTES 32	/* generated secrets: 256 bits, as 64 hex digits */

static const char *const no_params[] = {NULL};

static void store_failed(struct http_call *c, const char *what, enum rc rc)
{
	log_err("event=http_store_failed what=%s user=%s rc=%s", what, c->user->name,
		rc_name(rc));
	http_error(c->req, 503, "unavailable", "the event store is unavailable, try again");
}

/* ---- GET /v1/events ------------------------------------------------------------- */

struct events_page {
	struct evbuffer *out;	/* the JSON being written */
	size_t limit, n;
	int64_t last_seq;
	bool more;		/* a (limit + 1)th event exists */
};

static bool events_on_event(void *arg, const struct evlog_event *ev)
{
	struct events_page *pg = arg;
	if (pg->n == pg->limit) {
		pg->more = true;
		return false;
	}
	char *j = http_event_json(ev);
	evbuffer_add_printf(pg->out, "%s%s", pg->n ? "," : "", j);
	free(j);
	pg->n++;
	pg->last_seq = ev->seq;
	return true;
}

/* events_filter - the query parameters as a store filter; false after a 400. */
static bool events_filter(struct http_call *c, struct store_event_filter *f)
{
	static const char *const params[] = {"message_id", "recipient", "type", "since",
					     "until", "limit", "cursor", "order", NULL};
	const char *v;
	if (!http_query_only(c, params) || !http_query_limit(c, &f->limit) ||
	    !http_query_time(c, "since", &f->since) || !http_query_time(c, "until", &f->until))
		return false;
	if ((v = evhttp_find_header(&c->query, "order")) && strcmp(v, "asc") != 0 &&
	    strcmp(v, "desc") != 0) {
		http_error(c->req, 400, "invalid_parameter", "order must be asc or desc");
		return false;
	}
	f->descending = v && strcmp(v, "desc") == 0;
	if ((v = evhttp_find_header(&c->query, "message_id")) && !id_parse(v, &f->msgid)) {
		http_error(c->req, 400, "invalid_parameter", "message_id must be 16 hex digits");
		return false;
	}
	enum evlog_type t;
	if ((v = evhttp_find_header(&c->query, "type"))) {
		if (!evlog_type_parse(v, &t)) {
			http_error(c->req, 400, "invalid_parameter",
				   "type must be an event type (accepted, delivered, deferred, "
				   "bounced, expired, suppressed, rejected, ...)");
			return false;
		}
		f->type = (int)t;
	}
	uint64_t cur = 0;
	if ((v = evhttp_find_header(&c->query, "cursor")) &&
	    (!str_to_u64(v, &cur) || cur == 0 || cur > (uint64_t)INT64_MAX)) {
		http_error(c->req, 400, "invalid_parameter", "cursor is not one this API returned");
		return false;
	}
	f->cursor = (int64_t)cur;
	f->recipient = evhttp_find_header(&c->query, "recipient");
	return true;
}

/* http_api_events - GET /v1/events: oldest first (order=desc: newest first),
 * paginated; the cursor continues in the order asked. */
void http_api_events(struct http_call *c)
{
	struct store_event_filter f = {.user = c->user->name, .type = -1};
	if (!events_filter(c, &f))
		return;
	struct events_page pg = {.out = evbuffer_new(), .limit = f.limit};
	f.limit = f.limit + 1;
	evbuffer_add(pg.out, "{\"events\":[", 11);
	enum rc rc = store_events_query(c->h->store, &f, events_on_event, &pg);
	if (rc != RC_OK) {
		evbuffer_free(pg.out);
		store_failed(c, "events", rc);
		return;
	}
	if (pg.more)
		evbuffer_add_printf(pg.out, "],\"next\":\"%lld\"}", (long long)pg.last_seq);
	else
		evbuffer_add(pg.out, "],\"next\":null}", 14);
	size_t len = evbuffer_get_length(pg.out);
	char *text = xstrndup((const char *)evbuffer_pullup(pg.out, -1), len);
	evbuffer_free(pg.out);
	http_reply_text(c->req, 200, text);
}

/* ---- GET /v1/stats ------------------------------------------------------------------- */

static bool stats_on_row(void *arg, const char *key, const uint64_t counts[EVLOG__COUNT])
{
	json_t *o = json_pack("{s:s}", "key", key);
	if (o == NULL)
		o = json_pack("{s:s}", "key", "?");
	for (int t = 0; t < EVLOG__COUNT; t++)
		json_object_set_new(o, evlog_type_name((enum evlog_type)t),
				    json_integer((json_int_t)counts[t]));
	json_array_append_new(arg, o);
	return true;
}

/* http_api_stats - GET /v1/stats?group=total|day|hour|domain&since&until. */
void http_api_stats(struct http_call *c)
{
	static const char *const params[] = {"group", "since", "until", NULL};
	static const char *const groups[] = {[STORE_STATS_TOTAL] = "total",
					     [STORE_STATS_DAY] = "day",
					     [STORE_STATS_HOUR] = "hour",
					     [STORE_STATS_DOMAIN] = "domain"};
	int64_t since, until;
	if (!http_query_only(c, params) || !http_query_time(c, "since", &since) ||
	    !http_query_time(c, "until", &until))
		return;
	const char *g = evhttp_find_header(&c->query, "group");
	size_t gi = 0;
	while (g && gi < ARRAY_LEN(groups) && strcmp(g, groups[gi]) != 0)
		gi++;
	if (gi == ARRAY_LEN(groups)) {
		http_error(c->req, 400, "invalid_parameter",
			   "group must be total, day, hour or domain");
		return;
	}
	json_t *rows = json_array();
	enum rc rc = store_events_stats(c->h->store, c->user->name, since, until,
					(enum store_stats_group)gi, stats_on_row, rows);
	if (rc != RC_OK) {
		json_decref(rows);
		store_failed(c, "stats", rc);
		return;
	}
	json_t *o = json_pack("{s:s,s:o}", "group", groups[gi], "stats", rows);
	if (since)
		json_object_set_new(o, "since", http_time_json(since));
	if (until)
		json_object_set_new(o, "until", http_time_json(until));
	http_reply_json(c->req, 200, o);
}

/* ---- /v1/suppressions ------------------------------------------------------------------ */

static char *hex_encode(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	char *o = xmalloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		o[2 * i] = hex[(unsigned char)s[i] >> 4];
		o[2 * i + 1] = hex[(unsigned char)s[i] & 15];
	}
	o[2 * n] = '\0';
	return o;
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* hex_decode - NULL unless s is even-length lower-case hex of a string without NUL. */
static char *hex_decode(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n % 2 || n > 2 * HTTP_MIME_ADDR_MAX)
		return NULL;
	char *o = xmalloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int a = hex_digit(s[2 * i]), b = hex_digit(s[2 * i + 1]);
		if (a < 0 || b < 0 || (a | b) == 0) {
			free(o);
			return NULL;
		}
		o[i] = (char)(a << 4 | b);
	}
	o[n / 2] = '\0';
	return o;
}

struct supp_page {
	json_t *list;
	size_t limit;
	bool more;
	char *last;
};

static bool supp_on_row(void *arg, const struct store_suppression *s)
{
	struct supp_page *pg = arg;
	if (json_array_size(pg->list) == pg->limit) {
		pg->more = true;
		return false;
	}
	json_t *o = json_pack("{s:s,s:s?,s:o}", "address", s->address, "reason", s->reason,
			      "created", http_time_json(s->created));
	if (o)
		json_array_append_new(pg->list, o);
	free(pg->last);
	pg->last = xstrdup(s->address);
	return true;
}

/* http_api_suppressions_list - GET /v1/suppressions, in address order. */
void http_api_suppressions_list(struct http_call *c)
{
	static const char *const params[] = {"limit", "cursor", NULL};
	struct supp_page pg = {.list = json_array()};
	char *after = NULL;
	const char *cur;
	if (!http_query_only(c, params) || !http_query_limit(c, &pg.limit))
		goto out;
	if ((cur = evhttp_find_header(&c->query, "cursor")) && !(after = hex_decode(cur))) {
		http_error(c->req, 400, "invalid_parameter", "cursor is not one this API returned");
		goto out;
	}
	enum rc rc = store_suppression_list(c->h->store, c->user->name, after, pg.limit + 1,
					    supp_on_row, &pg);
	if (rc != RC_OK) {
		store_failed(c, "suppressions", rc);
		goto out;
	}
	char *cursor = pg.more && pg.last ? hex_encode(pg.last) : NULL;
	json_t *next = cursor ? json_string(cursor) : json_null();
	free(cursor);
	http_reply_json(c->req, 200, json_pack("{s:O,s:o}", "suppressions", pg.list, "next",
					      next));
out:
	json_decref(pg.list);
	free(pg.last);
	free(after);
}

/* body_string - an optional string member; false after a 400. */
static bool body_string(struct http_call *c, json_t *body, const char *key, const char **out)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v))) {
		http_error(c->req, 400, "invalid_field", "\"%s\" must be a string", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

static bool body_only(struct http_call *c, json_t *body, const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach(body, k, v)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(k, allowed[i]) == 0;
		if (!ok) {
			http_error(c->req, 400, "unknown_field", "unknown field \"%.64s\"", k);
			return false;
		}
	}
	return true;
}

static bool is_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* http_api_suppression_add - POST /v1/suppressions {"address", "reason"}. */
void http_api_suppression_add(struct http_call *c)
{
	static const char *const fields[] = {"address", "reason", NULL};
	const char *addr, *reason;
	json_t *body = NULL;
	if (!http_query_only(c, no_params) || !(body = http_body_json(c)) ||
	    !body_only(c, body, fields) || !body_string(c, body, "address", &addr) ||
	    !body_string(c, body, "reason", &reason))
		goto out;
	if (addr == NULL || !http_addr_valid(addr)) {
		http_error(c->req, 400, addr ? "invalid_address" : "missing_field",
			   "\"address\" must be an address (local@domain)");
		goto out;
	}
	if (reason && (strlen(reason) > SUPPRESSION_REASON_MAX || !is_printable(reason))) {
		http_error(c->req, 400, "invalid_field", "\"reason\" must be at most %d "
			   "printable characters", SUPPRESSION_REASON_MAX);
		goto out;
	}
	char *lower = xstrdup(addr), *stored = NULL;
	str_lower(lower);
	int64_t created = 0;
	enum rc rc = store_suppression_add(c->h->store, c->user->name, lower,
					   reason ? reason : "manual");
	if (rc == RC_OK)
		log_info("event=suppression_added user=%s address=<%s> source=api",
			 c->user->name, lower);
	/* the answer is the entry as stored (an existing one keeps its reason) */
	enum rc grc = rc == RC_OK || rc == RC_EXISTS
			      ? store_suppression_get(c->h->store, c->user->name, lower, &stored,
						      &created)
			      : rc;
	if (grc == RC_OK)
		http_reply_json(c->req, rc == RC_OK ? 201 : 200,
				json_pack("{s:s,s:s,s:o,s:b}", "address", lower, "reason", stored,
					  "created", http_time_json(created), "added",
					  rc == RC_OK));
	else
		store_failed(c, "suppression_add", grc);
	free(stored);
	free(lower);
out:
	json_decref(body);
}

/* http_api_suppression_del - DELETE /v1/suppressions/{address}. */
void http_api_suppression_del(struct http_call *c)
{
	if (!http_query_only(c, no_params))
		return;
	char *lower = xstrdup(c->tail);
	str_lower(lower);
	enum rc rc = store_suppression_del(c->h->store, c->user->name, lower);
	if (rc == RC_OK) {
		log_info("event=suppression_deleted user=%s address=<%s>", c->user->name, lower);
		http_reply_json(c->req, 200, json_pack("{s:s,s:b}", "address", lower, "deleted", 1));
	} else if (rc == RC_NOTFOUND) {
		http_error(c->req, 404, "not_found", "%.300s is not on the suppression list",
			   lower);
	} else {
		store_failed(c, "suppression_del", rc);
	}
	free(lower);
}

/* ---- /v1/webhooks ------------------------------------------------------------------------ */

/* webhook_events_json - "delivered,bounced" as a JSON list ([] = every type). */
static json_t *webhook_events_json(const char *events)
{
	json_t *a = json_array();
	const char *p = events ? events : "";
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n > 0)
			json_array_append_new(a, json_stringn(p, n));
		p += n + (p[n] == ',');
	}
	return a;
}

static bool webhooks_on_row(void *arg, const struct store_webhook *w)
{
	json_t *o = json_pack("{s:I,s:s,s:o,s:o}", "id", (json_int_t)w->id, "url", w->url,
			      "events", webhook_events_json(w->events), "created",
			      http_time_json(w->created));
	if (o)
		json_array_append_new(arg, o);
	return true;
}

/* The list entry of one webhook (what POST answers, without the list's order). */
struct webhook_find {
	int64_t id;
	json_t *found;
};

static bool webhook_find_on_row(void *arg, const struct store_webhook *w)
{
	struct webhook_find *wf = arg;
	if (w->id != wf->id)
		return true;
	json_t *one = json_array();
	webhooks_on_row(one, w);
	wf->found = json_incref(json_array_get(one, 0));
	json_decref(one);
	return false;
}

/* http_api_webhooks_list - GET /v1/webhooks (secrets are never shown again). */
void http_api_webhooks_list(struct http_call *c)
{
	if (!http_query_only(c, no_params))
		return;
	json_t *list = json_array();
	enum rc rc = store_webhook_list(c->h->store, c->user->name, webhooks_on_row, list);
	if (rc != RC_OK) {
		json_decref(list);
		store_failed(c, "webhooks", rc);
		return;
	}
	http_reply_json(c->req, 200, json_pack("{s:o}", "webhooks", list));
}

static bool webhook_url_ok(const char *u)
{
	size_t n = strlen(u);
	bool http = str_has_prefix_ci(u, "http://") && n > 7;
	bool https = str_has_prefix_ci(u, "https://") && n > 8;
	if (n > WEBHOOK_URL_MAX || !(http || https))
		return false;
	for (; *u; u++)
		if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f)
			return false;
	return true;
}

/* webhook_events - the "events" list as "a,b" (NULL after a 400). */
static char *webhook_events(struct http_call *c, json_t *v)
{
	if (v == NULL || json_is_null(v))
		return xstrdup("");
	if (!json_is_array(v)) {
		http_error(c->req, 400, "invalid_field", "\"events\" must be a list of event types");
		return NULL;
	}
	struct evbuffer *b = evbuffer_new();
	size_t i;
	json_t *e;
	enum evlog_type t;
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e) || !evlog_type_parse(json_string_value(e), &t)) {
			http_error(c->req, 400, "invalid_field",
				   "events[%zu] is not an event type (accepted, delivered, "
				   "deferred, bounced, expired, suppressed, rejected, ...)", i);
			evbuffer_free(b);
			return NULL;
		}
		evbuffer_add_printf(b, "%s%s", i ? "," : "", evlog_type_name(t));
	}
	size_t len = evbuffer_get_length(b);
	char *s = xstrndup(len ? (const char *)evbuffer_pullup(b, -1) : "", len);
	evbuffer_free(b);
	return s;
}

static char *webhook_new_secret(void)
{
	unsigned char r[WEBHOOK_SECRET_BYTES];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		fatal("event=getrandom_failed");
	char *s = xmalloc(2 * sizeof r + 1);
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof r; i++) {
		s[2 * i] = hex[r[i] >> 4];
		s[2 * i + 1] = hex[r[i] & 15];
	}
	s[2 * sizeof r] = '\0';
	return s;
}

/* http_api_webhook_add - POST /v1/webhooks {"url", "secret"?, "events"?}. */
void http_api_webhook_add(struct http_call *c)
{
	static const char *const fields[] = {"url", "secret", "events", NULL};
	const char *url, *secret;
	char *events = NULL, *made = NULL;
	json_t *body = NULL;
	if (!http_query_only(c, no_params) || !(body = http_body_json(c)) ||
	    !body_only(c, body, fields) || !body_string(c, body, "url", &url) ||
	    !body_string(c, body, "secret", &secret))
		goto out;
	if (url == NULL || !webhook_url_ok(url)) {
		http_error(c->req, 400, url ? "invalid_field" : "missing_field",
			   "\"url\" must be an http:// or https:// URL of at most %d characters",
			   WEBHOOK_URL_MAX);
		goto out;
	}
	if (!c->h->conf->http.webhooks_allow_private && http_webhook_url_private(url)) {
		http_error(c->req, 400, "invalid_field",
			   "\"url\" points at a private or loopback address, which this relay "
			   "does not post to (http.webhooks_allow_private)");
		goto out;
	}
	size_t slen = secret ? strlen(secret) : 0;
	if (secret && (slen < WEBHOOK_SECRET_MIN || slen > WEBHOOK_SECRET_MAX ||
		       !is_printable(secret))) {
		http_error(c->req, 400, "invalid_field", "\"secret\" must be %d to %d printable "
			   "characters (or absent: one is generated)", WEBHOOK_SECRET_MIN,
			   WEBHOOK_SECRET_MAX);
		goto out;
	}
	if (!(events = webhook_events(c, json_object_get(body, "events"))))
		goto out;
	if (secret == NULL)
		secret = made = webhook_new_secret();
	int64_t id = 0;
	enum rc rc = store_webhook_add(c->h->store, c->user->name, url, secret, events, &id);
	if (rc != RC_OK) {
		store_failed(c, "webhook_add", rc);
		goto out;
	}
	log_info("event=webhook_added user=%s id=%lld", c->user->name, (long long)id);
	/* the members of a list entry, created read back as stored (if that read
	 * fails, the webhook exists all the same: its time is then about now) */
	struct webhook_find wf = {.id = id};
	if (store_webhook_list(c->h->store, c->user->name, webhook_find_on_row, &wf) != RC_OK ||
	    wf.found == NULL)
		wf.found = json_pack("{s:I,s:s,s:o,s:o}", "id", (json_int_t)id, "url", url,
				     "events", webhook_events_json(events), "created",
				     http_time_json(time_now_ms()));
	if (made) /* shown this once */
		json_object_set_new(wf.found, "secret", json_string(made));
	http_reply_json(c->req, 201, wf.found);
out:
	free(events);
	free(made);
	json_decref(body);
}

/* http_api_webhook_del - DELETE /v1/webhooks/{id}. */
void http_api_webhook_del(struct http_call *c)
{
	uint64_t id;
	if (!http_query_only(c, no_params))
		return;
	enum rc rc = str_to_u64(c->tail, &id) && id <= (uint64_t)INT64_MAX
			     ? store_webhook_del(c->h->store, c->user->name, (int64_t)id)
			     : RC_NOTFOUND;
	if (rc == RC_OK) {
		log_info("event=webhook_deleted user=%s id=%llu", c->user->name,
			 (unsigned long long)id);
		http_reply_json(c->req, 200, json_pack("{s:I,s:b}", "id", (json_int_t)id,
						       "deleted", 1));
	} else if (rc == RC_NOTFOUND) {
		http_error(c->req, 404, "not_found", "no webhook %.40s", c->tail);
	} else {
		store_failed(c, "webhook_del", rc);
	}
}
