/*
 * test_http_mime.c - JSON to MIME (src/http/http_mime.c): every body shape,
 * attachments decoded back byte for byte, quoted-printable decoded back,
 * encoded-word subjects and names, folding and line lengths, Bcc kept out of the
 * header but in the envelope, and every injection or override attempt refused
 * with a code and a sentence that names the field.
 *
 * The checks parse the output with small independent decoders written here
 * (base64, quoted-printable, RFC 2047 "B" words, unfolding), not with the
 * encoder's own code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "http/http.h"
#include "unit_util.h"

static const struct http_mime_opts opts = {
	.hostname = "relay.test",
	.id = 0x0123456789ABCDEFULL,
	.time = 1795698339,
	.max_recipients = 5,
	.max_size = 1048576,
};

/* A built message as a NUL-terminated string (the caller frees both). */
struct built {
	enum rc rc;
	struct http_mime_msg m;
	char err[512];
	char *text;
	size_t len;
};

static void build_opts(struct built *b, const char *json, const struct http_mime_opts *o)
{
	memset(b, 0, sizeof *b);
	b->rc = http_mime_build(json, strlen(json), o, &b->m, b->err, sizeof b->err);
	if (b->rc == RC_OK) {
		b->len = evbuffer_get_length(b->m.msg);
		b->text = malloc(b->len + 1);
		evbuffer_copyout(b->m.msg, b->text, b->len);
		b->text[b->len] = '\0';
	}
}

static void build(struct built *b, const char *json)
{
	build_opts(b, json, &opts);
}

static void built_free(struct built *b)
{
	free(b->text);
	http_mime_msg_fini(&b->m);
}

/* check_wire - CRLF only, lines <= 998 octets, 7-bit, no NUL. */
static void check_wire(const char *label, const char *s, size_t n)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		CHECK(label, c != 0 && c < 0x80);
		if (c == '\r') {
			CHECK(label, i + 1 < n && s[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		CHECK(label, c != '\n');
		col++;
		CHECK(label, col <= 998);
	}
	CHECK(label, n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
}

/* max_line - the longest line of s (without CRLF). */
static size_t max_line(const char *s)
{
	size_t best = 0;
	while (*s) {
		size_t n = strcspn(s, "\r");
		if (n > best)
			best = n;
		s += n;
		s += *s ? 2 : 0;
	}
	return best;
}

/* header_end - the offset of the empty line ending the header section of s. */
static const char *body_of(const char *s)
{
	const char *e = strstr(s, "\r\n\r\n");
	return e ? e + 4 : NULL;
}

/* field - the unfolded value of the first field called name in the header section
 * of s (a heap string), or NULL. */
static char *field(const char *s, const char *name)
{
	const char *end = strstr(s, "\r\n\r\n");
	size_t nl = strlen(name);
	const char *p = s;
	while (p && p < end) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			char *out = malloc(strlen(v) + 1);
			size_t o = 0;
			for (; v < end + 2; v++) {
				if (v[0] == '\r' && v[1] == '\n') {
					if (v[2] != ' ' && v[2] != '\t')
						break;
					v++;
					continue;
				}
				out[o++] = *v;
			}
			out[o] = '\0';
			return out;
		}
		p = strstr(p, "\r\n");
		p = p ? p + 2 : NULL;
	}
	return NULL;
}

/* b64_decode_lines - base64 over lines (CRLF and padding ignored); returns the
 * byte count. */
static size_t b64_decode_lines(const char *s, size_t n, unsigned char *out)
{
	unsigned v = 0;
	int k = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int d = b64_value((unsigned char)s[i]);
		if (d < 0)
			continue;
		v = v << 6 | (unsigned)d;
		if (++k == 4) {
			out[o++] = (unsigned char)(v >> 16);
			out[o++] = (unsigned char)(v >> 8);
			out[o++] = (unsigned char)v;
			k = 0;
			v = 0;
		}
	}
	if (k == 2)
		out[o++] = (unsigned char)(v >> 4);
	if (k == 3) {
		out[o++] = (unsigned char)(v >> 10);
		out[o++] = (unsigned char)(v >> 2);
	}
	return o;
}

