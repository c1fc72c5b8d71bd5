/*
 * dkim_sign.c - the DKIM-Signature header field (RFC 6376 3.5, 3.7, 5.4; RFC 8463).
 *
 * A signer keeps the header section of the message it is fed (at most
 * DKIM_HEADER_MAX) and streams the body through one relaxed SHA-256 body hash
 * shared by all keys. At the end, per key, it writes the signature field up to
 * an empty "b=", folded as it will be sent, streams the selected header fields
 * and that field (relaxed, the field without its CRLF) into the key's signing
 * context, and appends the signature, folded. Signing the exact text that is
 * emitted keeps the fold positions out of the question for any verifier.
 *
 * Header selection (RFC 6376 5.4.2): the n-th time a name appears in h= it
 * takes the n-th field of that name counting from the bottom; a name listed
 * more often than it occurs signs the absence of another one (over-signing:
 * From is always listed once more, so a second From: breaks the signature).
 *
 * Security: d=, s= and i= are checked against their grammar before they are
 * written, so no value can smuggle a tag or a line break into the field.
 */
#include "dkim/dkim.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The fields worth protecting, in h= order; From is over-signed. */
static const char *const sign_names[] = {
	"from", "to", "cc", "subject", "date", "message-id", "reply-to", "mime-version",
	"content-type", "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post",
	"in-reply-to", "references",
};

struct signer_key {
	enum dkim_alg alg;
	char *domain;
	char *selector;
	char *identity;	/* NULL: no i= */
	EVP_PKEY *pkey;	/* a reference of our own */
};

struct dkim_signer {
	struct signer_key *keys;	/* owned, nkeys of them */
	size_t nkeys;
	int64_t time;
	char **names;		/* owned, lower-cased; NULL: relevo's list */
	size_t nnames;
	bool query_tag;
	bool in_body;
	bool finished;
	enum rc err;		/* sticky */
	char *hdr;		/* owned: the header section, up to the CRLF of its last field */
	size_t hlen, hcap;
	struct dkim_bodyhash bh;
};

/* A header field inside the signer's copy: without its final CRLF. */
struct field {
	const char *p;
	size_t len;
	size_t namelen;	/* 0 when there is no colon */
};

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = MAX(b->cap * 2, b->len + n + 1);
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* A host name (str_is_hostname) of at most max octets; with need_dot, of two
 * labels or more. */
static bool is_dns_name(const char *s, size_t max, bool need_dot)
{
	return str_is_hostname(s, max) && (!need_dot || strchr(s, '.') != NULL);
}

/* i= is [local-part] "@" domain, the domain d= or below it (RFC 6376 3.5). No
 * byte that would need dkim-quoted-printable is accepted. */
static bool is_identity(const char *id, const char *domain)
{
	const char *at = strrchr(id, '@');
	size_t dl = strlen(domain);

	if (at == NULL || strlen(id) > DKIM_IDENTITY_MAX)
		return false;
	for (const char *p = id; p < at; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ';' || *p == '=' || *p == '@')
			return false;
	const char *d = at + 1;
	size_t len = strlen(d);
	if (!is_dns_name(d, DKIM_DOMAIN_MAX, false) || len < dl)
		return false;
	if (strcasecmp(d + len - dl, domain) != 0)
		return false;
	return len == dl || d[len - dl - 1] == '.';
}

/* A field name (RFC 5322 ftext) of a sane length. */
static bool is_field_name(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > DKIM_FIELD_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ':' || s[i] == ';')
			return false;
	return true;
}

static bool key_matches(const struct dkim_key *k)
{
	enum dkim_alg alg;
	return k->pkey != NULL && dkim_key_alg(k->pkey, &alg) == RC_OK && alg == k->alg;
}

static enum rc key_check(const struct dkim_key *k)
{
	if ((unsigned)k->alg >= DKIM_ALG__COUNT || !key_matches(k))
		return RC_INVALID;
	if (k->domain == NULL || !is_dns_name(k->domain, DKIM_DOMAIN_MAX, true))
		return RC_INVALID;
	if (k->selector == NULL || !is_dns_name(k->selector, DKIM_SELECTOR_MAX, false))
		return RC_INVALID;
	if (k->identity != NULL && !is_identity(k->identity, k->domain))
		return RC_INVALID;
	return RC_OK;
}

