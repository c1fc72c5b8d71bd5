/*
 * test_mta_client.c - the SMTP client (src/mta/mta_client*.c) against scripted
 * fake SMTP servers on 127.0.0.1, each running in a thread of the test with
 * blocking I/O (plain or TLS with a certificate made here with OpenSSL), while
 * the client runs on this thread's event loop.
 *
 * A script is a list of steps:
 *   "<LINE"   read a command line, which must equal LINE ("<MAIL*": start with)
 *   ">TEXT"   send TEXT + CRLF (TEXT may hold "\r\n" for multi-line replies)
 *   "=RAW"    send RAW as it is, in one write
 *   "D"       read DATA content up to CRLF.CRLF, keep it raw and un-stuffed
 *   "R"       read DATA content up to CRLF.CRLF byte by byte into the transcript
 *             (for bodies that are not CRLF lines)
 *   "T"       TLS handshake (server side)
 *   "N"       nothing more may arrive within 300 ms (proves no pipelining)
 *   "X"       close the connection now
 *   "S"       stall: answer nothing, wait for the client to close
 * After the last step the server reads until the client closes and keeps what
 * came (the QUIT). The test checks what a user would see: per-recipient codes,
 * the command transcript, the message bytes delivered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mta/mta.h"
#include "spool/spool.h"

/* ---- a certificate for "mx.test" and 127.0.0.1, made in memory ----------------- */

static EVP_PKEY *test_key;
static X509 *test_cert;

static void make_cert(void)
{
	test_key = EVP_EC_gen("P-256");
	assert_non_null(test_key);
	test_cert = X509_new();
	X509_set_version(test_cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(test_cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(test_cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(test_cert), 86400);
	X509_set_pubkey(test_cert, test_key);
	X509_NAME *name = X509_get_subject_name(test_cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test", -1,
				   -1, 0);
	X509_set_issuer_name(test_cert, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, test_cert, test_cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
						  "DNS:mx.test,IP:127.0.0.1");
	assert_non_null(ext);
	X509_add_ext(test_cert, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(test_cert, test_key, EVP_sha256()) > 0);
}

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate(ctx, test_cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, test_key), 1);
	return ctx;
}

/* client_ctx - a client context trusting the test certificate. */
static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), test_cert), 1);
	return ctx;
}

/* ---- the fake server ----------------------------------------------------------- */

#define SRV_BUF (1 << 20)
#define MAX_DATA 4

struct fake {
	const char *const *script;
	int lfd;
	uint16_t port;
	pthread_t thr;
	SSL_CTX *sctx;
	/* connection I/O */
	int fd;
	SSL *ssl;
	char *buf;
	size_t off, len;		/* unread bytes: buf[off..len) */
	bool closed;			/* "X": closed without draining */
	/* results */
	struct evbuffer *transcript;	/* command lines received, CRLF-terminated */
	struct evbuffer *data[MAX_DATA];	/* un-stuffed message content */
	struct evbuffer *raw[MAX_DATA];	/* the same as it was on the wire */
	int ndata;
	char err[256];			/* first script mismatch */
};

