/*
 * mfactl's control-API client; see ctl.h.
 *
 * Every wait is the same shape: start requests that each decrement a
 * counter from their callback, arm a safety timer, and run the loop one
 * round at a time until the counter is zero. httpclient promises every
 * callback within its request's deadline, so the timer should never fire;
 * if it does, both clients are freed (which calls every pending callback
 * with "client closed", so nothing is left pointing at the caller's stack)
 * and made afresh.
 */
#include "ctl.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "errmsg.h"
#include "httpclient.h"
#include "netaddr.h"

#define SAFETY_MARGIN_MS 2000 /* the loop's deadline past the longest request's */
#define DETAIL_MAX       160  /* characters of a non-JSON error body quoted */

struct ctl {
    struct appconf conf;
    struct event_base *base;
    struct httpclient *tls;   /* replicators, balancers, nodes off loopback: mutual TLS */
    struct httpclient *plain; /* nodes on loopback: /ready and /status */
    struct event *sig_int, *sig_term, *sig_hup;
    struct event *timer; /* the one timer: a wait's deadline or a sleep */
    bool timer_fired;
    uint64_t start_us;
    int signals;
};

/* One batch of requests being waited for. */
struct wait {
    int pending;
    bool timed_out;
};

struct fetch_slot {
    struct ctl *c;
    struct wait *w;
    size_t idx;
    struct plan_member *out;
    bool ready_ok;
};

struct post_slot {
    struct wait *w;
    struct ctl_reply *r;
};

/* ---- set-up ------------------------------------------------------------- */

static int make_clients(struct ctl *c, char **err)
{
    const struct appconf *conf = &c->conf;
    struct httpclient_tls tls = httpclient_tls_cluster(conf);

    c->tls = httpclient_new(c->base, &tls, err);
    if (!c->tls)
        return err_prefix(err,
                          "cannot set up TLS with the cluster CA %s (cluster.tls.ca) and the "
                          "certificate %s and key %s (appliance.tls.cert, appliance.tls.key); "
                          "mfactl needs them readable",
                          tls.ca_file, tls.cert_file, tls.key_file);
    c->plain = httpclient_new(c->base, NULL, err);
    if (!c->plain)
        return err_prefix(err, "cannot make an HTTP client");
    return 0;
}

static void free_clients(struct ctl *c)
{
    struct httpclient *t = c->tls, *p = c->plain;

    c->tls = c->plain = NULL;
    httpclient_free(t);
    httpclient_free(p);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    bool *fired = arg;

    (void)fd;
    (void)what;
    *fired = true;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct ctl *c = arg;

    (void)sig;
    (void)what;
    if (++c->signals > 1) {
        fprintf(stderr, "mfactl: interrupted again; quitting now. Run `mfactl status` to see "
                        "where the cluster stands\n");
        _exit(1);
    }
    fprintf(stderr, "mfactl: interrupted; finishing the step under way (interrupt again to quit "
                    "at once)\n");
}

struct ctl *ctl_open(const char *config_path, char **err)
{
    struct ctl *c;

    if (httpclient_global_init(err) < 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, "out of memory");
        return NULL;
    }
    c->start_us = clock_mono_us();
    if (appconf_load(config_path, &c->conf, NULL, NULL, err) < 0)
        goto fail;
    c->base = event_base_new();
    if (!c->base) {
        err_set(err, "cannot make an event loop");
        goto fail;
    }
    if (make_clients(c, err) < 0)
        goto fail;
    c->timer = evtimer_new(c->base, on_timer, &c->timer_fired);
    if (!c->timer) {
        err_set(err, "out of memory");
        goto fail;
    }
    c->sig_int = evsignal_new(c->base, SIGINT, on_signal, c);
    c->sig_term = evsignal_new(c->base, SIGTERM, on_signal, c);
    /* A dropped ssh session must not cut a switchover between its steps either. */
    c->sig_hup = evsignal_new(c->base, SIGHUP, on_signal, c);
    if (!c->sig_int || !c->sig_term || !c->sig_hup || evsignal_add(c->sig_int, NULL) < 0 ||
        evsignal_add(c->sig_term, NULL) < 0 || evsignal_add(c->sig_hup, NULL) < 0) {
        err_set(err, "cannot catch SIGINT and SIGTERM");
        goto fail;
    }
    return c;
