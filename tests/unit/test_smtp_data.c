/*
 * test_smtp_data.c - the DATA reader and the content checker (src/smtp/smtp_data.c):
 * end of data, dot-unstuffing, every SMTP smuggling variant, and independence
 * from how the input is split (whole, byte by byte, at every split point, in
 * random pieces, and against a line-based reference implementation).
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
#include "ref_data_reader.h"
#include "unit_util.h"

/* What one run of the reader produced. */
struct run {
	enum rc rc;
	size_t consumed;	/* total over all pieces */
	char *content;
	size_t clen;
};

/* Deterministic pseudo-random numbers (xorshift), so failures reproduce. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

/* Feed in[0..len) in pieces: piece(k) gives the size of the k-th piece (0 means
 * "the rest"). Stops at the end of data, as a server would. */
static struct run read_pieces(const char *in, size_t len, size_t (*piece)(size_t k, size_t left))
{
	struct smtp_data_reader r;
	struct evbuffer *out = evbuffer_new();
	struct run res = {RC_AGAIN, 0, NULL, 0};
	size_t off = 0;

	smtp_data_init(&r);
	for (size_t k = 0; off < len; k++) {
		size_t n = piece(k, len - off);
		if (n == 0 || n > len - off)
			n = len - off;
		size_t consumed = 0;
		res.rc = smtp_data_feed(&r, in + off, n, &consumed, out);
		assert_true(consumed <= n);
		if (res.rc == RC_AGAIN)
			assert_int_equal(consumed, n);
		off += consumed;
		if (res.rc == RC_OK)
			break;
		assert_int_equal(res.rc, RC_AGAIN);
	}
	res.consumed = off;
	res.clen = evbuffer_get_length(out);
	res.content = malloc(res.clen + 1);
	evbuffer_remove(out, res.content, res.clen);
	res.content[res.clen] = '\0';
	evbuffer_free(out);
	return res;
}

static size_t piece_whole(size_t k, size_t left)
{
	(void)k;
	return left;
}

static size_t piece_one(size_t k, size_t left)
{
	(void)k;
	(void)left;
	return 1;
}

static size_t split_at;
static size_t piece_split(size_t k, size_t left)
{
	(void)left;
	return k == 0 ? split_at : 0;
}

static size_t piece_random(size_t k, size_t left)
{
	(void)k;
	(void)left;
	return 1 + rnd() % 7;
}

/* reference - the same rules written the obvious way (ref_data_reader.h). */
static struct run reference(const char *in, size_t len)
{
	struct run res = {RC_AGAIN, 0, malloc(len + 1), 0};
	res.rc = ref_data_read(in, len, res.content, &res.clen, &res.consumed);
	return res;
}

static void same_run(const char *label, const struct run *a, const struct run *b)
{
	CHECK(label, a->rc == b->rc);
	CHECK(label, a->consumed == b->consumed);
	CHECK(label, a->clen == b->clen);
	CHECK(label, memcmp(a->content, b->content, a->clen) == 0);
}

