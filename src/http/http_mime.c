/*
 * http_mime.c - the JSON body of POST /v1/messages as an envelope and an RFC 5322
 * message (RFC 2045-2047 MIME, RFC 2231 filenames).
 *
 * Input: {"from", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
 * "headers": {...}, "attachments": [{"filename", "content_type", "content"}],
 * "stream"}. Unknown fields are refused, so a typo ("bbc") is a 400 and not a
 * recipient silently left out.
 *
 * Output invariants (the fuzz target checks them): CRLF line ends only, no bare
 * CR or LF, no NUL, no line over HTTP_MIME_LINE_MAX octets, 7-bit bytes only. The
 * header fields are From, To, Cc (never Bcc), Reply-To, Subject, Date,
 * Message-ID, the caller's own fields, MIME-Version and the Content-* fields;
 * the body is text/plain, text/html, multipart/alternative of both, and
 * multipart/mixed around that when there are attachments.
 *
 * Security: a value with CR, LF or NUL, a field name that is not RFC 5322 ftext,
 * or a field that would override one relevo writes, is refused with a sentence
 * saying which (never repaired: a repaired injection is still someone's attack).
 * Boundaries are random and checked against every part.
 *
 * Ownership: everything in struct http_mime_msg is the caller's after RC_OK;
 * after a failure nothing is left to free.
 */
#include "http/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "policy/policy.h"

#define MIME_EW_BYTES 42		/* UTF-8 bytes per encoded-word: 56 base64 chars,
					 * 68 in all (RFC 2047 2: at most 75), so
					 * "Subject: " and one word fit in 78 */
#define MIME_QP_COLS 76			/* RFC 2045 6.7 (5) */
#define MIME_B64_COLS 76		/* RFC 2045 6.8 */
#define MIME_B64_MAXIN (MIME_B64_COLS / 4 * 3)	/* bytes base64-encoded at once */
#define MIME_TEXT_7BIT_COLS 78		/* a text part goes 7bit only with lines this short */
#define MIME_BOUNDARY_LEN 30
#define MIME_BOUNDARY_TRIES 8

struct mime_addr {
	char name[HTTP_MIME_NAME_MAX + 1];	/* display name, UTF-8, may be empty */
	char addr[HTTP_MIME_ADDR_MAX + 1];
};

/* One MIME entity under construction: its Content-* fields and its body. */
struct mime_part {
	struct evbuffer *hdr;	/* header fields, each ending in CRLF */
	struct evbuffer *body;	/* ends in CRLF (or is empty) */
};

struct mime_build {
	const struct http_mime_opts *o;
	struct http_mime_msg *out;
	char *err;
	size_t errsz;
	json_t *root;
	struct mime_addr from;
	struct mime_addr *to, *cc, *bcc, *reply_to;
	size_t nto, ncc, nbcc, nreply_to;
};

/* The top-level fields a request may have. */
static const char *const mime_fields[] = {"from",    "to",   "cc",      "bcc",
					  "reply_to", "subject", "text", "html",
					  "headers", "attachments", "stream"};

/* Fields relevo writes itself (or that the request has dedicated fields for). */
static const char *const mime_reserved[] = {
	"from",	    "to",	  "cc",		    "bcc",	       "date",
	"message-id", "mime-version", "subject",	    "reply-to",      "return-path",
	"received",   "dkim-signature", "sender",	    "resent-from",   "resent-sender",
	/* Results of checks nobody made (issue 12); ARC-* by prefix, below. */
	"authentication-results",
};

/* ---- errors ------------------------------------------------------------------ */

static enum rc mime_fail(struct mime_build *b, enum rc rc, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum rc mime_fail(struct mime_build *b, enum rc rc, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->err, b->errsz, fmt, ap);
	va_end(ap);
	b->out->error = code;
	return rc;
}

/* ---- strings and addresses ----------------------------------------------------- */

static bool mime_has_crlf_nul(const char *s, size_t n)
{
	return memchr(s, '\r', n) || memchr(s, '\n', n) || memchr(s, '\0', n);
}

/* mime_has_ctl - a control character other than TAB (CR/LF are checked first). */
static bool mime_has_ctl(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return true;
	return false;
}

static bool mime_is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static bool mime_is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* http_addr_valid - dot-atom local part, policy_domain_valid domain. */
bool http_addr_valid(const char *addr)
{
	size_t n = strnlen(addr, HTTP_MIME_ADDR_MAX + 1);
	const char *at = strrchr(addr, '@');
	if (n == 0 || n > HTTP_MIME_ADDR_MAX || at == NULL)
		return false;
	size_t local = (size_t)(at - addr);
	if (local == 0 || local > HTTP_MIME_LOCAL_MAX || addr[0] == '.' || at[-1] == '.')
		return false;
	for (size_t i = 0; i < local; i++) {
		if (addr[i] == '.' ? addr[i + 1] == '.' : !mime_is_atext(addr[i]))
			return false;
	}
	return policy_domain_valid(at + 1);
}

