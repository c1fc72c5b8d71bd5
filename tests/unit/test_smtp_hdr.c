/*
 * test_smtp_hdr.c - the header scan (src/smtp/smtp_hdr.c): field finding,
 * unfolding, counting, and the From address-list parser with its obsolete forms.
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

/* The recorded domains joined with ",". */
static void joined_domains(const struct smtp_hdr_info *info, char *out, size_t outsz)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < info->nfrom; i++)
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? "," : "", info->from_domain[i]);
}

/* From: bodies; each is scanned as "From: <body>\r\n\r\n". */
static const struct {
	const char *label;
	const char *body;
	bool malformed;
	const char *domains;	/* expected, joined with "," */
} from_cases[] = {
	{"addr-spec", "a@b.example", false, "b.example"},
	{"angle-addr", "<a@b.example>", false, "b.example"},
	{"display name, domain lower-cased", "Alice <a@B.Example>", false, "b.example"},
	{"quoted display name with comma", "\"Alice, Smith\" <a@b.example>", false, "b.example"},
	{"quoted display name with <>@", "\"x@evil.example <x@evil.example>\" <a@b.example>", false,
	 "b.example"},
	{"obs-phrase with a dot", "Alice Q. Public <a@b.example>", false, "b.example"},
	{"comment after", "a@b.example (Alice)", false, "b.example"},
	{"comment before", "(Alice) a@b.example", false, "b.example"},
	{"nested comments", "Alice (nested (comment (deep)) here) <a@b.example>", false,
	 "b.example"},
	{"comment with <@> inside", "(x@evil.example <y@evil.example>) a@b.example", false,
	 "b.example"},
	{"comment with quoted pair paren", "(a \\) b) a@b.example", false, "b.example"},
	{"comment inside the address", "a(x)@(y)b.example", false, "b.example"},
	{"two mailboxes", "a@b.example, Carol <c@D.example>", false, "b.example,d.example"},
	{"group, empty", "Undisclosed recipients:;", false, ""},
	{"group with members", "Team: a@b.example, c@d.example;", false, "b.example,d.example"},
	{"group then mailbox", "Team: a@b.example;, e@f.example", false, "b.example,f.example"},
	{"group with comment", "Team (the team): a@b.example; (end)", false, "b.example"},
	{"obs-route in angle-addr", "<@route.example,@r2.example:a@b.example>", false,
	 "b.example"},
	{"obs empty list elements", ", a@b.example,, c@d.example,", false, "b.example,d.example"},
	{"obs local and domain with CFWS", "a . b @ c . example", false, "c.example"},
	{"quoted local part", "\"quoted name\"@b.example", false, "b.example"},
	{"quoted local part with @", "\"a@evil.example\"@b.example", false, "b.example"},
	{"domain literal", "a@[192.0.2.1]", false, "[192.0.2.1]"},
	{"RFC 2047 word in display name", "=?utf-8?q?J=C3=B6rg?= <j@b.example>", false,
	 "b.example"},
	{"UTF-8 display name and domain", "J\xc3\xb6rg <j@b\xc3\xa9.example>", false,
	 "b\xc3\xa9.example"},
	{"folded", "Alice\r\n <a@b.example>", false, "b.example"},
	{"folded inside a comment", "Alice (a\r\n\tcomment) <a@b.example>", false, "b.example"},
	{"folded inside quotes", "\"Alice\r\n Smith\" <a@b.example>", false, "b.example"},

	{"empty", "", true, ""},
	{"only spaces", "   ", true, ""},
	{"display name only", "Alice", true, ""},
	{"no domain", "a@", true, ""},
	{"no local part", "@b.example", true, ""},
	{"addr-spec then angle-addr (spoof)", "a@evil.example <c@d.example>", true, "evil.example"},
	{"unquoted @ in display name", "user@x.example <real@y.example>", true, "x.example"},
	{"unclosed angle", "<a@b.example", true, "b.example"},
	{"angle inside angle", "<<a@b.example>>", true, ""},
	{"empty angle", "<>", true, ""},
	{"unterminated quote", "\"Alice <a@b.example>", true, ""},
	{"unclosed comment", "(Alice a@b.example", true, ""},
	{"stray close paren", "Alice) <a@b.example>", true, ""},
	{"double dot domain", "a@b..example", true, ""},
	{"trailing dot domain", "a@b.example.", true, ""},
	{"double dot local", "a..b@c.example", true, ""},
	{"double dot local in angle-addr", "Alice <a..b@c.example>", true, ""},
	{"two words as local part in angle-addr", "<a b@c.example>", true, ""},
	{"bracket inside domain literal", "a@[1[2]", true, ""},
	{"leading dot local", ".a@c.example", true, ""},
	{"dot first in display name", ". <a@b.example>", true, ""},
	{"group without ;", "Team: a@b.example", true, "b.example"},
	{"nested group", "A: B: a@b.example;;", true, ""},
	{"stray ;", "a@b.example;", true, "b.example"},
	{"junk after address", "a@b.example c", true, "b.example"},
	{"missing comma", "a@b.example <c@d.example>", true, "b.example"},
	{"backslash outside quotes", "a\\b@c.example", true, ""},
	{"domain literal as local part", "[a]@b.example", true, ""},
	{"unterminated domain literal", "a@[192.0.2.1", true, ""},
	{"NUL", "a@b.ex\001ample", true, "b.ex"},
	{"empty group name", ":a@b.example;", true, ""},
};

