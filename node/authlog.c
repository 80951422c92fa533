/*
 * The auth log's spool: the epoch counter, segment files, appends and fsync
 * groups; see authlog.h for the contract and authlog_priv.h for the layout.
 *
 * An append assigns the next seq, encodes the line and writes it with one
 * write(2) to the active segment (O_APPEND) on the loop: once it returns, the
 * line survives the death of the process. A write that fails is cut off
 * again with ftruncate(), so the segment only ever holds whole lines; if even
 * that fails, the segment is left behind (its torn tail is skipped when read)
 * and the next append starts a new one.
 *
 * Durability against a host crash comes from fsync groups: the first append
 * after a group arms a timer (fsync_interval_ms); when it fires, one job on
 * the worker pool fsyncs the active segment, the segments rotated out since
 * the last group, and the directory if a segment was created. At most one
 * group is in flight; appends made meanwhile form the next group, which
 * starts when the previous one returns. stats.synced_seq and
 * stats.last_fsync_ms say how far it got.
 */
#include "authlog_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "log.h"

#define DEFAULT_FSYNC_INTERVAL_MS 50
#define DEFAULT_BATCH_MAX         500
#define MAX_BATCH_MAX             5000
#define DEFAULT_SHIP_INTERVAL_MS  200
#define DEFAULT_SEGMENT_MAX       ((size_t)4 << 20)
#define MIN_SEGMENT_MAX           512

/* An fsync group: owns its file descriptors (dups or rotated-out segments). */
struct authlog_fsync_job {
    struct authlog *al; /* NULL once the authlog is closed */
    int *fds;
    size_t nfds;
    int dirfd; /* -1: the directory needs no fsync */
    uint64_t upto_seq;
    int64_t started_ms;
    int error; /* errno of the first failure, 0 if none */
};

int64_t authlog_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Writes all of <buf>; returns 0 or -1 with errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Reads a small file of <dir> whose content is <n> decimal numbers (1 .. 2)
 * separated by one space and ending in an optional '\n'. Returns 1 with the
 * numbers in <out>, 0 when the file does not exist, or -1 when it cannot be
 * read or is malformed (*err says which).
 */
static int read_numbers(int dirfd, const char *name, uint64_t *out, int n, char **err)
{
    char buf[128], *p;
    ssize_t len;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0)
        return err_set(err, "cannot open %s: %s", name, strerror(errno));
    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len < 0)
        return err_set(err, "cannot read %s: %s", name, strerror(errno));
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    p = buf;
    for (int i = 0; i < n; i++) {
        char *end;
        unsigned long long v;

        if (i > 0 && *p++ != ' ')
            return err_set(err, "%s is malformed", name);
        if (*p < '0' || *p > '9')
            return err_set(err, "%s is malformed", name);
        errno = 0;
        v = strtoull(p, &end, 10);
        if (errno != 0 || v > (unsigned long long)INT64_MAX)
            return err_set(err, "%s is malformed", name);
        out[i] = v;
        p = end;
    }
    if (*p != '\0')
        return err_set(err, "%s is malformed", name);
    return 1;
}

