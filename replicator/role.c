/*
 * The member's role and every change of it: how PostgreSQL starts (a new
 * cluster, a copy of the primary, a standby, or a primary again), how a
 * standby follows a new primary (re-pointed, rewound, or copied afresh),
 * promotion, the switchover's fence, the self-fence of a primary that lost
 * the majority, and the synchronous standby list.
 *
 * Invariants:
 * - PostgreSQL starts as a primary only when this member sees a majority of
 *   the voters, none of them is a primary and none is on a newer timeline.
 * - A primary that sees a primary on a newer timeline fences itself at once
 *   and rejoins it.
 * - A primary that has not seen a majority for cluster.fence_after seconds
 *   refuses writes until it sees one again.
 * - One task at a time; decisions wait while one runs.
 * - A member with no data makes a new cluster (initdb) only as the first of
 *   cluster.members once every other member answers that it has none either,
 *   or — the one-shot permission `mfactl setup --primary` leaves — when
 *   <data_dir>/bootstrap.allow names it, every peer has been polled at least
 *   once and twice replicator.peer_timeout_ms have passed since the start,
 *   no peer has reported data or the primary role since the start, and no
 *   seen peer holds a permission too. The permission is removed when the
 *   new cluster is set up, or when this member has copied the primary.
 * - A bootstrap runs with a marker beside PGDATA from before initdb until
 *   the roles and the database are set up: data found with the marker is an
 *   unfinished bootstrap, wiped and made again, never started as it is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "pgconn.h"
#include "repl.h"
#include "secrets.h"

#define STANDBY_STALE_S      15 /* a standby not streaming this long from a live primary rewinds */
#define REJOIN_PENDING_S     10 /* how long a /rejoin waits to see its primary */
#define PM_FAILED_STARTS_MAX 3  /* starts of a standby that never answered before a fresh copy */

static const char *const role_names[ROLE_COUNT_] = {
    [ROLE_STARTING] = "starting",   [ROLE_PRIMARY] = "primary", [ROLE_STANDBY] = "standby",
    [ROLE_REJOINING] = "rejoining", [ROLE_STOPPED] = "stopped", [ROLE_WITNESS] = "witness",
};

static double now_s(void)
{
    return (double)clock_mono_ms() / 1000.0;
}

/* The last non-empty line of a tool's output, which says why it failed. */
static const char *last_line(const char *tail)
{
    static char line[400];
    const char *end = tail + strlen(tail), *start;

    while (end > tail && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    start = end;
    while (start > tail && start[-1] != '\n')
        start--;
    snprintf(line, sizeof(line), "%.*s", (int)(end - start), start);
    return line;
}

const char *repl_role_name(enum repl_role role)
{
    return role < ROLE_COUNT_ && role_names[role] ? role_names[role] : "unknown";
}

static void state_path(const struct repl *r, char *buf, size_t size)
{
    snprintf(buf, size, "%s/replicator.state", daemon_conf(r->d)->appliance.data_dir);
}

void repl_save_state(struct repl *r)
{
    char path[400], tmp[420], text[128];
    int fd, n;

    state_path(r, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    n = snprintf(text, sizeof(text), "role=%s\nupstream=%s\n", repl_role_name(r->role),
                 r->upstream);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) < 0 || rename(tmp, path) < 0)
        log_error("state.save path=%s err=%s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* Only what must survive a replicator restart: a stopped member, a standby's upstream. */
void repl_load_state(struct repl *r)
{
    char path[400], text[256], *line;
    ssize_t n;
    int fd;

    state_path(r, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strcmp(line, "role=stopped") == 0)
            r->role = ROLE_STOPPED;
        else if (strncmp(line, "upstream=", 9) == 0 && strlen(line + 9) < sizeof(r->upstream) &&
                 appconf_member(daemon_conf(r->d), line + 9))
            snprintf(r->upstream, sizeof(r->upstream), "%s", line + 9);
    }
}

void repl_set_role(struct repl *r, enum repl_role role, const char *why)
{
    if (r->role != role)
        log_notice("role.change from=%s to=%s why=%s", repl_role_name(r->role),
                   repl_role_name(role), why);
    r->role = role;
    repl_save_state(r);
}

bool repl_task_begin(struct repl *r, const char *name)
{
    if (r->task)
        return false;
    r->task = name;
    r->task_error[0] = '\0';
    log_notice("task.begin name=%s", name);
    return true;
}

void repl_task_end(struct repl *r, const char *error)
{
    r->on_up = NULL;
    if (!r->task)
        return;
    /* Every request a task took is answered exactly once. */
    if (r->task_req) {
        http_reply_error(r->task_req, 500, "task_failed", "%s: %s", r->task,
                         error ? error : "ended without an answer");
        r->task_req = NULL;
    }
    if (error) {
        snprintf(r->task_error, sizeof(r->task_error), "%s", error);
        log_error("task.failed name=%s err=%s", r->task, error);
    } else {
        log_notice("task.done name=%s", r->task);
    }
    r->task = NULL;
}

int repl_write_conf(struct repl *r, char **err)
{
    struct pgsetup_role role = {
        .upstream = r->role == ROLE_PRIMARY ? NULL : r->upstream,
        .sync_names = r->role == ROLE_PRIMARY ? r->sync_names : "",
        .read_only = r->fenced,
    };

    return pgsetup_write_conf(daemon_conf(r->d), &r->paths, r->os_user, &role, err);
}

static int write_passfile(struct repl *r, char **err)
{
    char repl_pw[DB_PASSWORD_MAX], rewind_pw[DB_PASSWORD_MAX];
    int rc = -1;

    if (db_password(&r->keys, PG_ROLE_REPLICATION, repl_pw, sizeof(repl_pw), err) == 0 &&
        db_password(&r->keys, PG_ROLE_REWIND, rewind_pw, sizeof(rewind_pw), err) == 0)
        rc = pgsetup_write_passfile(&r->paths, repl_pw, rewind_pw, err);
    secret_wipe(repl_pw, sizeof(repl_pw));
    secret_wipe(rewind_pw, sizeof(rewind_pw));
    return rc;
}

static const struct peer *peer_by_id(const struct repl *r, const char *id)
{
    for (size_t i = 0; i < r->npeers; i++)
        if (strcmp(r->peers[i].id, id) == 0)
            return &r->peers[i];
    return NULL;
}

static uint64_t peer_lsn(const struct peer *p, const char *key)
{
    const char *s = peer_str(p, key);
    uint64_t lsn = 0;

    if (!s || lsn_parse(s, &lsn) < 0)
        return 0;
    return lsn;
}

/* Fails the running task: logs, answers its request, ends it. */
static void task_fail(struct repl *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void task_fail(struct repl *r, int status, const char *code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->task_req) {
        http_reply_error(r->task_req, status, code, "%s", msg);
        r->task_req = NULL;
    }
    repl_task_end(r, msg);
}

/* ---- copies of another member's data ---- */

/*
 * A marker beside PGDATA while pg_basebackup or pg_rewind changes it: data
 * left half-copied by a crash is copied afresh, never started.
 */
static void copy_marker(struct repl *r, bool on)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/copy-in-progress", r->paths.confdir);
    if (on) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || fsync(fd) < 0)
            log_error("copy.marker path=%s err=%s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    } else if (unlink(path) < 0 && errno != ENOENT) {
        log_error("copy.marker path=%s err=%s", path, strerror(errno));
    }
}

