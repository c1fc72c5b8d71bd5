/*
 * test_dns_spf.c - SPF (RFC 7208): macro expansion, record syntax, and
 * check_host() end to end.
 *
 * Pure parts, table-driven: every example of RFC 7208 7.4 (sender
 * strong-bad@email.example.com, 192.0.2.3 and 2001:db8::cb01, PTR name
 * mx.example.org) and more macro cases (escapes, URL-encoding, exp-only
 * letters, syntax errors, the 253-character cut of 7.3); records that are
 * and are not valid, most of them from the openspf test suite.
 *
 * End to end: dns_spf_check through libunbound (dns_new) forwarding to the
 * fake DNS server of fake_dns.h, which this process runs on 127.0.0.1 (UDP,
 * ephemeral port, the same libevent loop), as test_dns.c does. Each case has its own zone
 * table (and a fresh resolver, so no cache crosses cases); the fake answers
 * the records of the name and type asked, else the name's CNAME, else NODATA
 * or NXDOMAIN; some names answer an rcode or never answer. A TXT record's
 * data is split into character-strings at '|'. Every evaluation checks that
 * the callback comes later (never inline), exactly once, with its cookie.
 *
 * PTR: libunbound answers the RFC 6303 reverse zones itself (192.0.2.0/24,
 * 2001:db8::/32, 10/8, ...: NXDOMAIN without asking the fake), so the cases
 * that need PTR records use 198.18.0.0/15 instead of the RFC's 192.0.2.0/24
 * (the appendix A.1 ptr example and A.4 are renumbered that way). They also
 * need dns_msg_parse to decode PTR RDATA (into rr.u.cname); when it does
 * not, those cases are skipped (reported), and only the fallback - a failed
 * PTR lookup is no match and %{p} "unknown" - is checked.
 * TEST_DNS_DEBUG=1 prints every question the fake gets and every outcome.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "fake_dns.h"
#include "unit_util.h"

#define T_PTR 12

/* ==== macro expansion (RFC 7208 7) ======================================== */

static const char *const mc_local[] = {
	"strong-bad", "strong-bad", "~jack&jill=up-a_b3.c", "strong-bad", "foo-bar+zip+quux",
};

/* The contexts: 0 the RFC's IPv4, 1 its IPv6, 2 a local-part to URL-encode,
 * 3 %{p} not known yet, 4 a local-part for several delimiters. */
static void macro_ctx(int which, struct dns_spf_macro_ctx *mc)
{
	memset(mc, 0, sizeof *mc);
	mc->local = mc_local[which];
	mc->sender_domain = "email.example.com";
	mc->domain = "email.example.com";
	mc->helo = "mx.example.org";
	mc->receiver = "mx.receiver.example";
	mc->now = 1700000000;
	mc->validated = which == 3 ? NULL : "mx.example.org";
	if (which == 1) {
		mc->family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, "2001:db8::cb01", mc->ip), 1);
	} else {
		mc->family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, "192.0.2.3", mc->ip), 1);
	}
}

struct macro_case {
	const char *label;
	int ctx;
	bool exp;
	const char *spec;
	enum rc rc;
	const char *want;
};

static const struct macro_case macro_cases[] = {
	/* RFC 7208 7.4, the first table */
	{"7.4 %{s}", 0, false, "%{s}", RC_OK, "strong-bad@email.example.com"},
	{"7.4 %{o}", 0, false, "%{o}", RC_OK, "email.example.com"},
	{"7.4 %{d}", 0, false, "%{d}", RC_OK, "email.example.com"},
	{"7.4 %{d4}", 0, false, "%{d4}", RC_OK, "email.example.com"},
	{"7.4 %{d3}", 0, false, "%{d3}", RC_OK, "email.example.com"},
	{"7.4 %{d2}", 0, false, "%{d2}", RC_OK, "example.com"},
	{"7.4 %{d1}", 0, false, "%{d1}", RC_OK, "com"},
	{"7.4 %{dr}", 0, false, "%{dr}", RC_OK, "com.example.email"},
	{"7.4 %{d2r}", 0, false, "%{d2r}", RC_OK, "example.email"},
	{"7.4 %{l}", 0, false, "%{l}", RC_OK, "strong-bad"},
	{"7.4 %{l-}", 0, false, "%{l-}", RC_OK, "strong.bad"},
	{"7.4 %{lr}", 0, false, "%{lr}", RC_OK, "strong-bad"},
	{"7.4 %{lr-}", 0, false, "%{lr-}", RC_OK, "bad.strong"},
	{"7.4 %{l1r-}", 0, false, "%{l1r-}", RC_OK, "strong"},
	/* RFC 7208 7.4, the second table */
	{"7.4 %{ir}.%{v}._spf.%{d2}", 0, false, "%{ir}.%{v}._spf.%{d2}", RC_OK,
	 "3.2.0.192.in-addr._spf.example.com"},
	{"7.4 %{lr-}.lp._spf.%{d2}", 0, false, "%{lr-}.lp._spf.%{d2}", RC_OK,
	 "bad.strong.lp._spf.example.com"},
	{"7.4 %{lr-}.lp.%{ir}.%{v}._spf.%{d2}", 0, false, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", RC_OK,
	 "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
	{"7.4 %{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", 0, false, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
	 RC_OK, "3.2.0.192.in-addr.strong.lp._spf.example.com"},
	{"7.4 %{d2}.trusted-domains.example.net", 0, false, "%{d2}.trusted-domains.example.net",
	 RC_OK, "example.com.trusted-domains.example.net"},
	{"7.4 IPv6 %{ir}.%{v}._spf.%{d2}", 1, false, "%{ir}.%{v}._spf.%{d2}", RC_OK,
	 "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"},
	/* more letters */
	{"%{i} IPv4", 0, false, "%{i}", RC_OK, "192.0.2.3"},
	{"%{i} IPv6: nibbles, not reversed", 1, false, "%{i}", RC_OK,
	 "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1"},
	{"%{v} IPv4", 0, false, "%{v}", RC_OK, "in-addr"},
	{"%{v} IPv6", 1, false, "%{v}", RC_OK, "ip6"},
	{"%{h}", 0, false, "%{h}", RC_OK, "mx.example.org"},
	{"%{p}", 0, false, "%{p}", RC_OK, "mx.example.org"},
	{"%{p} not known yet", 3, false, "x.%{p}", RC_AGAIN, ""},
	{"%{d} without %{p} needs no PTR", 3, false, "%{d}", RC_OK, "email.example.com"},
	{"%{c} IPv4 in exp", 0, true, "%{c}", RC_OK, "192.0.2.3"},
	{"%{c} IPv6 in exp", 1, true, "%{c}", RC_OK, "2001:db8::cb01"},
	{"%{r} in exp", 0, true, "%{r}", RC_OK, "mx.receiver.example"},
	{"%{t} in exp", 0, true, "%{t}", RC_OK, "1700000000"},
	{"%{c} outside exp", 0, false, "%{c}.example.com", RC_INVALID, ""},
	{"%{r} outside exp", 0, false, "%{r}.example.com", RC_INVALID, ""},
	{"%{t} outside exp", 0, false, "%{t}.example.com", RC_INVALID, ""},
	/* transformers and delimiters */
	{"several delimiters", 4, false, "%{l2r+-}.user.%{d2}", RC_OK, "bar.foo.user.example.com"},
	{"all delimiters", 4, false, "%{l.-+,/_=}", RC_OK, "foo.bar.zip.quux"},
	{"more parts asked than there are", 0, false, "%{d99999999999999999999}", RC_OK,
	 "email.example.com"},
	{"upper-case R transformer", 0, false, "%{dR}", RC_OK, "com.example.email"},
	{"digit with leading zero", 0, false, "%{d02}", RC_OK, "example.com"},
	/* URL-encoding (7.3: upper-case letters, RFC 3986 unreserved kept) */
	{"%{S} URL-encoded", 0, false, "%{S}", RC_OK, "strong-bad%40email.example.com"},
	{"%{L} URL-encoded", 2, true, "http://example.com/why.html?l=%{L}", RC_OK,
	 "http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c"},
	{"%{D2} needs no encoding", 0, false, "%{D2}", RC_OK, "example.com"},
	{"%{C} IPv6 encodes the colons", 1, true, "%{C}", RC_OK, "2001%3Adb8%3A%3Acb01"},
	/* escapes */
	{"escapes in exp", 0, true, "100%% %_%-!", RC_OK, "100%  %20!"},
	{"escapes in a domain", 0, false, "a%%b%_c%-d.example.com", RC_OK,
	 "a%b c%20d.example.com"},
	/* dots and spaces */
	{"a domain loses its trailing dot", 0, false, "%{d}.", RC_OK, "email.example.com"},
	{"an explanation keeps its trailing dot", 0, true, "This is a test.", RC_OK,
	 "This is a test."},
	{"spaces in exp", 0, true, "%{i} is not allowed", RC_OK, "192.0.2.3 is not allowed"},
	{"a space in a domain", 0, false, "a b.example.com", RC_INVALID, ""},
	/* syntax errors */
	{"lone %", 0, false, "%", RC_INVALID, ""},
	{"trailing %", 0, true, "581%", RC_INVALID, ""},
	{"% then a letter", 0, false, "%b", RC_INVALID, ""},
	{"%( instead of %{", 0, false, "%(ir).sbl.example.com", RC_INVALID, ""},
	{"unterminated %{", 0, false, "%{", RC_INVALID, ""},
	{"unterminated %{s", 0, false, "%{s", RC_INVALID, ""},
	{"unterminated %{s1r", 0, false, "%{s1r", RC_INVALID, ""},
	{"digit 0", 0, false, "%{s0}", RC_INVALID, ""},
	{"digits 00", 0, false, "%{d00}", RC_INVALID, ""},
	{"unknown letter", 0, false, "%{a}.example.com", RC_INVALID, ""},
	{"unknown letter in exp", 0, true, "The %{x}-files.", RC_INVALID, ""},
	{"not a delimiter", 0, false, "%{d2:}", RC_INVALID, ""},
	{"r twice", 0, false, "%{drr}", RC_INVALID, ""},
	{"non-ASCII in exp", 0, true, "\xef\xbb\xbf" "Explanation", RC_INVALID, ""},
	{"a control character", 0, true, "a\tb", RC_INVALID, ""},
	{"empty", 0, false, "", RC_OK, ""},
};

static void test_macro_table(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(macro_cases); i++) {
		const struct macro_case *c = &macro_cases[i];
		struct dns_spf_macro_ctx mc;
		char out[1024];
		macro_ctx(c->ctx, &mc);
		memset(out, 'X', sizeof out);
		enum rc rc = dns_spf_macro_expand(c->spec, &mc, c->exp, out, sizeof out);
		if (rc != c->rc || strcmp(out, c->want) != 0)
			fail_msg("case '%s': %s '%s', want %s '%s'", c->label, rc_name(rc), out,
				 rc_name(c->rc), c->want);
	}
}

