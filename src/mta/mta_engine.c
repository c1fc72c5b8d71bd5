/*
 * mta_engine.c - the delivery engine: from the spool, through the scheduler, to
 * each destination's servers, and back to the spool with every outcome.
 *
 * One thread runs one event loop for all outbound work (DNS, connections,
 * timers); it is the only writer of recipient states, so what it decides is what
 * the spool records. An attempt takes a batch of due recipients for one
 * destination from the scheduler, takes a parked connection to the same place
 * (mta_pool.c) or resolves the route and connects (next address and next MX on
 * failure), sends one transaction per message over the same connection, records
 * every recipient's outcome durably (spool_rcpt_update), reschedules temporary
 * failures with backoff, and once a message has no queued recipient left,
 * bounces the failed ones in one DSN (RFC 3464) from <>. When its batch is done
 * and more of the destination is due, the attempt goes on over the same
 * connection (up to delivery.max_messages_per_connection); when nothing is, a
 * healthy connection is parked for the next attempt.
 *
 * Crash model: an outcome is written as soon as it is known; a crash re-sends at
 * most what was in flight. Recipient states live in the spool; the scheduler is
 * rebuilt from it at start.
 * Ownership: attempts are owned by the engine's list and found by id from async
 * completions (STYLE.md); a completion for a finished attempt is dropped.
 */
#include "mta/mta_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/err.h>

#define MTA_BATCH_MAX 256	/* recipients taken per attempt */
#define MTA_HEARTBEAT_S 5	/* the delivery loop beats this often (GET /v1/health) */

static void mta_kick(struct mta *m);
static void attempt_end(struct mta_attempt *a);
static void attempt_connect_next(struct mta_attempt *a);
static void attempt_get_conn(struct mta_attempt *a, bool pool_ok);
static void attempt_send_next(struct mta_attempt *a);


/* ---- small helpers ---------------------------------------------------------- */

