/*
 * test_http_reply.c - a recipient's last reply as the API shows it
 * (src/http/http_event.c): the object made from an event's fields
 * (http_last_reply) and from the outcome text the spool keeps
 * (http_last_reply_stored), which must be the same object for the same outcome.
 *
 * The stored texts are written here exactly as outcome_format makes them
 * ("status=X remote=H reply=\"...\"", remote "-" when there was none, '"' in the
 * reply turned into '\''); test_mta_reply.c pins that format from the other side.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/http.h"

/* as_text - the object as sorted compact JSON (freed by the caller). */
static char *as_text(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	json_decref(o);
	assert_non_null(s);
	return s;
}

static const struct {
	const char *label;
	const char *stored;
	const char *want;
} stored_cases[] = {
    {"deferred by the remote",
     "status=4.2.0 remote=mx1.dest.test[127.0.0.5] reply=\"421 4.2.0 busy\"",
     "{\"code\":421,\"remote\":\"mx1.dest.test[127.0.0.5]\",\"reply\":\"421 4.2.0 busy\","
     "\"status\":\"4.2.0\"}"},
    {"delivered", "status=2.0.0 remote=mx[192.0.2.1] reply=\"250 2.0.0 ok: queued as X\"",
     "{\"code\":250,\"remote\":\"mx[192.0.2.1]\",\"reply\":\"250 2.0.0 ok: queued as X\","
     "\"status\":\"2.0.0\"}"},
    {"no remote, a local reason", "status=4.4.1 remote=- reply=\"connection refused\"",
     "{\"code\":null,\"remote\":null,\"reply\":\"connection refused\",\"status\":\"4.4.1\"}"},
    {"empty reply", "status=5.0.0 remote=- reply=\"\"",
     "{\"code\":null,\"remote\":null,\"reply\":null,\"status\":\"5.0.0\"}"},
    {"a reply naming remote= and reply=",
     "status=5.1.1 remote=mx[::1] reply=\"550 5.1.1 remote=x reply='y' unknown\"",
     "{\"code\":550,\"remote\":\"mx[::1]\",\"reply\":\"550 5.1.1 remote=x reply='y' unknown\","
     "\"status\":\"5.1.1\"}"},
    {"cut before the closing quote", "status=4.2.0 remote=mx[192.0.2.1] reply=\"421 4.2.0 bu",
     "{\"code\":421,\"remote\":\"mx[192.0.2.1]\",\"reply\":\"421 4.2.0 bu\","
     "\"status\":\"4.2.0\"}"},
    {"bare code", "status=4.0.0 remote=mx[192.0.2.1] reply=\"421\"",
     "{\"code\":421,\"remote\":\"mx[192.0.2.1]\",\"reply\":\"421\",\"status\":\"4.0.0\"}"},
    {"not a code: four digits", "status=4.0.0 remote=- reply=\"4210 x\"",
     "{\"code\":null,\"remote\":null,\"reply\":\"4210 x\",\"status\":\"4.0.0\"}"},
    {"not a code: 1yz", "status=4.0.0 remote=- reply=\"199 x\"",
     "{\"code\":null,\"remote\":null,\"reply\":\"199 x\",\"status\":\"4.0.0\"}"},
    {"another form is the reply", "deleted by operator",
     "{\"code\":null,\"remote\":null,\"reply\":\"deleted by operator\",\"status\":null}"},
    {"status= without the rest", "status=4.2.0",
     "{\"code\":null,\"remote\":null,\"reply\":\"status=4.2.0\",\"status\":null}"},
    {"remote= without reply=", "status=4.2.0 remote=mx",
     "{\"code\":null,\"remote\":null,\"reply\":\"status=4.2.0 remote=mx\",\"status\":null}"},
    {"nothing stored", NULL, "null"},
    {"empty text", "", "null"},
};

static void test_stored(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof stored_cases / sizeof stored_cases[0]; i++) {
		char *got = as_text(http_last_reply_stored(stored_cases[i].stored));
		if (strcmp(got, stored_cases[i].want) != 0)
			fail_msg("case '%s': got %s, want %s", stored_cases[i].label, got,
			         stored_cases[i].want);
		free(got);
	}
}

static const struct {
	const char *label;
	const char *status, *remote, *reply;
	const char *stored; /* the same outcome as the spool keeps it */
} same_cases[] = {
    {"deferred", "4.2.0", "mx1.dest.test[127.0.0.5]", "421 4.2.0 busy",
     "status=4.2.0 remote=mx1.dest.test[127.0.0.5] reply=\"421 4.2.0 busy\""},
    {"bounced", "5.1.1", "mx[192.0.2.1]", "550 5.1.1 no such user",
     "status=5.1.1 remote=mx[192.0.2.1] reply=\"550 5.1.1 no such user\""},
    {"expired without a connection", "4.4.7", NULL, "no MX answered",
     "status=4.4.7 remote=- reply=\"no MX answered\""},
};

/* An event's fields and the stored text of one outcome give the same object. */
static void test_event_and_stored_agree(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof same_cases / sizeof same_cases[0]; i++) {
		char *a = as_text(http_last_reply(same_cases[i].status, same_cases[i].remote,
		                                  same_cases[i].reply));
		char *b = as_text(http_last_reply_stored(same_cases[i].stored));
		if (strcmp(a, b) != 0)
			fail_msg("case '%s': from the event %s, stored %s", same_cases[i].label, a,
			         b);
		free(a);
		free(b);
	}
}

static void test_fields(void **state)
{
	(void)state;
	char *s = as_text(http_last_reply(NULL, NULL, NULL));
	assert_string_equal(s, "null");
	free(s);
	s = as_text(http_last_reply("", "", ""));
	assert_string_equal(s, "null");
	free(s);
	/* every member is always there, whatever is known */
	s = as_text(http_last_reply("5.7.1", NULL, NULL));
	assert_string_equal(s,
	                    "{\"code\":null,\"remote\":null,\"reply\":null,\"status\":\"5.7.1\"}");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stored),
	    cmocka_unit_test(test_event_and_stored_agree),
	    cmocka_unit_test(test_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
