/*
 * test_smtp_line.c - command line scanning, command parsing and reply formatting
 * (src/smtp/smtp_line.c, src/smtp/smtp_reply.c).
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

/* ---- smtp_line_scan ------------------------------------------------------ */

static const struct {
	const char *label;
	const char *in;
	size_t len;
	size_t max;
	enum rc rc;
	size_t linelen, consumed;
} scan_cases[] = {
	{"one line", S("NOOP\r\n"), 512, RC_OK, 4, 6},
	{"pipelined: only the first", S("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"), 512, RC_OK, 15, 17},
	{"empty line", S("\r\n"), 512, RC_OK, 0, 2},
	{"bare LF is not a line end", S("NOOP\nQUIT\r\n"), 512, RC_OK, 9, 11},
	{"bare CR is not a line end", S("NOOP\rQUIT\r\n"), 512, RC_OK, 9, 11},
	{"LF CR is not CRLF", S("NOOP\n\rQUIT"), 512, RC_AGAIN, 0, 0},
	{"LF first", S("\n\r\n"), 512, RC_OK, 1, 3},
	{"CR CR LF", S("A\r\r\n"), 512, RC_OK, 2, 4},
	{"incomplete", S("NOOP"), 512, RC_AGAIN, 0, 0},
	{"CR at the end: wait", S("NOOP\r"), 512, RC_AGAIN, 0, 0},
	{"nothing", S(""), 512, RC_AGAIN, 0, 0},
	{"NUL inside is content", S("NO\0OP\r\n"), 512, RC_OK, 5, 7},
	{"line exactly max with CRLF", S("12345678\r\n"), 10, RC_OK, 8, 10},
	{"line one over max", S("1234567890\r\n"), 10, RC_LIMIT, 0, 10},
	{"over max, CR kept for next read", S("123456789\r\n"), 10, RC_LIMIT, 0, 9},
	{"over max, CR at max-1 kept", S("12345678X\rYZ"), 10, RC_LIMIT, 0, 9},
	{"no CRLF within max", S("aaaaaaaaaaaaaaaaaaaa"), 10, RC_LIMIT, 0, 10},
	{"len below max: again", S("aaaaaaaaa"), 10, RC_AGAIN, 0, 0},
	{"tiny max", S("\r\n"), 1, RC_LIMIT, 0, 1},
};

static void test_line_scan(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(scan_cases); i++) {
		const char *label = scan_cases[i].label;
		size_t linelen = 99, consumed = 99;
		enum rc rc = smtp_line_scan(scan_cases[i].in, scan_cases[i].len, scan_cases[i].max,
					    &linelen, &consumed);
		CHECK(label, rc == scan_cases[i].rc);
		if (rc == RC_OK)
			CHECK(label, linelen == scan_cases[i].linelen);
		if (rc != RC_AGAIN)
			CHECK(label, consumed == scan_cases[i].consumed);
	}
}

/* An over-long line then a good one: discarding *consumed bytes each time
 * until a CRLF is found must land exactly after the long line's CRLF, also
 * when that CRLF is split between reads. */
static void test_line_scan_discard(void **state)
{
	(void)state;
	char buf[64];
	memset(buf, 'x', 29);
	memcpy(buf + 29, "\r\nQUIT\r\n", 8);	/* 29 x, CRLF at 29..30 */
	for (size_t max = 2; max < 31; max++) {
		size_t off = 0, linelen, consumed;
		enum rc rc;
		while ((rc = smtp_line_scan(buf + off, 37 - off, max, &linelen, &consumed)) ==
		       RC_LIMIT)
			off += consumed;
		assert_int_equal(rc, RC_OK);
		off += consumed;
		/* the tail of the long line was found: what follows is QUIT */
		assert_int_equal(off, 31);
	}
}

/* ---- smtp_cmd_parse ------------------------------------------------------ */