static void test_from(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(from_cases); i++) {
		const char *label = from_cases[i].label;
		char hdrs[512], got[1024];
		struct smtp_hdr_info info;
		int n = snprintf(hdrs, sizeof hdrs, "From: %s\r\n\r\nbody\r\n", from_cases[i].body);
		smtp_hdr_scan(hdrs, (size_t)n, &info);
		CHECK(label, info.has_from);
		CHECK(label, info.from_fields == 1);
		CHECK(label, info.header_count == 1);
		if (info.from_malformed != from_cases[i].malformed)
			fail_msg("case '%s': from_malformed %d", label, info.from_malformed);
		joined_domains(&info, got, sizeof got);
		if (strcmp(got, from_cases[i].domains) != 0)
			fail_msg("case '%s': domains '%s'", label, got);
	}
}

/* Whole header sections. */
static const struct {
	const char *label;
	const char *hdrs;
	size_t len;	/* 0: strlen */
	size_t count;
	unsigned mid, date, from;	/* fields seen */
	bool malformed;
	const char *domains;
} section_cases[] = {
	{"typical",
	 "Message-ID: <x@y.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	 "From: Alice <a@b.example>\r\nSubject: hi\r\n\r\nFrom: body@not.example\r\n",
	 0, 4, 1, 1, 1, false, "b.example"},
	{"names are case-insensitive",
	 "message-id: <x@y>\r\nDATE: x\r\nfROM: a@b.example\r\n\r\n", 0, 3, 1, 1, 1, false,
	 "b.example"},
	{"obs: WSP before the colon", "From : a@b.example\r\nDate\t: x\r\n\r\n", 0, 2, 0, 1, 1,
	 false, "b.example"},
	{"duplicates counted", "From: a@b.example\r\nFrom: c@d.example\r\nDate: 1\r\nDate: 2\r\n"
	 "Message-ID: <1@x>\r\nMessage-Id: <2@x>\r\n\r\n", 0, 6, 2, 2, 2, false,
	 "b.example,d.example"},
	{"no From, no Date, no Message-ID", "Subject: x\r\nTo: a@b\r\n\r\n", 0, 2, 0, 0, 0, false,
	 ""},
	{"look-alike names", "Resent-From: a@b\r\nFrom-X: c@d\r\nDated: x\r\nMessage-IDs: y\r\n\r\n",
	 0, 4, 0, 0, 0, false, ""},
	{"stops at the empty line", "Date: x\r\n\r\nFrom: a@b.example\r\n", 0, 1, 0, 1, 0, false,
	 ""},
	{"lines that are not fields", "garbage line\r\n: no name\r\nFrom a@b\r\nFr om: x\r\n"
	 "From: a@b.example\r\n\r\n", 0, 1, 0, 0, 1, false, "b.example"},
	{"orphan continuation at the start", " x\r\nDate: y\r\n\r\n", 0, 1, 0, 1, 0, false, ""},
	{"folded From over three lines", "From: Alice\r\n  (the\r\n\tboss)\r\n <a@b.example>\r\n"
	 "Date: x\r\n\r\n", 0, 2, 0, 1, 1, false, "b.example"},
	{"fold does not hide the next field", "Subject: a\r\n b\r\nFrom: a@b.example\r\n\r\n", 0,
	 2, 0, 0, 1, false, "b.example"},
	{"bare LF line ends tolerated", "From: a@b.example\nDate: x\n\nFrom: c@d\n", 0, 2, 0, 1,
	 1, false, "b.example"},
	{"section without the empty line", "Date: x\r\nFrom: a@b.example", 0, 2, 0, 1, 1, false,
	 "b.example"},
	{"empty section", "\r\nFrom: a@b.example\r\n", 0, 0, 0, 0, 0, false, ""},
	{"nothing", "", 0, 0, 0, 0, 0, false, ""},
	{"one malformed From of two", "From: a@b.example\r\nFrom: nobody\r\n\r\n", 0, 2, 0, 0, 2,
	 true, "b.example"},
	{"NUL in a field name", "Fr\0m: a@b.example\r\nDate: x\r\n\r\n", 30, 1, 0, 1, 0, false,
	 ""},
	{"NUL in the From body", "From: a@b\0.example\r\n\r\n", 22, 1, 0, 0, 1, true, "b"},
};

