/*
 * test_conf.c - the configuration loader: defaults, every key, every class of
 * error (each as the exact line a user sees), address and CIDR parsing, and
 * trusted-network matching for IPv4, IPv6 and IPv4-mapped peers, delivery
 * routes (host forms, inherited defaults, auth rules, password files, lookup)
 * and source addresses.
 *
 * Cases are tables with a label each. YAML text may contain "@DIR@", replaced
 * by a temporary directory holding readable cert.pem and key.pem files and
 * the password files pw*.txt (created by the group setup, removed by its
 * teardown).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"

static char tmpdir[64];

/* The smallest valid configuration: one relay listener and its networks. The
 * listen list comes last so that a case can append "  - {...}" listeners. */
#define RELAY HOST RELAY_NOHOST
#define HOST "hostname: relay.test\n"
/* The same without hostname (which is required), for the cases about it. */
#define RELAY_NOHOST                                                                               \
	"trusted_networks: [127.0.0.0/8]\nlisten:\n  - {address: 127.0.0.1:2525, mode: relay}\n"
/* A valid submission setup, using the test's certificate files. */
#define SUBM                                                                                       \
	HOST "tls: {cert: @DIR@/cert.pem, key: @DIR@/key.pem}\n"                                        \
	"listen:\n  - {address: 127.0.0.1:2587, mode: submission}\n"