static const struct {
	const char *label;
	const char *line;
	size_t len;
	enum rc rc;
	enum smtp_verb verb;
	const char *arg;
	bool has_arg;
	int code;
	const char *enh;
} cmd_cases[] = {
	{"HELO", S("HELO client.example"), RC_OK, SMTP_V_HELO, "client.example", true, 0, NULL},
	{"EHLO lower case", S("ehlo client.example"), RC_OK, SMTP_V_EHLO, "client.example", true, 0, NULL},
	{"MAIL mixed case", S("MaIl FROM:<a@b.example>"), RC_OK, SMTP_V_MAIL, "FROM:<a@b.example>", true, 0, NULL},
	{"RCPT", S("RCPT TO:<c@d.example>"), RC_OK, SMTP_V_RCPT, "TO:<c@d.example>", true, 0, NULL},
	{"DATA", S("DATA"), RC_OK, SMTP_V_DATA, "", false, 0, NULL},
	{"DATA with argument: split only", S("DATA now"), RC_OK, SMTP_V_DATA, "now", true, 0, NULL},
	{"BDAT", S("BDAT 100 LAST"), RC_OK, SMTP_V_BDAT, "100 LAST", true, 0, NULL},
	{"RSET", S("rset"), RC_OK, SMTP_V_RSET, "", false, 0, NULL},
	{"NOOP with text", S("NOOP hello"), RC_OK, SMTP_V_NOOP, "hello", true, 0, NULL},
	{"QUIT", S("QUIT"), RC_OK, SMTP_V_QUIT, "", false, 0, NULL},
	{"QUIT trailing space is no argument", S("QUIT "), RC_OK, SMTP_V_QUIT, "", false, 0, NULL},
	{"QUIT spaces", S("QUIT   "), RC_OK, SMTP_V_QUIT, "", false, 0, NULL},
	{"VRFY", S("VRFY user"), RC_OK, SMTP_V_VRFY, "user", true, 0, NULL},
	{"EXPN", S("EXPN list"), RC_OK, SMTP_V_EXPN, "list", true, 0, NULL},
	{"HELP", S("help"), RC_OK, SMTP_V_HELP, "", false, 0, NULL},
	{"STARTTLS", S("StartTLS"), RC_OK, SMTP_V_STARTTLS, "", false, 0, NULL},
	{"STARTTLS with argument", S("STARTTLS x"), RC_OK, SMTP_V_STARTTLS, "x", true, 0, NULL},
	{"AUTH", S("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), RC_OK, SMTP_V_AUTH, "PLAIN AGFsaWNlAHNlY3JldA==", true, 0, NULL},
	{"several spaces after verb", S("MAIL   FROM:<a@b>"), RC_OK, SMTP_V_MAIL, "FROM:<a@b>", true, 0, NULL},
	{"8-bit argument left to the parsers", S("MAIL FROM:<\xc3\xa9@b>"), RC_OK, SMTP_V_MAIL, "FROM:<\xc3\xa9@b>", true, 0, NULL},
	{"unknown verb", S("FOO bar"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"verb glued to argument", S("MAILFROM:<a@b>"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"verb prefix", S("MAI"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"verb with suffix", S("QUITX"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"8-bit verb", S("QU\xc3\x8fT"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"HTTP request", S("GET / HTTP/1.1"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.1"},
	{"empty line", S(""), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"leading space", S(" NOOP"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"NUL in line", S("NOOP\0QUIT"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"NUL in verb", S("NO\0OP"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"bare CR (smuggled command)", S("NOOP\rRSET"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"bare LF (smuggled command)", S("NOOP\nRSET"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"LF smuggling in MAIL", S("MAIL FROM:<a@b>\nRCPT TO:<x@y>"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"TAB separator", S("MAIL\tFROM:<a@b>"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"ESC sequence", S("NOOP \x1b[31m"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"DEL", S("NOOP \x7f"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
	{"control before unknown verb", S("XX\x01"), RC_PROTO, SMTP_V_UNKNOWN, NULL, false, 500, "5.5.2"},
};

static void test_cmd_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cmd_cases); i++) {
		const char *label = cmd_cases[i].label;
		char *line = malloc(cmd_cases[i].len + 1);
		memcpy(line, cmd_cases[i].line, cmd_cases[i].len);
		line[cmd_cases[i].len] = '\0';
		struct smtp_cmd cmd;
		struct smtp_reply err = {0};
		enum rc rc = smtp_cmd_parse(line, cmd_cases[i].len, &cmd, &err);
		CHECK(label, rc == cmd_cases[i].rc);
		if (rc == RC_OK) {
			CHECK(label, cmd.verb == cmd_cases[i].verb);
			CHECK(label, strcmp(cmd.arg, cmd_cases[i].arg) == 0);
			CHECK(label, smtp_cmd_has_arg(&cmd) == cmd_cases[i].has_arg);
		} else {
			CHECK(label, err.code == cmd_cases[i].code);
			CHECK(label, strcmp(err.enh, cmd_cases[i].enh) == 0);
			CHECK(label, err.text != NULL && err.text[0] != '\0');
		}
		free(line);
	}
}

static void test_verb_name(void **state)
{
	(void)state;
	assert_string_equal(smtp_verb_name(SMTP_V_MAIL), "MAIL");
	assert_string_equal(smtp_verb_name(SMTP_V_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(SMTP_V_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name(SMTP_V__COUNT), "INVALID");
	for (int v = 0; v < SMTP_V__COUNT; v++)
		assert_non_null(smtp_verb_name((enum smtp_verb)v));
}

/* ---- smtp_reply_append --------------------------------------------------- */

static const struct {
	const char *label;
	int code;
	const char *enh;
	const char *text;
	const char *wire;
} reply_cases[] = {
	{"simple", 250, "2.0.0", "OK", "250 2.0.0 OK\r\n"},
	{"no enhanced code", 220, NULL, "relevo ESMTP", "220 relevo ESMTP\r\n"},
	{"multi-line", 250, NULL, "relevo\nPIPELINING\nSIZE 1000",
	 "250-relevo\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"},
	{"multi-line with enh", 550, "5.7.1", "one\ntwo", "550-5.7.1 one\r\n550 5.7.1 two\r\n"},
	{"trailing newline opens no line", 250, "2.0.0", "done\n", "250 2.0.0 done\r\n"},
	{"empty line in the middle", 250, NULL, "a\n\nb", "250-a\r\n250-\r\n250 b\r\n"},
	{"empty text", 250, NULL, "", "250\r\n"},
	{"NULL text with enh", 250, "2.0.0", NULL, "250 2.0.0\r\n"},
	{"CR LF in text", 250, NULL, "a\r\nb", "250-a\r\n250 b\r\n"},
	{"bare CR cannot end the line", 250, NULL, "ok\r550 forged", "250 ok?550 forged\r\n"},
	{"controls replaced", 501, "5.5.4", "bad \x01\x1b\x7f", "501 5.5.4 bad ???\r\n"},
	{"354", 354, NULL, "End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>\r\n"},
};

static void test_reply_append(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(reply_cases); i++) {
		const char *label = reply_cases[i].label;
		struct evbuffer *out = evbuffer_new();
		smtp_reply_append(out, reply_cases[i].code, reply_cases[i].enh, reply_cases[i].text);
		size_t n = evbuffer_get_length(out);
		char *got = calloc(1, n + 1);
		evbuffer_remove(out, got, n);
		if (strcmp(got, reply_cases[i].wire) != 0)
			fail_msg("case '%s': got '%s'", label, got);
		free(got);
		evbuffer_free(out);
	}
}

/* Replies accumulate: two appends give two replies back to back. */
static void test_reply_append_twice(void **state)
{
	(void)state;
	struct evbuffer *out = evbuffer_new();
	smtp_reply_append(out, 250, "2.1.0", "Sender OK");
	smtp_reply_append(out, 250, "2.1.5", "Recipient OK");
	char got[64] = {0};
	evbuffer_remove(out, got, sizeof got - 1);
	assert_string_equal(got, "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n");
	evbuffer_free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_scan),
		cmocka_unit_test(test_line_scan_discard),
		cmocka_unit_test(test_cmd_parse),
		cmocka_unit_test(test_verb_name),
		cmocka_unit_test(test_reply_append),
		cmocka_unit_test(test_reply_append_twice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
