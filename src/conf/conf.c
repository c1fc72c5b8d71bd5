/*
 * conf.c - load relevo's YAML configuration into struct conf.
 *
 * The schema is data. Every accepted key is one row of a conf_key table: name,
 * type, the offset of its field in struct conf, default, bounds. A section
 * (smtp:, tls:) is a row of type mapping with its own table; a list (listen:)
 * is a row of type list with one row describing an entry. One walker checks
 * the libyaml document against the tables, so adding a key is adding a row
 * (and its field in conf.h). A row marked late is parsed after the other keys
 * of its section, so it may read them (delivery.routes inherits delivery.port
 * and delivery.tls). Keys whose shape needs code of their own live in
 * conf_delivery.c; the machinery they share is in conf_int.h. Whole-config
 * rules that span keys (listener clashes, TLS needed by submission, relay
 * needs trusted_networks, tls_verify needs tls: required, a memory budget of at
 * least one message) run after the walk, from the conf_checks table.
 *
 * Failure model: nothing stops at the first problem. Each one becomes a line
 * "key.path: explanation" (at most CONF_MAX_ERRORS lines) and the walk goes on;
 * a configuration with any error is freed, never returned. Text from the file
 * quoted in a message is escaped and cut (conf_shown) so a line stays a line.
 *
 * Ownership: struct conf owns every string and array it points to. Each type
 * knows how to set its default (init) and free its field (release), so
 * conf_free() walks the same tables. A finished struct conf is read-only (but
 * for its reference count) and may be shared by threads; the daemon replaces it
 * on a reload rather than changing it (src/cli/cli_reload.c).
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <yaml.h>

#include "conf/conf_int.h"

#define CONF_MAX_FILE   (1024 * 1024) /* bytes of YAML read by conf_load */
#define CONF_MAX_ERRORS 50            /* error lines kept; more are counted, not shown */
#define CONF_MAX_KEYS   32            /* rows in one section table */

/* ---- errors ---- */

/* conf_err_line - append one error line (printf format, newline added). */
static void conf_err_line(struct conf_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conf_err_line(struct conf_ctx *ctx, const char *fmt, ...)
{
	if (ctx->nerr++ > CONF_MAX_ERRORS)
		return;
	char *line;
	if (ctx->nerr > CONF_MAX_ERRORS) {
		line = xasprintf("%s: too many errors, the rest are not shown\n", ctx->name);
	} else {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&line, fmt, ap) < 0)
			fatal("event=oom where=conf_err_line");
		va_end(ap);
	}
	size_t n = strlen(line);
	ctx->errs = xrealloc(ctx->errs, ctx->errlen + n + 2);
	memcpy(ctx->errs + ctx->errlen, line, n);
	ctx->errlen += n;
	if (n == 0 || line[n - 1] != '\n')
		ctx->errs[ctx->errlen++] = '\n';
	ctx->errs[ctx->errlen] = '\0';
	free(line);
}

/* conf_err - "path: explanation"; the file name stands in for an empty path. */
void conf_err(struct conf_ctx *ctx, const char *path, const char *fmt, ...)
{
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatal("event=oom where=conf_err");
	va_end(ap);
	conf_err_line(ctx, "%s: %s", path[0] ? path : ctx->name, msg);
	free(msg);
}

/* conf_shown - escape s[0..len) for a message: printable ASCII kept, the rest
 * \xNN, cut after CONF_SHOWN bytes. */
const char *conf_shown(const char *s, size_t len, char out[CONF_SHOWN_BUF])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < len && i < CONF_SHOWN; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
			out[o++] = (char)ch;
			continue;
		}
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[ch >> 4];
		out[o++] = hex[ch & 15];
	}
	if (len > CONF_SHOWN)
		for (int i = 0; i < 3; i++)
			out[o++] = '.';
	out[o] = '\0';
	return out;
}

/* conf_has_err - is there already an error about prefix or a key under it
 * ("tls", "tls.cert")? Whole-config checks use it not to pile a second
 * complaint on a broken key. */
bool conf_has_err(const struct conf_ctx *ctx, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *line = ctx->errs; line != NULL && *line != '\0';) {
		if (strncmp(line, prefix, n) == 0 && line[n] != '\0' &&
		    strchr(":.[", line[n]) != NULL)
			return true;
		const char *nl = strchr(line, '\n');
		line = nl ? nl + 1 : NULL;
	}
	return false;
}

/* ---- nodes ---- */

static yaml_node_t *conf_node(struct conf_ctx *ctx, int index)
{
	return yaml_document_get_node(ctx->doc, index);
}

/* conf_is_null - a missing node, or a plain scalar spelling YAML's null (`key:`,
 * ~, null). */
bool conf_is_null(const yaml_node_t *node)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	if (node == NULL)
		return true;
	if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < ARRAY_LEN(nulls); i++)
		if (strcmp((const char *)node->data.scalar.value, nulls[i]) == 0)
			return true;
	return false;
}

/* conf_kind - what a node is, for "must be X, not Y" messages. */
const char *conf_kind(const yaml_node_t *node)
{
	if (node->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (node->type == YAML_SEQUENCE_NODE)
		return "a list";
	return "a single value";
}

/* conf_scalar - the text of a scalar node, or NULL after saying why there is none. */
const char *conf_scalar(struct conf_ctx *ctx, const yaml_node_t *node, const char *path,
                        const char *want)
{
	if (conf_is_null(node)) {
		conf_err(ctx, path, "missing value, expected %s", want);
		return NULL;
	}
	if (node->type != YAML_SCALAR_NODE) {
		conf_err(ctx, path, "must be %s, not %s", want, conf_kind(node));
		return NULL;
	}
	const char *s = (const char *)node->data.scalar.value;
	size_t len = node->data.scalar.length;
	if (memchr(s, '\0', len) != NULL) {
		conf_err(ctx, path, "must not contain NUL characters");
		return NULL;
	}
	if (len > CONF_MAX_VALUE) {
		conf_err(ctx, path, "too long (at most %d bytes)", CONF_MAX_VALUE);
		return NULL;
	}
	return s;
}

/* ---- strings ---- */

static void conf_str_init(const struct conf_key *k, void *base)
{
	if (k->def_str != NULL)
		*CONF_FIELD(base, k, char *) = xstrdup(k->def_str);
}

static void conf_str_release(const struct conf_key *k, void *base)
{
	char **field = CONF_FIELD(base, k, char *);
	free(*field);
	*field = NULL;
}

/* A string, checked by the type's valid(); replaces the default. */
static void conf_str_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                           void *base, const char *path)
{
	char shown[CONF_SHOWN_BUF];
	const char *expect = k->type->expect ? k->type->expect : "a string";
	const char *s = conf_scalar(ctx, node, path, expect);
	if (s == NULL)
		return;
	if (s[0] == '\0') {
		conf_err(ctx, path, "must not be empty");
		return;
	}
	if (k->type->valid != NULL && !k->type->valid(s)) {
		conf_err(ctx, path, "must be %s, not \"%s\"", expect,
		         conf_shown(s, strlen(s), shown));
		return;
	}
	conf_str_release(k, base);
	*CONF_FIELD(base, k, char *) = xstrdup(s);
}

static bool conf_valid_abs_path(const char *s)
{
	return s[0] == '/';
}

/* conf_is_hostname - a host name (str_is_hostname, at most 253 octets). */
bool conf_is_hostname(const char *s)
{
	return str_is_hostname(s, STR_DOMAIN_MAX);
}

