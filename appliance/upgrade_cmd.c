/*
 * mfactl upgrade-plan: reads every member's replicator /status (with its
 * node's /ready) and every node's /status (release and schema version), lets
 * upgrade_plan.c decide, and prints the cluster as it stands and the ordered
 * steps of a rolling upgrade (docs/upgrade.md). It changes nothing: the
 * operator, or a script reading --json, runs the steps.
 */
#include "upgrade_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_cmd.h"
#include "ctl.h"
#include "schema.h"
#include "upgrade_plan.h"

struct upgrade_run {
    struct ctl *c;
    size_t n;
    struct plan_member *m;
    struct upgrade_node *nodes;
    struct upgrade_plan *plan;
};

/* Asks every non-witness member's node for GET /status at once. */
static void fetch_nodes(struct upgrade_run *r)
{
    struct ctl_call calls[APPCONF_MAX_MEMBERS];
    size_t k = 0;

    for (size_t i = 0; i < r->n; i++) {
        if (!r->m[i].reachable || r->m[i].role == PLAN_ROLE_WITNESS)
            continue;
        calls[k++] = (struct ctl_call){ i,    CTL_API_NODE,          "GET", "/status",
                                        NULL, CTL_STATUS_TIMEOUT_MS, { 0 } };
    }
    ctl_call_all(r->c, calls, k);
    for (size_t j = 0; j < k; j++) {
        upgrade_node_from_json(calls[j].reply.error ? NULL : calls[j].reply.json,
                               &r->nodes[calls[j].idx]);
        ctl_reply_clear(&calls[j].reply);
    }
}

static json_t *member_json(const struct plan_member *m, const struct upgrade_node *nd)
{
    bool node = m->role != PLAN_ROLE_WITNESS;

    return json_pack(
        "{s:s, s:s, s:o?, s:o?, s:b, s:o?, s:o?, s:o?}", "id", m->id, "role", m->role_name,
        "version", node && nd->version[0] ? json_string(nd->version) : NULL, "upstream",
        m->upstream[0] ? json_string(m->upstream) : NULL, "node_ready", node && m->node_ready,
        "streaming", m->streaming >= 0 ? json_boolean(m->streaming) : NULL, "schema",
        node && nd->has_schema ? json_integer(nd->schema) : NULL, "error",
        m->reachable ? NULL : json_string(m->why));
}

static json_t *step_json(const struct upgrade_run *r, size_t k)
{
    const struct upgrade_step *s = &r->plan->steps[k];

    return json_pack("{s:I, s:s, s:s, s:o?, s:s, s:s}", "n", (json_int_t)(k + 1), "member",
                     r->m[s->member].id, "action", upgrade_action_name(s->action), "command",
                     s->command[0] ? json_string(s->command) : NULL, "what", s->what, "check",
                     s->check);
}

static int print_json(const struct upgrade_run *r, const char *cluster)
{
    const struct upgrade_plan *p = r->plan;
    json_t *members = json_array(), *steps = json_array(), *doc;
    int rc = 0;

    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(members, member_json(&r->m[i], &r->nodes[i]));
    for (size_t k = 0; k < p->nsteps; k++)
        json_array_append_new(steps, step_json(r, k));
    doc = json_pack("{s:s, s:o?, s:o?, s:o, s:{s:o?, s:i, s:i}, s:o, s:o?}", "cluster", cluster,
                    "primary", p->primary >= 0 ? json_string(r->m[p->primary].id) : NULL,
                    "switchover_to", p->target >= 0 ? json_string(r->m[p->target].id) : NULL,
                    "members", members, "schema", "database",
                    p->schema >= 0 ? json_integer(p->schema) : NULL, "min", schema_min(), "max",
                    schema_max(), "steps", steps, "refused",
                    p->verdict == PLAN_REFUSE ? json_string(p->message) : NULL);
    if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2)) < 0) {
        fputs("mfactl: upgrade-plan: cannot print JSON (out of memory)\n", stderr);
        rc = -1;
    } else {
        putchar('\n');
    }
    json_decref(doc);
    return rc;
}

