/*
 * test_smtp_auth.c - strict base64 and AUTH PLAIN decoding (src/smtp/smtp_auth.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp.h"
#include "unit_util.h"

static const struct {
	const char *label;
	const char *in;
	size_t len;
	size_t outsz;
	enum rc rc;
	const char *out;
	size_t outlen;
} b64_cases[] = {
	/* RFC 4648 10 test vectors */
	{"empty", S(""), 16, RC_OK, S("")},
	{"f", S("Zg=="), 16, RC_OK, S("f")},
	{"fo", S("Zm8="), 16, RC_OK, S("fo")},
	{"foo", S("Zm9v"), 16, RC_OK, S("foo")},
	{"foob", S("Zm9vYg=="), 16, RC_OK, S("foob")},
	{"fooba", S("Zm9vYmE="), 16, RC_OK, S("fooba")},
	{"foobar", S("Zm9vYmFy"), 16, RC_OK, S("foobar")},
	{"PLAIN message", S("AGFsaWNlAHNlY3JldA=="), 32, RC_OK, S("\0alice\0secret")},
	{"+ and /", S("+/+/"), 16, RC_OK, S("\xfb\xff\xbf")},
	{"all zero", S("AAAA"), 16, RC_OK, S("\0\0\0")},
	{"fits exactly", S("Zm9vYmFy"), 6, RC_OK, S("foobar")},
	{"fits exactly with padding", S("Zg=="), 1, RC_OK, S("f")},

	{"one over the buffer", S("Zm9vYmFy"), 5, RC_LIMIT, S("")},
	{"no room", S("Zg=="), 0, RC_LIMIT, S("")},
	{"padding missing (2)", S("Zg"), 16, RC_INVALID, S("")},
	{"padding missing (1)", S("Zm8"), 16, RC_INVALID, S("")},
	{"half padding", S("Zg="), 16, RC_INVALID, S("")},
	{"single char", S("Z"), 16, RC_INVALID, S("")},
	{"too much padding", S("Zg==="), 16, RC_INVALID, S("")},
	{"only padding", S("===="), 16, RC_INVALID, S("")},
	{"three pads", S("A==="), 16, RC_INVALID, S("")},
	{"= at the start", S("=Zg="), 16, RC_INVALID, S("")},
	{"= in the middle", S("Zg==Zg=="), 16, RC_INVALID, S("")},
	{"= inside a quantum", S("Z=g="), 16, RC_INVALID, S("")},
	{"CRLF appended", S("Zm9v\r\n"), 16, RC_INVALID, S("")},
	{"space inside", S("Zm 9v"), 16, RC_INVALID, S("")},
	{"space at the end", S("Zm9vYmF "), 16, RC_INVALID, S("")},
	{"tab", S("Zm9\tv"), 16, RC_INVALID, S("")},
	{"URL-safe -", S("Zm-v"), 16, RC_INVALID, S("")},
	{"URL-safe _", S("Zm_v"), 16, RC_INVALID, S("")},
	{"8-bit octet", S("\x80" "AAA"), 16, RC_INVALID, S("")},
	{"NUL", S("AA\0A"), 16, RC_INVALID, S("")},
	{"non-zero bits under == (second spelling)", S("Zh=="), 16, RC_INVALID, S("")},
	{"non-zero bits under = (second spelling)", S("Zm9="), 16, RC_INVALID, S("")},
	{"asterisk (cancel)", S("*"), 16, RC_INVALID, S("")},
	{"garbage", S("!!!!"), 16, RC_INVALID, S("")},
};

static void test_b64_decode(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(b64_cases); i++) {
		const char *label = b64_cases[i].label;
		uint8_t out[64];
		size_t outlen = 99;
		/* an exact-size heap copy: reading past the end is caught by ASan */
		char *in = malloc(b64_cases[i].len + 1);
		memcpy(in, b64_cases[i].in, b64_cases[i].len);
		memset(out, 0xee, sizeof out);
		enum rc rc = b64_decode(in, b64_cases[i].len, out, b64_cases[i].outsz, &outlen);
		CHECK(label, rc == b64_cases[i].rc);
		if (rc == RC_OK) {
			CHECK(label, outlen == b64_cases[i].outlen);
			CHECK(label, memcmp(out, b64_cases[i].out, outlen) == 0);
		} else {
			CHECK(label, outlen == 0);
		}
		CHECK(label, out[b64_cases[i].outsz] == 0xee);	/* nothing written past outsz */
		free(in);
	}
}

static void test_b64_roundtrip(void **state)
{
	(void)state;
	uint8_t in[300], back[300];
	char enc[404];
	uint32_t x = 12345;
	for (size_t len = 0; len < sizeof in; len++) {
		for (size_t k = 0; k < len; k++) {
			x = x * 1103515245u + 12345u;
			in[k] = (uint8_t)(x >> 16);
		}
		b64_encode(in, len, enc);
		assert_int_equal(strlen(enc), 4 * ((len + 2) / 3));
		size_t outlen;
		assert_int_equal(b64_decode(enc, strlen(enc), back, len, &outlen), RC_OK);
		assert_int_equal(outlen, len);
		assert_memory_equal(in, back, len);
	}
	b64_encode((const uint8_t *)"foobar", 6, enc);
	assert_string_equal(enc, "Zm9vYmFy");
	b64_encode((const uint8_t *)"fooba", 5, enc);
	assert_string_equal(enc, "Zm9vYmE=");
	b64_encode((const uint8_t *)"", 0, enc);
	assert_string_equal(enc, "");
}

