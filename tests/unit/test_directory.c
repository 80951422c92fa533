/*
 * The directory sync's pure parts (common/directory_sync.c,
 * common/directory_map.c) and the local checks of common/directory.c: the
 * plan (create, update, unchanged, disable, enable, adopt, conflict; the
 * refusal of an empty result, even forced; the max_disable_percent guard
 * and force; usernames matched in any case; duplicate entries; a user an
 * administrator disabled stays disabled; an invalid value keeps the stored
 * one), the mapping of untrusted attribute values (required username,
 * phone normalization and the first phone attribute present, invalid values
 * reported, NUL and overlong values), the DN normalization the group
 * membership compares with, the secret file reader, and the bind check's
 * refusal of an empty password before any connection; the splitting of
 * directory.url's list and the try of each of its URLs in turn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "directory.h"
#include "directory_priv.h"
#include "userfields.h"

/* The configuration's strings are not const; these tests never write them. */
static char *S(const char *s)
{
    return (char *)(uintptr_t)s;
}

static struct appconf conf_with(int pct, bool adopt)
{
    struct appconf c;

    memset(&c, 0, sizeof(c));
    c.directory.enabled = true;
    c.directory.url = S("ldaps://127.0.0.1:1/");
    c.directory.ca_file = S("");
    c.directory.bind_dn = S("");
    c.directory.base_dn = S("dc=example,dc=com");
    c.directory.filter = S("(objectClass=person)");
    c.directory.group_dn = S("");
    c.directory.timeout_ms = 1000;
    c.directory.max_disable_percent = pct;
    c.directory.adopt_local = adopt;
    c.directory.default_method = S("totp");
    c.directory.attributes.username = S("uid");
    c.directory.attributes.display_name = S("displayName");
    c.directory.attributes.email = S("mail");
    c.directory.attributes.phone = S("mobile, telephoneNumber");
    return c;
}

#define ENTRY(name)                                                                                \
    {                                                                                              \
        S("uid=" name ",dc=example,dc=com"), S(name), S(""), S(""), S(""), 0, NULL                 \
    }
#define DIRUSER(name)                                                                              \
    {                                                                                              \
        S(name), S("uid=" name ",dc=example,dc=com"), S(""), S(""), S(""), false, false, false,    \
            NULL                                                                                   \
    }

/* The change the plan made for <username> (of an entry or a current user); -1 when none. */
static int change_of(const struct directory_plan *p, const char *username)
{
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct directory_step *s = &p->steps[i];
        const char *u = s->entry ? s->entry->username : s->current->username;

        if (strcmp(u, username) == 0)
            return (int)s->change;
    }
    return -1;
}

static void test_plan_changes(void **state)
{
    struct appconf conf = conf_with(100, false);
    struct directory_user users[] = { ENTRY("new"), ENTRY("same"), ENTRY("moved"), ENTRY("back"),
                                      ENTRY("local") };
    struct directory_current cur[] = { DIRUSER("same"), DIRUSER("moved"), DIRUSER("back"),
                                       DIRUSER("gone"), DIRUSER("local"), DIRUSER("gonelocal") };
    struct directory_plan p;

    (void)state;
    cur[1].phone = S("+41790000000"); /* the directory says "" now */
    cur[2].disabled = cur[2].missing = true;
    cur[4].local = true;
    cur[5].local = true; /* a local user not in the directory is none of the sync's business */
    assert_int_equal(directory_plan_make(&conf, users, 5, cur, 6, false, &p), 0);
    assert_false(p.refused);
    assert_int_equal(change_of(&p, "new"), DIR_CREATE);
    assert_int_equal(change_of(&p, "same"), DIR_UNCHANGED);
    assert_int_equal(change_of(&p, "moved"), DIR_UPDATE);
    assert_int_equal(change_of(&p, "back"), DIR_ENABLE);
    assert_int_equal(change_of(&p, "gone"), DIR_DISABLE);
    assert_int_equal(change_of(&p, "local"), DIR_CONFLICT);
    assert_int_equal(change_of(&p, "gonelocal"), -1);
    assert_int_equal(p.counts[DIR_CREATE], 1);
    assert_int_equal(p.counts[DIR_DISABLE], 1);
    assert_int_equal(p.counts[DIR_CONFLICT], 1);
    assert_int_equal(p.nsteps, 6);
    directory_plan_free(&p);

    conf.directory.adopt_local = true;
    assert_int_equal(directory_plan_make(&conf, users, 5, cur, 6, false, &p), 0);
    assert_int_equal(change_of(&p, "local"), DIR_ADOPT);
    assert_int_equal(p.counts[DIR_CONFLICT], 0);
    directory_plan_free(&p);
}