static void fake_fail(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fake_fail(struct fake *f, const char *fmt, ...)
{
	if (f->err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->err, sizeof f->err, fmt, ap);
	va_end(ap);
}

/* fake_fill - read more; false on EOF, error or the 10 s safety timeout. */
static bool fake_fill(struct fake *f)
{
	if (f->off > 0) {
		memmove(f->buf, f->buf + f->off, f->len - f->off);
		f->len -= f->off;
		f->off = 0;
	}
	if (f->len >= SRV_BUF)
		return false;
	ssize_t n;
	if (f->ssl)
		n = SSL_read(f->ssl, f->buf + f->len, (int)(SRV_BUF - f->len));
	else
		n = recv(f->fd, f->buf + f->len, SRV_BUF - f->len, 0);
	if (n <= 0)
		return false;
	f->len += (size_t)n;
	return true;
}

/* fake_line - one CRLF line into out (NUL-terminated, without CRLF). */
static bool fake_line(struct fake *f, char *out, size_t outsz)
{
	size_t from = f->off;
	for (;;) {
		for (size_t i = from; i + 1 < f->len; i++) {
			if (f->buf[i] == '\r' && f->buf[i + 1] == '\n') {
				size_t n = MIN(i - f->off, outsz - 1);
				memcpy(out, f->buf + f->off, n);
				out[n] = '\0';
				f->off = i + 2;
				return true;
			}
		}
		size_t scanned = f->len - f->off;
		if (!fake_fill(f))
			return false;
		from = scanned > 0 ? scanned - 1 : 0;	/* fake_fill moved buf[off] to 0 */
	}
}

static void fake_send(struct fake *f, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = f->ssl ? SSL_write(f->ssl, p, (int)n) : send(f->fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* fake_data - DATA content up to CRLF.CRLF, un-stuffed (RFC 5321 4.5.2). */
static void fake_data(struct fake *f)
{
	char *line = malloc(SRV_BUF);
	int k = f->ndata++;
	f->data[k] = evbuffer_new();
	f->raw[k] = evbuffer_new();
	for (;;) {
		if (!fake_line(f, line, SRV_BUF)) {
			fake_fail(f, "connection ended inside DATA");
			break;
		}
		size_t n = strlen(line);
		evbuffer_add(f->raw[k], line, n);
		evbuffer_add(f->raw[k], "\r\n", 2);
		if (strcmp(line, ".") == 0)
			break;
		const char *p = line[0] == '.' ? line + 1 : line;
		evbuffer_add(f->data[k], p, strlen(p));
		evbuffer_add(f->data[k], "\r\n", 2);
	}
	free(line);
}

/* fake_raw_data - the bytes up to the end of data, as they are. */
static void fake_raw_data(struct fake *f)
{
	char tail[5] = {0, 0, 0, '\r', '\n'};	/* as if just after the DATA line */
	for (;;) {
		if (f->off == f->len && !fake_fill(f)) {
			fake_fail(f, "connection ended inside DATA");
			return;
		}
		char ch = f->buf[f->off++];
		evbuffer_add(f->transcript, &ch, 1);
		memmove(tail, tail + 1, 4);
		tail[4] = ch;
		if (memcmp(tail, "\r\n.\r\n", 5) == 0)
			return;
	}
}

/* fake_nothing_more - no bytes arrive within 300 ms. */
static void fake_nothing_more(struct fake *f)
{
	struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
	if (f->len > f->off || (f->ssl && SSL_pending(f->ssl) > 0) || poll(&pfd, 1, 300) > 0)
		fake_fail(f, "client sent more without waiting for a reply (pipelining?)");
}

static void fake_expect(struct fake *f, const char *want)
{
	char line[8192];
	if (!fake_line(f, line, sizeof line)) {
		fake_fail(f, "expected \"%s\", got EOF", want);
		return;
	}
	evbuffer_add_printf(f->transcript, "%s\r\n", line);
	size_t wl = strlen(want);
	bool prefix = wl > 0 && want[wl - 1] == '*';
	if (prefix ? strncmp(line, want, wl - 1) != 0 : strcmp(line, want) != 0)
		fake_fail(f, "expected \"%s\", got \"%.200s\"", want, line);
}

/* fake_drain - until the client closes: keep what it said. */
static void fake_drain(struct fake *f)
{
	do {
		evbuffer_add(f->transcript, f->buf + f->off, f->len - f->off);
		f->off = f->len;
	} while (fake_fill(f));
}

static void fake_step(struct fake *f, const char *s)
{
	switch (s[0]) {
	case '<':
		fake_expect(f, s + 1);
		break;
	case '>':
		fake_send(f, s + 1, strlen(s + 1));
		fake_send(f, "\r\n", 2);
		break;
	case '=':
		fake_send(f, s + 1, strlen(s + 1));
		break;
	case 'D':
		fake_data(f);
		break;
	case 'R':
		fake_raw_data(f);
		break;
	case 'T':
		f->ssl = SSL_new(f->sctx);
		SSL_set_fd(f->ssl, f->fd);
		if (SSL_accept(f->ssl) != 1)
			fake_fail(f, "TLS accept failed");
		break;
	case 'N':
		fake_nothing_more(f);
		break;
	case 'S':
		fake_drain(f);
		break;
	default:
		fake_fail(f, "bad script step \"%s\"", s);
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1) {
		fake_fail(f, "no connection");
		return NULL;
	}
	f->fd = accept(f->lfd, NULL, NULL);
	struct timeval tv = {10, 0};
	setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	for (const char *const *s = f->script; *s != NULL && !f->err[0]; s++) {
		if (strcmp(*s, "X") == 0) {
			f->closed = true;
			break;
		}
		fake_step(f, *s);
	}
	if (f->err[0] == '\0' && !f->closed)
		fake_drain(f);
	if (f->ssl) {
		SSL_free(f->ssl);
		f->ssl = NULL;
	}
	close(f->fd);
	return NULL;
}

static int listen_any(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 4), 0);
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*port = ntohs(sa.sin_port);
	return fd;
}

static struct fake *fake_start(const char *const *script)
{
	struct fake *f = calloc(1, sizeof *f);
	f->script = script;
	f->buf = malloc(SRV_BUF);
	f->transcript = evbuffer_new();
	f->sctx = server_ctx();
	f->lfd = listen_any(&f->port);
	assert_int_equal(pthread_create(&f->thr, NULL, fake_main, f), 0);
	return f;
}

static void fake_join(struct fake *f)
{
	pthread_join(f->thr, NULL);
	close(f->lfd);
	if (f->err[0])
		fail_msg("fake server: %s", f->err);
}

static void fake_free(struct fake *f)
{
	for (int i = 0; i < f->ndata; i++) {
		evbuffer_free(f->data[i]);
		evbuffer_free(f->raw[i]);
	}
	evbuffer_free(f->transcript);
	SSL_CTX_free(f->sctx);
	free(f->buf);
	free(f);
}

/* buf_is - an evbuffer's bytes equal s[0..n). */
static bool buf_is(struct evbuffer *b, const char *s, size_t n)
{
	return evbuffer_get_length(b) == n &&
	       (n == 0 || memcmp(evbuffer_pullup(b, -1), s, n) == 0);
}

static void assert_transcript(struct fake *f, const char *want)
{
	size_t n = evbuffer_get_length(f->transcript);
	char *got = calloc(1, n + 1);
	evbuffer_copyout(f->transcript, got, n);
	if (strcmp(got, want) != 0)
		fail_msg("transcript:\n%s\nwanted:\n%s", got, want);
	free(got);
}

/* ---- the client side ------------------------------------------------------------------ */

#define MAX_RCPT 8
#define MAX_TXN 3

struct tx {
	struct mta_txn t;
	struct mta_txn_rcpt r[MAX_RCPT];
};

struct client {
	struct event_base *base;
	struct mta_conn *c;
	int ready_calls;
	enum rc ready_rc;
	struct mta_reply why;
	bool ready_conn_null;
	struct tx *tx[MAX_TXN];
	size_t ntx, next;
	int done_calls;
	bool usable[MAX_TXN];
	char tls_info[200];
	bool keep_open;			/* do not close after ready/done (the test does) */
	int idle_lost_calls;
	bool close_on_idle_lost;	/* idle_lost closes and ends the run */
	uint64_t recookie;		/* ready sets this cookie (mta_conn_set_cookie) */
	uint64_t cookie;		/* what idle_lost must carry (0: 77) */
	int send_delay_ms;		/* wait this long after ready before sending */
	struct event *delay_ev;
};

static void tx_init(struct tx *x, const char *sender, const char *const *rcpts,
		    const char *body, size_t blen)
{
	memset(x, 0, sizeof *x);
	x->t.msgid = 0x1234;
	x->t.sender = sender;
	x->t.rcpt = x->r;
	for (size_t i = 0; rcpts[i] != NULL; i++) {
		x->r[i].addr = rcpts[i];
		x->r[i].idx = (uint32_t)i;
		x->t.nrcpt++;
	}
	x->t.body = evbuffer_new();
	evbuffer_add(x->t.body, body, blen);
}

static void tx_fini(struct tx *x)
{
	evbuffer_free(x->t.body);
}

static void client_send_next(struct client *cl)
{
	mta_conn_send(cl->c, &cl->tx[cl->next++]->t);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
	client_send_next(arg);
}

static void on_ready(void *ctx, uint64_t cookie, struct mta_conn *c, enum rc rc,
		     const struct mta_reply *why)
{
	struct client *cl = ctx;
	assert_int_equal(cookie, 77);
	cl->ready_calls++;
	cl->ready_rc = rc;
	cl->why = *why;
	cl->ready_conn_null = c == NULL;
	if (rc != RC_OK) {
		event_base_loopbreak(cl->base);
		return;
	}
	cl->c = c;
	if (cl->recookie != 0) {
		mta_conn_set_cookie(c, cl->recookie);
		cl->cookie = cl->recookie;
	}
	snprintf(cl->tls_info, sizeof cl->tls_info, "%s", mta_conn_tls_info(c));
	if (cl->ntx == 0 || cl->keep_open) {
		if (!cl->keep_open) {
			mta_conn_close(c);
			cl->c = NULL;
			event_base_loopbreak(cl->base);
		}
		if (cl->ntx > 0 && cl->send_delay_ms > 0) {
			struct timeval tv = {0, cl->send_delay_ms * 1000};
			cl->delay_ev = evtimer_new(cl->base, on_delay, cl);
			evtimer_add(cl->delay_ev, &tv);
		}
		return;
	}
	client_send_next(cl);
}

static void on_done(void *ctx, uint64_t cookie, struct mta_conn *c, struct mta_txn *t)
{
	struct client *cl = ctx;
	assert_ptr_equal(c, cl->c);
	assert_ptr_equal(t, &cl->tx[cl->done_calls]->t);
	cl->usable[cl->done_calls++] = mta_conn_is_usable(c);
	snprintf(cl->tls_info, sizeof cl->tls_info, "%s", mta_conn_tls_info(c));
	if (mta_conn_is_usable(c) && cl->next < cl->ntx) {
		client_send_next(cl);
		return;
	}
	mta_conn_close(c);
	cl->c = NULL;
	event_base_loopbreak(cl->base);
}

static void on_idle_lost(void *ctx, uint64_t cookie, struct mta_conn *c)
{
	struct client *cl = ctx;
	assert_ptr_equal(c, cl->c);
	assert_int_equal(cookie, cl->cookie ? cl->cookie : 77);
	assert_false(mta_conn_is_usable(c));
	cl->idle_lost_calls++;
	if (cl->close_on_idle_lost) {
		mta_conn_close(c);
		cl->c = NULL;
		event_base_loopbreak(cl->base);
	}
}

static const struct mta_conn_cbs test_cbs = {on_ready, on_done, on_idle_lost};

static struct mta_conn_params default_params(void)
{
	return (struct mta_conn_params){
		.helo = "client.test",
		.host = "mx.test",
		.timeout_connect = 5,
		.timeout_greeting = 5,
		.timeout_ehlo = 5,
		.timeout_mail = 5,
		.timeout_rcpt = 5,
		.timeout_data = 5,
		.timeout_data_block = 5,
		.timeout_final = 5,
	};
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("the client never finished");
}

/* client_run - connect to port with p and run until the callbacks end it. */
static void client_run(struct client *cl, uint16_t port, const struct mta_conn_params *p)
{
	cl->base = event_base_new();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct event *guard = evtimer_new(cl->base, on_guard, NULL);
	struct timeval tv = {20, 0};
	evtimer_add(guard, &tv);
	mta_conn_open(cl->base, (struct sockaddr *)&sa, sizeof sa, p, &test_cbs, cl, 77);
	event_base_dispatch(cl->base);
	if (cl->c != NULL) {	/* keep_open tests: close what is left */
		mta_conn_close(cl->c);
		cl->c = NULL;
	}
	event_free(guard);
	if (cl->delay_ev)
		event_free(cl->delay_ev);
	event_base_free(cl->base);
}

/* run_one - a fake server with script, one transaction tx with params p. */
static struct fake *run_one(const char *const *script, const struct mta_conn_params *p,
			    struct client *cl, struct tx *x)
{
	struct fake *f = fake_start(script);
	if (x != NULL)
		cl->tx[cl->ntx++] = x;
	client_run(cl, f->port, p);
	fake_join(f);
	return f;
}

static void assert_rcpt(const struct tx *x, size_t i, enum rc rc, int code, const char *enh)
{
	const struct mta_txn_rcpt *r = &x->r[i];
	if (r->rc != rc || r->reply.code != code || (enh && strcmp(r->reply.enh, enh) != 0))
		fail_msg("rcpt %zu: rc=%s code=%d enh=%s text=\"%s\"; wanted rc=%s code=%d "
			 "enh=%s",
			 i, rc_name(r->rc), r->reply.code, r->reply.enh, r->reply.text, rc_name(rc),
			 code, enh ? enh : "(any)");
}

/* ---- the cases --------------------------------------------------------------------- */

static const char *const one_rcpt[] = {"b@y.test", NULL};
static const char *const three_rcpt[] = {"b1@y.test", "b2@y.test", "b3@y.test", NULL};

/* Lines starting with ".", a lone ".", no final newline. */
static const char tricky_body[] = "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n"
				  "mid.dot\r\n.\r\n\r\n. \r\nlast line without newline";

static void test_simple_delivery(void **state)
{
	char mail[64];
	snprintf(mail, sizeof mail, "<MAIL FROM:<a@x.test> SIZE=%zu", sizeof tricky_body - 1);
	const char *const script[] = {
		">220 fake ESMTP", "<EHLO client.test",
		">250-fake\r\n250-SIZE 100000\r\n250 8BITMIME", mail, "N", ">250 2.1.0 ok",
		"<RCPT TO:<b@y.test>", "N", ">250 2.1.5 ok", "<DATA", ">354 go ahead", "D",
		">250 2.0.0 queued as X", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, tricky_body, sizeof tricky_body - 1);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);

	assert_int_equal(cl.ready_rc, RC_OK);
	assert_int_equal(cl.done_calls, 1);
	assert_true(cl.usable[0]);
	assert_string_equal(cl.tls_info, "none");
	assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
	assert_string_equal(x.r[0].reply.text, "queued as X");
	/* what arrived is exactly what was sent, plus the CRLF it lacked */
	char want[sizeof tricky_body + 2];
	int n = snprintf(want, sizeof want, "%s\r\n", tricky_body);
	assert_int_equal(f->ndata, 1);
	assert_true(buf_is(f->data[0], want, (size_t)n));
	static const char stuffed[] = "Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n"
				      "mid.dot\r\n..\r\n\r\n.. \r\n"
				      "last line without newline\r\n.\r\n";
	assert_true(buf_is(f->raw[0], stuffed, sizeof stuffed - 1));
	char tr[512];
	snprintf(tr, sizeof tr,
		 "EHLO client.test\r\n%s\r\nRCPT TO:<b@y.test>\r\nDATA\r\nQUIT\r\n", mail + 1);
	assert_transcript(f, tr);
	fake_free(f);
	tx_fini(&x);
}

