/*
 * test_store.c - the SQLite store: users and domains, result codes, files and
 * permissions, reopening, migrations, two handles and threads on one database.
 *
 * Each test runs in its own mkdtemp directory (data_dir is a not-yet-existing
 * subdirectory of it, so store_open's mkdir is exercised) removed afterwards.
 */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
#include "unit_util.h"

#define HASH_A "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA"
#define HASH_B "$6$saltsalt$notreallyahash"

struct fixture {
	char root[64];
	char data_dir[128];
	char db_path[160];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (unit_store_open("store", "var/data", f->root, sizeof f->root, &f->st) != 0)
		return -1;
	snprintf(f->data_dir, sizeof f->data_dir, "%s/var/data", f->root);
	snprintf(f->db_path, sizeof f->db_path, "%s/relevo.db", f->data_dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = unit_store_close(f->root, f->st);
	free(f);
	return r;
}

static void reopen(struct fixture *f)
{
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->data_dir, &f->st), RC_OK);
}

/* Run one integer query directly against the database file. */
static int64_t db_int(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	int src = sqlite3_step(s);
	int64_t v = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void db_exec(const char *db_path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_open_creates_private_files(void **state)
{
	struct fixture *f = *state;
	struct stat sb;
	assert_int_equal(stat(f->data_dir, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_int_equal(stat(f->db_path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	char wal[sizeof f->db_path + 8];
	snprintf(wal, sizeof wal, "%s-wal", f->db_path);
	assert_int_equal(stat(wal, &sb), 0); /* WAL mode is on */
	assert_int_equal(sb.st_mode & 077, 0);
}

static void test_open_rejects_bad_dir(void **state)
{
	struct fixture *f = *state;
	struct store *st = (struct store *)1;
	assert_int_equal(store_open("", &st), RC_INVALID);
	assert_null(st);
	/* data_dir is a regular file */
	assert_int_not_equal(store_open(f->db_path, &st), RC_OK);
	assert_null(st);
}

static const struct {
	const char *label;
	const char *name;
	const char *domains[4];
	size_t ndomains;
	const char *want[4]; /* sorted */
	size_t nwant;
} roundtrip_cases[] = {
    {"one domain", "alice", {"example.com"}, 1, {"example.com"}, 1},
    {"domains are lower-cased and sorted",
     "bob",
     {"Example.COM", "B.example.ORG"},
     2,
     {"b.example.org", "example.com"},
     2},
    {"duplicates in any case merge",
     "carol",
     {"a.example", "A.EXAMPLE", "a.example"},
     3,
     {"a.example"},
     1},
    {"no domains", "dave", {NULL}, 0, {NULL}, 0},
    {"address-like name keeps its case",
     "Eve.Smith+relay@example.com",
     {"x.example"},
     1,
     {"x.example"},
     1},
};

static void test_user_roundtrip(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms() / 1000;
	for (size_t i = 0; i < ARRAY_LEN(roundtrip_cases); i++) {
		const char *label = roundtrip_cases[i].label;
		struct store_user *u = NULL;
		print_message("case: %s\n", label);
		assert_int_equal(store_user_add(f->st, roundtrip_cases[i].name, HASH_A,
		                                roundtrip_cases[i].domains,
		                                roundtrip_cases[i].ndomains),
		                 RC_OK);
		assert_int_equal(store_user_get(f->st, roundtrip_cases[i].name, &u), RC_OK);
		assert_string_equal(u->name, roundtrip_cases[i].name);
		assert_string_equal(u->pwhash, HASH_A);
		assert_in_range(u->created, now - 5, now + 5);
		assert_int_equal(u->ndomains, roundtrip_cases[i].nwant);
		for (size_t j = 0; j < u->ndomains; j++)
			assert_string_equal(u->domains[j], roundtrip_cases[i].want[j]);
		store_user_free(u);
	}
}

enum op { OP_ADD, OP_GET, OP_DEL, OP_PASSWD };

static const char name64[] = "a123456789012345678901234567890123456789012345678901234567890123";
static const char name65[] = "a1234567890123456789012345678901234567890123456789012345678901234";

static const struct {
	const char *label;
	enum op op;
	const char *name;
	const char *pwhash;
	const char *domain;
	enum rc want;
} rc_cases[] = {
    {"add new user", OP_ADD, "alice", HASH_A, "example.com", RC_OK},
    {"add same name again", OP_ADD, "alice", HASH_A, "example.com", RC_EXISTS},
    {"add same name in other case", OP_ADD, "ALICE", HASH_A, "example.com", RC_EXISTS},
    {"get in other case", OP_GET, "Alice", NULL, NULL, RC_OK},
    {"get missing", OP_GET, "bob", NULL, NULL, RC_NOTFOUND},
    {"del missing", OP_DEL, "bob", NULL, NULL, RC_NOTFOUND},
    {"passwd missing", OP_PASSWD, "bob", HASH_B, NULL, RC_NOTFOUND},
    {"empty name", OP_ADD, "", HASH_A, "example.com", RC_INVALID},
    {"name with space", OP_ADD, "al ice", HASH_A, "example.com", RC_INVALID},
    {"name with slash", OP_ADD, "al/ice", HASH_A, "example.com", RC_INVALID},
    {"name with quote", OP_ADD, "al'ice", HASH_A, "example.com", RC_INVALID},
    {"name of 65 chars", OP_ADD, name65, HASH_A, "example.com", RC_INVALID},
    {"name of 64 chars", OP_ADD, name64, HASH_A, "example.com", RC_OK},
    {"all allowed punctuation", OP_ADD, "a._@+-z", HASH_A, "example.com", RC_OK},
    {"get invalid name", OP_GET, "a b", NULL, NULL, RC_INVALID},
    {"del invalid name", OP_DEL, "a b", NULL, NULL, RC_INVALID},
    {"empty hash", OP_ADD, "frank", "", "example.com", RC_INVALID},
    {"empty domain", OP_ADD, "frank", HASH_A, "", RC_INVALID},
    {"failed add left nothing", OP_GET, "frank", NULL, NULL, RC_NOTFOUND},
    {"passwd empty hash", OP_PASSWD, "alice", "", NULL, RC_INVALID},
    {"passwd existing", OP_PASSWD, "alice", HASH_B, NULL, RC_OK},
    {"del existing", OP_DEL, "alice", NULL, NULL, RC_OK},
    {"get deleted", OP_GET, "alice", NULL, NULL, RC_NOTFOUND},
    {"del deleted", OP_DEL, "alice", NULL, NULL, RC_NOTFOUND},
    {"add again after del", OP_ADD, "alice", HASH_A, "example.com", RC_OK},
};

static enum rc run_op(struct store *st, size_t i)
{
	const char *domains[1] = {rc_cases[i].domain};
	struct store_user *u = NULL;
	enum rc rc;
	switch (rc_cases[i].op) {
	case OP_ADD:
		return store_user_add(st, rc_cases[i].name, rc_cases[i].pwhash, domains, 1);
	case OP_GET:
		rc = store_user_get(st, rc_cases[i].name, &u);
		assert_true((rc == RC_OK) == (u != NULL));
		store_user_free(u);
		return rc;
	case OP_DEL:
		return store_user_del(st, rc_cases[i].name);
	case OP_PASSWD:
		return store_user_set_password(st, rc_cases[i].name, rc_cases[i].pwhash);
	}
	return RC__COUNT;
}

static void test_result_codes(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < ARRAY_LEN(rc_cases); i++) {
		enum rc got = run_op(f->st, i);
		if (got != rc_cases[i].want)
			fail_msg("case '%s': got %s, want %s", rc_cases[i].label, rc_name(got),
			         rc_name(rc_cases[i].want));
	}
}

static void test_passwd_keeps_domains(void **state)
{
	struct fixture *f = *state;
	const char *d[] = {"example.com", "example.org"};
	struct store_user *u = NULL;
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, d, 2), RC_OK);
	assert_int_equal(store_user_set_password(f->st, "alice", HASH_B), RC_OK);
	assert_int_equal(store_user_get(f->st, "alice", &u), RC_OK);
	assert_string_equal(u->pwhash, HASH_B);
	assert_int_equal(u->ndomains, 2);
	store_user_free(u);
}

static void test_del_cascades_domains(void **state)
{
	struct fixture *f = *state;
	const char *d1[] = {"a.example", "b.example"};
	const char *d2[] = {"c.example"};
	struct store_user *u = NULL;
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, d1, 2), RC_OK);
	assert_int_equal(store_user_del(f->st, "alice"), RC_OK);
	assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM user_domains"), 0);
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, d2, 1), RC_OK);
	assert_int_equal(store_user_get(f->st, "alice", &u), RC_OK);
	assert_int_equal(u->ndomains, 1);
	assert_string_equal(u->domains[0], "c.example");
	store_user_free(u);
}

