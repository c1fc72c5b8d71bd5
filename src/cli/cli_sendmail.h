/*
 * cli_sendmail.h - private to `relevo sendmail` (cli_sendmail.c: options, the
 * envelope, the SMTP dialogue on the local socket; cli_sendmail_msg.c: the
 * message read from standard input and its headers).
 */
#ifndef RELEVO_CLI_SENDMAIL_H
#define RELEVO_CLI_SENDMAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

#define SM_INPUT_MAX ((size_t)256 * 1024 * 1024) /* bytes of standard input */

/* One header field as read: "Name: value\r\n" with its continuation lines. */
struct sm_field {
	char *text; /* owned, NUL-terminated */
	size_t len;
};

/* The message: header fields, then the body (CRLF line ends, not dot-stuffed). */
struct sm_msg {
	struct sm_field *fields; /* owned */
	size_t nfields;
	char *body; /* owned */
	size_t bodylen;
	bool eight_bit; /* a byte >= 0x80 somewhere: BODY=8BITMIME */
};

void sm_msg_parse(struct sm_msg *m, const char *in, size_t len, bool ignore_dots);
enum rc sm_msg_read(struct sm_msg *m, bool ignore_dots);
bool sm_field_is(const struct sm_field *f, const char *name);
char *sm_field_value(const struct sm_field *f);
void sm_msg_drop(struct sm_msg *m, const char *name);
void sm_msg_prepend(struct sm_msg *m, const char *text);
char *sm_msg_render(const struct sm_msg *m, size_t *outlen);
void sm_msg_free(struct sm_msg *m);

/* sm_addr_fn - one address of a list; false if it is unusable (counted). */
typedef bool sm_addr_fn(void *arg, const char *addr);
int sm_addr_list(const char *s, sm_addr_fn *fn, void *arg);

#endif