static struct mta_attempt *attempt_find(struct mta *m, uint64_t id)
{
	for (struct mta_attempt *a = m->attempts; a; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

/* mta_rcpt_domain - the lower-cased destination of an address ("" if none). */
void mta_rcpt_domain(const char *addr, char *out, size_t outsz)
{
	const char *at = strrchr(addr, '@');
	str_lcpy(out, at ? at + 1 : "", outsz);
	str_lower(out);
}

static const char *status_of(const struct mta_reply *r, const char *fallback_enh,
			     enum rc rc)
{
	if (r && r->enh[0])
		return r->enh;
	if (fallback_enh)
		return fallback_enh;
	return rc == RC_OK ? "2.0.0" : rc == RC_PERMFAIL ? "5.0.0" : "4.0.0";
}

/*
 * mta_crosses_delay_warning - is this deferral the first one that finds the
 * message older than delivery.delay_warning? The previous attempt's time is
 * derived from the stored next_attempt and the retry schedule, so the warning is
 * sent once without a stored flag (a flushed recipient, whose next_attempt was
 * reset, may be warned again or not at all: an accepted imprecision).
 */
static bool mta_crosses_delay_warning(struct mta *m, const struct spool_env *env,
				      const struct spool_rcpt *r, int64_t now)
{
	int64_t dw = (int64_t)m->conf->delivery.delay_warning * 1000;
	if (dw == 0 || now - env->created < dw)
		return false;
	int64_t prev = env->created;
	if (r->attempts > 0) {
		if (r->next_attempt == 0)
			return false;
		prev = r->next_attempt - (int64_t)sched_retry_delay(&m->sc, r->attempts) * 1000;
	}
	return prev - env->created < dw;
}

/* ---- recording outcomes ------------------------------------------------------ */

/* mta_stream_of - the scheduler stream a message travels in. */
enum sched_stream mta_stream_of(const struct spool_env *env)
{
	return (env->flags & SPOOL_F_BULK) ? SCHED_STREAM_BULK : SCHED_STREAM_TRANSACTIONAL;
}

/*
 * mta_bounce_class - "hard" when the failure says the mailbox or address does
 * not exist or is disabled (5.1.x, 5.2.1; or a bare 550/551/553 without an
 * enhanced code): such a recipient will not start working, so the sender's
 * suppression list takes it. Everything else (full mailbox, policy, spam,
 * routing, expiry) is "soft": worth trying again another day.
 */
const char *mta_bounce_class(const char *status, int code)
{
	if (status == NULL || status[0] != '5')
		return "soft";
	if (strncmp(status, "5.1.", 4) == 0 || strcmp(status, "5.2.1") == 0)
		return "hard";
	if (strcmp(status, "5.0.0") == 0 && (code == 550 || code == 551 || code == 553))
		return "hard";
	return "soft";
}

/* mta_outcome_of - o from what decided it: the server's reply r, or (none) the
 * enhanced status enh and reason why; remote is "name[ip]" or NULL. The class
 * follows rc; mta_record turns a deferral that ran out of time into expired. */
void mta_outcome_of(struct outcome *o, enum outcome_cause cause, enum rc rc,
		    const struct mta_reply *r, const char *enh, const char *why, const char *remote)
{
	memset(o, 0, sizeof *o);
	o->cause = cause;
	o->cls = rc == RC_OK ? OUTCOME_DELIVERED : rc == RC_TEMPFAIL ? OUTCOME_DEFERRED
								     : OUTCOME_BOUNCED;
	str_lcpy(o->status, status_of(r, enh, rc), sizeof o->status);
	if (r && r->code)
		outcome_set_reply(o, r->code, r->enh, r->text, NULL);
	else
		outcome_set_reply(o, 0, NULL, NULL, why);
	outcome_set_remote(o, remote);
}

/* What each class of outcome is in the spool, the events and the metrics. */
static const struct {
	enum spool_rcpt_state state;
	enum evlog_type event;
	enum metrics_counter metric;
} class_of[] = {
	[OUTCOME_DELIVERED] = {SPOOL_RCPT_DELIVERED, EVLOG_DELIVERED, METRICS_ATTEMPT_DELIVERED},
	[OUTCOME_DEFERRED] = {SPOOL_RCPT_QUEUED, EVLOG_DEFERRED, METRICS_ATTEMPT_DEFERRED},
	[OUTCOME_BOUNCED] = {SPOOL_RCPT_FAILED, EVLOG_BOUNCED, METRICS_ATTEMPT_BOUNCED},
	[OUTCOME_EXPIRED] = {SPOOL_RCPT_FAILED, EVLOG_EXPIRED, METRICS_ATTEMPT_EXPIRED},
};
_Static_assert(ARRAY_LEN(class_of) == OUTCOME__COUNT, "a row per outcome class");

/* mta_event_new - the event of one recipient's outcome (for the store and
 * webhooks), owned by the caller until emitted. */
static struct evlog_event *mta_event_new(const struct spool_env *env, uint32_t idx,
					 const struct outcome *o)
{
	char remote[OUTCOME_HOST_MAX + OUTCOME_ADDR_MAX + 2];
	outcome_remote(o, remote, sizeof remote);
	struct evlog_event ev = {
		.type = class_of[o->cls].event,
		.msgid = env->id,
		.recipient = env->rcpt[idx].addr,
		.sender = env->sender,
		.user = env->user,
		.stream = evlog_stream_name(env->flags & SPOOL_F_BULK),
		.source = (env->flags & SPOOL_F_API) ? "api" : "smtp",
		.status = (char *)o->status,
		.remote = remote[0] ? remote : NULL,
		.reply = o->reply[0] ? (char *)o->reply : NULL,
		.attempts = o->attempts,
	};
	if (o->cls != OUTCOME_DELIVERED)
		ev.bounce_class = o->cls == OUTCOME_BOUNCED ? mta_bounce_class(o->status, o->code)
							    : "soft";
	return evlog_event_dup(&ev);
}

/* One recorded outcome on its way to the disk: its event goes out once it is
 * durable. Owned by the spool update's callback. */
struct mta_recorded {
	struct mta *m;
	struct evlog_event *ev;
};

/* on_rcpt_recorded - the outcome is durable (or could not be made so): now its
 * event, then a look at the whole message (a bounce may be due). */
static void on_rcpt_recorded(void *ctx, uint64_t msgid, enum rc rc, uint64_t unused)
{
	struct mta_recorded *rec = ctx;
	struct mta *m = rec->m;
	if (rc == RC_OK)
		evlog_emit(rec->ev);
	else
		log_err("event=spool_update_failed rc=%s", rc_name(rc));
	evlog_event_free(rec->ev);
	free(rec);
	if (!m->stopping)
		mta_maybe_bounce(m, msgid);
}

/* mta_class_of - deferred stays deferred until the next attempt (*next), or is
 * expired when the retry schedule has run out (*next 0). */
static void mta_class_of(struct mta *m, const struct spool_env *env, struct outcome *o,
			 int64_t now, int64_t *next)
{
	*next = 0;
	if (o->cls != OUTCOME_DEFERRED)
		return;
	*next = sched_next_attempt(&m->sc, env->created, o->attempts, now);
	if (*next == 0) {
		o->cls = OUTCOME_EXPIRED;
		str_lcpy(o->status, "4.4.7", sizeof o->status);
	}
}

/*
 * mta_record - one recipient's outcome (the class and attempts are completed
 * here): delivered, deferred (rescheduled), bounced or expired (bounce due).
 * Logs it and writes it to the spool; its event is emitted once that is durable
 * (on_rcpt_recorded), which then looks at the whole message. O(1) in the
 * message's recipients: nothing here or there copies the envelope.
 */
void mta_record(struct mta *m, const struct spool_env *env, uint32_t idx,
		const struct outcome *given, const char *dest, enum sched_stream stream)
{
	const struct spool_rcpt *r = &env->rcpt[idx];
	int64_t now = time_now_ms(), next;
	struct outcome o = *given;
	o.attempts = r->attempts + 1;
	mta_class_of(m, env, &o, now, &next);
	enum spool_rcpt_state st = class_of[o.cls].state;
	char text[OUTCOME_TEXT_MAX], idstr[ID_STR_LEN + 1];
	outcome_format(&o, text, sizeof text);
	metrics_inc(class_of[o.cls].metric);
	id_format(env->id, idstr);
	log_info("id=%s event=%s rcpt=<%s> attempts=%u %s", idstr, outcome_class_name(o.cls),
		 r->addr, o.attempts, text);
	struct mta_recorded *rec = xcalloc(1, sizeof *rec);
	rec->m = m;
	rec->ev = mta_event_new(env, idx, &o);
	if (spool_rcpt_update(m->spool, env->id, idx, st, o.attempts, next, text, m->base,
			      on_rcpt_recorded, rec, env->id) != RC_OK) {
		/* deleted meanwhile: nothing to wait for, the outcome happened */
		log_err("id=%s event=spool_update_refused rcpt=<%s>", idstr, r->addr);
		evlog_emit(rec->ev);
		evlog_event_free(rec->ev);
		free(rec);
	}
	if (st == SPOOL_RCPT_QUEUED) {
		sched_add(m->sched, stream, dest, env->id, idx, next);
		if (mta_crosses_delay_warning(m, env, r, now))
			mta_delay_warn(m, env, idx, &o);
	}
}

/* ---- attempts ------------------------------------------------------------------ */

/* attempt_msgs_free - drop the attempt's batch (done, or about to be replaced). */
static void attempt_msgs_free(struct mta_attempt *a)
{
	for (size_t i = 0; i < a->nmsgs; i++) {
		spool_env_free(a->msgs[i].env);
		if (a->msgs[i].body)
			evbuffer_free(a->msgs[i].body);
		free(a->msgs[i].rcpt);
	}
	free(a->msgs);
	a->msgs = NULL;
	a->nmsgs = a->next_msg = 0;
}

static void attempt_free(struct mta_attempt *a)
{
	attempt_msgs_free(a);
	conf_unref(a->conf);
	free(a);
}

/* attempt_fail_rest - every recipient not yet decided gets rc (no connection). */
static void attempt_fail_rest(struct mta_attempt *a, enum outcome_cause cause, enum rc rc,
			      const struct mta_reply *reply, const char *enh, const char *why)
{
	struct outcome o;
	mta_outcome_of(&o, cause, rc, reply, enh, why, a->last_host);
	for (size_t i = a->next_msg; i < a->nmsgs; i++) {
		struct mta_msgwork *w = &a->msgs[i];
		for (size_t k = 0; k < w->nrcpt; k++)
			mta_record(a->m, w->env, w->rcpt[k].idx, &o, a->dest, a->stream);
	}
	a->next_msg = a->nmsgs;
}

static void attempt_end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mta_attempt *a = arg;
	struct mta *m = a->m;
	if (a->conn && a->healthy && a->conf == m->conf)	/* parked if it can take more
								 * (and the settings it was
								 * opened with still hold) */
		mta_pool_put(m, a->key, a->conn, a->last_host, a->sent_on_conn);
	else if (a->conn)
		mta_conn_close(a->conn);
	a->conn = NULL;
	for (struct mta_attempt **pp = &m->attempts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	m->nattempts--;
	sched_release(m->sched, a->dest);
	event_free(a->end_ev);
	attempt_free(a);
	mta_kick(m);
}

/* attempt_end - finish from a safe point (never inside a connection callback). */
static void attempt_end(struct mta_attempt *a)
{
	if (a->ending)
		return;
	a->ending = true;
	a->end_ev = event_new(a->m->base, -1, 0, attempt_end_cb, a);
	event_active(a->end_ev, 0, 0);
}

/* attempt_load - turn scheduled items into per-message work; false if none left. */
static bool attempt_load(struct mta_attempt *a, const struct sched_item *items, size_t n)
{
	struct mta *m = a->m;
	int64_t now = time_now_ms();
	a->msgs = xcalloc(n, sizeof *a->msgs);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && items[j].msgid == items[i].msgid)
			j++;
		struct spool_env *env = NULL;
		if (spool_get(m->spool, items[i].msgid, &env) != RC_OK ||
		    (env->flags & SPOOL_F_HELD)) {
			spool_env_free(env); /* deleted or held meanwhile: not ours any more */
			i = j;
			continue;
		}
		struct mta_msgwork *w = &a->msgs[a->nmsgs];
		w->env = env;
		w->rcpt = xcalloc(j - i, sizeof *w->rcpt);
		for (size_t k = i; k < j; k++) {
			uint32_t idx = items[k].rcpt;
			if (idx >= env->nrcpt || env->rcpt[idx].state != SPOOL_RCPT_QUEUED)
				continue;
			if (sched_is_expired(&m->sc, env->created, now)) {
				struct outcome o;
				mta_outcome_of(&o, OUTCOME_BY_EXPIRY, RC_TEMPFAIL, NULL, "4.4.7",
					       "message expired in the queue", NULL);
				mta_record(m, env, idx, &o, a->dest, a->stream);
				continue;
			}
			w->rcpt[w->nrcpt++] = (struct mta_txn_rcpt){
				.addr = env->rcpt[idx].addr,
				.orcpt = env->rcpt[idx].orcpt,
				.notify = env->rcpt[idx].notify,
				.idx = idx,
			};
		}
		if (w->nrcpt == 0) {
			spool_env_free(env);
			free(w->rcpt);
			memset(w, 0, sizeof *w);
		} else {
			a->nmsgs++;
		}
		i = j;
	}
	return a->nmsgs > 0;
}