static bool copy_interrupted(const struct repl *r)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/copy-in-progress", r->paths.confdir);
    return access(path, F_OK) == 0;
}

/* This member's database system identifier, "" when unknown. */
static const char *my_sysid(const struct repl *r)
{
    if (r->local.up && *r->local.sysid)
        return r->local.sysid;
    return r->control_valid ? r->control.system_identifier : "";
}

/* False only when both sides are known and differ: another cluster's data. */
static bool same_system(const struct repl *r, const struct peer *p)
{
    const char *theirs = peer_str(p, "system_identifier");
    const char *mine = my_sysid(r);

    return !theirs || !*mine || strcmp(theirs, mine) == 0;
}

/* ---- starting PostgreSQL ---- */

static void start_as(struct repl *r, bool primary, const char *upstream)
{
    char *err = NULL;

    snprintf(r->upstream, sizeof(r->upstream), "%s", primary || !upstream ? "" : upstream);
    r->fenced = false;
    r->fence_reason = NULL;
    r->sync_names[0] = '\0';
    if (write_passfile(r, &err) < 0 || pgsetup_set_standby(&r->paths, !primary, &err) < 0 ||
        (primary ? (r->role = ROLE_PRIMARY, repl_write_conf(r, &err)) : repl_write_conf(r, &err)) <
            0 ||
        pm_start(r, &err) < 0) {
        log_error("pg.start_failed err=%s", err);
        free(err);
        repl_set_role(r, ROLE_STARTING, "postgres did not start");
        r->pm_next_start_s = now_s() + 5;
        return;
    }
    r->stale_since_s = now_s();
    repl_set_role(r, primary ? ROLE_STARTING : ROLE_STANDBY,
                  primary ? "starting as primary" : "starting as standby");
}

/* ---- bootstrap: the first member makes the cluster ---- */

/* The permission file of `mfactl setup --primary` (docs/replication.md, "The first start"). */
static void bootstrap_allow_path(const struct repl *r, char *buf, size_t size)
{
    snprintf(buf, size, "%s/bootstrap.allow", daemon_conf(r->d)->appliance.data_dir);
}

/* True when the permission file exists and names this member ("member=<id>"). */
static bool bootstrap_allowed(const struct repl *r)
{
    char path[400], text[64], want[32];
    ssize_t n;
    int fd;

    bootstrap_allow_path(r, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    snprintf(want, sizeof(want), "member=%s", r->me);
    return strcmp(text, want) == 0;
}

/* Spent once the cluster it made is set up, void once this member copied the primary. */
static void bootstrap_allow_remove(const struct repl *r)
{
    char path[400];

    bootstrap_allow_path(r, path, sizeof(path));
    if (unlink(path) == 0)
        log_notice("bootstrap.allow removed=%s", path);
    else if (errno != ENOENT)
        log_error("bootstrap.allow path=%s err=%s", path, strerror(errno));
}

/*
 * A marker beside PGDATA from before initdb until the new cluster is set up
 * (roles, database, migrations): data found with it is an unfinished
 * bootstrap, wiped and made again (decide_start), as copy_marker() does for
 * a copy.
 */
static void bootstrap_marker(struct repl *r, bool on)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/bootstrap-in-progress", r->paths.confdir);
    if (on) {
        int fd = mkdir(r->paths.confdir, 0700) == 0 || errno == EEXIST
                     ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)
                     : -1;
        if (fd < 0 || fsync(fd) < 0)
            log_error("bootstrap.marker path=%s err=%s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    } else if (unlink(path) < 0 && errno != ENOENT) {
        log_error("bootstrap.marker path=%s err=%s", path, strerror(errno));
    }
}

