/*
 * mfa-pg-probe CONNINFO SCENARIO [ARG...]: drives common/pgconn on one
 * event_base and prints lines that tests/integration/test_pgconn.py checks.
 * Every scenario stops by itself (a bound timer gives up with exit code 3).
 *
 *   query                    parameters, prepared statements (registered before
 *                            and after connecting, one refused by the server),
 *                            server errors, recovery after an error; prints
 *                            "<label> ok rows=N <cells>" or "<label> err <error>"
 *   sync                     synchronous_commit as seen inside each level's
 *                            transaction, then the session's value again
 *   standby-read STANDBY     inserts into table pgconn_probe with LOCAL and
 *                            REMOTE_APPLY; as each callback fires, reads the
 *                            row on STANDBY (a second conninfo)
 *   deadline MS              connects, prints "ready", waits for "go" on stdin,
 *                            sends SELECT 1 with a deadline of MS while a 10 ms
 *                            timer counts ticks
 *   connect-deadline MS      one connection attempt with a deadline of MS and a
 *                            query queued meanwhile; prints both outcomes
 *   reconnect SECONDS        a prepared query every 200 ms (deadline 1000 ms)
 *                            for SECONDS or until "quit"/EOF on stdin; prints
 *                            each outcome, state changes and the counters
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgconn.h"
#include "toolkit.h"

static struct {
    struct event_base *base;
    struct pgconn *pg, *standby;
    struct event *bound, *tick, *input, *every;
    const char *scenario;
    struct timespec t0, sent;
    unsigned long ticks;
    int ms, step, seq, rc;
    bool stopping, reported;
    char values[5][64];
} P;

static long ms_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_nsec - t->tv_nsec) / 1000000L;
}

static void finish(int rc)
{
    P.rc = rc;
    P.stopping = true;
    event_base_loopbreak(P.base);
}

static void submit_failed(const char *what, char *err)
{
    tk_out("%s submit failed: %s", what, err ? err : "?");
    free(err);
    finish(1);
}

static void print_result(const char *label, const PGresult *res, const char *err)
{
    char cells[1024] = "";
    size_t n = 0;

    if (err) {
        tk_out("%s err %s", label, err);
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        for (int f = 0; f < PQnfields(res); f++) {
            const char *v = PQgetisnull(res, r, f) ? "NULL" : PQgetvalue(res, r, f);
            const char *sep = f > 0 ? "|" : r > 0 ? ";" : "";

            n += (size_t)snprintf(cells + n, n < sizeof(cells) ? sizeof(cells) - n : 0, "%s%s", sep,
                                  v);
            if (n >= sizeof(cells))
                n = sizeof(cells) - 1;
        }
    }
    tk_out("%s ok rows=%d %s", label, PQntuples(res), cells);
}

static void on_tick(evutil_socket_t fd, short what, void *arg);

static void start_ticks(void)
{
    struct timeval ten = { 0, 10000 };

    P.ticks = 0;
    clock_gettime(CLOCK_MONOTONIC, &P.t0);
    P.tick = event_new(P.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(P.tick, &ten);
}

/* ---- query ---- */

struct qstep {
    const char *label;
    const char *sql;          /* plain SQL, or */
    const char *prepared;     /* a prepared statement */
    const char *register_sql; /* registered just before this step */
    int nparams;
    const char *params[3];
    enum pgconn_sync sync;
};

static const struct qstep qsteps[] = {
    { "params",
      "SELECT $1::int + $2::int AS sum, $3::text AS t",
      NULL,
      NULL,
      3,
      { "2", "40", "it's a \"quote\"" },
      PGCONN_SYNC_DEFAULT },
    { "prepared", NULL, "greet", NULL, 2, { "alice", "3" }, PGCONN_SYNC_DEFAULT },
    { "prepared", NULL, "greet", NULL, 2, { "bob", "4" }, PGCONN_SYNC_LOCAL },
    { "late-prepared", NULL, "late", "SELECT upper($1::text)", 1, { "late" }, PGCONN_SYNC_DEFAULT },
    { "null", "SELECT $1::text IS NULL", NULL, NULL, 1, { NULL }, PGCONN_SYNC_DEFAULT },
    { "rows",
      "SELECT g FROM generate_series(1, 3) AS g",
      NULL,
      NULL,
      0,
      { NULL },
      PGCONN_SYNC_DEFAULT },
    { "bad-sql", "SELEC 1", NULL, NULL, 0, { NULL }, PGCONN_SYNC_DEFAULT },
    { "after-error", "SELECT 'fine'", NULL, NULL, 0, { NULL }, PGCONN_SYNC_DEFAULT },
    { "tx-error", "SELECT 1/0", NULL, NULL, 0, { NULL }, PGCONN_SYNC_OFF },
    { "after-tx-error", "SELECT 'fine'", NULL, NULL, 0, { NULL }, PGCONN_SYNC_OFF },
    { "bad-prepared", NULL, "broken", NULL, 0, { NULL }, PGCONN_SYNC_DEFAULT },
    { "after-bad-prepared", "SELECT 'fine'", NULL, NULL, 0, { NULL }, PGCONN_SYNC_DEFAULT },
};

