/*
 * test_sched.c - the scheduler (src/sched/): retry backoff and lifetime, take
 * (due only, one destination, message adjacency, stream order), concurrency
 * limits, round robin, remove/replace/flush, next_due against a brute-force
 * model over random operation sequences, and a 200k-item smoke test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sched/sched.h"
#include "unit_util.h"

#define TR SCHED_STREAM_TRANSACTIONAL
#define BU SCHED_STREAM_BULK

static struct sched_conf conf_with(unsigned max_conn)
{
	return (struct sched_conf){.max_queue_lifetime = 5 * 86400, .max_conn_per_dest = max_conn};
}

/* One take; returns the count, fills dest and stream. */
static size_t take(struct sched *s, int64_t now, struct sched_item *out, size_t max, char *dest,
                   enum sched_stream *st)
{
	return sched_take(s, now, out, max, dest, 256, st);
}

/* ---- backoff ---- */

static const uint32_t sched3[] = {60, 120, 240};
static const uint32_t sched1[] = {30};

static const struct {
	const char *label;
	const uint32_t *tab;
	size_t n;
	uint32_t attempts;
	uint32_t delay;
} delay_cases[] = {
    {"custom first", sched3, 3, 1, 60},
    {"custom second", sched3, 3, 2, 120},
    {"custom last", sched3, 3, 3, 240},
    {"custom last repeats", sched3, 3, 4, 240},
    {"custom last repeats far", sched3, 3, 1000, 240},
    {"attempts 0 counts as first", sched3, 3, 0, 60},
    {"single entry", sched1, 1, 1, 30},
    {"single entry repeats", sched1, 1, 9, 30},
    {"default 1", NULL, 0, 1, 300},
    {"default 2", NULL, 0, 2, 600},
    {"default 3", NULL, 0, 3, 1200},
    {"default 4", NULL, 0, 4, 2400},
    {"default 5", NULL, 0, 5, 3600},
    {"default 6", NULL, 0, 6, 7200},
    {"default 7", NULL, 0, 7, 14400},
    {"default last repeats", NULL, 0, 8, 14400},
    {"default last repeats far", NULL, 0, UINT32_MAX, 14400},
};

static void test_retry_delay(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(delay_cases); i++) {
		struct sched_conf c = conf_with(1);
		c.retry_schedule = delay_cases[i].tab;
		c.nretry = delay_cases[i].n;
		CHECK(delay_cases[i].label,
		      sched_retry_delay(&c, delay_cases[i].attempts) == delay_cases[i].delay);
	}
}

#define T0 1700000000000LL /* created, unix ms */

static const struct {
	const char *label;
	uint64_t lifetime;
	int64_t now;
	bool expired;
} expiry_cases[] = {
    {"fresh", 3600, T0, false},
    {"one ms before the end", 3600, T0 + 3600000 - 1, false},
    {"exactly at the end", 3600, T0 + 3600000, false},
    {"one ms past the end", 3600, T0 + 3600000 + 1, true},
    {"long past", 3600, T0 + 86400000LL * 30, true},
    {"clock before created", 3600, T0 - 5000, false},
    {"lifetime 0: at created", 0, T0, false},
    {"lifetime 0: just after", 0, T0 + 1, true},
    {"huge lifetime never overflows", UINT64_MAX, INT64_MAX, false},
};

static void test_expiry(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(expiry_cases); i++) {
		struct sched_conf c = conf_with(1);
		c.max_queue_lifetime = expiry_cases[i].lifetime;
		CHECK(expiry_cases[i].label,
		      sched_is_expired(&c, T0, expiry_cases[i].now) == expiry_cases[i].expired);
	}
}

