/*
 * fuzz_dns_spf.c - the pure half of SPF (RFC 7208): record syntax and macro
 * expansion. The input is checked as a record twice, as it is and behind
 * "v=spf1 " (so that any bytes become terms), and expanded as a macro string
 * (up to its first NUL) as a domain-spec and as an explanation, with an IPv4
 * and an IPv6 context.
 * Asserts: the result codes each function may return; is_record agrees with
 * record_check; a valid record's terms all parse, lie inside the record, have
 * sane kinds, qualifiers and prefix lengths, and the domain-spec of each
 * expands (RC_OK, or RC_AGAIN for %{p} when p is not known) to at most 253
 * characters; an expansion is always terminated and within its buffer; what
 * expands as a domain-spec also expands as an explanation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "fuzz.h"

static void fuzz_ctx(int v6, bool p_known, struct dns_spf_macro_ctx *mc)
{
	static const uint8_t ip4[4] = {192, 0, 2, 3};
	static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
					0,    0,    0,    0,    0, 0, 0xcb, 0x01};
	memset(mc, 0, sizeof *mc);
	mc->local = "strong-bad";
	mc->sender_domain = "email.example.com";
	mc->domain = "email.example.com";
	mc->helo = "mx.example.org";
	mc->receiver = "mx.receiver.example";
	mc->now = 1700000000;
	mc->validated = p_known ? "mx.example.org" : NULL;
	mc->family = v6 ? AF_INET6 : AF_INET;
	memcpy(mc->ip, v6 ? ip6 : ip4, v6 ? 16 : 4);
}

/* Expand s both ways with both contexts; returns whether it is a valid
 * domain-spec macro string (RC_OK as a domain). */
static bool check_expand(const char *s, bool p_known)
{
	char dom[DNS_SPF_DOMAIN_MAX + 1], exp[300];
	bool ok = false;
	for (int v6 = 0; v6 < 2; v6++) {
		struct dns_spf_macro_ctx mc;
		fuzz_ctx(v6, p_known, &mc);
		memset(dom, 'X', sizeof dom);
		enum rc rd = dns_spf_macro_expand(s, &mc, false, dom, sizeof dom);
		FUZZ_ASSERT(rd == RC_OK || rd == RC_INVALID || rd == RC_AGAIN);
		FUZZ_ASSERT(memchr(dom, '\0', sizeof dom) != NULL);
		FUZZ_ASSERT(strlen(dom) <= DNS_SPF_DOMAIN_MAX);
		FUZZ_ASSERT(rd == RC_OK || dom[0] == '\0');
		FUZZ_ASSERT(rd != RC_AGAIN || !p_known);
		memset(exp, 'X', sizeof exp);
		enum rc re = dns_spf_macro_expand(s, &mc, true, exp, sizeof exp);
		FUZZ_ASSERT(re == RC_OK || re == RC_INVALID || re == RC_AGAIN || re == RC_LIMIT);
		FUZZ_ASSERT(memchr(exp, '\0', sizeof exp) != NULL);
		if (rd == RC_OK)
			FUZZ_ASSERT(re == RC_OK || re == RC_LIMIT);
		if (rd == RC_AGAIN)
			FUZZ_ASSERT(re == RC_AGAIN);
		ok = rd == RC_OK;
	}
	return ok;
}

/* One term of a record that record_check accepted. */
static void check_term(const char *rec, size_t len, const struct dns_spf_term *t)
{
	FUZZ_ASSERT(t->kind <= DNS_SPF_T_UNKNOWN);
	FUZZ_ASSERT(t->text >= rec && t->text + t->textlen <= rec + len && t->textlen > 0);
	FUZZ_ASSERT(t->cidr4 <= 32 && t->cidr6 <= 128);
	if (t->kind < DNS_SPF_T_REDIRECT)
		FUZZ_ASSERT(t->qual && strchr("+-~?", t->qual) != NULL);
	else
		FUZZ_ASSERT(t->qual == 0 && t->name != NULL && t->namelen > 0);
	bool need = t->kind == DNS_SPF_T_INCLUDE || t->kind == DNS_SPF_T_EXISTS ||
		    t->kind == DNS_SPF_T_REDIRECT || t->kind == DNS_SPF_T_EXP;
	if (need)
		FUZZ_ASSERT(t->spec != NULL && t->speclen > 0);
	if (t->spec == NULL)
		return;
	FUZZ_ASSERT(t->spec >= t->text && t->spec + t->speclen <= t->text + t->textlen);
	char *s = malloc(t->speclen + 1);
	memcpy(s, t->spec, t->speclen);
	s[t->speclen] = '\0';
	FUZZ_ASSERT(check_expand(s, true));	/* checked syntax always expands */
	(void)check_expand(s, false);
	free(s);
}

static void check_record(const char *rec, size_t len)
{
	char why[128];
	memset(why, 'X', sizeof why);
	enum rc rc = dns_spf_record_check(rec, len, why, sizeof why);
	FUZZ_ASSERT(rc == RC_OK || rc == RC_NOTFOUND || rc == RC_INVALID);
	FUZZ_ASSERT((rc == RC_NOTFOUND) == !dns_spf_is_record(rec, len));
	if (rc != RC_OK) {
		FUZZ_ASSERT(memchr(why, '\0', sizeof why) != NULL);
		return;
	}
	struct dns_spf_term t;
	size_t pos = 0, last = 0;
	unsigned n = 0;
	while ((rc = dns_spf_term_next(rec, len, &pos, &t, NULL, 0)) == RC_OK) {
		FUZZ_ASSERT(pos > last && pos <= len);
		last = pos;
		check_term(rec, len, &t);
		n++;
	}
	FUZZ_ASSERT(rc == RC_NOTFOUND && pos == len && n <= len / 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exact heap copies: ASan sees any read past them */
	char *raw = malloc(size ? size : 1);
	raw[0] = '\0';
	if (size > 0)
		memcpy(raw, data, size);
	check_record(raw, size);
	free(raw);
	char *rec = malloc(size + 7);
	memcpy(rec, "v=spf1 ", 7);
	if (size > 0)
		memcpy(rec + 7, data, size);
	check_record(rec, size + 7);
	free(rec);
	/* as a macro string, up to the first NUL */
	char *s = malloc(size + 1);
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	(void)check_expand(s, true);
	(void)check_expand(s, false);
	free(s);
	return 0;
}
