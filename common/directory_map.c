/*
 * From a directory entry to a user (directory_priv.h): the attributes
 * directory.attributes names, each value checked by the rules the users API
 * applies (userfields.h), and the uniqueness of usernames by the keys the
 * database folded them to (the sync asks PostgreSQL's lower(): C never
 * folds a name, so that the two cannot disagree about a non-ASCII one).
 *
 * Every value is untrusted: it may be of any length, hold a NUL or invalid
 * UTF-8. Nothing is copied before its length is bounded; a value that breaks
 * a rule is never stored, only reported by the attribute's name (not its
 * content, which need not be printable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory_priv.h"
#include "errmsg.h"
#include "userfields.h"

int directory_attr_list_item(const char *list, size_t i, char *out, size_t size)
{
    const char *p = list;

    for (;;) {
        size_t len;

        p += strspn(p, " \t");
        len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && i-- == 0) {
            if (len >= size)
                return 0;
            memcpy(out, p, len);
            out[len] = '\0';
            return 1;
        }
        p += strcspn(p, ",");
        if (!*p)
            return 0;
        p++;
    }
}

int directory_phone_normalize(const char *in, char *out, size_t size)
{
    size_t k = 0;

    for (; *in; in++) {
        if (strchr(" -.()", *in))
            continue;
        if (k + 1 >= size)
            return -1;
        out[k++] = *in;
    }
    if (size == 0)
        return -1;
    out[k] = '\0';
    return 0;
}

static const struct directory_attr *find_attr(const struct directory_attr *attrs, size_t n,
                                              const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(attrs[i].name, name) == 0)
            return &attrs[i];
    }
    return NULL;
}

/*
 * The value of <a> as a string into *out (malloc'd). Returns 1, 0 when it
 * is too long or holds a NUL (*err says so), -1 out of memory.
 */
static int value_str(const struct directory_attr *a, char **out, char **err)
{
    *out = NULL;
    if (a->len > DIRECTORY_VALUE_MAX) {
        err_set(err, "%s: is longer than %d bytes", a->name, DIRECTORY_VALUE_MAX);
        return 0;
    }
    if (memchr(a->value, '\0', a->len)) {
        err_set(err, "%s: holds a NUL byte", a->name);
        return 0;
    }
    *out = strndup(a->value, a->len);
    return *out ? 1 : -1;
}

/* Appends {dn, username, field, reason} to <invalid>. Returns 0, or -1 (out of memory). */
static int report_invalid(json_t *invalid, const char *dn, const char *username, const char *field,
                          const char *reason)
{
    if (!invalid)
        return 0;
    return json_array_append_new(invalid, json_pack("{s:s, s:s, s:s, s:s}", "dn", dn, "username",
                                                    username, "field", field, "reason", reason));
}

/* The username of the entry into u->username. Returns 1, 0 (skip: *reason), -1. */
static int map_username(const struct appconf *conf, const struct directory_attr *attrs, size_t n,
                        struct directory_user *u, char **reason)
{
    const char *name = conf->directory.attributes.username;
    const struct directory_attr *a = find_attr(attrs, n, name);
    int rc;

    if (!a) {
        err_set(reason, "no %s attribute (directory.attributes.username)", name);
        return 0;
    }
    rc = value_str(a, &u->username, reason);
    if (rc != 1)
        return rc;
    if (users_check_username(name, u->username, reason) < 0) {
        mfa_free(u->username);
        return 0;
    }
    return 1;
}

/*
 * The value of the optional attribute <a> (NULL: absent) for <field>, checked
 * by <check>, into *out: "" when absent or invalid (reported). Returns 0, or
 * -1 (out of memory).
 */
static int map_optional(const struct directory_attr *a, const char *field, unsigned flag,
                        int (*check)(const char *what, const char *s, char **err),
                        struct directory_user *u, json_t *invalid, char **out)
{
    char *err = NULL, *v = NULL;
    int rc = a ? value_str(a, &v, &err) : 1;

    if (rc < 0)
        return -1;
    if (rc == 1 && v && check(a->name, v, &err) < 0)
        rc = 0;
    if (rc == 0) {
        mfa_free(v);
        u->invalid |= flag;
        rc = report_invalid(invalid, u->dn, u->username, field, err ? err : "invalid");
    } else {
        rc = 0;
    }
    free(err);
    *out = v ? v : strdup("");
    return *out && rc == 0 ? 0 : -1;
}

static int check_display_name(const char *what, const char *s, char **err)
{
    return users_check_text(what, s, false, err);
}

/* The first of the phone attributes (directory.attributes.phone) the entry has, or NULL. */
static const struct directory_attr *first_phone(const struct appconf *conf,
                                                const struct directory_attr *attrs, size_t n)
{
    char name[DIRECTORY_ATTR_NAME_MAX];

    for (size_t i = 0;
         directory_attr_list_item(conf->directory.attributes.phone, i, name, sizeof(name)); i++) {
        const struct directory_attr *a = find_attr(attrs, n, name);

        if (a)
            return a;
    }
    return NULL;
}

