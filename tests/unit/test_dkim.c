/*
 * test_dkim.c - DKIM (src/dkim): canonicalisation against RFC 6376 3.4.5 and edge
 * cases, fed whole, byte by byte, at every split point and in random pieces; body
 * hashes; the RFC 8463 appendix A signatures reproduced byte for byte; signatures
 * checked by an independent verifier (Debian's dkimpy) on awkward messages, and
 * refused by it once tampered with; h= selection and over-signing; folding; key
 * generation, files, loading, DNS records and zone-file strings; refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim/dkim.h"
#include "unit_util.h"

/* ---- helpers ---------------------------------------------------------- */

/* Collected output of a canonicaliser. */
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
		assert_non_null(o->p);
	}
	memcpy(o->p + o->len, data, len);
	o->len += len;
	o->p[o->len] = '\0';
}

/* Deterministic pseudo-random numbers (xorshift), so failures reproduce. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

/* How to cut an input: mode 0 whole, 1 byte by byte, 2 at split (two pieces),
 * 3 random pieces. */
struct cut {
	int mode;
	size_t split;
};

static size_t cut_next(const struct cut *c, size_t off, size_t left)
{
	switch (c->mode) {
	case 1:
		return 1;
	case 2:
		return off < c->split ? c->split - off : left;
	case 3: {
		size_t n = 1 + rnd() % 7;	/* not inside MIN: it evaluates twice */
		return MIN(left, n);
	}
	default:
		return left;
	}
}

static struct out body_canon(enum dkim_canon canon, const char *in, size_t len, struct cut cut)
{
	struct dkim_body_canon c;
	struct out o = {0};
	out_put(&o, "", 0);
	dkim_body_canon_init(&c, canon, out_put, &o);
	for (size_t off = 0; off < len;) {
		size_t n = cut_next(&cut, off, len - off);
		dkim_body_canon_feed(&c, in + off, n);
		off += n;
	}
	dkim_body_canon_finish(&c);
	return o;
}

static struct out hdr_canon(enum dkim_canon canon, const char *in, size_t len, struct cut cut,
			    bool crlf)
{
	struct dkim_hdr_canon c;
	struct out o = {0};
	out_put(&o, "", 0);
	dkim_hdr_canon_init(&c, canon, out_put, &o);
	for (size_t off = 0; off < len;) {
		size_t n = cut_next(&cut, off, len - off);
		dkim_hdr_canon_feed(&c, in + off, n);
		off += n;
	}
	dkim_hdr_canon_finish(&c, crlf);
	return o;
}

static void expect_out(const char *label, const char *what, struct out o, const char *want,
		       size_t wlen)
{
	if (o.len != wlen || memcmp(o.p, want, wlen) != 0)
		fail_msg("case '%s' (%s): got %zu bytes \"%s\", want %zu bytes \"%s\"", label, what,
			 o.len, o.p, wlen, want);
	free(o.p);
}

/* Every way of cutting: whole, bytes, each split point, random pieces. */
static void body_all_cuts(const char *label, enum dkim_canon canon, const char *in, size_t len,
			  const char *want, size_t wlen)
{
	expect_out(label, "whole", body_canon(canon, in, len, (struct cut){0, 0}), want, wlen);
	expect_out(label, "bytes", body_canon(canon, in, len, (struct cut){1, 0}), want, wlen);
	for (size_t s = 0; s <= len; s++)
		expect_out(label, "split", body_canon(canon, in, len, (struct cut){2, s}), want,
			   wlen);
	for (int i = 0; i < 8; i++)
		expect_out(label, "random", body_canon(canon, in, len, (struct cut){3, 0}), want,
			   wlen);
}

static void hdr_all_cuts(const char *label, enum dkim_canon canon, const char *in, size_t len,
			 const char *want, size_t wlen)
{
	expect_out(label, "whole", hdr_canon(canon, in, len, (struct cut){0, 0}, true), want,
		   wlen);
	expect_out(label, "bytes", hdr_canon(canon, in, len, (struct cut){1, 0}, true), want,
		   wlen);
	for (size_t s = 0; s <= len; s++)
		expect_out(label, "split", hdr_canon(canon, in, len, (struct cut){2, s}, true),
			   want, wlen);
	for (int i = 0; i < 8; i++)
		expect_out(label, "random", hdr_canon(canon, in, len, (struct cut){3, 0}, true),
			   want, wlen);
}

static char *b64_of(const unsigned char *p, size_t n)
{
	char *s = malloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

/* Remove every CR, LF, SP and TAB. */
static char *squeeze(const char *s)
{
	char *o = malloc(strlen(s) + 1), *q = o;
	for (; *s; s++)
		if (*s != '\r' && *s != '\n' && *s != ' ' && *s != '\t')
			*q++ = *s;
	*q = '\0';
	return o;
}

/* The value of tag in the first signature field of sig, unfolded (CRLFs gone). */
static char *tag_of(const char *sig, const char *tag)
{
	const char *end = strstr(sig, "\r\nDKIM-Signature:");
	size_t flen = end ? (size_t)(end - sig) : strlen(sig);
	char *f = malloc(flen + 1), *q = f;
	for (size_t i = 0; i < flen; i++)
		if (sig[i] != '\r' && sig[i] != '\n')
			*q++ = sig[i];
	*q = '\0';
	char *v = NULL;
	for (char *p = strchr(f, ':') + 1; p && *p;) {
		char *semi = strchr(p, ';');
		size_t n = semi ? (size_t)(semi - p) : strlen(p);
		while (*p == ' ')
			p++, n--;
		size_t tl = strlen(tag);
		if (strncmp(p, tag, tl) == 0 && p[tl] == '=') {
			v = strndup(p + tl + 1, n - tl - 1);
			break;
		}
		p = semi ? semi + 1 : NULL;
	}
	free(f);
	return v;
}

/* ---- canonicalisation ------------------------------------------------- */

struct body_case {
	const char *label;
	const char *in;
	size_t len;
	const char *simple;
	size_t slen;
	const char *relaxed;
	size_t rlen;
};

static const struct body_case body_cases[] = {
	{"RFC 6376 3.4.5 example", S(" C \r\nD \t E\r\n\r\n\r\n"), S(" C \r\nD \t E\r\n"),
	 S(" C\r\nD E\r\n")},
	{"empty body", S(""), S("\r\n"), S("")},
	{"only empty lines", S("\r\n\r\n\r\n"), S("\r\n"), S("")},
	{"only whitespace lines", S("  \r\n\t\r\n"), S("  \r\n\t\r\n"), S("")},
	{"no final CRLF", S("abc"), S("abc\r\n"), S("abc\r\n")},
	{"no final CRLF, trailing WSP", S("abc \t "), S("abc \t \r\n"), S("abc\r\n")},
	{"trailing whitespace", S("a  \r\nb\t\r\nc \t \r\n"), S("a  \r\nb\t\r\nc \t \r\n"),
	 S("a\r\nb\r\nc\r\n")},
	{"empty lines at end", S("x\r\n\r\n\r\n\r\n"), S("x\r\n"), S("x\r\n")},
	{"empty lines inside kept", S("x\r\n\r\n \r\ny\r\n\r\n"), S("x\r\n\r\n \r\ny\r\n"),
	 S("x\r\n\r\n\r\ny\r\n")},
	{"whitespace-only last lines", S("x\r\n \r\n\t\t\r\n"), S("x\r\n \r\n\t\t\r\n"),
	 S("x\r\n")},
	{"lines starting with dots", S(".\r\n..\r\n.hidden \r\n"), S(".\r\n..\r\n.hidden \r\n"),
	 S(".\r\n..\r\n.hidden\r\n")},
	{"leading whitespace kept as one SP", S("\t\t a\r\n"), S("\t\t a\r\n"), S(" a\r\n")},
	{"8-bit bytes", S("Gr\xc3\xbc\xc3\x9f" "e  \xff\t\xfe \r\n"),
	 S("Gr\xc3\xbc\xc3\x9f" "e  \xff\t\xfe \r\n"), S("Gr\xc3\xbc\xc3\x9f" "e \xff \xfe\r\n")},
	{"NUL is content", S("a\0 b\r\n"), S("a\0 b\r\n"), S("a\0 b\r\n")},
	{"bare LF is content", S("a \nb\n\n"), S("a \nb\n\n\r\n"), S("a \nb\n\n\r\n")},
	{"bare CR is content", S("a \rb\r"), S("a \rb\r\r\n"), S("a \rb\r\r\n")},
	{"CR CR LF", S("a\r\r\n\r\n"), S("a\r\r\n"), S("a\r\r\n")},
	{"WSP then bare CR", S("a \r\n \r"), S("a \r\n \r\r\n"), S("a\r\n \r\r\n")},
};

static void test_body_canon(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(body_cases); i++) {
		const struct body_case *c = &body_cases[i];
		body_all_cuts(c->label, DKIM_CANON_SIMPLE, c->in, c->len, c->simple, c->slen);
		body_all_cuts(c->label, DKIM_CANON_RELAXED, c->in, c->len, c->relaxed, c->rlen);
	}
}

