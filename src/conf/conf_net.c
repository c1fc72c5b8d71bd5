/*
 * conf_net.c - addresses in the configuration: numeric "ip:port" listener
 * addresses, CIDR blocks of trusted_networks, and the peer-in-network test.
 *
 * Numeric only (inet_pton), so a configuration never depends on DNS. Pure
 * functions: no I/O, no allocation, thread-safe.
 *
 * IPv4 and IPv4-mapped IPv6 (::ffff:a.b.c.d, what a dual-stack socket reports
 * for an IPv4 client) are the same host: a peer is tested in both forms, so
 * 192.0.2.0/24 trusts ::ffff:192.0.2.7 and ::ffff:192.0.2.0/120 trusts
 * 192.0.2.7 (RFC 4291 section 2.5.5.2).
 */
#include <arpa/inet.h>
#include <string.h>

#include "conf/conf.h"

#define CONF_PORT_DIGITS   5 /* "65535" */
#define CONF_PREFIX_DIGITS 3 /* "128" */

/* Parse a run of at most maxdigits decimal digits into [min, max]. */
static bool net_parse_uint(const char *s, size_t maxdigits, uint64_t min, uint64_t max,
                           uint64_t *out)
{
	uint64_t v;
	size_t len = strlen(s);
	if (len == 0 || len > maxdigits || (s[0] == '0' && len > 1))
		return false;
	if (!str_to_u64(s, &v) || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Copy s[0..len) into a terminated buffer of size cap; false if it does not fit. */
static bool net_copy(char *dst, size_t cap, const char *s, size_t len)
{
	if (len == 0 || len >= cap)
		return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

static bool net_fill_v4(const char *host, uint64_t port, struct sockaddr_storage *sa,
                        socklen_t *salen)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return false;
	memset(sa, 0, sizeof *sa);
	memcpy(sa, &sin, sizeof sin);
	*salen = sizeof sin;
	return true;
}

static bool net_fill_v6(const char *host, uint64_t port, struct sockaddr_storage *sa,
                        socklen_t *salen)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
		return false;
	memset(sa, 0, sizeof *sa);
	memcpy(sa, &sin6, sizeof sin6);
	*salen = sizeof sin6;
	return true;
}

/* conf_parse_hostport - "1.2.3.4:25" or "[::1]:25" (numeric, port 1..65535). */
bool conf_parse_hostport(const char *s, struct sockaddr_storage *sa, socklen_t *salen)
{
	char host[INET6_ADDRSTRLEN];
	uint64_t port;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':' ||
		    !net_copy(host, sizeof host, s + 1, (size_t)(close - s - 1)))
			return false;
		if (!net_parse_uint(close + 2, CONF_PORT_DIGITS, 1, 65535, &port))
			return false;
		return net_fill_v6(host, port, sa, salen);
	}
	const char *colon = strchr(s, ':');
	if (colon == NULL || !net_copy(host, sizeof host, s, (size_t)(colon - s)))
		return false;
	if (!net_parse_uint(colon + 1, CONF_PORT_DIGITS, 1, 65535, &port))
		return false;
	return net_fill_v4(host, port, sa, salen);
}

/* Are the first prefix bits of a and b equal? */
static bool net_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/* Are all bits of addr from bit prefix up to bit bits zero? */
static bool net_host_bits_zero(const uint8_t *addr, unsigned bits, unsigned prefix)
{
	for (unsigned b = prefix; b < bits; b++)
		if (addr[b / 8] & (0x80 >> (b % 8)))
			return false;
	return true;
}

/* conf_parse_cidr - "127.0.0.0/8", "::1/128", a bare address (/32 or /128);
 * host bits after the prefix must be zero. */
bool conf_parse_cidr(const char *s, struct conf_net *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	struct conf_net n = {0};
	uint64_t prefix;
	if (!net_copy(host, sizeof host, s, hlen))
		return false;
	if (inet_pton(AF_INET, host, n.addr) == 1)
		n.family = AF_INET;
	else if (inet_pton(AF_INET6, host, n.addr) == 1)
		n.family = AF_INET6;
	else
		return false;
	unsigned bits = n.family == AF_INET ? 32 : 128;
	prefix = bits;
	if (slash && !net_parse_uint(slash + 1, CONF_PREFIX_DIGITS, 0, bits, &prefix))
		return false;
	n.prefix = (unsigned)prefix;
	if (!net_host_bits_zero(n.addr, bits, n.prefix))
		return false;
	*out = n;
	return true;
}

/* A peer in both its forms: IPv4 (if it is or maps one) and IPv6. */
struct net_peer {
	bool has4;
	uint8_t a4[4];
	uint8_t a6[16];
};

static bool net_peer_of(const struct sockaddr *sa, struct net_peer *p)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof sin);
		memcpy(p->a4, &sin.sin_addr, 4);
		memcpy(p->a6, mapped, 12);
		memcpy(p->a6 + 12, p->a4, 4);
		p->has4 = true;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof sin6);
		memcpy(p->a6, &sin6.sin6_addr, 16);
		p->has4 = memcmp(p->a6, mapped, 12) == 0;
		memcpy(p->a4, p->a6 + 12, 4);
		return true;
	}
	return false;
}

