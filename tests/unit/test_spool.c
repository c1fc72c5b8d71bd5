/*
 * test_spool.c - the durable queue: commit/recover round trips, group commit from
 * several threads, recipient state, delete/hold, torn tails, damaged records,
 * injected write/fsync/truncate failures, the lock, segment reclaim, ids.
 *
 * Every case works in its own temporary data_dir (removed afterwards). Callbacks
 * arrive on an event_base the test runs until they are all in. Fault injection
 * goes through the core seam (RELEVO_FAULT) in re-executed child processes, so
 * the parent never runs with a fault armed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/core.h"
#include "spool/spool.h"
#include "spool/spool_int.h"
#include "unit_util.h"

/* ---- fixture and helpers ---- */

struct fx {
	char *dir; /* data_dir */
	struct event_base *base;
};

static int fx_setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof *fx);
	char tmpl[] = "/tmp/relevo-spool-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	fx->dir = xstrdup(tmpl);
	fx->base = event_base_new();
	assert_non_null(fx->base);
	*state = fx;
	return 0;
}

static void rm_rf(const char *dir)
{
	unit_rm_tree(dir);
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	rm_rf(fx->dir);
	event_base_free(fx->base);
	free(fx->dir);
	free(fx);
	return 0;
}

/* Collected completions of one event_base. */
struct waiter {
	int done, ok;
	enum rc last;
	uint64_t last_id;
	uint64_t *ids; /* ids[cookie] = msgid, when set */
};

static void on_commit(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct waiter *w = ctx;
	w->done++;
	w->ok += rc == RC_OK;
	w->last = rc;
	w->last_id = msgid;
	if (w->ids)
		w->ids[cookie] = msgid;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Run base until w->done reaches n (fails the test after 30 s). */
static void wait_for(struct event_base *base, struct waiter *w, int n)
{
	bool timed_out = false;
	struct event *t = evtimer_new(base, on_timeout, &timed_out);
	struct timeval tv = {30, 0};
	evtimer_add(t, &tv);
	while (w->done < n && !timed_out)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	assert_false(timed_out);
}

static struct spool_env *env_new(const char *sender, size_t nrcpt)
{
	struct spool_env *e = xcalloc(1, sizeof *e);
	e->created = time_now_ms();
	e->sender = xstrdup(sender);
	e->user = xstrdup("customer1");
	e->client = xstrdup("127.0.0.1");
	e->helo = xstrdup("client.example");
	e->nrcpt = nrcpt;
	e->rcpt = xcalloc(nrcpt, sizeof *e->rcpt);
	for (size_t i = 0; i < nrcpt; i++)
		e->rcpt[i].addr = xasprintf("rcpt%zu@example.net", i);
	return e;
}

static struct evbuffer *body_new(const void *p, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, p, n);
	return b;
}

/* Commit env with body and wait; returns the callback's rc, *id the message id. */
static enum rc commit_wait(struct fx *fx, struct spool *sp, struct spool_env *env, const void *body,
                           size_t len, uint64_t *id)
{
	struct waiter w = {0};
	spool_commit(sp, env, body_new(body, len), fx->base, on_commit, &w, 7);
	wait_for(fx->base, &w, 1);
	if (id)
		*id = w.last_id;
	return w.last;
}

static uint64_t commit_text(struct fx *fx, struct spool *sp, const char *text)
{
	uint64_t id = 0;
	assert_int_equal(commit_wait(fx, sp, env_new("a@example.org", 1), text, strlen(text), &id),
	                 RC_OK);
	return id;
}

static void update_wait(struct fx *fx, struct spool *sp, uint64_t id, size_t idx,
                        enum spool_rcpt_state st, uint32_t attempts, int64_t next,
                        const char *reply)
{
	struct waiter w = {0};
	assert_int_equal(
	    spool_rcpt_update(sp, id, idx, st, attempts, next, reply, fx->base, on_commit, &w, 1),
	    RC_OK);
	wait_for(fx->base, &w, 1);
	assert_int_equal(w.last, RC_OK);
}

static struct spool *open_rw(struct fx *fx)
{
	struct spool *sp = NULL;
	assert_int_equal(spool_open(fx->dir, SPOOL_RDWR, &sp), RC_OK);
	return sp;
}

static struct spool *open_ro(struct fx *fx)
{
	struct spool *sp = NULL;
	assert_int_equal(spool_open(fx->dir, SPOOL_RDONLY, &sp), RC_OK);
	return sp;
}

/* Body of id as a heap buffer; *len its length. */
static char *body_of(struct spool *sp, uint64_t id, size_t *len)
{
	struct evbuffer *b = evbuffer_new();
	assert_int_equal(spool_read_body(sp, id, b), RC_OK);
	*len = evbuffer_get_length(b);
	char *p = xmalloc(*len + 1);
	evbuffer_remove(b, p, *len);
	p[*len] = '\0';
	evbuffer_free(b);
	return p;
}

static void assert_body(struct spool *sp, uint64_t id, const void *want, size_t n)
{
	size_t len;
	char *got = body_of(sp, id, &len);
	assert_int_equal(len, n);
	assert_memory_equal(got, want, n);
	free(got);
}

static void assert_str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_env_eq(const struct spool_env *a, const struct spool_env *b)
{
	assert_int_equal(a->id, b->id);
	assert_int_equal(a->created, b->created);
	assert_str_eq(a->sender, b->sender);
	assert_str_eq(a->user, b->user);
	assert_str_eq(a->client, b->client);
	assert_str_eq(a->helo, b->helo);
	assert_str_eq(a->envid, b->envid);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->body_size, b->body_size);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (size_t i = 0; i < a->nrcpt; i++) {
		assert_str_eq(a->rcpt[i].addr, b->rcpt[i].addr);
		assert_str_eq(a->rcpt[i].orcpt, b->rcpt[i].orcpt);
		assert_int_equal(a->rcpt[i].notify, b->rcpt[i].notify);
		assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
		assert_int_equal(a->rcpt[i].attempts, b->rcpt[i].attempts);
		assert_int_equal(a->rcpt[i].next_attempt, b->rcpt[i].next_attempt);
		assert_str_eq(a->rcpt[i].last_reply, b->rcpt[i].last_reply);
	}
}

