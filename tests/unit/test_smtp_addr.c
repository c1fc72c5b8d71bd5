/*
 * test_smtp_addr.c - paths, MAIL/RCPT parameters, xtext and UTF-8 checks
 * (src/smtp/smtp_addr.c).
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
#include "spool/spool.h"
#include "unit_util.h"

/* Compare a reply with the expected code and enhanced code. */
static void check_err(const char *label, const struct smtp_reply *err, int code, const char *enh)
{
	if (err->code != code || err->enh == NULL || strcmp(err->enh, enh) != 0)
		fail_msg("case '%s': got %d %s '%s', want %d %s", label, err->code,
			 err->enh ? err->enh : "(null)", err->text ? err->text : "", code, enh);
	CHECK(label, err->text != NULL && err->text[0] != '\0');
}

/* ---- smtp_path_parse ----------------------------------------------------- */

#define NUL_OK 1	/* allow_null */
#define UTF8 2		/* utf8_ok */
#define SENDER 4	/* is_sender */

static const struct {
	const char *label;
	const char *in;
	int flags;
	int code;		/* 0: accepted */
	const char *enh;
	const char *addr;	/* accepted: expected addr ("" for <>) */
	const char *domain;
	size_t consumed;	/* accepted: 0 means strlen(in) */
} path_cases[] = {
	/* accepted */
	{"simple", "<user@example.com>", 0, 0, NULL, "user@example.com", "example.com", 0},
	{"domain lower-cased, local kept", "<User.Name@EXAMPLE.Com>", 0, 0, NULL,
	 "User.Name@example.com", "example.com", 0},
	{"null sender", "<>", NUL_OK | SENDER, 0, NULL, "", "", 0},
	{"source route dropped", "<@a.example,@b.example:u@c.example>", 0, 0, NULL,
	 "u@c.example", "c.example", 0},
	{"one-hop source route", "<@a.example:u@c.example>", SENDER, 0, NULL, "u@c.example",
	 "c.example", 0},
	{"quoted local part with space", "<\"john doe\"@example.com>", 0, 0, NULL,
	 "\"john doe\"@example.com", "example.com", 0},
	{"quoted pair kept as received", "<\"a\\\"b\\\\c\"@x.org>", 0, 0, NULL,
	 "\"a\\\"b\\\\c\"@x.org", "x.org", 0},
	{"empty quoted local part", "<\"\"@x.org>", 0, 0, NULL, "\"\"@x.org", "x.org", 0},
	{"shell metacharacters quoted", "<\"$(id);`id`|&>x<'\"@x.org>", 0, 0, NULL,
	 "\"$(id);`id`|&>x<'\"@x.org", "x.org", 0},
	{"format metacharacters quoted", "<\"%s%n%x%p\"@x.org>", SENDER, 0, NULL,
	 "\"%s%n%x%p\"@x.org", "x.org", 0},
	{"all of atext", "<a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t@x.org>", 0, 0, NULL,
	 "a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t@x.org", "x.org", 0},
	{"percent hack is just a character", "<user%other.example@relay.example>", 0, 0, NULL,
	 "user%other.example@relay.example", "relay.example", 0},
	{"bang path is just a character", "<host!user@x.org>", 0, 0, NULL, "host!user@x.org",
	 "x.org", 0},
	{"IPv4 literal", "<u@[192.0.2.1]>", 0, 0, NULL, "u@[192.0.2.1]", "[192.0.2.1]", 0},
	{"IPv4 literal zeros", "<u@[0.0.0.0]>", 0, 0, NULL, "u@[0.0.0.0]", "[0.0.0.0]", 0},
	{"IPv6 literal", "<u@[IPv6:2001:db8::1]>", 0, 0, NULL, "u@[IPv6:2001:db8::1]",
	 "[IPv6:2001:db8::1]", 0},
	{"IPv6 tag any case", "<u@[ipv6:::1]>", 0, 0, NULL, "u@[ipv6:::1]", "[ipv6:::1]", 0},
	{"IPv4-mapped IPv6", "<u@[IPv6:::ffff:192.0.2.1]>", 0, 0, NULL,
	 "u@[IPv6:::ffff:192.0.2.1]", "[IPv6:::ffff:192.0.2.1]", 0},
	{"Postmaster without domain", "<Postmaster>", 0, 0, NULL, "Postmaster", "", 0},
	{"POSTMASTER any case", "<POSTMASTER>", 0, 0, NULL, "POSTMASTER", "", 0},
	{"hyphen inside label", "<u@a-b--c.example>", 0, 0, NULL, "u@a-b--c.example",
	 "a-b--c.example", 0},
	{"digit labels", "<u@123.4.example>", 0, 0, NULL, "u@123.4.example", "123.4.example", 0},
	{"single-label domain", "<root@localhost>", 0, 0, NULL, "root@localhost", "localhost", 0},
	{"stops after >", "<a@b.example> SIZE=10", 0, 0, NULL, "a@b.example", "b.example", 13},
	{"UTF-8 with SMTPUTF8", "<\xce\xb4\xce\xbf\xce\xba@\xcf\x80\xce\xb1.example>", UTF8, 0,
	 NULL, "\xce\xb4\xce\xbf\xce\xba@\xcf\x80\xce\xb1.example",
	 "\xcf\x80\xce\xb1.example", 0},
	{"UTF-8 domain: ASCII lowered only", "<u@\xc3\x84X.EXAMPLE>", UTF8, 0, NULL,
	 "u@\xc3\x84x.example", "\xc3\x84x.example", 0},
	{"4-byte UTF-8", "<\xf0\x9f\x98\x80@x.org>", UTF8, 0, NULL, "\xf0\x9f\x98\x80@x.org",
	 "x.org", 0},
	{"UTF-8 in quoted local part", "<\"\xc3\xa9 x\"@x.org>", UTF8, 0, NULL,
	 "\"\xc3\xa9 x\"@x.org", "x.org", 0},

	/* refused: syntax */
	{"no angle brackets (sender)", "user@example.com", SENDER, 501, "5.1.7", NULL, NULL, 0},
	{"no angle brackets (recipient)", "user@example.com", 0, 501, "5.1.3", NULL, NULL, 0},
	{"empty input", "", 0, 501, "5.1.3", NULL, NULL, 0},
	{"lone <", "<", 0, 501, "5.1.3", NULL, NULL, 0},
	{"missing >", "<user@example.com", SENDER, 501, "5.1.7", NULL, NULL, 0},
	{"null not allowed", "<>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"no domain", "<user>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"empty domain", "<user@>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"postmaster as sender", "<postmaster>", SENDER, 501, "5.1.7", NULL, NULL, 0},
	{"postmaster after a route", "<@a.example:postmaster>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"quoted postmaster", "<\"postmaster\">", 0, 501, "5.1.3", NULL, NULL, 0},
	{"postmasterx", "<postmasterx>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"empty local part", "<@example.com>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"route without colon", "<@a.example,u@c.example>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"route with bad domain", "<@-a.example:u@c.example>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"double dot in local part", "<a..b@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"leading dot in local part", "<.a@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"trailing dot in local part", "<a.@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"trailing dot in domain", "<a@x.org.>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"empty label", "<a@x..org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"leading hyphen", "<a@-x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"trailing hyphen", "<a@x-.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"underscore in domain", "<a@x_y.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"space in path", "<a @x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"space after <", "< a@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"two @", "<a@b@c.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"unbalanced quote", "<\"abc@x.org>", SENDER, 501, "5.1.7", NULL, NULL, 0},
	{"quote inside dot-string", "<a\"b@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"control in quoted string", "<\"a\x01\"@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"TAB in quoted string", "<\"a\tb\"@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"quoted pair of a control", "<\"a\\\x01\"@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"CR in path", "<a\r@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"LF in domain", "<a@x.org\n>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"parenthesis unquoted", "<a(b)@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"semicolon unquoted", "<a;id@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"backslash unquoted", "<a\\b@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"comma unquoted", "<a,b@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"brackets unquoted", "<a[b]@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"< inside", "<a<b@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"nested brackets", "<<a@x.org>>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 octet over 255", "<u@[256.1.1.1]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 leading zero (octal)", "<u@[010.0.0.1]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 three parts", "<u@[1.2.3]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 five parts", "<u@[1.2.3.4.5]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 four digits", "<u@[1.2.3.1000]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv4 unterminated", "<u@[1.2.3.4>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv6 triple colon", "<u@[IPv6:2001:db8:::1]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv6 zone id", "<u@[IPv6:fe80::1%eth0]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv6 empty", "<u@[IPv6:]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"IPv6 too long", "<u@[IPv6:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa]>", 0,
	 501, "5.1.3", NULL, NULL, 0},
	{"IPv6 without tag", "<u@[::1]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"other literal tag", "<u@[x400:c=us]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"hostname literal", "<u@[example.com]>", 0, 501, "5.1.3", NULL, NULL, 0},
	{"literal then junk", "<u@[1.2.3.4]x>", 0, 501, "5.1.3", NULL, NULL, 0},

	/* refused: UTF-8 */
	{"UTF-8 local without SMTPUTF8", "<\xc3\xa9@x.org>", SENDER, 553, "5.6.7", NULL, NULL, 0},
	{"UTF-8 domain without SMTPUTF8", "<u@\xc3\xbc.example>", 0, 553, "5.6.7", NULL, NULL, 0},
	{"UTF-8 route without SMTPUTF8", "<@\xc3\xbc.example:u@x.org>", 0, 553, "5.6.7", NULL,
	 NULL, 0},
	{"UTF-8 quoted without SMTPUTF8", "<\"\xc3\xa9\"@x.org>", 0, 553, "5.6.7", NULL, NULL, 0},
	{"overlong slash", "<\xc0\xafx@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"overlong 3-byte", "<\xe0\x80\xaf@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"surrogate", "<\xed\xa0\x80@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"beyond U+10FFFF", "<\xf4\x90\x80\x80@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"truncated sequence", "<\xc3@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"lone continuation byte", "<\x80@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"0xff", "<a\xff@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"C1 control NEL", "<a\xc2\x85@x.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"invalid UTF-8 in domain", "<a@\xc3(.org>", UTF8, 501, "5.1.3", NULL, NULL, 0},
	{"invalid UTF-8 without SMTPUTF8", "<\xc0\xaf@x.org>", 0, 501, "5.1.3", NULL, NULL, 0},
};

static void test_path_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(path_cases); i++) {
		const char *label = path_cases[i].label;
		int fl = path_cases[i].flags;
		struct smtp_path path;
		struct smtp_reply err = {0};
		size_t consumed = 99;
		enum rc rc = smtp_path_parse(path_cases[i].in, fl & NUL_OK, fl & UTF8, fl & SENDER,
					     &consumed, &path, &err);
		if (path_cases[i].code == 0) {
			if (rc != RC_OK)
				fail_msg("case '%s': refused: %d %s %s", label, err.code, err.enh,
					 err.text);
			CHECK(label, strcmp(path.addr, path_cases[i].addr) == 0);
			CHECK(label, strcmp(path.domain, path_cases[i].domain) == 0);
			CHECK(label, path.is_null == (path_cases[i].addr[0] == '\0'));
			CHECK(label, consumed == (path_cases[i].consumed ? path_cases[i].consumed
									: strlen(path_cases[i].in)));
			bool utf8 = false;
			for (const char *p = path.addr; *p; p++)
				utf8 |= (unsigned char)*p >= 0x80;
			CHECK(label, path.is_utf8 == utf8);
		} else {
			CHECK(label, rc != RC_OK);
			check_err(label, &err, path_cases[i].code, path_cases[i].enh);
		}
	}
}

