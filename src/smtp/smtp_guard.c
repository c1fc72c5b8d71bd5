/*
 * smtp_guard.c - password guessing across connections: failed AUTH counted per
 * client address and per account name, shared by every worker thread.
 *
 * Keys: an IPv4 address (or IPv4-mapped IPv6) whole; an IPv6 address by its /64,
 * since one subscriber usually holds a whole /64 and could otherwise walk through
 * 2^64 addresses; an account by the SHA-256 of its ASCII-lower-cased name (the
 * store compares names with COLLATE NOCASE), cut to 16 bytes.
 *
 * Rules (monotonic clock; limit = smtp.auth_lockout_failures, window =
 * smtp.auth_lockout_window):
 * - A key's failures are counted from its first failure for one window; a
 *   failure after that starts a new count.
 * - An address that reaches limit failures is locked for a window from then:
 *   AUTH from it is refused (454 4.7.0) without looking at the password, so a
 *   guesser learns nothing, not even with the right one.
 * - Every failure is answered late (a tarpit, on the session's timer): 500 ms
 *   times the address's failures so far, at most GUARD_DELAY_MAX_MS; and every
 *   failure for an account past its limit failures in a window,
 *   GUARD_DELAY_MAX_MS, from whatever address.
 * - An account is never locked: anyone who knows a customer's user name could
 *   otherwise keep that customer out. A right password always gets in (unless
 *   its address is locked).
 * - A success clears its address's count, not its account's: a customer
 *   logging in must not reset the count of a distributed guesser.
 *
 * Memory is bounded whatever the number of attackers: each table is a fixed
 * set-associative cache (GUARD_SETS x GUARD_WAYS entries, allocated once). A key
 * maps to one set through a hash keyed with a random seed drawn at start, so a
 * client cannot aim its addresses at someone else's set; an expired entry is free,
 * and a new key otherwise evicts the least recently seen entry of its set. An
 * evicted key simply starts counting again.
 *
 * Thread safety: one mutex guards both tables; every call costs O(GUARD_WAYS).
 */
#include "smtp/smtp_int.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#define GUARD_SETS 1024
#define GUARD_WAYS 8
#define GUARD_DELAY_STEP_MS 500
#define GUARD_DELAY_MAX_MS 5000

struct guard_entry {
	uint8_t key[16];
	bool used;
	unsigned failures;
	int64_t first_ms;	/* first failure of the current count */
	int64_t locked_until;	/* addresses: refused before this (0: not locked) */
	int64_t seen_ms;	/* last failure: for LRU eviction */
};

struct guard_table {
	struct guard_entry *e;	/* GUARD_SETS * GUARD_WAYS */
};

struct smtp_guard {
	pthread_mutex_t lock;
	unsigned limit;
	int64_t window_ms;
	uint64_t seed[2];
	struct guard_table addrs, users;
};

/* smtp_guard_set_limits - new limit and window (a reload); counts are kept. */
void smtp_guard_set_limits(struct smtp_guard *g, unsigned limit, unsigned window_s)
{
	pthread_mutex_lock(&g->lock);
	g->limit = limit ? limit : 1;
	g->window_ms = (int64_t)window_s * 1000;
	pthread_mutex_unlock(&g->lock);
}

/* smtp_guard_new - empty tables for limit failures per window_s seconds. */
struct smtp_guard *smtp_guard_new(unsigned limit, unsigned window_s)
{
	struct smtp_guard *g = xcalloc(1, sizeof *g);
	pthread_mutex_init(&g->lock, NULL);
	g->limit = limit ? limit : 1;
	g->window_ms = (int64_t)window_s * 1000;
	if (getrandom(g->seed, sizeof g->seed, 0) != (ssize_t)sizeof g->seed) {
		g->seed[0] = (uint64_t)time_mono_ms() ^ (uint64_t)time_now_ms();
		g->seed[1] = (uint64_t)(uintptr_t)g;
	}
	g->addrs.e = xcalloc(GUARD_SETS * GUARD_WAYS, sizeof *g->addrs.e);
	g->users.e = xcalloc(GUARD_SETS * GUARD_WAYS, sizeof *g->users.e);
	return g;
}

/* smtp_guard_free - release the tables; NULL is a no-op. */
void smtp_guard_free(struct smtp_guard *g)
{
	if (g == NULL)
		return;
	free(g->addrs.e);
	free(g->users.e);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* guard_addr_key - IPv4 (and IPv4-mapped) whole, as ::ffff:a.b.c.d; IPv6 by /64. */
static void guard_addr_key(const struct sockaddr_storage *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->ss_family == AF_INET) {
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		key[10] = key[11] = 0xff;
	} else if (sa->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		memcpy(key, a, IN6_IS_ADDR_V4MAPPED(a) ? 16 : 8);
	}
}