static void test_plan_fields(void **state)
{
    struct appconf conf = conf_with(100, false);
    struct directory_user users[] = { ENTRY("a"), ENTRY("b"), ENTRY("c") };
    struct directory_current cur[] = { DIRUSER("a"), DIRUSER("b"), DIRUSER("c") };
    struct directory_plan p;

    (void)state;
    users[0].display_name = S("Ann");                /* a display name changed */
    cur[1].dn = S("uid=b,ou=old,dc=example,dc=com"); /* moved in the tree */
    cur[2].phone = S("+41791234567");                /* the entry's phone broke a rule: kept */
    users[2].invalid = DIRECTORY_INVALID_PHONE;
    assert_int_equal(directory_plan_make(&conf, users, 3, cur, 3, false, &p), 0);
    assert_int_equal(change_of(&p, "a"), DIR_UPDATE);
    assert_int_equal(change_of(&p, "b"), DIR_UPDATE);
    assert_int_equal(change_of(&p, "c"), DIR_UNCHANGED);
    directory_plan_free(&p);
}

static void test_plan_admin_disabled(void **state)
{
    struct appconf conf = conf_with(100, false);
    struct directory_user users[] = { ENTRY("held") };
    struct directory_current cur[] = { DIRUSER("held"), DIRUSER("heldgone"), DIRUSER("missing") };
    struct directory_plan p;

    (void)state;
    cur[0].disabled = true; /* an administrator disabled it: no directory_missing_since */
    cur[1].disabled = true;
    cur[2].disabled = cur[2].missing = true; /* the sync disabled it already */
    assert_int_equal(directory_plan_make(&conf, users, 1, cur, 3, false, &p), 0);
    assert_int_equal(change_of(&p, "held"), DIR_UNCHANGED);
    assert_int_equal(change_of(&p, "heldgone"), -1);
    assert_int_equal(change_of(&p, "missing"), -1);
    assert_false(p.refused);
    directory_plan_free(&p);
}

static void test_plan_empty_refused(void **state)
{
    struct appconf conf = conf_with(100, false);
    struct directory_current cur[] = { DIRUSER("a"), DIRUSER("b") };
    struct directory_plan p;

    (void)state;
    /* even forced and with every disable allowed, an empty result changes nothing */
    assert_int_equal(directory_plan_make(&conf, NULL, 0, cur, 2, true, &p), 0);
    assert_true(p.refused);
    assert_non_null(strstr(p.reason, "no users"));
    directory_plan_free(&p);
    /* the first sync of an empty directory into a cluster without directory users is fine */
    cur[0].local = cur[1].local = true;
    assert_int_equal(directory_plan_make(&conf, NULL, 0, cur, 2, false, &p), 0);
    assert_false(p.refused);
    assert_int_equal(p.nsteps, 0);
    directory_plan_free(&p);
}

static void test_plan_disable_guard(void **state)
{
    struct appconf conf = conf_with(10, false);
    struct directory_user users[10];
    struct directory_current cur[12];
    char names[12][8];
    struct directory_plan p;

    (void)state;
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof(names[i]), "u%d", i);
        cur[i] = (struct directory_current){ names[i], S(""), S(""), S(""), S(""),
                                             false,    false, false, NULL };
        if (i < 10)
            users[i] = (struct directory_user){ S(""), names[i], S(""), S(""), S(""), 0, NULL };
    }
    /* 10 enabled, 1 leaves: 10% is allowed */
    cur[11].disabled = true; /* an administrator's: neither counted nor disabled again */
    assert_int_equal(directory_plan_make(&conf, users, 10, cur, 11, false, &p), 0);
    assert_false(p.refused);
    assert_int_equal(p.counts[DIR_DISABLE], 1);
    directory_plan_free(&p);
    /* 11 enabled, 2 leave: 18% is refused, and allowed with force */
    cur[11].disabled = false;
    assert_int_equal(directory_plan_make(&conf, users, 10, cur, 12, false, &p), 0);
    assert_true(p.refused);
    assert_non_null(strstr(p.reason, "max_disable_percent"));
    assert_int_equal(p.counts[DIR_DISABLE], 2);
    directory_plan_free(&p);
    assert_int_equal(directory_plan_make(&conf, users, 10, cur, 12, true, &p), 0);
    assert_false(p.refused);
    directory_plan_free(&p);
    /* 0% refuses any */
    conf.directory.max_disable_percent = 0;
    assert_int_equal(directory_plan_make(&conf, users, 10, cur, 11, false, &p), 0);
    assert_true(p.refused);
    directory_plan_free(&p);
}