/* Builds "<" local "@" domain ">" from repeated characters. */
static char *make_path(size_t local_len, const size_t *labels, size_t nlabels)
{
	char *s = calloc(1, local_len + nlabels * 70 + 8);
	size_t o = 0;
	s[o++] = '<';
	memset(s + o, 'l', local_len);
	o += local_len;
	s[o++] = '@';
	for (size_t k = 0; k < nlabels; k++) {
		if (k > 0)
			s[o++] = '.';
		memset(s + o, 'd', labels[k]);
		o += labels[k];
	}
	s[o++] = '>';
	return s;
}

static void test_path_limits(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		size_t local;
		size_t labels[5];
		size_t nlabels;
		bool ok;
		const char *why;	/* substring of the refusal text */
	} cases[] = {
		{"local 64 octets", 64, {5}, 1, true, NULL},
		{"local 65 octets", 65, {5}, 1, false, "64"},
		{"label 63 octets", 1, {63, 3}, 2, true, NULL},
		{"label 64 octets", 1, {64, 3}, 2, false, "63"},
		/* 1 + "@" + 252 + "<>" = 256: the path limit exactly */
		{"path 256 octets", 1, {63, 63, 63, 60}, 4, true, NULL},
		{"path 257 octets", 1, {63, 63, 63, 61}, 4, false, "256"},
		{"domain 256 octets", 1, {63, 63, 63, 64 - 0}, 4, false, "63"},
		{"domain over 255 octets", 1, {63, 63, 63, 63, 1}, 5, false, "255"},
		{"local 64 and long domain", 64, {63, 63, 63}, 3, false, "256"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *s = make_path(cases[i].local, cases[i].labels, cases[i].nlabels);
		struct smtp_path path;
		struct smtp_reply err = {0};
		size_t consumed;
		enum rc rc = smtp_path_parse(s, false, false, false, &consumed, &path, &err);
		if (cases[i].ok) {
			if (rc != RC_OK)
				fail_msg("case '%s': %s", cases[i].label, err.text);
			CHECK(cases[i].label, consumed == strlen(s));
			CHECK(cases[i].label, strlen(path.local) == cases[i].local);
		} else {
			CHECK(cases[i].label, rc != RC_OK);
			check_err(cases[i].label, &err, 501, "5.1.3");
			if (strstr(err.text, cases[i].why) == NULL)
				fail_msg("case '%s': text '%s'", cases[i].label, err.text);
		}
		free(s);
	}

	/* A quoted local part is measured with its quotes: 62 + 2 fit, 63 + 2 not. */
	char q[96];
	struct smtp_path path;
	struct smtp_reply err;
	size_t consumed;
	for (size_t n = 62; n <= 63; n++) {
		q[0] = '<';
		q[1] = '"';
		memset(q + 2, 'q', n);
		memcpy(q + 2 + n, "\"@x.org>", 9);
		enum rc rc = smtp_path_parse(q, false, false, false, &consumed, &path, &err);
		if (n == 62)
			assert_int_equal(rc, RC_OK);
		else
			assert_int_not_equal(rc, RC_OK);
	}
	/* UTF-8 counts octets: 32 two-octet characters fit, 33 do not. */
	for (size_t n = 32; n <= 33; n++) {
		char u[128] = "<";
		for (size_t k = 0; k < n; k++)
			memcpy(u + 1 + 2 * k, "\xc3\xa9", 2);
		memcpy(u + 1 + 2 * n, "@x.org>", 8);
		enum rc rc = smtp_path_parse(u, false, true, false, &consumed, &path, &err);
		if (n == 32) {
			assert_int_equal(rc, RC_OK);
			assert_true(path.is_utf8);
		} else {
			assert_int_not_equal(rc, RC_OK);
			assert_non_null(strstr(err.text, "64"));
		}
	}
}

