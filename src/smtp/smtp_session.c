/*
 * smtp_session.c - one SMTP server session: the state machine, the command
 * table and its handlers, DATA/BDAT intake and the hand-over to the spool.
 *
 * Invariants:
 * - Exactly one function, session_enter_state(), changes s->state (and logs it
 *   at debug level).
 * - The dispatcher does the 500/503/530/538 gatekeeping from the command table;
 *   handlers fill in a reply and, for the few commands that need it, start an
 *   asynchronous step (STARTTLS handshake, password check, spool commit).
 * - While an asynchronous step is pending (SMTP_ST_WAIT) the session reads
 *   nothing, so pipelined commands wait in the input buffer, and a completion
 *   finds the session by its 64-bit id (the registry in smtp_server.c): a session
 *   that ended meanwhile simply drops the result.
 * - A session is freed only from a deferred event (session_on_defer), never
 *   deep inside a handler.
 * - "250 queued" is written only from the spool's completion callback, i.e.
 *   after the message is on stable storage.
 * - Besides the idle timeouts (bufferevent, reset by every byte), one timer
 *   (deadline_ev) enforces totals a trickling client cannot stretch: a command
 *   line complete within smtp.timeout_command of its first byte, a DATA/BDAT
 *   transfer within smtp.timeout_data_total, a session within
 *   smtp.session_max_time. It is re-armed after each batch of input.
 * - Message bytes kept in s->body are reserved from the server-wide
 *   smtp.memory_budget first (s->mem_held); session_mem_drop gives them back on
 *   every way a transaction ends (commit answered, reset, refusal, free).
 */
#include "smtp/smtp_int.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>

#include "policy/policy.h"
#include "spool/spool.h"
#include "store/store.h"

enum smtp_state {
	SMTP_ST_CONNECTED,	/* greeting not sent yet (greeting delay) */
	SMTP_ST_GREETED,	/* waiting for EHLO/HELO */
	SMTP_ST_READY,		/* no transaction */
	SMTP_ST_MAIL,		/* MAIL accepted */
	SMTP_ST_RCPT,		/* at least one RCPT accepted */
	SMTP_ST_CHUNKS,		/* between BDAT chunks */
	SMTP_ST_DATA,		/* reading DATA content */
	SMTP_ST_BDAT,		/* reading a BDAT chunk's octets */
	SMTP_ST_AUTH,		/* reading an AUTH continuation line */
	SMTP_ST_TLS,		/* STARTTLS accepted, handshake pending */
	SMTP_ST_WAIT,		/* waiting for the spool or the password check */
	SMTP_ST_CLOSING,	/* final reply queued; freed once flushed */
	SMTP_ST__COUNT
};

static const char *const smtp_state_names[] = {
	"connected", "greeted", "ready", "mail", "rcpt", "chunks", "data",
	"bdat", "auth", "tls", "wait", "closing",
};
_Static_assert(ARRAY_LEN(smtp_state_names) == SMTP_ST__COUNT, "smtp_state_names");

#define ST(x) (1u << SMTP_ST_##x)

enum auth_step { AUTH_NONE, AUTH_PLAIN_RESP, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

struct session_rcpt {
	char *addr;
	char *orcpt;
	uint8_t notify;
	bool suppressed;	/* on the account's suppression list: answered 250,
				 * left out of the envelope, reported as an event */
};

struct smtp_session {
	uint64_t id;
	struct smtp_worker *w;
	struct smtp_server *srv;
	const struct conf *conf;	/* a reference: the settings current when the
					 * connection was accepted, for its whole life */
	SSL_CTX *tls_ctx;		/* a reference to the TLS context of that time,
					 * or NULL when no TLS is configured */
	const struct conf_listen *lst;	/* inside conf */
	struct bufferevent *bev;
	evutil_socket_t fd;
	bool bev_owns_fd;		/* TLS bufferevents close the fd themselves */
	struct sockaddr_storage sa;
	char peer[INET6_ADDRSTRLEN];
	enum smtp_state state;
	enum smtp_state resume_state;	/* where WAIT returns to */
	bool tls;
	bool esmtp;
	long local_uid;			/* local submission: the peer's uid (SO_PEERCRED) */
	bool counted;			/* holds a slot in the connection accounting */
	bool stop_after_reply;		/* daemon stopping: 421 after the pending reply */
	bool discarding;		/* dropping the rest of an over-long line */
	bool dead;			/* the peer is gone: nothing can be written */
	bool out_paused;		/* replies pile up unread: input paused until they drain */
	struct event *defer_ev;		/* deferred free and delayed replies */
	void (*defer_fn)(struct smtp_session *s);
	struct event *deadline_ev;	/* session, command line and transfer totals */
	int64_t started_ms;		/* monotonic: the connection (smtp.session_max_time) */
	int64_t line_ms;		/* first byte of the command line being read; 0: none */
	int64_t transfer_ms;		/* DATA or the first BDAT chunk began; 0: none */
	char helo[SMTP_DOMAIN_MAX + 1];
	unsigned errors;
	unsigned auth_failures;

	/* authentication */
	struct store_user *user;	/* owned; NULL until AUTH succeeded */
	enum auth_step auth_step;
	char auth_user[SMTP_AUTH_USER_MAX + 1];

	/* the transaction */
	struct smtp_path sender;
	struct smtp_mail_params mp;
	struct session_rcpt *rcpt;
	size_t nrcpt;
	bool used_bdat;
	unsigned bdat_chunks;	/* chunks of this message (SMTP_BDAT_CHUNKS_MAX) */
	bool bdat_last;
	bool bdat_failed;	/* a chunk failed: later chunks are read and refused */
	bool bdat_refused;	/* this chunk is read and dropped, then bdat_err sent */
	enum smtp_state bdat_prev;	/* state to return to after a refused chunk */
	struct smtp_reply bdat_err;
	uint64_t bdat_remaining;
	struct evbuffer *body;		/* owned until handed to the spool */
	struct evbuffer *chunk;		/* scratch between reader and body */
	struct smtp_data_reader dr;
	struct smtp_msg_check mc;
	bool mc_live;
	uint64_t mem_held;	/* bytes of body reserved from smtp.memory_budget */
	bool mem_refused;	/* the budget was exhausted: 452 4.3.1 at the end */

	char line[SMTP_AUTH_LINE_MAX + 1];
	char text[1536];		/* reply texts built by handlers (paths are up to 1025 bytes) */
};

static atomic_uint_fast64_t session_seq = 1;

/* smtp_session_id - the registry key of a session. */
uint64_t smtp_session_id(const struct smtp_session *s);
uint64_t smtp_session_id(const struct smtp_session *s)
{
	return s->id;
}

static void session_process(struct smtp_session *s);
static void session_close(struct smtp_session *s);
static void session_on_read(struct bufferevent *bev, void *arg);
static void session_on_write(struct bufferevent *bev, void *arg);
static void session_on_event(struct bufferevent *bev, short what, void *arg);

/* session_has_arg - does a command argument hold anything but spaces? */
static bool session_has_arg(const char *arg)
{
	struct smtp_cmd cmd = {.arg = arg};
	return smtp_cmd_has_arg(&cmd);
}

/* ---- state, replies, lifetime -------------------------------------------- */

static void session_enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state == st)
		return;
	log_debug("sid=%016llx event=state from=%s to=%s", (unsigned long long)s->id,
		  smtp_state_names[s->state], smtp_state_names[st]);
	s->state = st;
}

static void session_reply(struct smtp_session *s, int code, const char *enh, const char *text)
{
	smtp_reply_append(bufferevent_get_output(s->bev), code, enh, text);
}

static void session_replyf(struct smtp_session *s, int code, const char *enh, const char *fmt,
			   ...) __attribute__((format(printf, 4, 5)));
static void session_replyf(struct smtp_session *s, int code, const char *enh, const char *fmt,
			   ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->text, sizeof s->text, fmt, ap);
	va_end(ap);
	session_reply(s, code, enh, s->text);
}

/* ---- the memory budget (smtp.memory_budget, counted in smtp_server.c) ------ */

/* session_mem_take - reserve n more bytes for s->body; false if the budget is spent. */
static bool session_mem_take(struct smtp_session *s, uint64_t n)
{
	if (!smtp_mem_reserve(s->srv, n, s->conf->smtp.memory_budget))
		return false;
	s->mem_held += n;
	return true;
}

/* session_mem_drop - give back everything s reserved (its body is gone or drained). */
static void session_mem_drop(struct smtp_session *s)
{
	if (s->mem_held == 0)
		return;
	smtp_mem_release(s->srv, s->mem_held);
	log_debug("sid=%016llx event=memory_release bytes=%llu held=%llu",
		  (unsigned long long)s->id, (unsigned long long)s->mem_held,
		  (unsigned long long)smtp_mem_held(s->srv));
	s->mem_held = 0;
}

static void session_free(struct smtp_session *s)
{
	log_info("sid=%016llx event=disconnect client=%s errors=%u", (unsigned long long)s->id,
		 s->peer, s->errors);
	smtp_worker_unregister(s->w, s->id);
	if (s->counted) {
		smtp_conn_release(s->srv, &s->sa);
		metrics_session(s->lst->address, -1);
	}
	if (s->bev)
		bufferevent_free(s->bev);
	if (!s->bev_owns_fd)
		evutil_closesocket(s->fd);
	event_free(s->defer_ev);
	event_free(s->deadline_ev);
	session_mem_drop(s);
	for (size_t i = 0; i < s->nrcpt; i++) {
		free(s->rcpt[i].addr);
		free(s->rcpt[i].orcpt);
	}
	free(s->rcpt);
	if (s->body)
		evbuffer_free(s->body);
	evbuffer_free(s->chunk);
	if (s->mc_live)
		smtp_msg_check_fini(&s->mc);
	store_user_free(s->user);
	explicit_bzero(s->line, sizeof s->line);
	if (s->tls_ctx)
		SSL_CTX_free(s->tls_ctx);
	conf_unref(s->conf);
	free(s);
}