static void mime_trim(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

/* mime_name_copy - a display name as given, or the inside of "a quoted \"name\"". */
static bool mime_name_copy(const char *s, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	bool quoted = n >= 2 && s[0] == '"' && s[n - 1] == '"';
	if (quoted) {
		s++;
		n -= 2;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (quoted && c == '\\' && i + 1 < n)
			c = s[++i];
		else if (quoted && c == '"')
			return false;
		if (o + 1 >= outsz)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/* mime_mailbox - "addr" or "Name <addr>" into a. */
static enum rc mime_mailbox(struct mime_build *b, const char *field, const char *s,
			    struct mime_addr *a)
{
	size_t n = strlen(s);
	if (mime_has_crlf_nul(s, n))
		return mime_fail(b, RC_INVALID, "header_injection",
				 "\"%s\": CR, LF and NUL are not allowed in an address", field);
	if (mime_has_ctl(s))
		return mime_fail(b, RC_INVALID, "invalid_address",
				 "\"%s\": control characters are not allowed in an address", field);
	mime_trim(&s, &n);
	const char *addr = s;
	size_t alen = n;
	a->name[0] = '\0';
	if (n > 0 && s[n - 1] == '>') {
		const char *lt = NULL;
		for (size_t i = n - 1; i-- > 0;)
			if (s[i] == '<') {
				lt = s + i;
				break;
			}
		if (lt == NULL)
			return mime_fail(b, RC_INVALID, "invalid_address",
					 "\"%s\": \"%s\" has '>' without '<'", field, s);
		addr = lt + 1;
		alen = (size_t)(s + n - 1 - addr);
		const char *name = s;
		size_t nlen = (size_t)(lt - s);
		mime_trim(&name, &nlen);
		if (!mime_name_copy(name, nlen, a->name, sizeof a->name))
			return mime_fail(b, RC_INVALID, "invalid_address",
					 "\"%s\": the display name is malformed or longer than %d "
					 "bytes", field, HTTP_MIME_NAME_MAX);
	}
	if (alen == 0 || alen > HTTP_MIME_ADDR_MAX)
		return mime_fail(b, RC_INVALID, "invalid_address",
				 "\"%s\": an address of 1 to %d characters is required", field,
				 HTTP_MIME_ADDR_MAX);
	memcpy(a->addr, addr, alen);
	a->addr[alen] = '\0';
	if (!http_addr_valid(a->addr))
		return mime_fail(b, RC_INVALID, "invalid_address",
				 "\"%s\": \"%s\" is not a valid address (local@domain, ASCII)",
				 field, a->addr);
	return RC_OK;
}

/* mime_mailboxes - a string or a list of strings; *out is a new array. */
static enum rc mime_mailboxes(struct mime_build *b, const char *field, struct mime_addr **out,
			      size_t *n)
{
	json_t *v = json_object_get(b->root, field);
	*out = NULL;
	*n = 0;
	if (v == NULL || json_is_null(v))
		return RC_OK;
	size_t count = json_is_array(v) ? json_array_size(v) : 1;
	if (!json_is_array(v) && !json_is_string(v))
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"%s\" must be an address or a list of addresses", field);
	if (count > b->o->max_recipients && strcmp(field, "reply_to") != 0)
		return mime_fail(b, RC_INVALID, "too_many_recipients",
				 "\"%s\" has %zu addresses; at most %zu recipients are allowed",
				 field, count, b->o->max_recipients);
	if (count > HTTP_MIME_HEADERS_MAX && strcmp(field, "reply_to") == 0)
		return mime_fail(b, RC_INVALID, "invalid_field", "\"reply_to\" has too many "
				 "addresses");
	*out = xcalloc(count ? count : 1, sizeof **out);
	for (size_t i = 0; i < count; i++) {
		json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
		if (!json_is_string(e))
			return mime_fail(b, RC_INVALID, "invalid_field",
					 "\"%s\"[%zu] must be a string", field, i);
		enum rc rc = mime_mailbox(b, field, json_string_value(e), &(*out)[i]);
		if (rc != RC_OK)
			return rc;
		(*n)++;
	}
	return RC_OK;
}

/* ---- header fields ---------------------------------------------------------------- */

/*
 * mime_fold - add "line" (a whole field without CRLF) folded before whitespace so
 * that lines stay within HTTP_MIME_FOLD where possible (RFC 5322 2.2.3); never
 * before a whitespace-only piece, so no line is blank. false if some piece cannot
 * be brought under HTTP_MIME_LINE_MAX (nothing is added then).
 */
static bool mime_fold(struct evbuffer *out, const char *line, size_t n)
{
	struct evbuffer *tmp = evbuffer_new();
	size_t col = 0, i = 0;
	bool ok = true;
	while (i < n) {
		size_t j = i;
		while (j < n && (line[j] == ' ' || line[j] == '\t'))
			j++;
		bool blank = j == n;
		while (j < n && line[j] != ' ' && line[j] != '\t')
			j++;
		size_t len = j - i;
		if (i > 0 && !blank && col > 0 && col + len > HTTP_MIME_FOLD) {
			evbuffer_add(tmp, "\r\n", 2);
			col = 0;
		}
		evbuffer_add(tmp, line + i, len);
		col += len;
		if (col > HTTP_MIME_LINE_MAX)
			ok = false;
		i = j;
	}
	if (ok) {
		evbuffer_add(tmp, "\r\n", 2);
		evbuffer_add_buffer(out, tmp);
	}
	evbuffer_free(tmp);
	return ok;
}

/* mime_b64_encode - base64 of p[0..n) appended to out (n <= MIME_B64_MAXIN). */
static void mime_b64_encode(struct evbuffer *out, const unsigned char *p, size_t n)
{
	char q[MIME_B64_MAXIN / 3 * 4 + 5];
	if (n > MIME_B64_MAXIN)
		fatal("event=bug where=mime_b64_encode n=%zu", n);
	evbuffer_add(out, q, b64_encode(p, n, q));
}

/* mime_utf8_cut - the longest prefix of s[0..n) of at most max bytes that ends on a
 * character boundary (at least one character). */
static size_t mime_utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t k = utf8_cut(s, max);
	if (k == 0) { /* cannot happen with valid UTF-8 and max >= 4 */
		k = 1;
		while (k < n && ((unsigned char)s[k] & 0xc0) == 0x80)
			k++;
	}
	return k;
}

/* mime_encoded_words - s as RFC 2047 "B" encoded-words separated by spaces. */
static void mime_encoded_words(struct evbuffer *out, const char *s)
{
	size_t n = strlen(s);
	bool first = true;
	while (n > 0) {
		size_t k = mime_utf8_cut(s, n, MIME_EW_BYTES);
		evbuffer_add_printf(out, "%s=?UTF-8?B?", first ? "" : " ");
		mime_b64_encode(out, (const unsigned char *)s, k);
		evbuffer_add(out, "?=", 2);
		s += k;
		n -= k;
		first = false;
	}
}

static bool mime_needs_quotes(const char *s)
{
	for (; *s; s++)
		if (!mime_is_atext(*s) && *s != ' ')
			return true;
	return false;
}

/* mime_add_phrase - a display name: atoms, a quoted-string, or encoded-words. */
static void mime_add_phrase(struct evbuffer *out, const char *name)
{
	if (!mime_is_ascii(name) || strstr(name, "=?") != NULL) {
		mime_encoded_words(out, name);
	} else if (mime_needs_quotes(name)) {
		evbuffer_add(out, "\"", 1);
		for (const char *p = name; *p; p++) {
			if (*p == '"' || *p == '\\')
				evbuffer_add(out, "\\", 1);
			evbuffer_add(out, p, 1);
		}
		evbuffer_add(out, "\"", 1);
	} else {
		evbuffer_add(out, name, strlen(name));
	}
}

/* mime_add_addrs - "Name: a, B <b>" folded. */
static void mime_add_addrs(struct evbuffer *out, const char *field, const struct mime_addr *a,
			   size_t n)
{
	if (n == 0)
		return;
	struct evbuffer *line = evbuffer_new();
	evbuffer_add_printf(line, "%s: ", field);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			evbuffer_add(line, ", ", 2);
		if (a[i].name[0]) {
			mime_add_phrase(line, a[i].name);
			evbuffer_add_printf(line, " <%s>", a[i].addr);
		} else {
			evbuffer_add(line, a[i].addr, strlen(a[i].addr));
		}
	}
	size_t len = evbuffer_get_length(line);
	/* Every piece (an address, an encoded-word, a word of a name) is far below
	 * HTTP_MIME_LINE_MAX, so folding cannot fail. */
	if (!mime_fold(out, (const char *)evbuffer_pullup(line, -1), len))
		fatal("event=mime_fold_failed field=%s", field);
	evbuffer_free(line);
}

