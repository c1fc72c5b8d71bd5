/*
 * store.h - relevo's persistent state other than the spool: users and their
 * sending domains, DKIM keys, events and statistics, suppression lists, API keys
 * and webhooks.
 *
 * One interface, several backends: SQLite (WAL, data_dir/relevo.db) is the
 * embedded default; PostgreSQL comes later behind the same functions.
 * Threads: a struct store may be used from any thread; calls are serialised by an
 * internal mutex. Calls block (disk I/O): event loops call them from worker
 * threads only. The hot point lookups (store_suppression_check, store_apikey_get)
 * use a second, read-only connection with its own mutex: they see the last
 * commit and never wait behind a write transaction. Callbacks of the _list,
 * _query and _stats functions run with the mutex held: they must not call back
 * into the same store; what they get is valid during the call only.
 * Ownership: out-parameters are new heap objects the caller frees with the
 * matching _free.
 */
#ifndef RELEVO_STORE_H
#define RELEVO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct store;

/* store_open - open (creating and migrating) the store under data_dir. */
enum rc store_open(const char *data_dir, struct store **out);
void store_close(struct store *st);

struct store_user {
	char *name;
	char *pwhash;		/* argon2id (libsodium) or crypt(3) string */
	int64_t created;	/* unix seconds */
	bool sandbox;		/* delivery.mode sandbox for this user's mail only */
	size_t ndomains;
	char **domains;		/* lower-cased */
};
void store_user_free(struct store_user *u);

/* store_user_add - RC_EXISTS if the name is taken. */
enum rc store_user_add(struct store *st, const char *name, const char *pwhash,
		       const char *const *domains, size_t ndomains);
/* store_user_get - RC_NOTFOUND if there is no such user. */
enum rc store_user_get(struct store *st, const char *name, struct store_user **out);
enum rc store_user_del(struct store *st, const char *name);
enum rc store_user_set_password(struct store *st, const char *name, const char *pwhash);
/* store_user_set_sandbox - per-user sandbox delivery; RC_NOTFOUND if no such user. */
enum rc store_user_set_sandbox(struct store *st, const char *name, bool on);
/* store_user_list - fn for each user in name order; stop when fn returns false. */
enum rc store_user_list(struct store *st,
			bool (*fn)(void *arg, const struct store_user *u), void *arg);

/* ---- sending domains and DKIM keys ---------------------------------------- */

/* A key's life (issue 11): rotate makes it pending (published by `domain
 * records`, not signing); activation (DNS shows it, or `domain activate`) makes
 * it active and the active key of its algorithm retiring (still published, no
 * longer signing) until retire-key deletes it, dkim.retire_after later. */
enum store_dkim_state {
	STORE_DKIM_PENDING,
	STORE_DKIM_ACTIVE,
	STORE_DKIM_RETIRING,
	STORE_DKIM__COUNT
};
/* store_dkim_state_name - "pending", "active", "retiring". */
const char *store_dkim_state_name(enum store_dkim_state s);

struct store_dkim_key {
	char *domain;		/* lower case */
	char *selector;
	char *alg;		/* "rsa-sha256" or "ed25519-sha256" */
	char *path;		/* the private key file (PEM, mode 0600) */
	char *public_txt;	/* the DNS TXT value: "v=DKIM1; k=...; p=..." */
	int64_t created;	/* unix seconds */
	enum store_dkim_state state;
	int64_t state_since;	/* unix seconds: when it entered state */
};
void store_dkim_keys_free(struct store_dkim_key *keys, size_t n);

/* store_domain_add - register a sending domain; RC_EXISTS if it is. */
enum rc store_domain_add(struct store *st, const char *domain);
/* store_domain_del - forget a domain and its keys' rows (not the files). */
enum rc store_domain_del(struct store *st, const char *domain);
/* store_domain_exists - RC_OK, RC_NOTFOUND, or an error. */
enum rc store_domain_exists(struct store *st, const char *domain);
/* store_domain_list - fn(arg, name, created) per domain in name order. */
enum rc store_domain_list(struct store *st,
			  bool (*fn)(void *arg, const char *name, int64_t created), void *arg);
/* store_domain_users - fn(arg, name) for each account that may send as domain,
 * in name order. */
enum rc store_domain_users(struct store *st, const char *domain,
			   bool (*fn)(void *arg, const char *user), void *arg);
/* store_dkim_key_add - a new key row (state_since = created). */
enum rc store_dkim_key_add(struct store *st, const struct store_dkim_key *k);
/* store_dkim_keys - every key of domain: active, then pending, then retiring,
 * newest first in each. */
enum rc store_dkim_keys(struct store *st, const char *domain, struct store_dkim_key **out,
			size_t *n);
