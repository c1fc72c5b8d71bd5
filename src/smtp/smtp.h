/*
 * smtp.h - the inbound SMTP server: listeners, the session state machine, and the
 * pure byte parsers it is built on (command lines, addresses and ESMTP parameters,
 * the DATA reader, the message content checker, AUTH decoding).
 *
 * The parsers do no I/O, allocate nothing unless stated, are incremental where
 * input arrives in pieces, and are fuzzed (tests/fuzz/). They report problems as
 * a struct smtp_reply (code, enhanced status, text) so that every reply the server
 * sends for bad input is decided next to the rule that was broken.
 */
#ifndef RELEVO_SMTP_H
#define RELEVO_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/core.h"

/* RFC 5321 4.5.3.1 limits. */
#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_PATH_MAX 256
#define SMTP_CMD_LINE_MAX 2048		/* generous: 512 + extension parameters */
#define SMTP_AUTH_LINE_MAX 12288	/* RFC 4954 4: AUTH lines may be long */
#define SMTP_TEXT_LINE_MAX 1000		/* message text line incl. CRLF (RFC 5321 4.5.3.1.6) */
#define SMTP_ENVID_MAX 100		/* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500		/* RFC 3461 4.2 */
#define SMTP_HEADER_MAX (256 * 1024)	/* header section kept for inspection */
#define SMTP_BDAT_CHUNKS_MAX 10000	/* BDAT chunks of one message (552 5.3.4 beyond) */

/* A reply decided by a parser or a handler. text has no CRLF; enh may be NULL. */
struct smtp_reply {
	int code;
	const char *enh;	/* "5.5.2" */
	const char *text;	/* static or owned by the caller's buffer */
};

/* ---- command lines ---------------------------------------------------- */

enum smtp_verb {
	SMTP_V_UNKNOWN = 0,
	SMTP_V_HELO, SMTP_V_EHLO, SMTP_V_MAIL, SMTP_V_RCPT, SMTP_V_DATA, SMTP_V_BDAT,
	SMTP_V_RSET, SMTP_V_NOOP, SMTP_V_QUIT, SMTP_V_VRFY, SMTP_V_EXPN, SMTP_V_HELP,
	SMTP_V_STARTTLS, SMTP_V_AUTH,
	SMTP_V__COUNT
};
const char *smtp_verb_name(enum smtp_verb v);

/*
 * smtp_line_scan - find the end of one command line in buf[0..len).
 * Only CRLF ends a line (a bare CR or LF never does: SMTP smuggling).
 * Returns RC_OK with *linelen (without CRLF) and *consumed (with CRLF);
 * RC_AGAIN if no CRLF yet and len < max; RC_LIMIT if no CRLF within max bytes
 * (*consumed then says how much may be discarded: max, less a final CR that may
 * start the CRLF; the caller keeps discarding until the next CRLF and then
 * replies 500 5.5.6). Does not judge the content.
 */
enum rc smtp_line_scan(const char *buf, size_t len, size_t max, size_t *linelen,
		       size_t *consumed);

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;	/* after the verb and its separating space; "" if none */
};

/*
 * smtp_cmd_parse - split a line (no CRLF, NUL-terminated at line[len]) into verb
 * (case-insensitive) and argument (every space after the verb skipped). Fails
 * (RC_PROTO) with a 500 5.5.2 reply for NUL, bare CR or LF, TAB or any other
 * control character (0x00-0x1f, 0x7f) in the line or a line not starting with a
 * verb, 500 5.5.1 for an unknown verb. It only splits: whether the verb takes an
 * argument is the server's business (501 5.5.4 for "DATA x", see
 * smtp_cmd_has_arg).
 */
enum rc smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd,
		       struct smtp_reply *err);
/* smtp_cmd_has_arg - true if cmd->arg holds anything but spaces. */
bool smtp_cmd_has_arg(const struct smtp_cmd *cmd);

/* ---- addresses and parameters (RFC 5321 4.1.2, 3.3) ------------------- */

