/*
 * test_mta_dns.c - DNS and routes of the mta module.
 *
 * Parser: hand-built response packets (the builder of fake_dns.h and below
 * writes names uncompressed, or "label.@12" for a label followed by a pointer to
 * offset 12) against mta_dnsmsg_parse, each case with a label and the answer
 * rendered as text ("10 mx.example.com | 20 ..."). The question of every packet
 * is at offset 12, so "@12" is the question name.
 *
 * Resolver and routes end to end: libunbound (mta_dns_new) forwarding to the
 * fake DNS server of fake_dns.h, which this process runs on 127.0.0.1 (a UDP
 * socket on an ephemeral port, served on the same libevent loop). The fake
 * answers exactly the question asked from the zone table below, the way a
 * simple authoritative server would: the records of that name and type, else
 * the name's CNAME (libunbound then asks for the target), else NODATA or
 * NXDOMAIN with an SOA; some names answer an rcode, are never answered, or are
 * answered late.
 * TEST_DNS_DEBUG=1 in the environment prints every question the fake gets and
 * every route.
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

#include "conf/conf.h"
#include "mta/mta.h"
#include "fake_dns.h"

#define CHECK(label, cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case '%s': %s", (label), #cond);                                 \
	} while (0)

/* ==== packet builder (more in fake_dns.h) ============================== */

#define FL_NOERROR 0x8180		/* QR RD RA, NOERROR */

static void rr_a(struct pkt *p, const char *owner, const char *ip)
{
	uint8_t a[4];
	assert_int_equal(inet_pton(AF_INET, ip, a), 1);
	size_t at = rr_begin(p, owner, MTA_DNS_A);
	putbytes(p, a, 4);
	rr_end(p, at);
}

static void rr_aaaa(struct pkt *p, const char *owner, const char *ip)
{
	uint8_t a[16];
	assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
	size_t at = rr_begin(p, owner, MTA_DNS_AAAA);
	putbytes(p, a, 16);
	rr_end(p, at);
}

static void rr_mx(struct pkt *p, const char *owner, unsigned pref, const char *host)
{
	size_t at = rr_begin(p, owner, MTA_DNS_MX);
	put16(p, pref);
	putname(p, host);
	rr_end(p, at);
}

static void rr_cname(struct pkt *p, const char *owner, const char *target)
{
	size_t at = rr_begin(p, owner, MTA_DNS_CNAME);
	putname(p, target);
	rr_end(p, at);
}

/* A TXT RR of the given character-strings (NULL-terminated list). */
static void rr_txt(struct pkt *p, const char *owner, ...)
{
	va_list ap;
	size_t at = rr_begin(p, owner, MTA_DNS_TXT);
	va_start(ap, owner);
	for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
		put8(p, (unsigned)strlen(s));
		putbytes(p, s, strlen(s));
	}
	va_end(ap);
	rr_end(p, at);
}

/* ==== rendering answers and routes as text ================================= */

static void render_rr(const struct mta_dns_rr *rr, char *out, size_t n)
{
	switch (rr->type) {
	case MTA_DNS_A:
		inet_ntop(AF_INET, rr->u.a, out, (socklen_t)n);
		break;
	case MTA_DNS_AAAA:
		inet_ntop(AF_INET6, rr->u.aaaa, out, (socklen_t)n);
		break;
	case MTA_DNS_MX:
		snprintf(out, n, "%u %s", rr->u.mx.pref, rr->u.mx.host[0] ? rr->u.mx.host : ".");
		break;
	case MTA_DNS_CNAME:
		snprintf(out, n, "%s", rr->u.cname);
		break;
	case MTA_DNS_TXT:
		if (rr->u.txt.truncated)
			snprintf(out, n, "[truncated len=%u]", rr->u.txt.len);
		else
			snprintf(out, n, "%.500s", rr->u.txt.data);
		break;
	default:
		snprintf(out, n, "?");
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Join v[0..n) with sep into out, sorted first if asked. */
static size_t join(char **v, size_t n, bool sorted, const char *sep, char *out, size_t outsz)
{
	size_t o = 0;
	if (sorted)
		qsort(v, n, sizeof *v, cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n && o < outsz; i++)
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? sep : "", v[i]);
	return MIN(o, outsz);
}

/* The records sorted: the order of an RRset is not for a test to rely on. */
static void render_answer_sorted(const struct mta_dns_answer *a, char *out, size_t n)
{
	char *v[MTA_DNS_MAX_RR];
	for (size_t i = 0; i < a->nrr; i++) {
		v[i] = malloc(512);
		render_rr(&a->rr[i], v[i], 512);
	}
	join(v, a->nrr, true, " | ", out, n);
	for (size_t i = 0; i < a->nrr; i++)
		free(v[i]);
}

/* "rr | rr | ..." */
static void render_answer(const struct mta_dns_answer *a, char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < a->nrr && o < n; i++) {
		char one[512];
		render_rr(&a->rr[i], one, sizeof one);
		o += (size_t)snprintf(out + o, n - o, "%s%s", i ? " | " : "", one);
	}
}

static void render_addr(const struct sockaddr_storage *sa, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		snprintf(out, n, "%s:%u", ip, ntohs(s4->sin_port));
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
	}
}

/* "host/pref=addr,addr host/pref=addr"; the addresses of one family in a row
 * are sorted (unbound rotates RRsets), the order of the families is kept. */
static void render_route(const struct mta_route *r, char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < r->nhosts && o < n; i++) {
		const struct mta_route_host *h = &r->host[i];
		char a[8][80], *v[8];
		o += (size_t)snprintf(out + o, n - o, "%s%s/%u=", i ? " " : "", h->name, h->pref);
		for (size_t j = 0; j < h->naddr; j++) {
			render_addr(&h->addr[j], a[j], sizeof a[j]);
			v[j] = a[j];
		}
		for (size_t lo = 0, hi; lo < h->naddr; lo = hi) {
			for (hi = lo; hi < h->naddr && h->addr[hi].ss_family == h->addr[lo].ss_family;
			     hi++)
				;
			qsort(v + lo, hi - lo, sizeof *v, cmp_str);
		}
		o += join(v, h->naddr, false, ",", out + o, n - o);
	}
}

