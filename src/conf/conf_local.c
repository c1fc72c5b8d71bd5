/*
 * conf_local.c - the local_submit section: which local users may submit mail
 * through `relevo sendmail`, as which account, and where the socket is.
 *
 *   local_submit:
 *     users: {www-data: shop, backup: ops}   # system user name -> relevo account
 *     socket: /run/relevo/submit.sock        # default: DATA_DIR/public/submit.sock
 *
 * Local submission is on exactly when users has an entry. The daemon decides
 * who is who from the kernel (SO_PEERCRED on the socket), not from file modes:
 * the socket is open to every local user and an unmapped caller is refused.
 * The section is a late row of the root table, so data_dir is known when the
 * default socket path is built.
 *
 * The user names must exist on this system (a typo would otherwise only show
 * as refused mail); the accounts live in the store, which the configuration
 * cannot see: the daemon checks them when a caller connects.
 *
 * Also conf_local_socket_peek(): the socket path for `relevo sendmail`, read
 * from the file without validating the rest (the caller, say www-data, may not
 * read tls.key, and should not need to).
 *
 * Ownership: the users array and its strings, the socket path and the
 * listener's address belong to the struct conf.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/conf_int.h"

#define CONF_LOCAL_USERS_MAX   1024
#define CONF_LOCAL_ACCOUNT_MAX 255 /* SMTP_AUTH_USER_MAX: account names are AUTH names */
#define CONF_LOCAL_SUN_MAX     (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* conf_local_user_exists - is name a user of this system? */
static bool conf_local_user_exists(const char *name)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	return getpwnam_r(name, &pw, buf, sizeof buf, &res) == 0 && res != NULL;
}

/* One "user: account" pair of local_submit.users. */
static void conf_local_pair(struct conf_ctx *ctx, struct conf *c, const yaml_node_pair_t *pair,
                            const char *path)
{
	char shown[CONF_SHOWN_BUF];
	yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
	if (key == NULL || key->type != YAML_SCALAR_NODE || key->data.scalar.length == 0) {
		conf_err(ctx, path, "keys must be user names");
		return;
	}
	char *child = conf_path_key(path, key);
	const char *user = (const char *)key->data.scalar.value;
	const char *account = conf_scalar(ctx, yaml_document_get_node(ctx->doc, pair->value), child,
	                                  "an account name");
	if (account == NULL)
		goto out;
	if (strlen(user) != key->data.scalar.length) {
		conf_err(ctx, child, "must not contain NUL characters");
		goto out;
	}
	if (account[0] == '\0' || strlen(account) > CONF_LOCAL_ACCOUNT_MAX) {
		conf_err(ctx, child, "must be an account name (1 to %d bytes)",
		         CONF_LOCAL_ACCOUNT_MAX);
		goto out;
	}
	for (size_t i = 0; i < c->local_submit.nusers; i++) {
		if (strcmp(c->local_submit.users[i].user, user) == 0) {
			conf_err(ctx, child, "duplicate key");
			goto out;
		}
	}
	if (!conf_local_user_exists(user)) {
		conf_err(ctx, child, "no user \"%s\" on this system",
		         conf_shown(user, strlen(user), shown));
		goto out;
	}
	struct conf_local_user *u = &c->local_submit.users[c->local_submit.nusers++];
	u->user = xstrdup(user);
	u->account = xstrdup(account);
out:
	free(child);
}

/* local_submit.users: a mapping of user name to account name. */
static void conf_local_users(struct conf_ctx *ctx, struct conf *c, yaml_node_t *node,
                             const char *path)
{
	if (conf_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		conf_err(ctx, path, "must be a mapping of user name: account, not %s",
		         conf_kind(node));
		return;
	}
	yaml_node_pair_t *start = node->data.mapping.pairs.start;
	size_t n = (size_t)(node->data.mapping.pairs.top - start);
	if (n > CONF_LOCAL_USERS_MAX) {
		conf_err(ctx, path, "must have at most %d users, not %zu", CONF_LOCAL_USERS_MAX, n);
		return;
	}
	if (n == 0)
		return;
	c->local_submit.users = xcalloc(n, sizeof *c->local_submit.users);
	for (size_t i = 0; i < n; i++)
		conf_local_pair(ctx, c, &start[i], path);
}

/* local_submit.socket: an absolute path short enough for sun_path. */
static void conf_local_socket(struct conf_ctx *ctx, struct conf *c, yaml_node_t *node,
                              const char *path)
{
	char shown[CONF_SHOWN_BUF];
	const char *s = conf_scalar(ctx, node, path, "an absolute path");
	if (s == NULL)
		return;
	if (s[0] != '/') {
		conf_err(ctx, path, "must be an absolute path, not \"%s\"",
		         conf_shown(s, strlen(s), shown));
		return;
	}
	free(c->local_submit.socket);
	c->local_submit.socket = xstrdup(s);
}

