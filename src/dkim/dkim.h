/*
 * dkim.h - DKIM signing (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463):
 * canonicalisation, the body hash, the DKIM-Signature header field, key files and
 * their DNS records.
 *
 * Invariants: the canonicalisers are pure byte machines (no I/O, no allocation)
 * whose output does not depend on how their input is split. Lines end at CRLF
 * only; a bare CR or LF is an ordinary byte (the server refuses such messages
 * anyway, docs/decisions.md). The signer never changes the message: it returns
 * header fields for the caller to prepend to exactly the bytes it was fed. Only
 * the header section (at most DKIM_HEADER_MAX) is kept; the body is hashed as it
 * streams by. Signatures are c=relaxed/relaxed and never carry l=.
 *
 * Ownership: a struct dkim_key and its strings are borrowed by the calls that
 * take them; a signer copies what it needs (and takes a reference on the
 * EVP_PKEY). Returned strings belong to the caller (free()).
 *
 * Failure model: RC_INVALID for bad arguments, keys or key files; RC_LIMIT when
 * the header section exceeds DKIM_HEADER_MAX or h= would list more than
 * DKIM_SIGN_FIELDS_MAX fields; RC_IO / RC_EXISTS / RC_NOTFOUND for key files;
 * RC_TEMPFAIL when OpenSSL fails while signing (logged). Allocation aborts.
 */
#ifndef RELEVO_DKIM_H
#define RELEVO_DKIM_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define DKIM_HASH_LEN 32			/* SHA-256 */
#define DKIM_FOLD_COLS 78			/* RFC 5322 2.1.1 SHOULD */
#define DKIM_HEADER_MAX (1024 * 1024)		/* header section kept by a signer (the server
						 * itself refuses more than SMTP_HEADER_MAX) */
#define DKIM_SIGN_FIELDS_MAX 100		/* names in one h= */
#define DKIM_DOMAIN_MAX 253			/* d=, and the domain of i= */
#define DKIM_SELECTOR_MAX 253			/* s= (dot-separated labels) */
#define DKIM_IDENTITY_MAX 320			/* i= */
#define DKIM_FIELD_NAME_MAX 128			/* a name given in dkim_sign_opts.headers */
#define DKIM_RSA_BITS 2048			/* generated keys (RFC 8301 3.2 SHOULD) */
#define DKIM_RSA_MIN_BITS 1024			/* smallest key we sign with (RFC 8301 3.2 MUST) */
#define DKIM_TXT_STRING_MAX 255			/* one character-string in a TXT record */
#define DKIM_KEY_FILE_MAX (64 * 1024)
#define DKIM_CANON_CHUNK 512			/* output batch of a canonicaliser */

enum dkim_alg { DKIM_ALG_RSA_SHA256, DKIM_ALG_ED25519_SHA256, DKIM_ALG__COUNT };
/* dkim_alg_name - the a= value ("rsa-sha256", "ed25519-sha256"). */
const char *dkim_alg_name(enum dkim_alg alg);
/* dkim_alg_parse - accept "rsa", "rsa-sha256", "ed25519", "ed25519-sha256" (any case). */
bool dkim_alg_parse(const char *s, enum dkim_alg *out);

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED, DKIM_CANON__COUNT };
/* dkim_canon_name - "simple" or "relaxed". */
const char *dkim_canon_name(enum dkim_canon canon);

/* Receives canonical bytes, in pieces of any size. */
typedef void (*dkim_out_fn)(void *arg, const char *data, size_t len);

/*
 * Body canonicalisation (RFC 6376 3.4.3 simple, 3.4.4 relaxed), incremental. Fed
 * the body (the bytes after the empty line that ends the header section) in
 * pieces of any size; out sees the canonical body. Relaxed: WSP at the end of a
 * line is dropped, other WSP runs become one SP, trailing empty lines are
 * dropped, a non-empty body ends with exactly one CRLF, an empty one is empty.
 * Simple: trailing empty lines are dropped, the body ends with one CRLF (an empty
 * body is CRLF). A last line without CRLF is a line: it gets one (and, relaxed,
 * loses its trailing WSP, as it will when sent over SMTP).
 * Not movable once initialised (out's state may point into it).
 */
