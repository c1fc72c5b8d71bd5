/*
 * dkim_cache.c - a thread-safe cache of each sending domain's active signing
 * keys, and signing of a whole message held in an evbuffer.
 *
 * The keys come from a loader the owner supplies (policy_dkim_load reads the
 * store and data_dir/keys/), so this module stays free of the store. An entry is
 * reloaded when it is older than DKIM_CACHE_TTL_MS, so `relevo domain
 * add/rotate` reach a running daemon within a minute. The reload happens on the
 * thread that needs it (a SQLite read and a PEM parse: rare, milliseconds).
 */
#include "dkim/dkim.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#define DKIM_CACHE_TTL_MS 60000

struct dkim_cache_entry {
	struct dkim_cache_entry *next;
	char domain[256];
	int64_t loaded;				/* monotonic ms */
	struct dkim_loaded_keys keys;
};

struct dkim_cache {
	pthread_mutex_t lock;
	dkim_cache_loader load;
	void *ctx;
	struct dkim_cache_entry *entries;
};

/* dkim_loaded_keys_clear - drop the references held by k. */
void dkim_loaded_keys_clear(struct dkim_loaded_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		EVP_PKEY_free(k->pkey[i]);
	k->n = 0;
}

struct dkim_cache *dkim_cache_new(dkim_cache_loader load, void *ctx)
{
	struct dkim_cache *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	c->load = load;
	c->ctx = ctx;
	return c;
}

void dkim_cache_free(struct dkim_cache *c)
{
	if (c == NULL)
		return;
	while (c->entries) {
		struct dkim_cache_entry *e = c->entries;
		c->entries = e->next;
		dkim_loaded_keys_clear(&e->keys);
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void entry_load(struct dkim_cache *c, struct dkim_cache_entry *e)
{
	dkim_loaded_keys_clear(&e->keys);
	e->loaded = time_mono_ms();
	c->load(c->ctx, e->domain, &e->keys);
}

/* cache_keys_for - copies of the active keys of domain (references taken). */
static size_t cache_keys_for(struct dkim_cache *c, const char *domain,
			     struct dkim_key out[DKIM_CACHE_KEYS_MAX],
			     char sel[DKIM_CACHE_KEYS_MAX][DKIM_SELECTOR_MAX + 1])
{
	pthread_mutex_lock(&c->lock);
	struct dkim_cache_entry *e;
	for (e = c->entries; e; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			break;
	if (e == NULL) {
		e = xcalloc(1, sizeof *e);
		str_lcpy(e->domain, domain, sizeof e->domain);
		e->next = c->entries;
		c->entries = e;
		entry_load(c, e);
	} else if (time_mono_ms() - e->loaded > DKIM_CACHE_TTL_MS) {
		entry_load(c, e);
	}
	size_t n = e->keys.n;
	for (size_t i = 0; i < n; i++) {
		str_lcpy(sel[i], e->keys.selector[i], sizeof sel[i]);
		EVP_PKEY_up_ref(e->keys.pkey[i]);
		out[i] = (struct dkim_key){.alg = e->keys.alg[i], .selector = sel[i],
					   .pkey = e->keys.pkey[i]};
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* dkim_cache_sign - sign body as domain with every active key. */
enum rc dkim_cache_sign(struct dkim_cache *c, const char *domain, const struct evbuffer *body,
			char **out)
{
	struct dkim_key keys[DKIM_CACHE_KEYS_MAX];
	char sel[DKIM_CACHE_KEYS_MAX][DKIM_SELECTOR_MAX + 1];
	*out = NULL;
	size_t n = cache_keys_for(c, domain, keys, sel);
	if (n == 0)
		return RC_NOTFOUND;
	for (size_t i = 0; i < n; i++)
		keys[i].domain = domain;
	struct dkim_signer *sg = NULL;
	enum rc rc = dkim_signer_new(keys, n, NULL, &sg);
	struct evbuffer_ptr pos;
	evbuffer_ptr_set((struct evbuffer *)body, &pos, 0, EVBUFFER_PTR_SET);
	struct evbuffer_iovec v;
	while (rc == RC_OK && evbuffer_peek((struct evbuffer *)body, -1, &pos, &v, 1) > 0 &&
	       v.iov_len > 0) {
		rc = dkim_signer_feed(sg, v.iov_base, v.iov_len);
		if (evbuffer_ptr_set((struct evbuffer *)body, &pos, v.iov_len, EVBUFFER_PTR_ADD) < 0)
			break;
	}
	if (rc == RC_OK)
		rc = dkim_signer_finish(sg, out);
	dkim_signer_free(sg);
	for (size_t i = 0; i < n; i++)
		EVP_PKEY_free(keys[i].pkey);
	return rc;
}
