/*
 * fuzz_conf.c - libFuzzer target for the configuration loader: any bytes go
 * through conf_load_string, and whatever comes back (a conf or an error list)
 * is released. A crash, a sanitizer report or a leak is the finding.
 *
 * The loader calls access() on tls file names and reads the first line of a
 * delivery.routes auth_password_file that is a regular file; nothing is written.
 */
#include <stdint.h>
#include <stdlib.h>

#include "conf/conf.h"

/* LLVMFuzzerTestOneInput - load data as a configuration and free the result. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *c = NULL;
	char *errs = NULL;
	enum rc rc = conf_load_string((const char *)data, size, "fuzz.yaml", &c, &errs);
	if ((rc == RC_OK) != (c != NULL) || (rc == RC_OK) == (errs != NULL))
		abort();
	conf_free(c);
	free(errs);
	return 0;
}