/* ==== parser cases ======================================================== */

static void b_a(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_aaaa2(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", MTA_DNS_AAAA);
	rr_aaaa(p, "@12", "2001:db8::1");
	rr_aaaa(p, "@12", "2001:db8::2");
}

static void b_mx(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", MTA_DNS_MX);
	rr_mx(p, "@12", 10, "mx1.@12");
	rr_mx(p, "@12", 20, "mx2.@12");
}

static void b_mx_ptr_chain(struct pkt *p)
{
	/* the second exchange points into the first one's, which points to 12 */
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", MTA_DNS_MX);
	rr_mx(p, "@12", 10, "a.mx.@12");	/* "a" at 43, "mx" at 45 */
	rr_mx(p, "@12", 20, "b.@45");
}

static void b_nullmx(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_MX);
	rr_mx(p, "@12", 0, ".");
}

static void b_txt(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "_mta-sts.example.com", MTA_DNS_TXT);
	rr_txt(p, "@12", "v=STSv1; ", "id=2024", NULL);
	rr_txt(p, "@12", "", NULL);
}

static void b_txt_long(struct pkt *p)
{
	char s[256];
	memset(s, 'x', 255);
	s[255] = '\0';
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_TXT);
	size_t at = rr_begin(p, "@12", MTA_DNS_TXT);
	for (int i = 0; i < 20; i++) {
		put8(p, 255);
		putbytes(p, s, 255);
	}
	rr_end(p, at);
}

static void b_txt_bad(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_TXT);
	size_t at = rr_begin(p, "@12", MTA_DNS_TXT);
	put8(p, 10);
	putbytes(p, "abc", 3);	/* the string claims 10 octets */
	rr_end(p, at);
}

static void b_cname_chain(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 3);
	question(p, "www.example.com", MTA_DNS_A);
	rr_cname(p, "@12", "a.example.net");
	rr_cname(p, "a.example.net", "b.example.org");
	rr_a(p, "b.example.org", "192.0.2.7");
}

static void b_cname_unordered(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 4);
	question(p, "www.example.com", MTA_DNS_A);
	rr_a(p, "b.example.org", "192.0.2.7");
	rr_a(p, "a.example.net", "192.0.2.66");	/* not the final name */
	rr_cname(p, "a.example.net", "b.example.org");
	rr_cname(p, "@12", "a.example.net");
}

static void b_cname_nodata(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", MTA_DNS_A);
	rr_cname(p, "@12", "a.example.net");
}

static void b_cname_loop(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "a.example.com", MTA_DNS_A);
	rr_cname(p, "@12", "b.example.com");
	rr_cname(p, "b.example.com", "a.example.com");
}

/* A chain c0 -> c1 -> ... -> cN and an A record for cN. */
static void cname_links(struct pkt *p, unsigned n)
{
	hdr(p, FL_NOERROR, 1, n + 1);
	question(p, "c0.example.com", MTA_DNS_A);
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
	cname_links(p, MTA_DNS_CNAME_MAX);
}

static void b_cname_9(struct pkt *p)
{
	cname_links(p, MTA_DNS_CNAME_MAX + 1);
}

static void b_cname_qtype(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", MTA_DNS_CNAME);
	rr_cname(p, "@12", "Target.Example.NET");
}

static void b_other_owner(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 2);
	question(p, "example.com", MTA_DNS_A);
	rr_a(p, "other.example.com", "192.0.2.1");
	rr_aaaa(p, "@12", "2001:db8::1");	/* not the type asked */
}

static void b_class_ch(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
	size_t at = rr_begin_class(p, "@12", MTA_DNS_A, 3);
	put32(p, 0x7f000001);
	rr_end(p, at);
}

static void b_rcode(struct pkt *p, unsigned flags)
{
	hdr(p, flags, 1, 0);
	question(p, "example.com", MTA_DNS_MX);
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
	question(p, "example.com", MTA_DNS_A);
	rr_a(p, "@200", "192.0.2.1");
	p->n = 260;		/* the target exists but lies ahead */
}

static void b_ptr_self(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
	char self[32];
	snprintf(self, sizeof self, "@%zu", p->n);
	rr_a(p, self, "192.0.2.1");
}

static void b_ptr_loop(struct pkt *p)
{
	/* "x" then a pointer back to the "x" itself: x.x.x.x... */
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
	char loop[32];
	snprintf(loop, sizeof loop, "x.@%zu", p->n);
	rr_a(p, loop, "192.0.2.1");
}

static void b_ptr_in_question(struct pkt *p)
{
	/* the question is a pointer to the flags: 0x81 is no label length */
	hdr(p, FL_NOERROR, 1, 0);
	question(p, "@2", MTA_DNS_A);
}

static void b_label_ext(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
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
	question(p, "example.com", MTA_DNS_A);
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
	question(p, name, MTA_DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_a_len5(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_A);
	size_t at = rr_begin(p, "@12", MTA_DNS_A);
	putbytes(p, "\xc0\x00\x02\x01\x00", 5);
	rr_end(p, at);
}

static void b_mx_trailing(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_MX);
	size_t at = rr_begin(p, "@12", MTA_DNS_MX);
	put16(p, 10);
	putname(p, "mx.@12");
	put8(p, 0);		/* one octet more than the name */
	rr_end(p, at);
}

static void b_mx_short(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_MX);
	size_t at = rr_begin(p, "@12", MTA_DNS_MX);
	put16(p, 10);
	rr_end(p, at);
}

