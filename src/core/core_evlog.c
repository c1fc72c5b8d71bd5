/*
 * core_evlog.c - the event stream: a bounded queue between the emitters (SMTP
 * workers, the HTTP thread, the delivery thread) and one sink thread.
 *
 * Emitting takes a mutex for a pointer append: no I/O, no waiting on the sink.
 * The sink thread swaps the whole queue out under the lock and hands it over in
 * batches of EVLOG_BATCH_MAX, so a slow store slows only the sink thread. Once
 * woken it lingers up to EVLOG_LINGER_MS for a full batch: under load the store
 * then writes hundreds of events per transaction instead of one or two, at the
 * price of events reaching the store (and webhooks) that much later.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVLOG_LINGER_MS 50

static const char *const evlog_names[EVLOG__COUNT] = {
	[EVLOG_ACCEPTED] = "accepted",	   [EVLOG_DELIVERED] = "delivered",
	[EVLOG_DEFERRED] = "deferred",	   [EVLOG_BOUNCED] = "bounced",
	[EVLOG_EXPIRED] = "expired",	   [EVLOG_SUPPRESSED] = "suppressed",
	[EVLOG_REJECTED] = "rejected",	   [EVLOG_DROPPED] = "dropped",
	[EVLOG_OPENED] = "opened",
	[EVLOG_CLICKED] = "clicked",	   [EVLOG_COMPLAINED] = "complained",
	[EVLOG_UNSUBSCRIBED] = "unsubscribed",
};

const char *evlog_type_name(enum evlog_type t)
{
	return (unsigned)t < EVLOG__COUNT ? evlog_names[t] : "unknown";
}

bool evlog_type_parse(const char *s, enum evlog_type *out)
{
	for (int i = 0; i < EVLOG__COUNT; i++) {
		if (strcmp(s, evlog_names[i]) == 0) {
			*out = (enum evlog_type)i;
			return true;
		}
	}
	return false;
}

const char *evlog_stream_name(bool bulk)
{
	return bulk ? "bulk" : "transactional";
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct evlog_event *evlog_event_dup(const struct evlog_event *ev)
{
	struct evlog_event *c = xmalloc(sizeof *c);
	*c = *ev;
	c->recipient = dup_or_null(ev->recipient);
	c->sender = dup_or_null(ev->sender);
	c->user = dup_or_null(ev->user);
	c->status = dup_or_null(ev->status);
	c->remote = dup_or_null(ev->remote);
	c->reply = dup_or_null(ev->reply);
	return c;
}

void evlog_event_free(struct evlog_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->recipient);
	free(ev->sender);
	free(ev->user);
	free(ev->status);
	free(ev->remote);
	free(ev->reply);
	free(ev);
}

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* the sink thread: work or stop */
	pthread_cond_t idle;		/* evlog_flush: everything handed over */
	struct evlog_event **q;
	size_t n, cap, max;
	uint64_t emitted, consumed, dropped;
	bool running, stopping;
	unsigned flushing;		/* evlog_flush callers waiting: do not linger */
	evlog_sink_fn sink;
	void *ctx;
	pthread_t thread;
} evl = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
	 .idle = PTHREAD_COND_INITIALIZER};

/* evlog_linger - with the lock held: wait (up to EVLOG_LINGER_MS) for a full batch. */
static void evlog_linger(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += EVLOG_LINGER_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (evl.n < EVLOG_BATCH_MAX && !evl.stopping && evl.flushing == 0)
		if (pthread_cond_timedwait(&evl.wake, &evl.lock, &until) != 0)
			break;
}

