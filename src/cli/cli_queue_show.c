/*
 * cli_queue_show.c - `relevo queue list` and `queue show`: the queue as it is on
 * disk, read without the spool lock (SPOOL_RDONLY), so the same whether or not
 * the daemon runs.
 *
 * list (like Postfix's mailq): a header line, then per message one line
 *   "ID ARRIVED SIZE STATE <SENDER>" (STATE one token: queued, deferred,
 *   held, partially-delivered, bounce-pending) followed by one indented line
 *   per recipient: "<ADDR> STATE [attempts=N] [next=TIME] [(last reply)]", the
 *   last reply being the reason of the last deferral or failure; the count on
 *   stderr. "queue is empty" when nothing matches. --json: one object
 *   {"messages": [...], "count": N} with the same facts.
 * show: the envelope and every recipient's state, then the message headers;
 *   the body only with --body (customers' mail is not dumped by default).
 *
 * Everything printed that came from a client or a remote server (addresses,
 * HELO, replies, headers) has its control characters replaced, so that queue
 * contents can never drive the operator's terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_queue_int.h"
#include "conf/conf.h"
#include "core/core.h"
#include "spool/spool.h"

#define QUEUE_SHOW_MAX (1024 * 1024) /* message bytes `queue show --body` prints at most */
#define QUEUE_REASON_MAX 300	     /* characters of a last reply in `queue list` */

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

/* queue_state - one token (list columns are split on blanks) for a message. */
const char *queue_state(const struct spool_env *env)
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

/* A recipient's state as an operator reads it: a queued one that was tried
 * is "deferred". */
static const char *rcpt_state(const struct spool_rcpt *r)
{
	if (r->state == SPOOL_RCPT_QUEUED && r->attempts > 0)
		return "deferred";
	return spool_rcpt_state_name(r->state);
}

/* ==== list =============================================================== */

struct list_ctx {
	const struct queue_sel *sel;
	int64_t now;
	size_t n;
	uint64_t bytes;
	json_t *arr;			/* --json: the messages */
};

static void list_rcpt_text(const struct spool_rcpt *r)
{
	char next[32];
	printf("    <");
	put_str(stdout, r->addr);
	printf(">  %s", rcpt_state(r));
	if (r->attempts > 0)
		printf("  attempts=%u", r->attempts);
	if (r->state == SPOOL_RCPT_QUEUED) {
		fmt_next(r->next_attempt, true, next, sizeof next);
		printf("  next=%s", next);
	}
	if (r->last_reply && r->state != SPOOL_RCPT_DELIVERED) {
		size_t n = strlen(r->last_reply);
		printf("  (");
		put_safe(stdout, r->last_reply, MIN(n, (size_t)QUEUE_REASON_MAX));
		printf("%s)", n > QUEUE_REASON_MAX ? "..." : "");
	}
	putchar('\n');
}

static void list_text(struct list_ctx *lc, const struct spool_env *env)
{
	char id[ID_STR_LEN + 1], arrived[32];
	id_format(env->id, id);
	fmt_time(env->created, arrived, sizeof arrived);
	if (lc->n == 0)
		printf("%-16s  %-20s  %9s  %-19s  %s\n", "ID", "ARRIVED", "SIZE", "STATE", "SENDER");
	printf("%-16s  %-20s  %9llu  %-19s  <", id, arrived, (unsigned long long)env->body_size,
	       queue_state(env));
	put_str(stdout, env->sender);
	printf(">\n");
	for (size_t i = 0; i < env->nrcpt; i++)
		list_rcpt_text(&env->rcpt[i]);
}

/* s[0..n) as a JSON string; bytes that are not UTF-8 become '?'. */
static json_t *json_text(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j != NULL)
		return j;
	char *c = xstrndup(s, n);
	for (char *p = c; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j ? j : json_string("");
}

static json_t *json_str_or_null(const char *s)
{
	return s ? json_text(s, strlen(s)) : json_null();
}

static json_t *json_time(int64_t ms)
{
	char t[32];
	fmt_time(ms, t, sizeof t);
	return json_string(t);
}

/* last_reply_json - a stored outcome (outcome_parse) as an object {status,
 * remote, reply}; another text is the reply alone. */
static json_t *last_reply_json(const char *s)
{
	struct outcome *o = xmalloc(sizeof *o);
	json_t *j;
	if (outcome_parse(s, o)) {
		char remote[OUTCOME_HOST_MAX + OUTCOME_ADDR_MAX + 2];
		outcome_remote(o, remote, sizeof remote);
		j = json_pack("{s:o,s:o,s:o}", "status", json_text(o->status, strlen(o->status)),
			      "remote", remote[0] ? json_text(remote, strlen(remote)) : json_null(),
			      "reply", json_text(o->reply, strlen(o->reply)));
	} else {
		j = json_pack("{s:n,s:n,s:o}", "status", "remote", "reply", json_text(s, strlen(s)));
	}
	free(o);
	return j;
}

