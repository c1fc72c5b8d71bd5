/*
 * intake.c - the driver of the intake: the stage table, running a message
 * through it without blocking its loop, the durable commit, the submission
 * events and the one completion (see intake.h for the stages and the rules).
 *
 * A stage is { name, waits, work, run }. When waits(j) says so, work(j) runs on
 * the intake's work queue first (it only does the blocking call and stores what
 * it found in j); run(j) then decides on the submitter's loop. The commit stage
 * waits for the spool writer instead. A later stage that answers
 * asynchronously (a filter over a socket) returns INTAKE_WAIT and calls
 * intake_resume when its answer comes.
 *
 * Crash ordering: the "suppressed" events are emitted from the commit's
 * completion with RC_OK only, and the "accepted" ones by the spool's accept
 * hook, on the writer thread once the records are on disk: a commit that fails
 * leaves no event of a message that does not exist. A message with no recipient
 * left is not committed; its "suppressed" events are its only trace.
 *
 * Failure model: a store error (the suppression lookup) or a full work queue is
 * a temporary failure; the spool's RC_IO too; RC_LIMIT (too large to store) is
 * permanent. The completion always runs exactly once, on the submitter's loop,
 * after intake_submit has returned.
 */
#include "intake/intake_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "spool/spool.h"

struct intake_stage {
	const char *name;
	bool (*waits)(const struct intake_job *j);	/* work(j) first? NULL: never */
	void (*work)(struct intake_job *j);		/* on the work queue */
	enum intake_verdict (*run)(struct intake_job *j); /* on the loop */
};

static enum intake_verdict intake_commit(struct intake_job *j);

/* The path of a message, in order. Later stages (the stream's headers, tracking
 * rewrites, unsubscribe headers, filter hooks) go between trace and sign: the
 * signature covers what is sent, so signing is the last transformation. */
static const struct intake_stage intake_stages[] = {
	{"content", NULL, NULL, intake_check_content},
	{"policy", NULL, NULL, intake_check_policy},
	{"suppression", intake_suppression_waits, intake_suppression_lookup,
	 intake_split_suppressed},
	{"fixups", NULL, NULL, intake_fix_submission},
	{"trace", NULL, NULL, intake_add_trace},
	{"keys", NULL, NULL, intake_find_keys},
	{"sign", intake_sign_waits, intake_sign_make, intake_sign_dkim},
	{"commit", NULL, NULL, intake_commit},
};

static void intake_run(struct intake_job *j);

/* intake_new - see intake.h. */
struct intake *intake_new(struct store *st, struct spool *sp, struct dkim_cache *dkim)
{
	struct intake *in = xcalloc(1, sizeof *in);
	in->store = st;
	in->spool = sp;
	in->dkim = dkim;
	in->wq = workq_new(INTAKE_THREADS, INTAKE_JOBS_MAX);
	return in;
}

/* intake_free - see intake.h. */
void intake_free(struct intake *in)
{
	if (in == NULL)
		return;
	workq_free(in->wq);
	free(in);
}

static void intake_trace_fini(struct intake_trace *t)
{
	free(t->from);
	free(t->with);
	free(t->tls);
	t->from = t->with = t->tls = NULL;
}

/* intake_msg_fini - see intake.h. */
void intake_msg_fini(struct intake_msg *m)
{
	spool_env_free(m->env);
	if (m->body)
		evbuffer_free(m->body);
	intake_trace_fini(&m->trace);
	conf_unref(m->conf);
	m->env = NULL;
	m->body = NULL;
	m->conf = NULL;
}

static void intake_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void intake_job_free(struct intake_job *j)
{
	intake_msg_fini(&j->m);
	free(j->is_suppressed);
	intake_strv_free(j->accepted, j->naccepted);
	intake_strv_free(j->suppressed, j->nsuppressed);
	free(j->sig);
	dkim_keyset_unref(j->keys);
	free(j);
}

/* intake_log_sid - see intake_int.h. */
const char *intake_log_sid(const struct intake_job *j, char *buf, size_t bufsz)
{
	if (j->m.sid == 0)
		return "";
	snprintf(buf, bufsz, " sid=%016llx", (unsigned long long)j->m.sid);
	return buf;
}

/* intake_user - see intake_int.h. */
const char *intake_user(const struct intake_job *j)
{
	return j->m.env->user;
}

static bool intake_is_api(const struct intake_job *j)
{
	return strcmp(j->m.source, "api") == 0;
}

static bool intake_is_bulk(const struct intake_job *j)
{
	return (j->m.env->flags & SPOOL_F_BULK) != 0;
}

/* intake_emit_rejected - the "rejected" event of a refusal, as the source words
 * it (SMTP: the reply line; API: its text), and the refusal counter. */
