/*
 * test_core_evlog.c - the event stream: order, batching, copying, the bounded
 * queue (drops counted, never blocking) and the drain at stop.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

/* What the sink saw; the sink can be made to wait on a gate. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate_closed;
	bool entered;		/* the sink has been called */
	size_t nevents, nbatches, max_batch;
	uint64_t last_msgid;
	bool in_order;
	char first_rcpt[64];
	int64_t first_time;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void sink(void *ctx, struct evlog_event *const *evs, size_t n)
{
	pthread_mutex_lock(&seen.lock);
	seen.entered = true;
	while (seen.gate_closed)
		pthread_cond_wait(&seen.cond, &seen.lock);
	for (size_t i = 0; i < n; i++) {
		if (seen.nevents == 0) {
			str_lcpy(seen.first_rcpt, evs[i]->recipient ? evs[i]->recipient : "",
				 sizeof seen.first_rcpt);
			seen.first_time = evs[i]->time;
		}
		if (evs[i]->msgid != seen.last_msgid + 1)
			seen.in_order = false;
		seen.last_msgid = evs[i]->msgid;
		seen.nevents++;
	}
	seen.nbatches++;
	if (n > seen.max_batch)
		seen.max_batch = n;
	pthread_mutex_unlock(&seen.lock);
}

static void reset(void)
{
	pthread_mutex_lock(&seen.lock);
	seen.nevents = seen.nbatches = seen.max_batch = 0;
	seen.last_msgid = 0;
	seen.in_order = true;
	seen.first_rcpt[0] = '\0';
	seen.gate_closed = false;
	seen.entered = false;
	pthread_mutex_unlock(&seen.lock);
}

static void set_gate(bool closed)
{
	pthread_mutex_lock(&seen.lock);
	seen.gate_closed = closed;
	pthread_cond_broadcast(&seen.cond);
	pthread_mutex_unlock(&seen.lock);
}

static void emit_n(size_t n, uint64_t first_id)
{
	char rcpt[64];
	for (size_t i = 0; i < n; i++) {
		snprintf(rcpt, sizeof rcpt, "r%zu@example.org", i);
		struct evlog_event ev = {.type = EVLOG_DELIVERED, .msgid = first_id + i,
					 .recipient = rcpt, .stream = "bulk", .source = "smtp"};
		evlog_emit(&ev);
	}
}

static void test_names_roundtrip(void **state)
{
	for (int t = 0; t < EVLOG__COUNT; t++) {
		enum evlog_type back;
		assert_true(evlog_type_parse(evlog_type_name((enum evlog_type)t), &back));
		assert_int_equal(back, t);
	}
	enum evlog_type x;
	assert_false(evlog_type_parse("deliverd", &x));
	assert_false(evlog_type_parse("", &x));
	assert_string_equal(evlog_type_name(EVLOG_SUPPRESSED), "suppressed");
	assert_string_equal(evlog_stream_name(true), "bulk");
	assert_string_equal(evlog_stream_name(false), "transactional");
}

static void test_emit_before_start_is_a_no_op(void **state)
{
	reset();
	emit_n(10, 1);
	assert_int_equal(seen.nevents, 0);
}

/* Everything emitted arrives once, in order, in batches of at most EVLOG_BATCH_MAX,
 * as copies (the emitter's buffers are reused), with a time filled in. */
static void test_order_batches_copies(void **state)
{
	reset();
	assert_int_equal(evlog_start(0, sink, NULL), RC_OK);
	assert_int_equal(evlog_start(0, sink, NULL), RC_EXISTS);
	int64_t before = time_now_ms();
	set_gate(true); /* let a backlog build up so batches are full */
	emit_n(3000, 1);
	set_gate(false);
	evlog_flush();
	assert_int_equal(seen.nevents, 3000);
	assert_true(seen.in_order);
	assert_true(seen.max_batch <= EVLOG_BATCH_MAX);
	assert_true(seen.max_batch > 1);
	assert_string_equal(seen.first_rcpt, "r0@example.org");
	assert_true(seen.first_time >= before && seen.first_time <= time_now_ms());
	evlog_stop();
	assert_int_equal(evlog_dropped(), 0);
}

/* A stuck sink: the queue stops at its bound, emitters do not block, drops are
 * counted; once the sink moves, what was queued arrives and stop drains it. */
static void test_bounded_queue_drops_and_stop_drains(void **state)
{
	reset();
	assert_int_equal(evlog_start(100, sink, NULL), RC_OK);
	set_gate(true);
	emit_n(1, 1); /* the sink thread takes this one and waits at the gate */
	for (int i = 0; i < 5000; i++) {
		pthread_mutex_lock(&seen.lock);
		bool in = seen.entered;
		pthread_mutex_unlock(&seen.lock);
		if (in)
			break;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	assert_true(seen.entered);
	emit_n(500, 2); /* returns at once although nothing is consumed */
	assert_int_equal(evlog_dropped(), 400);
	set_gate(false);
	evlog_stop(); /* drains: everything that was queued reaches the sink */
	assert_int_equal(seen.nevents, 101);
	assert_true(seen.in_order); /* ids 1..101: the first 100 of the 500 were kept */
	emit_n(5, 1000); /* after stop: ignored */
	assert_int_equal(seen.nevents, 101);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_roundtrip),
		cmocka_unit_test(test_emit_before_start_is_a_no_op),
		cmocka_unit_test(test_order_batches_copies),
		cmocka_unit_test(test_bounded_queue_drops_and_stop_drains),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
