/*
 * http_api_messages.c - POST /v1/messages (send) and GET /v1/messages/{id}.
 *
 * Sending: the JSON becomes a MIME message (http_mime_build), the From domain
 * must be the key's account's, recipients on the account's suppression list are
 * left out (an EVLOG_SUPPRESSED event each, once the rest is durable), a
 * Received field is added, the message is DKIM-signed as its From domain (as
 * SMTP does, smtp_dkim.c) and queued with spool_commit. 202 is sent only from
 * the commit's completion with RC_OK: never before the message is durable. The
 * "accepted" events come from the spool's accept hook (as for SMTP). Refusals of
 * an authenticated request (400, 403, 413) are recorded as one EVLOG_REJECTED
 * event.
 *
 * The completion finds its request by cookie (http_pending_take); if the client
 * has gone, the message is still queued and its events still recorded.
 *
 * Reading: one shape whether queued or finished (see GET /v1/messages/{id}
 * below): a message still in the spool shows its envelope and each recipient's
 * spool state, with times from its events; a finished one is rebuilt from its
 * events. Another account's message is a 404, exactly like a message that does
 * not exist.
 */
#include "http/http_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "dkim/dkim.h"
#include "policy/policy.h"
#include "spool/spool.h"
#include "store/store.h"

#define MSG_EVENTS_MAX 100000	/* events read to rebuild a finished message */

static const char *const no_params[] = {NULL};

/* msg_reject - a refusal: one EVLOG_REJECTED event, a log line, the JSON error. */
static void msg_reject(struct http_call *c, int status, const char *code, const char *text,
		       const char *sender, bool bulk)
{
	struct evlog_event ev = {
		.type = EVLOG_REJECTED,
		.sender = (char *)sender,
		.user = c->user->name,
		.stream = evlog_stream_name(bulk),
		.source = "api",
		.status = (char *)(status == 403 ? "5.7.1" : status == 413 ? "5.3.4" : "5.6.0"),
		.reply = (char *)text,
	};
	evlog_emit(&ev);
	metrics_rejected(true, status);
	log_info("event=rejected source=api user=%s client=%s status=%s http_status=%d code=%s",
		 c->user->name, c->client, ev.status, status, code);
	http_error(c->req, status, code, "%s", text);
}

static json_t *msg_list_json(char *const *list, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(list[i]));
	return a;
}

/* msg_emit - one event (and its log line) per address of list. */
static void msg_emit(const struct http_pending *p, enum evlog_type type, char *const *list,
		     size_t n, int64_t when, const char *reply)
{
	char idstr[ID_STR_LEN + 1];
	id_format(p->msgid, idstr);
	for (size_t i = 0; i < n; i++) {
		log_info("id=%s event=%s source=api rcpt=<%s> user=%s", idstr,
			 evlog_type_name(type), list[i], p->user);
		struct evlog_event ev = {
			.time = when,
			.type = type,
			.msgid = p->msgid,
			.recipient = list[i],
			.sender = p->sender,
			.user = p->user,
			.stream = evlog_stream_name(p->bulk),
			.source = "api",
			.reply = (char *)reply,
		};
		evlog_emit(&ev);
	}
}

static void msg_reply_accepted(struct evhttp_request *req, const struct http_pending *p)
{
	char idstr[ID_STR_LEN + 1], loc[64];
	id_format(p->msgid, idstr);
	snprintf(loc, sizeof loc, "/v1/messages/%s", idstr);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
	http_reply_json(req, 202,
			json_pack("{s:s,s:o,s:o}", "id", idstr, "accepted",
				  msg_list_json(p->rcpt, p->nrcpt), "suppressed",
				  msg_list_json(p->suppressed, p->nsuppressed)));
}

