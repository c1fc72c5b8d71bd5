/*
 * test_dkim_cache.c - the signing-key cache (src/dkim/dkim_cache.c) with a
 * scripted loader: what dkim_cache_sign answers for a domain without keys, with
 * keys, with keys that cannot be read (EACCES, EMFILE: RC_IO and the errno, never
 * "no key"); a failed reload keeps the keys it had; dkim_cache_changed() makes
 * every entry reload at once; a failure is retried soon; the cache is bounded.
 * The asynchronous lookup: a hit completes before dkim_cache_lookup returns, a
 * miss later on the caller's loop after a load on another thread; concurrent
 * lookups of one domain load once; a cancelled lookup never calls back; the
 * least recently used entry is the one evicted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "dkim/dkim.h"

enum script { S_KEYS, S_NONE, S_PENDING_ONLY, S_FAIL };

/* The loader's script: what it answers next, and how often it was called. */
struct loader {
	enum script what;
	int error;
	int calls;
	EVP_PKEY *pkey;
};

/* For the asynchronous tests: the loader's thread, and a gate it waits at. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_closed;
static pthread_t load_thread;

static void fake_load(void *ctx, const char *domain, struct dkim_loaded_keys *out)
{
	struct loader *l = ctx;
	(void)domain;
	pthread_mutex_lock(&gate_lock);
	while (gate_closed)
		pthread_cond_wait(&gate_cond, &gate_lock);
	load_thread = pthread_self();
	l->calls++;
	pthread_mutex_unlock(&gate_lock);
	switch (l->what) {
	case S_KEYS:
		EVP_PKEY_up_ref(l->pkey);
		str_lcpy(out->selector[0], "ed-1", sizeof out->selector[0]);
		out->alg[0] = DKIM_ALG_ED25519_SHA256;
		out->pkey[0] = l->pkey;
		out->n = 1;
		out->registered = true;
		break;
	case S_NONE:
		break;
	case S_PENDING_ONLY:
		out->registered = true;
		break;
	case S_FAIL:
		out->registered = true;
		out->failed = true;
		out->error = l->error;
		break;
	}
}

static struct evbuffer *message(void)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n");
	return b;
}

/* sign - dkim_cache_sign's rc for example.com; *st its status. */
static enum rc sign(struct dkim_cache *c, struct dkim_sign_status *st)
{
	struct evbuffer *b = message();
	char *sig = NULL;
	enum rc rc = dkim_cache_sign(c, "example.com", b, &sig, st);
	if (rc == RC_OK) {
		assert_non_null(sig);
		assert_non_null(strstr(sig, "s=ed-1"));
	}
	free(sig);
	evbuffer_free(b);
	return rc;
}

static const struct {
	const char *label;
	enum script what;
	int error;
	enum rc want;
	bool registered, unreadable;
} first_cases[] = {
    {"keys: signed", S_KEYS, 0, RC_OK, true, false},
    {"no domain: not found, not registered", S_NONE, 0, RC_NOTFOUND, false, false},
    {"only pending keys: not found, registered", S_PENDING_ONLY, 0, RC_NOTFOUND, true, false},
    {"permission denied: RC_IO, EACCES", S_FAIL, EACCES, RC_IO, true, true},
    {"descriptors exhausted: RC_IO, EMFILE", S_FAIL, EMFILE, RC_IO, true, true},
    {"not a key: RC_IO, no errno", S_FAIL, 0, RC_IO, true, true},
};

static void test_first_load(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof first_cases / sizeof first_cases[0]; i++) {
		struct loader l = {.what = first_cases[i].what, .error = first_cases[i].error};
		assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
		struct dkim_cache *c = dkim_cache_new(fake_load, &l);
		struct dkim_sign_status st;
		print_message("case: %s\n", first_cases[i].label);
		assert_int_equal(sign(c, &st), first_cases[i].want);
		assert_int_equal(st.registered, first_cases[i].registered);
		assert_int_equal(st.unreadable, first_cases[i].unreadable);
		assert_int_equal(st.error, first_cases[i].error);
		/* cached: a second message does not load again */
		sign(c, &st);
		assert_int_equal(l.calls, 1);
		dkim_cache_free(c);
		EVP_PKEY_free(l.pkey);
	}
}