/* Bodies at the edges: empty, only CRLF, a single ".", ends in CRLF already. */
static void test_body_edges(void **state)
{
	static const struct {
		const char *label, *body, *wire;
	} cases[] = {
		{"empty", "", ".\r\n"},
		{"crlf only", "\r\n", "\r\n.\r\n"},
		{"a dot", ".", "..\r\n.\r\n"},
		{"ends with CRLF", "a\r\n", "a\r\n.\r\n"},
		{"ends with CR", "a\r", "a\r\r\n.\r\n"},
		{"dot after bare LF is stuffed", "a\n.b\r\n", "a\n..b\r\n.\r\n"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake",
					      "<MAIL*", ">250 ok", "<RCPT*", ">250 ok", "<DATA",
					      ">354 go", "R", ">250 ok", "<QUIT", NULL};
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, cases[i].body, strlen(cases[i].body));
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(script, &p, &cl, &x);
		assert_rcpt(&x, 0, RC_OK, 250, "");
		/* the transcript ends with the body's bytes and the QUIT */
		size_t tl = evbuffer_get_length(f->transcript) - 6;	/* "QUIT\r\n" */
		const char *t = (const char *)evbuffer_pullup(f->transcript, -1);
		size_t wl = strlen(cases[i].wire);
		if (tl < wl || memcmp(t + tl - wl, cases[i].wire, wl) != 0 ||
		    memcmp(t + tl, "QUIT\r\n", 6) != 0)
			fail_msg("case %s: wire \"%.*s\"", cases[i].label, (int)tl, t);
		fake_free(f);
		tx_fini(&x);
	}
}