static void attempt_on_route(void *ctx, uint64_t cookie, const struct mta_route *r)
{
	struct mta *m = ctx;
	struct mta_attempt *a = attempt_find(m, cookie);
	if (a == NULL || a->ending)
		return;
	metrics_observe(METRICS_H_DELIVERY_DNS, (uint64_t)(metrics_now_us() - a->resolve_us));
	if (r->rc != RC_OK) {
		attempt_fail_rest(a, OUTCOME_BY_ROUTE, r->rc, NULL, r->enh, r->why);
		attempt_end(a);
		return;
	}
	a->route = *r;
	if (a->croute == NULL && mta_route_restrict(&a->route, m->conf) != RC_OK) {
		char idstr[ID_STR_LEN + 1];
		id_format(a->msgs[0].env->id, idstr);
		log_info("id=%s event=route_refused dest=%s why=\"%s\"", idstr, a->dest,
			 a->route.why);
		attempt_fail_rest(a, OUTCOME_BY_ROUTE, a->route.rc, NULL, a->route.enh,
				  a->route.why);
		attempt_end(a);
		return;
	}
	a->routed = true;
	a->host_i = a->addr_i = 0;
	attempt_connect_next(a);
}

static void attempt_on_ready(void *ctx, uint64_t cookie, struct mta_conn *c, enum rc rc,
			     const struct mta_reply *why);