/* ---- smtp_mail_parse ------------------------------------------------------- */

static const struct {
	const char *label;
	const char *arg;
	int code;	/* 0: accepted */
	const char *enh;
	const char *addr;
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	const char *envid;
} mail_cases[] = {
	{"plain", "FROM:<a@b.example>", 0, NULL, "a@b.example", false, 0, 0, false, 0, ""},
	{"lower-case FROM", "from:<a@b.example>", 0, NULL, "a@b.example", false, 0, 0, false, 0, ""},
	{"space after colon (Postfix leniency)", "FROM: <a@b.example>", 0, NULL, "a@b.example",
	 false, 0, 0, false, 0, ""},
	{"two spaces after colon", "FROM:  <a@b.example>", 0, NULL, "a@b.example", false, 0, 0,
	 false, 0, ""},
	{"null sender", "FROM:<>", 0, NULL, "", false, 0, 0, false, 0, ""},
	{"null sender with params", "FROM:<> SIZE=100 BODY=8BITMIME", 0, NULL, "", true, 100,
	 SMTP_BODY_8BITMIME, false, 0, ""},
	{"trailing spaces", "FROM:<a@b.example>   ", 0, NULL, "a@b.example", false, 0, 0, false,
	 0, ""},
	{"SIZE", "FROM:<a@b.example> SIZE=12345", 0, NULL, "a@b.example", true, 12345, 0, false,
	 0, ""},
	{"SIZE=0", "FROM:<a@b.example> SIZE=0", 0, NULL, "a@b.example", true, 0, 0, false, 0, ""},
	{"SIZE lower case", "FROM:<a@b.example> size=7", 0, NULL, "a@b.example", true, 7, 0,
	 false, 0, ""},
	{"SIZE largest 64-bit", "FROM:<a@b.example> SIZE=18446744073709551615", 0, NULL,
	 "a@b.example", true, UINT64_MAX, 0, false, 0, ""},
	{"BODY=7BIT", "FROM:<a@b.example> BODY=7BIT", 0, NULL, "a@b.example", false, 0,
	 SMTP_BODY_7BIT, false, 0, ""},
	{"BODY=8bitmime any case", "FROM:<a@b.example> body=8bitMIME", 0, NULL, "a@b.example",
	 false, 0, SMTP_BODY_8BITMIME, false, 0, ""},
	{"SMTPUTF8 with UTF-8 address", "FROM:<\xc3\xa9@b.example> SMTPUTF8", 0, NULL,
	 "\xc3\xa9@b.example", false, 0, 0, true, 0, ""},
	{"SMTPUTF8 with ASCII address", "FROM:<a@b.example> SMTPUTF8 BODY=8BITMIME", 0, NULL,
	 "a@b.example", false, 0, SMTP_BODY_8BITMIME, true, 0, ""},
	{"RET=FULL", "FROM:<a@b.example> RET=FULL", 0, NULL, "a@b.example", false, 0, 0, false,
	 SMTP_RET_FULL, ""},
	{"RET=hdrs", "FROM:<a@b.example> RET=hdrs", 0, NULL, "a@b.example", false, 0, 0, false,
	 SMTP_RET_HDRS, ""},
	{"ENVID", "FROM:<a@b.example> ENVID=QQ314159", 0, NULL, "a@b.example", false, 0, 0,
	 false, 0, "QQ314159"},
	{"ENVID xtext decoded", "FROM:<a@b.example> ENVID=a+2Bb+3Dc+20d", 0, NULL,
	 "a@b.example", false, 0, 0, false, 0, "a+b=c d"},
	{"AUTH=<> ignored", "FROM:<a@b.example> AUTH=<>", 0, NULL, "a@b.example", false, 0, 0,
	 false, 0, ""},
	{"AUTH=mailbox ignored", "FROM:<a@b.example> AUTH=e+3Dmc2@example.com", 0, NULL,
	 "a@b.example", false, 0, 0, false, 0, ""},
	{"everything", "FROM:<a@b.example> SIZE=1 BODY=7BIT RET=HDRS ENVID=x AUTH=<> SMTPUTF8", 0,
	 NULL, "a@b.example", true, 1, SMTP_BODY_7BIT, true, SMTP_RET_HDRS, "x"},
	{"spaces between params", "FROM:<a@b.example>  SIZE=1   BODY=7BIT ", 0, NULL,
	 "a@b.example", true, 1, SMTP_BODY_7BIT, false, 0, ""},

	/* the command itself */
	{"no FROM:", "<a@b.example>", 501, "5.5.4", NULL, false, 0, 0, false, 0, NULL},
	{"TO: instead of FROM:", "TO:<a@b.example>", 501, "5.5.4", NULL, false, 0, 0, false, 0,
	 NULL},
	{"space before colon", "FROM :<a@b.example>", 501, "5.5.4", NULL, false, 0, 0, false, 0,
	 NULL},
	{"empty", "", 501, "5.5.4", NULL, false, 0, 0, false, 0, NULL},
	{"no angle brackets", "FROM:a@b.example", 501, "5.1.7", NULL, false, 0, 0, false, 0, NULL},
	{"no angle brackets after space", "FROM: a@b.example", 501, "5.1.7", NULL, false, 0, 0,
	 false, 0, NULL},
	{"param glued to path", "FROM:<a@b.example>SIZE=1", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"UTF-8 without SMTPUTF8", "FROM:<\xc3\xa9@b.example>", 553, "5.6.7", NULL, false, 0, 0,
	 false, 0, NULL},
	{"UTF-8 domain without SMTPUTF8", "FROM:<a@b\xc3\xa9.example> BODY=8BITMIME", 553,
	 "5.6.7", NULL, false, 0, 0, false, 0, NULL},

	/* SIZE */
	{"SIZE one past 64 bits", "FROM:<a@b.example> SIZE=18446744073709551616", 552, "5.3.4",
	 NULL, false, 0, 0, false, 0, NULL},
	{"SIZE absurd", "FROM:<a@b.example> SIZE=999999999999999999999999999999", 552, "5.3.4",
	 NULL, false, 0, 0, false, 0, NULL},
	{"SIZE not a number", "FROM:<a@b.example> SIZE=12a", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"SIZE negative", "FROM:<a@b.example> SIZE=-1", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"SIZE with sign", "FROM:<a@b.example> SIZE=+1", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"SIZE hex", "FROM:<a@b.example> SIZE=0x10", 501, "5.5.4", NULL, false, 0, 0, false, 0,
	 NULL},
	{"SIZE without value", "FROM:<a@b.example> SIZE", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"SIZE= empty value", "FROM:<a@b.example> SIZE=", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},

	/* BODY, SMTPUTF8, RET */
	{"BODY=BINARYMIME", "FROM:<a@b.example> BODY=BINARYMIME", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"BODY without value", "FROM:<a@b.example> BODY", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"SMTPUTF8 with value", "FROM:<a@b.example> SMTPUTF8=yes", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"RET=ALL", "FROM:<a@b.example> RET=ALL", 501, "5.5.4", NULL, false, 0, 0, false, 0, NULL},

	/* ENVID, AUTH: xtext */
	{"ENVID decodes to CR", "FROM:<a@b.example> ENVID=a+0Db", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"ENVID decodes to CRLF", "FROM:<a@b.example> ENVID=x+0D+0ARCPT", 501, "5.5.4", NULL, false,
	 0, 0, false, 0, NULL},
	{"ENVID decodes to LF", "FROM:<a@b.example> ENVID=a+0Ab", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"ENVID decodes to NUL", "FROM:<a@b.example> ENVID=a+00b", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"ENVID decodes to ESC", "FROM:<a@b.example> ENVID=+1B[2J", 501, "5.5.4", NULL, false, 0,
	 0, false, 0, NULL},
	{"ENVID decodes to DEL", "FROM:<a@b.example> ENVID=+7F", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"ENVID decodes to 8-bit", "FROM:<a@b.example> ENVID=+C3+A9", 501, "5.5.4", NULL, false,
	 0, 0, false, 0, NULL},
	{"ENVID raw 8-bit", "FROM:<a@b.example> ENVID=\xc3\xa9", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"ENVID bad hex", "FROM:<a@b.example> ENVID=+ZZ", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"ENVID truncated escape", "FROM:<a@b.example> ENVID=abc+4", 501, "5.5.4", NULL, false, 0,
	 0, false, 0, NULL},
	{"ENVID with =", "FROM:<a@b.example> ENVID=a=b", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"AUTH decodes to CRLF", "FROM:<a@b.example> AUTH=a+0D+0Ab", 501, "5.5.4", NULL, false, 0,
	 0, false, 0, NULL},

	/* unknown and duplicate */
	{"unknown parameter", "FROM:<a@b.example> FOO=bar", 555, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"RCPT parameter on MAIL", "FROM:<a@b.example> NOTIFY=NEVER", 555, "5.5.4", NULL, false, 0,
	 0, false, 0, NULL},
	{"X- parameter", "FROM:<a@b.example> X-CUSTOM", 555, "5.5.4", NULL, false, 0, 0, false, 0,
	 NULL},
	{"SIZE prefix keyword", "FROM:<a@b.example> SIZEX=1", 555, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"duplicate SIZE", "FROM:<a@b.example> SIZE=1 SIZE=2", 555, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"duplicate BODY any case", "FROM:<a@b.example> BODY=7BIT body=8BITMIME", 555, "5.5.4",
	 NULL, false, 0, 0, false, 0, NULL},
	{"duplicate SMTPUTF8", "FROM:<a@b.example> SMTPUTF8 SMTPUTF8", 555, "5.5.4", NULL, false,
	 0, 0, false, 0, NULL},
	{"duplicate ENVID", "FROM:<a@b.example> ENVID=a ENVID=b", 555, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"= in an unknown parameter's value", "FROM:<a@b.example> FOO=a=b", 501, "5.5.4", NULL,
	 false, 0, 0, false, 0, NULL},
	{"bad keyword character", "FROM:<a@b.example> SI_ZE=1", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
	{"keyword starting with hyphen", "FROM:<a@b.example> -SIZE=1", 501, "5.5.4", NULL, false,
	 0, 0, false, 0, NULL},
	{"TAB in value", "FROM:<a@b.example> ENVID=a\tb", 501, "5.5.4", NULL, false, 0, 0, false,
	 0, NULL},
	{"CR in parameters", "FROM:<a@b.example> SIZE=1\r\nRSET", 501, "5.5.4", NULL, false, 0, 0,
	 false, 0, NULL},
};

static void test_mail_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(mail_cases); i++) {
		const char *label = mail_cases[i].label;
		struct smtp_path path;
		struct smtp_mail_params p;
		struct smtp_reply err = {0};
		enum rc rc = smtp_mail_parse(mail_cases[i].arg, &path, &p, &err);
		if (mail_cases[i].code == 0) {
			if (rc != RC_OK)
				fail_msg("case '%s': refused: %d %s %s", label, err.code, err.enh,
					 err.text);
			CHECK(label, strcmp(path.addr, mail_cases[i].addr) == 0);
			CHECK(label, p.has_size == mail_cases[i].has_size);
			CHECK(label, p.size == mail_cases[i].size);
			CHECK(label, p.body == mail_cases[i].body);
			CHECK(label, p.smtputf8 == mail_cases[i].smtputf8);
			CHECK(label, p.ret == mail_cases[i].ret);
			CHECK(label, strcmp(p.envid, mail_cases[i].envid) == 0);
		} else {
			CHECK(label, rc != RC_OK);
			check_err(label, &err, mail_cases[i].code, mail_cases[i].enh);
		}
	}
}

