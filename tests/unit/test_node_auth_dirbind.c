/*
 * The queue of directory password checks (node/auth_dirbind.c) against
 * directories that refuse or never answer, on a real worker pool: every
 * check is answered exactly once, a full line is refused, a check that
 * waited longer than directory.timeout_ms is answered without a bind (by
 * the queue's timer, even while the bind ahead hangs), one check per user
 * at a time, and freeing answers what is pending at once while running
 * binds end on the pool. (The answers of a real directory:
 * tests/integration/test_directory_auth.py.)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth_dirbind.h"
#include "clock.h"
#include "worker.h"

struct answer {
    int calls;
    int rc;
    char err[256];
};

static void on_answer(void *arg, int rc, const char *err)
{
    struct answer *a = arg;

    a->calls++;
    a->rc = rc;
    snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
}

static void nop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs <base> until all <n> answers came or <deadline_ms> passed. */
static bool run_until_answered(struct event_base *base, struct answer *a, size_t n,
                               uint64_t deadline_ms)
{
    struct timeval tv = { 0, 5000 };
    struct event *guard = event_new(base, -1, EV_PERSIST, nop_cb, NULL);
    uint64_t end = clock_mono_ms() + deadline_ms;
    bool all = false;

    assert_non_null(guard);
    assert_int_equal(event_add(guard, &tv), 0);
    while (!all && clock_mono_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        all = true;
        for (size_t i = 0; i < n; i++)
            all = all && a[i].calls > 0;
    }
    event_free(guard);
    return all;
}

/* A TCP port on loopback that accepts connections (the kernel's backlog) and never answers. */
static int silent_listener(int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A closed TCP port on loopback: connections are refused. */
static int closed_port(void)
{
    int port, fd = silent_listener(&port);

    close(fd);
    return port;
}

static char empty[1];
static const char *const users[] = { "ann", "bob", "cem", "dan" };

static void conf_for(struct appconf *c, char *url, size_t size, int port, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    snprintf(url, size, "ldap://127.0.0.1:%d", port);
    c->directory.url = url;
    c->directory.ca_file = empty;
    c->directory.bind_dn = empty;
    c->directory.timeout_ms = timeout_ms;
}

static void test_refused_and_full(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *pool = worker_pool_new(base, 2, NULL);
    struct dirbind *q = dirbind_new(base, pool, 1, 2);
    struct answer a[4] = { 0 };
    struct appconf c;
    char url[64];

    (void)state;
    assert_non_null(q);
    conf_for(&c, url, sizeof(url), closed_port(), 2000);
    /* One runs, two wait, the fourth is refused: the caller answers it. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(dirbind_check(q, &c, users[i], "uid=a,dc=x", "secret", on_answer, &a[i]),
                         0);
    assert_int_equal(dirbind_pending(q), 3);
    assert_int_equal(dirbind_check(q, &c, users[3], "uid=a,dc=x", "secret", on_answer, &a[3]), -1);
    /* Never answered before dirbind_check() returns. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].calls, 0);
    assert_true(run_until_answered(base, a, 3, 10000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].rc, -1); /* unreachable: not the user's fault */
        assert_null(strstr(a[i].err, "secret"));
    }
    assert_int_equal(a[3].calls, 0);
    assert_int_equal(dirbind_pending(q), 0);
    /* An empty password is wrong without any bind (LDAP would take it as anonymous). */
    assert_int_equal(dirbind_check(q, &c, users[0], "uid=a,dc=x", "", on_answer, &a[3]), 0);
    assert_true(run_until_answered(base, &a[3], 1, 10000));
    assert_int_equal(a[3].rc, 0);
    dirbind_free(q);
    worker_pool_free(pool);
    event_base_free(base);
}

static void test_waited_too_long(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *pool = worker_pool_new(base, 2, NULL);
    struct dirbind *q = dirbind_new(base, pool, 1, 4);
    struct answer a[2] = { 0 };
    struct appconf c;
    char url[64];
    int port, fd = silent_listener(&port);
    uint64_t t0 = clock_mono_ms();

    (void)state;
    conf_for(&c, url, sizeof(url), port, 300);
    assert_int_equal(dirbind_check(q, &c, "a", "uid=a,dc=x", "pw1", on_answer, &a[0]), 0);
    assert_int_equal(dirbind_check(q, &c, "b", "uid=b,dc=x", "pw2", on_answer, &a[1]), 0);
    assert_true(run_until_answered(base, a, 2, 10000));
    /* The first bind timed out; the second waited longer than the timeout and never ran. */
    assert_int_equal(a[0].rc, -1);
    assert_int_equal(a[1].rc, -1);
    assert_string_equal(a[1].err, "the check waited too long for the directory");
    assert_true(clock_mono_ms() - t0 < 5000);
    dirbind_free(q);
    worker_pool_free(pool);
    event_base_free(base);
    close(fd);
}

