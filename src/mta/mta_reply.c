/*
 * mta_reply.c - reading SMTP replies on the client side (RFC 5321 4.2, enhanced
 * status codes RFC 2034 / 3463): cutting the server's bytes into lines
 * (mta_reply_line) and assembling lines into replies (mta_reply_feed), plus the
 * one place where a reply code becomes ok / tempfail / permfail.
 *
 * Invariants: everything is bounded by the MTA_REPLY_* constants of mta.h, so a
 * hostile server can make us keep at most MTA_REPLY_LINE_MAX bytes of a line and
 * MTA_REPLY_TEXT_MAX bytes of text, and can make us read at most
 * MTA_REPLY_BYTES_MAX bytes for one reply before the reply is refused. The text
 * kept never holds a control character (each becomes "?"). The parser owns no
 * memory and does no I/O; its results do not depend on how the input is split.
 * Failure model: malformed input is RC_PROTO, never an abort; the parser is then
 * reset and may be used again.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mta/mta.h"

/* mta_reply_init - an empty parser, before the first byte of a connection. */
void mta_reply_init(struct mta_reply_parser *p)
{
	memset(p, 0, sizeof *p);
}

/* mta_reply_is_idle - no part of a reply read yet. */
bool mta_reply_is_idle(const struct mta_reply_parser *p)
{
	return !p->in_progress && p->linelen == 0 && !p->cut && p->nbytes == 0;
}

/* mta_reply_class - the one mapping from reply code to outcome (STYLE.md). */
enum rc mta_reply_class(int code)
{
	if (code >= 200 && code <= 299)
		return RC_OK;
	if (code >= 400 && code <= 499)
		return RC_TEMPFAIL;
	if (code >= 500 && code <= 599)
		return RC_PERMFAIL;
	return RC_PROTO;
}

/* mta_reply_line - cut the server's bytes into lines (LF or CRLF ends one). */
enum rc mta_reply_line(struct mta_reply_parser *p, const char *buf, size_t len, size_t *used,
		       const char **line, size_t *linelen)
{
	const char *lf = len > 0 ? memchr(buf, '\n', len) : NULL;
	size_t n = lf != NULL ? (size_t)(lf - buf) : len;	/* bytes of line content */
	size_t room = sizeof p->line - p->linelen;

	*used = lf != NULL ? n + 1 : len;
	if (*used > MTA_REPLY_BYTES_MAX - MIN(p->nbytes, MTA_REPLY_BYTES_MAX)) {
		/* An endless line, or endless lines: hostile. */
		mta_reply_init(p);
		return RC_PROTO;
	}
	p->nbytes += *used;
	if (n > room)
		p->cut = true;
	memcpy(p->line + p->linelen, buf, MIN(n, room));
	p->linelen += MIN(n, room);
	if (lf == NULL)
		return RC_AGAIN;
	/* The CR of a CRLF; kept (and later shown as "?") when it was cut off. */
	if (!p->cut && p->linelen > 0 && p->line[p->linelen - 1] == '\r')
		p->linelen--;
	*line = p->line;
	*linelen = p->linelen;
	p->linelen = 0;
	p->cut = false;
	return RC_OK;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* enh_len - length of an RFC 3463 code "c.sss.ddd" of class cls at s, followed
 * by SP or the end; 0 if there is none. */
static size_t enh_len(const char *s, size_t len, char cls)
{
	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	size_t i = 2, d = 0;
	while (i < len && is_digit(s[i]) && d < 4)
		i++, d++;
	if (d < 1 || d > 3 || i >= len || s[i] != '.')
		return 0;
	i++;
	d = 0;
	while (i < len && is_digit(s[i]) && d < 4)
		i++, d++;
	if (d < 1 || d > 3 || (i < len && s[i] != ' '))
		return 0;
	return i;
}

/* text_append - add one line's text to the reply, "; " between lines, control
 * characters as "?", cut at MTA_REPLY_TEXT_MAX on a UTF-8 boundary. */
static void text_append(struct mta_reply *r, const char *s, size_t len)
{
	size_t have = strlen(r->text), room = sizeof r->text - 1 - have;

	if (len == 0)
		return;
	if (have > 0) {
		if (room < 3)
			return;
		memcpy(r->text + have, "; ", 2);
		have += 2;
		room -= 2;
	}
	if (len > room) {
		len = room;
		/* Do not leave half a UTF-8 sequence: back up to a lead byte. */
		len = utf8_cut(s, len);
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		r->text[have + i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	r->text[have + len] = '\0';
}

/* feed_reset - ready for the next reply; the line reader's state (and the line
 * just returned by mta_reply_line) is left alone. */
static void feed_reset(struct mta_reply_parser *p)
{
	p->in_progress = false;
	p->nbytes = 0;
}

static enum rc feed_fail(struct mta_reply_parser *p)
{
	feed_reset(p);
	return RC_PROTO;
}

/* mta_reply_feed - one line of a reply; RC_OK when it was the last. */
enum rc mta_reply_feed(struct mta_reply_parser *p, const char *line, size_t len,
		       struct mta_reply *out)
{
	/* Three digits, the first 2..5 (RFC 5321 4.2: no 1yz in SMTP; the second
	 * digit is not checked, some servers use 6..9 there). */
	if (len < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
		return feed_fail(p);
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return feed_fail(p);
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	bool last = len == 3 || line[3] == ' ';

	if (!p->in_progress) {
		memset(&p->cur, 0, sizeof p->cur);
		p->cur.code = code;
		p->in_progress = true;
	} else if (code != p->cur.code) {
		return feed_fail(p);
	}
	if (++p->cur.nlines > MTA_REPLY_LINES_MAX)
		return feed_fail(p);
	const char *t = len > 4 ? line + 4 : line + len;
	size_t tlen = len > 4 ? len - 4 : 0;
	size_t e = enh_len(t, tlen, line[0]);
	if (e > 0) {
		if (p->cur.enh[0] == '\0') {
			memcpy(p->cur.enh, t, e);
			p->cur.enh[e] = '\0';
		}
		t += e;
		tlen -= e;
		while (tlen > 0 && *t == ' ')
			t++, tlen--;
	}
	text_append(&p->cur, t, tlen);
	if (!last)
		return RC_AGAIN;
	*out = p->cur;
	feed_reset(p);
	return RC_OK;
}

/* mta_reply_set - a reply made up locally. */
void mta_reply_set(struct mta_reply *r, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof *r);
	r->code = code;
	r->nlines = 1;
	if (enh != NULL)
		str_lcpy(r->enh, enh, sizeof r->enh);
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
}

/* mta_reply_format - the reply as one line of text. */
void mta_reply_format(const struct mta_reply *r, char *out, size_t outsz)
{
	if (outsz == 0)
		return;
	snprintf(out, outsz, "%03d%s%s%s%s", r->code, r->enh[0] ? " " : "", r->enh,
		 r->text[0] ? " " : "", r->text);
}