static void intake_emit_rejected(struct intake_job *j)
{
	const struct intake_result *r = &j->res;
	bool api = intake_is_api(j);
	char reply[INTAKE_TEXT_MAX + 32];
	if (api)
		snprintf(reply, sizeof reply, "%s", r->text);
	else
		snprintf(reply, sizeof reply, "%d %s %s", r->code, r->enh, r->text);
	struct evlog_event ev = {
		.type = EVLOG_REJECTED,
		.sender = j->m.env->sender,
		.user = (char *)intake_user(j),
		.stream = evlog_stream_name(intake_is_bulk(j)),
		.source = (char *)j->m.source,
		.status = (char *)r->enh,
		.reply = reply,
	};
	evlog_emit(&ev);
	metrics_rejected(api, api ? intake_http_status(r) : r->code);
}

/* intake_emit_suppressed - see intake_int.h. */
void intake_emit_suppressed(struct intake_job *j, int64_t when)
{
	char sid[32];
	for (size_t i = 0; i < j->nsuppressed; i++) {
		log_info("id=%s%s event=suppressed source=%s rcpt=<%s> user=%s", j->idstr,
			 intake_log_sid(j, sid, sizeof sid), j->m.source, j->suppressed[i],
			 intake_user(j) ? intake_user(j) : "-");
		struct evlog_event ev = {
			.time = when,
			.type = EVLOG_SUPPRESSED,
			.msgid = j->m.env->id,
			.recipient = j->suppressed[i],
			.sender = j->m.env->sender,
			.user = (char *)intake_user(j),
			.stream = evlog_stream_name(intake_is_bulk(j)),
			.source = (char *)j->m.source,
			.reply = "the recipient is on the account's suppression list",
		};
		evlog_emit(&ev);
	}
}

/* intake_refuse - see intake_int.h. */
enum intake_verdict intake_refuse(struct intake_job *j, enum rc rc, int code, const char *enh,
				  const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->text, sizeof j->text, fmt, ap);
	va_end(ap);
	j->res.rc = rc;
	j->res.code = code;
	j->res.enh = enh;
	j->res.reason = reason;
	j->res.text = j->text;
	return INTAKE_STOP;
}

/* intake_complete - the one completion: the result to the submitter, then free. */
static void intake_complete(struct intake_job *j)
{
	j->res.msgid = j->m.env->id;
	j->res.accepted = j->accepted;
	j->res.naccepted = j->naccepted;
	j->res.suppressed = j->suppressed;
	j->res.nsuppressed = j->nsuppressed;
	j->cb(j->ctx, j->cookie, &j->res);
	intake_job_free(j);
}

static void intake_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	intake_complete(arg);
}

/* intake_stop - a stage finished the message on the loop (refusal, or nothing
 * to queue): record a refusal, and complete on the next turn of the loop, so
 * that the completion never runs inside intake_submit. */
static void intake_stop(struct intake_job *j)
{
	char sid[32];
	if (j->res.rc != RC_OK) {
		log_info("id=%s%s event=rejected source=%s stage=%s reason=%s code=%d enh=%s "
			 "user=%s", j->idstr, intake_log_sid(j, sid, sizeof sid), j->m.source,
			 intake_stages[j->stage].name, j->res.reason, j->res.code, j->res.enh,
			 intake_user(j) ? intake_user(j) : "-");
		intake_emit_rejected(j);
	}
	if (event_base_once(j->base, -1, EV_TIMEOUT, intake_on_deferred, j, NULL) != 0)
		fatal("event=event_base_once_failed where=intake_stop");
}

static void intake_on_work(void *arg)
{
	struct intake_job *j = arg;
	intake_stages[j->stage].work(j);
}

static void intake_on_worked(void *arg)
{
	struct intake_job *j = arg;
	j->worked = true;
	intake_run(j);
}

/* intake_run - run the stages from j->stage until one waits or the last is done. */
static void intake_run(struct intake_job *j)
{
	while (j->stage < ARRAY_LEN(intake_stages)) {
		const struct intake_stage *st = &intake_stages[j->stage];
		if (!j->worked && st->waits && st->waits(j)) {
			if (workq_submit(j->in->wq, j->base, intake_on_work, intake_on_worked, j) ==
			    RC_OK)
				return;
			intake_refuse(j, RC_TEMPFAIL, 451, "4.3.2", "busy",
				      "Too many messages in progress, try again shortly");
			intake_stop(j);
			return;
		}
		j->worked = false;
		enum intake_verdict v = st->run(j);
		if (v == INTAKE_WAIT)
			return;
		if (v == INTAKE_STOP) {
			intake_stop(j);
			return;
		}
		j->stage++;
	}
	intake_complete(j);
}

/* intake_resume - see intake_int.h. */
void intake_resume(struct intake_job *j)
{
	j->stage++;
	intake_run(j);
}

