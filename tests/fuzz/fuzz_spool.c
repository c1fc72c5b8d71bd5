/*
 * fuzz_spool.c - arbitrary bytes as a spool segment image.
 *
 * Each input goes through:
 *  1. the pure scanner (spool_scan over memory), as the last segment and as an
 *     older one, checking that every reported record and bad range lies inside
 *     the image and every decoded envelope is sane;
 *  2. the same image with every record checksum recomputed (so the fuzzer
 *     reaches the payload decoders instead of stopping at CRC mismatches),
 *     scanned, then recovered for real: written to a temporary data_dir as one
 *     segment, and again split in two segments at a record boundary, opened with
 *     spool_open(SPOOL_RDONLY), every message's body read back;
 *  3. the payload decoders called directly on the raw bytes; whatever decodes
 *     must re-encode to exactly the same bytes.
 * Any violated invariant aborts. Must be clean under ASan/UBSan.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "core/core.h"
#include "spool/spool.h"
#include "spool/spool_int.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_spool: check failed: %s (line %d)\n", #cond,         \
			        __LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct scan_check {
	uint64_t limit;
	uint64_t last_end; /* records and bad ranges come in order, never overlap */
};

static void check_env(const struct spool_env *env)
{
	CHECK(env->nrcpt >= 1 && env->nrcpt <= SPOOL_RCPT_MAX);
	CHECK(env->sender != NULL && env->id != 0);
	for (size_t i = 0; i < env->nrcpt; i++) {
		CHECK(env->rcpt[i].addr != NULL);
		CHECK((unsigned)env->rcpt[i].state < SPOOL_RCPT__COUNT);
	}
	spool_env_free(spool_env_dup(env));
}

static void on_rec(void *arg, struct spool_rec *r)
{
	struct scan_check *sc = arg;
	CHECK(r->off >= sc->last_end && r->len >= SPOOL_HDR_LEN);
	CHECK(r->off + r->len <= sc->limit);
	sc->last_end = r->off + r->len;
	if (r->type == SPOOL_REC_MSG) {
		check_env(r->u.msg.env);
		CHECK(r->u.msg.body_off + r->u.msg.env->body_size == r->off + r->len);
	}
}

static void on_bad(void *arg, uint64_t off, uint64_t len, const char *why)
{
	struct scan_check *sc = arg;
	CHECK(off >= sc->last_end && len > 0 && off + len <= sc->limit && why != NULL);
	sc->last_end = off + len;
}

static void scan_image(const uint8_t *p, size_t n, bool last)
{
	struct spool_src src = {.fd = -1, .mem = p, .size = n};
	struct scan_check sc = {.limit = n};
	struct spool_scan_ops ops = {on_rec, on_bad};
	struct spool_scan_result res;
	spool_scan(&src, n, last, &ops, &sc, &res);
	CHECK(res.end <= n && (res.torn || res.end == n) && (!res.torn || last));
	struct spool_rec first;
	if (spool_scan_first(&src, &first) == RC_OK)
		CHECK(first.off == 0 && first.len <= n);
	spool_rec_clear(&first);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the checksums of every record found by walking headers (resyncing on
 * the magic); *mid is a record boundary near the middle (0 if none). */
static void fix_checksums(uint8_t *p, size_t n, size_t *mid)
{
	static const uint8_t magic[4] = {'R', 'V', 'S', 'P'};
	size_t off = 0;
	*mid = 0;
	while (off + SPOOL_HDR_LEN <= n) {
		if (rd32(p + off) != SPOOL_REC_MAGIC) {
			const uint8_t *m = memmem(p + off + 1, n - off - 1, magic, 4);
			if (m == NULL)
				break;
			off = (size_t)(m - p);
			continue;
		}
		uint32_t len = rd32(p + off + 8);
		if (len > n - off - SPOOL_HDR_LEN)
			break;
		wr32(p + off + 12, spool_crc32c(0, p + off + SPOOL_HDR_LEN, len));
		wr32(p + off + 16, spool_crc32c(0, p + off, 16));
		off += SPOOL_HDR_LEN + len;
		if (*mid == 0 && off >= n / 2)
			*mid = off;
	}
}

static char *tmp_dir;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cleanup(void)
{
	if (tmp_dir)
		nftw(tmp_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void put_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK(file_write_all(fd, p, n) == RC_OK);
	close(fd);
}

static bool read_back(void *arg, const struct spool_env *env)
{
	struct spool *sp = arg;
	struct evbuffer *b = evbuffer_new();
	check_env(env);
	CHECK(spool_read_body(sp, env->id, b) == RC_OK);
	CHECK(evbuffer_get_length(b) == env->body_size);
	evbuffer_free(b);
	return true;
}

/* Recover p as segment 1 (or as segments 1 and 2, split at cut) of a spool. */
static void recover_image(const uint8_t *p, size_t n, size_t cut)
{
	char *seg1 = xasprintf("%s/spool/seg-0000000000000001.log", tmp_dir);
	char *seg2 = xasprintf("%s/spool/seg-0000000000000002.log", tmp_dir);
	put_file(seg1, p, cut ? cut : n);
	unlink(seg2);
	if (cut)
		put_file(seg2, p + cut, n - cut);
	struct spool *sp = NULL;
	CHECK(spool_open(tmp_dir, SPOOL_RDONLY, &sp) == RC_OK);
	spool_foreach(sp, read_back, sp);
	spool_close(sp);
	free(seg1);
	free(seg2);
}

/* Decode p as each kind of payload; what decodes must re-encode identically. */
static void decode_direct(const uint8_t *p, size_t n)
{
	struct spool_env *env = NULL;
	if (spool_env_decode(p, n, &env) == RC_OK) {
		check_env(env);
		struct spool_buf b = {0};
		spool_env_encode(&b, env);
		CHECK(b.len == n + 4 && rd32(b.p) == n && memcmp(b.p + 4, p, n) == 0);
		spool_buf_free(&b);
		spool_env_free(env);
	}
	for (unsigned t = SPOOL_REC_SEG; t < SPOOL_REC__END; t++) {
		struct spool_rec r = {.type = t};
		if (t == SPOOL_REC_MSG || spool_rec_decode_small(p, n, &r) != RC_OK)
			continue;
		struct spool_buf b = {0};
		spool_rec_encode_small(&b, &r);
		CHECK(b.len == n + SPOOL_HDR_LEN && memcmp(b.p + SPOOL_HDR_LEN, p, n) == 0);
		struct spool_hdr h;
		CHECK(spool_hdr_parse(b.p, &h) && h.type == t && h.len == n);
		spool_buf_free(&b);
		spool_rec_clear(&r);
	}
}

/* LLVMFuzzerTestOneInput - libFuzzer entry point (also driven by replay.c). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (tmp_dir == NULL) {
		char tmpl[] = "/tmp/relevo-fuzz-spool-XXXXXX";
		CHECK(mkdtemp(tmpl) != NULL);
		tmp_dir = xstrdup(tmpl);
		char *d = xasprintf("%s/spool", tmp_dir);
		CHECK(mkdir(d, 0700) == 0);
		free(d);
		atexit(cleanup);
		log_set_level(LOG_LV_ERR);
	}
	scan_image(data, size, true);
	scan_image(data, size, false);
	uint8_t *fixed = xmalloc(size);
	if (size > 0)
		memcpy(fixed, data, size);
	size_t mid;
	fix_checksums(fixed, size, &mid);
	scan_image(fixed, size, true);
	recover_image(fixed, size, 0);
	if (mid > 0 && mid < size)
		recover_image(fixed, size, mid);
	free(fixed);
	decode_direct(data, size);
	return 0;
}
