/*
 * dns_resolve.c - asynchronous DNS on the caller's loop (the delivery thread,
 * the CLI): libunbound's event API (ub_ctx_create_event) on the caller's
 * libevent base, answers parsed by dns_msg_parse.
 *
 * Configuration: with a resolver ("IP" or "IP@port") every query is forwarded
 * there (ub_ctx_set_fwd), loopback allowed; without one, the forwarders of
 * /etc/resolv.conf and the names of /etc/hosts are used. No trust anchor is
 * configured, so the validator passes answers through as insecure and never
 * asks for DS/DNSKEY: a plain forwarder (or a test's fake server) is asked
 * exactly the names we resolve. QNAME minimisation is off for the same reason.
 * libunbound answers "test." (RFC 6761) itself with NXDOMAIN by default; a
 * transparent local zone without data replaces that built-in one, so that the
 * resolver we forward to decides (test setups, ours included, name their fake
 * mail domains under "test."). ("test. nodefault" would be the obvious way,
 * but ub_ctx_set_option stores the zone name with " nodefault" still attached.)
 *
 * Each query (struct dnsq) has one libevent event: first our own timeout,
 * then, once unbound has answered, the deferred completion. So the callback
 * never runs inline (libunbound itself may answer inside ub_resolve_event:
 * from /etc/hosts or its cache), and runs exactly once: when our timer wins,
 * the query is cancelled in unbound (ub_cancel only marks it for event
 * contexts; unbound drops it silently when its answer comes).
 *
 * Ownership: a dnsq belongs to its struct dns (d->queries) until its callback
 * runs; it is unlinked before the callback, which may therefore free d.
 * dns_free cancels and frees the outstanding queries without calling them
 * back, then drops the attached jobs (route lookups waiting on them).
 * Threads: everything runs on d's loop.
 */
#include "dns/dns.h"

#include <stdlib.h>
#include <string.h>
#include <unbound-event.h>
#include <unbound.h>

#define DNS_TIMEOUT_DEFAULT_MS 10000
#define DNS_CLASS_IN 1
#define DNS_UB_BOGUS 1		/* ub_event_callback_type sec values */
#define DNS_UB_SECURE 2

struct dnsq {
	struct dnsq *prev, *next;	/* d->queries */
	struct dns *d;
	struct event *ev;		/* timeout, then deferred completion */
	dns_cb cb;
	void *ctx;
	uint64_t cookie;
	uint16_t type;
	int async_id;
	bool in_unbound;		/* unbound still holds it (and would call back) */
	bool answered;			/* ans is final */
	int64_t started;		/* time_mono_ms() */
	struct dns_answer ans;
};

struct dns {
	struct event_base *base;	/* borrowed */
	struct ub_ctx *ub;		/* owned */
	unsigned timeout_ms;
	struct dnsq *queries;		/* outstanding, owned */
	struct dns_job *jobs;	/* attached, owned by their code */
};

static void dnsq_unlink(struct dns *d, struct dnsq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		d->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

static void dnsq_free(struct dnsq *q)
{
	if (q->ev)
		event_free(q->ev);
	dns_answer_fini(&q->ans);
	free(q);
}

/* Set q's answer from what unbound handed us (rcode != 0: no packet to read). */
static void dnsq_set_answer(struct dnsq *q, int rcode, const void *pkt, int len, int sec)
{
	char qname[DNS_NAME_MAX + 1];
	memcpy(qname, q->ans.qname, sizeof qname);
	if (rcode == 0 && pkt != NULL && len > 0) {
		(void)dns_msg_parse(pkt, (size_t)len, qname, q->type, &q->ans);
	} else {
		q->ans.status = rcode == 3 ? DNS_NXDOMAIN : DNS_TEMPFAIL;
	}
	if (sec == DNS_UB_BOGUS) {
		dns_answer_fini(&q->ans);
		q->ans.status = DNS_TEMPFAIL;
	}
	q->ans.secure = sec == DNS_UB_SECURE;
	q->answered = true;
}

/* Unbound's completion (maybe inside ub_resolve_event): keep it, defer. */
static void dns_on_unbound(void *arg, int rcode, void *pkt, int len, int sec, char *why_bogus,
			   int ratelimited)
{
	struct dnsq *q = arg;
	q->in_unbound = false;
	dnsq_set_answer(q, rcode, pkt, len, sec);
	if (sec == DNS_UB_BOGUS)
		log_warn("event=dns_bogus name=%s type=%s why=\"%s\"", q->ans.qname,
			 dns_type_name(q->type), why_bogus ? why_bogus : "?");
	event_del(q->ev);
	event_active(q->ev, EV_TIMEOUT, 1);
}

/* The query's event: our timeout, or the deferred completion. */
static void dns_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct dnsq *q = arg;
	struct dns *d = q->d;
	long long ms = (long long)(time_mono_ms() - q->started);
	if (!q->answered) {
		if (q->in_unbound)
			(void)ub_cancel(d->ub, q->async_id);
		q->in_unbound = false;
		q->ans.status = DNS_TEMPFAIL;
		log_info("event=dns_timeout name=%s type=%s ms=%lld", q->ans.qname,
			 dns_type_name(q->type), ms);
	}
	log_debug("event=dns_answer name=%s type=%s status=%s nrr=%zu cname=%s ms=%lld",
		  q->ans.qname, dns_type_name(q->type), dns_status_name(q->ans.status),
		  q->ans.nrr, q->ans.cname[0] ? q->ans.cname : "-", ms);
	dnsq_unlink(d, q);
	q->cb(q->ctx, q->cookie, &q->ans);	/* d may be freed after this call */
	dnsq_free(q);
}