/* intake_submit - see intake.h. */
void intake_submit(struct intake *in, struct intake_msg *m, struct event_base *base,
		   intake_done_cb cb, void *ctx, uint64_t cookie)
{
	struct intake_job *j = xcalloc(1, sizeof *j);
	j->in = in;
	j->m = *m;
	memset(m, 0, sizeof *m);
	j->m.conf = conf_ref(j->m.conf);
	j->base = base;
	j->cb = cb;
	j->ctx = ctx;
	j->cookie = cookie;
	if (j->m.env->id == 0)
		j->m.env->id = id_next();
	if (j->m.env->created == 0)
		j->m.env->created = time_now_ms();
	id_format(j->m.env->id, j->idstr);
	j->nrcpt_given = j->m.env->nrcpt;
	intake_sign_domain(j);
	intake_run(j);
	/* The account was lent to the stages that ran synchronously (policy); j
	 * lives on here: its completion never runs inside this call. */
	j->m.account = NULL;
}

/* ---- commit and events ------------------------------------------------------------ */

/* intake_on_commit - the spool's answer. cookie is the job (owned by the intake
 * until its completion, so it cannot be freed meanwhile). */
static void intake_on_commit(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct intake_job *j = (struct intake_job *)(uintptr_t)cookie;
	char sid[32];
	(void)ctx;
	(void)msgid;
	if (rc != RC_OK) {
		log_err("id=%s%s event=commit_failed source=%s user=%s rc=%s", j->idstr,
			intake_log_sid(j, sid, sizeof sid), j->m.source,
			intake_user(j) ? intake_user(j) : "-", rc_name(rc));
		if (rc == RC_LIMIT)
			intake_refuse(j, RC_PERMFAIL, 552, "5.3.4", "too_large",
				      "The message is too large to store");
		else
			intake_refuse(j, RC_TEMPFAIL, 451, "4.3.0", "unavailable",
				      "Temporary failure storing the message, try again");
		intake_complete(j);
		return;
	}
	/* Durable: now the events ("accepted" came from the spool's accept hook). */
	metrics_inc(intake_is_api(j) ? METRICS_RECEIVED_API : METRICS_RECEIVED_SMTP);
	intake_emit_suppressed(j, j->m.env->created);
	log_info("id=%s%s event=accepted source=%s sender=<%s> nrcpt=%zu suppressed=%zu "
		 "size=%llu user=%s", j->idstr, intake_log_sid(j, sid, sizeof sid), j->m.source,
		 j->m.env->sender, j->naccepted, j->nsuppressed,
		 (unsigned long long)j->m.env->body_size, intake_user(j) ? intake_user(j) : "-");
	snprintf(j->text, sizeof j->text, "queued as %s", j->idstr);
	j->res = (struct intake_result){.rc = RC_OK, .code = 250, .enh = "2.0.0",
					.reason = "queued", .text = j->text};
	intake_complete(j);
}

/* intake_env_keep - what the events need of env once the spool has it: no
 * recipients (those are j->accepted), so a message costs one copy of them. */
static struct spool_env *intake_env_keep(const struct spool_env *env)
{
	struct spool_env *k = xcalloc(1, sizeof *k);
	k->id = env->id;
	k->created = env->created;
	k->sender = xstrdup(env->sender);
	k->user = env->user ? xstrdup(env->user) : NULL;
	k->flags = env->flags;
	k->body_size = env->body_size;
	return k;
}

/* intake_commit - the last stage: hand the message to the spool writer and wait
 * until it is on disk. */
static enum intake_verdict intake_commit(struct intake_job *j)
{
	char sid[32];
	struct spool_env *env = j->m.env;
	env->body_size = evbuffer_get_length(j->m.body);
	j->m.env = intake_env_keep(env);
	struct evbuffer *body = j->m.body;
	j->m.body = NULL;
	/* The info line is "accepted", once durable; this one is for debugging. */
	log_debug("id=%s%s event=committing source=%s sender=<%s> nrcpt=%zu size=%llu "
		  "client=%s", j->idstr, intake_log_sid(j, sid, sizeof sid), j->m.source,
		  env->sender, env->nrcpt, (unsigned long long)env->body_size,
		  env->client ? env->client : "-");
	spool_commit(j->in->spool, env, body, j->base, intake_on_commit, j->in,
		     (uint64_t)(uintptr_t)j);
	return INTAKE_WAIT; /* the commit's completion ends the job, no resume */
}

/* intake_http_status - see intake.h. */
int intake_http_status(const struct intake_result *res)
{
	if (res->rc == RC_OK)
		return 202;
	if (res->rc == RC_TEMPFAIL)
		return 503;
	if (res->code == 552)
		return 413;
	return strncmp(res->enh, "5.7.", 4) == 0 ? 403 : 400;
}
