/*
 * smtp_submit.c - the end of a message received over SMTP: the last octet has
 * arrived (smtp_submit_message). The content and header checks, the From:
 * ownership check, the trace fields (Received, and Date and Message-ID when
 * missing), the removal of client-supplied authentication results, DKIM
 * signing, the suppressed recipients, the envelope and the spool commit, and
 * the answer to the client.
 *
 * Invariants:
 * - "250 queued" is written only from the spool's completion callback
 *   (submit_on_commit), i.e. after the message is on stable storage; or when
 *   every recipient is suppressed and there is nothing to queue.
 * - Every way this ends resets the transaction (smtp_tx_reset).
 */
#include "smtp/smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>

#include "policy/policy.h"
#include "spool/spool.h"

static void submit_on_commit(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct smtp_worker *w = ctx;
	char idstr[ID_STR_LEN + 1];
	id_format(msgid, idstr);
	if (rc == RC_OK)
		metrics_inc(METRICS_RECEIVED_SMTP);
	struct smtp_session *s = smtp_worker_find(w, cookie);
	if (s == NULL || s->state != SMTP_ST_WAIT) {
		log_info("id=%s event=commit rc=%s note=client_gone", idstr, rc_name(rc));
		return;
	}
	if (rc == RC_OK) {
		log_info("id=%s sid=%016llx event=accepted sender=<%s> nrcpt=%zu size=%llu user=%s",
			 idstr, (unsigned long long)s->id, s->tx.sender.addr, s->tx.nrcpt,
			 (unsigned long long)s->tx.mc.size, s->user ? s->user->name : "-");
		smtp_session_replyf(s, 250, "2.0.0", "queued as %s", idstr);
	} else {
		log_err("id=%s sid=%016llx event=commit_failed rc=%s", idstr,
			(unsigned long long)s->id, rc_name(rc));
		smtp_session_reply(s, 451, "4.3.0", "Temporary failure storing the message, try again");
	}
	smtp_tx_reset(s);
	smtp_session_set_timeout(s, s->conf->smtp.timeout_command);
	smtp_session_resume(s, smtp_session_idle_state(s));
}

/* submit_check_from - an authenticated user may use only its own domains in From:. */
static bool submit_check_from(struct smtp_session *s, const struct smtp_hdr_info *hi,
			       struct smtp_reply *r)
{
	if (s->user == NULL)
		return true;
	if (hi->from_malformed) {
		*r = (struct smtp_reply){553, "5.7.1", "The From: header could not be parsed"};
		return false;
	}
	for (size_t i = 0; i < hi->nfrom && i < SMTP_HDR_FROM_MAX; i++) {
		if (!policy_user_owns(s->user, hi->from_domain[i])) {
			snprintf(s->text, sizeof s->text,
				 "From: header domain %s is not yours to use", hi->from_domain[i]);
			*r = (struct smtp_reply){553, "5.7.1", s->text};
			return false;
		}
	}
	return true;
}

