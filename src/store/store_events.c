/*
 * store_events.c - the event history in the SQLite store: batched inserts from
 * the event sink, filtered and paginated reads and per-type counts for the API,
 * and pruning by age.
 *
 * Rows: one per struct evlog_event; seq is the row id (AUTOINCREMENT, so never
 * reused and a valid pagination cursor forever); msgid is the 16-hex-digit queue
 * id or NULL; rcpt_domain is the lower-cased part of the recipient after its last
 * '@' ("" without one), kept for the per-domain statistics.
 *
 * SQL: the WHERE clauses of queries and statistics are assembled from constant
 * fragments (struct ev_sql) with every value bound as a numbered parameter;
 * nothing from the caller is ever spliced into the text.
 *
 * Threads: every call holds the store's main lock; query and stats call fn with
 * it held, so fn must not call back into the same store. Pruning takes and drops
 * the lock per chunk, so a large prune never holds the writer lock for long.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

#define EV_QUERY_LIMIT_DEFAULT 100
#define EV_PRUNE_CHUNK         10000
#define EV_SQL_MAX             1024

/* Numbered parameters of the filter fragments, shared by query and stats. */
enum {
	EV_P_USER = 1,
	EV_P_MSGID,
	EV_P_RCPT,
	EV_P_TYPE,
	EV_P_SINCE,
	EV_P_UNTIL,
	EV_P_CURSOR,
	EV_P_LIMIT,
};

static const char ev_columns[] =
    "SELECT seq, time, type, msgid, recipient, sender, username, stream, source, "
    "status, class, remote, reply, attempts FROM events";

/* A statement text built from constant fragments only. */
struct ev_sql {
	char buf[EV_SQL_MAX];
	size_t len;
	bool where; /* a condition was added */
};

/* Append a constant fragment; overflow is a bug in this file. */
static void ev_sql_add(struct ev_sql *q, const char *frag)
{
	size_t n = strlen(frag);
	if (q->len + n >= sizeof q->buf)
		fatal("event=store_bug op=ev_sql msg=\"statement too long\"");
	memcpy(q->buf + q->len, frag, n + 1);
	q->len += n;
}

/* Append a condition, joined with WHERE or AND. */
static void ev_sql_cond(struct ev_sql *q, const char *cond)
{
	ev_sql_add(q, q->where ? " AND " : " WHERE ");
	ev_sql_add(q, cond);
	q->where = true;
}

/* The conditions common to queries and statistics. */
static void ev_sql_range(struct ev_sql *q, const char *user, int64_t since, int64_t until)
{
	if (user)
		ev_sql_cond(q, "username = ?1");
	if (since)
		ev_sql_cond(q, "time >= ?5");
	if (until)
		ev_sql_cond(q, "time < ?6");
}

/* Prepare q on the main connection; caller holds the lock. */
static enum rc ev_prepare(struct store *st, const char *op, const struct ev_sql *q,
                          sqlite3_stmt **s)
{
	pthread_mutex_t *lock;
	int src = sqlite3_prepare_v2(store_db(st, &lock), q->buf, -1, s, NULL);
	return src == SQLITE_OK ? RC_OK : store_fail(st, op, src);
}

static int ev_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* The domain part of a recipient (after its last '@'), or "". */
static const char *ev_rcpt_domain(const char *rcpt)
{
	const char *at = rcpt ? strrchr(rcpt, '@') : NULL;
	return at ? at + 1 : "";
}

static const char ev_insert_sql[] =
    "INSERT INTO events(time, type, msgid, recipient, rcpt_domain, sender, username, "
    "stream, source, status, class, remote, reply, attempts) "
    "VALUES (?1, ?2, ?3, ?4, lower(?5), ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/* Bind one event to the insert statement. */
static int ev_bind_event(sqlite3_stmt *s, const struct evlog_event *ev, char *msgid)
{
	if (ev->msgid)
		id_format(ev->msgid, msgid);
	int src = sqlite3_bind_int64(s, 1, ev->time);
	src = src ? src : sqlite3_bind_text(s, 2, evlog_type_name(ev->type), -1, SQLITE_STATIC);
	src = src ? src : ev_bind_text(s, 3, ev->msgid ? msgid : NULL);
	src = src ? src : ev_bind_text(s, 4, ev->recipient);
	src = src ? src : ev_bind_text(s, 5, ev_rcpt_domain(ev->recipient));
	src = src ? src : ev_bind_text(s, 6, ev->sender);
	src = src ? src : ev_bind_text(s, 7, ev->user);
	src = src ? src : ev_bind_text(s, 8, ev->stream);
	src = src ? src : ev_bind_text(s, 9, ev->source);
	src = src ? src : ev_bind_text(s, 10, ev->status);
	src = src ? src : ev_bind_text(s, 11, ev->bounce_class);
	src = src ? src : ev_bind_text(s, 12, ev->remote);
	src = src ? src : ev_bind_text(s, 13, ev->reply);
	src = src ? src : sqlite3_bind_int64(s, 14, ev->attempts);
	return src;
}

