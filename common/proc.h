/*
 * Child processes on the daemon's libevent loop: start a program, learn of
 * its exit from the loop, signal it. Used by mfa-replicator to run
 * PostgreSQL (supervised, long-lived) and its tools (initdb, pg_basebackup,
 * pg_rewind, pg_controldata: run to completion with a deadline).
 *
 * SIGCHLD is taken with one evsignal per proc_set, and every child is reaped
 * with waitpid(pid, WNOHANG) by pid, so children this module did not start
 * are left alone. Nothing blocks the loop: output is read from a pipe by
 * events, and deadlines are evtimers.
 *
 * Started as root with a uid/gid in the spec, the child drops to them
 * (setgroups, setgid, setuid) between fork and exec.
 */
#ifndef MFA_PROC_H
#define MFA_PROC_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "mem.h"

/* How many bytes of a child's output proc keeps for its exit callback. */
#define PROC_TAIL_MAX 4096

struct proc_set;
struct proc;

/*
 * What to run. argv[0] is an absolute path (no PATH search); argv and env
 * are NULL-terminated and only read during proc_spawn(). The child gets stdin
 * from /dev/null, its stdout and stderr on one pipe, every signal at SIG_DFL
 * and none blocked, and no other descriptor. Its output is appended to
 * <log_path> (when set, created 0640; if writing to it fails, the rest goes
 * to the tail only) and the last PROC_TAIL_MAX bytes are kept for the exit
 * callback.
 */
struct proc_spec {
    const char *const *argv;
    const char *const *env; /* NULL: inherit the environment */
    const char *cwd;        /* NULL: inherit */
    const char *log_path;   /* NULL: output only kept as the tail */
    bool set_user;          /* drop to uid/gid in the child (only when root) */
    uid_t uid;
    gid_t gid;
    bool new_session; /* setsid(): signals to our group do not reach it */
    int timeout_ms;   /* > 0: SIGTERM at the deadline, SIGKILL 2 s later */
};

/*
 * Called once when the child has exited and its output pipe is drained (or,
 * when a grandchild still holds the pipe 200 ms after the exit, read once
 * more and closed). <status> is the waitpid() status ("exit 255" if someone
 * else reaped it: waitpid(-1) elsewhere); <tail> the last bytes of its
 * output (NUL-terminated, possibly "", valid during the call); <timed_out> is
 * true when the deadline passed and SIGTERM was sent. The struct proc is
 * freed after the callback. Called from the loop only, never from inside a
 * proc_*() call; it may spawn, kill, forget, or free the set.
 */
typedef void (*proc_exit_cb)(void *arg, int status, const char *tail, bool timed_out);

/*
 * Installs the SIGCHLD handler on <base> (libevent: only one base in the
 * process can take signals). Returns the set, or NULL with *err.
 */
struct proc_set *proc_set_new(struct event_base *base, char **err) MFA_MUSTCHECK;

/*
 * Frees the set and every struct proc of it. Signals and reaps nothing:
 * children still running keep running, their callbacks are never called,
 * and our end of their output pipes is closed (a child that writes later
 * gets SIGPIPE or EPIPE). NULL is fine; so is a call from an exit callback.
 */
void proc_set_free(struct proc_set *ps);

/*
 * Starts <spec>; <cb> may be NULL (as if forgotten). Returns the child, owned
 * by the set until its callback has run, or NULL with *err (fork or exec
 * failed: an exec failure in the child is reported here, through a
 * close-on-exec pipe, not as an exit status: "cannot run /usr/bin/x: No such
 * file or directory"). Blocks only until the child has exec'd.
 */
struct proc *proc_spawn(struct proc_set *ps, const struct proc_spec *spec, proc_exit_cb cb,
                        void *arg, char **err) MFA_MUSTCHECK;

pid_t proc_pid(const struct proc *p);

/*
 * Sends <sig> to the child (its process group with new_session). 0, or -1
 * with errno (ESRCH once it has been reaped: its pid may be another's now).
 */
int proc_kill(struct proc *p, int sig);

/*
 * The callback will not be called any more (its argument is going away); the
 * child is still reaped when it exits, and <p> then freed: do not use <p>
 * after this call. Does not signal it.
 */
void proc_forget(struct proc *p);

/* Children started and not yet reaped. */
size_t proc_count(const struct proc_set *ps);

/*
 * Describes a waitpid() status in <buf>: "exit 0", "exit 3", "signal 9
 * (Killed)". Returns <buf>.
 */
const char *proc_status_text(int status, char *buf, size_t size);

#endif