static void test_mail_envid_limit(void **state)
{
	(void)state;
	char arg[400];
	struct smtp_path path;
	struct smtp_mail_params p;
	struct smtp_reply err;
	size_t o = (size_t)snprintf(arg, sizeof arg, "FROM:<a@b.example> ENVID=");

	memset(arg + o, 'e', 100);
	arg[o + 100] = '\0';
	assert_int_equal(smtp_mail_parse(arg, &path, &p, &err), RC_OK);
	assert_int_equal(strlen(p.envid), 100);
	arg[o + 100] = 'e';
	arg[o + 101] = '\0';
	assert_int_not_equal(smtp_mail_parse(arg, &path, &p, &err), RC_OK);
	check_err("ENVID 101", &err, 501, "5.5.4");
	/* 100 decoded characters from 300 encoded ones are fine */
	o = (size_t)snprintf(arg, sizeof arg, "FROM:<a@b.example> ENVID=");
	for (int k = 0; k < 100; k++)
		o += (size_t)snprintf(arg + o, sizeof arg - o, "+2B");
	assert_int_equal(smtp_mail_parse(arg, &path, &p, &err), RC_OK);
	assert_int_equal(strlen(p.envid), 100);
	assert_int_equal(p.envid[99], '+');
}

/* ---- smtp_rcpt_parse ------------------------------------------------------- */