/* msg_on_commit - the spool's answer: 202 once durable, else 503. */
static void msg_on_commit(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct http_server *h = ctx;
	char idstr[ID_STR_LEN + 1];
	id_format(msgid, idstr);
	if (rc == RC_OK)
		metrics_inc(METRICS_RECEIVED_API);
	struct http_pending *p = http_pending_take(h, cookie);
	if (p == NULL) {
		log_err("id=%s event=commit rc=%s note=unknown_cookie", idstr, rc_name(rc));
		return;
	}
	if (rc == RC_OK) {
		/* The "accepted" events are the spool's accept hook's (cli_serve.c),
		 * recorded before delivery can start; only the suppressed ones are
		 * ours. */
		msg_emit(p, EVLOG_SUPPRESSED, p->suppressed, p->nsuppressed, p->created,
			 "the recipient is on the account's suppression list");
		log_info("id=%s event=accepted source=api sender=<%s> nrcpt=%zu suppressed=%zu "
			 "user=%s%s", idstr, p->sender, p->nrcpt, p->nsuppressed, p->user,
			 p->req ? "" : " note=client_gone");
		if (p->req)
			msg_reply_accepted(p->req, p);
	} else {
		log_err("id=%s event=commit_failed source=api user=%s rc=%s", idstr, p->user,
			rc_name(rc));
		if (p->req && rc == RC_LIMIT)
			http_error(p->req, 413, "too_large", "the message is too large to store");
		else if (p->req)
			http_error(p->req, 503, "unavailable",
				   "temporary failure storing the message, try again");
	}
	http_pending_free(p);
	http_server_idle(h);
}

/* msg_add_trace - the Received field, as SMTP writes it (docs/decisions.md). */
static void msg_add_trace(struct http_call *c, uint64_t id, const struct http_mime_msg *m)
{
	char idstr[ID_STR_LEN + 1], date[64];
	id_format(id, idstr);
	time_rfc5322(time_now_ms() / 1000, date, sizeof date);
	struct evbuffer *t = evbuffer_new();
	evbuffer_add_printf(t, "Received: from api ([%s])\r\n\tby %s (relevo) with HTTP id %s",
			    c->client, c->h->conf->hostname, idstr);
	if (m->nrcpt == 1)
		evbuffer_add_printf(t, "\r\n\tfor <%s>", m->rcpt[0]);
	evbuffer_add_printf(t, ";\r\n\t%s\r\n", date);
	evbuffer_prepend_buffer(m->msg, t);
	evbuffer_free(t);
}

/* msg_sign - DKIM-sign as the From domain; false after a 503. */
static bool msg_sign(struct http_call *c, uint64_t id, const struct http_mime_msg *m)
{
	char *sig = NULL, idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	struct dkim_sign_status st;
	enum rc rc = dkim_cache_sign(c->h->dkim, m->from_domain, m->msg, &sig, &st);
	if (rc == RC_IO) {
		log_err("id=%s event=dkim_unavailable domain=%s source=api reason=key_unreadable "
			"action=tempfail", idstr, m->from_domain);
		http_error(c->req, 503, "dkim_key_unreadable",
			   "cannot sign mail for %s: its DKIM signing key cannot be read right "
			   "now, try again later", m->from_domain);
		return false;
	}
	if (rc == RC_NOTFOUND) {
		bool send = c->h->conf->dkim.missing_key == CONF_DKIM_MISSING_SEND;
		log_msg(send ? LOG_LV_WARN : LOG_LV_ERR,
			"id=%s event=dkim_no_key domain=%s source=api action=%s hint=\"%s %s\"",
			idstr, m->from_domain, send ? "sent_unsigned" : "tempfail",
			st.registered ? "relevo domain activate" : "relevo domain add",
			m->from_domain);
		if (!send && st.registered)
			http_error(c->req, 503, "dkim_key_missing",
				   "cannot sign mail for %s: it has no active DKIM key yet (its new "
				   "key waits for activation)", m->from_domain);
		else if (!send)
			http_error(c->req, 503, "dkim_key_missing",
				   "cannot sign mail for %s: no DKIM key for the domain (the operator "
				   "must run: relevo domain add %s)", m->from_domain, m->from_domain);
		return send;
	}
	if (rc != RC_OK) {
		log_err("id=%s event=dkim_sign_failed domain=%s source=api rc=%s", idstr,
			m->from_domain, rc_name(rc));
		http_error(c->req, 503, "dkim_failed",
			   "cannot sign mail for %s right now, try again later", m->from_domain);
		return false;
	}
	evbuffer_prepend(m->msg, sig, strlen(sig));
	free(sig);
	return true;
}

