/*
 * sched.c - the scheduler: retry backoff and lifetime, and the ready queues per
 * (stream, destination) with round robin between destinations and a
 * concurrency limit per destination.
 *
 * Data structures (sized for queues of 100k+ recipients):
 *   - items: one struct sched_it per queued recipient, found by (msgid, rcpt)
 *     through a hash table (replace semantics of sched_add), and linked into
 *     its message's list (struct sched_msg, hash table by msgid) for
 *     sched_remove_msg and sched_flush of one message.
 *   - destinations: hash table by name -> struct sched_dest, holding one binary
 *     heap of items per stream ordered by (due, msgid, rcpt), the count of
 *     taken connection slots, and its key = the earliest due of its items.
 *   - a destination is *eligible* when it has queued items and a free slot.
 *     Every eligible destination is in s->all, a heap by key: sched_next_due
 *     reads its top in O(1). Each eligible destination is also in exactly one
 *     of: s->wait (a heap by key, not yet found due) or the ready FIFO (found
 *     due by a sched_take, waiting for its turn). sched_take moves every
 *     destination due by now from s->wait to the tail of the FIFO and serves
 *     the head; after its turn a destination goes back to s->wait, so the next
 *     take appends it behind those already waiting: round robin.
 *   So every change costs O(log n) (items) plus O(log d) (destinations).
 *
 * Within a destination's turn, a due transactional item beats any bulk item;
 * a batch is one stream, taken in (due, msgid, rcpt) order and then grouped by
 * message (stable) so that recipients of one message are adjacent.
 *
 * Ownership: the scheduler owns its items, messages and destinations (and the
 * copies of the names and of the retry schedule). Memory grows with the queue:
 * the bound is the spool's (SPOOL_RCPT_MAX per message, the disk for the rest).
 * Failure model: allocation aborts; releasing a slot that was not taken is a
 * caller bug and aborts.
 */
#include "sched/sched_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t sched_default_retry[] = {300, 600, 1200, 2400, 3600, 7200, 14400};

static const char *const sched_stream_names[] = {"transactional", "bulk"};
_Static_assert(ARRAY_LEN(sched_stream_names) == SCHED_STREAM__COUNT, "stream names");

/* sched_stream_name - "transactional" / "bulk" for logs. */
const char *sched_stream_name(enum sched_stream s)
{
	return (unsigned)s < SCHED_STREAM__COUNT ? sched_stream_names[s] : "?";
}

/* ---- backoff and lifetime (pure) ---- */

/* sched_retry_delay - the delay after the attempts-th failure; the last entry repeats. */
uint32_t sched_retry_delay(const struct sched_conf *c, uint32_t attempts)
{
	const uint32_t *tab = c->nretry ? c->retry_schedule : sched_default_retry;
	size_t n = c->nretry ? c->nretry : ARRAY_LEN(sched_default_retry);
	size_t i = attempts ? attempts - 1 : 0;
	return tab[i < n ? i : n - 1];
}

/* Lifetime in ms, saturated so that absurd configurations never overflow. */
static int64_t lifetime_ms(const struct sched_conf *c)
{
	if (c->max_queue_lifetime > (uint64_t)(INT64_MAX / 1000))
		return INT64_MAX;
	return (int64_t)c->max_queue_lifetime * 1000;
}

/* sched_is_expired - true once now is strictly past created + lifetime (a
 * recipient may still be tried at exactly its last moment). */
bool sched_is_expired(const struct sched_conf *c, int64_t created, int64_t now)
{
	int64_t life = lifetime_ms(c);
	if (now <= created)
		return false;
	return now - created > life;
}

/* sched_next_attempt - now + delay, or 0 when that is past the lifetime. */
int64_t sched_next_attempt(const struct sched_conf *c, int64_t created, uint32_t attempts,
                           int64_t now)
{
	int64_t next = now + (int64_t)sched_retry_delay(c, attempts) * 1000;
	return sched_is_expired(c, created, next) ? 0 : next;
}

