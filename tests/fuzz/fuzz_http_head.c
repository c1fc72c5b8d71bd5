/*
 * fuzz_http_head.c - the API guard's head reader (http_head.c) over arbitrary
 * bytes: http_head_end must find the same end fed whole or a byte at a time,
 * never past the input, and http_head_parse must either read a complete head or
 * refuse it with a sentence, without reading outside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	const char *p = (const char *)data;
	size_t scanned = 0;
	size_t whole = http_head_end(p, size, &scanned);
	FUZZ_ASSERT(whole <= size);
	size_t got = 0;
	scanned = 0;
	for (size_t k = 1; k <= size && got == 0; k++)
		got = http_head_end(p, k, &scanned);
	FUZZ_ASSERT(got == whole);
	if (whole == 0)
		return 0;
	char *copy = malloc(whole); /* exactly the head: ASan sees any overread */
	FUZZ_ASSERT(copy != NULL);
	memcpy(copy, p, whole);
	struct http_head hd;
	enum rc rc = http_head_parse(copy, whole, &hd);
	FUZZ_ASSERT(rc == RC_OK || (rc == RC_PROTO && hd.error != NULL));
	FUZZ_ASSERT(strlen(hd.auth) < sizeof hd.auth);
	free(copy);
	return 0;
}
