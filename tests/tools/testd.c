/*
 * mfa-testd: a daemon built on the shared skeleton (common/daemon.c) and HTTP
 * server, for the integration tests of that machinery: TLS with and without
 * client certificates, body limits, reload, drain, and work that must not
 * block the loop. It listens on its member's node port.
 *
 * Test-only settings come from the environment:
 *   TESTD_TLS=1            serve TLS with appliance.tls.cert/key
 *   TESTD_CLIENT_CERT=require|optional   ask for a client certificate
 *                          verified against cluster.tls.ca
 *   TESTD_MAX_BODY=N       body limit in bytes (default 65536)
 *   TESTD_TIMEOUT_MS=N     connection read/write timeout (default 10000)
 *   TESTD_PG_CONNINFO=...  a PostgreSQL to query from GET /pg
 *   TESTD_REFUSE_RELOAD=1  the reload hook refuses every new configuration
 *
 * Routes: GET /health, POST /echo (JSON), GET /slow?ms=N (answers after N
 * ms), GET /config (settings in use), GET /whoami (client certificate name),
 * GET /work?ms=N (a blocking job of N ms on a worker thread), GET
 * /pg?timeout_ms=N (SELECT 1 with that deadline), GET /metrics.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "daemon.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "tls.h"
#include "worker.h"

struct slow;

struct testd {
    struct daemon *d;
    struct slow *slows; /* requests /slow holds back, to answer at stop */
    struct http_server *http;
    struct worker_pool *workers;
    struct pgconn *pg; /* NULL without TESTD_PG_CONNINFO */
};

/* A request waiting for a worker job or a query. */
struct job {
    struct evhttp_request *req;
    int ms;
};

/* A request held back by /slow until its timer fires. */
struct slow {
    struct testd *t;
    struct evhttp_request *req;
    struct event *timer;
    struct slow *next;
};

/* Answers <s> with <status> and forgets it. */
static void slow_finish(struct slow *s, int status)
{
    struct slow **pp = &s->t->slows;

    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    if (status == 200)
        http_reply_json(s->req, 200, json_pack("{s:b}", "slow", 1));
    else
        http_reply_error(s->req, status, "shutting_down", "the daemon is stopping");
    event_free(s->timer);
    free(s);
}

static void health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void echo(struct evhttp_request *req, void *arg)
{
    json_t *body = http_read_json(req);

    (void)arg;
    if (body)
        http_reply_json(req, 200, json_pack("{s:o}", "echo", body));
}

static void slow_done(evutil_socket_t fd, short what, void *arg)
{
    struct slow *s = arg;

    (void)fd;
    (void)what;
    slow_finish(s, 200);
}

static void slow(struct evhttp_request *req, void *arg)
{
    struct testd *t = arg;
    char buf[16];
    int ms = http_query_param(req, "ms", buf, sizeof(buf)) == 0 ? atoi(buf) : 1000;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    struct slow *s = calloc(1, sizeof(*s));

    if (!s || ms < 0 || ms > 60000) {
        free(s);
        http_reply_error(req, 400, "bad_request", "ms must be 0 to 60000");
        return;
    }
    s->t = t;
    s->req = req;
    s->timer = evtimer_new(daemon_base(t->d), slow_done, s);
    s->next = t->slows;
    t->slows = s;
    evtimer_add(s->timer, &tv);
}

static void config(struct evhttp_request *req, void *arg)
{
    const struct appconf *c = daemon_conf(((struct testd *)arg)->d);

    http_reply_json(req, 200,
                    json_pack("{s:s, s:s, s:i}", "log_level", log_level_name(c->log.level),
                              "member", c->appliance.member, "drain_timeout",
                              c->appliance.drain_timeout));
}

static void whoami(struct evhttp_request *req, void *arg)
{
    char name[256];

    (void)arg;
    if (http_peer_name(req, name, sizeof(name)) < 0)
        http_reply_error(req, 401, "no_client_certificate", "no verified client certificate");
    else
        http_reply_json(req, 200, json_pack("{s:s}", "name", name));
}

static void metrics(struct evhttp_request *req, void *arg)
{
    struct testd *t = arg;
    struct evbuffer *out = evbuffer_new();
    unsigned long long counts[6];

    http_server_counts(t->http, counts);
    /* This request counts itself as in flight. */
    metrics_single(out, "mfa_http_in_flight", METRIC_GAUGE, "Requests being answered.",
                   (double)http_server_in_flight(t->http) - 1);
    metrics_family(out, "mfa_http_responses_total", METRIC_COUNTER, "Responses by status class.");
    for (int i = 1; i <= 5; i++) {
        char cls[4] = { (char)('0' + i), 'x', 'x', '\0' };

        metrics_sample(out, "mfa_http_responses_total", (double)counts[i], "code", cls, NULL);
    }
    if (t->pg) {
        struct pgconn_stats ps;

        pgconn_get_stats(t->pg, &ps);
        metrics_single(out, "mfa_pg_reconnects_total", METRIC_COUNTER,
                       "Connections made again after a loss.", (double)ps.reconnects);
        metrics_single(out, "mfa_pg_timeouts_total", METRIC_COUNTER, "Queries past their deadline.",
                       (double)ps.timeouts);
    }
    metrics_reply(req, out);
    evbuffer_free(out);
}

/* Runs on a worker thread: the blocking call the loop must not make. */
static void work_run(void *arg)
{
    struct job *j = arg;
    struct timespec ts = { j->ms / 1000, (long)(j->ms % 1000) * 1000000 };

    nanosleep(&ts, NULL);
}

static void work_done(void *arg)
{
    struct job *j = arg;

    http_reply_json(j->req, 200, json_pack("{s:i}", "worked_ms", j->ms));
    free(j);
}

