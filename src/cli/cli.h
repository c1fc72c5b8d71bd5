/*
 * cli.h - the `relevo` subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand) and the config path from -c, and returns the
 * process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef RELEVO_CLI_H
#define RELEVO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;

int cli_serve(int argc, char **argv, const char *conf_path);
int cli_check_config(int argc, char **argv, const char *conf_path);
int cli_user(int argc, char **argv, const char *conf_path);
int cli_queue(int argc, char **argv, const char *conf_path);
int cli_domain(int argc, char **argv, const char *conf_path);
struct store;
/* cli_domain_check - `domain check`: exit status 0 only when every record is right. */
int cli_domain_check(const struct conf *c, struct store *st, const char *domain, bool json);
int cli_spf(int argc, char **argv, const char *conf_path);
int cli_apikey(int argc, char **argv, const char *conf_path);
/* cli_sendmail - `relevo sendmail`, or the binary run as `sendmail`: exit
 * statuses are sysexits(3) ones, not 0/1/2. */
int cli_sendmail(int argc, char **argv, const char *conf_path);

/* cli_ctl_request - send one command line to the running daemon's control socket,
 * print its answer; returns the exit status */
int cli_ctl_request(const struct conf *c, const char *line);

/* cli_load_conf - load the config or print every error to stderr; NULL on failure. */
struct conf *cli_load_conf(const char *path);

struct store;
/* cli_open_store - the store of c's data_dir, or NULL after saying why on stderr. */
struct store *cli_open_store(const struct conf *c);
/* cli_store_for - the same from the config file at conf_path. */
struct store *cli_store_for(const char *conf_path);

/* cli_time_utc - "2026-11-26T13:05:39Z" for unix seconds t ("-" if unusable). */
void cli_time_utc(int64_t t, char *out, size_t outsz);

/* cli_read_secret - read the first line of standard input (no echo handling: the
 * caller pipes it in); strips the line ending. Returns a heap string or NULL. */
char *cli_read_secret(void);

struct event_base;
struct spool;
struct cli_ctl;
struct mta;
/* cli_ctl_start - serve the control socket on base; NULL (logged) on failure.
 * Queue changes are passed on to mta (may be NULL). */
struct cli_ctl *cli_ctl_start(struct event_base *base, const struct conf *c, struct spool *sp,
			      struct mta *mta);
void cli_ctl_stop(struct cli_ctl *ctl);
#endif
