/*
 * fuzz_dkim_canon.c - the DKIM canonicalisers and the signer's message reader.
 * The input is fed to the body canonicaliser and to the header-field
 * canonicaliser (simple and relaxed) whole, byte by byte and in pseudo-random
 * pieces (sizes drawn from the input's first bytes): all must give the same
 * bytes, and agree with a plain whole-buffer reference of the RFC 6376 3.4
 * rules. The relaxed output is checked for what relaxed promises (no TAB, no
 * WSP run, no WSP before a CRLF, one final CRLF). Then the input is signed as a
 * whole message with a fixed Ed25519 key and time, whole and in pieces: the
 * signature fields must be identical (Ed25519 is deterministic).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/dkim.h"

#define FUZZ_ASSERT(x)                                                         \
	do {                                                                   \
		if (!(x)) {                                                    \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,   \
				__LINE__, #x);                                 \
			abort();                                               \
		}                                                              \
	} while (0)

struct out {
	char *p;
	size_t len, cap;
};

static void out_put(void *arg, const char *data, size_t len)
{
	struct out *o = arg;
	if (o->len + len + 1 > o->cap) {
		o->cap = (o->len + len + 1) * 2;
		o->p = realloc(o->p, o->cap);
		FUZZ_ASSERT(o->p != NULL);
	}
	memcpy(o->p + o->len, data, len);
	o->len += len;
}

static void same(const struct out *a, const struct out *b)
{
	FUZZ_ASSERT(a->len == b->len);
	FUZZ_ASSERT(a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* piece sizes: mode 0 whole, 1 byte by byte, 2 from the seed */
static size_t piece(int mode, uint32_t *seed, size_t left)
{
	if (mode == 0)
		return left;
	if (mode == 1)
		return 1;
	*seed = *seed * 1103515245u + 12345u;
	size_t n = 1 + (*seed >> 16) % 23;
	return n < left ? n : left;
}

static struct out run_body(enum dkim_canon canon, const char *in, size_t len, int mode,
			   uint32_t seed)
{
	struct dkim_body_canon c;
	struct out o = {0};
	dkim_body_canon_init(&c, canon, out_put, &o);
	for (size_t off = 0; off < len;) {
		size_t n = piece(mode, &seed, len - off);
		dkim_body_canon_feed(&c, in + off, n);
		off += n;
	}
	dkim_body_canon_finish(&c);
	return o;
}

static struct out run_hdr(enum dkim_canon canon, const char *in, size_t len, int mode,
			  uint32_t seed, bool crlf)
{
	struct dkim_hdr_canon c;
	struct out o = {0};
	dkim_hdr_canon_init(&c, canon, out_put, &o);
	for (size_t off = 0; off < len;) {
		size_t n = piece(mode, &seed, len - off);
		dkim_hdr_canon_feed(&c, in + off, n);
		off += n;
	}
	dkim_hdr_canon_finish(&c, crlf);
	return o;
}

static bool wsp(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Append line (relaxed: WSP runs to one SP, trailing WSP gone). */
static void ref_line(struct out *o, const char *p, size_t n, bool relaxed)
{
	if (!relaxed) {
		out_put(o, p, n);
		return;
	}
	bool sp = false;
	for (size_t i = 0; i < n; i++) {
		if (wsp(p[i])) {
			sp = true;
			continue;
		}
		if (sp)
			out_put(o, " ", 1);
		sp = false;
		out_put(o, p + i, 1);
	}
}

/* RFC 6376 3.4.3/3.4.4 the obvious way: lines, then trailing empty lines. */
static struct out ref_body(const char *in, size_t len, bool relaxed)
{
	struct out o = {0};
	size_t keep = 0, pos = 0;	/* keep: output length up to the last non-empty line */

	while (pos < len) {
		size_t e = pos;
		while (e < len && !(in[e] == '\r' && e + 1 < len && in[e + 1] == '\n'))
			e++;
		size_t before = o.len;
		ref_line(&o, in + pos, e - pos, relaxed);
		bool empty = o.len == before;
		out_put(&o, "\r\n", 2);	/* a last line without CRLF gets one */
		if (!empty)
			keep = o.len;
		pos = e + 2;
	}
	o.len = keep;
	if (o.len == 0 && !relaxed)
		out_put(&o, "\r\n", 2);
	return o;
}

/* RFC 6376 3.4.2 the obvious way: drop CRLFs, split at the colon, collapse, trim. */
static struct out ref_hdr_relaxed(const char *in, size_t len, bool crlf)
{
	struct out u = {0}, o = {0};
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n') {
			i++;
			continue;
		}
		out_put(&u, in + i, 1);
	}
	const char *colon = u.len ? memchr(u.p, ':', u.len) : NULL;
	size_t nl = colon ? (size_t)(colon - u.p) : u.len;
	size_t start = o.len;
	ref_line(&o, u.p, nl, true);
	for (size_t i = start; i < o.len; i++)
		if (o.p[i] >= 'A' && o.p[i] <= 'Z')
			o.p[i] = (char)(o.p[i] - 'A' + 'a');
	if (o.len > 0 && o.p[0] == ' ')	/* leading WSP of the name */
		memmove(o.p, o.p + 1, --o.len);
	if (colon) {
		out_put(&o, ":", 1);
		size_t vs = o.len;
		ref_line(&o, colon + 1, u.len - nl - 1, true);
		if (o.len > vs && o.p[vs] == ' ')	/* leading WSP of the value */
			memmove(o.p + vs, o.p + vs + 1, --o.len - vs);
	}
	if (crlf)
		out_put(&o, "\r\n", 2);
	free(u.p);
	return o;
}

