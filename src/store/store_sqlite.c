/*
 * store_sqlite.c - the SQLite backend of store.h: data_dir/relevo.db.
 *
 * Connection: WAL journal, so the running daemon's readers never block the CLI's
 * writer and the other way round; a busy_timeout so that two processes (daemon and
 * `relevo user add`) wait for each other's write lock instead of failing at once;
 * foreign keys on (user_domains rows go with their user); defensive mode on.
 *
 * synchronous=NORMAL: in WAL mode it still never corrupts the database on a crash
 * or power loss; a power loss may only roll back the last commits not yet
 * checkpointed. The store holds accounts and (later) events, not acknowledged mail
 * (that is the spool, with its own fsync discipline), and an account change that
 * was lost to a power cut is redone by its operator; FULL would cost an fsync per
 * commit on every event write.
 *
 * Schema: store_migrations[] below, version N = element N-1. store_open() applies
 * the missing ones and records each in schema_version, all in one IMMEDIATE
 * transaction, so a concurrent open by another process waits and then finds
 * nothing to do. A database newer than this binary is refused. To change the
 * schema, append one string; never edit an applied one.
 *
 * SQL: constant strings only, every input bound as a parameter. Statements are
 * prepared once at open and reset after each use (a statement left stepping would
 * hold a WAL read snapshot open and stall checkpoints).
 *
 * Threads: a main connection per struct store, opened SQLITE_OPEN_NOMUTEX; every
 * public call takes st->lock. store_user_list() calls its fn with the lock held:
 * fn must not call back into the same store. A second, read-only connection
 * (st->rdb, its own st->rlock, opened after the migrations) serves the hot point
 * lookups of store_api.c: in WAL mode it reads the last commit while the main
 * connection is inside a write transaction, so those lookups never wait for the
 * event writer.
 *
 * Validation here is what the store alone can guarantee (it uses core only): user
 * names are 1-64 characters of [A-Za-z0-9._@+-] and compared case-insensitively
 * (COLLATE NOCASE: "Alice" and "alice" are one account); domains are lower-cased
 * and bounded in length. Domain syntax is policy_domain_valid()'s job, called by
 * the CLI and the API before they reach the store. An invalid user name gives
 * RC_INVALID from every user call.
 *
 * Failure model: SQLITE_BUSY after the timeout is RC_TEMPFAIL; constraint
 * violations are RC_EXISTS (duplicate key) or RC_INVALID; other SQLite errors are
 * RC_IO (RC_NOMEM for SQLITE_NOMEM), each logged once with SQLite's message.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_DB_NAME          "relevo.db"
#define STORE_BUSY_TIMEOUT_MS  10000
#define STORE_USER_NAME_MAX    64
#define STORE_DOMAIN_MAX       253 /* RFC 1035 2.3.4, without the trailing dot */
#define STORE_USER_MAX_DOMAINS 1024