/* mime_add_unstructured - "Name: value" raw and folded if it is plain printable
 * ASCII, else (or if a word is too long to fold) as encoded-words. */
static void mime_add_unstructured(struct evbuffer *out, const char *field, const char *value)
{
	char *line = xasprintf("%s: %s", field, value);
	bool plain = mime_is_ascii(value) && strstr(value, "=?") == NULL;
	if (!plain || !mime_fold(out, line, strlen(line))) {
		struct evbuffer *ew = evbuffer_new();
		evbuffer_add_printf(ew, "%s: ", field);
		mime_encoded_words(ew, value);
		size_t len = evbuffer_get_length(ew);
		if (!mime_fold(out, (const char *)evbuffer_pullup(ew, -1), len))
			fatal("event=mime_fold_failed field=%s", field);
		evbuffer_free(ew);
	}
	free(line);
}

static bool mime_is_ftext_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > HTTP_MIME_HEADER_NAME_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return false;
	return true;
}

static bool mime_is_reserved(const char *name)
{
	if (str_has_prefix_ci(name, "content-") || str_has_prefix_ci(name, "arc-"))
		return true;
	for (size_t i = 0; i < ARRAY_LEN(mime_reserved); i++)
		if (str_ieq(name, mime_reserved[i]))
			return true;
	return false;
}

