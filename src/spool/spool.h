/*
 * spool.h - the durable queue: commit, recover, per-recipient state.
 *
 * Layout (data_dir/spool/): append-only segment files "seg-%016llx.log" holding
 * checksummed records (a message with its envelope and body; a recipient state
 * change; a hold/release; a message finished or deleted). One writer thread
 * appends records for many callers and makes them durable with one fdatasync per
 * batch (group commit); each caller's callback runs only after its records are on
 * stable storage. That is the only path to "250 queued".
 *
 * Recovery (spool_open) replays the segments in order and rebuilds the in-memory
 * index of live messages. A torn record at the tail of the last segment is an
 * unacknowledged commit and is discarded (truncated in read-write mode). A record
 * that fails its checksum elsewhere is copied to spool/quarantine/, reported in the
 * log and skipped: never silently dropped, never fatal.
 *
 * Threads: every function may be called from any thread; callbacks run on the
 * event_base the caller named (via event_active), never on the writer thread.
 * Ownership: the spool owns the index; spool_get() returns a deep copy the caller
 * frees with spool_env_free().
 */
#ifndef RELEVO_SPOOL_H
#define RELEVO_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/core.h"

struct spool;

enum spool_rcpt_state {
	SPOOL_RCPT_QUEUED = 0,	/* waiting for an attempt (first or retry) */
	SPOOL_RCPT_DELIVERED,	/* final: accepted by the next hop */
	SPOOL_RCPT_FAILED,	/* final: permanent failure or expired; bounce due */
	SPOOL_RCPT_BOUNCED,	/* final: failure reported to the sender (DSN queued) */
	SPOOL_RCPT__COUNT
};
const char *spool_rcpt_state_name(enum spool_rcpt_state s);

/* DSN NOTIFY (RFC 3461) bits; 0 means "not given" (default behaviour). */
#define SPOOL_NOTIFY_NEVER 0x01
#define SPOOL_NOTIFY_SUCCESS 0x02
#define SPOOL_NOTIFY_FAILURE 0x04
#define SPOOL_NOTIFY_DELAY 0x08

/* Envelope flags. */
#define SPOOL_F_8BITMIME 0x01
#define SPOOL_F_SMTPUTF8 0x02
#define SPOOL_F_RET_FULL 0x04	/* DSN RET=FULL */
#define SPOOL_F_RET_HDRS 0x08	/* DSN RET=HDRS */
#define SPOOL_F_HELD 0x10	/* operator hold: not scheduled until released */
#define SPOOL_F_SANDBOX 0x20	/* the submitting user is in sandbox mode: never sent */
#define SPOOL_F_BULK 0x40	/* the bulk stream (campaigns), else transactional */
#define SPOOL_F_API 0x80	/* submitted through the HTTP API, else SMTP */

struct spool_rcpt {
	char *addr;			/* forward-path without <>, as received */
	char *orcpt;			/* DSN ORCPT value or NULL */
	uint8_t notify;			/* SPOOL_NOTIFY_* */
	enum spool_rcpt_state state;
	uint32_t attempts;
	int64_t next_attempt;		/* unix ms; 0 = as soon as possible */
	char *last_reply;		/* last remote reply or failure text, or NULL */
};

struct spool_env {
	uint64_t id;
	int64_t created;		/* unix ms */
	char *sender;			/* reverse-path without <>; "" for the null sender */
	char *user;			/* authenticated user, or NULL (trusted relay) */
	char *client;			/* client address as text, e.g. "127.0.0.1" */
	char *helo;			/* EHLO/HELO argument */
	char *envid;			/* DSN ENVID or NULL */
	uint32_t flags;			/* SPOOL_F_* */
	uint64_t body_size;		/* bytes of the stored message (headers + body) */
	size_t nrcpt;
	struct spool_rcpt *rcpt;	/* nrcpt entries */
};

void spool_env_free(struct spool_env *env);
struct spool_env *spool_env_dup(const struct spool_env *env);

