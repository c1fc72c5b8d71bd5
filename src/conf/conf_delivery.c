/*
 * conf_delivery.c - the delivery keys whose shape a plain schema row cannot
 * describe: delivery.routes (a mapping keyed by recipient domain, each value a
 * "host[:port]" string or a mapping) and delivery.source_address (one address,
 * or a list of one IPv4 and one IPv6). Also the lookups the delivery side
 * uses: conf_route_find() and conf_source_address().
 *
 * routes is a late row of the delivery section (conf_int.h): it is parsed after
 * delivery.port, tls and tls_verify, whatever their order in the file, so that
 * each route is complete when parsed (port, tls and tls_verify inherited). Its
 * checks span keys of one route: a password is never sent in plaintext, so
 * auth_user needs tls: required (RFC 4954 section 4 leaves this to the client;
 * we do not leave it to chance).
 *
 * Ownership: routes and their strings belong to the struct conf. Passwords are
 * never quoted in an error message; a password file's buffer is wiped.
 * Failure model: as conf.c, every problem becomes an error line and parsing
 * goes on. Loading reads auth_password_file (first line only, regular files
 * only: a FIFO or a device could block or never end).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "conf/conf_int.h"

#define CONF_ROUTE_HOST_MAX  256 /* a DNS name (253) or an IPv6 literal, plus NUL */
#define CONF_ROUTE_HOST_WANT "a host name or [IP address] with an optional :port"
#define CONF_SOURCE_WANT     "an IP address (192.0.2.1, \"2001:db8::1\")"

/* ---- route host ---- */

/* A port: 1..65535, digits only, no leading zero. */
static bool conf_route_port(const char *s, uint16_t *port)
{
	uint64_t v;
	size_t len = strlen(s);
	if (len == 0 || len > 5 || s[0] == '0' || !str_to_u64(s, &v) || v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* "[192.0.2.1]", "[IPv6:2001:db8::1]" or "[2001:db8::1]" up to the ']' in
 * close: the canonical literal (inet_ntop form, IPv6 tagged) into host. */
static bool conf_route_literal(const char *s, const char *close, char *host, size_t hostsz)
{
	char ip[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN];
	uint8_t addr[16];
	const char *in = s + 1;
	size_t len = (size_t)(close - in);
	bool tagged = len >= 5 && strncasecmp(in, "IPv6:", 5) == 0;
	if (tagged) {
		in += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof ip)
		return false;
	memcpy(ip, in, len);
	ip[len] = '\0';
	if (!tagged && inet_pton(AF_INET, ip, addr) == 1 &&
	    inet_ntop(AF_INET, addr, text, sizeof text) != NULL) {
		snprintf(host, hostsz, "[%s]", text);
		return true;
	}
	if (inet_pton(AF_INET6, ip, addr) == 1 &&
	    inet_ntop(AF_INET6, addr, text, sizeof text) != NULL) {
		snprintf(host, hostsz, "[IPv6:%s]", text);
		return true;
	}
	return false;
}

/* A DNS name or a bare IPv4 address, s[0..len): canonical form into host. */
static bool conf_route_name(const char *s, size_t len, char *host, size_t hostsz)
{
	char name[CONF_ROUTE_HOST_MAX];
	uint8_t addr[4];
	if (len == 0 || len >= sizeof name)
		return false;
	memcpy(name, s, len);
	name[len] = '\0';
	if (inet_pton(AF_INET, name, addr) == 1) {
		snprintf(host, hostsz, "[%u.%u.%u.%u]", addr[0], addr[1], addr[2], addr[3]);
		return true;
	}
	if (!conf_is_hostname(name) || str_has_numeric_tld(name))
		return false;
	str_lower(name);
	str_lcpy(host, name, hostsz);
	return true;
}

/* Split a route's "host[:port]" into the canonical host (see struct conf_route)
 * and the port, 0 when none is written. An IPv6 literal needs its brackets. */
static bool conf_route_host_split(const char *s, char *host, size_t hostsz, uint16_t *port)
{
	const char *rest;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || !conf_route_literal(s, close, host, hostsz))
			return false;
		rest = close + 1;
	} else {
		size_t len = strcspn(s, ":");
		if (!conf_route_name(s, len, host, hostsz))
			return false;
		rest = s + len;
	}
	*port = 0;
	if (rest[0] == '\0')
		return true;
	return rest[0] == ':' && conf_route_port(rest + 1, port);
}

/* Set r->host and r->port from the text s, or say why not. */
static void conf_route_set_host(struct conf_ctx *ctx, struct conf_route *r, const char *s,
                                const char *path)
{
	char host[CONF_ROUTE_HOST_MAX], shown[CONF_SHOWN_BUF];
	uint16_t port;
	if (!conf_route_host_split(s, host, sizeof host, &port)) {
		conf_err(ctx, path, "must be %s, not \"%s\"", CONF_ROUTE_HOST_WANT,
		         conf_shown(s, strlen(s), shown));
		return;
	}
	free(r->host);
	r->host = xstrdup(host);
	r->port = port;
}