static const struct {
	const char *label;
	const char *in;
	size_t len;
	enum rc rc;
	const char *content;
	size_t clen;
	size_t consumed;	/* 0: all of in */
} data_cases[] = {
	{"simple message", S("Subject: x\r\n\r\nbody\r\n.\r\n"), RC_OK,
	 S("Subject: x\r\n\r\nbody\r\n"), 0},
	{"empty message: . CRLF at the very start", S(".\r\n"), RC_OK, S(""), 0},
	{"empty message then pipelined QUIT", S(".\r\nQUIT\r\n"), RC_OK, S(""), 3},
	{"pipelined command kept", S("a\r\n.\r\nMAIL FROM:<x@y>\r\n"), RC_OK, S("a\r\n"), 6},
	{"empty line then end", S("\r\n.\r\n"), RC_OK, S("\r\n"), 0},
	{"dot-stuffed dot", S("..\r\n.\r\n"), RC_OK, S(".\r\n"), 0},
	{"dot-stuffed text", S("..a\r\n.\r\n"), RC_OK, S(".a\r\n"), 0},
	{"leading dot removed", S(".a\r\n.\r\n"), RC_OK, S("a\r\n"), 0},
	{"dot-stuffed in the middle", S("x\r\n..y\r\n...\r\n.\r\n"), RC_OK,
	 S("x\r\n.y\r\n..\r\n"), 0},
	{"dot inside a line", S("a.b\r\n.\r\n"), RC_OK, S("a.b\r\n"), 0},
	{"space dot is content", S(" .\r\n.\r\n"), RC_OK, S(" .\r\n"), 0},
	{"end marker with trailing text is content", S("a\r\n.x\r\n.\r\n"), RC_OK,
	 S("a\r\nx\r\n"), 0},

	/* SMTP smuggling: none of these ends the message */
	{"LF.LF", S("a\n.\nMAIL FROM:<x@y>\r\n.\r\n"), RC_OK, S("a\n.\nMAIL FROM:<x@y>\r\n"), 0},
	{"CRLF.LF", S("a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n"), RC_OK,
	 S("a\r\n\nMAIL FROM:<x@y>\r\n"), 0},
	{"LF.CRLF", S("a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"), RC_OK,
	 S("a\n.\r\nMAIL FROM:<x@y>\r\n"), 0},
	{"CR.CR", S("a\r.\rMAIL FROM:<x@y>\r\n.\r\n"), RC_OK, S("a\r.\rMAIL FROM:<x@y>\r\n"), 0},
	{"CRLF.CR", S("a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n"), RC_OK,
	 S("a\r\n\rMAIL FROM:<x@y>\r\n"), 0},
	{"CR.CRLF", S("a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n"), RC_OK,
	 S("a\r.\r\nMAIL FROM:<x@y>\r\n"), 0},
	{"CRLF.CRCRLF", S("a\r\n.\r\r\nb\r\n.\r\n"), RC_OK, S("a\r\n\r\r\nb\r\n"), 0},
	{"CRLF.NUL CRLF", S("a\r\n.\0\r\nb\r\n.\r\n"), RC_OK, S("a\r\n\0\r\nb\r\n"), 0},
	{"NUL before CRLF.CRLF", S("a\0\r\n.\r\n"), RC_OK, S("a\0\r\n"), 0},
	{"LF.LF at the start", S("\n.\n.\r\n"), RC_AGAIN, S("\n.\n.\r\n"), 0},
	{"CR.CR at the start", S("\r.\r\n"), RC_AGAIN, S("\r.\r\n"), 0},
	{"LF at the start then .CRLF", S("\n.\r\nx"), RC_AGAIN, S("\n.\r\nx"), 0},
	{"CRLF.LF not an end", S("a\r\n.\n"), RC_AGAIN, S("a\r\n\n"), 0},
	{"CRLF.CR waits", S("a\r\n.\r"), RC_AGAIN, S("a\r\n"), 0},
	{"LF.LF not an end", S("a\n.\n"), RC_AGAIN, S("a\n.\n"), 0},
	{"CR.CR not an end", S("a\r.\r"), RC_AGAIN, S("a\r.\r"), 0},
	{"CRLF.CR then CR", S("a\r\n.\r\r"), RC_AGAIN, S("a\r\n\r\r"), 0},
	{"dot-stuffed dot line is not an end", S("a\r\n..\r\n"), RC_AGAIN, S("a\r\n.\r\n"), 0},
	{"no end at all", S("a\r\nb\r\n"), RC_AGAIN, S("a\r\nb\r\n"), 0},
	{"only a dot", S("."), RC_AGAIN, S(""), 0},
	{"nothing", S(""), RC_AGAIN, S(""), 0},
};

static void test_data_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(data_cases); i++) {
		const char *label = data_cases[i].label;
		const char *in = data_cases[i].in;
		size_t len = data_cases[i].len;
		struct run whole = read_pieces(in, len, piece_whole);

		CHECK(label, whole.rc == data_cases[i].rc);
		CHECK(label, whole.consumed == (data_cases[i].consumed ? data_cases[i].consumed : len));
		CHECK(label, whole.clen == data_cases[i].clen);
		CHECK(label, memcmp(whole.content, data_cases[i].content, whole.clen) == 0);

		struct run ref = reference(in, len);
		same_run(label, &whole, &ref);
		free(ref.content);

		struct run one = read_pieces(in, len, piece_one);
		same_run(label, &whole, &one);
		free(one.content);

		for (split_at = 1; split_at < len; split_at++) {
			struct run two = read_pieces(in, len, piece_split);
			same_run(label, &whole, &two);
			free(two.content);
		}
		for (int k = 0; k < 20; k++) {
			struct run rand_run = read_pieces(in, len, piece_random);
			same_run(label, &whole, &rand_run);
			free(rand_run.content);
		}
		free(whole.content);
	}
}