/* 7.3: a name over 253 characters loses whole labels from the left. */
static void test_macro_truncation(void **state)
{
	struct dns_spf_macro_ctx mc;
	char label[63], name[300], spec[600], out[300];
	macro_ctx(0, &mc);
	memset(label, 'a', 62);
	label[62] = '\0';
	snprintf(name, sizeof name, "%s.%s.%s.%s", label, label, label, label);	/* 251 */
	snprintf(spec, sizeof spec, "x.%s", name);
	assert_int_equal(dns_spf_macro_expand(spec, &mc, false, out, sizeof out), RC_OK);
	assert_string_equal(out, spec);		/* 253: fits */
	snprintf(spec, sizeof spec, "xx.%s", name);
	assert_int_equal(dns_spf_macro_expand(spec, &mc, false, out, sizeof out), RC_OK);
	assert_string_equal(out, name);		/* 254: "xx." goes */
	snprintf(spec, sizeof spec, "xx.%s.", name);
	assert_int_equal(dns_spf_macro_expand(spec, &mc, false, out, sizeof out), RC_OK);
	assert_string_equal(out, name);		/* the trailing dot is not counted */

	/* the openspf "domain-name-truncation" case: "foobar." is cut */
	mc.sender_domain = "somewhat.long.exp.example.com";
	assert_int_equal(dns_spf_macro_expand("foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}"
					      ".example.com", &mc, false, out, sizeof out),
			 RC_OK);
	assert_int_equal(strlen(out), 251);
	assert_true(strncmp(out, "somewhat.long.exp.example.com.somewhat.", 39) == 0);

	/* a hostile expansion, far longer than any buffer: the tail, label-aligned */
	char *big = malloc(4 * 1000 + 40);
	size_t o = 0;
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(big + o, 8, "%%{s}");
	snprintf(big + o, 40, ".end.example.com");
	assert_int_equal(dns_spf_macro_expand(big, &mc, false, out, sizeof out), RC_OK);
	assert_true(strlen(out) <= 253 && strlen(out) > 200);
	assert_true(strstr(out, ".end.example.com") != NULL);
	assert_true(strncmp(out, "com", 3) == 0 || strncmp(out, "example", 7) == 0 ||
		    strncmp(out, "exp", 3) == 0 || strncmp(out, "long", 4) == 0 ||
		    strncmp(out, "somewhat", 8) == 0 || strncmp(out, "example", 7) == 0);
	free(big);

	/* a single label longer than 253: nothing is left */
	char huge[400];
	memset(huge, 'z', 300);
	huge[300] = '\0';
	assert_int_equal(dns_spf_macro_expand(huge, &mc, false, out, sizeof out), RC_OK);
	assert_string_equal(out, "");

	/* buffers: a domain needs 254; an explanation is cut (RC_LIMIT) */
	char small[16];
	assert_int_equal(dns_spf_macro_expand("%{d}", &mc, false, small, sizeof small), RC_LIMIT);
	assert_int_equal(dns_spf_macro_expand("%{d} is the domain", &mc, true, small, sizeof small),
			 RC_LIMIT);
	assert_string_equal(small, "email.example.c");
	assert_int_equal(dns_spf_macro_expand("%{d}", &mc, true, small, 0), RC_LIMIT);
}

/* ==== record syntax ======================================================= */

struct rec_case {
	const char *label;
	const char *rec;
	size_t len;			/* 0: strlen */
	enum rc rc;
	const char *why;		/* part of the reason, for RC_INVALID */
};

static const struct rec_case rec_cases[] = {
	{"version only", "v=spf1", 0, RC_OK, NULL},
	{"simple", "v=spf1 -all", 0, RC_OK, NULL},
	{"case-insensitive", "V=SpF1 ~ALL IP4:192.0.2.1 Include:Example.COM", 0, RC_OK, NULL},
	{"several and trailing spaces", "v=spf1 a  -all   ", 0, RC_OK, NULL},
	{"every mechanism and modifier",
	 "v=spf1 a/24//64 mx:example.com/30 ip4:192.0.2.0/24 ip6:2001:db8::/32 ptr "
	 "ptr:example.com exists:%{ir}.sbl.example.com include:_spf.example.com "
	 "redirect=_spf.example.com exp=explain.%{d} -all",
	 0, RC_OK, NULL},
	{"unknown modifier", "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", 0, RC_OK,
	 NULL},
	{"unknown modifier, empty value", "v=spf1 default= -all", 0, RC_OK, NULL},
	{"a colon and a slash in a domain", "v=spf1 a:foo:bar/baz.example.com", 0, RC_OK, NULL},
	{"toplabel with dashes", "v=spf1 a:foo.example.xn--zckzah -all", 0, RC_OK, NULL},
	{"toplabel all digits with a dash", "v=spf1 a:foo.1-2", 0, RC_OK, NULL},
	{"macros in domains", "v=spf1 exists:%{l1r+}.%{d} a:%{H} redirect=%{d}.d.spf.example.com.",
	 0, RC_OK, NULL},
	{"escapes in a domain", "v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all", 0,
	 RC_OK, NULL},
	{"domain ending in %%", "v=spf1 a:foo%%", 0, RC_OK, NULL},
	{"trailing dot", "v=spf1 include:o.spf.example.com. exp=msg.example.com. ~all", 0, RC_OK,
	 NULL},
	{"mapped IPv6 network", "v=spf1 ip6:::1.1.1.1/0 ip6:::FFFF:1.2.3.4", 0, RC_OK, NULL},
	{"prefix lengths 0 and maximal", "v=spf1 ip4:0.0.0.0/0 ip4:1.2.3.4/32 a//0 mx//128 a/0",
	 0, RC_OK, NULL},
	{"ip6-only cidr on a", "v=spf1 a//33 -all", 0, RC_OK, NULL},

	{"not a record: v=spf10", "v=spf10", 0, RC_NOTFOUND, NULL},
	{"not a record: no space", "v=spf1mx", 0, RC_NOTFOUND, NULL},
	{"not a record: tab", "v=spf1\t-all", 0, RC_NOTFOUND, NULL},
	{"not a record: Sender ID", "spf2.0/pra -all", 0, RC_NOTFOUND, NULL},
	{"not a record: empty", "", 0, RC_NOTFOUND, NULL},
	{"not a record: leading space", " v=spf1 -all", 0, RC_NOTFOUND, NULL},

	{"unknown mechanism", "v=spf1 ip4:1.2.3.4 -all moo", 0, RC_INVALID,
	 "unknown mechanism 'moo'"},
	{"slash before =", "v=spf1 moo.cow/far_out=man:dog/cat ip4:1.2.3.4 -all", 0, RC_INVALID,
	 "unknown mechanism"},
	{"colon before =", "v=spf1 moo.cow:far_out=man:dog/cat ip4:1.2.3.4 -all", 0, RC_INVALID,
	 "unknown mechanism"},
	{"redirect is a modifier", "v=spf1 ip4:1.2.3.4 redirect:t2.example.com", 0, RC_INVALID,
	 "unknown mechanism"},
	{"modifier name must begin with a letter", "v=spf1 1up=foo", 0, RC_INVALID,
	 "unknown mechanism"},
	{"empty modifier name", "v=spf1 =all", 0, RC_INVALID, "unknown mechanism"},
	{"all.", "v=spf1 -all.", 0, RC_INVALID, "unknown mechanism"},
	{"all:arg", "v=spf1 -all:foobar", 0, RC_INVALID, "no argument"},
	{"all/cidr", "v=spf1 -all/8", 0, RC_INVALID, "no argument"},
	{"qualifier alone", "v=spf1 -", 0, RC_INVALID, "unknown mechanism"},
	{"two qualifiers", "v=spf1 +-all", 0, RC_INVALID, "unknown mechanism"},
	{"ptr/cidr", "v=spf1 ptr/0 -all", 0, RC_INVALID, "needs ':'"},
	{"ptr: empty", "v=spf1 ptr:", 0, RC_INVALID, "bad domain-spec"},
	{"a/33", "v=spf1 a/33 -all", 0, RC_INVALID, "prefix"},
	{"a//129", "v=spf1 a//129 -all", 0, RC_INVALID, "prefix"},
	{"a/24/64", "v=spf1 a/24/64 -all", 0, RC_INVALID, "prefix"},
	{"mx/33", "v=spf1 mx/33 -all", 0, RC_INVALID, "prefix"},
	{"a: empty", "v=spf1 a:", 0, RC_INVALID, "bad domain-spec"},
	{"mx: empty", "v=spf1 mx: -all", 0, RC_INVALID, "bad domain-spec"},
	{"a:domain:port", "v=spf1 a:example.com:8080", 0, RC_INVALID, "bad domain-spec"},
	{"a:address", "v=spf1 a:111.222.33.44", 0, RC_INVALID, "bad domain-spec"},
	{"numeric toplabel", "v=spf1 a:abc.123", 0, RC_INVALID, "bad domain-spec"},
	{"only a toplabel", "v=spf1 a:museum", 0, RC_INVALID, "bad domain-spec"},
	{"only a toplabel and a dot", "v=spf1 a:museum.", 0, RC_INVALID, "bad domain-spec"},
	{"toplabel begins with -", "v=spf1 a:example.-com", 0, RC_INVALID, "bad domain-spec"},
	{"toplabel without dot", "v=spf1 a:foo-bar -all", 0, RC_INVALID, "bad domain-spec"},
	{"macro then a dot", "v=spf1 a:%{d}.", 0, RC_INVALID, "bad domain-spec"},
	{"include alone", "v=spf1 include", 0, RC_INVALID, "needs ':'"},
	{"include: empty", "v=spf1 include: -all", 0, RC_INVALID, "bad domain-spec"},
	{"include/cidr", "v=spf1 include:ip5.example.com/24 -all", 0, RC_INVALID,
	 "bad domain-spec"},
	{"exists alone", "v=spf1 exists", 0, RC_INVALID, "needs ':'"},
	{"exists: empty", "v=spf1 exists:", 0, RC_INVALID, "bad domain-spec"},
	{"exists/cidr", "v=spf1 exists:mail.example.com/24", 0, RC_INVALID, "bad domain-spec"},
	{"ip4 alone", "v=spf1 ip4", 0, RC_INVALID, "needs an address"},
	{"ip4/33", "v=spf1 ip4:1.2.3.4/33 -all", 0, RC_INVALID, "prefix"},
	{"ip4/032", "v=spf1 ip4:1.2.3.4/032 -all", 0, RC_INVALID, "prefix"},
	{"ip4//32", "v=spf1 ip4:1.2.3.4//32", 0, RC_INVALID, "prefix"},
	{"ip4/", "v=spf1 ip4:1.2.3.4/", 0, RC_INVALID, "prefix"},
	{"ip4 with a port", "v=spf1 ip4:1.2.3.4:8080", 0, RC_INVALID, "bad address"},
	{"ip4 with three octets", "v=spf1 ip4:1.2.3", 0, RC_INVALID, "bad address"},
	{"ip4 with a leading zero", "v=spf1 ip4:01.2.3.4", 0, RC_INVALID, "bad address"},
	{"ip4 octet over 255", "v=spf1 ip4:1.2.3.256", 0, RC_INVALID, "bad address"},
	{"ip6 alone", "v=spf1 -all ip6", 0, RC_INVALID, "needs an address"},
	{"ip6 bad", "v=spf1 ip6::CAFE::BABE", 0, RC_INVALID, "bad address"},
	{"ip6/129", "v=spf1 ip6:::1.1.1.1/129", 0, RC_INVALID, "prefix"},
	{"ip6//33", "v=spf1 ip6:::1.1.1.1//33", 0, RC_INVALID, "prefix"},
	{"unknown modifier with a bad macro", "v=spf1 -all foo=%abc", 0, RC_INVALID, "bad macro"},
	{"unknown modifier with %{c}", "v=spf1 foo=%{c}", 0, RC_INVALID, "bad macro"},
	{"exp= empty", "v=spf1 exp= -all", 0, RC_INVALID, "bad domain-spec"},
	{"exp=-all", "v=spf1 exp=-all", 0, RC_INVALID, "bad domain-spec"},
	{"exp with %{r}", "v=spf1 -all exp=%{r}.example.com", 0, RC_INVALID, "bad domain-spec"},
	{"redirect=-all", "v=spf1 redirect=-all ?all", 0, RC_INVALID, "bad domain-spec"},
	{"redirect= empty", "v=spf1 ?all redirect=", 0, RC_INVALID, "bad domain-spec"},
	{"exp twice", "v=spf1 exp=a.example.com -all exp=b.example.com", 0, RC_INVALID,
	 "exp= more than once"},
	{"redirect twice", "v=spf1 redirect=e12.example.com -all redirect=e12.example.com", 0,
	 RC_INVALID, "redirect= more than once"},
	{"%( in a domain", "v=spf1 -exists:%(ir).sbl.example.com ?all", 0, RC_INVALID,
	 "bad domain-spec"},
	{"% alone in a domain", "v=spf1 exists:foo%.sbl.example.com ?all", 0, RC_INVALID,
	 "bad domain-spec"},
	{"unknown macro letter", "v=spf1 a:%{a}.example.com -all", 0, RC_INVALID,
	 "bad domain-spec"},
	{"a CR between terms", "v=spf1 a:ctrl.example.com\rptr -all", 0, RC_INVALID,
	 "character 0x0d"},
	{"non-ASCII before a mechanism", "v=spf1 \x80" "a:example.net -all", 0, RC_INVALID,
	 "character 0x80"},
	{"non-ASCII qualifier", "v=spf1 a:example.net \x96" "all", 0, RC_INVALID,
	 "character 0x96"},
	{"a NUL", "v=spf1 a:foo.example.com\0", 26, RC_INVALID, "character 0x00"},
};

