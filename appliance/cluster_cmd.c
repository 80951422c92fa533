/*
 * mfactl status, switchover, failover and rejoin; see cluster_cmd.h.
 *
 * The commands read like the runbooks they replace: fetch every member's
 * /status, let cluster_plan.c decide, then carry the steps out one POST at a
 * time, each step printed as it ends. When a step fails, the message says
 * what state the cluster was left in and what to run next; a switchover that
 * cannot finish puts the old primary back (POST /resume) so that nothing has
 * changed. A switchover also drains the old primary on the balancers while
 * its database restarts, and puts it back to ready at the end (struct held).
 *
 * The replicators do the work; mfactl only asks and watches. After a
 * promotion every other member that answered is told to follow the new
 * primary (POST /rejoin), and mfactl waits until each streams from it; a
 * member that was down is left to rejoin on its own when it returns.
 */
#include "cluster_cmd.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_plan.h"
#include "ctl.h"
#include "server_cmd.h"

#define DEFAULT_TIMEOUT_S 30.0
#define REJOIN_TIMEOUT_S  120.0
#define MAX_TIMEOUT_S     86400.0
#define CATCHUP_POLL_S    0.05
#define STREAM_POLL_S     0.25
#define CELL_MAX          (PLAN_WHY_MAX + 32)

enum {
    ARG_TO = 1 << 0,
    ARG_TIMEOUT = 1 << 1,
    ARG_FORCE = 1 << 2,
    ARG_JSON = 1 << 3,
};

struct cmd_args {
    const char *to;
    const char *member; /* the positional argument, when one is taken */
    double timeout_s;
    bool force, json;
};

/* One command being run: the client and the members' last statuses. */
struct run {
    struct ctl *c;
    const struct appconf *conf;
    const char *config;
    size_t n;
    struct plan_member *m;         /* [n], cluster.members order */
    char (*bal)[SERVER_STATE_MAX]; /* [n]: the balancers' state of each, "" unknown */
    bool json;
    json_t *extra; /* keys added to the --json status (owned), or NULL */
    FILE *out;     /* progress */
};

enum {
    COL_MEMBER = 0,
    COL_ROLE,
    COL_TL,
    COL_LSN,
    COL_LAG,
    COL_UPSTREAM,
    COL_BALANCER,
    COL_STATE,
    NCOLS
};

static const char *const col_names[NCOLS] = {
    [COL_MEMBER] = "MEMBER",     [COL_ROLE] = "ROLE",         [COL_TL] = "TL",
    [COL_LSN] = "LSN",           [COL_UPSTREAM] = "UPSTREAM", [COL_LAG] = "LAG",
    [COL_BALANCER] = "BALANCER", [COL_STATE] = "STATE",
};

/* ---- output ---------------------------------------------------------------- */