/* Random inputs over the dangerous alphabet: reader (whole, byte by byte,
 * random pieces) and the reference agree. */
static void test_data_random(void **state)
{
	(void)state;
	static const char alphabet[] = {'.', '\r', '\n', 'a', '\0', '.', '\r', '\n'};
	char in[48];
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rnd() % sizeof in;
		for (size_t k = 0; k < len; k++)
			in[k] = alphabet[rnd() % sizeof alphabet];
		struct run ref = reference(in, len);
		struct run whole = read_pieces(in, len, piece_whole);
		struct run one = read_pieces(in, len, piece_one);
		struct run pieces = read_pieces(in, len, piece_random);
		same_run("random whole", &ref, &whole);
		same_run("random bytes", &ref, &one);
		same_run("random pieces", &ref, &pieces);
		free(ref.content);
		free(whole.content);
		free(one.content);
		free(pieces.content);
	}
}

/* A big message: dot-stuffing undone exactly, in odd-sized pieces. */
static void test_data_big(void **state)
{
	(void)state;
	size_t n = 200000, o = 0, e = 0;
	char *in = malloc(2 * n + 8), *want = malloc(2 * n + 8);
	while (o < n) {
		size_t line = rnd() % 120;
		if (rnd() % 4 == 0) {	/* a line starting with a dot: stuffed */
			in[o++] = '.';
			in[o++] = '.';
			want[e++] = '.';
		}
		for (size_t k = 0; k < line; k++) {
			char c = (char)('A' + rnd() % 26);
			in[o++] = c;
			want[e++] = c;
		}
		memcpy(in + o, "\r\n", 2);
		memcpy(want + e, "\r\n", 2);
		o += 2;
		e += 2;
	}
	memcpy(in + o, ".\r\nQUIT\r\n", 9);
	struct run r = read_pieces(in, o + 9, piece_random);
	assert_int_equal(r.rc, RC_OK);
	assert_int_equal(r.consumed, o + 3);
	assert_int_equal(r.clen, e);
	assert_memory_equal(r.content, want, e);
	free(r.content);
	free(in);
	free(want);
}

static void test_data_after_end(void **state)
{
	(void)state;
	struct smtp_data_reader r;
	size_t consumed = 99;
	smtp_data_init(&r);
	/* out may be NULL: content discarded */
	assert_int_equal(smtp_data_feed(&r, S("x\r\n.\r\nRSET\r\n"), &consumed, NULL), RC_OK);
	assert_int_equal(consumed, 6);
	assert_int_equal(smtp_data_feed(&r, S("RSET\r\n"), &consumed, NULL), RC_OK);
	assert_int_equal(consumed, 0);
	/* init starts over */
	smtp_data_init(&r);
	assert_int_equal(smtp_data_feed(&r, S("y\r\n"), &consumed, NULL), RC_AGAIN);
	assert_int_equal(consumed, 3);
}

/* ---- the content checker -------------------------------------------------- */

struct check_res {
	enum rc rc;
	struct smtp_reply err;
	bool bare, nul, long_line, too_big, eight_bit, overflow;
	uint64_t size;
	char *headers;
	size_t hlen;
};

