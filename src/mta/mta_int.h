/*
 * mta_int.h - internals of the delivery engine shared by mta_engine.c,
 * mta_bounce.c and mta_sandbox.c. Not a public header.
 */
#ifndef RELEVO_MTA_INT_H
#define RELEVO_MTA_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "core/core.h"
#include "mta/mta.h"
#include "sched/sched.h"
#include "spool/spool.h"

#define MTA_Q_FLUSH (1ULL << 63)	/* in the notify queue: also flush this id */
#define MTA_HOST_TEXT_MAX (DNS_NAME_MAX + 64)	/* "mx.example.org[192.0.2.1]" */
#define MTA_POOL_KEY_MAX (DNS_NAME_MAX + 320)	/* mta_pool_key: host, port, TLS, user */

/* One message's part of an attempt: its recipients for this destination. */
struct mta_msgwork {
	struct spool_env *env;		/* owned deep copy */
	struct evbuffer *body;		/* owned, loaded when its turn comes */
	struct mta_txn_rcpt *rcpt;	/* owned */
	size_t nrcpt;
	struct mta_txn txn;
};

/* One delivery attempt: a batch of recipients for one destination. */
struct mta_attempt {
	struct mta_attempt *next;
	struct mta *m;
	uint64_t id;			/* cookie for async completions */
	char dest[DNS_NAME_MAX + 3];
	enum sched_stream stream;
	const struct conf *conf;	/* a reference: the settings current when the
					 * attempt began, kept to its end */
	const struct conf_route *croute;	/* static route (inside conf), or NULL: MX */
	char key[MTA_POOL_KEY_MAX];	/* which parked connections it may take */
	struct mta_msgwork *msgs;
	size_t nmsgs, next_msg;
	bool routed;			/* route resolved (not needed with a parked one) */
	struct mta_route route;
	size_t host_i, addr_i;
	struct mta_conn *conn;		/* owned while open */
	bool reused;			/* conn was taken from the pool, nothing sent yet */
	bool healthy;			/* conn's last transaction was not refused as a
					 * whole with 4xx: worth more mail (and parking) */
	unsigned sent_on_conn;		/* messages over conn, also before this attempt */
	struct mta_reply last_err;	/* why the last connection failed */
	int64_t resolve_us;		/* when the route lookup began (metrics) */
	char last_host[MTA_HOST_TEXT_MAX];	/* "mx.example.org[192.0.2.1]" */
	bool ending;
	struct event *end_ev;
};

struct mta_bounce;
struct mta_idle;

struct mta {
	const struct conf *conf;	/* a reference; replaced on the loop (mta_reload) */
	pthread_mutex_t reload_lock;	/* guards the next_* fields (other threads set) */
	const struct conf *next_conf;	/* a reference: mta_reload's, not yet applied */
	void (*reload_done)(void *arg);
	void *reload_arg;
	struct event *reload_ev;
	struct spool *spool;
	struct event_base *base;
	pthread_t thread;
	bool started, stopping;
	struct dns *dns;
	struct sched *sched;
	struct sched_conf sc;
	SSL_CTX *tls;
	struct mta_conn_params params;	/* defaults from the config */
	bool sandbox;
	unsigned dns_timeout_ms;
	unsigned max_conns, max_msgs_per_conn;
	struct event *run_ev, *notify_ev, *timer;
	struct mta_attempt *attempts;
	unsigned nattempts;
	uint64_t attempt_seq;		/* ids of attempts and parked connections */
	struct mta_idle *idle_head, *idle_tail;	/* parked connections, oldest first */
	unsigned nidle;
	unsigned idle_timeout;		/* seconds; 0: never park */
	struct event *idle_timer;
	pthread_mutex_t qlock;		/* guards q/nq/flush_all (other threads add) */
	uint64_t *q;
	size_t nq, capq;
	bool flush_all;
	unsigned batch;			/* open mta_batch brackets: wake the loop at the end */
	struct mta_bounce *bouncing;	/* messages whose DSN is being committed */
};

/* mta_engine.c */
enum sched_stream mta_stream_of(const struct spool_env *env);
void mta_outcome_of(struct outcome *o, enum outcome_cause cause, enum rc rc,
		    const struct mta_reply *r, const char *enh, const char *why,
		    const char *remote);
void mta_record(struct mta *m, const struct spool_env *env, uint32_t idx,
		const struct outcome *o, const char *dest, enum sched_stream stream);
void mta_rcpt_domain(const char *addr, char *out, size_t outsz);

/* mta_pool.c: idle connections kept for the next attempt (see there). */
void mta_pool_init(struct mta *m);
void mta_pool_fini(struct mta *m);
void mta_pool_close_all(struct mta *m, const char *why);
void mta_pool_key(const struct mta *m, const struct conf_route *r, const char *dest, char *out,
		  size_t outsz);
void mta_pool_put(struct mta *m, const char *key, struct mta_conn *c, const char *host,
		  unsigned sent);
struct mta_conn *mta_pool_take(struct mta *m, const char *key, uint64_t cookie, char *host,
			       size_t hostsz, unsigned *sent);
void mta_pool_make_room(struct mta *m);
bool mta_pool_on_lost(struct mta *m, uint64_t cookie);

/* mta_conf.c: config -> engine settings. */
void mta_conf_apply(struct mta *m);
void mta_conf_conn_params(const struct conf *c, SSL_CTX *tls, struct mta_conn_params *p);

/* mta_bounce.c */
void mta_maybe_bounce(struct mta *m, uint64_t msgid);
void mta_bounce_fini(struct mta *m);
void mta_delay_warn(struct mta *m, const struct spool_env *env, uint32_t idx,
		    const struct outcome *o);

/* mta_sandbox.c */
/* mta_sandbox_deliver - write the attempt's messages to data_dir/sandbox/ (only
 * those flagged SPOOL_F_SANDBOX when flagged_only) and remove them from it. */
void mta_sandbox_deliver(struct mta *m, struct mta_attempt *a, bool flagged_only);

#endif