static void test_plan_case_and_duplicates(void **state)
{
    struct appconf conf = conf_with(100, false);
    struct directory_user users[] = { ENTRY("Alice"), ENTRY("bob"), ENTRY("BOB"), ENTRY("Émile") };
    struct directory_current cur[] = { DIRUSER("alice"), DIRUSER("émile") };
    struct directory_plan p;

    (void)state;
    /* The keys are the database's lower() of the names (the sync asks it): matching goes by them,
     * never by a C folding of its own, so a non-ASCII name matches as PostgreSQL says. */
    users[0].key = S("alice");
    users[1].key = S("bob");
    users[2].key = S("bob");
    users[3].key = S("émile");
    cur[0].key = S("alice");
    cur[1].key = S("émile");
    cur[0].dn = S("uid=Alice,dc=example,dc=com");
    cur[1].dn = S("uid=Émile,dc=example,dc=com");
    assert_int_equal(directory_plan_make(&conf, users, 4, cur, 2, false, &p), 0);
    assert_int_equal(change_of(&p, "Alice"), DIR_UNCHANGED); /* the same user, not a new one */
    assert_int_equal(change_of(&p, "bob"), DIR_CREATE);
    assert_int_equal(change_of(&p, "BOB"), -1); /* the second of a name is left out */
    assert_int_equal(change_of(&p, "Émile"), DIR_UNCHANGED);
    assert_int_equal(p.counts[DIR_CREATE], 1);
    assert_int_equal(p.counts[DIR_DISABLE], 0);
    directory_plan_free(&p);
    /* without keys the names are compared as they are: C folds nothing */
    users[0].key = NULL;
    cur[0].key = NULL;
    assert_int_equal(directory_plan_make(&conf, users, 1, cur, 1, false, &p), 0);
    assert_int_equal(change_of(&p, "Alice"), DIR_CREATE);
    assert_int_equal(change_of(&p, "alice"), DIR_DISABLE);
    directory_plan_free(&p);
}

/* A DN cut for a message ends on a character boundary, never in a UTF-8 sequence. */
static void test_cut(void **state)
{
    char out[16];

    (void)state;
    directory_cut("uid=abc", 10, out, sizeof(out));
    assert_string_equal(out, "uid=abc");
    directory_cut("uid=\xC3\xA9\xC3\xA9\xC3\xA9", 7, out, sizeof(out)); /* 7 falls inside é */
    assert_string_equal(out, "uid=\xC3\xA9...");
    directory_cut("uid=abcdefghijklmnop", 100, out, sizeof(out)); /* the buffer is the limit */
    assert_int_equal(strlen(out), 15);
    assert_string_equal(out + 12, "...");
}

static void test_plan_disable_min(void **state)
{
    struct appconf conf = conf_with(10, false);
    struct directory_user users[] = { ENTRY("a"), ENTRY("b") };
    struct directory_current cur[] = { DIRUSER("a"), DIRUSER("b"), DIRUSER("c"), DIRUSER("d"),
                                       DIRUSER("e") };
    struct directory_plan p;

    (void)state;
    /* 5 enabled, 3 leave: 60% > 10%, but max_disable_min 3 allows as many in a small directory */
    conf.directory.max_disable_min = 3;
    assert_int_equal(directory_plan_make(&conf, users, 2, cur, 5, false, &p), 0);
    assert_false(p.refused);
    assert_int_equal(p.counts[DIR_DISABLE], 3);
    directory_plan_free(&p);
    /* one more than the minimum is refused */
    conf.directory.max_disable_min = 2;
    assert_int_equal(directory_plan_make(&conf, users, 2, cur, 5, false, &p), 0);
    assert_true(p.refused);
    assert_non_null(strstr(p.reason, "max_disable_min"));
    directory_plan_free(&p);
    /* the percentage still rules when it allows more: 60% of 5 is 3 */
    conf.directory.max_disable_percent = 60;
    assert_int_equal(directory_plan_make(&conf, users, 2, cur, 5, false, &p), 0);
    assert_false(p.refused);
    directory_plan_free(&p);
    /* the minimum never lets an empty result through */
    conf.directory.max_disable_min = 100;
    assert_int_equal(directory_plan_make(&conf, NULL, 0, cur, 5, false, &p), 0);
    assert_true(p.refused);
    directory_plan_free(&p);
}

