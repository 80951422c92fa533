/*
 * mfactl's cluster decisions (appliance/cluster_plan.c): LSN parsing, the
 * failover rules of docs/replication.md (most advanced standby, unreachable
 * members, writable primaries, the fence wait, --force and what it may
 * lose, timeline before LSN), the switchover and rejoin preconditions, and
 * reading a /status reply. Each test breaks when its rule does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster_plan.h"

#define FENCE_AFTER 10

/* ---- building clusters ------------------------------------------------- */

static void base(struct plan_member *m, const char *id, const char *role)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->role_name, sizeof(m->role_name), "%s", role);
    m->role = plan_role_from_name(role);
    m->reachable = true;
    m->streaming = -1;
}

static void standby(struct plan_member *m, const char *id, int64_t tl, uint64_t lsn,
                    const char *upstream)
{
    base(m, id, "standby");
    m->has_pos = true;
    m->timeline = tl;
    m->lsn = lsn;
    m->has_replay = true;
    m->replay_lsn = lsn;
    snprintf(m->upstream, sizeof(m->upstream), "%s", upstream);
    snprintf(m->primary, sizeof(m->primary), "%s", upstream);
    m->streaming = 0; /* its upstream is gone in most tests */
}

static void primary(struct plan_member *m, const char *id, int64_t tl, uint64_t lsn, bool fenced)
{
    base(m, id, "primary");
    m->has_pos = true;
    m->timeline = tl;
    m->lsn = lsn;
    m->writable = !fenced;
    m->fenced = fenced;
    snprintf(m->primary, sizeof(m->primary), "%s", id);
    if (fenced)
        snprintf(m->fence_reason, sizeof(m->fence_reason), "no majority");
}

static void saw(struct plan_member *m, const char *id, bool seen, double age_s)
{
    struct plan_peer *p = &m->peers[m->npeers++];

    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->seen = seen;
    p->has_age = age_s >= 0;
    p->age_s = age_s;
}

static void contains(const char *text, const char *part)
{
    if (!text || !strstr(text, part))
        fail_msg("\"%s\" lacks \"%s\"", text ? text : "(null)", part);
}

static const struct plan_failover_opts plain = { .fence_after = FENCE_AFTER };
static const struct plan_failover_opts forced = { .fence_after = FENCE_AFTER, .force = true };

/*
 * The usual failover: n1 (the old primary) down and unseen for 30 s, n2 and
 * n3 standbys of it on timeline 2, n2 256 bytes ahead of n3.
 */
static void lost_primary(struct plan_member m[3])
{
    plan_member_down(&m[0], "n1", "Failed to connect to 10.0.0.1 port 8500");
    standby(&m[1], "n2", 2, 0x3000200, "n1");
    standby(&m[2], "n3", 2, 0x3000100, "n1");
    saw(&m[1], "n1", false, 30);
    saw(&m[1], "n3", true, 0.2);
    saw(&m[2], "n1", false, 30.5);
    saw(&m[2], "n2", true, 0.1);
}

/* ---- LSNs ------------------------------------------------------------------ */

static void test_lsn_round_trip(void **state)
{
    static const struct {
        const char *text, *printed;
        uint64_t value;
    } good[] = {
        { "0/0", "0/0", 0 },
        { "0/3000148", "0/3000148", 0x3000148 },
        { "16/B374D848", "16/B374D848", 0x16B374D848ULL },
        { "a/bcdef012", "A/BCDEF012", 0xABCDEF012ULL },
        { "FFFFFFFF/FFFFFFFF", "FFFFFFFF/FFFFFFFF", UINT64_MAX },
        { "00000001/00000000", "1/0", 1ULL << 32 },
    };
    char buf[PLAN_LSN_MAX];
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(good); i++) {
        assert_int_equal(plan_lsn_parse(good[i].text, &v), 0);
        assert_true(v == good[i].value);
        assert_string_equal(plan_lsn_format(v, buf), good[i].printed);
        assert_int_equal(plan_lsn_parse(buf, &v), 0);
        assert_true(v == good[i].value);
    }
}

static void test_lsn_rejects(void **state)
{
    static const char *const bad[] = {
        "",  "1/",   "/1",   "x/1",  "1/x",  "1/2/3", "123456789/0", "0/100000000",
        "1", "1//2", " 1/2", "1/2 ", "-1/2", "+1/2",  "0x1/2",       "1/2\n",
    };
    uint64_t v = 42;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        if (plan_lsn_parse(bad[i], &v) == 0)
            fail_msg("\"%s\" parsed", bad[i]);
        assert_true(v == 42); /* nothing stored */
    }
    assert_int_equal(plan_lsn_parse(NULL, &v), -1);
}