static struct check_res check_pieces(const char *in, size_t len, uint64_t max,
				     size_t (*piece)(size_t k, size_t left))
{
	struct smtp_msg_check c;
	struct check_res res;
	size_t off = 0;

	smtp_msg_check_init(&c, max);
	for (size_t k = 0; off < len; k++) {
		size_t n = piece(k, len - off);
		if (n == 0 || n > len - off)
			n = len - off;
		smtp_msg_check_feed(&c, in + off, n);
		off += n;
	}
	memset(&res, 0, sizeof res);
	res.rc = smtp_msg_check_done(&c, &res.err);
	struct smtp_reply again;
	assert_int_equal(smtp_msg_check_done(&c, &again), res.rc);	/* no side effects */
	res.bare = c.bare_crlf;
	res.nul = c.nul;
	res.long_line = c.long_line;
	res.too_big = c.too_big;
	res.eight_bit = c.eight_bit;
	res.overflow = c.header_overflow;
	res.size = c.size;
	res.hlen = evbuffer_get_length(c.headers);
	res.headers = malloc(res.hlen + 1);
	evbuffer_remove(c.headers, res.headers, res.hlen);
	smtp_msg_check_fini(&c);
	smtp_msg_check_fini(&c);	/* twice is harmless */
	return res;
}

static void same_check(const char *label, const struct check_res *a, const struct check_res *b)
{
	CHECK(label, a->rc == b->rc);
	CHECK(label, a->err.code == b->err.code);
	CHECK(label, a->bare == b->bare && a->nul == b->nul && a->long_line == b->long_line);
	CHECK(label, a->too_big == b->too_big && a->eight_bit == b->eight_bit);
	CHECK(label, a->overflow == b->overflow && a->size == b->size);
	CHECK(label, a->hlen == b->hlen && memcmp(a->headers, b->headers, a->hlen) == 0);
}

#define BARE 1
#define NUL 2
#define LONG 4
#define BIG 8
#define EIGHT 16

static const char BARE_TEXT[] = "CRLF";

static const struct {
	const char *label;
	const char *in;
	size_t len;
	uint64_t max;
	int flags;
	int code;	/* 0: accepted */
	const char *enh;
	const char *text;	/* a substring of the reply text */
	const char *headers;
	size_t hlen;
} check_cases[] = {
	{"clean message", S("Subject: x\r\n\r\nbody\r\n"), 1000, 0, 0, NULL, NULL,
	 S("Subject: x\r\n\r\n")},
	{"headers end at the first empty line", S("A: 1\r\nB: 2\r\n\r\nx\r\n\r\ny\r\n"), 0, 0, 0,
	 NULL, NULL, S("A: 1\r\nB: 2\r\n\r\n")},
	{"no body, no empty line", S("A: 1\r\nB: 2\r\n"), 0, 0, 0, NULL, NULL,
	 S("A: 1\r\nB: 2\r\n")},
	{"empty header section", S("\r\nbody\r\n"), 0, 0, 0, NULL, NULL, S("\r\n")},
	{"one-octet line does not end the headers", S("X\r\nA: 1\r\n\r\nbody\r\n"), 0, 0, 0,
	 NULL, NULL, S("X\r\nA: 1\r\n\r\n")},
	{"CR CR LF does not end the headers", S("A: 1\r\n\r\r\nB: 2\r\n\r\nbody"), 0, BARE,
	 550, "5.6.0", BARE_TEXT, S("A: 1\r\n\r\r\nB: 2\r\n\r\n")},
	{"empty message", S(""), 10, 0, 0, NULL, NULL, S("")},
	{"no final CRLF is fine", S("A: 1\r\n\r\nbody"), 0, 0, 0, NULL, NULL, S("A: 1\r\n\r\n")},
	{"8-bit noted, not fatal", S("Subject: \xc3\xa9\r\n\r\n\xff\r\n"), 0, EIGHT, 0, NULL, NULL,
	 S("Subject: \xc3\xa9\r\n\r\n")},
	{"exactly max_size", S("0123456789"), 10, 0, 0, NULL, NULL, S("0123456789")},
	{"one over max_size", S("0123456789\r"), 10, BIG, 552, "5.3.4", "size",
	 S("0123456789\r")},
	{"max_size 0: no limit", S("0123456789"), 0, 0, 0, NULL, NULL, S("0123456789")},
	{"too big wins over bare LF", S("a\nbcdefghijkl"), 5, BIG | BARE, 552, "5.3.4", "size",
	 S("a\nbcdefghijkl")},
	{"bare LF", S("A: 1\nB: 2\r\n\r\n"), 0, BARE, 550, "5.6.0", BARE_TEXT,
	 S("A: 1\nB: 2\r\n\r\n")},
	{"bare LF at the start", S("\nA: 1\r\n"), 0, BARE, 550, "5.6.0", BARE_TEXT,
	 S("\nA: 1\r\n")},
	{"bare CR", S("A: 1\rB: 2\r\n"), 0, BARE, 550, "5.6.0", BARE_TEXT, S("A: 1\rB: 2\r\n")},
	{"CR CR LF", S("A: 1\r\r\n"), 0, BARE, 550, "5.6.0", BARE_TEXT, S("A: 1\r\r\n")},
	{"LF CR", S("A: 1\n\r"), 0, BARE, 550, "5.6.0", BARE_TEXT, S("A: 1\n\r")},
	{"final bare CR", S("A: 1\r\n\r\nbody\r"), 0, 0, 550, "5.6.0", BARE_TEXT,
	 S("A: 1\r\n\r\n")},
	{"smuggled LF.LF in body", S("A: 1\r\n\r\nx\n.\nMAIL FROM:<a@b>\r\n"), 0, BARE, 550,
	 "5.6.0", BARE_TEXT, S("A: 1\r\n\r\n")},
	{"smuggled CR.CR in body", S("A: 1\r\n\r\nx\r.\rMAIL FROM:<a@b>\r\n"), 0, BARE, 550,
	 "5.6.0", BARE_TEXT, S("A: 1\r\n\r\n")},
	{"bare LF LF does not end the headers", S("A: 1\n\nbody\r\n"), 0, BARE, 550, "5.6.0",
	 BARE_TEXT, S("A: 1\n\nbody\r\n")},
	{"NUL", S("A: 1\r\n\r\nx\0y\r\n"), 0, NUL, 550, "5.6.0", "CRLF", S("A: 1\r\n\r\n")},
	{"NUL in headers", S("A: \0\r\n\r\n"), 0, NUL, 550, "5.6.0", "NUL", S("A: \0\r\n\r\n")},
	{"bare CR wins over NUL", S("\0\r"), 0, NUL, 550, "5.6.0", "bare", S("\0\r")},
};