static void attempt_on_done(void *ctx, uint64_t cookie, struct mta_conn *c, struct mta_txn *t);

/* attempt_on_idle_lost - a connection broke between transactions: a parked one
 * is closed now; an attempt's own finds out when it next looks. */
static void attempt_on_idle_lost(void *ctx, uint64_t cookie, struct mta_conn *c)
{
	struct mta *m = ctx;
	if (!mta_pool_on_lost(m, cookie) && attempt_find(m, cookie) == NULL)
		mta_conn_close(c);	/* nobody's: cannot happen, but never leak */
}

static const struct mta_conn_cbs attempt_cbs = {attempt_on_ready, attempt_on_done,
						attempt_on_idle_lost};

/* attempt_resolve - look up where the destination's mail goes. */
static void attempt_resolve(struct mta_attempt *a)
{
	struct mta *m = a->m;
	a->resolve_us = metrics_now_us();
	if (a->croute)
		mta_route_host(m->dns, a->croute->host, a->croute->port, attempt_on_route, m,
			       a->id);
	else
		mta_route_mx(m->dns, a->dest, (uint16_t)a->conf->delivery.port, attempt_on_route, m,
			     a->id);
}

/* attempt_get_conn - a connection for what is left: a parked one to the same
 * place (pool_ok), else the route's next address (resolving it first). */
static void attempt_get_conn(struct mta_attempt *a, bool pool_ok)
{
	struct mta *m = a->m;
	unsigned sent = 0;
	if (pool_ok && !m->stopping) {
		a->conn = mta_pool_take(m, a->key, a->id, a->last_host, sizeof a->last_host, &sent);
		if (a->conn != NULL) {
			a->reused = a->healthy = true;
			a->sent_on_conn = sent;
			attempt_send_next(a);
			return;
		}
	}
	if (a->routed)
		attempt_connect_next(a);
	else
		attempt_resolve(a);
}

