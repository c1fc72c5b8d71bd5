/*
 * cli_user.c - `relevo user add|list|del|passwd`: manage sending accounts.
 *
 *   relevo user add NAME --domain D [--domain D2 ...] [--sandbox]   password from stdin;
 *                                a domain not registered yet is (as `domain add`:
 *                                DKIM keys made, the records to publish printed),
 *                                unless --no-register
 *   relevo user sandbox NAME on|off
 *   relevo user list
 *   relevo user del NAME
 *   relevo user passwd NAME                             password from stdin
 *
 * The configuration is read for data_dir (and a domain's SPF advice); the store is opened directly
 * (SQLite with a busy timeout, so this works while the daemon runs).
 * Passwords come from the first line of standard input, are never printed or
 * logged, and are wiped from memory as soon as they are hashed.
 * Exit status: 0 success, 1 failure (unknown or existing user, invalid name or
 * domain, empty password, store error), 2 usage error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "policy/policy.h"
#include "store/store.h"

#define CLI_USER_MAX_DOMAINS 256

/* Parsed arguments of one `user` subcommand; strings point into argv except
 * domains[i], which are lower-cased copies owned here. */
struct cli_user_args {
	const char *name;
	char *domains[CLI_USER_MAX_DOMAINS];
	size_t ndomains;
	bool sandbox;		/* add --sandbox */
	bool no_register;	/* add --no-register: leave unknown domains alone */
	const char *value;	/* sandbox NAME on|off */
	const struct conf *conf;	/* loaded by cli_user_run */
};

struct cli_user_cmd {
	const char *verb;
	bool needs_name;
	bool takes_domains;
	bool takes_value;
	int (*run)(struct store *st, const struct cli_user_args *a);
};

static int cli_user_add(struct store *st, const struct cli_user_args *a);
static int cli_user_list(struct store *st, const struct cli_user_args *a);
static int cli_user_del(struct store *st, const struct cli_user_args *a);
static int cli_user_passwd(struct store *st, const struct cli_user_args *a);
static int cli_user_sandbox(struct store *st, const struct cli_user_args *a);

static const struct cli_user_cmd cli_user_cmds[] = {
    {"add", true, true, false, cli_user_add},
    {"list", false, false, false, cli_user_list},
    {"del", true, false, false, cli_user_del},
    {"passwd", true, false, false, cli_user_passwd},
    {"sandbox", true, false, true, cli_user_sandbox},
};

static void cli_user_usage(FILE *out)
{
	fprintf(out, "usage: relevo user add NAME --domain DOMAIN [--domain DOMAIN ...] [--sandbox] "
	             "[--no-register] [-c FILE]\n"
	             "       relevo user list [-c FILE]\n"
	             "       relevo user sandbox NAME on|off [-c FILE]\n"
	             "       relevo user del NAME [-c FILE]\n"
	             "       relevo user passwd NAME [-c FILE]\n"
	             "\n"
	             "add and passwd read the password from the first line of standard input:\n"
	             "  printf 'secret\\n' | relevo user add alice --domain example.com\n"
	             "add registers a DOMAIN that is not registered yet (as relevo domain add:\n"
	             "DKIM keys, and the records to publish printed); --no-register leaves it\n"
	             "alone (its mail gets 451 until relevo domain add).\n");
}

/* Print "relevo: user: <message>" and the usage; returns exit status 2. */
static int cli_user_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cli_user_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("relevo: user: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n", stderr);
	va_end(ap);
	cli_user_usage(stderr);
	return 2;
}

/* Explain a store result for user name to the operator; returns exit status 1. */
static int cli_user_fail(const char *name, enum rc rc)
{
	switch (rc) {
	case RC_EXISTS:
		fprintf(stderr, "relevo: user '%s' already exists\n", name);
		break;
	case RC_NOTFOUND:
		fprintf(stderr, "relevo: no such user '%s'\n", name);
		break;
	case RC_INVALID:
		fprintf(
		    stderr,
		    "relevo: invalid user name '%s' (1-64 characters of A-Z a-z 0-9 . _ @ + -)\n",
		    name);
		break;
	case RC_TEMPFAIL:
		fprintf(stderr, "relevo: the store is busy (locked by another process); "
		                "try again\n");
		break;
	default:
		fprintf(stderr, "relevo: store error (%s)\n", rc_name(rc));
		break;
	}
	return 1;
}

static void cli_user_args_fini(struct cli_user_args *a)
{
	for (size_t i = 0; i < a->ndomains; i++)
		free(a->domains[i]);
	a->ndomains = 0;
}

/* Add a lower-cased copy of d unless already there; 2 on too many. */
static int cli_user_push_domain(struct cli_user_args *a, const char *d)
{
	char *lower = xstrdup(d);
	str_lower(lower);
	for (size_t i = 0; i < a->ndomains; i++) {
		if (strcmp(a->domains[i], lower) == 0) {
			free(lower);
			return 0;
		}
	}
	if (a->ndomains >= CLI_USER_MAX_DOMAINS) {
		free(lower);
		return cli_user_usage_error("too many --domain options (at most %d)",
		                            CLI_USER_MAX_DOMAINS);
	}
	a->domains[a->ndomains++] = lower;
	return 0;
}