/* Replace every "@DIR@" in s with tmpdir, into a new string. */
static char *expand(const char *s)
{
	size_t cap = strlen(s) * 2 + 256, o = 0;
	char *out = xmalloc(cap);
	while (*s) {
		if (strncmp(s, "@DIR@", 5) == 0) {
			o += str_lcpy(out + o, tmpdir, cap - o);
			s += 5;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	return out;
}

static enum rc load(const char *yaml, struct conf **c, char **errs)
{
	char *text = expand(yaml);
	enum rc rc = conf_load_string(text, strlen(text), "test.yaml", c, errs);
	free(text);
	return rc;
}

/* Does errs hold exactly this line? */
static bool has_line(const char *errs, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = errs; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len == n && memcmp(p, line, n) == 0)
			return true;
		p = nl ? nl + 1 : NULL;
	}
	return false;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void write_file(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int group_setup(void **state)
{
	str_lcpy(tmpdir, "/tmp/relevo-test-conf-XXXXXX", sizeof tmpdir);
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	write_file("cert.pem", "cert\n");
	write_file("key.pem", "key\n");
	write_file("unreadable.pem", "key\n");
	write_file("open_key.pem", "key\n");
	write_file("group_key.pem", "key\n");
	write_file("pw.txt", "s3cret\nsecond line is ignored\n");
	write_file("pw_crlf.txt", "p@ss word\r\n");
	write_file("pw_noeol.txt", "last");
	write_file("pw_empty.txt", "\nsecret on line two\n");
	write_file("pw_zero.txt", "");
	char path[128];
	/* tls.key must not be open to other users (conf_key_file_parse) */
	snprintf(path, sizeof path, "%s/key.pem", tmpdir);
	if (chmod(path, 0600) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/open_key.pem", tmpdir);
	if (chmod(path, 0604) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/group_key.pem", tmpdir);
	if (chmod(path, 0640) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/unreadable.pem", tmpdir);
	return chmod(path, 0);
}

static int group_teardown(void **state)
{
	static const char *const files[] = {
	    "cert.pem",    "key.pem",      "unreadable.pem", "relevo.yaml",
	    "pw.txt",      "pw_crlf.txt",  "pw_noeol.txt",   "pw_empty.txt",
	    "pw_zero.txt", "open_key.pem", "group_key.pem",  "skiptls.yaml",
	    "skiptls2.yaml", "broken.yaml",
	};
	char path[128];
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

/* ---- defaults and values ---- */

/* A numeric field of struct conf: where it is, how wide, what it should hold. */
struct num_case {
	const char *label;
	size_t off;
	size_t size;
	uint64_t want;
};
#define NUM(label, field, want)                                                                    \
	{                                                                                          \
		label, offsetof(struct conf, field), sizeof(((struct conf *)0)->field), want       \
	}

static void check_nums(const struct conf *c, const struct num_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *p = (const char *)c + cases[i].off;
		uint64_t got;
		if (cases[i].size == sizeof(uint64_t)) {
			memcpy(&got, p, sizeof got);
		} else {
			unsigned u;
			memcpy(&u, p, sizeof u);
			got = u;
		}
		if (got != cases[i].want)
			fail_msg("%s: got %llu, want %llu", cases[i].label, (unsigned long long)got,
			         (unsigned long long)cases[i].want);
	}
}

static void test_defaults(void **state)
{
	static const struct num_case nums[] = {
	    NUM("smtp.max_message_size default", smtp.max_message_size, 26214400),
	    NUM("smtp.max_recipients default", smtp.max_recipients, 1000),
	    NUM("smtp.max_connections default", smtp.max_connections, 1000),
	    NUM("smtp.max_connections_per_ip default", smtp.max_connections_per_ip, 50),
	    NUM("smtp.max_errors default", smtp.max_errors, 10),
	    NUM("smtp.max_auth_failures default", smtp.max_auth_failures, 3),
	    NUM("smtp.timeout_command default", smtp.timeout_command, 300),
	    NUM("smtp.timeout_data default", smtp.timeout_data, 180),
	    NUM("smtp.greeting_delay_ms default", smtp.greeting_delay_ms, 0),
	    NUM("smtp.timeout_data_total default", smtp.timeout_data_total, 600),
	    NUM("smtp.session_max_time default", smtp.session_max_time, 3600),
	    NUM("smtp.auth_lockout_failures default", smtp.auth_lockout_failures, 10),
	    NUM("smtp.auth_lockout_window default", smtp.auth_lockout_window, 900),
	    NUM("smtp.memory_budget default", smtp.memory_budget, 1073741824),
	    NUM("delivery.port default", delivery.port, 25),
	    NUM("server.workers default", server.workers, 0),
	    NUM("dns.timeout default", dns.timeout, 10),
	    NUM("delivery.mode default", delivery.mode, CONF_DELIVERY_NORMAL),
	    NUM("delivery.max_queue_lifetime default", delivery.max_queue_lifetime, 432000),
	    NUM("delivery.delay_warning default", delivery.delay_warning, 0),
	    NUM("delivery.max_connections default", delivery.max_connections, 100),
	    NUM("delivery.max_connections_per_destination default",
	        delivery.max_connections_per_destination, 10),
	    NUM("delivery.max_messages_per_connection default",
	        delivery.max_messages_per_connection, 100),
	    NUM("delivery.tls default", delivery.tls, CONF_TLS_OPPORTUNISTIC),
	    NUM("delivery.nretry_schedule default", delivery.nretry_schedule, 7),
	    NUM("delivery.nroutes default", delivery.nroutes, 0),
	};
	static const uint32_t retry[] = {300, 600, 1200, 2400, 3600, 7200, 14400};
	struct conf *c;
	char *errs;
	assert_int_equal(load(RELAY, &c, &errs), RC_OK);
	assert_null(errs);
	check_nums(c, nums, ARRAY_LEN(nums));
	assert_string_equal(c->hostname, "relay.test");
	assert_string_equal(c->data_dir, "/var/lib/relevo");
	assert_string_equal(c->path, "test.yaml");
	assert_null(c->run_as);
	assert_null(c->tls_cert);
	assert_null(c->tls_key);
	assert_null(c->dns.resolver);
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->listen[0].address, "127.0.0.1:2525");
	assert_int_equal(c->listen[0].mode, CONF_LISTEN_RELAY);
	assert_int_equal(c->listen[0].sa.ss_family, AF_INET);
	assert_int_equal(c->listen[0].salen, sizeof(struct sockaddr_in));
	assert_int_equal(c->ntrusted, 1);
	assert_false(c->delivery.tls_verify);
	assert_memory_equal(c->delivery.retry_schedule, retry, sizeof retry);
	assert_null(c->delivery.routes);
	assert_null(conf_route_find(c, "example.org"));
	assert_int_equal(c->delivery.source_v4.sin_family, 0);
	assert_int_equal(c->delivery.source_v6.sin6_family, 0);
	assert_null(conf_source_address(c, AF_INET, NULL));
	assert_null(conf_source_address(c, AF_INET6, NULL));
	conf_free(c);
}

static const char full_yaml[] = "# every key, none at its default\n"
                                "hostname: relay.example.net\n"
                                "data_dir: /srv/relevo\n"
                                "run_as: nobody\n"
                                "listen:\n"
                                "  - address: 0.0.0.0:587\n"
                                "    mode: submission\n"
                                "  - {address: \"[::1]:465\", mode: submissions}\n"
                                "  - {address: 10.1.2.3:25, mode: relay}\n"
                                "trusted_networks: [127.0.0.0/8, \"::1/128\", 10.0.0.0/8]\n"
                                "tls: {cert: @DIR@/cert.pem, key: @DIR@/key.pem}\n"
                                "smtp:\n"
                                "  max_message_size: 52428800\n"
                                "  max_recipients: 100\n"
                                "  max_connections: 200\n"
                                "  max_connections_per_ip: 5\n"
                                "  max_errors: 7\n"
                                "  max_auth_failures: 2\n"
                                "  timeout_command: 60\n"
                                "  timeout_data: 90\n"
                                "  greeting_delay_ms: 1500\n"
                                "  timeout_data_total: 1200\n"
                                "  session_max_time: 7200\n"
                                "  auth_lockout_failures: 5\n"
                                "  auth_lockout_window: 3600\n"
                                "  memory_budget: 4294967296\n"
                                "dns:\n"
                                "  resolver: 127.0.0.1@5353\n"
                                "  timeout: 5\n"
                                "delivery:\n"
                                "  routes:\n" /* before port and tls: still inherits them */
                                "    \"Example.ORG\": \"[10.0.0.5]\"\n"
                                "    \"*\":\n"
                                "      host: smarthost.example.net:587\n"
                                "      auth_user: relay1\n"
                                "      auth_password: secret\n"
                                "      tls: required\n"
                                "  port: 2525\n"
                                "  mode: sandbox\n"
                                "  retry_schedule: [60, 120, 604800]\n"
                                "  max_queue_lifetime: 86400\n"
                                "  delay_warning: 14400\n"
                                "  source_address: [192.0.2.1, \"2001:db8::1\"]\n"
                                "  max_connections: 50\n"
                                "  max_connections_per_destination: 5\n"
                                "  max_messages_per_connection: 20\n"
                                "  tls: required\n"
                                "  tls_verify: true\n"
                                "server:\n"
                                "  workers: 4\n";

static void test_every_key(void **state)
{
	static const struct num_case nums[] = {
	    NUM("smtp.max_message_size", smtp.max_message_size, 52428800),
	    NUM("smtp.max_recipients", smtp.max_recipients, 100),
	    NUM("smtp.max_connections", smtp.max_connections, 200),
	    NUM("smtp.max_connections_per_ip", smtp.max_connections_per_ip, 5),
	    NUM("smtp.max_errors", smtp.max_errors, 7),
	    NUM("smtp.max_auth_failures", smtp.max_auth_failures, 2),
	    NUM("smtp.timeout_command", smtp.timeout_command, 60),
	    NUM("smtp.timeout_data", smtp.timeout_data, 90),
	    NUM("smtp.greeting_delay_ms", smtp.greeting_delay_ms, 1500),
	    NUM("smtp.timeout_data_total", smtp.timeout_data_total, 1200),
	    NUM("smtp.session_max_time", smtp.session_max_time, 7200),
	    NUM("smtp.auth_lockout_failures", smtp.auth_lockout_failures, 5),
	    NUM("smtp.auth_lockout_window", smtp.auth_lockout_window, 3600),
	    NUM("smtp.memory_budget", smtp.memory_budget, 4294967296),
	    NUM("delivery.port", delivery.port, 2525),
	    NUM("server.workers", server.workers, 4),
	    NUM("nlisten", nlisten, 3),
	    NUM("ntrusted", ntrusted, 3),
	    NUM("dns.timeout", dns.timeout, 5),
	    NUM("delivery.mode", delivery.mode, CONF_DELIVERY_SANDBOX),
	    NUM("delivery.nretry_schedule", delivery.nretry_schedule, 3),
	    NUM("delivery.max_queue_lifetime", delivery.max_queue_lifetime, 86400),
	    NUM("delivery.delay_warning", delivery.delay_warning, 14400),
	    NUM("delivery.max_connections", delivery.max_connections, 50),
	    NUM("delivery.max_connections_per_destination",
	        delivery.max_connections_per_destination, 5),
	    NUM("delivery.max_messages_per_connection", delivery.max_messages_per_connection, 20),
	    NUM("delivery.tls", delivery.tls, CONF_TLS_REQUIRED),
	    NUM("delivery.nroutes", delivery.nroutes, 2),
	};
	static const uint32_t retry[] = {60, 120, 604800};
	const struct conf_route *r;
	char ip[INET6_ADDRSTRLEN];
	struct conf *c;
	char *errs, cert[128];
	assert_int_equal(load(full_yaml, &c, &errs), RC_OK);
	assert_null(errs);
	check_nums(c, nums, ARRAY_LEN(nums));
	assert_string_equal(c->hostname, "relay.example.net");
	assert_string_equal(c->data_dir, "/srv/relevo");
	assert_string_equal(c->run_as, "nobody");
	snprintf(cert, sizeof cert, "%s/cert.pem", tmpdir);
	assert_string_equal(c->tls_cert, cert);
	assert_string_equal(c->dns.resolver, "127.0.0.1@5353");
	assert_int_equal(c->listen[0].mode, CONF_LISTEN_SUBMISSION);
	assert_int_equal(c->listen[1].mode, CONF_LISTEN_SUBMISSIONS);
	assert_int_equal(c->listen[2].mode, CONF_LISTEN_RELAY);
	assert_string_equal(c->listen[1].address, "[::1]:465");
	assert_int_equal(c->listen[1].sa.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&c->listen[1].sa)->sin6_port), 465);
	assert_int_equal(c->trusted[1].family, AF_INET6);
	assert_int_equal(c->trusted[1].prefix, 128);
	assert_true(c->delivery.tls_verify);
	assert_memory_equal(c->delivery.retry_schedule, retry, sizeof retry);
	assert_string_equal(inet_ntop(AF_INET, &c->delivery.source_v4.sin_addr, ip, sizeof ip),
	                    "192.0.2.1");
	assert_string_equal(inet_ntop(AF_INET6, &c->delivery.source_v6.sin6_addr, ip, sizeof ip),
	                    "2001:db8::1");
	r = conf_route_find(c, "example.org");
	assert_non_null(r);
	assert_string_equal(r->domain, "example.org");
	assert_string_equal(r->host, "[10.0.0.5]");
	assert_int_equal(r->port, 2525);             /* delivery.port, written after routes */
	assert_int_equal(r->tls, CONF_TLS_REQUIRED); /* delivery.tls, likewise */
	assert_true(r->tls_verify);
	assert_null(r->auth_user);
	assert_null(r->auth_password);
	r = conf_route_find(c, "elsewhere.example");
	assert_non_null(r);
	assert_string_equal(r->domain, "*");
	assert_string_equal(r->host, "smarthost.example.net");
	assert_int_equal(r->port, 587);
	assert_string_equal(r->auth_user, "relay1");
	assert_string_equal(r->auth_password, "secret");
	assert_null(r->auth_password_file);
	assert_int_equal(r->tls, CONF_TLS_REQUIRED);
	assert_true(r->tls_verify);
	conf_free(c);
}

/* Other spellings that must be accepted. */
static void test_valid_variants(void **state)
{
	static const struct {
		const char *label;
		const char *yaml;
	} cases[] = {
	    {"empty sections are allowed", RELAY "smtp:\ndns: ~\ndelivery: null\nserver: {}\n"},
	    {"bare host in trusted_networks", HOST "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
	                                      "trusted_networks: [192.0.2.7, \"2001:db8::1\"]\n"},
	    {"relay beside submission", SUBM "  - {address: 127.0.0.1:25, mode: relay}\n"
	                                     "trusted_networks: [10.0.0.0/8]\n"},
	    {"resolver IPv6 with port", RELAY "dns: {resolver: \"::1@53\"}\n"},
	    {"resolver without port", RELAY "dns: {resolver: 192.0.2.53}\n"},
	    {"anchors and aliases", RELAY "  - {address: 127.0.0.1:25, mode: &m relay}\n"
	                                  "  - {address: 127.0.0.1:26, mode: *m}\n"},
	    {"same port, different addresses",
	     RELAY "  - {address: 127.0.0.2:2525, mode: relay}\n"},
	    {"same port, other family wildcard",
	     HOST "listen: [{address: 0.0.0.0:25, mode: relay}, {address: \"[::]:25\", mode: relay}]\n"
	     "trusted_networks: [0.0.0.0/0]\n"},
	    {"max_message_size above 4 GiB",
	     RELAY "smtp: {max_message_size: 8589934592, memory_budget: 8589934592}\n"},
	    {"memory budget of exactly one message",
	     RELAY "smtp: {max_message_size: 1000, memory_budget: 1000}\n"},
	    {"explicit document markers", "---\n" RELAY "...\n"},
	    {"zero where allowed", RELAY "server: {workers: 0}\nsmtp: {greeting_delay_ms: 0}\n"},
	    {"delivery bounds, low",
	     RELAY "dns: {timeout: 1}\n"
	           "delivery: {max_queue_lifetime: 60, delay_warning: 59,\n"
	           "  max_connections: 1, max_connections_per_destination: 1,\n"
	           "  max_messages_per_connection: 1, retry_schedule: [1]}\n"},
	    {"delivery bounds, high",
	     RELAY "dns: {timeout: 300}\n"
	           "delivery: {max_queue_lifetime: 2592000, delay_warning: 2591999,\n"
	           "  max_connections: 100000, max_connections_per_destination: 100000,\n"
	           "  max_messages_per_connection: 100000, retry_schedule: [604800]}\n"},
	    {"32 retry entries", RELAY "delivery: {retry_schedule: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "
	                               "11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, "
	                               "25, 26, 27, 28, 29, 30, 31, 32]}\n"},
	    {"tls_verify false with opportunistic", RELAY "delivery: {tls_verify: false}\n"},
	    {"source_address, one IPv4", RELAY "delivery: {source_address: 192.0.2.1}\n"},
	    {"source_address, one IPv6", RELAY "delivery: {source_address: \"2001:db8::1\"}\n"},
	    {"source_address, IPv6 first", RELAY "delivery:\n  source_address:\n"
	                                         "    - \"2001:db8::1\"\n    - 192.0.2.1\n"},
	    {"source_address, list of one", RELAY "delivery: {source_address: [192.0.2.1]}\n"},
	    {"empty routes", RELAY "delivery: {routes: }\n"},
	    {"empty routes mapping", RELAY "delivery: {routes: {}}\n"},
	    {"route by name, no port", RELAY "delivery: {routes: {example.org: mx.example.org}}\n"},
	    {"route to a single-label host",
	     RELAY "delivery: {routes: {example.org: localhost}}\n"},
	    {"route with auth in a required delivery", RELAY
	     "delivery:\n  tls: required\n  routes:\n    \"*\":\n      host: smtp.example.net\n"
	     "      auth_user: u\n      auth_password: p\n"},
	    {"route password from a file",
	     RELAY "delivery:\n  routes:\n    \"*\":\n      host: smtp.example.net\n"
	           "      auth_user: u\n      auth_password_file: @DIR@/pw.txt\n"
	           "      tls: required\n      tls_verify: true\n"},
	    {"two domains and a default",
	     RELAY "delivery:\n  routes:\n    a.example: \"[10.0.0.1]\"\n"
	           "    b.example: \"[IPv6:2001:db8::1]:2525\"\n"
	           "    \"*\": smarthost.example.net:25\n"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct conf *c = NULL;
		char *errs = NULL;
		if (load(cases[i].yaml, &c, &errs) != RC_OK)
			fail_msg("%s: rejected:\n%s", cases[i].label, errs);
		conf_free(c);
		free(errs);
	}
}

/* ---- errors ---- */

struct err_case {
	const char *label;
	const char *yaml;
	const char *line; /* the exact line expected among the errors */
};

static const struct err_case err_cases[] = {
    /* unknown keys, at each level */
    {"unknown key at the top", RELAY "hostnme: relay.example.net\n", "hostnme: unknown key"},
    {"unknown key in smtp", RELAY "smtp:\n  max_mesage_size: 5\n",
     "smtp.max_mesage_size: unknown key"},
    {"unknown key in tls (flow)",
     "listen: [{address: 127.0.0.1:1, mode: submission}]\n"
     "tls: {cert: @DIR@/cert.pem, key: @DIR@/key.pem, ca: x}\n",
     "tls.ca: unknown key"},
    {"unknown key in dns", RELAY "dns: {resolvers: 127.0.0.1}\n", "dns.resolvers: unknown key"},
    {"unknown key in delivery", RELAY "delivery: {prot: 25}\n", "delivery.prot: unknown key"},
    {"unknown key in server", RELAY "server: {worker: 2}\n", "server.worker: unknown key"},
    {"unknown key in a listener",
     "listen:\n  - {address: 127.0.0.1:25, mode: relay}\n  - {address: 127.0.0.1:26, "
     "mode: relay, tls: yes}\ntrusted_networks: [127.0.0.1]\n",
     "listen[1].tls: unknown key"},
    {"unprintable key is escaped", RELAY "\"a\\x01b\": 1\n", "a\\x01b: unknown key"},
    {"key case matters", RELAY "Hostname: x\n", "Hostname: unknown key"},
    /* wrong types */
    {"section as a scalar", RELAY "smtp: 5\n", "smtp: must be a mapping, not a single value"},
    {"section as a list", RELAY "dns: [a]\n", "dns: must be a mapping, not a list"},
    {"list as a mapping", "listen: {address: 127.0.0.1:25, mode: relay}\n",
     "listen: must be a list, not a mapping"},
    {"list as a scalar",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: 10.0.0.0/8\n",
     "trusted_networks: must be a list, not a single value"},
    {"listener as a scalar", "listen: [127.0.0.1:25]\n",
     "listen[0]: must be a mapping, not a single value"},
    {"number as a mapping", RELAY "smtp: {max_recipients: {a: 1}}\n",
     "smtp.max_recipients: must be a whole number, not a mapping"},
    {"string as a list", RELAY_NOHOST "hostname: [a, b]\n", "hostname: must be a host name, not a list"},
    {"root is a list", "- a\n", "test.yaml: must be a mapping of keys, not a list"},
    {"root is a scalar", "hello\n", "test.yaml: must be a mapping of keys, not a single value"},
    {"key is not a string", RELAY "? [a]\n: b\n", "test.yaml: keys must be plain strings"},
    /* numbers */
    {"number with junk", RELAY "smtp: {max_errors: 12abc}\n",
     "smtp.max_errors: must be a whole number (digits only), not \"12abc\""},
    {"negative number", RELAY "delivery: {port: -25}\n",
     "delivery.port: must be a whole number (digits only), not \"-25\""},
    {"number with plus", RELAY "delivery: {port: +25}\n",
     "delivery.port: must be a whole number (digits only), not \"+25\""},
    {"fraction", RELAY "smtp: {timeout_data: 1.5}\n",
     "smtp.timeout_data: must be a whole number (digits only), not \"1.5\""},
    {"hexadecimal", RELAY "smtp: {max_errors: 0x10}\n",
     "smtp.max_errors: must be a whole number (digits only), not \"0x10\""},
    {"leading zero", RELAY "smtp: {max_errors: 010}\n",
     "smtp.max_errors: must be a whole number (digits only), not \"010\""},
    {"quoted number", RELAY "smtp: {max_errors: \"10\"}\n",
     "smtp.max_errors: must be a whole number (digits only), not \"10\""},
    {"size suffix", RELAY "smtp: {max_message_size: 25M}\n",
     "smtp.max_message_size: must be a whole number (digits only), not \"25M\""},
    {"overflowing number", RELAY "smtp: {max_message_size: 18446744073709551616}\n",
     "smtp.max_message_size: must be a whole number (digits only), not "
     "\"18446744073709551616\""},
    {"missing number", RELAY "smtp: {max_errors: }\n",
     "smtp.max_errors: missing value, expected a whole number"},
    /* out of range */
    {"zero message size", RELAY "smtp: {max_message_size: 0}\n",
     "smtp.max_message_size: must be at least 1"},
    {"zero recipients", RELAY "smtp: {max_recipients: 0}\n",
     "smtp.max_recipients: must be between 1 and 1000000"},
    {"port too large", RELAY "delivery: {port: 65536}\n",
     "delivery.port: must be between 1 and 65535"},
    {"port zero", RELAY "delivery: {port: 0}\n", "delivery.port: must be between 1 and 65535"},
    {"too many workers", RELAY "server: {workers: 1025}\n",
     "server.workers: must be between 0 and 1024"},
    {"above unsigned range", RELAY "smtp: {timeout_command: 4294967296}\n",
     "smtp.timeout_command: must be between 1 and 86400"},
    {"greeting delay too long", RELAY "smtp: {greeting_delay_ms: 60001}\n",
     "smtp.greeting_delay_ms: must be between 0 and 60000"},
    /* strings */
    {"bad host name", RELAY_NOHOST "hostname: relay_1.example.net\n",
     "hostname: must be a host name, not \"relay_1.example.net\""},
    {"host name with trailing dot", RELAY_NOHOST "hostname: relay.example.net.\n",
     "hostname: must be a host name, not \"relay.example.net.\""},
    {"relative data_dir", RELAY "data_dir: var/lib/relevo\n",
     "data_dir: must be an absolute path, not \"var/lib/relevo\""},
    {"empty run_as", RELAY "run_as: \"\"\n", "run_as: must not be empty"},
    {"run_as names no user", RELAY "run_as: relevo-no-such-user\n",
     "run_as: no such user \"relevo-no-such-user\""},
    {"no hostname", RELAY_NOHOST,
     "hostname: missing (required): the name relevo greets other servers with, and that SPF "
     "advice names"},
    {"null run_as", RELAY "run_as:\n", "run_as: missing value, expected a user name"},
    {"NUL in a string", RELAY "run_as: \"re\\0levo\"\n", "run_as: must not contain NUL characters"},
    {"resolver by name", RELAY "dns: {resolver: localhost}\n",
     "dns.resolver: must be an IP address with an optional @port, not \"localhost\""},
    {"resolver port zero", RELAY "dns: {resolver: 127.0.0.1@0}\n",
     "dns.resolver: must be an IP address with an optional @port, not \"127.0.0.1@0\""},
    {"resolver empty port", RELAY "dns: {resolver: 127.0.0.1@}\n",
     "dns.resolver: must be an IP address with an optional @port, not \"127.0.0.1@\""},
    {"resolver port too large", RELAY "dns: {resolver: 127.0.0.1@65536}\n",
     "dns.resolver: must be an IP address with an optional @port, not \"127.0.0.1@65536\""},
    /* listeners */
    {"no listen", "hostname: relay.example.net\n", "listen: missing (required)"},
    {"empty listen", "listen: []\n", "listen: must have 1 to 64 entries, not 0"},
    {"null listen", "listen:\n", "listen: must have 1 to 64 entries, not 0"},
    {"empty document", "", "listen: missing (required)"},
    {"listener without address", "listen: [{mode: relay}]\ntrusted_networks: [10.0.0.0/8]\n",
     "listen[0].address: missing (required)"},
    {"listener without mode", "listen: [{address: 127.0.0.1:25}]\n",
     "listen[0].mode: missing (required)"},
    {"bad mode", "listen: [{address: 127.0.0.1:25, mode: smtp}]\n",
     "listen[0].mode: must be one of submission, submissions, relay, not \"smtp\""},
    {"address by name", "listen: [{address: \"localhost:25\", mode: relay}]\n",
     "listen[0].address: must be a numeric address and port (0.0.0.0:587, [::1]:587), not "
     "\"localhost:25\""},
    {"address without port", "listen: [{address: 127.0.0.1, mode: relay}]\n",
     "listen[0].address: must be a numeric address and port (0.0.0.0:587, [::1]:587), not "
     "\"127.0.0.1\""},
    {"IPv6 address without brackets", "listen: [{address: \"::1:25\", mode: relay}]\n",
     "listen[0].address: must be a numeric address and port (0.0.0.0:587, [::1]:587), not "
     "\"::1:25\""},
    {"relay without trusted_networks",
     SUBM "  - {address: 127.0.0.1:2588, mode: submissions}\n"
          "  - {address: 127.0.0.1:25, mode: relay}\n",
     "listen[2].mode: relay needs trusted_networks"},
    {"relay with empty trusted_networks",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\ntrusted_networks: []\n",
     "listen[0].mode: relay needs trusted_networks"},
    {"same address twice", RELAY "  - {address: 127.0.0.1:2525, mode: relay}\n",
     "listen[1].address: same address as listen[0] (127.0.0.1:2525)"},
    {"same IPv6 address twice",
     "listen: [{address: \"[::1]:25\", mode: relay}, {address: \"[0::1]:25\", mode: relay}]\n"
     "trusted_networks: [\"::1\"]\n",
     "listen[1].address: same address as listen[0] ([::1]:25)"},
    {"address inside a wildcard", RELAY "  - {address: 0.0.0.0:2525, mode: relay}\n",
     "listen[1].address: overlaps listen[0] (127.0.0.1:2525)"},
    {"too many listeners",
     "listen: ["
     "{address: 127.0.0.1:1, mode: relay}, "
     "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
     "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, "
     "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}]\n",
     "listen: must have 1 to 64 entries, not 65"},
    /* trusted networks */
    {"CIDR prefix too long",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: [10.0.0.0/8, 10.0.0.0/33]\n",
     "trusted_networks[1]: must be a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host "
     "bits set, not \"10.0.0.0/33\""},
    {"CIDR host bits set",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: [10.1.2.3/8]\n",
     "trusted_networks[0]: must be a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host "
     "bits set, not \"10.1.2.3/8\""},
    {"CIDR IPv6 prefix too long",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: [\"::1/129\"]\n",
     "trusted_networks[0]: must be a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host "
     "bits set, not \"::1/129\""},
    {"CIDR by name",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: [localhost]\n",
     "trusted_networks[0]: must be a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host "
     "bits set, not \"localhost\""},
    {"CIDR entry as a mapping",
     "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
     "trusted_networks: [{net: 10.0.0.0/8}]\n",
     "trusted_networks[0]: must be a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host "
     "bits set, not a mapping"},
    /* tls */
    {"submission without tls", "listen: [{address: 127.0.0.1:587, mode: submission}]\n",
     "tls: missing, required by listen[0] (submission)"},
    {"submissions without tls", RELAY "  - {address: 127.0.0.1:465, mode: submissions}\n",
     "tls: missing, required by listen[1] (submissions)"},
    /* smtp totals, lockout, memory budget */
    {"transfer total zero", RELAY "smtp: {timeout_data_total: 0}\n",
     "smtp.timeout_data_total: must be between 1 and 86400"},
    {"session time zero", RELAY "smtp: {session_max_time: 0}\n",
     "smtp.session_max_time: must be between 1 and 604800"},
    {"lockout after zero failures", RELAY "smtp: {auth_lockout_failures: 0}\n",
     "smtp.auth_lockout_failures: must be between 1 and 1000000"},
    {"lockout window over a week", RELAY "smtp: {auth_lockout_window: 604801}\n",
     "smtp.auth_lockout_window: must be between 1 and 604800"},
    {"memory budget below the default message size", RELAY "smtp: {memory_budget: 1048576}\n",
     "smtp.memory_budget: must be at least smtp.max_message_size (26214400)"},
    {"memory budget below the message size",
     RELAY "smtp: {max_message_size: 2000, memory_budget: 1999}\n",
     "smtp.memory_budget: must be at least smtp.max_message_size (2000)"},
    {"tls without key",
     "listen: [{address: 127.0.0.1:587, mode: submission}]\n"
     "tls: {cert: @DIR@/cert.pem}\n",
     "tls.key: missing (required)"},
    {"empty tls section", "listen: [{address: 127.0.0.1:587, mode: submission}]\ntls:\n",
     "tls.cert: missing (required)"},
    /* duplicates */
    {"duplicate top-level key", RELAY_NOHOST "hostname: a.example\nhostname: b.example\n",
     "hostname: duplicate key"},
    {"duplicate section", RELAY "smtp: {max_errors: 5}\nsmtp: {max_errors: 6}\n",
     "smtp: duplicate key"},
    {"duplicate key in a section", RELAY "smtp:\n  max_errors: 5\n  max_errors: 6\n",
     "smtp.max_errors: duplicate key"},
    {"duplicate key in a listener",
     "listen: [{address: 127.0.0.1:25, mode: relay, mode: submission}]\n"
     "trusted_networks: [127.0.0.1]\n",
     "listen[0].mode: duplicate key"},
    /* enums: wrong type */
    {"mode as a list", "listen: [{address: 127.0.0.1:25, mode: [relay]}]\n",
     "listen[0].mode: must be one of submission, submissions, relay, not a list"},
    /* dns.timeout */
    {"dns timeout zero", RELAY "dns: {timeout: 0}\n", "dns.timeout: must be between 1 and 300"},
    {"dns timeout too long", RELAY "dns: {timeout: 301}\n",
     "dns.timeout: must be between 1 and 300"},
    {"dns timeout in words", RELAY "dns: {timeout: ten}\n",
     "dns.timeout: must be a whole number (digits only), not \"ten\""},
    /* delivery numbers */
    {"queue lifetime too short", RELAY "delivery: {max_queue_lifetime: 59}\n",
     "delivery.max_queue_lifetime: must be between 60 and 2592000"},
    {"queue lifetime too long", RELAY "delivery: {max_queue_lifetime: 2592001}\n",
     "delivery.max_queue_lifetime: must be between 60 and 2592000"},
    {"queue lifetime with a unit", RELAY "delivery: {max_queue_lifetime: 5d}\n",
     "delivery.max_queue_lifetime: must be a whole number (digits only), not \"5d\""},
    {"delay warning too long", RELAY "delivery: {delay_warning: 2592001}\n",
     "delivery.delay_warning: must be between 0 and 2592000"},
    {"delay warning negative", RELAY "delivery: {delay_warning: -1}\n",
     "delivery.delay_warning: must be a whole number (digits only), not \"-1\""},
    {"delay warning at the lifetime",
     RELAY "delivery: {max_queue_lifetime: 3600, delay_warning: 3600}\n",
     "delivery.delay_warning: must be less than delivery.max_queue_lifetime (3600), or 0 for "
     "none"},
    {"delay warning past the default lifetime", RELAY "delivery: {delay_warning: 432000}\n",
     "delivery.delay_warning: must be less than delivery.max_queue_lifetime (432000), or 0 for "
     "none"},
    {"no outbound connections", RELAY "delivery: {max_connections: 0}\n",
     "delivery.max_connections: must be between 1 and 100000"},
    {"outbound connections as a mapping", RELAY "delivery: {max_connections: {a: 1}}\n",
     "delivery.max_connections: must be a whole number, not a mapping"},
    {"no connections per destination", RELAY "delivery: {max_connections_per_destination: 0}\n",
     "delivery.max_connections_per_destination: must be between 1 and 100000"},
    {"too many messages per connection", RELAY "delivery: {max_messages_per_connection: 100001}\n",
     "delivery.max_messages_per_connection: must be between 1 and 100000"},
    /* delivery.retry_schedule */
    {"retry entry zero", RELAY "delivery: {retry_schedule: [300, 0]}\n",
     "delivery.retry_schedule[1]: must be between 1 and 604800"},
    {"retry entry above a week", RELAY "delivery: {retry_schedule: [604801]}\n",
     "delivery.retry_schedule[0]: must be between 1 and 604800"},
    {"retry entry with a unit", RELAY "delivery: {retry_schedule: [5m]}\n",
     "delivery.retry_schedule[0]: must be a whole number (digits only), not \"5m\""},
    {"retry entry as a list", RELAY "delivery: {retry_schedule: [[300]]}\n",
     "delivery.retry_schedule[0]: must be a whole number, not a list"},
    {"empty retry schedule", RELAY "delivery: {retry_schedule: []}\n",
     "delivery.retry_schedule: must have 1 to 32 entries, not 0"},
    {"null retry schedule", RELAY "delivery: {retry_schedule: }\n",
     "delivery.retry_schedule: must have 1 to 32 entries, not 0"},
    {"33 retry entries",
     RELAY "delivery: {retry_schedule: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, "
           "17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]}\n",
     "delivery.retry_schedule: must have 1 to 32 entries, not 33"},
    {"retry schedule as a number", RELAY "delivery: {retry_schedule: 300}\n",
     "delivery.retry_schedule: must be a list, not a single value"},
    /* delivery enums and booleans */
    {"bad delivery mode", RELAY "delivery: {mode: test}\n",
     "delivery.mode: must be one of normal, sandbox, not \"test\""},
    {"delivery mode case", RELAY "delivery: {mode: Sandbox}\n",
     "delivery.mode: must be one of normal, sandbox, not \"Sandbox\""},
    {"missing delivery mode", RELAY "delivery: {mode: }\n",
     "delivery.mode: missing value, expected one of normal, sandbox"},
    {"bad delivery tls", RELAY "delivery: {tls: mandatory}\n",
     "delivery.tls: must be one of opportunistic, required, not \"mandatory\""},
    {"tls as a boolean", RELAY "delivery: {tls: true}\n",
     "delivery.tls: must be one of opportunistic, required, not \"true\""},
    {"tls_verify yes", RELAY "delivery: {tls: required, tls_verify: yes}\n",
     "delivery.tls_verify: must be true or false, not \"yes\""},
    {"tls_verify capitalised", RELAY "delivery: {tls: required, tls_verify: True}\n",
     "delivery.tls_verify: must be true or false, not \"True\""},
    {"tls_verify quoted", RELAY "delivery: {tls: required, tls_verify: \"true\"}\n",
     "delivery.tls_verify: must be true or false, not \"true\""},
    {"tls_verify as a number", RELAY "delivery: {tls: required, tls_verify: 1}\n",
     "delivery.tls_verify: must be true or false, not \"1\""},
    {"tls_verify as a list", RELAY "delivery: {tls_verify: [true]}\n",
     "delivery.tls_verify: must be true or false, not a list"},
    {"tls_verify missing value", RELAY "delivery: {tls_verify: }\n",
     "delivery.tls_verify: missing value, expected true or false"},
    {"tls_verify without required tls", RELAY "delivery: {tls_verify: true}\n",
     "delivery.tls_verify: true needs delivery.tls: required"},
    /* delivery.source_address */
    {"two IPv4 source addresses", RELAY "delivery: {source_address: [192.0.2.1, 192.0.2.2]}\n",
     "delivery.source_address[1]: a second IPv4 address; give at most one IPv4 and one IPv6 "
     "address"},
    {"two IPv6 source addresses", RELAY "delivery: {source_address: [\"2001:db8::1\", \"::1\"]}\n",
     "delivery.source_address[1]: a second IPv6 address; give at most one IPv4 and one IPv6 "
     "address"},
    {"three source addresses",
     RELAY "delivery: {source_address: [192.0.2.1, \"::1\", 192.0.2.2]}\n",
     "delivery.source_address: must have 1 or 2 entries (one IPv4, one IPv6), not 3"},
    {"empty source address list", RELAY "delivery: {source_address: []}\n",
     "delivery.source_address: must have 1 or 2 entries (one IPv4, one IPv6), not 0"},
    {"source address by name", RELAY "delivery: {source_address: localhost}\n",
     "delivery.source_address: must be an IP address (192.0.2.1, \"2001:db8::1\") or a list of "
     "two, not \"localhost\""},
    {"source address as a network", RELAY "delivery: {source_address: 192.0.2.0/24}\n",
     "delivery.source_address: must be an IP address (192.0.2.1, \"2001:db8::1\") or a list of "
     "two, not \"192.0.2.0/24\""},
    {"source address with a port", RELAY "delivery: {source_address: 192.0.2.1:25}\n",
     "delivery.source_address: must be an IP address (192.0.2.1, \"2001:db8::1\") or a list of "
     "two, not \"192.0.2.1:25\""},
    {"bad source address in a list", RELAY "delivery: {source_address: [192.0.2.1, nowhere]}\n",
     "delivery.source_address[1]: must be an IP address (192.0.2.1, \"2001:db8::1\"), not "
     "\"nowhere\""},
    {"source address as a mapping", RELAY "delivery: {source_address: {v4: 192.0.2.1}}\n",
     "delivery.source_address: must be an IP address (192.0.2.1, \"2001:db8::1\") or a list of "
     "two, not a mapping"},
    {"missing source address", RELAY "delivery: {source_address: }\n",
     "delivery.source_address: missing value, expected an IP address (192.0.2.1, "
     "\"2001:db8::1\") or a list of two"},
    /* delivery.routes: shape and keys */
    {"routes as a list", RELAY "delivery: {routes: [example.org]}\n",
     "delivery.routes: must be a mapping of domain: route, not a list"},
    {"routes as a string", RELAY "delivery: {routes: smarthost.example.net}\n",
     "delivery.routes: must be a mapping of domain: route, not a single value"},
    {"duplicate routes", RELAY "delivery:\n  routes: {}\n  routes: {}\n",
     "delivery.routes: duplicate key"},
    {"route key not a string", RELAY "delivery:\n  routes:\n    ? [a]\n    : b.example\n",
     "delivery.routes: keys must be plain strings"},
    {"route key with underscore", RELAY "delivery: {routes: {ex_ample.org: mx.example.org}}\n",
     "delivery.routes.ex_ample.org: route key must be a domain name or \"*\""},
    {"route key with trailing dot", RELAY "delivery: {routes: {example.org.: mx.example.org}}\n",
     "delivery.routes.example.org.: route key must be a domain name or \"*\""},
    {"route key wildcard subdomain",
     RELAY "delivery: {routes: {\"*.example.org\": mx.example.org}}\n",
     "delivery.routes.*.example.org: route key must be a domain name or \"*\""},
    {"route key an address literal",
     RELAY "delivery: {routes: {\"[192.0.2.1]\": mx.example.org}}\n",
     "delivery.routes.[192.0.2.1]: route key must be a domain name or \"*\""},
    {"route key empty", RELAY "delivery: {routes: {\"\": mx.example.org}}\n",
     "delivery.routes.: route key must be a domain name or \"*\""},
    {"route key twice, other case",
     RELAY "delivery: {routes: {Example.org: a.example, example.ORG: b.example}}\n",
     "delivery.routes.example.ORG: duplicate key"},
    {"route host bad", RELAY "delivery: {routes: {example.org: mx_1.example.org}}\n",
     "delivery.routes.example.org: must be a host name or [IP address] with an optional :port, "
     "not \"mx_1.example.org\""},
    {"route host as a list", RELAY "delivery: {routes: {example.org: [a.example]}}\n",
     "delivery.routes.example.org: must be a host name or [IP address] with an optional :port, "
     "or a mapping, not a list"},
    {"route host missing", RELAY "delivery: {routes: {example.org: }}\n",
     "delivery.routes.example.org: missing value, expected a host name or [IP address] with an "
     "optional :port, or a mapping"},
    {"route mapping without host", RELAY "delivery: {routes: {example.org: {tls: required}}}\n",
     "delivery.routes.example.org.host: missing (required)"},
    {"route mapping bad host", RELAY "delivery: {routes: {example.org: {host: \"[::1]:0\"}}}\n",
     "delivery.routes.example.org.host: must be a host name or [IP address] with an optional "
     ":port, not \"[::1]:0\""},
    {"route host as a mapping", RELAY "delivery: {routes: {example.org: {host: {a: b}}}}\n",
     "delivery.routes.example.org.host: must be a host name or [IP address] with an optional "
     ":port, not a mapping"},
    {"unknown key in a route",
     RELAY "delivery: {routes: {example.org: {host: a.example, "
           "port: 25}}}\n",
     "delivery.routes.example.org.port: unknown key"},
    {"bad route tls", RELAY "delivery: {routes: {example.org: {host: a.example, tls: on}}}\n",
     "delivery.routes.example.org.tls: must be one of opportunistic, required, not \"on\""},
    {"bad route tls_verify",
     RELAY "delivery: {routes: {example.org: {host: a.example, tls: required, tls_verify: no}}}\n",
     "delivery.routes.example.org.tls_verify: must be true or false, not \"no\""},
    {"route tls_verify without required tls",
     RELAY "delivery: {routes: {example.org: {host: a.example, tls_verify: true}}}\n",
     "delivery.routes.example.org.tls_verify: true needs tls: required"},
    {"route lowers tls under a verifying delivery",
     RELAY "delivery:\n  tls: required\n  tls_verify: true\n"
           "  routes: {example.org: {host: a.example, tls: opportunistic, tls_verify: true}}\n",
     "delivery.routes.example.org.tls_verify: true needs tls: required"},
    /* delivery.routes: authentication */
    {"auth_password and auth_password_file",
     RELAY "delivery:\n  routes:\n    \"*\":\n      host: smtp.example.net\n      auth_user: u\n"
           "      auth_password: hunter2\n      auth_password_file: @DIR@/pw.txt\n"
           "      tls: required\n",
     "delivery.routes.*.auth_password_file: give auth_password or auth_password_file, not both"},
    {"auth without required tls",
     RELAY "delivery:\n  routes:\n    \"*\":\n      host: smtp.example.net\n      auth_user: u\n"
           "      auth_password: hunter2\n",
     "delivery.routes.*.auth_user: needs tls: required, a password is never sent in plaintext"},
    {"auth with explicit opportunistic tls",
     RELAY "delivery:\n  tls: required\n  routes:\n    \"*\":\n      host: smtp.example.net\n"
           "      auth_user: u\n      auth_password: hunter2\n      tls: opportunistic\n",
     "delivery.routes.*.auth_user: needs tls: required, a password is never sent in plaintext"},
    {"auth_user without a password",
     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, tls: required}}}\n",
     "delivery.routes.*.auth_user: needs auth_password or auth_password_file"},
    {"auth_password without a user",
     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_password: p, tls: required}}}\n",
     "delivery.routes.*.auth_user: missing, required with auth_password"},
    {"auth_password_file without a user",
     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_password_file: @DIR@/pw.txt, "
           "tls: required}}}\n",
     "delivery.routes.*.auth_user: missing, required with auth_password_file"},
    {"empty auth_password",
     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, auth_password: \"\", "
           "tls: required}}}\n",
     "delivery.routes.*.auth_password: must not be empty"},
    {"empty auth_user",
     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: \"\", auth_password: p, "
           "tls: required}}}\n",
     "delivery.routes.*.auth_user: must not be empty"},
    /* YAML syntax */
    {"unclosed flow list", "listen: [\n",
     "test.yaml:2:1: YAML syntax error: did not find expected node content (while parsing a "
     "flow node at line 2, column 1)"},
    {"tab indentation", "smtp:\n\tmax_errors: 5\n",
     "test.yaml:2:1: YAML syntax error: found character that cannot start any token (while "
     "scanning for the next token at line 2, column 1)"},
    {"bad indentation", "smtp:\n    max_errors: 5\n  timeout_data: 4\n",
     "test.yaml:3:3: YAML syntax error: did not find expected key (while parsing a block "
     "mapping at line 1, column 1)"},
    {"invalid UTF-8", RELAY "run_as: \xc3\x28\n",
     "test.yaml:5:10: YAML syntax error: invalid trailing UTF-8 octet"},
    {"control character", RELAY "run_as: a\x01\n",
     "test.yaml:5:10: YAML syntax error: control characters are not allowed"},
    {"undefined alias", RELAY "run_as: *nobody\n",
     "test.yaml:5:9: YAML syntax error: found undefined alias"},
    {"two documents", RELAY "---\n" RELAY, "test.yaml:5: only one YAML document is allowed"},
    /* local_submit */
    {"local is not a listen mode",
     HOST "trusted_networks: [127.0.0.0/8]\nlisten:\n  - {address: 127.0.0.1:2525, mode: local}\n",
     "listen[0].mode: must be one of submission, submissions, relay, not \"local\""},
    {"local_submit unknown key", RELAY "local_submit: {user: {root: a}}\n",
     "local_submit.user: unknown key"},
    {"local_submit.users not a mapping", RELAY "local_submit: {users: [root]}\n",
     "local_submit.users: must be a mapping of user name: account, not a list"},
    {"local_submit user unknown", RELAY "local_submit: {users: {no-such-user-x: a}}\n",
     "local_submit.users.no-such-user-x: no user \"no-such-user-x\" on this system"},
    {"local_submit account missing", RELAY "local_submit: {users: {root: }}\n",
     "local_submit.users.root: missing value, expected an account name"},
    {"local_submit duplicate user", RELAY "local_submit:\n  users: {root: a, root: b}\n",
     "local_submit.users.root: duplicate key"},
    {"local_submit socket relative", RELAY "local_submit: {users: {root: a}, socket: x.sock}\n",
     "local_submit.socket: must be an absolute path, not \"x.sock\""},
    {"local_submit socket too long",
     RELAY "data_dir: /tmp/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
           "local_submit: {users: {root: a}}\n",
     "local_submit.socket: \"/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/public/submit.sock\" "
     "is too long for a socket (at most 107 bytes); set it, or a shorter data_dir"},
};

