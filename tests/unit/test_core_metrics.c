/*
 * test_core_metrics.c - the metrics registry and its exposition, and the health
 * slots (last error per subsystem, heartbeats): exact rendered lines after known
 * updates, histogram buckets at their bounds, bounded listener and code labels,
 * concurrent increments not lost, error lines routed to the right subsystem.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

/* has_line - does the exposition contain this exact line? */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void expect_lines(const char *const *lines, size_t n)
{
	char *text = metrics_render();
	for (size_t i = 0; i < n; i++)
		if (!has_line(text, lines[i]))
			fail_msg("missing line \"%s\" in:\n%s", lines[i], text);
	free(text);
}

static void test_counters_gauges_and_labels(void **state)
{
	metrics_inc(METRICS_RECEIVED_SMTP);
	metrics_inc(METRICS_RECEIVED_SMTP);
	metrics_inc(METRICS_ATTEMPT_BOUNCED);
	metrics_gauge_set(METRICS_G_QUEUE_DEFERRED_BULK, 7);
	metrics_gauge_add(METRICS_G_OUTBOUND_OPEN, 2);
	metrics_gauge_add(METRICS_G_OUTBOUND_OPEN, -1);
	metrics_rejected(false, 550);
	metrics_rejected(false, 550);
	metrics_rejected(true, 413);
	metrics_rejected(false, 250);  /* not a refusal: ignored */
	metrics_rejected(false, 9999); /* out of range: ignored, never an overflow */
	static const char *const lines[] = {
	    "relevo_build_info{version=\"" RELEVO_VERSION "\"} 1",
	    "# TYPE relevo_messages_received_total counter",
	    "relevo_messages_received_total{source=\"smtp\"} 2",
	    "relevo_messages_received_total{source=\"api\"} 0",
	    "relevo_delivery_attempts_total{result=\"bounced\"} 1",
	    "relevo_queue_recipients{state=\"deferred\",stream=\"bulk\"} 7",
	    "relevo_outbound_connections 1",
	    "relevo_messages_rejected_total{source=\"smtp\",code=\"550\"} 2",
	    "relevo_messages_rejected_total{source=\"api\",code=\"413\"} 1",
	    "relevo_events_dropped_total 0",
	};
	expect_lines(lines, ARRAY_LEN(lines));
	char *text = metrics_render();
	assert_null(strstr(text, "code=\"250\""));
	/* One HELP and TYPE per family, however many series it has. */
	const char *first = strstr(text, "# TYPE relevo_delivery_attempts_total");
	assert_non_null(first);
	assert_null(strstr(first + 1, "# TYPE relevo_delivery_attempts_total"));
	free(text);
	assert_int_equal(metrics_counter_get(METRICS_RECEIVED_SMTP), 2);
}

static void test_histogram_buckets(void **state)
{
	static const struct {
		const char *label;
		uint64_t us;
	} obs[] = {
	    {"exactly on a bound counts in that bucket", 1000},
	    {"just above goes to the next", 1001},
	    {"beyond the last bound is +Inf only", 120000000},
	};
	for (size_t i = 0; i < ARRAY_LEN(obs); i++)
		metrics_observe(METRICS_H_DELIVERY_TLS, obs[i].us);
	static const char *const lines[] = {
	    "# TYPE relevo_delivery_stage_duration_seconds histogram",
	    "relevo_delivery_stage_duration_seconds_bucket{stage=\"tls\",le=\"0.0005\"} 0",
	    "relevo_delivery_stage_duration_seconds_bucket{stage=\"tls\",le=\"0.001\"} 1",
	    "relevo_delivery_stage_duration_seconds_bucket{stage=\"tls\",le=\"0.0025\"} 2",
	    "relevo_delivery_stage_duration_seconds_bucket{stage=\"tls\",le=\"60\"} 2",
	    "relevo_delivery_stage_duration_seconds_bucket{stage=\"tls\",le=\"+Inf\"} 3",
	    "relevo_delivery_stage_duration_seconds_sum{stage=\"tls\"} 120.002001",
	    "relevo_delivery_stage_duration_seconds_count{stage=\"tls\"} 3",
	    "relevo_delivery_stage_duration_seconds_count{stage=\"dns\"} 0",
	    "relevo_spool_batch_records_count 0",
	};
	expect_lines(lines, ARRAY_LEN(lines));
}

