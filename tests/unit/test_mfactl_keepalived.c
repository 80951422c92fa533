/*
 * mfactl keepalived (appliance/keepalived.c): the exact keepalived.conf of
 * a member of a three-member cluster, the priorities by member order and
 * --priority, --peers, IPv6, and every refusal with the words that tell the
 * operator what to change. tests/integration/test_keepalived.py has
 * keepalived itself check the files.
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
#include "keepalived.h"

/*
 * Loads n1, n2, n3 at <a1>, <a2>, <a3>, this host being <local>; <rest> goes
 * after the appliance section. n1 and n2 have the default ports, n3 its own
 * (api 3443, health 3405, ...), so that it may share an address.
 */
static void load(struct appconf *c, const char *a1, const char *a2, const char *a3,
                 const char *local, const char *rest)
{
    char text[2048], *err = NULL;

    snprintf(text, sizeof(text),
             "version = 1;\n"
             "cluster = {\n  name = \"corp-mfa\";\n  members = (\n"
             "    { id = \"n1\"; address = \"%s\"; },\n"
             "    { id = \"n2\"; address = \"%s\"; },\n"
             "    { id = \"n3\"; address = \"%s\"; ports = { api = 3443; stats = 3404; "
             "health = 3405; balancer_control = 3406; radius = 3812; node = 3080; "
             "node_radius = 3120; replicator = 3500; postgres = 3432; }; }\n  );\n};\n"
             "appliance = { member = \"%s\"; };\n%s\n",
             a1, a2, a3, local, rest);
    memset(c, 0, sizeof(*c));
    if (appconf_load_string(text, "t.conf", c, NULL, NULL, &err) != 0)
        fail_msg("%s\n%s", err, text);
}

static void load_v4(struct appconf *c, const char *local)
{
    load(c, "10.0.0.11", "10.0.0.12", "10.0.0.13", local, "");
}

static char *render(const struct appconf *c, const struct keepalived_opts *o)
{
    char *out = NULL, *err = NULL;

    if (keepalived_render(c, o, &out, &err) != 0)
        fail_msg("keepalived_render: %s", err);
    assert_non_null(out);
    return out;
}

/* Fails unless <text> holds <line> as a whole line. */
static void has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *s = text; (s = strstr(s, line)); s++) {
        if ((s == text || s[-1] == '\n') && s[n] == '\n')
            return;
    }
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static const char expected_n2[] =
    "# keepalived.conf of member n2 of the cluster \"corp-mfa\", written by mfactl keepalived.\n"
    "# Every member gets its own from the same appliance.conf, --vip, --interface\n"
    "# and --router-id; write them again when cluster.members changes.\n"
    "\n"
    "global_defs {\n"
    "    router_id mfa-n2\n"
    "    enable_script_security\n"
    "    script_user nobody\n"
    "}\n"
    "\n"
    "# HAProxy's API front answers (any HTTP status).\n"
    "vrrp_script mfa_api {\n"
    "    script \"/usr/bin/curl -gsSk -o /dev/null --max-time 1 https://10.0.0.12:443/ready\"\n"
    "    interval 2\n"
    "    timeout 2\n"
    "    fall 2\n"
    "    rise 2\n"
    "}\n"
    "\n"
    "# mfa-balancer answers: its health page.\n"
    "vrrp_script mfa_balancer {\n"
    "    script \"/usr/bin/curl -gfsS -o /dev/null --max-time 1 http://10.0.0.12:8405/\"\n"
    "    interval 2\n"
    "    timeout 2\n"
    "    fall 2\n"
    "    rise 2\n"
    "}\n"
    "\n"
    "vrrp_instance mfa_vip_51 {\n"
    "    state BACKUP\n"
    "    nopreempt\n"
    "    interface eth0\n"
    "    virtual_router_id 51\n"
    "    priority 190\n"
    "    advert_int 1\n"
    "    unicast_src_ip 10.0.0.12\n"
    "    unicast_peer {\n"
    "        10.0.0.11\n"
    "        10.0.0.13\n"
    "    }\n"
    "    # VRRP's simple password: sent in clear in every advertisement. It keeps\n"
    "    # out a misconfigured neighbour, not an attacker on the network.\n"
    "    authentication {\n"
    "        auth_type PASS\n"
    "        auth_pass s3cret\n"
    "    }\n"
    "    virtual_ipaddress {\n"
    "        10.0.0.100/24 dev eth0\n"
    "    }\n"
    "    track_script {\n"
    "        mfa_api\n"
    "        mfa_balancer\n"
    "    }\n"
    "}\n";

