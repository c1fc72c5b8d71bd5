/*
 * dns_spf.c - SPF check_host() (RFC 7208 4-6) on the caller's loop, through * dns. The syntax and the macros are in dns_spf_macro.c.
 *
 * Shape: one spf_job per evaluation, attached to its dns (dns_job) so
 * that dns_free drops it without a callback. check_host() recursion
 * (include) is a stack of frames, at most DNS_SPF_LOOKUPS_MAX + 1 deep since
 * every include is counted; redirect replaces the frame it is in. Lookups run
 * one at a time: the current frame's current term either completes at once
 * or starts exactly one query (j->pending) and waits; every answer updates
 * the job and re-enters spf_run, which resumes where the state says. Caches
 * (the PTR names of ip and which of them are validated) make re-entry
 * idempotent.
 *
 * The RFC's rules, and the decisions it leaves open:
 * - 4.3: <domain> malformed (empty or > 63-octet label, > 253 octets, a
 *   single label, a "[literal]", a character outside printable ASCII) or
 *   NXDOMAIN: "none". An empty MAIL FROM is postmaster@HELO (2.4); an empty
 *   local-part is "postmaster"; a sender without "@" is taken as a domain.
 * - 4.4/4.5: TXT only; SERVFAIL, timeout or an unparsable answer: temperror;
 *   no record beginning "v=spf1" (any case, then SP or end): none; two or more:
 *   permerror; one longer than DNS_TXT_MAX: permerror. The strings of a
 *   TXT RR are concatenated without spaces (dns_msg_parse). The whole
 *   record is checked before any term is evaluated (4.6).
 * - Limits (4.6.4): the 11th DNS-querying term (include, a, mx, ptr, exists,
 *   redirect) is a permerror when it is reached - terms never reached do not
 *   count. Void lookups are counted per term, as 4.6.4 says: the record of
 *   an include/redirect, a and exists' lookup, mx's MX query, ptr's PTR query;
 *   not the MX hosts' or PTR names' address lookups (an IPv6 client checked
 *   against IPv4-only exchanges would otherwise be a permerror after the
 *   second one), nor exp= (6.2: exp failures are ignored); the third is a
 *   permerror. More than DNS_SPF_MX_MAX MX records:
 *   permerror, whatever the order (so a result never depends on the order DNS
 *   returns them in). Only the first DNS_SPF_PTR_MAX PTR names are used.
 *   Longer than DNS_SPF_TIME_MAX_MS in all, checked before each query:
 *   temperror.
 * - 5: a mechanism's DNS error (RCODE other than 0 and 3, timeout) is a
 *   temperror, NXDOMAIN is "no records". a looks up A or AAAA by ip's family;
 *   exists always A; mx asks each exchange (by preference) the same way and
 *   never falls back to the implicit MX (5.4); a null MX "." is skipped. An
 *   IPv4-mapped client address is IPv4 throughout (5, ip6 never matches it).
 * - Expanded target names (7.3) that no DNS query can carry (empty, an empty
 *   or > 63-octet label) make a, mx, ptr and exists not match without a query
 *   (the RFC leaves it undefined; the openspf suite accepts "no match"); for
 *   include and redirect they are a malformed <domain>: none, hence permerror.
 * - ptr (5.5) and %{p} (7.3): PTR of ip, first 10 names; a name is validated
 *   when its A/AAAA records hold ip. ptr validates only the names that are the
 *   target or below it (the result is the RFC's pseudocode's), and never
 *   errs: a failed PTR lookup is no match, a failed address lookup skips the
 *   name. %{p} prefers <domain>, then a name below it, then any validated
 *   name, validating in that order and stopping at the first; else "unknown".
 *   PTR answers come from dns_query with qtype 12; names are read from
 *   rr.u.cname (the DNS parser must decode PTR RDATA as a name there; while it
 *   does not, the PTR lookup fails: ptr never matches, %{p} is "unknown").
 * - include (5.2): pass matches; fail, softfail, neutral do not; temperror and
 *   permerror are the result; none is permerror. redirect (6.1) only when no
 *   mechanism matched; its target's result is the result, none being
 *   permerror. exp= (6.2) only for a final fail in the top record (or the
 *   redirect target), never an include's; ignored on any DNS error, zero or
 *   several TXT records, or a syntax error in the text.
 *
 * Ownership: the job owns its copies of the arguments, the frames' records
 * and the deferred start event; it is freed right after its callback (which
 * may free d), or by dns_free (no callback).
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPF_DNS_PTR 12			/* RFC 1035 3.3.12 */
#define SPF_DEPTH_MAX (DNS_SPF_LOOKUPS_MAX + 2)
#define SPF_NO_POS ((size_t)-1)

/* What the one outstanding query is for. */
enum spf_q { Q_NONE, Q_RECORD, Q_ADDR, Q_MX, Q_MXADDR, Q_PTR, Q_PTRADDR, Q_EXP };