static char *spool_file(struct fx *fx, const char *name)
{
	return xasprintf("%s/spool/%s", fx->dir, name);
}

static char *seg_file(struct fx *fx, uint64_t seq)
{
	return xasprintf("%s/spool/seg-%016llx.log", fx->dir, (unsigned long long)seq);
}

/* Sequence numbers of the segment files present, ascending; returns the count. */
static size_t list_segs(struct fx *fx, uint64_t *seqs, size_t max)
{
	char *d = spool_file(fx, "");
	DIR *dir = opendir(d);
	size_t n = 0;
	struct dirent *de;
	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL) {
		unsigned long long seq;
		if (sscanf(de->d_name, "seg-%16llx.log", &seq) == 1 && n < max)
			seqs[n++] = seq;
	}
	closedir(dir);
	free(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && seqs[j - 1] > seqs[j]; j--) {
			uint64_t t = seqs[j];
			seqs[j] = seqs[j - 1];
			seqs[j - 1] = t;
		}
	return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	char *p = NULL;
	assert_int_equal(file_read_all(path, 1 << 28, &p, len), RC_OK);
	return (uint8_t *)p;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* Record boundaries of a segment image, parsed independently of the spool code:
 * each record is 20 header bytes plus the u32 length at offset 8. */
struct recpos {
	uint64_t off, end;
	unsigned type;
};

static size_t parse_records(const uint8_t *p, size_t len, struct recpos *out, size_t max)
{
	size_t n = 0;
	for (uint64_t off = 0; off + 20 <= len && n < max;) {
		uint64_t plen = (uint64_t)p[off + 8] | (uint64_t)p[off + 9] << 8 |
		                (uint64_t)p[off + 10] << 16 | (uint64_t)p[off + 11] << 24;
		out[n] = (struct recpos){off, off + 20 + plen, p[off + 5]};
		off = out[n++].end;
	}
	return n;
}

/* ---- pure pieces ---- */

static void test_crc32c(void **state)
{
	assert_int_equal(spool_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(spool_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t n = 0; n < sizeof buf; n += 37) {
		assert_int_equal(spool_crc32c(0, buf, n), spool_crc32c_sw(0, buf, n));
		uint32_t split = spool_crc32c(spool_crc32c(0, buf, n / 3), buf + n / 3, n - n / 3);
		assert_int_equal(split, spool_crc32c_sw(0, buf, n));
	}
}

/* The id map under churn: inserts, deletions (backward shift), growth. */
static void test_map(void **state)
{
	struct spool_map m = {0};
	enum { N = 6000 };
	static uint64_t ids[N];
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ids[i] = i % 3 ? x : (uint64_t)i + 1; /* clustered and scattered ids */
		struct spool_msg *msg = xcalloc(1, sizeof *msg);
		msg->env = xcalloc(1, sizeof *msg->env);
		msg->env->id = ids[i];
		spool_map_put(&m, msg);
	}
	assert_int_equal(m.n, N);
	for (size_t i = 0; i < N; i += 2) {
		struct spool_msg *msg = spool_map_del(&m, ids[i]);
		assert_non_null(msg);
		assert_int_equal(msg->env->id, ids[i]);
		spool_env_free(msg->env);
		free(msg);
	}
	for (size_t i = 0; i < N; i++) {
		struct spool_msg *msg = spool_map_get(&m, ids[i]);
		if (i % 2)
			assert_true(msg != NULL && msg->env->id == ids[i]);
		else
			assert_null(msg);
	}
	assert_null(spool_map_del(&m, 0xdeadbeef));
	assert_int_equal(m.n, N / 2);
	spool_map_fini(&m);
}

/* ---- commit and recover ---- */

struct commit_case {
	const char *label;
	struct spool_env *(*make)(void);
	size_t body_len; /* pseudo-random bytes (NUL and magic included) */
};

static struct spool_env *make_plain(void)
{
	return env_new("alice@example.org", 1);
}

static struct spool_env *make_dsn(void)
{
	struct spool_env *e = env_new("", 2);
	free(e->user);
	free(e->client);
	free(e->helo);
	e->user = e->client = e->helo = NULL;
	e->envid = xstrdup("ENV-123+2B");
	e->flags = SPOOL_F_8BITMIME | SPOOL_F_RET_HDRS;
	e->rcpt[0].orcpt = xstrdup("rfc822;bob@example.net");
	e->rcpt[0].notify = SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY;
	e->rcpt[1].notify = SPOOL_NOTIFY_NEVER;
	return e;
}

static struct spool_env *make_many(void)
{
	struct spool_env *e = env_new("bulk@example.org", 60);
	for (size_t i = 0; i < e->nrcpt; i++) {
		e->rcpt[i].state = i % 3 == 1 ? SPOOL_RCPT_DELIVERED : SPOOL_RCPT_QUEUED;
		e->rcpt[i].attempts = (uint32_t)i;
		e->rcpt[i].next_attempt = (int64_t)i * 1000 - 5;
		if (i % 2)
			e->rcpt[i].last_reply = xasprintf("451 4.7.1 greylisted %zu", i);
	}
	return e;
}

static struct spool_env *make_utf8(void)
{
	struct spool_env *e = env_new("j\xc3\xb6rg@b\xc3\xbc"
	                              "cher.example",
	                              1);
	e->flags = SPOOL_F_SMTPUTF8 | SPOOL_F_8BITMIME;
	free(e->rcpt[0].addr);
	e->rcpt[0].addr = xstrdup("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example");
	return e;
}

static const struct commit_case commit_cases[] = {
    {"plain message", make_plain, 200},
    {"null sender, DSN fields, NULL strings", make_dsn, 1},
    {"sixty recipients with state", make_many, 5000},
    {"empty body", make_plain, 0},
    {"3 MiB body", make_plain, 3u << 20},
    {"SMTPUTF8 addresses", make_utf8, 77},
};

static uint8_t *random_body(size_t n, uint32_t seed)
{
	uint8_t *p = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
	if (n >= 24)
		memcpy(p + n / 2, "RVSP", 4); /* the record magic inside a body */
	return p;
}