static void key_copy(struct signer_key *dst, const struct dkim_key *k)
{
	dst->alg = k->alg;
	dst->domain = xstrdup(k->domain);
	dst->selector = xstrdup(k->selector);
	dst->identity = k->identity ? xstrdup(k->identity) : NULL;
	EVP_PKEY_up_ref(k->pkey);
	dst->pkey = k->pkey;
}

/* The caller's h= list, checked and lower-cased; From must be in it (RFC 6376 5.4). */
static enum rc names_copy(struct dkim_signer *s, const struct dkim_sign_opts *o)
{
	bool from = false;

	if (o->nheaders == 0 || o->nheaders > DKIM_SIGN_FIELDS_MAX)
		return RC_INVALID;
	for (size_t i = 0; i < o->nheaders; i++)
		if (o->headers[i] == NULL || !is_field_name(o->headers[i]))
			return RC_INVALID;
	s->names = xcalloc(o->nheaders, sizeof *s->names);
	s->nnames = o->nheaders;
	for (size_t i = 0; i < o->nheaders; i++) {
		s->names[i] = xstrdup(o->headers[i]);
		str_lower(s->names[i]);
		from = from || strcmp(s->names[i], "from") == 0;
	}
	return from ? RC_OK : RC_INVALID;
}

static enum rc signer_opts(struct dkim_signer *s, const struct dkim_sign_opts *o)
{
	s->time = time_now_ms() / 1000;
	if (o == NULL)
		return RC_OK;
	if (o->time < 0)
		return RC_INVALID;
	if (o->time > 0)
		s->time = o->time;
	s->query_tag = o->query_tag;
	return o->headers ? names_copy(s, o) : RC_OK;
}

/* dkim_signer_new - check and copy the keys; RC_INVALID for a bad key, name or option. */
enum rc dkim_signer_new(const struct dkim_key *keys, size_t nkeys,
			const struct dkim_sign_opts *opts, struct dkim_signer **out)
{
	struct dkim_signer *s;
	enum rc rc;

	*out = NULL;
	if (nkeys == 0 || keys == NULL)
		return RC_INVALID;
	for (size_t i = 0; i < nkeys; i++)
		if ((rc = key_check(&keys[i])) != RC_OK)
			return rc;
	s = xcalloc(1, sizeof *s);
	if ((rc = dkim_bodyhash_init(&s->bh, DKIM_CANON_RELAXED)) != RC_OK) {
		free(s);
		return rc;
	}
	s->keys = xcalloc(nkeys, sizeof *s->keys);
	for (size_t i = 0; i < nkeys; i++)
		key_copy(&s->keys[s->nkeys++], &keys[i]);
	if ((rc = signer_opts(s, opts)) != RC_OK) {
		dkim_signer_free(s);
		return rc;
	}
	*out = s;
	return RC_OK;
}

/* dkim_signer_free - release the signer and its key references. */
void dkim_signer_free(struct dkim_signer *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nkeys; i++) {
		free(s->keys[i].domain);
		free(s->keys[i].selector);
		free(s->keys[i].identity);
		EVP_PKEY_free(s->keys[i].pkey);
	}
	free(s->keys);
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	free(s->names);
	free(s->hdr);
	dkim_bodyhash_fini(&s->bh);
	free(s);
}

/* The empty line that ends the header section: CRLF at the very start, or CRLFCRLF. */
static bool hdr_at_blank_line(const struct dkim_signer *s)
{
	if (s->hlen == 2)
		return memcmp(s->hdr, "\r\n", 2) == 0;
	return s->hlen >= 4 && memcmp(s->hdr + s->hlen - 4, "\r\n\r\n", 4) == 0;
}

/* Copy header bytes until the empty line; *used says how many were header. */
static enum rc hdr_capture(struct dkim_signer *s, const char *p, size_t len, size_t *used)
{
	for (size_t i = 0; i < len; i++) {
		if (s->hlen == DKIM_HEADER_MAX)
			return RC_LIMIT;
		if (s->hlen == s->hcap) {
			s->hcap = s->hcap ? MIN(s->hcap * 2, (size_t)DKIM_HEADER_MAX) : 4096;
			s->hdr = xrealloc(s->hdr, s->hcap);
		}
		s->hdr[s->hlen++] = p[i];
		if (p[i] == '\n' && hdr_at_blank_line(s)) {
			s->hlen -= 2;	/* the empty line is not part of any field */
			s->in_body = true;
			*used = i + 1;
			return RC_OK;
		}
	}
	*used = len;
	return RC_OK;
}

