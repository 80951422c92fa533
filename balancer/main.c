/*
 * mfa-balancer: renders haproxy.cfg from appliance.conf, runs HAProxy and
 * steers its servers (ready, drain, maint) through the runtime API, and
 * serves two HTTP ports: the control API over mutual TLS (mfactl drain,
 * ready, maint) and the open, read-only health page with /cluster.json
 * (docs/balancer.md). It also runs the RADIUS UDP front (radius_front.c).
 *
 * The server states it keeps survive a balancer restart (a state file) and
 * are applied again after every start or reload of HAProxy. A SIGHUP that
 * changes the rendered configuration reloads HAProxy without dropping a
 * connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bal.h"
#include "daemon.h"
#include "errmsg.h"
#include "httpclient.h"
#include "httpserver.h"
#include "log.h"
#include "page.h"
#include "proc.h"
#include "tls.h"

static struct bal bal;

static const char *const state_names[SERVER_STATE_COUNT_] = {
    [SERVER_READY] = "ready",
    [SERVER_DRAIN] = "drain",
    [SERVER_MAINT] = "maint",
};

const char *server_state_name(enum server_state s)
{
    return s < SERVER_STATE_COUNT_ ? state_names[s] : "unknown";
}

int server_state_parse(const char *name, enum server_state *out)
{
    for (int i = 0; i < SERVER_STATE_COUNT_; i++) {
        if (name && strcmp(name, state_names[i]) == 0) {
            *out = (enum server_state)i;
            return 0;
        }
    }
    return -1;
}

void bal_states_dirty(struct bal *b)
{
    b->states_dirty = true;
    b->states_gen++;
}

struct bal_server *bal_server(struct bal *b, const char *id)
{
    for (size_t i = 0; i < b->nservers; i++)
        if (strcmp(b->servers[i].id, id) == 0)
            return &b->servers[i];
    return NULL;
}

/* "<id> <state>" lines: what an operator set survives a balancer restart. */
void bal_save_states(struct bal *b)
{
    char tmp[320];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", b->state_path);
    f = fopen(tmp, "we");
    if (!f) {
        log_error("states.save path=%s err=%s", tmp, strerror(errno));
        return;
    }
    for (size_t i = 0; i < b->nservers; i++)
        fprintf(f, "%s %s\n", b->servers[i].id, server_state_name(b->servers[i].state));
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;

    /* Closed whatever happened; renamed only when all of it is on disk. */
    if (fclose(f) != 0 || !ok || rename(tmp, b->state_path) < 0) {
        log_error("states.save path=%s err=%s", b->state_path, strerror(errno));
        unlink(tmp);
    }
}

void bal_load_states(struct bal *b)
{
    char line[64], id[17], state[16];
    FILE *f = fopen(b->state_path, "re");

    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        struct bal_server *s;
        enum server_state st;

        if (sscanf(line, "%16s %15s", id, state) == 2 && (s = bal_server(b, id)) &&
            server_state_parse(state, &st) == 0)
            s->state = st;
    }
    fclose(f);
}

/* ---- the control API (mutual TLS) ---- */

static json_t *status_json(struct bal *b)
{
    json_t *servers = json_array();

    for (size_t i = 0; i < b->nservers; i++) {
        struct bal_server *s = &b->servers[i];
        json_array_append_new(servers, json_pack("{s:s, s:s, s:s, s:I}", "id", s->id, "state",
                                                 server_state_name(s->state), "status",
                                                 *s->status ? s->status : "?", "current_sessions",
                                                 (json_int_t)s->current_sessions));
    }
    return json_pack("{s:s, s:{s:b, s:o, s:i, s:i}, s:o, s:o, s:s}", "member",
                     appconf_local(daemon_conf(b->d))->id, "haproxy", "running", haproxy_running(b),
                     "pid", b->master ? json_integer(b->master) : json_null(), "reloads",
                     b->reloads, "restarts", b->restarts, "servers", servers, "radius",
                     radius_front_status(b), "version", MFA_VERSION);
}

static void handle_status(struct evhttp_request *req, void *arg)
{
    http_reply_json(req, 200, status_json(arg));
}

struct set_state {
    struct evhttp_request *req;
    char id[17];
    enum server_state state;
};