/* store_dkim_keys_pending - up to max pending keys of every domain, oldest first. */
enum rc store_dkim_keys_pending(struct store *st, size_t max, struct store_dkim_key **out,
				size_t *n);
/* store_dkim_key_activate - in one statement: domain's pending key selector
 * becomes active and the active keys of its algorithm retiring, both since now
 * (unix seconds). RC_NOTFOUND if selector is not a pending key of domain. */
enum rc store_dkim_key_activate(struct store *st, const char *domain, const char *selector,
				int64_t now);
/* store_dkim_key_del - remove one key row; RC_NOTFOUND if absent. */
enum rc store_dkim_key_del(struct store *st, const char *domain, const char *selector);

/* ---- events (issue 7) ------------------------------------------------------
 * The event history: struct evlog_event rows (core.h). Written in batches by the
 * event stream's sink thread; read by the HTTP API. */

/* store_events_add - insert n events in one transaction; sets each ev->seq
 * (increasing, never reused). RC_INVALID (nothing stored) for a bad type. */
enum rc store_events_add(struct store *st, struct evlog_event *const *evs, size_t n);

struct store_event_filter {
	const char *user;	/* only this account's events; NULL: every account */
	uint64_t msgid;		/* 0: any */
	const char *recipient;	/* exact, case-insensitive; NULL: any */
	int type;		/* an enum evlog_type, or -1: any */
	int64_t since, until;	/* unix ms, inclusive / exclusive; 0: open */
	int64_t cursor;		/* pagination: only seq > cursor (ascending) or seq <
				 * cursor (descending); 0: from the start */
	bool descending;	/* newest first */
	size_t limit;		/* at most this many (callers cap it); 0: 100 */
};
/* store_events_query - fn(arg, ev) per matching event in seq order (ev is valid
 * during the call only); stops early when fn returns false. The next page: the
 * same filter with cursor = the last seq seen. RC_INVALID for a bad type or
 * user name. */
enum rc store_events_query(struct store *st, const struct store_event_filter *f,
			   bool (*fn)(void *arg, const struct evlog_event *ev), void *arg);

enum store_stats_group {
	STORE_STATS_TOTAL,	/* one row, key "total" */
	STORE_STATS_DAY,	/* key "2026-11-26" (UTC) */
	STORE_STATS_HOUR,	/* key "2026-11-26T13" (UTC) */
	STORE_STATS_DOMAIN,	/* key: the recipient's domain, lower case ("" if none) */
};
/* store_events_stats - counts per event type of user's events (NULL: all) in
 * [since, until) (0: open), grouped; fn(arg, key, counts) per group in key order. */
enum rc store_events_stats(struct store *st, const char *user, int64_t since, int64_t until,
			   enum store_stats_group g,
			   bool (*fn)(void *arg, const char *key,
				      const uint64_t counts[EVLOG__COUNT]),
			   void *arg);
/* store_events_prune - delete events older than before (unix ms), in chunks of
 * 10,000 rows per transaction; *deleted may be NULL. */
enum rc store_events_prune(struct store *st, int64_t before, uint64_t *deleted);

/* ---- suppression list ------------------------------------------------------
 * Per account; addresses are compared lower-cased. */
struct store_suppression {
	char *address;		/* lower case */
	char *reason;		/* "hard bounce: 550 5.1.1 ...", "manual", ... */
	int64_t created;	/* unix ms */
};
/* store_suppression_add - RC_OK if added, RC_EXISTS if it was there (unchanged),
 * RC_NOTFOUND if there is no such user. reason NULL: "". */
enum rc store_suppression_add(struct store *st, const char *user, const char *address,
			      const char *reason);
/* store_suppression_del - RC_NOTFOUND if it was not there. */
enum rc store_suppression_del(struct store *st, const char *user, const char *address);
/* store_suppression_check - RC_OK if suppressed, RC_NOTFOUND if not, or an error.
 * Hot path (every recipient): a point lookup on a separate read connection, so
 * it does not wait behind the event writer's transactions. user NULL (mail
 * without an account) is always RC_NOTFOUND. */
enum rc store_suppression_check(struct store *st, const char *user, const char *address);
/* store_suppression_check_batch - out[i] (n entries) = whether user suppresses
 * addrs[i], in one hold of the read connection (the intake's one lookup per
 * message, off the loops). RC_OK, or a store error (then out is all false).
 * user NULL: nothing is suppressed. */
enum rc store_suppression_check_batch(struct store *st, const char *user,
				      const char *const *addrs, size_t n, bool *out);
/* store_suppression_get - the entry of address: its reason (a new string, to
 * free) and creation time (unix ms); RC_NOTFOUND if it is not on the list. */
enum rc store_suppression_get(struct store *st, const char *user, const char *address,
			      char **reason, int64_t *created);
