/*
 * intake_sign.c - DKIM signing, the intake's last transformation: every message
 * from a registered domain leaves with an rsa-sha256 and an ed25519-sha256
 * signature made over the exact bytes that are queued (and later sent
 * unchanged). It runs only for a message that will be queued (some recipient
 * is left after the suppression split).
 *
 * Two stages: the keys come from the key cache's asynchronous lookup
 * (dkim_cache_lookup: a miss is loaded, from the store and the PEM files, on the
 * cache's own thread), then the signature is made on the intake's work queue
 * (RSA costs CPU); no loop waits for either, and the loop then decides what the
 * outcome means (intake_sign_dkim).
 *
 * A domain without an active key is not sent unsigned by surprise: per
 * dkim.missing_key the message gets 451 4.7.5 (default) or goes out unsigned,
 * and either way a log line says so. The reply names the real reason: no key
 * (only then does it tell the operator to run `relevo domain add`), a key that
 * is not active yet, or an active key that cannot be read (EACCES, EMFILE: 451
 * whatever missing_key says).
 */
#include "intake/intake_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "spool/spool.h"

/* intake_sign_domain - the domain a message is signed as: its From: domain, else
 * the envelope sender's; "" (not signed) for an address literal or <>. */
void intake_sign_domain(struct intake_job *j)
{
	const char *d = "";
	const char *at = strrchr(j->m.env->sender, '@');
	if (j->m.nfrom > 0)
		d = j->m.from_domain[0];
	else if (at)
		d = at + 1;
	if (d[0] == '[')
		d = "";
	str_lcpy(j->sign_as, d, sizeof j->sign_as);
	str_lower(j->sign_as);
}

/* intake_on_keys - the key cache's answer (at once on a hit, later on a miss;
 * ks is borrowed). */
static void intake_on_keys(void *arg, struct dkim_keyset *ks)
{
	struct intake_job *j = arg;
	j->keys = dkim_keyset_ref(ks);
	if (j->keys_waiting) {
		j->keys_waiting = false;
		intake_resume(j);
	}
}

/* intake_find_keys - the signing keys of the domain, from the key cache without
 * blocking (dkim_cache_lookup loads a missing domain on the cache's thread). */
enum intake_verdict intake_find_keys(struct intake_job *j)
{
	if (j->sign_as[0] == '\0')
		return INTAKE_NEXT;
	dkim_cache_lookup(j->in->dkim, j->base, j->sign_as, intake_on_keys, j);
	if (j->keys != NULL)
		return INTAKE_NEXT;
	j->keys_waiting = true;
	return INTAKE_WAIT;
}

/* intake_sign_waits - a message with a domain to sign as is signed off the loop. */
bool intake_sign_waits(const struct intake_job *j)
{
	return j->sign_as[0] != '\0';
}

/* intake_sign_make - on the work queue: the signatures (or why there are none);
 * CPU only, the keys are in memory. */
void intake_sign_make(struct intake_job *j)
{
	j->sign_rc = dkim_keyset_sign(j->keys, j->sign_as, j->m.body, &j->sig, &j->sign_st);
}

/*
 * intake_sign_warn_due - whether to log that domain's mail goes out unsigned:
 * once a minute per loop thread and domain in a row, not for every message (an
 * operator who chose dkim.missing_key: send has been told; a flood of identical
 * lines costs CPU and hides the rest).
 */
static bool intake_sign_warn_due(const char *domain)
{
	static _Thread_local char last_domain[INTAKE_DOMAIN_MAX + 1];
	static _Thread_local int64_t last_ms;
	int64_t now = time_mono_ms();
	if (strcmp(last_domain, domain) == 0 && now - last_ms < 60000)
		return false;
	str_lcpy(last_domain, domain, sizeof last_domain);
	last_ms = now;
	return true;
}

/* intake_sign_unreadable - a registered domain whose active key cannot be read
 * (policy_dkim_load logged the path and reason): always 451, whatever
 * dkim.missing_key says, since that domain is meant to be signed. */
static enum intake_verdict intake_sign_unreadable(struct intake_job *j)
{
	char buf[128], sid[32];
	log_err("id=%s%s event=dkim_unavailable domain=%s source=%s reason=key_unreadable "
		"error=\"%s\" action=tempfail", j->idstr, intake_log_sid(j, sid, sizeof sid),
		j->sign_as, j->m.source,
		j->sign_st.error ? strerror_r(j->sign_st.error, buf, sizeof buf)
				 : "not a usable private key");
	return intake_refuse(j, RC_TEMPFAIL, 451, "4.7.5", "dkim_key_unreadable",
			     "Cannot sign mail for %s: its DKIM signing key cannot be read right "
			     "now, try again later", j->sign_as);
}

/* intake_sign_missing - no active key: per dkim.missing_key, unsigned or 451. */
static enum intake_verdict intake_sign_missing(struct intake_job *j)
{
	char sid[32];
	const char *d = j->sign_as;
	bool send = j->m.conf->dkim.missing_key == CONF_DKIM_MISSING_SEND;
	if (send && !intake_sign_warn_due(d))
		return INTAKE_NEXT;
	log_msg(send ? LOG_LV_WARN : LOG_LV_ERR,
		"id=%s%s event=dkim_no_key domain=%s source=%s action=%s hint=\"%s %s\"", j->idstr,
		intake_log_sid(j, sid, sizeof sid), d, j->m.source,
		send ? "sent_unsigned" : "tempfail",
		j->sign_st.registered ? "relevo domain activate" : "relevo domain add", d);
	if (send)
		return INTAKE_NEXT;
	if (j->sign_st.registered)
		return intake_refuse(j, RC_TEMPFAIL, 451, "4.7.5", "dkim_key_missing",
				     "Cannot sign mail for %s: it has no active DKIM key yet (its new "
				     "key waits for activation)", d);
	return intake_refuse(j, RC_TEMPFAIL, 451, "4.7.5", "dkim_key_missing",
			     "Cannot sign mail for %s: no DKIM key for the domain (the operator "
			     "must run: relevo domain add %s)", d, d);
}

/* intake_sign_dkim - prepend the signatures made off the loop, or refuse. */
enum intake_verdict intake_sign_dkim(struct intake_job *j)
{
	char sid[32];
	if (j->sign_as[0] == '\0')
		return INTAKE_NEXT;
	if (j->sign_rc == RC_IO)
		return intake_sign_unreadable(j);
	if (j->sign_rc == RC_NOTFOUND)
		return intake_sign_missing(j);
	if (j->sign_rc != RC_OK) {
		log_err("id=%s%s event=dkim_sign_failed domain=%s source=%s rc=%s", j->idstr,
			intake_log_sid(j, sid, sizeof sid), j->sign_as, j->m.source,
			rc_name(j->sign_rc));
		return intake_refuse(j, RC_TEMPFAIL, 451, "4.7.5", "dkim_failed",
				     "Cannot sign mail for %s right now, try again later", j->sign_as);
	}
	evbuffer_prepend(j->m.body, j->sig, strlen(j->sig));
	free(j->sig);
	j->sig = NULL;
	return INTAKE_NEXT;
}
