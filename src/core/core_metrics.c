/*
 * core_metrics.c - the metrics registry and its Prometheus text rendering.
 *
 * Every series exists from the start in static arrays of atomics: bumping one is
 * a relaxed atomic add, from any thread, with no lock and no allocation. The
 * tables below name each series (family name, labels, type, help); series of one
 * family are adjacent, so that the renderer writes HELP and TYPE once per family.
 * Listener names are registered once each (a mutex for the writer only); readers
 * see a name only after it is complete (release/acquire on the count).
 *
 * Histograms keep non-cumulative integer bucket counts and an integer sum in
 * their own unit (microseconds or records); rendering cumulates and scales to
 * base units (seconds). A scrape that races an update may see a bucket one ahead
 * of the sum: Prometheus tolerates that, and no update is lost.
 *
 * Bounds: labels come from the configuration (listener addresses, at most
 * METRICS_LISTENERS_MAX), reply codes 400..599, or fixed sets; the rendering is at
 * most METRICS_RENDER_MAX bytes.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum metrics_kind { MK_COUNTER, MK_GAUGE };

struct metrics_desc {
	const char *name;   /* family name */
	const char *labels; /* rendered label pairs, or NULL */
	const char *help;
};

#define DELIVERY_HELP "Recipient delivery outcomes by result."
#define WEBHOOK_HELP  "Webhook POSTs by result."
#define RECEIVED_HELP "Messages received and made durable, by source."
static const struct metrics_desc metrics_counters[] = {
    [METRICS_SMTP_AUTH_FAILURES] = {"relevo_smtp_auth_failures_total", NULL,
                                    "Failed SMTP AUTH attempts."},
    [METRICS_RECEIVED_SMTP] = {"relevo_messages_received_total", "source=\"smtp\"", RECEIVED_HELP},
    [METRICS_RECEIVED_API] = {"relevo_messages_received_total", "source=\"api\"", RECEIVED_HELP},
    [METRICS_ATTEMPT_DELIVERED] = {"relevo_delivery_attempts_total", "result=\"delivered\"",
                                   DELIVERY_HELP},
    [METRICS_ATTEMPT_DEFERRED] = {"relevo_delivery_attempts_total", "result=\"deferred\"",
                                  DELIVERY_HELP},
    [METRICS_ATTEMPT_BOUNCED] = {"relevo_delivery_attempts_total", "result=\"bounced\"",
                                 DELIVERY_HELP},
    [METRICS_ATTEMPT_EXPIRED] = {"relevo_delivery_attempts_total", "result=\"expired\"",
                                 DELIVERY_HELP},
    [METRICS_OUTBOUND_CONNECTIONS] = {"relevo_outbound_connections_total", NULL,
                                      "Outbound SMTP connections opened."},
    [METRICS_DKIM_SIGNATURES] = {"relevo_dkim_signatures_total", NULL, "DKIM signatures made."},
    [METRICS_WEBHOOK_OK] = {"relevo_webhook_posts_total", "result=\"ok\"", WEBHOOK_HELP},
    [METRICS_WEBHOOK_HTTP_ERROR] = {"relevo_webhook_posts_total", "result=\"http_error\"",
                                    WEBHOOK_HELP},
    [METRICS_WEBHOOK_TRANSPORT_ERROR] = {"relevo_webhook_posts_total", "result=\"transport_error\"",
                                         WEBHOOK_HELP},
    [METRICS_SPOOL_ENV_COPIES] = {"relevo_spool_envelope_copies_total", NULL,
                                  "Envelopes copied out of the spool (per message and "
                                  "attempt, never per recipient)."},
};
_Static_assert(ARRAY_LEN(metrics_counters) == METRICS_C__COUNT, "a row per counter");

#define QUEUE_HELP "Queued recipients by state and stream."
static const struct metrics_desc metrics_gauges[] = {
    [METRICS_G_OUTBOUND_OPEN] = {"relevo_outbound_connections", NULL,
                                 "Outbound SMTP connections open."},
    [METRICS_G_QUEUE_MESSAGES] = {"relevo_queue_messages", NULL, "Messages in the queue."},
    [METRICS_G_QUEUE_ACTIVE_TX] = {"relevo_queue_recipients",
                                   "state=\"active\",stream=\"transactional\"", QUEUE_HELP},
    [METRICS_G_QUEUE_ACTIVE_BULK] = {"relevo_queue_recipients", "state=\"active\",stream=\"bulk\"",
                                     QUEUE_HELP},
    [METRICS_G_QUEUE_DEFERRED_TX] = {"relevo_queue_recipients",
                                     "state=\"deferred\",stream=\"transactional\"", QUEUE_HELP},
    [METRICS_G_QUEUE_DEFERRED_BULK] = {"relevo_queue_recipients",
                                       "state=\"deferred\",stream=\"bulk\"", QUEUE_HELP},
    [METRICS_G_QUEUE_HELD_TX] = {"relevo_queue_recipients",
                                 "state=\"held\",stream=\"transactional\"", QUEUE_HELP},
    [METRICS_G_QUEUE_HELD_BULK] = {"relevo_queue_recipients", "state=\"held\",stream=\"bulk\"",
                                   QUEUE_HELP},
    [METRICS_G_QUEUE_OLDEST_AGE] = {"relevo_queue_oldest_message_age_seconds", NULL,
                                    "Age of the oldest message in the queue (0 if empty)."},
};
_Static_assert(ARRAY_LEN(metrics_gauges) == METRICS_G__COUNT, "a row per gauge");