static const struct {
	const char *label;
	const char *arg;
	bool utf8_ok;
	int code;	/* 0: accepted */
	const char *enh;
	const char *addr;
	uint8_t notify;
	const char *orcpt;
} rcpt_cases[] = {
	{"plain", "TO:<c@d.example>", false, 0, NULL, "c@d.example", 0, ""},
	{"lower-case to", "to:<c@D.Example>", false, 0, NULL, "c@d.example", 0, ""},
	{"space after colon", "TO: <c@d.example>", false, 0, NULL, "c@d.example", 0, ""},
	{"Postmaster", "TO:<Postmaster>", false, 0, NULL, "Postmaster", 0, ""},
	{"postmaster lower case", "TO:<postmaster>", false, 0, NULL, "postmaster", 0, ""},
	{"postmaster with domain", "TO:<postmaster@d.example>", false, 0, NULL,
	 "postmaster@d.example", 0, ""},
	{"percent hack", "TO:<u%v.example@d.example>", false, 0, NULL, "u%v.example@d.example", 0,
	 ""},
	{"UTF-8 with SMTPUTF8", "TO:<\xc3\xa9@d.example>", true, 0, NULL, "\xc3\xa9@d.example", 0,
	 ""},
	{"NOTIFY=NEVER", "TO:<c@d.example> NOTIFY=NEVER", false, 0, NULL, "c@d.example",
	 SPOOL_NOTIFY_NEVER, ""},
	{"NOTIFY=SUCCESS,FAILURE", "TO:<c@d.example> NOTIFY=SUCCESS,FAILURE", false, 0, NULL,
	 "c@d.example", SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE, ""},
	{"NOTIFY all three, any case", "TO:<c@d.example> notify=delay,Failure,SUCCESS", false, 0,
	 NULL, "c@d.example", SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY,
	 ""},
	{"NOTIFY repeated item", "TO:<c@d.example> NOTIFY=DELAY,DELAY", false, 0, NULL,
	 "c@d.example", SPOOL_NOTIFY_DELAY, ""},
	{"ORCPT rfc822", "TO:<c@d.example> ORCPT=rfc822;c@d.example", false, 0, NULL,
	 "c@d.example", 0, "rfc822;c@d.example"},
	{"ORCPT type any case", "TO:<c@d.example> ORCPT=RFC822;c+40d.example", false, 0, NULL,
	 "c@d.example", 0, "rfc822;c@d.example"},
	{"ORCPT xtext decoded", "TO:<c@d.example> ORCPT=rfc822;a+2Bb+3Dc@d.example", false, 0,
	 NULL, "c@d.example", 0, "rfc822;a+b=c@d.example"},
	{"ORCPT utf-8 escapes", "TO:<c@d.example> ORCPT=utf-8;\\x{E9}t\\x{E9}@d.example", false, 0,
	 NULL, "c@d.example", 0, "utf-8;\\x{E9}t\\x{E9}@d.example"},
	{"ORCPT utf-8 raw with SMTPUTF8", "TO:<c@d.example> ORCPT=utf-8;\xc3\xa9@d.example", true,
	 0, NULL, "c@d.example", 0, "utf-8;\xc3\xa9@d.example"},
	{"NOTIFY and ORCPT", "TO:<c@d.example> ORCPT=rfc822;x@y NOTIFY=FAILURE", false, 0, NULL,
	 "c@d.example", SPOOL_NOTIFY_FAILURE, "rfc822;x@y"},

	{"null recipient", "TO:<>", false, 501, "5.1.3", NULL, 0, NULL},
	{"no angle brackets", "TO:c@d.example", false, 501, "5.1.3", NULL, 0, NULL},
	{"no TO:", "<c@d.example>", false, 501, "5.5.4", NULL, 0, NULL},
	{"FROM: instead of TO:", "FROM:<c@d.example>", false, 501, "5.5.4", NULL, 0, NULL},
	{"UTF-8 without SMTPUTF8", "TO:<\xc3\xa9@d.example>", false, 553, "5.6.7", NULL, 0, NULL},
	{"NOTIFY=NEVER,SUCCESS", "TO:<c@d.example> NOTIFY=NEVER,SUCCESS", false, 501, "5.5.4",
	 NULL, 0, NULL},
	{"NOTIFY=DELAY,NEVER", "TO:<c@d.example> NOTIFY=DELAY,NEVER", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"NOTIFY unknown value", "TO:<c@d.example> NOTIFY=ALWAYS", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"NOTIFY empty item", "TO:<c@d.example> NOTIFY=SUCCESS,,DELAY", false, 501, "5.5.4", NULL,
	 0, NULL},
	{"NOTIFY trailing comma", "TO:<c@d.example> NOTIFY=SUCCESS,", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"NOTIFY leading comma", "TO:<c@d.example> NOTIFY=,SUCCESS", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"NOTIFY without value", "TO:<c@d.example> NOTIFY", false, 501, "5.5.4", NULL, 0, NULL},
	{"ORCPT decodes to CRLF (header injection)",
	 "TO:<c@d.example> ORCPT=rfc822;a@b+0D+0ABcc:+20x@y", false, 501, "5.5.4", NULL, 0, NULL},
	{"ORCPT decodes to NUL", "TO:<c@d.example> ORCPT=rfc822;a+00@b", false, 501, "5.5.4", NULL,
	 0, NULL},
	{"ORCPT decodes to 8-bit", "TO:<c@d.example> ORCPT=rfc822;+C3+A9@b", false, 501, "5.5.4",
	 NULL, 0, NULL},
	{"ORCPT unknown type", "TO:<c@d.example> ORCPT=x400;c=us", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"ORCPT without type", "TO:<c@d.example> ORCPT=c@d.example", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"ORCPT empty address", "TO:<c@d.example> ORCPT=rfc822;", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"ORCPT bad xtext", "TO:<c@d.example> ORCPT=rfc822;a+4", false, 501, "5.5.4", NULL, 0,
	 NULL},
	{"ORCPT utf-8 raw without SMTPUTF8", "TO:<c@d.example> ORCPT=utf-8;\xc3\xa9@d.example",
	 false, 501, "5.5.4", NULL, 0, NULL},
	{"ORCPT utf-8 escaped CR", "TO:<c@d.example> ORCPT=utf-8;a\\x{0D}@b", false, 501, "5.5.4",
	 NULL, 0, NULL},
	{"ORCPT utf-8 escaped surrogate", "TO:<c@d.example> ORCPT=utf-8;a\\x{D800}@b", false, 501,
	 "5.5.4", NULL, 0, NULL},
	{"ORCPT utf-8 empty escape", "TO:<c@d.example> ORCPT=utf-8;a\\x{}@b", false, 501, "5.5.4",
	 NULL, 0, NULL},
	{"ORCPT utf-8 long escape", "TO:<c@d.example> ORCPT=utf-8;a\\x{1234567}@b", false, 501,
	 "5.5.4", NULL, 0, NULL},
	{"ORCPT utf-8 unterminated escape", "TO:<c@d.example> ORCPT=utf-8;a\\x{41", false, 501,
	 "5.5.4", NULL, 0, NULL},
	{"ORCPT utf-8 plus sign", "TO:<c@d.example> ORCPT=utf-8;a+b@c", false, 501, "5.5.4", NULL,
	 0, NULL},
	{"ORCPT utf-8 lone backslash", "TO:<c@d.example> ORCPT=utf-8;a\\y@c", false, 501, "5.5.4",
	 NULL, 0, NULL},
	{"duplicate NOTIFY", "TO:<c@d.example> NOTIFY=NEVER NOTIFY=NEVER", false, 555, "5.5.4",
	 NULL, 0, NULL},
	{"duplicate ORCPT", "TO:<c@d.example> ORCPT=rfc822;a@b orcpt=rfc822;a@b", false, 555,
	 "5.5.4", NULL, 0, NULL},
	{"MAIL parameter on RCPT", "TO:<c@d.example> SIZE=10", false, 555, "5.5.4", NULL, 0, NULL},
	{"unknown parameter", "TO:<c@d.example> XFORWARD=1", false, 555, "5.5.4", NULL, 0, NULL},
};

