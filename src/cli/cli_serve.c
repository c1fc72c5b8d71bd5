/*
 * cli_serve.c - `relevo serve`: the daemon in the foreground.
 *
 * Order matters: look up run_as (a user that does not exist, or a start without
 * root, fails before anything is bound), open the store and the spool
 * (recovering it), bind every listener, then drop privileges (run_as), then
 * serve, and tell systemd READY=1 ($NOTIFY_SOCKET). SIGHUP (and `relevo reload`)
 * re-read the config (cli_reload.c). SIGTERM/SIGINT stop gracefully (STOPPING=1):
 * listeners close, sessions get 421 once any commit they wait for is answered,
 * and the spool drains before exit, so nothing acknowledged is lost.
 */
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "http/http.h"
#include "mta/mta.h"
#include "smtp/smtp.h"
#include "spool/spool.h"
#include "store/store.h"

static uid_t chown_uid;
static gid_t chown_gid;

static int serve_chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (lchown(path, chown_uid, chown_gid) != 0)
		log_warn("event=chown_failed path=%s error=\"%s\"", path, strerror(errno));
	return 0;
}

/* serve_run_as_user - run_as's passwd entry if we can become that user, else NULL
 * after logging why. Asked before anything is bound or opened, so that a wrong
 * run_as never leaves a half-started daemon behind. */
static struct passwd *serve_run_as_user(const struct conf *c)
{
	struct passwd *pw = getpwnam(c->run_as);
	if (pw == NULL) {
		log_err("event=run_as_failed user=%s error=\"no such user\"", c->run_as);
		return NULL;
	}
	if (getuid() != 0 && getuid() != pw->pw_uid) {
		log_err("event=run_as_failed user=%s error=\"not started as root\"", c->run_as);
		return NULL;
	}
	return pw;
}

/* serve_check_run_as - no run_as, or one we can become. */
static bool serve_check_run_as(const struct conf *c)
{
	return c->run_as == NULL || serve_run_as_user(c) != NULL;
}

/* serve_drop_privileges - become run_as, handing data_dir over to that user. No
 * supplementary groups are kept: a reload re-reads tls.key as run_as, so the key
 * must be readable by that user itself (or it must be started as that user with
 * the groups it needs, as a systemd unit's SupplementaryGroups= does). */
static bool serve_drop_privileges(const struct conf *c)
{
	if (c->run_as == NULL)
		return true;
	struct passwd *pw = serve_run_as_user(c);
	if (pw == NULL)
		return false;
	if (getuid() != 0)
		return true; /* already run_as */
	chown_uid = pw->pw_uid;
	chown_gid = pw->pw_gid;
	nftw(c->data_dir, serve_chown_one, 16, FTW_PHYS);
	if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		log_err("event=run_as_failed user=%s error=\"%s\"", c->run_as, strerror(errno));
		return false;
	}
	if (setuid(0) == 0) {
		log_err("event=run_as_failed user=%s error=\"could regain root\"", c->run_as);
		return false;
	}
	log_info("event=privileges_dropped user=%s uid=%u", c->run_as, (unsigned)pw->pw_uid);
	return true;
}

/* serve_data_dir_mode - 0700; 0711 when the local submission socket is inside
 * (local_submit.users set, local_submit.socket not moved elsewhere): every user
 * may then pass through data_dir to public/submit.sock, but not list it, and
 * everything else in it stays owner-only (files 0600, directories 0700). Who
 * may submit is decided by the peer's uid, not by this mode (smtp_local.c). */
static mode_t serve_data_dir_mode(const struct conf *c)
{
	const char *sock = c->local_submit.socket;
	size_t n = strlen(c->data_dir);
	if (sock != NULL && strncmp(sock, c->data_dir, n) == 0 && sock[n] == '/')
		return 0711;
	return 0700;
}

/* The event sink's state: it runs on the event stream's own thread. */
struct serve_events {
	atomic_uint retention;		/* events.retention, seconds (a reload sets it) */
	struct store *store;
	struct http_webhooks *hooks;
	int64_t last_prune;		/* unix ms */
};

/* serve_suppress - a hard bounce puts the recipient on its account's list. */
static void serve_suppress(struct serve_events *se, const struct evlog_event *ev)
{
	if (ev->type != EVLOG_BOUNCED || ev->user == NULL || ev->recipient == NULL ||
	    ev->bounce_class == NULL || strcmp(ev->bounce_class, "hard") != 0)
		return;
	char *reason = xasprintf("hard bounce: %s", ev->reply ? ev->reply : "");
	enum rc rc = store_suppression_add(se->store, ev->user, ev->recipient, reason);
	free(reason);
	if (rc == RC_OK)
		log_info("event=suppression_added user=%s address=<%s> source=bounce", ev->user,
			 ev->recipient);
	else if (rc != RC_EXISTS)
		log_err("event=suppression_add_failed user=%s rc=%s", ev->user, rc_name(rc));
}

