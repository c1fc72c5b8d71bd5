/*
 * cli_spf.c - `relevo spf eval IP SENDER [HELO] [-c FILE]`: evaluate SPF
 * (RFC 7208 check_host()) for a client address and a MAIL FROM, the way the
 * relay would: through dns/ with the configuration's dns.resolver and
 * dns.timeout, with its hostname as %{r}.
 *
 * SENDER is the MAIL FROM address ("" or "<>" is the null sender, then
 * postmaster@HELO; angle brackets are dropped). HELO defaults to SENDER's
 * domain.
 *
 * Output, on stdout: the result ("pass", "fail", "softfail", "neutral",
 * "none", "permerror", "temperror") alone on the first line, then
 * "explanation: ...", "mechanism: ..." (when one decided) and
 * "dns_lookups=N void_lookups=M". The outcome's texts carry no control
 * characters (dns_spf_check replaces them).
 *
 * Exit status: 0 whenever the evaluation completed, whatever its result (the
 * result is the output: scripts read the first line); 1 when the
 * configuration does not load or the resolver cannot be set up; 2 on a usage
 * error (wrong arguments, IP not an IPv4 or IPv6 address).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dns/dns.h"

struct spf_wait {
	bool done;
	struct dns_spf_outcome o;
};

static int spf_usage(void)
{
	fprintf(stderr, "usage: relevo spf eval IP SENDER [HELO] [-c FILE]\n");
	return 2;
}

static void spf_on_done(void *ctx, uint64_t cookie, const struct dns_spf_outcome *o)
{
	struct spf_wait *w = ctx;
	w->o = *o;
	w->done = true;
}

/* IP text into a sockaddr; false if it is neither IPv4 nor IPv6. */
static bool spf_parse_ip(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* SENDER without its angle brackets, on the heap. */
static char *spf_sender(const char *s)
{
	size_t n = strlen(s);
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
		return xstrndup(s + 1, n - 2);
	return xstrdup(s);
}

/* Run the event loop until the evaluation is done; false if it stalls. */
static bool spf_wait_done(struct event_base *base, const struct spf_wait *w)
{
	while (!w->done)
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			return false;	/* no event left: cannot happen, but never spin */
	return true;
}

static void spf_print(const struct dns_spf_outcome *o)
{
	printf("%s\n", dns_spf_result_name(o->result));
	printf("explanation: %s\n", o->explanation);
	if (o->mechanism[0] != '\0')
		printf("mechanism: %s\n", o->mechanism);
	printf("dns_lookups=%u void_lookups=%u\n", o->dns_lookups, o->void_lookups);
}

/* Evaluate with the resolver the configuration describes. */
static int spf_eval(const struct conf *c, const struct sockaddr *ip, const char *sender,
		    const char *helo)
{
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	if (base == NULL || dns_new(base, c->dns.resolver, c->dns.timeout * 1000, &d) != RC_OK) {
		fprintf(stderr, "relevo: spf: cannot set up the DNS resolver%s%s\n",
			c->dns.resolver ? " " : "", c->dns.resolver ? c->dns.resolver : "");
		if (base)
			event_base_free(base);
		return 1;
	}
	struct spf_wait w = {0};
	dns_spf_check(d, ip, sender, helo, c->hostname, spf_on_done, &w, 0);
	bool ok = spf_wait_done(base, &w);
	dns_free(d);
	event_base_free(base);
	if (!ok) {
		fprintf(stderr, "relevo: spf: the evaluation stalled\n");
		return 1;
	}
	spf_print(&w.o);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* cli_spf - `relevo spf eval IP SENDER [HELO]`: print the SPF outcome. */
int cli_spf(int argc, char **argv, const char *conf_path)
{
	struct sockaddr_storage ss;
	if (argc < 4 || argc > 5 || strcmp(argv[1], "eval") != 0)
		return spf_usage();
	if (!spf_parse_ip(argv[2], &ss)) {
		fprintf(stderr, "relevo: spf: '%s' is not an IP address\n", argv[2]);
		return spf_usage();
	}
	char *sender = spf_sender(argv[3]);
	const char *at = strrchr(sender, '@');
	const char *helo = argc == 5 ? argv[4] : at ? at + 1 : sender;
	struct conf *c = cli_load_conf(conf_path);
	int rc = 1;
	if (c != NULL) {
		rc = spf_eval(c, (struct sockaddr *)&ss, sender, helo);
		conf_free(c);
	}
	free(sender);
	return rc;
}
