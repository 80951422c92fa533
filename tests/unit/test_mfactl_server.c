/*
 * mfactl drain, ready and maint (appliance/server_cmd.c): reading a
 * balancer's GET /status (docs/balancer.md) into per-server states, with
 * what a hostile reply may not do (control characters, oversize fields,
 * wrong types); the balancers' agreed state for `mfactl status`; the
 * classification of a POST /servers/<id> answer; the exit code from the
 * per-balancer outcomes; a node's live counts; and ctl_sanitize().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster_cmd.h"
#include "ctl.h"
#include "server_cmd.h"

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

static void contains(const char *text, const char *part)
{
    if (!text || !strstr(text, part))
        fail_msg("\"%s\" lacks \"%s\"", text ? text : "(null)", part);
}

/* Parses <text> as a balancer's /status reply into *v; fails the test on error. */
static void view_of(const char *text, struct server_view *v)
{
    json_t *j = parse(text);
    char *err = NULL;

    if (server_cmd_parse_status(j, v, &err) < 0)
        fail_msg("%s: %s", text, err);
    json_decref(j);
}

static void status_bad(const char *text, const char *why)
{
    struct server_view v;
    json_t *j = parse(text);
    char *err = NULL;

    assert_int_equal(server_cmd_parse_status(j, &v, &err), -1);
    contains(err, why);
    free(err);
    json_decref(j);
}

/* ---- GET /status ---------------------------------------------------------- */

/* The example of docs/balancer.md, with a second server. */
static void test_status_reply(void **state)
{
    struct server_view v;
    const struct server_entry *e;

    (void)state;
    view_of("{\"member\": \"n1\", \"haproxy\": {\"running\": true, \"pid\": 4242, \"reloads\": 0},"
            " \"servers\": [{\"id\": \"n1\", \"state\": \"ready\", \"status\": \"UP\","
            " \"current_sessions\": 0},"
            " {\"id\": \"n2\", \"state\": \"drain\", \"status\": \"DRAIN\"}]}",
            &v);
    assert_int_equal(v.nservers, 2);
    e = server_cmd_find(&v, "n2");
    assert_non_null(e);
    assert_string_equal(e->state, "drain");
    assert_string_equal(e->status, "DRAIN");
    assert_string_equal(server_cmd_find(&v, "n1")->state, "ready");
    assert_null(server_cmd_find(&v, "n3"));
    assert_null(server_cmd_find(&v, "n"));

    /* "status" is HAProxy's view and optional; no servers is a valid answer. */
    view_of("{\"servers\": [{\"id\": \"n3\", \"state\": \"maint\", \"status\": null}]}", &v);
    assert_string_equal(v.servers[0].status, "");
    view_of("{\"servers\": []}", &v);
    assert_int_equal(v.nservers, 0);
}

static void test_status_reply_rejects(void **state)
{
    char big[1024];
    size_t len;

    (void)state;
    status_bad("[]", "not a JSON object");
    status_bad("{}", "\"servers\" is not an array");
    status_bad("{\"servers\": {\"n1\": \"ready\"}}", "\"servers\" is not an array");
    status_bad("{\"servers\": [\"n1\"]}", "servers[0] is not an object");
    status_bad("{\"servers\": [{\"id\": \"n1\", \"state\": \"ready\"}, {\"state\": \"drain\"}]}",
               "servers[1]: \"id\" is missing");
    status_bad("{\"servers\": [{\"id\": \"\", \"state\": \"ready\"}]}",
               "servers[0]: \"id\" is empty");
    status_bad("{\"servers\": [{\"id\": \"n1\"}]}", "\"state\" is missing");
    status_bad("{\"servers\": [{\"id\": \"n1\", \"state\": 1}]}", "\"state\" is not a string");
    status_bad("{\"servers\": [{\"id\": \"n1\", \"state\": \"a-state-far-too-long\"}]}",
               "\"state\" is longer than 15 characters");
    status_bad("{\"servers\": [{\"id\": \"n12345678901234567\", \"state\": \"ready\"}]}",
               "\"id\" is longer than 16 characters");

    /* More servers than a cluster may have members. */
    len = (size_t)snprintf(big, sizeof(big), "{\"servers\": [");
    for (int i = 0; i <= APPCONF_MAX_MEMBERS; i++)
        len += (size_t)snprintf(big + len, sizeof(big) - len,
                                "%s{\"id\": \"n%d\", \"state\": \"ready\"}", i ? "," : "", i);
    snprintf(big + len, sizeof(big) - len, "]}");
    status_bad(big, "more than 16 servers");
}

