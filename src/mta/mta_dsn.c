/*
 * mta_dsn.c - delivery status notifications: the bounce (or delay) message for
 * a sender, as a multipart/report (RFC 6522) with a human-readable part, a
 * message/delivery-status part (RFC 3464, ENVID/ORCPT from RFC 3461) and the
 * original message or its header section.
 *
 * Hostile input: diagnostics come from remote servers, addresses and ENVID from
 * clients. Every value put into a header or a delivery-status field goes
 * through dsn_clean() (control characters, CR and LF become spaces, runs of
 * spaces collapse, a cap on length) and is written by dsn_put_wrapped(), which
 * folds at spaces near 78 columns and force-splits any run that would pass
 * 998 octets (RFC 5322 2.1.1), so no input can add a field, a header line or a
 * MIME boundary. The delivery-status part stays 7-bit (RFC 3464 2.1.1): 8-bit
 * bytes in diagnostics become "?", and addresses with non-ASCII characters
 * are written as utf-8-addr-xtext with type "utf-8" (RFC 6533 3).
 *
 * The boundary is random and checked against everything it encloses; the
 * original is returned verbatim (7bit or 8bit, never re-encoded: RFC 2046
 * 5.2.1 forbids encoding message/rfc822), as text/rfc822-headers when the
 * sender asked RET=HDRS or when it is bigger than max_return.
 *
 * Ownership: nothing is kept; the caller's strings are only read. Allocation
 * aborts (xmalloc); there is no other failure.
 */
#include "mta/mta.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DSN_FOLD_COL       78   /* fold beyond this column where a space allows */
#define DSN_SPLIT_COL      900  /* force a split here: well under 998 octets */
#define DSN_VALUE_MAX      4096 /* any one cleaned value (longer: cut, "...") */
#define DSN_BOUNDARY_HEX   32
#define DSN_BOUNDARY_TRIES 8

/* ---- cleaning values ---- */

static bool dsn_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * dsn_clean - a heap copy of s that is safe for one header line: control
 * characters become spaces, runs of spaces collapse, no leading or trailing
 * space; 8-bit bytes are kept if keep8 (UTF-8 addresses) or become "?";
 * at most DSN_VALUE_MAX bytes (then "..."). NULL gives "".
 */
static char *dsn_clean(const char *s, bool keep8)
{
	size_t len = s ? strlen(s) : 0, n = 0, i;
	char *o = xmalloc(MIN(len, (size_t)DSN_VALUE_MAX) + 4);
	for (i = 0; i < len && n < DSN_VALUE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (dsn_is_ctl(c) || c == ' ')
			c = ' ';
		else if (c >= 0x80 && !keep8)
			c = '?';
		if (c == ' ' && (n == 0 || o[n - 1] == ' '))
			continue;
		o[n++] = (char)c;
	}
	if (i < len) {
		n = keep8 ? utf8_cut(o, n) : n;
		memcpy(o + n, "...", 3);
		n += 3;
	}
	while (n > 0 && o[n - 1] == ' ')
		n--;
	o[n] = '\0';
	return o;
}

static bool dsn_has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* ---- writing folded lines ---- */

/* Write one word that may be longer than a line: split every DSN_SPLIT_COL
 * (never inside a UTF-8 sequence), continuing with cont. */
static size_t dsn_put_word(struct evbuffer *out, size_t col, const char *w, size_t len,
                           const char *cont)
{
	while (col + len > DSN_SPLIT_COL) {
		size_t room = DSN_SPLIT_COL > col ? DSN_SPLIT_COL - col : 1;
		size_t cut = utf8_cut(w, room);
		if (cut == 0)
			cut = room;
		evbuffer_add(out, w, cut);
		evbuffer_add_printf(out, "\r\n%s", cont);
		w += cut;
		len -= cut;
		col = strlen(cont);
	}
	evbuffer_add(out, w, len);
	return col + len;
}

/*
 * dsn_put_wrapped - write text (cleaned: single spaces) starting at column
 * col, folding before a space once past DSN_FOLD_COL: the fold is CRLF then
 * cont (" " in a header, so unfolding restores the space; an indent in the
 * human part). Ends the line with CRLF.
 */