static bool bootstrap_interrupted(const struct repl *r)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/bootstrap-in-progress", r->paths.confdir);
    return access(path, F_OK) == 0;
}

static void bootstrap_setup_done(struct repl *r, const char *err)
{
    if (err) {
        /* PostgreSQL runs half set up: stopped, wiped and made again (decide_start). */
        repl_task_end(r, err);
        return;
    }
    /* The marker first: without it the data is a finished cluster's, kept. */
    bootstrap_marker(r, false);
    bootstrap_allow_remove(r);
    r->bootstrap_pending = false;
    repl_set_role(r, ROLE_PRIMARY, "cluster created");
    repl_task_end(r, NULL);
}

static void bootstrap_wait_up(struct repl *r)
{
    char *err = NULL;

    if (r->pm != PM_RUNNING) {
        repl_task_end(r, "postgres exited during the bootstrap; see postgresql.log");
        return;
    }
    if (!r->local.up)
        return; /* the tick calls again */
    r->on_up = NULL;
    r->setup_ok = false; /* /status setup_done: false until this primary's setup succeeds */
    if (setup_primary(r, bootstrap_setup_done, &err) < 0) {
        repl_task_end(r, err);
        free(err);
    }
}

static void bootstrap_initdb_done(struct repl *r, bool ok, const char *tail)
{
    if (!ok) {
        log_error("bootstrap.initdb_failed output=%s", last_line(tail));
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, "initdb failed; see postgresql.log");
        return;
    }
    start_as(r, true, NULL);
    if (r->pm != PM_RUNNING) {
        repl_task_end(r, "postgres did not start");
        return;
    }
    r->on_up = bootstrap_wait_up;
}

static void bootstrap(struct repl *r)
{
    const char *argv[16];
    char store[2048], *err = NULL;

    if (!repl_task_begin(r, "bootstrap"))
        return;
    bootstrap_marker(r, true);
    if (pgsetup_argv_initdb(daemon_conf(r->d), &r->paths, argv, MFA_ARRAY_LEN(argv), store,
                            sizeof(store)) < 0 ||
        pm_run_tool(r, argv, 300000, bootstrap_initdb_done, &err) < 0) {
        repl_task_end(r, err ? err : "initdb command line too long");
        free(err);
    }
}

static void bootstrap_wiped(struct repl *r, bool ok, const char *tail)
{
    (void)tail;
    if (!ok) {
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, "could not remove the unfinished bootstrap's data");
        return;
    }
    /* Empty again: the next decision is an empty member's, permission and all. */
    bootstrap_marker(r, false);
    r->control_valid = false;
    repl_task_end(r, NULL);
}

static void bootstrap_stopped(struct repl *r)
{
    /* The contents, not the directory: PGDATA may be a mount point. */
    const char *argv[] = {
        "/bin/sh",       "-c", "[ ! -e \"$1\" ] || find \"$1\" -mindepth 1 -delete", "sh",
        r->paths.pgdata, NULL
    };
    char *err = NULL;

    if (pm_run_tool(r, argv, 600000, bootstrap_wiped, &err) < 0) {
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, err);
        free(err);
    }
}

/* Data left by a bootstrap that did not finish: stop what runs, wipe it (then make it again). */
static void bootstrap_redo(struct repl *r)
{
    if (!repl_task_begin(r, "bootstrap_redo"))
        return;
    log_warn("bootstrap.interrupted next=%s", "wipe the data and make the cluster again");
    repl_set_role(r, ROLE_STARTING, "an unfinished bootstrap");
    pm_stop(r, bootstrap_stopped);
}

/* ---- clone: a fresh copy of the primary ---- */

static void clone_done(struct repl *r, bool ok, const char *tail)
{
    char *err = NULL;

    if (!ok) {
        log_error("clone.failed output=%s", last_line(tail));
        r->pm_next_start_s = now_s() + 3;
        repl_set_role(r, ROLE_STARTING, "pg_basebackup failed");
        repl_task_end(r, "pg_basebackup failed; see postgresql.log");
        return;
    }
    if (pgsetup_after_copy(&r->paths, &err) < 0) {
        repl_set_role(r, ROLE_STARTING, "the copy could not be prepared");
        repl_task_end(r, err);
        free(err);
        return;
    }
    r->control_valid = false;
    copy_marker(r, false);
    /* This member has the cluster's data now: a permission left here is void. */
    bootstrap_allow_remove(r);
    r->bootstrap_pending = false;
    start_as(r, false, r->rejoin_to);
    repl_task_end(r, r->pm == PM_RUNNING ? NULL : "postgres did not start");
}

static void clone_removed(struct repl *r, bool ok, const char *tail)
{
    const struct appconf *c = daemon_conf(r->d);
    const struct member_conf *m = appconf_member(c, r->rejoin_to);
    const char *argv[16];
    char store[4096], conninfo[2048], slot[40], *err = NULL;

    (void)tail;
    if (!ok) {
        repl_set_role(r, ROLE_STARTING, "the old data could not be removed");
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, "could not remove the old data directory");
        return;
    }
    pgsetup_slot_name(r->me, slot, sizeof(slot));
    if (!m || write_passfile(r, &err) < 0 ||
        pgsetup_conninfo(c, &r->paths, m, PG_ROLE_REPLICATION, NULL, r->me, conninfo,
                         sizeof(conninfo), &err) < 0 ||
        pgsetup_argv_basebackup(c, &r->paths, conninfo, slot, argv, MFA_ARRAY_LEN(argv), store,
                                sizeof(store)) < 0 ||
        pm_run_tool(r, argv, 3600000, clone_done, &err) < 0) {
        repl_set_role(r, ROLE_STARTING, "pg_basebackup could not start");
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, err ? err : "pg_basebackup command line too long");
        free(err);
        return;
    }
    log_notice("clone.started from=%s", r->rejoin_to);
}

