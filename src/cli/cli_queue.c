/*
 * cli_queue.c - `relevo queue list | show ID | delete ID`.
 *
 * list prints one line per message on stdout, blank-separated columns
 * "ID <SENDER> RCPT,RCPT,... STATE NEXT-ATTEMPT" (STATE one token: queued,
 * deferred, held, partially-delivered, bounce-pending), and the count on stderr.
 * show prints the envelope, then the message (headers, then body, capped).
 *
 * list and show open the spool read-only (SPOOL_RDONLY: no lock, no writes), so
 * they work the same whether or not the daemon runs; what they print is the
 * state on disk at that moment. delete needs the spool lock: when the daemon
 * holds it (spool_open returns RC_EXISTS) the request goes to the daemon over its
 * control socket instead ("queue delete ID").
 *
 * Everything printed that came from a client or a remote server (addresses,
 * HELO, replies, headers) has its control characters replaced, so that queue
 * contents can never drive the operator's terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "spool/spool.h"

#define QUEUE_SHOW_MAX (1024 * 1024) /* message bytes `queue show` prints at most */

static int queue_usage(void)
{
	fprintf(stderr, "usage: relevo queue list | show ID | delete ID | flush [ID] | hold ID | release ID [-c FILE]\n");
	return 2;
}

/* Print n bytes of s, control characters (but tab) as '?'. */
static void put_safe(FILE *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		fputc(ch < 0x20 && ch != '\t' ? '?' : ch == 0x7f ? '?' : ch, out);
	}
}

static void put_str(FILE *out, const char *s)
{
	put_safe(out, s ? s : "-", strlen(s ? s : "-"));
}

/* ISO-8601 UTC for a unix-ms time. */
static void fmt_time(int64_t ms, char *out, size_t outsz)
{
	cli_time_utc(ms / 1000, out, outsz);
}

/* "now" when due, "-" when nothing is waiting, else the time. */
static void fmt_next(int64_t ms, bool any, char *out, size_t outsz)
{
	if (!any)
		str_lcpy(out, "-", outsz);
	else if (ms <= time_now_ms())
		str_lcpy(out, "now", outsz);
	else
		fmt_time(ms, out, outsz);
}

/* The earliest next attempt among queued recipients; false if none is queued. */
static bool next_attempt(const struct spool_env *env, int64_t *out)
{
	bool any = false;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state != SPOOL_RCPT_QUEUED)
			continue;
		if (!any || r->next_attempt < *out)
			*out = r->next_attempt;
		any = true;
	}
	return any;
}

/* queue_state - one token (list columns are split on blanks) for a message. */
static const char *queue_state(const struct spool_env *env)
{
	size_t queued = 0, failed = 0, done = 0;
	bool tried = false;
	if (env->flags & SPOOL_F_HELD)
		return "held";
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		queued += r->state == SPOOL_RCPT_QUEUED;
		failed += r->state == SPOOL_RCPT_FAILED;
		done += r->state == SPOOL_RCPT_DELIVERED || r->state == SPOOL_RCPT_BOUNCED;
		tried = tried || r->attempts > 0;
	}
	if (queued == 0)
		return failed > 0 ? "bounce-pending" : "finished";
	if (done > 0 || failed > 0)
		return "partially-delivered";
	return tried ? "deferred" : "queued";
}

static bool list_one(void *arg, const struct spool_env *env)
{
	size_t *n = arg;
	char id[ID_STR_LEN + 1], next[32];
	int64_t when = 0;
	bool any = next_attempt(env, &when);
	id_format(env->id, id);
	fmt_next(when, any, next, sizeof next);
	printf("%s  <", id);
	put_str(stdout, env->sender);
	printf(">  ");
	for (size_t i = 0; i < env->nrcpt; i++) {
		if (i > 0)
			putchar(',');
		put_str(stdout, env->rcpt[i].addr);
	}
	printf("  %s  %s\n", queue_state(env), next);
	(*n)++;
	return true;
}

static struct spool *queue_open_ro(const struct conf *c)
{
	struct spool *sp = NULL;
	enum rc rc = spool_open(c->data_dir, SPOOL_RDONLY, &sp);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot read the queue in %s/spool: %s\n", c->data_dir,
		        rc_name(rc));
		return NULL;
	}
	return sp;
}