static const struct {
	const char *label;
	uint64_t lifetime;
	uint32_t attempts;
	int64_t now;
	int64_t next; /* 0: expire instead */
} next_cases[] = {
    {"first retry", 3600, 1, T0, T0 + 300000},
    {"third retry", 86400, 3, T0 + 1000, T0 + 1000 + 1200000},
    {"lands exactly on the lifetime", 3600, 1, T0 + 3300000, T0 + 3600000},
    {"one ms past the lifetime", 3600, 1, T0 + 3300001, 0},
    {"long delay past the lifetime", 3600, 7, T0, 0},
    {"lifetime 0: no retry at all", 0, 1, T0, 0},
    {"repeat of last fits", 5 * 86400, 50, T0 + 86400000, T0 + 86400000 + 14400000},
};

static void test_next_attempt(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(next_cases); i++) {
		struct sched_conf c = conf_with(1);
		c.max_queue_lifetime = next_cases[i].lifetime;
		int64_t got = sched_next_attempt(&c, T0, next_cases[i].attempts, next_cases[i].now);
		CHECK(next_cases[i].label, got == next_cases[i].next);
	}
}

static void test_stream_names(void **state)
{
	(void)state;
	assert_string_equal(sched_stream_name(TR), "transactional");
	assert_string_equal(sched_stream_name(BU), "bulk");
	assert_string_equal(sched_stream_name(SCHED_STREAM__COUNT), "?");
}

/* ---- take ---- */

static void test_take_only_due(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(10);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	sched_add(s, TR, "a.example", 1, 0, 100);
	sched_add(s, TR, "a.example", 2, 0, 200);
	sched_add(s, TR, "a.example", 3, 0, 300);
	assert_int_equal(sched_next_due(s), 100);
	assert_int_equal(take(s, 99, out, 8, dest, &st), 0);
	assert_int_equal(take(s, 150, out, 8, dest, &st), 1);
	assert_true(out[0].msgid == 1 && out[0].rcpt == 0 && out[0].due == 100);
	assert_string_equal(dest, "a.example");
	assert_int_equal(st, TR);
	assert_int_equal(take(s, 150, out, 8, dest, &st), 0);
	assert_int_equal(sched_next_due(s), 200);
	assert_int_equal(sched_count(s), 2);
	assert_int_equal(take(s, 1000, out, 8, dest, &st), 2);
	assert_int_equal(sched_count(s), 0);
	assert_int_equal(sched_next_due(s), INT64_MAX);
	assert_int_equal(take(s, 1000, out, 0, dest, &st), 0);
	sched_release(s, "a.example"); /* two takes, two slots */
	sched_release(s, "a.example");
	sched_free(s);
}

static void test_take_one_dest(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(10);
	struct sched *s = sched_new(&c);
	struct sched_item out[16];
	char dest[256];
	enum sched_stream st;
	for (uint32_t i = 0; i < 4; i++) {
		sched_add(s, TR, "a.example", 7, i, 10);
		sched_add(s, TR, "b.example", 7, 10 + i, 10);
	}
	for (int round = 0; round < 2; round++) {
		size_t n = take(s, 50, out, 16, dest, &st);
		assert_int_equal(n, 4);
		uint32_t base = strcmp(dest, "a.example") == 0 ? 0 : 10;
		for (size_t i = 0; i < n; i++)
			assert_true(out[i].rcpt >= base && out[i].rcpt < base + 4);
	}
	assert_int_equal(sched_count(s), 0);
	sched_release(s, "a.example");
	sched_release(s, "b.example");
	sched_free(s);
}

/* Recipients of one message come out adjacent, messages in order of their
 * earliest due recipient, each message's recipients in (due, rcpt) order. */