#define HIST_BUCKETS_MAX 16
struct metrics_hist_desc {
	struct metrics_desc d;
	double scale;                      /* unit per base unit: 1e6 for microseconds */
	uint64_t bounds[HIST_BUCKETS_MAX]; /* upper bounds, in the unit, ascending */
	size_t nbounds;
};

/* Durations from 100 us to 60 s; batch sizes by powers of two. */
#define US_BOUNDS                                                                                  \
	{100,    500,    1000,   2500,    5000,    10000,   25000,    50000,                       \
	 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 60000000},                   \
	    16
#define STAGE_HELP "Delivery latency by stage, in seconds."
static const struct metrics_hist_desc metrics_hists[] = {
    [METRICS_H_SPOOL_COMMIT] = {{"relevo_spool_commit_duration_seconds", NULL,
                                 "Time to write and fdatasync one spool batch."},
                                1e6,
                                US_BOUNDS},
    [METRICS_H_SPOOL_BATCH] = {{"relevo_spool_batch_records", NULL,
                                "Records made durable by one fdatasync (group commit)."},
                               1,
                               {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
                               11},
    [METRICS_H_DELIVERY_DNS] =
        {{"relevo_delivery_stage_duration_seconds", "stage=\"dns\"", STAGE_HELP}, 1e6, US_BOUNDS},
    [METRICS_H_DELIVERY_CONNECT] = {{"relevo_delivery_stage_duration_seconds", "stage=\"connect\"",
                                     STAGE_HELP},
                                    1e6,
                                    US_BOUNDS},
    [METRICS_H_DELIVERY_TLS] =
        {{"relevo_delivery_stage_duration_seconds", "stage=\"tls\"", STAGE_HELP}, 1e6, US_BOUNDS},
    [METRICS_H_DELIVERY_TXN] = {{"relevo_delivery_stage_duration_seconds", "stage=\"transaction\"",
                                 STAGE_HELP},
                                1e6,
                                US_BOUNDS},
};
_Static_assert(ARRAY_LEN(metrics_hists) == METRICS_H__COUNT, "a row per histogram");

struct metrics_hist_state {
	_Atomic uint64_t buckets[HIST_BUCKETS_MAX + 1]; /* the last one is +Inf */
	_Atomic uint64_t sum;
};

#define CODE_MIN     400
#define CODE_MAX     599
#define RECENT_SLOTS 64 /* seconds kept for metrics_delivered_recent (>= 60) */

static struct {
	_Atomic uint64_t counters[METRICS_C__COUNT];
	_Atomic int64_t gauges[METRICS_G__COUNT];
	struct metrics_hist_state hists[METRICS_H__COUNT];
	_Atomic uint64_t rejected[2][CODE_MAX - CODE_MIN + 1]; /* [api][code] */
	pthread_mutex_t listener_lock;
	_Atomic int nlisteners;
	char listener_names[METRICS_LISTENERS_MAX][64];
	_Atomic uint64_t connections[METRICS_LISTENERS_MAX];
	_Atomic int64_t sessions[METRICS_LISTENERS_MAX];
	_Atomic int64_t recent_sec[RECENT_SLOTS]; /* which second a slot counts */
	_Atomic uint64_t recent_n[RECENT_SLOTS];
} M = {.listener_lock = PTHREAD_MUTEX_INITIALIZER};

/* metrics_inc - add one to counter c. */
void metrics_inc(enum metrics_counter c)
{
	atomic_fetch_add_explicit(&M.counters[c], 1, memory_order_relaxed);
	if (c == METRICS_ATTEMPT_DELIVERED) {
		int64_t sec = time_mono_ms() / 1000;
		size_t i = (size_t)sec % RECENT_SLOTS;
		int64_t was = atomic_load(&M.recent_sec[i]);
		if (was != sec && atomic_compare_exchange_strong(&M.recent_sec[i], &was, sec))
			atomic_store(&M.recent_n[i], 0);
		atomic_fetch_add(&M.recent_n[i], 1);
	}
}

/* metrics_counter_get - the value of counter c. */
uint64_t metrics_counter_get(enum metrics_counter c)
{
	return atomic_load_explicit(&M.counters[c], memory_order_relaxed);
}

/* metrics_delivered_recent - deliveries counted in the last 60 seconds. */
uint64_t metrics_delivered_recent(void)
{
	int64_t now = time_mono_ms() / 1000;
	uint64_t n = 0;
	for (size_t i = 0; i < RECENT_SLOTS; i++) {
		int64_t sec = atomic_load(&M.recent_sec[i]);
		if (sec > now - 60 && sec <= now)
			n += atomic_load(&M.recent_n[i]);
	}
	return n;
}

/* metrics_gauge_set - set gauge g. */
void metrics_gauge_set(enum metrics_gauge g, int64_t v)
{
	atomic_store_explicit(&M.gauges[g], v, memory_order_relaxed);
}

/* metrics_gauge_add - move gauge g by delta. */
void metrics_gauge_add(enum metrics_gauge g, int64_t delta)
{
	atomic_fetch_add_explicit(&M.gauges[g], delta, memory_order_relaxed);
}

/* metrics_observe - count v (in the histogram's unit) into histogram h. */
void metrics_observe(enum metrics_hist h, uint64_t v)
{
	const struct metrics_hist_desc *d = &metrics_hists[h];
	size_t b = 0;
	while (b < d->nbounds && v > d->bounds[b])
		b++;
	atomic_fetch_add_explicit(&M.hists[h].buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&M.hists[h].sum, v, memory_order_relaxed);
}

/* metrics_now_us - CLOCK_MONOTONIC in microseconds. */
int64_t metrics_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* metrics_listener - find or register the listener called name. */
int metrics_listener(const char *name)
{
	int n = atomic_load_explicit(&M.nlisteners, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (strcmp(M.listener_names[i], name) == 0)
			return i;
	pthread_mutex_lock(&M.listener_lock);
	n = atomic_load(&M.nlisteners);
	int found = -1;
	for (int i = 0; i < n && found < 0; i++)
		if (strcmp(M.listener_names[i], name) == 0)
			found = i;
	if (found < 0 && n < METRICS_LISTENERS_MAX) {
		str_lcpy(M.listener_names[n], name, sizeof M.listener_names[n]);
		atomic_store_explicit(&M.nlisteners, n + 1, memory_order_release);
		found = n;
	}
	pthread_mutex_unlock(&M.listener_lock);
	return found;
}

/* metrics_listener_name - listener i's name, or NULL. */
const char *metrics_listener_name(int i)
{
	if (i < 0 || i >= atomic_load_explicit(&M.nlisteners, memory_order_acquire))
		return NULL;
	return M.listener_names[i];
}

/* metrics_connection - count a connection accepted on listener name. */
void metrics_connection(const char *name)
{
	int i = metrics_listener(name);
	if (i >= 0)
		atomic_fetch_add_explicit(&M.connections[i], 1, memory_order_relaxed);
}

/* metrics_session - a session opened (+1) or ended (-1) on listener name. */
void metrics_session(const char *name, int delta)
{
	int i = metrics_listener(name);
	if (i >= 0)
		atomic_fetch_add_explicit(&M.sessions[i], delta, memory_order_relaxed);
}

/* metrics_sessions_open - open sessions on listener i, or on all for -1. */
int64_t metrics_sessions_open(int i)
{
	if (i >= 0)
		return i < METRICS_LISTENERS_MAX ? atomic_load(&M.sessions[i]) : 0;
	int64_t n = 0;
	int nl = atomic_load_explicit(&M.nlisteners, memory_order_acquire);
	for (int k = 0; k < nl; k++)
		n += atomic_load(&M.sessions[k]);
	return n;
}

/* metrics_rejected - count a refusal with reply code (outside 400..599: ignored). */
void metrics_rejected(bool api, int code)
{
	if (code < CODE_MIN || code > CODE_MAX)
		return;
	atomic_fetch_add_explicit(&M.rejected[api][code - CODE_MIN], 1, memory_order_relaxed);
}

/* ---- rendering ---------------------------------------------------------------- */

/* family - HELP and TYPE, unless the previous series was of the same family. */
static void family(FILE *f, const char **last, const char *name, const char *help, const char *type)
{
	if (*last != NULL && strcmp(*last, name) == 0)
		return;
	*last = name;
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label_value - a label value with \, " and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void series(FILE *f, const struct metrics_desc *d, const char *value)
{
	if (d->labels)
		fprintf(f, "%s{%s} %s\n", d->name, d->labels, value);
	else
		fprintf(f, "%s %s\n", d->name, value);
}

static void render_hist(FILE *f, const char **last, enum metrics_hist h)
{
	const struct metrics_hist_desc *d = &metrics_hists[h];
	const struct metrics_hist_state *s = &M.hists[h];
	const char *sep = d->d.labels ? "," : "";
	const char *labels = d->d.labels ? d->d.labels : "";
	family(f, last, d->d.name, d->d.help, "histogram");
	uint64_t cum = 0;
	for (size_t b = 0; b <= d->nbounds; b++) {
		cum += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
		if (b < d->nbounds)
			fprintf(f, "%s_bucket{%s%sle=\"%.9g\"} %llu\n", d->d.name, labels, sep,
			        (double)d->bounds[b] / d->scale, (unsigned long long)cum);
		else
			fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", d->d.name, labels, sep,
			        (unsigned long long)cum);
	}
	double sum = (double)atomic_load_explicit(&s->sum, memory_order_relaxed) / d->scale;
	const char *open = d->d.labels ? "{" : "", *close = d->d.labels ? "}" : "";
	fprintf(f, "%s_sum%s%s%s %.9g\n", d->d.name, open, labels, close, sum);
	fprintf(f, "%s_count%s%s%s %llu\n", d->d.name, open, labels, close,
	        (unsigned long long)cum);
}

static void render_listeners(FILE *f)
{
	int n = atomic_load_explicit(&M.nlisteners, memory_order_acquire);
	fprintf(f, "# HELP relevo_smtp_connections_total SMTP connections accepted, by "
	           "listener.\n# TYPE relevo_smtp_connections_total counter\n");
	for (int i = 0; i < n; i++) {
		fputs("relevo_smtp_connections_total{listener=\"", f);
		label_value(f, M.listener_names[i]);
		fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&M.connections[i]));
	}
	fprintf(f, "# HELP relevo_smtp_sessions SMTP sessions open, by listener.\n"
	           "# TYPE relevo_smtp_sessions gauge\n");
	for (int i = 0; i < n; i++) {
		fputs("relevo_smtp_sessions{listener=\"", f);
		label_value(f, M.listener_names[i]);
		fprintf(f, "\"} %lld\n", (long long)atomic_load(&M.sessions[i]));
	}
}

