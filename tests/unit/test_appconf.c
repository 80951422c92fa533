/*
 * The appliance configuration file: defaults, member port inheritance, and
 * the checks that span keys (among them the RADIUS clients and balancers),
 * each error naming the file and the key.
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
#include "radius.h"

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

/* replicator.max_standby_streaming_delay goes into postgresql.conf: only PostgreSQL's syntax. */
static void test_standby_delay(void **state)
{
    static const char *const good_values[] = { "-1", "0",  "30s",  "250ms", "5min",
                                               "2h", "1d", "1500", "30 s" };
    static const char *const bad_values[] = { "",     "abc", "30 seconds",   "-5",
                                              "1.5s", "s",   "99999999999s", "-1s" };
    char text[400];

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(good_values) + MFA_ARRAY_LEN(bad_values); i++) {
        bool ok = i < MFA_ARRAY_LEN(good_values);
        const char *v = ok ? good_values[i] : bad_values[i - MFA_ARRAY_LEN(good_values)];
        struct appconf c = { 0 };
        char *err = NULL;

        snprintf(text, sizeof(text),
                 "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; "
                 "} ); }; appliance = { member = \"n1\"; }; replicator = { "
                 "max_standby_streaming_delay = \"%s\"; };",
                 v);
        if (ok) {
            if (appconf_load_string(text, "a.conf", &c, NULL, NULL, &err) != 0)
                fail_msg("\"%s\" refused: %s", v, err);
            assert_string_equal(c.replicator.max_standby_streaming_delay, v);
            appconf_free(&c);
        } else {
            expect_error(text, "replicator.max_standby_streaming_delay");
        }
    }
}

/* A valid cluster with <node> inside "node = { ... };" */
#define WITH_NODE(node)                                                                            \
    "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };"         \
    "appliance = { member = \"n1\"; }; node = { " node " };"

static void test_radius_defaults(void **state)
{
    struct appconf c = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(appconf_load_string(good, "a.conf", &c, NULL, NULL, &err), 0);
    assert_true(c.node.radius.enabled);
    assert_string_equal(c.node.radius.balancers, "");
    assert_int_equal(c.node.radius.duplicate_window_ms, 30000);
    assert_string_equal(c.node.radius.challenge_message, "Enter the code sent to your phone");
    assert_int_equal(c.node.radius.nclients, 0);
    assert_true(c.balancer.radius.enabled);
    assert_string_equal(c.balancer.radius.address, "");
    assert_int_equal(c.balancer.radius.retransmit_window_ms, 30000);
    appconf_free(&c);
}

static void test_radius_clients(void **state)
{
    static const char text[] = WITH_NODE(
        "radius = { balancers = \"127.0.0.1,::1\"; duplicate_window_ms = 5000;"
        "  clients = ( { name = \"vpn\"; address = \"10.0.0.0/8\"; secret = \"s3cret\"; },"
        "              { name = \"rdg\"; address = \"2001:db8::7\"; secret = \"x\";"
        "                require_message_authenticator = false; } ); };");
    struct appconf c = { 0 };
    char *err = NULL;

    (void)state;
    if (appconf_load_string(text, "a.conf", &c, NULL, NULL, &err) != 0)
        fail_msg("refused: %s", err);
    assert_string_equal(c.node.radius.balancers, "127.0.0.1,::1");
    assert_int_equal(c.node.radius.duplicate_window_ms, 5000);
    assert_int_equal(c.node.radius.nclients, 2);
    assert_string_equal(c.node.radius.clients[0].name, "vpn");
    assert_string_equal(c.node.radius.clients[0].address, "10.0.0.0/8");
    assert_string_equal(c.node.radius.clients[0].secret, "s3cret");
    assert_true(c.node.radius.clients[0].require_message_authenticator); /* the default */
    assert_string_equal(c.node.radius.clients[1].address, "2001:db8::7");
    assert_false(c.node.radius.clients[1].require_message_authenticator);
    appconf_free(&c);
}

/* A client entry with <address> and <secret>, in a full file. */
static char *client_conf(const char *address, const char *secret)
{
    static const char fmt[] = WITH_NODE("radius = { clients = ( { name = \"vpn\"; address = "
                                        "\"%s\"; secret = \"%s\"; } ); };");
    size_t size = sizeof(fmt) + strlen(address) + strlen(secret);
    char *text = malloc(size);

    assert_non_null(text);
    snprintf(text, size, fmt, address, secret);
    return text;
}

static void expect_client_error(const char *address, const char *secret, const char *part)
{
    char *text = client_conf(address, secret);

    expect_error(text, part);
    free(text);
}