/* ---- mapping */

#define ATTR(n, v)                                                                                 \
    {                                                                                              \
        n, v, sizeof(v) - 1                                                                        \
    }

static void test_map_entry(void **state)
{
    struct appconf conf = conf_with(10, false);
    struct directory_attr attrs[] = {
        ATTR("UID", "jdoe"),
        ATTR("displayName", "Jane Doe"),
        ATTR("mail", "jane@example.com"),
        ATTR("telephoneNumber", "+41 44 000 00 00"),
        ATTR("mobile", "+41 (79) 555-01.23"),
    };
    struct directory_user u;
    json_t *invalid = json_array();
    char *reason = NULL;

    (void)state;
    assert_int_equal(directory_map_entry(&conf, "uid=jdoe,dc=x", attrs, 5, &u, invalid, &reason),
                     1);
    assert_string_equal(u.username, "jdoe");
    assert_string_equal(u.dn, "uid=jdoe,dc=x");
    assert_string_equal(u.display_name, "Jane Doe");
    assert_string_equal(u.email, "jane@example.com");
    assert_string_equal(u.phone, "+41795550123"); /* mobile comes first in the list */
    assert_int_equal(u.invalid, 0);
    assert_int_equal(json_array_size(invalid), 0);
    directory_user_clear(&u);

    /* without a mobile, the next attribute; no display name: "" */
    assert_int_equal(
        directory_map_entry(&conf, "uid=jdoe,dc=x", attrs + 2, 2, &u, invalid, &reason), 0);
    assert_non_null(strstr(reason, "no uid attribute"));
    free(reason);
    reason = NULL;
    attrs[1] = (struct directory_attr)ATTR("uid", "jdoe");
    assert_int_equal(
        directory_map_entry(&conf, "uid=jdoe,dc=x", attrs + 1, 3, &u, invalid, &reason), 1);
    assert_string_equal(u.display_name, "");
    assert_string_equal(u.phone, "+41440000000");
    directory_user_clear(&u);
    json_decref(invalid);
}

static void test_map_invalid(void **state)
{
    struct appconf conf = conf_with(10, false);
    char big[DIRECTORY_VALUE_MAX + 2];
    struct directory_attr attrs[] = {
        ATTR("uid", "jdoe"),
        ATTR("displayName", "bad\x01name"),
        ATTR("mail", "no-at-sign"),
        ATTR("mobile", "call me"),
    };
    struct directory_user u;
    json_t *invalid = json_array();
    char *reason = NULL;

    (void)state;
    assert_int_equal(directory_map_entry(&conf, "uid=jdoe,dc=x", attrs, 4, &u, invalid, &reason),
                     1);
    assert_string_equal(u.display_name, "");
    assert_string_equal(u.email, "");
    assert_string_equal(u.phone, "");
    assert_int_equal(u.invalid, DIRECTORY_INVALID_DISPLAY_NAME | DIRECTORY_INVALID_EMAIL |
                                    DIRECTORY_INVALID_PHONE);
    assert_int_equal(json_array_size(invalid), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(invalid, 1), "field")),
                        "email");
    directory_user_clear(&u);

    /* a username with a space, a NUL or too long: the entry is skipped */
    attrs[0] = (struct directory_attr)ATTR("uid", "j doe");
    assert_int_equal(directory_map_entry(&conf, "uid=x", attrs, 1, &u, NULL, &reason), 0);
    assert_non_null(reason);
    free(reason);
    reason = NULL;
    attrs[0] = (struct directory_attr){ "uid", "j\0doe", 5 };
    assert_int_equal(directory_map_entry(&conf, "uid=x", attrs, 1, &u, NULL, &reason), 0);
    assert_non_null(strstr(reason, "NUL"));
    free(reason);
    reason = NULL;
    memset(big, 'a', sizeof(big));
    attrs[0] = (struct directory_attr){ "uid", big, sizeof(big) };
    assert_int_equal(directory_map_entry(&conf, "uid=x", attrs, 1, &u, NULL, &reason), 0);
    assert_non_null(strstr(reason, "longer"));
    free(reason);
    reason = NULL;
    attrs[0] = (struct directory_attr){ "uid", big, USERS_USERNAME_CHARS + 1 };
    assert_int_equal(directory_map_entry(&conf, "uid=x", attrs, 1, &u, NULL, &reason), 0);
    free(reason);
    json_decref(invalid);
}

