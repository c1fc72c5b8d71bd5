/*
 * smtp_server.c - listeners, worker threads, connection accounting, the
 * memory budget and the session registry.
 *
 * The main loop owns the listening sockets; each accepted connection is counted
 * (in total and per client address), then handed to a worker thread round-robin.
 * A worker runs its own event loop and owns its sessions until they end.
 * Stopping: listeners close, every worker tells its sessions to finish (421),
 * and smtp_server_run returns once all workers are idle.
 * The memory budget is one atomic counter of the message bytes every session
 * holds before its commit (smtp.memory_budget): a session reserves before it
 * keeps bytes and releases on every way out (commit answered, reset, refusal,
 * disconnect), so the counter is back at zero when no transaction is open.
 *
 * Reload (smtp_server_reload_*, on the main loop, driven by src/cli/cli_reload.c):
 * prepare builds the new TLS context and binds the listeners the new conf adds,
 * without changing anything, so that a failure leaves the server as it was;
 * commit then swaps srv->conf and srv->tls, closes the listeners the conf no
 * longer names and keeps the others open (their sockets never close, so no
 * connection is refused). Connections accepted from then on get the new conf
 * and context; sessions already running keep the references they took.
 */
#include "smtp/smtp_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "dkim/dkim.h"
#include "policy/policy.h"
#include "spool/spool.h"

#define CONN_TABLE_SIZE 4096

struct smtp_conncount {
	struct smtp_conncount *next;
	uint8_t addr[16];
	unsigned count;
};

/* ---- connection accounting --------------------------------------------- */

/* conn_key - the address bytes that identify a client (IPv4-mapped as IPv4). */
static void conn_key(const struct sockaddr_storage *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->ss_family == AF_INET) {
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		key[10] = key[11] = 0xff;
	} else if (sa->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

static size_t conn_hash(const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h % CONN_TABLE_SIZE);
}

/* conn_acquire - count a new connection; NULL if allowed, else the refusal text. */
static const char *conn_acquire(struct smtp_server *srv, const struct sockaddr_storage *sa)
{
	uint8_t key[16];
	conn_key(sa, key);
	size_t h = conn_hash(key);
	const char *refuse = NULL;
	pthread_mutex_lock(&srv->conn_lock);
	struct smtp_conncount *c;
	for (c = srv->conn_table[h]; c; c = c->next)
		if (memcmp(c->addr, key, 16) == 0)
			break;
	if (srv->nconn >= srv->conf->smtp.max_connections)
		refuse = "Too many connections, try again later";
	else if (c && c->count >= srv->conf->smtp.max_connections_per_ip)
		refuse = "Too many connections from your address, try again later";
	if (refuse == NULL) {
		if (c == NULL) {
			c = xcalloc(1, sizeof *c);
			memcpy(c->addr, key, 16);
			c->next = srv->conn_table[h];
			srv->conn_table[h] = c;
		}
		c->count++;
		srv->nconn++;
	}
	pthread_mutex_unlock(&srv->conn_lock);
	return refuse;
}

/* smtp_conn_release - a counted connection has ended. */
void smtp_conn_release(struct smtp_server *srv, const struct sockaddr_storage *sa)
{
	uint8_t key[16];
	conn_key(sa, key);
	size_t h = conn_hash(key);
	pthread_mutex_lock(&srv->conn_lock);
	for (struct smtp_conncount **pp = &srv->conn_table[h]; *pp; pp = &(*pp)->next) {
		struct smtp_conncount *c = *pp;
		if (memcmp(c->addr, key, 16) != 0)
			continue;
		if (--c->count == 0) {
			*pp = c->next;
			free(c);
		}
		break;
	}
	srv->nconn--;
	pthread_mutex_unlock(&srv->conn_lock);
}

/* ---- memory budget ------------------------------------------------------- */

/* smtp_mem_reserve - take n bytes of budget (the session's smtp.memory_budget),
 * or nothing. */