static void test_pipelining(void **state)
{
	/* The server reads the whole group before answering: without pipelining
	 * the client would wait for MAIL's reply and time out. */
	const char *const script[] = {
		">220 fake ESMTP", "<EHLO client.test", ">250-fake\r\n250 PIPELINING",
		"<MAIL FROM:<a@x.test>", "<RCPT TO:<b1@y.test>", "<RCPT TO:<b2@y.test>",
		"<RCPT TO:<b3@y.test>", "<DATA", ">250 ok", ">250 ok", ">550 5.1.1 no such user",
		">451 4.2.0 mailbox busy", ">354 go", "D", ">250 2.0.0 ok", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", three_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
	assert_rcpt(&x, 1, RC_PERMFAIL, 550, "5.1.1");
	assert_string_equal(x.r[1].reply.text, "no such user");
	assert_rcpt(&x, 2, RC_TEMPFAIL, 451, "4.2.0");
	assert_true(cl.usable[0]);
	assert_true(buf_is(f->data[0], "x\r\n", 3));
	fake_free(f);
	tx_fini(&x);
}

static void test_no_pipelining_partial(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">250 fake", "<MAIL FROM:<a@x.test>", "N",
		">250 ok", "<RCPT TO:<b1@y.test>", "N", ">550 5.1.1 unknown",
		"<RCPT TO:<b2@y.test>", "N", ">250 ok", "<RCPT TO:<b3@y.test>", "N",
		">452 4.5.3 too many", "<DATA", "N",
		">354 go", "D", ">250 2.0.0 ok", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", three_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_PERMFAIL, 550, "5.1.1");
	assert_rcpt(&x, 1, RC_OK, 250, "2.0.0");
	assert_rcpt(&x, 2, RC_TEMPFAIL, 452, "4.5.3");
	fake_free(f);
	tx_fini(&x);
}

/* Pipelined, every RCPT refused, DATA got 354 anyway: a lone "." only. */
static void test_all_rcpt_failed_pipelined(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 PIPELINING", "<MAIL*", "<RCPT*",
		"<RCPT*", "<RCPT*", "<DATA", ">250 ok", ">550 5.1.1 a", ">550 5.1.1 b",
		">450 4.2.1 c", ">354 go", "<.", ">554 5.5.1 no valid recipients", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", three_rcpt, "secret body\r\n", 13);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_PERMFAIL, 550, "5.1.1");
	assert_rcpt(&x, 1, RC_PERMFAIL, 550, "5.1.1");
	assert_rcpt(&x, 2, RC_TEMPFAIL, 450, "4.2.1");
	assert_true(cl.usable[0]);
	assert_int_equal(f->ndata, 0);
	fake_free(f);
	tx_fini(&x);
}

/* Unpipelined, every RCPT refused: no DATA; the next transaction starts with
 * RSET. Also: two transactions on one connection, and a pipelined DATA
 * refusal leaving the transaction open (RSET again before the third). */
static void test_all_rcpt_failed_then_rset(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">250 fake",
		/* 1: every RCPT refused */
		"<MAIL FROM:<a@x.test>", ">250 ok", "<RCPT TO:<b@y.test>", ">550 5.1.1 no",
		/* 2: RSET first, then a clean delivery */
		"<RSET", ">250 ok", "<MAIL FROM:<a2@x.test>", ">250 ok", "<RCPT TO:<b@y.test>",
		">250 ok", "<DATA", ">354 go", "D", ">250 2.0.0 ok",
		/* 3: no RSET needed after a clean final reply */
		"<MAIL FROM:<a3@x.test>", ">250 ok", "<RCPT TO:<b@y.test>", ">250 ok", "<DATA",
		">354 go", "D", ">250 2.0.0 ok again", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x1, x2, x3;
	tx_init(&x1, "a@x.test", one_rcpt, "one\r\n", 5);
	tx_init(&x2, "a2@x.test", one_rcpt, "two\r\n", 5);
	tx_init(&x3, "a3@x.test", one_rcpt, "three\r\n", 7);
	cl.tx[cl.ntx++] = &x1;
	cl.tx[cl.ntx++] = &x2;
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x3);
	assert_int_equal(cl.done_calls, 3);
	assert_rcpt(&x1, 0, RC_PERMFAIL, 550, "5.1.1");
	assert_rcpt(&x2, 0, RC_OK, 250, "2.0.0");
	assert_rcpt(&x3, 0, RC_OK, 250, "2.0.0");
	assert_string_equal(x3.r[0].reply.text, "ok again");
	assert_true(cl.usable[0] && cl.usable[1] && cl.usable[2]);
	assert_int_equal(f->ndata, 2);
	assert_true(buf_is(f->data[0], "two\r\n", 5));
	assert_true(buf_is(f->data[1], "three\r\n", 7));
	fake_free(f);
	tx_fini(&x1);
	tx_fini(&x2);
	tx_fini(&x3);
}

