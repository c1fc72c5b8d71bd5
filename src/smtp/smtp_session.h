/*
 * smtp_session.h - the inbound session, shared by the files that run it. Not a
 * public header: only the session's files in src/smtp/ include it.
 *
 *   smtp_session.c  the state machine: lifetime, the read loop, timeouts and
 *                   totals, STARTTLS's switch, the greeting
 *   smtp_cmd.c      the command table, the dispatcher (503/530/538 gatekeeping)
 *                   and the small commands (EHLO, HELO, RSET, NOOP, ...)
 *   smtp_auth.c     AUTH: decoding, the exchange, the password check
 *   smtp_tx.c       the transaction (struct smtp_tx): MAIL, RCPT, DATA, BDAT
 *   smtp_submit.c   the end of a message: checks, trace, signing, suppression,
 *                   the spool commit and its answer
 *
 * Ownership: a session owns its transaction (s->tx) and everything in it. The
 * transaction is reset in one place, smtp_tx_reset(); smtp_tx_fini() frees it
 * with the session.
 */
#ifndef RELEVO_SMTP_SESSION_H
#define RELEVO_SMTP_SESSION_H

#include <arpa/inet.h>

#include "smtp/smtp_int.h"
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

#define ST(x) (1u << SMTP_ST_##x)

enum smtp_auth_step {
	SMTP_AUTH_NONE, SMTP_AUTH_PLAIN_RESP, SMTP_AUTH_LOGIN_USER, SMTP_AUTH_LOGIN_PASS
};

struct smtp_tx_rcpt {
	char *addr;
	char *orcpt;
	uint8_t notify;
	bool suppressed;	/* on the account's suppression list: answered 250,
				 * left out of the envelope, reported as an event */
};

/*
 * struct smtp_tx - one mail transaction: from MAIL (or the reset that precedes
 * it) to the end of the message. Every field but body is zero after
 * smtp_tx_reset(); body is kept (emptied) or created there.
 */
struct smtp_tx {
	struct smtp_path sender;
	struct smtp_mail_params mp;
	struct smtp_tx_rcpt *rcpt;	/* owned, nrcpt entries */
	size_t nrcpt;
	bool used_bdat;
	unsigned bdat_chunks;	/* chunks of this message (SMTP_BDAT_CHUNKS_MAX) */
	bool bdat_last;
	bool bdat_failed;	/* a chunk failed: later chunks are read and refused */
	bool bdat_refused;	/* this chunk is read and dropped, then bdat_err sent */
	enum smtp_state bdat_prev;	/* state to return to after a refused chunk */
	struct smtp_reply bdat_err;
	uint64_t bdat_remaining;
	int64_t transfer_ms;		/* DATA or the first BDAT chunk began; 0: none */
	struct evbuffer *body;		/* owned until handed to the spool */
	struct smtp_data_reader dr;
	struct smtp_msg_check mc;
	bool mc_live;
	uint64_t mem_held;	/* bytes of body reserved from smtp.memory_budget */
	bool mem_refused;	/* the budget was exhausted: 452 4.3.1 at the end */
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
	char helo[SMTP_DOMAIN_MAX + 1];
	unsigned errors;
	unsigned auth_failures;

	/* authentication */
	struct store_user *user;	/* owned; NULL until AUTH succeeded */
	enum smtp_auth_step auth_step;
	char auth_user[SMTP_AUTH_USER_MAX + 1];

	struct smtp_tx tx;		/* the transaction */

	char line[SMTP_AUTH_LINE_MAX + 1];
	char text[1536];		/* reply texts built by handlers (paths are up to 1025 bytes) */
};

/* ---- smtp_session.c: the state machine ---------------------------------- */