struct list_acc {
	size_t n, stop_after;
	char names[8][32];
	char domains[8][64];
};

static bool list_cb(void *arg, const struct store_user *u)
{
	struct list_acc *acc = arg;
	assert_true(acc->n < 8);
	snprintf(acc->names[acc->n], sizeof acc->names[0], "%s", u->name);
	size_t off = 0;
	for (size_t i = 0; i < u->ndomains; i++)
		off += (size_t)snprintf(acc->domains[acc->n] + off, sizeof acc->domains[0] - off,
		                        "%s%s", i ? "," : "", u->domains[i]);
	acc->n++;
	return acc->stop_after == 0 || acc->n < acc->stop_after;
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	struct list_acc acc = {0};
	assert_int_equal(store_user_list(f->st, list_cb, &acc), RC_OK);
	assert_int_equal(acc.n, 0); /* empty store */

	const char *dc[] = {"c.example"};
	const char *da[] = {"z.example", "a.example"};
	assert_int_equal(store_user_add(f->st, "charlie", HASH_A, dc, 1), RC_OK);
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, da, 2), RC_OK);
	assert_int_equal(store_user_add(f->st, "Bob", HASH_A, NULL, 0), RC_OK);
	assert_int_equal(store_user_list(f->st, list_cb, &acc), RC_OK);
	assert_int_equal(acc.n, 3);
	assert_string_equal(acc.names[0], "alice");
	assert_string_equal(acc.domains[0], "a.example,z.example");
	assert_string_equal(acc.names[1], "Bob"); /* name order ignores case */
	assert_string_equal(acc.domains[1], "");
	assert_string_equal(acc.names[2], "charlie");
	assert_string_equal(acc.domains[2], "c.example");

	struct list_acc first = {.stop_after = 1};
	assert_int_equal(store_user_list(f->st, list_cb, &first), RC_OK);
	assert_int_equal(first.n, 1);
	assert_string_equal(first.names[0], "alice");
	/* an abandoned list must not leave the store locked or mid-statement */
	assert_int_equal(store_user_del(f->st, "charlie"), RC_OK);
}