/* What relaxed output promises. */
static void relaxed_shape(const struct out *o, bool body)
{
	for (size_t i = 0; i < o->len; i++) {
		FUZZ_ASSERT(o->p[i] != '\t');
		if (o->p[i] == ' ' && i + 1 < o->len)
			FUZZ_ASSERT(o->p[i + 1] != ' ');
		if (body && o->p[i] == ' ' && i + 2 < o->len && o->p[i + 1] == '\r')
			FUZZ_ASSERT(o->p[i + 2] != '\n');
	}
	if (body && o->len > 0) {
		FUZZ_ASSERT(o->len >= 2 && o->p[o->len - 2] == '\r' && o->p[o->len - 1] == '\n');
		FUZZ_ASSERT(o->len < 4 || memcmp(o->p + o->len - 4, "\r\n\r\n", 4) != 0);
	}
}

static void check_body(const char *in, size_t len, uint32_t seed)
{
	for (int canon = 0; canon < DKIM_CANON__COUNT; canon++) {
		struct out w = run_body((enum dkim_canon)canon, in, len, 0, 0);
		struct out b = run_body((enum dkim_canon)canon, in, len, 1, 0);
		struct out p = run_body((enum dkim_canon)canon, in, len, 2, seed);
		struct out r = ref_body(in, len, canon == DKIM_CANON_RELAXED);
		same(&w, &b);
		same(&w, &p);
		same(&w, &r);
		if (canon == DKIM_CANON_RELAXED)
			relaxed_shape(&w, true);
		free(w.p), free(b.p), free(p.p), free(r.p);
	}
}

static void check_hdr(const char *in, size_t len, uint32_t seed)
{
	for (int crlf = 0; crlf < 2; crlf++) {
		struct out w = run_hdr(DKIM_CANON_RELAXED, in, len, 0, 0, crlf);
		struct out b = run_hdr(DKIM_CANON_RELAXED, in, len, 1, 0, crlf);
		struct out p = run_hdr(DKIM_CANON_RELAXED, in, len, 2, seed, crlf);
		struct out r = ref_hdr_relaxed(in, len, crlf);
		same(&w, &b);
		same(&w, &p);
		same(&w, &r);
		relaxed_shape(&w, false);
		struct out s = run_hdr(DKIM_CANON_SIMPLE, in, len, 2, seed, crlf);
		FUZZ_ASSERT(s.len == len + (crlf ? 2 : 0));
		FUZZ_ASSERT(len == 0 || memcmp(s.p, in, len) == 0);
		free(w.p), free(b.p), free(p.p), free(r.p), free(s.p);
	}
}

static EVP_PKEY *fuzz_key(void)
{
	static EVP_PKEY *key;
	static const unsigned char seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
	if (key == NULL)
		key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
	FUZZ_ASSERT(key != NULL);
	return key;
}

static enum rc sign_pieces(const char *in, size_t len, int mode, uint32_t seed, char **out)
{
	struct dkim_key k = {DKIM_ALG_ED25519_SHA256, "example.com", "fuzz", NULL, fuzz_key()};
	struct dkim_sign_opts opts = {.time = 1700000000};
	struct dkim_signer *s;
	enum rc rc;

	*out = NULL;
	FUZZ_ASSERT(dkim_signer_new(&k, 1, &opts, &s) == RC_OK);
	for (size_t off = 0; off < len;) {
		size_t n = piece(mode, &seed, len - off);
		FUZZ_ASSERT(dkim_signer_feed(s, in + off, n) == RC_OK);
		off += n;
	}
	rc = dkim_signer_finish(s, out);
	dkim_signer_free(s);
	return rc;
}

static void check_sign(const char *in, size_t len, uint32_t seed)
{
	char *whole, *pieces;
	enum rc a = sign_pieces(in, len, 0, 0, &whole);
	enum rc b = sign_pieces(in, len, 2, seed, &pieces);
	FUZZ_ASSERT(a == b);
	FUZZ_ASSERT(a == RC_OK || a == RC_LIMIT);
	if (a == RC_OK) {
		FUZZ_ASSERT(strcmp(whole, pieces) == 0);
		FUZZ_ASSERT(strncmp(whole, "DKIM-Signature: v=1; a=ed25519-sha256;", 38) == 0);
		size_t n = strlen(whole);
		FUZZ_ASSERT(n >= 2 && whole[n - 2] == '\r' && whole[n - 1] == '\n');
	}
	free(whole);
	free(pieces);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	uint32_t seed = 0x9e3779b9u;
	for (size_t i = 0; i < size && i < 4; i++)
		seed = seed * 31 + data[i];

	check_body(in, size, seed);
	check_hdr(in, size, seed);
	check_sign(in, size, seed);
	return 0;
}