/* Schema migrations: version N is element N-1. Append only. */
static const char *const store_migrations[] = {
    /* 1: users and the domains each may send as */
    "CREATE TABLE users ("
    "  name    TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,"
    "  pwhash  TEXT NOT NULL,"
    "  created INTEGER NOT NULL"
    ");"
    "CREATE TABLE user_domains ("
    "  username TEXT NOT NULL COLLATE NOCASE"
    "          REFERENCES users(name) ON DELETE CASCADE,"
    "  domain  TEXT NOT NULL,"
    "  PRIMARY KEY (username, domain)"
    ") WITHOUT ROWID;",
    /* 2: per-user delivery mode (sandbox: written to data_dir/sandbox/, never sent) */
    "ALTER TABLE users ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;",
    /* 3: sending domains and their DKIM keys (private keys live in files) */
    "CREATE TABLE domains ("
    "  name    TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,"
    "  created INTEGER NOT NULL"
    ");"
    "CREATE TABLE dkim_keys ("
    "  domain     TEXT NOT NULL COLLATE NOCASE REFERENCES domains(name) ON DELETE CASCADE,"
    "  selector   TEXT NOT NULL,"
    "  alg        TEXT NOT NULL,"
    "  path       TEXT NOT NULL,"
    "  public_txt TEXT NOT NULL,"
    "  created    INTEGER NOT NULL,"
    "  active     INTEGER NOT NULL,"
    "  PRIMARY KEY (domain, selector)"
    ") WITHOUT ROWID;",
    /* 4: events, suppression lists, API keys, webhooks and their delivery jobs.
     * Times in unix ms. AUTOINCREMENT: a seq (an API cursor) or a webhook id is
     * never reused, even once pruning has emptied the table. Event indexes:
     * events_user is (username, seq) (the rowid ends every index), so a page of
     * one account's events in seq order is a range scan, not a sort of all of
     * them; events_user_time serves time ranges and the statistics;
     * events_time the pruning. */
    "CREATE TABLE events ("
    "  seq         INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time        INTEGER NOT NULL,"
    "  type        TEXT NOT NULL,"
    "  msgid       TEXT,"
    "  recipient   TEXT COLLATE NOCASE,"
    "  rcpt_domain TEXT NOT NULL DEFAULT '',"
    "  sender      TEXT,"
    "  username    TEXT COLLATE NOCASE,"
    "  stream      TEXT,"
    "  source      TEXT,"
    "  status      TEXT,"
    "  class       TEXT,"
    "  remote      TEXT,"
    "  reply       TEXT,"
    "  attempts    INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX events_user ON events(username);"
    "CREATE INDEX events_user_time ON events(username, time);"
    "CREATE INDEX events_msgid ON events(msgid);"
    "CREATE INDEX events_user_rcpt ON events(username, recipient);"
    "CREATE INDEX events_time ON events(time);"
    "CREATE TABLE suppressions ("
    "  username TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,"
    "  address  TEXT NOT NULL,"
    "  reason   TEXT NOT NULL DEFAULT '',"
    "  created  INTEGER NOT NULL,"
    "  PRIMARY KEY (username, address)"
    ") WITHOUT ROWID;"
    "CREATE TABLE api_keys ("
    "  id        TEXT NOT NULL PRIMARY KEY,"
    "  username  TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,"
    "  name      TEXT NOT NULL DEFAULT '',"
    "  hash      BLOB NOT NULL,"
    "  created   INTEGER NOT NULL,"
    "  last_used INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX api_keys_user ON api_keys(username, created);"
    "CREATE TABLE webhooks ("
    "  id       INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  username TEXT NOT NULL COLLATE NOCASE REFERENCES users(name) ON DELETE CASCADE,"
    "  url      TEXT NOT NULL,"
    "  secret   TEXT NOT NULL,"
    "  events   TEXT NOT NULL DEFAULT '',"
    "  created  INTEGER NOT NULL"
    ");"
    "CREATE INDEX webhooks_user ON webhooks(username);"
    "CREATE TABLE webhook_jobs ("
    "  id           INTEGER PRIMARY KEY,"
    "  url          TEXT NOT NULL,"
    "  secret       TEXT NOT NULL DEFAULT '',"
    "  body         TEXT NOT NULL,"
    "  attempts     INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt INTEGER NOT NULL,"
    "  created      INTEGER NOT NULL"
    ");"
    "CREATE INDEX webhook_jobs_next ON webhook_jobs(next_attempt);",
    /* 5: DKIM key states (issue 11): pending (published, not signing), active,
     * retiring (published, no longer signing, since state_since). Keys that
     * signed stay active; a key an earlier rotate had stopped is retiring since
     * that rotation, which created the domain's newest keys. */
    "ALTER TABLE dkim_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active'"
    "  CHECK (state IN ('pending', 'active', 'retiring'));"
    "ALTER TABLE dkim_keys ADD COLUMN state_since INTEGER NOT NULL DEFAULT 0;"
    "UPDATE dkim_keys SET"
    "  state = CASE WHEN active THEN 'active' ELSE 'retiring' END,"
    "  state_since = CASE WHEN active THEN created ELSE"
    "    (SELECT max(k.created) FROM dkim_keys k WHERE k.domain = dkim_keys.domain) END;"
    "ALTER TABLE dkim_keys DROP COLUMN active;",
    /* 6: whether a webhook job is for an operator's endpoint (the private-address
     * check depends on who created the webhook, never on its URL). Jobs queued
     * before are taken as an account's: the safe side. */
    "ALTER TABLE webhook_jobs ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;",
};