static void test_commit_reopen(void **state)
{
	struct fx *fx = *state;
	for (size_t c = 0; c < ARRAY_LEN(commit_cases); c++) {
		const struct commit_case *cc = &commit_cases[c];
		print_message("case: %s\n", cc->label);
		uint8_t *body = random_body(cc->body_len, (uint32_t)c);
		struct spool_env *want = cc->make();
		struct spool *sp = open_rw(fx);
		uint64_t id = 0;
		assert_int_equal(commit_wait(fx, sp, spool_env_dup(want), body, cc->body_len, &id),
		                 RC_OK);
		want->id = id;
		want->body_size = cc->body_len;
		for (int pass = 0; pass < 3; pass++) {
			struct spool_env *got = NULL;
			assert_int_equal(spool_get(sp, id, &got), RC_OK);
			assert_env_eq(got, want);
			assert_body(sp, id, body, cc->body_len);
			spool_env_free(got);
			assert_int_equal(spool_quarantined(sp), 0);
			spool_close(sp);
			sp = pass == 0 ? open_rw(fx) : open_ro(fx);
		}
		assert_int_equal(spool_delete(sp, id), RC_INVALID); /* read-only */
		spool_close(sp);
		sp = open_rw(fx);
		assert_int_equal(spool_delete(sp, id), RC_OK);
		spool_close(sp);
		spool_env_free(want);
		free(body);
	}
}

static void test_commit_refused(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	struct spool_env *none = env_new("a@example.org", 0);
	assert_int_equal(commit_wait(fx, sp, none, "x", 1, NULL), RC_INVALID);
	uint64_t id = commit_text(fx, sp, "hello\r\n");
	struct spool_env *dup = env_new("a@example.org", 1);
	dup->id = id;
	assert_int_equal(commit_wait(fx, sp, dup, "y", 1, NULL), RC_EXISTS);
	assert_int_equal(spool_count(sp), 1);
	spool_close(sp);
	sp = open_ro(fx);
	struct waiter w = {0};
	spool_commit(sp, env_new("a@example.org", 1), NULL, fx->base, on_commit, &w, 1);
	wait_for(fx->base, &w, 1);
	assert_int_equal(w.last, RC_INVALID);
	assert_int_equal(
	    spool_rcpt_update(sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL, NULL, NULL, NULL, 0),
	    RC_INVALID);
	spool_close(sp);
}

/* ---- group commit from two threads ---- */

#define PER_THREAD 250

struct worker {
	struct spool *sp;
	int tag;
	uint64_t ids[PER_THREAD];
	struct waiter w;
};

static char *worker_body(int tag, int i, size_t *len)
{
	char *b = xasprintf("Subject: t%d-%d\r\n\r\n%0*d\r\n", tag, i, (i * 37) % 2000 + 1, i);
	*len = strlen(b);
	return b;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct event_base *base = event_base_new();
	wk->w.ids = wk->ids;
	for (int i = 0; i < PER_THREAD; i++) {
		size_t len;
		char *b = worker_body(wk->tag, i, &len);
		spool_commit(wk->sp, env_new("t@example.org", 2), body_new(b, len), base, on_commit,
		             &wk->w, (uint64_t)i);
		free(b);
	}
	wait_for(base, &wk->w, PER_THREAD);
	event_base_free(base);
	return NULL;
}

static void test_concurrent_commits(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	struct worker wk[2] = {{.sp = sp, .tag = 0}, {.sp = sp, .tag = 1}};
	pthread_t th[2];
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_create(&th[t], NULL, worker_main, &wk[t]), 0);
	for (int t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < 2; t++)
		assert_int_equal(wk[t].w.ok, PER_THREAD);
	assert_int_equal(spool_count(sp), 2 * PER_THREAD);
	spool_close(sp);
	sp = open_rw(fx);
	assert_int_equal(spool_count(sp), 2 * PER_THREAD);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < PER_THREAD; i++) {
			size_t len;
			char *b = worker_body(t, i, &len);
			assert_body(sp, wk[t].ids[i], b, len);
			free(b);
		}
	spool_close(sp);
}

/* ---- recipient state, delete, hold ---- */

static void assert_rcpt(struct spool *sp, uint64_t id, size_t idx, enum spool_rcpt_state st,
                        uint32_t attempts, int64_t next, const char *reply)
{
	struct spool_env *e = NULL;
	assert_int_equal(spool_get(sp, id, &e), RC_OK);
	assert_int_equal(e->rcpt[idx].state, st);
	assert_int_equal(e->rcpt[idx].attempts, attempts);
	assert_int_equal(e->rcpt[idx].next_attempt, next);
	assert_str_eq(e->rcpt[idx].last_reply, reply);
	spool_env_free(e);
}

static void test_rcpt_update_reopen(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	uint64_t id = 0;
	const char *text = "Subject: state\r\n\r\nbody\r\n";
	assert_int_equal(commit_wait(fx, sp, env_new("s@example.org", 3), text, strlen(text), &id),
	                 RC_OK);
	assert_int_equal(
	    spool_rcpt_update(sp, id, 3, SPOOL_RCPT_DELIVERED, 1, 0, NULL, NULL, NULL, NULL, 0),
	    RC_NOTFOUND);
	assert_int_equal(
	    spool_rcpt_update(sp, id + 1, 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL, NULL, NULL, NULL, 0),
	    RC_NOTFOUND);
	update_wait(fx, sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, "250 2.0.0 ok");
	update_wait(fx, sp, id, 1, SPOOL_RCPT_QUEUED, 2, 1700000000123, "451 4.7.1 later");
	update_wait(fx, sp, id, 2, SPOOL_RCPT_FAILED, 1, 0, "550 5.1.1 no such user");
	for (int pass = 0; pass < 2; pass++) {
		assert_rcpt(sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, "250 2.0.0 ok");
		assert_rcpt(sp, id, 1, SPOOL_RCPT_QUEUED, 2, 1700000000123, "451 4.7.1 later");
		assert_rcpt(sp, id, 2, SPOOL_RCPT_FAILED, 1, 0, "550 5.1.1 no such user");
		spool_close(sp);
		sp = open_rw(fx);
	}
	/* Delivered + bounced everywhere: finished, gone at once and after reopen. */
	update_wait(fx, sp, id, 1, SPOOL_RCPT_DELIVERED, 3, 0, NULL);
	assert_int_equal(spool_count(sp), 1); /* failed is not final: a bounce is due */
	update_wait(fx, sp, id, 2, SPOOL_RCPT_BOUNCED, 1, 0, NULL);
	struct spool_env *e = NULL;
	assert_int_equal(spool_get(sp, id, &e), RC_NOTFOUND);
	spool_close(sp);
	sp = open_ro(fx);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
}

