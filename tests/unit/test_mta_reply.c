/*
 * test_mta_reply.c - the client's reply reader (src/mta/mta_reply.c): lines,
 * multi-line replies, enhanced status codes, the bounds a hostile server hits,
 * and the result must not depend on how the bytes are split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mta/mta.h"
#include "mta/mta_int.h"
#include "unit_util.h"

#define MAXR 4

struct result {
	size_t n;			/* complete replies */
	struct mta_reply r[MAXR];
	bool proto;			/* stopped by RC_PROTO */
	bool idle;			/* parser idle at the end */
};

/* run - feed in[0..len) in pieces of step bytes (0: all at once). */
static void run(const char *in, size_t len, size_t step, struct result *res)
{
	struct mta_reply_parser *p = malloc(sizeof *p);
	mta_reply_init(p);
	memset(res, 0, sizeof *res);
	size_t off = 0;
	while (off < len && !res->proto) {
		size_t piece = step ? MIN(step, len - off) : len - off;
		size_t poff = 0;
		while (poff < piece && !res->proto) {
			size_t used = 0, ll = 0;
			const char *line = NULL;
			enum rc rc = mta_reply_line(p, in + off + poff, piece - poff, &used, &line,
						    &ll);
			assert_true(used <= piece - poff);
			poff += used;
			if (rc == RC_PROTO) {
				res->proto = true;
				break;
			}
			if (rc == RC_AGAIN) {
				assert_int_equal(poff, piece);
				break;
			}
			assert_int_equal(rc, RC_OK);
			assert_true(ll <= MTA_REPLY_LINE_MAX);
			struct mta_reply r;
			rc = mta_reply_feed(p, line, ll, &r);
			if (rc == RC_PROTO)
				res->proto = true;
			else if (rc == RC_OK && res->n < MAXR)
				res->r[res->n++] = r;
		}
		off += piece;
	}
	res->idle = mta_reply_is_idle(p);
	free(p);
}

