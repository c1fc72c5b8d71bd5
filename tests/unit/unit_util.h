/*
 * unit_util.h - helpers shared by the unit tests: the case-check macros and
 * temporary directories. Include it after <cmocka.h>.
 */
#ifndef RELEVO_UNIT_UTIL_H
#define RELEVO_UNIT_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* S - a string literal and its length, for (const char *, size_t) parameters. */
#define S(lit) lit, sizeof(lit) - 1

/* CHECK - fail the test naming the table case (label) whose condition failed. */
#define CHECK(label, cond)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("case '%s': %s", (label), #cond);                                 \
	} while (0)

static int unit_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* unit_rm_tree - remove dir and everything below it; 0 on success. */
static inline int unit_rm_tree(const char *dir)
{
	return nftw(dir, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#ifdef RELEVO_STORE_H
/* unit_store_open - a new temporary directory root (/tmp/relevo-test-TAG-XXXXXX)
 * and a store in root/sub (sub "": root itself); 0 or -1. */
static inline int unit_store_open(const char *tag, const char *sub, char *root, size_t rootsz,
                                  struct store **st)
{
	char dir[256];
	snprintf(root, rootsz, "/tmp/relevo-test-%s-XXXXXX", tag);
	if (mkdtemp(root) == NULL)
		return -1;
	snprintf(dir, sizeof dir, "%s%s%s", root, *sub ? "/" : "", sub);
	return store_open(dir, st) == RC_OK ? 0 : -1;
}

/* unit_store_close - close st and remove root; 0 on success. */
static inline int unit_store_close(const char *root, struct store *st)
{
	store_close(st);
	return unit_rm_tree(root);
}
#endif

#endif