static void test_reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	const char *d[] = {"Example.com"};
	struct store_user *u = NULL;
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, d, 1), RC_OK);
	reopen(f);
	assert_int_equal(store_user_get(f->st, "alice", &u), RC_OK);
	assert_string_equal(u->pwhash, HASH_A);
	assert_int_equal(u->ndomains, 1);
	assert_string_equal(u->domains[0], "example.com");
	store_user_free(u);
	assert_int_equal(store_user_add(f->st, "alice", HASH_A, d, 1), RC_EXISTS);
}

static void test_migration_idempotent(void **state)
{
	struct fixture *f = *state;
	int64_t count = db_int(f->db_path, "SELECT count(*) FROM schema_version");
	int64_t max = db_int(f->db_path, "SELECT max(version) FROM schema_version");
	assert_true(max >= 1);
	assert_int_equal(count, max); /* one row per version 1..max */
	for (int i = 0; i < 3; i++) {
		reopen(f);
		assert_int_equal(db_int(f->db_path, "SELECT count(*) FROM schema_version"), count);
		assert_int_equal(db_int(f->db_path, "SELECT max(version) FROM schema_version"),
		                 max);
	}
	assert_int_equal(db_int(f->db_path, "PRAGMA foreign_key_check"), -1); /* no rows */
}

static void test_newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	f->st = NULL;
	db_exec(f->db_path, "INSERT INTO schema_version(version, applied) VALUES (9999, 0)");
	struct store *st = NULL;
	assert_int_equal(store_open(f->data_dir, &st), RC_INVALID);
	assert_null(st);
	db_exec(f->db_path, "DELETE FROM schema_version WHERE version = 9999");
	assert_int_equal(store_open(f->data_dir, &f->st), RC_OK);
}

#define THREADS    4
#define PER_THREAD 25

