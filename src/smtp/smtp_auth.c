/*
 * smtp_auth.c - AUTH (RFC 4954) in the inbound session: the decoding of what
 * the client sends, and the exchange (the AUTH command, its continuation
 * lines, the password check on the worker queue, the answer to a failure).
 *
 * Decoding: strict base64 (RFC 4648 4, as RFC 4954 4 requires) and the PLAIN
 * message (RFC 4616 2). Base64 is accepted in exactly one spelling per value
 * (padding required, no whitespace, "=" only at the end, unused bits zero), so
 * that two different strings never carry the same credentials past a log or a
 * rate limiter. Output is bounded by the caller's buffer, checked before
 * writing. The decoders allocate nothing, do no I/O and are fuzzed.
 *
 * The exchange: a password is checked off the worker thread (srv->authq); the
 * completion finds its session by id and drops the result if it is gone. A
 * failure is counted in the session and across connections (smtp_guard.c) and
 * answered late. Nothing here logs a password; buffers that held one are
 * cleared with explicit_bzero.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "smtp/smtp.h"
#include "smtp/smtp_session.h"

/* An identity must be well-formed UTF-8 without control characters: it goes to
 * the store as a key and to the log as a value. */
static bool id_ok(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_char((const char *)s + i, len - i, &cp);
		if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return false;
		i += n;
	}
	return true;
}

/* smtp_auth_plain_decode - split and check "authzid NUL authcid NUL passwd". */
enum rc smtp_auth_plain_decode(const uint8_t *buf, size_t len,
			       char user[SMTP_AUTH_USER_MAX + 1],
			       char pass[SMTP_AUTH_PASS_MAX + 1])
{
	const uint8_t *nul1, *nul2;
	size_t zlen, clen, plen;

	user[0] = '\0';
	pass[0] = '\0';
	if (len == 0)
		return RC_INVALID;
	nul1 = memchr(buf, 0, len);
	if (nul1 == NULL)
		return RC_INVALID;
	zlen = (size_t)(nul1 - buf);
	nul2 = memchr(nul1 + 1, 0, len - zlen - 1);
	if (nul2 == NULL)
		return RC_INVALID;
	clen = (size_t)(nul2 - nul1 - 1);
	plen = len - zlen - clen - 2;
	if (memchr(nul2 + 1, 0, plen) != NULL)
		return RC_INVALID;	/* a third NUL */
	if (clen == 0 || plen == 0)
		return RC_INVALID;
	if (clen > SMTP_AUTH_USER_MAX || plen > SMTP_AUTH_PASS_MAX)
		return RC_LIMIT;
	if (!id_ok(nul1 + 1, clen))
		return RC_INVALID;
	/* RFC 4616 2: acting as another identity is an authorization decision;
	 * relevo never grants it. */
	if (zlen != 0 && (zlen != clen || memcmp(buf, nul1 + 1, clen) != 0))
		return RC_PERMFAIL;
	memcpy(user, nul1 + 1, clen);
	user[clen] = '\0';
	memcpy(pass, nul2 + 1, plen);
	pass[plen] = '\0';
	return RC_OK;
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

static void auth_fail_reply(struct smtp_session *s)
{
	if (s->state != SMTP_ST_WAIT)
		return;
	if (s->auth_failures >= s->conf->smtp.max_auth_failures) {
		smtp_session_replyf(s, 421, "4.7.0", "%s Too many failed authentication attempts",
			       s->conf->hostname);
		smtp_session_close(s);
		return;
	}
	smtp_session_reply(s, 535, "5.7.8", "Authentication credentials invalid");
	smtp_session_resume(s, s->resume_state);
}

/* auth_failed - count a failed AUTH in the session and across connections
 * (smtp_guard.c), then answer it late: the delay grows with the address's
 * failures and is longest for an account under attack. The timer keeps the
 * worker free meanwhile. */
static void auth_failed(struct smtp_session *s, const char *user)
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
		smtp_session_pause(s);
	smtp_session_defer(s, auth_fail_reply, v.delay_ms);
}

/* auth_locked - true (and 454 sent) if AUTH from this address is locked
 * out: refused without looking at what the client sent. */
static bool auth_locked(struct smtp_session *s)
{
	if (!smtp_guard_is_locked(s->srv->guard, &s->sa, time_mono_ms()))
		return false;
	log_info("sid=%016llx event=auth result=locked_out client=%s", (unsigned long long)s->id,
		 s->peer);
	smtp_session_reply(s, 454, "4.7.0",
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
		smtp_session_reply(s, 235, "2.7.0", "Authentication successful");
		smtp_session_resume(s, s->resume_state);
	} else if (j->rc == RC_TEMPFAIL) {
		log_warn("sid=%016llx event=auth result=tempfail user=%s client=%s",
			 (unsigned long long)s->id, j->user, s->peer);
		smtp_session_reply(s, 454, "4.7.0", "Temporary authentication failure");
		smtp_session_resume(s, s->resume_state);
	} else {
		auth_failed(s, j->user);
	}
	free(j);
}

