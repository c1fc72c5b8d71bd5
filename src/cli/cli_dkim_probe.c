/*
 * cli_dkim_probe.c - is a DKIM key published? The one DNS check behind `domain
 * check` (every key), `domain activate` without --force (one pending key) and
 * the daemon's watch over pending keys (cli_dkim_watch.c).
 *
 * A key is published when a TXT record at SELECTOR._domainkey.DOMAIN, looked up
 * through the configured resolver (dns.resolver, else the system's), carries
 * our key's p= (whitespace ignored). Lookups use dns/ on a private event
 * base, so a probe blocks only its caller: the CLI, or the watch's own thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dns/dns.h"
#include "store/store.h"

static const char *const pub_names[] = {"ok", "missing", "mismatch", "error"};
_Static_assert(ARRAY_LEN(pub_names) == CLI_DKIM_PUB__COUNT, "pub_names");

/* cli_dkim_pub_name - "ok", "missing", "mismatch", "error". */
const char *cli_dkim_pub_name(enum cli_dkim_pub p)
{
	return (unsigned)p < CLI_DKIM_PUB__COUNT ? pub_names[p] : "?";
}

/* cli_tag_value - the value of tag t ("p") in a DKIM/DMARC tag list, whitespace removed. */
bool cli_tag_value(const char *rec, const char *t, char *out, size_t outsz)
{
	size_t tl = strlen(t);
	for (const char *p = rec; p && *p;) {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			size_t nl = (size_t)(eq - p);
			while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
				nl--;
			if (nl == tl && strncasecmp(p, t, tl) == 0) {
				size_t o = 0;
				for (const char *v = eq + 1; v < p + len && o + 1 < outsz; v++)
					if (*v != ' ' && *v != '\t')
						out[o++] = *v;
				out[o] = '\0';
				return true;
			}
		}
		p = semi ? semi + 1 : NULL;
	}
	return false;
}

/* cli_dkim_verdict - what answer a (to SELECTOR._domainkey.DOMAIN TXT) says of
 * the key whose TXT value is ours; detail explains it. */
enum cli_dkim_pub cli_dkim_verdict(const struct dns_answer *a, const char *ours, char *detail,
                                   size_t detailsz)
{
	char want[4200], p[4200];
	if (a->status == DNS_NXDOMAIN || a->status == DNS_NODATA) {
		snprintf(detail, detailsz, "no TXT record at %s", a->qname);
		return CLI_DKIM_PUB_MISSING;
	}
	if (a->status != DNS_OK) {
		snprintf(detail, detailsz, "DNS lookup failed (%s)",
		         dns_status_name(a->status));
		return CLI_DKIM_PUB_ERROR;
	}
	if (!cli_tag_value(ours, "p", want, sizeof want))
		want[0] = '\0';
	for (size_t r = 0; r < a->nrr; r++)
		if (cli_tag_value(a->rr[r].u.txt.data, "p", p, sizeof p) && want[0] &&
		    strcmp(p, want) == 0) {
			snprintf(detail, detailsz, "published and matches");
			return CLI_DKIM_PUB_OK;
		}
	snprintf(detail, detailsz, "a record is published but its p= is not this key");
	return CLI_DKIM_PUB_MISMATCH;
}

struct probe {
	struct event_base *base;
	const struct store_dkim_key *keys;
	struct cli_dkim_probe_result *out;
	size_t pending;
};

static void probe_on_txt(void *ctx, uint64_t i, const struct dns_answer *a)
{
	struct probe *p = ctx;
	p->out[i].pub =
	    cli_dkim_verdict(a, p->keys[i].public_txt, p->out[i].detail, sizeof p->out[i].detail);
	if (--p->pending == 0)
		event_base_loopbreak(p->base);
}

/* cli_dkim_probe - look up each of keys[0..n) in DNS and judge it into out[i];
 * blocks until every answer (or dns.timeout) is in. RC_IO if no resolver. */
enum rc cli_dkim_probe(const struct conf *c, const struct store_dkim_key *keys, size_t n,
                       struct cli_dkim_probe_result *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (struct cli_dkim_probe_result){.pub = CLI_DKIM_PUB_ERROR};
	if (n == 0)
		return RC_OK;
	struct probe p = {.base = event_base_new(), .keys = keys, .out = out, .pending = n};
	struct dns *dns = NULL;
	if (p.base == NULL ||
	    dns_new(p.base, c->dns.resolver, c->dns.timeout * 1000, &dns) != RC_OK) {
		if (p.base)
			event_base_free(p.base);
		return RC_IO;
	}
	for (size_t i = 0; i < n; i++) {
		char name[600];
		snprintf(name, sizeof name, "%s._domainkey.%s", keys[i].selector, keys[i].domain);
		dns_query(dns, name, DNS_TXT, probe_on_txt, &p, (uint64_t)i);
	}
	if (p.pending > 0)
		event_base_loop(p.base, EVLOOP_NO_EXIT_ON_EMPTY);
	dns_free(dns);
	event_base_free(p.base);
	return RC_OK;
}