static void test_three_members_exact(void **state)
{
    struct keepalived_opts o = { "10.0.0.100/24", "eth0", 51, 0, "s3cret", NULL };
    struct appconf c;
    char *out, *again;

    (void)state;
    load_v4(&c, "n2");
    out = render(&c, &o);
    assert_string_equal(out, expected_n2);
    /* The same input, the same text. */
    again = render(&c, &o);
    assert_string_equal(out, again);
    free(again);
    free(out);
    appconf_free(&c);
}

/* Every member: BACKUP, nopreempt, 200 - 10 per place; the others as peers. */
static void test_each_member(void **state)
{
    struct keepalived_opts o = { "10.0.0.100/24", "eth0", 51, 0, NULL, NULL };
    static const char *peers[3][2] = { { "10.0.0.12", "10.0.0.13" },
                                       { "10.0.0.11", "10.0.0.13" },
                                       { "10.0.0.11", "10.0.0.12" } };
    char id[4], line[64];

    (void)state;
    for (int i = 0; i < 3; i++) {
        struct appconf c;
        char *out;

        snprintf(id, sizeof(id), "n%d", i + 1);
        load_v4(&c, id);
        out = render(&c, &o);
        snprintf(line, sizeof(line), "    priority %d", 200 - 10 * i);
        has_line(out, line);
        has_line(out, "    state BACKUP");
        has_line(out, "    nopreempt");
        snprintf(line, sizeof(line), "    unicast_src_ip 10.0.0.1%d", i + 1);
        has_line(out, line);
        snprintf(line, sizeof(line), "    unicast_peer {\n        %s\n        %s\n    }\n",
                 peers[i][0], peers[i][1]);
        assert_non_null(strstr(out, line));
        assert_null(strstr(out, "authentication"));
        free(out);
        appconf_free(&c);
    }
    assert_int_equal(keepalived_default_priority(15), 50);
    assert_int_equal(keepalived_default_priority(14), 60);
}

static void test_priority_and_peers(void **state)
{
    struct keepalived_opts o = { "10.0.0.100/24", "eth0", 51, 254, NULL, "n3,n1" };
    struct appconf c;
    char *out;

    (void)state;
    load_v4(&c, "n1");
    out = render(&c, &o);
    has_line(out, "    priority 254");
    assert_non_null(strstr(out, "    unicast_peer {\n        10.0.0.13\n    }\n"));
    free(out);
    appconf_free(&c);
}

static void test_ipv6(void **state)
{
    struct keepalived_opts o = { "2001:db8::100/64", "ens3", 9, 0, NULL, NULL };
    struct appconf c;
    char *out;

    (void)state;
    load(&c, "2001:db8::11", "2001:db8::12", "2001:db8::13", "n3", "");
    out = render(&c, &o);
    has_line(out, "    script \"/usr/bin/curl -gsSk -o /dev/null --max-time 1 "
                  "https://[2001:db8::13]:3443/ready\"");
    has_line(out, "    script \"/usr/bin/curl -gfsS -o /dev/null --max-time 1 "
                  "http://[2001:db8::13]:3405/\"");
    has_line(out, "    unicast_src_ip 2001:db8::13");
    has_line(out, "        2001:db8::100/64 dev ens3");
    has_line(out, "    priority 180");
    free(out);
    appconf_free(&c);
}

/* Refusals: the options, the configuration, and a word of each message. */
struct refusal {
    const char *vip, *ifname;
    int router_id, priority;
    const char *password, *peers;
    const char *local, *rest; /* member and extra configuration; NULL: n1, "" */
    const char *a3;           /* n3's address; NULL: 10.0.0.13 */
    const char *says;
};

