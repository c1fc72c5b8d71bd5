/*
 * mta_client_tls.c - STARTTLS on an outbound connection (RFC 3207): the switch
 * from the plain bufferevent to a TLS one on the same socket, SNI, certificate
 * verification, and what the handshake's outcome means.
 *
 * Invariants:
 * - Whatever the server sent after its 220 to STARTTLS is discarded before the
 *   handshake (the client-side mirror of CVE-2011-0411: plaintext injected
 *   there must never be read as a reply inside TLS).
 * - After the handshake every extension learnt before it is forgotten and EHLO
 *   is sent again (RFC 3207 4.2).
 * - Verification always runs (SSL_VERIFY_PEER with the context's trust store,
 *   the host name or IP checked with SSL_set1_host / set1_ip_asc). It fails
 *   the handshake only with tls_verify; otherwise its result is recorded
 *   (verified=yes/no in mta_conn_tls_info) and the connection goes on
 *   (opportunistic TLS, RFC 7435).
 * - A failed handshake ends the connection: ready(RC_TEMPFAIL, 4.7.5), never a
 *   fallback to plaintext on the same connection.
 * The OpenSSL error queue is emptied after use so that errors never leak into
 * another connection on this thread.
 */
#include "mta/mta_client_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/x509v3.h>

/* tls_verify_record - keep going whatever verification found; the result stays
 * in SSL_get_verify_result() for mta_tls_on_handshake. */
static int tls_verify_record(int ok, X509_STORE_CTX *x)
{
	return 1;
}

/* tls_host_ip - is host an IP address ("192.0.2.1", "[192.0.2.1]",
 * "[IPv6:2001:db8::1]")? Then the bare address goes into ip. */
static bool tls_host_ip(const char *host, char *ip, size_t ipsz)
{
	const char *s = host;
	size_t n = strlen(host);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
		if (n >= 5 && strncasecmp(s, "IPv6:", 5) == 0)
			s += 5, n -= 5;
	}
	if (n >= ipsz)
		return false;
	memcpy(ip, s, n);
	ip[n] = '\0';
	unsigned char buf[16];
	return inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1;
}

/* tls_setup - SNI and the identity to verify; false if OpenSSL refused. */
static bool tls_setup(struct mta_conn *c, SSL *ssl)
{
	char ip[INET6_ADDRSTRLEN + 16];
	bool ok = true;
	SSL_set_verify(ssl, SSL_VERIFY_PEER, c->tls_verify ? NULL : tls_verify_record);
	if (!c->host_given)
		return true;	/* no name: the chain alone is checked */
	if (tls_host_ip(c->host, ip, sizeof ip)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) == 1;
	} else {
		/* RFC 6066 3: SNI carries host names only, never addresses. */
		ok = SSL_set_tlsext_host_name(ssl, c->host) == 1 &&
		     SSL_set1_host(ssl, c->host) == 1;
	}
	return ok;
}

/* mta_tls_start - STARTTLS got 220: discard what followed, start the handshake. */
void mta_tls_start(struct mta_conn *c)
{
	c->stage_us = metrics_now_us();
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t junk = evbuffer_get_length(in);
	if (junk > 0 || !mta_reply_is_idle(&c->rp))
		log_warn("conn=%016llx event=starttls_injection host=%s addr=%s bytes=%zu "
			 "action=discarded",
			 (unsigned long long)c->id, c->host, c->peer, junk);
	evbuffer_drain(in, junk);
	mta_reply_init(&c->rp);

	SSL *ssl = SSL_new(c->tls_ctx);
	if (ssl == NULL || !tls_setup(c, ssl)) {
		SSL_free(ssl);
		ERR_clear_error();
		struct mta_reply why;
		mta_reply_set(&why, 451, "4.7.5", "%s: could not set up TLS", c->host);
		mta_conn_fail(c, RC_TEMPFAIL, &why, false);
		return;
	}
	/* Freeing the plain bufferevent inside its own read callback is fine:
	 * libevent holds a reference until the callback returns, and nothing of
	 * the old one is used after this. */
	bufferevent_free(c->bev);
	c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL)
		fatal("event=bufferevent_openssl_socket_new_failed");
	c->bev_owns_fd = true;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	mta_conn_attach(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* mta_tls_on_handshake - TLS is up: record what we got, EHLO again. */
void mta_tls_on_handshake(struct mta_conn *c)
{
	metrics_observe(METRICS_H_DELIVERY_TLS, (uint64_t)(metrics_now_us() - c->stage_us));
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	long vr = SSL_get_verify_result(ssl);
	bool has_cert = SSL_get0_peer_certificate(ssl) != NULL;
	c->tls_verified = has_cert && vr == X509_V_OK;
	c->tls_active = true;
	snprintf(c->tls_info, sizeof c->tls_info, "%s %s verified=%s", SSL_get_version(ssl),
		 SSL_get_cipher_name(ssl), c->tls_verified ? "yes" : "no");
	log_info("conn=%016llx event=tls host=%s addr=%s version=%s cipher=%s verified=%s "
		 "verify_error=\"%s\"",
		 (unsigned long long)c->id, c->host, c->peer, SSL_get_version(ssl),
		 SSL_get_cipher_name(ssl), c->tls_verified ? "yes" : "no",
		 has_cert ? X509_verify_cert_error_string(vr) : "no certificate");
	if (c->tls_verify && !c->tls_verified) {
		/* Only reachable without a certificate: a bad one fails the handshake. */
		struct mta_reply why;
		mta_reply_set(&why, 451, "4.7.5", "%s: server certificate not verified: %s",
			      c->host,
			      has_cert ? X509_verify_cert_error_string(vr) : "no certificate");
		mta_conn_fail(c, RC_TEMPFAIL, &why, false);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	c->esmtp = false;
	c->ext = 0;
	c->size_max = 0;
	c->auth_mechs = 0;
	mta_conn_enter_state(c, MTA_CST_EHLO);
}

/* mta_tls_on_error - the handshake failed (or the peer went away during it). */
void mta_tls_on_error(struct mta_conn *c, short what)
{
	char err[256] = "";
	unsigned long e;
	while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
		if (err[0] == '\0')
			ERR_error_string_n(e, err, sizeof err);
	ERR_clear_error();
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char reason[320];
	if (c->tls_verify && vr != X509_V_OK)
		snprintf(reason, sizeof reason, "certificate verification failed: %s",
			 X509_verify_cert_error_string(vr));
	else if (what & BEV_EVENT_TIMEOUT)
		snprintf(reason, sizeof reason, "timeout");
	else if (err[0] != '\0')
		snprintf(reason, sizeof reason, "%s", err);
	else
		snprintf(reason, sizeof reason, "connection closed by the server");
	struct mta_reply why;
	mta_reply_set(&why, 451, "4.7.5", "%s: TLS handshake failed: %s", c->host, reason);
	mta_conn_fail(c, RC_TEMPFAIL, &why, false);
}
