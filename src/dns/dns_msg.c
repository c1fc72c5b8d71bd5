/*
 * dns_msg.c - the DNS response parser (RFC 1035 4.1): header, question
 * section skipped, answer section read for one qname/qtype. Pure: no I/O, no
 * global state, callable from any thread; fuzzed (tests/fuzz/fuzz_dns_msg.c).
 *
 * Invariants:
 * - Nothing is read at or beyond pkt + len; every count in the packet is
 *   distrusted (a huge ANCOUNT just runs out of packet: DNS_MALFORMED).
 * - Names (RFC 1035 3.1, 4.1.4): labels of at most 63 octets, at most 255
 *   octets on the wire, decoded lower-case without the trailing dot ("" is the
 *   root). A compression pointer must point before the start of the name part
 *   that holds it, so pointers strictly go backwards and cannot loop; at most
 *   DNS_JUMPS_MAX of them are followed in one name anyway.
 * - A name octet outside printable ASCII, or a '.' inside a label, makes the
 *   name "odd": it cannot be written as a host name. An owner name matches
 *   the question's text octet for octet, so it may hold a space (RFC 7208 7.1:
 *   "%_" puts one in an SPF exists: target) but never a '.' inside a label or a
 *   control octet, whose text would not be that one name; an odd name we would
 *   have to use (a CNAME target on our chain, an
 *   MX exchange) makes the whole answer DNS_MALFORMED rather than silently
 *   dropping a record (dropping the only MX would turn into an implicit MX).
 * - The CNAME chain starts at qname and follows at most DNS_CNAME_MAX
 *   links, in whatever order the records come; a longer chain or a loop is
 *   DNS_MALFORMED. Records of qtype are kept only when owned by the final
 *   name, class IN only, at most DNS_MAX_RR of them (the rest ignored).
 * - TXT: the character-strings of one RR are concatenated; beyond
 *   DNS_TXT_MAX octets the data is cut and rr.u.txt.truncated set, so a
 *   policy reader (MTA-STS, TLS-RPT) can refuse it instead of misreading it.
 *
 * Ownership: out->rr is allocated here and freed by dns_answer_fini(),
 * which is safe on an answer this parser failed on.
 */
#include "dns/dns.h"

#include <stdlib.h>
#include <string.h>

#define DNS_HDR_LEN 12
#define DNS_JUMPS_MAX 128		/* compression pointers followed per name */
#define DNS_CNAME_TAB 16		/* CNAME RRs an answer may hold */
#define DNS_CLASS_IN 1
#define DNS_FLAG_QR 0x8000
#define DNS_FLAG_TC 0x0200
#define DNS_RCODE_NXDOMAIN 3

/* A decoded name: text, and whether it holds octets a host name cannot. */
struct dname {
	char s[DNS_NAME_MAX + 1];
	bool odd;		/* not writable as a host name */
	bool ambiguous;		/* its text is not one name: a '.' or a control octet */
};

/* One RR's fixed part, located in the packet. */
struct rrhdr {
	struct dname owner;
	uint16_t type, class;
	uint32_t ttl;
	size_t rd, rdlen;		/* RDATA offset and length */
};

struct cname_link {
	char from[DNS_NAME_MAX + 1];
	struct dname to;
};

static const char *const status_names[] = {
	[DNS_OK] = "OK",		   [DNS_NODATA] = "NODATA",
	[DNS_NXDOMAIN] = "NXDOMAIN",   [DNS_TEMPFAIL] = "TEMPFAIL",
	[DNS_MALFORMED] = "MALFORMED",
};
_Static_assert(ARRAY_LEN(status_names) == DNS_MALFORMED + 1, "status_names");

/* dns_status_name - "OK", "NXDOMAIN", ... for logs. */
const char *dns_status_name(enum dns_status s)
{
	if ((unsigned)s >= ARRAY_LEN(status_names))
		return "?";
	return status_names[s];
}

