/*
 * sched_ds.c - the scheduler's containers: an indexed binary min-heap and an
 * intrusive chained hash table (see sched_int.h for their contracts).
 *
 * Failure model: allocation aborts (xrealloc/xcalloc); a position field that
 * does not point back at its element is a broken invariant and aborts.
 */
#include "sched/sched_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- indexed heap ---- */

static size_t *heap_pos(const struct sched_heap *h, const void *e)
{
	return (size_t *)((char *)(uintptr_t)e + h->posoff);
}

static void heap_place(struct sched_heap *h, size_t i, void *e)
{
	h->v[i] = e;
	*heap_pos(h, e) = i;
}

static void heap_sift_up(struct sched_heap *h, size_t i)
{
	void *e = h->v[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!h->less(e, h->v[p]))
			break;
		heap_place(h, i, h->v[p]);
		i = p;
	}
	heap_place(h, i, e);
}

static void heap_sift_down(struct sched_heap *h, size_t i)
{
	void *e = h->v[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->less(h->v[c + 1], h->v[c]))
			c++;
		if (!h->less(h->v[c], e))
			break;
		heap_place(h, i, h->v[c]);
		i = c;
	}
	heap_place(h, i, e);
}

static size_t heap_index(const struct sched_heap *h, const void *e)
{
	size_t i = *heap_pos(h, e);
	if (i >= h->n || h->v[i] != e)
		fatal("event=sched_heap_corrupt pos=%zu n=%zu", i, h->n);
	return i;
}

/* sched_heap_init - an empty heap whose elements keep their position at posoff. */
void sched_heap_init(struct sched_heap *h, size_t posoff, sched_less_fn less)
{
	memset(h, 0, sizeof *h);
	h->posoff = posoff;
	h->less = less;
}

/* sched_heap_fini - free the array (not the elements). */
void sched_heap_fini(struct sched_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

/* sched_heap_push - insert e (which must not be in h). */
void sched_heap_push(struct sched_heap *h, void *e)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 8;
		h->v = xrealloc(h->v, h->cap * sizeof *h->v);
	}
	heap_place(h, h->n, e);
	h->n++;
	heap_sift_up(h, h->n - 1);
}

/* sched_heap_top - the least element, or NULL. */
void *sched_heap_top(const struct sched_heap *h)
{
	return h->n ? h->v[0] : NULL;
}

/* sched_heap_remove - take e out of h; its position becomes SCHED_NPOS. */
void sched_heap_remove(struct sched_heap *h, void *e)
{
	size_t i = heap_index(h, e);
	h->n--;
	*heap_pos(h, e) = SCHED_NPOS;
	if (i == h->n)
		return;
	void *moved = h->v[h->n];
	heap_place(h, i, moved);
	heap_sift_up(h, i);
	heap_sift_down(h, *heap_pos(h, moved));
}

/* sched_heap_fix - move e to where its (changed) key belongs. */
void sched_heap_fix(struct sched_heap *h, void *e)
{
	heap_sift_up(h, heap_index(h, e));
	heap_sift_down(h, *heap_pos(h, e));
}

/* sched_heap_rebuild - Floyd's heapify after bulk key changes. */
void sched_heap_rebuild(struct sched_heap *h)
{
	for (size_t i = h->n / 2; i-- > 0;)
		heap_sift_down(h, i);
}

/* sched_heap_has - whether e is currently in h. */
bool sched_heap_has(const struct sched_heap *h, const void *e)
{
	size_t i = *heap_pos(h, e);
	return i < h->n && h->v[i] == e;
}

/* ---- hash table ---- */

#define HTAB_MIN 64

/* sched_mix64 - splitmix64's finaliser. */
uint64_t sched_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* sched_htab_init - an empty table. */
void sched_htab_init(struct sched_htab *t)
{
	t->nb = HTAB_MIN;
	t->n = 0;
	t->b = xcalloc(t->nb, sizeof *t->b);
}

/* sched_htab_fini - free the buckets (not the nodes). */
void sched_htab_fini(struct sched_htab *t)
{
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}

static void htab_grow(struct sched_htab *t)
{
	size_t nb = t->nb * 2;
	struct sched_hnode **b = xcalloc(nb, sizeof *b);
	for (size_t i = 0; i < t->nb; i++) {
		struct sched_hnode *n = t->b[i];
		while (n != NULL) {
			struct sched_hnode *next = n->next;
			size_t j = (size_t)n->hash & (nb - 1);
			n->next = b[j];
			b[j] = n;
			n = next;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

/* sched_htab_insert - add node under hash (duplicates are the caller's affair). */
void sched_htab_insert(struct sched_htab *t, struct sched_hnode *node, uint64_t hash)
{
	if (t->n >= t->nb)
		htab_grow(t);
	size_t j = (size_t)hash & (t->nb - 1);
	node->hash = hash;
	node->next = t->b[j];
	t->b[j] = node;
	t->n++;
}

/* sched_htab_remove - unlink node (which must be in t). */
void sched_htab_remove(struct sched_htab *t, struct sched_hnode *node)
{
	struct sched_hnode **pp = &t->b[(size_t)node->hash & (t->nb - 1)];
	while (*pp != NULL && *pp != node)
		pp = &(*pp)->next;
	if (*pp == NULL)
		fatal("event=sched_htab_corrupt");
	*pp = node->next;
	node->next = NULL;
	t->n--;
}

/* sched_htab_chain - first node of the chain hash falls into. */
struct sched_hnode *sched_htab_chain(const struct sched_htab *t, uint64_t hash)
{
	return t->b[(size_t)hash & (t->nb - 1)];
}