static void test_radius_errors(void **state)
{
    char secret[RADIUS_SECRET_MAX + 2];
    struct appconf c = { 0 };
    char *text, *err = NULL;

    (void)state;
    expect_client_error("10.0.0.1/8", "s",
                        "node.radius.clients[0].address: \"10.0.0.1/8\": address has bits set "
                        "past the prefix length");
    expect_client_error("foo", "s",
                        "node.radius.clients[0].address: \"foo\": not a numeric IPv4 or IPv6 "
                        "address");
    expect_client_error("10.0.0.0/33", "s", "prefix length is not a number from 0 to 32");
    expect_client_error("10.0.0.0/8", "", "node.radius.clients[0].secret: expected 1 to 128 bytes");
    /* 128 bytes are fine, 129 are not */
    memset(secret, 'k', sizeof(secret));
    secret[RADIUS_SECRET_MAX] = '\0';
    text = client_conf("10.0.0.0/8", secret);
    if (appconf_load_string(text, "a.conf", &c, NULL, NULL, &err) != 0)
        fail_msg("refused: %s", err);
    assert_int_equal(strlen(c.node.radius.clients[0].secret), RADIUS_SECRET_MAX);
    appconf_free(&c);
    free(text);
    secret[RADIUS_SECRET_MAX] = 'k';
    secret[RADIUS_SECRET_MAX + 1] = '\0';
    expect_client_error("10.0.0.0/8", secret,
                        "node.radius.clients[0].secret: expected 1 to 128 bytes");
    /* a missing secret, an empty name */
    expect_error(WITH_NODE("radius = { clients = ( { name = \"vpn\"; address = \"10.0.0.1\"; } ); "
                           "};"),
                 "secret: required key is missing");
    expect_error(WITH_NODE("radius = { clients = ( { name = \"\"; address = \"10.0.0.1\"; "
                           "secret = \"s\"; } ); };"),
                 "node.radius.clients[0].name: must not be empty");
    /* the balancers: an empty element, a name */
    expect_error(WITH_NODE("radius = { balancers = \"127.0.0.1,,x\"; };"),
                 "node.radius.balancers: \"\": an empty entry");
    expect_error(WITH_NODE("radius = { balancers = \"127.0.0.1,\"; };"),
                 "node.radius.balancers: \"\": an empty entry");
    expect_error(WITH_NODE("radius = { balancers = \"127.0.0.1,x\"; };"),
                 "node.radius.balancers: \"x\": not a numeric IPv4 or IPv6 address");
    /* the challenge message must fit one attribute */
    expect_error(WITH_NODE("radius = { challenge_message = \"\"; };"),
                 "node.radius.challenge_message: expected 1 to 253 bytes");
    expect_error(WITH_NODE("radius = { duplicate_window_ms = 10; };"),
                 "node.radius.duplicate_window_ms: 10 is out of range");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };"
        "appliance = { member = \"n1\"; }; balancer = { radius = { address = \"any\"; }; };",
        "balancer.radius.address: \"any\" is not a numeric IPv4 or IPv6 address");
    expect_error(
        "cluster = { name = \"c\"; members = ( { id = \"n1\"; address = \"10.0.0.1\"; } ); };"
        "appliance = { member = \"n1\"; }; balancer = { address = \"vip\"; };",
        "balancer.address: \"vip\" is not a numeric IPv4 or IPv6 address");
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

/* <good> with a directory section made of <keys>. */
static char *dir_conf(const char *keys)
{
    char *text = NULL;

    assert_true(asprintf(&text,
                         "%sdirectory = { enabled = true; base_dn = \"dc=example,dc=com\"; %s };\n",
                         good, keys) > 0);
    return text;
}

static int load_dir(const char *keys, struct appconf *c, char **err)
{
    char *text = dir_conf(keys);
    int rc = appconf_load_string(text, "bad.conf", c, NULL, NULL, err);

    free(text);
    return rc;
}

static void expect_dir(const char *keys, const char *part)
{
    struct appconf c = { 0 };
    char *err = NULL;

    if (load_dir(keys, &c, &err) == 0)
        fail_msg("\"%s\" was taken", keys);
    if (!err || !strstr(err, part))
        fail_msg("error \"%s\" lacks \"%s\"", err ? err : "(none)", part);
    free(err);
}

static void expect_dir_ok(const char *keys, int max_disable_min)
{
    struct appconf c = { 0 };
    char *err = NULL;

    if (load_dir(keys, &c, &err) != 0)
        fail_msg("\"%s\" refused: %s", keys, err ? err : "(none)");
    assert_int_equal(c.directory.max_disable_min, max_disable_min);
    appconf_free(&c);
}

/* directory.url: one server or a list of them, all over TLS one way; directory.max_disable_min. */
static void test_directory(void **state)
{
    (void)state;
    expect_dir_ok("url = \"ldaps://dc1.example.com\";", 3);
    /* libldap's lists, by commas or blanks: admins list their domain controllers */
    expect_dir_ok("url = \"ldaps://dc1.example.com,ldaps://dc2.example.com:636\";", 3);
    expect_dir_ok("url = \"ldap://dc1 ldap://dc2\"; starttls = true; max_disable_min = 0;", 0);
    expect_dir("url = \"ldaps://dc1,ldap://dc2\";", "mixes ldap:// and ldaps://");
    expect_dir("url = \"ldap://dc1,ldaps://dc2\"; starttls = true;", "mixes ldap:// and ldaps://");
    expect_dir("url = \"ldap://dc1,ldap://dc2\";", "is in clear");
    expect_dir("url = \"ldaps://dc1 ldaps://dc2\"; starttls = true;", "TLS already");
    expect_dir("url = \"ldapi:///\";", "neither ldap:// nor ldaps://");
    expect_dir("url = \"dc1.example.com\";", "is not an ldap:// or ldaps:// URL");
    expect_dir("url = \"\";", "is not an ldap:// or ldaps:// URL");
    expect_dir("url = \"ldaps://dc1\"; max_disable_min = -1;", "max_disable_min");
    /* the fetch's limits on attribute names, checked where the operator reads them */
    expect_dir("url = \"ldaps://dc1\"; attributes = { phone = \"a,b,c,d,e,f,g,h,i\"; };",
               "more than 8 names");
    expect_dir("url = \"ldaps://dc1\"; attributes = { phone = \"mobile, "
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"; };",
               "longer than 127 bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_on_disk),   cmocka_unit_test(test_radius_defaults),
        cmocka_unit_test(test_radius_clients), cmocka_unit_test(test_radius_errors),
        cmocka_unit_test(test_standby_delay),  cmocka_unit_test(test_directory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