/* serve_on_events - the event stream's sink: store, suppress, webhooks, prune. */
static void serve_on_events(void *ctx, struct evlog_event *const *evs, size_t n)
{
	struct serve_events *se = ctx;
	enum rc rc = store_events_add(se->store, evs, n);
	if (rc != RC_OK)
		log_err("event=events_store_failed count=%zu rc=%s", n, rc_name(rc));
	for (size_t i = 0; i < n; i++)
		serve_suppress(se, evs[i]);
	if (se->hooks != NULL && rc == RC_OK)
		http_webhooks_enqueue(se->hooks, evs, n);
	int64_t now = time_now_ms();
	if (now - se->last_prune >= 3600 * 1000) {
		uint64_t deleted = 0;
		se->last_prune = now;
		if (store_events_prune(se->store, now - (int64_t)atomic_load(&se->retention) * 1000,
				       &deleted) == RC_OK && deleted > 0)
			log_info("event=events_pruned count=%llu", (unsigned long long)deleted);
	}
}

/* serve_on_accept - the spool's accept hook: each recipient's "accepted" event,
 * timed as the message's arrival (env->created), so that the event, the queue and
 * the API's "created" all give one time for it. */
static void serve_on_accept(void *ctx, const struct spool_env *env)
{
	struct evlog_event ev = {
		.time = env->created,
		.type = EVLOG_ACCEPTED,
		.msgid = env->id,
		.sender = env->sender,
		.user = env->user,
		.stream = evlog_stream_name(env->flags & SPOOL_F_BULK),
		.source = (env->flags & SPOOL_F_API) ? "api" : "smtp",
	};
	for (size_t i = 0; i < env->nrcpt; i++) {
		ev.recipient = env->rcpt[i].addr;
		evlog_emit(&ev);
	}
}

/* serve_on_commit - the spool's observer: a new message is durable. */
static void serve_on_commit(void *ctx, uint64_t id)
{
	mta_notify(ctx, id);
}

static void serve_on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("event=signal signal=%s", strsignal((int)sig));
	sdnotify_send("STOPPING=1");
	smtp_server_stop(arg);
}

/* A SIGHUP that came while starting, before the event loop's handler was in
 * place: it is acted on once the daemon serves, not lost. */
static volatile sig_atomic_t serve_early_hup;

static void serve_on_early_hup(int sig)
{
	(void)sig;
	serve_early_hup = 1;
}

/* serve_on_hup - SIGHUP: reload the config (systemd's ExecReload sends it). */
static void serve_on_hup(evutil_socket_t sig, short what, void *arg)
{
	log_info("event=signal signal=%s", strsignal((int)sig));
	cli_reload_request(arg);
}

/* cli_serve - run the daemon until SIGTERM/SIGINT. */
/* Descriptors relevo needs besides connections: listeners, spool segments, the
 * store, the resolver, the control socket, key and log files, workers' pipes. */
#define SERVE_FD_RESERVE 128

/*
 * serve_fd_limit - raise RLIMIT_NOFILE's soft limit to the hard one (systemd
 * gives 1024 soft) and warn when the configured connection limits do not fit
 * under it (issue 12): past it accept() fails with EMFILE, and a spool segment
 * or a DKIM key file may fail to open mid-session. The HTTP API's connections
 * (http.max_connections, when it listens) count too.
 */
static void serve_fd_limit(const struct conf *c)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info("event=fd_limit_raised from=%llu to=%llu", (unsigned long long)was,
				 (unsigned long long)rl.rlim_cur);
		else if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return;
	}
	unsigned http = c->http.nlisten > 0 ? c->http.max_connections : 0;
	uint64_t need = (uint64_t)c->smtp.max_connections + c->delivery.max_connections + http +
			SERVE_FD_RESERVE;
	if (rl.rlim_cur != RLIM_INFINITY && need > (uint64_t)rl.rlim_cur)
		log_warn("event=fd_limit_low limit=%llu needed=%llu smtp_max_connections=%u "
			 "delivery_max_connections=%u http_max_connections=%u hint=\"raise "
			 "LimitNOFILE (ulimit -n) or lower smtp.max_connections\"",
			 (unsigned long long)rl.rlim_cur, (unsigned long long)need,
			 c->smtp.max_connections, c->delivery.max_connections, http);
}

