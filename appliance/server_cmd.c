/*
 * mfactl drain, ready and maint; see server_cmd.h.
 *
 * A state change is two rounds, each to every balancer at once: GET /status
 * finds the balancers that answer, then POST /servers/<NODE> sets the state
 * on each of them. One line per balancer says what it did; a balancer that
 * did not answer is named, as it keeps its old state until asked again.
 *
 * `drain --wait` then polls the node itself (GET /status on ports.node:
 * plain HTTP on loopback, mutual TLS elsewhere) every DRAIN_POLL_S until it reports no live
 * challenges and no sessions. A node that does not answer is not taken for drained (it may be cut
 * off from this host only): the wait goes on, and at the timeout the command fails saying that the
 * node did not answer.
 *
 * With --wait, the state is set first and only a drain that every asked
 * balancer took is waited for: while a balancer still sends the node new
 * work, waiting for it to empty makes no sense.
 */
#include "server_cmd.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_cmd.h"
#include "ctl.h"
#include "errmsg.h"

#define DRAIN_TIMEOUT_S 300.0
#define MAX_TIMEOUT_S   86400.0
#define DRAIN_POLL_S    0.5
#define WHY_MAX         SERVER_WHY_MAX

/* ---- replies ------------------------------------------------------------- */

/* A string field of <o> into <buf>, sanitized; absent or null: "" or an error. */
static int get_str(const json_t *o, const char *key, bool required, char *buf, size_t size,
                   char **err)
{
    const json_t *v = json_object_get(o, key);

    buf[0] = '\0';
    if (!v || json_is_null(v))
        return required ? err_set(err, "\"%s\" is missing", key) : 0;
    if (!json_is_string(v))
        return err_set(err, "\"%s\" is not a string", key);
    if (json_string_length(v) >= size)
        return err_set(err, "\"%s\" is longer than %zu characters", key, size - 1);
    snprintf(buf, size, "%s", json_string_value(v));
    ctl_sanitize(buf);
    return 0;
}

int server_cmd_parse_status(const json_t *doc, struct server_view *out, char **err)
{
    const json_t *servers = json_object_get(doc, "servers"), *s;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(doc))
        return err_set(err, "not a JSON object");
    if (!json_is_array(servers))
        return err_set(err, "\"servers\" is not an array");
    if (json_array_size(servers) > APPCONF_MAX_MEMBERS)
        return err_set(err, "more than %d servers", APPCONF_MAX_MEMBERS);
    json_array_foreach(servers, i, s)
    {
        struct server_entry *e = &out->servers[i];

        if (!json_is_object(s))
            return err_set(err, "servers[%zu] is not an object", i);
        if (get_str(s, "id", true, e->id, sizeof(e->id), err) < 0 ||
            get_str(s, "state", true, e->state, sizeof(e->state), err) < 0 ||
            get_str(s, "status", false, e->status, sizeof(e->status), err) < 0)
            return err_prefix(err, "servers[%zu]", i);
        if (!e->id[0])
            return err_set(err, "servers[%zu]: \"id\" is empty", i);
        out->nservers = i + 1;
    }
    return 0;
}

const struct server_entry *server_cmd_find(const struct server_view *v, const char *id)
{
    for (size_t i = 0; i < v->nservers; i++) {
        if (strcmp(v->servers[i].id, id) == 0)
            return &v->servers[i];
    }
    return NULL;
}

const char *server_cmd_agreed_state(const struct server_view *views, const bool *answered, size_t n,
                                    const char *id)
{
    const char *agreed = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct server_entry *e = answered[i] ? server_cmd_find(&views[i], id) : NULL;

        if (!e)
            continue;
        if (agreed && strcmp(agreed, e->state) != 0)
            return SERVER_STATE_MIXED;
        agreed = e->state;
    }
    return agreed;
}

enum server_outcome server_cmd_post_outcome(long status, const json_t *reply, const char *want)
{
    const char *state = json_string_value(json_object_get(reply, "state"));

    if (status >= 400 && status <= 499)
        return SERVER_REFUSED;
    if (status >= 200 && status <= 299 && state && strcmp(state, want) == 0)
        return SERVER_TOOK;
    return SERVER_FAILED;
}