static void dsn_put_wrapped(struct evbuffer *out, size_t col, const char *text, const char *cont)
{
	size_t start = col;
	const char *p = text;
	while (*p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t len = sp ? (size_t)(sp - p) : strlen(p);
		if (p != text) {
			if (col + 1 + len > DSN_FOLD_COL && col > start) {
				evbuffer_add_printf(out, "\r\n%s", cont);
				col = strlen(cont);
			} else {
				evbuffer_add(out, " ", 1);
				col++;
			}
		}
		col = dsn_put_word(out, col, p, len, cont);
		p += len + (sp != NULL);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* A header field "Name: value" (value cleaned here), folded. */
static void dsn_field(struct evbuffer *out, const char *name, const char *value, bool keep8)
{
	char *v = dsn_clean(value, keep8);
	evbuffer_add_printf(out, "%s:", name);
	if (v[0] != '\0') {
		evbuffer_add(out, " ", 1);
		dsn_put_wrapped(out, strlen(name) + 2, v, " ");
	} else {
		evbuffer_add(out, "\r\n", 2);
	}
	free(v);
}

/* ---- addresses, statuses, diagnostics ---- */

static bool dsn_is_qchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != '+' && c != '=' && c != '\\';
}

/* Decode one UTF-8 sequence at s (len > 0); invalid bytes give U+FFFD. */
static uint32_t dsn_utf8_next(const unsigned char *s, size_t len, size_t *used)
{
	unsigned n = s[0] >= 0xf0 ? 3 : s[0] >= 0xe0 ? 2 : s[0] >= 0xc0 ? 1 : 0;
	uint32_t cp = n == 0 ? s[0] : s[0] & (0x3f >> n);
	*used = 1;
	if (s[0] >= 0x80 && (n == 0 || s[0] >= 0xf8))
		return 0xfffd;
	for (unsigned i = 1; i <= n; i++) {
		if (i >= len || (s[i] & 0xc0) != 0x80)
			return 0xfffd;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	*used = n + 1;
	return cp;
}

/*
 * An address for a delivery-status field: "rfc822; addr" when it is printable
 * ASCII, else "utf-8; " and utf-8-addr-xtext (RFC 6533 3): non-ASCII and, for
 * an address that was not already of type utf-8, "+", "=", "\" as \x{HEX}.
 */
static void dsn_put_addr(struct evbuffer *out, const char *name, const char *type, const char *addr)
{
	char *a = dsn_clean(addr, true);
	size_t len = strlen(a);
	bool utf8_type = str_ieq(type, "utf-8");
	if (!dsn_has_8bit(a, len) && !utf8_type) {
		char *v = xasprintf("%s; %s", type, a);
		dsn_field(out, name, v, false);
		free(v);
		free(a);
		return;
	}
	struct evbuffer *x = evbuffer_new();
	evbuffer_add_printf(x, "utf-8; ");
	for (size_t i = 0, used; i < len; i += used) {
		unsigned char c = (unsigned char)a[i];
		used = 1;
		if (c < 0x80 && (dsn_is_qchar(c) || utf8_type))
			evbuffer_add(x, a + i, 1);
		else
			evbuffer_add_printf(
			    x, "\\x{%X}",
			    (unsigned)dsn_utf8_next((const unsigned char *)a + i, len - i, &used));
	}
	evbuffer_add(x, "", 1);
	dsn_field(out, name, (const char *)evbuffer_pullup(x, -1), false);
	evbuffer_free(x);
	free(a);
}

/* ORCPT as stored ("rfc822;addr", "utf-8;addr-xtext"): type and value split. */
static void dsn_put_orcpt(struct evbuffer *out, const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	char type[32] = "rfc822";
	if (semi != NULL && semi > orcpt && (size_t)(semi - orcpt) < sizeof type) {
		size_t n = 0;
		for (const char *p = orcpt; p < semi; p++)
			if (isalnum((unsigned char)*p) || *p == '-')
				type[n++] = *p;
		type[n] = '\0';
		if (n == 0)
			str_lcpy(type, "rfc822", sizeof type);
	}
	const char *value = semi ? semi + 1 : orcpt;
	while (*value == ' ')
		value++;
	dsn_put_addr(out, "Original-Recipient", type, value);
}

static bool dsn_status_ok(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int part = 0; part < 2; part++) {
		size_t n = strspn(p, "0123456789");
		if (n < 1 || n > 3 || p[n] != (part == 0 ? '.' : '\0'))
			return false;
		p += n + 1;
	}
	return true;
}

static const char *dsn_action(const struct mta_dsn_rcpt *r)
{
	static const char *const known[] = {"failed", "delayed", "delivered", "relayed",
	                                    "expanded"};
	for (size_t i = 0; i < ARRAY_LEN(known); i++)
		if (r->action != NULL && str_ieq(r->action, known[i]))
			return known[i];
	return "failed";
}

static const char *dsn_status(const struct mta_dsn_rcpt *r)
{
	if (dsn_status_ok(r->status))
		return r->status;
	const char *a = dsn_action(r);
	return strcmp(a, "failed") == 0 ? "5.0.0" : strcmp(a, "delayed") == 0 ? "4.0.0" : "2.0.0";
}

/* Length of a leading "diagnostic-type;" (RFC 3464 2.3.6), or 0. */
static size_t dsn_diag_type_len(const char *s)
{
	size_t n = 0;
	if (!isalpha((unsigned char)s[0]))
		return 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '-')
		n++;
	return s[n] == ';' ? n : 0;
}