static const char store_sql_version_table[] = "CREATE TABLE IF NOT EXISTS schema_version ("
                                              "  version INTEGER PRIMARY KEY,"
                                              "  applied INTEGER NOT NULL"
                                              ");";

/* Prepared statements, by id. */
enum store_st {
	STORE_ST_BEGIN,
	STORE_ST_COMMIT,
	STORE_ST_ROLLBACK,
	STORE_ST_USER_INSERT,
	STORE_ST_DOMAIN_INSERT,
	STORE_ST_USER_GET,
	STORE_ST_USER_LIST,
	STORE_ST_USER_DEL,
	STORE_ST_USER_SETPW,
	STORE_ST_USER_SETSANDBOX,
	STORE_ST__COUNT
};

static const struct {
	const char *name;
	const char *sql;
} store_stmts[] = {
    [STORE_ST_BEGIN] = {"begin", "BEGIN IMMEDIATE"},
    [STORE_ST_COMMIT] = {"commit", "COMMIT"},
    [STORE_ST_ROLLBACK] = {"rollback", "ROLLBACK"},
    [STORE_ST_USER_INSERT] = {"user_insert",
                              "INSERT INTO users(name, pwhash, created) VALUES (?1, ?2, ?3)"},
    [STORE_ST_DOMAIN_INSERT] = {"domain_insert", "INSERT OR IGNORE INTO user_domains(username, domain) "
                                                 "VALUES (?1, ?2)"},
    [STORE_ST_USER_GET] = {"user_get", "SELECT u.name, u.pwhash, u.created, d.domain, u.sandbox FROM users u "
                                       "LEFT JOIN user_domains d ON d.username = u.name "
                                       "WHERE u.name = ?1 ORDER BY d.domain"},
    [STORE_ST_USER_LIST] = {"user_list",
                            "SELECT u.name, u.pwhash, u.created, d.domain, u.sandbox FROM users u "
                            "LEFT JOIN user_domains d ON d.username = u.name "
                            "ORDER BY u.name, d.domain"},
    [STORE_ST_USER_DEL] = {"user_del", "DELETE FROM users WHERE name = ?1"},
    [STORE_ST_USER_SETPW] = {"user_setpw", "UPDATE users SET pwhash = ?2 WHERE name = ?1"},
    [STORE_ST_USER_SETSANDBOX] = {"user_setsandbox",
                                  "UPDATE users SET sandbox = CAST(?2 AS INTEGER) WHERE name = ?1"},
};
_Static_assert(ARRAY_LEN(store_stmts) == STORE_ST__COUNT, "store_stmts out of sync");

/* One open database. Owns db, rdb, path and the prepared statements (store_int.h
 * shows db, rdb and their locks to the other store files). */
struct store {
	pthread_mutex_t lock; /* guards db and stmt */
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[STORE_ST__COUNT];
	pthread_mutex_t rlock; /* guards rdb and rstmt */
	sqlite3 *rdb;          /* read-only, for the hot point lookups */
	sqlite3_stmt *rstmt[STORE_RST__COUNT];
};

/* store_db - the connection and its lock, for the store's other files. */
sqlite3 *store_db(struct store *st, pthread_mutex_t **lock)
{
	*lock = &st->lock;
	return st->db;
}

/* store_rdb - the read-only connection and its lock. */
sqlite3 *store_rdb(struct store *st, pthread_mutex_t **lock)
{
	*lock = &st->rlock;
	return st->rdb;
}

/* store_rstmt - a cached statement of the read connection, ready for binding. */
sqlite3_stmt *store_rstmt(struct store *st, enum store_rst id, const char *sql)
{
	if (st->rstmt[id] == NULL) {
		int src = sqlite3_prepare_v3(st->rdb, sql, -1, SQLITE_PREPARE_PERSISTENT,
		                             &st->rstmt[id], NULL);
		if (src != SQLITE_OK) {
			(void)store_fail_db(st, st->rdb, "prepare_read", src);
			return NULL;
		}
	}
	sqlite3_reset(st->rstmt[id]);
	sqlite3_clear_bindings(st->rstmt[id]);
	return st->rstmt[id];
}

