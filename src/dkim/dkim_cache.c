/*
 * dkim_cache.c - a thread-safe cache of each sending domain's active signing
 * keys, and signing of a whole message held in an evbuffer.
 *
 * The keys come from a loader the owner supplies (policy_dkim_load reads the
 * store and data_dir/keys/), so this module stays free of the store. The reload
 * happens on the thread that needs it (a SQLite read and a PEM parse: rare,
 * milliseconds). An entry is reloaded when
 *   - it is older than DKIM_CACHE_TTL_MS, so CLI changes (domain add, activate,
 *     retire-key, a daemon that could not be told) reach a running daemon
 *     within a minute;
 *   - dkim_cache_changed() was called since it was loaded (the daemon's own
 *     activations, `relevo domain ...` telling the daemon over its control
 *     socket, a reload): at once, in every cache of the process;
 *   - its last load failed to read a key (EACCES, EMFILE, ...): after
 *     DKIM_CACHE_RETRY_MS, not a minute later. When such a failed reload finds
 *     nothing usable but the entry held keys, those keys stay in use (a domain
 *     whose key cannot be opened for a moment, under descriptor pressure, keeps
 *     signing rather than getting 451s).
 * Bounded: at most DKIM_CACHE_ENTRIES_MAX domains; past that the least recently
 * used entry is dropped.
 */
#include "dkim/dkim.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#define DKIM_CACHE_TTL_MS 60000
#define DKIM_CACHE_RETRY_MS 1000
#define DKIM_CACHE_ENTRIES_MAX 4096
#define DKIM_CACHE_BUCKETS 1024

struct dkim_cache_entry {
	struct dkim_cache_entry *next;		/* bucket chain */
	char domain[DKIM_DOMAIN_MAX + 1];
	int64_t loaded;				/* monotonic ms */
	int64_t used;				/* monotonic ms, for eviction */
	uint64_t gen;				/* dkim_cache_gen when loaded */
	struct dkim_loaded_keys keys;
};

struct dkim_cache {
	pthread_mutex_t lock;
	dkim_cache_loader load;
	void *ctx;
	size_t count;
	struct dkim_cache_entry *bucket[DKIM_CACHE_BUCKETS];
};

/* Bumped by dkim_cache_changed(): every entry loaded before is stale. */
static _Atomic uint64_t dkim_cache_gen = 1;

/* dkim_loaded_keys_clear - drop the references held by k (and its status). */
void dkim_loaded_keys_clear(struct dkim_loaded_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		EVP_PKEY_free(k->pkey[i]);
	k->n = 0;
	k->registered = false;
	k->failed = false;
	k->error = 0;
}

/* dkim_cache_changed - keys changed somewhere: every cache reloads on next use. */
void dkim_cache_changed(void)
{
	atomic_fetch_add(&dkim_cache_gen, 1);
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
	for (size_t b = 0; b < DKIM_CACHE_BUCKETS; b++) {
		while (c->bucket[b]) {
			struct dkim_cache_entry *e = c->bucket[b];
			c->bucket[b] = e->next;
			dkim_loaded_keys_clear(&e->keys);
			free(e);
		}
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static size_t cache_hash(const char *domain)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)domain; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h % DKIM_CACHE_BUCKETS);
}

/* cache_evict_lru - drop the least recently used entry; lock held. */
static void cache_evict_lru(struct dkim_cache *c)
{
	struct dkim_cache_entry **victim = NULL;
	for (size_t b = 0; b < DKIM_CACHE_BUCKETS; b++)
		for (struct dkim_cache_entry **p = &c->bucket[b]; *p; p = &(*p)->next)
			if (victim == NULL || (*p)->used < (*victim)->used)
				victim = p;
	if (victim == NULL)
		return;
	struct dkim_cache_entry *e = *victim;
	*victim = e->next;
	dkim_loaded_keys_clear(&e->keys);
	free(e);
	c->count--;
}

