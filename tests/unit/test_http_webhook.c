/*
 * test_http_webhook.c - the webhook sender: the signature against values made
 * by the openssl command line, the retry schedule, and the sender for real: a
 * store in a mkdtemp directory, a small HTTP server on 127.0.0.1 (port chosen by
 * the kernel) answering from a script (500, 204, or hold the request until the
 * client goes away), and http_webhooks_* between them.
 *
 * RELEVO_WEBHOOK_RETRY_MS=100 makes every retry come 100 ms after a failure.
 */
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "http/http.h"
#include "store/store.h"
#include "unit_util.h"

#define SECRET "whsec_test"

/* ---- the signature -------------------------------------------------------------- */

/* Expected MACs made independently with the openssl command line, e.g.
 *   printf '%s' '1795698339.{"id":42,"type":"delivered"}' \
 *     | openssl dgst -sha256 -hmac 'whsec_test'
 */
static const struct {
	const char *label;
	const char *secret;
	int64_t t;
	const char *body;
	const char *want;
} sig_cases[] = {
    {"event body", SECRET, 1795698339, "{\"id\":42,\"type\":\"delivered\"}",
     "t=1795698339,v1=8cb61490a73b34d5b434a19a1a1ef671d0e858572a8b0b69005054ba70a512df"},
    {"empty secret, empty body, t=0", "", 0, "",
     "t=0,v1=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3"},
    {"one-byte secret, empty body", "k", 1700000000, "",
     "t=1700000000,v1=5c2999a43333a6877f49c8003f235c4f6de40f85b1b7414b70bd470a8db53d97"},
};

static void test_signature(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(sig_cases); i++) {
		char *got = http_webhook_signature(sig_cases[i].secret, sig_cases[i].t,
		                                   sig_cases[i].body, strlen(sig_cases[i].body));
		if (strcmp(got, sig_cases[i].want) != 0)
			fail_msg("case '%s': got %s, want %s", sig_cases[i].label, got,
			         sig_cases[i].want);
		free(got);
	}
	/* len counts, not the NUL: a body with a NUL inside is signed whole */
	char *a = http_webhook_signature(SECRET, 1, "ab\0c", 4);
	char *b = http_webhook_signature(SECRET, 1, "ab", 2);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

/* ---- the retry schedule --------------------------------------------------------- */

#define SEC 1000LL
#define H  (3600 * SEC)
#define T0 1795698339000LL /* a job's creation, unix ms */

static const struct {
	const char *label;
	uint32_t attempts; /* the attempt that just failed */
	int64_t now;
	int64_t fixed;
	int64_t want; /* 0: give up */
} retry_cases[] = {
    {"first failure: 30 s", 1, T0, 0, T0 + 30 * SEC},
    {"second: 1 min", 2, T0 + 30 * SEC, 0, T0 + 90 * SEC},
    {"third: 2 min", 3, T0 + 100 * SEC, 0, T0 + 220 * SEC},
    {"fourth: 5 min", 4, T0 + 400 * SEC, 0, T0 + 700 * SEC},
    {"fifth: 10 min", 5, T0 + 1000 * SEC, 0, T0 + 1600 * SEC},
    {"sixth: 30 min", 6, T0 + 2000 * SEC, 0, T0 + 3800 * SEC},
    {"seventh: 1 h", 7, T0 + 4000 * SEC, 0, T0 + 4000 * SEC + H},
    {"eighth: 2 h", 8, T0 + 2 * H, 0, T0 + 4 * H},
    {"later ones: still 2 h", 15, T0 + 10 * H, 0, T0 + 12 * H},
    {"attempts 0 is treated as the first", 0, T0, 0, T0 + 30 * SEC},
    {"never past the day: last try at 24 h", 12, T0 + 23 * H, 0, T0 + 24 * H},
    {"a day old: give up", 13, T0 + 24 * H, 0, 0},
    {"older: give up", 2, T0 + 25 * H, 0, 0},
    {"fixed delay replaces the schedule", 1, T0, 100, T0 + 100},
    {"fixed delay for a late attempt too", 9, T0 + 5 * H, 100, T0 + 5 * H + 100},
    {"fixed delay: the day still ends it", 9, T0 + 24 * H, 100, 0},
};

