/*
 * spool_writer.c - group commit: the writer thread and the write side of the
 * public API (commit, recipient update, delete, hold).
 *
 * Callers encode their record on their own thread (checksums included) and queue
 * a struct spool_op. The writer thread takes every queued op at once, appends
 * them with pwritev at the end of the current segment, calls fdatasync once,
 * applies them to the index, and only then completes each caller: an event
 * activated on the caller's event_base (async ops, spool_delete_async and
 * spool_hold_async among them: the control socket's way, so that the main loop
 * never waits for a disk) or a condition variable (spool_delete and
 * spool_hold, which wait: the offline CLI). Nothing is reported OK before its
 * fdatasync returned.
 *
 * Failure model: if the write or the fdatasync fails, every op of the batch
 * completes with RC_IO and the segment is cut back to its length before the
 * batch (ftruncate + fdatasync). If that fails too, the writer rotates to a new
 * segment whose SEG record names the valid length of the old one, so recovery
 * ignores the failed bytes; if even that fails the writer stays "broken" and
 * fails every batch until a rotation succeeds. A failed batch is never applied,
 * so nothing of it is ever seen live or recovered.
 *
 * Ownership: an op owns its record, envelope and body until it completes. The
 * writer owns sp->fd, cur_seq, cur_size, next_seq and broken.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

/* A caller blocked in spool_delete/spool_hold. */
struct spool_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
	enum rc rc;
};

/* One queued record and whom to tell when it is durable. */
struct spool_op {
	struct spool_op *next;
	struct spool_rec rec;         /* decoded form, applied to the index after sync */
	struct spool_buf head;        /* header (+ env block for MSG), or the whole record */
	struct evbuffer *body;        /* MSG body, owned */
	struct evbuffer_iovec *bodyv; /* its extents */
	int nbodyv;
	uint64_t len, off; /* record length; offset once written */
	uint64_t id;
	struct event_base *base;
	spool_done_cb cb;
	void *ctx;
	uint64_t cookie;
	struct spool_wait *wait;
	bool notify;                  /* a new message: tell the observer once durable */
};

/* A completion travelling to the caller's event loop. */
struct spool_done {
	struct event *ev;
	spool_done_cb cb;
	void *ctx;
	uint64_t cookie, id;
	enum rc rc;
};

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct spool_done *d = arg;
	d->cb(d->ctx, d->cookie, d->rc, d->id);
	event_free(d->ev);
	free(d);
}

static void op_free(struct spool_op *op)
{
	spool_rec_clear(&op->rec);
	spool_buf_free(&op->head);
	if (op->body)
		evbuffer_free(op->body);
	free(op->bodyv);
	free(op);
}

/* Tell the op's caller rc (event on its base, or wake the waiter), then free op. */
static void op_complete(struct spool_op *op, enum rc rc)
{
	if (op->rec.type == SPOOL_REC_DONE && op->rec.u.done.reason == SPOOL_DONE_DELETED) {
		char ids[ID_STR_LEN + 1];
		id_format(op->id, ids);
		log_info("%s event=spool_delete rc=%s", ids, rc_name(rc));
	}
	if (op->wait != NULL) {
		pthread_mutex_lock(&op->wait->m);
		op->wait->rc = rc;
		op->wait->done = true;
		pthread_cond_signal(&op->wait->c);
		pthread_mutex_unlock(&op->wait->m);
	} else if (op->cb != NULL && op->base != NULL) {
		struct spool_done *d = xcalloc(1, sizeof *d);
		d->cb = op->cb;
		d->ctx = op->ctx;
		d->cookie = op->cookie;
		d->id = op->id;
		d->rc = rc;
		d->ev = event_new(op->base, -1, 0, on_done, d);
		if (d->ev == NULL)
			fatal("event=event_new_failed where=spool_complete");
		event_active(d->ev, 0, 0);
	}
	op_free(op);
}

/* ---- writing ---- */

/* Injected write failure: write a prefix of the batch, as a full disk would. */
static void write_prefix(int fd, const struct iovec *iov, size_t niov, uint64_t off, uint64_t bytes)
{
	for (size_t i = 0; i < niov && bytes > 0; i++) {
		size_t n = (size_t)MIN((uint64_t)iov[i].iov_len, bytes);
		if (pwrite(fd, iov[i].iov_base, n, (off_t)off) != (ssize_t)n)
			return;
		off += n;
		bytes -= n;
	}
}

