/*
 * smtp_session.c - one SMTP server session: the state machine (lifetime, the
 * read loop, idle timeouts and totals, the greeting, STARTTLS's switch to TLS).
 * The command table is in smtp_cmd.c, AUTH in smtp_auth.c, the transaction in
 * smtp_tx.c, the end of a message in smtp_submit.c (see smtp_session.h).
 *
 * Invariants:
 * - Exactly one function, smtp_session_enter_state(), changes s->state (and logs
 *   it at debug level).
 * - While an asynchronous step is pending (SMTP_ST_WAIT) the session reads
 *   nothing, so pipelined commands wait in the input buffer, and a completion
 *   finds the session by its 64-bit id (the registry in smtp_server.c): a session
 *   that ended meanwhile simply drops the result.
 * - A session is freed only from a deferred event (session_on_defer), never
 *   deep inside a handler.
 * - Besides the idle timeouts (bufferevent, reset by every byte), one timer
 *   (deadline_ev) enforces totals a trickling client cannot stretch: a command
 *   line complete within smtp.timeout_command of its first byte, a DATA/BDAT
 *   transfer within smtp.timeout_data_total, a session within
 *   smtp.session_max_time. It is re-armed after each batch of input.
 */
#include "smtp/smtp_session.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>

static const char *const smtp_state_names[] = {
	"connected", "greeted", "ready", "mail", "rcpt", "chunks", "data",
	"bdat", "auth", "tls", "wait", "closing",
};
_Static_assert(ARRAY_LEN(smtp_state_names) == SMTP_ST__COUNT, "smtp_state_names");

static atomic_uint_fast64_t session_seq = 1;

/* smtp_session_id - the registry key of a session. */
uint64_t smtp_session_id(const struct smtp_session *s);
uint64_t smtp_session_id(const struct smtp_session *s)
{
	return s->id;
}

static void session_process(struct smtp_session *s);
static void session_on_read(struct bufferevent *bev, void *arg);
static void session_on_write(struct bufferevent *bev, void *arg);
static void session_on_event(struct bufferevent *bev, short what, void *arg);

/* ---- state, replies, lifetime -------------------------------------------- */

/* smtp_session_enter_state - the one place s->state changes (logged at debug). */
void smtp_session_enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state == st)
		return;
	log_debug("sid=%016llx event=state from=%s to=%s", (unsigned long long)s->id,
		  smtp_state_names[s->state], smtp_state_names[st]);
	s->state = st;
}

/* smtp_session_reply - queue one reply. */
void smtp_session_reply(struct smtp_session *s, int code, const char *enh, const char *text)
{
	smtp_reply_append(bufferevent_get_output(s->bev), code, enh, text);
}

/* smtp_session_replyf - queue one reply, its text formatted into s->text. */
void smtp_session_replyf(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->text, sizeof s->text, fmt, ap);
	va_end(ap);
	smtp_session_reply(s, code, enh, s->text);
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
	smtp_tx_fini(s);
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

/* smtp_session_defer - run fn(s) from the session's timer, ms from now. */
void smtp_session_defer(struct smtp_session *s, void (*fn)(struct smtp_session *),
			  unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	s->defer_fn = fn;
	event_add(s->defer_ev, &tv);
}