static void test_retry_schedule(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(retry_cases); i++) {
		int64_t got = http_webhook_retry_at(retry_cases[i].attempts, T0, retry_cases[i].now,
		                                    retry_cases[i].fixed);
		if (got != retry_cases[i].want)
			fail_msg("case '%s': got %lld, want %lld", retry_cases[i].label,
			         (long long)got, (long long)retry_cases[i].want);
	}
}

/* ---- a scripted HTTP server -------------------------------------------------------- */

#define FAKE_HANG     -1 /* hold the request until the client closes */
#define FAKE_REQS_MAX 16
#define FAKE_HEAD_MAX 8192
#define FAKE_BODY_MAX 8192

struct fake_req {
	char path[128];
	char signature[256];
	char event_id[32];
	char content_type[64];
	char user_agent[64];
	char body[FAKE_BODY_MAX];
};

struct fake_server {
	int lfd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	int script[FAKE_REQS_MAX]; /* answer per request; past the end: 204 */
	size_t nscript;
	pthread_mutex_t lock;
	size_t nreq; /* requests read completely */
	struct fake_req reqs[FAKE_REQS_MAX];
};

/* hdr_get - the value of header name in head (CRLF lines), "" if absent. */
static void hdr_get(const char *head, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	out[0] = '\0';
	for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			v += strspn(v, " ");
			size_t n = strcspn(v, "\r");
			snprintf(out, outsz, "%.*s", (int)n, v);
			return;
		}
	}
}

/* fake_read - one request from fd into r; false on EOF or junk. */
static bool fake_read(int fd, struct fake_req *r)
{
	char buf[FAKE_HEAD_MAX + FAKE_BODY_MAX];
	size_t n = 0;
	char *end = NULL;
	while (end == NULL) {
		ssize_t k = read(fd, buf + n, FAKE_HEAD_MAX - 1 - n);
		if (k <= 0)
			return false;
		n += (size_t)k;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	size_t head = (size_t)(end + 4 - buf);
	char cl[32];
	uint64_t len = 0;
	hdr_get(buf, "Content-Length", cl, sizeof cl);
	if (!str_to_u64(cl, &len) || len >= FAKE_BODY_MAX)
		return false;
	while (n < head + len) {
		ssize_t k = read(fd, buf + n, head + len - n);
		if (k <= 0)
			return false;
		n += (size_t)k;
	}
	memcpy(r->body, buf + head, len);
	r->body[len] = '\0';
	buf[head] = '\0';
	sscanf(buf, "POST %127s HTTP/1.1", r->path);
	hdr_get(buf, "X-Relevo-Signature", r->signature, sizeof r->signature);
	hdr_get(buf, "X-Relevo-Event-Id", r->event_id, sizeof r->event_id);
	hdr_get(buf, "Content-Type", r->content_type, sizeof r->content_type);
	hdr_get(buf, "User-Agent", r->user_agent, sizeof r->user_agent);
	return true;
}

static void fake_serve(struct fake_server *s, int fd)
{
	struct fake_req r = {0};
	if (!fake_read(fd, &r))
		return;
	pthread_mutex_lock(&s->lock);
	size_t i = s->nreq;
	if (i < FAKE_REQS_MAX)
		s->reqs[s->nreq++] = r;
	int answer = i < s->nscript ? s->script[i] : 204;
	pthread_mutex_unlock(&s->lock);
	if (answer == FAKE_HANG) {
		/* until the client hangs up (http_webhooks_stop), or 10 s */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		for (int t = 0; t < 200 && !atomic_load(&s->stop); t++)
			if (poll(&p, 1, 50) > 0)
				break;
		return;
	}
	char reply[128];
	int len = snprintf(reply, sizeof reply,
	                   "HTTP/1.1 %d Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	                   answer);
	assert_int_equal(write(fd, reply, (size_t)len), len);
}

static void *fake_main(void *arg)
{
	struct fake_server *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		fake_serve(s, fd);
		close(fd);
	}
	return NULL;
}

static void fake_start(struct fake_server *s, const int *script, size_t nscript)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
	if (nscript > 0)
		memcpy(s->script, script, nscript * sizeof *script);
	s->nscript = nscript;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof sa;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(s->lfd, 16), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &salen), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, fake_main, s), 0);
}

static void fake_stop(struct fake_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	pthread_mutex_destroy(&s->lock);
}

