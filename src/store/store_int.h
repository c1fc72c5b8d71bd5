/*
 * store_int.h - what the store's files share (not a public header).
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

#endif
