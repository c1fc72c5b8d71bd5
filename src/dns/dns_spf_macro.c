/*
 * dns_spf_macro.c - the pure half of SPF (RFC 7208): record and term syntax
 * (4.5, 4.6.1, 5, 6, 7.1) and macro expansion (7). No I/O, no global state,
 * callable from any thread; fuzzed (tests/fuzz/fuzz_dns_spf.c).
 *
 * Syntax, to the ABNF of 4.6.1, 5, 6 and 7.1 (names case-insensitive, RFC 5234):
 * - A record is "v=spf1" then terms separated by one or more SP; trailing SP
 *   is allowed. Any other octet than SP and %x21-7E (a TAB, a CR, a NUL,
 *   anything non-ASCII) is a syntax error.
 * - A term is a modifier when a name (ALPHA *(ALPHA / DIGIT / "-" / "_" /
 *   ".")) is followed by "=" before any ":" or "/" (4.6.1); otherwise it is a
 *   mechanism, and an unknown mechanism is a syntax error. "redirect" and
 *   "exp" are never unknown modifiers: "redirect=-all" is an error, not an
 *   ignored modifier (as the openspf test suite reads 6.1).
 * - domain-spec = macro-string domain-end, domain-end = "." toplabel ["."] /
 *   macro-expand: checked on the text as written, before expansion (7.1).
 * - a and mx: the dual-cidr-length is taken from the end of the argument
 *   ("/N", "//N", "/N//N"); what precedes it must be a domain-spec, so
 *   "a:foo:bar/baz.example.com" is a name and "a:foo.example.com/24" a name
 *   with a prefix. CIDR lengths and IPv4 octets have no leading zeros.
 * - Macro letters c, r and t are allowed only in explanation text (7.1), so an
 *   unknown modifier using them is an error too; a digit transformer of zero
 *   is an error (7.3); a larger one than there are parts means all of them.
 *
 * Expansion (7.3): the value is split on the delimiters ("." by default),
 * reversed if asked, its right-most N parts kept, joined with "."; upper-case
 * letters are then URL-encoded (RFC 3986 unreserved kept). A domain expansion
 * keeps only the tail it may need (the left is cut anyway), so a hostile
 * record cannot make it grow without bound.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAC_DELIMS ".-+,/_="
#define MAC_KEEP_CAP 100000000u		/* digit transformers saturate here */
#define MAC_TAIL 512			/* domain expansion: the tail kept */

enum mac_type { MT_LIT, MT_PCT, MT_SPACE, MT_URLSPACE, MT_MACRO };

/* One macro-string token. */
struct mac_tok {
	enum mac_type type;
	size_t len;			/* source characters */
	char letter;			/* lower case */
	bool upper;			/* URL-encode the value */
	unsigned keep;			/* right-most parts to keep, 0: all */
	bool reverse;
	uint8_t delims;			/* a bit per MAC_DELIMS character, 0: "." */
};

/* Where expanded text goes: out directly (explanations), or a tail buffer. */
struct sink {
	char *buf;
	size_t cap, len;
	bool keep_tail;			/* drop from the left when full */
	bool over;			/* something did not fit (not keep_tail) */
};

static const char *const kind_names[] = {
	[DNS_SPF_T_ALL] = "all",	   [DNS_SPF_T_INCLUDE] = "include",
	[DNS_SPF_T_A] = "a",		   [DNS_SPF_T_MX] = "mx",
	[DNS_SPF_T_PTR] = "ptr",	   [DNS_SPF_T_IP4] = "ip4",
	[DNS_SPF_T_IP6] = "ip6",	   [DNS_SPF_T_EXISTS] = "exists",
	[DNS_SPF_T_REDIRECT] = "redirect", [DNS_SPF_T_EXP] = "exp",
	[DNS_SPF_T_UNKNOWN] = "unknown",
};
_Static_assert(ARRAY_LEN(kind_names) == DNS_SPF_T_UNKNOWN + 1, "kind_names");

/* dns_spf_term_kind_name - the mechanism or modifier name, for logs. */
const char *dns_spf_term_kind_name(enum dns_spf_term_kind k)
{
	if ((unsigned)k >= ARRAY_LEN(kind_names))
		return "?";
	return kind_names[k];
}