/* msg_suppress - split m's recipients into p's accepted and suppressed lists;
 * false after a 503. */
static bool msg_suppress(struct http_call *c, const struct http_mime_msg *m,
			 struct http_pending *p)
{
	p->rcpt = xcalloc(m->nrcpt, sizeof *p->rcpt);
	p->suppressed = xcalloc(m->nrcpt, sizeof *p->suppressed);
	for (size_t i = 0; i < m->nrcpt; i++) {
		enum rc rc = store_suppression_check(c->h->store, c->user->name, m->rcpt[i]);
		if (rc == RC_OK) {
			p->suppressed[p->nsuppressed++] = xstrdup(m->rcpt[i]);
		} else if (rc == RC_NOTFOUND) {
			p->rcpt[p->nrcpt++] = xstrdup(m->rcpt[i]);
		} else {
			log_err("event=suppression_check_failed user=%s rc=%s", c->user->name,
				rc_name(rc));
			http_error(c->req, 503, "unavailable",
				   "cannot check the suppression list right now, try again later");
			return false;
		}
	}
	return true;
}

static struct spool_env *msg_envelope(struct http_call *c, const struct http_pending *p,
				      const struct http_mime_msg *m)
{
	struct spool_env *env = xcalloc(1, sizeof *env);
	env->id = p->msgid;
	env->created = p->created;
	env->sender = xstrdup(m->from);
	env->user = xstrdup(c->user->name);
	env->client = xstrdup(c->client);
	env->helo = xstrdup("api");
	env->flags = SPOOL_F_API | (m->bulk ? SPOOL_F_BULK : 0) |
		     (c->user->sandbox ? SPOOL_F_SANDBOX : 0);
	env->nrcpt = p->nrcpt;
	env->rcpt = xcalloc(p->nrcpt, sizeof *env->rcpt);
	for (size_t i = 0; i < p->nrcpt; i++)
		env->rcpt[i].addr = xstrdup(p->rcpt[i]);
	env->body_size = evbuffer_get_length(m->msg);
	return env;
}

/* msg_queue - everything after the checks: sign, commit; p is taken over. */
static void msg_queue(struct http_call *c, struct http_mime_msg *m, struct http_pending *p)
{
	struct http_server *h = c->h;
	char idstr[ID_STR_LEN + 1];
	id_format(p->msgid, idstr);
	if (p->nrcpt == 0) {
		/* Nothing to send: answered at once, nothing is stored. */
		msg_emit(p, EVLOG_SUPPRESSED, p->suppressed, p->nsuppressed, 0,
			 "the recipient is on the account's suppression list");
		log_info("id=%s event=all_suppressed source=api user=%s suppressed=%zu", idstr,
			 p->user, p->nsuppressed);
		msg_reply_accepted(c->req, p);
		http_pending_free(p);
		return;
	}
	msg_add_trace(c, p->msgid, m);
	if (!msg_sign(c, p->msgid, m)) {
		http_pending_free(p);
		return;
	}
	struct spool_env *env = msg_envelope(c, p, m);
	struct evbuffer *body = m->msg;
	m->msg = NULL;
	/* The info line is "accepted", once durable; this one is for debugging. */
	log_debug("id=%s event=committing source=api sender=<%s> nrcpt=%zu size=%llu user=%s "
		  "client=%s", idstr, env->sender, env->nrcpt, (unsigned long long)env->body_size,
		  env->user, c->client);
	uint64_t cookie = http_pending_add(h, p);
	spool_commit(h->spool, env, body, h->base, msg_on_commit, h, cookie);
}

