/*
 * cli_domain.c - `relevo domain`: onboarding a sending domain and rotating its
 * DKIM keys in the safe order.
 *
 *   domain add DOMAIN            register it, generate an RSA-2048 and an Ed25519
 *                                DKIM key (each with its own selector, both
 *                                active), print the records to publish
 *   domain records DOMAIN [--zone]   what to publish: every key (pending, active,
 *                                retiring), SPF, DMARC
 *   domain rotate DOMAIN         a new pair, pending: published, never signing
 *                                until it is activated
 *   domain activate DOMAIN SELECTOR [--force]
 *                                make a pending key active now: without --force
 *                                only if DNS shows it (the running daemon does
 *                                the same by itself every
 *                                dkim.pending_check_interval); the active key of
 *                                its algorithm becomes retiring
 *   domain retire-key DOMAIN SELECTOR
 *                                delete a retiring key, dkim.retire_after after it
 *                                stopped signing (a pending key at once)
 *   domain check DOMAIN [--json] are the records published and right?
 *                                (cli_domain_check.c)
 *   domain list | del DOMAIN [--force]
 *
 * Private keys are PEM files in data_dir/keys/DOMAIN/SELECTOR.pem (directories
 * 0700, files 0600, owned by run_as: cli_load_conf became that user); the store
 * keeps which keys exist and their states. After a change the running daemon is
 * told over its control socket ("dkim changed") to reload the keys at once;
 * when it cannot be told, its key cache picks the change up within a minute.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

static void domain_usage_to(FILE *out)
{
	fprintf(out, "usage: relevo domain add DOMAIN [-c FILE]\n"
		     "       relevo domain records DOMAIN [--zone]\n"
		     "       relevo domain rotate DOMAIN\n"
		     "       relevo domain activate DOMAIN SELECTOR [--force]\n"
		     "       relevo domain retire-key DOMAIN SELECTOR\n"
		     "       relevo domain check DOMAIN [--json]\n"
		     "       relevo domain list\n"
		     "       relevo domain del DOMAIN [--force]\n");
}

static int domain_usage(void)
{
	domain_usage_to(stderr);
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

/* domain_new_key - generate, write and register one key in state. */
static enum rc domain_new_key(struct store *st, const struct conf *c, const char *domain,
			      enum dkim_alg alg, const struct store_dkim_key *keys, size_t n,
			      enum store_dkim_state state)
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
			.state = state,
		};
		rc = store_dkim_key_add(st, &k);
	}
	if (rc != RC_OK)
		fprintf(stderr, "relevo: could not create the %s key %s: %s%s%s\n",
			dkim_alg_name(alg), sel, rc_name(rc), rc == RC_IO ? ": " : "",
			rc == RC_IO ? strerror(errno) : "");
	EVP_PKEY_free(pkey);
	free(txt);
	return rc;
}

/* domain_new_keys - one RSA and one Ed25519 key, both in state. */
static enum rc domain_new_keys(struct store *st, const struct conf *c, const char *domain,
			       enum store_dkim_state state)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	enum rc rc = store_dkim_keys(st, domain, &keys, &n);
	if (rc == RC_OK)
		rc = domain_new_key(st, c, domain, DKIM_ALG_RSA_SHA256, keys, n, state);
	if (rc == RC_OK)
		rc = domain_new_key(st, c, domain, DKIM_ALG_ED25519_SHA256, keys, n, state);
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

