/*
 * store_api.c - the per-account state the API and the policy read: suppression
 * lists, API keys, webhooks, and the durable queue of webhook posts.
 *
 * Connections: store_suppression_check and store_apikey_get run on the store's
 * read-only connection (store_rdb, its own lock, statements cached), because
 * they sit on the hot path (every recipient, every API request) and must not wait
 * behind the event writer. Everything else runs on the main connection under the
 * main lock, with statements prepared per call (they are rare, or batched).
 *
 * Ownership of rows: suppressions, API keys and webhooks reference their user
 * (ON DELETE CASCADE), so store_user_del removes them. They are inserted with
 * INSERT ... SELECT from users: the row gets the account's own spelling of the
 * name, and a missing user is RC_NOTFOUND rather than a constraint error.
 *
 * Addresses in the suppression list are lower-cased whole (local part too: a
 * case-sensitive local part is allowed by RFC 5321 2.4 but in practice never
 * distinguishes mailboxes, and an unsubscribed "Bob@" must not come back as
 * "bob@"), before they are stored and before they are compared.
 *
 * Callbacks (the _list functions) get structs whose strings point into the
 * current row: valid during the call only. They run with the lock held and must
 * not call back into the same store.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

#define API_ADDRESS_MAX    320 /* RFC 5321 4.5.3.1: 64 + "@" + 255 */
#define API_ID_MAX         64
#define API_LIST_LIMIT     100
#define API_JOBS_DUE_LIMIT 100

/* A value to bind: text (NULL binds SQL NULL), integer or blob. */
struct aq_val {
	enum { AQ_TEXT, AQ_INT, AQ_BLOB } kind;
	const char *text;
	int64_t i;
	const void *blob;
	int len;
};
#define AQ_T(v)    ((struct aq_val){.kind = AQ_TEXT, .text = (v)})
#define AQ_I(v)    ((struct aq_val){.kind = AQ_INT, .i = (v)})
#define AQ_B(p, n) ((struct aq_val){.kind = AQ_BLOB, .blob = (p), .len = (n)})

/* One statement in use, with its connection's lock held. */
struct aq {
	struct store *st;
	sqlite3 *db;
	sqlite3_stmt *s;
	pthread_mutex_t *lock;
	const char *op;
	bool cached; /* a read-connection statement: reset, not finalized */
};

static int aq_bind(sqlite3_stmt *s, const struct aq_val *v, size_t n)
{
	int src = SQLITE_OK;
	for (int i = 1; src == SQLITE_OK && (size_t)i <= n; i++, v++) {
		if (v->kind == AQ_INT)
			src = sqlite3_bind_int64(s, i, v->i);
		else if (v->kind == AQ_BLOB)
			src = sqlite3_bind_blob(s, i, v->blob, v->len, SQLITE_STATIC);
		else if (v->text)
			src = sqlite3_bind_text(s, i, v->text, -1, SQLITE_STATIC);
		else
			src = sqlite3_bind_null(s, i);
	}
	return src;
}

/* Fail an open attempt: log, release, the mapped code. */
static enum rc aq_abort(struct aq *q, int src)
{
	enum rc rc = store_fail_db(q->st, q->db, q->op, src);
	if (q->cached)
		sqlite3_reset(q->s);
	else
		sqlite3_finalize(q->s);
	pthread_mutex_unlock(q->lock);
	return rc;
}

/* aq_open - lock the main connection, prepare sql, bind vals. */
static enum rc aq_open(struct aq *q, struct store *st, const char *op, const char *sql,
                       const struct aq_val *vals, size_t n)
{
	*q = (struct aq){.st = st, .op = op};
	q->db = store_db(st, &q->lock);
	pthread_mutex_lock(q->lock);
	int src = sqlite3_prepare_v2(q->db, sql, -1, &q->s, NULL);
	src = src ? src : aq_bind(q->s, vals, n);
	return src == SQLITE_OK ? RC_OK : aq_abort(q, src);
}

/* aq_ropen - lock the read connection, take its cached statement id, bind vals. */
static enum rc aq_ropen(struct aq *q, struct store *st, enum store_rst id, const char *op,
                        const char *sql, const struct aq_val *vals, size_t n)
{
	*q = (struct aq){.st = st, .op = op, .cached = true};
	q->db = store_rdb(st, &q->lock);
	pthread_mutex_lock(q->lock);
	q->s = store_rstmt(st, id, sql);
	if (q->s == NULL) {
		pthread_mutex_unlock(q->lock);
		return RC_IO;
	}
	int src = aq_bind(q->s, vals, n);
	return src == SQLITE_OK ? RC_OK : aq_abort(q, src);
}