static int say_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "mfactl: <sentence>" on stderr; returns <code>. */
static int say_error(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("mfactl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static void progress(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void progress(struct run *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(r->out, fmt, ap);
    va_end(ap);
    fputc('\n', r->out);
    fflush(r->out);
}

/* "512 B", "1.5 KiB", "3.0 MiB": for the table, where space is short. */
static void short_bytes(int64_t n, char *buf, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, size, "%" PRId64 " B", n);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < MFA_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void state_text(const struct plan_member *m, char *buf, size_t size)
{
    const char *reason = m->fence_reason[0] ? m->fence_reason : NULL;

    if (!m->reachable)
        snprintf(buf, size, "unreachable: %s", m->why);
    else if (m->writable)
        snprintf(buf, size, "writable");
    else if (m->fenced)
        snprintf(buf, size, "fenced%s%s%s", reason ? " (" : "", reason ? reason : "",
                 reason ? ")" : "");
    else if (m->role == PLAN_ROLE_STANDBY && m->streaming == 1)
        snprintf(buf, size, "streaming");
    else if (m->role == PLAN_ROLE_STANDBY && m->streaming == 0)
        snprintf(buf, size, "not streaming");
    else if (m->role == PLAN_ROLE_PRIMARY)
        snprintf(buf, size, "read-only");
    else
        snprintf(buf, size, "-");
}

static void row_cells(const struct plan_member *m, const char *bal, char cells[NCOLS][CELL_MAX])
{
    char bytes[32], lsn[PLAN_LSN_MAX];

    snprintf(cells[COL_MEMBER], CELL_MAX, "%s", m->id);
    snprintf(cells[COL_ROLE], CELL_MAX, "%s", m->role_name);
    if (m->has_pos) {
        snprintf(cells[COL_TL], CELL_MAX, "%" PRId64, m->timeline);
        snprintf(cells[COL_LSN], CELL_MAX, "%s", plan_lsn_format(m->lsn, lsn));
    } else {
        snprintf(cells[COL_TL], CELL_MAX, "-");
        snprintf(cells[COL_LSN], CELL_MAX, "-");
    }
    if (m->has_lag) {
        short_bytes(m->lag_bytes, bytes, sizeof(bytes));
        if (m->has_lag_s)
            snprintf(cells[COL_LAG], CELL_MAX, "%s, %.1f s", bytes, m->lag_seconds);
        else
            snprintf(cells[COL_LAG], CELL_MAX, "%s", bytes);
    } else {
        snprintf(cells[COL_LAG], CELL_MAX, "-");
    }
    snprintf(cells[COL_UPSTREAM], CELL_MAX, "%s", m->upstream[0] ? m->upstream : "-");
    snprintf(cells[COL_BALANCER], CELL_MAX, "%s", bal[0] ? bal : "-");
    state_text(m, cells[COL_STATE], CELL_MAX);
}

static void print_table(struct run *r)
{
    char(*cells)[NCOLS][CELL_MAX] = calloc(r->n, sizeof(*cells));
    size_t width[NCOLS];

    if (!cells) {
        say_error(1, "out of memory");
        return;
    }
    for (size_t k = 0; k < NCOLS; k++)
        width[k] = strlen(col_names[k]);
    for (size_t i = 0; i < r->n; i++) {
        row_cells(&r->m[i], r->bal[i], cells[i]);
        for (size_t k = 0; k < NCOLS; k++) {
            if (strlen(cells[i][k]) > width[k])
                width[k] = strlen(cells[i][k]);
        }
    }
    for (size_t k = 0; k + 1 < NCOLS; k++)
        printf("%-*s  ", (int)width[k], col_names[k]);
    printf("%s\n", col_names[NCOLS - 1]);
    for (size_t i = 0; i < r->n; i++) {
        for (size_t k = 0; k + 1 < NCOLS; k++)
            printf("%-*s  ", (int)width[k], cells[i][k]);
        printf("%s\n", cells[i][NCOLS - 1]);
    }
    fflush(stdout);
    free(cells);
}

static json_t *member_json(const struct plan_member *m, const char *bal)
{
    char lsn[PLAN_LSN_MAX];
    bool up = m->reachable;

    return json_pack("{s:s, s:s, s:o?, s:o?, s:o?, s:o?, s:o?, s:o?, s:o?, s:o?, s:o?, s:b, s:b, "
                     "s:o?, s:o?}",
                     "id", m->id, "role", m->role_name, "timeline",
                     m->has_pos ? json_integer(m->timeline) : NULL, "lsn",
                     m->has_pos ? json_string(plan_lsn_format(m->lsn, lsn)) : NULL, "lag_bytes",
                     m->has_lag ? json_integer(m->lag_bytes) : NULL, "lag_seconds",
                     m->has_lag_s ? json_real(m->lag_seconds) : NULL, "upstream",
                     m->upstream[0] ? json_string(m->upstream) : NULL, "streaming",
                     m->streaming >= 0 ? json_boolean(m->streaming) : NULL, "writable",
                     up ? json_boolean(m->writable) : NULL, "fenced",
                     up ? json_boolean(m->fenced) : NULL, "fence_reason",
                     m->fence_reason[0] ? json_string(m->fence_reason) : NULL, "reachable", up,
                     "node_ready", m->node_ready, "balancer_state",
                     bal[0] ? json_string(bal) : NULL, "error", up ? NULL : json_string(m->why));
}

static void print_json(struct run *r)
{
    json_t *members = json_array(), *doc;

    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(members, member_json(&r->m[i], r->bal[i]));
    doc = json_pack("{s:s, s:o}", "cluster", r->conf->cluster.name, "members", members);
    if (doc && r->extra)
        json_object_update(doc, r->extra);
    if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2)) < 0)
        say_error(1, "cannot print the status as JSON (out of memory)");
    else
        putchar('\n');
    fflush(stdout);
    json_decref(doc);
}

/*
 * Prints the members' last statuses, with the balancers' state of each
 * (asked now: server_cmd_states()).
 */
static void print_status(struct run *r)
{
    server_cmd_states(r->c, r->bal);
    if (r->json)
        print_json(r);
    else
        print_table(r);
}

/* ---- set-up ---------------------------------------------------------------- */

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !isfinite(v) || v <= 0 || v > MAX_TIMEOUT_S)
        return -1;
    *out = v;
    return 0;
}

/*
 * Parses a command's options (those in <allowed>) and <npos> positional
 * arguments (0 or 1) into *a. Returns 0, or -1 after saying what is wrong.
 */