/* "IP" or "IP@port", IPv4 or IPv6, numeric. */
static bool conf_valid_resolver(const char *s)
{
	char ip[INET6_ADDRSTRLEN];
	uint8_t addr[16];
	uint64_t port;
	const char *at = strchr(s, '@');
	size_t iplen = at ? (size_t)(at - s) : strlen(s);
	if (iplen == 0 || iplen >= sizeof ip)
		return false;
	memcpy(ip, s, iplen);
	ip[iplen] = '\0';
	if (inet_pton(AF_INET, ip, addr) != 1 && inet_pton(AF_INET6, ip, addr) != 1)
		return false;
	if (at == NULL)
		return true;
	const char *p = at + 1;
	return p[0] != '0' && strlen(p) <= 5 && str_to_u64(p, &port) && port >= 1 && port <= 65535;
}

/* run_as: a user that exists (getpwnam_r), so that check-config catches a typo
 * and serve refuses before it binds anything. */
static void conf_user_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	unsigned before = ctx->nerr;
	conf_str_parse(ctx, k, node, base, path);
	const char *user = *CONF_FIELD(base, k, char *);
	if (ctx->nerr != before || user == NULL)
		return;
	struct passwd pw, *found = NULL;
	char buf[4096], shown[CONF_SHOWN_BUF], ebuf[128];
	int e = getpwnam_r(user, &pw, buf, sizeof buf, &found);
	if (found != NULL)
		return;
	conf_shown(user, strlen(user), shown);
	if (e == 0 || e == ENOENT || e == ESRCH)
		conf_err(ctx, path, "no such user \"%s\"", shown);
	else
		conf_err(ctx, path, "cannot look up user \"%s\": %s", shown,
		         strerror_r(e, ebuf, sizeof ebuf));
}

/* A file relevo must be able to read (certificates, keys). Not looked at when
 * the caller asked to skip the TLS files (every command but serve and
 * check-config: tls.key is often root's alone). */
static void conf_file_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	unsigned before = ctx->nerr;
	conf_str_parse(ctx, k, node, base, path);
	const char *file = *CONF_FIELD(base, k, char *);
	if (ctx->nerr != before || file == NULL || ctx->skip_tls_files || access(file, R_OK) == 0)
		return;
	char buf[128], shown[CONF_SHOWN_BUF];
	conf_err(ctx, path, "cannot read \"%s\": %s", conf_shown(file, strlen(file), shown),
	         strerror_r(errno, buf, sizeof buf));
}

/* A private key file (tls.key): as conf_file_parse, and it must not be open to
 * other users: readable or writable by "other" is an error, group-readable a
 * warning (a group such as Debian's ssl-cert may need it). stat() follows
 * symlinks, so a link into a certificate store is judged by its target. */
static void conf_key_file_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                                void *base, const char *path)
{
	unsigned before = ctx->nerr;
	struct stat st;
	conf_file_parse(ctx, k, node, base, path);
	const char *file = *CONF_FIELD(base, k, char *);
	if (ctx->nerr != before || file == NULL || ctx->skip_tls_files || stat(file, &st) != 0)
		return;
	char shown[CONF_SHOWN_BUF];
	conf_shown(file, strlen(file), shown);
	if (st.st_mode & S_IRWXO)
		conf_err(ctx, path, "\"%s\" is open to other users (mode %04o): run chmod 600 %s",
		         shown, (unsigned)(st.st_mode & 07777), shown);
	else if (st.st_mode & (S_IRGRP | S_IWGRP))
		log_warn("event=key_file_mode key=%s path=\"%s\" mode=%04o "
		         "hint=\"readable by its group: chmod 600 %s unless the group needs it\"",
		         path, shown, (unsigned)(st.st_mode & 07777), shown);
}

const struct conf_type conf_t_str = {.parse = conf_str_parse,
                                     .init = conf_str_init,
                                     .release = conf_str_release,
                                     .expect = "a string"};
static const struct conf_type conf_t_path = {.parse = conf_str_parse,
                                             .init = conf_str_init,
                                             .release = conf_str_release,
                                             .valid = conf_valid_abs_path,
                                             .expect = "an absolute path"};
static const struct conf_type conf_t_file = {.parse = conf_file_parse,
                                             .init = conf_str_init,
                                             .release = conf_str_release,
                                             .expect = "a file name"};
static const struct conf_type conf_t_key_file = {.parse = conf_key_file_parse,
                                                 .init = conf_str_init,
                                                 .release = conf_str_release,
                                                 .expect = "a file name"};
static const struct conf_type conf_t_hostname = {.parse = conf_str_parse,
                                                 .init = conf_str_init,
                                                 .release = conf_str_release,
                                                 .valid = conf_is_hostname,
                                                 .expect = "a host name"};
static const struct conf_type conf_t_user = {.parse = conf_user_parse,
                                             .init = conf_str_init,
                                             .release = conf_str_release,
                                             .expect = "a user name"};
static const struct conf_type conf_t_resolver = {.parse = conf_str_parse,
                                                 .init = conf_str_init,
                                                 .release = conf_str_release,
                                                 .valid = conf_valid_resolver,
                                                 .expect = "an IP address with an optional @port"};

/* ---- numbers and enums ---- */

/* A whole number in [k->min, max]: plain digits, no sign, no leading zero. */
static bool conf_number(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                        const char *path, uint64_t max, uint64_t *out)
{
	char shown[CONF_SHOWN_BUF];
	uint64_t v;
	const char *s = conf_scalar(ctx, node, path, "a whole number");
	if (s == NULL)
		return false;
	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !str_to_u64(s, &v) ||
	    (s[0] == '0' && s[1] != '\0')) {
		conf_err(ctx, path, "must be a whole number (digits only), not \"%s\"",
		         conf_shown(s, strlen(s), shown));
		return false;
	}
	if (v < k->min || v > max) {
		if (max == UINT64_MAX)
			conf_err(ctx, path, "must be at least %llu", (unsigned long long)k->min);
		else
			conf_err(ctx, path, "must be between %llu and %llu",
			         (unsigned long long)k->min, (unsigned long long)max);
		return false;
	}
	*out = v;
	return true;
}

static void conf_uint_init(const struct conf_key *k, void *base)
{
	*CONF_FIELD(base, k, unsigned) = (unsigned)k->def;
}

static void conf_uint_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	uint64_t v;
	if (conf_number(ctx, k, node, path, MIN(k->max, (uint64_t)UINT_MAX), &v))
		*CONF_FIELD(base, k, unsigned) = (unsigned)v;
}

static void conf_u64_init(const struct conf_key *k, void *base)
{
	*CONF_FIELD(base, k, uint64_t) = k->def;
}

static void conf_u64_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                           void *base, const char *path)
{
	uint64_t v;
	if (conf_number(ctx, k, node, path, k->max, &v))
		*CONF_FIELD(base, k, uint64_t) = v;
}

/* An enum stored as unsigned: one of k->names[0 .. k->max). */
static void conf_enum_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	char choices[256] = "one of ", shown[CONF_SHOWN_BUF];
	for (size_t i = 0; i < k->max; i++) {
		size_t n = strlen(choices);
		snprintf(choices + n, sizeof choices - n, "%s%s", i ? ", " : "", k->names[i]);
	}
	const char *s = conf_scalar(ctx, node, path, choices);
	if (s == NULL)
		return;
	for (size_t i = 0; i < k->max; i++) {
		if (strcmp(s, k->names[i]) == 0) {
			*CONF_FIELD(base, k, unsigned) = (unsigned)i;
			return;
		}
	}
	conf_err(ctx, path, "must be %s, not \"%s\"", choices, conf_shown(s, strlen(s), shown));
}

