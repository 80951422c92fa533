/*
 * mfa-replicator's control API: JSON over HTTPS with client certificates
 * from the cluster CA (docs/replication.md). /status is a snapshot of what
 * the probes and the peer polls last found; it never waits on the database.
 * The actions start tasks (role.c): /promote and /fence answer when their
 * task is done, /rejoin at once (the caller polls /status).
 *
 * /join hands a member that is being set up (mfactl setup --join) what it
 * cannot make itself: the key file and the cluster section of the
 * configuration. Only a client whose certificate the cluster CA signed and
 * whose common name is one of cluster.members gets them (the TLS handshake
 * already refused any other CA), unless that member reported itself a
 * witness (no database, no keys); the key file is read afresh, so a rotated
 * file is what goes out, in the format of keyfile_format(). It never
 * appears in the log or a URL.
 *
 * /status also says when the certificate this API serves expires
 * (cert_expires_at, cert_days_left), so the balancers' health page can warn
 * before it does. It is read from the TLS context when the API starts: the
 * certificate is loaded only then (a SIGHUP does not reload it), so this is
 * the one in use, not whatever the file holds now.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <openssl/crypto.h>

#include "daemon.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "repl.h"
#include "tls.h"

static json_t *lsn_json(uint64_t lsn)
{
    char buf[32];

    return lsn ? json_string(lsn_format(lsn, buf, sizeof(buf))) : json_null();
}

/* Whole days from now until <t>, rounded down: negative (-1 at first) once it has passed. */
static long days_until(time_t t)
{
    long long s = (long long)t - (long long)time(NULL);

    return (long)(s >= 0 ? s / 86400 : -((-s + 86399) / 86400));
}