/* Is the peer p inside one of the n networks? */
static bool net_list_has(const struct conf_net *nets, size_t n, const struct net_peer *p)
{
	for (size_t i = 0; i < n; i++) {
		const struct conf_net *net = &nets[i];
		if (net->family == AF_INET && p->has4 &&
		    net_prefix_eq(net->addr, p->a4, net->prefix))
			return true;
		if (net->family == AF_INET6 && net_prefix_eq(net->addr, p->a6, net->prefix))
			return true;
	}
	return false;
}

/* conf_is_trusted - is sa (AF_INET or AF_INET6, mapped or not) in trusted_networks? */
bool conf_is_trusted(const struct conf *c, const struct sockaddr *sa)
{
	struct net_peer p;
	if (c == NULL || sa == NULL || !net_peer_of(sa, &p))
		return false;
	return net_list_has(c->trusted, c->ntrusted, &p);
}

/* A block of addresses no mail for the internet goes to. own: also the
 * operator's own network (private, loopback, link-local...), which an
 * account's webhook must not reach; the others (documentation, benchmarking,
 * protocol assignments) are only unfit for mail. */
struct net_block {
	int family;
	uint8_t addr[16];
	unsigned prefix;
	bool own;
};

/* IPv4: RFC 6890's special-purpose registry, less the globally reachable ones. */
static const struct net_block net_internal4[] = {
    {AF_INET, {0}, 8, true},              /* "this network", 0.0.0.0 */
    {AF_INET, {10}, 8, true},             /* RFC 1918 */
    {AF_INET, {100, 64}, 10, true},       /* CGNAT, RFC 6598 */
    {AF_INET, {127}, 8, true},            /* loopback */
    {AF_INET, {169, 254}, 16, true},      /* link-local */
    {AF_INET, {172, 16}, 12, true},       /* RFC 1918 */
    {AF_INET, {192, 0, 0}, 24, false},    /* IETF protocol assignments */
    {AF_INET, {192, 0, 2}, 24, false},    /* documentation, RFC 5737 */
    {AF_INET, {192, 168}, 16, true},      /* RFC 1918 */
    {AF_INET, {198, 18}, 15, false},      /* benchmarking, RFC 2544 */
    {AF_INET, {198, 51, 100}, 24, false}, /* documentation */
    {AF_INET, {203, 0, 113}, 24, false},  /* documentation */
    {AF_INET, {224}, 4, true},            /* multicast */
    {AF_INET, {240}, 4, true},            /* reserved, and 255.255.255.255 */
};

/* IPv6 (the IPv4 forms, ::ffff:0:0/96 and ::/96, are checked as IPv4). */
static const struct net_block net_internal6[] = {
    {AF_INET6, {0}, 128, true},                      /* unspecified */
    {AF_INET6, {[15] = 1}, 128, true},               /* loopback */
    {AF_INET6, {0x01, 0x00}, 64, false},             /* discard-only, RFC 6666 */
    {AF_INET6, {0x20, 0x01, 0x0d, 0xb8}, 32, false}, /* documentation, RFC 3849 */
    {AF_INET6, {0xfc}, 7, true},                     /* unique local, RFC 4193 */
    {AF_INET6, {0xfe, 0x80}, 10, true},              /* link-local */
    {AF_INET6, {0xfe, 0xc0}, 10, false},             /* site-local (deprecated) */
    {AF_INET6, {0xff}, 8, true},                     /* multicast */
};

/* Is a in one of the n blocks b (only the operator's own ones when own_only)? */
static bool net_in_blocks(const struct net_block *b, size_t n, const uint8_t *a, bool own_only)
{
	for (size_t i = 0; i < n; i++)
		if ((b[i].own || !own_only) && net_prefix_eq(b[i].addr, a, b[i].prefix))
			return true;
	return false;
}

/* net_is_special - sa in the blocks above (the own ones only when own_only).
 * Unknown families count as inside. */
static bool net_is_special(const struct sockaddr *sa, bool own_only)
{
	static const uint8_t zero12[12] = {0};
	struct net_peer p;
	if (sa == NULL || !net_peer_of(sa, &p))
		return true;
	/* ::a.b.c.d (IPv4-compatible, deprecated) carries an IPv4 address too;
	 * :: and ::1 themselves are in the IPv6 table. */
	if (!p.has4 && memcmp(p.a6, zero12, 12) == 0 &&
	    !net_in_blocks(net_internal6, 2, p.a6, false)) {
		memcpy(p.a4, p.a6 + 12, 4);
		p.has4 = true;
	}
	if (p.has4)
		return net_in_blocks(net_internal4, ARRAY_LEN(net_internal4), p.a4, own_only);
	return net_in_blocks(net_internal6, ARRAY_LEN(net_internal6), p.a6, own_only);
}

/* conf_addr_is_internal - see conf.h. */
bool conf_addr_is_internal(const struct sockaddr *sa)
{
	return net_is_special(sa, false);
}

/* conf_addr_is_private - see conf.h. */
bool conf_addr_is_private(const struct sockaddr *sa)
{
	return net_is_special(sa, true);
}

/* conf_delivery_allows - see conf.h. */
bool conf_delivery_allows(const struct conf *c, const struct sockaddr *sa)
{
	struct net_peer p;
	if (!conf_addr_is_internal(sa))
		return true;
	return c != NULL && sa != NULL && net_peer_of(sa, &p) &&
	       net_list_has(c->delivery.allow_networks, c->delivery.nallow_networks, &p);
}
