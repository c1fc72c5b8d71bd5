/*
 * fuzz_smtp_auth.c - strict base64 and AUTH PLAIN. Asserts canonical base64:
 * whatever decodes re-encodes to exactly the input (one spelling per value);
 * output is bounded by outsz; PLAIN results are NUL-terminated, bounded, and
 * rebuild the input when the authorization identity is empty.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"


static void plain(const uint8_t *buf, size_t len)
{
	char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
	enum rc rc = smtp_auth_plain_decode(buf, len, user, pass);
	if (rc != RC_OK) {
		FUZZ_ASSERT(rc == RC_INVALID || rc == RC_LIMIT || rc == RC_PERMFAIL);
		FUZZ_ASSERT(user[0] == '\0' && pass[0] == '\0');
		return;
	}
	size_t ul = strnlen(user, sizeof user), pl = strnlen(pass, sizeof pass);
	FUZZ_ASSERT(ul > 0 && ul <= SMTP_AUTH_USER_MAX);
	FUZZ_ASSERT(pl > 0 && pl <= SMTP_AUTH_PASS_MAX);
	for (size_t i = 0; i < ul; i++)
		FUZZ_ASSERT((unsigned char)user[i] >= 0x20 && user[i] != 0x7f);
	/* the input was "[user] NUL user NUL pass" */
	FUZZ_ASSERT(len == ul + pl + 2 || len == 2 * ul + pl + 2);
	FUZZ_ASSERT(memcmp(buf + len - pl, pass, pl) == 0);
	FUZZ_ASSERT(memcmp(buf + len - pl - 1 - ul, user, ul) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t cap = size / 4 * 3 + 3;
	uint8_t *out = malloc(cap);
	size_t outlen = 0;

	enum rc rc = b64_decode(in, size, out, cap, &outlen);
	if (rc == RC_OK) {
		FUZZ_ASSERT(outlen <= cap);
		char *enc = malloc(4 * ((outlen + 2) / 3) + 1);
		b64_encode(out, outlen, enc);
		FUZZ_ASSERT(strlen(enc) == size && memcmp(enc, in, size) == 0);
		free(enc);
		/* a buffer one byte short is refused without writing past it */
		if (outlen > 0) {
			uint8_t *tight = malloc(outlen - 1 ? outlen - 1 : 1);
			size_t n2;
			FUZZ_ASSERT(b64_decode(in, size, tight, outlen - 1, &n2) == RC_LIMIT);
			free(tight);
		}
		plain(out, outlen);
	} else {
		FUZZ_ASSERT(rc == RC_INVALID);
		FUZZ_ASSERT(outlen == 0);
	}

	/* PLAIN over the raw bytes, and encode/decode round trip of them */
	plain(data, size);
	char *enc = malloc(4 * ((size + 2) / 3) + 1);
	b64_encode(data, size, enc);
	uint8_t *back = malloc(size ? size : 1);
	size_t blen;
	FUZZ_ASSERT(b64_decode(enc, strlen(enc), back, size, &blen) == RC_OK);
	FUZZ_ASSERT(blen == size && memcmp(back, data, size) == 0);
	free(back);
	free(enc);
	free(out);
	return 0;
}
