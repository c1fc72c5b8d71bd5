/*
 * spool_index.c - the in-memory index of live messages and segments, and the
 * read side of the public API (get, foreach, count, read_body).
 *
 * The index maps id -> struct spool_msg (envelope with current recipient state,
 * plus where its newest full MSG record and body live). Bodies are never kept in
 * memory. Every segment carries the count and bytes of the live MSG records it
 * holds: a segment can be deleted once it is the oldest and holds none.
 *
 * Invariants: the index only ever reflects durable records (the writer applies a
 * batch after its fdatasync; recovery applies what it reads). Recovery and the
 * writer change it through spool_idx_apply() alone, so that replaying the log
 * and running live give the same state. All access is under sp->lock.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- id map: open addressing, linear probing, backward-shift deletion ---- */

static size_t map_home(uint64_t id, size_t cap)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	return (size_t)h & (cap - 1);
}

static void map_insert_slot(struct spool_msg **slots, size_t cap, struct spool_msg *msg)
{
	size_t i = map_home(msg->env->id, cap);
	while (slots[i] != NULL)
		i = (i + 1) & (cap - 1);
	slots[i] = msg;
}

static void map_grow(struct spool_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct spool_msg **slots = xcalloc(cap, sizeof *slots);
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i] != NULL)
			map_insert_slot(slots, cap, m->slots[i]);
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
}

static size_t map_find(const struct spool_map *m, uint64_t id)
{
	if (m->cap == 0)
		return SIZE_MAX;
	for (size_t i = map_home(id, m->cap); m->slots[i] != NULL; i = (i + 1) & (m->cap - 1))
		if (m->slots[i]->env->id == id)
			return i;
	return SIZE_MAX;
}

/* spool_map_get - the live message with this id, or NULL. */
struct spool_msg *spool_map_get(const struct spool_map *m, uint64_t id)
{
	size_t i = map_find(m, id);
	return i == SIZE_MAX ? NULL : m->slots[i];
}

/* spool_map_put - insert msg (its id must not be present); the map owns it after. */
void spool_map_put(struct spool_map *m, struct spool_msg *msg)
{
	if ((m->n + 1) * 4 > m->cap * 3)
		map_grow(m);
	map_insert_slot(m->slots, m->cap, msg);
	m->n++;
}

/* spool_map_del - unlink and return the message with this id (NULL if absent). */
struct spool_msg *spool_map_del(struct spool_map *m, uint64_t id)
{
	size_t i = map_find(m, id), mask = m->cap - 1;
	if (i == SIZE_MAX)
		return NULL;
	struct spool_msg *out = m->slots[i];
	m->slots[i] = NULL;
	m->n--;
	/* Pull back later members of the probe run whose home is not after the hole. */
	for (size_t j = (i + 1) & mask; m->slots[j] != NULL; j = (j + 1) & mask) {
		size_t k = map_home(m->slots[j]->env->id, m->cap);
		if (((i - k) & mask) < ((j - k) & mask)) {
			m->slots[i] = m->slots[j];
			m->slots[j] = NULL;
			i = j;
		}
	}
	return out;
}

static void msg_free(struct spool_msg *msg)
{
	if (msg == NULL)
		return;
	spool_env_free(msg->env);
	free(msg);
}

/* spool_map_fini - free every message and the table. */
void spool_map_fini(struct spool_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		msg_free(m->slots[i]);
	free(m->slots);
	memset(m, 0, sizeof *m);
}

/* ---- segments ---- */

