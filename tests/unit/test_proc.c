/*
 * Child processes on the loop: exit status and output tail, the output log,
 * deadlines (SIGTERM, then SIGKILL), exec failures reported by proc_spawn(),
 * signals, forgetting, grandchildren holding the pipe, several children at
 * once, callbacks that spawn or free the set, and what the child inherits
 * (signals, descriptors, user, directory, environment). Every loop has a
 * deadline, so a broken proc.c fails a test instead of hanging it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "proc.h"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* What one exit callback saw. */
struct result {
    int calls;
    int status;
    bool timed_out;
    char tail[PROC_TAIL_MAX + 1];
    double at;    /* now_s() of the call */
    int *counter; /* shared: callbacks so far */
    /* for the callback that acts */
    struct proc_set *ps;
    struct result *spawn_into; /* spawn a child reporting there */
    struct proc *spawned;
    bool free_set;
};

static void on_exit_cb(void *arg, int status, const char *tail, bool timed_out)
{
    struct result *r = arg;

    r->calls++;
    r->status = status;
    r->timed_out = timed_out;
    snprintf(r->tail, sizeof(r->tail), "%s", tail);
    r->at = now_s();
    if (r->counter)
        (*r->counter)++;
    if (r->spawn_into) {
        const char *argv[] = { "/bin/sh", "-c", "echo second; exit 4", NULL };
        struct proc_spec spec = { .argv = argv };
        char *err = NULL;

        r->spawned = proc_spawn(r->ps, &spec, on_exit_cb, r->spawn_into, &err);
        assert_null(err);
    }
    if (r->free_set)
        proc_set_free(r->ps);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs <base> until *<count> reaches <want> or <secs> passed; true if reached. */
static bool run_until(struct event_base *base, const int *count, int want, double secs)
{
    bool expired = false;
    struct timeval tv = { (time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
    struct event *guard = evtimer_new(base, on_deadline, &expired);

    assert_non_null(guard);
    assert_int_equal(evtimer_add(guard, &tv), 0);
    while (*count < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return *count >= want;
}

/* Runs the loop for <secs>, whatever happens. */
static void run_for(struct event_base *base, double secs)
{
    int never = 0;

    (void)run_until(base, &never, 1, secs);
}

struct fixture {
    struct event_base *base;
    struct proc_set *ps;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->ps = proc_set_new(f->base, &err);
    assert_null(err);
    assert_non_null(f->ps);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    proc_set_free(f->ps);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Spawns <argv> with the defaults and <cb> into <r>; asserts success. */
static struct proc *spawn(struct fixture *f, const char *const *argv, struct result *r)
{
    struct proc_spec spec = { .argv = argv };
    char *err = NULL;
    struct proc *p = proc_spawn(f->ps, &spec, on_exit_cb, r, &err);

    if (!p)
        fail_msg("proc_spawn: %s", err ? err : "?");
    return p;
}

static const char *status_text(int status)
{
    static char buf[64];

    return proc_status_text(status, buf, sizeof(buf));
}

static void test_exit_and_tail(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "echo hi; exit 3", NULL };
    struct result r = { 0 };
    struct proc *p = spawn(f, argv, &r);

    assert_true(proc_pid(p) > 0);
    assert_int_equal(proc_count(f->ps), 1);
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_int_equal(r.calls, 1);
    assert_string_equal(status_text(r.status), "exit 3");
    assert_string_equal(r.tail, "hi\n");
    assert_false(r.timed_out);
    assert_int_equal(proc_count(f->ps), 0);
    /* Only once. */
    run_for(f->base, 0.3);
    assert_int_equal(r.calls, 1);
}

static void test_status_text(void **state)
{
    char buf[64];

    (void)state;
    assert_string_equal(proc_status_text(0, buf, sizeof(buf)), "exit 0");
    assert_string_equal(proc_status_text(3 << 8, buf, sizeof(buf)), "exit 3");
    assert_string_equal(proc_status_text(SIGKILL, buf, sizeof(buf)), "signal 9 (Killed)");
    assert_string_equal(proc_status_text(SIGTERM, buf, sizeof(buf)), "signal 15 (Terminated)");
    /* Truncated, still terminated. */
    assert_string_equal(proc_status_text(SIGKILL, buf, 7), "signal");
}

/* The output of `seq`-like lines 0..n-1 as the shell loop below prints it. */
static char *lines(int n, size_t *len)
{
    size_t cap = (size_t)n * 16 + 1, used = 0;
    char *s = malloc(cap);

    assert_non_null(s);
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "line %d\n", i);
    *len = used;
    return s;
}

static void test_big_output_keeps_the_end(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c",
                           "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done", NULL };
    struct result r = { 0 };
    size_t len;
    char *all = lines(3000, &len);

    assert_true(len > 3 * PROC_TAIL_MAX);
    (void)spawn(f, argv, &r);
    assert_true(run_until(f->base, &r.calls, 1, 10));
    assert_string_equal(status_text(r.status), "exit 0");
    assert_int_equal(strlen(r.tail), PROC_TAIL_MAX);
    assert_memory_equal(r.tail, all + len - PROC_TAIL_MAX, PROC_TAIL_MAX);
    free(all);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *s;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return s;
}

static void test_log_appends_everything(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/test_proc.XXXXXX";
    char path[64], *got;
    const char *argv[] = { "/bin/sh", "-c",
                           "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; "
                           "echo err >&2",
                           NULL };
    struct proc_spec spec = { .argv = argv, .log_path = path };
    struct result r = { 0 };
    struct stat st;
    char *err = NULL, *all;
    size_t len, got_len;
    mode_t old_mask = umask(022);

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/out.log", dir);
    /* Created 0640. */
    spec.argv = (const char *const[]){ "/bin/echo", "old", NULL };
    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    umask(old_mask);

    /* Appended: stdout and stderr, all of it, not just the tail. */
    spec.argv = argv;
    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_null(err);
    assert_true(run_until(f->base, &r.calls, 2, 10));
    all = lines(3000, &len);
    got = read_file(path, &got_len);
    assert_int_equal(got_len, 4 + len + 4);
    assert_memory_equal(got, "old\n", 4);
    assert_memory_equal(got + 4, all, len);
    assert_memory_equal(got + 4 + len, "err\n", 4);
    assert_string_equal(r.tail + strlen(r.tail) - 4, "err\n");
    free(all);
    free(got);

    /* A log that cannot be opened fails the spawn, naming the path. */
    snprintf(path, sizeof(path), "%s/no/such/dir.log", dir);
    assert_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, path));
    free(err);
    assert_int_equal(proc_count(f->ps), 0);

    snprintf(path, sizeof(path), "%s/out.log", dir);
    unlink(path);
    rmdir(dir);
}