/* Copies the data of <primary> afresh (the running task goes on, or "clone" starts). */
static void clone_from(struct repl *r, const char *primary)
{
    /* The contents, not the directory: PGDATA may be a mount point. */
    const char *argv[] = {
        "/bin/sh",       "-c", "[ ! -e \"$1\" ] || find \"$1\" -mindepth 1 -delete", "sh",
        r->paths.pgdata, NULL
    };
    char *err = NULL;

    if (!r->task && !repl_task_begin(r, "clone"))
        return;
    snprintf(r->rejoin_to, sizeof(r->rejoin_to), "%s", primary);
    repl_set_role(r, ROLE_REJOINING, "copying the primary");
    r->control_valid = false;
    copy_marker(r, true);
    if (pm_run_tool(r, argv, 600000, clone_removed, &err) < 0) {
        repl_set_role(r, ROLE_STARTING, "the old data could not be removed");
        r->pm_next_start_s = now_s() + 5;
        repl_task_end(r, err);
        free(err);
    }
}

/* ---- rejoin: follow another primary ---- */

/* True when data at (tli, lsn) lies on the history of the peer primary <p>. */
static bool can_follow(const struct peer *p, uint32_t tli, uint64_t lsn)
{
    json_int_t ptli = peer_int(p, "timeline");
    json_t *hist = p->status ? json_object_get(p->status, "timeline_history") : NULL;
    size_t i;
    json_t *e;

    if (ptli <= 0 || (json_int_t)tli > ptli)
        return false;
    if ((json_int_t)tli == ptli)
        return lsn <= peer_lsn(p, "lsn");
    json_array_foreach(hist, i, e)
    {
        uint64_t sw = 0;
        const char *s = json_string_value(json_object_get(e, "switch_lsn"));

        if (json_integer_value(json_object_get(e, "parent")) == (json_int_t)tli && s &&
            lsn_parse(s, &sw) == 0)
            return lsn <= sw;
    }
    return false;
}

static void rewind_done(struct repl *r, bool ok, const char *tail)
{
    char *err = NULL;

    if (!ok) {
        log_warn("rewind.failed output=%s next=pg_basebackup", last_line(tail));
        clone_from(r, r->rejoin_to);
        return;
    }
    if (pgsetup_after_copy(&r->paths, &err) < 0) {
        log_warn("rewind.after_copy err=%s next=pg_basebackup", err);
        free(err);
        clone_from(r, r->rejoin_to);
        return;
    }
    r->control_valid = false;
    copy_marker(r, false);
    start_as(r, false, r->rejoin_to);
    repl_task_end(r, r->pm == PM_RUNNING ? NULL : "postgres did not start after pg_rewind");
}

static void rejoin_stopped(struct repl *r)
{
    const struct appconf *c = daemon_conf(r->d);
    const struct member_conf *m = appconf_member(c, r->rejoin_to);
    const char *argv[16];
    char store[4096], conninfo[2048], *err = NULL;

    if (!pgsetup_has_data(&r->paths)) {
        clone_from(r, r->rejoin_to);
        return;
    }
    /* The rewind role logs in normally, to the postgres database. */
    if (!m || write_passfile(r, &err) < 0 || repl_write_conf(r, &err) < 0 ||
        pgsetup_conninfo(c, &r->paths, m, PG_ROLE_REWIND, "postgres", r->me, conninfo,
                         sizeof(conninfo), &err) < 0 ||
        pgsetup_argv_rewind(c, &r->paths, conninfo, argv, MFA_ARRAY_LEN(argv), store,
                            sizeof(store)) < 0 ||
        (copy_marker(r, true), pm_run_tool(r, argv, 3600000, rewind_done, &err)) < 0) {
        log_warn("rewind.not_started err=%s next=pg_basebackup", err ? err : "argv");
        free(err);
        clone_from(r, r->rejoin_to);
        return;
    }
    log_notice("rewind.started from=%s", r->rejoin_to);
}

