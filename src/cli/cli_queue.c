/*
 * cli_queue.c - `relevo queue list | show | delete | hold | release | flush`:
 * one command table (queue_cmds) for the command line, the offline path and
 * the daemon's control socket.
 *
 * list and show open the spool read-only (SPOOL_RDONLY: no lock, no writes),
 * so they work the same whether or not the daemon runs (cli_queue_show.c).
 * The changing verbs need the spool lock: the CLI parses and checks its
 * arguments here, then tries spool_open(SPOOL_RDWR); when a daemon holds the
 * lock (RC_EXISTS) the same argument words go to it over the control socket,
 * and the daemon (cli_ctl.c) parses them again with this table and runs them
 * through queue_apply, the code the offline path runs. Only the side effects
 * differ: online the delivery engine is told (mta_notify / mta_flush) and
 * events go to the daemon's event stream; offline the events are written to
 * the store (and their webhook jobs queued for the daemon) once the spool is
 * closed.
 *
 * Selections: message ids, or --all with filters (--state, --from,
 * --to-domain, --user, --older-than); a filter without --all is a usage error
 * for the changing verbs, so that a typo never widens a delete. The matching
 * ids are collected first and acted on one by one (spool_foreach must not
 * call back into the spool).
 *
 * Exit status: 0 done, 1 something named was not there or failed (a held
 * message named to flush is one), 2 usage; --help anywhere answers 0.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "cli/cli.h"
#include "cli/cli_queue_int.h"
#include "conf/conf.h"
#include "core/core.h"
#include "http/http.h"
#include "mta/mta.h"
#include "spool/spool.h"
#include "store/store.h"

#define QUEUE_ARGS_MAX (QUEUE_IDS_MAX + 32) /* argument words of one command */

/* How a command takes its arguments. */
enum {
	Q_WRITE = 1 << 0,	/* changes the spool: lock or control socket */
	Q_ONE_ID = 1 << 1,	/* exactly one id */
	Q_IDS = 1 << 2,		/* ids or --all */
	Q_FILTERS = 1 << 3,	/* --state, --from, ... */
	Q_JSON = 1 << 4,
	Q_BODY = 1 << 5,
	Q_NONE_IS_ALL = 1 << 6, /* no id and no --all: every message (flush) */
};

/* A changing command's run over its messages, one at a time: each verb writes
 * one spool record; offline it waits for it, online (the control socket, on the
 * main loop) the record completes in queue_on_durable and the run goes on from
 * there, so the loop never waits for a disk. Owned by its caller offline, by
 * itself online (freed after finish ran). */
struct queue_ctx {
	struct spool *sp;
	struct mta *mta;		/* the daemon's engine; NULL offline */
	bool online;
	struct evbuffer *out, *err;	/* may be the same buffer */
	struct evlog_event **evs;	/* offline: events to store afterwards (owned) */
	size_t nevs, evcap;
	size_t done, missing, skipped;
	const char *what;		/* what the verb did, for the --all summary */
	const struct queue_cmd *cmd;
	uint64_t *ids;			/* the messages, in order (owned) */
	size_t nids, next;
	bool all, quiet;
	struct spool_env *env;		/* the message being changed (owned) */
	uint64_t cur;			/* its id */
	const char *cur_what;
	bool waiting;			/* its record completes in queue_on_durable */
	struct event_base *base;	/* online: where records complete */
	void (*finish)(void *arg, int status, struct evbuffer *out);	/* online */
	void *finish_arg;
	int status;
};

static enum rc q_delete(struct queue_ctx *qc, const struct spool_env *env, const char **what);
static enum rc q_hold(struct queue_ctx *qc, const struct spool_env *env, const char **what);
static enum rc q_release(struct queue_ctx *qc, const struct spool_env *env, const char **what);
static enum rc q_flush(struct queue_ctx *qc, const struct spool_env *env, const char **what);
static void q_delete_then(struct queue_ctx *qc, const struct spool_env *env);
static void q_hold_then(struct queue_ctx *qc, const struct spool_env *env);