/* A long line: 3000 bytes with WSP runs, the relaxed form computed the obvious way. */
static void test_body_canon_long_line(void **state)
{
	(void)state;
	size_t n = 3000;
	char *in = malloc(n + 3), *want = malloc(n + 3);
	size_t w = 0;
	bool sp = false;
	for (size_t i = 0; i < n; i++) {
		in[i] = (i % 7 == 3 || i % 11 == 0) ? (i % 2 ? ' ' : '\t') : (char)('a' + i % 26);
		if (in[i] == ' ' || in[i] == '\t') {
			sp = true;
		} else {
			if (sp)
				want[w++] = ' ';	/* leading WSP too: one SP */
			sp = false;
			want[w++] = in[i];
		}
	}
	memcpy(in + n, "\r\n", 2);
	memcpy(want + w, "\r\n", 2);
	body_all_cuts("long line, relaxed", DKIM_CANON_RELAXED, in, n + 2, want, w + 2);
	body_all_cuts("long line, simple", DKIM_CANON_SIMPLE, in, n + 2, in, n + 2);
	free(in);
	free(want);
}

struct hdr_case {
	const char *label;
	const char *in;	/* one field without its final CRLF */
	size_t len;
	const char *relaxed;	/* with CRLF */
	size_t rlen;
};

static const struct hdr_case hdr_cases[] = {
	{"RFC 6376 3.4.5 A", S("A: X"), S("a:X\r\n")},
	{"RFC 6376 3.4.5 B", S("B : Y\t\r\n\tZ  "), S("b:Y Z\r\n")},
	{"name case", S("SuBjEcT: Hello World"), S("subject:Hello World\r\n")},
	{"value case kept", S("To: Bob <BOB@Example.NET>"), S("to:Bob <BOB@Example.NET>\r\n")},
	{"folded with tabs", S("Subject:\tone\r\n\ttwo\r\n\t\tthree"), S("subject:one two three\r\n")},
	{"folded at start", S("Subject:\r\n one"), S("subject:one\r\n")},
	{"WSP runs", S("X:  a \t b  \t"), S("x:a b\r\n")},
	{"empty value", S("Subject:"), S("subject:\r\n")},
	{"only WSP value", S("Subject: \t\r\n  "), S("subject:\r\n")},
	{"colon in value", S("Date: Fri, 11 Jul 2003 21:00:37 -0700"),
	 S("date:Fri, 11 Jul 2003 21:00:37 -0700\r\n")},
	{"8-bit value", S("Subject: Gr\xc3\xbc\xc3\x9f" "e  \xff"),
	 S("subject:Gr\xc3\xbc\xc3\x9f" "e \xff\r\n")},
	{"encoded word", S("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n =?UTF-8?Q?_x?="),
	 S("subject:=?UTF-8?B?R3LDvMOfZQ==?= =?UTF-8?Q?_x?=\r\n")},
	{"CRLF without WSP removed", S("X: a\r\nb"), S("x:ab\r\n")},
	{"bare CR kept", S("X: a\rb \r"), S("x:a\rb \r\r\n")},
	{"no colon", S("Garbage Line "), S("garbage line\r\n")},
	{"WSP inside name", S("Sub  Ject : x"), S("sub ject:x\r\n")},
	{"8-bit name not lower-cased", S("\xc3\x84X: y"), S("\xc3\x84x:y\r\n")},
};

static void test_hdr_canon(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(hdr_cases); i++) {
		const struct hdr_case *c = &hdr_cases[i];
		hdr_all_cuts(c->label, DKIM_CANON_RELAXED, c->in, c->len, c->relaxed, c->rlen);
		/* simple: the bytes as they are, plus the CRLF */
		char *want = malloc(c->len + 2);
		memcpy(want, c->in, c->len);
		memcpy(want + c->len, "\r\n", 2);
		hdr_all_cuts(c->label, DKIM_CANON_SIMPLE, c->in, c->len, want, c->len + 2);
		free(want);
		/* and without the final CRLF (how the signature field itself is hashed) */
		struct out o = hdr_canon(DKIM_CANON_RELAXED, c->in, c->len, (struct cut){1, 0}, false);
		expect_out(c->label, "no CRLF", o, c->relaxed, c->rlen - 2);
	}
}

