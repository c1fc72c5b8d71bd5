/*
 * smtp_tx.c - the mail transaction of an inbound session (struct smtp_tx in
 * smtp_session.h): MAIL, RCPT, DATA and BDAT, and the intake of message bytes
 * up to the last one, where smtp_submit.c takes over.
 *
 * Invariants:
 * - The transaction is reset in one place, smtp_tx_reset().
 * - Message bytes kept in s->tx.body are reserved from the server-wide
 *   smtp.memory_budget first (tx.mem_held); tx_mem_drop gives them back on
 *   every way a transaction ends (commit answered, reset, refusal, free).
 * - A refused BDAT chunk is still read (RFC 3030 2): its octets are framed.
 */
#include "smtp/smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "policy/policy.h"

/* ---- the memory budget (smtp.memory_budget, counted in smtp_server.c) ------ */

/* tx_mem_take - reserve n more bytes for s->tx.body; false if the budget is spent. */
static bool tx_mem_take(struct smtp_session *s, uint64_t n)
{
	if (!smtp_mem_reserve(s->srv, n, s->conf->smtp.memory_budget))
		return false;
	s->tx.mem_held += n;
	return true;
}

/* tx_mem_drop - give back everything s reserved (its body is gone or drained). */
static void tx_mem_drop(struct smtp_session *s)
{
	if (s->tx.mem_held == 0)
		return;
	smtp_mem_release(s->srv, s->tx.mem_held);
	log_debug("sid=%016llx event=memory_release bytes=%llu held=%llu",
		  (unsigned long long)s->id, (unsigned long long)s->tx.mem_held,
		  (unsigned long long)smtp_mem_held(s->srv));
	s->tx.mem_held = 0;
}

/* tx_free_rcpts - free the recipients of s's transaction. */
static void tx_free_rcpts(struct smtp_tx *tx)
{
	for (size_t i = 0; i < tx->nrcpt; i++) {
		free(tx->rcpt[i].addr);
		free(tx->rcpt[i].orcpt);
	}
	free(tx->rcpt);
}

/* smtp_tx_reset - forget the transaction: the one place it is reset. Every
 * field goes back to zero; the body buffer is kept, emptied, or created. */
void smtp_tx_reset(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	tx_free_rcpts(tx);
	tx_mem_drop(s);
	if (tx->mc_live)
		smtp_msg_check_fini(&tx->mc);
	struct evbuffer *body = tx->body;
	*tx = (struct smtp_tx){0};
	if (body)
		evbuffer_drain(body, evbuffer_get_length(body));
	else
		body = evbuffer_new();
	tx->body = body;
}

/* smtp_tx_fini - free the transaction with its session. */
void smtp_tx_fini(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	tx_mem_drop(s);
	tx_free_rcpts(tx);
	if (tx->body)
		evbuffer_free(tx->body);
	if (tx->mc_live)
		smtp_msg_check_fini(&tx->mc);
}

/* ---- MAIL, RCPT ------------------------------------------------------------------ */

/* smtp_tx_emit - an event of this session's transaction: rejected (r is the
 * refusal) or suppressed (r is NULL). */
void smtp_tx_emit(struct smtp_session *s, enum evlog_type type, uint64_t msgid,
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
		.sender = s->tx.sender.addr,
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

/* smtp_tx_mail - MAIL FROM: open a transaction. */
void smtp_tx_mail(struct smtp_session *s, const char *arg, struct smtp_reply *r)
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
		str_lcpy(s->tx.sender.addr, path.addr, sizeof s->tx.sender.addr);
		smtp_tx_emit(s, EVLOG_REJECTED, 0, NULL, r, false);
		s->tx.sender.addr[0] = '\0';
		return;
	}
	smtp_tx_reset(s);
	s->tx.sender = path;
	s->tx.mp = mp;
	smtp_session_enter_state(s, SMTP_ST_MAIL);
	snprintf(s->text, sizeof s->text, "Sender <%s> OK", path.addr);
	*r = (struct smtp_reply){250, "2.1.0", s->text};
}

