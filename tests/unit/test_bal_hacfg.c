/*
 * haproxy.cfg as mfa-balancer renders it: the lines that matter for routing,
 * TLS and the stats page, the same text for the same input, values HAProxy
 * would misparse refused by key, and every rendered file checked by the real
 * HAProxy (`haproxy -dW -c`: valid and without a warning) when it is
 * installed.
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
#include "hacfg.h"

#define HAPROXY "/usr/sbin/haproxy"

static char dir[] = "/tmp/mfa-hacfg-XXXXXX";
static char pem[64], ca[64], sock[64], cfg[64], srvstate[72];
static bool have_pem;

static int setup(void **state)
{
    char cmd[512];

    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(pem, sizeof(pem), "%s/front.pem", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
    snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", dir);
    /* A self-signed certificate serves as the front end's chain and as the CA. */
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 2 -subj /CN=t -keyout k.pem -out ca.crt >/dev/null 2>&1 && "
             "cat ca.crt k.pem > front.pem",
             dir);
    have_pem = system(cmd) == 0;
    if (!have_pem)
        print_message("openssl could not make a certificate; haproxy -c is skipped\n");
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/*
 * Loads a cluster of n1, n2, n3 at <a1>, <a2>, <a3>, each with its own ports
 * (member i: api i443, stats i404, node i080, ...), this host being <local>.
 * <cluster> goes into the cluster section, <rest> after it.
 */
static void load(struct appconf *c, const char *a1, const char *a2, const char *a3,
                 const char *local, const char *cluster, const char *rest)
{
    const char *addr[] = { a1, a2, a3 };
    char text[4096], *err = NULL;
    size_t n;

    n = (size_t)snprintf(text, sizeof(text), "version = 1;\ncluster = {\n  name = \"t\";\n%s\n",
                         cluster);
    n += (size_t)snprintf(text + n, sizeof(text) - n, "  members = (\n");
    for (int i = 1; i <= 3; i++)
        n += (size_t)snprintf(
            text + n, sizeof(text) - n,
            "    { id = \"n%d\"; address = \"%s\"; ports = { api = %d443; stats = %d404; "
            "health = %d405; balancer_control = %d406; radius = %d812; node = %d080; "
            "node_radius = %d120; replicator = %d500; postgres = %d432; }; }%s\n",
            i, addr[i - 1], i, i, i, i, i, i, i, i, i, i < 3 ? "," : "");
    snprintf(text + n, sizeof(text) - n, "  );\n};\nappliance = { member = \"%s\"; };\n%s\n", local,
             rest);
    memset(c, 0, sizeof(*c));
    if (appconf_load_string(text, "t.conf", c, NULL, NULL, &err) != 0)
        fail_msg("%s\n%s", err, text);
}

static char *render(const struct appconf *c)
{
    /* With the server state file, as the balancer renders it (and seeds it). */
    struct hacfg_paths p = { pem, sock, srvstate };
    FILE *sf;

    snprintf(srvstate, sizeof(srvstate), "%s.state", pem);
    sf = fopen(srvstate, "w");
    assert_non_null(sf);
    fputs("1\n", sf);
    fclose(sf);
    char *out = NULL, *err = NULL;

    if (hacfg_render(c, &p, &out, &err) != 0)
        fail_msg("hacfg_render: %s", err);
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

static size_t count(const char *text, const char *part)
{
    size_t n = 0;

    for (const char *s = text; (s = strstr(s, part)); s++)
        n++;
    return n;
}

/* The real HAProxy must find <text> valid, warnings counting as errors. */
static void haproxy_check(const char *text)
{
    char cmd[256], out[8192];
    size_t n = 0, r;
    FILE *f;
    int rc;

    if (access(HAPROXY, X_OK) != 0 || !have_pem) {
        print_message("%s is not installed or no certificate: haproxy -c skipped\n", HAPROXY);
        return;
    }
    f = fopen(cfg, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), HAPROXY " -dW -c -f %s 2>&1", cfg);
    f = popen(cmd, "r");
    assert_non_null(f);
    while (n < sizeof(out) - 1 && (r = fread(out + n, 1, sizeof(out) - 1 - n, f)) > 0)
        n += r;
    out[n] = '\0';
    rc = pclose(f);
    if (rc != 0 || !strstr(out, "Configuration file is valid"))
        fail_msg("haproxy -c (%d):\n%s\n--- haproxy.cfg:\n%s", rc, out, text);
}