static void b_mx_odd(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "example.com", MTA_DNS_MX);
	size_t at = rr_begin(p, "@12", MTA_DNS_MX);
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
	question(p, "example.com", MTA_DNS_A);
	put8(p, 11);
	putbytes(p, "example.com", 11);
	put8(p, 0);
	put16(p, MTA_DNS_A);
	put16(p, 1);
	put32(p, 60);
	put16(p, 4);
	put32(p, 0xc0000201);
}

static void b_case(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "Example.COM", MTA_DNS_MX);
	rr_mx(p, "EXAMPLE.com", 10, "MX1.Example.Com");
}

static void b_many(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 70);
	question(p, "example.com", MTA_DNS_A);
	for (int i = 0; i < 70; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.0.0.%d", i);
		rr_a(p, "@12", ip);
	}
}

static void b_two_questions(struct pkt *p)
{
	hdr(p, FL_NOERROR, 2, 1);
	question(p, "example.com", MTA_DNS_A);
	question(p, "other.@12", MTA_DNS_A);
	rr_a(p, "@12", "192.0.2.1");
}

static void b_cname_odd_target(struct pkt *p)
{
	hdr(p, FL_NOERROR, 1, 1);
	question(p, "www.example.com", MTA_DNS_A);
	size_t at = rr_begin(p, "@12", MTA_DNS_CNAME);
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
	enum mta_dns_status status;
	size_t nrr;
	const char *rrs;		/* rendered records, or NULL: not compared */
	const char *cname;
};

static const struct parse_case parse_cases[] = {
	{"A record", b_a, "example.com", MTA_DNS_A, RC_OK, MTA_DNS_OK, 1, "192.0.2.1", ""},
	{"two AAAA records", b_aaaa2, "example.com", MTA_DNS_AAAA, RC_OK, MTA_DNS_OK, 2,
	 "2001:db8::1 | 2001:db8::2", ""},
	{"MX, exchanges compressed", b_mx, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_OK, 2,
	 "10 mx1.example.com | 20 mx2.example.com", ""},
	{"MX, pointer to a pointer", b_mx_ptr_chain, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_OK,
	 2, "10 a.mx.example.com | 20 b.mx.example.com", ""},
	{"null MX", b_nullmx, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_OK, 1, "0 .", ""},
	{"TXT strings concatenated, empty TXT", b_txt, "_mta-sts.example.com", MTA_DNS_TXT,
	 RC_OK, MTA_DNS_OK, 2, "v=STSv1; id=2024 | ", ""},
	{"TXT longer than the maximum is cut", b_txt_long, "example.com", MTA_DNS_TXT, RC_OK,
	 MTA_DNS_OK, 1, "[truncated len=4096]", ""},
	{"TXT string overruns its RDATA", b_txt_bad, "example.com", MTA_DNS_TXT, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"CNAME chain to an A", b_cname_chain, "www.example.com", MTA_DNS_A, RC_OK, MTA_DNS_OK, 1,
	 "192.0.2.7", "b.example.org"},
	{"CNAME chain in any order", b_cname_unordered, "www.example.com", MTA_DNS_A, RC_OK,
	 MTA_DNS_OK, 1, "192.0.2.7", "b.example.org"},
	{"CNAME to a name without the type", b_cname_nodata, "www.example.com", MTA_DNS_A, RC_OK,
	 MTA_DNS_NODATA, 0, "", "a.example.net"},
	{"CNAME loop", b_cname_loop, "a.example.com", MTA_DNS_A, RC_INVALID, MTA_DNS_MALFORMED, 0,
	 "", ""},
	{"CNAME chain of the maximum length", b_cname_8, "c0.example.com", MTA_DNS_A, RC_OK,
	 MTA_DNS_OK, 1, "192.0.2.9", "c8.example.com"},
	{"CNAME chain one link too long", b_cname_9, "c0.example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"CNAME asked for", b_cname_qtype, "www.example.com", MTA_DNS_CNAME, RC_OK, MTA_DNS_OK, 1,
	 "target.example.net", ""},
	{"CNAME target not a host name", b_cname_odd_target, "www.example.com", MTA_DNS_A,
	 RC_INVALID, MTA_DNS_MALFORMED, 0, "", ""},
	{"records of another owner or type", b_other_owner, "example.com", MTA_DNS_A, RC_OK,
	 MTA_DNS_NODATA, 0, "", ""},
	{"class CH ignored", b_class_ch, "example.com", MTA_DNS_A, RC_OK, MTA_DNS_NODATA, 0, "",
	 ""},
	{"NXDOMAIN", b_nxdomain, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_NXDOMAIN, 0, "", ""},
	{"SERVFAIL", b_servfail, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_TEMPFAIL, 0, "", ""},
	{"REFUSED", b_refused, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_TEMPFAIL, 0, "", ""},
	{"TC bit", b_tc, "example.com", MTA_DNS_MX, RC_OK, MTA_DNS_TEMPFAIL, 0, "", ""},
	{"a query, not a response", b_not_response, "example.com", MTA_DNS_MX, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"shorter than a header", b_short, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"RDATA cut short", b_cut_rdata, "example.com", MTA_DNS_A, RC_INVALID, MTA_DNS_MALFORMED,
	 0, "", ""},
	{"question cut short", b_cut_question, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"ANCOUNT larger than the records", b_ancount_big, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"ANCOUNT 65535", b_ancount_huge, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"compression pointer forwards", b_ptr_forward, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"compression pointer to itself", b_ptr_self, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"compression loop through a label", b_ptr_loop, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"question name points into the header", b_ptr_in_question, "example.com", MTA_DNS_A,
	 RC_INVALID, MTA_DNS_MALFORMED, 0, "", ""},
	{"extended label type", b_label_ext, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"name longer than 255 octets", b_name_long, "example.com", MTA_DNS_A, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"A with RDLENGTH 5", b_a_len5, "example.com", MTA_DNS_A, RC_INVALID, MTA_DNS_MALFORMED,
	 0, "", ""},
	{"MX RDATA longer than its name", b_mx_trailing, "example.com", MTA_DNS_MX, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"MX RDATA without a name", b_mx_short, "example.com", MTA_DNS_MX, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"MX exchange not a host name", b_mx_odd, "example.com", MTA_DNS_MX, RC_INVALID,
	 MTA_DNS_MALFORMED, 0, "", ""},
	{"a label holding a dot never matches", b_owner_dot_label, "example.com", MTA_DNS_A,
	 RC_OK, MTA_DNS_NODATA, 0, "", ""},
	{"case and trailing dot", b_case, "EXAMPLE.Com.", MTA_DNS_MX, RC_OK, MTA_DNS_OK, 1,
	 "10 mx1.example.com", ""},
	{"70 records, 64 kept", b_many, "example.com", MTA_DNS_A, RC_OK, MTA_DNS_OK,
	 MTA_DNS_MAX_RR, NULL, ""},
	{"two questions", b_two_questions, "example.com", MTA_DNS_A, RC_OK, MTA_DNS_OK, 1,
	 "192.0.2.1", ""},
	{"unknown qtype", b_a, "example.com", 99, RC_INVALID, MTA_DNS_MALFORMED, 0, "", ""},
	{"qname too long", b_a, NULL, MTA_DNS_A, RC_INVALID, MTA_DNS_MALFORMED, 0, "", ""},
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
		struct mta_dns_answer a;
		enum rc rc = mta_dnsmsg_parse(exact, p->n, c->qname ? c->qname : long_name,
					      c->qtype, &a);
		char got[8192];
		render_answer(&a, got, sizeof got);
		if (rc != c->rc || a.status != c->status || a.nrr != c->nrr)
			fail_msg("case '%s': rc=%s status=%s nrr=%zu (%s)", c->label, rc_name(rc),
				 mta_dns_status_name(a.status), a.nrr, got);
		if (c->rrs && strcmp(got, c->rrs) != 0)
			fail_msg("case '%s': records '%s', want '%s'", c->label, got, c->rrs);
		if (strcmp(a.cname, c->cname) != 0)
			fail_msg("case '%s': cname '%s', want '%s'", c->label, a.cname, c->cname);
		for (size_t j = 0; j < a.nrr; j++)
			CHECK(c->label, a.rr[j].type == c->qtype);
		CHECK(c->label, !a.secure);
		mta_dns_answer_fini(&a);
		CHECK(c->label, a.rr == NULL && a.nrr == 0);
		free(exact);
		free(p);
	}
}

