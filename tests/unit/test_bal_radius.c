/*
 * The RADIUS front's routing rules (balancer/radius_route.c), without
 * sockets: State to its node, retransmissions to the node of the first
 * copy, least outstanding with round-robin ties, the drain, maint, down and
 * unreachable rules, answers matched to their requests, and the
 * retransmission table's expiry, growth and bound.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "radius_route.h"

#define T0     1000000 /* an arbitrary monotonic start, in ms */
#define WINDOW 30000

static const char *const three[] = { "n1", "n2", "n3" };

/* A NAS at 192.0.2.<host>:<port>. */
static struct sockaddr_in nas4(int host, int port)
{
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    char text[32];

    snprintf(text, sizeof(text), "192.0.2.%d", host);
    assert_int_equal(inet_pton(AF_INET, text, &in.sin_addr), 1);
    return in;
}

/* The duplicate key of a request <n> from 192.0.2.1:<port> (id and authenticator from <n>). */
static struct rroute_key key_n(int n, int port)
{
    struct sockaddr_in in = nas4(1, port);
    uint8_t auth[16];
    struct rroute_key k;

    for (int i = 0; i < 16; i++)
        auth[i] = (uint8_t)(n * 31 + i);
    rroute_key_make(&k, (const struct sockaddr *)&in, (uint8_t)n, auth);
    return k;
}

/* Nodes <ids>, all ready and answering. */
static void setup(struct rroute *r, const char *const *ids, size_t n, uint32_t max)
{
    char *err = NULL;

    assert_int_equal(rroute_init(r, ids, n, WINDOW, max, &err), 0);
    for (size_t i = 0; i < n; i++)
        r->nodes[i].answers = true;
}

static int route(struct rroute *r, int n, int state_node, uint64_t now, enum rroute_why *why)
{
    struct rroute_key k = key_n(n, 40000);

    return rroute_request(r, &k, state_node, now, why);
}

static uint64_t outstanding_sum(const struct rroute *r)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < r->nnodes; i++)
        sum += r->nodes[i].outstanding;
    return sum;
}

static void answer(struct rroute *r, int node, int n)
{
    struct sockaddr_in in = nas4(1, 40000);

    assert_true(rroute_answered(r, (size_t)node, (const struct sockaddr *)&in, (uint8_t)n));
}

static void test_init_refuses(void **state)
{
    static const char *const bad[] = { "n1", "N2" };
    struct rroute r;
    char *err = NULL;

    (void)state;
    assert_int_equal(rroute_init(&r, three, 0, WINDOW, 0, &err), -1);
    assert_non_null(strstr(err, "1 to 16 nodes"));
    free(err);
    err = NULL;
    assert_int_equal(rroute_init(&r, bad, 2, WINDOW, 0, &err), -1);
    assert_non_null(strstr(err, "\"N2\" is not a node id"));
    free(err);
}

static void test_state_names_a_member(void **state)
{
    static const char *const ids[] = { "n1", "n10", "abcdefghijklmnop" };
    static const struct {
        const char *value;
        int want;
    } cases[] = {
        { "n1-AAAAAAAAAAAAAAAAAAAAAA", 0 },
        { "n10-AAAAAAAAAAAAAAAAAAAAAA", 1 },
        { "n1-", 0 }, /* the prefix is what counts; the node judges the rest */
        { "abcdefghijklmnop-x", 2 },
        { "abcdefghijklmnopq-x", -1 },       /* 17 characters: no node id */
        { "n2-AAAAAAAAAAAAAAAAAAAAAA", -1 }, /* not a member */
        { "N1-AAAAAAAAAAAAAAAAAAAAAA", -1 },
        { "-n1", -1 },
        { "n1", -1 },
        { "n1_x-", -1 },
        { "", -1 },
    };
    struct rroute r;

    (void)state;
    setup(&r, ids, 3, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *v = cases[i].value;

        if (rroute_state_node(&r, (const uint8_t *)v, strlen(v)) != cases[i].want)
            fail_msg("State \"%s\": expected %d", v, cases[i].want);
    }
    /* Not NUL-terminated: the value's length bounds the search. */
    assert_int_equal(rroute_state_node(&r, (const uint8_t *)"n10-", 2), -1);
    assert_int_equal(rroute_state_node(&r, (const uint8_t *)"n10-", 3), -1);
    assert_int_equal(rroute_state_node(&r, (const uint8_t *)"n10-", 4), 1);
    /* A NUL inside the prefix is no node id. */
    assert_int_equal(rroute_state_node(&r, (const uint8_t *)"n\0-x", 4), -1);
    rroute_free(&r);
}

