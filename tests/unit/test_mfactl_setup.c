/*
 * mfactl setup (appliance/setup.c), its pure parts: the command line (one
 * mode, the flags it needs, ids and addresses checked), the edit of one
 * setting in a configuration text that keeps every other byte, the members
 * list it writes and the package-default test.
 * tests/integration/test_setup.py runs the whole of it against real
 * replicators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "appconf.h"
#include "setup.h"
#include "setup_priv.h"

/* Parses the words of <line> (space-separated) after "setup". */
static int parse(const char *line, struct setup_args *a, char **err)
{
    static char buf[512];
    char *argv[32];
    int argc = 0;

    snprintf(buf, sizeof(buf), "setup %s", line);
    for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " "))
        argv[argc++] = t;
    argv[argc] = NULL;
    *err = NULL;
    return setup_parse_args(argc, argv, a, err);
}

static void parse_ok(const char *line, struct setup_args *a)
{
    char *err = NULL;

    if (parse(line, a, &err) != 0)
        fail_msg("%s: %s", line, err);
}

static void parse_bad(const char *line, const char *words)
{
    struct setup_args a;
    char *err = NULL;

    if (parse(line, &a, &err) == 0)
        fail_msg("accepted: %s", line);
    if (!strstr(err, words))
        fail_msg("%s: \"%s\" lacks \"%s\"", line, err, words);
    free(err);
}

static void test_args_primary(void **state)
{
    struct setup_args a;

    (void)state;
    parse_ok("--primary --cluster corp --id n1 --address 10.0.0.11 --member n2=10.0.0.12 "
             "--member n3=fd00::13 --no-start --wait 30",
             &a);
    assert_int_equal(a.mode, SETUP_PRIMARY);
    assert_string_equal(a.cluster, "corp");
    assert_string_equal(a.id, "n1");
    assert_string_equal(a.address, "10.0.0.11");
    assert_int_equal(a.nmembers, 2);
    assert_string_equal(a.member_id[1], "n3");
    assert_string_equal(a.member_addr[1], "fd00::13");
    assert_true(a.no_start);
    assert_int_equal(a.wait_s, 30);
}

static void test_args_invite_and_join(void **state)
{
    struct setup_args a;

    (void)state;
    parse_ok("--invite n4 --address 10.0.0.14 --out /root/n4.join", &a);
    assert_int_equal(a.mode, SETUP_INVITE);
    assert_string_equal(a.id, "n4");
    assert_string_equal(a.out, "/root/n4.join");
    parse_ok("--join 10.0.0.11:8500 --bundle n4.join", &a);
    assert_int_equal(a.mode, SETUP_JOIN);
    assert_string_equal(a.join, "10.0.0.11:8500");
    assert_string_equal(a.bundle, "n4.join");
    parse_ok("--help", &a);
    assert_true(a.help);
    parse_ok("--primary --cluster corp --id n1 --address 10.0.0.11 --force", &a);
    assert_true(a.force);
}

static void test_args_refused(void **state)
{
    (void)state;
    parse_bad("", "exactly one of");
    parse_bad("--primary --join 10.0.0.1 --bundle x", "exactly one of");
    parse_bad("--primary --cluster corp --id n1", "--address");
    parse_bad("--primary --cluster corp --id N1 --address 10.0.0.1", "a-z and 0-9");
    parse_bad("--primary --cluster corp --id n1 --address host.example", "numeric");
    parse_bad("--primary --cluster .x --id n1 --address 10.0.0.1", "--cluster");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 --member n1=10.0.0.2",
              "this member");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 --member n2", "ID=ADDRESS");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 --member n2=a", "numeric");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 --member n2=10.0.0.2 "
              "--member n2=10.0.0.3",
              "twice");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 --wait 0", "--wait");
    parse_bad("--invite n2", "--address");
    parse_bad("--invite n2 --address 10.0.0.2 --force", "--invite takes only");
    parse_bad("--join 10.0.0.1 --bundle b --force", "--join takes only");
    parse_bad("--invite n2 --address 10.0.0.2 --cluster c", "only");
    parse_bad("--join 10.0.0.1", "--bundle");
    parse_bad("--join 10.0.0.1 --bundle b --id n2", "the bundle names");
    parse_bad("--primary --frobnicate", "unknown option");
    parse_bad("--primary --cluster c --id n1 --address 10.0.0.1 extra", "unexpected");
}

static const char conf_text[] = "# the package's file\n"
                                "version = 1;\n"
                                "cluster = {\n"
                                "  # The cluster's name (required). name = \"not this\";\n"
                                "  name = \"mfa\";   # placeholder\n"
                                "  members = (\n"
                                "    { id = \"n1\"; address = \"127.0.0.1\"; }  # (one)\n"
                                "    # { id = \"n2\"; address = \"10.0.0.12\"; },\n"
                                "  );\n"
                                "};\n"
                                "appliance = {\n"
                                "  member = \"n1\";\n"
                                "  # membership = \"x\";\n"
                                "};\n"
                                "node = { db = { name = \"mfa\"; }; };\n";

