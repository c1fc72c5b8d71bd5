/*
 * smtp_int.h - internals shared by the server's files (smtp_server.c: listeners,
 * workers, connection and memory accounting; smtp_session.c: the state machine;
 * smtp_guard.c: failed AUTH across connections; smtp_tls.c: the TLS context).
 * Not a public header: only src/smtp/ includes it.
 */
#ifndef RELEVO_SMTP_INT_H
#define RELEVO_SMTP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/conf.h"
#include "core/core.h"
#include "smtp/smtp.h"

struct smtp_session;

/* One event loop thread; every session lives on one worker for its whole life. */
struct smtp_worker {
	struct smtp_server *srv;
	unsigned index;
	struct event_base *base;
	pthread_t thread;
	struct event *accept_ev;	/* activated by the acceptor with new fds */
	struct event *stop_ev;		/* activated by smtp_server_stop */
	pthread_mutex_t lock;		/* guards the pending-accept queue */
	struct smtp_pending *pending;	/* accepted fds not yet turned into sessions */
	/* Session registry: async completions find sessions by id (STYLE.md). */
	struct smtp_session **table;
	size_t table_size, nsessions;
	bool stopping;
};

/* A per-client-address connection count (shared by all workers). */
struct smtp_conncount;

/* A reload prepared by smtp_server_reload_prepare, not yet committed. */
struct smtp_reload {
	const struct conf *conf;	/* a reference */
	SSL_CTX *tls;			/* the new context, or NULL */
	evutil_socket_t *fds;		/* per conf->listen entry: a newly bound
					 * socket, or -1 when an open listener stays */
	size_t *keep;			/* per entry: that open listener's index */
};

/*
 * The server's conf and tls are owned by the main loop: only it reads or
 * replaces them (accepting, connection limits, a reload). Each accepted
 * connection takes a reference to both (struct smtp_pending), so a worker never
 * reads srv->conf or srv->tls, and a session keeps the settings it began with.
 */
struct smtp_server {
	const struct conf *conf;	/* a reference; main loop only */
	struct spool *spool;
	struct store *store;
	SSL_CTX *tls;			/* main loop only; NULL when no TLS is configured */
	struct smtp_reload *reload;	/* prepared, not committed; main loop only */
	struct workq *authq;		/* password verification threads */
	struct dkim_cache *dkim;	/* signing keys, shared by the workers */
	struct event_base *base;	/* main loop: listeners, signals, control */
	struct evconnlistener **listeners;
	struct smtp_listener_ctx **listener_ctx;
	size_t nlisteners;
	struct smtp_worker *workers;
	unsigned nworkers, next_worker;
	pthread_mutex_t conn_lock;	/* guards nconn and the per-address table */
	unsigned nconn;
	struct smtp_conncount **conn_table;
	struct smtp_guard *guard;	/* failed AUTH per address and per account */
	struct evconnlistener *local_listener;	/* local_submit.socket, or NULL */
	struct smtp_listener_ctx *local_ctx;
	_Atomic uint64_t mem_held;	/* message bytes held by all sessions (smtp.memory_budget) */
	bool stopping;
};

/* Per-listener data handed to the accept callback. */
struct smtp_listener_ctx {
	struct smtp_server *srv;
	const struct conf_listen *lst;	/* inside srv->conf (moved by a reload) */
};

/* An accepted connection on its way to a worker. */
struct smtp_pending {
	struct smtp_pending *next;
	evutil_socket_t fd;
	struct sockaddr_storage sa;
	socklen_t salen;
	const struct conf *conf;	/* a reference, handed to the session */
	SSL_CTX *tls;			/* a reference or NULL, handed to the session */
	const struct conf_listen *lst;	/* inside conf */
};

/* smtp_guard.c - failed AUTH across connections (see the file's comment). */
struct smtp_guard;
struct smtp_guard_verdict {
	unsigned delay_ms;	/* answer the failure this much later */
	unsigned addr_failures;	/* failures of the address in its window, this one included */
	unsigned user_failures;	/* ... of the account (0: no user name) */
	bool locked_now;	/* this failure locked the address */
};
struct smtp_guard *smtp_guard_new(unsigned limit, unsigned window_s);
void smtp_guard_set_limits(struct smtp_guard *g, unsigned limit, unsigned window_s);
void smtp_guard_free(struct smtp_guard *g);
bool smtp_guard_is_locked(struct smtp_guard *g, const struct sockaddr_storage *sa, int64_t now);
void smtp_guard_fail(struct smtp_guard *g, const struct sockaddr_storage *sa, const char *user,
		     int64_t now, struct smtp_guard_verdict *v);
void smtp_guard_success(struct smtp_guard *g, const struct sockaddr_storage *sa, int64_t now);

/* smtp_dkim.c */
enum rc smtp_dkim_sign(struct smtp_server *srv, const struct conf *conf, uint64_t sid,
		       const char *domain, struct evbuffer *body, struct smtp_reply *r, char *text,
		       size_t textsz);

/* smtp_local.c - local submission (`relevo sendmail`): the socket, and who the
 * peer is. */
/* smtp_local_bind - a listening unix socket at conf's local_submit.socket (mode
 * 0666: the peer's uid decides, see smtp_local_identify), or -1 (logged). */
evutil_socket_t smtp_local_bind(const struct conf *conf);
/* smtp_local_unlink - remove the socket file (the daemon stops). */
void smtp_local_unlink(const struct conf *conf);
struct store_user;
/* smtp_local_identify - the account of the peer on fd, from its uid
 * (SO_PEERCRED) and local_submit.users: RC_OK with *user (caller owns),
 * else a refusal in r (text in text[textsz]). *uid is the peer's uid, -1 if unknown. */
enum rc smtp_local_identify(struct smtp_server *srv, const struct conf *conf, evutil_socket_t fd,
			    long *uid, struct store_user **user, struct smtp_reply *r, char *text,
			    size_t textsz);

/* smtp_tls.c */
SSL_CTX *smtp_tls_server_ctx(const char *cert, const char *key, char *err, size_t errsz);

/* smtp_server.c: registry and accounting used by sessions. */
void smtp_worker_register(struct smtp_worker *w, struct smtp_session *s, uint64_t id);
void smtp_worker_unregister(struct smtp_worker *w, uint64_t id);
struct smtp_session *smtp_worker_find(struct smtp_worker *w, uint64_t id);
void smtp_conn_release(struct smtp_server *srv, const struct sockaddr_storage *sa);
/* smtp_mem_reserve - count n more bytes against smtp.memory_budget; false (and
 * nothing counted) if that would pass it. Each reservation is released exactly
 * once with smtp_mem_release. */
bool smtp_mem_reserve(struct smtp_server *srv, uint64_t n, uint64_t budget);
void smtp_mem_release(struct smtp_server *srv, uint64_t n);
/* smtp_mem_held - bytes reserved now, by every session together. */
uint64_t smtp_mem_held(struct smtp_server *srv);

/* smtp_session.c */
void smtp_session_start(struct smtp_worker *w, struct smtp_pending *p);
/* smtp_session_shutdown - the daemon is stopping: 421 and close (after any
 * commit in progress has been answered). */
void smtp_session_shutdown(struct smtp_session *s);

#endif
