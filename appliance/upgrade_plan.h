/*
 * The decision behind `mfactl upgrade-plan`: the ordered steps of a rolling
 * upgrade (docs/upgrade.md), as a pure function of the members' replicator
 * /status (struct plan_member, cluster_plan.h) and their nodes' /status
 * (struct upgrade_node): no I/O, no clock, so every rule is unit-tested.
 *
 * A rolling upgrade may start only from a healthy cluster: every member
 * answers, exactly one is a writable primary, every other data member is a
 * standby streaming from it, and every node is ready on a schema its
 * release works with. Otherwise the plan is refused with the first reason.
 *
 * The order, which keeps the cluster serving throughout:
 *   1. witnesses: upgrade only (a replicator, no PostgreSQL, no node);
 *   2. each standby: drain, upgrade, ready. The least advanced standby goes
 *      first and the most advanced last (ties: cluster.members order), so
 *      the standby that leads the others is the one upgraded last, running
 *      the new release, and best placed to catch up fast when fenced;
 *   3. drain the old primary (the switchover stops its PostgreSQL for a
 *      moment: no new sign-in may reach its node then);
 *   4. switchover to that last standby: its promotion applies the new
 *      release's migrations (additive: the old primary's node, still on
 *      the old release, keeps working on them);
 *   5. the old primary, now a standby: upgrade, ready.
 */
#ifndef MFA_APPLIANCE_UPGRADE_PLAN_H
#define MFA_APPLIANCE_UPGRADE_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cluster_plan.h"
#include "mem.h"

#define UPGRADE_VERSION_MAX 64
#define UPGRADE_TEXT_MAX    400

/* What a member's mfa-node said on GET /status (witnesses run none). */
struct upgrade_node {
    bool answered;                     /* a JSON object came back */
    char version[UPGRADE_VERSION_MAX]; /* its release, "" when absent */
    bool has_schema;                   /* schema.database was a number */
    int schema;                        /* the database's schema version */
    bool compatible;                   /* schema.compatible */
};

/*
 * Fills *nd from a node's GET /status reply <doc> (NULL: no usable reply):
 * "version" (a string) and "schema": {"database": integer or null,
 * "compatible": boolean}. A node of a release before the schema report has
 * no "schema": has_schema false. Control characters in the version become '?'.
 */
void upgrade_node_from_json(const json_t *doc, struct upgrade_node *nd);

enum upgrade_action {
    UPGRADE_DRAIN = 0,
    UPGRADE_UPGRADE,
    UPGRADE_READY,
    UPGRADE_SWITCHOVER,
};

struct upgrade_step {
    size_t member; /* index in cluster.members */
    enum upgrade_action action;
    char command[UPGRADE_TEXT_MAX]; /* the mfactl command to run, "" for UPGRADE_UPGRADE */
    char what[UPGRADE_TEXT_MAX];    /* what the step does, for a human */
    char check[UPGRADE_TEXT_MAX];   /* what to see before the next step */
};

/* At most 3 steps per member and one switchover. */
#define UPGRADE_STEPS_MAX (3 * APPCONF_MAX_MEMBERS + 1)

struct upgrade_plan {
    enum plan_verdict verdict;      /* PLAN_GO or PLAN_REFUSE */
    int exit_code;                  /* PLAN_REFUSE: PLAN_EXIT_REFUSED */
    char message[UPGRADE_TEXT_MAX]; /* PLAN_REFUSE: why, a sentence */
    int primary;                    /* the writable primary's index, -1 none */
    int target;                     /* the switchover's target, -1 none */
    int schema;                     /* the primary's node's schema version, -1 unknown */
    struct upgrade_step steps[UPGRADE_STEPS_MAX];
    size_t nsteps;
};

/* The action's name in the JSON ("drain", "upgrade", "ready", "switchover"). */
const char *upgrade_action_name(enum upgrade_action a);

/*
 * Plans the upgrade of the <n> members <m> (cluster.members order) whose
 * nodes said <nodes> (same order; ignored for witnesses) into *p.
 * <schema_min>..<schema_max>: the schema versions this mfactl's release
 * works with, for the messages.
 */
void upgrade_plan(const struct plan_member *m, const struct upgrade_node *nodes, size_t n,
                  int schema_min, int schema_max, struct upgrade_plan *p);

#endif