static const struct queue_cmd queue_cmds[] = {
	{"list", "[--json] [FILTERS]",
	 "the queue: arrival, size, state, sender, each recipient and its last deferral",
	 Q_FILTERS | Q_JSON, NULL, NULL},
	{"show", "ID [--body]", "the envelope, the recipients' states and the headers",
	 Q_ONE_ID | Q_BODY, NULL, NULL},
	{"delete", "ID... | --all [FILTERS]",
	 "remove messages; each waiting recipient gets a 'dropped' event", Q_WRITE | Q_IDS | Q_FILTERS,
	 q_delete, q_delete_then},
	{"hold", "ID... | --all [FILTERS]", "keep messages from being attempted",
	 Q_WRITE | Q_IDS | Q_FILTERS, q_hold, q_hold_then},
	{"release", "ID... | --all [FILTERS]", "let held messages be attempted again",
	 Q_WRITE | Q_IDS | Q_FILTERS, q_release, q_hold_then},
	{"flush", "[ID... | --all [FILTERS]]", "attempt messages now (all when none is named)",
	 Q_WRITE | Q_IDS | Q_FILTERS | Q_NONE_IS_ALL, q_flush, NULL},
};

static const char *const queue_filter_help =
	"FILTERS: --state STATE (queued, deferred, held, partially-delivered,\n"
	"         bounce-pending), --from ADDRESS|DOMAIN|'<>', --to-domain DOMAIN,\n"
	"         --user ACCOUNT, --older-than DURATION (30m, 2h, 1d; s m h d w)\n";

/* cli_queue_usage - every queue subcommand's usage line, for `relevo --help`
 * (prefix before each) and `relevo queue --help`. */
void cli_queue_usage(FILE *out, const char *prefix)
{
	for (size_t i = 0; i < ARRAY_LEN(queue_cmds); i++)
		fprintf(out, "%squeue %s %s [-c FILE]\n", prefix, queue_cmds[i].name,
			queue_cmds[i].args);
}

static void queue_help(FILE *out, const struct queue_cmd *cmd)
{
	if (cmd == NULL) {
		fprintf(out, "usage: relevo queue SUBCOMMAND [ARGS] [-c FILE]\n\n");
		for (size_t i = 0; i < ARRAY_LEN(queue_cmds); i++)
			fprintf(out, "  queue %-8s %s\n           %s\n", queue_cmds[i].name,
				queue_cmds[i].args, queue_cmds[i].help);
	} else {
		fprintf(out, "usage: relevo queue %s %s [-c FILE]\n  %s\n", cmd->name, cmd->args,
			cmd->help);
	}
	if (cmd == NULL || (cmd->flags & Q_FILTERS))
		fprintf(out, "\n%s", queue_filter_help);
}

/* cli_queue_cmd_find - the table entry named name, or NULL. */
const struct queue_cmd *cli_queue_cmd_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(queue_cmds); i++)
		if (strcmp(queue_cmds[i].name, name) == 0)
			return &queue_cmds[i];
	return NULL;
}

/* ==== arguments ========================================================= */

/* queue_duration - "90", "30m", "2h", "1d", "1w" into ms; false if malformed. */
static bool queue_duration(const char *s, int64_t *ms)
{
	static const struct {
		char unit;
		int64_t ms;
	} units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}, {'w', 604800000}};
	char num[21];
	size_t n = strspn(s, "0123456789");
	int64_t mult = 1000;
	if (n == 0 || n >= sizeof num)
		return false;
	if (s[n] != '\0') {
		size_t k;
		for (k = 0; k < ARRAY_LEN(units); k++)
			if (tolower((unsigned char)s[n]) == units[k].unit && s[n + 1] == '\0')
				break;
		if (k == ARRAY_LEN(units))
			return false;
		mult = units[k].ms;
	}
	memcpy(num, s, n);
	num[n] = '\0';
	uint64_t v;
	if (!str_to_u64(num, &v) || v > (uint64_t)INT64_MAX / (uint64_t)mult)
		return false;
	*ms = (int64_t)v * mult;
	return true;
}

static bool queue_state_known(const char *s)
{
	static const char *const states[] = {"queued", "deferred", "held", "partially-delivered",
					     "bounce-pending"};
	for (size_t i = 0; i < ARRAY_LEN(states); i++)
		if (strcmp(s, states[i]) == 0)
			return true;
	return false;
}

/* queue_opt_value - the value of --name VALUE or --name=VALUE at argv[*i]. */
static const char *queue_opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0' || *i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