/* The counts say when a message is finished or a bounce due, without a copy;
 * the finished envelope stays readable a while (spool_get_final). */
static void test_tally_and_final(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	uint64_t id = 0;
	const char *text = "Subject: tally\r\n\r\nbody\r\n";
	assert_int_equal(commit_wait(fx, sp, env_new("s@example.org", 3), text, strlen(text), &id),
	                 RC_OK);
	struct spool_tally t;
	struct spool_env *e = NULL;
	assert_int_equal(spool_tally(sp, id + 1, &t), RC_NOTFOUND);
	assert_int_equal(spool_tally(sp, id, &t), RC_OK);
	assert_true(t.nrcpt == 3 && t.queued == 3 && t.failed == 0 && !t.held);
	update_wait(fx, sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, "250 ok");
	update_wait(fx, sp, id, 1, SPOOL_RCPT_FAILED, 1, 0, "550 no");
	update_wait(fx, sp, id, 1, SPOOL_RCPT_FAILED, 1, 0, "550 no"); /* same state again */
	assert_int_equal(spool_tally(sp, id, &t), RC_OK);
	assert_true(t.queued == 1 && t.failed == 1);
	assert_int_equal(spool_get_final(sp, id, &e), RC_NOTFOUND);	/* still live */
	update_wait(fx, sp, id, 2, SPOOL_RCPT_DELIVERED, 2, 0, "250 ok 2");
	assert_int_equal(spool_tally(sp, id, &t), RC_OK);
	assert_true(t.queued == 0 && t.failed == 1);	/* a bounce is due */
	update_wait(fx, sp, id, 1, SPOOL_RCPT_BOUNCED, 1, 0, "550 no");
	assert_int_equal(spool_tally(sp, id, &t), RC_NOTFOUND);	/* finished */
	assert_int_equal(spool_get(sp, id, &e), RC_NOTFOUND);
	assert_int_equal(spool_get_final(sp, id, &e), RC_OK);
	assert_int_equal(e->rcpt[2].state, SPOOL_RCPT_DELIVERED);
	assert_int_equal(e->rcpt[2].attempts, 2);
	assert_string_equal(e->rcpt[2].last_reply, "250 ok 2");
	assert_int_equal(e->rcpt[1].state, SPOOL_RCPT_BOUNCED);
	spool_env_free(e);
	/* a reopened spool has no news: the ring starts empty */
	spool_close(sp);
	sp = open_rw(fx);
	assert_int_equal(spool_get_final(sp, id, &e), RC_NOTFOUND);
	spool_close(sp);
}

static bool is_held(struct spool *sp, uint64_t id)
{
	struct spool_env *e = NULL;
	assert_int_equal(spool_get(sp, id, &e), RC_OK);
	bool held = (e->flags & SPOOL_F_HELD) != 0;
	spool_env_free(e);
	return held;
}

static void test_delete_hold_reopen(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	uint64_t a = commit_text(fx, sp, "A\r\n"), b = commit_text(fx, sp, "B\r\n");
	uint64_t c = commit_text(fx, sp, "C\r\n");
	assert_int_equal(spool_hold(sp, a, true), RC_OK);
	assert_int_equal(spool_hold(sp, a, true), RC_OK);
	assert_int_equal(spool_delete(sp, b), RC_OK);
	assert_int_equal(spool_delete(sp, b), RC_NOTFOUND);
	assert_int_equal(spool_hold(sp, b, true), RC_NOTFOUND);
	assert_true(is_held(sp, a));
	spool_close(sp);
	sp = open_rw(fx);
	assert_int_equal(spool_count(sp), 2);
	assert_true(is_held(sp, a));
	assert_false(is_held(sp, c));
	struct spool_env *e = NULL;
	assert_int_equal(spool_get(sp, b, &e), RC_NOTFOUND);
	assert_int_equal(spool_hold(sp, a, false), RC_OK);
	spool_close(sp);
	sp = open_ro(fx);
	assert_false(is_held(sp, a));
	spool_close(sp);
}

/* The asynchronous delete and hold: unknown ids are refused at once, the
 * callback runs on the base (never before the caller returns to its loop), a
 * hold that changes nothing still calls back, and what they did survives a
 * reopen. */
static void test_delete_hold_async(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	uint64_t a = commit_text(fx, sp, "A\r\n"), b = commit_text(fx, sp, "B\r\n");
	struct waiter w = {0};
	assert_int_equal(spool_hold_async(sp, a, true, fx->base, on_commit, &w, 1), RC_OK);
	assert_int_equal(w.done, 0); /* answered on the loop, not inside the call */
	wait_for(fx->base, &w, 1);
	assert_int_equal(w.last, RC_OK);
	assert_int_equal(w.last_id, a);
	assert_true(is_held(sp, a));
	assert_int_equal(spool_hold_async(sp, a, true, fx->base, on_commit, &w, 2), RC_OK);
	assert_int_equal(w.done, 1);
	wait_for(fx->base, &w, 2);
	assert_int_equal(w.last, RC_OK);
	assert_int_equal(spool_delete_async(sp, b, fx->base, on_commit, &w, 3), RC_OK);
	wait_for(fx->base, &w, 3);
	assert_int_equal(w.last, RC_OK);
	assert_int_equal(spool_delete_async(sp, b, fx->base, on_commit, &w, 4), RC_NOTFOUND);
	assert_int_equal(spool_hold_async(sp, b, true, fx->base, on_commit, &w, 5), RC_NOTFOUND);
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	assert_int_equal(w.done, 3);
	spool_close(sp);
	sp = open_ro(fx);
	assert_int_equal(spool_count(sp), 1);
	assert_true(is_held(sp, a));
	assert_int_equal(spool_delete_async(sp, a, fx->base, on_commit, &w, 6), RC_INVALID);
	spool_close(sp);
}

