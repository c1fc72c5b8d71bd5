/*
 * mta_client_txn.c - one mail transaction on an open connection (RFC 5321 3.3):
 * the checks that refuse a message before anything is sent (SIZE RFC 1870,
 * 8BITMIME RFC 6152, SMTPUTF8 RFC 6531), MAIL/RCPT with their DSN parameters
 * (RFC 3461), DATA, the dot-stuffed body, and each recipient's result.
 *
 * Invariants:
 * - With PIPELINING, MAIL, every RCPT and DATA go out in one write and DATA is
 *   the last command of the group (RFC 2920 3.1); replies are matched to the
 *   commands in order. Without it, one command at a time.
 * - Each recipient is decided exactly once (c->rst): by its RCPT reply if that
 *   failed, by MAIL's reply if MAIL failed, else by DATA's failure or the final
 *   reply. Anything undecided when the connection is lost, times out or breaks
 *   the protocol gets 451 4.4.2 TEMPFAIL ("not delivered", never "delivered").
 * - The body is borrowed and never modified; it is copied into the output in
 *   pieces of at most BODY_HIWAT bytes as the output drains (the write
 *   callback), dot-stuffed on the way, so a large message never sits in memory
 *   twice. A "." is doubled at the start of every line, a line starting after
 *   any LF (so that no next hop, lenient about bare LF, can see an end of data
 *   inside the message).
 * - If every recipient was refused the message is not sent: a 354 got anyway
 *   (pipelined DATA) is answered with a lone "." whose reply is ignored;
 *   otherwise the transaction stays open at the server and c->dirty makes the
 *   next transaction start with RSET (QUIT ends it if none follows).
 * Failure model: see mta_client.c.
 */
#include "mta/mta_client_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "spool/spool.h"

#define BODY_HIWAT (256 * 1024)	/* fill the output up to this */
#define BODY_LOWAT (64 * 1024)	/* the write callback runs when it drains to this */

/* ---- results ------------------------------------------------------------------ */

static void txn_decide(struct mta_conn *c, size_t i, enum rc rc, const struct mta_reply *r)
{
	c->txn->rcpt[i].rc = rc;
	c->txn->rcpt[i].reply = *r;
	c->rst[i] = MTA_RS_DECIDED;
}

/* txn_decide_open - every recipient not decided yet gets rc and r. */
static void txn_decide_open(struct mta_conn *c, enum rc rc, const struct mta_reply *r)
{
	for (size_t i = 0; i < c->txn->nrcpt; i++)
		if (c->rst[i] != MTA_RS_DECIDED)
			txn_decide(c, i, rc, r);
}

/* txn_finish - every recipient is decided: back to idle (unless broken), done(). */
static void txn_finish(struct mta_conn *c)
{
	struct mta_txn *t = c->txn;
	size_t n[RC__COUNT] = {0};
	for (size_t i = 0; i < t->nrcpt; i++) {
		if (c->rst[i] != MTA_RS_DECIDED)
			fatal("conn=%016llx txn_finish: recipient %zu undecided",
			      (unsigned long long)c->id, i);
		n[t->rcpt[i].rc]++;
	}
	char idstr[ID_STR_LEN + 1];
	id_format(t->msgid, idstr);
	log_debug("id=%s conn=%016llx event=txn host=%s rcpts=%zu ok=%zu tempfail=%zu "
		 "permfail=%zu usable=%s",
		 idstr, (unsigned long long)c->id, c->host, t->nrcpt, n[RC_OK], n[RC_TEMPFAIL],
		 n[RC_PERMFAIL], c->state == MTA_CST_BROKEN ? "no" : "yes");
	t->unanswered = c->state == MTA_CST_BROKEN && c->txn_replies == 0;
	free(c->rst);
	c->rst = NULL;
	c->txn = NULL;
	c->done_txn = t;
	if (c->state != MTA_CST_BROKEN) {
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		mta_conn_enter_state(c, MTA_CST_READY);
	}
	mta_conn_notify(c, MTA_NOTIFY_DONE);
}

/* mta_txn_abort - the connection broke: what is undecided is not delivered. */
void mta_txn_abort(struct mta_conn *c)
{
	txn_decide_open(c, RC_TEMPFAIL, &c->lost);
	txn_finish(c);
}

/* ---- checks before anything is sent ------------------------------------------------- */