/* ---- the queue ---- */

struct sched_dest;
struct sched_msg;

struct sched_it {
	struct sched_hnode hn;          /* in s->items, key (msgid, rcpt); first member */
	struct sched_it *mprev, *mnext; /* the items of the same message */
	struct sched_msg *msg;
	struct sched_dest *dest;
	uint64_t msgid;
	uint32_t rcpt;
	enum sched_stream stream;
	int64_t due;
	size_t hpos; /* in dest->q[stream] */
};

struct sched_msg {
	struct sched_hnode hn; /* in s->msgs, key msgid; first member */
	uint64_t msgid;
	struct sched_it *items; /* never empty: freed with its last item */
};

struct sched_dest {
	struct sched_hnode hn; /* in s->dests, key name; first member */
	char *name;            /* owned, lower case */
	uint64_t serial;       /* creation order: breaks ties between keys */
	unsigned active;       /* slots taken */
	int64_t key;           /* earliest due of its items (when eligible) */
	struct sched_heap q[SCHED_STREAM__COUNT];
	size_t all_pos, wait_pos;         /* in s->all, s->wait */
	struct sched_dest *rprev, *rnext; /* the ready FIFO */
	bool in_ready;
};

struct sched {
	uint32_t *retry;        /* owned copy of the schedule */
	struct sched_conf conf; /* conf.retry_schedule points at retry */
	struct sched_htab items, msgs, dests;
	struct sched_heap all, wait;
	struct sched_dest *rhead, *rtail;
	size_t count;
	uint64_t serial, seed;
	struct sched_it **batch; /* scratch for sched_take */
	struct sched_grp *grp;
	size_t scratch_cap;
};

struct sched_grp {
	uint64_t msgid;
	size_t first, pos;
};

static bool item_less(const void *a, const void *b)
{
	const struct sched_it *x = a, *y = b;
	if (x->due != y->due)
		return x->due < y->due;
	if (x->msgid != y->msgid)
		return x->msgid < y->msgid;
	return x->rcpt < y->rcpt;
}

static bool dest_less(const void *a, const void *b)
{
	const struct sched_dest *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key;
	return x->serial < y->serial;
}

/* ---- hashing ---- */

static uint64_t item_hash(const struct sched *s, uint64_t msgid, uint32_t rcpt)
{
	return sched_mix64(sched_mix64(msgid ^ s->seed) + rcpt);
}

static uint64_t msg_hash(const struct sched *s, uint64_t msgid)
{
	return sched_mix64(msgid ^ s->seed);
}

/* FNV-1a over the lower-cased name, keyed with the seed: destinations come from
 * recipient addresses, so their spread must not be predictable. */
static uint64_t dest_hash(const struct sched *s, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull ^ s->seed;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= (uint64_t)tolower(*p);
		h *= 0x100000001b3ull;
	}
	return sched_mix64(h);
}

/* ---- lookups ---- */

static struct sched_it *item_find(const struct sched *s, uint64_t msgid, uint32_t rcpt)
{
	uint64_t h = item_hash(s, msgid, rcpt);
	for (struct sched_hnode *n = sched_htab_chain(&s->items, h); n; n = n->next) {
		struct sched_it *it = (struct sched_it *)n;
		if (n->hash == h && it->msgid == msgid && it->rcpt == rcpt)
			return it;
	}
	return NULL;
}

static struct sched_msg *msg_find(const struct sched *s, uint64_t msgid)
{
	uint64_t h = msg_hash(s, msgid);
	for (struct sched_hnode *n = sched_htab_chain(&s->msgs, h); n; n = n->next) {
		struct sched_msg *m = (struct sched_msg *)n;
		if (n->hash == h && m->msgid == msgid)
			return m;
	}
	return NULL;
}

