/*
 * dns.h - DNS and what is built on it: asynchronous lookups (libunbound on the
 * caller's libevent loop, dns_resolve.c), the DNS wire parser (dns_msg.c), and
 * the SPF evaluator (RFC 7208: dns_spf.c, the pure record and macro parts in
 * dns_spf_macro.c). Used by the delivery engine (mta/: routes), the CLI
 * (domain check, spf eval, the DKIM watch), and later by MTA-STS and DANE.
 *
 * Threads: a struct dns and everything started on it run on its base's loop;
 * the pure functions (wire parsing, SPF record syntax and macros) are callable
 * anywhere. Async completions carry a 64-bit cookie and a long-lived ctx,
 * never a pointer to something that may be freed meanwhile.
 */
#ifndef RELEVO_DNS_H
#define RELEVO_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "core/core.h"

/* ==== DNS ================================================================ */

#define DNS_NAME_MAX 255
#define DNS_TXT_MAX 4096		/* one TXT RR, its strings concatenated */
#define DNS_MAX_RR 64		/* RRs kept per answer */
#define DNS_CNAME_MAX 8		/* CNAME chain links followed */

enum dns_type {
	DNS_A = 1, DNS_CNAME = 5, DNS_PTR = 12, DNS_MX = 15, DNS_TXT = 16,
	DNS_AAAA = 28
};

enum dns_status {
	DNS_OK = 0,		/* answer with at least one RR of the type asked */
	DNS_NODATA,		/* the name exists, no RR of that type */
	DNS_NXDOMAIN,	/* the name does not exist */
	DNS_TEMPFAIL,	/* SERVFAIL, REFUSED, timeout, truncated: try later */
	DNS_MALFORMED,	/* an answer we could not parse (treated as temporary) */
};
const char *dns_status_name(enum dns_status s);
/* dns_type_name - "A", "AAAA", "MX", "TXT", "CNAME" ("TYPE" otherwise), for logs. */
const char *dns_type_name(uint16_t type);

struct dns_rr {
	uint16_t type;
	uint32_t ttl;
	union {
		uint8_t a[4];
		uint8_t aaaa[16];
		struct {
			uint16_t pref;
			char host[DNS_NAME_MAX + 1];	/* lower case, no trailing dot; "" = "." */
		} mx;
		struct {
			uint16_t len;
			bool truncated;		/* longer than DNS_TXT_MAX: cut there */
			char data[DNS_TXT_MAX + 1];	/* NUL-terminated; may hold NULs */
		} txt;
		char cname[DNS_NAME_MAX + 1];	/* CNAME target (qtype CNAME only) */
	} u;
};

struct dns_answer {
	enum dns_status status;
	char qname[DNS_NAME_MAX + 1];	/* as asked */
	char cname[DNS_NAME_MAX + 1];	/* final name after CNAMEs, or "" */
	size_t nrr;
	struct dns_rr *rr;			/* nrr entries, of the type asked */
	bool secure;				/* DNSSEC-validated (for DANE, later) */
};
void dns_answer_fini(struct dns_answer *a);

/*
 * dns_msg_parse - parse a DNS response packet (RFC 1035) for qname/qtype:
 * rcode, then the answer section, following a CNAME chain from qname (at most
 * DNS_CNAME_MAX links) and keeping up to DNS_MAX_RR records of qtype
 * owned by the final name. Compression pointers are bounded (no loops, no
 * forward pointers beyond the packet). Pure; fuzzed.
 * qtype is one of enum dns_type (CNAME: the CNAME records of qname, no
 * chain). rcode 3 -> NXDOMAIN, any other non-zero rcode or the TC bit ->
 * TEMPFAIL. Returns RC_OK for a well-formed answer (status OK, NODATA,
 * NXDOMAIN or TEMPFAIL), RC_INVALID with status MALFORMED otherwise: framing
 * errors, a CNAME chain too long or looping, a CNAME target or MX exchange that
 * is not a printable host name. Names are lower case without the trailing dot.
 * Free out with dns_answer_fini() whatever the result.
 */
enum rc dns_msg_parse(const uint8_t *pkt, size_t len, const char *qname, uint16_t qtype,
			 struct dns_answer *out);

struct dns;
/* dns_new - a resolver on base: forwarding to resolver ("IP" or "IP@port",
 * loopback allowed) or, when NULL, per /etc/resolv.conf and /etc/hosts.
 * timeout_ms bounds every query (then DNS_TEMPFAIL); 0 means 10 s.
 * RC_INVALID for a resolver string libunbound does not take. */
enum rc dns_new(struct event_base *base, const char *resolver, unsigned timeout_ms,
		    struct dns **out);
