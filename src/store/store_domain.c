/*
 * store_domain.c - sending domains and their DKIM keys in the SQLite store.
 *
 * The rows say which keys exist and in which state: pending (published, not
 * yet signing), active (signing), retiring (still published, until `relevo
 * domain retire-key`); the private keys
 * themselves are PEM files under data_dir/keys/, owner-only, named by `path`.
 * Domain operations are rare (CLI, a signer's cache refresh), so statements are
 * prepared per call. Every call holds the store's lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_int.h"

/* One statement run under the lock: prepare, bind texts, step through rows. */
struct dq {
	struct store *st;
	sqlite3_stmt *s;
	pthread_mutex_t *lock;
	const char *op;
};

static enum rc dq_open(struct dq *q, struct store *st, const char *op, const char *sql,
		       const char *const *args, size_t nargs)
{
	q->st = st;
	q->op = op;
	sqlite3 *db = store_db(st, &q->lock);
	pthread_mutex_lock(q->lock);
	int src = sqlite3_prepare_v2(db, sql, -1, &q->s, NULL);
	for (size_t i = 0; src == SQLITE_OK && i < nargs; i++)
		src = sqlite3_bind_text(q->s, (int)i + 1, args[i], -1, SQLITE_STATIC);
	if (src != SQLITE_OK) {
		enum rc rc = store_fail(st, op, src);
		sqlite3_finalize(q->s);
		pthread_mutex_unlock(q->lock);
		return rc;
	}
	return RC_OK;
}

/* dq_close - finish; returns rc, or the step error if the last step failed. */
static enum rc dq_close(struct dq *q, enum rc rc, int last_src)
{
	if (rc == RC_OK && last_src != SQLITE_DONE && last_src != SQLITE_ROW)
		rc = store_fail(q->st, q->op, sqlite3_extended_errcode(sqlite3_db_handle(q->s)));
	sqlite3_finalize(q->s);
	pthread_mutex_unlock(q->lock);
	return rc;
}

/* dq_exec - a statement without rows; RC_NOTFOUND when it changed nothing and
 * must_change is set. */
static enum rc dq_exec(struct store *st, const char *op, const char *sql,
		       const char *const *args, size_t nargs, bool must_change)
{
	struct dq q;
	enum rc rc = dq_open(&q, st, op, sql, args, nargs);
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	if (src == SQLITE_DONE && must_change && sqlite3_changes(sqlite3_db_handle(q.s)) == 0)
		rc = RC_NOTFOUND;
	return dq_close(&q, rc, src);
}

/* store_domain_add - register a sending domain; RC_EXISTS if it is. */
enum rc store_domain_add(struct store *st, const char *domain)
{
	char now[24];
	snprintf(now, sizeof now, "%lld", (long long)(time_now_ms() / 1000));
	const char *args[] = {domain, now};
	return dq_exec(st, "domain_add",
		       "INSERT INTO domains(name, created) VALUES (lower(?1), CAST(?2 AS INTEGER))",
		       args, 2, false);
}

/* store_domain_del - forget a domain and (by cascade) its key rows. */
enum rc store_domain_del(struct store *st, const char *domain)
{
	const char *args[] = {domain};
	return dq_exec(st, "domain_del", "DELETE FROM domains WHERE name = ?1", args, 1, true);
}

/* store_domain_exists - RC_OK if registered, RC_NOTFOUND if not. */
enum rc store_domain_exists(struct store *st, const char *domain)
{
	struct dq q;
	const char *args[] = {domain};
	enum rc rc = dq_open(&q, st, "domain_get", "SELECT 1 FROM domains WHERE name = ?1", args, 1);
	if (rc != RC_OK)
		return rc;
	int src = sqlite3_step(q.s);
	return dq_close(&q, src == SQLITE_ROW ? RC_OK : src == SQLITE_DONE ? RC_NOTFOUND : RC_OK,
			src);
}

/* store_domain_list - fn(arg, name, created) per domain in name order. */
enum rc store_domain_list(struct store *st,
			  bool (*fn)(void *arg, const char *name, int64_t created), void *arg)
{
	struct dq q;
	enum rc rc = dq_open(&q, st, "domain_list",
			     "SELECT name, created FROM domains ORDER BY name", NULL, 0);
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW)
		if (!fn(arg, (const char *)sqlite3_column_text(q.s, 0),
			sqlite3_column_int64(q.s, 1)))
			break;
	return dq_close(&q, RC_OK, src);
}

static const char *const dkim_state_names[] = {"pending", "active", "retiring"};
_Static_assert(sizeof dkim_state_names / sizeof dkim_state_names[0] == STORE_DKIM__COUNT,
	       "dkim_state_names must name every store_dkim_state");

/* store_dkim_state_name - "pending", "active", "retiring". */
const char *store_dkim_state_name(enum store_dkim_state s)
{
	return (unsigned)s < STORE_DKIM__COUNT ? dkim_state_names[s] : "unknown";
}

static enum store_dkim_state dkim_state_parse(const char *s)
{
	for (unsigned i = 0; i < STORE_DKIM__COUNT; i++)
		if (s != NULL && strcmp(s, dkim_state_names[i]) == 0)
			return (enum store_dkim_state)i;
	return STORE_DKIM_RETIRING; /* the CHECK constraint makes this unreachable */
}