static void test_take_adjacent(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(1);
	struct sched *s = sched_new(&c);
	struct sched_item out[16];
	char dest[256];
	enum sched_stream st;
	sched_add(s, BU, "a.example", 1, 0, 10);
	sched_add(s, BU, "a.example", 2, 0, 20);
	sched_add(s, BU, "a.example", 1, 1, 30);
	sched_add(s, BU, "a.example", 3, 0, 15);
	sched_add(s, BU, "a.example", 2, 1, 40);
	sched_add(s, BU, "a.example", 1, 2, 35);
	static const struct {
		uint64_t msgid;
		uint32_t rcpt;
	} want[] = {{1, 0}, {1, 1}, {1, 2}, {3, 0}, {2, 0}, {2, 1}};
	assert_int_equal(take(s, 100, out, 16, dest, &st), ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_true(out[i].msgid == want[i].msgid && out[i].rcpt == want[i].rcpt);
	assert_int_equal(st, BU);
	sched_release(s, "a.example");
	sched_free(s);
}

static void test_concurrency_limit(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(2);
	struct sched *s = sched_new(&c);
	struct sched_item out[4];
	char dest[256];
	enum sched_stream st;
	for (uint32_t i = 0; i < 10; i++)
		sched_add(s, TR, "a.example", 1, i, 10);
	assert_int_equal(take(s, 20, out, 1, dest, &st), 1);
	assert_int_equal(take(s, 20, out, 1, dest, &st), 1);
	assert_int_equal(take(s, 20, out, 1, dest, &st), 0);
	assert_int_equal(sched_next_due(s), INT64_MAX); /* no free slot */
	sched_add(s, TR, "a.example", 2, 0, 5);         /* still blocked */
	assert_int_equal(take(s, 20, out, 1, dest, &st), 0);
	assert_int_equal(sched_next_due(s), INT64_MAX);
	sched_release(s, "a.example");
	assert_int_equal(sched_next_due(s), 5);
	assert_int_equal(take(s, 20, out, 1, dest, &st), 1);
	assert_true(out[0].msgid == 2);
	assert_int_equal(take(s, 20, out, 1, dest, &st), 0);
	sched_release(s, "a.example");
	sched_release(s, "a.example");
	assert_int_equal(sched_count(s), 8);
	sched_free(s);
}

/* Two (then three) destinations with many due items take turns, even when
 * one of them has much older items; the slots are given back each time. */
static void test_round_robin(void **state)
{
	(void)state;
	static const char *const names[] = {"a.example", "b.example", "c.example"};
	for (size_t ndest = 2; ndest <= 3; ndest++) {
		struct sched_conf c = conf_with(1);
		struct sched *s = sched_new(&c);
		struct sched_item out[4];
		char dest[256];
		enum sched_stream st;
		for (uint32_t i = 0; i < 100; i++)
			for (size_t d = 0; d < ndest; d++)
				sched_add(s, TR, names[d], 100 + d, i, d == 0 ? i : 1000 + i);
		size_t seen[3] = {0};
		for (int k = 0; k < 30; k++) {
			assert_int_equal(take(s, 5000, out, 4, dest, &st), 4);
			assert_string_equal(dest, names[k % ndest]);
			for (size_t d = 0; d < ndest; d++)
				seen[d] += strcmp(dest, names[d]) == 0;
			sched_release(s, dest);
		}
		for (size_t d = 0; d < ndest; d++)
			assert_int_equal(seen[d], 30 / ndest);
		sched_free(s);
	}
}

static void test_stream_order(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(1);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	/* same destination: the transactional item goes first though younger */
	sched_add(s, BU, "a.example", 1, 0, 10);
	sched_add(s, TR, "a.example", 2, 0, 50);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 1);
	assert_int_equal(st, TR);
	assert_true(out[0].msgid == 2);
	sched_release(s, "a.example");
	assert_int_equal(take(s, 100, out, 8, dest, &st), 1);
	assert_int_equal(st, BU);
	sched_release(s, "a.example");
	/* a transactional item not yet due does not hold back due bulk */
	sched_add(s, BU, "a.example", 3, 0, 10);
	sched_add(s, TR, "a.example", 4, 0, 500);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 1);
	assert_true(st == BU && out[0].msgid == 3);
	sched_release(s, "a.example");
	sched_remove_msg(s, 4);
	/* bulk of A (older, and holding A's only slot) does not block B's transactional */
	for (uint32_t i = 0; i < 20; i++)
		sched_add(s, BU, "a.example", 5, i, 1);
	sched_add(s, TR, "b.example", 6, 0, 90);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 8);
	assert_true(strcmp(dest, "a.example") == 0 && st == BU);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 1);
	assert_true(strcmp(dest, "b.example") == 0 && st == TR && out[0].msgid == 6);
	sched_release(s, "a.example");
	sched_release(s, "b.example");
	sched_free(s);
}

