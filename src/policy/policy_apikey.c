/*
 * policy_apikey.c - API keys: creation (random, shown once) and checking.
 *
 * A key is "rlv_<id>_<secret>": the id (16 hex digits) finds the row, the
 * SHA-256 of the whole key is compared in constant time. Only the hash is
 * stored, so a leaked database does not leak usable keys.
 */
#include "policy/policy.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define APIKEY_PREFIX "rlv_"
#define APIKEY_ID_HEX 16
#define APIKEY_SECRET_HEX 40

static void apikey_hash(const char *key, unsigned char out[STORE_APIKEY_HASH_LEN])
{
	crypto_hash_sha256(out, (const unsigned char *)key, strlen(key));
}

/* apikey_split - the id of a well-formed key, else false. */
static bool apikey_split(const char *key, char id[APIKEY_ID_HEX + 1])
{
	if (strlen(key) != POLICY_APIKEY_LEN || strncmp(key, APIKEY_PREFIX, 4) != 0 ||
	    key[4 + APIKEY_ID_HEX] != '_')
		return false;
	for (size_t i = 4; i < POLICY_APIKEY_LEN; i++) {
		if (i == 4 + APIKEY_ID_HEX)
			continue;
		if (!strchr("0123456789abcdef", key[i]) || key[i] == '\0')
			return false;
	}
	memcpy(id, key + 4, APIKEY_ID_HEX);
	id[APIKEY_ID_HEX] = '\0';
	return true;
}

enum rc policy_apikey_create(struct store *st, const char *user, const char *name, char **key,
			     char **id)
{
	if (sodium_init() < 0)
		return RC_TEMPFAIL;
	unsigned char raw[APIKEY_ID_HEX / 2 + APIKEY_SECRET_HEX / 2];
	char hex[sizeof raw * 2 + 1];
	unsigned char hash[STORE_APIKEY_HASH_LEN];
	for (int tries = 0; tries < 4; tries++) {
		randombytes_buf(raw, sizeof raw);
		sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
		char *k = xasprintf(APIKEY_PREFIX "%.*s_%s", APIKEY_ID_HEX, hex, hex + APIKEY_ID_HEX);
		char *i = xstrndup(hex, APIKEY_ID_HEX);
		apikey_hash(k, hash);
		enum rc rc = store_apikey_add(st, i, user, name ? name : "", hash);
		if (rc == RC_OK) {
			*key = k;
			*id = i;
			return RC_OK;
		}
		sodium_memzero(k, strlen(k));
		free(k);
		free(i);
		if (rc != RC_EXISTS)
			return rc;
	}
	return RC_TEMPFAIL;
}

enum rc policy_apikey_check(struct store *st, const char *key, struct store_user **out)
{
	char id[APIKEY_ID_HEX + 1];
	unsigned char hash[STORE_APIKEY_HASH_LEN];
	struct store_apikey *k = NULL;
	*out = NULL;
	if (key == NULL || !apikey_split(key, id))
		return RC_PERMFAIL;
	enum rc rc = store_apikey_get(st, id, &k);
	if (rc == RC_NOTFOUND)
		return RC_PERMFAIL;
	if (rc != RC_OK)
		return RC_TEMPFAIL;
	apikey_hash(key, hash);
	bool ok = sodium_memcmp(hash, k->hash, sizeof hash) == 0;
	if (ok) {
		int64_t now = time_now_ms();
		if (now - k->last_used > 60000)
			store_apikey_touch(st, id, now);
		rc = store_user_get(st, k->user, out);
		if (rc == RC_NOTFOUND)
			rc = RC_PERMFAIL;
		else if (rc != RC_OK)
			rc = RC_TEMPFAIL;
	} else {
		rc = RC_PERMFAIL;
	}
	store_apikey_free(k);
	return rc;
}
