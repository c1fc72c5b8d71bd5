/*
 * core_health.c - what `relevo status` and GET /v1/health know about the
 * daemon's subsystems: when each last beat (a loop that stalls stops beating),
 * and the last error each logged.
 *
 * Errors are noted by the logger itself (log_msg at LOG_LV_ERR calls
 * health_note_log_error), so every error logged today is seen without touching
 * the places that log it. The subsystem is the one the event name starts with
 * (event=store_..., spool_..., webhook_..., http_..., dns_..., smtp_...), else
 * the one the logging thread declared with health_thread_subsys (the SMTP main
 * loop and workers are the default).
 *
 * Heartbeats and the start time are atomics; the error slots take a mutex
 * (errors are rare, and a slot is a 256-byte copy).
 *
 * It also keeps the HTTP listeners being served (the API's, noted by its thread
 * as it binds and closes them at start and reload, and the metrics endpoint's)
 * and the API's open connections, for `relevo status`.
 */
#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define HEALTH_ERROR_MAX 256

static const char *const health_names[] = {
    [HEALTH_SMTP] = "smtp",   [HEALTH_SPOOL] = "spool", [HEALTH_MTA] = "mta",
    [HEALTH_STORE] = "store", [HEALTH_HTTP] = "http",   [HEALTH_WEBHOOKS] = "webhooks",
};
_Static_assert(ARRAY_LEN(health_names) == HEALTH__COUNT, "a name per subsystem");

/* Event name prefixes that name their subsystem, whichever thread logs them. */
static const struct {
	const char *prefix;
	enum health_subsys s;
} health_prefixes[] = {
    {"store_", HEALTH_STORE},      {"events_", HEALTH_STORE},  {"spool_", HEALTH_SPOOL},
    {"webhook_", HEALTH_WEBHOOKS}, {"curl_", HEALTH_WEBHOOKS}, {"http_", HEALTH_HTTP},
    {"dns_", HEALTH_MTA},          {"delivery_", HEALTH_MTA},  {"smtp_", HEALTH_SMTP},
};

static struct {
	pthread_mutex_t lock;
	char error[HEALTH__COUNT][HEALTH_ERROR_MAX];
	int64_t error_time[HEALTH__COUNT];
	_Atomic int64_t beat[HEALTH__COUNT]; /* time_mono_ms, 0 = never */
	_Atomic int64_t started;             /* unix ms */
} H = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local enum health_subsys health_thread = HEALTH_SMTP;

#define HEALTH_ADDRESS_MAX 128

/* The served HTTP listeners (guarded by lock) and the API's connections. */
static struct {
	pthread_mutex_t lock;
	struct {
		enum health_listener_kind kind;
		char address[HEALTH_ADDRESS_MAX];
	} l[HEALTH_LISTENERS_MAX];
	size_t n;
	_Atomic int64_t api_connections;
} HL = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* health_listening - see core.h. */
void health_listening(enum health_listener_kind kind, const char *address, bool on)
{
	pthread_mutex_lock(&HL.lock);
	size_t i;
	for (i = 0; i < HL.n; i++)
		if (HL.l[i].kind == kind && strcmp(HL.l[i].address, address) == 0)
			break;
	if (!on && i < HL.n) {
		memmove(&HL.l[i], &HL.l[i + 1], (HL.n - i - 1) * sizeof HL.l[0]);
		HL.n--;
	} else if (on && i == HL.n && HL.n < HEALTH_LISTENERS_MAX) {
		HL.l[HL.n].kind = kind;
		str_lcpy(HL.l[HL.n].address, address, sizeof HL.l[HL.n].address);
		HL.n++;
	}
	pthread_mutex_unlock(&HL.lock);
}

/* health_listener - see core.h. */
bool health_listener(enum health_listener_kind kind, int i, char *out, size_t outsz)
{
	bool found = false;
	pthread_mutex_lock(&HL.lock);
	for (size_t j = 0; j < HL.n && !found; j++)
		if (HL.l[j].kind == kind && i-- == 0) {
			str_lcpy(out, HL.l[j].address, outsz);
			found = true;
		}
	pthread_mutex_unlock(&HL.lock);
	return found;
}

void health_api_connections_add(int d)
{
	atomic_fetch_add(&HL.api_connections, d);
}

int64_t health_api_connections(void)
{
	return atomic_load(&HL.api_connections);
}

/* health_subsys_name - "smtp", "spool", ... */
const char *health_subsys_name(enum health_subsys s)
{
	return (unsigned)s < HEALTH__COUNT ? health_names[s] : "?";
}

/* health_thread_subsys - errors logged by this thread belong to s. */
void health_thread_subsys(enum health_subsys s)
{
	health_thread = s;
}

/* health_note_error - keep line as s's last error. */
void health_note_error(enum health_subsys s, const char *line)
{
	if ((unsigned)s >= HEALTH__COUNT)
		return;
	pthread_mutex_lock(&H.lock);
	str_lcpy(H.error[s], line, sizeof H.error[s]);
	H.error_time[s] = time_now_ms();
	pthread_mutex_unlock(&H.lock);
}

/* health_note_log_error - the subsystem of an error line, by its event name. */
void health_note_log_error(const char *line)
{
	enum health_subsys s = health_thread;
	const char *ev = strstr(line, "event=");
	if (ev != NULL) {
		ev += 6;
		for (size_t i = 0; i < ARRAY_LEN(health_prefixes); i++)
			if (strncmp(ev, health_prefixes[i].prefix,
			            strlen(health_prefixes[i].prefix)) == 0) {
				s = health_prefixes[i].s;
				break;
			}
	}
	health_note_error(s, line);
}

/* health_last_error - s's last error line and its time (0 and "" if none). */
int64_t health_last_error(enum health_subsys s, char *out, size_t outsz)
{
	if ((unsigned)s >= HEALTH__COUNT) {
		str_lcpy(out, "", outsz);
		return 0;
	}
	pthread_mutex_lock(&H.lock);
	str_lcpy(out, H.error[s], outsz);
	int64_t t = H.error_time[s];
	pthread_mutex_unlock(&H.lock);
	return t;
}

/* health_beat - s is alive. */
void health_beat(enum health_subsys s)
{
	if ((unsigned)s < HEALTH__COUNT)
		atomic_store(&H.beat[s], time_mono_ms());
}

/* health_beat_age_ms - since s last beat; -1 if never. */
int64_t health_beat_age_ms(enum health_subsys s)
{
	if ((unsigned)s >= HEALTH__COUNT)
		return -1;
	int64_t b = atomic_load(&H.beat[s]);
	return b == 0 ? -1 : time_mono_ms() - b;
}

/* health_mark_started - the daemon starts now. */
void health_mark_started(void)
{
	atomic_store(&H.started, time_now_ms());
}

/* health_started - when the daemon started, unix ms (0 before). */
int64_t health_started(void)
{
	return atomic_load(&H.started);
}