static void test_final_reply(void **state)
{
	static const struct {
		const char *reply;
		enum rc rc;
		int code;
		const char *enh;
	} cases[] = {
		{">452 4.3.1 insufficient storage", RC_TEMPFAIL, 452, "4.3.1"},
		{">554 5.7.1 spam\r\n554 5.7.1 go away", RC_PERMFAIL, 554, "5.7.1"},
		{">250-2.0.0 ok\r\n250 2.0.0 queued", RC_OK, 250, "2.0.0"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *const script[] = {
			">220 fake", "<EHLO client.test", ">250-fake\r\n250 PIPELINING", "<MAIL*",
			"<RCPT*", "<RCPT*", "<RCPT*", "<DATA", ">250 ok", ">250 ok", ">250 ok",
			">550 5.1.1 gone", ">354 go", "D", cases[i].reply, "<QUIT", NULL};
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", three_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(script, &p, &cl, &x);
		assert_rcpt(&x, 0, cases[i].rc, cases[i].code, cases[i].enh);
		assert_rcpt(&x, 1, cases[i].rc, cases[i].code, cases[i].enh);
		assert_rcpt(&x, 2, RC_PERMFAIL, 550, "5.1.1");
		assert_true(cl.usable[0]);
		fake_free(f);
		tx_fini(&x);
	}
}

/* MAIL refused: every recipient gets its reply, pipelined or not. */
static void test_mail_refused(void **state)
{
	const char *const piped[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 PIPELINING", "<MAIL*", "<RCPT*",
		"<RCPT*", "<RCPT*", "<DATA", ">553 5.7.1 sender rejected", ">503 5.5.1 no",
		">503 5.5.1 no", ">503 5.5.1 no", ">503 5.5.1 no", "<QUIT", NULL};
	const char *const plain[] = {">220 fake", "<EHLO client.test", ">250 fake", "<MAIL*",
				     ">451 4.3.0 try later", "<QUIT", NULL};
	const char *const *scripts[] = {piped, plain};
	for (size_t i = 0; i < 2; i++) {
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", three_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(scripts[i], &p, &cl, &x);
		for (size_t k = 0; k < 3; k++)
			assert_rcpt(&x, k, i == 0 ? RC_PERMFAIL : RC_TEMPFAIL, i == 0 ? 553 : 451,
				    i == 0 ? "5.7.1" : "4.3.0");
		assert_true(cl.usable[0]);
		assert_int_equal(f->ndata, 0);
		fake_free(f);
		tx_fini(&x);
	}
}

static void test_greeting_refused(void **state)
{
	static const struct {
		const char *greeting;
		enum rc rc;
		int code;
	} cases[] = {
		{">421 4.3.2 busy, try later", RC_TEMPFAIL, 421},
		{">554 5.7.1 you are not welcome", RC_PERMFAIL, 554},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *const script[] = {cases[i].greeting, "<QUIT", NULL};
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(script, &p, &cl, &x);
		assert_int_equal(cl.ready_calls, 1);
		assert_int_equal(cl.ready_rc, cases[i].rc);
		assert_true(cl.ready_conn_null);
		assert_int_equal(cl.why.code, cases[i].code);
		assert_int_equal(cl.done_calls, 0);
		assert_transcript(f, "QUIT\r\n");
		fake_free(f);
		tx_fini(&x);
	}
}

static void test_ehlo_refused_helo(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">502 5.5.1 what?", "<HELO client.test",
		">250 fake", "<MAIL FROM:<a@x.test>", ">250 ok", "<RCPT TO:<b@y.test>", ">250 ok",
		"<DATA", ">354 go", "D", ">250 ok", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_OK, 250, "");
	fake_free(f);
	tx_fini(&x);

	/* EHLO 4xx: the server is not taking mail now. */
	const char *const script2[] = {">220 fake", "<EHLO client.test", ">421 4.7.0 later",
				       "<QUIT", NULL};
	struct client cl2 = {0};
	f = run_one(script2, &p, &cl2, NULL);
	assert_int_equal(cl2.ready_rc, RC_TEMPFAIL);
	assert_int_equal(cl2.why.code, 421);
	fake_free(f);
}

/* Pre-TLS extensions are forgotten: SIZE 10 offered before TLS must not stop
 * (or be sent with) the message after it. */
static void test_starttls(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250-SIZE 10\r\n250 STARTTLS",
		"<STARTTLS", ">220 2.0.0 go ahead", "T", "<EHLO client.test",
		">250-fake\r\n250 PIPELINING", "<MAIL FROM:<a@x.test>", "<RCPT TO:<b@y.test>",
		"<DATA", ">250 ok", ">250 ok", ">354 go", "D", ">250 2.0.0 ok", "<QUIT", NULL};
	static const struct {
		const char *host;
		const char *info;
	} cases[] = {{"mx.test", "verified=yes"}, {"127.0.0.1", "verified=yes"},
		     {"other.test", "verified=no"}};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, "secret\r\n", 8);
		struct mta_conn_params p = default_params();
		p.tls = client_ctx();
		p.host = cases[i].host;
		struct fake *f = run_one(script, &p, &cl, &x);
		assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
		assert_non_null(strstr(cl.tls_info, "TLSv1.3"));
		if (strstr(cl.tls_info, cases[i].info) == NULL)
			fail_msg("case %s: tls_info \"%s\"", cases[i].host, cl.tls_info);
		assert_true(buf_is(f->data[0], "secret\r\n", 8));
		SSL_CTX_free(p.tls);
		fake_free(f);
		tx_fini(&x);
	}
}

/* tls_verify with a name the certificate does not have: no mail, TEMPFAIL. */
static void test_starttls_verify_fails(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250-fake\r\n250 STARTTLS",
				      "<STARTTLS", ">220 2.0.0 go ahead", "T", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	p.tls = client_ctx();
	p.host = "other.test";
	p.tls_verify = true;
	struct fake *f = fake_start(script);
	cl.tx[cl.ntx++] = &x;
	client_run(&cl, f->port, &p);
	pthread_join(f->thr, NULL);	/* its TLS accept fails: that is the point */
	close(f->lfd);
	assert_int_equal(cl.ready_rc, RC_TEMPFAIL);
	assert_string_equal(cl.why.enh, "4.7.5");
	assert_non_null(strstr(cl.why.text, "certificate verification failed"));
	assert_int_equal(cl.done_calls, 0);
	SSL_CTX_free(p.tls);
	fake_free(f);
	tx_fini(&x);
}

static void test_tls_required_not_offered(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test",
				      ">250-fake\r\n250 PIPELINING", "<QUIT", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	p.tls = client_ctx();
	p.tls_required = true;
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_int_equal(cl.ready_rc, RC_TEMPFAIL);
	assert_string_equal(cl.why.enh, "4.7.4");
	assert_non_null(strstr(cl.why.text, "TLS is required"));
	assert_transcript(f, "EHLO client.test\r\nQUIT\r\n");
	SSL_CTX_free(p.tls);
	fake_free(f);
	tx_fini(&x);

	/* STARTTLS offered but refused: the same. */
	const char *const script2[] = {">220 fake", "<EHLO client.test",
				       ">250-fake\r\n250 STARTTLS", "<STARTTLS",
				       ">454 4.7.0 TLS not available", "<QUIT", NULL};
	struct client cl2 = {0};
	p.tls = client_ctx();
	f = run_one(script2, &p, &cl2, NULL);
	assert_int_equal(cl2.ready_rc, RC_TEMPFAIL);
	assert_non_null(strstr(cl2.why.text, "STARTTLS failed: 454"));
	SSL_CTX_free(p.tls);
	fake_free(f);
}

/* Plaintext sent after "220" to STARTTLS must never be read as a reply. */
static void test_starttls_injection(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 STARTTLS", "<STARTTLS",
		"=220 2.0.0 go ahead\r\n250-evil.example\r\n250 PIPELINING\r\n", "T",
		"<EHLO client.test", ">250 fake", "<MAIL FROM:<a@x.test>", ">250 ok",
		"<RCPT TO:<b@y.test>", ">250 ok", "<DATA", ">354 go", "D", ">250 2.0.0 ok", "<QUIT",
		NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	p.tls = client_ctx();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
	assert_non_null(strstr(cl.tls_info, "verified=yes"));
	SSL_CTX_free(p.tls);
	fake_free(f);
	tx_fini(&x);
}