bool smtp_mem_reserve(struct smtp_server *srv, uint64_t n, uint64_t budget)
{
	uint64_t cur = atomic_load(&srv->mem_held);
	do {
		if (n > budget || cur > budget - n)
			return false;
	} while (!atomic_compare_exchange_weak(&srv->mem_held, &cur, cur + n));
	return true;
}

/* smtp_mem_release - give back n reserved bytes. */
void smtp_mem_release(struct smtp_server *srv, uint64_t n)
{
	uint64_t before = atomic_fetch_sub(&srv->mem_held, n);
	if (before < n)
		fatal("event=memory_budget_underflow held=%llu release=%llu",
		      (unsigned long long)before, (unsigned long long)n);
}

/* smtp_mem_held - bytes reserved now. */
uint64_t smtp_mem_held(struct smtp_server *srv)
{
	return atomic_load(&srv->mem_held);
}

/* ---- session registry (open addressing, linear probing, by 64-bit id) ---- */

static size_t reg_slot(const struct smtp_worker *w, uint64_t id)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 32) & (w->table_size - 1);
}

uint64_t smtp_session_id(const struct smtp_session *s);

static void reg_grow(struct smtp_worker *w)
{
	struct smtp_session **old = w->table;
	size_t oldn = w->table_size;
	w->table_size = oldn ? oldn * 2 : 256;
	w->table = xcalloc(w->table_size, sizeof *w->table);
	for (size_t i = 0; i < oldn; i++) {
		if (old[i] == NULL)
			continue;
		size_t j = reg_slot(w, smtp_session_id(old[i]));
		while (w->table[j])
			j = (j + 1) & (w->table_size - 1);
		w->table[j] = old[i];
	}
	free(old);
}

/* smtp_worker_register - make s findable by id on its worker. */
void smtp_worker_register(struct smtp_worker *w, struct smtp_session *s, uint64_t id)
{
	if ((w->nsessions + 1) * 2 > w->table_size)
		reg_grow(w);
	size_t j = reg_slot(w, id);
	while (w->table[j])
		j = (j + 1) & (w->table_size - 1);
	w->table[j] = s;
	w->nsessions++;
}

/* smtp_worker_find - the live session with this id, or NULL. */
struct smtp_session *smtp_worker_find(struct smtp_worker *w, uint64_t id)
{
	if (w->table_size == 0)
		return NULL;
	for (size_t j = reg_slot(w, id); w->table[j]; j = (j + 1) & (w->table_size - 1))
		if (smtp_session_id(w->table[j]) == id)
			return w->table[j];
	return NULL;
}

/* smtp_worker_unregister - remove id (backward-shift deletion keeps probes valid). */
void smtp_worker_unregister(struct smtp_worker *w, uint64_t id)
{
	size_t mask = w->table_size - 1, j;
	for (j = reg_slot(w, id); w->table[j]; j = (j + 1) & mask)
		if (smtp_session_id(w->table[j]) == id)
			break;
	if (w->table_size == 0 || w->table[j] == NULL)
		return;
	w->table[j] = NULL;
	w->nsessions--;
	for (size_t k = (j + 1) & mask; w->table[k]; k = (k + 1) & mask) {
		struct smtp_session *s = w->table[k];
		w->table[k] = NULL;
		size_t m = reg_slot(w, smtp_session_id(s));
		while (w->table[m])
			m = (m + 1) & mask;
		w->table[m] = s;
	}
	if (w->stopping && w->nsessions == 0)
		event_base_loopexit(w->base, NULL);
}

/* ---- workers ------------------------------------------------------------- */

static void worker_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_worker *w = arg;
	pthread_mutex_lock(&w->lock);
	struct smtp_pending *p = w->pending;
	w->pending = NULL;
	pthread_mutex_unlock(&w->lock);
	while (p) {
		struct smtp_pending *next = p->next;
		smtp_session_start(w, p);
		free(p);
		p = next;
	}
}