static void auth_check(struct smtp_session *s, const char *user, const char *pass)
{
	s->auth_step = SMTP_AUTH_NONE;
	if (auth_locked(s))
		return;
	struct auth_job *j = xcalloc(1, sizeof *j);
	j->w = s->w;
	j->store = s->srv->store;
	j->sid = s->id;
	str_lcpy(j->user, user, sizeof j->user);
	str_lcpy(j->pass, pass, sizeof j->pass);
	smtp_session_pause(s);
	if (workq_submit(s->srv->authq, s->w->base, auth_work, auth_done, j) != RC_OK) {
		explicit_bzero(j->pass, sizeof j->pass);
		free(j);
		smtp_session_reply(s, 454, "4.7.0", "Temporary authentication failure, try again");
		smtp_session_resume(s, s->resume_state);
	}
}

/* auth_plain - decode a PLAIN response and start the check. */
static void auth_plain(struct smtp_session *s, const char *b64, struct smtp_reply *r)
{
	uint8_t buf[SMTP_AUTH_USER_MAX * 2 + SMTP_AUTH_PASS_MAX + 3];
	size_t n;
	char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
	enum rc rc = b64_decode(b64, strlen(b64), buf, sizeof buf, &n);
	if (rc == RC_OK)
		rc = smtp_auth_plain_decode(buf, n, user, pass);
	explicit_bzero(buf, sizeof buf);
	if (rc == RC_PERMFAIL) {
		/* A well-formed response asking to act as someone else (authzid). */
		explicit_bzero(pass, sizeof pass);
		auth_failed(s, NULL);
		r->code = 0; /* answered by auth_fail_reply */
		return;
	}
	if (rc != RC_OK) {
		explicit_bzero(pass, sizeof pass);
		*r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH PLAIN response"};
		return;
	}
	auth_check(s, user, pass);
	explicit_bzero(pass, sizeof pass);
	r->code = 0;
}

static bool auth_b64_field(const char *b64, char *out, size_t outsz)
{
	size_t n;
	if (b64_decode(b64, strlen(b64), (uint8_t *)out, outsz - 1, &n) != RC_OK)
		return false;
	out[n] = '\0';
	return n > 0 && memchr(out, '\0', n) == NULL;
}

/* smtp_auth_start - the AUTH command: a mechanism and perhaps an initial response. */
void smtp_auth_start(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (s->user) {
		*r = (struct smtp_reply){503, "5.5.1", "Already authenticated"};
		return;
	}
	if (s->lst->mode == CONF_LISTEN_RELAY) {
		*r = (struct smtp_reply){503, "5.5.1", "AUTH is not available on this port"};
		return;
	}
	if (auth_locked(s)) {
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
			s->auth_step = SMTP_AUTH_PLAIN_RESP;
			smtp_session_enter_state(s, SMTP_ST_AUTH);
			*r = (struct smtp_reply){334, NULL, ""};
		} else {
			auth_plain(s, initial, r);
		}
	} else if (str_ieq(mech, "LOGIN")) {
		if (initial == NULL) {
			s->auth_step = SMTP_AUTH_LOGIN_USER;
			*r = (struct smtp_reply){334, NULL, "VXNlcm5hbWU6"};
		} else if (auth_b64_field(initial, s->auth_user, sizeof s->auth_user)) {
			s->auth_step = SMTP_AUTH_LOGIN_PASS;
			*r = (struct smtp_reply){334, NULL, "UGFzc3dvcmQ6"};
		} else {
			*r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
			return;
		}
		smtp_session_enter_state(s, SMTP_ST_AUTH);
	} else {
		*r = (struct smtp_reply){504, "5.5.4", "Unrecognized authentication mechanism"};
	}
}

/* smtp_auth_continue - a continuation line of an AUTH exchange. */
void smtp_auth_continue(struct smtp_session *s, const char *line)
{
	struct smtp_reply r = {0};
	enum smtp_auth_step step = s->auth_step;
	s->auth_step = SMTP_AUTH_NONE;
	smtp_session_enter_state(s, smtp_session_idle_state(s));
	if (strcmp(line, "*") == 0) {
		r = (struct smtp_reply){501, "5.0.0", "Authentication cancelled"};
	} else if (step == SMTP_AUTH_PLAIN_RESP) {
		auth_plain(s, line, &r);
	} else if (step == SMTP_AUTH_LOGIN_USER) {
		if (auth_b64_field(line, s->auth_user, sizeof s->auth_user)) {
			s->auth_step = SMTP_AUTH_LOGIN_PASS;
			smtp_session_enter_state(s, SMTP_ST_AUTH);
			r = (struct smtp_reply){334, NULL, "UGFzc3dvcmQ6"};
		} else {
			r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
		}
	} else if (step == SMTP_AUTH_LOGIN_PASS) {
		char pass[SMTP_AUTH_PASS_MAX + 1];
		if (auth_b64_field(line, pass, sizeof pass)) {
			auth_check(s, s->auth_user, pass);
			r.code = 0;
		} else {
			r = (struct smtp_reply){501, "5.5.2", "Malformed AUTH LOGIN response"};
		}
		explicit_bzero(pass, sizeof pass);
	}
	if (r.code) {
		smtp_session_reply(s, r.code, r.enh, r.text);
		if (r.code >= 500)
			smtp_session_error(s);
	}
}