/* Messages the server cannot take: refused before sending anything. */
static void test_refused_before_sending(void **state)
{
	static const struct {
		const char *label;
		const char *ehlo;
		uint32_t flags;
		const char *rcpt;
		int code;
		const char *enh;
	} cases[] = {
		{"SIZE too small", ">250-fake\r\n250-SIZE 10\r\n250 8BITMIME", 0, "b@y.test", 552,
		 "5.3.4"},
		{"SMTPUTF8 flag", ">250-fake\r\n250 8BITMIME", SPOOL_F_SMTPUTF8, "b@y.test", 553,
		 "5.6.7"},
		{"UTF-8 address", ">250-fake\r\n250 8BITMIME", 0, "b\xc3\xa9@y.test", 553, "5.6.7"},
		{"8BITMIME", ">250 fake", SPOOL_F_8BITMIME, "b@y.test", 554, "5.6.3"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *const script[] = {">220 fake", "<EHLO client.test", cases[i].ehlo,
					      "<QUIT", NULL};
		const char *const rcpts[] = {cases[i].rcpt, "c@y.test", NULL};
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", rcpts, "a body longer than ten bytes\r\n", 30);
		x.t.flags = cases[i].flags;
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(script, &p, &cl, &x);
		assert_rcpt(&x, 0, RC_PERMFAIL, cases[i].code, cases[i].enh);
		assert_rcpt(&x, 1, RC_PERMFAIL, cases[i].code, cases[i].enh);
		assert_true(cl.usable[0]);
		assert_transcript(f, "EHLO client.test\r\nQUIT\r\n");
		fake_free(f);
		tx_fini(&x);
	}
}

/* What the server offers decides the parameters sent. */
static void test_parameters(void **state)
{
	const char *const script[] = {
		">220 fake", "<EHLO client.test",
		">250-fake\r\n250-DSN\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE",
		"<MAIL FROM:<a@x.test> SIZE=3 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+20b+2Bc+3D",
		">250 ok", "<RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@y.test",
		">250 ok", "<RCPT TO:<c@y.test> NOTIFY=NEVER", ">250 ok",
		"<RCPT TO:<d\xc3\xa9@y.test> ORCPT=utf-8;d\xc3\xa9@y.test", ">250 ok", "<DATA",
		">354 go", "D", ">250 ok", "<QUIT", NULL};
	const char *const rcpts[] = {"b@y.test", "c@y.test", "d\xc3\xa9@y.test", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", rcpts, "x\r\n", 3);
	x.t.flags = SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8 | SPOOL_F_RET_HDRS;
	x.t.envid = "a b+c=";
	x.r[0].notify = SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE;
	x.r[0].orcpt = "rfc822;b+x@y.test";
	x.r[1].notify = SPOOL_NOTIFY_NEVER;
	x.r[2].orcpt = "utf-8;d\xc3\xa9@y.test";
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	for (size_t i = 0; i < 3; i++)
		assert_rcpt(&x, i, RC_OK, 250, "");
	fake_free(f);
	tx_fini(&x);

	/* Without DSN, no DSN parameters at all. */
	const char *const script2[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 8BITMIME",
		"<MAIL FROM:<> BODY=8BITMIME", ">250 ok", "<RCPT TO:<b@y.test>", ">250 ok", "<DATA",
		">354 go", "D", ">250 ok", "<QUIT", NULL};
	struct client cl2 = {0};
	tx_init(&x, "", one_rcpt, "x\r\n", 3);
	x.t.flags = SPOOL_F_8BITMIME | SPOOL_F_RET_FULL;
	x.t.envid = "id";
	x.r[0].notify = SPOOL_NOTIFY_DELAY;
	x.r[0].orcpt = "rfc822;b@y.test";
	f = run_one(script2, &p, &cl2, &x);
	assert_rcpt(&x, 0, RC_OK, 250, "");
	fake_free(f);
	tx_fini(&x);
}

static void test_dropped_mid_data(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake", "<MAIL*",
				      ">250 ok", "<RCPT*", ">250 ok", "<DATA", ">354 go", "X",
				      NULL};
	size_t n = 8 << 20;	/* far more than the socket buffers hold */
	char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (i % 80 == 0) ? '.' : 'a';
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, body, n);
	free(body);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_TEMPFAIL, 451, "4.4.2");
	assert_non_null(strstr(x.r[0].reply.text, "connection lost after DATA"));
	assert_false(cl.usable[0]);
	assert_false(x.t.unanswered);	/* 354 came: part of it may have been taken */
	fake_free(f);
	tx_fini(&x);
}

/* A server that stops answering, in each phase: a clean TEMPFAIL once that
 * phase's own timeout (delivery.timeouts) has passed. */
static void test_stalls(void **state)
{
	static const char *const at_greeting[] = {"S", NULL};
	static const char *const at_ehlo[] = {">220 fake", "<EHLO client.test", "S", NULL};
	static const char *const at_tls[] = {">220 fake", "<EHLO client.test",
					     ">250-fake\r\n250 STARTTLS", "<STARTTLS",
					     ">220 go ahead", "S", NULL};
	static const char *const at_rcpt[] = {">220 fake", "<EHLO client.test", ">250 fake",
					      "<MAIL*", ">250 ok", "<RCPT*", "S", NULL};
	static const char *const at_data[] = {">220 fake", "<EHLO client.test", ">250 fake",
					      "<MAIL*", ">250 ok", "<RCPT*", ">250 ok", "<DATA",
					      "S", NULL};
	static const char *const at_final[] = {">220 fake", "<EHLO client.test", ">250 fake",
					       "<MAIL*", ">250 ok", "<RCPT*", ">250 ok", "<DATA",
					       ">354 go", "D", "S", NULL};
	static const char *const trickle[] = {">220 fake", "<EHLO client.test", ">250 fake",
					      "<MAIL*", "=250", "S", NULL};
	static const struct {
		const char *label;
		const char *const *script;
		bool opening;
		const char *phase;
		size_t tmo;	/* the timeout that bounds this phase (1 s, the others 30 s) */
	} cases[] = {
#define TMO(f) offsetof(struct mta_conn_params, f)
		{"greeting", at_greeting, true, "after connect", TMO(timeout_greeting)},
		{"EHLO", at_ehlo, true, "after EHLO", TMO(timeout_ehlo)},
		{"TLS handshake", at_tls, true, "TLS", TMO(timeout_ehlo)},
		{"RCPT", at_rcpt, false, "after RCPT TO", TMO(timeout_rcpt)},
		{"DATA", at_data, false, "after DATA", TMO(timeout_data)},
		{"final", at_final, false, "after end of data", TMO(timeout_final)},
		{"partial reply", trickle, false, "after MAIL FROM", TMO(timeout_mail)},
#undef TMO
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		p.timeout_greeting = p.timeout_ehlo = p.timeout_mail = p.timeout_rcpt = 30;
		p.timeout_data = p.timeout_data_block = p.timeout_final = 30;
		*(unsigned *)(void *)((char *)&p + cases[i].tmo) = 1;
		p.tls = client_ctx();
		int64_t t0 = time_mono_ms();
		struct fake *f = run_one(cases[i].script, &p, &cl, &x);
		int64_t took = time_mono_ms() - t0;
		if (took < 900 || took > 4000)
			fail_msg("case %s: took %lld ms", cases[i].label, (long long)took);
		const struct mta_reply *r = cases[i].opening ? &cl.why : &x.r[0].reply;
		if (cases[i].opening)
			assert_int_equal(cl.ready_rc, RC_TEMPFAIL);
		else
			assert_rcpt(&x, 0, RC_TEMPFAIL, 451, "4.4.2");
		if (strstr(r->text, cases[i].phase) == NULL || strstr(r->text, "timeout") == NULL)
			fail_msg("case %s: \"%s\"", cases[i].label, r->text);
		SSL_CTX_free(p.tls);
		fake_free(f);
		tx_fini(&x);
	}
}

