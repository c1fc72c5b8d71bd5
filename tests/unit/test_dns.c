/*
 * test_dns.c - the dns module: the wire parser and the resolver.
 *
 * Parser: hand-built response packets (the builder of fake_dns.h and below
 * writes names uncompressed, or "label.@12" for a label followed by a pointer to
 * offset 12) against dns_msg_parse, each case with a label and the answer
 * rendered as text ("10 mx.example.com | 20 ..."). The question of every packet
 * is at offset 12, so "@12" is the question name.
 *
 * Resolver end to end: libunbound (dns_new) forwarding to the fake DNS server
 * of fake_dns.h, which this process runs on 127.0.0.1 (a UDP socket on an
 * ephemeral port, served on the same libevent loop). The fake answers exactly
 * the question asked from the zone table below, the way a simple authoritative
 * server would: the records of that name and type, else the name's CNAME
 * (libunbound then asks for the target), else NODATA or NXDOMAIN with an SOA;
 * some names answer an rcode, are never answered, or are answered late. Routes
 * over the resolver: test_mta_route.c.
 * TEST_DNS_DEBUG=1 in the environment prints every question the fake gets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
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

/* ==== packet builder (more in fake_dns.h) ============================== */

#define FL_NOERROR 0x8180		/* QR RD RA, NOERROR */

static void rr_a(struct pkt *p, const char *owner, const char *ip)
{
	uint8_t a[4];
	assert_int_equal(inet_pton(AF_INET, ip, a), 1);
	size_t at = rr_begin(p, owner, DNS_A);
	putbytes(p, a, 4);
	rr_end(p, at);
}

static void rr_aaaa(struct pkt *p, const char *owner, const char *ip)
{
	uint8_t a[16];
	assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
	size_t at = rr_begin(p, owner, DNS_AAAA);
	putbytes(p, a, 16);
	rr_end(p, at);
}

static void rr_mx(struct pkt *p, const char *owner, unsigned pref, const char *host)
{
	size_t at = rr_begin(p, owner, DNS_MX);
	put16(p, pref);
	putname(p, host);
	rr_end(p, at);
}

static void rr_cname(struct pkt *p, const char *owner, const char *target)
{
	size_t at = rr_begin(p, owner, DNS_CNAME);
	putname(p, target);
	rr_end(p, at);
}

/* A TXT RR of the given character-strings (NULL-terminated list). */
static void rr_txt(struct pkt *p, const char *owner, ...)
{
	va_list ap;
	size_t at = rr_begin(p, owner, DNS_TXT);
	va_start(ap, owner);
	for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
		put8(p, (unsigned)strlen(s));
		putbytes(p, s, strlen(s));
	}
	va_end(ap);
	rr_end(p, at);
}

/* ==== rendering answers as text ========================================= */

static void render_rr(const struct dns_rr *rr, char *out, size_t n)
{
	switch (rr->type) {
	case DNS_A:
		inet_ntop(AF_INET, rr->u.a, out, (socklen_t)n);
		break;
	case DNS_AAAA:
		inet_ntop(AF_INET6, rr->u.aaaa, out, (socklen_t)n);
		break;
	case DNS_MX:
		snprintf(out, n, "%u %s", rr->u.mx.pref, rr->u.mx.host[0] ? rr->u.mx.host : ".");
		break;
	case DNS_CNAME:
		snprintf(out, n, "%s", rr->u.cname);
		break;
	case DNS_TXT:
		if (rr->u.txt.truncated)
			snprintf(out, n, "[truncated len=%u]", rr->u.txt.len);
		else
			snprintf(out, n, "%.500s", rr->u.txt.data);
		break;
	default:
		snprintf(out, n, "?");
	}
}

/* The records sorted: the order of an RRset is not for a test to rely on. */
static void render_answer_sorted(const struct dns_answer *a, char *out, size_t n)
{
	char *v[DNS_MAX_RR];
	for (size_t i = 0; i < a->nrr; i++) {
		v[i] = malloc(512);
		render_rr(&a->rr[i], v[i], 512);
	}
	join(v, a->nrr, true, " | ", out, n);
	for (size_t i = 0; i < a->nrr; i++)
		free(v[i]);
}

