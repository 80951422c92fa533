/*
 * Non-blocking PostgreSQL access on libpq for one libevent loop; see pgconn.h.
 *
 * The connection is a small state machine (c->state):
 *
 *   DISCONNECTED --c->timer--> CONNECTING --PQconnectPoll OK--> IDLE <--> BUSY
 *        ^                         | failed or deadline              |
 *        +-------------------------+---------------------------------+
 *                                     lost, or the in-flight query's deadline
 *
 * c->timer is the one connection-level timer and its meaning follows the
 * state: in DISCONNECTED the backoff delay before the next attempt, in
 * CONNECTING the attempt's deadline, in BUSY the deadline of an internal
 * request (prepares, rollback); it is idle in IDLE. Every query has its own
 * timer from the moment it is queued.
 *
 * Invariants:
 * - c->pg is non-NULL exactly in CONNECTING, IDLE and BUSY, and c->io then
 *   watches its current socket (non-persistent, re-armed after every event
 *   because PQsocket() can change while connecting).
 * - A query is in exactly one place: c->queue (not sent yet), c->req.q (in
 *   flight), or c->done (answered, callback not called yet).
 * - From connect on the connection stays in pipeline mode. A request is a
 *   batch of commands, each followed or closed by PQpipelineSync(); every
 *   command yields exactly one non-NULL result (no COPY, no single-row mode)
 *   and the request is complete when its last PGRES_PIPELINE_SYNC arrives.
 *   One request is in flight at a time.
 * - User callbacks run only in run_callbacks(), the last step of every event
 *   handler, with c->in_callback set: a callback may queue queries (they are
 *   started by the c->kick event) or free the connection (deferred until it
 *   returns).
 */
#include "pgconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "clock.h"
#include "errmsg.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_QUERY_TIMEOUT_MS   5000
#define DEFAULT_BACKOFF_MIN_MS     100
#define DEFAULT_BACKOFF_MAX_MS     5000
#define MAX_TIMEOUT_MS             86400000 /* one day: keeps the arithmetic in int */
#define MAX_PARAMS                 65535    /* the protocol's limit */
#define STMT_NAME_MAX              63       /* NAMEDATALEN - 1 */
#define MSG_MAX                    512

struct stmt {
    struct stmt *next;
    char *name, *sql;
    int nparams;
    uint64_t gen;   /* connection it was last sent to (0: never) */
    bool preparing; /* its PQsendPrepare is in flight */
    bool failed;    /* the server refused it on connection <gen> */
    char err[MSG_MAX];
};

struct query {
    TAILQ_ENTRY(query) link;
    struct pgconn *c;
    char *sql;         /* NULL for a prepared statement */
    struct stmt *stmt; /* NULL for plain SQL */
    int nparams;
    const char **params; /* copies, in one allocation; entries may be NULL */
    enum pgconn_sync sync;
    int timeout_ms;
    int64_t due; /* deadline, monotonic microseconds */
    struct event *timer;
    pgconn_cb cb;
    void *arg;
    PGresult *res; /* the answer, once done: a result, */
    bool failed;   /* or an error */
    char err[MSG_MAX];
};

TAILQ_HEAD(query_list, query);

enum req_kind {
    REQ_NONE = 0,
    REQ_PREPARE,  /* registered statements: PQsendPrepare + sync, each */
    REQ_QUERY,    /* [BEGIN, SET LOCAL,] statement [, COMMIT] + sync */
    REQ_ROLLBACK, /* ROLLBACK + sync after a failed transaction */
};

struct request {
    enum req_kind kind;
    int syncs;         /* PGRES_PIPELINE_SYNC results still to come */
    int cmd;           /* index of the next command result */
    struct query *q;   /* REQ_QUERY; NULL once it was answered by its deadline */
    int stmt_cmd;      /* REQ_QUERY: index of the statement among the commands */
    PGresult *res;     /* REQ_QUERY: the statement's result */
    bool failed;       /* REQ_QUERY: another command failed, */
    char err[MSG_MAX]; /* with this error */
};

struct pgconn {
    struct event_base *base;
    char *conninfo;
    int connect_timeout_ms, query_timeout_ms, backoff_min_ms, backoff_max_ms;
    pgconn_state_cb on_state;
    void *state_arg;