/* Hostile replies: endless, early, surplus, malformed. */
static void test_hostile_replies(void **state)
{
	static char endless_lines[16 * 100 + 2], endless_line[300 * 1024];
	size_t off = 1;
	endless_lines[0] = '=';	/* one write of 100 continuation lines */
	for (int i = 0; i < 100; i++)
		off += (size_t)snprintf(endless_lines + off, sizeof endless_lines - off,
					"250-line %d\r\n", i);
	endless_line[0] = '=';	/* 300 KiB without a line end */
	memcpy(endless_line + 1, "250 ", 4);
	memset(endless_line + 5, 'a', sizeof endless_line - 6);
	endless_line[sizeof endless_line - 1] = '\0';

	static const char *const early[] = {"=220 fake\r\n250 early\r\n", NULL};
	const char *const many[] = {">220 fake", "<EHLO client.test", endless_lines, "S", NULL};
	const char *const longl[] = {">220 fake", "<EHLO client.test", endless_line, "S", NULL};
	static const char *const surplus[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 PIPELINING", "<MAIL*", "<RCPT*",
		"<DATA", "=250 ok\r\n250 ok\r\n354 go\r\n250 extra\r\n", "S", NULL};
	static const char *const garbage[] = {">220 fake", "<EHLO client.test", ">hello there",
					      "S", NULL};
	static const char *const mixed[] = {">220 fake", "<EHLO client.test", ">250-a\r\n251 b",
					    "S", NULL};
	static const char *const data250[] = {">220 fake", "<EHLO client.test", ">250 fake",
					      "<MAIL*", ">250 ok", "<RCPT*", ">250 ok", "<DATA",
					      ">250 ok", "S", NULL};
	const struct {
		const char *label;
		const char *const *script;
		bool opening;
	} cases[] = {
		{"early reply", early, true},	{"endless lines", many, true},
		{"endless line", longl, true},	{"surplus replies", surplus, false},
		{"garbage", garbage, true},	{"mixed codes", mixed, true},
		{"DATA 250", data250, false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		struct fake *f = run_one(cases[i].script, &p, &cl, &x);
		const struct mta_reply *r = cases[i].opening ? &cl.why : &x.r[0].reply;
		if (cases[i].opening) {
			assert_int_equal(cl.ready_rc, RC_TEMPFAIL);
			assert_int_equal(cl.done_calls, 0);
		} else {
			assert_rcpt(&x, 0, RC_TEMPFAIL, 451, "4.4.2");
			assert_false(cl.usable[0]);
			assert_int_equal(f->ndata, 0);
		}
		if (strstr(r->text, "protocol error") == NULL)
			fail_msg("case %s: \"%s\"", cases[i].label, r->text);
		fake_free(f);
		tx_fini(&x);
	}
}

static void test_auth(void **state)
{
	/* PLAIN with an initial response: base64("\0joe\0secret") */
	const char *const plain[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 STARTTLS", "<STARTTLS",
		">220 go ahead", "T", "<EHLO client.test", ">250-fake\r\n250 AUTH LOGIN PLAIN",
		"<AUTH PLAIN AGpvZQBzZWNyZXQ=", ">235 2.7.0 ok", "<MAIL FROM:<a@x.test>", ">250 ok",
		"<RCPT TO:<b@y.test>", ">250 ok", "<DATA", ">354 go", "D", ">250 2.0.0 ok", "<QUIT",
		NULL};
	const char *const login[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 STARTTLS", "<STARTTLS",
		">220 go ahead", "T", "<EHLO client.test", ">250-fake\r\n250 AUTH=LOGIN",
		"<AUTH LOGIN", ">334 VXNlcm5hbWU6", "<am9l", ">334 UGFzc3dvcmQ6", "<c2VjcmV0",
		">235 2.7.0 ok", "<MAIL FROM:<a@x.test>", ">250 ok", "<RCPT TO:<b@y.test>",
		">250 ok", "<DATA", ">354 go", "D", ">250 2.0.0 ok", "<QUIT", NULL};
	const char *const *scripts[] = {plain, login};
	for (size_t i = 0; i < 2; i++) {
		struct client cl = {0};
		struct tx x;
		tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
		struct mta_conn_params p = default_params();
		p.tls = client_ctx();
		p.auth_user = "joe";
		p.auth_pass = "secret";
		struct fake *f = run_one(scripts[i], &p, &cl, &x);
		assert_int_equal(cl.ready_rc, RC_OK);
		assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
		SSL_CTX_free(p.tls);
		fake_free(f);
		tx_fini(&x);
	}
}

static void test_auth_failures(void **state)
{
	const char *const bad_pass[] = {
		">220 fake", "<EHLO client.test", ">250-fake\r\n250 STARTTLS", "<STARTTLS",
		">220 go ahead", "T", "<EHLO client.test", ">250-fake\r\n250 AUTH PLAIN",
		"<AUTH PLAIN*", ">535 5.7.8 authentication failed", "<QUIT", NULL};
	const char *const no_tls[] = {">220 fake", "<EHLO client.test",
				      ">250-fake\r\n250 AUTH PLAIN", "<QUIT", NULL};
	const char *const no_mech[] = {">220 fake", "<EHLO client.test",
				       ">250-fake\r\n250 STARTTLS", "<STARTTLS", ">220 go ahead",
				       "T", "<EHLO client.test", ">250-fake\r\n250 AUTH CRAM-MD5",
				       "<QUIT", NULL};
	const struct {
		const char *label;
		const char *const *script;
		bool tls;
		enum rc rc;
		int code;
	} cases[] = {
		{"535", bad_pass, true, RC_PERMFAIL, 535},
		{"no TLS", no_tls, false, RC_TEMPFAIL, 451},
		{"no usable mechanism", no_mech, true, RC_TEMPFAIL, 451},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct client cl = {0};
		struct mta_conn_params p = default_params();
		p.tls = cases[i].tls ? client_ctx() : NULL;
		p.auth_user = "joe";
		p.auth_pass = "secret";
		struct fake *f = run_one(cases[i].script, &p, &cl, NULL);
		if (cl.ready_rc != cases[i].rc || cl.why.code != cases[i].code)
			fail_msg("case %s: rc=%s why=%d %s", cases[i].label, rc_name(cl.ready_rc),
				 cl.why.code, cl.why.text);
		assert_true(cl.ready_conn_null);
		SSL_CTX_free(p.tls);
		fake_free(f);
	}
}

static void test_connect_refused(void **state)
{
	uint16_t port;
	int fd = listen_any(&port);
	close(fd);	/* nobody listens there now */
	struct client cl = {0};
	struct mta_conn_params p = default_params();
	client_run(&cl, port, &p);
	assert_int_equal(cl.ready_calls, 1);
	assert_int_equal(cl.ready_rc, RC_TEMPFAIL);
	assert_string_equal(cl.why.enh, "4.4.1");
	assert_true(cl.ready_conn_null);
}

/* The server closes an idle connection: it is no longer usable, and a
 * transaction sent on it anyway fails TEMPFAIL without a crash. */
static void test_idle_close(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake",
				      ">421 4.4.2 idle too long", "X", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	cl.keep_open = true;
	cl.send_delay_ms = 300;
	cl.tx[cl.ntx++] = &x;
	struct mta_conn_params p = default_params();
	struct fake *f = fake_start(script);
	client_run(&cl, f->port, &p);
	fake_join(f);
	assert_int_equal(cl.done_calls, 1);
	assert_false(cl.usable[0]);
	assert_rcpt(&x, 0, RC_TEMPFAIL, 451, "4.4.2");
	assert_true(x.t.unanswered);	/* nothing was sent: safe to send elsewhere */
	/* (idle_lost may or may not have come: the 421 can arrive with the EHLO
	 * reply, before ready() has run; test_idle_lost_while_parked covers it) */
	fake_free(f);
	tx_fini(&x);
}

/* A connection kept idle (parked for reuse under another cookie) that the
 * server closes: idle_lost says so at once, with the new cookie, and the
 * owner closes it. No transaction is involved. */
static void test_idle_lost_while_parked(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake", "N", "X",
				      NULL};
	struct client cl = {0};
	cl.keep_open = true;
	cl.close_on_idle_lost = true;
	struct mta_conn_params p = default_params();
	cl.recookie = 78;
	struct fake *f = fake_start(script);
	client_run(&cl, f->port, &p);
	fake_join(f);
	assert_int_equal(cl.ready_calls, 1);
	assert_int_equal(cl.idle_lost_calls, 1);
	assert_int_equal(cl.done_calls, 0);
	assert_null(cl.c);
	fake_free(f);
}