static void worker_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_worker *w = arg;
	w->stopping = true;
	worker_on_accept(-1, 0, w); /* sessions handed over before the stop */
	/* Shutting a session down may unregister it: collect first. */
	size_t n = 0;
	struct smtp_session **list = xcalloc(w->nsessions + 1, sizeof *list);
	for (size_t i = 0; i < w->table_size; i++)
		if (w->table[i])
			list[n++] = w->table[i];
	for (size_t i = 0; i < n; i++)
		smtp_session_shutdown(list[i]);
	free(list);
	if (w->nsessions == 0)
		event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
	struct smtp_worker *w = arg;
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* ---- listeners --------------------------------------------------------------- */

static void server_on_accept(struct evconnlistener *l, evutil_socket_t fd,
			     struct sockaddr *sa, int salen, void *arg)
{
	struct smtp_listener_ctx *lc = arg;
	struct smtp_server *srv = lc->srv;
	metrics_connection(lc->lst->address);
	struct smtp_pending *p = xcalloc(1, sizeof *p);
	p->fd = fd;
	memcpy(&p->sa, sa, MIN((size_t)salen, sizeof p->sa));
	p->salen = (socklen_t)salen;
	p->lst = lc->lst;
	const char *refuse = conn_acquire(srv, &p->sa);
	if (refuse && lc->lst->mode == CONF_LISTEN_SUBMISSIONS) {
		/* The client speaks TLS first: plaintext would be a TLS error (RFC 8314
		 * 3.3), and a handshake is what the limit protects. Just close. */
		log_info("event=connection_refused client_fd=%d reason=\"%s\"", (int)fd, refuse);
		evutil_closesocket(fd);
		free(p);
		return;
	}
	if (refuse) {
		/* Answer on this loop: the connection never reaches a worker. */
		char buf[256];
		int n = snprintf(buf, sizeof buf, "421 4.7.0 %s %s\r\n", srv->conf->hostname,
				 refuse);
		ssize_t wr = write(fd, buf, (size_t)n);
		(void)wr;
		log_info("event=connection_refused client_fd=%d reason=\"%s\"", (int)fd, refuse);
		evutil_closesocket(fd);
		free(p);
		return;
	}
	/* Replies are small writes the client waits for: never hold them back
	 * for an ACK (Nagle). */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	p->conf = conf_ref(srv->conf);
	if (srv->tls != NULL && SSL_CTX_up_ref(srv->tls) == 1)
		p->tls = srv->tls;
	struct smtp_worker *w = &srv->workers[srv->next_worker++ % srv->nworkers];
	pthread_mutex_lock(&w->lock);
	p->next = w->pending;
	w->pending = p;
	pthread_mutex_unlock(&w->lock);
	event_active(w->accept_ev, 0, 0);
}

static void server_relisten(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

static void server_on_listen_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_warn("event=accept_failed error=\"%s\"", evutil_socket_error_to_string(err));
	/* EMFILE and friends: pause briefly instead of spinning. */
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		evconnlistener_disable(l);
		struct timeval tv = {0, 100000};
		event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, server_relisten, l,
				&tv);
	}
}

/* server_bind - a listening socket for lst, or -1 after logging why (and
 * writing "ADDRESS: reason" to err). */
static evutil_socket_t server_bind(const struct conf_listen *lst, char *err, size_t errsz)
{
	evutil_socket_t fd = net_listen_socket((const struct sockaddr *)&lst->sa, lst->salen);
	if (fd < 0) {
		snprintf(err, errsz, "%s: %s", lst->address, strerror(errno));
		log_err("event=listen_failed address=%s error=\"%s\"", lst->address,
			strerror(errno));
	}
	return fd;
}