/* commit_to - a message from sender to the given recipients; its id. */
static uint64_t commit_to(struct fx *fx, struct spool *sp, uint32_t flags, const char *const *rcpts,
                          size_t n)
{
	struct spool_env *e = env_new("a@example.org", n);
	e->flags = flags;
	for (size_t i = 0; i < n; i++) {
		free(e->rcpt[i].addr);
		e->rcpt[i].addr = xstrdup(rcpts[i]);
	}
	uint64_t id = 0;
	assert_int_equal(commit_wait(fx, sp, e, "x\r\n", 3, &id), RC_OK);
	return id;
}

/* spool_stats: waiting recipients by state and stream, final ones left out, the
 * oldest message, and the destinations with the most recipients (case folded). */
static void test_stats(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	struct spool_stats st;
	spool_stats(sp, true, &st);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.ntop, 0);
	assert_int_equal(st.oldest, 0);
	static const char *const m1[] = {"a@big.test", "b@BIG.test", "c@small.test"};
	static const char *const m2[] = {"d@big.test", "e@mid.test", "f@mid.test"};
	static const char *const m3[] = {"g@held.test"};
	uint64_t a = commit_to(fx, sp, 0, m1, 3);
	uint64_t b = commit_to(fx, sp, SPOOL_F_BULK, m2, 3);
	uint64_t c = commit_to(fx, sp, 0, m3, 1);
	update_wait(fx, sp, a, 2, SPOOL_RCPT_DELIVERED, 1, 0, "250 ok"); /* final: not counted */
	update_wait(fx, sp, b, 1, SPOOL_RCPT_QUEUED, 1, time_now_ms() + 60000, "451 later");
	assert_int_equal(spool_hold(sp, c, true), RC_OK);
	spool_stats(sp, true, &st);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.rcpts[SPOOL_STATS_ACTIVE][0], 2);	/* a@, b@big */
	assert_int_equal(st.rcpts[SPOOL_STATS_ACTIVE][1], 2);	/* d@big, f@mid (bulk) */
	assert_int_equal(st.rcpts[SPOOL_STATS_DEFERRED][1], 1);	/* e@mid */
	assert_int_equal(st.rcpts[SPOOL_STATS_DEFERRED][0], 0);
	assert_int_equal(st.rcpts[SPOOL_STATS_HELD][0], 1);
	assert_true(st.oldest > 0 && st.oldest <= time_now_ms());
	assert_int_equal(st.ntop, 3);
	assert_string_equal(st.top[0].domain, "big.test");
	assert_int_equal(st.top[0].rcpts, 3);
	assert_string_equal(st.top[1].domain, "mid.test");
	assert_int_equal(st.top[1].rcpts, 2);
	assert_int_equal(st.top[2].rcpts, 1);
	assert_string_equal(spool_stats_state_name(SPOOL_STATS_DEFERRED), "deferred");
	int err = -1;
	assert_int_equal(spool_probe_write(sp, &err), RC_OK);
	assert_int_equal(err, 0);
	spool_close(sp);
}

/* More destinations than SPOOL_STATS_TOP: the largest ten, largest first. */
static void test_stats_top_ten(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	char *rcpts[80];
	size_t n = 0;
	for (int d = 0; d < 12; d++) /* domain dN gets N+1 recipients, up to 12 */
		for (int k = 0; k <= d; k++)
			rcpts[n++] = xasprintf("u%d@d%02d.test", k, d);
	commit_to(fx, sp, 0, (const char *const *)rcpts, n);
	struct spool_stats st;
	spool_stats(sp, true, &st);
	assert_int_equal(st.ntop, SPOOL_STATS_TOP);
	for (size_t i = 0; i + 1 < st.ntop; i++)
		assert_true(st.top[i].rcpts >= st.top[i + 1].rcpts);
	assert_string_equal(st.top[0].domain, "d11.test");
	assert_int_equal(st.top[0].rcpts, 12);
	assert_string_equal(st.top[9].domain, "d02.test");
	assert_int_equal(st.top[9].rcpts, 3);
	spool_stats(sp, false, &st);
	assert_int_equal(st.ntop, 0);
	for (size_t i = 0; i < n; i++)
		free(rcpts[i]);
	spool_close(sp);
}

struct collect {
	uint64_t ids[16];
	size_t n, stop_after;
};

static bool collect_fn(void *arg, const struct spool_env *env)
{
	struct collect *c = arg;
	c->ids[c->n++] = env->id;
	return c->n < c->stop_after;
}

static void test_foreach_order(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	static const uint64_t ids[] = {0x500, 0x100, 0x900, 0x300, 0x700};
	for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
		struct spool_env *e = env_new("o@example.org", 1);
		e->id = ids[i];
		assert_int_equal(commit_wait(fx, sp, e, "x", 1, NULL), RC_OK);
	}
	struct collect c = {.stop_after = 99};
	spool_foreach(sp, collect_fn, &c);
	assert_int_equal(c.n, 5);
	for (size_t i = 0; i < c.n; i++)
		assert_int_equal(c.ids[i], 0x100 + 0x200 * i);
	struct collect early = {.stop_after = 2};
	spool_foreach(sp, collect_fn, &early);
	assert_int_equal(early.n, 2);
	spool_close(sp);
}

/* ---- torn tails and damaged records ---- */

/* A segment image: SEG, M1, M2, M3, RCPT(M2 finished), M4 as written by the spool. */
static uint8_t *make_segment(struct fx *fx, size_t *len, uint64_t ids[4])
{
	struct spool *sp = open_rw(fx);
	for (int i = 0; i < 4; i++) {
		char *t =
		    xasprintf("Subject: m%d\r\n\r\n%.*s\r\n", i, 10 + 40 * i,
		              "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij"
		              "klmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs");
		ids[i] = commit_text(fx, sp, t);
		free(t);
		if (i == 2)
			update_wait(fx, sp, ids[1], 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL);
	}
	spool_close(sp);
	char *path = seg_file(fx, 1);
	uint8_t *img = slurp(path, len);
	free(path);
	rm_rf(fx->dir);
	mkdir(fx->dir, 0700);
	return img;
}