/* The RFC 6376 3.4.5 header section, both ways. */
static void test_hdr_canon_rfc_section(void **state)
{
	(void)state;
	struct out o = {0};
	struct dkim_hdr_canon c;
	static const char *fields[] = {"A: X", "B : Y\t\r\n\tZ  "};
	for (int mode = 0; mode < 2; mode++) {
		o.len = 0;
		for (size_t i = 0; i < 2; i++) {
			dkim_hdr_canon_init(&c, mode ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE, out_put,
					    &o);
			dkim_hdr_canon_feed(&c, fields[i], strlen(fields[i]));
			dkim_hdr_canon_finish(&c, true);
		}
		const char *want = mode ? "a:X\r\nb:Y Z\r\n" : "A: X\r\nB : Y\t\r\n\tZ  \r\n";
		CHECK(mode ? "relaxed" : "simple", o.len == strlen(want) && memcmp(o.p, want, o.len) == 0);
	}
	free(o.p);
}

struct bh_case {
	const char *label;
	enum dkim_canon canon;
	const char *body;
	size_t len;
	const char *bh;
};

static const struct bh_case bh_cases[] = {
	{"empty, relaxed (RFC 6376 3.4.4 note)", DKIM_CANON_RELAXED, S(""),
	 "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
	{"empty, simple: one CRLF", DKIM_CANON_SIMPLE, S(""),
	 "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="},
	{"RFC 8463 A.3 body", DKIM_CANON_RELAXED,
	 S("Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"),
	 "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="},
};

static void test_bodyhash(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bh_cases); i++) {
		const struct bh_case *c = &bh_cases[i];
		for (int bytes = 0; bytes < 2; bytes++) {
			struct dkim_bodyhash h;
			unsigned char hash[DKIM_HASH_LEN];
			assert_int_equal(dkim_bodyhash_init(&h, c->canon), RC_OK);
			for (size_t off = 0; off < c->len; off += bytes ? 1 : c->len)
				dkim_bodyhash_feed(&h, c->body + off, bytes ? 1 : c->len);
			assert_int_equal(dkim_bodyhash_final(&h, hash), RC_OK);
			dkim_bodyhash_fini(&h);
			char *b = b64_of(hash, sizeof hash);
			if (strcmp(b, c->bh) != 0)
				fail_msg("case '%s': bh %s, want %s", c->label, b, c->bh);
			free(b);
		}
	}
}

/* ---- keys and the fixture ----------------------------------------------- */

static char tmpdir[] = "/tmp/relevo-dkim-XXXXXX";
static char verifier[300];
static EVP_PKEY *rsa_key, *ed_key;
static char *rsa_txt, *ed_txt;

static const char verifier_py[] =
	"import sys, dkim\n"
	"msg = open(sys.argv[1], 'rb').read()\n"
	"recs = {}\n"
	"for line in open(sys.argv[2], 'rb'):\n"
	"    name, _, txt = line.rstrip(b'\\n').partition(b' ')\n"
	"    recs[name] = txt\n"
	"def dnsfunc(name, timeout=5):\n"
	"    return recs.get(name)\n"
	"n = sum(1 for h in dkim.DKIM(msg).headers if h[0].lower() == b'dkim-signature')\n"
	"res = []\n"
	"for i in range(n):\n"
	"    try:\n"
	"        ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)\n"
	"    except Exception:\n"
	"        ok = False\n"
	"    res.append('pass' if ok else 'fail')\n"
	"print(' '.join(res) if res else 'none')\n";

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(verifier, sizeof verifier, "%s/verify.py", tmpdir);
	write_file(verifier, verifier_py, sizeof verifier_py - 1);
	if (dkim_key_generate(DKIM_ALG_RSA_SHA256, &rsa_key) != RC_OK ||
	    dkim_key_generate(DKIM_ALG_ED25519_SHA256, &ed_key) != RC_OK)
		return -1;
	if (dkim_key_txt(rsa_key, &rsa_txt) != RC_OK || dkim_key_txt(ed_key, &ed_txt) != RC_OK)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ed_key);
	free(rsa_txt);
	free(ed_txt);
	return unit_rm_tree(tmpdir);
}

/* dkimpy's verdict on each signature of msg: "pass fail ...". recs: "name txt" lines. */
static char *dkimpy(const char *msg, size_t len, const char *recs)
{
	char mpath[300], rpath[300], cmd[1000], line[200] = "";
	snprintf(mpath, sizeof mpath, "%s/msg.eml", tmpdir);
	snprintf(rpath, sizeof rpath, "%s/dns.txt", tmpdir);
	write_file(mpath, msg, len);
	write_file(rpath, recs, strlen(recs));
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s 2>&1", verifier, mpath, rpath);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	if (fgets(line, sizeof line, p) == NULL)
		line[0] = '\0';
	int st = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if (st != 0)
		fail_msg("dkimpy failed (status %d): %s", st, line);
	return strdup(line);
}

static char *our_records(void)
{
	char *r = NULL;
	assert_true(asprintf(&r, "rsa1._domainkey.example.com. %s\ned1._domainkey.example.com. %s\n",
			     rsa_txt, ed_txt) > 0);
	return r;
}

/* Sign msg with both generated keys; returns signature fields + msg. */
static char *sign_both(const char *msg, size_t len, const struct dkim_sign_opts *opts,
		       size_t *outlen)
{
	struct dkim_key keys[] = {
		{DKIM_ALG_RSA_SHA256, "example.com", "rsa1", NULL, rsa_key},
		{DKIM_ALG_ED25519_SHA256, "example.com", "ed1", NULL, ed_key},
	};
	char *sig = NULL;
	assert_int_equal(dkim_sign(keys, 2, msg, len, opts, &sig), RC_OK);
	size_t slen = strlen(sig);
	char *all = malloc(slen + len + 1);
	memcpy(all, sig, slen);
	memcpy(all + slen, msg, len);
	all[slen + len] = '\0';
	*outlen = slen + len;
	free(sig);
	return all;
}

/* ---- signing, verified by dkimpy ------------------------------------------ */

#define HDRS                                                                   \
	"From: Alice Example <alice@example.com>\r\n"                          \
	"To: Bob <bob@example.net>\r\n"                                        \
	"Subject: Hello there\r\n"                                             \
	"Date: Tue, 25 Aug 2026 09:14:01 +0000\r\n"                            \
	"Message-ID: <t1@example.com>\r\n"                                     \
	"MIME-Version: 1.0\r\n"                                                \
	"Content-Type: text/plain; charset=utf-8\r\n"

struct msg_case {
	const char *label;
	const char *msg;
	size_t len;
};