static void test_rcpt_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
		const char *label = rcpt_cases[i].label;
		struct smtp_path path;
		struct smtp_rcpt_params p;
		struct smtp_reply err = {0};
		enum rc rc = smtp_rcpt_parse(rcpt_cases[i].arg, rcpt_cases[i].utf8_ok, &path, &p,
					     &err);
		if (rcpt_cases[i].code == 0) {
			if (rc != RC_OK)
				fail_msg("case '%s': refused: %d %s %s", label, err.code, err.enh,
					 err.text);
			CHECK(label, strcmp(path.addr, rcpt_cases[i].addr) == 0);
			CHECK(label, p.notify == rcpt_cases[i].notify);
			CHECK(label, strcmp(p.orcpt, rcpt_cases[i].orcpt) == 0);
		} else {
			CHECK(label, rc != RC_OK);
			check_err(label, &err, rcpt_cases[i].code, rcpt_cases[i].enh);
		}
	}
}

static void test_rcpt_orcpt_limit(void **state)
{
	(void)state;
	char arg[700];
	struct smtp_path path;
	struct smtp_rcpt_params p;
	struct smtp_reply err;
	size_t o = (size_t)snprintf(arg, sizeof arg, "TO:<c@d.example> ORCPT=rfc822;");

	/* "rfc822;" + 493 = 500: fits; one more does not */
	memset(arg + o, 'o', 493);
	arg[o + 493] = '\0';
	assert_int_equal(smtp_rcpt_parse(arg, false, &path, &p, &err), RC_OK);
	assert_int_equal(strlen(p.orcpt), SMTP_ORCPT_MAX);
	arg[o + 493] = 'o';
	arg[o + 494] = '\0';
	assert_int_not_equal(smtp_rcpt_parse(arg, false, &path, &p, &err), RC_OK);
	check_err("ORCPT 501", &err, 501, "5.5.4");
	o = (size_t)snprintf(arg, sizeof arg, "TO:<c@d.example> ORCPT=utf-8;");
	memset(arg + o, 'u', 494);
	arg[o + 494] = '\0';
	assert_int_equal(smtp_rcpt_parse(arg, false, &path, &p, &err), RC_OK);
	arg[o + 494] = 'u';
	arg[o + 495] = '\0';
	assert_int_not_equal(smtp_rcpt_parse(arg, false, &path, &p, &err), RC_OK);
}

