/*
 * A small pool of worker threads for the few library calls that block (an
 * LDAP bind, a schema migration), so that the daemon's libevent loop never
 * waits on them.
 *
 * A job is a pair of functions on one argument: work(arg) runs on a worker
 * thread, then done(arg) runs on the loop thread of <base>, from an event.
 * The work function must touch nothing the loop owns (no libevent, no
 * httpclient, no shared state without its own lock); done() is where results
 * go back to the loop's data and where <arg> is usually freed.
 *
 * Guarantee: for every job worker_submit() accepted, work runs exactly once
 * and then done (when not NULL) runs exactly once, on the loop thread, even
 * when the pool is freed meanwhile (see worker_pool_free()). Jobs start in
 * submission order; done callbacks run in completion order.
 *
 * Threading: worker_pool_new(), worker_submit(), worker_pending() and
 * worker_pool_free() are called from the loop thread only. Worker threads
 * block every signal, so signals reach the loop's thread.
 */
#ifndef MFA_WORKER_H
#define MFA_WORKER_H

#include <event2/event.h>
#include <stddef.h>

#include "mem.h"

#define WORKER_MAX_THREADS 64

struct worker_pool;

/*
 * Starts <nthreads> (1 .. WORKER_MAX_THREADS) worker threads whose results
 * come back on <base> (which must outlive the pool). Returns the pool, or
 * NULL with *err.
 */
struct worker_pool *worker_pool_new(struct event_base *base, int nthreads,
                                    char **err) MFA_MUSTCHECK;

/*
 * Queues a job: <work>(<arg>) on a worker thread, then <done>(<arg>) on the
 * loop thread (<done> may be NULL). Returns 0 when accepted (the guarantee
 * above then holds), or -1 when <work> is NULL, the pool is being freed (e.g.
 * a done callback submitting during worker_pool_free()) or out of memory;
 * nothing runs then and <arg> is still the caller's.
 */
int worker_submit(struct worker_pool *p, void (*work)(void *arg), void (*done)(void *arg),
                  void *arg) MFA_MUSTCHECK;

/* Jobs accepted whose done callback has not run yet (queued, running or finished). */
size_t worker_pending(struct worker_pool *p);

/*
 * Frees the pool, blocking the calling (loop) thread until every accepted
 * job is through: queued jobs that have not started are NOT dropped, the
 * workers run them; then every outstanding done callback runs here, on the
 * calling thread, before this returns. After it returns nothing of the pool
 * runs any more. Freeing is meant for shutdown: its duration is that of the
 * queued work, so work functions need their own timeouts.
 *
 * May be called from a done callback (the pool's memory is then released
 * when that callback returns). NULL is fine.
 */
void worker_pool_free(struct worker_pool *p);

#endif
