/*
 * mta_client.c - one outbound SMTP connection: the client state machine
 * (RFC 5321), mirroring the server's (STYLE.md "Protocol state machines").
 * Opening: connect, greeting, EHLO (HELO after a 5xx), STARTTLS (RFC 3207),
 * AUTH PLAIN/LOGIN (RFC 4954). Transactions live in mta_client_txn.c, TLS
 * details in mta_client_tls.c; what they share is mta_client_int.h.
 *
 * Invariants:
 * - Exactly one function, conn_enter_state(), changes c->state; entering a
 *   state sends its command (with PIPELINING, entering MAIL sends the whole
 *   MAIL/RCPT/DATA group, RFC 2920 3.1). A complete reply is handled by the
 *   current state (conn_on_reply's switch); reply codes become outcomes only
 *   through mta_reply_class().
 * - c->expect counts replies the server owes us. A reply when none is owed, or
 *   bytes already waiting when we are about to send a command that starts a
 *   new exchange, is a protocol error (a server talking out of turn: injected
 *   or surplus replies). After STARTTLS's 220 whatever follows is discarded
 *   instead (CVE-2011-0411, mirrored).
 * - Every reply wait has a deadline (c->timer) armed on entering the state and
 *   after each reply; it is not extended by partial data, so a server trickling
 *   bytes cannot hold us beyond it. Writes have the bufferevent write timeout.
 * - The owner's callbacks run only from c->notify_ev, i.e. from the top of an
 *   event callback of ours with nothing of c used after them: the owner may
 *   close the connection (free it) or start the next transaction from inside.
 *   ready() with a failure runs after c was freed (c is NULL there).
 * - mta_conn_close() frees at once: a QUIT is written straight to the socket
 *   (or the TLS session) only when the connection is idle and clean; no
 *   callback runs after it.
 * Failure model: nothing a server does is fatal: every failure ends the
 * connection with RC_TEMPFAIL (ready) or TEMPFAIL for every undecided
 * recipient (done), except 5xx replies that decide the result themselves.
 */
#include "mta/mta_client_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/evp.h>

/* RFC 5321 4.5.3.2 defaults, for timeouts given as 0 (seconds). */
#define DEFAULT_TMO_CONNECT 30
#define DEFAULT_TMO_GREETING 300
#define DEFAULT_TMO_CMD 300	/* EHLO, MAIL, RCPT */
#define DEFAULT_TMO_DATA 180	/* 354 and each body write */
#define DEFAULT_TMO_FINAL 600

#define AUTH_FIELD_MAX 255	/* user and password for AUTH */

static const struct mta_cstate_def cstates[] = {
	/* name		"connection lost ..."		deadline	opening reads */
	{"connect", "while connecting", MTA_TMO_CONNECT, true, false},
	{"greeting", "after connect", MTA_TMO_GREETING, true, true},
	{"ehlo", "after EHLO", MTA_TMO_EHLO, true, true},
	{"helo", "after HELO", MTA_TMO_EHLO, true, true},
	{"starttls", "after STARTTLS", MTA_TMO_EHLO, true, true},
	{"tls", "after STARTTLS, in the TLS handshake", MTA_TMO_EHLO, true, false},
	{"auth", "after AUTH", MTA_TMO_EHLO, true, true},
	{"auth_user", "after AUTH", MTA_TMO_EHLO, true, true},
	{"auth_pass", "after AUTH", MTA_TMO_EHLO, true, true},
	{"ready", "after the previous transaction", MTA_TMO_NONE, false, true},
	{"rset", "after RSET", MTA_TMO_MAIL, false, true},
	{"mail", "after MAIL FROM", MTA_TMO_MAIL, false, true},
	{"rcpt", "after RCPT TO", MTA_TMO_RCPT, false, true},
	{"data", "after DATA", MTA_TMO_DATA, false, true},
	{"body", "after DATA, in the message body", MTA_TMO_NONE, false, true},
	{"final", "after end of data", MTA_TMO_FINAL, false, true},
	{"abort", "after end of data", MTA_TMO_FINAL, false, true},
	{"broken", "after an earlier failure", MTA_TMO_NONE, false, false},
};
_Static_assert(ARRAY_LEN(cstates) == MTA_CST__COUNT, "cstates out of date");

static atomic_uint_fast64_t conn_seq = 1;

static void conn_on_read(struct bufferevent *bev, void *arg);
static void conn_on_write(struct bufferevent *bev, void *arg);
static void conn_on_event(struct bufferevent *bev, short what, void *arg);

/* mta_cstate_name - a client state for logs. */
const char *mta_cstate_name(enum mta_cstate st)
{
	if ((unsigned)st >= MTA_CST__COUNT)
		return "invalid";
	return cstates[st].name;
}

