/*
 * mfa-node: the MFA server. Wires the subsystems onto the daemon skeleton:
 * the key file, the database connections (reads local, writes to the
 * primary), API keys, the sign-in subsystems, the HTTP API, the user portal
 * (portal.h) and the RADIUS server.
 *
 * Process endpoints, no API key: GET /health (the process answers), GET
 * /ready (the local database answers: HAProxy's health check), GET /status
 * (role, lag, where the primary was learnt, live challenges, version), GET
 * /metrics (Prometheus).
 *
 * The port speaks plain HTTP only when the member's address is loopback
 * (everything on one host: the demo, the tests). On any other address it
 * speaks TLS with the member certificate and requires a client certificate
 * from the cluster CA, as the replicator's control API does: HAProxy, the
 * balancers' polls and mfactl reach it from other hosts, and PINs, codes and
 * API keys never cross a network in clear (DESIGN §4).
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "auth.h"
#include "daemon.h"
#include "db.h"
#include "directory.h"
#include "dirsync.h"
#include "errmsg.h"
#include "httpclient.h"
#include "httpserver.h"
#include "keyfile.h"
#include "log.h"
#include "mail.h"
#include "metrics.h"
#include "netaddr.h"
#include "node.h"
#include "portal.h"
#include "radius_server.h"
#include "schema.h"
#include "tls.h"
#include "tokens.h"
#include "users.h"
#include "worker.h"

static void handle_health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void handle_ready(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    struct nodedb_status st;

    nodedb_get_status(n->db, &st);
    if (!st.local_up || !apikeys_loaded(n->apikeys)) {
        http_reply_error(req, 503, "not_ready", "the local database does not answer");
    } else if (st.schema_version < 0) {
        http_reply_error(req, 503, "not_ready", "the database's schema version is not read yet");
    } else if (!schema_compatible(st.schema_version)) {
        http_reply_error(req, 503, "schema_incompatible",
                         "the database's schema is at version %d; this release (%s) works with %d "
                         "to %d",
                         st.schema_version, MFA_VERSION, schema_min(), schema_max());
    } else {
        http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
    }
}

/* "schema" of /status: the database's version (null before the first read) and the range. */
static json_t *schema_json(const struct nodedb_status *st)
{
    bool known = st->schema_version >= 0;

    return json_pack("{s:o?, s:i, s:i, s:b}", "database",
                     known ? json_integer(st->schema_version) : NULL, "min", schema_min(), "max",
                     schema_max(), "compatible", known && schema_compatible(st->schema_version));
}

static json_t *status_json(struct node *n)
{
    struct nodedb_status st;
    json_t *out;

    nodedb_get_status(n->db, &st);
    out = json_pack(
        "{s:s, s:s, s:s, s:b, s:b, s:s?, s:s, s:f, s:I, s:f, s:b, s:I}", "node_id", n->id,
        "version", MFA_VERSION, "role", nodedb_role_name(st.role), "local_db", st.local_up,
        "writable", st.primary_up, "primary", *st.primary ? st.primary : NULL, "primary_source",
        nodedb_source_name(st.source), "replay_lag_s", st.replay_lag_s, "lag_bytes",
        (json_int_t)st.lag_bytes, "clock_offset_s", st.clock_offset_s, "draining",
        daemon_draining(n->d), "uptime_s", (json_int_t)((clock_mono_ms() - n->started_ms) / 1000));
    json_object_set_new(out, "schema", schema_json(&st));
    auth_status(n, out);
    json_object_set_new(out, "sessions", json_integer((json_int_t)portal_sessions(n)));
    radius_server_status(n->radius, out);
    dirsync_status(n, out);
    mail_status(n, out);
    return out;
}

static void handle_status(struct evhttp_request *req, void *arg)
{
    http_reply_json(req, 200, status_json(arg));
}

