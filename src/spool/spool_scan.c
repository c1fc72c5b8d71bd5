/*
 * spool_scan.c - walk one segment image record by record: verify checksums,
 * decode payloads, classify damage.
 *
 * The scanner reads through a struct spool_src (pread on a file, or a memory
 * image for the fuzzer) and never writes. It keeps at most one envelope block in
 * memory: bodies are checksummed in chunks and reported by offset only.
 *
 * Classification (spool.h "Recovery"):
 * - a good record goes to ops->on_rec;
 * - a record with a good header but a bad payload checksum or an undecodable
 *   payload is reported to ops->on_bad and skipped by its length;
 * - a bad header is reported together with everything up to the next position
 *   holding a valid header (resync by magic + header checksum);
 * - in the last segment only, a record cut short by the end of the data, or a
 *   failing record with nothing valid after it, is a torn tail: an append that was
 *   never acknowledged. Scanning stops there and res->torn is set.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_CHUNK (64u * 1024)

/* spool_src_read - read exactly len bytes at off from a file or memory image. */
enum rc spool_src_read(const struct spool_src *s, uint64_t off, void *buf, size_t len)
{
	if (off > s->size || len > s->size - off)
		return RC_IO;
	if (s->mem != NULL) {
		if (len > 0)
			memcpy(buf, s->mem + off, len);
		return RC_OK;
	}
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(s->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return RC_IO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return RC_OK;
}

/* CRC of [off, off+len) of src, continuing from *crc, in chunks. */
static enum rc crc_range(const struct spool_src *src, uint64_t off, uint64_t len, uint32_t *crc)
{
	uint8_t *buf = xmalloc(SCAN_CHUNK);
	enum rc rc = RC_OK;
	while (len > 0 && rc == RC_OK) {
		size_t n = (size_t)MIN(len, (uint64_t)SCAN_CHUNK);
		rc = spool_src_read(src, off, buf, n);
		if (rc == RC_OK)
			*crc = spool_crc32c(*crc, buf, n);
		off += n;
		len -= n;
	}
	free(buf);
	return rc;
}

enum rd {
	RD_OK,
	RD_SHORT,      /* runs past the end of the data */
	RD_BADHDR,     /* no valid header here */
	RD_BADCRC,     /* header fine, payload checksum wrong */
	RD_UNDECODABLE /* header and checksum fine, payload makes no sense */
};

/* A MSG payload: checksum it all, keep and decode only the envelope block. */
static enum rd read_msg(const struct spool_src *src, uint64_t po, const struct spool_hdr *h,
                        struct spool_rec *r, const char **why)
{
	uint8_t lenb[4] = {0};
	uint32_t env_len = 0, have = 0;
	if (h->len >= 4 && spool_src_read(src, po, lenb, 4) == RC_OK) {
		env_len = (uint32_t)lenb[0] | (uint32_t)lenb[1] << 8 | (uint32_t)lenb[2] << 16 |
		          (uint32_t)lenb[3] << 24;
		if (env_len <= h->len - 4 && env_len <= SPOOL_ENV_MAX)
			have = env_len;
	}
	uint32_t head = h->len >= 4 ? 4 + have : 0;
	uint8_t *buf = xmalloc(head);
	uint32_t crc = 0;
	bool readable = spool_src_read(src, po, buf, head) == RC_OK;
	if (readable) {
		crc = spool_crc32c(0, buf, head);
		readable = crc_range(src, po + head, h->len - head, &crc) == RC_OK;
	}
	if (!readable) {
		free(buf);
		*why = "read error";
		return RD_BADCRC;
	}
	enum rd d = RD_OK;
	if (crc != h->pcrc) {
		*why = "payload checksum mismatch";
		d = RD_BADCRC;
	} else if (h->len < 4 || have != env_len ||
	           spool_env_decode(buf + 4, env_len, &r->u.msg.env) != RC_OK) {
		*why = "undecodable envelope";
		d = RD_UNDECODABLE;
	} else {
		r->u.msg.env->body_size = h->len - 4 - env_len;
		r->u.msg.body_off = po + 4 + env_len;
	}
	free(buf);
	return d;
}

/* A small payload (SEG/RCPT/HOLD/DONE): read it whole, check, decode. */
static enum rd read_small(const struct spool_src *src, uint64_t po, const struct spool_hdr *h,
                          struct spool_rec *r, const char **why)
{
	uint32_t crc = 0;
	if (h->len > SPOOL_SMALL_MAX) {
		if (crc_range(src, po, h->len, &crc) != RC_OK || crc != h->pcrc) {
			*why = "payload checksum mismatch";
			return RD_BADCRC;
		}
		*why = "oversized state record";
		return RD_UNDECODABLE;
	}
	uint8_t *buf = xmalloc(h->len);
	enum rd d = RD_OK;
	if (spool_src_read(src, po, buf, h->len) != RC_OK) {
		*why = "read error";
		d = RD_BADCRC;
	} else if (spool_crc32c(0, buf, h->len) != h->pcrc) {
		*why = "payload checksum mismatch";
		d = RD_BADCRC;
	} else if (spool_rec_decode_small(buf, h->len, r) != RC_OK) {
		*why = "undecodable payload";
		d = RD_UNDECODABLE;
	}
	free(buf);
	return d;
}

/* Read and classify the record at off; *reclen is its length when the header is good. */
static enum rd read_record(const struct spool_src *src, uint64_t off, uint64_t limit,
                           struct spool_rec *r, uint64_t *reclen, const char **why)
{
	uint8_t hb[SPOOL_HDR_LEN];
	struct spool_hdr h;
	*why = "truncated record";
	if (limit - off < SPOOL_HDR_LEN || spool_src_read(src, off, hb, sizeof hb) != RC_OK)
		return RD_SHORT;
	if (!spool_hdr_parse(hb, &h)) {
		*why = "bad record header";
		return RD_BADHDR;
	}
	*reclen = SPOOL_HDR_LEN + (uint64_t)h.len;
	if (h.len > limit - off - SPOOL_HDR_LEN)
		return RD_SHORT;
	uint64_t po = off + SPOOL_HDR_LEN;
	memset(r, 0, sizeof *r);
	bool known = h.version == SPOOL_REC_VERSION && h.reserved == 0 && h.type > 0 &&
	             h.type < SPOOL_REC__END && h.len <= SPOOL_PAYLOAD_MAX;
	if (!known) {
		uint32_t crc = 0;
		if (crc_range(src, po, h.len, &crc) != RC_OK || crc != h.pcrc) {
			*why = "payload checksum mismatch";
			return RD_BADCRC;
		}
		*why = "unknown record version or type";
		return RD_UNDECODABLE;
	}
	r->type = h.type;
	enum rd d = h.type == SPOOL_REC_MSG ? read_msg(src, po, &h, r, why)
	                                    : read_small(src, po, &h, r, why);
	if (d != RD_OK)
		spool_rec_clear(r);
	return d;
}

/* The first position in [from, limit) holding a valid header, or limit. */
static uint64_t find_next(const struct spool_src *src, uint64_t from, uint64_t limit)
{
	static const uint8_t magic[4] = {SPOOL_REC_MAGIC & 0xff, (SPOOL_REC_MAGIC >> 8) & 0xff,
	                                 (SPOOL_REC_MAGIC >> 16) & 0xff, SPOOL_REC_MAGIC >> 24};
	uint8_t *buf = xmalloc(SCAN_CHUNK);
	uint64_t pos = from, found = limit;
	while (pos <= limit && limit - pos >= SPOOL_HDR_LEN && found == limit) {
		size_t n = (size_t)MIN((uint64_t)SCAN_CHUNK, limit - pos);
		if (spool_src_read(src, pos, buf, n) != RC_OK)
			break;
		/* Candidate starts are [0, n - HDR]; memmem over that span + 3 bytes. */
		size_t i = 0;
		while (i + SPOOL_HDR_LEN <= n) {
			const uint8_t *m = memmem(buf + i, n - SPOOL_HDR_LEN + 4 - i, magic, 4);
			if (m == NULL)
				break;
			size_t at = (size_t)(m - buf);
			struct spool_hdr h;
			if (spool_hdr_parse(buf + at, &h)) {
				found = pos + at;
				break;
			}
			i = at + 1;
		}
		if (n < SCAN_CHUNK)
			break;
		pos += n - SPOOL_HDR_LEN + 1;
	}
	free(buf);
	return found;
}

static void scan_bad(const struct spool_scan_ops *ops, void *arg, struct spool_scan_result *res,
                     uint64_t off, uint64_t len, const char *why)
{
	res->bad++;
	if (ops->on_bad)
		ops->on_bad(arg, off, len, why);
}

/* spool_scan - walk a segment; see the file comment for how damage is classified. */
void spool_scan(const struct spool_src *src, uint64_t limit, bool last,
                const struct spool_scan_ops *ops, void *arg, struct spool_scan_result *res)
{
	uint64_t off = 0;
	memset(res, 0, sizeof *res);
	limit = MIN(limit, src->size);
	while (off < limit) {
		struct spool_rec r;
		uint64_t reclen = 0;
		const char *why = NULL;
		memset(&r, 0, sizeof r);
		enum rd d = read_record(src, off, limit, &r, &reclen, &why);
		if (d == RD_OK) {
			r.off = off;
			r.len = reclen;
			res->records++;
			if (ops->on_rec)
				ops->on_rec(arg, &r);
			spool_rec_clear(&r);
			off += reclen;
			continue;
		}
		if (d == RD_BADCRC || d == RD_UNDECODABLE) {
			if (d == RD_BADCRC && last && off + reclen == limit) {
				res->torn = true;
				break;
			}
			scan_bad(ops, arg, res, off, reclen, why);
			off += reclen;
			continue;
		}
		/* RD_SHORT or RD_BADHDR: a torn tail when last and nothing valid follows. */
		uint64_t next = d == RD_SHORT && last ? limit : find_next(src, off + 1, limit);
		if (last && next == limit) {
			res->torn = true;
			break;
		}
		scan_bad(ops, arg, res, off, next - off, why);
		off = next;
	}
	res->end = res->torn ? off : limit;
}

/* spool_scan_first - decode the segment's first record alone. */
enum rc spool_scan_first(const struct spool_src *src, struct spool_rec *r)
{
	uint64_t reclen = 0;
	const char *why;
	memset(r, 0, sizeof *r);
	if (read_record(src, 0, src->size, r, &reclen, &why) != RD_OK)
		return RC_INVALID;
	r->off = 0;
	r->len = reclen;
	return RC_OK;
}