/* smtp_session_close - stop reading; free once the queued output has been written. */
void smtp_session_close(struct smtp_session *s)
{
	if (s->state == SMTP_ST_CLOSING) {
		/* Already closing: if the peer is gone, its output never drains. */
		if (s->dead) {
			evbuffer_drain(bufferevent_get_output(s->bev),
				       evbuffer_get_length(bufferevent_get_output(s->bev)));
			smtp_session_defer(s, session_free, 0);
		}
		return;
	}
	smtp_session_enter_state(s, SMTP_ST_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	if (s->dead)
		evbuffer_drain(bufferevent_get_output(s->bev),
			       evbuffer_get_length(bufferevent_get_output(s->bev)));
	evbuffer_drain(bufferevent_get_input(s->bev),
		       evbuffer_get_length(bufferevent_get_input(s->bev)));
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_session_defer(s, session_free, 0);
	/* else session_on_write frees it when the output is drained */
}

/* smtp_session_error - count a client error; past the limit, 421 and close. */
bool smtp_session_error(struct smtp_session *s)
{
	if (++s->errors < s->conf->smtp.max_errors)
		return false;
	smtp_session_replyf(s, 421, "4.7.0", "%s Too many errors, closing connection",
		       s->conf->hostname);
	log_info("sid=%016llx event=too_many_errors client=%s", (unsigned long long)s->id,
		 s->peer);
	smtp_session_close(s);
	return true;
}

/* smtp_session_idle_state - where a session goes when no transaction is open. */
enum smtp_state smtp_session_idle_state(const struct smtp_session *s)
{
	return s->helo[0] ? SMTP_ST_READY : SMTP_ST_GREETED;
}

/* smtp_session_set_timeout - the idle read timeout (writes: smtp.timeout_command). */
void smtp_session_set_timeout(struct smtp_session *s, unsigned secs)
{
	struct timeval rtv = {secs, 0}, wtv = {s->conf->smtp.timeout_command, 0};
	bufferevent_set_timeouts(s->bev, &rtv, &wtv);
}

/* smtp_session_pause - wait for an asynchronous step; input stays buffered. */
void smtp_session_pause(struct smtp_session *s)
{
	s->resume_state = smtp_session_idle_state(s);
	smtp_session_enter_state(s, SMTP_ST_WAIT);
	bufferevent_disable(s->bev, EV_READ);
}

/* smtp_session_resume - the asynchronous step is answered: go on with buffered input. */
void smtp_session_resume(struct smtp_session *s, enum smtp_state st)
{
	smtp_session_enter_state(s, st);
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
		smtp_session_replyf(s, 421, "4.3.2", "%s Service shutting down, try again later",
			       s->conf->hostname);
	smtp_session_close(s);
}

/* ---- the greeting ----------------------------------------------------------- */

static void session_greet(struct smtp_session *s)
{
	smtp_session_replyf(s, 220, NULL, "%s ESMTP relevo", s->conf->hostname);
	smtp_session_enter_state(s, SMTP_ST_GREETED);
	smtp_session_set_timeout(s, s->conf->smtp.timeout_command);
}

static void session_greet_deferred(struct smtp_session *s)
{
	if (s->state != SMTP_ST_CONNECTED)
		return;
	session_greet(s);
	session_process(s);
}

/* smtp_session_is_local - local submission: a unix socket, the account known from the
 * peer's uid; there is nothing to encrypt and no password to ask for. */
bool smtp_session_is_local(const struct smtp_session *s)
{
	return s->lst->mode == CONF_LISTEN_LOCAL;
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------------ */

static void session_on_tls_ready(struct smtp_session *s)
{
	s->tls = true;
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	s->helo[0] = '\0';
	s->esmtp = false;
	smtp_tx_reset(s);
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
	smtp_session_set_timeout(s, s->conf->smtp.timeout_command);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
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
		s->auth_step = SMTP_AUTH_NONE;
		if (s->state == SMTP_ST_AUTH)
			smtp_session_enter_state(s, smtp_session_idle_state(s));
		smtp_session_reply(s, 500, "5.5.2", "Line too long");
		smtp_session_error(s);
		return true;
	}
	memcpy(s->line, p, linelen);
	s->line[linelen] = '\0';
	evbuffer_drain(in, consumed);
	s->line_ms = 0; /* the next line's clock starts with its first byte */
	if (s->state == SMTP_ST_AUTH)
		smtp_auth_continue(s, s->line);
	else
		smtp_cmd_dispatch(s, s->line, linelen);
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
			smtp_session_replyf(s, 554, "5.5.0",
				       "%s Protocol error: you talked before the greeting",
				       s->conf->hostname);
			log_info("sid=%016llx event=early_talker client=%s",
				 (unsigned long long)s->id, s->peer);
			smtp_session_close(s);
			return;
		case SMTP_ST_DATA:
			progress = smtp_tx_read_data(s, in);
			break;
		case SMTP_ST_BDAT:
			progress = smtp_tx_read_bdat(s, in);
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
	if (s->tx.transfer_ms &&
	    now - s->tx.transfer_ms >= (int64_t)session_total_secs(s, TOTAL_TRANSFER) * 1000)
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
	if (s->tx.transfer_ms)
		due = MIN(due,
			  s->tx.transfer_ms + (int64_t)session_total_secs(s, TOTAL_TRANSFER) * 1000);
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
		smtp_session_replyf(s, 421, "4.4.2",
			       "%s Timeout: %s more than %u seconds, closing connection",
			       s->conf->hostname, session_totals[t].text, secs);
	bufferevent_enable(s->bev, EV_WRITE);
	smtp_session_close(s);
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
		smtp_session_defer(s, session_free, 0);
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
				smtp_session_defer(s, session_greet_deferred,
					      s->conf->smtp.greeting_delay_ms);
			else
				session_greet(s);
		} else {
			smtp_session_enter_state(s, SMTP_ST_GREETED);
		}
		session_process(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("sid=%016llx event=timeout client=%s state=%s", (unsigned long long)s->id,
			 s->peer, smtp_state_names[s->state]);
		if (s->state != SMTP_ST_TLS && s->state != SMTP_ST_CONNECTED &&
		    s->state != SMTP_ST_CLOSING)
			smtp_session_replyf(s, 421, "4.4.2", "%s Timeout exceeded, closing connection",
				       s->conf->hostname);
		bufferevent_enable(s->bev, EV_WRITE);
		smtp_session_close(s);
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
	smtp_session_close(s);
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
	smtp_session_reply(s, r.code, r.enh, r.text);
	smtp_session_close(s);
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
	s->tx.body = evbuffer_new();
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
	smtp_session_set_timeout(s, s->conf->smtp.timeout_command);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_session_enter_state(s, SMTP_ST_CONNECTED);
	session_arm_deadline(s);
	if (lst->mode == CONF_LISTEN_RELAY && !conf_is_trusted(s->conf, (struct sockaddr *)sa)) {
		smtp_session_replyf(s, 554, "5.7.1", "%s Your address is not allowed to relay here",
			       s->conf->hostname);
		log_info("sid=%016llx event=rejected reason=untrusted_relay client=%s",
			 (unsigned long long)s->id, s->peer);
		smtp_session_close(s);
		return;
	}
	if (lst->mode == CONF_LISTEN_SUBMISSIONS)
		return; /* greeting after the handshake */
	if (lst->mode == CONF_LISTEN_LOCAL && !session_local_start(s))
		return;
	if (s->conf->smtp.greeting_delay_ms)
		smtp_session_defer(s, session_greet_deferred, s->conf->smtp.greeting_delay_ms);
	else
		session_greet(s);
}
