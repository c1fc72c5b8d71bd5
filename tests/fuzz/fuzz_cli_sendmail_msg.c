/*
 * fuzz_cli_sendmail_msg.c - the message parser of `relevo sendmail`
 * (sm_msg_parse over arbitrary bytes, not NUL-terminated, with and without -i),
 * what it renders for DATA, Bcc removal, and the address-list parser over every
 * field value and over the raw input (as a command-line argument).
 * Asserts: every rendered line ends in CRLF; the only line that is a lone "."
 * is the last one (dot-stuffing); un-stuffed, the rendering is the fields, an
 * empty line and the body; BODY=8BITMIME is flagged exactly when an 8-bit byte
 * is sent (as parsed); no Bcc field survives sm_msg_drop; parsing is deterministic.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_sendmail.h"
#include "fuzz.h"

/* An address handed to the callback: non-empty, refused when it has no '@'. */
static bool check_addr(void *arg, const char *addr)
{
	size_t max = *(size_t *)arg;
	size_t n = strlen(addr);
	FUZZ_ASSERT(n > 0 && n <= max);
	return strchr(addr, '@') != NULL;
}

static void check_addr_list(const char *s)
{
	size_t max = strlen(s);
	int bad = sm_addr_list(s, check_addr, &max);
	FUZZ_ASSERT(bad >= 0 && (size_t)bad <= max);
}

/* check_render - the DATA text of m: CRLF lines, stuffed, ".\r\n" last. As
 * parsed (exact), the 8-bit flag matches the bytes; after fields were dropped it
 * may be left set (declaring 8BITMIME for 7-bit text is harmless). */
static void check_render(const struct sm_msg *m, bool exact)
{
	size_t len, o = 0;
	char *out = sm_msg_render(m, &len);
	bool eight = false;
	FUZZ_ASSERT(len >= 5 && memcmp(out + len - 3, ".\r\n", 3) == 0);
	FUZZ_ASSERT(memmem(out, len, "\r\n.\r\n", 5) == out + len - 5);
	for (size_t i = 0; i < len; i++) {
		FUZZ_ASSERT(out[i] != '\n' || (i > 0 && out[i - 1] == '\r'));
		eight |= (unsigned char)out[i] >= 0x80;
	}
	FUZZ_ASSERT(exact ? eight == m->eight_bit : !eight || m->eight_bit);

	/* un-stuffed (a leading '.' dropped from each line, the final ".\r\n" too) */
	char *plain = malloc(len);
	for (size_t pos = 0; pos < len - 3;) {
		const char *nl = memchr(out + pos, '\n', len - pos);
		size_t end = (size_t)(nl - out) + 1;
		if (out[pos] == '.')
			pos++;
		memcpy(plain + o, out + pos, end - pos);
		o += end - pos;
		pos = end;
	}
	size_t k = 0;
	for (size_t i = 0; i < m->nfields; i++) {
		FUZZ_ASSERT(k + m->fields[i].len <= o);
		FUZZ_ASSERT(memcmp(plain + k, m->fields[i].text, m->fields[i].len) == 0);
		k += m->fields[i].len;
	}
	FUZZ_ASSERT(k + 2 + m->bodylen == o && memcmp(plain + k, "\r\n", 2) == 0);
	FUZZ_ASSERT(memcmp(plain + k + 2, m->body, m->bodylen) == 0);
	free(plain);
	free(out);
}

static void check_fields(struct sm_msg *m)
{
	size_t bcc = 0;
	for (size_t i = 0; i < m->nfields; i++) {
		const struct sm_field *f = &m->fields[i];
		FUZZ_ASSERT(f->len >= 4 && strlen(f->text) <= f->len);
		FUZZ_ASSERT(memcmp(f->text + f->len - 2, "\r\n", 2) == 0);
		char *v = sm_field_value(f);
		FUZZ_ASSERT(strstr(v, "\r\n") == NULL);
		check_addr_list(v);
		free(v);
		bcc += sm_field_is(f, "Bcc");
	}
	size_t before = m->nfields;
	sm_msg_drop(m, "Bcc");
	FUZZ_ASSERT(m->nfields == before - bcc);
	for (size_t i = 0; i < m->nfields; i++)
		FUZZ_ASSERT(!sm_field_is(&m->fields[i], "Bcc"));
	sm_msg_prepend(m, "From: <fuzz@example.com>");
	FUZZ_ASSERT(sm_field_is(&m->fields[0], "from"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy, so that ASan sees any read past the end */
	char *in = malloc(size ? size : 1);
	if (size > 0)
		memcpy(in, data, size);
	for (int ignore_dots = 0; ignore_dots <= 1; ignore_dots++) {
		struct sm_msg a = {0}, b = {0};
		size_t alen, blen;
		sm_msg_parse(&a, in, size, ignore_dots);
		sm_msg_parse(&b, in, size, ignore_dots);
		char *ra = sm_msg_render(&a, &alen), *rb = sm_msg_render(&b, &blen);
		FUZZ_ASSERT(alen == blen && memcmp(ra, rb, alen) == 0);
		free(ra);
		free(rb);
		check_render(&a, true);
		check_fields(&a);
		check_render(&a, false);
		sm_msg_free(&a);
		sm_msg_free(&b);
		sm_msg_free(&a);
	}
	char *s = malloc(size + 1);
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	check_addr_list(s);
	free(s);
	free(in);
	return 0;
}