/* What a step of the evaluation came to. */
enum spf_ev {
	EV_WAIT,			/* a query is under way */
	EV_CONT,			/* progress: go on */
	EV_END,				/* the result is final (j->final) */
	EV_MATCH,			/* the current term matched */
	EV_NOMATCH,
};

/* How far the current term of a frame has got. */
enum spf_step {
	ST_NEXT,			/* pick the next term */
	ST_START,			/* picked: count it, if it queries DNS */
	ST_TARGET,			/* counted: expand its domain-spec */
	ST_LOOKUP,			/* target known: look it up */
	ST_ANSWER,			/* a, exists: waiting for / holding the answer */
	ST_MXHOSTS,			/* mx: the exchanges' addresses, one by one */
	ST_CHILD,			/* include: the included record's result is in */
};

/* One check_host() evaluation. */
struct spf_frame {
	char domain[DNS_NAME_MAX + 1];	/* <domain>, no trailing dot */
	bool bad_domain;		/* too long to hold: malformed */
	bool include;			/* evaluating an include (5.2 mapping) */
	bool redirected;		/* reached through redirect (none: permerror) */
	char *rec;			/* the record (owned), NULL until fetched */
	size_t len, pos;		/* its length, the next term's position */
	size_t redirect_at, exp_at;	/* where those modifiers are, or SPF_NO_POS */
	struct dns_spf_term term;	/* the current term (points into rec) */
	enum spf_step step;
	enum spf_ev tres;		/* a/exists/mx: set by the answers */
	enum dns_spf_result sub;	/* include: the included record's result */
	char target[DNS_NAME_MAX + 1];
};

enum spf_ptr_state { PS_UNKNOWN, PS_VALID, PS_INVALID };

struct spf_mx {
	uint16_t pref;
	size_t order;
	char host[DNS_NAME_MAX + 1];
};

struct spf_job {
	struct dns_job job;		/* first: the drop hook casts back */
	struct dns *d;
	struct event *ev;		/* the deferred start */
	dns_spf_cb cb;
	void *ctx;
	uint64_t cookie;
	/* the arguments */
	int family;			/* AF_INET (also for IPv4-mapped) or AF_INET6 */
	uint8_t ip[16];
	char ipstr[INET6_ADDRSTRLEN];
	char *local, *sdomain, *helo, *receiver;
	int64_t now, started;
	/* the evaluation */
	struct spf_frame fr[SPF_DEPTH_MAX];
	unsigned depth;			/* fr[depth - 1] is evaluated */
	enum spf_q pending;
	bool final;			/* out is the result */
	bool exp_phase;			/* the result is fail: fetching exp= */
	int exp_step;
	char exp_target[DNS_NAME_MAX + 1];
	char *exp_text;			/* the exp= TXT record, once fetched */
	/* mx: the exchanges of the current mechanism */
	struct spf_mx mx[DNS_SPF_MX_MAX];
	size_t nmx, mxi;
	/* PTR names of ip and their validation, for ptr and %{p} */
	bool ptr_fetched;
	size_t nptr, ptr_cur;
	struct {
		char name[DNS_NAME_MAX + 1];
		enum spf_ptr_state st;
	} ptr[DNS_SPF_PTR_MAX];
	struct dns_spf_outcome out;
};

static void spf_run(struct spf_job *j);

static const char *const result_names[] = {
	[DNS_SPF_NONE] = "none",	   [DNS_SPF_NEUTRAL] = "neutral",
	[DNS_SPF_PASS] = "pass",	   [DNS_SPF_FAIL] = "fail",
	[DNS_SPF_SOFTFAIL] = "softfail",   [DNS_SPF_TEMPERROR] = "temperror",
	[DNS_SPF_PERMERROR] = "permerror",
};
_Static_assert(ARRAY_LEN(result_names) == DNS_SPF_PERMERROR + 1, "result_names");

/* dns_spf_result_name - the result as RFC 7208 8 names it. */
const char *dns_spf_result_name(enum dns_spf_result r)
{
	if ((unsigned)r >= ARRAY_LEN(result_names))
		return "?";
	return result_names[r];
}

/* ==== small helpers ======================================================= */

static struct spf_frame *spf_top(struct spf_job *j)
{
	return &j->fr[j->depth - 1];
}

__attribute__((format(printf, 2, 3))) static void spf_explain(struct spf_job *j,
							      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->out.explanation, sizeof j->out.explanation, fmt, ap);
	va_end(ap);
}

/* The result is r, for the reason given: the evaluation ends. */
__attribute__((format(printf, 3, 4))) static enum spf_ev
spf_final(struct spf_job *j, enum dns_spf_result r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->out.explanation, sizeof j->out.explanation, fmt, ap);
	va_end(ap);
	j->out.result = r;
	j->final = true;
	return EV_END;
}