/* An attempt that holds a slot goes on with more of its destination: only due
 * items, transactional first, grouped by message, no further slot taken (the
 * other slot stays free for a second attempt), other destinations untouched. */
static void test_take_more(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(2);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	sched_add(s, TR, "a.example", 1, 0, 10);
	sched_add(s, TR, "b.example", 9, 0, 10);
	assert_int_equal(take(s, 20, out, 8, dest, &st), 1);
	assert_string_equal(dest, "a.example");
	assert_int_equal(sched_take_more(s, "a.example", 20, out, 8, &st), 0); /* none left */
	sched_add(s, BU, "a.example", 2, 0, 15);
	sched_add(s, BU, "a.example", 3, 1, 16);
	sched_add(s, TR, "a.example", 4, 0, 17);
	sched_add(s, BU, "a.example", 2, 1, 18);
	sched_add(s, TR, "a.example", 5, 0, 500); /* not due yet */
	assert_int_equal(sched_take_more(s, "a.example", 20, out, 8, &st), 1);
	assert_true(st == TR && out[0].msgid == 4);
	assert_int_equal(sched_take_more(s, "a.example", 20, out, 8, &st), 3);
	assert_int_equal(st, BU);
	assert_true(out[0].msgid == 2 && out[1].msgid == 2 && out[2].msgid == 3);
	assert_int_equal(sched_take_more(s, "a.example", 20, out, 8, &st), 0);
	assert_int_equal(sched_next_due(s), 10); /* b waits; a's item at 500 */
	/* a's second slot is still free: a second attempt may start */
	assert_int_equal(take(s, 600, out, 8, dest, &st), 1);
	assert_int_equal(take(s, 600, out, 8, dest, &st), 1);
	assert_int_equal(take(s, 600, out, 8, dest, &st), 0);
	sched_release(s, "a.example");
	sched_release(s, "a.example");
	sched_release(s, "b.example");
	assert_int_equal(sched_count(s), 0);
	sched_free(s);
}

static void test_remove_msg(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(4);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	sched_add(s, TR, "a.example", 1, 0, 10);
	sched_add(s, TR, "b.example", 1, 1, 5);
	sched_add(s, BU, "a.example", 2, 0, 30);
	sched_add(s, TR, "a.example", 1, 2, 20);
	assert_int_equal(sched_next_due(s), 5);
	sched_remove_msg(s, 1);
	assert_int_equal(sched_count(s), 1);
	assert_int_equal(sched_next_due(s), 30);
	sched_remove_msg(s, 1); /* unknown now: no-op */
	sched_remove_msg(s, 99);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 1);
	assert_true(out[0].msgid == 2 && strcmp(dest, "a.example") == 0);
	assert_int_equal(take(s, 100, out, 8, dest, &st), 0);
	sched_release(s, "a.example");
	sched_free(s);
}

static void test_readd_replaces(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(4);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	sched_add(s, BU, "a.example", 1, 0, 100);
	sched_add(s, TR, "b.example", 1, 0, 50); /* moves destination and stream */
	assert_int_equal(sched_count(s), 1);
	assert_int_equal(sched_next_due(s), 50);
	sched_add(s, TR, "b.example", 1, 0, 700); /* later: next_due follows */
	assert_int_equal(sched_count(s), 1);
	assert_int_equal(sched_next_due(s), 700);
	assert_int_equal(take(s, 600, out, 8, dest, &st), 0);
	assert_int_equal(take(s, 700, out, 8, dest, &st), 1);
	assert_true(out[0].due == 700 && st == TR && strcmp(dest, "b.example") == 0);
	sched_release(s, "b.example");
	/* re-adding after a take queues it again */
	sched_add(s, TR, "B.Example", 1, 0, 800);
	assert_int_equal(take(s, 900, out, 8, dest, &st), 1);
	assert_string_equal(dest, "b.example");
	sched_release(s, "b.example");
	sched_free(s);
}