/* dns_type_name - "A", "MX", ... for logs ("TYPE" for others). */
const char *dns_type_name(uint16_t type)
{
	switch (type) {
	case DNS_A:
		return "A";
	case DNS_CNAME:
		return "CNAME";
	case DNS_PTR:
		return "PTR";
	case DNS_MX:
		return "MX";
	case DNS_TXT:
		return "TXT";
	case DNS_AAAA:
		return "AAAA";
	default:
		return "TYPE";
	}
}

/* dns_answer_fini - free the records of an answer (it stays valid, empty). */
void dns_answer_fini(struct dns_answer *a)
{
	if (a == NULL)
		return;
	free(a->rr);
	a->rr = NULL;
	a->nrr = 0;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool is_host_octet(uint8_t c)
{
	return c > 0x20 && c < 0x7f && c != '.';
}

/* Append one label to the text of n (lower-cased). */
static void name_add_label(struct dname *n, size_t *o, const uint8_t *lab, size_t l)
{
	if (*o > 0)
		n->s[(*o)++] = '.';
	for (size_t i = 0; i < l; i++) {
		uint8_t c = lab[i];
		if (!is_host_octet(c))
			n->odd = true;
		if (c == '.' || c < 0x20 || c == 0x7f)
			n->ambiguous = true;
		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		n->s[(*o)++] = (char)c;
	}
}

/*
 * name_read - decode the name at *off into n; *off moves past it as stored
 * there (past the first pointer if there is one). False when it is malformed.
 * The text always fits: 255 wire octets make at most 253 characters.
 */
static bool name_read(const uint8_t *pkt, size_t len, size_t *off, struct dname *n)
{
	size_t pos = *off, part = *off, wire = 0, o = 0, end = 0;
	unsigned jumps = 0;
	n->odd = n->ambiguous = false;
	for (;;) {
		if (pos >= len)
			return false;
		uint8_t c = pkt[pos];
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++jumps > DNS_JUMPS_MAX)
				return false;
			size_t to = (size_t)(c & 0x3f) << 8 | pkt[pos + 1];
			if (to >= part)
				return false;	/* forward or self: could loop */
			if (end == 0)
				end = pos + 2;
			part = pos = to;
			continue;
		}
		if (c & 0xc0)
			return false;		/* 0x40/0x80: no extended labels */
		wire += (size_t)c + 1;
		if (wire > DNS_NAME_MAX)
			return false;
		if (c == 0)
			break;
		if (len - pos - 1 < c)
			return false;
		name_add_label(n, &o, pkt + pos + 1, c);
		pos += (size_t)c + 1;
	}
	n->s[o] = '\0';
	*off = end ? end : pos + 1;
	return true;
}

/* Read an RR's owner and fixed fields at *off; *off moves past its RDATA. */
static bool rr_read(const uint8_t *pkt, size_t len, size_t *off, struct rrhdr *h)
{
	if (!name_read(pkt, len, off, &h->owner))
		return false;
	if (len - *off < 10)
		return false;
	const uint8_t *p = pkt + *off;
	h->type = get16(p);
	h->class = get16(p + 2);
	h->ttl = get32(p + 4);
	if (h->ttl & 0x80000000u)
		h->ttl = 0;			/* RFC 2181 8: treat as zero */
	h->rdlen = get16(p + 8);
	h->rd = *off + 10;
	if (len - h->rd < h->rdlen)
		return false;
	*off = h->rd + h->rdlen;
	return true;
}

/* A name that must fill the RDATA exactly (CNAME target, MX exchange). */
static bool rd_name(const uint8_t *pkt, size_t len, const struct rrhdr *h, size_t at,
		    struct dname *n)
{
	size_t off = at;
	return name_read(pkt, len, &off, n) && off == h->rd + h->rdlen;
}

/* Normalise a name we were given: lower case, no trailing dot. */
static bool name_norm(const char *in, char out[DNS_NAME_MAX + 1])
{
	size_t l = strlen(in);
	if (l > 0 && in[l - 1] == '.')
		l--;
	if (l > DNS_NAME_MAX - 2)
		return false;
	memcpy(out, in, l);
	out[l] = '\0';
	str_lower(out);
	return true;
}