/* The server hangs up right after a transaction is sent on a connection it
 * had accepted (a reused one it had just dropped): no reply at all, so the
 * transaction is "unanswered" and may be sent again at once elsewhere. */
static void test_unanswered_transaction(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake", "<MAIL*",
				      "X", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_TEMPFAIL, 451, "4.4.2");
	assert_true(x.t.unanswered);
	assert_int_equal(cl.idle_lost_calls, 0);	/* it broke in a transaction */
	fake_free(f);
	tx_fini(&x);
}

/* The owner closes in the middle of a transaction: no callback ever after. */
static void on_abandon(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	mta_conn_close(cl->c);
	cl->c = NULL;
	event_base_loopexit(cl->base, &(struct timeval){0, 200000});
}

static void test_close_mid_transaction(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test", ">250 fake", "<MAIL*",
				      "S", NULL};
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, "x\r\n", 3);
	cl.tx[cl.ntx++] = &x;
	struct mta_conn_params p = default_params();
	struct fake *f = fake_start(script);
	cl.base = event_base_new();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	mta_conn_open(cl.base, (struct sockaddr *)&sa, sizeof sa, &p, &test_cbs, &cl, 77);
	struct event *ev = evtimer_new(cl.base, on_abandon, &cl);
	struct timeval tv = {0, 300000};
	evtimer_add(ev, &tv);
	event_base_dispatch(cl.base);
	event_free(ev);
	event_base_free(cl.base);
	fake_join(f);
	assert_int_equal(cl.ready_calls, 1);
	assert_int_equal(cl.done_calls, 0);
	/* not usable mid-transaction: no QUIT, just the close */
	assert_transcript(f, "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\n");
	fake_free(f);
	tx_fini(&x);
}

/* A large body goes out in pieces and arrives intact. */
static void test_large_body(void **state)
{
	const char *const script[] = {">220 fake", "<EHLO client.test",
				      ">250-fake\r\n250 PIPELINING", "<MAIL*", "<RCPT*", "<DATA",
				      ">250 ok", ">250 ok", ">354 go", "D", ">250 2.0.0 ok",
				      "<QUIT", NULL};
	size_t n = 3000000;	/* whole 100-byte lines: nothing added at the end */
	char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n'
			  : (i % 300 == 0) ? '.' : (char)('a' + i % 26);
	struct client cl = {0};
	struct tx x;
	tx_init(&x, "a@x.test", one_rcpt, body, n);
	struct mta_conn_params p = default_params();
	struct fake *f = run_one(script, &p, &cl, &x);
	assert_rcpt(&x, 0, RC_OK, 250, "2.0.0");
	size_t got = evbuffer_get_length(f->data[0]);
	const char *d = (const char *)evbuffer_pullup(f->data[0], -1);
	for (size_t i = 0; i < MIN(got, n); i++)
		if (d[i] != body[i])
			fail_msg("body differs at %zu of %zu (got %zu bytes)", i, n, got);
	assert_int_equal(got, n);
	free(body);
	fake_free(f);
	tx_fini(&x);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("TEST_DEBUG") ? LOG_LV_DEBUG : LOG_LV_WARN);
	make_cert();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_delivery),
		cmocka_unit_test(test_body_edges),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_no_pipelining_partial),
		cmocka_unit_test(test_all_rcpt_failed_pipelined),
		cmocka_unit_test(test_all_rcpt_failed_then_rset),
		cmocka_unit_test(test_final_reply),
		cmocka_unit_test(test_mail_refused),
		cmocka_unit_test(test_greeting_refused),
		cmocka_unit_test(test_ehlo_refused_helo),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_starttls_verify_fails),
		cmocka_unit_test(test_tls_required_not_offered),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_refused_before_sending),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_dropped_mid_data),
		cmocka_unit_test(test_stalls),
		cmocka_unit_test(test_hostile_replies),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_auth_failures),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_idle_close),
		cmocka_unit_test(test_idle_lost_while_parked),
		cmocka_unit_test(test_unanswered_transaction),
		cmocka_unit_test(test_close_mid_transaction),
		cmocka_unit_test(test_large_body),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	X509_free(test_cert);
	EVP_PKEY_free(test_key);
	return rc;
}
