/*
 * policy.c - credentials and sender domains: password hashing and verification,
 * authentication against the store, domain syntax and domain ownership.
 *
 * Hashes: new ones are argon2id from libsodium at the INTERACTIVE limits (about
 * 64 MiB and tens of milliseconds per check). Imported crypt(3) hashes ("$6$",
 * "$5$", "$2b$", "$y$", ...) are verified by libxcrypt; only the modular "$id$"
 * form is accepted, so traditional DES crypt (which silently ignores everything
 * after the eighth character) never authenticates anyone.
 *
 * Timing: an unknown user is verified against a fixed argon2id hash with the same
 * parameters as new hashes, so that the answer takes as long as for a real user
 * and does not reveal whether the name exists. crypt(3) results are compared with
 * sodium_memcmp (constant time).
 *
 * Threads: every function is thread-safe; sodium_init() runs once under
 * pthread_once. Hashing and verification block: call them from worker threads.
 */
#include "policy/policy.h"

#include <crypt.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"


/* Verified when the user does not exist: same algorithm and limits as
 * policy_password_hash() produces; the password behind it was random and thrown
 * away. Sized as libsodium's prototypes declare their hash arguments. */
static const char policy_dummy_hash[crypto_pwhash_STRBYTES] =
    "$argon2id$v=19$m=65536,t=2,p=1$6zbAS9ZbAJ0bfMZtyE8cTw$"
    "Khc2UkAiO77YSHbeVf8kMsb0E23rj4M8zJic1d/CtWM";

static pthread_once_t policy_once = PTHREAD_ONCE_INIT;

static void policy_init_once(void)
{
	if (sodium_init() < 0)
		fatal("event=sodium_init_failed");
	if (crypto_pwhash_str_needs_rehash(policy_dummy_hash, crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                                   crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		log_warn("event=policy_dummy_hash_stale msg=\"unknown-user timing differs from "
		         "new hashes\"");
}

static void policy_init(void)
{
	pthread_once(&policy_once, policy_init_once);
}

/* policy_password_hash - a new argon2id hash of pass (RC_INVALID if empty). */
enum rc policy_password_hash(const char *pass, char **out)
{
	*out = NULL;
	if (pass == NULL || *pass == '\0')
		return RC_INVALID;
	policy_init();
	char buf[crypto_pwhash_STRBYTES];
	if (crypto_pwhash_str(buf, pass, strlen(pass), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return RC_NOMEM;
	*out = xstrdup(buf);
	sodium_memzero(buf, sizeof buf);
	return RC_OK;
}

static bool policy_is_argon2(const char *hash)
{
	return strncmp(hash, "$argon2id$", 10) == 0 || strncmp(hash, "$argon2i$", 9) == 0;
}

/* Verify with libxcrypt; its crypt_data is 32 KiB, so it lives on the heap. */
static bool policy_crypt_verify(const char *hash, const char *pass)
{
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *res = crypt_rn(pass, hash, cd, (int)sizeof *cd);
	size_t hlen = strlen(hash);
	bool ok = res != NULL && res[0] == '$' && strlen(res) == hlen &&
	          sodium_memcmp(res, hash, hlen) == 0;
	sodium_memzero(cd, sizeof *cd);
	free(cd);
	return ok;
}

/* policy_password_verify - does pass match hash (argon2id/argon2i or crypt(3))? */
bool policy_password_verify(const char *hash, const char *pass)
{
	if (hash == NULL || pass == NULL || hash[0] != '$')
		return false;
	policy_init();
	if (policy_is_argon2(hash))
		return crypto_pwhash_str_verify(hash, pass, strlen(pass)) == 0;
	return policy_crypt_verify(hash, pass);
}

/* policy_auth_user - look the user up and verify the password, in the same time
 * whether or not the user exists. */
enum rc policy_auth_user(struct store *st, const char *name, const char *pass,
                         struct store_user **out)
{
	*out = NULL;
	if (pass == NULL)
		pass = "";
	struct store_user *u = NULL;
	enum rc rc = name ? store_user_get(st, name, &u) : RC_INVALID;
	if (rc == RC_NOTFOUND || rc == RC_INVALID) {
		/* Burn the same time as a real check; the result does not matter. */
		(void)policy_password_verify(policy_dummy_hash, pass);
		return RC_PERMFAIL;
	}
	if (rc != RC_OK)
		return RC_TEMPFAIL;
	if (!policy_password_verify(u->pwhash, pass)) {
		store_user_free(u);
		return RC_PERMFAIL;
	}
	*out = u;
	return RC_OK;
}

/* policy_domain_valid - a sender domain is an RFC 5321 Domain (str_is_domain):
 * LDH labels, at most 253 octets, two labels or more, no trailing dot, the last
 * label not all digits (so a dotted IPv4 address is not taken for a domain). */
bool policy_domain_valid(const char *d)
{
	return str_is_domain(d);
}

/*
 * policy_user_owns - exact, case-insensitive match against u's domains.
 * Subdomains are deliberately not implied: owning example.com does not let a user
 * send as mail.example.com (an operator adds that domain explicitly), because the
 * subdomain may be delegated to someone else, and a DKIM key or SPF record set up
 * for the parent says nothing about it. No suffix matching either, so
 * "evil-example.com" never matches "example.com".
 */
bool policy_user_owns(const struct store_user *u, const char *domain)
{
	if (u == NULL || domain == NULL || *domain == '\0')
		return false;
	for (size_t i = 0; i < u->ndomains; i++)
		if (str_ieq(u->domains[i], domain))
			return true;
	return false;
}
