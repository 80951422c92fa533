/*
 * Declarative configuration over libconfig; see config.h.
 *
 * Loading is two passes over the parsed file: the first walks every setting
 * in the file and rejects (or, in a newer file, warns about) the ones the
 * table does not know; the second walks the table and stores each key's value
 * or its default. Nothing is stored before both passes succeed, so a failed
 * load leaves the target empty and a running daemon keeps its old settings.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

struct load_ctx {
    const char *name; /* file name for messages */
    bool lenient;     /* the file is newer than the program */
    cfg_warn_fn warn;
    void *warn_arg;
    char **err;
};

/* Where a setting came from, "file:line", for messages. */
static const char *where(const struct load_ctx *ctx, config_setting_t *s, char *buf, size_t size)
{
    const char *file = s ? config_setting_source_file(s) : NULL;
    int line = s ? config_setting_source_line(s) : 0;

    if (line > 0)
        snprintf(buf, size, "%s:%d", file ? file : ctx->name, line);
    else
        snprintf(buf, size, "%s", file ? file : ctx->name);
    return buf;
}

static int fail_at(const struct load_ctx *ctx, config_setting_t *s, const char *path,
                   const char *what)
{
    char loc[PATH_MAX + 16];

    return err_set(ctx->err, "%s: %s: %s", where(ctx, s, loc, sizeof(loc)), path, what);
}

/* Key paths in messages and lookups are at most this long. */
#define PATH_LEN 256

/*
 * Writes "<a>.<b>" (or "<b>" when <a> is empty) into <buf>, or with
 * <index> >= 0, "<a>[<index>]". Returns -1 when it does not fit.
 */
static int join(char *buf, const char *a, const char *b, int index)
{
    int n = index >= 0 ? snprintf(buf, PATH_LEN, "%s[%d]", a, index)
                       : snprintf(buf, PATH_LEN, "%s%s%s", a, *a ? "." : "", b);

    return n < 0 || n >= PATH_LEN ? -1 : 0;
}

static const struct cfg_key *find_key(const struct cfg_key *keys, size_t nkeys, const char *path)
{
    for (size_t i = 0; i < nkeys; i++) {
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    }
    return NULL;
}

static bool is_group_prefix(const struct cfg_key *keys, size_t nkeys, const char *path)
{
    size_t len = strlen(path);

    for (size_t i = 0; i < nkeys; i++) {
        if (strncmp(keys[i].path, path, len) == 0 && keys[i].path[len] == '.')
            return true;
    }
    return false;
}

static int unknown(const struct load_ctx *ctx, config_setting_t *s, const char *shown)
{
    char loc[PATH_MAX + 16];

    if (!ctx->lenient)
        return fail_at(ctx, s, shown, "unknown key");
    if (ctx->warn) {
        char msg[PATH_MAX + 300];

        snprintf(msg, sizeof(msg), "%s: %s: unknown key, ignored (the file is newer than %s)",
                 where(ctx, s, loc, sizeof(loc)), shown, "this program");
        ctx->warn(ctx->warn_arg, msg);
    }
    return 0;
}

/*
 * First pass: every setting below <parent> must be known. <path> is the
 * table path of <parent> ("" at the root), <shown> its name in messages
 * (with list indexes).
 */
static int check_known(const struct load_ctx *ctx, config_setting_t *parent,
                       const struct cfg_key *keys, size_t nkeys, const char *path,
                       const char *shown, bool root)
{
    int n = config_setting_length(parent);

    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(parent, (unsigned)i);
        const char *name = config_setting_name(s);
        char sub[PATH_LEN], subshown[PATH_LEN];
        const struct cfg_key *k;

        if (!name)
            continue;
        if (join(sub, path, name, -1) < 0 || join(subshown, shown, name, -1) < 0)
            return fail_at(ctx, s, shown, "key path too long");
        if (root && strcmp(name, "version") == 0)
            continue;
        if (config_setting_is_group(s)) {
            if (!is_group_prefix(keys, nkeys, sub)) {
                if (unknown(ctx, s, subshown) < 0)
                    return -1;
                continue;
            }
            if (check_known(ctx, s, keys, nkeys, sub, subshown, false) < 0)
                return -1;
            continue;
        }
        k = find_key(keys, nkeys, sub);
        if (!k) {
            if (unknown(ctx, s, subshown) < 0)
                return -1;
            continue;
        }
        if (k->type != CFG_LIST)
            continue;
        if (!config_setting_is_list(s))
            return fail_at(ctx, s, subshown, "expected a list of groups ( { ... }, ... )");
        for (int j = 0; j < config_setting_length(s); j++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
            char eshown[PATH_LEN];

            if (join(eshown, subshown, NULL, j) < 0)
                return fail_at(ctx, e, subshown, "key path too long");
            if (!config_setting_is_group(e))
                return fail_at(ctx, e, eshown, "expected a group { ... }");
            if (check_known(ctx, e, k->list->keys, k->list->nkeys, "", eshown, false) < 0)
                return -1;
        }
    }
    return 0;
}