struct dkim_body_canon {
	enum dkim_canon canon;
	dkim_out_fn out;
	void *arg;
	uint64_t crlfs;		/* line ends held back: dropped if only empty lines follow */
	bool cr;		/* the last byte was a CR that may start a CRLF */
	bool wsp;		/* relaxed: a WSP run is pending inside the line */
	bool any;		/* the canonical body is not empty */
	size_t blen;
	char buf[DKIM_CANON_CHUNK];	/* output batched for out */
};
void dkim_body_canon_init(struct dkim_body_canon *c, enum dkim_canon canon, dkim_out_fn out,
			  void *arg);
void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len);
/* dkim_body_canon_finish - emit what was held back; the canonicaliser is then spent. */
void dkim_body_canon_finish(struct dkim_body_canon *c);

/*
 * Header field canonicalisation (RFC 6376 3.4.1 simple, 3.4.2 relaxed) of ONE
 * field, incremental. Fed the field as it appears in the message without its
 * final CRLF ("Subject: a\r\n\tb"). Relaxed: the name is lower-cased, every CRLF
 * is removed (unfolding), WSP runs become one SP, WSP around the colon and at the
 * end of the value is deleted. Simple: the bytes unchanged. finish(crlf) ends the
 * field with CRLF, or not (the DKIM-Signature field itself is hashed without it).
 */
struct dkim_hdr_canon {
	enum dkim_canon canon;
	dkim_out_fn out;
	void *arg;
	bool value;		/* past the colon */
	bool started;		/* a non-WSP byte of the current part (name or value) seen */
	bool cr;
	bool wsp;
	size_t blen;
	char buf[DKIM_CANON_CHUNK];
};
void dkim_hdr_canon_init(struct dkim_hdr_canon *c, enum dkim_canon canon, dkim_out_fn out,
			 void *arg);
void dkim_hdr_canon_feed(struct dkim_hdr_canon *c, const void *data, size_t len);
void dkim_hdr_canon_finish(struct dkim_hdr_canon *c, bool crlf);

/* The SHA-256 body hash (bh=) of a body fed in pieces. Not movable once initialised. */
struct dkim_bodyhash {
	struct dkim_body_canon canon;
	EVP_MD_CTX *md;		/* owned */
	uint64_t len;		/* canonical bytes hashed so far */
	bool failed;		/* OpenSSL refused an update */
};
enum rc dkim_bodyhash_init(struct dkim_bodyhash *h, enum dkim_canon canon);
void dkim_bodyhash_feed(struct dkim_bodyhash *h, const void *data, size_t len);
/* dkim_bodyhash_final - the hash of everything fed; once. */
enum rc dkim_bodyhash_final(struct dkim_bodyhash *h, unsigned char out[DKIM_HASH_LEN]);
void dkim_bodyhash_fini(struct dkim_bodyhash *h);

/* One signing key: one DKIM-Signature per key. */
struct dkim_key {
	enum dkim_alg alg;	/* must match pkey's type */
	const char *domain;	/* d= */
	const char *selector;	/* s= */
	const char *identity;	/* i= (AUID), NULL for none; its domain must be d= or below */
	EVP_PKEY *pkey;		/* private key */
};

/* Options of a signature; a NULL opts means all defaults. */
struct dkim_sign_opts {
	int64_t time;		/* t= in unix seconds; 0: now */
	/*
	 * h= names in this order (bottom-up selection, RFC 6376 5.4.2; a name listed
	 * more often than it occurs signs its absence); must include "from". NULL:
	 * relevo's list, each name as often as it occurs and From once more.
	 */
	const char *const *headers;
	size_t nheaders;
	bool query_tag;		/* also write q=dns/txt (the default anyway; RFC 6376 3.5) */
};