/* tx_rcpt_seen - is addr already a recipient of this transaction? Paths
 * hold the domain lower-cased, the local part as sent (RFC 5321 2.4: only the
 * recipient's host may fold its case). */
static bool tx_rcpt_seen(const struct smtp_session *s, const char *addr)
{
	for (size_t i = 0; i < s->tx.nrcpt; i++)
		if (strcmp(s->tx.rcpt[i].addr, addr) == 0)
			return true;
	return false;
}

/* smtp_tx_rcpt - RCPT TO: one more recipient. */
void smtp_tx_rcpt(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	if (smtp_rcpt_parse(arg, s->tx.mp.smtputf8, &path, &rp, r) != RC_OK)
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
	if (tx_rcpt_seen(s, path.addr)) {
		/* One copy reaches the recipient; the client still learns it is fine. */
		snprintf(s->text, sizeof s->text, "Recipient <%s> OK (duplicate)", path.addr);
		*r = (struct smtp_reply){250, "2.1.5", s->text};
		return;
	}
	if (s->tx.nrcpt >= s->conf->smtp.max_recipients) {
		*r = (struct smtp_reply){452, "4.5.3", "Too many recipients"};
		return;
	}
	s->tx.rcpt = xrealloc(s->tx.rcpt, (s->tx.nrcpt + 1) * sizeof *s->tx.rcpt);
	s->tx.rcpt[s->tx.nrcpt++] = (struct smtp_tx_rcpt){
		.addr = xstrdup(path.addr),
		.orcpt = rp.orcpt[0] ? xstrdup(rp.orcpt) : NULL,
		.notify = rp.notify,
		/* A point lookup on the store's read connection (microseconds). */
		.suppressed = s->user != NULL && store_suppression_check(s->srv->store,
									 s->user->name,
									 path.addr) == RC_OK,
	};
	smtp_session_enter_state(s, SMTP_ST_RCPT);
	snprintf(s->text, sizeof s->text, "Recipient <%s> OK", path.addr);
	*r = (struct smtp_reply){250, "2.1.5", s->text};
}

/* ---- message intake --------------------------------------------------------------- */

static void tx_intake_begin(struct smtp_session *s)
{
	if (s->tx.mc_live)
		smtp_msg_check_fini(&s->tx.mc);
	smtp_msg_check_init(&s->tx.mc, s->conf->smtp.max_message_size);
	s->tx.mc_live = true;
	evbuffer_drain(s->tx.body, evbuffer_get_length(s->tx.body));
	tx_mem_drop(s);
	s->tx.mem_refused = false;
	s->tx.transfer_ms = time_mono_ms();
}

/* tx_mem_refuse - the budget cannot hold this message: drop what it holds
 * now (the rest is read and dropped); the client gets 452 4.3.1 at its end. */
static void tx_mem_refuse(struct smtp_session *s)
{
	log_info("sid=%016llx event=memory_budget_exhausted client=%s size=%llu held=%llu "
		 "budget=%llu",
		 (unsigned long long)s->id, s->peer, (unsigned long long)s->tx.mc.size,
		 (unsigned long long)smtp_mem_held(s->srv),
		 (unsigned long long)s->conf->smtp.memory_budget);
	s->tx.mem_refused = true;
	evbuffer_drain(s->tx.body, evbuffer_get_length(s->tx.body));
	tx_mem_drop(s);
}

/* tx_keeping - are content octets still kept? Once the message is too big, a
 * BDAT chunk failed or the memory budget is spent, they are checked and dropped. */
static bool tx_keeping(const struct smtp_session *s)
{
	return !s->tx.mc.too_big && !s->tx.bdat_failed && !s->tx.mem_refused;
}

/*
 * tx_kept - n content octets were just appended to the body (kept: they were
 * kept, see tx_keeping): count them against smtp.memory_budget, or drop the body
 * once the message is too big or the budget cannot hold them. They were appended
 * by copying (evbuffer_add), never by moving the reader's blocks: a block holding
 * a few octets costs a kilobyte or more, so moved blocks of tiny BDAT chunks (or
 * of a DATA trickled a byte per packet) made the memory held many times what the
 * budget counted (issue 12). Copied, the body is a run of full blocks and the
 * count is the memory within a block. Past the budget there is at most the one
 * read just appended, and only until this call.
 */