/* queue_list - one line per message, then a count. */
static int queue_list(const struct conf *c)
{
	struct spool *sp = queue_open_ro(c);
	if (sp == NULL)
		return 1;
	size_t n = 0;
	spool_foreach(sp, list_one, &n);
	/* The count goes to stderr: stdout stays one parseable line per message. */
	if (n == 0)
		printf("queue is empty\n");
	else
		fprintf(stderr, "%zu message%s in the queue\n", n, n == 1 ? "" : "s");
	spool_close(sp);
	return 0;
}

static void show_flags(uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {{SPOOL_F_8BITMIME, "8BITMIME"},
	             {SPOOL_F_SMTPUTF8, "SMTPUTF8"},
	             {SPOOL_F_RET_FULL, "RET=FULL"},
	             {SPOOL_F_RET_HDRS, "RET=HDRS"},
	             {SPOOL_F_HELD, "HELD"}};
	bool any = false;
	printf("flags:       ");
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (flags & names[i].bit) {
			printf("%s%s", any ? " " : "", names[i].name);
			any = true;
		}
	printf("%s\n", any ? "" : "none");
}

static void show_notify(uint8_t notify)
{
	if (notify == 0)
		return;
	printf(" notify=");
	if (notify & SPOOL_NOTIFY_NEVER)
		printf("NEVER");
	else
		printf("%s%s%s", notify & SPOOL_NOTIFY_SUCCESS ? "SUCCESS," : "",
		       notify & SPOOL_NOTIFY_FAILURE ? "FAILURE," : "",
		       notify & SPOOL_NOTIFY_DELAY ? "DELAY" : "");
}

static void show_rcpt(const struct spool_rcpt *r)
{
	char next[32];
	fmt_next(r->next_attempt, r->state == SPOOL_RCPT_QUEUED, next, sizeof next);
	printf("  <");
	put_str(stdout, r->addr);
	printf("> state=%s attempts=%u next=%s", spool_rcpt_state_name(r->state), r->attempts,
	       next);
	if (r->orcpt) {
		printf(" orcpt=");
		put_str(stdout, r->orcpt);
	}
	show_notify(r->notify);
	if (r->last_reply && strncmp(r->last_reply, "status=", 7) == 0) {
		/* the engine's outcome: already "status=X remote=H reply=\"...\"" */
		putchar(' ');
		put_str(stdout, r->last_reply);
	} else if (r->last_reply) {
		printf(" reply=\"");
		put_str(stdout, r->last_reply);
		putchar('"');
	}
	putchar('\n');
}

static void show_field(const char *name, const char *value)
{
	printf("%-13s", name);
	put_str(stdout, value);
	putchar('\n');
}

static void show_envelope(const struct spool_env *env)
{
	char id[ID_STR_LEN + 1], created[32];
	id_format(env->id, id);
	fmt_time(env->created, created, sizeof created);
	printf("id:          %s\nstate:       %s\nsender:      <", id, queue_state(env));
	put_str(stdout, env->sender);
	printf(">\n");
	show_field("user:", env->user);
	show_field("client:", env->client);
	show_field("helo:", env->helo);
	printf("created:     %s\n", created);
	if (env->envid)
		show_field("envid:", env->envid);
	show_flags(env->flags);
	printf("size:        %llu bytes\nrecipients:  %zu\n", (unsigned long long)env->body_size,
	       env->nrcpt);
	for (size_t i = 0; i < env->nrcpt; i++)
		show_rcpt(&env->rcpt[i]);
}

/* The stored message: every header line, the empty line, then the body, up to
 * QUEUE_SHOW_MAX bytes (the rest is counted, not printed). */
