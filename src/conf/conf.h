/*
 * conf.h - relevo's YAML configuration, loaded and validated into plain structs.
 *
 * conf_load() reads the file; the result is immutable afterwards and may be
 * shared by every thread. Unknown keys are errors. Every error names its key path
 * ("listen[1].mode: must be one of submission, submissions, relay").
 * Ownership: a struct conf owns every string and array it points to. It is
 * reference-counted (the count is its only mutable part): conf_load gives the
 * caller one reference, conf_ref takes another, conf_unref (or conf_free, the
 * same) drops one and the last frees everything. A reload (src/cli/cli_reload.c)
 * loads a new conf while sessions still hold the old one.
 */
#ifndef RELEVO_CONF_H
#define RELEVO_CONF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/core.h"

#define CONF_DEFAULT_PATH "/etc/relevo/relevo.yaml"
#define CONF_DEFAULT_DATA_DIR "/var/lib/relevo"

enum conf_listen_mode {
	CONF_LISTEN_SUBMISSION,	/* plain + STARTTLS; AUTH only after TLS */
	CONF_LISTEN_SUBMISSIONS,	/* implicit TLS (RFC 8314) */
	CONF_LISTEN_RELAY,	/* trusted_networks only, no AUTH needed */
	CONF_LISTEN_LOCAL,	/* local_submit's unix socket: the peer's uid is its
				 * account; never written in listen: (not a name the
				 * file accepts) */
	CONF_LISTEN__COUNT
};
const char *conf_listen_mode_name(enum conf_listen_mode m);

struct conf_listen {
	char *address;				/* as written: "0.0.0.0:587", "[::1]:465" */
	struct sockaddr_storage sa;		/* parsed */
	socklen_t salen;
	enum conf_listen_mode mode;
};

/* delivery.tls and a route's tls: how outbound connections use STARTTLS. */
enum conf_tls_policy {
	CONF_TLS_OPPORTUNISTIC,	/* STARTTLS when offered; certificate recorded, not required */
	CONF_TLS_REQUIRED,	/* no STARTTLS or a failed handshake: RC_TEMPFAIL, never plaintext */
	CONF_TLS__COUNT
};
const char *conf_tls_policy_name(enum conf_tls_policy p);

/* A webhooks entry: every event (of the listed types) is POSTed to url, signed
 * with secret (X-Relevo-Signature). */
struct conf_webhook {
	char *url;		/* http:// or https:// */
	char *secret;		/* never logged */
	char **events;		/* evlog type names; none = every type */
	size_t nevents;
};

/* dkim.missing_key: mail whose From: domain has no usable DKIM key. */
enum conf_dkim_missing {
	CONF_DKIM_MISSING_TEMPFAIL,	/* 451 at end of data, and a loud log line */
	CONF_DKIM_MISSING_SEND,		/* send it unsigned (with a log line) */
	CONF_DKIM_MISSING__COUNT
};

/* delivery.mode */
enum conf_delivery_mode {
	CONF_DELIVERY_NORMAL,	/* to the network */
	CONF_DELIVERY_SANDBOX,	/* written to data_dir/sandbox/; nothing leaves the host */
	CONF_DELIVERY__COUNT
};
const char *conf_delivery_mode_name(enum conf_delivery_mode m);

#define CONF_RETRY_MAX	32	/* delivery.retry_schedule entries */
#define CONF_ROUTES_MAX	1024	/* delivery.routes entries */

/*
 * One delivery.routes entry: mail for domain goes to host instead of the
 * domain's MX. Owned by the struct conf (all strings included).
 */
struct conf_route {
	char *domain;			/* lower case, or "*" (every other domain) */
	char *host;			/* without the port: a lower-case DNS name,
					 * "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321
					 * 4.1.3; a bare IPv4 address is stored bracketed) */
	uint16_t port;			/* from host, else delivery.port */
	char *auth_user;		/* smarthost AUTH, or NULL */
	char *auth_password;		/* set exactly when auth_user is: inline, or the
					 * first line of auth_password_file. Never log it. */
	char *auth_password_file;	/* as written, or NULL */
	enum conf_tls_policy tls;	/* the route's tls, else delivery.tls; always
					 * CONF_TLS_REQUIRED when auth_user is set */
	bool tls_verify;		/* the route's tls_verify, else delivery.tls_verify
					 * when tls is required; only true with tls required */
};