/* pwritev everything (iov is consumed), IOV_MAX vectors at a time. */
static enum rc write_iov(int fd, struct iovec *iov, size_t niov, uint64_t off, uint64_t total)
{
	if (fault_hit("write")) {
		write_prefix(fd, iov, niov, off, total / 2);
		errno = ENOSPC;
		return RC_IO;
	}
	size_t i = 0;
	while (i < niov) {
		int cnt = (int)MIN(niov - i, (size_t)IOV_MAX);
		ssize_t n = pwritev(fd, iov + i, cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return RC_IO;
		off += (uint64_t)n;
		for (size_t left = (size_t)n; left > 0;) {
			size_t take = MIN(left, iov[i].iov_len);
			iov[i].iov_base = (char *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			left -= take;
			if (iov[i].iov_len == 0)
				i++;
		}
		while (i < niov && iov[i].iov_len == 0)
			i++;
	}
	return RC_OK;
}

/* After a failed append: cut the segment back, else rotate away from it. */
static void writer_fail(struct spool *sp, uint64_t size_before)
{
	log_err("event=spool_append_failed seg=%016llx off=%llu errno=%d",
	        (unsigned long long)sp->cur_seq, (unsigned long long)size_before, errno);
	if (spool_file_truncate(sp->fd, size_before) == RC_OK)
		return;
	log_err("event=spool_truncate_failed seg=%016llx off=%llu errno=%d",
	        (unsigned long long)sp->cur_seq, (unsigned long long)size_before, errno);
	if (spool_seg_rotate(sp, size_before) != RC_OK)
		sp->broken = true;
}

/* spool_writer_append - (writer thread) append total bytes of iov durably at the end
 * of the current segment, rotating first when due. *off: where they start. */
enum rc spool_writer_append(struct spool *sp, struct iovec *iov, size_t niov, uint64_t total,
                            uint64_t *off)
{
	if (sp->broken || sp->cur_size >= atomic_load(&sp->seg_max)) {
		if (spool_seg_rotate(sp, sp->cur_size) != RC_OK && sp->broken)
			return RC_IO;
	}
	*off = sp->cur_size;
	enum rc rc = write_iov(sp->fd, iov, niov, *off, total);
	if (rc == RC_OK && fault_hit("slow_fsync"))
		sleep(3); /* test seam: a slow disk (RELEVO_FAULT=slow_fsync:N+) */
	if (rc == RC_OK && (fault_hit("fsync") || fdatasync(sp->fd) != 0))
		rc = RC_IO;
	if (rc != RC_OK) {
		writer_fail(sp, *off);
		return RC_IO;
	}
	sp->cur_size += total;
	pthread_mutex_lock(&sp->lock);
	spool_seg_find(sp, sp->cur_seq)->size = sp->cur_size;
	pthread_mutex_unlock(&sp->lock);
	return RC_OK;
}

/* Write one batch of ops, apply them, complete their callers. */
static void write_batch(struct spool *sp, struct spool_op *batch)
{
	size_t niov = 0, k = 0, nops = 0;
	uint64_t total = 0;
	for (struct spool_op *op = batch; op; op = op->next, nops++)
		niov += 1 + (size_t)op->nbodyv;
	struct iovec *iov = xcalloc(niov, sizeof *iov);
	for (struct spool_op *op = batch; op; op = op->next) {
		op->off = total; /* relative until the append says where */
		iov[k++] = (struct iovec){op->head.p, op->head.len};
		for (int i = 0; i < op->nbodyv; i++)
			iov[k++] = (struct iovec){op->bodyv[i].iov_base, op->bodyv[i].iov_len};
		total += op->len;
	}
	uint64_t base = 0;
	int64_t t0 = metrics_now_us();
	enum rc rc = spool_writer_append(sp, iov, niov, total, &base);
	metrics_observe(METRICS_H_SPOOL_COMMIT, (uint64_t)(metrics_now_us() - t0));
	metrics_observe(METRICS_H_SPOOL_BATCH, nops);
	free(iov);
	if (rc == RC_OK) {
		for (struct spool_op *op = batch; op; op = op->next)
			if (op->notify && sp->accept_hook != NULL &&
			    op->rec.type == SPOOL_REC_MSG)
				sp->accept_hook(sp->accept_hook_ctx, op->rec.u.msg.env);
		pthread_mutex_lock(&sp->lock);
		for (struct spool_op *op = batch; op; op = op->next) {
			op->rec.off = base + op->off;
			op->rec.len = op->len;
			if (op->rec.type == SPOOL_REC_MSG)
				op->rec.u.msg.body_off = op->rec.off + op->head.len;
			spool_idx_apply(sp, sp->cur_seq, &op->rec);
		}
		pthread_mutex_unlock(&sp->lock);
		for (struct spool_op *op = batch; op; op = op->next)
			if (op->notify && sp->observer != NULL)
				sp->observer(sp->observer_ctx, op->id);
	}
	while (batch) {
		struct spool_op *next = batch->next;
		op_complete(batch, rc);
		batch = next;
	}
}

static void *writer_main(void *arg)
{
	struct spool *sp = arg;
	health_thread_subsys(HEALTH_SPOOL);
	bool more = spool_reclaim_step(sp);
	pthread_mutex_lock(&sp->qlock);
	for (;;) {
		while (sp->qhead == NULL && !sp->stopping && !more)
			pthread_cond_wait(&sp->qcond, &sp->qlock);
		if (sp->qhead == NULL && sp->stopping)
			break;
		struct spool_op *batch = sp->qhead;
		sp->qhead = sp->qtail = NULL;
		bool stopping = sp->stopping;
		pthread_mutex_unlock(&sp->qlock);
		if (batch != NULL)
			write_batch(sp, batch);
		more = !stopping && spool_reclaim_step(sp);
		pthread_mutex_lock(&sp->qlock);
	}
	pthread_mutex_unlock(&sp->qlock);
	return NULL;
}

/* spool_writer_start - open a new segment after the recovered ones, start the thread. */
enum rc spool_writer_start(struct spool *sp, uint64_t prev_seq, uint64_t prev_end)
{
	sp->cur_seq = prev_seq;
	enum rc rc = spool_seg_rotate(sp, prev_seq != 0 ? prev_end : UINT64_MAX);
	if (rc != RC_OK)
		return rc;
	if (pthread_create(&sp->writer, NULL, writer_main, sp) != 0)
		fatal("event=pthread_create_failed where=spool_writer");
	sp->writer_started = true;
	return RC_OK;
}

/* spool_writer_stop - let the writer finish every queued op, then join it. */
void spool_writer_stop(struct spool *sp)
{
	pthread_mutex_lock(&sp->qlock);
	sp->stopping = true;
	pthread_cond_signal(&sp->qcond);
	pthread_mutex_unlock(&sp->qlock);
	if (sp->writer_started)
		pthread_join(sp->writer, NULL);
	sp->writer_started = false;
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
}

/* ---- the write side of the public API ---- */

static void enqueue(struct spool *sp, struct spool_op *op)
{
	pthread_mutex_lock(&sp->qlock);
	if (sp->stopping || !sp->writer_started) {
		pthread_mutex_unlock(&sp->qlock);
		op_complete(op, RC_IO);
		return;
	}
	if (sp->qtail)
		sp->qtail->next = op;
	else
		sp->qhead = op;
	sp->qtail = op;
	pthread_cond_signal(&sp->qcond);
	pthread_mutex_unlock(&sp->qlock);
}

/* Header + env block into op->head, checksum over env block and body. */
static enum rc encode_msg(struct spool_op *op)
{
	struct spool_env *env = op->rec.u.msg.env;
	uint8_t zero[SPOOL_HDR_LEN] = {0};
	size_t blen = evbuffer_get_length(op->body);
	spool_buf_add(&op->head, zero, sizeof zero);
	spool_env_encode(&op->head, env);
	uint64_t plen = op->head.len - SPOOL_HDR_LEN + (uint64_t)blen;
	/* Room for the envelope to grow: compaction re-encodes it with this body. */
	if ((uint64_t)blen + SPOOL_ENV_MAX > SPOOL_PAYLOAD_MAX)
		return RC_LIMIT;
	env->body_size = blen;
	uint32_t crc = spool_crc32c(0, op->head.p + SPOOL_HDR_LEN, op->head.len - SPOOL_HDR_LEN);
	op->nbodyv = evbuffer_peek(op->body, -1, NULL, NULL, 0);
	op->bodyv = xcalloc((size_t)MAX(op->nbodyv, 1), sizeof *op->bodyv);
	op->nbodyv = evbuffer_peek(op->body, -1, NULL, op->bodyv, op->nbodyv);
	for (int i = 0; i < op->nbodyv; i++)
		crc = spool_crc32c(crc, op->bodyv[i].iov_base, op->bodyv[i].iov_len);
	spool_hdr_build(op->head.p, SPOOL_REC_MSG, (uint32_t)plen, crc);
	op->len = op->head.len + blen;
	return RC_OK;
}

static bool is_live(struct spool *sp, uint64_t id, size_t idx, uint32_t *flags)
{
	pthread_mutex_lock(&sp->lock);
	struct spool_msg *msg = spool_map_get(&sp->map, id);
	bool ok = msg != NULL && idx < msg->env->nrcpt;
	if (ok && flags)
		*flags = msg->env->flags;
	pthread_mutex_unlock(&sp->lock);
	return ok;
}

/* spool_commit - queue a new message; cb learns when it is durable (or why not). */
void spool_commit(struct spool *sp, struct spool_env *env, struct evbuffer *body,
                  struct event_base *base, spool_done_cb cb, void *ctx, uint64_t cookie)
{
	struct spool_op *op = xcalloc(1, sizeof *op);
	op->base = base;
	op->cb = cb;
	op->ctx = ctx;
	op->cookie = cookie;
	op->rec.type = SPOOL_REC_MSG;
	op->rec.u.msg.env = env;
	op->notify = true;
	op->body = body ? body : evbuffer_new();
	enum rc rc = sp->mode == SPOOL_RDWR ? spool_env_check(env) : RC_INVALID;
	if (rc == RC_OK && env->id == 0)
		env->id = id_next();
	op->id = env->id;
	if (rc == RC_OK && is_live(sp, env->id, 0, NULL))
		rc = RC_EXISTS;
	if (rc == RC_OK)
		rc = encode_msg(op);
	if (rc != RC_OK) {
		char ids[ID_STR_LEN + 1];
		id_format(env->id, ids);
		log_warn("%s event=spool_commit_refused rc=%s", ids, rc_name(rc));
		op_complete(op, rc);
		return;
	}
	enqueue(sp, op);
}

static struct spool_op *small_op(struct spool_rec *r)
{
	struct spool_op *op = xcalloc(1, sizeof *op);
	op->rec = *r;
	op->id = spool_rec_id(r);
	spool_rec_encode_small(&op->head, &op->rec);
	op->len = op->head.len;
	return op;
}

/* spool_rcpt_update - queue a recipient's new state; cb (optional) when durable. */
enum rc spool_rcpt_update(struct spool *sp, uint64_t id, size_t idx, enum spool_rcpt_state state,
                          uint32_t attempts, int64_t next_attempt, const char *last_reply,
                          struct event_base *base, spool_done_cb cb, void *ctx, uint64_t cookie)
{
	if (sp->mode != SPOOL_RDWR || (unsigned)state >= SPOOL_RCPT__COUNT)
		return RC_INVALID;
	if (!is_live(sp, id, idx, NULL))
		return RC_NOTFOUND;
	struct spool_rec r = {.type = SPOOL_REC_RCPT};
	r.u.rcpt = (struct spool_rec_rcpt){
	    id,       (uint32_t)idx, state,
	    attempts, next_attempt,  last_reply ? xstrndup(last_reply, SPOOL_REPLY_MAX) : NULL};
	struct spool_op *op = small_op(&r);
	op->base = base;
	op->cb = cb;
	op->ctx = ctx;
	op->cookie = cookie;
	enqueue(sp, op);
	return RC_OK;
}

/* Queue op and block until the writer has made it durable. */
static enum rc run_sync(struct spool *sp, struct spool_op *op)
{
	struct spool_wait w = {.done = false};
	pthread_mutex_init(&w.m, NULL);
	pthread_cond_init(&w.c, NULL);
	op->wait = &w;
	enqueue(sp, op);
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.c, &w.m);
	pthread_mutex_unlock(&w.m);
	pthread_mutex_destroy(&w.m);
	pthread_cond_destroy(&w.c);
	return w.rc;
}

/* delete_op - the DONE record that deletes id; RC_NOTFOUND / RC_INVALID. */
static enum rc delete_op(struct spool *sp, uint64_t id, struct spool_op **out)
{
	if (sp->mode != SPOOL_RDWR)
		return RC_INVALID;
	if (!is_live(sp, id, 0, NULL))
		return RC_NOTFOUND;
	struct spool_rec r = {.type = SPOOL_REC_DONE};
	r.u.done.id = id;
	r.u.done.reason = SPOOL_DONE_DELETED;
	*out = small_op(&r);
	return RC_OK;
}

/* hold_op - the HOLD record that sets held on id; NULL in *out when id already
 * is in that state. RC_NOTFOUND / RC_INVALID. */
static enum rc hold_op(struct spool *sp, uint64_t id, bool held, struct spool_op **out)
{
	uint32_t flags = 0;
	*out = NULL;
	if (sp->mode != SPOOL_RDWR)
		return RC_INVALID;
	if (!is_live(sp, id, 0, &flags))
		return RC_NOTFOUND;
	if (((flags & SPOOL_F_HELD) != 0) == held)
		return RC_OK;
	struct spool_rec r = {.type = SPOOL_REC_HOLD};
	r.u.hold.id = id;
	r.u.hold.held = held;
	*out = small_op(&r);
	return RC_OK;
}

/* spool_delete - remove a message for good (DONE record), durable before return. */
enum rc spool_delete(struct spool *sp, uint64_t id)
{
	struct spool_op *op;
	enum rc rc = delete_op(sp, id, &op);
	return rc == RC_OK ? run_sync(sp, op) : rc;
}

/* spool_hold - set or clear the operator hold, durable before return. */
enum rc spool_hold(struct spool *sp, uint64_t id, bool held)
{
	struct spool_op *op;
	enum rc rc = hold_op(sp, id, held, &op);
	return rc == RC_OK && op ? run_sync(sp, op) : rc;
}

/* run_async - queue op (or, NULL, nothing to write: answer RC_OK at once) and
 * tell cb on base when it is durable. */
static void run_async(struct spool *sp, struct spool_op *op, uint64_t id,
		      struct event_base *base, spool_done_cb cb, void *ctx, uint64_t cookie)
{
	bool write = op != NULL;
	if (!write)
		op = xcalloc(1, sizeof *op);
	op->id = id;
	op->base = base;
	op->cb = cb;
	op->ctx = ctx;
	op->cookie = cookie;
	if (write)
		enqueue(sp, op);
	else
		op_complete(op, RC_OK);
}

/* spool_delete_async - spool_delete, answered on base once durable. */
enum rc spool_delete_async(struct spool *sp, uint64_t id, struct event_base *base,
			   spool_done_cb cb, void *ctx, uint64_t cookie)
{
	struct spool_op *op;
	enum rc rc = delete_op(sp, id, &op);
	if (rc == RC_OK)
		run_async(sp, op, id, base, cb, ctx, cookie);
	return rc;
}

/* spool_hold_async - spool_hold, answered on base once durable. */
enum rc spool_hold_async(struct spool *sp, uint64_t id, bool held, struct event_base *base,
			 spool_done_cb cb, void *ctx, uint64_t cookie)
{
	struct spool_op *op;
	enum rc rc = hold_op(sp, id, held, &op);
	if (rc == RC_OK)
		run_async(sp, op, id, base, cb, ctx, cookie);
	return rc;
}

/* spool_set_accept_hook - fn(ctx, env) runs on the writer thread for each new
 * message once it is durable, before it enters the index. */
void spool_set_accept_hook(struct spool *sp, void (*fn)(void *ctx, const struct spool_env *env),
			   void *ctx)
{
	sp->accept_hook = fn;
	sp->accept_hook_ctx = ctx;
}

/* spool_set_observer - fn(ctx, id) runs on the writer thread after each new
 * message is durable (before its committer hears of it). */
void spool_set_observer(struct spool *sp, void (*fn)(void *ctx, uint64_t id), void *ctx)
{
	sp->observer = fn;
	sp->observer_ctx = ctx;
}
