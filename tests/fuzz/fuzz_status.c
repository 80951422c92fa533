/*
 * Fuzz target for mfactl's reading of replicator /status replies (untrusted
 * network input: appliance/cluster_plan.c) and the decisions made on them.
 *
 * The input is parsed with json_loadb() as httpclient_json() does
 * (JSON_DECODE_ANY) and given to plan_member_from_json(), which must either
 * fill a reachable member or mark it down with a reason. Then the members go
 * through plan_failover() (with and without --force), plan_switchover() and
 * plan_rejoin() for every candidate:
 *   - a JSON array of up to APPCONF_MAX_MEMBERS elements is a whole cluster,
 *     element i the reply of member "n<i+1>" (null: it did not answer);
 *   - anything else is the reply of n2 in two three-member clusters: with n1
 *     a writable primary and n3 down, and with n1 down and n3 a standby.
 * Besides ASan/UBSan findings the target aborts when a result breaks the
 * documented contract: a failure without a reason, a string not terminated
 * in its field, a verdict without its message or exit code, a primary index
 * out of range, or a GO that one of the documented rules forbids.
 * Seeds: tests/fuzz/corpus/status/.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_plan.h"
#include "mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void check_member(const struct plan_member *m)
{
    CHECK(terminated(m->id, sizeof(m->id)) && terminated(m->why, sizeof(m->why)) &&
          terminated(m->role_name, sizeof(m->role_name)) &&
          terminated(m->fence_reason, sizeof(m->fence_reason)) &&
          terminated(m->upstream, sizeof(m->upstream)) &&
          terminated(m->primary, sizeof(m->primary)));
    CHECK(m->npeers <= MFA_ARRAY_LEN(m->peers));
    CHECK(m->streaming >= -1 && m->streaming <= 1);
    CHECK(strcmp(plan_role_name(m->role), "") != 0);
    for (size_t i = 0; i < m->npeers; i++)
        CHECK(terminated(m->peers[i].id, sizeof(m->peers[i].id)) && m->peers[i].id[0]);
    if (m->reachable)
        CHECK(m->role != PLAN_ROLE_DOWN && m->role_name[0]);
    else
        CHECK(m->role == PLAN_ROLE_DOWN && m->why[0] && m->npeers == 0);
}

/* Parses <st> as member <id>'s reply into *m, checking the contract. */
static void from_json(const json_t *st, const char *id, struct plan_member *m)
{
    char *err = NULL;
    int rc = plan_member_from_json(st, id, m, &err);

    CHECK(rc == 0 || rc == -1);
    CHECK(strcmp(m->id, id) == 0);
    if (rc == 0)
        CHECK(err == NULL && m->reachable && !m->node_ready);
    else
        /* the reason, cut to fit */
        CHECK(err != NULL && !m->reachable && m->why[0] &&
              strncmp(m->why, err, strlen(m->why)) == 0);
    check_member(m);
    mfa_free(err);
}

static void check_decision(const struct plan_decision *d, size_t n)
{
    CHECK(d->primary >= -1 && d->primary < (int)n);
    switch (d->verdict) {
    case PLAN_GO:
        CHECK(d->exit_code == 0);
        break;
    case PLAN_WAIT:
        CHECK(d->exit_code == 0 && d->message && d->message[0] && d->wait_s > 0 &&
              isfinite(d->wait_s) && !d->loss);
        break;
    case PLAN_REFUSE:
        CHECK(d->exit_code == PLAN_EXIT_REFUSED && d->message && d->message[0] && !d->loss);
        break;
    default:
        abort();
    }
}

static void fuzz_failover(const struct plan_member *m, size_t n, size_t cand, bool force)
{
    struct plan_failover_opts o = { .fence_after = 10, .force = force };
    struct plan_decision d = { 0 };
    int old;

    for (int pass = 0; pass < 2; pass++, o.watched_unseen_s = 1e6) {
        if (plan_failover(m, n, cand, &o, &d) < 0)
            return; /* out of memory */
        check_decision(&d, n);
        old = d.primary;
        if (d.verdict != PLAN_REFUSE) {
            /* rule 1, and rule 2 even with --force */
            CHECK(m[cand].reachable && m[cand].role == PLAN_ROLE_STANDBY && m[cand].has_pos);
            for (size_t i = 0; i < n; i++)
                CHECK(i == cand || !m[i].reachable || !m[i].writable);
            CHECK(old != (int)cand);
        }
        if (d.verdict == PLAN_GO && !force) {
            /* rules 3 and 4 */
            for (size_t i = 0; i < n; i++) {
                if ((int)i == old || i == cand)
                    continue;
                CHECK(m[i].reachable);
                CHECK(m[i].role == PLAN_ROLE_WITNESS || plan_rank_cmp(&m[i], &m[cand]) <= 0);
            }
            /* rule 5 */
            CHECK(old < 0 || m[old].reachable || n > 2);
            CHECK(!d.loss);
        }
        plan_decision_clear(&d);
    }
}

