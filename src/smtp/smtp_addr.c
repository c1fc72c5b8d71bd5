/*
 * smtp_addr.c - envelope addresses and ESMTP parameters: the reverse- and
 * forward-paths of MAIL and RCPT (RFC 5321 4.1.2, SMTPUTF8 RFC 6531), their
 * parameters (SIZE RFC 1870, BODY RFC 6152, SMTPUTF8, DSN RFC 3461, AUTH RFC 4954
 * 5) and xtext.
 *
 * Invariants: what is accepted here is what the RFC grammar allows, nothing more.
 * Every length is checked before anything is copied into the fixed-size output
 * fields, so no input can overflow them. A decoded xtext never holds a control
 * character: its value ends up in the spool, in logs and in DSN header fields.
 * The relay never interprets a local part: "%", "!", quotes, shell and format
 * metacharacters are just octets handed on as received; only the domain is
 * routed on, and it is restricted to LDH labels (or U-labels) and IP literals.
 *
 * Failure model: a malformed argument is the peer's fault: RC_PROTO with *err set
 * to the reply to send (static text). Nothing here allocates or does I/O.
 *
 * Leniency, decided once: "MAIL FROM: <a@b>" (spaces after the colon) is accepted
 * as Postfix does; the angle brackets are required (Postfix's strict mode), so
 * "MAIL FROM:a@b" is refused. Extra spaces between parameters and at the end of
 * the line are accepted.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp.h"
#include "spool/spool.h"

static enum rc reply(struct smtp_reply *err, int code, const char *enh, const char *text)
{
	err->code = code;
	err->enh = enh;
	err->text = text;
	return RC_PROTO;
}

/* A path error: the enhanced code says whose address was bad (RFC 3463). */
static enum rc bad_path(struct smtp_reply *err, bool is_sender, const char *text)
{
	return reply(err, 501, is_sender ? "5.1.7" : "5.1.3", text);
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;	/* RFC 3461 wants upper case; lower is unambiguous */
	return -1;
}

/* RFC 5322 3.2.3 atext. */
static bool is_atext(unsigned char c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/*
 * A non-ASCII character in an address (RFC 6531 UTF8-non-ascii): well-formed
 * UTF-8 and not a C1 control. Returns its length, 0 if refused.
 */
static size_t addr_utf8(const char *s)
{
	uint32_t cp;
	size_t n = utf8_char(s, strnlen(s, 4), &cp);
	if (n < 2 || cp < 0xa0)
		return 0;
	return n;
}

/* Why a domain or literal was refused (static text for the reply). */
struct scan {
	size_t len;
	bool utf8;
	const char *why;
};

/*
 * scan_domain - a Domain (RFC 5321 4.1.2) at s: LDH labels (U-labels with
 * SMTPUTF8) separated by single dots, no leading or trailing hyphen, labels of
 * 1..63 octets. Stops at the first octet that cannot continue it. why is set
 * when the domain is malformed.
 */
static void scan_domain(const char *s, struct scan *sc)
{
	size_t i = 0;

	sc->why = NULL;
	for (;;) {
		size_t start = i;
		while (s[i] != '\0') {
			unsigned char c = (unsigned char)s[i];
			if (is_alpha(c) || is_digit(c) || c == '-') {
				i++;
			} else if (c >= 0x80) {
				size_t n = addr_utf8(s + i);
				if (n == 0) {
					sc->why = "Syntax error: invalid UTF-8 in domain";
					return;
				}
				sc->utf8 = true;
				i += n;
			} else {
				break;
			}
		}
		if (i == start) {
			sc->why = "Syntax error: empty or malformed domain label";
			return;
		}
		if (i - start > 63) {
			sc->why = "Domain label longer than 63 octets (RFC 1035 2.3.4)";
			return;
		}
		if (s[start] == '-' || s[i - 1] == '-') {
			sc->why = "Syntax error: domain label begins or ends with a hyphen";
			return;
		}
		if (s[i] != '.')
			break;
		i++;
	}
	sc->len = i;
}

/* One Snum (RFC 5321 4.1.3): 0..255, no leading zero (which some resolvers would
 * take as octal, turning one address into another). Returns digits used or 0. */
static size_t scan_snum(const char *s)
{
	size_t n = 0;
	unsigned v = 0;
	while (n < 3 && is_digit((unsigned char)s[n]))
		v = v * 10 + (unsigned)(s[n++] - '0');
	if (n == 0 || v > 255 || (n > 1 && s[0] == '0') || is_digit((unsigned char)s[n]))
		return 0;
	return n;
}

/* scan_literal - an address literal at s ("[" ... "]"): IPv4 or "IPv6:" only. */
static void scan_literal(const char *s, struct scan *sc)
{
	size_t i = 1;

	sc->why = NULL;
	if (strncasecmp(s + 1, "IPv6:", 5) == 0) {
		char tmp[INET6_ADDRSTRLEN];
		struct in6_addr a6;
		size_t n = 0;
		i += 5;
		while (n < sizeof tmp - 1 &&
		       (hexval((unsigned char)s[i + n]) >= 0 || s[i + n] == ':' || s[i + n] == '.'))
			n++;
		if (s[i + n] != ']' || n == 0) {
			sc->why = "Syntax error: malformed IPv6 address literal";
			return;
		}
		memcpy(tmp, s + i, n);
		tmp[n] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1) {
			sc->why = "Syntax error: malformed IPv6 address literal";
			return;
		}
		sc->len = i + n + 1;
		return;
	}
	if (is_digit((unsigned char)s[i])) {
		for (int part = 0; part < 4; part++) {
			size_t n = scan_snum(s + i);
			if (n == 0 || s[i + n] != (part == 3 ? ']' : '.')) {
				sc->why = "Syntax error: malformed IPv4 address literal";
				return;
			}
			i += n + 1;
		}
		sc->len = i;
		return;
	}
	/* General-address-literal (RFC 5321 4.1.3): a tag we do not route on. */
	sc->why = "Address literal type not supported";
}