static struct sched_dest *dest_find(const struct sched *s, const char *name)
{
	uint64_t h = dest_hash(s, name);
	for (struct sched_hnode *n = sched_htab_chain(&s->dests, h); n; n = n->next) {
		struct sched_dest *d = (struct sched_dest *)n;
		if (n->hash == h && str_ieq(d->name, name))
			return d;
	}
	return NULL;
}

static struct sched_dest *dest_get(struct sched *s, const char *name)
{
	struct sched_dest *d = dest_find(s, name);
	if (d != NULL)
		return d;
	d = xcalloc(1, sizeof *d);
	d->name = xstrdup(name);
	str_lower(d->name);
	d->serial = s->serial++;
	d->all_pos = d->wait_pos = SCHED_NPOS;
	for (int st = 0; st < SCHED_STREAM__COUNT; st++)
		sched_heap_init(&d->q[st], offsetof(struct sched_it, hpos), item_less);
	sched_htab_insert(&s->dests, &d->hn, dest_hash(s, name));
	return d;
}

/* ---- where a destination stands: all/wait heaps and the ready FIFO ---- */

static void ready_unlink(struct sched *s, struct sched_dest *d)
{
	if (d->rprev)
		d->rprev->rnext = d->rnext;
	else
		s->rhead = d->rnext;
	if (d->rnext)
		d->rnext->rprev = d->rprev;
	else
		s->rtail = d->rprev;
	d->rprev = d->rnext = NULL;
	d->in_ready = false;
}

static void ready_append(struct sched *s, struct sched_dest *d)
{
	d->rprev = s->rtail;
	d->rnext = NULL;
	if (s->rtail)
		s->rtail->rnext = d;
	else
		s->rhead = d;
	s->rtail = d;
	d->in_ready = true;
}

static void dest_unplace(struct sched *s, struct sched_dest *d)
{
	if (sched_heap_has(&s->all, d))
		sched_heap_remove(&s->all, d);
	if (sched_heap_has(&s->wait, d))
		sched_heap_remove(&s->wait, d);
	if (d->in_ready)
		ready_unlink(s, d);
}

static void dest_free(struct sched *s, struct sched_dest *d)
{
	dest_unplace(s, d);
	sched_htab_remove(&s->dests, &d->hn);
	for (int st = 0; st < SCHED_STREAM__COUNT; st++)
		sched_heap_fini(&d->q[st]);
	free(d->name);
	free(d);
}

static size_t dest_queued(const struct sched_dest *d)
{
	return d->q[SCHED_STREAM_TRANSACTIONAL].n + d->q[SCHED_STREAM_BULK].n;
}

static int64_t dest_min_due(const struct sched_dest *d)
{
	int64_t m = INT64_MAX;
	for (int st = 0; st < SCHED_STREAM__COUNT; st++) {
		const struct sched_it *top = sched_heap_top(&d->q[st]);
		if (top != NULL && top->due < m)
			m = top->due;
	}
	return m;
}

static void heap_put(struct sched_heap *h, struct sched_dest *d)
{
	if (sched_heap_has(h, d))
		sched_heap_fix(h, d);
	else
		sched_heap_push(h, d);
}

/*
 * Re-file d after any change to its items or slots: eligible destinations are
 * (re)keyed in s->all and, unless waiting in the FIFO, in s->wait. A
 * destination with nothing queued and no slot taken is freed: d may be gone
 * after this call.
 */
static void dest_update(struct sched *s, struct sched_dest *d)
{
	size_t queued = dest_queued(d);
	if (queued == 0 || d->active >= s->conf.max_conn_per_dest) {
		if (queued == 0 && d->active == 0)
			dest_free(s, d);
		else
			dest_unplace(s, d);
		return;
	}
	d->key = dest_min_due(d);
	heap_put(&s->all, d);
	if (!d->in_ready)
		heap_put(&s->wait, d);
}

/* ---- items ---- */