int repl_rejoin(struct repl *r, const char *primary, char **err)
{
    const struct peer *p = peer_by_id(r, primary);
    const char *role = p ? peer_str(p, "role") : NULL;
    uint32_t tli;
    uint64_t lsn;

    if (r->role == ROLE_WITNESS)
        return err_set(err, "this member is a witness: it runs no PostgreSQL");
    if (!p)
        return err_set(err, "\"%s\" is not another member", primary);
    if (!same_system(r, p))
        return err_set(err,
                       "%s holds another cluster's data (system %s, ours %s): refusing to "
                       "replace ours with it",
                       primary, peer_str(p, "system_identifier"), my_sysid(r));
    if (peer_seen(r, p) && repl_position(r, &tli, &lsn) && peer_int(p, "timeline") > 0 &&
        peer_int(p, "timeline") < (json_int_t)tli)
        return err_set(err,
                       "%s is on timeline %d, older than ours (%u): following it would "
                       "throw away writes of our newer history",
                       primary, (int)peer_int(p, "timeline"), tli);
    if (!peer_seen(r, p) || !role || strcmp(role, "primary") != 0) {
        /* Just promoted, perhaps: this member's view is a poll behind. */
        if (r->rejoin_pending[0] && strcmp(r->rejoin_pending, primary) == 0 &&
            now_s() > r->rejoin_pending_until_s) {
            r->rejoin_pending[0] = '\0';
            return err_set(err, "%s is not a primary this member can see", primary);
        }
        if (!r->rejoin_pending[0]) {
            snprintf(r->rejoin_pending, sizeof(r->rejoin_pending), "%s", primary);
            r->rejoin_pending_until_s = now_s() + REJOIN_PENDING_S;
            log_notice("rejoin.pending primary=%s", primary);
        }
        return 0;
    }
    r->rejoin_pending[0] = '\0';
    if (!repl_task_begin(r, "rejoin"))
        return err_set(err, "busy with %s", r->task);
    snprintf(r->rejoin_to, sizeof(r->rejoin_to), "%s", primary);
    snprintf(r->upstream, sizeof(r->upstream), "%s", primary);
    r->fenced = false;
    r->fence_reason = NULL;
    repl_set_role(r, ROLE_REJOINING, "following a new primary");

    /* A running standby on the new primary's history only needs re-pointing. */
    if (r->pm == PM_RUNNING && r->local.up && r->local.in_recovery &&
        repl_position(r, &tli, &lsn) && can_follow(p, tli, lsn)) {
        if (repl_write_conf(r, err) < 0) {
            repl_task_end(r, *err);
            return -1;
        }
        probe_reload(r);
        r->stale_since_s = now_s();
        repl_set_role(r, ROLE_STANDBY, "re-pointed");
        repl_task_end(r, NULL);
        return 0;
    }
    /* Anything else is rewound (pg_rewind finds out whether it must change anything). */
    pm_stop(r, rejoin_stopped);
    return 0;
}

/* ---- promotion ---- */

static void promote_position(struct repl *r, const char *value, const char *err)
{
    unsigned tli = 0;
    char lsn[32] = "";

    if (err || sscanf(value, "%u %31s", &tli, lsn) != 2) {
        task_fail(r, 500, "promote_failed", "promoted, but reading the position failed: %s",
                  err ? err : value);
        return;
    }
    if (r->task_req) {
        http_reply_json(r->task_req, 200,
                        json_pack("{s:I, s:s, s:i}", "timeline", (json_int_t)tli, "lsn", lsn,
                                  "elapsed_ms", (int)((now_s() - r->promote_started_s) * 1000)));
        r->task_req = NULL;
    }
    repl_task_end(r, NULL);
}

static void promote_setup_done(struct repl *r, const char *err)
{
    (void)r;
    if (err)
        log_error("promote.setup_failed err=%s", err);
}

static void promote_checkpointed(struct repl *r, const char *value, const char *err)
{
    char *e = NULL;

    (void)value;
    if (err)
        log_error("promote.checkpoint_failed err=%s", err);
    if (probe_query(r,
                    "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)"
                    "::int || ' ' || pg_current_wal_lsn()",
                    5000, promote_position, &e) < 0) {
        task_fail(r, 500, "promote_failed", "%s", e);
        free(e);
    }
}

static void promote_slots(struct repl *r, const char *value, const char *err)
{
    char *e = NULL;

    (void)value;
    if (err)
        log_error("promote.slots_failed err=%s", err);
    /* Roles and migrations at leisure: the standbys need only the slots. */
    r->setup_ok = false; /* /status setup_done: false until this primary's setup succeeds */
    if (setup_primary(r, promote_setup_done, &e) < 0) {
        log_error("promote.setup err=%s", e);
        free(e);
    }
    /*
     * PostgreSQL 15 promotes without a checkpoint, and until one is written
     * pg_rewind reads the old timeline from this server's control file and
     * leaves a rewound member unable to start. Checkpoint before answering,
     * so that members re-pointed after the answer can rewind from here.
     */
    if (probe_query(r, "CHECKPOINT", 60000, promote_checkpointed, &e) < 0) {
        log_error("promote.checkpoint err=%s", e);
        free(e);
        promote_checkpointed(r, NULL, NULL);
    }
}

static void promoted(struct repl *r, const char *value, const char *err)
{
    char sql[1400], slots[1024], *e = NULL;

    if (err || strcmp(value, "t") != 0) {
        task_fail(r, 500, "promote_failed", "pg_promote failed: %s", err ? err : "not promoted");
        return;
    }
    r->upstream[0] = '\0';
    r->sync_names[0] = '\0';
    r->fenced = false;
    r->fence_reason = NULL;
    repl_set_role(r, ROLE_PRIMARY, "promoted");
    if (pgsetup_set_standby(&r->paths, false, &e) < 0 || repl_write_conf(r, &e) < 0) {
        log_error("promote.conf err=%s", e);
        mfa_free(e);
    }
    probe_reload(r);
    log_notice("promote.done elapsed_ms=%d", (int)((now_s() - r->promote_started_s) * 1000));
    /* Slot names are member_<node id>: nothing in them needs quoting. */
    setup_slot_list(r, slots, sizeof(slots));
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_create_physical_replication_slot(s, true))"
             " FROM unnest(string_to_array('%s', ',')) s"
             " WHERE s NOT IN (SELECT slot_name FROM pg_replication_slots)",
             slots);
    if (probe_query(r, sql, 5000, promote_slots, &e) < 0) {
        log_error("promote.slots err=%s", e);
        free(e);
        promote_slots(r, NULL, NULL);
    }
}