enum spool_mode {
	SPOOL_RDWR,	/* the daemon, or an offline CLI: takes the spool lock */
	SPOOL_RDONLY	/* inspection while a daemon may be running: no lock, no writes */
};

/*
 * spool_open - open (creating if needed) data_dir/spool and recover it.
 * In SPOOL_RDWR mode returns RC_EXISTS if another process holds the spool lock
 * (a running daemon); callers then use the daemon's control socket instead.
 * Starts the writer thread in SPOOL_RDWR mode. SPOOL_RDONLY creates and writes
 * nothing: a spool directory that does not exist yet is an empty queue.
 */
enum rc spool_open(const char *data_dir, enum spool_mode mode, struct spool **out);

/* spool_close - drain pending commits (their callbacks run), stop the writer, free. */
void spool_close(struct spool *sp);

/*
 * Completion callback: rc is RC_OK once the records are on stable storage, or
 * RC_IO (disk full, fsync failed): then nothing of that commit will ever be
 * recovered as live. cookie is the caller's (a session id, never a pointer that
 * may be freed meanwhile); ctx is a long-lived object of the caller's.
 */
typedef void (*spool_done_cb)(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid);

/*
 * spool_commit - queue a new message durably. Takes ownership of env (its id is
 * assigned here with id_next() if 0) and of body (the full message, CRLF line
 * endings, not dot-stuffed). cb runs on base's thread when done, with RC_OK once
 * durable, RC_IO if the write failed, or without writing anything: RC_INVALID
 * (no recipients, a missing or oversized field, read-only spool), RC_EXISTS (the
 * id is queued already), RC_LIMIT (too large to store).
 */
void spool_commit(struct spool *sp, struct spool_env *env, struct evbuffer *body,
		  struct event_base *base, spool_done_cb cb, void *ctx, uint64_t cookie);

/*
 * spool_rcpt_update - record recipient idx's new state durably (cb may be NULL).
 * When every recipient is final (delivered/bounced) the message is finished and
 * its space reclaimed. last_reply is stored cut to 1024 bytes. Returns RC_NOTFOUND
 * (unknown id or idx) or RC_INVALID synchronously, else RC_OK: queued, and cb
 * tells when it is durable.
 */
enum rc spool_rcpt_update(struct spool *sp, uint64_t id, size_t idx,
			  enum spool_rcpt_state state, uint32_t attempts,
			  int64_t next_attempt, const char *last_reply,
			  struct event_base *base, spool_done_cb cb, void *ctx, uint64_t cookie);

/*
 * spool_set_observer - fn(ctx, id) is called on the writer thread after each new
 * message committed with spool_commit is durable. fn must be quick and
 * thread-safe (the delivery engine queues the id). Set it before traffic starts.
 */
void spool_set_observer(struct spool *sp, void (*fn)(void *ctx, uint64_t id), void *ctx);

/*
 * spool_set_accept_hook - fn(ctx, env) is called on the writer thread for each
 * new message committed with spool_commit, once it is durable and before any
 * other thread can see it; env is valid during the call only. Used to record
 * "accepted" events whatever the submitter became meanwhile. Quick, no blocking.
 */
void spool_set_accept_hook(struct spool *sp, void (*fn)(void *ctx, const struct spool_env *env),
			   void *ctx);

/* spool_delete - remove a message (operator action). RC_NOTFOUND if unknown. Durable
 * before return. */
enum rc spool_delete(struct spool *sp, uint64_t id);

/* spool_hold - set or clear SPOOL_F_HELD. Durable before return. */
enum rc spool_hold(struct spool *sp, uint64_t id, bool held);

/* spool_delete_async, spool_hold_async - the same without waiting, for an event
 * loop: RC_NOTFOUND or RC_INVALID at once (cb never runs), else RC_OK and cb
 * runs on base with the outcome once the record is durable (a hold that changes
 * nothing writes nothing: cb still runs, on base, with RC_OK). */
enum rc spool_delete_async(struct spool *sp, uint64_t id, struct event_base *base,
			   spool_done_cb cb, void *ctx, uint64_t cookie);