/* dkim_signer_feed - the next piece of the message. */
enum rc dkim_signer_feed(struct dkim_signer *s, const void *data, size_t len)
{
	const char *p = data;
	size_t used = 0;

	if (s->err != RC_OK || s->finished)
		return s->err != RC_OK ? s->err : RC_INVALID;
	if (!s->in_body) {
		s->err = hdr_capture(s, p, len, &used);
		if (s->err != RC_OK)
			return s->err;
	}
	if (used < len)
		dkim_bodyhash_feed(&s->bh, p + used, len - used);
	return RC_OK;
}

/* Split the header section into fields: a line starting with WSP continues the
 * field above it. Returns a heap array of *n fields. */
static struct field *fields_split(const char *h, size_t len, size_t *n)
{
	struct field *f = NULL;
	size_t nf = 0, cap = 0, pos = 0;

	while (pos < len) {
		const char *line = h + pos;
		size_t e = pos;
		while (e < len && !(h[e] == '\r' && e + 1 < len && h[e + 1] == '\n'))
			e++;
		if (nf > 0 && (*line == ' ' || *line == '\t')) {
			f[nf - 1].len = e - (size_t)(f[nf - 1].p - h);
		} else {
			if (nf == cap) {
				cap = cap ? cap * 2 : 32;
				f = xrealloc(f, cap * sizeof *f);
			}
			f[nf++] = (struct field){line, e - pos, 0};
		}
		pos = e + 2;
	}
	for (size_t i = 0; i < nf; i++) {
		const char *colon = memchr(f[i].p, ':', f[i].len);
		size_t nl = colon ? (size_t)(colon - f[i].p) : 0;
		while (nl > 0 && (f[i].p[nl - 1] == ' ' || f[i].p[nl - 1] == '\t'))
			nl--;
		f[i].namelen = nl;
	}
	*n = nf;
	return f;
}

static bool field_is(const struct field *f, const char *name)
{
	size_t len = strlen(name);
	return f->namelen == len && strncasecmp(f->p, name, len) == 0;
}

static size_t fields_count(const struct field *f, size_t nf, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < nf; i++)
		n += field_is(&f[i], name);
	return n;
}

/* relevo's h= list for this message: each present name as often as it occurs,
 * "from" once more. Pointers into sign_names. */
static enum rc names_default(const struct field *f, size_t nf, const char ***out, size_t *n)
{
	const char **names = NULL;
	size_t nn = 0;

	for (size_t i = 0; i < ARRAY_LEN(sign_names); i++) {
		size_t k = fields_count(f, nf, sign_names[i]);
		k += strcmp(sign_names[i], "from") == 0;
		if (nn + k > DKIM_SIGN_FIELDS_MAX) {
			free(names);
			return RC_LIMIT;
		}
		names = xrealloc(names, (nn + k) * sizeof *names);
		while (k-- > 0)
			names[nn++] = sign_names[i];
	}
	*out = names;
	*n = nn;
	return RC_OK;
}

/* The field h= entry j signs (RFC 6376 5.4.2), or NULL for none. */
static const struct field *select_field(const struct field *f, size_t nf, const char **names,
					size_t j)
{
	size_t skip = 0;
	for (size_t i = 0; i < j; i++)
		skip += strcmp(names[i], names[j]) == 0;
	for (size_t i = nf; i-- > 0;)
		if (field_is(&f[i], names[j]) && skip-- == 0)
			return &f[i];
	return NULL;
}

/* Folding: words separated by one SP, or a fold when the line would pass
 * DKIM_FOLD_COLS. A word longer than a line stands alone on its line. */
struct fold {
	struct sbuf *b;
	size_t col;
};

static void fold_word(struct fold *f, const char *w, size_t n, size_t need)
{
	if (f->col > 1 && f->col + 1 + n + need > DKIM_FOLD_COLS) {
		sb_put(f->b, "\r\n ", 3);
		f->col = 1;
	} else {
		sb_put(f->b, " ", 1);
		f->col++;
	}
	sb_put(f->b, w, n);
	f->col += n;
}