    enum pgconn_state state;
    PGconn *pg;
    uint64_t gen; /* incremented on every established connection */
    struct event *io, *timer, *kick;
    int64_t due; /* when c->timer is due, monotonic microseconds */
    struct request req;
    struct query_list queue, done;
    struct stmt *stmts; /* in registration order */

    int backoff_ms; /* delay before the next attempt, before jitter */
    uint64_t rng;
    bool ever_connected;
    bool up, reported_up; /* connected; what on_state was last told */
    bool has_error;
    char last_error[MSG_MAX];

    bool in_callback, free_requested, closing;
    struct pgconn_stats stats;
};

static const char *const state_names[] = {
    [PGCONN_DISCONNECTED] = "disconnected",
    [PGCONN_CONNECTING] = "connecting",
    [PGCONN_IDLE] = "idle",
    [PGCONN_BUSY] = "busy",
};

static const char *const sync_names[] = {
    [PGCONN_SYNC_DEFAULT] = "default",
    [PGCONN_SYNC_OFF] = "off",
    [PGCONN_SYNC_LOCAL] = "local",
    [PGCONN_SYNC_REMOTE_APPLY] = "remote_apply",
};

static const char *const set_local_sql[] = {
    [PGCONN_SYNC_OFF] = "SET LOCAL synchronous_commit TO off",
    [PGCONN_SYNC_LOCAL] = "SET LOCAL synchronous_commit TO local",
    [PGCONN_SYNC_REMOTE_APPLY] = "SET LOCAL synchronous_commit TO remote_apply",
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void advance(struct pgconn *c);

/* ---- small helpers ---- */

/* Copies <msg> into <buf> as one line: runs of white space become one space. */
static void one_line(char *buf, size_t size, const char *msg)
{
    size_t n = 0;
    bool space = false;

    for (const char *p = msg; *p && n + 1 < size; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size)
            buf[n++] = ' ';
        space = false;
        buf[n++] = *p;
    }
    buf[n] = '\0';
}