/* store_domain_users - fn(arg, name) per account that may send as domain. */
enum rc store_domain_users(struct store *st, const char *domain,
			   bool (*fn)(void *arg, const char *user), void *arg)
{
	struct dq q;
	const char *args[] = {domain};
	enum rc rc = dq_open(&q, st, "domain_users",
			     "SELECT username FROM user_domains WHERE domain = lower(?1) "
			     "ORDER BY username", args, 1);
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW)
		if (!fn(arg, (const char *)sqlite3_column_text(q.s, 0)))
			break;
	return dq_close(&q, RC_OK, src);
}

/* store_dkim_key_add - a new key row. */
enum rc store_dkim_key_add(struct store *st, const struct store_dkim_key *k)
{
	char created[24];
	snprintf(created, sizeof created, "%lld", (long long)k->created);
	const char *args[] = {k->domain, k->selector, k->alg, k->path, k->public_txt, created,
			      store_dkim_state_name(k->state)};
	return dq_exec(st, "dkim_key_add",
		       "INSERT INTO dkim_keys(domain, selector, alg, path, public_txt, created, "
		       "state, state_since) VALUES (lower(?1), ?2, ?3, ?4, ?5, CAST(?6 AS INTEGER), "
		       "?7, CAST(?6 AS INTEGER))",
		       args, 7, false);
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	return xstrdup(v ? v : "");
}

#define DKIM_KEY_COLS "domain, selector, alg, path, public_txt, created, state, state_since"

/* dkim_keys_query - the rows of a SELECT DKIM_KEY_COLS ... into a new array. */
static enum rc dkim_keys_query(struct store *st, const char *op, const char *sql,
			       const char *const *args, size_t nargs,
			       struct store_dkim_key **out, size_t *n)
{
	struct dq q;
	*out = NULL;
	*n = 0;
	enum rc rc = dq_open(&q, st, op, sql, args, nargs);
	if (rc != RC_OK)
		return rc;
	int src;
	while ((src = sqlite3_step(q.s)) == SQLITE_ROW) {
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		struct store_dkim_key *k = &(*out)[(*n)++];
		k->domain = col_dup(q.s, 0);
		k->selector = col_dup(q.s, 1);
		k->alg = col_dup(q.s, 2);
		k->path = col_dup(q.s, 3);
		k->public_txt = col_dup(q.s, 4);
		k->created = sqlite3_column_int64(q.s, 5);
		k->state = dkim_state_parse((const char *)sqlite3_column_text(q.s, 6));
		k->state_since = sqlite3_column_int64(q.s, 7);
	}
	rc = dq_close(&q, RC_OK, src);
	if (rc != RC_OK) {
		store_dkim_keys_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

/* store_dkim_keys - every key of domain: active, pending, retiring; newest first. */
enum rc store_dkim_keys(struct store *st, const char *domain, struct store_dkim_key **out,
			size_t *n)
{
	const char *args[] = {domain};
	return dkim_keys_query(st, "dkim_keys",
			       "SELECT " DKIM_KEY_COLS " FROM dkim_keys WHERE domain = ?1 "
			       "ORDER BY CASE state WHEN 'active' THEN 0 WHEN 'pending' THEN 1 "
			       "ELSE 2 END, created DESC, selector",
			       args, 1, out, n);
}

/* store_dkim_keys_pending - up to max pending keys of every domain, oldest first. */
enum rc store_dkim_keys_pending(struct store *st, size_t max, struct store_dkim_key **out,
				size_t *n)
{
	char lim[24];
	snprintf(lim, sizeof lim, "%zu", max);
	const char *args[] = {lim};
	return dkim_keys_query(st, "dkim_keys_pending",
			       "SELECT " DKIM_KEY_COLS " FROM dkim_keys WHERE state = 'pending' "
			       "ORDER BY created, domain, selector LIMIT CAST(?1 AS INTEGER)",
			       args, 1, out, n);
}

/* store_dkim_key_activate - pending selector active, the active keys of its
 * algorithm retiring; one statement, so no reader sees both or neither. */
enum rc store_dkim_key_activate(struct store *st, const char *domain, const char *selector,
				int64_t now)
{
	char when[24];
	snprintf(when, sizeof when, "%lld", (long long)now);
	const char *args[] = {domain, selector, when};
	return dq_exec(st, "dkim_key_activate",
		       "UPDATE dkim_keys SET "
		       "  state = CASE WHEN selector = ?2 THEN 'active' ELSE 'retiring' END,"
		       "  state_since = CAST(?3 AS INTEGER) "
		       "WHERE domain = ?1 AND ((selector = ?2 AND state = 'pending') OR "
		       "  (state = 'active' AND alg = (SELECT alg FROM dkim_keys "
		       "   WHERE domain = ?1 AND selector = ?2 AND state = 'pending')))",
		       args, 3, true);
}

/* store_dkim_key_del - remove one key row; RC_NOTFOUND if absent. */
enum rc store_dkim_key_del(struct store *st, const char *domain, const char *selector)
{
	const char *args[] = {domain, selector};
	return dq_exec(st, "dkim_key_del", "DELETE FROM dkim_keys WHERE domain = ?1 AND selector = ?2",
		       args, 2, true);
}

/* store_dkim_keys_free - free what store_dkim_keys returned; NULL is fine. */
void store_dkim_keys_free(struct store_dkim_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(keys[i].domain);
		free(keys[i].selector);
		free(keys[i].alg);
		free(keys[i].path);
		free(keys[i].public_txt);
	}
	free(keys);
}