/* queue_parse_filter - one filter option at argv[*i]: 1 taken, 0 not a filter,
 * -1 a bad value (said in err). */
static int queue_parse_filter(int argc, char **argv, int *i, struct queue_sel *sel,
			      struct evbuffer *err)
{
	const char *v;
	if ((v = queue_opt_value(argc, argv, i, "--state")) != NULL) {
		if (!queue_state_known(v)) {
			evbuffer_add_printf(err, "relevo: unknown state '%s'\n", v);
			return -1;
		}
		sel->state = v;
	} else if ((v = queue_opt_value(argc, argv, i, "--from")) != NULL) {
		sel->from = v;
	} else if ((v = queue_opt_value(argc, argv, i, "--to-domain")) != NULL) {
		sel->to_domain = v;
	} else if ((v = queue_opt_value(argc, argv, i, "--user")) != NULL) {
		sel->user = v;
	} else if ((v = queue_opt_value(argc, argv, i, "--older-than")) != NULL) {
		if (!queue_duration(v, &sel->older_ms)) {
			evbuffer_add_printf(err, "relevo: --older-than '%s' is not a duration "
						 "(a number and s, m, h, d or w: 30m, 2h, 1d)\n", v);
			return -1;
		}
	} else {
		return 0;
	}
	sel->filtered = true;
	return 1;
}

/* queue_parse_word - one argument word; false (said in err) on a usage error. */
static bool queue_parse_word(const struct queue_cmd *cmd, int argc, char **argv, int *i,
			     struct queue_sel *sel, struct evbuffer *err)
{
	const char *a = argv[*i];
	int f = (cmd->flags & Q_FILTERS) ? queue_parse_filter(argc, argv, i, sel, err) : 0;
	if (f != 0)
		return f > 0;
	if ((cmd->flags & Q_JSON) && strcmp(a, "--json") == 0) {
		sel->json = true;
	} else if ((cmd->flags & Q_BODY) && strcmp(a, "--body") == 0) {
		sel->body = true;
	} else if ((cmd->flags & Q_IDS) && strcmp(a, "--all") == 0) {
		sel->all = true;
	} else if (a[0] == '-') {
		evbuffer_add_printf(err, "relevo: queue %s: unknown option '%s'\n", cmd->name, a);
		return false;
	} else if (!(cmd->flags & (Q_IDS | Q_ONE_ID))) {
		evbuffer_add_printf(err, "relevo: queue %s takes no argument '%s'\n", cmd->name, a);
		return false;
	} else if (sel->nids == QUEUE_IDS_MAX) {
		evbuffer_add_printf(err, "relevo: more than %d ids: use --all with filters\n",
				    QUEUE_IDS_MAX);
		return false;
	} else if (!id_parse(a, &sel->ids[sel->nids++])) {
		evbuffer_add_printf(err, "relevo: '%s' is not a message id (16 hex digits)\n", a);
		return false;
	}
	return true;
}

/* queue_parse - argv[0] is the subcommand; fills sel (its ids array is
 * allocated here, freed by queue_sel_fini). 0, or 2 after saying why in err. */
static int queue_parse(const struct queue_cmd *cmd, int argc, char **argv, struct queue_sel *sel,
		       struct evbuffer *err)
{
	memset(sel, 0, sizeof *sel);
	sel->ids = xcalloc(QUEUE_IDS_MAX, sizeof *sel->ids);
	for (int i = 1; i < argc; i++)
		if (!queue_parse_word(cmd, argc, argv, &i, sel, err))
			return 2;
	const char *why = NULL;
	if ((cmd->flags & Q_ONE_ID) && sel->nids != 1)
		why = "needs exactly one message id";
	else if (sel->all && sel->nids > 0)
		why = "takes ids or --all, not both";
	else if ((cmd->flags & Q_IDS) && !sel->all && sel->nids == 0 &&
		 !(cmd->flags & Q_NONE_IS_ALL))
		why = "needs message ids or --all";
	else if ((cmd->flags & Q_WRITE) && sel->filtered && !sel->all)
		why = "filters select messages only with --all";
	if (why != NULL) {
		evbuffer_add_printf(err, "relevo: queue %s %s\nusage: relevo queue %s %s\n", cmd->name,
				    why, cmd->name, cmd->args);
		return 2;
	}
	if ((cmd->flags & Q_NONE_IS_ALL) && sel->nids == 0)
		sel->all = true;
	return 0;
}