static void conf_u32_init(const struct conf_key *k, void *base)
{
	*CONF_FIELD(base, k, uint32_t) = (uint32_t)k->def;
}

static void conf_u32_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                           void *base, const char *path)
{
	uint64_t v;
	if (conf_number(ctx, k, node, path, MIN(k->max, (uint64_t)UINT32_MAX), &v))
		*CONF_FIELD(base, k, uint32_t) = (uint32_t)v;
}

/* true or false, plain and lower case. YAML 1.1's yes/no/on/off (and a quoted
 * "true", which is a string) are errors, not guesses. */
static void conf_bool_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	char shown[CONF_SHOWN_BUF];
	const char *s = conf_scalar(ctx, node, path, "true or false");
	if (s == NULL)
		return;
	bool plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	if (plain && strcmp(s, "true") == 0)
		*CONF_FIELD(base, k, bool) = true;
	else if (plain && strcmp(s, "false") == 0)
		*CONF_FIELD(base, k, bool) = false;
	else
		conf_err(ctx, path, "must be true or false, not \"%s\"",
		         conf_shown(s, strlen(s), shown));
}

static void conf_bool_init(const struct conf_key *k, void *base)
{
	*CONF_FIELD(base, k, bool) = k->def != 0;
}

/* A duration in seconds (stored as unsigned): plain seconds ("3600"), or a whole
 * number with a unit: s, m, h or d ("10m", "7d"). */
static void conf_duration_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                                void *base, const char *path)
{
	static const struct {
		char unit;
		uint64_t secs;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	char shown[CONF_SHOWN_BUF], digits[32];
	const char *s = conf_scalar(ctx, node, path, "a duration");
	if (s == NULL)
		return;
	size_t n = strlen(s);
	uint64_t mult = 1, v;
	for (size_t i = 0; n > 1 && i < ARRAY_LEN(units); i++)
		if (s[n - 1] == units[i].unit)
			mult = units[i].secs;
	size_t dn = (mult != 1 || s[n - 1] == 's') ? n - 1 : n;
	bool ok = dn > 0 && dn < sizeof digits;
	if (ok) {
		memcpy(digits, s, dn);
		digits[dn] = '\0';
		ok = str_to_u64(digits, &v) && !(digits[0] == '0' && dn > 1) &&
		     v <= UINT_MAX / mult;
	}
	if (!ok) {
		conf_err(ctx, path, "must be a duration (seconds, or a number with s, m, h or d: "
		         "\"10m\", \"7d\"), not \"%s\"", conf_shown(s, n, shown));
		return;
	}
	v *= mult;
	if (v < k->min || v > k->max) {
		conf_err(ctx, path, "must be between %llu and %llu seconds",
		         (unsigned long long)k->min, (unsigned long long)k->max);
		return;
	}
	*CONF_FIELD(base, k, unsigned) = (unsigned)v;
}

static const struct conf_type conf_t_uint = {.parse = conf_uint_parse, .init = conf_uint_init};
static const struct conf_type conf_t_duration = {.parse = conf_duration_parse,
                                                 .init = conf_uint_init};
static const struct conf_type conf_t_u64 = {.parse = conf_u64_parse, .init = conf_u64_init};
static const struct conf_type conf_t_u32 = {.parse = conf_u32_parse, .init = conf_u32_init};
const struct conf_type conf_t_enum = {.parse = conf_enum_parse, .init = conf_uint_init};
const struct conf_type conf_t_bool = {.parse = conf_bool_parse, .init = conf_bool_init};

/* ---- addresses ---- */

/* listen[i].address: base is the struct conf_listen; keeps the text and the sockaddr. */
static void conf_listen_addr_parse(struct conf_ctx *ctx, const struct conf_key *k,
                                   yaml_node_t *node, void *base, const char *path)
{
	struct conf_listen *l = base;
	char shown[CONF_SHOWN_BUF];
	const char *want = "a numeric address and port (0.0.0.0:587, [::1]:587)";
	const char *s = conf_scalar(ctx, node, path, want);
	if (s == NULL)
		return;
	if (!conf_parse_hostport(s, &l->sa, &l->salen)) {
		conf_err(ctx, path, "must be %s, not \"%s\"", want,
		         conf_shown(s, strlen(s), shown));
		return;
	}
	/* Listening sockets are IPV6_V6ONLY: an IPv4-mapped address cannot be
	 * bound, so say so here rather than let serve fail where check-config passed. */
	if (l->sa.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&l->sa)->sin6_addr)) {
		conf_err(ctx, path, "\"%s\" is an IPv4-mapped IPv6 address, which cannot be "
		         "bound; write the IPv4 address (127.0.0.1:25)",
		         conf_shown(s, strlen(s), shown));
		return;
	}
	free(l->address);
	l->address = xstrdup(s);
}

static void conf_listen_addr_release(const struct conf_key *k, void *base)
{
	struct conf_listen *l = base;
	free(l->address);
	l->address = NULL;
}

/* A trusted_networks entry: base is the struct conf_net. */
static void conf_cidr_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	char shown[CONF_SHOWN_BUF];
	const char *want = "a network (10.0.0.0/8, ::1/128, 192.0.2.7) with no host bits set";
	const char *s = conf_scalar(ctx, node, path, want);
	if (s != NULL && !conf_parse_cidr(s, CONF_FIELD(base, k, struct conf_net)))
		conf_err(ctx, path, "must be %s, not \"%s\"", want,
		         conf_shown(s, strlen(s), shown));
}

static const struct conf_type conf_t_listen_addr = {.parse = conf_listen_addr_parse,
                                                    .release = conf_listen_addr_release};

static bool conf_valid_url(const char *s)
{
	return (str_has_prefix_ci(s, "http://") && s[7] != '\0') ||
	       (str_has_prefix_ci(s, "https://") && s[8] != '\0');
}

static bool conf_valid_event_type(const char *s)
{
	enum evlog_type t;
	return evlog_type_parse(s, &t);
}

static bool conf_valid_nonempty(const char *s)
{
	return s[0] != '\0';
}

static const struct conf_type conf_t_url = {.parse = conf_str_parse,
                                            .init = conf_str_init,
                                            .release = conf_str_release,
                                            .valid = conf_valid_url,
                                            .expect = "an http:// or https:// URL"};
static const struct conf_type conf_t_event_type = {
    .parse = conf_str_parse,
    .init = conf_str_init,
    .release = conf_str_release,
    .valid = conf_valid_event_type,
    .expect = "an event type (accepted, delivered, deferred, bounced, expired, suppressed, "
              "rejected, opened, clicked, complained, unsubscribed)"};
static const struct conf_type conf_t_secret = {.parse = conf_str_parse,
                                               .init = conf_str_init,
                                               .release = conf_str_release,
                                               .valid = conf_valid_nonempty,
                                               .expect = "a non-empty string"};
static const struct conf_type conf_t_cidr = {.parse = conf_cidr_parse};

/* ---- mappings and lists ---- */

static size_t conf_table_len(const struct conf_key *tbl)
{
	size_t n = 0;
	while (tbl[n].name != NULL)
		n++;
	if (n > CONF_MAX_KEYS)
		fatal("event=bug where=conf_table_len keys=%zu max=%d", n, CONF_MAX_KEYS);
	return n;
}