static void test_record_syntax(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(rec_cases); i++) {
		const struct rec_case *c = &rec_cases[i];
		char why[256] = "";
		size_t len = c->len ? c->len : strlen(c->rec);
		enum rc rc = dns_spf_record_check(c->rec, len, why, sizeof why);
		if (rc != c->rc)
			fail_msg("case '%s': %s (%s), want %s", c->label, rc_name(rc), why,
				 rc_name(c->rc));
		if (c->why && strstr(why, c->why) == NULL)
			fail_msg("case '%s': why '%s', want '%s'", c->label, why, c->why);
		CHECK(c->label, dns_spf_is_record(c->rec, len) == (c->rc != RC_NOTFOUND));
	}
}

/* The terms as parsed: kinds, qualifiers, arguments, prefix lengths. */
static void test_record_terms(void **state)
{
	static const char rec[] = "v=spf1 -a:%{d}/24//64 ~MX ip4:192.0.2.0/24 "
				  "?ip6:2001:db8::/32 exists:x.%{d} foo=bar ptr redirect=r.example";
	static const struct {
		enum dns_spf_term_kind kind;
		char qual;
		const char *spec;	/* NULL: none */
		unsigned c4, c6;
	} want[] = {
		{DNS_SPF_T_A, '-', "%{d}", 24, 64},
		{DNS_SPF_T_MX, '~', NULL, 32, 128},
		{DNS_SPF_T_IP4, '+', NULL, 24, 128},
		{DNS_SPF_T_IP6, '?', NULL, 32, 32},
		{DNS_SPF_T_EXISTS, '+', "x.%{d}", 32, 128},
		{DNS_SPF_T_UNKNOWN, 0, "bar", 32, 128},
		{DNS_SPF_T_PTR, '+', NULL, 32, 128},
		{DNS_SPF_T_REDIRECT, 0, "r.example", 32, 128},
	};
	size_t pos = 0;
	struct dns_spf_term t;
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		char why[128] = "";
		assert_int_equal(dns_spf_term_next(rec, strlen(rec), &pos, &t, why, sizeof why),
				 RC_OK);
		assert_int_equal(t.kind, want[i].kind);
		assert_int_equal(t.qual, want[i].qual);
		assert_int_equal(t.cidr4, want[i].c4);
		assert_int_equal(t.cidr6, want[i].c6);
		if (want[i].spec == NULL)
			assert_null(t.spec);
		else
			assert_true(t.spec && t.speclen == strlen(want[i].spec) &&
				    memcmp(t.spec, want[i].spec, t.speclen) == 0);
	}
	assert_int_equal(dns_spf_term_next(rec, strlen(rec), &pos, &t, NULL, 0), RC_NOTFOUND);
	assert_int_equal(pos, strlen(rec));
	pos = 0;
	assert_int_equal(dns_spf_term_next(rec, strlen(rec), &pos, &t, NULL, 0), RC_OK);
	assert_true(t.textlen == 14 && memcmp(t.text, "-a:%{d}/24//64", 14) == 0);
	assert_string_equal(dns_spf_term_kind_name(DNS_SPF_T_EXISTS), "exists");
	assert_string_equal(dns_spf_term_kind_name((enum dns_spf_term_kind)99), "?");
	/* ip4/ip6 networks */
	static const char r4[] = "v=spf1 ip4:192.0.2.128/25 ip6:2001:db8::cb01";
	pos = 0;
	assert_int_equal(dns_spf_term_next(r4, strlen(r4), &pos, &t, NULL, 0), RC_OK);
	assert_memory_equal(t.net, "\xc0\x00\x02\x80", 4);
	assert_int_equal(t.cidr4, 25);
	assert_int_equal(dns_spf_term_next(r4, strlen(r4), &pos, &t, NULL, 0), RC_OK);
	assert_memory_equal(t.net, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\xcb\x01", 16);
	assert_int_equal(t.cidr6, 128);
}

static void test_names(void **state)
{
	static const char *const want[] = {"none", "neutral", "pass", "fail", "softfail",
					   "temperror", "permerror"};
	for (int r = DNS_SPF_NONE; r <= DNS_SPF_PERMERROR; r++)
		assert_string_equal(dns_spf_result_name((enum dns_spf_result)r), want[r]);
	assert_string_equal(dns_spf_result_name((enum dns_spf_result)42), "?");
}

/* ==== zones for the fake DNS server (fake_dns.h) ========================= */

/* Zone literals for the case tables. */
#define ZONE(...) ((const struct zrec[]){__VA_ARGS__, {NULL, 0, NULL}})
#define TXT(n, d) {n, DNS_TXT, d}
#define ZA(n, d) {n, DNS_A, d}
#define Z6(n, d) {n, DNS_AAAA, d}
#define ZMX(n, d) {n, DNS_MX, d}
#define ZPTR(n, d) {n, T_PTR, d}
#define ZCNAME(n, d) {n, DNS_CNAME, d}
#define RCODE(n, d) {n, Z_RCODE, d}
#define DROP(n) {n, Z_DROP, ""}

/* Does dns_msg_parse decode PTR RDATA (as a name in rr.u.cname)? */
static bool ptr_supported(void)
{
	struct pkt *p = calloc(1, sizeof *p);
	struct dns_answer a;
	hdr(p, 0x8180, 1, 1);
	question(p, "4.3.2.1.in-addr.arpa", T_PTR);
	fake_rr_name(p, T_PTR, 0, "host.example.com");
	enum rc rc = dns_msg_parse(p->b, p->n, "4.3.2.1.in-addr.arpa", T_PTR, &a);
	bool ok = rc == RC_OK && a.nrr == 1 && strcmp(a.rr[0].u.cname, "host.example.com") == 0;
	dns_answer_fini(&a);
	free(p);
	return ok;
}

/* ==== the environment ===================================================== */

/* env_init - the environment over zones z1 and z2 (see fake_dns.h). */
static void env_init(struct env *e, const struct zrec *z1, const struct zrec *z2,
		     unsigned timeout_ms)
{
	env_start(e, "example", true, z1, z2, timeout_ms);
}

struct spf_res {
	bool done;
	int calls;
	uint64_t cookie;
	struct dns_spf_outcome o;
};

static void on_spf(void *ctx, uint64_t cookie, const struct dns_spf_outcome *o)
{
	struct spf_res *r = ctx;
	r->calls++;
	r->done = true;
	r->cookie = cookie;
	r->o = *o;
}

static void to_sockaddr(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	s6->sin6_family = AF_INET6;
}

/* One evaluation, run to its callback. */
static void spf_eval(struct env *e, const char *label, const char *ip, const char *sender,
		     const char *helo, struct spf_res *res)
{
	struct sockaddr_storage ss;
	to_sockaddr(ip, &ss);
	memset(res, 0, sizeof *res);
	dns_spf_check(e->dns, (struct sockaddr *)&ss, sender, helo, "mx.receiver.example", on_spf,
		      res, 4242);
	CHECK(label, res->calls == 0);	/* never inline */
	run_until(e, &res->done, 8000);
	CHECK(label, res->done);
	run_for(e, 2);
	CHECK(label, res->calls == 1 && res->cookie == 4242);
	if (getenv("TEST_DNS_DEBUG"))
		fprintf(stderr, "case '%s' %s %s: %s mech='%s' lookups=%u voids=%u '%s'\n", label,
			ip, sender, dns_spf_result_name(res->o.result), res->o.mechanism,
			res->o.dns_lookups, res->o.void_lookups, res->o.explanation);
}