/* Writes <text> to <dir>/<name> through <name>.tmp and rename; with <sync>, fsyncs both. */
static int write_file_atomic(struct authlog *al, const char *name, const char *text, bool sync,
                             char **err)
{
    char tmp[64];
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    fd = openat(al->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(err, "cannot create %s/%s: %s", al->dir, tmp, strerror(errno));
    if (write_all(fd, text, strlen(text)) < 0 || (sync && fsync(fd) < 0)) {
        err_set(err, "cannot write %s/%s: %s", al->dir, tmp, strerror(errno));
        close(fd);
        unlinkat(al->dirfd, tmp, 0);
        return -1;
    }
    if (close(fd) < 0) {
        err_set(err, "cannot write %s/%s: %s", al->dir, tmp, strerror(errno));
        unlinkat(al->dirfd, tmp, 0);
        return -1;
    }
    if (renameat(al->dirfd, tmp, al->dirfd, name) < 0) {
        err_set(err, "cannot rename %s/%s: %s", al->dir, tmp, strerror(errno));
        unlinkat(al->dirfd, tmp, 0);
        return -1;
    }
    if (sync && fsync(al->dirfd) < 0)
        return err_set(err, "cannot fsync %s: %s", al->dir, strerror(errno));
    return 0;
}

int authlog_position_save(struct authlog *al)
{
    char text[64], *err = NULL;

    snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64 "\n", al->wm_epoch, al->wm_seq);
    if (write_file_atomic(al, "shipped", text, false, &err) < 0) {
        if (!al->position_warned)
            log_warn("authlog.position_not_saved dir=%s error=%s", al->dir, err);
        al->position_warned = true;
        mfa_free(err);
        return -1;
    }
    al->position_warned = false;
    return 0;
}

/* ---- segments ---- */

/* Parses a segment file name; returns true with its epoch and first seq. */
static bool segment_name_parse(const char *name, uint64_t *epoch, uint64_t *seq)
{
    uint64_t v[2] = { 0, 0 };
    const char *p = name + strlen(AUTHLOG_SEG_PREFIX);

    if (strlen(name) != AUTHLOG_SEG_NAME_LEN ||
        strncmp(name, AUTHLOG_SEG_PREFIX, strlen(AUTHLOG_SEG_PREFIX)) != 0 ||
        strcmp(name + AUTHLOG_SEG_NAME_LEN - strlen(AUTHLOG_SEG_SUFFIX), AUTHLOG_SEG_SUFFIX) != 0)
        return false;
    for (int i = 0; i < 2; i++) {
        for (int d = 0; d < 20; d++, p++) {
            if (*p < '0' || *p > '9' || v[i] > (UINT64_MAX - 9) / 10)
                return false;
            v[i] = v[i] * 10 + (uint64_t)(*p - '0');
        }
        if (i == 0 && *p++ != '-')
            return false;
    }
    if (v[0] < 1 || v[0] > (uint64_t)INT64_MAX || v[1] < 1 || v[1] > (uint64_t)INT64_MAX)
        return false;
    *epoch = v[0];
    *seq = v[1];
    return true;
}

static struct authlog_segment *segment_new(const char *dir, uint64_t epoch, uint64_t seq)
{
    struct authlog_segment *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->epoch = epoch;
    s->first_seq = seq;
    if (asprintf(&s->path, "%s/" AUTHLOG_SEG_PREFIX "%020" PRIu64 "-%020" PRIu64 AUTHLOG_SEG_SUFFIX,
                 dir, epoch, seq) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void segment_free(struct authlog_segment *s)
{
    if (!s)
        return;
    free(s->path);
    free(s);
}

static void segment_append(struct authlog *al, struct authlog_segment *s)
{
    if (al->tail)
        al->tail->next = s;
    else
        al->head = s;
    al->tail = s;
    al->stats.segments++;
}

void authlog_segment_drop_head(struct authlog *al)
{
    struct authlog_segment *s = al->head;

    if (!s || s == al->active)
        return;
    if (unlink(s->path) < 0 && errno != ENOENT)
        log_warn("authlog.segment_not_removed path=%s error=%s", s->path, strerror(errno));
    al->head = s->next;
    if (al->tail == s)
        al->tail = NULL;
    al->stats.segments--;
    al->cursor = 0;
    segment_free(s);
}

static int segment_cmp(const void *a, const void *b)
{
    const struct authlog_segment *x = *(struct authlog_segment *const *)a;
    const struct authlog_segment *y = *(struct authlog_segment *const *)b;

    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    if (x->first_seq != y->first_seq)
        return x->first_seq < y->first_seq ? -1 : 1;
    return 0;
}

/*
 * Counts the lines of a segment: its '\n's, plus one for a partial last line.
 * Returns 0, or -1 with *err.
 */
static int segment_count_lines(const char *path, uint64_t *lines, char **err)
{
    char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    char last = '\n';

    *lines = 0;
    if (fd < 0)
        return err_set(err, "cannot open %s: %s", path, strerror(errno));
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err_set(err, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))); p++)
            (*lines)++;
        last = buf[n - 1];
    }
    close(fd);
    if (last != '\n')
        (*lines)++;
    return 0;
}

