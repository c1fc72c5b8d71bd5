/*
 * store_int.h - what the store's files share (not a public header).
 *
 * Two connections per struct store: the main one (reads and writes, st->lock)
 * and a read-only one for the hot point lookups (suppression check, API key
 * get) with its own lock, so that those never queue behind a write transaction
 * on the main connection (WAL lets the reader see the last commit meanwhile).
 */
#ifndef RELEVO_STORE_INT_H
#define RELEVO_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

/* store_db - the connection and the lock every call must hold while using it. */
sqlite3 *store_db(struct store *st, pthread_mutex_t **lock);
/* store_fail - log a SQLite error for op and map it to a result code. */
enum rc store_fail(struct store *st, const char *op, int src);
/* store_fail_db - store_fail for an error on connection db (main or read). */
enum rc store_fail_db(struct store *st, sqlite3 *db, const char *op, int src);
/* store_is_user_name - 1-64 characters of [A-Za-z0-9._@+-]. */
bool store_is_user_name(const char *name);

/* store_tx_begin - BEGIN IMMEDIATE on the main connection; caller holds the lock. */
enum rc store_tx_begin(struct store *st);
/* store_tx_end - commit if rc is RC_OK, else roll back; the transaction's result. */
enum rc store_tx_end(struct store *st, enum rc rc);
/* store_insert_batch - prepare sql once and run insert(st, stmt, arg) inside one
 * write transaction under the main lock; nothing is kept unless all went in. */
enum rc store_insert_batch(struct store *st, const char *what, const char *sql,
			   enum rc (*insert)(struct store *st, sqlite3_stmt *s, void *arg),
			   void *arg);

/* Statements of the read connection, prepared on first use and kept. */
enum store_rst { STORE_RST_SUPPRESSION_CHECK, STORE_RST_APIKEY_GET, STORE_RST__COUNT };
/* store_rdb - the read-only connection and its lock (not st->lock). */
sqlite3 *store_rdb(struct store *st, pthread_mutex_t **lock);
/* store_rstmt - statement id of the read connection (sql is its text, used the
 * first time), reset and unbound; NULL on failure (logged). Caller holds the
 * read lock and resets the statement when done with it. */
sqlite3_stmt *store_rstmt(struct store *st, enum store_rst id, const char *sql);

#endif