static int check_phone(const char *what, const char *s, char **err)
{
    return users_check_phone(what, s, err);
}

/* The phone: normalized before it is checked. Returns 0, or -1 (out of memory). */
static int map_phone(const struct appconf *conf, const struct directory_attr *attrs, size_t n,
                     struct directory_user *u, json_t *invalid)
{
    const struct directory_attr *a = first_phone(conf, attrs, n);
    char buf[DIRECTORY_VALUE_MAX + 1], norm[DIRECTORY_VALUE_MAX + 1];
    struct directory_attr normalized;

    if (!a || a->len > DIRECTORY_VALUE_MAX || memchr(a->value, '\0', a->len))
        return map_optional(a, "phone", DIRECTORY_INVALID_PHONE, check_phone, u, invalid,
                            &u->phone);
    memcpy(buf, a->value, a->len);
    buf[a->len] = '\0';
    if (directory_phone_normalize(buf, norm, sizeof(norm)) < 0)
        return map_optional(a, "phone", DIRECTORY_INVALID_PHONE, check_phone, u, invalid,
                            &u->phone);
    normalized = (struct directory_attr){ a->name, norm, strlen(norm) };
    return map_optional(&normalized, "phone", DIRECTORY_INVALID_PHONE, check_phone, u, invalid,
                        &u->phone);
}

int directory_map_entry(const struct appconf *conf, const char *dn,
                        const struct directory_attr *attrs, size_t nattrs,
                        struct directory_user *out, json_t *invalid, char **reason)
{
    const struct directory_attr *a;
    struct directory_user u = { 0 };
    int rc;

    memset(out, 0, sizeof(*out));
    rc = map_username(conf, attrs, nattrs, &u, reason);
    if (rc != 1)
        return rc;
    u.dn = strdup(dn);
    if (!u.dn)
        goto oom;
    a = *conf->directory.attributes.display_name
            ? find_attr(attrs, nattrs, conf->directory.attributes.display_name)
            : NULL;
    if (map_optional(a, "display_name", DIRECTORY_INVALID_DISPLAY_NAME, check_display_name, &u,
                     invalid, &u.display_name) < 0)
        goto oom;
    a = *conf->directory.attributes.email
            ? find_attr(attrs, nattrs, conf->directory.attributes.email)
            : NULL;
    if (map_optional(a, "email", DIRECTORY_INVALID_EMAIL, users_check_email, &u, invalid,
                     &u.email) < 0)
        goto oom;
    if (map_phone(conf, attrs, nattrs, &u, invalid) < 0)
        goto oom;
    *out = u;
    return 1;
oom:
    directory_user_clear(&u);
    return -1;
}

void directory_user_clear(struct directory_user *u)
{
    mfa_free(u->dn);
    mfa_free(u->username);
    mfa_free(u->display_name);
    mfa_free(u->email);
    mfa_free(u->phone);
    mfa_free(u->key);
}

void directory_cut(const char *s, size_t max, char *out, size_t size)
{
    size_t len = strlen(s), cut;

    if (len <= max && len < size) {
        memcpy(out, s, len + 1);
        return;
    }
    cut = max < size - 4 ? max : size - 4;
    /* back to a character's first byte: never half a UTF-8 sequence */
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    snprintf(out, size, "%.*s...", (int)cut, s);
}

/* ---- uniqueness */

struct dedup_key {
    const char *key;
    size_t index;
};

static int cmp_key(const void *pa, const void *pb)
{
    const struct dedup_key *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);

    if (c)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

int directory_users_dedup(struct directory_user *users, size_t *n, json_t *skipped)
{
    struct dedup_key *keys;
    bool *drop;
    size_t k = 0;

    if (*n < 2)
        return 0;
    keys = malloc(*n * sizeof(*keys));
    drop = calloc(*n, sizeof(*drop));
    if (!keys || !drop) {
        free(keys);
        free(drop);
        return -1;
    }
    for (size_t i = 0; i < *n; i++)
        keys[i] = (struct dedup_key){ directory_user_key(&users[i]), i };
    qsort(keys, *n, sizeof(*keys), cmp_key);
    for (size_t i = 1; i < *n; i++) {
        if (strcmp(keys[i].key, keys[i - 1].key) == 0)
            drop[keys[i].index] = true;
    }
    free(keys);
    for (size_t i = 0; i < *n; i++) {
        if (!drop[i]) {
            users[k++] = users[i];
            continue;
        }
        if (skipped)
            json_array_append_new(skipped,
                                  json_pack("{s:s, s:s++}", "dn", users[i].dn, "reason",
                                            "an earlier entry has the username ", users[i].username,
                                            " (usernames are unique in any case)"));
        directory_user_clear(&users[i]);
    }
    free(drop);
    *n = k;
    return 0;
}