static void query_next(void);

static void query_cb(void *arg, const PGresult *res, const char *err)
{
    const struct qstep *s = &qsteps[(intptr_t)arg];

    print_result(s->label, res, err);
    query_next();
}

static void query_next(void)
{
    const struct qstep *s;
    char *err = NULL;
    int rc;

    if (P.stopping)
        return;
    if ((size_t)P.step == sizeof(qsteps) / sizeof(qsteps[0])) {
        tk_out("done");
        finish(0);
        return;
    }
    s = &qsteps[P.step++];
    if (s->register_sql && pgconn_prepare(P.pg, s->prepared, s->register_sql, s->nparams, &err)) {
        submit_failed(s->label, err);
        return;
    }
    if (s->prepared)
        rc = pgconn_exec_prepared(P.pg, s->prepared, s->nparams, s->params, s->sync, 0, query_cb,
                                  (void *)(intptr_t)(P.step - 1), &err);
    else
        rc = pgconn_query(P.pg, s->sql, s->nparams, s->params, s->sync, 0, query_cb,
                          (void *)(intptr_t)(P.step - 1), &err);
    if (rc < 0)
        submit_failed(s->label, err);
}

static void start_query(void)
{
    char *err = NULL;

    if (pgconn_prepare(P.pg, "broken", "SELEC broken", 0, &err) < 0 ||
        pgconn_prepare(P.pg, "greet", "SELECT $1::text || ' x' || $2::int", 2, &err) < 0) {
        submit_failed("prepare", err);
        return;
    }
    if (pgconn_exec_prepared(P.pg, "nope", 0, NULL, PGCONN_SYNC_DEFAULT, 0, query_cb, NULL, &err) ==
        0) {
        submit_failed("unknown-prepared", NULL);
        return;
    }
    tk_out("unknown-prepared: %s", err);
    free(err);
    query_next();
}

/* ---- sync ---- */

static const enum pgconn_sync sync_order[] = {
    PGCONN_SYNC_DEFAULT,      PGCONN_SYNC_OFF,     PGCONN_SYNC_LOCAL,
    PGCONN_SYNC_REMOTE_APPLY, PGCONN_SYNC_DEFAULT,
};

static void sync_next(void);

static void sync_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    if (err) {
        tk_out("sync err %s", err);
        finish(1);
        return;
    }
    snprintf(P.values[P.step - 1], sizeof(P.values[0]), "%s", PQgetvalue(res, 0, 0));
    sync_next();
}

static void sync_next(void)
{
    char *err = NULL;

    if (P.stopping)
        return;
    if (P.step == 5) {
        tk_out("sync default=%s off=%s local=%s remote_apply=%s after=%s", P.values[0], P.values[1],
               P.values[2], P.values[3], P.values[4]);
        finish(0);
        return;
    }
    if (pgconn_query(P.pg, "SELECT current_setting('synchronous_commit')", 0, NULL,
                     sync_order[P.step++], 0, sync_cb, NULL, &err) < 0)
        submit_failed("sync", err);
}

/* ---- standby-read ---- */

static const enum pgconn_sync visibility_order[] = { PGCONN_SYNC_LOCAL, PGCONN_SYNC_REMOTE_APPLY };

static void visibility_next(void);

static void standby_cb(void *arg, const PGresult *res, const char *err)
{
    long elapsed = (long)(intptr_t)arg;
    const char *level = pgconn_sync_name(visibility_order[P.step - 1]);

    if (err) {
        tk_out("%s standby err %s", level, err);
        finish(1);
        return;
    }
    tk_out("%s elapsed_ms=%ld visible=%s", level, elapsed, PQgetvalue(res, 0, 0));
    visibility_next();
}

