/*
 * test_mta_dsn.c - delivery status notifications (src/mta/mta_dsn.c).
 *
 * Each case builds a DSN, checks the raw bytes here (CRLF only, lines of at
 * most 998 octets, the original returned verbatim or cut to its headers), then
 * writes it and the expected values (JSON) to a temporary directory and has
 * Python's email package (/usr/bin/python3) parse it and assert the
 * multipart/report structure and every delivery-status field: an independent
 * reader, so a mistake shared by builder and test cannot hide.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "mta/mta.h"

/* ---- the Python checker (no single quotes: it is passed to sh inside them) ---- */

static const char checker[] =
    "import sys, json, email, email.policy\n"
    "raw = open(sys.argv[1], \"rb\").read()\n"
    "exp = json.load(open(sys.argv[2], encoding=\"utf-8\"))\n"
    "def ok(cond, what):\n"
    "    if not cond:\n"
    "        print(\"dsn check failed:\", exp[\"label\"], \"-\", what)\n"
    "        sys.exit(1)\n"
    "def norm(v):\n"
    "    return \" \".join(str(v).split())\n"
    "lines = raw.split(b\"\\r\\n\")\n"
    "ok(lines[-1] == b\"\", \"ends with CRLF\")\n"
    "for i, l in enumerate(lines):\n"
    "    ok(b\"\\r\" not in l and b\"\\n\" not in l, \"bare CR or LF in line %d\" % i)\n"
    "    ok(len(l) <= 998, \"line %d has %d octets\" % (i, len(l)))\n"
    "msg = email.message_from_bytes(raw, policy=email.policy.default)\n"
    "ok(not msg.defects, \"top defects %r\" % msg.defects)\n"
    "ok(msg.get_content_type() == \"multipart/report\", \"type \" + msg.get_content_type())\n"
    "ok(msg.get_param(\"report-type\") == \"delivery-status\", \"report-type\")\n"
    "ok(msg[\"MIME-Version\"] == \"1.0\", \"MIME-Version\")\n"
    "ok(msg[\"Auto-Submitted\"] == \"auto-replied\", \"Auto-Submitted\")\n"
    "fa = msg[\"From\"].addresses[0]\n"
    "ok(fa.display_name == \"Mail Delivery System\", \"From name\")\n"
    "ok(fa.addr_spec == \"MAILER-DAEMON@\" + exp[\"host\"], \"From addr \" + fa.addr_spec)\n"
    "ok(msg[\"To\"].addresses[0].addr_spec == exp[\"sender\"], \"To \" + str(msg[\"To\"]))\n"
    "ok(msg[\"Subject\"] == exp[\"subject\"], \"Subject \" + msg[\"Subject\"])\n"
    "ok(int(msg[\"Date\"].datetime.timestamp()) == exp[\"date\"], \"Date \" + msg[\"Date\"])\n"
    "mid = str(msg[\"Message-ID\"])\n"
    "ok(mid.startswith(\"<\") and mid.endswith(\"@\" + exp[\"host\"] + \">\"), \"Message-ID \" + "
    "mid)\n"
    "ok(msg.get_boundary().encode() not in exp[\"original\"].encode(\"utf-8\", "
    "\"surrogateescape\"),\n"
    "   \"boundary in original\")\n"
    "parts = msg.get_payload()\n"
    "ok(len(parts) == 3, \"3 parts, got %d\" % len(parts))\n"
    "for p in parts:\n"
    "    ok(not p.defects, \"part defects %r\" % p.defects)\n"
    "human = parts[0]\n"
    "ok(human.get_content_type() == \"text/plain\", \"part 1 type\")\n"
    "text = human.get_content()\n"
    "for r in exp[\"rcpts\"]:\n"
    "    ok(norm(r[\"human\"]) in norm(text), \"human text lacks \" + r[\"human\"])\n"
    "ds = parts[1]\n"
    "ok(ds.get_content_type() == \"message/delivery-status\", \"part 2 type\")\n"
    "blocks = ds.get_payload()\n"
    "ok(len(blocks) == 1 + len(exp[\"rcpts\"]), \"%d status groups\" % len(blocks))\n"
    "pm = blocks[0]\n"
    "ok(sorted(pm.keys()) == sorted(exp[\"msg_fields\"]), \"per-message fields %r\" % pm.keys())\n"
    "ok(pm[\"Reporting-MTA\"] == \"dns; \" + exp[\"host\"], \"Reporting-MTA\")\n"
    "if exp[\"envid\"] is not None:\n"
    "    ok(pm[\"Original-Envelope-Id\"] == exp[\"envid\"], \"Original-Envelope-Id\")\n"
    "for b, r in zip(blocks[1:], exp[\"rcpts\"]):\n"
    "    ok(sorted(b.keys()) == sorted(r[\"fields\"].keys()), \"fields %r\" % b.keys())\n"
    "    for k, v in r[\"fields\"].items():\n"
    "        got = norm(b[k])\n"
    "        if v.endswith(\"*\"):\n"
    "            ok(got.startswith(v[:-1]), \"%s: %r\" % (k, got[:200]))\n"
    "        else:\n"
    "            ok(got == v, \"%s: %r want %r\" % (k, got, v))\n"
    "orig = parts[2]\n"
    "ok(orig.get_content_type() == exp[\"part3\"], \"part 3 type \" + orig.get_content_type())\n"
    "ok(orig.get(\"Content-Transfer-Encoding\", \"7bit\") == exp[\"cte\"], \"part 3 CTE\")\n"
    "if exp[\"part3\"] == \"message/rfc822\":\n"
    "    inner = orig.get_payload(0)\n"
    "    ok(inner[\"Subject\"] == exp[\"orig_subject\"], \"inner Subject\")\n"
    "    body = inner.get_payload(decode=True)\n"
    "    ok(exp[\"body_marker\"].encode() in body, \"inner body\")\n"
    "else:\n"
    "    hdrs = orig.get_payload()\n"
    "    ok(\"Subject: \" in hdrs, \"headers returned\")\n"
    "    ok(exp[\"body_marker\"] not in hdrs, \"body not returned\")\n";