static void state_set(struct bal *b, const char *reply, void *arg)
{
    struct set_state *ss = arg;
    bool ok = reply != NULL;

    b->runtime_busy = false;
    for (const char *s = reply ? reply : ""; *s; s++)
        if (*s != '\n' && *s != '\r')
            ok = false;
    if (ok) {
        log_notice("server.state id=%s state=%s", ss->id, server_state_name(ss->state));
        http_reply_json(
            ss->req, 200,
            json_pack("{s:s, s:s}", "id", ss->id, "state", server_state_name(ss->state)));
    } else {
        /* Kept anyway: it is applied when HAProxy answers again. */
        bal_states_dirty(b);
        http_reply_error(ss->req, 503, "haproxy_down",
                         "HAProxy did not take the state%s%s; it is kept and applied when it "
                         "answers",
                         reply ? ": " : "", reply ? reply : "");
    }
    free(ss);
}

static void handle_server(struct evhttp_request *req, void *arg)
{
    struct bal *b = arg;
    char path[128], cmd[128], *err = NULL;
    const char *id;
    struct bal_server *s;
    struct set_state *ss;
    json_t *body;
    enum server_state st;

    http_request_path(req, path, sizeof(path));
    id = path + strlen("/servers/");
    s = bal_server(b, id);
    if (!s) {
        http_reply_error(req, 404, "unknown_member", "\"%s\" is not a member", id);
        return;
    }
    body = http_read_json(req);
    if (!body)
        return;
    if (server_state_parse(json_string_value(json_object_get(body, "state")), &st) < 0) {
        http_reply_error(req, 400, "bad_state", "\"state\" must be ready, drain or maint");
        json_decref(body);
        return;
    }
    json_decref(body);
    s->state = st;
    bal_save_states(b);
    ss = calloc(1, sizeof(*ss));
    if (!ss) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    ss->req = req;
    ss->state = st;
    snprintf(ss->id, sizeof(ss->id), "%s", s->id);
    snprintf(cmd, sizeof(cmd), "set server nodes/%s state %s", s->id, server_state_name(st));
    if (!haproxy_running(b) || runtime_command(b, cmd, state_set, ss, &err) < 0) {
        free(err);
        bal_states_dirty(b);
        http_reply_error(req, 503, "haproxy_down",
                         "HAProxy is not running; the state is kept and applied when it is");
        free(ss);
    }
}

static const struct http_route control_routes[] = {
    { EVHTTP_REQ_GET, "/status", false, handle_status },
    { EVHTTP_REQ_POST, "/servers/", true, handle_server },
};

/* ---- the health page (plain, read-only) ---- */

static void handle_page(struct evhttp_request *req, void *arg)
{
    json_t *snap = members_snapshot(arg);
    char *html = page_html(snap);

    json_decref(snap);
    if (!html) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply(req, 200, "text/html; charset=utf-8", html, strlen(html));
    free(html);
}

static void handle_cluster_json(struct evhttp_request *req, void *arg)
{
    http_reply_json(req, 200, members_snapshot(arg));
}

static const struct http_route health_routes[] = {
    { EVHTTP_REQ_GET, "/", false, handle_page },
    { EVHTTP_REQ_GET, "/cluster.json", false, handle_cluster_json },
};

/* ---- the daemon ---- */