/* server_listen - serve the bound socket fd as listener i (takes fd). */
static void server_listen(struct smtp_server *srv, const struct conf_listen *lst, size_t i,
			  evutil_socket_t fd)
{
	struct smtp_listener_ctx *lc = xcalloc(1, sizeof *lc);
	lc->srv = srv;
	lc->lst = lst;
	srv->listener_ctx[i] = lc;
	/* backlog 0: the socket already listens with 1024 (libevent's -1 would call
	 * listen() again with 128, and a burst of clients would wait for SYN retries) */
	srv->listeners[i] = evconnlistener_new(srv->base, server_on_accept, lc,
					       LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (srv->listeners[i] == NULL)
		fatal("event=evconnlistener_new_failed address=%s", lst->address);
	evconnlistener_set_error_cb(srv->listeners[i], server_on_listen_error);
	log_info("event=listening address=%s mode=%s", lst->address,
		 conf_listen_mode_name(lst->mode));
	metrics_listener(lst->address); /* its series exist from the start */
}

/* server_listen_local - the local submission socket (smtp_local.c), when
 * local_submit.users is set; accepted like any listener's connections. */
static enum rc server_listen_local(struct smtp_server *srv)
{
	const struct conf_listen *lst = &srv->conf->local_submit.listen;
	if (srv->conf->local_submit.socket == NULL)
		return RC_OK;
	evutil_socket_t fd = smtp_local_bind(srv->conf);
	if (fd < 0)
		return RC_IO;
	srv->local_ctx = xcalloc(1, sizeof *srv->local_ctx);
	srv->local_ctx->srv = srv;
	srv->local_ctx->lst = lst;
	srv->local_listener = evconnlistener_new(srv->base, server_on_accept, srv->local_ctx,
						 LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (srv->local_listener == NULL) {
		close(fd);
		return RC_IO;
	}
	evconnlistener_set_error_cb(srv->local_listener, server_on_listen_error);
	log_info("event=listening address=%s mode=%s users=%zu", lst->address,
		 conf_listen_mode_name(lst->mode), srv->conf->local_submit.nusers);
	return RC_OK;
}

/* server_close_local - stop accepting local submissions and remove the socket. */
static void server_close_local(struct smtp_server *srv)
{
	if (srv->local_listener == NULL)
		return;
	evconnlistener_free(srv->local_listener);
	srv->local_listener = NULL;
	smtp_local_unlink(srv->conf);
}

static bool server_needs_tls(const struct conf *conf)
{
	for (size_t i = 0; i < conf->nlisten; i++)
		if (conf->listen[i].mode != CONF_LISTEN_RELAY)
			return true;
	return conf->tls_cert != NULL;
}

static void server_init_workers(struct smtp_server *srv)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	srv->nworkers = srv->conf->server.workers ? srv->conf->server.workers
						  : (unsigned)(ncpu > 0 ? ncpu : 1);
	srv->workers = xcalloc(srv->nworkers, sizeof *srv->workers);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct smtp_worker *w = &srv->workers[i];
		w->srv = srv;
		w->index = i;
		w->base = event_base_new();
		if (w->base == NULL)
			fatal("event=event_base_new_failed");
		pthread_mutex_init(&w->lock, NULL);
		w->accept_ev = event_new(w->base, -1, 0, worker_on_accept, w);
		w->stop_ev = event_new(w->base, -1, 0, worker_on_stop, w);
	}
}

/* smtp_server_new - bind the listeners and prepare the workers. */
enum rc smtp_server_new(const struct conf *conf, struct spool *spool, struct store *store,
			struct smtp_server **out)
{
	core_threads_init();
	struct smtp_server *srv = xcalloc(1, sizeof *srv);
	srv->conf = conf_ref(conf);
	srv->spool = spool;
	srv->store = store;
	pthread_mutex_init(&srv->conn_lock, NULL);
	srv->conn_table = xcalloc(CONN_TABLE_SIZE, sizeof *srv->conn_table);
	srv->base = event_base_new();
	if (srv->base == NULL)
		fatal("event=event_base_new_failed");
	char err[512];
	if (server_needs_tls(conf)) {
		srv->tls = smtp_tls_server_ctx(conf->tls_cert, conf->tls_key, err, sizeof err);
		if (srv->tls == NULL) {
			smtp_server_free(srv);
			return RC_INVALID;
		}
	}
	srv->nlisteners = conf->nlisten;
	srv->listeners = xcalloc(conf->nlisten, sizeof *srv->listeners);
	srv->listener_ctx = xcalloc(conf->nlisten, sizeof *srv->listener_ctx);
	for (size_t i = 0; i < conf->nlisten; i++) {
		evutil_socket_t fd = server_bind(&conf->listen[i], err, sizeof err);
		if (fd < 0) {
			smtp_server_free(srv);
			return RC_IO;
		}
		server_listen(srv, &conf->listen[i], i, fd);
	}
	if (server_listen_local(srv) != RC_OK) {
		smtp_server_free(srv);
		return RC_IO;
	}
	srv->authq = workq_new(2, 256);
	srv->guard = smtp_guard_new(conf->smtp.auth_lockout_failures,
				    conf->smtp.auth_lockout_window);
	srv->dkim = dkim_cache_new(policy_dkim_load, store);
	server_init_workers(srv);
	*out = srv;
	return RC_OK;
}