static void test_key_maps_ipv4(void **state)
{
    struct sockaddr_in in = nas4(7, 1812);
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(1812) };
    uint8_t auth[16] = { 1, 2, 3 };
    struct rroute_key a, b;

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.7", &in6.sin6_addr), 1);
    rroute_key_make(&a, (const struct sockaddr *)&in, 9, auth);
    rroute_key_make(&b, (const struct sockaddr *)&in6, 9, auth);
    assert_memory_equal(a.addr, b.addr, 16);
    assert_int_equal(a.port, 1812);
    assert_int_equal(b.port, 1812);
    assert_int_equal(a.id, 9);
    assert_memory_equal(a.auth, auth, 16);
}

static void test_round_robin_among_ties(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    /* Answered at once: every node has 0 outstanding, so the turn goes round. */
    for (int n = 0; n < 9; n++) {
        int to = route(&r, n, -1, T0, &why);

        assert_int_equal(to, n % 3);
        assert_int_equal(why, RROUTE_NEW);
        answer(&r, to, n);
    }
    assert_int_equal(outstanding_sum(&r), 0);
    /* Unanswered: the counts stay level, so still round. */
    for (int n = 10; n < 16; n++)
        assert_int_equal(route(&r, n, -1, T0, &why), (n - 10) % 3);
    assert_int_equal(r.nodes[0].outstanding, 2);
    rroute_free(&r);
}

static void test_least_outstanding_wins(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    /* n3 is down a while: n1 and n2 get two each, unanswered. */
    r.nodes[2].answers = false;
    for (int n = 0; n < 4; n++)
        assert_int_equal(route(&r, n, -1, T0, &why), n % 2);
    r.nodes[2].answers = true;
    assert_int_equal(r.nodes[0].outstanding, 2);
    assert_int_equal(r.nodes[1].outstanding, 2);
    assert_int_equal(r.nodes[2].outstanding, 0);
    /* Now n3 takes new work until it is level with the others. */
    assert_int_equal(route(&r, 20, -1, T0, &why), 2);
    assert_int_equal(route(&r, 21, -1, T0, &why), 2);
    assert_int_equal(r.nodes[2].outstanding, 2);
    /* Level again: the round goes on after the last pick. */
    assert_int_equal(route(&r, 22, -1, T0, &why), 0);
    assert_int_equal(route(&r, 23, -1, T0, &why), 1);
    rroute_free(&r);
}

static void test_state_goes_to_its_node(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    for (int n = 0; n < 5; n++) {
        assert_int_equal(route(&r, n, 1, T0, &why), 1);
        assert_int_equal(why, RROUTE_STATE);
    }
    assert_int_equal(r.nodes[1].outstanding, 5);
    /* An index past the members is no State. */
    assert_int_equal(route(&r, 9, 7, T0, &why), 0);
    assert_int_equal(why, RROUTE_NEW);
    rroute_free(&r);
}

static void test_retransmission_sticks(void **state)
{
    struct rroute r;
    enum rroute_why why;
    int first;

    (void)state;
    setup(&r, three, 3, 0);
    first = route(&r, 1, -1, T0, &why);
    assert_int_equal(first, 0);
    /* Others come in between; the copy still goes where the first went. */
    route(&r, 2, -1, T0, &why);
    route(&r, 3, -1, T0, &why);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(route(&r, 1, -1, T0 + 1000 * (uint64_t)i, &why), first);
        assert_int_equal(why, RROUTE_RETRANSMIT);
    }
    assert_int_equal(rroute_entries(&r), 3);
    assert_int_equal(r.nodes[0].outstanding, 1);
    /* Answered, then the answer was lost: the copy counts as outstanding again. */
    answer(&r, 0, 1);
    assert_int_equal(r.nodes[0].outstanding, 0);
    assert_int_equal(route(&r, 1, -1, T0 + 5000, &why), 0);
    assert_int_equal(r.nodes[0].outstanding, 1);
    /* Same id and NAS but another authenticator: a new request (RFC 5080 §2.2.2). */
    {
        struct rroute_key k = key_n(1, 40000);

        k.auth[0] ^= 1;
        rroute_request(&r, &k, -1, T0, &why);
        assert_int_equal(why, RROUTE_NEW);
        assert_int_equal(rroute_entries(&r), 4);
    }
    /* Another source port is another NAS socket: a new request too. */
    {
        struct rroute_key k = key_n(1, 40001);

        rroute_request(&r, &k, -1, T0, &why);
        assert_int_equal(why, RROUTE_NEW);
    }
    rroute_free(&r);
}

