/*
 * mta_bounce.c - turning failed recipients into one delivery status
 * notification (RFC 3464) to the envelope sender.
 *
 * A message is bounced when no recipient is queued any more and some failed. The
 * DSN is committed to the spool from <> like any message (and delivered by this
 * engine); only once it is durable are the failed recipients marked BOUNCED, so a
 * crash in between repeats the DSN rather than losing it. Never a DSN for a
 * message from <> (RFC 3464 / RFC 5321 6.1: no bounce loops), nor for recipients
 * with NOTIFY=NEVER or NOTIFY without FAILURE (RFC 3461 4.1).
 */
#include "mta/mta_int.h"

#include <stdlib.h>
#include <string.h>

#define MTA_DSN_RETURN_MAX (1u << 20)	/* return the whole original up to 1 MiB */

struct mta_bounce {
	struct mta_bounce *next;
	uint64_t msgid;
};

static bool bounce_pending(struct mta *m, uint64_t id)
{
	for (struct mta_bounce *b = m->bouncing; b; b = b->next)
		if (b->msgid == id)
			return true;
	return false;
}

static void bounce_forget(struct mta *m, uint64_t id)
{
	for (struct mta_bounce **pp = &m->bouncing; *pp; pp = &(*pp)->next) {
		if ((*pp)->msgid == id) {
			struct mta_bounce *b = *pp;
			*pp = b->next;
			free(b);
			return;
		}
	}
}

/* bounce_wanted - does this failed recipient ask for a failure DSN? */
static bool bounce_wanted(const struct spool_env *env, const struct spool_rcpt *r)
{
	if (env->sender[0] == '\0')
		return false;
	if (r->notify == 0)
		return true; /* RFC 3461 4.1: default is FAILURE (and DELAY at our option) */
	return (r->notify & SPOOL_NOTIFY_FAILURE) != 0;
}

/* bounce_mark - every FAILED recipient becomes BOUNCED (final). */
static void bounce_mark(struct mta *m, const struct spool_env *env)
{
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state != SPOOL_RCPT_FAILED)
			continue;
		spool_rcpt_update(m->spool, env->id, i, SPOOL_RCPT_BOUNCED, r->attempts,
				  r->next_attempt, r->last_reply, NULL, NULL, NULL, 0);
	}
}

/* A DSN that could not be committed (disk full) is tried again later. */
struct bounce_retry {
	struct mta *m;
	uint64_t msgid;
	struct event *ev;
};

static void bounce_retry(evutil_socket_t fd, short what, void *arg)
{
	struct bounce_retry *br = arg;
	mta_maybe_bounce(br->m, br->msgid);
	event_free(br->ev);
	free(br);
}

static void on_dsn_committed(void *ctx, uint64_t msgid, enum rc rc, uint64_t dsnid)
{
	struct mta *m = ctx;
	char ids[ID_STR_LEN + 1], dsns[ID_STR_LEN + 1];
	id_format(msgid, ids);
	id_format(dsnid, dsns);
	bounce_forget(m, msgid);
	if (m->stopping)
		return; /* the DSN, if durable, is delivered after restart; the
			 * recipients are still FAILED, so the bounce is repeated */
	if (rc != RC_OK) {
		log_err("id=%s event=dsn_commit_failed rc=%s retry_in=60s", ids, rc_name(rc));
		struct bounce_retry *br = xcalloc(1, sizeof *br);
		br->m = m;
		br->msgid = msgid;
		br->ev = evtimer_new(m->base, bounce_retry, br);
		struct timeval tv = {60, 0};
		evtimer_add(br->ev, &tv);
		return;
	}
	struct spool_env *env = NULL;
	if (spool_get(m->spool, msgid, &env) != RC_OK)
		return;
	log_info("id=%s event=dsn_queued dsn=%s to=<%s>", ids, dsns, env->sender);
	bounce_mark(m, env);
	spool_env_free(env);
}

/* bounce_envelope - the envelope of a DSN about env: from <> to its sender. */
static struct spool_env *bounce_envelope(struct mta *m, const struct spool_env *env,
					 struct evbuffer *dsn)
{
	struct spool_env *de = xcalloc(1, sizeof *de);
	de->created = time_now_ms();
	de->sender = xstrdup("");
	de->client = xstrdup("127.0.0.1");
	de->helo = xstrdup(m->conf->hostname);
	de->flags = env->flags & (SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8 | SPOOL_F_SANDBOX);
	de->nrcpt = 1;
	de->rcpt = xcalloc(1, sizeof *de->rcpt);
	de->rcpt[0].addr = xstrdup(env->sender);
	de->body_size = evbuffer_get_length(dsn);
	return de;
}

/* bounce_dsn_rcpt - recipient r's part of a DSN: its outcome o (pointed to, so
 * o must outlive the result) and action ("failed" or "delayed"). */
static struct mta_dsn_rcpt bounce_dsn_rcpt(const struct spool_rcpt *r, const struct outcome *o,
					   const char *action)
{
	return (struct mta_dsn_rcpt){
		.addr = r->addr,
		.orcpt = r->orcpt,
		.status = o->status[0] ? o->status : "5.0.0",
		.action = action,
		/* Remote-MTA: dns; is a name, without the address (RFC 3464 2.3.5) */
		.remote_mta = o->host[0] ? o->host : NULL,
		.diagnostic = o->reply[0] ? o->reply : NULL,
		.last_attempt = time_now_ms(),
	};
}