static void item_unlink_msg(struct sched *s, struct sched_it *it)
{
	struct sched_msg *m = it->msg;
	if (it->mprev)
		it->mprev->mnext = it->mnext;
	else
		m->items = it->mnext;
	if (it->mnext)
		it->mnext->mprev = it->mprev;
	if (m->items == NULL) {
		sched_htab_remove(&s->msgs, &m->hn);
		free(m);
	}
}

/* Forget an item that is already out of its heap. */
static void item_drop(struct sched *s, struct sched_it *it)
{
	sched_htab_remove(&s->items, &it->hn);
	item_unlink_msg(s, it);
	s->count--;
	free(it);
}

/* Remove a queued item; its destination may be freed. */
static void item_remove(struct sched *s, struct sched_it *it)
{
	struct sched_dest *d = it->dest;
	sched_heap_remove(&d->q[it->stream], it);
	item_drop(s, it);
	dest_update(s, d);
}

static void item_link_msg(struct sched *s, struct sched_it *it)
{
	struct sched_msg *m = msg_find(s, it->msgid);
	if (m == NULL) {
		m = xcalloc(1, sizeof *m);
		m->msgid = it->msgid;
		sched_htab_insert(&s->msgs, &m->hn, msg_hash(s, it->msgid));
	}
	it->msg = m;
	it->mprev = NULL;
	it->mnext = m->items;
	if (m->items)
		m->items->mprev = it;
	m->items = it;
}

/* ---- public API ---- */

/* sched_set_conf - new settings (a reload); copies c and its retry schedule.
 * Queued recipients keep their due times; the new schedule counts from their
 * next failure. */
void sched_set_conf(struct sched *s, const struct sched_conf *c)
{
	free(s->retry);
	s->retry = NULL;
	s->conf = *c;
	if (c->nretry) {
		s->retry = xmalloc(c->nretry * sizeof *s->retry);
		memcpy(s->retry, c->retry_schedule, c->nretry * sizeof *s->retry);
	}
	s->conf.retry_schedule = s->retry;
	if (s->conf.max_conn_per_dest == 0)
		s->conf.max_conn_per_dest = 1;
}

/* sched_new - an empty scheduler; copies c and its retry schedule. */
struct sched *sched_new(const struct sched_conf *c)
{
	struct sched *s = xcalloc(1, sizeof *s);
	sched_set_conf(s, c);
	s->seed = sched_mix64((uint64_t)(uintptr_t)s);
	sched_htab_init(&s->items);
	sched_htab_init(&s->msgs);
	sched_htab_init(&s->dests);
	sched_heap_init(&s->all, offsetof(struct sched_dest, all_pos), dest_less);
	sched_heap_init(&s->wait, offsetof(struct sched_dest, wait_pos), dest_less);
	return s;
}

static void htab_free_nodes(struct sched_htab *t)
{
	for (size_t i = 0; i < t->nb; i++) {
		struct sched_hnode *n = t->b[i];
		while (n != NULL) {
			struct sched_hnode *next = n->next;
			free(n);
			n = next;
		}
	}
	sched_htab_fini(t);
}

/* sched_free - free everything; NULL is a no-op. */
void sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->dests.nb; i++) {
		for (struct sched_hnode *n = s->dests.b[i]; n; n = n->next) {
			struct sched_dest *d = (struct sched_dest *)n;
			for (int st = 0; st < SCHED_STREAM__COUNT; st++)
				sched_heap_fini(&d->q[st]);
			free(d->name);
		}
	}
	htab_free_nodes(&s->dests); /* struct sched_dest starts with its node */
	htab_free_nodes(&s->items);
	htab_free_nodes(&s->msgs);
	sched_heap_fini(&s->all);
	sched_heap_fini(&s->wait);
	free(s->batch);
	free(s->grp);
	free(s->retry);
	free(s);
}