static const struct msg_case msg_cases[] = {
	{"plain", S(HDRS "\r\nHello Bob.\r\n")},
	{"lines starting with dots", S(HDRS "\r\n.\r\n..\r\n.hidden line\r\n. \r\n")},
	{"trailing whitespace", S(HDRS "\r\nspaces   \r\ntabs\t\t\r\nboth \t \r\n  \r\nend\r\n")},
	{"no final newline", S(HDRS "\r\nfirst line\r\nno newline at the end")},
	{"trailing empty lines", S(HDRS "\r\nx\r\n\r\n\r\n\r\n")},
	{"empty body", S(HDRS "\r\n")},
	{"no body at all", S(HDRS)},
	{"long lines",
	 S(HDRS "\r\n"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"bbbbbbbbbbbbbbbbbbbbbbbb  \t  bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
		"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
		"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
		"gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"
		"hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
		"iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"
		"jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj"
		"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\r\n"
		"short\r\n")},
	{"8-bit content",
	 S("From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.com>\r\n"
	   "To: bob@example.net\r\n"
	   "Subject: 8bit\r\n"
	   "MIME-Version: 1.0\r\n"
	   "Content-Type: text/plain; charset=utf-8\r\n"
	   "Content-Transfer-Encoding: 8bit\r\n"
	   "\r\n"
	   "Gr\xc3\xbc\xc3\x9f" "e \xe2\x80\x94 na\xc3\xafve \t caf\xc3\xa9\r\n"
	   "\xff\xfe\x80 raw high bytes\r\n")},
	{"encoded-word subject, folded",
	 S("From: alice@example.com\r\n"
	   "To: bob@example.net\r\n"
	   "Subject: =?UTF-8?B?R3LDvMOfZSDigJQgZGlubmVyPw==?=\r\n"
	   "\t=?UTF-8?Q?_und_noch_mehr_Text_der_lang_ist?=\r\n"
	   "Date: Tue, 25 Aug 2026 09:14:01 +0000\r\n"
	   "\r\n"
	   "body\r\n")},
	{"every signed field, some twice",
	 S("Received: from x by y; Tue, 25 Aug 2026 09:14:00 +0000\r\n"
	   "From: alice@example.com\r\n"
	   "To: bob@example.net,\r\n carol@example.net\r\n"
	   "To: dave@example.net\r\n"
	   "Cc: erin@example.net\r\n"
	   "Cc: frank@example.net\r\n"
	   "Reply-To: replies@example.com\r\n"
	   "Subject: all of them\r\n"
	   "Date: Tue, 25 Aug 2026 09:14:01 +0000\r\n"
	   "Message-ID: <all@example.com>\r\n"
	   "In-Reply-To: <prev@example.net>\r\n"
	   "References: <a@example.net>\r\n <b@example.net> <prev@example.net>\r\n"
	   "List-Unsubscribe: <https://example.com/u/1>, <mailto:u@example.com>\r\n"
	   "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	   "MIME-Version: 1.0\r\n"
	   "Content-Type: text/plain; charset=us-ascii\r\n"
	   "Content-Transfer-Encoding: 7bit\r\n"
	   "X-Campaign: 7\r\n"
	   "\r\n"
	   "body\r\n")},
};

static void test_sign_dkimpy(void **state)
{
	(void)state;
	char *recs = our_records();
	for (size_t i = 0; i < ARRAY_LEN(msg_cases); i++) {
		const struct msg_case *c = &msg_cases[i];
		size_t len;
		char *signed_msg = sign_both(c->msg, c->len, NULL, &len);
		/* the message itself is untouched: it follows the signatures byte for byte */
		CHECK(c->label, memcmp(signed_msg + len - c->len, c->msg, c->len) == 0);
		char *verdict = dkimpy(signed_msg, len, recs);
		if (strcmp(verdict, "pass pass") != 0)
			fail_msg("case '%s': dkimpy says '%s'\n%s", c->label, verdict, signed_msg);
		free(verdict);
		free(signed_msg);
	}
	free(recs);
}

/* Replace the first occurrence of from with to in s (heap copy). */
static char *replace(const char *s, size_t len, const char *from, const char *to, size_t *outlen)
{
	const char *at = memmem(s, len, from, strlen(from));
	assert_non_null(at);
	size_t head = (size_t)(at - s), fl = strlen(from), tl = strlen(to);
	char *o = malloc(len - fl + tl + 1);
	memcpy(o, s, head);
	memcpy(o + head, to, tl);
	memcpy(o + head + tl, at + fl, len - head - fl);
	*outlen = len - fl + tl;
	o[*outlen] = '\0';
	return o;
}

struct tamper_case {
	const char *label;
	const char *from;
	const char *to;
	const char *verdict;
};

static const struct tamper_case tamper_cases[] = {
	{"one body byte changed", "Hello Bob.", "Hello Bob!", "fail fail"},
	{"Subject changed", "Subject: Hello there", "Subject: Hello there!", "fail fail"},
	{"second From: above", "From: Alice", "From: mallory@evil.example\r\nFrom: Alice",
	 "fail fail"},
	{"second From: below", "\r\n\r\nHello", "\r\nFrom: mallory@evil.example\r\n\r\nHello",
	 "fail fail"},
	{"line appended to the body", "Hello Bob.\r\n", "Hello Bob.\r\nP.S.\r\n", "fail fail"},
	/* what relays do must not break it (relaxed/relaxed) */
	{"Received: added on top", "From: Alice",
	 "Received: from relay by mx; Tue, 25 Aug 2026 09:15:00 +0000\r\nFrom: Alice",
	 "pass pass"},
	{"Subject refolded", "Subject: Hello there", "Subject:\r\n\t  Hello \t there ", "pass pass"},
	{"trailing whitespace and empty lines added", "Hello Bob.\r\n", "Hello Bob. \t\r\n\r\n\r\n",
	 "pass pass"},
	{"unsigned header added", "From: Alice", "X-Spam-Score: 0\r\nFrom: Alice", "pass pass"},
};

static void test_sign_tampered(void **state)
{
	(void)state;
	static const char msg[] = HDRS "\r\nHello Bob.\r\n";
	char *recs = our_records();
	size_t len, tlen;
	char *signed_msg = sign_both(msg, sizeof msg - 1, NULL, &len);
	for (size_t i = 0; i < ARRAY_LEN(tamper_cases); i++) {
		const struct tamper_case *c = &tamper_cases[i];
		char *t = replace(signed_msg, len, c->from, c->to, &tlen);
		char *verdict = dkimpy(t, tlen, recs);
		if (strcmp(verdict, c->verdict) != 0)
			fail_msg("case '%s': dkimpy says '%s', want '%s'", c->label, verdict,
				 c->verdict);
		free(verdict);
		free(t);
	}
	free(signed_msg);
	free(recs);
}

/* ---- RFC 8463 appendix A ---------------------------------------------------- */

static const char rfc8463_rsa_pem[] =
	"-----BEGIN RSA PRIVATE KEY-----\n"
	"MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
	"Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
	"KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
	"AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
	"6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
	"zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
	"6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
	"uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
	"WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
	"WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
	"licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
	"o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
	"uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
	"-----END RSA PRIVATE KEY-----\n";

/* RFC 8032 7.1 test 1 secret key, as RFC 8463 A.1 gives it (base64). */
static const unsigned char rfc8463_ed_seed[32] = {
	0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
	0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
	0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};

