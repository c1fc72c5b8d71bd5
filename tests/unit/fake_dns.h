/*
 * fake_dns.h - shared by test_dns.c and test_dns_spf.c: a DNS packet
 * builder, and a fake DNS server that libunbound (dns_new) forwards to.
 *
 * The builder writes names uncompressed, or "label.@12" for a label followed by
 * a pointer to offset 12 (the question name of every packet built here).
 *
 * The fake is a UDP socket on 127.0.0.1 (ephemeral port) served on the test's
 * libevent loop. It answers exactly the question asked from its zone tables,
 * the way a simple authoritative server would: the records of that name and
 * type, else the name's CNAME (libunbound then asks for the target), else
 * NODATA or NXDOMAIN with an SOA. Some names answer an rcode (Z_RCODE), are
 * never answered (Z_DROP), or are answered late (Z_DELAY); every reply leaves
 * from a timer, so a late one never holds up the others. A TXT record's data is
 * split into character-strings at '|'. TEST_DNS_DEBUG=1 in the environment
 * prints every question the fake gets.
 *
 * Ownership: a struct fake owns its socket, events and pending replies until
 * fake_stop; the zone tables are the caller's and must outlive it. A broken
 * expectation fails the test (cmocka asserts).
 */
#ifndef RELEVO_FAKE_DNS_H
#define RELEVO_FAKE_DNS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns/dns.h"

/* ==== packet builder ===================================================== */

struct pkt {
	uint8_t b[16384];
	size_t n;
};

static void put8(struct pkt *p, unsigned v)
{
	assert_true(p->n < sizeof p->b);
	p->b[p->n++] = (uint8_t)v;
}

static void put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8);
	put8(p, v & 0xff);
}

static void put32(struct pkt *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

static void putbytes(struct pkt *p, const void *data, size_t n)
{
	assert_true(n <= sizeof p->b - p->n);
	memcpy(p->b + p->n, data, n);
	p->n += n;
}

/* "a.b.c" uncompressed; "" or "." is the root; a label "@N" is a pointer to N. */
static void putname(struct pkt *p, const char *name)
{
	const char *s = name;
	if (strcmp(s, ".") == 0)
		s = "";
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		if (s[0] == '@') {
			put16(p, 0xc000 | (unsigned)strtoul(s + 1, NULL, 10));
			return;
		}
		put8(p, (unsigned)l);
		putbytes(p, s, l);
		s += l;
		if (*s == '.')
			s++;
	}
	put8(p, 0);
}

static void hdr(struct pkt *p, unsigned flags, unsigned qd, unsigned an)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, flags);
	put16(p, qd);
	put16(p, an);
	put16(p, 0);
	put16(p, 0);
}

static inline void question(struct pkt *p, const char *name, unsigned type)
{
	putname(p, name);
	put16(p, type);
	put16(p, 1);
}

/* Start an RR: owner, type, class, ttl; returns where RDLENGTH goes. */
static size_t rr_begin_class(struct pkt *p, const char *owner, unsigned type, unsigned class)
{
	putname(p, owner);
	put16(p, type);
	put16(p, class);
	put32(p, 300);
	put16(p, 0);
	return p->n - 2;
}

static size_t rr_begin(struct pkt *p, const char *owner, unsigned type)
{
	return rr_begin_class(p, owner, type, 1);
}

static void rr_end(struct pkt *p, size_t at)
{
	size_t l = p->n - at - 2;
	p->b[at] = (uint8_t)(l >> 8);
	p->b[at + 1] = (uint8_t)l;
}

/* The SOA of zone origin: ns.<origin>, hostmaster.<origin>, all timers 60. */
static void rr_soa(struct pkt *p, const char *origin)
{
	char name[256];
	size_t at = rr_begin(p, origin, 6);
	snprintf(name, sizeof name, "ns.%s", origin);
	putname(p, name);
	snprintf(name, sizeof name, "hostmaster.%s", origin);
	putname(p, name);
	for (int i = 0; i < 5; i++)
		put32(p, 60);
	rr_end(p, at);
}

/* ==== the fake DNS server ================================================ */

#define Z_RCODE 0xff01		/* data: the rcode to answer with */
#define Z_DROP 0xff02		/* never answer this name */
#define Z_DELAY 0xff03		/* data: answer this name after so many ms */

struct zrec {
	const char *name;		/* NULL ends a zone */
	uint16_t type;
	const char *data;		/* "192.0.2.1", "10 mx.test", "target", "text|more" */
};

struct fake_delayed;

struct fake {
	evutil_socket_t fd;
	struct event *ev;
	struct event_base *base;
	uint16_t port;
	const char *origin;		/* the SOA of negative answers */
	bool aa;			/* set the AA bit of every answer */
	const struct zrec *zones[2];
	unsigned nqueries, nreplies;
	struct fake_delayed *pending;	/* replies waiting for their time */
};