/* conf_local_listener - the socket as a listener (mode local), once users are set. */
static void conf_local_listener(struct conf_ctx *ctx, struct conf *c, const char *path)
{
	if (c->local_submit.nusers == 0) {
		free(c->local_submit.socket);
		c->local_submit.socket = NULL;
		return;
	}
	if (c->local_submit.socket == NULL)
		c->local_submit.socket = xasprintf("%s/public/submit.sock", c->data_dir);
	char *child = xasprintf("%s.socket", path);
	if (strlen(c->local_submit.socket) > CONF_LOCAL_SUN_MAX) {
		conf_err(ctx, child, "\"%s\" is too long for a socket (at most %zu bytes)%s",
		         c->local_submit.socket, CONF_LOCAL_SUN_MAX,
		         strstr(c->local_submit.socket, "/public/submit.sock")
		             ? "; set it, or a shorter data_dir"
		             : "");
	} else {
		struct conf_listen *l = &c->local_submit.listen;
		struct sockaddr_un *sun = (struct sockaddr_un *)&l->sa;
		sun->sun_family = AF_UNIX;
		str_lcpy(sun->sun_path, c->local_submit.socket, sizeof sun->sun_path);
		l->salen = (socklen_t)sizeof *sun;
		l->address = xstrdup(c->local_submit.socket);
		l->mode = CONF_LISTEN_LOCAL;
	}
	free(child);
}

/* local_submit: base is the struct conf. Keys: users, socket. */
static void conf_local_parse(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                             void *base, const char *path)
{
	struct conf *c = base;
	bool seen_users = false, seen_socket = false;
	if (conf_is_null(node))
		return;
	if (node->type != YAML_MAPPING_NODE) {
		conf_err(ctx, path, "must be a mapping, not %s", conf_kind(node));
		return;
	}
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *key = yaml_document_get_node(ctx->doc, p->key);
		if (key == NULL || key->type != YAML_SCALAR_NODE) {
			conf_err(ctx, path, "keys must be plain strings");
			continue;
		}
		char *child = conf_path_key(path, key);
		const char *name = (const char *)key->data.scalar.value;
		yaml_node_t *val = yaml_document_get_node(ctx->doc, p->value);
		bool *seen = strcmp(name, "users") == 0    ? &seen_users
		             : strcmp(name, "socket") == 0 ? &seen_socket
		                                           : NULL;
		if (seen == NULL)
			conf_err(ctx, child, "unknown key");
		else if (*seen)
			conf_err(ctx, child, "duplicate key");
		else if (seen == &seen_users)
			conf_local_users(ctx, c, val, child);
		else
			conf_local_socket(ctx, c, val, child);
		if (seen)
			*seen = true;
		free(child);
	}
	conf_local_listener(ctx, c, path);
}

static void conf_local_release(const struct conf_key *k, void *base)
{
	struct conf *c = base;
	for (size_t i = 0; i < c->local_submit.nusers; i++) {
		free(c->local_submit.users[i].user);
		free(c->local_submit.users[i].account);
	}
	free(c->local_submit.users);
	free(c->local_submit.socket);
	free(c->local_submit.listen.address);
	memset(&c->local_submit, 0, sizeof c->local_submit);
}

const struct conf_type conf_t_local_submit = {.parse = conf_local_parse,
                                              .release = conf_local_release};

/* conf_local_account - the account local user name submits as, or NULL. */
const char *conf_local_account(const struct conf *c, const char *user)
{
	for (size_t i = 0; i < c->local_submit.nusers; i++)
		if (strcmp(c->local_submit.users[i].user, user) == 0)
			return c->local_submit.users[i].account;
	return NULL;
}

/* ---- the socket path for the client ---- */

/* conf_peek_scalar - the scalar value of key in a mapping node, or NULL. */
static const char *conf_peek_scalar(yaml_document_t *doc, yaml_node_t *map, const char *key,
                                    yaml_node_t **node)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		if (k == NULL || k->type != YAML_SCALAR_NODE ||
		    strcmp((const char *)k->data.scalar.value, key) != 0)
			continue;
		if (node != NULL)
			*node = v;
		if (v == NULL || v->type != YAML_SCALAR_NODE)
			return NULL;
		return (const char *)v->data.scalar.value;
	}
	return NULL;
}

/* conf_local_socket_peek - see conf.h. */
enum rc conf_local_socket_peek(const char *path, char *out, size_t outsz)
{
	char *buf = NULL;
	size_t len = 0;
	enum rc rc = file_read_all(path, 1024 * 1024, &buf, &len);
	if (rc != RC_OK)
		return rc;
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		fatal("event=oom where=conf_local_socket_peek");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	rc = RC_INVALID;
	if (yaml_parser_load(&parser, &doc)) {
		yaml_node_t *root = yaml_document_get_root_node(&doc), *ls = NULL;
		const char *dir = conf_peek_scalar(&doc, root, "data_dir", NULL);
		conf_peek_scalar(&doc, root, "local_submit", &ls);
		const char *sock = conf_peek_scalar(&doc, ls, "socket", NULL);
		int n = sock ? snprintf(out, outsz, "%s", sock)
		             : snprintf(out, outsz, "%s/public/submit.sock",
		                        dir && dir[0] == '/' ? dir : "/var/lib/relevo");
		rc = n > 0 && (size_t)n < outsz && out[0] == '/' ? RC_OK : RC_INVALID;
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	free(buf);
	return rc;
}