static bool has_ctl(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool has_8bit(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* txn_needs_utf8 - SMTPUTF8 flagged, or a non-ASCII address anyway. */
static bool txn_needs_utf8(const struct mta_txn *t)
{
	if ((t->flags & SPOOL_F_SMTPUTF8) || has_8bit(t->sender))
		return true;
	for (size_t i = 0; i < t->nrcpt; i++)
		if (has_8bit(t->rcpt[i].addr))
			return true;
	return false;
}

/* txn_refuse - a message this server cannot take: fill r (5xx), true. */
static bool txn_refuse(struct mta_conn *c, const struct mta_txn *t, struct mta_reply *r)
{
	bool bad = has_ctl(t->sender) || t->sender == NULL;
	for (size_t i = 0; i < t->nrcpt; i++)
		bad = bad || t->rcpt[i].addr == NULL || has_ctl(t->rcpt[i].addr);
	uint64_t size = evbuffer_get_length(t->body);
	if (bad)
		mta_reply_set(r, 553, "5.1.3", "Address with control characters, not sent");
	else if ((c->ext & MTA_EXT_SIZE) && c->size_max > 0 && size > c->size_max)
		mta_reply_set(r, 552, "5.3.4",
			      "Message size exceeds fixed maximum message size of %s "
			      "(%llu > %llu bytes)",
			      c->host, (unsigned long long)size, (unsigned long long)c->size_max);
	else if (txn_needs_utf8(t) && !(c->ext & MTA_EXT_SMTPUTF8))
		mta_reply_set(r, 553, "5.6.7",
			      "Message needs SMTPUTF8, which %s does not support", c->host);
	else if ((t->flags & SPOOL_F_8BITMIME) && !(c->ext & MTA_EXT_8BITMIME))
		mta_reply_set(r, 554, "5.6.3",
			      "Conversion required but not supported: %s does not support "
			      "8BITMIME", c->host);
	else
		return false;
	return true;
}

/* ---- commands -------------------------------------------------------------------------- */

/* add_xtext - RFC 3461 4: "+" hex for "+", "=", controls, SP and non-ASCII. */
static void add_xtext(struct mta_conn *c, const char *s)
{
	size_t run = 0, i = 0;
	for (; s[i] != '\0'; i++) {
		unsigned char u = (unsigned char)s[i];
		if (u >= 33 && u <= 126 && u != '+' && u != '=')
			continue;
		char hex[4];
		snprintf(hex, sizeof hex, "+%02X", u);
		mta_conn_add(c, s + run, i - run);
		mta_conn_add(c, hex, 3);
		run = i + 1;
	}
	mta_conn_add(c, s + run, i - run);
}

/* add_orcpt - " ORCPT=type;value": rfc822 xtext-encoded; utf-8 (RFC 6533)
 * as stored, unless it holds raw UTF-8 and the server lacks SMTPUTF8. */
static void add_orcpt(struct mta_conn *c, const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	if (semi == NULL || semi == orcpt || semi[1] == '\0')
		return;
	size_t tlen = (size_t)(semi - orcpt);
	bool utf8 = tlen == 5 && strncasecmp(orcpt, "utf-8", 5) == 0;
	if (utf8 && has_8bit(semi + 1) && !(c->ext & MTA_EXT_SMTPUTF8))
		return;
	mta_conn_adds(c, " ORCPT=");
	mta_conn_add(c, orcpt, tlen + 1);
	if (utf8)
		mta_conn_adds(c, semi + 1);
	else
		add_xtext(c, semi + 1);
}

static void add_notify(struct mta_conn *c, uint8_t n)
{
	if (n & SPOOL_NOTIFY_NEVER) {
		mta_conn_adds(c, " NOTIFY=NEVER");
		return;
	}
	const char *sep = " NOTIFY=";
	static const struct {
		uint8_t bit;
		const char *name;
	} kw[] = {{SPOOL_NOTIFY_SUCCESS, "SUCCESS"},
		  {SPOOL_NOTIFY_FAILURE, "FAILURE"},
		  {SPOOL_NOTIFY_DELAY, "DELAY"}};
	for (size_t i = 0; i < ARRAY_LEN(kw); i++) {
		if (!(n & kw[i].bit))
			continue;
		mta_conn_adds(c, sep);
		mta_conn_adds(c, kw[i].name);
		sep = ",";
	}
}

/* txn_send_mail - MAIL FROM:<sender> and the parameters the server knows. */
static bool txn_send_mail(struct mta_conn *c)
{
	const struct mta_txn *t = c->txn;
	if (!mta_conn_cmd_start(c, "MAIL"))
		return false;
	mta_conn_adds(c, "MAIL FROM:<");
	mta_conn_adds(c, t->sender);
	mta_conn_adds(c, ">");
	if (c->ext & MTA_EXT_SIZE) {
		char size[32];
		snprintf(size, sizeof size, " SIZE=%zu", evbuffer_get_length(t->body));
		mta_conn_adds(c, size);
	}
	if ((t->flags & SPOOL_F_8BITMIME) && (c->ext & MTA_EXT_8BITMIME))
		mta_conn_adds(c, " BODY=8BITMIME");
	if (txn_needs_utf8(t))
		mta_conn_adds(c, " SMTPUTF8");
	if (c->ext & MTA_EXT_DSN) {
		if (t->flags & SPOOL_F_RET_FULL)
			mta_conn_adds(c, " RET=FULL");
		else if (t->flags & SPOOL_F_RET_HDRS)
			mta_conn_adds(c, " RET=HDRS");
		if (t->envid != NULL && t->envid[0] != '\0') {
			mta_conn_adds(c, " ENVID=");
			add_xtext(c, t->envid);
		}
	}
	mta_conn_cmd_end(c);
	return true;
}

/* txn_send_rcpt - RCPT TO:<addr> with NOTIFY and ORCPT when the server has DSN. */
static bool txn_send_rcpt(struct mta_conn *c, size_t i)
{
	const struct mta_txn_rcpt *r = &c->txn->rcpt[i];
	if (!mta_conn_cmd_start(c, "RCPT"))
		return false;
	mta_conn_adds(c, "RCPT TO:<");
	mta_conn_adds(c, r->addr);
	mta_conn_adds(c, ">");
	if (c->ext & MTA_EXT_DSN) {
		add_notify(c, r->notify);
		if (r->orcpt != NULL)
			add_orcpt(c, r->orcpt);
	}
	mta_conn_cmd_end(c);
	return true;
}

static bool txn_send_data(struct mta_conn *c)
{
	if (!mta_conn_cmd_start(c, "DATA"))
		return false;
	mta_conn_adds(c, "DATA");
	mta_conn_cmd_end(c);
	return true;
}

/* txn_send_group - MAIL, every RCPT and DATA in one write (RFC 2920). */
static void txn_send_group(struct mta_conn *c)
{
	if (!txn_send_mail(c))
		return;
	for (size_t i = 0; i < c->txn->nrcpt; i++)
		if (!txn_send_rcpt(c, i))
			return;
	txn_send_data(c);
}

/* ---- the body ------------------------------------------------------------------------- */

/* body_stuff - p[0..n) onto the output, a "." doubled at every line start. */
static void body_stuff(struct mta_conn *c, const char *p, size_t n)
{
	size_t run = 0, i = 0;
	while (i < n) {
		if (c->body_bol && p[i] == '.') {
			mta_conn_add(c, p + run, i - run);
			mta_conn_add(c, ".", 1);
			run = i;	/* the line's own dot goes with the rest */
		}
		const char *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL) {
			c->body_bol = false;
			break;
		}
		i = (size_t)(nl - p) + 1;
		c->body_bol = true;
	}
	mta_conn_add(c, p + run, n - run);
	if (n >= 2) {
		c->body_tail[0] = p[n - 2];
		c->body_tail[1] = p[n - 1];
	} else if (n == 1) {
		c->body_tail[0] = c->body_tail[1];
		c->body_tail[1] = p[0];
	}
}

/* mta_txn_body_fill - more of the body while the output is below BODY_HIWAT;
 * at the end, the final dot. Runs again from the write callback. */
void mta_txn_body_fill(struct mta_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev), *body = c->txn->body;
	size_t blen = evbuffer_get_length(body);
	while (c->body_off < blen && evbuffer_get_length(out) < BODY_HIWAT) {
		struct evbuffer_ptr pos;
		struct evbuffer_iovec v[8];
		if (evbuffer_ptr_set(body, &pos, c->body_off, EVBUFFER_PTR_SET) != 0)
			fatal("conn=%016llx body position", (unsigned long long)c->id);
		size_t want = MIN(blen - c->body_off, (size_t)BODY_HIWAT);
		int nv = evbuffer_peek(body, (ev_ssize_t)want, &pos, v, (int)ARRAY_LEN(v));
		if (nv <= 0)
			fatal("conn=%016llx body peek", (unsigned long long)c->id);
		for (int k = 0; k < MIN(nv, (int)ARRAY_LEN(v)) && want > 0; k++) {
			size_t len = MIN(v[k].iov_len, want);
			body_stuff(c, v[k].iov_base, len);
			c->body_off += len;
			want -= len;
		}
	}
	if (c->body_off == blen)
		mta_conn_enter_state(c, MTA_CST_FINAL);
}

