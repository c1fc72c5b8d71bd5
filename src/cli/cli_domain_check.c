/*
 * cli_domain_check.c - `relevo domain check DOMAIN [--json]`: is everything a
 * receiver needs published, and right?
 *
 * Through the configured resolver (dns.resolver, else the system's), line by
 * line: every DKIM key of the domain (pending, active and retiring) is published
 * at SELECTOR._domainkey.DOMAIN and its p= matches ours (cli_dkim_probe.c's
 * verdict, the one `domain activate` and the daemon's watch use); SPF, evaluated for real
 * (RFC 7208, the same evaluator as `relevo spf eval`), passes for every address
 * the relay sends from (delivery.source_address, else the addresses of its
 * hostname); a DMARC record exists at _dmarc.DOMAIN, is well-formed, and aligns
 * with what relevo does (DKIM d= is the From: domain itself, so relaxed and
 * strict alignment both hold). Exit status 0 only when all of it is right.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dns/dns.h"
#include "mta/mta.h"
#include "policy/policy.h"
#include "store/store.h"

#define CHECK_MAX 32

struct check {
	const char *kind;		/* "dkim", "spf", "dmarc" */
	char subject[300];		/* selector, address, or record name */
	bool ok;
	char status[32];		/* ok, missing, mismatch, pass, fail, ... */
	char detail[600];
	const char *ours;		/* DKIM: our TXT value (borrowed) */
	struct sockaddr_storage addr;	/* SPF: the address checked */
};

struct checker {
	struct event_base *base;
	struct dns *dns;
	const struct conf *conf;
	char domain[256];
	struct check c[CHECK_MAX];
	size_t n;
	unsigned pending;
};

static void check_done(struct checker *k)
{
	if (--k->pending == 0)
		event_base_loopbreak(k->base);
}

static void on_dkim(void *ctx, uint64_t i, const struct dns_answer *a)
{
	struct checker *k = ctx;
	struct check *c = &k->c[i];
	enum cli_dkim_pub pub = cli_dkim_verdict(a, c->ours, c->detail, sizeof c->detail);
	c->ok = pub == CLI_DKIM_PUB_OK;
	str_lcpy(c->status, cli_dkim_pub_name(pub), sizeof c->status);
	check_done(k);
}

static void on_dmarc(void *ctx, uint64_t i, const struct dns_answer *a)
{
	struct checker *k = ctx;
	struct check *c = &k->c[i];
	size_t found = 0;
	const char *rec = NULL;
	for (size_t r = 0; a->status == DNS_OK && r < a->nrr; r++) {
		if (strncasecmp(a->rr[r].u.txt.data, "v=DMARC1", 8) == 0) {
			found++;
			rec = a->rr[r].u.txt.data;
		}
	}
	char pol[32] = "";
	if (a->status == DNS_TEMPFAIL || a->status == DNS_MALFORMED) {
		str_lcpy(c->status, "error", sizeof c->status);
		snprintf(c->detail, sizeof c->detail, "DNS lookup failed (%s)",
			 dns_status_name(a->status));
	} else if (found == 0) {
		char name[sizeof c->subject];
		str_lcpy(name, c->subject, sizeof name);
		str_lcpy(c->status, "missing", sizeof c->status);
		snprintf(c->detail, sizeof c->detail, "no v=DMARC1 record at %s", name);
	} else if (found > 1) {
		str_lcpy(c->status, "invalid", sizeof c->status);
		snprintf(c->detail, sizeof c->detail, "%zu DMARC records (RFC 7489 6.6.3: none applies)",
			 found);
	} else if (!cli_tag_value(rec, "p", pol, sizeof pol) ||
		   (strcmp(pol, "none") != 0 && strcmp(pol, "quarantine") != 0 &&
		    strcmp(pol, "reject") != 0)) {
		str_lcpy(c->status, "invalid", sizeof c->status);
		snprintf(c->detail, sizeof c->detail, "p= is missing or not none/quarantine/reject");
	} else {
		c->ok = true;
		str_lcpy(c->status, "ok", sizeof c->status);
		snprintf(c->detail, sizeof c->detail,
			 "policy p=%s; aligned: relevo signs with d=%s (DKIM alignment holds in "
			 "relaxed and strict mode)", pol, k->domain);
	}
	check_done(k);
}

static void on_spf(void *ctx, uint64_t i, const struct dns_spf_outcome *o)
{
	struct checker *k = ctx;
	struct check *c = &k->c[i];
	c->ok = o->result == DNS_SPF_PASS;
	str_lcpy(c->status, dns_spf_result_name(o->result), sizeof c->status);
	snprintf(c->detail, sizeof c->detail, "%.330s%s%.250s", o->explanation,
		 o->mechanism[0] ? "; matched " : "", o->mechanism);
	check_done(k);
}

static struct check *check_new(struct checker *k, const char *kind)
{
	if (k->n >= CHECK_MAX)
		return NULL;
	struct check *c = &k->c[k->n++];
	c->kind = kind;
	str_lcpy(c->status, "error", sizeof c->status);
	return c;
}