int repl_promote(struct repl *r, struct evhttp_request *req, char **err)
{
    /*
     * Whether another primary still writes is mfactl's check, made on fresh
     * answers just before: the peer view here may be a poll interval old
     * (a switchover's fence is newer than it).
     */
    if (r->role != ROLE_STANDBY || r->pm != PM_RUNNING || !r->local.up || !r->local.in_recovery)
        return err_set(err, "this member is %s, not a running standby", repl_role_name(r->role));
    if (!repl_task_begin(r, "promote"))
        return err_set(err, "busy with %s", r->task);
    r->promote_started_s = now_s();
    r->task_req = req;
    if (probe_query(r, "SELECT pg_promote(true, 60)", 65000, promoted, err) < 0) {
        r->task_req = NULL;
        repl_task_end(r, *err);
        return -1;
    }
    return 0;
}

/* ---- the switchover's fence: checkpoint and stop ---- */

static void fence_control(struct repl *r, bool ok)
{
    char lsn[32] = "";

    if (!ok) {
        task_fail(r, 500, "fence_failed", "stopped, but pg_controldata failed");
        return;
    }
    lsn_format(r->control.checkpoint_lsn, lsn, sizeof(lsn));
    if (r->task_req) {
        http_reply_json(r->task_req, 200,
                        json_pack("{s:s, s:i}", "shutdown_lsn", lsn, "timeline",
                                  (int)r->control.checkpoint_tli));
        r->task_req = NULL;
    }
    log_notice("fence.done shutdown_lsn=%s", lsn);
    repl_task_end(r, NULL);
}

static void fence_stopped(struct repl *r)
{
    pm_read_control(r, fence_control);
}

static void fence_checkpointed(struct repl *r, const char *value, const char *err)
{
    (void)value;
    if (err)
        log_warn("fence.checkpoint_failed err=%s", err);
    repl_set_role(r, ROLE_STOPPED, "fenced for a switchover");
    pm_stop(r, fence_stopped);
}

int repl_fence(struct repl *r, struct evhttp_request *req, char **err)
{
    if (r->role != ROLE_PRIMARY || r->pm != PM_RUNNING)
        return err_set(err, "this member is %s, not a running primary", repl_role_name(r->role));
    if (!repl_task_begin(r, "fence"))
        return err_set(err, "busy with %s", r->task);
    r->task_req = req;
    if (probe_query(r, "CHECKPOINT", 60000, fence_checkpointed, err) < 0) {
        r->task_req = NULL;
        repl_task_end(r, *err);
        return -1;
    }
    return 0;
}

int repl_resume(struct repl *r, char **err)
{
    const struct peer *p = peers_newest_primary(r);

    if (r->role != ROLE_STOPPED || r->task)
        return err_set(err, "this member is %s, not stopped", repl_role_name(r->role));
    if (p)
        return err_set(err, "%s is primary now", p->id);
    /* The start's own rules decide: a majority, no primary, no newer timeline. */
    r->control_valid = false;
    repl_set_role(r, ROLE_STARTING, "resumed after an abandoned switchover");
    return 0;
}

/* ---- what to do now ---- */

static bool is_first_member(const struct repl *r)
{
    return strcmp(daemon_conf(r->d)->cluster.members[0].id, r->me) == 0;
}

bool repl_peer_polled(const struct peer *p)
{
    return p->last_ok_s > 0 || p->error[0];
}

void repl_note_peers(struct repl *r)
{
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        const char *role = peer_str(p, "role");

        if (!p->status)
            continue;
        if (!json_is_false(json_object_get(p->status, "has_data")) ||
            (role && strcmp(role, "primary") == 0))
            p->had_data = true;
        if (role && strcmp(role, "witness") == 0)
            p->was_witness = true;
    }
}

/* Logs once per peer in a row why the permission waits. */
static void bootstrap_refuse(struct repl *r, const struct peer *q, const char *why)
{
    if (strcmp(r->bootstrap_refused, q->id) == 0)
        return;
    snprintf(r->bootstrap_refused, sizeof(r->bootstrap_refused), "%s", q->id);
    log_warn("bootstrap.allow ignored=%s reason=%s", q->id, why);
}

/*
 * True when setup --primary's permission may be used now. Members that do
 * not answer do not count (that is its point), but every one must have
 * been asked — a round of polls completed, and twice the poll timeout gone
 * since the start — so that the first tick, before any answer, decides
 * nothing. A peer that has shown data or the primary role since the start
 * means a cluster exists: join it. A seen peer that holds a permission too
 * means two hosts were given one: neither uses it.
 */
static bool bootstrap_may_use(struct repl *r)
{
    double settle_s = 2.0 * daemon_conf(r->d)->replicator.peer_timeout_ms / 1000.0;

    if (now_s() - r->started_s < settle_s)
        return false;
    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *q = &r->peers[i];

        if (!repl_peer_polled(q))
            return false;
        if (q->had_data) {
            bootstrap_refuse(r, q, "that member has data or is primary: join it instead");
            return false;
        }
        if (peer_seen(r, q) && json_is_true(json_object_get(q->status, "bootstrap_pending"))) {
            bootstrap_refuse(r, q,
                             "that member holds a bootstrap permission too: remove one of them");
            return false;
        }
    }
    return true;
}