/* http_api_message_send - POST /v1/messages. */
void http_api_message_send(struct http_call *c)
{
	struct http_server *h = c->h;
	if (!http_query_only(c, no_params))
		return;
	if (h->npending >= HTTP_PENDING_MAX) {
		http_error(c->req, 503, "busy", "too many messages in flight, try again shortly");
		return;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	const char *json = len ? (const char *)evbuffer_pullup(in, -1) : "";
	struct http_mime_opts o = {
		.hostname = h->conf->hostname,
		.id = id_next(),
		.max_recipients = h->conf->smtp.max_recipients,
		.max_size = h->conf->smtp.max_message_size,
	};
	struct http_mime_msg m;
	char err[HTTP_ERROR_TEXT_MAX], text[HTTP_ERROR_TEXT_MAX];
	enum rc rc = http_mime_build(json, len, &o, &m, err, sizeof err);
	http_utf8_clean(err); /* it may quote the client, cut anywhere */
	if (rc != RC_OK) {
		msg_reject(c, rc == RC_LIMIT ? 413 : 400, m.error, err, NULL, false);
		return;
	}
	if (!policy_user_owns(c->user, m.from_domain)) {
		snprintf(text, sizeof text, "the From domain %s is not one of this account's "
			 "sending domains", m.from_domain);
		msg_reject(c, 403, "sender_domain_not_allowed", text, m.from, m.bulk);
		http_mime_msg_fini(&m);
		return;
	}
	struct http_pending *p = xcalloc(1, sizeof *p);
	p->req = c->req;
	p->msgid = o.id;
	p->created = time_now_ms();
	p->user = xstrdup(c->user->name);
	p->sender = xstrdup(m.from);
	p->bulk = m.bulk;
	if (msg_suppress(c, &m, p))
		msg_queue(c, &m, p);
	else
		http_pending_free(p);
	http_mime_msg_fini(&m);
}

/* ---- GET /v1/messages/{id} ------------------------------------------------------ */

/*
 * A message has the same members whether it is queued or finished, and so has
 * each recipient (README, "API changes in 0.3"):
 *   {"id", "status": "queued"|"finished", "sender", "created", "size", "stream",
 *    "source", "held", "sandbox", "recipients": [{"address", "state", "attempts",
 *    "next_attempt", "time", "status", "last_reply"}]}
 * What is not known is null: a finished message's size and sandbox flag (the
 * queue no longer has them), next_attempt unless the recipient waits for one,
 * last_reply before any attempt, time before its first event is stored. A
 * state is an event type's word (queued for accepted): queued, deferred,
 * delivered, bounced, expired, suppressed, ... The recipients are the queue's,
 * then those its events name that the queue does not hold (suppressed ones).
 */

/* What the message's events tell. */
struct msg_history {
	json_t *msg;		/* the answer being built */
	json_t *rcpts;		/* address (lower case) -> recipient object */
	json_t *order;		/* addresses in first-seen order */
	size_t nevents;
	int64_t last_seq;
	bool have_accepted;
};

static json_t *msg_new(const char *idstr)
{
	return json_pack("{s:s,s:s,s:n,s:n,s:n,s:n,s:n,s:b,s:n,s:[]}", "id", idstr, "status",
			 "finished", "sender", "created", "size", "stream", "source", "held", 0,
			 "sandbox", "recipients");
}

static json_t *msg_rcpt_new(const char *addr)
{
	return json_pack("{s:s,s:s,s:i,s:n,s:n,s:n,s:n}", "address", addr, "state", "queued",
			 "attempts", 0, "next_attempt", "time", "status", "last_reply");
}

/* msg_rcpt_set_reply - last_reply (taken over), and status, which repeats its own. */
static void msg_rcpt_set_reply(json_t *r, json_t *reply)
{
	json_t *st = json_object_get(reply, "status");
	json_object_set(r, "status", st ? st : json_null());
	json_object_set_new(r, "last_reply", reply);
}

/* msg_history_rcpt - mh's object for recipient addr (any case), made on first sight. */
static json_t *msg_history_rcpt(struct msg_history *mh, const char *addr)
{
	char *key = xstrdup(addr);
	str_lower(key);
	json_t *r = json_object_get(mh->rcpts, key);
	if (r == NULL) {
		r = msg_rcpt_new(addr);
		json_object_set_new(mh->rcpts, key, r);
		json_array_append_new(mh->order, json_string(key));
	}
	free(key);
	return r;
}

static bool msg_on_event(void *arg, const struct evlog_event *ev)
{
	struct msg_history *mh = arg;
	mh->nevents++;
	mh->last_seq = ev->seq;
	if (json_is_null(json_object_get(mh->msg, "sender")) && ev->sender)
		json_object_set_new(mh->msg, "sender", json_string(ev->sender));
	/* created: when it was accepted; a message never queued (every recipient
	 * suppressed) has only its first event's time */
	if (!mh->have_accepted && (ev->type == EVLOG_ACCEPTED ||
				   json_is_null(json_object_get(mh->msg, "created")))) {
		json_object_set_new(mh->msg, "created", http_time_json(ev->time));
		mh->have_accepted = ev->type == EVLOG_ACCEPTED;
	}
	if (ev->stream)
		json_object_set_new(mh->msg, "stream", json_string(ev->stream));
	if (ev->source)
		json_object_set_new(mh->msg, "source", json_string(ev->source));
	if (ev->recipient == NULL || ev->type == EVLOG_REJECTED)
		return true;
	json_t *r = msg_history_rcpt(mh, ev->recipient);
	json_object_set_new(r, "state", json_string(ev->type == EVLOG_ACCEPTED
							? "queued" : evlog_type_name(ev->type)));
	json_object_set_new(r, "time", http_time_json(ev->time));
	if (ev->attempts)
		json_object_set_new(r, "attempts", json_integer(ev->attempts));
	if (ev->status || ev->remote || ev->reply)
		msg_rcpt_set_reply(r, http_last_reply(ev->status, ev->remote, ev->reply));
	return true;
}

/* msg_history_read - the message's events into mh; false if the store failed. */
static bool msg_history_read(struct http_call *c, uint64_t id, struct msg_history *mh)
{
	struct store_event_filter f = {.user = c->user->name, .msgid = id, .type = -1,
				       .limit = HTTP_LIMIT_MAX};
	enum rc rc = RC_OK;
	for (;;) {
		size_t before = mh->nevents;
		f.cursor = mh->last_seq;
		rc = store_events_query(c->h->store, &f, msg_on_event, mh);
		if (rc != RC_OK || mh->nevents - before < HTTP_LIMIT_MAX ||
		    mh->nevents >= MSG_EVENTS_MAX)
			break;
	}
	return rc == RC_OK;
}

/* msg_spool_state - a queued message's recipient state, in the events' words. */
static const char *msg_spool_state(const struct spool_rcpt *r, json_t *reply)
{
	const char *st = json_string_value(json_object_get(reply, "status"));
	switch (r->state) {
	case SPOOL_RCPT_QUEUED:
		return r->attempts ? "deferred" : "queued";
	case SPOOL_RCPT_DELIVERED:
		return "delivered";
	default: /* failed: a 4.x.x status is a temporary failure that ran out of time */
		return st && st[0] == '4' ? "expired" : "bounced";
	}
}

/* msg_from_spool - the queued message: the envelope and recipient states are the
 * spool's, the times of the recipients' last events mh's. */
static void msg_from_spool(json_t *m, const struct spool_env *env, struct msg_history *mh)
{
	json_object_set_new(m, "status", json_string("queued"));
	json_object_set_new(m, "sender", json_string(env->sender));
	json_object_set_new(m, "created", http_time_json(env->created));
	json_object_set_new(m, "size", json_integer((json_int_t)env->body_size));
	json_object_set_new(m, "stream", json_string(evlog_stream_name(env->flags & SPOOL_F_BULK)));
	json_object_set_new(m, "source", json_string((env->flags & SPOOL_F_API) ? "api" : "smtp"));
	json_object_set_new(m, "held", json_boolean(env->flags & SPOOL_F_HELD));
	json_object_set_new(m, "sandbox", json_boolean(env->flags & SPOOL_F_SANDBOX));
	json_t *list = json_object_get(m, "recipients");
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *sr = &env->rcpt[i];
		json_t *r = msg_rcpt_new(sr->addr), *reply = http_last_reply_stored(sr->last_reply);
		json_object_set_new(r, "state", json_string(msg_spool_state(sr, reply)));
		json_object_set_new(r, "attempts", json_integer(sr->attempts));
		if (sr->state == SPOOL_RCPT_QUEUED && sr->next_attempt)
			json_object_set_new(r, "next_attempt", http_time_json(sr->next_attempt));
		msg_rcpt_set_reply(r, reply);
		char *key = xstrdup(sr->addr);
		str_lower(key);
		json_t *h = json_object_get(mh->rcpts, key);
		if (h)
			json_object_set(r, "time", json_object_get(h, "time"));
		json_object_del(mh->rcpts, key);	/* left: those only the events know */
		free(key);
		json_array_append_new(list, r);
	}
}

