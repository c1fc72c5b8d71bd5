/*
 * test_store_events.c - the SQLite store's events (add, filtered and paginated
 * queries, statistics, pruning), suppression lists, API keys, webhooks and
 * webhook jobs, the cascade on user deletion, and the read-only connection of
 * the hot lookups (sees the last commit, does not wait for the main lock).
 *
 * Each test runs in its own mkdtemp directory with a fresh store holding the
 * users "alice" and "bob", removed afterwards. Event seqs start at 1 in a fresh
 * store, but the tests only rely on the seqs store_events_add reported.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
#include "store/store_int.h"
#include "unit_util.h"

#define HASH_A "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"

/* 2026-11-26T00:00:00Z in unix ms */
#define DAY1   1795651200000LL
#define HOUR   3600000LL
#define MINUTE 60000LL

struct fixture {
	char root[64];
	char data_dir[128];
	char db_path[160];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (unit_store_open("store-ev", "data", f->root, sizeof f->root, &f->st) != 0)
		return -1;
	snprintf(f->data_dir, sizeof f->data_dir, "%s/data", f->root);
	snprintf(f->db_path, sizeof f->db_path, "%s/relevo.db", f->data_dir);
	const char *d[] = {"example.com"};
	if (store_user_add(f->st, "alice", HASH_A, d, 1) != RC_OK ||
	    store_user_add(f->st, "bob", HASH_A, d, 1) != RC_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = unit_store_close(f->root, f->st);
	free(f);
	return r;
}

/* Run one integer query directly against the database file. */
static int64_t db_int(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	int src = sqlite3_step(s);
	int64_t v = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* ---- events ---------------------------------------------------------------- */

static struct evlog_event ev_make(int64_t time, enum evlog_type type, uint64_t msgid,
                                  const char *rcpt, const char *user)
{
	return (struct evlog_event){.time = time,
	                            .type = type,
	                            .msgid = msgid,
	                            .recipient = (char *)rcpt,
	                            .sender = "sender@example.com",
	                            .user = (char *)user,
	                            .stream = "transactional",
	                            .source = "smtp"};
}

/* Store n events (in batches of at most 512, as the sink does). */
static void ev_add(struct store *st, struct evlog_event *evs, size_t n)
{
	struct evlog_event *ptrs[EVLOG_BATCH_MAX];
	for (size_t off = 0; off < n; off += EVLOG_BATCH_MAX) {
		size_t k = n - off < EVLOG_BATCH_MAX ? n - off : EVLOG_BATCH_MAX;
		for (size_t i = 0; i < k; i++)
			ptrs[i] = &evs[off + i];
		assert_int_equal(store_events_add(st, ptrs, k), RC_OK);
	}
}

#define COLLECT_MAX 512

struct collect {
	size_t n;
	int64_t seq[COLLECT_MAX];
	int64_t time[COLLECT_MAX];
};

static bool collect_cb(void *arg, const struct evlog_event *ev)
{
	struct collect *c = arg;
	assert_true(c->n < COLLECT_MAX);
	c->seq[c->n] = ev->seq;
	c->time[c->n] = ev->time;
	c->n++;
	return true;
}

/* What one query callback saw, copied. */
struct seen {
	size_t n;
	struct evlog_event ev[2];
	char buf[2][9][80];
};

static char *seen_dup(struct seen *s, int field, const char *v)
{
	if (v == NULL)
		return NULL;
	snprintf(s->buf[s->n][field], sizeof s->buf[0][0], "%s", v);
	return s->buf[s->n][field];
}

static bool seen_cb(void *arg, const struct evlog_event *ev)
{
	struct seen *s = arg;
	assert_true(s->n < 2);
	struct evlog_event *e = &s->ev[s->n];
	*e = *ev;
	e->recipient = seen_dup(s, 0, ev->recipient);
	e->sender = seen_dup(s, 1, ev->sender);
	e->user = seen_dup(s, 2, ev->user);
	e->status = seen_dup(s, 3, ev->status);
	e->remote = seen_dup(s, 4, ev->remote);
	e->reply = seen_dup(s, 5, ev->reply);
	s->n++;
	return true;
}

static void test_events_fields(void **state)
{
	struct fixture *f = *state;
	struct evlog_event full = {.time = DAY1 + 1234,
	                           .type = EVLOG_BOUNCED,
	                           .msgid = 0x0123456789ABCDEFULL,
	                           .recipient = "Rcpt@Example.ORG",
	                           .sender = "",
	                           .user = "alice",
	                           .stream = evlog_stream_name(true),
	                           .source = "api",
	                           .status = "5.1.1",
	                           .bounce_class = "hard",
	                           .remote = "mx.example.org[192.0.2.1]",
	                           .reply = "550 5.1.1 no such user",
	                           .attempts = 3};
	struct evlog_event bare = {.time = DAY1 + 2000, .type = EVLOG_REJECTED};
	struct evlog_event *evs[] = {&full, &bare};
	assert_int_equal(store_events_add(f->st, evs, 2), RC_OK);
	assert_true(full.seq > 0);
	assert_int_equal(bare.seq, full.seq + 1);
	/* stored form: the 16-hex-digit id, the lower-cased domain */
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM events "
	                                    "WHERE msgid = '0123456789ABCDEF' "
	                                    "AND rcpt_domain = 'example.org'"),
	                 1);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM events WHERE msgid IS NULL"), 1);

	struct seen s = {0};
	struct store_event_filter flt = {.type = -1};
	assert_int_equal(store_events_query(f->st, &flt, seen_cb, &s), RC_OK);
	assert_int_equal(s.n, 2);
	const struct evlog_event *a = &s.ev[0], *b = &s.ev[1];
	assert_int_equal(a->seq, full.seq);
	assert_int_equal(a->time, DAY1 + 1234);
	assert_int_equal(a->type, EVLOG_BOUNCED);
	assert_true(a->msgid == 0x0123456789ABCDEFULL);
	assert_string_equal(a->recipient, "Rcpt@Example.ORG"); /* as submitted */
	assert_string_equal(a->sender, "");
	assert_string_equal(a->user, "alice");
	assert_string_equal(a->stream, "bulk");
	assert_string_equal(a->source, "api");
	assert_string_equal(a->status, "5.1.1");
	assert_string_equal(a->bounce_class, "hard");
	assert_string_equal(a->remote, "mx.example.org[192.0.2.1]");
	assert_string_equal(a->reply, "550 5.1.1 no such user");
	assert_int_equal(a->attempts, 3);

