/*
 * mta_route.c - where mail for a domain goes (RFC 5321 5.1, RFC 7505): the MX
 * records, then the addresses of every MX host, in the order to try.
 *
 * Rules, in the order they apply to an MX answer:
 * - NXDOMAIN: RC_PERMFAIL 5.1.2. SERVFAIL, timeout, malformed: RC_TEMPFAIL
 *   4.4.3 - DNS trouble never bounces mail.
 * - Null MX (RFC 7505 3): an MX with the exchange "." anywhere in the answer,
 *   whatever its preference and whatever else is there: RC_PERMFAIL 5.1.10
 *   without any address lookup. RFC 7505 3 says a domain with a null MX "MUST
 *   NOT advertise any other MX RR"; one that does has still said it accepts no
 *   mail, and delivering through the other records would ignore that.
 * - NODATA: the implicit MX, the domain's own A/AAAA with preference 0. If
 *   that name has no address either (both NODATA/NXDOMAIN) the domain has no
 *   route at all: RC_PERMFAIL 5.4.4, as Postfix does ("Host found but no data
 *   record of requested type"); any temporary failure keeps it RC_TEMPFAIL.
 * - Otherwise the hosts are sorted by preference, equal preferences shuffled
 *   (a per-thread PRNG seeded from getrandom; mta_route_seed() makes it
 *   repeatable for tests), duplicates dropped, the list cut at
 *   MTA_ROUTE_HOSTS_MAX, and A and AAAA are asked for every host at once.
 *   A host with no address is skipped; if none is left, RC_TEMPFAIL 4.4.3 even
 *   when every lookup said NXDOMAIN (Postfix treats "MX host not found" as
 *   temporary: it is the receiving domain's transient mistake more often than
 *   not). An MX exchange written as an address ("1.2.3.4", "[1.2.3.4]") is not
 *   a host name (RFC 5321 5.1 forbids it) but appears in the wild; it is
 *   resolved as a name like any other, which fails, so it is skipped.
 * - Addresses: IPv4 before IPv6 by default, since a relay's IPv6 egress is
 *   more often missing than its IPv4 one (mta_route_set_family changes it,
 *   process-wide); at most 8 per host and MTA_ROUTE_ADDRS_MAX per route, port
 *   set.
 * - An address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") needs no DNS:
 *   one host, name "" (the caller names it by its address).
 * mta_route_host (a static route's relay host) is the same without MX; a host
 * without any address is always RC_TEMPFAIL there (a configuration mistake
 * must not bounce mail).
 *
 * Ownership: a route_job is attached to its struct dns until its callback runs;
 * it owns its state and the deferred event. The callback runs exactly once, on
 * the loop, never inside mta_route_*; if the struct dns is freed first, the job is
 * dropped without it. struct mta_route is valid during the callback only.
 */
#include "mta/mta.h"

#include "conf/conf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ROUTE_HOST_ADDRS ARRAY_LEN(((struct mta_route_host *)0)->addr)

/* One host being resolved: its name, and what A and AAAA said. */
struct route_cand {
	char name[DNS_NAME_MAX + 1];
	uint16_t pref;
	enum dns_status st4, st6;	/* NODATA too when the family is not asked */
	size_t n4, n6;
	uint8_t v4[ROUTE_HOST_ADDRS][4];
	uint8_t v6[ROUTE_HOST_ADDRS][16];
};

struct route_job {
	struct dns_job job;		/* first: the drop hook casts back */
	struct dns *d;
	struct event *ev;		/* deferred completion without DNS, or NULL */
	mta_route_cb cb;
	void *ctx;
	uint64_t cookie;
	uint16_t port;
	bool implicit;			/* no MX: the domain's own addresses */
	bool static_host;		/* mta_route_host */
	unsigned pending;		/* address queries outstanding */
	char domain[DNS_NAME_MAX + 1];
	size_t ncand;
	struct route_cand cand[MTA_ROUTE_HOSTS_MAX];
	struct mta_route r;
};

static _Atomic int route_family = MTA_ROUTE_IPV4_FIRST;
static _Thread_local uint64_t rng_state;
static _Thread_local bool rng_seeded;