static void test_flush(void **state)
{
	(void)state;
	struct sched_conf c = conf_with(4);
	struct sched *s = sched_new(&c);
	struct sched_item out[8];
	char dest[256];
	enum sched_stream st;
	sched_add(s, TR, "a.example", 1, 0, 1000);
	sched_add(s, TR, "a.example", 1, 1, 100);
	sched_add(s, BU, "b.example", 2, 0, 2000);
	sched_add(s, TR, "c.example", 3, 0, 3000);
	assert_int_equal(sched_next_due(s), 100);
	sched_flush(s, 2, 500); /* b: 2000 -> 500 */
	assert_int_equal(sched_next_due(s), 100);
	sched_flush(s, 1, 500); /* rcpt 1 (due 100) keeps its time */
	assert_int_equal(sched_next_due(s), 100);
	assert_int_equal(take(s, 500, out, 8, dest, &st), 2);
	assert_string_equal(dest, "a.example");
	assert_true(out[0].rcpt == 1 && out[0].due == 100);
	assert_true(out[1].rcpt == 0 && out[1].due == 500);
	sched_release(s, dest);
	assert_int_equal(take(s, 500, out, 8, dest, &st), 1);
	assert_true(strcmp(dest, "b.example") == 0 && out[0].due == 500);
	sched_release(s, dest);
	assert_int_equal(sched_next_due(s), 3000);
	sched_flush(s, 0, 600); /* everything: c 3000 -> 600 */
	assert_int_equal(sched_next_due(s), 600);
	assert_int_equal(take(s, 600, out, 8, dest, &st), 1);
	assert_true(strcmp(dest, "c.example") == 0 && out[0].due == 600);
	sched_release(s, dest);
	sched_flush(s, 0, 700); /* empty: harmless */
	sched_flush(s, 42, 700);
	assert_int_equal(sched_next_due(s), INT64_MAX);
	sched_free(s);
}

/* ---- random operations against a brute-force model ---- */

#define M_DESTS 5
#define M_MSGS  12
#define M_RCPTS 4
#define M_MAX   (M_MSGS * M_RCPTS)

struct model_item {
	bool queued;
	int dest;
	enum sched_stream st;
	int64_t due;
};

struct model {
	struct model_item it[M_MSGS + 1][M_RCPTS];
	unsigned active[M_DESTS];
	unsigned max_conn;
};

static const char *const m_names[M_DESTS] = {"a.test", "b.test", "c.test", "d.test", "e.test"};

static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int64_t model_next_due(const struct model *m, size_t *count)
{
	int64_t best = INT64_MAX;
	*count = 0;
	for (int g = 1; g <= M_MSGS; g++)
		for (int r = 0; r < M_RCPTS; r++) {
			const struct model_item *x = &m->it[g][r];
			if (!x->queued)
				continue;
			(*count)++;
			if (m->active[x->dest] < m->max_conn && x->due < best)
				best = x->due;
		}
	return best;
}

static bool model_due_in(const struct model *m, int d, int st, int64_t now)
{
	for (int g = 1; g <= M_MSGS; g++)
		for (int r = 0; r < M_RCPTS; r++) {
			const struct model_item *x = &m->it[g][r];
			if (x->queued && x->dest == d && (st < 0 || (int)x->st == st) &&
			    x->due <= now)
				return true;
		}
	return false;
}