static void tx_kept(struct smtp_session *s, bool kept, size_t n)
{
	if (!kept)
		return;
	if (s->tx.mc.too_big) {
		evbuffer_drain(s->tx.body, evbuffer_get_length(s->tx.body));
		tx_mem_drop(s);
	} else if (n > 0 && !tx_mem_take(s, n)) {
		tx_mem_refuse(s);
	}
}

/* tx_take_octets - n octets of a BDAT chunk from the front of in: checked, and
 * appended to the body while kept, one read's block at a time. */
static void tx_take_octets(struct smtp_session *s, struct evbuffer *in, size_t n)
{
	while (n > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			fatal("event=bdat_short_input where=tx_take_octets");
		size_t m = MIN(n, v.iov_len);
		bool keep = tx_keeping(s);
		smtp_msg_check_feed(&s->tx.mc, v.iov_base, m);
		if (keep && evbuffer_add(s->tx.body, v.iov_base, m) != 0)
			fatal("event=evbuffer_add_failed where=tx_take_octets");
		evbuffer_drain(in, m);
		tx_kept(s, keep, m);
		n -= m;
	}
}

/* smtp_tx_data - DATA: read the content up to CRLF.CRLF. */
void smtp_tx_data(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	if (smtp_cmd_arg_nonblank(arg)) {
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: DATA (no parameters)"};
		return;
	}
	if (s->tx.used_bdat) {
		*r = (struct smtp_reply){503, "5.5.1",
					 "DATA cannot follow BDAT in one transaction: end it with "
					 "BDAT n LAST, or RSET"};
		return;
	}
	tx_intake_begin(s);
	smtp_data_init(&s->tx.dr);
	smtp_session_enter_state(s, SMTP_ST_DATA);
	smtp_session_set_timeout(s, s->conf->smtp.timeout_data);
	*r = (struct smtp_reply){354, NULL, "End data with <CR><LF>.<CR><LF>"};
}

/* smtp_tx_bdat_refuse - a refused BDAT still owns its chunk (RFC 3030 2): read
 * and drop size octets, then answer why. Never resets the transaction. */
void smtp_tx_bdat_refuse(struct smtp_session *s, uint64_t size, const struct smtp_reply *why)
{
	s->tx.bdat_err = *why;
	if (size == 0) {
		smtp_session_reply(s, why->code, why->enh, why->text);
		smtp_session_error(s);
		return;
	}
	s->tx.bdat_refused = true;
	s->tx.bdat_prev = s->state;
	s->tx.bdat_remaining = size;
	if (s->tx.transfer_ms == 0)
		s->tx.transfer_ms = time_mono_ms();
	smtp_session_enter_state(s, SMTP_ST_BDAT);
	smtp_session_set_timeout(s, s->conf->smtp.timeout_data);
}

/* smtp_tx_bdat_size - the chunk size of a BDAT argument ("size [LAST]"). */
bool smtp_tx_bdat_size(const char *arg, uint64_t *size)
{
	char num[24];
	size_t nl = strcspn(arg, " ");
	if (nl == 0 || nl >= sizeof num)
		return false;
	memcpy(num, arg, nl);
	num[nl] = '\0';
	return str_to_u64(num, size);
}