/*
 * Lists the segments of earlier runs into the list, oldest first, removes
 * leftover tmp files and sets *max_epoch to the highest epoch seen.
 */
static int segments_load(struct authlog *al, uint64_t *max_epoch, char **err)
{
    struct authlog_segment **v = NULL, **grown;
    size_t n = 0, cap = 0;
    DIR *d;
    struct dirent *e;
    int dfd = dup(al->dirfd);

    *max_epoch = 0;
    if (dfd < 0 || !(d = fdopendir(dfd))) {
        if (dfd >= 0)
            close(dfd);
        return err_set(err, "cannot list %s: %s", al->dir, strerror(errno));
    }
    while ((e = readdir(d))) {
        uint64_t epoch, seq;
        struct authlog_segment *s;

        if (strcmp(e->d_name, "epoch.tmp") == 0 || strcmp(e->d_name, "shipped.tmp") == 0) {
            unlinkat(al->dirfd, e->d_name, 0);
            continue;
        }
        if (!segment_name_parse(e->d_name, &epoch, &seq))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            grown = realloc(v, cap * sizeof(*v));
            if (!grown)
                goto oom;
            v = grown;
        }
        if (!(s = segment_new(al->dir, epoch, seq)))
            goto oom;
        v[n++] = s;
        if (epoch > *max_epoch)
            *max_epoch = epoch;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof(*v), segment_cmp);
    for (size_t i = 0; i < n; i++)
        segment_append(al, v[i]);
    free(v);
    return 0;
oom:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        segment_free(v[i]);
    free(v);
    return err_set(err, "out of memory");
}

/*
 * Starts a new active segment whose first record is seq <seq>: the previous
 * one's fd goes to the next fsync group, which also syncs the directory.
 */
static int segment_rotate(struct authlog *al, uint64_t seq, char **err)
{
    struct authlog_segment *s = segment_new(al->dir, al->epoch, seq);
    int fd;

    if (!s)
        return err_set(err, "out of memory");
    if (al->nretired == al->retired_cap) {
        size_t cap = al->retired_cap ? al->retired_cap * 2 : 8;
        int *grown = realloc(al->retired, cap * sizeof(*grown));

        if (!grown) {
            segment_free(s);
            return err_set(err, "out of memory");
        }
        al->retired = grown;
        al->retired_cap = cap;
    }
    fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(err, "cannot create spool segment %s: %s", s->path, strerror(errno));
        segment_free(s);
        return -1;
    }
    if (al->fd >= 0)
        al->retired[al->nretired++] = al->fd;
    al->fd = fd;
    al->active = s;
    al->active_size = 0;
    al->need_rotate = false;
    al->dir_dirty = true;
    al->dirty = true;
    segment_append(al, s);
    return 0;
}

/* ---- fsync groups ---- */

static void fsync_work(void *arg)
{
    struct authlog_fsync_job *j = arg;

    for (size_t i = 0; i < j->nfds; i++) {
        if (fsync(j->fds[i]) < 0 && !j->error)
            j->error = errno;
        close(j->fds[i]);
    }
    if (j->dirfd >= 0) {
        if (fsync(j->dirfd) < 0 && !j->error)
            j->error = errno;
        close(j->dirfd);
    }
}

static void fsync_job_free(struct authlog_fsync_job *j)
{
    free(j->fds);
    free(j);
}

static void fsync_schedule(struct authlog *al, int delay_ms)
{
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };

    if (al->fsync_job || evtimer_pending(al->fsync_timer, NULL))
        return;
    evtimer_add(al->fsync_timer, &tv);
}