/* ==== end to end ========================================================== */

#define PASS DNS_SPF_PASS
#define FAIL DNS_SPF_FAIL
#define SOFT DNS_SPF_SOFTFAIL
#define NEUT DNS_SPF_NEUTRAL
#define NONE DNS_SPF_NONE
#define TEMP DNS_SPF_TEMPERROR
#define PERM DNS_SPF_PERMERROR

struct chk {
	const char *ip;			/* NULL ends the list */
	enum dns_spf_result want;
	const char *mech;		/* the deciding mechanism, or NULL: not checked */
	const char *sender;		/* NULL: the case's */
};

#define CK(i, w) {.ip = i, .want = w}
#define CKM(i, w, m) {.ip = i, .want = w, .mech = m}
#define CKS(i, w, m, s) {.ip = i, .want = w, .mech = m, .sender = s}

struct e2e_case {
	const char *label;
	const struct zrec *zone;
	const struct zrec *base;	/* a second zone (appendix A), or NULL */
	const char *sender;		/* NULL: "user@example.com" */
	const char *helo;		/* NULL: "mail.example.net" */
	struct chk chk[10];
	const char *expl;		/* part of every explanation, or NULL */
	const char *counts;		/* "lookups=N voids=M", or NULL */
	unsigned timeout_ms;		/* 0: 2 s */
};

/* RFC 7208 appendix A. */
static const struct zrec zone_rfc[] = {
	ZMX("example.com", "10 mail-a.example.com"),
	ZMX("example.com", "20 mail-b.example.com"),
	ZA("example.com", "192.0.2.10"),
	ZA("example.com", "192.0.2.11"),
	ZA("amy.example.com", "192.0.2.65"),
	ZA("bob.example.com", "192.0.2.66"),
	ZA("mail-a.example.com", "192.0.2.129"),
	ZA("mail-b.example.com", "192.0.2.130"),
	ZCNAME("www.example.com", "example.com"),
	ZMX("example.org", "10 mail-c.example.org"),
	ZA("mail-c.example.org", "192.0.2.140"),
	{NULL, 0, NULL},
};

/* The same, renumbered from 192.0.2.0/24 to 198.18.2.0/24 (and the rogue
 * 10.0.0.4 to 198.19.0.4) so that the PTR lookups reach the fake. */
static const struct zrec zone_rfc_ptr[] = {
	ZMX("example.com", "10 mail-a.example.com"),
	ZMX("example.com", "20 mail-b.example.com"),
	ZA("example.com", "198.18.2.10"),
	ZA("example.com", "198.18.2.11"),
	ZA("amy.example.com", "198.18.2.65"),
	ZA("bob.example.com", "198.18.2.66"),
	ZA("mail-a.example.com", "198.18.2.129"),
	ZA("mail-b.example.com", "198.18.2.130"),
	ZMX("example.org", "10 mail-c.example.org"),
	ZA("mail-c.example.org", "198.18.2.140"),
	ZPTR("10.2.18.198.in-addr.arpa", "example.com"),
	ZPTR("11.2.18.198.in-addr.arpa", "example.com"),
	ZPTR("65.2.18.198.in-addr.arpa", "amy.example.com"),
	ZPTR("66.2.18.198.in-addr.arpa", "bob.example.com"),
	ZPTR("129.2.18.198.in-addr.arpa", "mail-a.example.com"),
	ZPTR("130.2.18.198.in-addr.arpa", "mail-b.example.com"),
	ZPTR("140.2.18.198.in-addr.arpa", "mail-c.example.org"),
	ZPTR("4.0.19.198.in-addr.arpa", "bob.example.com"),
	{NULL, 0, NULL},
};

#define DNS_TERMS_11                                                                               \
	"v=spf1 include:i1.example.net include:i2.example.net include:i3.example.net "              \
	"include:i4.example.net include:i5.example.net include:i6.example.net |"                   \
	"include:i7.example.net include:i8.example.net include:i9.example.net "                    \
	"include:i10.example.net include:i11.example.net -all"
#define INCLUDED_NEUTRAL                                                                           \
	TXT("i1.example.net", "v=spf1 ?all"), TXT("i2.example.net", "v=spf1 ?all"),                \
	    TXT("i3.example.net", "v=spf1 ?all"), TXT("i4.example.net", "v=spf1 ?all"),            \
	    TXT("i5.example.net", "v=spf1 ?all"), TXT("i6.example.net", "v=spf1 ?all"),            \
	    TXT("i7.example.net", "v=spf1 ?all"), TXT("i8.example.net", "v=spf1 ?all"),            \
	    TXT("i9.example.net", "v=spf1 ?all"), TXT("i10.example.net", "v=spf1 ?all"),           \
	    TXT("i11.example.net", "v=spf1 ip4:192.0.2.1")