/* aq_close - release; rc, or the step error if last_src is one. */
static enum rc aq_close(struct aq *q, enum rc rc, int last_src)
{
	if (rc == RC_OK && last_src != SQLITE_DONE && last_src != SQLITE_ROW)
		rc = store_fail_db(q->st, q->db, q->op, sqlite3_extended_errcode(q->db));
	if (q->cached)
		sqlite3_reset(q->s); /* ends the read transaction */
	else
		sqlite3_finalize(q->s);
	pthread_mutex_unlock(q->lock);
	return rc;
}

/* aq_exec - a statement without rows on the main connection; RC_NOTFOUND when it
 * changed nothing; *rowid (if not NULL) = the row inserted. */
static enum rc aq_exec(struct store *st, const char *op, const char *sql, const struct aq_val *vals,
                       size_t n, int64_t *rowid)
{
	struct aq q;
	enum rc rc = aq_open(&q, st, op, sql, vals, n);
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	if (src == SQLITE_DONE && sqlite3_changes(q.db) == 0)
		rc = RC_NOTFOUND;
	if (src == SQLITE_DONE && rowid)
		*rowid = sqlite3_last_insert_rowid(q.db);
	return aq_close(&q, rc, src);
}

static char *aq_col(sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	return (char *)(v ? v : "");
}

/* A copy of address, lower-cased, into out (API_ADDRESS_MAX + 1 bytes). */
static bool api_address(const char *address, char *out)
{
	if (address == NULL || *address == '\0' ||
	    str_lcpy(out, address, API_ADDRESS_MAX + 1) > API_ADDRESS_MAX)
		return false;
	str_lower(out);
	return true;
}

/* ---- suppression list ---------------------------------------------------- */

/* store_suppression_add - add user's suppression of address (lower-cased);
 * RC_EXISTS if it was there (unchanged), RC_NOTFOUND if no such user. */
enum rc store_suppression_add(struct store *st, const char *user, const char *address,
                              const char *reason)
{
	char addr[API_ADDRESS_MAX + 1];
	if (!store_is_user_name(user) || !api_address(address, addr))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user), AQ_T(addr), AQ_T(reason ? reason : ""),
	                     AQ_I(time_now_ms())};
	return aq_exec(st, "suppression_add",
	               "INSERT INTO suppressions(username, address, reason, created) "
	               "SELECT name, ?2, ?3, ?4 FROM users WHERE name = ?1",
	               v, ARRAY_LEN(v), NULL);
}

/* store_suppression_del - lift a suppression; RC_NOTFOUND if it was not there. */
enum rc store_suppression_del(struct store *st, const char *user, const char *address)
{
	char addr[API_ADDRESS_MAX + 1];
	if (!store_is_user_name(user) || !api_address(address, addr))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user), AQ_T(addr)};
	return aq_exec(st, "suppression_del",
	               "DELETE FROM suppressions WHERE username = ?1 AND address = ?2", v,
	               ARRAY_LEN(v), NULL);
}

#define SUPPRESSION_CHECK_SQL "SELECT 1 FROM suppressions WHERE username = ?1 AND address = ?2"

/* store_suppression_check - RC_OK if user suppresses address, RC_NOTFOUND if not
 * (always for user NULL: mail without an account has no list). Read connection. */
enum rc store_suppression_check(struct store *st, const char *user, const char *address)
{
	char addr[API_ADDRESS_MAX + 1];
	if (user == NULL)
		return RC_NOTFOUND;
	if (!store_is_user_name(user) || !api_address(address, addr))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user), AQ_T(addr)};
	struct aq q;
	enum rc rc = aq_ropen(&q, st, STORE_RST_SUPPRESSION_CHECK, "suppression_check",
	                      SUPPRESSION_CHECK_SQL, v, ARRAY_LEN(v));
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	return aq_close(&q, src == SQLITE_ROW ? RC_OK : RC_NOTFOUND, src);
}