	assert_int_equal(b->seq, bare.seq);
	assert_int_equal(b->type, EVLOG_REJECTED);
	assert_true(b->msgid == 0);
	assert_null(b->recipient);
	assert_null(b->sender);
	assert_null(b->user);
	assert_null(b->stream);
	assert_null(b->source);
	assert_null(b->status);
	assert_null(b->bounce_class);
	assert_null(b->remote);
	assert_null(b->reply);
	assert_int_equal(b->attempts, 0);

	/* a bad type is refused and stores nothing */
	struct evlog_event bad = {.time = 1, .type = EVLOG__COUNT};
	struct evlog_event ok = {.time = 1, .type = EVLOG_ACCEPTED};
	struct evlog_event *mixed[] = {&ok, &bad};
	assert_int_equal(store_events_add(f->st, mixed, 2), RC_INVALID);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM events"), 2);
	assert_int_equal(store_events_add(f->st, mixed, 0), RC_OK);
}

/* The data set of the filter cases: index i (1-based) is dataset[i - 1]. */
static const struct {
	int64_t time;
	enum evlog_type type;
	uint64_t msgid;
	const char *rcpt, *user;
} dataset[] = {
    {1000, EVLOG_ACCEPTED, 0xA, "a@x.example", "alice"},   /* 1 */
    {2000, EVLOG_DELIVERED, 0xA, "a@x.example", "alice"},  /* 2 */
    {3000, EVLOG_ACCEPTED, 0xB, "B@Y.example", "alice"},   /* 3 */
    {4000, EVLOG_BOUNCED, 0xB, "b@y.example", "alice"},    /* 4 */
    {5000, EVLOG_ACCEPTED, 0xC, "c@x.example", "bob"},     /* 5 */
    {6000, EVLOG_DEFERRED, 0xC, "c@x.example", "bob"},     /* 6 */
    {7000, EVLOG_REJECTED, 0, "d@z.example", NULL},        /* 7 */
    {8000, EVLOG_DELIVERED, 0xC, "c@x.example", "bob"},    /* 8 */
    {9000, EVLOG_ACCEPTED, 0xD, "a@x.example", "Alice"},   /* 9 */
    {10000, EVLOG_DELIVERED, 0xD, "A@X.EXAMPLE", "alice"}, /* 10 */
};

#define NONE 0