static const struct {
	const char *label;
	const char *in;
	size_t len;
	bool proto;
	size_t n;		/* replies expected (before any RC_PROTO) */
	int code;		/* of the first reply */
	const char *enh;
	const char *text;
	unsigned nlines;
} cases[] = {
	{"greeting", S("220 mx.example.org ESMTP ready\r\n"), false, 1, 220, "",
	 "mx.example.org ESMTP ready", 1},
	{"EHLO multi-line", S("250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), false,
	 1, 250, "", "mx.example.org; PIPELINING; SIZE 1000", 3},
	{"enhanced code", S("550 5.1.1 No such user\r\n"), false, 1, 550, "5.1.1", "No such user",
	 1},
	{"enhanced code, long fields", S("550 5.123.456 x\r\n"), false, 1, 550, "5.123.456", "x",
	 1},
	{"enhanced code alone", S("250 2.0.0\r\n"), false, 1, 250, "2.0.0", "", 1},
	{"enhanced class must match", S("550 4.1.1 odd\r\n"), false, 1, 550, "", "4.1.1 odd", 1},
	{"enhanced: 4 digits is text", S("550 5.1234.1 x\r\n"), false, 1, 550, "", "5.1234.1 x", 1},
	{"enhanced: glued is text", S("550 5.1.1x y\r\n"), false, 1, 550, "", "5.1.1x y", 1},
	{"enhanced on every line, kept once", S("451-4.7.1 Greylisted\r\n451 4.7.1 try later\r\n"),
	 false, 1, 451, "4.7.1", "Greylisted; try later", 2},
	{"enhanced only on the second line", S("554-go away\r\n554 5.7.1 really\r\n"), false, 1,
	 554, "5.7.1", "go away; really", 2},
	{"code alone", S("250\r\n"), false, 1, 250, "", "", 1},
	{"empty continuation", S("250-\r\n250 x\r\n"), false, 1, 250, "", "x", 2},
	{"bare LF ends a line", S("250-a\n250 b\n"), false, 1, 250, "", "a; b", 2},
	{"CR CR LF: one CR is the line end", S("250 a\r\r\n"), false, 1, 250, "", "a?", 1},
	{"bare CR inside", S("250 a\rb\r\n"), false, 1, 250, "", "a?b", 1},
	{"control characters", S("250 a\tb\0c\x7f" "d\x1b\r\n"), false, 1, 250, "", "a?b?c?d?", 1},
	{"UTF-8 passes", S("250 caf\xc3\xa9\r\n"), false, 1, 250, "", "caf\xc3\xa9", 1},
	{"two replies", S("250 a\r\n354 b\r\n"), false, 2, 250, "", "a", 1},
	{"incomplete: nothing yet", S("250-a\r\n250 b"), false, 0, 0, "", "", 0},
	{"letters", S("abc def\r\n"), true, 0, 0, "", "", 0},
	{"1yz is not SMTP", S("150 x\r\n"), true, 0, 0, "", "", 0},
	{"6yz", S("650 x\r\n"), true, 0, 0, "", "", 0},
	{"0yz", S("050 x\r\n"), true, 0, 0, "", "", 0},
	{"two digits", S("25 x\r\n"), true, 0, 0, "", "", 0},
	{"bad separator", S("250x ok\r\n"), true, 0, 0, "", "", 0},
	{"tab separator", S("250\tok\r\n"), true, 0, 0, "", "", 0},
	{"empty line", S("\r\n"), true, 0, 0, "", "", 0},
	{"codes differ", S("250-a\r\n251 b\r\n"), true, 0, 0, "", "", 0},
	{"codes differ after good reply", S("220 hi\r\n250-a\r\n550 b\r\n"), true, 1, 220, "",
	 "hi", 1},
};

static void test_reply_table(void **state)
{
	(void)state;
	static const size_t steps[] = {0, 1, 2, 3, 7};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		for (size_t s = 0; s < ARRAY_LEN(steps); s++) {
			char label[160];
			snprintf(label, sizeof label, "%s (step %zu)", cases[i].label, steps[s]);
			struct result res;
			run(cases[i].in, cases[i].len, steps[s], &res);
			CHECK(label, res.proto == cases[i].proto);
			CHECK(label, res.n == cases[i].n);
			if (res.n == 0)
				continue;
			CHECK(label, res.r[0].code == cases[i].code);
			CHECK(label, strcmp(res.r[0].enh, cases[i].enh) == 0);
			CHECK(label, strcmp(res.r[0].text, cases[i].text) == 0);
			CHECK(label, res.r[0].nlines == cases[i].nlines);
		}
	}
}

/* A reply of n lines "250-line" ... "250 last". */
static char *many_lines(unsigned n, size_t *len)
{
	char *buf = malloc((size_t)n * 16 + 16);
	size_t off = 0;
	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, 16, "250%cl%u\r\n", i + 1 < n ? '-' : ' ', i);
	*len = off;
	return buf;
}

static void test_reply_lines_max(void **state)
{
	(void)state;
	size_t len;
	struct result res;
	char *in = many_lines(MTA_REPLY_LINES_MAX, &len);
	run(in, len, 0, &res);
	assert_false(res.proto);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.r[0].nlines, MTA_REPLY_LINES_MAX);
	free(in);
	in = many_lines(MTA_REPLY_LINES_MAX + 1, &len);
	run(in, len, 0, &res);
	assert_true(res.proto);
	assert_int_equal(res.n, 0);
	free(in);
}

/* An over-long line is cut, the rest dropped, and the next line is intact. */
static void test_reply_long_line(void **state)
{
	(void)state;
	size_t n = 3 * MTA_REPLY_LINE_MAX;
	char *in = malloc(n + 64);
	memcpy(in, "250-", 4);
	memset(in + 4, 'x', n - 4);
	memcpy(in + n, "\r\n250 next\r\n", 12);
	static const size_t steps[] = {0, 1, 100, MTA_REPLY_LINE_MAX};
	for (size_t s = 0; s < ARRAY_LEN(steps); s++) {
		struct result res;
		run(in, n + 12, steps[s], &res);
		assert_false(res.proto);
		assert_int_equal(res.n, 1);
		assert_int_equal(res.r[0].nlines, 2);
		size_t tl = strlen(res.r[0].text);
		assert_int_equal(tl, MTA_REPLY_LINE_MAX - 4 + strlen("; next"));
		assert_string_equal(res.r[0].text + tl - 6, "; next");
		assert_true(res.idle);
	}
	free(in);
}