/* store_suppression_check_batch - out[i] = whether user suppresses addrs[i],
 * all under one hold of the read connection's lock. An address the list cannot
 * hold is not on it. Test seam: RELEVO_FAULT="suppression:N" fails the Nth batch. */
enum rc store_suppression_check_batch(struct store *st, const char *user,
                                      const char *const *addrs, size_t n, bool *out)
{
	char addr[API_ADDRESS_MAX + 1];
	memset(out, 0, n * sizeof *out);
	if (user == NULL || n == 0)
		return RC_OK;
	if (fault_hit("suppression"))
		return store_fail_db(st, NULL, "suppression_check_batch", SQLITE_IOERR);
	if (!store_is_user_name(user))
		return RC_OK;
	pthread_mutex_t *lock;
	sqlite3 *db = store_rdb(st, &lock);
	pthread_mutex_lock(lock);
	sqlite3_stmt *s = store_rstmt(st, STORE_RST_SUPPRESSION_CHECK, SUPPRESSION_CHECK_SQL);
	int src = s ? SQLITE_ROW : SQLITE_ERROR;
	for (size_t i = 0; s && i < n && (src == SQLITE_ROW || src == SQLITE_DONE); i++) {
		if (!api_address(addrs[i], addr))
			continue;
		src = sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
		src = src ? src : sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
		src = src ? src : sqlite3_step(s);
		out[i] = src == SQLITE_ROW;
		sqlite3_reset(s);
	}
	enum rc rc = RC_OK;
	if (s == NULL)
		rc = RC_IO;
	else if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = store_fail_db(st, db, "suppression_check_batch", src);
	pthread_mutex_unlock(lock);
	if (rc != RC_OK)
		memset(out, 0, n * sizeof *out);
	return rc;
}

/* store_suppression_get - user's entry of address (lower-cased): its reason
 * (a new string) and creation time; RC_NOTFOUND if there is none. */
enum rc store_suppression_get(struct store *st, const char *user, const char *address,
                              char **reason, int64_t *created)
{
	char addr[API_ADDRESS_MAX + 1];
	*reason = NULL;
	*created = 0;
	if (!store_is_user_name(user) || !api_address(address, addr))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user), AQ_T(addr)};
	struct aq q;
	enum rc rc = aq_open(&q, st, "suppression_get",
	                     "SELECT reason, created FROM suppressions "
	                     "WHERE username = ?1 AND address = ?2",
	                     v, ARRAY_LEN(v));
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	if (src == SQLITE_ROW) {
		*reason = xstrdup(aq_col(q.s, 0));
		*created = sqlite3_column_int64(q.s, 1);
	}
	/* RC_OK with a step error: aq_close reports the error */
	return aq_close(&q, src == SQLITE_DONE ? RC_NOTFOUND : RC_OK, src);
}

/* store_suppression_list - user's suppressions in address order after `after`
 * (lower-cased; NULL: from the start), at most limit (0: 100). */
enum rc store_suppression_list(struct store *st, const char *user, const char *after, size_t limit,
                               bool (*fn)(void *arg, const struct store_suppression *s), void *arg)
{
	char from[API_ADDRESS_MAX + 1] = "";
	if (!store_is_user_name(user) || (after && *after && !api_address(after, from)))
		return RC_INVALID;
	int64_t lim = limit == 0 ? API_LIST_LIMIT : limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
	struct aq_val v[] = {AQ_T(user), AQ_T(from), AQ_I(lim)};
	struct aq q;
	enum rc rc = aq_open(&q, st, "suppression_list",
	                     "SELECT address, reason, created FROM suppressions "
	                     "WHERE username = ?1 AND address > ?2 ORDER BY address LIMIT ?3",
	                     v, ARRAY_LEN(v));
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW) {
		struct store_suppression s = {aq_col(q.s, 0), aq_col(q.s, 1),
		                              sqlite3_column_int64(q.s, 2)};
		if (!fn(arg, &s))
			break;
	}
	return aq_close(&q, RC_OK, src);
}

/* ---- API keys ------------------------------------------------------------ */

static bool api_is_key_id(const char *id)
{
	return id != NULL && *id != '\0' && strnlen(id, API_ID_MAX + 1) <= API_ID_MAX;
}

/* store_apikey_add - a new key of user; RC_EXISTS if the id is taken,
 * RC_NOTFOUND if there is no such user. */