static void test_listeners_bounded_and_escaped(void **state)
{
	metrics_connection("127.0.0.1:587");
	metrics_connection("127.0.0.1:587");
	metrics_session("127.0.0.1:587", 1);
	metrics_session("[::1]:25", 1);
	metrics_session("[::1]:25", -1);
	metrics_connection("odd\"name\\");
	static const char *const lines[] = {
	    "relevo_smtp_connections_total{listener=\"127.0.0.1:587\"} 2",
	    "relevo_smtp_sessions{listener=\"127.0.0.1:587\"} 1",
	    "relevo_smtp_sessions{listener=\"[::1]:25\"} 0",
	    "relevo_smtp_connections_total{listener=\"odd\\\"name\\\\\"} 1",
	};
	expect_lines(lines, ARRAY_LEN(lines));
	assert_int_equal(metrics_sessions_open(metrics_listener("127.0.0.1:587")), 1);
	assert_int_equal(metrics_sessions_open(-1), 1);
	/* The registry is bounded: past METRICS_LISTENERS_MAX names, -1 and no series. */
	char name[32];
	int last = 0;
	for (int i = 0; i < METRICS_LISTENERS_MAX + 5; i++) {
		snprintf(name, sizeof name, "10.0.0.%d:25", i);
		last = metrics_listener(name);
	}
	assert_int_equal(last, -1);
	metrics_connection("10.0.0.99:25"); /* must not crash or add a series */
	char *text = metrics_render();
	assert_null(strstr(text, "10.0.0.99:25"));
	free(text);
	assert_string_equal(metrics_listener_name(0), "127.0.0.1:587");
	assert_null(metrics_listener_name(METRICS_LISTENERS_MAX));
}

static void *bump(void *arg)
{
	for (int i = 0; i < 100000; i++) {
		metrics_inc(METRICS_DKIM_SIGNATURES);
		metrics_observe(METRICS_H_SPOOL_BATCH, 1);
	}
	return NULL;
}

static void test_concurrent_updates_are_not_lost(void **state)
{
	pthread_t t[4];
	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		pthread_create(&t[i], NULL, bump, NULL);
	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		pthread_join(t[i], NULL);
	assert_int_equal(metrics_counter_get(METRICS_DKIM_SIGNATURES), 400000);
	static const char *const lines[] = {
	    "relevo_dkim_signatures_total 400000",
	    "relevo_spool_batch_records_bucket{le=\"1\"} 400000",
	    "relevo_spool_batch_records_sum 400000",
	};
	expect_lines(lines, ARRAY_LEN(lines));
}

static void test_delivered_recent(void **state)
{
	uint64_t before = metrics_delivered_recent();
	metrics_inc(METRICS_ATTEMPT_DELIVERED);
	metrics_inc(METRICS_ATTEMPT_DELIVERED);
	metrics_inc(METRICS_ATTEMPT_DEFERRED); /* not a delivery */
	assert_int_equal(metrics_delivered_recent(), before + 2);
}

static void test_health_errors_by_subsystem(void **state)
{
	static const struct {
		const char *label;
		const char *line;
		enum health_subsys s;
	} cases[] = {
	    {"store_ prefix", "event=store_error op=x db=/d msg=\"locked\"", HEALTH_STORE},
	    {"spool_ prefix", "event=spool_append_failed seg=1 off=0 errno=5", HEALTH_SPOOL},
	    {"webhook_ prefix", "event=webhook_load_failed rc=io", HEALTH_WEBHOOKS},
	    {"id first, then the event", "id=0123 event=dns_setup_failed", HEALTH_MTA},
	    {"unknown prefix: the thread's", "event=something_odd", HEALTH_HTTP},
	};
	health_thread_subsys(HEALTH_HTTP);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		health_note_log_error(cases[i].line);
		char out[256];
		assert_true(health_last_error(cases[i].s, out, sizeof out) > 0);
		if (strcmp(out, cases[i].line) != 0)
			fail_msg("%s: got \"%s\"", cases[i].label, out);
	}
	char out[256];
	assert_int_equal(health_last_error(HEALTH_SMTP, out, sizeof out), 0);
	assert_string_equal(out, "");
	/* log_err itself records. */
	health_thread_subsys(HEALTH_SMTP);
	log_err("event=smtp_test_failure detail=x");
	health_last_error(HEALTH_SMTP, out, sizeof out);
	assert_string_equal(out, "event=smtp_test_failure detail=x");
	assert_string_equal(health_subsys_name(HEALTH_WEBHOOKS), "webhooks");
}

static void test_heartbeat(void **state)
{
	assert_int_equal(health_beat_age_ms(HEALTH_MTA), -1);
	health_beat(HEALTH_MTA);
	int64_t age = health_beat_age_ms(HEALTH_MTA);
	assert_true(age >= 0 && age < 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counters_gauges_and_labels),
	    cmocka_unit_test(test_histogram_buckets),
	    cmocka_unit_test(test_listeners_bounded_and_escaped),
	    cmocka_unit_test(test_concurrent_updates_are_not_lost),
	    cmocka_unit_test(test_delivered_recent),
	    cmocka_unit_test(test_health_errors_by_subsystem),
	    cmocka_unit_test(test_heartbeat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