static int parse_args(int argc, char **argv, unsigned allowed, int npos, struct cmd_args *a)
{
    static const struct option opts[] = {
        { "to", required_argument, NULL, 't' },
        { "timeout", required_argument, NULL, 'T' },
        { "force", no_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = argv[0];
    int ch, idx;

    opterr = 0;
    optind = 0; /* glibc: start afresh on this argv */
    while ((ch = getopt_long(argc, argv, ":", opts, &idx)) != -1) {
        unsigned flag = ch == 't'   ? ARG_TO
                        : ch == 'T' ? ARG_TIMEOUT
                        : ch == 'f' ? ARG_FORCE
                        : ch == 'j' ? ARG_JSON
                                    : 0;

        if (ch == ':') {
            say_error(2, "%s: %s needs a value; see `mfactl --help`", cmd, argv[optind - 1]);
            return -1;
        }
        if (!flag || !(allowed & flag)) {
            say_error(2, "%s: unknown option %s; see `mfactl --help`", cmd, argv[optind - 1]);
            return -1;
        }
        if (flag == ARG_TO)
            a->to = optarg;
        else if (flag == ARG_FORCE)
            a->force = true;
        else if (flag == ARG_JSON)
            a->json = true;
        else if (parse_seconds(optarg, &a->timeout_s) < 0) {
            say_error(2, "%s: --timeout takes seconds, more than 0 and at most %.0f, not \"%s\"",
                      cmd, MAX_TIMEOUT_S, optarg);
            return -1;
        }
    }
    if (argc - optind != npos) {
        say_error(2, "%s: %s; see `mfactl --help`", cmd,
                  npos ? "name the member, once" : "takes no arguments besides its options");
        return -1;
    }
    if (npos)
        a->member = argv[optind];
    return 0;
}

/* Opens the client. Returns 0, or -1 after saying why (exit code 2). */
static int run_open(struct run *r, const char *config, bool json)
{
    char *err = NULL;

    r->config = config;
    r->json = json;
    r->out = json ? stderr : stdout;
    r->c = ctl_open(config, &err);
    if (!r->c) {
        say_error(2, "%s", err ? err : "out of memory");
        free(err);
        return -1;
    }
    r->conf = ctl_conf(r->c);
    r->n = r->conf->cluster.nmembers;
    r->m = calloc(r->n ? r->n : 1, sizeof(*r->m));
    r->bal = calloc(r->n ? r->n : 1, sizeof(*r->bal));
    if (!r->m || !r->bal) {
        say_error(2, "out of memory");
        return -1;
    }
    return 0;
}

static void run_close(struct run *r)
{
    ctl_close(r->c);
    mfa_free(r->m);
    mfa_free(r->bal);
    json_decref(r->extra);
    r->extra = NULL;
}

/* The index of member <id>, or -1 after a usage error naming the members. */
static int member_arg(struct run *r, const char *cmd, const char *id)
{
    int idx = ctl_member_index(r->c, id);

    if (idx >= 0)
        return idx;
    fprintf(stderr, "mfactl: %s: \"%s\" is not a member in %s; the members are", cmd, id,
            r->config);
    for (size_t i = 0; i < r->n; i++)
        fprintf(stderr, "%s %s", i ? "," : "", r->conf->cluster.members[i].id);
    fputc('\n', stderr);
    return -1;
}

static int none_answered(struct run *r)
{
    fputs("mfactl: no member answered:", stderr);
    for (size_t i = 0; i < r->n; i++)
        fprintf(stderr, "%s %s (%s)", i ? ";" : "", r->m[i].id, r->m[i].why);
    fputs(". Check that mfa-replicator runs on the members and that this host reaches their "
          "replicator ports\n",
          stderr);
    return CLUSTER_EXIT_NO_MEMBER;
}

/* ---- steps shared by the commands --------------------------------------- */

/* How <m> stands towards following <primary>, for progress lines. */
static void follow_text(const struct plan_member *m, const char *primary, char *buf, size_t size)
{
    if (!m->reachable)
        snprintf(buf, size, "unreachable: %s", m->why);
    else if (plan_streams_from(m, primary))
        snprintf(buf, size, "streaming from %s", primary);
    else if (m->role == PLAN_ROLE_STANDBY && m->upstream[0])
        snprintf(buf, size, "standby of %s, %s", m->upstream,
                 m->streaming == 1 ? "streaming" : "not streaming");
    else if (m->role == PLAN_ROLE_STANDBY)
        snprintf(buf, size, "standby without an upstream");
    else
        snprintf(buf, size, "%s", m->role_name);
}

/*
 * Polls the members in <targets> until each streams from <primary>, for at
 * most <timeout_s> or until interrupted, printing every change. Returns how
 * many did not get there; r->m holds their last statuses.
 */
static size_t await_streaming(struct run *r, const bool *targets, size_t primary, double timeout_s)
{
    char(*last)[CELL_MAX] = calloc(r->n, sizeof(*last));
    const char *pid = r->conf->cluster.members[primary].id;
    double deadline = ctl_elapsed_s(r->c) + timeout_s;
    char now[CELL_MAX];
    size_t left;

    for (;;) {
        ctl_fetch(r->c, r->m, targets, false);
        left = 0;
        for (size_t i = 0; i < r->n; i++) {
            if (!targets[i])
                continue;
            follow_text(&r->m[i], pid, now, sizeof(now));
            if (last && strcmp(last[i], now) != 0) {
                progress(r, "[%6.2f s] %s: %s", ctl_elapsed_s(r->c), r->m[i].id, now);
                snprintf(last[i], CELL_MAX, "%s", now);
            }
            left += !plan_streams_from(&r->m[i], pid);
        }
        if (!left || ctl_elapsed_s(r->c) >= deadline || !ctl_sleep(r->c, STREAM_POLL_S))
            break;
    }
    free(last);
    return left;
}

/*
 * POSTs /promote to <to>. Returns 0 with *timeline (-1: not reported) once
 * <to> is a writable primary; else -1 with *why (malloc'd) and *not_promoted
 * set when <to> certainly did not promote. A reply that does not settle it
 * (timeout, 5xx) is checked against <to>'s /status.
 */
/* How long an unclear promotion is watched before mfactl gives up on knowing. */
#define PROMOTE_SETTLE_S 130.0

static int promote(struct run *r, size_t to, int64_t *timeline, bool *not_promoted, char **why)
{
    struct ctl_reply rep;
    const json_t *tl;
    struct plan_member *t = &r->m[to];
    bool want[APPCONF_MAX_MEMBERS] = { false };

    *timeline = -1;
    *not_promoted = false;
    if (ctl_post(r->c, to, "/promote", NULL, CTL_PROMOTE_TIMEOUT_MS, &rep) == 0) {
        tl = json_object_get(rep.json, "timeline");
        if (json_is_integer(tl))
            *timeline = json_integer_value(tl);
        ctl_reply_clear(&rep);
        return 0;
    }
    *why = rep.error;
    rep.error = NULL;
    if (rep.status >= 400 && rep.status <= 499) {
        *not_promoted = true;
        ctl_reply_clear(&rep);
        return -1;
    }
    ctl_reply_clear(&rep);
    want[to] = true;
    /*
     * PostgreSQL may finish a promotion the request gave up on: only a
     * standby whose replicator has no promotion under way any more certainly
     * did not promote.
     */
    for (double until = ctl_elapsed_s(r->c) + PROMOTE_SETTLE_S;;) {
        ctl_fetch(r->c, r->m, want, false);
        if (t->reachable && (t->writable || t->role == PLAN_ROLE_PRIMARY)) {
            *timeline = t->has_pos ? t->timeline : -1;
            mfa_free(*why);
            return 0;
        }
        if (t->reachable && t->role == PLAN_ROLE_STANDBY && strcmp(t->task, "promote") != 0) {
            *not_promoted = true;
            return -1;
        }
        if (ctl_elapsed_s(r->c) >= until || !ctl_sleep(r->c, STREAM_POLL_S))
            return -1;
    }
}

static void print_promoted(struct run *r, size_t to, int64_t timeline)
{
    if (timeline >= 0)
        progress(r, "promoted %s (timeline %" PRId64 ") in %.2f s", r->m[to].id, timeline,
                 ctl_elapsed_s(r->c));
    else
        progress(r, "promoted %s in %.2f s", r->m[to].id, ctl_elapsed_s(r->c));
}

/*
 * After <primary> was promoted: tells every other member in <answered> to
 * follow it, names the ones that were down, waits until the told ones
 * stream. Sets targets[i] for the members told. Returns the exit code so
 * far; report_followers() ends the job.
 */
static int ask_to_follow(struct run *r, size_t primary, const bool *answered, double timeout_s,
                         bool *targets)
{
    const char *pid = r->conf->cluster.members[primary].id;
    json_t *body = json_pack("{s:s}", "primary", pid);
    size_t ntargets = 0;
    int rc = CLUSTER_EXIT_OK;

    for (size_t i = 0; i < r->n; i++) {
        struct ctl_reply rep;

        targets[i] = false;
        if (i == primary || (answered[i] && r->m[i].role == PLAN_ROLE_WITNESS))
            continue;
        if (!answered[i]) {
            progress(r, "%s is down; it will rejoin when it comes back", r->m[i].id);
            continue;
        }
        if (ctl_post(r->c, i, "/rejoin", body, CTL_OTHER_TIMEOUT_MS, &rep) < 0) {
            say_error(1,
                      "asking %s to follow %s failed: %s; once it answers, run `mfactl rejoin "
                      "%s --to %s`",
                      r->m[i].id, pid, rep.error, r->m[i].id, pid);
            rc = CLUSTER_EXIT_FAILED;
        } else {
            progress(r, "%s: asked to follow %s", r->m[i].id, pid);
            targets[i] = true;
            ntargets++;
        }
        ctl_reply_clear(&rep);
    }
    json_decref(body);
    if (ntargets) {
        progress(r, "waiting up to %g s for the others to stream from %s", timeout_s, pid);
        await_streaming(r, targets, primary, timeout_s);
    }
    return rc;
}

/*
 * Prints the cluster's status and names each member in <targets> that does
 * not stream from <primary> yet. Returns <rc>, or 1 when one does not.
 */
static int report_followers(struct run *r, size_t primary, const bool *targets, int rc)
{
    const char *pid = r->conf->cluster.members[primary].id;

    ctl_fetch(r->c, r->m, NULL, true);
    print_status(r);
    for (size_t i = 0; i < r->n; i++) {
        char now[CELL_MAX];

        if (!targets[i] || plan_streams_from(&r->m[i], pid))
            continue;
        follow_text(&r->m[i], pid, now, sizeof(now));
        say_error(1,
                  "%s does not stream from %s yet (%s)%s; it keeps trying on its own: watch "
                  "`mfactl status`, or run `mfactl rejoin %s --to %s`",
                  r->m[i].id, pid, now,
                  ctl_interrupted(r->c) ? " and the wait was interrupted" : " after the wait",
                  r->m[i].id, pid);
        rc = CLUSTER_EXIT_FAILED;
    }
    return rc;
}

/* The steps after a promotion, for failover: ask_to_follow(), report_followers(). */
static int follow_new_primary(struct run *r, size_t primary, const bool *answered, double timeout_s)
{
    bool targets[APPCONF_MAX_MEMBERS] = { false };
    int rc = ask_to_follow(r, primary, answered, timeout_s, targets);

    return report_followers(r, primary, targets, rc);
}

/* ---- status ------------------------------------------------------------------ */

int cluster_cmd_status(const char *config, bool json, int argc, char **argv)
{
    struct cmd_args a = { 0 };
    struct run r = { 0 };
    size_t answered;
    int rc;

    if (parse_args(argc, argv, ARG_JSON, 0, &a) < 0)
        return CLUSTER_EXIT_USAGE;
    if (run_open(&r, config, json || a.json) < 0) {
        run_close(&r);
        return CLUSTER_EXIT_USAGE;
    }
    answered = ctl_fetch(r.c, r.m, NULL, true);
    print_status(&r);
    rc = answered ? CLUSTER_EXIT_OK : none_answered(&r);
    run_close(&r);
    return rc;
}

/* ---- switchover --------------------------------------------------------------- */

/*
 * The old primary on the balancers. While a switchover runs, its PostgreSQL
 * is stopped for a second or two, and a new sign-in its node took then would
 * fail (503 database_unavailable). So the switchover drains it first on the
 * balancers where it is ready: new work goes to the others, while its own
 * challenges and portal sessions still reach it (they are not waited for:
 * they need the database only for a moment, and the node keeps them). At the
 * end it is put back to ready on exactly those balancers, once its node is
 * ready again. A state the operator set (drain, maint) is never touched.
 */
struct held {
    size_t member;
    size_t ndrained, nrestored;
    bool drained[APPCONF_MAX_MEMBERS];  /* the balancers that took "drain" from "ready" */
    bool restored[APPCONF_MAX_MEMBERS]; /* those of them that took "ready" again */
};

/* The ids of the balancers with set[i], as "n2, n3" into <buf>. */
static const char *balancer_ids(const struct run *r, const bool *set, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < r->n && len < size; i++) {
        if (set[i])
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "",
                                    r->conf->cluster.members[i].id);
    }
    return buf;
}