static size_t fake_count(struct fake_server *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->nreq;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- fixture: a store, a server, a config ------------------------------------------- */

struct fixture {
	char root[64];
	struct store *st;
	struct fake_server srv;
	char url[2][128]; /* http://127.0.0.1:PORT/conf and /alice */
	char *events[1];
	struct conf_webhook hook;
	struct conf conf;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (unit_store_open("webhook", "", f->root, sizeof f->root, &f->st) != 0)
		return -1;
	setenv("RELEVO_WEBHOOK_RETRY_MS", "100", 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = unit_store_close(f->root, f->st);
	free(f);
	return r;
}

/* with_server - start the scripted server and one config webhook pointing at
 * its /conf (for every event type, or only events[0] when given). */
static void with_server(struct fixture *f, const int *script, size_t nscript, char *only)
{
	fake_start(&f->srv, script, nscript);
	snprintf(f->url[0], sizeof f->url[0], "http://127.0.0.1:%u/conf", f->srv.port);
	snprintf(f->url[1], sizeof f->url[1], "http://127.0.0.1:%u/alice", f->srv.port);
	f->events[0] = only;
	f->hook = (struct conf_webhook){
	    .url = f->url[0], .secret = SECRET, .events = f->events, .nevents = only ? 1 : 0};
	f->conf.webhooks = &f->hook;
	f->conf.nwebhooks = 1;
}

/* wait_until - poll pred for up to 5 s. */
static bool wait_until(bool (*pred)(struct fixture *f), struct fixture *f)
{
	for (int i = 0; i < 500; i++) {
		if (pred(f))
			return true;
		usleep(10 * 1000);
	}
	return pred(f);
}

static bool no_job_left(struct fixture *f)
{
	int64_t when;
	return store_webhook_job_next(f->st, &when) == RC_NOTFOUND;
}

static bool got_one(struct fixture *f)
{
	return fake_count(&f->srv) >= 1;
}

static bool got_two(struct fixture *f)
{
	return fake_count(&f->srv) >= 2;
}

static struct evlog_event test_event(int64_t seq, enum evlog_type type, char *user)
{
	return (struct evlog_event){
	    .seq = seq,
	    .time = T0 + 123,
	    .type = type,
	    .msgid = 0x19a5c3e0001ULL,
	    .recipient = "bob@example.org",
	    .sender = "alice@example.com",
	    .user = user,
	    .stream = "transactional",
	    .source = "smtp",
	    .status = "2.0.0",
	    .remote = "mx.example.org[192.0.2.1]",
	    .reply = "250 2.0.0 ok",
	    .attempts = 1,
	};
}

/* check_request - what a receiver would verify: headers, and the signature of
 * exactly this body with the shared secret, made moments ago. */
static void check_request(const struct fake_req *r, const char *want_body, const char *event_id)
{
	long long t = 0;
	char mac[80] = "";
	assert_string_equal(r->body, want_body);
	assert_string_equal(r->event_id, event_id);
	assert_string_equal(r->content_type, "application/json");
	assert_string_equal(r->user_agent, "relevo-webhook/1");
	assert_int_equal(sscanf(r->signature, "t=%lld,v1=%64[0-9a-f]", &t, mac), 2);
	assert_int_equal(strlen(mac), 64);
	long long now = time_now_ms() / 1000;
	assert_true(t <= now && t >= now - 30);
	char *want = http_webhook_signature(SECRET, t, r->body, strlen(r->body));
	assert_string_equal(r->signature, want);
	free(want);
}

/* A 500 is retried (after RELEVO_WEBHOOK_RETRY_MS), the 204 ends the job. */
static void test_retry_then_delivered(void **state)
{
	struct fixture *f = *state;
	static const int script[] = {500, 204};
	with_server(f, script, ARRAY_LEN(script), NULL);
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	struct evlog_event ev = test_event(42, EVLOG_DELIVERED, NULL);
	struct evlog_event *evs[] = {&ev};
	int64_t t0 = time_mono_ms();
	http_webhooks_enqueue(w, evs, 1);
	assert_true(wait_until(got_two, f));
	assert_true(time_mono_ms() - t0 >= 100); /* the retry waited its delay */
	assert_true(wait_until(no_job_left, f));
	http_webhooks_stop(w);
	fake_stop(&f->srv);

	char *body = http_event_json(&ev);
	assert_int_equal(f->srv.nreq, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(f->srv.reqs[i].path, "/conf");
		check_request(&f->srv.reqs[i], body, "42");
	}
	free(body);
}

/* A POST in flight at stop is not lost: the job stays stored, survives closing
 * the store, and the next start sends it (the same body and event id). */
static void test_stop_and_resume(void **state)
{
	struct fixture *f = *state;
	static const int script[] = {FAKE_HANG, 204};
	with_server(f, script, ARRAY_LEN(script), NULL);
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	struct evlog_event ev = test_event(7, EVLOG_BOUNCED, NULL);
	struct evlog_event *evs[] = {&ev};
	http_webhooks_enqueue(w, evs, 1);
	assert_true(wait_until(got_one, f));
	http_webhooks_stop(w);
	assert_false(no_job_left(f));

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->root, &f->st), RC_OK);
	assert_false(no_job_left(f));
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	assert_true(wait_until(got_two, f));
	assert_true(wait_until(no_job_left, f));
	http_webhooks_stop(w);
	fake_stop(&f->srv);

	char *body = http_event_json(&ev);
	assert_int_equal(f->srv.nreq, 2);
	check_request(&f->srv.reqs[0], body, "7");
	check_request(&f->srv.reqs[1], body, "7");
	free(body);
}

