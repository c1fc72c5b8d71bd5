/*
 * spool_recover.c - opening a spool: directory layout, the lock, replaying the
 * segments into the index, quarantine of damaged records; and closing it.
 *
 * Layout: DIR = data_dir/spool (0700) holds seg-%016llx.log (0600), lock, and
 * quarantine/ (0700). Segments are replayed in sequence order. The first record
 * of each segment (SEG) names how many bytes of the previous segment are valid:
 * bytes past that point belong to a batch whose write or fdatasync failed (and
 * whose truncation failed too), were reported as failed, and must never come
 * back.
 *
 * Failure model: damage is never fatal and never silent. A torn tail of the last
 * segment is a batch nobody was told about: dropped with a warning (and truncated
 * in SPOOL_RDWR mode). Any other bad record is copied to quarantine/ (RDWR only:
 * SPOOL_RDONLY writes nothing), logged, counted and skipped. An unreadable spool
 * (permissions, I/O errors opening files) is an error: RC_IO.
 */
#include "spool/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* spool_seg_path - path of segment seq (caller frees). */
char *spool_seg_path(const struct spool *sp, uint64_t seq)
{
	return xasprintf("%s/seg-%016llx.log", sp->dir, (unsigned long long)seq);
}

/* spool_file_truncate - cut fd to len and make that durable (fault seams
 * "truncate" and "fsync"). */
enum rc spool_file_truncate(int fd, uint64_t len)
{
	if (fault_hit("truncate") || ftruncate(fd, (off_t)len) != 0)
		return RC_IO;
	if (fault_hit("fsync") || fdatasync(fd) != 0)
		return RC_IO;
	return RC_OK;
}

/* "seg-" 16 hex digits ".log", nothing else. */
static bool parse_seg_name(const char *name, uint64_t *seq)
{
	char hex[ID_STR_LEN + 1];
	if (strlen(name) != 4 + ID_STR_LEN + 4 || strncmp(name, "seg-", 4) != 0 ||
	    strcmp(name + 4 + ID_STR_LEN, ".log") != 0)
		return false;
	memcpy(hex, name + 4, ID_STR_LEN);
	hex[ID_STR_LEN] = '\0';
	return id_parse(hex, seq) && *seq != 0;
}

static int cmp_seq(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The segment sequence numbers in DIR, ascending. */
static enum rc list_segments(const char *dir, uint64_t **out, size_t *n)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? RC_NOTFOUND : RC_IO;
	size_t cap = 16;
	uint64_t *seqs = xcalloc(cap, sizeof *seqs);
	struct dirent *de;
	*n = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		if (!parse_seg_name(de->d_name, &seq))
			continue;
		if (*n == cap) {
			cap *= 2;
			seqs = xrealloc(seqs, cap * sizeof *seqs);
		}
		seqs[(*n)++] = seq;
	}
	closedir(d);
	qsort(seqs, *n, sizeof *seqs, cmp_seq);
	*out = seqs;
	return RC_OK;
}

/* Context of the segment being replayed. */
struct recover_ctx {
	struct spool *sp;
	uint64_t seq;
	int fd;
};

static void recover_on_rec(void *arg, struct spool_rec *r)
{
	struct recover_ctx *cx = arg;
	uint64_t id = spool_rec_id(r);
	if (id > cx->sp->max_id)
		cx->sp->max_id = id;
	if (r->type == SPOOL_REC_SEG && r->u.seg.seq != cx->seq)
		log_warn("event=spool_seg_mismatch seg=%016llx recorded=%016llx",
		         (unsigned long long)cx->seq, (unsigned long long)r->u.seg.seq);
	spool_idx_apply(cx->sp, cx->seq, r);
}

/* Copy [off, off+len) of the segment to quarantine/seg-SEQ-OFF.rec. */
static enum rc quarantine_copy(struct recover_ctx *cx, const char *path, uint64_t off, uint64_t len)
{
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return RC_IO;
	struct spool_src src = {.fd = cx->fd, .size = off + len};
	char buf[16384];
	enum rc rc = RC_OK;
	while (len > 0 && rc == RC_OK) {
		size_t n = (size_t)MIN(len, (uint64_t)sizeof buf);
		rc = spool_src_read(&src, off, buf, n);
		if (rc == RC_OK)
			rc = file_write_all(out, buf, n);
		off += n;
		len -= n;
	}
	if (rc == RC_OK && fdatasync(out) != 0)
		rc = RC_IO;
	close(out);
	return rc;
}