/* Do the first bits of a and b agree? */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* Does rr (an A or AAAA record) hold an address of ip's family within bits? */
static bool rr_matches(const struct spf_job *j, const struct dns_rr *rr, unsigned bits4,
		       unsigned bits6)
{
	if (rr->type == DNS_A && j->family == AF_INET)
		return prefix_eq(j->ip, rr->u.a, bits4);
	if (rr->type == DNS_AAAA && j->family == AF_INET6)
		return prefix_eq(j->ip, rr->u.aaaa, bits6);
	return false;
}

static uint16_t spf_addr_type(const struct spf_job *j)
{
	return j->family == AF_INET ? DNS_A : DNS_AAAA;
}

/* A name a DNS query can carry: 1..253 octets, labels of 1..63. */
static bool name_ok(const char *s)
{
	size_t n = strlen(s), lab = 0;
	if (n == 0 || n > DNS_SPF_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (lab == 0 || lab > 63)
				return false;
			lab = 0;
		} else {
			lab++;
		}
	}
	return true;
}

/* A <domain> check_host() accepts (4.3): a multi-label name, no literal. */
static bool domain_ok(const char *s)
{
	if (!name_ok(s) || strchr(s, '.') == NULL || s[0] == '[')
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* Is name domain itself (0), below it (1), or elsewhere (2)? */
static int name_class(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	if (strcasecmp(name, domain) == 0)
		return 0;
	if (n > d + 1 && name[n - d - 1] == '.' && strcasecmp(name + n - d, domain) == 0)
		return 1;
	return 2;
}

static void spf_macro_ctx(const struct spf_job *j, const char *domain,
			  struct dns_spf_macro_ctx *mc)
{
	memset(mc, 0, sizeof *mc);
	mc->local = j->local;
	mc->sender_domain = j->sdomain;
	mc->domain = domain;
	mc->family = j->family;
	memcpy(mc->ip, j->ip, sizeof mc->ip);
	mc->helo = j->helo;
	mc->receiver = j->receiver;
	mc->now = j->now;
}

/* ==== queries ============================================================= */

static void spf_on_dns(void *ctx, uint64_t cookie, const struct dns_answer *a);

/* Start the one query of the moment; the time limit is checked here. */
static enum spf_ev spf_query(struct spf_job *j, const char *name, uint16_t type, enum spf_q q)
{
	if (time_mono_ms() - j->started > DNS_SPF_TIME_MAX_MS) {
		if (j->exp_phase) {
			j->final = true;	/* keep the fail, without exp */
			return EV_END;
		}
		return spf_final(j, DNS_SPF_TEMPERROR,
				 "SPF evaluation took longer than %d s (RFC 7208 4.6.4)",
				 DNS_SPF_TIME_MAX_MS / 1000);
	}
	log_debug("event=spf_query name=%s type=%s", name, dns_type_name(type));
	j->pending = q;
	dns_query(j->d, name, type, spf_on_dns, j, 0);
	return EV_WAIT;
}

static bool is_dns_error(const struct dns_answer *a)
{
	return a->status == DNS_TEMPFAIL || a->status == DNS_MALFORMED;
}

/* Count a void answer (4.6.4); false when it was one too many (final). */
static bool spf_count_void(struct spf_job *j, const struct dns_answer *a, const char *what)
{
	if (a->status != DNS_NXDOMAIN && a->status != DNS_NODATA)
		return true;
	if (j->exp_phase)
		return true;
	if (++j->out.void_lookups <= DNS_SPF_VOID_MAX)
		return true;
	spf_final(j, DNS_SPF_PERMERROR,
		  "more than %d void DNS lookups (RFC 7208 4.6.4), the last: %s %s", DNS_SPF_VOID_MAX,
		  what, a->qname);
	return false;
}

static enum spf_ev dns_failed(struct spf_job *j, const char *what,
			      const struct dns_answer *a)
{
	return spf_final(j, DNS_SPF_TEMPERROR, "DNS lookup of %s %s failed (%s)", what, a->qname,
			 dns_status_name(a->status));
}

/* ==== PTR names: ptr (5.5) and %{p} (7.3) ================================== */

/* ip's reverse name (in-addr.arpa or ip6.arpa). */
static void ptr_qname(const struct spf_job *j, char *out, size_t outsz)
{
	const uint8_t *a = j->ip;
	if (j->family == AF_INET) {
		snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
		return;
	}
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 15; i >= 0 && o + 4 < outsz; i--) {
		out[o++] = hex[a[i] & 15];
		out[o++] = '.';
		out[o++] = hex[a[i] >> 4];
		out[o++] = '.';
	}
	out[o] = '\0';
	str_lcpy(out + o, "ip6.arpa", outsz - o);
}

/*
 * ptr_find - the first validated PTR name of ip that is domain (class 0), below
 * it (1), or, with other, anything (2), in that order. EV_MATCH with *idx,
 * EV_NOMATCH, or EV_WAIT/EV_END while the names or a validation are looked up.
 * Idempotent: called again after each answer, it goes on from the cache.
 */