/* Routing: the config webhook takes only its event type; an account's webhook
 * only its own events of its types; events without an account go to config
 * webhooks only. */
static void test_routing(void **state)
{
	struct fixture *f = *state;
	with_server(f, NULL, 0, "delivered");
	const char *d[] = {"example.com"};
	int64_t id = 0;
	assert_int_equal(store_user_add(f->st, "alice", "$6$x$y", d, 1), RC_OK);
	assert_int_equal(store_user_add(f->st, "carol", "$6$x$y", d, 1), RC_OK);
	assert_int_equal(store_webhook_add(f->st, "alice", f->url[1], SECRET, "bounced", &id),
	                 RC_OK);
	f->conf.http.webhooks_allow_private = true; /* alice's endpoint is on loopback */
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	struct evlog_event ev[] = {
	    test_event(1, EVLOG_DELIVERED, "alice"), /* config */
	    test_event(2, EVLOG_BOUNCED, "alice"),   /* alice's */
	    test_event(3, EVLOG_ACCEPTED, NULL),     /* nobody */
	    test_event(4, EVLOG_BOUNCED, "carol"),   /* nobody */
	    test_event(5, EVLOG_BOUNCED, NULL),      /* nobody */
	};
	struct evlog_event *evs[] = {&ev[0], &ev[1], &ev[2], &ev[3], &ev[4]};
	http_webhooks_enqueue(w, evs, ARRAY_LEN(evs));
	assert_true(wait_until(got_two, f));
	assert_true(wait_until(no_job_left, f));
	usleep(200 * 1000); /* room for a wrong third POST to show up */
	http_webhooks_stop(w);
	fake_stop(&f->srv);

	assert_int_equal(f->srv.nreq, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct fake_req *r = &f->srv.reqs[i];
		bool conf = strcmp(r->path, "/conf") == 0;
		if (!conf)
			assert_string_equal(r->path, "/alice");
		char *body = http_event_json(conf ? &ev[0] : &ev[1]);
		check_request(r, body, conf ? "1" : "2");
		free(body);
	}
	assert_string_not_equal(f->srv.reqs[0].path, f->srv.reqs[1].path);
}

/* An account's webhook may not reach the operator's network (SSRF): by default a
 * user endpoint on loopback gets nothing and its job is dropped at once, while the
 * operator's configured endpoint on loopback is served. */
static void test_private_address_refused_for_accounts(void **state)
{
	struct fixture *f = *state;
	with_server(f, NULL, 0, "delivered");
	const char *d[] = {"example.com"};
	int64_t id = 0;
	assert_int_equal(store_user_add(f->st, "alice", "$6$x$y", d, 1), RC_OK);
	assert_int_equal(store_webhook_add(f->st, "alice", f->url[1], SECRET, "", &id), RC_OK);
	f->conf.http.webhooks_allow_private = false;
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	struct evlog_event ev = test_event(1, EVLOG_DELIVERED, "alice");
	struct evlog_event *evs[] = {&ev};
	http_webhooks_enqueue(w, evs, 1);
	assert_true(wait_until(got_one, f));
	assert_true(wait_until(no_job_left, f));
	usleep(300 * 1000); /* a retry to alice's endpoint would come after 100 ms */
	http_webhooks_stop(w);
	fake_stop(&f->srv);
	assert_int_equal(f->srv.nreq, 1);
	assert_string_equal(f->srv.reqs[0].path, "/conf");
}