/* mta_route_set_family - address family order for every later route. */
void mta_route_set_family(enum mta_route_family f)
{
	atomic_store(&route_family, (int)f);
}

/* mta_route_seed - make this thread's shuffles repeatable (tests). */
void mta_route_seed(uint64_t seed)
{
	rng_state = seed;
	rng_seeded = true;
}

/* splitmix64: small, fast and good enough to spread load over equal MX hosts. */
static uint64_t rng_next(void)
{
	if (!rng_seeded) {
		uint64_t s;
		if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
			s = (uint64_t)time_now_ms() ^ ((uint64_t)getpid() << 32);
		mta_route_seed(s);
	}
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void route_drop(struct dns_job *j)
{
	struct route_job *job = (struct route_job *)j;
	if (job->ev)
		event_free(job->ev);
	free(job);
}

static struct route_job *route_job_new(struct dns *d, uint16_t port, mta_route_cb cb,
				       void *ctx, uint64_t cookie)
{
	struct route_job *job = xcalloc(1, sizeof *job);
	job->job.drop = route_drop;
	job->d = d;
	job->port = port;
	job->cb = cb;
	job->ctx = ctx;
	job->cookie = cookie;
	job->r.rc = RC_OK;
	job->r.enh = "";
	dns_job_attach(d, &job->job);
	return job;
}

/* Report the route and free the job (the callback may free job->d). */
static void route_finish(struct route_job *job)
{
	dns_job_detach(job->d, &job->job);
	log_debug("event=route domain=%s rc=%s enh=%s hosts=%zu why=\"%s\"", job->domain,
		  rc_name(job->r.rc), job->r.enh, job->r.nhosts, job->r.why);
	job->cb(job->ctx, job->cookie, &job->r);
	route_drop(&job->job);
}

static void route_on_later(evutil_socket_t fd, short what, void *arg)
{
	route_finish(arg);
}

/* Report on the next loop turn: for results known without any DNS query. */
static void route_finish_later(struct route_job *job)
{
	job->ev = event_new(dns_base(job->d), -1, 0, route_on_later, job);
	if (job->ev == NULL)
		fatal("event=event_new_failed where=mta_route");
	event_active(job->ev, EV_TIMEOUT, 1);
}

__attribute__((format(printf, 4, 5))) static void
route_fail(struct route_job *job, enum rc rc, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->r.why, sizeof job->r.why, fmt, ap);
	va_end(ap);
	job->r.rc = rc;
	job->r.enh = enh;
	job->r.nhosts = 0;
}

/* Lower case, no trailing dot; false when empty or too long for DNS. */
static bool route_norm(const char *in, char out[DNS_NAME_MAX + 1])
{
	size_t l = strlen(in);
	if (l > 0 && in[l - 1] == '.')
		l--;
	if (l == 0 || l > DNS_NAME_MAX - 2)
		return false;
	memcpy(out, in, l);
	out[l] = '\0';
	str_lower(out);
	return true;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3) into sa, port set. */
static bool route_parse_literal(const char *s, uint16_t port, struct sockaddr_storage *sa)
{
	char in[INET6_ADDRSTRLEN + 8];
	size_t l = strlen(s);
	if (l < 3 || s[0] != '[' || s[l - 1] != ']' || l - 2 >= sizeof in)
		return false;
	memcpy(in, s + 1, l - 2);
	in[l - 2] = '\0';
	memset(sa, 0, sizeof *sa);
	if (str_has_prefix_ci(in, "IPv6:")) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return inet_pton(AF_INET6, in + 5, &s6->sin6_addr) == 1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	return inet_pton(AF_INET, in, &s4->sin_addr) == 1;
}

/* An address literal: one host, no DNS; reported on the next loop turn. */
static void route_literal(struct route_job *job, const char *lit)
{
	struct mta_route_host *h = &job->r.host[0];
	str_lcpy(job->domain, lit, sizeof job->domain);
	if (!route_parse_literal(lit, job->port, &h->addr[0])) {
		if (job->static_host)
			route_fail(job, RC_TEMPFAIL, "4.4.3", "invalid relay address %.200s", lit);
		else
			route_fail(job, RC_PERMFAIL, "5.1.2", "invalid address literal %.200s",
				   lit);
	} else {
		h->naddr = 1;
		job->r.nhosts = 1;
	}
	route_finish_later(job);
}