enum rc store_apikey_add(struct store *st, const char *id, const char *user, const char *name,
                         const unsigned char hash[STORE_APIKEY_HASH_LEN])
{
	if (!api_is_key_id(id) || !store_is_user_name(user) || hash == NULL)
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(id), AQ_T(user), AQ_T(name ? name : ""),
	                     AQ_B(hash, STORE_APIKEY_HASH_LEN), AQ_I(time_now_ms())};
	return aq_exec(st, "apikey_add",
	               "INSERT INTO api_keys(id, username, name, hash, created) "
	               "SELECT ?1, name, ?3, ?4, ?5 FROM users WHERE name = ?2",
	               v, ARRAY_LEN(v), NULL);
}

/* The key in the current row of s, with its hash unless zero_hash; NULL if the
 * stored hash has the wrong length (damaged row). */
static struct store_apikey *api_key_from_row(sqlite3_stmt *s, bool zero_hash)
{
	const void *hash = sqlite3_column_blob(s, 3);
	if (!zero_hash && (hash == NULL || sqlite3_column_bytes(s, 3) != STORE_APIKEY_HASH_LEN))
		return NULL;
	struct store_apikey *k = xcalloc(1, sizeof *k);
	k->id = xstrdup(aq_col(s, 0));
	k->user = xstrdup(aq_col(s, 1));
	k->name = xstrdup(aq_col(s, 2));
	if (!zero_hash)
		memcpy(k->hash, hash, STORE_APIKEY_HASH_LEN);
	k->created = sqlite3_column_int64(s, 4);
	k->last_used = sqlite3_column_int64(s, 5);
	return k;
}

/* store_apikey_get - the key with this id (read connection); RC_NOTFOUND if none. */
enum rc store_apikey_get(struct store *st, const char *id, struct store_apikey **out)
{
	*out = NULL;
	if (!api_is_key_id(id))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(id)};
	struct aq q;
	enum rc rc = aq_ropen(&q, st, STORE_RST_APIKEY_GET, "apikey_get",
	                      "SELECT id, username, name, hash, created, last_used "
	                      "FROM api_keys WHERE id = ?1",
	                      v, ARRAY_LEN(v));
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	if (src == SQLITE_ROW && (*out = api_key_from_row(q.s, false)) == NULL) {
		log_err("event=store_error op=apikey_get msg=\"stored hash has a bad length\"");
		rc = RC_IO;
	}
	return aq_close(&q, src == SQLITE_DONE ? RC_NOTFOUND : rc, src);
}

/* store_apikey_touch - last_used = now; RC_NOTFOUND if the key is gone. */
enum rc store_apikey_touch(struct store *st, const char *id, int64_t now)
{
	if (!api_is_key_id(id))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(id), AQ_I(now)};
	return aq_exec(st, "apikey_touch", "UPDATE api_keys SET last_used = ?2 WHERE id = ?1", v,
	               ARRAY_LEN(v), NULL);
}

/* store_apikey_del - revoke a key; RC_NOTFOUND if none. */
enum rc store_apikey_del(struct store *st, const char *id)
{
	if (!api_is_key_id(id))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(id)};
	return aq_exec(st, "apikey_del", "DELETE FROM api_keys WHERE id = ?1", v, ARRAY_LEN(v),
	               NULL);
}

/* store_apikey_list - user's keys (NULL: every account's) by creation, then id;
 * hash zeroed. */
enum rc store_apikey_list(struct store *st, const char *user,
                          bool (*fn)(void *arg, const struct store_apikey *k), void *arg)
{
	if (user && !store_is_user_name(user))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user)};
	struct aq q;
	enum rc rc = aq_open(&q, st, "apikey_list",
	                     user ? "SELECT id, username, name, hash, created, last_used FROM "
	                            "api_keys WHERE username = ?1 ORDER BY created, id"
	                          : "SELECT id, username, name, hash, created, last_used FROM "
	                            "api_keys ORDER BY created, id",
	                     v, user ? 1 : 0);
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW) {
		struct store_apikey *k = api_key_from_row(q.s, true);
		bool more = fn(arg, k);
		store_apikey_free(k);
		if (!more)
			break;
	}
	return aq_close(&q, RC_OK, src);
}

