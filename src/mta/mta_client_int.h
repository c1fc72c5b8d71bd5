/*
 * mta_client_int.h - internals of the SMTP client shared by mta_client.c (the
 * state machine, opening dialogue, lifetime), mta_client_txn.c (transactions:
 * MAIL/RCPT/DATA, the body, per-recipient results) and mta_client_tls.c
 * (STARTTLS). Not a public header: only these three files include it.
 *
 * Ownership: struct mta_conn is owned by whoever holds the pointer handed to
 * ready(); it owns its bufferevent, socket, events and copies of the
 * parameters' strings, and holds a reference on the SSL_CTX. A transaction
 * (c->txn) and its body are borrowed from mta_conn_send until done().
 */
#ifndef RELEVO_MTA_CLIENT_INT_H
#define RELEVO_MTA_CLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/core.h"
#include "mta/mta.h"

enum mta_cstate {
	MTA_CST_CONNECT,	/* TCP connect in progress */
	MTA_CST_GREETING,	/* waiting for 220 */
	MTA_CST_EHLO,		/* EHLO sent */
	MTA_CST_HELO,		/* HELO sent (EHLO got 5xx) */
	MTA_CST_STARTTLS,	/* STARTTLS sent */
	MTA_CST_TLS,		/* TLS handshake in progress */
	MTA_CST_AUTH,		/* AUTH PLAIN <response> or AUTH LOGIN sent */
	MTA_CST_AUTH_USER,	/* LOGIN: the user name sent */
	MTA_CST_AUTH_PASS,	/* LOGIN: the password sent (PLAIN: the response) */
	MTA_CST_READY,		/* idle: a transaction may start */
	MTA_CST_RSET,		/* RSET before a transaction */
	MTA_CST_MAIL,		/* MAIL sent (pipelined: the whole group) */
	MTA_CST_RCPT,		/* reading RCPT replies (unpipelined: one RCPT sent) */
	MTA_CST_DATA,		/* waiting for 354 */
	MTA_CST_BODY,		/* writing the message */
	MTA_CST_FINAL,		/* final dot sent, waiting for the reply */
	MTA_CST_ABORT,		/* every RCPT refused but DATA got 354: "." sent */
	MTA_CST_BROKEN,		/* lost, timed out, protocol error: only close remains */
	MTA_CST__COUNT
};
const char *mta_cstate_name(enum mta_cstate st);

/* Which timeout of mta_conn_params bounds the wait for a reply. */
enum mta_tmo {
	MTA_TMO_NONE,
	MTA_TMO_CONNECT,
	MTA_TMO_GREETING,
	MTA_TMO_EHLO,
	MTA_TMO_MAIL,
	MTA_TMO_RCPT,
	MTA_TMO_DATA,
	MTA_TMO_FINAL
};

struct mta_cstate_def {
	const char *name;	/* for logs */
	const char *lost;	/* "connection lost <lost>": the phase, for bounces */
	enum mta_tmo tmo;	/* the reply deadline while in this state */
	bool opening;		/* before ready(): failures are reported by ready() */
	bool reads;		/* replies are read (a reply not owed is an error) */
};

/* EHLO keywords (RFC 5321 4.1.1.1 and the extensions' RFCs). */
#define MTA_EXT_PIPELINING 0x001
#define MTA_EXT_SIZE 0x002
#define MTA_EXT_8BITMIME 0x004
#define MTA_EXT_SMTPUTF8 0x008
#define MTA_EXT_STARTTLS 0x010
#define MTA_EXT_DSN 0x020
#define MTA_EXT_AUTH 0x040
#define MTA_EXT_CHUNKING 0x080
#define MTA_EXT_ENHANCED 0x100

#define MTA_AUTH_PLAIN 0x01
#define MTA_AUTH_LOGIN 0x02

/* The owner's callback waiting in c->notify_ev. */
enum mta_notify {
	MTA_NOTIFY_NONE,
	MTA_NOTIFY_READY,
	MTA_NOTIFY_FAILED,
	MTA_NOTIFY_DONE,
	MTA_NOTIFY_IDLE_LOST
};