/* Copy the addresses of family fam (AF_INET/AF_INET6) of c into h. */
static void route_add_addrs(const struct route_job *job, const struct route_cand *c, int fam,
			    struct mta_route_host *h, size_t *total)
{
	size_t n = fam == AF_INET ? c->n4 : c->n6;
	for (size_t i = 0; i < n && h->naddr < ROUTE_HOST_ADDRS && *total < MTA_ROUTE_ADDRS_MAX;
	     i++) {
		struct sockaddr_storage *sa = &h->addr[h->naddr++];
		memset(sa, 0, sizeof *sa);
		(*total)++;
		if (fam == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
			s4->sin_family = AF_INET;
			s4->sin_port = htons(job->port);
			memcpy(&s4->sin_addr, c->v4[i], 4);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(job->port);
			memcpy(&s6->sin6_addr, c->v6[i], 16);
		}
	}
}

static bool is_temp(enum dns_status s)
{
	return s == DNS_TEMPFAIL || s == DNS_MALFORMED;
}

/* Why there is no route: every candidate resolved to nothing. */
static void route_no_address(struct route_job *job)
{
	bool temp = false;
	for (size_t i = 0; i < job->ncand; i++)
		temp = temp || is_temp(job->cand[i].st4) || is_temp(job->cand[i].st6);
	if (job->static_host)
		route_fail(job, RC_TEMPFAIL, "4.4.3", "relay host %.200s has no address%s",
			   job->domain, temp ? " (DNS failure)" : "");
	else if (job->implicit && !temp)
		route_fail(job, RC_PERMFAIL, "5.4.4", "domain %.200s has no MX and no address",
			   job->domain);
	else if (job->implicit)
		route_fail(job, RC_TEMPFAIL, "4.4.3", "address lookup for %.200s failed",
			   job->domain);
	else
		route_fail(job, RC_TEMPFAIL, "4.4.3", "no MX host of %.200s has an address%s",
			   job->domain, temp ? " (DNS failure)" : "");
}

/* All address answers are in: build the host list in the order to try. */
static void route_assemble(struct route_job *job)
{
	int fam = atomic_load(&route_family);
	int first = fam == MTA_ROUTE_IPV6_FIRST || fam == MTA_ROUTE_IPV6_ONLY ? AF_INET6 : AF_INET;
	int second = first == AF_INET ? AF_INET6 : AF_INET;
	size_t total = 0;
	job->r.nhosts = 0;
	for (size_t i = 0; i < job->ncand && total < MTA_ROUTE_ADDRS_MAX; i++) {
		const struct route_cand *c = &job->cand[i];
		struct mta_route_host *h = &job->r.host[job->r.nhosts];
		memset(h, 0, sizeof *h);
		route_add_addrs(job, c, first, h, &total);
		route_add_addrs(job, c, second, h, &total);
		if (h->naddr == 0) {
			log_debug("event=route_host_skipped domain=%s host=%s a=%s aaaa=%s",
				  job->domain, c->name, dns_status_name(c->st4),
				  dns_status_name(c->st6));
			continue;
		}
		memcpy(h->name, c->name, sizeof h->name);
		h->pref = c->pref;
		job->r.nhosts++;
	}
	if (job->r.nhosts == 0)
		route_no_address(job);
}

/* An A or AAAA answer for candidate cookie >> 1 (low bit: AAAA). */
static void route_on_addr(void *ctx, uint64_t cookie, const struct dns_answer *ans)
{
	struct route_job *job = ctx;
	struct route_cand *c = &job->cand[cookie >> 1];
	bool v6 = cookie & 1;
	size_t n = 0;
	for (size_t i = 0; i < ans->nrr && n < ROUTE_HOST_ADDRS; i++, n++) {
		if (v6)
			memcpy(c->v6[n], ans->rr[i].u.aaaa, 16);
		else
			memcpy(c->v4[n], ans->rr[i].u.a, 4);
	}
	if (v6) {
		c->st6 = ans->status;
		c->n6 = n;
	} else {
		c->st4 = ans->status;
		c->n4 = n;
	}
	if (--job->pending > 0)
		return;
	route_assemble(job);
	route_finish(job);
}