/*
 * msg_from_final - a message that has just finished: its events may still be on
 * their way to the store (the sink stores them in batches, after the spool has
 * made the outcome durable), so each recipient's state, attempts and last reply
 * are those of the spool's final record, whatever the events say so far. The
 * rest (status "finished", the members a finished message leaves null, times)
 * is as the events alone would give once stored.
 */
static void msg_from_final(json_t *m, const struct spool_env *env, struct msg_history *mh)
{
	if (json_is_null(json_object_get(m, "sender")))
		json_object_set_new(m, "sender", json_string(env->sender));
	if (json_is_null(json_object_get(m, "created")))
		json_object_set_new(m, "created", http_time_json(env->created));
	json_object_set_new(m, "stream", json_string(evlog_stream_name(env->flags & SPOOL_F_BULK)));
	json_object_set_new(m, "source", json_string((env->flags & SPOOL_F_API) ? "api" : "smtp"));
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *sr = &env->rcpt[i];
		json_t *r = msg_history_rcpt(mh, sr->addr);
		json_t *reply = http_last_reply_stored(sr->last_reply);
		json_object_set_new(r, "state", json_string(msg_spool_state(sr, reply)));
		json_object_set_new(r, "attempts", json_integer(sr->attempts));
		json_object_set_new(r, "next_attempt", json_null());
		msg_rcpt_set_reply(r, reply);
	}
}