/* The longest name (255 octets) is fine; TTLs with the top bit set are 0. */
static void test_parse_limits(void **state)
{
	struct pkt p;
	struct mta_dns_answer a;
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
	assert_int_equal(mta_dnsmsg_parse(p.b, p.n, qname, MTA_DNS_A, &a), RC_OK);
	assert_int_equal(a.status, MTA_DNS_OK);
	mta_dns_answer_fini(&a);

	b_a(&p);
	p.b[p.n - 10] = 0x80;	/* TTL's first octet */
	assert_int_equal(mta_dnsmsg_parse(p.b, p.n, "example.com", MTA_DNS_A, &a), RC_OK);
	assert_int_equal(a.nrr, 1);
	assert_int_equal(a.rr[0].ttl, 0);
	mta_dns_answer_fini(&a);
	b_a(&p);
	assert_int_equal(mta_dnsmsg_parse(p.b, p.n, "example.com", MTA_DNS_A, &a), RC_OK);
	assert_int_equal(a.rr[0].ttl, 300);
	assert_string_equal(a.qname, "example.com");
	mta_dns_answer_fini(&a);
	mta_dns_answer_fini(NULL);

	/* every prefix of a good packet is refused without reading past it */
	b_mx(&p);
	for (size_t n = 0; n < p.n; n++) {
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, p.b, n);
		enum rc rc = mta_dnsmsg_parse(cut, n, "example.com", MTA_DNS_MX, &a);
		assert_int_equal(rc, RC_INVALID);
		mta_dns_answer_fini(&a);
		free(cut);
	}
}

static void test_names(void **state)
{
	assert_string_equal(mta_dns_status_name(MTA_DNS_OK), "OK");
	assert_string_equal(mta_dns_status_name(MTA_DNS_MALFORMED), "MALFORMED");
	assert_string_equal(mta_dns_status_name((enum mta_dns_status)99), "?");
	assert_string_equal(mta_dns_type_name(MTA_DNS_MX), "MX");
	assert_string_equal(mta_dns_type_name(MTA_DNS_AAAA), "AAAA");
	assert_string_equal(mta_dns_type_name(99), "TYPE");
}

/* ==== resolver and routes against the fake ================================= */