/* txn_body_start - 354 came: nothing else may be waiting from the server. */
static void txn_body_start(struct mta_conn *c)
{
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 || !mta_reply_is_idle(&c->rp)) {
		mta_conn_lost(c, NULL, "protocol error: server sent data after 354");
		return;
	}
	c->body_off = 0;
	c->body_bol = true;
	c->body_tail[0] = '\r';	/* as if after the DATA line: an empty body is just "." */
	c->body_tail[1] = '\n';
	bufferevent_setwatermark(c->bev, EV_WRITE, BODY_LOWAT, 0);
	mta_conn_set_write_timeout(c, c->to_data_block);
	mta_txn_body_fill(c);
}

/* txn_send_dot - end of data: a CRLF if the body lacks it, then ".". */
static void txn_send_dot(struct mta_conn *c, bool with_body)
{
	if (!mta_conn_cmd_start(c, with_body ? "end of data" : "lone dot"))
		return;
	if (with_body && !(c->body_tail[0] == '\r' && c->body_tail[1] == '\n'))
		mta_conn_add(c, "\r\n", 2);
	mta_conn_add(c, ".", 1);
	mta_conn_cmd_end(c);
}

/* mta_txn_on_enter - the transaction part of entering a state: its command. */
void mta_txn_on_enter(struct mta_conn *c, enum mta_cstate st)
{
	switch (st) {
	case MTA_CST_MAIL:
		if (c->pipelined)
			txn_send_group(c);
		else
			txn_send_mail(c);
		break;
	case MTA_CST_RCPT:
		if (!c->pipelined)
			txn_send_rcpt(c, c->rcpt_i);
		break;
	case MTA_CST_DATA:
		if (!c->pipelined)
			txn_send_data(c);
		break;
	case MTA_CST_BODY:
		txn_body_start(c);
		break;
	case MTA_CST_FINAL:
		txn_send_dot(c, true);
		break;
	case MTA_CST_ABORT:
		txn_send_dot(c, false);
		break;
	default:
		fatal("mta_txn_on_enter: state %s", mta_cstate_name(st));
	}
}