static void test_phone_normalize(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "+41 (79) 555-01.23", "+41795550123" },
        { "079 555 01 23", "0795550123" },
        { "(044) 1-2-3", "044123" },
        { "", "" },
        { "+1 a", "+1a" }, /* kept for the check to refuse */
    };
    char out[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(directory_phone_normalize(cases[i].in, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].out);
    }
    assert_int_equal(directory_phone_normalize("123456", out, 4), -1);
    assert_int_equal(users_check_phone("phone", "+41795550123", NULL), 0);
    assert_int_equal(users_check_phone("phone", "+1a", NULL), -1);
    assert_int_equal(users_check_phone("phone", "12", NULL), -1);
    assert_int_equal(users_check_phone("phone", "", NULL), 0);
    assert_int_equal(users_check_email("email", "a@b", NULL), 0);
    assert_int_equal(users_check_email("email", "a b@c", NULL), -1);
}

static void test_attr_list(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(
        directory_attr_list_item(" mobile , telephoneNumber,,pager ", 0, out, sizeof(out)), 1);
    assert_string_equal(out, "mobile");
    assert_int_equal(
        directory_attr_list_item(" mobile , telephoneNumber,,pager ", 1, out, sizeof(out)), 1);
    assert_string_equal(out, "telephoneNumber");
    assert_int_equal(
        directory_attr_list_item(" mobile , telephoneNumber,,pager ", 2, out, sizeof(out)), 1);
    assert_string_equal(out, "pager");
    assert_int_equal(
        directory_attr_list_item(" mobile , telephoneNumber,,pager ", 3, out, sizeof(out)), 0);
    assert_int_equal(directory_attr_list_item("", 0, out, sizeof(out)), 0);
    assert_int_equal(directory_attr_list_item("averyveryverylongname", 0, out, sizeof(out)), 0);
}

static struct directory_user mk(const char *dn, const char *name)
{
    struct directory_user u = { strdup(dn), strdup(name), strdup(""), strdup(""), strdup(""),
                                0,          NULL };

    return u;
}

static void test_dedup(void **state)
{
    struct directory_user *users = calloc(4, sizeof(*users));
    json_t *skipped = json_array();
    size_t n = 4;

    (void)state;
    users[0] = mk("uid=b1", "Bob");
    users[1] = mk("uid=a", "alice");
    users[2] = mk("uid=b2", "bob");
    users[3] = mk("uid=c", "carol");
    /* the keys the database folded the names to: duplicates go by them */
    for (size_t i = 0; i < n; i++)
        users[i].key = strdup(i == 0 ? "bob" : users[i].username);
    assert_int_equal(directory_users_dedup(users, &n, skipped), 0);
    assert_int_equal(n, 3);
    assert_string_equal(users[0].dn, "uid=b1"); /* the first of the name stays, in order */
    assert_string_equal(users[1].username, "alice");
    assert_string_equal(users[2].username, "carol");
    assert_int_equal(json_array_size(skipped), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(skipped, 0), "dn")),
                        "uid=b2");
    directory_users_free(users, n);
    json_decref(skipped);
}

