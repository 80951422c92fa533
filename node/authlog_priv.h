/*
 * The auth log's internals, shared by authlog.c (the spool: epoch, segments,
 * appends, fsync groups) and authlog_ship.c (reading the spool back and
 * shipping it). Not for other callers: use authlog.h.
 *
 * The spool directory holds:
 *
 *     lock                      flock()ed by the process that has it open
 *     epoch                     the boot epoch counter, "<n>\n"
 *     shipped                   "<epoch> <seq>\n": every record up to this key
 *                               was acknowledged by the primary
 *     seg-<epoch>-<seq>.jsonl   a segment: the lines of one epoch from seq on
 *                               (both numbers 20 digits, so names sort)
 *
 * Segments form a list oldest first. The shipping cursor is the head
 * segment and a byte offset in it; the tail is the active segment (the one
 * appended to) once this epoch has appended. A segment is deleted when the
 * cursor has passed its end and it is no longer active.
 */
#ifndef MFA_AUTHLOG_PRIV_H
#define MFA_AUTHLOG_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "authlog.h"

#define AUTHLOG_SEG_PREFIX   "seg-"
#define AUTHLOG_SEG_SUFFIX   ".jsonl"
#define AUTHLOG_SEG_NAME_LEN (4 + 20 + 1 + 20 + 6)

struct authlog_segment {
    struct authlog_segment *next;
    uint64_t epoch;     /* from the name */
    uint64_t first_seq; /* from the name */
    char *path;
};

enum authlog_ship_state {
    AUTHLOG_SHIP_IDLE = 0, /* nothing under way (the ship timer may be armed) */
    AUTHLOG_SHIP_READING,  /* a worker reads the next batch from the spool */
    AUTHLOG_SHIP_SENDING,  /* the batch's INSERT is on the primary connection */
    AUTHLOG_SHIP_BACKOFF,  /* waiting after a failure */
};

struct authlog_fsync_job;
struct authlog_ship_job;

struct authlog {
    struct event_base *base;
    struct worker_pool *workers;
    char *dir;
    char node_id[NODE_ID_MAX + 1];
    int dirfd;  /* the spool directory, for fsync */
    int lockfd; /* holds the flock */
    int fsync_interval_ms, batch_max, ship_interval_ms;
    size_t segment_max;

    uint64_t epoch;
    uint64_t seq; /* last assigned */

    /* segments, oldest first; <active> is the tail once created */
    struct authlog_segment *head, *tail, *active;
    int fd;               /* the active segment, O_APPEND; -1 before the first append */
    uint64_t active_size; /* bytes of whole lines in it */
    bool need_rotate;     /* the active segment is unusable (failed write or fsync) */

    /* fsync groups */
    struct event *fsync_timer;
    struct authlog_fsync_job *fsync_job; /* the one in flight, or NULL */
    bool dirty;                          /* appended since the last group started */
    bool dir_dirty;                      /* a segment was created since then */
    int *retired;                        /* fds of rotated segments not yet synced */
    size_t nretired, retired_cap;

    /* shipping */
    struct pgconn *primary;
    struct event *ship_timer;
    enum authlog_ship_state ship_state;
    struct authlog_ship_job *ship_job;   /* the one in flight, or NULL */
    uint64_t wm_epoch, wm_seq;           /* shipped up to this key */
    uint64_t cursor;                     /* byte offset in <head> */
    uint64_t isolate_epoch, isolate_seq; /* ship one record per batch up to this key */
    int backoff_ms;
    bool position_warned;
    uint64_t position_saved_ms; /* monotonic; the position is saved at most once a second */

    struct authlog_stats stats;
};

/* CLOCK_MONOTONIC in milliseconds. */
int64_t authlog_now_ms(void);

/* Arms the ship timer to fire in <delay_ms> unless shipping is under way or it is armed sooner. */
void authlog_ship_kick(struct authlog *al, int delay_ms);

/* Sets up the ship timer; 0, or -1 with *err. */
int authlog_ship_init(struct authlog *al, char **err) MFA_MUSTCHECK;

/* Abandons the job in flight (it frees itself when it comes back) and frees the timer. */
void authlog_ship_stop(struct authlog *al);

/* Removes the head segment (unlinks its file). */
void authlog_segment_drop_head(struct authlog *al);

/*
 * Saves the shipping position "<epoch> <seq>" (tmp file and rename, no fsync:
 * losing it only re-sends records the unique key drops). Returns 0 or -1.
 */
int authlog_position_save(struct authlog *al);

#endif