static void test_check_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(check_cases); i++) {
		const char *label = check_cases[i].label;
		const char *in = check_cases[i].in;
		size_t len = check_cases[i].len;
		int fl = check_cases[i].flags;
		struct check_res whole = check_pieces(in, len, check_cases[i].max, piece_whole);

		CHECK(label, whole.bare == !!(fl & BARE));
		CHECK(label, whole.nul == !!(fl & NUL));
		CHECK(label, whole.long_line == !!(fl & LONG));
		CHECK(label, whole.too_big == !!(fl & BIG));
		CHECK(label, whole.eight_bit == !!(fl & EIGHT));
		CHECK(label, whole.size == len);
		CHECK(label, whole.hlen == check_cases[i].hlen);
		CHECK(label, memcmp(whole.headers, check_cases[i].headers, whole.hlen) == 0);
		if (check_cases[i].code == 0) {
			CHECK(label, whole.rc == RC_OK);
		} else {
			CHECK(label, whole.rc == RC_PERMFAIL);
			CHECK(label, whole.err.code == check_cases[i].code);
			CHECK(label, strcmp(whole.err.enh, check_cases[i].enh) == 0);
			if (strstr(whole.err.text, check_cases[i].text) == NULL)
				fail_msg("case '%s': text '%s'", label, whole.err.text);
		}

		struct check_res one = check_pieces(in, len, check_cases[i].max, piece_one);
		same_check(label, &whole, &one);
		free(one.headers);
		for (split_at = 1; split_at < len; split_at++) {
			struct check_res two = check_pieces(in, len, check_cases[i].max, piece_split);
			same_check(label, &whole, &two);
			free(two.headers);
		}
		free(whole.headers);
	}
}

/* A message of one line of n octets (plus CRLF if crlf). */
static struct check_res check_line(size_t n, const char *end, size_t (*piece)(size_t, size_t))
{
	size_t elen = strlen(end);
	char *in = malloc(n + elen + 16);
	memcpy(in, "\r\n", 2);	/* empty header section */
	memset(in + 2, 'x', n);
	memcpy(in + 2 + n, end, elen);
	struct check_res r = check_pieces(in, 2 + n + elen, 0, piece);
	free(in);
	return r;
}

