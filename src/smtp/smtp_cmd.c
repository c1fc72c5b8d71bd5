/*
 * smtp_cmd.c - the command table of the inbound session, its dispatcher, and
 * the commands that touch neither the transaction nor AUTH (EHLO, HELO,
 * STARTTLS, RSET, NOOP, VRFY, EXPN, HELP, QUIT).
 *
 * Invariants:
 * - The dispatcher does the 500/503/530/538 gatekeeping from the table and
 *   writes the reply; handlers fill in a reply and, for the few commands that
 *   need it, start an asynchronous step (STARTTLS handshake, password check,
 *   spool commit), setting r->code = 0 when they answered themselves.
 * - A command that ends a pipelined group (RFC 2920 3.1) with more input behind
 *   it is not executed: 554 and close.
 */
#include "smtp/smtp_session.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

/* smtp_cmd_arg_nonblank - does a command argument hold anything but spaces? */
bool smtp_cmd_arg_nonblank(const char *arg)
{
	struct smtp_cmd cmd = {.arg = arg};
	return smtp_cmd_has_arg(&cmd);
}

/* ---- EHLO, HELO, and the small commands ------------------------------------ */

static bool cmd_auth_offered(const struct smtp_session *s)
{
	return s->lst->mode != CONF_LISTEN_RELAY && s->tls;
}

static bool cmd_starttls_offered(const struct smtp_session *s)
{
	return !s->tls && s->tls_ctx != NULL && s->lst->mode != CONF_LISTEN_SUBMISSIONS &&
	       s->lst->mode != CONF_LISTEN_LOCAL;
}

static bool cmd_set_helo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	size_t n = strlen(arg);
	if (n == 0 || n > SMTP_DOMAIN_MAX || strchr(arg, ' ') != NULL) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: EHLO domain-or-address-literal"};
		return false;
	}
	memcpy(s->helo, arg, n + 1);
	smtp_tx_reset(s);
	return true;
}

static void cmd_ehlo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (!cmd_set_helo(s, arg, r))
		return;
	s->esmtp = true;
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "%s Hello [%s]\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\n"
			 "ENHANCEDSTATUSCODES\nCHUNKING\nDSN",
			 s->conf->hostname, s->peer,
			 (unsigned long long)s->conf->smtp.max_message_size);
	if (cmd_starttls_offered(s))
		n += snprintf(buf + n, sizeof buf - (size_t)n, "\nSTARTTLS");
	if (cmd_auth_offered(s) && s->user == NULL)
		snprintf(buf + n, sizeof buf - (size_t)n, "\nAUTH PLAIN LOGIN");
	smtp_session_reply(s, 250, NULL, buf);
	smtp_session_enter_state(s, SMTP_ST_READY);
	r->code = 0; /* already answered */
}

static void cmd_helo(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (!cmd_set_helo(s, arg, r))
		return;
	s->esmtp = false;
	snprintf(s->text, sizeof s->text, "%s", s->conf->hostname);
	*r = (struct smtp_reply){250, NULL, s->text};
	smtp_session_enter_state(s, SMTP_ST_READY);
}

static void cmd_noop(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	*r = (struct smtp_reply){250, "2.0.0", "OK"};
}

static void cmd_rset(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	smtp_tx_reset(s);
	smtp_session_enter_state(s, smtp_session_idle_state(s));
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
	smtp_session_replyf(s, 221, "2.0.0", "%s Bye", s->conf->hostname);
	smtp_session_close(s);
	r->code = 0;
}

/* ---- STARTTLS (RFC 3207): the switch itself is in smtp_session.c ---------------- */

