/*
 * The local postmaster as mfa-replicator's child: started, stopped, adopted
 * after a replicator restart, restarted with a growing delay when it dies on
 * its own, and the PostgreSQL tools (initdb, pg_basebackup, pg_rewind,
 * pg_controldata) run to completion beside it.
 *
 * The postmaster runs in its own session, so a signal to the replicator's
 * process group does not reach it: stopping the replicator leaves the
 * database up (systemd's KillMode=mixed), and the next replicator adopts it
 * from postmaster.pid. An adopted postmaster is not our child; its exit is
 * noticed by polling kill(pid, 0) on the tick.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "log.h"
#include "proc.h"
#include "repl.h"

#define PM_RESTART_MIN_S 1
#define PM_STABLE_S      60 /* a postmaster that ran this long restarts at once */
#define PM_STOP_QUIT_S   30 /* a fast shutdown this slow becomes an immediate one */
#define PM_STOP_KILL_S   60

static double now_s(void)
{
    return (double)clock_mono_ms() / 1000.0;
}

/* The postmaster is gone: tell a waiting task, or plan a restart. */
static void pm_gone(struct repl *r, const char *how)
{
    void (*on_stop)(struct repl *) = r->pm_on_stop;
    bool expected = r->pm == PM_STOPPING;

    r->pm_failed_starts = r->pm_answered ? 0 : r->pm_failed_starts + 1;
    r->pm_answered = false;
    r->pm = PM_DOWN;
    r->pm_pid = 0;
    r->pm_proc = NULL;
    r->pm_adopted = false;
    r->local.up = false;
    r->pm_on_stop = NULL;
    r->control_valid = false;
    if (expected) {
        log_notice("pg.stopped how=%s", how);
    } else {
        /* A crash: wait longer each time it dies soon after a start. */
        if (now_s() - r->pm_started_s >= PM_STABLE_S)
            r->pm_backoff_s = 0;
        else
            r->pm_backoff_s = r->pm_backoff_s ? r->pm_backoff_s * 2 : PM_RESTART_MIN_S;
        if (r->pm_backoff_s > daemon_conf(r->d)->replicator.restart_backoff_max)
            r->pm_backoff_s = daemon_conf(r->d)->replicator.restart_backoff_max;
        r->pm_next_start_s = now_s() + r->pm_backoff_s;
        r->pm_restarts++;
        log_warn("pg.died how=%s restart_in_s=%d restarts=%d", how, r->pm_backoff_s,
                 r->pm_restarts);
        /* A primary must confirm its role again before it serves writes. */
        if (r->role == ROLE_PRIMARY)
            repl_set_role(r, ROLE_STARTING, "postgres died");
    }
    if (on_stop)
        on_stop(r);
}

static void pm_exited(void *arg, int status, const char *tail, bool timed_out)
{
    struct repl *r = arg;
    char how[64];

    (void)tail;
    (void)timed_out;
    pm_gone(r, proc_status_text(status, how, sizeof(how)));
}

int pm_start(struct repl *r, char **err)
{
    const char *argv[16];
    char store[2048];
    struct proc_spec spec = { 0 };

    if (r->pm != PM_DOWN)
        return err_set(err, "postgres is already running");
    if (pgsetup_argv_postgres(daemon_conf(r->d), &r->paths, argv, MFA_ARRAY_LEN(argv), store,
                              sizeof(store)) < 0)
        return err_set(err, "postgres command line too long");
    spec.argv = argv;
    spec.log_path = r->paths.log;
    spec.new_session = true;
    r->pm_proc = proc_spawn(r->procs, &spec, pm_exited, r, err);
    if (!r->pm_proc)
        return -1;
    r->pm = PM_RUNNING;
    r->pm_pid = proc_pid(r->pm_proc);
    r->pm_started_s = now_s();
    r->control_valid = false;
    log_notice("pg.started pid=%d standby=%d", (int)r->pm_pid, pgsetup_is_standby(&r->paths));
    return 0;
}

void pm_stop(struct repl *r, void (*done)(struct repl *r))
{
    if (r->pm == PM_DOWN) {
        if (done)
            done(r);
        return;
    }
    r->pm_on_stop = done;
    if (r->pm == PM_STOPPING)
        return;
    r->pm = PM_STOPPING;
    r->pm_stop_started_s = now_s();
    /* SIGINT: fast shutdown, a checkpoint and every WAL record sent to the standbys. */
    if (kill(r->pm_pid, SIGINT) < 0 && errno == ESRCH)
        pm_gone(r, "already gone");
}

void pm_adopt(struct repl *r)
{
    char *err = NULL;
    pid_t pid = pgsetup_read_pid(&r->paths, &err);

    if (pid < 0) {
        log_warn("pg.adopt_failed err=%s", err);
        free(err);
        return;
    }
    if (pid == 0)
        return;
    r->pm = PM_RUNNING;
    r->pm_pid = pid;
    r->pm_adopted = true;
    r->pm_started_s = now_s();
    log_notice("pg.adopted pid=%d", (int)pid);
}