static void fold_fmt(struct fold *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fold_fmt(struct fold *f, const char *fmt, ...)
{
	char w[DKIM_IDENTITY_MAX + DKIM_FIELD_NAME_MAX];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(w, sizeof w, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof w)
		fatal("event=dkim_fold_overflow len=%d", n);	/* inputs are checked */
	fold_word(f, w, (size_t)n, 0);
}

/* A base64 value: FWS may go anywhere inside it (RFC 6376 3.5 b=, bh=). */
static void fold_b64(struct fold *f, const char *v, size_t n)
{
	while (n > 0) {
		if (f->col >= DKIM_FOLD_COLS) {
			sb_put(f->b, "\r\n ", 3);
			f->col = 1;
		}
		size_t k = MIN(DKIM_FOLD_COLS - f->col, n);
		sb_put(f->b, v, k);
		f->col += k;
		v += k;
		n -= k;
	}
}

/* What every signature of this message shares. */
struct sign_ctx {
	const struct dkim_signer *s;
	struct field *fields;	/* owned */
	size_t nfields;
	const char **names;
	size_t nnames;
	char bh[4 * ((DKIM_HASH_LEN + 2) / 3) + 1];
};

/* The signature field of key k up to and including its empty "b=". */
static void sig_prefix(const struct sign_ctx *c, const struct signer_key *k, struct sbuf *b)
{
	struct fold f = {b, 0};

	sb_put(b, "DKIM-Signature:", 15);
	f.col = 15;
	fold_fmt(&f, "v=1;");
	fold_fmt(&f, "a=%s;", dkim_alg_name(k->alg));
	fold_fmt(&f, "c=relaxed/relaxed;");
	fold_fmt(&f, "d=%s;", k->domain);
	if (k->identity)
		fold_fmt(&f, "i=%s;", k->identity);
	if (c->s->query_tag)
		fold_fmt(&f, "q=dns/txt;");
	fold_fmt(&f, "s=%s;", k->selector);
	fold_fmt(&f, "t=%lld;", (long long)c->s->time);
	for (size_t j = 0; j < c->nnames; j++)
		fold_fmt(&f, "%s%s%s", j == 0 ? "h=" : "", c->names[j],
			 j + 1 == c->nnames ? ";" : " :");
	fold_fmt(&f, "bh=%s;", c->bh);
	fold_word(&f, "b=", 2, 8);	/* keep the start of the value next to its tag */
}

/* The signing context of one key, fed the canonical header data. RSA:
 * PKCS#1 v1.5 over SHA-256 of the data. Ed25519 (RFC 8463 3): pure Ed25519 over
 * the SHA-256 hash of the data. */
struct hsink {
	EVP_MD_CTX *md;
	bool rsa;
	bool failed;
};

static void hsink_out(void *arg, const char *data, size_t len)
{
	struct hsink *h = arg;
	int ok = h->rsa ? EVP_DigestSignUpdate(h->md, data, len) : EVP_DigestUpdate(h->md, data, len);
	if (ok != 1)
		h->failed = true;
}

static bool hsink_init(struct hsink *h, const struct signer_key *k)
{
	EVP_PKEY_CTX *pctx = NULL;

	h->rsa = k->alg == DKIM_ALG_RSA_SHA256;
	h->failed = false;
	h->md = EVP_MD_CTX_new();
	if (h->md == NULL)
		return false;
	if (!h->rsa)
		return EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1;
	return EVP_DigestSignInit_ex(h->md, &pctx, "SHA256", NULL, NULL, k->pkey, NULL) == 1 &&
	       EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
}

static bool hsink_sign(struct hsink *h, const struct signer_key *k, unsigned char *sig,
		       size_t *siglen)
{
	unsigned char hash[DKIM_HASH_LEN];
	unsigned int hlen = 0;
	bool ok;

	if (h->failed)
		return false;
	if (h->rsa)
		return EVP_DigestSignFinal(h->md, sig, siglen) == 1;
	if (EVP_DigestFinal_ex(h->md, hash, &hlen) != 1 || hlen != sizeof hash)
		return false;
	EVP_MD_CTX *sctx = EVP_MD_CTX_new();
	ok = sctx != NULL &&
	     EVP_DigestSignInit_ex(sctx, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
	     EVP_DigestSign(sctx, sig, siglen, hash, sizeof hash) == 1;
	EVP_MD_CTX_free(sctx);
	return ok;
}

/* Stream the selected fields and the signature field (without CRLF) into h. */
static void hash_headers(const struct sign_ctx *c, const struct sbuf *prefix, struct hsink *h)
{
	struct dkim_hdr_canon hc;

	for (size_t j = 0; j < c->nnames; j++) {
		const struct field *f = select_field(c->fields, c->nfields, c->names, j);
		if (f == NULL)
			continue;
		dkim_hdr_canon_init(&hc, DKIM_CANON_RELAXED, hsink_out, h);
		dkim_hdr_canon_feed(&hc, f->p, f->len);
		dkim_hdr_canon_finish(&hc, true);
	}
	dkim_hdr_canon_init(&hc, DKIM_CANON_RELAXED, hsink_out, h);
	dkim_hdr_canon_feed(&hc, prefix->p, prefix->len);
	dkim_hdr_canon_finish(&hc, false);
}

static void log_crypto_error(const struct signer_key *k)
{
	char err[256] = "unknown";
	unsigned long e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, err, sizeof err);
	ERR_clear_error();
	log_warn("event=dkim_sign_error d=%s s=%s a=%s err=\"%s\"", k->domain, k->selector,
		 dkim_alg_name(k->alg), err);
}

/* Sign with key k: append its folded field (with CRLF) to out. */
static enum rc sign_one(const struct sign_ctx *c, const struct signer_key *k, struct sbuf *out)
{
	struct sbuf field = {0};
	struct hsink h;
	size_t siglen = (size_t)EVP_PKEY_get_size(k->pkey);
	unsigned char *sig = xmalloc(siglen);
	enum rc rc = RC_TEMPFAIL;

	sig_prefix(c, k, &field);
	if (hsink_init(&h, k)) {
		hash_headers(c, &field, &h);
		if (hsink_sign(&h, k, sig, &siglen)) {
			char *b64 = xmalloc(4 * ((siglen + 2) / 3) + 1);
			size_t n = b64_encode(sig, siglen, b64);
			struct fold f = {&field, 0};
			/* the column after "b=": the prefix's last line */
			const char *nl = strrchr(field.p, '\n');
			f.col = field.len - (nl ? (size_t)(nl + 1 - field.p) : 0);
			fold_b64(&f, b64, (size_t)n);
			sb_put(&field, "\r\n", 2);
			sb_put(out, field.p, field.len);
			free(b64);
			rc = RC_OK;
		}
	}
	if (rc != RC_OK)
		log_crypto_error(k);
	EVP_MD_CTX_free(h.md);
	free(sig);
	free(field.p);
	return rc;
}

/* The pieces every signature shares: body hash, fields, h= names. */
static enum rc sign_ctx_init(struct sign_ctx *c, struct dkim_signer *s)
{
	unsigned char bh[DKIM_HASH_LEN];
	enum rc rc;

	memset(c, 0, sizeof *c);
	c->s = s;
	if ((rc = dkim_bodyhash_final(&s->bh, bh)) != RC_OK)
		return rc;
	b64_encode(bh, DKIM_HASH_LEN, c->bh);
	c->fields = fields_split(s->hdr ? s->hdr : "", s->hlen, &c->nfields);
	if (s->names == NULL)
		return names_default(c->fields, c->nfields, &c->names, &c->nnames);
	c->names = xcalloc(s->nnames, sizeof *c->names);
	for (size_t i = 0; i < s->nnames; i++)
		c->names[i] = s->names[i];
	c->nnames = s->nnames;
	return RC_OK;
}

/* dkim_signer_finish - the signature fields for the caller to prepend. */
enum rc dkim_signer_finish(struct dkim_signer *s, char **out)
{
	struct sign_ctx c;
	struct sbuf b = {0};
	enum rc rc;

	*out = NULL;
	if (s->err != RC_OK || s->finished)
		return s->err != RC_OK ? s->err : RC_INVALID;
	s->finished = true;
	rc = sign_ctx_init(&c, s);
	for (size_t i = 0; rc == RC_OK && i < s->nkeys; i++)
		if ((rc = sign_one(&c, &s->keys[i], &b)) == RC_OK)
			metrics_inc(METRICS_DKIM_SIGNATURES);
	free(c.fields);
	free(c.names);
	if (rc != RC_OK) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	return RC_OK;
}

/* dkim_sign - sign a whole message in memory. */
enum rc dkim_sign(const struct dkim_key *keys, size_t nkeys, const char *msg, size_t len,
		  const struct dkim_sign_opts *opts, char **out)
{
	struct dkim_signer *s;
	enum rc rc;

	*out = NULL;
	if ((rc = dkim_signer_new(keys, nkeys, opts, &s)) != RC_OK)
		return rc;
	rc = dkim_signer_feed(s, msg, len);
	if (rc == RC_OK)
		rc = dkim_signer_finish(s, out);
	dkim_signer_free(s);
	return rc;
}
