/*
 * http_head.c - the request head reader of the API's guard (http_guard.c): finds
 * where a request's head ends and reads the few fields the guard decides on
 * (the method, Content-Length, Transfer-Encoding, Authorization), before evhttp
 * sees a byte of the request.
 *
 * Pure: no I/O, no allocation. http_head_end is incremental (it resumes where
 * the last call stopped, so a head trickled a byte at a time costs linear time);
 * http_head_parse reads a complete head. Anything evhttp would refuse with its
 * own HTML page is refused here first, so that the client gets the API's JSON
 * error: a malformed request line, a header line without a colon or with a
 * space before it, obsolete line folding (RFC 7230 3.2.4: refused, as a request
 * smuggling hazard), control characters, a Content-Length that is not digits or
 * that disagrees with a second one.
 */
#include "http/http_int.h"

#include <string.h>
#include <strings.h>

/* http_head_end - the length of the head (through its empty line) in p[0..n),
 * or 0 when it has not ended yet; *scanned: where to resume (0 at first). Lines
 * end with LF, optionally preceded by CR. */
size_t http_head_end(const char *p, size_t n, size_t *scanned)
{
	size_t i = *scanned;
	for (; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i >= 1 && p[i - 1] == '\n')
			return i + 1;
		if (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n')
			return i + 1;
	}
	*scanned = n;
	return 0;
}

static bool http_is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static enum rc http_head_fail(struct http_head *hd, const char *msg)
{
	hd->error = msg;
	return RC_PROTO;
}

/* http_head_request_line - "METHOD SP target SP HTTP/1.x". */
static enum rc http_head_request_line(struct http_head *hd, const char *s, size_t n)
{
	const char *sp1 = memchr(s, ' ', n);
	if (sp1 == NULL || sp1 == s || (size_t)(sp1 - s) >= sizeof hd->method)
		return http_head_fail(hd, "the request line is malformed");
	for (const char *q = s; q < sp1; q++)
		if (*q < 'A' || *q > 'Z')
			return http_head_fail(hd, "the request method is malformed");
	memcpy(hd->method, s, (size_t)(sp1 - s));
	hd->method[sp1 - s] = '\0';
	const char *t = sp1 + 1, *end = s + n;
	const char *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (sp2 == NULL || sp2 == t)
		return http_head_fail(hd, "the request line is malformed");
	for (const char *q = t; q < sp2; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return http_head_fail(hd, "the request target is malformed");
	size_t vl = (size_t)(end - sp2 - 1);
	if (vl != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
		return http_head_fail(hd, "only HTTP/1.0 and HTTP/1.1 are spoken here");
	return RC_OK;
}

/* http_head_length - Content-Length: digits, the same value when repeated. */
static enum rc http_head_length(struct http_head *hd, const char *v, size_t n)
{
	uint64_t len = 0;
	if (n == 0 || n > 19)
		return http_head_fail(hd, "Content-Length is malformed");
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return http_head_fail(hd, "Content-Length is malformed");
		len = len * 10 + (uint64_t)(v[i] - '0');
	}
	if (hd->has_length && hd->length != len)
		return http_head_fail(hd, "two Content-Length fields disagree");
	hd->has_length = true;
	hd->length = len;
	return RC_OK;
}

/* http_head_field - one "name: value" line. */
static enum rc http_head_field(struct http_head *hd, const char *s, size_t n)
{
	if (s[0] == ' ' || s[0] == '\t')
		return http_head_fail(hd, "folded header lines are not accepted");
	const char *colon = memchr(s, ':', n);
	if (colon == NULL || colon == s)
		return http_head_fail(hd, "a header line is malformed");
	for (const char *q = s; q < colon; q++)
		if (!http_is_tchar((unsigned char)*q))
			return http_head_fail(hd, "a header name is malformed");
	const char *v = colon + 1, *end = s + n;
	for (const char *q = v; q < end; q++)
		if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
			return http_head_fail(hd, "a header value holds a control character");
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t nl = (size_t)(colon - s), vl = (size_t)(end - v);
	if (nl == 14 && strncasecmp(s, "Content-Length", 14) == 0)
		return http_head_length(hd, v, vl);
	if (nl == 17 && strncasecmp(s, "Transfer-Encoding", 17) == 0)
		hd->has_te = true;
	if (nl == 13 && strncasecmp(s, "Authorization", 13) == 0) {
		if (hd->has_auth)
			return http_head_fail(hd, "two Authorization fields");
		hd->has_auth = true;
		if (vl >= sizeof hd->auth)
			vl = 0; /* longer than any key: no key */
		memcpy(hd->auth, v, vl);
		hd->auth[vl] = '\0';
	}
	return RC_OK;
}

/* http_head_parse - read the complete head p[0..n) (as http_head_end measured
 * it) into hd. RC_PROTO with hd->error (a sentence for the client) when it is
 * malformed. */
enum rc http_head_parse(const char *p, size_t n, struct http_head *hd)
{
	memset(hd, 0, sizeof *hd);
	if (memchr(p, '\0', n) != NULL)
		return http_head_fail(hd, "the request head holds a NUL byte");
	bool first = true;
	size_t i = 0;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL)
			return http_head_fail(hd, "the request head is incomplete");
		size_t len = (size_t)(nl - (p + i));
		if (len > 0 && p[i + len - 1] == '\r')
			len--;
		if (memchr(p + i, '\r', len) != NULL)
			return http_head_fail(hd, "a bare CR in the request head");
		if (len == 0 && !first)
			return RC_OK; /* the empty line: the end */
		enum rc rc = first ? http_head_request_line(hd, p + i, len)
				   : http_head_field(hd, p + i, len);
		if (rc != RC_OK)
			return rc;
		first = false;
		i = (size_t)(nl - p) + 1;
	}
	return http_head_fail(hd, "the request head is incomplete");
}