/* The ids of the balancers with set[i], as a JSON array (new reference). */
static json_t *balancer_ids_json(const struct run *r, const bool *set)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < r->n; i++) {
        if (set[i])
            json_array_append_new(a, json_string(r->conf->cluster.members[i].id));
    }
    return a;
}

#define IDS_MAX (APPCONF_MAX_MEMBERS * SERVER_ID_MAX + 8)

/*
 * Drains member <p> on every balancer where it is "ready", into *h. A
 * balancer that does not answer is named and the switchover goes on, as
 * `mfactl drain` does: at worst a sign-in there meets the restart.
 */
static void drain_old_primary(struct run *r, size_t p, struct held *h)
{
    const char *id = r->conf->cluster.members[p].id;
    struct server_move mv;
    size_t answered = 0;
    char ids[IDS_MAX];

    memset(h, 0, sizeof(*h));
    h->member = p;
    h->ndrained = server_cmd_move(r->c, p, "ready", "drain", NULL, &mv);
    for (size_t i = 0; i < mv.n; i++) {
        answered += mv.up[i];
        h->drained[i] = mv.outcome[i] == SERVER_TOOK;
    }
    if (!answered) {
        progress(r, "no balancer answered: %s is not drained", id);
        return;
    }
    for (size_t i = 0; i < mv.n; i++) {
        const char *bal = r->conf->cluster.members[i].id;

        if (!mv.up[i])
            say_error(0, "warning: %s: its balancer does not answer (%s): %s is not drained there",
                      bal, mv.why[i], id);
        else if (mv.outcome[i] == SERVER_REFUSED || mv.outcome[i] == SERVER_FAILED)
            say_error(0, "warning: %s: draining %s failed: %s; it may send %s new sign-ins", bal,
                      id, mv.why[i], id);
    }
    if (h->ndrained)
        progress(r, "drained %s on %s: new sign-ins go to the others while its database restarts",
                 id, balancer_ids(r, h->drained, ids, sizeof(ids)));
    else
        progress(r, "%s is not ready on any balancer that answered: its state is left as it is",
                 id);
}