/* routes.X.host: base is the struct conf_route. */
static void conf_route_host_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                                  void *base, const char *path)
{
	const char *s = conf_scalar(ctx, node, path, CONF_ROUTE_HOST_WANT);
	if (s != NULL)
		conf_route_set_host(ctx, base, s, path);
}

static void conf_route_str_release(const struct conf_key *k, void *base)
{
	char **field = CONF_FIELD(base, k, char *);
	free(*field);
	*field = NULL;
}

/* ---- password files ---- */

/* Read up to cap bytes of a regular file into buf; false with why filled in.
 * Only a regular file is read: a FIFO or a device could block or never end. */
static bool conf_read_head(const char *file, char *buf, size_t cap, size_t *len, char *why,
                           size_t whysz)
{
	char ebuf[128];
	struct stat st;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(why, whysz, "cannot read: %s", strerror_r(errno, ebuf, sizeof ebuf));
		return false;
	}
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (!ok)
		snprintf(why, whysz, "not a regular file");
	for (*len = 0; ok && *len < cap;) {
		ssize_t n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whysz, "cannot read: %s",
			         strerror_r(errno, ebuf, sizeof ebuf));
			ok = false;
		}
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	close(fd);
	return ok;
}

/* The first line of file, without its line end, as a new string; or NULL with
 * why filled in. Reads at most CONF_MAX_VALUE + 1 bytes; the buffer is wiped. */
static char *conf_first_line(const char *file, char *why, size_t whysz)
{
	char buf[CONF_MAX_VALUE + 1];
	size_t len, line;
	char *out = NULL;
	if (conf_read_head(file, buf, sizeof buf, &len, why, whysz)) {
		const char *nl = memchr(buf, '\n', len);
		line = nl ? (size_t)(nl - buf) : len;
		if (line > 0 && buf[line - 1] == '\r')
			line--;
		if (line > CONF_MAX_VALUE)
			snprintf(why, whysz, "first line is longer than %d bytes", CONF_MAX_VALUE);
		else if (memchr(buf, '\0', line) != NULL)
			snprintf(why, whysz, "first line contains a NUL character");
		else if (line == 0)
			snprintf(why, whysz, "first line is empty");
		else
			out = xstrndup(buf, line);
	}
	explicit_bzero(buf, sizeof buf);
	return out;
}

/* routes.X.auth_password_file: keeps the name, reads the password into
 * auth_password. base is the struct conf_route. */
static void conf_route_pwfile_parse(struct conf_ctx *ctx, const struct conf_key *k,
                                    yaml_node_t *node, void *base, const char *path)
{
	struct conf_route *r = base;
	char why[128], shown[CONF_SHOWN_BUF];
	unsigned before = ctx->nerr;
	conf_t_str.parse(ctx, k, node, base, path);
	if (ctx->nerr != before)
		return;
	const char *file = r->auth_password_file;
	char *pw = conf_first_line(file, why, sizeof why);
	if (pw == NULL) {
		conf_err(ctx, path, "\"%s\": %s", conf_shown(file, strlen(file), shown), why);
		return;
	}
	free(r->auth_password);
	r->auth_password = pw;
}

static const struct conf_type conf_t_route_host = {.parse = conf_route_host_parse,
                                                   .release = conf_route_str_release};
static const struct conf_type conf_t_route_pwfile = {
    .parse = conf_route_pwfile_parse, .release = conf_route_str_release, .expect = "a file name"};

#define RF(f) offsetof(struct conf_route, f)
static const struct conf_key conf_route_keys[] = {
    KEY("host", conf_t_route_host, RF(host), .required = true),
    KEY("auth_user", conf_t_str, RF(auth_user)),
    KEY("auth_password", conf_t_str, RF(auth_password)),
    KEY("auth_password_file", conf_t_route_pwfile, RF(auth_password_file)),
    KEY("tls", conf_t_enum, RF(tls), .max = CONF_TLS__COUNT, .names = conf_tls_policy_names),
    KEY("tls_verify", conf_t_bool, RF(tls_verify)),
    CONF_END,
};
static const struct conf_key conf_route_row = KEY("", conf_t_map, 0, .sub = conf_route_keys);

/* ---- routes ---- */

/* Does the mapping node have the key name? */
static bool conf_map_has(const struct conf_ctx *ctx, const yaml_node_t *node, const char *name)
{
	size_t n = strlen(name);
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *key = yaml_document_get_node(ctx->doc, p->key);
		if (key != NULL && key->type == YAML_SCALAR_NODE && key->data.scalar.length == n &&
		    memcmp(key->data.scalar.value, name, n) == 0)
			return true;
	}
	return false;
}

