/*
 * fuzz_smtp_addr.c - paths, MAIL/RCPT parameters and xtext. The input (made a
 * C string on the heap, as the server's line buffer is) goes through
 * smtp_path_parse with every flag combination, smtp_mail_parse and
 * smtp_rcpt_parse; the raw bytes through smtp_xtext_decode and utf8_char.
 * Asserts: accepted addresses respect the RFC 5321 limits and hold no control
 * characters (nor 8-bit octets without SMTPUTF8), decoded xtext holds no control
 * character, allowing UTF-8 never turns an accepted path into a refused one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"


static void check_text(const char *s, bool allow_8bit)
{
	for (; *s; s++) {
		unsigned char u = (unsigned char)*s;
		FUZZ_ASSERT(u >= 0x20 && u != 0x7f);
		FUZZ_ASSERT(allow_8bit || u < 0x80);
	}
}

static void check_path(const struct smtp_path *p, bool utf8_ok)
{
	FUZZ_ASSERT(strlen(p->local) <= SMTP_LOCAL_MAX);
	FUZZ_ASSERT(strlen(p->domain) <= SMTP_DOMAIN_MAX);
	FUZZ_ASSERT(strlen(p->addr) + 2 <= SMTP_PATH_MAX);
	FUZZ_ASSERT(p->is_null == (p->addr[0] == '\0'));
	check_text(p->addr, utf8_ok);
	if (!p->is_null && p->domain[0] != '\0') {
		size_t l = strlen(p->local);
		FUZZ_ASSERT(strncmp(p->addr, p->local, l) == 0 && p->addr[l] == '@');
		FUZZ_ASSERT(strcmp(p->addr + l + 1, p->domain) == 0);
	}
	if (!utf8_ok)
		FUZZ_ASSERT(!p->is_utf8);
}

static void check_err(const struct smtp_reply *e)
{
	FUZZ_ASSERT(e->code >= 500 && e->code <= 599);
	FUZZ_ASSERT(e->enh != NULL && e->text != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	size_t slen = strlen(s);

	struct smtp_path strict, lax;
	struct smtp_reply err;
	for (int fl = 0; fl < 8; fl++) {
		bool allow_null = fl & 1, is_sender = fl & 2;
		size_t c1 = 0, c2 = 0;
		enum rc r1 = smtp_path_parse(s, allow_null, false, is_sender, &c1, &strict, &err);
		if (r1 == RC_OK) {
			check_path(&strict, false);
			FUZZ_ASSERT(c1 >= 2 && c1 <= slen && s[0] == '<' && s[c1 - 1] == '>');
			FUZZ_ASSERT(allow_null || !strict.is_null);
		} else {
			check_err(&err);
		}
		enum rc r2 = smtp_path_parse(s, allow_null, true, is_sender, &c2, &lax, &err);
		if (r2 == RC_OK)
			check_path(&lax, true);
		else
			check_err(&err);
		if (r1 == RC_OK) {
			FUZZ_ASSERT(r2 == RC_OK && c1 == c2);
			FUZZ_ASSERT(strcmp(strict.addr, lax.addr) == 0);
		}
	}

	struct smtp_mail_params mp;
	if (smtp_mail_parse(s, &strict, &mp, &err) == RC_OK) {
		check_path(&strict, mp.smtputf8);
		check_text(mp.envid, false);
		FUZZ_ASSERT(strlen(mp.envid) <= SMTP_ENVID_MAX);
	} else {
		check_err(&err);
	}
	struct smtp_rcpt_params rp;
	for (int utf8 = 0; utf8 < 2; utf8++) {
		if (smtp_rcpt_parse(s, utf8, &strict, &rp, &err) == RC_OK) {
			check_path(&strict, utf8);
			FUZZ_ASSERT(!strict.is_null);
			check_text(rp.orcpt, utf8);
			FUZZ_ASSERT(strlen(rp.orcpt) <= SMTP_ORCPT_MAX);
			FUZZ_ASSERT(rp.orcpt[0] == '\0' || strncmp(rp.orcpt, "rfc822;", 7) == 0 ||
				    strncmp(rp.orcpt, "utf-8;", 6) == 0);
			FUZZ_ASSERT(!(rp.notify & 1) || rp.notify == 1);	/* NEVER alone */
		} else {
			check_err(&err);
		}
	}

	/* xtext over the raw bytes (not NUL-terminated), with a small and a big buffer */
	char small[8], big[512];
	const char *raw = (const char *)data;
	if (smtp_xtext_decode(raw, size, small, sizeof small) == RC_OK)
		check_text(small, true);
	enum rc xr = smtp_xtext_decode(raw, size, big, sizeof big);
	if (xr == RC_OK) {
		check_text(big, true);
		FUZZ_ASSERT(strlen(big) <= size);
	} else {
		FUZZ_ASSERT(big[0] == '\0');
	}

	for (size_t i = 0; i < size;) {
		uint32_t cp;
		size_t n = utf8_char(raw + i, size - i, &cp);
		FUZZ_ASSERT(n <= 4 && n <= size - i);
		if (n == 0) {
			i++;
			continue;
		}
		FUZZ_ASSERT(cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff));
		i += n;
	}
	free(s);
	return 0;
}