/* mime_user_headers - the request's "headers": validated, then added folded. */
static enum rc mime_user_headers(struct mime_build *b, struct evbuffer *out)
{
	json_t *h = json_object_get(b->root, "headers");
	if (h == NULL || json_is_null(h))
		return RC_OK;
	if (!json_is_object(h))
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"headers\" must be an object of name: value strings");
	if (json_object_size(h) > HTTP_MIME_HEADERS_MAX)
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"headers\" has more than %d fields", HTTP_MIME_HEADERS_MAX);
	const char *name;
	json_t *v;
	json_object_foreach(h, name, v)
	{
		size_t nlen = strlen(name);
		if (mime_has_crlf_nul(name, nlen) || (nlen > 0 && strchr(name, ':') != NULL))
			return mime_fail(b, RC_INVALID, "header_injection",
					 "header name \"%.64s\": CR, LF, NUL and ':' are not allowed",
					 name);
		if (!mime_is_ftext_name(name))
			return mime_fail(b, RC_INVALID, "invalid_header",
					 "header name \"%.64s\" is not an RFC 5322 field name "
					 "(1-%d printable ASCII characters, no spaces or ':')",
					 name, HTTP_MIME_HEADER_NAME_MAX);
		if (mime_is_reserved(name))
			return mime_fail(b, RC_INVALID, "reserved_header",
					 "header \"%s\" cannot be set through \"headers\" (relevo "
					 "writes it, or the request has a field for it)", name);
		if (!json_is_string(v))
			return mime_fail(b, RC_INVALID, "invalid_header",
					 "header \"%s\": the value must be a string", name);
		const char *val = json_string_value(v);
		size_t vlen = json_string_length(v);
		if (mime_has_crlf_nul(val, vlen))
			return mime_fail(b, RC_INVALID, "header_injection",
					 "header \"%s\": CR, LF and NUL are not allowed in a value",
					 name);
		if (!mime_is_ascii(val) || mime_has_ctl(val))
			return mime_fail(b, RC_INVALID, "invalid_header",
					 "header \"%s\": the value must be printable ASCII (use RFC "
					 "2047 encoded-words for other text)", name);
		char *line = xasprintf("%s: %s", name, val);
		bool ok = mime_fold(out, line, strlen(line));
		free(line);
		if (!ok)
			return mime_fail(b, RC_INVALID, "invalid_header",
					 "header \"%s\": a word of the value is too long to fit in "
					 "%d-octet lines", name, HTTP_MIME_LINE_MAX);
	}
	return RC_OK;
}

/* ---- bodies ------------------------------------------------------------------------- */

/* mime_lines - s with every CRLF, CR or LF as CRLF, and a final CRLF if missing. */
static struct evbuffer *mime_lines(const char *s, size_t n)
{
	struct evbuffer *out = evbuffer_new();
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\r' && s[i] != '\n')
			continue;
		evbuffer_add(out, s + start, i - start);
		evbuffer_add(out, "\r\n", 2);
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	if (start < n) {
		evbuffer_add(out, s + start, n - start);
		evbuffer_add(out, "\r\n", 2);
	}
	return out;
}

/* mime_is_short_ascii - only printable ASCII and TAB, lines of at most
 * MIME_TEXT_7BIT_COLS (s uses CRLF line ends). */
static bool mime_is_short_ascii(const char *s, size_t n)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
			i++;
			col = 0;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c >= 0x7f || ++col > MIME_TEXT_7BIT_COLS)
			return false;
	}
	return true;
}

/* mime_qp - quoted-printable (RFC 2045 6.7) of CRLF-terminated lines. */
static void mime_qp(struct evbuffer *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
			evbuffer_add(out, "\r\n", 2);
			i++;
			col = 0;
			continue;
		}
		bool eol = i + 1 >= n || s[i + 1] == '\r';
		bool literal = (c >= 33 && c <= 126 && c != '=') ||
			       ((c == ' ' || c == '\t') && !eol);
		/* a line starting with "." or "From " stays safe through naive relays */
		if (col == 0 && (c == '.' || (c == 'F' && n - i >= 5 && memcmp(s + i, "From ", 5) == 0)))
			literal = false;
		size_t w = literal ? 1 : 3;
		if (col + w > MIME_QP_COLS - 1) {
			evbuffer_add(out, "=\r\n", 3);
			col = 0;
		}
		if (literal) {
			evbuffer_add(out, &s[i], 1);
		} else {
			char e[3] = {'=', hex[c >> 4], hex[c & 15]};
			evbuffer_add(out, e, 3);
		}
		col += w;
	}
}

/* mime_text_part - a text/plain or text/html leaf. */
static void mime_text_part(struct mime_part *p, const char *subtype, const char *s, size_t n)
{
	struct evbuffer *lines = mime_lines(s, n);
	size_t len = evbuffer_get_length(lines);
	const char *l = (const char *)evbuffer_pullup(lines, -1);
	p->hdr = evbuffer_new();
	p->body = evbuffer_new();
	bool plain = mime_is_short_ascii(l, len);
	evbuffer_add_printf(p->hdr,
			    "Content-Type: text/%s; charset=utf-8\r\n"
			    "Content-Transfer-Encoding: %s\r\n",
			    subtype, plain ? "7bit" : "quoted-printable");
	if (plain)
		evbuffer_add_buffer(p->body, lines);
	else
		mime_qp(p->body, l, len);
	evbuffer_free(lines);
}