/* Called for each user read; takes ownership of u; false stops the reading. */
typedef bool (*store_emit_fn)(void *arg, struct store_user *u);

static enum rc store_rc(int src)
{
	switch (src & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return RC_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return RC_TEMPFAIL;
	case SQLITE_NOMEM:
		return RC_NOMEM;
	case SQLITE_CONSTRAINT:
		if (src == SQLITE_CONSTRAINT_PRIMARYKEY || src == SQLITE_CONSTRAINT_UNIQUE)
			return RC_EXISTS;
		return RC_INVALID;
	default:
		return RC_IO;
	}
}

/* store_fail_db - log a SQLite failure on db (never with bound values: they may
 * be hashes) and map it. */
enum rc store_fail_db(struct store *st, sqlite3 *db, const char *op, int src)
{
	enum rc rc = store_rc(src);
	if (rc != RC_EXISTS)
		log_err("event=store_error op=%s db=%s sqlite=\"%s\" msg=\"%s\"", op, st->path,
		        sqlite3_errstr(src), db ? sqlite3_errmsg(db) : "");
	return rc;
}

/* store_fail - store_fail_db on the main connection. */
enum rc store_fail(struct store *st, const char *op, int src)
{
	return store_fail_db(st, st->db, op, src);
}

/* store_is_user_name - 1-64 characters of [A-Za-z0-9._@+-]. */
bool store_is_user_name(const char *name)
{
	if (name == NULL)
		return false;
	size_t n = strnlen(name, STORE_USER_NAME_MAX + 1);
	if (n == 0 || n > STORE_USER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || strchr("._@+-", c) != NULL;
		if (!ok)
			return false;
	}
	return true;
}

static bool store_is_domain_sane(const char *d)
{
	if (d == NULL)
		return false;
	size_t n = strnlen(d, STORE_DOMAIN_MAX + 1);
	return n > 0 && n <= STORE_DOMAIN_MAX;
}

/* A prepared statement, reset and unbound, ready for its parameters. */
static sqlite3_stmt *store_stmt(struct store *st, enum store_st id)
{
	sqlite3_stmt *s = st->stmt[id];
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/* Run a statement that returns no rows; reset it afterwards. */
static enum rc store_step_done(struct store *st, enum store_st id, sqlite3_stmt *s)
{
	int src = sqlite3_step(s);
	sqlite3_reset(s);
	if (src != SQLITE_DONE)
		return store_fail(st, store_stmts[id].name, sqlite3_extended_errcode(st->db));
	return RC_OK;
}

static enum rc store_simple(struct store *st, enum store_st id)
{
	return store_step_done(st, id, store_stmt(st, id));
}

static enum rc store_bind_text(struct store *st, sqlite3_stmt *s, int i, const char *v)
{
	int src = sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	return src == SQLITE_OK ? RC_OK : store_fail(st, "bind", src);
}

/* Commit when rc is RC_OK, roll back otherwise; the result of the transaction. */
static enum rc store_end(struct store *st, enum rc rc)
{
	if (rc == RC_OK) {
		rc = store_simple(st, STORE_ST_COMMIT);
		if (rc == RC_OK)
			return RC_OK;
	}
	if (!sqlite3_get_autocommit(st->db))
		(void)store_simple(st, STORE_ST_ROLLBACK);
	return rc;
}

/* store_tx_begin - start a write transaction on the main connection. */
enum rc store_tx_begin(struct store *st)
{
	return store_simple(st, STORE_ST_BEGIN);
}

/* store_tx_end - commit on RC_OK, roll back otherwise. */
enum rc store_tx_end(struct store *st, enum rc rc)
{
	return store_end(st, rc);
}

/* store_insert_batch - prepare sql once and run insert(st, stmt, arg) inside one
 * write transaction under the main lock; nothing is kept unless all went in. */
enum rc store_insert_batch(struct store *st, const char *what, const char *sql,
			   enum rc (*insert)(struct store *st, sqlite3_stmt *s, void *arg),
			   void *arg)
{
	pthread_mutex_t *lock;
	sqlite3 *db = store_db(st, &lock);
	sqlite3_stmt *s = NULL;
	pthread_mutex_lock(lock);
	int src = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	enum rc rc = src == SQLITE_OK ? store_tx_begin(st) : store_fail(st, what, src);
	if (rc == RC_OK) {
		rc = insert(st, s, arg);
		sqlite3_reset(s);
		rc = store_tx_end(st, rc);
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(lock);
	return rc;
}

/* Create the database file 0600 if it is missing: SQLite would use 0644, and it
 * gives the -wal and -shm files the main file's mode. */
static enum rc store_create_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_err("event=store_error op=create db=%s error=\"%s\"", path, strerror(errno));
		return RC_IO;
	}
	close(fd);
	return RC_OK;
}

