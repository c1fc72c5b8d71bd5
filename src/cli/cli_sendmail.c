/*
 * cli_sendmail.c - `relevo sendmail [options] [recipient ...]`, also run as
 * `sendmail` (a link named sendmail to the relevo binary): the
 * sendmail-compatible command applications and cron use (PHP mail(), mail(1)).
 *
 * It reads the message from standard input, builds the envelope, and submits
 * it over the local submission socket (smtp_local.c), where the daemon knows
 * the caller's account from its uid and applies exactly the SMTP path's checks,
 * signing and durability: success means the daemon answered 250, i.e. the
 * message is on disk. Nothing is ever written locally: with the daemon down
 * the command fails with EX_TEMPFAIL (75) and the application may retry.
 *
 * Exit statuses follow sysexits(3); sm_exit_for() derives them from the
 * daemon's reply in one place:
 *   0 sent; 64 usage (bad option, no recipient); 65 data refused (content,
 *   size, sender syntax); 67 recipient refused; 69 other refusal; 70 internal;
 *   74 reading standard input failed; 75 try again (daemon down, 4xx, lost
 *   connection); 76 protocol error; 77 not allowed (uid not mapped, sender or
 *   From: domain not the account's); 78 configuration (config unreadable,
 *   mapped account missing).
 *
 * -bp and -q run `relevo queue list` and `relevo queue flush`.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_sendmail.h"
#include "conf/conf.h"

#define SM_REPLY_MAX 8192 /* bytes of one (multi-line) reply kept */
#define SM_TIMEOUT   600  /* seconds for any reply (the commit's included) */
#define SM_ADDR_MAX  1000 /* bytes of one address */
#define SM_ENVID_MAX 100  /* RFC 3461 4.4 */

enum sm_mode { SM_SEND, SM_QUEUE_LIST, SM_FLUSH, SM_ALIASES };

struct sm_opts {
	enum sm_mode mode;
	const char *sender;   /* -f / -r */
	const char *fullname; /* -F */
	const char *notify;   /* -N */
	const char *ret;      /* -R */
	const char *envid;    /* -V */
	bool ignore_dots;     /* -i, -oi */
	bool extract;         /* -t */
	bool verbose;         /* -v */
	bool body8;           /* -B8BITMIME */
	char **args;          /* recipients on the command line */
	int nargs;
};

/* The envelope's recipients (deduplicated, case-insensitively). */
struct sm_rcpts {
	char **addr;
	size_t n;
	int bad; /* unusable addresses seen */
};

/* A connection to the daemon and its last reply. */
struct sm_conn {
	int fd;
	bool verbose;
	char buf[SM_REPLY_MAX];
	size_t buflen;
	int code;
	char enh[16];
	char text[SM_REPLY_MAX]; /* the reply's lines, '\n'-joined, codes removed */
};

static int sm_usage(FILE *out, int status)
{
	fprintf(
	    out,
	    "usage: relevo sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID]\n"
	    "                       [-v] [-c FILE] [--] [RECIPIENT ...]\n"
	    "       relevo sendmail -bp | -q\n"
	    "Reads a message on standard input and submits it to the running daemon through\n"
	    "the local submission socket (local_submit in the configuration). Also runs as\n"
	    "`sendmail` (a link to relevo). See the README, section \"sendmail\".\n");
	return status;
}

/* ---- options ---- */

