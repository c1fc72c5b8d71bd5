/*
 * policy_dkim.c - which keys sign a sender domain's mail: the store's active key
 * rows and their PEM files, handed to the DKIM key cache (dkim_cache.c) that the
 * SMTP workers and the HTTP API share the logic of.
 *
 * Pending keys (rotated, not yet published) and retiring ones (replaced, still
 * published) never sign. An active key whose file cannot be read is logged with
 * its path and the system's reason (event=dkim_key_unreadable: EACCES when the
 * file belongs to another user than the daemon's, EMFILE under descriptor
 * pressure, ENOENT when it was removed) and reported to the cache as a failure,
 * so that the client is told the real reason, not "no key".
 */
#include "policy/policy.h"

#include <errno.h>
#include <string.h>

#include "dkim/dkim.h"
#include "store/store.h"

/* policy_dkim_load_one - load key k into out, or log why not and mark the failure. */
static void policy_dkim_load_one(const struct store_dkim_key *k, struct dkim_loaded_keys *out)
{
	EVP_PKEY *pkey = NULL;
	enum dkim_alg alg;
	errno = 0;
	enum rc rc = dkim_key_load(k->path, &pkey, &alg);
	if (rc != RC_OK) {
		int err = rc == RC_IO || rc == RC_NOTFOUND ? (errno ? errno : EIO) : 0;
		char buf[128];
		log_err("event=dkim_key_unreadable domain=%s selector=%s path=%s error=\"%s\"",
			k->domain, k->selector, k->path,
			err ? strerror_r(err, buf, sizeof buf)
			    : rc == RC_LIMIT ? "file too large" : "not a usable private key");
		if (!out->failed)
			out->error = err;
		out->failed = true;
		return;
	}
	str_lcpy(out->selector[out->n], k->selector, sizeof out->selector[0]);
	out->alg[out->n] = alg;
	out->pkey[out->n++] = pkey;
}

/* policy_dkim_load - domain's active keys (a dkim_cache_loader). */
void policy_dkim_load(void *store, const char *domain, struct dkim_loaded_keys *out)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	enum rc rc = store_dkim_keys(store, domain, &keys, &n);
	if (rc != RC_OK) {
		/* The store could not answer (busy, descriptors): not "no key". */
		log_err("event=dkim_key_unreadable domain=%s what=store rc=%s", domain, rc_name(rc));
		out->failed = true;
		out->registered = true;
		return;
	}
	out->registered = n > 0;
	for (size_t i = 0; i < n && out->n < DKIM_CACHE_KEYS_MAX; i++)
		if (keys[i].state == STORE_DKIM_ACTIVE)
			policy_dkim_load_one(&keys[i], out);
	store_dkim_keys_free(keys, n);
}
