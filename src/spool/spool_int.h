/*
 * spool_int.h - module-internal declarations shared by the spool's .c files, its
 * unit test (tests/unit/test_spool.c) and its fuzz target (tests/fuzz/fuzz_spool.c).
 * Other modules use spool.h only.
 *
 * Record format (all integers little-endian; version 1):
 *
 *   header, 20 bytes:
 *     0  u32 magic    SPOOL_REC_MAGIC ("RVSP" on disk)
 *     4  u8  version  SPOOL_REC_VERSION
 *     5  u8  type     enum spool_rec_type
 *     6  u16 reserved 0
 *     8  u32 length   of the payload that follows
 *    12  u32 crc32c   of the payload
 *    16  u32 crc32c   of header bytes 0..15
 *   payload, by type:
 *     SEG  u64 seq, u64 prev_seq, u64 prev_end   (first record of every segment;
 *          prev_end: bytes of segment prev_seq that are valid, UINT64_MAX = all)
 *     MSG  u32 env_len, env block (env_len bytes), body (the rest of the payload)
 *          env block: u64 id, i64 created, u32 flags, str sender, str user,
 *          str client, str helo, str envid, u32 nrcpt, nrcpt x { str addr,
 *          str orcpt, u8 notify, u8 state, u32 attempts, i64 next_attempt,
 *          str last_reply }
 *     RCPT u64 id, u32 idx, u8 state, u32 attempts, i64 next_attempt, str last_reply
 *     HOLD u64 id, u8 held (0 or 1)
 *     DONE u64 id, u8 reason (enum spool_done_reason)
 *   str: u32 length (SPOOL_STR_NULL for NULL) then that many bytes, no NUL among them.
 *
 * Every length is checked against what remains before anything is read or
 * allocated; a decoder consumes its payload exactly or fails.
 */
#ifndef RELEVO_SPOOL_INT_H
#define RELEVO_SPOOL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "spool/spool.h"

#define SPOOL_REC_MAGIC 0x50535652u	/* "RVSP" little-endian */
#define SPOOL_REC_VERSION 1
#define SPOOL_HDR_LEN 20
#define SPOOL_STR_NULL 0xffffffffu
#define SPOOL_STR_MAX 65535u			/* any one string */
#define SPOOL_REPLY_MAX 1024u			/* a stored last_reply (longer: cut) */
#define SPOOL_RCPT_MAX 100000u			/* recipients of one message */
#define SPOOL_ENV_MAX (64u << 20)		/* encoded envelope block */
#define SPOOL_SMALL_MAX (1u << 20)		/* payload of a non-MSG record */
#define SPOOL_PAYLOAD_MAX (1u << 30)		/* any payload */
#define SPOOL_SEG_MAX_DEFAULT (64ull << 20)	/* rotate beyond this */
#define SPOOL_COMPACT_AGE_DEFAULT_MS 30000	/* spool_set_compact_age */
#define SPOOL_FINAL_KEEP 64			/* finished envelopes kept (spool_get_final) */
#define SPOOL_FINAL_KEEP_MS 10000		/* ... and for at most this long */

enum spool_rec_type {
	SPOOL_REC_SEG = 1,
	SPOOL_REC_MSG,
	SPOOL_REC_RCPT,
	SPOOL_REC_HOLD,
	SPOOL_REC_DONE,
	SPOOL_REC__END
};
const char *spool_rec_type_name(unsigned type);

enum spool_done_reason {
	SPOOL_DONE_FINISHED = 0,	/* every recipient final (implied by RCPT too) */
	SPOOL_DONE_DELETED = 1		/* operator delete */
};

/* ---- spool_record.c: checksums, byte order, encode and decode (pure) ---- */

uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len);
/* spool_crc32c_sw - the portable path, exposed so tests can compare both. */
uint32_t spool_crc32c_sw(uint32_t crc, const void *buf, size_t len);

struct spool_hdr {
	uint32_t magic;
	uint8_t version, type;
	uint16_t reserved;
	uint32_t len, pcrc, hcrc;
};

/* spool_hdr_parse - split 20 bytes into fields; true when magic and header crc hold. */
bool spool_hdr_parse(const uint8_t b[SPOOL_HDR_LEN], struct spool_hdr *h);
/* spool_hdr_build - fill 20 bytes for a payload of len bytes with checksum pcrc. */
void spool_hdr_build(uint8_t b[SPOOL_HDR_LEN], unsigned type, uint32_t len, uint32_t pcrc);