/* Who created the webhook decides, never its URL (issue 12): an account's
 * webhook with exactly the URL of an operator's is still refused a private
 * address, so the operator's endpoint gets its own event once, not alice's too. */
static void test_account_webhook_with_operator_url_is_still_checked(void **state)
{
	struct fixture *f = *state;
	with_server(f, NULL, 0, "delivered");
	const char *d[] = {"example.com"};
	int64_t id = 0;
	assert_int_equal(store_user_add(f->st, "alice", "$6$x$y", d, 1), RC_OK);
	assert_int_equal(store_webhook_add(f->st, "alice", f->url[0], SECRET, "", &id), RC_OK);
	f->conf.http.webhooks_allow_private = false;
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	struct evlog_event ev = test_event(1, EVLOG_DELIVERED, "alice");
	struct evlog_event *evs[] = {&ev};
	http_webhooks_enqueue(w, evs, 1);
	assert_true(wait_until(got_one, f));
	assert_true(wait_until(no_job_left, f));
	usleep(300 * 1000); /* a second POST (alice's) would have come by now */
	http_webhooks_stop(w);
	fake_stop(&f->srv);
	assert_int_equal(f->srv.nreq, 1);
	assert_string_equal(f->srv.reqs[0].path, "/conf");
}

/* A job a day old is given up after its failed attempt: one POST, then no job. */
static void test_given_up_after_a_day(void **state)
{
	struct fixture *f = *state;
	static const int script[] = {500, 500, 500};
	with_server(f, script, ARRAY_LEN(script), NULL);
	int64_t now = time_now_ms();
	struct store_webhook_job job = {
	    .url = f->url[0], .secret = SECRET, .body = "{\"id\":9}", .created = now - 25 * H,
	    .operator = true};
	assert_int_equal(store_webhook_jobs_add(f->st, &job, 1), RC_OK);
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	assert_true(wait_until(got_one, f));
	assert_true(wait_until(no_job_left, f));
	usleep(300 * 1000); /* a wrong retry would come after 100 ms */
	http_webhooks_stop(w);
	fake_stop(&f->srv);
	assert_int_equal(f->srv.nreq, 1);
	check_request(&f->srv.reqs[0], "{\"id\":9}", "9");
}

/* Only http and https: a job for another scheme is never tried and is given up
 * at once rather than retried for a day. */
static void test_other_schemes_refused(void **state)
{
	struct fixture *f = *state;
	with_server(f, NULL, 0, NULL);
	char url[2][160];
	snprintf(url[0], sizeof url[0], "ftp://127.0.0.1:%u/x", f->srv.port);
	snprintf(url[1], sizeof url[1], "file://%s/relevo.db", f->root);
	struct store_webhook_job jobs[] = {
	    {.url = url[0], .secret = SECRET, .body = "{}"},
	    {.url = url[1], .secret = SECRET, .body = "{}"},
	};
	assert_int_equal(store_webhook_jobs_add(f->st, jobs, 2), RC_OK);
	struct http_webhooks *w = NULL;
	assert_int_equal(http_webhooks_start(&f->conf, f->st, &w), RC_OK);
	assert_true(wait_until(no_job_left, f));
	http_webhooks_stop(w);
	fake_stop(&f->srv);
	assert_int_equal(f->srv.nreq, 0);
}

static void test_stop_null(void **state)
{
	http_webhooks_stop(NULL);
	http_webhooks_enqueue(NULL, NULL, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_set_level(LOG_LV_WARN);
	/* loopback only: no proxy from the environment */
	static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
	                                      "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
	for (size_t i = 0; i < ARRAY_LEN(proxies); i++)
		unsetenv(proxies[i]);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signature),
	    cmocka_unit_test(test_retry_schedule),
	    T(test_retry_then_delivered),
	    T(test_stop_and_resume),
	    T(test_routing),
	    T(test_private_address_refused_for_accounts),
	    T(test_account_webhook_with_operator_url_is_still_checked),
	    T(test_given_up_after_a_day),
	    T(test_other_schemes_refused),
	    cmocka_unit_test(test_stop_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