static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* qp_decode - RFC 2045 6.7 (strict about hex digits; soft breaks joined). */
static char *qp_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
		} else if (s[i] == '=') {
			assert_true(i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0);
			out[o++] = (char)(hexv(s[i + 1]) << 4 | hexv(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

/* ew_decode - a header value of "=?UTF-8?B?...?=" words (separated by spaces). */
static char *ew_decode(const char *v)
{
	char *out = malloc(strlen(v) + 1);
	size_t o = 0;
	while (*v) {
		if (*v == ' ') {
			v++;
			continue;
		}
		assert_memory_equal(v, "=?UTF-8?B?", 10);
		const char *end = strstr(v + 10, "?=");
		assert_non_null(end);
		assert_true(end + 2 - v <= 75); /* RFC 2047 2 */
		o += b64_decode_lines(v + 10, (size_t)(end - v - 10), (unsigned char *)out + o);
		v = end + 2;
	}
	out[o] = '\0';
	return out;
}

/* boundary_of - the boundary parameter of a Content-Type value (heap). */
static char *boundary_of(const char *ct)
{
	const char *b = strstr(ct, "boundary=\"");
	assert_non_null(b);
	b += 10;
	return strndup(b, strcspn(b, "\""));
}

/* part - the nth (0-based) part between delimiters of boundary in body, as
 * "headers\r\n\r\ncontent" (heap), or NULL. */
static char *part(const char *body, const char *boundary, int nth)
{
	char delim[128];
	snprintf(delim, sizeof delim, "--%s\r\n", boundary);
	const char *p = body;
	for (int i = 0; i <= nth; i++) {
		p = strstr(p, delim);
		if (p == NULL)
			return NULL;
		p += strlen(delim);
	}
	snprintf(delim, sizeof delim, "\r\n--%s", boundary);
	const char *end = strstr(p, delim);
	assert_non_null(end);
	return strndup(p, (size_t)(end - p));
}

/* ---- body shapes --------------------------------------------------------------- */

static void test_text_only(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"alice@example.com\",\"to\":\"bob@example.net\",\"subject\":\"Hi\","
		  "\"text\":\"Hello.\\nSecond line.\"}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("text only", b.text, b.len);
	char *ct = field(b.text, "Content-Type"), *cte = field(b.text, "Content-Transfer-Encoding");
	assert_string_equal(ct, "text/plain; charset=utf-8");
	assert_string_equal(cte, "7bit");
	assert_string_equal(body_of(b.text), "Hello.\r\nSecond line.\r\n");
	char *v = field(b.text, "MIME-Version"), *mid = field(b.text, "Message-ID");
	char *date = field(b.text, "Date"), *from = field(b.text, "From");
	assert_string_equal(v, "1.0");
	assert_string_equal(mid, "<0123456789ABCDEF@relay.test>");
	assert_non_null(strstr(date, "2026"));
	assert_string_equal(from, "alice@example.com");
	assert_string_equal(b.m.from, "alice@example.com");
	assert_string_equal(b.m.from_domain, "example.com");
	assert_int_equal(b.m.nrcpt, 1);
	assert_false(b.m.bulk);
	free(ct), free(cte), free(v), free(mid), free(date), free(from);
	built_free(&b);
}

static void test_html_only(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"alice@example.com\",\"to\":\"bob@example.net\","
		  "\"html\":\"<p>Hello</p>\"}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("html only", b.text, b.len);
	char *ct = field(b.text, "Content-Type"), *subject = field(b.text, "Subject");
	assert_string_equal(ct, "text/html; charset=utf-8");
	assert_null(subject); /* none given: none written */
	assert_string_equal(body_of(b.text), "<p>Hello</p>\r\n");
	free(ct);
	built_free(&b);
}

static void test_alternative(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"alice@example.com\",\"to\":\"bob@example.net\","
		  "\"text\":\"plain\",\"html\":\"<b>rich</b>\",\"stream\":\"bulk\"}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("alternative", b.text, b.len);
	assert_true(b.m.bulk);
	char *ct = field(b.text, "Content-Type");
	assert_true(strncmp(ct, "multipart/alternative;", 22) == 0);
	char *bnd = boundary_of(ct);
	char *p0 = part(body_of(b.text), bnd, 0), *p1 = part(body_of(b.text), bnd, 1);
	assert_non_null(p0);
	assert_non_null(p1);
	assert_null(part(body_of(b.text), bnd, 2));
	char *ct0 = field(p0, "Content-Type"), *ct1 = field(p1, "Content-Type");
	assert_string_equal(ct0, "text/plain; charset=utf-8");
	assert_string_equal(ct1, "text/html; charset=utf-8");
	assert_string_equal(body_of(p0), "plain\r\n");
	assert_string_equal(body_of(p1), "<b>rich</b>\r\n");
	char close[128];
	snprintf(close, sizeof close, "\r\n--%s--\r\n", bnd);
	assert_non_null(strstr(b.text, close));
	free(ct), free(bnd), free(p0), free(p1), free(ct0), free(ct1);
	built_free(&b);
}

/* attachment_json - base64 of n bytes of a pattern covering every byte value. */
static char *attachment_json(size_t n, unsigned char *raw)
{
	for (size_t i = 0; i < n; i++)
		raw[i] = (unsigned char)(i * 7 + i / 256);
	struct evbuffer *e = evbuffer_new();
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)raw[i] << 16 | (i + 1 < n ? (unsigned)raw[i + 1] << 8 : 0) |
			     (i + 2 < n ? raw[i + 2] : 0);
		char q[4] = {t[v >> 18 & 63], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=',
			     i + 2 < n ? t[v & 63] : '='};
		evbuffer_add(e, q, 4);
	}
	size_t len = evbuffer_get_length(e);
	char *s = len ? strndup((const char *)evbuffer_pullup(e, -1), len) : strdup("");
	evbuffer_free(e);
	return s;
}

static void test_attachments_round_trip(void **state)
{
	static const size_t sizes[] = {0, 1, 2, 3, 57, 58, 1000, 70000};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char label[64];
		snprintf(label, sizeof label, "attachment of %zu bytes", sizes[i]);
		unsigned char *raw = malloc(sizes[i] + 1), *back = malloc(sizes[i] + 16);
		char *b64 = attachment_json(sizes[i], raw);
		char *json;
		assert_true(asprintf(&json,
				     "{\"from\":\"alice@example.com\",\"to\":\"bob@example.net\","
				     "\"text\":\"see attached\",\"html\":\"<p>see</p>\","
				     "\"attachments\":[{\"filename\":\"data.bin\",\"content\":\"%s\"},"
				     "{\"filename\":\"r\\u00e9sum\\u00e9 \\\"1\\\".pdf\","
				     "\"content_type\":\"application/pdf\",\"content\":\"aGk=\"}]}",
				     b64) > 0);
		struct built b;
		build(&b, json);
		CHECK(label, b.rc == RC_OK);
		check_wire(label, b.text, b.len);
		char *ct = field(b.text, "Content-Type");
		CHECK(label, strncmp(ct, "multipart/mixed;", 16) == 0);
		char *bnd = boundary_of(ct);
		const char *body = body_of(b.text);
		char *alt = part(body, bnd, 0), *a1 = part(body, bnd, 1), *a2 = part(body, bnd, 2);
		CHECK(label, alt && a1 && a2 && part(body, bnd, 3) == NULL);
		char *altct = field(alt, "Content-Type");
		CHECK(label, strncmp(altct, "multipart/alternative;", 22) == 0);
		char *a1ct = field(a1, "Content-Type"), *a1cd = field(a1, "Content-Disposition");
		char *a1cte = field(a1, "Content-Transfer-Encoding");
		CHECK(label, strcmp(a1ct, "application/octet-stream;\tname=\"data.bin\"") == 0);
		CHECK(label, strcmp(a1cd, "attachment;\tfilename=\"data.bin\"") == 0);
		CHECK(label, strcmp(a1cte, "base64") == 0);
		const char *content = body_of(a1);
		CHECK(label, max_line(content) <= 76);
		size_t n = b64_decode_lines(content, strlen(content), back);
		CHECK(label, n == sizes[i] && memcmp(raw, back, n) == 0);
		/* a non-ASCII filename goes RFC 2231 */
		char *a2cd = field(a2, "Content-Disposition");
		CHECK(label, strstr(a2cd, "filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf") != NULL);
		CHECK(label, strcmp(body_of(a2), "aGk=\r\n") == 0);
		free(raw), free(back), free(b64), free(json), free(ct), free(bnd), free(alt);
		free(a1), free(a2), free(altct), free(a1ct), free(a1cd), free(a1cte), free(a2cd);
		built_free(&b);
	}
}