/* A growable byte buffer for encoding (bounded by the callers' limits). */
struct spool_buf {
	uint8_t *p;
	size_t len, cap;
};
void spool_buf_add(struct spool_buf *b, const void *p, size_t n);
void spool_buf_free(struct spool_buf *b);

struct spool_rec_seg {
	uint64_t seq, prev_seq, prev_end;
};
struct spool_rec_rcpt {
	uint64_t id;
	uint32_t idx;
	enum spool_rcpt_state state;
	uint32_t attempts;
	int64_t next_attempt;
	char *last_reply;		/* owned by the record */
};

/* One decoded record as the scanner hands it over. */
struct spool_rec {
	unsigned type;
	uint64_t off, len;		/* where in the segment, header included */
	union {
		struct spool_rec_seg seg;
		struct {
			struct spool_env *env;	/* owned by the record; steal it */
			uint64_t body_off;	/* segment offset of the body bytes */
		} msg;
		struct spool_rec_rcpt rcpt;
		struct {
			uint64_t id;
			bool held;
		} hold;
		struct {
			uint64_t id;
			uint8_t reason;
		} done;
	} u;
};
/* spool_rec_clear - free what a record still owns. */
void spool_rec_clear(struct spool_rec *r);
/* spool_rec_id - the message id a record is about (0 for SEG). */
uint64_t spool_rec_id(const struct spool_rec *r);

/* spool_env_check - RC_OK if env can be encoded (sizes, required fields). */
enum rc spool_env_check(const struct spool_env *env);
/* spool_env_encode - append the MSG env block (with its u32 length) to b. */
void spool_env_encode(struct spool_buf *b, const struct spool_env *env);
/* spool_env_decode - decode an env block of exactly n bytes; body_size is set by
 * the caller. RC_INVALID on any inconsistency. */
enum rc spool_env_decode(const uint8_t *p, size_t n, struct spool_env **out);

/* spool_rec_encode_small - a whole SEG/RCPT/HOLD/DONE record (header + payload). */
void spool_rec_encode_small(struct spool_buf *b, const struct spool_rec *r);
/* spool_rec_decode_small - decode the payload of a SEG/RCPT/HOLD/DONE record into r
 * (r->type set by the caller). */
enum rc spool_rec_decode_small(const uint8_t *p, size_t n, struct spool_rec *r);

/* ---- spool_scan.c: walking a segment image (no writes) ---- */

/* Where segment bytes come from: a file (pread) or memory. */
struct spool_src {
	int fd;			/* used when mem == NULL */
	const uint8_t *mem;
	uint64_t size;		/* bytes that may be read */
};
/* spool_src_read - exactly len bytes at off, or RC_IO. */
enum rc spool_src_read(const struct spool_src *s, uint64_t off, void *buf, size_t len);

struct spool_scan_ops {
	/* on_rec - a good record; it may steal owned pointers (set them NULL). */
	void (*on_rec)(void *arg, struct spool_rec *r);
	/* on_bad - bytes [off, off+len) are not a usable record: quarantine them. */
	void (*on_bad)(void *arg, uint64_t off, uint64_t len, const char *why);
};

struct spool_scan_result {
	uint64_t end;		/* where the usable data ends (start of a torn tail) */
	bool torn;		/* a torn tail [end, limit) was found (last segment only) */
	size_t records, bad;
};

/*
 * spool_scan - walk [0, limit) of src calling ops for each record. last says
 * whether this is the newest segment, where an incomplete or failing record with
 * nothing valid after it is a torn (never acknowledged) tail rather than damage.
 */
void spool_scan(const struct spool_src *src, uint64_t limit, bool last,
		const struct spool_scan_ops *ops, void *arg, struct spool_scan_result *res);

/* spool_scan_first - decode only the first record (the SEG header); RC_OK if good. */
enum rc spool_scan_first(const struct spool_src *src, struct spool_rec *r);

/* ---- the spool object (spool_index.c, spool_recover.c, spool_writer.c) ---- */

/* One live message in the index. Owned by the index. */
struct spool_msg {
	struct spool_env *env;	/* current state */
	uint32_t nqueued;	/* recipients QUEUED: kept by apply, so that finishing
				 * one recipient costs O(1), not a walk of them all */
	uint32_t nfailed;	/* recipients FAILED (bounce due) */
	uint64_t seg;		/* segment holding its newest full MSG record */
	uint64_t rec_len;	/* that record's length */
	uint64_t body_off;	/* body offset in that segment (length env->body_size) */
};