static void cmd_starttls(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (smtp_cmd_arg_nonblank(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: STARTTLS (no parameters)"};
		return;
	}
	if (s->tls) {
		*r = (struct smtp_reply){503, "5.5.1", "TLS is already active"};
		return;
	}
	if (!cmd_starttls_offered(s)) {
		*r = (struct smtp_reply){502, "5.5.1", "STARTTLS is not available here"};
		return;
	}
	smtp_session_reply(s, 220, "2.0.0", "Ready to start TLS");
	smtp_session_enter_state(s, SMTP_ST_TLS);
	bufferevent_disable(s->bev, EV_READ);
	/* session_on_write switches to TLS once the 220 has left. */
	r->code = 0;
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
	{SMTP_V_AUTH, ST(READY), 0, smtp_auth_start, "AUTH needs EHLO first and is not allowed during a transaction"},
	{SMTP_V_MAIL, ST(READY), CMD_NEEDS_AUTH, smtp_tx_mail, "Send EHLO first, or finish the transaction in progress"},
	{SMTP_V_RCPT, ST(MAIL) | ST(RCPT), CMD_NEEDS_AUTH, smtp_tx_rcpt, "Need MAIL before RCPT"},
	{SMTP_V_DATA, ST(RCPT) | ST(CHUNKS), CMD_NEEDS_AUTH | CMD_GROUP_END, smtp_tx_data,
	 "Need RCPT before DATA"},
	{SMTP_V_BDAT, ST_ANY, CMD_NEEDS_AUTH, smtp_tx_bdat, NULL},
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

/* cmd_gate - the 503/530/538 checks of the command table; true if allowed. */
static bool cmd_gate(struct smtp_session *s, const struct smtp_cmd_def *d,
			 const char *arg, struct smtp_reply *r)
{
	bool needs_auth = (d->flags & CMD_NEEDS_AUTH) && s->lst->mode != CONF_LISTEN_RELAY;
	if (needs_auth && !s->tls && !smtp_session_is_local(s)) {
		*r = (struct smtp_reply){530, "5.7.0", "Must issue a STARTTLS command first"};
		return false;
	}
	if (d->verb == SMTP_V_AUTH && !s->tls && s->lst->mode != CONF_LISTEN_RELAY &&
	    !smtp_session_is_local(s)) {
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
	if ((d->flags & CMD_NO_ARG) && smtp_cmd_arg_nonblank(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "This command takes no parameters"};
		return false;
	}
	return true;
}

/*
 * cmd_pipelining_error - a client sent more behind a command that must end a
 * pipelined group (EHLO, HELO, DATA: RFC 2920 3.1), i.e. before it could have
 * seen the reply. Nothing of it is executed: what follows HELO or DATA was
 * written for a state the client could only guess (the smuggling pattern), so
 * 554 5.5.0 and close, as Postfix does ("improper command pipelining").
 */
static void cmd_pipelining_error(struct smtp_session *s, enum smtp_verb v)
{
	const char *verb = smtp_verb_name(v);
	log_info("sid=%016llx event=improper_pipelining client=%s after=%s",
		 (unsigned long long)s->id, s->peer, verb);
	smtp_session_replyf(s, 554, "5.5.0",
		       "%s Protocol error: improper command pipelining after %s (wait for its "
		       "reply)",
		       s->conf->hostname, verb);
	smtp_session_close(s);
}

/* smtp_cmd_dispatch - parse, gate, run and answer one command line. */
void smtp_cmd_dispatch(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;
	struct smtp_reply r = {0};
	if (smtp_cmd_parse(line, len, &cmd, &r) != RC_OK) {
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_session_error(s);
		return;
	}
	const struct smtp_cmd_def *d = cmd_lookup(cmd.verb);
	if (d == NULL) {
		smtp_session_reply(s, 500, "5.5.1", "Command not recognized");
		smtp_session_error(s);
		return;
	}
	if (!cmd_gate(s, d, cmd.arg, &r)) {
		uint64_t n;
		if (d->verb == SMTP_V_BDAT && smtp_tx_bdat_size(cmd.arg, &n) && n > 0) {
			smtp_tx_bdat_refuse(s, n, &r);
			return;
		}
		smtp_session_reply(s, r.code, r.enh, r.text);
		smtp_session_error(s);
		return;
	}
	if ((d->flags & CMD_GROUP_END) &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		cmd_pipelining_error(s, cmd.verb);
		return;
	}
	d->fn(s, cmd.arg, &r);
	if (r.code == 0)
		return;
	smtp_session_reply(s, r.code, r.enh, r.text);
	if (r.code >= 500 && r.code != 552)
		smtp_session_error(s);
	if (d->verb == SMTP_V_BDAT && r.code >= 500) {
		/* Unparseable BDAT size: the octets that follow cannot be framed. */
		smtp_session_replyf(s, 421, "4.5.0", "%s Cannot resynchronise after bad BDAT",
			       s->conf->hostname);
		smtp_session_close(s);
	}
}