static void test_check_line_length(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		size_t n;
		const char *end;
		bool long_line;
	} cases[] = {
		{"998 octets", 998, "\r\n", false},
		{"999 octets", 999, "\r\n", true},
		{"1000 octets", 1000, "\r\n", true},
		{"998 octets, last line without CRLF", 998, "", false},
		{"999 octets, last line without CRLF", 999, "", true},
		{"100000 octets", 100000, "\r\n", true},
		{"998 octets then more lines", 998, "\r\nshort\r\n", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct check_res whole = check_line(cases[i].n, cases[i].end, piece_whole);
		struct check_res pieces = check_line(cases[i].n, cases[i].end, piece_random);
		same_check(cases[i].label, &whole, &pieces);
		if (cases[i].long_line) {
			CHECK(cases[i].label, whole.rc == RC_PERMFAIL && whole.err.code == 550);
			CHECK(cases[i].label, strcmp(whole.err.enh, "5.6.0") == 0);
			CHECK(cases[i].label, strstr(whole.err.text, "998") != NULL);
		} else {
			CHECK(cases[i].label, whole.rc == RC_OK);
		}
		free(whole.headers);
		free(pieces.headers);
	}
	/* 998 octets then a bare CR at the end of a BDAT message: bare CR wins */
	struct check_res r = check_line(998, "\r", piece_whole);
	assert_int_equal(r.err.code, 550);
	assert_non_null(strstr(r.err.text, "CRLF"));
	free(r.headers);
}

static void test_check_header_overflow(void **state)
{
	(void)state;
	size_t lines = SMTP_HEADER_MAX / 20 + 10, o = 0;
	char *in = malloc(lines * 21 + 64);
	for (size_t k = 0; k < lines; k++) {
		memcpy(in + o, "X-Filler: 123456789\r\n", 21);	/* 21 octets */
		o += 21;
	}
	memcpy(in + o, "\r\nbody\r\n", 8);
	o += 8;

	size_t (*pieces[])(size_t, size_t) = {piece_whole, piece_one, piece_random};
	struct check_res r;
	for (size_t k = 0; k < ARRAY_LEN(pieces); k++) {
		r = check_pieces(in, o, 0, pieces[k]);
		assert_true(r.overflow);
		assert_int_equal(r.hlen, SMTP_HEADER_MAX);
		assert_memory_equal(r.headers, in, SMTP_HEADER_MAX);
		assert_int_equal(r.rc, RC_PERMFAIL);
		assert_int_equal(r.err.code, 552);
		assert_string_equal(r.err.enh, "5.3.4");
		assert_non_null(strstr(r.err.text, "Header"));
		free(r.headers);
	}
	/* one octet over, in one piece */
	r = check_pieces(in, SMTP_HEADER_MAX + 1, 0, piece_whole);
	assert_true(r.overflow);
	assert_int_equal(r.hlen, SMTP_HEADER_MAX);
	free(r.headers);

	/* exactly SMTP_HEADER_MAX: fits */
	memset(in, 'h', SMTP_HEADER_MAX - 4);
	memcpy(in, "X: ", 3);
	memcpy(in + SMTP_HEADER_MAX - 4, "\r\n\r\n", 4);
	memcpy(in + SMTP_HEADER_MAX, "body\r\n", 6);
	r = check_pieces(in, SMTP_HEADER_MAX + 6, 0, piece_whole);
	/* the one header line is long: that is the verdict, not the overflow */
	assert_false(r.overflow);
	assert_int_equal(r.hlen, SMTP_HEADER_MAX);
	free(r.headers);
	free(in);

	/* too big keeps counting */
	struct smtp_msg_check c;
	smtp_msg_check_init(&c, 4);
	smtp_msg_check_feed(&c, S("0123456789"));
	smtp_msg_check_feed(&c, S("0123456789"));
	assert_true(c.too_big);
	assert_int_equal(c.size, 20);
	smtp_msg_check_fini(&c);
}