/* ---- failover ---------------------------------------------------------------- */

static void test_failover_go_most_advanced(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    assert_int_equal(d.exit_code, 0);
    assert_int_equal(d.primary, 0); /* n1, named by both standbys */
    assert_null(d.loss);
    plan_decision_clear(&d);
}

static void test_failover_refuses_behind(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    assert_int_equal(plan_failover(m, 3, 2, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    assert_int_equal(d.exit_code, 3);
    contains(d.message, "n2 has more data than n3");
    contains(d.message, "it is 256 bytes ahead of n3 on timeline 2");
    contains(d.message, "0/3000200 against 0/3000100");
    contains(d.message, "--to n2");
    plan_decision_clear(&d);

    /* One byte behind is behind. */
    m[2].lsn = 0x30001FF;
    assert_int_equal(plan_failover(m, 3, 2, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "1 byte ahead of n3");
    plan_decision_clear(&d);

    /* Level is fine. */
    m[2].lsn = 0x3000200;
    assert_int_equal(plan_failover(m, 3, 2, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    plan_decision_clear(&d);
}

static void test_failover_force_says_loss(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    assert_int_equal(plan_failover(m, 3, 2, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    contains(d.loss, "promoting n3 with --force may lose data");
    contains(d.loss, "n2 is 256 bytes ahead of n3 on timeline 2");
    plan_decision_clear(&d);

    /* Forcing the best candidate loses nothing and says nothing. */
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    assert_null(d.loss);
    plan_decision_clear(&d);
}

static void test_failover_refuses_other_unreachable(void **state)
{
    struct plan_member m[4];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    plan_member_down(&m[3], "n4", "Connection timed out");
    assert_int_equal(plan_failover(m, 4, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    assert_int_equal(d.exit_code, 3);
    contains(d.message, "n4 (Connection timed out) did not answer");
    contains(d.message, "--force");
    assert_null(strstr(d.message, "n1 (")); /* the old primary may be down */
    plan_decision_clear(&d);

    assert_int_equal(plan_failover(m, 4, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    contains(d.loss, "n4 did not answer");
    plan_decision_clear(&d);
}

static void test_failover_refuses_writable_primary(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    primary(&m[0], "n1", 2, 0x3000200, false);
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    assert_int_equal(d.exit_code, 3);
    contains(d.message, "n1 is a writable primary");
    contains(d.message, "mfactl switchover --to n2");
    plan_decision_clear(&d);

    /* Not even with --force: that would make two writable primaries. */
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    plan_decision_clear(&d);
}

static void test_failover_go_fenced_primary(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    primary(&m[0], "n1", 2, 0x3000200, true);
    m[1].peers[0].seen = true; /* seen now: it answers, and it is fenced */
    m[1].peers[0].age_s = 0.3;
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    assert_int_equal(d.primary, 0);
    assert_null(d.message);
    plan_decision_clear(&d);

    /* Ahead of the candidate: refused, since its writes would be discarded... */
    m[0].lsn = 0x3000300;
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n1 (the old primary, fenced) is 256 bytes ahead of n2");
    plan_decision_clear(&d);
    /* ...unless forced. */
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    plan_decision_clear(&d);
}

static void test_failover_force_old_primary_reported(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    m[2].peers[0].has_pos = true; /* n3 last saw n1 at 0/3000280 */
    m[2].peers[0].timeline = 2;
    m[2].peers[0].lsn = 0x3000280;
    m[1].peers[0].age_s = m[2].peers[0].age_s = 2;
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    contains(d.loss, "n1 (the old primary) was last reported 128 bytes ahead of n2");
    contains(d.loss, "n1 was seen 2.0 s ago");
    plan_decision_clear(&d);
}

static void test_failover_waits_for_fence(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };
    const struct plan_failover_opts watched = { .fence_after = FENCE_AFTER,
                                                .watched_unseen_s = 60 };

    (void)state;
    lost_primary(m);
    m[1].peers[0].age_s = 1.0; /* n2 saw n1 a second ago */
    m[2].peers[0].age_s = 4.0;
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_WAIT);
    assert_true(d.wait_s >= 9.0 && d.wait_s <= 10.0);
    contains(d.message, "until n1 has been unseen for fence_after (10 s)");
    plan_decision_clear(&d);

    /* Still seen by n3 (peer timeout not reached): the full wait. */
    m[2].peers[0].seen = true;
    m[2].peers[0].age_s = 0.1;
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_WAIT);
    assert_true(d.wait_s >= 10.0 && d.wait_s <= 10.5);
    plan_decision_clear(&d);

    /* Seen, with no age given: seen now, whatever mfactl watched. */
    m[1].peers[0].has_age = m[2].peers[0].has_age = false;
    assert_int_equal(plan_failover(m, 3, 1, &watched, &d), 0);
    assert_int_equal(d.verdict, PLAN_WAIT);
    assert_true(d.wait_s == FENCE_AFTER + PLAN_FENCE_MARGIN_S);
    plan_decision_clear(&d);
    m[1].peers[0].has_age = m[2].peers[0].has_age = true;

    /* --force goes now and says why that may lose writes. */
    m[2].peers[0].seen = false;
    m[2].peers[0].age_s = 4.0;
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    contains(d.loss, "n1 was seen 1.0 s ago, less than fence_after (10 s)");
    plan_decision_clear(&d);

    /* Long enough unseen by everyone: go. */
    m[1].peers[0].age_s = FENCE_AFTER + PLAN_FENCE_MARGIN_S + 0.1;
    m[2].peers[0].age_s = 60;
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    plan_decision_clear(&d);
}

static void test_failover_watched_when_nobody_reports(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };
    struct plan_failover_opts o = plain;

    (void)state;
    lost_primary(m);
    m[1].peers[0].has_age = false; /* never seen since their replicators started */
    m[2].peers[0].has_age = false;
    assert_int_equal(plan_failover(m, 3, 1, &o, &d), 0);
    assert_int_equal(d.verdict, PLAN_WAIT);
    assert_true(d.wait_s >= FENCE_AFTER && d.wait_s <= FENCE_AFTER + 1);
    plan_decision_clear(&d);

    o.watched_unseen_s = FENCE_AFTER + 1;
    assert_int_equal(plan_failover(m, 3, 1, &o, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    plan_decision_clear(&d);
}

static void test_failover_timeline_beats_lsn(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    m[1].timeline = 3;
    m[1].lsn = 0x100;    /* newer timeline, far lower LSN */
    m[2].lsn = 0x900000; /* older timeline */
    assert_true(plan_rank_cmp(&m[1], &m[2]) > 0);
    assert_int_equal(plan_failover(m, 3, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    plan_decision_clear(&d);

    assert_int_equal(plan_failover(m, 3, 2, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message,
             "n2 has more data than n3: it is on a newer timeline than n3 (3 against 2)");
    plan_decision_clear(&d);
}

static void test_failover_candidate_checks(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    lost_primary(m);
    plan_member_down(&m[1], "n2", "Connection refused");
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n2 did not answer (Connection refused)");
    plan_decision_clear(&d);

    lost_primary(m);
    base(&m[1], "n2", "rejoining");
    assert_int_equal(plan_failover(m, 3, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n2's role is rejoining, not standby");
    plan_decision_clear(&d);
}

static void test_failover_two_members(void **state)
{
    struct plan_member m[2];
    struct plan_decision d = { 0 };

    (void)state;
    plan_member_down(&m[0], "n1", "No route to host");
    standby(&m[1], "n2", 2, 0x3000200, "n1");
    saw(&m[1], "n1", false, 3600);
    assert_int_equal(plan_failover(m, 2, 1, &plain, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "two members and no witness");
    contains(d.message, "--force");
    plan_decision_clear(&d);

    assert_int_equal(plan_failover(m, 2, 1, &forced, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    contains(d.loss, "n1 never fences itself");
    plan_decision_clear(&d);
}

static void test_old_primary(void **state)
{
    struct plan_member m[4];

    (void)state;
    lost_primary(m);
    plan_member_down(&m[3], "n4", "timeout");
    assert_int_equal(plan_old_primary(m, 4, 1), 0); /* named, although n4 is down too */

    /* The most common name wins. */
    standby(&m[3], "n4", 2, 0x100, "n3");
    standby(&m[2], "n3", 2, 0x100, "n4");
    assert_int_equal(plan_old_primary(m, 4, 1), 0);
    snprintf(m[1].upstream, sizeof(m[1].upstream), "n4");
    assert_int_equal(plan_old_primary(m, 4, 1), 3);

    /* Nobody names one: the member that did not answer. */
    lost_primary(m);
    m[1].upstream[0] = m[1].primary[0] = '\0';
    m[2].upstream[0] = m[2].primary[0] = '\0';
    assert_int_equal(plan_old_primary(m, 3, 1), 0);
    standby(&m[0], "n1", 2, 0x100, "");
    assert_int_equal(plan_old_primary(m, 3, 1), -1);
}

/* ---- switchover and rejoin -------------------------------------------------- */

static void healthy(struct plan_member m[3])
{
    primary(&m[0], "n1", 2, 0x5000000, false);
    standby(&m[1], "n2", 2, 0x5000000, "n1");
    standby(&m[2], "n3", 2, 0x4FFFF00, "n1");
    m[1].streaming = m[2].streaming = 1;
}

static void test_switchover(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    healthy(m);
    assert_int_equal(plan_switchover(m, 3, 1, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    assert_int_equal(d.primary, 0);
    plan_decision_clear(&d);

    assert_int_equal(plan_switchover(m, 3, 0, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n1 is already the primary");
    plan_decision_clear(&d);

    m[1].streaming = 0;
    assert_int_equal(plan_switchover(m, 3, 1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    assert_int_equal(d.exit_code, 3);
    contains(d.message, "n2 is not streaming from n1");
    plan_decision_clear(&d);

    healthy(m);
    snprintf(m[1].upstream, sizeof(m[1].upstream), "n3");
    assert_int_equal(plan_switchover(m, 3, 1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "upstream n3");
    plan_decision_clear(&d);

    healthy(m);
    primary(&m[2], "n3", 2, 0x5000000, false);
    assert_int_equal(plan_switchover(m, 3, 1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n1 and n3 are all writable primaries");
    plan_decision_clear(&d);

    healthy(m);
    primary(&m[0], "n1", 2, 0x5000000, true);
    assert_int_equal(plan_switchover(m, 3, 1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message,
             "no member is a writable primary (n1 is a primary but fenced: no majority)");
    contains(d.message, "mfactl failover --to n2");
    plan_decision_clear(&d);
}

static void test_rejoin(void **state)
{
    struct plan_member m[3];
    struct plan_decision d = { 0 };

    (void)state;
    healthy(m);
    m[2].streaming = 0;
    assert_int_equal(plan_rejoin(m, 3, 2, -1, &d), 0);
    assert_int_equal(d.verdict, PLAN_GO);
    assert_int_equal(d.primary, 0);
    plan_decision_clear(&d);

    assert_int_equal(plan_rejoin(m, 3, 0, -1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n1 is the primary");
    plan_decision_clear(&d);

    assert_int_equal(plan_rejoin(m, 3, 2, 1, &d), 0); /* --to n2, a standby */
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n2's role is standby, not primary");
    plan_decision_clear(&d);

    primary(&m[0], "n1", 2, 0x5000000, true);
    assert_int_equal(plan_rejoin(m, 3, 2, -1, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "no member is a writable primary for n3 to follow");
    plan_decision_clear(&d);

    plan_member_down(&m[2], "n3", "Connection refused");
    assert_int_equal(plan_rejoin(m, 3, 2, 0, &d), 0);
    assert_int_equal(d.verdict, PLAN_REFUSE);
    contains(d.message, "n3 did not answer");
    plan_decision_clear(&d);
}

/* ---- /status replies ---------------------------------------------------------- */

static const char doc_status[] =
    "{\"member\": \"n2\", \"role\": \"standby\", \"writable\": false, \"fenced\": false,"
    " \"fence_reason\": null, \"system_identifier\": \"7301234567890123456\", \"timeline\": 2,"
    " \"lsn\": \"0/3000148\", \"receive_lsn\": \"0/3000148\", \"replay_lsn\": \"0/3000140\","
    " \"lag_bytes\": 8, \"lag_seconds\": 0.5, \"upstream\": \"n1\", \"streaming\": true,"
    " \"primary\": \"n1\", \"standbys\": [], \"sync_standbys\": [], \"sees_majority\": true,"
    " \"peers\": [{\"id\": \"n1\", \"seen\": true, \"age_s\": 0.21, \"role\": \"primary\","
    " \"timeline\": 2, \"lsn\": \"0/3000148\"}, {\"id\": \"n3\", \"seen\": false, \"age_s\": 12.5,"
    " \"role\": null, \"timeline\": null, \"lsn\": null}],"
    " \"postgres\": {\"running\": true, \"pid\": 4242, \"restarts\": 0}, \"version\": \"0.1.0\"}";

static void parse_ok(const char *text, const char *id, struct plan_member *m)
{
    json_t *j = json_loads(text, 0, NULL);
    char *err = NULL;

    assert_non_null(j);
    memset(m, 0, sizeof(*m));
    if (plan_member_from_json(j, id, m, &err) < 0)
        fail_msg("%s", err);
    json_decref(j);
}

static void parse_bad(const char *text, const char *id, const char *part)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    struct plan_member m;
    char *err = NULL;

    assert_non_null(j);
    memset(&m, 0, sizeof(m));
    assert_int_equal(plan_member_from_json(j, id, &m, &err), -1);
    contains(err, part);
    assert_false(m.reachable);
    contains(m.why, part);
    assert_string_equal(m.role_name, "down");
    free(err);
    json_decref(j);
}

static void test_status_reply(void **state)
{
    struct plan_member m;
    const struct plan_peer *p;

    (void)state;
    parse_ok(doc_status, "n2", &m);
    assert_true(m.reachable);
    assert_int_equal(m.role, PLAN_ROLE_STANDBY);
    assert_true(m.has_pos);
    assert_int_equal(m.timeline, 2);
    assert_true(m.lsn == 0x3000148);
    assert_true(m.has_replay && m.replay_lsn == 0x3000140);
    assert_true(m.has_lag && m.lag_bytes == 8);
    assert_true(m.has_lag_s && m.lag_seconds == 0.5);
    assert_string_equal(m.upstream, "n1");
    assert_int_equal(m.streaming, 1);
    assert_false(m.writable);
    assert_true(plan_streams_from(&m, "n1"));
    assert_false(plan_streams_from(&m, "n3"));
    p = plan_peer_of(&m, "n3");
    assert_non_null(p);
    assert_false(p->seen);
    assert_true(p->has_age && p->age_s == 12.5);
    assert_false(p->has_pos);
    p = plan_peer_of(&m, "n1");
    assert_true(p->seen && p->has_pos && p->lsn == 0x3000148);

    /* A primary with nulls where the document says so. */
    parse_ok("{\"member\":\"n1\",\"role\":\"primary\",\"writable\":false,\"fenced\":true,"
             "\"fence_reason\":\"no majority\",\"timeline\":null,\"lsn\":null,\"upstream\":null,"
             "\"streaming\":null}",
             "n1", &m);
    assert_int_equal(m.role, PLAN_ROLE_PRIMARY);
    assert_true(m.fenced);
    assert_string_equal(m.fence_reason, "no majority");
    assert_false(m.has_pos);
    assert_int_equal(m.streaming, -1);

    parse_bad(doc_status, "n3", "answers as member \"n2\", not \"n3\"");
    parse_bad("{\"role\":\"standby\",\"lsn\":\"0/zz\",\"timeline\":1}", "n2", "\"lsn\"");
    parse_bad("{\"role\":\"standby\",\"timeline\":\"2\"}", "n2", "\"timeline\"");
    parse_bad("{\"writable\":true}", "n2", "\"role\" is missing");
    parse_bad("[1]", "n2", "not a JSON object");
    parse_bad("{\"role\":\"standby\",\"peers\":[{\"seen\":true}]}", "n2", "\"peers\"");
}

static void test_bytes_format(void **state)
{
    char buf[64];

    (void)state;
    assert_string_equal(plan_bytes_format(1, buf, sizeof(buf)), "1 byte");
    assert_string_equal(plan_bytes_format(1023, buf, sizeof(buf)), "1023 bytes");
    assert_string_equal(plan_bytes_format(5 * 1024 * 1024, buf, sizeof(buf)),
                        "5242880 bytes (5.0 MiB)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsn_round_trip),
        cmocka_unit_test(test_lsn_rejects),
        cmocka_unit_test(test_failover_go_most_advanced),
        cmocka_unit_test(test_failover_refuses_behind),
        cmocka_unit_test(test_failover_force_says_loss),
        cmocka_unit_test(test_failover_refuses_other_unreachable),
        cmocka_unit_test(test_failover_refuses_writable_primary),
        cmocka_unit_test(test_failover_go_fenced_primary),
        cmocka_unit_test(test_failover_force_old_primary_reported),
        cmocka_unit_test(test_failover_waits_for_fence),
        cmocka_unit_test(test_failover_watched_when_nobody_reports),
        cmocka_unit_test(test_failover_timeline_beats_lsn),
        cmocka_unit_test(test_failover_candidate_checks),
        cmocka_unit_test(test_failover_two_members),
        cmocka_unit_test(test_old_primary),
        cmocka_unit_test(test_switchover),
        cmocka_unit_test(test_rejoin),
        cmocka_unit_test(test_status_reply),
        cmocka_unit_test(test_bytes_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