struct smtp_path {
	bool is_null;				/* "<>" */
	bool is_utf8;				/* non-ASCII octets present */
	char local[SMTP_LOCAL_MAX * 4 + 3];	/* as received, quotes kept */
	char domain[SMTP_DOMAIN_MAX + 1];	/* lower-cased; address literal kept as "[...]" */
	char addr[SMTP_PATH_MAX * 4 + 1];	/* "local@domain", or "" for null */
};

/*
 * smtp_path_parse - parse "<...>" at s (a source route "@a,@b:" is accepted and
 * dropped, RFC 5321 4.1.1.3 / C). allow_null permits "<>"; utf8_ok permits
 * non-ASCII (SMTPUTF8, RFC 6531: well-formed UTF-8, no C1 controls). Domains
 * are LDH (or U-) labels, or [IPv4] / [IPv6:...] literals (other tags refused).
 * With !is_sender, "<Postmaster>" (any case, no domain) is accepted with domain
 * "". *consumed is set to the bytes used. Errors (RC_PROTO): 501 5.1.7 (bad
 * sender syntax) / 501 5.1.3 (bad recipient syntax) chosen by is_sender, also
 * for over-long parts (local > 64, domain > 255, path > 256 octets incl. "<>"),
 * 553 5.6.7 for UTF-8 without utf8_ok.
 */
enum rc smtp_path_parse(const char *s, bool allow_null, bool utf8_ok, bool is_sender,
			size_t *consumed, struct smtp_path *out, struct smtp_reply *err);

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

struct smtp_mail_params {
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX + 1];	/* xtext-decoded; "" if absent */
};

struct smtp_rcpt_params {
	uint8_t notify;				/* SPOOL_NOTIFY_* bits, 0 if absent */
	char orcpt[SMTP_ORCPT_MAX + 1];		/* "rfc822;addr", xtext-decoded; "" if absent */
};

/*
 * smtp_mail_parse - parse the argument of MAIL ("FROM:<path> params"; spaces
 * after the colon are tolerated, the angle brackets are not optional).
 * Parameters: SIZE, BODY=7BIT|8BITMIME, SMTPUTF8, RET, ENVID, AUTH (checked and
 * ignored). Unknown or duplicate parameters: 555 5.5.4; malformed values: 501
 * 5.5.4; a SIZE that overflows 64 bits: 552 5.3.4. A decoded xtext that contains
 * control characters (CR, LF, NUL...) or non-ASCII is refused: 501 5.5.4. A
 * UTF-8 path without the SMTPUTF8 parameter: 553 5.6.7. Errors are RC_PROTO.
 */
enum rc smtp_mail_parse(const char *arg, struct smtp_path *path,
			struct smtp_mail_params *p, struct smtp_reply *err);

/* smtp_rcpt_parse - parse the argument of RCPT ("TO:<path> params"). utf8_ok as
 * for smtp_path_parse. "<Postmaster>" without domain is accepted (domain "").
 * NOTIFY=NEVER or a list of SUCCESS,FAILURE,DELAY; ORCPT=rfc822;xtext (decoded)
 * or utf-8;address (RFC 6533, kept as received). Errors as smtp_mail_parse. */
enum rc smtp_rcpt_parse(const char *arg, bool utf8_ok, struct smtp_path *path,
			struct smtp_rcpt_params *p, struct smtp_reply *err);

/* smtp_xtext_decode - RFC 3461 4: "+XX" hex escapes, NUL-terminated into out.
 * RC_INVALID on bad syntax or a decoded control character (0x00-0x1f, 0x7f);
 * RC_LIMIT if it does not fit (outsz includes the NUL). */
enum rc smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz);


/* ---- DATA --------------------------------------------------------------- */

/*
 * The DATA reader undoes dot-stuffing and finds the end of the message. Only
 * CRLF "." CRLF ends it; "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n" and the like are
 * message content (which the content checker then refuses as bare CR/LF).
 * Content bytes are handed to the caller with end-of-data excluded.
 */