/* bounce_commit - the DSN (RFC 3464) about env for the n recipients dr, with
 * the original (or its header, headers_only), committed from <> to env's
 * sender; cb(m, cookie) when durable. */
static void bounce_commit(struct mta *m, const struct spool_env *env,
			  const struct mta_dsn_rcpt *dr, size_t n, bool headers_only,
			  spool_done_cb cb, uint64_t cookie)
{
	struct evbuffer *orig = evbuffer_new(), *out = evbuffer_new();
	spool_read_body(m->spool, env->id, orig);
	struct mta_dsn d = {
		.reporting_mta = m->conf->hostname,
		.sender = env->sender,
		.envid = env->envid,
		.arrival = env->created,
		.headers_only = headers_only,
		.nrcpt = n,
		.rcpt = dr,
		.original = (const char *)evbuffer_pullup(orig, -1),
		.original_len = evbuffer_get_length(orig),
		.max_return = MTA_DSN_RETURN_MAX,
	};
	mta_dsn_build(&d, out);
	evbuffer_free(orig);
	struct spool_env *de = bounce_envelope(m, env, out);
	spool_commit(m->spool, de, out, m->base, cb, m, cookie);
}

/* bounce_failed - the DSN for env's failed recipients that asked for one (their
 * outcomes read back from the spool's records). */
static void bounce_failed(struct mta *m, const struct spool_env *env)
{
	size_t n = 0, want = 0;
	for (size_t i = 0; i < env->nrcpt; i++)
		want += env->rcpt[i].state == SPOOL_RCPT_FAILED && bounce_wanted(env, &env->rcpt[i]);
	struct mta_dsn_rcpt *dr = xcalloc(want, sizeof *dr);
	struct outcome *o = xcalloc(want, sizeof *o);
	for (size_t i = 0; i < env->nrcpt && n < want; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state != SPOOL_RCPT_FAILED || !bounce_wanted(env, r))
			continue;
		outcome_parse(r->last_reply, &o[n]);	/* other text: the diagnostic */
		dr[n] = bounce_dsn_rcpt(r, &o[n], "failed");
		n++;
	}
	bounce_commit(m, env, dr, n, (env->flags & SPOOL_F_RET_HDRS) != 0, on_dsn_committed,
		      env->id);
	free(o);
	free(dr);
}

/*
 * mta_maybe_bounce - if msgid has nothing queued and failed recipients, bounce.
 * Called after every recorded outcome: it looks at the spool's counts (O(1)) and
 * copies the envelope only when the bounce is due, once per message.
 */
void mta_maybe_bounce(struct mta *m, uint64_t msgid)
{
	struct spool_tally t;
	struct spool_env *env = NULL;
	if (bounce_pending(m, msgid) || spool_tally(m->spool, msgid, &t) != RC_OK ||
	    t.queued > 0 || t.failed == 0 || spool_get(m->spool, msgid, &env) != RC_OK)
		return;
	bool wanted = false;
	for (size_t i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state == SPOOL_RCPT_FAILED)
			wanted |= bounce_wanted(env, &env->rcpt[i]);
	if (!wanted) {
		bounce_mark(m, env);
		spool_env_free(env);
		return;
	}
	struct mta_bounce *b = xcalloc(1, sizeof *b);
	b->msgid = msgid;
	b->next = m->bouncing;
	m->bouncing = b;
	bounce_failed(m, env);
	spool_env_free(env);
}

static void on_delay_committed(void *ctx, uint64_t msgid, enum rc rc, uint64_t dsnid)
{
	char ids[ID_STR_LEN + 1], dsns[ID_STR_LEN + 1];
	id_format(msgid, ids);
	id_format(dsnid, dsns);
	if (rc == RC_OK)
		log_info("id=%s event=delay_dsn_queued dsn=%s", ids, dsns);
	else
		log_warn("id=%s event=delay_dsn_failed rc=%s", ids, rc_name(rc));
}

/* mta_delay_warn - tell the sender that recipient idx is still being retried
 * (RFC 3464 action "delayed"), with the headers of the message. Sent once, when
 * a deferral first finds the message older than delivery.delay_warning; only if
 * the sender is not <> and NOTIFY asked for DELAY (or said nothing: RFC 3461 4.1
 * leaves the default to us). */
void mta_delay_warn(struct mta *m, const struct spool_env *env, uint32_t idx,
		    const struct outcome *o)
{
	const struct spool_rcpt *r = &env->rcpt[idx];
	if (env->sender[0] == '\0' || (r->notify != 0 && !(r->notify & SPOOL_NOTIFY_DELAY)))
		return;
	struct mta_dsn_rcpt dr = bounce_dsn_rcpt(r, o, "delayed");
	bounce_commit(m, env, &dr, 1, true, on_delay_committed, env->id);
}

/* mta_bounce_fini - forget pending bounces (their DSN commits still complete). */
void mta_bounce_fini(struct mta *m)
{
	while (m->bouncing) {
		struct mta_bounce *b = m->bouncing;
		m->bouncing = b->next;
		free(b);
	}
}