/* mime_b64_decode - strict base64 (whitespace between groups is skipped); false
 * on a bad character, bad padding or a truncated group. */
static bool mime_b64_decode(const char *s, size_t n, struct evbuffer *out)
{
	unsigned v = 0;
	int k = 0, pad = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			if (k < 2)
				return false;
			pad++;
			v <<= 6;
			if (++k == 4) {
				unsigned char o[2] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8)};
				evbuffer_add(out, o, (size_t)(3 - pad));
				k = 0;
				v = 0;
			}
			continue;
		}
		int d = b64_value((unsigned char)c);
		if (d < 0 || pad > 0)
			return false;
		v = (v << 6) | (unsigned)d;
		if (++k == 4) {
			unsigned char o[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8),
					      (unsigned char)v};
			evbuffer_add(out, o, 3);
			k = 0;
			v = 0;
		}
	}
	return k == 0;
}

/* mime_b64_lines - base64 of a buffer in MIME_B64_COLS-column CRLF lines. */
static void mime_b64_lines(struct evbuffer *out, struct evbuffer *raw)
{
	size_t n = evbuffer_get_length(raw);
	const unsigned char *p = evbuffer_pullup(raw, -1);
	size_t per_line = MIME_B64_COLS / 4 * 3;
	for (size_t i = 0; i < n; i += per_line) {
		mime_b64_encode(out, p + i, MIN(per_line, n - i));
		evbuffer_add(out, "\r\n", 2);
	}
}

static bool mime_is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("!#$&^_.+-", c)))
			return false;
	}
	return true;
}

/* mime_content_type_ok - "type/subtype" tokens, then nothing or "; parameters" of
 * printable ASCII. */
static bool mime_content_type_ok(const char *ct)
{
	const char *slash = strchr(ct, '/');
	if (strlen(ct) > 200 || slash == NULL || !mime_is_token(ct, (size_t)(slash - ct)))
		return false;
	const char *end = slash + 1 + strcspn(slash + 1, "; \t");
	if (!mime_is_token(slash + 1, (size_t)(end - slash - 1)))
		return false;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end == '\0')
		return true;
	if (*end != ';' || end[1 + strspn(end + 1, " \t")] == '\0')
		return false;
	for (const char *p = end; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* mime_content_type_names - does a content type's parameter section mention
 * "name" anywhere (name=, NAME*0*=, inside a comment or a quoted value)? Then a
 * reader could take a second name from it that disagrees with "filename"
 * (issue 12); matching the letters anywhere leaves no parser difference to
 * exploit, at the price of refusing a rare value that merely contains them. */
static bool mime_content_type_names(const char *ct)
{
	const char *params = strchr(ct, ';');
	if (params == NULL)
		return false;
	for (const char *p = params; *p; p++)
		if (strncasecmp(p, "name", 4) == 0)
			return true;
	return false;
}

/* mime_add_filename - the filename parameter: a quoted-string when ASCII, else
 * RFC 2231 filename*=UTF-8''percent-encoded. */
static void mime_add_filename(struct evbuffer *out, const char *param, const char *name)
{
	if (mime_is_ascii(name)) {
		evbuffer_add_printf(out, ";\r\n\t%s=\"", param);
		for (const char *p = name; *p; p++) {
			if (*p == '"' || *p == '\\')
				evbuffer_add(out, "\\", 1);
			evbuffer_add(out, p, 1);
		}
		evbuffer_add(out, "\"", 1);
		return;
	}
	evbuffer_add_printf(out, ";\r\n\t%s*=UTF-8''", param);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (mime_is_token((const char *)p, 1) && *p != '\'' && *p != '%')
			evbuffer_add(out, p, 1);
		else
			evbuffer_add_printf(out, "%%%02X", *p);
	}
}