/* Write img[0..len) as the only segment of a fresh spool in fx->dir. */
static void install_segment(struct fx *fx, const uint8_t *img, size_t len)
{
	rm_rf(fx->dir);
	assert_int_equal(mkdir(fx->dir, 0700), 0);
	char *d = spool_file(fx, "");
	assert_int_equal(mkdir(d, 0700), 0);
	free(d);
	char *path = seg_file(fx, 1);
	spit(path, img, len);
	free(path);
}

static void test_torn_tail(void **state)
{
	struct fx *fx = *state;
	size_t len;
	uint64_t ids[4];
	uint8_t *img = make_segment(fx, &len, ids);
	struct recpos rp[8];
	size_t nrec = parse_records(img, len, rp, 8);
	assert_int_equal(nrec, 6);
	assert_int_equal(rp[nrec - 1].end, len);
	assert_int_equal(rp[4].type, SPOOL_REC_RCPT);
	for (size_t cut = 0; cut <= len; cut++) {
		size_t whole = 0, msgs = 0;
		uint64_t end = 0;
		for (size_t r = 0; r < nrec && rp[r].end <= cut; r++, whole++) {
			msgs += rp[r].type == SPOOL_REC_MSG;
			msgs -= rp[r].type == SPOOL_REC_RCPT; /* finishes M2 */
			end = rp[r].end;
		}
		for (int mode = 0; mode < 2; mode++) {
			install_segment(fx, img, cut);
			struct spool *sp = mode ? open_rw(fx) : open_ro(fx);
			if (spool_count(sp) != msgs || spool_quarantined(sp) != 0)
				fail_msg("cut=%zu mode=%d count=%zu want=%zu", cut, mode,
				         spool_count(sp), msgs);
			if (whole >= 2)
				assert_body(sp, ids[0], img + rp[1].end - 27, 27);
			spool_close(sp);
			/* RDWR cut the torn tail (or reclaimed the segment if nothing lived). */
			char *path = seg_file(fx, 1);
			if (mode == 1 && msgs == 0)
				assert_int_not_equal(access(path, F_OK), 0);
			else
				assert_int_equal(file_size(path), mode ? end : cut);
			free(path);
		}
	}
	free(img);
}

struct flip_case {
	const char *label;
	size_t rec; /* record index in the image (0 = SEG) */
	long at;    /* byte in it; negative: from its end */
	size_t count, quarantined;
};

static const struct flip_case flip_cases[] = {
    {"middle record: magic", 2, 0, 3, 1},
    {"middle record: length", 2, 9, 3, 1},
    {"middle record: header crc", 2, 17, 3, 1},
    {"middle record: envelope", 2, 26, 3, 1},
    {"middle record: body", 2, -3, 3, 1},
    {"state record: payload", 4, -1, 4, 1}, /* M2's final state lost: M2 lives */
    {"last record: header (torn tail)", 5, 5, 2, 0},
    {"last record: body (torn tail)", 5, -2, 2, 0},
};

static void test_flipped_byte(void **state)
{
	struct fx *fx = *state;
	size_t len;
	uint64_t ids[4];
	uint8_t *img = make_segment(fx, &len, ids);
	struct recpos rp[8];
	assert_int_equal(parse_records(img, len, rp, 8), 6);
	for (size_t c = 0; c < ARRAY_LEN(flip_cases); c++) {
		const struct flip_case *fc = &flip_cases[c];
		print_message("case: %s\n", fc->label);
		const struct recpos *r = &rp[fc->rec];
		uint64_t at = fc->at >= 0 ? r->off + (uint64_t)fc->at : r->end - (uint64_t)-fc->at;
		uint8_t *bad = xmalloc(len);
		memcpy(bad, img, len);
		bad[at] ^= 0x20;
		for (int mode = 0; mode < 2; mode++) {
			install_segment(fx, bad, len);
			struct spool *sp = mode ? open_rw(fx) : open_ro(fx);
			assert_int_equal(spool_count(sp), fc->count);
			assert_int_equal(spool_quarantined(sp), fc->quarantined);
			spool_close(sp);
			char *q = xasprintf("%s/spool/quarantine/seg-%016llx-%llu.rec", fx->dir,
			                    1ull, (unsigned long long)r->off);
			bool want_copy = mode == 1 && fc->quarantined == 1;
			assert_int_equal(access(q, F_OK) == 0, want_copy);
			if (want_copy) {
				size_t qlen;
				uint8_t *qb = slurp(q, &qlen);
				assert_int_equal(qlen, r->end - r->off);
				assert_memory_equal(qb, bad + r->off, qlen);
				free(qb);
			}
			free(q);
		}
		free(bad);
	}
	free(img);
}

/* Damage at the end of a segment that is not the last one is quarantined, not
 * taken for a torn tail, whether or not the next segment records its length. */
static void test_older_segment_damage(void **state)
{
	struct fx *fx = *state;
	size_t len;
	uint64_t ids[4];
	uint8_t *img = make_segment(fx, &len, ids);
	img[len - 2] ^= 0x01;
	for (int marker = 0; marker < 2; marker++) {
		install_segment(fx, img, len);
		struct spool_buf next = {0};
		struct spool_rec seg = {.type = SPOOL_REC_SEG};
		seg.u.seg = (struct spool_rec_seg){2, 1, len};
		if (marker)
			spool_rec_encode_small(&next, &seg);
		char *path = seg_file(fx, 2);
		spit(path, next.p, next.len);
		free(path);
		spool_buf_free(&next);
		for (int mode = 0; mode < 2; mode++) {
			struct spool *sp = mode ? open_rw(fx) : open_ro(fx);
			assert_int_equal(spool_count(sp), 2);
			assert_int_equal(spool_quarantined(sp), 1);
			spool_close(sp);
		}
	}
	free(img);
}

