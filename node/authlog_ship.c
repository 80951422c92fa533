/*
 * Shipping the auth log spool to the primary; see authlog.h.
 *
 * One batch at a time, as a small state machine (enum authlog_ship_state):
 * IDLE -> READING: a worker reads up to 1 MiB of the head segment from the
 * cursor, parses its lines (authlog_scan(): corrupt lines and a torn tail are
 * skipped, records at or below the shipped key are skipped) and renders up to
 * batch_max validated entries as one JSON array. READING -> SENDING: the
 * array goes to the primary as one INSERT ... SELECT FROM json_to_recordset()
 * ON CONFLICT ON CONSTRAINT auth_log_origin DO NOTHING, counting what was
 * really inserted. SENDING -> IDLE: on the acknowledgement the shipped key
 * and the cursor advance, the key is saved, a segment read to its end is
 * deleted, and the next batch starts at once if there is more. Any failure
 * goes to BACKOFF (250 ms doubling to 10 s) and the same records are read
 * again; nothing advances without an acknowledgement, so nothing is lost,
 * and the unique key makes a re-sent record a no-op.
 *
 * A batch the server refuses as bad data (SQLSTATE class 22 or 23: it cannot
 * succeed on a retry) is split: its records go one per batch, and a single
 * record still refused is dropped, logged and counted, so one poisoned line
 * never blocks the log behind it.
 *
 * Jobs outlive the authlog if they must: authlog_close() clears their <al>
 * and the worker's done callback or the pgconn callback frees them.
 */
#include "authlog_priv.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "log.h"

#define READ_CHUNK       ((size_t)1 << 20) /* > AUTHLOG_LINE_MAX, so every read progresses */
#define QUERY_TIMEOUT_MS 15000
#define POLL_MS          250 /* while the primary connection is down */
#define BACKOFF_MIN_MS   250
#define BACKOFF_MAX_MS   10000

static const char *const ship_state_names[] = {
    [AUTHLOG_SHIP_IDLE] = "idle",
    [AUTHLOG_SHIP_READING] = "reading",
    [AUTHLOG_SHIP_SENDING] = "sending",
    [AUTHLOG_SHIP_BACKOFF] = "backoff",
};

/*
 * json_to_recordset() maps the keys of the spool line onto the columns (it
 * ignores "v"); a JSON null becomes SQL NULL, so an absent address is NULL.
 */
static const char insert_sql[] =
    "WITH ins AS ("
    " INSERT INTO auth_log (node_id, boot_epoch, seq, at, username, method, result, reason,"
    "  server_name, server_ip, client_ip, challenge_id)"
    " SELECT r.node_id, r.boot_epoch, r.seq,"
    "  timestamptz 'epoch' + r.at_ms * interval '1 millisecond',"
    "  r.username, r.method, r.result, r.reason, r.server_name,"
    "  r.server_ip::inet, r.client_ip::inet, r.challenge_id"
    " FROM json_to_recordset($1::json) AS r(node_id text, boot_epoch bigint, seq bigint,"
    "  at_ms bigint, username text, method text, result text, reason text, server_name text,"
    "  server_ip text, client_ip text, challenge_id text)"
    " ORDER BY r.boot_epoch, r.seq"
    " ON CONFLICT ON CONSTRAINT auth_log_origin DO NOTHING"
    " RETURNING 1)"
    " SELECT count(*) FROM ins";

struct authlog_ship_job {
    struct authlog *al; /* NULL once the authlog is closed */
    /* what to read (copied on the loop; the worker touches nothing else) */
    struct authlog_segment *seg; /* identity only, never dereferenced off the loop */
    char *path;
    uint64_t offset, limit; /* limit: bytes appended to the active segment so far */
    bool active;
    uint64_t max_records;
    uint64_t wm_epoch, wm_seq;
    /* what was read */
    char *json; /* "[line,line,...]" */
    size_t json_len, json_cap;
    uint64_t count;
    uint64_t last_epoch, last_seq;
    uint64_t new_offset;
    uint64_t lines, corrupt;
    bool seg_done; /* read to the end of a segment that is no longer appended to */
    int error;     /* errno */
};