struct smtp_data_reader {
	int state;		/* internal */
};
/* smtp_data_init - start at the beginning of a line (after the DATA command's
 * CRLF), so that an immediate "." CRLF is an empty message. */
void smtp_data_init(struct smtp_data_reader *r);
/*
 * smtp_data_feed - consume in[0..len): content is appended to out (which may be
 * NULL to discard). Returns RC_AGAIN when all of in was consumed without reaching
 * the end, RC_OK when the final CRLF.CRLF was consumed (*consumed says how many
 * bytes of in, so that pipelined commands after it are kept). The content
 * includes the CRLF that ends the last line. Unbounded: the caller counts
 * through the content checker. Once done, further calls return RC_OK, *consumed 0.
 */
enum rc smtp_data_feed(struct smtp_data_reader *r, const char *in, size_t len,
		       size_t *consumed, struct evbuffer *out);

/*
 * The content checker watches the message bytes (from DATA after unstuffing, or
 * from BDAT chunks) and finds what makes the message unacceptable: bare CR or LF,
 * NUL, a line over 998 octets, more than max_size bytes, 8-bit data without
 * 8BITMIME/SMTPUTF8 (noted, not fatal). It keeps a copy of the header section
 * (up to SMTP_HEADER_MAX) for smtp_hdr_scan.
 */
struct smtp_msg_check {
	uint64_t max_size;	/* 0: no limit */
	uint64_t size;
	bool in_headers;	/* still in the header section */
	bool bare_crlf;		/* saw a bare CR or LF */
	bool nul;
	bool long_line;
	bool too_big;
	bool eight_bit;
	bool header_overflow;	/* header section larger than SMTP_HEADER_MAX */
	size_t line_len;
	int prev;		/* previous byte, -1 at start */
	struct evbuffer *headers;	/* owned: the header section incl. the empty line */
};
void smtp_msg_check_init(struct smtp_msg_check *c, uint64_t max_size);
void smtp_msg_check_fini(struct smtp_msg_check *c);
void smtp_msg_check_feed(struct smtp_msg_check *c, const char *buf, size_t len);
/* smtp_msg_check_done - the verdict at end of data: RC_OK, or RC_PERMFAIL with err,
 * first match wins: 552 5.3.4 too big, 550 5.6.0 bare CR/LF, 550 5.6.0 NUL, 550
 * 5.6.0 long line, 552 5.3.4 header section too large. A message not ending in
 * CRLF gets it appended by the caller, it is not an error (but a final bare CR
 * is). Does not change *c: asking twice gives the same answer. */
enum rc smtp_msg_check_done(struct smtp_msg_check *c, struct smtp_reply *err);
/*
 * smtp_data_feed_check - smtp_data_feed that also hands every content octet, in
 * order, to the content checker c before appending it to out (NULL: checked and
 * discarded). One pass over the input, which is still in cache, and one copy;
 * the same result as smtp_data_feed into a buffer, then smtp_msg_check_feed on
 * that buffer.
 */
enum rc smtp_data_feed_check(struct smtp_data_reader *r, const char *in, size_t len,
			     size_t *consumed, struct smtp_msg_check *c, struct evbuffer *out);

/* What the server needs from the header section (RFC 5322). */
#define SMTP_HDR_FROM_MAX 16
struct smtp_hdr_info {
	bool has_message_id;
	bool has_date;
	bool has_from;
	bool from_malformed;		/* a From: we could not parse, or more than
					 * SMTP_HDR_FROM_MAX addresses in all */
	size_t nfrom;			/* addresses in From: (a group may hold several) */
	char from_domain[SMTP_HDR_FROM_MAX][SMTP_DOMAIN_MAX + 1];	/* lower-cased */
	size_t header_count;		/* header fields (name ":" body) */
	unsigned from_fields;		/* RFC 5322 3.6 allows one of each */
	unsigned date_fields;
	unsigned message_id_fields;
	unsigned received_fields;	/* trace fields: a mail loop when too many */
	bool bulk;			/* X-Relevo-Stream: bulk, or Precedence: bulk/list */
};
/* smtp_hdr_scan - parse a header section (unfolding, comments, quoted strings,
 * display names, groups, RFC 2047 words left alone). Never fails: oddities are
 * reported through the flags. */
