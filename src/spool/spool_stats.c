/*
 * spool_stats.c - what the queue looks like (for `relevo status` and /metrics)
 * and whether its directory can be written (for GET /v1/health).
 *
 * spool_stats walks the in-memory index under its lock, copying nothing but
 * counts and, when asked, the ten destinations (recipient domains) with the most
 * recipients waiting. Only recipients still to deliver are counted (state
 * QUEUED); final ones wait only for the message's DONE record.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const stats_state_names[] = {"active", "deferred", "held"};
_Static_assert(ARRAY_LEN(stats_state_names) == SPOOL_STATS__COUNT, "a name per state");

/* spool_stats_state_name - "active", "deferred", "held". */
const char *spool_stats_state_name(enum spool_stats_state s)
{
	return (unsigned)s < SPOOL_STATS__COUNT ? stats_state_names[s] : "?";
}

static int cmp_domain(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* stats_top - count runs of the sorted domains, keep the SPOOL_STATS_TOP largest. */
static void stats_top(const char **doms, size_t n, struct spool_stats *out)
{
	qsort(doms, n, sizeof *doms, cmp_domain);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && strcasecmp(doms[i], doms[j]) == 0)
			j++;
		uint64_t c = j - i;
		size_t k;
		if (out->ntop < SPOOL_STATS_TOP)
			k = out->ntop++;
		else if (out->top[SPOOL_STATS_TOP - 1].rcpts < c)
			k = SPOOL_STATS_TOP - 1;
		else
			k = SPOOL_STATS_TOP; /* not among the largest */
		if (k < SPOOL_STATS_TOP) {
			for (; k > 0 && out->top[k - 1].rcpts < c; k--)
				out->top[k] = out->top[k - 1];
			str_lcpy(out->top[k].domain, doms[i], sizeof out->top[k].domain);
			str_lower(out->top[k].domain);
			out->top[k].rcpts = c;
		}
		i = j;
	}
}

/* stats_msg - add one message's waiting recipients. */
static void stats_msg(const struct spool_env *env, struct spool_stats *out, const char **doms,
                      size_t *ndoms)
{
	bool bulk = (env->flags & SPOOL_F_BULK) != 0;
	out->messages++;
	if (out->oldest == 0 || env->created < out->oldest)
		out->oldest = env->created;
	for (size_t r = 0; r < env->nrcpt; r++) {
		const struct spool_rcpt *rc = &env->rcpt[r];
		if (rc->state != SPOOL_RCPT_QUEUED)
			continue;
		enum spool_stats_state st = (env->flags & SPOOL_F_HELD) ? SPOOL_STATS_HELD
		                            : rc->attempts > 0          ? SPOOL_STATS_DEFERRED
		                                                        : SPOOL_STATS_ACTIVE;
		out->rcpts[st][bulk]++;
		if (doms != NULL) {
			const char *at = strrchr(rc->addr, '@');
			doms[(*ndoms)++] = at ? at + 1 : "";
		}
	}
}

/* spool_stats - summarise the queue into out (top destinations when top). */
void spool_stats(struct spool *sp, bool top, struct spool_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&sp->lock);
	const char **doms = NULL;
	size_t ndoms = 0, cap = 0;
	if (top) {
		for (size_t i = 0; i < sp->map.cap; i++)
			if (sp->map.slots[i] != NULL)
				cap += sp->map.slots[i]->env->nrcpt;
		doms = xcalloc(cap + 1, sizeof *doms);
	}
	for (size_t i = 0; i < sp->map.cap; i++)
		if (sp->map.slots[i] != NULL)
			stats_msg(sp->map.slots[i]->env, out, doms, &ndoms);
	if (top)
		stats_top(doms, ndoms, out);
	pthread_mutex_unlock(&sp->lock);
	free(doms);
}

/* spool_probe_write - prove the spool directory takes a new file now. */
enum rc spool_probe_write(struct spool *sp, int *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/.health-%ld", sp->dir, (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*err = errno;
		return RC_IO;
	}
	enum rc rc = file_write_all(fd, "ok\n", 3);
	*err = rc == RC_OK ? 0 : errno;
	close(fd);
	unlink(path);
	return rc == RC_OK ? RC_OK : RC_IO;
}
