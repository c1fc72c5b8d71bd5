/*
 * fuzz_dns_msg.c - DNS response packets. The input goes through
 * dns_msg_parse as it is (an exact heap copy, so ASan sees any read past
 * it) for A, AAAA, MX, TXT and CNAME, once with the question's own name as
 * qname (so that answers really match) and once with a fixed name.
 * Asserts: RC_OK exactly when the status is not MALFORMED; records only with an
 * OK status, of the type asked, at most DNS_MAX_RR; every name (cname, MX
 * exchange, CNAME target) a lower-case host name of at most 253 characters
 * without empty labels or a trailing dot; TXT lengths within DNS_TXT_MAX
 * and NUL-terminated; dns_answer_fini leaves the answer empty.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "fuzz.h"


static void check_name(const char *s)
{
	size_t l = strlen(s), lab = 0;
	FUZZ_ASSERT(l <= DNS_NAME_MAX - 2);
	if (l == 0)
		return;
	FUZZ_ASSERT(s[0] != '.' && s[l - 1] != '.');
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_ASSERT(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z'));
		if (c == '.') {
			FUZZ_ASSERT(lab > 0);
			lab = 0;
		} else {
			FUZZ_ASSERT(++lab <= 63);
		}
	}
}

static void check_rr(const struct dns_rr *rr, uint16_t qtype)
{
	FUZZ_ASSERT(rr->type == qtype);
	FUZZ_ASSERT(!(rr->ttl & 0x80000000u));
	switch (qtype) {
	case DNS_MX:
		check_name(rr->u.mx.host);
		break;
	case DNS_CNAME:
		check_name(rr->u.cname);
		break;
	case DNS_TXT:
		FUZZ_ASSERT(rr->u.txt.len <= DNS_TXT_MAX);
		FUZZ_ASSERT(rr->u.txt.data[rr->u.txt.len] == '\0');
		FUZZ_ASSERT(!rr->u.txt.truncated || rr->u.txt.len == DNS_TXT_MAX);
		break;
	default:
		break;
	}
}

static void check_parse(const uint8_t *pkt, size_t len, const char *qname, uint16_t qtype)
{
	struct dns_answer a;
	enum rc rc = dns_msg_parse(pkt, len, qname, qtype, &a);
	FUZZ_ASSERT(rc == RC_OK || rc == RC_INVALID);
	FUZZ_ASSERT((rc == RC_OK) == (a.status != DNS_MALFORMED));
	FUZZ_ASSERT((a.nrr > 0) == (a.status == DNS_OK));
	FUZZ_ASSERT(a.nrr <= DNS_MAX_RR);
	FUZZ_ASSERT(!a.secure);
	check_name(a.cname);
	for (size_t i = 0; i < a.nrr; i++)
		check_rr(&a.rr[i], qtype);
	dns_answer_fini(&a);
	FUZZ_ASSERT(a.nrr == 0 && a.rr == NULL);
}

/* The question's name, read naively (uncompressed labels only). */
static void question_name(const uint8_t *p, size_t len, char *out, size_t outsz)
{
	size_t off = 12, o = 0;
	out[0] = '\0';
	while (off < len && p[off] != 0 && p[off] < 64) {
		size_t l = p[off];
		if (off + 1 + l > len || o + l + 2 > outsz)
			break;
		if (o)
			out[o++] = '.';
		memcpy(out + o, p + off + 1, l);
		o += l;
		off += 1 + l;
	}
	out[o] = '\0';
	if (memchr(out, '\0', o) != NULL)
		out[0] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = {DNS_A, DNS_AAAA, DNS_MX, DNS_TXT,
					 DNS_CNAME};
	uint8_t *pkt = malloc(size ? size : 1);
	if (size > 0)
		memcpy(pkt, data, size);
	char qname[DNS_NAME_MAX + 1];
	question_name(pkt, size, qname, sizeof qname);
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		if (qname[0] != '\0')
			check_parse(pkt, size, qname, types[i]);
		check_parse(pkt, size, "example.com", types[i]);
	}
	free(pkt);
	return 0;
}