/* smtp_tx_bdat - BDAT size [LAST] (RFC 3030): read one chunk. */
void smtp_tx_bdat(struct smtp_session *s, const char *arg, struct smtp_reply *r)
{
	const char *sp = strchr(arg, ' ');
	uint64_t size;
	bool last = sp && str_ieq(sp + 1, "LAST");
	if (!smtp_tx_bdat_size(arg, &size) || (sp && !last)) {
		/* The chunk length is unknown: the stream cannot be resynchronised. */
		*r = (struct smtp_reply){501, "5.5.4", "Syntax: BDAT size [LAST]"};
		return;
	}
	if (s->state != SMTP_ST_RCPT && s->state != SMTP_ST_CHUNKS) {
		struct smtp_reply why = {503, "5.5.1",
					 s->state == SMTP_ST_MAIL ? "Need RCPT before BDAT"
								  : "Need MAIL and RCPT before BDAT"};
		smtp_tx_bdat_refuse(s, size, &why);
		r->code = 0;
		return;
	}
	if (!s->tx.used_bdat) {
		tx_intake_begin(s);
		s->tx.used_bdat = true;
	}
	if (++s->tx.bdat_chunks > SMTP_BDAT_CHUNKS_MAX && !s->tx.bdat_failed) {
		/* Read on and refuse: the chunks that follow are still framed. */
		log_info("sid=%016llx event=reject reason=too_many_chunks client=%s chunks=%u",
			 (unsigned long long)s->id, s->peer, s->tx.bdat_chunks);
		s->tx.bdat_failed = true;
		s->tx.bdat_err = (struct smtp_reply){552, "5.3.4",
						  "Too many BDAT chunks for one message; send "
						  "larger chunks"};
		evbuffer_drain(s->tx.body, evbuffer_get_length(s->tx.body));
		tx_mem_drop(s);
	}
	s->tx.bdat_last = last;
	s->tx.bdat_remaining = size;
	smtp_session_enter_state(s, SMTP_ST_BDAT);
	smtp_session_set_timeout(s, s->conf->smtp.timeout_data);
	r->code = 0; /* answered when the chunk has been read */
}

/* smtp_tx_read_data - DATA content: unstuff, check, store; end at CRLF.CRLF. */
bool smtp_tx_read_data(struct smtp_session *s, struct evbuffer *in)
{
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = 0;
		uint64_t before = s->tx.mc.size;
		bool keep = tx_keeping(s);
		/* Unstuffed, checked and appended to the body in one pass over the read. */
		enum rc rc = smtp_data_feed_check(&s->tx.dr, v.iov_base, v.iov_len, &used,
						  &s->tx.mc, keep ? s->tx.body : NULL);
		evbuffer_drain(in, used);
		tx_kept(s, keep, (size_t)(s->tx.mc.size - before));
		if (rc == RC_OK) {
			smtp_submit_message(s);
			return true;
		}
	}
	return false;
}

/* smtp_tx_read_bdat - a BDAT chunk: exactly the announced number of octets. */
bool smtp_tx_read_bdat(struct smtp_session *s, struct evbuffer *in)
{
	size_t n = (size_t)MIN((uint64_t)evbuffer_get_length(in), s->tx.bdat_remaining);
	s->tx.bdat_remaining -= n;
	if (s->tx.bdat_refused)
		evbuffer_drain(in, n);
	else
		tx_take_octets(s, in, n);
	if (s->tx.bdat_remaining > 0)
		return false;
	smtp_session_set_timeout(s, s->conf->smtp.timeout_command);
	if (s->tx.bdat_refused) {
		s->tx.bdat_refused = false;
		if (!s->tx.used_bdat)
			s->tx.transfer_ms = 0;
		smtp_session_enter_state(s, s->tx.bdat_prev);
		smtp_session_reply(s, s->tx.bdat_err.code, s->tx.bdat_err.enh, s->tx.bdat_err.text);
		return !smtp_session_error(s);
	}
	if (s->tx.bdat_last) {
		smtp_submit_message(s);
		return true;
	}
	smtp_session_enter_state(s, SMTP_ST_CHUNKS);
	if (s->tx.mc.too_big && !s->tx.bdat_failed) {
		s->tx.bdat_failed = true;
		s->tx.bdat_err = (struct smtp_reply){552, "5.3.4",
						  "Message size exceeds fixed maximum message size"};
	} else if (s->tx.mem_refused && !s->tx.bdat_failed) {
		s->tx.bdat_failed = true;
		s->tx.bdat_err = (struct smtp_reply){452, "4.3.1",
						  "Insufficient system storage, try again later"};
	}
	if (s->tx.bdat_failed)
		smtp_session_reply(s, s->tx.bdat_err.code, s->tx.bdat_err.enh, s->tx.bdat_err.text);
	else
		smtp_session_replyf(s, 250, "2.0.0", "%llu octets received",
			       (unsigned long long)s->tx.mc.size);
	return true;
}