/* ---- lifetime and the owner's callbacks -------------------------------------- */

static void conn_free(struct mta_conn *c)
{
	log_debug("conn=%016llx event=free host=%s", (unsigned long long)c->id, c->host);
	metrics_gauge_add(METRICS_G_OUTBOUND_OPEN, -1);
	event_free(c->timer);
	event_free(c->notify_ev);
	if (c->bev)
		bufferevent_free(c->bev);	/* clears its callbacks: none queued runs */
	if (!c->bev_owns_fd && c->fd >= 0)
		evutil_closesocket(c->fd);
	if (c->tls_ctx)
		SSL_CTX_free(c->tls_ctx);
	if (c->auth_pass) {
		explicit_bzero(c->auth_pass, strlen(c->auth_pass));
		free(c->auth_pass);
	}
	free(c->auth_user);
	free(c->helo);
	free(c->host);
	free(c->rst);
	free(c);
}

/* conn_on_notify - run the owner's pending callback; the last use of c here. */
static void conn_on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;
	enum mta_notify n = c->notify;
	c->notify = MTA_NOTIFY_NONE;
	if (n == MTA_NOTIFY_READY) {
		c->cbs.ready(c->ctx, c->cookie, c, RC_OK, &c->why);
	} else if (n == MTA_NOTIFY_FAILED) {
		struct mta_conn_cbs cbs = c->cbs;
		void *ctx = c->ctx;
		uint64_t cookie = c->cookie;
		enum rc rc = c->why_rc;
		struct mta_reply why = c->why;
		conn_free(c);
		cbs.ready(ctx, cookie, NULL, rc, &why);
	} else if (n == MTA_NOTIFY_DONE) {
		struct mta_txn *t = c->done_txn;
		c->done_txn = NULL;
		metrics_observe(METRICS_H_DELIVERY_TXN, (uint64_t)(metrics_now_us() - c->stage_us));
		c->cbs.done(c->ctx, c->cookie, c, t);
	} else if (n == MTA_NOTIFY_IDLE_LOST) {
		c->cbs.idle_lost(c->ctx, c->cookie, c);
	}
}

/* mta_conn_notify - schedule the owner's callback n (one at a time). */
void mta_conn_notify(struct mta_conn *c, enum mta_notify n)
{
	if (c->notify != MTA_NOTIFY_NONE)
		fatal("conn=%016llx mta_conn_notify: %d while %d pending",
		      (unsigned long long)c->id, (int)n, (int)c->notify);
	c->notify = n;
	event_active(c->notify_ev, EV_TIMEOUT, 0);
}

/* conn_quit_now - best effort QUIT on an idle connection, without waiting:
 * straight to the socket (or through the TLS session), then we close. */
static void conn_quit_now(struct mta_conn *c)
{
	static const char quit[] = "QUIT\r\n";
	if (c->bev == NULL || evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return;	/* something else is still queued: just close */
	log_debug("conn=%016llx event=cmd cmd=QUIT", (unsigned long long)c->id);
	if (c->tls_active) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl != NULL && SSL_write(ssl, quit, (int)sizeof quit - 1) > 0)
			SSL_shutdown(ssl);
		ERR_clear_error();
		return;
	}
	ssize_t n = send(c->fd, quit, sizeof quit - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)n;
}

/* text_clean - make server-controlled text safe inside a quoted log value:
 * control characters and '"' become '?'. */
static void text_clean(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"')
			*s = '?';
}

/* mta_conn_fail - the opening dialogue failed: ready(rc, why) after freeing c.
 * quit: the server is in a sane state, say QUIT first. */
void mta_conn_fail(struct mta_conn *c, enum rc rc, const struct mta_reply *why, bool quit)
{
	if (c->state == MTA_CST_BROKEN)
		return;
	char text[MTA_REPLY_TEXT_MAX + 32];
	mta_reply_format(why, text, sizeof text);
	text_clean(text);
	log_info("conn=%016llx event=open_failed host=%s addr=%s state=%s rc=%s reply=\"%s\"",
		 (unsigned long long)c->id, c->host, c->peer, cstates[c->state].name, rc_name(rc),
		 text);
	if (quit)
		conn_quit_now(c);
	mta_conn_enter_state(c, MTA_CST_BROKEN);
	c->why = *why;
	c->why_rc = rc;
	mta_conn_notify(c, MTA_NOTIFY_FAILED);
}

/* mta_conn_lost - connection lost, timed out or a protocol error: fail what is
 * in progress with 451 4.4.2 "connection lost after X (reason)". */
