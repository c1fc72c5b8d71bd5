/*
 * dkim_canon.c - DKIM canonicalisation (RFC 6376 3.4) and the body hash.
 *
 * Both canonicalisers are byte machines: whatever they cannot decide yet (a CR
 * that may start a CRLF, a WSP run that may end the line, line ends that may
 * turn out to be trailing empty lines) is held as a small state, never as
 * buffered input, so a piece boundary can fall anywhere and the output is the
 * same. Output is batched through a fixed buffer into the caller's function.
 * Only CRLF ends a line; bare CR and LF are content.
 */
#include "dkim/dkim.h"

#include <openssl/evp.h>
#include <string.h>

static const char *const canon_names[] = {"simple", "relaxed"};
_Static_assert(ARRAY_LEN(canon_names) == DKIM_CANON__COUNT, "canon_names");

/* dkim_canon_name - "simple" or "relaxed". */
const char *dkim_canon_name(enum dkim_canon canon)
{
	return (unsigned)canon < DKIM_CANON__COUNT ? canon_names[canon] : "?";
}

static bool is_wsp(unsigned char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Output batching shared by both machines (same three fields in each). */
static void out_flush(char *buf, size_t *blen, dkim_out_fn out, void *arg)
{
	if (*blen > 0)
		out(arg, buf, *blen);
	*blen = 0;
}

static void body_put(struct dkim_body_canon *c, char ch)
{
	if (c->blen == sizeof c->buf)
		out_flush(c->buf, &c->blen, c->out, c->arg);
	c->buf[c->blen++] = ch;
}

/* A content byte: first the line ends held back, then a pending SP. */
static void body_content(struct dkim_body_canon *c, char ch)
{
	for (; c->crlfs > 0; c->crlfs--) {
		body_put(c, '\r');
		body_put(c, '\n');
	}
	if (c->wsp) {
		body_put(c, ' ');
		c->wsp = false;
	}
	body_put(c, ch);
	c->any = true;
}

/* dkim_body_canon_init - start a body in the given canonicalisation. */
void dkim_body_canon_init(struct dkim_body_canon *c, enum dkim_canon canon, dkim_out_fn out,
			  void *arg)
{
	memset(c, 0, sizeof *c);
	c->canon = canon;
	c->out = out;
	c->arg = arg;
}

/* Bulk copy into the output batch. */
static void body_write(struct dkim_body_canon *c, const char *p, size_t n)
{
	while (n > 0) {
		if (c->blen == sizeof c->buf)
			out_flush(c->buf, &c->blen, c->out, c->arg);
		size_t k = MIN(n, sizeof c->buf - c->blen);
		memcpy(c->buf + c->blen, p, k);
		c->blen += k;
		p += k;
		n -= k;
	}
}

/* The length of the run of bytes that are content as they are: no CR, and
 * (relaxed) no WSP. Most of a body is such runs; they are copied in bulk. */
static size_t plain_run(const unsigned char *p, size_t len, bool relaxed)
{
	size_t n = 0;

	if (!relaxed) {
		const unsigned char *cr = memchr(p, '\r', len);
		return cr ? (size_t)(cr - p) : len;
	}
	while (n < len && p[n] != '\r' && !is_wsp(p[n]))
		n++;
	return n;
}

/* dkim_body_canon_feed - the next piece of the body. */
void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len)
{
	const unsigned char *p = data;
	bool relaxed = c->canon == DKIM_CANON_RELAXED;

	for (size_t i = 0; i < len;) {
		if (c->cr) {
			c->cr = false;
			if (p[i] == '\n') {
				c->wsp = false;	/* WSP at the end of a line is ignored */
				c->crlfs++;
				i++;
				continue;
			}
			body_content(c, '\r');	/* a bare CR is content */
		}
		size_t n = plain_run(p + i, len - i, relaxed);
		if (n > 0) {
			body_content(c, (char)p[i]);	/* held line ends, pending SP */
			body_write(c, (const char *)p + i + 1, n - 1);
			i += n;
			continue;
		}
		if (p[i] == '\r')
			c->cr = true;
		else
			c->wsp = true;	/* relaxed WSP */
		i++;
	}
}

/* dkim_body_canon_finish - emit what was held back; the canonicaliser is then spent. */
void dkim_body_canon_finish(struct dkim_body_canon *c)
{
	if (c->cr)
		body_content(c, '\r');
	c->cr = false;
	c->wsp = false;
	/* One CRLF ends the last non-empty line, whether or not it had one; the
	 * empty lines after it are gone. An empty simple body is one CRLF. */
	if (c->any || c->canon == DKIM_CANON_SIMPLE) {
		body_put(c, '\r');
		body_put(c, '\n');
	}
	c->crlfs = 0;
	out_flush(c->buf, &c->blen, c->out, c->arg);
}