/*
 * A signer: fed the whole message (header section, empty line, body; CRLF line
 * ends) in pieces, it returns one DKIM-Signature field per key. The body is
 * hashed as it arrives; only the header section is kept.
 */
struct dkim_signer;
/* dkim_signer_new - check and copy the keys; RC_INVALID for a bad key, name or option. */
enum rc dkim_signer_new(const struct dkim_key *keys, size_t nkeys,
			const struct dkim_sign_opts *opts, struct dkim_signer **out);
/* dkim_signer_feed - the next piece of the message; RC_LIMIT (sticky) for an
 * oversized header section. */
enum rc dkim_signer_feed(struct dkim_signer *s, const void *data, size_t len);
/* dkim_signer_finish - the signature fields, folded at DKIM_FOLD_COLS, each
 * ending in CRLF, NUL-terminated, for the caller to prepend (*out is the
 * caller's). Once. */
enum rc dkim_signer_finish(struct dkim_signer *s, char **out);
void dkim_signer_free(struct dkim_signer *s);
/* dkim_sign - sign a whole message in memory: new, feed, finish, free. */
enum rc dkim_sign(const struct dkim_key *keys, size_t nkeys, const char *msg, size_t len,
		  const struct dkim_sign_opts *opts, char **out);

/* Keys. */
/* dkim_key_generate - a new RSA-2048 or Ed25519 private key (*out is the caller's). */
enum rc dkim_key_generate(enum dkim_alg alg, EVP_PKEY **out);
/* dkim_key_write - store a private key as PKCS#8 PEM in a new file of mode 0600,
 * durably; RC_EXISTS if path exists (never overwritten). */
enum rc dkim_key_write(const char *path, EVP_PKEY *pkey);
/* dkim_key_load - read a PEM private key (PKCS#8, or PKCS#1 for RSA; never an
 * encrypted one) and tell what it signs with. */
enum rc dkim_key_load(const char *path, EVP_PKEY **out, enum dkim_alg *alg);
/* dkim_key_alg - what a key signs with; RC_INVALID for other types and small RSA. */
enum rc dkim_key_alg(EVP_PKEY *pkey, enum dkim_alg *out);
/* dkim_key_txt - the TXT record value of the public key ("v=DKIM1; k=...; p=..."). */
enum rc dkim_key_txt(EVP_PKEY *pkey, char **out);
/* dkim_txt_split - a TXT value as zone-file quoted strings of at most 255 bytes
 * each, separated by one space. */
char *dkim_txt_split(const char *txt);

/* ---- the signing-key cache (dkim_cache.c) -------------------------------- */

#define DKIM_CACHE_KEYS_MAX 4

/* The active keys of one domain, as a loader hands them over (references owned),
 * and what the loader found besides. */
struct dkim_loaded_keys {
	size_t n;
	char selector[DKIM_CACHE_KEYS_MAX][DKIM_SELECTOR_MAX + 1];
	enum dkim_alg alg[DKIM_CACHE_KEYS_MAX];
	EVP_PKEY *pkey[DKIM_CACHE_KEYS_MAX];
	bool registered;	/* the domain has keys in any state (it was added) */
	bool failed;		/* an active key could not be loaded (logged by the
				 * loader with its path and reason); retried soon */
	int error;		/* errno of that failure, 0 if it was not a file error
				 * (a file that is not a usable private key) */
};
/* dkim_loaded_keys_clear - drop the references and the status. */
void dkim_loaded_keys_clear(struct dkim_loaded_keys *k);

/* A key source: fill out (zeroed on entry) with domain's active keys. Called on
 * the cache's own thread for dkim_cache_lookup (on the caller's for
 * dkim_cache_sign), never with the cache's lock held. */
typedef void (*dkim_cache_loader)(void *ctx, const char *domain, struct dkim_loaded_keys *out);

