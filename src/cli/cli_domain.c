/*
 * cli_domain.c - `relevo domain`: onboarding a sending domain.
 *
 *   domain add DOMAIN            register it, generate an RSA-2048 and an Ed25519
 *                                DKIM key (each with its own selector), print the
 *                                records to publish
 *   domain records DOMAIN [--zone]   what to publish: DKIM, SPF, DMARC
 *   domain rotate DOMAIN         new keys under new selectors sign from now on; the
 *                                old ones stay published until retire-key
 *   domain retire-key DOMAIN SELECTOR
 *   domain check DOMAIN [--json] are the records published and right?
 *                                (cli_domain_check.c)
 *   domain list | del DOMAIN
 *
 * Private keys are PEM files in data_dir/keys/DOMAIN/SELECTOR.pem (directories
 * 0700, files 0600); the store keeps which keys exist and which sign. A running
 * daemon picks changes up by itself (its key cache is refreshed every minute).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/evp.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dkim/dkim.h"
#include "policy/policy.h"
#include "store/store.h"

#define DOMAIN_TTL 3600

static int domain_usage(void)
{
	fprintf(stderr, "usage: relevo domain add DOMAIN | records DOMAIN [--zone] | rotate DOMAIN |\n"
			"                     retire-key DOMAIN SELECTOR | list | del DOMAIN |\n"
			"                     check DOMAIN [--json]   [-c FILE]\n");
	return 2;
}

/* domain_selector - a fresh selector "PREFIX-YYYYMMDD[-N]" not used by keys. */
static void domain_selector(const char *prefix, const struct store_dkim_key *keys, size_t n,
			    char *out, size_t outsz)
{
	char day[16];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(day, sizeof day, "%Y%m%d", &tm);
	for (int k = 1;; k++) {
		if (k == 1)
			snprintf(out, outsz, "%s-%s", prefix, day);
		else
			snprintf(out, outsz, "%s-%s-%d", prefix, day, k);
		bool used = false;
		for (size_t i = 0; i < n; i++)
			used |= strcmp(keys[i].selector, out) == 0;
		if (!used)
			return;
	}
}

/* domain_new_key - generate, write and register one active key. */
static enum rc domain_new_key(struct store *st, const struct conf *c, const char *domain,
			      enum dkim_alg alg, const struct store_dkim_key *keys, size_t n)
{
	char sel[64], dir[4200], path[4400];
	domain_selector(alg == DKIM_ALG_RSA_SHA256 ? "rsa" : "ed", keys, n, sel, sizeof sel);
	snprintf(dir, sizeof dir, "%.4000s/keys/%s", c->data_dir, domain);
	if (file_mkdir_p(dir, 0700) != RC_OK) {
		fprintf(stderr, "relevo: cannot create %s: %s\n", dir, strerror(errno));
		return RC_IO;
	}
	snprintf(path, sizeof path, "%s/%s.pem", dir, sel);
	EVP_PKEY *pkey = NULL;
	char *txt = NULL;
	enum rc rc = dkim_key_generate(alg, &pkey);
	if (rc == RC_OK)
		rc = dkim_key_write(path, pkey);
	if (rc == RC_OK)
		rc = dkim_key_txt(pkey, &txt);
	if (rc == RC_OK) {
		struct store_dkim_key k = {
			.domain = (char *)domain,
			.selector = sel,
			.alg = (char *)dkim_alg_name(alg),
			.path = path,
			.public_txt = txt,
			.created = time_now_ms() / 1000,
			.active = true,
		};
		rc = store_dkim_key_add(st, &k);
	}
	if (rc != RC_OK)
		fprintf(stderr, "relevo: could not create the %s key %s: %s\n", dkim_alg_name(alg),
			sel, rc_name(rc));
	EVP_PKEY_free(pkey);
	free(txt);
	return rc;
}

/* domain_new_keys - one RSA and one Ed25519 key, both active. */
static enum rc domain_new_keys(struct store *st, const struct conf *c, const char *domain)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	enum rc rc = store_dkim_keys(st, domain, &keys, &n);
	if (rc == RC_OK)
		rc = domain_new_key(st, c, domain, DKIM_ALG_RSA_SHA256, keys, n);
	if (rc == RC_OK)
		rc = domain_new_key(st, c, domain, DKIM_ALG_ED25519_SHA256, keys, n);
	store_dkim_keys_free(keys, n);
	return rc;
}