static void insert_cb(void *arg, const PGresult *res, const char *err)
{
    const char *value = P.values[P.step - 1];
    const char *params[1] = { value };
    long elapsed = ms_since(&P.sent);
    char *e = NULL;

    (void)arg;
    (void)res;
    if (err) {
        tk_out("insert err %s", err);
        finish(1);
        return;
    }
    /* read the standby at once: the commit is acknowledged at this point */
    if (pgconn_query(P.standby, "SELECT count(*) FROM pgconn_probe WHERE v = $1", 1, params,
                     PGCONN_SYNC_DEFAULT, 0, standby_cb, (void *)(intptr_t)elapsed, &e) < 0)
        submit_failed("standby read", e);
}

static void visibility_next(void)
{
    const char *params[1];
    char *err = NULL;

    if (P.stopping)
        return;
    if (P.step == 2) {
        tk_out("done");
        finish(0);
        return;
    }
    snprintf(P.values[P.step], sizeof(P.values[0]), "%s-%d",
             pgconn_sync_name(visibility_order[P.step]), (int)getpid());
    params[0] = P.values[P.step];
    clock_gettime(CLOCK_MONOTONIC, &P.sent);
    if (pgconn_query(P.pg, "INSERT INTO pgconn_probe (v) VALUES ($1)", 1, params,
                     visibility_order[P.step++], 20000, insert_cb, NULL, &err) < 0)
        submit_failed("insert", err);
}

static void warm_standby_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err) {
        tk_out("standby warm-up err %s", err);
        finish(1);
        return;
    }
    visibility_next();
}

/* ---- deadline ---- */

static void deadline_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    tk_out("deadline elapsed_ms=%ld ticks=%lu err=%s", ms_since(&P.t0), P.ticks,
           err ? err : "none");
    finish(0);
}

static void on_go(void)
{
    char *err = NULL;

    start_ticks();
    if (pgconn_query(P.pg, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, P.ms, deadline_cb, NULL,
                     &err) < 0)
        submit_failed("deadline", err);
}

/* A line of stdin; NULL at its end, which stops "reconnect". */
static void on_line(const char *line)
{
    if (!line) {
        if (strcmp(P.scenario, "reconnect") == 0)
            finish(0);
    } else if (strcmp(line, "go") == 0 && strcmp(P.scenario, "deadline") == 0 && !P.tick) {
        on_go();
    } else if (strcmp(line, "quit") == 0) {
        finish(0);
    }
}

static void watch_input(void)
{
    P.input = tk_watch_stdin(P.base, on_line);
}

static void warm_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err) {
        tk_out("warm-up err %s", err);
        finish(1);
        return;
    }
    tk_out("ready");
    watch_input();
}

/* ---- connect-deadline ---- */

static void connect_query_cb(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    tk_out("query elapsed_ms=%ld err=%s", ms_since(&P.t0), err ? err : "none");
    if (P.reported)
        finish(0);
}

static void check_connect_failure(void)
{
    struct pgconn_stats st;

    pgconn_get_stats(P.pg, &st);
    if (P.reported || st.connect_failures == 0)
        return;
    P.reported = true;
    tk_out("connect-deadline elapsed_ms=%ld ticks=%lu state=%s err=%s", ms_since(&P.t0), P.ticks,
           pgconn_state_name(pgconn_state(P.pg)), pgconn_last_error(P.pg));
}

/* ---- reconnect ---- */

static void ping_cb(void *arg, const PGresult *res, const char *err)
{
    int seq = (int)(intptr_t)arg;

    if (err)
        tk_out("q %d err %s", seq, err);
    else
        tk_out("q %d ok %s", seq, PQgetvalue(res, 0, 0));
}

static void on_every(evutil_socket_t fd, short what, void *arg)
{
    char num[16], *err = NULL;
    const char *params[1] = { num };

    (void)fd;
    (void)what;
    (void)arg;
    if (P.stopping)
        return;
    if (ms_since(&P.t0) >= (long)P.ms * 1000L) {
        finish(0);
        return;
    }
    snprintf(num, sizeof(num), "%d", ++P.seq);
    if (pgconn_exec_prepared(P.pg, "ping", 1, params, PGCONN_SYNC_DEFAULT, 1000, ping_cb,
                             (void *)(intptr_t)P.seq, &err) < 0)
        submit_failed("ping", err);
}

static void on_state(void *arg, bool connected, const char *why)
{
    (void)arg;
    if (connected)
        tk_out("state up");
    else
        tk_out("state down %s", why ? why : "");
}

