/*
 * mta.h - outbound delivery: routes (over dns/), the SMTP client, delivery
 * status notifications, and the engine that ties them to the spool and the
 * scheduler.
 *
 * Threads: everything here runs on the delivery thread's event loop, except the
 * pure functions (reply parsing, DSN building), which are
 * callable anywhere. Async completions carry a 64-bit cookie and a long-lived
 * ctx, never a pointer to something that may be freed meanwhile.
 */
#ifndef RELEVO_MTA_H
#define RELEVO_MTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/core.h"
#include "dns/dns.h"

/* ==== routes: where mail for a domain goes ================================= */

#define MTA_ROUTE_HOSTS_MAX 16
#define MTA_ROUTE_ADDRS_MAX 32

struct mta_route_host {
	char name[DNS_NAME_MAX + 1];	/* "" for an address literal */
	uint16_t pref;
	size_t naddr;
	struct sockaddr_storage addr[8];	/* port already set */
};

struct mta_route {
	enum rc rc;			/* RC_OK, RC_TEMPFAIL, RC_PERMFAIL */
	const char *enh;		/* for failures: "5.1.2", "5.1.10", "5.4.4", "4.4.3"; "" if OK */
	char why[256];			/* human text for failures (goes into bounces) */
	size_t nhosts;
	struct mta_route_host host[MTA_ROUTE_HOSTS_MAX];	/* in the order to try */
};

typedef void (*mta_route_cb)(void *ctx, uint64_t cookie, const struct mta_route *r);
/*
 * mta_route_mx - resolve where to deliver mail for domain (RFC 5321 5.1): MX
 * records by preference, equal preferences shuffled; no MX: the domain's own
 * A/AAAA (implicit MX); null MX (RFC 7505) -> RC_PERMFAIL 5.1.10 without
 * connecting; NXDOMAIN -> RC_PERMFAIL 5.1.2; DNS timeout or SERVFAIL ->
 * RC_TEMPFAIL 4.4.3, never a bounce. MX hosts that do not resolve are skipped;
 * if none is left, RC_TEMPFAIL. No MX and no A/AAAA either -> RC_PERMFAIL
 * 5.4.4. An address literal domain "[1.2.3.4]" needs no DNS. Addresses get port
 * set, IPv4 first unless mta_route_set_family says otherwise. Details and the
 * reasons: mta_route.c.
 */
void mta_route_mx(struct dns *d, const char *domain, uint16_t port, mta_route_cb cb,
		  void *ctx, uint64_t cookie);
/* mta_route_host - one named host or literal ("[10.0.0.5]", "smtp.example.net"):
 * its A/AAAA records, no MX lookup (static routes). */
void mta_route_host(struct dns *d, const char *host, uint16_t port, mta_route_cb cb,
		    void *ctx, uint64_t cookie);
/*
 * mta_route_restrict - the MX route r (RC_OK) without what mail for the
 * internet must never reach: hosts named by one label or "localhost" (or
 * under .localhost), and addresses conf_delivery_allows refuses (loopback,
 * private, link-local...; delivery.allow_networks lifts it). RC_OK if anything
 * is left; else r becomes RC_PERMFAIL 5.4.4 with the reason, and that is
 * returned. Static routes are the operator's own choice and are not restricted.
 */
struct conf;
enum rc mta_route_restrict(struct mta_route *r, const struct conf *conf);
/* Both: cb runs exactly once, later on d's loop (never inline), unless d is
 * freed first; r is valid during the call only. A host with no address is
 * skipped; mta_route_host without any address is always RC_TEMPFAIL. */

/* Which addresses of a host to use, in which order (process-wide setting). */
enum mta_route_family {
	MTA_ROUTE_IPV4_FIRST,		/* the default: IPv6 egress is the one more often broken */
	MTA_ROUTE_IPV6_FIRST,
	MTA_ROUTE_IPV4_ONLY,		/* AAAA not even asked */
	MTA_ROUTE_IPV6_ONLY,		/* A not even asked */
};
/* mta_route_set_family - set the address family order for later routes. */
void mta_route_set_family(enum mta_route_family f);
/* mta_route_seed - seed the calling thread's shuffle of equal MX preferences
 * (tests; otherwise each thread seeds itself from getrandom). */