/* Notes when the certificate <ctx> serves expires; logs a warning within 30 days. */
static void note_cert(struct repl *r, SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    struct tm tm;
    long days;

    r->cert_known = false;
    if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return;
    r->cert_not_after = timegm(&tm);
    strftime(r->cert_expires_at, sizeof(r->cert_expires_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    r->cert_known = true;
    days = days_until(r->cert_not_after);
    if (days < 30)
        log_warn("tls.cert_expiring expires_at=%s days_left=%ld hint=%s", r->cert_expires_at, days,
                 "mfactl pki renew, then restart the daemons");
    else
        log_info("tls.cert expires_at=%s days_left=%ld", r->cert_expires_at, days);
}

static const char *status_primary(struct repl *r)
{
    const struct peer *p;

    if (r->role == ROLE_PRIMARY)
        return r->me;
    if (r->role == ROLE_STANDBY && r->local.streaming && *r->upstream)
        return r->upstream;
    p = peers_primary(r);
    return p ? p->id : NULL;
}

json_t *control_status(struct repl *r)
{
    const struct local_state *l = &r->local;
    bool running = r->pm == PM_RUNNING && l->up;
    bool standby = running && l->in_recovery;
    bool primary = running && !l->in_recovery && r->role == ROLE_PRIMARY;
    json_t *out = json_object(), *peers = json_array(), *hist = json_array(), *sync = json_array();
    uint32_t tli = 0;
    uint64_t lsn = 0;
    bool known = repl_position(r, &tli, &lsn);
    const char *primary_id = status_primary(r);

    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *p = &r->peers[i];
        double age = peer_age(p);
        bool seen = peer_seen(r, p);
        json_t *tl = seen && p->status ? json_object_get(p->status, "timeline") : NULL;
        json_t *pl = seen && p->status ? json_object_get(p->status, "lsn") : NULL;

        json_array_append_new(
            peers,
            json_pack("{s:s, s:b, s:o, s:o, s:O, s:O, s:s?}", "id", p->id, "seen", peer_seen(r, p),
                      "age_s", age < 0 ? json_null() : json_real(age), "role",
                      peer_seen(r, p) && peer_str(p, "role") ? json_string(peer_str(p, "role"))
                                                             : json_null(),
                      "timeline", tl ? tl : json_null(), "lsn", pl ? pl : json_null(), "error",
                      p->error[0] ? p->error : NULL));
    }
    if (primary) {
        for (int i = 0; i < r->nhistory; i++) {
            char buf[32];
            uint32_t child = i + 1 < r->nhistory ? r->history[i + 1].tli : r->history_tli;
            json_array_append_new(
                hist, json_pack("{s:I, s:I, s:s}", "timeline", (json_int_t)child, "parent",
                                (int)r->history[i].tli, "switch_lsn",
                                lsn_format(r->history[i].switch_lsn, buf, sizeof(buf))));
        }
        /* "ANY n (\"a\", \"b\")": the quoted names */
        for (const char *s = strchr(r->sync_names, '"'); s; s = strchr(s, '"')) {
            const char *e = strchr(s + 1, '"');
            if (!e)
                break;
            json_array_append_new(sync, json_stringn(s + 1, (size_t)(e - s - 1)));
            s = e + 1;
        }
    }

    json_object_set_new(out, "member", json_string(r->me));
    json_object_set_new(out, "role", json_string(repl_role_name(r->role)));
    json_object_set_new(out, "writable", json_boolean(primary && !r->fenced && !l->read_only));
    json_object_set_new(out, "fenced", json_boolean(r->fenced));
    json_object_set_new(out, "fence_reason",
                        r->fence_reason ? json_string(r->fence_reason) : json_null());
    /* roles, database and migrations done since it became primary: mfactl restore waits */
    json_object_set_new(out, "setup_done",
                        json_boolean(primary && r->setup_ok && !r->setup_running));
    json_object_set_new(out, "bootstrap_pending", json_boolean(r->bootstrap_pending));
    json_object_set_new(out, "has_data",
                        json_boolean(r->role != ROLE_WITNESS && pgsetup_has_data(&r->paths)));
    json_object_set_new(out, "system_identifier",
                        running && *l->sysid ? json_string(l->sysid)
                        : r->control_valid   ? json_string(r->control.system_identifier)
                                             : json_null());
    json_object_set_new(out, "timeline", known ? json_integer(tli) : json_null());
    json_object_set_new(out, "lsn", known ? lsn_json(lsn) : json_null());
    json_object_set_new(out, "receive_lsn", standby ? lsn_json(l->receive_lsn) : json_null());
    json_object_set_new(out, "replay_lsn", standby ? lsn_json(l->replay_lsn) : json_null());
    json_object_set_new(out, "lag_bytes",
                        standby ? json_integer(l->receive_lsn > l->replay_lsn
                                                   ? (json_int_t)(l->receive_lsn - l->replay_lsn)
                                                   : 0)
                                : json_null());
    json_object_set_new(out, "lag_seconds", standby ? json_real(l->lag_s) : json_null());
    json_object_set_new(out, "upstream",
                        r->role != ROLE_PRIMARY && *r->upstream ? json_string(r->upstream)
                                                                : json_null());
    json_object_set_new(out, "streaming", standby ? json_boolean(l->streaming) : json_null());
    json_object_set_new(out, "primary", primary_id ? json_string(primary_id) : json_null());
    json_object_set_new(out, "standbys",
                        primary && l->standbys ? json_incref(l->standbys) : json_array());
    json_object_set_new(out, "sync_standbys", sync);
    json_object_set_new(out, "sees_majority", json_boolean(repl_sees_majority(r)));
    json_object_set_new(out, "peers", peers);
    json_object_set_new(out, "timeline_history", hist);
    json_object_set_new(out, "task", r->task ? json_string(r->task) : json_null());
    json_object_set_new(out, "task_error",
                        r->task_error[0] ? json_string(r->task_error) : json_null());
    json_object_set_new(out, "postgres",
                        json_pack("{s:b, s:o, s:i}", "running", r->pm == PM_RUNNING, "pid",
                                  r->pm_pid ? json_integer(r->pm_pid) : json_null(), "restarts",
                                  r->pm_restarts));
    json_object_set_new(out, "cert_expires_at",
                        r->cert_known ? json_string(r->cert_expires_at) : json_null());
    json_object_set_new(out, "cert_days_left",
                        r->cert_known ? json_integer(days_until(r->cert_not_after)) : json_null());
    json_object_set_new(out, "version", json_string(MFA_VERSION));
    return out;
}

static void handle_status(struct evhttp_request *req, void *arg)
{
    http_reply_json(req, 200, control_status(arg));
}

static void handle_health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void refuse(struct evhttp_request *req, const char *code, char *err)
{
    int status = strncmp(err, "busy", 4) == 0 ? 503 : 409;

    http_reply_error(req, status, strncmp(err, "busy", 4) == 0 ? "busy" : code, "%s", err);
    free(err);
}

static void handle_promote(struct evhttp_request *req, void *arg)
{
    struct repl *r = arg;
    char *err = NULL;

    log_notice("api.promote peer=%s", "-");
    if (repl_promote(r, req, &err) < 0)
        refuse(req, strstr(err, "writable primary") ? "primary_elsewhere" : "not_standby", err);
}

static void handle_fence(struct evhttp_request *req, void *arg)
{
    struct repl *r = arg;
    char *err = NULL;

    log_notice("api.fence");
    if (repl_fence(r, req, &err) < 0)
        refuse(req, "not_primary", err);
}

static void handle_resume(struct evhttp_request *req, void *arg)
{
    struct repl *r = arg;
    char *err = NULL;

    log_notice("api.resume");
    if (repl_resume(r, &err) < 0) {
        refuse(req, strstr(err, "primary now") ? "primary_elsewhere" : "not_stopped", err);
        return;
    }
    http_reply_json(req, 202, json_pack("{s:s}", "role", repl_role_name(r->role)));
}

static void handle_rejoin(struct evhttp_request *req, void *arg)
{
    struct repl *r = arg;
    json_t *body = http_read_json(req);
    const char *primary;
    char *err = NULL;

    if (!body)
        return;
    primary = json_string_value(json_object_get(body, "primary"));
    if (!primary || !appconf_member(daemon_conf(r->d), primary) || strcmp(primary, r->me) == 0) {
        http_reply_error(req, 400, "bad_member", "\"primary\" must name another member");
        json_decref(body);
        return;
    }
    log_notice("api.rejoin primary=%s", primary);
    /* A primary just promoted: hear of it now rather than at the next poll. */
    peers_poll(r);
    /* Already there, or on the way: nothing to do. */
    if ((r->role == ROLE_STANDBY && strcmp(r->upstream, primary) == 0) ||
        (r->task && strcmp(r->task, "rejoin") == 0 && strcmp(r->rejoin_to, primary) == 0) ||
        repl_rejoin(r, primary, &err) == 0) {
        http_reply_json(req, 202, json_pack("{s:s}", "role", repl_role_name(r->role)));
    } else {
        refuse(req, "not_primary", err);
    }
    json_decref(body);
}

/* ---- /join: what a new member fetches ---- */

/* A port set as JSON {"api": 443, ...}. */
static json_t *ports_json(const struct member_ports *p)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "api", p->api, "stats",
                     p->stats, "health", p->health, "balancer_control", p->balancer_control,
                     "radius", p->radius, "node", p->node, "node_radius", p->node_radius,
                     "replicator", p->replicator, "postgres", p->postgres);
}

