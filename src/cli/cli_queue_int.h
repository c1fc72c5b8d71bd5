/*
 * cli_queue_int.h - shared by cli_queue.c (the command table, the changing
 * verbs) and cli_queue_show.c (list and show, read-only).
 */
#ifndef RELEVO_CLI_QUEUE_INT_H
#define RELEVO_CLI_QUEUE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "spool/spool.h"

#define QUEUE_IDS_MAX 1000 /* message ids on one command line */

/* Which messages a command is about: ids, or all that pass the filters. */
struct queue_sel {
	uint64_t *ids;			/* QUEUE_IDS_MAX slots (owned), nids used */
	size_t nids;
	bool all, json, body;
	bool filtered;			/* some filter was given */
	const char *state;		/* queue_state() token, or NULL */
	const char *from;		/* address, domain or "<>", or NULL */
	const char *to_domain;		/* some recipient's domain, or NULL */
	const char *user;		/* account, or NULL */
	int64_t older_ms;		/* created at least this long ago; 0: any */
};

struct queue_ctx;

/* One queue subcommand: its usage, and for a changing verb what it does to
 * one message: apply writes its spool record (*what: the words printed after
 * the id), then (may be NULL) follows once that record is durable. */
struct queue_cmd {
	const char *name, *args, *help;
	unsigned flags;
	enum rc (*apply)(struct queue_ctx *qc, const struct spool_env *env, const char **what);
	void (*then)(struct queue_ctx *qc, const struct spool_env *env);
};

/* queue_sel_fini - free what queue_parse allocated. */
void queue_sel_fini(struct queue_sel *sel);
/* queue_matches - does env pass every filter of sel at time now (unix ms)? */
bool queue_matches(const struct queue_sel *sel, const struct spool_env *env, int64_t now);
/* queue_state - one token for a message: queued, deferred, held,
 * partially-delivered, bounce-pending (finished: nothing left). */
const char *queue_state(const struct spool_env *env);

/* cli_queue_list - `queue list [--json] [FILTERS]`; the exit status. */
int cli_queue_list(const struct conf *c, const struct queue_sel *sel);
/* cli_queue_show - `queue show ID [--body]`; the exit status. */
int cli_queue_show(const struct conf *c, uint64_t id, bool body);

#endif
