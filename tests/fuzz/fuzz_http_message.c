/*
 * fuzz_http_message.c - http_mime_build over arbitrary bytes (the JSON body of
 * POST /v1/messages). On success the message must be safe to queue as is:
 * CRLF line ends only (no bare CR or LF), no NUL, 7-bit, no line over 998
 * octets, a header section ended by an empty line, no Bcc field, an envelope of
 * 1..max_recipients valid addresses, and at most max_size bytes. On failure an
 * error code and a message are set and nothing is left allocated (ASan checks).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http/http.h"
#include "fuzz.h"

static void check_message(const char *s, size_t n)
{
	size_t col = 0;
	FUZZ_ASSERT(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_ASSERT(c != 0 && c < 0x80);
		if (c == '\r') {
			FUZZ_ASSERT(i + 1 < n && s[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		FUZZ_ASSERT(c != '\n');
		FUZZ_ASSERT(++col <= HTTP_MIME_LINE_MAX);
	}
	/* the header section: field lines or continuations, then an empty line */
	const char *end = NULL;
	for (size_t i = 0; i + 3 < n; i++)
		if (memcmp(s + i, "\r\n\r\n", 4) == 0) {
			end = s + i;
			break;
		}
	FUZZ_ASSERT(end != NULL);
	for (const char *p = s; p <= end; p = strstr(p, "\r\n") + 2) {
		if (*p == ' ' || *p == '\t') {
			FUZZ_ASSERT(p != s);
			continue;
		}
		size_t name = strcspn(p, ":\r");
		FUZZ_ASSERT(name > 0 && p[name] == ':');
		FUZZ_ASSERT(strncasecmp(p, "Bcc:", 4) != 0);
		if (p == end)
			break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_mime_opts o = {
		.hostname = "relay.test",
		.id = 0x0123456789ABCDEFULL,
		.time = 1795698339,
		.max_recipients = 10,
		.max_size = 1 << 20,
	};
	struct http_mime_msg m;
	char err[256];
	/* an exact-size copy, so that ASan sees any read past the end */
	char *json = malloc(size ? size : 1);
	if (size > 0)
		memcpy(json, data, size);
	enum rc rc = http_mime_build(json, size, &o, &m, err, sizeof err);
	if (rc == RC_OK) {
		size_t n = evbuffer_get_length(m.msg);
		FUZZ_ASSERT(n <= o.max_size);
		check_message((const char *)evbuffer_pullup(m.msg, -1), n);
		FUZZ_ASSERT(m.nrcpt >= 1 && m.nrcpt <= o.max_recipients);
		for (size_t i = 0; i < m.nrcpt; i++)
			FUZZ_ASSERT(http_addr_valid(m.rcpt[i]));
		FUZZ_ASSERT(http_addr_valid(m.from) && m.error == NULL);
		http_mime_msg_fini(&m);
	} else {
		FUZZ_ASSERT(rc == RC_INVALID || rc == RC_LIMIT);
		FUZZ_ASSERT(m.error != NULL && err[0] != '\0');
		FUZZ_ASSERT(m.msg == NULL && m.rcpt == NULL && m.from == NULL);
	}
	free(json);
	return 0;
}
