/*
 * intake.h - one path for every way mail comes in: from "envelope and content
 * received, sender authenticated" to "durable, or refused".
 *
 * A protocol (SMTP end of DATA/BDAT, the HTTP API; `relevo sendmail` through
 * the local SMTP listener) fills a struct intake_msg and calls intake_submit.
 * The intake runs its stages in order (intake.c, the stage table):
 *
 *   content      the header checks that are about the message (loops, one From:)
 *   policy       every From: domain is the account's
 *   suppression  one batched lookup of the account's suppression list, off the
 *                loop; suppressed recipients are split out of the envelope
 *   fixups       RFC 6409 8: Date and Message-ID when missing
 *   trace        the Received field, on top
 *                (later: the stream's headers, tracking rewrites, unsubscribe
 *                headers, filter hooks, each a stage of its own here)
 *   keys         the signing keys, from the key cache's asynchronous lookup
 *   sign         DKIM, the last transformation; off the loop
 *   commit       spool_commit: the message is durable, or not
 *   events       "suppressed" events, only once the commit is durable ("accepted"
 *                ones come from the spool's accept hook, also after it)
 *
 * Each stage accepts (the next one runs), refuses (permanent or temporary, with
 * an SMTP code, an enhanced status code and a text), or waits (for the work
 * queue or the disk) and resumes on the caller's event loop. The caller's loop
 * never blocks: it gets one completion, intake_done_cb, on the event base it
 * passed, and answers its client from there (250/451/5xx, 202/4xx/503).
 *
 * The three rules every intake keeps (docs/decisions.md): a store error is a
 * temporary failure (451 4.3.0, HTTP 503, sendmail exit 75); events follow the
 * durable commit (a failed commit leaves none); nothing is signed for a message
 * that will not be queued (every recipient suppressed).
 *
 * Ownership: intake_submit takes over the message's envelope, body and strings;
 * the completion's result is valid during the callback only. The completion
 * finds its session or request by cookie and must cope with it being gone; the
 * message is committed (or refused) either way.
 *
 * Threads: intake_submit and the completion run on the caller's loop; the
 * blocking stages (suppression, sign) run on the intake's work queue. One
 * struct intake may serve several loops (the SMTP workers).
 */
#ifndef RELEVO_INTAKE_H
#define RELEVO_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct conf;
struct dkim_cache;
struct event_base;
struct evbuffer;
struct spool;
struct spool_env;
struct store;
struct store_user;

#define INTAKE_FROM_MAX	  16	/* From: addresses checked, as smtp_hdr_info holds */
#define INTAKE_DOMAIN_MAX 255	/* RFC 1035 2.3.4 */
#define INTAKE_TEXT_MAX	  512	/* a refusal's text */

/*
 * Memory bound: at most INTAKE_JOBS_MAX messages wait for the work queue at
 * once (more are refused 451 4.3.2, try again). A waiting message holds its
 * body (already counted by its protocol: smtp.memory_budget, the API's body
 * limit), its envelope (at most smtp.max_recipients addresses of at most 320
 * octets) and one byte a recipient for the suppression answer.
 */
#define INTAKE_JOBS_MAX	    1024
#define INTAKE_THREADS	    2

/* How the Received field describes the submission (strings owned). */
struct intake_trace {
	char *from;		/* "helo ([192.0.2.1])", "api ([::1])"; NULL: local */
	char *with;		/* "ESMTPSA", "HTTP"; NULL with from NULL */
	char *tls;		/* "(using TLSv1.3 with cipher ...)" or NULL */
	long local_uid;		/* the local submitter when from is NULL */
};

/* What a protocol hands over. intake_submit takes over every pointer but
 * account. */
struct intake_msg {
	struct spool_env *env;	/* every recipient; id 0: one is assigned */
	struct evbuffer *body;	/* the whole message, CRLF line endings */
	const char *source;	/* "smtp" or "api" (static): events and logs */
	const struct conf *conf; /* the submitter's (a reference is taken) */
	uint64_t sid;		/* the SMTP session id for log lines, or 0 */
	const struct store_user *account; /* borrowed, read by intake_submit only;
					   * NULL: a relay client without one */
	struct intake_trace trace;
	/* What the protocol's header scan found. */
	bool has_date, has_message_id;
	bool from_malformed;	/* a From: that could not be parsed */
	unsigned from_fields;	/* From: fields (RFC 5322 3.6 allows one) */
	unsigned received_fields; /* trace fields: a loop when too many */
	size_t nfrom;
	char from_domain[INTAKE_FROM_MAX][INTAKE_DOMAIN_MAX + 1]; /* lower case */
};

/* The answer, valid during the completion only. */
struct intake_result {
	enum rc rc;		/* RC_OK: durable (or nothing left to queue);
				 * RC_TEMPFAIL or RC_PERMFAIL: refused */
	int code;		/* the SMTP reply: 250, 451, 550, 553, 554 */
	const char *enh;	/* its enhanced status code */
	const char *reason;	/* one word for APIs and logs: "queued",
				 * "all_suppressed", "store_unavailable",
				 * "dkim_key_missing", ... */
	const char *text;	/* the reply text */
	uint64_t msgid;
	char *const *accepted;	/* the recipients queued */
	size_t naccepted;
	char *const *suppressed; /* left out: on the account's suppression list */
	size_t nsuppressed;
};

typedef void (*intake_done_cb)(void *ctx, uint64_t cookie, const struct intake_result *res);

struct intake;

/* intake_new - an intake committing into sp, reading st, signing with keys
 * from dkim (none of which it owns; each outlives the intake). */
struct intake *intake_new(struct store *st, struct spool *sp, struct dkim_cache *dkim);
/* intake_free - wait for the work in progress (completions still run on their
 * loops if those still turn), then free. NULL is a no-op. */
void intake_free(struct intake *in);

/* intake_submit - run m through the stages; cb(ctx, cookie, result) runs once,
 * on base's thread, never before intake_submit returns. m's contents are taken
 * over (m is left empty). */
void intake_submit(struct intake *in, struct intake_msg *m, struct event_base *base,
		   intake_done_cb cb, void *ctx, uint64_t cookie);

/* intake_msg_fini - free what m still holds (a message not submitted). */
void intake_msg_fini(struct intake_msg *m);

/* intake_http_status - the HTTP status of a result: 202, 400, 403, 413, 503. */
int intake_http_status(const struct intake_result *res);

#endif