/* checker_spf_one - evaluate SPF for one sending address. */
static void checker_spf_one(struct checker *k, const struct sockaddr *sa)
{
	struct check *c = check_new(k, "spf");
	if (c == NULL)
		return;
	char ip[INET6_ADDRSTRLEN];
	memcpy(&c->addr, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						     : sizeof(struct sockaddr_in6));
	inet_ntop(sa->sa_family,
		  sa->sa_family == AF_INET ? (void *)&((struct sockaddr_in *)&c->addr)->sin_addr
					   : (void *)&((struct sockaddr_in6 *)&c->addr)->sin6_addr,
		  ip, sizeof ip);
	str_lcpy(c->subject, ip, sizeof c->subject);
	char sender[300];
	snprintf(sender, sizeof sender, "postmaster@%s", k->domain);
	k->pending++;
	dns_spf_check(k->dns, (struct sockaddr *)&c->addr, sender, k->conf->hostname,
		      k->conf->hostname, on_spf, k, (uint64_t)(c - k->c));
}

/* on_host - the relay hostname's addresses, when no source_address is set. */
static void on_host(void *ctx, uint64_t unused, const struct mta_route *r)
{
	struct checker *k = ctx;
	for (size_t h = 0; r->rc == RC_OK && h < r->nhosts; h++)
		for (size_t a = 0; a < r->host[h].naddr; a++)
			checker_spf_one(k, (const struct sockaddr *)&r->host[h].addr[a]);
	if (r->rc != RC_OK || r->nhosts == 0) {
		struct check *c = check_new(k, "spf");
		if (c) {
			str_lcpy(c->subject, k->conf->hostname, sizeof c->subject);
			snprintf(c->detail, sizeof c->detail,
				 "the relay's sending addresses are unknown: set "
				 "delivery.source_address, or give %s an address record",
				 k->conf->hostname);
		}
	}
	check_done(k);
}

static void checker_start(struct checker *k, const struct store_dkim_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct check *c = check_new(k, "dkim");
		if (c == NULL)
			break;
		snprintf(c->subject, sizeof c->subject, "%s._domainkey.%s", keys[i].selector,
			 k->domain);
		c->ours = keys[i].public_txt;
		k->pending++;
		dns_query(k->dns, c->subject, DNS_TXT, on_dkim, k, (uint64_t)(c - k->c));
	}
	struct check *d = check_new(k, "dmarc");
	snprintf(d->subject, sizeof d->subject, "_dmarc.%s", k->domain);
	k->pending++;
	dns_query(k->dns, d->subject, DNS_TXT, on_dmarc, k, (uint64_t)(d - k->c));
	socklen_t len;
	const struct sockaddr *v4 = conf_source_address(k->conf, AF_INET, &len);
	const struct sockaddr *v6 = conf_source_address(k->conf, AF_INET6, &len);
	if (v4)
		checker_spf_one(k, v4);
	if (v6)
		checker_spf_one(k, v6);
	if (!v4 && !v6) {
		k->pending++;
		mta_route_host(k->dns, k->conf->hostname, 25, on_host, k, 0);
	}
}

static void checker_print(const struct checker *k, bool json)
{
	bool all = true;
	for (size_t i = 0; i < k->n; i++)
		all &= k->c[i].ok;
	if (!json) {
		for (size_t i = 0; i < k->n; i++)
			printf("%-5s %-9s %s: %s\n", k->c[i].kind, k->c[i].status, k->c[i].subject,
			       k->c[i].detail);
		printf("%s: %s\n", k->domain, all ? "all records are right" : "some records need work");
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < k->n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b, s:s}", "check",
						     k->c[i].kind, "subject", k->c[i].subject,
						     "status", k->c[i].status, "ok", k->c[i].ok,
						     "detail", k->c[i].detail));
	json_t *root = json_pack("{s:s, s:b, s:o}", "domain", k->domain, "ok", all, "checks", arr);
	char *s = json_dumps(root, JSON_INDENT(2));
	printf("%s\n", s);
	free(s);
	json_decref(root);
}

/* cli_domain_check - `relevo domain check DOMAIN [--json]`. */
int cli_domain_check(const struct conf *c, struct store *st, const char *domain, bool json)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	if (store_domain_exists(st, domain) != RC_OK || store_dkim_keys(st, domain, &keys, &n) != RC_OK) {
		fprintf(stderr, "relevo: domain %s is not registered (relevo domain add %s)\n", domain,
			domain);
		return 1;
	}
	core_threads_init();
	struct checker *k = xcalloc(1, sizeof *k);
	k->conf = c;
	str_lcpy(k->domain, domain, sizeof k->domain);
	k->base = event_base_new();
	int status = 1;
	if (dns_new(k->base, c->dns.resolver, c->dns.timeout * 1000, &k->dns) == RC_OK) {
		k->pending = 1; /* held until everything is started */
		checker_start(k, keys, n);
		if (--k->pending > 0)
			event_base_loop(k->base, EVLOOP_NO_EXIT_ON_EMPTY);
		checker_print(k, json);
		status = 0;
		for (size_t i = 0; i < k->n; i++)
			if (!k->c[i].ok)
				status = 1;
		dns_free(k->dns);
	} else {
		fprintf(stderr, "relevo: cannot set up the resolver\n");
	}
	event_base_free(k->base);
	free(k);
	store_dkim_keys_free(keys, n);
	return status;
}
