/*
 * Child processes on the loop; see proc.h.
 *
 * A child's life: proc_spawn() forks and waits, blocking but only until the
 * child has exec'd or written why it could not on a close-on-exec pipe.
 * From then on the loop watches three things: the output pipe (ev_out, until
 * EOF), the exit (waitpid() by pid from the set's SIGCHLD evsignal, after the
 * pipe's EOF, and from a 1 s poll timer in case a SIGCHLD was merged with
 * another or lost), and the deadline (ev_kill: SIGTERM, then SIGKILL). The
 * child is done when it is reaped and its pipe closed. A pipe still open
 * DRAIN_MS after the reap is held by a grandchild (a postmaster's backends,
 * `sleep &`): what it holds is read once more, then we close our end.
 *
 * Invariants:
 * - ps->procs lists the children this set forked whose callback has not run
 *   yet; ps->running counts those not yet reaped. A reaped pid is never
 *   signalled again: it may belong to another process by now.
 * - User callbacks run only from on_done(), the proc's own timer, after the
 *   proc left the list and its events and descriptors are gone: nothing walks
 *   the list while a callback runs, so a callback may spawn, kill, forget or
 *   free the set. ps->depth counts callbacks running; a proc_set_free() from
 *   inside one frees everything but the struct, which on_done() releases once
 *   the callback is back (ps->dead).
 * - Between fork and exec the child calls only async-signal-safe functions,
 *   on data the parent prepared (struct child_plan). All signals are blocked
 *   across fork, so no handler of ours (libevent's writes to its own socket)
 *   can run in the child before the child has put every handler back to
 *   SIG_DFL and cleared its mask.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errmsg.h"

#define DRAIN_MS      200        /* how long a reaped child's pipe may stay open */
#define KILL_AFTER_MS 2000       /* SIGTERM at the deadline, SIGKILL this later */
#define POLL_MS       1000       /* reaping without SIGCHLD, while children run */
#define READ_BURST    262144     /* bytes read per output event, to share the loop */
#define DRAIN_BURST   1048576    /* bytes read from a pipe before closing it anyway */
#define LOST_STATUS   (255 << 8) /* "exit 255": reaped by someone else (ECHILD) */

struct proc {
    struct proc *prev, *next;
    struct proc_set *ps;
    pid_t pid;
    bool new_session;
    int out_fd; /* read end of the output pipe, -1 once closed */
    int log_fd; /* -1: no log, or writing to it failed */
    struct event *ev_out, *ev_kill, *ev_done;
    bool reaped;
    int status;
    bool timed_out;  /* the deadline passed: SIGTERM sent */
    proc_exit_cb cb; /* NULL once forgotten */
    void *arg;
    size_t tail_len;
    char tail[PROC_TAIL_MAX + 1];
};

struct proc_set {
    struct event_base *base;
    struct event *ev_sigchld, *ev_poll;
    struct proc *procs;
    size_t running; /* on procs and not reaped */
    int depth;      /* exit callbacks running */
    bool closing;   /* proc_set_free() was called */
    bool dead;      /* freed inside a callback: on_done() releases it */
};

/* What went wrong in the child before exec, reported to the parent. */
enum child_stage {
    STAGE_EXEC = 0,
    STAGE_SETSID,
    STAGE_DUP,
    STAGE_SETGROUPS,
    STAGE_SETGID,
    STAGE_SETUID,
    STAGE_CHDIR,
};

static const char *const stage_names[] = {
    [STAGE_EXEC] = "exec",           [STAGE_SETSID] = "setsid", [STAGE_DUP] = "dup2",
    [STAGE_SETGROUPS] = "setgroups", [STAGE_SETGID] = "setgid", [STAGE_SETUID] = "setuid",
    [STAGE_CHDIR] = "chdir",
};

struct child_report {
    int stage;
    int err;
};

/* Everything the child needs, prepared before fork. */
struct child_plan {
    char *const *argv;
    char *const *env; /* NULL: execv() with our environ */
    const char *cwd;
    int null_fd, out_fd, report_fd; /* all >= 3 and close-on-exec */
    bool set_user, new_session;
    uid_t uid;
    gid_t gid;
    int max_fd; /* for closing by hand when close_range() is missing */
    struct sigaction dfl;
    sigset_t none;
};

static const struct timeval zero_tv = { 0, 0 };

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    return tv;
}

/* ---- in the child, between fork and exec: async-signal-safe only ---- */

static void child_fail(const struct child_plan *cp, int stage) __attribute__((noreturn));

static void child_fail(const struct child_plan *cp, int stage)
{
    struct child_report r = { stage, errno };

    while (write(cp->report_fd, &r, sizeof(r)) < 0 && errno == EINTR)
        ;
    _exit(127);
}