static void hdr_put(struct dkim_hdr_canon *c, char ch)
{
	if (c->blen == sizeof c->buf)
		out_flush(c->buf, &c->blen, c->out, c->arg);
	c->buf[c->blen++] = ch;
}

/* A content byte of a relaxed field: a pending SP only between content bytes
 * of the same part, so WSP before and after the colon and at the end vanishes. */
static void hdr_content(struct dkim_hdr_canon *c, unsigned char ch)
{
	if (c->wsp && c->started)
		hdr_put(c, ' ');
	c->wsp = false;
	if (!c->value && ch >= 'A' && ch <= 'Z')
		ch = (unsigned char)(ch - 'A' + 'a');
	hdr_put(c, (char)ch);
	c->started = true;
}

/* dkim_hdr_canon_init - start one header field in the given canonicalisation. */
void dkim_hdr_canon_init(struct dkim_hdr_canon *c, enum dkim_canon canon, dkim_out_fn out,
			 void *arg)
{
	memset(c, 0, sizeof *c);
	c->canon = canon;
	c->out = out;
	c->arg = arg;
}

static void hdr_relaxed_byte(struct dkim_hdr_canon *c, unsigned char ch)
{
	if (c->cr) {
		c->cr = false;
		if (ch == '\n')
			return;	/* unfold: the CRLF goes, the WSP after it is a WSP run */
		hdr_content(c, '\r');
	}
	if (ch == '\r') {
		c->cr = true;
	} else if (is_wsp(ch)) {
		c->wsp = true;
	} else if (ch == ':' && !c->value) {
		c->wsp = false;
		hdr_put(c, ':');
		c->value = true;
		c->started = false;
	} else {
		hdr_content(c, ch);
	}
}

/* dkim_hdr_canon_feed - the next piece of the field. */
void dkim_hdr_canon_feed(struct dkim_hdr_canon *c, const void *data, size_t len)
{
	const unsigned char *p = data;

	if (c->canon == DKIM_CANON_SIMPLE) {
		for (size_t i = 0; i < len; i++)
			hdr_put(c, (char)p[i]);
		return;
	}
	for (size_t i = 0; i < len; i++)
		hdr_relaxed_byte(c, p[i]);
}

/* dkim_hdr_canon_finish - end the field, with or without its CRLF. */
void dkim_hdr_canon_finish(struct dkim_hdr_canon *c, bool crlf)
{
	if (c->cr)
		hdr_content(c, '\r');
	c->cr = false;
	c->wsp = false;
	if (crlf) {
		hdr_put(c, '\r');
		hdr_put(c, '\n');
	}
	out_flush(c->buf, &c->blen, c->out, c->arg);
}

static void bodyhash_out(void *arg, const char *data, size_t len)
{
	struct dkim_bodyhash *h = arg;
	if (EVP_DigestUpdate(h->md, data, len) != 1)
		h->failed = true;
	h->len += len;
}

/* dkim_bodyhash_init - start a SHA-256 body hash over the given canonicalisation. */
enum rc dkim_bodyhash_init(struct dkim_bodyhash *h, enum dkim_canon canon)
{
	memset(h, 0, sizeof *h);
	h->md = EVP_MD_CTX_new();
	if (h->md == NULL)
		return RC_NOMEM;
	if (EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		h->md = NULL;
		return RC_TEMPFAIL;
	}
	dkim_body_canon_init(&h->canon, canon, bodyhash_out, h);
	return RC_OK;
}

/* dkim_bodyhash_feed - the next piece of the body. */
void dkim_bodyhash_feed(struct dkim_bodyhash *h, const void *data, size_t len)
{
	dkim_body_canon_feed(&h->canon, data, len);
}

/* dkim_bodyhash_final - the hash of everything fed; once. */
enum rc dkim_bodyhash_final(struct dkim_bodyhash *h, unsigned char out[DKIM_HASH_LEN])
{
	unsigned int n = 0;

	dkim_body_canon_finish(&h->canon);
	if (h->failed || EVP_DigestFinal_ex(h->md, out, &n) != 1 || n != DKIM_HASH_LEN)
		return RC_TEMPFAIL;
	return RC_OK;
}

/* dkim_bodyhash_fini - release the hash context. */
void dkim_bodyhash_fini(struct dkim_bodyhash *h)
{
	EVP_MD_CTX_free(h->md);
	h->md = NULL;
}