static void print_text(const struct upgrade_run *r)
{
    const struct upgrade_plan *p = r->plan;

    printf("%-8s  %-9s  %-12s  %-6s  %-10s  %s\n", "MEMBER", "ROLE", "RELEASE", "SCHEMA", "NODE",
           "STATE");
    for (size_t i = 0; i < r->n; i++) {
        const struct plan_member *m = &r->m[i];
        const struct upgrade_node *nd = &r->nodes[i];
        bool node = m->role != PLAN_ROLE_WITNESS;
        char schema[16] = "-", state[PLAN_WHY_MAX + 32];

        if (node && nd->has_schema)
            snprintf(schema, sizeof(schema), "%d", nd->schema);
        if (!m->reachable)
            snprintf(state, sizeof(state), "unreachable: %s", m->why);
        else if (m->writable)
            snprintf(state, sizeof(state), "writable");
        else if (m->role == PLAN_ROLE_STANDBY)
            snprintf(state, sizeof(state), "%s from %s",
                     m->streaming == 1 ? "streaming" : "not streaming",
                     m->upstream[0] ? m->upstream : "-");
        else
            snprintf(state, sizeof(state), "-");
        printf("%-8s  %-9s  %-12s  %-6s  %-10s  %s\n", m->id, m->role_name,
               node ? (nd->version[0] ? nd->version : "?") : "-", schema,
               !node           ? "-"
               : m->node_ready ? "ready"
                               : "not ready",
               state);
    }
    if (p->schema >= 0)
        printf("\nschema: the database is at version %d; this mfactl's release works with %d to "
               "%d\n",
               p->schema, schema_min(), schema_max());
    else
        printf("\nschema: the database's version is unknown; this mfactl's release works with %d "
               "to %d\n",
               schema_min(), schema_max());
}

static void print_steps(const struct upgrade_run *r)
{
    const struct upgrade_plan *p = r->plan;

    printf("\nsteps (before step 1: `mfactl backup FILE`; docs/upgrade.md):\n");
    for (size_t k = 0; k < p->nsteps; k++) {
        const struct upgrade_step *s = &p->steps[k];

        printf("%2zu. %-10s %s\n", k + 1, upgrade_action_name(s->action), r->m[s->member].id);
        if (s->command[0])
            printf("    run:   %s\n", s->command);
        printf("    does:  %s\n", s->what);
        printf("    check: %s\n", s->check);
    }
}

int upgrade_plan_cmd(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    struct upgrade_run r = { 0 };
    char *err = NULL;
    size_t answered;
    int ch, rc = CLUSTER_EXIT_OK;

    opterr = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (ch != 'j') {
            fprintf(stderr, "mfactl: upgrade-plan: unknown option %s; see `mfactl --help`\n",
                    argv[optind - 1]);
            return CLUSTER_EXIT_USAGE;
        }
        json = true;
    }
    if (optind != argc) {
        fputs("mfactl: upgrade-plan: takes no arguments besides --json; see `mfactl --help`\n",
              stderr);
        return CLUSTER_EXIT_USAGE;
    }
    r.c = ctl_open(config, &err);
    if (!r.c) {
        fprintf(stderr, "mfactl: %s\n", err ? err : "out of memory");
        free(err);
        return CLUSTER_EXIT_USAGE;
    }
    r.n = ctl_conf(r.c)->cluster.nmembers;
    r.m = calloc(r.n ? r.n : 1, sizeof(*r.m));
    r.nodes = calloc(r.n ? r.n : 1, sizeof(*r.nodes));
    r.plan = calloc(1, sizeof(*r.plan));
    if (!r.m || !r.nodes || !r.plan) {
        fputs("mfactl: out of memory\n", stderr);
        rc = CLUSTER_EXIT_FAILED;
        goto done;
    }
    answered = ctl_fetch(r.c, r.m, NULL, true);
    if (answered == 0) {
        fputs("mfactl: upgrade-plan: no member answered; check that mfa-replicator runs on the "
              "members and that this host reaches their replicator ports\n",
              stderr);
        rc = CLUSTER_EXIT_NO_MEMBER;
        goto done;
    }
    fetch_nodes(&r);
    upgrade_plan(r.m, r.nodes, r.n, schema_min(), schema_max(), r.plan);
    if (json) {
        if (print_json(&r, ctl_conf(r.c)->cluster.name) < 0)
            rc = CLUSTER_EXIT_FAILED;
    } else {
        print_text(&r);
        if (r.plan->verdict == PLAN_GO)
            print_steps(&r);
    }
    fflush(stdout);
    if (r.plan->verdict == PLAN_REFUSE) {
        fprintf(stderr, "mfactl: upgrade-plan: refused: %s\n", r.plan->message);
        rc = r.plan->exit_code;
    }
done:
    free(r.plan);
    free(r.nodes);
    free(r.m);
    ctl_close(r.c);
    return rc;
}