/* The row named by the scalar key node, or the table's end row. */
static size_t conf_table_find(const struct conf_key *tbl, const yaml_node_t *key)
{
	size_t i;
	for (i = 0; tbl[i].name != NULL; i++)
		if (strlen(tbl[i].name) == key->data.scalar.length &&
		    memcmp(tbl[i].name, key->data.scalar.value, key->data.scalar.length) == 0)
			break;
	return i;
}

/* conf_path_key - the path of a mapping key under parent, the key escaped. */
char *conf_path_key(const char *parent, const yaml_node_t *key)
{
	char shown[CONF_SHOWN_BUF];
	conf_shown((const char *)key->data.scalar.value, key->data.scalar.length, shown);
	return parent[0] ? xasprintf("%s.%s", parent, shown) : xstrdup(shown);
}

static void conf_map_init(const struct conf_key *k, void *base)
{
	for (const struct conf_key *r = k->sub; r->name != NULL; r++)
		if (r->type->init != NULL)
			r->type->init(r, base);
}

static void conf_map_release(const struct conf_key *k, void *base)
{
	for (const struct conf_key *r = k->sub; r->name != NULL; r++)
		if (r->type->release != NULL)
			r->type->release(r, base);
}

/* One key: value pair of a section; seen[] catches duplicates. The first pass
 * (late false) takes the ordinary rows and reports unknown keys, the second
 * the late rows. */
static void conf_map_pair(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_pair_t *pair,
                          void *base, const char *path, bool *seen, bool late)
{
	yaml_node_t *key = conf_node(ctx, pair->key);
	if (key == NULL || key->type != YAML_SCALAR_NODE) {
		if (!late)
			conf_err(ctx, path, "keys must be plain strings");
		return;
	}
	size_t i = conf_table_find(k->sub, key);
	if ((k->sub[i].name != NULL && k->sub[i].late) != late)
		return;
	char *child = conf_path_key(path, key);
	if (k->sub[i].name == NULL)
		conf_err(ctx, child, "unknown key");
	else if (seen[i])
		conf_err(ctx, child, "duplicate key");
	else
		k->sub[i].type->parse(ctx, &k->sub[i], conf_node(ctx, pair->value), base, child);
	if (k->sub[i].name != NULL)
		seen[i] = true;
	free(child);
}

/* A section: every key must be in k->sub, once; required ones must be there.
 * An empty section (`tls:`) counts as a mapping with no keys. Late rows are
 * parsed after all the others, whatever the order in the file. */
static void conf_map_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                           void *base, const char *path)
{
	bool seen[CONF_MAX_KEYS] = {false};
	size_t n = conf_table_len(k->sub);
	if (!conf_is_null(node) && node->type != YAML_MAPPING_NODE) {
		conf_err(ctx, path, "must be a mapping, not %s", conf_kind(node));
		return;
	}
	for (int late = 0; late < 2 && !conf_is_null(node); late++)
		for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
		     p < node->data.mapping.pairs.top; p++)
			conf_map_pair(ctx, k, p, base, path, seen, late);
	for (size_t i = 0; i < n; i++) {
		if (!k->sub[i].required || seen[i])
			continue;
		char *child =
		    path[0] ? xasprintf("%s.%s", path, k->sub[i].name) : xstrdup(k->sub[i].name);
		if (k->sub[i].why != NULL)
			conf_err(ctx, child, "missing (required): %s", k->sub[i].why);
		else
			conf_err(ctx, child, "missing (required)");
		free(child);
	}
}

/* A list of k->min..k->max entries, each parsed by the row k->sub. */
static void conf_list_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                            void *base, const char *path)
{
	size_t n = 0;
	if (!conf_is_null(node) && node->type != YAML_SEQUENCE_NODE) {
		conf_err(ctx, path, "must be a list, not %s", conf_kind(node));
		return;
	}
	if (!conf_is_null(node))
		n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (n < k->min || n > k->max) {
		conf_err(ctx, path, "must have %llu to %llu entries, not %zu",
		         (unsigned long long)k->min, (unsigned long long)k->max, n);
		return;
	}
	if (n == 0)
		return;
	char *elems = xcalloc(n, k->elem_size);
	*CONF_FIELD(base, k, void *) = elems;
	*(size_t *)(void *)((char *)base + k->count_off) = n;
	for (size_t i = 0; i < n; i++) {
		void *elem = elems + i * k->elem_size;
		char *child = xasprintf("%s[%zu]", path, i);
		if (k->sub->type->init != NULL)
			k->sub->type->init(k->sub, elem);
		k->sub->type->parse(ctx, k->sub, conf_node(ctx, node->data.sequence.items.start[i]),
		                    elem, child);
		free(child);
	}
}

static void conf_list_release(const struct conf_key *k, void *base)
{
	char **elems = CONF_FIELD(base, k, char *);
	size_t *count = (size_t *)(void *)((char *)base + k->count_off);
	for (size_t i = 0; *elems != NULL && i < *count; i++)
		if (k->sub->type->release != NULL)
			k->sub->type->release(k->sub, *elems + i * k->elem_size);
	free(*elems);
	*elems = NULL;
	*count = 0;
}

/* A list of numbers with a default list (k->def_list, k->def entries). */
static void conf_u32_list_init(const struct conf_key *k, void *base)
{
	uint32_t *elems = xcalloc((size_t)k->def, sizeof *elems);
	memcpy(elems, k->def_list, (size_t)k->def * sizeof *elems);
	*CONF_FIELD(base, k, uint32_t *) = elems;
	*(size_t *)(void *)((char *)base + k->count_off) = (size_t)k->def;
}

/* What is written replaces the default list, it does not add to it. */
static void conf_u32_list_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                                void *base, const char *path)
{
	conf_list_release(k, base);
	conf_list_parse(ctx, k, node, base, path);
}

const struct conf_type conf_t_map = {
    .parse = conf_map_parse, .init = conf_map_init, .release = conf_map_release};
static const struct conf_type conf_t_list = {.parse = conf_list_parse,
                                             .release = conf_list_release};
static const struct conf_type conf_t_u32_list = {
    .parse = conf_u32_list_parse, .init = conf_u32_list_init, .release = conf_list_release};

/* ---- the schema ---- */

static const char *const conf_listen_mode_names[] = {
    [CONF_LISTEN_SUBMISSION] = "submission",
    [CONF_LISTEN_SUBMISSIONS] = "submissions",
    [CONF_LISTEN_RELAY] = "relay",
    [CONF_LISTEN_LOCAL] = "local",
};
_Static_assert(ARRAY_LEN(conf_listen_mode_names) == CONF_LISTEN__COUNT,
               "conf_listen_mode_names must name every conf_listen_mode");
_Static_assert(sizeof(enum conf_listen_mode) == sizeof(unsigned),
               "conf_t_enum stores enums as unsigned");

const char *const conf_tls_policy_names[CONF_TLS__COUNT] = {
    [CONF_TLS_OPPORTUNISTIC] = "opportunistic",
    [CONF_TLS_REQUIRED] = "required",
};
_Static_assert(sizeof(enum conf_tls_policy) == sizeof(unsigned),
               "conf_t_enum stores enums as unsigned");

static const char *const conf_delivery_mode_names[] = {
    [CONF_DELIVERY_NORMAL] = "normal",
    [CONF_DELIVERY_SANDBOX] = "sandbox",
};
_Static_assert(ARRAY_LEN(conf_delivery_mode_names) == CONF_DELIVERY__COUNT,
               "conf_delivery_mode_names must name every conf_delivery_mode");
_Static_assert(sizeof(enum conf_delivery_mode) == sizeof(unsigned),
               "conf_t_enum stores enums as unsigned");

