/*
 * fuzz.h - shared by the fuzz targets: an assertion that survives NDEBUG and
 * tells libFuzzer (and the corpus replay) about a broken property by aborting.
 */
#ifndef RELEVO_FUZZ_H
#define RELEVO_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(x)                                                                     \
	do {                                                                               \
		if (!(x)) {                                                                \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
				#x);                                                       \
			abort();                                                           \
		}                                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#endif