/* ---- JSON for the expectations ---- */

static void json_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* ---- cases ---- */

#define HOST       "relay.example.net"
#define SENDER     "alice@example.org"
#define DATE_MS    1767225600000LL /* 2026-01-01T00:00:00Z */
#define ARRIVAL_MS (DATE_MS - 3600000)
#define ATTEMPT_MS (DATE_MS - 60000)

/* Expected per-recipient fields; "*" at the end of a value: prefix match. */
struct want_rcpt {
	const char *human; /* a substring of the human part */
	const char *fields[8][2];
};

struct dsn_case {
	const char *label;
	const char *envid;
	bool headers_only;
	size_t max_return;
	const char *original;
	size_t nrcpt;
	struct mta_dsn_rcpt rcpt[3];
	struct want_rcpt want[3];
	const char *subject;
	const char *part3, *cte;
	const char *orig_subject, *body_marker;
};

#define ORIG_7BIT                                                                                  \
	"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\n"                               \
	"Subject: quarterly report\r\nMessage-ID: <q1@example.org>\r\n\r\n"                        \
	"Hello Bob,\r\nBODY-MARKER here.\r\n--=_relevo_ is not a boundary\r\n"
#define ORIG_8BIT                                                                                  \
	"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\n"                               \
	"Subject: menu\r\nContent-Type: text/plain; charset=utf-8\r\n"                             \
	"Content-Transfer-Encoding: 8bit\r\n\r\n"                                                  \
	"Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"                                             \
	"e\r\nBODY-MARKER\r\n"

