/*
 * policy.h - who may send what: credentials and sender domains (later: quotas,
 * suppression, filters).
 *
 * Password hashes are argon2id (libsodium crypto_pwhash_str); imported crypt(3)
 * hashes ($6$, $5$, $2b$, $y$) are verified with libcrypt. Verification is slow on
 * purpose (tens of ms, tens of MB): callers run it on a worker thread, never on an
 * event loop. Comparisons of secrets are constant-time.
 */
#ifndef RELEVO_POLICY_H
#define RELEVO_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

struct store;
struct store_user;

/* policy_password_hash - a new argon2id hash string of pass, heap-allocated. */
enum rc policy_password_hash(const char *pass, char **out);

/* policy_password_verify - does pass match hash (argon2id or crypt(3))? */
bool policy_password_verify(const char *hash, const char *pass);

/*
 * policy_auth_user - blocking: look the user up and verify the password.
 * RC_OK and *out (the user, with domains) on success; RC_PERMFAIL for an unknown
 * user or a wrong password (indistinguishable, and taking the same time: an
 * unknown user is checked against a dummy hash); RC_TEMPFAIL if the store failed.
 */
enum rc policy_auth_user(struct store *st, const char *name, const char *pass,
			 struct store_user **out);

/* policy_domain_valid - is d a syntactically valid domain name for a sender? */
bool policy_domain_valid(const char *d);

/* policy_user_owns - may user u send as domain (exact match, case-insensitive)? */
bool policy_user_owns(const struct store_user *u, const char *domain);

struct dkim_loaded_keys;
/*
 * policy_dkim_load - a dkim_cache_loader (ctx is the struct store): the active
 * keys of domain from the store and their PEM files. Unusable key files are
 * logged and skipped. Blocking (a SQLite read, file reads).
 */
void policy_dkim_load(void *store, const char *domain, struct dkim_loaded_keys *out);

/*
 * API keys: "rlv_" + 16 hex digits of id + "_" + 40 hex digits of secret
 * (160 random bits). The store keeps the id and the SHA-256 of the whole key:
 * the key has full entropy, so a fast hash is as safe as a slow one and keeps
 * every API request cheap.
 */
#define POLICY_APIKEY_LEN (4 + 16 + 1 + 40)
/* policy_apikey_create - a new key for user, stored; *key (shown to the operator
 * once) and *id are the caller's. RC_NOTFOUND if there is no such user. */
enum rc policy_apikey_create(struct store *st, const char *user, const char *name, char **key,
			     char **id);
/* policy_apikey_check - the account a presented key acts for: RC_OK and *out (the
 * user, with domains); RC_PERMFAIL for a malformed, unknown or revoked key
 * (compared in constant time); RC_TEMPFAIL if the store failed. */
enum rc policy_apikey_check(struct store *st, const char *key, struct store_user **out);

#endif
