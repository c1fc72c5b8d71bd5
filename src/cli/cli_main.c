/*
 * cli_main.c - `relevo SUBCOMMAND [args] [-c FILE]`: argument dispatch.
 *
 * -c FILE (or --config FILE) may appear anywhere on the line; it defaults to
 * /etc/relevo/relevo.yaml. Everything else is passed to the subcommand.
 * Run through a link named `sendmail`, the binary is `relevo sendmail`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "store/store.h"

/* Every subcommand's usage, "COMMAND SUB ARGS" (the word after the command is
 * the subcommand); NULL ends a list. A subcommand missing here is refused as
 * unknown: add its line with it. queue has its own table (cli_queue.c). */
static const char *const usage_serve[] = {"serve", NULL};
static const char *const usage_check_config[] = {"check-config", NULL};
static const char *const usage_reload[] = {"reload", NULL};
static const char *const usage_user[] = {
	"user add NAME --domain DOMAIN [--domain DOMAIN ...] [--sandbox]",
	"user list",
	"user del NAME",
	"user passwd NAME",
	"user sandbox NAME on|off",
	NULL};
static const char *const usage_domain[] = {
	"domain add DOMAIN",
	"domain records DOMAIN [--zone]",
	"domain rotate DOMAIN",
	"domain activate DOMAIN SELECTOR [--force]",
	"domain retire-key DOMAIN SELECTOR",
	"domain list",
	"domain del DOMAIN [--force]",
	"domain check DOMAIN [--json]",
	NULL};
static const char *const usage_spf[] = {"spf eval IP SENDER [HELO]", NULL};
static const char *const usage_sendmail[] = {
	"sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID] [-v] [--] "
	"[RECIPIENT ...]",
	"sendmail -bp | -q",
	NULL};
static const char *const usage_status[] = {"status [--json]", NULL};
static const char *const usage_apikey[] = {
	"apikey create USER [--name NAME]",
	"apikey list [USER]",
	"apikey revoke ID",
	NULL};

static const struct cli_command {
	const char *name;
	int (*fn)(int argc, char **argv, const char *conf_path);
	const char *help;
	const char *const *usage;	/* NULL: queue's own table (cli_queue_usage) */
	bool subcommands;		/* the first argument is a subcommand */
	bool h_is_option;		/* -h is an option of its own (sendmail's hop count) */
} cli_commands[] = {
	{"serve", cli_serve, "run the daemon in the foreground", usage_serve, false, false},
	{"check-config", cli_check_config, "validate the configuration file", usage_check_config,
	 false, false},
	{"reload", cli_reload, "make the running daemon re-read its configuration", usage_reload,
	 false, false},
	{"user", cli_user, "sending accounts", usage_user, true, false},
	{"queue", cli_queue, "the queue: list, inspect, delete, hold, release, flush", NULL, true,
	 false},
	{"domain", cli_domain, "sending domains and their DKIM keys", usage_domain, true, false},
	{"spf", cli_spf, "evaluate SPF (RFC 7208) for an address and a sender", usage_spf, true,
	 false},
	{"apikey", cli_apikey, "HTTP API keys", usage_apikey, true, false},
	{"sendmail", cli_sendmail, "submit a message from standard input (sendmail-compatible)",
	 usage_sendmail, false, true},
	{"status", cli_status, "what the running daemon is doing (exit 69: not running)",
	 usage_status, false, false},
};

/* cli_run_as_sendmail - is this binary run through a link named sendmail? */
static bool cli_run_as_sendmail(const char *argv0)
{
	const char *base = strrchr(argv0, '/');
	return strcmp(base ? base + 1 : argv0, "sendmail") == 0;
}

static bool is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

/* The usage line's subcommand: its second word, in sub (empty if none). */
static void usage_sub(const char *line, char *sub, size_t subsz)
{
	const char *p = strchr(line, ' ');
	size_t n = p ? strcspn(p + 1, " ") : 0;
	snprintf(sub, subsz, "%.*s", (int)n, p ? p + 1 : "");
}

/* cmd_usage - cmd's usage lines (only sub's when sub is not NULL). */
static void cmd_usage(FILE *out, const struct cli_command *cmd, const char *sub,
		      const char *prefix)
{
	if (cmd->usage == NULL) {
		cli_queue_usage(out, prefix);
		return;
	}
	for (size_t i = 0; cmd->usage[i]; i++) {
		char s[32];
		usage_sub(cmd->usage[i], s, sizeof s);
		if (sub == NULL || strcmp(s, sub) == 0) {
			fprintf(out, "%s%s [-c FILE]\n", prefix, cmd->usage[i]);
			if (strncmp(prefix, "usage: ", 7) == 0)
				prefix = "       relevo ";
		}
	}
}

static bool cmd_has_sub(const struct cli_command *cmd, const char *sub)
{
	for (size_t i = 0; cmd->usage && cmd->usage[i]; i++) {
		char s[32];
		usage_sub(cmd->usage[i], s, sizeof s);
		if (strcmp(s, sub) == 0)
			return true;
	}
	return false;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: relevo COMMAND [ARGS] [-c FILE]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_LEN(cli_commands); i++) {
		fprintf(out, "  %-14s %s\n", cli_commands[i].name, cli_commands[i].help);
		cmd_usage(out, &cli_commands[i], NULL, "      relevo ");
	}
	fprintf(out, "\n-c FILE defaults to %s\n"
		     "relevo COMMAND [SUBCOMMAND] --help prints its usage\n"
		     "relevo --version prints the version\n",
		CONF_DEFAULT_PATH);
}

