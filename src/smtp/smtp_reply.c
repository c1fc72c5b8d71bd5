/*
 * smtp_reply.c - writing replies on the wire (RFC 5321 4.2, enhanced status codes
 * RFC 2034 / 3463): "250-2.0.0 first\r\n" ... "250 2.0.0 last\r\n".
 *
 * Invariants: what is written is always well-formed reply lines: every control
 * character in the text (a CR smuggled in through an echoed argument, say) is
 * written as "?", so a reply text can never end a reply line early or start a
 * forged one. A code outside 200..599 is a broken invariant: abort.
 * Allocation failure inside libevent aborts (there is no way to reply without it).
 */
#include <stdio.h>
#include <string.h>

#include "smtp/smtp.h"

static void add(struct evbuffer *out, const void *p, size_t n)
{
	if (n > 0 && evbuffer_add(out, p, n) != 0)
		fatal("smtp_reply_append: evbuffer_add failed");
}

/* One reply line: code, "-" or " ", enh, the text with controls replaced. */
static void add_line(struct evbuffer *out, int code, bool last, const char *enh,
		     const char *text, size_t len)
{
	char head[16];
	int n = snprintf(head, sizeof head, "%03d%c", code, last ? ' ' : '-');

	if (len > 0 && text[len - 1] == '\r')
		len--;	/* "a\r\nb": the CR belongs to the line end */
	if (last && enh == NULL && len == 0 && code != 334)
		n--;	/* "250" alone: no SP before an empty text; but an empty
			 * AUTH challenge is "334 " (RFC 4954 4), which clients expect */
	add(out, head, (size_t)n);
	if (enh != NULL) {
		add(out, enh, strlen(enh));
		if (len > 0)
			add(out, " ", 1);
	}
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x20 || c == 0x7f) {
			add(out, text + run, i - run);
			add(out, "?", 1);
			run = i + 1;
		}
	}
	add(out, text + run, len - run);
	add(out, "\r\n", 2);
}

/* smtp_reply_append - format a (possibly multi-line) reply onto out. */
void smtp_reply_append(struct evbuffer *out, int code, const char *enh, const char *text)
{
	const char *p = text != NULL ? text : "";

	if (code < 200 || code > 599)
		fatal("smtp_reply_append: bad reply code %d", code);
	for (;;) {
		const char *nl = strchr(p, '\n');
		/* A trailing '\n' ends the last line; it does not open an empty one. */
		bool last = nl == NULL || nl[1] == '\0';
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		add_line(out, code, last, enh, p, len);
		if (last)
			break;
		p = nl + 1;
	}
}