void mta_route_seed(uint64_t seed);

/* ==== SMTP replies (client side) ============================================ */

/*
 * Reading replies (mta_reply.c). Bytes from the server go through mta_reply_line,
 * which cuts them into lines, and each line through mta_reply_feed, which
 * assembles a (possibly multi-line) reply. Both are pure and bounded:
 * - a line ends at LF; a CR just before it is dropped. A bare LF from a server
 *   ends a line too (lenient: replies are only read, never relayed, so there is
 *   no smuggling hazard on this side);
 * - a line longer than MTA_REPLY_LINE_MAX is cut there and the rest of it is
 *   dropped up to its LF (not an error);
 * - a reply of more than MTA_REPLY_LINES_MAX lines, or taking more than
 *   MTA_REPLY_BYTES_MAX bytes on the wire (cut parts included: an endless line
 *   without LF), is RC_PROTO;
 * - text keeps printable bytes: every control character becomes "?", so a reply
 *   text is safe to log and to put into a bounce; UTF-8 is passed through.
 * An enhanced status code (RFC 3463 "c.sss.ddd" whose class matches the
 * reply's first digit, followed by SP or the line end) is taken from the first
 * line that has one and stripped from every line's text, whether or not the
 * server advertised ENHANCEDSTATUSCODES.
 */
#define MTA_REPLY_LINE_MAX 1024		/* longer lines are cut, not fatal */
#define MTA_REPLY_LINES_MAX 64		/* more lines than this is hostile: RC_PROTO */
#define MTA_REPLY_TEXT_MAX 2048		/* joined text kept (cut at a UTF-8 boundary) */
#define MTA_REPLY_BYTES_MAX (256 * 1024)	/* wire bytes of one reply: more is RC_PROTO */

struct mta_reply {
	int code;			/* 200..599 */
	char enh[16];			/* "5.1.1" if the server sent one (RFC 3463), else "" */
	char text[MTA_REPLY_TEXT_MAX];	/* lines' text joined with "; ", codes stripped */
	unsigned nlines;
};

/* mta_bounce_class - "hard" (the address or mailbox is gone: 5.1.x, 5.2.1, or a
 * bare 550/551/553) or "soft" (anything else), for a final failure's status and
 * reply code (0 if none). */
const char *mta_bounce_class(const char *status, int code);

struct mta_reply_parser {
	struct mta_reply cur;
	bool in_progress;		/* lines of a reply seen, its last line not yet */
	/* the line reader (mta_reply_line) */
	char line[MTA_REPLY_LINE_MAX];
	size_t linelen;
	bool cut;			/* the line is over-long: dropping up to its LF */
	size_t nbytes;			/* wire bytes of the reply so far */
};
void mta_reply_init(struct mta_reply_parser *p);
/*
 * mta_reply_line - take bytes buf[0..len) from the server; *used of them are
 * consumed. RC_OK: a line is complete, *line and *linelen (without its line end;
 * valid until the next call) go to mta_reply_feed next. RC_AGAIN: all of buf
 * was consumed, no line end yet. RC_PROTO: the reply is too big
 * (MTA_REPLY_BYTES_MAX). Pure; fuzzed.
 */
enum rc mta_reply_line(struct mta_reply_parser *p, const char *buf, size_t len, size_t *used,
		       const char **line, size_t *linelen);
/*
 * mta_reply_feed - one reply line (without CRLF). RC_AGAIN: a continuation
 * ("250-"), RC_OK: the reply is complete in *out, RC_PROTO: malformed (not
 * three digits with the first 2..5, then SP, "-" or the line end; codes
 * differing between lines; too many lines). After RC_OK or RC_PROTO the parser
 * is ready for the next reply. Pure; fuzzed.
 */