void mta_conn_lost(struct mta_conn *c, const char *enh, const char *fmt, ...)
{
	if (c->state == MTA_CST_BROKEN)
		return;
	char reason[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	text_clean(reason);	/* it may quote the server */
	enum mta_cstate was = c->state;
	mta_reply_set(&c->lost, 451, enh ? enh : "4.4.2", "%s: connection lost %s (%s)",
		      c->host, cstates[was].lost, reason);
	if (cstates[was].opening) {
		mta_conn_fail(c, RC_TEMPFAIL, &c->lost, false);
		return;
	}
	log_info("conn=%016llx event=lost host=%s addr=%s state=%s reason=\"%s\"",
		 (unsigned long long)c->id, c->host, c->peer, cstates[was].name, reason);
	mta_conn_enter_state(c, MTA_CST_BROKEN);
	if (c->txn != NULL)
		mta_txn_abort(c);
	else if (was == MTA_CST_READY && c->notify == MTA_NOTIFY_NONE && c->cbs.idle_lost)
		mta_conn_notify(c, MTA_NOTIFY_IDLE_LOST);
}

/* conn_ready - the opening dialogue is complete. */
static void conn_ready(struct mta_conn *c, const struct mta_reply *r)
{
	log_info("conn=%016llx event=ready host=%s addr=%s esmtp=%s ext=0x%x tls=\"%s\" auth=%s",
		 (unsigned long long)c->id, c->host, c->peer, c->esmtp ? "yes" : "no", c->ext,
		 mta_conn_tls_info(c), c->auth_done ? "yes" : "no");
	c->why = *r;
	mta_conn_enter_state(c, MTA_CST_READY);
	mta_conn_notify(c, MTA_NOTIFY_READY);
}

/* ---- commands ------------------------------------------------------------------- */

/* mta_conn_cmd_start - begin a command line on the output (the caller adds the
 * rest and ends it with mta_conn_cmd_end). False, with the connection lost,
 * when the server spoke out of turn: a command that opens an exchange (no
 * reply owed) must find nothing from the server waiting. */
bool mta_conn_cmd_start(struct mta_conn *c, const char *verb)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->expect == 0 && (evbuffer_get_length(in) > 0 || !mta_reply_is_idle(&c->rp))) {
		mta_conn_lost(c, NULL, "protocol error: server sent data before %s", verb);
		return false;
	}
	log_debug("conn=%016llx event=cmd cmd=%s", (unsigned long long)c->id, verb);
	c->expect++;
	return true;
}

/* mta_conn_cmd_end - finish the command line. */
void mta_conn_cmd_end(struct mta_conn *c)
{
	mta_conn_add(c, "\r\n", 2);
}

/* mta_conn_add - bytes onto the output (abort on allocation failure). */
void mta_conn_add(struct mta_conn *c, const void *p, size_t n)
{
	if (n > 0 && evbuffer_add(bufferevent_get_output(c->bev), p, n) != 0)
		fatal("conn=%016llx evbuffer_add failed", (unsigned long long)c->id);
}

/* mta_conn_adds - a string onto the output. */
void mta_conn_adds(struct mta_conn *c, const char *s)
{
	mta_conn_add(c, s, strlen(s));
}

/* conn_cmd - a whole command line made of a verb and an optional argument. */
static void conn_cmd(struct mta_conn *c, const char *verb, const char *arg)
{
	if (!mta_conn_cmd_start(c, verb))
		return;
	mta_conn_adds(c, verb);
	if (arg != NULL) {
		mta_conn_add(c, " ", 1);
		mta_conn_adds(c, arg);
	}
	mta_conn_cmd_end(c);
}

/* ---- AUTH (RFC 4954; PLAIN RFC 4616; LOGIN) ------------------------------------ */

/* auth_b64 - base64 of p[0..n) into out (NUL-terminated). */
static void auth_b64(const void *p, size_t n, char *out, size_t outsz)
{
	if (4 * ((n + 2) / 3) + 1 > outsz)
		fatal("auth_b64: buffer too small");
	b64_encode(p, n, out);
}

/* auth_send_secret - one base64 line: the PLAIN response or a LOGIN field. */
static void auth_send_secret(struct mta_conn *c, const char *verb, const char *prefix,
			     const char *secret)
{
	unsigned char raw[2 * AUTH_FIELD_MAX + 2];
	char b64[4 * sizeof raw / 3 + 8];
	size_t n = 0;
	if (c->auth_login) {
		n = strlen(secret);
		memcpy(raw, secret, n);
	} else {	/* PLAIN: authzid NUL authcid NUL passwd */
		size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
		raw[n++] = '\0';
		memcpy(raw + n, c->auth_user, ul);
		n += ul;
		raw[n++] = '\0';
		memcpy(raw + n, c->auth_pass, pl);
		n += pl;
	}
	auth_b64(raw, n, b64, sizeof b64);
	if (mta_conn_cmd_start(c, verb)) {
		mta_conn_adds(c, prefix);
		mta_conn_adds(c, b64);
		mta_conn_cmd_end(c);
	}
	explicit_bzero(raw, sizeof raw);
	explicit_bzero(b64, sizeof b64);
}