static void session_on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	void (*fn)(struct smtp_session *) = s->defer_fn;
	s->defer_fn = NULL;
	if (fn)
		fn(s);
}

static void session_defer(struct smtp_session *s, void (*fn)(struct smtp_session *),
			  unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	s->defer_fn = fn;
	event_add(s->defer_ev, &tv);
}

/* session_close - stop reading; free once the queued output has been written. */
static void session_close(struct smtp_session *s)
{
	if (s->state == SMTP_ST_CLOSING) {
		/* Already closing: if the peer is gone, its output never drains. */
		if (s->dead) {
			evbuffer_drain(bufferevent_get_output(s->bev),
				       evbuffer_get_length(bufferevent_get_output(s->bev)));
			session_defer(s, session_free, 0);
		}
		return;
	}
	session_enter_state(s, SMTP_ST_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	if (s->dead)
		evbuffer_drain(bufferevent_get_output(s->bev),
			       evbuffer_get_length(bufferevent_get_output(s->bev)));
	evbuffer_drain(bufferevent_get_input(s->bev),
		       evbuffer_get_length(bufferevent_get_input(s->bev)));
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_defer(s, session_free, 0);
	/* else session_on_write frees it when the output is drained */
}

/* session_error - count a client error; past the limit, 421 and close. */
static bool session_error(struct smtp_session *s)
{
	if (++s->errors < s->conf->smtp.max_errors)
		return false;
	session_replyf(s, 421, "4.7.0", "%s Too many errors, closing connection",
		       s->conf->hostname);
	log_info("sid=%016llx event=too_many_errors client=%s", (unsigned long long)s->id,
		 s->peer);
	session_close(s);
	return true;
}

static void session_reset_transaction(struct smtp_session *s)
{
	for (size_t i = 0; i < s->nrcpt; i++) {
		free(s->rcpt[i].addr);
		free(s->rcpt[i].orcpt);
	}
	free(s->rcpt);
	s->rcpt = NULL;
	s->nrcpt = 0;
	memset(&s->sender, 0, sizeof s->sender);
	memset(&s->mp, 0, sizeof s->mp);
	s->used_bdat = s->bdat_last = s->bdat_failed = false;
	s->bdat_chunks = 0;
	s->bdat_remaining = 0;
	s->transfer_ms = 0;
	if (s->body)
		evbuffer_drain(s->body, evbuffer_get_length(s->body));
	else
		s->body = evbuffer_new();
	session_mem_drop(s);
	s->mem_refused = false;
	if (s->mc_live) {
		smtp_msg_check_fini(&s->mc);
		s->mc_live = false;
	}
}

/* session_idle_state - where a session goes when no transaction is open. */
static enum smtp_state session_idle_state(const struct smtp_session *s)
{
	return s->helo[0] ? SMTP_ST_READY : SMTP_ST_GREETED;
}

static void session_set_timeout(struct smtp_session *s, unsigned secs)
{
	struct timeval rtv = {secs, 0}, wtv = {s->conf->smtp.timeout_command, 0};
	bufferevent_set_timeouts(s->bev, &rtv, &wtv);
}

/* session_pause - wait for an asynchronous step; input stays buffered. */
static void session_pause(struct smtp_session *s)
{
	s->resume_state = session_idle_state(s);
	session_enter_state(s, SMTP_ST_WAIT);
	bufferevent_disable(s->bev, EV_READ);
}

/* session_resume - the asynchronous step is answered: go on with buffered input. */
static void session_resume(struct smtp_session *s, enum smtp_state st)
{
	session_enter_state(s, st);
	if (s->stop_after_reply) {
		smtp_session_shutdown(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

/* smtp_session_shutdown - the daemon is stopping. */
void smtp_session_shutdown(struct smtp_session *s)
{
	if (s->state == SMTP_ST_CLOSING)
		return;
	if (s->state == SMTP_ST_WAIT) {
		s->stop_after_reply = true; /* answer the pending commit first */
		return;
	}
	s->stop_after_reply = false;
	if (s->state != SMTP_ST_TLS && s->state != SMTP_ST_CONNECTED)
		session_replyf(s, 421, "4.3.2", "%s Service shutting down, try again later",
			       s->conf->hostname);
	session_close(s);
}

/* ---- the greeting ----------------------------------------------------------- */

static void session_greet(struct smtp_session *s)
{
	session_replyf(s, 220, NULL, "%s ESMTP relevo", s->conf->hostname);
	session_enter_state(s, SMTP_ST_GREETED);
	session_set_timeout(s, s->conf->smtp.timeout_command);
}

static void session_greet_deferred(struct smtp_session *s)
{
	if (s->state != SMTP_ST_CONNECTED)
		return;
	session_greet(s);
	session_process(s);
}

/* ---- EHLO, HELO, and the small commands ------------------------------------ */

static bool session_auth_offered(const struct smtp_session *s)
{
	return s->lst->mode != CONF_LISTEN_RELAY && s->tls;
}

static bool session_starttls_offered(const struct smtp_session *s)
{
	return !s->tls && s->tls_ctx != NULL && s->lst->mode != CONF_LISTEN_SUBMISSIONS &&
	       s->lst->mode != CONF_LISTEN_LOCAL;
}

/* session_is_local - local submission: a unix socket, the account known from the
 * peer's uid; there is nothing to encrypt and no password to ask for. */
static bool session_is_local(const struct smtp_session *s)
{
	return s->lst->mode == CONF_LISTEN_LOCAL;
}

static bool session_set_helo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	size_t n = strlen(arg);
	if (n == 0 || n > SMTP_DOMAIN_MAX || strchr(arg, ' ') != NULL) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: EHLO domain-or-address-literal"};
		return false;
	}
	memcpy(s->helo, arg, n + 1);
	session_reset_transaction(s);
	return true;
}

static void cmd_ehlo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (!session_set_helo(s, arg, r))
		return;
	s->esmtp = true;
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "%s Hello [%s]\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\n"
			 "ENHANCEDSTATUSCODES\nCHUNKING\nDSN",
			 s->conf->hostname, s->peer,
			 (unsigned long long)s->conf->smtp.max_message_size);
	if (session_starttls_offered(s))
		n += snprintf(buf + n, sizeof buf - (size_t)n, "\nSTARTTLS");
	if (session_auth_offered(s) && s->user == NULL)
		snprintf(buf + n, sizeof buf - (size_t)n, "\nAUTH PLAIN LOGIN");
	session_reply(s, 250, NULL, buf);
	session_enter_state(s, SMTP_ST_READY);
	r->code = 0; /* already answered */
}

static void cmd_helo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (!session_set_helo(s, arg, r))
		return;
	s->esmtp = false;
	snprintf(s->text, sizeof s->text, "%s", s->conf->hostname);
	*r = (struct smtp_reply){250, NULL, s->text};
	session_enter_state(s, SMTP_ST_READY);
}

static void cmd_noop(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	*r = (struct smtp_reply){250, "2.0.0", "OK"};
}

static void cmd_rset(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	session_reset_transaction(s);
	session_enter_state(s, session_idle_state(s));
	*r = (struct smtp_reply){250, "2.0.0", "OK"};
}

static void cmd_vrfy(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	*r = (struct smtp_reply){252, "2.5.0",
				 "Cannot VRFY; send the message and delivery will be attempted"};
}

static void cmd_expn(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	*r = (struct smtp_reply){502, "5.5.1", "EXPN is not supported"};
}

static void cmd_help(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	*r = (struct smtp_reply){214, "2.0.0",
				 "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET "
				 "NOOP VRFY HELP QUIT; see RFC 5321"};
}

