/*
 * fuzz_smtp_data.c - the DATA reader and the content checker. The input is fed
 * whole, byte by byte and in pseudo-random pieces (sizes drawn from the input's
 * first bytes); all must give the same content, the same end of data and the
 * same consumed count, and agree with a plain line-based reference of the
 * rules. The content is then run through the checker (whole and in pieces: same
 * verdict, same header copy), and re-stuffed and re-read: the round trip the
 * outbound client depends on must give the content back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"
#include "../unit/ref_data_reader.h"


struct result {
	enum rc rc;
	size_t consumed;
	size_t len;
	char *content;
};

/* piece sizes: 0 = whole, 1 = byte by byte, otherwise from the seed */
static struct result read_data(const char *in, size_t len, int mode, uint32_t seed)
{
	struct smtp_data_reader r;
	struct evbuffer *out = evbuffer_new();
	struct result res = {RC_AGAIN, 0, 0, NULL};
	size_t off = 0;

	smtp_data_init(&r);
	while (off < len) {
		size_t n = len - off;
		if (mode == 1) {
			n = 1;
		} else if (mode == 2) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 17;
			if (n > len - off)
				n = len - off;
		}
		size_t consumed = 0;
		res.rc = smtp_data_feed(&r, in + off, n, &consumed, out);
		FUZZ_ASSERT(consumed <= n);
		off += consumed;
		if (res.rc == RC_OK)
			break;
		FUZZ_ASSERT(res.rc == RC_AGAIN && consumed == n);
	}
	res.consumed = off;
	res.len = evbuffer_get_length(out);
	res.content = malloc(res.len + 1);
	evbuffer_remove(out, res.content, res.len);
	evbuffer_free(out);
	return res;
}

/* The rules written the obvious way (see tests/unit/ref_data_reader.h). */
static struct result reference(const char *in, size_t len)
{
	struct result res = {RC_AGAIN, 0, 0, malloc(len + 1)};
	res.rc = ref_data_read(in, len, res.content, &res.len, &res.consumed);
	return res;
}

static void same(const struct result *a, const struct result *b)
{
	FUZZ_ASSERT(a->rc == b->rc);
	FUZZ_ASSERT(a->consumed == b->consumed);
	FUZZ_ASSERT(a->len == b->len);
	FUZZ_ASSERT(memcmp(a->content, b->content, a->len) == 0);
}

struct verdict {
	enum rc rc;
	int code;
	struct smtp_msg_check c;
	size_t hlen;
	char *headers;
};

static struct verdict check(const char *in, size_t len, uint64_t max, uint32_t seed)
{
	struct verdict v;
	struct smtp_reply err = {0};
	size_t off = 0;
	smtp_msg_check_init(&v.c, max);
	while (off < len) {
		size_t n = len - off;
		if (seed != 0) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 13;
			if (n > len - off)
				n = len - off;
		}
		smtp_msg_check_feed(&v.c, in + off, n);
		off += n;
	}
	v.rc = smtp_msg_check_done(&v.c, &err);
	v.code = err.code;
	if (v.rc != RC_OK)
		FUZZ_ASSERT(err.code == 550 || err.code == 552);
	v.hlen = evbuffer_get_length(v.c.headers);
	FUZZ_ASSERT(v.hlen <= SMTP_HEADER_MAX && v.hlen <= len);
	v.headers = malloc(v.hlen + 1);
	evbuffer_remove(v.c.headers, v.headers, v.hlen);
	FUZZ_ASSERT(memcmp(v.headers, in, v.hlen) == 0);	/* a prefix of the message */
	smtp_msg_check_fini(&v.c);
	FUZZ_ASSERT(v.c.size == len);
	return v;
}

/* Dot-stuff content (lines end at CRLF only) and add the end marker. */
static char *stuff(const char *c, size_t len, size_t *outlen)
{
	char *o = malloc(2 * len + 4);
	size_t n = 0;
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && c[i] == '.')
			o[n++] = '.';
		o[n++] = c[i];
		bol = c[i] == '\n' && i > 0 && c[i - 1] == '\r';
	}
	memcpy(o + n, ".\r\n", 3);
	*outlen = n + 3;
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	uint32_t seed = 0x9e3779b9u;
	for (size_t i = 0; i < size && i < 4; i++)
		seed = seed * 31 + data[i];

	struct result whole = read_data(in, size, 0, 0);
	struct result bytes = read_data(in, size, 1, 0);
	struct result pieces = read_data(in, size, 2, seed);
	struct result ref = reference(in, size);
	same(&whole, &bytes);
	same(&whole, &pieces);
	same(&whole, &ref);

	if (whole.rc == RC_OK) {
		/* content ends with the last line's CRLF (or is empty) */
		FUZZ_ASSERT(whole.len == 0 || (whole.len >= 2 && whole.content[whole.len - 2] == '\r' &&
					       whole.content[whole.len - 1] == '\n'));
		size_t slen;
		char *st = stuff(whole.content, whole.len, &slen);
		struct result again = read_data(st, slen, 2, seed);
		FUZZ_ASSERT(again.rc == RC_OK && again.consumed == slen);
		FUZZ_ASSERT(again.len == whole.len && memcmp(again.content, whole.content, whole.len) == 0);
		free(again.content);
		free(st);
	}

	uint64_t max = size > 0 ? data[0] * 4u : 0;
	struct verdict v1 = check(whole.content, whole.len, max, 0);
	struct verdict v2 = check(whole.content, whole.len, max, seed | 1);
	FUZZ_ASSERT(v1.rc == v2.rc && v1.code == v2.code);
	FUZZ_ASSERT(v1.c.bare_crlf == v2.c.bare_crlf && v1.c.nul == v2.c.nul);
	FUZZ_ASSERT(v1.c.long_line == v2.c.long_line && v1.c.too_big == v2.c.too_big);
	FUZZ_ASSERT(v1.c.eight_bit == v2.c.eight_bit);
	FUZZ_ASSERT(v1.hlen == v2.hlen && memcmp(v1.headers, v2.headers, v1.hlen) == 0);
	/* a clean verdict means: no NUL, and every CR and LF is part of a CRLF */
	if (v1.rc == RC_OK) {
		for (size_t i = 0; i < whole.len; i++) {
			FUZZ_ASSERT(whole.content[i] != '\0');
			if (whole.content[i] == '\r')
				FUZZ_ASSERT(i + 1 < whole.len && whole.content[i + 1] == '\n');
			if (whole.content[i] == '\n')
				FUZZ_ASSERT(i > 0 && whole.content[i - 1] == '\r');
		}
	}
	/* and the header copy scans without trouble */
	struct smtp_hdr_info info;
	smtp_hdr_scan(v1.headers, v1.hlen, &info);

	free(v1.headers);
	free(v2.headers);
	free(whole.content);
	free(bytes.content);
	free(pieces.content);
	free(ref.content);
	return 0;
}