static void decide_empty(struct repl *r)
{
    const struct peer *p = peers_primary(r);

    r->bootstrap_pending = bootstrap_allowed(r);
    if (p && json_is_true(json_object_get(p->status, "writable"))) {
        clone_from(r, p->id);
        return;
    }
    if (r->bootstrap_pending) {
        if (bootstrap_may_use(r))
            bootstrap(r);
        return;
    }
    if (!is_first_member(r))
        return;
    /* The first member makes the cluster once every other one answers empty. */
    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *q = &r->peers[i];
        const char *role = peer_str(q, "role");
        if (!peer_seen(r, q) || !json_is_false(json_object_get(q->status, "has_data")) || !role ||
            (strcmp(role, "starting") != 0 && strcmp(role, "witness") != 0))
            return;
    }
    bootstrap(r);
}

static void control_backoff(struct repl *r, bool ok)
{
    if (!ok)
        r->pm_next_start_s = now_s() + 5;
}

static void decide_start(struct repl *r)
{
    const struct peer *p;
    uint32_t tli;
    uint64_t lsn;

    /* Before anything that would start or adopt it: an unfinished bootstrap is made again. */
    if (bootstrap_interrupted(r)) {
        if (now_s() >= r->pm_next_start_s)
            bootstrap_redo(r);
        return;
    }
    if (r->pm == PM_RUNNING) {
        char *err = NULL;
        if (!r->local.up)
            return;
        repl_set_role(r, r->local.in_recovery ? ROLE_STANDBY : ROLE_PRIMARY, "postgres answers");
        /* An adopted postmaster may run on settings of a previous run: renew them. */
        if (repl_write_conf(r, &err) < 0) {
            log_error("start.conf err=%s", err);
            free(err);
        }
        probe_reload(r);
        return;
    }
    if (r->pm == PM_STOPPING || now_s() < r->pm_next_start_s)
        return;
    if (copy_interrupted(r)) {
        p = peers_primary(r);
        if (p && json_is_true(json_object_get(p->status, "writable"))) {
            log_warn("start.copy_interrupted next=pg_basebackup from=%s", p->id);
            clone_from(r, p->id);
        }
        return;
    }
    if (!pgsetup_has_data(&r->paths)) {
        decide_empty(r);
        return;
    }
    r->bootstrap_pending = false;
    if (!r->control_valid) {
        pm_read_control(r, control_backoff);
        return;
    }
    /* Two members claim to be primary: follow neither, start nothing. */
    if (peers_primary_count(r) > 1)
        return;
    p = peers_primary(r);
    if (pgsetup_is_standby(&r->paths)) {
        start_as(r, false, p ? p->id : r->upstream);
        return;
    }
    /* The data was a primary's. */
    if (p) {
        char *err = NULL;
        if (repl_rejoin(r, p->id, &err) < 0) {
            log_warn("start.rejoin err=%s", err);
            free(err);
        }
        return;
    }
    if (!repl_sees_majority(r))
        return;
    if (!repl_position(r, &tli, &lsn))
        return;
    for (size_t i = 0; i < r->npeers; i++) {
        if (peer_seen(r, &r->peers[i]) && peer_int(&r->peers[i], "timeline") > (json_int_t)tli)
            return; /* a newer history exists: wait for its primary */
    }
    start_as(r, true, NULL);
}

static void set_fence(struct repl *r, bool on, const char *reason)
{
    char *err = NULL;

    r->fenced = on;
    r->fence_reason = on ? reason : NULL;
    if (on)
        log_warn("fence.on reason=%s", reason);
    else
        log_notice("fence.off");
    if (repl_write_conf(r, &err) < 0) {
        log_error("fence.conf err=%s", err);
        free(err);
    }
    probe_reload(r);
}

/*
 * Seconds since standby <id> last sent a reply it had not sent before, on
 * this member's clock: a standby's own timestamps would let its clock decide.
 */
static double reply_age(struct repl *r, const char *id, const char *reply)
{
    size_t i, free_slot = MFA_ARRAY_LEN(r->replies);

    for (i = 0; i < MFA_ARRAY_LEN(r->replies); i++) {
        if (strcmp(r->replies[i].id, id) == 0)
            break;
        if (!r->replies[i].id[0] && free_slot == MFA_ARRAY_LEN(r->replies))
            free_slot = i;
    }
    if (i == MFA_ARRAY_LEN(r->replies)) {
        if (free_slot == MFA_ARRAY_LEN(r->replies))
            return 1e9;
        i = free_slot;
        snprintf(r->replies[i].id, sizeof(r->replies[i].id), "%s", id);
        r->replies[i].reply[0] = '\0';
    }
    if (strcmp(r->replies[i].reply, reply ? reply : "") != 0) {
        snprintf(r->replies[i].reply, sizeof(r->replies[i].reply), "%s", reply ? reply : "");
        r->replies[i].changed_s = now_s();
    }
    return now_s() - r->replies[i].changed_s;
}

