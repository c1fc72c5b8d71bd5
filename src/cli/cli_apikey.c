/*
 * cli_apikey.c - `relevo apikey create|list|revoke`: the HTTP API's keys.
 *
 *   relevo apikey create USER [--name NAME]   prints the new key (once) on stdout
 *   relevo apikey list [USER]                  id, user, name, created, last used
 *   relevo apikey revoke ID                    the key stops working at once
 *
 * Only the key's id and SHA-256 are stored (policy_apikey_create), so a lost key
 * cannot be shown again: revoke it and create another.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

static void cli_apikey_usage(FILE *out)
{
	fprintf(out, "usage: relevo apikey create USER [--name NAME] [-c FILE]\n"
		     "       relevo apikey list [USER] [-c FILE]\n"
		     "       relevo apikey revoke ID [-c FILE]\n");
}

/* cli_apikey_time - ISO 8601 UTC, or "never". */
static void cli_apikey_time(int64_t ms, char *out, size_t n)
{
	if (ms == 0)
		str_lcpy(out, "never", n);
	else
		cli_time_utc(ms / 1000, out, n);
}

static bool cli_apikey_print(void *arg, const struct store_apikey *k)
{
	char created[32], used[32];
	cli_apikey_time(k->created, created, sizeof created);
	cli_apikey_time(k->last_used, used, sizeof used);
	printf("%-16s  %-20s  %-20s  %-20s  %s\n", k->id, k->user, k->name[0] ? k->name : "-",
	       created, used);
	return true;
}

static int cli_apikey_create(struct store *st, int argc, char **argv)
{
	const char *user = NULL, *name = "";
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strncmp(argv[i], "--name=", 7) == 0)
			name = argv[i] + 7;
		else if (user == NULL && argv[i][0] != '-')
			user = argv[i];
		else
			return cli_apikey_usage(stderr), 2;
	}
	if (user == NULL)
		return cli_apikey_usage(stderr), 2;
	if (strlen(name) > 200 || strpbrk(name, "\r\n\t") != NULL) {
		fprintf(stderr, "relevo: --name must be one line of at most 200 characters\n");
		return 2;
	}
	char *key = NULL, *id = NULL;
	enum rc rc = policy_apikey_create(st, user, name, &key, &id);
	if (rc == RC_NOTFOUND) {
		fprintf(stderr, "relevo: no such user '%s'\n", user);
		return 1;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot create the key (%s)\n", rc_name(rc));
		return 1;
	}
	printf("%s\n", key);
	fprintf(stderr, "relevo: API key %s created for %s; it is shown only this once\n", id,
		user);
	free(key);
	free(id);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int cli_apikey_list(struct store *st, int argc, char **argv)
{
	if (argc > 3)
		return cli_apikey_usage(stderr), 2;
	printf("%-16s  %-20s  %-20s  %-20s  %s\n", "ID", "USER", "NAME", "CREATED", "LAST USED");
	if (store_apikey_list(st, argc == 3 ? argv[2] : NULL, cli_apikey_print, NULL) != RC_OK) {
		fprintf(stderr, "relevo: cannot list the keys\n");
		return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static int cli_apikey_revoke(struct store *st, int argc, char **argv)
{
	if (argc != 3)
		return cli_apikey_usage(stderr), 2;
	enum rc rc = store_apikey_del(st, argv[2]);
	if (rc == RC_NOTFOUND) {
		fprintf(stderr, "relevo: no API key with id '%s'\n", argv[2]);
		return 1;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot revoke the key (%s)\n", rc_name(rc));
		return 1;
	}
	printf("relevo: API key %s revoked\n", argv[2]);
	return 0;
}

/* cli_apikey - `relevo apikey create|list|revoke ...` (argv[0] is "apikey"). */
int cli_apikey(int argc, char **argv, const char *conf_path)
{
	static const struct {
		const char *verb;
		int (*fn)(struct store *st, int argc, char **argv);
	} cmds[] = {
		{"create", cli_apikey_create},
		{"list", cli_apikey_list},
		{"revoke", cli_apikey_revoke},
	};
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		cli_apikey_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	size_t i = 0;
	while (i < ARRAY_LEN(cmds) && strcmp(argv[1], cmds[i].verb) != 0)
		i++;
	if (i == ARRAY_LEN(cmds)) {
		fprintf(stderr, "relevo: apikey: unknown subcommand '%s'\n", argv[1]);
		cli_apikey_usage(stderr);
		return 2;
	}
	log_set_level(LOG_LV_WARN);
	struct store *st = cli_store_for(conf_path);
	if (st == NULL)
		return 1;
	int status = cmds[i].fn(st, argc, argv);
	store_close(st);
	return status;
}
