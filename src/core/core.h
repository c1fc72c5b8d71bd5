/*
 * core.h - the ground every relevo module stands on: result codes, logging,
 * allocation that aborts on failure, message ids, time and small string helpers.
 *
 * Invariants: nothing here does I/O except the logger (one write(2) per line to
 * stderr, so lines from different threads never interleave). All functions are
 * thread-safe unless their comment says otherwise.
 */
#ifndef RELEVO_CORE_H
#define RELEVO_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* One result enum for the whole project (STYLE.md "Errors"). */
enum rc {
	RC_OK = 0,
	RC_AGAIN,	/* incomplete input: call again with more */
	RC_TEMPFAIL,	/* try again later (4xx) */
	RC_PERMFAIL,	/* never going to work (5xx) */
	RC_NOMEM,
	RC_IO,		/* read/write/fsync/rename failed */
	RC_PROTO,	/* peer violated the protocol */
	RC_NOTFOUND,
	RC_EXISTS,
	RC_INVALID,	/* bad argument or malformed data */
	RC_LIMIT,	/* a configured or RFC limit was exceeded */
	RC__COUNT
};
const char *rc_name(enum rc rc);

/* Logging: one line per event, "key=value" pairs, starting with the subject id. */
enum log_level { LOG_LV_DEBUG, LOG_LV_INFO, LOG_LV_WARN, LOG_LV_ERR };
void log_set_level(enum log_level lv);
void log_set_prog(const char *prog);
void log_msg(enum log_level lv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_LV_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LV_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LV_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LV_ERR, __VA_ARGS__)
/* fatal - log and abort: for broken internal invariants only. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that aborts on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Time. */
int64_t time_now_ms(void);	/* CLOCK_REALTIME, milliseconds */
int64_t time_mono_ms(void);	/* CLOCK_MONOTONIC, milliseconds */
/* time_rfc5322 - format t (unix seconds) as an RFC 5322 date-time in local time. */
void time_rfc5322(int64_t t, char *out, size_t outsz);

/*
 * Message ids: 64-bit, time-ordered (unix seconds in the top 36 bits, a counter
 * below). Printed as 16 upper-case hex digits. id_bump() makes sure ids never go
 * backwards across restarts: the spool calls it with the largest id it recovered.
 */
#define ID_STR_LEN 16
uint64_t id_next(void);
void id_bump(uint64_t seen);
void id_format(uint64_t id, char out[ID_STR_LEN + 1]);
bool id_parse(const char *s, uint64_t *out);

/* Strings. */
/* str_lcpy - strlcpy: copies at most n-1 bytes, always terminates, returns strlen(src). */
size_t str_lcpy(char *dst, const char *src, size_t n);
bool str_ieq(const char *a, const char *b);
bool str_has_prefix_ci(const char *s, const char *prefix);
void str_lower(char *s);
/* str_to_u64 - parse a whole decimal string; false on junk, overflow or empty. */
bool str_to_u64(const char *s, uint64_t *out);

/* Host and domain names (core_text.c). */
#define STR_DOMAIN_MAX 253	/* RFC 1035 2.3.4, without the trailing dot */
/* str_is_hostname - RFC 1123 host name of 1..max octets: dot-separated labels of
 * 1-63 letters, digits and hyphens, no hyphen first or last in a label, no
 * empty label (so no leading or trailing dot). A-labels ("xn--") pass, U-labels
 * do not. One label is enough. */
bool str_is_hostname(const char *s, size_t max);
/* str_has_numeric_tld - is the last label all digits (a dotted IPv4 address,
 * not a name: RFC 3696 2)? */
bool str_has_numeric_tld(const char *s);
/* str_is_domain - RFC 5321 4.1.2 Domain: a host name of at most STR_DOMAIN_MAX
 * octets, at least two labels, the last not all digits. NULL is not one. */
bool str_is_domain(const char *s);

/* Base64, RFC 4648 (core_text.c). */
/* b64_value - the 6-bit value of base64 character c, -1 if c is not one. */
int b64_value(unsigned char c);
/* b64_decode - strict base64 (padding required, no whitespace, "=" only at the
 * end, unused bits zero). "" decodes to nothing. RC_INVALID on bad input,
 * RC_LIMIT if the result would exceed outsz (nothing is written then). */
enum rc b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz, size_t *outlen);
/* b64_encode - out must hold 4*ceil(len/3)+1 bytes; NUL-terminated; returns
 * the length written (without the NUL). */
size_t b64_encode(const uint8_t *in, size_t len, char *out);