/* sm_opt_value - the value of an option that takes one: attached or next. */
static const char *sm_opt_value(int argc, char **argv, int *i)
{
	if (argv[*i][2] != '\0')
		return argv[*i] + 2;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

/* sm_opt_b - -bm (send), -bp (list the queue), -bi (aliases: none). */
static int sm_opt_b(struct sm_opts *o, const char *arg)
{
	if (strcmp(arg, "-bm") == 0)
		o->mode = SM_SEND;
	else if (strcmp(arg, "-bp") == 0)
		o->mode = SM_QUEUE_LIST;
	else if (strcmp(arg, "-bi") == 0)
		o->mode = SM_ALIASES;
	else {
		fprintf(stderr, "relevo sendmail: %s is not supported (only -bm, -bp, -bi)\n", arg);
		return EX_USAGE;
	}
	return EX_OK;
}

/* sm_opt_valued - an option with a value; EX_OK, or EX_USAGE when it lacks one. */
static int sm_opt_valued(struct sm_opts *o, int argc, char **argv, int *i)
{
	char opt = argv[*i][1];
	const char *v = sm_opt_value(argc, argv, i);
	if (v == NULL) {
		fprintf(stderr, "relevo sendmail: -%c needs a value\n", opt);
		return EX_USAGE;
	}
	switch (opt) {
	case 'f':
	case 'r':
		o->sender = v;
		break;
	case 'F':
		o->fullname = v;
		break;
	case 'N':
		o->notify = v;
		break;
	case 'R':
		o->ret = v;
		break;
	case 'V':
		o->envid = v;
		break;
	case 'B':
		o->body8 = str_ieq(v, "8BITMIME");
		break;
	default: /* -C -h -L -O -p -X: accepted and ignored */
		break;
	}
	return EX_OK;
}

/* sm_opt_flags - -i, -t, -v and the ignored flags, alone or grouped ("-ti",
 * PHP's sendmail_path is often "sendmail -t -i"); false if a is not that. */
static bool sm_opt_flags(struct sm_opts *o, const char *a)
{
	if (a[1] == '\0' || strspn(a + 1, "itvnUGm") != strlen(a + 1))
		return false;
	for (const char *p = a + 1; *p; p++) {
		o->ignore_dots |= *p == 'i';
		o->extract |= *p == 't';
		o->verbose |= *p == 'v';
	}
	return true;
}

/* sm_parse_opts - sendmail's options up to the first recipient (or "--"). */
static int sm_parse_opts(struct sm_opts *o, int argc, char **argv)
{
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		int rc = EX_OK;
		if (strcmp(a, "--help") == 0)
			return -1;
		if (strchr("frFNRVBCLOpXh", a[1]) != NULL)
			rc = sm_opt_valued(o, argc, argv, &i);
		else if (a[1] == 'b')
			rc = sm_opt_b(o, a);
		else if (a[1] == 'q')
			o->mode = SM_FLUSH; /* -q, -q1h, -qR...: run the queue now */
		else if (strcmp(a, "-oi") == 0 || sm_opt_flags(o, a))
			; /* -i, -t, -v, alone or grouped (-ti) */
		else if (a[1] == 'o' || a[1] == 'd' || a[1] == 'A' || a[1] == 's')
			; /* -oX (-odb, -oem, ...), -dX, -Ac, -s: ignored */
		else {
			fprintf(stderr, "relevo sendmail: unknown option %s\n", a);
			rc = EX_USAGE;
		}
		if (rc != EX_OK)
			return rc;
	}
	o->args = argv + i;
	o->nargs = argc - i;
	return EX_OK;
}

/* ---- addresses ---- */

/* sm_addr_ok - an address that can go between < > on a command line. */
static bool sm_addr_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > SM_ADDR_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
			return false;
	}
	return true;
}

static bool sm_rcpt_add(void *arg, const char *addr)
{
	struct sm_rcpts *r = arg;
	if (!sm_addr_ok(addr)) {
		fprintf(stderr, "relevo sendmail: not a usable address: \"%.100s\"\n", addr);
		return false;
	}
	for (size_t i = 0; i < r->n; i++)
		if (str_ieq(r->addr[i], addr))
			return true;
	r->addr = xrealloc(r->addr, (r->n + 1) * sizeof *r->addr);
	r->addr[r->n++] = xstrdup(addr);
	return true;
}

static bool sm_first_addr(void *arg, const char *addr)
{
	char **out = arg;
	if (*out == NULL)
		*out = xstrdup(addr);
	return true;
}

/* sm_header_addr - the first address of the first field called name, or NULL. */
static char *sm_header_addr(const struct sm_msg *m, const char *name)
{
	char *addr = NULL;
	for (size_t i = 0; i < m->nfields && addr == NULL; i++) {
		if (!sm_field_is(&m->fields[i], name))
			continue;
		char *v = sm_field_value(&m->fields[i]);
		sm_addr_list(v, sm_first_addr, &addr);
		free(v);
	}
	return addr;
}