static void test_retransmission_of_a_dead_node_moves(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    assert_int_equal(route(&r, 1, -1, T0, &why), 0);
    r.nodes[0].answers = false;
    assert_int_equal(route(&r, 1, -1, T0 + 3000, &why), 1);
    assert_int_equal(why, RROUTE_REROUTED);
    /* The request now counts on its new node, and further copies follow it there. */
    assert_int_equal(r.nodes[0].outstanding, 0);
    assert_int_equal(r.nodes[1].outstanding, 1);
    r.nodes[0].answers = true;
    assert_int_equal(route(&r, 1, -1, T0 + 6000, &why), 1);
    assert_int_equal(why, RROUTE_RETRANSMIT);
    assert_int_equal(rroute_entries(&r), 1);
    rroute_free(&r);
}

static void test_drain_takes_only_its_own(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    assert_int_equal(route(&r, 1, -1, T0, &why), 0); /* n1 has a request */
    r.nodes[0].admin = SERVER_DRAIN;
    assert_int_equal(rroute_mode(&r, 0, T0), RROUTE_DRAIN);
    for (int n = 10; n < 20; n++)
        assert_int_not_equal(route(&r, n, -1, T0, &why), 0);
    assert_int_equal(route(&r, 30, 0, T0, &why), 0);
    assert_int_equal(why, RROUTE_STATE);
    assert_int_equal(route(&r, 1, -1, T0, &why), 0);
    assert_int_equal(why, RROUTE_RETRANSMIT);
    rroute_free(&r);
}

static void test_maint_down_unreachable_take_nothing(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    assert_int_equal(route(&r, 1, 1, T0, &why), 1);

    r.nodes[1].admin = SERVER_MAINT;
    assert_int_equal(rroute_mode(&r, 1, T0), RROUTE_MAINT);
    assert_int_not_equal(route(&r, 2, 1, T0, &why), 1);
    assert_int_equal(why, RROUTE_REROUTED); /* that node answers "start again" */
    assert_int_not_equal(route(&r, 1, 1, T0, &why), 1);
    assert_int_equal(why, RROUTE_REROUTED);

    r.nodes[1].admin = SERVER_READY;
    r.nodes[1].answers = false;
    assert_int_equal(rroute_mode(&r, 1, T0), RROUTE_DOWN);
    assert_int_not_equal(route(&r, 3, 1, T0, &why), 1);
    assert_int_equal(why, RROUTE_REROUTED);

    /* A refusal holds it down for RROUTE_HOLD_MS even while its checks pass. */
    r.nodes[1].answers = true;
    rroute_unreachable(&r, 1, T0);
    assert_int_equal(rroute_mode(&r, 1, T0), RROUTE_UNREACHABLE);
    assert_int_equal(rroute_mode(&r, 1, T0 + RROUTE_HOLD_MS - 1), RROUTE_UNREACHABLE);
    assert_int_not_equal(route(&r, 4, 1, T0 + 1, &why), 1);
    assert_int_equal(why, RROUTE_REROUTED);
    for (int n = 10; n < 16; n++)
        assert_int_not_equal(route(&r, n, -1, T0 + 2, &why), 1);
    assert_int_equal(rroute_mode(&r, 1, T0 + RROUTE_HOLD_MS), RROUTE_READY);
    assert_int_equal(route(&r, 5, 1, T0 + RROUTE_HOLD_MS, &why), 1);
    assert_int_equal(why, RROUTE_STATE);
    /* Maint wins over everything, and down over a hold-down. */
    r.nodes[1].admin = SERVER_MAINT;
    r.nodes[1].answers = false;
    rroute_unreachable(&r, 1, T0 + RROUTE_HOLD_MS);
    assert_int_equal(rroute_mode(&r, 1, T0 + RROUTE_HOLD_MS), RROUTE_MAINT);
    r.nodes[1].admin = SERVER_DRAIN;
    assert_int_equal(rroute_mode(&r, 1, T0 + RROUTE_HOLD_MS), RROUTE_DOWN);
    rroute_free(&r);
}