fail:
    ctl_close(c);
    return NULL;
}

void ctl_close(struct ctl *c)
{
    if (!c)
        return;
    free_clients(c);
    if (c->sig_int)
        event_free(c->sig_int);
    if (c->sig_term)
        event_free(c->sig_term);
    if (c->sig_hup)
        event_free(c->sig_hup);
    if (c->timer)
        event_free(c->timer);
    if (c->base)
        event_base_free(c->base);
    appconf_free(&c->conf);
    free(c);
}

const struct appconf *ctl_conf(const struct ctl *c)
{
    return &c->conf;
}

int ctl_member_index(const struct ctl *c, const char *id)
{
    for (size_t i = 0; i < c->conf.cluster.nmembers; i++) {
        if (strcmp(c->conf.cluster.members[i].id, id) == 0)
            return (int)i;
    }
    return -1;
}

double ctl_elapsed_s(const struct ctl *c)
{
    return (double)(clock_mono_us() - c->start_us) / 1e6;
}

bool ctl_interrupted(const struct ctl *c)
{
    return c->signals > 0;
}

/* ---- the loop ------------------------------------------------------------ */

/* Arms c->timer for <seconds>; it sets c->timer_fired. Returns 0 or -1. */
static int arm(struct ctl *c, double seconds)
{
    struct timeval tv;

    c->timer_fired = false;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return evtimer_add(c->timer, &tv);
}

/*
 * Runs the loop until w->pending is 0, giving up after <deadline_ms>: then
 * the clients are remade and the pending callbacks have run.
 */
static void run(struct ctl *c, struct wait *w, int deadline_ms)
{
    char *err = NULL;

    if (arm(c, deadline_ms / 1000.0) < 0)
        c->timer_fired = true; /* no safety net: abort rather than risk hanging */
    while (w->pending > 0 && !c->timer_fired && event_base_loop(c->base, EVLOOP_ONCE) >= 0)
        ;
    evtimer_del(c->timer);
    if (w->pending > 0) {
        w->timed_out = true;
        free_clients(c); /* runs the pending callbacks */
        if (make_clients(c, &err) < 0) {
            fprintf(stderr, "mfactl: %s\n", err);
            free(err);
        }
    }
}

bool ctl_sleep(struct ctl *c, double seconds)
{
    if (ctl_interrupted(c))
        return false;
    if (seconds <= 0)
        return true;
    if (arm(c, seconds) < 0)
        return false; /* cannot happen with a valid timer; never spin */
    while (!c->timer_fired && !ctl_interrupted(c) && event_base_loop(c->base, EVLOOP_ONCE) >= 0)
        ;
    evtimer_del(c->timer);
    return !ctl_interrupted(c);
}

/* ---- requests ------------------------------------------------------------ */

/* "https://[::1]:8500/status" for member <m>. */
static void member_url(const struct member_conf *m, const char *scheme, int port, const char *path,
                       char *buf, size_t size)
{
    bool v6 = strchr(m->address, ':') != NULL;

    snprintf(buf, size, "%s://%s%s%s:%d%s", scheme, v6 ? "[" : "", m->address, v6 ? "]" : "", port,
             path);
}

/*
 * The client for member <m>'s node, and in *scheme how to reach it: a node
 * speaks TLS with client certificates unless it listens on loopback
 * (node/main.c). The client may be NULL (see run()'s safety timer).
 */
static struct httpclient *node_client(struct ctl *c, const struct member_conf *m,
                                      const char **scheme)
{
    bool tls = !netaddr_is_loopback(m->address);

    *scheme = tls ? "https" : "http";
    return tls ? c->tls : c->plain;
}