/* "rr | rr | ..." */
static void render_answer(const struct dns_answer *a, char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < a->nrr && o < n; i++) {
		char one[512];
		render_rr(&a->rr[i], one, sizeof one);
		o += (size_t)snprintf(out + o, n - o, "%s%s", i ? " | " : "", one);
	}
}

/* ==== parser cases ======================================================== */

static void b_a(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_aaaa2(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", DNS_AAAA);
	rr_aaaa(p, "@12", "2001:db8::1");
	rr_aaaa(p, "@12", "2001:db8::2");
}

static void b_mx(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", DNS_MX);
	rr_mx(p, "@12", 10, "mx1.@12");
	rr_mx(p, "@12", 20, "mx2.@12");
}

static void b_mx_ptr_chain(struct pkt *p)
{
	/* the second exchange points into the first one's, which points to 12 */
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", DNS_MX);
	rr_mx(p, "@12", 10, "a.mx.@12");	/* "a" at 43, "mx" at 45 */
	rr_mx(p, "@12", 20, "b.@45");
}

static void b_nullmx(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_MX);
	rr_mx(p, "@12", 0, ".");
}

static void b_txt(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "_mta-sts.example.com", DNS_TXT);
	rr_txt(p, "@12", "v=STSv1; ", "id=2024", NULL);
	rr_txt(p, "@12", "", NULL);
}

static void b_txt_long(struct pkt *p)
{
	char s[256];
	memset(s, 'x', 255);
	s[255] = '\0';
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_TXT);
	size_t at = rr_begin(p, "@12", DNS_TXT);
	for (int i = 0; i < 20; i++) {
		put8(p, 255);
		putbytes(p, s, 255);
	}
	rr_end(p, at);
}

static void b_txt_bad(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_TXT);
	size_t at = rr_begin(p, "@12", DNS_TXT);
	put8(p, 10);
	putbytes(p, "abc", 3);	/* the string claims 10 octets */
	rr_end(p, at);
}

static void b_cname_chain(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 3);
	question(p, "www.example.com", DNS_A);
	rr_cname(p, "@12", "a.example.net");
	rr_cname(p, "a.example.net", "b.example.org");
	rr_a(p, "b.example.org", "192.0.2.7");
}

static void b_cname_unordered(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 4);
	question(p, "www.example.com", DNS_A);
	rr_a(p, "b.example.org", "192.0.2.7");
	rr_a(p, "a.example.net", "192.0.2.66");	/* not the final name */
	rr_cname(p, "a.example.net", "b.example.org");
	rr_cname(p, "@12", "a.example.net");
}

static void b_cname_nodata(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", DNS_A);
	rr_cname(p, "@12", "a.example.net");
}

static void b_cname_loop(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "a.example.com", DNS_A);
	rr_cname(p, "@12", "b.example.com");
	rr_cname(p, "b.example.com", "a.example.com");
}

/* A chain c0 -> c1 -> ... -> cN and an A record for cN. */
static void cname_links(struct pkt *p, unsigned n)
{
	hdr(p, FL_NOERROR, 1, n + 1);
	question(p, "c0.example.com", DNS_A);
	for (unsigned i = 0; i < n; i++) {
		char from[32], to[32];
		snprintf(from, sizeof from, "c%u.example.com", i);
		snprintf(to, sizeof to, "c%u.example.com", i + 1);
		rr_cname(p, from, to);
	}
	char last[32];
	snprintf(last, sizeof last, "c%u.example.com", n);
	rr_a(p, last, "192.0.2.9");
}

static void b_cname_8(struct pkt *p)
{
	cname_links(p, DNS_CNAME_MAX);
}

static void b_cname_9(struct pkt *p)
{
	cname_links(p, DNS_CNAME_MAX + 1);
}

static void b_cname_qtype(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", DNS_CNAME);
	rr_cname(p, "@12", "Target.Example.NET");
}

static void b_other_owner(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", DNS_A);
	rr_a(p, "other.example.com", "192.0.2.1");
	rr_aaaa(p, "@12", "2001:db8::1");	/* not the type asked */
}

static void b_class_ch(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	size_t at = rr_begin_class(p, "@12", DNS_A, 3);
	put32(p, 0x7f000001);
	rr_end(p, at);
}

static void b_rcode(struct pkt *p, unsigned flags)
{
	hdr(p, flags, 1, 0);
	question(p, "example.com", DNS_MX);
}

static void b_nxdomain(struct pkt *p)
{
	b_rcode(p, 0x8183);
}

