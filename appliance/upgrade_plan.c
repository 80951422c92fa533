/*
 * The rolling upgrade's plan; see upgrade_plan.h for the rules and the
 * order. Every text is built here so that the table, the JSON and the unit
 * tests show the same words.
 */
#include "upgrade_plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const action_names[] = {
    [UPGRADE_DRAIN] = "drain",
    [UPGRADE_UPGRADE] = "upgrade",
    [UPGRADE_READY] = "ready",
    [UPGRADE_SWITCHOVER] = "switchover",
};

const char *upgrade_action_name(enum upgrade_action a)
{
    return (unsigned)a < MFA_ARRAY_LEN(action_names) ? action_names[a] : "?";
}

void upgrade_node_from_json(const json_t *doc, struct upgrade_node *nd)
{
    const json_t *v, *schema, *db;

    memset(nd, 0, sizeof(*nd));
    if (!json_is_object(doc))
        return;
    nd->answered = true;
    v = json_object_get(doc, "version");
    if (json_is_string(v)) {
        snprintf(nd->version, sizeof(nd->version), "%s", json_string_value(v));
        for (char *c = nd->version; *c; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
        }
    }
    schema = json_object_get(doc, "schema");
    db = json_object_get(schema, "database");
    if (json_is_integer(db) && json_integer_value(db) >= 0 && json_integer_value(db) <= 1000000) {
        nd->has_schema = true;
        nd->schema = (int)json_integer_value(db);
        nd->compatible = json_is_true(json_object_get(schema, "compatible"));
    }
}

