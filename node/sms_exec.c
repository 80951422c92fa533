/*
 * The exec SMS provider: hands each message to an operator's command (a GSM
 * modem tool, a script around a vendor CLI) as `command PHONE`, the text on
 * its standard input; exit status 0 means sent.
 *
 * The command is started with posix_spawn (glibc: clone(CLONE_VFORK) and
 * execve, i.e. fork/exec without copying the daemon's memory, and safe in a
 * process with threads), never through a shell, so a phone number or text
 * cannot become shell syntax; sms_phone_valid() numbers cannot look like
 * options either. The child gets: the text through a pipe filled before it
 * starts (the text is at most SMS_TEXT_MAX bytes, far below the pipe
 * buffer, so the write cannot block and there is no SIGPIPE to fear),
 * stdout and stderr on /dev/null (a tool that echoed the text would put the
 * code in the journal), no other descriptor (closefrom 3), an empty signal
 * mask and default dispositions (the daemon's SIG_IGN for SIGPIPE is not
 * inherited), its own process group, and the daemon's environment.
 *
 * The child is watched with a pidfd (pidfd_open) on the loop — no SIGCHLD
 * handler, the daemon owns its signals — or, where the kernel refuses
 * pidfds, with a 20 ms waitpid(WNOHANG) poll. At the deadline its whole
 * process group gets SIGKILL and the message fails. A child is always reaped
 * (waitpid on its own pid) before its message ends, so none is left a
 * zombie; nothing else in the daemon may reap with waitpid(-1).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errmsg.h"
#include "secrets.h"
#include "sms_priv.h"

#define POLL_MS 20

int sms_exec_check(const struct sms_settings *s, char **err)
{
    struct stat sb;

    if (!s->exec_command || s->exec_command[0] != '/')
        return err_set(err, "sms exec provider: exec_command must be an absolute path");
    if (stat(s->exec_command, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        access(s->exec_command, X_OK) != 0)
        return err_set(err, "sms exec provider: %s is not an executable file", s->exec_command);
    return 0;
}

static void kill_group(pid_t pid)
{
    /* Not reaped yet, so <pid> (and the group it leads) is still ours. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

static void on_child(evutil_socket_t fd, short what, void *arg)
{
    struct sms_req *req = arg;
    char error[128];
    int status = 0;
    pid_t r;

    (void)fd;
    (void)what;
    do
        r = waitpid(req->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return; /* still running (the poll, or a spurious wake-up) */
    req->pid = 0;
    if (r < 0) {
        snprintf(error, sizeof(error), "lost the command's exit status: %s", strerror(errno));
        sms_req_finish(req, false, error);
    } else if (req->killed) {
        snprintf(error, sizeof(error), "the command did not finish in %d ms and was killed",
                 req->p->timeout_ms);
        sms_req_finish(req, false, error);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        sms_req_finish(req, true, NULL);
    } else if (WIFEXITED(status)) {
        snprintf(error, sizeof(error), "the command exited with status %d", WEXITSTATUS(status));
        sms_req_finish(req, false, error);
    } else {
        snprintf(error, sizeof(error), "the command was killed by signal %d",
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        sms_req_finish(req, false, error);
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sms_req *req = arg;
    siginfo_t info = { 0 };

    (void)fd;
    (void)what;
    /* Exited just now, not reaped yet: on_child reports its own status. */
    if (req->pid > 0 && waitid(P_PID, (id_t)req->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == req->pid)
        return;
    if (req->pid > 0 && !req->killed) {
        req->killed = true;
        kill_group(req->pid); /* on_child reaps it and ends the message */
    }
}

/* A pipe whose read end is for the child, already holding <text> and closed for writing. */
static int text_pipe(const char *text, int *read_fd, char **err)
{
    int fds[2];
    size_t len = strlen(text);
    ssize_t n;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return err_set(err, "cannot make a pipe: %s", strerror(errno));
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0) {
        err_set(err, "cannot make a pipe: %s", strerror(errno));
        goto fail;
    }
    n = write(fds[1], text, len);
    if (n < 0 || (size_t)n != len) {
        err_set(err, "cannot write the text to the command's pipe: %s",
                n < 0 ? strerror(errno) : "short write");
        goto fail;
    }
    close(fds[1]);
    *read_fd = fds[0];
    return 0;
fail:
    close(fds[0]);
    close(fds[1]);
    return -1;
}

/* Starts the command; returns 0 with *pid, or an errno value. */
static int spawn(const char *command, const char *phone, int stdin_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char cmd[4096], number[32];
    char *argv[] = { cmd, number, NULL };
    int rc;

    if (snprintf(cmd, sizeof(cmd), "%s", command) >= (int)sizeof(cmd) ||
        snprintf(number, sizeof(number), "%s", phone) >= (int)sizeof(number))
        return ENAMETOOLONG;
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
        return rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigemptyset(&none);
    sigfillset(&all);
    if ((rc = posix_spawn_file_actions_adddup2(&fa, stdin_fd, STDIN_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)) !=
            0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1)) != 0 ||
        (rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
        (rc = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                  POSIX_SPAWN_SETPGROUP)) != 0)
        goto out;
    rc = posix_spawn(pid, cmd, &fa, &attr, argv, environ);
out:
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int sms_exec_send(struct sms_req *req, const char *phone, const char *text, char **err)
{
    struct sms_provider *p = req->p;
    struct timeval poll_tv = { 0, POLL_MS * 1000 };
    struct timeval tv = { p->timeout_ms / 1000, (suseconds_t)(p->timeout_ms % 1000) * 1000 };
    char error[128];
    int stdin_fd = -1, rc;
    pid_t pid = 0;

    if (text_pipe(text, &stdin_fd, err) < 0)
        return -1;
    rc = spawn(p->exec_command, phone, stdin_fd, &pid);
    close(stdin_fd); /* the text stays in the pipe for the child */
    if (rc != 0) {
        snprintf(error, sizeof(error), "cannot run the command: %s", strerror(rc));
        return sms_req_defer(req, false, error, err);
    }
    req->pid = pid;
    req->pidfd = pidfd_open(pid, 0);
    if (req->pidfd >= 0)
        req->child_ev = event_new(p->base, req->pidfd, EV_READ | EV_PERSIST, on_child, req);
    else
        req->child_ev = event_new(p->base, -1, EV_PERSIST, on_child, req);
    req->timer = evtimer_new(p->base, on_timeout, req);
    if (!req->child_ev || !req->timer ||
        event_add(req->child_ev, req->pidfd >= 0 ? NULL : &poll_tv) != 0 ||
        evtimer_add(req->timer, &tv) != 0) {
        sms_exec_kill(req);
        return err_set(err, "cannot watch the command");
    }
    return 0;
}

void sms_exec_kill(struct sms_req *req)
{
    if (req->pid <= 0)
        return;
    kill_group(req->pid);
    while (waitpid(req->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    req->pid = 0;
}

void sms_exec_release(struct sms_req *req)
{
    if (req->child_ev)
        event_free(req->child_ev);
    req->child_ev = NULL;
    if (req->pidfd >= 0)
        close(req->pidfd);
    req->pidfd = -1;
}
