/*
 * sched_int.h - module-internal containers of the scheduler, shared by its .c
 * files and its unit test: an indexed binary min-heap and an intrusive chained
 * hash table. Other modules use sched.h only.
 *
 * Indexed heap: each element stores its own position (a size_t at posoff inside
 * the element, SCHED_NPOS when not in the heap), so any element can be removed
 * or re-keyed in O(log n) without a search. An element may sit in several heaps
 * at once if it has one position field per heap.
 *
 * Hash table: nodes are embedded in the caller's structs (first member, so a
 * node pointer converts back to its struct); the table owns only its bucket
 * array. The caller computes the hash and compares keys while walking a chain.
 *
 * Neither container allocates anything but its own array, aborting (xrealloc)
 * when memory runs out; neither is thread-safe.
 */
#ifndef RELEVO_SCHED_INT_H
#define RELEVO_SCHED_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"

#define SCHED_NPOS SIZE_MAX

typedef bool (*sched_less_fn)(const void *a, const void *b);

struct sched_heap {
	void **v;		/* owned array of borrowed element pointers */
	size_t n, cap;
	size_t posoff;		/* offset of the element's size_t position */
	sched_less_fn less;
};

void sched_heap_init(struct sched_heap *h, size_t posoff, sched_less_fn less);
void sched_heap_fini(struct sched_heap *h);
void sched_heap_push(struct sched_heap *h, void *e);
/* sched_heap_top - the least element, or NULL when empty. */
void *sched_heap_top(const struct sched_heap *h);
void sched_heap_remove(struct sched_heap *h, void *e);
/* sched_heap_fix - restore order after e's key changed (either direction). */
void sched_heap_fix(struct sched_heap *h, void *e);
/* sched_heap_rebuild - restore order after many keys changed at once (O(n)). */
void sched_heap_rebuild(struct sched_heap *h);
/* sched_heap_has - is e in h? (its position field says so) */
bool sched_heap_has(const struct sched_heap *h, const void *e);

struct sched_hnode {
	struct sched_hnode *next;
	uint64_t hash;
};

struct sched_htab {
	struct sched_hnode **b;	/* owned bucket array; nodes are the caller's */
	size_t nb, n;		/* nb: a power of two */
};

void sched_htab_init(struct sched_htab *t);
void sched_htab_fini(struct sched_htab *t);
void sched_htab_insert(struct sched_htab *t, struct sched_hnode *node, uint64_t hash);
void sched_htab_remove(struct sched_htab *t, struct sched_hnode *node);
/* sched_htab_chain - the chain that holds hash; walk ->next, comparing keys. */
struct sched_hnode *sched_htab_chain(const struct sched_htab *t, uint64_t hash);

/* sched_mix64 - a 64-bit finaliser (splitmix64): spreads keys over buckets. */
uint64_t sched_mix64(uint64_t x);

#endif