/* guard_user_key - SHA-256 of the name lower-cased (ASCII), first 16 bytes. */
static void guard_user_key(const char *user, uint8_t key[16])
{
	char lower[SMTP_AUTH_USER_MAX + 1];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	str_lcpy(lower, user, sizeof lower);
	str_lower(lower);
	if (EVP_Digest(lower, strlen(lower), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 16)
		fatal("event=sha256_failed where=guard_user_key");
	memcpy(key, md, 16);
}

static uint64_t guard_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* guard_set - the first entry of key's set (keyed hash: see the file comment). */
static struct guard_entry *guard_set(const struct smtp_guard *g, const struct guard_table *t,
				     const uint8_t key[16])
{
	uint64_t a, b;
	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	uint64_t h = guard_mix(guard_mix(a ^ g->seed[0]) ^ b ^ g->seed[1]);
	return &t->e[(h % GUARD_SETS) * GUARD_WAYS];
}

/* guard_is_live - does e still mean something at now (counting or locked)? */
static bool guard_is_live(const struct smtp_guard *g, const struct guard_entry *e, int64_t now)
{
	return e->used && (now - e->first_ms < g->window_ms || e->locked_until > now);
}

/* guard_find - key's live entry, or NULL. */
static struct guard_entry *guard_find(const struct smtp_guard *g, const struct guard_table *t,
				      const uint8_t key[16], int64_t now)
{
	struct guard_entry *set = guard_set(g, t, key);
	for (int i = 0; i < GUARD_WAYS; i++)
		if (set[i].used && memcmp(set[i].key, key, 16) == 0)
			return guard_is_live(g, &set[i], now) ? &set[i] : NULL;
	return NULL;
}

/* guard_take - key's entry, starting a new count when it has none live; evicts
 * the least recently seen entry of the set if the set is full. */
static struct guard_entry *guard_take(const struct smtp_guard *g, const struct guard_table *t,
				      const uint8_t key[16], int64_t now)
{
	struct guard_entry *set = guard_set(g, t, key), *victim = NULL;
	for (int i = 0; i < GUARD_WAYS && victim == NULL; i++) {
		if (!set[i].used || memcmp(set[i].key, key, 16) != 0)
			continue;
		if (guard_is_live(g, &set[i], now))
			return &set[i];
		victim = &set[i]; /* expired: its count starts again */
	}
	for (int i = 0; i < GUARD_WAYS && victim == NULL; i++)
		if (!guard_is_live(g, &set[i], now))
			victim = &set[i];
	if (victim == NULL) {
		victim = &set[0];
		for (int i = 1; i < GUARD_WAYS; i++)
			if (set[i].seen_ms < victim->seen_ms)
				victim = &set[i];
	}
	*victim = (struct guard_entry){.used = true, .first_ms = now};
	memcpy(victim->key, key, 16);
	return victim;
}

/* smtp_guard_is_locked - is AUTH from this address refused at now? */
bool smtp_guard_is_locked(struct smtp_guard *g, const struct sockaddr_storage *sa, int64_t now)
{
	uint8_t key[16];
	guard_addr_key(sa, key);
	pthread_mutex_lock(&g->lock);
	const struct guard_entry *e = guard_find(g, &g->addrs, key, now);
	bool locked = e && e->locked_until > now;
	pthread_mutex_unlock(&g->lock);
	return locked;
}

/* smtp_guard_fail - count a failed AUTH of user from sa at now; *v says how late to
 * answer it and what the counts are. user may be NULL (nothing decoded). */
void smtp_guard_fail(struct smtp_guard *g, const struct sockaddr_storage *sa, const char *user,
		     int64_t now, struct smtp_guard_verdict *v)
{
	uint8_t akey[16], ukey[16];
	guard_addr_key(sa, akey);
	if (user && user[0])
		guard_user_key(user, ukey);
	*v = (struct smtp_guard_verdict){0};
	pthread_mutex_lock(&g->lock);
	struct guard_entry *a = guard_take(g, &g->addrs, akey, now);
	a->failures++;
	a->seen_ms = now;
	if (a->failures >= g->limit && a->locked_until <= now) {
		a->locked_until = now + g->window_ms;
		v->locked_now = true;
	}
	v->addr_failures = a->failures;
	if (user && user[0]) {
		struct guard_entry *u = guard_take(g, &g->users, ukey, now);
		u->failures++;
		u->seen_ms = now;
		v->user_failures = u->failures;
	}
	pthread_mutex_unlock(&g->lock);
	uint64_t d = (uint64_t)v->addr_failures * GUARD_DELAY_STEP_MS;
	v->delay_ms = (unsigned)MIN(d, (uint64_t)GUARD_DELAY_MAX_MS);
	if (v->user_failures > g->limit)
		v->delay_ms = GUARD_DELAY_MAX_MS;
}

/* smtp_guard_success - a right password from sa: forget the address's failures. */
void smtp_guard_success(struct smtp_guard *g, const struct sockaddr_storage *sa, int64_t now)
{
	uint8_t key[16];
	guard_addr_key(sa, key);
	pthread_mutex_lock(&g->lock);
	struct guard_entry *e = guard_find(g, &g->addrs, key, now);
	if (e && e->locked_until <= now)
		e->used = false;
	pthread_mutex_unlock(&g->lock);
}