/* A line of exactly MTA_REPLY_LINE_MAX bytes plus CRLF loses nothing. */
static void test_reply_line_exact(void **state)
{
	(void)state;
	char in[MTA_REPLY_LINE_MAX + 2];
	memcpy(in, "250 ", 4);
	memset(in + 4, 'y', MTA_REPLY_LINE_MAX - 4);
	memcpy(in + MTA_REPLY_LINE_MAX, "\r\n", 2);
	struct result res;
	run(in, sizeof in, 0, &res);
	assert_int_equal(res.n, 1);
	assert_int_equal(strlen(res.r[0].text), MTA_REPLY_LINE_MAX - 4);
	assert_int_equal(res.r[0].text[MTA_REPLY_LINE_MAX - 5], 'y');
}

/* Bytes without a line end, or endless continuation lines, hit the bound. */
static void test_reply_endless(void **state)
{
	(void)state;
	size_t n = MTA_REPLY_BYTES_MAX + 10;
	char *in = malloc(n);
	memset(in, 'z', n);
	memcpy(in, "250 ", 4);
	struct result res;
	run(in, n, 4096, &res);
	assert_true(res.proto);
	/* Long continuation lines: fewer than MTA_REPLY_LINES_MAX of them, but
	 * more bytes than MTA_REPLY_BYTES_MAX. */
	size_t per = MTA_REPLY_BYTES_MAX / 16;
	for (size_t off = 0; off + per <= n; off += per) {
		memcpy(in + off, "250-", 4);
		memcpy(in + off + per - 2, "\r\n", 2);
	}
	run(in, n, 0, &res);
	assert_true(res.proto);
	assert_int_equal(res.n, 0);
	free(in);
}

/* Joined text is cut at MTA_REPLY_TEXT_MAX, never inside a UTF-8 sequence. */
static void test_reply_text_max(void **state)
{
	(void)state;
	char line[900];
	char *in = malloc(8 * sizeof line);
	size_t off = 0;
	for (int i = 0; i < 4; i++) {
		memcpy(line, i < 3 ? "250-" : "250 ", 4);
		size_t k = 4;	/* 886 bytes of text a line: the cut falls inside an "é" */
		while (k + 2 <= 890) {
			line[k++] = (char)0xc3;
			line[k++] = (char)0xa9;
		}
		memcpy(in + off, line, k);
		memcpy(in + off + k, "\r\n", 2);
		off += k + 2;
	}
	struct result res;
	run(in, off, 0, &res);
	assert_int_equal(res.n, 1);
	size_t tl = strlen(res.r[0].text);
	assert_true(tl < MTA_REPLY_TEXT_MAX);
	assert_true(tl > MTA_REPLY_TEXT_MAX - 8);
	/* it ends on a whole "é" (0xc3 0xa9) */
	assert_int_equal((unsigned char)res.r[0].text[tl - 1], 0xa9);
	assert_int_equal((unsigned char)res.r[0].text[tl - 2], 0xc3);
	free(in);
}

/* After RC_PROTO the parser takes the next reply. */
static void test_reply_reuse(void **state)
{
	(void)state;
	struct mta_reply_parser p;
	struct mta_reply r;
	mta_reply_init(&p);
	assert_true(mta_reply_is_idle(&p));
	assert_int_equal(mta_reply_feed(&p, S("250-a"), &r), RC_AGAIN);
	assert_false(mta_reply_is_idle(&p));
	assert_int_equal(mta_reply_feed(&p, S("550 b"), &r), RC_PROTO);
	assert_true(mta_reply_is_idle(&p));
	assert_int_equal(mta_reply_feed(&p, S("550 5.1.1 b"), &r), RC_OK);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enh, "5.1.1");
	/* a partial line makes the parser busy */
	size_t used;
	const char *line;
	size_t ll;
	assert_int_equal(mta_reply_line(&p, S("25"), &used, &line, &ll), RC_AGAIN);
	assert_false(mta_reply_is_idle(&p));
}