/* A CIDR block of trusted_networks. */
struct conf_net {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network byte order */
	unsigned prefix;	/* bits */
};

/* A local_submit.users entry: the system user name and the account it submits as. */
struct conf_local_user {
	char *user;
	char *account;
};

struct conf {
	atomic_uint refs;		/* references (conf_ref/conf_unref) */
	char *path;			/* the file this was loaded from */
	char *hostname;			/* required */
	char *data_dir;			/* default: /var/lib/relevo */
	char *run_as;			/* optional: an existing user to drop privileges
					 * to (NULL) */

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
		/* Totals that trickling cannot stretch (the timeouts above are idle
		 * timeouts, reset by every byte): */
		unsigned timeout_data_total;	/* seconds for a whole DATA/BDAT transfer, default 600 */
		unsigned session_max_time;	/* seconds a session may last, default 3600 */
		/* Password guessing across connections (smtp_guard.c): */
		unsigned auth_lockout_failures;	/* failed AUTH per address (IPv6: per /64) before
						 * it is locked out, and per account before every
						 * failure is answered after the longest delay;
						 * default 10 */
		unsigned auth_lockout_window;	/* seconds those failures are counted over, and
						 * an address stays locked; default 900 */
		uint64_t memory_budget;		/* bytes of message data all sessions together may
						 * hold before their commit; default 1 GiB, at
						 * least max_message_size */
		unsigned max_received_headers;	/* more Received: fields than this is a mail
						 * loop: 554 5.4.6; default 50 */
		bool allow_address_literals;	/* submission listeners accept recipients at
						 * [address literals]; default false */
	} smtp;

	struct {
		char *resolver;			/* "127.0.0.1@5353" or NULL: /etc/resolv.conf */
		unsigned timeout;		/* seconds per query, default 10 */
	} dns;

	struct {
		unsigned port;			/* default 25 */
		enum conf_delivery_mode mode;	/* default CONF_DELIVERY_NORMAL */
		uint32_t *retry_schedule;	/* seconds between attempts, the last repeats;
					 * default 300 600 1200 2400 3600 7200 14400 */
		size_t nretry_schedule;		/* 1..CONF_RETRY_MAX */
		unsigned max_queue_lifetime;	/* seconds, default 432000 (5 days) */
		unsigned delay_warning;		/* seconds before a delay DSN, 0 = never
					 * (default); else below max_queue_lifetime */
		struct sockaddr_in source_v4;	/* source_address: bind outbound IPv4 here; */
		struct sockaddr_in6 source_v6;	/* family 0 when not set (kernel chooses). Port
					 * 0. Use conf_source_address(). */
		unsigned max_connections;	/* outbound in total, default 100 */
		unsigned max_connections_per_destination;	/* default 10 */
		unsigned max_messages_per_connection;		/* default 100 */
		unsigned idle_timeout;		/* seconds a healthy connection waits, idle,
					 * for the next attempt; default 5, 0 = close */
		struct {			/* seconds per reply (RFC 5321 4.5.3.2) */
			unsigned connect;	/* TCP connect, default 30 */
			unsigned greeting;	/* 220, default 300 */
			unsigned ehlo;		/* EHLO/HELO, STARTTLS + handshake, AUTH: 300 */
			unsigned mail;		/* MAIL and RSET, default 300 */
			unsigned rcpt;		/* each RCPT, default 300 */
			unsigned data;		/* 354, default 180 */
			unsigned data_block;	/* each body write making no progress: 180 */
			unsigned data_done;	/* the reply to the final dot, default 600 */
		} timeouts;
		enum conf_tls_policy tls;	/* default CONF_TLS_OPPORTUNISTIC */
		bool tls_verify;		/* default false; true only with tls required */
		struct conf_net *allow_networks;	/* internal networks MX delivery may
						 * reach anyway (conf_delivery_allows) */
		size_t nallow_networks;
		struct conf_route *routes;	/* as written; look up with conf_route_find() */
		size_t nroutes;			/* 0..CONF_ROUTES_MAX, default none */
	} delivery;

	struct {
		unsigned workers;		/* event loop threads, 0 = one per core */
	} server;

	struct {
		enum conf_dkim_missing missing_key;	/* mail from a domain without a usable
							 * key; default CONF_DKIM_MISSING_TEMPFAIL */
		unsigned retire_after;		/* seconds a replaced (retiring) key stays
						 * published before retire-key may remove it;
						 * default 604800 (7 days) */
		unsigned pending_check_interval;	/* seconds between the daemon's looks
							 * in DNS for pending keys; default 600 */
	} dkim;

	char *spf_include;		/* the operator's own SPF record for the relay's
					 * addresses (customers include: it), or NULL */

	struct {
		struct conf_listen *listen;	/* http.listen: the API's addresses (mode
						 * unused); none = no HTTP API */
		size_t nlisten;
		uint64_t max_request_size;	/* bytes, default 40 MiB (base64 inflates) */
		unsigned timeout;		/* seconds per read or write, default 30 */
		unsigned timeout_headers;	/* seconds for a whole request head, from
						 * its first byte; default 10 */
		unsigned timeout_body;		/* seconds for a whole request body, from
						 * the end of its head; default 120 */
		unsigned idle_timeout;		/* seconds a connection may wait for its
						 * next request; default 15 */
		unsigned max_connections;	/* API connections in total, default 512 */
		unsigned max_connections_per_ip; /* from one client address, default 32 */
		uint64_t memory_budget;		/* bytes of request bodies in flight
						 * together, default 256 MiB */
		bool webhooks_allow_private;	/* accounts' webhooks may reach private
						 * and loopback addresses; default false */
		char *metrics_listen;		/* http.metrics_listen: GET /metrics here;
						 * default 127.0.0.1:9025, NULL when "" */
		bool metrics_listen_given;	/* written in the file (a bind failure is
						 * then fatal; of the default, a warning) */
	} http;

	struct {
		unsigned retention;		/* seconds events are kept, default 2592000
						 * (30 days) */
		unsigned queue_max;		/* events waiting for the store, default 65536 */
	} events;

	struct conf_webhook *webhooks;	/* webhooks: operator-wide endpoints */
	size_t nwebhooks;

	struct {			/* `relevo sendmail` (conf_local.c) */
		struct conf_local_user *users;	/* local_submit.users; none = off */
		size_t nusers;
		char *socket;		/* local_submit.socket, default
					 * DATA_DIR/public/submit.sock; NULL when off */
		struct conf_listen listen;	/* the socket as a listener (mode
						 * CONF_LISTEN_LOCAL); set when socket is */
	} local_submit;
};

