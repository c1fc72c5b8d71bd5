/*
 * http_api_messages.c - POST /v1/messages (send) and GET /v1/messages/{id}.
 *
 * Sending: the JSON becomes a MIME message (http_mime_build); a request that
 * cannot (400, 413) is refused here with one EVLOG_REJECTED event. The message
 * then goes through the intake (src/intake/: the From domain must be the
 * account's, suppressed recipients are left out, the Received field, DKIM, the
 * durable commit, the events), as SMTP's do. 202 is sent only from the
 * intake's completion with RC_OK: never before the message is durable; its
 * refusals are answered with intake_http_status (403, 400, 413, 503) and their
 * reason as the error code.
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

#include "intake/intake.h"
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

static void msg_reply_accepted(struct evhttp_request *req, const struct intake_result *res)
{
	char idstr[ID_STR_LEN + 1], loc[64];
	id_format(res->msgid, idstr);
	snprintf(loc, sizeof loc, "/v1/messages/%s", idstr);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
	http_reply_json(req, 202,
			json_pack("{s:s,s:o,s:o}", "id", idstr, "accepted",
				  msg_list_json(res->accepted, res->naccepted), "suppressed",
				  msg_list_json(res->suppressed, res->nsuppressed)));
}

/* msg_on_intake - the intake's answer: 202 once durable (or nothing left to
 * queue), else the refusal's status. */
static void msg_on_intake(void *ctx, uint64_t cookie, const struct intake_result *res)
{
	struct http_server *h = ctx;
	char idstr[ID_STR_LEN + 1];
	id_format(res->msgid, idstr);
	struct http_pending *p = http_pending_take(h, cookie);
	if (p == NULL) {
		log_err("id=%s event=intake_done reason=%s note=unknown_cookie", idstr, res->reason);
		return;
	}
	if (p->req == NULL)
		log_info("id=%s event=intake_done source=api reason=%s note=client_gone", idstr,
			 res->reason);
	else if (res->rc == RC_OK)
		msg_reply_accepted(p->req, res);
	else
		http_error(p->req, intake_http_status(res), res->reason, "%s", res->text);
	http_pending_free(p);
	http_server_idle(h);
}

/* msg_intake - the request as the intake takes it: every recipient, the MIME
 * message built from the JSON (m's buffer is taken over). */
static void msg_intake(struct http_call *c, struct http_mime_msg *m, uint64_t id,
		       struct intake_msg *im)
{
	struct spool_env *env = xcalloc(1, sizeof *env);
	env->id = id;
	env->created = time_now_ms();
	env->sender = xstrdup(m->from);
	env->user = xstrdup(c->user->name);
	env->client = xstrdup(c->client);
	env->helo = xstrdup("api");
	env->flags = SPOOL_F_API | (m->bulk ? SPOOL_F_BULK : 0) |
		     (c->user->sandbox ? SPOOL_F_SANDBOX : 0);
	env->nrcpt = m->nrcpt;
	env->rcpt = xcalloc(m->nrcpt, sizeof *env->rcpt);
	for (size_t i = 0; i < m->nrcpt; i++)
		env->rcpt[i].addr = xstrdup(m->rcpt[i]);
	char from[HTTP_CLIENT_MAX + 8];
	snprintf(from, sizeof from, "api ([%s])", c->client);
	*im = (struct intake_msg){
		.env = env,
		.body = m->msg,
		.source = "api",
		.conf = c->h->conf,
		.account = c->user,
		.trace = {.from = xstrdup(from), .with = xstrdup("HTTP")},
		/* http_mime_build wrote one From:, a Date: and a Message-ID: */
		.has_date = true,
		.has_message_id = true,
		.from_fields = 1,
		.nfrom = 1,
	};
	str_lcpy(im->from_domain[0], m->from_domain, sizeof im->from_domain[0]);
	m->msg = NULL;
}

/* http_api_message_send - POST /v1/messages: the JSON becomes a MIME message,
 * then the intake has it; answered from msg_on_intake. */
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
	char err[HTTP_ERROR_TEXT_MAX];
	enum rc rc = http_mime_build(json, len, &o, &m, err, sizeof err);
	http_utf8_clean(err); /* it may quote the client, cut anywhere */
	if (rc != RC_OK) {
		msg_reject(c, rc == RC_LIMIT ? 413 : 400, m.error, err, NULL, false);
		return;
	}
	struct intake_msg im;
	msg_intake(c, &m, o.id, &im);
	http_mime_msg_fini(&m);
	struct http_pending *p = xcalloc(1, sizeof *p);
	p->req = c->req;
	uint64_t cookie = http_pending_add(h, p);
	intake_submit(h->intake, &im, h->base, msg_on_intake, h, cookie);
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