/* mime_attachment - one "attachments" entry as a base64 leaf. */
static enum rc mime_attachment(struct mime_build *b, json_t *a, size_t i, struct mime_part *p)
{
	if (!json_is_object(a))
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu] must be an object", i);
	const char *k;
	json_t *v;
	json_object_foreach(a, k, v)
	{
		if (strcmp(k, "filename") && strcmp(k, "content_type") && strcmp(k, "content"))
			return mime_fail(b, RC_INVALID, "invalid_attachment",
					 "attachments[%zu]: unknown field \"%.64s\"", i, k);
		if (!json_is_string(v))
			return mime_fail(b, RC_INVALID, "invalid_attachment",
					 "attachments[%zu].%s must be a string", i, k);
	}
	json_t *fn = json_object_get(a, "filename"), *ct = json_object_get(a, "content_type");
	json_t *content = json_object_get(a, "content");
	if (fn == NULL || content == NULL)
		return mime_fail(b, RC_INVALID, "missing_field",
				 "attachments[%zu] needs \"filename\" and \"content\" (base64)", i);
	const char *name = json_string_value(fn);
	size_t nlen = json_string_length(fn);
	if (mime_has_crlf_nul(name, nlen))
		return mime_fail(b, RC_INVALID, "header_injection",
				 "attachments[%zu].filename: CR, LF and NUL are not allowed", i);
	if (nlen == 0 || nlen > HTTP_MIME_FILENAME_MAX || mime_has_ctl(name))
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu].filename must be 1-%d bytes without control "
				 "characters", i, HTTP_MIME_FILENAME_MAX);
	const char *type = ct ? json_string_value(ct) : "application/octet-stream";
	if (ct && mime_has_crlf_nul(type, json_string_length(ct)))
		return mime_fail(b, RC_INVALID, "header_injection",
				 "attachments[%zu].content_type: CR, LF and NUL are not allowed", i);
	if (!mime_content_type_ok(type))
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu].content_type \"%.64s\" is not a MIME type "
				 "(type/subtype)", i, type);
	if (mime_content_type_names(type))
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu].content_type: a name parameter is not allowed "
				 "(relevo writes name and filename from \"filename\")", i);
	if (str_has_prefix_ci(type, "multipart/") || str_has_prefix_ci(type, "message/"))
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu].content_type: multipart/ and message/ types "
				 "cannot be sent base64-encoded", i);
	struct evbuffer *raw = evbuffer_new();
	if (!mime_b64_decode(json_string_value(content), json_string_length(content), raw)) {
		evbuffer_free(raw);
		return mime_fail(b, RC_INVALID, "invalid_attachment",
				 "attachments[%zu].content is not valid base64", i);
	}
	p->hdr = evbuffer_new();
	p->body = evbuffer_new();
	evbuffer_add_printf(p->hdr, "Content-Type: %s", type);
	mime_add_filename(p->hdr, "name", name);
	evbuffer_add(p->hdr, "\r\nContent-Disposition: attachment", 33);
	mime_add_filename(p->hdr, "filename", name);
	evbuffer_add(p->hdr, "\r\nContent-Transfer-Encoding: base64\r\n", 37);
	mime_b64_lines(p->body, raw);
	evbuffer_free(raw);
	return RC_OK;
}

static void mime_part_free(struct mime_part *p)
{
	if (p->hdr)
		evbuffer_free(p->hdr);
	if (p->body)
		evbuffer_free(p->body);
	p->hdr = p->body = NULL;
}

/* mime_boundary - random, and checked not to occur in any of the parts. */
static void mime_boundary(const struct mime_part *parts, size_t n, char out[MIME_BOUNDARY_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int tries = 0; tries < MIME_BOUNDARY_TRIES; tries++) {
		unsigned char r[12];
		if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
			/* no entropy: any value works, the check below keeps it safe */
			uint64_t t = (uint64_t)time_mono_ms() * 0x9E3779B97F4A7C15ULL + (uint64_t)tries;
			memcpy(r, &t, 8);
			memset(r + 8, tries, 4);
		}
		memcpy(out, "=_rlv_", 6);
		for (size_t i = 0; i < sizeof r; i++) {
			out[6 + 2 * i] = hex[r[i] >> 4];
			out[7 + 2 * i] = hex[r[i] & 15];
		}
		out[MIME_BOUNDARY_LEN] = '\0';
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = evbuffer_search(parts[i].body, out, MIME_BOUNDARY_LEN, NULL).pos >= 0 ||
				evbuffer_search(parts[i].hdr, out, MIME_BOUNDARY_LEN, NULL).pos >= 0;
		if (!found)
			return;
	}
	fatal("event=mime_boundary_collision tries=%d", MIME_BOUNDARY_TRIES);
}

/* mime_multipart - the parts (consumed) as one multipart/subtype entity. */
static void mime_multipart(struct mime_part *parts, size_t n, const char *subtype,
			   struct mime_part *out)
{
	char bnd[MIME_BOUNDARY_LEN + 1];
	mime_boundary(parts, n, bnd);
	out->hdr = evbuffer_new();
	out->body = evbuffer_new();
	evbuffer_add_printf(out->hdr, "Content-Type: multipart/%s;\r\n\tboundary=\"%s\"\r\n",
			    subtype, bnd);
	for (size_t i = 0; i < n; i++) {
		/* RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter,
		 * so each part keeps its own last line end. */
		evbuffer_add_printf(out->body, "%s--%s\r\n", i ? "\r\n" : "", bnd);
		evbuffer_add_buffer(out->body, parts[i].hdr);
		evbuffer_add(out->body, "\r\n", 2);
		evbuffer_add_buffer(out->body, parts[i].body);
		mime_part_free(&parts[i]);
	}
	evbuffer_add_printf(out->body, "\r\n--%s--\r\n", bnd);
}

static const char *mime_opt_string(struct mime_build *b, const char *field, enum rc *rc)
{
	json_t *v = json_object_get(b->root, field);
	*rc = RC_OK;
	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*rc = mime_fail(b, RC_INVALID, "invalid_field", "\"%s\" must be a string", field);
		return NULL;
	}
	return json_string_value(v);
}