/* sched_add - queue (or re-queue: replace) one recipient. */
void sched_add(struct sched *s, enum sched_stream st, const char *dest, uint64_t msgid,
               uint32_t rcpt, int64_t due)
{
	if ((unsigned)st >= SCHED_STREAM__COUNT)
		fatal("event=sched_bad_stream stream=%d", (int)st);
	struct sched_it *old = item_find(s, msgid, rcpt);
	if (old != NULL)
		item_remove(s, old);
	struct sched_dest *d = dest_get(s, dest);
	struct sched_it *it = xcalloc(1, sizeof *it);
	it->msgid = msgid;
	it->rcpt = rcpt;
	it->stream = st;
	it->due = due;
	it->dest = d;
	sched_htab_insert(&s->items, &it->hn, item_hash(s, msgid, rcpt));
	item_link_msg(s, it);
	sched_heap_push(&d->q[st], it);
	s->count++;
	dest_update(s, d);
}

/* sched_remove_msg - drop every queued recipient of msgid. */
void sched_remove_msg(struct sched *s, uint64_t msgid)
{
	struct sched_msg *m = msg_find(s, msgid);
	if (m == NULL)
		return;
	for (;;) {
		struct sched_it *it = m->items;
		bool last = it->mnext == NULL;
		item_remove(s, it); /* frees m with its last item */
		if (last)
			break;
	}
}

static void flush_msg(struct sched *s, struct sched_msg *m, int64_t now)
{
	for (struct sched_it *it = m->items; it; it = it->mnext) {
		if (it->due <= now)
			continue;
		it->due = now;
		sched_heap_fix(&it->dest->q[it->stream], it);
		dest_update(s, it->dest); /* never frees: it is queued there */
	}
}

static void flush_dest(struct sched *s, struct sched_dest *d, int64_t now)
{
	for (int st = 0; st < SCHED_STREAM__COUNT; st++) {
		struct sched_heap *q = &d->q[st];
		for (size_t i = 0; i < q->n; i++) {
			struct sched_it *it = q->v[i];
			if (it->due > now)
				it->due = now;
		}
		sched_heap_rebuild(q);
	}
	if (dest_queued(d))
		dest_update(s, d);
}

/* sched_flush - items due later than now become due now (all, or msgid's). */
void sched_flush(struct sched *s, uint64_t msgid, int64_t now)
{
	if (msgid != 0) {
		struct sched_msg *m = msg_find(s, msgid);
		if (m != NULL)
			flush_msg(s, m, now);
		return;
	}
	for (size_t i = 0; i < s->dests.nb; i++)
		for (struct sched_hnode *n = s->dests.b[i]; n; n = n->next)
			flush_dest(s, (struct sched_dest *)n, now);
}

/* Move every destination due by now from s->wait to the tail of the FIFO. */
static void ready_promote(struct sched *s, int64_t now)
{
	struct sched_dest *d;
	while ((d = sched_heap_top(&s->wait)) != NULL && d->key <= now) {
		sched_heap_remove(&s->wait, d);
		ready_append(s, d);
	}
}

/* The FIFO's first destination that is (still) due; others go back to wait. */
static struct sched_dest *ready_next(struct sched *s, int64_t now)
{
	struct sched_dest *d;
	while ((d = s->rhead) != NULL) {
		ready_unlink(s, d);
		if (d->key <= now)
			return d;
		sched_heap_push(&s->wait, d);
	}
	return NULL;
}

static void scratch_reserve(struct sched *s, size_t n)
{
	if (n <= s->scratch_cap)
		return;
	s->batch = xrealloc(s->batch, n * sizeof *s->batch);
	s->grp = xrealloc(s->grp, n * sizeof *s->grp);
	s->scratch_cap = n;
}