/* smtp_session_enter_state - the one place s->state changes (logged at debug). */
void smtp_session_enter_state(struct smtp_session *s, enum smtp_state st);
/* smtp_session_reply - queue one reply (multi-line when text holds '\n'). */
void smtp_session_reply(struct smtp_session *s, int code, const char *enh, const char *text);
/* smtp_session_replyf - queue one reply, its text formatted into s->text. */
void smtp_session_replyf(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* smtp_session_close - stop reading; free once the queued output has been written. */
void smtp_session_close(struct smtp_session *s);
/* smtp_session_error - count a client error; past the limit, 421 and close (true). */
bool smtp_session_error(struct smtp_session *s);
/* smtp_session_idle_state - where a session goes when no transaction is open. */
enum smtp_state smtp_session_idle_state(const struct smtp_session *s);
/* smtp_session_set_timeout - the idle read timeout (the write timeout is fixed). */
void smtp_session_set_timeout(struct smtp_session *s, unsigned secs);
/* smtp_session_pause - wait for an asynchronous step; input stays buffered. */
void smtp_session_pause(struct smtp_session *s);
/* smtp_session_resume - the asynchronous step is answered: go on with buffered input. */
void smtp_session_resume(struct smtp_session *s, enum smtp_state st);
/* smtp_session_defer - run fn(s) from the session's timer, ms from now (a safe point). */
void smtp_session_defer(struct smtp_session *s, void (*fn)(struct smtp_session *), unsigned ms);
/* smtp_session_is_local - local submission (the unix socket, account from the uid). */
bool smtp_session_is_local(const struct smtp_session *s);

/* ---- smtp_cmd.c: the command table -------------------------------------- */

/* smtp_cmd_dispatch - parse, gate, run and answer one command line. */
void smtp_cmd_dispatch(struct smtp_session *s, const char *line, size_t len);
/* smtp_cmd_arg_nonblank - does a command argument hold anything but spaces? */
bool smtp_cmd_arg_nonblank(const char *arg);

/* ---- smtp_auth.c: the AUTH exchange ------------------------------------- */

/* smtp_auth_start - the AUTH command (RFC 4954). Command handlers fill in r,
 * or set r->code = 0 when they answered themselves. */
void smtp_auth_start(struct smtp_session *s, const char *arg, struct smtp_reply *r);
/* smtp_auth_continue - a continuation line of an AUTH exchange. */
void smtp_auth_continue(struct smtp_session *s, const char *line);

/* ---- smtp_tx.c: the transaction ------------------------------------------ */

/* smtp_tx_reset - forget the transaction (the one place it is reset). */
void smtp_tx_reset(struct smtp_session *s);
/* smtp_tx_fini - free the transaction with its session. */
void smtp_tx_fini(struct smtp_session *s);
/* smtp_tx_mail, smtp_tx_rcpt, smtp_tx_data, smtp_tx_bdat - the commands. */
void smtp_tx_mail(struct smtp_session *s, const char *arg, struct smtp_reply *r);
void smtp_tx_rcpt(struct smtp_session *s, const char *arg, struct smtp_reply *r);
void smtp_tx_data(struct smtp_session *s, const char *arg, struct smtp_reply *r);
void smtp_tx_bdat(struct smtp_session *s, const char *arg, struct smtp_reply *r);
/* smtp_tx_bdat_size - the chunk size of a BDAT argument ("size [LAST]"). */
bool smtp_tx_bdat_size(const char *arg, uint64_t *size);
/* smtp_tx_bdat_refuse - read and drop a refused chunk's size octets, then answer why. */
void smtp_tx_bdat_refuse(struct smtp_session *s, uint64_t size, const struct smtp_reply *why);
/* smtp_tx_read_data, smtp_tx_read_bdat - message content from in; false when
 * more input is needed. */
bool smtp_tx_read_data(struct smtp_session *s, struct evbuffer *in);
bool smtp_tx_read_bdat(struct smtp_session *s, struct evbuffer *in);
/* smtp_tx_emit - an event of the transaction: rejected (r is the refusal) or
 * suppressed (r is NULL). */
void smtp_tx_emit(struct smtp_session *s, enum evlog_type type, uint64_t msgid, const char *rcpt,
		  const struct smtp_reply *r, bool bulk);

/* ---- smtp_submit.c: the end of a message -------------------------------- */

/* smtp_submit_message - the last octet of the message has arrived: check,
 * complete, sign and commit it; answered when the spool has it. */
void smtp_submit_message(struct smtp_session *s);

#endif