static bool dns_set(struct ub_ctx *ub, const char *opt, const char *val)
{
	int err = ub_ctx_set_option(ub, opt, val);
	if (err != 0)
		log_err("event=dns_option_failed option=%s value=%s err=\"%s\"", opt, val,
			ub_strerror(err));
	return err == 0;
}

/* Options for resolving through a plain forwarder, loopback included. */
static enum rc dns_configure(struct ub_ctx *ub, const char *resolver)
{
	if (!dns_set(ub, "do-not-query-localhost:", "no") ||
	    !dns_set(ub, "qname-minimisation:", "no") || !dns_set(ub, "use-caps-for-id:", "no") ||
	    !dns_set(ub, "local-zone:", "test. transparent"))
		return RC_INVALID;
	int err;
	if (resolver != NULL) {
		if ((err = ub_ctx_set_fwd(ub, resolver)) != 0) {
			log_err("event=dns_resolver_invalid resolver=%s err=\"%s\"", resolver,
				ub_strerror(err));
			return RC_INVALID;
		}
		return RC_OK;
	}
	if ((err = ub_ctx_resolvconf(ub, NULL)) != 0) {
		log_err("event=dns_resolvconf_failed err=\"%s\"", ub_strerror(err));
		return RC_INVALID;
	}
	if ((err = ub_ctx_hosts(ub, NULL)) != 0)
		log_warn("event=dns_hosts_failed err=\"%s\"", ub_strerror(err));
	return RC_OK;
}

/* dns_new - a resolver on base (see dns.h). */
enum rc dns_new(struct event_base *base, const char *resolver, unsigned timeout_ms,
		    struct dns **out)
{
	*out = NULL;
	struct ub_ctx *ub = ub_ctx_create_event(base);
	if (ub == NULL) {
		log_err("event=dns_create_failed");
		return RC_NOMEM;
	}
	enum rc rc = dns_configure(ub, resolver);
	if (rc != RC_OK) {
		ub_ctx_delete(ub);
		return rc;
	}
	struct dns *d = xcalloc(1, sizeof *d);
	d->base = base;
	d->ub = ub;
	d->timeout_ms = timeout_ms ? timeout_ms : DNS_TIMEOUT_DEFAULT_MS;
	*out = d;
	return RC_OK;
}

/* dns_free - cancel everything outstanding, without callbacks (see dns.h). */
void dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	while (d->queries != NULL) {
		struct dnsq *q = d->queries;
		dnsq_unlink(d, q);
		if (q->in_unbound)
			(void)ub_cancel(d->ub, q->async_id);
		dnsq_free(q);
	}
	while (d->jobs != NULL) {
		struct dns_job *j = d->jobs;
		dns_job_detach(d, j);
		j->drop(j);
	}
	ub_ctx_delete(d->ub);
	free(d);
}

/* Complete q on the next loop turn with the answer already in it. */
static void dnsq_finish_later(struct dnsq *q)
{
	q->answered = true;
	event_del(q->ev);
	event_active(q->ev, EV_TIMEOUT, 1);
}

/* dns_query - start a lookup; cb runs later on the loop (see dns.h). */
void dns_query(struct dns *d, const char *name, uint16_t type, dns_cb cb,
		   void *ctx, uint64_t cookie)
{
	struct dnsq *q = xcalloc(1, sizeof *q);
	q->d = d;
	q->cb = cb;
	q->ctx = ctx;
	q->cookie = cookie;
	q->type = type;
	q->started = time_mono_ms();
	str_lcpy(q->ans.qname, name, sizeof q->ans.qname);
	q->ev = event_new(d->base, -1, 0, dns_on_event, q);
	if (q->ev == NULL)
		fatal("event=event_new_failed where=dns_query");
	q->next = d->queries;
	if (d->queries)
		d->queries->prev = q;
	d->queries = q;
	struct timeval tv = {d->timeout_ms / 1000, (d->timeout_ms % 1000) * 1000};
	event_add(q->ev, &tv);
	size_t nl = strlen(name);
	if (nl > 0 && name[nl - 1] == '.')
		nl--;
	if (nl > DNS_NAME_MAX - 2) {	/* 253 characters make 255 octets */
		q->ans.status = DNS_MALFORMED;
		dnsq_finish_later(q);
		return;
	}
	q->in_unbound = true;
	int err = ub_resolve_event(d->ub, name, type, DNS_CLASS_IN, q, dns_on_unbound,
				   &q->async_id);
	if (err != 0 && q->in_unbound) {
		log_warn("event=dns_query_failed name=%s type=%s err=\"%s\"", name,
			 dns_type_name(type), ub_strerror(err));
		q->in_unbound = false;
		q->ans.status = DNS_TEMPFAIL;
		dnsq_finish_later(q);
	}
}

/* dns_job_attach - link j into d's attached jobs. */
void dns_job_attach(struct dns *d, struct dns_job *j)
{
	j->prev = NULL;
	j->next = d->jobs;
	if (d->jobs)
		d->jobs->prev = j;
	d->jobs = j;
}

/* dns_job_detach - unlink j from d's attached jobs. */
void dns_job_detach(struct dns *d, struct dns_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else if (d->jobs == j)
		d->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

/* dns_base - the event base d runs on. */
struct event_base *dns_base(const struct dns *d)
{
	return d->base;
}
