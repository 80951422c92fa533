/*
 * The appliance configuration file: defaults, member port inheritance, and
 * the checks that span keys, each error naming the file and the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "appconf.h"
#include "log.h"

#define MEMBERS3                                                                                   \
    "  members = ( { id = \"n1\"; address = \"127.0.0.1\"; },\n"                                   \
    "              { id = \"n2\"; address = \"127.0.0.1\"; ports = { node = 8081; api = 444; "     \
    "stats = 8414; health = 8415; balancer_control = 8416; radius = 1813; node_radius = 18121; "   \
    "replicator = 8501; postgres = 5433; }; },\n"                                                  \
    "              { id = \"n10\"; address = \"::1\"; } );\n"

static const char good[] = "version = 1;\n"
                           "cluster = {\n"
                           "  name = \"demo\";\n" MEMBERS3 "};\n"
                           "appliance = { member = \"n2\"; };\n"
                           "log = { level = \"debug\"; };\n";

static void test_good_file(void **state)
{
    struct appconf c = { 0 };
    char *err = NULL;
    const struct member_conf *m;

    (void)state;
    assert_int_equal(appconf_load_string(good, "a.conf", &c, NULL, NULL, &err), 0);
    assert_string_equal(c.cluster.name, "demo");
    assert_int_equal(c.cluster.replication, REPL_SYNC);
    assert_int_equal(c.cluster.fence_after, 10);
    assert_int_equal(c.cluster.nmembers, 3);
    assert_int_equal(c.log.level, LOG_LVL_DEBUG);
    assert_string_equal(c.appliance.user, "mfa");
    assert_string_equal(c.appliance.key_file, "/etc/mfa-appliance/keys.conf");
    /* n1 inherits every port from the cluster's defaults (DESIGN §4). */
    m = appconf_member(&c, "n1");
    assert_non_null(m);
    assert_int_equal(m->ports.api, 443);
    assert_int_equal(m->ports.node, 8080);
    assert_int_equal(m->ports.node_radius, 18120);
    assert_int_equal(m->ports.postgres, 5432);
    m = appconf_local(&c);
    assert_string_equal(m->id, "n2");
    assert_int_equal(m->ports.node, 8081);
    assert_int_equal(m->ports.postgres, 5433);
    assert_null(appconf_member(&c, "n3"));
    appconf_free(&c);
    assert_null(c.cluster.members);
}

static void expect_error(const char *text, const char *part)
{
    struct appconf c = { 0 };
    char *err = NULL;

    assert_int_equal(appconf_load_string(text, "bad.conf", &c, NULL, NULL, &err), -1);
    assert_non_null(err);
    if (!strstr(err, part) || !strstr(err, "bad.conf"))
        fail_msg("error \"%s\" lacks \"%s\"", err, part);
    free(err);
    assert_null(c.cluster.members);
    assert_null(c.cluster.name);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("cluster = { members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };\n"
                 "appliance = { member = \"n1\"; };",
                 "cluster.name: required key is missing");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"N1\"; address = \"10.0.0.1\"; } ); };"
        "appliance = { member = \"N1\"; };",
        "cluster.members[0].id: \"N1\" is not a node id");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"host.lan\"; } ); };"
        "appliance = { member = \"n1\"; };",
        "is not a numeric IPv4 or IPv6 address");
    expect_error("cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; },"
                 "{ id = \"n1\"; address = \"10.0.0.2\"; } ); }; appliance = { member = \"n1\"; };",
                 "cluster.members[1].id: \"n1\" is listed twice");
    expect_error("cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; },"
                 "{ id = \"n2\"; address = \"10.0.0.1\"; } ); }; appliance = { member = \"n1\"; };",
                 "n1 and n2 share address 10.0.0.1 and port 443");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };"
        "appliance = { member = \"n9\"; };",
        "appliance.member: \"n9\" is not one of cluster.members");
    expect_error("cluster = { name = \"c\"; members = ( ); }; appliance = { member = \"n1\"; };",
                 "at least one member");
    expect_error("cluster = { name = \"c\"; replication = \"quorum\"; members = ( { id = \"n1\"; "
                 "address = \"10.0.0.1\"; } ); }; appliance = { member = \"n1\"; };",
                 "cluster.replication: \"quorum\" is not one of \"sync\", \"async\"");
    expect_error("cluster = { name = \"c\"; ports = { node = 70000; }; members = ( { id = \"n1\"; "
                 "address = \"10.0.0.1\"; } ); }; appliance = { member = \"n1\"; };",
                 "cluster.ports.node: 70000 is out of range");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };"
        "appliance = { member = \"n1\"; }; nodes = { listen = 1; };",
        "nodes: unknown key");
}

static void test_file_on_disk(void **state)
{
    char path[] = "/tmp/mfa-appconf-XXXXXX";
    int fd = mkstemp(path);
    struct appconf c = { 0 };
    char *err = NULL;

    (void)state;
    assert_true(fd >= 0);
    /* A typo on line 3 of a real file: the message names the file and line. */
    assert_true(write(fd, "cluster = {\n name = \"c\";\n nmae = \"x\";\n};\n", 41) == 41);
    close(fd);
    assert_int_equal(appconf_load(path, &c, NULL, NULL, &err), -1);
    assert_non_null(strstr(err, ":3: cluster.nmae: unknown key"));
    assert_non_null(strstr(err, path));
    free(err);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_on_disk),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
