/*
 * The scheduled directory sync (docs/directory.md): the node whose local
 * database is the writable primary runs directory_sync_run() (directory.h)
 * on a worker thread of its own, every directory.interval_s after the newest
 * directory_syncs row — so the schedule holds across a failover, and the
 * cluster-wide advisory lock keeps a sync by mfactl and this one apart. A
 * standby's node never syncs. Nothing of it blocks the event loop.
 */
#ifndef MFA_NODE_DIRSYNC_H
#define MFA_NODE_DIRSYNC_H

#include <event2/buffer.h>
#include <jansson.h>

#include "mem.h"
#include "node.h"

/* Sets up the schedule when directory.enabled; nothing otherwise. */
int dirsync_start(struct node *n, char **err) MFA_MUSTCHECK;

/* Starts a due sync when this node is on the writable primary. */
void dirsync_tick(struct node *n);

/* Waits for a sync in progress (bounded by directory.timeout_ms) and frees. */
void dirsync_stop(struct node *n);

/* "directory" of /status: enabled, last sync (time, result, counts), running. */
void dirsync_status(const struct node *n, json_t *status);
void dirsync_metrics(const struct node *n, struct evbuffer *out);

#endif