#define BOB                                                                                        \
	{                                                                                          \
		.addr = "bob@example.com", .status = "5.1.1", .action = "failed",                  \
		.remote_mta = "mx.example.com",                                                    \
		.diagnostic = "550 5.1.1 <bob@example.com>: no such user",                         \
		.last_attempt = ATTEMPT_MS                                                         \
	}
#define BOB_WANT                                                                                   \
	{                                                                                          \
		"550 5.1.1 <bob@example.com>: no such user",                                       \
		{                                                                                  \
			{"Final-Recipient", "rfc822; bob@example.com"}, {"Action", "failed"},      \
			    {"Status", "5.1.1"}, {"Remote-MTA", "dns; mx.example.com"},            \
			    {"Diagnostic-Code",                                                    \
			     "smtp; 550 5.1.1 <bob@example.com>: no such user"},                   \
			    {"Last-Attempt-Date", "*"},                                            \
		}                                                                                  \
	}

static const char hostile_diag[] = "550 5.7.1 rejected\r\nX-Injected: yes\r\n\r\n"
                                   "--=_relevo_0000\r\n\x01\x1b[31m caf\xc3\xa9";

static const struct dsn_case cases[] = {
    {
        .label = "one failed recipient, full original",
        .original = ORIG_7BIT,
        .nrcpt = 1,
        .rcpt = {BOB},
        .want = {BOB_WANT},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "message/rfc822",
        .cte = "7bit",
        .orig_subject = "quarterly report",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "several recipients, orcpt and envid, headers only",
        .envid = "QQ314159",
        .headers_only = true,
        .original = ORIG_7BIT,
        .nrcpt = 3,
        .rcpt = {BOB,
                 {.addr = "carol@example.net",
                  .orcpt = "rfc822;Carol@Example.NET",
                  .status = "5.2.2",
                  .action = "failed",
                  .remote_mta = "mx2.example.net",
                  .diagnostic = "smtp; 552 5.2.2 mailbox full",
                  .last_attempt = ATTEMPT_MS},
                 {.addr = "dave@nowhere.invalid",
                  .orcpt = "rfc822;dave@nowhere.invalid",
                  .status = "5.1.2",
                  .action = "failed",
                  .diagnostic = "Host or domain name not found"}},
        .want = {BOB_WANT,
                 {"552 5.2.2 mailbox full",
                  {{"Original-Recipient", "rfc822; Carol@Example.NET"},
                   {"Final-Recipient", "rfc822; carol@example.net"},
                   {"Action", "failed"},
                   {"Status", "5.2.2"},
                   {"Remote-MTA", "dns; mx2.example.net"},
                   {"Diagnostic-Code", "smtp; 552 5.2.2 mailbox full"},
                   {"Last-Attempt-Date", "*"}}},
                 {"Reason: Host or domain name not found",
                  {{"Original-Recipient", "rfc822; dave@nowhere.invalid"},
                   {"Final-Recipient", "rfc822; dave@nowhere.invalid"},
                   {"Action", "failed"},
                   {"Status", "5.1.2"},
                   {"Diagnostic-Code", "x-relevo; Host or domain name not found"}}}},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "text/rfc822-headers",
        .cte = "7bit",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "all delayed, no envid, no orcpt",
        .original = ORIG_7BIT,
        .nrcpt = 1,
        .rcpt = {{.addr = "bob@example.com",
                  .status = "4.4.1",
                  .action = "delayed",
                  .remote_mta = "mx.example.com",
                  .diagnostic = "421 4.4.1 try later",
                  .last_attempt = ATTEMPT_MS}},
        .want = {{"421 4.4.1 try later",
                  {{"Final-Recipient", "rfc822; bob@example.com"},
                   {"Action", "delayed"},
                   {"Status", "4.4.1"},
                   {"Remote-MTA", "dns; mx.example.com"},
                   {"Diagnostic-Code", "smtp; 421 4.4.1 try later"},
                   {"Last-Attempt-Date", "*"}}}},
        .subject = "Delayed Mail (still being retried)",
        .part3 = "message/rfc822",
        .cte = "7bit",
        .orig_subject = "quarterly report",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "big original is cut to its headers",
        .max_return = 100, /* set to the real size below minus one */
        .original = NULL,  /* built at run time */
        .nrcpt = 1,
        .rcpt = {BOB},
        .want = {BOB_WANT},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "text/rfc822-headers",
        .cte = "7bit",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "hostile diagnostic, bad status and action, 8-bit address",
        .original = ORIG_7BIT,
        .nrcpt = 2,
        .rcpt = {{.addr = "bob@example.com",
                  .status = "5.1.1\r\nX-Evil: 1",
                  .action = "boom",
                  .remote_mta = "mx.example.com\r\nX-Evil: 2",
                  .diagnostic = NULL /* set */,
                  .last_attempt = ATTEMPT_MS},
                 {.addr = "j\xc3\xb6rg+x@example.de",
                  .status = "5.1.1",
                  .action = "failed",
                  .diagnostic = "550 unknown"}},
        .want = {{"550 5.7.1 rejected X-Injected: yes --=_relevo_0000",
                  {{"Final-Recipient", "rfc822; bob@example.com"},
                   {"Action", "failed"},
                   {"Status", "5.0.0"},
                   {"Remote-MTA", "dns; mx.example.com X-Evil: 2"},
                   {"Diagnostic-Code",
                    "smtp; 550 5.7.1 rejected X-Injected: yes --=_relevo_0000 [31m caf?? AAAA*"},
                   {"Last-Attempt-Date", "*"}}},
                 {"<j\xc3\xb6rg+x@example.de>: failed",
                  {{"Final-Recipient", "utf-8; j\\x{F6}rg\\x{2B}x@example.de"},
                   {"Action", "failed"},
                   {"Status", "5.1.1"},
                   {"Diagnostic-Code", "smtp; 550 unknown"}}}},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "message/rfc822",
        .cte = "7bit",
        .orig_subject = "quarterly report",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "8-bit original",
        .envid = "env-8bit",
        .original = ORIG_8BIT,
        .nrcpt = 1,
        .rcpt = {BOB},
        .want = {BOB_WANT},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "message/rfc822",
        .cte = "8bit",
        .orig_subject = "menu",
        .body_marker = "BODY-MARKER",
    },
    {
        .label = "8-bit original, headers only",
        .headers_only = true,
        .original = ORIG_8BIT,
        .nrcpt = 1,
        .rcpt = {BOB},
        .want = {BOB_WANT},
        .subject = "Undelivered Mail Returned to Sender",
        .part3 = "text/rfc822-headers",
        .cte = "7bit",
        .body_marker = "BODY-MARKER",
    },
};