static void b_servfail(struct pkt *p)
{
	b_rcode(p, 0x8182);
}

static void b_refused(struct pkt *p)
{
	b_rcode(p, 0x8185);
}

static void b_tc(struct pkt *p)
{
	b_rcode(p, 0x8380);
}

static void b_not_response(struct pkt *p)
{
	b_rcode(p, 0x0100);
}

static void b_short(struct pkt *p)
{
	b_a(p);
	p->n = 11;
}

static void b_cut_rdata(struct pkt *p)
{
	b_a(p);
	p->n -= 2;
}

static void b_cut_question(struct pkt *p)
{
	b_a(p);
	p->n = 18;
}

static void b_ancount_big(struct pkt *p)
{
	b_a(p);
	p->b[6] = 0;
	p->b[7] = 3;
}

static void b_ancount_huge(struct pkt *p)
{
	b_a(p);
	p->b[6] = 0xff;
	p->b[7] = 0xff;
}

static void b_ptr_forward(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	rr_a(p, "@200", "192.0.2.1");
	p->n = 260;		/* the target exists but lies ahead */
}

static void b_ptr_self(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	char self[32];
	snprintf(self, sizeof self, "@%zu", p->n);
	rr_a(p, self, "192.0.2.1");
}

static void b_ptr_loop(struct pkt *p)
{
	/* "x" then a pointer back to the "x" itself: x.x.x.x... */
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	char loop[32];
	snprintf(loop, sizeof loop, "x.@%zu", p->n);
	rr_a(p, loop, "192.0.2.1");
}

static void b_ptr_in_question(struct pkt *p)
{
	/* the question is a pointer to the flags: 0x81 is no label length */
	hdr(p, FL_NOERROR, 1, 0);
	question(p, "@2", DNS_A);
}

static void b_label_ext(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	put8(p, 0x41);		/* extended label type */
	put8(p, 0);
	put16(p, 1);
	put16(p, 1);
	put32(p, 1);
	put16(p, 4);
	put32(p, 0xc0000201);
}

static void b_name_long(struct pkt *p)
{
	char name[400] = "";
	size_t o = 0;
	for (int i = 0; i < 5; i++) {
		memset(name + o, 'a' + i, 63);
		o += 63;
		name[o++] = '.';
	}
	name[o - 1] = '\0';	/* 5 x 63-octet labels: 321 octets */
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	rr_a(p, name, "192.0.2.1");
}

static void b_name_max(struct pkt *p)
{
	/* 3 x 63 + 61 octets of labels + 4 length octets + root = 255 */
	char name[300];
	size_t o = 0;
	for (int i = 0; i < 4; i++) {
		size_t l = i < 3 ? 63 : 61;
		memset(name + o, 'a' + i, l);
		o += l;
		name[o++] = '.';
	}
	name[o - 1] = '\0';
	hdr(p, FL_NOERROR, 1, 1);
	question(p, name, DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_a_len5(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	size_t at = rr_begin(p, "@12", DNS_A);
	putbytes(p, "\xc0\x00\x02\x01\x00", 5);
	rr_end(p, at);
}

static void b_mx_trailing(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_MX);
	size_t at = rr_begin(p, "@12", DNS_MX);
	put16(p, 10);
	putname(p, "mx.@12");
	put8(p, 0);		/* one octet more than the name */
	rr_end(p, at);
}

static void b_mx_short(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_MX);
	size_t at = rr_begin(p, "@12", DNS_MX);
	put16(p, 10);
	rr_end(p, at);
}

static void b_mx_odd(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_MX);
	size_t at = rr_begin(p, "@12", DNS_MX);
	put16(p, 10);
	put8(p, 6);
	putbytes(p, "mx one", 6);	/* a space: not a host name */
	put16(p, 0xc00c);
	rr_end(p, at);
}

static void b_owner_dot_label(struct pkt *p)
{
	/* one label "example.com" (with a dot in it) is not the name example.com */
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", DNS_A);
	put8(p, 11);
	putbytes(p, "example.com", 11);
	put8(p, 0);
	put16(p, DNS_A);
	put16(p, 1);
	put32(p, 60);
	put16(p, 4);
	put32(p, 0xc0000201);
}

static void b_case(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "Example.COM", DNS_MX);
	rr_mx(p, "EXAMPLE.com", 10, "MX1.Example.Com");
}