static const struct e2e_case e2e_cases[] = {
	/* ---- record selection (4.3-4.5) ---- */
	{.label = "no TXT record: none",
	 .zone = ZONE(ZA("example.com", "192.0.2.1")),
	 .chk = {CKM("192.0.2.1", NONE, "")},
	 .expl = "example.com has no SPF record",
	 .counts = "lookups=0 voids=1"},
	{.label = "NXDOMAIN: none",
	 .zone = ZONE(ZA("example.com", "192.0.2.1")),
	 .sender = "user@nx.example.com",
	 .chk = {CK("192.0.2.1", NONE)},
	 .expl = "nx.example.com does not exist"},
	{.label = "no TXT record beginning v=spf1: none",
	 .zone = ZONE(TXT("example.com", "google-site-verification=abc"),
		      TXT("example.com", "v=spf10 -all"), TXT("example.com", "spf1 -all")),
	 .chk = {CK("192.0.2.1", NONE)},
	 .expl = "has no SPF record"},
	{.label = "two SPF records: permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all"), TXT("example.com", "V=SPF1 +all")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "example.com has 2 SPF records"},
	{.label = "the SPF record among others, non-ASCII ones too",
	 .zone = ZONE(TXT("example.com", "foo"), TXT("example.com", "v=spf1 -all"),
		      TXT("example.com", "\x96")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")}},
	{.label = "TXT strings are joined without spaces",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.1| -all")),
	 .chk = {CKM("192.0.2.1", PASS, "ip4:192.0.2.1"), CKM("192.0.2.2", FAIL, "-all")}},
	{.label = "TXT strings joined: v=spf1mx is no record",
	 .zone = ZONE(TXT("example.com", "v=spf1|mx")),
	 .chk = {CK("192.0.2.1", NONE)}},
	{.label = "the version is case-insensitive",
	 .zone = ZONE(TXT("example.com", "V=SpF1 ~all")),
	 .chk = {CKM("192.0.2.1", SOFT, "~all")}},
	{.label = "a syntax error anywhere: permerror before any match",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.1 -all moo")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "unknown mechanism 'moo'",
	 .counts = "lookups=0 voids=0"},
	{.label = "SERVFAIL: temperror",
	 .zone = ZONE(RCODE("example.com", "2")),
	 .chk = {CK("192.0.2.1", TEMP)},
	 .expl = "DNS lookup of TXT example.com failed"},
	{.label = "timeout: temperror",
	 .zone = ZONE(DROP("example.com")),
	 .chk = {CK("192.0.2.1", TEMP)},
	 .expl = "DNS lookup of TXT example.com failed",
	 .timeout_ms = 300},
	{.label = "malformed domains: none without a query",
	 .zone = ZONE(TXT("example.com", "v=spf1 +all")),
	 .chk = {CKS("192.0.2.1", NONE, NULL, "user@example"),
		 CKS("192.0.2.1", NONE, NULL, "user@a..example.com"),
		 CKS("192.0.2.1", NONE, NULL, "user@[192.0.2.1]"),
		 {"192.0.2.1", NONE, NULL, "user@a12345678901234567890123456789012345678901234567890"
					   "12345678901234.example.com"}},
	 .expl = "is not a valid domain name"},
	{.label = "63-octet label is fine, trailing dot too",
	 .zone = ZONE(TXT("a12345678901234567890123456789012345678901234567890123456789012."
			  "example.com", "v=spf1 -all")),
	 .chk = {{"192.0.2.1", FAIL, NULL,
		  "user@a12345678901234567890123456789012345678901234567890123456789012."
		  "example.com."}}},
	{.label = "null sender: postmaster@HELO",
	 .zone = ZONE(TXT("mail.example.net", "v=spf1 -all exp=why.example.net"),
		      TXT("why.example.net", "%{s} via %{h} (%{o}, %{d})")),
	 .sender = "",
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .expl = "postmaster@mail.example.net via mail.example.net (mail.example.net, "
		 "mail.example.net)"},
	{.label = "no local-part: postmaster",
	 .zone = ZONE(TXT("example.net", "v=spf1 -all exp=why.example.net"),
		      TXT("why.example.net", "%{l}")),
	 .sender = "@example.net",
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "postmaster"},

	/* ---- mechanisms and qualifiers (5) ---- */
	{.label = "all and the qualifiers",
	 .zone = ZONE(TXT("p.example.com", "v=spf1 +all"), TXT("m.example.com", "v=spf1 -all"),
		      TXT("t.example.com", "v=spf1 ~all"), TXT("q.example.com", "v=spf1 ?all"),
		      TXT("n.example.com", "v=spf1 all"), TXT("e.example.com", "v=spf1")),
	 .chk = {CKS("192.0.2.1", PASS, "+all", "u@p.example.com"),
		 CKS("192.0.2.1", FAIL, "-all", "u@m.example.com"),
		 CKS("192.0.2.1", SOFT, "~all", "u@t.example.com"),
		 CKS("192.0.2.1", NEUT, "?all", "u@q.example.com"),
		 CKS("192.0.2.1", PASS, "all", "u@n.example.com"),
		 CKS("192.0.2.1", NEUT, "", "u@e.example.com")},
	 .counts = "lookups=0 voids=0"},
	{.label = "qualifiers on mechanisms",
	 .zone = ZONE(TXT("example.com", "v=spf1 -ip4:192.0.2.1 ~ip4:192.0.2.2 ?ip4:192.0.2.3 "
					 "+ip4:192.0.2.4 ip4:192.0.2.5 -all")),
	 .chk = {CKM("192.0.2.1", FAIL, "-ip4:192.0.2.1"),
		 CKM("192.0.2.2", SOFT, "~ip4:192.0.2.2"),
		 CKM("192.0.2.3", NEUT, "?ip4:192.0.2.3"),
		 CKM("192.0.2.4", PASS, "+ip4:192.0.2.4"),
		 CKM("192.0.2.5", PASS, "ip4:192.0.2.5"),
		 CKM("192.0.2.6", FAIL, "-all")}},
	{.label = "ip4 with CIDR lengths",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 "
					 "ip4:203.0.113.77/30 -all")),
	 .chk = {CKM("192.0.2.99", PASS, "ip4:192.0.2.0/24"),
		 CKM("198.51.100.7", PASS, "ip4:198.51.100.7"),
		 CK("198.51.100.8", FAIL),
		 CK("203.0.113.79", PASS),
		 CK("203.0.113.80", FAIL),
		 CK("2001:db8::1", FAIL),
		 CKM("::ffff:192.0.2.5", PASS, "ip4:192.0.2.0/24")},
	 .counts = "lookups=0 voids=0"},
	{.label = "ip6 with CIDR lengths",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip6:2001:db8::/32 ip6:2001:db9::1 "
					 "ip6:2001:dba:8000::/33 -all")),
	 .chk = {CKM("2001:db8:1::1", PASS, "ip6:2001:db8::/32"),
		 CKM("2001:db9::1", PASS, "ip6:2001:db9::1"),
		 CK("2001:db9::2", FAIL),
		 CK("2001:dba:8000::1", PASS),
		 CK("2001:dba:7fff::1", FAIL),
		 CK("192.0.2.1", FAIL)}},
	{.label = "an IPv4-mapped client is IPv4: ip6 never matches it",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip6:::ffff:192.0.2.1 ip6:::/0 -all")),
	 .chk = {CKM("::ffff:192.0.2.1", FAIL, "-all"), CKM("2001:db8::1", PASS, "ip6:::/0")}},
	{.label = "a: A for IPv4, AAAA for IPv6",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:dual.example.com -all"),
		      ZA("dual.example.com", "192.0.2.60"), Z6("dual.example.com", "2001:db8::60")),
	 .chk = {CKM("192.0.2.60", PASS, "a:dual.example.com"),
		 CK("2001:db8::60", PASS),
		 CK("192.0.2.61", FAIL),
		 CK("::ffff:192.0.2.60", PASS)},
	 .counts = "lookups=1 voids=0"},
	{.label = "a with a dual CIDR length",
	 .zone = ZONE(TXT("example.com", "v=spf1 a/24//64 -all"), ZA("example.com", "192.0.2.50"),
		      Z6("example.com", "2001:db8:1:2::1")),
	 .chk = {CKM("192.0.2.51", PASS, "a/24//64"),
		 CK("192.0.3.50", FAIL),
		 CK("2001:db8:1:2:ffff::9", PASS),
		 CK("2001:db8:1:3::1", FAIL)}},
	{.label = "a//0 needs an AAAA record to match anything",
	 .zone = ZONE(TXT("example.com", "v=spf1 a//0 -all"), ZA("example.com", "1.1.1.1")),
	 .chk = {CK("2001:db8::1", FAIL), CK("192.0.2.1", FAIL)}},
	{.label = "a/0 matches any IPv4 when there is an A record",
	 .zone = ZONE(TXT("example.com", "v=spf1 a/0 -all"), ZA("example.com", "1.1.1.1")),
	 .chk = {CKM("192.0.2.1", PASS, "a/0"), CK("2001:db8::1", FAIL)}},
	{.label = "mx with a CIDR length",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx/24//48 -all"), ZMX("example.com", "10 mx1.example.com"),
		      ZMX("example.com", "5 mx2.example.com"), ZA("mx1.example.com", "192.0.2.1"),
		      Z6("mx2.example.com", "2001:db8:5::1")),
	 .chk = {CKM("192.0.2.200", PASS, "mx/24//48"),
		 CK("192.0.3.1", FAIL),
		 CK("2001:db8:5:ffff::1", PASS),
		 CK("2001:db8:6::1", FAIL)}},
	/* issue 11: an IPv6 client matched by mx in a record that also has redirect= */
	{.label = "mx matches an IPv6 client before redirect=",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx redirect=_spf.example.net"),
		      ZMX("example.com", "10 mx1.example.com"),
		      ZMX("example.com", "20 mx2.example.com"), ZA("mx1.example.com", "192.0.2.1"),
		      Z6("mx2.example.com", "2001:db8:7::1"),
		      TXT("_spf.example.net", "v=spf1 ip4:192.0.2.99 -all")),
	 .chk = {CKM("2001:db8:7::1", PASS, "mx"), CKM("192.0.2.1", PASS, "mx"),
		 CK("192.0.2.99", PASS), CK("2001:db8:7::2", FAIL), CK("192.0.2.2", FAIL)}},
	{.label = "mx: an IPv6 client, IPv4-only exchanges are not void terms",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx redirect=_spf.example.net"),
		      ZMX("example.com", "10 mx1.example.com"), ZMX("example.com", "20 mx2.example.com"),
		      ZMX("example.com", "30 mx3.example.com"), ZMX("example.com", "40 mx4.example.com"),
		      ZA("mx1.example.com", "192.0.2.1"), ZA("mx2.example.com", "192.0.2.2"),
		      ZA("mx3.example.com", "192.0.2.3"), Z6("mx4.example.com", "2001:db8:7::4"),
		      TXT("_spf.example.net", "v=spf1 -all")),
	 .chk = {CKM("2001:db8:7::4", PASS, "mx"), CKM("192.0.2.3", PASS, "mx"),
		 CKM("2001:db8:7::5", FAIL, "-all")}},
	{.label = "mx with a prefix matches an IPv6 client before redirect=",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx//64 redirect=_spf.example.net"),
		      ZMX("example.com", "10 mx2.example.com"),
		      Z6("mx2.example.com", "2001:db8:7::1"),
		      TXT("_spf.example.net", "v=spf1 -all")),
	 .chk = {CKM("2001:db8:7::9", PASS, "mx//64"), CK("2001:db8:8::1", FAIL)}},
	{.label = "redirect= to a record whose mx matches an IPv6 client",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=_spf.example.net"),
		      TXT("_spf.example.net", "v=spf1 mx -all"),
		      ZMX("_spf.example.net", "10 mx2.example.net"),
		      Z6("mx2.example.net", "2001:db8:7::1")),
	 .chk = {CKM("2001:db8:7::1", PASS, "mx"), CK("2001:db8:7::2", FAIL)}},
	/* issue 11: the escapes %%, %_ and %- inside a domain-spec (7.1) */
	{.label = "escapes in a domain-spec",
	 .zone = ZONE(TXT("example.com", "v=spf1 exists:a%%b.%{d} exists:c%_d.%{d} "
					 "exists:e%-f.%{d} -all"),
		      ZA("a%b.example.com", "127.0.0.2"), ZA("c d.example.com", "127.0.0.2"),
		      ZA("e%20f.example.com", "127.0.0.2")),
	 .chk = {CKM("192.0.2.1", PASS, "exists:a%%b.%{d}")}},
	{.label = "%- escape in a domain-spec",
	 .zone = ZONE(TXT("example.com", "v=spf1 exists:e%-f.%{d} -all"),
		      ZA("e%20f.example.com", "127.0.0.2")),
	 .chk = {CKM("192.0.2.1", PASS, "exists:e%-f.%{d}")}},
	{.label = "%_ escape in a domain-spec",
	 .zone = ZONE(TXT("example.com", "v=spf1 exists:c%_d.%{d} -all"),
		      ZA("c d.example.com", "127.0.0.2")),
	 .chk = {CKM("192.0.2.1", PASS, "exists:c%_d.%{d}")}},
	{.label = "escapes as the domain-end",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:%{d}.%% -all")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")}},
	{.label = "mx never falls back to the implicit MX",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx -all"), ZA("example.com", "192.0.2.70")),
	 .chk = {CKM("192.0.2.70", FAIL, "-all")},
	 .counts = "lookups=1 voids=1"},
	{.label = "mx: a null MX names no host",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx ?all"), ZMX("example.com", "0 .")),
	 .chk = {CKM("192.0.2.1", NEUT, "?all")},
	 .counts = "lookups=1 voids=0"},
	{.label = "mx: 10 MX records are fine",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx -all"), ZMX("example.com", "1 m1.example.com"),
		      ZMX("example.com", "2 m2.example.com"), ZMX("example.com", "3 m3.example.com"),
		      ZMX("example.com", "4 m4.example.com"), ZMX("example.com", "5 m5.example.com"),
		      ZMX("example.com", "6 m6.example.com"), ZMX("example.com", "7 m7.example.com"),
		      ZMX("example.com", "8 m8.example.com"), ZMX("example.com", "9 m9.example.com"),
		      ZMX("example.com", "10 m10.example.com"), ZA("m1.example.com", "192.0.2.1"),
		      ZA("m2.example.com", "192.0.2.2"), ZA("m3.example.com", "192.0.2.3"),
		      ZA("m4.example.com", "192.0.2.4"), ZA("m5.example.com", "192.0.2.5"),
		      ZA("m6.example.com", "192.0.2.6"), ZA("m7.example.com", "192.0.2.7"),
		      ZA("m8.example.com", "192.0.2.8"), ZA("m9.example.com", "192.0.2.9"),
		      ZA("m10.example.com", "192.0.2.10")),
	 .chk = {CKM("192.0.2.10", PASS, "mx"), CK("192.0.2.11", FAIL)}},
	{.label = "mx: 11 MX records: permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx -all"), ZMX("example.com", "1 m1.example.com"),
		      ZMX("example.com", "2 m2.example.com"), ZMX("example.com", "3 m3.example.com"),
		      ZMX("example.com", "4 m4.example.com"), ZMX("example.com", "5 m5.example.com"),
		      ZMX("example.com", "6 m6.example.com"), ZMX("example.com", "7 m7.example.com"),
		      ZMX("example.com", "8 m8.example.com"), ZMX("example.com", "9 m9.example.com"),
		      ZMX("example.com", "10 m10.example.com"),
		      ZMX("example.com", "11 m11.example.com"), ZA("m1.example.com", "192.0.2.1")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "example.com has more than 10 MX records"},
	{.label = "mx: an exchange's address lookup fails: temperror",
	 .zone = ZONE(TXT("example.com", "v=spf1 mx -all"), ZMX("example.com", "10 bad.example.com"),
		      RCODE("bad.example.com", "2")),
	 .chk = {CK("192.0.2.1", TEMP)},
	 .expl = "bad.example.com failed"},
	{.label = "exists asks for A, even for IPv6 clients",
	 .zone = ZONE(TXT("example.com", "v=spf1 exists:%{l}.ok.%{d} -all"),
		      ZA("user.ok.example.com", "127.0.0.2"), Z6("other.ok.example.com", "::2")),
	 .chk = {CKM("2001:db8::1", PASS, "exists:%{l}.ok.%{d}"),
		 CK("192.0.2.1", PASS),
		 CKS("192.0.2.1", FAIL, "-all", "other@example.com")}},
	{.label = "exists with %{i} and %{v}",
	 .zone = ZONE(TXT("example.com", "v=spf1 -exists:%{ir}.%{v}.bl.example.net +all"),
		      ZA("5.2.0.192.in-addr.bl.example.net", "127.0.0.2")),
	 .chk = {CKM("192.0.2.5", FAIL, "-exists:%{ir}.%{v}.bl.example.net"),
		 CKM("192.0.2.6", PASS, "+all")}},
	{.label = "a DNS error in a mechanism: temperror",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:err.example.com ?all"),
		      RCODE("err.example.com", "2")),
	 .chk = {CK("192.0.2.1", TEMP)}},
	{.label = "a target that no query can carry does not match",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:%{l}.example.com -all")),
	 .chk = {CKS("192.0.2.1", FAIL, "-all", "x..y@example.com")},
	 .counts = "lookups=1 voids=0"},
	{.label = "an unknown modifier is ignored",
	 .zone = ZONE(TXT("example.com", "v=spf1 default=pass moo=%{d} ?all")),
	 .chk = {CKM("192.0.2.1", NEUT, "?all")}},

	/* ---- include (5.2) ---- */
	{.label = "include: pass matches, fail does not",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:inc.example.net -all"),
		      TXT("inc.example.net", "v=spf1 ip4:192.0.2.1 -all")),
	 .chk = {CKM("192.0.2.1", PASS, "include:inc.example.net"), CKM("192.0.2.2", FAIL, "-all")},
	 .counts = "lookups=1 voids=0"},
	{.label = "include: softfail and neutral do not match",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:soft.example.net "
					 "include:neu.example.net ?all"),
		      TXT("soft.example.net", "v=spf1 ~all"), TXT("neu.example.net", "v=spf1")),
	 .chk = {CKM("192.0.2.1", NEUT, "?all")},
	 .counts = "lookups=2 voids=0"},
	{.label = "include: the outer qualifier decides",
	 .zone = ZONE(TXT("example.com", "v=spf1 -include:inc.example.net +all"),
		      TXT("inc.example.net", "v=spf1 ip4:192.0.2.1 -all")),
	 .chk = {CKM("192.0.2.1", FAIL, "-include:inc.example.net"), CKM("192.0.2.2", PASS, "+all")}},
	{.label = "include: temperror is the result",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:inc.example.net -all"),
		      RCODE("inc.example.net", "2")),
	 .chk = {CK("192.0.2.1", TEMP)}},
	{.label = "include: permerror is the result",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:inc.example.net +all"),
		      TXT("inc.example.net", "v=spf1 include +all")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "inc.example.net: SPF record syntax error"},
	{.label = "include: none is permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:inc.example.net +all"),
		      TXT("inc.example.net", "v=spfl am not an SPF record")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "include:inc.example.net: inc.example.net has no SPF record"},
	{.label = "include: NXDOMAIN is permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:gone.example.net +all")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "include:gone.example.net: gone.example.net does not exist"},
	{.label = "include: a malformed target is permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:%{l}.example.net +all")),
	 .chk = {CKS("192.0.2.1", PERM, NULL, "a..b@example.com")},
	 .expl = "is not a valid domain name"},
	{.label = "include loop: the lookup limit",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:e3.example.com"),
		      TXT("e3.example.com", "v=spf1 include:example.com")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "more than 10 DNS-querying terms",
	 .counts = "lookups=11 voids=0"},

	/* ---- redirect (6.1) ---- */
	{.label = "redirect: the target's result",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=_spf.example.net"),
		      TXT("_spf.example.net", "v=spf1 ip4:192.0.2.1 -all")),
	 .chk = {CKM("192.0.2.1", PASS, "ip4:192.0.2.1"), CKM("192.0.2.2", FAIL, "-all")},
	 .counts = "lookups=1 voids=0"},
	{.label = "redirect only when no mechanism matched",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.1 redirect=_spf.example.net"),
		      TXT("_spf.example.net", "v=spf1 -all")),
	 .chk = {CKM("192.0.2.1", PASS, "ip4:192.0.2.1"), CKM("192.0.2.2", FAIL, "-all")}},
	{.label = "redirect is never reached after all",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=example.com ~all")),
	 .chk = {CKM("192.0.2.1", SOFT, "~all")},
	 .counts = "lookups=0 voids=0"},
	{.label = "redirect to a domain without record: permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=erehwon.example.net")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "redirect=erehwon.example.net"},
	{.label = "redirect to a malformed target: permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=%{l}.example.net")),
	 .chk = {CKS("192.0.2.1", PERM, NULL, "x..y@example.com")},
	 .expl = "is not a valid domain name"},
	{.label = "redirect loop: the lookup limit",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:1.1.1.1 redirect=example.com")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .counts = "lookups=11 voids=0"},
	{.label = "redirect changes %{d} and the implicit domain",
	 .zone = ZONE(TXT("example.com", "v=spf1 redirect=implicit.example.net"),
		      ZA("example.com", "192.0.2.1"),
		      TXT("implicit.example.net", "v=spf1 a exists:%{d}.ok.example.org -all"),
		      ZA("implicit.example.net", "192.0.2.2"),
		      ZA("implicit.example.net.ok.example.org", "127.0.0.2")),
	 .chk = {CKM("192.0.2.2", PASS, "a"), CKM("192.0.2.1", PASS, "exists:%{d}.ok.example.org")}},

	/* ---- exp (6.2) ---- */
	{.label = "exp with macros",
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.1 -all exp=explain._spf.%{d}"),
		      TXT("explain._spf.example.com",
			  "%{i} is not one of %{d}'s designated mail servers; %{c} %{r} %{L} "
			  "%{v} %{h}")),
	 .sender = "a+b@example.com",
	 .chk = {CKM("192.0.2.9", FAIL, "-all")},
	 .expl = "192.0.2.9 is not one of example.com's designated mail servers; 192.0.2.9 "
		 "mx.receiver.example a%2Bb in-addr mail.example.net"},
	{.label = "exp with %{t}",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "at %{t}.")),
	 .chk = {CK("192.0.2.9", FAIL)},
	 .expl = "at 1"},
	{.label = "exp only for fail",
	 .zone = ZONE(TXT("example.com", "v=spf1 ~all exp=e.example.com"),
		      TXT("e.example.com", "Not used")),
	 .chk = {CK("192.0.2.9", SOFT)},
	 .expl = "does not designate 192.0.2.9 as permitted sender, softly"},
	{.label = "exp of an included record is not used",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:e3.example.com -all exp=exp3.example.com"),
		      TXT("e3.example.com", "v=spf1 exp=exp1.example.com redirect=e4.example.com"),
		      TXT("e4.example.com", "v=spf1 -all exp=exp2.example.com"),
		      TXT("exp1.example.com", "No-see-um"), TXT("exp2.example.com", "See me."),
		      TXT("exp3.example.com", "Correct!")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .expl = "Correct!"},
	{.label = "redirect drops the original exp",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=exp1.example.com redirect=e4.example.com"),
		      TXT("e4.example.com", "v=spf1 -all exp=exp2.example.com"),
		      TXT("exp1.example.com", "No-see-um"), TXT("exp2.example.com", "See me.")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .expl = "See me."},
	{.label = "redirect target without exp: the default",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=exp1.example.com redirect=e2.example.com"),
		      TXT("e2.example.com", "v=spf1 -all"), TXT("exp1.example.com", "No-see-um")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .expl = "e2.example.com does not designate 192.0.2.1 as permitted sender"},
	{.label = "exp: a DNS error is ignored",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=msg.example.com -all"),
		      RCODE("msg.example.com", "2")),
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "does not designate"},
	{.label = "exp: two TXT records are ignored",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=msg.example.com -all"),
		      TXT("msg.example.com", "one"), TXT("msg.example.com", "two")),
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "does not designate"},
	{.label = "exp: a syntax error in the text is ignored",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=msg.example.com -all"),
		      TXT("msg.example.com", "The %{x}-files.")),
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "does not designate"},
	{.label = "exp: non-ASCII text is ignored",
	 .zone = ZONE(TXT("example.com", "v=spf1 exp=msg.example.com -all"),
		      TXT("msg.example.com", "\xef\xbb\xbf" "Explanation")),
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "does not designate"},
	{.label = "exp: no record, not a void lookup",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:nx1.example.com a:nx2.example.com "
					 "exp=nxdomain.example.com -all")),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .expl = "does not designate",
	 .counts = "lookups=2 voids=2"},
	{.label = "exp: strings joined, trailing dot kept, controls replaced",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=msg.example.com."),
		      TXT("msg.example.com", "This is |a test.%{l}")),
	 .sender = "x\ty@example.com",
	 .chk = {CK("192.0.2.1", FAIL)},
	 .expl = "This is a test.x?y"},

	/* ---- limits (4.6.4) ---- */
	{.label = "11 includes: permerror",
	 .zone = ZONE(TXT("example.com", DNS_TERMS_11), INCLUDED_NEUTRAL),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "more than 10 DNS-querying terms (RFC 7208 4.6.4), at 'include:i11.example.net'",
	 .counts = "lookups=11 voids=0"},
	{.label = "10 includes are fine",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:i1.example.net include:i2.example.net "
					 "include:i3.example.net include:i4.example.net "
					 "include:i5.example.net include:i6.example.net |"
					 "include:i7.example.net include:i8.example.net "
					 "include:i9.example.net include:i10.example.net -all"),
		      INCLUDED_NEUTRAL),
	 .chk = {CKM("192.0.2.1", FAIL, "-all")},
	 .counts = "lookups=10 voids=0"},
	{.label = "the limit counts nested terms; terms never reached do not count",
	 .zone = ZONE(TXT("e8.example.com", "v=spf1 a include:inc.example.com ip4:192.0.2.4 mx -all"),
		      ZA("e8.example.com", "192.0.2.44"),
		      TXT("e9.example.com", "v=spf1 a include:inc.example.com a ip4:192.0.2.4 -all"),
		      ZA("e9.example.com", "192.0.2.44"),
		      TXT("inc.example.com", "v=spf1 a a a a a a a a"),
		      ZA("inc.example.com", "192.0.2.45")),
	 .chk = {CKS("192.0.2.4", PASS, "ip4:192.0.2.4", "u@e8.example.com"),
		 CKS("192.0.2.4", PERM, NULL, "u@e9.example.com")}},
	{.label = "two void lookups are fine",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:nx1.example.com a:nx2.example.com ?all")),
	 .chk = {CKM("192.0.2.1", NEUT, "?all")},
	 .counts = "lookups=2 voids=2"},
	{.label = "three void lookups: permerror",
	 .zone = ZONE(TXT("example.com", "v=spf1 a:nx1.example.com a:nx2.example.com "
					 "mx:nx3.example.com ?all"),
		      ZA("nx3.example.com", "192.0.2.1")),
	 .chk = {CK("192.0.2.1", PERM)},
	 .expl = "more than 2 void DNS lookups (RFC 7208 4.6.4), the last: MX nx3.example.com",
	 .counts = "lookups=3 voids=3"},

	/* ---- RFC 7208 A.1 ---- */
	{.label = "A.1 +all", .base = zone_rfc, .zone = ZONE(TXT("example.com", "v=spf1 +all")),
	 .chk = {CK("192.0.2.129", PASS), CK("1.2.3.4", PASS)}},
	{.label = "A.1 a -all", .base = zone_rfc, .zone = ZONE(TXT("example.com", "v=spf1 a -all")),
	 .chk = {CKM("192.0.2.10", PASS, "a"), CK("192.0.2.11", PASS), CK("192.0.2.65", FAIL),
		 CK("192.0.2.129", FAIL)}},
	{.label = "A.1 a:example.org -all", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 a:example.org -all")),
	 .chk = {CK("192.0.2.10", FAIL), CK("192.0.2.140", FAIL)}},
	{.label = "A.1 mx -all", .base = zone_rfc, .zone = ZONE(TXT("example.com", "v=spf1 mx -all")),
	 .chk = {CKM("192.0.2.129", PASS, "mx"), CK("192.0.2.130", PASS), CK("192.0.2.10", FAIL),
		 CK("192.0.2.140", FAIL)}},
	{.label = "A.1 mx:example.org -all", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 mx:example.org -all")),
	 .chk = {CKM("192.0.2.140", PASS, "mx:example.org"), CK("192.0.2.129", FAIL)}},
	{.label = "A.1 mx mx:example.org -all", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 mx mx:example.org -all")),
	 .chk = {CKM("192.0.2.129", PASS, "mx"), CKM("192.0.2.130", PASS, "mx"),
		 CKM("192.0.2.140", PASS, "mx:example.org"), CK("192.0.2.10", FAIL)}},
	{.label = "A.1 mx/30 mx:example.org/30 -all", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 mx/30 mx:example.org/30 -all")),
	 .chk = {CKM("192.0.2.128", PASS, "mx/30"), CK("192.0.2.131", PASS), CK("192.0.2.132", FAIL),
		 CKM("192.0.2.141", PASS, "mx:example.org/30"), CK("192.0.2.143", PASS),
		 CK("192.0.2.144", FAIL)}},
	{.label = "A.1 ip4:192.0.2.128/28 -all", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 ip4:192.0.2.128/28 -all")),
	 .chk = {CK("192.0.2.65", FAIL), CKM("192.0.2.129", PASS, "ip4:192.0.2.128/28")}},

	/* ---- RFC 7208 A.2 (example.com/example.net records are ours) ---- */
	{.label = "A.2 multiple domains", .base = zone_rfc,
	 .zone = ZONE(TXT("example.org", "v=spf1 include:example.com include:example.net -all"),
		      TXT("la.example.org", "v=spf1 redirect=example.org"),
		      TXT("example.com", "v=spf1 mx -all"),
		      TXT("example.net", "v=spf1 ip4:198.51.100.0/24 -all")),
	 .sender = "user@example.org",
	 .chk = {CKM("192.0.2.129", PASS, "include:example.com"),
		 CKM("198.51.100.5", PASS, "include:example.net"),
		 CKM("203.0.113.1", FAIL, "-all"),
		 CKS("192.0.2.130", PASS, "include:example.com", "user@la.example.org"),
		 CKS("203.0.113.1", FAIL, "-all", "user@la.example.org")}},

	/* ---- RFC 7208 A.3 ---- */
	{.label = "A.3 DNSBL style", .base = zone_rfc,
	 .zone = ZONE(TXT("example.com", "v=spf1 mx include:mobile-users._spf.%{d} "
					 "include:remote-users._spf.%{d} -all"),
		      TXT("mobile-users._spf.example.com", "v=spf1 exists:%{l1r+}.%{d}"),
		      TXT("remote-users._spf.example.com", "v=spf1 exists:%{ir}.%{l1r+}.%{d}"),
		      ZA("mary.mobile-users._spf.example.com", "127.0.0.2"),
		      ZA("fred.mobile-users._spf.example.com", "127.0.0.2"),
		      ZA("15.15.168.192.joel.remote-users._spf.example.com", "127.0.0.2"),
		      ZA("16.15.168.192.joel.remote-users._spf.example.com", "127.0.0.2")),
	 .chk = {CKS("203.0.113.9", PASS, "include:mobile-users._spf.%{d}", "mary@example.com"),
		 CKS("203.0.113.9", PASS, NULL, "fred@example.com"),
		 CKS("203.0.113.9", PASS, NULL, "fred+wildcard@example.com"),
		 CKS("203.0.113.9", FAIL, "-all", "joel@example.com"),
		 CKS("192.168.15.15", PASS, "include:remote-users._spf.%{d}", "joel@example.com"),
		 CKS("192.168.15.16", PASS, NULL, "joel@example.com"),
		 CKS("192.168.15.17", FAIL, NULL, "joel@example.com"),
		 CKS("192.168.15.15", PASS, NULL, "joel+x@example.com"),
		 CKS("192.168.15.15", FAIL, "-all", "other@example.com"),
		 CKS("192.0.2.129", PASS, "mx", "anyone@example.com")}},
};