/* attempt_connect_next - the next address of the current host, else the next host. */
static void attempt_connect_next(struct mta_attempt *a)
{
	struct mta *m = a->m;
	while (a->host_i < a->route.nhosts && a->addr_i >= a->route.host[a->host_i].naddr) {
		a->host_i++;
		a->addr_i = 0;
	}
	if (a->host_i >= a->route.nhosts || m->stopping) {
		const char *why = a->last_err.code ? NULL : "could not connect to any server";
		attempt_fail_rest(a, OUTCOME_BY_CONNECT, RC_TEMPFAIL,
				  a->last_err.code ? &a->last_err : NULL, "4.4.1", why);
		attempt_end(a);
		return;
	}
	const struct mta_route_host *h = &a->route.host[a->host_i];
	const struct sockaddr_storage *sa = &h->addr[a->addr_i++];
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
	snprintf(a->last_host, sizeof a->last_host, "%s[%s]", h->name[0] ? h->name : ip, ip);
	struct mta_conn_params p;
	mta_conf_conn_params(a->conf, m->tls, &p);
	p.host = h->name[0] ? h->name : ip;
	if (a->croute) {
		p.auth_user = a->croute->auth_user;
		p.auth_pass = a->croute->auth_password;
		p.tls_required = a->croute->tls == CONF_TLS_REQUIRED;
		p.tls_verify = a->croute->tls_verify;
	}
	p.source = conf_source_address(a->conf, sa->ss_family, &p.source_len);
	socklen_t salen = sa->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6);
	a->sent_on_conn = 0;
	a->reused = false;
	a->healthy = true;
	mta_pool_make_room(m);
	/* The attempt owns the connection from now on, even before it is ready, so
	 * that stopping can close it. */
	a->conn = mta_conn_open(m->base, (const struct sockaddr *)sa, salen, &p, &attempt_cbs, m,
				a->id);
}

static void attempt_on_ready(void *ctx, uint64_t cookie, struct mta_conn *c, enum rc rc,
			     const struct mta_reply *why)
{
	struct mta *m = ctx;
	struct mta_attempt *a = attempt_find(m, cookie);
	if (a == NULL || a->ending) {
		if (rc == RC_OK)
			mta_conn_close(c);
		return;
	}
	if (rc != RC_OK) {
		/* Connection refused, 4xx/5xx greeting, TLS required but absent:
		 * try the next address and the next MX (RFC 5321 5.1). The
		 * connection has freed itself. */
		a->conn = NULL;
		if (why)
			a->last_err = *why;
		if (rc == RC_PERMFAIL && why && strcmp(why->enh, "5.4.6") == 0) {
			/* The server is this relay: every other MX would only be a
			 * slower way round the same loop (mta_client.c). */
			attempt_fail_rest(a, OUTCOME_BY_CONNECT, RC_PERMFAIL, why, "5.4.6", NULL);
			attempt_end(a);
			return;
		}
		char idstr[ID_STR_LEN + 1];
		id_format(a->msgs[0].env->id, idstr);
		log_info("id=%s event=connect_failed relay=%s reply=\"%d %s\"", idstr, a->last_host,
			 why ? why->code : 0, why ? why->text : "");
		attempt_connect_next(a);
		return;
	}
	a->conn = c;
	attempt_send_next(a);
}

/*
 * attempt_take_more - the batch is done: if the connection can take more and
 * more of the destination is due, that is the new batch (the attempt keeps its
 * slot). False when there is nothing more to do over this connection.
 */
static bool attempt_take_more(struct mta_attempt *a)
{
	struct mta *m = a->m;
	struct sched_item items[MTA_BATCH_MAX];
	while (!m->stopping && a->healthy && mta_conn_is_usable(a->conn) &&
	       a->sent_on_conn < m->max_msgs_per_conn) {
		enum sched_stream st;
		size_t n = sched_take_more(m->sched, a->dest, time_now_ms(), items, MTA_BATCH_MAX,
					   &st);
		if (n == 0)
			return false;
		attempt_msgs_free(a);
		a->stream = st;
		if (!attempt_load(a, items, n))
			continue;
		mta_sandbox_deliver(m, a, true);
		if (a->nmsgs > 0)
			return true;
	}
	return false;
}

/* attempt_send_next - the next message over the open connection, or finish. */
static void attempt_send_next(struct mta_attempt *a)
{
	struct mta *m = a->m;
	if (a->next_msg >= a->nmsgs && !attempt_take_more(a)) {
		attempt_end(a);
		return;
	}
	if (a->sent_on_conn >= m->max_msgs_per_conn || !mta_conn_is_usable(a->conn)) {
		/* A fresh connection for the rest: parked, or the same address again. */
		mta_conn_close(a->conn);
		a->conn = NULL;
		a->addr_i = a->addr_i > 0 ? a->addr_i - 1 : 0;
		attempt_get_conn(a, true);
		return;
	}
	struct mta_msgwork *w = &a->msgs[a->next_msg];
	if (w->body == NULL) {
		w->body = evbuffer_new();
		if (spool_read_body(m->spool, w->env->id, w->body) != RC_OK) {
			attempt_fail_rest(a, OUTCOME_BY_LOCAL, RC_TEMPFAIL, NULL, "4.3.0",
					  "could not read the spool");
			attempt_end(a);
			return;
		}
	}
	w->txn = (struct mta_txn){
		.msgid = w->env->id,
		.sender = w->env->sender,
		.envid = w->env->envid,
		.flags = w->env->flags,
		.nrcpt = w->nrcpt,
		.rcpt = w->rcpt,
		.body = w->body,
	};
	a->sent_on_conn++;
	mta_conn_send(a->conn, &w->txn);
}