static void b_many(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 70);
	question(p, "example.com", DNS_A);
	for (int i = 0; i < 70; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.0.0.%d", i);
		rr_a(p, "@12", ip);
	}
}

static void b_two_questions(struct pkt *p)
{
	hdr(p, FL_NOERROR, 2, 1);
	question(p, "example.com", DNS_A);
	question(p, "other.@12", DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_cname_odd_target(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", DNS_A);
	size_t at = rr_begin(p, "@12", DNS_CNAME);
	put8(p, 3);
	putbytes(p, "a\nb", 3);
	put8(p, 0);
	rr_end(p, at);
}

struct parse_case {
	const char *label;
	void (*build)(struct pkt *p);
	const char *qname;
	uint16_t qtype;
	enum rc rc;
	enum dns_status status;
	size_t nrr;
	const char *rrs;		/* rendered records, or NULL: not compared */
	const char *cname;
};

static const struct parse_case parse_cases[] = {
	{"A record", b_a, "example.com", DNS_A, RC_OK, DNS_OK, 1, "192.0.2.1", ""},
	{"two AAAA records", b_aaaa2, "example.com", DNS_AAAA, RC_OK, DNS_OK, 2,
	 "2001:db8::1 | 2001:db8::2", ""},
	{"MX, exchanges compressed", b_mx, "example.com", DNS_MX, RC_OK, DNS_OK, 2,
	 "10 mx1.example.com | 20 mx2.example.com", ""},
	{"MX, pointer to a pointer", b_mx_ptr_chain, "example.com", DNS_MX, RC_OK, DNS_OK,
	 2, "10 a.mx.example.com | 20 b.mx.example.com", ""},
	{"null MX", b_nullmx, "example.com", DNS_MX, RC_OK, DNS_OK, 1, "0 .", ""},
	{"TXT strings concatenated, empty TXT", b_txt, "_mta-sts.example.com", DNS_TXT,
	 RC_OK, DNS_OK, 2, "v=STSv1; id=2024 | ", ""},
	{"TXT longer than the maximum is cut", b_txt_long, "example.com", DNS_TXT, RC_OK,
	 DNS_OK, 1, "[truncated len=4096]", ""},
	{"TXT string overruns its RDATA", b_txt_bad, "example.com", DNS_TXT, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"CNAME chain to an A", b_cname_chain, "www.example.com", DNS_A, RC_OK, DNS_OK, 1,
	 "192.0.2.7", "b.example.org"},
	{"CNAME chain in any order", b_cname_unordered, "www.example.com", DNS_A, RC_OK,
	 DNS_OK, 1, "192.0.2.7", "b.example.org"},
	{"CNAME to a name without the type", b_cname_nodata, "www.example.com", DNS_A, RC_OK,
	 DNS_NODATA, 0, "", "a.example.net"},
	{"CNAME loop", b_cname_loop, "a.example.com", DNS_A, RC_INVALID, DNS_MALFORMED, 0,
	 "", ""},
	{"CNAME chain of the maximum length", b_cname_8, "c0.example.com", DNS_A, RC_OK,
	 DNS_OK, 1, "192.0.2.9", "c8.example.com"},
	{"CNAME chain one link too long", b_cname_9, "c0.example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"CNAME asked for", b_cname_qtype, "www.example.com", DNS_CNAME, RC_OK, DNS_OK, 1,
	 "target.example.net", ""},
	{"CNAME target not a host name", b_cname_odd_target, "www.example.com", DNS_A,
	 RC_INVALID, DNS_MALFORMED, 0, "", ""},
	{"records of another owner or type", b_other_owner, "example.com", DNS_A, RC_OK,
	 DNS_NODATA, 0, "", ""},
	{"class CH ignored", b_class_ch, "example.com", DNS_A, RC_OK, DNS_NODATA, 0, "",
	 ""},
	{"NXDOMAIN", b_nxdomain, "example.com", DNS_MX, RC_OK, DNS_NXDOMAIN, 0, "", ""},
	{"SERVFAIL", b_servfail, "example.com", DNS_MX, RC_OK, DNS_TEMPFAIL, 0, "", ""},
	{"REFUSED", b_refused, "example.com", DNS_MX, RC_OK, DNS_TEMPFAIL, 0, "", ""},
	{"TC bit", b_tc, "example.com", DNS_MX, RC_OK, DNS_TEMPFAIL, 0, "", ""},
	{"a query, not a response", b_not_response, "example.com", DNS_MX, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"shorter than a header", b_short, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"RDATA cut short", b_cut_rdata, "example.com", DNS_A, RC_INVALID, DNS_MALFORMED,
	 0, "", ""},
	{"question cut short", b_cut_question, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"ANCOUNT larger than the records", b_ancount_big, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"ANCOUNT 65535", b_ancount_huge, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"compression pointer forwards", b_ptr_forward, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"compression pointer to itself", b_ptr_self, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"compression loop through a label", b_ptr_loop, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"question name points into the header", b_ptr_in_question, "example.com", DNS_A,
	 RC_INVALID, DNS_MALFORMED, 0, "", ""},
	{"extended label type", b_label_ext, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"name longer than 255 octets", b_name_long, "example.com", DNS_A, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"A with RDLENGTH 5", b_a_len5, "example.com", DNS_A, RC_INVALID, DNS_MALFORMED,
	 0, "", ""},
	{"MX RDATA longer than its name", b_mx_trailing, "example.com", DNS_MX, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"MX RDATA without a name", b_mx_short, "example.com", DNS_MX, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"MX exchange not a host name", b_mx_odd, "example.com", DNS_MX, RC_INVALID,
	 DNS_MALFORMED, 0, "", ""},
	{"a label holding a dot never matches", b_owner_dot_label, "example.com", DNS_A,
	 RC_OK, DNS_NODATA, 0, "", ""},
	{"case and trailing dot", b_case, "EXAMPLE.Com.", DNS_MX, RC_OK, DNS_OK, 1,
	 "10 mx1.example.com", ""},
	{"70 records, 64 kept", b_many, "example.com", DNS_A, RC_OK, DNS_OK,
	 DNS_MAX_RR, NULL, ""},
	{"two questions", b_two_questions, "example.com", DNS_A, RC_OK, DNS_OK, 1,
	 "192.0.2.1", ""},
	{"unknown qtype", b_a, "example.com", 99, RC_INVALID, DNS_MALFORMED, 0, "", ""},
	{"qname too long", b_a, NULL, DNS_A, RC_INVALID, DNS_MALFORMED, 0, "", ""},
};

static void test_parse(void **state)
{
	char long_name[300];
	memset(long_name, 'a', 260);
	long_name[260] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct pkt *p = calloc(1, sizeof *p);
		c->build(p);
		/* a heap copy of exactly n octets: ASan catches any read past it */
		uint8_t *exact = malloc(p->n ? p->n : 1);
		memcpy(exact, p->b, p->n);
		struct dns_answer a;
		enum rc rc = dns_msg_parse(exact, p->n, c->qname ? c->qname : long_name,
					      c->qtype, &a);
		char got[8192];
		render_answer(&a, got, sizeof got);
		if (rc != c->rc || a.status != c->status || a.nrr != c->nrr)
			fail_msg("case '%s': rc=%s status=%s nrr=%zu (%s)", c->label, rc_name(rc),
				 dns_status_name(a.status), a.nrr, got);
		if (c->rrs && strcmp(got, c->rrs) != 0)
			fail_msg("case '%s': records '%s', want '%s'", c->label, got, c->rrs);
		if (strcmp(a.cname, c->cname) != 0)
			fail_msg("case '%s': cname '%s', want '%s'", c->label, a.cname, c->cname);
		for (size_t j = 0; j < a.nrr; j++)
			CHECK(c->label, a.rr[j].type == c->qtype);
		CHECK(c->label, !a.secure);
		dns_answer_fini(&a);
		CHECK(c->label, a.rr == NULL && a.nrr == 0);
		free(exact);
		free(p);
	}
}

/* The longest name (255 octets) is fine; TTLs with the top bit set are 0. */
static void test_parse_limits(void **state)
{
	struct pkt p;
	struct dns_answer a;
	char qname[300];
	b_name_max(&p);
	size_t o = 0;
	for (int i = 0; i < 4; i++) {
		size_t l = i < 3 ? 63 : 61;
		memset(qname + o, 'a' + i, l);
		o += l;
		qname[o++] = '.';
	}
	qname[o - 1] = '\0';
	assert_int_equal(strlen(qname), 253);
	assert_int_equal(dns_msg_parse(p.b, p.n, qname, DNS_A, &a), RC_OK);
	assert_int_equal(a.status, DNS_OK);
	dns_answer_fini(&a);

	b_a(&p);
	p.b[p.n - 10] = 0x80;	/* TTL's first octet */
	assert_int_equal(dns_msg_parse(p.b, p.n, "example.com", DNS_A, &a), RC_OK);
	assert_int_equal(a.nrr, 1);
	assert_int_equal(a.rr[0].ttl, 0);
	dns_answer_fini(&a);
	b_a(&p);
	assert_int_equal(dns_msg_parse(p.b, p.n, "example.com", DNS_A, &a), RC_OK);
	assert_int_equal(a.rr[0].ttl, 300);
	assert_string_equal(a.qname, "example.com");
	dns_answer_fini(&a);
	dns_answer_fini(NULL);

	/* every prefix of a good packet is refused without reading past it */
	b_mx(&p);
	for (size_t n = 0; n < p.n; n++) {
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, p.b, n);
		enum rc rc = dns_msg_parse(cut, n, "example.com", DNS_MX, &a);
		assert_int_equal(rc, RC_INVALID);
		dns_answer_fini(&a);
		free(cut);
	}
}