static void handle_metrics(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    struct evbuffer *out = evbuffer_new();
    struct nodedb_status st;
    unsigned long long counts[6];

    nodedb_get_status(n->db, &st);
    http_server_counts(n->http, counts);
    metrics_single(out, "mfa_node_up", METRIC_GAUGE, "The node answers.", 1);
    metrics_single(out, "mfa_node_local_db_up", METRIC_GAUGE, "The local database answers.",
                   st.local_up);
    metrics_single(out, "mfa_node_writable", METRIC_GAUGE, "A primary is reachable for writes.",
                   st.primary_up);
    metrics_single(out, "mfa_node_schema_version", METRIC_GAUGE,
                   "The local database's schema version (-1: not read yet).", st.schema_version);
    metrics_single(out, "mfa_node_schema_compatible", METRIC_GAUGE,
                   "This release works with the local database's schema.",
                   st.schema_version >= 0 && schema_compatible(st.schema_version));
    metrics_single(out, "mfa_node_replay_lag_seconds", METRIC_GAUGE,
                   "Seconds since the last replayed commit on a standby (-1: primary).",
                   st.replay_lag_s);
    auth_metrics(n, out);
    metrics_single(out, "mfa_portal_sessions", METRIC_GAUGE,
                   "Portal sessions mid-sign-in or signed in.", (double)portal_sessions(n));
    radius_server_metrics(n->radius, out);
    dirsync_metrics(n, out);
    mail_metrics(n, out);
    metrics_family(out, "mfa_http_responses_total", METRIC_COUNTER, "HTTP responses by class.");
    for (int i = 1; i <= 5; i++) {
        char cls[4] = { (char)('0' + i), 'x', 'x', '\0' };

        metrics_sample(out, "mfa_http_responses_total", (double)counts[i], "code", cls, NULL);
    }
    metrics_reply(req, out);
    evbuffer_free(out);
}

static const struct http_route routes[] = {
    { EVHTTP_REQ_GET, "/health", false, handle_health },
    { EVHTTP_REQ_GET, "/ready", false, handle_ready },
    { EVHTTP_REQ_GET, "/status", false, handle_status },
    { EVHTTP_REQ_GET, "/metrics", false, handle_metrics },
    { EVHTTP_REQ_POST, "/api/v1/auth", false, auth_handle_auth },
    { EVHTTP_REQ_POST, "/api/v1/challenges/", true, auth_handle_verify },
    { EVHTTP_REQ_GET, "/api/v1/challenges/", true, auth_handle_challenge },
    { EVHTTP_REQ_POST, "/api/v1/api-keys", false, apikeys_handle_create },
    { EVHTTP_REQ_GET, "/api/v1/api-keys", false, apikeys_handle_list },
    { EVHTTP_REQ_DELETE, "/api/v1/api-keys/", true, apikeys_handle_revoke },
    { EVHTTP_REQ_GET, "/api/v1/users", false, users_handle_list },
    { EVHTTP_REQ_POST, "/api/v1/users", false, users_handle_create },
    { EVHTTP_REQ_POST, "/api/v1/users/import", false, users_handle_import },
    { EVHTTP_REQ_GET, "/api/v1/users/", true, users_handle_get },
    { EVHTTP_REQ_PATCH | EVHTTP_REQ_PUT, "/api/v1/users/", true, users_handle_update },
    { EVHTTP_REQ_DELETE, "/api/v1/users/", true, users_handle_delete },
    { EVHTTP_REQ_POST, "/api/v1/users/", true, users_handle_action },
    { EVHTTP_REQ_POST, "/api/v1/tokens/import", false, tokens_handle_import },
    { EVHTTP_REQ_GET, "/api/v1/audit-log", false, users_handle_audit_log },
    { EVHTTP_REQ_GET, "/api/v1/auth-log", false, users_handle_auth_log },
    { EVHTTP_REQ_GET, "/portal", false, portal_handle },
    { EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/portal/", true, portal_handle },
};

/*
 * The TLS context for the node port on member address <me>, or NULL with no
 * error for a loopback address (plain HTTP). Returns NULL with *err when
 * the certificate, key, CA or cipher settings are at fault. The caller
 * frees the context.
 */
static SSL_CTX *listener_tls(const struct appconf *c, const struct member_conf *me, char **err)
{
    struct tls_settings ts = tls_settings_cluster(c);
    SSL_CTX *ctx;

    *err = NULL;
    if (netaddr_is_loopback(me->address))
        return NULL;
    ctx = tls_server_ctx_new(&ts, err);
    if (!ctx)
        err_prefix(err, "the node port on %s is not loopback, so it speaks TLS", me->address);
    return ctx;
}

static int start(struct daemon *d, char **err)
{
    struct node *n = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);
    const struct member_conf *me = appconf_local(c);
    struct http_server_settings hs = {
        .address = me->address,
        .port = me->ports.node,
        .max_body = (size_t)c->node.http.max_body,
        .max_headers = (size_t)c->node.http.max_headers,
        .timeout_ms = c->node.http.timeout_ms,
    };
    bool tls;

    n->d = d;
    n->started_ms = clock_mono_ms();
    snprintf(n->id, sizeof(n->id), "%s", me->id);
    if (keyfile_load(c->appliance.key_file, &n->keys, err) < 0)
        return -1;
    /* libldap's (without ldap.conf or LDAP* variables, directory.h) and libcurl's global state
     * before any thread starts (httpclient.h). */
    directory_lib_init();
    if (httpclient_global_init(err) < 0)
        return -1;
    /* Directory binds (the LDAP first factor) wait on the network: more threads. */
    n->workers = worker_pool_new(daemon_base(d),
                                 c->directory.first_factor == FIRST_FACTOR_LDAP ? 8 : 2, err);
    if (!n->workers)
        return -1;
    n->db = nodedb_new(daemon_base(d), c, &n->keys, err);
    if (!n->db)
        return -1;
    n->apikeys = apikeys_new(n->db, err);
    if (!n->apikeys)
        return -1;
    if (auth_start(n, err) < 0)
        return -1;
    if (portal_start(n, err) < 0)
        return -1;
    if (dirsync_start(n, err) < 0 || mail_start(n, err) < 0)
        return -1;
    hs.tls = listener_tls(c, me, err);
    if (!hs.tls && *err)
        return -1;
    tls = hs.tls != NULL;
    n->http = http_server_new(daemon_base(d), &hs, routes, MFA_ARRAY_LEN(routes), n, err);
    SSL_CTX_free(hs.tls);
    if (!n->http)
        return -1;
    log_notice("node.listening address=%s port=%d tls=%s", me->address, me->ports.node,
               tls ? "on" : "off");
    n->radius = radius_server_new(n, err);
    if (!n->radius && *err)
        return -1;
    return 0;
}

