/*
 * unit_util.h - helpers shared by the unit tests: temporary directories.
 */
#ifndef RELEVO_UNIT_UTIL_H
#define RELEVO_UNIT_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

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

#endif
