/*
 * test_policy.c - password hashing and verification (argon2id, crypt(3)),
 * authentication against a real store, domain syntax and domain ownership.
 *
 * Tests that need a store run in their own mkdtemp directory, removed afterwards.
 */
#include <crypt.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>

#include "dkim/dkim.h"
#include "policy/policy.h"
#include "store/store.h"
#include "unit_util.h"

/* Made by an independent implementation: openssl passwd -6 -salt saltsalt. */
#define OPENSSL_SHA512                                                                             \
	"$6$saltsalt$"                                                                             \
	"hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0"
#define OPENSSL_SHA256 "$5$saltsalt$myjXcpMpE2Ofk7fj9hqyNYSn6lmWG4Mqnjx.KIRRr4/"
#define OPENSSL_PASS   "correct horse"

static const struct {
	const char *label;
	const char *pass;
} hash_cases[] = {
    {"ascii", "secret"},
    {"utf-8", "p\xc3\xa4ssw\xc3\xb6rd \xe2\x82\xac"},
    {"spaces and colons", "a b:c d"},
    {"long", "0123456789012345678901234567890123456789012345678901234567890123456789"
             "0123456789012345678901234567890123456789012345678901234567890123456789"},
};

static void test_hash_and_verify(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(hash_cases); i++) {
		const char *pass = hash_cases[i].pass;
		char *hash = NULL;
		char wrong[256];
		print_message("case: %s\n", hash_cases[i].label);
		assert_int_equal(policy_password_hash(pass, &hash), RC_OK);
		assert_memory_equal(hash, "$argon2id$", 10);
		assert_null(strstr(hash, pass));
		assert_true(policy_password_verify(hash, pass));
		snprintf(wrong, sizeof wrong, "%sx", pass);
		assert_false(policy_password_verify(hash, wrong));
		wrong[strlen(pass) - 1] = '\0'; /* a prefix */
		assert_false(policy_password_verify(hash, wrong));
		assert_false(policy_password_verify(hash, ""));
		free(hash);
	}
}

static void test_hash_is_salted(void **state)
{
	char *a = NULL, *b = NULL;
	assert_int_equal(policy_password_hash("same", &a), RC_OK);
	assert_int_equal(policy_password_hash("same", &b), RC_OK);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

static void test_hash_refuses_empty(void **state)
{
	char *hash = (char *)1;
	assert_int_equal(policy_password_hash("", &hash), RC_INVALID);
	assert_null(hash);
}

/* crypt(3) hashes generated here with crypt_r, one per method. */
static const struct {
	const char *label;
	const char *prefix;
} crypt_cases[] = {
    {"sha512-crypt", "$6$"},
    {"sha256-crypt", "$5$"},
    {"bcrypt", "$2b$"},
    {"yescrypt", "$y$"},
};

static void test_crypt_generated(void **state)
{
	const char *pass = "hunter2";
	for (size_t i = 0; i < ARRAY_LEN(crypt_cases); i++) {
		char setting[CRYPT_GENSALT_OUTPUT_SIZE];
		struct crypt_data *cd = calloc(1, sizeof *cd);
		print_message("case: %s\n", crypt_cases[i].label);
		assert_non_null(
		    crypt_gensalt_rn(crypt_cases[i].prefix, 0, NULL, 0, setting, sizeof setting));
		const char *hash = crypt_r(pass, setting, cd);
		assert_non_null(hash);
		assert_memory_equal(hash, crypt_cases[i].prefix, strlen(crypt_cases[i].prefix));
		assert_true(policy_password_verify(hash, pass));
		assert_false(policy_password_verify(hash, "hunter3"));
		assert_false(policy_password_verify(hash, ""));
		free(cd);
	}
}

static void test_crypt_fixed_vectors(void **state)
{
	assert_true(policy_password_verify(OPENSSL_SHA512, OPENSSL_PASS));
	assert_false(policy_password_verify(OPENSSL_SHA512, "correct horsE"));
	assert_true(policy_password_verify(OPENSSL_SHA256, OPENSSL_PASS));
	assert_false(policy_password_verify(OPENSSL_SHA256, "correct hors"));
}

static const struct {
	const char *label;
	const char *hash;
} bad_hash_cases[] = {
    {"NULL", NULL},
    {"empty", ""},
    {"plaintext equal to the password", "hunter2"},
    {"crypt failure token", "*0"},
    {"locked account", "!"},
    {"locked sha512", "!" OPENSSL_SHA512},
    {"truncated sha512", "$6$saltsalt$"},
    {"unknown method", "$zz$abc$def"},
    {"argon2id garbage", "$argon2id$v=19$m=65536,t=2,p=1$garbage"},
    {"argon2id truncated", "$argon2id$"},
};

static void test_bad_hashes(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(bad_hash_cases); i++)
		if (policy_password_verify(bad_hash_cases[i].hash, "hunter2"))
			fail_msg("case '%s' verified", bad_hash_cases[i].label);
	assert_false(policy_password_verify(OPENSSL_SHA512, NULL));
}

