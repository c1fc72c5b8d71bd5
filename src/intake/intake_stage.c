/*
 * intake_stage.c - the intake's checks and transformations before signing:
 * content (header checks about the message), policy (the account's domains),
 * suppression (one batched lookup, off the loop), the Received trace field and
 * the RFC 6409 fix-ups. Each stage does one job on the job's message and says
 * NEXT, or STOP with a refusal (intake_refuse) or an early acceptance.
 */
#include "intake/intake_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conf/conf.h"
#include "policy/policy.h"
#include "spool/spool.h"
#include "store/store.h"

/* intake_check_content - what every message must satisfy, first match wins: at
 * most smtp.max_received_headers Received: fields (554 5.4.6, a loop), exactly
 * one From: (550 5.6.0, RFC 5322 3.6). */
enum intake_verdict intake_check_content(struct intake_job *j)
{
	const struct intake_msg *m = &j->m;
	unsigned max_received = m->conf->smtp.max_received_headers;
	if (m->received_fields > max_received)
		/* RFC 5321 6.3: a count of trace fields is how loops are found. */
		return intake_refuse(j, RC_PERMFAIL, 554, "5.4.6", "mail_loop",
				     "Too many hops: %u Received: header fields (at most %u); the "
				     "message is looping", m->received_fields, max_received);
	if (m->from_fields == 0)
		return intake_refuse(j, RC_PERMFAIL, 550, "5.6.0", "from_count",
				     "The message has no From: header; RFC 5322 3.6 requires "
				     "exactly one");
	if (m->from_fields > 1)
		return intake_refuse(j, RC_PERMFAIL, 550, "5.6.0", "from_count",
				     "The message has %u From: headers; RFC 5322 3.6 allows exactly "
				     "one", m->from_fields);
	return INTAKE_NEXT;
}

/* intake_check_policy - an account may use only its own domains in From: (a
 * relay client without an account is not checked here). */
enum intake_verdict intake_check_policy(struct intake_job *j)
{
	const struct intake_msg *m = &j->m;
	if (m->account == NULL)
		return INTAKE_NEXT;
	if (m->from_malformed)
		return intake_refuse(j, RC_PERMFAIL, 553, "5.7.1", "from_malformed",
				     "The From: header could not be parsed");
	for (size_t i = 0; i < m->nfrom && i < INTAKE_FROM_MAX; i++)
		if (!policy_user_owns(m->account, m->from_domain[i]))
			return intake_refuse(j, RC_PERMFAIL, 553, "5.7.1",
					     "sender_domain_not_allowed",
					     "From: header domain %s is not yours to use",
					     m->from_domain[i]);
	return INTAKE_NEXT;
}

/* ---- suppression ----------------------------------------------------------------- */

/* intake_suppression_waits - only an account has a suppression list. */
bool intake_suppression_waits(const struct intake_job *j)
{
	return j->m.env->user != NULL && j->m.env->nrcpt > 0;
}

/* intake_suppression_lookup - on the work queue: every recipient in one batched
 * lookup (store_suppression_check_batch). */
void intake_suppression_lookup(struct intake_job *j)
{
	const struct spool_env *env = j->m.env;
	const char **addrs = xcalloc(env->nrcpt, sizeof *addrs);
	for (size_t i = 0; i < env->nrcpt; i++)
		addrs[i] = env->rcpt[i].addr;
	j->is_suppressed = xcalloc(env->nrcpt, sizeof *j->is_suppressed);
	j->lookup_rc = store_suppression_check_batch(j->in->store, env->user, addrs, env->nrcpt,
						     j->is_suppressed);
	free(addrs);
}

static void intake_rcpt_fini(struct spool_rcpt *r)
{
	free(r->addr);
	free(r->orcpt);
	free(r->last_reply);
}

/* intake_all_suppressed - no recipient left: nothing is signed or stored; the
 * submitter still hears "accepted" (it must not learn the list through the
 * protocol, docs/decisions.md), the account sees the events. */
