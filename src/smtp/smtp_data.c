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

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* emit - content octets p[0..n): to the checker c, then appended to out (either
 * may be NULL). The octets are still in the reader's input, so the checker reads
 * them where they were just read and they are copied once. */
static void emit(struct smtp_msg_check *c, struct evbuffer *out, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (c != NULL)
		smtp_msg_check_feed(c, p, n);
	if (out != NULL && evbuffer_add(out, p, n) != 0)
		fatal("smtp_data: evbuffer_add failed");
}

/* smtp_data_feed - unstuff in[0..len) into out, stopping after CRLF "." CRLF. */
enum rc smtp_data_feed(struct smtp_data_reader *r, const char *in, size_t len,
		       size_t *consumed, struct evbuffer *out)
{
	return smtp_data_feed_check(r, in, len, consumed, NULL, out);
}

/* smtp_data_feed_check - see smtp.h. */
enum rc smtp_data_feed_check(struct smtp_data_reader *r, const char *in, size_t len,
			     size_t *consumed, struct smtp_msg_check *mc, struct evbuffer *out)
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
				emit(mc, out, in + run, i - run);
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
				emit(mc, out, in + run, i - run);
				r->state = DR_DONE;
				*consumed = i + 1;
				return RC_OK;
			}
			/* "." CR then not LF: content; the held CR goes out now. */
			emit(mc, out, in + run, i - run);
			emit(mc, out, "\r", 1);
			run = i;
			st = DR_CR;
			break;
		default:
			fatal("smtp_data: bad reader state %d", st);
		}
	}
	emit(mc, out, in + run, i - run);
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
 * Block scanning: the checker's work is in the few octets that need a decision
 * (CR, LF, NUL, and 8-bit ones until the first is seen); everything else only
 * counts towards the line length. scan_plain skips such ordinary octets sixteen
 * at a time with SSE2 (part of every x86-64 CPU), else eight at a time in a
 * 64-bit word. has_zero(v) is non-zero iff some byte of v is zero (the classic
 * (v - 0x01..) & ~v & 0x80.. test: exact as to whether, not as to where, which
 * is all that is asked here).
 */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t has_zero(uint64_t v)
{
	return (v - ONES) & ~v & HIGHS;
}

static inline bool is_special(unsigned char b, bool want_8bit)
{
	return b == '\r' || b == '\n' || b == 0 || (want_8bit && b >= 0x80);
}

#ifdef __SSE2__
/* scan_blocks - where scanning p[0..len) sixteen octets at a time stops: at the
 * first special octet, or where fewer than sixteen are left. */
static size_t scan_blocks(const unsigned char *p, size_t len, bool want_8bit)
{
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i zero = _mm_setzero_si128();
	const unsigned high = want_8bit ? 0xffffu : 0;
	size_t i = 0;
	for (; i + 16 <= len; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i sp = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
					  _mm_cmpeq_epi8(v, zero));
		unsigned m = (unsigned)_mm_movemask_epi8(sp) | ((unsigned)_mm_movemask_epi8(v) & high);
		if (m != 0)
			return i + (size_t)__builtin_ctz(m);
	}
	return i;
}
#else
static size_t scan_blocks(const unsigned char *p, size_t len, bool want_8bit)
{
	(void)p, (void)len, (void)want_8bit;
	return 0;
}
#endif

/* scan_plain - the length of the leading run of p[0..len) without CR, LF, NUL
 * and (when want_8bit) octets >= 0x80. */
static size_t scan_plain(const unsigned char *p, size_t len, bool want_8bit)
{
	const uint64_t hi = want_8bit ? HIGHS : 0;
	size_t i = scan_blocks(p, len, want_8bit);
	if (i < len && is_special(p[i], want_8bit))
		return i;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, sizeof w);
		if (has_zero(w) | has_zero(w ^ (ONES * '\n')) | has_zero(w ^ (ONES * '\r')) |
		    (w & hi))
			break;
	}
	while (i < len && !is_special(p[i], want_8bit))
		i++;
	return i;
}

/* check_octet - one octet that needs a decision (or follows a CR); *hdr_end
 * moves when it ends the header section. */
static void check_octet(struct smtp_msg_check *c, int b, size_t i, size_t *hdr_end)
{
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
				*hdr_end = i + 1;
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

/*
 * smtp_msg_check_feed - account for buf[0..len) of message content.
 * line_len counts the octets of the current line including a trailing CR that
 * may turn out to be the CR of its CRLF; prev carries the last octet across
 * calls so that a CRLF split between two pieces is still one CRLF. Runs of
 * ordinary octets are skipped a word at a time (scan_plain); the result is the
 * same as looking at every octet with check_octet.
 */
void smtp_msg_check_feed(struct smtp_msg_check *c, const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t hdr_end = c->in_headers ? len : 0;

	if (len > UINT64_MAX - c->size)
		c->size = UINT64_MAX;
	else
		c->size += len;
	if (c->max_size != 0 && c->size > c->max_size)
		c->too_big = true;

	for (size_t i = 0; i < len; i++) {
		if (c->prev != '\r') {
			size_t n = scan_plain(p + i, len - i, !c->eight_bit);
			if (n > 0) {
				c->line_len += n;
				c->prev = p[i + n - 1];
				i += n;
				if (i == len)
					break;
			}
		}
		/* p[i] needs a decision, or follows a CR. */
		check_octet(c, p[i], i, &hdr_end);
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