/* Polls <p>'s node until GET /ready answers 200, for at most <timeout_s>. */
static bool await_node_ready(struct run *r, size_t p, double timeout_s)
{
    bool want[APPCONF_MAX_MEMBERS] = { false };
    double deadline = ctl_elapsed_s(r->c) + timeout_s;

    want[p] = true;
    for (;;) {
        ctl_fetch(r->c, r->m, want, true);
        if (r->m[p].node_ready)
            return true;
        if (ctl_elapsed_s(r->c) >= deadline || !ctl_sleep(r->c, STREAM_POLL_S))
            return false;
    }
}

/*
 * Puts the member of *h back to "ready" on the balancers that drained it,
 * once its node answers /ready 200 (within <timeout_s>): before that, new
 * sign-ins would meet a database still starting. Where it is no longer
 * "drain" (the operator changed it meanwhile) it is left alone. Says what
 * is left for the operator to do; the exit code does not change.
 */
static void restore_old_primary(struct run *r, struct held *h, double timeout_s)
{
    const char *id = r->conf->cluster.members[h->member].id;
    struct server_move mv;
    char ids[IDS_MAX];

    if (!h->ndrained)
        return;
    progress(r, "waiting up to %g s for %s's node to be ready before it takes new sign-ins",
             timeout_s, id);
    if (!await_node_ready(r, h->member, timeout_s)) {
        say_error(0,
                  "warning: %s's node is not ready %s: it stays drained on %s; once `mfactl "
                  "status` shows it ready, run `mfactl ready %s`",
                  id, ctl_interrupted(r->c) ? "and the wait was interrupted" : "after the wait",
                  balancer_ids(r, h->drained, ids, sizeof(ids)), id);
        return;
    }
    h->nrestored = server_cmd_move(r->c, h->member, "drain", "ready", h->drained, &mv);
    for (size_t i = 0; i < mv.n; i++) {
        const char *bal = r->conf->cluster.members[i].id;

        h->restored[i] = mv.outcome[i] == SERVER_TOOK;
        if (!h->drained[i] || h->restored[i])
            continue;
        if (!mv.up[i])
            say_error(0,
                      "warning: %s: its balancer does not answer (%s): %s stays drained there; "
                      "run `mfactl ready %s` once it does",
                      bal, mv.why[i], id, id);
        else if (mv.outcome[i] == SERVER_NOT_ASKED)
            progress(r, "%s: %s is %s there now, set meanwhile: left so", bal, id,
                     mv.state[i][0] ? mv.state[i] : "not listed");
        else
            say_error(0, "warning: %s: putting %s back to ready failed: %s; run `mfactl ready %s`",
                      bal, id, mv.why[i], id);
    }
    if (h->nrestored)
        progress(r, "%s is ready again on %s", id, balancer_ids(r, h->restored, ids, sizeof(ids)));
}