/* conf_err on "path.key". */
static void conf_route_err(struct conf_ctx *ctx, const char *path, const char *key, const char *msg)
{
	char *child = xasprintf("%s.%s", path, key);
	conf_err(ctx, child, "%s", msg);
	free(child);
}

/* The rules between the keys of a route mapping: a password with a user, one
 * source for the password, never a password in plaintext. */
static void conf_route_check_auth(struct conf_ctx *ctx, const struct conf_route *r,
                                  const yaml_node_t *node, const char *path)
{
	bool user = conf_map_has(ctx, node, "auth_user");
	bool pw = conf_map_has(ctx, node, "auth_password");
	bool pwfile = conf_map_has(ctx, node, "auth_password_file");
	char *tls_path = xasprintf("%s.tls", path);
	if (pw && pwfile)
		conf_route_err(ctx, path, "auth_password_file",
		               "give auth_password or auth_password_file, not both");
	if (user && !pw && !pwfile)
		conf_route_err(ctx, path, "auth_user", "needs auth_password or auth_password_file");
	if (!user && (pw || pwfile))
		conf_route_err(ctx, path, "auth_user",
		               pw ? "missing, required with auth_password"
		                  : "missing, required with auth_password_file");
	if (user && r->tls != CONF_TLS_REQUIRED && !conf_has_err(ctx, tls_path) &&
	    !conf_has_err(ctx, "delivery.tls"))
		conf_route_err(ctx, path, "auth_user",
		               "needs tls: required, a password is never sent in plaintext");
	free(tls_path);
}

/* A route's value: "host[:port]" or a mapping. r->domain is set; the rest is
 * filled here, with delivery.port, tls and tls_verify as defaults. */
static void conf_route_value(struct conf_ctx *ctx, const struct conf *c, struct conf_route *r,
                             yaml_node_t *node, const char *path)
{
	bool mapping = node != NULL && node->type == YAML_MAPPING_NODE;
	bool verify_given = mapping && conf_map_has(ctx, node, "tls_verify");
	r->tls = c->delivery.tls;
	if (mapping) {
		conf_route_row.type->parse(ctx, &conf_route_row, node, r, path);
		conf_route_check_auth(ctx, r, node, path);
	} else {
		const char *s = conf_scalar(ctx, node, path, CONF_ROUTE_HOST_WANT ", or a mapping");
		if (s != NULL)
			conf_route_set_host(ctx, r, s, path);
	}
	if (r->port == 0)
		r->port = (uint16_t)c->delivery.port;
	if (!verify_given)
		r->tls_verify = r->tls == CONF_TLS_REQUIRED && c->delivery.tls_verify;
	else if (r->tls_verify && r->tls != CONF_TLS_REQUIRED)
		conf_route_err(ctx, path, "tls_verify", "true needs tls: required");
}

/* Is the route key acceptable: a domain name or "*", not given before? */
static bool conf_route_domain_ok(struct conf_ctx *ctx, const struct conf *c, const yaml_node_t *key,
                                 const char *path)
{
	const char *s = (const char *)key->data.scalar.value;
	size_t len = key->data.scalar.length;
	if (memchr(s, '\0', len) != NULL || (strcmp(s, "*") != 0 && !conf_is_hostname(s))) {
		conf_err(ctx, path, "route key must be a domain name or \"*\"");
		return false;
	}
	for (size_t i = 0; i < c->delivery.nroutes; i++) {
		if (str_ieq(c->delivery.routes[i].domain, s)) {
			conf_err(ctx, path, "duplicate key");
			return false;
		}
	}
	return true;
}

/* One "domain: route" pair of delivery.routes. */
static void conf_route_pair(struct conf_ctx *ctx, struct conf *c, const yaml_node_pair_t *pair,
                            const char *path)
{
	yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
	if (key == NULL || key->type != YAML_SCALAR_NODE) {
		conf_err(ctx, path, "keys must be plain strings");
		return;
	}
	char *child = conf_path_key(path, key);
	if (conf_route_domain_ok(ctx, c, key, child)) {
		/* counted before it is filled in: conf_free() then frees a half-parsed route */
		struct conf_route *r = &c->delivery.routes[c->delivery.nroutes++];
		r->domain = xstrdup((const char *)key->data.scalar.value);
		str_lower(r->domain);
		conf_route_value(ctx, c, r, yaml_document_get_node(ctx->doc, pair->value), child);
	}
	free(child);
}