static void test_names(void **state)
{
	assert_string_equal(dns_status_name(DNS_OK), "OK");
	assert_string_equal(dns_status_name(DNS_MALFORMED), "MALFORMED");
	assert_string_equal(dns_status_name((enum dns_status)99), "?");
	assert_string_equal(dns_type_name(DNS_MX), "MX");
	assert_string_equal(dns_type_name(DNS_AAAA), "AAAA");
	assert_string_equal(dns_type_name(99), "TYPE");
}

/* ==== the resolver against the fake ======================================= */

static const struct zrec zone[] = {
	{"mx.test", DNS_MX, "20 b.mx.test"},
	{"mx.test", DNS_MX, "10 a.mx.test"},
	{"mx.test", DNS_MX, "30 c.mx.test"},
	{"implicit.test", DNS_A, "192.0.2.10"},
	{"implicit.test", DNS_AAAA, "2001:db8::10"},
	{"servfail.test", Z_RCODE, "2"},
	{"mail.hostcname.test", DNS_CNAME, "real.hostcname.test"},
	{"real.hostcname.test", DNS_A, "192.0.2.40"},
	{"slow.test", Z_DROP, ""},
	{"late.test", Z_DELAY, "400"},
	{"late.test", DNS_A, "192.0.2.50"},
	{"relay.test", DNS_A, "192.0.2.60"},
	{"txt.test", DNS_TXT, "v=STSv1; id=20240101"},
	{"txt.test", DNS_TXT, "second"},
	{NULL, 0, NULL},
};