/* The diagnostic, cleaned, as "type; text"; *text points at the text alone. */
static char *dsn_diagnostic(const char *diag, const char **text)
{
	char *c = dsn_clean(diag, false);
	size_t tl = dsn_diag_type_len(c);
	char *v;
	if (tl > 0) {
		const char *rest = c + tl + 1;
		while (*rest == ' ')
			rest++;
		v = xasprintf("%.*s; %s", (int)tl, c, rest);
	} else if (c[0] >= '2' && c[0] <= '5' && isdigit((unsigned char)c[1]) &&
	           isdigit((unsigned char)c[2])) {
		v = xasprintf("smtp; %s", c);
	} else {
		v = xasprintf("x-relevo; %s", c);
	}
	free(c);
	*text = strchr(v, ';') + 2;
	return v;
}

/* dsn_field_date - "Name: <RFC 5322 date of ms>" (nothing when ms is 0). */
static void dsn_field_date(struct evbuffer *p, const char *name, int64_t ms)
{
	char date[64];
	if (ms <= 0)
		return;
	time_rfc5322(ms / 1000, date, sizeof date);
	dsn_field(p, name, date, false);
}

/* dsn_field_dns - "Name: dns; host" (RFC 3464 2.2.2, 2.3.5). */
static void dsn_field_dns(struct evbuffer *p, const char *name, const char *host)
{
	char *v = xasprintf("dns; %s", host);
	dsn_field(p, name, v, false);
	free(v);
}

/* ---- the parts ---- */

static bool dsn_all_delayed(const struct mta_dsn *d)
{
	for (size_t i = 0; i < d->nrcpt; i++)
		if (strcmp(dsn_action(&d->rcpt[i]), "delayed") != 0)
			return false;
	return d->nrcpt > 0;
}

static void dsn_human_rcpt(struct evbuffer *p, const struct mta_dsn_rcpt *r)
{
	char *addr = dsn_clean(r->addr, true);
	char *line = xasprintf("<%s>: %s (%s)", addr, dsn_action(r), dsn_status(r));
	dsn_put_wrapped(p, 0, line, "    ");
	free(line);
	if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
		const char *text;
		char *diag = dsn_diagnostic(r->diagnostic, &text);
		char *host = dsn_clean(r->remote_mta, false);
		line = host[0] ? xasprintf("The server %s said: %s", host, text)
		               : xasprintf("Reason: %s", text);
		evbuffer_add(p, "    ", 4);
		dsn_put_wrapped(p, 4, line, "    ");
		free(line);
		free(host);
		free(diag);
	}
	evbuffer_add(p, "\r\n", 2);
	free(addr);
}

/* Part 1: the human-readable explanation. */
static void dsn_human(const struct mta_dsn *d, struct evbuffer *p)
{
	char *host = dsn_clean(d->reporting_mta, false);
	evbuffer_add_printf(p, "This is the mail system at %s.\r\n\r\n", host);
	if (dsn_all_delayed(d))
		evbuffer_add_printf(p, "Your message has not been delivered yet to the recipients"
		                       " below.\r\nThe mail system will keep trying; you do not"
		                       " need to send it again.\r\n\r\n");
	else
		evbuffer_add_printf(p, "Your message could not be delivered to one or more"
		                       " recipients.\r\nThe details are below; your message (or"
		                       " its header section) is attached.\r\n\r\n");
	for (size_t i = 0; i < d->nrcpt; i++)
		dsn_human_rcpt(p, &d->rcpt[i]);
	free(host);
}