/* The i-th record over both zones, or NULL past the end. */
static const struct zrec *fake_rec_at(const struct fake *f, size_t i)
{
	for (int z = 0; z < 2; z++) {
		const struct zrec *r = f->zones[z];
		for (; r && r->name; r++, i--)
			if (i == 0)
				return r;
	}
	return NULL;
}

static const struct zrec *fake_find(const struct fake *f, const char *name, uint16_t type)
{
	const struct zrec *r;
	for (size_t i = 0; (r = fake_rec_at(f, i)) != NULL; i++)
		if (r->type == type && strcasecmp(r->name, name) == 0)
			return r;
	return NULL;
}

static bool fake_exists(const struct fake *f, const char *name)
{
	const struct zrec *r;
	for (size_t i = 0; (r = fake_rec_at(f, i)) != NULL; i++)
		if (strcasecmp(r->name, name) == 0)
			return true;
	return false;
}

static void fake_rr_addr(struct pkt *p, int af, unsigned type, const char *ip)
{
	uint8_t a[16];
	assert_int_equal(inet_pton(af, ip, a), 1);
	size_t at = rr_begin(p, "@12", type);
	putbytes(p, a, af == AF_INET ? 4 : 16);
	rr_end(p, at);
}

/* An MX (with pref), CNAME or PTR record of the question name. */
static void fake_rr_name(struct pkt *p, unsigned type, unsigned pref, const char *name)
{
	size_t at = rr_begin(p, "@12", type);
	if (type == DNS_MX)
		put16(p, pref);
	putname(p, name);
	rr_end(p, at);
}

/* A TXT RR whose character-strings are data cut at each '|'. */
static void fake_rr_txt(struct pkt *p, const char *data)
{
	size_t at = rr_begin(p, "@12", DNS_TXT);
	for (const char *s = data;; s++) {
		size_t l = strcspn(s, "|");
		assert_true(l <= 255);	/* one character-string: split the test's data */
		put8(p, (unsigned)l);
		putbytes(p, s, l);
		s += l;
		if (*s == '\0')
			break;
	}
	rr_end(p, at);
}

static void fake_put_rr(struct pkt *p, const struct zrec *z)
{
	unsigned pref;
	char host[256];
	switch (z->type) {
	case DNS_A:
		fake_rr_addr(p, AF_INET, DNS_A, z->data);
		break;
	case DNS_AAAA:
		fake_rr_addr(p, AF_INET6, DNS_AAAA, z->data);
		break;
	case DNS_MX:
		assert_int_equal(sscanf(z->data, "%u %255s", &pref, host), 2);
		fake_rr_name(p, DNS_MX, pref, host);
		break;
	case DNS_CNAME:
	case DNS_PTR:
		fake_rr_name(p, z->type, 0, z->data);
		break;
	case DNS_TXT:
		fake_rr_txt(p, z->data);
		break;
	}
}

/* Decode the (uncompressed) question name of a query; false if odd. */
static bool fake_qname(const uint8_t *q, size_t n, size_t *off, char *out, size_t outsz)
{
	size_t o = 0;
	while (*off < n && q[*off] != 0) {
		size_t l = q[*off];
		if (l > 63 || *off + 1 + l >= n || o + l + 2 > outsz)
			return false;
		if (o)
			out[o++] = '.';
		memcpy(out + o, q + *off + 1, l);
		o += l;
		*off += 1 + l;
	}
	out[o] = '\0';
	(*off)++;
	return *off + 4 <= n;
}

/* Build the reply to query q for name/type into p; false: do not answer. */
static bool fake_answer(const struct fake *f, const uint8_t *q, size_t qend, const char *name,
			uint16_t type, struct pkt *p)
{
	const struct zrec *r;
	if (fake_find(f, name, Z_DROP))
		return false;
	const struct zrec *rc = fake_find(f, name, Z_RCODE);
	unsigned rcode = rc ? (unsigned)strtoul(rc->data, NULL, 10) : 0;
	unsigned an = 0;
	for (size_t i = 0; (r = fake_rec_at(f, i)) != NULL && !rc; i++)
		an += r->type == type && strcasecmp(r->name, name) == 0;
	const struct zrec *cname = an || rc ? NULL : fake_find(f, name, DNS_CNAME);
	if (!rc && !an && !cname && !fake_exists(f, name))
		rcode = 3;
	bool soa = !rc && !an && !cname;
	unsigned flags = 0x8080 | (f->aa ? 0x0400 : 0);	/* QR RA, AA if asked */
	hdr(p, flags | (q[2] << 8 & 0x0100) | rcode, 1, an + (cname != NULL));
	p->b[0] = q[0];
	p->b[1] = q[1];
	p->b[9] = soa;		/* NSCOUNT */
	putbytes(p, q + 12, qend - 12);
	for (size_t i = 0; (r = fake_rec_at(f, i)) != NULL && an; i++)
		if (r->type == type && strcasecmp(r->name, name) == 0)
			fake_put_rr(p, r);
	if (cname)
		fake_put_rr(p, cname);
	if (soa)
		rr_soa(p, f->origin);
	return true;
}

