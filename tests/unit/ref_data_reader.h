/*
 * ref_data_reader.h - the DATA reader's rules written the obvious way, over the
 * whole input at once: the reference that tests/unit/test_smtp_data.c and
 * tests/fuzz/fuzz_smtp_data.c hold smtp_data_feed against, however the input
 * is split. No I/O, no allocation: the caller owns the content buffer.
 */
#ifndef RELEVO_REF_DATA_READER_H
#define RELEVO_REF_DATA_READER_H

#include <stddef.h>
#include <string.h>

#include "core/core.h"

/*
 * ref_data_read - read in[0..len): lines end only at CRLF; at the start of a
 * line ".CRLF" ends the data and a leading "." is dropped. The unstuffed content
 * goes to content (room for len + 1 octets, NUL-terminated), its length to
 * *clen, the octets used to *consumed. RC_OK at the end of data, else RC_AGAIN
 * (and all of in is consumed).
 */
static inline enum rc ref_data_read(const char *in, size_t len, char *content, size_t *clen,
				    size_t *consumed)
{
	enum rc rc = RC_AGAIN;
	size_t pos = 0;

	*clen = 0;
	*consumed = len;
	while (pos < len) {
		if (len - pos >= 3 && memcmp(in + pos, ".\r\n", 3) == 0) {
			rc = RC_OK;
			*consumed = pos + 3;
			break;
		}
		if (in[pos] == '.') {
			pos++;
			/* ".CR" at the end of input: the CR may yet be the end marker's */
			if (pos + 1 == len && in[pos] == '\r')
				break;
		}
		size_t e = pos;
		while (e + 1 < len && !(in[e] == '\r' && in[e + 1] == '\n'))
			e++;
		size_t end = (e + 1 < len) ? e + 2 : len;
		memcpy(content + *clen, in + pos, end - pos);
		*clen += end - pos;
		pos = end;
	}
	content[*clen] = '\0';
	return rc;
}

#endif