/* Why a domain could not be signed, for the reply and the log. */
struct dkim_sign_status {
	bool registered;	/* the domain has keys (any state): RC_NOTFOUND then
				 * means none is active yet */
	bool unreadable;	/* an active key could not be loaded */
	int error;		/* its errno (0: not a file error) */
};

struct evbuffer;
struct event_base;

/* A domain's active keys as one load found them: immutable, reference-counted,
 * usable on any thread. */
struct dkim_keyset;
struct dkim_keyset *dkim_keyset_ref(struct dkim_keyset *ks);
/* dkim_keyset_unref - drop a reference; NULL is a no-op. */
void dkim_keyset_unref(struct dkim_keyset *ks);
/* dkim_keyset_status - registered / unreadable / errno, as dkim_keyset_sign reports. */
void dkim_keyset_status(const struct dkim_keyset *ks, struct dkim_sign_status *st);
/* dkim_keyset_sign - the DKIM-Signature fields for body (a whole message) signed
 * as domain with each key of ks, for the caller to prepend (*out is the
 * caller's). RC_NOTFOUND: no active key; RC_IO: there are, but none could be
 * read (status says why; status may be NULL). CPU only, no I/O. */
enum rc dkim_keyset_sign(const struct dkim_keyset *ks, const char *domain,
			 const struct evbuffer *body, char **out, struct dkim_sign_status *status);

struct dkim_cache;
/* dkim_cache_new - a cache whose entries live DKIM_CACHE_TTL_MS (60 s), are
 * retried after 1 s when a key could not be read, and are all reloaded after
 * dkim_cache_changed(). At most 4096 domains (least recently used dropped; about
 * 6 MiB for domains without keys, see dkim_cache.c). Loads run on a thread of
 * its own. Thread-safe. */
struct dkim_cache *dkim_cache_new(dkim_cache_loader load, void *ctx);
/* dkim_cache_new_max - the same with at most max domains (0: 4096). */
struct dkim_cache *dkim_cache_new_max(dkim_cache_loader load, void *ctx, size_t max);
/* dkim_cache_free - once every lookup completed or was cancelled (loads in
 * flight finish first). */
void dkim_cache_free(struct dkim_cache *c);

/*
 * Asynchronous lookup, for event loops. The callback gets domain's key set,
 * borrowed for the call (dkim_keyset_ref to keep it), and signs with
 * dkim_keyset_sign. On a hit (a fresh entry) it runs before dkim_cache_lookup
 * returns, which then returns NULL. On a miss the keys are loaded on the
 * cache's thread and the callback runs later on base (the caller's loop, which
 * must be the current thread's); the returned handle cancels it until then.
 * Concurrent lookups of one domain share one load. A lookup never blocks on a
 * load, a file or SQLite (only on the cache's lock, held for pointer updates).
 */
struct dkim_lookup;
typedef void (*dkim_lookup_fn)(void *arg, struct dkim_keyset *ks);
struct dkim_lookup *dkim_cache_lookup(struct dkim_cache *c, struct event_base *base,
				      const char *domain, dkim_lookup_fn cb, void *arg);
/* dkim_lookup_cancel - cb will not run (call it on base's thread, before cb ran,
 * e.g. when the session that asked is freed); NULL is a no-op. */
void dkim_lookup_cancel(struct dkim_lookup *l);

/* dkim_cache_sign - synchronous: sign body as domain with every active key,
 * loading them on the calling thread when the entry is not fresh (SQLite and
 * PEM reads: not for an event loop; the CLI and callers not yet converted).
 * Same answers as dkim_keyset_sign. */
enum rc dkim_cache_sign(struct dkim_cache *c, const char *domain, const struct evbuffer *body,
			char **out, struct dkim_sign_status *status);
/* dkim_cache_changed - keys were added, activated or removed: every cache of
 * the process reloads each domain on its next use. Thread-safe. */
void dkim_cache_changed(void);

#endif