static void attempt_on_done(void *ctx, uint64_t cookie, struct mta_conn *c, struct mta_txn *t)
{
	struct mta *m = ctx;
	struct mta_attempt *a = attempt_find(m, cookie);
	if (a == NULL)
		return;
	if (t->unanswered && a->reused) {
		/* A parked connection the server had closed meanwhile: nothing of the
		 * message was delivered and it is no attempt of the recipients'; send
		 * it again over a new connection. */
		log_debug("event=stale_reuse relay=%s", a->last_host);
		mta_conn_close(c);
		a->conn = NULL;
		a->reused = false;
		a->addr_i = a->addr_i > 0 ? a->addr_i - 1 : 0;
		attempt_get_conn(a, false);
		return;
	}
	a->reused = false;
	a->healthy = t->nrcpt == 0;
	struct mta_msgwork *w = &a->msgs[a->next_msg];
	for (size_t k = 0; k < t->nrcpt; k++) {
		a->healthy = a->healthy || t->rcpt[k].rc != RC_TEMPFAIL;
		struct outcome o;
		mta_outcome_of(&o, OUTCOME_BY_REPLY, t->rcpt[k].rc, &t->rcpt[k].reply, NULL, NULL,
			       a->last_host);
		mta_record(m, w->env, t->rcpt[k].idx, &o, a->dest, a->stream);
	}
	evbuffer_free(w->body);
	w->body = NULL;
	a->next_msg++;
	if (!mta_conn_is_usable(c)) {
		mta_conn_close(c);
		a->conn = NULL;
		/* What is left goes back to the queue for a new attempt soon. */
		for (size_t i = a->next_msg; i < a->nmsgs; i++)
			for (size_t k = 0; k < a->msgs[i].nrcpt; k++)
				sched_add(m->sched, a->stream, a->dest, a->msgs[i].env->id,
					  a->msgs[i].rcpt[k].idx, time_now_ms());
		a->next_msg = a->nmsgs;
		attempt_end(a);
		return;
	}
	attempt_send_next(a);
}

/* attempt_start - a batch of due recipients for one destination. */
static void attempt_start(struct mta *m, const char *dest, enum sched_stream stream,
			  const struct sched_item *items, size_t n)
{
	struct mta_attempt *a = xcalloc(1, sizeof *a);
	a->m = m;
	a->id = ++m->attempt_seq;
	a->conf = conf_ref(m->conf);
	str_lcpy(a->dest, dest, sizeof a->dest);
	a->stream = stream;
	a->next = m->attempts;
	m->attempts = a;
	m->nattempts++;
	if (!attempt_load(a, items, n)) {
		attempt_end(a);
		return;
	}
	if (m->sandbox) {
		mta_sandbox_deliver(m, a, false);
		attempt_end(a);
		return;
	}
	/* Messages of sandboxed users are "delivered" to files, the rest go out. */
	mta_sandbox_deliver(m, a, true);
	if (a->nmsgs == 0) {
		attempt_end(a);
		return;
	}
	a->croute = conf_route_find(a->conf, dest);
	mta_pool_key(m, a->croute, dest, a->key, sizeof a->key);
	attempt_get_conn(a, true);
}

/* ---- the run loop ------------------------------------------------------------------ */

static void mta_on_run(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	struct sched_item items[MTA_BATCH_MAX];
	char dest[DNS_NAME_MAX + 3];
	while (!m->stopping && m->nattempts < m->max_conns) {
		enum sched_stream st;
		size_t n = sched_take(m->sched, time_now_ms(), items, MTA_BATCH_MAX, dest,
				      sizeof dest, &st);
		if (n == 0)
			break;
		attempt_start(m, dest, st, items, n);
	}
	int64_t due = sched_next_due(m->sched);
	if (due != INT64_MAX && !m->stopping) {
		int64_t wait = due - time_now_ms();
		if (wait < 0)
			wait = 0;
		if (wait > 60000)
			wait = 60000;
		struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
		evtimer_add(m->timer, &tv);
	}
}

static void mta_kick(struct mta *m)
{
	event_active(m->run_ev, 0, 0);
}