int server_cmd_exit_code(const enum server_outcome *o, size_t n)
{
    size_t took = 0, refused = 0, failed = 0;

    for (size_t i = 0; i < n; i++) {
        took += o[i] == SERVER_TOOK;
        refused += o[i] == SERVER_REFUSED;
        failed += o[i] == SERVER_FAILED;
    }
    if (!took && !refused && !failed)
        return CLUSTER_EXIT_NO_MEMBER;
    if (!refused && !failed)
        return CLUSTER_EXIT_OK;
    if (!took && !failed)
        return CLUSTER_EXIT_REFUSED;
    return CLUSTER_EXIT_FAILED;
}

static int get_count(const json_t *doc, const char *key, int64_t *out, char **err)
{
    const json_t *v = json_object_get(doc, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return err_set(err, "\"%s\" is not an integer >= 0", key);
    *out = json_integer_value(v);
    return 0;
}

int server_cmd_node_counts(const json_t *doc, int64_t *challenges, int64_t *sessions, char **err)
{
    if (!json_is_object(doc))
        return err_set(err, "not a JSON object");
    if (get_count(doc, "challenges", challenges, err) < 0 ||
        get_count(doc, "sessions", sessions, err) < 0)
        return -1;
    return 0;
}

/* ---- talking to the balancers --------------------------------------------- */

/* Every member's balancer, as its GET /status answered. */
struct balancers {
    size_t n;
    size_t answered;
    bool up[APPCONF_MAX_MEMBERS];
    char why[APPCONF_MAX_MEMBERS][WHY_MAX]; /* !up[i]: why, a sentence fragment */
    struct server_view view[APPCONF_MAX_MEMBERS];
};

/* Fills *b from every member's balancer at once. Returns b->answered. */
static size_t fetch_balancers(struct ctl *c, struct balancers *b)
{
    const struct appconf *conf = ctl_conf(c);
    struct ctl_call calls[APPCONF_MAX_MEMBERS];
    char *err = NULL;

    b->n =
        conf->cluster.nmembers < APPCONF_MAX_MEMBERS ? conf->cluster.nmembers : APPCONF_MAX_MEMBERS;
    b->answered = 0;
    for (size_t i = 0; i < b->n; i++)
        calls[i] = (struct ctl_call){ i,    CTL_API_BALANCER,      "GET", "/status",
                                      NULL, CTL_STATUS_TIMEOUT_MS, { 0 } };
    ctl_call_all(c, calls, b->n);
    for (size_t i = 0; i < b->n; i++) {
        struct ctl_reply *r = &calls[i].reply;

        b->up[i] = false;
        if (r->error)
            snprintf(b->why[i], WHY_MAX, "%s", r->error);
        else if (server_cmd_parse_status(r->json, &b->view[i], &err) < 0)
            snprintf(b->why[i], WHY_MAX, "invalid /status reply: %s", err ? err : "out of memory");
        else
            b->up[i] = true;
        b->answered += b->up[i];
        mfa_free(err);
        ctl_reply_clear(r);
    }
    return b->answered;
}

size_t server_cmd_states(struct ctl *c, char (*states)[SERVER_STATE_MAX])
{
    const struct appconf *conf = ctl_conf(c);
    struct balancers *b = calloc(1, sizeof(*b));
    size_t answered = 0;

    for (size_t i = 0; i < conf->cluster.nmembers; i++)
        states[i][0] = '\0';
    if (!b)
        return 0;
    answered = fetch_balancers(c, b);
    for (size_t i = 0; i < b->n; i++) {
        const char *s = server_cmd_agreed_state(b->view, b->up, b->n, conf->cluster.members[i].id);

        snprintf(states[i], SERVER_STATE_MAX, "%s", s ? s : "");
    }
    free(b);
    return answered;
}

size_t server_cmd_move(struct ctl *c, size_t idx, const char *from, const char *to,
                       const bool *only, struct server_move *mv)
{
    const char *id = ctl_conf(c)->cluster.members[idx].id;
    struct balancers *b = calloc(1, sizeof(*b));
    struct ctl_call calls[APPCONF_MAX_MEMBERS];
    json_t *body = json_pack("{s:s}", "state", to);
    char path[64];
    size_t ncalls = 0, took = 0;

    memset(mv, 0, sizeof(*mv));
    if (!b || !body) {
        free(b);
        json_decref(body);
        return 0;
    }
    fetch_balancers(c, b);
    mv->n = b->n;
    snprintf(path, sizeof(path), "/servers/%s", id);
    for (size_t i = 0; i < b->n; i++) {
        const struct server_entry *e = b->up[i] ? server_cmd_find(&b->view[i], id) : NULL;

        mv->up[i] = b->up[i];
        snprintf(mv->why[i], SERVER_WHY_MAX, "%s", b->up[i] ? "" : b->why[i]);
        snprintf(mv->state[i], SERVER_STATE_MAX, "%s", e ? e->state : "");
        if (e && (!only || only[i]) && strcmp(e->state, from) == 0)
            calls[ncalls++] = (struct ctl_call){ i,    CTL_API_BALANCER,     "POST", path,
                                                 body, CTL_OTHER_TIMEOUT_MS, { 0 } };
    }
    if (ncalls)
        ctl_call_all(c, calls, ncalls);
    for (size_t k = 0; k < ncalls; k++) {
        struct ctl_reply *r = &calls[k].reply;
        size_t i = calls[k].idx;

        mv->outcome[i] = server_cmd_post_outcome(r->status, r->json, to);
        if (mv->outcome[i] == SERVER_TOOK)
            took++;
        else
            snprintf(mv->why[i], SERVER_WHY_MAX, "%s",
                     r->error ? r->error : "the reply does not confirm the state");
        ctl_reply_clear(r);
    }
    json_decref(body);
    free(b);
    return took;
}

/* ---- the commands ---------------------------------------------------------- */

struct server_args {
    const char *node;
    bool wait, has_timeout;
    double timeout_s;
};

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

/*
 * Parses "NODE", and for drain "[--wait] [--timeout S]", into *a. Returns 0,
 * or -1 after saying what is wrong.
 */
static int parse_args(int argc, char **argv, bool drain, struct server_args *a)
{
    static const struct option opts[] = {
        { "wait", no_argument, NULL, 'w' },
        { "timeout", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = argv[0];
    char *end;
    int ch;

    opterr = 0;
    optind = 0; /* glibc: start afresh on this argv */
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (ch == ':' && drain) {
            say_error(2, "%s: %s needs a value; see `mfactl --help`", cmd, argv[optind - 1]);
            return -1;
        }
        if ((ch != 'w' && ch != 'T') || !drain) {
            say_error(2, "%s: unknown option %s; see `mfactl --help`", cmd, argv[optind - 1]);
            return -1;
        }
        if (ch == 'w') {
            a->wait = true;
            continue;
        }
        a->has_timeout = true;
        a->timeout_s = strtod(optarg, &end);
        if (end == optarg || *end != '\0' || !isfinite(a->timeout_s) || a->timeout_s <= 0 ||
            a->timeout_s > MAX_TIMEOUT_S) {
            say_error(2, "%s: --timeout takes seconds, more than 0 and at most %.0f, not \"%s\"",
                      cmd, MAX_TIMEOUT_S, optarg);
            return -1;
        }
    }
    if (a->has_timeout && !a->wait) {
        say_error(2, "%s: --timeout goes with --wait; see `mfactl --help`", cmd);
        return -1;
    }
    if (argc - optind != 1) {
        say_error(2, "%s: name the member, once; see `mfactl --help`", cmd);
        return -1;
    }
    a->node = argv[optind];
    return 0;
}

/* The index of member <id>, or -1 after a usage error naming the members. */
static int member_arg(struct ctl *c, const char *config, const char *cmd, const char *id)
{
    const struct appconf *conf = ctl_conf(c);
    int idx = ctl_member_index(c, id);

    if (idx >= 0)
        return idx;
    fprintf(stderr, "mfactl: %s: \"%s\" is not a member in %s; the members are", cmd, id, config);
    for (size_t i = 0; i < conf->cluster.nmembers; i++)
        fprintf(stderr, "%s %s", i ? "," : "", conf->cluster.members[i].id);
    fputc('\n', stderr);
    return -1;
}

static int none_answered(const struct ctl *c, const struct balancers *b)
{
    const struct appconf *conf = ctl_conf(c);

    fputs("mfactl: no balancer answered:", stderr);
    for (size_t i = 0; i < b->n; i++)
        fprintf(stderr, "%s %s (%s)", i ? ";" : "", conf->cluster.members[i].id, b->why[i]);
    fputs(". Check that mfa-balancer runs on the members and that this host reaches their "
          "balancer control ports (ports.balancer_control); nothing was changed\n",
          stderr);
    return CLUSTER_EXIT_NO_MEMBER;
}

/* "1 challenge", "3 sessions". */
static const char *counted(int64_t n, const char *noun, char *buf, size_t size)
{
    snprintf(buf, size, "%" PRId64 " %s%s", n, noun, n == 1 ? "" : "s");
    return buf;
}

/*
 * Polls node <idx>'s GET /status every DRAIN_POLL_S until it reports no live
 * challenges and sessions, for at most <timeout_s> or until interrupted,
 * printing every change. Returns the exit code.
 */
static int await_drained(struct ctl *c, size_t idx, double timeout_s)
{
    const char *id = ctl_conf(c)->cluster.members[idx].id;
    double start = ctl_elapsed_s(c), deadline = start + timeout_s, left;
    char now[WHY_MAX + 64], last[sizeof(now)] = "", why[WHY_MAX] = "", cb[32], sb[32];
    int64_t chal = -1, sess = -1;
    bool up = false;
    char *err = NULL;

    printf("waiting up to %g s for %s to finish its live challenges and sessions\n", timeout_s, id);
    fflush(stdout);
    for (;;) {
        struct ctl_call k = { idx,  CTL_API_NODE,          "GET", "/status",
                              NULL, CTL_STATUS_TIMEOUT_MS, { 0 } };

        ctl_call_all(c, &k, 1);
        if (k.reply.error)
            snprintf(why, sizeof(why), "%s", k.reply.error);
        else if (server_cmd_node_counts(k.reply.json, &chal, &sess, &err) < 0)
            snprintf(why, sizeof(why), "invalid /status reply: %s", err ? err : "out of memory");
        up = !k.reply.error && !err;
        mfa_free(err);
        ctl_reply_clear(&k.reply);
        if (up)
            snprintf(now, sizeof(now), "%s, %s", counted(chal, "live challenge", cb, sizeof(cb)),
                     counted(sess, "session", sb, sizeof(sb)));
        else
            snprintf(now, sizeof(now), "does not answer: %s", why);
        if (strcmp(now, last) != 0) {
            printf("[%6.2f s] %s: %s\n", ctl_elapsed_s(c) - start, id, now);
            fflush(stdout);
            snprintf(last, sizeof(last), "%s", now);
        }
        if (up && chal == 0 && sess == 0) {
            printf("%s is drained: no live challenges or sessions after %.1f s\n", id,
                   ctl_elapsed_s(c) - start);
            fflush(stdout);
            return CLUSTER_EXIT_OK;
        }
        left = deadline - ctl_elapsed_s(c);
        if (left <= 0 || !ctl_sleep(c, left < DRAIN_POLL_S ? left : DRAIN_POLL_S))
            break;
    }
    snprintf(why, sizeof(why), "%s after %.1f s", ctl_interrupted(c) ? "interrupted" : "timed out",
             ctl_elapsed_s(c) - start);
    if (up)
        return say_error(CLUSTER_EXIT_FAILED,
                         "%s: %s still has %s; it stays drained (no new work reaches it)", why, id,
                         now);
    return say_error(CLUSTER_EXIT_FAILED,
                     "%s: %s %s, so whether it still holds live challenges or sessions is unknown; "
                     "it stays drained",
                     why, id, now);
}

/*
 * The ids of the balancers that were asked and took the state (<took>) or
 * did not, as "n1, n3" into <buf>; "" when none.
 */
static void join_ids(const struct ctl *c, const enum server_outcome *o, size_t n, bool took,
                     char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++) {
        if (o[i] == SERVER_NOT_ASKED || (o[i] == SERVER_TOOK) != took)
            continue;
        len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "",
                                ctl_conf(c)->cluster.members[i].id);
    }
}