/* Constant SQL (pragmas, migrations): never anything built from input. */
static enum rc store_exec(struct store *st, const char *op, const char *sql)
{
	int src = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? RC_OK : store_fail(st, op, sqlite3_extended_errcode(st->db));
}

/* One-row, one-column integer query on constant SQL; *out = 0 for NULL. */
static enum rc store_query_int(struct store *st, const char *op, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int src = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (src != SQLITE_OK)
		return store_fail(st, op, src);
	src = sqlite3_step(s);
	*out = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_finalize(s);
	return src == SQLITE_ROW ? RC_OK : store_fail(st, op, sqlite3_extended_errcode(st->db));
}

static enum rc store_pragmas(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int src = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
	if (src != SQLITE_OK)
		return store_fail(st, "journal_mode", src);
	src = sqlite3_step(s);
	const char *mode = src == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
	bool wal = mode != NULL && strcmp(mode, "wal") == 0;
	sqlite3_finalize(s);
	if (!wal) {
		log_err("event=store_error op=journal_mode db=%s msg=\"cannot enable WAL\"",
		        st->path);
		return src == SQLITE_ROW ? RC_IO : store_fail(st, "journal_mode", src);
	}
	enum rc rc = store_exec(st, "synchronous", "PRAGMA synchronous=NORMAL");
	if (rc == RC_OK)
		rc = store_exec(st, "foreign_keys", "PRAGMA foreign_keys=ON");
	int64_t fk = 0;
	if (rc == RC_OK)
		rc = store_query_int(st, "foreign_keys", "PRAGMA foreign_keys", &fk);
	if (rc == RC_OK && fk != 1) {
		log_err("event=store_error op=foreign_keys db=%s msg=\"not supported\"", st->path);
		rc = RC_IO;
	}
	return rc;
}

static enum rc store_record_version(struct store *st, int64_t v)
{
	sqlite3_stmt *s = NULL;
	int src = sqlite3_prepare_v2(
	    st->db, "INSERT INTO schema_version(version, applied) VALUES (?1, ?2)", -1, &s, NULL);
	if (src != SQLITE_OK)
		return store_fail(st, "schema_version", src);
	sqlite3_bind_int64(s, 1, v);
	sqlite3_bind_int64(s, 2, time_now_ms() / 1000);
	src = sqlite3_step(s);
	sqlite3_finalize(s);
	return src == SQLITE_DONE
	           ? RC_OK
	           : store_fail(st, "schema_version", sqlite3_extended_errcode(st->db));
}

/* Apply the migrations this database lacks; caller holds a write transaction. */
static enum rc store_migrate_locked(struct store *st)
{
	const int64_t known = (int64_t)ARRAY_LEN(store_migrations);
	int64_t cur = 0;
	enum rc rc = store_exec(st, "schema_version", store_sql_version_table);
	if (rc == RC_OK)
		rc = store_query_int(st, "schema_version",
		                     "SELECT max(version) FROM schema_version", &cur);
	if (rc == RC_OK && cur > known) {
		log_err("event=store_error op=migrate db=%s version=%lld known=%lld "
		        "msg=\"database is newer than this relevo\"",
		        st->path, (long long)cur, (long long)known);
		return RC_INVALID;
	}
	for (int64_t v = cur + 1; rc == RC_OK && v <= known; v++) {
		rc = store_exec(st, "migrate", store_migrations[v - 1]);
		if (rc == RC_OK)
			rc = store_record_version(st, v);
		if (rc == RC_OK)
			log_info("event=store_migrated db=%s version=%lld", st->path, (long long)v);
	}
	return rc;
}

