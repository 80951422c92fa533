/*
 * The replicator's view of its own PostgreSQL: one query per tick over the
 * superuser connection on the local socket, which reads the role, timeline,
 * WAL positions, the WAL receiver and, on a primary, the standbys from
 * pg_stat_replication. The role decisions (role.c) and /status work from
 * this snapshot; nothing else polls the database.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "log.h"
#include "pgconn.h"
#include "repl.h"

static const char probe_sql[] =
    "SELECT r, (SELECT system_identifier FROM pg_control_system())::text,"
    /* A standby's timeline: what it streams, else the newest WAL it holds. */
    " CASE WHEN r THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver"
    "                            WHERE received_tli > 0),"
    "   (SELECT ('x' || substr(max(name), 1, 8))::bit(32)::int FROM pg_ls_waldir()"
    "     WHERE name ~ '^[0-9A-F]{24}$'),"
    "   (SELECT timeline_id FROM pg_control_checkpoint()))"
    "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"
    " CASE WHEN r THEN NULL ELSE pg_current_wal_flush_lsn()::text END,"
    " pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
    " CASE WHEN r AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"
    "  THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)"
    "  ELSE 0 END,"
    " coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),"
    " current_setting('default_transaction_read_only') = 'on',"
    " (SELECT coalesce(json_agg(json_build_object('id', application_name, 'state', state,"
    "   'sync', sync_state, 'replay_lsn', replay_lsn::text, 'reply', reply_time::text,"
    "   'reply_age_s',"
    "   coalesce(extract(epoch FROM now() - reply_time), 1e9)) ORDER BY application_name),"
    "   '[]') FROM pg_stat_replication)::text"
    " FROM pg_is_in_recovery() r";

static uint64_t lsn_or_zero(const PGresult *res, int col)
{
    uint64_t lsn = 0;

    if (PQgetisnull(res, 0, col) || lsn_parse(PQgetvalue(res, 0, col), &lsn) < 0)
        return 0;
    return lsn;
}

static void probe_done(void *arg, const PGresult *res, const char *err)
{
    struct repl *r = arg;
    struct local_state *l = &r->local;
    uint32_t old_tli = l->tli;
    json_error_t jerr;

    r->probe_in_flight = false;
    if (err || PQntuples(res) != 1 || PQnfields(res) != 10) {
        if (l->up)
            log_warn("pg.probe_failed err=%s", err ? err : "unexpected result");
        l->up = false;
        return;
    }
    l->up = true;
    r->pm_answered = true;
    r->pm_failed_starts = 0;
    l->in_recovery = PQgetvalue(res, 0, 0)[0] == 't';
    snprintf(l->sysid, sizeof(l->sysid), "%s", PQgetvalue(res, 0, 1));
    l->tli = (uint32_t)strtoul(PQgetvalue(res, 0, 2), NULL, 10);
    l->flush_lsn = lsn_or_zero(res, 3);
    l->receive_lsn = lsn_or_zero(res, 4);
    l->replay_lsn = lsn_or_zero(res, 5);
    l->lag_s = strtod(PQgetvalue(res, 0, 6), NULL);
    l->streaming = PQgetvalue(res, 0, 7)[0] == 't';
    l->read_only = PQgetvalue(res, 0, 8)[0] == 't';
    json_decref(l->standbys);
    l->standbys = json_loads(PQgetvalue(res, 0, 9), 0, &jerr);
    if (!l->in_recovery && l->tli != old_tli)
        probe_read_history(r);
}

void probe_tick(struct repl *r)
{
    char *err = NULL;

    if (r->probe_in_flight || r->pm != PM_RUNNING || !r->db)
        return;
    if (pgconn_query(r->db, probe_sql, 0, NULL, PGCONN_SYNC_DEFAULT, 1000, probe_done, r, &err) <
        0) {
        log_error("pg.probe err=%s", err);
        free(err);
        return;
    }
    r->probe_in_flight = true;
}

/*
 * SIGHUP to the postmaster, as pg_reload_conf() does, but never queued behind
 * a long query on the one local connection: a fence must take effect now.
 */
void probe_reload(struct repl *r)
{
    if (r->pm != PM_RUNNING || r->pm_pid <= 0)
        return;
    if (kill(r->pm_pid, SIGHUP) < 0)
        log_error("pg.reload pid=%d err=%s", (int)r->pm_pid, strerror(errno));
}

void probe_read_history(struct repl *r)
{
    char path[400], text[8192];
    char *err = NULL;
    ssize_t n;
    int fd, count;

    r->nhistory = 0;
    r->history_tli = r->local.tli;
    if (r->local.tli <= 1)
        return;
    snprintf(path, sizeof(path), "%s/pg_wal/%08X.history", r->paths.pgdata, r->local.tli);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_warn("pg.history path=%s err=%s", path, strerror(errno));
        return;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0)
        return;
    text[n] = '\0';
    count = pgsetup_parse_history(text, r->history, MFA_ARRAY_LEN(r->history), &err);
    if (count < 0) {
        log_warn("pg.history path=%s err=%s", path, err);
        free(err);
        return;
    }
    r->nhistory = count;
}

struct query {
    struct repl *r;
    void (*done)(struct repl *r, const char *value, const char *err);
};

static void query_done(void *arg, const PGresult *res, const char *err)
{
    struct query *q = arg;

    if (err)
        q->done(q->r, NULL, err);
    else
        q->done(q->r, PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "", NULL);
    free(q);
}

int probe_query(struct repl *r, const char *sql, int timeout_ms,
                void (*done)(struct repl *r, const char *value, const char *err), char **err)
{
    struct query *q = calloc(1, sizeof(*q));

    if (!q)
        return err_set(err, "out of memory");
    q->r = r;
    q->done = done;
    if (pgconn_query(r->db, sql, 0, NULL, PGCONN_SYNC_DEFAULT, timeout_ms, query_done, q, err) <
        0) {
        free(q);
        return -1;
    }
    return 0;
}

bool repl_position(const struct repl *r, uint32_t *tli, uint64_t *lsn)
{
    const struct local_state *l = &r->local;

    if (r->pm == PM_RUNNING && l->up) {
        *tli = l->tli;
        if (!l->in_recovery)
            *lsn = l->flush_lsn;
        else
            *lsn = l->receive_lsn > l->replay_lsn ? l->receive_lsn : l->replay_lsn;
        return true;
    }
    if (r->control_valid) {
        const struct pg_controldata *c = &r->control;
        *tli = c->min_recovery_tli > c->checkpoint_tli ? c->min_recovery_tli : c->checkpoint_tli;
        *lsn = c->min_recovery_lsn > c->checkpoint_lsn ? c->min_recovery_lsn : c->checkpoint_lsn;
        return true;
    }
    return false;
}