static const char *submit_protocol(const struct smtp_session *s)
{
	/* RFC 3848 and RFC 6531 7.1 "with" keywords. */
	static const char *const names[2][2][2] = {
		{{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
		{{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
	};
	if (!s->esmtp)
		return "SMTP";
	return names[s->tx.mp.smtputf8][s->tls][s->user != NULL];
}

/* submit_add_trace - Received, and Date and Message-ID when missing (RFC 6409 8). */
static void submit_add_trace(struct smtp_session *s, uint64_t id,
			      const struct smtp_hdr_info *hi)
{
	char idstr[ID_STR_LEN + 1], date[64], tlsinfo[160] = "";
	id_format(id, idstr);
	time_rfc5322(time_now_ms() / 1000, date, sizeof date);
	if (s->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		snprintf(tlsinfo, sizeof tlsinfo, "\r\n\t(using %s with cipher %s)",
			 SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	}
	struct evbuffer *h = evbuffer_new();
	if (smtp_session_is_local(s))
		/* Not from the network: no "from" clause and no "with" protocol
		 * (nothing was authenticated by SMTP AUTH); the local user, as
		 * Postfix and sendmail write it for local submissions. */
		evbuffer_add_printf(h, "Received: by %s (relevo, from userid %ld)\r\n\tid %s",
				    s->conf->hostname, s->local_uid, idstr);
	else
		evbuffer_add_printf(h,
				    "Received: from %s ([%s])\r\n\tby %s (relevo) with %s id %s%s",
				    s->helo[0] ? s->helo : "unknown", s->peer, s->conf->hostname,
				    submit_protocol(s), idstr, tlsinfo);
	if (s->tx.nrcpt == 1)
		evbuffer_add_printf(h, "\r\n\tfor <%s>", s->tx.rcpt[0].addr);
	evbuffer_add_printf(h, ";\r\n\t%s\r\n", date);
	if (!hi->has_date)
		evbuffer_add_printf(h, "Date: %s\r\n", date);
	if (!hi->has_message_id)
		evbuffer_add_printf(h, "Message-ID: <%s.%llx@%s>\r\n", idstr,
				    (unsigned long long)(time_now_ms() % 1000000),
				    s->conf->hostname);
	evbuffer_prepend_buffer(s->tx.body, h);
	evbuffer_free(h);
}

static struct spool_env *submit_envelope(struct smtp_session *s, uint64_t id, bool bulk)
{
	struct spool_env *env = xcalloc(1, sizeof *env);
	env->id = id;
	env->created = time_now_ms();
	env->sender = xstrdup(s->tx.sender.addr);
	env->user = s->user ? xstrdup(s->user->name) : NULL;
	env->client = xstrdup(s->peer);
	env->helo = xstrdup(s->helo);
	env->envid = s->tx.mp.envid[0] ? xstrdup(s->tx.mp.envid) : NULL;
	env->flags = (s->tx.mp.body == SMTP_BODY_8BITMIME || s->tx.mc.eight_bit ? SPOOL_F_8BITMIME : 0) |
		     (s->tx.mp.smtputf8 ? SPOOL_F_SMTPUTF8 : 0) |
		     (s->tx.mp.ret == SMTP_RET_FULL ? SPOOL_F_RET_FULL : 0) |
		     (s->tx.mp.ret == SMTP_RET_HDRS ? SPOOL_F_RET_HDRS : 0) |
		     (s->user && s->user->sandbox ? SPOOL_F_SANDBOX : 0) |
		     (bulk ? SPOOL_F_BULK : 0);
	env->rcpt = xcalloc(s->tx.nrcpt, sizeof *env->rcpt);
	for (size_t i = 0; i < s->tx.nrcpt; i++) {
		if (s->tx.rcpt[i].suppressed)
			continue;
		struct spool_rcpt *r = &env->rcpt[env->nrcpt++];
		r->addr = s->tx.rcpt[i].addr;
		r->orcpt = s->tx.rcpt[i].orcpt;
		r->notify = s->tx.rcpt[i].notify;
		s->tx.rcpt[i].addr = s->tx.rcpt[i].orcpt = NULL;
	}
	env->body_size = evbuffer_get_length(s->tx.body);
	return env;
}

/*
 * submit_all_suppressed - report the suppressed recipients (an event each). If
 * no recipient is left there is nothing to queue: the client still gets 250
 * (a submitter must not learn the list through SMTP; the account sees the
 * events), and true is returned.
 */
static bool submit_all_suppressed(struct smtp_session *s, uint64_t id, bool bulk)
{
	size_t left = s->tx.nrcpt;
	char idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	for (size_t i = 0; i < s->tx.nrcpt; i++) {
		if (!s->tx.rcpt[i].suppressed)
			continue;
		left--;
		smtp_tx_emit(s, EVLOG_SUPPRESSED, id, s->tx.rcpt[i].addr, NULL, bulk);
		log_info("id=%s sid=%016llx event=suppressed rcpt=<%s> user=%s", idstr,
			 (unsigned long long)s->id, s->tx.rcpt[i].addr, s->user ? s->user->name : "-");
	}
	if (left > 0)
		return false;
	log_info("id=%s sid=%016llx event=all_suppressed nrcpt=%zu", idstr,
		 (unsigned long long)s->id, s->tx.nrcpt);
	smtp_session_replyf(s, 250, "2.0.0", "queued as %s", idstr);
	smtp_tx_reset(s);
	return true;
}

/*
 * submit_strip_auth - leave out client-supplied Authentication-Results and
 * ARC-* fields (issue 12): they would tell the next hop that someone checked
 * what nobody did. From a customer (submission listeners) every one goes: an
 * originator has nothing authenticated yet. From a relay client (a trusted
 * forwarder, such as a list server that ARC-sealed what it forwards) only the
 * results that claim our own authserv-id, the hostname (RFC 8601 5).
 */
static void submit_strip_auth(struct smtp_session *s, size_t hlen)
{
	const char *own = s->lst->mode == CONF_LISTEN_RELAY ? s->conf->hostname : NULL;
	struct evbuffer *out = evbuffer_new();
	if (out == NULL)
		fatal("event=evbuffer_new_failed where=submit_strip_auth");
	size_t n = smtp_hdr_strip_auth((const char *)evbuffer_pullup(s->tx.mc.headers, -1), hlen, own,
				       out);
	if (n > 0) {
		evbuffer_drain(s->tx.body, hlen);
		evbuffer_prepend_buffer(s->tx.body, out);
		log_info("sid=%016llx event=auth_headers_stripped fields=%zu", (unsigned long long)s->id,
			 n);
	}
	evbuffer_free(out);
}

/* smtp_submit_message - the last octet of the message has arrived. */
void smtp_submit_message(struct smtp_session *s)
{
	struct smtp_reply r = {0};
	struct smtp_hdr_info hi;
	smtp_session_enter_state(s, smtp_session_idle_state(s));
	s->tx.transfer_ms = 0;
	if (s->tx.bdat_failed) {
		smtp_session_reply(s, s->tx.bdat_err.code, s->tx.bdat_err.enh, s->tx.bdat_err.text);
		smtp_tx_reset(s);
		return;
	}
	if (smtp_msg_check_done(&s->tx.mc, &r) != RC_OK) {
		log_info("sid=%016llx event=rejected reason=\"%s\" size=%llu",
			 (unsigned long long)s->id, r.text, (unsigned long long)s->tx.mc.size);
		smtp_tx_emit(s, EVLOG_REJECTED, 0, NULL, &r, false);
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_tx_reset(s);
		return;
	}
	if (s->tx.mem_refused) {
		/* RFC 3463 4.3.1: the system is full; a later try may well succeed. */
		smtp_session_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
		smtp_tx_reset(s);
		return;
	}
	size_t hlen = evbuffer_get_length(s->tx.mc.headers);
	smtp_hdr_scan((const char *)evbuffer_pullup(s->tx.mc.headers, -1), hlen, &hi);
	if (smtp_hdr_check(&hi, s->conf->smtp.max_received_headers, &r, s->text,
			   sizeof s->text) != RC_OK) {
		log_info("sid=%016llx event=reject reason=\"%s\" received=%u from_fields=%u",
			 (unsigned long long)s->id, r.text, hi.received_fields, hi.from_fields);
		smtp_tx_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_tx_reset(s);
		return;
	}
	if (!submit_check_from(s, &hi, &r)) {
		log_info("sid=%016llx event=rejected reason=from_not_owned user=%s",
			 (unsigned long long)s->id, s->user->name);
		smtp_tx_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_tx_reset(s);
		return;
	}
	size_t blen = evbuffer_get_length(s->tx.body);
	if (blen >= 1) {
		unsigned char tail[2] = {0, 0};
		struct evbuffer_ptr pos;
		evbuffer_ptr_set(s->tx.body, &pos, blen >= 2 ? blen - 2 : 0, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(s->tx.body, &pos, tail, blen >= 2 ? 2 : 1);
		if (!(blen >= 2 && tail[0] == '\r' && tail[1] == '\n'))
			evbuffer_add(s->tx.body, "\r\n", 2);
	}
	submit_strip_auth(s, hlen);
	uint64_t id = id_next();
	submit_add_trace(s, id, &hi);
	const char *sign_as = hi.nfrom > 0 ? hi.from_domain[0] : s->tx.sender.domain;
	if (sign_as[0] && sign_as[0] != '[' &&
	    smtp_dkim_sign(s->srv, s->conf, s->id, sign_as, s->tx.body, &r, s->text, sizeof s->text) != RC_OK) {
		smtp_tx_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_tx_reset(s);
		return;
	}
	if (submit_all_suppressed(s, id, hi.bulk))
		return;
	struct spool_env *env = submit_envelope(s, id, hi.bulk);
	struct evbuffer *body = s->tx.body;
	s->tx.body = NULL;
	char idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	/* The info line is "accepted", once durable; this one is for debugging. */
	log_debug("id=%s sid=%016llx event=committing sender=<%s> nrcpt=%zu size=%llu",
		  idstr, (unsigned long long)s->id, env->sender, env->nrcpt,
		  (unsigned long long)env->body_size);
	smtp_session_pause(s);
	spool_commit(s->srv->spool, env, body, s->w->base, submit_on_commit, s->w, s->id);
}
