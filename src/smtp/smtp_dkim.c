/*
 * smtp_dkim.c - DKIM signing at submission: every message from a registered
 * domain leaves with an rsa-sha256 and an ed25519-sha256 signature made over the
 * exact bytes that are queued (and later sent unchanged).
 *
 * Keys come from the store (which keys are active) and data_dir/keys/ (the PEM
 * files), through a small cache shared by the workers: an entry is reloaded when
 * it is older than SMTP_DKIM_TTL_MS, so `relevo domain add/rotate` reach a
 * running daemon within a minute. The reload happens on the worker that needs it
 * (a SQLite read and a PEM parse: rare, milliseconds).
 *
 * A domain without a usable key is not sent unsigned by surprise: per
 * dkim.missing_key the message gets 451 4.7.5 (default) or goes out unsigned,
 * and either way a log line says so.
 */
#include "smtp/smtp_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/dkim.h"
#include "store/store.h"

#define SMTP_DKIM_TTL_MS 60000
#define SMTP_DKIM_KEYS_MAX 4

struct smtp_dkim_entry {
	struct smtp_dkim_entry *next;
	char domain[SMTP_DOMAIN_MAX + 1];
	int64_t loaded;			/* monotonic ms */
	size_t nkeys;
	char selector[SMTP_DKIM_KEYS_MAX][64];
	enum dkim_alg alg[SMTP_DKIM_KEYS_MAX];
	EVP_PKEY *pkey[SMTP_DKIM_KEYS_MAX];	/* owned references */
};

struct smtp_dkim_cache {
	pthread_mutex_t lock;
	struct smtp_dkim_entry *entries;
};

static void entry_clear(struct smtp_dkim_entry *e)
{
	for (size_t i = 0; i < e->nkeys; i++)
		EVP_PKEY_free(e->pkey[i]);
	e->nkeys = 0;
}

/* entry_load - the active keys of e->domain from the store and their files. */
static void entry_load(struct smtp_server *srv, struct smtp_dkim_entry *e)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	entry_clear(e);
	e->loaded = time_mono_ms();
	if (store_dkim_keys(srv->store, e->domain, &keys, &n) != RC_OK)
		return;
	for (size_t i = 0; i < n && e->nkeys < SMTP_DKIM_KEYS_MAX; i++) {
		EVP_PKEY *pkey = NULL;
		enum dkim_alg alg;
		if (!keys[i].active)
			continue;
		if (dkim_key_load(keys[i].path, &pkey, &alg) != RC_OK) {
			log_err("event=dkim_key_unusable domain=%s selector=%s path=%s", e->domain,
				keys[i].selector, keys[i].path);
			continue;
		}
		str_lcpy(e->selector[e->nkeys], keys[i].selector, sizeof e->selector[0]);
		e->alg[e->nkeys] = alg;
		e->pkey[e->nkeys++] = pkey;
	}
	store_dkim_keys_free(keys, n);
}

/* smtp_dkim_cache_new / _free - the shared key cache of a server. */
struct smtp_dkim_cache *smtp_dkim_cache_new(void)
{
	struct smtp_dkim_cache *c = xcalloc(1, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void smtp_dkim_cache_free(struct smtp_dkim_cache *c)
{
	if (c == NULL)
		return;
	while (c->entries) {
		struct smtp_dkim_entry *e = c->entries;
		c->entries = e->next;
		entry_clear(e);
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* dkim_keys_for - copies of the active keys of domain (references taken). */
static size_t dkim_keys_for(struct smtp_server *srv, const char *domain,
			    struct dkim_key out[SMTP_DKIM_KEYS_MAX],
			    char sel[SMTP_DKIM_KEYS_MAX][64])
{
	struct smtp_dkim_cache *c = srv->dkim;
	pthread_mutex_lock(&c->lock);
	struct smtp_dkim_entry *e;
	for (e = c->entries; e; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			break;
	if (e == NULL) {
		e = xcalloc(1, sizeof *e);
		str_lcpy(e->domain, domain, sizeof e->domain);
		e->next = c->entries;
		c->entries = e;
		entry_load(srv, e);
	} else if (time_mono_ms() - e->loaded > SMTP_DKIM_TTL_MS) {
		entry_load(srv, e);
	}
	size_t n = e->nkeys;
	for (size_t i = 0; i < n; i++) {
		str_lcpy(sel[i], e->selector[i], 64);
		EVP_PKEY_up_ref(e->pkey[i]);
		out[i] = (struct dkim_key){.alg = e->alg[i], .selector = sel[i], .pkey = e->pkey[i]};
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* smtp_dkim_sign - sign body for domain and prepend the signatures. RC_OK also
 * when mail may go unsigned; RC_TEMPFAIL (with *r set) when it may not. */
enum rc smtp_dkim_sign(struct smtp_server *srv, uint64_t sid, const char *domain,
		       struct evbuffer *body, struct smtp_reply *r, char *text, size_t textsz)
{
	struct dkim_key keys[SMTP_DKIM_KEYS_MAX];
	char sel[SMTP_DKIM_KEYS_MAX][64];
	size_t n = dkim_keys_for(srv, domain, keys, sel);
	if (n == 0) {
		bool send = srv->conf->dkim.missing_key == CONF_DKIM_MISSING_SEND;
		log_msg(send ? LOG_LV_WARN : LOG_LV_ERR,
			"sid=%016llx event=dkim_no_key domain=%s action=%s hint=\"relevo domain add "
			"%s\"", (unsigned long long)sid, domain, send ? "sent_unsigned" : "tempfail",
			domain);
		if (send)
			return RC_OK;
		snprintf(text, textsz, "Cannot sign mail for %s: no DKIM key (the operator must "
			 "run: relevo domain add %s)", domain, domain);
		*r = (struct smtp_reply){451, "4.7.5", text};
		return RC_TEMPFAIL;
	}
	for (size_t i = 0; i < n; i++)
		keys[i].domain = domain;
	struct dkim_signer *sg = NULL;
	char *sig = NULL;
	enum rc rc = dkim_signer_new(keys, n, NULL, &sg);
	int nv = rc == RC_OK ? evbuffer_peek(body, -1, NULL, NULL, 0) : 0;
	if (nv > 0) {
		struct evbuffer_iovec *v = xcalloc((size_t)nv, sizeof *v);
		evbuffer_peek(body, -1, NULL, v, nv);
		for (int i = 0; i < nv && rc == RC_OK; i++)
			rc = dkim_signer_feed(sg, v[i].iov_base, v[i].iov_len);
		free(v);
	}
	if (rc == RC_OK)
		rc = dkim_signer_finish(sg, &sig);
	dkim_signer_free(sg);
	for (size_t i = 0; i < n; i++)
		EVP_PKEY_free(keys[i].pkey);
	if (rc != RC_OK) {
		log_err("sid=%016llx event=dkim_sign_failed domain=%s rc=%s",
			(unsigned long long)sid, domain, rc_name(rc));
		snprintf(text, textsz, "Cannot sign mail for %s right now, try again later", domain);
		*r = (struct smtp_reply){451, "4.7.5", text};
		return RC_TEMPFAIL;
	}
	evbuffer_prepend(body, sig, strlen(sig));
	free(sig);
	return RC_OK;
}