int cli_serve(int argc, char **argv, const char *conf_path)
{
	if (argc > 1) {
		fprintf(stderr, "usage: relevo serve [-c FILE]\n");
		return 2;
	}
	log_set_level(getenv("RELEVO_DEBUG") ? LOG_LV_DEBUG : LOG_LV_INFO);
	/* Until the loop's handler is in place a SIGHUP must not kill a starting
	 * daemon, nor be forgotten. */
	signal(SIGHUP, serve_on_early_hup);
	struct conf *c = cli_load_conf_full(conf_path);
	if (c == NULL)
		return 1;
	if (!serve_check_run_as(c)) { /* before binding anything */
		conf_free(c);
		return 1;
	}
	core_threads_init();
	health_mark_started();
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	serve_fd_limit(c);
	int status = 1;
	struct cli_daemon d = {.conf_path = conf_path, .conf = c};
	struct cli_dkim_watch *dkim_watch = NULL;
	struct http_metrics *hm = NULL;
	struct serve_events se = {.store = NULL};
	atomic_init(&se.retention, c->events.retention);
	d.events_retention = &se.retention;
	bool evlog_on = false;
	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	/* data_dir holds keys, the spool and the control socket: owner-only, even if
	 * it was created beforehand with a wider mode (install -d gives 0755). */
	if (file_mkdir_p(c->data_dir, 0700) != RC_OK ||
	    chmod(c->data_dir, serve_data_dir_mode(c)) != 0) {
		log_err("event=startup_failed data_dir=%s error=\"%s\"", c->data_dir,
			strerror(errno));
		goto out;
	}
	if (store_open(c->data_dir, &d.store) != RC_OK) {
		log_err("event=startup_failed what=store data_dir=%s", c->data_dir);
		goto out;
	}
	enum rc rc = spool_open(c->data_dir, SPOOL_RDWR, &d.spool);
	if (rc != RC_OK) {
		log_err("event=startup_failed what=spool data_dir=%s error=%s", c->data_dir,
			rc == RC_EXISTS ? "\"locked: another relevo serves this data_dir\""
					: rc_name(rc));
		goto out;
	}
	struct spool *sp = d.spool;
	log_info("event=spool_recovered messages=%zu quarantined=%zu", spool_count(sp),
		 spool_quarantined(sp));
	/* RELEVO_SPOOL_SEGMENT_MAX (bytes), for tests only: small segments make the
	 * crash tests rotate and delete segments (see SECURITY.md). */
	const char *seg_max = getenv("RELEVO_SPOOL_SEGMENT_MAX");
	uint64_t seg_bytes;
	if (seg_max && str_to_u64(seg_max, &seg_bytes)) {
		spool_set_segment_max(sp, seg_bytes);
		spool_set_compact_age(sp, 0); /* and compact at once, under the crashes */
	}
	se.store = d.store;
	se.last_prune = 0;
	if (http_webhooks_start(c, d.store, &se.hooks) != RC_OK)
		goto out;
	d.hooks = se.hooks;
	if (evlog_start(c->events.queue_max, serve_on_events, &se) != RC_OK)
		goto out;
	evlog_on = true;
	spool_set_accept_hook(sp, serve_on_accept, NULL);
	if (mta_new(c, sp, &d.mta) != RC_OK)
		goto out;
	spool_set_observer(sp, serve_on_commit, d.mta);
	if (smtp_server_new(c, sp, d.store, &d.srv) != RC_OK)
		goto out;
	d.base = smtp_server_base(d.srv);
	cli_reload_init(&d);
	if (http_server_new(c, sp, d.store, &d.http) != RC_OK)
		goto out;
	if (http_metrics_new(d.base, c, sp, &hm) != RC_OK)
		goto out;
	d.ctl = cli_ctl_start(d.base, c, sp, d.mta);
	if (d.ctl == NULL || !serve_drop_privileges(c))
		goto out;
	cli_ctl_set_reload(d.ctl, cli_reload_request, &d);
	sigterm = evsignal_new(d.base, SIGTERM, serve_on_signal, d.srv);
	sigint = evsignal_new(d.base, SIGINT, serve_on_signal, d.srv);
	sighup = evsignal_new(d.base, SIGHUP, serve_on_hup, &d);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);
	if (mta_start(d.mta) != RC_OK)
		goto out;
	if (d.http != NULL && http_server_start(d.http) != RC_OK)
		goto out;
	if ((dkim_watch = cli_dkim_watch_start(c, d.store)) == NULL)
		goto out;
	log_info("event=started hostname=%s data_dir=%s pid=%d", c->hostname, c->data_dir,
		 (int)getpid());
	sdnotify_send("READY=1");
	if (serve_early_hup)
		event_active(sighup, EV_SIGNAL, 1);
	smtp_server_run(d.srv);
	status = 0;
out:
	cli_dkim_watch_stop(dkim_watch);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	cli_ctl_stop(d.ctl);
	http_metrics_free(hm);
	/* The threads that report a reload's progress go first: then its state. */
	http_server_stop(d.http);
	mta_stop(d.mta);
	cli_reload_fini(&d);
	smtp_server_free(d.srv);
	http_server_free(d.http);
	if (d.spool)
		spool_close(d.spool); /* drains the outcomes the engine recorded */
	mta_free(d.mta);
	if (evlog_on)
		evlog_stop(); /* every event emitted so far reaches the store */
	http_webhooks_stop(se.hooks);
	if (d.store)
		store_close(d.store);
	log_info("event=stopped status=%d", status);
	conf_unref(d.conf);
	return status;
}