static const struct zrec zone[] = {
	{"mx.test", MTA_DNS_MX, "20 b.mx.test"},
	{"mx.test", MTA_DNS_MX, "10 a.mx.test"},
	{"mx.test", MTA_DNS_MX, "30 c.mx.test"},
	{"a.mx.test", MTA_DNS_A, "192.0.2.1"},
	{"a.mx.test", MTA_DNS_AAAA, "2001:db8::1"},
	{"b.mx.test", MTA_DNS_A, "192.0.2.2"},
	{"b.mx.test", MTA_DNS_A, "192.0.2.3"},
	{"c.mx.test", MTA_DNS_AAAA, "2001:db8::3"},
	{"eq.test", MTA_DNS_MX, "10 x.eq.test"},
	{"eq.test", MTA_DNS_MX, "10 y.eq.test"},
	{"eq.test", MTA_DNS_MX, "5 first.eq.test"},
	{"first.eq.test", MTA_DNS_A, "192.0.2.5"},
	{"x.eq.test", MTA_DNS_A, "192.0.2.30"},
	{"y.eq.test", MTA_DNS_A, "192.0.2.31"},
	{"implicit.test", MTA_DNS_A, "192.0.2.10"},
	{"implicit.test", MTA_DNS_AAAA, "2001:db8::10"},
	{"nullmx.test", MTA_DNS_MX, "0 ."},
	{"nullmix.test", MTA_DNS_MX, "0 ."},
	{"nullmix.test", MTA_DNS_MX, "10 real.nullmix.test"},
	{"real.nullmix.test", MTA_DNS_A, "192.0.2.11"},
	{"servfail.test", Z_RCODE, "2"},
	{"refused.test", Z_RCODE, "5"},
	{"alias.test", MTA_DNS_CNAME, "mx.test"},
	{"loop.test", MTA_DNS_CNAME, "loop2.test"},
	{"loop2.test", MTA_DNS_CNAME, "loop.test"},
	{"skip.test", MTA_DNS_MX, "10 gone.skip.test"},
	{"skip.test", MTA_DNS_MX, "20 ok.skip.test"},
	{"skip.test", MTA_DNS_MX, "30 ok.skip.test"},	/* duplicate: tried once */
	{"ok.skip.test", MTA_DNS_A, "192.0.2.20"},
	{"noaddr.test", MTA_DNS_MX, "10 gone.noaddr.test"},
	{"noaddr.test", MTA_DNS_MX, "20 gone2.noaddr.test"},
	{"empty.test", MTA_DNS_TXT, "v=spf1 -all"},
	{"ipmx.test", MTA_DNS_MX, "10 192.0.2.5"},
	{"hostcname.test", MTA_DNS_MX, "10 mail.hostcname.test"},
	{"mail.hostcname.test", MTA_DNS_CNAME, "real.hostcname.test"},
	{"real.hostcname.test", MTA_DNS_A, "192.0.2.40"},
	{"slow.test", Z_DROP, ""},
	{"slowhost.test", MTA_DNS_MX, "10 mx.slowhost.test"},
	{"mx.slowhost.test", Z_DROP, ""},
	{"late.test", Z_DELAY, "400"},
	{"late.test", MTA_DNS_A, "192.0.2.50"},
	{"relay.test", MTA_DNS_A, "192.0.2.60"},
	{"txt.test", MTA_DNS_TXT, "v=STSv1; id=20240101"},
	{"txt.test", MTA_DNS_TXT, "second"},
	{NULL, 0, NULL},
};

/* env_init - the environment over zone (see fake_dns.h). */
static void env_init(struct env *e, unsigned timeout_ms)
{
	env_start(e, "test", false, zone, NULL, timeout_ms);
}

struct route_res {
	bool done;
	int calls;
	uint64_t cookie;
	struct mta_route r;
	char text[4096];
};

static void on_route(void *ctx, uint64_t cookie, const struct mta_route *r)
{
	struct route_res *res = ctx;
	res->calls++;
	res->done = true;
	res->cookie = cookie;
	res->r = *r;
	render_route(r, res->text, sizeof res->text);
}

struct dns_res {
	bool done;
	int calls;
	enum mta_dns_status status;
	char rrs[4096];
	char cname[256];
};

static void on_dns(void *ctx, uint64_t cookie, const struct mta_dns_answer *a)
{
	struct dns_res *res = ctx;
	res->calls++;
	res->done = true;
	res->status = a->status;
	render_answer_sorted(a, res->rrs, sizeof res->rrs);
	str_lcpy(res->cname, a->cname, sizeof res->cname);
}

struct route_case {
	const char *label;
	const char *dest;
	bool host;			/* mta_route_host instead of mta_route_mx */
	unsigned timeout_ms;		/* 0: 3 s */
	enum rc rc;
	const char *enh;
	const char *want;		/* rendered route, or a part of why */
};

static const struct route_case route_cases[] = {
	{"MX ordered by preference, IPv4 first", "mx.test", false, 0, RC_OK, "",
	 "a.mx.test/10=192.0.2.1:25,[2001:db8::1]:25 b.mx.test/20=192.0.2.2:25,192.0.2.3:25 "
	 "c.mx.test/30=[2001:db8::3]:25"},
	{"domain in upper case with a trailing dot", "MX.Test.", false, 0, RC_OK, "",
	 "a.mx.test/10=192.0.2.1:25,[2001:db8::1]:25 b.mx.test/20=192.0.2.2:25,192.0.2.3:25 "
	 "c.mx.test/30=[2001:db8::3]:25"},
	{"implicit MX", "implicit.test", false, 0, RC_OK, "",
	 "implicit.test/0=192.0.2.10:25,[2001:db8::10]:25"},
	{"null MX", "nullmx.test", false, 0, RC_PERMFAIL, "5.1.10",
	 "Recipient address has null MX"},
	/* RFC 7505 3: a null MX among real ones is still a null MX (issue 12). */
	{"\".\" among real MX hosts is a null MX", "nullmix.test", false, 0, RC_PERMFAIL, "5.1.10",
	 "Recipient address has null MX"},
	{"NXDOMAIN", "nx.test", false, 0, RC_PERMFAIL, "5.1.2", "does not exist"},
	{"SERVFAIL", "servfail.test", false, 0, RC_TEMPFAIL, "4.4.3", "MX lookup for"},
	{"REFUSED", "refused.test", false, 0, RC_TEMPFAIL, "4.4.3", "MX lookup for"},
	{"no answer: timeout", "slow.test", false, 300, RC_TEMPFAIL, "4.4.3", "TEMPFAIL"},
	{"CNAME to a domain with MX", "alias.test", false, 0, RC_OK, "",
	 "a.mx.test/10=192.0.2.1:25,[2001:db8::1]:25 b.mx.test/20=192.0.2.2:25,192.0.2.3:25 "
	 "c.mx.test/30=[2001:db8::3]:25"},
	{"CNAME loop", "loop.test", false, 0, RC_TEMPFAIL, "4.4.3", "MX lookup for"},
	{"MX host without address skipped, duplicate once", "skip.test", false, 0, RC_OK, "",
	 "ok.skip.test/20=192.0.2.20:25"},
	{"no MX host has an address", "noaddr.test", false, 0, RC_TEMPFAIL, "4.4.3",
	 "no MX host of noaddr.test has an address"},
	{"MX host that times out", "slowhost.test", false, 300, RC_TEMPFAIL, "4.4.3",
	 "(DNS failure)"},
	{"no MX and no address", "empty.test", false, 0, RC_PERMFAIL, "5.4.4",
	 "no MX and no address"},
	{"MX exchange written as an IP address", "ipmx.test", false, 0, RC_TEMPFAIL, "4.4.3",
	 "no MX host"},
	{"MX host behind a CNAME", "hostcname.test", false, 0, RC_OK, "",
	 "mail.hostcname.test/10=192.0.2.40:25"},
	{"IPv4 address literal", "[192.0.2.99]", false, 0, RC_OK, "", "/0=192.0.2.99:25"},
	{"IPv6 address literal", "[IPv6:2001:db8::99]", false, 0, RC_OK, "",
	 "/0=[2001:db8::99]:25"},
	{"bad address literal", "[300.1.1.1]", false, 0, RC_PERMFAIL, "5.1.2",
	 "invalid address literal"},
	{"IPv6 literal without its tag", "[2001:db8::1]", false, 0, RC_PERMFAIL, "5.1.2",
	 "invalid address literal"},
	{"empty domain", "", false, 0, RC_PERMFAIL, "5.1.2", "invalid domain"},
	{"static host", "relay.test", true, 0, RC_OK, "", "relay.test/0=192.0.2.60:25"},
	{"static host is not an MX lookup", "mx.test", true, 0, RC_TEMPFAIL, "4.4.3",
	 "relay host mx.test has no address"},
	{"static host that does not exist", "gone.test", true, 0, RC_TEMPFAIL, "4.4.3",
	 "relay host gone.test has no address"},
	{"static host literal", "[192.0.2.61]", true, 0, RC_OK, "", "/0=192.0.2.61:25"},
	{"static host bad literal", "[x]", true, 0, RC_TEMPFAIL, "4.4.3",
	 "invalid relay address"},
};