/* sm_extract - -t: the recipients of To, Cc and Bcc; then Bcc is removed. */
static void sm_extract(struct sm_msg *m, struct sm_rcpts *r)
{
	static const char *const names[] = {"To", "Cc", "Bcc"};
	for (size_t i = 0; i < m->nfields; i++) {
		for (size_t k = 0; k < ARRAY_LEN(names); k++) {
			if (!sm_field_is(&m->fields[i], names[k]))
				continue;
			char *v = sm_field_value(&m->fields[i]);
			r->bad += sm_addr_list(v, sm_rcpt_add, r);
			free(v);
		}
	}
	sm_msg_drop(m, "Bcc");
}

/* ---- the connection ---- */

/* sm_socket_path - where the daemon listens: from the config file, or (the
 * default config unreadable by this user) the default data_dir's socket. */
static int sm_socket_path(const char *conf_path, char *out, size_t outsz)
{
	enum rc rc = conf_local_socket_peek(conf_path, out, outsz);
	if (rc == RC_OK)
		return EX_OK;
	int e = errno;
	if ((rc == RC_IO || rc == RC_NOTFOUND) && strcmp(conf_path, CONF_DEFAULT_PATH) == 0) {
		snprintf(out, outsz, "%s/public/submit.sock", CONF_DEFAULT_DATA_DIR);
		return EX_OK;
	}
	fprintf(stderr, "relevo sendmail: cannot read the socket's path from %s: %s\n", conf_path,
	        rc == RC_INVALID ? "not a valid configuration" : strerror(e));
	return EX_CONFIG;
}

/* sm_connect - connect to the socket; EX_TEMPFAIL when nobody listens. */
static int sm_connect(struct sm_conn *c, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {SM_TIMEOUT, 0};
	if (str_lcpy(sun.sun_path, path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
		fprintf(stderr, "relevo sendmail: socket path too long: %s\n", path);
		return EX_CONFIG;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return EX_OSERR;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof sun) == 0)
		return EX_OK;
	int e = errno;
	fprintf(stderr, "relevo sendmail: cannot reach the relevo daemon at %s: %s%s\n", path,
	        strerror(e),
	        e == ENOENT || e == ECONNREFUSED ? " (is it running, with local_submit.users set?)"
	                                         : "");
	return e == EACCES || e == EPERM ? EX_NOPERM : EX_TEMPFAIL;
}