static const struct {
	const char *label;
	struct store_event_filter f; /* cursor: a data set index, mapped to its seq */
	int want[11];                /* data set indexes in the order returned, 0-terminated */
} filter_cases[] = {
    {"no filter", {.type = -1}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
    {"user", {.type = -1, .user = "alice"}, {1, 2, 3, 4, 9, 10}},
    {"user in other case", {.type = -1, .user = "ALICE"}, {1, 2, 3, 4, 9, 10}},
    {"other user", {.type = -1, .user = "bob"}, {5, 6, 8}},
    {"user without events", {.type = -1, .user = "carol"}, {NONE}},
    {"msgid", {.type = -1, .msgid = 0xC}, {5, 6, 8}},
    {"unknown msgid", {.type = -1, .msgid = 0xEE}, {NONE}},
    {"recipient", {.type = -1, .recipient = "a@x.example"}, {1, 2, 9, 10}},
    {"recipient in other case", {.type = -1, .recipient = "b@Y.EXAMPLE"}, {3, 4}},
    {"recipient is exact", {.type = -1, .recipient = "x.example"}, {NONE}},
    {"type", {.type = EVLOG_DELIVERED}, {2, 8, 10}},
    {"type 0 is a filter", {.type = EVLOG_ACCEPTED}, {1, 3, 5, 9}},
    {"since is inclusive", {.type = -1, .since = 8000}, {8, 9, 10}},
    {"until is exclusive", {.type = -1, .until = 4000}, {1, 2, 3}},
    {"since and until", {.type = -1, .since = 3000, .until = 6000}, {3, 4, 5}},
    {"cursor ascending", {.type = -1, .cursor = 7}, {8, 9, 10}},
    {"descending", {.type = -1, .descending = true}, {10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
    {"cursor descending", {.type = -1, .cursor = 4, .descending = true}, {3, 2, 1}},
    {"limit", {.type = -1, .limit = 3}, {1, 2, 3}},
    {"limit descending", {.type = -1, .limit = 2, .descending = true}, {10, 9}},
    {"user and type", {.type = EVLOG_DELIVERED, .user = "alice"}, {2, 10}},
    {"user, recipient, since",
     {.type = -1, .user = "alice", .recipient = "A@x.example", .since = 2000},
     {2, 9, 10}},
    {"user, msgid, type", {.type = EVLOG_DELIVERED, .user = "bob", .msgid = 0xC}, {8}},
    {"everything, descending page",
     {.type = -1,
      .user = "alice",
      .since = 1000,
      .until = 10000,
      .cursor = 9,
      .descending = true,
      .limit = 2},
     {4, 3}},
};

static void test_events_filters(void **state)
{
	struct fixture *f = *state;
	struct evlog_event evs[ARRAY_LEN(dataset)];
	for (size_t i = 0; i < ARRAY_LEN(dataset); i++)
		evs[i] = ev_make(dataset[i].time, dataset[i].type, dataset[i].msgid,
		                 dataset[i].rcpt, dataset[i].user);
	ev_add(f->st, evs, ARRAY_LEN(evs));
	for (size_t i = 0; i < ARRAY_LEN(filter_cases); i++) {
		struct store_event_filter flt = filter_cases[i].f;
		if (flt.cursor)
			flt.cursor = evs[flt.cursor - 1].seq;
		struct collect c = {0};
		print_message("case: %s\n", filter_cases[i].label);
		assert_int_equal(store_events_query(f->st, &flt, collect_cb, &c), RC_OK);
		size_t nwant = 0;
		while (nwant < ARRAY_LEN(filter_cases[i].want) && filter_cases[i].want[nwant])
			nwant++;
		if (c.n != nwant)
			fail_msg("case '%s': %zu events, want %zu", filter_cases[i].label, c.n,
			         nwant);
		for (size_t j = 0; j < nwant; j++)
			assert_int_equal(c.seq[j], evs[filter_cases[i].want[j] - 1].seq);
	}
	struct store_event_filter bad = {.type = EVLOG__COUNT};
	struct collect c = {0};
	assert_int_equal(store_events_query(f->st, &bad, collect_cb, &c), RC_INVALID);
	struct store_event_filter bad_user = {.type = -1, .user = "a b"};
	assert_int_equal(store_events_query(f->st, &bad_user, collect_cb, &c), RC_INVALID);
}

static bool stop_after_two(void *arg, const struct evlog_event *ev)
{
	return ++*(size_t *)arg < 2;
}

#define PAGE_EVENTS 250

/* Page through alice's 250 events (interleaved with bob's) by 100, both ways:
 * every event exactly once, in order. */
static void test_events_paging(void **state)
{
	struct fixture *f = *state;
	static struct evlog_event evs[PAGE_EVENTS + 100];
	int64_t alice[PAGE_EVENTS];
	size_t na = 0;
	for (size_t i = 0; i < ARRAY_LEN(evs); i++) /* 2 of every 7 are bob's */
		evs[i] = ev_make(DAY1 + (int64_t)i, EVLOG_DELIVERED, i + 1, "r@example.net",
		                 i % 7 == 3 || i % 7 == 5 ? "bob" : "alice");
	ev_add(f->st, evs, ARRAY_LEN(evs));
	for (size_t i = 0; i < ARRAY_LEN(evs); i++)
		if (strcmp(evs[i].user, "alice") == 0)
			alice[na++] = evs[i].seq;
	assert_int_equal(na, PAGE_EVENTS);

	for (int desc = 0; desc < 2; desc++) {
		struct store_event_filter flt = {
		    .type = -1, .user = "alice", .limit = 100, .descending = desc};
		size_t total = 0, pages = 0, sizes[5] = {0};
		for (;;) {
			struct collect c = {0};
			assert_int_equal(store_events_query(f->st, &flt, collect_cb, &c), RC_OK);
			assert_true(pages < 5);
			sizes[pages++] = c.n;
			for (size_t j = 0; j < c.n; j++, total++) {
				size_t want = desc ? PAGE_EVENTS - 1 - total : total;
				assert_true(total < PAGE_EVENTS);
				assert_int_equal(c.seq[j], alice[want]);
			}
			if (c.n == 0)
				break;
			flt.cursor = c.seq[c.n - 1];
		}
		assert_int_equal(total, PAGE_EVENTS);
		assert_int_equal(pages, 4);
		assert_int_equal(sizes[0], 100);
		assert_int_equal(sizes[1], 100);
		assert_int_equal(sizes[2], 50);
		assert_int_equal(sizes[3], 0);
	}

	/* limit 0 means 100; fn returning false stops */
	struct store_event_filter all = {.type = -1};
	struct collect c = {0};
	assert_int_equal(store_events_query(f->st, &all, collect_cb, &c), RC_OK);
	assert_int_equal(c.n, 100);
	size_t calls = 0;
	assert_int_equal(store_events_query(f->st, &all, stop_after_two, &calls), RC_OK);
	assert_int_equal(calls, 2);
	/* an abandoned query leaves the store usable */
	assert_int_equal(store_events_add(f->st, (struct evlog_event *[]){&evs[0]}, 1), RC_OK);
}

#define STATS_MAX 8

struct stats_acc {
	size_t n, stop_after;
	char key[STATS_MAX][32];
	uint64_t counts[STATS_MAX][EVLOG__COUNT];
};

static bool stats_cb(void *arg, const char *key, const uint64_t counts[EVLOG__COUNT])
{
	struct stats_acc *a = arg;
	assert_true(a->n < STATS_MAX);
	snprintf(a->key[a->n], sizeof a->key[0], "%s", key);
	memcpy(a->counts[a->n], counts, sizeof a->counts[0]);
	a->n++;
	return a->stop_after == 0 || a->n < a->stop_after;
}

/* One expected group: key and counts of accepted, delivered, deferred, bounced. */
struct stats_row {
	const char *key;
	uint64_t acc, del, def, bnc;
};

static const struct {
	const char *label;
	const char *user;
	int64_t since, until;
	enum store_stats_group g;
	struct stats_row want[5];
} stats_cases[] = {
    {"total", "alice", 0, 0, STORE_STATS_TOTAL, {{"total", 3, 1, 1, 1}}},
    {"total, every account", NULL, 0, 0, STORE_STATS_TOTAL, {{"total", 3, 2, 1, 1}}},
    {"day",
     "alice",
     0,
     0,
     STORE_STATS_DAY,
     {{"2026-11-26", 1, 1, 0, 1}, {"2026-11-27", 2, 0, 1, 0}}},
    {"hour",
     "alice",
     0,
     0,
     STORE_STATS_HOUR,
     {{"2026-11-26T10", 1, 1, 0, 0},
      {"2026-11-26T13", 0, 0, 0, 1},
      {"2026-11-27T00", 1, 0, 1, 0},
      {"2026-11-27T23", 1, 0, 0, 0}}},
    {"domain",
     "alice",
     0,
     0,
     STORE_STATS_DOMAIN,
     {{"", 1, 0, 0, 0}, {"x.example", 2, 1, 1, 0}, {"y.example", 0, 0, 0, 1}}},
    {"day, since day 2",
     "alice",
     DAY1 + 24 * HOUR,
     0,
     STORE_STATS_DAY,
     {{"2026-11-27", 2, 0, 1, 0}}},
    {"hour, until 13:05 exclusive",
     NULL,
     0,
     DAY1 + 13 * HOUR + 5 * MINUTE,
     STORE_STATS_HOUR,
     {{"2026-11-26T10", 1, 1, 0, 0}, {"2026-11-26T11", 0, 1, 0, 0}}},
    {"no events", "carol", 0, 0, STORE_STATS_TOTAL, {{NULL}}},
};

static void test_events_stats(void **state)
{
	struct fixture *f = *state;
	struct evlog_event evs[] = {
	    ev_make(DAY1 + 10 * HOUR + 15 * MINUTE, EVLOG_ACCEPTED, 1, "a@X.Example", "alice"),
	    ev_make(DAY1 + 10 * HOUR + 20 * MINUTE, EVLOG_DELIVERED, 1, "a@x.example", "alice"),
	    ev_make(DAY1 + 13 * HOUR + 5 * MINUTE, EVLOG_BOUNCED, 2, "b@y.example", "alice"),
	    ev_make(DAY1 + 24 * HOUR + 30 * MINUTE, EVLOG_ACCEPTED, 3, "c@x.example", "alice"),
	    ev_make(DAY1 + 24 * HOUR + 31 * MINUTE, EVLOG_DEFERRED, 3, "c@x.example", "alice"),
	    ev_make(DAY1 + 47 * HOUR + 59 * MINUTE, EVLOG_ACCEPTED, 4, "postmaster", "alice"),
	    ev_make(DAY1 + 11 * HOUR, EVLOG_DELIVERED, 5, "z@x.example", "bob"),
	};
	ev_add(f->st, evs, ARRAY_LEN(evs));
	for (size_t i = 0; i < ARRAY_LEN(stats_cases); i++) {
		struct stats_acc a = {0};
		print_message("case: %s\n", stats_cases[i].label);
		assert_int_equal(store_events_stats(f->st, stats_cases[i].user,
		                                    stats_cases[i].since, stats_cases[i].until,
		                                    stats_cases[i].g, stats_cb, &a),
		                 RC_OK);
		size_t nwant = 0;
		while (nwant < 5 && stats_cases[i].want[nwant].key)
			nwant++;
		if (a.n != nwant)
			fail_msg("case '%s': %zu groups, want %zu", stats_cases[i].label, a.n,
			         nwant);
		for (size_t j = 0; j < nwant; j++) {
			const struct stats_row *w = &stats_cases[i].want[j];
			assert_string_equal(a.key[j], w->key);
			assert_int_equal(a.counts[j][EVLOG_ACCEPTED], w->acc);
			assert_int_equal(a.counts[j][EVLOG_DELIVERED], w->del);
			assert_int_equal(a.counts[j][EVLOG_DEFERRED], w->def);
			assert_int_equal(a.counts[j][EVLOG_BOUNCED], w->bnc);
			assert_int_equal(a.counts[j][EVLOG_REJECTED], 0);
		}
	}
	struct stats_acc first = {.stop_after = 1};
	assert_int_equal(
	    store_events_stats(f->st, "alice", 0, 0, STORE_STATS_HOUR, stats_cb, &first), RC_OK);
	assert_int_equal(first.n, 1);
	assert_int_equal(store_events_stats(f->st, "a b", 0, 0, STORE_STATS_DAY, stats_cb, &first),
	                 RC_INVALID);
	assert_int_equal(
	    store_events_stats(f->st, NULL, 0, 0, (enum store_stats_group)9, stats_cb, &first),
	    RC_INVALID);
}

#define PRUNE_MANY 12345

static void test_events_prune(void **state)
{
	struct fixture *f = *state;
	struct evlog_event *evs = calloc(PRUNE_MANY, sizeof *evs);
	assert_non_null(evs);
	for (size_t i = 0; i < PRUNE_MANY; i++)
		evs[i] =
		    ev_make(1000 + (int64_t)i, EVLOG_ACCEPTED, i + 1, "r@example.net", "alice");
	ev_add(f->st, evs, PRUNE_MANY);
	int64_t last = evs[PRUNE_MANY - 1].seq;

	uint64_t deleted = 99;
	assert_int_equal(store_events_prune(f->st, 1000, &deleted), RC_OK);
	assert_int_equal(deleted, 0); /* before is exclusive */
	/* more than one chunk */
	assert_int_equal(store_events_prune(f->st, 1000 + PRUNE_MANY - 15, &deleted), RC_OK);
	assert_int_equal(deleted, PRUNE_MANY - 15);
	struct store_event_filter flt = {.type = -1};
	struct collect c = {0};
	assert_int_equal(store_events_query(f->st, &flt, collect_cb, &c), RC_OK);
	assert_int_equal(c.n, 15);
	assert_int_equal(c.time[0], 1000 + PRUNE_MANY - 15);
	assert_int_equal(c.seq[14], last);
	assert_int_equal(store_events_prune(f->st, INT64_MAX, NULL), RC_OK);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM events"), 0);

	/* seqs are never reused, even once the table was emptied */
	struct evlog_event *one[] = {&evs[0]};
	assert_int_equal(store_events_add(f->st, one, 1), RC_OK);
	assert_true(evs[0].seq > last);
	free(evs);
}

/* ---- suppression list ------------------------------------------------------ */

enum sop { S_ADD, S_DEL, S_CHECK };

static const struct {
	const char *label;
	enum sop op;
	const char *user, *address;
	enum rc want;
} supp_cases[] = {
    {"check before add", S_CHECK, "alice", "bob@example.com", RC_NOTFOUND},
    {"add", S_ADD, "alice", "Bob@Example.COM", RC_OK},
    {"add again, other case", S_ADD, "alice", "bob@example.com", RC_EXISTS},
    {"add again, user in other case", S_ADD, "ALICE", "BOB@EXAMPLE.COM", RC_EXISTS},
    {"check exact", S_CHECK, "alice", "Bob@Example.COM", RC_OK},
    {"check lower", S_CHECK, "alice", "bob@example.com", RC_OK},
    {"check upper", S_CHECK, "alice", "BOB@EXAMPLE.COM", RC_OK},
    {"check user in other case", S_CHECK, "Alice", "bob@example.com", RC_OK},
    {"other account", S_CHECK, "bob", "bob@example.com", RC_NOTFOUND},
    {"other address", S_CHECK, "alice", "carol@example.com", RC_NOTFOUND},
    {"no account", S_CHECK, NULL, "bob@example.com", RC_NOTFOUND},
    {"unknown user", S_ADD, "carol", "x@example.com", RC_NOTFOUND},
    {"empty address", S_ADD, "alice", "", RC_INVALID},
    {"bad user", S_CHECK, "a b", "bob@example.com", RC_INVALID},
    {"same address, other account", S_ADD, "bob", "bob@example.com", RC_OK},
    {"del in other case", S_DEL, "alice", "BOB@example.com", RC_OK},
    {"check after del", S_CHECK, "alice", "bob@example.com", RC_NOTFOUND},
    {"other account keeps it", S_CHECK, "bob", "Bob@example.com", RC_OK},
    {"del again", S_DEL, "alice", "bob@example.com", RC_NOTFOUND},
    {"add after del", S_ADD, "alice", "bob@example.com", RC_OK},
};

static void test_suppression_ops(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < ARRAY_LEN(supp_cases); i++) {
		enum rc got = RC__COUNT;
		switch (supp_cases[i].op) {
		case S_ADD:
			got = store_suppression_add(f->st, supp_cases[i].user,
			                            supp_cases[i].address, "manual");
			break;
		case S_DEL:
			got =
			    store_suppression_del(f->st, supp_cases[i].user, supp_cases[i].address);
			break;
		case S_CHECK:
			got = store_suppression_check(f->st, supp_cases[i].user,
			                              supp_cases[i].address);
			break;
		}
		if (got != supp_cases[i].want)
			fail_msg("case '%s': got %s, want %s", supp_cases[i].label, rc_name(got),
			         rc_name(supp_cases[i].want));
	}
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM suppressions "
	                                    "WHERE address = 'bob@example.com'"),
	                 2);
}

