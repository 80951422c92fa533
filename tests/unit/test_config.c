/*
 * The declarative configuration engine: defaults, types, bounds, enums,
 * lists of groups, unknown keys (errors, or warnings in a newer file), error
 * messages with file, line and key, dump, and the restart check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

struct item {
    char *name;
    int weight;
};

struct demo {
    bool flag;
    int port;
    char *name;
    char *secret;
    int mode;
    struct item *items;
    size_t nitems;
};

static const struct cfg_enum_name modes[] = { { "fast", 0 }, { "safe", 1 }, { NULL, 0 } };

static const struct cfg_key item_keys[] = {
    { "name", CFG_STRING, offsetof(struct item, name), NULL, 0, 0, NULL, NULL, CFG_REQUIRED },
    { "weight", CFG_INT, offsetof(struct item, weight), "1", 1, 100, NULL, NULL, 0 },
};

static const struct cfg_list item_list = { item_keys, 2, sizeof(struct item),
                                           offsetof(struct demo, nitems), 3 };

static const struct cfg_key demo_keys[] = {
    { "a.flag", CFG_BOOL, offsetof(struct demo, flag), "true", 0, 0, NULL, NULL, CFG_RELOADABLE },
    { "a.port", CFG_INT, offsetof(struct demo, port), "5432", 1, 65535, NULL, NULL, 0 },
    { "a.b.name", CFG_STRING, offsetof(struct demo, name), "dflt", 0, 0, NULL, NULL, 0 },
    { "secret", CFG_STRING, offsetof(struct demo, secret), NULL, 0, 0, NULL, NULL, CFG_SECRET },
    { "mode", CFG_ENUM, offsetof(struct demo, mode), "safe", 0, 0, modes, NULL, CFG_RELOADABLE },
    { "items", CFG_LIST, offsetof(struct demo, items), NULL, 0, 0, NULL, &item_list, 0 },
};

static const struct cfg_schema demo_schema = { demo_keys, 6, 2 };

static int load(const char *text, struct demo *d, char **err)
{
    memset(d, 0, sizeof(*d));
    return cfg_load_string(text, "t.conf", &demo_schema, d, NULL, NULL, err);
}

/* Loading must fail with a message that contains every one of <parts>. */
static void expect_error(const char *text, const char *part1, const char *part2)
{
    struct demo d;
    char *err = NULL;

    assert_int_equal(load(text, &d, &err), -1);
    assert_non_null(err);
    if (!strstr(err, part1) || (part2 && !strstr(err, part2)))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, part1, part2 ? part2 : "");
    free(err);
    /* Nothing was left allocated in the target. */
    assert_null(d.name);
    assert_null(d.items);
}

static void test_defaults(void **state)
{
    struct demo d;
    char *err = NULL;

    (void)state;
    assert_int_equal(load("", &d, &err), 0);
    assert_true(d.flag);
    assert_int_equal(d.port, 5432);
    assert_string_equal(d.name, "dflt");
    assert_string_equal(d.secret, "");
    assert_int_equal(d.mode, 1);
    assert_int_equal(d.nitems, 0);
    cfg_free(&demo_schema, &d);
    assert_null(d.name);
}

static void test_values_and_lists(void **state)
{
    struct demo d;
    char *err = NULL;

    (void)state;
    assert_int_equal(load("a = { flag = false; port = 80; b = { name = \"x y\"; }; };\n"
                          "mode = \"fast\";\n"
                          "items = ( { name = \"one\"; }, { name = \"two\"; weight = 7; } );\n",
                          &d, &err),
                     0);
    assert_false(d.flag);
    assert_int_equal(d.port, 80);
    assert_string_equal(d.name, "x y");
    assert_int_equal(d.mode, 0);
    assert_int_equal(d.nitems, 2);
    assert_string_equal(d.items[0].name, "one");
    assert_int_equal(d.items[0].weight, 1);
    assert_string_equal(d.items[1].name, "two");
    assert_int_equal(d.items[1].weight, 7);
    cfg_free(&demo_schema, &d);
}

static void test_errors_name_line_and_key(void **state)
{
    (void)state;
    expect_error("a = { port = 0; };", "t.conf:1",
                 "a.port: 0 is out of range, expected 1 to 65535");
    expect_error("\n\na = { port = \"x\"; };", "t.conf:3", "a.port: expected an integer");
    expect_error("a = { flag = 1; };", "t.conf:1", "a.flag: expected true or false");
    expect_error("mode = \"slow\";", "t.conf:1", "mode: \"slow\" is not one of \"fast\", \"safe\"");
    expect_error("a = { b = { nmae = \"x\"; }; };", "t.conf:1", "a.b.nmae: unknown key");
    expect_error("\nzzz = 1;", "t.conf:2", "zzz: unknown key");
    expect_error("a = { port = { x = 1; }; };", "a.port", "unknown key");
    expect_error("items = ( { weight = 2; } );", "items[0].name", "required key is missing");
    expect_error("items = ( { name = \"a\"; }, { name = \"b\"; colour = 1; } );", "items[1].colour",
                 "unknown key");
    expect_error("items = ( { name = \"a\"; weight = 0; } );", "items[0].weight", "out of range");
    expect_error("items = ( 1, 2 );", "items[0]", "expected a group");
    expect_error("items = ( {name=\"a\";}, {name=\"b\";}, {name=\"c\";}, {name=\"d\";} );", "items",
                 "at most 3");
    expect_error("a = { port = ; };", "t.conf:1", "syntax error");
    expect_error("version = \"2\";", "version", "positive integer");
    /* What libconfig 1.5 would wrap to 1 or read from elsewhere. */
    expect_error("a = { port = 4294967297; };", "t.conf: line 1", "too large");
    expect_error("\n@include \"/etc/passwd\"\n", "t.conf: line 2", "@include");
}