/* A reload that cannot read the key keeps signing with the key it had. */
static void test_failed_reload_keeps_keys(void **state)
{
	(void)state;
	struct loader l = {.what = S_KEYS};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct dkim_cache *c = dkim_cache_new(fake_load, &l);
	struct dkim_sign_status st;
	assert_int_equal(sign(c, &st), RC_OK);
	l.what = S_FAIL;
	l.error = EMFILE;
	dkim_cache_changed();
	assert_int_equal(sign(c, &st), RC_OK); /* still the old key */
	assert_int_equal(l.calls, 2);
	assert_true(st.unreadable);
	/* retried after about a second, not a minute */
	l.what = S_KEYS;
	sleep(2);
	assert_int_equal(sign(c, &st), RC_OK);
	assert_int_equal(l.calls, 3);
	assert_false(st.unreadable);
	dkim_cache_free(c);
	EVP_PKEY_free(l.pkey);
}

/* dkim_cache_changed: the next use reloads (a new domain's keys are seen at once). */
static void test_changed_reloads(void **state)
{
	(void)state;
	struct loader l = {.what = S_NONE};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct dkim_cache *c = dkim_cache_new(fake_load, &l);
	struct dkim_sign_status st;
	assert_int_equal(sign(c, &st), RC_NOTFOUND);
	l.what = S_KEYS;
	assert_int_equal(sign(c, &st), RC_NOTFOUND); /* cached for a minute */
	dkim_cache_changed();
	assert_int_equal(sign(c, &st), RC_OK);
	assert_int_equal(l.calls, 2);
	dkim_cache_free(c);
	EVP_PKEY_free(l.pkey);
}

/* Bounded: 5000 domains leave at most 4096 entries, and each still signs. */
static void test_bounded(void **state)
{
	(void)state;
	struct loader l = {.what = S_KEYS};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct dkim_cache *c = dkim_cache_new(fake_load, &l);
	struct evbuffer *b = message();
	for (int i = 0; i < 5000; i++) {
		char d[64], *sig = NULL;
		snprintf(d, sizeof d, "d%d.example", i);
		assert_int_equal(dkim_cache_sign(c, d, b, &sig, NULL), RC_OK);
		free(sig);
	}
	assert_int_equal(l.calls, 5000);
	/* the most recent is still cached, the first was evicted */
	char *sig = NULL;
	assert_int_equal(dkim_cache_sign(c, "d4999.example", b, &sig, NULL), RC_OK);
	free(sig);
	assert_int_equal(l.calls, 5000);
	assert_int_equal(dkim_cache_sign(c, "d0.example", b, &sig, NULL), RC_OK);
	free(sig);
	assert_int_equal(l.calls, 5001);
	evbuffer_free(b);
	dkim_cache_free(c);
	EVP_PKEY_free(l.pkey);
}

/* What a lookup's callback saw. */
struct got {
	int calls;
	enum rc rc;
	struct dkim_lookup *handle;	/* cleared by the callback */
};

static void on_keys(void *arg, struct dkim_keyset *ks)
{
	struct got *g = arg;
	struct evbuffer *b = message();
	char *sig = NULL;
	g->calls++;
	g->handle = NULL;
	g->rc = dkim_keyset_sign(ks, "example.com", b, &sig, NULL);
	if (g->rc == RC_OK)
		assert_non_null(strstr(sig, "s=ed-1"));
	free(sig);
	evbuffer_free(b);
}

