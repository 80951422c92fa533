/*
 * The directory password checks of the sign-in engine (auth.c, directory
 * first factor): each is a blocking LDAP bind (directory_bind_check()) run
 * on the node's worker pool, its answer back on the loop.
 *
 * Binds wait on the network, so only a few run at once (the pool is shared
 * with the auth log's fsyncs and shipping, which must not starve), the
 * rest wait in order; a check that waited longer than directory.timeout_ms
 * is answered "unreachable" without a bind (by a timer on the loop, even
 * while every running bind hangs), and too many waiting are refused, so a
 * directory that hangs cannot hold sign-ins for long.
 *
 * The password is copied into the check and wiped there on every path: on
 * the worker after the bind, or when the check is dropped.
 */
#ifndef MFA_NODE_AUTH_DIRBIND_H
#define MFA_NODE_AUTH_DIRBIND_H

#include <stddef.h>

#include "appconf.h"
#include "mem.h"

struct event_base;
struct worker_pool;
struct dirbind;

/* dirbind_check()'s answer when a check for the same user is running or waiting. */
#define DIRBIND_BUSY (-2)

/*
 * The answer of one check, on the loop: <rc> as directory_bind_check()'s (1
 * right, 0 wrong, -1 not checked: the directory did not answer, the check
 * waited too long or was dropped), <err> the reason for -1 (no password in
 * it; valid during the call).
 */
typedef void (*dirbind_done_fn)(void *arg, int rc, const char *err);

/*
 * Makes the queue over <workers> (which must outlive it) with at most
 * <running> binds at once and <waiting> in line; its timer runs on <base>.
 * NULL when out of memory.
 */
struct dirbind *dirbind_new(struct event_base *base, struct worker_pool *workers, size_t running,
                            size_t waiting);

/*
 * Queues a check of <password> for <dn>, the user <key>, with the directory
 * settings of <conf> (its directory section copied: a reload while it runs
 * changes nothing). <done> runs exactly once, on the loop and never before
 * this returns, unless this returns DIRBIND_BUSY (a check for <key> is
 * running or waiting) or -1 (out of memory, or too many waiting): the
 * caller answers then.
 */
int dirbind_check(struct dirbind *q, const struct appconf *conf, const char *key, const char *dn,
                  const char *password, dirbind_done_fn done, void *arg) MFA_MUSTCHECK;

/* Checks queued or running, for /status. */
size_t dirbind_pending(const struct dirbind *q);

/*
 * Answers every check not yet answered with -1 ("the node is stopping") at
 * once, and frees the queue. A bind still running on a worker finishes
 * there and is freed by the pool's done callback, which then touches
 * nothing of the queue. NULL is fine.
 */
void dirbind_free(struct dirbind *q);

#endif
