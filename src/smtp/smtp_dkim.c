/*
 * smtp_dkim.c - DKIM signing at submission: every message from a registered
 * domain leaves with an rsa-sha256 and an ed25519-sha256 signature made over the
 * exact bytes that are queued (and later sent unchanged).
 *
 * Keys come from the store (which keys are active) and data_dir/keys/ (the PEM
 * files), through the DKIM key cache (dkim_cache.c, loaded by policy_dkim_load)
 * shared by the workers.
 *
 * A domain without an active key is not sent unsigned by surprise: per
 * dkim.missing_key the message gets 451 4.7.5 (default) or goes out unsigned,
 * and either way a log line says so. The reply names the real reason: no key
 * (only then does it tell the operator to run `relevo domain add`), a key that
 * is not active yet, or an active key that cannot be read (EACCES, EMFILE: 451
 * whatever missing_key says).
 */
#include "smtp/smtp_int.h"

#include <stdlib.h>
#include <string.h>

#include "dkim/dkim.h"
#include "policy/policy.h"

/*
 * smtp_dkim_warn_due - whether to log that domain's mail goes out unsigned: once
 * a minute per worker and domain in a row, not for every message (an operator
 * who chose dkim.missing_key: send has been told; a flood of identical lines
 * costs CPU and hides the rest).
 */
static bool smtp_dkim_warn_due(const char *domain)
{
	static _Thread_local char last_domain[SMTP_DOMAIN_MAX + 1];
	static _Thread_local int64_t last_ms;
	int64_t now = time_mono_ms();
	if (strcmp(last_domain, domain) == 0 && now - last_ms < 60000)
		return false;
	str_lcpy(last_domain, domain, sizeof last_domain);
	last_ms = now;
	return true;
}

/* smtp_dkim_unreadable - a registered domain whose active key cannot be read
 * (policy_dkim_load logged the path and reason): always 451, whatever
 * dkim.missing_key says, since that domain is meant to be signed. */
static enum rc smtp_dkim_unreadable(uint64_t sid, const char *domain,
				    const struct dkim_sign_status *st, struct smtp_reply *r,
				    char *text, size_t textsz)
{
	char buf[128];
	log_err("sid=%016llx event=dkim_unavailable domain=%s reason=key_unreadable "
		"error=\"%s\" action=tempfail", (unsigned long long)sid, domain,
		st->error ? strerror_r(st->error, buf, sizeof buf) : "not a usable private key");
	snprintf(text, textsz, "Cannot sign mail for %s: its DKIM signing key cannot be read "
		 "right now, try again later", domain);
	*r = (struct smtp_reply){451, "4.7.5", text};
	return RC_TEMPFAIL;
}

/* smtp_dkim_sign - sign body for domain and prepend the signatures. RC_OK also
 * when mail may go unsigned; RC_TEMPFAIL (with *r set) when it may not. */
enum rc smtp_dkim_sign(struct smtp_server *srv, const struct conf *conf, uint64_t sid,
		       const char *domain, struct evbuffer *body, struct smtp_reply *r, char *text,
		       size_t textsz)
{
	char *sig = NULL;
	struct dkim_sign_status st;
	enum rc rc = dkim_cache_sign(srv->dkim, domain, body, &sig, &st);
	if (rc == RC_IO)
		return smtp_dkim_unreadable(sid, domain, &st, r, text, textsz);
	if (rc == RC_NOTFOUND) {
		bool send = conf->dkim.missing_key == CONF_DKIM_MISSING_SEND;
		if (send && !smtp_dkim_warn_due(domain))
			return RC_OK;
		log_msg(send ? LOG_LV_WARN : LOG_LV_ERR,
			"sid=%016llx event=dkim_no_key domain=%s action=%s hint=\"%s %s\"",
			(unsigned long long)sid, domain, send ? "sent_unsigned" : "tempfail",
			st.registered ? "relevo domain activate" : "relevo domain add", domain);
		if (send)
			return RC_OK;
		if (st.registered)
			snprintf(text, textsz, "Cannot sign mail for %s: it has no active DKIM key yet "
				 "(its new key waits for activation)", domain);
		else
			snprintf(text, textsz, "Cannot sign mail for %s: no DKIM key for the domain "
				 "(the operator must run: relevo domain add %s)", domain, domain);
		*r = (struct smtp_reply){451, "4.7.5", text};
		return RC_TEMPFAIL;
	}
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
