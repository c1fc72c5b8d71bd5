/*
 * cli_reload.c - reloading the running daemon's configuration (SIGHUP,
 * `relevo reload`), and the `relevo reload` command itself.
 *
 * Design. A struct conf is immutable and reference-counted (conf_ref/
 * conf_unref). A reload never changes a conf in place: it loads a new one and
 * hands it to each part of the daemon, which switches to it on its own thread,
 * at a point where nothing of its is half-done:
 *
 *   main loop (here)   conf_load and validation; the keys that need a restart
 *                      keep their old value (conf_keep_restart_keys) and are
 *                      reported; then smtp_server_reload_prepare loads the TLS
 *                      certificate and key and binds the listeners the new conf
 *                      adds, and http_server_reload binds its new addresses.
 *                      Any failure there: nothing has changed, each error is
 *                      logged as event=reload_failed key=... error=..., and the
 *                      daemon goes on with the old conf. Otherwise the SMTP side
 *                      is committed at once (it lives on this loop): connections
 *                      accepted from now on carry a reference to the new conf
 *                      and TLS context to their worker; sessions already open
 *                      keep the references they were given, so they finish on
 *                      the settings they started with. Listeners present in
 *                      both confs are never closed, so no connection is refused.
 *   delivery thread    mta_reload: attempts started from then on use the new
 *                      routes and delivery settings; an attempt under way
 *                      holds its own reference to the old conf; parked
 *                      connections are closed.
 *   API thread         http_server_reload: new listeners, limits, timeouts and
 *                      DKIM keys between two requests.
 *   event sink         webhook endpoints swapped under the webhook lock,
 *                      events.retention through an atomic, the queue bound
 *                      under the event stream's lock.
 *
 * Each asynchronous part reports back (an ack: an atomic count, and an event on
 * the main loop when it reaches zero); only then is the reload finished:
 * event=reloaded is logged, systemd gets READY=1 (it got RELOADING=1 at the
 * start), and the `relevo reload` clients are answered. One reload runs at a
 * time; a request that arrives meanwhile gets the next one, which re-reads the
 * file. Nothing that was acknowledged is touched: the spool, the store and the
 * queue are not part of the conf (data_dir needs a restart).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "http/http.h"
#include "mta/mta.h"
#include "smtp/smtp.h"

struct cli_reload_state {
	struct cli_daemon *d;
	struct event *done_ev; /* main loop: the running reload has finished */
	atomic_uint acks;      /* parts yet to report, +1 while starting */
	bool running;
	int status;                            /* of the running reload: 0, or 1 (failed) */
	char *text;                            /* what `relevo reload` prints */
	uint64_t requested, started, finished; /* reload numbers */
	struct http_server *http_new;          /* created by this reload, started at its end */
};