void queue_sel_fini(struct queue_sel *sel)
{
	free(sel->ids);
	sel->ids = NULL;
}

/* ==== selection ========================================================= */

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* queue_matches - does env pass every filter of sel? */
bool queue_matches(const struct queue_sel *sel, const struct spool_env *env, int64_t now)
{
	if (sel->state && strcmp(sel->state, queue_state(env)) != 0)
		return false;
	if (sel->user && (env->user == NULL || strcmp(sel->user, env->user) != 0))
		return false;
	if (sel->older_ms && env->created > now - sel->older_ms)
		return false;
	if (sel->from) {
		bool null = strcmp(sel->from, "<>") == 0 || sel->from[0] == '\0';
		if (null ? env->sender[0] != '\0'
			 : strchr(sel->from, '@') ? strcasecmp(sel->from, env->sender) != 0
						  : strcasecmp(sel->from, domain_of(env->sender)) != 0)
			return false;
	}
	if (sel->to_domain) {
		bool any = false;
		for (size_t i = 0; i < env->nrcpt && !any; i++)
			any = strcasecmp(sel->to_domain, domain_of(env->rcpt[i].addr)) == 0;
		if (!any)
			return false;
	}
	return true;
}

struct queue_collect {
	const struct queue_sel *sel;
	int64_t now;
	uint64_t *ids;
	size_t n, cap;
};

static bool queue_collect_one(void *arg, const struct spool_env *env)
{
	struct queue_collect *qc = arg;
	if (!queue_matches(qc->sel, env, qc->now))
		return true;
	if (qc->n == qc->cap) {
		qc->cap = qc->cap ? qc->cap * 2 : 64;
		qc->ids = xrealloc(qc->ids, qc->cap * sizeof *qc->ids);
	}
	qc->ids[qc->n++] = env->id;
	return true;
}

/* ==== the changing verbs ================================================ */

static void queue_emit(struct queue_ctx *qc, const struct evlog_event *ev)
{
	if (qc->online) {
		evlog_emit(ev);
		return;
	}
	if (qc->nevs == qc->evcap) {
		qc->evcap = qc->evcap ? qc->evcap * 2 : 64;
		qc->evs = xrealloc(qc->evs, qc->evcap * sizeof *qc->evs);
	}
	struct evlog_event *c = evlog_event_dup(ev);
	c->time = time_now_ms();
	qc->evs[qc->nevs++] = c;
}

static void queue_on_durable(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid);

/* queue_started - online, rc of a spool_*_async: RC_OK means the record
 * completes in queue_on_durable. */
static enum rc queue_started(struct queue_ctx *qc, enum rc rc)
{
	qc->waiting = rc == RC_OK;
	return rc;
}

/* q_delete - remove the message (q_delete_then follows once it is durable). */
static enum rc q_delete(struct queue_ctx *qc, const struct spool_env *env, const char **what)
{
	*what = "deleted";
	if (!qc->online)
		return spool_delete(qc->sp, env->id);
	return queue_started(qc, spool_delete_async(qc->sp, env->id, qc->base, queue_on_durable,
						    qc, 0));
}

/* q_delete_then - a "dropped" event per waiting recipient (the delivered,
 * bounced and failed ones already have their final event). */
static void q_delete_then(struct queue_ctx *qc, const struct spool_env *env)
{
	struct evlog_event ev = {
		.type = EVLOG_DROPPED,
		.msgid = env->id,
		.sender = env->sender,
		.user = env->user,
		.stream = evlog_stream_name(env->flags & SPOOL_F_BULK),
		.source = (env->flags & SPOOL_F_API) ? "api" : "smtp",
		.reply = "deleted by operator",
	};
	for (size_t i = 0; i < env->nrcpt; i++) {
		if (env->rcpt[i].state != SPOOL_RCPT_QUEUED)
			continue;
		ev.recipient = env->rcpt[i].addr;
		ev.attempts = env->rcpt[i].attempts;
		queue_emit(qc, &ev);
	}
	if (qc->mta)
		mta_notify(qc->mta, env->id);
}

