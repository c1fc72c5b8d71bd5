/*
 * cli_sendmail_msg.c - the message side of `relevo sendmail`: standard input
 * turned into an RFC 5322 message with CRLF line ends, its header fields, the
 * addresses of To/Cc/Bcc (-t) and From/Sender, Bcc removed, From: added when
 * missing. No I/O but reading standard input; cli_sendmail.c does the rest.
 *
 * Input is local text, not SMTP: a bare LF ends a line (a CR before it is part
 * of the line end), which is what applications pipe in; every line leaves here
 * ending in CRLF. A bare CR inside a line is kept: the daemon refuses it, as it
 * refuses it over SMTP (RFC 5322 2.3; SMTP smuggling). A line holding only "."
 * ends the input unless -i / -oi (sendmail's rule).
 *
 * sm_msg_parse does the work on a buffer, sm_msg_read feeds it standard input.
 *
 * Ownership: a struct sm_msg owns its fields and body; sm_msg_free releases them.
 * Every buffer has a maximum (SM_INPUT_MAX bytes of input).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli_sendmail.h"
#include "core/core.h"

/* sm_buf_add - append n bytes to a growable buffer. */
static void sm_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = MAX(*cap * 2, *len + n + 1);
		*buf = xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* sm_read_input - all of stdin (at most SM_INPUT_MAX bytes). */
static enum rc sm_read_input(char **out, size_t *outlen)
{
	size_t len = 0, cap = 65536;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap >= SM_INPUT_MAX) {
				free(buf);
				return RC_LIMIT;
			}
			cap = MIN(cap * 2, (size_t)SM_INPUT_MAX);
			buf = xrealloc(buf, cap);
		}
		ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return RC_IO;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*outlen = len;
	return RC_OK;
}

/* sm_is_field_start - does the line begin a header field ("name:", RFC 5322
 * 2.2: printable ASCII but ':' in the name)? */
static bool sm_is_field_start(const char *line, size_t n)
{
	size_t i = 0;
	while (i < n && line[i] > 32 && line[i] < 127 && line[i] != ':')
		i++;
	return i > 0 && i < n && line[i] == ':';
}

/* sm_add_line - one input line (no line end): into the current field, a new
 * field, or the body. */
static void sm_add_line(struct sm_msg *m, const char *line, size_t n, bool *in_headers,
                        size_t *bodycap)
{
	if (*in_headers) {
		bool cont = n > 0 && (line[0] == ' ' || line[0] == '\t') && m->nfields > 0;
		if (n == 0) {
			*in_headers = false;
			return;
		}
		if (cont || sm_is_field_start(line, n)) {
			if (!cont) {
				m->fields =
				    xrealloc(m->fields, (m->nfields + 1) * sizeof *m->fields);
				m->fields[m->nfields++] = (struct sm_field){0};
			}
			struct sm_field *f = &m->fields[m->nfields - 1];
			size_t cap = f->len + n + 3;
			f->text = xrealloc(f->text, cap);
			memcpy(f->text + f->len, line, n);
			memcpy(f->text + f->len + n, "\r\n", 3);
			f->len += n + 2;
			return;
		}
		/* Text before any empty line that is not a header: the body starts
		 * here (the empty line between them is written by sm_msg_render). */
		*in_headers = false;
	}
	sm_buf_add(&m->body, &m->bodylen, bodycap, line, n);
	sm_buf_add(&m->body, &m->bodylen, bodycap, "\r\n", 2);
}

/* sm_msg_parse - in[0..len) (need not be NUL-terminated) into m, which must be
 * zeroed; see the file comment. No I/O: the seam of the unit test and the fuzz
 * target. */
void sm_msg_parse(struct sm_msg *m, const char *in, size_t len, bool ignore_dots)
{
	size_t bodycap = 1;
	bool in_headers = true;
	m->body = xstrdup("");
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(in + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - in) : len;
		size_t n = end - pos;
		if (nl && n > 0 && in[end - 1] == '\r')
			n--;
		if (!ignore_dots && n == 1 && in[pos] == '.')
			break;
		if (pos == 0 && n >= 5 && memcmp(in, "From ", 5) == 0) {
			/* an mbox "From " line, not a header: sendmail drops it too */
			pos = nl ? end + 1 : len;
			continue;
		}
		for (size_t i = pos; i < pos + n; i++)
			m->eight_bit |= (unsigned char)in[i] >= 0x80;
		sm_add_line(m, in + pos, n, &in_headers, &bodycap);
		pos = nl ? end + 1 : len;
	}
}

/* sm_msg_read - read standard input into m (zeroed) with sm_msg_parse. RC_LIMIT
 * if larger than SM_INPUT_MAX, RC_IO on a read error. */
enum rc sm_msg_read(struct sm_msg *m, bool ignore_dots)
{
	char *in;
	size_t len;
	enum rc rc = sm_read_input(&in, &len);
	if (rc != RC_OK)
		return rc;
	sm_msg_parse(m, in, len, ignore_dots);
	free(in);
	return RC_OK;
}

/* sm_field_is - is f the field called name (case-insensitive)? */
bool sm_field_is(const struct sm_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->text != NULL && f->len > n && strncasecmp(f->text, name, n) == 0 &&
	       f->text[n] == ':';
}

/* sm_field_value - the unfolded value of a field (heap; CRLF removed). */
char *sm_field_value(const struct sm_field *f)
{
	const char *colon = memchr(f->text, ':', f->len);
	size_t start = (size_t)(colon - f->text) + 1, o = 0;
	char *v = xmalloc(f->len - start + 1);
	for (size_t i = start; i < f->len; i++) {
		if (f->text[i] == '\r' && i + 1 < f->len && f->text[i + 1] == '\n') {
			i++;
			continue;
		}
		v[o++] = f->text[i];
	}
	v[o] = '\0';
	return v;
}

