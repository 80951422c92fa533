/*
 * mfa-replicator: owns the member's PostgreSQL and its role. It starts and
 * supervises the postmaster, makes it a primary or a standby of the current
 * primary, keeps the synchronous standbys, fences a primary that lost the
 * majority, and serves the control API through which mfactl switches over,
 * fails over and rejoins (docs/replication.md).
 *
 * With replicator.witness it runs no PostgreSQL: it only answers /status,
 * as the third voter of a two-member cluster.
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "httpclient.h"
#include "httpserver.h"
#include "log.h"
#include "pgconn.h"
#include "proc.h"
#include "repl.h"
#include "worker.h"

static struct repl repl;

static int start(struct daemon *d, char **err)
{
    struct repl *r = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);
    const struct member_conf *me = appconf_local(c);
    struct passwd *pw = getpwuid(geteuid());
    struct httpclient_tls tls = httpclient_tls_cluster(c);
    char conninfo[600];

    r->d = d;
    r->base = daemon_base(d);
    r->started_s = (double)clock_mono_ms() / 1000.0;
    snprintf(r->me, sizeof(r->me), "%s", me->id);
    if (!pw)
        return err_set(err, "this process's user has no name");
    snprintf(r->os_user, sizeof(r->os_user), "%s", pw->pw_name);
    if (keyfile_load(c->appliance.key_file, &r->keys, err) < 0)
        return -1;
    if (pgsetup_paths(c, &r->paths, err) < 0)
        return -1;
    if (httpclient_global_init(err) < 0)
        return -1;
    r->http = httpclient_new(r->base, &tls, err);
    if (!r->http)
        return -1;
    peers_init(r);
    r->api = control_start(r, err);
    if (!r->api)
        return -1;
    log_notice("replicator.listening address=%s port=%d witness=%d", me->address,
               me->ports.replicator, c->replicator.witness);
    if (c->replicator.witness) {
        r->role = ROLE_WITNESS;
        return 0;
    }
    if (c->cluster.nmembers == 2)
        log_warn("fence.off reason=%s", "a two-member cluster needs a witness to fence safely");
    r->procs = proc_set_new(r->base, err);
    if (!r->procs)
        return -1;
    r->workers = worker_pool_new(r->base, 1, err);
    if (!r->workers)
        return -1;
    snprintf(conninfo, sizeof(conninfo),
             "host='%s' port=%d user=postgres dbname=postgres application_name=mfa-replicator",
             r->paths.socket_dir, me->ports.postgres);
    struct pgconn_settings ps = {
        .conninfo = conninfo,
        .connect_timeout_ms = 2000,
        .query_timeout_ms = 2000,
        .backoff_min_ms = 100,
        .backoff_max_ms = 1000,
    };
    r->db = pgconn_new(r->base, &ps, err);
    if (!r->db)
        return -1;
    repl_load_state(r);
    pm_adopt(r);
    if (r->role == ROLE_STOPPED && r->pm == PM_RUNNING)
        r->role = ROLE_STARTING; /* it was started again by hand: find out what it is */
    return 0;
}

static void tick(struct daemon *d)
{
    struct repl *r = daemon_arg(d);
    const struct appconf *c = daemon_conf(d);

    if (daemon_every(d, (unsigned)c->replicator.poll_interval_ms))
        peers_poll(r);
    if (r->role == ROLE_WITNESS)
        return;
    pm_tick(r);
    probe_tick(r);
    repl_decide(r);
}

static void stop_listening(struct daemon *d)
{
    struct repl *r = daemon_arg(d);

    http_server_stop_listening(r->api);
}

static size_t in_flight(struct daemon *d)
{
    struct repl *r = daemon_arg(d);

    return r->api ? http_server_in_flight(r->api) : 0;
}

/* PostgreSQL keeps running: the next replicator adopts it. */
static void stop(struct daemon *d)
{
    struct repl *r = daemon_arg(d);

    pgconn_free(r->db);
    r->db = NULL;
    worker_pool_free(r->workers);
    r->workers = NULL;
    httpclient_free(r->http);
    r->http = NULL;
    http_server_free(r->api);
    r->api = NULL;
    proc_set_free(r->procs);
    r->procs = NULL;
    peers_free(r);
    json_decref(r->local.standbys);
    r->local.standbys = NULL;
    keyring_wipe(&r->keys);
}

static const struct daemon_ops replicator_ops = {
    .name = "mfa-replicator",
    .start = start,
    .tick = tick,
    .stop_listening = stop_listening,
    .in_flight = in_flight,
    .stop = stop,
};

int main(int argc, char **argv)
{
    return daemon_main(argc, argv, &replicator_ops, &repl);
}