static enum intake_verdict intake_all_suppressed(struct intake_job *j)
{
	char sid[32];
	intake_emit_suppressed(j, 0);
	log_info("id=%s%s event=all_suppressed source=%s user=%s nrcpt=%zu", j->idstr,
		 intake_log_sid(j, sid, sizeof sid), j->m.source, intake_user(j), j->nsuppressed);
	intake_refuse(j, RC_OK, 250, "2.0.0", "all_suppressed", "queued as %s", j->idstr);
	return INTAKE_STOP;
}

/* intake_split_suppressed - leave the suppressed recipients out of the envelope
 * (a store error is a temporary failure: nothing is sent to a recipient that
 * may be on the list). */
enum intake_verdict intake_split_suppressed(struct intake_job *j)
{
	struct spool_env *env = j->m.env;
	if (j->lookup_rc != RC_OK)
		return intake_refuse(j, RC_TEMPFAIL, 451, "4.3.0", "unavailable",
				     "Temporary failure checking the suppression list, try again "
				     "later");
	j->accepted = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof *j->accepted);
	j->suppressed = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof *j->suppressed);
	size_t kept = 0;
	for (size_t i = 0; i < env->nrcpt; i++) {
		if (j->is_suppressed && j->is_suppressed[i]) {
			j->suppressed[j->nsuppressed++] = xstrdup(env->rcpt[i].addr);
			intake_rcpt_fini(&env->rcpt[i]);
			continue;
		}
		j->accepted[j->naccepted++] = xstrdup(env->rcpt[i].addr);
		env->rcpt[kept++] = env->rcpt[i];
	}
	env->nrcpt = kept;
	return kept == 0 ? intake_all_suppressed(j) : INTAKE_NEXT;
}

/* ---- transformations -------------------------------------------------------------- */

/* intake_add_trace - the Received field (RFC 5321 4.4), first in the header
 * (after the fix-ups, which it goes above). */
enum intake_verdict intake_add_trace(struct intake_job *j)
{
	const struct intake_trace *t = &j->m.trace;
	const char *host = j->m.conf->hostname;
	char date[64];
	time_rfc5322(time_now_ms() / 1000, date, sizeof date);
	struct evbuffer *h = evbuffer_new();
	if (h == NULL)
		fatal("event=evbuffer_new_failed where=intake_add_trace");
	if (t->from == NULL)
		/* Not from the network: no "from" clause and no "with" protocol
		 * (nothing was authenticated by SMTP AUTH); the local user, as
		 * Postfix and sendmail write it for local submissions. */
		evbuffer_add_printf(h, "Received: by %s (relevo, from userid %ld)\r\n\tid %s", host,
				    t->local_uid, j->idstr);
	else
		evbuffer_add_printf(h, "Received: from %s\r\n\tby %s (relevo) with %s id %s%s%s",
				    t->from, host, t->with, j->idstr, t->tls ? "\r\n\t" : "",
				    t->tls ? t->tls : "");
	if (j->nrcpt_given == 1)
		evbuffer_add_printf(h, "\r\n\tfor <%s>", j->accepted[0]);
	evbuffer_add_printf(h, ";\r\n\t%s\r\n", date);
	evbuffer_prepend_buffer(j->m.body, h);
	evbuffer_free(h);
	return INTAKE_NEXT;
}

/* intake_fix_submission - RFC 6409 8.2 and 8.3: a submitted message without Date
 * or Message-ID gets one. */
enum intake_verdict intake_fix_submission(struct intake_job *j)
{
	char date[64];
	const char *host = j->m.conf->hostname;
	struct evbuffer *h = evbuffer_new();
	if (h == NULL)
		fatal("event=evbuffer_new_failed where=intake_fix_submission");
	if (!j->m.has_date) {
		time_rfc5322(time_now_ms() / 1000, date, sizeof date);
		evbuffer_add_printf(h, "Date: %s\r\n", date);
	}
	if (!j->m.has_message_id)
		evbuffer_add_printf(h, "Message-ID: <%s.%llx@%s>\r\n", j->idstr,
				    (unsigned long long)(time_now_ms() % 1000000), host);
	evbuffer_prepend_buffer(j->m.body, h);
	evbuffer_free(h);
	return INTAKE_NEXT;
}
