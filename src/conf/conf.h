/*
 * conf.h - relevo's YAML configuration, loaded and validated into plain structs.
 *
 * conf_load() reads the file once; the result is immutable afterwards and may be
 * shared by every thread. Unknown keys are errors. Every error names its key path
 * ("listen[1].mode: must be one of submission, submissions, relay").
 * Ownership: a struct conf owns every string and array it points to; conf_free()
 * releases them all.
 */
#ifndef RELEVO_CONF_H
#define RELEVO_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/core.h"

#define CONF_DEFAULT_PATH "/etc/relevo/relevo.yaml"

enum conf_listen_mode {
	CONF_LISTEN_SUBMISSION,	/* plain + STARTTLS; AUTH only after TLS */
	CONF_LISTEN_SUBMISSIONS,	/* implicit TLS (RFC 8314) */
	CONF_LISTEN_RELAY,	/* trusted_networks only, no AUTH needed */
	CONF_LISTEN__COUNT
};
const char *conf_listen_mode_name(enum conf_listen_mode m);

struct conf_listen {
	char *address;				/* as written: "0.0.0.0:587", "[::1]:465" */
	struct sockaddr_storage sa;		/* parsed */
	socklen_t salen;
	enum conf_listen_mode mode;
};

/* A CIDR block of trusted_networks. */
struct conf_net {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network byte order */
	unsigned prefix;	/* bits */
};

struct conf {
	char *path;			/* the file this was loaded from */
	char *hostname;			/* default: gethostname() */
	char *data_dir;			/* default: /var/lib/relevo */
	char *run_as;			/* optional: user to drop privileges to (NULL) */

	struct conf_listen *listen;	/* at least one */
	size_t nlisten;

	struct conf_net *trusted;	/* trusted_networks, default none */
	size_t ntrusted;

	char *tls_cert;			/* tls.cert, tls.key: required if any */
	char *tls_key;			/* submission/submissions listener exists */

	struct {
		uint64_t max_message_size;	/* default 26214400 (25 MiB) */
		unsigned max_recipients;	/* default 1000 */
		unsigned max_connections;	/* default 1000 */
		unsigned max_connections_per_ip;	/* default 50 */
		unsigned max_errors;		/* protocol errors before 421, default 10 */
		unsigned max_auth_failures;	/* failed AUTH before 421, default 3 */
		unsigned timeout_command;	/* seconds, default 300 (RFC 5321 4.5.3.2.7) */
		unsigned timeout_data;		/* seconds between DATA blocks, default 180 */
		unsigned greeting_delay_ms;	/* pre-greet pause; early talkers are cut, default 0 */
	} smtp;

	struct {
		char *resolver;			/* "127.0.0.1@5353" or NULL: /etc/resolv.conf */
	} dns;

	struct {
		unsigned port;			/* default 25 */
	} delivery;

	struct {
		unsigned workers;		/* event loop threads, 0 = one per core */
	} server;
};

/*
 * conf_load - read and validate path. On success *out is a new conf (free with
 * conf_free). On failure returns RC_INVALID or RC_IO and *errs holds one
 * "key: explanation" line per problem (caller frees); all errors are collected,
 * not just the first.
 */
enum rc conf_load(const char *path, struct conf **out, char **errs);

/* conf_load_string - same, from a buffer (tests, fuzzing); name is used in messages. */
enum rc conf_load_string(const char *yaml, size_t len, const char *name,
			 struct conf **out, char **errs);

void conf_free(struct conf *c);

/* conf_is_trusted - is the peer address inside trusted_networks? */
bool conf_is_trusted(const struct conf *c, const struct sockaddr *sa);

/* conf_parse_cidr - "127.0.0.0/8", "::1/128", "10.1.2.3" (host). */
bool conf_parse_cidr(const char *s, struct conf_net *out);

/* conf_parse_hostport - "1.2.3.4:25", "[::1]:25", "localhost:25" is not allowed
 * (numeric only). */
bool conf_parse_hostport(const char *s, struct sockaddr_storage *sa, socklen_t *salen);

#endif