static void vformat_line(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void vformat_line(char *buf, size_t size, const char *fmt, va_list ap)
{
    char tmp[MSG_MAX * 2];

    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    one_line(buf, size, tmp);
}

/* The error a result carries: "server error SSSSS: <message>" from the server. */
static void result_error(char *buf, size_t size, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char tmp[MSG_MAX * 2];

    if (state && msg) {
        snprintf(tmp, sizeof(tmp), "server error %s: %s", state, msg);
        one_line(buf, size, tmp);
    } else {
        one_line(buf, size, *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : "no result");
    }
}

/* (Re)arms timer <ev> to fire at <due> on the monotonic clock. */
static void arm_at(struct event *ev, int64_t due)
{
    int64_t left = due - (int64_t)clock_mono_us();
    struct timeval tv = { 0, 0 };

    if (left > 0) {
        tv.tv_sec = (time_t)(left / 1000000);
        tv.tv_usec = (suseconds_t)(left % 1000000);
    }
    evtimer_del(ev);
    evtimer_add(ev, &tv);
}

/*
 * libevent's timers run on a coarse clock and from the loop's cached time, so
 * they may fire a few ms early. A deadline is never cut short: when <due> is
 * not reached yet, this re-arms <ev> for the rest and returns true.
 */
static bool early(struct event *ev, int64_t due)
{
    if ((int64_t)clock_mono_us() >= due)
        return false;
    arm_at(ev, due);
    return true;
}

static uint64_t next_rand(struct pgconn *c)
{
    /* xorshift64*: jitter only, nothing secret depends on it */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

static void set_verror(struct pgconn *c, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Records why the connection is down (pgconn_last_error()). */
static void set_verror(struct pgconn *c, const char *fmt, va_list ap)
{
    vformat_line(c->last_error, sizeof(c->last_error), fmt, ap);
    c->has_error = true;
}

static void ignore_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

/* ---- answering queries ---- */

static void query_free(struct query *q)
{
    if (q->timer)
        event_free(q->timer);
    PQclear(q->res);
    free(q->params);
    free(q->sql);
    free(q);
}

/* Answers <q> (already taken off the queue or the request) with <res>. */
static void answer(struct pgconn *c, struct query *q, PGresult *res)
{
    evtimer_del(q->timer);
    q->res = res;
    TAILQ_INSERT_TAIL(&c->done, q, link);
}

static void fail(struct pgconn *c, struct query *q, bool timeout, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers <q> (already taken off the queue or the request) with an error. */
static void fail(struct pgconn *c, struct query *q, bool timeout, const char *fmt, ...)
{
    va_list ap;

    evtimer_del(q->timer);
    va_start(ap, fmt);
    vformat_line(q->err, sizeof(q->err), fmt, ap);
    va_end(ap);
    q->failed = true;
    c->stats.failures++;
    if (timeout)
        c->stats.timeouts++;
    TAILQ_INSERT_TAIL(&c->done, q, link);
}

static void destroy(struct pgconn *c);

/*
 * Calls what is due: the state callback when the connection went up or down,
 * then the callbacks of answered queries in order. The last step of every
 * event handler; <c> may be gone when it returns.
 */
static void run_callbacks(struct pgconn *c)
{
    struct query *q;

    if (c->in_callback)
        return;
    c->in_callback = true;
    while (!c->free_requested) {
        if (c->up != c->reported_up) {
            c->reported_up = c->up;
            if (c->on_state)
                c->on_state(c->state_arg, c->up, c->up ? NULL : c->last_error);
            continue;
        }
        q = TAILQ_FIRST(&c->done);
        if (!q)
            break;
        TAILQ_REMOVE(&c->done, q, link);
        q->cb(q->arg, q->failed ? NULL : q->res, q->failed ? q->err : NULL);
        query_free(q);
    }
    c->in_callback = false;
    if (c->free_requested)
        destroy(c);
}

/* ---- the connection ---- */

static void arm_timer(struct pgconn *c, int ms)
{
    c->due = (int64_t)clock_mono_us() + (int64_t)ms * 1000;
    arm_at(c->timer, c->due);
}

/* Watches the current socket for <what>; returns -1 when libevent refuses. */
static int watch(struct pgconn *c, short what)
{
    event_del(c->io);
    if (event_assign(c->io, c->base, PQsocket(c->pg), what, on_io, c) != 0)
        return -1;
    return event_add(c->io, NULL);
}

static void clear_request(struct pgconn *c)
{
    PQclear(c->req.res);
    memset(&c->req, 0, sizeof(c->req));
    for (struct stmt *s = c->stmts; s; s = s->next)
        s->preparing = false;
}

/* Closes the libpq connection (PQfinish never waits on a non-blocking one). */
static void close_pg(struct pgconn *c)
{
    event_del(c->io);
    evtimer_del(c->timer);
    clear_request(c);
    PQfinish(c->pg);
    c->pg = NULL;
    c->up = false;
}

/* Schedules the next attempt after the backoff delay with jitter, then doubles it. */
static void schedule_retry(struct pgconn *c)
{
    int d = c->backoff_ms;
    int delay = d / 2 + (int)(next_rand(c) % (uint64_t)(d - d / 2 + 1));

    c->backoff_ms = d > c->backoff_max_ms / 2 ? c->backoff_max_ms : d * 2;
    c->state = PGCONN_DISCONNECTED;
    arm_timer(c, delay);
}

static void connect_failed(struct pgconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A connection attempt failed: drop it and try again after the backoff. */
static void connect_failed(struct pgconn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    set_verror(c, fmt, ap);
    va_end(ap);
    c->stats.connect_failures++;
    close_pg(c);
    schedule_retry(c);
}

static void lose(struct pgconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * An established connection broke or is dropped: the query in flight fails
 * (its outcome is unknown, so it is not retried), queued ones keep waiting,
 * and the next attempt starts after the shortest backoff.
 */
static void lose(struct pgconn *c, const char *fmt, ...)
{
    struct query *q = c->req.q;
    va_list ap;

    va_start(ap, fmt);
    set_verror(c, fmt, ap);
    va_end(ap);
    if (q) {
        c->req.q = NULL;
        fail(c, q, false, "connection lost during the query, its outcome is unknown: %s",
             c->last_error);
    }
    close_pg(c);
    c->backoff_ms = c->backoff_min_ms;
    schedule_retry(c);
}

static void start_connect(struct pgconn *c)
{
    /*
     * The conninfo is expanded in place of dbname; gssencmode after it wins
     * whatever the string says: GSS negotiation reads the Kerberos
     * credential cache inside PQconnectPoll(), which may block the loop.
     */
    static const char *const keys[] = { "dbname", "gssencmode", NULL };
    const char *values[] = { c->conninfo, "disable", NULL };

    c->state = PGCONN_CONNECTING;
    c->pg = PQconnectStartParams(keys, values, 1);
    if (!c->pg) {
        connect_failed(c, "out of memory");
        return;
    }
    PQsetNoticeReceiver(c->pg, ignore_notice, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        connect_failed(c, "%s", PQerrorMessage(c->pg));
        return;
    }
    arm_timer(c, c->connect_timeout_ms);
    /* libpq: after PQconnectStart, behave as if PQconnectPoll said WRITING */
    if (watch(c, EV_WRITE) < 0)
        connect_failed(c, "cannot watch the connection's socket");
}

static void connected(struct pgconn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        connect_failed(c, "%s", PQerrorMessage(c->pg));
        return;
    }
    evtimer_del(c->timer);
    c->gen++;
    c->state = PGCONN_IDLE;
    c->up = true;
    c->backoff_ms = c->backoff_min_ms;
    if (c->ever_connected)
        c->stats.reconnects++;
    c->ever_connected = true;
    advance(c);
}

static void connect_poll(struct pgconn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (watch(c, EV_READ) < 0)
            connect_failed(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (watch(c, EV_WRITE) < 0)
            connect_failed(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        connected(c);
        break;
    default:
        connect_failed(c, "%s", PQerrorMessage(c->pg));
        break;
    }
}

/* ---- requests ---- */

static int send_simple(struct pgconn *c, const char *sql)
{
    return PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
}

/* Sends a PREPARE for every statement not sent on this connection yet. */
static bool send_prepares(struct pgconn *c)
{
    int n = 0;

    for (struct stmt *s = c->stmts; s; s = s->next) {
        if (s->gen == c->gen)
            continue;
        s->gen = c->gen;
        s->preparing = true;
        s->failed = false;
        if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL) || !PQpipelineSync(c->pg)) {
            lose(c, "%s", PQerrorMessage(c->pg));
            return true;
        }
        n++;
    }
    if (n == 0)
        return false;
    c->req.kind = REQ_PREPARE;
    c->req.syncs = n;
    c->state = PGCONN_BUSY;
    arm_timer(c, c->query_timeout_ms);
    return true;
}

static void send_rollback(struct pgconn *c)
{
    clear_request(c);
    c->req.kind = REQ_ROLLBACK;
    c->req.syncs = 1;
    c->state = PGCONN_BUSY;
    if (!send_simple(c, "ROLLBACK") || !PQpipelineSync(c->pg)) {
        lose(c, "%s", PQerrorMessage(c->pg));
        return;
    }
    arm_timer(c, c->query_timeout_ms);
}

static void send_query(struct pgconn *c, struct query *q)
{
    bool tx = q->sync != PGCONN_SYNC_DEFAULT;
    int ok = 1;

    c->req.kind = REQ_QUERY;
    c->req.q = q;
    c->req.syncs = 1;
    c->req.stmt_cmd = tx ? 2 : 0;
    c->state = PGCONN_BUSY;
    if (tx)
        ok = send_simple(c, "BEGIN") && send_simple(c, set_local_sql[q->sync]);
    if (ok && q->stmt)
        ok = PQsendQueryPrepared(c->pg, q->stmt->name, q->nparams, q->params, NULL, NULL, 0);
    else if (ok)
        ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    if (ok && tx)
        ok = send_simple(c, "COMMIT");
    if (ok)
        ok = PQpipelineSync(c->pg);
    if (!ok)
        lose(c, "%s", PQerrorMessage(c->pg));
}

/* In IDLE: prepares what is due, else sends the next queued query. */
static void advance(struct pgconn *c)
{
    struct query *q;

    if (c->state != PGCONN_IDLE || send_prepares(c))
        return;
    while ((q = TAILQ_FIRST(&c->queue))) {
        TAILQ_REMOVE(&c->queue, q, link);
        if (q->stmt && q->stmt->failed && q->stmt->gen == c->gen) {
            fail(c, q, false, "prepared statement %s: %s", q->stmt->name, q->stmt->err);
            continue;
        }
        send_query(c, q);
        return;
    }
}

/* The request's last sync arrived: answer its query, then go on. */
static void request_done(struct pgconn *c)
{
    struct request *rq = &c->req;
    struct query *q = rq->q;
    bool rollback = false;

    if (rq->kind == REQ_QUERY && q) {
        ExecStatusType st = rq->res ? PQresultStatus(rq->res) : PGRES_FATAL_ERROR;
        char err[MSG_MAX];

        rq->q = NULL;
        if (st == PGRES_FATAL_ERROR && rq->res) {
            result_error(err, sizeof(err), rq->res);
            fail(c, q, false, "%s", err);
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            fail(c, q, false, "%s", rq->failed ? rq->err : "the statement was not run");
        } else if (rq->failed) {
            fail(c, q, false, "%s", rq->err);
        } else {
            answer(c, q, rq->res);
            rq->res = NULL;
        }
        rollback = q->failed && q->sync != PGCONN_SYNC_DEFAULT;
    }
    clear_request(c);
    evtimer_del(c->timer);
    if (rollback) {
        /* an explicit transaction that failed leaves the session aborted */
        send_rollback(c);
        return;
    }
    c->state = PGCONN_IDLE;
    advance(c);
}

/* Takes one non-NULL result of the request in flight (and owns it). */
static void on_result(struct pgconn *c, PGresult *r)
{
    struct request *rq = &c->req;
    ExecStatusType st = PQresultStatus(r);
    int cmd;

    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        if (--rq->syncs == 0)
            request_done(c);
        return;
    }
    cmd = rq->cmd++;
    if (rq->kind == REQ_PREPARE) {
        for (struct stmt *s = c->stmts; s; s = s->next) {
            if (!s->preparing)
                continue;
            s->preparing = false;
            s->failed = st != PGRES_COMMAND_OK;
            if (s->failed)
                result_error(s->err, sizeof(s->err), r);
            break;
        }
    } else if (rq->kind == REQ_QUERY && cmd == rq->stmt_cmd && !rq->res) {
        rq->res = r;
        return;
    } else if (rq->kind == REQ_QUERY && !rq->failed) {
        if (st == PGRES_FATAL_ERROR) {
            result_error(rq->err, sizeof(rq->err), r);
            rq->failed = true;
        } else if (st == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
            snprintf(rq->err, sizeof(rq->err), "the transaction was rolled back at COMMIT");
            rq->failed = true;
        }
    }
    PQclear(r);
}

/* Reads every result libpq has complete, without ever waiting. */
static void read_results(struct pgconn *c)
{
    int nulls = 0;

    while (c->state == PGCONN_BUSY && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);

        /* NULL ends each command's results; two in a row: nothing is due */
        if (!r) {
            if (++nulls >= 2)
                break;
            continue;
        }
        nulls = 0;
        on_result(c, r);
    }
}

/* The socket of an established connection is ready. */
static void io_ready(struct pgconn *c)
{
    PGnotify *n;

    if (!PQconsumeInput(c->pg)) {
        lose(c, "%s", PQerrorMessage(c->pg));
        return;
    }
    while ((n = PQnotifies(c->pg)))
        PQfreemem(n);
    if (c->state == PGCONN_BUSY)
        read_results(c);
    if (c->pg && PQstatus(c->pg) == CONNECTION_BAD)
        lose(c, "%s", PQerrorMessage(c->pg));
}

/* Connected: flushes what libpq holds and watches for input (and output). */
static void rearm(struct pgconn *c)
{
    int r;

    if (c->state != PGCONN_IDLE && c->state != PGCONN_BUSY)
        return;
    r = PQflush(c->pg);
    if (r < 0)
        lose(c, "%s", PQerrorMessage(c->pg));
    else if (watch(c, EV_READ | (r > 0 ? EV_WRITE : 0)) < 0)
        lose(c, "cannot watch the connection's socket");
}

/* ---- event handlers ---- */

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == PGCONN_CONNECTING)
        connect_poll(c);
    else if (c->state == PGCONN_IDLE || c->state == PGCONN_BUSY)
        io_ready(c);
    rearm(c);
    run_callbacks(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *c = arg;

    (void)fd;
    (void)what;
    if (early(c->timer, c->due))
        return;
    switch (c->state) {
    case PGCONN_DISCONNECTED:
        start_connect(c);
        break;
    case PGCONN_CONNECTING:
        connect_failed(c, "connection attempt timed out after %d ms", c->connect_timeout_ms);
        break;
    case PGCONN_BUSY:
        lose(c, "%s timed out after %d ms; connection dropped",
             c->req.kind == REQ_ROLLBACK ? "rollback" : "preparing statements",
             c->query_timeout_ms);
        break;
    case PGCONN_IDLE:
        break;
    }
    rearm(c);
    run_callbacks(c);
}

static void on_query_timer(evutil_socket_t fd, short what, void *arg)
{
    struct query *q = arg;
    struct pgconn *c = q->c;

    (void)fd;
    (void)what;
    if (early(q->timer, q->due))
        return;
    if (c->req.q == q) {
        /* in flight: only dropping the connection gets it off the wire */
        c->req.q = NULL;
        fail(c, q, true, "query timed out after %d ms", q->timeout_ms);
        lose(c, "query timed out after %d ms; connection dropped", q->timeout_ms);
    } else {
        TAILQ_REMOVE(&c->queue, q, link);
        if (c->up)
            fail(c, q, true, "query timed out after %d ms (still queued)", q->timeout_ms);
        else
            fail(c, q, true, "query timed out after %d ms (not connected: %s)", q->timeout_ms,
                 c->has_error ? c->last_error : "connecting");
    }
    rearm(c);
    run_callbacks(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct pgconn *c = arg;

    (void)fd;
    (void)what;
    advance(c);
    rearm(c);
    run_callbacks(c);
}

/* ---- public calls ---- */

static int check_ms(const char *what, int value, int dflt, int *out, char **err)
{
    if (value < 0 || value > MAX_TIMEOUT_MS)
        return err_set(err, "pgconn: %s %d ms is not in 0-%d", what, value, MAX_TIMEOUT_MS);
    *out = value ? value : dflt;
    return 0;
}

struct pgconn *pgconn_new(struct event_base *base, const struct pgconn_settings *s, char **err)
{
    struct pgconn *c = NULL;
    struct timespec now;

    if (!base || !s) {
        err_set(err, "pgconn: no event base or settings");
        return NULL;
    }
    if (pgconn_check_conninfo(s->conninfo, err) < 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, "pgconn: out of memory");
        return NULL;
    }
    c->base = base;
    TAILQ_INIT(&c->queue);
    TAILQ_INIT(&c->done);
    if (check_ms("connect timeout", s->connect_timeout_ms, DEFAULT_CONNECT_TIMEOUT_MS,
                 &c->connect_timeout_ms, err) < 0 ||
        check_ms("query timeout", s->query_timeout_ms, DEFAULT_QUERY_TIMEOUT_MS,
                 &c->query_timeout_ms, err) < 0 ||
        check_ms("backoff min", s->backoff_min_ms, DEFAULT_BACKOFF_MIN_MS, &c->backoff_min_ms,
                 err) < 0 ||
        check_ms("backoff max", s->backoff_max_ms, DEFAULT_BACKOFF_MAX_MS, &c->backoff_max_ms,
                 err) < 0)
        goto fail;
    if (c->backoff_min_ms > c->backoff_max_ms) {
        err_set(err, "pgconn: backoff min %d ms is above max %d ms", c->backoff_min_ms,
                c->backoff_max_ms);
        goto fail;
    }
    c->on_state = s->on_state;
    c->state_arg = s->state_arg;
    c->backoff_ms = c->backoff_min_ms;
    clock_gettime(CLOCK_MONOTONIC, &now);
    c->rng = ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0)
        c->rng = 0x9e3779b97f4a7c15ULL;
    c->conninfo = strdup(s->conninfo);
    c->io = event_new(base, -1, 0, on_io, c);
    c->timer = evtimer_new(base, on_timer, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    if (!c->conninfo || !c->io || !c->timer || !c->kick) {
        err_set(err, "pgconn: out of memory");
        goto fail;
    }
    c->state = PGCONN_DISCONNECTED;
    arm_timer(c, 0); /* the first attempt starts from the loop */
    return c;

fail:
    destroy(c);
    return NULL;
}

/* Fails what is left with "connection closed", calls the callbacks, frees. */
static void destroy(struct pgconn *c)
{
    struct query *q;
    struct stmt *s;

    c->closing = true;
    c->in_callback = true; /* a nested pgconn_free() is a no-op from here */
    if (c->req.q) {
        q = c->req.q;
        c->req.q = NULL;
        fail(c, q, false, "connection closed");
    }
    while ((q = TAILQ_FIRST(&c->queue))) {
        TAILQ_REMOVE(&c->queue, q, link);
        fail(c, q, false, "connection closed");
    }
    if (c->pg)
        close_pg(c);
    while ((q = TAILQ_FIRST(&c->done))) {
        TAILQ_REMOVE(&c->done, q, link);
        q->cb(q->arg, q->failed ? NULL : q->res, q->failed ? q->err : NULL);
        query_free(q);
    }
    while ((s = c->stmts)) {
        c->stmts = s->next;
        free(s->name);
        free(s->sql);
        free(s);
    }
    if (c->io)
        event_free(c->io);
    if (c->timer)
        event_free(c->timer);
    if (c->kick)
        event_free(c->kick);
    free(c->conninfo);
    free(c);
}

void pgconn_free(struct pgconn *c)
{
    if (!c)
        return;
    if (c->in_callback) {
        c->free_requested = true;
        return;
    }
    destroy(c);
}

static struct stmt *find_stmt(const struct pgconn *c, const char *name)
{
    for (struct stmt *s = c->stmts; s; s = s->next) {
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

int pgconn_prepare(struct pgconn *c, const char *name, const char *sql, int nparams, char **err)
{
    struct stmt *s, **tail;

    if (!c || !name || !sql)
        return err_set(err, "pgconn_prepare: missing argument");
    if (c->closing || c->free_requested)
        return err_set(err, "pgconn_prepare: the connection is being freed");
    if (!*name || strlen(name) > STMT_NAME_MAX)
        return err_set(err, "pgconn_prepare: statement name must be 1-%d characters",
                       STMT_NAME_MAX);
    if (nparams < 0 || nparams > MAX_PARAMS)
        return err_set(err, "pgconn_prepare: %s: %d parameters is not in 0-%d", name, nparams,
                       MAX_PARAMS);
    if (find_stmt(c, name))
        return err_set(err, "pgconn_prepare: statement %s is already registered", name);
    s = calloc(1, sizeof(*s));
    if (!s || !(s->name = strdup(name)) || !(s->sql = strdup(sql))) {
        if (s)
            free(s->name);
        free(s);
        return err_set(err, "pgconn_prepare: out of memory");
    }
    s->nparams = nparams;
    for (tail = &c->stmts; *tail; tail = &(*tail)->next)
        ;
    *tail = s;
    event_active(c->kick, EV_TIMEOUT, 1);
    return 0;
}

/* Queues a query; <sql> or <stmt> says what it runs. */
static int enqueue(struct pgconn *c, const char *sql, struct stmt *stmt, int nparams,
                   const char *const *params, enum pgconn_sync sync, int timeout_ms, pgconn_cb cb,
                   void *arg, char **err)
{
    struct query *q;
    size_t bytes = (size_t)nparams * sizeof(char *);
    char *p;

    if (!cb)
        return err_set(err, "pgconn: no callback");
    if (c->closing || c->free_requested)
        return err_set(err, "pgconn: the connection is being freed");
    if (nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && !params))
        return err_set(err, "pgconn: bad parameters (%d)", nparams);
    if ((unsigned)sync > (unsigned)PGCONN_SYNC_REMOTE_APPLY)
        return err_set(err, "pgconn: unknown sync level %d", (int)sync);
    if (timeout_ms < 0 || timeout_ms > MAX_TIMEOUT_MS)
        return err_set(err, "pgconn: timeout %d ms is not in 0-%d", timeout_ms, MAX_TIMEOUT_MS);
    for (int i = 0; i < nparams; i++)
        bytes += params[i] ? strlen(params[i]) + 1 : 0;
    q = calloc(1, sizeof(*q));
    if (!q)
        return err_set(err, "pgconn: out of memory");
    q->c = c;
    q->stmt = stmt;
    q->nparams = nparams;
    q->sync = sync;
    q->timeout_ms = timeout_ms ? timeout_ms : c->query_timeout_ms;
    q->cb = cb;
    q->arg = arg;
    q->timer = evtimer_new(c->base, on_query_timer, q);
    if (sql)
        q->sql = strdup(sql);
    if (nparams > 0)
        q->params = malloc(bytes);
    if (!q->timer || (sql && !q->sql) || (nparams > 0 && !q->params)) {
        query_free(q);
        return err_set(err, "pgconn: out of memory");
    }
    p = (char *)(q->params + nparams);
    for (int i = 0; i < nparams; i++) {
        q->params[i] = NULL;
        if (params[i]) {
            size_t n = strlen(params[i]) + 1;

            memcpy(p, params[i], n);
            q->params[i] = p;
            p += n;
        }
    }
    q->due = (int64_t)clock_mono_us() + (int64_t)q->timeout_ms * 1000;
    arm_at(q->timer, q->due);
    TAILQ_INSERT_TAIL(&c->queue, q, link);
    c->stats.queries++;
    event_active(c->kick, EV_TIMEOUT, 1);
    return 0;
}

int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params,
                 enum pgconn_sync sync, int timeout_ms, pgconn_cb cb, void *arg, char **err)
{
    if (!c || !sql || !*sql)
        return err_set(err, "pgconn_query: no connection or SQL");
    return enqueue(c, sql, NULL, nparams, params, sync, timeout_ms, cb, arg, err);
}

int pgconn_exec_prepared(struct pgconn *c, const char *name, int nparams, const char *const *params,
                         enum pgconn_sync sync, int timeout_ms, pgconn_cb cb, void *arg, char **err)
{
    struct stmt *s;

    if (!c || !name)
        return err_set(err, "pgconn_exec_prepared: no connection or name");
    s = find_stmt(c, name);
    if (!s)
        return err_set(err, "pgconn_exec_prepared: unknown prepared statement %s", name);
    if (nparams != s->nparams)
        return err_set(err, "pgconn_exec_prepared: %s takes %d parameters, not %d", name,
                       s->nparams, nparams);
    return enqueue(c, NULL, s, nparams, params, sync, timeout_ms, cb, arg, err);
}

enum pgconn_state pgconn_state(const struct pgconn *c)
{
    return c->state;
}

const char *pgconn_state_name(enum pgconn_state state)
{
    if ((unsigned)state >= MFA_ARRAY_LEN(state_names) || !state_names[state])
        return "unknown";
    return state_names[state];
}

const char *pgconn_sync_name(enum pgconn_sync sync)
{
    if ((unsigned)sync >= MFA_ARRAY_LEN(sync_names) || !sync_names[sync])
        return "unknown";
    return sync_names[sync];
}

bool pgconn_ready(const struct pgconn *c)
{
    return c->state == PGCONN_IDLE || c->state == PGCONN_BUSY;
}

const char *pgconn_last_error(const struct pgconn *c)
{
    return c->has_error ? c->last_error : NULL;
}

void pgconn_get_stats(const struct pgconn *c, struct pgconn_stats *out)
{
    *out = c->stats;
}

bool pgconn_err_sqlstate(const char *err, char sqlstate[6])
{
    static const char prefix[] = "server error ";
    const char *p;

    if (!err || strncmp(err, prefix, sizeof(prefix) - 1) != 0)
        return false;
    p = err + sizeof(prefix) - 1;
    for (int i = 0; i < 5; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'Z')))
            return false;
    }
    if (p[5] != ':')
        return false;
    memcpy(sqlstate, p, 5);
    sqlstate[5] = '\0';
    return true;
}