/* ---- smtp_xtext_decode, utf8_char ------------------------------------ */

static void test_xtext_decode(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		const char *in;
		size_t outsz;
		enum rc rc;
		const char *out;
	} cases[] = {
		{"empty", "", 8, RC_OK, ""},
		{"plain", "abc", 8, RC_OK, "abc"},
		{"escape", "+41+42", 8, RC_OK, "AB"},
		{"lower-case hex accepted", "+2b", 8, RC_OK, "+"},
		{"space escaped", "a+20b", 8, RC_OK, "a b"},
		{"8-bit escaped passes the decoder", "+FF", 8, RC_OK, "\xff"},
		{"all printable", "!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~", 64, RC_OK,
		 "!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~"},
		{"lone +", "+", 8, RC_INVALID, ""},
		{"one hex digit", "+4", 8, RC_INVALID, ""},
		{"one hex digit then char", "+4x", 8, RC_INVALID, ""},
		{"non-hex", "+G1", 8, RC_INVALID, ""},
		{"= is not xchar", "a=b", 8, RC_INVALID, ""},
		{"space is not xchar", "a b", 8, RC_INVALID, ""},
		{"raw 8-bit", "\x80", 8, RC_INVALID, ""},
		{"raw DEL", "\x7f", 8, RC_INVALID, ""},
		{"decoded CR", "+0D", 8, RC_INVALID, ""},
		{"decoded LF", "a+0A", 8, RC_INVALID, ""},
		{"decoded NUL", "+00", 8, RC_INVALID, ""},
		{"decoded TAB", "+09", 8, RC_INVALID, ""},
		{"decoded US", "+1F", 8, RC_INVALID, ""},
		{"decoded DEL", "+7F", 8, RC_INVALID, ""},
		{"fits exactly", "abcd", 5, RC_OK, "abcd"},
		{"one too long", "abcd", 4, RC_LIMIT, ""},
		{"no room at all", "", 0, RC_LIMIT, NULL},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char out[64];
		memset(out, 'Z', sizeof out);
		enum rc rc = smtp_xtext_decode(cases[i].in, strlen(cases[i].in), out, cases[i].outsz);
		CHECK(cases[i].label, rc == cases[i].rc);
		if (cases[i].out != NULL)
			CHECK(cases[i].label, strcmp(out, cases[i].out) == 0);
		else
			CHECK(cases[i].label, out[0] == 'Z');
	}
}