/*
 * Sets <state> for the member named in argv on every balancer that answers;
 * with <drain>, takes and honours --wait and --timeout. Returns the exit
 * code.
 */
static int set_state(const char *config, const char *state, bool drain, int argc, char **argv)
{
    struct server_args a = { .timeout_s = DRAIN_TIMEOUT_S };
    enum server_outcome outcome[APPCONF_MAX_MEMBERS] = { SERVER_NOT_ASKED };
    struct ctl_call calls[APPCONF_MAX_MEMBERS];
    struct balancers *b = NULL;
    struct ctl *c = NULL;
    json_t *body = NULL;
    const char *cmd = argv[0], *got;
    char path[64], *err = NULL, got_buf[SERVER_STATE_MAX];
    size_t ncalls = 0;
    int idx, rc = CLUSTER_EXIT_USAGE;

    if (parse_args(argc, argv, drain, &a) < 0)
        return CLUSTER_EXIT_USAGE;
    c = ctl_open(config, &err);
    if (!c) {
        say_error(2, "%s", err ? err : "out of memory");
        goto out;
    }
    if ((idx = member_arg(c, config, cmd, a.node)) < 0)
        goto out;
    b = calloc(1, sizeof(*b));
    body = json_pack("{s:s}", "state", state);
    if (!b || !body) {
        rc = say_error(CLUSTER_EXIT_FAILED, "out of memory");
        goto out;
    }
    if (!fetch_balancers(c, b)) {
        rc = none_answered(c, b);
        goto out;
    }

    snprintf(path, sizeof(path), "/servers/%s", a.node);
    for (size_t i = 0; i < b->n; i++) {
        if (b->up[i])
            calls[ncalls++] = (struct ctl_call){ i,    CTL_API_BALANCER,     "POST", path,
                                                 body, CTL_OTHER_TIMEOUT_MS, { 0 } };
    }
    ctl_call_all(c, calls, ncalls);
    for (size_t k = 0; k < ncalls; k++) {
        struct ctl_reply *r = &calls[k].reply;
        size_t i = calls[k].idx;
        const char *bal = ctl_conf(c)->cluster.members[i].id;

        outcome[i] = server_cmd_post_outcome(r->status, r->json, state);
        if (outcome[i] == SERVER_TOOK) {
            printf("%s: %s is now %s\n", bal, a.node, state);
        } else if (r->error) {
            say_error(0, "%s: %s %s to %s: %s", bal,
                      outcome[i] == SERVER_REFUSED ? "refused to set" : "failed to set", a.node,
                      state, r->error);
        } else {
            got = json_string_value(json_object_get(r->json, "state"));
            snprintf(got_buf, sizeof(got_buf), "%s", got ? got : "");
            say_error(0, "%s: failed to set %s to %s: the reply says %s%s%s", bal, a.node, state,
                      got ? "\"state\": \"" : "no \"state\"", got ? ctl_sanitize(got_buf) : "",
                      got ? "\"" : "");
        }
        ctl_reply_clear(r);
    }
    fflush(stdout);
    for (size_t i = 0; i < b->n; i++) {
        if (!b->up[i])
            say_error(0,
                      "%s: not set there: its balancer does not answer (%s); run `mfactl %s %s` "
                      "again once it does",
                      ctl_conf(c)->cluster.members[i].id, b->why[i], cmd, a.node);
    }

    rc = server_cmd_exit_code(outcome, b->n);
    if (rc == CLUSTER_EXIT_REFUSED) {
        say_error(rc, "refused by every balancer that answered; nothing was changed");
    } else if (rc == CLUSTER_EXIT_FAILED) {
        char took[APPCONF_MAX_MEMBERS * SERVER_ID_MAX + 8], others[sizeof(took)];

        join_ids(c, outcome, b->n, true, took, sizeof(took));
        join_ids(c, outcome, b->n, false, others, sizeof(others));
        say_error(rc,
                  "%s is %s on %s but not on %s: run `mfactl %s %s` again (it is safe to repeat), "
                  "or `mfactl status` to see each balancer's state",
                  a.node, state, took[0] ? took : "no balancer", others, cmd, a.node);
    } else if (rc == CLUSTER_EXIT_OK && a.wait) {
        rc = await_drained(c, (size_t)idx, a.timeout_s);
    }
out:
    free(err);
    json_decref(body);
    free(b);
    ctl_close(c);
    return rc;
}

int server_cmd_drain(const char *config, bool json, int argc, char **argv)
{
    (void)json;
    return set_state(config, "drain", true, argc, argv);
}

int server_cmd_ready(const char *config, bool json, int argc, char **argv)
{
    (void)json;
    return set_state(config, "ready", false, argc, argv);
}

int server_cmd_maint(const char *config, bool json, int argc, char **argv)
{
    (void)json;
    return set_state(config, "maint", false, argc, argv);
}