static void test_sections(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(section_cases); i++) {
		const char *label = section_cases[i].label;
		size_t len = section_cases[i].len ? section_cases[i].len : strlen(section_cases[i].hdrs);
		struct smtp_hdr_info info;
		char got[1024];
		/* an exact-size heap copy: reading past the end is caught by ASan */
		char *h = malloc(len ? len : 1);
		memcpy(h, section_cases[i].hdrs, len);
		smtp_hdr_scan(h, len, &info);
		free(h);
		if (info.header_count != section_cases[i].count)
			fail_msg("case '%s': header_count %zu", label, info.header_count);
		CHECK(label, info.message_id_fields == section_cases[i].mid);
		CHECK(label, info.has_message_id == (section_cases[i].mid > 0));
		CHECK(label, info.date_fields == section_cases[i].date);
		CHECK(label, info.has_date == (section_cases[i].date > 0));
		CHECK(label, info.from_fields == section_cases[i].from);
		CHECK(label, info.has_from == (section_cases[i].from > 0));
		CHECK(label, info.from_malformed == section_cases[i].malformed);
		joined_domains(&info, got, sizeof got);
		if (strcmp(got, section_cases[i].domains) != 0)
			fail_msg("case '%s': domains '%s'", label, got);
	}
}

static void test_from_limits(void **state)
{
	(void)state;
	char *h = malloc(8192);
	struct smtp_hdr_info info;
	size_t o;

	/* SMTP_HDR_FROM_MAX addresses are recorded; one more makes From malformed,
	 * so that no domain escapes the sender-domain check. */
	for (size_t n = SMTP_HDR_FROM_MAX; n <= SMTP_HDR_FROM_MAX + 1; n++) {
		o = (size_t)snprintf(h, 8192, "From: ");
		for (size_t k = 0; k < n; k++)
			o += (size_t)snprintf(h + o, 8192 - o, "%su%zu@d%zu.example", k ? ", " : "", k, k);
		o += (size_t)snprintf(h + o, 8192 - o, "\r\n\r\n");
		smtp_hdr_scan(h, o, &info);
		assert_int_equal(info.nfrom, SMTP_HDR_FROM_MAX);
		assert_int_equal(info.from_malformed, n > SMTP_HDR_FROM_MAX);
		assert_string_equal(info.from_domain[SMTP_HDR_FROM_MAX - 1], "d15.example");
	}

	/* a 255-octet domain fits, 256 does not */
	for (size_t len = 255; len <= 256; len++) {
		o = (size_t)snprintf(h, 8192, "From: a@");
		for (size_t k = 0; k < len; k++)
			h[o++] = (k % 50 == 49) ? '.' : 'x';
		o += (size_t)snprintf(h + o, 8192 - o, "\r\n\r\n");
		smtp_hdr_scan(h, o, &info);
		assert_int_equal(info.from_malformed, len > 255);
		if (len == 255)
			assert_int_equal(strlen(info.from_domain[0]), 255);
	}

	/* deeply nested comments: counted, not recursed */
	o = (size_t)snprintf(h, 8192, "From: ");
	for (int k = 0; k < 3000; k++)
		h[o++] = '(';
	for (int k = 0; k < 3000; k++)
		h[o++] = ')';
	o += (size_t)snprintf(h + o, 8192 - o, " a@b.example\r\n\r\n");
	smtp_hdr_scan(h, o, &info);
	assert_false(info.from_malformed);
	assert_int_equal(info.nfrom, 1);
	free(h);
}