/* The PTR cases: renumbered to 198.18.0.0/15 (see the top of the file). */
static const struct e2e_case ptr_cases[] = {
	{.label = "A.1 ptr -all", .base = zone_rfc_ptr,
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr -all")),
	 .chk = {CKM("198.18.2.10", PASS, "ptr"), CK("198.18.2.11", PASS), CK("198.18.2.65", PASS),
		 CK("198.18.2.66", PASS), CK("198.18.2.129", PASS), CK("198.18.2.130", PASS),
		 CKM("198.18.2.140", FAIL, "-all"), CKM("198.19.0.4", FAIL, "-all")}},
	{.label = "A.4 multiple requirements (with erratum 6216)",
	 .zone = ZONE(TXT("example.com", "v=spf1 |-include:ip4._spf.%{d} |-include:ptr._spf.%{d} "
					 "|+all"),
		      TXT("ip4._spf.example.com", "v=spf1 -ip4:198.18.2.0/24 +all"),
		      TXT("ptr._spf.example.com", "v=spf1 -ptr:example.com +all"),
		      ZPTR("1.2.18.198.in-addr.arpa", "a.example.com"),
		      ZPTR("1.0.18.198.in-addr.arpa", "b.example.com"),
		      ZA("a.example.com", "198.18.2.1"), ZA("b.example.com", "198.18.0.1")),
	 .chk = {CKM("198.18.2.1", PASS, "+all"),
		 CKM("198.18.2.2", FAIL, "-include:ptr._spf.%{d}"),
		 CKM("198.18.0.1", FAIL, "-include:ip4._spf.%{d}"),
		 CKM("198.18.0.2", FAIL, "-include:ip4._spf.%{d}")}},
	{.label = "ptr: names below the target, first 10 PTR names only, IPv6",
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr:Example.COM -all"),
		      ZPTR("5.3.18.198.in-addr.arpa", "a.example.org"),
		      ZPTR("5.3.18.198.in-addr.arpa", "mail.Example.com"),
		      ZA("mail.example.com", "198.18.3.5"),
		      ZPTR("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.b.a.b.e.f.a.c.ip6.arpa",
			   "v6.mail.example.com"),
		      Z6("v6.mail.example.com", "cafe:babe::1"),
		      ZPTR("6.3.18.198.in-addr.arpa", "mail.example.com"),
		      ZPTR("7.3.18.198.in-addr.arpa", "notexample.com"),
		      ZA("notexample.com", "198.18.3.7")),
	 .chk = {CKM("198.18.3.5", PASS, "ptr:Example.COM"),
		 CK("cafe:babe::1", PASS),
		 CKM("198.18.3.6", FAIL, "-all"),	/* not validated */
		 CKM("198.18.3.7", FAIL, "-all")}},	/* not below example.com */
	{.label = "%{p} prefers the domain, then below it, else unknown",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      ZPTR("41.3.18.198.in-addr.arpa", "mx.example.com"),
		      ZPTR("41.3.18.198.in-addr.arpa", "other.example.net"),
		      ZA("mx.example.com", "198.18.3.41"), ZA("other.example.net", "198.18.3.41"),
		      ZPTR("42.3.18.198.in-addr.arpa", "other.example.net"),
		      ZA("other.example.net", "198.18.3.42"),
		      ZPTR("43.3.18.198.in-addr.arpa", "mx.example.com")),
	 .chk = {CK("198.18.3.41", FAIL)},
	 .expl = "connect from mx.example.com"},
	{.label = "%{p}: any validated name when none is below the domain",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      ZPTR("42.3.18.198.in-addr.arpa", "other.example.net"),
		      ZA("other.example.net", "198.18.3.42")),
	 .chk = {CK("198.18.3.42", FAIL)},
	 .expl = "connect from other.example.net"},
	{.label = "%{p}: not validated is unknown",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      ZPTR("43.3.18.198.in-addr.arpa", "mx.example.com"),
		      ZA("mx.example.com", "198.18.3.41")),
	 .chk = {CK("198.18.3.43", FAIL)},
	 .expl = "connect from unknown"},
	{.label = "%{p} in a domain-spec",
	 .zone = ZONE(TXT("example.com", "v=spf1 exists:%{p}.ok.example.net ~all"),
		      ZPTR("41.3.18.198.in-addr.arpa", "mx.example.com"),
		      ZA("mx.example.com", "198.18.3.41"),
		      ZA("mx.example.com.ok.example.net", "127.0.0.2")),
	 .chk = {CKM("198.18.3.41", PASS, "exists:%{p}.ok.example.net"), CK("198.18.3.44", SOFT)}},
	/* issue 11: PTR names compared case-insensitively (5.5) */
	{.label = "ptr: a PTR name in another case",
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr -all"),
		      ZPTR("8.3.18.198.in-addr.arpa", "MAIL.Example.COM"),
		      ZA("mail.example.com", "198.18.3.8"),
		      ZPTR("9.3.18.198.in-addr.arpa", "EXAMPLE.COM"),
		      ZA("example.com", "198.18.3.9"),
		      ZPTR("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.E.B.A.B.E.F.A.C.IP6.ARPA",
			   "V6.Mail.Example.Com"),
		      Z6("v6.mail.example.com", "cafe:babe::2")),
	 .chk = {CKM("198.18.3.8", PASS, "ptr"), CKM("198.18.3.9", PASS, "ptr"),
		 CKM("cafe:babe::2", PASS, "ptr")}},
	{.label = "ptr:Target in another case than the PTR name",
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr:EXAMPLE.com -all"),
		      ZPTR("8.3.18.198.in-addr.arpa", "mail.eXample.com"),
		      ZA("MAIL.example.com", "198.18.3.8")),
	 .chk = {CKM("198.18.3.8", PASS, "ptr:EXAMPLE.com")}},
	/* issue 11: %{p} with several validated names prefers <domain>, then below it */
	{.label = "%{p}: several validated names, one below <domain>",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      ZPTR("46.3.18.198.in-addr.arpa", "a.example.net"),
		      ZPTR("46.3.18.198.in-addr.arpa", "b.example.org"),
		      ZPTR("46.3.18.198.in-addr.arpa", "Mail.EXAMPLE.com"),
		      ZPTR("46.3.18.198.in-addr.arpa", "c.example.info"),
		      ZA("a.example.net", "198.18.3.46"), ZA("b.example.org", "198.18.3.46"),
		      ZA("mail.example.com", "198.18.3.46"), ZA("c.example.info", "198.18.3.46")),
	 .chk = {CK("198.18.3.46", FAIL)},
	 .expl = "connect from mail.example.com"},
	{.label = "%{p}: <domain> itself before a name below it",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      ZPTR("47.3.18.198.in-addr.arpa", "mail.example.com"),
		      ZPTR("47.3.18.198.in-addr.arpa", "a.example.net"),
		      ZPTR("47.3.18.198.in-addr.arpa", "EXAMPLE.COM"),
		      ZA("a.example.net", "198.18.3.47"), ZA("mail.example.com", "198.18.3.47"),
		      ZA("example.com", "198.18.3.47")),
	 .chk = {CK("198.18.3.47", FAIL)},
	 .expl = "connect from example.com"},
	{.label = "%{p} in an include: the included <domain> is preferred",
	 .zone = ZONE(TXT("example.com", "v=spf1 include:example.org -all"),
		      TXT("example.org", "v=spf1 exists:%{p}.ok.example.net -all"),
		      ZPTR("48.3.18.198.in-addr.arpa", "mail.example.com"),
		      ZPTR("48.3.18.198.in-addr.arpa", "mx.example.org"),
		      ZA("mail.example.com", "198.18.3.48"), ZA("mx.example.org", "198.18.3.48"),
		      ZA("mx.example.org.ok.example.net", "127.0.0.2")),
	 .chk = {CKM("198.18.3.48", PASS, "include:example.org")}},
	{.label = "ptr: 11 PTR names, the 11th is not used",
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr:e5.example.com ?all"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e1.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e2.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e3.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e4.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e6.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e7.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e8.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e9.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e10.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e11.example.com"),
		      ZPTR("5.3.2.198.in-addr.arpa", "e5.example.com"),
		      ZA("e5.example.com", "198.2.3.5")),
	 /* libunbound may rotate the RRset: either the 11th is dropped (neutral)
	  * or it came among the first ten (pass); never an error */
	},
};

