/*
 * core_text.c - text helpers every module shares: base64 (RFC 4648), UTF-8
 * (RFC 3629) and host and domain name syntax (RFC 1035, RFC 1123, RFC 5321).
 * Pure: no allocation, no I/O, no global state; callable from any thread.
 * One copy each: a module that needs one of these calls it rather than
 * writing its own (issue 13).
 */
#include "core/core.h"

#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_value - the 6-bit value of base64 character c, -1 if c is not one. */
int b64_value(unsigned char c)
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

/* b64_decode - decode strict base64 in[0..len) into out[0..outsz). */
enum rc b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz, size_t *outlen)
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
			v[k] = k < q ? b64_value((unsigned char)in[i + k]) : 0;
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

/* b64_encode - base64 of in[0..len) into out, NUL-terminated. */
size_t b64_encode(const uint8_t *in, size_t len, char *out)
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
	return o;
}

/* utf8_char - length of the well-formed UTF-8 character at s, 0 if none. */
size_t utf8_char(const char *s, size_t len, uint32_t *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t c, min;
	size_t n;

	if (len == 0)
		return 0;
	c = u[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;	/* continuation byte, 0xc0/0xc1 (overlong), 0xf5.. */
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (u[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;	/* overlong, beyond Unicode, surrogate */
	*cp = c;
	return n;
}

/* utf8_cut - len, backed up so that s[0..len) does not end inside a sequence. */
size_t utf8_cut(const char *s, size_t len)
{
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
		len--;
	return len;
}

static bool text_is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/* str_is_hostname - dot-separated LDH labels (see core.h). */
bool str_is_hostname(const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1), label = 0;
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.' || ch == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (text_is_ldh(ch) && (ch != '-' || label > 0)) {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

/* str_has_numeric_tld - is the last label of s all digits? */
bool str_has_numeric_tld(const char *s)
{
	const char *dot = strrchr(s, '.');
	const char *tld = dot ? dot + 1 : s;
	return strspn(tld, "0123456789") == strlen(tld);
}

/* str_is_domain - a domain mail can be addressed to (see core.h). */
bool str_is_domain(const char *s)
{
	return s != NULL && str_is_hostname(s, STR_DOMAIN_MAX) && strchr(s, '.') != NULL &&
	       !str_has_numeric_tld(s);
}
