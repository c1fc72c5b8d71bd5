/*
 * dkim_cache.c - a thread-safe, bounded cache of each sending domain's active
 * signing keys, loaded off the event loops, and signing of a whole message held
 * in an evbuffer.
 *
 * The keys come from a loader the owner supplies (policy_dkim_load reads the
 * store and data_dir/keys/), so this module stays free of the store. A load is a
 * SQLite read and PEM parses: it runs on the cache's own work-queue thread
 * (core_workq.c), never on a loop and never with the cache's lock held, so a hit
 * on one loop never waits for another domain's load. dkim_cache_lookup answers a
 * hit at once (its callback runs before it returns) and a miss later, on the
 * caller's event base; concurrent lookups of one domain wait for one load.
 *
 * An entry is reloaded when
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
 *
 * Memory bound: at most DKIM_CACHE_ENTRIES_MAX domains (4096); past that the
 * least recently used entry that is not loading is dropped (O(1), a list in use
 * order). An entry of a domain without keys (what a client varying its From:
 * domains creates) costs about 1.5 KiB (the entry and its key set, whose
 * selector names are fixed arrays), so the cache stays under about 6 MiB
 * whatever clients send; a registered domain adds its active keys (at most
 * DKIM_CACHE_KEYS_MAX, a few KiB each for RSA-2048). Loads in flight are bounded
 * by the entries (one per entry), waiters by the callers' own sessions.
 *
 * Ownership: the cache owns its entries and their key sets; a key set is
 * immutable once published and reference-counted, so a caller may sign with it
 * while a reload replaces it. A lookup handle belongs to the cache until its
 * callback ran or it was cancelled.
 */
#include "dkim/dkim.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#define DKIM_CACHE_TTL_MS 60000
#define DKIM_CACHE_RETRY_MS 1000
#define DKIM_CACHE_ENTRIES_MAX 4096
#define DKIM_CACHE_BUCKETS 1024

/* A domain's keys as one load found them: immutable, shared by reference. */
struct dkim_keyset {
	atomic_uint refs;
	struct dkim_loaded_keys keys;
};

struct dkim_cache_entry {
	struct dkim_cache_entry *next;		/* bucket chain */
	struct dkim_cache_entry *newer, *older;	/* use order (c->newest first) */
	char domain[DKIM_DOMAIN_MAX + 1];
	int64_t loaded;				/* monotonic ms */
	uint64_t gen;				/* dkim_cache_gen when loaded */
	struct dkim_keyset *ks;			/* owned; NULL before the first load */
	bool loading;				/* a load is queued or running: never evicted */
	struct dkim_lookup *waiters;		/* waiting for that load */
	struct dkim_cache *c;
};

/* A lookup waiting for a load; completed on its caller's base. */
struct dkim_lookup {
	struct dkim_lookup *next;
	struct dkim_cache *c;
	struct dkim_cache_entry *e;		/* while waiting (not fired) */
	struct event *ev;			/* on the caller's base */
	dkim_lookup_fn cb;
	void *arg;
	struct dkim_keyset *ks;			/* set (a reference) when fired */
	bool fired;
};

struct dkim_cache {
	pthread_mutex_t lock;
	dkim_cache_loader load;
	void *ctx;
	struct workq *wq;			/* one thread: the loads */
	size_t count, max;
	struct dkim_cache_entry *newest, *oldest;
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

/* keyset_new - a key set taking over k's references (k is left empty). */
static struct dkim_keyset *keyset_new(struct dkim_loaded_keys *k)
{
	struct dkim_keyset *ks = xcalloc(1, sizeof *ks);
	atomic_init(&ks->refs, 1);
	ks->keys = *k;
	*k = (struct dkim_loaded_keys){0};
	return ks;
}

/* dkim_keyset_ref - one more reference to ks. */
struct dkim_keyset *dkim_keyset_ref(struct dkim_keyset *ks)
{
	atomic_fetch_add(&ks->refs, 1);
	return ks;
}

/* dkim_keyset_unref - drop a reference; the last frees the keys. */
void dkim_keyset_unref(struct dkim_keyset *ks)
{
	if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) != 1)
		return;
	dkim_loaded_keys_clear(&ks->keys);
	free(ks);
}