static void *evlog_main(void *unused)
{
	(void)unused;
	health_thread_subsys(HEALTH_STORE); /* the sink writes the events to the store */
	pthread_mutex_lock(&evl.lock);
	for (;;) {
		while (evl.n == 0 && !evl.stopping)
			pthread_cond_wait(&evl.wake, &evl.lock);
		if (evl.n == 0 && evl.stopping)
			break;
		evlog_linger();
		struct evlog_event **batch = evl.q;
		size_t n = evl.n;
		evl.q = NULL;
		evl.n = evl.cap = 0;
		pthread_mutex_unlock(&evl.lock);
		if (fault_hit("evlog_slow"))	/* test seam: a store that lags a second */
			nanosleep(&(struct timespec){1, 0}, NULL);
		for (size_t i = 0; i < n; i += EVLOG_BATCH_MAX)
			evl.sink(evl.ctx, batch + i, MIN(n - i, (size_t)EVLOG_BATCH_MAX));
		for (size_t i = 0; i < n; i++)
			evlog_event_free(batch[i]);
		free(batch);
		pthread_mutex_lock(&evl.lock);
		evl.consumed += n;
		pthread_cond_broadcast(&evl.idle);
	}
	pthread_mutex_unlock(&evl.lock);
	return NULL;
}

void evlog_set_max(size_t max_queued)
{
	pthread_mutex_lock(&evl.lock);
	evl.max = max_queued ? max_queued : 65536;
	pthread_mutex_unlock(&evl.lock);
}

enum rc evlog_start(size_t max_queued, evlog_sink_fn sink, void *ctx)
{
	pthread_mutex_lock(&evl.lock);
	if (evl.running) {
		pthread_mutex_unlock(&evl.lock);
		return RC_EXISTS;
	}
	evl.max = max_queued ? max_queued : 65536;
	evl.sink = sink;
	evl.ctx = ctx;
	evl.stopping = false;
	evl.emitted = evl.consumed = evl.dropped = 0;
	if (pthread_create(&evl.thread, NULL, evlog_main, NULL) != 0) {
		pthread_mutex_unlock(&evl.lock);
		return RC_NOMEM;
	}
	evl.running = true;
	pthread_mutex_unlock(&evl.lock);
	return RC_OK;
}

void evlog_stop(void)
{
	pthread_mutex_lock(&evl.lock);
	if (!evl.running) {
		pthread_mutex_unlock(&evl.lock);
		return;
	}
	evl.stopping = true;
	pthread_cond_signal(&evl.wake);
	pthread_mutex_unlock(&evl.lock);
	pthread_join(evl.thread, NULL);
	pthread_mutex_lock(&evl.lock);
	evl.running = false;
	if (evl.dropped)
		log_warn("event=events_dropped count=%llu", (unsigned long long)evl.dropped);
	pthread_mutex_unlock(&evl.lock);
}

void evlog_emit(const struct evlog_event *ev)
{
	pthread_mutex_lock(&evl.lock);
	if (!evl.running || evl.stopping) {
		pthread_mutex_unlock(&evl.lock);
		return;
	}
	if (evl.n >= evl.max) {
		/* Log the first drop and then every 1000th: a flood of log lines would
		 * make the overload worse. */
		if (evl.dropped++ % 1000 == 0)
			log_warn("event=events_dropped count=%llu queued=%zu",
				 (unsigned long long)evl.dropped, evl.n);
		pthread_mutex_unlock(&evl.lock);
		return;
	}
	pthread_mutex_unlock(&evl.lock);
	struct evlog_event *c = evlog_event_dup(ev); /* allocate outside the lock */
	if (c->time == 0)
		c->time = time_now_ms();
	pthread_mutex_lock(&evl.lock);
	if (evl.n == evl.cap) {
		evl.cap = evl.cap ? evl.cap * 2 : 256;
		evl.q = xrealloc(evl.q, evl.cap * sizeof *evl.q);
	}
	evl.q[evl.n++] = c;
	evl.emitted++;
	if (evl.n == 1 || evl.n == EVLOG_BATCH_MAX)
		pthread_cond_signal(&evl.wake);
	pthread_mutex_unlock(&evl.lock);
}

uint64_t evlog_dropped(void)
{
	pthread_mutex_lock(&evl.lock);
	uint64_t d = evl.dropped;
	pthread_mutex_unlock(&evl.lock);
	return d;
}

void evlog_flush(void)
{
	pthread_mutex_lock(&evl.lock);
	uint64_t target = evl.emitted;
	evl.flushing++;
	pthread_cond_signal(&evl.wake);
	while (evl.running && evl.consumed < target)
		pthread_cond_wait(&evl.idle, &evl.lock);
	evl.flushing--;
	pthread_mutex_unlock(&evl.lock);
}
