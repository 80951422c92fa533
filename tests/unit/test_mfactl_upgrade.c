/*
 * mfactl upgrade-plan's decision (appliance/upgrade_plan.c): the order of a
 * rolling upgrade (witnesses, standbys least advanced first, switchover to
 * the most advanced, the old primary last), its refusals (a member down, no
 * writable primary, a standby not streaming, a node not ready or on an
 * incompatible schema, no standby at all) and reading a node's /status.
 * Each test breaks when its rule does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upgrade_plan.h"

#define SMIN 1
#define SMAX 3

static void base(struct plan_member *m, struct upgrade_node *nd, const char *id, const char *role)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->role_name, sizeof(m->role_name), "%s", role);
    m->role = plan_role_from_name(role);
    m->reachable = true;
    m->streaming = -1;
    m->node_ready = m->role != PLAN_ROLE_WITNESS;
    memset(nd, 0, sizeof(*nd));
    nd->answered = m->role != PLAN_ROLE_WITNESS;
    snprintf(nd->version, sizeof(nd->version), "1.0.0");
    nd->has_schema = nd->answered;
    nd->schema = 2;
    nd->compatible = nd->answered;
}

static void primary(struct plan_member *m, struct upgrade_node *nd, const char *id)
{
    base(m, nd, id, "primary");
    m->has_pos = true;
    m->timeline = 1;
    m->lsn = 0x5000000;
    m->writable = true;
}

static void standby(struct plan_member *m, struct upgrade_node *nd, const char *id, uint64_t lsn,
                    const char *upstream)
{
    base(m, nd, id, "standby");
    m->has_pos = true;
    m->timeline = 1;
    m->lsn = lsn;
    snprintf(m->upstream, sizeof(m->upstream), "%s", upstream);
    m->streaming = 1;
}

static void contains(const char *text, const char *part)
{
    if (!text || !strstr(text, part))
        fail_msg("\"%s\" lacks \"%s\"", text ? text : "(null)", part);
}

/* Step k is <action> on member <member>, with <command> ("" none). */
static void step_is(const struct upgrade_plan *p, size_t k, enum upgrade_action action,
                    size_t member, const char *command)
{
    assert_true(k < p->nsteps);
    assert_int_equal(p->steps[k].action, action);
    assert_int_equal(p->steps[k].member, member);
    assert_string_equal(p->steps[k].command, command);
}

/* n1 primary; n2 behind n3. */
static void three(struct plan_member m[3], struct upgrade_node nd[3])
{
    primary(&m[0], &nd[0], "n1");
    standby(&m[1], &nd[1], "n2", 0x4000000, "n1");
    standby(&m[2], &nd[2], "n3", 0x4000100, "n1");
}

static void test_order(void **state)
{
    struct plan_member m[3];
    struct upgrade_node nd[3];
    struct upgrade_plan *p = calloc(1, sizeof(*p));

    (void)state;
    three(m, nd);
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_GO);
    assert_int_equal(p->primary, 0);
    assert_int_equal(p->target, 2); /* the most advanced standby, upgraded last */
    assert_int_equal(p->schema, 2);
    assert_int_equal(p->nsteps, 10);
    step_is(p, 0, UPGRADE_DRAIN, 1, "mfactl drain n2 --wait");
    step_is(p, 1, UPGRADE_UPGRADE, 1, "");
    contains(p->steps[1].check, "n2 standby, streaming from n1, node ready");
    step_is(p, 2, UPGRADE_READY, 1, "mfactl ready n2");
    step_is(p, 3, UPGRADE_DRAIN, 2, "mfactl drain n3 --wait");
    step_is(p, 4, UPGRADE_UPGRADE, 2, "");
    step_is(p, 5, UPGRADE_READY, 2, "mfactl ready n3");
    /* the old primary is drained before the switchover restarts its PostgreSQL */
    step_is(p, 6, UPGRADE_DRAIN, 0, "mfactl drain n1 --wait");
    step_is(p, 7, UPGRADE_SWITCHOVER, 2, "mfactl switchover --to n3");
    contains(p->steps[7].check, "n1 standby streaming from n3");
    step_is(p, 8, UPGRADE_UPGRADE, 0, "");
    contains(p->steps[8].check, "n1 standby, streaming from n3");
    step_is(p, 9, UPGRADE_READY, 0, "mfactl ready n1");

    /* Equal data: cluster.members order, the last one is the target. */
    m[1].lsn = m[2].lsn;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->target, 2);
    step_is(p, 0, UPGRADE_DRAIN, 1, "mfactl drain n2 --wait");
    /* n2 ahead: it goes last and takes over. */
    m[1].lsn = m[2].lsn + 1;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->target, 1);
    step_is(p, 0, UPGRADE_DRAIN, 2, "mfactl drain n3 --wait");
    step_is(p, 7, UPGRADE_SWITCHOVER, 1, "mfactl switchover --to n2");
    free(p);
}