/* The batched lookup answers as the point lookup does, address by address, in
 * one call: case folded, other accounts' entries ignored, unusable addresses
 * not on the list, no account no list. */
static void test_suppression_check_batch(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_suppression_add(f->st, "alice", "gone@example.com", "manual"),
	                 RC_OK);
	assert_int_equal(store_suppression_add(f->st, "bob", "bobs@example.com", "manual"),
	                 RC_OK);
	const char *addrs[] = {"ok@example.com", "Gone@Example.com", "bobs@example.com", "",
	                       "gone@example.com"};
	const bool want[] = {false, true, false, false, true};
	bool got[ARRAY_LEN(addrs)];
	assert_int_equal(store_suppression_check_batch(f->st, "alice", addrs, ARRAY_LEN(addrs),
	                                               got),
	                 RC_OK);
	for (size_t i = 0; i < ARRAY_LEN(addrs); i++)
		if (got[i] != want[i])
			fail_msg("address '%s': got %d, want %d", addrs[i], got[i], want[i]);
	assert_int_equal(store_suppression_check_batch(f->st, NULL, addrs, ARRAY_LEN(addrs), got),
	                 RC_OK);
	for (size_t i = 0; i < ARRAY_LEN(addrs); i++)
		assert_false(got[i]);
}

struct supp_acc {
	size_t n;
	char addr[128][64];
	char reason[128][64];
	int64_t created[128];
};