static const char *domain_state_text(enum store_dkim_state s)
{
	switch (s) {
	case STORE_DKIM_PENDING:
		return "pending: publish it; it signs once relevo sees it in DNS";
	case STORE_DKIM_ACTIVE:
		return "active: signs new mail";
	default:
		return "retiring: keep published until retired";
	}
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
		       "with the active ones only):\n", domain);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "%s._domainkey.%s", keys[i].selector, domain);
		if (zone) {
			domain_zone_line(name, keys[i].public_txt);
		} else {
			printf("  %s  TXT  \"%s\"\n    (%s, %s)\n", name, keys[i].public_txt,
			       keys[i].alg, domain_state_text(keys[i].state));
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

/* domain_tell_daemon - a running daemon reloads its keys now (quietly, best effort:
 * if it cannot be told, its cache reloads within a minute). */
static void domain_tell_daemon(const struct conf *c)
{
	(void)cli_ctl_tell(c, "dkim changed");
}

/* cli_domain_register - register domain with two active keys, print the records. */
int cli_domain_register(struct store *st, const struct conf *c, const char *domain)
{
	enum rc rc = store_domain_add(st, domain);
	if (rc == RC_EXISTS) {
		fprintf(stderr, "relevo: domain %s is already registered\n", domain);
		return 1;
	}
	if (rc != RC_OK || domain_new_keys(st, c, domain, STORE_DKIM_ACTIVE) != RC_OK) {
		fprintf(stderr, "relevo: could not add domain %s\n", domain);
		store_domain_del(st, domain);
		return 1;
	}
	domain_tell_daemon(c);
	printf("relevo: domain %s added with an RSA-2048 and an Ed25519 DKIM key\n\n", domain);
	return domain_records(st, c, domain, false);
}

/* domain_keys - domain's keys, or 1 after saying it is not registered. */
static int domain_keys(struct store *st, const char *domain, struct store_dkim_key **keys,
		       size_t *n)
{
	*keys = NULL;
	*n = 0;
	if (store_domain_exists(st, domain) != RC_OK || store_dkim_keys(st, domain, keys, n) != RC_OK) {
		fprintf(stderr, "relevo: domain %s is not registered (relevo domain add %s)\n", domain,
			domain);
		return 1;
	}
	return 0;
}

static int domain_rotate(struct store *st, const struct conf *c, const char *domain)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	if (domain_keys(st, domain, &keys, &n) != 0)
		return 1;
	int pending = 0;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].state != STORE_DKIM_PENDING)
			continue;
		if (pending++ == 0)
			fprintf(stderr, "relevo: %s already has pending keys:", domain);
		fprintf(stderr, " %s", keys[i].selector);
	}
	store_dkim_keys_free(keys, n);
	if (pending > 0) {
		fprintf(stderr, "\n  publish them and activate them (relevo domain activate %s "
				"SELECTOR), or remove them (relevo domain retire-key %s SELECTOR), "
				"before rotating again\n", domain, domain);
		return 1;
	}
	if (domain_new_keys(st, c, domain, STORE_DKIM_PENDING) != RC_OK)
		return 1;
	domain_tell_daemon(c);
	printf("relevo: new keys for %s are pending: nothing is signed with them yet.\n"
	       "Publish them (below). The running daemon activates each one once it sees it in "
	       "DNS (it looks every %u s, dkim.pending_check_interval), or run\n"
	       "  relevo domain activate %s SELECTOR\n"
	       "The keys they replace then stop signing, stay published, and can be retired "
	       "%u s later (dkim.retire_after).\n\n",
	       domain, c->dkim.pending_check_interval, domain, c->dkim.retire_after);
	return domain_records(st, c, domain, false);
}

/* domain_find - keys[i] with selector, or NULL after saying there is none. */
static struct store_dkim_key *domain_find(struct store_dkim_key *keys, size_t n,
					  const char *domain, const char *selector)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].selector, selector) == 0)
			return &keys[i];
	fprintf(stderr, "relevo: %s has no key %s (relevo domain list)\n", domain, selector);
	return NULL;
}

/* domain_published - does DNS show k? 0, or 1 after saying what it shows. */
static int domain_published(const struct conf *c, const struct store_dkim_key *k)
{
	struct cli_dkim_probe_result res;
	core_threads_init();
	if (cli_dkim_probe(c, k, 1, &res) != RC_OK) {
		fprintf(stderr, "relevo: cannot set up the resolver\n");
		return 1;
	}
	if (res.pub == CLI_DKIM_PUB_OK)
		return 0;
	fprintf(stderr, "relevo: %s._domainkey.%s is not published yet: %s (%s).\n"
			"  Publish it (relevo domain records %s) and try again, or use --force to "
			"activate it without looking.\n",
		k->selector, k->domain, cli_dkim_pub_name(res.pub), res.detail, k->domain);
	return 1;
}