/*
 * Describes a non-2xx answer: "HTTP 409 not_standby: <detail>", or with the
 * start of a body that is not the API's error object.
 */
static void http_error(const struct httpclient_response *resp, const json_t *json, char *buf,
                       size_t size)
{
    const char *code = json_string_value(json_object_get(json, "error"));
    const char *detail = json_string_value(json_object_get(json, "detail"));
    char quoted[DETAIL_MAX + 1];
    size_t i;

    if (code || detail) {
        snprintf(buf, size, "HTTP %ld%s%s%s%s", resp->status, code ? " " : "", code ? code : "",
                 detail ? ": " : "", detail ? detail : "");
        ctl_sanitize(buf);
        return;
    }
    for (i = 0; i < resp->body_len && i < DETAIL_MAX && resp->body[i] != '\0'; i++)
        quoted[i] = resp->body[i] >= 0x20 && resp->body[i] < 0x7f ? resp->body[i] : ' ';
    quoted[i] = '\0';
    snprintf(buf, size, "HTTP %ld%s%s", resp->status, i ? ": " : "", quoted);
}

static void on_status(void *arg, const struct httpclient_response *resp, json_t *json,
                      const char *json_error)
{
    struct fetch_slot *s = arg;
    const char *id = s->c->conf.cluster.members[s->idx].id;
    char why[PLAN_WHY_MAX], *err = NULL;

    if (resp->error)
        plan_member_down(s->out, id, s->w->timed_out ? "no answer in time" : resp->error);
    else if (resp->status != 200) {
        http_error(resp, json, why, sizeof(why));
        plan_member_down(s->out, id, why);
    } else if (!json) {
        snprintf(why, sizeof(why), "the /status reply is not JSON: %s", json_error);
        plan_member_down(s->out, id, why);
    } else if (plan_member_from_json(json, id, s->out, &err) < 0) {
        snprintf(why, sizeof(why), "invalid /status reply: %s", err ? err : "out of memory");
        plan_member_down(s->out, id, why);
    }
    free(err);
    s->w->pending--;
}

static void on_ready(void *arg, const struct httpclient_response *resp)
{
    struct fetch_slot *s = arg;

    s->ready_ok = !resp->error && resp->status == 200;
    s->w->pending--;
}

size_t ctl_fetch(struct ctl *c, struct plan_member *out, const bool *want, bool ready)
{
    size_t n = c->conf.cluster.nmembers, answered = 0;
    struct fetch_slot *slots = calloc(n ? 2 * n : 1, sizeof(*slots));
    struct wait w = { 0 };
    char url[128], *err = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct member_conf *m = &c->conf.cluster.members[i];
        struct fetch_slot *st = &slots[2 * i], *rd = &slots[2 * i + 1];
        struct httpclient *node;
        const char *scheme;

        if (want && !want[i])
            continue;
        if (!slots) {
            plan_member_down(&out[i], m->id, "out of memory");
            continue;
        }
        *st = (struct fetch_slot){ c, &w, i, &out[i], false };
        *rd = *st;
        member_url(m, "https", m->ports.replicator, "/status", url, sizeof(url));
        if (!c->tls || httpclient_json(c->tls, "GET", url, NULL, CTL_STATUS_TIMEOUT_MS, on_status,
                                       st, &err) < 0)
            plan_member_down(&out[i], m->id, err ? err : "no HTTP client");
        else
            w.pending++;
        mfa_free(err);
        if (!ready)
            continue;
        node = node_client(c, m, &scheme);
        member_url(m, scheme, m->ports.node, "/ready", url, sizeof(url));
        if (node && httpclient_request(node, "GET", url, NULL, NULL, 0, CTL_STATUS_TIMEOUT_MS,
                                       on_ready, rd, &err) == 0)
            w.pending++;
        mfa_free(err);
    }
    run(c, &w, CTL_STATUS_TIMEOUT_MS + SAFETY_MARGIN_MS);
    for (size_t i = 0; i < n; i++) {
        if (want && !want[i])
            continue;
        out[i].node_ready = ready && slots && slots[2 * i + 1].ready_ok;
        answered += out[i].reachable;
    }
    free(slots);
    return answered;
}