/* Open-addressing map id -> spool_msg (linear probing, backward-shift delete). */
struct spool_map {
	struct spool_msg **slots;
	size_t cap, n;		/* cap is a power of two (or 0) */
};

struct spool_seg {
	uint64_t seq;
	uint64_t size;		/* valid bytes */
	size_t live_msgs;	/* live messages whose newest MSG record is here */
	uint64_t live_bytes;	/* their MSG records' bytes */
	int64_t born;		/* monotonic ms it was started (or recovered) */
};

struct spool_op;

struct spool {
	char *dir;			/* data_dir/spool */
	enum spool_mode mode;
	int lock_fd;			/* RDWR: holds the flock */

	pthread_mutex_t lock;		/* index, segs, quarantined */
	struct spool_map map;
	struct spool_seg *segs;		/* ascending seq */
	size_t nsegs, capsegs;
	size_t quarantined;
	uint64_t max_id;		/* largest id seen by recovery */
	_Atomic uint64_t seg_max;
	_Atomic int64_t compact_age_ms; /* segments closed less long ago are not compacted */

	/* Writer (RDWR only); fd/seq/size below belong to the writer thread. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct spool_op *qhead, *qtail;
	bool stopping, writer_started, reclaim_due;
	pthread_t writer;
	int fd;				/* current segment, O_RDWR */
	uint64_t cur_seq, cur_size, next_seq;
	bool broken;			/* the tail of cur is unknown: rotate first */
	bool reclaim_off;		/* an unlink could not be made durable: stop */
	int64_t compact_retry_at;	/* monotonic ms; after a failed compaction */
	void (*observer)(void *ctx, uint64_t id);	/* set before traffic starts */
	void *observer_ctx;
	void (*accept_hook)(void *ctx, const struct spool_env *env);
	void *accept_hook_ctx;
	bool keep_final;		/* keep finished envelopes (set once recovered) */
	struct spool_final *final;	/* ring of SPOOL_FINAL_KEEP recently finished
					 * envelopes (spool_get_final); under lock */
	size_t final_next;
};

/* A message that finished: its last envelope, for a short while. Owned by the ring. */
struct spool_final {
	struct spool_env *env;
	int64_t finished;	/* monotonic ms */
};

/* spool_index.c; every function below needs sp->lock held by the caller. */
struct spool_msg *spool_map_get(const struct spool_map *m, uint64_t id);
void spool_map_put(struct spool_map *m, struct spool_msg *msg);
struct spool_msg *spool_map_del(struct spool_map *m, uint64_t id);
void spool_map_fini(struct spool_map *m);
struct spool_seg *spool_seg_find(struct spool *sp, uint64_t seq);
struct spool_seg *spool_seg_add(struct spool *sp, uint64_t seq, uint64_t size);
void spool_seg_drop_oldest(struct spool *sp);
/* spool_idx_apply - apply one durable record to the index (takes env of a MSG). */
void spool_idx_apply(struct spool *sp, uint64_t seq, struct spool_rec *r);
/* spool_env_is_finished - every recipient delivered or bounced. */
bool spool_env_is_finished(const struct spool_env *env);
/* spool_final_fini - free the ring of finished envelopes. */
void spool_final_fini(struct spool *sp);
/* spool_idx_ids_in_seg - ids of live messages whose MSG is in seq (caller frees). */
uint64_t *spool_idx_ids_in_seg(struct spool *sp, uint64_t seq, size_t *n);

/* spool_recover.c */
/* spool_seg_path - "DIR/seg-%016llx.log" (caller frees). */
char *spool_seg_path(const struct spool *sp, uint64_t seq);
/* spool_file_truncate - ftruncate + fdatasync (fault seams "truncate", "fsync"). */
enum rc spool_file_truncate(int fd, uint64_t len);

/* spool_writer.c */
/* spool_writer_start - open a fresh segment after the recovered ones and start the
 * thread; prev_seq/prev_end describe the newest recovered segment (0: none). */
enum rc spool_writer_start(struct spool *sp, uint64_t prev_seq, uint64_t prev_end);
void spool_writer_stop(struct spool *sp);
/* spool_writer_append - (writer thread) append iov durably to the current segment. */
enum rc spool_writer_append(struct spool *sp, struct iovec *iov, size_t niov, uint64_t total,
			    uint64_t *off);

/* spool_segment.c (writer thread) */
enum rc spool_seg_rotate(struct spool *sp, uint64_t prev_end);
/* spool_reclaim_step - delete the oldest segment if dead, else compact one step of
 * it if mostly dead; true if it did something (call again). */
bool spool_reclaim_step(struct spool *sp);

#endif
