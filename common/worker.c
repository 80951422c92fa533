/*
 * Worker thread pool; see worker.h.
 *
 * Two FIFO lists under one mutex: <todo> (accepted, not started) and <done>
 * (work finished, done callback not yet run). Workers sleep on <cond> until
 * <todo> has a job or <stopping> is set; they leave only when <todo> is empty
 * and <stopping> is set, so every accepted job is worked. A worker that
 * finishes a job appends it to <done> and then writes to the eventfd; the
 * loop's event on the eventfd drains it and runs the done callbacks, popping
 * one job at a time so that a callback may submit or even free the pool.
 *
 * Invariants: <pending> counts jobs from worker_submit() until their done
 * callback returned (loop thread only). A job is on exactly one list, or in
 * the hands of exactly one worker. <depth> counts done callbacks running; a
 * worker_pool_free() from inside one does all the work but leaves the struct
 * (marked <dead>) for the dispatcher to release once it is back.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "errmsg.h"

struct worker_job {
    struct worker_job *next;
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

struct job_list {
    struct worker_job *head, *tail;
};

struct worker_pool {
    struct event_base *base;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job_list todo, done;
    bool stopping; /* under mu */
    pthread_t *threads;
    int nthreads; /* started */
    int efd;
    struct event *ev;
    size_t pending; /* loop thread */
    int depth;      /* done callbacks running */
    bool closing;   /* worker_pool_free() started */
    bool dead;      /* freed from a done callback: release after it */
};

static void list_push(struct job_list *l, struct worker_job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct worker_job *list_pop(struct job_list *l)
{
    struct worker_job *j = l->head;

    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        j->next = NULL;
    }
    return j;
}

static void *worker_main(void *arg)
{
    struct worker_pool *p = arg;
    const uint64_t one = 1;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct worker_job *j;

        while (!p->todo.head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->mu);
        j = list_pop(&p->todo);
        if (!j)
            break; /* stopping and nothing left */
        pthread_mutex_unlock(&p->mu);
        j->work(j->arg);
        pthread_mutex_lock(&p->mu);
        list_push(&p->done, j);
        /*
         * Cannot fail but with EAGAIN at a counter of 2^64-2, which the loop
         * drains long before; written under the lock so that the pool (and
         * the eventfd) cannot be freed under us.
         */
        while (write(p->efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Runs one done callback; returns false when the pool died in it. */
static bool run_done(struct worker_pool *p, struct worker_job *j)
{
    if (j->done) {
        p->depth++;
        j->done(j->arg);
        p->depth--;
    }
    free(j);
    p->pending--;
    return !p->dead;
}

static void on_done_ready(evutil_socket_t fd, short what, void *arg)
{
    struct worker_pool *p = arg;
    uint64_t count;
    size_t n = 0;

    (void)what;
    /* Reading resets the counter; jobs finished later write again. */
    if (read(fd, &count, sizeof(count)) < 0)
        count = 0;
    pthread_mutex_lock(&p->mu);
    for (struct worker_job *j = p->done.head; j; j = j->next)
        n++;
    pthread_mutex_unlock(&p->mu);
    /* At most the jobs seen now: later ones get their own wake-up. */
    while (n-- > 0) {
        struct worker_job *j;

        pthread_mutex_lock(&p->mu);
        j = list_pop(&p->done);
        pthread_mutex_unlock(&p->mu);
        if (!j)
            break;
        if (!run_done(p, j)) {
            if (p->depth == 0)
                free(p);
            return;
        }
    }
}

/* Stops and joins the workers (after they emptied <todo>). */
static void stop_threads(struct worker_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

struct worker_pool *worker_pool_new(struct event_base *base, int nthreads, char **err)
{
    struct worker_pool *p;
    sigset_t all, old;
    int rc = 0;

    if (!base) {
        err_set(err, "worker_pool_new: NULL event base");
        return NULL;
    }
    if (nthreads < 1 || nthreads > WORKER_MAX_THREADS) {
        err_set(err, "worker threads: %d is not within 1..%d", nthreads, WORKER_MAX_THREADS);
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        err_set(err, "out of memory");
        return NULL;
    }
    p->base = base;
    p->efd = -1;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        err_set(err, "pthread_mutex_init failed");
        return NULL;
    }
    if (pthread_cond_init(&p->cond, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        err_set(err, "pthread_cond_init failed");
        return NULL;
    }
    p->threads = calloc((size_t)nthreads, sizeof(*p->threads));
    if (!p->threads) {
        err_set(err, "out of memory");
        goto fail;
    }
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        err_set(err, "eventfd: %s", strerror(errno));
        goto fail;
    }
    p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, on_done_ready, p);
    if (!p->ev || event_add(p->ev, NULL) != 0) {
        err_set(err, "cannot watch the worker pool's eventfd");
        goto fail;
    }
    /* Threads inherit the signal mask: they get none, the loop's thread all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < nthreads; i++) {
        rc = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc != 0)
            break;
        p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        err_set(err, "cannot start worker thread %d of %d: %s", p->nthreads + 1, nthreads,
                strerror(rc));
        goto fail;
    }
    for (int i = 0; i < nthreads; i++) {
        char name[16];

        snprintf(name, sizeof(name), "mfa-worker-%u", (unsigned)i % 100u);
        pthread_setname_np(p->threads[i], name);
    }
    return p;

fail:
    stop_threads(p);
    if (p->ev)
        event_free(p->ev);
    if (p->efd >= 0)
        close(p->efd);
    free(p->threads);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

int worker_submit(struct worker_pool *p, void (*work)(void *arg), void (*done)(void *arg),
                  void *arg)
{
    struct worker_job *j;

    if (!p || !work || p->closing)
        return -1;
    j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    list_push(&p->todo, j);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    p->pending++;
    return 0;
}

size_t worker_pending(struct worker_pool *p)
{
    return p->pending;
}

void worker_pool_free(struct worker_pool *p)
{
    struct worker_job *j;

    if (!p || p->closing)
        return;
    p->closing = true;
    /* Workers run what is queued, then leave: every job is now on <done>. */
    stop_threads(p);
    event_free(p->ev);
    p->ev = NULL;
    while ((j = list_pop(&p->done)))
        (void)run_done(p, j);
    close(p->efd);
    free(p->threads);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    if (p->depth > 0) {
        p->dead = true; /* on_done_ready() releases it after the callback */
        return;
    }
    free(p);
}