static void gate_set(bool closed)
{
	pthread_mutex_lock(&gate_lock);
	gate_closed = closed;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static int loader_calls(const struct loader *l)
{
	pthread_mutex_lock(&gate_lock);
	int n = l->calls;
	pthread_mutex_unlock(&gate_lock);
	return n;
}

/* run_until - run base until *calls reaches want (or 5 s pass). */
static void run_until(struct event_base *base, const int *calls, int want)
{
	for (int i = 0; i < 5000 && *calls < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(*calls, want);
}

/* A miss completes later, on the loop, after a load on another thread; a hit
 * completes at once. */
static void test_lookup_miss_then_hit(void **state)
{
	(void)state;
	struct loader l = {.what = S_KEYS};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct event_base *base = event_base_new();
	struct dkim_cache *c = dkim_cache_new(fake_load, &l);
	struct got g = {0};
	gate_set(true); /* the load cannot finish before we look */
	g.handle = dkim_cache_lookup(c, base, "example.com", on_keys, &g);
	assert_non_null(g.handle);
	assert_int_equal(g.calls, 0);
	gate_set(false);
	run_until(base, &g.calls, 1);
	assert_int_equal(g.rc, RC_OK);
	assert_null(g.handle);
	assert_false(pthread_equal(load_thread, pthread_self()));
	/* a hit: the callback runs before lookup returns */
	struct got h = {0};
	assert_null(dkim_cache_lookup(c, base, "example.com", on_keys, &h));
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.rc, RC_OK);
	assert_int_equal(loader_calls(&l), 1);
	/* dkim_cache_changed: a miss again */
	dkim_cache_changed();
	l.what = S_NONE;
	struct got k = {0};
	assert_non_null(dkim_cache_lookup(c, base, "example.com", on_keys, &k));
	run_until(base, &k.calls, 1);
	assert_int_equal(k.rc, RC_NOTFOUND);
	dkim_cache_free(c);
	event_base_free(base);
	EVP_PKEY_free(l.pkey);
}

/* Ten lookups of one domain while it loads: one load, ten callbacks; a
 * cancelled one never calls back. */
static void test_lookup_concurrent_load_once(void **state)
{
	(void)state;
	struct loader l = {.what = S_KEYS};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct event_base *base = event_base_new();
	struct dkim_cache *c = dkim_cache_new(fake_load, &l);
	struct got g[10] = {0};
	gate_set(true);
	for (int i = 0; i < 10; i++) {
		g[i].handle = dkim_cache_lookup(c, base, "example.com", on_keys, &g[i]);
		assert_non_null(g[i].handle);
	}
	dkim_lookup_cancel(g[3].handle);
	gate_set(false);
	int done = 0;
	for (int t = 0; t < 5000 && done < 9; t++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
		done = 0;
		for (int i = 0; i < 10; i++)
			done += g[i].calls;
	}
	assert_int_equal(done, 9);
	assert_int_equal(g[3].calls, 0);
	for (int i = 0; i < 10; i++)
		if (i != 3)
			assert_int_equal(g[i].rc, RC_OK);
	assert_int_equal(loader_calls(&l), 1);
	/* cancelled after the load finished but before the loop ran it */
	dkim_cache_changed();
	struct got late = {0};
	late.handle = dkim_cache_lookup(c, base, "example.com", on_keys, &late);
	assert_non_null(late.handle);
	for (int t = 0; t < 5000 && loader_calls(&l) < 2; t++)
		usleep(1000);
	usleep(10000);
	dkim_lookup_cancel(late.handle);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(late.calls, 0);
	dkim_cache_free(c);
	event_base_free(base);
	EVP_PKEY_free(l.pkey);
}

/* Bounded by max entries; the least recently used one goes, not the oldest. */
static void test_lookup_lru(void **state)
{
	(void)state;
	struct loader l = {.what = S_KEYS};
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &l.pkey), RC_OK);
	struct event_base *base = event_base_new();
	struct dkim_cache *c = dkim_cache_new_max(fake_load, &l, 3);
	const char *order[] = {"a.example", "b.example", "c.example", "a.example", "d.example"};
	for (size_t i = 0; i < ARRAY_LEN(order); i++) {
		struct got g = {0};
		if (dkim_cache_lookup(c, base, order[i], on_keys, &g))
			run_until(base, &g.calls, 1);
		assert_int_equal(g.calls, 1);
	}
	assert_int_equal(loader_calls(&l), 4); /* a was a hit */
	/* d evicted b (least recently used), not a (the oldest loaded) */
	struct got g = {0};
	assert_null(dkim_cache_lookup(c, base, "a.example", on_keys, &g));
	assert_null(dkim_cache_lookup(c, base, "c.example", on_keys, &g));
	assert_null(dkim_cache_lookup(c, base, "d.example", on_keys, &g));
	assert_non_null(dkim_cache_lookup(c, base, "b.example", on_keys, &g));
	run_until(base, &g.calls, 4);
	assert_int_equal(loader_calls(&l), 5);
	dkim_cache_free(c);
	event_base_free(base);
	EVP_PKEY_free(l.pkey);
}

int main(void)
{
	core_threads_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_load),
	    cmocka_unit_test(test_failed_reload_keeps_keys),
	    cmocka_unit_test(test_changed_reloads),
	    cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_lookup_miss_then_hit),
	    cmocka_unit_test(test_lookup_concurrent_load_once),
	    cmocka_unit_test(test_lookup_lru),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