static void fsync_done(void *arg)
{
    struct authlog_fsync_job *j = arg;
    struct authlog *al = j->al;
    int64_t took;

    if (!al) {
        fsync_job_free(j);
        return;
    }
    al->fsync_job = NULL;
    if (j->error) {
        al->stats.fsync_failures++;
        al->need_rotate = true; /* the kernel may have dropped the pages: start afresh */
        log_error("authlog.fsync_failed dir=%s error=%s", al->dir, strerror(j->error));
    } else {
        al->stats.synced_seq = j->upto_seq;
    }
    al->stats.last_fsync_ms = authlog_now_ms();
    took = al->stats.last_fsync_ms - j->started_ms;
    fsync_job_free(j);
    if (al->dirty)
        fsync_schedule(al, took >= al->fsync_interval_ms ? 0 : al->fsync_interval_ms - (int)took);
}

/* Starts a group with everything appended so far (none if one is in flight). */
static void fsync_start(struct authlog *al)
{
    struct authlog_fsync_job *j;

    if (al->fsync_job || !al->dirty)
        return;
    j = calloc(1, sizeof(*j));
    if (!j || !(j->fds = calloc(al->nretired + 1, sizeof(int))))
        goto oom;
    j->al = al;
    j->dirfd = -1;
    j->upto_seq = al->seq;
    j->started_ms = authlog_now_ms();
    if (al->fd >= 0 && (j->fds[j->nfds] = dup(al->fd)) >= 0)
        j->nfds++;
    else if (al->fd >= 0)
        j->error = errno;
    if (al->dir_dirty && (j->dirfd = dup(al->dirfd)) < 0)
        j->error = errno;
    for (size_t i = 0; i < al->nretired; i++)
        j->fds[j->nfds++] = al->retired[i];
    al->nretired = 0;
    al->dirty = false;
    al->dir_dirty = false;
    al->fsync_job = j;
    if (worker_submit(al->workers, fsync_work, fsync_done, j) < 0) {
        /* the pool is going away: do it here rather than not at all */
        fsync_work(j);
        fsync_done(j);
    }
    return;
oom:
    if (j)
        fsync_job_free(j);
    log_error("authlog.fsync_failed dir=%s error=%s", al->dir, "out of memory");
    fsync_schedule(al, al->fsync_interval_ms);
}

static void on_fsync_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fsync_start(arg);
}

/* ---- open, append, close ---- */

/* The epoch to start: see authlog_open() in authlog.h. */
static int epoch_next(struct authlog *al, uint64_t seen_max, uint64_t *out, char **err)
{
    uint64_t stored = 0, now_s = (uint64_t)(wall_ms() / 1000);
    char *why = NULL;
    int rc = read_numbers(al->dirfd, "epoch", &stored, 1, &why);

    if (rc == 1 && stored >= seen_max) {
        *out = stored + 1;
    } else if (rc == 1) {
        log_warn("authlog.epoch_behind dir=%s stored=%" PRIu64 " seen=%" PRIu64, al->dir, stored,
                 seen_max);
        *out = seen_max + 1;
    } else if (rc == 0 && seen_max == 0) {
        *out = now_s > 0 ? now_s : 1; /* a fresh spool */
    } else {
        log_warn("authlog.epoch_recovered dir=%s seen=%" PRIu64 " error=%s", al->dir, seen_max,
                 why ? why : "epoch file missing beside spool files");
        *out = seen_max + 1 > now_s ? seen_max + 1 : now_s;
    }
    mfa_free(why);
    if (*out > (uint64_t)INT64_MAX)
        return err_set(err, "%s/epoch: the boot epoch counter is exhausted", al->dir);
    return 0;
}