/* ---- running a case ---- */

static char *big_original(void)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "From: alice@example.org\r\nTo: bob@example.com\r\n"
	                       "Subject: big attachment\r\nX-Long: a\r\n b\r\n c\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		evbuffer_add_printf(b, "BODY-MARKER line %05d of a large message body\r\n", i);
	evbuffer_add(b, "", 1);
	char *s = xstrdup((const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
	return s;
}

static char *long_diag(void)
{
	size_t n = strlen(hostile_diag);
	char *s = xmalloc(n + 5001 + 1);
	memcpy(s, hostile_diag, n);
	s[n] = ' ';
	memset(s + n + 1, 'A', 5000);
	s[n + 5001] = '\0';
	return s;
}

static void write_expect(const char *path, const struct dsn_case *c, const struct mta_dsn *d)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"label\": ");
	json_str(f, c->label);
	fprintf(f, ", \"host\": \"%s\", \"sender\": \"%s\", \"date\": %lld, \"envid\": ", HOST,
	        SENDER, (long long)(DATE_MS / 1000));
	json_str(f, c->envid);
	fprintf(f, ", \"subject\": \"%s\", \"part3\": \"%s\", \"cte\": \"%s\", \"orig_subject\": ",
	        c->subject, c->part3, c->cte);
	json_str(f, c->orig_subject);
	fprintf(f, ", \"body_marker\": \"%s\", \"original\": ", c->body_marker);
	json_str(f, d->original);
	fprintf(f, ", \"msg_fields\": [\"Reporting-MTA\", \"Arrival-Date\"%s], \"rcpts\": [",
	        c->envid ? ", \"Original-Envelope-Id\"" : "");
	for (size_t i = 0; i < c->nrcpt; i++) {
		fprintf(f, "%s{\"human\": ", i ? ", " : "");
		json_str(f, c->want[i].human);
		fprintf(f, ", \"fields\": {");
		for (size_t k = 0; k < 8 && c->want[i].fields[k][0]; k++) {
			fprintf(f, "%s", k ? ", " : "");
			json_str(f, c->want[i].fields[k][0]);
			fprintf(f, ": ");
			json_str(f, c->want[i].fields[k][1]);
		}
		fprintf(f, "}}");
	}
	fprintf(f, "]}\n");
	fclose(f);
}