/* Traditional DES crypt ignores everything after 8 characters: never accepted,
 * even with the right password. */
static void test_des_crypt_refused(void **state)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	const char *hash = crypt_r("hunter2", "ab", cd);
	if (hash != NULL && hash[0] != '*')
		assert_false(policy_password_verify(hash, "hunter2"));
	free(cd);
}

/* A store in a private temporary directory, with two users. */
struct fixture {
	char root[64];
	struct store *st;
};

static int setup_store(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	char *hash = NULL;
	if (unit_store_open("policy", "", f->root, sizeof f->root, &f->st) != 0)
		return -1;
	*state = f;
	const char *d[] = {"example.com"};
	if (policy_password_hash("right", &hash) != RC_OK)
		return -1;
	enum rc rc = store_user_add(f->st, "alice", hash, d, 1);
	free(hash);
	if (rc != RC_OK || store_user_add(f->st, "bob", OPENSSL_SHA512, d, 1) != RC_OK)
		return -1;
	return 0;
}

static int teardown_store(void **state)
{
	struct fixture *f = *state;
	int r = unit_store_close(f->root, f->st);
	free(f);
	return r;
}

/* policy_dkim_load: only active keys sign; a key file that cannot be read is a
 * failure with its errno (the client is told so), not "no key". */
static void add_dkim_key(struct store *st, const char *domain, const char *sel,
                         const char *path, enum store_dkim_state state)
{
	struct store_dkim_key k = {.domain = (char *)domain, .selector = (char *)sel,
	                           .alg = (char *)"ed25519-sha256", .path = (char *)path,
	                           .public_txt = (char *)"v=DKIM1; k=ed25519; p=AAAA",
	                           .created = 1, .state = state};
	assert_int_equal(store_dkim_key_add(st, &k), RC_OK);
}

