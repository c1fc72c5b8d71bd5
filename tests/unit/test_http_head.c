/*
 * test_http_head.c - the API guard's request head reader (src/http/http_head.c):
 * where a head ends, fed whole and a byte at a time, and what it reads or refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_int.h"

static const struct {
	const char *label;
	const char *text;
	size_t end; /* 0: not complete */
} end_cases[] = {
    {"CRLF head", "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY", 27},
    {"LF head", "GET / HTTP/1.1\nHost: x\n\nBODY", 24},
    {"incomplete", "GET / HTTP/1.1\r\nHost: x\r\n", 0},
    {"request line only", "GET / HTTP/1.1\r\n\r\n", 18},
};

static void test_head_end(void **state)
{
	for (size_t i = 0; i < sizeof end_cases / sizeof end_cases[0]; i++) {
		const char *t = end_cases[i].text;
		size_t n = strlen(t), scanned = 0;
		size_t whole = http_head_end(t, n, &scanned);
		if (whole != end_cases[i].end)
			fail_msg("%s: whole %zu, want %zu", end_cases[i].label, whole,
				 end_cases[i].end);
		/* a byte at a time: the same end, found when its last byte arrives */
		size_t got = 0;
		scanned = 0;
		for (size_t k = 1; k <= n && got == 0; k++)
			got = http_head_end(t, k, &scanned);
		if (got != end_cases[i].end)
			fail_msg("%s: trickled %zu, want %zu", end_cases[i].label, got,
				 end_cases[i].end);
	}
}

static const struct {
	const char *label;
	const char *text;
	enum rc rc;
	uint64_t length;
	bool te;
	const char *auth;
} parse_cases[] = {
    {"a GET", "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", RC_OK, 0, false, ""},
    {"a POST with a key", "POST /v1/messages HTTP/1.0\r\ncontent-length:  42 \r\n"
     "Authorization: Bearer abc \r\n\r\n", RC_OK, 42, false, "Bearer abc"},
    {"repeated equal lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
     RC_OK, 5, false, ""},
    {"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", RC_OK, 0, true, ""},
    {"disagreeing lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     RC_PROTO, 0, false, ""},
    {"a signed length", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", RC_PROTO, 0, false, ""},
    {"a huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
     RC_PROTO, 0, false, ""},
    {"lower-case method", "get / HTTP/1.1\r\n\r\n", RC_PROTO, 0, false, ""},
    {"no version", "GET /\r\n\r\n", RC_PROTO, 0, false, ""},
    {"HTTP/2", "GET / HTTP/2.0\r\n\r\n", RC_PROTO, 0, false, ""},
    {"two spaces", "GET  / HTTP/1.1\r\n\r\n", RC_PROTO, 0, false, ""},
    {"no colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", RC_PROTO, 0, false, ""},
    {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", RC_PROTO, 0, false, ""},
    {"folded", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", RC_PROTO, 0, false, ""},
    {"bare CR", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", RC_PROTO, 0, false, ""},
    {"control char", "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", RC_PROTO, 0, false, ""},
    {"two keys", "GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", RC_PROTO, 0,
     false, ""},
};

static void test_head_parse(void **state)
{
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const char *t = parse_cases[i].text;
		struct http_head hd;
		enum rc rc = http_head_parse(t, strlen(t), &hd);
		if (rc != parse_cases[i].rc)
			fail_msg("%s: rc %d, want %d (%s)", parse_cases[i].label, rc,
				 parse_cases[i].rc, hd.error ? hd.error : "");
		if (rc != RC_OK) {
			if (hd.error == NULL || hd.error[0] == '\0')
				fail_msg("%s: no sentence for the client", parse_cases[i].label);
			continue;
		}
		if (hd.length != parse_cases[i].length || hd.has_te != parse_cases[i].te ||
		    strcmp(hd.auth, parse_cases[i].auth) != 0)
			fail_msg("%s: length %llu te %d auth \"%s\"", parse_cases[i].label,
				 (unsigned long long)hd.length, hd.has_te, hd.auth);
	}
}

static void test_bearer_key(void **state)
{
	assert_string_equal(http_bearer_key("Bearer abc"), "abc");
	assert_string_equal(http_bearer_key("bearer   abc"), "abc");
	assert_null(http_bearer_key("Basic abc"));
	assert_null(http_bearer_key(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_head_end),
	    cmocka_unit_test(test_head_parse),
	    cmocka_unit_test(test_bearer_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