static void recover_on_bad(void *arg, uint64_t off, uint64_t len, const char *why)
{
	struct recover_ctx *cx = arg;
	struct spool *sp = cx->sp;
	sp->quarantined++;
	if (sp->mode != SPOOL_RDWR) {
		log_warn("event=spool_bad_record seg=%016llx off=%llu len=%llu reason=\"%s\" "
		         "quarantine=no (read-only)",
		         (unsigned long long)cx->seq, (unsigned long long)off,
		         (unsigned long long)len, why);
		return;
	}
	char *path = xasprintf("%s/quarantine/seg-%016llx-%llu.rec", sp->dir,
	                       (unsigned long long)cx->seq, (unsigned long long)off);
	enum rc rc = quarantine_copy(cx, path, off, len);
	log_warn("event=spool_bad_record seg=%016llx off=%llu len=%llu reason=\"%s\" "
	         "quarantine=%s%s",
	         (unsigned long long)cx->seq, (unsigned long long)off, (unsigned long long)len, why,
	         path, rc == RC_OK ? "" : " (copy failed)");
	free(path);
}

/*
 * The tail [end, size) of the last segment was never acknowledged: drop it. It
 * is indistinguishable from damage to the very last record, so in RDWR mode its
 * bytes are kept as quarantine/seg-SEQ-OFF.torn before the segment is cut.
 */
static void torn_tail(struct recover_ctx *cx, uint64_t end, uint64_t size)
{
	struct spool *sp = cx->sp;
	const char *action = "ignored";
	char *path = NULL;
	if (sp->mode == SPOOL_RDWR) {
		path = xasprintf("%s/quarantine/seg-%016llx-%llu.torn", sp->dir,
		                 (unsigned long long)cx->seq, (unsigned long long)end);
		if (quarantine_copy(cx, path, end, size - end) != RC_OK)
			action = "kept (copy failed)";
		else if (spool_file_truncate(cx->fd, end) != RC_OK)
			action = "truncate_failed";
		else
			action = "truncated";
	}
	log_warn("event=spool_torn_tail seg=%016llx off=%llu len=%llu action=%s copy=%s",
	         (unsigned long long)cx->seq, (unsigned long long)end,
	         (unsigned long long)(size - end), action, path ? path : "-");
	free(path);
}