static void cmd_quit(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	session_replyf(s, 221, "2.0.0", "%s Bye", s->conf->hostname);
	session_close(s);
	r->code = 0;
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------------ */

static void session_on_tls_ready(struct smtp_session *s)
{
	s->tls = true;
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	s->helo[0] = '\0';
	s->esmtp = false;
	session_reset_transaction(s);
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	log_info("sid=%016llx event=tls client=%s version=%s cipher=%s",
		 (unsigned long long)s->id, s->peer, SSL_get_version(ssl),
		 SSL_get_cipher_name(ssl));
}

/* session_start_tls - swap the plain bufferevent for a TLS one on the same fd. */
static void session_start_tls(struct smtp_session *s)
{
	/* Anything the client pipelined after STARTTLS is discarded (CVE-2011-0411). */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_free(s->bev);
	SSL *ssl = SSL_new(s->tls_ctx);
	s->bev = bufferevent_openssl_socket_new(s->w->base, s->fd, ssl,
						BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (s->bev == NULL)
		fatal("event=bufferevent_openssl_socket_new_failed");
	s->bev_owns_fd = true;
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_setcb(s->bev, session_on_read, session_on_write, session_on_event, s);
	session_set_timeout(s, s->conf->smtp.timeout_command);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void cmd_starttls(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (session_has_arg(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: STARTTLS (no parameters)"};
		return;
	}
	if (s->tls) {
		*r = (struct smtp_reply){503, "5.5.1", "TLS is already active"};
		return;
	}
	if (!session_starttls_offered(s)) {
		*r = (struct smtp_reply){502, "5.5.1", "STARTTLS is not available here"};
		return;
	}
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	session_enter_state(s, SMTP_ST_TLS);
	bufferevent_disable(s->bev, EV_READ);
	/* session_on_write switches to TLS once the 220 has left. */
	r->code = 0;
}

/* ---- AUTH (RFC 4954, PLAIN RFC 4616, LOGIN) ------------------------------------ */

struct auth_job {
	struct smtp_worker *w;
	struct store *store;
	uint64_t sid;
	char user[SMTP_AUTH_USER_MAX + 1];
	char pass[SMTP_AUTH_PASS_MAX + 1];
	enum rc rc;
	struct store_user *result;
};

static void auth_work(void *arg)
{
	struct auth_job *j = arg;
	j->rc = policy_auth_user(j->store, j->user, j->pass, &j->result);
	explicit_bzero(j->pass, sizeof j->pass);
}

static void session_auth_fail_reply(struct smtp_session *s)
{
	if (s->state != SMTP_ST_WAIT)
		return;
	if (s->auth_failures >= s->conf->smtp.max_auth_failures) {
		session_replyf(s, 421, "4.7.0", "%s Too many failed authentication attempts",
			       s->conf->hostname);
		session_close(s);
		return;
	}
	session_reply(s, 535, "5.7.8", "Authentication credentials invalid");
	session_resume(s, s->resume_state);
}

/* session_auth_failed - count a failed AUTH in the session and across connections
 * (smtp_guard.c), then answer it late: the delay grows with the address's
 * failures and is longest for an account under attack. The timer keeps the
 * worker free meanwhile. */
static void session_auth_failed(struct smtp_session *s, const char *user)
{
	struct smtp_guard_verdict v;
	s->auth_failures++;
	metrics_inc(METRICS_SMTP_AUTH_FAILURES);
	smtp_guard_fail(s->srv->guard, &s->sa, user, time_mono_ms(), &v);
	log_info("sid=%016llx event=auth result=fail user=%s client=%s failures=%u "
		 "client_failures=%u user_failures=%u delay_ms=%u",
		 (unsigned long long)s->id, user && user[0] ? user : "-", s->peer,
		 s->auth_failures, v.addr_failures, v.user_failures, v.delay_ms);
	if (v.locked_now)
		log_warn("sid=%016llx event=auth_lockout client=%s failures=%u seconds=%u",
			 (unsigned long long)s->id, s->peer, v.addr_failures,
			 s->conf->smtp.auth_lockout_window);
	if (s->state != SMTP_ST_WAIT)
		session_pause(s);
	session_defer(s, session_auth_fail_reply, v.delay_ms);
}

/* session_auth_locked - true (and 454 sent) if AUTH from this address is locked
 * out: refused without looking at what the client sent. */
static bool session_auth_locked(struct smtp_session *s)
{
	if (!smtp_guard_is_locked(s->srv->guard, &s->sa, time_mono_ms()))
		return false;
	log_info("sid=%016llx event=auth result=locked_out client=%s", (unsigned long long)s->id,
		 s->peer);
	session_reply(s, 454, "4.7.0",
		      "Too many authentication failures from your address, try again later");
	return true;
}

static void auth_done(void *arg)
{
	struct auth_job *j = arg;
	struct smtp_session *s = smtp_worker_find(j->w, j->sid);
	if (s == NULL || s->state != SMTP_ST_WAIT) {
		store_user_free(j->result);
		free(j);
		return;
	}
	if (j->rc == RC_OK) {
		s->user = j->result;
		smtp_guard_success(s->srv->guard, &s->sa, time_mono_ms());
		log_info("sid=%016llx event=auth result=ok user=%s client=%s",
			 (unsigned long long)s->id, s->user->name, s->peer);
		session_reply(s, 235, "2.7.0", "Authentication successful");
		session_resume(s, s->resume_state);
	} else if (j->rc == RC_TEMPFAIL) {
		log_warn("sid=%016llx event=auth result=tempfail user=%s client=%s",
			 (unsigned long long)s->id, j->user, s->peer);
		session_reply(s, 454, "4.7.0", "Temporary authentication failure");
		session_resume(s, s->resume_state);
	} else {
		session_auth_failed(s, j->user);
	}
	free(j);
}

static void session_auth_check(struct smtp_session *s, const char *user, const char *pass)
{
	s->auth_step = AUTH_NONE;
	if (session_auth_locked(s))
		return;
	struct auth_job *j = xcalloc(1, sizeof *j);
	j->w = s->w;
	j->store = s->srv->store;
	j->sid = s->id;
	str_lcpy(j->user, user, sizeof j->user);
	str_lcpy(j->pass, pass, sizeof j->pass);
	session_pause(s);
	if (workq_submit(s->srv->authq, s->w->base, auth_work, auth_done, j) != RC_OK) {
		explicit_bzero(j->pass, sizeof j->pass);
		free(j);
		session_reply(s, 454, "4.7.0", "Temporary authentication failure, try again");
		session_resume(s, s->resume_state);
	}
}

/* session_auth_plain - decode a PLAIN response and start the check. */
static void session_auth_plain(struct smtp_session *s, const char *b64, struct smtp_reply *r)
{
	uint8_t buf[SMTP_AUTH_USER_MAX * 2 + SMTP_AUTH_PASS_MAX + 3];
	size_t n;
	char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
	enum rc rc = smtp_b64_decode(b64, strlen(b64), buf, sizeof buf, &n);
	if (rc == RC_OK)
		rc = smtp_auth_plain_decode(buf, n, user, pass);
	explicit_bzero(buf, sizeof buf);
	if (rc == RC_PERMFAIL) {
		/* A well-formed response asking to act as someone else (authzid). */
		explicit_bzero(pass, sizeof pass);
		session_auth_failed(s, NULL);
		r->code = 0; /* answered by session_auth_fail_reply */
		return;
	}
	if (rc != RC_OK) {
		explicit_bzero(pass, sizeof pass);
		*r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH PLAIN response"};
		return;
	}
	session_auth_check(s, user, pass);
	explicit_bzero(pass, sizeof pass);
	r->code = 0;
}

static bool session_b64_field(const char *b64, char *out, size_t outsz)
{
	size_t n;
	if (smtp_b64_decode(b64, strlen(b64), (uint8_t *)out, outsz - 1, &n) != RC_OK)
		return false;
	out[n] = '\0';
	return n > 0 && memchr(out, '\0', n) == NULL;
}

static void cmd_auth(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (s->user) {
		*r = (struct smtp_reply){503, "5.5.1", "Already authenticated"};
		return;
	}
	if (s->lst->mode == CONF_LISTEN_RELAY) {
		*r = (struct smtp_reply){503, "5.5.1", "AUTH is not available on this port"};
		return;
	}
	if (session_auth_locked(s)) {
		r->code = 0; /* answered */
		return;
	}
	char mech[32];
	const char *sp = strchr(arg, ' ');
	size_t ml = sp ? (size_t)(sp - arg) : strlen(arg);
	const char *initial = sp ? sp + 1 : NULL;
	if (ml == 0 || ml >= sizeof mech) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"};
		return;
	}
	memcpy(mech, arg, ml);
	mech[ml] = '\0';
	if (str_ieq(mech, "PLAIN")) {
		if (initial == NULL) {
			s->auth_step = AUTH_PLAIN_RESP;
			session_enter_state(s, SMTP_ST_AUTH);
			*r = (struct smtp_reply){334, NULL, ""};
		} else {
			session_auth_plain(s, initial, r);
		}
	} else if (str_ieq(mech, "LOGIN")) {
		if (initial == NULL) {
			s->auth_step = AUTH_LOGIN_USER;
			*r = (struct smtp_reply){334, NULL, "VXNlcm5hbWU6"};
		} else if (session_b64_field(initial, s->auth_user, sizeof s->auth_user)) {
			s->auth_step = AUTH_LOGIN_PASS;
			*r = (struct smtp_reply){334, NULL, "UGFzc3dvcmQ6"};
		} else {
			*r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
			return;
		}
		session_enter_state(s, SMTP_ST_AUTH);
	} else {
		*r = (struct smtp_reply){504, "5.5.4", "Unrecognized authentication mechanism"};
	}
}

/* session_auth_line - a continuation line of an AUTH exchange. */
static void session_auth_line(struct smtp_session *s, const char *line)
{
	struct smtp_reply r = {0};
	enum auth_step step = s->auth_step;
	s->auth_step = AUTH_NONE;
	session_enter_state(s, session_idle_state(s));
	if (strcmp(line, "*") == 0) {
		r = (struct smtp_reply){501, "5.0.0", "Authentication cancelled"};
	} else if (step == AUTH_PLAIN_RESP) {
		session_auth_plain(s, line, &r);
	} else if (step == AUTH_LOGIN_USER) {
		if (session_b64_field(line, s->auth_user, sizeof s->auth_user)) {
			s->auth_step = AUTH_LOGIN_PASS;
			session_enter_state(s, SMTP_ST_AUTH);
			r = (struct smtp_reply){334, NULL, "UGFzc3dvcmQ6"};
		} else {
			r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
		}
	} else if (step == AUTH_LOGIN_PASS) {
		char pass[SMTP_AUTH_PASS_MAX + 1];
		if (session_b64_field(line, pass, sizeof pass)) {
			session_auth_check(s, s->auth_user, pass);
			r.code = 0;
		} else {
			r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
		}
		explicit_bzero(pass, sizeof pass);
	}
	if (r.code) {
		session_reply(s, r.code, r.enh, r.text);
		if (r.code >= 500)
			session_error(s);
	}
}

/* ---- MAIL, RCPT ------------------------------------------------------------------ */

/* session_emit - an event of this session's transaction: rejected (r is the
 * refusal) or suppressed (r is NULL). */
static void session_emit(struct smtp_session *s, enum evlog_type type, uint64_t msgid,
			 const char *rcpt, const struct smtp_reply *r, bool bulk)
{
	char reply[sizeof s->text + 32] = "the recipient is on the account's suppression list";
	if (r != NULL)
		snprintf(reply, sizeof reply, "%d %s%s%s", r->code, r->enh ? r->enh : "",
			 r->enh ? " " : "", r->text ? r->text : "");
	struct evlog_event ev = {
		.type = type,
		.msgid = msgid,
		.recipient = (char *)rcpt,
		.sender = s->sender.addr,
		.user = s->user ? s->user->name : NULL,
		.stream = evlog_stream_name(bulk),
		.source = "smtp",
		.status = r && r->enh ? (char *)r->enh : NULL,
		.reply = reply,
	};
	if (type == EVLOG_REJECTED && r != NULL)
		metrics_rejected(false, r->code);
	evlog_emit(&ev);
}

static void cmd_mail(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	struct smtp_path path;
	struct smtp_mail_params mp;
	if (smtp_mail_parse(arg, &path, &mp, r) != RC_OK)
		return;
	if (mp.has_size && mp.size > s->conf->smtp.max_message_size) {
		*r = (struct smtp_reply){552, "5.3.4",
					 "Message size exceeds fixed maximum message size"};
		return;
	}
	if (s->user && !path.is_null && !policy_user_owns(s->user, path.domain)) {
		snprintf(s->text, sizeof s->text, "Sender address <%s> is not yours to use",
			 path.addr);
		*r = (struct smtp_reply){553, "5.7.1", s->text};
		log_info("sid=%016llx event=rejected reason=sender_not_owned user=%s sender=%s",
			 (unsigned long long)s->id, s->user->name, path.addr);
		str_lcpy(s->sender.addr, path.addr, sizeof s->sender.addr);
		session_emit(s, EVLOG_REJECTED, 0, NULL, r, false);
		s->sender.addr[0] = '\0';
		return;
	}
	session_reset_transaction(s);
	s->sender = path;
	s->mp = mp;
	session_enter_state(s, SMTP_ST_MAIL);
	snprintf(s->text, sizeof s->text, "Sender <%s> OK", path.addr);
	*r = (struct smtp_reply){250, "2.1.0", s->text};
}

/* session_rcpt_seen - is addr already a recipient of this transaction? Paths
 * hold the domain lower-cased, the local part as sent (RFC 5321 2.4: only the
 * recipient's host may fold its case). */
static bool session_rcpt_seen(const struct smtp_session *s, const char *addr)
{
	for (size_t i = 0; i < s->nrcpt; i++)
		if (strcmp(s->rcpt[i].addr, addr) == 0)
			return true;
	return false;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	if (smtp_rcpt_parse(arg, s->mp.smtputf8, &path, &rp, r) != RC_OK)
		return;
	if (path.domain[0] == '\0') {
		*r = (struct smtp_reply){550, "5.1.1",
					 "This relay has no local mailboxes; use a full address"};
		return;
	}
	if (path.domain[0] == '[' && s->lst->mode != CONF_LISTEN_RELAY &&
	    !s->conf->smtp.allow_address_literals) {
		/* An address literal names a host, not a domain: from a customer it is
		 * a way into whatever network that address is in (issue 12). */
		*r = (struct smtp_reply){550, "5.7.1",
					 "Recipients at address literals are not accepted here"};
		return;
	}
	if (session_rcpt_seen(s, path.addr)) {
		/* One copy reaches the recipient; the client still learns it is fine. */
		snprintf(s->text, sizeof s->text, "Recipient <%s> OK (duplicate)", path.addr);
		*r = (struct smtp_reply){250, "2.1.5", s->text};
		return;
	}
	if (s->nrcpt >= s->conf->smtp.max_recipients) {
		*r = (struct smtp_reply){452, "4.5.3", "Too many recipients"};
		return;
	}
	s->rcpt = xrealloc(s->rcpt, (s->nrcpt + 1) * sizeof *s->rcpt);
	s->rcpt[s->nrcpt++] = (struct session_rcpt){
		.addr = xstrdup(path.addr),
		.orcpt = rp.orcpt[0] ? xstrdup(rp.orcpt) : NULL,
		.notify = rp.notify,
		/* A point lookup on the store's read connection (microseconds). */
		.suppressed = s->user != NULL && store_suppression_check(s->srv->store,
									 s->user->name,
									 path.addr) == RC_OK,
	};
	session_enter_state(s, SMTP_ST_RCPT);
	snprintf(s->text, sizeof s->text, "Recipient <%s> OK", path.addr);
	*r = (struct smtp_reply){250, "2.1.5", s->text};
}

/* ---- message intake --------------------------------------------------------------- */

static void session_intake_begin(struct smtp_session *s)
{
	if (s->mc_live)
		smtp_msg_check_fini(&s->mc);
	smtp_msg_check_init(&s->mc, s->conf->smtp.max_message_size);
	s->mc_live = true;
	evbuffer_drain(s->body, evbuffer_get_length(s->body));
	session_mem_drop(s);
	s->mem_refused = false;
	s->transfer_ms = time_mono_ms();
}

/* session_mem_refuse - the budget cannot hold this message: drop what it holds
 * now (the rest is read and dropped); the client gets 452 4.3.1 at its end. */
static void session_mem_refuse(struct smtp_session *s)
{
	log_info("sid=%016llx event=memory_budget_exhausted client=%s size=%llu held=%llu "
		 "budget=%llu",
		 (unsigned long long)s->id, s->peer, (unsigned long long)s->mc.size,
		 (unsigned long long)smtp_mem_held(s->srv),
		 (unsigned long long)s->conf->smtp.memory_budget);
	s->mem_refused = true;
	evbuffer_drain(s->body, evbuffer_get_length(s->body));
	session_mem_drop(s);
}

/*
 * session_keep - append s->chunk's bytes to the body by copying, never by moving
 * its blocks: a block holding a few octets costs a kilobyte or more, so moved
 * blocks of tiny BDAT chunks (or of a DATA trickled a byte per packet) made the
 * memory held many times what smtp.memory_budget counted (issue 12). Copied,
 * the body is a run of full blocks and the count is the memory within a block.
 */
static void session_keep(struct smtp_session *s)
{
	struct evbuffer_iovec v;
	while (evbuffer_peek(s->chunk, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
		if (evbuffer_add(s->body, v.iov_base, v.iov_len) != 0)
			fatal("event=evbuffer_add_failed where=session_keep");
		evbuffer_drain(s->chunk, v.iov_len);
	}
}

/* session_intake - content bytes in s->chunk: check them, keep them if in bounds. */
static void session_intake(struct smtp_session *s)
{
	/* Walk the chunk's extents without allocating: this runs for every read. */
	struct evbuffer_ptr pos;
	struct evbuffer_iovec v[8];
	evbuffer_ptr_set(s->chunk, &pos, 0, EVBUFFER_PTR_SET);
	for (;;) {
		int n = evbuffer_peek(s->chunk, -1, &pos, v, (int)ARRAY_LEN(v));
		int got = MIN(n, (int)ARRAY_LEN(v));
		size_t done = 0;
		for (int i = 0; i < got; i++) {
			smtp_msg_check_feed(&s->mc, v[i].iov_base, v[i].iov_len);
			done += v[i].iov_len;
		}
		if (n <= (int)ARRAY_LEN(v) ||
		    evbuffer_ptr_set(s->chunk, &pos, done, EVBUFFER_PTR_ADD) != 0)
			break;
	}
	size_t n = evbuffer_get_length(s->chunk);
	if (!s->mc.too_big && !s->bdat_failed && !s->mem_refused && n > 0 &&
	    !session_mem_take(s, n))
		session_mem_refuse(s);
	if (s->mc.too_big || s->bdat_failed || s->mem_refused)
		evbuffer_drain(s->chunk, n);
	else
		session_keep(s);
}

static void cmd_data(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (session_has_arg(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: DATA (no parameters)"};
		return;
	}
	if (s->used_bdat) {
		*r = (struct smtp_reply){503, "5.5.1",
					 "DATA cannot follow BDAT in one transaction: end it with "
					 "BDAT n LAST, or RSET"};
		return;
	}
	session_intake_begin(s);
	smtp_data_init(&s->dr);
	session_enter_state(s, SMTP_ST_DATA);
	session_set_timeout(s, s->conf->smtp.timeout_data);
	*r = (struct smtp_reply){354, NULL, "End data with <CR><LF>.<CR><LF>"};
}

/* session_bdat_refuse - a refused BDAT still owns its chunk (RFC 3030 2): read
 * and drop size octets, then answer why. Never resets the transaction. */
static void session_bdat_refuse(struct smtp_session *s, uint64_t size, const struct smtp_reply *why)
{
	s->bdat_err = *why;
	if (size == 0) {
		session_reply(s, why->code, why->enh, why->text);
		session_error(s);
		return;
	}
	s->bdat_refused = true;
	s->bdat_prev = s->state;
	s->bdat_remaining = size;
	if (s->transfer_ms == 0)
		s->transfer_ms = time_mono_ms();
	session_enter_state(s, SMTP_ST_BDAT);
	session_set_timeout(s, s->conf->smtp.timeout_data);
}

/* session_bdat_size - the chunk size of a BDAT argument ("size [LAST]"). */
static bool session_bdat_size(const char *arg, uint64_t *size)
{
	char num[24];
	size_t nl = strcspn(arg, " ");
	if (nl == 0 || nl >= sizeof num)
		return false;
	memcpy(num, arg, nl);
	num[nl] = '\0';
	return str_to_u64(num, size);
}

static void cmd_bdat(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	const char *sp = strchr(arg, ' ');
	uint64_t size;
	bool last = sp && str_ieq(sp + 1, "LAST");
	if (!session_bdat_size(arg, &size) || (sp && !last)) {
		/* The chunk length is unknown: the stream cannot be resynchronised. */
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: BDAT size [LAST]"};
		return;
	}
	if (s->state != SMTP_ST_RCPT && s->state != SMTP_ST_CHUNKS) {
		struct smtp_reply why = {503, "5.5.1",
					 s->state == SMTP_ST_MAIL ? "Need RCPT before BDAT"
								  : "Need MAIL and RCPT before BDAT"};
		session_bdat_refuse(s, size, &why);
		r->code = 0;
		return;
	}
	if (!s->used_bdat) {
		session_intake_begin(s);
		s->used_bdat = true;
	}
	if (++s->bdat_chunks > SMTP_BDAT_CHUNKS_MAX && !s->bdat_failed) {
		/* Read on and refuse: the chunks that follow are still framed. */
		log_info("sid=%016llx event=reject reason=too_many_chunks client=%s chunks=%u",
			 (unsigned long long)s->id, s->peer, s->bdat_chunks);
		s->bdat_failed = true;
		s->bdat_err = (struct smtp_reply){552, "5.3.4",
						  "Too many BDAT chunks for one message; send "
						  "larger chunks"};
		evbuffer_drain(s->body, evbuffer_get_length(s->body));
		session_mem_drop(s);
	}
	s->bdat_last = last;
	s->bdat_remaining = size;
	session_enter_state(s, SMTP_ST_BDAT);
	session_set_timeout(s, s->conf->smtp.timeout_data);
	r->code = 0; /* answered when the chunk has been read */
}

static void session_on_commit(void *ctx, uint64_t cookie, enum rc rc, uint64_t msgid)
{
	struct smtp_worker *w = ctx;
	char idstr[ID_STR_LEN + 1];
	id_format(msgid, idstr);
	if (rc == RC_OK)
		metrics_inc(METRICS_RECEIVED_SMTP);
	struct smtp_session *s = smtp_worker_find(w, cookie);
	if (s == NULL || s->state != SMTP_ST_WAIT) {
		log_info("id=%s event=commit rc=%s note=client_gone", idstr, rc_name(rc));
		return;
	}
	if (rc == RC_OK) {
		log_info("id=%s sid=%016llx event=accepted sender=<%s> nrcpt=%zu size=%llu user=%s",
			 idstr, (unsigned long long)s->id, s->sender.addr, s->nrcpt,
			 (unsigned long long)s->mc.size, s->user ? s->user->name : "-");
		session_replyf(s, 250, "2.0.0", "queued as %s", idstr);
	} else {
		log_err("id=%s sid=%016llx event=commit_failed rc=%s", idstr,
			(unsigned long long)s->id, rc_name(rc));
		session_reply(s, 451, "4.3.0", "Temporary failure storing the message, try again");
	}
	session_reset_transaction(s);
	session_set_timeout(s, s->conf->smtp.timeout_command);
	session_resume(s, session_idle_state(s));
}

/* session_check_from - an authenticated user may use only its own domains in From:. */
static bool session_check_from(struct smtp_session *s, const struct smtp_hdr_info *hi,
			       struct smtp_reply *r)
{
	if (s->user == NULL)
		return true;
	if (hi->from_malformed) {
		*r = (struct smtp_reply){553, "5.7.1", "The From: header could not be parsed"};
		return false;
	}
	for (size_t i = 0; i < hi->nfrom && i < SMTP_HDR_FROM_MAX; i++) {
		if (!policy_user_owns(s->user, hi->from_domain[i])) {
			snprintf(s->text, sizeof s->text,
				 "From: header domain %s is not yours to use", hi->from_domain[i]);
			*r = (struct smtp_reply){553, "5.7.1", s->text};
			return false;
		}
	}
	return true;
}

static const char *session_protocol(const struct smtp_session *s)
{
	/* RFC 3848 and RFC 6531 7.1 "with" keywords. */
	static const char *const names[2][2][2] = {
		{{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
		{{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
	};
	if (!s->esmtp)
		return "SMTP";
	return names[s->mp.smtputf8][s->tls][s->user != NULL];
}

/* session_add_trace - Received, and Date and Message-ID when missing (RFC 6409 8). */
static void session_add_trace(struct smtp_session *s, uint64_t id,
			      const struct smtp_hdr_info *hi)
{
	char idstr[ID_STR_LEN + 1], date[64], tlsinfo[160] = "";
	id_format(id, idstr);
	time_rfc5322(time_now_ms() / 1000, date, sizeof date);
	if (s->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		snprintf(tlsinfo, sizeof tlsinfo, "\r\n\t(using %s with cipher %s)",
			 SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	}
	struct evbuffer *h = evbuffer_new();
	if (session_is_local(s))
		/* Not from the network: no "from" clause and no "with" protocol
		 * (nothing was authenticated by SMTP AUTH); the local user, as
		 * Postfix and sendmail write it for local submissions. */
		evbuffer_add_printf(h, "Received: by %s (relevo, from userid %ld)\r\n\tid %s",
				    s->conf->hostname, s->local_uid, idstr);
	else
		evbuffer_add_printf(h,
				    "Received: from %s ([%s])\r\n\tby %s (relevo) with %s id %s%s",
				    s->helo[0] ? s->helo : "unknown", s->peer, s->conf->hostname,
				    session_protocol(s), idstr, tlsinfo);
	if (s->nrcpt == 1)
		evbuffer_add_printf(h, "\r\n\tfor <%s>", s->rcpt[0].addr);
	evbuffer_add_printf(h, ";\r\n\t%s\r\n", date);
	if (!hi->has_date)
		evbuffer_add_printf(h, "Date: %s\r\n", date);
	if (!hi->has_message_id)
		evbuffer_add_printf(h, "Message-ID: <%s.%llx@%s>\r\n", idstr,
				    (unsigned long long)(time_now_ms() % 1000000),
				    s->conf->hostname);
	evbuffer_prepend_buffer(s->body, h);
	evbuffer_free(h);
}

static struct spool_env *session_envelope(struct smtp_session *s, uint64_t id, bool bulk)
{
	struct spool_env *env = xcalloc(1, sizeof *env);
	env->id = id;
	env->created = time_now_ms();
	env->sender = xstrdup(s->sender.addr);
	env->user = s->user ? xstrdup(s->user->name) : NULL;
	env->client = xstrdup(s->peer);
	env->helo = xstrdup(s->helo);
	env->envid = s->mp.envid[0] ? xstrdup(s->mp.envid) : NULL;
	env->flags = (s->mp.body == SMTP_BODY_8BITMIME || s->mc.eight_bit ? SPOOL_F_8BITMIME : 0) |
		     (s->mp.smtputf8 ? SPOOL_F_SMTPUTF8 : 0) |
		     (s->mp.ret == SMTP_RET_FULL ? SPOOL_F_RET_FULL : 0) |
		     (s->mp.ret == SMTP_RET_HDRS ? SPOOL_F_RET_HDRS : 0) |
		     (s->user && s->user->sandbox ? SPOOL_F_SANDBOX : 0) |
		     (bulk ? SPOOL_F_BULK : 0);
	env->rcpt = xcalloc(s->nrcpt, sizeof *env->rcpt);
	for (size_t i = 0; i < s->nrcpt; i++) {
		if (s->rcpt[i].suppressed)
			continue;
		struct spool_rcpt *r = &env->rcpt[env->nrcpt++];
		r->addr = s->rcpt[i].addr;
		r->orcpt = s->rcpt[i].orcpt;
		r->notify = s->rcpt[i].notify;
		s->rcpt[i].addr = s->rcpt[i].orcpt = NULL;
	}
	env->body_size = evbuffer_get_length(s->body);
	return env;
}

/*
 * session_all_suppressed - report the suppressed recipients (an event each). If
 * no recipient is left there is nothing to queue: the client still gets 250
 * (a submitter must not learn the list through SMTP; the account sees the
 * events), and true is returned.
 */
static bool session_all_suppressed(struct smtp_session *s, uint64_t id, bool bulk)
{
	size_t left = s->nrcpt;
	char idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	for (size_t i = 0; i < s->nrcpt; i++) {
		if (!s->rcpt[i].suppressed)
			continue;
		left--;
		session_emit(s, EVLOG_SUPPRESSED, id, s->rcpt[i].addr, NULL, bulk);
		log_info("id=%s sid=%016llx event=suppressed rcpt=<%s> user=%s", idstr,
			 (unsigned long long)s->id, s->rcpt[i].addr, s->user ? s->user->name : "-");
	}
	if (left > 0)
		return false;
	log_info("id=%s sid=%016llx event=all_suppressed nrcpt=%zu", idstr,
		 (unsigned long long)s->id, s->nrcpt);
	session_replyf(s, 250, "2.0.0", "queued as %s", idstr);
	session_reset_transaction(s);
	return true;
}

/*
 * session_strip_auth - leave out client-supplied Authentication-Results and
 * ARC-* fields (issue 12): they would tell the next hop that someone checked
 * what nobody did. From a customer (submission listeners) every one goes: an
 * originator has nothing authenticated yet. From a relay client (a trusted
 * forwarder, such as a list server that ARC-sealed what it forwards) only the
 * results that claim our own authserv-id, the hostname (RFC 8601 5).
 */
static void session_strip_auth(struct smtp_session *s, size_t hlen)
{
	const char *own = s->lst->mode == CONF_LISTEN_RELAY ? s->conf->hostname : NULL;
	struct evbuffer *out = evbuffer_new();
	if (out == NULL)
		fatal("event=evbuffer_new_failed where=session_strip_auth");
	size_t n = smtp_hdr_strip_auth((const char *)evbuffer_pullup(s->mc.headers, -1), hlen, own,
				       out);
	if (n > 0) {
		evbuffer_drain(s->body, hlen);
		evbuffer_prepend_buffer(s->body, out);
		log_info("sid=%016llx event=auth_headers_stripped fields=%zu", (unsigned long long)s->id,
			 n);
	}
	evbuffer_free(out);
}

/* session_message_done - the last octet of the message has arrived. */
static void session_message_done(struct smtp_session *s)
{
	struct smtp_reply r = {0};
	struct smtp_hdr_info hi;
	session_enter_state(s, session_idle_state(s));
	s->transfer_ms = 0;
	if (s->bdat_failed) {
		session_reply(s, s->bdat_err.code, s->bdat_err.enh, s->bdat_err.text);
		session_reset_transaction(s);
		return;
	}
	if (smtp_msg_check_done(&s->mc, &r) != RC_OK) {
		log_info("sid=%016llx event=rejected reason=\"%s\" size=%llu",
			 (unsigned long long)s->id, r.text, (unsigned long long)s->mc.size);
		session_emit(s, EVLOG_REJECTED, 0, NULL, &r, false);
		session_reply(s, r.code, r.enh, r.text);
		session_reset_transaction(s);
		return;
	}
	if (s->mem_refused) {
		/* RFC 3463 4.3.1: the system is full; a later try may well succeed. */
		session_reply(s, 452, "4.3.1", "Insufficient system storage, try again later");
		session_reset_transaction(s);
		return;
	}
	size_t hlen = evbuffer_get_length(s->mc.headers);
	smtp_hdr_scan((const char *)evbuffer_pullup(s->mc.headers, -1), hlen, &hi);
	if (smtp_hdr_check(&hi, s->conf->smtp.max_received_headers, &r, s->text,
			   sizeof s->text) != RC_OK) {
		log_info("sid=%016llx event=reject reason=\"%s\" received=%u from_fields=%u",
			 (unsigned long long)s->id, r.text, hi.received_fields, hi.from_fields);
		session_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		session_reply(s, r.code, r.enh, r.text);
		session_reset_transaction(s);
		return;
	}
	if (!session_check_from(s, &hi, &r)) {
		log_info("sid=%016llx event=rejected reason=from_not_owned user=%s",
			 (unsigned long long)s->id, s->user->name);
		session_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		session_reply(s, r.code, r.enh, r.text);
		session_reset_transaction(s);
		return;
	}
	size_t blen = evbuffer_get_length(s->body);
	if (blen >= 1) {
		unsigned char tail[2] = {0, 0};
		struct evbuffer_ptr pos;
		evbuffer_ptr_set(s->body, &pos, blen >= 2 ? blen - 2 : 0, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(s->body, &pos, tail, blen >= 2 ? 2 : 1);
		if (!(blen >= 2 && tail[0] == '\r' && tail[1] == '\n'))
			evbuffer_add(s->body, "\r\n", 2);
	}
	session_strip_auth(s, hlen);
	uint64_t id = id_next();
	session_add_trace(s, id, &hi);
	const char *sign_as = hi.nfrom > 0 ? hi.from_domain[0] : s->sender.domain;
	if (sign_as[0] && sign_as[0] != '[' &&
	    smtp_dkim_sign(s->srv, s->conf, s->id, sign_as, s->body, &r, s->text, sizeof s->text) != RC_OK) {
		session_emit(s, EVLOG_REJECTED, 0, NULL, &r, hi.bulk);
		session_reply(s, r.code, r.enh, r.text);
		session_reset_transaction(s);
		return;
	}
	if (session_all_suppressed(s, id, hi.bulk))
		return;
	struct spool_env *env = session_envelope(s, id, hi.bulk);
	struct evbuffer *body = s->body;
	s->body = NULL;
	char idstr[ID_STR_LEN + 1];
	id_format(id, idstr);
	/* The info line is "accepted", once durable; this one is for debugging. */
	log_debug("id=%s sid=%016llx event=committing sender=<%s> nrcpt=%zu size=%llu",
		  idstr, (unsigned long long)s->id, env->sender, env->nrcpt,
		  (unsigned long long)env->body_size);
	session_pause(s);
	spool_commit(s->srv->spool, env, body, s->w->base, session_on_commit, s->w, s->id);
}

/* session_read_data - DATA content: unstuff, check, store; end at CRLF.CRLF. */
static bool session_read_data(struct smtp_session *s, struct evbuffer *in)
{
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		enum rc rc = smtp_data_feed(&s->dr, v.iov_base, v.iov_len, &used, s->chunk);
		evbuffer_drain(in, used);
		session_intake(s);
		if (rc == RC_OK) {
			session_message_done(s);
			return true;
		}
	}
	return false;
}

/* session_read_bdat - a BDAT chunk: exactly the announced number of octets. */
static bool session_read_bdat(struct smtp_session *s, struct evbuffer *in)
{
	size_t n = (size_t)MIN((uint64_t)evbuffer_get_length(in), s->bdat_remaining);
	evbuffer_remove_buffer(in, s->chunk, n);
	s->bdat_remaining -= n;
	if (s->bdat_refused)
		evbuffer_drain(s->chunk, evbuffer_get_length(s->chunk));
	else
		session_intake(s);
	if (s->bdat_remaining > 0)
		return false;
	session_set_timeout(s, s->conf->smtp.timeout_command);
	if (s->bdat_refused) {
		s->bdat_refused = false;
		if (!s->used_bdat)
			s->transfer_ms = 0;
		session_enter_state(s, s->bdat_prev);
		session_reply(s, s->bdat_err.code, s->bdat_err.enh, s->bdat_err.text);
		return !session_error(s);
	}
	if (s->bdat_last) {
		session_message_done(s);
		return true;
	}
	session_enter_state(s, SMTP_ST_CHUNKS);
	if (s->mc.too_big && !s->bdat_failed) {
		s->bdat_failed = true;
		s->bdat_err = (struct smtp_reply){552, "5.3.4",
						  "Message size exceeds fixed maximum message size"};
	} else if (s->mem_refused && !s->bdat_failed) {
		s->bdat_failed = true;
		s->bdat_err = (struct smtp_reply){452, "4.3.1",
						  "Insufficient system storage, try again later"};
	}
	if (s->bdat_failed)
		session_reply(s, s->bdat_err.code, s->bdat_err.enh, s->bdat_err.text);
	else
		session_replyf(s, 250, "2.0.0", "%llu octets received",
			       (unsigned long long)s->mc.size);
	return true;
}

/* ---- the command table and dispatcher ---------------------------------------------- */

#define CMD_NEEDS_AUTH 0x01	/* submission listeners: only after AUTH */
#define CMD_NO_ARG 0x02
#define CMD_GROUP_END 0x04	/* ends a pipelined group (RFC 2920 3.1) */

struct smtp_cmd_def {
	enum smtp_verb verb;
	unsigned states;
	unsigned flags;
	void (*fn)(struct smtp_session *s, const char *arg, struct smtp_reply *r);
	const char *bad_seq;	/* 503 text when not allowed in this state */
};

#define ST_ANY (ST(GREETED) | ST(READY) | ST(MAIL) | ST(RCPT) | ST(CHUNKS))
static const struct smtp_cmd_def smtp_cmds[] = {
	{SMTP_V_EHLO, ST_ANY, CMD_GROUP_END, cmd_ehlo, NULL},
	{SMTP_V_HELO, ST_ANY, CMD_GROUP_END, cmd_helo, NULL},
	{SMTP_V_STARTTLS, ST(READY), CMD_NO_ARG, cmd_starttls, "STARTTLS needs EHLO first and no transaction"},
	{SMTP_V_AUTH, ST(READY), 0, cmd_auth, "AUTH needs EHLO first and is not allowed during a transaction"},
	{SMTP_V_MAIL, ST(READY), CMD_NEEDS_AUTH, cmd_mail, "Send EHLO first, or finish the transaction in progress"},
	{SMTP_V_RCPT, ST(MAIL) | ST(RCPT), CMD_NEEDS_AUTH, cmd_rcpt, "Need MAIL before RCPT"},
	{SMTP_V_DATA, ST(RCPT) | ST(CHUNKS), CMD_NEEDS_AUTH | CMD_GROUP_END, cmd_data,
	 "Need RCPT before DATA"},
	{SMTP_V_BDAT, ST_ANY, CMD_NEEDS_AUTH, cmd_bdat, NULL},
	{SMTP_V_RSET, ST_ANY, CMD_NO_ARG, cmd_rset, NULL},
	{SMTP_V_NOOP, ST_ANY, 0, cmd_noop, NULL},
	{SMTP_V_VRFY, ST_ANY, 0, cmd_vrfy, NULL},
	{SMTP_V_EXPN, ST_ANY, 0, cmd_expn, NULL},
	{SMTP_V_HELP, ST_ANY, 0, cmd_help, NULL},
	{SMTP_V_QUIT, ST_ANY, 0, cmd_quit, NULL},
};

static const struct smtp_cmd_def *cmd_lookup(enum smtp_verb v)
{
	for (size_t i = 0; i < ARRAY_LEN(smtp_cmds); i++)
		if (smtp_cmds[i].verb == v)
			return &smtp_cmds[i];
	return NULL;
}

/* session_gate - the 503/530/538 checks of the command table; true if allowed. */
static bool session_gate(struct smtp_session *s, const struct smtp_cmd_def *d,
			 const char *arg, struct smtp_reply *r)
{
	bool needs_auth = (d->flags & CMD_NEEDS_AUTH) && s->lst->mode != CONF_LISTEN_RELAY;
	if (needs_auth && !s->tls && !session_is_local(s)) {
		*r = (struct smtp_reply){530, "5.7.0", "Must issue a STARTTLS command first"};
		return false;
	}
	if (d->verb == SMTP_V_AUTH && !s->tls && s->lst->mode != CONF_LISTEN_RELAY &&
	    !session_is_local(s)) {
		*r = (struct smtp_reply){538, "5.7.11",
					 "Encryption required for requested authentication mechanism"};
		return false;
	}
	if (needs_auth && s->user == NULL) {
		*r = (struct smtp_reply){530, "5.7.0", "Authentication required"};
		return false;
	}
	if (d->verb == SMTP_V_BDAT && s->state != SMTP_ST_RCPT && s->state != SMTP_ST_CHUNKS &&
	    s->state != SMTP_ST_MAIL && s->state != SMTP_ST_READY) {
		*r = (struct smtp_reply){503, "5.5.1", "Send EHLO first"};
		return false;
	}
	if (!(d->states & (1u << s->state))) {
		*r = (struct smtp_reply){503, "5.5.1", d->bad_seq ? d->bad_seq : "Bad sequence of commands"};
		return false;
	}
	if ((d->flags & CMD_NO_ARG) && session_has_arg(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "This command takes no parameters"};
		return false;
	}
	return true;
}

/*
 * session_pipelining_error - a client sent more behind a command that must end a
 * pipelined group (EHLO, HELO, DATA: RFC 2920 3.1), i.e. before it could have
 * seen the reply. Nothing of it is executed: what follows HELO or DATA was
 * written for a state the client could only guess (the smuggling pattern), so
 * 554 5.5.0 and close, as Postfix does ("improper command pipelining").
 */
static void session_pipelining_error(struct smtp_session *s, enum smtp_verb v)
{
	const char *verb = smtp_verb_name(v);
	log_info("sid=%016llx event=improper_pipelining client=%s after=%s",
		 (unsigned long long)s->id, s->peer, verb);
	session_replyf(s, 554, "5.5.0",
		       "%s Protocol error: improper command pipelining after %s (wait for its "
		       "reply)",
		       s->conf->hostname, verb);
	session_close(s);
}

/* session_command - parse, gate, run and answer one command line. */
static void session_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	struct smtp_reply r = {0};
	if (smtp_cmd_parse(line, len, &cmd, &r) != RC_OK) {
		session_reply(s, r.code, r.enh, r.text);
		session_error(s);
		return;
	}
	const struct smtp_cmd_def *d = cmd_lookup(cmd.verb);
	if (d == NULL) {
		session_reply(s, 500, "5.5.1", "Command not recognized");
		session_error(s);
		return;
	}
	if (!session_gate(s, d, cmd.arg, &r)) {
		uint64_t n;
		if (d->verb == SMTP_V_BDAT && session_bdat_size(cmd.arg, &n) && n > 0) {
			session_bdat_refuse(s, n, &r);
			return;
		}
		session_reply(s, r.code, r.enh, r.text);
		session_error(s);
		return;
	}
	if ((d->flags & CMD_GROUP_END) &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		session_pipelining_error(s, cmd.verb);
		return;
	}
	d->fn(s, cmd.arg, &r);
	if (r.code == 0)
		return;
	session_reply(s, r.code, r.enh, r.text);
	if (r.code >= 500 && r.code != 552)
		session_error(s);
	if (d->verb == SMTP_V_BDAT && r.code >= 500) {
		/* Unparseable BDAT size: the octets that follow cannot be framed. */
		session_replyf(s, 421, "4.5.0", "%s Cannot resynchronise after bad BDAT",
			       s->conf->hostname);
		session_close(s);
	}
}

/* session_discard_line - drop input up to the CRLF that ends an over-long line. */
static bool session_discard_line(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr p = evbuffer_search(in, "\r\n", 2, NULL);
	if (p.pos >= 0) {
		evbuffer_drain(in, (size_t)p.pos + 2);
		s->discarding = false;
		s->line_ms = 0;
		return true;
	}
	size_t len = evbuffer_get_length(in);
	unsigned char last = 0;
	if (len > 0) {
		struct evbuffer_ptr lp;
		evbuffer_ptr_set(in, &lp, len - 1, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &lp, &last, 1);
	}
	evbuffer_drain(in, last == '\r' ? len - 1 : len);
	return false;
}

/* session_read_line - one command (or AUTH) line; false when more input is needed. */
static bool session_read_line(struct smtp_session *s, struct evbuffer *in)
{
	if (s->discarding && !session_discard_line(s, in))
		return false;
	size_t avail = evbuffer_get_length(in);
	if (avail == 0)
		return false;
	size_t max = SMTP_CMD_LINE_MAX;
	unsigned char head[5] = {0};
	evbuffer_copyout(in, head, MIN(avail, sizeof head));
	if (s->state == SMTP_ST_AUTH || strncasecmp((const char *)head, "AUTH ", 5) == 0)
		max = SMTP_AUTH_LINE_MAX;
	size_t n = MIN(avail, max), linelen = 0, consumed = 0;
	const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
	enum rc rc = smtp_line_scan(p, n, max, &linelen, &consumed);
	if (rc == RC_AGAIN)
		return false;
	if (rc == RC_LIMIT) {
		evbuffer_drain(in, consumed);
		s->discarding = true;
		s->auth_step = AUTH_NONE;
		if (s->state == SMTP_ST_AUTH)
			session_enter_state(s, session_idle_state(s));
		session_reply(s, 500, "5.5.2", "Line too long");
		session_error(s);
		return true;
	}
	memcpy(s->line, p, linelen);
	s->line[linelen] = '\0';
	evbuffer_drain(in, consumed);
	s->line_ms = 0; /* the next line's clock starts with its first byte */
	if (s->state == SMTP_ST_AUTH)
		session_auth_line(s, s->line);
	else
		session_command(s, s->line, linelen);
	explicit_bzero(s->line, linelen);
	return true;
}

/* A client that pipelines commands without reading our replies must not make us
 * buffer replies without end: past this much unsent output, stop reading. */
#define SMTP_OUT_HIGH (256 * 1024)

/* session_consume - consume buffered input until it runs out or we must wait. */
static void session_consume(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	for (;;) {
		bool progress;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SMTP_OUT_HIGH &&
		    s->state != SMTP_ST_CLOSING && s->state != SMTP_ST_WAIT) {
			s->out_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case SMTP_ST_CONNECTED:
			if (evbuffer_get_length(in) == 0)
				return;
			/* RFC 5321 4.3.1: the client waits for the greeting. */
			session_replyf(s, 554, "5.5.0",
				       "%s Protocol error: you talked before the greeting",
				       s->conf->hostname);
			log_info("sid=%016llx event=early_talker client=%s",
				 (unsigned long long)s->id, s->peer);
			session_close(s);
			return;
		case SMTP_ST_DATA:
			progress = session_read_data(s, in);
			break;
		case SMTP_ST_BDAT:
			progress = session_read_bdat(s, in);
			break;
		case SMTP_ST_WAIT:
		case SMTP_ST_TLS:
		case SMTP_ST_CLOSING:
			return;
		default:
			progress = session_read_line(s, in);
			break;
		}
		if (!progress)
			return;
	}
}

/* ---- totals: session, command line, transfer ------------------------------------------ */

/* session_reads_lines - is a command (or AUTH) line what the session waits for? */
static bool session_reads_lines(const struct smtp_session *s)
{
	return (1u << s->state) &
	       (ST(GREETED) | ST(READY) | ST(MAIL) | ST(RCPT) | ST(CHUNKS) | ST(AUTH));
}

/* The totals session_on_deadline enforces, in the order they are checked. */
enum session_total { TOTAL_NONE, TOTAL_SESSION, TOTAL_TRANSFER, TOTAL_COMMAND };
static const struct {
	const char *name;	/* for the log */
	const char *text;	/* for the 421 */
} session_totals[] = {
	[TOTAL_SESSION] = {"session", "the session lasted"},
	[TOTAL_TRANSFER] = {"transfer", "the message transfer took"},
	[TOTAL_COMMAND] = {"command", "the command line took"},
};

/* session_total_secs - the configured limit of a total. */
static unsigned session_total_secs(const struct smtp_session *s, enum session_total t)
{
	return t == TOTAL_SESSION    ? s->conf->smtp.session_max_time
	       : t == TOTAL_TRANSFER ? s->conf->smtp.timeout_data_total
				     : s->conf->smtp.timeout_command;
}

/* session_overdue - the first total that has run out at now. */
static enum session_total session_overdue(const struct smtp_session *s, int64_t now)
{
	if (now - s->started_ms >= (int64_t)session_total_secs(s, TOTAL_SESSION) * 1000)
		return TOTAL_SESSION;
	if (s->transfer_ms &&
	    now - s->transfer_ms >= (int64_t)session_total_secs(s, TOTAL_TRANSFER) * 1000)
		return TOTAL_TRANSFER;
	if (s->line_ms && now - s->line_ms >= (int64_t)session_total_secs(s, TOTAL_COMMAND) * 1000)
		return TOTAL_COMMAND;
	return TOTAL_NONE;
}

/* session_arm_deadline - (re)start the timer for the earliest total still running.
 * A command line's clock starts at its first byte and stops at its CRLF. */
static void session_arm_deadline(struct smtp_session *s)
{
	if (s->state == SMTP_ST_CLOSING) {
		evtimer_del(s->deadline_ev);
		return;
	}
	int64_t now = time_mono_ms();
	bool partial = session_reads_lines(s) &&
		       (s->discarding || evbuffer_get_length(bufferevent_get_input(s->bev)) > 0);
	if (!partial)
		s->line_ms = 0;
	else if (s->line_ms == 0)
		s->line_ms = now;
	int64_t due = s->started_ms + (int64_t)session_total_secs(s, TOTAL_SESSION) * 1000;
	if (s->line_ms)
		due = MIN(due, s->line_ms + (int64_t)session_total_secs(s, TOTAL_COMMAND) * 1000);
	if (s->transfer_ms)
		due = MIN(due,
			  s->transfer_ms + (int64_t)session_total_secs(s, TOTAL_TRANSFER) * 1000);
	int64_t left = MAX(due - now, (int64_t)0);
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	evtimer_add(s->deadline_ev, &tv);
}

/* session_on_deadline - a total ran out: 421 4.4.2 and close. */
static void session_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval again = {1, 0};
	struct smtp_session *s = arg;
	if (s->state == SMTP_ST_CLOSING)
		return;
	enum session_total t = session_overdue(s, time_mono_ms());
	if (t == TOTAL_NONE) {
		session_arm_deadline(s);
		return;
	}
	if (s->state == SMTP_ST_WAIT) {
		/* Our turn (a commit, a password check): answer that first. */
		evtimer_add(s->deadline_ev, &again);
		return;
	}
	unsigned secs = session_total_secs(s, t);
	log_info("sid=%016llx event=timeout client=%s state=%s limit=%s seconds=%u",
		 (unsigned long long)s->id, s->peer, smtp_state_names[s->state],
		 session_totals[t].name, secs);
	if (s->state != SMTP_ST_TLS && s->state != SMTP_ST_CONNECTED)
		session_replyf(s, 421, "4.4.2",
			       "%s Timeout: %s more than %u seconds, closing connection",
			       s->conf->hostname, session_totals[t].text, secs);
	bufferevent_enable(s->bev, EV_WRITE);
	session_close(s);
}

/* session_process - consume what can be consumed, then re-arm the totals. */
static void session_process(struct smtp_session *s)
{
	session_consume(s);
	session_arm_deadline(s);
}

/* ---- bufferevent callbacks ---------------------------------------------------------- */

static void session_on_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void session_on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
		return;
	if (s->state == SMTP_ST_CLOSING)
		session_defer(s, session_free, 0);
	else if (s->state == SMTP_ST_TLS && !s->bev_owns_fd)
		session_start_tls(s);
	else if (s->out_paused && s->state != SMTP_ST_WAIT) {
		s->out_paused = false;
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void session_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is complete. */
		bool implicit = s->state == SMTP_ST_CONNECTED;
		session_on_tls_ready(s);
		if (implicit) {
			if (s->conf->smtp.greeting_delay_ms)
				session_defer(s, session_greet_deferred,
					      s->conf->smtp.greeting_delay_ms);
			else
				session_greet(s);
		} else {
			session_enter_state(s, SMTP_ST_GREETED);
		}
		session_process(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("sid=%016llx event=timeout client=%s state=%s", (unsigned long long)s->id,
			 s->peer, smtp_state_names[s->state]);
		if (s->state != SMTP_ST_TLS && s->state != SMTP_ST_CONNECTED &&
		    s->state != SMTP_ST_CLOSING)
			session_replyf(s, 421, "4.4.2", "%s Timeout exceeded, closing connection",
				       s->conf->hostname);
		bufferevent_enable(s->bev, EV_WRITE);
		session_close(s);
		return;
	}
	/* EOF or error: nothing more can be said to this client. */
	if (what & BEV_EVENT_ERROR)
		log_info("sid=%016llx event=connection_error client=%s state=%s error=\"%s\"",
			 (unsigned long long)s->id, s->peer, smtp_state_names[s->state],
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (s->state == SMTP_ST_WAIT) {
		/* A commit is in flight: it completes (and the message stays queued);
		 * the session goes when its answer cannot be delivered. */
		s->stop_after_reply = true;
		s->dead = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		evbuffer_drain(bufferevent_get_output(s->bev),
			       evbuffer_get_length(bufferevent_get_output(s->bev)));
		return;
	}
	s->dead = true;
	session_close(s);
}

/* ---- start ------------------------------------------------------------------------------ */

static void session_peer_text(struct smtp_session *s)
{
	if (s->sa.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&s->sa)->sin_addr, s->peer,
			  sizeof s->peer);
	else if (s->sa.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&s->sa)->sin6_addr, s->peer,
			  sizeof s->peer);
	else if (s->sa.ss_family == AF_UNIX)
		str_lcpy(s->peer, "local", sizeof s->peer);
	else
		str_lcpy(s->peer, "unknown", sizeof s->peer);
}

/* session_local_start - who is on the local socket; false (refused, closing) if
 * the uid may not submit. */
static bool session_local_start(struct smtp_session *s)
{
	struct smtp_reply r;
	if (smtp_local_identify(s->srv, s->conf, s->fd, &s->local_uid, &s->user, &r, s->text,
				sizeof s->text) == RC_OK) {
		log_info("sid=%016llx event=local_submit uid=%ld user=%s", (unsigned long long)s->id,
			 s->local_uid, s->user->name);
		return true;
	}
	log_info("sid=%016llx event=rejected reason=local_submit_refused uid=%ld reply=\"%d %s %s\"",
		 (unsigned long long)s->id, s->local_uid, r.code, r.enh, r.text);
	session_reply(s, r.code, r.enh, r.text);
	session_close(s);
	return false;
}

/* smtp_session_start - take over an accepted, counted connection (and p's
 * references to its conf and TLS context). */
void smtp_session_start(struct smtp_worker *w, struct smtp_pending *p)
{
	evutil_socket_t fd = p->fd;
	const struct sockaddr_storage *sa = &p->sa;
	const struct conf_listen *lst = p->lst;
	struct smtp_session *s = xcalloc(1, sizeof *s);
	s->id = atomic_fetch_add(&session_seq, 1);
	s->w = w;
	s->srv = w->srv;
	s->conf = p->conf;
	s->tls_ctx = p->tls;
	s->lst = lst;
	s->fd = fd;
	s->counted = true;
	metrics_session(lst->address, 1);
	memcpy(&s->sa, sa, sizeof s->sa);
	session_peer_text(s);
	s->chunk = evbuffer_new();
	s->body = evbuffer_new();
	s->defer_ev = evtimer_new(w->base, session_on_defer, s);
	s->deadline_ev = evtimer_new(w->base, session_on_deadline, s);
	s->started_ms = time_mono_ms();
	evutil_make_socket_nonblocking(fd);
	smtp_worker_register(w, s, s->id);
	log_info("sid=%016llx event=connect client=%s listener=%s mode=%s",
		 (unsigned long long)s->id, s->peer, lst->address,
		 conf_listen_mode_name(lst->mode));
	if (lst->mode == CONF_LISTEN_SUBMISSIONS) {
		SSL *ssl = SSL_new(s->tls_ctx);
		s->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							BEV_OPT_CLOSE_ON_FREE |
								BEV_OPT_DEFER_CALLBACKS);
		s->bev_owns_fd = true;
		if (s->bev)
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	} else {
		s->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_DEFER_CALLBACKS);
	}
	if (s->bev == NULL)
		fatal("event=bufferevent_new_failed");
	bufferevent_setcb(s->bev, session_on_read, session_on_write, session_on_event, s);
	session_set_timeout(s, s->conf->smtp.timeout_command);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	session_enter_state(s, SMTP_ST_CONNECTED);
	session_arm_deadline(s);
	if (lst->mode == CONF_LISTEN_RELAY && !conf_is_trusted(s->conf, (struct sockaddr *)sa)) {
		session_replyf(s, 554, "5.7.1", "%s Your address is not allowed to relay here",
			       s->conf->hostname);
		log_info("sid=%016llx event=rejected reason=untrusted_relay client=%s",
			 (unsigned long long)s->id, s->peer);
		session_close(s);
		return;
	}
	if (lst->mode == CONF_LISTEN_SUBMISSIONS)
		return; /* greeting after the handshake */
	if (lst->mode == CONF_LISTEN_LOCAL && !session_local_start(s))
		return;
	if (s->conf->smtp.greeting_delay_ms)
		session_defer(s, session_greet_deferred, s->conf->smtp.greeting_delay_ms);
	else
		session_greet(s);
}