static void ship_job_free(struct authlog_ship_job *j)
{
    if (!j)
        return;
    free(j->path);
    free(j->json);
    free(j);
}

static bool key_le(uint64_t ae, uint64_t as, uint64_t be, uint64_t bs)
{
    return ae < be || (ae == be && as <= bs);
}

static bool key_lt(uint64_t ae, uint64_t as, uint64_t be, uint64_t bs)
{
    return ae < be || (ae == be && as < bs);
}

/* True when the spool holds lines the cursor has not passed. */
static bool has_data(const struct authlog *al)
{
    if (!al->head)
        return false;
    return !(al->head == al->active && al->cursor >= al->active_size);
}

static int json_reserve(struct authlog_ship_job *j, size_t more)
{
    size_t cap = j->json_cap ? j->json_cap : 65536;
    char *grown;

    if (j->json_len + more <= j->json_cap)
        return 0;
    while (cap < j->json_len + more)
        cap *= 2;
    if (!(grown = realloc(j->json, cap)))
        return -1;
    j->json = grown;
    j->json_cap = cap;
    return 0;
}

/* authlog_scan() callback on the worker: adds one entry to the batch. */
static int scan_take(void *arg, const struct authlog_entry *e)
{
    struct authlog_ship_job *j = arg;
    char line[AUTHLOG_LINE_MAX + 1];
    long len;

    if (key_le(e->boot_epoch, e->seq, j->wm_epoch, j->wm_seq))
        return 0; /* shipped before; the saved position lagged */
    len = authlog_entry_encode(e, line, sizeof(line), NULL);
    if (len < 0 || json_reserve(j, (size_t)len + 2) < 0) {
        j->error = ENOMEM;
        return -1;
    }
    j->json[j->json_len++] = j->count ? ',' : '[';
    memcpy(j->json + j->json_len, line, (size_t)len - 1); /* without the '\n' */
    j->json_len += (size_t)len - 1;
    j->count++;
    j->last_epoch = e->boot_epoch;
    j->last_seq = e->seq;
    return j->count >= j->max_records ? 1 : 0;
}

/* On a worker: reads the next batch; touches only the job. */
static void read_work(void *arg)
{
    struct authlog_ship_job *j = arg;
    struct authlog_scan_result res;
    struct stat st;
    uint64_t end, want, got = 0;
    char *buf = NULL;
    int fd;

    j->new_offset = j->offset;
    fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !j->active)
            j->seg_done = true; /* gone: nothing left to ship from it */
        else
            j->error = errno;
        return;
    }
    if (fstat(fd, &st) < 0) {
        j->error = errno;
        goto out;
    }
    end = (uint64_t)st.st_size;
    if (j->active && j->limit < end)
        end = j->limit;
    if (j->offset >= end) {
        j->seg_done = !j->active;
        goto out;
    }
    want = end - j->offset < READ_CHUNK ? end - j->offset : READ_CHUNK;
    if (!(buf = malloc(want))) {
        j->error = ENOMEM;
        goto out;
    }
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(j->offset + got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            j->error = errno;
            goto out;
        }
        if (n == 0)
            break;
        got += (uint64_t)n;
    }
    authlog_scan(buf, got, !j->active && j->offset + got >= (uint64_t)st.st_size, UINT64_MAX,
                 scan_take, j, &res);
    if (j->error)
        goto out;
    if (j->count > 0) {
        j->json[j->json_len++] = ']';
        j->json[j->json_len] = '\0';
    }
    j->new_offset = j->offset + res.consumed;
    j->lines = res.lines;
    j->corrupt = res.corrupt;
    j->seg_done = !j->active && j->new_offset >= (uint64_t)st.st_size;
out:
    free(buf);
    close(fd);
}

static void ship_schedule(struct authlog *al, int delay_ms)
{
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };

    evtimer_add(al->ship_timer, &tv);
}

