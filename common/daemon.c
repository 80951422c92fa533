/*
 * The daemon skeleton; see daemon.h.
 *
 * States: running -> draining (first SIGTERM: listeners closed, waiting for
 * in-flight work on the maintenance tick) -> stopped (the loop exits). The
 * drain deadline breaks the loop at once (exit status 1); a second SIGTERM
 * exits the process on the spot. This is the one file of common/ that logs:
 * it is the daemon's outermost layer, with no caller to hand errors to. Signals
 * arrive through libevent, so their handlers run on the loop like any other
 * callback and may do real work.
 */
#include "daemon.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "errmsg.h"
#include "log.h"

enum daemon_state {
    DAEMON_RUNNING = 0,
    DAEMON_DRAINING,
    DAEMON_STOPPED,
};

static const char *const state_names[] = {
    [DAEMON_RUNNING] = "running",
    [DAEMON_DRAINING] = "draining",
    [DAEMON_STOPPED] = "stopped",
};

struct daemon {
    const struct daemon_ops *ops;
    void *arg;
    const char *config_path;
    struct appconf conf;
    struct event_base *base;
    struct event *sig_term, *sig_int, *sig_hup, *tick;
    enum daemon_state state;
    uint64_t ticks;
    uint64_t drain_deadline_ms;
    bool dropped; /* the drain timed out with work in flight */
};

struct event_base *daemon_base(const struct daemon *d)
{
    return d->base;
}

const struct appconf *daemon_conf(const struct daemon *d)
{
    return &d->conf;
}

void *daemon_arg(const struct daemon *d)
{
    return d->arg;
}

bool daemon_draining(const struct daemon *d)
{
    return d->state != DAEMON_RUNNING;
}

bool daemon_every(const struct daemon *d, unsigned ms)
{
    uint64_t period = ms < DAEMON_TICK_MS ? 1 : ms / DAEMON_TICK_MS;

    return d->ticks % period == 0;
}

int daemon_drop_root(const char *user, char **err)
{
    struct passwd *pw;

    if (geteuid() != 0)
        return 0;
    errno = 0;
    pw = getpwnam(user);
    if (!pw)
        return err_set(err,
                       "user \"%s\" does not exist (create it: useradd --system --no-create-home "
                       "%s)",
                       user, user);
    if (pw->pw_uid == 0)
        return err_set(err, "appliance.user \"%s\" is root; name an unprivileged user", user);
    if (initgroups(user, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        return err_set(err, "cannot become user %s: %s", user, strerror(errno));
    /* Make sure there is no way back. */
    if (setuid(0) == 0)
        return err_set(err, "dropped to user %s but could regain root", user);
    /* Libraries look in $HOME (libpq's ~/.postgresql): not root's any more. */
    if (setenv("HOME", pw->pw_dir, 1) != 0 || setenv("USER", pw->pw_name, 1) != 0)
        return err_set(err, "cannot set HOME: %s", strerror(errno));
    return 0;
}

static void apply_log_settings(const struct daemon *d)
{
    log_setup(d->ops->name, (enum log_target)d->conf.log.target, (enum log_level)d->conf.log.level);
}

static void warn_config(void *arg, const char *msg)
{
    (void)arg;
    log_warn("config.warning msg=%s", msg);
}

static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct appconf next = { 0 };
    char *err = NULL;

    (void)fd;
    (void)what;
    log_reopen();
    if (appconf_load(d->config_path, &next, warn_config, NULL, &err) < 0) {
        log_error("config.reload_refused file=%s err=%s", d->config_path, err);
        free(err);
        return;
    }
    if (cfg_restart_needed(&appconf_schema, &d->conf, &next, &err) > 0) {
        log_warn("config.restart_needed detail=%s", err);
        mfa_free(err);
    }
    if (d->ops->reload && d->ops->reload(d, &next, &err) < 0) {
        log_error("config.reload_refused file=%s err=%s", d->config_path, err);
        free(err);
        appconf_free(&next);
        return;
    }
    /* What needs a restart stays as it is in effect; the file's value waits. */
    cfg_keep_restart_keys(&appconf_schema, &d->conf, &next);
    appconf_free(&d->conf);
    d->conf = next;
    apply_log_settings(d);
    log_notice("config.reloaded file=%s", d->config_path);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;

    (void)fd;
    (void)what;
    if (d->state != DAEMON_RUNNING) {
        /*
         * "You insist": exit now, without waiting for workers or freeing.
         * Nothing acknowledged is lost: the auth log is in the spool and the
         * database has what it confirmed.
         */
        log_notice("shutdown.now in_flight=%zu", d->ops->in_flight(d));
        _exit(1);
    }
    d->state = DAEMON_DRAINING;
    d->drain_deadline_ms = clock_mono_ms() + (uint64_t)d->conf.appliance.drain_timeout * 1000;
    d->ops->stop_listening(d);
    log_notice("shutdown.drain in_flight=%zu timeout_s=%d", d->ops->in_flight(d),
               d->conf.appliance.drain_timeout);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;

    (void)fd;
    (void)what;
    d->ticks++;
    if (d->ops->tick)
        d->ops->tick(d);
    if (d->state != DAEMON_DRAINING)
        return;
    if (d->ops->in_flight(d) == 0) {
        log_notice("shutdown.drained");
        d->state = DAEMON_STOPPED;
        event_base_loopexit(d->base, NULL);
    } else if (clock_mono_ms() >= d->drain_deadline_ms) {
        log_warn("shutdown.timeout dropped=%zu", d->ops->in_flight(d));
        d->state = DAEMON_STOPPED;
        d->dropped = true;
        event_base_loopbreak(d->base);
    }
}

static void usage(FILE *out, const char *name)
{
    fprintf(out,
            "usage: %s [-c FILE] [--check-config] [--version]\n"
            "  -c, --config FILE   configuration file (default %s)\n"
            "      --check-config  load the configuration, print it, and exit\n"
            "      --version       print the version and exit\n",
            name, APPCONF_DEFAULT_PATH);
}

/* Parses argv; returns -1 to run, or an exit code. */
static int parse_args(struct daemon *d, int argc, char **argv, bool *check)
{
    enum { OPT_VERSION = 256, OPT_CHECK };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, OPT_CHECK },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    d->config_path = APPCONF_DEFAULT_PATH;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            d->config_path = optarg;
            break;
        case OPT_CHECK:
            *check = true;
            break;
        case OPT_VERSION:
            printf("%s %s\n", d->ops->name, MFA_VERSION);
            return 0;
        case 'h':
            usage(stdout, d->ops->name);
            return 0;
        default:
            usage(stderr, d->ops->name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", d->ops->name, argv[optind]);
        usage(stderr, d->ops->name);
        return 2;
    }
    return -1;
}