void smtp_hdr_scan(const char *hdrs, size_t len, struct smtp_hdr_info *info);
/*
 * smtp_hdr_check - what every message must satisfy, first match wins: at most
 * max_received Received: fields (554 5.4.6, a mail loop), exactly one From:
 * (550 5.6.0, RFC 5322 3.6). RC_OK, or RC_PERMFAIL with *r set (its text in
 * text[0..textsz)).
 */
enum rc smtp_hdr_check(const struct smtp_hdr_info *hi, unsigned max_received,
		       struct smtp_reply *r, char *text, size_t textsz);
/*
 * smtp_hdr_strip_auth - copy the header section hdrs[0..len) to out without the
 * fields that claim an authentication result: with own_id NULL every
 * Authentication-Results and ARC-* field; else only the Authentication-Results
 * and ARC-Authentication-Results whose authserv-id is own_id (case-insensitive).
 * Returns how many fields were left out (out then differs from the input).
 */
size_t smtp_hdr_strip_auth(const char *hdrs, size_t len, const char *own_id, struct evbuffer *out);

/* ---- AUTH (RFC 4954, 4616) ----------------------------------------------- */

#define SMTP_AUTH_USER_MAX 255
#define SMTP_AUTH_PASS_MAX 255
/* smtp_auth_plain_decode - "authzid NUL authcid NUL passwd" (RFC 4616): exactly
 * two NULs, authcid (well-formed UTF-8, no controls) and passwd non-empty.
 * RC_INVALID if malformed, RC_LIMIT if authcid or passwd exceed 255 octets,
 * RC_PERMFAIL if authzid is neither empty nor equal to authcid. */
enum rc smtp_auth_plain_decode(const uint8_t *buf, size_t len,
			       char user[SMTP_AUTH_USER_MAX + 1],
			       char pass[SMTP_AUTH_PASS_MAX + 1]);

/* ---- reply formatting ---------------------------------------------------- */

/* smtp_reply_append - write "code enh text\r\n" (or multi-line when text holds
 * '\n'-separated lines, each becoming "code-enh line", the last "code enh line")
 * to out. enh may be NULL (omitted). Control characters in text are written as
 * "?"; code must be 200..599. */
void smtp_reply_append(struct evbuffer *out, int code, const char *enh, const char *text);

/* ---- the server ------------------------------------------------------------- */

struct conf;
struct spool;
struct store;
struct smtp_server;
struct event_base;

/* smtp_server_new - bind every listener of conf (before privileges are dropped)
 * and load the TLS context. Nothing is served until smtp_server_run. */
enum rc smtp_server_new(const struct conf *conf, struct spool *spool, struct store *store,
			struct smtp_server **out);
/* smtp_server_base - the main loop (listeners); the caller adds its signal and
 * control-socket events to it before smtp_server_run. */
struct event_base *smtp_server_base(struct smtp_server *srv);
/* smtp_server_run - start the workers and serve until smtp_server_stop; returns
 * when every session has ended. */
enum rc smtp_server_run(struct smtp_server *srv);
/*
 * Reload, on the main loop: smtp_server_reload_prepare(srv, nc, &errs) binds the
 * listeners nc adds and loads its TLS certificate and key without changing
 * anything (RC_INVALID with "key: error" lines in errs, caller frees, when it
 * cannot: the server goes on as it was). Then exactly one of commit (new
 * connections get nc, removed listeners close, DKIM keys are reloaded) or abort.
 */
enum rc smtp_server_reload_prepare(struct smtp_server *srv, const struct conf *nc, char **errs);
void smtp_server_reload_commit(struct smtp_server *srv);
void smtp_server_reload_abort(struct smtp_server *srv);
/* smtp_server_stop - stop accepting, 421 to idle sessions, let commits finish. */
void smtp_server_stop(struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

#endif
