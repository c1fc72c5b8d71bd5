/*
 * cli_dkim_watch.c - the daemon's watch over pending DKIM keys.
 *
 * `relevo domain rotate` makes new keys pending: published by `domain records`,
 * never used to sign, because mail signed before the record is visible in DNS
 * fails verification. This thread looks for them once at start and then every
 * dkim.pending_check_interval (default 10 minutes): each pending key whose
 * record it finds published with our p= (cli_dkim_probe, the check `domain
 * check` and `domain activate` make) is activated in the store, which retires
 * the active key of its algorithm in the same statement, and every key cache of
 * the process is told (dkim_cache_changed), so the next message is signed with
 * it. Its own thread and event base: DNS and SQLite never block an event loop.
 *
 * At most CLI_DKIM_WATCH_MAX pending keys are probed per round.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "dkim/dkim.h"
#include "store/store.h"

#define CLI_DKIM_WATCH_MAX 256

struct cli_dkim_watch {
	const struct conf *conf; /* a reference: the start-up conf (a reload keeps
	                          * dkim.pending_check_interval, see conf.h) */
	struct store *store;     /* borrowed */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled by stop */
	bool stop;
};

/* watch_round - probe the pending keys, activate those published. */
static void watch_round(struct cli_dkim_watch *w)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	enum rc rc = store_dkim_keys_pending(w->store, CLI_DKIM_WATCH_MAX, &keys, &n);
	if (rc != RC_OK || n == 0) {
		if (rc != RC_OK)
			log_err("event=dkim_watch_failed what=store rc=%s", rc_name(rc));
		return;
	}
	struct cli_dkim_probe_result *res = xcalloc(n, sizeof *res);
	if (cli_dkim_probe(w->conf, keys, n, res) != RC_OK)
		log_err("event=dkim_watch_failed what=resolver");
	bool changed = false;
	for (size_t i = 0; i < n; i++) {
		if (res[i].pub != CLI_DKIM_PUB_OK) {
			log_info(
			    "event=dkim_key_pending domain=%s selector=%s dns=%s detail=\"%s\"",
			    keys[i].domain, keys[i].selector, cli_dkim_pub_name(res[i].pub),
			    res[i].detail);
			continue;
		}
		rc = store_dkim_key_activate(w->store, keys[i].domain, keys[i].selector,
		                             time_now_ms() / 1000);
		if (rc == RC_OK) {
			log_info("event=dkim_key_activated domain=%s selector=%s by=dns",
			         keys[i].domain, keys[i].selector);
			changed = true;
		} else if (rc != RC_NOTFOUND) { /* RC_NOTFOUND: the CLI was quicker */
			log_err("event=dkim_watch_failed what=activate domain=%s selector=%s rc=%s",
			        keys[i].domain, keys[i].selector, rc_name(rc));
		}
	}
	if (changed)
		dkim_cache_changed();
	free(res);
	store_dkim_keys_free(keys, n);
}

static void *watch_main(void *arg)
{
	struct cli_dkim_watch *w = arg;
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		pthread_mutex_unlock(&w->lock);
		watch_round(w);
		pthread_mutex_lock(&w->lock);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)w->conf->dkim.pending_check_interval;
		while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* cli_dkim_watch_start - start the watch thread. */
struct cli_dkim_watch *cli_dkim_watch_start(const struct conf *c, struct store *st)
{
	struct cli_dkim_watch *w = xcalloc(1, sizeof *w);
	w->conf = conf_ref(c);
	w->store = st;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	int err = pthread_create(&w->thread, NULL, watch_main, w);
	if (err != 0) {
		log_err("event=startup_failed what=dkim_watch error=\"%s\"", strerror(err));
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		conf_unref(w->conf);
		free(w);
		return NULL;
	}
	return w;
}

/* cli_dkim_watch_stop - stop the thread (a round in progress finishes) and free. */
void cli_dkim_watch_stop(struct cli_dkim_watch *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	conf_unref(w->conf);
	free(w);
}