static void tick(struct daemon *d)
{
    struct node *n = daemon_arg(d);

    if (daemon_every(d, NODEDB_REPLICATOR_POLL_MS))
        nodedb_poll_replicator(n->db);
    if (daemon_every(d, 1000)) {
        nodedb_tick(n->db);
        apikeys_tick(n->apikeys);
    }
    auth_tick(n);
    portal_tick(n);
    radius_server_tick(n->radius);
    dirsync_tick(n);
    mail_tick(n);
}

static void stop_listening(struct daemon *d)
{
    struct node *n = daemon_arg(d);

    http_server_stop_listening(n->http);
    radius_server_stop_listening(n->radius);
}

static size_t in_flight(struct daemon *d)
{
    struct node *n = daemon_arg(d);

    return http_server_in_flight(n->http) + radius_server_in_flight(n->radius) + mail_in_flight(n);
}

/*
 * Frees in the order that keeps every pending callback safe: what still
 * answers requests goes while the HTTP server, the auth log and the
 * databases it needs are alive — SMS deliveries first (they write to the
 * database), then the database connections (their callbacks log and
 * answer), then the rest of sign-in, the server, and the workers last.
 */
static void stop(struct daemon *d)
{
    struct node *n = daemon_arg(d);

    auth_stop_delivery(n);
    mail_stop(n);
    dirsync_stop(n);
    nodedb_free(n->db);
    n->db = NULL;
    auth_stop(n);
    /* After the database: its last callbacks still look up portal sessions. */
    portal_stop(n);
    /* After the sign-in engine: its last callbacks answered through it. */
    radius_server_free(n->radius);
    n->radius = NULL;
    apikeys_free(n->apikeys);
    n->apikeys = NULL;
    http_server_free(n->http);
    n->http = NULL;
    worker_pool_free(n->workers);
    n->workers = NULL;
    keyring_wipe(&n->keys);
}

static const struct daemon_ops node_ops = {
    .name = "mfa-node",
    .start = start,
    .tick = tick,
    .stop_listening = stop_listening,
    .in_flight = in_flight,
    .stop = stop,
};

int main(int argc, char **argv)
{
    struct node n = { 0 };

    return daemon_main(argc, argv, &node_ops, &n);
}
