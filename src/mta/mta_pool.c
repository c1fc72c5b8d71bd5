/*
 * mta_pool.c - idle outbound connections kept for the next attempt to the same
 * place (delivery.idle_timeout), so that a steady flow of mail does not pay a
 * TCP handshake, greeting, EHLO (and TLS) per attempt.
 *
 * An attempt that ends with a healthy connection (idle, unbroken, under
 * delivery.max_messages_per_connection) parks it here under its key: where
 * the connection goes and how (mta_pool_key). The next attempt with the same
 * key takes the most recently parked one instead of resolving and connecting
 * again, and carries on counting its messages.
 *
 * Limits: at most max_connections_per_destination connections are parked per
 * key. Parked connections count towards delivery.max_connections, but never
 * block a new destination: mta_pool_make_room closes the oldest parked ones
 * when a new connection would exceed the total.
 * A parked connection is closed (QUIT, not waiting for the 221) after
 * idle_timeout seconds, at once when the server closes it or talks out of
 * turn (the client's idle_lost callback), and at shutdown. A server may still
 * close one just as it is taken: the attempt then sees a transaction that got
 * no reply at all (mta_txn.unanswered) and resends over a fresh connection.
 *
 * Ownership: the pool owns its entries and their connections; mta_pool_take
 * hands a connection over to the caller. While parked, a connection's cookie is
 * its entry's id (from the attempts' sequence, so the two never collide):
 * callbacks find the entry by id, never by pointer.
 */
#include "mta/mta_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mta_idle {
	struct mta_idle *prev, *next;	/* m->idle_head..idle_tail: oldest first */
	uint64_t id;			/* the connection's cookie while parked */
	char key[MTA_POOL_KEY_MAX];
	char host[MTA_HOST_TEXT_MAX];	/* "mx.example.org[192.0.2.1]" */
	struct mta_conn *conn;		/* owned */
	unsigned sent;			/* messages sent over it so far */
	int64_t since;			/* monotonic ms it was parked */
};

/* mta_pool_key - the key of the connections an attempt may share: a static
 * route's host, port, TLS policy and AUTH user, or the MX domain with the
 * delivery port and TLS policy. */
void mta_pool_key(const struct mta *m, const struct conf_route *r, const char *dest, char *out,
		  size_t outsz)
{
	if (r != NULL)
		snprintf(out, outsz, "route %s:%u tls=%d/%d auth=%s", r->host, r->port,
			 (int)r->tls, (int)r->tls_verify, r->auth_user ? r->auth_user : "");
	else
		snprintf(out, outsz, "mx %s:%u tls=%d/%d", dest, m->conf->delivery.port,
			 (int)m->params.tls_required, (int)m->params.tls_verify);
}

static void idle_unlink(struct mta *m, struct mta_idle *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		m->idle_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		m->idle_tail = e->prev;
	m->nidle--;
}

/* idle_close - close a parked connection (QUIT if it is still usable). */
static void idle_close(struct mta *m, struct mta_idle *e, const char *why)
{
	idle_unlink(m, e);
	log_debug("event=idle_close host=%s why=%s sent=%u", e->host, why, e->sent);
	mta_conn_close(e->conn);
	free(e);
}

/* idle_arm - the timer for the oldest parked connection's expiry. */
static void idle_arm(struct mta *m)
{
	if (m->idle_head == NULL) {
		evtimer_del(m->idle_timer);
		return;
	}
	int64_t wait = m->idle_head->since + (int64_t)m->idle_timeout * 1000 - time_mono_ms();
	if (wait < 0)
		wait = 0;
	struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
	evtimer_add(m->idle_timer, &tv);
}

static void idle_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mta *m = arg;
	int64_t now = time_mono_ms();
	while (m->idle_head != NULL &&
	       m->idle_head->since + (int64_t)m->idle_timeout * 1000 <= now)
		idle_close(m, m->idle_head, "idle_timeout");
	idle_arm(m);
}

/* mta_pool_init - an empty pool (after mta_conf_apply: m->idle_timeout). */
void mta_pool_init(struct mta *m)
{
	m->idle_timer = evtimer_new(m->base, idle_on_timer, m);
	if (m->idle_timer == NULL)
		fatal("event=evtimer_new_failed where=mta_pool");
}