/* ---- the checker against the byte-at-a-time original ------------------------- */

/* ref_check_feed - the checker as it was before word-at-a-time scanning (one
 * octet per iteration), kept as the reference the fast one must agree with. */
static void ref_check_feed(struct smtp_msg_check *c, const char *buf, size_t len)
{
	size_t hdr_end = c->in_headers ? len : 0;

	c->size += len;
	if (c->max_size != 0 && c->size > c->max_size)
		c->too_big = true;
	for (size_t i = 0; i < len; i++) {
		int b = (unsigned char)buf[i];
		if (c->prev == '\r' && b != '\n')
			c->bare_crlf = true;
		if (b == '\n') {
			if (c->prev != '\r') {
				c->bare_crlf = true;
				c->line_len++;
			} else {
				if (c->line_len - 1 > 998)
					c->long_line = true;
				if (c->in_headers && c->line_len == 1) {
					c->in_headers = false;
					hdr_end = i + 1;
				}
				c->line_len = 0;
			}
		} else {
			c->line_len++;
			if (b == 0)
				c->nul = true;
			else if (b >= 0x80)
				c->eight_bit = true;
		}
		c->prev = b;
	}
	if (hdr_end > 0 && !c->header_overflow) {
		size_t have = evbuffer_get_length(c->headers);
		if (hdr_end > SMTP_HEADER_MAX - have) {
			hdr_end = SMTP_HEADER_MAX - have;
			c->header_overflow = true;
		}
		evbuffer_add(c->headers, buf, hdr_end);
	}
}

/* A random message biased towards what the checker decides on: mostly text
 * lines, with CR, LF, CRLF, NUL, 8-bit octets and long runs mixed in. */
static size_t random_message(char *buf, size_t cap)
{
	size_t len = rnd() % cap, i = 0;
	while (i < len) {
		uint32_t r = rnd() % 100;
		size_t run = 1 + rnd() % (r < 5 ? 1100 : 80);
		for (size_t k = 0; k < run && i < len; k++)
			buf[i++] = rnd() % 64 == 0 ? (char)(0x80 + rnd() % 128)
						   : (char)('a' + rnd() % 26);
		if (i >= len)
			break;
		if (r < 70) {
			buf[i++] = '\r';
			if (i < len)
				buf[i++] = '\n';
		} else {
			static const char odd[] = {'\r', '\n', '\0', (char)0x80, (char)0xc3,
						   (char)0xff, '.', ' '};
			buf[i++] = odd[rnd() % sizeof odd];
		}
	}
	return len;
}

static void test_check_matches_reference(void **state)
{
	(void)state;
	enum { CAP = 6000 };
	char *buf = malloc(CAP);
	for (int round = 0; round < 3000; round++) {
		size_t len = random_message(buf, CAP);
		uint64_t max = rnd() % 4 == 0 ? rnd() % CAP : 0;
		struct smtp_msg_check fast, ref;
		smtp_msg_check_init(&fast, max);
		smtp_msg_check_init(&ref, max);
		for (size_t off = 0; off < len;) {
			size_t n = rnd() % 3 == 0 ? len - off : 1 + rnd() % 700;
			if (n > len - off)
				n = len - off;
			smtp_msg_check_feed(&fast, buf + off, n);
			ref_check_feed(&ref, buf + off, n);
			off += n;
		}
		char label[64];
		snprintf(label, sizeof label, "random round %d (%zu octets)", round, len);
		CHECK(label, fast.size == ref.size && fast.too_big == ref.too_big);
		CHECK(label, fast.bare_crlf == ref.bare_crlf && fast.nul == ref.nul);
		CHECK(label, fast.long_line == ref.long_line && fast.eight_bit == ref.eight_bit);
		CHECK(label, fast.in_headers == ref.in_headers && fast.line_len == ref.line_len);
		CHECK(label, fast.prev == ref.prev && fast.header_overflow == ref.header_overflow);
		size_t hl = evbuffer_get_length(fast.headers);
		CHECK(label, hl == evbuffer_get_length(ref.headers));
		CHECK(label, memcmp(evbuffer_pullup(fast.headers, -1),
				    evbuffer_pullup(ref.headers, -1), hl) == 0);
		struct smtp_reply a = {0}, b = {0};
		CHECK(label, smtp_msg_check_done(&fast, &a) == smtp_msg_check_done(&ref, &b));
		CHECK(label, a.code == b.code);
		smtp_msg_check_fini(&fast);
		smtp_msg_check_fini(&ref);
	}
	free(buf);
}