static int start(struct daemon *d, char **err)
{
    struct bal *b = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);
    const struct member_conf *me = appconf_local(c);
    const char *run = c->appliance.run_dir;
    struct httpclient_tls tls = httpclient_tls_cluster(c);
    struct tls_settings ts = tls_settings_cluster(c);
    struct http_server_settings cs = { me->address, me->ports.balancer_control, NULL, 65536, 16384,
                                       10000 };
    struct http_server_settings hs = { me->address, me->ports.health, NULL, 4096, 16384, 10000 };

    b->d = d;
    b->base = daemon_base(d);
    snprintf(b->cfg_path, sizeof(b->cfg_path), "%s/haproxy.cfg", run);
    snprintf(b->pem_path, sizeof(b->pem_path), "%s/haproxy.pem", run);
    snprintf(b->admin_sock, sizeof(b->admin_sock), "%s/haproxy.sock", run);
    snprintf(b->pidfile, sizeof(b->pidfile), "%s/haproxy.pid", run);
    snprintf(b->srvstate_path, sizeof(b->srvstate_path), "%s/haproxy.state", run);
    snprintf(b->state_path, sizeof(b->state_path), "%s/balancer.state", c->appliance.data_dir);
    b->nservers = c->cluster.nmembers;
    for (size_t i = 0; i < b->nservers; i++)
        snprintf(b->servers[i].id, sizeof(b->servers[i].id), "%s", c->cluster.members[i].id);
    bal_load_states(b);
    members_init(b);
    if (httpclient_global_init(err) < 0)
        return -1;
    b->mtls = httpclient_new(b->base, &tls, err);
    if (!b->mtls)
        return -1;
    b->plain = httpclient_new(b->base, NULL, err);
    if (!b->plain)
        return -1;
    b->procs = proc_set_new(b->base, err);
    if (!b->procs)
        return -1;
    cs.tls = tls_server_ctx_new(&ts, err);
    if (!cs.tls)
        return -1;
    b->control =
        http_server_new(b->base, &cs, control_routes, MFA_ARRAY_LEN(control_routes), b, err);
    SSL_CTX_free(cs.tls);
    if (!b->control)
        return -1;
    b->health = http_server_new(b->base, &hs, health_routes, MFA_ARRAY_LEN(health_routes), b, err);
    if (!b->health)
        return -1;
    if (!c->balancer.enabled) {
        log_notice("balancer.listening health_port=%d haproxy=%s", me->ports.health, "off");
        return 0;
    }
    if (haproxy_write_files(b, err) < 0)
        return -1;
    haproxy_adopt(b);
    if (b->master) {
        /* The running HAProxy may have an older configuration. */
        haproxy_reload(b);
    } else if (haproxy_start(b, err) < 0) {
        return -1;
    }
    if (radius_front_start(b, err) < 0)
        return -1;
    log_notice("balancer.listening control_port=%d health_port=%d api_port=%d",
               me->ports.balancer_control, me->ports.health, me->ports.api);
    return 0;
}

/* daemon.c swaps the configuration after this hook: render it on the next tick. */
static int reload(struct daemon *d, const struct appconf *next, char **err)
{
    struct bal *b = daemon_arg(d);

    (void)next;
    (void)err;
    b->rerender = true;
    return 0;
}

static void tick(struct daemon *d)
{
    struct bal *b = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);

    if (daemon_every(d, (unsigned)c->balancer.poll_interval_ms))
        members_poll(b);
    if (!c->balancer.enabled)
        return;
    /* A configuration that renders differently (membership, limits): reload. */
    if (b->rerender && b->master) {
        char *before = b->cfg_text ? strdup(b->cfg_text) : NULL, *err = NULL;

        b->rerender = false;
        if (haproxy_write_files(b, &err) < 0) {
            log_error("haproxy.render err=%s", err);
            free(err);
        } else if (!before || strcmp(before, b->cfg_text) != 0) {
            haproxy_reload(b);
        }
        free(before);
    }
    haproxy_tick(b);
    runtime_tick(b);
    radius_front_tick(b);
}

static void stop_listening(struct daemon *d)
{
    struct bal *b = daemon_arg(d);

    http_server_stop_listening(b->control);
    http_server_stop_listening(b->health);
    radius_front_stop_listening(b);
}

static size_t in_flight(struct daemon *d)
{
    struct bal *b = daemon_arg(d);

    return http_server_in_flight(b->control) + http_server_in_flight(b->health);
}

/* HAProxy keeps running: the next balancer adopts it. */
static void stop(struct daemon *d)
{
    struct bal *b = daemon_arg(d);

    radius_front_free(b);
    httpclient_free(b->mtls);
    b->mtls = NULL;
    httpclient_free(b->plain);
    b->plain = NULL;
    http_server_free(b->control);
    b->control = NULL;
    http_server_free(b->health);
    b->health = NULL;
    proc_set_free(b->procs);
    b->procs = NULL;
    members_free(b);
    mfa_free(b->cfg_text);
}

static const struct daemon_ops balancer_ops = {
    .name = "mfa-balancer",
    .start = start,
    .reload = reload,
    .tick = tick,
    .stop_listening = stop_listening,
    .in_flight = in_flight,
    .stop = stop,
};

int main(int argc, char **argv)
{
    return daemon_main(argc, argv, &balancer_ops, &bal);
}