/* Insert evs with s inside the caller's transaction; sets each seq. */
static enum rc ev_insert_all(struct store *st, sqlite3_stmt *s, struct evlog_event *const *evs,
                             size_t n)
{
	pthread_mutex_t *lock;
	sqlite3 *db = store_db(st, &lock);
	for (size_t i = 0; i < n; i++) {
		char msgid[ID_STR_LEN + 1];
		sqlite3_reset(s);
		int src = ev_bind_event(s, evs[i], msgid);
		if (src == SQLITE_OK && (src = sqlite3_step(s)) == SQLITE_DONE)
			src = SQLITE_OK;
		if (src != SQLITE_OK)
			return store_fail(st, "events_add", sqlite3_extended_errcode(db));
		evs[i]->seq = sqlite3_last_insert_rowid(db);
	}
	return RC_OK;
}

struct ev_batch {
	struct evlog_event *const *evs;
	size_t n;
};

static enum rc ev_insert_batch(struct store *st, sqlite3_stmt *s, void *arg)
{
	const struct ev_batch *b = arg;
	return ev_insert_all(st, s, b->evs, b->n);
}

/* store_events_add - insert n events in one transaction; sets each ev->seq.
 * On failure nothing is stored (the seqs already set are meaningless). */
enum rc store_events_add(struct store *st, struct evlog_event *const *evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (evs[i] == NULL || (unsigned)evs[i]->type >= EVLOG__COUNT)
			return RC_INVALID;
	if (n == 0)
		return RC_OK;
	struct ev_batch b = {evs, n};
	return store_insert_batch(st, "events_add", ev_insert_sql, ev_insert_batch, &b);
}

/* One of a closed set of static strings equal to v, or NULL. */
static const char *ev_static(const char *v, const char *a, const char *b)
{
	if (v && strcmp(v, a) == 0)
		return a;
	if (v && strcmp(v, b) == 0)
		return b;
	return NULL;
}

static char *ev_col(sqlite3_stmt *s, int i)
{
	return (char *)sqlite3_column_text(s, i);
}

/* An event pointing into the current row of s; false if the row is unreadable. */
static bool ev_from_row(sqlite3_stmt *s, struct evlog_event *ev)
{
	enum evlog_type type;
	const char *t = ev_col(s, 2), *msgid = ev_col(s, 3);
	if (t == NULL || !evlog_type_parse(t, &type))
		return false;
	*ev = (struct evlog_event){
	    .seq = sqlite3_column_int64(s, 0),
	    .time = sqlite3_column_int64(s, 1),
	    .type = type,
	    .recipient = ev_col(s, 4),
	    .sender = ev_col(s, 5),
	    .user = ev_col(s, 6),
	    .stream = ev_static(ev_col(s, 7), "transactional", "bulk"),
	    .source = ev_static(ev_col(s, 8), "smtp", "api"),
	    .status = ev_col(s, 9),
	    .bounce_class = ev_static(ev_col(s, 10), "hard", "soft"),
	    .remote = ev_col(s, 11),
	    .reply = ev_col(s, 12),
	    .attempts = (uint32_t)sqlite3_column_int64(s, 13),
	};
	if (msgid && !id_parse(msgid, &ev->msgid))
		ev->msgid = 0;
	return true;
}

/* The statement text of a query with filter f. */
static void ev_query_sql(struct ev_sql *q, const struct store_event_filter *f)
{
	ev_sql_add(q, ev_columns);
	ev_sql_range(q, f->user, f->since, f->until);
	if (f->msgid)
		ev_sql_cond(q, "msgid = ?2");
	if (f->recipient)
		ev_sql_cond(q, "recipient = ?3"); /* the column is COLLATE NOCASE */
	if (f->type >= 0)
		ev_sql_cond(q, "type = ?4");
	if (f->cursor)
		ev_sql_cond(q, f->descending ? "seq < ?7" : "seq > ?7");
	ev_sql_add(q, f->descending ? " ORDER BY seq DESC LIMIT ?8" : " ORDER BY seq LIMIT ?8");
}

/* Bind every filter value: ?8 (LIMIT) is always in the text, so all are in
 * range, and the ones the text does not use are ignored. */
