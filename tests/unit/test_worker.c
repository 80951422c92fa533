/*
 * Worker pool: work off the loop thread, done on it, every job exactly once,
 * the loop keeps ticking while a job blocks, and worker_pool_free() with jobs
 * still queued runs them all (work and done) before it returns.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "worker.h"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&t, &t) != 0)
        ;
}

static void nop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs <base> until *<flag> or <deadline_s> seconds passed; returns *<flag>. */
static bool run_until(struct event_base *base, atomic_bool *flag, double deadline_s)
{
    struct timeval tv = { 0, 5000 };
    struct event *guard = event_new(base, -1, EV_PERSIST, nop_cb, NULL);
    double end = now_s() + deadline_s;

    assert_non_null(guard);
    assert_int_equal(event_add(guard, &tv), 0);
    while (!atomic_load(flag) && now_s() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return atomic_load(flag);
}

struct job {
    pthread_t loop_thread;
    pthread_t work_thread, done_thread;
    atomic_int work_calls;
    int done_calls;
    int sleep_ms;
    atomic_int *all_done; /* shared counter */
    int total;
    atomic_bool *finished; /* set when *all_done reaches total */
    struct worker_pool *pool;
    int submit_rc; /* what a worker_submit() from done returned */
    bool submit_from_done;
    bool free_from_done;
};

static void job_work(void *arg)
{
    struct job *j = arg;

    j->work_thread = pthread_self();
    if (j->sleep_ms)
        sleep_ms(j->sleep_ms);
    atomic_fetch_add(&j->work_calls, 1);
}

static void job_work_nop(void *arg)
{
    (void)arg;
}

static void job_done(void *arg)
{
    struct job *j = arg;

    j->done_thread = pthread_self();
    j->done_calls++;
    if (j->submit_from_done) {
        j->submit_rc = worker_submit(j->pool, job_work_nop, NULL, NULL);
        /* Accepted only while the pool is open; this job is then run. */
    }
    if (j->free_from_done)
        worker_pool_free(j->pool);
    if (j->all_done && atomic_fetch_add(j->all_done, 1) + 1 == j->total && j->finished)
        atomic_store(j->finished, true);
}

static void test_threads(void **state)
{
    struct event_base *base = event_base_new();
    char *err = NULL;
    struct worker_pool *p;
    atomic_int all = 0;
    atomic_bool finished = false;
    struct job j;

    (void)state;
    memset(&j, 0, sizeof(j));
    j.all_done = &all;
    j.total = 1;
    j.finished = &finished;
    p = worker_pool_new(base, 2, &err);
    assert_non_null(p);
    assert_int_equal(worker_submit(p, job_work, job_done, &j), 0);
    assert_int_equal(worker_pending(p), 1);
    assert_true(run_until(base, &finished, 10));
    assert_int_equal(atomic_load(&j.work_calls), 1);
    assert_int_equal(j.done_calls, 1);
    assert_false(pthread_equal(j.work_thread, pthread_self()));
    assert_true(pthread_equal(j.done_thread, pthread_self()));
    assert_int_equal(worker_pending(p), 0);
    worker_pool_free(p);
    event_base_free(base);
}

static void test_many_jobs(void **state)
{
    enum { N = 200 };
    struct event_base *base = event_base_new();
    struct worker_pool *p = worker_pool_new(base, 4, NULL);
    struct job *jobs = calloc(N, sizeof(*jobs));
    atomic_int all = 0;
    atomic_bool finished = false;
    int off_loop = 0;

    (void)state;
    assert_non_null(p);
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) {
        jobs[i].all_done = &all;
        jobs[i].total = N;
        jobs[i].finished = &finished;
        jobs[i].sleep_ms = i % 7 == 0 ? 2 : 0;
        assert_int_equal(worker_submit(p, job_work, job_done, &jobs[i]), 0);
    }
    assert_int_equal(worker_pending(p), N);
    assert_true(run_until(base, &finished, 30));
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&jobs[i].work_calls), 1);
        assert_int_equal(jobs[i].done_calls, 1);
        assert_true(pthread_equal(jobs[i].done_thread, pthread_self()));
        off_loop += !pthread_equal(jobs[i].work_thread, pthread_self());
    }
    assert_int_equal(off_loop, N);
    assert_int_equal(atomic_load(&all), N);
    assert_int_equal(worker_pending(p), 0);
    worker_pool_free(p);
    free(jobs);
    event_base_free(base);
}