static void test_replace_keeps_everything_else(void **state)
{
    char *out = NULL, *out2 = NULL, *err = NULL;

    (void)state;
    assert_int_equal(setup_conf_replace(conf_text, "cluster.name", "\"corp\"", &out, &err), 0);
    assert_non_null(strstr(out, "  name = \"corp\";   # placeholder\n"));
    /* the comment on the line above and node.db.name are untouched */
    assert_non_null(strstr(out, "name = \"not this\";"));
    assert_non_null(strstr(out, "node = { db = { name = \"mfa\"; }; };"));
    assert_int_equal(setup_conf_replace(out, "cluster.members",
                                        "(\n    { id = \"a\"; address = \"10.0.0.1\"; }\n  )",
                                        &out2, &err),
                     0);
    assert_non_null(strstr(out2, "  members = (\n    { id = \"a\"; address = \"10.0.0.1\"; }\n"
                                 "  );\n};\n"));
    assert_null(strstr(out2, "n2"));
    free(out);
    assert_int_equal(setup_conf_replace(out2, "appliance.member", "\"a\"", &out, &err), 0);
    assert_non_null(strstr(out, "  member = \"a\";\n  # membership = \"x\";\n"));
    free(out);
    free(out2);
}

static void test_replace_refuses(void **state)
{
    char *out = NULL, *err = NULL;

    (void)state;
    assert_int_equal(setup_conf_replace(conf_text, "cluster.fence_after", "3", &out, &err), -1);
    assert_non_null(strstr(err, "no setting cluster.fence_after"));
    free(err);
    err = NULL;
    assert_int_equal(setup_conf_replace("cluster = { name = ", "cluster.name", "\"x\"", &out, &err),
                     -1);
    assert_non_null(strstr(err, "line 1"));
    free(err);
    assert_null(out);
}

static void test_members_text_and_default(void **state)
{
    struct member_ports base = { .api = 443, .replicator = 8500, .postgres = 5432 };
    struct setup_member m[2] = {
        { .id = "n1", .address = "10.0.0.11", .ports = { .api = 443, .replicator = 8500 } },
        { .id = "n2", .address = "10.0.0.12", .ports = { .api = 3443, .postgres = 3432 } },
    };
    char *text = setup_members_text(m, 2, &base), *out = NULL, *err = NULL;
    struct appconf c;

    (void)state;
    assert_string_equal(text, "(\n"
                              "    { id = \"n1\"; address = \"10.0.0.11\"; },\n"
                              "    { id = \"n2\"; address = \"10.0.0.12\"; ports = { api = 3443; "
                              "postgres = 3432; }; }\n"
                              "  )");
    memset(&c, 0, sizeof(c));
    assert_int_equal(appconf_load_string(conf_text, "t.conf", &c, NULL, NULL, &err), 0);
    assert_true(setup_conf_is_default(&c));
    appconf_free(&c);
    /* the rendered list loads, and the file is no longer the package's */
    assert_int_equal(setup_conf_replace(conf_text, "cluster.members", text, &out, &err), 0);
    free(text);
    text = NULL;
    assert_int_equal(setup_conf_replace(out, "appliance.member", "\"n2\"", &text, &err), 0);
    memset(&c, 0, sizeof(c));
    if (appconf_load_string(text, "t.conf", &c, NULL, NULL, &err) != 0)
        fail_msg("%s\n%s", err, text);
    assert_int_equal(c.cluster.nmembers, 2);
    assert_int_equal(appconf_member(&c, "n2")->ports.api, 3443);
    assert_false(setup_conf_is_default(&c));
    appconf_free(&c);
    free(text);
    free(out);
}

/* setup prints one line a step: --json is refused (exit 2) before anything is read. */
/* What a member sends stays one libconfig string, whatever it holds. */
static void test_quoted(void **state)
{
    char *q;

    (void)state;
    q = setup_quoted("corp-mfa");
    assert_string_equal(q, "\"corp-mfa\"");
    free(q);
    q = setup_quoted("a\"; x = \"1\\");
    assert_string_equal(q, "\"a\\\"; x = \\\"1\\\\\"");
    free(q);
    assert_null(setup_quoted("line\nbreak"));
    assert_null(setup_quoted("bell\a"));
}

static void test_json_refused(void **state)
{
    char words[] = "setup --primary --cluster c --id n1 --address 10.0.0.1", *argv[9];
    int argc = 0;

    (void)state;
    for (char *t = strtok(words, " "); t; t = strtok(NULL, " "))
        argv[argc++] = t;
    argv[argc] = NULL;
    assert_int_equal(setup_cmd("/nonexistent/appliance.conf", true, argc, argv), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_primary),
        cmocka_unit_test(test_args_invite_and_join),
        cmocka_unit_test(test_args_refused),
        cmocka_unit_test(test_replace_keeps_everything_else),
        cmocka_unit_test(test_replace_refuses),
        cmocka_unit_test(test_members_text_and_default),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_json_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
