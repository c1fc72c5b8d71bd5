/*
 * core_workq.c - a bounded pool of threads for blocking work, completing back on
 * an event loop.
 *
 * Each job carries a libevent event created on the caller's base; the pool thread
 * activates it when the work is done (event_active is thread-safe once
 * evthread_use_pthreads() ran), so done() always runs on the loop that asked.
 * A job submitted without a base has no completion: its work delivers the result
 * itself (the DKIM key cache wakes each waiting loop from the pool thread).
 */
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>
#include <event2/thread.h>

struct workq_job {
	struct workq_job *next;
	struct event *ev;
	workq_fn work, done;
	void *arg;
};

struct workq {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct workq_job *head, *tail;
	size_t pending, max_pending;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;
};

static int threads_rc;
static void threads_init_once(void)
{
	threads_rc = evthread_use_pthreads();
}

/* core_threads_init - make libevent thread-aware (idempotent). */
void core_threads_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, threads_init_once);
	if (threads_rc != 0)
		fatal("event=evthread_use_pthreads_failed");
}

static void workq_on_done(evutil_socket_t fd, short what, void *p)
{
	struct workq_job *job = p;
	job->done(job->arg);
	event_free(job->ev);
	free(job);
}

static void *workq_main(void *p)
{
	struct workq *wq = p;
	pthread_mutex_lock(&wq->lock);
	for (;;) {
		while (wq->head == NULL && !wq->stopping)
			pthread_cond_wait(&wq->cond, &wq->lock);
		struct workq_job *job = wq->head;
		if (job == NULL)
			break;
		wq->head = job->next;
		if (wq->head == NULL)
			wq->tail = NULL;
		wq->pending--;
		pthread_mutex_unlock(&wq->lock);
		job->work(job->arg);
		if (job->ev)
			event_active(job->ev, 0, 0);
		else
			free(job); /* no completion: work owned arg */
		pthread_mutex_lock(&wq->lock);
	}
	pthread_mutex_unlock(&wq->lock);
	return NULL;
}

/* workq_new - start nthreads pool threads accepting up to max_pending jobs. */
struct workq *workq_new(unsigned nthreads, size_t max_pending)
{
	struct workq *wq = xcalloc(1, sizeof *wq);
	pthread_mutex_init(&wq->lock, NULL);
	pthread_cond_init(&wq->cond, NULL);
	wq->max_pending = max_pending;
	wq->nthreads = nthreads ? nthreads : 1;
	wq->threads = xcalloc(wq->nthreads, sizeof *wq->threads);
	for (unsigned i = 0; i < wq->nthreads; i++)
		if (pthread_create(&wq->threads[i], NULL, workq_main, wq) != 0)
			fatal("event=pthread_create_failed where=workq");
	return wq;
}

/* workq_submit - queue work(arg) now and done(arg) on base afterwards (base
 * NULL: no completion, done is ignored). */
enum rc workq_submit(struct workq *wq, struct event_base *base, workq_fn work,
		     workq_fn done, void *arg)
{
	struct workq_job *job = xcalloc(1, sizeof *job);
	job->work = work;
	job->done = done;
	job->arg = arg;
	if (base != NULL && (job->ev = event_new(base, -1, 0, workq_on_done, job)) == NULL)
		fatal("event=event_new_failed where=workq");
	pthread_mutex_lock(&wq->lock);
	if (wq->pending >= wq->max_pending || wq->stopping) {
		pthread_mutex_unlock(&wq->lock);
		if (job->ev)
			event_free(job->ev);
		free(job);
		return RC_LIMIT;
	}
	if (wq->tail)
		wq->tail->next = job;
	else
		wq->head = job;
	wq->tail = job;
	wq->pending++;
	pthread_cond_signal(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
	return RC_OK;
}

/* workq_free - let queued work finish and join the threads. */
void workq_free(struct workq *wq)
{
	if (wq == NULL)
		return;
	pthread_mutex_lock(&wq->lock);
	wq->stopping = true;
	pthread_cond_broadcast(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
	for (unsigned i = 0; i < wq->nthreads; i++)
		pthread_join(wq->threads[i], NULL);
	pthread_mutex_destroy(&wq->lock);
	pthread_cond_destroy(&wq->cond);
	free(wq->threads);
	free(wq);
}