static enum spf_ev ptr_find(struct spf_job *j, const char *domain, bool other, size_t *idx)
{
	if (!j->ptr_fetched) {
		char q[80];
		ptr_qname(j, q, sizeof q);
		return spf_query(j, q, SPF_DNS_PTR, Q_PTR);
	}
	for (int cls = 0; cls < (other ? 3 : 2); cls++) {
		for (size_t i = 0; i < j->nptr; i++) {
			if (name_class(j->ptr[i].name, domain) != cls)
				continue;
			if (j->ptr[i].st == PS_UNKNOWN) {
				j->ptr_cur = i;
				return spf_query(j, j->ptr[i].name, spf_addr_type(j), Q_PTRADDR);
			}
			if (j->ptr[i].st == PS_VALID) {
				*idx = i;
				return EV_MATCH;
			}
		}
	}
	return EV_NOMATCH;
}

static void on_ptr(struct spf_job *j, const struct dns_answer *a)
{
	j->ptr_fetched = true;
	j->nptr = 0;
	if (is_dns_error(a) || !spf_count_void(j, a, "PTR"))
		return;			/* a DNS error: no names (5.5) */
	for (size_t i = 0; i < a->nrr && j->nptr < DNS_SPF_PTR_MAX; i++) {
		const char *name = a->rr[i].u.cname;
		if (a->rr[i].type == SPF_DNS_PTR && name_ok(name)) {
			str_lcpy(j->ptr[j->nptr].name, name, sizeof j->ptr[0].name);
			j->ptr[j->nptr++].st = PS_UNKNOWN;
		}
	}
}

static void on_ptraddr(struct spf_job *j, const struct dns_answer *a)
{
	j->ptr[j->ptr_cur].st = PS_INVALID;	/* also on a DNS error: skipped (5.5) */
	if (is_dns_error(a))
		return;			/* nor void: 4.6.4 counts terms, as for mx */
	for (size_t i = 0; i < a->nrr; i++)
		if (rr_matches(j, &a->rr[i], 32, 128))
			j->ptr[j->ptr_cur].st = PS_VALID;
}

/* ==== expansion =========================================================== */

/*
 * Expand spec[0..len) for domain into out: EV_CONT when done, EV_NOMATCH on a
 * macro syntax error (out ""), EV_WAIT/EV_END while %{p} is looked up.
 */
static enum spf_ev spf_expand(struct spf_job *j, const char *domain, const char *spec,
			      size_t len, bool exp, char *out, size_t outsz)
{
	struct dns_spf_macro_ctx mc;
	char *buf = xstrndup(spec, len);
	spf_macro_ctx(j, domain, &mc);
	enum rc rc = dns_spf_macro_expand(buf, &mc, exp, out, outsz);
	if (rc == RC_AGAIN) {
		size_t idx = 0;
		enum spf_ev e = ptr_find(j, domain, true, &idx);
		if (e == EV_WAIT || e == EV_END) {
			free(buf);
			return e;
		}
		mc.validated = e == EV_MATCH ? j->ptr[idx].name : "unknown";
		rc = dns_spf_macro_expand(buf, &mc, exp, out, outsz);
	}
	free(buf);
	if (rc != RC_OK && rc != RC_LIMIT) {
		out[0] = '\0';
		return EV_NOMATCH;
	}
	return EV_CONT;
}

/* ==== frames ============================================================== */

static void frame_init(struct spf_frame *f, const char *domain, bool include)
{
	memset(f, 0, sizeof *f);
	size_t n = strlen(domain);
	if (n > 0 && domain[n - 1] == '.')
		n--;
	f->bad_domain = n >= sizeof f->domain;
	if (!f->bad_domain) {
		memcpy(f->domain, domain, n);
		f->domain[n] = '\0';
	}
	f->include = include;
	f->redirect_at = f->exp_at = SPF_NO_POS;
	f->step = ST_NEXT;
}

/* The explanation of a result that no exp= replaces (6.2 allows a default). */
static void explain_result(struct spf_job *j, const struct spf_frame *f, enum dns_spf_result r,
			   bool matched)
{
	const char *m = j->out.mechanism;
	switch (r) {
	case DNS_SPF_PASS:
		spf_explain(j, "%s designates %s as permitted sender (mechanism '%s' matched)",
			    f->domain, j->ipstr, m);
		break;
	case DNS_SPF_FAIL:
		spf_explain(j, "%s does not designate %s as permitted sender (mechanism '%s' matched)",
			    f->domain, j->ipstr, m);
		break;
	case DNS_SPF_SOFTFAIL:
		spf_explain(j, "%s does not designate %s as permitted sender, softly (mechanism '%s' "
			    "matched)", f->domain, j->ipstr, m);
		break;
	default:
		if (matched)
			spf_explain(j, "%s makes no assertion about %s (mechanism '%s' matched)",
				    f->domain, j->ipstr, m);
		else
			spf_explain(j, "%s makes no assertion about %s (no mechanism matched)",
				    f->domain, j->ipstr);
	}
}

/* A frame's evaluation gave r (matched: its current term decided). An
 * include's goes to the including term (5.2); the top one's is the result. */