static const struct {
	const char *label;
	const char *in;
	size_t len;
	enum rc rc;
	const char *user, *pass;
} plain_cases[] = {
	{"no authzid", S("\0alice\0secret"), RC_OK, "alice", "secret"},
	{"authzid equal to authcid", S("alice\0alice\0secret"), RC_OK, "alice", "secret"},
	{"e-mail address as user", S("\0alice@example.com\0s3cr3t!"), RC_OK, "alice@example.com",
	 "s3cr3t!"},
	{"UTF-8 user", S("\0\xc3\xa9l\xc3\xa8ve\0secret"), RC_OK, "\xc3\xa9l\xc3\xa8ve", "secret"},
	{"password: any octet but NUL", S("\0alice\0p\xe4ss \r\n\x01"), RC_OK, "alice",
	 "p\xe4ss \r\n\x01"},
	{"one-octet user and password", S("\0a\0b"), RC_OK, "a", "b"},

	{"authzid differs", S("bob\0alice\0secret"), RC_PERMFAIL, NULL, NULL},
	{"authzid differs in case", S("Alice\0alice\0secret"), RC_PERMFAIL, NULL, NULL},
	{"authzid prefix of authcid", S("ali\0alice\0secret"), RC_PERMFAIL, NULL, NULL},
	{"empty password", S("\0alice\0"), RC_INVALID, NULL, NULL},
	{"empty user", S("\0\0secret"), RC_INVALID, NULL, NULL},
	{"one NUL", S("alice\0secret"), RC_INVALID, NULL, NULL},
	{"no NUL", S("alicesecret"), RC_INVALID, NULL, NULL},
	{"three NULs", S("\0alice\0sec\0ret"), RC_INVALID, NULL, NULL},
	{"trailing NUL", S("\0alice\0secret\0"), RC_INVALID, NULL, NULL},
	{"only NULs", S("\0\0"), RC_INVALID, NULL, NULL},
	{"empty", S(""), RC_INVALID, NULL, NULL},
	{"CR in user (log injection)", S("\0al\rice\0secret"), RC_INVALID, NULL, NULL},
	{"LF in user (log injection)", S("\0alice\nuser=root\0secret"), RC_INVALID, NULL, NULL},
	{"DEL in user", S("\0alice\x7f\0secret"), RC_INVALID, NULL, NULL},
	{"C1 control in user", S("\0alice\xc2\x9b\0secret"), RC_INVALID, NULL, NULL},
	{"overlong UTF-8 in user", S("\0\xc0\xafx\0secret"), RC_INVALID, NULL, NULL},
	{"Latin-1 user", S("\0\xe9l\xe8ve\0secret"), RC_INVALID, NULL, NULL},
};

static void test_plain_decode(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(plain_cases); i++) {
		const char *label = plain_cases[i].label;
		char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
		uint8_t *in = malloc(plain_cases[i].len + 1);
		memcpy(in, plain_cases[i].in, plain_cases[i].len);
		memset(user, 'U', sizeof user);
		memset(pass, 'P', sizeof pass);
		enum rc rc = smtp_auth_plain_decode(in, plain_cases[i].len, user, pass);
		CHECK(label, rc == plain_cases[i].rc);
		if (rc == RC_OK) {
			CHECK(label, strcmp(user, plain_cases[i].user) == 0);
			CHECK(label, strcmp(pass, plain_cases[i].pass) == 0);
		} else {
			CHECK(label, user[0] == '\0' && pass[0] == '\0');
		}
		free(in);
	}
}

static void test_plain_limits(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		size_t ulen, plen;
		enum rc rc;
	} cases[] = {
		{"user 255, password 255", 255, 255, RC_OK},
		{"user 256", 256, 10, RC_LIMIT},
		{"password 256", 10, 256, RC_LIMIT},
		{"both huge", 5000, 5000, RC_LIMIT},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t len = 2 + cases[i].ulen + cases[i].plen;
		uint8_t *in = malloc(len);
		char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
		in[0] = 0;
		memset(in + 1, 'u', cases[i].ulen);
		in[1 + cases[i].ulen] = 0;
		memset(in + 2 + cases[i].ulen, 'p', cases[i].plen);
		enum rc rc = smtp_auth_plain_decode(in, len, user, pass);
		CHECK(cases[i].label, rc == cases[i].rc);
		if (rc == RC_OK) {
			CHECK(cases[i].label, strlen(user) == cases[i].ulen);
			CHECK(cases[i].label, strlen(pass) == cases[i].plen);
		}
		free(in);
	}
}

/* The path the server takes: base64 from the AUTH line, then PLAIN. */
static void test_plain_from_wire(void **state)
{
	(void)state;
	uint8_t buf[SMTP_AUTH_LINE_MAX];
	size_t n;
	char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];

	assert_int_equal(b64_decode(S("AGFsaWNlAHNlY3JldA=="), buf, sizeof buf, &n), RC_OK);
	assert_int_equal(smtp_auth_plain_decode(buf, n, user, pass), RC_OK);
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "secret");
	/* "bob\0alice\0secret": trying to act as another user */
	assert_int_equal(b64_decode(S("Ym9iAGFsaWNlAHNlY3JldA=="), buf, sizeof buf, &n), RC_OK);
	assert_int_equal(smtp_auth_plain_decode(buf, n, user, pass), RC_PERMFAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_decode),
		cmocka_unit_test(test_b64_roundtrip),
		cmocka_unit_test(test_plain_decode),
		cmocka_unit_test(test_plain_limits),
		cmocka_unit_test(test_plain_from_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
