/*
 * Directory password checks on the worker pool; see auth_dirbind.h.
 *
 * A check is in one of two lists: waiting (in order) or running (submitted
 * to the pool). The pool's done callback is the only way out of running; a
 * check the queue let go of at shutdown (its queue pointer NULL) is only
 * freed there. The loop thread owns both lists and the timer; the worker
 * touches only its check's copy of the settings, DN and password.
 */
#include "auth_dirbind.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "clock.h"
#include "directory.h"
#include "secrets.h"
#include "userfields.h"
#include "worker.h"

struct bind {
    TAILQ_ENTRY(bind) link;
    struct dirbind *q; /* NULL once dirbind_free() let go of it */
    dirbind_done_fn done;
    void *arg;
    /*
     * The directory settings as they were when queued, strings and all (a
     * reload frees the ones in use); nothing else of it is set.
     */
    struct appconf conf;
    char key[USERS_USERNAME_MAX]; /* the user: one check each at a time */
    char *dn;
    char password[DIRECTORY_PASSWORD_MAX + 1];
    uint64_t queued_ms;
    int rc;
    char *err;
};

TAILQ_HEAD(bind_list, bind);

struct dirbind {
    struct worker_pool *workers;
    struct event *expire; /* answers waiting checks past their deadline */
    size_t running_max, waiting_max, nrunning, nwaiting;
    struct bind_list running, waiting;
};

/* The strings of a directory section, to copy and free them. */
#define DIR_STRINGS 12
static void dir_strings(struct appconf *c, char **out[DIR_STRINGS])
{
    char **all[DIR_STRINGS] = {
        &c->directory.url,
        &c->directory.ca_file,
        &c->directory.bind_dn,
        &c->directory.bind_password_file,
        &c->directory.base_dn,
        &c->directory.filter,
        &c->directory.group_dn,
        &c->directory.default_method,
        &c->directory.attributes.username,
        &c->directory.attributes.display_name,
        &c->directory.attributes.email,
        &c->directory.attributes.phone,
    };

    memcpy(out, all, sizeof(all));
}