/* One argument after the verb; *i advances past an option's value. */
static int cli_user_parse_one(const struct cli_user_cmd *cmd, int argc, char **argv, int *i,
                              bool *opts_done, struct cli_user_args *a)
{
	const char *arg = argv[*i];
	if (!*opts_done && cmd->takes_domains && strcmp(arg, "--domain") == 0) {
		if (*i + 1 >= argc)
			return cli_user_usage_error("%s needs a domain", arg);
		return cli_user_push_domain(a, argv[++*i]);
	}
	if (!*opts_done && cmd->takes_domains && strncmp(arg, "--domain=", 9) == 0)
		return cli_user_push_domain(a, arg + 9);
	if (!*opts_done && cmd->takes_domains && strcmp(arg, "--sandbox") == 0) {
		a->sandbox = true;
		return 0;
	}
	if (!*opts_done && cmd->takes_domains && strcmp(arg, "--no-register") == 0) {
		a->no_register = true;
		return 0;
	}
	if (!*opts_done && strcmp(arg, "--") == 0) {
		*opts_done = true;
		return 0;
	}
	if (!*opts_done && arg[0] == '-' && arg[1] != '\0')
		return cli_user_usage_error("unknown option '%s'", arg);
	if (cmd->needs_name && a->name == NULL) {
		a->name = arg;
		return 0;
	}
	if (cmd->takes_value && a->value == NULL) {
		a->value = arg;
		return 0;
	}
	return cli_user_usage_error("unexpected argument '%s'", arg);
}

/* Parse argv[2..] for cmd: 0, or 2 after printing a usage error. */
static int cli_user_parse(const struct cli_user_cmd *cmd, int argc, char **argv,
                          struct cli_user_args *a)
{
	bool opts_done = false;
	for (int i = 2; i < argc; i++) {
		int status = cli_user_parse_one(cmd, argc, argv, &i, &opts_done, a);
		if (status != 0)
			return status;
	}
	if (cmd->needs_name && a->name == NULL)
		return cli_user_usage_error("%s needs a user NAME", cmd->verb);
	if (cmd->takes_domains && a->ndomains == 0)
		return cli_user_usage_error("%s needs at least one --domain", cmd->verb);
	if (cmd->takes_value && (a->value == NULL ||
	                         (strcmp(a->value, "on") != 0 && strcmp(a->value, "off") != 0)))
		return cli_user_usage_error("%s needs NAME and on or off", cmd->verb);
	return 0;
}

/* Every domain must pass policy_domain_valid(); 0 or 1 after an error. */
static int cli_user_check_domains(const struct cli_user_args *a)
{
	for (size_t i = 0; i < a->ndomains; i++) {
		if (!policy_domain_valid(a->domains[i])) {
			fprintf(stderr, "relevo: invalid domain '%s'\n", a->domains[i]);
			return 1;
		}
	}
	return 0;
}

/* Read the password from stdin and hash it; the plaintext is wiped. 0 or 1. */
static int cli_user_hash_stdin(char **hash)
{
	*hash = NULL;
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "relevo: reading the password from standard input "
		                "(it is echoed; pipe it in instead)\n");
	char *pass = cli_read_secret();
	if (pass == NULL) {
		fprintf(stderr, "relevo: no password on standard input\n");
		return 1;
	}
	enum rc rc = *pass == '\0' ? RC_INVALID : policy_password_hash(pass, hash);
	explicit_bzero(pass, strlen(pass));
	free(pass);
	if (rc == RC_INVALID) {
		fprintf(stderr, "relevo: refusing an empty password\n");
		return 1;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot hash the password (%s)\n", rc_name(rc));
		return 1;
	}
	return 0;
}

static void cli_user_free_hash(char *hash)
{
	if (hash == NULL)
		return;
	explicit_bzero(hash, strlen(hash));
	free(hash);
}

/* RC_OK if name exists, else its failure, so that a doomed command fails before
 * it waits for a password on stdin. */
static enum rc cli_user_lookup(struct store *st, const char *name)
{
	struct store_user *u = NULL;
	enum rc rc = store_user_get(st, name, &u);
	store_user_free(u);
	return rc;
}

/* cli_user_register_domains - the account's domains that are not registered
 * yet are, as `domain add` does (keys, and the records to publish printed):
 * mail from them would otherwise get 451 at once. */
static int cli_user_register_domains(struct store *st, const struct cli_user_args *a)
{
	int status = 0;
	for (size_t i = 0; i < a->ndomains && !a->no_register; i++) {
		enum rc rc = store_domain_exists(st, a->domains[i]);
		if (rc == RC_OK)
			continue;
		printf("\n");
		if (rc != RC_NOTFOUND || cli_domain_register(st, a->conf, a->domains[i]) != 0) {
			fprintf(stderr, "relevo: user %s was added, but %s is not registered: run "
					"relevo domain add %s\n", a->name, a->domains[i], a->domains[i]);
			status = 1;
		}
	}
	return status;
}