/* Bring the schema up to date in one IMMEDIATE transaction (statements are not
 * prepared yet: the tables they name may not exist). */
static enum rc store_migrate(struct store *st)
{
	enum rc rc = store_exec(st, "begin", "BEGIN IMMEDIATE");
	if (rc != RC_OK)
		return rc;
	rc = store_migrate_locked(st);
	if (rc == RC_OK)
		rc = store_exec(st, "commit", "COMMIT");
	if (rc != RC_OK && !sqlite3_get_autocommit(st->db))
		(void)store_exec(st, "rollback", "ROLLBACK");
	return rc;
}

static enum rc store_prepare(struct store *st)
{
	for (size_t i = 0; i < STORE_ST__COUNT; i++) {
		int src = sqlite3_prepare_v3(st->db, store_stmts[i].sql, -1,
		                             SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
		if (src != SQLITE_OK)
			return store_fail(st, store_stmts[i].name, src);
	}
	return RC_OK;
}

static enum rc store_connect(struct store *st)
{
	int src =
	    sqlite3_open_v2(st->path, &st->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK)
		return store_fail(st, "open", src);
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	enum rc rc = store_pragmas(st);
	if (rc == RC_OK)
		rc = store_migrate(st);
	if (rc == RC_OK)
		rc = store_prepare(st);
	return rc;
}

/* The read-only connection, opened once the schema is current. */
static enum rc store_connect_read(struct store *st)
{
	int src =
	    sqlite3_open_v2(st->path, &st->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK)
		return store_fail_db(st, st->rdb, "open_read", src);
	sqlite3_extended_result_codes(st->rdb, 1);
	sqlite3_busy_timeout(st->rdb, STORE_BUSY_TIMEOUT_MS);
	sqlite3_db_config(st->rdb, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	return RC_OK;
}

/* store_open - open data_dir/relevo.db, creating the directory (0700), the file
 * (0600) and the schema as needed. */
enum rc store_open(const char *data_dir, struct store **out)
{
	*out = NULL;
	if (data_dir == NULL || *data_dir == '\0')
		return RC_INVALID;
	if (file_mkdir_p(data_dir, 0700) != RC_OK) {
		log_err("event=store_error op=mkdir dir=%s error=\"%s\"", data_dir,
		        strerror(errno));
		return RC_IO;
	}
	struct store *st = xcalloc(1, sizeof *st);
	st->path = xasprintf("%s/%s", data_dir, STORE_DB_NAME);
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->rlock, NULL);
	enum rc rc = store_create_file(st->path);
	if (rc == RC_OK)
		rc = store_connect(st);
	if (rc == RC_OK)
		rc = store_connect_read(st);
	if (rc != RC_OK) {
		store_close(st);
		return rc;
	}
	*out = st;
	return RC_OK;
}

/* store_close - finalize statements and close the database; NULL is a no-op. */
void store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < STORE_RST__COUNT; i++)
		sqlite3_finalize(st->rstmt[i]);
	if (st->rdb && sqlite3_close(st->rdb) != SQLITE_OK) /* before db: it is the reader */
		log_err("event=store_error op=close_read db=%s msg=\"%s\"", st->path,
		        sqlite3_errmsg(st->rdb));
	for (size_t i = 0; i < STORE_ST__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_err("event=store_error op=close db=%s msg=\"%s\"", st->path,
		        sqlite3_errmsg(st->db));
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->rlock);
	free(st->path);
	free(st);
}

/* store_user_free - free a user and everything it owns; NULL is a no-op. */
void store_user_free(struct store_user *u)
{
	if (u == NULL)
		return;
	free(u->name);
	if (u->pwhash) {
		explicit_bzero(u->pwhash, strlen(u->pwhash));
		free(u->pwhash);
	}
	for (size_t i = 0; i < u->ndomains; i++)
		free(u->domains[i]);
	free(u->domains);
	free(u);
}