/* ---- injected failures ----
 *
 * For each seam and each call index K, a child process (this binary re-executed
 * with RELEVO_FAULT="<op>:K...") runs a fixed scenario and writes down what every
 * operation returned. The parent then reopens the spool and checks the promise:
 * whatever was reported OK is there with its bytes, whatever was reported RC_IO
 * is not, and nothing was quarantined. The sweep stops at the first K the
 * scenario never reaches.
 */

static const char *const child_bodies[] = {"A\r\n", "Bee\r\n", "Cees\r\n", "Dees!\r\n"};

static int fault_child(const char *dir)
{
	struct fx fx = {.dir = (char *)dir};
	char *rpath = xasprintf("%s/results", dir);
	FILE *out = fopen(rpath, "w");
	free(rpath);
	if (out == NULL)
		return 3;
	core_threads_init();
	log_set_level(LOG_LV_ERR);
	fx.base = event_base_new();
	struct spool *sp = NULL;
	enum rc rc = spool_open(dir, SPOOL_RDWR, &sp);
	fprintf(out, "open %d\n", (int)rc);
	if (rc == RC_OK) {
		uint64_t ids[ARRAY_LEN(child_bodies)];
		for (size_t i = 0; i < ARRAY_LEN(child_bodies); i++) {
			rc = commit_wait(&fx, sp, env_new("f@example.org", 2), child_bodies[i],
			                 strlen(child_bodies[i]), &ids[i]);
			fprintf(out, "commit %zu %llx %d\n", i, (unsigned long long)ids[i],
			        (int)rc);
			if (i == 1 && rc == RC_OK)
				fprintf(out, "hold %llx %d\n", (unsigned long long)ids[i],
				        (int)spool_hold(sp, ids[i], true));
		}
		spool_close(sp);
	}
	event_base_free(fx.base);
	fclose(out);
	return 0;
}

/* Run the scenario in a child with RELEVO_FAULT=fault; 0 if it exited cleanly. */
static int run_child(const char *dir, const char *fault)
{
	pid_t pid = fork();
	if (pid == 0) {
		char *log = xasprintf("%s/child.log", dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		setenv("RELEVO_FAULT", fault, 1);
		execl("/proc/self/exe", "test_spool", "--fault-child", dir, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Check the child's reported results against a fresh open; returns failures seen. */
static int verify_child(struct fx *fx)
{
	char *rpath = xasprintf("%s/results", fx->dir);
	FILE *in = fopen(rpath, "r");
	free(rpath);
	assert_non_null(in);
	struct spool *sp = open_rw(fx);
	assert_int_equal(spool_quarantined(sp), 0);
	char line[256];
	int failed = 0;
	size_t ok = 0;
	while (fgets(line, sizeof line, in)) {
		unsigned long long id = 0;
		int rc = 0;
		size_t i = 0;
		if (sscanf(line, "open %d", &rc) == 1) {
			failed += rc != RC_OK;
		} else if (sscanf(line, "commit %zu %llx %d", &i, &id, &rc) == 3) {
			struct spool_env *e = NULL;
			assert_int_equal(rc == RC_OK ? RC_OK : RC_IO, rc);
			assert_int_equal(spool_get(sp, id, &e), rc == RC_OK ? RC_OK : RC_NOTFOUND);
			if (rc == RC_OK)
				assert_body(sp, id, child_bodies[i], strlen(child_bodies[i]));
			spool_env_free(e);
			failed += rc != RC_OK;
			ok += rc == RC_OK;
		} else if (sscanf(line, "hold %llx %d", &id, &rc) == 2) {
			assert_int_equal(is_held(sp, id), rc == RC_OK);
			failed += rc != RC_OK;
		}
	}
	fclose(in);
	assert_int_equal(spool_count(sp), ok);
	spool_close(sp);
	return failed;
}

static const struct {
	const char *label;
	const char *op, *also; /* RELEVO_FAULT = "<op>:K<also>" */
} fault_sweeps[] = {
    {"write #K fails (half of it written)", "write", ""},
    {"fdatasync/fsync #K fails", "fsync", ""},
    {"fsync #K fails and every truncate fails: rotate", "fsync", ",truncate:1+"},
    {"write #K fails and every truncate fails: rotate", "write", ",truncate:1+"},
};

static void test_fault_injection(void **state)
{
	struct fx *fx = *state;
	for (size_t c = 0; c < ARRAY_LEN(fault_sweeps); c++) {
		print_message("case: %s\n", fault_sweeps[c].label);
		int hit_commit = 0, k;
		for (k = 1; k < 60; k++) {
			rm_rf(fx->dir);
			assert_int_equal(mkdir(fx->dir, 0700), 0);
			char *fault =
			    xasprintf("%s:%d%s", fault_sweeps[c].op, k, fault_sweeps[c].also);
			int status = run_child(fx->dir, fault);
			if (status != 0) {
				char *log = xasprintf("%s/child.log", fx->dir);
				char *text = NULL;
				file_read_all(log, 1 << 20, &text, NULL);
				fail_msg("RELEVO_FAULT=%s: child exited %d:\n%s", fault, status,
				         text ? text : "");
			}
			free(fault);
			int failed = verify_child(fx);
			hit_commit += failed > 0;
			if (failed == 0)
				break; /* the scenario no longer reaches call K */
		}
		print_message("      %d runs, %d with a failure reported\n", k, hit_commit);
		assert_true(k < 60);
		assert_true(hit_commit >= 3);
	}
}

/* ---- lock, read-only, directories ---- */

static void test_lock_and_rdonly(void **state)
{
	struct fx *fx = *state;
	struct spool *rw = open_rw(fx), *other = NULL;
	assert_int_equal(spool_open(fx->dir, SPOOL_RDWR, &other), RC_EXISTS);
	uint64_t a = commit_text(fx, rw, "first\r\n");
	struct spool *ro = open_ro(fx);
	assert_int_equal(spool_count(ro), 1);
	assert_body(ro, a, "first\r\n", 7);
	spool_close(ro);
	/* A daemon in the middle of an append: half a header at the end of its segment. */
	uint64_t segs[8];
	size_t n = list_segs(fx, segs, 8);
	char *path = seg_file(fx, segs[n - 1]);
	uint64_t size = file_size(path);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "RVSP\x01\x02", 6), 6);
	close(fd);
	ro = open_ro(fx);
	assert_int_equal(spool_count(ro), 1);
	assert_int_equal(spool_quarantined(ro), 0);
	spool_close(ro);
	assert_int_equal(file_size(path), size + 6); /* read-only wrote nothing */
	spool_close(rw);
	rw = open_rw(fx); /* the lock is free again; the torn tail is cut */
	assert_int_equal(file_size(path), size);
	assert_int_equal(spool_count(rw), 1);
	spool_close(rw);
	free(path);
}

static void test_rdonly_missing(void **state)
{
	struct fx *fx = *state;
	char *d = xasprintf("%s/nothing-here", fx->dir);
	struct spool *sp = NULL;
	assert_int_equal(spool_open(d, SPOOL_RDONLY, &sp), RC_OK);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	assert_int_not_equal(access(d, F_OK), 0);
	free(d);
}

static void assert_mode(const char *path, mode_t want)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, want);
}