/* sm_read_line - one reply line (CRLF removed) into line; false on EOF/error. */
static bool sm_read_line(struct sm_conn *c, char *line, size_t linesz)
{
	for (;;) {
		char *crlf = memmem(c->buf, c->buflen, "\r\n", 2);
		if (crlf != NULL) {
			size_t n = (size_t)(crlf - c->buf);
			size_t keep = MIN(n, linesz - 1);
			memcpy(line, c->buf, keep);
			line[keep] = '\0';
			memmove(c->buf, crlf + 2, c->buflen - n - 2);
			c->buflen -= n + 2;
			return true;
		}
		if (c->buflen == sizeof c->buf)
			c->buflen = 0; /* an endless line: keep its end only */
		ssize_t r = read(c->fd, c->buf + c->buflen, sizeof c->buf - c->buflen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		c->buflen += (size_t)r;
	}
}

/* sm_reply - read a whole reply; false (code 0) if the connection broke. */
static bool sm_reply(struct sm_conn *c)
{
	char line[1024];
	size_t tl = 0;
	c->code = 0;
	c->enh[0] = c->text[0] = '\0';
	for (;;) {
		if (!sm_read_line(c, line, sizeof line) || strlen(line) < 3) {
			c->code = 0;
			return false;
		}
		if (c->verbose)
			fprintf(stderr, "<<< %s\n", line);
		int code = (int)strtol(line, NULL, 10);
		const char *text = line[3] ? line + 4 : "";
		size_t el = strspn(text, "0123456789.");
		if (c->enh[0] == '\0' && el > 4 && el < sizeof c->enh && text[el] == ' ')
			snprintf(c->enh, sizeof c->enh, "%.*s", (int)el, text);
		tl += (size_t)snprintf(c->text + tl, sizeof c->text - MIN(tl, sizeof c->text),
		                       "%s%s", tl ? "\n" : "", text);
		tl = MIN(tl, sizeof c->text - 1);
		c->code = code;
		if (line[3] != '-')
			return code >= 200 && code <= 599;
	}
}

/* sm_cmd - send a command line, read its reply. */
static bool sm_cmd(struct sm_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool sm_cmd(struct sm_conn *c, const char *fmt, ...)
{
	char line[SM_ADDR_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 2)
		return false;
	if (c->verbose)
		fprintf(stderr, ">>> %s\n", line);
	memcpy(line + n, "\r\n", 3);
	if (file_write_all(c->fd, line, (size_t)n + 2) != RC_OK) {
		c->code = 0;
		return false;
	}
	return sm_reply(c);
}

/* sm_exit_for - the exit status for the reply that stopped us (see the file
 * comment); code 0 is a connection that broke: nothing was accepted. */
static int sm_exit_for(const struct sm_conn *c)
{
	const char *e = c->enh;
	if (c->code == 0 || (c->code >= 400 && c->code < 500))
		return EX_TEMPFAIL;
	if (strncmp(e, "5.7.", 4) == 0)
		return EX_NOPERM;
	if (strcmp(e, "5.3.5") == 0)
		return EX_CONFIG;
	if (strcmp(e, "5.1.7") == 0 || strncmp(e, "5.6.", 4) == 0 || strcmp(e, "5.3.4") == 0)
		return EX_DATAERR;
	if (strncmp(e, "5.1.", 4) == 0)
		return EX_NOUSER;
	if (strncmp(e, "5.5.", 4) == 0)
		return EX_PROTOCOL;
	return EX_UNAVAILABLE;
}

/* sm_fail - say what the daemon answered (or that it went away); the status. */
static int sm_fail(const struct sm_conn *c, const char *what)
{
	if (c->code == 0)
		fprintf(stderr,
		        "relevo sendmail: %s: the connection to the daemon was lost; "
		        "nothing was sent\n",
		        what);
	else
		fprintf(stderr, "relevo sendmail: %s: %d %s\n", what, c->code, c->text);
	return sm_exit_for(c);
}

/* ---- the envelope ---- */

/* sm_login - the calling user's name, for the last-resort sender. */
static void sm_login(char *out, size_t outsz)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res != NULL)
		str_lcpy(out, res->pw_name, outsz);
	else
		snprintf(out, outsz, "uid%u", (unsigned)getuid());
}

/* sm_sender - -f, else the message's Sender:, else From:, else the caller's
 * login at the daemon's host name (sendmail's user@host; the account must own
 * that domain, or the daemon says which domain was refused). Caller frees. */
static char *sm_sender(const struct sm_opts *o, const struct sm_msg *m, const char *host)
{
	if (o->sender != NULL)
		return xstrdup(o->sender);
	char *a = sm_header_addr(m, "Sender");
	if (a == NULL)
		a = sm_header_addr(m, "From");
	if (a != NULL)
		return a;
	char login[256];
	sm_login(login, sizeof login);
	return xasprintf("%s@%s", login, host);
}

/* sm_add_from - RFC 5322 3.6.2 wants a From:; sendmail writes one from the
 * envelope sender and -F, and so do we. Date: and Message-ID: are added by the
 * daemon (RFC 6409 8.2, 8.3), as for any submission. */
static void sm_add_from(struct sm_msg *m, const char *sender, const char *fullname)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (sm_field_is(&m->fields[i], "From"))
			return;
	char *f;
	if (fullname != NULL && fullname[0] != '\0') {
		/* a quoted-string display name (RFC 5322 3.2.4): escape " and \ */
		size_t n = strlen(fullname), o = 0;
		char *q = xmalloc(2 * n + 1);
		for (size_t i = 0; i < n; i++) {
			if (fullname[i] == '\r' || fullname[i] == '\n')
				continue;
			if (fullname[i] == '"' || fullname[i] == '\\')
				q[o++] = '\\';
			q[o++] = fullname[i];
		}
		q[o] = '\0';
		f = xasprintf("From: \"%s\" <%s>", q, sender);
		free(q);
	} else {
		f = xasprintf("From: %s", sender);
	}
	sm_msg_prepend(m, f);
	free(f);
}

/* sm_notify_param - -N: " NOTIFY=..." (RFC 3461 4.1) into out; false if
 * invalid: NEVER alone, or a list of SUCCESS, FAILURE, DELAY. */