/* conn_auth_begin - pick a mechanism and go, or fail: AUTH only over TLS. */
static void conn_auth_begin(struct mta_conn *c)
{
	struct mta_reply why;
	if (!c->tls_active) {
		mta_reply_set(&why, 451, "4.7.4",
			      "%s: authentication is configured, but TLS is not in use", c->host);
		mta_conn_fail(c, RC_TEMPFAIL, &why, true);
		return;
	}
	if (!(c->ext & MTA_EXT_AUTH) || !(c->auth_mechs & (MTA_AUTH_PLAIN | MTA_AUTH_LOGIN))) {
		mta_reply_set(&why, 451, "4.7.4",
			      "%s: authentication is configured, but the server offers no "
			      "PLAIN or LOGIN mechanism", c->host);
		mta_conn_fail(c, RC_TEMPFAIL, &why, true);
		return;
	}
	c->auth_login = !(c->auth_mechs & MTA_AUTH_PLAIN);
	mta_conn_enter_state(c, MTA_CST_AUTH);
}

static void on_auth(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_OK && c->state != MTA_CST_AUTH_USER) {
		c->auth_done = true;
		log_info("conn=%016llx event=auth result=ok host=%s user=%s",
			 (unsigned long long)c->id, c->host, c->auth_user);
		conn_ready(c, r);
		return;
	}
	if (r->code == 334) {
		/* A challenge: LOGIN asks for the user, then the password; PLAIN
		 * without an initial response asks for it. */
		if (c->state == MTA_CST_AUTH && c->auth_login)
			mta_conn_enter_state(c, MTA_CST_AUTH_USER);
		else if (c->state != MTA_CST_AUTH_PASS)
			mta_conn_enter_state(c, MTA_CST_AUTH_PASS);
		else
			mta_conn_lost(c, NULL, "protocol error: AUTH challenge after the password");
		return;
	}
	if (cls == RC_TEMPFAIL || cls == RC_PERMFAIL) {
		log_info("conn=%016llx event=auth result=fail host=%s user=%s code=%d",
			 (unsigned long long)c->id, c->host, c->auth_user, r->code);
		mta_conn_fail(c, cls, r, true);
		return;
	}
	mta_conn_lost(c, NULL, "protocol error: AUTH answered with %d", r->code);
}

/* ---- the opening dialogue ----------------------------------------------------------- */

/* ehlo_auth_mechs - the mechanisms we can use from "PLAIN LOGIN CRAM-MD5". */
static unsigned ehlo_auth_mechs(const char *s)
{
	unsigned m = 0;
	while (*s != '\0') {
		size_t n = strcspn(s, " ");
		if (n == 5 && strncasecmp(s, "PLAIN", 5) == 0)
			m |= MTA_AUTH_PLAIN;
		else if (n == 5 && strncasecmp(s, "LOGIN", 5) == 0)
			m |= MTA_AUTH_LOGIN;
		s += n;
		s += strspn(s, " ");
	}
	return m;
}

/* ehlo_line - one keyword line of the EHLO reply ("SIZE 1000", "AUTH PLAIN"). */
static void ehlo_line(struct mta_conn *c, const char *s, size_t len)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} kws[] = {
		{"PIPELINING", MTA_EXT_PIPELINING}, {"SIZE", MTA_EXT_SIZE},
		{"8BITMIME", MTA_EXT_8BITMIME},	    {"SMTPUTF8", MTA_EXT_SMTPUTF8},
		{"STARTTLS", MTA_EXT_STARTTLS},	    {"DSN", MTA_EXT_DSN},
		{"AUTH", MTA_EXT_AUTH},		    {"CHUNKING", MTA_EXT_CHUNKING},
		{"ENHANCEDSTATUSCODES", MTA_EXT_ENHANCED},
	};
	char buf[MTA_REPLY_LINE_MAX + 1];
	memcpy(buf, s, len);
	buf[len] = '\0';
	size_t kwlen = strcspn(buf, " =");	/* "AUTH=LOGIN": the pre-RFC form */
	char *param = buf + kwlen + (buf[kwlen] != '\0');
	buf[kwlen] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(kws); i++) {
		if (!str_ieq(buf, kws[i].kw))
			continue;
		c->ext_pending |= kws[i].bit;
		if (kws[i].bit == MTA_EXT_SIZE && !str_to_u64(param, &c->size_pending))
			c->size_pending = 0;	/* no (or a bad) number: no limit declared */
		if (kws[i].bit == MTA_EXT_AUTH)
			c->auth_pending |= ehlo_auth_mechs(param);
	}
}