static void test_errors(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(err_cases); i++) {
		const struct err_case *t = &err_cases[i];
		struct conf *c = (struct conf *)1;
		char *errs = NULL;
		enum rc rc = load(t->yaml, &c, &errs);
		if (rc != RC_INVALID || c != NULL || errs == NULL)
			fail_msg("%s: expected RC_INVALID and errors, got %s", t->label,
			         rc_name(rc));
		if (t->line != NULL && !has_line(errs, t->line))
			fail_msg("%s: expected the line\n  %s\ngot\n%s", t->label, t->line, errs);
		if (strstr(errs, "hunter2") != NULL)
			fail_msg("%s: a password is shown:\n%s", t->label, errs);
		free(errs);
	}
}

/* Errors that follow from an earlier one are not piled on it. */
static void test_no_follow_on_errors(void **state)
{
	static const struct {
		const char *label;
		const char *yaml;
		const char *errs; /* exactly these */
	} cases[] = {
	    {"broken tls is not also missing",
	     HOST "listen: [{address: 127.0.0.1:587, mode: submission}]\ntls: 5\n",
	     "tls: must be a mapping, not a single value\n"},
	    {"broken trusted_networks does not also fail the relay",
	     HOST "listen: [{address: 127.0.0.1:25, mode: relay}]\ntrusted_networks: 10.0.0.0/8\n",
	     "trusted_networks: must be a list, not a single value\n"},
	    {"a bad mode needs no tls", HOST "listen: [{address: 127.0.0.1:25, mode: smtp}]\n",
	     "listen[0].mode: must be one of submission, submissions, relay, not \"smtp\"\n"},
	    {"a bad address does not clash", RELAY "  - {address: 127.0.0.1:99999, mode: relay}\n",
	     "listen[1].address: must be a numeric address and port (0.0.0.0:587, [::1]:587), "
	     "not \"127.0.0.1:99999\"\n"},
	    {"a bad delivery.tls does not also fail tls_verify",
	     RELAY "delivery: {tls: yes, tls_verify: true}\n",
	     "delivery.tls: must be one of opportunistic, required, not \"yes\"\n"},
	    {"a bad lifetime does not also fail the delay warning",
	     RELAY "delivery: {max_queue_lifetime: 10, delay_warning: 500000}\n",
	     "delivery.max_queue_lifetime: must be between 60 and 2592000\n"},
	    {"a bad route tls does not also fail auth",
	     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, auth_password: p, "
	           "tls: on}}}\n",
	     "delivery.routes.*.tls: must be one of opportunistic, required, not \"on\"\n"},
	    {"a bad delivery.tls does not also fail a route's auth",
	     RELAY "delivery: {tls: on, routes: {\"*\": {host: a.example, auth_user: u, "
	           "auth_password: p}}}\n",
	     "delivery.tls: must be one of opportunistic, required, not \"on\"\n"},
	    {"a bad route key is not parsed further",
	     RELAY "delivery: {routes: {ex_ample.org: [1, 2]}}\n",
	     "delivery.routes.ex_ample.org: route key must be a domain name or \"*\"\n"},
	    {"an unreadable password file is not also missing",
	     RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, tls: required, "
	           "auth_password_file: /nonexistent/pw}}}\n",
	     "delivery.routes.*.auth_password_file: \"/nonexistent/pw\": cannot read: No such file "
	     "or directory\n"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct conf *c;
		char *errs = NULL;
		assert_int_equal(load(cases[i].yaml, &c, &errs), RC_INVALID);
		if (strcmp(errs, cases[i].errs) != 0)
			fail_msg("%s: expected\n%sgot\n%s", cases[i].label, cases[i].errs, errs);
		free(errs);
	}
}

/* Every problem is reported in one go, in document order, then the checks. */
static void test_all_errors_together(void **state)
{
	static const char yaml[] = "hostnme: x\n"
	                           "listen:\n"
	                           "  - {address: 127.0.0.1:25, mode: relay}\n"
	                           "  - {address: nowhere, mode: submission}\n"
	                           "smtp:\n"
	                           "  max_errors: 0\n"
	                           "  max_mesage_size: 5\n"
	                           "delivery: {port: 70000}\n"
	                           "dns: {resolver: 127.0.0.1@5353, resolver: \"::1\"}\n";
	static const char want[] =
	    "hostnme: unknown key\n"
	    "listen[1].address: must be a numeric address and port (0.0.0.0:587, [::1]:587), "
	    "not \"nowhere\"\n"
	    "smtp.max_errors: must be between 1 and 1000\n"
	    "smtp.max_mesage_size: unknown key\n"
	    "delivery.port: must be between 1 and 65535\n"
	    "dns.resolver: duplicate key\n"
	    "hostname: missing (required): the name relevo greets other servers with, and that "
	    "SPF advice names\n"
	    "tls: missing, required by listen[1] (submission)\n"
	    "listen[0].mode: relay needs trusted_networks\n";
	struct conf *c;
	char *errs = NULL;
	assert_int_equal(load(yaml, &c, &errs), RC_INVALID);
	assert_null(c);
	assert_string_equal(errs, want);
	free(errs);
}

/* A flood of errors stops being recorded after CONF_MAX_ERRORS (50). */
static void test_error_cap(void **state)
{
	char yaml[4096] = RELAY;
	for (int i = 0; i < 80; i++) {
		size_t n = strlen(yaml);
		snprintf(yaml + n, sizeof yaml - n, "junk%d: 1\n", i);
	}
	struct conf *c;
	char *errs = NULL;
	assert_int_equal(load(yaml, &c, &errs), RC_INVALID);
	assert_int_equal(count_lines(errs), 51);
	assert_true(has_line(errs, "junk0: unknown key"));
	assert_true(has_line(errs, "junk49: unknown key"));
	assert_false(has_line(errs, "junk50: unknown key"));
	assert_true(has_line(errs, "test.yaml: too many errors, the rest are not shown"));
	free(errs);
}

/* tls.cert and tls.key must name files relevo can read; the error says which. */
static void test_tls_files(void **state)
{
	static const struct {
		const char *label;
		const char *tls;
		const char *line; /* "@DIR@" expanded */
		bool root_skips;  /* root reads anything: access() cannot fail */
	} cases[] = {
	    {"cert missing", "{cert: @DIR@/nope.pem, key: @DIR@/key.pem}",
	     "tls.cert: cannot read \"@DIR@/nope.pem\": No such file or directory", false},
	    {"key missing", "{cert: @DIR@/cert.pem, key: @DIR@/gone/key.pem}",
	     "tls.key: cannot read \"@DIR@/gone/key.pem\": No such file or directory", false},
	    {"key unreadable", "{cert: @DIR@/cert.pem, key: @DIR@/unreadable.pem}",
	     "tls.key: cannot read \"@DIR@/unreadable.pem\": Permission denied", true},
	    {"relative name, missing", "{cert: cert.pem, key: @DIR@/key.pem}",
	     "tls.cert: cannot read \"cert.pem\": No such file or directory", false},
	    {"key open to other users", "{cert: @DIR@/cert.pem, key: @DIR@/open_key.pem}",
	     "tls.key: \"@DIR@/open_key.pem\" is open to other users (mode 0604): run chmod 600 "
	     "@DIR@/open_key.pem",
	     false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		if (cases[i].root_skips && geteuid() == 0)
			continue;
		char *yaml = xasprintf(HOST "listen: [{address: 127.0.0.1:587, mode: submission}]\n"
		                       "tls: %s\n",
		                       cases[i].tls);
		char *line = expand(cases[i].line);
		struct conf *c;
		char *errs = NULL;
		assert_int_equal(load(yaml, &c, &errs), RC_INVALID);
		if (!has_line(errs, line))
			fail_msg("%s: expected\n  %s\ngot\n%s", cases[i].label, line, errs);
		assert_int_equal(count_lines(errs), 1);
		free(errs);
		free(line);
		free(yaml);
	}
}

/* A group-readable tls.key is allowed (a group such as ssl-cert may need it); the
 * loader only warns. */
static void test_tls_key_group_readable(void **state)
{
	struct conf *c;
	char *errs = NULL;
	assert_int_equal(load(HOST "listen: [{address: 127.0.0.1:587, mode: submission}]\n"
	                      "tls: {cert: @DIR@/cert.pem, key: @DIR@/group_key.pem}\n",
	                      &c, &errs),
	                 RC_OK);
	assert_null(errs);
	conf_free(c);
}

/* Reload support: references, the keys that need a restart, data_dir of a
 * broken file. */
static void test_reload_helpers(void **state)
{
	struct conf *old, *nc;
	char *errs = NULL, *changed = NULL;
	assert_int_equal(load(RELAY "data_dir: /srv/a\nserver: {workers: 2}\n", &old, &errs),
	                 RC_OK);
	assert_int_equal(load(RELAY "data_dir: /srv/b\nrun_as: nobody\nserver: {workers: 3}\n"
	                            "dns: {resolver: 127.0.0.1, timeout: 3}\n"
	                            "smtp: {max_recipients: 7}\n",
	                      &nc, &errs),
	                 RC_OK);
	conf_keep_restart_keys(nc, old, &changed);
	assert_string_equal(changed, "data_dir\nrun_as\nserver.workers\ndns.resolver\ndns.timeout\n");
	assert_string_equal(nc->data_dir, "/srv/a");
	assert_null(nc->run_as);
	assert_int_equal(nc->server.workers, 2);
	assert_null(nc->dns.resolver);
	assert_int_equal(nc->dns.timeout, old->dns.timeout);
	assert_int_equal(nc->smtp.max_recipients, 7); /* the rest is the new file's */
	free(changed);
	conf_keep_restart_keys(nc, old, &changed);
	assert_null(changed);
	/* A reference keeps a conf alive past its owner's free. */
	assert_ptr_equal(conf_ref(nc), nc);
	conf_free(nc);
	assert_string_equal(nc->data_dir, "/srv/a");
	conf_unref(nc);
	conf_unref(old);

	char path[128], *dir;
	snprintf(path, sizeof path, "%s/broken.yaml", tmpdir);
	write_file("broken.yaml", "data_dir: /srv/x\nlisten: 5\nbogus: 1\n");
	dir = conf_data_dir_of(path);
	assert_string_equal(dir, "/srv/x");
	free(dir);
	write_file("broken.yaml", "listen: 5\n");
	dir = conf_data_dir_of(path);
	assert_string_equal(dir, "/var/lib/relevo");
	free(dir);
	write_file("broken.yaml", "listen: [\n");
	assert_null(conf_data_dir_of(path));
}

/* conf_load reads the file; a missing file is RC_IO with a message. */
static void test_load_file(void **state)
{
	char path[128];
	struct conf *c;
	char *errs = NULL;
	write_file("relevo.yaml", RELAY_NOHOST "hostname: mx.example.org\n");
	snprintf(path, sizeof path, "%s/relevo.yaml", tmpdir);
	assert_int_equal(conf_load(path, &c, &errs), RC_OK);
	assert_null(errs);
	assert_string_equal(c->path, path);
	assert_string_equal(c->hostname, "mx.example.org");
	conf_free(c);

	snprintf(path, sizeof path, "%s/absent.yaml", tmpdir);
	assert_int_equal(conf_load(path, &c, &errs), RC_IO);
	assert_null(c);
	char *want = xasprintf("%s: cannot read: no such file\n", path);
	assert_string_equal(errs, want);
	free(want);
	free(errs);

	/* errs may be NULL when the caller only wants the verdict */
	assert_int_equal(conf_load_string("x: 1\n", 5, "t", &c, NULL), RC_INVALID);
	assert_null(c);
	conf_free(NULL);
}

/* conf_load_with skip_tls_files: tls files named but not opened (the CLI under
 * run_as with a root-only key); other errors still reported. */
static void test_load_skip_tls_files(void **state)
{
	char path[128];
	struct conf *c;
	char *errs = NULL;
	const struct conf_load_opts skip = {.skip_tls_files = true};
	write_file("skiptls.yaml", HOST "listen: [{address: 127.0.0.1:587, mode: submission}]\n"
	                           "tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}\n");
	snprintf(path, sizeof path, "%s/skiptls.yaml", tmpdir);
	assert_int_equal(conf_load(path, &c, &errs), RC_INVALID);
	assert_int_equal(count_lines(errs), 2);
	free(errs);
	errs = NULL;
	assert_int_equal(conf_load_with(path, &skip, &c, &errs), RC_OK);
	assert_null(errs);
	assert_string_equal(c->tls_key, "/nonexistent/key.pem");
	conf_free(c);
	/* still required by a submission listener, and other keys still checked */
	write_file("skiptls2.yaml", HOST "listen: [{address: 127.0.0.1:587, mode: submission}]\n"
	                            "dkim: {retire_after: soon}\n");
	snprintf(path, sizeof path, "%s/skiptls2.yaml", tmpdir);
	assert_int_equal(conf_load_with(path, &skip, &c, &errs), RC_INVALID);
	assert_int_equal(count_lines(errs), 2);
	free(errs);
}

/* dkim.retire_after and dkim.pending_check_interval: durations. */
static void test_durations(void **state)
{
	static const struct {
		const char *label, *value;
		long want; /* -1: refused */
	} cases[] = {
	    {"seconds", "3600", 3600},  {"s", "90s", 90},	{"minutes", "10m", 600},
	    {"hours", "2h", 7200},	      {"days", "7d", 604800}, {"zero", "0", 0},
	    {"no number", "d", -1},	      {"word", "soon", -1},   {"negative", "-1d", -1},
	    {"leading zero", "07d", -1},    {"unknown unit", "3w", -1}, {"too long", "4000d", -1},
	    {"fraction", "1.5h", -1},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *yaml = xasprintf(RELAY "dkim: {retire_after: \"%s\"}\n", cases[i].value);
		struct conf *c = NULL;
		char *errs = NULL;
		enum rc rc = load(yaml, &c, &errs);
		if (cases[i].want < 0) {
			if (rc != RC_INVALID || strstr(errs, "dkim.retire_after: ") == NULL)
				fail_msg("%s: accepted or wrong message: %s", cases[i].label,
				         errs ? errs : "(none)");
		} else {
			if (rc != RC_OK)
				fail_msg("%s: refused: %s", cases[i].label, errs);
			assert_int_equal(c->dkim.retire_after, cases[i].want);
		}
		conf_free(c);
		free(errs);
		free(yaml);
	}
	struct conf *c = NULL;
	assert_int_equal(load(RELAY, &c, NULL), RC_OK);
	assert_int_equal(c->dkim.retire_after, 7 * 86400);
	assert_int_equal(c->dkim.pending_check_interval, 600);
	conf_free(c);
	char *errs = NULL;
	assert_int_equal(load(RELAY "dkim: {pending_check_interval: 0}\n", &c, &errs), RC_INVALID);
	assert_true(has_line(errs, "dkim.pending_check_interval: must be between 1 and 604800 "
	                           "seconds"));
	free(errs);
}

/* ---- delivery ---- */

/* Route host forms: accepted ones are stored canonical, with their port or
 * delivery.port (2500 here). */
static void test_route_hosts(void **state)
{
	static const struct {
		const char *label;
		const char *host; /* YAML text of the value */
		const char *want; /* stored host, NULL: rejected */
		unsigned port;
	} cases[] = {
	    {"name", "smtp.example.net", "smtp.example.net", 2500},
	    {"name and port", "smtp.example.net:587", "smtp.example.net", 587},
	    {"name is lower-cased", "SMTP.Example.NET", "smtp.example.net", 2500},
	    {"single label", "localhost:25", "localhost", 25},
	    {"IPv4 literal", "\"[10.0.0.5]\"", "[10.0.0.5]", 2500},
	    {"IPv4 literal and port", "\"[10.0.0.5]:2525\"", "[10.0.0.5]", 2525},
	    {"bare IPv4", "10.0.0.5", "[10.0.0.5]", 2500},
	    {"bare IPv4 and port", "10.0.0.5:26", "[10.0.0.5]", 26},
	    {"IPv6 literal", "\"[IPv6:2001:db8::1]\"", "[IPv6:2001:db8::1]", 2500},
	    {"IPv6 literal and port", "\"[IPv6:2001:DB8:0::1]:465\"", "[IPv6:2001:db8::1]", 465},
	    {"IPv6 tag in lower case", "\"[ipv6:::1]\"", "[IPv6:::1]", 2500},
	    {"IPv6 without the tag", "\"[2001:db8::1]:25\"", "[IPv6:2001:db8::1]", 25},
	    {"top port", "a.example:65535", "a.example", 65535},
	    {"IPv6 unbracketed", "\"2001:db8::1\"", NULL, 0},
	    {"IPv4 with the IPv6 tag", "\"[IPv6:10.0.0.5]\"", NULL, 0},
	    {"bad IPv4 literal", "\"[10.0.0.256]\"", NULL, 0},
	    {"name in brackets", "\"[smtp.example.net]\"", NULL, 0},
	    {"unclosed bracket", "\"[10.0.0.5\"", NULL, 0},
	    {"empty brackets", "\"[]\"", NULL, 0},
	    {"junk after the bracket", "\"[10.0.0.5]x\"", NULL, 0},
	    {"numeric last label", "10.0.0.256", NULL, 0},
	    {"all digits", "2001", NULL, 0},
	    {"underscore", "mx_1.example.net", NULL, 0},
	    {"trailing dot", "mx.example.net.", NULL, 0},
	    {"URL", "\"smtp://mx.example.net\"", NULL, 0},
	    {"port zero", "a.example:0", NULL, 0},
	    {"port too large", "a.example:65536", NULL, 0},
	    {"port with leading zero", "a.example:025", NULL, 0},
	    {"empty port", "\"a.example:\"", NULL, 0},
	    {"two ports", "a.example:25:26", NULL, 0},
	    {"port only", "\":25\"", NULL, 0},
	    {"space inside", "\"a.example 25\"", NULL, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *yaml = xasprintf(RELAY "delivery:\n  port: 2500\n  routes:\n"
		                             "    example.org: %s\n",
		                       cases[i].host);
		struct conf *c = NULL;
		char *errs = NULL;
		enum rc rc = load(yaml, &c, &errs);
		if (cases[i].want == NULL) {
			if (rc != RC_INVALID || count_lines(errs) != 1 ||
			    strncmp(errs, "delivery.routes.example.org: must be a host name", 48) !=
			        0)
				fail_msg("%s: %s should be rejected, got:\n%s", cases[i].label,
				         cases[i].host, errs ? errs : "(accepted)\n");
		} else {
			if (rc != RC_OK)
				fail_msg("%s: %s rejected:\n%s", cases[i].label, cases[i].host,
				         errs);
			const struct conf_route *r = conf_route_find(c, "example.org");
			assert_non_null(r);
			if (strcmp(r->host, cases[i].want) != 0 || r->port != cases[i].port)
				fail_msg("%s: got %s port %u, want %s port %u", cases[i].label,
				         r->host, r->port, cases[i].want, cases[i].port);
		}
		conf_free(c);
		free(errs);
		free(yaml);
	}
}

/* What a route inherits from delivery: port, tls, and tls_verify when the
 * route's tls is required. */
static void test_route_defaults(void **state)
{
	static const struct {
		const char *label;
		const char *delivery; /* delivery keys besides routes, flow style */
		const char *route;    /* the route's value */
		enum conf_tls_policy tls;
		bool verify;
		unsigned port;
	} cases[] = {
	    {"all defaults", "port: 25", "a.example", CONF_TLS_OPPORTUNISTIC, false, 25},
	    {"delivery port", "port: 2525", "a.example", CONF_TLS_OPPORTUNISTIC, false, 2525},
	    {"own port wins", "port: 2525", "a.example:26", CONF_TLS_OPPORTUNISTIC, false, 26},
	    {"delivery tls", "tls: required", "a.example", CONF_TLS_REQUIRED, false, 25},
	    {"delivery tls and verify", "tls: required, tls_verify: true", "a.example",
	     CONF_TLS_REQUIRED, true, 25},
	    {"own tls, no verify inherited", "tls: required, tls_verify: true",
	     "{host: a.example, tls: opportunistic}", CONF_TLS_OPPORTUNISTIC, false, 25},
	    {"own tls required, verify inherited", "tls: required, tls_verify: true",
	     "{host: a.example, tls: required}", CONF_TLS_REQUIRED, true, 25},
	    {"own tls required, delivery opportunistic", "port: 25",
	     "{host: a.example, tls: required}", CONF_TLS_REQUIRED, false, 25},
	    {"own verify off", "tls: required, tls_verify: true",
	     "{host: a.example, tls_verify: false}", CONF_TLS_REQUIRED, false, 25},
	    {"own verify on", "port: 25", "{host: a.example, tls: required, tls_verify: true}",
	     CONF_TLS_REQUIRED, true, 25},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *yaml = xasprintf(RELAY "delivery: {%s, routes: {example.org: %s}}\n",
		                       cases[i].delivery, cases[i].route);
		struct conf *c = NULL;
		char *errs = NULL;
		if (load(yaml, &c, &errs) != RC_OK)
			fail_msg("%s: rejected:\n%s", cases[i].label, errs);
		const struct conf_route *r = conf_route_find(c, "example.org");
		assert_non_null(r);
		if (r->tls != cases[i].tls || r->tls_verify != cases[i].verify ||
		    r->port != cases[i].port)
			fail_msg("%s: got tls %s verify %d port %u", cases[i].label,
			         conf_tls_policy_name(r->tls), r->tls_verify, r->port);
		conf_free(c);
		free(yaml);
	}
}

/* auth_password_file: the first line, without its line end; errors name the file. */
static void test_password_files(void **state)
{
	static const struct {
		const char *label;
		const char *file;
		const char *want; /* the password, or NULL */
		const char *line; /* else this error ("@DIR@" expanded) */
		bool root_skips;
	} cases[] = {
	    {"first line", "@DIR@/pw.txt", "s3cret", NULL, false},
	    {"CRLF and a space", "@DIR@/pw_crlf.txt", "p@ss word", NULL, false},
	    {"no final newline", "@DIR@/pw_noeol.txt", "last", NULL, false},
	    {"missing", "@DIR@/nope.txt", NULL,
	     "delivery.routes.*.auth_password_file: \"@DIR@/nope.txt\": cannot read: No such file "
	     "or directory",
	     false},
	    {"unreadable", "@DIR@/unreadable.pem", NULL,
	     "delivery.routes.*.auth_password_file: \"@DIR@/unreadable.pem\": cannot read: "
	     "Permission denied",
	     true},
	    {"a directory", "@DIR@", NULL,
	     "delivery.routes.*.auth_password_file: \"@DIR@\": not a regular file", false},
	    {"a device", "/dev/null", NULL,
	     "delivery.routes.*.auth_password_file: \"/dev/null\": not a regular file", false},
	    {"empty first line", "@DIR@/pw_empty.txt", NULL,
	     "delivery.routes.*.auth_password_file: \"@DIR@/pw_empty.txt\": first line is empty",
	     false},
	    {"empty file", "@DIR@/pw_zero.txt", NULL,
	     "delivery.routes.*.auth_password_file: \"@DIR@/pw_zero.txt\": first line is empty",
	     false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		if (cases[i].root_skips && geteuid() == 0)
			continue;
		char *yaml = xasprintf(RELAY "delivery:\n  routes:\n    \"*\":\n"
		                             "      host: smtp.example.net\n      auth_user: u\n"
		                             "      auth_password_file: %s\n      tls: required\n",
		                       cases[i].file);
		struct conf *c = NULL;
		char *errs = NULL;
		enum rc rc = load(yaml, &c, &errs);
		if (cases[i].want != NULL) {
			if (rc != RC_OK)
				fail_msg("%s: rejected:\n%s", cases[i].label, errs);
			const struct conf_route *r = conf_route_find(c, "any.example");
			assert_string_equal(r->auth_password, cases[i].want);
			char *file = expand(cases[i].file);
			assert_string_equal(r->auth_password_file, file);
			free(file);
		} else {
			char *line = expand(cases[i].line);
			assert_int_equal(rc, RC_INVALID);
			if (!has_line(errs, line) || count_lines(errs) != 1)
				fail_msg("%s: expected\n  %s\ngot\n%s", cases[i].label, line, errs);
			free(line);
		}
		conf_free(c);
		free(errs);
		free(yaml);
	}
}

/* A password file's first line: at most CONF_MAX_VALUE (4096) bytes, no NUL. */
static void test_password_file_long(void **state)
{
	char *text = xmalloc(5000);
	memset(text, 'x', 4999);
	text[4999] = '\0';
	write_file("pw_long.txt", text);
	struct conf *c = NULL;
	char *errs = NULL;
	assert_int_equal(load(RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, "
	                            "auth_password_file: @DIR@/pw_long.txt, tls: required}}}\n",
	                      &c, &errs),
	                 RC_INVALID);
	char *line = expand("delivery.routes.*.auth_password_file: \"@DIR@/pw_long.txt\": first "
	                    "line is longer than 4096 bytes");
	assert_true(has_line(errs, line));
	free(line);
	free(errs);
	/* exactly 4096 bytes, then a newline: accepted */
	text[4096] = '\n';
	text[4097] = '\0';
	write_file("pw_long.txt", text);
	assert_int_equal(load(RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, "
	                            "auth_password_file: @DIR@/pw_long.txt, tls: required}}}\n",
	                      &c, &errs),
	                 RC_OK);
	assert_int_equal(strlen(conf_route_find(c, "x.example")->auth_password), 4096);
	conf_free(c);
	/* a NUL on the first line: the password would be cut short */
	char path[128];
	snprintf(path, sizeof path, "%s/pw_long.txt", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fwrite("ab\0cd\n", 1, 6, f);
	fclose(f);
	assert_int_equal(load(RELAY "delivery: {routes: {\"*\": {host: a.example, auth_user: u, "
	                            "auth_password_file: @DIR@/pw_long.txt, tls: required}}}\n",
	                      &c, &errs),
	                 RC_INVALID);
	line = expand("delivery.routes.*.auth_password_file: \"@DIR@/pw_long.txt\": first line "
	              "contains a NUL character");
	assert_true(has_line(errs, line));
	free(line);
	free(errs);
	unlink(path);
	free(text);
}

static void test_route_find(void **state)
{
	static const char yaml[] = RELAY "delivery:\n  routes:\n"
	                                 "    Example.ORG: \"[10.0.0.5]:2525\"\n"
	                                 "    sub.example.org: b.example\n"
	                                 "    \"*\": smarthost.example.net\n"
	                                 "    example.net: c.example\n";
	static const struct {
		const char *label;
		const char *domain;
		const char *host; /* NULL: no route */
	} cases[] = {
	    {"exact", "example.org", "[10.0.0.5]"},
	    {"exact, other case", "EXAMPLE.org", "[10.0.0.5]"},
	    {"subdomain has its own", "sub.example.org", "b.example"},
	    {"a subdomain is not the domain", "other.example.org", "smarthost.example.net"},
	    {"parent is not the subdomain", "org", "smarthost.example.net"},
	    {"after the star", "example.net", "c.example"},
	    {"no exact match: star", "example.com", "smarthost.example.net"},
	    {"prefix is not a match", "example.or", "smarthost.example.net"},
	    {"empty domain: star", "", "smarthost.example.net"},
	};
	struct conf *c;
	char *errs = NULL;
	assert_int_equal(load(yaml, &c, &errs), RC_OK);
	assert_int_equal(c->delivery.nroutes, 4);
	assert_string_equal(c->delivery.routes[0].domain, "example.org");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const struct conf_route *r = conf_route_find(c, cases[i].domain);
		if (r == NULL || strcmp(r->host, cases[i].host) != 0)
			fail_msg("%s: %s went to %s, want %s", cases[i].label, cases[i].domain,
			         r ? r->host : "(none)", cases[i].host);
	}
	assert_null(conf_route_find(c, NULL));
	assert_null(conf_route_find(NULL, "example.org"));
	conf_free(c);

	/* without "*", an unlisted domain has no route: delivery by MX */
	assert_int_equal(load(RELAY "delivery: {routes: {example.org: a.example}}\n", &c, &errs),
	                 RC_OK);
	assert_non_null(conf_route_find(c, "example.org"));
	assert_null(conf_route_find(c, "example.com"));
	conf_free(c);
}

/* 1024 routes are allowed, 1025 are not. */
static void test_route_limit(void **state)
{
	for (int n = 1024; n <= 1025; n++) {
		size_t cap = 64 + (size_t)n * 32, len = strlen(RELAY "delivery:\n  routes:\n");
		char *yaml = xmalloc(cap);
		str_lcpy(yaml, RELAY "delivery:\n  routes:\n", cap);
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(yaml + len, cap - len,
			                        "    d%d.example: h.example\n", i);
		struct conf *c = NULL;
		char *errs = NULL;
		enum rc rc = conf_load_string(yaml, len, "test.yaml", &c, &errs);
		if (n == 1024) {
			assert_int_equal(rc, RC_OK);
			assert_int_equal(c->delivery.nroutes, 1024);
			assert_string_equal(conf_route_find(c, "d1023.example")->host, "h.example");
		} else {
			assert_int_equal(rc, RC_INVALID);
			assert_string_equal(
			    errs, "delivery.routes: must have at most 1024 routes, not 1025\n");
		}
		conf_free(c);
		free(errs);
		free(yaml);
	}
}

static void test_source_address(void **state)
{
	static const struct {
		const char *label;
		const char *value;
		const char *v4, *v6; /* expected, NULL: none */
	} cases[] = {
	    {"IPv4 only", "192.0.2.1", "192.0.2.1", NULL},
	    {"IPv6 only", "\"2001:db8::1\"", NULL, "2001:db8::1"},
	    {"both", "[192.0.2.1, \"2001:db8::1\"]", "192.0.2.1", "2001:db8::1"},
	    {"both, IPv6 first", "[\"2001:db8::1\", 192.0.2.1]", "192.0.2.1", "2001:db8::1"},
	    {"list of one IPv6", "[\"::1\"]", NULL, "::1"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *yaml = xasprintf(RELAY "delivery: {source_address: %s}\n", cases[i].value);
		struct conf *c = NULL;
		char *errs = NULL;
		char ip[INET6_ADDRSTRLEN];
		socklen_t len = 0;
		if (load(yaml, &c, &errs) != RC_OK)
			fail_msg("%s: rejected:\n%s", cases[i].label, errs);
		const struct sockaddr *sa = conf_source_address(c, AF_INET, &len);
		if (cases[i].v4 == NULL) {
			assert_null(sa);
		} else {
			assert_non_null(sa);
			assert_int_equal(sa->sa_family, AF_INET);
			assert_int_equal(len, sizeof(struct sockaddr_in));
			const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
			assert_int_equal(sin->sin_port, 0);
			assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip),
			                    cases[i].v4);
		}
		sa = conf_source_address(c, AF_INET6, &len);
		if (cases[i].v6 == NULL) {
			assert_null(sa);
		} else {
			assert_non_null(sa);
			assert_int_equal(sa->sa_family, AF_INET6);
			assert_int_equal(len, sizeof(struct sockaddr_in6));
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
			assert_string_equal(inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip),
			                    cases[i].v6);
		}
		assert_null(conf_source_address(c, AF_UNIX, &len));
		conf_free(c);
		free(yaml);
	}
	assert_null(conf_source_address(NULL, AF_INET, NULL));
}

/* ---- addresses ---- */

static void test_parse_hostport(void **state)
{
	static const struct {
		const char *label;
		const char *s;
		bool ok;
		int family;
		unsigned port;
	} cases[] = {
	    {"IPv4", "0.0.0.0:587", true, AF_INET, 587},
	    {"IPv4 top port", "127.0.0.1:65535", true, AF_INET, 65535},
	    {"IPv6", "[::1]:465", true, AF_INET6, 465},
	    {"IPv6 wildcard", "[::]:25", true, AF_INET6, 25},
	    {"IPv4-mapped IPv6", "[::ffff:127.0.0.1]:25", true, AF_INET6, 25},
	    {"host name", "localhost:25", false, 0, 0},
	    {"no port", "127.0.0.1", false, 0, 0},
	    {"empty port", "127.0.0.1:", false, 0, 0},
	    {"port zero", "127.0.0.1:0", false, 0, 0},
	    {"port too large", "127.0.0.1:65536", false, 0, 0},
	    {"port with sign", "127.0.0.1:+25", false, 0, 0},
	    {"port with leading zero", "127.0.0.1:025", false, 0, 0},
	    {"port with junk", "127.0.0.1:25x", false, 0, 0},
	    {"IPv6 unbracketed", "::1:25", false, 0, 0},
	    {"IPv6 no colon after bracket", "[::1]25", false, 0, 0},
	    {"IPv6 unclosed", "[::1:25", false, 0, 0},
	    {"empty brackets", "[]:25", false, 0, 0},
	    {"IPv4 in brackets", "[127.0.0.1]:25", false, 0, 0},
	    {"short IPv4", "10.1:25", false, 0, 0},
	    {"empty", "", false, 0, 0},
	    {"just a colon", ":25", false, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct sockaddr_storage sa;
		socklen_t salen = 0;
		bool ok = conf_parse_hostport(cases[i].s, &sa, &salen);
		if (ok != cases[i].ok)
			fail_msg("%s: \"%s\" gave %d", cases[i].label, cases[i].s, ok);
		if (!ok)
			continue;
		assert_int_equal(sa.ss_family, cases[i].family);
		in_port_t port = sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
		                                         : ((struct sockaddr_in6 *)&sa)->sin6_port;
		assert_int_equal(ntohs(port), cases[i].port);
		assert_int_equal(salen, sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
		                                                : sizeof(struct sockaddr_in6));
	}
}

static void test_parse_cidr(void **state)
{
	static const struct {
		const char *label;
		const char *s;
		bool ok;
		int family;
		unsigned prefix;
	} cases[] = {
	    {"IPv4 /8", "127.0.0.0/8", true, AF_INET, 8},
	    {"IPv4 /0", "0.0.0.0/0", true, AF_INET, 0},
	    {"IPv4 /32", "192.0.2.7/32", true, AF_INET, 32},
	    {"IPv4 bare host", "192.0.2.7", true, AF_INET, 32},
	    {"IPv4 odd prefix", "172.16.0.0/12", true, AF_INET, 12},
	    {"IPv6 /128", "::1/128", true, AF_INET6, 128},
	    {"IPv6 /0", "::/0", true, AF_INET6, 0},
	    {"IPv6 bare host", "2001:db8::1", true, AF_INET6, 128},
	    {"IPv6 /127", "2001:db8::/127", true, AF_INET6, 127},
	    {"IPv4-mapped /96", "::ffff:0:0/96", true, AF_INET6, 96},
	    {"IPv4 prefix 33", "10.0.0.0/33", false, 0, 0},
	    {"IPv6 prefix 129", "::/129", false, 0, 0},
	    {"IPv4 host bits", "10.0.0.1/8", false, 0, 0},
	    {"IPv4 host bit in last byte", "192.0.2.1/31", false, 0, 0},
	    {"IPv6 host bits", "2001:db8::1/64", false, 0, 0},
	    {"/0 with host bits", "1.0.0.0/0", false, 0, 0},
	    {"empty prefix", "10.0.0.0/", false, 0, 0},
	    {"prefix leading zero", "10.0.0.0/08", false, 0, 0},
	    {"signed prefix", "10.0.0.0/+8", false, 0, 0},
	    {"prefix junk", "10.0.0.0/8x", false, 0, 0},
	    {"two slashes", "10.0.0.0/8/8", false, 0, 0},
	    {"short IPv4", "10.0.0/8", false, 0, 0},
	    {"name", "localhost", false, 0, 0},
	    {"scoped IPv6", "fe80::1%eth0", false, 0, 0},
	    {"brackets", "[::1]/128", false, 0, 0},
	    {"empty", "", false, 0, 0},
	    {"only a prefix", "/8", false, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct conf_net n = {0};
		bool ok = conf_parse_cidr(cases[i].s, &n);
		if (ok != cases[i].ok)
			fail_msg("%s: \"%s\" gave %d", cases[i].label, cases[i].s, ok);
		if (ok && (n.family != cases[i].family || n.prefix != cases[i].prefix))
			fail_msg("%s: family %d prefix %u", cases[i].label, n.family, n.prefix);
	}
}

/* Build a sockaddr from a textual IPv4 or IPv6 address. */
static void peer_of(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1);
	sin6->sin6_family = AF_INET6;
}

static void test_is_trusted(void **state)
{
	static const struct {
		const char *label;
		const char *nets; /* YAML flow list */
		const char *peer;
		bool want;
	} cases[] = {
	    {"IPv4 inside /8", "[127.0.0.0/8]", "127.1.2.3", true},
	    {"IPv4 outside /8", "[127.0.0.0/8]", "128.0.0.1", false},
	    {"IPv4 /0 matches all IPv4", "[0.0.0.0/0]", "203.0.113.9", true},
	    {"IPv4 /0 matches mapped", "[0.0.0.0/0]", "::ffff:203.0.113.9", true},
	    {"IPv4 /0 not plain IPv6", "[0.0.0.0/0]", "2001:db8::1", false},
	    {"IPv4 /32 exact", "[192.0.2.7/32]", "192.0.2.7", true},
	    {"IPv4 /32 neighbour", "[192.0.2.7/32]", "192.0.2.6", false},
	    {"IPv4 /31 both ends", "[192.0.2.6/31]", "192.0.2.7", true},
	    {"IPv4 /31 outside", "[192.0.2.6/31]", "192.0.2.8", false},
	    {"IPv4 /12 last inside", "[172.16.0.0/12]", "172.31.255.255", true},
	    {"IPv4 /12 first outside", "[172.16.0.0/12]", "172.32.0.0", false},
	    {"bare IPv4 host", "[192.0.2.7]", "192.0.2.7", true},
	    {"IPv6 /128 exact", "[\"::1/128\"]", "::1", true},
	    {"IPv6 /128 neighbour", "[\"::1/128\"]", "::2", false},
	    {"IPv6 /0 matches all IPv6", "[\"::/0\"]", "2001:db8::1", true},
	    {"IPv6 /127 pair", "[\"2001:db8::/127\"]", "2001:db8::1", true},
	    {"IPv6 /127 outside", "[\"2001:db8::/127\"]", "2001:db8::2", false},
	    {"IPv6 /32", "[\"2001:db8::/32\"]", "2001:db8:ffff::1", true},
	    {"IPv6 net not IPv4 peer", "[\"2001:db8::/32\"]", "192.0.2.1", false},
	    {"mapped peer in IPv4 net", "[10.0.0.0/8]", "::ffff:10.9.8.7", true},
	    {"mapped peer outside IPv4 net", "[10.0.0.0/8]", "::ffff:11.0.0.1", false},
	    {"mapped peer in IPv4 /32", "[10.0.0.1/32]", "::ffff:10.0.0.1", true},
	    {"IPv4 peer in mapped net", "[\"::ffff:10.0.0.0/104\"]", "10.1.1.1", true},
	    {"IPv4 peer outside mapped net", "[\"::ffff:10.0.0.0/104\"]", "11.1.1.1", false},
	    {"IPv4 peer in ::/8 (holds the mapped range)", "[\"::/8\"]", "10.0.0.1", true},
	    {"IPv4-compatible is not mapped", "[10.0.0.0/8]", "::10.0.0.1", false},
	    {"second network matches", "[10.0.0.0/8, \"::1\"]", "::1", true},
	    {"no network matches", "[10.0.0.0/8, \"::1\"]", "192.168.1.1", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *yaml = xasprintf(HOST "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
		                       "trusted_networks: %s\n",
		                       cases[i].nets);
		struct conf *c;
		char *errs = NULL;
		struct sockaddr_storage ss;
		if (load(yaml, &c, &errs) != RC_OK)
			fail_msg("%s: config rejected:\n%s", cases[i].label, errs);
		peer_of(cases[i].peer, &ss);
		if (conf_is_trusted(c, (struct sockaddr *)&ss) != cases[i].want)
			fail_msg("%s: %s in %s should be %d", cases[i].label, cases[i].peer,
			         cases[i].nets, cases[i].want);
		conf_free(c);
		free(yaml);
	}
}

/* Issue 12: where MX delivery may not go, and delivery.allow_networks. */
static void test_delivery_allows(void **state)
{
	static const struct {
		const char *peer;
		bool internal;
		bool allowed; /* with allow_networks [127.0.0.0/8, "fd00::/8"] */
	} cases[] = {
	    {"127.0.0.2", true, true},        {"127.255.255.255", true, true},
	    {"10.0.0.1", true, false},        {"172.16.0.1", true, false},
	    {"172.31.255.255", true, false},  {"172.32.0.1", false, true},
	    {"192.168.1.1", true, false},     {"169.254.169.254", true, false},
	    {"100.64.0.1", true, false},      {"100.128.0.1", false, true},
	    {"0.0.0.0", true, false},         {"0.1.2.3", true, false},
	    {"224.0.0.1", true, false},       {"239.255.255.250", true, false},
	    {"240.0.0.1", true, false},       {"255.255.255.255", true, false},
	    {"192.0.2.1", true, false},       {"198.51.100.1", true, false},
	    {"203.0.113.1", true, false},     {"198.18.0.1", true, false},
	    {"192.0.0.1", true, false},       {"8.8.8.8", false, true},
	    {"193.0.2.1", false, true},       {"::1", true, false},
	    {"::", true, false},              {"fe80::1", true, false},
	    {"fc00::1", true, false},         {"fd00::1", true, true},
	    {"fec0::1", true, false},         {"ff02::1", true, false},
	    {"2001:db8::1", true, false},     {"100::1", true, false},
	    {"2a00:1450::1", false, true},    {"::ffff:127.0.0.1", true, true},
	    {"::ffff:10.0.0.1", true, false}, {"::ffff:8.8.8.8", false, true},
	    {"::10.0.0.1", true, false},      {"::127.0.0.1", true, false},
	};
	/* internal, but not the operator's own network */
	static const char *const not_own[] = {"192.0.2.1",  "198.51.100.1", "203.0.113.1",
	                                      "198.18.0.1", "192.0.0.1",    "fec0::1",
	                                      "2001:db8::1", "100::1"};
	struct conf *c;
	char *errs = NULL;
	if (load(HOST "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
	         "trusted_networks: [127.0.0.0/8]\n"
	         "delivery: {allow_networks: [127.0.0.0/8, \"fd00::/8\"]}\n",
	         &c, &errs) != RC_OK)
		fail_msg("config rejected:\n%s", errs);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct sockaddr_storage ss;
		peer_of(cases[i].peer, &ss);
		if (conf_addr_is_internal((struct sockaddr *)&ss) != cases[i].internal)
			fail_msg("%s: internal should be %d", cases[i].peer, cases[i].internal);
		/* private (webhooks' SSRF guard): internal but for the blocks that
		 * are only unfit for mail */
		bool only_mail = false;
		for (size_t j = 0; j < ARRAY_LEN(not_own); j++)
			only_mail |= strcmp(cases[i].peer, not_own[j]) == 0;
		if (conf_addr_is_private((struct sockaddr *)&ss) != (cases[i].internal && !only_mail))
			fail_msg("%s: private should be %d", cases[i].peer,
			         cases[i].internal && !only_mail);
		if (conf_delivery_allows(c, (struct sockaddr *)&ss) != cases[i].allowed)
			fail_msg("%s: allowed should be %d", cases[i].peer, cases[i].allowed);
		if (conf_delivery_allows(NULL, (struct sockaddr *)&ss) != !cases[i].internal)
			fail_msg("%s: without allow_networks", cases[i].peer);
	}
	conf_free(c);
}

/* Issue 12: an IPv4-mapped listener address cannot be bound: refused when loaded. */
static void test_listen_mapped_refused(void **state)
{
	struct conf *c = NULL;
	char *errs = NULL;
	assert_int_not_equal(load(HOST "listen: [{address: \"[::ffff:127.0.0.1]:2525\", mode: relay}]\n"
	                          "trusted_networks: [127.0.0.0/8]\n",
	                          &c, &errs),
	                     RC_OK);
	assert_non_null(errs);
	assert_non_null(strstr(errs, "IPv4-mapped"));
	free(errs);
	assert_int_equal(load(HOST "listen: [{address: \"[::1]:2525\", mode: relay}]\n"
	                      "trusted_networks: [127.0.0.0/8]\n",
	                      &c, &errs),
	                 RC_OK);
	assert_int_equal(c->smtp.max_received_headers, 50);
	assert_false(c->smtp.allow_address_literals);
	assert_int_equal(c->delivery.nallow_networks, 0);
	conf_free(c);
}

static void test_is_trusted_odd(void **state)
{
	struct conf *c;
	char *errs = NULL;
	struct sockaddr_storage ss = {.ss_family = AF_UNIX};
	assert_int_equal(load(HOST "listen: [{address: 127.0.0.1:25, mode: relay}]\n"
	                      "trusted_networks: [0.0.0.0/0, \"::/0\"]\n",
	                      &c, &errs),
	                 RC_OK);
	assert_false(conf_is_trusted(c, (struct sockaddr *)&ss));
	assert_false(conf_is_trusted(c, NULL));
	peer_of("127.0.0.1", &ss);
	assert_false(conf_is_trusted(NULL, (struct sockaddr *)&ss));
	conf_free(c);
}

/* local_submit: off by default; on with users, the socket under data_dir unless set. */
static void test_local_submit(void **state)
{
	static const struct {
		const char *label;
		const char *yaml;
		const char *socket; /* NULL: off */
		size_t nusers;
	} cases[] = {
	    {"absent", RELAY, NULL, 0},
	    {"empty users", RELAY "local_submit: {users: {}}\n", NULL, 0},
	    {"default socket after data_dir", RELAY "local_submit: {users: {root: shop}}\n"
	     "data_dir: /srv/relevo\n", "/srv/relevo/public/submit.sock", 1},
	    {"socket set", RELAY "local_submit: {users: {root: shop}, socket: /run/r/s.sock}\n",
	     "/run/r/s.sock", 1},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct conf *c = NULL;
		char *errs = NULL;
		if (load(cases[i].yaml, &c, &errs) != RC_OK)
			fail_msg("%s: %s", cases[i].label, errs);
		const char *got = c->local_submit.socket;
		if ((got == NULL) != (cases[i].socket == NULL) ||
		    (got && strcmp(got, cases[i].socket) != 0) ||
		    c->local_submit.nusers != cases[i].nusers)
			fail_msg("%s: socket %s users %zu", cases[i].label, got ? got : "(none)",
			         c->local_submit.nusers);
		if (got != NULL) {
			const struct sockaddr_un *sun = (const struct sockaddr_un *)&c->local_submit.listen.sa;
			assert_int_equal(c->local_submit.listen.mode, CONF_LISTEN_LOCAL);
			assert_int_equal(sun->sun_family, AF_UNIX);
			assert_string_equal(sun->sun_path, cases[i].socket);
			assert_string_equal(conf_local_account(c, "root"), "shop");
			assert_null(conf_local_account(c, "www-data"));
		}
		conf_free(c);
	}
}

static void test_mode_names(void **state)
{
	static const struct {
		const char *label;
		enum conf_listen_mode m;
		const char *want;
	} cases[] = {
	    {"submission", CONF_LISTEN_SUBMISSION, "submission"},
	    {"submissions", CONF_LISTEN_SUBMISSIONS, "submissions"},
	    {"relay", CONF_LISTEN_RELAY, "relay"},
	    {"local", CONF_LISTEN_LOCAL, "local"},
	    {"out of range", CONF_LISTEN__COUNT, "unknown"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		if (strcmp(conf_listen_mode_name(cases[i].m), cases[i].want) != 0)
			fail_msg("%s: got %s", cases[i].label, conf_listen_mode_name(cases[i].m));
}

static void test_delivery_names(void **state)
{
	assert_string_equal(conf_tls_policy_name(CONF_TLS_OPPORTUNISTIC), "opportunistic");
	assert_string_equal(conf_tls_policy_name(CONF_TLS_REQUIRED), "required");
	assert_string_equal(conf_tls_policy_name(CONF_TLS__COUNT), "unknown");
	assert_string_equal(conf_delivery_mode_name(CONF_DELIVERY_NORMAL), "normal");
	assert_string_equal(conf_delivery_mode_name(CONF_DELIVERY_SANDBOX), "sandbox");
	assert_string_equal(conf_delivery_mode_name(CONF_DELIVERY__COUNT), "unknown");
}

/* delivery.timeouts and delivery.idle_timeout: defaults, values, bounds, unknown keys. */
/* http.metrics_listen: a default on loopback, "" for none, an address:port, or an error. */
static void test_metrics_listen(void **state)
{
	static const struct {
		const char *label;
		const char *yaml;
		const char *want;	/* NULL: disabled */
		bool given;
	} cases[] = {
	    {"default", RELAY, "127.0.0.1:9025", false},
	    {"empty disables", RELAY "http: {metrics_listen: \"\"}\n", NULL, true},
	    {"an address", RELAY "http: {metrics_listen: 127.0.0.2:9100}\n", "127.0.0.2:9100", true},
	    {"IPv6", RELAY "http: {metrics_listen: \"[::1]:9100\"}\n", "[::1]:9100", true},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct conf *c = NULL;
		char *errs = NULL;
		if (load(cases[i].yaml, &c, &errs) != RC_OK)
			fail_msg("%s: %s", cases[i].label, errs);
		if (cases[i].want == NULL)
			assert_null(c->http.metrics_listen);
		else
			assert_string_equal(c->http.metrics_listen, cases[i].want);
		assert_int_equal(c->http.metrics_listen_given, cases[i].given);
		conf_free(c);
	}
	static const char *const bad[] = {"localhost:9025", "127.0.0.1", "127.0.0.1:0"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char yaml[256];
		snprintf(yaml, sizeof yaml, RELAY "http: {metrics_listen: \"%s\"}\n", bad[i]);
		struct conf *c = NULL;
		char *errs = NULL;
		assert_int_equal(load(yaml, &c, &errs), RC_INVALID);
		if (strstr(errs, "http.metrics_listen: must be a numeric address:port") == NULL)
			fail_msg("%s: %s", bad[i], errs);
		free(errs);
	}
}

static void test_delivery_timeouts(void **state)
{
	struct conf *c = NULL;
	char *errs = NULL;
	assert_int_equal(load(RELAY, &c, &errs), RC_OK);
	assert_int_equal(c->delivery.idle_timeout, 5);
	assert_int_equal(c->delivery.timeouts.connect, 30);
	assert_int_equal(c->delivery.timeouts.greeting, 300);
	assert_int_equal(c->delivery.timeouts.ehlo, 300);
	assert_int_equal(c->delivery.timeouts.mail, 300);
	assert_int_equal(c->delivery.timeouts.rcpt, 300);
	assert_int_equal(c->delivery.timeouts.data, 180);
	assert_int_equal(c->delivery.timeouts.data_block, 180);
	assert_int_equal(c->delivery.timeouts.data_done, 600);
	conf_free(c);
	assert_int_equal(load(RELAY "delivery:\n  idle_timeout: 0\n  timeouts: {connect: 3, "
	                            "greeting: 4, ehlo: 5, mail: 6, rcpt: 7, data: 8, "
	                            "data_block: 9, data_done: 10}\n",
	                      &c, &errs),
	                 RC_OK);
	assert_int_equal(c->delivery.idle_timeout, 0);
	assert_int_equal(c->delivery.timeouts.connect, 3);
	assert_int_equal(c->delivery.timeouts.greeting, 4);
	assert_int_equal(c->delivery.timeouts.ehlo, 5);
	assert_int_equal(c->delivery.timeouts.mail, 6);
	assert_int_equal(c->delivery.timeouts.rcpt, 7);
	assert_int_equal(c->delivery.timeouts.data, 8);
	assert_int_equal(c->delivery.timeouts.data_block, 9);
	assert_int_equal(c->delivery.timeouts.data_done, 10);
	conf_free(c);
	/* one given: the others keep their defaults */
	assert_int_equal(load(RELAY "delivery: {timeouts: {rcpt: 2}}\n", &c, &errs), RC_OK);
	assert_int_equal(c->delivery.timeouts.rcpt, 2);
	assert_int_equal(c->delivery.timeouts.data_done, 600);
	conf_free(c);
	static const struct {
		const char *label, *yaml, *line;
	} bad[] = {
	    {"zero timeout", RELAY "delivery: {timeouts: {data: 0}}\n",
	     "delivery.timeouts.data: must be between 1 and 86400"},
	    {"unknown timeout", RELAY "delivery: {timeouts: {quit: 5}}\n",
	     "delivery.timeouts.quit: unknown key"},
	    {"timeouts as a number", RELAY "delivery: {timeouts: 30}\n",
	     "delivery.timeouts: must be a mapping, not a single value"},
	    {"idle_timeout too long", RELAY "delivery: {idle_timeout: 3601}\n",
	     "delivery.idle_timeout: must be between 0 and 3600"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		c = NULL;
		errs = NULL;
		if (load(bad[i].yaml, &c, &errs) != RC_INVALID || !has_line(errs, bad[i].line))
			fail_msg("case %s: errors \"%s\"", bad[i].label, errs ? errs : "");
		assert_null(c);
		free(errs);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_valid_variants),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_no_follow_on_errors),
	    cmocka_unit_test(test_all_errors_together),
	    cmocka_unit_test(test_error_cap),
	    cmocka_unit_test(test_tls_files),
	    cmocka_unit_test(test_tls_key_group_readable),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_load_skip_tls_files),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_reload_helpers),
	    cmocka_unit_test(test_route_hosts),
	    cmocka_unit_test(test_route_defaults),
	    cmocka_unit_test(test_password_files),
	    cmocka_unit_test(test_password_file_long),
	    cmocka_unit_test(test_route_find),
	    cmocka_unit_test(test_route_limit),
	    cmocka_unit_test(test_source_address),
	    cmocka_unit_test(test_parse_hostport),
	    cmocka_unit_test(test_parse_cidr),
	    cmocka_unit_test(test_is_trusted),
	    cmocka_unit_test(test_is_trusted_odd),
	    cmocka_unit_test(test_delivery_allows),
	    cmocka_unit_test(test_listen_mapped_refused),
	    cmocka_unit_test(test_mode_names),
	    cmocka_unit_test(test_local_submit),
	    cmocka_unit_test(test_delivery_names),
	    cmocka_unit_test(test_delivery_timeouts),
	    cmocka_unit_test(test_metrics_listen),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