/* mime_body - the whole body as one entity: text, html, alternative, mixed. */
static enum rc mime_body(struct mime_build *b, struct mime_part *out)
{
	enum rc rc;
	const char *text = mime_opt_string(b, "text", &rc);
	if (rc != RC_OK)
		return rc;
	const char *html = mime_opt_string(b, "html", &rc);
	if (rc != RC_OK)
		return rc;
	json_t *att = json_object_get(b->root, "attachments");
	if (att != NULL && json_is_null(att))
		att = NULL;
	if (att != NULL && !json_is_array(att))
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"attachments\" must be a list of objects");
	size_t natt = att ? json_array_size(att) : 0;
	if (natt > HTTP_MIME_ATTACH_MAX)
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "at most %d attachments are allowed", HTTP_MIME_ATTACH_MAX);
	if (text == NULL && html == NULL && natt == 0)
		return mime_fail(b, RC_INVALID, "missing_field",
				 "the message needs \"text\", \"html\" or \"attachments\"");
	struct mime_part *parts = xcalloc(natt + 2, sizeof *parts);
	size_t n = 0;
	if (text)
		mime_text_part(&parts[n++], "plain", text,
			       json_string_length(json_object_get(b->root, "text")));
	if (html)
		mime_text_part(&parts[n++], "html", html,
			       json_string_length(json_object_get(b->root, "html")));
	if (n == 2) {
		struct mime_part alt;
		mime_multipart(parts, 2, "alternative", &alt);
		parts[0] = alt;
		n = 1;
	}
	rc = RC_OK;
	for (size_t i = 0; i < natt && rc == RC_OK; i++)
		rc = mime_attachment(b, json_array_get(att, i), i, &parts[n++]);
	if (rc == RC_OK && natt > 0) {
		mime_multipart(parts, n, "mixed", out);
	} else if (rc == RC_OK) {
		*out = parts[0];
		parts[0] = (struct mime_part){0};
	}
	for (size_t i = 0; i < n; i++)
		mime_part_free(&parts[i]);
	free(parts);
	return rc;
}

/* ---- the request --------------------------------------------------------------------- */

static enum rc mime_check_fields(struct mime_build *b)
{
	const char *k;
	json_t *v;
	json_object_foreach(b->root, k, v)
	{
		bool known = false;
		for (size_t i = 0; i < ARRAY_LEN(mime_fields) && !known; i++)
			known = strcmp(k, mime_fields[i]) == 0;
		if (!known)
			return mime_fail(b, RC_INVALID, "unknown_field",
					 "unknown field \"%.64s\" (known: from, to, cc, bcc, "
					 "reply_to, subject, text, html, headers, attachments, "
					 "stream)", k);
	}
	return RC_OK;
}

static enum rc mime_stream(struct mime_build *b)
{
	enum rc rc;
	const char *s = mime_opt_string(b, "stream", &rc);
	if (rc != RC_OK || s == NULL)
		return rc;
	if (strcmp(s, "bulk") == 0)
		b->out->bulk = true;
	else if (strcmp(s, "transactional") != 0)
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"stream\" must be \"transactional\" or \"bulk\"");
	return RC_OK;
}

static bool mime_rcpt_seen(const struct http_mime_msg *m, const char *addr)
{
	for (size_t i = 0; i < m->nrcpt; i++)
		if (str_ieq(m->rcpt[i], addr))
			return true;
	return false;
}

/* mime_envelope - sender and the deduplicated recipients. */
static enum rc mime_envelope(struct mime_build *b)
{
	struct http_mime_msg *m = b->out;
	size_t total = b->nto + b->ncc + b->nbcc;
	if (total == 0)
		return mime_fail(b, RC_INVALID, "missing_field",
				 "at least one recipient is required in \"to\", \"cc\" or \"bcc\"");
	m->rcpt = xcalloc(total, sizeof *m->rcpt);
	const struct mime_addr *lists[3] = {b->to, b->cc, b->bcc};
	size_t counts[3] = {b->nto, b->ncc, b->nbcc};
	for (int l = 0; l < 3; l++)
		for (size_t i = 0; i < counts[l]; i++)
			if (!mime_rcpt_seen(m, lists[l][i].addr))
				m->rcpt[m->nrcpt++] = xstrdup(lists[l][i].addr);
	if (m->nrcpt > b->o->max_recipients)
		return mime_fail(b, RC_INVALID, "too_many_recipients",
				 "%zu recipients; at most %zu are allowed", m->nrcpt,
				 b->o->max_recipients);
	m->from = xstrdup(b->from.addr);
	m->from_domain = xstrdup(strrchr(b->from.addr, '@') + 1);
	str_lower(m->from_domain);
	return RC_OK;
}

static enum rc mime_addresses(struct mime_build *b)
{
	json_t *from = json_object_get(b->root, "from");
	if (from == NULL || json_is_null(from))
		return mime_fail(b, RC_INVALID, "missing_field", "\"from\" is required");
	if (!json_is_string(from))
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"from\" must be one address (a string)");
	enum rc rc = mime_mailbox(b, "from", json_string_value(from), &b->from);
	if (rc == RC_OK)
		rc = mime_mailboxes(b, "to", &b->to, &b->nto);
	if (rc == RC_OK)
		rc = mime_mailboxes(b, "cc", &b->cc, &b->ncc);
	if (rc == RC_OK)
		rc = mime_mailboxes(b, "bcc", &b->bcc, &b->nbcc);
	if (rc == RC_OK)
		rc = mime_mailboxes(b, "reply_to", &b->reply_to, &b->nreply_to);
	return rc;
}

