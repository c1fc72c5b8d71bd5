/*
 * test_dkim_cache.c - the signing-key cache (src/dkim/dkim_cache.c) with a
 * scripted loader: what dkim_cache_sign answers for a domain without keys, with
 * keys, with keys that cannot be read (EACCES, EMFILE: RC_IO and the errno, never
 * "no key"); a failed reload keeps the keys it had; dkim_cache_changed() makes
 * every entry reload at once; a failure is retried soon; the cache is bounded.
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
#include <event2/buffer.h>
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

static void fake_load(void *ctx, const char *domain, struct dkim_loaded_keys *out)
{
	struct loader *l = ctx;
	(void)domain;
	l->calls++;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_load),
	    cmocka_unit_test(test_failed_reload_keeps_keys),
	    cmocka_unit_test(test_changed_reloads),
	    cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