static enum spf_ev frame_done(struct spf_job *j, struct spf_frame *f, enum dns_spf_result r,
			      bool matched)
{
	if (f->include) {
		free(f->rec);
		j->depth--;
		spf_top(j)->sub = r;
		return EV_CONT;
	}
	j->out.result = r;
	if (matched)
		snprintf(j->out.mechanism, sizeof j->out.mechanism, "%.*s", (int)f->term.textlen,
			 f->term.text);
	explain_result(j, f, r, matched);
	if (r == DNS_SPF_FAIL && f->exp_at != SPF_NO_POS) {
		j->exp_phase = true;
		return EV_CONT;
	}
	j->final = true;
	return EV_END;
}

/* A frame found no record for its domain (4.3, 4.5). */
static enum spf_ev frame_none(struct spf_job *j, struct spf_frame *f, const char *why)
{
	if (f->include)
		return spf_final(j, DNS_SPF_PERMERROR, "include:%s: %s %s (RFC 7208 5.2)", f->domain,
				 f->domain, why);
	if (f->redirected)
		return spf_final(j, DNS_SPF_PERMERROR, "redirect=%s: %s %s (RFC 7208 6.1)",
				 f->domain, f->domain, why);
	const char *name = f->bad_domain ? "an overlong domain"
			   : f->domain[0] ? f->domain
					  : "an empty domain";
	return spf_final(j, DNS_SPF_NONE, "%s %s", name, why);
}

static enum spf_ev record_fetch(struct spf_job *j, struct spf_frame *f)
{
	if (f->bad_domain || !domain_ok(f->domain))
		return frame_none(j, f, "is not a valid domain name");
	return spf_query(j, f->domain, DNS_TXT, Q_RECORD);
}

/* Keep the record, and where its redirect= and exp= are. */
static void record_take(struct spf_frame *f, const char *txt, size_t len)
{
	struct dns_spf_term t;
	f->rec = xstrndup(txt, len);
	f->len = len;
	f->pos = 0;
	for (size_t pos = 0, prev = 0;
	     dns_spf_term_next(f->rec, f->len, &pos, &t, NULL, 0) == RC_OK; prev = pos) {
		if (t.kind == DNS_SPF_T_REDIRECT)
			f->redirect_at = prev;
		else if (t.kind == DNS_SPF_T_EXP)
			f->exp_at = prev;
	}
}

/* The one TXT record of a that is an SPF record (4.5): *n counts them. */
static const struct dns_rr *record_select(const struct dns_answer *a, unsigned *n)
{
	const struct dns_rr *rec = NULL;
	*n = 0;
	for (size_t i = 0; i < a->nrr; i++) {
		if (dns_spf_is_record(a->rr[i].u.txt.data, a->rr[i].u.txt.len)) {
			rec = &a->rr[i];
			(*n)++;
		}
	}
	return rec;
}

static void on_record(struct spf_job *j, const struct dns_answer *a)
{
	struct spf_frame *f = spf_top(j);
	char why[160] = "";
	unsigned n;
	if (is_dns_error(a)) {
		dns_failed(j, "TXT", a);
		return;
	}
	if (!spf_count_void(j, a, "TXT"))
		return;
	const struct dns_rr *rec = record_select(a, &n);
	if (n == 0) {
		frame_none(j, f, a->status == DNS_NXDOMAIN ? "does not exist" : "has no SPF record");
		return;
	}
	if (n > 1) {
		spf_final(j, DNS_SPF_PERMERROR, "%s has %u SPF records (RFC 7208 4.5)", f->domain, n);
		return;
	}
	if (rec->u.txt.truncated)
		snprintf(why, sizeof why, "longer than %d octets", DNS_TXT_MAX);
	else if (dns_spf_record_check(rec->u.txt.data, rec->u.txt.len, why, sizeof why) == RC_OK)
		why[0] = '\0';
	if (why[0] != '\0')
		spf_final(j, DNS_SPF_PERMERROR, "%s: SPF record syntax error: %s", f->domain, why);
	else
		record_take(f, rec->u.txt.data, rec->u.txt.len);
}

/* Pick the next mechanism (modifiers are not evaluated in order, 6). */
static bool term_pick(struct spf_frame *f)
{
	do {
		if (dns_spf_term_next(f->rec, f->len, &f->pos, &f->term, NULL, 0) != RC_OK)
			return false;
	} while (f->term.kind >= DNS_SPF_T_REDIRECT);
	f->step = ST_START;
	f->tres = EV_NOMATCH;
	return true;
}

/* No mechanism matched: redirect= if there is one (6.1), else neutral (4.7). */
static enum spf_ev frame_end(struct spf_job *j, struct spf_frame *f)
{
	if (f->redirect_at == SPF_NO_POS)
		return frame_done(j, f, DNS_SPF_NEUTRAL, false);
	size_t pos = f->redirect_at;
	f->redirect_at = SPF_NO_POS;
	(void)dns_spf_term_next(f->rec, f->len, &pos, &f->term, NULL, 0);
	f->step = ST_START;
	return EV_CONT;
}

