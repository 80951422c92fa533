/*
 * The other members as this replicator sees them: each one's /status is
 * asked every replicator.poll_interval_ms (one request in flight per peer),
 * over mutual TLS. A peer is seen when it answered within
 * replicator.peer_timeout_ms. What the peers say drives the role decisions
 * (who is primary, on which timeline) and the majority that keeps a primary
 * from fencing itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daemon.h"
#include "httpclient.h"
#include "log.h"
#include "repl.h"

static double now_s(void)
{
    return (double)clock_mono_ms() / 1000.0;
}

void peers_init(struct repl *r)
{
    const struct appconf *c = daemon_conf(r->d);

    r->npeers = 0;
    for (size_t i = 0; i < c->cluster.nmembers; i++) {
        if (strcmp(c->cluster.members[i].id, r->me) == 0)
            continue;
        snprintf(r->peers[r->npeers].id, sizeof(r->peers[0].id), "%s", c->cluster.members[i].id);
        r->npeers++;
    }
}

/* True when a /status answer lists member <me> among the peers it sees. */
static bool peer_sees(json_t *status, const char *me)
{
    json_t *peers = json_object_get(status, "peers"), *e;
    size_t i;

    json_array_foreach(peers, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id && strcmp(id, me) == 0)
            return json_is_true(json_object_get(e, "seen"));
    }
    return false;
}

struct poll {
    struct repl *r;
    size_t index;
};

static void polled(void *arg, const struct httpclient_response *resp, json_t *json,
                   const char *json_error)
{
    struct poll *pl = arg;
    struct peer *p = &pl->r->peers[pl->index];
    bool was_seen = peer_seen(pl->r, p);

    p->in_flight = false;
    if (resp->status == 200 && json_is_object(json)) {
        json_decref(p->status);
        p->status = json_incref(json);
        p->last_ok_s = now_s();
        if (peer_sees(json, pl->r->me))
            p->last_mutual_s = p->last_ok_s;
        p->error[0] = '\0';
        if (!was_seen)
            log_notice("peer.seen id=%s role=%s", p->id, peer_str(p, "role"));
    } else {
        if (resp->error)
            snprintf(p->error, sizeof(p->error), "%s", resp->error);
        else if (resp->status != 200)
            snprintf(p->error, sizeof(p->error), "HTTP %ld", resp->status);
        else
            snprintf(p->error, sizeof(p->error), "%s", json_error ? json_error : "not JSON");
    }
    free(pl);
}

void peers_poll(struct repl *r)
{
    const struct appconf *c = daemon_conf(r->d);
    char url[128], *err = NULL;

    if (!r->http)
        return;
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        const struct member_conf *m = appconf_member(c, p->id);
        struct poll *pl;

        if (p->in_flight || !m)
            continue;
        snprintf(url, sizeof(url),
                 strchr(m->address, ':') ? "https://[%s]:%d/status" : "https://%s:%d/status",
                 m->address, m->ports.replicator);
        pl = calloc(1, sizeof(*pl));
        if (!pl)
            return;
        pl->r = r;
        pl->index = i;
        if (httpclient_json(r->http, "GET", url, NULL, c->replicator.peer_timeout_ms, polled, pl,
                            &err) < 0) {
            log_error("peer.poll id=%s err=%s", p->id, err);
            mfa_free(err);
            free(pl);
            continue;
        }
        p->in_flight = true;
    }
}

void peers_free(struct repl *r)
{
    for (size_t i = 0; i < r->npeers; i++) {
        json_decref(r->peers[i].status);
        r->peers[i].status = NULL;
    }
}

bool peer_seen(const struct repl *r, const struct peer *p)
{
    double timeout = daemon_conf(r->d)->replicator.peer_timeout_ms / 1000.0;

    return p->last_ok_s > 0 && now_s() - p->last_ok_s < timeout;
}

double peer_age(const struct peer *p)
{
    return p->last_ok_s > 0 ? now_s() - p->last_ok_s : -1;
}

const char *peer_str(const struct peer *p, const char *key)
{
    return p->status ? json_string_value(json_object_get(p->status, key)) : NULL;
}

json_int_t peer_int(const struct peer *p, const char *key)
{
    return p->status ? json_integer_value(json_object_get(p->status, key)) : 0;
}

const struct peer *peers_primary(const struct repl *r)
{
    const struct peer *found = NULL;

    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *p = &r->peers[i];
        const char *role = peer_str(p, "role");

        if (!peer_seen(r, p) || !role || strcmp(role, "primary") != 0)
            continue;
        if (found) /* two say they are primary: trust neither */
            return NULL;
        found = p;
    }
    return found;
}

size_t peers_primary_count(const struct repl *r)
{
    size_t n = 0;

    for (size_t i = 0; i < r->npeers; i++) {
        const char *role = peer_str(&r->peers[i], "role");
        n += peer_seen(r, &r->peers[i]) && role && strcmp(role, "primary") == 0;
    }
    return n;
}

const struct peer *peers_newest_primary(const struct repl *r)
{
    const struct peer *best = NULL;

    for (size_t i = 0; i < r->npeers; i++) {
        const struct peer *p = &r->peers[i];
        const char *role = peer_str(p, "role");

        if (peer_seen(r, p) && role && strcmp(role, "primary") == 0 &&
            (!best || peer_int(p, "timeline") > peer_int(best, "timeline")))
            best = p;
    }
    return best;
}

/*
 * How many peers, with this member, make a majority of the voters. A peer
 * counts while both directions work: it answers, and says it sees us (a
 * primary that others cannot reach must fence even if it reaches them).
 */
static size_t peers_needed(const struct repl *r)
{
    size_t voters = r->npeers + 1;

    return voters / 2; /* voters/2 + 1 with itself */
}

bool repl_sees_majority(const struct repl *r)
{
    size_t seen = 0;

    double timeout = daemon_conf(r->d)->replicator.peer_timeout_ms / 1000.0;

    for (size_t i = 0; i < r->npeers; i++)
        seen += r->peers[i].last_mutual_s > 0 && now_s() - r->peers[i].last_mutual_s < timeout;
    return seen >= peers_needed(r);
}

double repl_majority_age(const struct repl *r)
{
    size_t need = peers_needed(r);
    double ages[APPCONF_MAX_MEMBERS];
    size_t n = 0;

    if (need == 0)
        return 0;
    for (size_t i = 0; i < r->npeers; i++)
        ages[n++] =
            now_s() - (r->peers[i].last_mutual_s > 0 ? r->peers[i].last_mutual_s : r->started_s);
    /* The need-th youngest answer: since then, fewer peers than needed answered. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ages[j] < ages[i]) {
                double t = ages[i];
                ages[i] = ages[j];
                ages[j] = t;
            }
    return ages[need - 1];
}
