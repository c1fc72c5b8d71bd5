/*
 * smtp_data.c - the DATA reader (dot-unstuffing, end of data) and the message
 * content checker shared by DATA and BDAT.
 *
 * Invariants: only CRLF "." CRLF ends the message (RFC 5321 4.1.1.4), and at the
 * very start of DATA "." CRLF does too (the CRLF before it was the DATA
 * command's). A line starts only after CRLF: after a bare LF or bare CR a "." is
 * content, and "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r" never end the
 * message. Whatever a lenient next hop might take for an end of data is kept as
 * content here and then refused by the content checker as a bare CR or LF (SMTP
 * smuggling). Both parsers are incremental: their result does not depend on how
 * the input is split into pieces.
 *
 * Ownership: the reader owns nothing; the checker owns c->headers from
 * smtp_msg_check_init to smtp_msg_check_fini. No I/O.
 */
#include <string.h>

#include "smtp/smtp.h"

/* DATA reader states: where we are relative to the last CRLF. */
enum {
	DR_BOL = 0,	/* at the start of a line (just after CRLF, or at the start) */
	DR_MID,		/* inside a line */
	DR_CR,		/* inside a line, just after a CR */
	DR_DOT,		/* a "." at the start of a line, not emitted */
	DR_DOT_CR,	/* "." CR at the start of a line, neither emitted */
	DR_DONE,	/* end of data seen */
};

/* smtp_data_init - start reading a message, just after the DATA command's CRLF. */
void smtp_data_init(struct smtp_data_reader *r)
{
	r->state = DR_BOL;
}

static void emit(struct evbuffer *out, const char *p, size_t n)
{
	if (out != NULL && n > 0 && evbuffer_add(out, p, n) != 0)
		fatal("smtp_data: evbuffer_add failed");
}

/* smtp_data_feed - unstuff in[0..len) into out, stopping after CRLF "." CRLF. */
enum rc smtp_data_feed(struct smtp_data_reader *r, const char *in, size_t len,
		       size_t *consumed, struct evbuffer *out)
{
	size_t i = 0, run = 0;	/* in[run..i) is content not yet emitted */
	int st = r->state;

	if (st == DR_DONE) {
		*consumed = 0;
		return RC_OK;
	}
	while (i < len) {
		unsigned char c = (unsigned char)in[i];
		switch (st) {
		case DR_BOL:
			if (c == '.') {
				emit(out, in + run, i - run);
				run = ++i;	/* drop the dot (RFC 5321 4.5.2) */
				st = DR_DOT;
				continue;
			}
			st = c == '\r' ? DR_CR : DR_MID;
			i++;
			break;
		case DR_MID: {
			const char *cr = memchr(in + i, '\r', len - i);
			if (cr == NULL) {
				i = len;
			} else {
				i = (size_t)(cr - in) + 1;
				st = DR_CR;
			}
			break;
		}
		case DR_CR:
			st = c == '\n' ? DR_BOL : c == '\r' ? DR_CR : DR_MID;
			i++;
			break;
		case DR_DOT:
			if (c == '\r') {
				run = ++i;	/* hold the CR: it may be the end */
				st = DR_DOT_CR;
				continue;
			}
			/* The dot was stuffing; c is the line's first content octet. */
			st = DR_MID;
			i++;
			break;
		case DR_DOT_CR:
			if (c == '\n') {
				emit(out, in + run, i - run);
				r->state = DR_DONE;
				*consumed = i + 1;
				return RC_OK;
			}
			/* "." CR then not LF: content; the held CR goes out now. */
			emit(out, in + run, i - run);
			emit(out, "\r", 1);
			run = i;
			st = DR_CR;
			break;
		default:
			fatal("smtp_data: bad reader state %d", st);
		}
	}
	emit(out, in + run, i - run);
	r->state = st;
	*consumed = len;
	return RC_AGAIN;
}

/* smtp_msg_check_init - start checking a message of at most max_size octets
 * (0: no limit). */