static int ev_query_bind(sqlite3_stmt *s, const struct store_event_filter *f, char *msgid)
{
	size_t limit = f->limit ? f->limit : EV_QUERY_LIMIT_DEFAULT;
	id_format(f->msgid, msgid);
	int src = ev_bind_text(s, EV_P_USER, f->user);
	src = src ? src : ev_bind_text(s, EV_P_MSGID, msgid);
	src = src ? src : ev_bind_text(s, EV_P_RCPT, f->recipient);
	src = src ? src : ev_bind_text(s, EV_P_TYPE, evlog_type_name((enum evlog_type)f->type));
	src = src ? src : sqlite3_bind_int64(s, EV_P_SINCE, f->since);
	src = src ? src : sqlite3_bind_int64(s, EV_P_UNTIL, f->until);
	src = src ? src : sqlite3_bind_int64(s, EV_P_CURSOR, f->cursor);
	src =
	    src ? src
	        : sqlite3_bind_int64(s, EV_P_LIMIT, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
	return src;
}

/* Step through the rows of s, calling fn per readable event. */
static enum rc ev_query_rows(struct store *st, sqlite3_stmt *s,
                             bool (*fn)(void *arg, const struct evlog_event *ev), void *arg)
{
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		struct evlog_event ev;
		if (!ev_from_row(s, &ev)) {
			log_warn("event=store_skip op=events_query seq=%lld msg=\"unknown type\"",
			         (long long)sqlite3_column_int64(s, 0));
			continue;
		}
		if (!fn(arg, &ev))
			return RC_OK;
	}
	return src == SQLITE_DONE
	           ? RC_OK
	           : store_fail(st, "events_query", sqlite3_extended_errcode(sqlite3_db_handle(s)));
}

/* store_events_query - fn per matching event in seq order (descending if asked),
 * with the store locked; ev and its strings are valid during the call only. */
enum rc store_events_query(struct store *st, const struct store_event_filter *f,
                           bool (*fn)(void *arg, const struct evlog_event *ev), void *arg)
{
	if (f->type >= EVLOG__COUNT || (f->user && !store_is_user_name(f->user)))
		return RC_INVALID;
	struct ev_sql q = {.len = 0};
	char msgid[ID_STR_LEN + 1];
	sqlite3_stmt *s = NULL;
	pthread_mutex_t *lock;
	(void)store_db(st, &lock);
	ev_query_sql(&q, f);
	pthread_mutex_lock(lock);
	enum rc rc = ev_prepare(st, "events_query", &q, &s);
	int src = rc == RC_OK ? ev_query_bind(s, f, msgid) : SQLITE_OK;
	if (src != SQLITE_OK)
		rc = store_fail(st, "events_query", src);
	if (rc == RC_OK)
		rc = ev_query_rows(st, s, fn, arg);
	sqlite3_finalize(s);
	pthread_mutex_unlock(lock);
	return rc;
}

/* The grouping key expression of each enum store_stats_group (constant SQL). */
static const char *const ev_stats_key[] = {
    [STORE_STATS_TOTAL] = "'total'",
    [STORE_STATS_DAY] = "strftime('%Y-%m-%d', time / 1000, 'unixepoch')",
    [STORE_STATS_HOUR] = "strftime('%Y-%m-%dT%H', time / 1000, 'unixepoch')",
    [STORE_STATS_DOMAIN] = "rcpt_domain",
};
_Static_assert(ARRAY_LEN(ev_stats_key) == STORE_STATS_DOMAIN + 1, "ev_stats_key out of sync");

/* The statement text of a statistics query. */
static void ev_stats_sql(struct ev_sql *q, const char *user, int64_t since, int64_t until,
                         enum store_stats_group g)
{
	ev_sql_add(q, "SELECT ");
	ev_sql_add(q, ev_stats_key[g]);
	ev_sql_add(q, " AS k, type, count(*) FROM events");
	ev_sql_range(q, user, since, until);
	ev_sql_add(q, " GROUP BY k, type ORDER BY k");
}

struct ev_group {
	char *key; /* owned; NULL before the first row */
	uint64_t counts[EVLOG__COUNT];
};

/* Hand a finished group to fn and start an empty one; fn's answer. */
static bool ev_group_emit(struct ev_group *gr,
                          bool (*fn)(void *arg, const char *key,
                                     const uint64_t counts[EVLOG__COUNT]),
                          void *arg)
{
	bool more = gr->key == NULL || fn(arg, gr->key, gr->counts);
	free(gr->key);
	*gr = (struct ev_group){.key = NULL};
	return more;
}

