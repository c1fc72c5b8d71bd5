/*
 * http_metrics.c - GET /metrics (Prometheus text format 0.0.4) on its own
 * listener, http.metrics_listen (default 127.0.0.1:9025, "" for none).
 *
 * It runs on the loop it is given (the daemon's main loop): a scrape renders the
 * registry (core_metrics.c) after setting the queue gauges from spool_stats, so
 * it costs one walk of the queue index. It is deliberately small so that it
 * cannot be turned against the daemon: GET and HEAD only (evhttp answers other
 * methods itself), no body, 4 KiB of headers, a 10 s timeout, one path, no
 * keys, no parameters, nothing written. Loopback by default; exposing it wider is
 * the operator's choice.
 *
 * Bind failures: of an address written in the configuration, fatal at start (as
 * for every listener); of the default, a warning, and the daemon runs without
 * metrics (a second daemon on the host, or a test, must still start).
 */
#include "http/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "spool/spool.h"

#define METRICS_HEADERS_MAX 4096
#define METRICS_TIMEOUT_S   10

struct http_metrics {
	struct evhttp *http;
	struct spool *spool;
};

/* metrics_queue_gauges - the queue's gauges, as of now. */
static void metrics_queue_gauges(struct spool *sp)
{
	struct spool_stats st;
	spool_stats(sp, false, &st);
	metrics_gauge_set(METRICS_G_QUEUE_MESSAGES, (int64_t)st.messages);
	static const enum metrics_gauge g[SPOOL_STATS__COUNT][2] = {
	    [SPOOL_STATS_ACTIVE] = {METRICS_G_QUEUE_ACTIVE_TX, METRICS_G_QUEUE_ACTIVE_BULK},
	    [SPOOL_STATS_DEFERRED] = {METRICS_G_QUEUE_DEFERRED_TX, METRICS_G_QUEUE_DEFERRED_BULK},
	    [SPOOL_STATS_HELD] = {METRICS_G_QUEUE_HELD_TX, METRICS_G_QUEUE_HELD_BULK},
	};
	for (size_t s = 0; s < SPOOL_STATS__COUNT; s++)
		for (size_t b = 0; b < 2; b++)
			metrics_gauge_set(g[s][b], (int64_t)st.rcpts[s][b]);
	int64_t age = st.oldest ? (time_now_ms() - st.oldest) / 1000 : 0;
	metrics_gauge_set(METRICS_G_QUEUE_OLDEST_AGE, age > 0 ? age : 0);
}

static void metrics_reply(struct evhttp_request *req, int status, const char *reason,
                          const char *text)
{
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, text, strlen(text));
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_send_reply(req, status, reason, buf);
	evbuffer_free(buf);
}

/* metrics_on_request - /metrics, or 404. */
static void metrics_on_request(struct evhttp_request *req, void *arg)
{
	struct http_metrics *hm = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		metrics_reply(req, 404, "Not Found", "not found: the metrics are at /metrics\n");
		return;
	}
	metrics_queue_gauges(hm->spool);
	char *text = metrics_render();
	metrics_reply(req, 200, "OK", text);
	free(text);
}

/* http_metrics_bind - split address:port for evhttp. */
static bool http_metrics_bind(struct http_metrics *hm, const char *address)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	char host[INET6_ADDRSTRLEN] = "";
	uint16_t port = 0;
	if (!conf_parse_hostport(address, &sa, &salen))
		return false;
	if (sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		port = ntohs(s4->sin_port);
	}
	errno = 0;
	return evhttp_bind_socket_with_handle(hm->http, host, port) != NULL;
}

/* http_metrics_new - serve /metrics on base at http.metrics_listen. */
enum rc http_metrics_new(struct event_base *base, const struct conf *c, struct spool *sp,
                         struct http_metrics **out)
{
	*out = NULL;
	if (c->http.metrics_listen == NULL)
		return RC_OK;
	struct http_metrics *hm = xcalloc(1, sizeof *hm);
	hm->spool = sp;
	hm->http = evhttp_new(base);
	if (hm->http == NULL)
		fatal("event=evhttp_new_failed what=metrics");
	evhttp_set_gencb(hm->http, metrics_on_request, hm);
	evhttp_set_allowed_methods(hm->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(hm->http, METRICS_HEADERS_MAX);
	evhttp_set_max_body_size(hm->http, 0);
	evhttp_set_timeout(hm->http, METRICS_TIMEOUT_S);
	if (!http_metrics_bind(hm, c->http.metrics_listen)) {
		int err = errno;
		http_metrics_free(hm);
		if (c->http.metrics_listen_given) {
			log_err("event=listen_failed address=%s what=metrics error=\"%s\"",
			        c->http.metrics_listen, err ? strerror(err) : "cannot bind");
			return RC_IO;
		}
		log_warn("event=listen_failed address=%s what=metrics error=\"%s\" "
		         "note=\"the default http.metrics_listen; running without metrics\"",
		         c->http.metrics_listen, err ? strerror(err) : "cannot bind");
		return RC_OK;
	}
	log_info("event=listening address=%s mode=metrics", c->http.metrics_listen);
	health_listening(HEALTH_LISTENER_METRICS, c->http.metrics_listen, true);
	*out = hm;
	return RC_OK;
}

/* http_metrics_free - close the listener and its connections. */
void http_metrics_free(struct http_metrics *hm)
{
	if (hm == NULL)
		return;
	evhttp_free(hm->http);
	free(hm);
}