/* For a switchover that ends with the old primary's state unclear. */
static void note_still_drained(struct run *r, const struct held *h)
{
    const char *id = r->conf->cluster.members[h->member].id;
    char ids[IDS_MAX];

    if (h->ndrained)
        say_error(0, "note: %s stays drained on %s; run `mfactl ready %s` once it serves again", id,
                  balancer_ids(r, h->drained, ids, sizeof(ids)), id);
}

/* The --json status's "old_primary": what was drained and put back. */
static json_t *held_json(const struct run *r, const struct held *h)
{
    return json_pack("{s:{s:s, s:o, s:o}}", "old_primary", "id",
                     r->conf->cluster.members[h->member].id, "drained_on",
                     balancer_ids_json(r, h->drained), "ready_again_on",
                     balancer_ids_json(r, h->restored));
}

/*
 * Abandons a switchover after <primary> was fenced: POST /resume, then puts
 * it back on the balancers (*h). <why> says what went wrong. Returns exit
 * code 1.
 */
static int resume_primary(struct run *r, size_t primary, size_t to, const char *why, struct held *h,
                          double timeout_s)
{
    const char *pid = r->m[primary].id;
    struct ctl_reply rep;

    progress(r, "resuming %s as primary", pid);
    if (ctl_post(r->c, primary, "/resume", NULL, CTL_OTHER_TIMEOUT_MS, &rep) == 0) {
        ctl_reply_clear(&rep);
        restore_old_primary(r, h, timeout_s);
        return say_error(1, "%s; resumed %s as primary: nothing has changed", why, pid);
    }
    say_error(1,
              "%s, and resuming %s failed too: %s. The cluster may have NO writable primary: run "
              "`mfactl status`; if %s stays stopped, `mfactl failover --to %s` promotes %s (losing "
              "what %s did not replay)",
              why, pid, rep.error, pid, r->m[to].id, r->m[to].id, r->m[to].id);
    ctl_reply_clear(&rep);
    note_still_drained(r, h);
    return CLUSTER_EXIT_FAILED;
}

/*
 * Polls <to> every CATCHUP_POLL_S until it has replayed <lsn>. Returns 0, or
 * -1 with a sentence in <why> (timeout or interrupt).
 */
static int await_replay(struct run *r, size_t to, uint64_t lsn, double timeout_s, char *why,
                        size_t size)
{
    bool want[APPCONF_MAX_MEMBERS] = { false };
    const struct plan_member *t = &r->m[to];
    double deadline = ctl_elapsed_s(r->c) + timeout_s;
    char want_lsn[PLAN_LSN_MAX], got[PLAN_LSN_MAX];

    want[to] = true;
    for (;;) {
        ctl_fetch(r->c, r->m, want, false);
        /* Past the shutdown checkpoint's start: the record itself is replayed. */
        if (t->reachable && t->has_replay && t->replay_lsn > lsn)
            return 0;
        if (ctl_elapsed_s(r->c) >= deadline || !ctl_sleep(r->c, CATCHUP_POLL_S))
            break;
    }
    plan_lsn_format(lsn, want_lsn);
    if (!t->reachable)
        snprintf(got, sizeof(got), "?");
    else if (t->has_replay)
        plan_lsn_format(t->replay_lsn, got);
    else
        snprintf(got, sizeof(got), "none");
    snprintf(why, size, "%s did not replay the shutdown checkpoint %s %s (last: %s%s%s)", t->id,
             want_lsn, ctl_interrupted(r->c) ? "before the interrupt" : "in time", got,
             t->reachable ? "" : ", unreachable: ", t->reachable ? "" : t->why);
    if (!ctl_interrupted(r->c))
        snprintf(why + strlen(why), size - strlen(why), "; --timeout was %g s", timeout_s);
    return -1;
}