/* Reads query parameter <name> as 0..60000 ms, or replies 400 and returns -1. */
static int param_ms(struct evhttp_request *req, const char *name, int def)
{
    char buf[16];
    int ms = http_query_param(req, name, buf, sizeof(buf)) == 0 ? atoi(buf) : def;

    if (ms < 0 || ms > 60000) {
        http_reply_error(req, 400, "bad_request", "%s must be 0 to 60000", name);
        return -1;
    }
    return ms;
}

static void work(struct evhttp_request *req, void *arg)
{
    struct testd *t = arg;
    int ms = param_ms(req, "ms", 1000);
    struct job *j;

    if (ms < 0)
        return;
    j = calloc(1, sizeof(*j));
    if (!j || (j->req = req, j->ms = ms, worker_submit(t->workers, work_run, work_done, j) < 0)) {
        free(j);
        http_reply_error(req, 503, "busy", "cannot queue the job");
    }
}

static void pg_done(void *arg, const PGresult *res, const char *err)
{
    struct job *j = arg;

    if (err)
        http_reply_error(j->req, strstr(err, "timed out") ? 504 : 503, "database_unavailable", "%s",
                         err);
    else
        http_reply_json(j->req, 200, json_pack("{s:s}", "result", PQgetvalue(res, 0, 0)));
    free(j);
}

static void pg(struct evhttp_request *req, void *arg)
{
    struct testd *t = arg;
    int ms = param_ms(req, "timeout_ms", 2000);
    struct job *j;
    char *err = NULL;

    if (ms < 0)
        return;
    if (!t->pg) {
        http_reply_error(req, 404, "not_found", "no database configured");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j || (j->req = req, pgconn_query(t->pg, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, ms,
                                          pg_done, j, &err) < 0)) {
        http_reply_error(req, 500, "internal", "%s", err ? err : "out of memory");
        free(err);
        free(j);
    }
}

static const struct http_route routes[] = {
    { EVHTTP_REQ_GET, "/health", false, health }, { EVHTTP_REQ_POST, "/echo", false, echo },
    { EVHTTP_REQ_GET, "/slow", false, slow },     { EVHTTP_REQ_GET, "/config", false, config },
    { EVHTTP_REQ_GET, "/whoami", false, whoami }, { EVHTTP_REQ_GET, "/metrics", false, metrics },
    { EVHTTP_REQ_GET, "/work", false, work },     { EVHTTP_REQ_GET, "/pg", false, pg },
};

static const char *env(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

static int start(struct daemon *d, char **err)
{
    struct testd *t = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);
    const struct member_conf *me = appconf_local(c);
    const char *client = env("TESTD_CLIENT_CERT", "");
    struct http_server_settings s = {
        .address = me->address,
        .port = me->ports.node,
        .max_body = (size_t)atol(env("TESTD_MAX_BODY", "65536")),
        .max_headers = 8192,
        .timeout_ms = atoi(env("TESTD_TIMEOUT_MS", "10000")),
    };

    t->d = d;
    t->workers = worker_pool_new(daemon_base(d), 2, err);
    if (!t->workers)
        return -1;
    if (*env("TESTD_PG_CONNINFO", "")) {
        struct pgconn_settings ps = { .conninfo = env("TESTD_PG_CONNINFO", "") };

        t->pg = pgconn_new(daemon_base(d), &ps, err);
        if (!t->pg)
            return -1;
    }
    if (strcmp(env("TESTD_TLS", "0"), "1") == 0) {
        struct tls_settings ts = {
            .cert_file = c->appliance.tls_cert,
            .key_file = c->appliance.tls_key,
            .ca_file = *client ? c->cluster.tls_ca : NULL,
            .require_client_cert = strcmp(client, "require") == 0,
            .min_version = c->cluster.tls_min_version,
            .ciphers = c->cluster.tls_ciphers,
            .ciphersuites = c->cluster.tls_ciphersuites,
        };

        s.tls = tls_server_ctx_new(&ts, err);
        if (!s.tls)
            return -1;
    }
    t->http = http_server_new(daemon_base(d), &s, routes, MFA_ARRAY_LEN(routes), t, err);
    SSL_CTX_free(s.tls);
    if (!t->http)
        return -1;
    log_info("testd.listening address=%s port=%d tls=%d", me->address, me->ports.node,
             s.tls != NULL);
    return 0;
}

static void stop_listening(struct daemon *d)
{
    struct testd *t = daemon_arg(d);

    http_server_stop_listening(t->http);
}

static size_t in_flight(struct daemon *d)
{
    struct testd *t = daemon_arg(d);

    return http_server_in_flight(t->http);
}

/* What may still answer requests goes first, the server last (daemon.h). */
static void stop(struct daemon *d)
{
    struct testd *t = daemon_arg(d);

    while (t->slows)
        slow_finish(t->slows, 503);
    pgconn_free(t->pg);
    t->pg = NULL;
    worker_pool_free(t->workers);
    t->workers = NULL;
    http_server_free(t->http);
    t->http = NULL;
}

static int reload(struct daemon *d, const struct appconf *next, char **err)
{
    (void)d;
    (void)next;
    if (strcmp(env("TESTD_REFUSE_RELOAD", "0"), "1") == 0)
        return err_set(err, "this daemon refuses new configurations (TESTD_REFUSE_RELOAD)");
    return 0;
}

static const struct daemon_ops testd_ops = {
    .name = "mfa-testd",
    .start = start,
    .reload = reload,
    .stop_listening = stop_listening,
    .in_flight = in_flight,
    .stop = stop,
};

int main(int argc, char **argv)
{
    struct testd t = { 0 };

    return daemon_main(argc, argv, &testd_ops, &t);
}