/* smtp_data_feed_check gives the checker exactly the content smtp_data_feed
 * produces, in order, whatever the pieces: the same content, the same verdict
 * and state as checking the unstuffed result afterwards; with out NULL the
 * content is checked and dropped. Messages mix dot-stuffed lines, long runs
 * (the block scanner), 8-bit octets, NUL and bare CR/LF. */
static void test_data_feed_check(void **state)
{
	(void)state;
	enum { CAP = 5000 };
	char *buf = malloc(CAP + 8);
	for (int round = 0; round < 2000; round++) {
		size_t len = random_message(buf, CAP);
		for (size_t k = 0; k + 2 < len; k++)	/* some lines start with a dot */
			if (buf[k] == '\n' && rnd() % 3 == 0)
				buf[k + 1] = '.';
		if (rnd() % 2 == 0) {	/* and usually it ends */
			memcpy(buf + len, "\r\n.\r\n", 5);
			len += 5;
		}
		struct smtp_data_reader r1, r2;
		struct smtp_msg_check fused, ref;
		struct evbuffer *o1 = evbuffer_new(), *o2 = evbuffer_new();
		smtp_data_init(&r1);
		smtp_data_init(&r2);
		smtp_msg_check_init(&fused, 0);
		smtp_msg_check_init(&ref, 0);
		bool drop = rnd() % 4 == 0;
		enum rc rc1 = RC_AGAIN, rc2 = RC_AGAIN;
		size_t off1 = 0, off2 = 0;
		while (off1 < len && rc1 == RC_AGAIN) {
			size_t n = rnd() % 3 == 0 ? len - off1 : 1 + rnd() % 900, used = 0;
			n = n > len - off1 ? len - off1 : n;
			rc1 = smtp_data_feed_check(&r1, buf + off1, n, &used, &fused, drop ? NULL : o1);
			off1 += used;
		}
		rc2 = smtp_data_feed(&r2, buf, len, &off2, o2);
		char label[64];
		snprintf(label, sizeof label, "fused round %d (%zu octets)", round, len);
		CHECK(label, rc1 == rc2 && off1 == off2);
		size_t clen = evbuffer_get_length(o2);
		smtp_msg_check_feed(&ref, (const char *)evbuffer_pullup(o2, -1), clen);
		CHECK(label, evbuffer_get_length(o1) == (drop ? 0 : clen));
		CHECK(label, drop || memcmp(evbuffer_pullup(o1, -1), evbuffer_pullup(o2, -1), clen) == 0);
		CHECK(label, fused.size == ref.size && fused.size == clen);
		CHECK(label, fused.bare_crlf == ref.bare_crlf && fused.nul == ref.nul);
		CHECK(label, fused.long_line == ref.long_line && fused.eight_bit == ref.eight_bit);
		CHECK(label, fused.in_headers == ref.in_headers && fused.line_len == ref.line_len);
		CHECK(label, fused.prev == ref.prev);
		size_t hl = evbuffer_get_length(fused.headers);
		CHECK(label, hl == evbuffer_get_length(ref.headers));
		CHECK(label, memcmp(evbuffer_pullup(fused.headers, -1),
				    evbuffer_pullup(ref.headers, -1), hl) == 0);
		smtp_msg_check_fini(&fused);
		smtp_msg_check_fini(&ref);
		evbuffer_free(o1);
		evbuffer_free(o2);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_cases),
		cmocka_unit_test(test_data_random),
		cmocka_unit_test(test_data_big),
		cmocka_unit_test(test_data_after_end),
		cmocka_unit_test(test_check_cases),
		cmocka_unit_test(test_check_line_length),
		cmocka_unit_test(test_check_header_overflow),
		cmocka_unit_test(test_check_matches_reference),
		cmocka_unit_test(test_data_feed_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