/* Fold the (key, type, count) rows of s into one fn call per key. */
static enum rc ev_stats_rows(struct store *st, sqlite3_stmt *s,
                             bool (*fn)(void *arg, const char *key,
                                        const uint64_t counts[EVLOG__COUNT]),
                             void *arg)
{
	struct ev_group gr = {.key = NULL};
	int src;
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		const char *key = ev_col(s, 0), *t = ev_col(s, 1);
		enum evlog_type type;
		key = key ? key : "";
		if (gr.key && strcmp(gr.key, key) != 0 && !ev_group_emit(&gr, fn, arg))
			return RC_OK;
		if (gr.key == NULL)
			gr.key = xstrdup(key);
		if (t && evlog_type_parse(t, &type))
			gr.counts[type] += (uint64_t)sqlite3_column_int64(s, 2);
	}
	if (src != SQLITE_DONE) {
		free(gr.key);
		return store_fail(st, "events_stats",
		                  sqlite3_extended_errcode(sqlite3_db_handle(s)));
	}
	(void)ev_group_emit(&gr, fn, arg);
	return RC_OK;
}

/* store_events_stats - per-type counts of the matching events, one fn call per
 * group key in key order (no call when nothing matches), with the store locked. */
enum rc store_events_stats(
    struct store *st, const char *user, int64_t since, int64_t until, enum store_stats_group g,
    bool (*fn)(void *arg, const char *key, const uint64_t counts[EVLOG__COUNT]), void *arg)
{
	if ((unsigned)g >= ARRAY_LEN(ev_stats_key) || (user && !store_is_user_name(user)))
		return RC_INVALID;
	struct ev_sql q = {.len = 0};
	sqlite3_stmt *s = NULL;
	pthread_mutex_t *lock;
	(void)store_db(st, &lock);
	ev_stats_sql(&q, user, since, until, g);
	pthread_mutex_lock(lock);
	enum rc rc = ev_prepare(st, "events_stats", &q, &s);
	if (rc == RC_OK) {
		/* only the parameters the text uses: others are out of range here */
		int src = user ? ev_bind_text(s, EV_P_USER, user) : SQLITE_OK;
		src = src || !since ? src : sqlite3_bind_int64(s, EV_P_SINCE, since);
		src = src || !until ? src : sqlite3_bind_int64(s, EV_P_UNTIL, until);
		rc = src == SQLITE_OK ? ev_stats_rows(st, s, fn, arg)
		                      : store_fail(st, "events_stats", src);
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(lock);
	return rc;
}

static const char ev_prune_sql[] = "DELETE FROM events WHERE seq IN "
                                   "(SELECT seq FROM events WHERE time < ?1 LIMIT ?2)";

/* Delete one chunk (its own transaction) under the lock; *n = rows deleted. */
static enum rc ev_prune_chunk(struct store *st, int64_t before, int64_t *n)
{
	pthread_mutex_t *lock;
	sqlite3 *db = store_db(st, &lock);
	sqlite3_stmt *s = NULL;
	pthread_mutex_lock(lock);
	int src = sqlite3_prepare_v2(db, ev_prune_sql, -1, &s, NULL);
	src = src ? src : sqlite3_bind_int64(s, 1, before);
	src = src ? src : sqlite3_bind_int64(s, 2, EV_PRUNE_CHUNK);
	if (src == SQLITE_OK && (src = sqlite3_step(s)) == SQLITE_DONE)
		src = SQLITE_OK;
	*n = src == SQLITE_OK ? sqlite3_changes(db) : 0;
	enum rc rc =
	    src == SQLITE_OK ? RC_OK : store_fail(st, "events_prune", sqlite3_extended_errcode(db));
	sqlite3_finalize(s);
	pthread_mutex_unlock(lock);
	return rc;
}

/* store_events_prune - delete events older than before (unix ms), EV_PRUNE_CHUNK
 * rows per transaction, releasing the lock between chunks; *deleted counts the
 * rows deleted even when a later chunk fails. */
enum rc store_events_prune(struct store *st, int64_t before, uint64_t *deleted)
{
	uint64_t total = 0;
	int64_t n = 0;
	enum rc rc;
	do {
		rc = ev_prune_chunk(st, before, &n);
		total += (uint64_t)n;
	} while (rc == RC_OK && n == EV_PRUNE_CHUNK);
	if (deleted)
		*deleted = total;
	if (total > 0)
		log_info("event=store_events_pruned before=%lld deleted=%llu", (long long)before,
		         (unsigned long long)total);
	return rc;
}