enum rc mta_reply_feed(struct mta_reply_parser *p, const char *line, size_t len,
		       struct mta_reply *out);
/* mta_reply_is_idle - true when no part of a reply (not even part of a line)
 * has been read: used to detect a server that talks out of turn. */
bool mta_reply_is_idle(const struct mta_reply_parser *p);
/* mta_reply_class - 2xx RC_OK, 4xx RC_TEMPFAIL, 5xx RC_PERMFAIL (3xx: RC_PROTO
 * unless expected by the caller). */
enum rc mta_reply_class(int code);
/* mta_reply_set - fill in a reply we make up ourselves (a local failure):
 * code, enh (or NULL) and a printf-style text, cut to fit. */
void mta_reply_set(struct mta_reply *r, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* mta_reply_format - "550 5.1.1 text" (no enh: "550 text") into out, always
 * terminated; for logs, last_reply and DSN diagnostics. */
void mta_reply_format(const struct mta_reply *r, char *out, size_t outsz);

/* ==== delivery status notifications (RFC 3464) ============================== */

struct mta_dsn_rcpt {
	const char *addr;		/* final recipient */
	const char *orcpt;		/* DSN ORCPT "rfc822;x@y" or NULL */
	const char *status;		/* enhanced status "5.1.1" */
	const char *action;		/* "failed" or "delayed" */
	const char *remote_mta;		/* host name or NULL (e.g. DNS failure) */
	const char *diagnostic;		/* "smtp; 550 5.1.1 no such user" or NULL */
	int64_t last_attempt;		/* unix ms, 0 if never */
};

struct mta_dsn {
	const char *reporting_mta;	/* our hostname */
	const char *sender;		/* the original envelope sender (DSN goes there) */
	const char *envid;		/* original ENVID or NULL */
	int64_t arrival;		/* unix ms the message arrived */
	bool headers_only;		/* RET=HDRS: return only the header section */
	size_t nrcpt;
	const struct mta_dsn_rcpt *rcpt;
	const char *original;		/* the original message (CRLF lines) */
	size_t original_len;
	size_t max_return;		/* cap on returned original bytes (then headers only,
					 * themselves cut to the cap); 0: no cap */
	int64_t date;			/* unix ms for the Date: field; 0: the clock */
};

/*
 * mta_dsn_build - the whole bounce message (headers + multipart/report with a
 * human part, message/delivery-status and text/rfc822-headers or message/rfc822),
 * appended to out, CRLF line endings, From: MAILER-DAEMON@reporting_mta, To: the
 * sender, Auto-Submitted: auto-replied. Pure but for random bytes (boundary,
 * Message-ID) and the clock when date is 0. Input text may be hostile: control
 * characters become spaces, long values are folded (lines <= 998 octets), a
 * diagnostic without a "type;" prefix gets "smtp; " (reply code) or "x-relevo; ".
 */
void mta_dsn_build(const struct mta_dsn *d, struct evbuffer *out);

/* ==== the SMTP client: one outbound connection ============================ */

/*
 * mta_client*.c. A connection is opened with mta_conn_open; ready() says
 * whether it can take mail; mta_conn_send runs one transaction at a time and
 * done() reports each recipient; mta_conn_close ends it. Callbacks run later
 * on the loop, never inside mta_conn_open/mta_conn_send, and always from the
 * top of an event callback: inside them the owner may send the next
 * transaction or close the connection. Every failure of the server (lost
 * connection, a timeout, a protocol error: surplus, early or endless replies)
 * ends as RC_TEMPFAIL, never as a delivery.
 */

#include <openssl/ssl.h>

struct mta_conn;

struct mta_conn_params {
	const char *helo;		/* our hostname, for EHLO/HELO ("localhost" if NULL) */
	SSL_CTX *tls;			/* client context, with the trust store used for
					 * verification; NULL: never STARTTLS. Referenced
					 * (SSL_CTX_up_ref) while the connection lives */
	bool tls_required;		/* no STARTTLS, or a failed handshake or (when
					 * tls_verify) verification: RC_TEMPFAIL, never
					 * plaintext */
	bool tls_verify;		/* fail unless the certificate verifies for host;
					 * without it the result is only recorded
					 * (mta_conn_tls_info "verified=no") */
	const char *host;		/* the server's name or IP: SNI (names only),
					 * verification, logs, reply texts; NULL: the
					 * address, and only the chain is verified */
	const char *auth_user;		/* smarthost AUTH PLAIN, else LOGIN (only over TLS;
					 * TLS not in use: RC_TEMPFAIL) */
	const char *auth_pass;
	const struct sockaddr *source;	/* bind here before connect, or NULL */
	socklen_t source_len;
	/* Timeouts in seconds, 0: the default given (delivery.timeouts). Each is a
	 * deadline for one reply from its command, not extended by partial data. */
	unsigned timeout_connect;	/* TCP connect: 30 s */
	unsigned timeout_greeting;	/* 220: 5 min (RFC 5321 4.5.3.2.1) */
	unsigned timeout_ehlo;		/* EHLO/HELO, STARTTLS and the TLS handshake,
					 * AUTH, and writing those commands: 5 min */
	unsigned timeout_mail;		/* MAIL and RSET, and writing a transaction's
					 * commands: 5 min (4.5.3.2.2) */
	unsigned timeout_rcpt;		/* each RCPT: 5 min (4.5.3.2.3) */
	unsigned timeout_data;		/* 354: 3 min (4.5.3.2.4 says 2) */
	unsigned timeout_data_block;	/* each write of the body making no progress:
					 * 3 min (4.5.3.2.5) */
	unsigned timeout_final;		/* reply to the final dot: 10 min (4.5.3.2.6) */
};
/* The strings and source address of mta_conn_params are copied by
 * mta_conn_open; the struct itself need not outlive the call. */

struct mta_txn_rcpt {
	const char *addr;
	const char *orcpt;		/* "rfc822;addr" (xtext-decoded; encoded when sent)
					 * or "utf-8;..." or NULL */
	uint8_t notify;			/* SPOOL_NOTIFY_* (sent as NOTIFY= if the server has DSN) */
	uint32_t idx;			/* the caller's index (envelope recipient) */
	enum rc rc;			/* result: RC_OK delivered, RC_TEMPFAIL, RC_PERMFAIL */
	struct mta_reply reply;		/* the reply that decided it (made up locally for
					 * refusals before sending and lost connections:
					 * 451 4.4.2 "host: connection lost after X (why)") */
};

struct mta_txn {
	uint64_t msgid;
	const char *sender;		/* "" for the null sender */
	const char *envid;		/* DSN ENVID (xtext-decoded; encoded when sent) or NULL */
	uint32_t flags;			/* SPOOL_F_8BITMIME, SPOOL_F_SMTPUTF8, SPOOL_F_RET_* */
	size_t nrcpt;
	struct mta_txn_rcpt *rcpt;
	struct evbuffer *body;		/* borrowed until done(), not modified; CRLF lines,
					 * not dot-stuffed */
	bool unanswered;		/* set for done(): the connection broke before the
					 * server answered any command of this transaction,
					 * so nothing of it can have been delivered (e.g. a
					 * reused connection the server had just closed) */
};

struct mta_conn_cbs {
	/* ready - connected, greeted, EHLO done, STARTTLS and AUTH done as required.
	 * rc != RC_OK: the connection failed and is already freed (c is NULL);
	 * RC_TEMPFAIL means "try the next address", RC_PERMFAIL a 5xx greeting,
	 * EHLO+HELO or AUTH; why says why (the server's reply, or one made up). */
	void (*ready)(void *ctx, uint64_t cookie, struct mta_conn *c, enum rc rc,
		      const struct mta_reply *why);
	/* done - a transaction ended; every t->rcpt[i].rc is set. If the connection
	 * broke, mta_conn_is_usable(c) is false: the callee must mta_conn_close(c). */
	void (*done)(void *ctx, uint64_t cookie, struct mta_conn *c, struct mta_txn *t);
	/* idle_lost - the connection broke while idle, between transactions (the
	 * server closed it, or spoke out of turn); mta_conn_is_usable(c) is false
	 * and the callee must mta_conn_close(c). Not called while another callback
	 * is pending (that one sees the broken connection). May be NULL. */
	void (*idle_lost)(void *ctx, uint64_t cookie, struct mta_conn *c);
};

/* mta_conn_open - connect to addr and run the opening dialogue; cbs->ready
 * reports the result later on base. Returns the connection being opened: the
 * caller may mta_conn_close() it at any time (then no callback runs); after a
 * failed ready() it is gone. */
struct mta_conn *mta_conn_open(struct event_base *base, const struct sockaddr *addr, socklen_t addrlen,
		   const struct mta_conn_params *p, const struct mta_conn_cbs *cbs, void *ctx,
		   uint64_t cookie);
/*
 * mta_conn_send - run one transaction on a ready, idle connection: MAIL, RCPTs
 * and DATA pipelined when the server offers PIPELINING, dot-stuffed body,
 * per-recipient results. A message the server cannot take (SIZE too small:
 * 552 5.3.4, SMTPUTF8 needed but not offered: 553 5.6.7, 8BITMIME needed but
 * not offered: 554 5.6.3) fails with RC_PERMFAIL without being sent. Issues
 * RSET first if the previous transaction left state behind (every RCPT
 * refused). On a connection that broke while idle, every recipient gets
 * RC_TEMPFAIL. done() always follows, later.
 */
void mta_conn_send(struct mta_conn *c, struct mta_txn *t);
/* mta_conn_is_usable - may another transaction follow on this connection? */
bool mta_conn_is_usable(const struct mta_conn *c);
/* mta_conn_set_cookie - the cookie later callbacks carry (the connection has
 * changed hands: parked for reuse, or taken by another attempt). */
void mta_conn_set_cookie(struct mta_conn *c, uint64_t cookie);
/* mta_conn_tls_info - "TLSv1.3 TLS_AES_256_GCM_SHA384 verified=yes" or "none". */
const char *mta_conn_tls_info(const struct mta_conn *c);
/* mta_conn_close - QUIT (if usable: written without waiting for 221) and free
 * at once, also in the middle of a transaction (done() then never comes); no
 * callback runs after this. NULL is a no-op. */
void mta_conn_close(struct mta_conn *c);

/* ==== the engine ================================================================ */

struct conf;
struct spool;
struct mta;

/* mta_new - the delivery engine on its own thread and loop; schedules every
 * queued recipient found in the spool. */
enum rc mta_new(const struct conf *conf, struct spool *spool, struct mta **out);
/* mta_start - start the delivery thread. */
enum rc mta_start(struct mta *m);
/* mta_notify - a message was committed (thread-safe; called by the spool's
 * commit path). */
void mta_notify(struct mta *m, uint64_t msgid);
/* mta_flush - attempt msgid (0: everything) now (thread-safe). */
void mta_flush(struct mta *m, uint64_t msgid);
/* mta_batch_begin/end - notifications between them reach the delivery loop
 * together at the end, so an operator's command over many messages is seen as
 * one change (one connection per destination, not one per message). */
void mta_batch_begin(struct mta *m);
void mta_batch_end(struct mta *m);
/* mta_stop - finish or abandon in-flight attempts (their recipients stay
 * queued), stop the thread. */
void mta_stop(struct mta *m);
void mta_free(struct mta *m);
/* mta_reload - the delivery loop takes nc (its own reference) at its next safe
 * point: attempts that start from then on use its delivery settings and routes,
 * attempts under way finish on theirs, parked connections are closed. done(arg)
 * runs on the delivery thread once nc is in use (not at all if the engine stops
 * first). Any thread. */
void mta_reload(struct mta *m, const struct conf *nc, void (*done)(void *arg), void *arg);

#endif