/* An escape sequence in a reply must not reach the operator's terminal. */
static void test_status_reply_sanitized(void **state)
{
    struct server_view v;

    (void)state;
    view_of("{\"servers\": [{\"id\": \"n\\u001b[2J\", \"state\": \"re\\u0007dy\","
            " \"status\": \"U\\u009bP\\u007f\"}]}",
            &v);
    assert_string_equal(v.servers[0].id, "n?[2J");
    assert_string_equal(v.servers[0].state, "re?dy");
    assert_string_equal(v.servers[0].status, "U?P?");
}

static void test_sanitize(void **state)
{
    char s1[] = "ok \xc3\xa9t\xc3\xa9", s2[] = "a\r\nb\tc\x1b]0;x\x07", s3[] = "\xc2\x85x\xc2\xa0";
    char s4[] = "";

    (void)state;
    assert_string_equal(ctl_sanitize(s1), "ok \xc3\xa9t\xc3\xa9"); /* UTF-8 text stays */
    assert_string_equal(ctl_sanitize(s2), "a??b?c?]0;x?");
    assert_string_equal(ctl_sanitize(s3), "?x\xc2\xa0"); /* C1 NEL goes, NBSP stays */
    assert_string_equal(ctl_sanitize(s4), "");
}

/* ---- the balancers' agreed state --------------------------------------------- */

static void test_agreed_state(void **state)
{
    struct server_view v[3];
    bool up[3] = { true, true, true };

    (void)state;
    view_of("{\"servers\": [{\"id\": \"n1\", \"state\": \"ready\"},"
            " {\"id\": \"n2\", \"state\": \"drain\"}]}",
            &v[0]);
    view_of("{\"servers\": [{\"id\": \"n1\", \"state\": \"ready\"},"
            " {\"id\": \"n2\", \"state\": \"ready\"}]}",
            &v[1]);
    view_of("{\"servers\": [{\"id\": \"n1\", \"state\": \"ready\"}]}", &v[2]);

    assert_string_equal(server_cmd_agreed_state(v, up, 3, "n1"), "ready");
    assert_string_equal(server_cmd_agreed_state(v, up, 3, "n2"), SERVER_STATE_MIXED);
    /* A balancer that does not list the server has no say. */
    assert_null(server_cmd_agreed_state(v, up, 3, "n3"));
    /* Nor has one that did not answer. */
    up[1] = false;
    assert_string_equal(server_cmd_agreed_state(v, up, 3, "n2"), "drain");
    up[0] = false;
    assert_null(server_cmd_agreed_state(v, up, 3, "n2"));
    up[2] = false;
    assert_null(server_cmd_agreed_state(v, up, 3, "n1"));
}

/* ---- POST /servers/<id> --------------------------------------------------------- */

static void test_post_outcome(void **state)
{
    json_t *drain = parse("{\"id\": \"n2\", \"state\": \"drain\"}");
    json_t *ready = parse("{\"id\": \"n2\", \"state\": \"ready\"}");
    json_t *err404 = parse("{\"error\": \"unknown_member\", \"detail\": \"n9\"}");
    json_t *err503 = parse("{\"error\": \"haproxy_down\", \"detail\": \"no answer\"}");
    json_t *nostate = parse("{\"id\": \"n2\"}");

    (void)state;
    assert_int_equal(server_cmd_post_outcome(200, drain, "drain"), SERVER_TOOK);
    /* 2xx but not the state asked for, or not saying: not taken. */
    assert_int_equal(server_cmd_post_outcome(200, ready, "drain"), SERVER_FAILED);
    assert_int_equal(server_cmd_post_outcome(200, nostate, "drain"), SERVER_FAILED);
    assert_int_equal(server_cmd_post_outcome(200, NULL, "drain"), SERVER_FAILED);
    /* 4xx: the balancer did not change anything. */
    assert_int_equal(server_cmd_post_outcome(404, err404, "drain"), SERVER_REFUSED);
    assert_int_equal(server_cmd_post_outcome(400, NULL, "drain"), SERVER_REFUSED);
    /* 5xx or no answer: unknown whether it took. */
    assert_int_equal(server_cmd_post_outcome(503, err503, "drain"), SERVER_FAILED);
    assert_int_equal(server_cmd_post_outcome(0, NULL, "drain"), SERVER_FAILED);
    assert_int_equal(server_cmd_post_outcome(302, drain, "drain"), SERVER_FAILED);
    json_decref(drain);
    json_decref(ready);
    json_decref(err404);
    json_decref(err503);
    json_decref(nostate);
}