static int dest_index(const char *name)
{
	for (int d = 0; d < M_DESTS; d++)
		if (strcmp(name, m_names[d]) == 0)
			return d;
	return -1;
}

static int item_cmp(const void *a, const void *b)
{
	const struct sched_item *x = a, *y = b;
	if (x->due != y->due)
		return x->due < y->due ? -1 : 1;
	if (x->msgid != y->msgid)
		return x->msgid < y->msgid ? -1 : 1;
	return (x->rcpt > y->rcpt) - (x->rcpt < y->rcpt);
}

/* The due items of (d, st), in (due, msgid, rcpt) order. */
static size_t model_due_list(const struct model *m, int d, int st, int64_t now,
                             struct sched_item *out)
{
	size_t n = 0;
	for (int g = 1; g <= M_MSGS; g++)
		for (int r = 0; r < M_RCPTS; r++) {
			const struct model_item *x = &m->it[g][r];
			if (x->queued && x->dest == d && (int)x->st == st && x->due <= now)
				out[n++] = (struct sched_item){(uint64_t)g, (uint32_t)r, x->due};
		}
	qsort(out, n, sizeof *out, item_cmp);
	return n;
}

static void check_adjacent(const struct sched_item *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 2; j < n; j++)
			if (out[j].msgid == out[i].msgid)
				for (size_t k = i + 1; k < j; k++)
					assert_true(out[k].msgid == out[i].msgid);
}

static void model_take(struct sched *s, struct model *m, int64_t now)
{
	struct sched_item out[M_MAX], want[M_MAX];
	char dest[256];
	enum sched_stream st;
	size_t max = 1 + rng() % 6;
	size_t n = take(s, now, out, max, dest, &st);
	bool any = false;
	for (int d = 0; d < M_DESTS; d++)
		any |= m->active[d] < m->max_conn && model_due_in(m, d, -1, now);
	assert_int_equal(n > 0, any);
	if (n == 0)
		return;
	int d = dest_index(dest);
	assert_true(d >= 0 && m->active[d] < m->max_conn);
	assert_int_equal(st, model_due_in(m, d, TR, now) ? TR : BU);
	size_t nw = model_due_list(m, d, st, now, want);
	assert_int_equal(n, MIN(max, nw));
	check_adjacent(out, n);
	qsort(out, n, sizeof *out, item_cmp);
	for (size_t i = 0; i < n; i++) {
		assert_true(out[i].msgid == want[i].msgid && out[i].rcpt == want[i].rcpt);
		assert_int_equal(out[i].due, want[i].due);
		m->it[out[i].msgid][out[i].rcpt].queued = false;
	}
	m->active[d]++;
}

static void model_release(struct sched *s, struct model *m)
{
	int d0 = (int)(rng() % M_DESTS);
	for (int k = 0; k < M_DESTS; k++) {
		int d = (d0 + k) % M_DESTS;
		if (m->active[d] > 0) {
			sched_release(s, m_names[d]);
			m->active[d]--;
			return;
		}
	}
}

static void model_flush(struct sched *s, struct model *m, int64_t now)
{
	int g = rng() % 3 == 0 ? 0 : 1 + (int)(rng() % M_MSGS);
	sched_flush(s, (uint64_t)g, now);
	for (int gg = 1; gg <= M_MSGS; gg++)
		for (int r = 0; r < M_RCPTS; r++)
			if ((g == 0 || g == gg) && m->it[gg][r].due > now)
				m->it[gg][r].due = now;
}

