/*
 * spool_segment.c - the life of segment files: starting a new one (rotation),
 * deleting dead ones, and compacting the oldest one when it is mostly dead. Runs
 * on the writer thread only (rotation also from spool_open, before the thread).
 *
 * A new segment is created O_EXCL (0600), its first record (SEG) written and
 * fdatasync'd, and the directory fsync'd before anything is appended to it, so
 * an acknowledged record can never sit in a file whose directory entry is lost.
 *
 * Why only the oldest segment, and only when it holds no live MSG record: the
 * state records (RCPT, HOLD, DONE) of a message always come after its MSG record.
 * Deleting segments strictly oldest-first, each once no live message's newest
 * MSG record is in it, can therefore only drop state records of messages that
 * are dead or that have a newer full MSG record later in the log; replay then
 * ignores records for unknown ids and lets a later MSG replace an earlier state.
 * Each unlink is made durable (directory fsync) before the next one, so a crash
 * can never resurrect an older segment whose messages' endings were in a newer,
 * already deleted one.
 *
 * Compaction re-appends the live messages of the oldest segment as full MSG
 * records carrying their current state, as its own batch (nothing else is
 * written in between, so the snapshot is exactly the state the log describes),
 * then the segment has no live MSG and is deleted like any other.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMPACT_STEP     (8u << 20) /* bytes re-appended per step, at least one message */
#define COMPACT_RETRY_MS 60000

/* spool_seg_rotate - start segment next_seq: its SEG record names prev_end, the
 * valid length of the current one; file and directory synced before it is used.
 * The old segment stays as it is. */
enum rc spool_seg_rotate(struct spool *sp, uint64_t prev_end)
{
	uint64_t seq = sp->next_seq++;
	char *path = spool_seg_path(sp, seq);
	struct spool_rec r = {.type = SPOOL_REC_SEG};
	r.u.seg = (struct spool_rec_seg){seq, sp->cur_seq, prev_end};
	struct spool_buf b = {0};
	spool_rec_encode_small(&b, &r);
	enum rc rc = RC_IO;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0 && file_write_all(fd, b.p, b.len) == RC_OK && !fault_hit("fsync") &&
	    fdatasync(fd) == 0 && file_fsync_dir(sp->dir) == RC_OK)
		rc = RC_OK;
	if (rc != RC_OK) {
		log_err("event=spool_rotate_failed path=%s errno=%d", path, errno);
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
	} else {
		if (sp->fd >= 0)
			close(sp->fd);
		sp->fd = fd;
		sp->cur_seq = seq;
		sp->cur_size = b.len;
		sp->broken = false;
		pthread_mutex_lock(&sp->lock);
		spool_seg_add(sp, seq, b.len);
		pthread_mutex_unlock(&sp->lock);
		log_info("event=spool_segment_new seg=%016llx", (unsigned long long)seq);
	}
	spool_buf_free(&b);
	free(path);
	return rc;
}

/* Delete the oldest segment if it is not the current one and holds no live MSG. */
static bool delete_oldest_if_dead(struct spool *sp)
{
	pthread_mutex_lock(&sp->lock);
	bool dead = !sp->reclaim_off && sp->nsegs >= 2 && sp->segs[0].seq != sp->cur_seq &&
	            sp->segs[0].live_msgs == 0;
	uint64_t seq = dead ? sp->segs[0].seq : 0;
	pthread_mutex_unlock(&sp->lock);
	if (!dead)
		return false;
	char *path = spool_seg_path(sp, seq);
	if (unlink(path) != 0 && errno != ENOENT) {
		log_err("event=spool_unlink_failed path=%s errno=%d reclaim=stopped", path, errno);
		sp->reclaim_off = true;
		free(path);
		return false;
	}
	if (file_fsync_dir(sp->dir) != RC_OK) {
		log_err("event=spool_dir_fsync_failed dir=%s errno=%d reclaim=stopped", sp->dir,
		        errno);
		sp->reclaim_off = true;
	}
	pthread_mutex_lock(&sp->lock);
	spool_seg_drop_oldest(sp);
	pthread_mutex_unlock(&sp->lock);
	log_info("event=spool_segment_reclaimed path=%s", path);
	free(path);
	return !sp->reclaim_off;
}

/* One message being re-appended. */
struct compact_item {
	struct spool_env *env; /* snapshot of the current state */
	struct spool_buf head; /* header + env block */
	uint8_t *body;
	uint64_t body_len, rel; /* rel: offset within the step's append */
};

static void item_fini(struct compact_item *it)
{
	spool_env_free(it->env);
	spool_buf_free(&it->head);
	free(it->body);
}

