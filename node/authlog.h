/*
 * The auth log of mfa-node (DESIGN §2): every decision is appended to the
 * node's local spool before the answer goes out, and shipped to the primary's
 * auth_log table in batches.
 *
 * Guarantees:
 * - authlog_append() returns after the record's line was written to the
 *   current spool segment with write(2): a killed process loses nothing.
 *   fsync runs in groups on the worker pool, off the loop, one at a time; a
 *   host crash loses at most the group not yet synced (see stats.synced_seq).
 * - Every record carries (node_id, boot_epoch, seq). boot_epoch is a counter
 *   kept in the spool directory and raised at every authlog_open(); seq
 *   counts from 1 within an epoch. Shipping inserts with ON CONFLICT ON
 *   CONSTRAINT auth_log_origin DO NOTHING, so a record sent twice (its
 *   acknowledgement was lost, the process died before it saved how far it
 *   got) is stored once.
 * - Records are shipped oldest first, previous epochs before the current
 *   one. The position "shipped up to (epoch, seq)" is saved after each
 *   acknowledged batch, and a segment is deleted once everything in it is
 *   shipped. While the primary is unreachable the spool grows; shipping
 *   resumes by itself, with backoff after failures.
 * - A torn or corrupt line (a host crash, a bad disk) is skipped and counted;
 *   it never stops shipping or crashes the process.
 *
 * Threading: everything here runs on the loop thread of the event_base given
 * to authlog_open(); the worker pool does the fsyncs and the segment reads.
 */
#ifndef MFA_AUTHLOG_H
#define MFA_AUTHLOG_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "authlog_record.h"
#include "mem.h"
#include "pgconn.h"
#include "worker.h"

struct authlog;

/*
 * One decision, as the caller knows it. Strings are borrowed for the call.
 * result must be "accepted", "rejected", "challenge" or "error" and method
 * non-empty, else the append fails. Every text field is made valid UTF-8
 * (a bad byte becomes U+FFFD) and cut at a character boundary to its bound
 * in authlog_record.h (username 128 bytes, method 32, reason 256,
 * server_name 128, challenge_id 64); NULL reads as "" (challenge_id: SQL
 * NULL). An address that is not a plain IPv4 or IPv6 address (NULL, a name,
 * a prefix) is stored as SQL NULL. at_ms is the wall clock in milliseconds
 * since 1970 UTC; 0 or less means now. No field may hold a secret (code,
 * PIN, seed).
 */
struct authlog_record {
    const char *username;
    const char *method;
    const char *result;
    const char *reason;
    const char *server_name;
    const char *server_ip;
    const char *client_ip;
    const char *challenge_id;
    int64_t at_ms;
};

/* 0 in a numeric field means the default in brackets. */
struct authlog_settings {
    const char *spool_dir; /* created (0700) if missing; one process at a time */
    const char *node_id;   /* a valid node id (ids.h) */
    int fsync_interval_ms; /* longest wait before a group's fsync starts [50] */
    int batch_max;         /* records per INSERT, 1 .. 5000 [500] */
    int ship_interval_ms;  /* wait after an append before shipping starts [200] */
    size_t segment_max;    /* bytes after which a new segment starts, >= 512 [4 MiB] */
};

struct authlog_stats {
    uint64_t boot_epoch;     /* this process's epoch */
    uint64_t last_seq;       /* seq of the last record appended (0: none yet) */
    uint64_t appended;       /* records appended by this process */
    uint64_t pending;        /* spool lines not yet acknowledged, all epochs */
    uint64_t shipped;        /* records the primary acknowledged (duplicates too) */
    uint64_t duplicates;     /* of those, already in auth_log (replays) */
    uint64_t ship_failures;  /* batches that failed (retried with backoff) */
    uint64_t dropped;        /* records the primary refused as invalid data */
    uint64_t corrupt;        /* spool lines skipped as unreadable (torn, garbage) */
    uint64_t synced_seq;     /* every record of this epoch up to here is fsynced */
    int64_t last_fsync_ms;   /* CLOCK_MONOTONIC ms when the last fsync group ended; 0: none */
    uint64_t fsync_failures; /* groups that failed (the next append starts a new segment) */
    uint64_t segments;       /* segment files in the spool */
};

/*
 * Opens (creating if needed) the spool in s->spool_dir and starts a new
 * epoch: reads the epoch counter, raises it and writes it back atomically
 * (tmp file, fsync, rename, fsync of the directory), takes the spool's lock
 * (a second process on the same directory is refused), reads the saved
 * shipping position and lists the segments left by earlier runs, counting
 * their lines. This does blocking file I/O and is meant for startup, before
 * the loop serves. A fresh spool starts its counter at the wall clock in
 * seconds, so a node that lost its spool (a reinstall under the same node
 * id) does not reuse an epoch already in auth_log; a missing or unreadable
 * counter beside existing spool files is recovered the same way (and
 * logged). <workers> must outlive the authlog. Nothing is shipped before
 * authlog_set_primary(). Returns the log, or NULL with *err.
 */
struct authlog *authlog_open(struct event_base *base, struct worker_pool *workers,
                             const struct authlog_settings *s, char **err) MFA_MUSTCHECK;

/*
 * Ships to <primary> from now on (NULL: hold; records keep collecting). May
 * be called again at any time. The authlog only queues on a connection that
 * pgconn_ready() says is up; a batch in flight on the previous connection
 * still completes or fails there. Call with NULL (or authlog_close()) before
 * pgconn_free() of the connection.
 */
void authlog_set_primary(struct authlog *al, struct pgconn *primary);

/*
 * Appends <r> to the spool; on return (0) its line is in the spool file (page
 * cache) and stats.last_seq is its seq. Returns -1 with *err when the record
 * is invalid (result, method; see struct authlog_record) or the spool cannot
 * be written (disk full, I/O error); nothing of it is then in the spool and
 * the caller must not answer "accepted".
 */
int authlog_append(struct authlog *al, const struct authlog_record *r, char **err) MFA_MUSTCHECK;

/* Copies the counters into *out. */
void authlog_get_stats(const struct authlog *al, struct authlog_stats *out);

/*
 * Stops shipping (a batch in flight is abandoned: it is sent again by the
 * next run and the unique key drops it if it was stored), fsyncs what was
 * appended (blocking: meant for shutdown), releases the lock and frees
 * everything. Jobs still on the worker pool finish there harmlessly. NULL is
 * fine.
 */
void authlog_close(struct authlog *al);

#endif