static enum rc q_hold_set(struct queue_ctx *qc, const struct spool_env *env, bool held)
{
	if (!qc->online)
		return spool_hold(qc->sp, env->id, held);
	return queue_started(qc, spool_hold_async(qc->sp, env->id, held, qc->base,
						  queue_on_durable, qc, 0));
}

/* q_hold_then - hold or release is durable: the engine looks again. */
static void q_hold_then(struct queue_ctx *qc, const struct spool_env *env)
{
	if (qc->mta)
		mta_notify(qc->mta, env->id);
}

static enum rc q_hold(struct queue_ctx *qc, const struct spool_env *env, const char **what)
{
	*what = (env->flags & SPOOL_F_HELD) ? "was held already" : "held";
	return q_hold_set(qc, env, true);
}

static enum rc q_release(struct queue_ctx *qc, const struct spool_env *env, const char **what)
{
	*what = (env->flags & SPOOL_F_HELD) ? "released" : "was not held";
	return q_hold_set(qc, env, false);
}

/* q_flush - make the queued recipients due now. A held message is not
 * attempted: RC_AGAIN says so. */
static enum rc q_flush(struct queue_ctx *qc, const struct spool_env *env, const char **what)
{
	if (env->flags & SPOOL_F_HELD) {
		*what = "is held: not attempted (queue release it first)";
		return RC_AGAIN;
	}
	if (qc->online) {
		*what = "will be attempted now";
		if (qc->mta)
			mta_flush(qc->mta, env->id);
		return RC_OK;
	}
	*what = "will be attempted as soon as the daemon starts";
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state == SPOOL_RCPT_QUEUED && r->next_attempt != 0)
			spool_rcpt_update(qc->sp, env->id, i, r->state, r->attempts, 0, r->last_reply,
					  NULL, NULL, NULL, 0);
	}
	return RC_OK;
}

/* queue_report - what happened to the current message, in qc's answer. */
static void queue_report(struct queue_ctx *qc, enum rc rc)
{
	char ids[ID_STR_LEN + 1];
	id_format(qc->cur, ids);
	if (rc == RC_OK) {
		qc->done++;
		qc->what = qc->cur_what;
		if (!qc->quiet)
			evbuffer_add_printf(qc->out, "%s %s\n", ids, qc->cur_what);
		if (qc->online)
			log_info("id=%s event=queue_%s via=control", ids, qc->cmd->name);
	} else if (rc == RC_NOTFOUND) {
		qc->missing++;
		evbuffer_add_printf(qc->err, "relevo: no message %s in the queue\n", ids);
	} else if (rc == RC_AGAIN) {
		qc->skipped++;
		evbuffer_add_printf(qc->quiet ? qc->out : qc->err, "%s %s\n", ids, qc->cur_what);
	} else {
		qc->missing++;
		evbuffer_add_printf(qc->err, "relevo: %s %s failed: %s\n", qc->cmd->name, ids,
				    rc_name(rc));
	}
}

/* queue_item_end - the current message's record is durable (or failed): its
 * effects, then its line. */
static void queue_item_end(struct queue_ctx *qc, enum rc rc)
{
	if (rc == RC_OK && qc->cmd->then)
		qc->cmd->then(qc, qc->env);
	spool_env_free(qc->env);
	qc->env = NULL;
	queue_report(qc, rc);
}

/* queue_item_start - look id up and run the verb on it; true when its record
 * completes later (queue_on_durable). */
static bool queue_item_start(struct queue_ctx *qc, uint64_t id)
{
	qc->cur = id;
	qc->cur_what = qc->cmd->name;
	enum rc rc = spool_get(qc->sp, id, &qc->env);
	if (rc == RC_OK)
		rc = qc->cmd->apply(qc, qc->env, &qc->cur_what);
	if (qc->waiting)
		return true;
	queue_item_end(qc, rc);
	return false;
}

/* queue_end - every message was done: the summary, the exit status, and online
 * the answer (qc is freed then). */