/* Valid length of each segment as recorded by the next one's SEG record. */
static void read_limits(struct spool *sp, const uint64_t *seqs, size_t n, uint64_t *limits)
{
	for (size_t i = 0; i < n; i++)
		limits[i] = UINT64_MAX;
	for (size_t i = 1; i < n; i++) {
		char *path = spool_seg_path(sp, seqs[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		free(path);
		struct stat st;
		if (fd < 0)
			continue;
		struct spool_src src = {.fd = fd};
		struct spool_rec r;
		if (fstat(fd, &st) == 0) {
			src.size = (uint64_t)st.st_size;
			if (spool_scan_first(&src, &r) == RC_OK && r.type == SPOOL_REC_SEG &&
			    r.u.seg.prev_seq == seqs[i - 1])
				limits[i - 1] = r.u.seg.prev_end;
			spool_rec_clear(&r);
		}
		close(fd);
	}
}

/* Effective scan limit for a segment of size bytes whose recorded end is limit. */
static uint64_t seg_limit(uint64_t seq, uint64_t size, uint64_t limit)
{
	if (limit == UINT64_MAX)
		return size;
	if (limit > size)
		log_warn("event=spool_seg_short seg=%016llx size=%llu recorded=%llu",
		         (unsigned long long)seq, (unsigned long long)size,
		         (unsigned long long)limit);
	else if (limit < size)
		log_info("event=spool_failed_batch_ignored seg=%016llx off=%llu len=%llu",
		         (unsigned long long)seq, (unsigned long long)limit,
		         (unsigned long long)(size - limit));
	return MIN(size, limit);
}

/* Replay one segment into the index; *end is where its valid data ends. */
static enum rc recover_segment(struct spool *sp, uint64_t seq, uint64_t limit, bool last,
                               uint64_t *end)
{
	char *path = spool_seg_path(sp, seq);
	int fd = open(path, (sp->mode == SPOOL_RDWR ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		bool gone = fd < 0 && errno == ENOENT && sp->mode == SPOOL_RDONLY;
		if (!gone)
			log_err("event=spool_seg_open_failed path=%s errno=%d", path, errno);
		if (fd >= 0)
			close(fd);
		free(path);
		*end = 0;
		return gone ? RC_NOTFOUND : RC_IO; /* gone: reclaimed by a running daemon */
	}
	uint64_t eff = seg_limit(seq, (uint64_t)st.st_size, limit);
	struct spool_src src = {.fd = fd, .size = (uint64_t)st.st_size};
	struct recover_ctx cx = {sp, seq, fd};
	struct spool_scan_ops ops = {recover_on_rec, recover_on_bad};
	struct spool_scan_result res;
	spool_seg_add(sp, seq, eff);
	spool_scan(&src, eff, last, &ops, &cx, &res);
	spool_seg_find(sp, seq)->size = res.end;
	*end = res.end;
	if (res.torn)
		torn_tail(&cx, res.end, eff);
	close(fd);
	free(path);
	return RC_OK;
}

/* Replay every segment; last_seq and last_end describe the newest one (0 if none). */
static enum rc recover_all(struct spool *sp, uint64_t *last_seq, uint64_t *last_end)
{
	uint64_t *seqs = NULL;
	size_t n = 0;
	enum rc rc = list_segments(sp->dir, &seqs, &n);
	*last_seq = *last_end = 0;
	if (rc != RC_OK)
		return rc;
	uint64_t *limits = xcalloc(n, sizeof *limits);
	read_limits(sp, seqs, n, limits);
	pthread_mutex_lock(&sp->lock);
	for (size_t i = 0; i < n && (rc == RC_OK || rc == RC_NOTFOUND); i++) {
		uint64_t end = 0;
		rc = recover_segment(sp, seqs[i], limits[i], i + 1 == n, &end);
		if (rc == RC_OK) {
			*last_seq = seqs[i];
			*last_end = end;
		}
	}
	if (rc == RC_NOTFOUND)
		rc = RC_OK;
	log_info("event=spool_recovered dir=%s segments=%zu messages=%zu quarantined=%zu", sp->dir,
	         sp->nsegs, sp->map.n, sp->quarantined);
	pthread_mutex_unlock(&sp->lock);
	sp->next_seq = n > 0 ? seqs[n - 1] + 1 : 1;
	free(limits);
	free(seqs);
	return rc;
}

/* Create DIR and DIR/quarantine (0700), make them durable, take the lock. */
static enum rc prepare_rdwr(struct spool *sp, const char *data_dir)
{
	char *q = xasprintf("%s/quarantine", sp->dir);
	enum rc rc = file_mkdir_p(q, 0700);
	free(q);
	if (rc != RC_OK) {
		log_err("event=spool_mkdir_failed dir=%s errno=%d", sp->dir, errno);
		return rc;
	}
	if (file_fsync_dir(data_dir) != RC_OK || file_fsync_dir(sp->dir) != RC_OK)
		return RC_IO;
	char *lock = xasprintf("%s/lock", sp->dir);
	sp->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock);
	if (sp->lock_fd < 0)
		return RC_IO;
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0)
		return errno == EWOULDBLOCK ? RC_EXISTS : RC_IO;
	return RC_OK;
}

static void spool_free(struct spool *sp)
{
	spool_map_fini(&sp->map);
	spool_final_fini(sp);
	free(sp->segs);
	if (sp->lock_fd >= 0)
		close(sp->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&sp->lock);
	pthread_mutex_destroy(&sp->qlock);
	pthread_cond_destroy(&sp->qcond);
	free(sp->dir);
	free(sp);
}

/* spool_open - open data_dir/spool, replay it, and in RDWR mode start the writer. */
enum rc spool_open(const char *data_dir, enum spool_mode mode, struct spool **out)
{
	struct spool *sp = xcalloc(1, sizeof *sp);
	sp->dir = xasprintf("%s/spool", data_dir);
	sp->mode = mode;
	sp->lock_fd = sp->fd = -1;
	sp->seg_max = SPOOL_SEG_MAX_DEFAULT;
	sp->compact_age_ms = SPOOL_COMPACT_AGE_DEFAULT_MS;
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->qlock, NULL);
	pthread_cond_init(&sp->qcond, NULL);
	enum rc rc = mode == SPOOL_RDWR ? prepare_rdwr(sp, data_dir) : RC_OK;
	uint64_t last_seq = 0, last_end = 0;
	if (rc == RC_OK)
		rc = recover_all(sp, &last_seq, &last_end);
	if (rc == RC_NOTFOUND && mode == SPOOL_RDONLY)
		rc = RC_OK; /* no spool yet: an empty queue */
	if (rc == RC_OK)
		id_bump(sp->max_id);
	if (rc == RC_OK && mode == SPOOL_RDWR) {
		sp->keep_final = true;	/* from now on a finish is news (spool_get_final) */
		rc = spool_writer_start(sp, last_seq, last_end);
	}
	if (rc != RC_OK) {
		if (rc != RC_EXISTS)
			log_err("event=spool_open_failed dir=%s rc=%s", sp->dir, rc_name(rc));
		spool_free(sp);
		return rc;
	}
	*out = sp;
	return RC_OK;
}

/* spool_close - drain and stop the writer, release the lock, free everything. */
void spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	spool_writer_stop(sp);
	spool_free(sp);
}

/* spool_set_segment_max - rotate segments beyond this many bytes (tests use small). */
void spool_set_segment_max(struct spool *sp, uint64_t bytes)
{
	sp->seg_max = bytes > 0 ? bytes : SPOOL_SEG_MAX_DEFAULT;
}

/* spool_set_compact_age - compact only segments closed at least ms ago. */
void spool_set_compact_age(struct spool *sp, int64_t ms)
{
	sp->compact_age_ms = ms;
}