/* ---- common ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    P.ticks++;
    if (strcmp(P.scenario, "connect-deadline") == 0)
        check_connect_failure();
}

static void on_bound(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    tk_out("probe: gave up, state=%s", P.pg ? pgconn_state_name(pgconn_state(P.pg)) : "-");
    finish(3);
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s CONNINFO query|sync|standby-read STANDBY|deadline MS|"
            "connect-deadline MS|reconnect SECONDS\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct pgconn_settings s = { 0 };
    struct timeval bound = { 60, 0 };
    char *err = NULL;
    int rc;

    if (argc < 3)
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    P.scenario = argv[2];
    if (argc > 3)
        P.ms = atoi(argv[3]);
    P.base = event_base_new();
    if (!P.base)
        return 1;
    s.conninfo = argv[1];
    s.connect_timeout_ms = 5000;
    s.query_timeout_ms = 5000;
    s.backoff_min_ms = 100;
    s.backoff_max_ms = 1000;
    if (strcmp(P.scenario, "connect-deadline") == 0) {
        if (P.ms <= 0)
            return usage(argv[0]);
        s.connect_timeout_ms = P.ms;
        s.backoff_min_ms = s.backoff_max_ms = 60000; /* one attempt in the window */
    } else if (strcmp(P.scenario, "reconnect") == 0) {
        if (P.ms <= 0)
            return usage(argv[0]);
        s.connect_timeout_ms = 1000;
        s.backoff_min_ms = 50;
        s.backoff_max_ms = 400;
        s.on_state = on_state;
        bound.tv_sec = P.ms + 30;
    }
    P.pg = pgconn_new(P.base, &s, &err);
    if (!P.pg) {
        fprintf(stderr, "mfa-pg-probe: %s\n", err);
        free(err);
        return 1;
    }

    if (strcmp(P.scenario, "query") == 0) {
        start_query();
    } else if (strcmp(P.scenario, "sync") == 0) {
        sync_next();
    } else if (strcmp(P.scenario, "standby-read") == 0 && argc == 4) {
        s.conninfo = argv[3];
        P.standby = pgconn_new(P.base, &s, &err);
        if (!P.standby || pgconn_query(P.standby, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, 0,
                                       warm_standby_cb, NULL, &err) < 0) {
            fprintf(stderr, "mfa-pg-probe: %s\n", err);
            free(err);
            return 1;
        }
    } else if (strcmp(P.scenario, "deadline") == 0 && P.ms > 0) {
        bound.tv_sec = P.ms / 1000 + 30;
        if (pgconn_query(P.pg, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, 0, warm_cb, NULL, &err) <
            0)
            submit_failed("warm-up", err);
    } else if (strcmp(P.scenario, "connect-deadline") == 0) {
        bound.tv_sec = P.ms / 1000 + 30;
        start_ticks();
        if (pgconn_query(P.pg, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, P.ms + 500,
                         connect_query_cb, NULL, &err) < 0)
            submit_failed("query", err);
    } else if (strcmp(P.scenario, "reconnect") == 0) {
        struct timeval every = { 0, 200000 };

        clock_gettime(CLOCK_MONOTONIC, &P.t0);
        if (pgconn_prepare(P.pg, "ping", "SELECT $1::int AS n", 1, &err) < 0)
            submit_failed("prepare", err);
        P.every = event_new(P.base, -1, EV_PERSIST, on_every, NULL);
        event_add(P.every, &every);
        watch_input();
    } else {
        pgconn_free(P.pg);
        event_base_free(P.base);
        return usage(argv[0]);
    }

    P.bound = evtimer_new(P.base, on_bound, NULL);
    evtimer_add(P.bound, &bound);
    if (!P.stopping)
        event_base_dispatch(P.base);

    P.stopping = true;
    if (strcmp(P.scenario, "reconnect") == 0) {
        struct pgconn_stats st;

        pgconn_get_stats(P.pg, &st);
        pgconn_free(P.pg); /* pending pings print "err connection closed" */
        P.pg = NULL;
        tk_out("stats queries=%llu failures=%llu timeouts=%llu reconnects=%llu "
               "connect_failures=%llu",
               (unsigned long long)st.queries, (unsigned long long)st.failures,
               (unsigned long long)st.timeouts, (unsigned long long)st.reconnects,
               (unsigned long long)st.connect_failures);
    }
    rc = P.rc;
    pgconn_free(P.pg);
    pgconn_free(P.standby);
    if (P.bound)
        event_free(P.bound);
    if (P.tick)
        event_free(P.tick);
    if (P.input)
        event_free(P.input);
    if (P.every)
        event_free(P.every);
    event_base_free(P.base);
    return rc;
}