/* delivery.retry_schedule default: 5, 10, 20, 40 minutes, 1, 2, 4 hours, then every 4. */
static const uint32_t conf_retry_default[] = {300, 600, 1200, 2400, 3600, 7200, 14400};

#define LF(f) offsetof(struct conf_listen, f)
static const struct conf_key conf_listen_keys[] = {
    KEY("address", conf_t_listen_addr, 0, .required = true),
    /* CONF_LISTEN__COUNT until set: the whole-config checks skip such entries */
    /* .max: the names a listen: entry may use (local is local_submit's own) */
    KEY("mode", conf_t_enum, LF(mode), .def = CONF_LISTEN__COUNT, .max = CONF_LISTEN_LOCAL,
        .names = conf_listen_mode_names, .required = true),
    CONF_END,
};
static const struct conf_key conf_listen_entry = KEY("", conf_t_map, 0, .sub = conf_listen_keys);
static const struct conf_key conf_net_entry = KEY("", conf_t_cidr, 0);

static const struct conf_key conf_addr_entry = KEY("", conf_t_listen_addr, 0);

#define WF(f) offsetof(struct conf_webhook, f)
static const struct conf_key conf_event_type_entry = KEY("", conf_t_event_type, 0);
static const struct conf_key conf_webhook_keys[] = {
    KEY("url", conf_t_url, WF(url), .required = true),
    KEY("secret", conf_t_secret, WF(secret), .required = true),
    KEY("events", conf_t_list, WF(events), .min = 0, .max = 16, .sub = &conf_event_type_entry,
        .count_off = WF(nevents), .elem_size = sizeof(char *)),
    CONF_END,
};
static const struct conf_key conf_webhook_entry = KEY("", conf_t_map, 0, .sub = conf_webhook_keys);

#define CF(f) offsetof(struct conf, f)
static const struct conf_key conf_tls_keys[] = {
    KEY("cert", conf_t_file, CF(tls_cert), .required = true),
    KEY("key", conf_t_key_file, CF(tls_key), .required = true),
    CONF_END,
};

static const struct conf_key conf_smtp_keys[] = {
    KEY("max_message_size", conf_t_u64, CF(smtp.max_message_size), .def = 26214400, .min = 1,
        .max = UINT64_MAX),
    KEY("max_recipients", conf_t_uint, CF(smtp.max_recipients), .def = 1000, .min = 1,
        .max = 1000000),
    KEY("max_connections", conf_t_uint, CF(smtp.max_connections), .def = 1000, .min = 1,
        .max = 1000000),
    KEY("max_connections_per_ip", conf_t_uint, CF(smtp.max_connections_per_ip), .def = 50, .min = 1,
        .max = 1000000),
    KEY("max_errors", conf_t_uint, CF(smtp.max_errors), .def = 10, .min = 1, .max = 1000),
    KEY("max_auth_failures", conf_t_uint, CF(smtp.max_auth_failures), .def = 3, .min = 1,
        .max = 1000),
    KEY("timeout_command", conf_t_uint, CF(smtp.timeout_command), .def = 300, .min = 1,
        .max = 86400),
    KEY("timeout_data", conf_t_uint, CF(smtp.timeout_data), .def = 180, .min = 1, .max = 86400),
    KEY("greeting_delay_ms", conf_t_uint, CF(smtp.greeting_delay_ms), .def = 0, .min = 0,
        .max = 60000),
    KEY("timeout_data_total", conf_t_uint, CF(smtp.timeout_data_total), .def = 600, .min = 1,
        .max = 86400),
    KEY("session_max_time", conf_t_uint, CF(smtp.session_max_time), .def = 3600, .min = 1,
        .max = 604800),
    KEY("auth_lockout_failures", conf_t_uint, CF(smtp.auth_lockout_failures), .def = 10, .min = 1,
        .max = 1000000),
    KEY("auth_lockout_window", conf_t_uint, CF(smtp.auth_lockout_window), .def = 900, .min = 1,
        .max = 604800),
    KEY("memory_budget", conf_t_u64, CF(smtp.memory_budget), .def = 1073741824, .min = 1,
        .max = UINT64_MAX),
    KEY("max_received_headers", conf_t_uint, CF(smtp.max_received_headers), .def = 50, .min = 1,
        .max = 1000),
    KEY("allow_address_literals", conf_t_bool, CF(smtp.allow_address_literals), .def = false),
    CONF_END,
};

static const struct conf_key conf_dns_keys[] = {
    KEY("resolver", conf_t_resolver, CF(dns.resolver)),
    KEY("timeout", conf_t_uint, CF(dns.timeout), .def = 10, .min = 1, .max = 300),
    CONF_END,
};

static const struct conf_key conf_retry_entry = KEY("", conf_t_u32, 0, .min = 1, .max = 604800);

/* delivery.timeouts: the RFC 5321 4.5.3.2 values (data: 3 min for the 354, where the
 * RFC has 2, as relevo always had; connect: 30 s, the RFC has none). */
#define TMO(n, f, d) KEY(n, conf_t_uint, CF(delivery.timeouts.f), .def = d, .min = 1, .max = 86400)
static const struct conf_key conf_delivery_timeout_keys[] = {
    TMO("connect", connect, 30),
    TMO("greeting", greeting, 300),
    TMO("ehlo", ehlo, 300),
    TMO("mail", mail, 300),
    TMO("rcpt", rcpt, 300),
    TMO("data", data, 180),
    TMO("data_block", data_block, 180),
    TMO("data_done", data_done, 600),
    CONF_END,
};
#undef TMO

static const struct conf_key conf_delivery_keys[] = {
    KEY("port", conf_t_uint, CF(delivery.port), .def = 25, .min = 1, .max = 65535),
    KEY("mode", conf_t_enum, CF(delivery.mode), .def = CONF_DELIVERY_NORMAL,
        .max = CONF_DELIVERY__COUNT, .names = conf_delivery_mode_names),
    KEY("retry_schedule", conf_t_u32_list, CF(delivery.retry_schedule),
        .def = ARRAY_LEN(conf_retry_default), .def_list = conf_retry_default, .min = 1,
        .max = CONF_RETRY_MAX, .sub = &conf_retry_entry, .count_off = CF(delivery.nretry_schedule),
        .elem_size = sizeof(uint32_t)),
    KEY("max_queue_lifetime", conf_t_uint, CF(delivery.max_queue_lifetime), .def = 432000,
        .min = 60, .max = 2592000),
    KEY("delay_warning", conf_t_uint, CF(delivery.delay_warning), .def = 0, .min = 0,
        .max = 2592000),
    KEY("source_address", conf_t_source_address, 0),
    KEY("max_connections", conf_t_uint, CF(delivery.max_connections), .def = 100, .min = 1,
        .max = 100000),
    KEY("max_connections_per_destination", conf_t_uint,
        CF(delivery.max_connections_per_destination), .def = 10, .min = 1, .max = 100000),
    KEY("max_messages_per_connection", conf_t_uint, CF(delivery.max_messages_per_connection),
        .def = 100, .min = 1, .max = 100000),
    KEY("idle_timeout", conf_t_uint, CF(delivery.idle_timeout), .def = 5, .min = 0, .max = 3600),
    KEY("timeouts", conf_t_map, 0, .sub = conf_delivery_timeout_keys),
    KEY("tls", conf_t_enum, CF(delivery.tls), .def = CONF_TLS_OPPORTUNISTIC, .max = CONF_TLS__COUNT,
        .names = conf_tls_policy_names),
    KEY("tls_verify", conf_t_bool, CF(delivery.tls_verify), .def = false),
    KEY("allow_networks", conf_t_list, CF(delivery.allow_networks), .min = 0, .max = 1024,
        .sub = &conf_net_entry, .count_off = CF(delivery.nallow_networks),
        .elem_size = sizeof(struct conf_net)),
    /* late: a route's defaults are delivery.port, tls and tls_verify */
    KEY("routes", conf_t_routes, 0, .late = true),
    CONF_END,
};