static void test_attachments_only(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"alice@example.com\",\"to\":\"bob@example.net\","
		  "\"attachments\":[{\"filename\":\"a.txt\",\"content_type\":\"text/plain; "
		  "charset=us-ascii\",\"content\":\"aGVs\\nbG8=\"}]}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("attachments only", b.text, b.len);
	char *ct = field(b.text, "Content-Type");
	char *bnd = boundary_of(ct);
	char *a = part(body_of(b.text), bnd, 0);
	char *act = field(a, "Content-Type");
	assert_string_equal(act, "text/plain; charset=us-ascii;\tname=\"a.txt\"");
	assert_string_equal(body_of(a), "aGVsbG8=\r\n");
	assert_null(part(body_of(b.text), bnd, 1));
	free(ct), free(bnd), free(a), free(act);
	built_free(&b);
}

static const struct {
	const char *label;
	const char *json_text;	/* JSON string literal contents */
	const char *decoded;	/* the text part decoded, CRLF line ends */
	const char *cte;
} text_cases[] = {
	{"short ascii", "a\\nb", "a\r\nb\r\n", "7bit"},
	{"CRLF, CR and LF all become CRLF", "a\\r\\nb\\rc\\nd", "a\r\nb\r\nc\r\nd\r\n", "7bit"},
	{"utf-8", "caf\\u00e9 \\u20ac", "caf\xc3\xa9 \xe2\x82\xac\r\n", "quoted-printable"},
	{"equals sign in a long line",
	 "x=1 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	 "x=1 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "\r\n", "quoted-printable"},
	{"trailing space and tab", "caf\\u00e9 \\nend\\t", "caf\xc3\xa9 \r\nend\t\r\n",
	 "quoted-printable"},
	{"dot and From at line start", "\\u00e9\\n.\\nFrom me\\n..x",
	 "\xc3\xa9\r\n.\r\nFrom me\r\n..x\r\n", "quoted-printable"},
	{"control character", "bell\\u0007", "bell\a\r\n", "quoted-printable"},
};