/* mta_schedule_msg - put a message's queued recipients into the scheduler. */
static void mta_schedule_msg(struct mta *m, const struct spool_env *env)
{
	if (env->flags & SPOOL_F_HELD)
		return;
	bool queued = false;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state != SPOOL_RCPT_QUEUED)
			continue;
		char dest[DNS_NAME_MAX + 3];
		mta_rcpt_domain(r->addr, dest, sizeof dest);
		sched_add(m->sched, mta_stream_of(env), dest, env->id, (uint32_t)i,
			  r->next_attempt);
		queued = true;
	}
	if (!queued)
		mta_maybe_bounce(m, env->id);
}

static void mta_on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	pthread_mutex_lock(&m->qlock);
	uint64_t *q = m->q;
	size_t n = m->nq;
	m->q = NULL;
	m->nq = m->capq = 0;
	bool flush_all = m->flush_all;
	m->flush_all = false;
	pthread_mutex_unlock(&m->qlock);
	for (size_t i = 0; i < n; i++) {
		uint64_t id = q[i] & ~MTA_Q_FLUSH;
		struct spool_env *env = NULL;
		if (spool_get(m->spool, id, &env) != RC_OK) {
			sched_remove_msg(m->sched, id);
			continue;
		}
		if (env->flags & SPOOL_F_HELD)
			sched_remove_msg(m->sched, id);
		else
			mta_schedule_msg(m, env);
		if (q[i] & MTA_Q_FLUSH)
			sched_flush(m->sched, id, time_now_ms());
		spool_env_free(env);
	}
	if (flush_all)
		sched_flush(m->sched, 0, time_now_ms());
	free(q);
	mta_kick(m);
}

static void mta_enqueue(struct mta *m, uint64_t v, bool flush_all)
{
	pthread_mutex_lock(&m->qlock);
	if (flush_all) {
		m->flush_all = true;
	} else {
		if (m->nq == m->capq) {
			m->capq = m->capq ? m->capq * 2 : 64;
			m->q = xrealloc(m->q, m->capq * sizeof *m->q);
		}
		m->q[m->nq++] = v;
	}
	bool wake = m->batch == 0;
	pthread_mutex_unlock(&m->qlock);
	if (wake)
		event_active(m->notify_ev, 0, 0);
}

void mta_batch_begin(struct mta *m)
{
	pthread_mutex_lock(&m->qlock);
	m->batch++;
	pthread_mutex_unlock(&m->qlock);
}

void mta_batch_end(struct mta *m)
{
	pthread_mutex_lock(&m->qlock);
	bool wake = --m->batch == 0 && (m->nq > 0 || m->flush_all);
	pthread_mutex_unlock(&m->qlock);
	if (wake)
		event_active(m->notify_ev, 0, 0);
}

/* mta_notify - a message was committed or changed (release); thread-safe. */
void mta_notify(struct mta *m, uint64_t msgid)
{
	mta_enqueue(m, msgid, false);
}

/* mta_flush - attempt msgid (0: everything) now; thread-safe. */
void mta_flush(struct mta *m, uint64_t msgid)
{
	if (msgid == 0)
		mta_enqueue(m, 0, true);
	else
		mta_enqueue(m, msgid | MTA_Q_FLUSH, false);
}

/* ---- reload ----------------------------------------------------------------------- */

/*
 * mta_on_reload - on the delivery loop: the conf mta_reload left becomes the
 * engine's. Attempts under way keep theirs (a->conf); parked connections were
 * opened with the old settings (HELO name, TLS, source address, AUTH), so they
 * are closed (QUIT) and the next attempts connect afresh.
 */
static void mta_on_reload(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	pthread_mutex_lock(&m->reload_lock);
	const struct conf *nc = m->next_conf;
	void (*done)(void *) = m->reload_done;
	void *done_arg = m->reload_arg;
	m->next_conf = NULL;
	m->reload_done = NULL;
	pthread_mutex_unlock(&m->reload_lock);
	if (nc == NULL)
		return;
	conf_unref(m->conf);
	m->conf = nc;
	mta_conf_apply(m);
	sched_set_conf(m->sched, &m->sc);
	mta_pool_close_all(m, "reload");
	log_info("event=delivery_reloaded mode=%s routes=%zu attempts_in_progress=%u",
		 m->sandbox ? "sandbox" : "normal", nc->delivery.nroutes, m->nattempts);
	mta_kick(m);
	if (done && !m->stopping)
		done(done_arg);
}

/* mta_reload - hand nc (a new reference is taken) to the delivery loop; done(arg)
 * runs there once it is in use. Any thread. */
void mta_reload(struct mta *m, const struct conf *nc, void (*done)(void *arg), void *arg)
{
	pthread_mutex_lock(&m->reload_lock);
	conf_unref(m->next_conf);
	m->next_conf = conf_ref(nc);
	m->reload_done = done;
	m->reload_arg = arg;
	pthread_mutex_unlock(&m->reload_lock);
	event_active(m->reload_ev, 0, 0);
}