/* UTF-8, RFC 3629 (core_text.c). */
/* utf8_char - decode one well-formed character at s[0..len) (no overlong form,
 * no surrogate, at most U+10FFFF) into *cp; its length, 0 if there is none. */
size_t utf8_char(const char *s, size_t len, uint32_t *cp);
/* utf8_cut - len, backed up to the start of the sequence s[len] continues, so
 * that s[0..len) does not end inside a character. s[len] must be readable. */
size_t utf8_cut(const char *s, size_t len);

/* Files. */
/* file_fsync_dir - fsync the directory containing path (after create/rename/unlink). */
enum rc file_fsync_dir(const char *dir);
/* file_write_all - write(2) until done or error (EINTR retried). */
enum rc file_write_all(int fd, const void *buf, size_t len);
/* file_read_all - read a whole (small) file into a NUL-terminated heap buffer. */
enum rc file_read_all(const char *path, size_t max, char **out, size_t *outlen);
/* file_mkdir_p - create a directory and its parents with the given mode. */
enum rc file_mkdir_p(const char *path, mode_t mode);

/*
 * Fault injection seam (STYLE.md "Tests"): RELEVO_FAULT="fsync:3,write:10" makes
 * the Nth call of that operation fail. fault_hit() returns true when the caller
 * must pretend the operation failed (it then sets errno to EIO or ENOSPC).
 * "evlog_slow:1+" is a delay, not a failure: the event sink waits a second
 * before storing each batch (a store lagging behind the spool).
 * "slow_fsync:N" is a delay, not a failure: the spool writer's Nth group commit
 * takes 3 s longer (a slow disk).
 */
bool fault_hit(const char *op);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))


/*
 * Work queue: a small pool of threads for blocking work (password hashing, store
 * queries) that must never run on an event loop. work(arg) runs on a pool thread;
 * done(arg) then runs on the event_base given at submit time, which must have
 * been created after core_threads_init(). arg belongs to the job: done frees it.
 * A completion finds its session by id (arg carries it), never by pointer.
 */
struct event_base;
struct workq;
typedef void (*workq_fn)(void *arg);
/* core_threads_init - enable libevent's pthread locking; call once at start. */
void core_threads_init(void);
struct workq *workq_new(unsigned nthreads, size_t max_pending);
/* workq_submit - RC_LIMIT when max_pending jobs are already waiting. base NULL:
 * no completion (done is ignored; work owns arg and delivers its result). */
enum rc workq_submit(struct workq *wq, struct event_base *base, workq_fn work,
		     workq_fn done, void *arg);
/* workq_free - finish queued work (their done callbacks still run when their
 * loops run), stop the threads. */
void workq_free(struct workq *wq);

/*
 * The event stream: every step of every recipient (accepted, delivered, bounced,
 * ...) is emitted here by the module that saw it (smtp, http, mta) and consumed
 * by one sink (the daemon wires it to the store, the suppression list and the
 * webhooks). evlog_emit copies the event into a bounded in-memory queue and
 * returns at once: it never blocks an event loop on I/O. A thread hands the
 * queue to the sink in batches. When the sink falls behind and the queue is
 * full, new events are dropped and counted (evlog_dropped, logged): memory stays
 * bounded (at most twice the queue: one swapped-out batch being written, one
 * filling). evlog_stop drains everything queued, so a clean shutdown loses
 * nothing.
 */
enum evlog_type {
	EVLOG_ACCEPTED = 0, EVLOG_DELIVERED, EVLOG_DEFERRED, EVLOG_BOUNCED, EVLOG_EXPIRED,
	EVLOG_SUPPRESSED, EVLOG_REJECTED,
	EVLOG_DROPPED,		/* removed from the queue by an operator (queue delete) */
	/* reserved for tracking and feedback loops */
	EVLOG_OPENED, EVLOG_CLICKED, EVLOG_COMPLAINED, EVLOG_UNSUBSCRIBED,
	EVLOG__COUNT
};
/* evlog_type_name - "accepted", "delivered", ...; evlog_type_parse the reverse. */
const char *evlog_type_name(enum evlog_type t);
bool evlog_type_parse(const char *s, enum evlog_type *out);