static const char *const conf_dkim_missing_names[] = {"tempfail", "send"};
_Static_assert(ARRAY_LEN(conf_dkim_missing_names) == CONF_DKIM_MISSING__COUNT,
               "conf_dkim_missing_names must name every conf_dkim_missing");

static const struct conf_key conf_dkim_keys[] = {
    KEY("missing_key", conf_t_enum, CF(dkim.missing_key), .def = CONF_DKIM_MISSING_TEMPFAIL,
        .max = CONF_DKIM_MISSING__COUNT, .names = conf_dkim_missing_names),
    KEY("retire_after", conf_t_duration, CF(dkim.retire_after), .def = 7 * 86400, .min = 0,
        .max = 3650 * 86400),
    KEY("pending_check_interval", conf_t_duration, CF(dkim.pending_check_interval),
        .def = 600, .min = 1, .max = 7 * 86400),
    CONF_END,
};

static const struct conf_key conf_server_keys[] = {
    KEY("workers", conf_t_uint, CF(server.workers), .def = 0, .min = 0, .max = 1024),
    CONF_END,
};

/* http.metrics_listen: "address:port" (numeric), or "" for no metrics listener. */
static void conf_metrics_listen_parse(struct conf_ctx *ctx, const struct conf_key *k,
                                      yaml_node_t *node, void *base, const char *path)
{
	char shown[CONF_SHOWN_BUF];
	const char *s = conf_scalar(ctx, node, path, "an address:port or \"\"");
	if (s == NULL)
		return;
	struct sockaddr_storage sa;
	socklen_t salen;
	if (s[0] != '\0' && !conf_parse_hostport(s, &sa, &salen)) {
		conf_err(ctx, path, "must be a numeric address:port such as 127.0.0.1:9025, or \"\" "
		         "for none, not \"%s\"", conf_shown(s, strlen(s), shown));
		return;
	}
	conf_str_release(k, base);
	*CONF_FIELD(base, k, char *) = s[0] ? xstrdup(s) : NULL;
	((struct conf *)base)->http.metrics_listen_given = true;
}
static const struct conf_type conf_t_metrics_listen = {.parse = conf_metrics_listen_parse,
                                                       .init = conf_str_init,
                                                       .release = conf_str_release};

static const struct conf_key conf_http_keys[] = {
    KEY("listen", conf_t_list, CF(http.listen), .min = 0, .max = 16, .sub = &conf_addr_entry,
        .count_off = CF(http.nlisten), .elem_size = sizeof(struct conf_listen)),
    KEY("max_request_size", conf_t_u64, CF(http.max_request_size), .def = 41943040,
        .min = 1024, .max = (uint64_t)1 << 32),
    KEY("timeout", conf_t_uint, CF(http.timeout), .def = 30, .min = 1, .max = 3600),
    KEY("timeout_headers", conf_t_uint, CF(http.timeout_headers), .def = 10, .min = 1,
        .max = 3600),
    KEY("timeout_body", conf_t_uint, CF(http.timeout_body), .def = 120, .min = 1,
        .max = 86400),
    KEY("idle_timeout", conf_t_uint, CF(http.idle_timeout), .def = 15, .min = 1, .max = 3600),
    KEY("max_connections", conf_t_uint, CF(http.max_connections), .def = 512, .min = 1,
        .max = 1000000),
    KEY("max_connections_per_ip", conf_t_uint, CF(http.max_connections_per_ip), .def = 32,
        .min = 1, .max = 1000000),
    KEY("memory_budget", conf_t_u64, CF(http.memory_budget), .def = 268435456, .min = 1,
        .max = UINT64_MAX),
    KEY("webhooks_allow_private", conf_t_bool, CF(http.webhooks_allow_private), .def = false),
    KEY("metrics_listen", conf_t_metrics_listen, CF(http.metrics_listen),
        .def_str = "127.0.0.1:9025"),
    CONF_END,
};

static const struct conf_key conf_events_keys[] = {
    KEY("retention", conf_t_uint, CF(events.retention), .def = 2592000, .min = 3600,
        .max = 315360000),
    KEY("queue_max", conf_t_uint, CF(events.queue_max), .def = 65536, .min = 16,
        .max = 16777216),
    CONF_END,
};

static const struct conf_key conf_root_keys[] = {
    KEY("hostname", conf_t_hostname, CF(hostname), .required = true,
        .why = "the name relevo greets other servers with, and that SPF advice names"),
    KEY("data_dir", conf_t_path, CF(data_dir), .def_str = CONF_DEFAULT_DATA_DIR),
    KEY("run_as", conf_t_user, CF(run_as)),
    KEY("listen", conf_t_list, CF(listen), .min = 1, .max = 64, .required = true,
        .sub = &conf_listen_entry, .count_off = CF(nlisten),
        .elem_size = sizeof(struct conf_listen)),
    KEY("trusted_networks", conf_t_list, CF(trusted), .min = 0, .max = 1024, .sub = &conf_net_entry,
        .count_off = CF(ntrusted), .elem_size = sizeof(struct conf_net)),
    KEY("tls", conf_t_map, 0, .sub = conf_tls_keys),
    KEY("smtp", conf_t_map, 0, .sub = conf_smtp_keys),
    KEY("dns", conf_t_map, 0, .sub = conf_dns_keys),
    KEY("delivery", conf_t_map, 0, .sub = conf_delivery_keys),
    KEY("server", conf_t_map, 0, .sub = conf_server_keys),
    KEY("dkim", conf_t_map, 0, .sub = conf_dkim_keys),
    KEY("spf_include", conf_t_str, CF(spf_include)),
    KEY("http", conf_t_map, 0, .sub = conf_http_keys),
    KEY("events", conf_t_map, 0, .sub = conf_events_keys),
    KEY("webhooks", conf_t_list, CF(webhooks), .min = 0, .max = 64, .sub = &conf_webhook_entry,
        .count_off = CF(nwebhooks), .elem_size = sizeof(struct conf_webhook)),
    /* late: the default socket is under data_dir */
    KEY("local_submit", conf_t_local_submit, 0, .late = true),
    CONF_END,
};
static const struct conf_key conf_root = KEY("", conf_t_map, 0, .sub = conf_root_keys);

/* conf_listen_mode_name - "submission", "submissions", "relay". */
const char *conf_listen_mode_name(enum conf_listen_mode m)
{
	return (unsigned)m < CONF_LISTEN__COUNT ? conf_listen_mode_names[m] : "unknown";
}

/* conf_tls_policy_name - "opportunistic", "required". */
const char *conf_tls_policy_name(enum conf_tls_policy p)
{
	return (unsigned)p < CONF_TLS__COUNT ? conf_tls_policy_names[p] : "unknown";
}

/* conf_delivery_mode_name - "normal", "sandbox". */
const char *conf_delivery_mode_name(enum conf_delivery_mode m)
{
	return (unsigned)m < CONF_DELIVERY__COUNT ? conf_delivery_mode_names[m] : "unknown";
}

/* ---- whole-config checks ---- */

