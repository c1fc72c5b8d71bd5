/*
 * cli_status.c - `relevo status [--json]`: what the running daemon is doing.
 *
 * The client asks over the control socket ("status" or "status --json"); the
 * daemon answers from its own memory (cli_status_answer, on the main loop):
 * version, uptime, listeners and their open sessions (the HTTP API's with its
 * open connections, and the metrics endpoint), the queue by state and its
 * ten largest destinations, the oldest message, deliveries in the last minute,
 * and the last error each subsystem logged. Nothing is read from disk, so the
 * answer is quick and works under run_as. The queue summary walks the index
 * once (spool_stats).
 *
 * With no daemon answering, the client says so and exits 69 (EX_UNAVAILABLE,
 * sysexits.h): a monitor can tell "down" from a usage error (2) or a failure
 * reported by the daemon (1).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/core.h"
#include "spool/spool.h"

#define STATUS_EX_UNAVAILABLE 69 /* sysexits.h EX_UNAVAILABLE */

/* status_duration - "3d04h", "2h03m", "5m07s", "42s". */
static void status_duration(int64_t s, char *out, size_t outsz)
{
	if (s < 0)
		s = 0;
	if (s >= 86400)
		snprintf(out, outsz, "%lldd%02lldh", (long long)(s / 86400),
		         (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(out, outsz, "%lldh%02lldm", (long long)(s / 3600),
		         (long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(out, outsz, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else
		snprintf(out, outsz, "%llds", (long long)s);
}

static uint64_t status_state_total(const struct spool_stats *st, enum spool_stats_state s)
{
	return st->rcpts[s][0] + st->rcpts[s][1];
}

/* status_http_json - {"listeners": [...], "connections": N} of the API
 * (connections only for it), or of the metrics endpoint. */
static json_t *status_http_json(enum health_listener_kind kind)
{
	json_t *l = json_array();
	char addr[128];
	for (int i = 0; health_listener(kind, i, addr, sizeof addr); i++)
		json_array_append_new(l, json_string(addr));
	json_t *o = json_pack("{s:o}", "listeners", l);
	if (kind == HEALTH_LISTENER_API)
		json_object_set_new(o, "connections", json_integer(health_api_connections()));
	return o;
}

/* status_json - the answer as one JSON document. */
static char *status_json(const struct spool_stats *st, int64_t now)
{
	json_t *lst = json_array(), *states = json_object(), *top = json_array();
	json_t *errors = json_object();
	for (int i = 0; metrics_listener_name(i) != NULL; i++)
		json_array_append_new(lst,
		                      json_pack("{s:s,s:I}", "address", metrics_listener_name(i),
		                                "sessions", (json_int_t)metrics_sessions_open(i)));
	for (int s = 0; s < SPOOL_STATS__COUNT; s++)
		json_object_set_new(states, spool_stats_state_name(s),
		                    json_pack("{s:I,s:I}", "transactional",
		                              (json_int_t)st->rcpts[s][0], "bulk",
		                              (json_int_t)st->rcpts[s][1]));
	for (size_t i = 0; i < st->ntop; i++)
		json_array_append_new(top, json_pack("{s:s,s:I}", "domain", st->top[i].domain,
		                                     "recipients", (json_int_t)st->top[i].rcpts));
	for (int s = 0; s < HEALTH__COUNT; s++) {
		char text[512];
		int64_t t = health_last_error(s, text, sizeof text);
		char when[32];
		cli_time_utc(t / 1000, when, sizeof when);
		json_object_set_new(errors, health_subsys_name(s),
		                    t ? json_pack("{s:s,s:s}", "time", when, "message", text)
		                      : json_null());
	}
	char started[32];
	cli_time_utc(health_started() / 1000, started, sizeof started);
	json_t *doc =
	    json_pack("{s:s,s:i,s:s,s:I,s:o,s:I,s:{s:I,s:o,s:o,s:o},s:I,s:o}", "version",
	              RELEVO_VERSION, "pid", (int)getpid(), "started", started, "uptime",
	              (json_int_t)((now - health_started()) / 1000), "listeners", lst, "sessions",
	              (json_int_t)metrics_sessions_open(-1), "queue", "messages",
	              (json_int_t)st->messages, "recipients", states, "oldest_age",
	              st->oldest ? json_integer((now - st->oldest) / 1000) : json_null(),
	              "top_destinations", top, "deliveries_last_minute",
	              (json_int_t)metrics_delivered_recent(), "last_errors", errors);
	if (doc == NULL)
		fatal("event=json_pack_failed where=status");
	json_object_set_new(doc, "api", status_http_json(HEALTH_LISTENER_API));
	json_object_set_new(doc, "metrics", status_http_json(HEALTH_LISTENER_METRICS));
	char *s = json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	json_decref(doc);
	return s;
}

/* status_text - the answer for a person. */
static void status_text(const struct spool_stats *st, int64_t now, struct evbuffer *out)
{
	char up[32], started[32], age[32];
	status_duration((now - health_started()) / 1000, up, sizeof up);
	cli_time_utc(health_started() / 1000, started, sizeof started);
	evbuffer_add_printf(out, "relevo %s, pid %d, up %s (since %s)\n", RELEVO_VERSION,
	                    (int)getpid(), up, started);
	evbuffer_add_printf(out, "listeners:\n");
	for (int i = 0; metrics_listener_name(i) != NULL; i++)
		evbuffer_add_printf(out, "  %-40s %lld sessions\n", metrics_listener_name(i),
		                    (long long)metrics_sessions_open(i));
	char addr[128];
	for (int i = 0; health_listener(HEALTH_LISTENER_API, i, addr, sizeof addr); i++)
		evbuffer_add_printf(out, "  %-40s http api\n", addr);
	for (int i = 0; health_listener(HEALTH_LISTENER_METRICS, i, addr, sizeof addr); i++)
		evbuffer_add_printf(out, "  %-40s metrics\n", addr);
	evbuffer_add_printf(out, "sessions: %lld open\n", (long long)metrics_sessions_open(-1));
	if (health_listener(HEALTH_LISTENER_API, 0, addr, sizeof addr))
		evbuffer_add_printf(out, "api connections: %lld open\n",
		                    (long long)health_api_connections());
	evbuffer_add_printf(out,
	                    "queue: %zu messages; recipients: %llu active, %llu deferred, "
	                    "%llu held\n",
	                    st->messages,
	                    (unsigned long long)status_state_total(st, SPOOL_STATS_ACTIVE),
	                    (unsigned long long)status_state_total(st, SPOOL_STATS_DEFERRED),
	                    (unsigned long long)status_state_total(st, SPOOL_STATS_HELD));
	if (st->oldest) {
		status_duration((now - st->oldest) / 1000, age, sizeof age);
		evbuffer_add_printf(out, "oldest message: %s old\n", age);
	} else {
		evbuffer_add_printf(out, "oldest message: none\n");
	}
	evbuffer_add_printf(out, "top destinations:%s\n", st->ntop ? "" : " none");
	for (size_t i = 0; i < st->ntop; i++)
		evbuffer_add_printf(out, "  %-40s %llu recipients\n", st->top[i].domain,
		                    (unsigned long long)st->top[i].rcpts);
	evbuffer_add_printf(out, "deliveries in the last minute: %llu\n",
	                    (unsigned long long)metrics_delivered_recent());
	evbuffer_add_printf(out, "last errors:\n");
	for (int s = 0; s < HEALTH__COUNT; s++) {
		char text[512], when[32];
		int64_t t = health_last_error(s, text, sizeof text);
		cli_time_utc(t / 1000, when, sizeof when);
		evbuffer_add_printf(out, "  %-9s %s%s%s\n", health_subsys_name(s),
		                    t ? when : "none", t ? " " : "", t ? text : "");
	}
}

/* cli_status_answer - (daemon) answer "status" or "status --json"; exit status. */
int cli_status_answer(struct spool *sp, bool json, struct evbuffer *out)
{
	struct spool_stats st;
	spool_stats(sp, true, &st);
	int64_t now = time_now_ms();
	if (json) {
		char *s = status_json(&st, now);
		evbuffer_add_printf(out, "%s\n", s);
		free(s);
	} else {
		status_text(&st, now, out);
	}
	return 0;
}

/* status_daemon_answers - does anything accept on the control socket? */
static bool status_daemon_answers(const struct conf *c, char *why, size_t whysz)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path, sizeof sun.sun_path, "%s/control.sock", c->data_dir);
	if (n < 0 || (size_t)n >= sizeof sun.sun_path) {
		snprintf(why, whysz, "the control socket path is too long");
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	if (!ok)
		snprintf(why, whysz, "nothing answers on %s: %s", sun.sun_path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return ok;
}

/* cli_status - `relevo status [--json]`. */
int cli_status(int argc, char **argv, const char *conf_path)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: relevo status [--json] [-c FILE]\n"
			       "exit 0: the daemon answered; 69: no daemon is running\n");
			return 0;
		} else {
			fprintf(stderr, "usage: relevo status [--json] [-c FILE]\n");
			return 2;
		}
	}
	struct conf *c = cli_load_conf(conf_path);
	if (c == NULL)
		return 1;
	char why[512];
	int rc;
	if (!status_daemon_answers(c, why, sizeof why)) {
		fprintf(stderr, "relevo: the daemon is not running (%s)\n", why);
		rc = STATUS_EX_UNAVAILABLE;
	} else {
		rc = cli_ctl_request(c, json ? "status --json" : "status");
	}
	conf_free(c);
	return rc;
}