/* ---- replies ------------------------------------------------------------------------------- */

static void on_rset(struct mta_conn *c, const struct mta_reply *r)
{
	if (mta_reply_class(r->code) != RC_OK) {
		mta_conn_lost(c, NULL, "RSET answered with %d %.200s", r->code, r->text);
		return;
	}
	c->dirty = false;
	mta_conn_enter_state(c, MTA_CST_MAIL);
}

static void on_mail(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_PROTO) {
		mta_conn_lost(c, NULL, "protocol error: MAIL answered with %d", r->code);
		return;
	}
	if (cls != RC_OK) {
		/* Every recipient gets MAIL's reply; pipelined RCPT and DATA
		 * replies are still read (and ignored) to stay in step. */
		c->mail_failed = true;
		txn_decide_open(c, cls, r);
		if (!c->pipelined) {
			txn_finish(c);
			return;
		}
	} else {
		c->dirty = true;
	}
	c->rcpt_i = 0;
	mta_conn_enter_state(c, MTA_CST_RCPT);
}

static void on_rcpt(struct mta_conn *c, const struct mta_reply *r)
{
	size_t i = c->rcpt_i++;
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_PROTO) {
		mta_conn_lost(c, NULL, "protocol error: RCPT answered with %d", r->code);
		return;
	}
	if (!c->mail_failed && cls == RC_OK) {
		c->rst[i] = MTA_RS_ACCEPTED;
		c->naccepted++;
	} else if (!c->mail_failed) {
		txn_decide(c, i, cls, r);
	}
	if (c->rcpt_i < c->txn->nrcpt) {
		mta_conn_enter_state(c, MTA_CST_RCPT);
		return;
	}
	if (!c->pipelined && c->naccepted == 0) {
		txn_finish(c);	/* no DATA; c->dirty: RSET before the next one */
		return;
	}
	mta_conn_enter_state(c, MTA_CST_DATA);
}

