/*
 * smtp_dkim.c - DKIM signing at submission: every message from a registered
 * domain leaves with an rsa-sha256 and an ed25519-sha256 signature made over the
 * exact bytes that are queued (and later sent unchanged).
 *
 * Keys come from the store (which keys are active) and data_dir/keys/ (the PEM
 * files), through the DKIM key cache (dkim_cache.c, loaded by policy_dkim_load)
 * shared by the workers.
 *
 * A domain without a usable key is not sent unsigned by surprise: per
 * dkim.missing_key the message gets 451 4.7.5 (default) or goes out unsigned,
 * and either way a log line says so.
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

/* smtp_dkim_sign - sign body for domain and prepend the signatures. RC_OK also
 * when mail may go unsigned; RC_TEMPFAIL (with *r set) when it may not. */
enum rc smtp_dkim_sign(struct smtp_server *srv, uint64_t sid, const char *domain,
		       struct evbuffer *body, struct smtp_reply *r, char *text, size_t textsz)
{
	char *sig = NULL;
	enum rc rc = dkim_cache_sign(srv->dkim, domain, body, &sig);
	if (rc == RC_NOTFOUND) {
		bool send = srv->conf->dkim.missing_key == CONF_DKIM_MISSING_SEND;
		if (send && !smtp_dkim_warn_due(domain))
			return RC_OK;
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