/* Skip the question section; *off ends at the answer section. */
static bool skip_questions(const uint8_t *pkt, size_t len, size_t *off, uint16_t qd)
{
	struct dname n;
	for (uint16_t i = 0; i < qd; i++) {
		if (!name_read(pkt, len, off, &n) || len - *off < 4)
			return false;
		*off += 4;
	}
	return true;
}

/* Pass 1: check the answer section's framing and collect its CNAME records. */
static bool collect_cnames(const uint8_t *pkt, size_t len, size_t off, uint16_t an,
			   bool want, struct cname_link *tab, size_t *ntab)
{
	struct rrhdr h;
	*ntab = 0;
	for (uint16_t i = 0; i < an; i++) {
		if (!rr_read(pkt, len, &off, &h))
			return false;
		if (!want || h.type != DNS_CNAME || h.class != DNS_CLASS_IN || h.owner.odd)
			continue;
		if (*ntab == DNS_CNAME_TAB)
			return false;		/* far more than any real chain */
		struct cname_link *c = &tab[(*ntab)++];
		memcpy(c->from, h.owner.s, sizeof c->from);
		if (!rd_name(pkt, len, &h, h.rd, &c->to))
			return false;
	}
	return true;
}

/* Follow the chain from name (rewritten in place); *links counts the steps. */
static bool follow_chain(const struct cname_link *tab, size_t ntab, char *name,
			 unsigned *links)
{
	*links = 0;
	for (;;) {
		const struct cname_link *next = NULL;
		for (size_t i = 0; i < ntab && next == NULL; i++)
			if (strcmp(tab[i].from, name) == 0)
				next = &tab[i];
		if (next == NULL)
			return true;
		if (*links == DNS_CNAME_MAX || next->to.odd)
			return false;		/* too long, a loop, or unusable */
		memcpy(name, next->to.s, DNS_NAME_MAX + 1);
		(*links)++;
	}
}

static bool rd_txt(const uint8_t *rd, size_t rdlen, struct dns_rr *rr)
{
	size_t i = 0, o = 0;
	while (i < rdlen) {
		size_t l = rd[i++];
		if (l > rdlen - i)
			return false;
		size_t take = MIN(l, (size_t)DNS_TXT_MAX - o);
		memcpy(rr->u.txt.data + o, rd + i, take);
		if (take < l)
			rr->u.txt.truncated = true;
		o += take;
		i += l;
	}
	rr->u.txt.data[o] = '\0';
	rr->u.txt.len = (uint16_t)o;
	return true;
}

/* Decode one RR of the type asked into rr. */
static bool rr_decode(const uint8_t *pkt, size_t len, const struct rrhdr *h,
		      struct dns_rr *rr)
{
	struct dname n;
	memset(rr, 0, sizeof *rr);
	rr->type = h->type;
	rr->ttl = h->ttl;
	switch (h->type) {
	case DNS_A:
		if (h->rdlen != 4)
			return false;
		memcpy(rr->u.a, pkt + h->rd, 4);
		return true;
	case DNS_AAAA:
		if (h->rdlen != 16)
			return false;
		memcpy(rr->u.aaaa, pkt + h->rd, 16);
		return true;
	case DNS_MX:
		if (h->rdlen < 3 || !rd_name(pkt, len, h, h->rd + 2, &n) || n.odd)
			return false;
		rr->u.mx.pref = get16(pkt + h->rd);
		memcpy(rr->u.mx.host, n.s, sizeof rr->u.mx.host);
		return true;
	case DNS_CNAME:
	case DNS_PTR: /* a name, like CNAME (kept in u.cname) */
		if (!rd_name(pkt, len, h, h->rd, &n) || n.odd)
			return false;
		memcpy(rr->u.cname, n.s, sizeof rr->u.cname);
		return true;
	case DNS_TXT:
		return rd_txt(pkt + h->rd, h->rdlen, rr);
	default:
		return false;
	}
}