static void model_op(struct sched *s, struct model *m, int64_t *now)
{
	unsigned op = (unsigned)(rng() % 100);
	int g = 1 + (int)(rng() % M_MSGS);
	if (op < 40) {
		int r = (int)(rng() % M_RCPTS), d = (int)(rng() % M_DESTS);
		enum sched_stream st = rng() % 2 ? TR : BU;
		int64_t due = *now - 50 + (int64_t)(rng() % 300);
		sched_add(s, st, m_names[d], (uint64_t)g, (uint32_t)r, due);
		m->it[g][r] = (struct model_item){true, d, st, due};
	} else if (op < 62) {
		model_take(s, m, *now);
	} else if (op < 80) {
		model_release(s, m);
	} else if (op < 85) {
		sched_remove_msg(s, (uint64_t)g);
		for (int r = 0; r < M_RCPTS; r++)
			m->it[g][r].queued = false;
	} else if (op < 88) {
		model_flush(s, m, *now);
	} else {
		*now += (int64_t)(rng() % 40);
	}
}

static void test_model(void **state)
{
	(void)state;
	static const unsigned conns[] = {1, 2, 3};
	for (size_t ci = 0; ci < ARRAY_LEN(conns); ci++) {
		for (uint64_t seed = 1; seed <= 4; seed++) {
			rng_state = 0x9E3779B97F4A7C15ull * seed + ci;
			struct model m = {.max_conn = conns[ci]};
			struct sched_conf c = conf_with(conns[ci]);
			struct sched *s = sched_new(&c);
			int64_t now = 1000;
			for (int op = 0; op < 3000; op++) {
				model_op(s, &m, &now);
				size_t count;
				int64_t want = model_next_due(&m, &count);
				if (sched_next_due(s) != want || sched_count(s) != count)
					fail_msg(
					    "seed %llu conn %u op %d: next_due %lld want %lld, "
					    "count %zu want %zu",
					    (unsigned long long)seed, conns[ci], op,
					    (long long)sched_next_due(s), (long long)want,
					    sched_count(s), count);
			}
			sched_free(s);
		}
	}
}

/* ---- size ---- */

static double elapsed_s(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

/* 200k recipients over 5000 destinations: add, replace a tenth, drain with
 * next_due checked after every take. Well under a second without sanitizers. */
static void test_smoke_200k(void **state)
{
	(void)state;
	enum { N = 200000, NDEST = 5000 };
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct sched_conf c = conf_with(3);
	struct sched *s = sched_new(&c);
	char name[32];
	rng_state = 12345;
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof name, "d%u.example", (i * 7919u) % NDEST);
		sched_add(s, i % 3 ? TR : BU, name, 1 + i / 10, i % 10, (int64_t)(rng() % 1000000));
	}
	for (uint32_t i = 0; i < N; i += 10)
		sched_add(s, TR, "d0.example", 1 + i / 10, 0, 999999);
	assert_int_equal(sched_count(s), N);
	struct sched_item out[50];
	char dest[256];
	enum sched_stream st;
	size_t total = 0;
	for (;;) {
		int64_t nd = sched_next_due(s);
		assert_int_equal(nd == INT64_MAX, sched_count(s) == 0);
		if (nd == INT64_MAX)
			break;
		assert_true(nd <= 999999);
		size_t n = take(s, 1000000, out, ARRAY_LEN(out), dest, &st);
		assert_true(n > 0);
		total += n;
		sched_release(s, dest);
	}
	assert_int_equal(total, N);
	assert_int_equal(sched_count(s), 0);
	sched_free(s);
	double t = elapsed_s(&t0);
	if (t > 10.0)
		fail_msg("200k smoke took %.2f s", t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_delay),   cmocka_unit_test(test_expiry),
	    cmocka_unit_test(test_next_attempt),  cmocka_unit_test(test_stream_names),
	    cmocka_unit_test(test_take_only_due), cmocka_unit_test(test_take_one_dest),
	    cmocka_unit_test(test_take_adjacent), cmocka_unit_test(test_concurrency_limit),
	    cmocka_unit_test(test_round_robin),   cmocka_unit_test(test_stream_order),
	    cmocka_unit_test(test_remove_msg),    cmocka_unit_test(test_readd_replaces),
	    cmocka_unit_test(test_flush),         cmocka_unit_test(test_model),
	    cmocka_unit_test(test_smoke_200k),    cmocka_unit_test(test_take_more),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