static void test_timeout_kills(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sleep", "30", NULL };
    struct proc_spec spec = { .argv = argv, .timeout_ms = 300 };
    struct result r = { 0 };
    char *err = NULL;
    double t0 = now_s();

    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_true(r.at - t0 < 5);
    assert_true(r.at - t0 >= 0.25);
    assert_true(r.timed_out);
    assert_string_equal(status_text(r.status), "signal 15 (Terminated)");
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    struct fixture *f = *state;
    /* The shell and its sleep ignore SIGTERM; the group gets SIGKILL. */
    const char *argv[] = { "/bin/sh", "-c", "trap '' TERM; /bin/sleep 30; echo survived", NULL };
    struct proc_spec spec = { .argv = argv, .timeout_ms = 200, .new_session = true };
    struct result r = { 0 };
    char *err = NULL;
    double t0 = now_s();

    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_true(run_until(f->base, &r.calls, 1, 8));
    assert_true(r.timed_out);
    assert_string_equal(status_text(r.status), "signal 9 (Killed)");
    assert_string_equal(r.tail, "");
    /* 0.2 s + 2 s, and the sleep died with it: no grace period for a held pipe. */
    assert_true(r.at - t0 >= 2.1);
    assert_true(r.at - t0 < 3.5);
}

static void test_exec_failure(void **state)
{
    struct fixture *f = *state;
    const char *missing[] = { "/nonexistent/program", "x", NULL };
    const char *relative[] = { "sh", "-c", "true", NULL };
    const char *sh[] = { "/bin/sh", "-c", "true", NULL };
    struct proc_spec spec = { .argv = missing };
    struct result r = { 0 };
    char *err = NULL;

    assert_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_non_null(err);
    assert_string_equal(err, "cannot run /nonexistent/program: No such file or directory");
    free(err);
    err = NULL;

    spec.argv = relative;
    assert_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "not an absolute path"));
    free(err);
    err = NULL;

    spec.argv = sh;
    spec.cwd = "/nonexistent/dir";
    assert_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_non_null(err);
    assert_string_equal(err,
                        "cannot run /bin/sh: chdir /nonexistent/dir: No such file or directory");
    free(err);

    /* The failed children were reaped in proc_spawn(). */
    assert_int_equal(proc_count(f->ps), 0);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    run_for(f->base, 0.2);
    assert_int_equal(r.calls, 0);
}