static void test_three_members(void **state)
{
    struct appconf c;
    char *t, line[256];

    (void)state;
    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n2", "",
         "balancer = { stats = { password = \"pa$HOME{x}:!%\"; }; check_inter_ms = 700; "
         "connect_timeout_ms = 300; maxconn = 2000; };");
    t = render(&c);

    assert_true(strncmp(t,
                        "# Written by mfa-balancer from appliance.conf; it rewrites this file.\n",
                        70) == 0);
    assert_null(strstr(t, "master-worker"));
    assert_null(strstr(t, "daemon"));
    assert_null(strstr(t, "chroot"));
    assert_null(strstr(t, "shutdown-sessions"));
    /* global */
    snprintf(line, sizeof(line), "    stats socket %s mode 600 level admin expose-fd listeners",
             sock);
    has_line(t, line);
    has_line(t, "    maxconn 2000");
    has_line(t, "    ssl-default-bind-ciphers ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS");
    has_line(t, "    ssl-default-server-ciphers ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS");
    has_line(t, "    ssl-default-bind-ciphersuites "
                "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
    has_line(t, "    ssl-default-bind-options ssl-min-ver TLSv1.2");
    has_line(t, "    ssl-default-server-options ssl-min-ver TLSv1.2");
    /* defaults */
    has_line(t, "    mode http");
    has_line(t, "    timeout connect 300ms");
    has_line(t, "    timeout client 30000ms");
    has_line(t, "    timeout server 30000ms");
    has_line(t, "    timeout http-request 10s");
    has_line(t, "    option http-buffer-request");
    has_line(t, "    option redispatch 1");
    has_line(t, "    retries 1");
    has_line(t, "    option httplog");
    /* the front end binds this member's (n2's) address and api port */
    snprintf(line, sizeof(line), "    bind 127.0.0.1:2443 ssl crt %s", pem);
    has_line(t, line);
    has_line(t, "    default_backend " HACFG_BACKEND);
    has_line(t, "    http-request set-header X-Forwarded-Proto https");
    has_line(t, "    option forwardfor");
    /* the backend: one server per member on loopback, plain HTTP */
    has_line(t, "backend " HACFG_BACKEND);
    has_line(t, "    balance leastconn");
    has_line(t, "    option httpchk GET /ready");
    has_line(t, "    http-check expect status 200");
    has_line(t, "    default-server inter 700ms fall 2 rise 2");
    has_line(t, "    server n1 127.0.0.1:1080 check");
    has_line(t, "    server n2 127.0.0.1:2080 check");
    has_line(t, "    server n3 127.0.0.1:3080 check");
    assert_int_equal(count(t, "\n    server "), 3);
    assert_null(strstr(t, "ssl verify"));
    /* sticky routing by node id (DESIGN §3) */
    for (int i = 1; i <= 3; i++) {
        snprintf(line, sizeof(line), "    use-server n%d if { path_beg /api/v1/challenges/n%d- }",
                 i, i);
        has_line(t, line);
        snprintf(line, sizeof(line), "    use-server n%d if { req.cook(mfa_sid) -m beg n%d- }", i,
                 i);
        has_line(t, line);
    }
    /* the stats page on n2's stats port, read-only, credentials quoted */
    has_line(t, "frontend stats");
    has_line(t, "    bind 127.0.0.1:2404");
    has_line(t, "    stats enable");
    has_line(t, "    stats uri /");
    has_line(t, "    stats refresh 5s");
    has_line(t, "    stats auth 'admin:pa$HOME{x}:!%'");
    has_line(t, "    stats admin if FALSE");
    has_line(t, "    http-request use-service prometheus-exporter if { path /metrics }");
    has_line(t, "    user 'admin' insecure-password 'pa$HOME{x}:!%'");
    /* the auth rule comes before the exporter, which stats auth does not cover */
    assert_true(strstr(t, "http-request auth realm") < strstr(t, "prometheus-exporter"));

    haproxy_check(t);
    free(t);
    appconf_free(&c);
}

static void test_deterministic(void **state)
{
    static const char rest[] = "balancer = { stats = { password = \"s3cret\"; }; };";
    struct appconf a, b;
    char *t1, *t2, *t3;

    (void)state;
    load(&a, "127.0.0.1", "::1", "10.1.2.3", "n1", "", rest);
    load(&b, "127.0.0.1", "::1", "10.1.2.3", "n1", "", rest);
    t1 = render(&a);
    t2 = render(&a);
    t3 = render(&b);
    assert_string_equal(t1, t2);
    assert_string_equal(t1, t3);
    free(t1);
    free(t2);
    free(t3);
    appconf_free(&a);
    appconf_free(&b);
}

static void test_no_stats_without_password(void **state)
{
    struct appconf c;
    char *t;

    (void)state;
    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n1", "", "");
    t = render(&c);
    assert_null(strstr(t, "frontend stats"));
    assert_null(strstr(t, "userlist"));
    assert_null(strstr(t, "stats auth"));
    assert_null(strstr(t, "prometheus"));
    assert_null(strstr(t, ":1404"));
    /* the runtime API socket is there all the same */
    assert_non_null(strstr(t, "    stats socket "));
    haproxy_check(t);
    free(t);
    appconf_free(&c);
}

/* Renders <c> with the stats user and password replaced; expects a refusal naming <key>. */
static void expect_refused(struct appconf *c, const char *user, const char *pw, const char *key)
{
    struct hacfg_paths p = { pem, sock, NULL };
    char *out = NULL, *err = NULL;

    free(c->balancer.stats_user);
    free(c->balancer.stats_password);
    c->balancer.stats_user = strdup(user);
    c->balancer.stats_password = strdup(pw);
    assert_int_equal(hacfg_render(c, &p, &out, &err), -1);
    assert_null(out);
    assert_non_null(err);
    if (!strstr(err, key))
        fail_msg("error \"%s\" does not name %s", err, key);
    /* a password is never repeated in a message */
    if (strlen(pw) > 2 && strstr(err, pw))
        fail_msg("error \"%s\" shows the password", err);
    for (const char *s = err; *s; s++)
        assert_true((unsigned char)*s >= 0x20 && *s != 0x7f);
    free(err);
}