static enum rc store_user_push_domain(struct store_user *u, const char *d)
{
	if (u->ndomains >= STORE_USER_MAX_DOMAINS)
		return RC_LIMIT;
	u->domains = xrealloc(u->domains, (u->ndomains + 1) * sizeof *u->domains);
	u->domains[u->ndomains++] = xstrdup(d);
	return RC_OK;
}

static struct store_user *store_user_from_row(sqlite3_stmt *s)
{
	struct store_user *u = xcalloc(1, sizeof *u);
	const char *name = (const char *)sqlite3_column_text(s, 0);
	const char *pwhash = (const char *)sqlite3_column_text(s, 1);
	u->name = xstrdup(name ? name : "");
	u->pwhash = xstrdup(pwhash ? pwhash : "");
	u->created = sqlite3_column_int64(s, 2);
	u->sandbox = sqlite3_column_int(s, 4) != 0;
	return u;
}

/* Step s (rows: name, pwhash, created, domain-or-NULL, grouped by name) and hand
 * each complete user to emit. Resets s. */
static enum rc store_read_users(struct store *st, sqlite3_stmt *s, const char *op,
                                store_emit_fn emit, void *arg)
{
	struct store_user *u = NULL;
	enum rc rc = RC_OK;
	int src = SQLITE_DONE;
	while (rc == RC_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		if (u && name && strcmp(u->name, name) != 0) {
			bool more = emit(arg, u);
			u = NULL;
			if (!more)
				break;
		}
		if (u == NULL)
			u = store_user_from_row(s);
		const char *d = (const char *)sqlite3_column_text(s, 3);
		if (d)
			rc = store_user_push_domain(u, d);
	}
	if (rc == RC_OK && src != SQLITE_ROW && src != SQLITE_DONE)
		rc = store_fail(st, op, sqlite3_extended_errcode(st->db));
	sqlite3_reset(s);
	if (rc == RC_OK && u)
		(void)emit(arg, u);
	else
		store_user_free(u);
	return rc;
}

static enum rc store_insert_user(struct store *st, const char *name, const char *pwhash)
{
	sqlite3_stmt *s = store_stmt(st, STORE_ST_USER_INSERT);
	enum rc rc = store_bind_text(st, s, 1, name);
	if (rc == RC_OK)
		rc = store_bind_text(st, s, 2, pwhash);
	if (rc == RC_OK && sqlite3_bind_int64(s, 3, time_now_ms() / 1000) != SQLITE_OK)
		rc = store_fail(st, "bind", sqlite3_extended_errcode(st->db));
	return rc == RC_OK ? store_step_done(st, STORE_ST_USER_INSERT, s) : rc;
}

static enum rc store_insert_domain(struct store *st, const char *name, const char *domain)
{
	char lower[STORE_DOMAIN_MAX + 1];
	str_lcpy(lower, domain, sizeof lower);
	str_lower(lower);
	sqlite3_stmt *s = store_stmt(st, STORE_ST_DOMAIN_INSERT);
	enum rc rc = store_bind_text(st, s, 1, name);
	if (rc == RC_OK)
		rc = store_bind_text(st, s, 2, lower);
	return rc == RC_OK ? store_step_done(st, STORE_ST_DOMAIN_INSERT, s) : rc;
}

static enum rc store_check_add(const char *name, const char *pwhash, const char *const *domains,
                               size_t ndomains)
{
	if (!store_is_user_name(name) || pwhash == NULL || *pwhash == '\0')
		return RC_INVALID;
	if (ndomains > STORE_USER_MAX_DOMAINS)
		return RC_LIMIT;
	if (ndomains > 0 && domains == NULL)
		return RC_INVALID;
	for (size_t i = 0; i < ndomains; i++)
		if (!store_is_domain_sane(domains[i]))
			return RC_INVALID;
	return RC_OK;
}

/* store_user_add - insert a user and its domains (lower-cased, duplicates merged)
 * in one transaction; RC_EXISTS if the name is taken (in any letter case). */