enum rc spool_hold_async(struct spool *sp, uint64_t id, bool held, struct event_base *base,
			 spool_done_cb cb, void *ctx, uint64_t cookie);

/* spool_get - deep copy of a live message's envelope, or RC_NOTFOUND. Costs
 * O(recipients): never once per recipient of the same message (each copy is
 * counted in relevo_spool_envelope_copies_total). */
enum rc spool_get(struct spool *sp, uint64_t id, struct spool_env **out);

/* What a live message's recipients are, counted as records are applied. */
struct spool_tally {
	size_t nrcpt;
	size_t queued;			/* SPOOL_RCPT_QUEUED */
	size_t failed;			/* SPOOL_RCPT_FAILED: bounce due */
	bool held;
};
/* spool_tally - a live message's counts in O(1), without copying it; RC_NOTFOUND
 * when it is not live (finished or deleted). */
enum rc spool_tally(struct spool *sp, uint64_t id, struct spool_tally *out);

/*
 * spool_get_final - deep copy of the last envelope of a message that finished
 * (its last recipient became delivered or bounced) at most 10 s ago and among
 * the last 64 to finish; RC_NOTFOUND otherwise (also for a deleted message).
 * For readers that must not show a finished message older than the spool's
 * final record while its events are still on their way to the store (GET
 * /v1/messages/{id}). Kept in memory only, from spool_open on.
 */
enum rc spool_get_final(struct spool *sp, uint64_t id, struct spool_env **out);

/* spool_read_body - the stored message bytes, appended to out. */
enum rc spool_read_body(struct spool *sp, uint64_t id, struct evbuffer *out);

/*
 * spool_foreach - call fn for every live message in id order, with a read-only
 * envelope valid only during the call. Stops early if fn returns false.
 */
void spool_foreach(struct spool *sp, bool (*fn)(void *arg, const struct spool_env *env),
		   void *arg);

/* spool_count - number of live messages. */
size_t spool_count(struct spool *sp);

/* spool_quarantined - number of records quarantined during recovery. */
size_t spool_quarantined(struct spool *sp);

/* spool_set_compact_age - compact (re-append the live messages of) the oldest
 * segment only once it has been closed for ms (default 30000): younger ones hold
 * mail in flight that delivery is about to finish. 0 for tests. */
void spool_set_compact_age(struct spool *sp, int64_t ms);

/* spool_set_segment_max - start a new segment once the current one exceeds bytes
 * (default 64 MiB; 0 restores it). For tests and tuning. */
void spool_set_segment_max(struct spool *sp, uint64_t bytes);

/*
 * spool_stats (spool_stats.c) - a summary of the queue for status and metrics:
 * recipients still to deliver, by state and stream, the oldest message, and
 * (with top) the destinations with the most recipients waiting. Walks the index
 * under its lock: O(recipients), plus a sort when top is asked for.
 */
#define SPOOL_STATS_TOP 10
#define SPOOL_STATS_DOMAIN_MAX 256
enum spool_stats_state {
	SPOOL_STATS_ACTIVE = 0,	/* never tried */
	SPOOL_STATS_DEFERRED,	/* tried, waiting for a retry */
	SPOOL_STATS_HELD,	/* its message is held */
	SPOOL_STATS__COUNT
};
const char *spool_stats_state_name(enum spool_stats_state s);
struct spool_stats {
	size_t messages;
	uint64_t rcpts[SPOOL_STATS__COUNT][2];	/* [state][bulk] */
	int64_t oldest;				/* created (unix ms) of the oldest, 0 if empty */
	size_t ntop;
	struct {
		char domain[SPOOL_STATS_DOMAIN_MAX];
		uint64_t rcpts;
	} top[SPOOL_STATS_TOP];			/* most recipients first */
};
void spool_stats(struct spool *sp, bool top, struct spool_stats *out);
/* spool_probe_write - create, write and remove a file in the spool directory:
 * RC_OK, or RC_IO with *err set to the errno. */
enum rc spool_probe_write(struct spool *sp, int *err);

#endif
