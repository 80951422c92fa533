/*
 * The web health page mfa-balancer serves on its read-only port: every
 * member at a glance (database role, timeline, replication lag, node
 * readiness, HAProxy state, live challenges and sessions, clock offset,
 * version, a certificate near expiry), refreshed every few seconds, with no
 * external assets. The same snapshot is served as /cluster.json.
 *
 * The snapshot (a JSON object the balancer builds, see docs/balancer.md):
 *
 *   {"cluster": "demo", "balancer": "n1", "generated_at": "2026-11-22T18:00:00Z",
 *    "stats_url": "http://127.0.0.1:8404/" | null,
 *    "members": [
 *      {"id": "n1", "address": "127.0.0.1",
 *       "replicator": {"reachable": true, "role": "primary", "timeline": 2,
 *                      "lsn": "0/3000148", "lag_bytes": 0, "lag_seconds": 0.0,
 *                      "writable": true, "fenced": false, "streaming": null,
 *                      "upstream": null, "cert_expires_at": "2029-02-24T21:27:39Z",
 *                      "cert_days_left": 824}
 *                   | {"reachable": false, "error": "..."},
 *       "node": {"reachable": true, "ready": true, "challenges": 3, "sessions": 0,
 *                "clock_offset_s": 0.001, "version": "0.1.0"}
 *             | {"reachable": false, "error": "..."},
 *       "haproxy": {"state": "ready"|"drain"|"maint", "status": "UP"|"DOWN"|"MAINT"|...,
 *                   "current_sessions": 0} | null,
 *       "down": false}],
 *    "radius": {"received": 0, "forwarded": 0, "answers": 0, "dropped": 0, ...} | null
 *             (the RADIUS front's totals; the page shows nothing of them yet)}
 *
 * Every value is untrusted (it came from the network): the page escapes all
 * text, links stats_url only when it is an http:// or https:// URL, and never
 * fails on a missing or ill-typed field (it shows "?"; a null the format
 * allows shows a dash).
 *
 * Each member gets a badge: "down" when "down" is true or neither its
 * replicator nor its node answers; "degraded" when it answers but something
 * needs a look (a part unreachable, the node not ready, drained or in
 * maintenance, fenced, a standby not streaming or more than 10 s behind, a
 * clock more than 1 s off, the replicator's certificate expiring in fewer
 * than 30 days or expired — its row then says "certificate expires in N
 * days — mfactl pki renew"; cert_days_left absent, null or not a number
 * shows nothing); "up" otherwise. The summary line on top counts
 * roles and badges and says "no writable primary!" when none is.
 */
#ifndef MFA_BALANCER_PAGE_H
#define MFA_BALANCER_PAGE_H

#include <jansson.h>

#include "mem.h"

/* Seconds between the page's own refreshes (<meta http-equiv="refresh">). */
#define PAGE_REFRESH_S 3

/*
 * The HTML page for <snapshot> (any JSON value, or NULL: what is missing
 * shows "?"), a NUL-terminated UTF-8 string the caller frees; NULL only
 * without memory.
 */
char *page_html(const json_t *snapshot) MFA_MUSTCHECK;

#endif