/*
 * scan_local - the Local-part at s: Dot-string or Quoted-string (RFC 5321
 * 4.1.2), UTF-8 allowed in both with SMTPUTF8 (RFC 6531 3.3; the caller decides
 * whether it is allowed). Quoted pairs are kept as received.
 */
static void scan_local(const char *s, struct scan *sc)
{
	size_t i = 0;

	sc->why = NULL;
	if (s[0] == '"') {
		for (i = 1;; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				unsigned char q = (unsigned char)s[i + 1];
				if (q < 32 || q > 126) {
					sc->why = "Syntax error: bad quoted pair in local part";
					return;
				}
				i++;
			} else if (c >= 0x80) {
				size_t n = addr_utf8(s + i);
				if (n == 0) {
					sc->why = "Syntax error: invalid UTF-8 in local part";
					return;
				}
				sc->utf8 = true;
				i += n - 1;
			} else if (c < 32 || c == 127) {
				sc->why = c == '\0' ? "Syntax error: unbalanced quotes in local part"
						    : "Syntax error: control character in local part";
				return;
			}
		}
		sc->len = i + 1;
		return;
	}
	for (;;) {
		size_t start = i;
		while (s[i] != '\0') {
			unsigned char c = (unsigned char)s[i];
			if (is_atext(c)) {
				i++;
			} else if (c >= 0x80) {
				size_t n = addr_utf8(s + i);
				if (n == 0) {
					sc->why = "Syntax error: invalid UTF-8 in local part";
					return;
				}
				sc->utf8 = true;
				i += n;
			} else {
				break;
			}
		}
		if (i == start) {
			sc->why = "Syntax error: malformed local part";
			return;
		}
		if (s[i] != '.')
			break;
		i++;
	}
	sc->len = i;
}

/* skip_route - the obsolete source route "@a,@b:" (RFC 5321 4.1.1.3, C): checked
 * for syntax, then dropped. Returns octets used, 0 if malformed. */
static size_t skip_route(const char *s, bool *utf8)
{
	size_t i = 0;
	for (;;) {
		struct scan sc = {0};
		if (s[i] != '@')
			return 0;
		scan_domain(s + i + 1, &sc);
		if (sc.why != NULL || sc.len > SMTP_DOMAIN_MAX)
			return 0;
		*utf8 |= sc.utf8;
		i += 1 + sc.len;
		if (s[i] == ':')
			return i + 1;
		if (s[i] != ',')
			return 0;
		i++;
	}
}