static void test_text_encodings(void **state)
{
	for (size_t i = 0; i < sizeof text_cases / sizeof text_cases[0]; i++) {
		const char *label = text_cases[i].label;
		char *json;
		assert_true(asprintf(&json, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
				     "\"text\":\"%s\"}", text_cases[i].json_text) > 0);
		struct built b;
		build(&b, json);
		CHECK(label, b.rc == RC_OK);
		check_wire(label, b.text, b.len);
		char *cte = field(b.text, "Content-Transfer-Encoding");
		CHECK(label, strcmp(cte, text_cases[i].cte) == 0);
		const char *body = body_of(b.text);
		CHECK(label, max_line(body) <= 78);
		char *dec = strcmp(cte, "quoted-printable") == 0 ? qp_decode(body, strlen(body))
								  : strdup(body);
		if (strcmp(dec, text_cases[i].decoded) != 0)
			fail_msg("case '%s': decoded %s", label, dec);
		free(json), free(cte), free(dec);
		built_free(&b);
	}
}

static void test_long_text_lines(void **state)
{
	/* one 5000-character line of words, and one of 3000 characters without spaces */
	char *words = malloc(5001), *solid = malloc(3001);
	for (int i = 0; i < 5000; i++)
		words[i] = i % 7 == 6 ? ' ' : 'a' + i % 26;
	words[5000] = '\0';
	memset(solid, 'z', 3000);
	solid[3000] = '\0';
	char *json;
	assert_true(asprintf(&json, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
			     "\"text\":\"%s\\n%s\",\"html\":\"%s\"}", words, solid, solid) > 0);
	struct built b;
	build(&b, json);
	assert_int_equal(b.rc, RC_OK);
	check_wire("long lines", b.text, b.len);
	assert_true(max_line(b.text) <= 78);
	char *ct = field(b.text, "Content-Type"), *bnd = boundary_of(ct);
	char *p0 = part(body_of(b.text), bnd, 0);
	char *dec = qp_decode(body_of(p0), strlen(body_of(p0)));
	char *want;
	assert_true(asprintf(&want, "%s\r\n%s\r\n", words, solid) > 0);
	assert_string_equal(dec, want);
	free(words), free(solid), free(json), free(ct), free(bnd), free(p0), free(dec), free(want);
	built_free(&b);
}

/* ---- header fields ---------------------------------------------------------------- */

static const struct {
	const char *label;
	const char *subject_json;
	const char *subject;	/* what a reader decodes */
	bool encoded;
} subject_cases[] = {
	{"ascii", "Hello world", "Hello world", false},
	{"utf-8", "H\\u00e9llo w\\u00f6rld \\u2603", "H\xc3\xa9llo w\xc3\xb6rld \xe2\x98\x83", true},
	{"looks like an encoded-word", "=?utf-8?q?x?=", "=?utf-8?q?x?=", true},
	{"long utf-8 (many words, split on characters)",
	 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
	 "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9",
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
	 true},
	{"long ascii, folded at spaces",
	 "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
	 "fifteen sixteen seventeen eighteen nineteen twenty",
	 "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
	 "fifteen sixteen seventeen eighteen nineteen twenty",
	 false},
};

static void test_subjects(void **state)
{
	for (size_t i = 0; i < sizeof subject_cases / sizeof subject_cases[0]; i++) {
		const char *label = subject_cases[i].label;
		char *json;
		assert_true(asprintf(&json, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
				     "\"subject\":\"%s\",\"text\":\"x\"}",
				     subject_cases[i].subject_json) > 0);
		struct built b;
		build(&b, json);
		CHECK(label, b.rc == RC_OK);
		check_wire(label, b.text, b.len);
		CHECK(label, max_line(b.text) <= 78);
		char *v = field(b.text, "Subject");
		char *dec = subject_cases[i].encoded ? ew_decode(v) : strdup(v);
		if (strcmp(dec, subject_cases[i].subject) != 0)
			fail_msg("case '%s': got %s", label, dec);
		CHECK(label, (strncmp(v, "=?UTF-8?B?", 10) == 0) == subject_cases[i].encoded);
		free(json), free(v), free(dec);
		built_free(&b);
	}
}

