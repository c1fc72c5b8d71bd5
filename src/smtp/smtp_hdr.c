/*
 * smtp_hdr.c - the header scan: what the server needs to know about a message's
 * header section (RFC 5322): whether it has Message-ID, Date and From, how many
 * of each, and the domain of every address in From.
 *
 * Invariants: the scan never fails and never reads outside hdrs[0..len); input it
 * cannot make sense of is reported through the flags (from_malformed), never
 * guessed at: policy decides on the sender's domains, so a From that could be
 * read two ways must not be read one way here. Recursion is bounded (a group
 * holds mailboxes only) and comments nest by counting, not by recursion.
 *
 * Grammar: RFC 5322 3.4 address-list (groups are allowed in From by RFC 6854),
 * with the obsolete forms of 4.4 (obs-phrase with ".", routes in angle
 * addresses, empty list elements, CFWS around dots). UTF-8 (RFC 6532) is taken
 * as atext; RFC 2047 encoded words are atoms and left alone.
 *
 * No I/O; no allocation but the output buffer of smtp_hdr_strip_auth.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "smtp/smtp.h"

enum tok { T_END, T_ERR, T_ATOM, T_QSTR, T_DLIT, T_SPECIAL };

struct token {
	enum tok type;
	const char *s;
	size_t len;
	char ch;	/* T_SPECIAL: one of <>@,:;. */
};

/* A From field body being parsed: [p, end) and one token of lookahead. */
struct from_parse {
	const char *p, *end;
	struct token t;
	struct smtp_hdr_info *info;
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 3.2.3 atext, plus UTF-8 octets (RFC 6532 3.2). */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c >= 0x80)
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* skip_cfws - skip whitespace, folds and (nested) comments; false if a comment
 * is not closed. CR and LF only occur here as part of a fold: the field was cut
 * at the first line end not followed by WSP. */
static bool skip_cfws(struct from_parse *f)
{
	while (f->p < f->end) {
		char c = *f->p;
		if (is_wsp(c) || c == '\r' || c == '\n') {
			f->p++;
			continue;
		}
		if (c != '(')
			break;
		size_t depth = 0;
		do {
			c = *f->p++;
			if (c == '\\') {
				if (f->p >= f->end)
					return false;
				f->p++;
			} else if (c == '(') {
				depth++;
			} else if (c == ')') {
				depth--;
			}
		} while (depth > 0 && f->p < f->end);
		if (depth > 0)
			return false;
	}
	return true;
}

/* Skip a quoted string or domain literal opened at f->p; false if unterminated. */
static bool skip_quoted(struct from_parse *f, char close)
{
	f->p++;
	while (f->p < f->end) {
		char c = *f->p++;
		if (c == '\\') {
			if (f->p >= f->end)
				return false;
			f->p++;
		} else if (c == close) {
			return true;
		} else if (close == ']' && c == '[') {
			return false;
		}
	}
	return false;
}

/* next - read the next token into f->t. */
static void next(struct from_parse *f)
{
	struct token *t = &f->t;

	t->type = T_ERR;
	t->ch = 0;
	if (!skip_cfws(f))
		return;
	t->s = f->p;
	if (f->p >= f->end) {
		t->type = T_END;
		return;
	}
	char c = *f->p;
	if (c == '"' || c == '[') {
		if (!skip_quoted(f, c == '"' ? '"' : ']'))
			return;
		t->type = c == '"' ? T_QSTR : T_DLIT;
	} else if (strchr("<>@,:;.", c) != NULL && c != '\0') {
		t->type = T_SPECIAL;
		t->ch = c;
		f->p++;
	} else if (is_atext((unsigned char)c)) {
		while (f->p < f->end && is_atext((unsigned char)*f->p))
			f->p++;
		t->type = T_ATOM;
	} else {
		return;	/* ")", "]", "\", controls: not allowed here */
	}
	t->len = (size_t)(f->p - t->s);
}

static bool is_sp(const struct from_parse *f, char ch)
{
	return f->t.type == T_SPECIAL && f->t.ch == ch;
}

