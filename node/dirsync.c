/*
 * The scheduled directory sync (dirsync.h).
 *
 * The loop only decides when to look: while this node's local database is
 * the writable primary at schema 3 or later, at most every CHECK_MIN_MS, a
 * job goes to a one-thread worker pool of its own (so a slow directory
 * never holds up the LDAP first factor or anything else on the node's
 * shared workers). The job does everything that blocks: it opens a blocking
 * libpq connection to the local database as the node's role, asks whether a
 * sync is due — none yet, or the newest that was not a dry run started
 * directory.interval_s ago or more, whoever ran it (a sync by mfactl counts;
 * a refused or failed one too, so a broken directory is tried again on the
 * schedule, not every few seconds) — and, when it is, runs
 * directory_sync_run() with trigger "schedule", then closes. Asking the
 * database rather than remembering keeps the schedule across a failover.
 *
 * The job takes a copy of the configuration and the node's id when it is
 * submitted, on the loop: a reload may rewrite the daemon's struct while the
 * worker reads, and the copy's strings (the directory keys and the members
 * need a restart, they are not CFG_RELOADABLE) stay where they are
 * (cfg_keep_restart_keys()).
 *
 * Another sync holding the lock (mfactl's) is no failure: the job looks
 * again after CHECK_MIN_MS. dirsync_stop() sets the stop flag the sync
 * looks at between pages and before it applies, which also shuts the LDAP
 * socket down, and cancels the database statement running, so that the
 * node stops promptly in the middle of a sync. A sync so stopped is no
 * failure either (DIRECTORY_SYNC_STOPPED): it writes no directory_syncs
 * row, so the schedule does not wait interval_s for it, and it is neither
 * counted nor shown. A cancel that lands on the COMMIT of a finished sync
 * can roll it back: that one is then simply not recorded, and redone by the
 * next primary's node (or this one's after its restart) when it looks.
 */
#include "dirsync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "daemon.h"
#include "db.h"
#include "directory.h"
#include "errmsg.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "secrets.h"
#include "worker.h"

#define CHECK_MIN_MS   10000 /* the due-ness is asked at most this often */
#define CHECK_MAX_MS   30000 /* and at least this often: rows deleted or a switchover seen soon */
#define STATEMENT_MS   "120000"
#define SCHEMA_DIRSYNC 3 /* directory_syncs and the users' directory columns */
#define CONNINFO_MAX   1024
#define PASSWORD_MAX   256

enum sync_result { RESULT_OK = 0, RESULT_REFUSED, RESULT_FAILED, RESULT_COUNT_ };
static const char *const result_names[RESULT_COUNT_] = { "ok", "refused", "failed" };

struct dirsync {
    struct worker_pool *pool;
    bool running;
    uint64_t next_check_ms; /* monotonic; 0: at the next chance */
    /* The connection to the local database, built once; the password apart and wiped at stop. */
    char conninfo[CONNINFO_MAX];
    char password[PASSWORD_MAX];
    char sslmode[32];
    const char *sslrootcert; /* the configuration's (a restart key) */
    char app[64];
    json_t *last; /* the last scheduled sync this node ran, for /status; NULL before */
    uint64_t syncs[RESULT_COUNT_];
    double last_sync_s; /* wall clock of its end, 0 before */
    /* Shared with the worker: set by dirsync_stop(); the cancel handle of the job's connection. */
    atomic_bool stop;
    pthread_mutex_t mu;
    PGcancel *cancel; /* under mu; NULL when the job holds no connection */
};

struct dirsync_job {
    struct dirsync *ds;
    struct appconf conf; /* a copy made on the loop (its strings are restart keys, kept) */
    char node_id[64];
    /* out */
    bool ran;        /* a sync was due and ran (whatever its result) */
    long long due_s; /* not due: seconds until it is */
    int rc;          /* directory_sync_run()'s */
    json_t *report;
    char *err;
};

/* ---- on the worker ---- */