struct ticker {
    int ticks;
    int ticks_at_done;
    double done_at;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((struct ticker *)arg)->ticks++;
}

static struct ticker *g_ticker;

static void slow_done(void *arg)
{
    struct job *j = arg;

    g_ticker->ticks_at_done = g_ticker->ticks;
    g_ticker->done_at = now_s();
    job_done(j);
}

static void test_loop_keeps_ticking(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *p = worker_pool_new(base, 1, NULL);
    struct ticker t = { 0, -1, 0 };
    struct timeval ten_ms = { 0, 10000 };
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, &t);
    atomic_int all = 0;
    atomic_bool finished = false;
    struct job j;
    double start;

    (void)state;
    memset(&j, 0, sizeof(j));
    j.sleep_ms = 300;
    j.all_done = &all;
    j.total = 1;
    j.finished = &finished;
    g_ticker = &t;
    assert_non_null(p);
    assert_int_equal(event_add(tick, &ten_ms), 0);
    start = now_s();
    assert_int_equal(worker_submit(p, job_work, slow_done, &j), 0);
    assert_true(run_until(base, &finished, 10));
    /* The job took its 300 ms, during which the 10 ms timer kept firing. */
    assert_true(t.done_at - start >= 0.29);
    assert_true(t.ticks_at_done >= 15);
    event_free(tick);
    worker_pool_free(p);
    event_base_free(base);
}

static void test_free_runs_queued_jobs(void **state)
{
    enum { N = 20 };
    struct event_base *base = event_base_new();
    struct worker_pool *p = worker_pool_new(base, 2, NULL);
    struct job jobs[N];

    (void)state;
    assert_non_null(p);
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < N; i++) {
        jobs[i].sleep_ms = 10;
        jobs[i].pool = p;
        jobs[i].submit_from_done = true;
        jobs[i].submit_rc = 99;
        assert_int_equal(worker_submit(p, job_work, job_done, &jobs[i]), 0);
    }
    /* No loop iteration: at most 2 jobs have started, the rest are queued. */
    worker_pool_free(p);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&jobs[i].work_calls), 1);
        assert_int_equal(jobs[i].done_calls, 1);
        assert_true(pthread_equal(jobs[i].done_thread, pthread_self()));
        assert_int_equal(jobs[i].submit_rc, -1); /* refused while freeing */
    }
    /* Nothing is left to fire on the loop. */
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    event_base_free(base);
}

static void test_free_from_done(void **state)
{
    enum { N = 6 };
    struct event_base *base = event_base_new();
    struct worker_pool *p = worker_pool_new(base, 1, NULL);
    struct job jobs[N];
    atomic_int all = 0;
    atomic_bool finished = false;

    (void)state;
    assert_non_null(p);
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < N; i++) {
        jobs[i].pool = p;
        jobs[i].sleep_ms = i == 0 ? 0 : 20;
        jobs[i].free_from_done = i == 0;
        jobs[i].all_done = &all;
        jobs[i].total = N;
        jobs[i].finished = &finished;
        assert_int_equal(worker_submit(p, job_work, job_done, &jobs[i]), 0);
    }
    /* The first done frees the pool; the free runs the others to the end. */
    assert_true(run_until(base, &finished, 10));
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&jobs[i].work_calls), 1);
        assert_int_equal(jobs[i].done_calls, 1);
    }
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    event_base_free(base);
}

static void test_bad_arguments(void **state)
{
    struct event_base *base = event_base_new();
    char *err = NULL;
    struct worker_pool *p;

    (void)state;
    assert_null(worker_pool_new(base, 0, &err));
    assert_non_null(strstr(err, "1..64"));
    assert_null(worker_pool_new(base, WORKER_MAX_THREADS + 1, &err));
    free(err);
    p = worker_pool_new(base, 1, NULL);
    assert_non_null(p);
    assert_int_equal(worker_submit(p, NULL, NULL, NULL), -1);
    assert_int_equal(worker_pending(p), 0);
    worker_pool_free(p);
    worker_pool_free(NULL);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_many_jobs),
        cmocka_unit_test(test_loop_keeps_ticking),
        cmocka_unit_test(test_free_runs_queued_jobs),
        cmocka_unit_test(test_free_from_done),
        cmocka_unit_test(test_bad_arguments),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
