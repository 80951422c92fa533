/*
 * The node's watch on its local mfa-replicator; see primary.h.
 *
 * The reply is trusted only as far as it names a member of the
 * configuration: the write connection then goes to that member's address
 * and ports.postgres, never to an address taken from the network.
 */
#include "primary.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "httpclient.h"

#define STATUS_MAX_BODY (64 * 1024)

struct primary_watch {
    const struct appconf *conf; /* the daemon's, read afresh at each poll */
    struct httpclient *http;
    primary_watch_cb cb;
    void *arg;
    bool in_flight;
    bool closing; /* in primary_watch_free(): the last callback is dropped */
};

struct primary_watch *primary_watch_new(struct event_base *base, const struct appconf *conf,
                                        primary_watch_cb cb, void *arg, char **err)
{
    const struct httpclient_tls tls = httpclient_tls_cluster(conf);
    struct primary_watch *w;

    if (!*tls.ca_file || !*tls.cert_file || !*tls.key_file) {
        err_set(err, "cluster.tls.ca, appliance.tls.cert and appliance.tls.key must all be set");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        err_set(err, "out of memory");
        return NULL;
    }
    w->conf = conf;
    w->cb = cb;
    w->arg = arg;
    w->http = httpclient_new(base, &tls, err);
    if (!w->http ||
        httpclient_set_limits(w->http, STATUS_MAX_BODY, HTTPCLIENT_CONNECT_TIMEOUT_MS, err) < 0) {
        primary_watch_free(w);
        return NULL;
    }
    return w;
}

void primary_watch_free(struct primary_watch *w)
{
    if (!w)
        return;
    w->closing = true;
    httpclient_free(w->http); /* calls on_status() of a request in flight */
    free(w);
}

static void on_status(void *arg, const struct httpclient_response *resp, json_t *json,
                      const char *json_error)
{
    struct primary_watch *w = arg;
    const struct member_conf *m;
    json_t *p;
    char why[160];

    w->in_flight = false;
    if (w->closing)
        return;
    if (resp->error) {
        w->cb(w->arg, NULL, resp->error);
        return;
    }
    if (resp->status != 200) {
        snprintf(why, sizeof(why), "GET /status answered HTTP %ld", resp->status);
        w->cb(w->arg, NULL, why);
        return;
    }
    if (!json) {
        w->cb(w->arg, NULL, json_error);
        return;
    }
    p = json_is_object(json) ? json_object_get(json, "primary") : NULL;
    if (json_is_null(p)) {
        w->cb(w->arg, NULL, NULL);
    } else if (!json_is_string(p)) {
        w->cb(w->arg, NULL, "GET /status: no \"primary\" member id or null");
    } else if (!(m = appconf_member(w->conf, json_string_value(p)))) {
        snprintf(why, sizeof(why), "GET /status: primary \"%.32s\" is not a member",
                 json_string_value(p));
        w->cb(w->arg, NULL, why);
    } else {
        w->cb(w->arg, m, NULL);
    }
}

void primary_watch_poll(struct primary_watch *w)
{
    const struct member_conf *me = appconf_local(w->conf);
    char url[128], *err = NULL;

    if (w->in_flight || w->closing)
        return;
    /* RFC 3986 §3.2.2: an IPv6 address goes in brackets. */
    snprintf(url, sizeof(url),
             strchr(me->address, ':') ? "https://[%s]:%d/status" : "https://%s:%d/status",
             me->address, me->ports.replicator);
    if (httpclient_json(w->http, "GET", url, NULL, PRIMARY_TIMEOUT_MS, on_status, w, &err) < 0) {
        w->cb(w->arg, NULL, err);
        free(err);
        return;
    }
    w->in_flight = true;
}