/* store_suppression_list - in address order, only addresses > after (NULL: from
 * the start), at most limit (0: 100). */
enum rc store_suppression_list(struct store *st, const char *user, const char *after,
			       size_t limit,
			       bool (*fn)(void *arg, const struct store_suppression *s),
			       void *arg);

/* ---- API keys --------------------------------------------------------------
 * A key is "rlv_" + id + "_" + secret (policy_apikey_*); the store keeps only
 * the id (public, for lookup) and the SHA-256 of the whole key. */
#define STORE_APIKEY_HASH_LEN 32
struct store_apikey {
	char *id;
	char *user;
	char *name;		/* "" if none */
	int64_t created;	/* unix ms */
	int64_t last_used;	/* unix ms, 0 = never (callers touch at most once a minute) */
	unsigned char hash[STORE_APIKEY_HASH_LEN];
};
void store_apikey_free(struct store_apikey *k);
/* store_apikey_add - RC_EXISTS if the id is taken, RC_NOTFOUND if no such user. */
enum rc store_apikey_add(struct store *st, const char *id, const char *user, const char *name,
			 const unsigned char hash[STORE_APIKEY_HASH_LEN]);
/* store_apikey_get - by id (read connection); RC_NOTFOUND if none. */
enum rc store_apikey_get(struct store *st, const char *id, struct store_apikey **out);
/* store_apikey_touch - record a use (last_used = now); RC_NOTFOUND if no such key. */
enum rc store_apikey_touch(struct store *st, const char *id, int64_t now);
/* store_apikey_del - revoke; RC_NOTFOUND if none. */
enum rc store_apikey_del(struct store *st, const char *id);
/* store_apikey_list - user's keys (NULL: all) by creation; hash is zeroed. */
enum rc store_apikey_list(struct store *st, const char *user,
			  bool (*fn)(void *arg, const struct store_apikey *k), void *arg);
/* Deleting a user (store_user_del) also deletes its keys, suppressions and webhooks. */

/* ---- webhooks ----------------------------------------------------------------
 * Per-account webhooks (the API's); those of the config file are not stored.
 * events: comma-separated evlog type names, "" for all. */
struct store_webhook {
	int64_t id;
	char *user;
	char *url;
	char *secret;
	char *events;
	int64_t created;	/* unix ms */
};
/* store_webhook_add - *id (may be NULL) = the new id (never reused); events and
 * secret NULL: ""; RC_NOTFOUND if there is no such user. */
enum rc store_webhook_add(struct store *st, const char *user, const char *url,
			  const char *secret, const char *events, int64_t *id);
/* store_webhook_del - RC_NOTFOUND unless user owns webhook id. user NULL
 * deletes whoever's it is: for the operator's CLI, never for the API. */
enum rc store_webhook_del(struct store *st, const char *user, int64_t id);
/* store_webhook_list - user's webhooks (NULL: every account's) by id. */
enum rc store_webhook_list(struct store *st, const char *user,
			   bool (*fn)(void *arg, const struct store_webhook *w), void *arg);

/* The durable delivery queue of webhook posts: one row per (event, endpoint). */
struct store_webhook_job {
	int64_t id;
	char *url;
	char *secret;
	char *body;		/* the JSON document to POST */
	uint32_t attempts;
	int64_t next_attempt;	/* unix ms */
	int64_t created;	/* unix ms */
	bool operator;		/* for an endpoint of the configuration, not of an
				 * account: exempt from the private-address check */
};
void store_webhook_jobs_free(struct store_webhook_job *jobs, size_t n);
/* store_webhook_jobs_add - n new jobs in one transaction: due at next_attempt,
 * 0 meaning now; created 0 means now; their ids are ignored (the store's). */
enum rc store_webhook_jobs_add(struct store *st, const struct store_webhook_job *jobs,
			       size_t n);
/* store_webhook_jobs_due - up to max (0: 100) jobs with next_attempt <= now, by
 * next_attempt then id, as a new array (*n may be 0) the caller frees with
 * store_webhook_jobs_free; excluding ids in the caller's in-flight set is the
 * caller's business. */
enum rc store_webhook_jobs_due(struct store *st, int64_t now, size_t max,
			       struct store_webhook_job **out, size_t *n);
/* store_webhook_job_next - the earliest next_attempt of any job, RC_NOTFOUND if none. */
enum rc store_webhook_job_next(struct store *st, int64_t *when);
/* store_webhook_job_done - delete a job (delivered, or given up); RC_NOTFOUND if gone. */
enum rc store_webhook_job_done(struct store *st, int64_t id);
/* store_webhook_job_retry - reschedule a job after a failed attempt; RC_NOTFOUND if gone. */
enum rc store_webhook_job_retry(struct store *st, int64_t id, uint32_t attempts,
				int64_t next_attempt);

#endif
