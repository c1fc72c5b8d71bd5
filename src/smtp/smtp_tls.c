/*
 * smtp_tls.c - the server TLS context shared by all listeners.
 *
 * TLS 1.2 and 1.3 only, forward-secret AEAD suites for 1.2, server preference,
 * no compression (CRIME), no renegotiation (CVE-2009-3555 class), no session
 * tickets shared across restarts (fresh key per process). Errors name the file.
 */
#include "smtp/smtp_int.h"

#include <openssl/err.h>

/* tls_log_errors - log OpenSSL's error queue; the last error goes to err too. */
static void tls_log_errors(const char *what, const char *path, char *err, size_t errsz)
{
	unsigned long e;
	char buf[256];
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		log_err("event=tls_setup_failed what=%s file=%s error=\"%s\"", what, path, buf);
		snprintf(err, errsz, "%s: %s", path, buf);
	}
}

/* smtp_tls_server_ctx - load cert chain and key; NULL (logged, and the reason
 * in err) on failure. */
SSL_CTX *smtp_tls_server_ctx(const char *cert, const char *key, char *err, size_t errsz)
{
	snprintf(err, errsz, "cannot set up TLS");
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* OpenSSL 3 refuses client-initiated renegotiation by default. */
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS");
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_log_errors("certificate", cert, err, errsz);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		tls_log_errors("key", key, err, errsz);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
