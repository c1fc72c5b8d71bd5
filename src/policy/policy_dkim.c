/*
 * policy_dkim.c - which keys sign a sender domain's mail: the store's active key
 * rows and their PEM files, handed to the DKIM key cache (dkim_cache.c) that the
 * SMTP workers and the HTTP API share the logic of.
 */
#include "policy/policy.h"

#include "dkim/dkim.h"
#include "store/store.h"

void policy_dkim_load(void *store, const char *domain, struct dkim_loaded_keys *out)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	if (store_dkim_keys(store, domain, &keys, &n) != RC_OK)
		return;
	for (size_t i = 0; i < n && out->n < DKIM_CACHE_KEYS_MAX; i++) {
		EVP_PKEY *pkey = NULL;
		enum dkim_alg alg;
		if (!keys[i].active)
			continue;
		if (dkim_key_load(keys[i].path, &pkey, &alg) != RC_OK) {
			log_err("event=dkim_key_unusable domain=%s selector=%s path=%s", domain,
				keys[i].selector, keys[i].path);
			continue;
		}
		str_lcpy(out->selector[out->n], keys[i].selector, sizeof out->selector[0]);
		out->alg[out->n] = alg;
		out->pkey[out->n++] = pkey;
	}
	store_dkim_keys_free(keys, n);
}