static int parse_bool_text(const char *text, bool *out)
{
    if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

static int enum_lookup(const struct cfg_enum_name *names, const char *text, int *out)
{
    for (; names && names->name; names++) {
        if (strcmp(names->name, text) == 0) {
            *out = names->value;
            return 0;
        }
    }
    return -1;
}

const char *cfg_enum_name(const struct cfg_enum_name *names, int value)
{
    for (; names && names->name; names++) {
        if (names->value == value)
            return names->name;
    }
    return "?";
}

static void enum_choices(const struct cfg_enum_name *names, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (; names && names->name && len < size; names++) {
        int n = snprintf(buf + len, size - len, "%s\"%s\"", len ? ", " : "", names->name);

        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static int store_list(const struct load_ctx *ctx, const struct cfg_key *k, config_setting_t *s,
                      const char *shown, void *target);
static int store_keys(const struct load_ctx *ctx, const struct cfg_key *keys, size_t nkeys,
                      config_setting_t *parent, const char *shown, void *target);

/*
 * Stores one value, from setting <s> or, when it is NULL, from the default
 * text. Returns 0 or -1 with a message naming the key.
 */
static int store_value(const struct load_ctx *ctx, const struct cfg_key *k, config_setting_t *s,
                       const char *shown, void *target)
{
    char *field = (char *)target + k->offset;
    const char *text = NULL;
    char msg[400];

    if (!s && (k->flags & CFG_REQUIRED))
        return err_set(ctx->err, "%s: %s: required key is missing", ctx->name, shown);
    switch (k->type) {
    case CFG_BOOL:
        if (s) {
            if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return fail_at(ctx, s, shown, "expected true or false");
            *(bool *)field = config_setting_get_bool(s);
        } else if (k->def && parse_bool_text(k->def, (bool *)field) < 0) {
            return err_set(ctx->err, "%s: bad built-in default", shown);
        }
        return 0;
    case CFG_INT: {
        long long v = 0;

        if (s) {
            int t = config_setting_type(s);

            if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
                return fail_at(ctx, s, shown, "expected an integer");
            v = config_setting_get_int64(s);
        } else if (k->def) {
            char *end;

            errno = 0;
            v = strtoll(k->def, &end, 10);
            if (errno || *end)
                return err_set(ctx->err, "%s: bad built-in default", shown);
        }
        if ((s || k->def) && (v < k->min || v > k->max || v < INT_MIN || v > INT_MAX)) {
            snprintf(msg, sizeof(msg), "%lld is out of range, expected %lld to %lld", v, k->min,
                     k->max);
            return fail_at(ctx, s, shown, msg);
        }
        *(int *)field = (int)v;
        return 0;
    }
    case CFG_STRING:
        if (s) {
            if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return fail_at(ctx, s, shown, "expected a string in double quotes");
            text = config_setting_get_string(s);
        } else {
            text = k->def ? k->def : "";
        }
        *(char **)field = strdup(text);
        return *(char **)field ? 0 : err_set(ctx->err, "out of memory");
    case CFG_ENUM:
        if (s && config_setting_type(s) != CONFIG_TYPE_STRING)
            return fail_at(ctx, s, shown, "expected a string in double quotes");
        text = s ? config_setting_get_string(s) : k->def;
        if (!text)
            return 0;
        if (enum_lookup(k->names, text, (int *)field) < 0) {
            char choices[300];

            enum_choices(k->names, choices, sizeof(choices));
            snprintf(msg, sizeof(msg), "\"%.60s\" is not one of %s", text, choices);
            return fail_at(ctx, s, shown, msg);
        }
        return 0;
    case CFG_LIST:
        return store_list(ctx, k, s, shown, target);
    }
    return err_set(ctx->err, "%s: unknown key type", shown);
}

static int store_list(const struct load_ctx *ctx, const struct cfg_key *k, config_setting_t *s,
                      const char *shown, void *target)
{
    const struct cfg_list *l = k->list;
    char *field = (char *)target + k->offset;
    size_t *count = (size_t *)(void *)((char *)target + l->count_offset);
    int n = s ? config_setting_length(s) : 0;
    char *items;

    if (s && !config_setting_is_list(s))
        return fail_at(ctx, s, shown, "expected a list of groups ( { ... }, ... )");
    if ((size_t)n > l->max_items) {
        char msg[120];

        snprintf(msg, sizeof(msg), "%d entries, at most %zu allowed", n, l->max_items);
        return fail_at(ctx, s, shown, msg);
    }
    if (n == 0)
        return 0;
    items = calloc((size_t)n, l->elem_size);
    if (!items)
        return err_set(ctx->err, "out of memory");
    *(void **)field = items;
    for (int i = 0; i < n; i++) {
        char eshown[PATH_LEN];

        if (join(eshown, shown, NULL, i) < 0)
            return fail_at(ctx, s, shown, "key path too long");
        /* Count each element before filling it, so cfg_free() sees it on error. */
        *count = (size_t)i + 1;
        if (store_keys(ctx, l->keys, l->nkeys, config_setting_get_elem(s, (unsigned)i), eshown,
                       items + (size_t)i * l->elem_size) < 0)
            return -1;
    }
    return 0;
}

static int store_keys(const struct load_ctx *ctx, const struct cfg_key *keys, size_t nkeys,
                      config_setting_t *parent, const char *shown, void *target)
{
    for (size_t i = 0; i < nkeys; i++) {
        config_setting_t *s = config_setting_lookup(parent, keys[i].path);
        char kshown[PATH_LEN];

        if (join(kshown, shown, keys[i].path, -1) < 0)
            return fail_at(ctx, parent, shown, "key path too long");
        if (store_value(ctx, &keys[i], s, kshown, target) < 0)
            return -1;
    }
    return 0;
}

static void free_keys(const struct cfg_key *keys, size_t nkeys, void *target)
{
    for (size_t i = 0; i < nkeys; i++) {
        char *field = (char *)target + keys[i].offset;

        if (keys[i].type == CFG_STRING) {
            mfa_free(*(char **)field);
        } else if (keys[i].type == CFG_LIST) {
            const struct cfg_list *l = keys[i].list;
            size_t *count = (size_t *)(void *)((char *)target + l->count_offset);
            char *items = *(char **)field;

            for (size_t j = 0; j < *count; j++)
                free_keys(l->keys, l->nkeys, items + j * l->elem_size);
            mfa_free(*(char **)field);
            *count = 0;
        }
    }
}

/*
 * Lexical checks for what libconfig 1.5 gets wrong, run before it sees the
 * text:
 * - it silently wraps an integer literal above INT_MAX without an L suffix to
 *   32 bits ("id = 4294967297;" reads as 1): outside strings and comments, a
 *   decimal or hex digit run worth more than INT_MAX must be followed by 'L'
 *   (digit runs inside names or floats are checked too; those settings are
 *   rejected anyway);
 * - it leaks memory on an unterminated string and on a syntax error at a
 *   string, so a string must stand where its grammar allows one: after '=',
 *   ':', '(', '[', another string, or a ',' inside a list or array;
 * - @include would open another file, which a single-file configuration
 *   never needs.
 */
int cfg_prescan(const char *text, char **err)
{
    char nest[32] = { 0 }; /* innermost brackets; deeper is a syntax error */
    unsigned line = 1, depth = 0;
    const char *p = text;
    char prev = '\0'; /* last token: punctuation itself, '"' string, 'a' other */

    while (*p != '\0') {
        if (*p == '\n')
            line++;
        if (*p == '@')
            return err_set(err, "line %u: @include and other directives are not allowed", line);
        if (*p == '"') {
            unsigned start = line;
            char open = depth > 0 && depth <= sizeof(nest) ? nest[depth - 1] : '\0';

            if (!strchr("=:([\"", prev) || prev == '\0')
                if (prev != ',' || (open != '(' && open != '['))
                    return err_set(err, "line %u: syntax error (unexpected string)", line);
            for (p++; *p != '\0' && *p != '"'; p++) {
                line += *p == '\n';
                if (*p == '\\' && p[1] != '\0')
                    p++;
            }
            if (*p != '"')
                return err_set(err, "line %u: unterminated string", start);
            prev = '"';
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            const char *stop = end ? end + 2 : p + strlen(p);

            for (p++; p < stop; p++)
                line += *p == '\n';
        } else if (*p >= '0' && *p <= '9') {
            bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
            const char *start = p;
            uint64_t v = 0;

            p += hex ? 2 : 0;
            for (; hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p); p++) {
                unsigned d = isdigit((unsigned char)*p) ? (unsigned)(*p - '0')
                                                        : (unsigned)(tolower(*p) - 'a' + 10);

                v = v > INT_MAX ? v : v * (hex ? 16 : 10) + d;
            }
            if (v > INT_MAX && *p != 'L')
                return err_set(err, "line %u: integer %.*s is too large", line,
                               (int)(p - start < 24 ? p - start : 24), start);
            prev = 'a';
        } else {
            if (strchr("([{", *p) && ++depth <= sizeof(nest))
                nest[depth - 1] = *p;
            else if (strchr(")]}", *p) && depth > 0)
                depth--;
            if (!isspace((unsigned char)*p))
                prev = strchr("=:([{)]},;", *p) ? *p : 'a';
            p++;
        }
    }
    return 0;
}

static int load(config_t *cf, const char *name, const struct cfg_schema *schema, void *target,
                cfg_warn_fn warn, void *warn_arg, char **err)
{
    struct load_ctx ctx = { name, false, warn, warn_arg, err };
    config_setting_t *root = config_root_setting(cf);
    config_setting_t *ver = config_setting_get_member(root, "version");

    if (ver) {
        if (config_setting_type(ver) != CONFIG_TYPE_INT || config_setting_get_int(ver) < 1)
            return fail_at(&ctx, ver, "version", "expected a positive integer");
        ctx.lenient = config_setting_get_int(ver) > schema->version;
    }
    if (check_known(&ctx, root, schema->keys, schema->nkeys, "", "", true) < 0)
        return -1;
    if (store_keys(&ctx, schema->keys, schema->nkeys, root, "", target) < 0) {
        cfg_free(schema, target);
        return -1;
    }
    return 0;
}

int cfg_load(const char *path, const struct cfg_schema *schema, void *target, cfg_warn_fn warn,
             void *warn_arg, char **err)
{
    FILE *f = fopen(path, "r");
    char *text;
    size_t len;
    int rc;

    if (!f)
        return err_set(err, "%s: cannot read: %s", path, strerror(errno));
    text = malloc(CFG_FILE_MAX + 1);
    len = text ? fread(text, 1, CFG_FILE_MAX + 1, f) : 0;
    if (!text || ferror(f)) {
        rc = err_set(err, "%s: cannot read: %s", path, text ? strerror(errno) : "out of memory");
    } else if (len > CFG_FILE_MAX) {
        rc = err_set(err, "%s: larger than %d bytes", path, CFG_FILE_MAX);
    } else if (memchr(text, '\0', len)) {
        rc = err_set(err, "%s: holds a NUL byte; not a text file", path);
    } else {
        text[len] = '\0';
        rc = cfg_load_string(text, path, schema, target, warn, warn_arg, err);
    }
    free(text);
    fclose(f);
    return rc;
}

int cfg_load_string(const char *text, const char *name, const struct cfg_schema *schema,
                    void *target, cfg_warn_fn warn, void *warn_arg, char **err)
{
    config_t cf;
    int rc;

    if (cfg_prescan(text, err) < 0)
        return err_prefix(err, "%s", name);
    config_init(&cf);
    if (config_read_string(&cf, text) != CONFIG_TRUE) {
        rc = err_set(err, "%s:%d: %s", name, config_error_line(&cf), config_error_text(&cf));
        config_destroy(&cf);
        return rc;
    }
    rc = load(&cf, name, schema, target, warn, warn_arg, err);
    config_destroy(&cf);
    return rc;
}

void cfg_free(const struct cfg_schema *schema, void *target)
{
    free_keys(schema->keys, schema->nkeys, target);
}

static void dump_keys(const struct cfg_key *keys, size_t nkeys, const void *target,
                      const char *prefix, FILE *out)
{
    for (size_t i = 0; i < nkeys; i++) {
        const struct cfg_key *k = &keys[i];
        const char *field = (const char *)target + k->offset;

        fprintf(out, "%s%s = ", prefix, k->path);
        if (k->flags & CFG_SECRET) {
            fprintf(out, "<hidden>;\n");
            continue;
        }
        switch (k->type) {
        case CFG_BOOL:
            fprintf(out, "%s;\n", *(const bool *)field ? "true" : "false");
            break;
        case CFG_INT:
            fprintf(out, "%d;\n", *(const int *)field);
            break;
        case CFG_STRING:
            fprintf(out, "\"%s\";\n", *(char *const *)field ? *(char *const *)field : "");
            break;
        case CFG_ENUM:
            fprintf(out, "\"%s\";\n", cfg_enum_name(k->names, *(const int *)field));
            break;
        case CFG_LIST: {
            const struct cfg_list *l = k->list;
            size_t count = *(const size_t *)(const void *)((const char *)target + l->count_offset);
            const char *items = *(char *const *)field;

            fprintf(out, "(%zu entries)\n", count);
            for (size_t j = 0; j < count; j++) {
                char sub[600];

                snprintf(sub, sizeof(sub), "%s%s[%zu].", prefix, k->path, j);
                dump_keys(l->keys, l->nkeys, items + j * l->elem_size, sub, out);
            }
            break;
        }
        }
    }
}

void cfg_dump(const struct cfg_schema *schema, const void *target, FILE *out)
{
    fprintf(out, "version = %d;\n", schema->version);
    dump_keys(schema->keys, schema->nkeys, target, "", out);
}

/* Counts differing keys, or all of them when <all> is set (for list items). */
static int diff_keys(const struct cfg_key *keys, size_t nkeys, const void *a, const void *b,
                     bool all, const char **first)
{
    int n = 0;

    for (size_t i = 0; i < nkeys; i++) {
        const struct cfg_key *k = &keys[i];
        const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        bool differ = false;

        if ((k->flags & CFG_RELOADABLE) && !all)
            continue;
        switch (k->type) {
        case CFG_BOOL:
            differ = *(const bool *)fa != *(const bool *)fb;
            break;
        case CFG_INT:
        case CFG_ENUM:
            differ = *(const int *)fa != *(const int *)fb;
            break;
        case CFG_STRING:
            differ = strcmp(*(char *const *)fa, *(char *const *)fb) != 0;
            break;
        case CFG_LIST: {
            const struct cfg_list *l = k->list;
            size_t ca = *(const size_t *)(const void *)((const char *)a + l->count_offset);
            size_t cb = *(const size_t *)(const void *)((const char *)b + l->count_offset);

            const char *inner = NULL;

            differ = ca != cb;
            for (size_t j = 0; j < ca && !differ; j++)
                differ = diff_keys(l->keys, l->nkeys, *(char *const *)fa + j * l->elem_size,
                                   *(char *const *)fb + j * l->elem_size, true, &inner) > 0;
            break;
        }
        }
        if (differ) {
            if (!*first)
                *first = k->path;
            n++;
        }
    }
    return n;
}

int cfg_restart_needed(const struct cfg_schema *schema, const void *old_target,
                       const void *new_target, char **err)
{
    const char *first = NULL;
    int n = diff_keys(schema->keys, schema->nkeys, old_target, new_target, false, &first);

    if (n > 0)
        err_set(err, "%s changed; it takes effect only after a restart", first);
    return n;
}

/* Exchanges <size> bytes at <a> and <b>. */
static void swap_bytes(void *a, void *b, size_t size)
{
    unsigned char tmp[sizeof(void *) > sizeof(int) ? sizeof(void *) : sizeof(int)];

    memcpy(tmp, a, size);
    memcpy(a, b, size);
    memcpy(b, tmp, size);
}

void cfg_keep_restart_keys(const struct cfg_schema *schema, void *old_target, void *new_target)
{
    for (size_t i = 0; i < schema->nkeys; i++) {
        const struct cfg_key *k = &schema->keys[i];
        char *o = (char *)old_target + k->offset, *n = (char *)new_target + k->offset;

        if (k->flags & CFG_RELOADABLE)
            continue;
        switch (k->type) {
        case CFG_BOOL:
            swap_bytes(o, n, sizeof(bool));
            break;
        case CFG_INT:
        case CFG_ENUM:
            swap_bytes(o, n, sizeof(int));
            break;
        case CFG_STRING:
            swap_bytes(o, n, sizeof(char *));
            break;
        case CFG_LIST:
            swap_bytes(o, n, sizeof(void *));
            swap_bytes((char *)old_target + k->list->count_offset,
                       (char *)new_target + k->list->count_offset, sizeof(size_t));
            break;
        }
    }
}
