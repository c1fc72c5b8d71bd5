/*
 * test_core.c - ids, strings, the fault seam and the work queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "core/core.h"

static void test_id_roundtrip(void **state)
{
	uint64_t prev = 0;
	for (int i = 0; i < 10000; i++) {
		uint64_t id = id_next(), back = 0;
		char s[ID_STR_LEN + 1];
		assert_true(id > prev);
		prev = id;
		id_format(id, s);
		assert_int_equal(strlen(s), ID_STR_LEN);
		assert_true(id_parse(s, &back));
		assert_true(back == id);
	}
}

static void test_id_bump(void **state)
{
	uint64_t far = id_next() + (1ULL << 40);
	id_bump(far);
	assert_true(id_next() > far);
}

static void test_id_parse_rejects(void **state)
{
	static const struct {
		const char *label, *in;
	} cases[] = {
		{"empty", ""},
		{"short", "0123456789ABCDE"},
		{"long", "0123456789ABCDEF0"},
		{"non-hex", "0123456789ABCDEG"},
		{"space", "0123456789ABCDE "},
		{"sign", "+123456789ABCDEF"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint64_t v;
		if (id_parse(cases[i].in, &v))
			fail_msg("case %s: accepted", cases[i].label);
	}
	uint64_t v;
	assert_true(id_parse("00000000000000ff", &v));
	assert_true(v == 255);
}

static void test_str_to_u64(void **state)
{
	static const struct {
		const char *label, *in;
		bool ok;
		uint64_t want;
	} cases[] = {
		{"zero", "0", true, 0},
		{"max", "18446744073709551615", true, UINT64_MAX},
		{"overflow", "18446744073709551616", false, 0},
		{"empty", "", false, 0},
		{"minus", "-1", false, 0},
		{"junk", "12a", false, 0},
		{"space", " 1", false, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint64_t v = 0;
		bool ok = str_to_u64(cases[i].in, &v);
		if (ok != cases[i].ok || (ok && v != cases[i].want))
			fail_msg("case %s: ok=%d v=%llu", cases[i].label, ok, (unsigned long long)v);
	}
}

static void test_str_lcpy(void **state)
{
	char buf[4];
	assert_int_equal(str_lcpy(buf, "abcdef", sizeof buf), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(str_lcpy(buf, "ab", sizeof buf), 2);
	assert_string_equal(buf, "ab");
}

static void test_rfc5322_date(void **state)
{
	char d[64];
	setenv("TZ", "UTC", 1);
	time_rfc5322(0, d, sizeof d);
	assert_string_equal(d, "Thu, 1 Jan 1970 00:00:00 +0000");
}

struct wq_arg {
	int in, out;
	int *done_count;
	struct event_base *base;
	int total;
};

static void wq_work(void *p)
{
	struct wq_arg *a = p;
	a->out = a->in * 2;
}

static void wq_done(void *p)
{
	struct wq_arg *a = p;
	assert_int_equal(a->out, a->in * 2);
	if (++*a->done_count == a->total)
		event_base_loopexit(a->base, NULL);
	free(a);
}

static void test_workq(void **state)
{
	core_threads_init();
	struct event_base *base = event_base_new();
	struct workq *wq = workq_new(3, 1000);
	int done = 0;
	for (int i = 0; i < 500; i++) {
		struct wq_arg *a = calloc(1, sizeof *a);
		*a = (struct wq_arg){.in = i, .done_count = &done, .base = base, .total = 500};
		assert_int_equal(workq_submit(wq, base, wq_work, wq_done, a), RC_OK);
	}
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	assert_int_equal(done, 500);
	workq_free(wq);
	event_base_free(base);
}

static void noop(void *p)
{
	(void)p;
}

static void test_workq_bounded(void **state)
{
	core_threads_init();
	struct event_base *base = event_base_new();
	struct workq *wq = workq_new(1, 0);
	int x;
	assert_int_equal(workq_submit(wq, base, noop, noop, &x), RC_LIMIT);
	workq_free(wq);
	event_base_free(base);
}

/* The stored form of an outcome and back (core_outcome.c). */
static void test_outcome_roundtrip(void **state)
{
	(void)state;
	static const struct {
		const char *label, *status, *remote, *reply;
		int code;
		const char *stored;
	} cases[] = {
		{"reply", "5.1.1", "mx.example.org[192.0.2.1]", "550 5.1.1 no such user", 550,
		 "status=5.1.1 remote=mx.example.org[192.0.2.1] reply=\"550 5.1.1 no such user\""},
		{"no server", "4.4.3", "", "DNS timeout", 0,
		 "status=4.4.3 remote=- reply=\"DNS timeout\""},
		{"quote and control", "5.7.1", "mx[2001:db8::1]", "550 say \"no\"\tnow", 550,
		 "status=5.7.1 remote=mx[2001:db8::1] reply=\"550 say 'no''now\""},
		{"bare name", "2.0.0", "sandbox", "250 2.0.0 sandbox: written", 250,
		 "status=2.0.0 remote=sandbox reply=\"250 2.0.0 sandbox: written\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct outcome o = {0}, back;
		char text[OUTCOME_TEXT_MAX], remote[400];
		str_lcpy(o.status, cases[i].status, sizeof o.status);
		outcome_set_remote(&o, cases[i].remote);
		str_lcpy(o.reply, cases[i].reply, sizeof o.reply);
		outcome_format(&o, text, sizeof text);
		if (strcmp(text, cases[i].stored) != 0)
			fail_msg("%s: stored %s", cases[i].label, text);
		assert_true(outcome_parse(text, &back));
		outcome_remote(&back, remote, sizeof remote);
		assert_string_equal(back.status, cases[i].status);
		assert_string_equal(remote, cases[i].remote);
		assert_int_equal(back.code, cases[i].code);
	}
	/* a long reply is cut, never its closing quote; other text is only a reply */
	struct outcome o = {0};
	char text[64];
	str_lcpy(o.status, "5.0.0", sizeof o.status);
	memset(o.reply, 'x', 200);
	outcome_format(&o, text, sizeof text);
	assert_int_equal(strlen(text), sizeof text - 1);
	assert_int_equal(text[sizeof text - 2], '"');
	assert_false(outcome_parse("connection refused", &o));
	assert_string_equal(o.reply, "connection refused");
	assert_string_equal(o.status, "");
	assert_string_equal(outcome_class_name(OUTCOME_EXPIRED), "expired");
}

/* core_text.c: the one host-name and domain check every module uses. */
static void test_hostname_domain(void **state)
{
	static const struct {
		const char *label, *s;
		bool host, domain;
	} cases[] = {
	    {"two labels", "example.com", true, true},
	    {"one label", "mailhub", true, false},
	    {"upper case and digits", "MX1.Example.ORG", true, true},
	    {"inner hyphen", "a-b.example", true, true},
	    {"A-label", "xn--bcher-kva.example", true, true},
	    {"leading hyphen", "-a.example", false, false},
	    {"trailing hyphen in a label", "a-.example", false, false},
	    {"empty label", "a..example", false, false},
	    {"trailing dot", "example.com.", false, false},
	    {"leading dot", ".example.com", false, false},
	    {"underscore", "_dmarc.example", false, false},
	    {"space", "a b.example", false, false},
	    {"U-label", "b\xc3\xbc" "cher.example", false, false},
	    {"numeric last label", "10.0.0.1", true, false},
	    {"numeric label not last", "1.example", true, true},
	    {"empty", "", false, false},
	    {"63-octet label",
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", true, true},
	    {"64-octet label",
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", false,
	     false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		if (str_is_hostname(cases[i].s, STR_DOMAIN_MAX) != cases[i].host)
			fail_msg("case '%s': hostname should be %d", cases[i].label, cases[i].host);
		if (str_is_domain(cases[i].s) != cases[i].domain)
			fail_msg("case '%s': domain should be %d", cases[i].label, cases[i].domain);
	}
	/* the length bound: 253 octets pass, 254 do not; max is honoured */
	char name[300];
	memset(name, 'a', sizeof name);
	for (size_t i = 63; i < sizeof name; i += 64)
		name[i] = '.';
	name[253] = '\0';
	assert_true(str_is_domain(name));
	name[253] = 'a';
	name[254] = '\0';
	assert_false(str_is_domain(name));
	assert_false(str_is_hostname("abc.de", 5));
	assert_true(str_is_hostname("abc.de", 6));
	assert_false(str_is_domain(NULL));
}

/* utf8_cut backs up to the start of a character; b64_encode/decode round-trip. */
static void test_utf8_b64(void **state)
{
	static const char s[] = "a\xc3\xa9\xe2\x82\xac!";	/* a, e-acute, euro, ! */
	static const size_t want[] = {0, 1, 1, 3, 3, 3, 6};
	for (size_t len = 0; len < ARRAY_LEN(want); len++)
		if (utf8_cut(s, len) != want[len])
			fail_msg("utf8_cut(%zu) = %zu, want %zu", len, utf8_cut(s, len), want[len]);
	uint32_t cp = 0;
	assert_int_equal(utf8_char(s + 3, 4, &cp), 3);
	assert_int_equal(cp, 0x20ac);
	assert_int_equal(utf8_char("\xc0\x80", 2, &cp), 0);	/* overlong */
	char enc[16];
	uint8_t dec[16];
	size_t n = 0;
	assert_int_equal(b64_encode((const uint8_t *)"fooba", 5, enc), 8);
	assert_string_equal(enc, "Zm9vYmE=");
	assert_int_equal(b64_decode(enc, 8, dec, sizeof dec, &n), RC_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(dec, "fooba", 5);
	assert_int_equal(b64_value('/'), 63);
	assert_int_equal(b64_value('='), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_roundtrip),   cmocka_unit_test(test_id_bump),
		cmocka_unit_test(test_id_parse_rejects), cmocka_unit_test(test_str_to_u64),
		cmocka_unit_test(test_str_lcpy),       cmocka_unit_test(test_rfc5322_date),
		cmocka_unit_test(test_hostname_domain), cmocka_unit_test(test_utf8_b64),
		cmocka_unit_test(test_workq),          cmocka_unit_test(test_workq_bounded),
		cmocka_unit_test(test_outcome_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