/* ==== macro tokens ======================================================== */

static bool mac_letter_ok(char c, bool exp)
{
	return c != '\0' && strchr(exp ? "slodiphvcrt" : "slodiphv", c) != NULL;
}

/* "%{" letter *DIGIT ["r"] *delimiter "}" at s[0..n), s[0..1] being "%{". */
static bool mac_tok_macro(const char *s, size_t n, bool exp, struct mac_tok *t)
{
	size_t i = 2;
	if (i >= n)
		return false;
	char l = s[i++];
	t->upper = l >= 'A' && l <= 'Z';
	t->letter = (char)tolower((unsigned char)l);
	if (!mac_letter_ok(t->letter, exp))
		return false;
	bool digits = false;
	unsigned v = 0;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		digits = true;
		if (v < MAC_KEEP_CAP)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (digits && v == 0)
		return false;		/* 7.3: the value MUST be nonzero */
	t->keep = v;
	if (i < n && (s[i] == 'r' || s[i] == 'R')) {
		t->reverse = true;
		i++;
	}
	for (const char *d; i < n && s[i] != '\0' && (d = strchr(MAC_DELIMS, s[i])) != NULL; i++)
		t->delims |= (uint8_t)(1u << (d - MAC_DELIMS));
	if (i >= n || s[i] != '}')
		return false;
	t->type = MT_MACRO;
	t->len = i + 1;
	return true;
}

/* Read the token at s[0..n), n > 0; false on a syntax error. */
static bool mac_tok_read(const char *s, size_t n, bool exp, struct mac_tok *t)
{
	memset(t, 0, sizeof *t);
	unsigned char c = (unsigned char)s[0];
	if (c != '%') {
		t->type = MT_LIT;
		t->len = 1;
		return (c >= 0x21 && c <= 0x7e) || (c == ' ' && exp);
	}
	if (n < 2)
		return false;
	t->len = 2;
	switch (s[1]) {
	case '%':
		t->type = MT_PCT;
		return true;
	case '_':
		t->type = MT_SPACE;
		return true;
	case '-':
		t->type = MT_URLSPACE;
		return true;
	case '{':
		return mac_tok_macro(s, n, exp, t);
	default:
		return false;
	}
}

/* Is s[0..n) a macro-string (exp: an explain-string)? */
static bool mac_string_ok(const char *s, size_t n, bool exp)
{
	struct mac_tok t;
	for (size_t i = 0; i < n; i += t.len)
		if (!mac_tok_read(s + i, n - i, exp, &t))
			return false;
	return true;
}

/* ==== expansion =========================================================== */

static void sink_putc(struct sink *k, char c)
{
	if (k->len + 1 >= k->cap) {
		if (!k->keep_tail) {
			k->over = true;
			return;
		}
		size_t drop = k->cap / 2;
		memmove(k->buf, k->buf + drop, k->len - drop);
		k->len -= drop;
	}
	k->buf[k->len++] = c;
}

static void sink_puts(struct sink *k, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sink_putc(k, s[i]);
}

static bool is_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* One part of a value; URL-encoded (RFC 3986 2.1, upper-case hex) if asked. */
static void sink_part(struct sink *k, const char *p, size_t n, bool url)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!url || is_unreserved(c)) {
			sink_putc(k, (char)c);
			continue;
		}
		sink_putc(k, '%');
		sink_putc(k, hex[c >> 4]);
		sink_putc(k, hex[c & 15]);
	}
}