/* Per recipient of the transaction in progress. */
enum mta_rcpt_step { MTA_RS_PENDING = 0, MTA_RS_ACCEPTED, MTA_RS_DECIDED };

struct mta_conn {
	uint64_t id;			/* for logs */
	struct event_base *base;
	struct mta_conn_cbs cbs;
	void *ctx;
	uint64_t cookie;

	/* parameters, copied */
	char *helo;
	char *host;			/* p->host, or the address text */
	bool host_given;
	SSL_CTX *tls_ctx;		/* referenced */
	bool tls_required, tls_verify;
	char *auth_user, *auth_pass;	/* owned; the password is wiped on free */
	unsigned to_connect, to_greeting, to_ehlo, to_mail, to_rcpt;
	unsigned to_data, to_data_block, to_final;
	char peer[64];			/* "192.0.2.1:25" */

	/* I/O */
	evutil_socket_t fd;
	struct bufferevent *bev;
	bool bev_owns_fd;		/* the TLS bufferevent closes the fd */
	struct event *timer;		/* the reply deadline */
	struct event *notify_ev;	/* runs the owner's callback */
	enum mta_notify notify;
	enum rc why_rc;			/* ready()'s rc when notify is FAILED */
	struct mta_reply why;		/* ready()'s reply */
	struct mta_reply lost;		/* why the connection was lost */

	/* the protocol */
	int64_t stage_us;		/* when the timed stage began (metrics_now_us) */
	enum mta_cstate state;
	struct mta_reply_parser rp;
	unsigned expect;		/* replies the server owes us */
	bool esmtp;
	unsigned ext, ext_pending;	/* MTA_EXT_*: from the last EHLO / being read */
	uint64_t size_max, size_pending;	/* SIZE; 0: no limit declared */
	unsigned auth_mechs, auth_pending;	/* MTA_AUTH_* */
	bool auth_login;		/* using LOGIN (PLAIN not offered) */
	bool auth_done;
	bool tls_active, tls_verified;
	char tls_info[160];
	bool dirty;			/* a transaction may be open at the server: RSET first */

	/* the transaction in progress */
	struct mta_txn *txn;		/* borrowed until done() */
	struct mta_txn *done_txn;	/* waiting for done() */
	uint8_t *rst;			/* MTA_RS_* per recipient */
	unsigned txn_replies;		/* replies read for this transaction */
	size_t rcpt_i;			/* next RCPT to send or to read the reply of */
	size_t naccepted;
	bool mail_failed;
	bool pipelined;			/* this transaction's group went in one write */
	size_t body_off;		/* bytes of the body written */
	bool body_bol;			/* the next body byte starts a line */
	char body_tail[2];		/* the last two bytes written */
};

/* mta_client.c */
void mta_conn_enter_state(struct mta_conn *c, enum mta_cstate st);
void mta_conn_notify(struct mta_conn *c, enum mta_notify n);
void mta_conn_fail(struct mta_conn *c, enum rc rc, const struct mta_reply *why, bool quit);
void mta_conn_lost(struct mta_conn *c, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool mta_conn_cmd_start(struct mta_conn *c, const char *verb);
void mta_conn_cmd_end(struct mta_conn *c);
void mta_conn_add(struct mta_conn *c, const void *p, size_t n);
void mta_conn_adds(struct mta_conn *c, const char *s);
void mta_conn_set_write_timeout(struct mta_conn *c, unsigned secs);
void mta_conn_attach(struct mta_conn *c);

/* mta_client_txn.c */
void mta_txn_on_enter(struct mta_conn *c, enum mta_cstate st);
void mta_txn_on_reply(struct mta_conn *c, const struct mta_reply *r);
void mta_txn_body_fill(struct mta_conn *c);
void mta_txn_abort(struct mta_conn *c);

/* mta_client_tls.c */
void mta_tls_start(struct mta_conn *c);
void mta_tls_on_handshake(struct mta_conn *c);
void mta_tls_on_error(struct mta_conn *c, short what);

#endif