static json_t *list_rcpt_json(const struct spool_rcpt *r)
{
	json_t *o = json_pack("{s:o,s:s,s:I}", "address", json_str_or_null(r->addr), "state",
			      rcpt_state(r), "attempts", (json_int_t)r->attempts);
	json_object_set_new(o, "next_attempt",
			    r->state == SPOOL_RCPT_QUEUED ? json_time(r->next_attempt) : json_null());
	json_object_set_new(o, "last_reply", r->last_reply ? last_reply_json(r->last_reply)
							    : json_null());
	return o;
}

static void list_json(struct list_ctx *lc, const struct spool_env *env)
{
	char id[ID_STR_LEN + 1];
	id_format(env->id, id);
	json_t *rc = json_array();
	for (size_t i = 0; i < env->nrcpt; i++)
		json_array_append_new(rc, list_rcpt_json(&env->rcpt[i]));
	json_array_append_new(
	    lc->arr, json_pack("{s:s,s:o,s:I,s:s,s:o,s:o,s:b,s:s,s:o}", "id", id, "arrived",
			       json_time(env->created), "size", (json_int_t)env->body_size, "state",
			       queue_state(env), "sender", json_str_or_null(env->sender), "user",
			       json_str_or_null(env->user), "held", (env->flags & SPOOL_F_HELD) != 0,
			       "stream", evlog_stream_name(env->flags & SPOOL_F_BULK), "recipients",
			       rc));
}

static bool list_one(void *arg, const struct spool_env *env)
{
	struct list_ctx *lc = arg;
	if (!queue_matches(lc->sel, env, lc->now))
		return true;
	if (lc->arr)
		list_json(lc, env);
	else
		list_text(lc, env);
	lc->n++;
	lc->bytes += env->body_size;
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

/* cli_queue_list - the messages that pass sel's filters, then a count. */
int cli_queue_list(const struct conf *c, const struct queue_sel *sel)
{
	struct spool *sp = queue_open_ro(c);
	if (sp == NULL)
		return 1;
	struct list_ctx lc = {.sel = sel, .now = time_now_ms(),
			      .arr = sel->json ? json_array() : NULL};
	spool_foreach(sp, list_one, &lc);
	spool_close(sp);
	if (lc.arr) {
		json_t *o = json_pack("{s:o,s:I}", "messages", lc.arr, "count", (json_int_t)lc.n);
		char *s = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(o);
	} else if (lc.n == 0) {
		printf("queue is empty\n");
	} else {
		/* The count goes to stderr: stdout is the header and the messages. */
		fprintf(stderr, "%zu message%s, %llu bytes%s\n", lc.n, lc.n == 1 ? "" : "s",
			(unsigned long long)lc.bytes, sel->filtered ? " (filtered)" : "");
	}
	return 0;
}

/* ==== show =============================================================== */

static void show_flags(uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {{SPOOL_F_8BITMIME, "8BITMIME"}, {SPOOL_F_SMTPUTF8, "SMTPUTF8"},
		     {SPOOL_F_RET_FULL, "RET=FULL"}, {SPOOL_F_RET_HDRS, "RET=HDRS"},
		     {SPOOL_F_HELD, "HELD"},	     {SPOOL_F_SANDBOX, "SANDBOX"},
		     {SPOOL_F_BULK, "BULK"},	     {SPOOL_F_API, "API"}};
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

/* The stored message: the header lines, then (with body) the empty line and
 * the body, up to QUEUE_SHOW_MAX bytes (the rest is counted, not printed). */
static void show_message(struct spool *sp, uint64_t id, bool body)
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
	bool in_body = false;
	char *line;
	while (shown < QUEUE_SHOW_MAX &&
	       (line = evbuffer_readln(msg, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		in_body = in_body || n == 0;
		if (in_body && !body) {
			free(line);
			break;
		}
		put_safe(stdout, line, n);
		putchar('\n');
		shown += n + 2;
		free(line);
	}
	size_t rest = evbuffer_get_length(msg);
	if (!body && in_body)
		printf("\n[body: %zu bytes not shown; queue show --body prints it]\n", rest);
	else if (rest > 0 && shown >= QUEUE_SHOW_MAX)
		printf("[... %zu more bytes not shown]\n", rest);
	else if (rest > 0) /* a last line without line ending */
		put_safe(stdout, (const char *)evbuffer_pullup(msg, -1), rest);
	evbuffer_free(msg);
}

/* cli_queue_show - envelope, per-recipient state, the headers (and body). */
int cli_queue_show(const struct conf *c, uint64_t id, bool body)
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
	show_message(sp, id, body);
	spool_env_free(env);
	spool_close(sp);
	return 0;
}