static void test_kill(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sleep", "30", NULL };
    struct result r = { 0 };
    struct proc *p = spawn(f, argv, &r);

    assert_int_equal(proc_kill(p, SIGTERM), 0);
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_string_equal(status_text(r.status), "signal 15 (Terminated)");
    assert_false(r.timed_out);
}

static void test_forget(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "sleep 0.2; echo bye", NULL };
    struct result r = { 0 };
    struct proc *p = spawn(f, argv, &r);
    pid_t pid = proc_pid(p);

    proc_forget(p);
    assert_int_equal(proc_count(f->ps), 1);
    run_for(f->base, 1.0);
    assert_int_equal(r.calls, 0);
    assert_int_equal(proc_count(f->ps), 0);
    /* Reaped: no zombie left. */
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_grandchild_holds_pipe(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "/bin/sleep 5 & echo x", NULL };
    struct proc_spec spec = { .argv = argv, .new_session = true };
    struct result r = { 0 };
    char *err = NULL;
    double t0 = now_s();
    struct proc *p = proc_spawn(f->ps, &spec, on_exit_cb, &r, &err);
    pid_t pgid;

    assert_non_null(p);
    pgid = proc_pid(p);
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_true(r.at - t0 < 2);
    assert_string_equal(status_text(r.status), "exit 0");
    assert_string_equal(r.tail, "x\n");
    /* The sleep is our grandchild, in the child's group: clean up. */
    (void)kill(-pgid, SIGKILL);
}

static void test_reaped_without_sigchld(void **state)
{
    struct fixture *f = *state;
    /* EOF long before the exit, and no SIGCHLD: only the poll timer reaps. */
    const char *argv[] = { "/bin/sh", "-c", "exec >&- 2>&-; sleep 0.3; exit 5", NULL };
    struct result r = { 0 };
    sigset_t chld, old_mask;
    double t0 = now_s();

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    assert_int_equal(sigprocmask(SIG_BLOCK, &chld, &old_mask), 0);
    (void)spawn(f, argv, &r);
    (void)run_until(f->base, &r.calls, 1, 3);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old_mask, NULL), 0);
    assert_int_equal(r.calls, 1);
    assert_string_equal(status_text(r.status), "exit 5");
    assert_true(r.at - t0 >= 0.3);
    assert_true(r.at - t0 < 2);
}

static void test_two_at_once(void **state)
{
    struct fixture *f = *state;
    const char *slow[] = { "/bin/sh", "-c", "sleep 0.3; echo a; exit 1", NULL };
    const char *fast[] = { "/bin/sh", "-c", "echo b; exit 2", NULL };
    int count = 0;
    struct result a = { .counter = &count }, b = { .counter = &count };

    (void)spawn(f, slow, &a);
    (void)spawn(f, fast, &b);
    assert_int_equal(proc_count(f->ps), 2);
    assert_true(run_until(f->base, &count, 2, 5));
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_string_equal(status_text(a.status), "exit 1");
    assert_string_equal(a.tail, "a\n");
    assert_string_equal(status_text(b.status), "exit 2");
    assert_string_equal(b.tail, "b\n");
    assert_true(b.at <= a.at);
    assert_int_equal(proc_count(f->ps), 0);
}

static void test_callback_spawns(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "echo first", NULL };
    int count = 0;
    struct result second = { .counter = &count };
    struct result first = { .counter = &count, .ps = f->ps, .spawn_into = &second };

    (void)spawn(f, argv, &first);
    assert_true(run_until(f->base, &count, 2, 5));
    assert_non_null(first.spawned);
    assert_string_equal(first.tail, "first\n");
    assert_string_equal(second.tail, "second\n");
    assert_string_equal(status_text(second.status), "exit 4");
    assert_int_equal(proc_count(f->ps), 0);
}

static void test_free_set_in_callback(void **state)
{
    struct fixture *f = *state;
    const char *quick[] = { "/bin/sh", "-c", "exit 0", NULL };
    const char *slow[] = { "/bin/sleep", "30", NULL };
    struct result r = { .ps = f->ps, .free_set = true }, other = { 0 };
    struct proc *p;
    pid_t pid;
    int st;

    p = spawn(f, slow, &other);
    pid = proc_pid(p);
    (void)spawn(f, quick, &r);
    assert_true(run_until(f->base, &r.calls, 1, 5));
    f->ps = NULL; /* freed by the callback */
    /* The sleep was left running, and nothing of the set fires any more. */
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    run_for(f->base, 0.3);
    assert_int_equal(other.calls, 0);
}