/* The IP as %{i} writes it: dotted quad, or 32 dot-separated nibbles (7.3). */
static char *mac_ip_dotted(const struct dns_spf_macro_ctx *mc)
{
	const uint8_t *a = mc->ip;
	if (mc->family != AF_INET6)
		return xasprintf("%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	static const char hex[] = "0123456789abcdef";
	char *s = xmalloc(64);
	for (size_t i = 0; i < 16; i++) {
		s[i * 4] = hex[a[i] >> 4];
		s[i * 4 + 1] = '.';
		s[i * 4 + 2] = hex[a[i] & 15];
		s[i * 4 + 3] = '.';
	}
	s[63] = '\0';
	return s;
}

static char *mac_ip_readable(const struct dns_spf_macro_ctx *mc)
{
	char buf[INET6_ADDRSTRLEN];
	int af = mc->family == AF_INET6 ? AF_INET6 : AF_INET;
	if (inet_ntop(af, mc->ip, buf, sizeof buf) == NULL)
		buf[0] = '\0';
	return xstrdup(buf);
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* The value of a macro letter, on the heap; NULL: %{p} not known yet. */
static char *mac_value(char letter, const struct dns_spf_macro_ctx *mc)
{
	switch (letter) {
	case 's':
		return xasprintf("%s@%s", nz(mc->local), nz(mc->sender_domain));
	case 'l':
		return xstrdup(nz(mc->local));
	case 'o':
		return xstrdup(nz(mc->sender_domain));
	case 'd':
		return xstrdup(nz(mc->domain));
	case 'i':
		return mac_ip_dotted(mc);
	case 'p':
		return mc->validated ? xstrdup(mc->validated) : NULL;
	case 'v':
		return xstrdup(mc->family == AF_INET6 ? "ip6" : "in-addr");
	case 'h':
		return xstrdup(nz(mc->helo));
	case 'c':
		return mac_ip_readable(mc);
	case 'r':
		return xstrdup(mc->receiver && mc->receiver[0] ? mc->receiver : "unknown");
	case 't':
		return xasprintf("%" PRId64, mc->now);
	default:
		fatal("event=spf_macro_letter letter=%c", letter);
	}
}

static bool is_delim(char c, uint8_t delims)
{
	const char *d = c ? strchr(MAC_DELIMS, c) : NULL;
	if (delims == 0)
		return c == '.';
	return d != NULL && (delims & (1u << (d - MAC_DELIMS)));
}

/* Split v, keep/reverse the parts, join them with "." into k (7.3). */
static void mac_transform(struct sink *k, const char *v, const struct mac_tok *t)
{
	size_t n = strlen(v), nparts = 1;
	for (size_t i = 0; i < n; i++)
		nparts += is_delim(v[i], t->delims);
	size_t *start = xcalloc(nparts + 1, sizeof *start);
	for (size_t i = 0, p = 1; i < n; i++)
		if (is_delim(v[i], t->delims))
			start[p++] = i + 1;
	start[nparts] = n + 1;		/* as if a delimiter followed the end */
	size_t keep = t->keep && t->keep < nparts ? t->keep : nparts;
	for (size_t j = 0; j < keep; j++) {
		/* not reversed: parts nparts-keep..nparts-1; reversed: keep-1..0 */
		size_t p = t->reverse ? keep - 1 - j : nparts - keep + j;
		if (j > 0)
			sink_putc(k, '.');
		sink_part(k, v + start[p], start[p + 1] - start[p] - 1, t->upper);
	}
	free(start);
}

/* Expand one token into k; RC_AGAIN when it is %{p} and p is not known. */
static enum rc mac_put(struct sink *k, const struct mac_tok *t, const char *src,
		       const struct dns_spf_macro_ctx *mc)
{
	switch (t->type) {
	case MT_LIT:
		sink_putc(k, src[0]);
		return RC_OK;
	case MT_PCT:
		sink_putc(k, '%');
		return RC_OK;
	case MT_SPACE:
		sink_putc(k, ' ');
		return RC_OK;
	case MT_URLSPACE:
		sink_puts(k, "%20", 3);
		return RC_OK;
	case MT_MACRO:
		break;
	}
	char *v = mac_value(t->letter, mc);
	if (v == NULL)
		return RC_AGAIN;
	mac_transform(k, v, t);
	free(v);
	return RC_OK;
}

/* 7.3: drop one trailing dot, then whole labels from the left until at most
 * DNS_SPF_DOMAIN_MAX characters are left; returns where the name starts. */
static size_t dom_cut(const char *s, size_t *len)
{
	size_t n = *len, at = 0;
	if (n > 0 && s[n - 1] == '.')
		n--;
	while (n - at > DNS_SPF_DOMAIN_MAX) {
		const char *dot = memchr(s + at, '.', n - at);
		if (dot == NULL) {
			at = n;
			break;
		}
		at = (size_t)(dot - s) + 1;
	}
	*len = n;
	return at;
}

/* dns_spf_macro_expand - expand a domain-spec or explanation (see dns.h). */
enum rc dns_spf_macro_expand(const char *spec, const struct dns_spf_macro_ctx *mc, bool exp,
			     char *out, size_t outsz)
{
	char tail[MAC_TAIL];
	if (outsz == 0)
		return RC_LIMIT;
	out[0] = '\0';
	if (!exp && outsz <= DNS_SPF_DOMAIN_MAX)
		return RC_LIMIT;
	struct sink k = {exp ? out : tail, exp ? outsz : sizeof tail, 0, !exp, false};
	size_t n = strlen(spec);
	struct mac_tok t;
	for (size_t i = 0; i < n; i += t.len) {
		enum rc rc = RC_INVALID;
		if (mac_tok_read(spec + i, n - i, exp, &t))
			rc = mac_put(&k, &t, spec + i, mc);
		if (rc != RC_OK) {
			out[0] = '\0';
			return rc;
		}
	}
	if (exp) {
		out[k.len] = '\0';
		return k.over ? RC_LIMIT : RC_OK;
	}
	size_t len = k.len, at = dom_cut(tail, &len);
	memcpy(out, tail + at, len - at);
	out[len - at] = '\0';
	return RC_OK;
}

/* ==== record syntax ======================================================= */

__attribute__((format(printf, 3, 4))) static enum rc bad(char *why, size_t whysz,
							 const char *fmt, ...)
{
	if (why != NULL && whysz > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whysz, fmt, ap);
		va_end(ap);
	}
	return RC_INVALID;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static bool toplabel_ok(const char *s, size_t n)
{
	bool alpha = false, dash = false;
	if (n == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '-')
			dash = true;
		else if (isalpha(c))
			alpha = true;
		else if (!isdigit(c))
			return false;
	}
	return alpha || dash;
}

/* domain-spec = macro-string domain-end (7.1), on the text as written. */
static bool domain_spec_ok(const char *s, size_t n)
{
	struct mac_tok t;
	size_t lit = 0;			/* start of the trailing literal characters */
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i += t.len) {
		if (!mac_tok_read(s + i, n - i, false, &t))
			return false;
		if (t.type != MT_LIT)
			lit = i + t.len;
	}
	const char *e = s + lit;
	size_t m = n - lit;
	if (m == 0)
		return true;		/* domain-end = macro-expand */
	if (e[m - 1] == '.')
		m--;
	const char *dot = m ? memrchr(e, '.', m) : NULL;
	return dot != NULL && toplabel_ok(dot + 1, (size_t)(e + m - dot - 1));
}

