/*
 * smtp_int.h - internals shared by the server's files (smtp_server.c: listeners,
 * workers, connection accounting; smtp_session.c: the state machine;
 * smtp_tls.c: the TLS context). Not a public header: only src/smtp/ includes it.
 */
#ifndef RELEVO_SMTP_INT_H
#define RELEVO_SMTP_INT_H

#include <pthread.h>
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

struct smtp_server {
	const struct conf *conf;
	struct spool *spool;
	struct store *store;
	SSL_CTX *tls;			/* NULL when no TLS is configured */
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
	bool stopping;
};

/* Per-listener data handed to the accept callback. */
struct smtp_listener_ctx {
	struct smtp_server *srv;
	const struct conf_listen *lst;
};

struct smtp_pending {
	struct smtp_pending *next;
	evutil_socket_t fd;
	struct sockaddr_storage sa;
	socklen_t salen;
	const struct conf_listen *lst;
};

/* smtp_dkim.c */
enum rc smtp_dkim_sign(struct smtp_server *srv, uint64_t sid, const char *domain,
		       struct evbuffer *body, struct smtp_reply *r, char *text, size_t textsz);

/* smtp_tls.c */
SSL_CTX *smtp_tls_server_ctx(const char *cert, const char *key);

/* smtp_server.c: registry and accounting used by sessions. */
void smtp_worker_register(struct smtp_worker *w, struct smtp_session *s, uint64_t id);
void smtp_worker_unregister(struct smtp_worker *w, uint64_t id);
struct smtp_session *smtp_worker_find(struct smtp_worker *w, uint64_t id);
void smtp_conn_release(struct smtp_server *srv, const struct sockaddr_storage *sa);

/* smtp_session.c */
void smtp_session_start(struct smtp_worker *w, evutil_socket_t fd,
			const struct sockaddr_storage *sa, socklen_t salen,
			const struct conf_listen *lst, const char *refuse);
/* smtp_session_shutdown - the daemon is stopping: 421 and close (after any
 * commit in progress has been answered). */
void smtp_session_shutdown(struct smtp_session *s);

#endif
