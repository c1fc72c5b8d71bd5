/*
 * dkim_key.c - DKIM keys: generation, private key files, public key records.
 *
 * Private keys are written as PKCS#8 PEM into a new file created with
 * O_CREAT|O_EXCL and mode 0600 (an existing file is never replaced), then
 * fsynced together with its directory before success is reported; a failed
 * write removes the partial file. The PEM text passes through OpenSSL's secure
 * memory BIO and the read buffer is cleansed, so no copy of a private key is
 * left in freed memory by us. Keys are loaded without ever prompting for a
 * passphrase: an encrypted key file is refused.
 *
 * Public keys are published as RFC 6376 3.6.1 TXT records: k=rsa with the
 * base64 SubjectPublicKeyInfo DER, k=ed25519 with the base64 raw 32-byte key
 * (RFC 8463 4.2).
 */
#include "dkim/dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const alg_names[] = {"rsa-sha256", "ed25519-sha256"};
_Static_assert(ARRAY_LEN(alg_names) == DKIM_ALG__COUNT, "alg_names");

/* dkim_alg_name - the a= value. */
const char *dkim_alg_name(enum dkim_alg alg)
{
	return (unsigned)alg < DKIM_ALG__COUNT ? alg_names[alg] : "?";
}

/* dkim_alg_parse - accept "rsa", "rsa-sha256", "ed25519", "ed25519-sha256" (any case). */
bool dkim_alg_parse(const char *s, enum dkim_alg *out)
{
	if (strcasecmp(s, "rsa") == 0 || strcasecmp(s, "rsa-sha256") == 0)
		*out = DKIM_ALG_RSA_SHA256;
	else if (strcasecmp(s, "ed25519") == 0 || strcasecmp(s, "ed25519-sha256") == 0)
		*out = DKIM_ALG_ED25519_SHA256;
	else
		return false;
	return true;
}

/* dkim_key_alg - what a key signs with; RC_INVALID for other types and small RSA. */
enum rc dkim_key_alg(EVP_PKEY *pkey, enum dkim_alg *out)
{
	if (pkey == NULL)
		return RC_INVALID;
	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		*out = DKIM_ALG_ED25519_SHA256;
		return RC_OK;
	}
	if (EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= DKIM_RSA_MIN_BITS) {
		*out = DKIM_ALG_RSA_SHA256;
		return RC_OK;
	}
	return RC_INVALID;
}

/* dkim_key_generate - a new RSA-2048 or Ed25519 private key. */
enum rc dkim_key_generate(enum dkim_alg alg, EVP_PKEY **out)
{
	if (alg == DKIM_ALG_RSA_SHA256)
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)DKIM_RSA_BITS);
	else if (alg == DKIM_ALG_ED25519_SHA256)
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		return RC_INVALID;
	return *out != NULL ? RC_OK : RC_TEMPFAIL;
}

/* The directory part of path ("." for a bare name), in a new string. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/* PEM PKCS#8 text of pkey in a secure-memory BIO. */
static BIO *key_pem(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	if (bio == NULL)
		return NULL;
	if (PEM_write_bio_PKCS8PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		BIO_free(bio);
		return NULL;
	}
	return bio;
}

static enum rc fd_write_sync(int fd, BIO *pem)
{
	char *data = NULL;
	long len = BIO_get_mem_data(pem, &data);
	enum rc rc;

	if (len <= 0)
		return RC_INVALID;
	if ((rc = file_write_all(fd, data, (size_t)len)) != RC_OK)
		return rc;
	if (fault_hit("fsync") || fsync(fd) != 0)
		return RC_IO;
	return RC_OK;
}

/* dkim_key_write - store a private key as PKCS#8 PEM in a new file of mode 0600. */
enum rc dkim_key_write(const char *path, EVP_PKEY *pkey)
{
	enum dkim_alg alg;
	enum rc rc;