/* dns_free - drop outstanding queries (their callbacks never run), and the
 * jobs attached with dns_job_attach (route lookups: theirs neither). */
void dns_free(struct dns *d);

typedef void (*dns_cb)(void *ctx, uint64_t cookie, const struct dns_answer *ans);
/* dns_query - look up name/type (an enum dns_type); cb runs later on
 * the loop (never inline), exactly once unless d is freed first; it may free
 * d. ans is valid during the call only. */
void dns_query(struct dns *d, const char *name, uint16_t type, dns_cb cb,
		   void *ctx, uint64_t cookie);

/*
 * Work built on several queries (mta_route.c, dns_spf.c) that waits on d is
 * attached to d, so that dns_free(d) can release it with drop(j) instead
 * of leaking it; it detaches itself before completing. Owner: the job's code.
 */
struct dns_job {
	struct dns_job *prev, *next;
	void (*drop)(struct dns_job *j);
};
/* dns_job_attach - link j into d's attached jobs. */
void dns_job_attach(struct dns *d, struct dns_job *j);
/* dns_job_detach - unlink j (before completing or freeing it). */
void dns_job_detach(struct dns *d, struct dns_job *j);
/* dns_base - the event base d runs on. */
struct event_base *dns_base(const struct dns *d);

/* ==== SPF (RFC 7208) ====================================================== */

/*
 * dns_spf.c evaluates check_host() (RFC 7208 4) on d's loop; dns_spf_macro.c
 * holds the pure parts: record and term syntax, macro expansion (section 7).
 * Limits (4.6.4): at most DNS_SPF_LOOKUPS_MAX DNS-querying terms (include, a,
 * mx, ptr, exists, redirect) in the whole evaluation, at most DNS_SPF_VOID_MAX
 * void lookups (NXDOMAIN or no answer), at most DNS_SPF_MX_MAX MX records per
 * mx, the first DNS_SPF_PTR_MAX PTR names per ptr/%{p}; beyond: permerror. An
 * evaluation running longer than DNS_SPF_TIME_MAX_MS is a temperror (4.6.4,
 * checked before each query). Decisions the RFC leaves open: dns_spf.c.
 */
#define DNS_SPF_LOOKUPS_MAX 10
#define DNS_SPF_VOID_MAX 2
#define DNS_SPF_MX_MAX 10
#define DNS_SPF_PTR_MAX 10
#define DNS_SPF_TIME_MAX_MS 20000
#define DNS_SPF_DOMAIN_MAX 253		/* an expanded domain-spec is cut to this (7.3) */
#define DNS_SPF_EXPLAIN_MAX 512

enum dns_spf_result {
	DNS_SPF_NONE,
	DNS_SPF_NEUTRAL,
	DNS_SPF_PASS,
	DNS_SPF_FAIL,
	DNS_SPF_SOFTFAIL,
	DNS_SPF_TEMPERROR,
	DNS_SPF_PERMERROR,
};
/* dns_spf_result_name - "pass", "fail", "softfail", "neutral", "none",
 * "permerror", "temperror" ("?" otherwise). */
const char *dns_spf_result_name(enum dns_spf_result r);

struct dns_spf_outcome {
	enum dns_spf_result result;
	char explanation[DNS_SPF_EXPLAIN_MAX];	/* fail: the exp= text when there is one
						 * (6.2), else, and for every other result,
						 * a human account of what matched or why it
						 * errored. Control characters are '?'. */
	char mechanism[256];		/* the mechanism that decided, as written in the
					 * record that decided (the top one, or a redirect
					 * target), e.g. "-all", "include:_spf.example.net";
					 * "" when none matched */
	unsigned dns_lookups;		/* DNS-querying terms counted (a refused 11th too) */
	unsigned void_lookups;		/* lookups answered NXDOMAIN or NODATA (exp= aside) */
};

typedef void (*dns_spf_cb)(void *ctx, uint64_t cookie, const struct dns_spf_outcome *o);
/*
 * dns_spf_check - check_host(ip, domain of sender, sender) for MAIL FROM
 * sender (without angle brackets; "" for the null sender: then
 * postmaster@helo, RFC 7208 2.4; an empty local-part is "postmaster"; no "@":
 * the whole string is the domain, local-part "postmaster"). helo is the
 * HELO/EHLO argument (%{h}; may be NULL), receiver our host name (%{r}; NULL:
 * "unknown"). An IPv4-mapped IPv6 ip is evaluated as IPv4 (5). cb runs exactly
 * once, later on d's loop (never inline), unless d is freed first; o is valid
 * during the call only, and cb may free d. The strings are copied.
 */
void dns_spf_check(struct dns *d, const struct sockaddr *ip, const char *sender,
		   const char *helo, const char *receiver, dns_spf_cb cb, void *ctx,
		   uint64_t cookie);