static void test_free_answers_pending(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *pool = worker_pool_new(base, 2, NULL);
    struct dirbind *q = dirbind_new(base, pool, 1, 4);
    struct answer a[3] = { 0 };
    struct appconf c;
    char url[64];
    int port, fd = silent_listener(&port);

    (void)state;
    conf_for(&c, url, sizeof(url), port, 500);
    for (int i = 0; i < 3; i++)
        assert_int_equal(dirbind_check(q, &c, users[i], "uid=a,dc=x", "pw", on_answer, &a[i]), 0);
    /* The running one and the waiting ones: all answered now, at once. */
    dirbind_free(q);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].rc, -1);
        assert_string_equal(a[i].err, "the node is stopping");
    }
    /* The bind still on a worker ends there; its done callback answers nobody again. */
    worker_pool_free(pool);
    for (int i = 0; i < 3; i++)
        assert_int_equal(a[i].calls, 1);
    event_base_free(base);
    close(fd);
}

/*
 * A waiting check is answered when its time is up, by the queue's timer,
 * while the bind ahead of it still hangs (and would for seconds more).
 */
static void test_expired_while_running_hangs(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *pool = worker_pool_new(base, 2, NULL);
    struct dirbind *q = dirbind_new(base, pool, 1, 4);
    struct answer a[2] = { 0 };
    struct appconf slow, quick;
    char url1[64], url2[64];
    int port, fd = silent_listener(&port);
    uint64_t t0 = clock_mono_ms();

    (void)state;
    conf_for(&slow, url1, sizeof(url1), port, 4000);
    conf_for(&quick, url2, sizeof(url2), port, 200);
    assert_int_equal(dirbind_check(q, &slow, "a", "uid=a,dc=x", "pw1", on_answer, &a[0]), 0);
    assert_int_equal(dirbind_check(q, &quick, "b", "uid=b,dc=x", "pw2", on_answer, &a[1]), 0);
    assert_true(run_until_answered(base, &a[1], 1, 10000));
    assert_string_equal(a[1].err, "the check waited too long for the directory");
    assert_true(clock_mono_ms() - t0 < 2000);
    assert_int_equal(a[0].calls, 0); /* still hanging on its worker */
    assert_int_equal(dirbind_pending(q), 1);
    dirbind_free(q);
    assert_int_equal(a[0].calls, 1);
    worker_pool_free(pool);
    event_base_free(base);
    close(fd);
}

/*
 * One check per user at a time (the username, case folded): a second one,
 * running or waiting, is refused without a bind; once the first is
 * answered the user may be checked again. The settings are copied: the
 * caller's may change (a reload) while the check waits.
 */
static void test_one_check_per_user(void **state)
{
    struct event_base *base = event_base_new();
    struct worker_pool *pool = worker_pool_new(base, 2, NULL);
    struct dirbind *q = dirbind_new(base, pool, 1, 4);
    struct answer a[4] = { 0 };
    struct appconf c;
    char url[64];

    (void)state;
    conf_for(&c, url, sizeof(url), closed_port(), 2000);
    assert_int_equal(dirbind_check(q, &c, "ann", "uid=ann,dc=x", "pw", on_answer, &a[0]), 0);
    assert_int_equal(dirbind_check(q, &c, "bob", "uid=bob,dc=x", "pw", on_answer, &a[1]), 0);
    /* ann's runs, bob's waits: a second one of either is refused. */
    assert_int_equal(dirbind_check(q, &c, "ANN", "uid=ann,dc=x", "pw", on_answer, &a[2]),
                     DIRBIND_BUSY);
    assert_int_equal(dirbind_check(q, &c, "bob", "uid=bob,dc=x", "pw", on_answer, &a[2]),
                     DIRBIND_BUSY);
    assert_int_equal(dirbind_pending(q), 2);
    memset(url, 'x', sizeof(url) - 1); /* the caller's settings change; the queued copies not */
    assert_true(run_until_answered(base, a, 2, 10000));
    assert_int_equal(a[2].calls, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a[i].rc, -1);
        assert_non_null(strstr(a[i].err, "127.0.0.1")); /* the URL as it was queued */
        assert_null(strstr(a[i].err, "xxxx"));
    }
    conf_for(&c, url, sizeof(url), closed_port(), 2000);
    assert_int_equal(dirbind_check(q, &c, "ann", "uid=ann,dc=x", "pw", on_answer, &a[3]), 0);
    assert_true(run_until_answered(base, &a[3], 1, 10000));
    dirbind_free(q);
    worker_pool_free(pool);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_and_full),
        cmocka_unit_test(test_waited_too_long),
        cmocka_unit_test(test_expired_while_running_hangs),
        cmocka_unit_test(test_one_check_per_user),
        cmocka_unit_test(test_free_answers_pending),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
