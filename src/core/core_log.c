/*
 * core_log.c - key=value logging to stderr and fatal().
 *
 * Each line is formatted into one buffer and written with a single write(2), so
 * lines from several threads never interleave. Lines longer than the buffer are
 * truncated, never split.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOG_LV_INFO;
static const char *log_prog = "relevo";

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

/* log_set_level - drop messages below lv (RELEVO_DEBUG in the environment keeps
 * everything, for every subcommand). */
void log_set_level(enum log_level lv)
{
	log_level = getenv("RELEVO_DEBUG") ? LOG_LV_DEBUG : lv;
}

/* log_set_prog - set the program name printed at the start of each line. */
void log_set_prog(const char *prog)
{
	log_prog = prog;
}

static void log_vmsg(enum log_level lv, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, log_prog, (int)getpid(),
			 log_level_names[lv]);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : MIN((size_t)m, sizeof line - (size_t)n - 2));
	/* Never let a peer-supplied byte break the one-line-per-event rule. */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r' || line[i] == '\0')
			line[i] = ' ';
	if (lv == LOG_LV_ERR) {
		line[len] = '\0';
		health_note_log_error(line + n);
	}
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

/* log_msg - log one event line at level lv. */
void log_msg(enum log_level lv, const char *fmt, ...)
{
	if (lv < log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lv, fmt, ap);
	va_end(ap);
}

/* fatal - log a broken invariant and abort. */
void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LV_ERR, fmt, ap);
	va_end(ap);
	abort();
}

static const char *const rc_names[] = {
	"ok", "again", "tempfail", "permfail", "nomem", "io", "proto",
	"notfound", "exists", "invalid", "limit",
};
_Static_assert(ARRAY_LEN(rc_names) == RC__COUNT, "rc_names");

/* rc_name - the name of a result code, for logs. */
const char *rc_name(enum rc rc)
{
	return (unsigned)rc < RC__COUNT ? rc_names[rc] : "?";
}