/* domain_spf_value - the SPF record that authorises this relay. */
static char *domain_spf_value(const struct conf *c)
{
	if (c->spf_include)
		return xasprintf("v=spf1 include:%s ~all", c->spf_include);
	char v4[INET_ADDRSTRLEN] = "", v6[INET6_ADDRSTRLEN] = "";
	if (c->delivery.source_v4.sin_family == AF_INET)
		inet_ntop(AF_INET, &c->delivery.source_v4.sin_addr, v4, sizeof v4);
	if (c->delivery.source_v6.sin6_family == AF_INET6)
		inet_ntop(AF_INET6, &c->delivery.source_v6.sin6_addr, v6, sizeof v6);
	if (v4[0] || v6[0])
		return xasprintf("v=spf1%s%s%s%s ~all", v4[0] ? " ip4:" : "", v4, v6[0] ? " ip6:" : "",
				 v6);
	/* No sending address configured: the relay's own name stands for it. */
	return xasprintf("v=spf1 a:%s ~all", c->hostname);
}

static void domain_zone_line(const char *name, const char *txt)
{
	char *split = dkim_txt_split(txt);
	printf("%s. %d IN TXT %s\n", name, DOMAIN_TTL, split);
	free(split);
}

/* domain_records - print what to publish for domain (zone lines with --zone). */
static int domain_records(struct store *st, const struct conf *c, const char *domain, bool zone)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	if (store_domain_exists(st, domain) != RC_OK || store_dkim_keys(st, domain, &keys, &n) != RC_OK) {
		fprintf(stderr, "relevo: domain %s is not registered (relevo domain add %s)\n", domain,
			domain);
		return 1;
	}
	char *spf = domain_spf_value(c);
	char *dmarc = xasprintf("v=DMARC1; p=none; rua=mailto:dmarc-reports@%s; adkim=r; aspf=r",
				domain);
	char name[600];
	if (!zone)
		printf("Publish these DNS records for %s:\n\nDKIM (every key listed; relevo signs "
		       "with the active ones):\n", domain);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "%s._domainkey.%s", keys[i].selector, domain);
		if (zone) {
			domain_zone_line(name, keys[i].public_txt);
		} else {
			printf("  %s  TXT  \"%s\"\n    (%s, %s)\n", name, keys[i].public_txt,
			       keys[i].alg, keys[i].active ? "active: signs new mail"
							  : "retiring: keep published until retired");
		}
	}
	if (zone) {
		domain_zone_line(domain, spf);
		snprintf(name, sizeof name, "_dmarc.%s", domain);
		domain_zone_line(name, dmarc);
	} else {
		printf("\nSPF (if %s already has an SPF record, add the mechanism to it instead of "
		       "publishing a second one):\n  %s  TXT  \"%s\"\n", domain, domain, spf);
		printf("\nDMARC (a suggestion: start with p=none, read the reports, then move to "
		       "quarantine or reject):\n  _dmarc.%s  TXT  \"%s\"\n", domain, dmarc);
	}
	free(spf);
	free(dmarc);
	store_dkim_keys_free(keys, n);
	return 0;
}

static int domain_add(struct store *st, const struct conf *c, const char *domain)
{
	enum rc rc = store_domain_add(st, domain);
	if (rc == RC_EXISTS) {
		fprintf(stderr, "relevo: domain %s is already registered\n", domain);
		return 1;
	}
	if (rc != RC_OK || domain_new_keys(st, c, domain) != RC_OK) {
		fprintf(stderr, "relevo: could not add domain %s\n", domain);
		store_domain_del(st, domain);
		return 1;
	}
	printf("relevo: domain %s added with an RSA-2048 and an Ed25519 DKIM key\n\n", domain);
	return domain_records(st, c, domain, false);
}

static int domain_rotate(struct store *st, const struct conf *c, const char *domain)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	if (store_domain_exists(st, domain) != RC_OK || store_dkim_keys(st, domain, &keys, &n) != RC_OK) {
		fprintf(stderr, "relevo: domain %s is not registered\n", domain);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		if (keys[i].active)
			store_dkim_key_set_active(st, domain, keys[i].selector, false);
	store_dkim_keys_free(keys, n);
	if (domain_new_keys(st, c, domain) != RC_OK)
		return 1;
	printf("relevo: new keys for %s sign from now on; publish them, and retire the old "
	       "selectors (relevo domain retire-key) once mail signed with them has been "
	       "delivered\n\n", domain);
	return domain_records(st, c, domain, false);
}