static bool supp_cb(void *arg, const struct store_suppression *s)
{
	struct supp_acc *a = arg;
	assert_true(a->n < 128);
	snprintf(a->addr[a->n], sizeof a->addr[0], "%s", s->address);
	snprintf(a->reason[a->n], sizeof a->reason[0], "%s", s->reason);
	a->created[a->n] = s->created;
	a->n++;
	return true;
}

#define SUPP_N 250

static void test_suppression_list(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms();
	for (int i = 0; i < SUPP_N; i++) {
		char a[64];
		/* inserted out of order and in mixed case */
		int k = (i * 7) % SUPP_N;
		snprintf(a, sizeof a, k % 2 ? "User%03d@Example.com" : "user%03d@example.COM", k);
		assert_int_equal(
		    store_suppression_add(f->st, "alice", a, k == 5 ? "hard bounce" : NULL), RC_OK);
	}
	assert_int_equal(store_suppression_add(f->st, "bob", "zed@example.com", "manual"), RC_OK);
	assert_int_equal(store_suppression_add(f->st, "alice", "user005@example.com", "again"),
	                 RC_EXISTS);

	char after[64] = "";
	size_t total = 0, sizes[5] = {0}, pages = 0;
	for (;;) {
		struct supp_acc *a = calloc(1, sizeof *a);
		assert_int_equal(
		    store_suppression_list(f->st, "alice", total ? after : NULL, 100, supp_cb, a),
		    RC_OK);
		assert_true(pages < 5);
		sizes[pages++] = a->n;
		for (size_t j = 0; j < a->n; j++, total++) {
			char want[64];
			snprintf(want, sizeof want, "user%03zu@example.com", total);
			assert_string_equal(a->addr[j], want);
			assert_in_range(a->created[j], now - 5000, now + 5000);
			assert_string_equal(a->reason[j], total == 5 ? "hard bounce" : "");
		}
		size_t n = a->n;
		if (n)
			snprintf(after, sizeof after, "%s", a->addr[n - 1]);
		free(a);
		if (n == 0)
			break;
	}
	assert_int_equal(total, SUPP_N);
	assert_int_equal(pages, 4);
	assert_int_equal(sizes[0], 100);
	assert_int_equal(sizes[1], 100);
	assert_int_equal(sizes[2], 50);

	/* limit 0 means 100; `after` in other case; another account's list */
	struct supp_acc *a = calloc(1, sizeof *a);
	assert_int_equal(store_suppression_list(f->st, "alice", NULL, 0, supp_cb, a), RC_OK);
	assert_int_equal(a->n, 100);
	a->n = 0;
	assert_int_equal(
	    store_suppression_list(f->st, "alice", "USER247@EXAMPLE.COM", 10, supp_cb, a), RC_OK);
	assert_int_equal(a->n, 2);
	assert_string_equal(a->addr[0], "user248@example.com");
	a->n = 0;
	assert_int_equal(store_suppression_list(f->st, "bob", NULL, 0, supp_cb, a), RC_OK);
	assert_int_equal(a->n, 1);
	assert_string_equal(a->addr[0], "zed@example.com");
	assert_string_equal(a->reason[0], "manual");
	free(a);
}

/* store_suppression_get: the entry as stored (the first reason stays), in any
 * case, only the account's own. */
static void test_suppression_get(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), created = -1;
	char *reason = NULL;
	assert_int_equal(store_suppression_add(f->st, "alice", "Dave@Example.com", "asked"), RC_OK);
	assert_int_equal(store_suppression_add(f->st, "alice", "dave@example.com", "again"),
	                 RC_EXISTS);
	static const struct {
		const char *label, *user, *address;
		enum rc rc;
		const char *reason;
	} t[] = {
	    {"lower case", "alice", "dave@example.com", RC_OK, "asked"},
	    {"any case", "alice", "DAVE@EXAMPLE.COM", RC_OK, "asked"},
	    {"another address", "alice", "erin@example.com", RC_NOTFOUND, NULL},
	    {"another account", "bob", "dave@example.com", RC_NOTFOUND, NULL},
	    {"bad user name", "no such/user", "dave@example.com", RC_INVALID, NULL},
	    {"empty address", "alice", "", RC_INVALID, NULL},
	};
	for (size_t i = 0; i < ARRAY_LEN(t); i++) {
		enum rc rc = store_suppression_get(f->st, t[i].user, t[i].address, &reason, &created);
		if (rc != t[i].rc)
			fail_msg("case '%s': %s", t[i].label, rc_name(rc));
		if (t[i].reason) {
			assert_string_equal(reason, t[i].reason);
			assert_in_range(created, now - 5000, now + 5000);
		} else {
			assert_null(reason);
			assert_int_equal(created, 0);
		}
		free(reason);
		reason = NULL;
	}
}