static void reload_say(struct cli_reload_state *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* reload_say - append a line to what the client will print. */
static void reload_say(struct cli_reload_state *r, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	char *s = xasprintf("%s%s\n", r->text ? r->text : "", line);
	free(r->text);
	r->text = s;
}

/* reload_ack - a part has switched to the new conf (any thread). */
static void reload_ack(void *arg)
{
	struct cli_reload_state *r = arg;
	if (atomic_fetch_sub(&r->acks, 1) == 1)
		event_active(r->done_ev, 0, 0);
}

/* reload_failed - log each "key: error" line of errs, tell the client. */
static void reload_failed(struct cli_reload_state *r, const char *errs)
{
	r->status = 1;
	reload_say(r,
	           "relevo: reload of %s failed; still running on the previous "
	           "configuration:",
	           r->d->conf_path);
	for (const char *p = errs; p && *p;) {
		size_t len = strcspn(p, "\n");
		char *line = xstrndup(p, len);
		char *sep = strstr(line, ": ");
		if (sep != NULL) {
			*sep = '\0';
			log_err("event=reload_failed key=%s error=\"%s\"", line, sep + 2);
			*sep = ':';
		} else {
			log_err("event=reload_failed key=- error=\"%s\"", line);
		}
		reload_say(r, "  %s", line);
		free(line);
		p += len + (p[len] == '\n');
	}
}

/* reload_note_restart - report the keys that keep their old value. */
static void reload_note_restart(struct cli_reload_state *r, const char *changed)
{
	for (const char *p = changed; p && *p;) {
		size_t len = strcspn(p, "\n");
		char *key = xstrndup(p, len);
		log_warn("event=reload_restart_needed key=%s", key);
		reload_say(r, "%s changed: needs a restart", key);
		free(key);
		p += len + (p[len] == '\n');
	}
}

/* reload_prepare_http - bind the API's new addresses; a new server if the API
 * had none. RC_INVALID (errs filled) when one cannot be bound. */
static enum rc reload_prepare_http(struct cli_reload_state *r, const struct conf *nc, char **errs)
{
	struct cli_daemon *d = r->d;
	if (d->http != NULL) {
		atomic_fetch_add(&r->acks, 1);
		if (http_server_reload(d->http, nc, errs, reload_ack, r) == RC_OK)
			return RC_OK;
		atomic_fetch_sub(&r->acks, 1);
		return RC_INVALID;
	}
	if (nc->http.nlisten == 0)
		return RC_OK;
	if (http_server_new(nc, d->spool, d->store, &r->http_new) != RC_OK) {
		char *s = xasprintf("%shttp.listen: cannot listen (the log says why)\n",
		                    *errs ? *errs : "");
		free(*errs);
		*errs = s;
		return RC_INVALID;
	}
	return RC_OK;
}

/* reload_apply - load, check, prepare and hand over; the finish comes through
 * done_ev (never from inside this call). */
static void reload_apply(struct cli_reload_state *r)
{
	struct cli_daemon *d = r->d;
	struct conf *nc = NULL;
	char *errs = NULL, *changed = NULL;
	if (conf_load(d->conf_path, &nc, &errs) != RC_OK) {
		reload_failed(r, errs);
		free(errs);
		return;
	}
	conf_keep_restart_keys(nc, d->conf, &changed);
	if (smtp_server_reload_prepare(d->srv, nc, &errs) != RC_OK ||
	    reload_prepare_http(r, nc, &errs) != RC_OK) {
		smtp_server_reload_abort(d->srv);
		reload_failed(r, errs);
		free(errs);
		free(changed);
		conf_free(nc);
		return;
	}
	reload_note_restart(r, changed);
	free(changed);
	smtp_server_reload_commit(d->srv);
	if (r->http_new != NULL) {
		d->http = r->http_new;
		r->http_new = NULL;
		http_server_start(d->http);
	}
	atomic_fetch_add(&r->acks, 1);
	mta_reload(d->mta, nc, reload_ack, r);
	http_webhooks_reload(d->hooks, nc);
	evlog_set_max(nc->events.queue_max);
	atomic_store(d->events_retention, nc->events.retention);
	conf_unref(d->conf);
	d->conf = nc;
	reload_say(r, "reloaded %s", d->conf_path);
}

/* reload_start - begin a reload covering every request so far. */
static void reload_start(struct cli_reload_state *r)
{
	char msg[64];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000);
	sdnotify_send(msg);
	r->running = true;
	r->started = r->requested;
	r->status = 0;
	free(r->text);
	r->text = NULL;
	log_info("event=reloading path=%s", r->d->conf_path);
	atomic_store(&r->acks, 1);
	reload_apply(r);
	reload_ack(r); /* the starting share: done_ev fires once every part is done */
}

/* reload_on_done - main loop: the running reload has finished everywhere. */
static void reload_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct cli_reload_state *r = arg;
	if (r->status == 0)
		log_info("event=reloaded path=%s", r->d->conf_path);
	sdnotify_send("READY=1");
	r->running = false;
	r->finished = r->started;
	cli_ctl_reload_done(r->d->ctl, r->finished, r->status, r->text ? r->text : "");
	if (r->requested > r->finished)
		reload_start(r);
}

/* cli_reload_request - see cli.h. */
uint64_t cli_reload_request(void *daemon)
{
	struct cli_daemon *d = daemon;
	struct cli_reload_state *r = d->reload;
	uint64_t gen = ++r->requested;
	if (!r->running)
		reload_start(r);
	return gen;
}

/* cli_reload_init - the reload state of d. */
void cli_reload_init(struct cli_daemon *d)
{
	struct cli_reload_state *r = xcalloc(1, sizeof *r);
	r->d = d;
	r->done_ev = event_new(d->base, -1, 0, reload_on_done, r);
	if (r->done_ev == NULL)
		fatal("event=event_new_failed where=reload");
	d->reload = r;
}

/* cli_reload_fini - free the reload state (no thread may report any more). */
void cli_reload_fini(struct cli_daemon *d)
{
	struct cli_reload_state *r = d->reload;
	if (r == NULL)
		return;
	event_free(r->done_ev);
	http_server_free(r->http_new);
	free(r->text);
	free(r);
	d->reload = NULL;
}

/* cli_reload - `relevo reload`: ask the daemon serving the config's data_dir. The
 * config may be broken (that is what the daemon will report): only its data_dir
 * is read here. */
int cli_reload(int argc, char **argv, const char *conf_path)
{
	if (argc > 1) {
		bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
		fprintf(help ? stdout : stderr,
		        "usage: relevo reload [-c FILE]\n\n"
		        "The running daemon re-reads FILE. If it is invalid, the daemon keeps its\n"
		        "configuration and the errors are printed (exit 1).\n");
		return help ? 0 : 2;
	}
	char *dir = conf_data_dir_of(conf_path);
	if (dir == NULL) {
		fprintf(stderr, "relevo: cannot read %s as YAML: run relevo check-config -c %s\n",
		        conf_path, conf_path);
		return 1;
	}
	int status = cli_ctl_request_dir(dir, "reload", "no daemon is running: its control socket");
	free(dir);
	return status;
}