static int grp_by_msg(const void *a, const void *b)
{
	const struct sched_grp *x = a, *y = b;
	if (x->msgid != y->msgid)
		return x->msgid < y->msgid ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int grp_by_first(const void *a, const void *b)
{
	const struct sched_grp *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Order s->batch[0..n) into s->grp so that each message's items are adjacent,
 * messages in order of first appearance, items in their original order. */
static void batch_group(struct sched *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s->grp[i] = (struct sched_grp){s->batch[i]->msgid, i, i};
	qsort(s->grp, n, sizeof *s->grp, grp_by_msg);
	for (size_t i = 1; i < n; i++)
		if (s->grp[i].msgid == s->grp[i - 1].msgid)
			s->grp[i].first = s->grp[i - 1].first;
	qsort(s->grp, n, sizeof *s->grp, grp_by_first);
}

/* Pop up to max due items of d's stream st into out, grouped by message. */
static size_t take_items(struct sched *s, struct sched_dest *d, enum sched_stream st, int64_t now,
                         struct sched_item *out, size_t max)
{
	struct sched_heap *q = &d->q[st];
	size_t n = 0;
	struct sched_it *it;
	while (n < max && (it = sched_heap_top(q)) != NULL && it->due <= now) {
		if (n == s->scratch_cap)
			scratch_reserve(s, s->scratch_cap ? s->scratch_cap * 2 : 64);
		sched_heap_remove(q, it);
		s->batch[n++] = it;
	}
	batch_group(s, n);
	for (size_t i = 0; i < n; i++) {
		it = s->batch[s->grp[i].pos];
		out[i] = (struct sched_item){it->msgid, it->rcpt, it->due};
	}
	for (size_t i = 0; i < n; i++)
		item_drop(s, s->batch[i]);
	return n;
}

static enum sched_stream pick_stream(const struct sched_dest *d, int64_t now)
{
	const struct sched_it *t = sched_heap_top(&d->q[SCHED_STREAM_TRANSACTIONAL]);
	return t != NULL && t->due <= now ? SCHED_STREAM_TRANSACTIONAL : SCHED_STREAM_BULK;
}

/* sched_take - one destination's next batch (see sched.h); takes one slot. */
size_t sched_take(struct sched *s, int64_t now, struct sched_item *out, size_t max, char *dest,
                  size_t dest_size, enum sched_stream *stream)
{
	if (max == 0)
		return 0;
	ready_promote(s, now);
	struct sched_dest *d = ready_next(s, now);
	if (d == NULL)
		return 0;
	enum sched_stream st = pick_stream(d, now);
	size_t n = take_items(s, d, st, now, out, max);
	d->active++;
	if (dest != NULL && dest_size > 0)
		str_lcpy(dest, d->name, dest_size);
	if (stream != NULL)
		*stream = st;
	dest_update(s, d); /* keeps d: a slot is taken */
	return n;
}

/* sched_take_more - more due items of dest, for the holder of one of its slots. */
size_t sched_take_more(struct sched *s, const char *dest, int64_t now, struct sched_item *out,
                       size_t max, enum sched_stream *stream)
{
	struct sched_dest *d = dest_find(s, dest);
	if (d == NULL || d->active == 0)
		fatal("event=sched_take_more_without_slot dest=%s", dest);
	if (max == 0)
		return 0;
	enum sched_stream st = pick_stream(d, now);
	const struct sched_it *top = sched_heap_top(&d->q[st]);
	if (top == NULL || top->due > now)
		return 0;
	size_t n = take_items(s, d, st, now, out, max);
	if (stream != NULL)
		*stream = st;
	dest_update(s, d); /* keeps d: a slot is taken */
	return n;
}

/* sched_release - give back a slot taken by sched_take for dest. */
void sched_release(struct sched *s, const char *dest)
{
	struct sched_dest *d = dest_find(s, dest);
	if (d == NULL || d->active == 0)
		fatal("event=sched_release_unbalanced dest=%s", dest);
	d->active--;
	dest_update(s, d);
}

/* sched_next_due - the key of the earliest eligible destination: O(1). */
int64_t sched_next_due(const struct sched *s)
{
	const struct sched_dest *d = sched_heap_top(&s->all);
	return d != NULL ? d->key : INT64_MAX;
}

/* sched_count - recipients queued (not taken). */
size_t sched_count(const struct sched *s)
{
	return s->count;
}
