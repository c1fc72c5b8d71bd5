/*
 * core_outcome.c - a delivery outcome as data (struct outcome, core.h) and its
 * one text form, the spool's last_reply: "status=X remote=H reply=\"T\"".
 *
 * The text is written by the delivery engine when it records an outcome and
 * read back by the bounce (mta_bounce.c), the API (http_event.c) and `queue
 * show` (cli_queue_show.c), all through outcome_parse. Invariant: T holds no
 * '"' and no control character (outcome_format replaces them), so the text is
 * one log-safe line and parses back without escapes; it always ends with its
 * '"' (a long reply is cut, not the quote). Pure functions.
 */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

static const char *const class_names[] = {
	[OUTCOME_DELIVERED] = "delivered",
	[OUTCOME_DEFERRED] = "deferred",
	[OUTCOME_BOUNCED] = "bounced",
	[OUTCOME_EXPIRED] = "expired",
};
_Static_assert(ARRAY_LEN(class_names) == OUTCOME__COUNT, "a name per class");

static const char *const cause_names[] = {
	[OUTCOME_BY_REPLY] = "reply",	[OUTCOME_BY_ROUTE] = "route",
	[OUTCOME_BY_CONNECT] = "connect", [OUTCOME_BY_EXPIRY] = "expiry",
	[OUTCOME_BY_LOCAL] = "local",
};
_Static_assert(ARRAY_LEN(cause_names) == OUTCOME_BY__COUNT, "a name per cause");

/* outcome_class_name - the event and log name of a class. */
const char *outcome_class_name(enum outcome_class c)
{
	return (unsigned)c < OUTCOME__COUNT ? class_names[c] : "?";
}

/* outcome_cause_name - what decided an outcome, for logs. */
const char *outcome_cause_name(enum outcome_cause c)
{
	return (unsigned)c < OUTCOME_BY__COUNT ? cause_names[c] : "?";
}

/* outcome_set_reply - the reply text of o from a reply's parts or a reason. */
void outcome_set_reply(struct outcome *o, int code, const char *enh, const char *text,
		       const char *why)
{
	o->code = code;
	if (code)
		snprintf(o->reply, sizeof o->reply, "%d %s%s%s", code, enh ? enh : "",
			 enh && enh[0] ? " " : "", text ? text : "");
	else
		str_lcpy(o->reply, why ? why : "", sizeof o->reply);
}

/* outcome_set_remote - split "name[ip]" into o's host and addr. */
void outcome_set_remote(struct outcome *o, const char *remote)
{
	o->host[0] = o->addr[0] = '\0';
	if (remote == NULL || remote[0] == '\0' || strcmp(remote, "-") == 0)
		return;
	size_t n = strcspn(remote, "[");
	snprintf(o->host, sizeof o->host, "%.*s", (int)n, remote);
	if (remote[n] == '[') {
		const char *a = remote + n + 1;
		snprintf(o->addr, sizeof o->addr, "%.*s", (int)strcspn(a, "]"), a);
	}
}

/* outcome_remote - "name[ip]" (or what is known of it), "" when none. */
void outcome_remote(const struct outcome *o, char *out, size_t outsz)
{
	if (o->addr[0])
		snprintf(out, outsz, "%s[%s]", o->host, o->addr);
	else
		str_lcpy(out, o->host, outsz);
}

/* outcome_format - the stored form (the spool's last_reply). */
void outcome_format(const struct outcome *o, char *out, size_t outsz)
{
	char remote[OUTCOME_HOST_MAX + OUTCOME_ADDR_MAX + 2];
	outcome_remote(o, remote, sizeof remote);
	int head = snprintf(out, outsz, "status=%s remote=%s reply=\"", o->status,
			    remote[0] ? remote : "-");
	if (head < 0 || (size_t)head + 2 > outsz)
		return;		/* cut already; outsz is never that small */
	size_t n = strlen(o->reply), room = outsz - (size_t)head - 2;
	if (n > room) {
		n = room;
		while (n > 0 && ((unsigned char)o->reply[n] & 0xc0) == 0x80)
			n--;	/* not in the middle of a UTF-8 sequence */
	}
	char *p = out + head;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)o->reply[i];
		*p++ = c == '"' || c < 0x20 || c == 0x7f ? '\'' : (char)c;
	}
	*p++ = '"';
	*p = '\0';
}

/* reply_code - the SMTP code a reply text starts with ("421 4.2.0 ..."), or 0. */
static int reply_code(const char *r)
{
	if (r[0] < '2' || r[0] > '5' || r[1] < '0' || r[1] > '9' || r[2] < '0' || r[2] > '9' ||
	    (r[3] != '\0' && r[3] != ' '))
		return 0;
	return (r[0] - '0') * 100 + (r[1] - '0') * 10 + (r[2] - '0');
}

/* outcome_parse - the stored form back into o's fields. */
bool outcome_parse(const char *s, struct outcome *o)
{
	o->status[0] = o->host[0] = o->addr[0] = o->reply[0] = '\0';
	o->code = 0;
	if (s == NULL)
		return false;
	const char *rm = strstr(s, " remote="), *rp = rm ? strstr(rm + 8, " reply=\"") : NULL;
	size_t n = strlen(s);
	if (strncmp(s, "status=", 7) != 0 || rp == NULL) {
		str_lcpy(o->reply, s, sizeof o->reply);
		return false;
	}
	snprintf(o->status, sizeof o->status, "%.*s", (int)(rm - s - 7), s + 7);
	char remote[OUTCOME_HOST_MAX + OUTCOME_ADDR_MAX + 2];
	snprintf(remote, sizeof remote, "%.*s", (int)(rp - rm - 8), rm + 8);
	outcome_set_remote(o, remote);
	size_t rn = (size_t)(s + n - (rp + 8));
	if (rn > 0 && s[n - 1] == '"')
		rn--;	/* a text cut by an older version lost its quote */
	snprintf(o->reply, sizeof o->reply, "%.*s", (int)rn, rp + 8);
	o->code = reply_code(o->reply);
	return true;
}