/* conn_after_ehlo - STARTTLS, AUTH or ready, as the parameters want. */
static void conn_after_ehlo(struct mta_conn *c, const struct mta_reply *r)
{
	struct mta_reply why;
	if (!c->tls_active && c->tls_ctx != NULL && (c->ext & MTA_EXT_STARTTLS)) {
		mta_conn_enter_state(c, MTA_CST_STARTTLS);
		return;
	}
	if (!c->tls_active && c->tls_required) {
		/* Never plaintext when TLS is required (RFC 3207 4.1, RFC 8461). */
		mta_reply_set(&why, 451, "4.7.4", "%s: TLS is required, but %s", c->host,
			      c->tls_ctx == NULL ? "no TLS client context is configured"
						 : "the server does not offer STARTTLS");
		mta_conn_fail(c, RC_TEMPFAIL, &why, true);
		return;
	}
	if (c->auth_user != NULL && !c->auth_done) {
		conn_auth_begin(c);
		return;
	}
	conn_ready(c, r);
}

/*
 * conn_is_self - does the server name itself with our own hostname (the first
 * word of its greeting or of its EHLO reply)? Then this connection reached
 * this relay (an MX or a route pointing back at it), and delivering would make
 * the message go round until its Received: count stops it. Postfix's check
 * ("mail for X loops back to myself"): RC_PERMFAIL 5.4.6, bounced at once.
 */
static bool conn_is_self(struct mta_conn *c, const struct mta_reply *r)
{
	size_t n = strcspn(r->text, " ;");
	if (n == 0 || n != strlen(c->helo) || strncasecmp(r->text, c->helo, n) != 0)
		return false;
	struct mta_reply why;
	mta_reply_set(&why, 554, "5.4.6", "mail for %s loops back to myself (%s greets as %s)",
		      c->host, c->peer, c->helo);
	mta_conn_fail(c, RC_PERMFAIL, &why, true);
	return true;
}

static void on_greeting(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_OK) {
		if (conn_is_self(c, r))
			return;
		mta_conn_enter_state(c, MTA_CST_EHLO);
	} else if (cls == RC_TEMPFAIL || cls == RC_PERMFAIL) {
		/* RFC 5321 3.1: after a 554 greeting the client sends QUIT. */
		mta_conn_fail(c, cls, r, true);
	} else {
		mta_conn_lost(c, NULL, "protocol error: greeting %d", r->code);
	}
}

static void on_ehlo(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_OK) {
		if (conn_is_self(c, r))
			return;
		c->esmtp = c->state == MTA_CST_EHLO;
		c->ext = c->esmtp ? c->ext_pending : 0;
		c->size_max = c->esmtp ? c->size_pending : 0;
		c->auth_mechs = c->esmtp ? c->auth_pending : 0;
		conn_after_ehlo(c, r);
	} else if (cls == RC_PERMFAIL && c->state == MTA_CST_EHLO) {
		mta_conn_enter_state(c, MTA_CST_HELO);	/* RFC 5321 3.2 */
	} else if (cls == RC_TEMPFAIL || cls == RC_PERMFAIL) {
		mta_conn_fail(c, cls, r, true);
	} else {
		mta_conn_lost(c, NULL, "protocol error: %s answered with %d",
			      c->state == MTA_CST_EHLO ? "EHLO" : "HELO", r->code);
	}
}

static void on_starttls(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_OK) {
		mta_conn_enter_state(c, MTA_CST_TLS);
		return;
	}
	if (cls == RC_PROTO) {
		mta_conn_lost(c, NULL, "protocol error: STARTTLS answered with %d", r->code);
		return;
	}
	if (c->tls_required || c->auth_user != NULL) {
		struct mta_reply why;
		mta_reply_set(&why, 451, "4.7.4", "%s: TLS is required, but STARTTLS failed: %d %s",
			      c->host, r->code, r->text);
		mta_conn_fail(c, RC_TEMPFAIL, &why, true);
		return;
	}
	conn_ready(c, r);	/* opportunistic TLS: plaintext it is */
}

/* ---- entering states ------------------------------------------------------------------- */