/* msg_add_history - the recipients of mh (in first-seen order) not yet listed. */
static void msg_add_history(json_t *m, struct msg_history *mh)
{
	json_t *list = json_object_get(m, "recipients"), *k;
	size_t i;
	json_array_foreach(mh->order, i, k) {
		json_t *r = json_object_get(mh->rcpts, json_string_value(k));
		if (r)
			json_array_append(list, r);
	}
}

/* http_api_message_get - GET /v1/messages/{id}. */
void http_api_message_get(struct http_call *c)
{
	uint64_t id;
	if (!http_query_only(c, no_params))
		return;
	if (!id_parse(c->tail, &id)) {
		http_error(c->req, 404, "not_found", "no message with id \"%.40s\" (ids are 16 "
			   "hex digits)", c->tail);
		return;
	}
	char idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	struct msg_history mh = {.msg = msg_new(idstr), .rcpts = json_object(),
				 .order = json_array()};
	bool read = msg_history_read(c, id, &mh);
	struct spool_env *env = NULL;
	bool queued = spool_get(c->h->spool, id, &env) == RC_OK && env->user &&
		      strcmp(env->user, c->user->name) == 0;
	if (queued)
		msg_from_spool(mh.msg, env, &mh);
	spool_env_free(env);
	env = NULL;
	bool final = !queued && read && spool_get_final(c->h->spool, id, &env) == RC_OK &&
		     env->user && strcmp(env->user, c->user->name) == 0;
	if (final)
		msg_from_final(mh.msg, env, &mh);
	spool_env_free(env);
	if (queued || final || (read && mh.nevents > 0)) {
		msg_add_history(mh.msg, &mh);
		http_reply_json(c->req, 200, json_incref(mh.msg));
	} else if (!read) {
		http_error(c->req, 503, "unavailable", "cannot read events right now, try again");
	} else {
		http_error(c->req, 404, "not_found", "no message %s", c->tail);
	}
	json_decref(mh.msg);
	json_decref(mh.rcpts);
	json_decref(mh.order);
}