/*
 * The cluster section as the joining member must have it: every value that
 * is the same on all members. Paths (tls.ca) are each host's own and stay
 * out; members carry their ports resolved, so the joiner needs no
 * cluster-wide port defaults to agree.
 */
static json_t *cluster_json(const struct appconf *c)
{
    json_t *members = json_array();

    for (size_t i = 0; i < c->cluster.nmembers; i++) {
        const struct member_conf *m = &c->cluster.members[i];
        json_array_append_new(members, json_pack("{s:s, s:s, s:o}", "id", m->id, "address",
                                                 m->address, "ports", ports_json(&m->ports)));
    }
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:o, s:o}", "name", c->cluster.name,
                     "replication", c->cluster.replication == REPL_ASYNC ? "async" : "sync",
                     "fence_after", c->cluster.fence_after, "tls_min_version",
                     c->cluster.tls_min_version == TLS_MIN_1_3 ? "1.3" : "1.2", "tls_ciphers",
                     c->cluster.tls_ciphers, "tls_ciphersuites", c->cluster.tls_ciphersuites,
                     "ports", ports_json(&c->cluster.ports), "members", members);
}

/*
 * True when member <id> is a witness. A witness is set in its own
 * configuration (replicator.witness), which no other member reads: what
 * it reports is the one signal, so the answer is the role its /status gave
 * at any poll since this replicator started. A member being set up has not
 * answered yet and is let through; a witness this replicator has not seen
 * since it started would be too (docs/replication.md, "GET /join").
 */