/*
 * conf_load - read and validate path. On success *out is a new conf (free with
 * conf_free). On failure returns RC_INVALID or RC_IO and *errs holds one
 * "key: explanation" line per problem (caller frees); all errors are collected,
 * not just the first.
 */
enum rc conf_load(const char *path, struct conf **out, char **errs);

/* How conf_load_with loads; {0} is conf_load. */
struct conf_load_opts {
	bool skip_tls_files;	/* tls.cert and tls.key are named but not opened or
				 * checked: for every command but serve and
				 * check-config, which may run as a user (run_as)
				 * who cannot read a root-only key */
};
/* conf_load_with - conf_load as opts say (opts NULL: the same as conf_load). */
enum rc conf_load_with(const char *path, const struct conf_load_opts *opts, struct conf **out,
		       char **errs);

/* conf_load_string - same, from a buffer (tests, fuzzing); name is used in messages. */
enum rc conf_load_string(const char *yaml, size_t len, const char *name,
			 struct conf **out, char **errs);

/* conf_free - drop the caller's reference (as conf_unref); NULL is a no-op. */
void conf_free(struct conf *c);
/* conf_ref - one more reference to c (any thread); returns c. */
const struct conf *conf_ref(const struct conf *c);
/* conf_unref - drop a reference (any thread); the last one frees c. NULL: no-op. */
void conf_unref(const struct conf *c);