static void child_close_from(const struct child_plan *cp, int from)
{
    /* [from, report_fd) and (report_fd, ~0]: report_fd closes at exec. */
    if (from < cp->report_fd && close_range((unsigned)from, (unsigned)cp->report_fd - 1, 0) != 0)
        for (int fd = from; fd < cp->report_fd; fd++)
            (void)close(fd);
    if (close_range((unsigned)cp->report_fd + 1, ~0U, 0) != 0)
        for (int fd = cp->report_fd + 1; fd < cp->max_fd; fd++)
            (void)close(fd);
}

static void child_exec(const struct child_plan *cp) __attribute__((noreturn));

static void child_exec(const struct child_plan *cp)
{
    /*
     * exec keeps ignored signals ignored and the mask as it is; libevent may
     * have ignored SIGPIPE, and a child must start with the defaults. Caught
     * ones go back to SIG_DFL too, so that nothing of ours runs here once the
     * mask is cleared.
     */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;

        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL)
            (void)sigaction(sig, &cp->dfl, NULL);
    }
    if (cp->new_session && setsid() < 0)
        child_fail(cp, STAGE_SETSID);
    if (dup2(cp->null_fd, 0) < 0 || dup2(cp->out_fd, 1) < 0 || dup2(cp->out_fd, 2) < 0)
        child_fail(cp, STAGE_DUP);
    if (cp->set_user && geteuid() == 0) {
        if (setgroups(1, &cp->gid) != 0)
            child_fail(cp, STAGE_SETGROUPS);
        if (setgid(cp->gid) != 0)
            child_fail(cp, STAGE_SETGID);
        if (setuid(cp->uid) != 0)
            child_fail(cp, STAGE_SETUID);
    }
    /* After dropping privileges: the directory must be the user's to enter. */
    if (cp->cwd && chdir(cp->cwd) != 0)
        child_fail(cp, STAGE_CHDIR);
    child_close_from(cp, 3);
    (void)sigprocmask(SIG_SETMASK, &cp->none, NULL);
    if (cp->env)
        execve(cp->argv[0], cp->argv, cp->env);
    else
        execv(cp->argv[0], cp->argv);
    child_fail(cp, STAGE_EXEC);
}

/* ---- in the parent ---- */