static void on_post(void *arg, const struct httpclient_response *resp, json_t *json,
                    const char *json_error)
{
    struct post_slot *s = arg;
    struct ctl_reply *r = s->r;
    char why[PLAN_WHY_MAX];
    int rc = 0;

    r->status = resp->status;
    if (resp->error)
        rc = asprintf(&r->error, "%s", s->w->timed_out ? "no answer in time" : resp->error);
    else if (resp->status < 200 || resp->status > 299) {
        http_error(resp, json, why, sizeof(why));
        rc = asprintf(&r->error, "%s", why);
    } else if (!json_is_object(json))
        rc = asprintf(&r->error, "HTTP %ld with a reply that is not a JSON object%s%s",
                      resp->status, json_error ? ": " : "", json_error ? json_error : "");
    if (rc < 0)
        r->error = NULL;
    else if (r->error)
        ctl_sanitize(r->error);
    if (json_is_object(json))
        r->json = json_incref(json);
    s->w->pending--;
}

void ctl_call_all(struct ctl *c, struct ctl_call *calls, size_t n)
{
    struct post_slot *slots = calloc(n ? n : 1, sizeof(*slots));
    struct wait w = { 0 };
    int longest = 0;
    char url[160], *err = NULL;

    for (size_t i = 0; i < n; i++) {
        struct ctl_call *k = &calls[i];
        const struct member_conf *m = &c->conf.cluster.members[k->idx];
        const char *scheme = "https";
        struct httpclient *client = k->api == CTL_API_NODE ? node_client(c, m, &scheme) : c->tls;
        int port = k->api == CTL_API_NODE       ? m->ports.node
                   : k->api == CTL_API_BALANCER ? m->ports.balancer_control
                                                : m->ports.replicator;

        memset(&k->reply, 0, sizeof(k->reply));
        if (!slots) {
            k->reply.error = strdup("out of memory");
            continue;
        }
        slots[i] = (struct post_slot){ &w, &k->reply };
        member_url(m, scheme, port, k->path, url, sizeof(url));
        if (!client || httpclient_json(client, k->method, url, k->body, k->timeout_ms, on_post,
                                       &slots[i], &err) < 0) {
            k->reply.error = err ? err : strdup("no HTTP client");
            err = NULL;
            continue;
        }
        w.pending++;
        if (k->timeout_ms > longest)
            longest = k->timeout_ms;
    }
    if (w.pending)
        run(c, &w, longest + SAFETY_MARGIN_MS);
    for (size_t i = 0; slots && i < n; i++) {
        struct ctl_reply *r = &calls[i].reply;

        if (!r->error && (r->status < 200 || r->status > 299 || !r->json))
            r->error = strdup("out of memory");
    }
    free(slots);
}

int ctl_post(struct ctl *c, size_t idx, const char *path, json_t *body, int timeout_ms,
             struct ctl_reply *r)
{
    struct ctl_call k = { idx, CTL_API_REPLICATOR, "POST", path, body, timeout_ms, { 0 } };

    ctl_call_all(c, &k, 1);
    *r = k.reply;
    return r->error ? -1 : 0;
}

void ctl_reply_clear(struct ctl_reply *r)
{
    json_decref(r->json);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

char *ctl_sanitize(char *s)
{
    unsigned char *in = (unsigned char *)s, *out = in;

    for (; *in; in++) {
        if (*in < 0x20 || *in == 0x7f) {
            *out++ = '?';
        } else if (*in == 0xc2 && in[1] >= 0x80 && in[1] <= 0x9f) {
            *out++ = '?'; /* a C1 control, two bytes in UTF-8 */
            in++;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return s;
}
