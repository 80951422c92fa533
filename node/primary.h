/*
 * Where the cluster's primary is, as the local mfa-replicator sees it: the
 * "primary" of its GET /status (docs/replication.md), asked over mutual TLS
 * on this member's address and ports.replicator. The replicator decides the
 * roles, so its answer is the one the node follows; db.c falls back to its
 * own database's view while the replicator does not answer.
 *
 * At most one request is in flight: a poll while one is under way does
 * nothing. Every request that starts ends in exactly one callback.
 */
#ifndef MFA_NODE_PRIMARY_H
#define MFA_NODE_PRIMARY_H

#include <event2/event.h>

#include "appconf.h"
#include "mem.h"

#define PRIMARY_TIMEOUT_MS 1000 /* a request's whole deadline */

struct primary_watch;

/*
 * What a poll found. <err> NULL: the replicator answered, and <primary> is
 * the member it names (borrowed from the configuration: valid during the
 * call only), or NULL when it knows of no primary. <err> set: no usable
 * answer (transport error, timeout, a status other than 200, not the JSON
 * expected, a member id the configuration does not have); <primary> is NULL.
 */
typedef void (*primary_watch_cb)(void *arg, const struct member_conf *primary, const char *err);

/*
 * Makes a watch on the replicator of <conf>'s local member, with the
 * cluster's TLS settings: cluster.tls.ca, .min_version, .ciphers and
 * .ciphersuites, and appliance.tls.cert and .key as the client certificate.
 * <conf> is the daemon's, read again at each poll. Returns the watch, or NULL
 * with *err when a TLS file is unset, missing or unusable.
 */
struct primary_watch *primary_watch_new(struct event_base *base, const struct appconf *conf,
                                        primary_watch_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/*
 * Asks the replicator, unless a request is in flight. The answer reaches the
 * callback from the loop, or from inside this call when the request could
 * not start.
 */
void primary_watch_poll(struct primary_watch *w);

/* Frees the watch; a request in flight is dropped without a callback. NULL is fine. */
void primary_watch_free(struct primary_watch *w);

#endif
