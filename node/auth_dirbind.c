/*
 * Directory password checks on the worker pool; see auth_dirbind.h.
 *
 * A check is in one of two lists: waiting (in order) or running (submitted
 * to the pool). The pool's done callback is the only way out of running; a
 * check the queue let go of at shutdown (its queue pointer NULL) is only
 * freed there. The loop thread owns both lists; the worker touches only its
 * check's copy of the settings, DN and password.
 */
#include "auth_dirbind.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "directory.h"
#include "secrets.h"
#include "worker.h"

struct bind {
    TAILQ_ENTRY(bind) link;
    struct dirbind *q; /* NULL once dirbind_free() let go of it */
    dirbind_done_fn done;
    void *arg;
    /*
     * The settings as they were: the directory keys need a restart, so the
     * strings they point to stay as they are for the process's life, while
     * the struct in use is overwritten by a reload.
     */
    struct appconf conf;
    char *dn;
    char password[DIRECTORY_PASSWORD_MAX + 1];
    uint64_t queued_ms;
    int rc;
    char *err;
};

TAILQ_HEAD(bind_list, bind);

struct dirbind {
    struct worker_pool *workers;
    size_t running_max, waiting_max, nrunning, nwaiting;
    struct bind_list running, waiting;
};

static void bind_free(struct bind *b)
{
    secret_wipe(b->password, sizeof(b->password));
    free(b->dn);
    free(b->err);
    free(b);
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
        if (clock_mono_ms() - b->queued_ms >= (uint64_t)b->conf.directory.timeout_ms)
            answer(b, -1, "the check waited too long for the directory");
        else if (submit(q, b) < 0)
            answer(b, -1, "the worker pool refused the check");
    }
}

struct dirbind *dirbind_new(struct worker_pool *workers, size_t running, size_t waiting)
{
    struct dirbind *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->workers = workers;
    q->running_max = running;
    q->waiting_max = waiting;
    TAILQ_INIT(&q->running);
    TAILQ_INIT(&q->waiting);
    return q;
}

int dirbind_check(struct dirbind *q, const struct appconf *conf, const char *dn,
                  const char *password, dirbind_done_fn done, void *arg)
{
    struct bind *b;

    if (strlen(password) > DIRECTORY_PASSWORD_MAX ||
        (q->nrunning >= q->running_max && q->nwaiting >= q->waiting_max))
        return -1;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    b->dn = strdup(dn);
    if (!b->dn) {
        bind_free(b);
        return -1;
    }
    b->q = q;
    b->done = done;
    b->arg = arg;
    b->conf = *conf;
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
    while ((b = TAILQ_FIRST(&q->waiting)) != NULL) {
        TAILQ_REMOVE(&q->waiting, b, link);
        answer(b, -1, "the node is stopping");
    }
    while ((b = TAILQ_FIRST(&q->running)) != NULL) {
        dirbind_done_fn done = b->done;

        /* The worker still has it: its done callback frees it, touching nothing else. */
        TAILQ_REMOVE(&q->running, b, link);
        b->q = NULL;
        b->done = NULL;
        done(b->arg, -1, "the node is stopping");
    }
    free(q);
}