/*
 * parse_domain - a domain after "@": dot-atom, obs-domain or domain literal.
 * With record set it is lower-cased into info->from_domain. More addresses than
 * there is room for make the From malformed: policy must see every domain.
 */
static bool parse_domain(struct from_parse *f, bool record)
{
	char buf[SMTP_DOMAIN_MAX + 1];
	size_t n = 0;

	if (f->t.type == T_DLIT) {
		for (size_t i = 0; i < f->t.len; i++) {
			char c = f->t.s[i];
			if (is_wsp(c) || c == '\r' || c == '\n')
				continue;
			if (n == SMTP_DOMAIN_MAX)
				return false;
			buf[n++] = c;
		}
		next(f);
	} else if (f->t.type == T_ATOM) {
		for (;;) {
			if (f->t.len > SMTP_DOMAIN_MAX - n)
				return false;
			memcpy(buf + n, f->t.s, f->t.len);
			n += f->t.len;
			next(f);
			if (!is_sp(f, '.'))
				break;
			next(f);
			if (f->t.type != T_ATOM || n == SMTP_DOMAIN_MAX)
				return false;
			buf[n++] = '.';
		}
	} else {
		return false;
	}
	if (!record)
		return true;
	struct smtp_hdr_info *info = f->info;
	if (info->nfrom == SMTP_HDR_FROM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		info->from_domain[info->nfrom][i] =
			(buf[i] >= 'A' && buf[i] <= 'Z') ? (char)(buf[i] - 'A' + 'a') : buf[i];
	info->from_domain[info->nfrom][n] = '\0';
	info->nfrom++;
	return true;
}

/* A run of words and dots: a display name (phrase) or a local part. */
struct words {
	size_t n;
	bool first_is_word;	/* a phrase must start with a word */
	bool local_ok;		/* word *("." word): usable as a local part */
};

static void collect_words(struct from_parse *f, struct words *w)
{
	bool want_word = true;

	w->n = 0;
	w->first_is_word = false;
	w->local_ok = true;
	while (f->t.type == T_ATOM || f->t.type == T_QSTR || is_sp(f, '.')) {
		bool word = f->t.type != T_SPECIAL;
		if (w->n == 0)
			w->first_is_word = word;
		if (word != want_word)
			w->local_ok = false;
		want_word = !word;
		w->n++;
		next(f);
	}
	if (want_word)
		w->local_ok = false;	/* empty, or ends with "." */
}

/* parse_addr_spec - local-part "@" domain, recording the domain. */
static bool parse_addr_spec(struct from_parse *f)
{
	struct words w;
	collect_words(f, &w);
	if (!w.local_ok || !is_sp(f, '@'))
		return false;
	next(f);
	return parse_domain(f, true);
}

/* parse_angle - "<" [obs-route] addr-spec ">" with f->t at "<". */
static bool parse_angle(struct from_parse *f)
{
	next(f);
	if (is_sp(f, '@') || is_sp(f, ',')) {
		/* obs-route: *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain]) ":" */
		for (;;) {
			if (is_sp(f, '@')) {
				next(f);
				if (!parse_domain(f, false))
					return false;
			} else if (is_sp(f, ',')) {
				next(f);
			} else {
				break;
			}
		}
		if (!is_sp(f, ':'))
			return false;
		next(f);
	}
	if (!parse_addr_spec(f) || !is_sp(f, '>'))
		return false;
	next(f);
	return true;
}

static bool parse_list(struct from_parse *f, bool in_group);

/* parse_address - mailbox (name-addr or addr-spec) or, outside a group, a group. */
static bool parse_address(struct from_parse *f, bool in_group)
{
	struct words w;

	collect_words(f, &w);
	if (is_sp(f, '<'))
		return (w.n == 0 || w.first_is_word) && parse_angle(f);
	if (is_sp(f, '@')) {
		if (!w.local_ok)
			return false;
		next(f);
		return parse_domain(f, true);
	}
	if (is_sp(f, ':') && !in_group && w.n > 0 && w.first_is_word) {
		next(f);
		if (!parse_list(f, true) || !is_sp(f, ';'))
			return false;
		next(f);
		return true;
	}
	return false;
}

/* parse_list - address-list (or, in a group, group-list): empty elements of the
 * obsolete syntax are skipped; at top level at least one address is needed. */
static bool parse_list(struct from_parse *f, bool in_group)
{
	bool any = false;

	for (;;) {
		if (f->t.type == T_END || (in_group && is_sp(f, ';')))
			break;
		if (is_sp(f, ',')) {
			next(f);
			continue;
		}
		if (!parse_address(f, in_group))
			return false;
		any = true;
		if (is_sp(f, ',')) {
			next(f);
			continue;
		}
		if (f->t.type == T_END || (in_group && is_sp(f, ';')))
			break;
		return false;
	}
	return any || in_group;
}

/* Parse one From field body; a failure marks the whole From as malformed. */
static void scan_from(const char *body, size_t len, struct smtp_hdr_info *info)
{
	struct from_parse f = {.p = body, .end = body + len, .info = info};

	next(&f);
	if (!parse_list(&f, false) || f.t.type != T_END)
		info->from_malformed = true;
}

static bool name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* End of the line starting at i: index of its LF, or len. */
static size_t line_end(const char *h, size_t len, size_t i)
{
	const char *lf = memchr(h + i, '\n', len - i);
	return lf ? (size_t)(lf - h) : len;
}

/* scan_stream - X-Relevo-Stream: bulk, or Precedence: bulk / list, marks the
 * message as bulk mail (the bulk delivery stream). */
static void scan_stream(const char *body, size_t len, struct smtp_hdr_info *info)
{
	while (len > 0 && (is_wsp(*body) || *body == '\r' || *body == '\n')) {
		body++;
		len--;
	}
	while (len > 0 && (is_wsp(body[len - 1]) || body[len - 1] == '\r' || body[len - 1] == '\n'))
		len--;
	if ((len == 4 && strncasecmp(body, "bulk", 4) == 0) ||
	    (len == 4 && strncasecmp(body, "list", 4) == 0))
		info->bulk = true;
}

/* smtp_hdr_scan - find and check Message-ID, Date and From in a header section. */
void smtp_hdr_scan(const char *hdrs, size_t len, struct smtp_hdr_info *info)
{
	size_t i = 0;

	memset(info, 0, sizeof *info);
	while (i < len) {
		size_t e = line_end(hdrs, len, i);
		size_t content = e - i;
		if (e < len && content > 0 && hdrs[e - 1] == '\r')
			content--;
		if (content == 0)
			break;	/* the empty line: end of the header section */
		/* field-name ftext (%d33-57 / %d59-126), obs: WSP before ":" */
		size_t n = 0;
		while (n < content && hdrs[i + n] > 32 && hdrs[i + n] < 127 && hdrs[i + n] != ':')
			n++;
		size_t c = n;
		while (c < content && is_wsp(hdrs[i + c]))
			c++;
		/* The field continues over every following line that starts with WSP. */
		size_t j = e < len ? e + 1 : len;
		while (j < len && is_wsp(hdrs[j])) {
			size_t e2 = line_end(hdrs, len, j);
			j = e2 < len ? e2 + 1 : len;
		}
		if (n > 0 && c < content && hdrs[i + c] == ':') {
			const char *name = hdrs + i, *body = hdrs + i + c + 1;
			size_t blen = j - (i + c + 1);
			info->header_count++;
			if (name_is(name, n, "From")) {
				info->has_from = true;
				info->from_fields++;
				scan_from(body, blen, info);
			} else if (name_is(name, n, "Date")) {
				info->has_date = true;
				info->date_fields++;
			} else if (name_is(name, n, "Message-ID")) {
				info->has_message_id = true;
				info->message_id_fields++;
			} else if (name_is(name, n, "Received")) {
				info->received_fields++;
			} else if (name_is(name, n, "X-Relevo-Stream") ||
				   name_is(name, n, "Precedence")) {
				scan_stream(body, blen, info);
			}
		}
		/* else: not a header field (no name or no colon): not counted. */
		i = j;
	}
}

/* smtp_hdr_check - see smtp.h. */
enum rc smtp_hdr_check(const struct smtp_hdr_info *hi, unsigned max_received,
		       struct smtp_reply *r, char *text, size_t textsz)
{
	if (hi->received_fields > max_received) {
		/* RFC 5321 6.3: a count of trace fields is how loops are found. */
		snprintf(text, textsz,
			 "Too many hops: %u Received: header fields (at most %u); the message "
			 "is looping",
			 hi->received_fields, max_received);
		*r = (struct smtp_reply){554, "5.4.6", text};
		return RC_PERMFAIL;
	}
	if (hi->from_fields != 1) {
		if (hi->from_fields == 0)
			snprintf(text, textsz, "The message has no From: header; RFC 5322 3.6 "
					       "requires exactly one");
		else
			snprintf(text, textsz, "The message has %u From: headers; RFC 5322 3.6 "
					       "allows exactly one",
				 hi->from_fields);
		*r = (struct smtp_reply){550, "5.6.0", text};
		return RC_PERMFAIL;
	}
	return RC_OK;
}

/* A field name that speaks for an authentication result or an ARC set. */
static bool is_auth_field(const char *name, size_t n, bool *aar)
{
	*aar = name_is(name, n, "ARC-Authentication-Results");
	return name_is(name, n, "Authentication-Results") ||
	       (n > 4 && strncasecmp(name, "ARC-", 4) == 0);
}

/* authserv_id_is - does the field body (Authentication-Results, or with aar an
 * ARC-Authentication-Results "i=N;" first) name id as its authserv-id (RFC 8601
 * 2.2, RFC 8617 4.1.1)? Comments and folds before it are skipped. */
static bool authserv_id_is(const char *b, size_t len, bool aar, const char *id)
{
	const char *p = b, *end = b + len;
	if (aar) {
		const char *semi = memchr(p, ';', len);
		if (semi == NULL)
			return false;
		p = semi + 1;
	}
	for (;;) {
		while (p < end && (is_wsp(*p) || *p == '\r' || *p == '\n'))
			p++;
		if (p >= end || *p != '(')
			break;
		int depth = 0;
		for (; p < end; p++) {
			if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
	const char *s = p;
	while (p < end && !is_wsp(*p) && *p != ';' && *p != '(' && *p != '\r' && *p != '\n')
		p++;
	size_t n = (size_t)(p - s);
	return n > 0 && strlen(id) == n && strncasecmp(s, id, n) == 0;
}

/* smtp_hdr_strip_auth - see smtp.h. */
size_t smtp_hdr_strip_auth(const char *hdrs, size_t len, const char *own_id, struct evbuffer *out)
{
	size_t i = 0, stripped = 0;
	while (i < len) {
		size_t e = line_end(hdrs, len, i);
		size_t j = e < len ? e + 1 : len;
		size_t n = 0;
		while (n < e - i && hdrs[i + n] > 32 && hdrs[i + n] < 127 && hdrs[i + n] != ':')
			n++;
		bool is_field = n > 0 && i + n < e && hdrs[i + n] == ':';
		if (is_field) {
			while (j < len && is_wsp(hdrs[j])) {
				size_t e2 = line_end(hdrs, len, j);
				j = e2 < len ? e2 + 1 : len;
			}
		}
		bool aar;
		if (is_field && is_auth_field(hdrs + i, n, &aar) &&
		    (own_id == NULL ||
		     ((aar || name_is(hdrs + i, n, "Authentication-Results")) &&
		      authserv_id_is(hdrs + i + n + 1, j - (i + n + 1), aar, own_id)))) {
			stripped++;
		} else {
			evbuffer_add(out, hdrs + i, j - i);
		}
		i = j;
	}
	return stripped;
}