/* ---- lifecycle --------------------------------------------------------------------- */

static bool mta_load_one(void *arg, const struct spool_env *env)
{
	mta_schedule_msg(arg, env);
	return true;
}

static SSL_CTX *mta_tls_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_default_verify_paths(ctx);
	return ctx;
}

/* mta_new - the engine; its scheduler holds every queued recipient of the spool. */
enum rc mta_new(const struct conf *conf, struct spool *spool, struct mta **out)
{
	core_threads_init();
	struct mta *m = xcalloc(1, sizeof *m);
	m->conf = conf_ref(conf);
	m->spool = spool;
	m->base = event_base_new();
	if (m->base == NULL)
		fatal("event=event_base_new_failed where=mta");
	pthread_mutex_init(&m->qlock, NULL);
	pthread_mutex_init(&m->reload_lock, NULL);
	m->tls = mta_tls_ctx();
	mta_conf_apply(m);
	enum rc rc = dns_new(m->base, conf->dns.resolver, m->dns_timeout_ms, &m->dns);
	if (rc != RC_OK) {
		log_err("event=dns_setup_failed resolver=%s", conf->dns.resolver ? conf->dns.resolver : "system");
		mta_free(m);
		return rc;
	}
	m->sched = sched_new(&m->sc);
	m->run_ev = event_new(m->base, -1, 0, mta_on_run, m);
	m->reload_ev = event_new(m->base, -1, 0, mta_on_reload, m);
	m->notify_ev = event_new(m->base, -1, 0, mta_on_notify, m);
	m->timer = evtimer_new(m->base, mta_on_run, m);
	mta_pool_init(m);
	spool_foreach(spool, mta_load_one, m);
	log_info("event=delivery_ready queued_recipients=%zu mode=%s", sched_count(m->sched),
		 m->sandbox ? "sandbox" : "normal");
	*out = m;
	return RC_OK;
}

/* mta_on_heartbeat - the delivery loop is alive (GET /v1/health looks). */
static void mta_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	health_beat(HEALTH_MTA);
}

static void *mta_main(void *arg)
{
	struct mta *m = arg;
	health_thread_subsys(HEALTH_MTA);
	health_beat(HEALTH_MTA);
	struct event *hb = event_new(m->base, -1, EV_PERSIST, mta_on_heartbeat, m);
	struct timeval every = {MTA_HEARTBEAT_S, 0};
	event_add(hb, &every);
	mta_kick(m);
	event_base_loop(m->base, EVLOOP_NO_EXIT_ON_EMPTY);
	event_free(hb);
	return NULL;
}

/* mta_start - run the delivery thread. */
enum rc mta_start(struct mta *m)
{
	if (pthread_create(&m->thread, NULL, mta_main, m) != 0)
		return RC_IO;
	m->started = true;
	return RC_OK;
}

static void mta_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	m->stopping = true;
	mta_pool_close_all(m, "shutdown");	/* QUIT to every parked connection */
	event_base_loopbreak(m->base);
}

/* mta_stop - stop the delivery thread; in-flight recipients stay queued. */
void mta_stop(struct mta *m)
{
	if (m == NULL || !m->started)
		return;
	struct event *ev = event_new(m->base, -1, 0, mta_on_stop, m);
	event_active(ev, 0, 0);
	pthread_join(m->thread, NULL);
	event_free(ev);
	m->started = false;
}

/* mta_free - release the engine (after mta_stop). */
void mta_free(struct mta *m)
{
	if (m == NULL)
		return;
	m->stopping = true;
	while (m->attempts) {
		struct mta_attempt *a = m->attempts;
		m->attempts = a->next;
		if (a->conn)
			mta_conn_close(a->conn);
		if (a->end_ev)
			event_free(a->end_ev);
		attempt_free(a);
	}
	/* Completions the spool posted while it drained: run them (they see
	 * stopping and only free themselves). */
	if (m->base)
		event_base_loop(m->base, EVLOOP_NONBLOCK);
	mta_bounce_fini(m);
	mta_pool_fini(m);
	if (m->run_ev)
		event_free(m->run_ev);
	if (m->notify_ev)
		event_free(m->notify_ev);
	if (m->timer)
		event_free(m->timer);
	if (m->reload_ev)
		event_free(m->reload_ev);
	conf_unref(m->next_conf);
	conf_unref(m->conf);
	pthread_mutex_destroy(&m->reload_lock);
	sched_free(m->sched);
	dns_free(m->dns);
	if (m->tls)
		SSL_CTX_free(m->tls);
	free(m->q);
	pthread_mutex_destroy(&m->qlock);
	if (m->base)
		event_base_free(m->base);
	free(m);
}