static const char rfc8463_msg[] = "From: Joe SixPack <joe@football.example.com>\r\n"
				  "To: Suzie Q <suzie@shopping.example.net>\r\n"
				  "Subject: Is dinner ready?\r\n"
				  "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
				  "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
				  "\r\n"
				  "Hi.\r\n"
				  "\r\n"
				  "We lost the game.  Are you hungry yet?\r\n"
				  "\r\n"
				  "Joe.\r\n";

/* The two signature fields of RFC 8463 A.3, as published. */
static const char rfc8463_ed_sig[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	" subject : date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n";
static const char rfc8463_rsa_sig[] =
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
	" date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n";

static const char rfc8463_ed_txt[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char rfc8463_rsa_txt[] =
	"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6"
	"Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6"
	"lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

static EVP_PKEY *rfc8463_rsa_key(void)
{
	char path[300];
	EVP_PKEY *k = NULL;
	enum dkim_alg alg;
	snprintf(path, sizeof path, "%s/rfc8463-rsa.pem", tmpdir);
	unlink(path);
	write_file(path, rfc8463_rsa_pem, sizeof rfc8463_rsa_pem - 1);
	chmod(path, 0600);
	assert_int_equal(dkim_key_load(path, &k, &alg), RC_OK);	/* PKCS#1 PEM loads */
	assert_int_equal(alg, DKIM_ALG_RSA_SHA256);
	return k;
}

static void test_rfc8463(void **state)
{
	(void)state;
	static const char *const h[] = {"from", "to",	   "subject", "date",
					"message-id", "from", "subject", "date"};
	struct dkim_sign_opts opts = {1528637909, h, ARRAY_LEN(h), true};
	EVP_PKEY *ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, rfc8463_ed_seed, 32);
	EVP_PKEY *rsa = rfc8463_rsa_key();
	struct dkim_key keys[] = {
		{DKIM_ALG_ED25519_SHA256, "football.example.com", "brisbane", "@football.example.com", ed},
		{DKIM_ALG_RSA_SHA256, "football.example.com", "test", "@football.example.com", rsa},
	};
	static const char *const published[] = {rfc8463_ed_sig, rfc8463_rsa_sig};
	char *txt;

	assert_int_equal(dkim_key_txt(ed, &txt), RC_OK);
	assert_string_equal(txt, rfc8463_ed_txt);
	free(txt);
	assert_int_equal(dkim_key_txt(rsa, &txt), RC_OK);
	assert_string_equal(txt, rfc8463_rsa_txt);
	free(txt);

	for (size_t i = 0; i < 2; i++) {
		char *sig = NULL;
		assert_int_equal(dkim_sign(&keys[i], 1, S(rfc8463_msg), &opts, &sig), RC_OK);
		char *b = tag_of(sig, "b"), *want_b = tag_of(published[i], "b");
		char *bs = squeeze(b), *wbs = squeeze(want_b);
		if (strcmp(bs, wbs) != 0)
			fail_msg("RFC 8463 %s: b=%s, want %s", keys[i].selector, bs, wbs);
		char *bh = tag_of(sig, "bh");
		assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
		/* the whole field, apart from where it is folded */
		char *all = squeeze(sig), *wall = squeeze(published[i]);
		assert_string_equal(all, wall);
		free(all), free(wall), free(bh), free(b), free(want_b), free(bs), free(wbs);
		free(sig);
	}
	EVP_PKEY_free(ed);
	EVP_PKEY_free(rsa);
}

/* The published example itself verifies with the verifier we rely on. */
static void test_rfc8463_published_verifies(void **state)
{
	(void)state;
	char *recs = NULL, *msg = NULL;
	assert_true(asprintf(&recs, "brisbane._domainkey.football.example.com. %s\n"
				    "test._domainkey.football.example.com. %s\n",
			     rfc8463_ed_txt, rfc8463_rsa_txt) > 0);
	assert_true(asprintf(&msg, "%s%s%s", rfc8463_ed_sig, rfc8463_rsa_sig, rfc8463_msg) > 0);
	char *v = dkimpy(msg, strlen(msg), recs);
	assert_string_equal(v, "pass pass");
	free(v);
	free(msg);
	free(recs);
}

/* ---- the field: h=, tags, folding ------------------------------------------------- */

struct h_case {
	const char *label;
	const char *msg;
	const char *h;
};

static const struct h_case h_cases[] = {
	{"From over-signed once", HDRS "\r\nx\r\n",
	 "from : from : to : subject : date : message-id : mime-version : content-type"},
	{"no From: still signs its absence", "To: b@example.net\r\nSubject: s\r\n\r\nx\r\n",
	 "from : to : subject"},
	{"two From: listed three times", "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n",
	 "from : from : from"},
	{"names any case, WSP before colon",
	 "FROM: a@example.com\r\nsUbJeCt : s\r\nTO:b@example.net\r\n\r\n",
	 "from : from : to : subject"},
	{"repeated fields as often as they occur, others ignored",
	 "Received: x\r\nFrom: a@example.com\r\nCc: c\r\nX-Mailer: m\r\nCc: d\r\n"
	 "References: <r>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	 "List-Unsubscribe: <u>\r\nDKIM-Signature: v=1\r\n\r\n",
	 "from : from : cc : cc : list-unsubscribe : list-unsubscribe-post : references"},
	{"folded field counts once", "From: a@example.com\r\nTo: a,\r\n To: b\r\n\r\n",
	 "from : from : to"},
	{"empty header section", "\r\nbody\r\n", "from"},
};

static void test_h_list(void **state)
{
	(void)state;
	struct dkim_key k = {DKIM_ALG_ED25519_SHA256, "example.com", "ed1", NULL, ed_key};
	for (size_t i = 0; i < ARRAY_LEN(h_cases); i++) {
		const struct h_case *c = &h_cases[i];
		char *sig = NULL;
		assert_int_equal(dkim_sign(&k, 1, c->msg, strlen(c->msg), NULL, &sig), RC_OK);
		char *h = tag_of(sig, "h");
		if (h == NULL || strcmp(h, c->h) != 0)
			fail_msg("case '%s': h=%s, want %s", c->label, h, c->h);
		free(h);
		free(sig);
	}
}

/* Tags in order, t= injected, no l=, every line within 78 columns, CRLF only. */
static void test_field_format(void **state)
{
	(void)state;
	static const char msg[] = HDRS "Cc: c@example.net\r\nReply-To: r@example.com\r\n"
				       "In-Reply-To: <p@example.net>\r\nReferences: <p@example.net>\r\n"
				       "List-Unsubscribe: <https://example.com/u>\r\n"
				       "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
				       "Content-Transfer-Encoding: 7bit\r\n\r\nx\r\n";
	struct dkim_sign_opts opts = {.time = 1700000000};
	struct dkim_key keys[] = {
		{DKIM_ALG_RSA_SHA256, "example.com", "rsa1", NULL, rsa_key},
		{DKIM_ALG_ED25519_SHA256, "example.com", "ed1", NULL, ed_key},
	};
	char *sig = NULL;
	assert_int_equal(dkim_sign(keys, 2, S(msg), &opts, &sig), RC_OK);

	const char *second = strstr(sig + 1, "DKIM-Signature: v=1; a=ed25519-sha256;");
	assert_true(strncmp(sig, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;", 53) == 0);
	assert_non_null(second);
	size_t len = strlen(sig);
	assert_true(len > 2 && sig[len - 2] == '\r' && sig[len - 1] == '\n');
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		if (sig[i] == '\r') {
			assert_true(sig[i + 1] == '\n');
			assert_true(col <= DKIM_FOLD_COLS);
			assert_true(i + 2 == len || sig[i + 2] == ' ' || sig[i + 2] == 'D');
			col = 0;
			i++;
			continue;
		}
		assert_true(sig[i] != '\n');
		col++;
	}
	const char *names[] = {"v", "a", "c", "d", "s", "t", "h", "bh", "b"};
	const char *want[] = {"1", "rsa-sha256", "relaxed/relaxed", "example.com", "rsa1",
			      "1700000000", NULL, NULL, NULL};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		char *v = tag_of(sig, names[i]);
		assert_non_null(v);
		if (want[i])
			assert_string_equal(v, want[i]);
		free(v);
	}
	char *flat = squeeze(sig);
	assert_null(strstr(flat, ";l="));
	assert_null(strstr(flat, ";i="));
	assert_null(strstr(flat, ";q="));
	/* tag order as listed */
	const char *order[] = {"v=1;a=", ";c=", ";d=", ";s=", ";t=", ";h=", ";bh=", ";b="};
	const char *at = flat;
	for (size_t i = 0; i < ARRAY_LEN(order); i++) {
		const char *p = strstr(at, order[i]);
		if (p == NULL)
			fail_msg("tag %s missing or out of order in %s", order[i], flat);
		at = p;
	}
	char *h = tag_of(sig, "h");
	assert_string_equal(h, "from : from : to : cc : subject : date : message-id : reply-to : "
			       "mime-version : content-type : content-transfer-encoding : "
			       "list-unsubscribe : list-unsubscribe-post : in-reply-to : references");
	free(h);
	free(flat);
	free(sig);
}

/* Fed in pieces (including a large body) the signer gives the same fields. */
static void test_signer_pieces(void **state)
{
	(void)state;
	size_t blen = 3 * 1024 * 1024, hl = sizeof HDRS - 1;
	char *msg = malloc(hl + 2 + blen);
	memcpy(msg, HDRS "\r\n", hl + 2);
	for (size_t i = 0; i < blen; i++)
		msg[hl + 2 + i] = (i % 79 == 78) ? '\n' : (i % 79 == 77) ? '\r' : " \tab.\xc3"[i % 6];
	size_t len = hl + 2 + blen;
	struct dkim_sign_opts opts = {.time = 1600000000};
	struct dkim_key keys[] = {
		{DKIM_ALG_RSA_SHA256, "example.com", "rsa1", NULL, rsa_key},
		{DKIM_ALG_ED25519_SHA256, "example.com", "ed1", NULL, ed_key},
	};
	char *whole = NULL;
	assert_int_equal(dkim_sign(keys, 2, msg, len, &opts, &whole), RC_OK);
	for (int round = 0; round < 3; round++) {
		struct dkim_signer *s;
		char *out = NULL;
		assert_int_equal(dkim_signer_new(keys, 2, &opts, &s), RC_OK);
		for (size_t off = 0; off < len;) {
			size_t n = round == 0 ? 1 + rnd() % 5 : 1 + rnd() % 70000;
			if (round == 0 && off > 4096)
				n = len - off;	/* byte-ish through the headers, then the rest */
			n = MIN(n, len - off);
			assert_int_equal(dkim_signer_feed(s, msg + off, n), RC_OK);
			off += n;
		}
		assert_int_equal(dkim_signer_finish(s, &out), RC_OK);
		assert_string_equal(out, whole);
		char *again = NULL;
		assert_int_equal(dkim_signer_finish(s, &again), RC_INVALID);	/* once */
		assert_null(again);
		dkim_signer_free(s);
		free(out);
	}
	char *recs = our_records();
	size_t slen = strlen(whole);
	char *all = malloc(slen + len);
	memcpy(all, whole, slen);
	memcpy(all + slen, msg, len);
	char *v = dkimpy(all, slen + len, recs);
	assert_string_equal(v, "pass pass");
	free(v), free(all), free(recs), free(whole), free(msg);
}

/* ---- refusals ------------------------------------------------------------------ */

struct bad_key_case {
	const char *label;
	int alg;	/* -1: the key's own */
	const char *domain;
	const char *selector;
	const char *identity;
	bool rsa;
	enum rc rc;
};

static const struct bad_key_case bad_key_cases[] = {
	{"good rsa", -1, "example.com", "s1", NULL, true, RC_OK},
	{"good ed25519 with i=", -1, "example.com", "s1", "user@example.com", false, RC_OK},
	{"i= in a subdomain", -1, "example.com", "s1", "@mail.example.com", false, RC_OK},
	{"multi-label selector", -1, "example.com", "2026.jan", NULL, false, RC_OK},
	{"alg does not match the key", DKIM_ALG_ED25519_SHA256, "example.com", "s1", NULL, true,
	 RC_INVALID},
	{"ed25519 key as rsa", DKIM_ALG_RSA_SHA256, "example.com", "s1", NULL, false, RC_INVALID},
	{"domain with a space", -1, "exa mple.com", "s1", NULL, true, RC_INVALID},
	{"domain without a dot", -1, "example", "s1", NULL, true, RC_INVALID},
	{"domain with a tag", -1, "example.com;x=1", "s1", NULL, true, RC_INVALID},
	{"domain with CRLF", -1, "example.com\r\nBcc: x", "s1", NULL, true, RC_INVALID},
	{"domain label starts with '-'", -1, "-x.example.com", "s1", NULL, true, RC_INVALID},
	{"empty domain", -1, "", "s1", NULL, true, RC_INVALID},
	{"non-ASCII domain", -1, "b\xc3\xbc" "cher.example", "s1", NULL, true, RC_INVALID},
	{"selector adding a tag", -1, "example.com", "s;x=1", NULL, true, RC_INVALID},
	{"selector with empty label", -1, "example.com", "a..b", NULL, true, RC_INVALID},
	{"i= outside d=", -1, "example.com", "s1", "@evil.test", false, RC_INVALID},
	{"i= only a suffix of d=", -1, "example.com", "s1", "@notexample.com", false, RC_INVALID},
	{"i= with ';'", -1, "example.com", "s1", "a;b@example.com", false, RC_INVALID},
	{"i= without '@'", -1, "example.com", "s1", "example.com", false, RC_INVALID},
};

static void test_bad_keys(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad_key_cases); i++) {
		const struct bad_key_case *c = &bad_key_cases[i];
		struct dkim_key k = {c->rsa ? DKIM_ALG_RSA_SHA256 : DKIM_ALG_ED25519_SHA256,
				     c->domain, c->selector, c->identity, c->rsa ? rsa_key : ed_key};
		if (c->alg >= 0)
			k.alg = (enum dkim_alg)c->alg;
		struct dkim_signer *s = NULL;
		enum rc rc = dkim_signer_new(&k, 1, NULL, &s);
		if (rc != c->rc)
			fail_msg("case '%s': %s, want %s", c->label, rc_name(rc), rc_name(c->rc));
		dkim_signer_free(s);
	}
}