static void test_reply_class(void **state)
{
	(void)state;
	static const struct {
		int code;
		enum rc rc;
	} t[] = {{200, RC_OK},	      {250, RC_OK},	  {299, RC_OK},	      {354, RC_PROTO},
		 {334, RC_PROTO},     {421, RC_TEMPFAIL}, {451, RC_TEMPFAIL}, {499, RC_TEMPFAIL},
		 {500, RC_PERMFAIL},  {554, RC_PERMFAIL}, {599, RC_PERMFAIL}, {199, RC_PROTO},
		 {600, RC_PROTO},     {0, RC_PROTO},	  {-250, RC_PROTO}};
	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		assert_int_equal(mta_reply_class(t[i].code), t[i].rc);
}

static void test_reply_set_format(void **state)
{
	(void)state;
	struct mta_reply r;
	char out[64];
	mta_reply_set(&r, 451, "4.4.2", "lost after %s", "DATA");
	mta_reply_format(&r, out, sizeof out);
	assert_string_equal(out, "451 4.4.2 lost after DATA");
	mta_reply_set(&r, 250, NULL, "%s", "");
	mta_reply_format(&r, out, sizeof out);
	assert_string_equal(out, "250");
	mta_reply_set(&r, 550, NULL, "no such user");
	mta_reply_format(&r, out, 8);
	assert_string_equal(out, "550 no ");
}

/* The outcome text the spool keeps, from a client's reply: its form is read by
 * the API (http_last_reply_stored, test_http_reply.c uses these same strings),
 * queue show and bounces, all through outcome_parse. */
static void test_outcome_format(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		int code;
		const char *enh, *text, *status, *remote, *why, *want;
	} t[] = {
		{"deferred", 421, "4.2.0", "busy", "4.2.0", "mx1.dest.test[127.0.0.5]", NULL,
		 "status=4.2.0 remote=mx1.dest.test[127.0.0.5] reply=\"421 4.2.0 busy\""},
		{"bounced", 550, "5.1.1", "no such user", "5.1.1", "mx[192.0.2.1]", NULL,
		 "status=5.1.1 remote=mx[192.0.2.1] reply=\"550 5.1.1 no such user\""},
		{"no connection", 0, NULL, NULL, "4.4.7", NULL, "no MX answered",
		 "status=4.4.7 remote=- reply=\"no MX answered\""},
		{"quotes", 550, "5.1.1", "say \"no\"", "5.1.1", "mx", NULL,
		 "status=5.1.1 remote=mx reply=\"550 5.1.1 say 'no'\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(t); i++) {
		struct mta_reply r;
		struct outcome o, back;
		char out[512], rm[300];
		if (t[i].code)
			mta_reply_set(&r, t[i].code, t[i].enh, "%s", t[i].text);
		enum rc rc = t[i].status[0] == '2'   ? RC_OK
			     : t[i].status[0] == '4' ? RC_TEMPFAIL
						     : RC_PERMFAIL;
		mta_outcome_of(&o, OUTCOME_BY_REPLY, rc, t[i].code ? &r : NULL, t[i].status,
			       t[i].why, t[i].remote);
		outcome_format(&o, out, sizeof out);
		if (strcmp(out, t[i].want) != 0)
			fail_msg("case '%s': %s", t[i].label, out);
		assert_true(outcome_parse(out, &back));
		outcome_remote(&back, rm, sizeof rm);
		assert_string_equal(back.status, t[i].status);
		assert_string_equal(rm, t[i].remote ? t[i].remote : "");
		assert_int_equal(back.code, t[i].code);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table),	  cmocka_unit_test(test_reply_lines_max),
		cmocka_unit_test(test_reply_long_line),	  cmocka_unit_test(test_reply_line_exact),
		cmocka_unit_test(test_reply_endless),	  cmocka_unit_test(test_reply_text_max),
		cmocka_unit_test(test_reply_reuse),	  cmocka_unit_test(test_reply_class),
		cmocka_unit_test(test_reply_set_format),  cmocka_unit_test(test_outcome_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
