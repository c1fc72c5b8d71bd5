/*
 * sched.h - the pure policy of *when*: retry backoff, queue lifetime, and the
 * ready queues per (stream, destination) with fairness between them and a
 * concurrency limit per destination.
 *
 * No I/O, no clock: every function takes "now" (unix ms) from the caller, so the
 * whole module is tested with made-up times. Not thread-safe: the delivery loop
 * owns its scheduler.
 * Ownership: the scheduler copies the strings it is given.
 */
#ifndef RELEVO_SCHED_H
#define RELEVO_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Mail streams: bulk mail must never delay transactional mail. */
enum sched_stream { SCHED_STREAM_TRANSACTIONAL = 0, SCHED_STREAM_BULK, SCHED_STREAM__COUNT };
const char *sched_stream_name(enum sched_stream s);

struct sched_conf {
	const uint32_t *retry_schedule;	/* seconds between attempts; the last repeats */
	size_t nretry;			/* 0: built-in default 5m,10m,20m,40m,1h,2h,4h */
	uint64_t max_queue_lifetime;	/* seconds; a recipient older than this expires */
	unsigned max_conn_per_dest;	/* concurrent connections per destination (>= 1) */
};

/* sched_retry_delay - seconds to wait after the attempts-th failed attempt (1-based). */
uint32_t sched_retry_delay(const struct sched_conf *c, uint32_t attempts);

/* sched_next_attempt - when to try again after a temporary failure at now; returns
 * 0 if the recipient would be past its lifetime by then (expire it now instead). */
int64_t sched_next_attempt(const struct sched_conf *c, int64_t created, uint32_t attempts,
			   int64_t now);

/* sched_is_expired - has a recipient queued at created outlived its lifetime? */
bool sched_is_expired(const struct sched_conf *c, int64_t created, int64_t now);

/* One recipient waiting for an attempt. */
struct sched_item {
	uint64_t msgid;
	uint32_t rcpt;		/* index in the message's envelope */
	int64_t due;		/* unix ms */
};

struct sched;
struct sched *sched_new(const struct sched_conf *c);
void sched_free(struct sched *s);
/* sched_set_conf - replace the settings (copied, as by sched_new). */
void sched_set_conf(struct sched *s, const struct sched_conf *c);

/* sched_add - queue recipient rcpt of msgid for destination dest (a domain, lower
 * case) in stream st, due at due. Adding the same (msgid, rcpt) twice replaces it. */
void sched_add(struct sched *s, enum sched_stream st, const char *dest, uint64_t msgid,
	       uint32_t rcpt, int64_t due);

/* sched_remove_msg - forget every recipient of msgid (deleted, held). */
void sched_remove_msg(struct sched *s, uint64_t msgid);

/* sched_flush - make everything (or only msgid, if non-zero) due now. */
void sched_flush(struct sched *s, uint64_t msgid, int64_t now);

/*
 * sched_take - the next batch to attempt: up to max due items, all for ONE
 * destination that has a free connection slot, recipients of the same message
 * adjacent. Destinations take turns (round robin), and within a turn the
 * transactional stream goes before bulk. The destination's name is copied to
 * dest (dest_size bytes) and one connection slot is taken: give it back with
 * sched_release(). Returns the number of items (0: nothing due now).
 */
size_t sched_take(struct sched *s, int64_t now, struct sched_item *out, size_t max,
		  char *dest, size_t dest_size, enum sched_stream *stream);

/*
 * sched_take_more - up to max due items of dest for an attempt that already
 * holds one of dest's slots and goes on over the same connection: the stream
 * and order as sched_take's, no further slot taken, dest's turn unchanged.
 * Returns the number of items (0: nothing of dest is due now).
 */
size_t sched_take_more(struct sched *s, const char *dest, int64_t now, struct sched_item *out,
		       size_t max, enum sched_stream *stream);

/* sched_release - a connection to dest has ended. */
void sched_release(struct sched *s, const char *dest);

/* sched_next_due - the earliest due time of any queued item whose destination
 * has a free slot, or INT64_MAX if none. */
int64_t sched_next_due(const struct sched *s);

/* sched_count - items queued (not taken). */
size_t sched_count(const struct sched *s);

#endif
