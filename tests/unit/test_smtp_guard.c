/*
 * test_smtp_guard.c - failed AUTH across connections (src/smtp/smtp_guard.c):
 * lockout per address after the limit, its window, IPv6 grouped by /64, the
 * tarpit delay per address and per account (past its limit), accounts never
 * locked, success clearing an address, and bounded tables under a flood of
 * addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>

#include "smtp/smtp_int.h"

#define LIMIT 3
#define WINDOW 60 /* seconds */
#define T0 1000000 /* ms: any monotonic origin */

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage sa;
	memset(&sa, 0, sizeof sa);
	struct sockaddr_in *in = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
		in6->sin6_family = AF_INET6;
	else
		fail_msg("bad test address %s", text);
	return sa;
}

static struct smtp_guard_verdict fail_from(struct smtp_guard *g, const char *ip, const char *user,
					   int64_t now)
{
	struct sockaddr_storage sa = addr(ip);
	struct smtp_guard_verdict v;
	smtp_guard_fail(g, &sa, user, now, &v);
	return v;
}

static bool locked(struct smtp_guard *g, const char *ip, int64_t now)
{
	struct sockaddr_storage sa = addr(ip);
	return smtp_guard_is_locked(g, &sa, now);
}

static void test_lockout_and_window(void **state)
{
	struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
	for (int i = 1; i < LIMIT; i++) {
		struct smtp_guard_verdict v = fail_from(g, "192.0.2.1", "alice", T0 + i);
		assert_int_equal(v.addr_failures, i);
		assert_false(v.locked_now);
		assert_false(locked(g, "192.0.2.1", T0 + i));
	}
	struct smtp_guard_verdict v = fail_from(g, "192.0.2.1", "alice", T0 + 10);
	assert_true(v.locked_now);
	assert_true(locked(g, "192.0.2.1", T0 + 10));
	assert_false(locked(g, "192.0.2.2", T0 + 10)); /* IPv4: each address alone */
	/* locked for a window from the failure that reached the limit */
	assert_true(locked(g, "192.0.2.1", T0 + 10 + WINDOW * 1000 - 1));
	assert_false(locked(g, "192.0.2.1", T0 + 10 + WINDOW * 1000));
	/* and then counting starts again */
	v = fail_from(g, "192.0.2.1", "alice", T0 + 10 + WINDOW * 1000);
	assert_int_equal(v.addr_failures, 1);
	smtp_guard_free(g);
}

static void test_failures_outside_window_do_not_add_up(void **state)
{
	struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
	int64_t t = T0;
	for (int i = 0; i < 10; i++, t += WINDOW * 1000) {
		struct smtp_guard_verdict v = fail_from(g, "192.0.2.9", "bob", t);
		assert_int_equal(v.addr_failures, 1);
		assert_false(locked(g, "192.0.2.9", t));
	}
	smtp_guard_free(g);
}

static const struct {
	const char *label;
	const char *a, *b;
	bool same;
} key_cases[] = {
    {"IPv6 same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
    {"IPv6 next /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
    {"IPv4 neighbours", "127.0.0.1", "127.0.0.2", false},
    {"IPv4-mapped is the IPv4 address", "::ffff:198.51.100.7", "198.51.100.7", true},
    {"IPv4-mapped neighbours", "::ffff:198.51.100.7", "::ffff:198.51.100.8", false},
};

static void test_address_keys(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(key_cases); i++) {
		struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
		for (int n = 0; n < LIMIT; n++)
			fail_from(g, key_cases[i].a, NULL, T0 + n);
		if (locked(g, key_cases[i].b, T0 + 10) != key_cases[i].same)
			fail_msg("%s: %s locked=%d after %s was locked", key_cases[i].label,
				 key_cases[i].b, !key_cases[i].same, key_cases[i].a);
		smtp_guard_free(g);
	}
}

static void test_tarpit_delays(void **state)
{
	struct smtp_guard *g = smtp_guard_new(100, WINDOW);
	static const unsigned want[] = {500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5000,
					5000};
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		struct smtp_guard_verdict v = fail_from(g, "203.0.113.5", NULL, T0 + (int64_t)i);
		if (v.delay_ms != want[i])
			fail_msg("failure %zu: delay %u ms, want %u", i + 1, v.delay_ms, want[i]);
	}
	smtp_guard_free(g);
}