/* ==== mechanisms ========================================================== */

/* a and exists: one address lookup (5.3, 5.7). */
static enum spf_ev eval_addr(struct spf_job *j, struct spf_frame *f)
{
	if (f->step == ST_ANSWER)
		return f->tres;
	if (!name_ok(f->target))
		return EV_NOMATCH;
	f->step = ST_ANSWER;
	uint16_t type = f->term.kind == DNS_SPF_T_EXISTS ? DNS_A : spf_addr_type(j);
	return spf_query(j, f->target, type, Q_ADDR);
}

static void on_addr(struct spf_job *j, const struct dns_answer *a)
{
	struct spf_frame *f = spf_top(j);
	const char *type = dns_type_name(f->term.kind == DNS_SPF_T_EXISTS ? DNS_A
									    : spf_addr_type(j));
	if (is_dns_error(a)) {
		dns_failed(j, type, a);
		return;
	}
	if (!spf_count_void(j, a, type))
		return;
	for (size_t i = 0; i < a->nrr; i++)
		if (f->term.kind == DNS_SPF_T_EXISTS ||
		    rr_matches(j, &a->rr[i], f->term.cidr4, f->term.cidr6))
			f->tres = EV_MATCH;
}

/* mx: the MX records, then each exchange's addresses (5.4). */
static enum spf_ev eval_mx(struct spf_job *j, struct spf_frame *f)
{
	if (f->step == ST_LOOKUP) {
		if (!name_ok(f->target))
			return EV_NOMATCH;
		f->step = ST_MXHOSTS;
		j->nmx = j->mxi = 0;
		return spf_query(j, f->target, DNS_MX, Q_MX);
	}
	if (f->tres == EV_MATCH)
		return EV_MATCH;
	if (j->mxi >= j->nmx)
		return EV_NOMATCH;
	return spf_query(j, j->mx[j->mxi].host, spf_addr_type(j), Q_MXADDR);
}