/*
 * conf_keep_restart_keys - the keys a running daemon cannot change (data_dir,
 * run_as, server.workers, dns.resolver, dns.timeout, dkim.pending_check_interval,
 * local_submit.socket): where
 * nc differs from old,
 * nc gets old's value back, and the key's name is appended to *changed (a heap
 * string of "KEY\n" lines, NULL when none changed; caller frees).
 */
void conf_keep_restart_keys(struct conf *nc, const struct conf *old, char **changed);

/* conf_data_dir_of - data_dir as the file at path sets it (the default when it
 * does not), even when the rest of the file is invalid: `relevo reload` must find
 * the control socket to report a broken config. NULL if path cannot be parsed at
 * all. Caller frees. */
char *conf_data_dir_of(const char *path);

/* conf_listen_same - do a and b name the same socket address? */
bool conf_listen_same(const struct conf_listen *a, const struct conf_listen *b);

/* conf_is_trusted - is the peer address inside trusted_networks? */
bool conf_is_trusted(const struct conf *c, const struct sockaddr *sa);

/* conf_addr_is_internal - loopback, private, link-local, CGNAT, multicast,
 * unspecified, reserved, documentation or benchmarking addresses (IPv4, IPv6,
 * and IPv4 embedded in IPv6 as mapped or compatible forms): nowhere mail for
 * the internet should go. */
bool conf_addr_is_internal(const struct sockaddr *sa);
/* conf_addr_is_private - the part of those that is the operator's own network:
 * loopback, private (RFC 1918, RFC 4193), link-local, CGNAT, unspecified,
 * multicast and reserved, in any of those forms; not the documentation,
 * benchmarking and protocol-assignment blocks. What an account's webhook must
 * not reach (SSRF). */
bool conf_addr_is_private(const struct sockaddr *sa);
/* conf_delivery_allows - may MX delivery connect to sa? Not internal, or inside
 * delivery.allow_networks. */
bool conf_delivery_allows(const struct conf *c, const struct sockaddr *sa);

/* conf_parse_cidr - "127.0.0.0/8", "::1/128", "10.1.2.3" (host). */
bool conf_parse_cidr(const char *s, struct conf_net *out);

/* conf_route_find - the delivery.routes entry for a recipient domain: the exact
 * domain (case-insensitive), else "*", else NULL (deliver by MX). */
const struct conf_route *conf_route_find(const struct conf *c, const char *domain);

/* conf_source_address - delivery.source_address for family (AF_INET or AF_INET6),
 * with *len set, or NULL when none is configured for it. */
const struct sockaddr *conf_source_address(const struct conf *c, int family, socklen_t *len);

/* conf_local_account - the account that local user name submits as
 * (local_submit.users), or NULL if the user may not submit. */
const char *conf_local_account(const struct conf *c, const char *user);

/*
 * conf_local_socket_peek - the local submission socket named by the config
 * file at path (local_submit.socket, else DATA_DIR/public/submit.sock), for
 * `relevo sendmail`. Reads only those two keys and validates nothing else, so
 * that a caller who may not read tls.key (www-data) can still find the socket.
 * RC_IO / RC_NOTFOUND if the file cannot be read (errno set), RC_INVALID if it
 * is not YAML or the path does not fit in outsz.
 */
enum rc conf_local_socket_peek(const char *path, char *out, size_t outsz);

/* conf_parse_hostport - "1.2.3.4:25", "[::1]:25", "localhost:25" is not allowed
 * (numeric only). */
bool conf_parse_hostport(const char *s, struct sockaddr_storage *sa, socklen_t *salen);

#endif
