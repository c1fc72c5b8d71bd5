/*
 * test_mta_route.c - routes (mta_route.c): where mail for a domain goes, over
 * the dns module's resolver forwarding to the fake DNS server of fake_dns.h
 * (see test_dns.c for the resolver itself), and the restriction of MX routes
 * to public hosts and addresses. A route is rendered as text
 * ("host/pref=addr,addr host/pref=addr") and compared with the expected one.
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
#include "dns/dns.h"
#include "fake_dns.h"
#include "mta/mta.h"
#include "unit_util.h"

/* ==== rendering routes as text ============================================ */

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

/* ==== routes against the fake ============================================= */

static const struct zrec zone[] = {
	{"mx.test", DNS_MX, "20 b.mx.test"},
	{"mx.test", DNS_MX, "10 a.mx.test"},
	{"mx.test", DNS_MX, "30 c.mx.test"},
	{"a.mx.test", DNS_A, "192.0.2.1"},
	{"a.mx.test", DNS_AAAA, "2001:db8::1"},
	{"b.mx.test", DNS_A, "192.0.2.2"},
	{"b.mx.test", DNS_A, "192.0.2.3"},
	{"c.mx.test", DNS_AAAA, "2001:db8::3"},
	{"eq.test", DNS_MX, "10 x.eq.test"},
	{"eq.test", DNS_MX, "10 y.eq.test"},
	{"eq.test", DNS_MX, "5 first.eq.test"},
	{"first.eq.test", DNS_A, "192.0.2.5"},
	{"x.eq.test", DNS_A, "192.0.2.30"},
	{"y.eq.test", DNS_A, "192.0.2.31"},
	{"implicit.test", DNS_A, "192.0.2.10"},
	{"implicit.test", DNS_AAAA, "2001:db8::10"},
	{"nullmx.test", DNS_MX, "0 ."},
	{"nullmix.test", DNS_MX, "0 ."},
	{"nullmix.test", DNS_MX, "10 real.nullmix.test"},
	{"real.nullmix.test", DNS_A, "192.0.2.11"},
	{"servfail.test", Z_RCODE, "2"},
	{"refused.test", Z_RCODE, "5"},
	{"alias.test", DNS_CNAME, "mx.test"},
	{"loop.test", DNS_CNAME, "loop2.test"},
	{"loop2.test", DNS_CNAME, "loop.test"},
	{"skip.test", DNS_MX, "10 gone.skip.test"},
	{"skip.test", DNS_MX, "20 ok.skip.test"},
	{"skip.test", DNS_MX, "30 ok.skip.test"},	/* duplicate: tried once */
	{"ok.skip.test", DNS_A, "192.0.2.20"},
	{"noaddr.test", DNS_MX, "10 gone.noaddr.test"},
	{"noaddr.test", DNS_MX, "20 gone2.noaddr.test"},
	{"empty.test", DNS_TXT, "v=spf1 -all"},
	{"ipmx.test", DNS_MX, "10 192.0.2.5"},
	{"hostcname.test", DNS_MX, "10 mail.hostcname.test"},
	{"mail.hostcname.test", DNS_CNAME, "real.hostcname.test"},
	{"real.hostcname.test", DNS_A, "192.0.2.40"},
	{"slow.test", Z_DROP, ""},
	{"slowhost.test", DNS_MX, "10 mx.slowhost.test"},
	{"mx.slowhost.test", Z_DROP, ""},
	{"late.test", Z_DELAY, "400"},
	{"late.test", DNS_A, "192.0.2.50"},
	{"relay.test", DNS_A, "192.0.2.60"},
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

/* A query's callback for the cases that only count calls. */
static void on_dns_count(void *ctx, uint64_t cookie, const struct dns_answer *a)
{
	(*(int *)ctx)++;
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

/* Freeing the resolver drops its queries and the routes waiting on them
 * (attached dns_jobs) without calling them back. */
static void test_free_outstanding(void **state)
{
	struct env e;
	env_init(&e, 3000);
	int q1 = 0, q2 = 0;
	struct route_res r1 = {0}, r2 = {0}, r3 = {0};
	dns_query(e.dns, "slow.test", DNS_A, on_dns_count, &q1, 0);
	dns_query(e.dns, "late.test", DNS_A, on_dns_count, &q2, 0);
	mta_route_mx(e.dns, "slowhost.test", 25, on_route, &r1, 0);
	mta_route_mx(e.dns, "[192.0.2.1]", 25, on_route, &r2, 0);
	mta_route_host(e.dns, "slow.test", 25, on_route, &r3, 0);
	run_for(&e, 100);	/* the MX of slowhost.test is in; its host is not */
	dns_free(e.dns);
	e.dns = NULL;
	run_for(&e, 600);
	assert_int_equal(q1 + q2 + r3.calls + r1.calls, 0);
	assert_int_equal(r2.calls, 1);	/* was already done before the free */
	env_fini(&e);
}

/* A callback may free the resolver, even with other queries outstanding. */
struct free_in_cb {
	struct dns **dns;
	int calls;
	bool done;
};

static void on_route_free(void *ctx, uint64_t cookie, const struct mta_route *r)
{
	struct free_in_cb *f = ctx;
	f->calls++;
	f->done = true;
	dns_free(*f->dns);
	*f->dns = NULL;
}

/* The same from a route callback, with a route and a query still waiting. */
static void test_route_free_in_callback(void **state)
{
	struct env e;
	env_init(&e, 3000);
	struct free_in_cb f = {&e.dns, 0, false};
	struct route_res other = {0};
	int q = 0;
	mta_route_mx(e.dns, "slowhost.test", 25, on_route, &other, 0);
	dns_query(e.dns, "slow.test", DNS_MX, on_dns_count, &q, 0);
	mta_route_mx(e.dns, "mx.test", 25, on_route_free, &f, 0);
	run_until(&e, &f.done, 5000);
	run_for(&e, 50);
	assert_int_equal(f.calls, 1);
	assert_int_equal(other.calls + q, 0);
	env_fini(&e);
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
		cmocka_unit_test(test_free_outstanding),
		cmocka_unit_test(test_route_free_in_callback),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_route_shuffle),
		cmocka_unit_test(test_route_family),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