static void test_dkim_load(void **state)
{
	struct fixture *f = *state;
	char path[128], gone[128];
	snprintf(path, sizeof path, "%s/ed-1.pem", f->root);
	snprintf(gone, sizeof gone, "%s/ed-2.pem", f->root);
	EVP_PKEY *pkey = NULL;
	assert_int_equal(dkim_key_generate(DKIM_ALG_ED25519_SHA256, &pkey), RC_OK);
	assert_int_equal(dkim_key_write(path, pkey), RC_OK);
	EVP_PKEY_free(pkey);
	assert_int_equal(store_domain_add(f->st, "ok.example"), RC_OK);
	add_dkim_key(f->st, "ok.example", "ed-1", path, STORE_DKIM_ACTIVE);
	add_dkim_key(f->st, "ok.example", "ed-p", gone, STORE_DKIM_PENDING);
	assert_int_equal(store_domain_add(f->st, "pending.example"), RC_OK);
	add_dkim_key(f->st, "pending.example", "ed-1", path, STORE_DKIM_PENDING);
	assert_int_equal(store_domain_add(f->st, "gone.example"), RC_OK);
	add_dkim_key(f->st, "gone.example", "ed-2", gone, STORE_DKIM_ACTIVE);
	static const struct {
		const char *label, *domain;
		size_t n;
		bool registered, failed;
		int error;
	} cases[] = {
	    {"active key loaded, pending one ignored", "ok.example", 1, true, false, 0},
	    {"only pending: nothing, registered", "pending.example", 0, true, false, 0},
	    {"active key file missing: failed, ENOENT", "gone.example", 0, true, true, ENOENT},
	    {"unknown domain", "none.example", 0, false, false, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct dkim_loaded_keys out = {0};
		print_message("case: %s\n", cases[i].label);
		policy_dkim_load(f->st, cases[i].domain, &out);
		assert_int_equal(out.n, cases[i].n);
		assert_int_equal(out.registered, cases[i].registered);
		assert_int_equal(out.failed, cases[i].failed);
		assert_int_equal(out.error, cases[i].error);
		if (out.n)
			assert_string_equal(out.selector[0], "ed-1");
		dkim_loaded_keys_clear(&out);
	}
}

static const struct {
	const char *label;
	const char *name;
	const char *pass;
	enum rc want;
} auth_cases[] = {
    {"right password", "alice", "right", RC_OK},
    {"name in other case", "ALICE", "right", RC_OK},
    {"wrong password", "alice", "wrong", RC_PERMFAIL},
    {"password in other case", "alice", "RIGHT", RC_PERMFAIL},
    {"empty password", "alice", "", RC_PERMFAIL},
    {"NULL password", "alice", NULL, RC_PERMFAIL},
    {"unknown user", "nobody", "right", RC_PERMFAIL},
    {"invalid user name", "no body!", "right", RC_PERMFAIL},
    {"NULL user name", NULL, "right", RC_PERMFAIL},
    {"imported sha512-crypt", "bob", OPENSSL_PASS, RC_OK},
    {"imported, wrong password", "bob", "right", RC_PERMFAIL},
};

static void test_auth_user(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < ARRAY_LEN(auth_cases); i++) {
		struct store_user *u = (struct store_user *)1;
		enum rc got = policy_auth_user(f->st, auth_cases[i].name, auth_cases[i].pass, &u);
		if (got != auth_cases[i].want)
			fail_msg("case '%s': got %s, want %s", auth_cases[i].label, rc_name(got),
			         rc_name(auth_cases[i].want));
		if (got == RC_OK) {
			assert_non_null(u);
			assert_true(str_ieq(u->name, auth_cases[i].name));
			assert_true(policy_user_owns(u, "example.com"));
		} else {
			assert_null(u);
		}
		store_user_free(u);
	}
}

static int64_t time_auth(struct store *st, const char *name, const char *pass)
{
	struct store_user *u = NULL;
	int64_t t0 = time_mono_ms();
	assert_int_equal(policy_auth_user(st, name, pass, &u), RC_PERMFAIL);
	return time_mono_ms() - t0;
}

/* An unknown user costs a hash verification too (against the dummy hash), so a
 * client cannot tell by timing which names exist. Loose bound: without the dummy
 * the unknown-user answer is three orders of magnitude faster. */
static void test_auth_unknown_user_timing(void **state)
{
	struct fixture *f = *state;
	int64_t known = 0, unknown = 0;
	for (int i = 0; i < 3; i++) {
		known += time_auth(f->st, "alice", "wrong");
		unknown += time_auth(f->st, "nobody", "wrong");
	}
	print_message("wrong password %lld ms, unknown user %lld ms\n", (long long)known,
	              (long long)unknown);
	assert_true(unknown * 3 >= known);
}

#define L63 "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc"
#define L62 "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijab"
#define L61 "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghija"

