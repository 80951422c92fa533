/*
 * Declarative configuration over libconfig.
 *
 * A program describes its file as a table of keys (path, type, where the
 * value goes in a struct, default, bounds, flags). One engine then reads the
 * file, fills in defaults, checks types and bounds, rejects unknown keys,
 * dumps the effective values (--check-config) and frees what it allocated.
 * Errors name the file, the line and the key.
 *
 * Unknown keys are errors, except in a file whose top-level `version` is
 * newer than the program's: then they are reported through the warning
 * callback, so a rolling upgrade can add keys before every member knows them.
 */
#ifndef MFA_CONFIG_H
#define MFA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mem.h"

enum cfg_type {
    CFG_BOOL = 0, /* bool */
    CFG_INT,      /* int, within [min, max] */
    CFG_STRING,   /* char *, malloc'd; "" when absent without default */
    CFG_ENUM,     /* int, one of names[] */
    CFG_LIST,     /* a list of groups: void *items + size_t count, see cfg_list */
};

enum cfg_flags {
    CFG_REQUIRED = 1 << 0,   /* absent is an error */
    CFG_RELOADABLE = 1 << 1, /* a SIGHUP may change it; else a restart is needed */
    CFG_SECRET = 1 << 2,     /* dumped as <hidden> */
};

struct cfg_enum_name {
    const char *name;
    int value;
};

struct cfg_key;

/* Element layout of a CFG_LIST: each group becomes one element. */
struct cfg_list {
    const struct cfg_key *keys; /* paths relative to the element */
    size_t nkeys;
    size_t elem_size;
    size_t count_offset; /* size_t in the parent struct */
    size_t max_items;
};

struct cfg_key {
    const char *path; /* dotted, e.g. "cluster.tls.ca" */
    enum cfg_type type;
    size_t offset;                     /* of the field in the target struct */
    const char *def;                   /* default as text ("5432", "true", "info"); NULL: none */
    long long min, max;                /* CFG_INT */
    const struct cfg_enum_name *names; /* CFG_ENUM, ended by a NULL name */
    const struct cfg_list *list;       /* CFG_LIST: items pointer at offset */
    unsigned flags;
};

/* A whole file: its keys and the newest `version` this program knows. */
struct cfg_schema {
    const struct cfg_key *keys;
    size_t nkeys;
    int version;
};

typedef void (*cfg_warn_fn)(void *arg, const char *msg);

/*
 * Reads <path> into <target>, which the caller zeroed, as <schema> says. Returns 0, or
 * -1 with *err naming file, line and key; on error <target> holds nothing to
 * free. Warnings (unknown keys in a newer file) go to <warn> when not NULL.
 * The caller frees a loaded target with cfg_free().
 */
int cfg_load(const char *path, const struct cfg_schema *schema, void *target, cfg_warn_fn warn,
             void *warn_arg, char **err) MFA_MUSTCHECK;

/* The largest configuration file cfg_load() reads. */
#define CFG_FILE_MAX (1024 * 1024)

/* Same, from text in memory; <name> stands for the file in messages. */
int cfg_load_string(const char *text, const char *name, const struct cfg_schema *schema,
                    void *target, cfg_warn_fn warn, void *warn_arg, char **err) MFA_MUSTCHECK;

/*
 * Checks libconfig text for what libconfig 1.5 mishandles before it parses
 * it: integers too large for 32 bits without an L suffix (it wraps them),
 * strings where the grammar has none (it leaks), and @include (a config is
 * one file). Returns 0, or -1 with *err as "line N: ...". cfg_load() and the
 * key file loader run it; callers of libconfig elsewhere should too.
 */
int cfg_prescan(const char *text, char **err) MFA_MUSTCHECK;

/* Frees the strings and lists cfg_load() allocated in <target>; zeroes it. */
void cfg_free(const struct cfg_schema *schema, void *target);

/* Writes every key with its effective value, one `path = value;` a line. */
void cfg_dump(const struct cfg_schema *schema, const void *target, FILE *out);

/*
 * Compares two loaded configurations. Returns the number of keys without
 * CFG_RELOADABLE whose values differ, and names the first one in *err, so a
 * reload can say which change needs a restart.
 */
int cfg_restart_needed(const struct cfg_schema *schema, const void *old_target,
                       const void *new_target, char **err);

/*
 * Copies every key without CFG_RELOADABLE from <old_target> into <new_target>
 * (exchanging strings and lists, so each struct still owns what it frees):
 * after a reload, the configuration in use says what is really in effect
 * until a restart.
 */
void cfg_keep_restart_keys(const struct cfg_schema *schema, void *old_target, void *new_target);

/* The name of <value> in an enum table, or "?". */
const char *cfg_enum_name(const struct cfg_enum_name *names, int value);

#endif