/* dkim_keyset_status - what the load that made ks found. */
void dkim_keyset_status(const struct dkim_keyset *ks, struct dkim_sign_status *st)
{
	*st = (struct dkim_sign_status){.registered = ks->keys.registered,
					.unreadable = ks->keys.failed,
					.error = ks->keys.error};
}

/* dkim_cache_new_max - a cache of at most max domains (0: DKIM_CACHE_ENTRIES_MAX). */
struct dkim_cache *dkim_cache_new_max(dkim_cache_loader load, void *ctx, size_t max)
{
	struct dkim_cache *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	c->load = load;
	c->ctx = ctx;
	c->max = max ? max : DKIM_CACHE_ENTRIES_MAX;
	/* one load per entry at most: the queue never refuses one */
	c->wq = workq_new(1, c->max + 1);
	return c;
}

struct dkim_cache *dkim_cache_new(dkim_cache_loader load, void *ctx)
{
	return dkim_cache_new_max(load, ctx, 0);
}

/* dkim_cache_free - after every lookup completed or was cancelled. */
void dkim_cache_free(struct dkim_cache *c)
{
	if (c == NULL)
		return;
	workq_free(c->wq); /* finishes the loads in flight */
	for (size_t b = 0; b < DKIM_CACHE_BUCKETS; b++) {
		while (c->bucket[b]) {
			struct dkim_cache_entry *e = c->bucket[b];
			c->bucket[b] = e->next;
			dkim_keyset_unref(e->ks);
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

/* lru_unlink - take e out of the use order; lock held. */
static void lru_unlink(struct dkim_cache *c, struct dkim_cache_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

/* lru_touch - e was just used; lock held. */
static void lru_touch(struct dkim_cache *c, struct dkim_cache_entry *e)
{
	if (c->newest == e)
		return;
	if (e->newer || e->older || c->oldest == e)
		lru_unlink(c, e);
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
}

/* cache_evict_lru - drop the least recently used entry not loading; false if
 * every entry is loading. Lock held. */
static bool cache_evict_lru(struct dkim_cache *c)
{
	struct dkim_cache_entry *e = c->oldest;
	while (e && e->loading)
		e = e->newer;
	if (e == NULL)
		return false;
	lru_unlink(c, e);
	struct dkim_cache_entry **p = &c->bucket[cache_hash(e->domain)];
	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	dkim_keyset_unref(e->ks);
	free(e);
	c->count--;
	return true;
}

/* cache_find - domain's entry or NULL; lock held. */
static struct dkim_cache_entry *cache_find(struct dkim_cache *c, const char *domain)
{
	for (struct dkim_cache_entry *e = c->bucket[cache_hash(domain)]; e; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			return e;
	return NULL;
}

/* cache_add - a new, empty entry for domain (the LRU one dropped if full); NULL
 * when full of entries that are loading. Lock held. */
static struct dkim_cache_entry *cache_add(struct dkim_cache *c, const char *domain)
{
	if (c->count >= c->max && !cache_evict_lru(c))
		return NULL;
	struct dkim_cache_entry *e = xcalloc(1, sizeof *e);
	str_lcpy(e->domain, domain, sizeof e->domain);
	e->c = c;
	size_t b = cache_hash(domain);
	e->next = c->bucket[b];
	c->bucket[b] = e;
	c->count++;
	lru_touch(c, e);
	return e;
}

static bool entry_fresh(const struct dkim_cache_entry *e, int64_t now)
{
	if (e->ks == NULL)
		return false;
	int64_t ttl = e->ks->keys.failed ? DKIM_CACHE_RETRY_MS : DKIM_CACHE_TTL_MS;
	return now - e->loaded <= ttl && e->gen == atomic_load(&dkim_cache_gen);
}

/* entry_install - fresh (a load started at generation gen) becomes e's key set;
 * a failed load that finds nothing keeps the keys e had. Lock held. */
static void entry_install(struct dkim_cache_entry *e, struct dkim_loaded_keys *fresh,
			  uint64_t gen, int64_t now)
{
	struct dkim_keyset *old = e->ks;
	if (fresh->failed && fresh->n == 0 && old && old->keys.n > 0) {
		struct dkim_loaded_keys kept = old->keys;
		for (size_t i = 0; i < kept.n; i++)
			EVP_PKEY_up_ref(kept.pkey[i]);
		kept.failed = true;
		kept.error = fresh->error;
		dkim_loaded_keys_clear(fresh);
		e->ks = keyset_new(&kept);
	} else {
		e->ks = keyset_new(fresh);
	}
	dkim_keyset_unref(old);
	e->gen = gen;
	e->loaded = now;
}

/* cache_load_job - on the cache's thread: load e, install it, wake its waiters. */
static void cache_load_job(void *arg)
{
	struct dkim_cache_entry *e = arg;	/* not evicted while loading */
	struct dkim_cache *c = e->c;
	struct dkim_loaded_keys fresh = {0};
	uint64_t gen = atomic_load(&dkim_cache_gen);
	c->load(c->ctx, e->domain, &fresh);
	pthread_mutex_lock(&c->lock);
	entry_install(e, &fresh, gen, time_mono_ms());
	e->loading = false;
	for (struct dkim_lookup *w = e->waiters, *next; w; w = next) {
		/* read before waking: once active, lookup_on_ready (on its loop,
		 * without this lock) may free w */
		next = w->next;
		w->ks = dkim_keyset_ref(e->ks);
		w->fired = true;
		w->e = NULL;
		/* under the lock: dkim_lookup_cancel cannot free w meanwhile */
		event_active(w->ev, 0, 0);
	}
	e->waiters = NULL;
	pthread_mutex_unlock(&c->lock);
}

/* lookup_on_ready - on the caller's loop: hand the key set to the callback. */
static void lookup_on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct dkim_lookup *w = arg;
	(void)fd;
	(void)what;
	event_free(w->ev);
	w->cb(w->arg, w->ks);
	dkim_keyset_unref(w->ks);
	free(w);
}

/* lookup_busy - complete at once with a transient key set that says the keys
 * cannot be read right now (the cache is full of loads in flight). */
static void lookup_busy(dkim_lookup_fn cb, void *arg)
{
	struct dkim_loaded_keys k = {.registered = true, .failed = true, .error = EAGAIN};
	struct dkim_keyset *ks = keyset_new(&k);
	cb(arg, ks);
	dkim_keyset_unref(ks);
}

/* dkim_cache_lookup - domain's key set: at once on a hit, later on a miss. */
struct dkim_lookup *dkim_cache_lookup(struct dkim_cache *c, struct event_base *base,
				      const char *domain, dkim_lookup_fn cb, void *arg)
{
	pthread_mutex_lock(&c->lock);
	struct dkim_cache_entry *e = cache_find(c, domain);
	if (e == NULL && (e = cache_add(c, domain)) == NULL) {
		pthread_mutex_unlock(&c->lock);
		lookup_busy(cb, arg);
		return NULL;
	}
	lru_touch(c, e);
	if (!e->loading && entry_fresh(e, time_mono_ms())) {
		struct dkim_keyset *ks = dkim_keyset_ref(e->ks);
		pthread_mutex_unlock(&c->lock);
		cb(arg, ks);
		dkim_keyset_unref(ks);
		return NULL;
	}
	struct dkim_lookup *w = xcalloc(1, sizeof *w);
	w->cb = cb;
	w->arg = arg;
	w->c = c;
	w->e = e;
	if ((w->ev = event_new(base, -1, 0, lookup_on_ready, w)) == NULL)
		fatal("event=event_new_failed where=dkim_cache_lookup");
	w->next = e->waiters;
	e->waiters = w;
	if (!e->loading) {
		e->loading = true;
		if (workq_submit(c->wq, NULL, cache_load_job, NULL, e) != RC_OK)
			fatal("event=workq_submit_failed where=dkim_cache_lookup");
	}
	pthread_mutex_unlock(&c->lock);
	return w;
}

/* dkim_lookup_cancel - the callback of l will not run; on l's loop. */
void dkim_lookup_cancel(struct dkim_lookup *l)
{
	if (l == NULL)
		return;
	struct dkim_cache *c = l->c;
	pthread_mutex_lock(&c->lock);
	if (!l->fired) {
		struct dkim_lookup **p = &l->e->waiters;
		while (*p != l)
			p = &(*p)->next;
		*p = l->next;
	}
	/* fired: the loader let go of l under this lock; its event is active on
	 * this loop, and event_free here removes it */
	pthread_mutex_unlock(&c->lock);
	event_free(l->ev);
	dkim_keyset_unref(l->ks);
	free(l);
}

/* cache_get_sync - domain's key set (a reference), loaded on this thread when
 * it is not fresh: the synchronous path (dkim_cache_sign). */
static struct dkim_keyset *cache_get_sync(struct dkim_cache *c, const char *domain)
{
	pthread_mutex_lock(&c->lock);
	struct dkim_cache_entry *e = cache_find(c, domain);
	if (e && !e->loading && entry_fresh(e, time_mono_ms())) {
		lru_touch(c, e);
		struct dkim_keyset *ks = dkim_keyset_ref(e->ks);
		pthread_mutex_unlock(&c->lock);
		return ks;
	}
	pthread_mutex_unlock(&c->lock);
	struct dkim_loaded_keys fresh = {0};
	uint64_t gen = atomic_load(&dkim_cache_gen);
	c->load(c->ctx, domain, &fresh);
	pthread_mutex_lock(&c->lock);
	if ((e = cache_find(c, domain)) == NULL && (e = cache_add(c, domain)) == NULL) {
		pthread_mutex_unlock(&c->lock);
		return keyset_new(&fresh);
	}
	entry_install(e, &fresh, gen, time_mono_ms());
	lru_touch(c, e);
	struct dkim_keyset *ks = dkim_keyset_ref(e->ks);
	pthread_mutex_unlock(&c->lock);
	return ks;
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

/* dkim_keyset_sign - sign body as domain with every key of ks. */
enum rc dkim_keyset_sign(const struct dkim_keyset *ks, const char *domain,
			 const struct evbuffer *body, char **out, struct dkim_sign_status *status)
{
	struct dkim_sign_status local;
	struct dkim_sign_status *st = status ? status : &local;
	dkim_keyset_status(ks, st);
	*out = NULL;
	size_t n = ks->keys.n;
	if (n == 0)
		return st->unreadable ? RC_IO : RC_NOTFOUND;
	struct dkim_key keys[DKIM_CACHE_KEYS_MAX];
	for (size_t i = 0; i < n; i++)
		keys[i] = (struct dkim_key){.alg = ks->keys.alg[i], .domain = domain,
					    .selector = ks->keys.selector[i],
					    .pkey = ks->keys.pkey[i]};
	return cache_sign_with(keys, n, body, out);
}

/* dkim_cache_sign - sign body as domain with every active key, loading them on
 * this thread if needed. */
enum rc dkim_cache_sign(struct dkim_cache *c, const char *domain, const struct evbuffer *body,
			char **out, struct dkim_sign_status *status)
{
	struct dkim_keyset *ks = cache_get_sync(c, domain);
	enum rc rc = dkim_keyset_sign(ks, domain, body, out, status);
	dkim_keyset_unref(ks);
	return rc;
}