static void run_route_case(const struct route_case *c)
{
	struct env e;
	env_init(&e, c->timeout_ms ? c->timeout_ms : 3000);
	struct route_res res = {0};
	int64_t t0 = time_mono_ms();
	if (c->host)
		mta_route_host(e.dns, c->dest, 25, on_route, &res, 77);
	else
		mta_route_mx(e.dns, c->dest, 25, on_route, &res, 77);
	CHECK(c->label, res.calls == 0);	/* never inline */
	run_until(&e, &res.done, 5000);
	CHECK(c->label, res.done);
	if (c->timeout_ms)	/* our timer, not unbound's own patience */
		CHECK(c->label, time_mono_ms() - t0 < 3 * (int64_t)c->timeout_ms);
	run_for(&e, 30);
	CHECK(c->label, res.calls == 1 && res.cookie == 77);
	if (res.r.rc != c->rc || strcmp(res.r.enh, c->enh) != 0)
		fail_msg("case '%s': rc=%s enh=%s why='%s' route='%s'", c->label,
			 rc_name(res.r.rc), res.r.enh, res.r.why, res.text);
	if (c->rc == RC_OK && strcmp(res.text, c->want) != 0)
		fail_msg("case '%s': route '%s', want '%s'", c->label, res.text, c->want);
	if (c->rc != RC_OK && (strstr(res.r.why, c->want) == NULL || res.r.nhosts != 0))
		fail_msg("case '%s': why '%s' nhosts=%zu, want '%s'", c->label, res.r.why,
			 res.r.nhosts, c->want);
	if (getenv("TEST_DNS_DEBUG"))
		fprintf(stderr, "case '%s': %s %s why='%s' route='%s'\n", c->label,
			rc_name(res.r.rc), res.r.enh, res.r.why, res.text);
	if (c->dest[0] == '[')
		CHECK(c->label, e.fake.nqueries == 0);
	env_fini(&e);
}

static void test_routes(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(route_cases); i++)
		run_route_case(&route_cases[i]);
}

/* Equal preferences are shuffled: both orders over many runs; a seed repeats. */
static void test_route_shuffle(void **state)
{
	struct env e;
	env_init(&e, 3000);
	unsigned xy = 0, yx = 0;
	char first[4096] = "";
	for (int i = 0; i < 40; i++) {
		struct route_res res = {0};
		if (i == 20 || i == 21)
			mta_route_seed(42);
		mta_route_mx(e.dns, "eq.test", 25, on_route, &res, 0);
		run_until(&e, &res.done, 5000);
		assert_int_equal(res.r.rc, RC_OK);
		assert_int_equal(res.r.nhosts, 3);
		assert_string_equal(res.r.host[0].name, "first.eq.test");
		if (strcmp(res.r.host[1].name, "x.eq.test") == 0)
			xy++;
		else
			yx++;
		if (i == 20)
			str_lcpy(first, res.text, sizeof first);
		if (i == 21)
			assert_string_equal(res.text, first);
	}
	assert_true(xy > 0 && yx > 0);
	assert_int_equal(xy + yx, 40);
	env_fini(&e);
}