static PGconn *job_connect(const struct dirsync *ds, char **err)
{
    const char *keys[] = { "dbname",           "password", "sslmode", "sslrootcert",
                           "application_name", "options",  NULL };
    const char *values[] = { ds->conninfo, ds->password,
                             ds->sslmode,  ds->sslrootcert,
                             ds->app,      "-c statement_timeout=" STATEMENT_MS,
                             NULL };
    /* expand_dbname: the first value is the conninfo string; the others add to it */
    PGconn *conn = PQconnectdbParams(keys, values, 1);

    if (!conn) {
        err_set(err, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        err_set(err, "connecting to the local database: %.200s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/*
 * Whether a sync is due: 1 (none yet, or the newest one not a dry run
 * started interval_s ago or more), 0 with *due_s, or -1 with *err.
 */
static int job_due(PGconn *conn, int interval_s, long long *due_s, char **err)
{
    static const char sql[] =
        "SELECT coalesce(ceil(extract(epoch FROM max(started_at) + make_interval(secs => $1)"
        " - now()))::bigint, 0) FROM directory_syncs WHERE result <> 'dry_run'";
    char interval[16];
    const char *params[] = { interval };
    PGresult *res;
    int rc = -1;

    snprintf(interval, sizeof(interval), "%d", interval_s);
    res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err_set(err, "reading directory_syncs: %.200s", PQresultErrorMessage(res));
    } else {
        *due_s = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        rc = *due_s <= 0;
    }
    PQclear(res);
    return rc;
}

/* Makes <conn>'s statements cancellable by dirsync_stop() (NULL: no longer). */
static void job_cancel_handle(struct dirsync *ds, PGconn *conn)
{
    pthread_mutex_lock(&ds->mu);
    if (ds->cancel)
        PQfreeCancel(ds->cancel);
    ds->cancel = conn ? PQgetCancel(conn) : NULL;
    pthread_mutex_unlock(&ds->mu);
}

static void sync_work(void *arg)
{
    struct dirsync_job *j = arg;
    const struct directory_sync_opts opts = {
        .trigger = DIRECTORY_TRIGGER_SCHEDULE,
        .node_id = j->node_id,
        .stop = &j->ds->stop,
    };
    PGconn *conn;
    int due;

    if (atomic_load(&j->ds->stop))
        return;
    conn = job_connect(j->ds, &j->err);
    if (!conn)
        return;
    job_cancel_handle(j->ds, conn);
    due = job_due(conn, j->conf.directory.interval_s, &j->due_s, &j->err);
    if (due == 1 && !atomic_load(&j->ds->stop)) {
        j->ran = true;
        j->rc = directory_sync_run(conn, &j->conf, &opts, &j->report, &j->err);
    }
    job_cancel_handle(j->ds, NULL);
    PQfinish(conn);
}

/* ---- on the loop ---- */

/*
 * A count of <report>: a number, or the length of a list (conflicts,
 * skipped) plus its "<key>_more", the entries past the report's cap.
 */
static json_int_t report_count(const json_t *report, const char *key)
{
    const json_t *v = json_object_get(report, key);
    char more[64];

    if (!json_is_array(v))
        return json_integer_value(v);
    snprintf(more, sizeof(more), "%s_more", key);
    return (json_int_t)json_array_size(v) + json_integer_value(json_object_get(report, more));
}

static void copy_string(json_t *to, const json_t *from, const char *key)
{
    const char *v = json_string_value(json_object_get(from, key));

    if (v)
        json_object_set_new(to, key, json_string(v));
}

/* What /status shows of a finished sync: counts, never names or values from the directory. */
static json_t *last_json(const json_t *report, enum sync_result result, const char *err)
{
    const char *reason = json_string_value(json_object_get(report, "reason"));
    json_t *out =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "result", result_names[result],
                  "trigger", "schedule", "created", report_count(report, "created"), "updated",
                  report_count(report, "updated"), "disabled", report_count(report, "disabled"),
                  "enabled", report_count(report, "enabled"), "conflicts",
                  report_count(report, "conflicts"), "skipped", report_count(report, "skipped"));

    if (!out)
        return NULL;
    copy_string(out, report, "started_at");
    copy_string(out, report, "finished_at");
    if (err)
        reason = err;
    if (reason && *reason)
        json_object_set_new(out, "reason", json_string(reason));
    return out;
}

/* The next look at the schedule: when the sync is due, but not sooner than CHECK_MIN_MS. */
static void plan_next(struct dirsync *ds, long long due_s)
{
    uint64_t wait_ms = due_s > 0 ? (uint64_t)due_s * 1000 : CHECK_MIN_MS;

    if (wait_ms < CHECK_MIN_MS)
        wait_ms = CHECK_MIN_MS;
    if (wait_ms > CHECK_MAX_MS)
        wait_ms = CHECK_MAX_MS;
    ds->next_check_ms = clock_mono_ms() + wait_ms;
}

/* One line per scheduled sync: the counts, and a refusal's reason or a failure's error. */
static void log_sync(enum sync_result result, const json_t *report, const char *err)
{
    static const char *const keys[] = { "directory_users", "created",   "updated", "enabled",
                                        "disabled",        "conflicts", "skipped" };
    const char *reason = json_string_value(json_object_get(report, "reason"));
    long long v[MFA_ARRAY_LEN(keys)]; /* %lld: json_int_t may be long or long long */

    if (result == RESULT_FAILED) {
        log_warn("directory.sync result=failed trigger=schedule err=%s", err ? err : "unknown");
        return;
    }
    for (size_t i = 0; i < MFA_ARRAY_LEN(keys); i++)
        v[i] = (long long)report_count(report, keys[i]);
    if (result == RESULT_REFUSED)
        log_warn("directory.sync result=refused trigger=schedule directory_users=%lld "
                 "created=%lld updated=%lld enabled=%lld disabled=%lld conflicts=%lld "
                 "skipped=%lld reason=%s",
                 v[0], v[1], v[2], v[3], v[4], v[5], v[6], reason ? reason : "");
    else
        log_notice("directory.sync result=ok trigger=schedule directory_users=%lld created=%lld "
                   "updated=%lld enabled=%lld disabled=%lld conflicts=%lld skipped=%lld",
                   v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
}

static void sync_done(void *arg)
{
    struct dirsync_job *j = arg;
    struct dirsync *ds = j->ds;
    enum sync_result result;

    ds->running = false;
    if (!j->ran) {
        if (j->err && !atomic_load(&ds->stop)) /* not the cancel of a node stopping */
            log_warn("directory.schedule_check_failed err=%s", j->err);
        plan_next(ds, j->err ? 0 : j->due_s);
        goto done;
    }
    if (j->rc == DIRECTORY_SYNC_STOPPED) {
        /* the node is stopping (dirsync_stop()): no row, nothing to count; due as it was */
        log_info("directory.sync result=stopped trigger=schedule");
        plan_next(ds, 0);
        goto done;
    }
    if (j->rc == DIRECTORY_SYNC_BUSY) {
        /* mfactl's sync is running: it writes the row; look again soon, nothing failed */
        log_info("directory.sync result=busy trigger=schedule");
        plan_next(ds, 0);
        goto done;
    }
    result = j->rc == 0 ? RESULT_OK : j->rc == 1 ? RESULT_REFUSED : RESULT_FAILED;
    ds->syncs[result]++;
    ds->last_sync_s = (double)clock_wall_ms() / 1000.0;
    json_decref(ds->last);
    ds->last = last_json(j->report, result, result == RESULT_FAILED ? j->err : NULL);
    log_sync(result, j->report, j->err);
    /* The next one is interval_s from this one's start: the row says when. */
    plan_next(ds, j->conf.directory.interval_s);
done:
    json_decref(j->report);
    free(j->err);
    free(j);
}

/* Builds the connection settings once: this member's database, the node's role and TLS. */
static int build_conninfo(struct dirsync *ds, const struct node *n, char **err)
{
    const struct appconf *c = node_conf(n);
    const struct member_conf *me = appconf_local(c);
    const char *rootcert = c->node.db.sslrootcert;

    if (*c->node.db.password) {
        if (strlen(c->node.db.password) >= sizeof(ds->password))
            return err_set(err, "node.db.password: too long");
        snprintf(ds->password, sizeof(ds->password), "%s", c->node.db.password);
    } else if (db_password(&n->keys, c->node.db.user, ds->password, sizeof(ds->password), err) <
               0) {
        return err_prefix(err, "node.db.password from the key file");
    }
    if (!*rootcert && (strcmp(c->node.db.sslmode, "verify-ca") == 0 ||
                       strcmp(c->node.db.sslmode, "verify-full") == 0))
        rootcert = c->cluster.tls_ca;
    ds->sslrootcert = *rootcert ? rootcert : NULL;
    snprintf(ds->sslmode, sizeof(ds->sslmode), "%s", c->node.db.sslmode);
    snprintf(ds->app, sizeof(ds->app), "mfa-node-%s-dirsync", me->id);
    return pgconn_conninfo(ds->conninfo, sizeof(ds->conninfo), me->address, me->ports.postgres,
                           c->node.db.name, c->node.db.user, NULL, c->node.db.connect_timeout_ms,
                           err);
}

int dirsync_start(struct node *n, char **err)
{
    struct dirsync *ds;

    if (!node_conf(n)->directory.enabled)
        return 0;
    ds = calloc(1, sizeof(*ds));
    if (!ds)
        return err_set(err, "out of memory");
    n->dirsync = ds;
    atomic_init(&ds->stop, false);
    pthread_mutex_init(&ds->mu, NULL);
    if (build_conninfo(ds, n, err) < 0)
        return err_prefix(err, "directory sync");
    ds->pool = worker_pool_new(daemon_base(n->d), 1, err);
    if (!ds->pool)
        return err_prefix(err, "directory sync");
    log_notice("directory.schedule interval_s=%d", node_conf(n)->directory.interval_s);
    return 0;
}

void dirsync_tick(struct node *n)
{
    struct dirsync *ds = n->dirsync;
    struct nodedb_status st;
    struct dirsync_job *j;

    if (!ds || !ds->pool || ds->running || clock_mono_ms() < ds->next_check_ms ||
        daemon_draining(n->d))
        return;
    nodedb_get_status(n->db, &st);
    if (st.role != NODEDB_PRIMARY || !st.primary_up || st.schema_version < SCHEMA_DIRSYNC)
        return;
    j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->ds = ds;
    j->conf = *node_conf(n);
    snprintf(j->node_id, sizeof(j->node_id), "%s", appconf_local(node_conf(n))->id);
    if (worker_submit(ds->pool, sync_work, sync_done, j) < 0) {
        free(j);
        return;
    }
    ds->running = true;
    ds->next_check_ms = clock_mono_ms() + CHECK_MIN_MS;
}

void dirsync_stop(struct node *n)
{
    struct dirsync *ds = n->dirsync;

    if (!ds)
        return;
    /* a sync in progress ends at once: its LDAP socket shut down, its statement cancelled */
    atomic_store(&ds->stop, true);
    pthread_mutex_lock(&ds->mu);
    if (ds->cancel) {
        char errbuf[256];

        (void)PQcancel(ds->cancel, errbuf, sizeof(errbuf));
    }
    pthread_mutex_unlock(&ds->mu);
    worker_pool_free(ds->pool); /* waits for the sync to see it; its done runs here */
    if (ds->cancel)
        PQfreeCancel(ds->cancel);
    pthread_mutex_destroy(&ds->mu);
    json_decref(ds->last);
    secret_wipe(ds->password, sizeof(ds->password));
    free(ds);
    n->dirsync = NULL;
}

void dirsync_status(const struct node *n, json_t *status)
{
    const struct dirsync *ds = n->dirsync;
    json_t *d = json_pack("{s:b, s:b}", "enabled", ds != NULL, "running", ds && ds->running);

    if (!d)
        return;
    if (ds)
        json_object_set_new(d, "last", ds->last ? json_deep_copy(ds->last) : json_null());
    json_object_set_new(status, "directory", d);
}

void dirsync_metrics(const struct node *n, struct evbuffer *out)
{
    const struct dirsync *ds = n->dirsync;

    metrics_family(out, "mfa_directory_syncs_total", METRIC_COUNTER,
                   "Scheduled directory syncs this node ran, by result.");
    for (int i = 0; i < RESULT_COUNT_; i++)
        metrics_sample(out, "mfa_directory_syncs_total", ds ? (double)ds->syncs[i] : 0, "result",
                       result_names[i], NULL);
    metrics_single(out, "mfa_directory_last_sync_timestamp_seconds", METRIC_GAUGE,
                   "When the last scheduled directory sync this node ran ended (0: none).",
                   ds ? ds->last_sync_s : 0);
}