/* store_apikey_free - free a key (its hash wiped first); NULL is a no-op. */
void store_apikey_free(struct store_apikey *k)
{
	if (k == NULL)
		return;
	free(k->id);
	free(k->user);
	free(k->name);
	explicit_bzero(k->hash, sizeof k->hash);
	free(k);
}

/* ---- webhooks ------------------------------------------------------------ */

/* store_webhook_add - a webhook of user (events NULL: all); *id (may be NULL) =
 * its id. RC_NOTFOUND if there is no such user. */
enum rc store_webhook_add(struct store *st, const char *user, const char *url, const char *secret,
                          const char *events, int64_t *id)
{
	if (!store_is_user_name(user) || url == NULL || *url == '\0')
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user), AQ_T(url), AQ_T(secret ? secret : ""),
	                     AQ_T(events ? events : ""), AQ_I(time_now_ms())};
	return aq_exec(st, "webhook_add",
	               "INSERT INTO webhooks(username, url, secret, events, created) "
	               "SELECT name, ?2, ?3, ?4, ?5 FROM users WHERE name = ?1",
	               v, ARRAY_LEN(v), id);
}

/* store_webhook_del - delete webhook id of user; RC_NOTFOUND unless user owns
 * it. user NULL (the operator's CLI only, never the API): whoever owns it. */
enum rc store_webhook_del(struct store *st, const char *user, int64_t id)
{
	if (user && !store_is_user_name(user))
		return RC_INVALID;
	struct aq_val v[] = {AQ_I(id), AQ_T(user)};
	return aq_exec(st, "webhook_del",
	               user ? "DELETE FROM webhooks WHERE id = ?1 AND username = ?2"
	                    : "DELETE FROM webhooks WHERE id = ?1",
	               v, user ? 2 : 1, NULL);
}

/* store_webhook_list - user's webhooks (NULL: every account's) by id. */
enum rc store_webhook_list(struct store *st, const char *user,
                           bool (*fn)(void *arg, const struct store_webhook *w), void *arg)
{
	if (user && !store_is_user_name(user))
		return RC_INVALID;
	struct aq_val v[] = {AQ_T(user)};
	struct aq q;
	enum rc rc = aq_open(&q, st, "webhook_list",
	                     user ? "SELECT id, username, url, secret, events, created FROM "
	                            "webhooks WHERE username = ?1 ORDER BY id"
	                          : "SELECT id, username, url, secret, events, created FROM "
	                            "webhooks ORDER BY id",
	                     v, user ? 1 : 0);
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW) {
		struct store_webhook w = {sqlite3_column_int64(q.s, 0),
		                          aq_col(q.s, 1),
		                          aq_col(q.s, 2),
		                          aq_col(q.s, 3),
		                          aq_col(q.s, 4),
		                          sqlite3_column_int64(q.s, 5)};
		if (!fn(arg, &w))
			break;
	}
	return aq_close(&q, RC_OK, src);
}

/* ---- webhook jobs -------------------------------------------------------- */

static const char api_job_insert_sql[] =
    "INSERT INTO webhook_jobs(url, secret, body, attempts, next_attempt, created, operator) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/* Insert jobs with s inside the caller's transaction. */
static enum rc api_jobs_insert(struct store *st, sqlite3_stmt *s,
                               const struct store_webhook_job *jobs, size_t n, int64_t now)
{
	for (size_t i = 0; i < n; i++) {
		const struct store_webhook_job *j = &jobs[i];
		struct aq_val v[] = {AQ_T(j->url),
		                     AQ_T(j->secret ? j->secret : ""),
		                     AQ_T(j->body),
		                     AQ_I(j->attempts),
		                     AQ_I(j->next_attempt ? j->next_attempt : now),
		                     AQ_I(j->created ? j->created : now),
		                     AQ_I(j->operator ? 1 : 0)};
		sqlite3_reset(s);
		int src = aq_bind(s, v, ARRAY_LEN(v));
		if (src == SQLITE_OK && (src = sqlite3_step(s)) == SQLITE_DONE)
			src = SQLITE_OK;
		if (src != SQLITE_OK)
			return store_fail(st, "webhook_jobs_add",
			                  sqlite3_extended_errcode(sqlite3_db_handle(s)));
	}
	return RC_OK;
}

struct api_job_batch {
	const struct store_webhook_job *jobs;
	size_t n;
	int64_t now;
};

