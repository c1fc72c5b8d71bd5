/*
 * http_health.c - GET /v1/health: is this daemon able to take and deliver mail
 * right now? No API key (a load balancer or a monitor asks it), and nothing
 * about any account in the answer.
 *
 * Each check is real, not a flag: the spool directory takes a new file (create,
 * write, remove: a read-only or full file system, or an immutable directory,
 * fails it), the store answers a query, and the delivery loop has beaten within
 * HEALTH_DELIVERY_STALL_MS (it beats every 5 s from a timer on its own loop; a
 * loop stuck in a callback stops beating). 200 {"status":"ok",...} when all
 * pass, else 503 with "status":"fail" and one line per problem.
 *
 * The spool and store checks do I/O, and the endpoint needs no key: their
 * results are kept for HEALTH_CACHE_MS, so that a flood of requests costs at
 * most one probe a second (a monitor asking every few seconds sees fresh
 * results). The cache is the API thread's (every request runs there).
 */
#include "http/http_int.h"

#include <string.h>

#include "spool/spool.h"
#include "store/store.h"

#define HEALTH_DELIVERY_STALL_MS 60000
#define HEALTH_CACHE_MS 1000

/* The last spool and store results (API thread only). */
static struct {
	int64_t at;		/* time_mono_ms of the probe; 0: none yet */
	bool spool_failed, store_failed;
	char spool[256], store[128];
} health_cache;

/* health_check_spool - NULL, or what is wrong (in buf). */
static const char *health_check_spool(struct http_server *h, char *buf, size_t bufsz)
{
	int err = 0;
	if (spool_probe_write(h->spool, &err) == RC_OK)
		return NULL;
	snprintf(buf, bufsz, "spool: not writable: %s", strerror(err));
	return buf;
}

static const char *health_check_store(struct http_server *h, char *buf, size_t bufsz)
{
	/* A name that cannot be a domain: the answer is "not found" when the
	 * store works. */
	enum rc rc = store_domain_exists(h->store, "health-check.invalid");
	if (rc == RC_OK || rc == RC_NOTFOUND)
		return NULL;
	snprintf(buf, bufsz, "store: unreachable (%s)", rc_name(rc));
	return buf;
}

static const char *health_check_delivery(char *buf, size_t bufsz)
{
	int64_t age = health_beat_age_ms(HEALTH_MTA);
	if (age >= 0 && age <= HEALTH_DELIVERY_STALL_MS)
		return NULL;
	if (age < 0)
		snprintf(buf, bufsz, "delivery: the delivery loop is not running");
	else
		snprintf(buf, bufsz,
		         "delivery: the delivery loop is stalled (last seen %lld s ago)",
		         (long long)(age / 1000));
	return buf;
}

/* health_probe - run the spool and store checks unless the last run is recent;
 * true when they ran. */
static bool health_probe(struct http_server *h)
{
	int64_t now = time_mono_ms();
	if (health_cache.at != 0 && now - health_cache.at < HEALTH_CACHE_MS)
		return false;
	health_cache.at = now;
	health_cache.spool_failed =
	    health_check_spool(h, health_cache.spool, sizeof health_cache.spool) != NULL;
	health_cache.store_failed =
	    health_check_store(h, health_cache.store, sizeof health_cache.store) != NULL;
	return true;
}

/* http_api_health - GET /v1/health. */
void http_api_health(struct http_call *c)
{
	char delivery[128];
	bool fresh = health_probe(c->h); /* log problems once per probe, not per request */
	const struct {
		const char *name;
		const char *problem;
	} checks[] = {
	    {"spool", health_cache.spool_failed ? health_cache.spool : NULL},
	    {"store", health_cache.store_failed ? health_cache.store : NULL},
	    {"delivery", health_check_delivery(delivery, sizeof delivery)},
	};
	json_t *js = json_object(), *problems = json_array();
	bool ok = true;
	for (size_t i = 0; i < ARRAY_LEN(checks); i++) {
		json_object_set_new(js, checks[i].name,
		                    json_string(checks[i].problem ? "fail" : "ok"));
		if (checks[i].problem) {
			ok = false;
			json_array_append_new(problems, json_string(checks[i].problem));
			if (fresh)
				log_warn("event=health_failed problem=\"%s\"", checks[i].problem);
		}
	}
	int64_t up = (time_now_ms() - health_started()) / 1000;
	json_t *body = json_pack("{s:s,s:s,s:I,s:o,s:o}", "status", ok ? "ok" : "fail", "version",
	                         RELEVO_VERSION, "uptime", (json_int_t)(up > 0 ? up : 0), "checks",
	                         js, "problems", problems);
	http_reply_json(c->req, ok ? 200 : 503, body);
}