static void queue_end(struct queue_ctx *qc)
{
	if (qc->all && qc->nids == 0)
		evbuffer_add_printf(qc->out, "no message matches\n");
	else if (qc->all)
		evbuffer_add_printf(qc->out, "%zu message%s %s%s", qc->done, qc->done == 1 ? "" : "s",
				    qc->what ? qc->what : qc->cmd->name, qc->skipped ? "" : "\n");
	if (qc->all && qc->skipped)
		evbuffer_add_printf(qc->out, ", %zu held message%s not attempted\n", qc->skipped,
				    qc->skipped == 1 ? "" : "s");
	/* held messages skipped by a flush --all are expected: not a failure */
	qc->status = qc->missing || (!qc->all && qc->skipped) ? 1 : 0;
	if (qc->mta)
		mta_batch_end(qc->mta);
	if (qc->finish == NULL)
		return;
	qc->finish(qc->finish_arg, qc->status, qc->out);
	free(qc->ids);
	evbuffer_free(qc->out);
	free(qc);
}

/* queue_run - go on with the next messages until one waits for its record. */
static void queue_run(struct queue_ctx *qc)
{
	while (qc->next < qc->nids)
		if (queue_item_start(qc, qc->ids[qc->next++]))
			return;
	queue_end(qc);
}

/* queue_on_durable - online: the current message's record is on disk (or
 * failed); on the loop that asked. */
static void queue_on_durable(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct queue_ctx *qc = ctx;
	(void)cookie;
	(void)msgid;
	qc->waiting = false;
	queue_item_end(qc, rc);
	queue_run(qc);
}

/* queue_apply - run a changing verb on sel: the ids named, or those matching
 * (collected first: spool_foreach must not call back into the spool). Offline
 * it is over on return (qc->status); online qc->finish answers. */
static void queue_apply(struct queue_ctx *qc, const struct queue_cmd *cmd,
			const struct queue_sel *sel)
{
	qc->cmd = cmd;
	qc->all = sel->all;
	if (!sel->all) {
		qc->ids = xcalloc(sel->nids ? sel->nids : 1, sizeof *qc->ids);
		memcpy(qc->ids, sel->ids, sel->nids * sizeof *qc->ids);
		qc->nids = sel->nids;
	} else {
		struct queue_collect col = {.sel = sel, .now = time_now_ms()};
		spool_foreach(qc->sp, queue_collect_one, &col);
		qc->ids = col.ids;
		qc->nids = col.n;
		qc->quiet = col.n > 20;
	}
	if (qc->mta)
		mta_batch_begin(qc->mta);
	queue_run(qc);
}

/* cli_queue_ctl - the daemon's side: run the argument words of a changing
 * queue command (words[0] is the subcommand) online; done answers on base. */
void cli_queue_ctl(struct spool *sp, struct mta *mta, struct event_base *base, int nwords,
		   char **words, void (*done)(void *arg, int status, struct evbuffer *out),
		   void *arg)
{
	const struct queue_cmd *cmd = nwords > 0 ? cli_queue_cmd_find(words[0]) : NULL;
	struct evbuffer *out = evbuffer_new();
	if (cmd == NULL || !(cmd->flags & Q_WRITE)) {
		evbuffer_add_printf(out, "relevo: unknown queue command '%s'\n",
				    nwords > 0 ? words[0] : "");
		done(arg, 2, out);
		evbuffer_free(out);
		return;
	}
	struct queue_sel sel;
	int status = queue_parse(cmd, nwords, words, &sel, out);
	if (status != 0) {
		done(arg, status, out);
		evbuffer_free(out);
	} else {
		struct queue_ctx *qc = xcalloc(1, sizeof *qc);
		*qc = (struct queue_ctx){.sp = sp, .mta = mta, .online = true, .out = out,
					 .err = out, .base = base, .finish = done,
					 .finish_arg = arg};
		queue_apply(qc, cmd, &sel);
	}
	queue_sel_fini(&sel);
}

/* ==== the offline path ================================================== */

/* queue_store_events - record the offline run's events, as the daemon's sink
 * would: in the store, and as webhook jobs the daemon posts when it runs. */
static void queue_store_events(const struct conf *c, struct queue_ctx *qc)
{
	if (qc->nevs == 0)
		return;
	struct store *st = cli_open_store(c);
	enum rc rc = st ? store_events_add(st, qc->evs, qc->nevs) : RC_IO;
	if (rc != RC_OK)
		fprintf(stderr, "relevo: warning: the %zu 'dropped' events were not recorded: %s\n",
			qc->nevs, rc_name(rc));
	else
		http_webhooks_enqueue_offline(c, st, qc->evs, qc->nevs);
	if (st)
		store_close(st);
}

