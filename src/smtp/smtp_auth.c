/*
 * smtp_auth.c - AUTH decoding: strict base64 (RFC 4648 4, as RFC 4954 4 requires)
 * and the PLAIN message (RFC 4616 2).
 *
 * Invariants: base64 is accepted in exactly one spelling per value (padding
 * required, no whitespace, "=" only at the end, unused bits zero), so that two
 * different strings never carry the same credentials past a log or a rate
 * limiter. Output is bounded by the caller's buffer, checked before writing.
 * Nothing here logs: the decoded bytes hold a password.
 *
 * No allocation, no I/O.
 */
#include <string.h>

#include "smtp/smtp.h"

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* smtp_b64_decode - decode strict base64 in[0..len) into out[0..outsz). */
enum rc smtp_b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz,
			size_t *outlen)
{
	size_t pad = 0, n, o = 0;

	*outlen = 0;
	if (len % 4 != 0)
		return RC_INVALID;
	if (len > 0 && in[len - 1] == '=')
		pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
	n = len / 4 * 3 - pad;
	if (n > outsz)
		return RC_LIMIT;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		size_t q = (i + 4 == len) ? 4 - pad : 4;	/* significant chars */
		for (size_t k = 0; k < 4; k++) {
			v[k] = k < q ? b64_val((unsigned char)in[i + k]) : 0;
			if (v[k] < 0)
				return RC_INVALID;	/* outside the alphabet, or "=" inside */
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		/* Non-zero bits under the padding: a second spelling (RFC 4648 3.5). */
		if ((q == 2 && (w & 0xffff)) || (q == 3 && (w & 0xff)))
			return RC_INVALID;
		out[o++] = (uint8_t)(w >> 16);
		if (q > 2)
			out[o++] = (uint8_t)(w >> 8);
		if (q > 3)
			out[o++] = (uint8_t)w;
	}
	*outlen = o;
	return RC_OK;
}

/* smtp_b64_encode - base64 of in[0..len) into out, NUL-terminated. */
void smtp_b64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			w |= in[i + 2];
		out[o++] = b64_alphabet[w >> 18 & 63];
		out[o++] = b64_alphabet[w >> 12 & 63];
		out[o++] = i + 1 < len ? b64_alphabet[w >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[w & 63] : '=';
	}
	out[o] = '\0';
}

/* An identity must be well-formed UTF-8 without control characters: it goes to
 * the store as a key and to the log as a value. */
static bool id_ok(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = smtp_utf8_char((const char *)s + i, len - i, &cp);
		if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return false;
		i += n;
	}
	return true;
}

/* smtp_auth_plain_decode - split and check "authzid NUL authcid NUL passwd". */
enum rc smtp_auth_plain_decode(const uint8_t *buf, size_t len,
			       char user[SMTP_AUTH_USER_MAX + 1],
			       char pass[SMTP_AUTH_PASS_MAX + 1])
{
	const uint8_t *nul1, *nul2;
	size_t zlen, clen, plen;

	user[0] = '\0';
	pass[0] = '\0';
	if (len == 0)
		return RC_INVALID;
	nul1 = memchr(buf, 0, len);
	if (nul1 == NULL)
		return RC_INVALID;
	zlen = (size_t)(nul1 - buf);
	nul2 = memchr(nul1 + 1, 0, len - zlen - 1);
	if (nul2 == NULL)
		return RC_INVALID;
	clen = (size_t)(nul2 - nul1 - 1);
	plen = len - zlen - clen - 2;
	if (memchr(nul2 + 1, 0, plen) != NULL)
		return RC_INVALID;	/* a third NUL */
	if (clen == 0 || plen == 0)
		return RC_INVALID;
	if (clen > SMTP_AUTH_USER_MAX || plen > SMTP_AUTH_PASS_MAX)
		return RC_LIMIT;
	if (!id_ok(nul1 + 1, clen))
		return RC_INVALID;
	/* RFC 4616 2: acting as another identity is an authorization decision;
	 * relevo never grants it. */
	if (zlen != 0 && (zlen != clen || memcmp(buf, nul1 + 1, clen) != 0))
		return RC_PERMFAIL;
	memcpy(user, nul1 + 1, clen);
	user[clen] = '\0';
	memcpy(pass, nul2 + 1, plen);
	pass[plen] = '\0';
	return RC_OK;
}