static unsigned conn_timeout(const struct mta_conn *c, enum mta_tmo t)
{
	switch (t) {
	case MTA_TMO_CONNECT:
		return c->to_connect;
	case MTA_TMO_GREETING:
		return c->to_greeting;
	case MTA_TMO_EHLO:
		return c->to_ehlo;
	case MTA_TMO_MAIL:
		return c->to_mail;
	case MTA_TMO_RCPT:
		return c->to_rcpt;
	case MTA_TMO_DATA:
		return c->to_data;
	case MTA_TMO_FINAL:
		return c->to_final;
	case MTA_TMO_NONE:
		break;
	}
	return 0;
}

/* conn_arm_timer - the deadline for the next reply in the current state. */
static void conn_arm_timer(struct mta_conn *c)
{
	unsigned secs = conn_timeout(c, cstates[c->state].tmo);
	if (secs == 0) {
		event_del(c->timer);
		return;
	}
	struct timeval tv = {secs, 0};
	event_add(c->timer, &tv);
}

/* mta_conn_set_write_timeout - how long a write may make no progress. */
void mta_conn_set_write_timeout(struct mta_conn *c, unsigned secs)
{
	struct timeval tv = {secs, 0};
	bufferevent_set_timeouts(c->bev, NULL, &tv);
}

/* mta_conn_enter_state - the only place c->state changes; sends the state's command. */
void mta_conn_enter_state(struct mta_conn *c, enum mta_cstate st)
{
	if (c->state != st)
		log_debug("conn=%016llx event=state from=%s to=%s", (unsigned long long)c->id,
			  cstates[c->state].name, cstates[st].name);
	c->state = st;
	conn_arm_timer(c);
	switch (st) {
	case MTA_CST_EHLO:
	case MTA_CST_HELO:
		c->ext_pending = c->auth_pending = 0;
		c->size_pending = 0;
		conn_cmd(c, st == MTA_CST_EHLO ? "EHLO" : "HELO", c->helo);
		break;
	case MTA_CST_STARTTLS:
		conn_cmd(c, "STARTTLS", NULL);
		break;
	case MTA_CST_TLS:
		mta_tls_start(c);
		break;
	case MTA_CST_AUTH:
		if (c->auth_login)
			conn_cmd(c, "AUTH", "LOGIN");
		else
			auth_send_secret(c, "AUTH", "AUTH PLAIN ", NULL);
		break;
	case MTA_CST_AUTH_USER:
		auth_send_secret(c, "AUTH-response", "", c->auth_user);
		break;
	case MTA_CST_AUTH_PASS:
		auth_send_secret(c, "AUTH-response", "", c->auth_pass);
		break;
	case MTA_CST_RSET:
		conn_cmd(c, "RSET", NULL);
		break;
	case MTA_CST_MAIL:
	case MTA_CST_RCPT:
	case MTA_CST_DATA:
	case MTA_CST_BODY:
	case MTA_CST_FINAL:
	case MTA_CST_ABORT:
		mta_txn_on_enter(c, st);
		break;
	case MTA_CST_GREETING:
		c->expect = 1;	/* the server speaks first */
		break;
	case MTA_CST_BROKEN:
		/* lost or failed: no more reading, writing or deadlines (the timer
		 * was stopped above); c stays until it is freed */
		if (c->bev)
			bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		break;
	case MTA_CST_CONNECT:
	case MTA_CST_READY:
	case MTA_CST__COUNT:
		break;
	}
}

/* ---- reading replies --------------------------------------------------------------- */

/* conn_on_reply - a complete reply: handled by the current state. */
static void conn_on_reply(struct mta_conn *c, const struct mta_reply *r)
{
	log_debug("conn=%016llx event=reply state=%s code=%d enh=%s lines=%u",
		  (unsigned long long)c->id, cstates[c->state].name, r->code, r->enh, r->nlines);
	if (c->expect == 0) {
		mta_conn_lost(c, NULL, "protocol error: unexpected reply: %d %.200s", r->code,
			      r->text);
		return;
	}
	c->expect--;
	if (c->txn != NULL)
		c->txn_replies++;
	conn_arm_timer(c);	/* a fresh deadline for the next reply */
	switch (c->state) {
	case MTA_CST_GREETING:
		on_greeting(c, r);
		break;
	case MTA_CST_EHLO:
	case MTA_CST_HELO:
		on_ehlo(c, r);
		break;
	case MTA_CST_STARTTLS:
		on_starttls(c, r);
		break;
	case MTA_CST_AUTH:
	case MTA_CST_AUTH_USER:
	case MTA_CST_AUTH_PASS:
		on_auth(c, r);
		break;
	case MTA_CST_RSET:
	case MTA_CST_MAIL:
	case MTA_CST_RCPT:
	case MTA_CST_DATA:
	case MTA_CST_FINAL:
	case MTA_CST_ABORT:
		mta_txn_on_reply(c, r);
		break;
	default:
		/* READY, BODY: no reply is owed there, so expect was 0 above. */
		fatal("conn=%016llx reply owed in state %s", (unsigned long long)c->id,
		      cstates[c->state].name);
	}
}