static void test_bad_opts(void **state)
{
	(void)state;
	struct dkim_key k = {DKIM_ALG_ED25519_SHA256, "example.com", "s1", NULL, ed_key};
	static const char *const no_from[] = {"to", "subject"};
	static const char *const colon[] = {"from", "x:y"};
	static const char *const empty[] = {"from", ""};
	struct {
		const char *label;
		struct dkim_sign_opts o;
	} cases[] = {
		{"h= without from", {0, no_from, 2, false}},
		{"name with colon", {0, colon, 2, false}},
		{"empty name", {0, empty, 2, false}},
		{"empty h= list", {0, no_from, 0, false}},
		{"negative time", {-5, NULL, 0, false}},
	};
	struct dkim_signer *s = NULL;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK(cases[i].label, dkim_signer_new(&k, 1, &cases[i].o, &s) == RC_INVALID && !s);
	CHECK("no keys", dkim_signer_new(&k, 0, NULL, &s) == RC_INVALID);
	struct dkim_key nokey = k;
	nokey.pkey = NULL;
	CHECK("no pkey", dkim_signer_new(&nokey, 1, NULL, &s) == RC_INVALID);
}

static void test_limits(void **state)
{
	(void)state;
	struct dkim_key k = {DKIM_ALG_ED25519_SHA256, "example.com", "s1", NULL, ed_key};
	struct dkim_signer *s;
	char *out = NULL;
	char line[] = "X-Filler: 0123456789012345678901234567890123456789\r\n";

	/* a header section over DKIM_HEADER_MAX: refused, and it stays refused */
	assert_int_equal(dkim_signer_new(&k, 1, NULL, &s), RC_OK);
	enum rc rc = RC_OK;
	for (size_t n = 0; rc == RC_OK && n <= DKIM_HEADER_MAX; n += sizeof line - 1)
		rc = dkim_signer_feed(s, line, sizeof line - 1);
	assert_int_equal(rc, RC_LIMIT);
	assert_int_equal(dkim_signer_feed(s, "\r\n", 2), RC_LIMIT);
	assert_int_equal(dkim_signer_finish(s, &out), RC_LIMIT);
	assert_null(out);
	dkim_signer_free(s);

	/* more signable fields than DKIM_SIGN_FIELDS_MAX */
	assert_int_equal(dkim_signer_new(&k, 1, NULL, &s), RC_OK);
	assert_int_equal(dkim_signer_feed(s, S("From: a@example.com\r\n")), RC_OK);
	for (int i = 0; i < DKIM_SIGN_FIELDS_MAX; i++)
		assert_int_equal(dkim_signer_feed(s, S("To: x@example.net\r\n")), RC_OK);
	assert_int_equal(dkim_signer_feed(s, S("\r\nbody\r\n")), RC_OK);
	assert_int_equal(dkim_signer_finish(s, &out), RC_LIMIT);
	dkim_signer_free(s);
	dkim_signer_free(NULL);
}

