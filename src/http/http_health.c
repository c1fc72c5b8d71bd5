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
 */
#include "http/http_int.h"

#include <string.h>

#include "spool/spool.h"
#include "store/store.h"

#define HEALTH_DELIVERY_STALL_MS 60000

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

/* http_api_health - GET /v1/health. */
void http_api_health(struct http_call *c)
{
	char spool[256], store[128], delivery[128];
	const struct {
		const char *name;
		const char *problem;
	} checks[] = {
	    {"spool", health_check_spool(c->h, spool, sizeof spool)},
	    {"store", health_check_store(c->h, store, sizeof store)},
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
			log_warn("event=health_failed problem=\"%s\"", checks[i].problem);
		}
	}
	int64_t up = (time_now_ms() - health_started()) / 1000;
	json_t *body = json_pack("{s:s,s:s,s:I,s:o,s:o}", "status", ok ? "ok" : "fail", "version",
	                         RELEVO_VERSION, "uptime", (json_int_t)(up > 0 ? up : 0), "checks",
	                         js, "problems", problems);
	http_reply_json(c->req, ok ? 200 : 503, body);
}
