/*
 * What the health page shows: every member's replicator /status (over
 * mutual TLS) and node /status (on the member's node port: mutual TLS too,
 * plain HTTP only when the member's address is loopback, as the node
 * listens),
 * asked every balancer.poll_interval_ms with one request of each kind in
 * flight per member, plus HAProxy's view of each server. The snapshot keeps
 * only the fields the page shows (page.h), so nothing else a member says
 * reaches the open health port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal.h"
#include "daemon.h"
#include "httpclient.h"
#include "log.h"
#include "netaddr.h"

void members_init(struct bal *b)
{
    const struct appconf *c = daemon_conf(b->d);

    b->nmembers = c->cluster.nmembers;
    for (size_t i = 0; i < b->nmembers; i++)
        snprintf(b->members[i].id, sizeof(b->members[i].id), "%s", c->cluster.members[i].id);
}

void members_free(struct bal *b)
{
    for (size_t i = 0; i < b->nmembers; i++) {
        json_decref(b->members[i].replicator);
        json_decref(b->members[i].node);
        b->members[i].replicator = b->members[i].node = NULL;
    }
}

struct poll {
    struct bal *b;
    size_t index;
    bool node;
};

static json_t *unreachable(const struct httpclient_response *resp, const char *json_error)
{
    char why[200];

    if (resp->error)
        snprintf(why, sizeof(why), "%s", resp->error);
    else if (resp->status != 200)
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
    else
        snprintf(why, sizeof(why), "%s", json_error ? json_error : "not a JSON object");
    return json_pack("{s:b, s:s}", "reachable", 0, "error", why);
}

/* Copies <keys> of <from> into <to> when present. */
static void pick(json_t *to, const json_t *from, const char *const *keys)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(from, *keys);
        if (v)
            json_object_set(to, *keys, v);
    }
}

static void polled(void *arg, const struct httpclient_response *resp, json_t *json,
                   const char *json_error)
{
    static const char *const repl_keys[] = {
        "role",   "timeline",  "lsn",      "lag_bytes",       "lag_seconds",    "writable",
        "fenced", "streaming", "upstream", "cert_expires_at", "cert_days_left", NULL,
    };
    static const char *const node_keys[] = { "challenges", "sessions", "clock_offset_s", "version",
                                             NULL };
    struct poll *p = arg;
    struct bal_member *m = &p->b->members[p->index];
    json_t *v;

    if (resp->status == 200 && json_is_object(json)) {
        v = json_pack("{s:b}", "reachable", 1);
        pick(v, json, p->node ? node_keys : repl_keys);
        if (p->node)
            json_object_set_new(v, "ready",
                                json_boolean(json_is_true(json_object_get(json, "local_db"))));
    } else {
        v = unreachable(resp, json_error);
    }
    if (p->node) {
        json_decref(m->node);
        m->node = v;
        m->node_in_flight = false;
    } else {
        json_decref(m->replicator);
        m->replicator = v;
        m->repl_in_flight = false;
    }
    free(p);
}

static void ask(struct bal *b, size_t i, bool node)
{
    const struct member_conf *mc = appconf_member(daemon_conf(b->d), b->members[i].id);
    bool v6 = strchr(mc->address, ':') != NULL;
    /* A node speaks TLS unless it listens on loopback (node/main.c). */
    bool tls = !node || !netaddr_is_loopback(mc->address);
    char url[160], *err = NULL;
    struct poll *p = calloc(1, sizeof(*p));

    if (!p)
        return;
    p->b = b;
    p->index = i;
    p->node = node;
    snprintf(url, sizeof(url), "%s://%s%s%s:%d/status", tls ? "https" : "http", v6 ? "[" : "",
             mc->address, v6 ? "]" : "", node ? mc->ports.node : mc->ports.replicator);
    if (httpclient_json(tls ? b->mtls : b->plain, "GET", url, NULL, 2000, polled, p, &err) < 0) {
        log_error("members.poll url=%s err=%s", url, err);
        free(err);
        free(p);
        return;
    }
    if (node)
        b->members[i].node_in_flight = true;
    else
        b->members[i].repl_in_flight = true;
}

void members_poll(struct bal *b)
{
    for (size_t i = 0; i < b->nmembers; i++) {
        if (!b->members[i].repl_in_flight)
            ask(b, i, false);
        if (!b->members[i].node_in_flight)
            ask(b, i, true);
    }
}

static bool reachable(const json_t *part)
{
    return part && json_is_true(json_object_get(part, "reachable"));
}

json_t *members_snapshot(struct bal *b)
{
    const struct appconf *c = daemon_conf(b->d);
    const struct member_conf *me = appconf_local(c);
    json_t *out = json_object(), *list = json_array();
    char when[32], stats[128];
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < b->nmembers; i++) {
        struct bal_member *m = &b->members[i];
        const struct member_conf *mc = appconf_member(c, m->id);
        struct bal_server *s = bal_server(b, m->id);
        json_t *e = json_pack("{s:s, s:s}", "id", m->id, "address", mc->address);

        json_object_set_new(
            e, "replicator",
            m->replicator ? json_incref(m->replicator)
                          : json_pack("{s:b, s:s}", "reachable", 0, "error", "not asked yet"));
        json_object_set_new(
            e, "node",
            m->node ? json_incref(m->node)
                    : json_pack("{s:b, s:s}", "reachable", 0, "error", "not asked yet"));
        json_object_set_new(e, "haproxy",
                            s ? json_pack("{s:s, s:s, s:I}", "state", server_state_name(s->state),
                                          "status", *s->status ? s->status : "?",
                                          "current_sessions", (json_int_t)s->current_sessions)
                              : json_null());
        json_object_set_new(e, "down",
                            json_boolean(!reachable(m->replicator) && !reachable(m->node)));
        json_array_append_new(list, e);
    }
    snprintf(stats, sizeof(stats), strchr(me->address, ':') ? "http://[%s]:%d/" : "http://%s:%d/",
             me->address, me->ports.stats);
    json_object_set_new(out, "cluster", json_string(c->cluster.name));
    json_object_set_new(out, "balancer", json_string(me->id));
    json_object_set_new(out, "generated_at", json_string(when));
    json_object_set_new(out, "stats_url",
                        *c->balancer.stats_password ? json_string(stats) : json_null());
    json_object_set_new(out, "members", list);
    /* Counters only: addresses and per-node detail stay on the control API. */
    json_object_set_new(out, "radius", radius_front_counters(b));
    return out;
}