/* ---- keys -------------------------------------------------------------------- */

static void key_roundtrip(const char *label, EVP_PKEY *key, enum dkim_alg alg)
{
	char path[300];
	struct stat st;
	EVP_PKEY *back = NULL;
	enum dkim_alg got;
	char *text = NULL;
	size_t len;

	snprintf(path, sizeof path, "%s/%s.pem", tmpdir, label);
	CHECK(label, dkim_key_write(path, key) == RC_OK);
	CHECK(label, stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(label, file_read_all(path, DKIM_KEY_FILE_MAX, &text, &len) == RC_OK);
	CHECK(label, strncmp(text, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);	/* PKCS#8 */
	free(text);
	/* never overwritten */
	CHECK(label, dkim_key_write(path, ed_key) == RC_EXISTS);
	CHECK(label, dkim_key_load(path, &back, &got) == RC_OK && got == alg);
	CHECK(label, EVP_PKEY_eq(key, back) == 1);
	EVP_PKEY_free(back);
}

static void test_key_files(void **state)
{
	(void)state;
	char path[300];
	EVP_PKEY *k = NULL;
	enum dkim_alg alg;

	assert_int_equal(EVP_PKEY_get_bits(rsa_key), 2048);
	assert_true(EVP_PKEY_is_a(ed_key, "ED25519"));
	key_roundtrip("rsa", rsa_key, DKIM_ALG_RSA_SHA256);
	key_roundtrip("ed25519", ed_key, DKIM_ALG_ED25519_SHA256);

	snprintf(path, sizeof path, "%s/no/such/dir/k.pem", tmpdir);
	assert_int_equal(dkim_key_write(path, ed_key), RC_IO);
	snprintf(path, sizeof path, "%s/missing.pem", tmpdir);
	assert_int_equal(dkim_key_load(path, &k, &alg), RC_NOTFOUND);
	snprintf(path, sizeof path, "%s/garbage.pem", tmpdir);
	write_file(path, S("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"));
	chmod(path, 0600);
	assert_int_equal(dkim_key_load(path, &k, &alg), RC_INVALID);
	assert_null(k);
}

/* Run in a child (this binary re-executed with RELEVO_FAULT set, since the
 * fault seam reads it once per process): a failed write or fsync reports
 * RC_IO and leaves no file behind. */
static int fault_child(const char *path)
{
	EVP_PKEY *k = NULL;
	struct stat st;
	if (dkim_key_generate(DKIM_ALG_ED25519_SHA256, &k) != RC_OK)
		return 2;
	enum rc rc = dkim_key_write(path, k);
	EVP_PKEY_free(k);
	if (rc != RC_IO)
		return 3;
	return stat(path, &st) == 0 ? 4 : 0;
}

static void test_key_write_faults(void **state)
{
	(void)state;
	static const char *const faults[] = {"write:1", "fsync:1", "fsync:2"};
	for (size_t i = 0; i < ARRAY_LEN(faults); i++) {
		char cmd[1000];
		snprintf(cmd, sizeof cmd, "RELEVO_FAULT=%s /proc/%d/exe --fault-child %s/fault-%zu.pem",
			 faults[i], (int)getpid(), tmpdir, i);
		int st = system(cmd);
		if (st != 0)
			fail_msg("case '%s': child status %d", faults[i], st);
	}
}

/* Keys DKIM cannot sign with, and an encrypted file, are refused (without prompting). */
static void test_key_refused(void **state)
{
	(void)state;
	struct {
		const char *label;
		EVP_PKEY *key;
		bool encrypt;
	} cases[] = {
		{"EC P-256", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), false},
		{"RSA-512", EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512), false},
		{"encrypted Ed25519", EVP_PKEY_dup(ed_key), true},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char path[300];
		EVP_PKEY *k = NULL;
		enum dkim_alg alg;
		assert_non_null(cases[i].key);
		snprintf(path, sizeof path, "%s/refused-%zu.pem", tmpdir, i);
		BIO *b = BIO_new_file(path, "w");
		assert_non_null(b);
		const EVP_CIPHER *ciph = cases[i].encrypt ? EVP_aes_256_cbc() : NULL;
		assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, cases[i].key, ciph, "pw", 2, NULL,
							       NULL), 1);
		BIO_free(b);
		chmod(path, 0600);
		CHECK(cases[i].label, dkim_key_load(path, &k, &alg) == RC_INVALID && k == NULL);
		CHECK(cases[i].label, dkim_key_alg(cases[i].key, &alg) ==
					      (cases[i].encrypt ? RC_OK : RC_INVALID));
		char *txt = NULL;
		CHECK(cases[i].label, (dkim_key_txt(cases[i].key, &txt) == RC_OK) == cases[i].encrypt);
		free(txt);
		snprintf(path, sizeof path, "%s/refused-w-%zu.pem", tmpdir, i);
		CHECK(cases[i].label, (dkim_key_write(path, cases[i].key) == RC_OK) == cases[i].encrypt);
		EVP_PKEY_free(cases[i].key);
	}
}

