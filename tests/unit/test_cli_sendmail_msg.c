/*
 * test_cli_sendmail_msg.c - the message side of `relevo sendmail`
 * (src/cli/cli_sendmail_msg.c): standard input turned into a message with CRLF
 * line ends (the lone-dot rule, -i, the mbox "From " line, headers without an
 * empty line after them), rendered for DATA (dot-stuffed, CRLF.CRLF), Bcc
 * removed, a From: prepended, and the address lists -t reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli_sendmail.h"
#include "unit_util.h"

/* Input -> what sm_msg_render sends after DATA. */
static const struct {
	const char *label;
	const char *in;
	bool ignore_dots;
	const char *rendered;
	size_t nfields;
	bool eight_bit;
} parse_cases[] = {
    {"LF line ends become CRLF", "To: a@b.example\nSubject: x\n\nbody\n", false,
     "To: a@b.example\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 2, false},
    {"CRLF line ends are kept", "To: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", false,
     "To: a@b.example\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 2, false},
    {"a lone dot ends the input", "Subject: x\n\nline1\n.\nafter\n", false,
     "Subject: x\r\n\r\nline1\r\n.\r\n", 1, false},
    {"a lone dot with CRLF ends the input", "Subject: x\r\n\r\nline1\r\n.\r\nafter\r\n", false,
     "Subject: x\r\n\r\nline1\r\n.\r\n", 1, false},
    {"-i: a lone dot is text, sent stuffed", "Subject: x\n\nline1\n.\nafter\n", true,
     "Subject: x\r\n\r\nline1\r\n..\r\nafter\r\n.\r\n", 1, false},
    {"a dot inside the header block ends it too", "Subject: x\n.\nTo: y@z\n", false,
     "Subject: x\r\n\r\n.\r\n", 1, false},
    {"a leading dot in the body is stuffed", "Subject: x\n\n.leading\n..two\n", false,
     "Subject: x\r\n\r\n..leading\r\n...two\r\n.\r\n", 1, false},
    {"an mbox From line is dropped", "From alice Mon Jan  1 00:00:00 2026\nSubject: x\n\nb\n",
     false, "Subject: x\r\n\r\nb\r\n.\r\n", 1, false},
    {"From: (a header) is not an mbox line", "From: a@b.example\n\nb\n", false,
     "From: a@b.example\r\n\r\nb\r\n.\r\n", 1, false},
    {"folded header keeps its continuation", "Subject: a\n\tb\n c\n\nx\n", false,
     "Subject: a\r\n\tb\r\n c\r\n\r\nx\r\n.\r\n", 1, false},
    {"no empty line: the body starts at the first non-header line",
     "Subject: x\nHello world\nmore\n", false, "Subject: x\r\n\r\nHello world\r\nmore\r\n.\r\n", 1,
     false},
    {"no header at all", "hello\n", false, "\r\nhello\r\n.\r\n", 0, false},
    {"a blank-led first line is body, not a continuation", " indented\n", false,
     "\r\n indented\r\n.\r\n", 0, false},
    {"a field name with a blank is not a header", "Not A Header: x\n\nb\n", false,
     "\r\nNot A Header: x\r\n\r\nb\r\n.\r\n", 0, false},
    {"a bare CR inside a line is kept", "Subject: a\rb\n\nx\ry\n", false,
     "Subject: a\rb\r\n\r\nx\ry\r\n.\r\n", 1, false},
    {"CR CR LF: one CR belongs to the line", "Subject: x\r\r\n\r\nb\n", false,
     "Subject: x\r\r\n\r\nb\r\n.\r\n", 1, false},
    {"the last line needs no line end", "Subject: x\n\nend", false,
     "Subject: x\r\n\r\nend\r\n.\r\n", 1, false},
    {"empty body", "Subject: x\n\n", false, "Subject: x\r\n\r\n.\r\n", 1, false},
    {"empty input", "", false, "\r\n.\r\n", 0, false},
    {"8-bit in a header", "Subject: caf\xc3\xa9\n\nx\n", false,
     "Subject: caf\xc3\xa9\r\n\r\nx\r\n.\r\n", 1, true},
    {"8-bit in the body", "Subject: x\n\n\xff\n", false, "Subject: x\r\n\r\n\xff\r\n.\r\n", 1,
     true},
    {"8-bit after the lone dot is not read", "Subject: x\n\n.\n\xff\n", false,
     "Subject: x\r\n\r\n.\r\n", 1, false},
};

static void test_parse_render(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const char *label = parse_cases[i].label;
		struct sm_msg m = {0};
		size_t len;
		sm_msg_parse(&m, parse_cases[i].in, strlen(parse_cases[i].in),
		             parse_cases[i].ignore_dots);
		char *out = sm_msg_render(&m, &len);
		if (len != strlen(parse_cases[i].rendered) ||
		    memcmp(out, parse_cases[i].rendered, len) != 0)
			fail_msg("case '%s': rendered \"%.*s\"", label, (int)len, out);
		CHECK(label, m.nfields == parse_cases[i].nfields);
		CHECK(label, m.eight_bit == parse_cases[i].eight_bit);
		free(out);
		sm_msg_free(&m);
		sm_msg_free(&m); /* twice: a no-op */
	}
}

static void test_parse_stops_at_buffer_end(void **state)
{
	(void)state;
	/* not NUL-terminated: only the first 11 bytes are the input */
	const char in[] = "Subject: x\nXYZ: must not be read\n";
	struct sm_msg m = {0};
	size_t len;
	sm_msg_parse(&m, in, 11, false);
	char *out = sm_msg_render(&m, &len);
	assert_int_equal(len, strlen("Subject: x\r\n\r\n.\r\n"));
	assert_memory_equal(out, "Subject: x\r\n\r\n.\r\n", len);
	free(out);
	sm_msg_free(&m);
}

static void test_fields(void **state)
{
	(void)state;
	const char *in = "To: a@x.example\nBcc: b@x.example\nbcc:c@x.example,\n  d@x.example\n"
	                 "Bccx: kept\nCc: e@x.example\nSubject: s\n folded\n\nbody\n";
	struct sm_msg m = {0};
	size_t len;
	sm_msg_parse(&m, in, strlen(in), false);
	assert_int_equal(m.nfields, 6);
	assert_true(sm_field_is(&m.fields[1], "bcc"));
	assert_true(sm_field_is(&m.fields[2], "Bcc"));
	assert_false(sm_field_is(&m.fields[3], "Bcc")); /* Bccx: */
	assert_false(sm_field_is(&m.fields[0], "T"));

	char *v = sm_field_value(&m.fields[2]);
	assert_string_equal(v, "c@x.example,  d@x.example"); /* unfolded */
	free(v);
	v = sm_field_value(&m.fields[5]);
	assert_string_equal(v, " s folded");
	free(v);

	sm_msg_drop(&m, "Bcc"); /* RFC 5322 3.6.3: every Bcc field, any case */
	assert_int_equal(m.nfields, 4);
	sm_msg_prepend(&m, "From: <alice@example.com>");
	char *out = sm_msg_render(&m, &len);
	const char *want = "From: <alice@example.com>\r\nTo: a@x.example\r\nBccx: kept\r\n"
	                   "Cc: e@x.example\r\nSubject: s\r\n folded\r\n\r\nbody\r\n.\r\n";
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);

	sm_msg_drop(&m, "Subject");
	sm_msg_drop(&m, "Nothing");
	out = sm_msg_render(&m, &len);
	want = "From: <alice@example.com>\r\nTo: a@x.example\r\nBccx: kept\r\n"
	       "Cc: e@x.example\r\n\r\nbody\r\n.\r\n";
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);
	sm_msg_free(&m);
}