static void test_route_family(void **state)
{
	static const struct {
		const char *label;
		enum mta_route_family fam;
		const char *want;
	} cases[] = {
		{"IPv6 first", MTA_ROUTE_IPV6_FIRST,
		 "a.mx.test/10=[2001:db8::1]:587,192.0.2.1:587 "
		 "b.mx.test/20=192.0.2.2:587,192.0.2.3:587 c.mx.test/30=[2001:db8::3]:587"},
		{"IPv4 only", MTA_ROUTE_IPV4_ONLY,
		 "a.mx.test/10=192.0.2.1:587 b.mx.test/20=192.0.2.2:587,192.0.2.3:587"},
		{"IPv6 only", MTA_ROUTE_IPV6_ONLY,
		 "a.mx.test/10=[2001:db8::1]:587 c.mx.test/30=[2001:db8::3]:587"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct env e;
		env_init(&e, 3000);
		mta_route_set_family(cases[i].fam);
		struct route_res res = {0};
		mta_route_mx(e.dns, "mx.test", 587, on_route, &res, 0);
		run_until(&e, &res.done, 5000);
		mta_route_set_family(MTA_ROUTE_IPV4_FIRST);
		if (strcmp(res.text, cases[i].want) != 0)
			fail_msg("case '%s': route '%s'", cases[i].label, res.text);
		env_fini(&e);
	}
}

struct dns_case {
	const char *label;
	const char *name;
	uint16_t type;
	enum mta_dns_status status;
	const char *rrs;
	const char *cname;
};

static const struct dns_case dns_cases[] = {
	{"TXT", "txt.test", MTA_DNS_TXT, MTA_DNS_OK, "second | v=STSv1; id=20240101", ""},
	{"MX", "mx.test", MTA_DNS_MX, MTA_DNS_OK, "10 a.mx.test | 20 b.mx.test | 30 c.mx.test",
	 ""},
	{"A through a CNAME", "mail.hostcname.test", MTA_DNS_A, MTA_DNS_OK, "192.0.2.40",
	 "real.hostcname.test"},
	{"NODATA", "implicit.test", MTA_DNS_MX, MTA_DNS_NODATA, "", ""},
	{"NXDOMAIN", "nx.test", MTA_DNS_A, MTA_DNS_NXDOMAIN, "", ""},
	{"SERVFAIL", "servfail.test", MTA_DNS_A, MTA_DNS_TEMPFAIL, "", ""},
};

static void test_dns_query(void **state)
{
	struct env e;
	env_init(&e, 3000);
	for (size_t i = 0; i < ARRAY_LEN(dns_cases); i++) {
		const struct dns_case *c = &dns_cases[i];
		for (int pass = 0; pass < 2; pass++) {	/* the second from unbound's cache */
			struct dns_res res = {0};
			mta_dns_query(e.dns, c->name, c->type, on_dns, &res, 0);
			CHECK(c->label, res.calls == 0);
			run_until(&e, &res.done, 5000);
			run_for(&e, 5);
			CHECK(c->label, res.calls == 1);
			if (res.status != c->status || strcmp(res.rrs, c->rrs) != 0 ||
			    strcmp(res.cname, c->cname) != 0)
				fail_msg("case '%s': %s '%s' cname '%s'", c->label,
					 mta_dns_status_name(res.status), res.rrs, res.cname);
		}
	}
	/* a name too long for DNS never reaches unbound */
	char lng[300];
	memset(lng, 'a', 299);
	lng[299] = '\0';
	struct dns_res res = {0};
	unsigned before = e.fake.nqueries;
	mta_dns_query(e.dns, lng, MTA_DNS_A, on_dns, &res, 0);
	assert_int_equal(res.calls, 0);
	run_until(&e, &res.done, 5000);
	assert_int_equal(res.status, MTA_DNS_MALFORMED);
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
	mta_dns_query(e.dns, "late.test", MTA_DNS_A, on_dns, &res, 0);
	run_until(&e, &res.done, 5000);
	int64_t took = time_mono_ms() - t0;
	assert_int_equal(res.status, MTA_DNS_TEMPFAIL);
	assert_true(took >= 140 && took < 1000);
	run_for(&e, 800);	/* the answer arrives at 400 ms */
	assert_true(e.fake.nreplies >= 1);
	assert_int_equal(res.calls, 1);
	env_fini(&e);
}

/* Freeing the resolver drops queries and routes without calling them back. */
static void test_dns_free_outstanding(void **state)
{
	struct env e;
	env_init(&e, 3000);
	struct dns_res q1 = {0}, q2 = {0};
	struct route_res r1 = {0}, r2 = {0}, r3 = {0};
	mta_dns_query(e.dns, "slow.test", MTA_DNS_A, on_dns, &q1, 0);
	mta_dns_query(e.dns, "late.test", MTA_DNS_A, on_dns, &q2, 0);
	mta_route_mx(e.dns, "slowhost.test", 25, on_route, &r1, 0);
	mta_route_mx(e.dns, "[192.0.2.1]", 25, on_route, &r2, 0);
	mta_route_host(e.dns, "slow.test", 25, on_route, &r3, 0);
	run_for(&e, 100);	/* the MX of slowhost.test is in; its host is not */
	mta_dns_free(e.dns);
	e.dns = NULL;
	run_for(&e, 600);
	assert_int_equal(q1.calls + q2.calls + r3.calls + r1.calls, 0);
	assert_int_equal(r2.calls, 1);	/* was already done before the free */
	env_fini(&e);
}

/* A callback may free the resolver, even with other queries outstanding. */
struct free_in_cb {
	struct mta_dns **dns;
	int calls;
	bool done;
};

static void on_dns_free(void *ctx, uint64_t cookie, const struct mta_dns_answer *a)
{
	struct free_in_cb *f = ctx;
	f->calls++;
	f->done = true;
	mta_dns_free(*f->dns);
	*f->dns = NULL;
}

static void test_dns_free_in_callback(void **state)
{
	struct env e;
	env_init(&e, 3000);
	struct free_in_cb f = {&e.dns, 0, false};
	struct dns_res other = {0};
	mta_dns_query(e.dns, "slow.test", MTA_DNS_A, on_dns, &other, 0);
	mta_dns_query(e.dns, "relay.test", MTA_DNS_A, on_dns_free, &f, 0);
	run_until(&e, &f.done, 5000);
	run_for(&e, 50);
	assert_int_equal(f.calls, 1);
	assert_int_equal(other.calls, 0);
	env_fini(&e);
}

static void on_route_free(void *ctx, uint64_t cookie, const struct mta_route *r)
{
	struct free_in_cb *f = ctx;
	f->calls++;
	f->done = true;
	mta_dns_free(*f->dns);
	*f->dns = NULL;
}

/* The same from a route callback, with a route and a query still waiting. */
static void test_route_free_in_callback(void **state)
{
	struct env e;
	env_init(&e, 3000);
	struct free_in_cb f = {&e.dns, 0, false};
	struct route_res other = {0};
	struct dns_res q = {0};
	mta_route_mx(e.dns, "slowhost.test", 25, on_route, &other, 0);
	mta_dns_query(e.dns, "slow.test", MTA_DNS_MX, on_dns, &q, 0);
	mta_route_mx(e.dns, "mx.test", 25, on_route_free, &f, 0);
	run_until(&e, &f.done, 5000);
	run_for(&e, 50);
	assert_int_equal(f.calls, 1);
	assert_int_equal(other.calls + q.calls, 0);
	env_fini(&e);
}

static void test_dns_new(void **state)
{
	struct event_base *base = event_base_new();
	struct mta_dns *d = NULL;
	assert_int_equal(mta_dns_new(base, "not-an-address", 1000, &d), RC_INVALID);
	assert_null(d);
	mta_dns_free(NULL);
	/* the system configuration: /etc/hosts answers inside ub_resolve_event */
	if (access("/etc/resolv.conf", R_OK) == 0 &&
	    mta_dns_new(base, NULL, 2000, &d) == RC_OK) {
		struct dns_res res = {0};
		mta_dns_query(d, "localhost", MTA_DNS_A, on_dns, &res, 0);
		assert_int_equal(res.calls, 0);
		int64_t end = time_mono_ms() + 3000;
		while (!res.done && time_mono_ms() < end)
			event_base_loop(base, EVLOOP_NONBLOCK);
		assert_int_equal(res.calls, 1);
		if (res.status == MTA_DNS_OK)
			assert_non_null(strstr(res.rrs, "127.0.0.1"));
		mta_dns_free(d);
	}
	event_base_free(base);
}

/* Issue 12: MX routes never lead into internal networks or to non-public names. */
static void add_host(struct mta_route *r, const char *name, const char *const *ips)
{
	struct mta_route_host *h = &r->host[r->nhosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", name);
	for (; *ips; ips++) {
		struct sockaddr_storage *sa = &h->addr[h->naddr++];
		memset(sa, 0, sizeof *sa);
		if (strchr(*ips, ':')) {
			sa->ss_family = AF_INET6;
			inet_pton(AF_INET6, *ips, &((struct sockaddr_in6 *)sa)->sin6_addr);
		} else {
			sa->ss_family = AF_INET;
			inet_pton(AF_INET, *ips, &((struct sockaddr_in *)sa)->sin_addr);
		}
	}
}

static void test_route_restrict(void **state)
{
	static const char *const pub[] = {"8.8.8.8", NULL}, *const lo[] = {"127.0.0.2", NULL},
			  *const mixed[] = {"10.0.0.1", "2a00:1450::1", NULL},
			  *const v6lo[] = {"::1", "::ffff:127.0.0.1", "fe80::1", NULL};
	struct conf *conf = NULL;
	char *errs = NULL;
	static const char yaml[] = "hostname: relay.test\n"
	                           "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
				   "trusted_networks: [127.0.0.0/8]\n"
				   "delivery: {allow_networks: [127.0.0.2/32]}\n";
	assert_int_equal(conf_load_string(yaml, strlen(yaml), "t", &conf, &errs), RC_OK);
	struct mta_route *r = calloc(1, sizeof *r);
	/* internal addresses dropped, the public one kept, the order too */
	add_host(r, "a.mx.test", v6lo);
	add_host(r, "b.mx.test", mixed);
	add_host(r, "c.mx.test", pub);
	assert_int_equal(mta_route_restrict(r, NULL), RC_OK);
	assert_int_equal(r->nhosts, 2);
	assert_string_equal(r->host[0].name, "b.mx.test");
	assert_int_equal(r->host[0].naddr, 1);
	assert_int_equal(r->host[0].addr[0].ss_family, AF_INET6);
	assert_string_equal(r->host[1].name, "c.mx.test");
	/* nothing left: 5.4.4, the first reason */
	memset(r, 0, sizeof *r);
	add_host(r, "a.mx.test", lo);
	add_host(r, "b.mx.test", v6lo);
	assert_int_equal(mta_route_restrict(r, NULL), RC_PERMFAIL);
	assert_int_equal(r->rc, RC_PERMFAIL);
	assert_string_equal(r->enh, "5.4.4");
	assert_non_null(strstr(r->why, "a.mx.test at 127.0.0.2 is an internal address"));
	/* delivery.allow_networks lets 127.0.0.2 through, not the others */
	memset(r, 0, sizeof *r);
	add_host(r, "a.mx.test", lo);
	add_host(r, "b.mx.test", v6lo);
	assert_int_equal(mta_route_restrict(r, conf), RC_OK);
	assert_int_equal(r->nhosts, 1);
	assert_string_equal(r->host[0].name, "a.mx.test");
	/* names: one label, localhost, *.localhost, whatever their address */
	static const char *const names[] = {"localhost", "localhost.", "mailhub", "x.localhost",
					    "LOCALHOST."};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		memset(r, 0, sizeof *r);
		add_host(r, names[i], pub);
		if (mta_route_restrict(r, conf) != RC_PERMFAIL || strstr(r->why, "not a public") == NULL)
			fail_msg("name '%s' not refused: %s", names[i], r->why);
	}
	/* an address literal (no name) is judged by its address alone */
	memset(r, 0, sizeof *r);
	add_host(r, "", pub);
	assert_int_equal(mta_route_restrict(r, NULL), RC_OK);
	free(r);
	conf_free(conf);
}

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_restrict),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_dns_new),
		cmocka_unit_test(test_dns_query),
		cmocka_unit_test(test_dns_late_answer),
		cmocka_unit_test(test_dns_free_outstanding),
		cmocka_unit_test(test_dns_free_in_callback),
		cmocka_unit_test(test_route_free_in_callback),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_route_shuffle),
		cmocka_unit_test(test_route_family),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