/* ip4-cidr-length / ip6-cidr-length digits: "0" or no leading zero, <= max. */
static bool cidr_ok(const char *s, size_t n, unsigned max, unsigned *out)
{
	unsigned v = 0;
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return v <= max;
}

/* Length of the run of digits that ends s[0..n). */
static size_t digits_at_end(const char *s, size_t n)
{
	size_t d = 0;
	while (d < n && s[n - 1 - d] >= '0' && s[n - 1 - d] <= '9')
		d++;
	return d;
}

/* dual-cidr-length = [ "/" ip4-cidr ] [ "//" ip6-cidr ] at the end of s[0..n):
 * *rest is what precedes it. False when a length is there but bad. */
static bool dual_cidr(const char *s, size_t n, size_t *rest, struct dns_spf_term *t)
{
	size_t d = digits_at_end(s, n);
	if (d > 0 && n - d >= 2 && s[n - d - 1] == '/' && s[n - d - 2] == '/') {
		if (!cidr_ok(s + n - d, d, 128, &t->cidr6))
			return false;
		n -= d + 2;
	}
	d = digits_at_end(s, n);
	if (d > 0 && n - d >= 1 && s[n - d - 1] == '/') {
		if (!cidr_ok(s + n - d, d, 32, &t->cidr4))
			return false;
		n -= d + 1;
	}
	*rest = n;
	return true;
}