static void test_field_starting_with_a_dot_is_stuffed(void **state)
{
	(void)state;
	struct sm_msg m = {0};
	size_t len;
	sm_msg_parse(&m, ".X: y\n\nb\n", 9, false);
	char *out = sm_msg_render(&m, &len);
	assert_int_equal(len, strlen("..X: y\r\n\r\nb\r\n.\r\n"));
	assert_memory_equal(out, "..X: y\r\n\r\nb\r\n.\r\n", len);
	free(out);
	sm_msg_free(&m);
}

/* sm_addr_list: the addresses fn sees, joined with ","; fn refuses those
 * without '@'. */
struct collected {
	char buf[512];
	size_t len;
};

static bool collect(void *arg, const char *addr)
{
	struct collected *c = arg;
	c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len, "%s%s",
	                           c->len ? "," : "", addr);
	return strchr(addr, '@') != NULL;
}

static const struct {
	const char *label;
	const char *list;
	const char *addrs;
	int bad;
} addr_cases[] = {
    {"addr-spec", "a@b.example", "a@b.example", 0},
    {"name and angle address", "Alice Smith <a@b.example>", "a@b.example", 0},
    {"comment after", "a@b.example (Alice)", "a@b.example", 0},
    {"comment with a comma and <>", "(x, <y@z>) a@b.example", "a@b.example", 0},
    {"nested comment with quoted pair", "a@b.example (x (y \\) z) w)", "a@b.example", 0},
    {"quoted name with a comma", "\"Smith, J\" <j@b.example>, k@c.example",
     "j@b.example,k@c.example", 0},
    {"quoted local part keeps its blank", "\"a b\"@c.example", "\"a b\"@c.example", 0},
    {"group", "team: a@b.example, c@d.example;", "a@b.example,c@d.example", 0},
    {"empty group", "Undisclosed recipients:;", "", 0},
    {"source route dropped", "<@r1.example,@r2.example:a@b.example>", "a@b.example", 0},
    {"domain literal keeps its colons", "a@[IPv6:::1]", "a@[IPv6:::1]", 0},
    {"blanks and empty elements dropped", "  a@b.example ,, c@d.example , ",
     "a@b.example,c@d.example", 0},
    {"blanks inside angle brackets dropped", "< a@b.example >", "a@b.example", 0},
    {"a refused element is counted", "nobody, a@b.example, x", "nobody,a@b.example,x", 2},
    {"empty", "", "", 0},
    {"only a comment", "(nothing here)", "", 0},
};

static void test_addr_list(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
		const char *label = addr_cases[i].label;
		struct collected c = {.len = 0};
		c.buf[0] = '\0';
		int bad = sm_addr_list(addr_cases[i].list, collect, &c);
		if (strcmp(c.buf, addr_cases[i].addrs) != 0)
			fail_msg("case '%s': got \"%s\"", label, c.buf);
		CHECK(label, bad == addr_cases[i].bad);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_render),
	    cmocka_unit_test(test_parse_stops_at_buffer_end),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_field_starting_with_a_dot_is_stuffed),
	    cmocka_unit_test(test_addr_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