static void show_message(struct spool *sp, uint64_t id)
{
	struct evbuffer *msg = evbuffer_new();
	if (msg == NULL || spool_read_body(sp, id, msg) != RC_OK) {
		fprintf(stderr, "relevo: cannot read the stored message\n");
		if (msg)
			evbuffer_free(msg);
		return;
	}
	printf("\n");
	size_t shown = 0, n;
	char *line;
	while (shown < QUEUE_SHOW_MAX &&
	       (line = evbuffer_readln(msg, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		put_safe(stdout, line, n);
		putchar('\n');
		shown += n + 2;
		free(line);
	}
	size_t rest = evbuffer_get_length(msg);
	if (rest > 0 && shown >= QUEUE_SHOW_MAX)
		printf("[... %zu more bytes not shown]\n", rest);
	else if (rest > 0) /* a last line without line ending */
		put_safe(stdout, (const char *)evbuffer_pullup(msg, -1), rest);
	evbuffer_free(msg);
}

/* queue_show - envelope, per-recipient state, then the message headers. */
static int queue_show(const struct conf *c, uint64_t id)
{
	struct spool *sp = queue_open_ro(c);
	if (sp == NULL)
		return 1;
	struct spool_env *env = NULL;
	char ids[ID_STR_LEN + 1];
	id_format(id, ids);
	if (spool_get(sp, id, &env) != RC_OK) {
		fprintf(stderr, "relevo: no message %s in the queue\n", ids);
		spool_close(sp);
		return 1;
	}
	show_envelope(env);
	show_message(sp, id);
	spool_env_free(env);
	spool_close(sp);
	return 0;
}

/* queue_offline_flush - make msgid's (or every message's, id 0) queued recipients
 * due now, so the next daemon start attempts them at once. */
static bool queue_flush_one(void *arg, const struct spool_env *env)
{
	struct spool *sp = arg;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (r->state == SPOOL_RCPT_QUEUED && r->next_attempt != 0)
			spool_rcpt_update(sp, env->id, i, r->state, r->attempts, 0, r->last_reply,
			                  NULL, NULL, NULL, 0);
	}
	return true;
}

static enum rc queue_offline_flush(struct spool *sp, uint64_t id)
{
	if (id == 0) {
		spool_foreach(sp, queue_flush_one, sp);
		return RC_OK;
	}
	struct spool_env *env = NULL;
	enum rc rc = spool_get(sp, id, &env);
	if (rc == RC_OK)
		queue_flush_one(sp, env);
	spool_env_free(env);
	return rc;
}

/* queue_change - delete, hold, release or flush: offline, or through the daemon
 * when it holds the spool. id 0 (flush only) means every message. */
static int queue_change(const struct conf *c, const char *verb, uint64_t id)
{
	char ids[ID_STR_LEN + 1] = "";
	if (id != 0)
		id_format(id, ids);
	struct spool *sp = NULL;
	enum rc rc = spool_open(c->data_dir, SPOOL_RDWR, &sp);
	if (rc == RC_EXISTS) {
		char *line = xasprintf("queue %s%s%s", verb, id ? " " : "", ids);
		int status = cli_ctl_request(c, line);
		free(line);
		return status;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot open the queue in %s/spool: %s\n", c->data_dir,
		        rc_name(rc));
		return 1;
	}
	const char *done = "deleted";
	if (strcmp(verb, "delete") == 0) {
		rc = spool_delete(sp, id);
	} else if (strcmp(verb, "flush") == 0) {
		rc = queue_offline_flush(sp, id);
		done = "will be attempted as soon as the daemon starts";
	} else {
		rc = spool_hold(sp, id, strcmp(verb, "hold") == 0);
		done = strcmp(verb, "hold") == 0 ? "held" : "released";
	}
	spool_close(sp); /* drains the updates */
	if (rc == RC_NOTFOUND) {
		fprintf(stderr, "relevo: no message %s in the queue\n", ids);
		return 1;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: %s %s failed: %s\n", verb, ids, rc_name(rc));
		return 1;
	}
	printf("%s%s%s\n", id ? ids : "every queued message", id ? " " : " ", done);
	return 0;
}

/* cli_queue - `relevo queue list | show ID | delete ID | flush [ID] | hold ID |
 * release ID`. */
int cli_queue(int argc, char **argv, const char *conf_path)
{
	uint64_t id = 0;
	if (argc < 2)
		return queue_usage();
	const char *sub = argv[1];
	bool list = strcmp(sub, "list") == 0, flush = strcmp(sub, "flush") == 0;
	bool show = strcmp(sub, "show") == 0;
	bool change = strcmp(sub, "delete") == 0 || strcmp(sub, "hold") == 0 ||
	              strcmp(sub, "release") == 0;
	if ((list && argc != 2) || ((show || change) && argc != 3) || (flush && argc > 3) ||
	    !(list || show || change || flush))
		return queue_usage();
	if (argc == 3 && !id_parse(argv[2], &id)) {
		fprintf(stderr, "relevo: '%s' is not a message id (16 hex digits)\n", argv[2]);
		return 2;
	}
	struct conf *c = cli_load_conf(conf_path);
	if (c == NULL)
		return 1;
	log_set_level(LOG_LV_WARN); /* damage found while reading is still reported */
	int status = list ? queue_list(c) : show ? queue_show(c, id) : queue_change(c, sub, id);
	conf_free(c);
	return status;
}
