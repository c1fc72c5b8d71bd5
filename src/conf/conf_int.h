/*
 * conf_int.h - private to src/conf: the schema machinery that conf.c (the
 * walker, the simple types, the schema tables) shares with conf_delivery.c
 * (delivery.routes and delivery.source_address, whose shapes need code of
 * their own). Nothing outside src/conf includes this.
 *
 * A schema is tables of struct conf_key rows; a row names a struct conf_type
 * that parses a libyaml node into the field at base + off, sets its default
 * (init) and frees it (release). Errors go to the struct conf_ctx, one
 * "key.path: explanation" line each; parsing never stops at the first one.
 */
#ifndef RELEVO_CONF_INT_H
#define RELEVO_CONF_INT_H

#include <yaml.h>

#include "conf/conf.h"

#define CONF_MAX_VALUE 4096                 /* longest string value */
#define CONF_SHOWN     64                   /* bytes of file text quoted in a message */
#define CONF_SHOWN_BUF (CONF_SHOWN * 4 + 4) /* ... once escaped, plus "..." */

/* One load in progress: the document being walked and the errors so far. */
struct conf_ctx {
	yaml_document_t *doc;
	const char *name; /* file name, for errors with no key path */
	char *errs;       /* "path: text\n" lines; owned until handed to the caller */
	size_t errlen;
	unsigned nerr;
	bool skip_tls_files; /* conf_load_opts.skip_tls_files: tls.cert/key not opened */
};

struct conf_key;
typedef void conf_parse_fn(struct conf_ctx *ctx, const struct conf_key *k, yaml_node_t *node,
                           void *base, const char *path);
typedef void conf_field_fn(const struct conf_key *k, void *base);

/* A value type: how to parse a node into the field, set the default, free it. */
struct conf_type {
	conf_parse_fn *parse;
	conf_field_fn *init;          /* default; NULL: the zero from calloc */
	conf_field_fn *release;       /* NULL: nothing owned */
	bool (*valid)(const char *s); /* string types: is the text acceptable? */
	const char *expect;           /* what valid() wants, for the message */
};

/* One accepted key. A table of them ends with a row whose name is NULL. */
struct conf_key {
	const char *name;
	const struct conf_type *type;
	size_t off;                 /* the field, from the start of base */
	uint64_t def;               /* numbers, enums, bools: default;
	                             * number lists: the count of def_list */
	const char *def_str;        /* strings: default, NULL for none */
	const uint32_t *def_list;   /* number lists: the default entries */
	uint64_t min, max;          /* numbers: bounds; lists: entry count bounds;
	                             * enums: max is the number of names */
	bool required;              /* error when the key is absent */
	const char *why;            /* required keys: what it is for, said when absent */
	bool late;                  /* parsed after the other keys of its section,
	                             * so that it may read their values */
	const struct conf_key *sub; /* mapping: its table; list: the entry's row */
	size_t count_off;           /* lists: the size_t count field */
	size_t elem_size;           /* lists: bytes per entry */
	const char *const *names;   /* enums: value names */
};

#define CONF_FIELD(base, k, T) ((T *)(void *)((char *)(base) + (k)->off))
/* clang-format off */
#define CONF_END {.name = NULL}
/* One schema row: KEY("name", type, offset, .def = ..., .min = ..., .max = ...). */
#define KEY(n, t, o, ...) {.name = (n), .type = &(t), .off = (o), __VA_ARGS__}
/* clang-format on */

/* conf_err - add the error line "path: explanation"; the file name stands in
 * for an empty path. */
void conf_err(struct conf_ctx *ctx, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* conf_has_err - is there already an error about prefix or a key under it? */
bool conf_has_err(const struct conf_ctx *ctx, const char *prefix);
/* conf_shown - s[0..len) escaped and cut for a message, in out. */
const char *conf_shown(const char *s, size_t len, char out[CONF_SHOWN_BUF]);
/* conf_is_null - a missing node, or a plain scalar spelling YAML's null. */
bool conf_is_null(const yaml_node_t *node);
/* conf_kind - "a mapping", "a list" or "a single value", for messages. */
const char *conf_kind(const yaml_node_t *node);
/* conf_scalar - the text of a scalar node, or NULL after saying why there is none. */
const char *conf_scalar(struct conf_ctx *ctx, const yaml_node_t *node, const char *path,
                        const char *want);
/* conf_path_key - "parent.key" for a scalar key node, escaped (caller frees). */
char *conf_path_key(const char *parent, const yaml_node_t *key);
/* conf_is_hostname - RFC 1123 host name: dot-separated LDH labels, no final dot. */
bool conf_is_hostname(const char *s);

/* Types shared with conf_delivery.c. */
extern const struct conf_type conf_t_str;
extern const struct conf_type conf_t_bool;
extern const struct conf_type conf_t_enum;
extern const struct conf_type conf_t_map;
extern const char *const conf_tls_policy_names[CONF_TLS__COUNT];

/* Defined in conf_delivery.c. */
extern const struct conf_type conf_t_routes;         /* delivery.routes; base: struct conf */
extern const struct conf_type conf_t_source_address; /* delivery.source_address; ditto */
/* Defined in conf_local.c. */
extern const struct conf_type conf_t_local_submit;   /* local_submit; base: struct conf */

#endif