/* entry_load - (re)load e; a failed load that finds nothing keeps e's keys. */
static void entry_load(struct dkim_cache *c, struct dkim_cache_entry *e, int64_t now)
{
	struct dkim_loaded_keys fresh = {0};
	e->gen = atomic_load(&dkim_cache_gen);
	e->loaded = now;
	c->load(c->ctx, e->domain, &fresh);
	if (fresh.failed && fresh.n == 0 && e->keys.n > 0) {
		e->keys.failed = true;
		e->keys.error = fresh.error;
		return;
	}
	dkim_loaded_keys_clear(&e->keys);
	e->keys = fresh;
}

static bool entry_stale(const struct dkim_cache_entry *e, int64_t now)
{
	int64_t ttl = e->keys.failed ? DKIM_CACHE_RETRY_MS : DKIM_CACHE_TTL_MS;
	return now - e->loaded > ttl || e->gen != atomic_load(&dkim_cache_gen);
}

/* cache_entry - domain's entry, loaded or refreshed as needed; lock held. */
static struct dkim_cache_entry *cache_entry(struct dkim_cache *c, const char *domain)
{
	int64_t now = time_mono_ms();
	size_t b = cache_hash(domain);
	struct dkim_cache_entry *e;
	for (e = c->bucket[b]; e; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			break;
	if (e == NULL) {
		if (c->count >= DKIM_CACHE_ENTRIES_MAX)
			cache_evict_lru(c);
		e = xcalloc(1, sizeof *e);
		str_lcpy(e->domain, domain, sizeof e->domain);
		e->next = c->bucket[b];
		c->bucket[b] = e;
		c->count++;
		entry_load(c, e, now);
	} else if (entry_stale(e, now)) {
		entry_load(c, e, now);
	}
	e->used = now;
	return e;
}

/* cache_keys_for - copies of the active keys of domain (references taken). */
static size_t cache_keys_for(struct dkim_cache *c, const char *domain,
			     struct dkim_key out[DKIM_CACHE_KEYS_MAX],
			     char sel[DKIM_CACHE_KEYS_MAX][DKIM_SELECTOR_MAX + 1],
			     struct dkim_sign_status *st)
{
	pthread_mutex_lock(&c->lock);
	struct dkim_cache_entry *e = cache_entry(c, domain);
	size_t n = e->keys.n;
	for (size_t i = 0; i < n; i++) {
		str_lcpy(sel[i], e->keys.selector[i], sizeof sel[i]);
		EVP_PKEY_up_ref(e->keys.pkey[i]);
		out[i] = (struct dkim_key){.alg = e->keys.alg[i], .selector = sel[i],
					   .pkey = e->keys.pkey[i]};
	}
	st->registered = e->keys.registered;
	st->unreadable = e->keys.failed;
	st->error = e->keys.error;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* cache_sign_with - feed body to a signer of keys[0..n) and finish. */
static enum rc cache_sign_with(const struct dkim_key *keys, size_t n, const struct evbuffer *body,
			       char **out)
{
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
	return rc;
}

/* dkim_cache_sign - sign body as domain with every active key. */
enum rc dkim_cache_sign(struct dkim_cache *c, const char *domain, const struct evbuffer *body,
			char **out, struct dkim_sign_status *status)
{
	struct dkim_key keys[DKIM_CACHE_KEYS_MAX];
	char sel[DKIM_CACHE_KEYS_MAX][DKIM_SELECTOR_MAX + 1];
	struct dkim_sign_status local;
	struct dkim_sign_status *st = status ? status : &local;
	*st = (struct dkim_sign_status){0};
	*out = NULL;
	size_t n = cache_keys_for(c, domain, keys, sel, st);
	if (n == 0)
		return st->unreadable ? RC_IO : RC_NOTFOUND;
	for (size_t i = 0; i < n; i++)
		keys[i].domain = domain;
	enum rc rc = cache_sign_with(keys, n, body, out);
	for (size_t i = 0; i < n; i++)
		EVP_PKEY_free(keys[i].pkey);
	return rc;
}
