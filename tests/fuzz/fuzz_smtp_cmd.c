/*
 * fuzz_smtp_cmd.c - command lines as the server reads them: smtp_line_scan cuts
 * the input into lines (discarding over-long ones), smtp_cmd_parse splits each,
 * MAIL and RCPT arguments go through their parsers, and every refusal is
 * formatted as a reply. Asserts the invariants a server relies on: a line ends
 * only at CRLF, an accepted command holds no control character, a reply is
 * well-formed wire text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"


/* A reply must be lines of "ddd[- ]...CRLF" with no other CR or LF. */
static void check_reply(const struct smtp_reply *r)
{
	struct evbuffer *out = evbuffer_new();
	FUZZ_ASSERT(r->code >= 400 && r->code <= 599);
	FUZZ_ASSERT(r->text != NULL && r->text[0] != '\0');
	smtp_reply_append(out, r->code, r->enh, r->text);
	size_t n = evbuffer_get_length(out);
	char *s = malloc(n);
	evbuffer_remove(out, s, n);
	FUZZ_ASSERT(n >= 5 && s[n - 2] == '\r' && s[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r')
			FUZZ_ASSERT(i + 1 < n && s[i + 1] == '\n');
		if (s[i] == '\n')
			FUZZ_ASSERT(i > 0 && s[i - 1] == '\r');
	}
	free(s);
	evbuffer_free(out);
}

static void check_path(const struct smtp_path *p, bool utf8_ok)
{
	FUZZ_ASSERT(strlen(p->local) <= SMTP_LOCAL_MAX);
	FUZZ_ASSERT(strlen(p->domain) <= SMTP_DOMAIN_MAX);
	FUZZ_ASSERT(strlen(p->addr) <= SMTP_PATH_MAX);
	FUZZ_ASSERT(p->is_null == (p->addr[0] == '\0'));
	for (const char *c = p->addr; *c; c++) {
		unsigned char u = (unsigned char)*c;
		FUZZ_ASSERT(u >= 0x20 && u != 0x7f);
		FUZZ_ASSERT(utf8_ok || u < 0x80);
	}
	for (const char *c = p->domain; *c; c++)
		FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z') || p->domain[0] == '[');
}

static void one_line(const char *line, size_t len)
{
	struct smtp_cmd cmd;
	struct smtp_reply err = {0};
	char *copy = malloc(len + 1);	/* smtp_cmd_parse wants line[len] == NUL */
	memcpy(copy, line, len);
	copy[len] = '\0';

	if (smtp_cmd_parse(copy, len, &cmd, &err) != RC_OK) {
		FUZZ_ASSERT(err.code == 500);
		check_reply(&err);
		free(copy);
		return;
	}
	FUZZ_ASSERT(cmd.verb > SMTP_V_UNKNOWN && cmd.verb < SMTP_V__COUNT);
	FUZZ_ASSERT(cmd.arg >= copy && cmd.arg <= copy + len);
	for (size_t i = 0; i < len; i++)
		FUZZ_ASSERT((unsigned char)copy[i] >= 0x20 && copy[i] != 0x7f);
	(void)smtp_cmd_has_arg(&cmd);
	(void)smtp_verb_name(cmd.verb);

	struct smtp_path path;
	if (cmd.verb == SMTP_V_MAIL) {
		struct smtp_mail_params mp;
		if (smtp_mail_parse(cmd.arg, &path, &mp, &err) == RC_OK) {
			check_path(&path, mp.smtputf8);
			for (const char *c = mp.envid; *c; c++)
				FUZZ_ASSERT((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
		} else {
			check_reply(&err);
		}
	} else if (cmd.verb == SMTP_V_RCPT) {
		struct smtp_rcpt_params rp;
		for (int utf8 = 0; utf8 < 2; utf8++) {
			if (smtp_rcpt_parse(cmd.arg, utf8, &path, &rp, &err) == RC_OK) {
				check_path(&path, utf8);
				FUZZ_ASSERT(!path.is_null);
				FUZZ_ASSERT(strlen(rp.orcpt) <= SMTP_ORCPT_MAX);
				for (const char *c = rp.orcpt; *c; c++)
					FUZZ_ASSERT((unsigned char)*c >= 0x20 && *c != 0x7f);
			} else {
				check_reply(&err);
			}
		}
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t off = 0;
	bool discarding = false;

	/* Small maxima too, so that over-long lines are exercised. */
	size_t max = (size > 0 && data[0] % 3 == 0) ? 16 + data[0] % 32 : SMTP_CMD_LINE_MAX;
	while (off < size) {
		size_t linelen = 0, consumed = 0;
		enum rc rc = smtp_line_scan(in + off, size - off, max, &linelen, &consumed);
		if (rc == RC_AGAIN) {
			FUZZ_ASSERT(size - off < max);
			break;
		}
		FUZZ_ASSERT(consumed > 0 && consumed <= size - off && consumed <= max);
		if (rc == RC_LIMIT) {
			discarding = true;
			off += consumed;
			continue;
		}
		FUZZ_ASSERT(rc == RC_OK);
		FUZZ_ASSERT(consumed == linelen + 2);
		FUZZ_ASSERT(in[off + linelen] == '\r' && in[off + linelen + 1] == '\n');
		/* the first CRLF: no CRLF inside the line */
		for (size_t i = 0; i + 1 < linelen; i++)
			FUZZ_ASSERT(!(in[off + i] == '\r' && in[off + i + 1] == '\n'));
		if (!discarding)
			one_line(in + off, linelen);
		discarding = false;
		off += consumed;
	}
	return 0;
}