/* sm_msg_drop - remove every field called name (Bcc, RFC 5322 3.6.3). */
void sm_msg_drop(struct sm_msg *m, const char *name)
{
	size_t o = 0;
	for (size_t i = 0; i < m->nfields; i++) {
		if (sm_field_is(&m->fields[i], name))
			free(m->fields[i].text);
		else
			m->fields[o++] = m->fields[i];
	}
	m->nfields = o;
}

/* sm_msg_prepend - a new first field (text without CRLF). */
void sm_msg_prepend(struct sm_msg *m, const char *text)
{
	m->fields = xrealloc(m->fields, (m->nfields + 1) * sizeof *m->fields);
	memmove(m->fields + 1, m->fields, m->nfields * sizeof *m->fields);
	m->fields[0].text = xasprintf("%s\r\n", text);
	m->fields[0].len = strlen(m->fields[0].text);
	m->nfields++;
}

/* sm_msg_render - the message for DATA, dot-stuffed (RFC 5321 4.5.2), ending
 * with the CRLF.CRLF that ends DATA. Caller frees. */
char *sm_msg_render(const struct sm_msg *m, size_t *outlen)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	for (size_t i = 0; i < m->nfields; i++) {
		if (m->fields[i].text[0] == '.')
			sm_buf_add(&out, &len, &cap, ".", 1);
		/* continuation lines start with a blank, never a dot */
		sm_buf_add(&out, &len, &cap, m->fields[i].text, m->fields[i].len);
	}
	sm_buf_add(&out, &len, &cap, "\r\n", 2);
	for (size_t pos = 0; pos < m->bodylen;) {
		const char *nl = memchr(m->body + pos, '\n', m->bodylen - pos);
		size_t end = nl ? (size_t)(nl - m->body) + 1 : m->bodylen;
		if (m->body[pos] == '.')
			sm_buf_add(&out, &len, &cap, ".", 1);
		sm_buf_add(&out, &len, &cap, m->body + pos, end - pos);
		pos = end;
	}
	sm_buf_add(&out, &len, &cap, ".\r\n", 3);
	*outlen = len;
	return out;
}

/* sm_msg_free - release m's fields and body; m is zeroed (free again: no-op). */
void sm_msg_free(struct sm_msg *m)
{
	for (size_t i = 0; i < m->nfields; i++)
		free(m->fields[i].text);
	free(m->fields);
	free(m->body);
	memset(m, 0, sizeof *m);
}

/* ---- address lists (RFC 5322 3.4) ---- */

/* sm_addr_finish - one element of a list: the angle address if there was one,
 * else the text outside comments; blanks dropped, a source route too. */
static void sm_addr_finish(char *cur, size_t *curlen, char *angle, size_t *anglen, bool *has_angle,
                           sm_addr_fn *fn, void *arg, int *nbad)
{
	char *a = *has_angle ? angle : cur;
	size_t n = *has_angle ? *anglen : *curlen;
	a[n] = '\0';
	if (*has_angle && a[0] == '@') {
		char *colon = strchr(a, ':');
		a = colon ? colon + 1 : a + n;
	}
	if (a[0] != '\0' && !fn(arg, a))
		(*nbad)++;
	*curlen = *anglen = 0;
	*has_angle = false;
}

/* sm_addr_list - call fn for each address of an address list (To:, Cc:, Bcc:,
 * From:, a command-line argument): "a@b", "Name <a@b>", "a@b (comment)",
 * "group: a@b, c@d;". Whitespace outside quoted strings is dropped. Returns
 * the number of addresses fn refused. */
int sm_addr_list(const char *s, sm_addr_fn *fn, void *arg)
{
	size_t n = strlen(s), curlen = 0, anglen = 0;
	char *cur = xmalloc(n + 1), *angle = xmalloc(n + 1);
	bool quoted = false, in_angle = false, has_angle = false, literal = false;
	int depth = 0, nbad = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		char *buf = in_angle ? angle : cur;
		size_t *blen = in_angle ? &anglen : &curlen;
		if (quoted) {
			buf[(*blen)++] = ch;
			if (ch == '\\' && i + 1 < n)
				buf[(*blen)++] = s[++i];
			else if (ch == '"')
				quoted = false;
		} else if (depth > 0) {
			if (ch == '\\' && i + 1 < n)
				i++;
			else
				depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
		} else if (ch == '(') {
			depth = 1;
		} else if (ch == '"') {
			quoted = true;
			buf[(*blen)++] = ch;
		} else if (ch == '<' && !in_angle) {
			in_angle = has_angle = true;
			anglen = 0;
		} else if (ch == '>' && in_angle) {
			in_angle = false;
		} else if (in_angle) {
			if (ch != ' ' && ch != '\t')
				angle[anglen++] = ch;
		} else if (literal || ch == '[') {
			/* a domain literal ("[IPv6:::1]"): its colons are not a group's */
			literal = ch != ']';
			cur[curlen++] = ch;
		} else if (ch == ':') {
			curlen = 0; /* a group's display name */
		} else if (ch == ',' || ch == ';') {
			sm_addr_finish(cur, &curlen, angle, &anglen, &has_angle, fn, arg, &nbad);
		} else if (ch != ' ' && ch != '\t') {
			cur[curlen++] = ch;
		}
	}
	sm_addr_finish(cur, &curlen, angle, &anglen, &has_angle, fn, arg, &nbad);
	free(cur);
	free(angle);
	return nbad;
}