/* Ask A and/or AAAA (per the family setting) for every candidate at once. */
static void route_resolve_hosts(struct route_job *job)
{
	int fam = atomic_load(&route_family);
	bool want4 = fam != MTA_ROUTE_IPV6_ONLY, want6 = fam != MTA_ROUTE_IPV4_ONLY;
	for (size_t i = 0; i < job->ncand; i++) {
		job->cand[i].st4 = job->cand[i].st6 = DNS_NODATA;
		job->pending += (unsigned)want4 + (unsigned)want6;
	}
	for (size_t i = 0; i < job->ncand; i++) {
		if (want4)
			dns_query(job->d, job->cand[i].name, DNS_A, route_on_addr, job,
				      (uint64_t)i << 1);
		if (want6)
			dns_query(job->d, job->cand[i].name, DNS_AAAA, route_on_addr, job,
				      (uint64_t)i << 1 | 1);
	}
}

/* The domain itself as its only host (implicit MX, static route). */
static void route_single(struct route_job *job)
{
	str_lcpy(job->cand[0].name, job->domain, sizeof job->cand[0].name);
	job->cand[0].pref = 0;
	job->ncand = 1;
	route_resolve_hosts(job);
}

static bool cand_seen(const struct route_job *job, const char *name)
{
	for (size_t i = 0; i < job->ncand; i++)
		if (strcmp(job->cand[i].name, name) == 0)
			return true;
	return false;
}

/* Shuffle each run of equal preference (Fisher-Yates within the run). */
static void route_shuffle_equal(const struct dns_rr **v, size_t n)
{
	for (size_t lo = 0, hi; lo < n; lo = hi) {
		for (hi = lo + 1; hi < n && v[hi]->u.mx.pref == v[lo]->u.mx.pref; hi++)
			;
		for (size_t i = hi - 1; i > lo; i--) {
			size_t j = lo + (size_t)(rng_next() % (i - lo + 1));
			const struct dns_rr *t = v[i];
			v[i] = v[j];
			v[j] = t;
		}
	}
}

/* Sort the real MX hosts (insertion sort: at most DNS_MAX_RR of them). */
static size_t route_sort_mx(const struct dns_answer *ans, const struct dns_rr **v)
{
	size_t n = 0;
	for (size_t i = 0; i < ans->nrr; i++) {
		const struct dns_rr *rr = &ans->rr[i];
		if (rr->u.mx.host[0] == '\0')
			return 0;		/* a null MX anywhere: see the file comment */
		size_t k = n++;
		for (; k > 0 && v[k - 1]->u.mx.pref > rr->u.mx.pref; k--)
			v[k] = v[k - 1];
		v[k] = rr;
	}
	route_shuffle_equal(v, n);
	return n;
}

/* An MX answer with records: null MX, or the hosts to resolve. */
static void route_from_mx(struct route_job *job, const struct dns_answer *ans)
{
	const struct dns_rr *v[DNS_MAX_RR];
	size_t n = route_sort_mx(ans, v);
	if (n == 0) {
		route_fail(job, RC_PERMFAIL, "5.1.10", "Recipient address has null MX");
		route_finish(job);
		return;
	}
	for (size_t i = 0; i < n && job->ncand < MTA_ROUTE_HOSTS_MAX; i++) {
		if (cand_seen(job, v[i]->u.mx.host))
			continue;
		struct route_cand *c = &job->cand[job->ncand++];
		str_lcpy(c->name, v[i]->u.mx.host, sizeof c->name);
		c->pref = v[i]->u.mx.pref;
	}
	route_resolve_hosts(job);
}