static void test_witness(void **state)
{
    struct plan_member m[3];
    struct upgrade_node nd[3];
    struct upgrade_plan *p = calloc(1, sizeof(*p));

    (void)state;
    standby(&m[0], &nd[0], "n1", 0x100, "n2");
    primary(&m[1], &nd[1], "n2");
    base(&m[2], &nd[2], "w", "witness");
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_GO);
    assert_int_equal(p->nsteps, 8);
    step_is(p, 0, UPGRADE_UPGRADE, 2, ""); /* the witness: no drain, no ready */
    contains(p->steps[0].what, "witness");
    step_is(p, 1, UPGRADE_DRAIN, 0, "mfactl drain n1 --wait");
    step_is(p, 4, UPGRADE_DRAIN, 1, "mfactl drain n2 --wait");
    step_is(p, 5, UPGRADE_SWITCHOVER, 0, "mfactl switchover --to n1");
    free(p);
}

static void test_refusals(void **state)
{
    struct plan_member m[3];
    struct upgrade_node nd[3];
    struct upgrade_plan *p = calloc(1, sizeof(*p));

    (void)state;
    three(m, nd);
    plan_member_down(&m[1], "n2", "connection refused");
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    assert_int_equal(p->exit_code, PLAN_EXIT_REFUSED);
    assert_int_equal(p->nsteps, 0);
    contains(p->message, "n2 does not answer (connection refused)");

    three(m, nd);
    m[0].writable = false;
    m[0].fenced = true;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "no member is a writable primary");

    three(m, nd);
    m[2].streaming = 0;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "n3 is not a standby streaming from n1");

    three(m, nd);
    m[1].node_ready = false;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "the node on n2 is not ready");

    three(m, nd);
    nd[2].answered = false;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "the node on n3 does not answer");

    three(m, nd);
    nd[0].schema = 4;
    nd[0].compatible = false;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "(version 4); this mfactl's release works with 1 to 3");

    three(m, nd);
    nd[1].has_schema = false; /* a release before the schema report */
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "(version unknown)");

    primary(&m[0], &nd[0], "n1");
    upgrade_plan(m, nd, 1, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "n1 has no standby");

    three(m, nd);
    m[1].role = PLAN_ROLE_PRIMARY;
    m[1].writable = true;
    upgrade_plan(m, nd, 3, SMIN, SMAX, p);
    assert_int_equal(p->verdict, PLAN_REFUSE);
    contains(p->message, "n1 and n2 are both writable primaries");
    free(p);
}

static void test_node_reply(void **state)
{
    struct upgrade_node nd;
    json_t *doc;

    (void)state;
    doc = json_loads("{\"version\": \"1.2.3\", \"schema\": {\"database\": 3, \"min\": 1, "
                     "\"max\": 3, \"compatible\": true}}",
                     0, NULL);
    upgrade_node_from_json(doc, &nd);
    assert_true(nd.answered && nd.has_schema && nd.compatible);
    assert_int_equal(nd.schema, 3);
    assert_string_equal(nd.version, "1.2.3");
    json_decref(doc);

    doc = json_loads("{\"version\": \"0.9\\u001b[2J\", \"schema\": {\"database\": null, "
                     "\"compatible\": false}}",
                     0, NULL);
    upgrade_node_from_json(doc, &nd);
    assert_true(nd.answered);
    assert_false(nd.has_schema);
    assert_string_equal(nd.version, "0.9?[2J");
    json_decref(doc);

    doc = json_loads("{\"version\": \"0.8\"}", 0, NULL); /* before the schema report */
    upgrade_node_from_json(doc, &nd);
    assert_true(nd.answered);
    assert_false(nd.has_schema);
    json_decref(doc);

    upgrade_node_from_json(NULL, &nd);
    assert_false(nd.answered);
    assert_string_equal(upgrade_action_name(UPGRADE_SWITCHOVER), "switchover");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_witness),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_node_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