/* mta_pool_close_all - close every parked connection (shutdown, reload). */
void mta_pool_close_all(struct mta *m, const char *why)
{
	while (m->idle_head != NULL)
		idle_close(m, m->idle_head, why);
	if (m->idle_timer)
		evtimer_del(m->idle_timer);
}

/* mta_pool_fini - close what is parked and free the pool. */
void mta_pool_fini(struct mta *m)
{
	mta_pool_close_all(m, "shutdown");
	if (m->idle_timer)
		event_free(m->idle_timer);
	m->idle_timer = NULL;
}

/* mta_pool_put - park c (ownership passes to the pool) under key, or close it
 * when parking is off, the connection is spent or the key has its share. */
void mta_pool_put(struct mta *m, const char *key, struct mta_conn *c, const char *host,
		  unsigned sent)
{
	unsigned same = 0;
	for (const struct mta_idle *e = m->idle_head; e; e = e->next)
		same += strcmp(e->key, key) == 0;
	if (m->idle_timeout == 0 || m->stopping || !mta_conn_is_usable(c) ||
	    sent >= m->max_msgs_per_conn || same >= m->sc.max_conn_per_dest) {
		mta_conn_close(c);
		return;
	}
	struct mta_idle *e = xcalloc(1, sizeof *e);
	e->id = ++m->attempt_seq;
	str_lcpy(e->key, key, sizeof e->key);
	str_lcpy(e->host, host, sizeof e->host);
	e->conn = c;
	e->sent = sent;
	e->since = time_mono_ms();
	mta_conn_set_cookie(c, e->id);
	e->prev = m->idle_tail;
	if (m->idle_tail)
		m->idle_tail->next = e;
	else
		m->idle_head = e;
	m->idle_tail = e;
	m->nidle++;
	log_debug("event=idle_park host=%s sent=%u idle=%u", host, sent, m->nidle);
	if (e == m->idle_head)
		idle_arm(m);
}

/* mta_pool_take - the most recently parked usable connection for key, now the
 * caller's with cookie; its host text and message count go to host and *sent.
 * NULL if there is none. */
struct mta_conn *mta_pool_take(struct mta *m, const char *key, uint64_t cookie, char *host,
			       size_t hostsz, unsigned *sent)
{
	struct mta_idle *e = m->idle_tail;
	while (e != NULL) {
		struct mta_idle *prev = e->prev;
		if (strcmp(e->key, key) != 0) {
			e = prev;
			continue;
		}
		struct mta_conn *c = e->conn;
		bool head = e == m->idle_head;
		idle_unlink(m, e);
		if (head)
			idle_arm(m);
		if (!mta_conn_is_usable(c)) {	/* broken, its idle_lost still pending */
			mta_conn_close(c);
			free(e);
			e = prev;
			continue;
		}
		mta_conn_set_cookie(c, cookie);
		str_lcpy(host, e->host, hostsz);
		*sent = e->sent;
		log_debug("event=idle_reuse host=%s sent=%u idle=%u", e->host, e->sent, m->nidle);
		free(e);
		return c;
	}
	return NULL;
}

/* mta_pool_make_room - before opening a connection: close the oldest parked
 * ones while attempts and parked connections together exceed max_connections. */
void mta_pool_make_room(struct mta *m)
{
	bool head = false;
	while (m->idle_head != NULL && m->nattempts + m->nidle > m->max_conns) {
		idle_close(m, m->idle_head, "make_room");
		head = true;
	}
	if (head)
		idle_arm(m);
}

/* mta_pool_on_lost - the client says a connection broke while idle: if it is
 * parked here (cookie), close it; true if it was. */
bool mta_pool_on_lost(struct mta *m, uint64_t cookie)
{
	for (struct mta_idle *e = m->idle_head; e; e = e->next) {
		if (e->id != cookie)
			continue;
		bool head = e == m->idle_head;
		idle_close(m, e, "lost");
		if (head)
			idle_arm(m);
		return true;
	}
	return false;
}
