/*
 * fuzz_mta_reply.c - a server's bytes as the SMTP client reads them:
 * mta_reply_line cuts them into lines, mta_reply_feed assembles replies. The
 * input is fed twice, whole and in pieces whose sizes come from the first
 * byte, and both runs must give the same replies (the reader is incremental).
 * Asserts what the client relies on: codes 200..599, bounded lines, lines per
 * reply and text, no control character in a text, a well-formed enhanced code
 * of the reply's class, the byte bound, and reuse after RC_PROTO.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta/mta.h"
#include "fuzz.h"


#define MAX_KEPT 64

struct run {
	size_t n;		/* replies (and RC_PROTO) seen, in order */
	int code[MAX_KEPT];	/* 0 for an RC_PROTO */
	uint32_t hash[MAX_KEPT];
};

static uint32_t fnv(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void check_enh(const struct mta_reply *r)
{
	size_t n = strlen(r->enh);
	if (n == 0)
		return;
	FUZZ_ASSERT(n >= 5 && n <= 9);
	FUZZ_ASSERT(r->enh[0] == '0' + r->code / 100 && r->enh[1] == '.');
	unsigned dots = 0;
	for (size_t i = 1; i < n; i++) {
		FUZZ_ASSERT(r->enh[i] == '.' || (r->enh[i] >= '0' && r->enh[i] <= '9'));
		dots += r->enh[i] == '.';
	}
	FUZZ_ASSERT(dots == 2 && r->enh[n - 1] != '.');
}

static void check_reply(const struct mta_reply *r)
{
	FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
	FUZZ_ASSERT(mta_reply_class(r->code) != RC_PROTO || r->code / 100 == 3);
	FUZZ_ASSERT(r->nlines >= 1 && r->nlines <= MTA_REPLY_LINES_MAX);
	size_t tl = strnlen(r->text, sizeof r->text);
	FUZZ_ASSERT(tl < sizeof r->text);
	for (size_t i = 0; i < tl; i++)
		FUZZ_ASSERT((unsigned char)r->text[i] >= 0x20 && r->text[i] != 0x7f);
	check_enh(r);
	char out[MTA_REPLY_TEXT_MAX + 32];
	mta_reply_format(r, out, sizeof out);
	char want[8];
	snprintf(want, sizeof want, "%03d", r->code);
	FUZZ_ASSERT(strncmp(out, want, 3) == 0);
}

static void record(struct run *run, int code, const struct mta_reply *r)
{
	if (run->n >= MAX_KEPT)
		return;
	run->code[run->n] = code;
	run->hash[run->n] = r ? fnv(r->text) ^ fnv(r->enh) ^ r->nlines : 0;
	run->n++;
}

/* feed - all of data in pieces of at most step bytes (0: whole). */
static void feed(const uint8_t *data, size_t size, size_t step, struct run *run)
{
	struct mta_reply_parser *p = malloc(sizeof *p);
	mta_reply_init(p);
	size_t off = 0, since_reply = 0;
	memset(run, 0, sizeof *run);
	while (off < size) {
		size_t piece = step ? MIN(step, size - off) : size - off;
		size_t used = 0, ll = 0;
		const char *line = NULL;
		enum rc rc = mta_reply_line(p, (const char *)data + off, piece, &used, &line, &ll);
		FUZZ_ASSERT(used <= piece);
		off += used;
		since_reply += used;
		if (rc == RC_PROTO) {
			/* only when one reply took more than the byte bound */
			FUZZ_ASSERT(since_reply > MTA_REPLY_BYTES_MAX);
			FUZZ_ASSERT(mta_reply_is_idle(p));
			record(run, 0, NULL);
			since_reply = 0;
			continue;
		}
		if (rc == RC_AGAIN) {
			FUZZ_ASSERT(used == piece);
			continue;
		}
		FUZZ_ASSERT(rc == RC_OK && used > 0 && data[off - 1] == '\n');
		FUZZ_ASSERT(ll <= MTA_REPLY_LINE_MAX);
		struct mta_reply r;
		rc = mta_reply_feed(p, line, ll, &r);
		if (rc == RC_OK) {
			check_reply(&r);
			record(run, r.code, &r);
			since_reply = 0;
			FUZZ_ASSERT(mta_reply_is_idle(p));
		} else if (rc == RC_PROTO) {
			record(run, 0, NULL);
			since_reply = 0;
			FUZZ_ASSERT(mta_reply_is_idle(p));
		} else {
			FUZZ_ASSERT(rc == RC_AGAIN && p->in_progress);
		}
	}
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, pieces;
	size_t step = size > 0 ? 1 + data[0] % 17 : 1;
	feed(data, size, 0, &whole);
	feed(data, size, step, &pieces);
	/* The byte bound counts whole pieces up to a line end, so where exactly an
	 * endless reply is cut off may differ; everything before must agree. */
	size_t n = MIN(whole.n, pieces.n);
	for (size_t i = 0; i < n; i++) {
		if (whole.code[i] == 0 || pieces.code[i] == 0)
			break;
		FUZZ_ASSERT(whole.code[i] == pieces.code[i]);
		FUZZ_ASSERT(whole.hash[i] == pieces.hash[i]);
	}
	return 0;
}
