/*
 * cli.h - the `relevo` subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand) and the config path from -c, and returns the
 * process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef RELEVO_CLI_H
#define RELEVO_CLI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct spool;
struct mta;

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
/* cli_status - `relevo status [--json]`: 0, or 69 (EX_UNAVAILABLE) with no daemon. */
int cli_status(int argc, char **argv, const char *conf_path);

/* ---- DKIM keys in DNS (cli_dkim_probe.c) and the daemon's watch over pending
 * keys (cli_dkim_watch.c) ---- */
struct store_dkim_key;
struct dns_answer;
enum cli_dkim_pub {
	CLI_DKIM_PUB_OK,	/* a TXT record carries our p= */
	CLI_DKIM_PUB_MISSING,	/* no TXT record there */
	CLI_DKIM_PUB_MISMATCH,	/* records, none with our p= */
	CLI_DKIM_PUB_ERROR,	/* the lookup failed */
	CLI_DKIM_PUB__COUNT
};
const char *cli_dkim_pub_name(enum cli_dkim_pub p);
struct cli_dkim_probe_result {
	enum cli_dkim_pub pub;
	char detail[300];
};
/* cli_tag_value - the value of tag t in a DKIM/DMARC tag list, whitespace removed. */
bool cli_tag_value(const char *rec, const char *t, char *out, size_t outsz);
/* cli_dkim_verdict - what a TXT answer for SELECTOR._domainkey.DOMAIN says of
 * our key (ours: its TXT value); detail explains. */
enum cli_dkim_pub cli_dkim_verdict(const struct dns_answer *a, const char *ours, char *detail,
				   size_t detailsz);
/* cli_dkim_probe - look each key up through c's resolver, blocking; out[i] for
 * keys[i]. RC_IO when no resolver could be set up. */
enum rc cli_dkim_probe(const struct conf *c, const struct store_dkim_key *keys, size_t n,
		       struct cli_dkim_probe_result *out);
struct cli_dkim_watch;
/* cli_dkim_watch_start - a thread that, every dkim.pending_check_interval (and
 * once at start), activates the pending keys it finds published. NULL (logged)
 * on failure. c and st must outlive it. */
struct cli_dkim_watch *cli_dkim_watch_start(const struct conf *c, struct store *st);
/* cli_dkim_watch_stop - stop and join the thread; NULL is a no-op. */
void cli_dkim_watch_stop(struct cli_dkim_watch *w);

/* cli_domain_register - `domain add`'s work for domain (keys, store rows), then
 * print the records to publish; exit status 0 or 1 (said on stderr). */
int cli_domain_register(struct store *st, const struct conf *c, const char *domain);
/* cli_ctl_tell - send line to a running daemon's control socket, quietly; true
 * if it answered exit 0, false if it did not (not running, or refused). */
bool cli_ctl_tell(const struct conf *c, const char *line);

#include <stdio.h>
struct evbuffer;
/* cli_queue_usage - a "PREFIXqueue SUB ARGS" line per queue subcommand. */
void cli_queue_usage(FILE *out, const char *prefix);
/* cli_queue_ctl - the control socket's side of a changing queue command:
 * words[0] is the subcommand; runs it on the daemon's spool (telling mta). Each
 * spool record is written off the loop (spool_*_async): done(arg, status, out)
 * runs on base once the last is durable (or at once, before this returns, when
 * nothing is to be written), with the answer text in out (the callee's). */
struct event_base;
void cli_queue_ctl(struct spool *sp, struct mta *mta, struct event_base *base, int nwords,
		   char **words, void (*done)(void *arg, int status, struct evbuffer *out),
		   void *arg);

/* cli_ctl_request - send one command line to the running daemon's control socket,
 * print its answer; returns the exit status */
int cli_ctl_request(const struct conf *c, const char *line);
/* cli_ctl_request_dir - the same for the daemon of data_dir; who names the socket
 * in the message printed when nothing answers. */
int cli_ctl_request_dir(const char *data_dir, const char *line, const char *who);
/* cli_reload - `relevo reload`: the running daemon re-reads its config. */
int cli_reload(int argc, char **argv, const char *conf_path);

/* cli_load_conf - for every command that uses data_dir: load the config without
 * opening the TLS files (print every error to stderr), then, when run as root
 * with run_as set, hand data_dir over to run_as and become that user for good
 * (cli_become_run_as). NULL on failure. */
struct conf *cli_load_conf(const char *path);
/* cli_load_conf_full - serve and check-config: every check, TLS files included;
 * the identity is left alone. NULL on failure. */
struct conf *cli_load_conf_full(const char *path);
/* cli_become_run_as - as root with run_as set: data_dir created if missing and
 * handed to run_as (0700), then setgroups/setgid/setuid to run_as, for good.
 * Otherwise nothing. false (said on stderr) on failure. */
bool cli_become_run_as(const struct conf *c);

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
struct evbuffer;
/* cli_status_answer - (daemon, control socket) the status report; exit status. */
int cli_status_answer(struct spool *sp, bool json, struct evbuffer *out);
/* cli_ctl_set_reload - "reload" calls fn(arg), which starts a reload (or notes
 * that one more is wanted) and returns the number of the reload that will
 * answer; it must not answer before returning. */
void cli_ctl_set_reload(struct cli_ctl *ctl, uint64_t (*fn)(void *arg), void *arg);
/* cli_ctl_reload_done - reload number gen has finished: every client waiting for
 * it (or an earlier one) gets text and "exit status". NULL ctl: no-op. */
void cli_ctl_reload_done(struct cli_ctl *ctl, uint64_t gen, int status, const char *text);

/* ---- the running daemon (cli_serve.c) and its reload (cli_reload.c) ---- */

struct smtp_server;
struct http_server;
struct http_webhooks;
struct cli_reload_state;

/* What `relevo serve` runs; owned by cli_serve, used on the main loop. */
struct cli_daemon {
	const char *conf_path;
	const struct conf *conf;	/* a reference: the conf in force */
	struct event_base *base;	/* the main loop */
	struct spool *spool;
	struct store *store;
	struct smtp_server *srv;
	struct http_server *http;	/* NULL while no http.listen is configured */
	struct mta *mta;
	struct http_webhooks *hooks;
	struct cli_ctl *ctl;
	atomic_uint *events_retention;	/* events.retention, read by the event sink */
	struct cli_reload_state *reload;
};

/* cli_reload_init - prepare d for reloads (after d->base exists); fini after
 * every thread that could report a reload's progress has been joined. */
void cli_reload_init(struct cli_daemon *d);
void cli_reload_fini(struct cli_daemon *d);
/* cli_reload_request - SIGHUP or "reload": start a reload, or one more once the
 * one running has finished. Returns the number of the reload that will cover
 * this request (cli_ctl_reload_done is told). Main loop only. */
uint64_t cli_reload_request(void *daemon);
#endif