static void on_data(struct mta_conn *c, const struct mta_reply *r)
{
	if (r->code / 100 == 3) {
		bool send = c->naccepted > 0 && !c->mail_failed;
		mta_conn_enter_state(c, send ? MTA_CST_BODY : MTA_CST_ABORT);
		return;
	}
	enum rc cls = mta_reply_class(r->code);
	if (cls != RC_TEMPFAIL && cls != RC_PERMFAIL) {
		mta_conn_lost(c, NULL, "protocol error: DATA answered with %d", r->code);
		return;
	}
	txn_decide_open(c, cls, r);	/* the accepted recipients */
	txn_finish(c);
}

static void on_final(struct mta_conn *c, const struct mta_reply *r)
{
	enum rc cls = mta_reply_class(r->code);
	if (cls == RC_PROTO) {
		mta_conn_lost(c, NULL, "protocol error: end of data answered with %d", r->code);
		return;
	}
	c->dirty = false;
	txn_decide_open(c, cls, r);
	txn_finish(c);
}

/* mta_txn_on_reply - a reply in one of the transaction's states. */
void mta_txn_on_reply(struct mta_conn *c, const struct mta_reply *r)
{
	switch (c->state) {
	case MTA_CST_RSET:
		on_rset(c, r);
		break;
	case MTA_CST_MAIL:
		on_mail(c, r);
		break;
	case MTA_CST_RCPT:
		on_rcpt(c, r);
		break;
	case MTA_CST_DATA:
		on_data(c, r);
		break;
	case MTA_CST_FINAL:
		on_final(c, r);
		break;
	case MTA_CST_ABORT:
		c->dirty = false;	/* whatever it says, the transaction is over */
		txn_finish(c);
		break;
	default:
		fatal("mta_txn_on_reply: state %s", mta_cstate_name(c->state));
	}
}

/* ---- the entry point -------------------------------------------------------------------- */

/* mta_conn_send - run one transaction; done() reports every recipient. */
void mta_conn_send(struct mta_conn *c, struct mta_txn *t)
{
	if (c->txn != NULL || c->notify != MTA_NOTIFY_NONE ||
	    (c->state != MTA_CST_READY && c->state != MTA_CST_BROKEN))
		fatal("conn=%016llx mta_conn_send: connection busy (state %s)",
		      (unsigned long long)c->id, mta_cstate_name(c->state));
	c->txn = t;
	c->stage_us = metrics_now_us();
	c->rst = xcalloc(t->nrcpt > 0 ? t->nrcpt : 1, 1);
	for (size_t i = 0; i < t->nrcpt; i++) {
		t->rcpt[i].rc = RC_TEMPFAIL;
		memset(&t->rcpt[i].reply, 0, sizeof t->rcpt[i].reply);
	}
	c->rcpt_i = c->naccepted = 0;
	c->txn_replies = 0;
	c->mail_failed = false;
	struct mta_reply r;
	if (c->state == MTA_CST_BROKEN) {
		txn_decide_open(c, RC_TEMPFAIL, &c->lost);
		txn_finish(c);
		return;
	}
	if (t->nrcpt > 0 && txn_refuse(c, t, &r)) {
		char idstr[ID_STR_LEN + 1];
		id_format(t->msgid, idstr);
		log_info("id=%s conn=%016llx event=refused_before_sending host=%s "
			 "reply=\"%d %s %s\"",
			 idstr, (unsigned long long)c->id, c->host, r.code, r.enh, r.text);
		txn_decide_open(c, RC_PERMFAIL, &r);
	}
	if (t->nrcpt == 0 || c->rst[0] == MTA_RS_DECIDED) {
		txn_finish(c);
		return;
	}
	c->pipelined = (c->ext & MTA_EXT_PIPELINING) != 0;
	mta_conn_set_write_timeout(c, c->to_mail);
	mta_conn_enter_state(c, c->dirty ? MTA_CST_RSET : MTA_CST_MAIL);
}