/* smtp_path_parse - parse and check one "<...>" path. */
enum rc smtp_path_parse(const char *s, bool allow_null, bool utf8_ok, bool is_sender,
			size_t *consumed, struct smtp_path *out, struct smtp_reply *err)
{
	struct scan lp = {0}, dom = {0};
	bool route_utf8 = false;
	size_t i = 1;

	memset(out, 0, sizeof *out);
	*consumed = 0;
	if (s[0] != '<')
		return bad_path(err, is_sender, "Syntax error: address must be enclosed in <>");
	if (s[1] == '>') {
		if (!allow_null)
			return bad_path(err, is_sender, "Null address not allowed here");
		out->is_null = true;
		*consumed = 2;
		return RC_OK;
	}
	if (s[1] == '@') {
		size_t n = skip_route(s + 1, &route_utf8);
		if (n == 0)
			return bad_path(err, is_sender, "Syntax error: malformed source route");
		i += n;
	}

	const char *local = s + i;
	scan_local(local, &lp);
	if (lp.why != NULL)
		return bad_path(err, is_sender, lp.why);
	if (lp.len > SMTP_LOCAL_MAX)
		return bad_path(err, is_sender,
				"Local part longer than 64 octets (RFC 5321 4.5.3.1.1)");
	i += lp.len;

	const char *domain = s + i + 1;
	if (s[i] == '>' && !is_sender && i == 1 + lp.len && lp.len == 10 &&
	    strncasecmp(local, "postmaster", 10) == 0) {
		/* RFC 5321 4.1.1.3: "<Postmaster>" without a domain. */
		dom.len = 0;
	} else if (s[i] != '@') {
		return bad_path(err, is_sender, "Syntax error: address must be local-part@domain");
	} else if (domain[0] == '[') {
		scan_literal(domain, &dom);
	} else {
		scan_domain(domain, &dom);
	}
	if (dom.why != NULL)
		return bad_path(err, is_sender, dom.why);
	if (dom.len > SMTP_DOMAIN_MAX)
		return bad_path(err, is_sender, "Domain longer than 255 octets (RFC 5321 4.5.3.1.2)");
	if (dom.len > 0)
		i += 1 + dom.len;
	if (s[i] != '>')
		return bad_path(err, is_sender, "Syntax error: junk after the address");
	i++;
	if (i > SMTP_PATH_MAX)
		return bad_path(err, is_sender, "Path longer than 256 octets (RFC 5321 4.5.3.1.3)");
	if ((lp.utf8 || dom.utf8 || route_utf8) && !utf8_ok)
		return reply(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8 (RFC 6531)");

	out->is_utf8 = lp.utf8 || dom.utf8;
	memcpy(out->local, local, lp.len);
	out->local[lp.len] = '\0';
	memcpy(out->domain, domain, dom.len);
	out->domain[dom.len] = '\0';
	if (out->domain[0] != '[') {
		for (char *p = out->domain; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	if (dom.len > 0)
		snprintf(out->addr, sizeof out->addr, "%s@%s", out->local, out->domain);
	else
		snprintf(out->addr, sizeof out->addr, "%s", out->local);
	*consumed = i;
	return RC_OK;
}

/* smtp_xtext_decode - decode RFC 3461 4 xtext, refusing control characters. */
enum rc smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return RC_LIMIT;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '+') {
			if (len - i < 3)
				goto invalid;
			int hi = hexval((unsigned char)in[i + 1]);
			int lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				goto invalid;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			goto invalid;
		}
		if (c < 0x20 || c == 0x7f)
			goto invalid;	/* CR, LF, NUL...: never into headers or logs */
		if (o + 1 >= outsz) {
			out[0] = '\0';
			return RC_LIMIT;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return RC_OK;
invalid:
	out[0] = '\0';
	return RC_INVALID;
}

/* One "keyword[=value]" from a MAIL or RCPT line. */
struct param {
	const char *kw;
	size_t kwlen;
	const char *val;	/* NULL if no "=" */
	size_t vlen;
};

/*
 * next_param - split the next parameter off *sp (RFC 5321 4.1.2 esmtp-param).
 * Returns 1 with *p filled, 0 at the end of the line, -1 on a syntax error.
 */
static int next_param(const char **sp, struct param *p)
{
	const char *s = *sp;

	if (*s == '\0')
		return 0;
	if (*s != ' ')
		return -1;
	while (*s == ' ')
		s++;
	if (*s == '\0') {
		*sp = s;
		return 0;
	}
	p->kw = s;
	if (!is_alpha((unsigned char)*s) && !is_digit((unsigned char)*s))
		return -1;
	while (is_alpha((unsigned char)*s) || is_digit((unsigned char)*s) || *s == '-')
		s++;
	p->kwlen = (size_t)(s - p->kw);
	p->val = NULL;
	p->vlen = 0;
	if (*s == '=') {
		p->val = ++s;
		while (*s != '\0' && *s != ' ') {
			unsigned char c = (unsigned char)*s;
			if (c < 33 || c == '=' || c == 127)
				return -1;
			s++;
		}
		p->vlen = (size_t)(s - p->val);
		if (p->vlen == 0)
			return -1;
	} else if (*s != ' ' && *s != '\0') {
		return -1;
	}
	*sp = s;
	return 1;
}

static bool kw_is(const struct param *p, const char *name)
{
	return strlen(name) == p->kwlen && strncasecmp(p->kw, name, p->kwlen) == 0;
}

static bool val_is(const struct param *p, const char *v)
{
	return p->val != NULL && strlen(v) == p->vlen && strncasecmp(p->val, v, p->vlen) == 0;
}

/* Parameter errors (RFC 5321 4.1.1.11, RFC 1870, RFC 3461). */
static enum rc bad_syntax(struct smtp_reply *err, const char *text)
{
	return reply(err, 501, "5.5.4", text);
}

static enum rc unsupported(struct smtp_reply *err, const char *text)
{
	return reply(err, 555, "5.5.4", text);
}

/*
 * SIZE=digits. A value that does not even fit in 64 bits is certainly bigger
 * than anything we accept: 552 5.3.4 like any other over-size declaration
 * (RFC 1870 6), not a syntax error.
 */
static enum rc param_size(const struct param *pa, struct smtp_mail_params *p,
			  struct smtp_reply *err)
{
	uint64_t v = 0;
	if (pa->val == NULL)
		return bad_syntax(err, "Syntax: SIZE=<number of octets>");
	for (size_t i = 0; i < pa->vlen; i++)
		if (!is_digit((unsigned char)pa->val[i]))
			return bad_syntax(err, "Syntax: SIZE=<number of octets>");
	for (size_t i = 0; i < pa->vlen; i++) {
		uint64_t d = (uint64_t)(pa->val[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return reply(err, 552, "5.3.4",
				     "Message size exceeds fixed maximum message size");
		v = v * 10 + d;
	}
	p->has_size = true;
	p->size = v;
	return RC_OK;
}

/* An xtext value decoded into out: 501 5.5.4 on bad syntax, control characters,
 * non-ASCII, or when it does not fit. */
static enum rc param_xtext(const struct param *pa, char *out, size_t outsz, const char *what,
			   struct smtp_reply *err)
{
	if (pa->val == NULL || smtp_xtext_decode(pa->val, pa->vlen, out, outsz) != RC_OK)
		return bad_syntax(err, what);
	for (const char *c = out; *c; c++) {
		if ((unsigned char)*c >= 0x80) {
			out[0] = '\0';
			return bad_syntax(err, what);
		}
	}
	return RC_OK;
}

enum {
	MP_SIZE = 1 << 0,
	MP_BODY = 1 << 1,
	MP_SMTPUTF8 = 1 << 2,
	MP_RET = 1 << 3,
	MP_ENVID = 1 << 4,
	MP_AUTH = 1 << 5,
	RP_NOTIFY = 1 << 0,
	RP_ORCPT = 1 << 1,
};

static enum rc mail_param(const struct param *pa, unsigned *seen, struct smtp_mail_params *p,
			  struct smtp_reply *err)
{
	static const struct {
		const char *name;
		unsigned bit;
	} known[] = {
		{"SIZE", MP_SIZE},   {"BODY", MP_BODY},	  {"SMTPUTF8", MP_SMTPUTF8},
		{"RET", MP_RET},     {"ENVID", MP_ENVID}, {"AUTH", MP_AUTH},
	};
	unsigned bit = 0;

	for (size_t k = 0; k < ARRAY_LEN(known); k++)
		if (kw_is(pa, known[k].name))
			bit = known[k].bit;
	if (bit == 0)
		return unsupported(err, "Unsupported parameter");
	if (*seen & bit)
		return unsupported(err, "Duplicate parameter");
	*seen |= bit;

	switch (bit) {
	case MP_SIZE:
		return param_size(pa, p, err);
	case MP_BODY:
		if (val_is(pa, "7BIT"))
			p->body = SMTP_BODY_7BIT;
		else if (val_is(pa, "8BITMIME"))
			p->body = SMTP_BODY_8BITMIME;
		else
			return bad_syntax(err, "Syntax: BODY=7BIT or BODY=8BITMIME");
		return RC_OK;
	case MP_SMTPUTF8:
		if (pa->val != NULL)
			return bad_syntax(err, "Syntax: SMTPUTF8 takes no value");
		p->smtputf8 = true;
		return RC_OK;
	case MP_RET:
		if (val_is(pa, "FULL"))
			p->ret = SMTP_RET_FULL;
		else if (val_is(pa, "HDRS"))
			p->ret = SMTP_RET_HDRS;
		else
			return bad_syntax(err, "Syntax: RET=FULL or RET=HDRS");
		return RC_OK;
	case MP_ENVID:
		return param_xtext(pa, p->envid, sizeof p->envid,
				   "Malformed ENVID (xtext, at most 100 characters)", err);
	default: {
		/* AUTH=<mailbox> (RFC 4954 5): checked, then ignored; we never trust a
		 * client's claim about who submitted the message. */
		char tmp[SMTP_PATH_MAX * 4 + 1];
		return param_xtext(pa, tmp, sizeof tmp, "Malformed AUTH parameter", err);
	}
	}
}

/* path_arg - "FROM:<path>" / "TO:<path>" at *arg (keyword case-insensitive,
 * spaces allowed after the colon); *arg is left at the parameters. MAIL allows
 * the null path and is the sender; RCPT is neither. */
static enum rc path_arg(const char **arg, const char *kw, const char *syntax, bool utf8_ok,
			struct smtp_path *path, struct smtp_reply *err)
{
	bool sender = kw[0] == 'F';
	size_t n, kl = strlen(kw);
	memset(path, 0, sizeof *path);
	if (strncasecmp(*arg, kw, kl) != 0)
		return bad_syntax(err, syntax);
	*arg += kl;
	while (**arg == ' ')
		(*arg)++;
	enum rc rc = smtp_path_parse(*arg, sender, utf8_ok, sender, &n, path, err);
	if (rc == RC_OK)
		*arg += n;
	return rc;
}

/* smtp_mail_parse - "FROM:<path> [params]" into *path and *p. */
enum rc smtp_mail_parse(const char *arg, struct smtp_path *path, struct smtp_mail_params *p,
			struct smtp_reply *err)
{
	struct param pa;
	unsigned seen = 0;
	enum rc rc;
	int r;

	memset(p, 0, sizeof *p);
	/* UTF-8 is checked against SMTPUTF8 below: the parameter comes after it. */
	rc = path_arg(&arg, "FROM:", "Syntax: MAIL FROM:<address>", true, path, err);
	if (rc != RC_OK)
		return rc;
	while ((r = next_param(&arg, &pa)) == 1) {
		rc = mail_param(&pa, &seen, p, err);
		if (rc != RC_OK)
			return rc;
	}
	if (r < 0)
		return bad_syntax(err, "Syntax error in parameters");
	if (path->is_utf8 && !p->smtputf8)
		return reply(err, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8 (RFC 6531)");
	return RC_OK;
}

/* NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
static enum rc param_notify(const struct param *pa, struct smtp_rcpt_params *p,
			    struct smtp_reply *err)
{
	static const struct {
		const char *name;
		uint8_t bit;
	} kw[] = {
		{"NEVER", SPOOL_NOTIFY_NEVER},
		{"SUCCESS", SPOOL_NOTIFY_SUCCESS},
		{"FAILURE", SPOOL_NOTIFY_FAILURE},
		{"DELAY", SPOOL_NOTIFY_DELAY},
	};
	const char *what = "Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY";
	uint8_t bits = 0;
	size_t i = 0;

	if (pa->val == NULL)
		return bad_syntax(err, what);
	while (i <= pa->vlen) {
		size_t j = i;
		uint8_t bit = 0;
		while (j < pa->vlen && pa->val[j] != ',')
			j++;
		for (size_t k = 0; k < ARRAY_LEN(kw); k++)
			if (strlen(kw[k].name) == j - i &&
			    strncasecmp(pa->val + i, kw[k].name, j - i) == 0)
				bit = kw[k].bit;
		if (bit == 0)
			return bad_syntax(err, what);
		bits |= bit;
		i = j + 1;
	}
	if ((bits & SPOOL_NOTIFY_NEVER) && bits != SPOOL_NOTIFY_NEVER)
		return bad_syntax(err, "NOTIFY=NEVER cannot be combined with other values");
	p->notify = bits;
	return RC_OK;
}

/*
 * utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 3): printable ASCII except
 * "+", "=" and "\", "\x{HEX}" escapes, and raw UTF-8 only with SMTPUTF8. Kept as
 * received; an escape must name a character that is not a control.
 */
static bool orcpt_utf8_ok(const char *s, size_t len, bool utf8_ok)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			uint32_t cp = 0;
			size_t n = 0;
			if (len - i < 5 || s[i + 1] != 'x' || s[i + 2] != '{')
				return false;
			i += 3;
			while (i < len && n < 7 && hexval((unsigned char)s[i]) >= 0) {
				cp = cp << 4 | (uint32_t)hexval((unsigned char)s[i]);
				i++;
				n++;
			}
			if (n < 2 || n > 6 || i >= len || s[i] != '}')
				return false;
			if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp > 0x10ffff ||
			    (cp >= 0xd800 && cp <= 0xdfff))
				return false;
			i++;
		} else if (c >= 0x80) {
			uint32_t cp;
			size_t n = utf8_char(s + i, len - i, &cp);
			if (!utf8_ok || n < 2 || cp < 0xa0)
				return false;
			i += n;
		} else if (c < 0x21 || c > 0x7e || c == '+' || c == '=') {
			return false;
		} else {
			i++;
		}
	}
	return true;
}

/* ORCPT=addr-type;value (RFC 3461 4.2), stored as "rfc822;addr" (xtext decoded)
 * or "utf-8;value" (as received, RFC 6533). */
static enum rc param_orcpt(const struct param *pa, bool utf8_ok, struct smtp_rcpt_params *p,
			   struct smtp_reply *err)
{
	const char *what = "Malformed ORCPT (rfc822;xtext or utf-8;address, at most 500 characters)";
	const char *semi = pa->val ? memchr(pa->val, ';', pa->vlen) : NULL;
	char addr[SMTP_ORCPT_MAX + 1];

	if (semi == NULL)
		return bad_syntax(err, what);
	size_t tlen = (size_t)(semi - pa->val);
	const char *v = semi + 1;
	size_t vlen = pa->vlen - tlen - 1;
	if (tlen == 6 && strncasecmp(pa->val, "rfc822", 6) == 0) {
		struct param x = {.val = v, .vlen = vlen};
		if (vlen == 0 || param_xtext(&x, addr, sizeof addr, what, err) != RC_OK)
			return bad_syntax(err, what);
		size_t alen = strlen(addr);
		if (alen + 7 > SMTP_ORCPT_MAX)
			return bad_syntax(err, what);
		memcpy(p->orcpt, "rfc822;", 7);
		memcpy(p->orcpt + 7, addr, alen + 1);
		return RC_OK;
	}
	if (tlen == 5 && strncasecmp(pa->val, "utf-8", 5) == 0) {
		if (!orcpt_utf8_ok(v, vlen, utf8_ok) || vlen + 6 > SMTP_ORCPT_MAX)
			return bad_syntax(err, what);
		snprintf(p->orcpt, sizeof p->orcpt, "utf-8;%.*s", (int)vlen, v);
		return RC_OK;
	}
	return bad_syntax(err, "Unsupported ORCPT address type (rfc822 or utf-8)");
}

/* smtp_rcpt_parse - "TO:<path> [params]" into *path and *p. */
enum rc smtp_rcpt_parse(const char *arg, bool utf8_ok, struct smtp_path *path,
			struct smtp_rcpt_params *p, struct smtp_reply *err)
{
	struct param pa;
	unsigned seen = 0;
	enum rc rc;
	int r;

	memset(p, 0, sizeof *p);
	rc = path_arg(&arg, "TO:", "Syntax: RCPT TO:<address>", utf8_ok, path, err);
	if (rc != RC_OK)
		return rc;
	while ((r = next_param(&arg, &pa)) == 1) {
		unsigned bit = kw_is(&pa, "NOTIFY") ? RP_NOTIFY : kw_is(&pa, "ORCPT") ? RP_ORCPT : 0;
		if (bit == 0)
			return unsupported(err, "Unsupported parameter");
		if (seen & bit)
			return unsupported(err, "Duplicate parameter");
		seen |= bit;
		rc = bit == RP_NOTIFY ? param_notify(&pa, p, err)
				      : param_orcpt(&pa, utf8_ok, p, err);
		if (rc != RC_OK)
			return rc;
	}
	if (r < 0)
		return bad_syntax(err, "Syntax error in parameters");
	return RC_OK;
}
