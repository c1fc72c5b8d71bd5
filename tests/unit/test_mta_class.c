/*
 * test_mta_class.c - hard or soft: which permanent failures put a recipient on
 * the suppression list (mta_bounce_class).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mta/mta.h"

static void test_bounce_class(void **state)
{
	static const struct {
		const char *status;
		int code;
		const char *want;
	} cases[] = {
		{"5.1.1", 550, "hard"},	/* no such user */
		{"5.1.2", 550, "hard"},	/* bad destination system */
		{"5.1.10", 556, "hard"}, /* null MX */
		{"5.2.1", 550, "hard"},	/* mailbox disabled */
		{"5.0.0", 550, "hard"},	/* bare 550 (no enhanced code in the reply) */
		{"5.0.0", 553, "hard"},
		{"5.0.0", 554, "soft"},	/* a bare 554 is usually a policy refusal */
		{"5.2.2", 552, "soft"},	/* mailbox full */
		{"5.2.3", 552, "soft"},	/* message too large */
		{"5.7.1", 550, "soft"},	/* spam or policy: the sender can fix it */
		{"5.4.4", 0, "soft"},	/* no route (DNS) */
		{"5.3.4", 552, "soft"},
		{"4.4.7", 0, "soft"},	/* expired */
		{"4.2.2", 452, "soft"},
		{NULL, 0, "soft"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_string_equal(mta_bounce_class(cases[i].status, cases[i].code), cases[i].want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounce_class),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