/* conn_line - one line read: EHLO keywords are taken from it, then the reply
 * parser gets it. */
static void conn_line(struct mta_conn *c, const char *line, size_t len)
{
	bool first = !c->rp.in_progress;
	struct mta_reply r;
	enum rc rc = mta_reply_feed(&c->rp, line, len, &r);
	if (rc == RC_PROTO) {
		mta_conn_lost(c, NULL, "protocol error: malformed reply line: %.*s",
			      (int)MIN(len, 64), line);
		return;
	}
	if (c->state == MTA_CST_EHLO && !first && len > 4)
		ehlo_line(c, line + 4, len - 4);
	if (rc == RC_OK)
		conn_on_reply(c, &r);
}

/* conn_process - read replies while the state reads and bytes are there. The
 * handlers may switch the bufferevent (STARTTLS) or stop I/O: re-fetch each time. */
static void conn_process(struct mta_conn *c)
{
	while (cstates[c->state].reads) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		size_t used = 0, len = 0;
		const char *line = NULL;
		enum rc rc = mta_reply_line(&c->rp, v.iov_base, v.iov_len, &used, &line, &len);
		if (rc == RC_PROTO) {
			mta_conn_lost(c, NULL, "protocol error: reply longer than %d bytes",
				      MTA_REPLY_BYTES_MAX);
			return;
		}
		/* Drained before the line is handled (it lives in c->rp): what is
		 * left in `in` then is what the server sent after this line. */
		evbuffer_drain(in, used);
		if (rc == RC_OK)
			conn_line(c, line, len);
	}
}

/* ---- libevent callbacks ----------------------------------------------------------------- */

static void conn_on_read(struct bufferevent *bev, void *arg)
{
	conn_process(arg);
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;
	if (c->state == MTA_CST_BODY)
		mta_txn_body_fill(c);
}

static void conn_on_connected(struct mta_conn *c)
{
	if (c->state == MTA_CST_TLS) {
		mta_tls_on_handshake(c);
		return;
	}
	log_debug("conn=%016llx event=connected host=%s addr=%s", (unsigned long long)c->id,
		  c->host, c->peer);
	metrics_observe(METRICS_H_DELIVERY_CONNECT, (uint64_t)(metrics_now_us() - c->stage_us));
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	mta_conn_enter_state(c, MTA_CST_GREETING);
	conn_process(c);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mta_conn *c = arg;
	if (c->state == MTA_CST_BROKEN)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		conn_on_connected(c);
		return;
	}
	if (c->state == MTA_CST_TLS) {
		mta_tls_on_error(c, what);
		return;
	}
	if (c->state == MTA_CST_CONNECT) {
		int err = EVUTIL_SOCKET_ERROR();
		mta_conn_lost(c, "4.4.1", "connect failed: %s",
			      err ? evutil_socket_error_to_string(err) : "refused");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		mta_conn_lost(c, NULL, "timeout writing to the server");
	else if (what & BEV_EVENT_EOF)
		mta_conn_lost(c, NULL, "connection closed by the server");
	else
		mta_conn_lost(c, NULL, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mta_conn *c = arg;
	if (c->state == MTA_CST_CONNECT)
		mta_conn_lost(c, "4.4.1", "connect timeout after %u s", c->to_connect);
	else
		mta_conn_lost(c, NULL, "timeout waiting for the server's reply");
}

/* ---- open, close, introspection ------------------------------------------------------------ */

static void conn_peer_text(struct mta_conn *c, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		port = ntohs(s6->sin6_port);
	}
	snprintf(c->peer, sizeof c->peer, "%s:%u", ip, port);
}

static void conn_copy_params(struct mta_conn *c, const struct mta_conn_params *p)
{
	c->helo = xstrdup(p->helo && p->helo[0] ? p->helo : "localhost");
	c->host = xstrdup(p->host && p->host[0] ? p->host : c->peer);
	c->host_given = p->host != NULL && p->host[0] != '\0';
	if (p->tls != NULL && SSL_CTX_up_ref(p->tls) == 1)
		c->tls_ctx = p->tls;
	c->tls_required = p->tls_required;
	c->tls_verify = p->tls_verify;
	if (p->auth_user != NULL) {
		c->auth_user = xstrndup(p->auth_user, AUTH_FIELD_MAX);
		c->auth_pass = xstrndup(p->auth_pass ? p->auth_pass : "", AUTH_FIELD_MAX);
	}
	c->to_connect = p->timeout_connect ? p->timeout_connect : DEFAULT_TMO_CONNECT;
	c->to_greeting = p->timeout_greeting ? p->timeout_greeting : DEFAULT_TMO_GREETING;
	c->to_ehlo = p->timeout_ehlo ? p->timeout_ehlo : DEFAULT_TMO_CMD;
	c->to_mail = p->timeout_mail ? p->timeout_mail : DEFAULT_TMO_CMD;
	c->to_rcpt = p->timeout_rcpt ? p->timeout_rcpt : DEFAULT_TMO_CMD;
	c->to_data = p->timeout_data ? p->timeout_data : DEFAULT_TMO_DATA;
	c->to_data_block = p->timeout_data_block ? p->timeout_data_block : DEFAULT_TMO_DATA;
	c->to_final = p->timeout_final ? p->timeout_final : DEFAULT_TMO_FINAL;
}