static void queue_print(struct evbuffer *b, FILE *f)
{
	size_t n = evbuffer_get_length(b);
	if (n > 0)
		fwrite(evbuffer_pullup(b, -1), 1, n, f);
}

/* queue_change_offline - run the verb on the locked spool. */
static int queue_change_offline(const struct conf *c, struct spool *sp,
				const struct queue_cmd *cmd, const struct queue_sel *sel)
{
	struct queue_ctx qc = {.sp = sp, .out = evbuffer_new(), .err = evbuffer_new()};
	queue_apply(&qc, cmd, sel);
	int status = qc.status;
	free(qc.ids);
	spool_close(sp); /* drains the updates */
	queue_store_events(c, &qc);
	queue_print(qc.out, stdout);
	queue_print(qc.err, stderr);
	for (size_t i = 0; i < qc.nevs; i++)
		evlog_event_free(qc.evs[i]);
	free(qc.evs);
	evbuffer_free(qc.out);
	evbuffer_free(qc.err);
	return status;
}

/* queue_ctl_line - "queue WORD WORD ..." for the control socket; NULL (said)
 * when a word could not travel in it. */
static char *queue_ctl_line(int argc, char **argv)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "queue");
	for (int i = 0; i < argc; i++) {
		for (const char *p = argv[i]; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
				fprintf(stderr, "relevo: '%s': blanks or control characters cannot "
						"be sent to the daemon\n", argv[i]);
				evbuffer_free(b);
				return NULL;
			}
		evbuffer_add_printf(b, " %s", argv[i]);
	}
	size_t n = evbuffer_get_length(b);
	char *line = xmalloc(n + 1);
	evbuffer_remove(b, line, n);
	line[n] = '\0';
	evbuffer_free(b);
	return line;
}

/* queue_change - a changing verb: offline, or through the daemon when it holds
 * the spool. */
static int queue_change(const struct conf *c, const struct queue_cmd *cmd, int argc, char **argv,
			const struct queue_sel *sel)
{
	struct spool *sp = NULL;
	enum rc rc = spool_open(c->data_dir, SPOOL_RDWR, &sp);
	if (rc == RC_EXISTS) {
		char *line = queue_ctl_line(argc, argv);
		if (line == NULL)
			return 2;
		int status = cli_ctl_request(c, line);
		free(line);
		return status;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot open the queue in %s/spool: %s\n", c->data_dir,
			rc_name(rc));
		return 1;
	}
	return queue_change_offline(c, sp, cmd, sel);
}

static bool is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

/* cli_queue - `relevo queue SUBCOMMAND ...` (argv[0] is "queue"). */
int cli_queue(int argc, char **argv, const char *conf_path)
{
	const struct queue_cmd *cmd = argc >= 2 ? cli_queue_cmd_find(argv[1]) : NULL;
	for (int i = 1; i < argc; i++)
		if (is_help(argv[i]) || (i == 1 && strcmp(argv[i], "help") == 0)) {
			queue_help(stdout, cmd);
			return 0;
		}
	if (argc < 2) {
		queue_help(stderr, NULL);
		return 2;
	}
	if (cmd == NULL) {
		fprintf(stderr, "relevo: unknown queue subcommand '%s'\n", argv[1]);
		queue_help(stderr, NULL);
		return 2;
	}
	struct queue_sel sel;
	struct evbuffer *err = evbuffer_new();
	int status = queue_parse(cmd, argc - 1, argv + 1, &sel, err);
	queue_print(err, stderr);
	evbuffer_free(err);
	struct conf *c = status == 0 ? cli_load_conf(conf_path) : NULL;
	if (status == 0 && c == NULL)
		status = 1;
	if (c != NULL) {
		log_set_level(LOG_LV_WARN); /* damage found while reading is still reported */
		if (strcmp(cmd->name, "list") == 0)
			status = cli_queue_list(c, &sel);
		else if (strcmp(cmd->name, "show") == 0)
			status = cli_queue_show(c, sel.ids[0], sel.body);
		else
			status = queue_change(c, cmd, argc - 1, argv + 1, &sel);
		conf_free(c);
	}
	queue_sel_fini(&sel);
	return status;
}