static const struct refusal refusals[] = {
    { "10.0.0.100", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "no prefix length" },
    { "vip.example/24", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "not a numeric" },
    { "10.0.0.100/33", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "1..32" },
    { "10.0.0.100/0", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "1..32" },
    { "10.0.0.100/024", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "1..32" },
    { "10.0.0.100/24x", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "1..32" },
    { "2001:db8::1/129", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "1..128" },
    { "10.0.0.100/24", "", 51, 0, NULL, NULL, NULL, NULL, NULL, "not an interface name" },
    { "10.0.0.100/24", "eth0 x", 51, 0, NULL, NULL, NULL, NULL, NULL, "not an interface name" },
    { "10.0.0.100/24", "a23456789012345x", 51, 0, NULL, NULL, NULL, NULL, NULL,
      "not an interface name" },
    { "10.0.0.100/24", "eth0", 0, 0, NULL, NULL, NULL, NULL, NULL, "1..255" },
    { "10.0.0.100/24", "eth0", 256, 0, NULL, NULL, NULL, NULL, NULL, "1..255" },
    { "10.0.0.100/24", "eth0", 51, 255, NULL, NULL, NULL, NULL, NULL, "1..254" },
    { "10.0.0.100/24", "eth0", 51, -1, NULL, NULL, NULL, NULL, NULL, "1..254" },
    { "10.0.0.100/24", "eth0", 51, 0, "", NULL, NULL, NULL, NULL, "1..8 characters" },
    { "10.0.0.100/24", "eth0", 51, 0, "123456789", NULL, NULL, NULL, NULL, "1..8 characters" },
    { "10.0.0.100/24", "eth0", 51, 0, "a b", NULL, NULL, NULL, NULL, "printable" },
    { "10.0.0.100/24", "eth0", 51, 0, "a#b", NULL, NULL, NULL, NULL, "printable" },
    { "10.0.0.100/24", "eth0", 51, 0, "a\"b", NULL, NULL, NULL, NULL, "printable" },
    { "2001:db8::100/64", "eth0", 51, 0, "pw", NULL, NULL, NULL, NULL, "no authentication" },
    { "2001:db8::100/64", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "one family" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, NULL, NULL, NULL, "2001:db8::13", "one family" },
    { "10.0.0.11/24", "eth0", 51, 0, NULL, NULL, NULL, NULL, NULL, "n1's own address" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, NULL, NULL, NULL, "10.0.0.11", "different hosts" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, NULL, NULL, "balancer = { enabled = false; };", NULL,
      "balancer.enabled = false" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, "n1,n4", NULL, NULL, NULL, "\"n4\" is not a member" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, "n1,", NULL, NULL, NULL, "\"\" is not a member" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, "n1,n2,n1", NULL, NULL, NULL, "twice" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, "n2,n3", NULL, NULL, NULL, "leaves out this member" },
    { "10.0.0.100/24", "eth0", 51, 0, NULL, "n1", NULL, NULL, NULL, "at least two" },
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const struct refusal *r = &refusals[i];
        struct keepalived_opts o = { r->vip,      r->ifname,   r->router_id,
                                     r->priority, r->password, r->peers };
        static char sentinel[] = "x";
        struct appconf c;
        char *out = sentinel, *err = NULL;

        load(&c, "10.0.0.11", "10.0.0.12", r->a3 ? r->a3 : "10.0.0.13", r->local ? r->local : "n1",
             r->rest ? r->rest : "");
        if (keepalived_render(&c, &o, &out, &err) == 0)
            fail_msg("refusal %zu (%s) was rendered:\n%s", i, r->says, out);
        assert_null(out);
        assert_non_null(err);
        if (!strstr(err, r->says))
            fail_msg("refusal %zu: \"%s\" does not say \"%s\"", i, err, r->says);
        free(err);
        appconf_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_members_exact),
        cmocka_unit_test(test_each_member),
        cmocka_unit_test(test_priority_and_peers),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