/* Issue 12: the Received: count and exactly one From:. */
static void test_check(void **state)
{
	static const struct {
		const char *label;
		const char *hdrs;
		unsigned max_received;
		int code;
		const char *enh;
	} cases[] = {
	    {"one From", "From: a@b.example\r\n\r\n", 50, 0, NULL},
	    {"no From", "Subject: x\r\n\r\n", 50, 550, "5.6.0"},
	    {"empty message", "", 50, 550, "5.6.0"},
	    {"two From", "From: a@b.example\r\nFrom: a@b.example\r\n\r\n", 50, 550, "5.6.0"},
	    {"From in lower case twice", "from: a@b.example\r\nFROM: c@d.example\r\n\r\n", 50,
	     550, "5.6.0"},
	    {"Received at the limit", "Received: x\r\nReceived: y\r\nFrom: a@b.example\r\n\r\n",
	     2, 0, NULL},
	    {"Received over the limit",
	     "Received: x\r\nReceived: y\r\nreceived: z\r\nFrom: a@b.example\r\n\r\n", 2, 554,
	     "5.4.6"},
	    {"loop checked before From", "Received: x\r\nReceived: y\r\n\r\n", 1, 554, "5.4.6"},
	    {"a folded Received counts once", "Received: x\r\n\ty\r\nFrom: a@b.example\r\n\r\n", 1,
	     0, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_hdr_info info;
		struct smtp_reply r = {0};
		char text[256];
		smtp_hdr_scan(cases[i].hdrs, strlen(cases[i].hdrs), &info);
		enum rc rc = smtp_hdr_check(&info, cases[i].max_received, &r, text, sizeof text);
		CHECK(cases[i].label, (rc == RC_OK) == (cases[i].code == 0));
		if (cases[i].code) {
			CHECK(cases[i].label, r.code == cases[i].code);
			CHECK(cases[i].label, strcmp(r.enh, cases[i].enh) == 0);
		}
	}
}

/* Issue 12: client-supplied authentication results are left out. */
static void test_strip_auth(void **state)
{
	static const struct {
		const char *label;
		const char *own; /* NULL: strip all */
		const char *in, *want;
		size_t stripped;
	} cases[] = {
	    {"all: A-R and ARC set", NULL,
	     "From: a@b.example\r\nAuthentication-Results: relay.test; dkim=pass\r\n"
	     "ARC-Seal: i=1; a=rsa-sha256;\r\n\tb=xyz\r\nARC-Message-Signature: i=1\r\n"
	     "ARC-Authentication-Results: i=1; mx.example; spf=pass\r\nSubject: s\r\n\r\n",
	     "From: a@b.example\r\nSubject: s\r\n\r\n", 4},
	    {"all: nothing to strip", NULL, "From: a@b.example\r\n\r\n", "From: a@b.example\r\n\r\n",
	     0},
	    {"all: case and a folded A-R", NULL,
	     "authentication-results:\r\n relay.test;\r\n spf=pass\r\nX: y\r\n\r\n", "X: y\r\n\r\n", 1},
	    {"all: names that only start alike stay", NULL,
	     "Authentication-Results-X: 1\r\nARCHIVE: 2\r\n\r\n",
	     "Authentication-Results-X: 1\r\nARCHIVE: 2\r\n\r\n", 0},
	    {"own id: ours goes, others stay", "relay.test",
	     "Authentication-Results: Relay.Test; dkim=pass\r\n"
	     "Authentication-Results: mx.other.example; spf=pass\r\n"
	     "ARC-Seal: i=1; d=other.example\r\n"
	     "ARC-Authentication-Results: i=1; relay.test; dkim=pass\r\n\r\n",
	     "Authentication-Results: mx.other.example; spf=pass\r\n"
	     "ARC-Seal: i=1; d=other.example\r\n\r\n",
	     2},
	    {"own id behind a comment and a version", "relay.test",
	     "Authentication-Results: (forged) relay.test 1; none\r\n\r\n", "\r\n", 1},
	    {"own id as a prefix of another is not ours", "relay.test",
	     "Authentication-Results: relay.test.example; none\r\n\r\n",
	     "Authentication-Results: relay.test.example; none\r\n\r\n", 0},
	    {"body not touched", NULL, "A: b\r\n", "A: b\r\n", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct evbuffer *out = evbuffer_new();
		size_t n = smtp_hdr_strip_auth(cases[i].in, strlen(cases[i].in), cases[i].own, out);
		size_t len = evbuffer_get_length(out);
		const char *got = (const char *)evbuffer_pullup(out, -1);
		if (n != cases[i].stripped || len != strlen(cases[i].want) ||
		    (len && memcmp(got, cases[i].want, len) != 0))
			fail_msg("case '%s': stripped %zu, got '%.*s'", cases[i].label, n, (int)len,
				 got ? got : "");
		evbuffer_free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_from_limits),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_strip_auth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