static void warn_collect(void *arg, const char *msg)
{
    int *count = arg;

    (*count)++;
    assert_non_null(strstr(msg, "future_key: unknown key, ignored"));
}

static void test_newer_version_warns(void **state)
{
    struct demo d;
    char *err = NULL;
    int warnings = 0;

    (void)state;
    memset(&d, 0, sizeof(d));
    /* Same version as the program: an unknown key is an error. */
    assert_int_equal(cfg_load_string("version = 2; future_key = 1;", "t.conf", &demo_schema, &d,
                                     warn_collect, &warnings, &err),
                     -1);
    free(err);
    err = NULL;
    /* A newer file: a warning, and the known keys still load. */
    assert_int_equal(cfg_load_string("version = 3; future_key = 1; a = { port = 99; };", "t.conf",
                                     &demo_schema, &d, warn_collect, &warnings, &err),
                     0);
    assert_int_equal(warnings, 1);
    assert_int_equal(d.port, 99);
    cfg_free(&demo_schema, &d);
}

static void test_load_missing_file(void **state)
{
    struct demo d;
    char *err = NULL;

    (void)state;
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_load("/nonexistent/x.conf", &demo_schema, &d, NULL, NULL, &err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.conf: cannot read"));
    free(err);
}

static void test_dump_hides_secrets(void **state)
{
    struct demo d;
    char *err = NULL, *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_int_equal(load("secret = \"hunter2\"; items = ( { name = \"n\"; } );", &d, &err), 0);
    cfg_dump(&demo_schema, &d, f);
    fclose(f);
    assert_null(strstr(buf, "hunter2"));
    assert_non_null(strstr(buf, "secret = <hidden>;"));
    assert_non_null(strstr(buf, "a.port = 5432;"));
    assert_non_null(strstr(buf, "items[0].name = \"n\";"));
    free(buf);
    cfg_free(&demo_schema, &d);
}

static void test_restart_needed(void **state)
{
    struct demo a, b;
    char *err = NULL;

    (void)state;
    assert_int_equal(load("a = { port = 1; };", &a, &err), 0);
    /* flag and mode are reloadable: no restart. */
    assert_int_equal(load("a = { port = 1; flag = false; }; mode = \"fast\";", &b, &err), 0);
    assert_int_equal(cfg_restart_needed(&demo_schema, &a, &b, &err), 0);
    cfg_free(&demo_schema, &b);
    assert_int_equal(load("a = { port = 2; };", &b, &err), 0);
    assert_int_equal(cfg_restart_needed(&demo_schema, &a, &b, &err), 1);
    assert_non_null(strstr(err, "a.port changed"));
    free(err);
    err = NULL;
    cfg_free(&demo_schema, &b);
    assert_int_equal(load("a = { port = 1; }; items = ( { name = \"q\"; } );", &b, &err), 0);
    assert_int_equal(cfg_restart_needed(&demo_schema, &a, &b, &err), 1);
    assert_non_null(strstr(err, "items changed"));
    free(err);
    cfg_free(&demo_schema, &a);
    cfg_free(&demo_schema, &b);
}

static void test_keep_restart_keys(void **state)
{
    struct demo a, b;
    char *err = NULL;

    (void)state;
    assert_int_equal(load("a = { port = 1; b = { name = \"old\"; }; }; mode = \"fast\";", &a, &err),
                     0);
    assert_int_equal(load("a = { port = 2; flag = false; b = { name = \"new\"; }; };"
                          "items = ( { name = \"q\"; } );",
                          &b, &err),
                     0);
    cfg_keep_restart_keys(&demo_schema, &a, &b);
    /* Restart keys keep the old values; reloadable ones take the new. */
    assert_int_equal(b.port, 1);
    assert_string_equal(b.name, "old");
    assert_int_equal(b.nitems, 0);
    assert_false(b.flag);
    assert_int_equal(b.mode, 1);
    /* The old struct got the file's values in exchange (it is freed next). */
    assert_int_equal(a.port, 2);
    assert_string_equal(a.name, "new");
    /* Each still owns what it frees (ASan would see a double free). */
    cfg_free(&demo_schema, &a);
    cfg_free(&demo_schema, &b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_and_lists),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_newer_version_warns),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_dump_hides_secrets),
        cmocka_unit_test(test_restart_needed),
        cmocka_unit_test(test_keep_restart_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