/* One event. Strings may be NULL; in a queued or stored event they are owned. */
struct evlog_event {
	int64_t seq;		/* the store's row id; 0 before it is stored */
	int64_t time;		/* unix ms */
	enum evlog_type type;
	uint64_t msgid;		/* the queue id, or 0 (a rejection before one) */
	char *recipient;	/* lower-cased is not implied: as submitted */
	char *sender;		/* envelope sender, "" for <> */
	char *user;		/* account, or NULL (trusted relay) */
	const char *stream;	/* "transactional" or "bulk" (static) */
	const char *source;	/* "smtp" or "api" (static) */
	char *status;		/* enhanced status code "5.1.1", or NULL */
	const char *bounce_class; /* "hard" or "soft" for bounced/deferred, else NULL */
	char *remote;		/* "mx.example.org[192.0.2.1]", or NULL */
	char *reply;		/* remote reply or reason, or NULL */
	uint32_t attempts;
};
struct evlog_event *evlog_event_dup(const struct evlog_event *ev);
void evlog_event_free(struct evlog_event *ev);
/* evlog_stream_name - "bulk" if bulk, else "transactional" (static strings). */
const char *evlog_stream_name(bool bulk);

/* The sink gets batches of up to EVLOG_BATCH_MAX events, on the stream's thread,
 * in emission order; the events are freed after it returns. */
#define EVLOG_BATCH_MAX 512
typedef void (*evlog_sink_fn)(void *ctx, struct evlog_event *const *evs, size_t n);

/* evlog_start - start the process-wide stream (once) with a queue of at most
 * max_queued events (0: 65536). Before it, evlog_emit does nothing. */
enum rc evlog_start(size_t max_queued, evlog_sink_fn sink, void *ctx);
/* evlog_stop - hand everything queued to the sink, then stop the thread. */
void evlog_stop(void);
/* evlog_emit - queue a copy of ev (time 0 means now). Thread-safe, non-blocking. */
void evlog_emit(const struct evlog_event *ev);
/* evlog_dropped - events dropped because the queue was full, since start. */
uint64_t evlog_dropped(void);
/* evlog_flush - block until everything emitted so far has reached the sink. */
void evlog_flush(void);
/* evlog_set_max - a new queue bound (events.queue_max after a reload); events
 * already queued beyond it stay. */
void evlog_set_max(size_t max_queued);

/* ---- sockets and the service manager (core_net.c) ---- */

struct sockaddr;
/* net_listen_socket - a non-blocking, close-on-exec TCP socket bound to sa and
 * listening (backlog 1024); IPv6 sockets are IPv6-only, so that 0.0.0.0:P and
 * [::]:P can both be configured. -1 with errno set on failure. */
int net_listen_socket(const struct sockaddr *sa, socklen_t salen);

/* sdnotify_send - tell the service manager about our state ("READY=1",
 * "RELOADING=1", "STOPPING=1"; sd_notify(3)): one datagram to $NOTIFY_SOCKET, a
 * path or an abstract name ("@..."). Nothing when the variable is unset; a
 * failure is logged, never fatal. */
void sdnotify_send(const char *state);

/*
 * Metrics (core_metrics.c): a fixed, lock-free registry of counters, gauges and
 * histograms that every module bumps with one call, rendered in the Prometheus
 * text exposition format. Every series is known in advance (an enum), labels
 * are bounded: a listener's configured address, a reply code, a stage, a
 * result; never a domain or an account. Updates are relaxed atomic adds, safe
 * from any thread and never blocking.
 */
enum metrics_counter {
	METRICS_SMTP_AUTH_FAILURES = 0,
	METRICS_RECEIVED_SMTP,		/* messages made durable, by source */
	METRICS_RECEIVED_API,
	METRICS_ATTEMPT_DELIVERED,	/* one per recipient outcome */
	METRICS_ATTEMPT_DEFERRED,
	METRICS_ATTEMPT_BOUNCED,
	METRICS_ATTEMPT_EXPIRED,
	METRICS_OUTBOUND_CONNECTIONS,	/* outbound TCP connections opened */
	METRICS_DKIM_SIGNATURES,	/* DKIM-Signature fields made */
	METRICS_WEBHOOK_OK,		/* webhook POSTs answered 2xx */
	METRICS_WEBHOOK_HTTP_ERROR,	/* answered, not 2xx */
	METRICS_WEBHOOK_TRANSPORT_ERROR, /* no answer (connect, TLS, timeout) */
	METRICS_SPOOL_ENV_COPIES,	/* envelopes deep-copied out of the spool (spool_get) */
	METRICS_C__COUNT
};
enum metrics_gauge {
	METRICS_G_OUTBOUND_OPEN = 0,	/* outbound connections open now */
	METRICS_G_QUEUE_MESSAGES,	/* the queue, set just before rendering */
	METRICS_G_QUEUE_ACTIVE_TX,	/* recipients never tried yet, per stream */
	METRICS_G_QUEUE_ACTIVE_BULK,
	METRICS_G_QUEUE_DEFERRED_TX,	/* tried at least once, waiting for a retry */
	METRICS_G_QUEUE_DEFERRED_BULK,
	METRICS_G_QUEUE_HELD_TX,	/* of a held message */
	METRICS_G_QUEUE_HELD_BULK,
	METRICS_G_QUEUE_OLDEST_AGE,	/* seconds */
	METRICS_G__COUNT
};
enum metrics_hist {
	METRICS_H_SPOOL_COMMIT = 0,	/* microseconds: one batch's write + fdatasync */
	METRICS_H_SPOOL_BATCH,		/* records per batch */
	METRICS_H_DELIVERY_DNS,		/* microseconds, per stage of a delivery */
	METRICS_H_DELIVERY_CONNECT,
	METRICS_H_DELIVERY_TLS,
	METRICS_H_DELIVERY_TXN,
	METRICS_H__COUNT
};
#define METRICS_LISTENERS_MAX 64
#define METRICS_RENDER_MAX (256 * 1024)	/* bytes of one exposition, at most */