/* env_init - the environment over zone (see fake_dns.h). */
static void env_init(struct env *e, unsigned timeout_ms)
{
	env_start(e, "test", false, zone, NULL, timeout_ms);
}

struct dns_res {
	bool done;
	int calls;
	enum dns_status status;
	char rrs[4096];
	char cname[256];
};

static void on_dns(void *ctx, uint64_t cookie, const struct dns_answer *a)
{
	struct dns_res *res = ctx;
	res->calls++;
	res->done = true;
	res->status = a->status;
	render_answer_sorted(a, res->rrs, sizeof res->rrs);
	str_lcpy(res->cname, a->cname, sizeof res->cname);
}

struct dns_case {
	const char *label;
	const char *name;
	uint16_t type;
	enum dns_status status;
	const char *rrs;
	const char *cname;
};

static const struct dns_case dns_cases[] = {
	{"TXT", "txt.test", DNS_TXT, DNS_OK, "second | v=STSv1; id=20240101", ""},
	{"MX", "mx.test", DNS_MX, DNS_OK, "10 a.mx.test | 20 b.mx.test | 30 c.mx.test",
	 ""},
	{"A through a CNAME", "mail.hostcname.test", DNS_A, DNS_OK, "192.0.2.40",
	 "real.hostcname.test"},
	{"NODATA", "implicit.test", DNS_MX, DNS_NODATA, "", ""},
	{"NXDOMAIN", "nx.test", DNS_A, DNS_NXDOMAIN, "", ""},
	{"SERVFAIL", "servfail.test", DNS_A, DNS_TEMPFAIL, "", ""},
};