/* ---- API keys -------------------------------------------------------------- */

struct key_acc {
	size_t n;
	char id[8][32];
	char user[8][32];
	char name[8][32];
	bool hash_zero[8];
};

static bool key_cb(void *arg, const struct store_apikey *k)
{
	struct key_acc *a = arg;
	static const unsigned char zero[STORE_APIKEY_HASH_LEN];
	assert_true(a->n < 8);
	snprintf(a->id[a->n], sizeof a->id[0], "%s", k->id);
	snprintf(a->user[a->n], sizeof a->user[0], "%s", k->user);
	snprintf(a->name[a->n], sizeof a->name[0], "%s", k->name);
	a->hash_zero[a->n] = memcmp(k->hash, zero, sizeof zero) == 0;
	a->n++;
	return true;
}

static void fill_hash(unsigned char h[STORE_APIKEY_HASH_LEN], unsigned char seed)
{
	for (int i = 0; i < STORE_APIKEY_HASH_LEN; i++)
		h[i] = (unsigned char)(seed + i * 3);
}

static void test_apikeys(void **state)
{
	struct fixture *f = *state;
	unsigned char h1[STORE_APIKEY_HASH_LEN], h2[STORE_APIKEY_HASH_LEN];
	fill_hash(h1, 1);
	fill_hash(h2, 2);
	int64_t now = time_now_ms();
	assert_int_equal(store_apikey_add(f->st, "0123456789abcdef", "ALICE", "ci", h1), RC_OK);
	assert_int_equal(store_apikey_add(f->st, "0123456789abcdef", "bob", "x", h2), RC_EXISTS);
	assert_int_equal(store_apikey_add(f->st, "1111111111111111", "carol", "x", h2),
	                 RC_NOTFOUND);
	assert_int_equal(store_apikey_add(f->st, "", "alice", "x", h2), RC_INVALID);
	usleep(2000); /* a later creation time */
	assert_int_equal(store_apikey_add(f->st, "2222222222222222", "alice", NULL, h2), RC_OK);
	usleep(2000);
	assert_int_equal(store_apikey_add(f->st, "3333333333333333", "bob", "deploy", h2), RC_OK);

	struct store_apikey *k = NULL;
	assert_int_equal(store_apikey_get(f->st, "0123456789abcdef", &k), RC_OK);
	assert_string_equal(k->id, "0123456789abcdef");
	assert_string_equal(k->user, "alice"); /* the account's own spelling */
	assert_string_equal(k->name, "ci");
	assert_memory_equal(k->hash, h1, sizeof h1);
	assert_in_range(k->created, now - 5000, now + 5000);
	assert_int_equal(k->last_used, 0);
	store_apikey_free(k);
	k = (struct store_apikey *)1;
	assert_int_equal(store_apikey_get(f->st, "9999999999999999", &k), RC_NOTFOUND);
	assert_null(k);

	assert_int_equal(store_apikey_touch(f->st, "0123456789abcdef", now + 7), RC_OK);
	assert_int_equal(store_apikey_touch(f->st, "9999999999999999", now), RC_NOTFOUND);
	assert_int_equal(store_apikey_get(f->st, "0123456789abcdef", &k), RC_OK);
	assert_int_equal(k->last_used, now + 7);
	store_apikey_free(k);

	struct key_acc a = {0};
	assert_int_equal(store_apikey_list(f->st, "alice", key_cb, &a), RC_OK);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.id[0], "0123456789abcdef");
	assert_string_equal(a.id[1], "2222222222222222");
	assert_string_equal(a.name[1], "");
	assert_true(a.hash_zero[0] && a.hash_zero[1]);
	struct key_acc all = {0};
	assert_int_equal(store_apikey_list(f->st, NULL, key_cb, &all), RC_OK);
	assert_int_equal(all.n, 3);
	assert_string_equal(all.id[2], "3333333333333333");
	assert_string_equal(all.user[2], "bob");

	assert_int_equal(store_apikey_del(f->st, "0123456789abcdef"), RC_OK);
	assert_int_equal(store_apikey_get(f->st, "0123456789abcdef", &k), RC_NOTFOUND);
	assert_int_equal(store_apikey_del(f->st, "0123456789abcdef"), RC_NOTFOUND);
	store_apikey_free(NULL);
}

/* ---- webhooks -------------------------------------------------------------- */

struct hook_acc {
	size_t n;
	int64_t id[8];
	char user[8][32];
	char url[8][64];
	char secret[8][32];
	char events[8][64];
	int64_t created[8];
};

static bool hook_cb(void *arg, const struct store_webhook *w)
{
	struct hook_acc *a = arg;
	assert_true(a->n < 8);
	a->id[a->n] = w->id;
	snprintf(a->user[a->n], sizeof a->user[0], "%s", w->user);
	snprintf(a->url[a->n], sizeof a->url[0], "%s", w->url);
	snprintf(a->secret[a->n], sizeof a->secret[0], "%s", w->secret);
	snprintf(a->events[a->n], sizeof a->events[0], "%s", w->events);
	a->created[a->n] = w->created;
	a->n++;
	return true;
}