static bool conf_listen_needs_tls(const struct conf_listen *l)
{
	return l->mode == CONF_LISTEN_SUBMISSION || l->mode == CONF_LISTEN_SUBMISSIONS;
}

/* Submission needs STARTTLS, submissions is TLS: both need tls.cert and tls.key. */
static void conf_check_tls(struct conf_ctx *ctx, const struct conf *c)
{
	for (size_t i = 0; i < c->nlisten; i++) {
		if (!conf_listen_needs_tls(&c->listen[i]))
			continue;
		if (c->tls_cert == NULL && c->tls_key == NULL && !conf_has_err(ctx, "tls"))
			conf_err(ctx, "tls", "missing, required by listen[%zu] (%s)", i,
			         conf_listen_mode_name(c->listen[i].mode));
		return;
	}
}

/* A relay listener accepts without AUTH from trusted_networks only: it needs some. */
static void conf_check_relay(struct conf_ctx *ctx, const struct conf *c)
{
	char path[64];
	if (c->ntrusted > 0 || conf_has_err(ctx, "trusted_networks"))
		return;
	for (size_t i = 0; i < c->nlisten; i++) {
		if (c->listen[i].mode != CONF_LISTEN_RELAY)
			continue;
		snprintf(path, sizeof path, "listen[%zu].mode", i);
		conf_err(ctx, path, "relay needs trusted_networks");
	}
}

/* Port and address bytes of a parsed listener address. */
static void conf_sa_parts(const struct conf_listen *l, uint16_t *port, const uint8_t **addr,
                          size_t *alen)
{
	if (l->sa.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->sa;
		*port = sin->sin_port;
		*addr = (const uint8_t *)&sin->sin_addr;
		*alen = 4;
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->sa;
		*port = sin6->sin6_port;
		*addr = (const uint8_t *)&sin6->sin6_addr;
		*alen = 16;
	}
}

/* 0: a and b can both bind; 1: same address; 2: one is the wildcard of the other. */
static int conf_listen_clash(const struct conf_listen *a, const struct conf_listen *b)
{
	static const uint8_t any[16];
	uint16_t pa, pb;
	const uint8_t *aa, *ab;
	size_t la, lb;
	if (a->salen == 0 || b->salen == 0 || a->sa.ss_family != b->sa.ss_family)
		return 0;
	conf_sa_parts(a, &pa, &aa, &la);
	conf_sa_parts(b, &pb, &ab, &lb);
	if (pa != pb)
		return 0;
	if (memcmp(aa, ab, la) == 0)
		return 1;
	return memcmp(aa, any, la) == 0 || memcmp(ab, any, lb) == 0 ? 2 : 0;
}

/* Two listeners that cannot both bind (same address, or inside a wildcard). */
static void conf_check_clash(struct conf_ctx *ctx, const struct conf *c)
{
	char path[64];
	for (size_t i = 0; i < c->nlisten; i++) {
		for (size_t j = 0; j < i; j++) {
			int clash = conf_listen_clash(&c->listen[i], &c->listen[j]);
			if (clash == 0)
				continue;
			snprintf(path, sizeof path, "listen[%zu].address", i);
			conf_err(ctx, path, "%s listen[%zu] (%s)",
			         clash == 1 ? "same address as" : "overlaps", j,
			         c->listen[j].address);
			break;
		}
	}
}

/* Verifying the MX certificate only means something when TLS is required: with
 * opportunistic TLS a failed check would just fall back to plaintext. */
static void conf_check_tls_verify(struct conf_ctx *ctx, const struct conf *c)
{
	if (c->delivery.tls_verify && c->delivery.tls != CONF_TLS_REQUIRED &&
	    !conf_has_err(ctx, "delivery.tls"))
		conf_err(ctx, "delivery.tls_verify", "true needs delivery.tls: required");
}

/* A delay warning due after the message has expired would never be sent. */
static void conf_check_delay_warning(struct conf_ctx *ctx, const struct conf *c)
{
	if (c->delivery.delay_warning != 0 &&
	    c->delivery.delay_warning >= c->delivery.max_queue_lifetime &&
	    !conf_has_err(ctx, "delivery.max_queue_lifetime"))
		conf_err(ctx, "delivery.delay_warning",
		         "must be less than delivery.max_queue_lifetime (%u), or 0 for none",
		         c->delivery.max_queue_lifetime);
}

/* A budget smaller than one message would refuse every message of the largest
 * allowed size, however idle the server. */
static void conf_check_memory_budget(struct conf_ctx *ctx, const struct conf *c)
{
	if (c->smtp.memory_budget < c->smtp.max_message_size &&
	    !conf_has_err(ctx, "smtp.max_message_size"))
		conf_err(ctx, "smtp.memory_budget", "must be at least smtp.max_message_size (%llu)",
		         (unsigned long long)c->smtp.max_message_size);
	if (c->http.memory_budget < c->http.max_request_size &&
	    !conf_has_err(ctx, "http.max_request_size"))
		conf_err(ctx, "http.memory_budget", "must be at least http.max_request_size (%llu)",
		         (unsigned long long)c->http.max_request_size);
}

/* clang-format off */
static void (*const conf_checks[])(struct conf_ctx *ctx, const struct conf *c) = {
    conf_check_tls,
    conf_check_relay,
    conf_check_clash,
    conf_check_tls_verify,
    conf_check_memory_budget,
    conf_check_delay_warning,
};
/* clang-format on */

/* ---- loading ---- */

/* Report a libyaml failure with its line and column. The reader (bad bytes)
 * reports only an offset: line and column are counted from the input. */
static void conf_yaml_error(struct conf_ctx *ctx, const yaml_parser_t *p, const char *yaml,
                            size_t len)
{
	const char *problem = p->problem ? p->problem : "cannot parse";
	if (p->error == YAML_MEMORY_ERROR)
		fatal("event=oom where=conf_yaml_error");
	if (p->error == YAML_READER_ERROR) {
		size_t line = 1, col = 1;
		for (size_t i = 0; i < p->problem_offset && i < len; i++, col++)
			if (yaml[i] == '\n') {
				line++;
				col = 0;
			}
		conf_err_line(ctx, "%s:%zu:%zu: YAML syntax error: %s", ctx->name, line, col,
		              problem);
		return;
	}
	if (p->context != NULL)
		conf_err_line(ctx, "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu, column %zu)",
		              ctx->name, p->problem_mark.line + 1, p->problem_mark.column + 1,
		              problem, p->context, p->context_mark.line + 1,
		              p->context_mark.column + 1);
	else
		conf_err_line(ctx, "%s:%zu:%zu: YAML syntax error: %s", ctx->name,
		              p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

/* Parse the one document of the stream into doc; false (errors reported) if none. */
static bool conf_yaml_load(struct conf_ctx *ctx, const char *yaml, size_t len, yaml_document_t *doc)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	bool ok = false;
	if (!yaml_parser_initialize(&parser))
		fatal("event=oom where=conf_yaml_load");
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, doc)) {
		conf_yaml_error(ctx, &parser, yaml, len);
	} else if (!yaml_parser_load(&parser, &extra)) {
		conf_yaml_error(ctx, &parser, yaml, len);
		yaml_document_delete(doc);
	} else {
		ok = yaml_document_get_root_node(&extra) == NULL;
		if (!ok) {
			conf_err_line(ctx, "%s:%zu: only one YAML document is allowed", ctx->name,
			              extra.start_mark.line + 1);
			yaml_document_delete(doc);
		}
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	return ok;
}