struct worker {
	struct store *st;
	int id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		char name[32];
		snprintf(name, sizeof name, "user-%d-%d", w->id, i);
		const char *d[] = {"example.com"};
		struct store_user *u = NULL;
		if (store_user_add(w->st, name, HASH_A, d, 1) != RC_OK)
			w->failures++;
		if (store_user_get(w->st, name, &u) != RC_OK)
			w->failures++;
		store_user_free(u);
	}
	return NULL;
}

static bool count_cb(void *arg, const struct store_user *u)
{
	(*(size_t *)arg)++;
	return true;
}

/* Two handles (daemon and CLI) and several threads on one database. */
static void test_two_handles_and_threads(void **state)
{
	struct fixture *f = *state;
	struct store *st2 = NULL;
	assert_int_equal(store_open(f->data_dir, &st2), RC_OK);
	struct worker w[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.st = i % 2 ? st2 : f->st, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	size_t n1 = 0, n2 = 0;
	assert_int_equal(store_user_list(f->st, count_cb, &n1), RC_OK);
	assert_int_equal(store_user_list(st2, count_cb, &n2), RC_OK);
	assert_int_equal(n1, THREADS * PER_THREAD);
	assert_int_equal(n2, THREADS * PER_THREAD);
	assert_int_equal(store_user_del(st2, "user-0-0"), RC_OK);
	struct store_user *u = NULL;
	assert_int_equal(store_user_get(f->st, "user-0-0", &u), RC_NOTFOUND);
	store_close(st2);
}

/* ---- DKIM key states (issue 11) ---- */

static void add_key(struct store *st, const char *domain, const char *sel, const char *alg,
                    int64_t created, enum store_dkim_state state)
{
	struct store_dkim_key k = {.domain = (char *)domain, .selector = (char *)sel,
	                           .alg = (char *)alg, .path = (char *)"/nonexistent.pem",
	                           .public_txt = (char *)"v=DKIM1; k=ed25519; p=AAAA",
	                           .created = created, .state = state};
	assert_int_equal(store_dkim_key_add(st, &k), RC_OK);
}

/* states[i] of domain's key sel, or -1 if absent. */
static int key_state(struct store *st, const char *domain, const char *sel, int64_t *since)
{
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	int state = -1;
	assert_int_equal(store_dkim_keys(st, domain, &keys, &n), RC_OK);
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].selector, sel) == 0) {
			state = (int)keys[i].state;
			if (since)
				*since = keys[i].state_since;
		}
	store_dkim_keys_free(keys, n);
	return state;
}

static void test_dkim_activate(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_domain_add(f->st, "example.com"), RC_OK);
	add_key(f->st, "example.com", "rsa-1", "rsa-sha256", 100, STORE_DKIM_ACTIVE);
	add_key(f->st, "example.com", "ed-1", "ed25519-sha256", 100, STORE_DKIM_ACTIVE);
	add_key(f->st, "example.com", "rsa-2", "rsa-sha256", 200, STORE_DKIM_PENDING);
	add_key(f->st, "example.com", "ed-2", "ed25519-sha256", 200, STORE_DKIM_PENDING);
	struct store_dkim_key *keys = NULL;
	size_t n = 0;
	assert_int_equal(store_dkim_keys_pending(f->st, 10, &keys, &n), RC_OK);
	assert_int_equal(n, 2);
	store_dkim_keys_free(keys, n);
	/* active and retiring keys cannot be activated; unknown ones neither */
	assert_int_equal(store_dkim_key_activate(f->st, "example.com", "rsa-1", 300), RC_NOTFOUND);
	assert_int_equal(store_dkim_key_activate(f->st, "example.com", "nope", 300), RC_NOTFOUND);
	assert_int_equal(store_dkim_key_activate(f->st, "other.com", "rsa-2", 300), RC_NOTFOUND);
	/* activating rsa-2 retires rsa-1 only, both since 300 */
	assert_int_equal(store_dkim_key_activate(f->st, "example.com", "rsa-2", 300), RC_OK);
	int64_t since = 0;
	assert_int_equal(key_state(f->st, "example.com", "rsa-2", &since), STORE_DKIM_ACTIVE);
	assert_int_equal(since, 300);
	assert_int_equal(key_state(f->st, "example.com", "rsa-1", &since), STORE_DKIM_RETIRING);
	assert_int_equal(since, 300);
	assert_int_equal(key_state(f->st, "example.com", "ed-1", NULL), STORE_DKIM_ACTIVE);
	assert_int_equal(key_state(f->st, "example.com", "ed-2", NULL), STORE_DKIM_PENDING);
	assert_int_equal(store_dkim_key_activate(f->st, "example.com", "rsa-2", 301), RC_NOTFOUND);
	/* order: active, pending, retiring */
	assert_int_equal(store_dkim_keys(f->st, "example.com", &keys, &n), RC_OK);
	assert_int_equal(n, 4);
	assert_int_equal(keys[0].state, STORE_DKIM_ACTIVE);
	assert_int_equal(keys[1].state, STORE_DKIM_ACTIVE);
	assert_int_equal(keys[2].state, STORE_DKIM_PENDING);
	assert_int_equal(keys[3].state, STORE_DKIM_RETIRING);
	store_dkim_keys_free(keys, n);
	assert_string_equal(store_dkim_state_name(STORE_DKIM_PENDING), "pending");
	assert_string_equal(store_dkim_state_name(STORE_DKIM_RETIRING), "retiring");
}