static void test_webhooks(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms();
	int64_t a1 = 0, a2 = 0, b1 = 0, x = 0;
	assert_int_equal(store_webhook_add(f->st, "alice", "https://a.example/1", "s1",
	                                   "delivered,bounced", &a1),
	                 RC_OK);
	assert_int_equal(store_webhook_add(f->st, "bob", "https://b.example/1", "s2", "", &b1),
	                 RC_OK);
	assert_int_equal(store_webhook_add(f->st, "Alice", "https://a.example/2", "s3", NULL, &a2),
	                 RC_OK);
	assert_int_equal(store_webhook_add(f->st, "carol", "https://c.example/", "s", "", &x),
	                 RC_NOTFOUND);
	assert_int_equal(store_webhook_add(f->st, "alice", "", "s", "", &x), RC_INVALID);
	assert_true(a1 > 0 && b1 > a1 && a2 > b1);

	struct hook_acc a = {0};
	assert_int_equal(store_webhook_list(f->st, "alice", hook_cb, &a), RC_OK);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.id[0], a1);
	assert_string_equal(a.user[0], "alice");
	assert_string_equal(a.url[0], "https://a.example/1");
	assert_string_equal(a.secret[0], "s1");
	assert_string_equal(a.events[0], "delivered,bounced");
	assert_in_range(a.created[0], now - 5000, now + 5000);
	assert_int_equal(a.id[1], a2);
	assert_string_equal(a.user[1], "alice");
	assert_string_equal(a.events[1], "");
	struct hook_acc all = {0};
	assert_int_equal(store_webhook_list(f->st, NULL, hook_cb, &all), RC_OK);
	assert_int_equal(all.n, 3);
	assert_int_equal(all.id[1], b1);

	/* ownership: alice cannot delete bob's */
	assert_int_equal(store_webhook_del(f->st, "alice", b1), RC_NOTFOUND);
	struct hook_acc bob = {0};
	assert_int_equal(store_webhook_list(f->st, "bob", hook_cb, &bob), RC_OK);
	assert_int_equal(bob.n, 1);
	assert_int_equal(store_webhook_del(f->st, "ALICE", a1), RC_OK);
	assert_int_equal(store_webhook_del(f->st, "alice", a1), RC_NOTFOUND);
	assert_int_equal(store_webhook_del(f->st, "bob", b1), RC_OK);
	struct hook_acc left = {0};
	assert_int_equal(store_webhook_list(f->st, NULL, hook_cb, &left), RC_OK);
	assert_int_equal(left.n, 1);
	assert_int_equal(left.id[0], a2);

	/* ids are never reused */
	assert_int_equal(store_webhook_del(f->st, "alice", a2), RC_OK);
	assert_int_equal(store_webhook_add(f->st, "alice", "https://a.example/3", "s", "", &x),
	                 RC_OK);
	assert_true(x > a2);
}

/* ---- webhook jobs ---------------------------------------------------------- */

static void test_webhook_jobs(void **state)
{
	struct fixture *f = *state;
	int64_t when = 0;
	assert_int_equal(store_webhook_job_next(f->st, &when), RC_NOTFOUND);
	struct store_webhook_job *due = NULL;
	size_t n = 9;
	assert_int_equal(store_webhook_jobs_due(f->st, time_now_ms(), 10, &due, &n), RC_OK);
	assert_int_equal(n, 0);
	store_webhook_jobs_free(due, n);

	int64_t t0 = time_now_ms();
	struct store_webhook_job jobs[] = {
	    {.url = "https://a.example/1", .secret = "s1", .body = "{\"n\":1}"},
	    {.url = "https://a.example/2", .secret = "s2", .body = "{\"n\":2}", .operator = true},
	    {.url = "https://a.example/3",
	     .secret = NULL,
	     .body = "{\"n\":3}",
	     .next_attempt = t0 + HOUR},
	};
	assert_int_equal(store_webhook_jobs_add(f->st, jobs, ARRAY_LEN(jobs)), RC_OK);
	int64_t t1 = time_now_ms();
	struct store_webhook_job bad = {.url = NULL, .body = "x"};
	assert_int_equal(store_webhook_jobs_add(f->st, &bad, 1), RC_INVALID);

	assert_int_equal(store_webhook_job_next(f->st, &when), RC_OK);
	assert_in_range(when, t0, t1);

	assert_int_equal(store_webhook_jobs_due(f->st, t1, 10, &due, &n), RC_OK);
	assert_int_equal(n, 2);
	assert_string_equal(due[0].url, "https://a.example/1");
	assert_string_equal(due[0].secret, "s1");
	assert_string_equal(due[0].body, "{\"n\":1}");
	assert_int_equal(due[0].attempts, 0);
	assert_false(due[0].operator); /* kept as stored (issue 12) */
	assert_true(due[1].operator);
	assert_in_range(due[0].created, t0, t1);
	assert_in_range(due[0].next_attempt, t0, t1);
	assert_string_equal(due[1].url, "https://a.example/2");
	int64_t id1 = due[0].id, id2 = due[1].id;
	store_webhook_jobs_free(due, n);

	assert_int_equal(store_webhook_jobs_due(f->st, t1, 1, &due, &n), RC_OK);
	assert_int_equal(n, 1);
	assert_int_equal(due[0].id, id1);
	store_webhook_jobs_free(due, n);

	/* retry moves job 1 behind job 2 and past now */
	assert_int_equal(store_webhook_job_retry(f->st, id1, 1, t1 + 1000), RC_OK);
	assert_int_equal(store_webhook_jobs_due(f->st, t1, 10, &due, &n), RC_OK);
	assert_int_equal(n, 1);
	assert_int_equal(due[0].id, id2);
	store_webhook_jobs_free(due, n);
	assert_int_equal(store_webhook_jobs_due(f->st, t1 + 1000, 10, &due, &n), RC_OK);
	assert_int_equal(n, 2);
	assert_int_equal(due[0].id, id2);
	assert_int_equal(due[1].id, id1);
	assert_int_equal(due[1].attempts, 1);
	assert_int_equal(due[1].next_attempt, t1 + 1000);
	store_webhook_jobs_free(due, n);

	assert_int_equal(store_webhook_job_done(f->st, id2), RC_OK);
	assert_int_equal(store_webhook_job_done(f->st, id2), RC_NOTFOUND);
	assert_int_equal(store_webhook_job_retry(f->st, id2, 2, t1), RC_NOTFOUND);
	assert_int_equal(store_webhook_job_next(f->st, &when), RC_OK);
	assert_int_equal(when, t1 + 1000);
	assert_int_equal(store_webhook_job_done(f->st, id1), RC_OK);
	assert_int_equal(store_webhook_job_next(f->st, &when), RC_OK);
	assert_int_equal(when, t0 + HOUR);

	assert_int_equal(store_webhook_jobs_due(f->st, t0 + HOUR, 0, &due, &n), RC_OK);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].secret, "");
	assert_string_equal(due[0].body, "{\"n\":3}");
	store_webhook_jobs_free(due, n);
	store_webhook_jobs_free(NULL, 0);
}

/* ---- deleting a user ------------------------------------------------------- */