	if (dkim_key_alg(pkey, &alg) != RC_OK)
		return RC_INVALID;
	BIO *pem = key_pem(pkey);
	if (pem == NULL)
		return RC_INVALID;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		BIO_free(pem);
		return errno == EEXIST ? RC_EXISTS : RC_IO;
	}
	rc = fd_write_sync(fd, pem);
	BIO_free(pem);
	if (close(fd) != 0 && rc == RC_OK)
		rc = RC_IO;
	if (rc == RC_OK) {
		char *dir = dir_of(path);
		rc = file_fsync_dir(dir);
		free(dir);
	}
	if (rc != RC_OK)
		unlink(path);
	return rc;
}

/* Never ask for a passphrase: an encrypted key simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static EVP_PKEY *pem_parse(const char *text, size_t len)
{
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	EVP_PKEY *pkey = NULL;

	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	ERR_clear_error();
	return pkey;
}

/* dkim_key_load - read a PEM private key and tell what it signs with. */
enum rc dkim_key_load(const char *path, EVP_PKEY **out, enum dkim_alg *alg)
{
	struct stat st;
	char *text = NULL;
	size_t len = 0;
	enum rc rc;

	*out = NULL;
	if (stat(path, &st) != 0)
		return errno == ENOENT ? RC_NOTFOUND : RC_IO;
	if (st.st_mode & 077)
		log_warn("event=dkim_key_mode path=%s mode=%04o hint=chmod_600", path,
			 (unsigned)(st.st_mode & 07777));
	if ((rc = file_read_all(path, DKIM_KEY_FILE_MAX, &text, &len)) != RC_OK)
		return rc;
	EVP_PKEY *pkey = pem_parse(text, len);
	OPENSSL_cleanse(text, len);
	free(text);
	if (pkey == NULL || dkim_key_alg(pkey, alg) != RC_OK) {
		EVP_PKEY_free(pkey);
		return RC_INVALID;
	}
	*out = pkey;
	return RC_OK;
}

/* Base64 of n bytes, in a new string. */
static char *b64(const unsigned char *p, size_t n)
{
	char *s = xmalloc(4 * ((n + 2) / 3) + 1);
	b64_encode(p, n, s);
	return s;
}

/* The p= value: SubjectPublicKeyInfo DER (rsa) or the raw key (ed25519). */
static char *pub_b64(EVP_PKEY *pkey, enum dkim_alg alg)
{
	if (alg == DKIM_ALG_ED25519_SHA256) {
		unsigned char raw[32];
		size_t rlen = sizeof raw;
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &rlen) != 1 || rlen != sizeof raw)
			return NULL;
		return b64(raw, rlen);
	}
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pkey, &der);
	if (n <= 0)
		return NULL;
	char *s = b64(der, (size_t)n);
	OPENSSL_free(der);
	return s;
}

/* dkim_key_txt - the TXT record value of the public key. */
enum rc dkim_key_txt(EVP_PKEY *pkey, char **out)
{
	enum dkim_alg alg;

	*out = NULL;
	if (dkim_key_alg(pkey, &alg) != RC_OK)
		return RC_INVALID;
	char *p = pub_b64(pkey, alg);
	if (p == NULL)
		return RC_INVALID;
	*out = xasprintf("v=DKIM1; k=%s; p=%s", alg == DKIM_ALG_RSA_SHA256 ? "rsa" : "ed25519", p);
	free(p);
	return RC_OK;
}

/* dkim_txt_split - a TXT value as quoted strings of at most 255 bytes each. */
char *dkim_txt_split(const char *txt)
{
	size_t len = strlen(txt);
	/* worst case: every byte escaped, plus quotes and a space per string */
	char *out = xmalloc(2 * len + 3 * (len / DKIM_TXT_STRING_MAX + 1) + 1);
	size_t o = 0, chunk = 0;

	out[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (chunk == DKIM_TXT_STRING_MAX) {
			memcpy(out + o, "\" \"", 3);
			o += 3;
			chunk = 0;
		}
		if (txt[i] == '"' || txt[i] == '\\')
			out[o++] = '\\';
		out[o++] = txt[i];
		chunk++;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