/* smtp_server_base - the main loop, for the caller's signal and control events. */
struct event_base *smtp_server_base(struct smtp_server *srv)
{
	return srv->base;
}

/* smtp_server_run - run workers and the main loop until stopped and drained. */
enum rc smtp_server_run(struct smtp_server *srv)
{
	for (unsigned i = 0; i < srv->nworkers; i++)
		if (pthread_create(&srv->workers[i].thread, NULL, worker_main,
				   &srv->workers[i]) != 0)
			fatal("event=pthread_create_failed where=smtp_worker");
	event_base_loop(srv->base, EVLOOP_NO_EXIT_ON_EMPTY);
	for (unsigned i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].thread, NULL);
	return RC_OK;
}

/* smtp_server_stop - close listeners, ask every worker to finish its sessions. */
void smtp_server_stop(struct smtp_server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	log_info("event=stopping sessions=%u", srv->nconn);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i]) {
			evconnlistener_free(srv->listeners[i]);
			srv->listeners[i] = NULL;
		}
	}
	server_close_local(srv);
	for (unsigned i = 0; i < srv->nworkers; i++)
		event_active(srv->workers[i].stop_ev, 0, 0);
	event_base_loopexit(srv->base, NULL);
}

/* smtp_server_free - release everything (after smtp_server_run returned). */
void smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i])
			evconnlistener_free(srv->listeners[i]);
		free(srv->listener_ctx[i]);
	}
	free(srv->listeners);
	free(srv->listener_ctx);
	server_close_local(srv);
	free(srv->local_ctx);
	workq_free(srv->authq);
	dkim_cache_free(srv->dkim);
	smtp_guard_free(srv->guard);
	/* Every session is gone: whatever is still counted leaked. Said loudly, not
	 * aborted: the daemon is exiting and nothing is left to protect. */
	if (atomic_load(&srv->mem_held) != 0)
		log_err("event=memory_budget_leak held=%llu",
			(unsigned long long)atomic_load(&srv->mem_held));
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct smtp_worker *w = &srv->workers[i];
		event_free(w->accept_ev);
		event_free(w->stop_ev);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->lock);
		free(w->table);
	}
	free(srv->workers);
	for (size_t i = 0; i < CONN_TABLE_SIZE; i++) {
		while (srv->conn_table[i]) {
			struct smtp_conncount *c = srv->conn_table[i];
			srv->conn_table[i] = c->next;
			free(c);
		}
	}
	free(srv->conn_table);
	smtp_server_reload_abort(srv);
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	conf_unref(srv->conf);
	event_base_free(srv->base);
	pthread_mutex_destroy(&srv->conn_lock);
	free(srv);
}

/* ---- reload ---------------------------------------------------------------- */

/* reload_err - append the line "key: text" to *errs. */
static void reload_err(char **errs, const char *key, const char *text)
{
	char *s = xasprintf("%s%s: %s\n", *errs ? *errs : "", key, text);
	free(*errs);
	*errs = s;
}

/* smtp_server_reload_prepare - bind what nc adds and load its TLS files; nothing
 * changes yet. RC_INVALID with "key: error" lines in *errs (caller frees) when
 * nc cannot be served: the server goes on as before. */
