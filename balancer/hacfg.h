/*
 * haproxy.cfg as mfa-balancer renders it from appliance.conf: the API and
 * portal front end over TLS, one backend server per member with sticky
 * routing by node id (DESIGN §3), health checks on the nodes' /ready, the
 * stats page with credentials and HAProxy's Prometheus exporter, and the
 * runtime API socket the balancer steers servers through.
 *
 * Rendering is a pure function of the configuration and the paths: the same
 * input gives the same text, so the balancer reloads HAProxy only when the
 * text changes.
 */
#ifndef MFA_BALANCER_HACFG_H
#define MFA_BALANCER_HACFG_H

#include "appconf.h"
#include "mem.h"

/* The backend holding the nodes; servers are named by member id. */
#define HACFG_BACKEND "nodes"

struct hacfg_paths {
    /* The front end's certificate chain and key, one PEM file; also the client
     * certificate HAProxy shows a node on another host. */
    const char *pem;
    const char *admin_socket; /* the runtime API (level admin, mode 600) */
    /*
     * Optional: the servers' states as "show servers state" dumped them before
     * a reload; the new worker starts from them (so a drained server stays
     * drained). NULL: none.
     */
    const char *state_file;
};

/*
 * Renders haproxy.cfg for <conf>, as appconf_load() gave it, into *out
 * (malloc'd, NUL-terminated; the caller frees it). The file binds the API
 * front end and the stats page to this member's address, routes to every
 * member's node (plain HTTP on loopback, TLS verified against cluster.tls.ca
 * to another host), and serves the stats page and /metrics, both behind
 * balancer.stats.user and .password, only when that password is set. It
 * holds no `master-worker`, `daemon`, `user` or `chroot`: the balancer runs
 * HAProxy unprivileged with -W, in the foreground, logging to stderr.
 *
 * Returns 0, or -1 with *err (the caller frees it) naming the key of a value
 * HAProxy could not take: a stats user or password with whitespace, a quote,
 * a backslash, '#' or a control character (a user also with ':'), or a path
 * or cipher list that is not one plain word. A secret is never repeated in
 * *err. *out is NULL on failure.
 */
int hacfg_render(const struct appconf *conf, const struct hacfg_paths *p, char **out,
                 char **err) MFA_MUSTCHECK;

#endif