void metrics_inc(enum metrics_counter c);
void metrics_gauge_set(enum metrics_gauge g, int64_t v);
void metrics_gauge_add(enum metrics_gauge g, int64_t delta);
/* metrics_observe - v in the histogram's unit (microseconds or records). */
void metrics_observe(enum metrics_hist h, uint64_t v);
/* metrics_now_us - a monotonic clock in microseconds, for durations. */
int64_t metrics_now_us(void);
/* metrics_listener - the index of the listener named (its configured address),
 * registered on first use; -1 once METRICS_LISTENERS_MAX are known. */
int metrics_listener(const char *name);
/* metrics_connection - a connection accepted on listener name. */
void metrics_connection(const char *name);
/* metrics_session - a session opened (+1) or ended (-1) on listener name. */
void metrics_session(const char *name, int delta);
/* metrics_sessions_open - open sessions of listener i (-1: of all of them). */
int64_t metrics_sessions_open(int i);
/* metrics_listener_name - the name of listener i, or NULL. */
const char *metrics_listener_name(int i);
/* metrics_rejected - a message or recipient refused with code (SMTP 4xx/5xx, or an
 * HTTP status for the API). */
void metrics_rejected(bool api, int code);
/* metrics_counter_get - a counter's value (tests, status). */
uint64_t metrics_counter_get(enum metrics_counter c);
/* metrics_delivered_recent - recipients delivered in the last 60 seconds. */
uint64_t metrics_delivered_recent(void);
/* metrics_render - the whole exposition as a heap string (caller frees). */
char *metrics_render(void);

/*
 * Health (core_health.c): when each subsystem last showed it is alive
 * (heartbeats) and the last error each logged. log_err() records its line as the
 * last error of a subsystem: the one its event name starts with (store_, spool_,
 * webhook_, http_, ...), else the one the logging thread belongs to
 * (health_thread_subsys). Thread-safe.
 */
enum health_subsys {
	HEALTH_SMTP = 0, HEALTH_SPOOL, HEALTH_MTA, HEALTH_STORE, HEALTH_HTTP, HEALTH_WEBHOOKS,
	HEALTH__COUNT
};
const char *health_subsys_name(enum health_subsys s);
/* health_thread_subsys - the calling thread's errors belong to s. */
void health_thread_subsys(enum health_subsys s);
/* health_note_error - remember line (a log line's text) as s's last error. */
void health_note_error(enum health_subsys s, const char *line);
/* health_note_log_error - the logger's hook: classify line, then note it. */
void health_note_log_error(const char *line);
/* health_last_error - copy s's last error to out ("" if none); its unix ms time. */
int64_t health_last_error(enum health_subsys s, char *out, size_t outsz);
/* health_beat - s is alive now. */
void health_beat(enum health_subsys s);
/* health_beat_age_ms - milliseconds since s last beat, or -1 if it never did. */
int64_t health_beat_age_ms(enum health_subsys s);
/* health_mark_started / health_started - when the daemon started (unix ms). */
void health_mark_started(void);
int64_t health_started(void);

/*
 * Delivery outcomes (core_outcome.c): what became of one recipient in one
 * attempt. The delivery engine fills one in from the SMTP client's reply (or
 * its own reason) and hands the struct on to the spool update, the bounce, the
 * log line and the event; it becomes text only at those edges. The spool keeps
 * it as the recipient's last_reply, "status=X remote=H reply=\"...\""
 * (outcome_format), which the bounce, the API and `queue show` read back with
 * outcome_parse: that text is a storage format, parsed in this one place.
 */