/* conf_load_buf - parse and validate yaml[0..len) as opts say. */
static enum rc conf_load_buf(const char *yaml, size_t len, const char *name,
                             const struct conf_load_opts *opts, struct conf **out, char **errs)
{
	struct conf_ctx ctx = {.name = name ? name : "(config)",
	                       .skip_tls_files = opts != NULL && opts->skip_tls_files};
	struct conf *c = xcalloc(1, sizeof *c);
	yaml_document_t doc;
	atomic_init(&c->refs, 1);
	c->path = xstrdup(ctx.name);
	conf_root.type->init(&conf_root, c);
	if (conf_yaml_load(&ctx, yaml, len, &doc)) {
		ctx.doc = &doc;
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		if (root != NULL && root->type != YAML_MAPPING_NODE && !conf_is_null(root))
			conf_err(&ctx, "", "must be a mapping of keys, not %s", conf_kind(root));
		else
			conf_root.type->parse(&ctx, &conf_root, root, c, "");
		yaml_document_delete(&doc);
		for (size_t i = 0; i < ARRAY_LEN(conf_checks); i++)
			conf_checks[i](&ctx, c);
	}
	*out = NULL;
	if (errs != NULL)
		*errs = ctx.errs;
	else
		free(ctx.errs);
	if (ctx.nerr > 0) {
		conf_free(c);
		return RC_INVALID;
	}
	*out = c;
	return RC_OK;
}

/* conf_load_string - parse and validate yaml[0..len); see conf.h. */
enum rc conf_load_string(const char *yaml, size_t len, const char *name, struct conf **out,
                         char **errs)
{
	return conf_load_buf(yaml, len, name, NULL, out, errs);
}

/* conf_load - read path (at most CONF_MAX_FILE bytes) and load it; see conf.h. */
enum rc conf_load(const char *path, struct conf **out, char **errs)
{
	return conf_load_with(path, NULL, out, errs);
}

/* conf_load_with - conf_load as opts say (NULL: conf_load itself); see conf.h. */
enum rc conf_load_with(const char *path, const struct conf_load_opts *opts, struct conf **out,
                       char **errs)
{
	char *buf = NULL, ebuf[128];
	size_t len = 0;
	*out = NULL;
	enum rc rc = file_read_all(path, CONF_MAX_FILE, &buf, &len);
	if (rc != RC_OK) {
		const char *why = rc == RC_LIMIT      ? "file is larger than 1 MiB"
		                  : rc == RC_NOTFOUND ? "no such file"
		                                      : strerror_r(errno, ebuf, sizeof ebuf);
		if (errs != NULL)
			*errs = xasprintf("%s: cannot read: %s\n", path, why);
		return rc == RC_LIMIT ? RC_INVALID : RC_IO;
	}
	rc = conf_load_buf(buf, len, path, opts, out, errs);
	free(buf);
	return rc;
}

/* conf_destroy - release c and everything it owns. */
static void conf_destroy(struct conf *c)
{
	conf_root.type->release(&conf_root, c);
	free(c->path);
	free(c);
}

/* conf_free - drop the caller's reference; NULL is a no-op. */
void conf_free(struct conf *c)
{
	conf_unref(c);
}

/* conf_ref - one more reference. */
const struct conf *conf_ref(const struct conf *c)
{
	atomic_fetch_add(&((struct conf *)c)->refs, 1);
	return c;
}

/* conf_unref - drop a reference; the last one frees. The cast drops the const
 * that every holder sees: the count is the only mutable part of a conf. */
void conf_unref(const struct conf *c)
{
	if (c == NULL)
		return;
	struct conf *m = (struct conf *)c;
	unsigned before = atomic_fetch_sub(&m->refs, 1);
	if (before == 0)
		fatal("event=conf_refcount_underflow");
	if (before == 1)
		conf_destroy(m);
}

/* conf_str_differs - are two optional strings different? */
static bool conf_str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* conf_keep_str - nc's *field takes old's value back. */
static void conf_keep_str(char **field, const char *old)
{
	free(*field);
	*field = old ? xstrdup(old) : NULL;
}

/* conf_note_changed - append "name\n" to *changed. */
static void conf_note_changed(char **changed, const char *name)
{
	char *s = xasprintf("%s%s\n", *changed ? *changed : "", name);
	free(*changed);
	*changed = s;
}

/* conf_keep_restart_keys - see conf.h. */
void conf_keep_restart_keys(struct conf *nc, const struct conf *old, char **changed)
{
	*changed = NULL;
	if (conf_str_differs(nc->data_dir, old->data_dir)) {
		conf_keep_str(&nc->data_dir, old->data_dir);
		conf_note_changed(changed, "data_dir");
	}
	if (conf_str_differs(nc->run_as, old->run_as)) {
		conf_keep_str(&nc->run_as, old->run_as);
		conf_note_changed(changed, "run_as");
	}
	if (nc->server.workers != old->server.workers) {
		nc->server.workers = old->server.workers;
		conf_note_changed(changed, "server.workers");
	}
	if (conf_str_differs(nc->dns.resolver, old->dns.resolver)) {
		conf_keep_str(&nc->dns.resolver, old->dns.resolver);
		conf_note_changed(changed, "dns.resolver");
	}
	if (nc->dns.timeout != old->dns.timeout) {
		nc->dns.timeout = old->dns.timeout;
		conf_note_changed(changed, "dns.timeout");
	}
	if (nc->dkim.pending_check_interval != old->dkim.pending_check_interval) {
		nc->dkim.pending_check_interval = old->dkim.pending_check_interval;
		conf_note_changed(changed, "dkim.pending_check_interval");
	}
	if (conf_str_differs(nc->local_submit.socket, old->local_submit.socket)) {
		/* The socket stays where it is (or absent); local_submit.users reloads. */
		conf_keep_str(&nc->local_submit.socket, old->local_submit.socket);
		free(nc->local_submit.listen.address);
		nc->local_submit.listen = old->local_submit.listen;
		if (old->local_submit.listen.address != NULL)
			nc->local_submit.listen.address = xstrdup(old->local_submit.listen.address);
		conf_note_changed(changed, "local_submit.socket");
	}
}

/* conf_data_dir_of - the top-level data_dir scalar of the file, or the default. */
char *conf_data_dir_of(const char *path)
{
	char *buf = NULL, *dir = NULL;
	size_t len = 0;
	yaml_document_t doc;
	struct conf_ctx ctx = {.name = path};
	if (file_read_all(path, CONF_MAX_FILE, &buf, &len) != RC_OK)
		return NULL;
	if (conf_yaml_load(&ctx, buf, len, &doc)) {
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		if (root != NULL && root->type == YAML_MAPPING_NODE) {
			dir = xstrdup(CONF_DEFAULT_DATA_DIR);
			for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
			     p < root->data.mapping.pairs.top; p++) {
				yaml_node_t *k = yaml_document_get_node(&doc, p->key);
				yaml_node_t *v = yaml_document_get_node(&doc, p->value);
				if (k && v && k->type == YAML_SCALAR_NODE &&
				    v->type == YAML_SCALAR_NODE &&
				    strcmp((const char *)k->data.scalar.value, "data_dir") == 0) {
					free(dir);
					dir = xstrdup((const char *)v->data.scalar.value);
				}
			}
		}
		yaml_document_delete(&doc);
	}
	free(ctx.errs);
	free(buf);
	return dir;
}

/* conf_listen_same - same family, address and port. */
bool conf_listen_same(const struct conf_listen *a, const struct conf_listen *b)
{
	return conf_listen_clash(a, b) == 1;
}