void smtp_msg_check_init(struct smtp_msg_check *c, uint64_t max_size)
{
	memset(c, 0, sizeof *c);
	c->max_size = max_size;
	c->in_headers = true;
	c->prev = -1;
	c->headers = evbuffer_new();
	if (c->headers == NULL)
		fatal("smtp_msg_check_init: evbuffer_new failed");
}

/* smtp_msg_check_fini - free the header copy. */
void smtp_msg_check_fini(struct smtp_msg_check *c)
{
	if (c->headers != NULL)
		evbuffer_free(c->headers);
	c->headers = NULL;
}

/* Copy buf[0..n) of the header section into c->headers, up to SMTP_HEADER_MAX. */
static void copy_headers(struct smtp_msg_check *c, const char *buf, size_t n)
{
	size_t have = evbuffer_get_length(c->headers);
	if (c->header_overflow || n == 0)
		return;
	if (n > SMTP_HEADER_MAX - have) {
		n = SMTP_HEADER_MAX - have;
		c->header_overflow = true;
	}
	if (n > 0 && evbuffer_add(c->headers, buf, n) != 0)
		fatal("smtp_msg_check: evbuffer_add failed");
}

/*
 * smtp_msg_check_feed - account for buf[0..len) of message content.
 * line_len counts the octets of the current line including a trailing CR that
 * may turn out to be the CR of its CRLF; prev carries the last octet across
 * calls so that a CRLF split between two pieces is still one CRLF.
 */
void smtp_msg_check_feed(struct smtp_msg_check *c, const char *buf, size_t len)
{
	size_t hdr_end = c->in_headers ? len : 0;

	if (len > UINT64_MAX - c->size)
		c->size = UINT64_MAX;
	else
		c->size += len;
	if (c->max_size != 0 && c->size > c->max_size)
		c->too_big = true;

	for (size_t i = 0; i < len; i++) {
		int b = (unsigned char)buf[i];
		if (c->prev == '\r' && b != '\n')
			c->bare_crlf = true;	/* CR not followed by LF */
		if (b == '\n') {
			if (c->prev != '\r') {
				c->bare_crlf = true;	/* LF not preceded by CR */
				c->line_len++;
			} else {
				if (c->line_len - 1 > 998)
					c->long_line = true;
				if (c->in_headers && c->line_len == 1) {
					/* The empty line: the header section ends here. */
					c->in_headers = false;
					hdr_end = i + 1;
				}
				c->line_len = 0;
			}
		} else {
			c->line_len++;
			if (b == 0)
				c->nul = true;
			else if (b >= 0x80)
				c->eight_bit = true;
		}
		c->prev = b;
	}
	if (hdr_end > 0)
		copy_headers(c, buf, hdr_end);
}

/* smtp_msg_check_done - the verdict at the end of the message. */
enum rc smtp_msg_check_done(struct smtp_msg_check *c, struct smtp_reply *err)
{
	/* The last line, if it lacks its CRLF (BDAT): judged here without changing
	 * the state, so that asking twice gives the same answer. */
	bool trailing_cr = c->prev == '\r';
	size_t last = c->line_len - (trailing_cr ? 1 : 0);

	if (c->too_big) {
		err->code = 552, err->enh = "5.3.4";
		err->text = "Message size exceeds fixed maximum message size";
	} else if (c->bare_crlf || trailing_cr) {
		err->code = 550, err->enh = "5.6.0";
		err->text = "Message contains a bare CR or LF: lines must end with CRLF "
			    "(RFC 5321 2.3.8)";
	} else if (c->nul) {
		err->code = 550, err->enh = "5.6.0";
		err->text = "Message contains a NUL character: only text lines ending with "
			    "CRLF are allowed (RFC 5321 2.3.8)";
	} else if (c->long_line || last > 998) {
		err->code = 550, err->enh = "5.6.0";
		err->text = "Line longer than 998 characters (RFC 5322 2.1.1)";
	} else if (c->header_overflow) {
		err->code = 552, err->enh = "5.3.4";
		err->text = "Header section too large";
	} else {
		return RC_OK;
	}
	return RC_PERMFAIL;
}