enum rc smtp_server_reload_prepare(struct smtp_server *srv, const struct conf *nc, char **errs)
{
	char err[512], key[64];
	smtp_server_reload_abort(srv);
	struct smtp_reload *r = xcalloc(1, sizeof *r);
	r->conf = conf_ref(nc);
	r->fds = xcalloc(nc->nlisten, sizeof *r->fds);
	r->keep = xcalloc(nc->nlisten, sizeof *r->keep);
	srv->reload = r;
	bool ok = true;
	if (server_needs_tls(nc)) {
		r->tls = smtp_tls_server_ctx(nc->tls_cert, nc->tls_key, err, sizeof err);
		if (r->tls == NULL) {
			reload_err(errs, "tls", err);
			ok = false;
		}
	}
	for (size_t j = 0; j < nc->nlisten; j++) {
		r->fds[j] = -1;
		size_t i;
		for (i = 0; i < srv->nlisteners; i++)
			if (srv->listeners[i] &&
			    conf_listen_same(srv->listener_ctx[i]->lst, &nc->listen[j]))
				break;
		r->keep[j] = i;
		if (i < srv->nlisteners || srv->stopping)
			continue;
		r->fds[j] = server_bind(&nc->listen[j], err, sizeof err);
		if (r->fds[j] < 0) {
			snprintf(key, sizeof key, "listen[%zu].address", j);
			reload_err(errs, key, err);
			ok = false;
		}
	}
	if (!ok) {
		smtp_server_reload_abort(srv);
		return RC_INVALID;
	}
	return RC_OK;
}

/* smtp_server_reload_abort - forget a prepared reload (close what it bound). */
void smtp_server_reload_abort(struct smtp_server *srv)
{
	struct smtp_reload *r = srv->reload;
	if (r == NULL)
		return;
	for (size_t j = 0; j < r->conf->nlisten; j++)
		if (r->fds[j] >= 0)
			close(r->fds[j]);
	if (r->tls)
		SSL_CTX_free(r->tls);
	conf_unref(r->conf);
	free(r->fds);
	free(r->keep);
	free(r);
	srv->reload = NULL;
}

/* smtp_server_reload_commit - serve the prepared conf: new connections get it,
 * listeners it no longer names close, the others stay open. */
void smtp_server_reload_commit(struct smtp_server *srv)
{
	struct smtp_reload *r = srv->reload;
	const struct conf *nc = r->conf;
	size_t n = nc->nlisten;
	struct evconnlistener **ls = xcalloc(n ? n : 1, sizeof *ls);
	struct smtp_listener_ctx **lcs = xcalloc(n ? n : 1, sizeof *lcs);
	for (size_t j = 0; j < n && !srv->stopping; j++) {
		size_t i = r->keep[j];
		if (i < srv->nlisteners) {
			ls[j] = srv->listeners[i];
			lcs[j] = srv->listener_ctx[i];
			lcs[j]->lst = &nc->listen[j];
			srv->listeners[i] = NULL;
			srv->listener_ctx[i] = NULL;
		}
	}
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i]) {
			log_info("event=listener_closed address=%s",
				 srv->listener_ctx[i]->lst->address);
			evconnlistener_free(srv->listeners[i]);
		}
		free(srv->listener_ctx[i]);
	}
	free(srv->listeners);
	free(srv->listener_ctx);
	srv->listeners = ls;
	srv->listener_ctx = lcs;
	srv->nlisteners = n;
	for (size_t j = 0; j < n; j++) {
		if (r->fds[j] >= 0) {
			server_listen(srv, &nc->listen[j], j, r->fds[j]);
			r->fds[j] = -1;
		}
	}
	if (srv->tls)
		SSL_CTX_free(srv->tls);
	srv->tls = r->tls;
	r->tls = NULL;
	/* The local socket's path is a restart key: nc names the same one. */
	if (srv->local_ctx != NULL)
		srv->local_ctx->lst = &nc->local_submit.listen;
	conf_unref(srv->conf);
	srv->conf = conf_ref(nc);
	smtp_guard_set_limits(srv->guard, nc->smtp.auth_lockout_failures,
			      nc->smtp.auth_lockout_window);
	dkim_cache_changed(); /* every cache (the API's too) reloads its keys */
	smtp_server_reload_abort(srv); /* frees r: everything it held is handed over */
}