static enum rc api_jobs_insert_batch(struct store *st, sqlite3_stmt *s, void *arg)
{
	const struct api_job_batch *b = arg;
	return api_jobs_insert(st, s, b->jobs, b->n, b->now);
}

/* store_webhook_jobs_add - n new jobs in one transaction: due now (or at their
 * next_attempt if set), created now (or at created if set). ids are ignored. */
enum rc store_webhook_jobs_add(struct store *st, const struct store_webhook_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (jobs[i].url == NULL || jobs[i].body == NULL)
			return RC_INVALID;
	if (n == 0)
		return RC_OK;
	struct api_job_batch b = {jobs, n, time_now_ms()};
	return store_insert_batch(st, "webhook_jobs_add", api_job_insert_sql,
				  api_jobs_insert_batch, &b);
}

static void api_job_from_row(sqlite3_stmt *s, struct store_webhook_job *j)
{
	j->id = sqlite3_column_int64(s, 0);
	j->url = xstrdup(aq_col(s, 1));
	j->secret = xstrdup(aq_col(s, 2));
	j->body = xstrdup(aq_col(s, 3));
	j->attempts = (uint32_t)sqlite3_column_int64(s, 4);
	j->next_attempt = sqlite3_column_int64(s, 5);
	j->created = sqlite3_column_int64(s, 6);
	j->operator = sqlite3_column_int64(s, 7) != 0;
}

/* store_webhook_jobs_due - up to max (0: 100) jobs due at now, by next_attempt
 * then id, as a new array (*n may be 0) freed with store_webhook_jobs_free. */
enum rc store_webhook_jobs_due(struct store *st, int64_t now, size_t max,
                               struct store_webhook_job **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cap = max == 0 ? API_JOBS_DUE_LIMIT : max;
	struct aq_val v[] = {AQ_I(now), AQ_I(cap > INT64_MAX ? INT64_MAX : (int64_t)cap)};
	struct aq q;
	enum rc rc = aq_open(&q, st, "webhook_jobs_due",
	                     "SELECT id, url, secret, body, attempts, next_attempt, created, "
	                     "operator FROM webhook_jobs WHERE next_attempt <= ?1 "
	                     "ORDER BY next_attempt, id LIMIT ?2",
	                     v, ARRAY_LEN(v));
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW) {
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		api_job_from_row(q.s, &(*out)[(*n)++]);
	}
	rc = aq_close(&q, RC_OK, src);
	if (rc != RC_OK) {
		store_webhook_jobs_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

/* store_webhook_job_next - the earliest next_attempt; RC_NOTFOUND if no jobs. */
enum rc store_webhook_job_next(struct store *st, int64_t *when)
{
	struct aq q;
	enum rc rc = aq_open(&q, st, "webhook_job_next",
	                     "SELECT min(next_attempt) FROM webhook_jobs", NULL, 0);
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	if (src == SQLITE_ROW && sqlite3_column_type(q.s, 0) == SQLITE_NULL)
		rc = RC_NOTFOUND;
	else if (src == SQLITE_ROW)
		*when = sqlite3_column_int64(q.s, 0);
	return aq_close(&q, rc, src);
}

/* store_webhook_job_done - delete a job; RC_NOTFOUND if it is gone. */
enum rc store_webhook_job_done(struct store *st, int64_t id)
{
	struct aq_val v[] = {AQ_I(id)};
	return aq_exec(st, "webhook_job_done", "DELETE FROM webhook_jobs WHERE id = ?1", v,
	               ARRAY_LEN(v), NULL);
}

/* store_webhook_job_retry - set a job's attempts and next_attempt; RC_NOTFOUND if
 * it is gone. */
enum rc store_webhook_job_retry(struct store *st, int64_t id, uint32_t attempts,
                                int64_t next_attempt)
{
	struct aq_val v[] = {AQ_I(id), AQ_I(attempts), AQ_I(next_attempt)};
	return aq_exec(st, "webhook_job_retry",
	               "UPDATE webhook_jobs SET attempts = ?2, next_attempt = ?3 WHERE id = ?1", v,
	               ARRAY_LEN(v), NULL);
}

/* store_webhook_jobs_free - free what store_webhook_jobs_due returned. */
void store_webhook_jobs_free(struct store_webhook_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(jobs[i].url);
		free(jobs[i].secret);
		free(jobs[i].body);
	}
	free(jobs);
}
