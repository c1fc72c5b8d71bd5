/*
 * cli_check_config.c - `relevo check-config [-c FILE]`: load and validate the
 * configuration without starting anything.
 *
 * Exit 0 and "relevo: FILE: configuration is valid" on stdout, or exit 1 with
 * every error on stderr (cli_load_conf prints them); 2 on a usage error.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "conf/conf.h"

/* cli_check_config - validate conf_path and say whether it is valid. */
int cli_check_config(int argc, char **argv, const char *conf_path)
{
	if (argc > 1) {
		fprintf(stderr,
		        "relevo: check-config takes no arguments (got '%s')\n"
		        "usage: relevo check-config [-c FILE]\n",
		        argv[1]);
		return 2;
	}
	struct conf *c = cli_load_conf_full(conf_path);
	if (c == NULL)
		return 1;
	conf_free(c);
	printf("relevo: %s: configuration is valid\n", conf_path);
	return fflush(stdout) == 0 ? 0 : 1;
}