/* Moves <*fd> to 3 or above (close-on-exec), so that dup2 to 0..2 is safe. */
static int fd_above_stdio(int *fd)
{
    int moved;

    if (*fd > 2)
        return 0;
    moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
        return -1;
    close(*fd);
    *fd = moved;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void free_event(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

/* Appends to the log (dropping it on an error) and to the tail. */
static void keep_output(struct proc *p, const char *buf, size_t n)
{
    size_t off = 0;

    while (p->log_fd >= 0 && off < n) {
        ssize_t w = write(p->log_fd, buf + off, n - off);

        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            close_fd(&p->log_fd); /* disk full, ...: the tail is all that is left */
    }
    if (n >= PROC_TAIL_MAX) {
        memcpy(p->tail, buf + n - PROC_TAIL_MAX, PROC_TAIL_MAX);
        p->tail_len = PROC_TAIL_MAX;
        return;
    }
    if (p->tail_len + n > PROC_TAIL_MAX) {
        size_t drop = p->tail_len + n - PROC_TAIL_MAX;

        memmove(p->tail, p->tail + drop, p->tail_len - drop);
        p->tail_len -= drop;
    }
    memcpy(p->tail + p->tail_len, buf, n);
    p->tail_len += n;
}

/* Reads up to <budget> bytes; false at EOF (or an error, the same to us). */
static bool read_output(struct proc *p, size_t budget)
{
    char buf[16384];

    while (budget > 0) {
        ssize_t n = read(p->out_fd, buf, sizeof(buf) < budget ? sizeof(buf) : budget);

        if (n > 0) {
            keep_output(p, buf, (size_t)n);
            budget -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    return true;
}

/* Reaps <p> if it has exited; once reaped, schedules on_done(). */
static void reap_one(struct proc *p)
{
    struct timeval tv;
    pid_t r;
    int st = 0;

    if (p->reaped)
        return;
    do
        r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return;
    p->reaped = true;
    p->status = r > 0 ? st : LOST_STATUS;
    p->ps->running--;
    event_del(p->ev_kill);
    tv = p->out_fd < 0 ? zero_tv : ms_tv(DRAIN_MS);
    evtimer_add(p->ev_done, &tv);
}

static void reap_all(struct proc_set *ps)
{
    for (struct proc *p = ps->procs; p; p = p->next)
        reap_one(p);
}

static void output_closed(struct proc *p)
{
    free_event(&p->ev_out);
    close_fd(&p->out_fd);
    if (p->reaped)
        evtimer_add(p->ev_done, &zero_tv);
    else
        reap_one(p); /* it most likely exited: no need to wait for SIGCHLD */
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    struct proc *p = arg;

    (void)fd;
    (void)what;
    if (!read_output(p, READ_BURST))
        output_closed(p);
}

static int signal_child(struct proc *p, int sig)
{
    if (p->reaped) {
        errno = ESRCH;
        return -1;
    }
    return kill(p->new_session ? -p->pid : p->pid, sig);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct proc *p = arg;
    struct timeval tv = ms_tv(KILL_AFTER_MS);

    (void)fd;
    (void)what;
    if (p->reaped)
        return;
    if (!p->timed_out) {
        p->timed_out = true;
        (void)signal_child(p, SIGTERM);
        evtimer_add(p->ev_kill, &tv);
    } else {
        (void)signal_child(p, SIGKILL);
    }
}

static void unlink_proc(struct proc_set *ps, struct proc *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        ps->procs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Frees the events and closes the descriptors of <p>, not the struct. */
static void release_proc(struct proc *p)
{
    free_event(&p->ev_out);
    free_event(&p->ev_kill);
    free_event(&p->ev_done);
    close_fd(&p->out_fd);
    close_fd(&p->log_fd);
}

static void free_set(struct proc_set *ps)
{
    free_event(&ps->ev_sigchld);
    free_event(&ps->ev_poll);
    free(ps);
}

/* Reaped, and the pipe at EOF or given up: the callback, then the end. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct proc *p = arg;
    struct proc_set *ps = p->ps;

    (void)fd;
    (void)what;
    if (p->out_fd >= 0)
        (void)read_output(p, DRAIN_BURST); /* what a grandchild left: we stop here */
    unlink_proc(ps, p);
    release_proc(p);
    p->tail[p->tail_len] = '\0';
    if (p->cb) {
        ps->depth++;
        p->cb(p->arg, p->status, p->tail, p->timed_out);
        ps->depth--;
    }
    free(p);
    if (ps->dead && ps->depth == 0)
        free(ps);
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    reap_all(arg);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct proc_set *ps = arg;
    struct timeval tv = ms_tv(POLL_MS);

    (void)fd;
    (void)what;
    reap_all(ps);
    if (ps->running > 0)
        evtimer_add(ps->ev_poll, &tv);
}

struct proc_set *proc_set_new(struct event_base *base, char **err)
{
    struct proc_set *ps;

    if (!base) {
        err_set(err, "proc_set_new: NULL event base");
        return NULL;
    }
    ps = calloc(1, sizeof(*ps));
    if (!ps) {
        err_set(err, "out of memory");
        return NULL;
    }
    ps->base = base;
    ps->ev_sigchld = evsignal_new(base, SIGCHLD, on_sigchld, ps);
    ps->ev_poll = evtimer_new(base, on_poll, ps);
    if (!ps->ev_sigchld || !ps->ev_poll || event_add(ps->ev_sigchld, NULL) != 0) {
        err_set(err, "cannot watch SIGCHLD on the event loop");
        free_set(ps);
        return NULL;
    }
    return ps;
}

void proc_set_free(struct proc_set *ps)
{
    struct proc *p;

    if (!ps || ps->closing)
        return;
    ps->closing = true;
    while ((p = ps->procs)) {
        unlink_proc(ps, p);
        release_proc(p);
        free(p);
    }
    free_event(&ps->ev_sigchld);
    free_event(&ps->ev_poll);
    if (ps->depth > 0) {
        ps->dead = true; /* on_done() frees it after the callback */
        return;
    }
    free(ps);
}

/* Checks <spec>; 0, or -1 with *err. */
static int check_spec(const struct proc_spec *spec, char **err)
{
    if (!spec || !spec->argv || !spec->argv[0])
        return err_set(err, "proc_spawn: no program to run");
    if (spec->argv[0][0] != '/')
        return err_set(err, "cannot run %s: not an absolute path", spec->argv[0]);
    return 0;
}

static int max_fd(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576)
        return 1048576;
    return (int)rl.rlim_cur;
}

struct proc *proc_spawn(struct proc_set *ps, const struct proc_spec *spec, proc_exit_cb cb,
                        void *arg, char **err)
{
    struct proc *p = NULL;
    struct child_plan cp;
    struct child_report rep;
    int out[2] = { -1, -1 }, report[2] = { -1, -1 }, null_fd = -1;
    sigset_t all, old;
    ssize_t n;
    pid_t pid;
    int fork_errno;

    if (!ps || ps->closing) {
        err_set(err, "proc_spawn: the process set is closed");
        return NULL;
    }
    if (check_spec(spec, err) != 0)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p) {
        err_set(err, "out of memory");
        return NULL;
    }
    p->ps = ps;
    p->out_fd = p->log_fd = -1;
    p->new_session = spec->new_session;
    p->cb = cb;
    p->arg = arg;
    if (spec->log_path) {
        p->log_fd = open(spec->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (p->log_fd < 0) {
            err_set(err, "cannot run %s: cannot open %s: %s", spec->argv[0], spec->log_path,
                    strerror(errno));
            goto fail;
        }
    }
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) {
        err_set(err, "cannot open /dev/null: %s", strerror(errno));
        goto fail;
    }
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
        err_set(err, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (fd_above_stdio(&null_fd) != 0 || fd_above_stdio(&out[1]) != 0 ||
        fd_above_stdio(&report[1]) != 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) != 0) {
        err_set(err, "fcntl: %s", strerror(errno));
        goto fail;
    }
    p->out_fd = out[0];
    out[0] = -1;
    p->ev_out = event_new(ps->base, p->out_fd, EV_READ | EV_PERSIST, on_output, p);
    p->ev_kill = evtimer_new(ps->base, on_deadline, p);
    p->ev_done = evtimer_new(ps->base, on_done, p);
    if (!p->ev_out || !p->ev_kill || !p->ev_done || event_add(p->ev_out, NULL) != 0) {
        err_set(err, "cannot watch a child's output on the event loop");
        goto fail;
    }

    memset(&cp, 0, sizeof(cp));
    /* exec*() take char *const[] but do not write: the casts only drop const. */
    cp.argv = (char *const *)(uintptr_t)spec->argv;
    cp.env = (char *const *)(uintptr_t)spec->env;
    cp.cwd = spec->cwd;
    cp.null_fd = null_fd;
    cp.out_fd = out[1];
    cp.report_fd = report[1];
    cp.set_user = spec->set_user;
    cp.uid = spec->uid;
    cp.gid = spec->gid;
    cp.new_session = spec->new_session;
    cp.max_fd = max_fd();
    cp.dfl.sa_handler = SIG_DFL;
    sigemptyset(&cp.dfl.sa_mask);
    sigemptyset(&cp.none);

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid == 0)
        child_exec(&cp);
    fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fd(&null_fd);
    close_fd(&out[1]);
    close_fd(&report[1]);
    if (pid < 0) {
        err_set(err, "cannot run %s: fork: %s", spec->argv[0], strerror(fork_errno));
        goto fail;
    }

    /* EOF: exec closed the pipe. A report: the child is exiting with 127. */
    do
        n = read(report[0], &rep, sizeof(rep));
    while (n < 0 && errno == EINTR);
    close_fd(&report[0]);
    if (n == (ssize_t)sizeof(rep)) {
        int st;

        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (rep.stage == STAGE_EXEC)
            err_set(err, "cannot run %s: %s", spec->argv[0], strerror(rep.err));
        else if (rep.stage == STAGE_CHDIR)
            err_set(err, "cannot run %s: chdir %s: %s", spec->argv[0], spec->cwd,
                    strerror(rep.err));
        else if (rep.stage > 0 && (size_t)rep.stage < MFA_ARRAY_LEN(stage_names))
            err_set(err, "cannot run %s: %s: %s", spec->argv[0], stage_names[rep.stage],
                    strerror(rep.err));
        else
            err_set(err, "cannot run %s", spec->argv[0]);
        goto fail;
    }

    p->pid = pid;
    p->next = ps->procs;
    if (ps->procs)
        ps->procs->prev = p;
    ps->procs = p;
    ps->running++;
    if (spec->timeout_ms > 0) {
        struct timeval tv = ms_tv(spec->timeout_ms);

        evtimer_add(p->ev_kill, &tv);
    }
    if (!evtimer_pending(ps->ev_poll, NULL)) {
        struct timeval tv = ms_tv(POLL_MS);

        evtimer_add(ps->ev_poll, &tv);
    }
    return p;

fail:
    close_fd(&null_fd);
    close_fd(&out[0]);
    close_fd(&out[1]);
    close_fd(&report[0]);
    close_fd(&report[1]);
    release_proc(p);
    free(p);
    return NULL;
}

pid_t proc_pid(const struct proc *p)
{
    return p->pid;
}

int proc_kill(struct proc *p, int sig)
{
    if (!p) {
        errno = EINVAL;
        return -1;
    }
    return signal_child(p, sig);
}

void proc_forget(struct proc *p)
{
    if (p)
        p->cb = NULL;
}

size_t proc_count(const struct proc_set *ps)
{
    return ps ? ps->running : 0;
}

const char *proc_status_text(int status, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    if (WIFEXITED(status)) {
        snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = strsignal(sig);

        snprintf(buf, size, "signal %d (%s)", sig, name ? name : "unknown");
    } else {
        snprintf(buf, size, "status %#x", (unsigned)status);
    }
    return buf;
}