static void test_user_del_cascades(void **state)
{
	struct fixture *f = *state;
	unsigned char h[STORE_APIKEY_HASH_LEN];
	fill_hash(h, 9);
	int64_t id = 0;
	assert_int_equal(store_apikey_add(f->st, "aaaaaaaaaaaaaaaa", "alice", "k", h), RC_OK);
	assert_int_equal(store_apikey_add(f->st, "bbbbbbbbbbbbbbbb", "bob", "k", h), RC_OK);
	assert_int_equal(store_suppression_add(f->st, "alice", "x@example.com", "manual"), RC_OK);
	assert_int_equal(store_suppression_add(f->st, "bob", "x@example.com", "manual"), RC_OK);
	assert_int_equal(store_webhook_add(f->st, "alice", "https://a.example/", "s", "", &id),
	                 RC_OK);
	assert_int_equal(store_webhook_add(f->st, "bob", "https://b.example/", "s", "", &id),
	                 RC_OK);

	assert_int_equal(store_user_del(f->st, "ALICE"), RC_OK);
	struct store_apikey *k = NULL;
	assert_int_equal(store_apikey_get(f->st, "aaaaaaaaaaaaaaaa", &k), RC_NOTFOUND);
	assert_int_equal(store_suppression_check(f->st, "alice", "x@example.com"), RC_NOTFOUND);
	struct hook_acc a = {0};
	assert_int_equal(store_webhook_list(f->st, "alice", hook_cb, &a), RC_OK);
	assert_int_equal(a.n, 0);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM api_keys"), 1);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM suppressions"), 1);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM webhooks"), 1);

	/* bob's are untouched */
	assert_int_equal(store_apikey_get(f->st, "bbbbbbbbbbbbbbbb", &k), RC_OK);
	assert_string_equal(k->user, "bob");
	store_apikey_free(k);
	assert_int_equal(store_suppression_check(f->st, "bob", "X@example.com"), RC_OK);
	assert_int_equal(store_webhook_list(f->st, "bob", hook_cb, &a), RC_OK);
	assert_int_equal(a.n, 1);

	/* a new alice starts with nothing */
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, NULL, 0), RC_OK);
	assert_int_equal(store_suppression_check(f->st, "alice", "x@example.com"), RC_NOTFOUND);
	struct key_acc ka = {0};
	assert_int_equal(store_apikey_list(f->st, "alice", key_cb, &ka), RC_OK);
	assert_int_equal(ka.n, 0);
}

/* ---- the read connection --------------------------------------------------- */

struct checker {
	struct store *st;
	enum rc rc;
};

static void *checker_main(void *arg)
{
	struct checker *c = arg;
	c->rc = store_suppression_check(c->st, "alice", "late@example.com");
	return NULL;
}

/* Run store_suppression_check on a thread; false if it did not finish in 5 s. */
static bool check_in_thread(struct store *st, enum rc *rc)
{
	struct checker c = {st, RC__COUNT};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, checker_main, &c), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	int r = pthread_timedjoin_np(th, NULL, &until);
	if (r == ETIMEDOUT)
		return false; /* the caller releases what blocks it, then joins */
	assert_int_equal(r, 0);
	*rc = c.rc;
	return true;
}

static void test_read_connection(void **state)
{
	struct fixture *f = *state;
	/* the cached statement has read before: it must not keep an old snapshot */
	assert_int_equal(store_suppression_check(f->st, "alice", "late@example.com"), RC_NOTFOUND);
	assert_int_equal(store_suppression_add(f->st, "alice", "Late@Example.com", "manual"),
	                 RC_OK);
	assert_int_equal(store_suppression_check(f->st, "alice", "late@example.com"), RC_OK);
	assert_int_equal(store_suppression_del(f->st, "alice", "late@example.com"), RC_OK);
	assert_int_equal(store_suppression_check(f->st, "alice", "late@example.com"), RC_NOTFOUND);

	/* another writer's open transaction is invisible until it commits */
	sqlite3 *w = NULL;
	assert_int_equal(sqlite3_open_v2(f->db_path, &w, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(w,
	                 "BEGIN IMMEDIATE;"
	                 "INSERT INTO suppressions(username, address, reason, created) "
	                 "VALUES ('alice', 'late@example.com', '', 0);",
	                 NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(store_suppression_check(f->st, "alice", "late@example.com"), RC_NOTFOUND);
	assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_suppression_check(f->st, "alice", "late@example.com"), RC_OK);
	sqlite3_close(w);

	/* the hot lookups do not take the main connection's lock: hold it (as a long
	 * write transaction would) and check from another thread */
	pthread_mutex_t *lock;
	(void)store_db(f->st, &lock);
	pthread_mutex_lock(lock);
	enum rc rc = RC__COUNT;
	bool done = check_in_thread(f->st, &rc);
	pthread_mutex_unlock(lock);
	if (!done)
		fail_msg("store_suppression_check waited for the main lock");
	assert_int_equal(rc, RC_OK);
	unsigned char h[STORE_APIKEY_HASH_LEN];
	fill_hash(h, 4);
	assert_int_equal(store_apikey_add(f->st, "cccccccccccccccc", "alice", "k", h), RC_OK);
	pthread_mutex_lock(lock);
	struct store_apikey *k = NULL;
	rc = store_apikey_get(f->st, "cccccccccccccccc", &k); /* would deadlock on the main lock */
	pthread_mutex_unlock(lock);
	assert_int_equal(rc, RC_OK);
	assert_memory_equal(k->hash, h, sizeof h);
	store_apikey_free(k);
}

/* The schema of this change: its tables and indexes exist, foreign keys hold. */
static void test_schema(void **state)
{
	struct fixture *f = *state;
	static const char *const names[] = {
	    "events",           "events_user",  "events_user_time",  "events_msgid",
	    "events_user_rcpt", "events_time",  "suppressions",      "api_keys",
	    "webhooks",         "webhook_jobs", "webhook_jobs_next",
	};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		char sql[160];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_schema WHERE name = '%s'",
		         names[i]);
		if (db_int(f->db_path, sql) != 1)
			fail_msg("missing %s", names[i]);
	}
	assert_int_equal(db_int(f->db_path, "PRAGMA foreign_key_check"), -1); /* no rows */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
	    T(test_events_fields),    T(test_events_filters),    T(test_events_paging),
	    T(test_events_stats),     T(test_events_prune),      T(test_suppression_ops),
	    T(test_suppression_list), T(test_suppression_get),   T(test_apikeys),
	    T(test_webhooks),          T(test_suppression_check_batch),
	    T(test_webhook_jobs),     T(test_user_del_cascades), T(test_read_connection),
	    T(test_schema),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