/* Many addresses against one account: never locked, but answered at the longest
 * delay once the account has had LIMIT failures; name case does not matter. */
static void test_account_tarpit_not_lockout(void **state)
{
	struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
	char ip[32];
	for (int i = 0; i < LIMIT; i++) {
		snprintf(ip, sizeof ip, "198.51.100.%d", i + 1);
		struct smtp_guard_verdict v = fail_from(g, ip, i % 2 ? "Alice" : "alice", T0 + i);
		assert_int_equal(v.delay_ms, 500);
		assert_int_equal(v.user_failures, i + 1);
	}
	/* past the limit: the longest delay */
	struct smtp_guard_verdict v = fail_from(g, "198.51.100.50", "ALICE", T0 + 50);
	assert_int_equal(v.user_failures, LIMIT + 1);
	assert_int_equal(v.delay_ms, 5000);
	assert_false(v.locked_now);
	assert_false(locked(g, "198.51.100.51", T0 + 51)); /* nobody else is locked */
	/* another account from the same addresses is not slowed */
	v = fail_from(g, "198.51.100.60", "carol", T0 + 60);
	assert_int_equal(v.delay_ms, 500);
	smtp_guard_free(g);
}

static void test_success_clears_address_not_account(void **state)
{
	struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
	struct sockaddr_storage sa = addr("192.0.2.77");
	for (int i = 0; i < LIMIT - 1; i++)
		fail_from(g, "192.0.2.77", "dave", T0 + i);
	smtp_guard_success(g, &sa, T0 + 10);
	struct smtp_guard_verdict v = fail_from(g, "192.0.2.77", "dave", T0 + 20);
	assert_int_equal(v.addr_failures, 1);
	assert_int_equal(v.user_failures, LIMIT);
	/* a success cannot lift a lock */
	for (int i = 0; i < LIMIT; i++)
		fail_from(g, "192.0.2.78", NULL, T0 + 30 + i);
	struct sockaddr_storage sb = addr("192.0.2.78");
	smtp_guard_success(g, &sb, T0 + 40);
	assert_true(locked(g, "192.0.2.78", T0 + 41));
	smtp_guard_free(g);
}

/* A flood of distinct addresses evicts old entries (bounded tables) but the
 * latest ones stay tracked, and nothing is allocated per address. */
static void test_flood_is_bounded(void **state)
{
	struct smtp_guard *g = smtp_guard_new(LIMIT, WINDOW);
	char ip[64];
	for (unsigned i = 0; i < 200000; i++) {
		snprintf(ip, sizeof ip, "2001:db8:%x:%x::1", i >> 16, i & 0xffff);
		fail_from(g, ip, "victim", T0 + i / 100);
	}
	/* one address now reaches the limit and is locked */
	for (int i = 0; i < LIMIT; i++)
		fail_from(g, "192.0.2.200", NULL, T0 + 3000 + i);
	assert_true(locked(g, "192.0.2.200", T0 + 3000 + LIMIT));
	struct smtp_guard_verdict v = fail_from(g, "192.0.2.201", "victim", T0 + 3010);
	assert_int_equal(v.delay_ms, 5000); /* the account is still under attack */
	smtp_guard_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lockout_and_window),
	    cmocka_unit_test(test_failures_outside_window_do_not_add_up),
	    cmocka_unit_test(test_address_keys),
	    cmocka_unit_test(test_tarpit_delays),
	    cmocka_unit_test(test_account_tarpit_not_lockout),
	    cmocka_unit_test(test_success_clears_address_not_account),
	    cmocka_unit_test(test_flood_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