static bool sm_notify_param(const char *n, char *out, size_t outsz)
{
	static const char *const words[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
	out[0] = '\0';
	if (n == NULL)
		return true;
	size_t o = (size_t)snprintf(out, outsz, " NOTIFY=");
	bool never = false;
	for (const char *p = n;;) {
		size_t len = strcspn(p, ","), k;
		for (k = 0; k < ARRAY_LEN(words); k++)
			if (strlen(words[k]) == len && strncasecmp(p, words[k], len) == 0)
				break;
		if (k == ARRAY_LEN(words) || o + len + 2 > outsz)
			return false;
		never |= k == 0;
		o += (size_t)snprintf(out + o, outsz - o, "%s%s", p == n ? "" : ",", words[k]);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	return !never || strchr(n, ',') == NULL;
}

/* sm_mail_params - BODY, SMTPUTF8, RET and ENVID for MAIL FROM; false if -R or
 * -V is invalid. */
static bool sm_mail_params(const struct sm_opts *o, const struct sm_msg *m, bool utf8, char *out,
                           size_t outsz)
{
	size_t n = 0;
	out[0] = '\0';
	if (m->eight_bit || o->body8)
		n += (size_t)snprintf(out + n, outsz - n, " BODY=8BITMIME");
	if (utf8)
		n += (size_t)snprintf(out + n, outsz - n, " SMTPUTF8");
	if (o->ret != NULL) {
		if (!str_ieq(o->ret, "full") && !str_ieq(o->ret, "hdrs"))
			return false;
		n += (size_t)snprintf(out + n, outsz - n, " RET=%s",
		                      str_ieq(o->ret, "full") ? "FULL" : "HDRS");
	}
	if (o->envid != NULL) {
		/* xtext (RFC 3461 4): "+", "=" and anything outside 33..126 as +XX */
		if (strlen(o->envid) == 0 || strlen(o->envid) > SM_ENVID_MAX)
			return false;
		n += (size_t)snprintf(out + n, outsz - n, " ENVID=");
		for (const unsigned char *p = (const unsigned char *)o->envid; *p; p++)
			n += (size_t)snprintf(
			    out + n, outsz - n,
			    *p < 33 || *p > 126 || *p == '+' || *p == '=' ? "+%02X" : "%c", *p);
	}
	return n < outsz;
}

static bool sm_has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* ---- the transaction ---- */

/* sm_server_host - the daemon's host name: the first word of its EHLO reply. */
static void sm_server_host(const struct sm_conn *c, char *out, size_t outsz)
{
	size_t n = strcspn(c->text, " \n");
	snprintf(out, outsz, "%.*s", (int)MIN(n, outsz - 1), c->text);
}

/* sm_transaction - MAIL, RCPT..., DATA: all recipients or nothing. */
static int sm_transaction(struct sm_conn *c, const struct sm_opts *o, struct sm_msg *m,
                          const struct sm_rcpts *r)
{
	char host[256], params[512], notify[64];
	bool utf8 = false;
	sm_server_host(c, host, sizeof host);
	char *sender = sm_sender(o, m, host);
	if (strcmp(sender, "<>") == 0)
		sender[0] = '\0'; /* -f "<>": the null reverse-path (RFC 5321 4.5.5) */
	if (sender[0] != '\0' && !sm_addr_ok(sender)) {
		fprintf(stderr, "relevo sendmail: not a usable sender address: \"%.100s\"\n",
		        sender);
		free(sender);
		return EX_USAGE;
	}
	if (sender[0] != '\0')
		sm_add_from(m, sender, o->fullname);
	utf8 = sm_has_8bit(sender);
	for (size_t i = 0; i < r->n; i++)
		utf8 |= sm_has_8bit(r->addr[i]);
	if (!sm_mail_params(o, m, utf8, params, sizeof params) ||
	    !sm_notify_param(o->notify, notify, sizeof notify)) {
		fprintf(stderr, "relevo sendmail: invalid -N, -R or -V value\n");
		free(sender);
		return EX_USAGE;
	}
	bool ok = sm_cmd(c, "MAIL FROM:<%s>%s", sender, params) && c->code == 250;
	int status = ok ? EX_OK : sm_fail(c, "sender refused");
	free(sender);
	for (size_t i = 0; i < r->n && status == EX_OK; i++)
		if (!sm_cmd(c, "RCPT TO:<%s>%s", r->addr[i], notify) || c->code != 250)
			status = sm_fail(c, "recipient refused");
	if (status == EX_OK && (!sm_cmd(c, "DATA") || c->code != 354))
		status = sm_fail(c, "DATA refused");
	if (status != EX_OK)
		return status;
	size_t len;
	char *data = sm_msg_render(m, &len);
	bool sent = file_write_all(c->fd, data, len) == RC_OK;
	free(data);
	if (!sent || !sm_reply(c) || c->code != 250)
		return sm_fail(c, "message refused");
	if (o->verbose)
		fprintf(stderr, "relevo sendmail: %s\n", c->text);
	return EX_OK;
}

/* sm_submit - the SMTP dialogue on the local socket. */
static int sm_submit(const char *sock, const struct sm_opts *o, struct sm_msg *m,
                     const struct sm_rcpts *r)
{
	struct sm_conn *c = xcalloc(1, sizeof *c);
	c->fd = -1;
	c->verbose = o->verbose;
	int status = sm_connect(c, sock);
	if (status == EX_OK && (!sm_reply(c) || c->code != 220))
		status = sm_fail(c, "refused by the daemon");
	if (status == EX_OK && (!sm_cmd(c, "EHLO localhost") || c->code != 250))
		status = sm_fail(c, "EHLO refused");
	if (status == EX_OK)
		status = sm_transaction(c, o, m, r);
	if (c->fd >= 0) {
		if (c->code != 0)
			(void)sm_cmd(c, "QUIT");
		close(c->fd);
	}
	free(c);
	return status;
}

/* sm_send - read the message, find its recipients, submit it. */
static int sm_send(const struct sm_opts *o, const char *conf_path)
{
	struct sm_msg m = {0};
	struct sm_rcpts r = {0};
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	int status = sm_socket_path(conf_path, sock, sizeof sock);
	if (status != EX_OK)
		return status;
	for (int i = 0; i < o->nargs; i++)
		r.bad += sm_addr_list(o->args[i], sm_rcpt_add, &r);
	if (r.bad > 0) {
		status = EX_USAGE;
		goto out;
	}
	enum rc rc = sm_msg_read(&m, o->ignore_dots);
	if (rc != RC_OK) {
		fprintf(stderr, "relevo sendmail: %s\n",
		        rc == RC_LIMIT ? "the message is larger than 256 MiB"
		                       : "cannot read the message from standard input");
		status = rc == RC_LIMIT ? EX_DATAERR : EX_IOERR;
		goto out;
	}
	if (o->extract)
		sm_extract(&m, &r);
	if (r.bad > 0 || r.n == 0) {
		if (r.n == 0 && r.bad == 0)
			fprintf(stderr, "relevo sendmail: no recipients (give them as arguments, "
			                "or use -t to take them from To:, Cc: and Bcc:)\n");
		status = r.bad > 0 ? EX_DATAERR : EX_USAGE;
		goto out;
	}
	status = sm_submit(sock, o, &m, &r);
out:
	for (size_t i = 0; i < r.n; i++)
		free(r.addr[i]);
	free(r.addr);
	sm_msg_free(&m);
	return status;
}

/* cli_sendmail - `relevo sendmail ARGS`, or the binary run as `sendmail`. */
int cli_sendmail(int argc, char **argv, const char *conf_path)
{
	struct sm_opts o = {.mode = SM_SEND};
	signal(SIGPIPE, SIG_IGN);
	int rc = sm_parse_opts(&o, argc, argv);
	if (rc == -1)
		return sm_usage(stdout, EX_OK);
	if (rc != EX_OK)
		return rc;
	char *queue_list[] = {"queue", "list", NULL}, *queue_flush[] = {"queue", "flush", NULL};
	switch (o.mode) {
	case SM_QUEUE_LIST:
		return cli_queue(2, queue_list, conf_path);
	case SM_FLUSH:
		return cli_queue(2, queue_flush, conf_path);
	case SM_ALIASES:
		fprintf(stderr, "relevo sendmail: relevo has no aliases; nothing to do\n");
		return EX_OK;
	case SM_SEND:
		break;
	}
	return sm_send(&o, conf_path);
}