/* Pass 2: keep the records of qtype owned by name. */
static bool collect_rrs(const uint8_t *pkt, size_t len, size_t off, uint16_t an,
			const char *name, uint16_t qtype, struct dns_answer *out)
{
	struct rrhdr h;
	size_t cap = 0;
	for (uint16_t i = 0; i < an; i++) {
		if (!rr_read(pkt, len, &off, &h))
			return false;
		if (h.type != qtype || h.class != DNS_CLASS_IN || h.owner.ambiguous ||
		    strcmp(h.owner.s, name) != 0)
			continue;
		if (out->nrr == DNS_MAX_RR)
			continue;		/* checked for framing, not kept */
		if (out->nrr == cap) {
			cap = cap ? MIN(cap * 2, (size_t)DNS_MAX_RR) : 4;
			out->rr = xrealloc(out->rr, cap * sizeof *out->rr);
		}
		if (!rr_decode(pkt, len, &h, &out->rr[out->nrr]))
			return false;
		out->nrr++;
	}
	return true;
}

static bool is_known_type(uint16_t t)
{
	return t == DNS_A || t == DNS_AAAA || t == DNS_MX || t == DNS_TXT ||
	       t == DNS_CNAME || t == DNS_PTR;
}

/* The answer section of a NOERROR response. */
static bool parse_answer(const uint8_t *pkt, size_t len, uint16_t qtype,
			 struct dns_answer *out)
{
	size_t off = DNS_HDR_LEN;
	uint16_t qd = get16(pkt + 4), an = get16(pkt + 6);
	struct cname_link tab[DNS_CNAME_TAB];
	size_t ntab;
	unsigned links;
	char name[DNS_NAME_MAX + 1];

	if (!skip_questions(pkt, len, &off, qd) ||
	    !collect_cnames(pkt, len, off, an, qtype != DNS_CNAME, tab, &ntab))
		return false;
	if (!name_norm(out->qname, name) || !follow_chain(tab, ntab, name, &links))
		return false;
	if (links > 0)
		memcpy(out->cname, name, sizeof out->cname);
	if (!collect_rrs(pkt, len, off, an, name, qtype, out))
		return false;
	out->status = out->nrr > 0 ? DNS_OK : DNS_NODATA;
	return true;
}

/* dns_msg_parse - see dns.h. RC_OK with status OK, NODATA, NXDOMAIN or
 * TEMPFAIL; RC_INVALID with status MALFORMED (also for a qname that is too long
 * or a qtype this parser does not know). */
enum rc dns_msg_parse(const uint8_t *pkt, size_t len, const char *qname, uint16_t qtype,
			 struct dns_answer *out)
{
	memset(out, 0, sizeof *out);
	out->status = DNS_MALFORMED;
	str_lcpy(out->qname, qname, sizeof out->qname);
	char norm[DNS_NAME_MAX + 1];
	if (!is_known_type(qtype) || !name_norm(qname, norm) || len < DNS_HDR_LEN)
		return RC_INVALID;
	uint16_t flags = get16(pkt + 2);
	if (!(flags & DNS_FLAG_QR))
		return RC_INVALID;		/* a query, not a response */
	if (flags & DNS_FLAG_TC) {
		out->status = DNS_TEMPFAIL;	/* the resolver should have used TCP */
		return RC_OK;
	}
	unsigned rcode = flags & 0x000f;
	if (rcode != 0) {
		out->status = rcode == DNS_RCODE_NXDOMAIN ? DNS_NXDOMAIN : DNS_TEMPFAIL;
		return RC_OK;
	}
	if (!parse_answer(pkt, len, qtype, out)) {
		dns_answer_fini(out);
		out->cname[0] = '\0';
		out->status = DNS_MALFORMED;
		return RC_INVALID;
	}
	return RC_OK;
}