/* domain_activate - a pending key signs from now on; the one it replaces retires. */
static int domain_activate(struct store *st, const struct conf *c, const char *domain,
			   const char *selector, bool force)
{
	struct store_dkim_key *keys = NULL, *k;
	size_t n = 0;
	int status = 1;
	if (domain_keys(st, domain, &keys, &n) != 0)
		return 1;
	if ((k = domain_find(keys, n, domain, selector)) == NULL)
		goto out;
	if (k->state != STORE_DKIM_PENDING) {
		fprintf(stderr, "relevo: %s of %s is %s, not pending: only a key made by relevo "
				"domain rotate can be activated\n", selector, domain,
			store_dkim_state_name(k->state));
		status = k->state == STORE_DKIM_ACTIVE ? 0 : 1;
		goto out;
	}
	if (!force && domain_published(c, k) != 0)
		goto out;
	int64_t now = time_now_ms() / 1000;
	enum rc rc = store_dkim_key_activate(st, domain, selector, now);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: could not activate %s of %s: %s\n", selector, domain,
			rc == RC_NOTFOUND ? "it is no longer pending" : rc_name(rc));
		goto out;
	}
	domain_tell_daemon(c);
	char when[32];
	cli_time_utc(now + c->dkim.retire_after, when, sizeof when);
	printf("relevo: %s of %s is active: it signs new mail from now on\n", selector, domain);
	for (size_t i = 0; i < n; i++)
		if (keys[i].state == STORE_DKIM_ACTIVE && strcmp(keys[i].alg, k->alg) == 0)
			printf("relevo: %s is retiring: keep it published; relevo domain retire-key "
			       "%s %s removes it from %s on (dkim.retire_after)\n",
			       keys[i].selector, domain, keys[i].selector, when);
	status = 0;
out:
	store_dkim_keys_free(keys, n);
	return status;
}

/* domain_retire_check - may k be deleted now? 0, or 1 after saying why not. */
static int domain_retire_check(const struct conf *c, const struct store_dkim_key *k)
{
	if (k->state == STORE_DKIM_ACTIVE) {
		fprintf(stderr, "relevo: %s still signs mail for %s; run relevo domain rotate %s and "
				"activate the new key first\n", k->selector, k->domain, k->domain);
		return 1;
	}
	int64_t due = k->state_since + (int64_t)c->dkim.retire_after;
	if (k->state == STORE_DKIM_RETIRING && time_now_ms() / 1000 < due) {
		char since[32], when[32];
		cli_time_utc(k->state_since, since, sizeof since);
		cli_time_utc(due, when, sizeof when);
		fprintf(stderr, "relevo: %s of %s stopped signing at %s; mail signed with it may "
				"still be verified: it can be retired from %s on "
				"(dkim.retire_after %u s)\n", k->selector, k->domain, since, when,
			c->dkim.retire_after);
		return 1;
	}
	return 0;
}

/* domain_retire - delete a retiring key (after retire_after) or a pending one. */
static int domain_retire(struct store *st, const struct conf *c, const char *domain,
			 const char *selector)
{
	struct store_dkim_key *keys = NULL, *k;
	size_t n = 0;
	int status = 1;
	if (domain_keys(st, domain, &keys, &n) != 0)
		return 1;
	if ((k = domain_find(keys, n, domain, selector)) == NULL || domain_retire_check(c, k) != 0)
		goto out;
	bool was_pending = k->state == STORE_DKIM_PENDING;
	if (store_dkim_key_del(st, domain, selector) != RC_OK) {
		fprintf(stderr, "relevo: could not retire %s of %s\n", selector, domain);
		goto out;
	}
	if (unlink(k->path) != 0 && errno != ENOENT)
		fprintf(stderr, "relevo: could not remove %s: %s\n", k->path, strerror(errno));
	domain_tell_daemon(c);
	printf("relevo: key %s of %s %s; remove its DNS record\n", selector, domain,
	       was_pending ? "removed (it never signed)" : "retired");
	status = 0;
out:
	store_dkim_keys_free(keys, n);
	return status;
}

struct domain_users {
	char list[1024];
	size_t n;
};

static bool domain_user_one(void *arg, const char *user)
{
	struct domain_users *u = arg;
	size_t len = strlen(u->list);
	if (len + strlen(user) + 8 < sizeof u->list)
		snprintf(u->list + len, sizeof u->list - len, "%s%s", u->n ? ", " : "", user);
	else if (len + 5 < sizeof u->list && !strstr(u->list, "..."))
		str_lcpy(u->list + len, ", ...", sizeof u->list - len);
	u->n++;
	return true;
}

/* domain_rmdir - remove data_dir/keys/DOMAIN: its files, then itself. */
static void domain_rmdir(const struct conf *c, const char *domain)
{
	char dir[4200];
	snprintf(dir, sizeof dir, "%.4000s/keys/%s", c->data_dir, domain);
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno != ENOENT)
			fprintf(stderr, "relevo: cannot open %s: %s\n", dir, strerror(errno));
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) != 0)
			fprintf(stderr, "relevo: could not remove %s/%s: %s\n", dir, de->d_name,
				strerror(errno));
	}
	closedir(d);
	if (rmdir(dir) != 0)
		fprintf(stderr, "relevo: could not remove %s: %s\n", dir, strerror(errno));
}

/* domain_del - forget domain, its keys and their directory; not while accounts
 * send as it, unless force. */