/* The PTR fallback, which needs no PTR support: a failed PTR lookup is no match
 * (5.5) and %{p} "unknown" (7.3), never an error. */
static const struct e2e_case ptr_fail_cases[] = {
	{.label = "ptr: a failed PTR lookup is no match",
	 .zone = ZONE(TXT("example.com", "v=spf1 ptr ?all"),
		      RCODE("1.3.18.198.in-addr.arpa", "2")),
	 .chk = {CKM("198.18.3.1", NEUT, "?all")}},
	{.label = "%{p}: a failed PTR lookup is unknown",
	 .zone = ZONE(TXT("example.com", "v=spf1 -all exp=e.example.com"),
		      TXT("e.example.com", "connect from %{p}"),
		      RCODE("1.3.18.198.in-addr.arpa", "2")),
	 .chk = {CK("198.18.3.1", FAIL)},
	 .expl = "connect from unknown"},
};

static void run_e2e_case(const struct e2e_case *c)
{
	struct env e;
	env_init(&e, c->zone, c->base, c->timeout_ms ? c->timeout_ms : 2000);
	for (size_t i = 0; i < ARRAY_LEN(c->chk) && c->chk[i].ip; i++) {
		const struct chk *k = &c->chk[i];
		const char *sender = k->sender ? k->sender : c->sender ? c->sender : "user@example.com";
		struct spf_res res;
		spf_eval(&e, c->label, k->ip, sender, c->helo ? c->helo : "mail.example.net", &res);
		const struct dns_spf_outcome *o = &res.o;
		char counts[64];
		snprintf(counts, sizeof counts, "lookups=%u voids=%u", o->dns_lookups,
			 o->void_lookups);
		if (o->result != k->want || (k->mech && strcmp(o->mechanism, k->mech) != 0) ||
		    (c->expl && strstr(o->explanation, c->expl) == NULL) ||
		    (c->counts && strcmp(counts, c->counts) != 0))
			fail_msg("case '%s', %s from %s: %s mechanism '%s' %s \"%s\"; want %s '%s' "
				 "%s \"%s\"", c->label, sender, k->ip,
				 dns_spf_result_name(o->result), o->mechanism, counts,
				 o->explanation, dns_spf_result_name(k->want),
				 k->mech ? k->mech : "*", c->counts ? c->counts : "*",
				 c->expl ? c->expl : "*");
	}
	env_fini(&e);
}