static void render_rejected(FILE *f)
{
	fprintf(f, "# HELP relevo_messages_rejected_total Messages and recipients refused, by "
	           "source and reply code.\n# TYPE relevo_messages_rejected_total counter\n");
	for (int api = 0; api < 2; api++)
		for (int c = CODE_MIN; c <= CODE_MAX; c++) {
			uint64_t v = atomic_load(&M.rejected[api][c - CODE_MIN]);
			if (v > 0)
				fprintf(f,
				        "relevo_messages_rejected_total{source=\"%s\",code=\"%d\"} "
				        "%llu\n",
				        api ? "api" : "smtp", c, (unsigned long long)v);
		}
}

/* metrics_render - the exposition (text format 0.0.4), heap-allocated. */
char *metrics_render(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		fatal("event=open_memstream_failed");
	const char *last = NULL;
	char v[32];
	fprintf(f, "# HELP relevo_build_info The running version (always 1).\n"
	           "# TYPE relevo_build_info gauge\nrelevo_build_info{version=\"");
	label_value(f, RELEVO_VERSION);
	fprintf(f,
	        "\"} 1\n# HELP relevo_start_time_seconds When the daemon started, unix "
	        "seconds.\n# TYPE relevo_start_time_seconds gauge\n"
	        "relevo_start_time_seconds %.3f\n",
	        (double)health_started() / 1000);
	render_listeners(f);
	render_rejected(f);
	for (size_t i = 0; i < METRICS_C__COUNT; i++) {
		family(f, &last, metrics_counters[i].name, metrics_counters[i].help, "counter");
		snprintf(v, sizeof v, "%llu", (unsigned long long)atomic_load(&M.counters[i]));
		series(f, &metrics_counters[i], v);
	}
	fprintf(f,
	        "# HELP relevo_events_dropped_total Events dropped because the event "
	        "queue was full.\n# TYPE relevo_events_dropped_total counter\n"
	        "relevo_events_dropped_total %llu\n",
	        (unsigned long long)evlog_dropped());
	for (size_t i = 0; i < METRICS_G__COUNT; i++) {
		family(f, &last, metrics_gauges[i].name, metrics_gauges[i].help, "gauge");
		snprintf(v, sizeof v, "%lld", (long long)atomic_load(&M.gauges[i]));
		series(f, &metrics_gauges[i], v);
	}
	for (size_t h = 0; h < METRICS_H__COUNT; h++)
		render_hist(f, &last, (enum metrics_hist)h);
	fclose(f);
	if (len > METRICS_RENDER_MAX)
		fatal("event=metrics_too_large bytes=%zu", len);
	return buf;
}
