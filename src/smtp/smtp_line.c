/*
 * smtp_line.c - the command line reader: finding the end of one command line in
 * the input and splitting it into verb and argument.
 *
 * Invariants: only CRLF ends a command line. A bare CR or a bare LF is never a
 * line end (SMTP smuggling: a peer that sees a different line end than we do
 * could be made to read a command we took as data, or the reverse); inside a line
 * any control character is refused by smtp_cmd_parse. Nothing here allocates or
 * does I/O; the argument points into the caller's line.
 */
#include <string.h>
#include <strings.h>

#include "smtp/smtp.h"

static const char *const verb_names[] = {
	[SMTP_V_UNKNOWN] = "UNKNOWN", [SMTP_V_HELO] = "HELO",	  [SMTP_V_EHLO] = "EHLO",
	[SMTP_V_MAIL] = "MAIL",	      [SMTP_V_RCPT] = "RCPT",	  [SMTP_V_DATA] = "DATA",
	[SMTP_V_BDAT] = "BDAT",	      [SMTP_V_RSET] = "RSET",	  [SMTP_V_NOOP] = "NOOP",
	[SMTP_V_QUIT] = "QUIT",	      [SMTP_V_VRFY] = "VRFY",	  [SMTP_V_EXPN] = "EXPN",
	[SMTP_V_HELP] = "HELP",	      [SMTP_V_STARTTLS] = "STARTTLS", [SMTP_V_AUTH] = "AUTH",
};
_Static_assert(ARRAY_LEN(verb_names) == SMTP_V__COUNT, "verb_names out of date");

/* smtp_verb_name - the verb as it is spelled on the wire, for logs. */
const char *smtp_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_V__COUNT)
		return "INVALID";
	return verb_names[v];
}

/* smtp_line_scan - find the CRLF that ends the first line of buf[0..len). */
enum rc smtp_line_scan(const char *buf, size_t len, size_t max, size_t *linelen,
		       size_t *consumed)
{
	/* A line (with its CRLF) may use at most max bytes: look for the LF of a
	 * CRLF no further than buf[max - 1]. */
	size_t lim = MIN(len, max);
	size_t from = 1;

	while (from < lim) {
		const char *lf = memchr(buf + from, '\n', lim - from);
		if (lf == NULL)
			break;
		size_t i = (size_t)(lf - buf);
		if (buf[i - 1] == '\r') {
			*linelen = i - 1;
			*consumed = i + 1;
			return RC_OK;
		}
		from = i + 1;	/* a bare LF: content, not a line end */
	}
	if (len < max) {
		*linelen = 0;
		*consumed = 0;
		return RC_AGAIN;
	}
	/* Over-long. The caller discards *consumed bytes and keeps looking for the
	 * CRLF; a CR in the last position is kept so that a CRLF split between this
	 * and the next read is still seen. */
	*linelen = 0;
	*consumed = (max > 1 && buf[max - 1] == '\r') ? max - 1 : max;
	if (*consumed == 0)
		*consumed = 1;
	return RC_LIMIT;
}

static void reply_set(struct smtp_reply *err, int code, const char *enh, const char *text)
{
	err->code = code;
	err->enh = enh;
	err->text = text;
}

/* smtp_cmd_parse - split a command line into verb and argument. */
enum rc smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd,
		       struct smtp_reply *err)
{
	cmd->verb = SMTP_V_UNKNOWN;
	cmd->arg = "";

	/* NUL, CR, LF, TAB and every other C0 control and DEL: a command line is
	 * printable text (RFC 5321 4.1.1); 8-bit octets are left to the argument
	 * parsers (SMTPUTF8 addresses). */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f) {
			reply_set(err, 500, "5.5.2", "Syntax error: control characters in command");
			return RC_PROTO;
		}
	}

	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	if (vlen == 0) {
		reply_set(err, 500, "5.5.2", "Syntax error: command must start with a verb");
		return RC_PROTO;
	}

	for (int v = SMTP_V_UNKNOWN + 1; v < SMTP_V__COUNT; v++) {
		const char *name = verb_names[v];
		if (strlen(name) == vlen && strncasecmp(name, line, vlen) == 0) {
			cmd->verb = (enum smtp_verb)v;
			break;
		}
	}
	if (cmd->verb == SMTP_V_UNKNOWN) {
		reply_set(err, 500, "5.5.1", "Command not recognized");
		return RC_PROTO;
	}

	/* RFC 5321 wants exactly one SP; clients that send more are common and
	 * harmless, so every space between verb and argument is skipped. Trailing
	 * spaces stay in arg: the argument parsers allow them. */
	size_t a = vlen;
	while (a < len && line[a] == ' ')
		a++;
	cmd->arg = line + a;
	return RC_OK;
}

/* smtp_cmd_has_arg - true if the command carries anything but spaces after its verb. */
bool smtp_cmd_has_arg(const struct smtp_cmd *cmd)
{
	for (const char *p = cmd->arg; *p != '\0'; p++)
		if (*p != ' ')
			return true;
	return false;
}