static void test_e2e(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(e2e_cases); i++)
		run_e2e_case(&e2e_cases[i]);
	for (size_t i = 0; i < ARRAY_LEN(ptr_fail_cases); i++)
		run_e2e_case(&ptr_fail_cases[i]);
}

/* The 11 PTR names case: pass or neutral, never more than 10 names tried. */
static void ptr_eleven(const struct e2e_case *c)
{
	struct env e;
	struct spf_res res;
	env_init(&e, c->zone, NULL, 2000);
	spf_eval(&e, c->label, "198.2.3.5", "user@example.com", "mail.example.net", &res);
	CHECK(c->label, res.o.result == NEUT || res.o.result == PASS);
	CHECK(c->label, e.fake.nqueries <= 2 + 1 + 10);
	env_fini(&e);
}

static void test_e2e_ptr(void **state)
{
	if (!ptr_supported())
		fail_msg("dns_msg_parse does not decode PTR records");
	for (size_t i = 0; i < ARRAY_LEN(ptr_cases); i++) {
		const struct e2e_case *c = &ptr_cases[i];
		if (c->chk[0].ip == NULL)
			ptr_eleven(c);
		else
			run_e2e_case(c);
	}
}

/* ==== the API's promises =================================================== */

/* Freeing the resolver drops an evaluation without calling it back. */
static void test_free_outstanding(void **state)
{
	struct env e;
	env_init(&e, ZONE(DROP("example.com"), TXT("example.org", "v=spf1 -all")), NULL, 3000);
	struct sockaddr_storage ss;
	to_sockaddr("192.0.2.1", &ss);
	struct spf_res slow = {0}, quick = {0};
	dns_spf_check(e.dns, (struct sockaddr *)&ss, "u@example.com", "h.example", NULL, on_spf,
		      &slow, 1);
	dns_spf_check(e.dns, (struct sockaddr *)&ss, "u@example.org", "h.example", NULL, on_spf,
		      &quick, 2);
	run_until(&e, &quick.done, 3000);
	assert_int_equal(quick.o.result, DNS_SPF_FAIL);
	dns_spf_check(e.dns, (struct sockaddr *)&ss, "u@example.org", "h.example", NULL, on_spf,
		      &quick, 3);		/* not even started */
	dns_free(e.dns);
	e.dns = NULL;
	run_for(&e, 100);
	assert_int_equal(slow.calls, 0);
	assert_int_equal(quick.calls, 1);
	env_fini(&e);
}

struct free_in_cb {
	struct dns **dns;
	struct spf_res res;
};

static void on_spf_free(void *ctx, uint64_t cookie, const struct dns_spf_outcome *o)
{
	struct free_in_cb *f = ctx;
	on_spf(&f->res, cookie, o);
	dns_free(*f->dns);
	*f->dns = NULL;
}

/* A callback may free the resolver, with another evaluation under way. */
static void test_free_in_callback(void **state)
{
	struct env e;
	env_init(&e, ZONE(DROP("example.com"), TXT("example.org", "v=spf1 +all")), NULL, 3000);
	struct sockaddr_storage ss;
	to_sockaddr("192.0.2.1", &ss);
	struct free_in_cb f = {&e.dns, {0}};
	struct spf_res other = {0};
	dns_spf_check(e.dns, (struct sockaddr *)&ss, "u@example.com", NULL, NULL, on_spf, &other,
		      1);
	dns_spf_check(e.dns, (struct sockaddr *)&ss, "u@example.org", NULL, NULL, on_spf_free, &f,
		      2);
	run_until(&e, &f.res.done, 3000);
	run_for(&e, 50);
	assert_int_equal(f.res.calls, 1);
	assert_int_equal(f.res.o.result, DNS_SPF_PASS);
	assert_int_equal(other.calls, 0);
	env_fini(&e);
}

/* No DNS needed (bad family, malformed domain): still later, never inline. */
static void test_no_dns(void **state)
{
	struct env e;
	env_init(&e, ZONE(TXT("example.com", "v=spf1 +all")), NULL, 3000);
	struct sockaddr_un_like {
		sa_family_t family;
		char path[30];
	} un = {AF_UNIX, "x"};
	struct spf_res res = {0};
	dns_spf_check(e.dns, (struct sockaddr *)&un, "u@example.com", NULL, NULL, on_spf, &res, 9);
	assert_int_equal(res.calls, 0);
	run_until(&e, &res.done, 1000);
	assert_int_equal(res.o.result, DNS_SPF_PERMERROR);
	assert_int_equal(res.cookie, 9);
	unsigned before = e.fake.nqueries;
	spf_eval(&e, "null sender without HELO", "192.0.2.1", "", NULL, &res);
	assert_int_equal(res.o.result, DNS_SPF_NONE);
	assert_int_equal(e.fake.nqueries, before);
	env_fini(&e);
}

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_macro_table),
		cmocka_unit_test(test_macro_truncation),
		cmocka_unit_test(test_record_syntax),
		cmocka_unit_test(test_record_terms),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_e2e),
		cmocka_unit_test(test_e2e_ptr),
		cmocka_unit_test(test_free_outstanding),
		cmocka_unit_test(test_free_in_callback),
		cmocka_unit_test(test_no_dns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