static void dir_free(struct appconf *c)
{
    char **strs[DIR_STRINGS];

    dir_strings(c, strs);
    for (size_t i = 0; i < DIR_STRINGS; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

/* Copies <from>'s directory section into the zeroed <to>; -1 when out of memory (<to> freed). */
static int dir_copy(struct appconf *to, const struct appconf *from)
{
    char **strs[DIR_STRINGS];
    int rc = 0;

    to->directory = from->directory;
    dir_strings(to, strs);
    for (size_t i = 0; i < DIR_STRINGS; i++) {
        /* After a failure the rest are still <from>'s: not to be freed. */
        if (rc < 0)
            *strs[i] = NULL;
        else if (*strs[i] && !(*strs[i] = strdup(*strs[i])))
            rc = -1;
    }
    if (rc < 0)
        dir_free(to);
    return rc;
}

static void bind_free(struct bind *b)
{
    secret_wipe(b->password, sizeof(b->password));
    dir_free(&b->conf);
    free(b->dn);
    free(b->err);
    free(b);
}

static uint64_t deadline_of(const struct bind *b)
{
    return b->queued_ms + (uint64_t)b->conf.directory.timeout_ms;
}

/* Hands the answer to the engine and frees <b> (out of both lists already). */
static void answer(struct bind *b, int rc, const char *err)
{
    if (b->done)
        b->done(b->arg, rc, err);
    bind_free(b);
}

/* On a worker: the bind, and the password gone right after. */
static void bind_work(void *arg)
{
    struct bind *b = arg;

    b->rc = directory_bind_check(&b->conf, b->dn, b->password, &b->err);
    secret_wipe(b->password, sizeof(b->password));
}

static void start_waiting(struct dirbind *q);
static void arm_expire(struct dirbind *q);

/* On the loop, after bind_work(). */
static void bind_done(void *arg)
{
    struct bind *b = arg;
    struct dirbind *q = b->q;

    if (!q) {
        bind_free(b); /* answered at shutdown already */
        return;
    }
    TAILQ_REMOVE(&q->running, b, link);
    q->nrunning--;
    start_waiting(q);
    answer(b, b->rc == 1 || b->rc == 0 ? b->rc : -1,
           b->rc < 0 && b->err ? b->err : "the directory did not answer");
}

static int submit(struct dirbind *q, struct bind *b)
{
    if (worker_submit(q->workers, bind_work, bind_done, b) < 0)
        return -1;
    TAILQ_INSERT_TAIL(&q->running, b, link);
    q->nrunning++;
    return 0;
}

/* Starts the checks waiting while there is room; one that waited too long is not started. */
static void start_waiting(struct dirbind *q)
{
    struct bind *b;

    while (q->nrunning < q->running_max && (b = TAILQ_FIRST(&q->waiting)) != NULL) {
        TAILQ_REMOVE(&q->waiting, b, link);
        q->nwaiting--;
        if (clock_mono_ms() >= deadline_of(b))
            answer(b, -1, "the check waited too long for the directory");
        else if (submit(q, b) < 0)
            answer(b, -1, "the worker pool refused the check");
    }
    arm_expire(q);
}

/*
 * Answers the waiting checks past their deadline: while every running bind
 * hangs (up to its own timeout, per LDAP operation), nothing else would.
 * The line is first in, first out, and directory.timeout_ms needs a restart,
 * so the deadlines are in order: the head's is the earliest.
 */
static void expire_waiting(evutil_socket_t fd, short what, void *arg)
{
    struct dirbind *q = arg;
    uint64_t now = clock_mono_ms();
    struct bind *b;

    (void)fd;
    (void)what;
    while ((b = TAILQ_FIRST(&q->waiting)) && now >= deadline_of(b)) {
        TAILQ_REMOVE(&q->waiting, b, link);
        q->nwaiting--;
        answer(b, -1, "the check waited too long for the directory");
    }
    arm_expire(q);
}

/* Sets the timer for the deadline of the first waiting check; none: off. */
static void arm_expire(struct dirbind *q)
{
    const struct bind *b = TAILQ_FIRST(&q->waiting);
    uint64_t left, now = clock_mono_ms();
    struct timeval tv;

    if (!b) {
        evtimer_del(q->expire);
        return;
    }
    left = deadline_of(b) > now ? deadline_of(b) - now : 0;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    evtimer_add(q->expire, &tv);
}

/* A check for <key> running or waiting (at most DIRBIND_RUNNING + DIRBIND_WAITING to look at). */
static bool busy(const struct dirbind *q, const char *key)
{
    const struct bind *b;

    TAILQ_FOREACH(b, &q->running, link)
    {
        if (strcasecmp(b->key, key) == 0)
            return true;
    }
    TAILQ_FOREACH(b, &q->waiting, link)
    {
        if (strcasecmp(b->key, key) == 0)
            return true;
    }
    return false;
}

struct dirbind *dirbind_new(struct event_base *base, struct worker_pool *workers, size_t running,
                            size_t waiting)
{
    struct dirbind *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->expire = evtimer_new(base, expire_waiting, q);
    if (!q->expire) {
        free(q);
        return NULL;
    }
    q->workers = workers;
    q->running_max = running;
    q->waiting_max = waiting;
    TAILQ_INIT(&q->running);
    TAILQ_INIT(&q->waiting);
    return q;
}

int dirbind_check(struct dirbind *q, const struct appconf *conf, const char *key, const char *dn,
                  const char *password, dirbind_done_fn done, void *arg)
{
    struct bind *b;

    if (strlen(password) > DIRECTORY_PASSWORD_MAX || strlen(key) >= sizeof(b->key))
        return -1;
    if (busy(q, key))
        return DIRBIND_BUSY;
    if (q->nrunning >= q->running_max && q->nwaiting >= q->waiting_max)
        return -1;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    if (dir_copy(&b->conf, conf) < 0 || !(b->dn = strdup(dn))) {
        bind_free(b);
        return -1;
    }
    b->q = q;
    b->done = done;
    b->arg = arg;
    memcpy(b->key, key, strlen(key) + 1);
    memcpy(b->password, password, strlen(password) + 1);
    b->queued_ms = clock_mono_ms();
    if (q->nrunning < q->running_max && TAILQ_EMPTY(&q->waiting)) {
        if (submit(q, b) < 0) {
            bind_free(b);
            return -1;
        }
        return 0;
    }
    TAILQ_INSERT_TAIL(&q->waiting, b, link);
    q->nwaiting++;
    arm_expire(q);
    return 0;
}

size_t dirbind_pending(const struct dirbind *q)
{
    return q ? q->nrunning + q->nwaiting : 0;
}

void dirbind_free(struct dirbind *q)
{
    struct bind *b;

    if (!q)
        return;
    event_free(q->expire);
    q->expire = NULL;
    /* The counts follow the lists: an answer below may ask for them. */
    while ((b = TAILQ_FIRST(&q->waiting)) != NULL) {
        TAILQ_REMOVE(&q->waiting, b, link);
        q->nwaiting--;
        answer(b, -1, "the node is stopping");
    }
    while ((b = TAILQ_FIRST(&q->running)) != NULL) {
        dirbind_done_fn done = b->done;

        /* The worker still has it: its done callback frees it, touching nothing else. */
        TAILQ_REMOVE(&q->running, b, link);
        q->nrunning--;
        b->q = NULL;
        b->done = NULL;
        done(b->arg, -1, "the node is stopping");
    }
    free(q);
}
