/*
 * core_util.c - allocation, time, message ids, strings, files and the fault seam.
 */
#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* xmalloc - malloc or abort. */
void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		fatal("event=oom size=%zu", n);
	return p;
}

/* xcalloc - calloc or abort. */
void *xcalloc(size_t nmemb, size_t n)
{
	void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
	if (p == NULL)
		fatal("event=oom size=%zu", nmemb * n);
	return p;
}

/* xrealloc - realloc or abort. */
void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		fatal("event=oom size=%zu", n);
	return q;
}

/* xstrdup - strdup or abort. */
char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* xstrndup - copy at most n bytes of s into a new terminated string, or abort. */
char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* xasprintf - format into a new heap string, or abort. */
char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	va_start(ap, fmt);
	int n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("event=oom where=xasprintf");
	return p;
}

/* time_now_ms - wall clock in milliseconds since the epoch. */
int64_t time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* time_mono_ms - monotonic clock in milliseconds. */
int64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* time_rfc5322 - "Thu, 26 Nov 2026 10:20:46 +0000" for t in local time. */
void time_rfc5322(int64_t t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(out, outsz, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
		 tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, sign, off / 60, off % 60);
}

#define ID_COUNTER_BITS 28
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last;

/* id_next - a new message id, strictly greater than every id handed out before. */
uint64_t id_next(void)
{
	uint64_t base = (uint64_t)(time_now_ms() / 1000) << ID_COUNTER_BITS;
	pthread_mutex_lock(&id_lock);
	id_last = base > id_last ? base : id_last + 1;
	uint64_t id = id_last;
	pthread_mutex_unlock(&id_lock);
	return id;
}

/* id_bump - never hand out an id <= seen (called with ids recovered from disk). */
void id_bump(uint64_t seen)
{
	pthread_mutex_lock(&id_lock);
	if (seen > id_last)
		id_last = seen;
	pthread_mutex_unlock(&id_lock);
}

/* id_format - 16 upper-case hex digits. */
void id_format(uint64_t id, char out[ID_STR_LEN + 1])
{
	snprintf(out, ID_STR_LEN + 1, "%016llX", (unsigned long long)id);
}

/* id_parse - parse 16 hex digits (either case); false on anything else. */
bool id_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	for (i = 0; s[i] != '\0'; i++) {
		int c = (unsigned char)s[i], d;
		if (i >= ID_STR_LEN)
			return false;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		v = v << 4 | (uint64_t)d;
	}
	if (i != ID_STR_LEN)
		return false;
	*out = v;
	return true;
}

/* str_lcpy - bounded copy, always terminated; returns strlen(src). */
size_t str_lcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);
	if (n > 0) {
		size_t c = len < n - 1 ? len : n - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return len;
}

/* str_ieq - ASCII case-insensitive equality. */
bool str_ieq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* str_has_prefix_ci - does s start with prefix, ignoring ASCII case? */
bool str_has_prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* str_lower - ASCII lower-case in place. */
void str_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* str_to_u64 - strict decimal parse. */
bool str_to_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* file_fsync_dir - make a directory's entries (creates, renames, unlinks) durable. */
enum rc file_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return RC_IO;
	int r = fault_hit("fsync") ? -1 : fsync(fd);
	close(fd);
	return r == 0 ? RC_OK : RC_IO;
}

/* file_write_all - write everything or fail. */
enum rc file_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	if (fault_hit("write")) {
		errno = ENOSPC;
		return RC_IO;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return RC_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return RC_OK;
}

/* file_read_all - slurp a file of at most max bytes. */
enum rc file_read_all(const char *path, size_t max, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? RC_NOTFOUND : RC_IO;
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= max) {
				free(buf);
				close(fd);
				return RC_LIMIT;
			}
			cap = MIN(cap * 2, max);
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			close(fd);
			return RC_IO;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	if (outlen)
		*outlen = len;
	return RC_OK;
}

/* file_mkdir_p - mkdir -p with mode for every created component. */
enum rc file_mkdir_p(const char *path, mode_t mode)
{
	char tmp[4096];
	if (str_lcpy(tmp, path, sizeof tmp) >= sizeof tmp)
		return RC_INVALID;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return RC_IO;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return RC_IO;
	return RC_OK;
}

/* Fault seam: "op:N[,op:N]" in RELEVO_FAULT fails the Nth call of op (and later
 * ones if N is suffixed with '+'). Parsed lazily; counters are per process. */
#define FAULT_MAX 8
static struct {
	char op[16];
	long n;
	bool sticky;
	atomic_long calls;
} faults[FAULT_MAX];
static int nfaults = -1;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;

static void fault_init(void)
{
	const char *env = getenv("RELEVO_FAULT");
	nfaults = 0;
	if (env == NULL)
		return;
	char buf[256];
	str_lcpy(buf, env, sizeof buf);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok && nfaults < FAULT_MAX;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		if (colon == NULL)
			continue;
		*colon = '\0';
		str_lcpy(faults[nfaults].op, tok, sizeof faults[nfaults].op);
		char *end;
		faults[nfaults].n = strtol(colon + 1, &end, 10);
		faults[nfaults].sticky = *end == '+';
		nfaults++;
	}
}

/* fault_hit - should this call of op fail (test seam, see RELEVO_FAULT)? */
bool fault_hit(const char *op)
{
	pthread_once(&fault_once, fault_init);
	bool hit = false;
	/* Every entry for op counts this call, so "fsync:3,fsync:4" fails both. */
	for (int i = 0; i < nfaults; i++) {
		if (strcmp(faults[i].op, op) != 0)
			continue;
		long c = atomic_fetch_add(&faults[i].calls, 1) + 1;
		if (c == faults[i].n || (faults[i].sticky && c >= faults[i].n))
			hit = true;
	}
	if (hit)
		errno = ENOSPC;
	return hit;
}