static void dsn_status_rcpt(struct evbuffer *p, const struct mta_dsn_rcpt *r)
{
	evbuffer_add(p, "\r\n", 2);
	if (r->orcpt != NULL)
		dsn_put_orcpt(p, r->orcpt);
	dsn_put_addr(p, "Final-Recipient", "rfc822", r->addr);
	dsn_field(p, "Action", dsn_action(r), false);
	dsn_field(p, "Status", dsn_status(r), false);
	if (r->remote_mta != NULL && r->remote_mta[0] != '\0')
		dsn_field_dns(p, "Remote-MTA", r->remote_mta);
	if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
		const char *text;
		char *v = dsn_diagnostic(r->diagnostic, &text);
		dsn_field(p, "Diagnostic-Code", v, false);
		free(v);
	}
	dsn_field_date(p, "Last-Attempt-Date", r->last_attempt);
}

/* Part 2: message/delivery-status, per-message then per-recipient groups. */
static void dsn_status_part(const struct mta_dsn *d, struct evbuffer *p)
{
	dsn_field_dns(p, "Reporting-MTA", d->reporting_mta ? d->reporting_mta : "localhost");
	if (d->envid != NULL)
		dsn_field(p, "Original-Envelope-Id", d->envid, false);
	dsn_field_date(p, "Arrival-Date", d->arrival);
	for (size_t i = 0; i < d->nrcpt; i++)
		dsn_status_rcpt(p, &d->rcpt[i]);
}

/* ---- the original ---- */

struct dsn_orig {
	const char *p;
	size_t len;
	bool full; /* message/rfc822, else text/rfc822-headers */
	bool eightbit;
};

/* Length of the header section (through the last header line's CRLF). */
static size_t dsn_header_len(const char *s, size_t len)
{
	if (len >= 2 && s[0] == '\r' && s[1] == '\n')
		return 0;
	const char *e = memmem(s, len, "\r\n\r\n", 4);
	return e ? (size_t)(e - s) + 2 : len;
}

/* Cut a header section to at most cap bytes, at the start of a field. */
static size_t dsn_header_cut(const char *s, size_t len, size_t cap)
{
	if (cap == 0 || len <= cap)
		return len;
	size_t best = 0;
	for (size_t i = 1; i <= cap; i++)
		if (s[i - 1] == '\n' && s[i] != ' ' && s[i] != '\t')
			best = i;
	return best;
}

static struct dsn_orig dsn_original(const struct mta_dsn *d)
{
	struct dsn_orig o = {.p = d->original ? d->original : "", .len = d->original_len};
	if (d->original == NULL)
		o.len = 0;
	o.full = !d->headers_only && (d->max_return == 0 || o.len <= d->max_return);
	if (!o.full)
		o.len = dsn_header_cut(o.p, dsn_header_len(o.p, o.len), d->max_return);
	o.eightbit = dsn_has_8bit(o.p, o.len);
	return o;
}

/* ---- assembly ---- */