#define OUTCOME_STATUS_MAX 16		/* "5.1.1" (RFC 3463: at most 3.3.3 digits) */
#define OUTCOME_HOST_MAX 256		/* a DNS name, or an address literal */
#define OUTCOME_ADDR_MAX 48		/* an IPv6 address as text */
#define OUTCOME_REPLY_MAX 2112		/* a whole reply (mta.h MTA_REPLY_TEXT_MAX + code) */
#define OUTCOME_TEXT_MAX 1024		/* the stored form, reply cut to fit (the spool
					 * keeps a last_reply of at most this) */

enum outcome_class {
	OUTCOME_DELIVERED = 0,		/* accepted by the next hop */
	OUTCOME_DEFERRED,		/* temporary failure: tried again later */
	OUTCOME_BOUNCED,		/* permanent failure: bounce due */
	OUTCOME_EXPIRED,		/* temporary failures until the queue lifetime ran out */
	OUTCOME__COUNT
};
/* outcome_class_name - "delivered", "deferred", "bounced", "expired" (the event
 * and log names). */
const char *outcome_class_name(enum outcome_class c);

/* What decided it. */
enum outcome_cause {
	OUTCOME_BY_REPLY = 0,		/* the server's reply to the transaction (or one made
					 * up for it: connection lost, message refused
					 * before sending) */
	OUTCOME_BY_ROUTE,		/* where to deliver: DNS, null MX, internal address */
	OUTCOME_BY_CONNECT,		/* no server of the route took a connection */
	OUTCOME_BY_EXPIRY,		/* the queue lifetime ran out before an attempt */
	OUTCOME_BY_LOCAL,		/* our side: the spool could not be read */
	OUTCOME_BY__COUNT
};
/* outcome_cause_name - "reply", "route", "connect", "expiry", "local". */
const char *outcome_cause_name(enum outcome_cause c);

struct outcome {
	enum outcome_class cls;
	enum outcome_cause cause;
	char status[OUTCOME_STATUS_MAX];	/* enhanced status, "2.0.0", "5.1.1" */
	int code;			/* the SMTP reply code; 0 when no reply decided it */
	char host[OUTCOME_HOST_MAX];	/* the server's name (its address if it has none);
					 * "" when no server was reached */
	char addr[OUTCOME_ADDR_MAX];	/* its IP address, "" if none */
	char reply[OUTCOME_REPLY_MAX];	/* "550 5.1.1 text" (a multi-line reply's lines
					 * joined with "; ", control characters already
					 * '?': mta_reply.c) or our reason */
	unsigned attempts;		/* the recipient's attempts, this one included */
};

/* outcome_set_reply - o's code and reply text ("CODE ENH TEXT", or why when
 * code is 0) from the parts given. */
void outcome_set_reply(struct outcome *o, int code, const char *enh, const char *text,
		       const char *why);
/* outcome_set_remote - host and addr from "name[ip]" (or a bare name); NULL or
 * "" clears them. */
void outcome_set_remote(struct outcome *o, const char *remote);
/* outcome_remote - "name[ip]", the name alone, or "" (logs, events, API). */
void outcome_remote(const struct outcome *o, char *out, size_t outsz);
/* outcome_format - the spool's last_reply and the log's tail: "status=X
 * remote=H reply=\"T\"" (H "-" when no server was reached), T being the reply
 * with '"' and control characters made '\'' and cut so that the whole fits
 * outsz (at most OUTCOME_TEXT_MAX is stored). */
void outcome_format(const struct outcome *o, char *out, size_t outsz);
/* outcome_parse - a stored last_reply back into o (status, code, host, addr,
 * reply; cls and cause are not stored: left as they were). false for text of
 * any other form (then o holds the text as its reply and nothing else). */
bool outcome_parse(const char *s, struct outcome *o);

/* The HTTP listeners being served, for `relevo status` (the SMTP ones are the
 * metrics registry's): the API's and the metrics endpoint's. */
enum health_listener_kind { HEALTH_LISTENER_API = 0, HEALTH_LISTENER_METRICS };
#define HEALTH_LISTENERS_MAX 32
/* health_listening - address (of kind) is served (on) or no longer (!on). */
void health_listening(enum health_listener_kind kind, const char *address, bool on);
/* health_listener - the i-th served listener of kind, copied to out; false past
 * the last. */
bool health_listener(enum health_listener_kind kind, int i, char *out, size_t outsz);
/* health_api_connections - the API's open client connections (add: +1/-1). */
void health_api_connections_add(int d);
int64_t health_api_connections(void);

#endif