/* Snapshot message id (still in segment seq) and read its body from src. */
static enum rc item_load(struct spool *sp, uint64_t seq, uint64_t id, const struct spool_src *src,
                         struct compact_item *it)
{
	uint64_t off;
	pthread_mutex_lock(&sp->lock);
	struct spool_msg *msg = spool_map_get(&sp->map, id);
	if (msg == NULL || msg->seg != seq) {
		pthread_mutex_unlock(&sp->lock);
		return RC_NOTFOUND;
	}
	it->env = spool_env_dup(msg->env);
	off = msg->body_off;
	pthread_mutex_unlock(&sp->lock);
	it->body_len = it->env->body_size;
	it->body = xmalloc((size_t)it->body_len);
	if (spool_src_read(src, off, it->body, (size_t)it->body_len) != RC_OK)
		return RC_IO;
	uint8_t zero[SPOOL_HDR_LEN] = {0};
	spool_buf_add(&it->head, zero, sizeof zero);
	spool_env_encode(&it->head, it->env);
	uint32_t plen = (uint32_t)(it->head.len - SPOOL_HDR_LEN + it->body_len);
	uint32_t crc = spool_crc32c(0, it->head.p + SPOOL_HDR_LEN, it->head.len - SPOOL_HDR_LEN);
	crc = spool_crc32c(crc, it->body, (size_t)it->body_len);
	spool_hdr_build(it->head.p, SPOOL_REC_MSG, plen, crc);
	return RC_OK;
}

/* Append the items as one durable batch and point the index at the new copies. */
static enum rc items_commit(struct spool *sp, struct compact_item *items, size_t n)
{
	struct iovec *iov = xcalloc(2 * n, sizeof *iov);
	uint64_t total = 0, base = 0;
	for (size_t i = 0; i < n; i++) {
		items[i].rel = total;
		iov[2 * i] = (struct iovec){items[i].head.p, items[i].head.len};
		iov[2 * i + 1] = (struct iovec){items[i].body, (size_t)items[i].body_len};
		total += items[i].head.len + items[i].body_len;
	}
	enum rc rc = spool_writer_append(sp, iov, 2 * n, total, &base);
	free(iov);
	if (rc != RC_OK)
		return rc;
	pthread_mutex_lock(&sp->lock);
	for (size_t i = 0; i < n; i++) {
		struct spool_rec r = {.type = SPOOL_REC_MSG};
		r.off = base + items[i].rel;
		r.len = items[i].head.len + items[i].body_len;
		r.u.msg.env = items[i].env;
		r.u.msg.body_off = r.off + items[i].head.len;
		items[i].env = NULL;
		spool_idx_apply(sp, sp->cur_seq, &r);
		spool_rec_clear(&r);
	}
	pthread_mutex_unlock(&sp->lock);
	return RC_OK;
}

/* Re-append up to COMPACT_STEP bytes of the live messages of segment seq. */
static enum rc compact_step(struct spool *sp, uint64_t seq, const uint64_t *ids, size_t nids)
{
	char *path = spool_seg_path(sp, seq);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return RC_IO;
	struct spool_src src = {.fd = fd, .size = UINT64_MAX};
	struct compact_item *items = xcalloc(nids, sizeof *items);
	size_t n = 0;
	uint64_t bytes = 0;
	enum rc rc = RC_OK;
	for (size_t i = 0; i < nids && bytes < COMPACT_STEP && rc == RC_OK; i++) {
		rc = item_load(sp, seq, ids[i], &src, &items[n]);
		if (rc == RC_NOTFOUND) {
			item_fini(&items[n]);
			memset(&items[n], 0, sizeof items[n]);
			rc = RC_OK;
			continue;
		}
		bytes += items[n].head.len + items[n].body_len;
		n++;
	}
	close(fd);
	if (rc == RC_OK && n > 0)
		rc = items_commit(sp, items, n);
	for (size_t i = 0; i < nids; i++)
		item_fini(&items[i]);
	free(items);
	return rc;
}

/* spool_reclaim_step - one unit of reclaiming: a deletion or a compaction step. */
bool spool_reclaim_step(struct spool *sp)
{
	if (delete_oldest_if_dead(sp))
		return true;
	if (sp->reclaim_off || time_mono_ms() < sp->compact_retry_at)
		return false;
	pthread_mutex_lock(&sp->lock);
	const struct spool_seg *s = sp->nsegs >= 2 ? &sp->segs[0] : NULL;
	/* A segment closed moments ago still holds the messages in flight: they
	 * will be delivered (and the segment deleted) sooner than copying them
	 * would take; compaction is for the long-deferred few. segs[1] started
	 * when segs[0] was closed. */
	bool due = s != NULL && s->seq != sp->cur_seq && s->live_msgs > 0 &&
		   s->live_bytes * 2 < s->size &&
		   time_mono_ms() - sp->segs[1].born >= atomic_load(&sp->compact_age_ms);
	uint64_t seq = due ? s->seq : 0;
	size_t nids = 0;
	uint64_t *ids = due ? spool_idx_ids_in_seg(sp, seq, &nids) : NULL;
	pthread_mutex_unlock(&sp->lock);
	if (!due)
		return false;
	enum rc rc = compact_step(sp, seq, ids, nids);
	free(ids);
	if (rc != RC_OK) {
		log_warn("event=spool_compact_failed seg=%016llx rc=%s retry_ms=%d",
		         (unsigned long long)seq, rc_name(rc), COMPACT_RETRY_MS);
		sp->compact_retry_at = time_mono_ms() + COMPACT_RETRY_MS;
		return false;
	}
	log_info("event=spool_compacted seg=%016llx", (unsigned long long)seq);
	return true;
}