/* ---- the exit code ------------------------------------------------------------------ */

static void test_exit_code(void **state)
{
    static const struct {
        enum server_outcome o[4];
        size_t n;
        int want;
    } cases[] = {
        /* every balancer that answered took it; one down does not matter */
        { { SERVER_TOOK, SERVER_TOOK, SERVER_TOOK }, 3, CLUSTER_EXIT_OK },
        { { SERVER_TOOK, SERVER_NOT_ASKED, SERVER_TOOK }, 3, CLUSTER_EXIT_OK },
        { { SERVER_NOT_ASKED, SERVER_TOOK }, 2, CLUSTER_EXIT_OK },
        /* no balancer answered */
        { { SERVER_NOT_ASKED, SERVER_NOT_ASKED, SERVER_NOT_ASKED }, 3, CLUSTER_EXIT_NO_MEMBER },
        { { SERVER_TOOK }, 0, CLUSTER_EXIT_NO_MEMBER },
        /* one refused or failed after others took it */
        { { SERVER_TOOK, SERVER_REFUSED, SERVER_TOOK }, 3, CLUSTER_EXIT_FAILED },
        { { SERVER_TOOK, SERVER_FAILED, SERVER_NOT_ASKED }, 3, CLUSTER_EXIT_FAILED },
        /* every one asked refused: nothing was changed */
        { { SERVER_REFUSED, SERVER_NOT_ASKED, SERVER_REFUSED }, 3, CLUSTER_EXIT_REFUSED },
        /* a failure may have changed something: not "refused" */
        { { SERVER_REFUSED, SERVER_FAILED }, 2, CLUSTER_EXIT_FAILED },
        { { SERVER_FAILED, SERVER_FAILED, SERVER_NOT_ASKED }, 3, CLUSTER_EXIT_FAILED },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = server_cmd_exit_code(cases[i].o, cases[i].n);

        if (got != cases[i].want)
            fail_msg("case %zu: exit %d, want %d", i, got, cases[i].want);
    }
}

/* ---- the node's /status ------------------------------------------------------------- */

static void counts_bad(const char *text, const char *why)
{
    json_t *j = parse(text);
    int64_t c = -1, s = -1;
    char *err = NULL;

    assert_int_equal(server_cmd_node_counts(j, &c, &s, &err), -1);
    contains(err, why);
    free(err);
    json_decref(j);
}

static void test_node_counts(void **state)
{
    json_t *j = parse("{\"role\": \"standby\", \"challenges\": 3, \"sessions\": 0,"
                      " \"auth_log_pending\": 7}");
    int64_t c = -1, s = -1;
    char *err = NULL;

    (void)state;
    assert_int_equal(server_cmd_node_counts(j, &c, &s, &err), 0);
    assert_int_equal(c, 3);
    assert_int_equal(s, 0);
    json_decref(j);

    counts_bad("[1, 2]", "not a JSON object");
    counts_bad("{\"sessions\": 0}", "\"challenges\" is not an integer >= 0");
    counts_bad("{\"challenges\": 0}", "\"sessions\" is not an integer >= 0");
    counts_bad("{\"challenges\": \"0\", \"sessions\": 0}", "\"challenges\"");
    counts_bad("{\"challenges\": 0.0, \"sessions\": 0}", "\"challenges\"");
    counts_bad("{\"challenges\": 0, \"sessions\": -1}", "\"sessions\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_reply),
        cmocka_unit_test(test_status_reply_rejects),
        cmocka_unit_test(test_status_reply_sanitized),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_agreed_state),
        cmocka_unit_test(test_post_outcome),
        cmocka_unit_test(test_exit_code),
        cmocka_unit_test(test_node_counts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