/* Raw checks that do not need a parser. */
static void check_raw(const struct dsn_case *c, const char *out, size_t len,
                      const struct mta_dsn *d)
{
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\n')
			assert_true(i > 0 && out[i - 1] == '\r');
		if (out[i] == '\r')
			assert_true(i + 1 < len && out[i + 1] == '\n');
	}
	bool full = strcmp(c->part3, "message/rfc822") == 0;
	const char *hit = memmem(out, len, d->original, d->original_len);
	if (full != (hit != NULL))
		fail_msg("case '%s': original %s verbatim", c->label,
		         full ? "not" : "unexpectedly");
	if (!full && memmem(out, len, c->body_marker, strlen(c->body_marker)) != NULL)
		fail_msg("case '%s': body returned with headers only", c->label);
	if (memmem(out, len, "\r\nX-Injected", 12) || memmem(out, len, "\r\nX-Evil", 8))
		fail_msg("case '%s': a field was injected", c->label);
}

static void run_python(const struct dsn_case *c, const char *dir)
{
	assert_null(strchr(checker, '\''));
	char *cmd =
	    xasprintf("/usr/bin/python3 -c '%s' %s/dsn.eml %s/expect.json", checker, dir, dir);
	int st = system(cmd);
	free(cmd);
	if (st != 0)
		fail_msg("case '%s': python email check failed (status %d)", c->label, st);
}

static void run_case(const struct dsn_case *c, const char *dir)
{
	struct mta_dsn_rcpt rcpt[3];
	memcpy(rcpt, c->rcpt, sizeof rcpt);
	char *big = NULL, *diag = NULL;
	struct mta_dsn d = {.reporting_mta = HOST,
	                    .sender = SENDER,
	                    .envid = c->envid,
	                    .arrival = ARRIVAL_MS,
	                    .headers_only = c->headers_only,
	                    .nrcpt = c->nrcpt,
	                    .rcpt = rcpt,
	                    .original = c->original,
	                    .max_return = c->max_return,
	                    .date = DATE_MS};
	if (c->original == NULL) {
		d.original = big = big_original();
		d.max_return = strlen(big) - 1;
	}
	if (c->rcpt[0].diagnostic == NULL)
		rcpt[0].diagnostic = diag = long_diag();
	d.original_len = strlen(d.original);
	struct evbuffer *out = evbuffer_new();
	mta_dsn_build(&d, out);
	size_t len = evbuffer_get_length(out);
	const char *raw = (const char *)evbuffer_pullup(out, -1);
	check_raw(c, raw, len, &d);
	char *path = xasprintf("%s/dsn.eml", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(raw, 1, len, f), len);
	fclose(f);
	free(path);
	path = xasprintf("%s/expect.json", dir);
	write_expect(path, c, &d);
	free(path);
	run_python(c, dir);
	evbuffer_free(out);
	free(big);
	free(diag);
}