static void test_no_node_remembers_nothing(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    r.nodes[0].admin = SERVER_MAINT;
    r.nodes[1].admin = SERVER_DRAIN;
    r.nodes[2].answers = false;
    assert_int_equal(route(&r, 1, -1, T0, &why), -1);
    assert_int_equal(route(&r, 2, 0, T0, &why), -1);
    assert_int_equal(rroute_entries(&r), 0);
    assert_int_equal(outstanding_sum(&r), 0);
    /* The drained node still takes its own State. */
    assert_int_equal(route(&r, 3, 1, T0, &why), 1);
    /* A retransmission whose node and every other is gone: dropped, still remembered. */
    r.nodes[1].admin = SERVER_MAINT;
    assert_int_equal(route(&r, 3, 1, T0, &why), -1);
    assert_int_equal(rroute_entries(&r), 1);
    rroute_free(&r);
}

static void test_window_expires_and_decays(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    for (int n = 0; n < 6; n++)
        route(&r, n, 0, T0 + (uint64_t)n * 1000, &why); /* all on n1, unanswered */
    answer(&r, 0, 5);
    assert_int_equal(r.nodes[0].outstanding, 5);
    rroute_expire(&r, T0 + WINDOW - 1);
    assert_int_equal(rroute_entries(&r), 6);
    rroute_expire(&r, T0 + WINDOW);
    assert_int_equal(rroute_entries(&r), 5);
    assert_int_equal(r.nodes[0].outstanding, 4);
    rroute_expire(&r, T0 + WINDOW + 4000);
    assert_int_equal(rroute_entries(&r), 1);
    assert_int_equal(r.nodes[0].outstanding, 0); /* the one left was answered */
    /* Past the window a copy is a new request: the least loaded node takes it. */
    assert_int_equal(route(&r, 0, -1, T0 + WINDOW + 5000, &why), 0);
    assert_int_equal(why, RROUTE_NEW);
    rroute_expire(&r, T0 + 10 * WINDOW);
    assert_int_equal(rroute_entries(&r), 0);
    assert_int_equal(outstanding_sum(&r), 0);
    rroute_free(&r);
}

static void test_answers_match_their_request(void **state)
{
    struct rroute r;
    enum rroute_why why;
    struct sockaddr_in other = nas4(2, 40000);

    (void)state;
    setup(&r, three, 3, 0);
    assert_int_equal(route(&r, 7, 0, T0, &why), 0);
    /* Another node, another NAS, another id: not that request. */
    assert_false(rroute_answered(&r, 1, (const struct sockaddr *)&other, 7));
    assert_false(rroute_answered(&r, 0, (const struct sockaddr *)&other, 7));
    {
        struct sockaddr_in in = nas4(1, 40000);

        assert_false(rroute_answered(&r, 0, (const struct sockaddr *)&in, 8));
        assert_false(rroute_answered(&r, 1, (const struct sockaddr *)&in, 7));
    }
    answer(&r, 0, 7);
    /* Answered twice (the node's duplicate cache): counted once. */
    {
        struct sockaddr_in in = nas4(1, 40000);

        assert_false(rroute_answered(&r, 0, (const struct sockaddr *)&in, 7));
    }
    assert_int_equal(r.nodes[0].outstanding, 0);
    rroute_free(&r);
}

static void test_identifier_reuse_matches_the_newest(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 0);
    /* The NAS cycles through its 256 ids: id 5 comes back with a new authenticator. */
    for (int round = 0; round < 3; round++) {
        struct rroute_key k = key_n(5, 40000);

        k.auth[15] = (uint8_t)round;
        assert_int_equal(rroute_request(&r, &k, 0, T0, &why), 0);
        answer(&r, 0, 5);
        assert_int_equal(r.nodes[0].outstanding, 0);
    }
    assert_int_equal(rroute_entries(&r), 3);
    rroute_free(&r);
}