int cluster_cmd_switchover(const char *config, bool json, int argc, char **argv)
{
    struct cmd_args a = { .timeout_s = DEFAULT_TIMEOUT_S };
    struct plan_decision d = { 0 };
    struct run r = { 0 };
    struct ctl_reply rep = { 0 };
    struct held h = { 0 };
    bool answered[APPCONF_MAX_MEMBERS] = { false }, targets[APPCONF_MAX_MEMBERS], not_promoted;
    const char *lsn_text;
    char why[2 * PLAN_WHY_MAX], *err = NULL;
    uint64_t shutdown_lsn;
    int64_t timeline;
    int to, p, rc = CLUSTER_EXIT_FAILED;

    if (parse_args(argc, argv, ARG_TO | ARG_TIMEOUT | ARG_JSON, 0, &a) < 0)
        return CLUSTER_EXIT_USAGE;
    if (!a.to)
        return say_error(2, "switchover: say which member takes over with --to N");
    if (run_open(&r, config, json || a.json) < 0 || (to = member_arg(&r, "switchover", a.to)) < 0) {
        run_close(&r);
        return CLUSTER_EXIT_USAGE;
    }
    if (!ctl_fetch(r.c, r.m, NULL, false)) {
        rc = none_answered(&r);
        goto out;
    }
    for (size_t i = 0; i < r.n; i++)
        answered[i] = r.m[i].reachable;
    if (plan_switchover(r.m, r.n, (size_t)to, &d) < 0) {
        rc = say_error(1, "out of memory");
        goto out;
    }
    if (d.verdict != PLAN_GO) {
        rc = say_error(3, "refused: %s; nothing was changed", d.message);
        goto out;
    }
    p = d.primary;
    drain_old_primary(&r, (size_t)p, &h);

    progress(&r, "fencing %s (checkpoint and stop)", r.m[p].id);
    if (ctl_post(r.c, (size_t)p, "/fence", NULL, CTL_FENCE_TIMEOUT_MS, &rep) < 0) {
        if (rep.status >= 400 && rep.status <= 499) {
            restore_old_primary(&r, &h, a.timeout_s);
            rc = say_error(1, "fencing %s failed: %s; nothing was changed", r.m[p].id, rep.error);
            goto out;
        }
        snprintf(why, sizeof(why), "fencing %s failed: %s", r.m[p].id, rep.error);
        rc = resume_primary(&r, (size_t)p, (size_t)to, why, &h, a.timeout_s);
        goto out;
    }
    lsn_text = json_string_value(json_object_get(rep.json, "shutdown_lsn"));
    if (!lsn_text || plan_lsn_parse(lsn_text, &shutdown_lsn) < 0) {
        snprintf(why, sizeof(why), "%s's /fence reply has no valid \"shutdown_lsn\"", r.m[p].id);
        rc = resume_primary(&r, (size_t)p, (size_t)to, why, &h, a.timeout_s);
        goto out;
    }
    progress(&r, "%s stopped at %s; waiting up to %g s for %s to replay it", r.m[p].id, lsn_text,
             a.timeout_s, r.m[to].id);
    if (await_replay(&r, (size_t)to, shutdown_lsn, a.timeout_s, why, sizeof(why)) < 0) {
        rc = resume_primary(&r, (size_t)p, (size_t)to, why, &h, a.timeout_s);
        goto out;
    }

    progress(&r, "%s has replayed it; promoting %s", r.m[to].id, r.m[to].id);
    if (promote(&r, (size_t)to, &timeline, &not_promoted, &err) < 0) {
        if (not_promoted) {
            snprintf(why, sizeof(why), "promoting %s failed: %s", r.m[to].id, err);
            rc = resume_primary(&r, (size_t)p, (size_t)to, why, &h, a.timeout_s);
        } else {
            rc = say_error(1,
                           "promoting %s gave no clear answer: %s. %s is stopped. Run `mfactl "
                           "status`: if %s is a writable primary, run `mfactl rejoin %s --to %s`; "
                           "if it is still a standby, run `mfactl switchover --to %s` again",
                           r.m[to].id, err, r.m[p].id, r.m[to].id, r.m[p].id, r.m[to].id,
                           r.m[to].id);
            note_still_drained(&r, &h);
        }
        goto out;
    }
    print_promoted(&r, (size_t)to, timeline);
    /* The old primary streams from <to> (it is among the targets) before its node is awaited. */
    rc = ask_to_follow(&r, (size_t)to, answered, a.timeout_s, targets);
    restore_old_primary(&r, &h, a.timeout_s);
    r.extra = held_json(&r, &h);
    rc = report_followers(&r, (size_t)to, targets, rc);
out:
    free(err);
    ctl_reply_clear(&rep);
    plan_decision_clear(&d);
    run_close(&r);
    return rc;
}

/* ---- failover ------------------------------------------------------------------ */

/* True when a member that answered reports having seen member <old> at all. */
static bool sighting_reported(const struct plan_member *m, size_t n, int old)
{
    for (size_t i = 0; i < n; i++) {
        const struct plan_peer *p;

        if ((int)i != old && m[i].reachable && (p = plan_peer_of(&m[i], m[old].id)) &&
            (p->seen || p->has_age))
            return true;
    }
    return false;
}

int cluster_cmd_failover(const char *config, bool json, int argc, char **argv)
{
    struct cmd_args a = { .timeout_s = DEFAULT_TIMEOUT_S };
    struct plan_decision d = { 0 };
    struct plan_failover_opts o = { 0 };
    struct run r = { 0 };
    bool answered[APPCONF_MAX_MEMBERS] = { false }, not_promoted;
    double watch_from = -1, fetched_at, limit;
    char *err = NULL;
    int64_t timeline;
    int to, old, rc = CLUSTER_EXIT_FAILED;

    if (parse_args(argc, argv, ARG_TO | ARG_TIMEOUT | ARG_FORCE | ARG_JSON, 0, &a) < 0)
        return CLUSTER_EXIT_USAGE;
    if (!a.to)
        return say_error(2, "failover: say which member to promote with --to N");
    if (run_open(&r, config, json || a.json) < 0 || (to = member_arg(&r, "failover", a.to)) < 0) {
        run_close(&r);
        return CLUSTER_EXIT_USAGE;
    }
    o.fence_after = r.conf->cluster.fence_after;
    o.detect_s =
        (r.conf->replicator.peer_timeout_ms + r.conf->replicator.poll_interval_ms) / 1000.0;
    o.force = a.force;
    limit = o.fence_after + o.detect_s + PLAN_FENCE_MARGIN_S + a.timeout_s;
    for (;;) {
        fetched_at = ctl_elapsed_s(r.c);
        if (!ctl_fetch(r.c, r.m, NULL, false)) {
            rc = none_answered(&r);
            goto out;
        }
        /* See plan_failover_opts.watched_unseen_s: from the end of the first
         * fetch that found it unseen to the start of this one. */
        old = plan_old_primary(r.m, r.n, (size_t)to);
        if (old >= 0 && !r.m[old].reachable && !sighting_reported(r.m, r.n, old)) {
            o.watched_unseen_s = watch_from < 0 ? 0 : fetched_at - watch_from;
            if (watch_from < 0)
                watch_from = ctl_elapsed_s(r.c);
        } else {
            o.watched_unseen_s = 0;
            watch_from = -1;
        }
        if (plan_failover(r.m, r.n, (size_t)to, &o, &d) < 0) {
            rc = say_error(1, "out of memory");
            goto out;
        }
        if (d.verdict == PLAN_REFUSE) {
            rc = say_error(3, "refused: %s; nothing was changed", d.message);
            goto out;
        }
        if (d.verdict == PLAN_GO)
            break;
        if (ctl_elapsed_s(r.c) + d.wait_s > limit) {
            rc = say_error(3,
                           "refused: %s has been unseen for only %.1f s, less than fence_after "
                           "(%d s), and --timeout (%g s) is used up: it may be running and "
                           "writable. Check it; if it is gone for good, --force skips this wait; "
                           "nothing was changed",
                           r.m[d.primary].id, o.fence_after + PLAN_FENCE_MARGIN_S - d.wait_s,
                           o.fence_after, a.timeout_s);
            goto out;
        }
        progress(&r, "%s", d.message);
        if (!ctl_sleep(r.c, d.wait_s)) {
            rc = say_error(1, "interrupted while waiting; nothing was changed");
            goto out;
        }
    }
    for (size_t i = 0; i < r.n; i++)
        answered[i] = r.m[i].reachable;
    if (d.loss)
        say_error(0, "warning: %s", d.loss);
    if (d.message)
        say_error(0, "note: %s", d.message);

    progress(&r, "promoting %s", r.m[to].id);
    if (promote(&r, (size_t)to, &timeline, &not_promoted, &err) < 0) {
        if (not_promoted)
            rc = say_error(1, "promoting %s failed: %s; nothing was changed", r.m[to].id, err);
        else
            rc = say_error(1,
                           "promoting %s gave no clear answer: %s. Run `mfactl status` to see "
                           "whether %s became a writable primary before anything else",
                           r.m[to].id, err, r.m[to].id);
        goto out;
    }
    print_promoted(&r, (size_t)to, timeline);
    rc = follow_new_primary(&r, (size_t)to, answered, a.timeout_s);
out:
    free(err);
    plan_decision_clear(&d);
    run_close(&r);
    return rc;
}