/* ip4-network: four qnum without leading zeros (5.6). */
static bool ip4_ok(const char *s, size_t n, uint8_t out[4])
{
	size_t i = 0;
	for (int q = 0; q < 4; q++) {
		size_t st = i;
		unsigned v = 0;
		while (i < n && s[i] >= '0' && s[i] <= '9' && i - st < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
			return false;
		out[q] = (uint8_t)v;
		if (q < 3 && (i >= n || s[i++] != '.'))
			return false;
	}
	return i == n;
}

static bool ip6_ok(const char *s, size_t n, uint8_t out[16])
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, out) == 1;
}

/* ip4 / ip6 ":" network [ "/" cidr ]; arg is what follows the name. */
static enum rc parse_ip(const char *arg, size_t n, struct dns_spf_term *t, char *why,
			size_t whysz)
{
	bool v4 = t->kind == DNS_SPF_T_IP4;
	if (n == 0 || arg[0] != ':')
		return bad(why, whysz, "%s needs an address", v4 ? "ip4" : "ip6");
	arg++;
	n--;
	const char *slash = memchr(arg, '/', n);
	size_t netlen = slash ? (size_t)(slash - arg) : n;
	if (slash && !cidr_ok(slash + 1, n - netlen - 1, v4 ? 32 : 128,
			      v4 ? &t->cidr4 : &t->cidr6))
		return bad(why, whysz, "bad prefix length in '%.*s'", (int)t->textlen, t->text);
	if (v4 ? !ip4_ok(arg, netlen, t->net) : !ip6_ok(arg, netlen, t->net))
		return bad(why, whysz, "bad address in '%.*s'", (int)t->textlen, t->text);
	return RC_OK;
}

/* The argument of a mechanism that takes a domain-spec (and maybe a CIDR). */
static enum rc parse_target(const char *arg, size_t n, bool need, bool cidr,
			    struct dns_spf_term *t, char *why, size_t whysz)
{
	size_t rest = n;
	if (cidr && !dual_cidr(arg, n, &rest, t))
		return bad(why, whysz, "bad prefix length in '%.*s'", (int)t->textlen, t->text);
	if (rest == 0 && !need)
		return RC_OK;
	if (rest == 0 || arg[0] != ':')
		return bad(why, whysz, "'%.*s' needs ':' and a domain", (int)t->textlen, t->text);
	t->spec = arg + 1;
	t->speclen = rest - 1;
	if (!domain_spec_ok(t->spec, t->speclen))
		return bad(why, whysz, "bad domain-spec in '%.*s'", (int)t->textlen, t->text);
	return RC_OK;
}

static const struct {
	const char *name;
	enum dns_spf_term_kind kind;
} mechanisms[] = {
	{"all", DNS_SPF_T_ALL},	 {"include", DNS_SPF_T_INCLUDE}, {"a", DNS_SPF_T_A},
	{"mx", DNS_SPF_T_MX},	 {"ptr", DNS_SPF_T_PTR},	 {"ip4", DNS_SPF_T_IP4},
	{"ip6", DNS_SPF_T_IP6}, {"exists", DNS_SPF_T_EXISTS},
};

/* directive = [ qualifier ] mechanism (4.6.2, 5.1-5.7). */
static enum rc parse_mechanism(const char *s, size_t n, struct dns_spf_term *t, char *why,
			       size_t whysz)
{
	size_t i = 0;
	t->qual = '+';
	if (n > 0 && strchr("+-~?", s[0]) != NULL) {
		t->qual = s[0];
		i = 1;
	}
	size_t e = i;
	while (e < n && s[e] != ':' && s[e] != '/')
		e++;
	size_t k;
	for (k = 0; k < ARRAY_LEN(mechanisms); k++)
		if (strlen(mechanisms[k].name) == e - i &&
		    strncasecmp(mechanisms[k].name, s + i, e - i) == 0)
			break;
	if (k == ARRAY_LEN(mechanisms))
		return bad(why, whysz, "unknown mechanism '%.*s'", (int)n, s);
	t->kind = mechanisms[k].kind;
	const char *arg = s + e;
	size_t an = n - e;
	switch (t->kind) {
	case DNS_SPF_T_ALL:
		return an == 0 ? RC_OK : bad(why, whysz, "'all' takes no argument");
	case DNS_SPF_T_INCLUDE:
	case DNS_SPF_T_EXISTS:
		return parse_target(arg, an, true, false, t, why, whysz);
	case DNS_SPF_T_PTR:
		return parse_target(arg, an, false, false, t, why, whysz);
	case DNS_SPF_T_A:
	case DNS_SPF_T_MX:
		return parse_target(arg, an, false, true, t, why, whysz);
	default:
		return parse_ip(arg, an, t, why, whysz);
	}
}

/* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
static bool modifier_name_ok(const char *s, size_t n)
{
	if (n == 0 || !isalpha((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return false;
	return true;
}

/* modifier = redirect / explanation / unknown-modifier (6, 4.6.1). */
static enum rc parse_modifier(const char *s, size_t n, size_t eq, struct dns_spf_term *t,
			      char *why, size_t whysz)
{
	t->name = s;
	t->namelen = eq;
	t->spec = s + eq + 1;
	t->speclen = n - eq - 1;
	if (eq == 8 && strncasecmp(s, "redirect", 8) == 0)
		t->kind = DNS_SPF_T_REDIRECT;
	else if (eq == 3 && strncasecmp(s, "exp", 3) == 0)
		t->kind = DNS_SPF_T_EXP;
	else
		t->kind = DNS_SPF_T_UNKNOWN;
	if (t->kind == DNS_SPF_T_UNKNOWN) {
		if (!mac_string_ok(t->spec, t->speclen, false))
			return bad(why, whysz, "bad macro in '%.*s'", (int)n, s);
		return RC_OK;
	}
	if (!domain_spec_ok(t->spec, t->speclen))
		return bad(why, whysz, "bad domain-spec in '%.*s'", (int)n, s);
	return RC_OK;
}

/* One term s[0..n), n > 0, of printable characters. */
static enum rc term_parse(const char *s, size_t n, struct dns_spf_term *t, char *why,
			  size_t whysz)
{
	memset(t, 0, sizeof *t);
	t->text = s;
	t->textlen = n;
	t->cidr4 = 32;
	t->cidr6 = 128;
	size_t k = 0;
	while (k < n && s[k] != '=' && s[k] != ':' && s[k] != '/')
		k++;
	if (k < n && s[k] == '=' && modifier_name_ok(s, k))
		return parse_modifier(s, n, k, t, why, whysz);
	return parse_mechanism(s, n, t, why, whysz);
}

/* dns_spf_is_record - "v=spf1" then SP or the end (4.5). */
bool dns_spf_is_record(const char *txt, size_t len)
{
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/* dns_spf_term_next - the next term of rec after *pos (see dns.h). */
enum rc dns_spf_term_next(const char *rec, size_t len, size_t *pos, struct dns_spf_term *t,
			  char *why, size_t whysz)
{
	size_t i = *pos;
	if (i == 0) {
		if (!dns_spf_is_record(rec, len))
			return bad(why, whysz, "not an SPF record");
		i = 6;
	}
	while (i < len && rec[i] == ' ')
		i++;
	if (i >= len) {
		*pos = len;
		return RC_NOTFOUND;
	}
	size_t st = i;
	while (i < len && rec[i] != ' ') {
		unsigned char c = (unsigned char)rec[i];
		if (c < 0x21 || c > 0x7e)
			return bad(why, whysz, "character 0x%02x at offset %zu", c, i);
		i++;
	}
	*pos = i;
	return term_parse(rec + st, i - st, t, why, whysz);
}

/* dns_spf_record_check - validate every term before evaluating any (4.6). */
enum rc dns_spf_record_check(const char *rec, size_t len, char *why, size_t whysz)
{
	if (!dns_spf_is_record(rec, len)) {
		bad(why, whysz, "not an SPF record");
		return RC_NOTFOUND;
	}
	unsigned nredirect = 0, nexp = 0;
	struct dns_spf_term t;
	size_t pos = 0;
	enum rc rc;
	while ((rc = dns_spf_term_next(rec, len, &pos, &t, why, whysz)) == RC_OK) {
		nredirect += t.kind == DNS_SPF_T_REDIRECT;
		nexp += t.kind == DNS_SPF_T_EXP;
	}
	if (rc != RC_NOTFOUND)
		return rc;
	if (nredirect > 1 || nexp > 1)
		return bad(why, whysz, "%s= more than once", nredirect > 1 ? "redirect" : "exp");
	return RC_OK;
}