/* What macros expand to (7.3). NULL strings expand to "". */
struct dns_spf_macro_ctx {
	const char *local;		/* l: local-part of <sender> */
	const char *sender_domain;	/* o: domain of <sender>; s is "l@o" */
	const char *domain;		/* d: the current <domain> */
	int family;			/* AF_INET or AF_INET6 */
	uint8_t ip[16];			/* i, c, v: 4 octets (AF_INET) or 16 */
	const char *helo;		/* h */
	const char *receiver;		/* r (exp only); NULL or "": "unknown" */
	int64_t now;			/* t (exp only): unix seconds */
	const char *validated;		/* p: the validated name of ip, or "unknown";
					 * NULL: not known yet (see RC_AGAIN) */
};

/*
 * dns_spf_macro_expand - expand spec (7.1-7.3) into out. exp false: spec is a
 * domain-spec or other term argument: macro letters s l o d i p h v (any
 * case), no spaces; the result loses one trailing dot and is cut from the
 * left, label by label, to DNS_SPF_DOMAIN_MAX characters (7.3; "" when not
 * even the last label fits); outsz must exceed DNS_SPF_DOMAIN_MAX. exp true:
 * spec is an explanation string (6.2): spaces allowed, letters c r t too; the
 * result is cut to outsz - 1 (then RC_LIMIT, out still usable).
 * RC_INVALID: a syntax error (unknown letter, "%" not followed by "{", "%",
 * "_" or "-", a zero digit transformer, a character outside printable ASCII).
 * RC_AGAIN: spec uses %{p} and mc->validated is NULL (nothing expanded).
 * out is always terminated when outsz > 0. Pure; fuzzed.
 */
enum rc dns_spf_macro_expand(const char *spec, const struct dns_spf_macro_ctx *mc, bool exp,
			     char *out, size_t outsz);

/* Record syntax (4.5, 4.6.1, 5, 6). */
enum dns_spf_term_kind {
	DNS_SPF_T_ALL,
	DNS_SPF_T_INCLUDE,
	DNS_SPF_T_A,
	DNS_SPF_T_MX,
	DNS_SPF_T_PTR,
	DNS_SPF_T_IP4,
	DNS_SPF_T_IP6,
	DNS_SPF_T_EXISTS,
	DNS_SPF_T_REDIRECT,		/* modifiers from here on */
	DNS_SPF_T_EXP,
	DNS_SPF_T_UNKNOWN,		/* an unknown modifier: ignored (6) */
};
/* dns_spf_term_kind_name - "all", "include", ..., "redirect", "exp", "unknown". */
const char *dns_spf_term_kind_name(enum dns_spf_term_kind k);

/* One term; the pointers point into the record given to dns_spf_term_next. */
struct dns_spf_term {
	enum dns_spf_term_kind kind;
	char qual;			/* mechanisms: '+' (also when not written), '-',
					 * '~', '?'; modifiers: 0 */
	const char *text;		/* the term as written */
	size_t textlen;
	const char *spec;		/* the domain-spec (include, a, mx, ptr, exists,
					 * redirect, exp) or an unknown modifier's value;
					 * NULL when not written */
	size_t speclen;
	const char *name;		/* a modifier's name */
	size_t namelen;
	unsigned cidr4, cidr6;		/* a, mx, ip4, ip6: prefix lengths, 32 and 128
					 * when not written */
	uint8_t net[16];		/* ip4: 4 octets, ip6: 16 */
};

/* dns_spf_is_record - does txt begin with "v=spf1" (any case) followed by a
 * space or its end (4.5)? */
bool dns_spf_is_record(const char *txt, size_t len);
/*
 * dns_spf_term_next - parse the term after rec[*pos] (0: the first, after the
 * version) into t and move *pos past it. RC_OK; RC_NOTFOUND when no term is
 * left; RC_INVALID on a syntax error (why says which; why may be NULL): rec
 * not an SPF record, a character other than SP and printable ASCII, an unknown
 * mechanism, a bad domain-spec (7.1: it must end in a macro or "." toplabel),
 * address, CIDR length (no leading zeros, at most 32 and 128) or macro.
 * Pure; fuzzed.
 */
enum rc dns_spf_term_next(const char *rec, size_t len, size_t *pos, struct dns_spf_term *t,
			  char *why, size_t whysz);
/* dns_spf_record_check - the whole record, as 4.6 requires before any
 * evaluation: RC_NOTFOUND if it is not an SPF record, RC_INVALID (why) on any
 * syntax error, redirect= or exp= twice included, else RC_OK. Pure; fuzzed. */
enum rc dns_spf_record_check(const char *rec, size_t len, char *why, size_t whysz);

#endif