struct fake_delayed {
	struct fake_delayed *next;
	struct fake *f;
	struct event *ev;
	struct sockaddr_storage to;
	socklen_t tolen;
	struct pkt p;
};

static void fake_delayed_free(struct fake_delayed *d)
{
	struct fake_delayed **pp = &d->f->pending;
	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	event_free(d->ev);
	free(d);
}

static void fake_on_delayed(evutil_socket_t fd, short what, void *arg)
{
	struct fake_delayed *d = arg;
	(void)sendto(d->f->fd, d->p.b, d->p.n, 0, (struct sockaddr *)&d->to, d->tolen);
	d->f->nreplies++;
	fake_delayed_free(d);
}

static void fake_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	uint8_t q[2048];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fromlen);
	char name[256];
	size_t off = 12;
	if (n < 12 || !fake_qname(q, (size_t)n, &off, name, sizeof name))
		return;
	uint16_t type = (uint16_t)(q[off] << 8 | q[off + 1]);
	f->nqueries++;
	if (getenv("TEST_DNS_DEBUG"))
		fprintf(stderr, "fake: %s %s %u\n", name, dns_type_name(type), type);
	struct fake_delayed *d = calloc(1, sizeof *d);
	if (!fake_answer(f, q, off + 4, name, type, &d->p)) {
		free(d);
		return;
	}
	d->f = f;
	d->to = from;
	d->tolen = fromlen;
	const struct zrec *delay = fake_find(f, name, Z_DELAY);
	unsigned ms = delay ? (unsigned)strtoul(delay->data, NULL, 10) : 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	d->ev = event_new(f->base, -1, 0, fake_on_delayed, d);
	d->next = f->pending;
	f->pending = d;
	event_add(d->ev, &tv);
}

/*
 * fake_start - serve zones z1 then z2 (each ended by a NULL name; z2 may be
 * NULL) on 127.0.0.1 from base; negative answers carry the SOA of origin, aa
 * sets the AA bit of every answer. f->port is the port to forward to.
 */
static void fake_start(struct fake *f, struct event_base *base, const char *origin, bool aa,
		       const struct zrec *z1, const struct zrec *z2)
{
	memset(f, 0, sizeof *f);
	f->base = base;
	f->origin = origin;
	f->aa = aa;
	f->zones[0] = z1;
	f->zones[1] = z2;
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sin, sizeof sin), 0);
	socklen_t l = sizeof sin;
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sin, &l), 0);
	f->port = ntohs(sin.sin_port);
	f->ev = event_new(base, f->fd, EV_READ | EV_PERSIST, fake_on_read, f);
	event_add(f->ev, NULL);
}

/* fake_stop - close the socket; replies not yet sent are dropped. */
static void fake_stop(struct fake *f)
{
	while (f->pending)
		fake_delayed_free(f->pending);
	event_free(f->ev);
	close(f->fd);
}

/* ==== text helpers for rendering answers and routes ======================= */

static inline int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Join v[0..n) with sep into out, sorted first if asked. */
static inline size_t join(char **v, size_t n, bool sorted, const char *sep, char *out, size_t outsz)
{
	size_t o = 0;
	if (sorted)
		qsort(v, n, sizeof *v, cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n && o < outsz; i++)
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", i ? sep : "", v[i]);
	return MIN(o, outsz);
}

/* ==== the environment: a loop, the fake and a resolver forwarding to it ==== */

struct env {
	struct event_base *base;
	struct fake fake;
	struct dns *dns;
	struct event *tick;		/* keeps EVLOOP_ONCE from blocking forever */
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* env_start - a new loop, the fake serving z1 and z2 (see fake_start) and
 * dns_new forwarding to it with timeout_ms. */
static void env_start(struct env *e, const char *origin, bool aa, const struct zrec *z1,
		      const struct zrec *z2, unsigned timeout_ms)
{
	e->base = event_base_new();
	assert_non_null(e->base);
	fake_start(&e->fake, e->base, origin, aa, z1, z2);
	char resolver[64];
	snprintf(resolver, sizeof resolver, "127.0.0.1@%u", e->fake.port);
	assert_int_equal(dns_new(e->base, resolver, timeout_ms, &e->dns), RC_OK);
	e->tick = event_new(e->base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20000};
	event_add(e->tick, &tv);
}

static void env_fini(struct env *e)
{
	dns_free(e->dns);
	fake_stop(&e->fake);
	event_free(e->tick);
	event_base_free(e->base);
}

/* Run the loop until *done or ms have passed. */
static void run_until(struct env *e, const bool *done, int ms)
{
	int64_t end = time_mono_ms() + ms;
	while (!*done && time_mono_ms() < end)
		event_base_loop(e->base, EVLOOP_ONCE);
}

static void run_for(struct env *e, int ms)
{
	bool never = false;
	run_until(e, &never, ms);
}

#endif