struct authlog *authlog_open(struct event_base *base, struct worker_pool *workers,
                             const struct authlog_settings *s, char **err)
{
    struct authlog *al = NULL;
    uint64_t seen = 0, pos[2] = { 0, 0 };
    char text[32], *why = NULL;

    if (!base || !workers || !s || !s->spool_dir || !*s->spool_dir) {
        err_set(err, "authlog: event base, worker pool and spool_dir are required");
        return NULL;
    }
    if (!node_id_valid(s->node_id)) {
        err_set(err, "authlog: node_id is not a valid node id");
        return NULL;
    }
    if (s->fsync_interval_ms < 0 || s->ship_interval_ms < 0 || s->batch_max < 0 ||
        s->batch_max > MAX_BATCH_MAX || (s->segment_max && s->segment_max < MIN_SEGMENT_MAX)) {
        err_set(err, "authlog: settings out of range");
        return NULL;
    }
    if (!(al = calloc(1, sizeof(*al))) || !(al->dir = strdup(s->spool_dir))) {
        err_set(err, "out of memory");
        goto fail;
    }
    al->base = base;
    al->workers = workers;
    al->dirfd = al->lockfd = al->fd = -1;
    snprintf(al->node_id, sizeof(al->node_id), "%s", s->node_id);
    al->fsync_interval_ms = s->fsync_interval_ms ? s->fsync_interval_ms : DEFAULT_FSYNC_INTERVAL_MS;
    al->batch_max = s->batch_max ? s->batch_max : DEFAULT_BATCH_MAX;
    al->ship_interval_ms = s->ship_interval_ms ? s->ship_interval_ms : DEFAULT_SHIP_INTERVAL_MS;
    al->segment_max = s->segment_max ? s->segment_max : DEFAULT_SEGMENT_MAX;

    if (mkdir(al->dir, 0700) < 0 && errno != EEXIST) {
        err_set(err, "cannot create spool directory %s: %s", al->dir, strerror(errno));
        goto fail;
    }
    al->dirfd = open(al->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (al->dirfd < 0) {
        err_set(err, "cannot open spool directory %s: %s", al->dir, strerror(errno));
        goto fail;
    }
    al->lockfd = openat(al->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (al->lockfd < 0 || flock(al->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            err_set(err, "spool %s is in use by another process", al->dir);
        else
            err_set(err, "cannot lock spool %s: %s", al->dir, strerror(errno));
        goto fail;
    }
    if (segments_load(al, &seen, err) < 0)
        goto fail;
    if (read_numbers(al->dirfd, "shipped", pos, 2, &why) < 0) {
        /* re-sending everything is safe: the unique key drops what is stored */
        log_warn("authlog.position_reset dir=%s error=%s", al->dir, why);
        mfa_free(why);
        pos[0] = pos[1] = 0;
    }
    al->wm_epoch = pos[0];
    al->wm_seq = pos[1];
    if (pos[0] > seen)
        seen = pos[0];
    if (epoch_next(al, seen, &al->epoch, err) < 0)
        goto fail;
    snprintf(text, sizeof(text), "%" PRIu64 "\n", al->epoch);
    if (write_file_atomic(al, "epoch", text, true, err) < 0)
        goto fail;
    al->stats.boot_epoch = al->epoch;

    for (struct authlog_segment *g = al->head; g; g = g->next) {
        uint64_t lines;

        if (segment_count_lines(g->path, &lines, err) < 0)
            goto fail;
        al->stats.pending += lines;
    }
    al->fsync_timer = evtimer_new(base, on_fsync_timer, al);
    if (!al->fsync_timer) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (authlog_ship_init(al, err) < 0)
        goto fail;
    return al;
fail:
    authlog_close(al);
    return NULL;
}

void authlog_set_primary(struct authlog *al, struct pgconn *primary)
{
    al->primary = primary;
    if (primary)
        authlog_ship_kick(al, 0);
}

int authlog_append(struct authlog *al, const struct authlog_record *r, char **err)
{
    struct authlog_entry e;
    char line[AUTHLOG_LINE_MAX + 1];
    long len;

    memset(&e, 0, sizeof(e));
    if (!authlog_result_valid(r->result))
        return err_set(err, "auth log: result must be accepted, rejected, challenge or error");
    if (!r->method || !*r->method)
        return err_set(err, "auth log: method is required");
    memcpy(e.node_id, al->node_id, sizeof(e.node_id));
    e.boot_epoch = al->epoch;
    e.seq = al->seq + 1;
    e.at_ms = r->at_ms > 0 ? r->at_ms : wall_ms();
    if (e.at_ms > AUTHLOG_AT_MS_MAX)
        return err_set(err, "auth log: at_ms is out of range");
    authlog_text_copy(e.username, sizeof(e.username), r->username);
    authlog_text_copy(e.method, sizeof(e.method), r->method);
    snprintf(e.result, sizeof(e.result), "%s", r->result);
    authlog_text_copy(e.reason, sizeof(e.reason), r->reason);
    authlog_text_copy(e.server_name, sizeof(e.server_name), r->server_name);
    authlog_ip_copy(e.server_ip, r->server_ip);
    authlog_ip_copy(e.client_ip, r->client_ip);
    authlog_text_copy(e.challenge_id, sizeof(e.challenge_id), r->challenge_id);
    len = authlog_entry_encode(&e, line, sizeof(line), err);
    if (len < 0)
        return err_prefix(err, "auth log");

    if (!al->active || al->need_rotate ||
        (al->active_size > 0 && al->active_size + (uint64_t)len > al->segment_max)) {
        if (segment_rotate(al, e.seq, err) < 0)
            return -1;
    }
    if (write_all(al->fd, line, (size_t)len) < 0) {
        int saved = errno;

        /* leave only whole lines behind; if that fails too, start a new segment */
        if (ftruncate(al->fd, (off_t)al->active_size) < 0) {
            al->need_rotate = true;
            al->seq++; /* the torn line may hold this seq: never reuse it */
        }
        return err_set(err, "cannot write auth log spool %s: %s", al->active->path,
                       strerror(saved));
    }
    al->seq = e.seq;
    al->active_size += (uint64_t)len;
    al->dirty = true;
    al->stats.last_seq = e.seq;
    al->stats.appended++;
    al->stats.pending++;
    fsync_schedule(al, al->fsync_interval_ms);
    authlog_ship_kick(al, al->ship_interval_ms);
    return 0;
}

void authlog_get_stats(const struct authlog *al, struct authlog_stats *out)
{
    *out = al->stats;
}

/*
 * fsyncs, by path, every segment of this epoch that may hold a record after
 * stats.synced_seq, and the directory: what close needs when a group may still
 * be in flight on the pool with the descriptors it owns.
 */
static void flush_epoch(struct authlog *al)
{
    for (struct authlog_segment *s = al->head; s; s = s->next) {
        int fd;

        if (s->epoch != al->epoch || (s->next && s->next->first_seq <= al->stats.synced_seq + 1))
            continue;
        fd = open(s->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            log_error("authlog.fsync_failed path=%s error=%s", s->path, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    if (fsync(al->dirfd) < 0)
        log_error("authlog.fsync_failed dir=%s error=%s", al->dir, strerror(errno));
}

void authlog_close(struct authlog *al)
{
    struct authlog_segment *s;

    if (!al)
        return;
    authlog_ship_stop(al);
    authlog_position_save(al); /* shipping saves it at most once a second */
    if (al->fsync_timer)
        event_free(al->fsync_timer);
    if (al->fsync_job)
        al->fsync_job->al = NULL; /* it syncs and closes its own fds, then frees itself */
    for (size_t i = 0; i < al->nretired; i++)
        close(al->retired[i]);
    close_fd(&al->fd);
    if (al->dirfd >= 0 && al->stats.synced_seq < al->seq)
        flush_epoch(al);
    close_fd(&al->dirfd);
    close_fd(&al->lockfd); /* releases the flock */
    while ((s = al->head)) {
        al->head = s->next;
        segment_free(s);
    }
    free(al->retired);
    free(al->dir);
    free(al);
}