static enum rc mime_subject(struct mime_build *b, struct evbuffer *out)
{
	enum rc rc;
	const char *s = mime_opt_string(b, "subject", &rc);
	if (rc != RC_OK || s == NULL)
		return rc;
	size_t n = json_string_length(json_object_get(b->root, "subject"));
	if (mime_has_crlf_nul(s, n))
		return mime_fail(b, RC_INVALID, "header_injection",
				 "\"subject\": CR, LF and NUL are not allowed");
	if (mime_has_ctl(s))
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"subject\": control characters are not allowed");
	if (n > HTTP_MIME_SUBJECT_MAX)
		return mime_fail(b, RC_INVALID, "invalid_field",
				 "\"subject\" is longer than %d bytes", HTTP_MIME_SUBJECT_MAX);
	mime_add_unstructured(out, "Subject", s);
	return RC_OK;
}

/* mime_headers - the header section (without the final empty line). */
static enum rc mime_headers(struct mime_build *b, struct evbuffer *out)
{
	char date[64];
	mime_add_addrs(out, "From", &b->from, 1);
	mime_add_addrs(out, "To", b->to, b->nto);
	mime_add_addrs(out, "Cc", b->cc, b->ncc);
	mime_add_addrs(out, "Reply-To", b->reply_to, b->nreply_to);
	enum rc rc = mime_subject(b, out);
	if (rc != RC_OK)
		return rc;
	char idstr[ID_STR_LEN + 1];
	id_format(b->o->id, idstr);
	time_rfc5322(b->o->time ? b->o->time : time_now_ms() / 1000, date, sizeof date);
	evbuffer_add_printf(out, "Date: %s\r\n", date);
	evbuffer_add_printf(out, "Message-ID: <%s@%s>\r\n", idstr, b->o->hostname);
	rc = mime_user_headers(b, out);
	if (rc == RC_OK)
		evbuffer_add(out, "MIME-Version: 1.0\r\n", 19);
	return rc;
}

static void mime_build_fini(struct mime_build *b)
{
	free(b->to);
	free(b->cc);
	free(b->bcc);
	free(b->reply_to);
	json_decref(b->root);
}

static enum rc mime_build_all(struct mime_build *b)
{
	struct http_mime_msg *m = b->out;
	enum rc rc = mime_check_fields(b);
	if (rc == RC_OK)
		rc = mime_stream(b);
	if (rc == RC_OK)
		rc = mime_addresses(b);
	if (rc == RC_OK)
		rc = mime_envelope(b);
	if (rc != RC_OK)
		return rc;
	m->msg = evbuffer_new();
	rc = mime_headers(b, m->msg);
	struct mime_part body = {0};
	if (rc == RC_OK)
		rc = mime_body(b, &body);
	if (rc != RC_OK)
		return rc;
	evbuffer_add_buffer(m->msg, body.hdr);
	evbuffer_add(m->msg, "\r\n", 2);
	evbuffer_add_buffer(m->msg, body.body);
	mime_part_free(&body);
	size_t size = evbuffer_get_length(m->msg);
	if (size > b->o->max_size)
		return mime_fail(b, RC_LIMIT, "too_large",
				 "the message would be %zu bytes; the limit is %llu", size,
				 (unsigned long long)b->o->max_size);
	return RC_OK;
}

/* http_mime_build - parse, check and build (see http.h). */
enum rc http_mime_build(const char *json, size_t len, const struct http_mime_opts *o,
			struct http_mime_msg *out, char *err, size_t errsz)
{
	struct mime_build b = {.o = o, .out = out, .err = err, .errsz = errsz};
	json_error_t jerr;
	memset(out, 0, sizeof *out);
	if (errsz > 0)
		err[0] = '\0';
	b.root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	enum rc rc;
	if (b.root == NULL)
		rc = mime_fail(&b, RC_INVALID, "invalid_json", "malformed JSON at line %d column %d: %s",
			       jerr.line, jerr.column, jerr.text);
	else if (!json_is_object(b.root))
		rc = mime_fail(&b, RC_INVALID, "invalid_json", "the request must be a JSON object");
	else
		rc = mime_build_all(&b);
	mime_build_fini(&b);
	if (rc != RC_OK) {
		const char *code = out->error;
		http_mime_msg_fini(out);
		out->error = code;
	}
	return rc;
}

/* http_mime_msg_fini - free a built message's parts. */
void http_mime_msg_fini(struct http_mime_msg *m)
{
	free(m->from);
	free(m->from_domain);
	for (size_t i = 0; i < m->nrcpt; i++)
		free(m->rcpt[i]);
	free(m->rcpt);
	if (m->msg)
		evbuffer_free(m->msg);
	memset(m, 0, sizeof *m);
}