static const struct {
	const char *label;
	const char *domain;
	bool valid;
} domain_cases[] = {
    {"two labels", "example.com", true},
    {"upper case", "EXAMPLE.Com", true},
    {"single letters", "a.b", true},
    {"many labels", "mail.eu.example.co.uk", true},
    {"leading digit", "1example.com", true},
    {"inner hyphens", "a-b--c.example", true},
    {"A-label", "xn--bcher-kva.example", true},
    {"63-char label", L63 ".com", true},
    {"253 chars", L63 "." L63 "." L63 "." L61, true},
    {"NULL", NULL, false},
    {"empty", "", false},
    {"one label", "localhost", false},
    {"trailing dot", "example.com.", false},
    {"leading dot", ".example.com", false},
    {"empty label", "example..com", false},
    {"only a dot", ".", false},
    {"leading hyphen", "-example.com", false},
    {"trailing hyphen", "example-.com", false},
    {"hyphen last label", "example.-com", false},
    {"underscore", "exa_mple.com", false},
    {"space", "exa mple.com", false},
    {"at sign", "user@example.com", false},
    {"newline", "example.com\n", false},
    {"U-label", "b\u00fccher.example", false},
    {"64-char label", L63 "x.com", false},
    {"254 chars", L63 "." L63 "." L63 "." L62, false},
    {"IPv4 address", "192.0.2.1", false},
    {"numeric TLD", "example.123", false},
    {"address literal", "[192.0.2.1]", false},
};

static void test_domain_valid(void **state)
{
	assert_int_equal(strlen(L63), 63);
	assert_int_equal(strlen(L63 "." L63 "." L63 "." L61), 253);
	for (size_t i = 0; i < ARRAY_LEN(domain_cases); i++)
		if (policy_domain_valid(domain_cases[i].domain) != domain_cases[i].valid)
			fail_msg("case '%s': want %s", domain_cases[i].label,
			         domain_cases[i].valid ? "valid" : "invalid");
}

static const struct {
	const char *label;
	const char *domain;
	bool owns;
} owns_cases[] = {
    {"exact", "example.com", true},
    {"other case", "EXAMPLE.com", true},
    {"second domain, mixed case", "Shop.Example.ORG", true},
    {"subdomain not implied", "mail.example.com", false},
    {"parent not implied", "example.org", false},
    {"hyphenated suffix", "evil-example.com", false},
    {"plain suffix", "xample.com", false},
    {"longer suffix", "notexample.com", false},
    {"prefix", "example.com.evil.net", false},
    {"trailing dot", "example.com.", false},
    {"empty", "", false},
    {"NULL", NULL, false},
};

static void test_user_owns(void **state)
{
	char d0[] = "example.com", d1[] = "shop.example.org";
	char *domains[] = {d0, d1};
	struct store_user u = {.name = "alice", .ndomains = 2, .domains = domains};
	for (size_t i = 0; i < ARRAY_LEN(owns_cases); i++)
		if (policy_user_owns(&u, owns_cases[i].domain) != owns_cases[i].owns)
			fail_msg("case '%s': want %s", owns_cases[i].label,
			         owns_cases[i].owns ? "owns" : "does not own");
	assert_false(policy_user_owns(NULL, "example.com"));
	struct store_user none = {.name = "bob"};
	assert_false(policy_user_owns(&none, "example.com"));
}

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash_and_verify),
	    cmocka_unit_test(test_hash_is_salted),
	    cmocka_unit_test(test_hash_refuses_empty),
	    cmocka_unit_test(test_crypt_generated),
	    cmocka_unit_test(test_crypt_fixed_vectors),
	    cmocka_unit_test(test_bad_hashes),
	    cmocka_unit_test(test_des_crypt_refused),
	    cmocka_unit_test_setup_teardown(test_auth_user, setup_store, teardown_store),
	    cmocka_unit_test_setup_teardown(test_auth_unknown_user_timing, setup_store,
	                                    teardown_store),
	    cmocka_unit_test_setup_teardown(test_dkim_load, setup_store, teardown_store),
	    cmocka_unit_test(test_domain_valid),
	    cmocka_unit_test(test_user_owns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
