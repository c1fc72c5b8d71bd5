/*
 * fuzz_smtp_hdr.c - the header scan over arbitrary bytes (not NUL-terminated:
 * smtp_hdr_scan must stay inside hdrs[0..len)). Asserts the result is
 * self-consistent: bounded address count, NUL-terminated lower-case domains,
 * flags matching the counters, and the same result on a second scan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_hdr_info a, b;
	/* an exact-size copy, so that ASan sees any read past the end */
	char *h = malloc(size ? size : 1);
	if (size > 0)
		memcpy(h, data, size);

	smtp_hdr_scan(h, size, &a);
	FUZZ_ASSERT(a.nfrom <= SMTP_HDR_FROM_MAX);
	FUZZ_ASSERT(a.has_from == (a.from_fields > 0));
	FUZZ_ASSERT(a.has_date == (a.date_fields > 0));
	FUZZ_ASSERT(a.has_message_id == (a.message_id_fields > 0));
	FUZZ_ASSERT(a.header_count >= (size_t)a.from_fields + a.date_fields + a.message_id_fields);
	FUZZ_ASSERT(a.nfrom == 0 || a.has_from);
	FUZZ_ASSERT(!a.from_malformed || a.has_from);
	for (size_t i = 0; i < a.nfrom; i++) {
		size_t n = strnlen(a.from_domain[i], SMTP_DOMAIN_MAX + 1);
		FUZZ_ASSERT(n > 0 && n <= SMTP_DOMAIN_MAX);
		if (a.from_domain[i][0] != '[') {
			for (size_t k = 0; k < n; k++) {
				char c = a.from_domain[i][k];
				FUZZ_ASSERT(!(c >= 'A' && c <= 'Z'));
				FUZZ_ASSERT(c != ' ' && c != '\r' && c != '\n' && c != '(' && c != '<');
			}
		}
	}

	smtp_hdr_scan(h, size, &b);
	FUZZ_ASSERT(memcmp(&a, &b, sizeof a) == 0);	/* no hidden state */
	free(h);
	return 0;
}