static void update_sync(struct repl *r)
{
    const struct appconf *c = daemon_conf(r->d);
    char want[sizeof(r->sync_names)], list[900];
    size_t n = 0, len = 0, i;
    json_t *s;
    char *err = NULL;

    list[0] = '\0';
    if (c->cluster.replication == REPL_SYNC) {
        json_array_foreach(r->local.standbys, i, s)
        {
            const char *id = json_string_value(json_object_get(s, "id"));
            const char *state = json_string_value(json_object_get(s, "state"));
            double age =
                id ? reply_age(r, id, json_string_value(json_object_get(s, "reply"))) : 1e9;

            if (!id || !appconf_member(c, id) || !state || strcmp(state, "streaming") != 0 ||
                age * 1000 >= c->replicator.standby_timeout_ms)
                continue;
            int w = snprintf(list + len, sizeof(list) - len, "%s\"%s\"", n ? ", " : "", id);
            if (w < 0 || (size_t)w >= sizeof(list) - len)
                break;
            len += (size_t)w;
            n++;
        }
    }
    if (n) {
        snprintf(want, sizeof(want), "ANY %zu (%s)", n, list);
    } else if (c->cluster.replication == REPL_ASYNC || repl_sees_majority(r)) {
        want[0] = '\0';
    } else if (*r->sync_names) {
        return; /* alone without a majority: keep waiting for the standbys we had */
    } else {
        /* Alone without a majority and no list yet: admin writes wait for any other member. */
        for (i = 0; i < r->npeers; i++) {
            const char *role = peer_str(&r->peers[i], "role");
            if (role && strcmp(role, "witness") == 0)
                continue;
            int w =
                snprintf(list + len, sizeof(list) - len, "%s\"%s\"", n ? ", " : "", r->peers[i].id);
            if (w < 0 || (size_t)w >= sizeof(list) - len)
                break;
            len += (size_t)w;
            n++;
        }
        if (!n)
            return;
        snprintf(want, sizeof(want), "ANY 1 (%s)", list);
    }
    if (strcmp(want, r->sync_names) == 0)
        return;
    log_notice("sync.standbys from=%s to=%s", r->sync_names, want);
    snprintf(r->sync_names, sizeof(r->sync_names), "%s", want);
    if (repl_write_conf(r, &err) < 0) {
        log_error("sync.conf err=%s", err);
        free(err);
    }
    probe_reload(r);
}

static void setup_retried(struct repl *r, const char *err)
{
    (void)r;
    if (err)
        log_error("setup.failed err=%s retry_in_s=10", err);
}

static void decide_primary(struct repl *r)
{
    const struct appconf *c = daemon_conf(r->d);
    const struct peer *p;

    if (r->pm != PM_RUNNING || !r->local.up)
        return;
    if (r->local.in_recovery) {
        repl_set_role(r, ROLE_STANDBY, "postgres is in recovery");
        return;
    }
    p = peers_newest_primary(r);
    if (p && peer_int(p, "timeline") > (json_int_t)r->local.tli) {
        char *err = NULL;
        /* Another member was promoted past us: never take another write. */
        set_fence(r, true, "a newer primary exists");
        if (repl_rejoin(r, p->id, &err) < 0) {
            log_error("stale_primary.rejoin err=%s", err);
            free(err);
        }
        return;
    }
    /* Self-fencing needs a third voter: two members alone cannot tell a partition. */
    if (c->cluster.nmembers >= 3) {
        bool lost = repl_majority_age(r) > c->cluster.fence_after;
        if (lost && !r->fenced)
            set_fence(r, true, "no majority");
        else if (!lost && r->fenced && repl_sees_majority(r) && r->fence_reason &&
                 strcmp(r->fence_reason, "no majority") == 0)
            set_fence(r, false, NULL);
    }
    update_sync(r);
    /* Roles, database and migrations: at every start as primary, again after a failure. */
    if (!r->setup_ok && !r->setup_running && now_s() >= r->setup_retry_s) {
        char *err = NULL;
        if (setup_primary(r, setup_retried, &err) < 0) {
            log_error("setup.retry err=%s", err);
            free(err);
        }
    }
}

static void decide_standby(struct repl *r)
{
    const struct peer *p;
    char *err = NULL;

    /* A copy that cannot start (a rewind gone wrong): copy the primary afresh. */
    if (r->pm == PM_DOWN && r->pm_failed_starts >= PM_FAILED_STARTS_MAX && (p = peers_primary(r)) &&
        json_is_true(json_object_get(p->status, "writable")) && same_system(r, p)) {
        log_warn("standby.unstartable failed_starts=%d next=pg_basebackup from=%s",
                 r->pm_failed_starts, p->id);
        r->pm_failed_starts = 0;
        clone_from(r, p->id);
        return;
    }
    if (r->pm != PM_RUNNING || !r->local.up)
        return;
    if (!r->local.in_recovery) {
        repl_set_role(r, ROLE_PRIMARY, "postgres is not in recovery");
        return;
    }
    if (r->local.streaming)
        r->stale_since_s = now_s();
    p = peers_primary(r);
    if (!p)
        return;
    if (strcmp(p->id, r->upstream) != 0 ||
        (!r->local.streaming && now_s() - r->stale_since_s > STANDBY_STALE_S)) {
        log_notice("standby.follow primary=%s upstream=%s streaming=%d", p->id,
                   *r->upstream ? r->upstream : "-", r->local.streaming);
        r->stale_since_s = now_s();
        if (repl_rejoin(r, p->id, &err) < 0) {
            log_warn("standby.follow err=%s", err);
            free(err);
        }
    }
}

void repl_decide(struct repl *r)
{
    repl_note_peers(r);
    if (r->on_up)
        r->on_up(r);
    if (r->task || daemon_draining(r->d))
        return;
    if (r->rejoin_pending[0]) {
        char *err = NULL, target[sizeof(r->rejoin_pending)];

        snprintf(target, sizeof(target), "%s", r->rejoin_pending);
        if (repl_rejoin(r, target, &err) < 0) {
            log_warn("rejoin.gave_up primary=%s err=%s", target, err);
            snprintf(r->task_error, sizeof(r->task_error), "%s", err);
            free(err);
        }
        if (r->task)
            return;
    }
    switch (r->role) {
    case ROLE_STARTING:
        decide_start(r);
        break;
    case ROLE_PRIMARY:
        decide_primary(r);
        break;
    case ROLE_STANDBY:
        decide_standby(r);
        break;
    default:
        break;
    }
}