static void dsn_random_hex(char *out, size_t nhex)
{
	static _Atomic uint64_t fallback;
	uint8_t b[32];
	size_t nb = MIN((nhex + 1) / 2, sizeof b);
	if (getrandom(b, nb, GRND_NONBLOCK) != (ssize_t)nb) {
		uint64_t x = (uint64_t)time_mono_ms() ^ atomic_fetch_add(&fallback, 1) << 32;
		for (size_t i = 0; i < nb;
		     i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
			b[i] = (uint8_t)(x >> 56);
	}
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < nhex; i++)
		out[i] = hex[(b[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
	out[nhex] = '\0';
}

static bool dsn_contains(struct evbuffer *b, const char *needle)
{
	return evbuffer_search(b, needle, strlen(needle), NULL).pos != -1;
}

/* A boundary found in none of the parts it will enclose (RFC 2046 5.1.1). */
static void dsn_boundary(char *out, size_t size, struct evbuffer *human, struct evbuffer *status,
                         const struct dsn_orig *o)
{
	char rnd[DSN_BOUNDARY_HEX + 1];
	for (int i = 0; i < DSN_BOUNDARY_TRIES; i++) {
		dsn_random_hex(rnd, DSN_BOUNDARY_HEX);
		snprintf(out, size, "=_relevo_%s", rnd);
		if (!dsn_contains(human, out) && !dsn_contains(status, out) &&
		    memmem(o->p, o->len, out, strlen(out)) == NULL)
			return;
	}
	fatal("event=dsn_boundary_collision tries=%d", DSN_BOUNDARY_TRIES);
}

static void dsn_headers(const struct mta_dsn *d, struct evbuffer *out, const char *boundary,
                        bool eightbit)
{
	char rnd[17];
	char *host = dsn_clean(d->reporting_mta ? d->reporting_mta : "localhost", false);
	char *sender = dsn_clean(d->sender, true);
	evbuffer_add_printf(out, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n", host);
	char *to = sender[0] ? xasprintf("<%s>", sender) : xstrdup("undisclosed-recipients:;");
	dsn_field(out, "To", to, true);
	dsn_field(out, "Subject",
	          dsn_all_delayed(d) ? "Delayed Mail (still being retried)"
	                             : "Undelivered Mail Returned to Sender",
	          false);
	int64_t now = d->date ? d->date : time_now_ms();
	dsn_field_date(out, "Date", now);
	dsn_random_hex(rnd, 16);
	evbuffer_add_printf(out, "Message-ID: <%llx.%s@%s>\r\n", (unsigned long long)now, rnd,
	                    host);
	evbuffer_add_printf(out,
	                    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	                    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	                    "\tboundary=\"%s\"\r\n",
	                    boundary);
	if (eightbit)
		evbuffer_add_printf(out, "Content-Transfer-Encoding: 8bit\r\n");
	evbuffer_add_printf(out, "\r\nThis is a MIME-formatted delivery status notification.\r\n");
	free(to);
	free(sender);
	free(host);
}

/* mta_dsn_build - the whole DSN message (see mta.h), appended to out. */
void mta_dsn_build(const struct mta_dsn *d, struct evbuffer *out)
{
	struct evbuffer *human = evbuffer_new(), *status = evbuffer_new();
	if (human == NULL || status == NULL)
		fatal("event=oom what=dsn_evbuffer");
	dsn_human(d, human);
	dsn_status_part(d, status);
	struct dsn_orig o = dsn_original(d);
	bool human8 =
	    dsn_has_8bit((const char *)evbuffer_pullup(human, -1), evbuffer_get_length(human));
	char boundary[64];
	dsn_boundary(boundary, sizeof boundary, human, status, &o);
	dsn_headers(d, out, boundary, human8 || o.eightbit);
	evbuffer_add_printf(out,
	                    "\r\n--%s\r\nContent-Type: text/plain; charset=%s\r\n"
	                    "Content-Description: Notification\r\n"
	                    "Content-Transfer-Encoding: %s\r\n\r\n",
	                    boundary, human8 ? "utf-8" : "us-ascii", human8 ? "8bit" : "7bit");
	evbuffer_add_buffer(out, human);
	evbuffer_add_printf(out,
	                    "\r\n--%s\r\nContent-Type: message/delivery-status\r\n"
	                    "Content-Description: Delivery report\r\n\r\n",
	                    boundary);
	evbuffer_add_buffer(out, status);
	evbuffer_add_printf(out,
	                    "\r\n--%s\r\nContent-Type: %s\r\n"
	                    "Content-Description: %s\r\nContent-Transfer-Encoding: %s\r\n\r\n",
	                    boundary, o.full ? "message/rfc822" : "text/rfc822-headers",
	                    o.full ? "Undelivered Message" : "Undelivered Message Headers",
	                    o.eightbit ? "8bit" : "7bit");
	evbuffer_add(out, o.p, o.len);
	if (o.len > 0 && (o.len < 2 || memcmp(o.p + o.len - 2, "\r\n", 2) != 0))
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add_printf(out, "\r\n--%s--\r\n", boundary);
	evbuffer_free(human);
	evbuffer_free(status);
}