static void route_on_mx(void *ctx, uint64_t cookie, const struct dns_answer *ans)
{
	struct route_job *job = ctx;
	switch (ans->status) {
	case DNS_OK:
		route_from_mx(job, ans);
		return;
	case DNS_NODATA:
		job->implicit = true;
		route_single(job);
		return;
	case DNS_NXDOMAIN:
		route_fail(job, RC_PERMFAIL, "5.1.2", "domain %.200s does not exist",
			   job->domain);
		break;
	default:
		route_fail(job, RC_TEMPFAIL, "4.4.3", "MX lookup for %.200s failed (%s)",
			   job->domain, dns_status_name(ans->status));
		break;
	}
	route_finish(job);
}

/* mta_route_mx - where mail for domain goes (see mta.h and the file comment). */
void mta_route_mx(struct dns *d, const char *domain, uint16_t port, mta_route_cb cb,
		  void *ctx, uint64_t cookie)
{
	struct route_job *job = route_job_new(d, port, cb, ctx, cookie);
	if (domain[0] == '[') {
		route_literal(job, domain);
		return;
	}
	if (!route_norm(domain, job->domain)) {
		str_lcpy(job->domain, domain, sizeof job->domain);
		route_fail(job, RC_PERMFAIL, "5.1.2", "invalid domain %.200s", domain);
		route_finish_later(job);
		return;
	}
	dns_query(d, job->domain, DNS_MX, route_on_mx, job, 0);
}

/* mta_route_host - one named host or literal, no MX (see mta.h). */
void mta_route_host(struct dns *d, const char *host, uint16_t port, mta_route_cb cb,
		    void *ctx, uint64_t cookie)
{
	struct route_job *job = route_job_new(d, port, cb, ctx, cookie);
	job->static_host = true;
	if (host[0] == '[') {
		route_literal(job, host);
		return;
	}
	if (!route_norm(host, job->domain)) {
		str_lcpy(job->domain, host, sizeof job->domain);
		route_fail(job, RC_TEMPFAIL, "4.4.3", "invalid relay host %.200s", host);
		route_finish_later(job);
		return;
	}
	route_single(job);
}

/* route_name_is_public - may an MX (or implicit MX) host have this name? Not one
 * label (resolved by nobody's search list, or a TLD's own address) and not
 * localhost (RFC 6761 6.3). */
static bool route_name_is_public(const char *name)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	const char *dot = memchr(name, '.', n);
	if (dot == NULL)
		return false;
	if (n == 9 && strncasecmp(name, "localhost", 9) == 0)
		return false;
	return !(n > 10 && strncasecmp(name + n - 10, ".localhost", 10) == 0);
}

/* route_addr_text - "a.b.c.d" or "v6" of sa into out. */
static void route_addr_text(const struct sockaddr_storage *sa, char *out, size_t outsz)
{
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outsz);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)outsz);
}

/* mta_route_restrict - see mta.h. The first refusal is kept for the reason. */
enum rc mta_route_restrict(struct mta_route *r, const struct conf *conf)
{
	char why[sizeof r->why] = "";
	size_t kept = 0;
	for (size_t i = 0; i < r->nhosts; i++) {
		struct mta_route_host *h = &r->host[i];
		if (h->name[0] && !route_name_is_public(h->name)) {
			if (!why[0])
				snprintf(why, sizeof why, "mail exchanger %.200s is not a public host name",
					 h->name);
			continue;
		}
		size_t n = 0;
		for (size_t k = 0; k < h->naddr; k++) {
			if (conf_delivery_allows(conf, (const struct sockaddr *)&h->addr[k])) {
				h->addr[n++] = h->addr[k];
				continue;
			}
			if (!why[0]) {
				char ip[INET6_ADDRSTRLEN] = "?";
				route_addr_text(&h->addr[k], ip, sizeof ip);
				snprintf(why, sizeof why,
					 "%.120s%s%s is an internal address, not delivered to "
					 "(delivery.allow_networks)",
					 h->name, h->name[0] ? " at " : "", ip);
			}
		}
		h->naddr = n;
		if (n > 0 && kept != i)
			r->host[kept] = *h;
		kept += n > 0;
	}
	r->nhosts = kept;
	if (kept > 0)
		return RC_OK;
	r->rc = RC_PERMFAIL;
	r->enh = "5.4.4";
	memcpy(r->why, why, sizeof r->why);
	log_info("event=route_restricted why=\"%s\"", r->why);
	return RC_PERMFAIL;
}