/* The p= of a generated key decodes to the key itself. */
static void test_key_txt(void **state)
{
	(void)state;
	const char *p = strstr(rsa_txt, "; p=");
	assert_true(strncmp(rsa_txt, "v=DKIM1; k=rsa; p=", 18) == 0);
	p += 4;
	size_t n = strlen(p);
	unsigned char *der = malloc(n);
	int dl = EVP_DecodeBlock(der, (const unsigned char *)p, (int)n);
	assert_true(dl > 0);
	while (p[n - 1] == '=')	/* DecodeBlock counts padding as zero bytes */
		n--, dl--;
	const unsigned char *q = der;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &q, dl);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_eq(pub, rsa_key), 1);
	EVP_PKEY_free(pub);
	free(der);

	assert_true(strncmp(ed_txt, "v=DKIM1; k=ed25519; p=", 22) == 0);
	unsigned char raw[32], got[48];
	size_t rl = sizeof raw;
	assert_int_equal(EVP_PKEY_get_raw_public_key(ed_key, raw, &rl), 1);
	assert_int_equal(strlen(ed_txt + 22), 44);
	assert_int_equal(EVP_DecodeBlock(got, (const unsigned char *)ed_txt + 22, 44), 33);
	assert_memory_equal(got, raw, 32);
}

/* Undo dkim_txt_split: concatenate the strings; checks each is at most 255 bytes. */
static char *txt_join(const char *s, size_t *nstrings)
{
	char *o = malloc(strlen(s) + 1), *q = o;
	*nstrings = 0;
	while (*s) {
		assert_true(*s == '"');
		size_t n = 0;
		for (s++; *s != '"'; s++, n++) {
			assert_true(*s != '\0');
			if (*s == '\\')
				s++;
			*q++ = *s;
		}
		assert_true(n <= DKIM_TXT_STRING_MAX);
		(*nstrings)++;
		s++;
		if (*s == ' ')
			s++;
	}
	*q = '\0';
	return o;
}

static void test_txt_split(void **state)
{
	(void)state;
	char a255[256], a256[257];
	memset(a255, 'a', 255), a255[255] = '\0';
	memset(a256, 'a', 256), a256[256] = '\0';
	struct {
		const char *label;
		const char *in;
		size_t strings;
		const char *exact;	/* NULL: only check the round trip */
	} cases[] = {
		{"empty", "", 1, "\"\""},
		{"short", "v=DKIM1; k=ed25519; p=abc", 1, "\"v=DKIM1; k=ed25519; p=abc\""},
		{"255 bytes: one string", a255, 1, NULL},
		{"256 bytes: two strings", a256, 2, NULL},
		{"quotes and backslashes escaped", "a\"b\\c", 1, "\"a\\\"b\\\\c\""},
		{"RSA-2048 record", rsa_txt, 2, NULL},
		{"Ed25519 record", ed_txt, 1, NULL},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *z = dkim_txt_split(cases[i].in);
		size_t ns;
		char *back = txt_join(z, &ns);
		CHECK(cases[i].label, strcmp(back, cases[i].in) == 0);
		CHECK(cases[i].label, ns == cases[i].strings);
		if (cases[i].exact)
			CHECK(cases[i].label, strcmp(z, cases[i].exact) == 0);
		free(back);
		free(z);
	}
}

static void test_names(void **state)
{
	(void)state;
	enum dkim_alg a;
	assert_string_equal(dkim_alg_name(DKIM_ALG_RSA_SHA256), "rsa-sha256");
	assert_string_equal(dkim_alg_name(DKIM_ALG_ED25519_SHA256), "ed25519-sha256");
	assert_string_equal(dkim_canon_name(DKIM_CANON_RELAXED), "relaxed");
	assert_string_equal(dkim_canon_name(DKIM_CANON_SIMPLE), "simple");
	assert_true(dkim_alg_parse("RSA", &a) && a == DKIM_ALG_RSA_SHA256);
	assert_true(dkim_alg_parse("ed25519-sha256", &a) && a == DKIM_ALG_ED25519_SHA256);
	assert_false(dkim_alg_parse("rsa-sha1", &a));
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--fault-child") == 0)
		return fault_child(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_canon),
		cmocka_unit_test(test_body_canon_long_line),
		cmocka_unit_test(test_hdr_canon),
		cmocka_unit_test(test_hdr_canon_rfc_section),
		cmocka_unit_test(test_bodyhash),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_rfc8463),
		cmocka_unit_test(test_rfc8463_published_verifies),
		cmocka_unit_test(test_sign_dkimpy),
		cmocka_unit_test(test_sign_tampered),
		cmocka_unit_test(test_h_list),
		cmocka_unit_test(test_field_format),
		cmocka_unit_test(test_signer_pieces),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_bad_opts),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_key_write_faults),
		cmocka_unit_test(test_key_refused),
		cmocka_unit_test(test_key_txt),
		cmocka_unit_test(test_txt_split),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