static void test_addresses(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"Alice Example <alice@Example.COM>\","
		  "\"to\":[\"bob@example.net\",\"\\\"Smith, Carol\\\" <carol@example.net>\","
		  "\"J\\u00f6rg <joerg@example.net>\"],"
		  "\"cc\":\"Dave <dave@example.net>\",\"bcc\":[\"eve@example.net\",\"BOB@example.net\"],"
		  "\"reply_to\":\"help@example.com\",\"text\":\"x\"}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("addresses", b.text, b.len);
	char *from = field(b.text, "From"), *to = field(b.text, "To"), *cc = field(b.text, "Cc");
	char *rt = field(b.text, "Reply-To"), *bcc = field(b.text, "Bcc");
	assert_string_equal(from, "Alice Example <alice@Example.COM>");
	assert_string_equal(to, "bob@example.net, \"Smith, Carol\" <carol@example.net>, "
				"=?UTF-8?B?SsO2cmc=?= <joerg@example.net>");
	assert_string_equal(cc, "Dave <dave@example.net>");
	assert_string_equal(rt, "help@example.com");
	assert_null(bcc); /* never in the header */
	assert_null(strstr(b.text, "eve@example.net"));
	/* the envelope: to, cc, bcc in order, duplicates (any case) removed */
	static const char *const want[] = {"bob@example.net", "carol@example.net",
					   "joerg@example.net", "dave@example.net",
					   "eve@example.net"};
	assert_int_equal(b.m.nrcpt, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(b.m.rcpt[i], want[i]);
	assert_string_equal(b.m.from, "alice@Example.COM");
	assert_string_equal(b.m.from_domain, "example.com");
	free(from), free(to), free(cc), free(rt);
	built_free(&b);
}

static void test_bcc_only(void **state)
{
	struct built b;
	build(&b, "{\"from\":\"a@example.com\",\"bcc\":\"hidden@example.net\",\"text\":\"x\"}");
	assert_int_equal(b.rc, RC_OK);
	assert_int_equal(b.m.nrcpt, 1);
	assert_string_equal(b.m.rcpt[0], "hidden@example.net");
	assert_null(strstr(b.text, "hidden"));
	char *to = field(b.text, "To");
	assert_null(to);
	built_free(&b);
}

static void test_user_headers(void **state)
{
	struct built b;
#define LONG_VALUE                                                                         \
	"word word word word word word word word word word word word word word word word " \
	"word word word word word word word word word word word word word word word word"
	build(&b, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"text\":\"x\","
		  "\"headers\":{\"X-Campaign\":\"spring\",\"List-Unsubscribe\":"
		  "\"<https://example.com/u/1>, <mailto:u@example.com>\","
		  "\"X-Long\":\"" LONG_VALUE "\"}}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("user headers", b.text, b.len);
	assert_true(max_line(b.text) <= 78);
	char *c = field(b.text, "X-Campaign"), *l = field(b.text, "List-Unsubscribe");
	char *x = field(b.text, "X-Long");
	assert_string_equal(c, "spring");
	assert_string_equal(l, "<https://example.com/u/1>, <mailto:u@example.com>");
	assert_string_equal(x, LONG_VALUE); /* folded, and unfolded back */
	assert_non_null(strstr(b.text, "X-Long: word"));
	assert_null(strstr(b.text, "X-Long: " LONG_VALUE));
	/* before MIME-Version, after Message-ID */
	assert_true(strstr(b.text, "X-Campaign:") > strstr(b.text, "Message-ID:"));
	assert_true(strstr(b.text, "X-Campaign:") < strstr(b.text, "MIME-Version:"));
	free(c), free(l), free(x);
	built_free(&b);
}

/* ---- refusals --------------------------------------------------------------------- */

#define MSG(extra) "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"text\":\"x\"" extra "}"

static const struct {
	const char *label;
	const char *json;
	enum rc rc;
	const char *code;
	const char *says;	/* a substring of the message */
} refusals[] = {
	{"CRLF in subject", MSG(",\"subject\":\"hi\\r\\nBcc: x@evil.example\""), RC_INVALID,
	 "header_injection", "\"subject\""},
	{"LF in subject", MSG(",\"subject\":\"hi\\nX: y\""), RC_INVALID, "header_injection",
	 "\"subject\""},
	{"CR in subject", MSG(",\"subject\":\"hi\\rX: y\""), RC_INVALID, "header_injection",
	 "\"subject\""},
	{"NUL in subject", MSG(",\"subject\":\"hi\\u0000X\""), RC_INVALID, "invalid_json",
	 "NUL"},
	{"CRLF in a header value", MSG(",\"headers\":{\"X-A\":\"v\\r\\nBcc: x@evil.example\"}"),
	 RC_INVALID, "header_injection", "X-A"},
	{"LF in a header value", MSG(",\"headers\":{\"X-A\":\"v\\nX-B: w\"}"), RC_INVALID,
	 "header_injection", "X-A"},
	{"CRLF in a header name", MSG(",\"headers\":{\"X-A\\r\\nBcc\":\"x@evil.example\"}"),
	 RC_INVALID, "header_injection", "header name"},
	{"colon in a header name", MSG(",\"headers\":{\"Bcc: x@evil.example\\r\\nX\":\"v\"}"),
	 RC_INVALID, "header_injection", "header name"},
	{"colon only in a header name", MSG(",\"headers\":{\"X:Y\":\"v\"}"), RC_INVALID,
	 "header_injection", "header name"},
	{"space in a header name", MSG(",\"headers\":{\"X A\":\"v\"}"), RC_INVALID,
	 "invalid_header", "not an RFC 5322 field name"},
	{"empty header name", MSG(",\"headers\":{\"\":\"v\"}"), RC_INVALID, "invalid_header",
	 "field name"},
	{"non-ASCII header name", MSG(",\"headers\":{\"X-\\u00e9\":\"v\"}"), RC_INVALID,
	 "invalid_header", "field name"},
	{"overriding Bcc", MSG(",\"headers\":{\"Bcc\":\"x@evil.example\"}"), RC_INVALID,
	 "reserved_header", "Bcc"},
	{"overriding From", MSG(",\"headers\":{\"from\":\"x@evil.example\"}"), RC_INVALID,
	 "reserved_header", "from"},
	{"overriding To", MSG(",\"headers\":{\"TO\":\"x@evil.example\"}"), RC_INVALID,
	 "reserved_header", "TO"},
	{"overriding Cc", MSG(",\"headers\":{\"Cc\":\"x@evil.example\"}"), RC_INVALID,
	 "reserved_header", "Cc"},
	{"overriding Date", MSG(",\"headers\":{\"Date\":\"yesterday\"}"), RC_INVALID,
	 "reserved_header", "Date"},
	{"overriding Message-ID", MSG(",\"headers\":{\"Message-Id\":\"<x@y>\"}"), RC_INVALID,
	 "reserved_header", "Message-Id"},
	{"overriding MIME-Version", MSG(",\"headers\":{\"MIME-Version\":\"2.0\"}"), RC_INVALID,
	 "reserved_header", "MIME-Version"},
	{"overriding Content-Type", MSG(",\"headers\":{\"Content-Type\":\"text/html\"}"),
	 RC_INVALID, "reserved_header", "Content-Type"},
	{"overriding Content-Transfer-Encoding",
	 MSG(",\"headers\":{\"content-transfer-encoding\":\"8bit\"}"), RC_INVALID,
	 "reserved_header", "content-transfer-encoding"},
	{"header value not a string", MSG(",\"headers\":{\"X-A\":1}"), RC_INVALID,
	 "invalid_header", "string"},
	{"non-ASCII header value", MSG(",\"headers\":{\"X-A\":\"\\u00e9\"}"), RC_INVALID,
	 "invalid_header", "ASCII"},
	{"control character in a header value", MSG(",\"headers\":{\"X-A\":\"a\\u0007\"}"),
	 RC_INVALID, "invalid_header", "X-A"},
	{"unfoldable header value", MSG(",\"headers\":{\"X-A\":\""
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "\"}"),
	 RC_INVALID, "invalid_header", "too long"},
	{"CRLF in from", "{\"from\":\"a@example.com\\r\\nBcc: x@evil.example\",\"to\":"
	 "\"b@example.net\",\"text\":\"x\"}", RC_INVALID, "header_injection", "\"from\""},
	{"LF in a display name", "{\"from\":\"Al\\nice <a@example.com>\",\"to\":\"b@example.net\","
	 "\"text\":\"x\"}", RC_INVALID, "header_injection", "\"from\""},
	{"CRLF in to", "{\"from\":\"a@example.com\",\"to\":[\"b@example.net\\r\\nX: y\"],"
	 "\"text\":\"x\"}", RC_INVALID, "header_injection", "\"to\""},
	{"LF in cc", MSG(",\"cc\":\"c@example.net\\n\""), RC_INVALID, "header_injection",
	 "\"cc\""},
	{"CRLF in reply_to", MSG(",\"reply_to\":\"r@example.net\\r\\n\""), RC_INVALID,
	 "header_injection", "\"reply_to\""},
	{"CRLF in a filename", MSG(",\"attachments\":[{\"filename\":\"a\\r\\nX: y\",\"content\":"
	 "\"aGk=\"}]"), RC_INVALID, "header_injection", "attachments[0].filename"},
	{"CRLF in a content_type", MSG(",\"attachments\":[{\"filename\":\"a\",\"content_type\":"
	 "\"text/plain\\r\\nX: y\",\"content\":\"aGk=\"}]"), RC_INVALID, "header_injection",
	 "attachments[0].content_type"},
	{"bad content_type", MSG(",\"attachments\":[{\"filename\":\"a\",\"content_type\":"
	 "\"text\",\"content\":\"aGk=\"}]"), RC_INVALID, "invalid_attachment", "MIME type"},
	{"multipart content_type", MSG(",\"attachments\":[{\"filename\":\"a\",\"content_type\":"
	 "\"multipart/mixed\",\"content\":\"aGk=\"}]"), RC_INVALID, "invalid_attachment",
	 "multipart/"},
	{"bad base64", MSG(",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGk*\"}]"),
	 RC_INVALID, "invalid_attachment", "not valid base64"},
	{"truncated base64", MSG(",\"attachments\":[{\"filename\":\"a\",\"content\":\"aGk\"}]"),
	 RC_INVALID, "invalid_attachment", "not valid base64"},
	{"base64 after padding", MSG(",\"attachments\":[{\"filename\":\"a\",\"content\":"
	 "\"aG==aGk=\"}]"), RC_INVALID, "invalid_attachment", "not valid base64"},
	{"attachment without content", MSG(",\"attachments\":[{\"filename\":\"a\"}]"), RC_INVALID,
	 "missing_field", "attachments[0]"},
	{"attachment with an unknown field", MSG(",\"attachments\":[{\"filename\":\"a\","
	 "\"content\":\"\",\"inline\":true}]"), RC_INVALID, "invalid_attachment", "inline"},
	{"attachments not a list", MSG(",\"attachments\":{}"), RC_INVALID, "invalid_field",
	 "attachments"},
	{"malformed JSON", "{\"from\":", RC_INVALID, "invalid_json", "malformed JSON"},
	{"empty body", "", RC_INVALID, "invalid_json", "malformed JSON"},
	{"not an object", "[1,2]", RC_INVALID, "invalid_json", "object"},
	{"duplicate key", "{\"from\":\"a@example.com\",\"from\":\"b@example.com\",\"to\":"
	 "\"b@example.net\",\"text\":\"x\"}", RC_INVALID, "invalid_json", "duplicate"},
	{"missing from", "{\"to\":\"b@example.net\",\"text\":\"x\"}", RC_INVALID, "missing_field",
	 "\"from\" is required"},
	{"from a list", "{\"from\":[\"a@example.com\"],\"to\":\"b@example.net\",\"text\":\"x\"}",
	 RC_INVALID, "invalid_field", "\"from\""},
	{"no recipient", "{\"from\":\"a@example.com\",\"text\":\"x\"}", RC_INVALID,
	 "missing_field", "recipient"},
	{"empty to list", "{\"from\":\"a@example.com\",\"to\":[],\"text\":\"x\"}", RC_INVALID,
	 "missing_field", "recipient"},
	{"no body", "{\"from\":\"a@example.com\",\"to\":\"b@example.net\"}", RC_INVALID,
	 "missing_field", "\"text\""},
	{"text not a string", "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"text\":1}",
	 RC_INVALID, "invalid_field", "\"text\""},
	{"unknown field", MSG(",\"bbc\":\"x@example.net\""), RC_INVALID, "unknown_field", "bbc"},
	{"address without @", "{\"from\":\"a@example.com\",\"to\":\"bob\",\"text\":\"x\"}",
	 RC_INVALID, "invalid_address", "\"to\""},
	{"address with a space", "{\"from\":\"a b@example.com\",\"to\":\"b@example.net\","
	 "\"text\":\"x\"}", RC_INVALID, "invalid_address", "\"from\""},
	{"address with a bad domain", "{\"from\":\"a@example\",\"to\":\"b@example.net\","
	 "\"text\":\"x\"}", RC_INVALID, "invalid_address", "\"from\""},
	{"address with a domain literal", MSG(",\"cc\":\"x@[192.0.2.1]\""), RC_INVALID,
	 "invalid_address", "\"cc\""},
	{"non-ASCII address", MSG(",\"cc\":\"j\\u00f6rg@example.net\""), RC_INVALID,
	 "invalid_address", "\"cc\""},
	{"double dot", MSG(",\"cc\":\"a..b@example.net\""), RC_INVALID, "invalid_address",
	 "\"cc\""},
	{"unbalanced angle", MSG(",\"cc\":\"x@example.net>\""), RC_INVALID, "invalid_address",
	 "'>'"},
	{"too many recipients", "{\"from\":\"a@example.com\",\"to\":[\"1@example.net\","
	 "\"2@example.net\",\"3@example.net\"],\"cc\":[\"4@example.net\",\"5@example.net\"],"
	 "\"bcc\":\"6@example.net\",\"text\":\"x\"}", RC_INVALID, "too_many_recipients", "at most 5"},
	{"bad stream", MSG(",\"stream\":\"marketing\""), RC_INVALID, "invalid_field", "stream"},
	{"control character in subject", MSG(",\"subject\":\"a\\u001bb\""), RC_INVALID,
	 "invalid_field", "\"subject\""},
};

static void test_refusals(void **state)
{
	for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
		const char *label = refusals[i].label;
		struct built b;
		build(&b, refusals[i].json);
		if (b.rc != refusals[i].rc)
			fail_msg("case '%s': rc %s (%s)", label, rc_name(b.rc), b.err);
		if (b.m.error == NULL || strcmp(b.m.error, refusals[i].code) != 0)
			fail_msg("case '%s': code %s (%s)", label, b.m.error ? b.m.error : "-",
				 b.err);
		if (strstr(b.err, refusals[i].says) == NULL)
			fail_msg("case '%s': message \"%s\" does not say \"%s\"", label, b.err,
				 refusals[i].says);
		CHECK(label, b.m.msg == NULL && b.m.rcpt == NULL && b.m.from == NULL);
		built_free(&b);
	}
}

static void test_too_large(void **state)
{
	struct http_mime_opts small = opts;
	small.max_size = 2000;
	char text[3000];
	memset(text, 'a', sizeof text - 1);
	text[sizeof text - 1] = '\0';
	char *json;
	assert_true(asprintf(&json, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
			     "\"text\":\"%s\"}", text) > 0);
	struct built b;
	build_opts(&b, json, &small);
	assert_int_equal(b.rc, RC_LIMIT);
	assert_string_equal(b.m.error, "too_large");
	assert_non_null(strstr(b.err, "the limit is 2000"));
	built_free(&b);
	text[1000] = '\0';
	free(json);
	assert_true(asprintf(&json, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
			     "\"text\":\"%s\"}", text) > 0);
	build_opts(&b, json, &small);
	assert_int_equal(b.rc, RC_OK);
	assert_true(b.len <= 2000);
	built_free(&b);
	free(json);
}

static void test_boundaries_unique(void **state)
{
	/* a text that quotes relevo's own boundary prefix, in 7bit */
	struct built b;
	build(&b, "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"text\":"
		  "\"--=_rlv_\\n--=_rlv_000000000000000000000000\",\"html\":\"<p>=_rlv_</p>\","
		  "\"attachments\":[{\"filename\":\"=_rlv_\",\"content\":\"\"}]}");
	assert_int_equal(b.rc, RC_OK);
	check_wire("boundaries", b.text, b.len);
	char *ct = field(b.text, "Content-Type"), *outer = boundary_of(ct);
	char *alt = part(body_of(b.text), outer, 0);
	char *act = field(alt, "Content-Type"), *inner = boundary_of(act);
	assert_string_not_equal(outer, inner);
	assert_int_equal(strlen(outer), 30);
	/* each boundary occurs only as delimiters and its parameter */
	size_t n = 0;
	for (const char *p = b.text; (p = strstr(p, outer)) != NULL; p++)
		n++;
	assert_int_equal(n, 1 + 3); /* parameter, two delimiters, the close */
	free(ct), free(outer), free(alt), free(act), free(inner);
	built_free(&b);
}

static void test_addr_valid(void **state)
{
	static const struct {
		const char *a;
		bool ok;
	} cases[] = {
		{"a@example.com", true}, {"first.last+tag@sub.example.org", true},
		{"o'neil@example.com", true}, {"a@b", false}, {"@example.com", false},
		{"a@", false}, {".a@example.com", false}, {"a.@example.com", false},
		{"a b@example.com", false}, {"<a@example.com>", false}, {"a@exa mple.com", false},
		{"\"q\"@example.com", false}, {"a@@example.com", false}, {"", false},
		{"a@example.com.", false}, {"a@-example.com", false},
		{"x@1.2.3.4", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
		 false}, /* local part of 65 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (http_addr_valid(cases[i].a) != cases[i].ok)
			fail_msg("case '%s'", cases[i].a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_only),
		cmocka_unit_test(test_html_only),
		cmocka_unit_test(test_alternative),
		cmocka_unit_test(test_attachments_round_trip),
		cmocka_unit_test(test_attachments_only),
		cmocka_unit_test(test_text_encodings),
		cmocka_unit_test(test_long_text_lines),
		cmocka_unit_test(test_subjects),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_bcc_only),
		cmocka_unit_test(test_user_headers),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_boundaries_unique),
		cmocka_unit_test(test_addr_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
