/*
 * HAProxy as mfa-balancer's child: its configuration and certificate files,
 * the master process (master-worker mode, in its own session so that a
 * balancer restart leaves it serving, and the next balancer adopts it from
 * its pid file), reloads by SIGUSR2 to the master (HAProxy hands the
 * listening sockets to the new worker: no connection is refused), and a
 * restart with a growing delay when it dies.
 *
 * After every start or reload the server states the balancer keeps are
 * applied again through the runtime API (runtime.c), so a reload never puts
 * a drained node back into rotation.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal.h"
#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "fsutil.h"
#include "hacfg.h"
#include "log.h"
#include "proc.h"
#include "secrets.h"

#define RESTART_MAX_S 30
#define STABLE_S      60 /* a HAProxy that ran this long restarts at once when it dies */

static double now_s(void)
{
    return (double)clock_mono_ms() / 1000.0;
}

/* Reads at most <max> bytes of <path> into *out (malloc'd, NUL-terminated). */
static int read_all(const char *path, size_t max, char **out, size_t *len, char **err)
{
    char *buf = malloc(max + 1);
    ssize_t n;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (!buf || fd < 0) {
        free(buf);
        if (fd >= 0)
            close(fd);
        return err_set(err, "cannot read %s: %s", path, strerror(errno));
    }
    while (got < max && (n = read(fd, buf + got, max - got)) > 0)
        got += (size_t)n;
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

int haproxy_write_files(struct bal *b, char **err)
{
    const struct appconf *c = daemon_conf(b->d);
    const char *cert = *c->balancer.tls_cert ? c->balancer.tls_cert : c->appliance.tls_cert;
    const char *key = *c->balancer.tls_key ? c->balancer.tls_key : c->appliance.tls_key;
    struct hacfg_paths hp = { b->pem_path, b->admin_sock, b->srvstate_path };
    char *crt = NULL, *k = NULL, *pem = NULL, *text = NULL;
    size_t clen = 0, klen = 0;
    int rc = -1;

    /* HAProxy takes the chain and the key in one file. */
    if (read_all(cert, 1 << 20, &crt, &clen, err) < 0 || read_all(key, 1 << 20, &k, &klen, err) < 0)
        goto out;
    pem = malloc(clen + klen);
    if (!pem) {
        err_set(err, "out of memory");
        goto out;
    }
    memcpy(pem, crt, clen);
    memcpy(pem + clen, k, klen);
    if (fsutil_write_atomic(b->pem_path, pem, clen + klen, 0600, err) < 0)
        goto out;
    /* HAProxy warns about a missing state file: start from an empty one (format 1). */
    if (access(b->srvstate_path, F_OK) != 0 &&
        fsutil_write_atomic(b->srvstate_path, "1\n", 2, 0600, err) < 0)
        goto out;
    if (hacfg_render(c, &hp, &text, err) < 0)
        goto out;
    if (fsutil_write_atomic(b->cfg_path, text, strlen(text), 0600, err) < 0)
        goto out;
    free(b->cfg_text);
    b->cfg_text = text;
    text = NULL;
    rc = 0;
out:
    if (k) {
        secret_wipe(k, klen);
        free(k);
    }
    if (pem) {
        secret_wipe(pem, clen + klen);
        free(pem);
    }
    free(crt);
    free(text);
    return rc;
}

static void master_exited(void *arg, int status, const char *tail, bool timed_out)
{
    struct bal *b = arg;
    char how[64];
    const char *last = strrchr(tail, '\n');

    (void)timed_out;
    /* The last complete line of its output says why. */
    while (last && last > tail && last[1] == '\0') {
        const char *p = last - 1;
        while (p > tail && *p != '\n')
            p--;
        if (p == tail)
            break;
        last = p;
    }
    log_warn("haproxy.exited how=%s output=%s", proc_status_text(status, how, sizeof(how)),
             last ? last + 1 : tail);
    b->master = 0;
    b->master_proc = NULL;
    b->restarts++;
    /* Wait longer each time it dies soon after a start; a long run starts afresh. */
    b->failed_streak = now_s() - b->started_s > STABLE_S ? 1 : b->failed_streak + 1;
    b->next_start_s =
        now_s() + (b->failed_streak < 5 ? (1 << (b->failed_streak - 1)) : RESTART_MAX_S);
}

int haproxy_start(struct bal *b, char **err)
{
    const struct appconf *c = daemon_conf(b->d);
    char bin[300];
    const char *argv[] = { bin, "-W", "-db", "-f", b->cfg_path, "-p", b->pidfile, NULL };
    struct proc_spec spec = { 0 };

    snprintf(bin, sizeof(bin), "%s", c->balancer.haproxy_bin);
    spec.argv = argv;
    spec.new_session = true; /* outlives a balancer restart */
    b->master_proc = proc_spawn(b->procs, &spec, master_exited, b, err);
    if (!b->master_proc)
        return -1;
    b->master = proc_pid(b->master_proc);
    b->started_s = now_s();
    bal_states_dirty(b);
    log_notice("haproxy.started pid=%d", (int)b->master);
    return 0;
}

void haproxy_adopt(struct bal *b)
{
    char text[32], exe[300], link[64];
    ssize_t n;
    long pid;
    int fd = open(b->pidfile, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    pid = strtol(text, NULL, 10);
    if (pid <= 1 || kill((pid_t)pid, 0) < 0)
        return;
    snprintf(link, sizeof(link), "/proc/%ld/exe", pid);
    n = readlink(link, exe, sizeof(exe) - 1);
    if (n < 0)
        return;
    exe[n] = '\0';
    if (!strstr(exe, "haproxy"))
        return;
    b->master = (pid_t)pid;
    bal_states_dirty(b);
    log_notice("haproxy.adopted pid=%ld", pid);
}

static void signal_reload(struct bal *b)
{
    if (!b->master)
        return;
    if (kill(b->master, SIGUSR2) < 0) {
        log_error("haproxy.reload err=%s", strerror(errno));
        return;
    }
    b->reloads++;
    bal_states_dirty(b);
    log_notice("haproxy.reloaded reloads=%d", b->reloads);
}

/* The running worker's server states, kept for the new one (server-state-file). */
static void states_dumped(struct bal *b, const char *reply, void *arg)
{
    char *err = NULL;

    (void)arg;
    b->runtime_busy = false;
    if (!reply || strncmp(reply, "1\n", 2) != 0 ||
        fsutil_write_atomic(b->srvstate_path, reply, strlen(reply), 0600, &err) < 0) {
        log_warn("haproxy.state_dump err=%s", err ? err : "no state from the runtime API");
        free(err);
    }
    signal_reload(b);
}

void haproxy_reload(struct bal *b)
{
    char *err = NULL;

    if (!b->master)
        return;
    /* A command of the runtime API in flight would race the dump: take the next tick. */
    if (b->runtime_busy) {
        b->reload_pending = true;
        return;
    }
    b->reload_pending = false;
    if (runtime_command(b, "show servers state", states_dumped, NULL, &err) < 0) {
        log_warn("haproxy.state_dump err=%s", err);
        free(err);
        signal_reload(b);
        return;
    }
    b->runtime_busy = true;
}

bool haproxy_running(const struct bal *b)
{
    return b->master > 0;
}

void haproxy_tick(struct bal *b)
{
    char *err = NULL;

    /* An adopted master is not our child: notice its end by polling. */
    if (b->master && !b->master_proc && kill(b->master, 0) < 0 && errno == ESRCH) {
        log_warn("haproxy.exited how=%s", "the adopted master is gone");
        b->master = 0;
        b->restarts++;
        b->next_start_s = now_s() + 1;
    }
    if (b->reload_pending)
        haproxy_reload(b);
    if (!b->master && now_s() >= b->next_start_s && !daemon_draining(b->d)) {
        if (haproxy_start(b, &err) < 0) {
            log_error("haproxy.start err=%s", err);
            free(err);
            b->next_start_s = now_s() + 5;
        }
    }
}