static int mx_cmp(const void *a, const void *b)
{
	const struct spf_mx *x = a, *y = b;
	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void on_mx(struct spf_job *j, const struct dns_answer *a)
{
	struct spf_frame *f = spf_top(j);
	if (is_dns_error(a)) {
		dns_failed(j, "MX", a);
		return;
	}
	if (!spf_count_void(j, a, "MX"))
		return;
	if (a->nrr > DNS_SPF_MX_MAX) {
		spf_final(j, DNS_SPF_PERMERROR, "%s has more than %d MX records (RFC 7208 4.6.4)",
			  f->target, DNS_SPF_MX_MAX);
		return;
	}
	for (size_t i = 0; i < a->nrr; i++) {
		if (a->rr[i].u.mx.host[0] == '\0')
			continue;	/* a null MX (RFC 7505) names no host */
		struct spf_mx *m = &j->mx[j->nmx++];
		m->pref = a->rr[i].u.mx.pref;
		m->order = i;
		str_lcpy(m->host, a->rr[i].u.mx.host, sizeof m->host);
	}
	qsort(j->mx, j->nmx, sizeof j->mx[0], mx_cmp);
}

static void on_mxaddr(struct spf_job *j, const struct dns_answer *a)
{
	struct spf_frame *f = spf_top(j);
	if (is_dns_error(a)) {
		dns_failed(j, dns_type_name(spf_addr_type(j)), a);
		return;
	}
	/* Not a void lookup (4.6.4 counts terms): an exchange without an address
	 * of the client's family is common (IPv4-only MX hosts, an IPv6 client). */
	for (size_t i = 0; i < a->nrr; i++)
		if (rr_matches(j, &a->rr[i], f->term.cidr4, f->term.cidr6))
			f->tres = EV_MATCH;
	j->mxi++;
}

/* ptr: a validated PTR name that is the target or below it (5.5). */
static enum spf_ev eval_ptr(struct spf_job *j, struct spf_frame *f)
{
	size_t idx;
	if (!name_ok(f->target))
		return EV_NOMATCH;
	return ptr_find(j, f->target, false, &idx);
}

/* include: evaluate the target in a new frame, map its result (5.2). */
static enum spf_ev eval_include(struct spf_job *j, struct spf_frame *f)
{
	if (f->step == ST_CHILD)
		return f->sub == DNS_SPF_PASS ? EV_MATCH : EV_NOMATCH;
	if (j->depth == SPF_DEPTH_MAX)
		return spf_final(j, DNS_SPF_PERMERROR, "include nested too deep");
	f->step = ST_CHILD;
	frame_init(&j->fr[j->depth++], f->target, true);
	return EV_CONT;
}

/* redirect: this frame becomes the evaluation of the target (6.1). */
static enum spf_ev eval_redirect(struct spf_job *j, struct spf_frame *f)
{
	char target[sizeof f->target];
	bool include = f->include;
	memcpy(target, f->target, sizeof target);
	free(f->rec);
	frame_init(f, target, include);
	f->redirected = true;
	return EV_CONT;
}

/* The terms that query DNS: count, expand the target, then look up. */
static enum spf_ev term_eval_dns(struct spf_job *j, struct spf_frame *f)
{
	const struct dns_spf_term *t = &f->term;
	if (f->step == ST_START) {
		if (++j->out.dns_lookups > DNS_SPF_LOOKUPS_MAX)
			return spf_final(j, DNS_SPF_PERMERROR,
					 "more than %d DNS-querying terms (RFC 7208 4.6.4), at '%.*s' "
					 "in %s", DNS_SPF_LOOKUPS_MAX, (int)t->textlen, t->text,
					 f->domain);
		f->step = ST_TARGET;
	}
	if (f->step == ST_TARGET) {
		if (t->spec == NULL) {
			str_lcpy(f->target, f->domain, sizeof f->target);
		} else {
			enum spf_ev e = spf_expand(j, f->domain, t->spec, t->speclen, false,
						   f->target, sizeof f->target);
			if (e == EV_WAIT || e == EV_END)
				return e;
		}
		f->step = ST_LOOKUP;
	}
	switch (t->kind) {
	case DNS_SPF_T_A:
	case DNS_SPF_T_EXISTS:
		return eval_addr(j, f);
	case DNS_SPF_T_MX:
		return eval_mx(j, f);
	case DNS_SPF_T_PTR:
		return eval_ptr(j, f);
	case DNS_SPF_T_INCLUDE:
		return eval_include(j, f);
	default:
		return eval_redirect(j, f);
	}
}

static enum spf_ev term_eval(struct spf_job *j, struct spf_frame *f)
{
	const struct dns_spf_term *t = &f->term;
	switch (t->kind) {
	case DNS_SPF_T_ALL:
		return EV_MATCH;
	case DNS_SPF_T_IP4:
		return j->family == AF_INET && prefix_eq(j->ip, t->net, t->cidr4) ? EV_MATCH
										 : EV_NOMATCH;
	case DNS_SPF_T_IP6:
		return j->family == AF_INET6 && prefix_eq(j->ip, t->net, t->cidr6) ? EV_MATCH
										   : EV_NOMATCH;
	default:
		return term_eval_dns(j, f);
	}
}

static enum dns_spf_result qual_result(char q)
{
	switch (q) {
	case '-':
		return DNS_SPF_FAIL;
	case '~':
		return DNS_SPF_SOFTFAIL;
	case '?':
		return DNS_SPF_NEUTRAL;
	default:
		return DNS_SPF_PASS;
	}
}

/* One step of the current frame. */
static enum spf_ev frame_step(struct spf_job *j)
{
	struct spf_frame *f = spf_top(j);
	if (f->rec == NULL)
		return record_fetch(j, f);
	if (f->step == ST_NEXT && !term_pick(f))
		return frame_end(j, f);
	enum spf_ev e = term_eval(j, f);
	if (e == EV_MATCH)
		return frame_done(j, f, qual_result(f->term.qual), true);
	if (e == EV_NOMATCH)
		f->step = ST_NEXT;
	return e == EV_NOMATCH ? EV_CONT : e;
}

/* ==== exp= (6.2) ========================================================= */

static enum spf_ev exp_step(struct spf_job *j)
{
	struct spf_frame *f = &j->fr[0];
	if (j->exp_step == 0) {
		struct dns_spf_term t;
		size_t pos = f->exp_at;
		(void)dns_spf_term_next(f->rec, f->len, &pos, &t, NULL, 0);
		enum spf_ev e = spf_expand(j, f->domain, t.spec, t.speclen, false, j->exp_target,
					   sizeof j->exp_target);
		if (e == EV_WAIT || e == EV_END)
			return e;
		j->final = !name_ok(j->exp_target);
		if (j->final)
			return EV_END;
		j->exp_step = 1;
		return spf_query(j, j->exp_target, DNS_TXT, Q_EXP);
	}
	j->final = true;
	if (j->exp_text == NULL)
		return EV_END;
	char buf[DNS_SPF_EXPLAIN_MAX];
	enum spf_ev e = spf_expand(j, f->domain, j->exp_text, strlen(j->exp_text), true, buf,
				   sizeof buf);
	if (e == EV_WAIT) {
		j->final = false;
		return e;
	}
	if (e == EV_CONT)
		str_lcpy(j->out.explanation, buf, sizeof j->out.explanation);
	return EV_END;
}

static void on_exp(struct spf_job *j, const struct dns_answer *a)
{
	if (a->status != DNS_OK || a->nrr != 1)
		return;			/* ignored: as if there were no exp= */
	const struct dns_rr *rr = &a->rr[0];
	if (rr->u.txt.truncated || strlen(rr->u.txt.data) != rr->u.txt.len)
		return;
	j->exp_text = xstrdup(rr->u.txt.data);
}

/* ==== the job ============================================================= */

static void spf_on_dns(void *ctx, uint64_t cookie, const struct dns_answer *a)
{
	struct spf_job *j = ctx;
	enum spf_q q = j->pending;
	j->pending = Q_NONE;
	switch (q) {
	case Q_RECORD:
		on_record(j, a);
		break;
	case Q_ADDR:
		on_addr(j, a);
		break;
	case Q_MX:
		on_mx(j, a);
		break;
	case Q_MXADDR:
		on_mxaddr(j, a);
		break;
	case Q_PTR:
		on_ptr(j, a);
		break;
	case Q_PTRADDR:
		on_ptraddr(j, a);
		break;
	case Q_EXP:
		on_exp(j, a);
		break;
	case Q_NONE:
		fatal("event=spf_answer_unexpected name=%s", a->qname);
	}
	spf_run(j);
}

static void spf_drop(struct dns_job *dj)
{
	struct spf_job *j = (struct spf_job *)dj;
	for (unsigned i = 0; i < j->depth; i++)
		free(j->fr[i].rec);
	if (j->ev)
		event_free(j->ev);
	free(j->local);
	free(j->sdomain);
	free(j->helo);
	free(j->receiver);
	free(j->exp_text);
	free(j);
}

/* Control characters out of what may end up in an SMTP reply or a log. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			*s = '?';
}

/* Report the outcome and free the job (the callback may free j->d). */
static void spf_finish(struct spf_job *j)
{
	sanitize(j->out.explanation);
	sanitize(j->out.mechanism);
	dns_job_detach(j->d, &j->job);
	log_debug("event=spf domain=%s ip=%s result=%s mechanism=\"%s\" lookups=%u voids=%u",
		  j->fr[0].domain, j->ipstr, dns_spf_result_name(j->out.result), j->out.mechanism,
		  j->out.dns_lookups, j->out.void_lookups);
	j->cb(j->ctx, j->cookie, &j->out);
	spf_drop(&j->job);
}

/* Go on until a query is under way or the result is final. */
static void spf_run(struct spf_job *j)
{
	for (;;) {
		enum spf_ev e;
		if (j->final)
			e = EV_END;
		else if (j->exp_phase)
			e = exp_step(j);
		else
			e = frame_step(j);
		if (e == EV_WAIT)
			return;
		if (e == EV_END) {
			spf_finish(j);
			return;
		}
	}
}

static void spf_on_start(evutil_socket_t fd, short what, void *arg)
{
	spf_run(arg);
}

/* ip into family/ip (IPv4-mapped IPv6 as IPv4); false for another family. */
static bool spf_set_ip(struct spf_job *j, const struct sockaddr *sa)
{
	if (sa != NULL && sa->sa_family == AF_INET) {
		j->family = AF_INET;
		memcpy(j->ip, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		j->family = IN6_IS_ADDR_V4MAPPED(a) ? AF_INET : AF_INET6;
		memcpy(j->ip, j->family == AF_INET ? a->s6_addr + 12 : a->s6_addr,
		       j->family == AF_INET ? 4 : 16);
	} else {
		return false;
	}
	if (inet_ntop(j->family, j->ip, j->ipstr, sizeof j->ipstr) == NULL)
		str_lcpy(j->ipstr, "?", sizeof j->ipstr);
	return true;
}

/* <sender>'s local-part and domain (2.4, 4.3). */
static void spf_set_sender(struct spf_job *j, const char *sender, const char *helo)
{
	const char *at = strrchr(sender, '@');
	j->helo = xstrdup(helo ? helo : "");
	if (sender[0] == '\0' || at == NULL || at == sender)
		j->local = xstrdup("postmaster");
	else
		j->local = xstrndup(sender, (size_t)(at - sender));
	if (sender[0] == '\0')
		j->sdomain = xstrdup(j->helo);
	else
		j->sdomain = xstrdup(at ? at + 1 : sender);
}

/* dns_spf_check - start check_host() for ip and sender (see dns.h). */
void dns_spf_check(struct dns *d, const struct sockaddr *ip, const char *sender,
		   const char *helo, const char *receiver, dns_spf_cb cb, void *ctx,
		   uint64_t cookie)
{
	struct spf_job *j = xcalloc(1, sizeof *j);
	j->job.drop = spf_drop;
	j->d = d;
	j->cb = cb;
	j->ctx = ctx;
	j->cookie = cookie;
	j->started = time_mono_ms();
	j->now = time_now_ms() / 1000;
	j->receiver = xstrdup(receiver ? receiver : "");
	spf_set_sender(j, sender ? sender : "", helo);
	frame_init(&j->fr[0], j->sdomain, false);
	j->depth = 1;
	if (!spf_set_ip(j, ip))
		spf_final(j, DNS_SPF_PERMERROR, "the client address is neither IPv4 nor IPv6");
	dns_job_attach(d, &j->job);
	j->ev = event_new(dns_base(d), -1, 0, spf_on_start, j);
	if (j->ev == NULL)
		fatal("event=event_new_failed where=dns_spf_check");
	event_active(j->ev, EV_TIMEOUT, 1);
}