void authlog_ship_kick(struct authlog *al, int delay_ms)
{
    if (al->ship_state != AUTHLOG_SHIP_IDLE || evtimer_pending(al->ship_timer, NULL))
        return;
    ship_schedule(al, delay_ms);
}

static void ship_failed(struct authlog *al, const char *why)
{
    al->stats.ship_failures++;
    if (!al->backoff_ms)
        log_warn("authlog.ship_failed dir=%s pending=%" PRIu64 " error=%s", al->dir,
                 al->stats.pending, why);
    al->backoff_ms = al->backoff_ms ? al->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (al->backoff_ms > BACKOFF_MAX_MS)
        al->backoff_ms = BACKOFF_MAX_MS;
    al->ship_state = AUTHLOG_SHIP_BACKOFF;
    evtimer_del(al->ship_timer);
    ship_schedule(al, al->backoff_ms);
}

/* Moves the cursor past what job <j> read; drops the segment it finished. */
static void apply_progress(struct authlog *al, const struct authlog_ship_job *j)
{
    if (al->head != j->seg)
        return; /* cannot happen: only this function moves the head */
    al->cursor = j->new_offset;
    al->stats.pending = al->stats.pending > j->lines ? al->stats.pending - j->lines : 0;
    if (j->corrupt) {
        al->stats.corrupt += j->corrupt;
        log_warn("authlog.corrupt_lines path=%s lines=%" PRIu64, j->seg->path, j->corrupt);
    }
    if (j->seg_done)
        authlog_segment_drop_head(al);
}

/* After a step: on at once if there is more, else wait for the next append. */
static void ship_continue(struct authlog *al)
{
    al->ship_state = AUTHLOG_SHIP_IDLE;
    if (has_data(al))
        authlog_ship_kick(al, 0);
    else
        al->stats.pending = 0; /* everything is read: no estimate can say otherwise */
}

static void batch_done(void *arg, const PGresult *res, const char *err)
{
    struct authlog_ship_job *j = arg;
    struct authlog *al = j->al;
    uint64_t inserted = 0;
    char sqlstate[6];

    if (!al) {
        ship_job_free(j);
        return;
    }
    al->ship_job = NULL;
    if (err) {
        bool bad_data = pgconn_err_sqlstate(err, sqlstate) && sqlstate[0] == '2' &&
                        (sqlstate[1] == '2' || sqlstate[1] == '3');

        if (!bad_data || j->count > 1) {
            if (bad_data) {
                /* find the culprit: one record per batch up to this batch's end */
                al->isolate_epoch = j->last_epoch;
                al->isolate_seq = j->last_seq;
                al->stats.ship_failures++;
                log_warn("authlog.batch_refused dir=%s records=%" PRIu64 " error=%s", al->dir,
                         j->count, err);
                al->ship_state = AUTHLOG_SHIP_IDLE;
                authlog_ship_kick(al, 0);
            } else {
                ship_failed(al, err);
            }
            ship_job_free(j);
            return;
        }
        al->stats.dropped++;
        log_error("authlog.record_dropped node=%s epoch=%" PRIu64 " seq=%" PRIu64 " error=%s",
                  al->node_id, j->last_epoch, j->last_seq, err);
    } else {
        inserted = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        al->stats.shipped += j->count;
        al->stats.duplicates += j->count > inserted ? j->count - inserted : 0;
    }
    if (al->backoff_ms)
        log_info("authlog.ship_resumed dir=%s", al->dir);
    al->backoff_ms = 0;
    al->wm_epoch = j->last_epoch;
    al->wm_seq = j->last_seq;
    apply_progress(al, j);
    /*
     * A lost position only re-sends what the unique key drops, so while
     * batches stream it is saved at most once a second (a rename per batch
     * costs more than the batch); when shipping has caught up, and at close,
     * it is saved at once.
     */
    if (al->stats.pending == 0 || clock_mono_ms() - al->position_saved_ms >= 1000) {
        authlog_position_save(al);
        al->position_saved_ms = clock_mono_ms();
    }
    ship_job_free(j);
    ship_continue(al);
}