static void test_dsn_cases(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/relevo-dsn-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		run_case(&cases[i], tmpl);
	char *p = xasprintf("%s/dsn.eml", tmpl);
	unlink(p);
	free(p);
	p = xasprintf("%s/expect.json", tmpl);
	unlink(p);
	free(p);
	rmdir(tmpl);
}

/* Two DSNs differ in boundary and Message-ID; the clock is used when date is 0. */
static void test_dsn_unique(void **state)
{
	(void)state;
	struct mta_dsn_rcpt r = BOB;
	struct mta_dsn d = {.reporting_mta = HOST,
	                    .sender = SENDER,
	                    .nrcpt = 1,
	                    .rcpt = &r,
	                    .original = ORIG_7BIT,
	                    .original_len = strlen(ORIG_7BIT)};
	char *got[2];
	for (int i = 0; i < 2; i++) {
		struct evbuffer *out = evbuffer_new();
		mta_dsn_build(&d, out);
		evbuffer_add(out, "", 1);
		got[i] = xstrdup((const char *)evbuffer_pullup(out, -1));
		evbuffer_free(out);
	}
	const char *b0 = strstr(got[0], "boundary=\""), *b1 = strstr(got[1], "boundary=\"");
	const char *m0 = strstr(got[0], "Message-ID: <"), *m1 = strstr(got[1], "Message-ID: <");
	assert_true(b0 && b1 && m0 && m1);
	assert_true(strncmp(b0, b1, 40) != 0);
	assert_true(strncmp(m0, m1, 50) != 0);
	assert_non_null(strstr(got[0], "\r\nDate: "));
	assert_null(strstr(got[0], "Arrival-Date")); /* arrival 0: no field */
	free(got[0]);
	free(got[1]);
}

/* A header section bigger than max_return is cut at the start of a field,
 * never inside one (a folded field goes whole or not at all). */
static const struct {
	const char *label;
	size_t max_return;
	const char *want; /* part 3 body, then the delimiter */
} cut_cases[] = {
    {"cut after To", 25, "\r\n\r\nFrom: a@b\r\nTo: c@d\r\n\r\n--"},
    {"folded field not split", 36, "\r\n\r\nFrom: a@b\r\nTo: c@d\r\n\r\n--"},
    {"folded field whole", 39, "\r\n\r\nFrom: a@b\r\nTo: c@d\r\nX-Long: aaa\r\n bbb\r\n\r\n--"},
    {"first field too big", 5, "Content-Transfer-Encoding: 7bit\r\n\r\n\r\n--"},
};

static void test_dsn_headers_cut(void **state)
{
	(void)state;
	static const char orig[] =
	    "From: a@b\r\nTo: c@d\r\nX-Long: aaa\r\n bbb\r\nSubject: x\r\n\r\n"
	    "body\r\n";
	struct mta_dsn_rcpt r = BOB;
	for (size_t i = 0; i < ARRAY_LEN(cut_cases); i++) {
		struct mta_dsn d = {.reporting_mta = HOST,
		                    .sender = SENDER,
		                    .nrcpt = 1,
		                    .rcpt = &r,
		                    .original = orig,
		                    .original_len = strlen(orig),
		                    .max_return = cut_cases[i].max_return,
		                    .date = DATE_MS};
		struct evbuffer *out = evbuffer_new();
		mta_dsn_build(&d, out);
		evbuffer_add(out, "", 1);
		const char *raw = (const char *)evbuffer_pullup(out, -1);
		const char *p3 = strstr(raw, "text/rfc822-headers");
		if (p3 == NULL || strstr(p3, cut_cases[i].want) == NULL || strstr(p3, "Subject: x"))
			fail_msg("case '%s': part 3 is %s", cut_cases[i].label,
			         p3 ? p3 : "missing");
		evbuffer_free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dsn_cases),
	    cmocka_unit_test(test_dsn_unique),
	    cmocka_unit_test(test_dsn_headers_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