static void test_table_grows_and_keeps_every_entry(void **state)
{
    struct rroute r;
    enum rroute_why why;
    int where[5000];

    (void)state;
    setup(&r, three, 3, 8192);
    for (int n = 0; n < 5000; n++) {
        struct rroute_key k = key_n(n & 0xff, 10000 + n);

        where[n] = rroute_request(&r, &k, -1, T0, &why);
        assert_int_equal(why, RROUTE_NEW);
    }
    assert_int_equal(rroute_entries(&r), 5000);
    assert_int_equal(r.evicted, 0);
    assert_int_equal(outstanding_sum(&r), 5000);
    for (int n = 0; n < 5000; n++) {
        struct rroute_key k = key_n(n & 0xff, 10000 + n);

        assert_int_equal(rroute_request(&r, &k, -1, T0, &why), where[n]);
        assert_int_equal(why, RROUTE_RETRANSMIT);
    }
    /* Every answer still finds its request after the moves. */
    for (int n = 0; n < 5000; n++) {
        struct sockaddr_in in = nas4(1, 10000 + n);

        assert_true(
            rroute_answered(&r, (size_t)where[n], (const struct sockaddr *)&in, (uint8_t)n));
    }
    assert_int_equal(outstanding_sum(&r), 0);
    rroute_free(&r);
}

static void test_table_bound_forgets_the_oldest(void **state)
{
    struct rroute r;
    enum rroute_why why;

    (void)state;
    setup(&r, three, 3, 1500); /* rounded down to 1024 */
    assert_int_equal(r.max_entries, RROUTE_TABLE_MIN);
    for (int n = 0; n < 1500; n++) {
        struct rroute_key k = key_n(n & 0xff, 10000 + n);

        rroute_request(&r, &k, -1, T0 + (uint64_t)n, &why);
    }
    assert_int_equal(rroute_entries(&r), 1024);
    assert_int_equal(r.evicted, 1500 - 1024);
    assert_int_equal(outstanding_sum(&r), 1024);
    /* The newest are kept; the oldest are new requests again. */
    {
        struct rroute_key k = key_n(1499 & 0xff, 10000 + 1499);

        rroute_request(&r, &k, -1, T0 + 2000, &why);
        assert_int_equal(why, RROUTE_RETRANSMIT);
        k = key_n(0, 10000);
        rroute_request(&r, &k, -1, T0 + 2000, &why);
        assert_int_equal(why, RROUTE_NEW);
    }
    assert_int_equal(rroute_entries(&r), 1024);
    rroute_expire(&r, T0 + 2000 + WINDOW);
    assert_int_equal(rroute_entries(&r), 0);
    assert_int_equal(outstanding_sum(&r), 0);
    rroute_free(&r);
}

static void test_mode_names(void **state)
{
    (void)state;
    assert_string_equal(rroute_mode_name(RROUTE_READY), "ready");
    assert_string_equal(rroute_mode_name(RROUTE_DRAIN), "drain");
    assert_string_equal(rroute_mode_name(RROUTE_DOWN), "down");
    assert_string_equal(rroute_mode_name(RROUTE_UNREACHABLE), "unreachable");
    assert_string_equal(rroute_mode_name(RROUTE_MAINT), "maint");
    assert_string_equal(rroute_mode_name(RROUTE_MODE_COUNT_), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_refuses),
        cmocka_unit_test(test_state_names_a_member),
        cmocka_unit_test(test_key_maps_ipv4),
        cmocka_unit_test(test_round_robin_among_ties),
        cmocka_unit_test(test_least_outstanding_wins),
        cmocka_unit_test(test_state_goes_to_its_node),
        cmocka_unit_test(test_retransmission_sticks),
        cmocka_unit_test(test_retransmission_of_a_dead_node_moves),
        cmocka_unit_test(test_drain_takes_only_its_own),
        cmocka_unit_test(test_maint_down_unreachable_take_nothing),
        cmocka_unit_test(test_no_node_remembers_nothing),
        cmocka_unit_test(test_window_expires_and_decays),
        cmocka_unit_test(test_answers_match_their_request),
        cmocka_unit_test(test_identifier_reuse_matches_the_newest),
        cmocka_unit_test(test_table_grows_and_keeps_every_entry),
        cmocka_unit_test(test_table_bound_forgets_the_oldest),
        cmocka_unit_test(test_mode_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