/* cli_dispatch - run args[0]'s command, answering --help and unknown
 * subcommands here for those with a usage table. */
static int cli_dispatch(const struct cli_command *cmd, int nargs, char **args,
			const char *conf_path)
{
	const char *sub = cmd->subcommands && nargs >= 2 && !is_help(args[1]) &&
			  strcmp(args[1], "help") != 0 ? args[1] : NULL;
	if (cmd->usage == NULL)
		return cmd->fn(nargs, args, conf_path);
	if (sub != NULL && !cmd_has_sub(cmd, sub)) {
		fprintf(stderr, "relevo: unknown %s subcommand '%s'\n", cmd->name, sub);
		cmd_usage(stderr, cmd, NULL, "usage: relevo ");
		return 2;
	}
	for (int i = 1; i < nargs; i++)
		if ((cmd->h_is_option ? strcmp(args[i], "--help") == 0 : is_help(args[i])) ||
		    (i == 1 && cmd->subcommands && strcmp(args[i], "help") == 0)) {
			cmd_usage(stdout, cmd, sub, "usage: relevo ");
			return 0;
		}
	return cmd->fn(nargs, args, conf_path);
}

int main(int argc, char **argv)
{
	const char *conf_path = CONF_DEFAULT_PATH;
	char **args = xcalloc((size_t)argc + 1, sizeof *args);
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "relevo: %s needs a file name\n", argv[i]);
				free(args);
				return 2;
			}
			conf_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			conf_path = argv[i] + 9;
		} else {
			args[nargs++] = argv[i];
		}
	}
	if (argc > 0 && cli_run_as_sendmail(argv[0])) {
		memmove(args + 1, args, (size_t)nargs * sizeof *args);
		args[0] = "sendmail";
		int rc = cli_sendmail(nargs + 1, args, conf_path);
		free(args);
		return rc;
	}
	if (nargs == 1 && (strcmp(args[0], "--version") == 0 || strcmp(args[0], "version") == 0)) {
		printf("relevo %s\n", RELEVO_VERSION);
		free(args);
		return 0;
	}
	if (nargs == 0 || strcmp(args[0], "help") == 0 || is_help(args[0])) {
		usage(nargs == 0 ? stderr : stdout);
		free(args);
		return nargs == 0 ? 2 : 0;
	}
	for (size_t i = 0; i < ARRAY_LEN(cli_commands); i++) {
		if (strcmp(args[0], cli_commands[i].name) == 0) {
			int rc = cli_dispatch(&cli_commands[i], nargs, args, conf_path);
			free(args);
			return rc;
		}
	}
	fprintf(stderr, "relevo: unknown command '%s'\n", args[0]);
	usage(stderr);
	free(args);
	return 2;
}

/* cli_conf_load - load the config as opts say, or explain every error. */
static struct conf *cli_conf_load(const char *path, const struct conf_load_opts *opts)
{
	struct conf *c = NULL;
	char *errs = NULL;
	enum rc rc = conf_load_with(path, opts, &c, &errs);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: %s: configuration is not valid:\n%s", path,
			errs ? errs : "unknown error\n");
		free(errs);
		return NULL;
	}
	return c;
}

/* cli_load_conf_full - every check, TLS files included; NULL on failure. */
struct conf *cli_load_conf_full(const char *path)
{
	return cli_conf_load(path, NULL);
}

/* cli_load_conf - the config without opening the TLS files, then (as root with
 * run_as set) become run_as; NULL on failure. */
struct conf *cli_load_conf(const char *path)
{
	const struct conf_load_opts opts = {.skip_tls_files = true};
	struct conf *c = cli_conf_load(path, &opts);
	if (c != NULL && !cli_become_run_as(c)) {
		conf_free(c);
		return NULL;
	}
	return c;
}

/* cli_open_store - the store of c's data_dir, or NULL after saying why on stderr. */
struct store *cli_open_store(const struct conf *c)
{
	struct store *st = NULL;
	enum rc rc = store_open(c->data_dir, &st);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo: cannot open the store in %s (%s)\n", c->data_dir,
			rc_name(rc));
		return NULL;
	}
	return st;
}

/* cli_store_for - the store of the data_dir named by the config at conf_path, or
 * NULL after saying why on stderr. */
struct store *cli_store_for(const char *conf_path)
{
	struct conf *c = cli_load_conf(conf_path);
	if (c == NULL)
		return NULL;
	struct store *st = cli_open_store(c);
	conf_free(c);
	return st;
}

/* cli_time_utc - "2026-11-26T13:05:39Z" for unix seconds t ("-" if unusable). */
void cli_time_utc(int64_t t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;
	str_lcpy(out, "-", outsz);
	if (gmtime_r(&tt, &tm) != NULL)
		strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* cli_read_secret - first line of stdin, without its line ending; NULL if absent
 * or longer than 1022 bytes. */
char *cli_read_secret(void)
{
	char buf[1024];
	if (fgets(buf, sizeof buf, stdin) == NULL)
		return NULL;
	size_t n = strcspn(buf, "\r\n");
	if (buf[n] == '\0' && n == sizeof buf - 1) {
		/* No line end within the buffer: refuse rather than truncate a secret. */
		fprintf(stderr, "relevo: the secret on standard input is too long\n");
		explicit_bzero(buf, sizeof buf);
		return NULL;
	}
	buf[n] = '\0';
	char *s = xstrdup(buf);
	explicit_bzero(buf, sizeof buf);
	return s;
}