static void test_dn_normalize(void **state)
{
    char *a = NULL, *b = NULL;

    (void)state;
    assert_int_equal(directory_dn_normalize("UID=User1, OU=People,DC=example,DC=com", &a), 0);
    assert_int_equal(directory_dn_normalize("uid=user1,ou=people,dc=example,dc=com", &b), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(directory_dn_normalize("not a dn", &a), -1);
    assert_null(a);
}

/* ---- local checks of directory.c */

static char *write_file(const char *text, mode_t mode)
{
    char *path = strdup("/tmp/test_directory.XXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void test_secret_file(void **state)
{
    char out[16], *err = NULL, *path;

    (void)state;
    path = write_file("s3cret\r\nsecond line\n", 0600);
    assert_int_equal(directory_read_secret_file(path, out, sizeof(out), &err), 0);
    assert_string_equal(out, "s3cret");
    assert_int_equal(chmod(path, 0644), 0); /* others may read it: refused */
    assert_int_equal(directory_read_secret_file(path, out, sizeof(out), &err), -1);
    assert_non_null(strstr(err, "mode 0644"));
    assert_null(strstr(err, "s3cret"));
    free(err);
    err = NULL;
    unlink(path);
    free(path);
    path = write_file("a-secret-far-too-long-for-the-buffer", 0640);
    assert_int_equal(directory_read_secret_file(path, out, sizeof(out), &err), -1);
    assert_non_null(strstr(err, "longer"));
    assert_null(strstr(err, "a-secret"));
    free(err);
    err = NULL;
    unlink(path);
    free(path);
    assert_int_equal(directory_read_secret_file("/tmp", out, sizeof(out), &err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    free(err);
    err = NULL;
    assert_int_equal(directory_read_secret_file("/nonexistent/x", out, sizeof(out), &err), -1);
    free(err);
}

static void test_bind_check_local(void **state)
{
    struct appconf conf = conf_with(10, false);
    char big[DIRECTORY_PASSWORD_MAX + 2], *err = NULL;

    (void)state;
    /* refused before any connection: the URL leads nowhere, so a try would answer -1 */
    assert_int_equal(directory_bind_check(&conf, "uid=a,dc=x", "", &err), 0);
    assert_null(err);
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(directory_bind_check(&conf, "uid=a,dc=x", big, &err), 0);
    assert_null(err);
    assert_int_equal(directory_bind_check(&conf, "", "pw", &err), -1);
    free(err);
    err = NULL;
    /* a directory that is not there is not the user's fault, and the password is not said */
    assert_int_equal(directory_bind_check(&conf, "uid=a,dc=x", "hunter2", &err), -1);
    assert_non_null(strstr(err, "ldaps://127.0.0.1:1/"));
    assert_null(strstr(err, "hunter2"));
    free(err);
}

static void test_url_list(void **state)
{
    const char *list = " ldaps://dc1:636/, ,ldaps://dc2 ldaps://dc3,";
    char out[32], small[9];
    size_t pos = 0;

    (void)state;
    assert_int_equal(directory_url_next(list, &pos, out, sizeof(out)), 1);
    assert_string_equal(out, "ldaps://dc1:636/");
    assert_int_equal(directory_url_next(list, &pos, out, sizeof(out)), 1);
    assert_string_equal(out, "ldaps://dc2");
    assert_int_equal(directory_url_next(list, &pos, out, sizeof(out)), 1);
    assert_string_equal(out, "ldaps://dc3");
    assert_int_equal(directory_url_next(list, &pos, out, sizeof(out)), 0);
    assert_int_equal(directory_url_next(list, &pos, out, sizeof(out)), 0);
    pos = 0;
    assert_int_equal(directory_url_next(", ,", &pos, out, sizeof(out)), 0);
    /* too long for <out>: said, and the next one still follows */
    pos = 0;
    assert_int_equal(directory_url_next("ldaps://dc1,ldap://x", &pos, small, sizeof(small)), -1);
    assert_int_equal(directory_url_next("ldaps://dc1,ldap://x", &pos, small, sizeof(small)), 1);
    assert_string_equal(small, "ldap://x");
}

/* Every URL of a list is tried, in order, and the error says what each one answered. */
static void test_url_list_each_tried(void **state)
{
    struct appconf conf = conf_with(10, false);
    char *err = NULL;
    const char *first, *second;

    (void)state;
    conf.directory.url = S("ldaps://127.0.0.1:1/, ldaps://127.0.0.1:2/");
    assert_int_equal(directory_bind_check(&conf, "uid=a,dc=x", "hunter2", &err), -1);
    first = strstr(err, "ldaps://127.0.0.1:1/");
    second = strstr(err, "ldaps://127.0.0.1:2/");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    assert_null(strstr(err, "hunter2"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_changes),
        cmocka_unit_test(test_plan_fields),
        cmocka_unit_test(test_plan_admin_disabled),
        cmocka_unit_test(test_plan_empty_refused),
        cmocka_unit_test(test_plan_disable_guard),
        cmocka_unit_test(test_plan_case_and_duplicates),
        cmocka_unit_test(test_plan_disable_min),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_map_entry),
        cmocka_unit_test(test_map_invalid),
        cmocka_unit_test(test_phone_normalize),
        cmocka_unit_test(test_attr_list),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_dn_normalize),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_bind_check_local),
        cmocka_unit_test(test_url_list),
        cmocka_unit_test(test_url_list_each_tried),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