/* ---- rejoin --------------------------------------------------------------------- */

int cluster_cmd_rejoin(const char *config, bool json, int argc, char **argv)
{
    struct cmd_args a = { .timeout_s = REJOIN_TIMEOUT_S };
    struct plan_decision d = { 0 };
    struct run r = { 0 };
    struct ctl_reply rep = { 0 };
    bool targets[APPCONF_MAX_MEMBERS] = { false };
    json_t *body = NULL;
    char now[CELL_MAX];
    size_t left;
    int who, to = -1, rc = CLUSTER_EXIT_FAILED;
    const char *pid;

    if (parse_args(argc, argv, ARG_TO | ARG_TIMEOUT | ARG_JSON, 1, &a) < 0)
        return CLUSTER_EXIT_USAGE;
    if (run_open(&r, config, json || a.json) < 0 ||
        (who = member_arg(&r, "rejoin", a.member)) < 0 ||
        (a.to && (to = member_arg(&r, "rejoin", a.to)) < 0)) {
        run_close(&r);
        return CLUSTER_EXIT_USAGE;
    }
    if (to == who) {
        run_close(&r);
        return say_error(2, "rejoin: %s cannot follow itself", a.member);
    }
    if (!ctl_fetch(r.c, r.m, NULL, false)) {
        rc = none_answered(&r);
        goto out;
    }
    if (plan_rejoin(r.m, r.n, (size_t)who, to, &d) < 0) {
        rc = say_error(1, "out of memory");
        goto out;
    }
    if (d.verdict != PLAN_GO) {
        rc = say_error(3, "refused: %s; nothing was changed", d.message);
        goto out;
    }
    pid = r.m[d.primary].id;
    if (plan_streams_from(&r.m[who], pid)) {
        progress(&r, "%s already streams from %s; nothing to do", r.m[who].id, pid);
        rc = CLUSTER_EXIT_OK;
        goto out;
    }
    body = json_pack("{s:s}", "primary", pid);
    progress(&r, "asking %s to follow %s", r.m[who].id, pid);
    if (ctl_post(r.c, (size_t)who, "/rejoin", body, CTL_OTHER_TIMEOUT_MS, &rep) < 0) {
        if (rep.status >= 400 && rep.status <= 499)
            rc = say_error(1, "%s refused to follow %s: %s; nothing was changed", r.m[who].id, pid,
                           rep.error);
        else
            rc = say_error(1,
                           "asking %s to follow %s failed: %s. Run `mfactl status` to see whether "
                           "it started rejoining",
                           r.m[who].id, pid, rep.error);
        goto out;
    }
    targets[who] = true;
    progress(&r, "waiting up to %g s for %s to stream from %s", a.timeout_s, r.m[who].id, pid);
    left = await_streaming(&r, targets, (size_t)d.primary, a.timeout_s);
    follow_text(&r.m[who], pid, now, sizeof(now));
    ctl_fetch(r.c, r.m, NULL, true);
    print_status(&r);
    rc = CLUSTER_EXIT_OK;
    if (left)
        rc = say_error(1,
                       "%s does not stream from %s yet (%s)%s; it keeps trying on its own: watch "
                       "`mfactl status`",
                       r.m[who].id, pid, now,
                       ctl_interrupted(r.c) ? " and the wait was interrupted" : " after the wait");
out:
    json_decref(body);
    ctl_reply_clear(&rep);
    plan_decision_clear(&d);
    run_close(&r);
    return rc;
}