static void test_permissions(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	commit_text(fx, sp, "x\r\n");
	spool_close(sp);
	const struct {
		const char *name;
		mode_t mode;
	} want[] = {
	    {"", 0700}, {"quarantine", 0700}, {"lock", 0600}, {"seg-0000000000000001.log", 0600}};
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		char *p = spool_file(fx, want[i].name);
		assert_mode(p, want[i].mode);
		free(p);
	}
}

static void test_ids_bumped(void **state)
{
	struct fx *fx = *state;
	uint64_t big = id_next() + (1ull << 40); /* ~4096 s ahead */
	struct spool *sp = open_rw(fx);
	struct spool_env *e = env_new("f@example.org", 1);
	e->id = big;
	assert_int_equal(commit_wait(fx, sp, e, "x", 1, NULL), RC_OK);
	spool_close(sp);
	assert_true(id_next() < big);
	sp = open_ro(fx);
	assert_true(id_next() > big);
	spool_close(sp);
}

/* ---- reclaiming segments ---- */

#define CHURN "Subject: churn\r\n\r\n0123456789012345678901234567890123456789\r\n"

static size_t wait_segs(struct fx *fx, size_t want, uint64_t *segs)
{
	size_t n = 0;
	for (int i = 0; i < 500 && (n = list_segs(fx, segs, 64)) > want; i++)
		usleep(10000);
	return n;
}

/* A big long-lived message pins its segment (and so every later one) while the
 * small ones around it finish; once it finishes, everything before the current
 * segment goes. */
static void test_reclaim_pinned(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	spool_set_segment_max(sp, 1024);
	uint8_t *big = random_body(3000, 9);
	uint64_t keep = 0, segs[64];
	assert_int_equal(commit_wait(fx, sp, env_new("k@example.org", 1), big, 3000, &keep), RC_OK);
	for (int i = 0; i < 40; i++) {
		uint64_t id = commit_text(fx, sp, CHURN);
		update_wait(fx, sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, "250 ok");
		update_wait(fx, sp, keep, 0, SPOOL_RCPT_QUEUED, (uint32_t)i + 1, i, "451 later");
	}
	size_t n = list_segs(fx, segs, 64);
	assert_true(n > 4);
	assert_int_equal(segs[0], 1); /* holds the live message: never deleted */
	spool_close(sp);
	sp = open_rw(fx);
	assert_int_equal(spool_count(sp), 1);
	assert_rcpt(sp, keep, 0, SPOOL_RCPT_QUEUED, 40, 39, "451 later");
	assert_body(sp, keep, big, 3000);
	update_wait(fx, sp, keep, 0, SPOOL_RCPT_DELIVERED, 41, 0, NULL);
	n = wait_segs(fx, 1, segs);
	assert_int_equal(n, 1);
	assert_int_equal(spool_count(sp), 0);
	spool_close(sp);
	free(big);
}

/* A small long-lived message in a mostly dead oldest segment is compacted (moved
 * to the current segment with its current state) and the old segments deleted. */
static void test_reclaim_compacts(void **state)
{
	struct fx *fx = *state;
	struct spool *sp = open_rw(fx);
	spool_set_segment_max(sp, 2048);
	spool_set_compact_age(sp, 0);
	uint64_t keep = commit_text(fx, sp, "Subject: keep\r\n\r\nkeep me\r\n"), segs[64];
	assert_int_equal(spool_hold(sp, keep, true), RC_OK);
	uint64_t max_seq = 0;
	for (int i = 0; i < 60; i++) {
		uint64_t id = commit_text(fx, sp, CHURN);
		update_wait(fx, sp, id, 0, SPOOL_RCPT_DELIVERED, 1, 0, NULL);
		if (i == 20)
			update_wait(fx, sp, keep, 0, SPOOL_RCPT_QUEUED, 7, 1234, "421 busy");
		size_t n = list_segs(fx, segs, 64);
		max_seq = MAX(max_seq, segs[n - 1]);
	}
	size_t n = wait_segs(fx, 2, segs);
	assert_true(max_seq > 4);
	assert_true(n <= 2);
	assert_true(segs[0] > 1); /* the first segment went although keep lives */
	spool_close(sp);
	sp = open_rw(fx);
	assert_int_equal(spool_count(sp), 1);
	assert_int_equal(spool_quarantined(sp), 0);
	assert_true(is_held(sp, keep));
	assert_rcpt(sp, keep, 0, SPOOL_RCPT_QUEUED, 7, 1234, "421 busy");
	assert_body(sp, keep, "Subject: keep\r\n\r\nkeep me\r\n", 26);
	spool_close(sp);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--fault-child") == 0)
		return fault_child(argv[2]);
	unsetenv("RELEVO_FAULT");
	core_threads_init();
	log_set_level(LOG_LV_ERR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c),
	    cmocka_unit_test(test_map),
	    cmocka_unit_test_setup_teardown(test_commit_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_commit_refused, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_commits, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rcpt_update_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tally_and_final, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delete_hold_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delete_hold_async, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_foreach_order, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stats, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stats_top_ten, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_byte, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_older_segment_damage, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_fault_injection, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_lock_and_rdonly, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rdonly_missing, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_permissions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_ids_bumped, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reclaim_pinned, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reclaim_compacts, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