static void refuse(struct upgrade_plan *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Marks *p refused because of <fmt>; the steps made so far are dropped. */
static void refuse(struct upgrade_plan *p, const char *fmt, ...)
{
    va_list ap;

    p->verdict = PLAN_REFUSE;
    p->exit_code = PLAN_EXIT_REFUSED;
    p->nsteps = 0;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
}

static struct upgrade_step *add_step(struct upgrade_plan *p, size_t member,
                                     enum upgrade_action action)
{
    struct upgrade_step *s = &p->steps[p->nsteps++];

    memset(s, 0, sizeof(*s));
    s->member = member;
    s->action = action;
    return s;
}

/* Drain for the data member <i>: no new work reaches it; what it holds finishes. */
static void add_drain_step(struct upgrade_plan *p, const struct plan_member *m, size_t i)
{
    const char *id = m[i].id;
    struct upgrade_step *s = add_step(p, i, UPGRADE_DRAIN);

    snprintf(s->command, sizeof(s->command), "mfactl drain %s --wait", id);
    snprintf(s->what, sizeof(s->what),
             "the balancers send no new work to %s; its live challenges and sessions finish", id);
    snprintf(s->check, sizeof(s->check),
             "the command exits 0: %s has no challenge or portal session left", id);
}

/* Upgrade and ready for the drained data member <i>, which then streams from <upstream>. */
static void add_upgrade_steps(struct upgrade_plan *p, const struct plan_member *m, size_t i,
                              const char *upstream)
{
    const char *id = m[i].id;
    struct upgrade_step *s = add_step(p, i, UPGRADE_UPGRADE);

    snprintf(s->what, sizeof(s->what),
             "on %s: apt install ./mfa-appliance_<new>_amd64.deb, then systemctl restart "
             "mfa-replicator mfa-node mfa-balancer (PostgreSQL and HAProxy keep running)",
             id);
    snprintf(s->check, sizeof(s->check),
             "`mfactl status` shows %s standby, streaming from %s, node ready; the balancers' "
             "health page shows its HAProxy server DRAIN (checks pass), not DOWN; "
             "`mfactl upgrade-plan` shows its new version",
             id, upstream);

    s = add_step(p, i, UPGRADE_READY);
    snprintf(s->command, sizeof(s->command), "mfactl ready %s", id);
    snprintf(s->what, sizeof(s->what), "the balancers send new work to %s again", id);
    snprintf(s->check, sizeof(s->check),
             "`mfactl status` shows %s's balancer state ready; the health page its server UP", id);
}

static void add_witness_steps(struct upgrade_plan *p, const struct plan_member *m, size_t i)
{
    struct upgrade_step *s = add_step(p, i, UPGRADE_UPGRADE);

    snprintf(s->what, sizeof(s->what),
             "on %s: apt install ./mfa-appliance_<new>_amd64.deb, then systemctl restart "
             "mfa-replicator (a witness: no node, nothing to drain)",
             m[i].id);
    snprintf(s->check, sizeof(s->check), "`mfactl status` shows %s witness again", m[i].id);
}

/* Checks the cluster can start an upgrade; refuses *p with the first reason when not. */
static bool healthy(const struct plan_member *m, const struct upgrade_node *nodes, size_t n,
                    int schema_min, int schema_max, struct upgrade_plan *p)
{
    int primary = -1;

    for (size_t i = 0; i < n; i++) {
        if (!m[i].reachable) {
            refuse(p, "%s does not answer (%s); bring it back before an upgrade", m[i].id,
                   m[i].why);
            return false;
        }
        if (m[i].role == PLAN_ROLE_PRIMARY && m[i].writable) {
            if (primary >= 0) {
                refuse(p, "%s and %s are both writable primaries; settle that first", m[primary].id,
                       m[i].id);
                return false;
            }
            primary = (int)i;
        }
    }
    if (primary < 0) {
        refuse(p, "no member is a writable primary; an upgrade starts from a healthy cluster "
                  "(`mfactl status`)");
        return false;
    }
    p->primary = primary;
    for (size_t i = 0; i < n; i++) {
        if ((int)i == primary || m[i].role == PLAN_ROLE_WITNESS)
            continue;
        if (!plan_streams_from(&m[i], m[primary].id)) {
            refuse(p,
                   "%s is not a standby streaming from %s (role %s); wait until it streams, "
                   "or `mfactl rejoin %s`",
                   m[i].id, m[primary].id, m[i].role_name, m[i].id);
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct upgrade_node *nd = &nodes[i];

        if (m[i].role == PLAN_ROLE_WITNESS)
            continue;
        if (!nd->answered) {
            refuse(p, "the node on %s does not answer /status; start mfa-node there first",
                   m[i].id);
            return false;
        }
        if (!nd->has_schema || !nd->compatible) {
            char v[16] = "unknown";

            if (nd->has_schema)
                snprintf(v, sizeof(v), "%d", nd->schema);
            refuse(p,
                   "the node on %s (release %s) does not work with the database's schema "
                   "(version %s); this mfactl's release works with %d to %d. Finish the "
                   "previous upgrade before starting another",
                   m[i].id, nd->version[0] ? nd->version : "unknown", v, schema_min, schema_max);
            return false;
        }
        if (!m[i].node_ready) {
            refuse(p, "the node on %s is not ready (GET /ready); bring it back first", m[i].id);
            return false;
        }
    }
    return true;
}

void upgrade_plan(const struct plan_member *m, const struct upgrade_node *nodes, size_t n,
                  int schema_min, int schema_max, struct upgrade_plan *p)
{
    size_t order[APPCONF_MAX_MEMBERS], nstandby = 0;
    const char *pid;

    memset(p, 0, sizeof(*p));
    p->verdict = PLAN_GO;
    p->primary = p->target = p->schema = -1;
    if (n > APPCONF_MAX_MEMBERS) {
        refuse(p, "more members than %d", APPCONF_MAX_MEMBERS);
        return;
    }
    for (size_t i = 0; i < n && p->schema < 0; i++) {
        if (m[i].role != PLAN_ROLE_WITNESS && nodes[i].has_schema)
            p->schema = nodes[i].schema; /* for the report, when refused */
    }
    if (!healthy(m, nodes, n, schema_min, schema_max, p))
        return;
    pid = m[p->primary].id;
    if (nodes[p->primary].has_schema)
        p->schema = nodes[p->primary].schema;

    /* The standbys, least advanced first: an insertion sort, stable for ties. */
    for (size_t i = 0; i < n; i++) {
        size_t k;

        if ((int)i == p->primary || m[i].role == PLAN_ROLE_WITNESS)
            continue;
        for (k = nstandby; k > 0 && plan_rank_cmp(&m[order[k - 1]], &m[i]) > 0; k--)
            order[k] = order[k - 1];
        order[k] = i;
        nstandby++;
    }
    if (nstandby == 0) {
        refuse(p,
               "%s has no standby to take over while it is upgraded; a cluster of one upgrades "
               "in place, with the service down while it restarts (docs/upgrade.md)",
               pid);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == PLAN_ROLE_WITNESS)
            add_witness_steps(p, m, i);
    }
    for (size_t k = 0; k < nstandby; k++) {
        add_drain_step(p, m, order[k]);
        add_upgrade_steps(p, m, order[k], pid);
    }

    p->target = (int)order[nstandby - 1];
    /*
     * The old primary is drained before the switchover, not after: the
     * switchover restarts its PostgreSQL as a standby, and a sign-in that
     * reached its node in that second would find no local database.
     */
    add_drain_step(p, m, (size_t)p->primary);
    {
        struct upgrade_step *s = add_step(p, (size_t)p->target, UPGRADE_SWITCHOVER);
        const char *tid = m[p->target].id;

        snprintf(s->command, sizeof(s->command), "mfactl switchover --to %s", tid);
        snprintf(s->what, sizeof(s->what),
                 "%s becomes the primary, without losing a write; its promotion applies the new "
                 "release's schema migrations (admin writes answer 503 read_only for a few "
                 "seconds; sign-ins go on)",
                 tid);
        snprintf(s->check, sizeof(s->check),
                 "`mfactl status` shows %s primary writable and %s standby streaming from %s", tid,
                 pid, tid);
    }
    add_upgrade_steps(p, m, (size_t)p->primary, m[p->target].id);
}