static void fuzz_decisions(const struct plan_member *m, size_t n)
{
    struct plan_decision d = { 0 };

    for (size_t i = 0; i < n; i++) {
        int old = plan_old_primary(m, n, i);

        CHECK(old >= -1 && old < (int)n && old != (int)i);
        for (size_t j = 0; j < n; j++) {
            int ab = plan_rank_cmp(&m[i], &m[j]), ba = plan_rank_cmp(&m[j], &m[i]);
            CHECK((ab > 0) == (ba < 0) && (ab == 0) == (ba == 0));
        }
        fuzz_failover(m, n, i, false);
        fuzz_failover(m, n, i, true);

        if (plan_switchover(m, n, i, &d) == 0) {
            check_decision(&d, n);
            CHECK(d.verdict != PLAN_WAIT);
            if (d.verdict == PLAN_GO)
                CHECK(d.primary >= 0 && (size_t)d.primary != i && m[d.primary].writable &&
                      plan_streams_from(&m[i], m[d.primary].id));
        }
        plan_decision_clear(&d);

        for (int to = -1; to < (int)n; to++) {
            if (plan_rejoin(m, n, i, to, &d) < 0)
                break;
            check_decision(&d, n);
            CHECK(d.verdict != PLAN_WAIT);
            if (d.verdict == PLAN_GO)
                CHECK(m[i].reachable && m[i].role != PLAN_ROLE_WITNESS && d.primary >= 0 &&
                      (size_t)d.primary != i && (to < 0 || d.primary == to));
            plan_decision_clear(&d);
        }
    }
}

/* A JSON array: the whole cluster, element i member n<i+1>. */
static void fuzz_cluster(const json_t *arr)
{
    struct plan_member *m;
    size_t n = json_array_size(arr);

    if (n == 0 || n > APPCONF_MAX_MEMBERS || !(m = calloc(n, sizeof(*m))))
        return;
    for (size_t i = 0; i < n; i++) {
        const json_t *st = json_array_get(arr, i);
        char id[PLAN_ID_MAX];

        snprintf(id, sizeof(id), "n%zu", i + 1);
        if (json_is_null(st))
            plan_member_down(&m[i], id, "Connection refused");
        else
            from_json(st, id, &m[i]);
    }
    fuzz_decisions(m, n);
    free(m);
}

static void fixed_primary(struct plan_member *m, const char *id)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->role_name, sizeof(m->role_name), "primary");
    m->role = PLAN_ROLE_PRIMARY;
    m->reachable = m->writable = m->has_pos = true;
    m->timeline = 2;
    m->lsn = 0x3000148;
    m->streaming = -1;
}

static void fixed_standby(struct plan_member *m, const char *id, const char *upstream)
{
    fixed_primary(m, id);
    snprintf(m->role_name, sizeof(m->role_name), "standby");
    m->role = PLAN_ROLE_STANDBY;
    m->writable = false;
    m->lsn = 0x3000000;
    m->streaming = 1;
    snprintf(m->upstream, sizeof(m->upstream), "%s", upstream);
}

/* Anything else: n2's reply, beside a fixed n1 and n3. */
static void fuzz_one(const json_t *st)
{
    struct plan_member m[3];

    fixed_primary(&m[0], "n1");
    from_json(st, "n2", &m[1]);
    plan_member_down(&m[2], "n3", "No route to host");
    fuzz_decisions(m, 3);

    plan_member_down(&m[0], "n1", "Connection timed out");
    fixed_standby(&m[2], "n3", "n1");
    fuzz_decisions(m, 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);

    if (!j)
        return 0;
    if (json_is_array(j))
        fuzz_cluster(j);
    fuzz_one(j);
    json_decref(j);
    return 0;
}