static void test_bad_credentials(void **state)
{
    static const char *const bad_pw[] = {
        "two words",   "tab\there", "new\nline", "it's",    "say\"hi\"",
        "back\\slash", "hash#tag",  "bell\a",    "del\x7f",
    };
    static const char *const bad_user[] = {
        "ad:min", "ad min", "ad'min", "ad#min", "ad\x01min", ""
    };
    struct appconf c;

    (void)state;
    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n1", "", "");
    for (size_t i = 0; i < sizeof(bad_pw) / sizeof(bad_pw[0]); i++)
        expect_refused(&c, "admin", bad_pw[i], "balancer.stats.password");
    for (size_t i = 0; i < sizeof(bad_user) / sizeof(bad_user[0]); i++)
        expect_refused(&c, bad_user[i], "good", "balancer.stats.user");
    appconf_free(&c);
}

static void test_bad_values(void **state)
{
    struct hacfg_paths p = { pem, sock, NULL };
    struct appconf c;
    char *out = NULL, *err = NULL;

    (void)state;
    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n1", "tls = { ciphers = \"A B\"; };", "");
    assert_int_equal(hacfg_render(&c, &p, &out, &err), -1);
    assert_non_null(strstr(err, "cluster.tls.ciphers"));
    mfa_free(err);
    appconf_free(&c);

    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n1", "", "");
    p.pem = "/etc/my certs/front.pem";
    assert_int_equal(hacfg_render(&c, &p, &out, &err), -1);
    assert_non_null(strstr(err, "certificate file"));
    mfa_free(err);
    p.pem = "/etc/$HOME/front.pem";
    assert_int_equal(hacfg_render(&c, &p, &out, &err), -1);
    mfa_free(err);
    assert_null(out);
    appconf_free(&c);

    /* a CA path is needed, and checked, only when a node is reached over the network */
    load(&c, "10.0.0.1", "127.0.0.1", "127.0.0.1", "n2", "tls = { ca = \"/x/#ca\"; };", "");
    p.pem = pem;
    assert_int_equal(hacfg_render(&c, &p, &out, &err), -1);
    assert_non_null(strstr(err, "cluster.tls.ca"));
    mfa_free(err);
    appconf_free(&c);
}

static void test_ipv6(void **state)
{
    struct appconf c;
    char *t, line[256];

    (void)state;
    load(&c, "::1", "::1", "127.0.0.1", "n1", "",
         "balancer = { stats = { password = \"s3cret\"; }; };");
    t = render(&c);
    snprintf(line, sizeof(line), "    bind [::1]:1443 ssl crt %s", pem);
    has_line(t, line);
    has_line(t, "    bind [::1]:1404");
    has_line(t, "    server n1 [::1]:1080 check");
    has_line(t, "    server n2 [::1]:2080 check");
    has_line(t, "    server n3 127.0.0.1:3080 check");
    assert_null(strstr(t, "ssl verify"));
    haproxy_check(t);
    free(t);
    appconf_free(&c);
}

/* balancer.address: the API front on every address (a floating one too). */
static void test_api_on_any_address(void **state)
{
    struct appconf c;
    char *t, line[256];

    (void)state;
    load(&c, "127.0.0.1", "127.0.0.1", "127.0.0.1", "n1", "",
         "balancer = { address = \"0.0.0.0\"; };");
    t = render(&c);
    snprintf(line, sizeof(line), "    bind 0.0.0.0:1443 ssl crt %s", pem);
    has_line(t, line);
    haproxy_check(t);
    free(t);
    appconf_free(&c);
}

static void test_remote_members(void **state)
{
    struct appconf c;
    char *t, cluster[256], line[512];

    (void)state;
    snprintf(cluster, sizeof(cluster), "tls = { ca = \"%s\"; min_version = \"1.3\"; };", ca);
    load(&c, "10.0.0.1", "2001:db8::2", "127.0.0.1", "n1", cluster, "");
    t = render(&c);
    snprintf(line, sizeof(line),
             "    server n1 10.0.0.1:1080 check ssl verify required ca-file %s crt %s", ca, pem);
    has_line(t, line);
    snprintf(line, sizeof(line),
             "    server n2 [2001:db8::2]:2080 check ssl verify required ca-file %s crt %s", ca,
             pem);
    has_line(t, line);
    /* a node on loopback stays plain HTTP */
    has_line(t, "    server n3 127.0.0.1:3080 check");
    has_line(t, "    ssl-default-bind-options ssl-min-ver TLSv1.3");
    has_line(t, "    ssl-default-server-options ssl-min-ver TLSv1.3");
    haproxy_check(t);
    free(t);
    appconf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_members),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_no_stats_without_password),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_api_on_any_address),
        cmocka_unit_test(test_remote_members),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