static void test_free_set_leaves_children(void **state)
{
    struct fixture *f = *state;
    const char *slow[] = { "/bin/sleep", "30", NULL };
    struct result r = { 0 };
    struct proc *p = spawn(f, slow, &r);
    pid_t pid = proc_pid(p);
    int st;

    proc_set_free(f->ps);
    f->ps = NULL;
    run_for(f->base, 0.2);
    assert_int_equal(r.calls, 0);
    assert_int_equal(waitpid(pid, &st, WNOHANG), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_child_gets_default_signals(void **state)
{
    struct fixture *f = *state;
    /* Ignored SIGINT and blocked SIGTERM here must not reach the child. */
    const char *selfint[] = { "/bin/sh", "-c", "kill -INT $$; echo survived", NULL };
    const char *sleeper[] = { "/bin/sleep", "30", NULL };
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_int;
    sigset_t term, old_mask;
    int count = 0;
    struct result a = { .counter = &count }, b = { .counter = &count };
    struct proc *p;

    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(sigaction(SIGINT, &ign, &old_int), 0);
    assert_int_equal(sigprocmask(SIG_BLOCK, &term, &old_mask), 0);
    (void)spawn(f, selfint, &a);
    p = spawn(f, sleeper, &b);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old_mask, NULL), 0);
    assert_int_equal(sigaction(SIGINT, &old_int, NULL), 0);
    assert_int_equal(proc_kill(p, SIGTERM), 0);
    assert_true(run_until(f->base, &count, 2, 5));
    assert_string_equal(status_text(a.status), "signal 2 (Interrupt)");
    assert_string_equal(a.tail, "");
    assert_string_equal(status_text(b.status), "signal 15 (Terminated)");
}

static void test_child_gets_no_other_fds(void **state)
{
    struct fixture *f = *state;
    /* ls lists the shell's descriptors, which are the ones it was given. */
    const char *argv[] = { "/bin/sh", "-c", "/bin/ls /proc/$$/fd", NULL };
    struct result r = { 0 };
    int leak = open("/dev/null", O_RDONLY); /* not close-on-exec */

    assert_true(leak > 2);
    (void)spawn(f, argv, &r);
    assert_true(run_until(f->base, &r.calls, 1, 5));
    close(leak);
    assert_string_equal(status_text(r.status), "exit 0");
    assert_string_equal(r.tail, "0\n1\n2\n");
}

static void test_cwd_and_env(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "pwd; echo \"$FOO\"; env | wc -l", NULL };
    const char *env[] = { "FOO=bar baz", "PATH=/usr/bin:/bin", NULL };
    struct proc_spec spec = { .argv = argv, .env = env, .cwd = "/tmp" };
    struct result r = { 0 };
    char *err = NULL;
    char *tail;

    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_string_equal(status_text(r.status), "exit 0");
    /* dash adds PWD (and maybe OLDPWD) to what it exports. */
    assert_memory_equal(r.tail, "/tmp\nbar baz\n", 13);
    tail = r.tail + 13;
    assert_true(atoi(tail) >= 2 && atoi(tail) <= 4);
}

static void test_set_user(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "/bin/sh", "-c", "/usr/bin/id -u; /usr/bin/id -g; /usr/bin/id -G",
                           NULL };
    struct proc_spec spec = { .argv = argv, .set_user = true, .cwd = "/" };
    struct result r = { 0 };
    struct passwd *pw;
    char *err = NULL, want[128];

    if (geteuid() != 0) {
        skip();
        return;
    }
    pw = getpwnam("nobody");
    if (!pw) {
        skip();
        return;
    }
    spec.uid = pw->pw_uid;
    spec.gid = pw->pw_gid;
    assert_non_null(proc_spawn(f->ps, &spec, on_exit_cb, &r, &err));
    assert_true(run_until(f->base, &r.calls, 1, 5));
    assert_string_equal(status_text(r.status), "exit 0");
    snprintf(want, sizeof(want), "%u\n%u\n%u\n", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid,
             (unsigned)pw->pw_gid);
    assert_string_equal(r.tail, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_and_tail, setup, teardown),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test_setup_teardown(test_big_output_keeps_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_appends_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grandchild_holds_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reaped_without_sigchld, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_spawns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_set_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_set_leaves_children, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_gets_default_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_gets_no_other_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cwd_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_user, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
