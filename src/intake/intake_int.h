/*
 * intake_int.h - the intake's insides: the context, one message's job and the
 * stage functions (intake_stage.c, intake_sign.c) that intake.c runs in order.
 */
#ifndef RELEVO_INTAKE_INT_H
#define RELEVO_INTAKE_INT_H

#include "intake/intake.h"

#include "dkim/dkim.h"

struct workq;

struct intake {
	struct store *store;		/* not owned */
	struct spool *spool;		/* not owned */
	struct dkim_cache *dkim;	/* not owned */
	struct workq *wq;		/* owned: the blocking stages */
};

/* What a stage says. */
enum intake_verdict {
	INTAKE_NEXT,	/* accepted: the next stage runs */
	INTAKE_WAIT,	/* it started something that calls intake_resume */
	INTAKE_STOP	/* finished: j->res says how (a refusal, or nothing to queue) */
};

/* One message on its way; owned by the intake from intake_submit to its
 * completion. */
struct intake_job {
	struct intake *in;
	struct intake_msg m;		/* the message (owned) */
	struct event_base *base;	/* the submitter's loop: stages and cb run there */
	intake_done_cb cb;
	void *ctx;
	uint64_t cookie;
	size_t stage;			/* the stage running or next */
	bool worked;			/* the stage's off-loop part has run */
	char idstr[ID_STR_LEN + 1];
	size_t nrcpt_given;		/* recipients before the suppression split */
	/* suppression: found off the loop, one flag per given recipient */
	bool *is_suppressed;
	enum rc lookup_rc;
	char **accepted, **suppressed;	/* owned copies for the result */
	size_t naccepted, nsuppressed;
	/* sign: the domain, and what the work queue made */
	char sign_as[INTAKE_DOMAIN_MAX + 1];
	struct dkim_keyset *keys;	/* a reference, from dkim_cache_lookup */
	bool keys_waiting;		/* the lookup answers later: resume then */
	char *sig;
	enum rc sign_rc;
	struct dkim_sign_status sign_st;
	/* the answer */
	struct intake_result res;
	char text[INTAKE_TEXT_MAX];
};

/* intake_refuse - set j's answer to a refusal (text formatted) and say STOP. */
enum intake_verdict intake_refuse(struct intake_job *j, enum rc rc, int code, const char *enh,
				  const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* intake_log_sid - " sid=..." for j's log lines, or "" (buf holds it). */
const char *intake_log_sid(const struct intake_job *j, char *buf, size_t bufsz);
/* intake_resume - a stage that said INTAKE_WAIT is done: run the next ones. */
void intake_resume(struct intake_job *j);
/* intake_emit_suppressed - one "suppressed" event (and log line) a recipient
 * left out; when is the events' time (0: now). */
void intake_emit_suppressed(struct intake_job *j, int64_t when);
/* intake_user - the account's name for logs and events, or NULL. */
const char *intake_user(const struct intake_job *j);

/* The stages, in the order they run (intake.c holds the table). */
enum intake_verdict intake_check_content(struct intake_job *j);
enum intake_verdict intake_check_policy(struct intake_job *j);
bool intake_suppression_waits(const struct intake_job *j);
void intake_suppression_lookup(struct intake_job *j);
enum intake_verdict intake_split_suppressed(struct intake_job *j);
enum intake_verdict intake_fix_submission(struct intake_job *j);
enum intake_verdict intake_add_trace(struct intake_job *j);
void intake_sign_domain(struct intake_job *j);
enum intake_verdict intake_find_keys(struct intake_job *j);
bool intake_sign_waits(const struct intake_job *j);
void intake_sign_make(struct intake_job *j);
enum intake_verdict intake_sign_dkim(struct intake_job *j);

#endif