static void test_dns_query(void **state)
{
	struct env e;
	env_init(&e, 3000);
	for (size_t i = 0; i < ARRAY_LEN(dns_cases); i++) {
		const struct dns_case *c = &dns_cases[i];
		for (int pass = 0; pass < 2; pass++) {	/* the second from unbound's cache */
			struct dns_res res = {0};
			dns_query(e.dns, c->name, c->type, on_dns, &res, 0);
			CHECK(c->label, res.calls == 0);
			run_until(&e, &res.done, 5000);
			run_for(&e, 5);
			CHECK(c->label, res.calls == 1);
			if (res.status != c->status || strcmp(res.rrs, c->rrs) != 0 ||
			    strcmp(res.cname, c->cname) != 0)
				fail_msg("case '%s': %s '%s' cname '%s'", c->label,
					 dns_status_name(res.status), res.rrs, res.cname);
		}
	}
	/* a name too long for DNS never reaches unbound */
	char lng[300];
	memset(lng, 'a', 299);
	lng[299] = '\0';
	struct dns_res res = {0};
	unsigned before = e.fake.nqueries;
	dns_query(e.dns, lng, DNS_A, on_dns, &res, 0);
	assert_int_equal(res.calls, 0);
	run_until(&e, &res.done, 5000);
	assert_int_equal(res.status, DNS_MALFORMED);
	assert_int_equal(e.fake.nqueries, before);
	env_fini(&e);
}

/* Our timeout wins over a slow server, and its late answer is ignored. */
static void test_dns_late_answer(void **state)
{
	struct env e;
	env_init(&e, 150);
	struct dns_res res = {0};
	int64_t t0 = time_mono_ms();
	dns_query(e.dns, "late.test", DNS_A, on_dns, &res, 0);
	run_until(&e, &res.done, 5000);
	int64_t took = time_mono_ms() - t0;
	assert_int_equal(res.status, DNS_TEMPFAIL);
	assert_true(took >= 140 && took < 1000);
	run_for(&e, 800);	/* the answer arrives at 400 ms */
	assert_true(e.fake.nreplies >= 1);
	assert_int_equal(res.calls, 1);
	env_fini(&e);
}

/* A callback may free the resolver, even with other queries outstanding. */
struct free_in_cb {
	struct dns **dns;
	int calls;
	bool done;
};

static void on_dns_free(void *ctx, uint64_t cookie, const struct dns_answer *a)
{
	struct free_in_cb *f = ctx;
	f->calls++;
	f->done = true;
	dns_free(*f->dns);
	*f->dns = NULL;
}

static void test_dns_free_in_callback(void **state)
{
	struct env e;
	env_init(&e, 3000);
	struct free_in_cb f = {&e.dns, 0, false};
	struct dns_res other = {0};
	dns_query(e.dns, "slow.test", DNS_A, on_dns, &other, 0);
	dns_query(e.dns, "relay.test", DNS_A, on_dns_free, &f, 0);
	run_until(&e, &f.done, 5000);
	run_for(&e, 50);
	assert_int_equal(f.calls, 1);
	assert_int_equal(other.calls, 0);
	env_fini(&e);
}

static void test_dns_new(void **state)
{
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	assert_int_equal(dns_new(base, "not-an-address", 1000, &d), RC_INVALID);
	assert_null(d);
	dns_free(NULL);
	/* the system configuration: /etc/hosts answers inside ub_resolve_event */
	if (access("/etc/resolv.conf", R_OK) == 0 &&
	    dns_new(base, NULL, 2000, &d) == RC_OK) {
		struct dns_res res = {0};
		dns_query(d, "localhost", DNS_A, on_dns, &res, 0);
		assert_int_equal(res.calls, 0);
		int64_t end = time_mono_ms() + 3000;
		while (!res.done && time_mono_ms() < end)
			event_base_loop(base, EVLOOP_NONBLOCK);
		assert_int_equal(res.calls, 1);
		if (res.status == DNS_OK)
			assert_non_null(strstr(res.rrs, "127.0.0.1"));
		dns_free(d);
	}
	event_base_free(base);
}

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_dns_new),
		cmocka_unit_test(test_dns_query),
		cmocka_unit_test(test_dns_late_answer),
		cmocka_unit_test(test_dns_free_in_callback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