/* Creates the loop, its signals and the maintenance timer. */
static int setup_loop(struct daemon *d, char **err)
{
    struct timeval tick = { 0, DAEMON_TICK_MS * 1000 };

    d->base = event_base_new();
    if (!d->base)
        return err_set(err, "cannot create the event loop");
    d->sig_term = evsignal_new(d->base, SIGTERM, on_stop, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_stop, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_reload, d);
    d->tick = event_new(d->base, -1, EV_PERSIST, on_tick, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->tick || evsignal_add(d->sig_term, NULL) ||
        evsignal_add(d->sig_int, NULL) || evsignal_add(d->sig_hup, NULL) ||
        evtimer_add(d->tick, &tick))
        return err_set(err, "cannot set up signals and the maintenance timer");
    return 0;
}

static void teardown(struct daemon *d)
{
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    if (d->tick)
        event_free(d->tick);
    if (d->base)
        event_base_free(d->base);
    appconf_free(&d->conf);
}

int daemon_main(int argc, char **argv, const struct daemon_ops *ops, void *arg)
{
    struct daemon d = { .ops = ops, .arg = arg };
    bool check = false;
    char *err = NULL;
    int rc = parse_args(&d, argc, argv, &check);

    if (rc >= 0)
        return rc;
    log_setup(ops->name, LOG_TO_STDERR, LOG_LVL_INFO);
    if (appconf_load(d.config_path, &d.conf, warn_config, NULL, &err) < 0) {
        fprintf(stderr, "%s: %s\n", ops->name, err);
        free(err);
        return 1;
    }
    if (check) {
        cfg_dump(&appconf_schema, &d.conf, stdout);
        printf("# %s: configuration OK\n", d.config_path);
        appconf_free(&d.conf);
        return 0;
    }
    apply_log_settings(&d);
    signal(SIGPIPE, SIG_IGN);
    rc = 1;
    if (setup_loop(&d, &err) < 0 || (ops->prepare && ops->prepare(&d, &err) < 0) ||
        daemon_drop_root(d.conf.appliance.user, &err) < 0 || ops->start(&d, &err) < 0) {
        log_error("start.failed err=%s", err);
        free(err);
        ops->stop(&d);
        teardown(&d);
        return 1;
    }
    log_notice("start.ready version=%s member=%s config=%s uid=%u", MFA_VERSION,
               d.conf.appliance.member, d.config_path, (unsigned)getuid());
    event_base_dispatch(d.base);
    log_notice("stop state=%s", state_names[d.state]);
    ops->stop(&d);
    teardown(&d);
    return d.dropped ? 1 : 0;
}