static bool member_is_witness(const struct repl *r, const char *id)
{
    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *p = &r->peers[i];
        const char *role = peer_str(p, "role");

        if (strcmp(p->id, id) == 0)
            return p->was_witness || (role && strcmp(role, "witness") == 0);
    }
    return false;
}

static void handle_join(struct evhttp_request *req, void *arg)
{
    struct repl *r = arg;
    const struct appconf *c = daemon_conf(r->d);
    struct keyring kr;
    char cn[80], comment[160], text[4096], *err = NULL;

    if (http_peer_name(req, cn, sizeof(cn)) < 0 || !appconf_member(c, cn)) {
        log_warn("api.join refused=not_member");
        http_reply_error(req, 403, "not_member",
                         "only a member's certificate (its common name one of cluster.members) "
                         "may fetch the cluster's keys");
        return;
    }
    if (member_is_witness(r, cn)) {
        log_warn("api.join refused=witness member=%s", cn);
        http_reply_error(req, 403, "witness",
                         "member %s is a witness: it runs no database and gets no keys", cn);
        return;
    }
    if (keyfile_load(c->appliance.key_file, &kr, &err) < 0) {
        log_error("api.join member=%s err=%s", cn, err);
        http_reply_error(req, 500, "key_file", "this member cannot read its key file");
        free(err);
        return;
    }
    snprintf(comment, sizeof(comment),
             "# MFA Appliance key file, fetched from member %s.\n"
             "# Identical on every member. Keep it mode 0600.\n",
             r->me);
    if (keyfile_format(&kr, comment, text, sizeof(text)) < 0) {
        keyring_wipe(&kr);
        OPENSSL_cleanse(text, sizeof(text));
        http_reply_error(req, 500, "key_file", "the key file does not fit the reply");
        return;
    }
    keyring_wipe(&kr);
    log_notice("api.join member=%s", cn);
    /* jansson frees its copy of the text without wiping it: that cannot be helped. */
    http_reply_json(req, 200,
                    json_pack("{s:s, s:s, s:o, s:s}", "from", r->me, "member", cn, "cluster",
                              cluster_json(c), "key_file", text));
    OPENSSL_cleanse(text, sizeof(text));
}

static const struct http_route routes[] = {
    { EVHTTP_REQ_GET, "/health", false, handle_health },
    { EVHTTP_REQ_GET, "/status", false, handle_status },
    { EVHTTP_REQ_POST, "/promote", false, handle_promote },
    { EVHTTP_REQ_POST, "/fence", false, handle_fence },
    { EVHTTP_REQ_POST, "/resume", false, handle_resume },
    { EVHTTP_REQ_POST, "/rejoin", false, handle_rejoin },
    { EVHTTP_REQ_GET, "/join", false, handle_join },
};

struct http_server *control_start(struct repl *r, char **err)
{
    const struct appconf *c = daemon_conf(r->d);
    const struct member_conf *me = appconf_local(c);
    struct tls_settings ts = tls_settings_cluster(c);
    struct http_server_settings hs = {
        .address = me->address,
        .port = me->ports.replicator,
        .max_body = 65536,
        .max_headers = 16384,
        /* /promote and /fence answer when their task is done: up to ~2 minutes. */
        .timeout_ms = 150000,
    };
    struct http_server *srv;

    hs.tls = tls_server_ctx_new(&ts, err);
    if (!hs.tls)
        return NULL;
    note_cert(r, hs.tls);
    srv = http_server_new(r->base, &hs, routes, MFA_ARRAY_LEN(routes), r, err);
    SSL_CTX_free(hs.tls);
    return srv;
}