static int domain_del(struct store *st, const struct conf *c, const char *domain, bool force)
{
	struct domain_users u = {0};
	if (store_domain_users(st, domain, domain_user_one, &u) != RC_OK) {
		fprintf(stderr, "relevo: cannot read the accounts of %s\n", domain);
		return 1;
	}
	if (u.n > 0 && !force) {
		fprintf(stderr, "relevo: %s is used by %zu account%s: %s\n  their mail from %s "
				"would fail; remove the domain from them (relevo user del), or use "
				"--force\n", domain, u.n, u.n == 1 ? "" : "s", u.list, domain);
		return 1;
	}
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
	domain_rmdir(c, domain);
	domain_tell_daemon(c);
	printf("relevo: domain %s deleted with its keys%s\n", domain,
	       u.n ? " (its accounts can no longer send as it)" : "");
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
			       store_dkim_state_name(keys[k].state));
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

/* Parsed arguments: the subcommand, up to two operands, the flags. */
struct domain_args {
	const char *sub;
	const char *arg[2];
	int narg;
	bool zone, json, force;
};

/* domain_parse - 0, or 2 after a usage message. Which flags and how many
 * operands each subcommand takes is checked here, in one table. */
static int domain_parse(int argc, char **argv, struct domain_args *a)
{
	static const struct {
		const char *sub;
		int nargs;
		const char *flag;	/* the one flag it accepts, or "" */
	} subs[] = {
	    {"add", 1, ""},	    {"records", 1, "--zone"}, {"rotate", 1, ""},
	    {"activate", 2, "--force"}, {"retire-key", 2, ""},    {"check", 1, "--json"},
	    {"list", 0, ""},	    {"del", 1, "--force"},
	};
	a->sub = argv[1];
	size_t i = 0;
	while (i < ARRAY_LEN(subs) && strcmp(subs[i].sub, a->sub) != 0)
		i++;
	if (i == ARRAY_LEN(subs)) {
		fprintf(stderr, "relevo: domain: unknown subcommand '%s'\n", a->sub);
		return domain_usage();
	}
	for (int k = 2; k < argc; k++) {
		const char *v = argv[k];
		if (v[0] == '-' && strcmp(subs[i].flag, v) == 0) {
			a->zone |= strcmp(v, "--zone") == 0;
			a->json |= strcmp(v, "--json") == 0;
			a->force |= strcmp(v, "--force") == 0;
		} else if (v[0] == '-' || a->narg >= 2) {
			fprintf(stderr, "relevo: domain %s: unexpected '%s'\n", a->sub, v);
			return domain_usage();
		} else {
			a->arg[a->narg++] = v;
		}
	}
	if (a->narg != subs[i].nargs) {
		fprintf(stderr, "relevo: domain %s takes %d argument%s\n", a->sub, subs[i].nargs,
			subs[i].nargs == 1 ? "" : "s");
		return domain_usage();
	}
	return 0;
}

static int domain_run(struct store *st, const struct conf *c, const struct domain_args *a,
		      const char *domain)
{
	const char *sub = a->sub;
	if (strcmp(sub, "add") == 0)
		return cli_domain_register(st, c, domain);
	if (strcmp(sub, "records") == 0)
		return domain_records(st, c, domain, a->zone);
	if (strcmp(sub, "rotate") == 0)
		return domain_rotate(st, c, domain);
	if (strcmp(sub, "activate") == 0)
		return domain_activate(st, c, domain, a->arg[1], a->force);
	if (strcmp(sub, "retire-key") == 0)
		return domain_retire(st, c, domain, a->arg[1]);
	if (strcmp(sub, "del") == 0)
		return domain_del(st, c, domain, a->force);
	if (strcmp(sub, "check") == 0)
		return cli_domain_check(c, st, domain, a->json);
	return domain_list(st);
}

/* cli_domain - `relevo domain ...`. */
int cli_domain(int argc, char **argv, const char *conf_path)
{
	if (argc < 2)
		return domain_usage();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		domain_usage_to(stdout);
		return 0;
	}
	struct domain_args a = {0};
	if (domain_parse(argc, argv, &a) != 0)
		return 2;
	char domain[256] = "";
	if (a.narg >= 1) {
		str_lcpy(domain, a.arg[0], sizeof domain);
		str_lower(domain);
		if (!policy_domain_valid(domain)) {
			fprintf(stderr, "relevo: '%s' is not a valid domain name\n", a.arg[0]);
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
	int status = domain_run(st, c, &a, domain);
	store_close(st);
	conf_free(c);
	return status;
}