/* spool_seg_find - the segment with this sequence number, or NULL. */
struct spool_seg *spool_seg_find(struct spool *sp, uint64_t seq)
{
	size_t lo = 0, hi = sp->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sp->segs[mid].seq == seq)
			return &sp->segs[mid];
		if (sp->segs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* spool_seg_add - append a segment newer than every known one. */
struct spool_seg *spool_seg_add(struct spool *sp, uint64_t seq, uint64_t size)
{
	if (sp->nsegs > 0 && sp->segs[sp->nsegs - 1].seq >= seq)
		fatal("event=spool_seg_order seq=%llu last=%llu", (unsigned long long)seq,
		      (unsigned long long)sp->segs[sp->nsegs - 1].seq);
	if (sp->nsegs == sp->capsegs) {
		sp->capsegs = sp->capsegs ? sp->capsegs * 2 : 16;
		sp->segs = xrealloc(sp->segs, sp->capsegs * sizeof *sp->segs);
	}
	struct spool_seg *s = &sp->segs[sp->nsegs++];
	memset(s, 0, sizeof *s);
	s->seq = seq;
	s->size = size;
	s->born = time_mono_ms();
	return s;
}

/* spool_seg_drop_oldest - forget the oldest segment (its file is the caller's). */
void spool_seg_drop_oldest(struct spool *sp)
{
	if (sp->nsegs == 0)
		return;
	memmove(sp->segs, sp->segs + 1, (sp->nsegs - 1) * sizeof *sp->segs);
	sp->nsegs--;
}

/* ---- applying records ---- */

/* spool_env_is_finished - true when every recipient is delivered or bounced. */
bool spool_env_is_finished(const struct spool_env *env)
{
	for (size_t i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state != SPOOL_RCPT_DELIVERED &&
		    env->rcpt[i].state != SPOOL_RCPT_BOUNCED)
			return false;
	return true;
}

static void seg_account(struct spool *sp, const struct spool_msg *msg, int dir)
{
	struct spool_seg *s = spool_seg_find(sp, msg->seg);
	if (s == NULL)
		return;
	if (dir > 0) {
		s->live_msgs++;
		s->live_bytes += msg->rec_len;
	} else {
		s->live_msgs--;
		s->live_bytes -= msg->rec_len;
	}
}

static void idx_remove(struct spool *sp, uint64_t id)
{
	struct spool_msg *msg = spool_map_del(&sp->map, id);
	if (msg == NULL)
		return;
	seg_account(sp, msg, -1);
	msg_free(msg);
}

/* msg_count - one recipient state more (dir +1) or less (-1) in msg's tallies. */
static void msg_count(struct spool_msg *msg, enum spool_rcpt_state st, int dir)
{
	if (st == SPOOL_RCPT_QUEUED)
		msg->nqueued += (uint32_t)dir;
	else if (st == SPOOL_RCPT_FAILED)
		msg->nfailed += (uint32_t)dir;
}

/* finish - msg's last recipient is final: out of the index, its last envelope
 * kept a little while for readers that learn of the finish before its events
 * are stored (spool_get_final). */
static void finish(struct spool *sp, uint64_t id)
{
	struct spool_msg *msg = spool_map_del(&sp->map, id);
	seg_account(sp, msg, -1);
	if (sp->keep_final) {
		if (sp->final == NULL)
			sp->final = xcalloc(SPOOL_FINAL_KEEP, sizeof *sp->final);
		struct spool_final *f = &sp->final[sp->final_next];
		spool_env_free(f->env);
		f->env = msg->env;
		f->finished = time_mono_ms();
		msg->env = NULL;
		sp->final_next = (sp->final_next + 1) % SPOOL_FINAL_KEEP;
	}
	msg_free(msg);
}

/* spool_final_fini - free the ring of finished envelopes. */
void spool_final_fini(struct spool *sp)
{
	for (size_t i = 0; sp->final && i < SPOOL_FINAL_KEEP; i++)
		spool_env_free(sp->final[i].env);
	free(sp->final);
	sp->final = NULL;
}

/* A full MSG record: a new message, or (compaction) a newer image of a known one. */
static void apply_msg(struct spool *sp, uint64_t seq, struct spool_rec *r)
{
	struct spool_env *env = r->u.msg.env;
	r->u.msg.env = NULL;
	idx_remove(sp, env->id);
	if (spool_env_is_finished(env)) {
		spool_env_free(env);
		return;
	}
	struct spool_msg *msg = xcalloc(1, sizeof *msg);
	msg->env = env;
	msg->seg = seq;
	msg->rec_len = r->len;
	msg->body_off = r->u.msg.body_off;
	for (size_t i = 0; i < env->nrcpt; i++)
		msg_count(msg, env->rcpt[i].state, +1);
	seg_account(sp, msg, +1);
	spool_map_put(&sp->map, msg);
}

/* apply_rcpt - one recipient's new state; O(1) whatever the recipients (the
 * tallies say when the message is finished). */
static void apply_rcpt(struct spool *sp, struct spool_rec *r)
{
	struct spool_rec_rcpt *u = &r->u.rcpt;
	struct spool_msg *msg = spool_map_get(&sp->map, u->id);
	if (msg == NULL || u->idx >= msg->env->nrcpt)
		return; /* finished, deleted, or its segment reclaimed after compaction */
	struct spool_rcpt *rc = &msg->env->rcpt[u->idx];
	msg_count(msg, rc->state, -1);
	msg_count(msg, u->state, +1);
	rc->state = u->state;
	rc->attempts = u->attempts;
	rc->next_attempt = u->next_attempt;
	free(rc->last_reply);
	rc->last_reply = u->last_reply;
	u->last_reply = NULL;
	if (msg->nqueued == 0 && msg->nfailed == 0)
		finish(sp, u->id);
}

/* spool_idx_apply - apply one durable record read from (or written to) segment seq. */
void spool_idx_apply(struct spool *sp, uint64_t seq, struct spool_rec *r)
{
	struct spool_msg *msg;
	switch (r->type) {
	case SPOOL_REC_MSG:
		apply_msg(sp, seq, r);
		break;
	case SPOOL_REC_RCPT:
		apply_rcpt(sp, r);
		break;
	case SPOOL_REC_HOLD:
		msg = spool_map_get(&sp->map, r->u.hold.id);
		if (msg != NULL && r->u.hold.held)
			msg->env->flags |= SPOOL_F_HELD;
		else if (msg != NULL)
			msg->env->flags &= ~(uint32_t)SPOOL_F_HELD;
		break;
	case SPOOL_REC_DONE:
		idx_remove(sp, r->u.done.id);
		break;
	default:
		break; /* SEG: nothing to apply */
	}
}

/* spool_idx_ids_in_seg - ids of the live messages whose newest MSG record is in seq. */
uint64_t *spool_idx_ids_in_seg(struct spool *sp, uint64_t seq, size_t *n)
{
	struct spool_seg *s = spool_seg_find(sp, seq);
	size_t cap = s ? s->live_msgs : 0, k = 0;
	uint64_t *ids = xcalloc(cap, sizeof *ids);
	for (size_t i = 0; i < sp->map.cap && k < cap; i++)
		if (sp->map.slots[i] != NULL && sp->map.slots[i]->seg == seq)
			ids[k++] = sp->map.slots[i]->env->id;
	*n = k;
	return ids;
}

/* ---- read side of the public API ---- */

/* spool_get - deep copy of a live message's envelope. */
enum rc spool_get(struct spool *sp, uint64_t id, struct spool_env **out)
{
	pthread_mutex_lock(&sp->lock);
	struct spool_msg *msg = spool_map_get(&sp->map, id);
	if (msg != NULL)
		*out = spool_env_dup(msg->env);
	pthread_mutex_unlock(&sp->lock);
	if (msg != NULL)
		metrics_inc(METRICS_SPOOL_ENV_COPIES);
	return msg != NULL ? RC_OK : RC_NOTFOUND;
}

/* spool_tally - a live message's recipient counts, without copying it. */
enum rc spool_tally(struct spool *sp, uint64_t id, struct spool_tally *out)
{
	pthread_mutex_lock(&sp->lock);
	struct spool_msg *msg = spool_map_get(&sp->map, id);
	if (msg != NULL)
		*out = (struct spool_tally){.nrcpt = msg->env->nrcpt, .queued = msg->nqueued,
					    .failed = msg->nfailed,
					    .held = (msg->env->flags & SPOOL_F_HELD) != 0};
	pthread_mutex_unlock(&sp->lock);
	return msg != NULL ? RC_OK : RC_NOTFOUND;
}

/* spool_get_final - deep copy of the last envelope of a message that finished
 * (every recipient delivered or bounced) in the last SPOOL_FINAL_KEEP_MS. */
enum rc spool_get_final(struct spool *sp, uint64_t id, struct spool_env **out)
{
	enum rc rc = RC_NOTFOUND;
	int64_t now = time_mono_ms();
	pthread_mutex_lock(&sp->lock);
	for (size_t i = 0; sp->final && i < SPOOL_FINAL_KEEP && rc != RC_OK; i++) {
		const struct spool_final *f = &sp->final[i];
		if (f->env && f->env->id == id && now - f->finished <= SPOOL_FINAL_KEEP_MS) {
			*out = spool_env_dup(f->env);
			rc = RC_OK;
		}
	}
	pthread_mutex_unlock(&sp->lock);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* spool_foreach - visit live messages in id order. fn runs without the index
 * lock on a private copy, so it may call any spool function. */
void spool_foreach(struct spool *sp, bool (*fn)(void *arg, const struct spool_env *env), void *arg)
{
	pthread_mutex_lock(&sp->lock);
	size_t n = 0;
	uint64_t *ids = xcalloc(sp->map.n, sizeof *ids);
	for (size_t i = 0; i < sp->map.cap; i++)
		if (sp->map.slots[i] != NULL)
			ids[n++] = sp->map.slots[i]->env->id;
	pthread_mutex_unlock(&sp->lock);
	qsort(ids, n, sizeof *ids, cmp_u64);
	for (size_t i = 0; i < n; i++) {
		struct spool_env *env = NULL;
		if (spool_get(sp, ids[i], &env) != RC_OK)
			continue; /* finished or deleted meanwhile */
		bool more = fn(arg, env);
		spool_env_free(env);
		if (!more)
			break;
	}
	free(ids);
}

/* spool_count - number of live messages. */
size_t spool_count(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	size_t n = sp->map.n;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

/* spool_quarantined - records quarantined by recovery. */
size_t spool_quarantined(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	size_t n = sp->quarantined;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

static enum rc read_into(int fd, uint64_t off, uint64_t len, struct evbuffer *out)
{
	char buf[64 * 1024];
	while (len > 0) {
		size_t want = (size_t)MIN(len, (uint64_t)sizeof buf);
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return RC_IO;
		if (evbuffer_add(out, buf, (size_t)n) != 0)
			return RC_NOMEM;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return RC_OK;
}

/* spool_read_body - append the stored message bytes to out. The segment is opened
 * under the lock (so it cannot be reclaimed in between) and read without it. */
enum rc spool_read_body(struct spool *sp, uint64_t id, struct evbuffer *out)
{
	pthread_mutex_lock(&sp->lock);
	struct spool_msg *msg = spool_map_get(&sp->map, id);
	if (msg == NULL) {
		pthread_mutex_unlock(&sp->lock);
		return RC_NOTFOUND;
	}
	uint64_t off = msg->body_off, len = msg->env->body_size;
	char *path = spool_seg_path(sp, msg->seg);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&sp->lock);
	if (fd < 0) {
		log_err("event=spool_body_open_failed path=%s errno=%d", path, errno);
		free(path);
		return RC_IO;
	}
	struct evbuffer *tmp = evbuffer_new();
	enum rc rc = tmp ? read_into(fd, off, len, tmp) : RC_NOMEM;
	close(fd);
	if (rc == RC_OK && evbuffer_add_buffer(out, tmp) != 0)
		rc = RC_NOMEM;
	if (rc != RC_OK)
		log_err("event=spool_body_read_failed path=%s off=%llu rc=%s", path,
		        (unsigned long long)off, rc_name(rc));
	if (tmp)
		evbuffer_free(tmp);
	free(path);
	return rc;
}