static bool user_cb(void *arg, const char *user)
{
	char *out = arg;
	size_t len = strlen(out);
	snprintf(out + len, 256 - len, "%s;", user);
	return true;
}

static void test_domain_users(void **state)
{
	struct fixture *f = *state;
	const char *d1[] = {"Example.COM", "b.example"};
	const char *d2[] = {"example.com"};
	assert_int_equal(store_user_add(f->st, "zed", HASH_A, d1, 2), RC_OK);
	assert_int_equal(store_user_add(f->st, "amy", HASH_A, d2, 1), RC_OK);
	char out[256] = "";
	assert_int_equal(store_domain_users(f->st, "EXAMPLE.com", user_cb, out), RC_OK);
	assert_string_equal(out, "amy;zed;");
	out[0] = '\0';
	assert_int_equal(store_domain_users(f->st, "c.example", user_cb, out), RC_OK);
	assert_string_equal(out, "");
}

/* A store of schema 4 (keys with an active flag) migrates: active keys stay
 * active, inactive ones become retiring since the domain's newest key. (Version
 * 6, the webhook jobs' operator column, is undone too and applied again.) */
static void test_dkim_migration(void **state)
{
	struct fixture *f = *state;
	if (db_int(f->db_path, "SELECT max(version) FROM schema_version") != 6) {
		print_message("skipped: schema is past version 6\n");
		return;
	}
	store_close(f->st);
	f->st = NULL;
	db_exec(f->db_path,
	        "INSERT INTO domains(name, created) VALUES ('example.com', 1);"
	        "ALTER TABLE dkim_keys DROP COLUMN state_since;"
	        "ALTER TABLE dkim_keys DROP COLUMN state;"
	        "ALTER TABLE dkim_keys ADD COLUMN active INTEGER NOT NULL DEFAULT 1;"
	        "INSERT INTO dkim_keys(domain, selector, alg, path, public_txt, created, active) "
	        "VALUES ('example.com', 'old', 'rsa-sha256', '/x', 'v=DKIM1', 100, 0),"
	        "       ('example.com', 'new', 'rsa-sha256', '/y', 'v=DKIM1', 500, 1);"
	        "ALTER TABLE webhook_jobs DROP COLUMN operator;"
	        "DELETE FROM schema_version WHERE version >= 5;");
	assert_int_equal(store_open(f->data_dir, &f->st), RC_OK);
	int64_t since = 0;
	assert_int_equal(key_state(f->st, "example.com", "new", &since), STORE_DKIM_ACTIVE);
	assert_int_equal(since, 500);
	assert_int_equal(key_state(f->st, "example.com", "old", &since), STORE_DKIM_RETIRING);
	assert_int_equal(since, 500);
}

static void test_free_null(void **state)
{
	store_user_free(NULL);
	store_close(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_set_level(LOG_LV_WARN);
	const struct CMUnitTest tests[] = {
	    T(test_open_creates_private_files),
	    T(test_open_rejects_bad_dir),
	    T(test_user_roundtrip),
	    T(test_result_codes),
	    T(test_passwd_keeps_domains),
	    T(test_del_cascades_domains),
	    T(test_list),
	    T(test_reopen_keeps_data),
	    T(test_migration_idempotent),
	    T(test_newer_schema_refused),
	    T(test_two_handles_and_threads),
	    T(test_dkim_activate),
	    T(test_domain_users),
	    T(test_dkim_migration),
	    cmocka_unit_test(test_free_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