/* conn_socket - a non-blocking socket, bound to p->source if given. */
static bool conn_socket(struct mta_conn *c, const struct sockaddr *addr,
			const struct mta_conn_params *p)
{
	c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		mta_conn_lost(c, "4.4.1", "socket: %s", strerror(errno));
		return false;
	}
	/* Commands and the end of data are small writes the other side waits for:
	 * never hold them back for an ACK (Nagle). */
	int one = 1;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (p->source != NULL && bind(c->fd, p->source, p->source_len) != 0) {
		mta_conn_lost(c, "4.4.1", "bind to the source address: %s", strerror(errno));
		return false;
	}
	return true;
}

/* mta_conn_open - connect and run the opening dialogue; ready() reports. */
struct mta_conn *mta_conn_open(struct event_base *base, const struct sockaddr *addr, socklen_t addrlen,
		   const struct mta_conn_params *p, const struct mta_conn_cbs *cbs, void *ctx,
		   uint64_t cookie)
{
	struct mta_conn *c = xcalloc(1, sizeof *c);
	c->id = atomic_fetch_add(&conn_seq, 1);
	c->base = base;
	c->cbs = *cbs;
	c->ctx = ctx;
	c->cookie = cookie;
	c->fd = -1;
	c->stage_us = metrics_now_us();
	metrics_inc(METRICS_OUTBOUND_CONNECTIONS);
	metrics_gauge_add(METRICS_G_OUTBOUND_OPEN, 1);
	conn_peer_text(c, addr);
	conn_copy_params(c, p);
	mta_reply_init(&c->rp);
	c->timer = evtimer_new(base, conn_on_timer, c);
	c->notify_ev = evtimer_new(base, conn_on_notify, c);
	if (c->timer == NULL || c->notify_ev == NULL)
		fatal("event=evtimer_new_failed");
	/* c->state is MTA_CST_CONNECT (0) from xcalloc: a failure before the
	 * bufferevent exists is an opening failure like any other. */
	log_debug("conn=%016llx event=connect host=%s addr=%s", (unsigned long long)c->id, c->host,
		  c->peer);
	if (!conn_socket(c, addr, p))
		return c;
	c->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL)
		fatal("event=bufferevent_socket_new_failed");
	mta_conn_attach(c);
	mta_conn_enter_state(c, MTA_CST_CONNECT);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)addr, (int)addrlen) != 0)
		mta_conn_lost(c, "4.4.1", "connect: %s",
			      evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	return c;
}

/* mta_conn_attach - our callbacks and write timeout on a (new) bufferevent. */
void mta_conn_attach(struct mta_conn *c)
{
	bufferevent_setcb(c->bev, conn_on_read, conn_on_write, conn_on_event, c);
	mta_conn_set_write_timeout(c, c->to_ehlo);	/* only while opening */
}

/* mta_conn_is_usable - idle, unbroken, and no callback pending. */
bool mta_conn_is_usable(const struct mta_conn *c)
{
	return c != NULL && c->state == MTA_CST_READY && c->txn == NULL;
}

/* mta_conn_set_cookie - what later callbacks carry as their cookie. */
void mta_conn_set_cookie(struct mta_conn *c, uint64_t cookie)
{
	c->cookie = cookie;
}

/* mta_conn_tls_info - what TLS the connection uses, for logs and Received. */
const char *mta_conn_tls_info(const struct mta_conn *c)
{
	if (c == NULL || !c->tls_active)
		return "none";
	return c->tls_info;
}

/* mta_conn_close - QUIT when idle and clean, free; no callback after this. */
void mta_conn_close(struct mta_conn *c)
{
	if (c == NULL)
		return;
	log_info("conn=%016llx event=close host=%s state=%s", (unsigned long long)c->id, c->host,
		 cstates[c->state].name);
	if (mta_conn_is_usable(c))
		conn_quit_now(c);
	conn_free(c);
}