/* delivery.routes: base is the struct conf. Empty or null: no routes. */
static void conf_routes_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                              void *base, const char *path)
{
	struct conf *c = base;
	if (conf_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		conf_err(ctx, path, "must be a mapping of domain: route, not %s", conf_kind(node));
		return;
	}
	yaml_node_pair_t *start = node->data.mapping.pairs.start;
	size_t n = (size_t)(node->data.mapping.pairs.top - start);
	if (n > CONF_ROUTES_MAX) {
		conf_err(ctx, path, "must have at most %d routes, not %zu", CONF_ROUTES_MAX, n);
		return;
	}
	if (n == 0)
		return;
	c->delivery.routes = xcalloc(n, sizeof *c->delivery.routes);
	for (size_t i = 0; i < n; i++)
		conf_route_pair(ctx, c, &start[i], path);
}

static void conf_routes_release(const struct conf_key *k, void *base)
{
	struct conf *c = base;
	for (size_t i = 0; i < c->delivery.nroutes; i++) {
		conf_route_row.type->release(&conf_route_row, &c->delivery.routes[i]);
		free(c->delivery.routes[i].domain);
	}
	free(c->delivery.routes);
	c->delivery.routes = NULL;
	c->delivery.nroutes = 0;
}

const struct conf_type conf_t_routes = {.parse = conf_routes_parse, .release = conf_routes_release};

/* conf_route_find - exact domain (case-insensitive), else "*", else NULL. */
const struct conf_route *conf_route_find(const struct conf *c, const char *domain)
{
	const struct conf_route *any = NULL;
	if (c == NULL || domain == NULL)
		return NULL;
	for (size_t i = 0; i < c->delivery.nroutes; i++) {
		const struct conf_route *r = &c->delivery.routes[i];
		if (strcmp(r->domain, "*") == 0)
			any = r;
		else if (str_ieq(r->domain, domain))
			return r;
	}
	return any;
}

/* ---- source addresses ---- */

/* One source address into source_v4 or source_v6, each at most once. */
static void conf_source_one(struct conf_ctx *ctx, struct conf *c, const yaml_node_t *node,
                            const char *path, const char *want)
{
	char shown[CONF_SHOWN_BUF];
	struct sockaddr_in *v4 = &c->delivery.source_v4;
	struct sockaddr_in6 *v6 = &c->delivery.source_v6;
	struct in_addr a4;
	struct in6_addr a6;
	const char *s = conf_scalar(ctx, node, path, want);
	if (s == NULL)
		return;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		if (v4->sin_family == AF_INET) {
			conf_err(ctx, path,
			         "a second IPv4 address; give at most one IPv4 and one "
			         "IPv6 address");
			return;
		}
		*v4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = a4};
	} else if (inet_pton(AF_INET6, s, &a6) == 1) {
		if (v6->sin6_family == AF_INET6) {
			conf_err(ctx, path,
			         "a second IPv6 address; give at most one IPv4 and one "
			         "IPv6 address");
			return;
		}
		*v6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_addr = a6};
	} else {
		conf_err(ctx, path, "must be %s, not \"%s\"", want,
		         conf_shown(s, strlen(s), shown));
	}
}

/* delivery.source_address: one address, or a list of one or two. base is the
 * struct conf; nothing is allocated. */
static void conf_source_address_parse(struct conf_ctx *ctx, const struct conf_key *k,
                                      yaml_node_t *node, void *base, const char *path)
{
	if (node == NULL || node->type != YAML_SEQUENCE_NODE) {
		conf_source_one(ctx, base, node, path, CONF_SOURCE_WANT " or a list of two");
		return;
	}
	yaml_node_item_t *start = node->data.sequence.items.start;
	size_t n = (size_t)(node->data.sequence.items.top - start);
	if (n < 1 || n > 2) {
		conf_err(ctx, path, "must have 1 or 2 entries (one IPv4, one IPv6), not %zu", n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char *child = xasprintf("%s[%zu]", path, i);
		conf_source_one(ctx, base, yaml_document_get_node(ctx->doc, start[i]), child,
		                CONF_SOURCE_WANT);
		free(child);
	}
}

const struct conf_type conf_t_source_address = {.parse = conf_source_address_parse};

/* conf_source_address - the configured source for family, or NULL. */
const struct sockaddr *conf_source_address(const struct conf *c, int family, socklen_t *len)
{
	if (c == NULL)
		return NULL;
	if (family == AF_INET && c->delivery.source_v4.sin_family == AF_INET) {
		if (len != NULL)
			*len = sizeof c->delivery.source_v4;
		return (const struct sockaddr *)&c->delivery.source_v4;
	}
	if (family == AF_INET6 && c->delivery.source_v6.sin6_family == AF_INET6) {
		if (len != NULL)
			*len = sizeof c->delivery.source_v6;
		return (const struct sockaddr *)&c->delivery.source_v6;
	}
	return NULL;
}
