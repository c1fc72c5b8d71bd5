/*
 * spool_record.c - the spool's on-disk record format: CRC-32C, little-endian
 * encoding, record headers, envelope and state-record payloads (see the format
 * in spool_int.h).
 *
 * Pure code: no I/O, no globals except the CRC tables (built once). Decoders
 * treat their input as hostile: every length is checked against the bytes that
 * remain before anything is read or allocated, a payload must be consumed
 * exactly, strings may not contain NUL, enums must be in range. Decoders return
 * RC_INVALID and leave nothing allocated on failure. This file is fuzzed.
 */
#include "spool/spool_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* ---- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ---- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
			    (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* spool_crc32c_sw - CRC-32C by slicing-by-8 tables. */
uint32_t spool_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                     (uint32_t)p[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
		      crc_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
	uint64_t c = ~crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#endif

/* spool_crc32c - CRC-32C of buf continuing from crc (0 to start); hardware if present. */
uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
	if (crc_hw)
		return crc32c_hw(crc, buf, len);
#endif
	return spool_crc32c_sw(crc, buf, len);
}

/* ---- little-endian helpers ---- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void buf_reserve(struct spool_buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < more)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

/* spool_buf_add - append n bytes (aborts on allocation failure). */
void spool_buf_add(struct spool_buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_u8(struct spool_buf *b, uint8_t v)
{
	spool_buf_add(b, &v, 1);
}

static void buf_u32(struct spool_buf *b, uint32_t v)
{
	uint8_t t[4];
	put32(t, v);
	spool_buf_add(b, t, 4);
}

static void buf_u64(struct spool_buf *b, uint64_t v)
{
	buf_u32(b, (uint32_t)v);
	buf_u32(b, (uint32_t)(v >> 32));
}

/* Strings longer than SPOOL_STR_MAX were refused by spool_env_check or cut by
 * the caller; the cut here only keeps the format valid whatever happens. */
static void buf_str(struct spool_buf *b, const char *s)
{
	if (s == NULL) {
		buf_u32(b, SPOOL_STR_NULL);
		return;
	}
	size_t n = strnlen(s, SPOOL_STR_MAX);
	buf_u32(b, (uint32_t)n);
	spool_buf_add(b, s, n);
}

/* spool_buf_free - release an encoding buffer (the struct itself is the caller's). */
void spool_buf_free(struct spool_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- header ---- */

/* spool_hdr_parse - decode a header; true if magic and header checksum are right. */
bool spool_hdr_parse(const uint8_t b[SPOOL_HDR_LEN], struct spool_hdr *h)
{
	h->magic = le32(b);
	h->version = b[4];
	h->type = b[5];
	h->reserved = (uint16_t)(b[6] | b[7] << 8);
	h->len = le32(b + 8);
	h->pcrc = le32(b + 12);
	h->hcrc = le32(b + 16);
	return h->magic == SPOOL_REC_MAGIC && spool_crc32c(0, b, 16) == h->hcrc;
}

/* spool_hdr_build - write a version-1 header for a payload of len bytes. */
void spool_hdr_build(uint8_t b[SPOOL_HDR_LEN], unsigned type, uint32_t len, uint32_t pcrc)
{
	put32(b, SPOOL_REC_MAGIC);
	b[4] = SPOOL_REC_VERSION;
	b[5] = (uint8_t)type;
	b[6] = b[7] = 0;
	put32(b + 8, len);
	put32(b + 12, pcrc);
	put32(b + 16, spool_crc32c(0, b, 16));
}

/* ---- decoding cursor ---- */

struct cur {
	const uint8_t *p;
	size_t n;
	bool ok;
};

static bool cur_take(struct cur *c, size_t n, const uint8_t **out)
{
	if (!c->ok || c->n < n) {
		c->ok = false;
		return false;
	}
	*out = c->p;
	c->p += n;
	c->n -= n;
	return true;
}

static uint8_t cur_u8(struct cur *c)
{
	const uint8_t *p;
	return cur_take(c, 1, &p) ? p[0] : 0;
}

static uint32_t cur_u32(struct cur *c)
{
	const uint8_t *p;
	return cur_take(c, 4, &p) ? le32(p) : 0;
}

static uint64_t cur_u64(struct cur *c)
{
	const uint8_t *p;
	return cur_take(c, 8, &p) ? le64(p) : 0;
}

/* A string: NULL is allowed only when nullable; embedded NUL is refused. */
static char *cur_str(struct cur *c, bool nullable)
{
	uint32_t n = cur_u32(c);
	const uint8_t *p;
	if (!c->ok)
		return NULL;
	if (n == SPOOL_STR_NULL) {
		if (!nullable)
			c->ok = false;
		return NULL;
	}
	if (n > SPOOL_STR_MAX || !cur_take(c, n, &p) || memchr(p, '\0', n) != NULL) {
		c->ok = false;
		return NULL;
	}
	return xstrndup((const char *)p, n);
}

/* ---- envelopes ---- */

static const char *const rcpt_state_names[] = {"queued", "delivered", "failed", "bounced"};
_Static_assert(ARRAY_LEN(rcpt_state_names) == SPOOL_RCPT__COUNT, "state names");

/* spool_rcpt_state_name - "queued", "delivered", "failed", "bounced". */
const char *spool_rcpt_state_name(enum spool_rcpt_state s)
{
	return (unsigned)s < SPOOL_RCPT__COUNT ? rcpt_state_names[s] : "invalid";
}

static const char *const rec_type_names[] = {"none", "seg", "msg", "rcpt", "hold", "done"};
_Static_assert(ARRAY_LEN(rec_type_names) == SPOOL_REC__END, "record type names");

/* spool_rec_type_name - "msg", "rcpt", ... for logs. */
const char *spool_rec_type_name(unsigned type)
{
	return type < SPOOL_REC__END ? rec_type_names[type] : "unknown";
}

/* spool_env_free - free an envelope and everything it owns; NULL is a no-op. */
void spool_env_free(struct spool_env *env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; i < env->nrcpt; i++) {
		free(env->rcpt[i].addr);
		free(env->rcpt[i].orcpt);
		free(env->rcpt[i].last_reply);
	}
	free(env->rcpt);
	free(env->sender);
	free(env->user);
	free(env->client);
	free(env->helo);
	free(env->envid);
	free(env);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* spool_env_dup - deep copy. */
struct spool_env *spool_env_dup(const struct spool_env *env)
{
	struct spool_env *d = xcalloc(1, sizeof *d);
	*d = *env;
	d->sender = dup_or_null(env->sender);
	d->user = dup_or_null(env->user);
	d->client = dup_or_null(env->client);
	d->helo = dup_or_null(env->helo);
	d->envid = dup_or_null(env->envid);
	d->rcpt = xcalloc(env->nrcpt, sizeof *d->rcpt);
	for (size_t i = 0; i < env->nrcpt; i++) {
		d->rcpt[i] = env->rcpt[i];
		d->rcpt[i].addr = dup_or_null(env->rcpt[i].addr);
		d->rcpt[i].orcpt = dup_or_null(env->rcpt[i].orcpt);
		d->rcpt[i].last_reply = dup_or_null(env->rcpt[i].last_reply);
	}
	return d;
}

static bool str_fits(const char *s, bool nullable)
{
	if (s == NULL)
		return nullable;
	return strnlen(s, SPOOL_STR_MAX + 1) <= SPOOL_STR_MAX;
}

/*
 * spool_env_check - can env be stored, now and later? Recipient updates may grow
 * each last_reply up to SPOOL_REPLY_MAX, and compaction re-encodes the grown
 * envelope, so the worst case must still fit SPOOL_ENV_MAX (else a rewritten
 * record would not decode).
 */
enum rc spool_env_check(const struct spool_env *env)
{
	if (env->nrcpt == 0 || env->nrcpt > SPOOL_RCPT_MAX || env->rcpt == NULL)
		return RC_INVALID;
	if (!str_fits(env->sender, false) || !str_fits(env->user, true) ||
	    !str_fits(env->client, true) || !str_fits(env->helo, true) ||
	    !str_fits(env->envid, true))
		return RC_INVALID;
	uint64_t worst = 5 * (SPOOL_STR_MAX + 4) + 64;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		if (!str_fits(r->addr, false) || !str_fits(r->orcpt, true) ||
		    (r->last_reply && strlen(r->last_reply) > SPOOL_REPLY_MAX) ||
		    (unsigned)r->state >= SPOOL_RCPT__COUNT || r->notify > 0x0f)
			return RC_INVALID;
		worst += strlen(r->addr) + (r->orcpt ? strlen(r->orcpt) : 0) + 34 + SPOOL_REPLY_MAX;
	}
	return worst > SPOOL_ENV_MAX ? RC_LIMIT : RC_OK;
}

/* spool_env_encode - append u32 length + env block; env must have passed spool_env_check. */
void spool_env_encode(struct spool_buf *b, const struct spool_env *env)
{
	size_t start = b->len;
	buf_u32(b, 0); /* patched below */
	buf_u64(b, env->id);
	buf_u64(b, (uint64_t)env->created);
	buf_u32(b, env->flags);
	buf_str(b, env->sender);
	buf_str(b, env->user);
	buf_str(b, env->client);
	buf_str(b, env->helo);
	buf_str(b, env->envid);
	buf_u32(b, (uint32_t)env->nrcpt);
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpt[i];
		buf_str(b, r->addr);
		buf_str(b, r->orcpt);
		buf_u8(b, r->notify);
		buf_u8(b, (uint8_t)r->state);
		buf_u32(b, r->attempts);
		buf_u64(b, (uint64_t)r->next_attempt);
		buf_str(b, r->last_reply);
	}
	put32(b->p + start, (uint32_t)(b->len - start - 4));
}

/* Smallest encoding of one recipient: addr "", orcpt NULL, u8, u8, u32, i64, NULL. */
#define RCPT_MIN_ENC (4 + 4 + 1 + 1 + 4 + 8 + 4)

static void decode_rcpt(struct cur *c, struct spool_rcpt *r)
{
	r->addr = cur_str(c, false);
	r->orcpt = cur_str(c, true);
	r->notify = cur_u8(c);
	uint8_t st = cur_u8(c);
	r->attempts = cur_u32(c);
	r->next_attempt = (int64_t)cur_u64(c);
	r->last_reply = cur_str(c, true);
	if (st >= SPOOL_RCPT__COUNT || r->notify > 0x0f)
		c->ok = false;
	r->state = c->ok ? (enum spool_rcpt_state)st : SPOOL_RCPT_QUEUED;
}

/* spool_env_decode - decode an env block (without its u32 length) of exactly n bytes. */
enum rc spool_env_decode(const uint8_t *p, size_t n, struct spool_env **out)
{
	struct cur c = {p, n, true};
	struct spool_env *env = xcalloc(1, sizeof *env);
	env->id = cur_u64(&c);
	env->created = (int64_t)cur_u64(&c);
	env->flags = cur_u32(&c);
	env->sender = cur_str(&c, false);
	env->user = cur_str(&c, true);
	env->client = cur_str(&c, true);
	env->helo = cur_str(&c, true);
	env->envid = cur_str(&c, true);
	uint32_t nrcpt = cur_u32(&c);
	/* Refuse counts the remaining bytes cannot hold before allocating for them. */
	if (!c.ok || nrcpt == 0 || nrcpt > SPOOL_RCPT_MAX || c.n / RCPT_MIN_ENC < nrcpt)
		c.ok = false;
	if (c.ok) {
		env->rcpt = xcalloc(nrcpt, sizeof *env->rcpt);
		for (uint32_t i = 0; i < nrcpt && c.ok; i++, env->nrcpt++)
			decode_rcpt(&c, &env->rcpt[i]);
	}
	if (!c.ok || c.n != 0 || env->id == 0) {
		spool_env_free(env);
		return RC_INVALID;
	}
	*out = env;
	return RC_OK;
}

/* ---- state records ---- */

/* spool_rec_clear - free what r owns and zero it. */
void spool_rec_clear(struct spool_rec *r)
{
	if (r->type == SPOOL_REC_MSG)
		spool_env_free(r->u.msg.env);
	else if (r->type == SPOOL_REC_RCPT)
		free(r->u.rcpt.last_reply);
	memset(r, 0, sizeof *r);
}

/* spool_rec_id - the message a record concerns; 0 for SEG. */
uint64_t spool_rec_id(const struct spool_rec *r)
{
	switch (r->type) {
	case SPOOL_REC_MSG:
		return r->u.msg.env ? r->u.msg.env->id : 0;
	case SPOOL_REC_RCPT:
		return r->u.rcpt.id;
	case SPOOL_REC_HOLD:
		return r->u.hold.id;
	case SPOOL_REC_DONE:
		return r->u.done.id;
	default:
		return 0;
	}
}

/* spool_rec_encode_small - append header + payload of a SEG/RCPT/HOLD/DONE record. */
void spool_rec_encode_small(struct spool_buf *b, const struct spool_rec *r)
{
	struct spool_buf pl = {0};
	switch (r->type) {
	case SPOOL_REC_SEG:
		buf_u64(&pl, r->u.seg.seq);
		buf_u64(&pl, r->u.seg.prev_seq);
		buf_u64(&pl, r->u.seg.prev_end);
		break;
	case SPOOL_REC_RCPT:
		buf_u64(&pl, r->u.rcpt.id);
		buf_u32(&pl, r->u.rcpt.idx);
		buf_u8(&pl, (uint8_t)r->u.rcpt.state);
		buf_u32(&pl, r->u.rcpt.attempts);
		buf_u64(&pl, (uint64_t)r->u.rcpt.next_attempt);
		buf_str(&pl, r->u.rcpt.last_reply);
		break;
	case SPOOL_REC_HOLD:
		buf_u64(&pl, r->u.hold.id);
		buf_u8(&pl, r->u.hold.held ? 1 : 0);
		break;
	case SPOOL_REC_DONE:
		buf_u64(&pl, r->u.done.id);
		buf_u8(&pl, r->u.done.reason);
		break;
	default:
		fatal("event=spool_encode_bad_type type=%u", r->type);
	}
	uint8_t h[SPOOL_HDR_LEN];
	spool_hdr_build(h, r->type, (uint32_t)pl.len, spool_crc32c(0, pl.p, pl.len));
	spool_buf_add(b, h, sizeof h);
	spool_buf_add(b, pl.p, pl.len);
	spool_buf_free(&pl);
}

/* spool_rec_decode_small - decode a SEG/RCPT/HOLD/DONE payload of exactly n bytes. */
enum rc spool_rec_decode_small(const uint8_t *p, size_t n, struct spool_rec *r)
{
	struct cur c = {p, n, true};
	uint8_t v;
	switch (r->type) {
	case SPOOL_REC_SEG:
		r->u.seg.seq = cur_u64(&c);
		r->u.seg.prev_seq = cur_u64(&c);
		r->u.seg.prev_end = cur_u64(&c);
		break;
	case SPOOL_REC_RCPT:
		r->u.rcpt.id = cur_u64(&c);
		r->u.rcpt.idx = cur_u32(&c);
		v = cur_u8(&c);
		r->u.rcpt.state = v < SPOOL_RCPT__COUNT ? (enum spool_rcpt_state)v : 0;
		r->u.rcpt.attempts = cur_u32(&c);
		r->u.rcpt.next_attempt = (int64_t)cur_u64(&c);
		r->u.rcpt.last_reply = cur_str(&c, true);
		if (v >= SPOOL_RCPT__COUNT || r->u.rcpt.idx >= SPOOL_RCPT_MAX)
			c.ok = false;
		break;
	case SPOOL_REC_HOLD:
		r->u.hold.id = cur_u64(&c);
		v = cur_u8(&c);
		r->u.hold.held = v == 1;
		if (v > 1)
			c.ok = false;
		break;
	case SPOOL_REC_DONE:
		r->u.done.id = cur_u64(&c);
		r->u.done.reason = cur_u8(&c);
		if (r->u.done.reason > SPOOL_DONE_DELETED)
			c.ok = false;
		break;
	default:
		c.ok = false;
	}
	if (!c.ok || c.n != 0 || (r->type != SPOOL_REC_SEG && spool_rec_id(r) == 0)) {
		spool_rec_clear(r);
		return RC_INVALID;
	}
	return RC_OK;
}