void pm_tick(struct repl *r)
{
    char *err = NULL;

    if (r->pm != PM_DOWN && r->pm_adopted && kill(r->pm_pid, 0) < 0 && errno == ESRCH) {
        pm_gone(r, "the adopted postmaster exited");
        return;
    }
    if (r->pm == PM_STOPPING && r->pm_adopted && daemon_every(r->d, 1000))
        kill(r->pm_pid, SIGINT);
    /* A fast shutdown that does not end: immediate shutdown, then kill. */
    if (r->pm == PM_STOPPING && daemon_every(r->d, 1000)) {
        double waited = now_s() - r->pm_stop_started_s;
        if (waited >= PM_STOP_KILL_S) {
            log_error("pg.stop_stuck waited_s=%d signal=KILL", (int)waited);
            kill(r->pm_pid, SIGKILL);
        } else if (waited >= PM_STOP_QUIT_S) {
            log_warn("pg.stop_slow waited_s=%d signal=QUIT", (int)waited);
            kill(r->pm_pid, SIGQUIT);
        }
    }
    /* Restart after a crash, in the role it had. */
    if (r->pm == PM_DOWN && r->pm_next_start_s > 0 && now_s() >= r->pm_next_start_s && !r->task &&
        (r->role == ROLE_STANDBY)) {
        r->pm_next_start_s = 0;
        if (pm_start(r, &err) < 0) {
            log_error("pg.restart_failed err=%s", err);
            free(err);
            r->pm_next_start_s = now_s() + (r->pm_backoff_s ? r->pm_backoff_s : 1);
        }
    }
}

/*
 * The tools' environment: the C locale, so pg_controldata's report reads the
 * same everywhere, and no PG* variables to redirect them.
 */
static const char *const *tool_env(const char **env, char *store, size_t size)
{
    const char *home = getenv("HOME");

    snprintf(store, size, "HOME=%s", home ? home : "/nonexistent");
    env[0] = "LC_ALL=C";
    env[1] = "PATH=/usr/bin:/bin";
    env[2] = store;
    env[3] = NULL;
    return env;
}

struct tool {
    struct repl *r;
    void (*done)(struct repl *r, bool ok, const char *tail);
    char name[64];
};

static void tool_exited(void *arg, int status, const char *tail, bool timed_out)
{
    struct tool *t = arg;
    char how[64];
    bool ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;

    if (ok)
        log_info("pg.tool name=%s result=ok", t->name);
    else
        log_warn("pg.tool name=%s result=%s%s", t->name, proc_status_text(status, how, sizeof(how)),
                 timed_out ? " timed_out=1" : "");
    t->done(t->r, ok, tail);
    free(t);
}

int pm_run_tool(struct repl *r, const char *const *argv, int timeout_ms,
                void (*done)(struct repl *r, bool ok, const char *tail), char **err)
{
    struct proc_spec spec = { 0 };
    const char *env[4];
    char envstore[600];
    struct tool *t = calloc(1, sizeof(*t));
    const char *base = strrchr(argv[0], '/');

    if (!t)
        return err_set(err, "out of memory");
    t->r = r;
    t->done = done;
    snprintf(t->name, sizeof(t->name), "%s", base ? base + 1 : argv[0]);
    spec.argv = argv;
    spec.env = tool_env(env, envstore, sizeof(envstore));
    spec.log_path = r->paths.log;
    spec.timeout_ms = timeout_ms;
    spec.new_session = true;
    if (!proc_spawn(r->procs, &spec, tool_exited, t, err)) {
        free(t);
        return -1;
    }
    log_info("pg.tool name=%s started", t->name);
    return 0;
}

static void control_read(struct repl *r, bool ok, const char *tail)
{
    void (*done)(struct repl *, bool) = r->control_done;
    char *err = NULL;

    r->control_done = NULL;
    r->control_reading = false;
    /* The tail holds the whole report: it is about 2 KiB. */
    if (ok && pgsetup_parse_controldata(tail, &r->control, &err) == 0) {
        r->control_valid = true;
    } else {
        if (err)
            log_warn("pg.controldata err=%s", err);
        free(err);
        ok = false;
    }
    if (done)
        done(r, ok);
}

void pm_read_control(struct repl *r, void (*done)(struct repl *r, bool ok))
{
    const char *argv[8];
    char store[1024];
    char *err = NULL;

    if (r->control_reading ||
        pgsetup_argv_controldata(daemon_conf(r->d), &r->paths, argv, MFA_ARRAY_LEN(argv), store,
                                 sizeof(store)) < 0) {
        if (done)
            done(r, false);
        return;
    }
    r->control_done = done;
    r->control_reading = true;
    if (pm_run_tool(r, argv, 10000, control_read, &err) < 0) {
        r->control_done = NULL;
        r->control_reading = false;
        log_error("pg.controldata err=%s", err);
        free(err);
        if (done)
            done(r, false);
    }
}