static void test_utf8_char(void **state)
{
	(void)state;
	static const struct {
		const char *label;
		const char *in;
		size_t len;
		size_t n;
		uint32_t cp;
	} cases[] = {
		{"ASCII", "A", 1, 1, 'A'},
		{"2 octets", "\xc3\xa9", 2, 2, 0xe9},
		{"3 octets", "\xe2\x82\xac", 3, 3, 0x20ac},
		{"4 octets", "\xf0\x9f\x98\x80", 4, 4, 0x1f600},
		{"largest", "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff},
		{"overlong 2", "\xc1\xbf", 2, 0, 0},
		{"overlong 3", "\xe0\x9f\xbf", 3, 0, 0},
		{"overlong 4", "\xf0\x8f\xbf\xbf", 4, 0, 0},
		{"surrogate", "\xed\xbf\xbf", 3, 0, 0},
		{"beyond", "\xf4\x90\x80\x80", 4, 0, 0},
		{"f5", "\xf5\x80\x80\x80", 4, 0, 0},
		{"continuation", "\xbf", 1, 0, 0},
		{"truncated by len", "\xe2\x82\xac", 2, 0, 0},
		{"bad continuation", "\xe2\x28\xac", 3, 0, 0},
		{"empty", "", 0, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint32_t cp = 0;
		size_t n = utf8_char(cases[i].in, cases[i].len, &cp);
		CHECK(cases[i].label, n == cases[i].n);
		if (n > 0)
			CHECK(cases[i].label, cp == cases[i].cp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_parse),	 cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_mail_parse),	 cmocka_unit_test(test_mail_envid_limit),
		cmocka_unit_test(test_rcpt_parse),	 cmocka_unit_test(test_rcpt_orcpt_limit),
		cmocka_unit_test(test_xtext_decode),	 cmocka_unit_test(test_utf8_char),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
