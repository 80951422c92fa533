/*
 * The daemon skeleton every mfa daemon runs on: the command line
 * (-c/--config, --version, --check-config), the configuration and logging,
 * dropping root, one libevent loop with signals and one maintenance timer,
 * reload and shutdown.
 *
 * - SIGHUP reopens the log and reloads the configuration by parse, validate,
 *   swap: a file with an error is refused and the old configuration stays.
 *   Keys that need a restart are named in the log; the program's reload hook
 *   applies the rest. Components must not keep pointers into the old
 *   configuration across a reload.
 * - SIGTERM or SIGINT: stop listening, let the requests in flight finish
 *   (up to appliance.drain_timeout; exit 0, or 1 when the deadline cut work
 *   off). A second one exits at once, with status 1.
 * - Started as root, the daemon runs the prepare hook and then becomes
 *   appliance.user before start: it never serves as root.
 */
#ifndef MFA_DAEMON_H
#define MFA_DAEMON_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "appconf.h"
#include "clock.h"
#include "mem.h"

/* The maintenance timer's period; daemon_every() counts in these. */
#define DAEMON_TICK_MS 100

struct daemon;

/* What a program plugs into the skeleton. Hooks marked optional may be NULL. */
struct daemon_ops {
    const char *name; /* "mfa-node": program name in --version and the log */
    /* Optional. Runs before root is dropped (when started as root). */
    int (*prepare)(struct daemon *d, char **err);
    /* Opens listeners and connections; runs as appliance.user. */
    int (*start)(struct daemon *d, char **err);
    /* Optional. <next> passed validation; -1 refuses it and keeps the current one. */
    int (*reload)(struct daemon *d, const struct appconf *next, char **err);
    /* Stop taking new work (first SIGTERM). */
    void (*stop_listening)(struct daemon *d);
    /* Work still in flight; the drain ends when it reaches 0. */
    size_t (*in_flight)(struct daemon *d);
    /* Optional. Called every DAEMON_TICK_MS on the loop. */
    void (*tick)(struct daemon *d);
    /*
     * Frees what start made; the loop has ended, or start failed half-way.
     * Free what may still answer requests (queries, jobs, deliveries with
     * callbacks) before the HTTP server, so no reply goes to a freed one.
     */
    void (*stop)(struct daemon *d);
};

/*
 * Runs the program: parses <argv>, loads the configuration, and runs the loop
 * until shutdown. <arg> is the program's state, reachable through
 * daemon_arg(). Returns the process exit code: 0 after a clean shutdown or a
 * good --check-config, 1 on a configuration or start error or a drain that
 * timed out, 2 on bad usage.
 */
int daemon_main(int argc, char **argv, const struct daemon_ops *ops, void *arg);

struct event_base *daemon_base(const struct daemon *d);
const struct appconf *daemon_conf(const struct daemon *d);
void *daemon_arg(const struct daemon *d);
bool daemon_draining(const struct daemon *d);

/*
 * True once every <ms> of maintenance ticks (rounded to DAEMON_TICK_MS), for
 * sub-periods of the one timer: `if (daemon_every(d, 1000)) ...`.
 */
bool daemon_every(const struct daemon *d, unsigned ms);

/*
 * Becomes <user> (its uid, gid and groups) when running as root; does
 * nothing otherwise. Returns 0, or -1 with *err.
 */
int daemon_drop_root(const char *user, char **err) MFA_MUSTCHECK;

#endif