static int cli_user_add(struct store *st, const struct cli_user_args *a)
{
	enum rc rc = cli_user_lookup(st, a->name);
	if (rc == RC_OK)
		rc = RC_EXISTS;
	if (rc != RC_NOTFOUND)
		return cli_user_fail(a->name, rc);
	char *hash = NULL;
	int status = cli_user_hash_stdin(&hash);
	if (status != 0)
		return status;
	rc = store_user_add(st, a->name, hash, (const char *const *)a->domains, a->ndomains);
	cli_user_free_hash(hash);
	if (rc == RC_OK && a->sandbox)
		rc = store_user_set_sandbox(st, a->name, true);
	if (rc != RC_OK)
		return cli_user_fail(a->name, rc);
	printf("relevo: user %s added (domains: ", a->name);
	for (size_t i = 0; i < a->ndomains; i++)
		printf("%s%s", i ? ", " : "", a->domains[i]);
	printf(")%s\n", a->sandbox ? ", sandbox delivery" : "");
	return cli_user_register_domains(st, a);
}

/* One line per user: NAME<TAB>DOMAIN,DOMAIN<TAB>CREATED (ISO-8601 UTC). */
static bool cli_user_print(void *arg, const struct store_user *u)
{
	FILE *out = arg;
	char created[32];
	cli_time_utc(u->created, created, sizeof created);
	fprintf(out, "%s\t", u->name);
	for (size_t i = 0; i < u->ndomains; i++)
		fprintf(out, "%s%s", i ? "," : "", u->domains[i]);
	fprintf(out, "%s\t%s%s\n", u->ndomains ? "" : "-", created, u->sandbox ? "\tsandbox" : "");
	return true;
}

static int cli_user_list(struct store *st, const struct cli_user_args *a)
{
	enum rc rc = store_user_list(st, cli_user_print, stdout);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot list users (%s)\n", rc_name(rc));
		return 1;
	}
	return 0;
}

static int cli_user_del(struct store *st, const struct cli_user_args *a)
{
	enum rc rc = store_user_del(st, a->name);
	if (rc != RC_OK)
		return cli_user_fail(a->name, rc);
	printf("relevo: user %s deleted\n", a->name);
	return 0;
}

static int cli_user_passwd(struct store *st, const struct cli_user_args *a)
{
	enum rc rc = cli_user_lookup(st, a->name);
	if (rc != RC_OK)
		return cli_user_fail(a->name, rc);
	char *hash = NULL;
	int status = cli_user_hash_stdin(&hash);
	if (status != 0)
		return status;
	rc = store_user_set_password(st, a->name, hash);
	cli_user_free_hash(hash);
	if (rc != RC_OK)
		return cli_user_fail(a->name, rc);
	printf("relevo: password of user %s changed\n", a->name);
	return 0;
}

/* cli_user_sandbox - per-user sandbox delivery on or off. */
static int cli_user_sandbox(struct store *st, const struct cli_user_args *a)
{
	bool on = strcmp(a->value, "on") == 0;
	enum rc rc = store_user_set_sandbox(st, a->name, on);
	if (rc != RC_OK)
		return cli_user_fail(a->name, rc);
	printf("relevo: sandbox delivery %s for user %s (new messages)\n", on ? "on" : "off",
	       a->name);
	return 0;
}

/* Load the config (data_dir, and what `user add` needs to register a domain),
 * open the store and run cmd. */
static int cli_user_run(const struct cli_user_cmd *cmd, struct cli_user_args *a,
                        const char *conf_path)
{
	struct conf *c = cli_load_conf(conf_path);
	if (c == NULL)
		return 1;
	struct store *st = cli_open_store(c);
	int status = 1;
	if (st != NULL) {
		a->conf = c;
		status = cmd->run(st, a);
		store_close(st);
	}
	conf_free(c);
	return status;
}

static const struct cli_user_cmd *cli_user_find(const char *verb)
{
	for (size_t i = 0; i < ARRAY_LEN(cli_user_cmds); i++)
		if (strcmp(verb, cli_user_cmds[i].verb) == 0)
			return &cli_user_cmds[i];
	return NULL;
}

/* cli_user - `relevo user add|list|del|passwd ...` (argv[0] is "user"). */
int cli_user(int argc, char **argv, const char *conf_path)
{
	if (argc < 2) {
		cli_user_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		cli_user_usage(stdout);
		return 0;
	}
	const struct cli_user_cmd *cmd = cli_user_find(argv[1]);
	if (cmd == NULL)
		return cli_user_usage_error("unknown subcommand '%s'", argv[1]);
	/* Info lines (a first-run migration) would only clutter the answer. */
	log_set_level(LOG_LV_WARN);
	struct cli_user_args a = {0};
	int status = cli_user_parse(cmd, argc, argv, &a);
	if (status == 0 && cmd->takes_domains)
		status = cli_user_check_domains(&a);
	if (status == 0)
		status = cli_user_run(cmd, &a, conf_path);
	cli_user_args_fini(&a);
	return status;
}