static void read_done(void *arg)
{
    struct authlog_ship_job *j = arg;
    struct authlog *al = j->al;
    const char *params[1];
    char *err = NULL;

    if (!al) {
        ship_job_free(j);
        return;
    }
    if (j->error) {
        char why[300];

        snprintf(why, sizeof(why), "cannot read %s: %s", j->path, strerror(j->error));
        al->ship_job = NULL;
        ship_job_free(j);
        ship_failed(al, why);
        return;
    }
    if (j->count == 0) {
        bool moved = j->new_offset != j->offset || j->seg_done;

        apply_progress(al, j);
        al->ship_job = NULL;
        ship_job_free(j);
        if (moved) {
            ship_continue(al);
        } else {
            /* read up to the appends made before the job; later ones kicked in vain */
            al->ship_state = AUTHLOG_SHIP_IDLE;
            if (has_data(al))
                authlog_ship_kick(al, al->ship_interval_ms);
        }
        return;
    }
    if (!al->primary || !pgconn_ready(al->primary)) {
        /* read again later; nothing advanced */
        al->ship_job = NULL;
        ship_job_free(j);
        al->ship_state = AUTHLOG_SHIP_IDLE;
        if (al->primary)
            authlog_ship_kick(al, POLL_MS);
        return;
    }
    params[0] = j->json;
    if (pgconn_query(al->primary, insert_sql, 1, params, PGCONN_SYNC_DEFAULT, QUERY_TIMEOUT_MS,
                     batch_done, j, &err) < 0) {
        al->ship_job = NULL;
        ship_job_free(j);
        ship_failed(al, err ? err : "cannot queue the batch");
        mfa_free(err);
        return;
    }
    al->ship_state = AUTHLOG_SHIP_SENDING;
}

static void ship_start(struct authlog *al)
{
    struct authlog_ship_job *j;

    if (al->ship_state == AUTHLOG_SHIP_READING || al->ship_state == AUTHLOG_SHIP_SENDING)
        return;
    al->ship_state = AUTHLOG_SHIP_IDLE;
    if (!has_data(al)) {
        al->stats.pending = 0;
        return;
    }
    if (!al->primary)
        return; /* authlog_set_primary() kicks */
    if (!pgconn_ready(al->primary)) {
        authlog_ship_kick(al, POLL_MS);
        return;
    }
    if (!(j = calloc(1, sizeof(*j))) || !(j->path = strdup(al->head->path))) {
        ship_job_free(j);
        ship_failed(al, "out of memory");
        return;
    }
    j->al = al;
    j->seg = al->head;
    j->offset = al->cursor;
    j->active = al->head == al->active;
    j->limit = j->active ? al->active_size : UINT64_MAX;
    j->wm_epoch = al->wm_epoch;
    j->wm_seq = al->wm_seq;
    j->max_records = key_lt(al->wm_epoch, al->wm_seq, al->isolate_epoch, al->isolate_seq)
                         ? 1
                         : (uint64_t)al->batch_max;
    if (worker_submit(al->workers, read_work, read_done, j) < 0) {
        ship_job_free(j);
        ship_failed(al, "the worker pool refused the job");
        return;
    }
    al->ship_job = j;
    al->ship_state = AUTHLOG_SHIP_READING;
}

static void on_ship_timer(evutil_socket_t fd, short what, void *arg)
{
    struct authlog *al = arg;

    (void)fd;
    (void)what;
    log_debug("authlog.ship_tick state=%s pending=%" PRIu64, ship_state_names[al->ship_state],
              al->stats.pending);
    ship_start(al);
}

int authlog_ship_init(struct authlog *al, char **err)
{
    al->ship_timer = evtimer_new(al->base, on_ship_timer, al);
    if (!al->ship_timer)
        return err_set(err, "out of memory");
    return 0;
}

void authlog_ship_stop(struct authlog *al)
{
    if (al->ship_job)
        al->ship_job->al = NULL;
    al->ship_job = NULL;
    if (al->ship_timer)
        event_free(al->ship_timer);
    al->ship_timer = NULL;
}
