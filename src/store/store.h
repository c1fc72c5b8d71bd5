/*
 * store.h - relevo's persistent state other than the spool: users and their
 * sending domains (later: DKIM keys, events, suppression, statistics).
 *
 * One interface, several backends: SQLite (WAL, data_dir/relevo.db) is the
 * embedded default; PostgreSQL comes later behind the same functions.
 * Threads: a struct store may be used from any thread; calls are serialised by an
 * internal mutex. Calls block (disk I/O): event loops call them from worker
 * threads only.
 * Ownership: out-parameters are new heap objects the caller frees with the
 * matching _free.
 */
#ifndef RELEVO_STORE_H
#define RELEVO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct store;

/* store_open - open (creating and migrating) the store under data_dir. */
enum rc store_open(const char *data_dir, struct store **out);
void store_close(struct store *st);

struct store_user {
	char *name;
	char *pwhash;		/* argon2id (libsodium) or crypt(3) string */
	int64_t created;	/* unix seconds */
	bool sandbox;		/* delivery.mode sandbox for this user's mail only */
	size_t ndomains;
	char **domains;		/* lower-cased */
};
void store_user_free(struct store_user *u);

/* store_user_add - RC_EXISTS if the name is taken. */
enum rc store_user_add(struct store *st, const char *name, const char *pwhash,
		       const char *const *domains, size_t ndomains);
/* store_user_get - RC_NOTFOUND if there is no such user. */
enum rc store_user_get(struct store *st, const char *name, struct store_user **out);
enum rc store_user_del(struct store *st, const char *name);
enum rc store_user_set_password(struct store *st, const char *name, const char *pwhash);
/* store_user_set_sandbox - per-user sandbox delivery; RC_NOTFOUND if no such user. */
enum rc store_user_set_sandbox(struct store *st, const char *name, bool on);
/* store_user_list - fn for each user in name order; stop when fn returns false. */
enum rc store_user_list(struct store *st,
			bool (*fn)(void *arg, const struct store_user *u), void *arg);

/* ---- sending domains and DKIM keys ---------------------------------------- */

struct store_dkim_key {
	char *domain;		/* lower case */
	char *selector;
	char *alg;		/* "rsa-sha256" or "ed25519-sha256" */
	char *path;		/* the private key file (PEM, mode 0600) */
	char *public_txt;	/* the DNS TXT value: "v=DKIM1; k=...; p=..." */
	int64_t created;	/* unix seconds */
	bool active;		/* signs new mail; false: retiring, still published */
};
void store_dkim_keys_free(struct store_dkim_key *keys, size_t n);

/* store_domain_add - register a sending domain; RC_EXISTS if it is. */
enum rc store_domain_add(struct store *st, const char *domain);
/* store_domain_del - forget a domain and its keys' rows (not the files). */
enum rc store_domain_del(struct store *st, const char *domain);
/* store_domain_exists - RC_OK, RC_NOTFOUND, or an error. */
enum rc store_domain_exists(struct store *st, const char *domain);
/* store_domain_list - fn(arg, name, created) per domain in name order. */
enum rc store_domain_list(struct store *st,
			  bool (*fn)(void *arg, const char *name, int64_t created), void *arg);
/* store_dkim_key_add - a new key row. */
enum rc store_dkim_key_add(struct store *st, const struct store_dkim_key *k);
/* store_dkim_keys - every key of domain, active first then by creation time. */
enum rc store_dkim_keys(struct store *st, const char *domain, struct store_dkim_key **out,
			size_t *n);
/* store_dkim_key_set_active - mark one key active or retiring. */
enum rc store_dkim_key_set_active(struct store *st, const char *domain, const char *selector,
				  bool active);
/* store_dkim_key_del - remove one key row; RC_NOTFOUND if absent. */
enum rc store_dkim_key_del(struct store *st, const char *domain, const char *selector);

#endif