static int domain_retire(struct store *st, const char *domain, const char *selector)
{
	struct store_dkim_key *keys = NULL, *k = NULL;
	size_t n = 0;
	int status = 1;
	store_dkim_keys(st, domain, &keys, &n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].selector, selector) == 0)
			k = &keys[i];
	if (k == NULL) {
		fprintf(stderr, "relevo: %s has no key %s\n", domain, selector);
	} else if (k->active) {
		fprintf(stderr, "relevo: %s still signs mail for %s; run relevo domain rotate %s "
				"first\n", selector, domain, domain);
	} else if (store_dkim_key_del(st, domain, selector) == RC_OK) {
		if (unlink(k->path) != 0 && errno != ENOENT)
			fprintf(stderr, "relevo: could not remove %s: %s\n", k->path, strerror(errno));
		printf("relevo: key %s of %s retired; remove its DNS record\n", selector, domain);
		status = 0;
	}
	store_dkim_keys_free(keys, n);
	return status;
}

static int domain_del(struct store *st, const char *domain)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	store_dkim_keys(st, domain, &keys, &n);
	if (store_domain_del(st, domain) != RC_OK) {
		fprintf(stderr, "relevo: domain %s is not registered\n", domain);
		store_dkim_keys_free(keys, n);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		unlink(keys[i].path);
	store_dkim_keys_free(keys, n);
	printf("relevo: domain %s deleted with its keys\n", domain);
	return 0;
}

struct domain_names {
	char **name;
	int64_t *created;
	size_t n;
};

static bool domain_list_one(void *arg, const char *name, int64_t created)
{
	struct domain_names *d = arg;
	d->name = xrealloc(d->name, (d->n + 1) * sizeof *d->name);
	d->created = xrealloc(d->created, (d->n + 1) * sizeof *d->created);
	d->name[d->n] = xstrdup(name);
	d->created[d->n++] = created;
	return true;
}

/* domain_list - one line per domain: name, created, its selectors (alg, state). */
static int domain_list(struct store *st)
{
	struct domain_names d = {0};
	if (store_domain_list(st, domain_list_one, &d) != RC_OK)
		return 1;
	for (size_t i = 0; i < d.n; i++) {
		char when[32];
		cli_time_utc(d.created[i], when, sizeof when);
		printf("%s\t%s\t", d.name[i], when);
		struct store_dkim_key *keys = NULL;
		size_t n = 0;
		store_dkim_keys(st, d.name[i], &keys, &n);
		for (size_t k = 0; k < n; k++)
			printf("%s%s(%s,%s)", k ? " " : "", keys[k].selector, keys[k].alg,
			       keys[k].active ? "active" : "retiring");
		printf("\n");
		store_dkim_keys_free(keys, n);
		free(d.name[i]);
	}
	if (d.n == 0)
		printf("no domains registered\n");
	free(d.name);
	free(d.created);
	return 0;
}

/* cli_domain - `relevo domain ...`. */
int cli_domain(int argc, char **argv, const char *conf_path)
{
	if (argc < 2)
		return domain_usage();
	const char *sub = argv[1];
	bool zone = argc == 4 && strcmp(argv[3], "--zone") == 0;
	bool json = argc == 4 && strcmp(argv[3], "--json") == 0;
	if (!((strcmp(sub, "list") == 0 && argc == 2) ||
	      (strcmp(sub, "retire-key") == 0 && argc == 4) ||
	      (strcmp(sub, "records") == 0 && (argc == 3 || zone)) ||
	      (strcmp(sub, "check") == 0 && (argc == 3 || json)) ||
	      ((strcmp(sub, "add") == 0 || strcmp(sub, "rotate") == 0 || strcmp(sub, "del") == 0) &&
	       argc == 3)))
		return domain_usage();
	char domain[256] = "";
	if (argc >= 3) {
		str_lcpy(domain, argv[2], sizeof domain);
		str_lower(domain);
		if (!policy_domain_valid(domain)) {
			fprintf(stderr, "relevo: '%s' is not a valid domain name\n", argv[2]);
			return 2;
		}
	}
	struct conf *c = cli_load_conf(conf_path);
	if (c == NULL)
		return 1;
	log_set_level(LOG_LV_WARN);
	struct store *st = cli_open_store(c);
	if (st == NULL) {
		conf_free(c);
		return 1;
	}
	int status;
	if (strcmp(sub, "add") == 0)
		status = domain_add(st, c, domain);
	else if (strcmp(sub, "records") == 0)
		status = domain_records(st, c, domain, zone);
	else if (strcmp(sub, "rotate") == 0)
		status = domain_rotate(st, c, domain);
	else if (strcmp(sub, "retire-key") == 0)
		status = domain_retire(st, domain, argv[3]);
	else if (strcmp(sub, "del") == 0)
		status = domain_del(st, domain);
	else if (strcmp(sub, "check") == 0)
		status = cli_domain_check(c, st, domain, json);
	else
		status = domain_list(st);
	store_close(st);
	conf_free(c);
	return status;
}