enum rc store_user_add(struct store *st, const char *name, const char *pwhash,
                       const char *const *domains, size_t ndomains)
{
	enum rc rc = store_check_add(name, pwhash, domains, ndomains);
	if (rc != RC_OK)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = store_simple(st, STORE_ST_BEGIN);
	if (rc == RC_OK) {
		rc = store_insert_user(st, name, pwhash);
		for (size_t i = 0; rc == RC_OK && i < ndomains; i++)
			rc = store_insert_domain(st, name, domains[i]);
		rc = store_end(st, rc);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static bool store_emit_one(void *arg, struct store_user *u)
{
	*(struct store_user **)arg = u;
	return false;
}

/* store_user_get - the user with its domains; RC_NOTFOUND if there is none. */
enum rc store_user_get(struct store *st, const char *name, struct store_user **out)
{
	*out = NULL;
	if (!store_is_user_name(name))
		return RC_INVALID;
	struct store_user *u = NULL;
	pthread_mutex_lock(&st->lock);
	sqlite3_stmt *s = store_stmt(st, STORE_ST_USER_GET);
	enum rc rc = store_bind_text(st, s, 1, name);
	if (rc == RC_OK)
		rc = store_read_users(st, s, store_stmts[STORE_ST_USER_GET].name, store_emit_one,
		                      &u);
	pthread_mutex_unlock(&st->lock);
	if (rc != RC_OK)
		return rc;
	if (u == NULL)
		return RC_NOTFOUND;
	*out = u;
	return RC_OK;
}

/* Run a one-row UPDATE/DELETE keyed by user name: RC_NOTFOUND if no row changed. */
static enum rc store_user_change(struct store *st, enum store_st id, const char *name,
                                 const char *pwhash)
{
	pthread_mutex_lock(&st->lock);
	sqlite3_stmt *s = store_stmt(st, id);
	enum rc rc = store_bind_text(st, s, 1, name);
	if (rc == RC_OK && pwhash)
		rc = store_bind_text(st, s, 2, pwhash);
	if (rc == RC_OK)
		rc = store_step_done(st, id, s);
	if (rc == RC_OK && sqlite3_changes(st->db) == 0)
		rc = RC_NOTFOUND;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* store_user_del - delete a user and (by cascade) its domains, API keys,
 * suppressions and webhooks. Its events stay (history, pruned by age). */
enum rc store_user_del(struct store *st, const char *name)
{
	if (!store_is_user_name(name))
		return RC_INVALID;
	return store_user_change(st, STORE_ST_USER_DEL, name, NULL);
}

/* store_user_set_password - replace a user's password hash. */
enum rc store_user_set_password(struct store *st, const char *name, const char *pwhash)
{
	if (!store_is_user_name(name) || pwhash == NULL || *pwhash == '\0')
		return RC_INVALID;
	return store_user_change(st, STORE_ST_USER_SETPW, name, pwhash);
}

/* store_user_set_sandbox - the user's mail goes to data_dir/sandbox/ (or not). */
enum rc store_user_set_sandbox(struct store *st, const char *name, bool on)
{
	if (!store_is_user_name(name))
		return RC_INVALID;
	return store_user_change(st, STORE_ST_USER_SETSANDBOX, name, on ? "1" : "0");
}

struct store_list_ctx {
	bool (*fn)(void *arg, const struct store_user *u);
	void *arg;
};

static bool store_emit_list(void *arg, struct store_user *u)
{
	struct store_list_ctx *ctx = arg;
	bool more = ctx->fn(ctx->arg, u);
	store_user_free(u);
	return more;
}

/* store_user_list - fn for each user in name order, with the store locked. */
enum rc store_user_list(struct store *st, bool (*fn)(void *arg, const struct store_user *u),
                        void *arg)
{
	struct store_list_ctx ctx = {fn, arg};
	pthread_mutex_lock(&st->lock);
	sqlite3_stmt *s = store_stmt(st, STORE_ST_USER_LIST);
	enum rc rc =
	    store_read_users(st, s, store_stmts[STORE_ST_USER_LIST].name, store_emit_list, &ctx);
	pthread_mutex_unlock(&st->lock);
	return rc;
}
