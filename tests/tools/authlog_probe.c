/*
 * mfa-authlog-probe SPOOL NODE_ID CONNINFO|- [OPTIONS]: drives node/authlog on
 * one event loop for tests/integration/test_node_authlog.py. It opens the
 * spool, appends records, ships them to CONNINFO ("-": nowhere) and prints
 * lines the test reads:
 *
 *   open epoch=E pending=P              after the spool is open
 *   appended epoch=E seq=S              once authlog_append() has returned
 *   status pending=P shipped=N duplicates=D failures=F dropped=X corrupt=C
 *          synced=S segments=G          whenever one of these changes
 *   done <the status fields>            before a normal exit
 *
 * Record k of an epoch is: username "probe-<seq>", method "totp", result
 * accepted/rejected/challenge/error by seq % 4, reason "r<seq>", server
 * "probe" 10.0.0.1, client 192.0.2.<seq % 250>, but "bogus" (stored NULL)
 * when seq % 7 == 0, and challenge id "<node>-AAAAAAAAAAAAAAAAAAAAAA" for a
 * challenge.
 *
 * Options: --append K (at start), --until-shipped (exit 0 once nothing is
 * pending), --deadline SECONDS (exit 3 then; default 60), --batch N,
 * --segment-max BYTES, --ship-interval MS, --hold (do not ship until "ship"),
 * --stdin (read commands: "append N", "hold", "ship", "quit").
 */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authlog.h"
#include "pgconn.h"
#include "toolkit.h"
#include "worker.h"

static struct {
    struct event_base *base;
    struct worker_pool *pool;
    struct pgconn *pg;
    struct authlog *al;
    struct event *tick, *bound, *input;
    const char *node_id;
    bool until_shipped;
    int rc;
    char last_status[512];
} P;

static void finish(int rc)
{
    P.rc = rc;
    event_base_loopbreak(P.base);
}

static void status_text(char *buf, size_t size)
{
    struct authlog_stats st;

    authlog_get_stats(P.al, &st);
    snprintf(buf, size,
             "pending=%" PRIu64 " shipped=%" PRIu64 " duplicates=%" PRIu64 " failures=%" PRIu64
             " dropped=%" PRIu64 " corrupt=%" PRIu64 " synced=%" PRIu64 " segments=%" PRIu64,
             st.pending, st.shipped, st.duplicates, st.ship_failures, st.dropped, st.corrupt,
             st.synced_seq, st.segments);
}

static int append_records(long n)
{
    static const char *const results[] = { "accepted", "rejected", "challenge", "error" };
    char username[64], reason[32], client[32], challenge[64], *err = NULL;

    for (long i = 0; i < n; i++) {
        struct authlog_stats st;
        struct authlog_record r = { 0 };
        uint64_t seq;

        authlog_get_stats(P.al, &st);
        seq = st.last_seq + 1;
        snprintf(username, sizeof(username), "probe-%" PRIu64, seq);
        snprintf(reason, sizeof(reason), "r%" PRIu64, seq);
        snprintf(client, sizeof(client), "192.0.2.%" PRIu64, seq % 250);
        snprintf(challenge, sizeof(challenge), "%s-AAAAAAAAAAAAAAAAAAAAAA", P.node_id);
        r.username = username;
        r.method = "totp";
        r.result = results[seq % 4];
        r.reason = reason;
        r.server_name = "probe";
        r.server_ip = "10.0.0.1";
        r.client_ip = seq % 7 == 0 ? "bogus" : client;
        r.challenge_id = seq % 4 == 2 ? challenge : NULL;
        if (authlog_append(P.al, &r, &err) < 0) {
            tk_out("append failed: %s", err);
            free(err);
            return -1;
        }
        authlog_get_stats(P.al, &st);
        tk_out("appended epoch=%" PRIu64 " seq=%" PRIu64, st.boot_epoch, st.last_seq);
    }
    return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    char now[512];
    struct authlog_stats st;

    (void)fd;
    (void)what;
    (void)arg;
    status_text(now, sizeof(now));
    if (strcmp(now, P.last_status) != 0) {
        tk_out("status %s", now);
        memcpy(P.last_status, now, sizeof(now));
    }
    authlog_get_stats(P.al, &st);
    if (P.until_shipped && st.pending == 0)
        finish(0);
}

static void on_bound(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    tk_out("probe: gave up at the deadline");
    finish(3);
}

/* A line of stdin (NULL: its end, which changes nothing). */
static void command(const char *cmd)
{
    if (!cmd)
        return;
    if (strncmp(cmd, "append ", 7) == 0) {
        if (append_records(atol(cmd + 7)) < 0)
            finish(1);
    } else if (strcmp(cmd, "hold") == 0) {
        authlog_set_primary(P.al, NULL);
        tk_out("held");
    } else if (strcmp(cmd, "ship") == 0) {
        authlog_set_primary(P.al, P.pg);
        tk_out("shipping");
    } else if (strcmp(cmd, "quit") == 0) {
        finish(0);
    } else {
        tk_out("unknown command: %s", cmd);
    }
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s SPOOL NODE_ID CONNINFO|- [--append K] [--until-shipped] "
            "[--deadline S] [--batch N] [--segment-max B] [--ship-interval MS] [--hold] "
            "[--stdin]\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct authlog_settings s = { 0 };
    struct pgconn_settings ps = { 0 };
    struct timeval every = { 0, 20000 }, bound = { 60, 0 };
    struct authlog_stats st;
    long append = 0;
    bool hold = false, use_stdin = false;
    char *err = NULL, text[512];

    if (argc < 4)
        return usage(argv[0]);
    s.spool_dir = argv[1];
    s.node_id = P.node_id = argv[2];
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--until-shipped") == 0) {
            P.until_shipped = true;
        } else if (strcmp(a, "--hold") == 0) {
            hold = true;
        } else if (strcmp(a, "--stdin") == 0) {
            use_stdin = true;
        } else if (!v) {
            return usage(argv[0]);
        } else if (strcmp(a, "--append") == 0) {
            append = atol(v), i++;
        } else if (strcmp(a, "--deadline") == 0) {
            bound.tv_sec = atol(v), i++;
        } else if (strcmp(a, "--batch") == 0) {
            s.batch_max = atoi(v), i++;
        } else if (strcmp(a, "--segment-max") == 0) {
            s.segment_max = (size_t)atol(v), i++;
        } else if (strcmp(a, "--ship-interval") == 0) {
            s.ship_interval_ms = atoi(v), i++;
        } else {
            return usage(argv[0]);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    P.base = event_base_new();
    if (!P.base)
        return 1;
    P.pool = worker_pool_new(P.base, 2, &err);
    if (!P.pool)
        goto fail;
    if (strcmp(argv[3], "-") != 0) {
        ps.conninfo = argv[3];
        ps.connect_timeout_ms = 2000;
        ps.query_timeout_ms = 5000;
        ps.backoff_min_ms = 100;
        ps.backoff_max_ms = 1000;
        P.pg = pgconn_new(P.base, &ps, &err);
        if (!P.pg)
            goto fail;
    }
    P.al = authlog_open(P.base, P.pool, &s, &err);
    if (!P.al)
        goto fail;
    authlog_get_stats(P.al, &st);
    tk_out("open epoch=%" PRIu64 " pending=%" PRIu64, st.boot_epoch, st.pending);
    if (P.pg && !hold)
        authlog_set_primary(P.al, P.pg);
    if (append_records(append) < 0)
        P.rc = 1;

    P.tick = event_new(P.base, -1, EV_PERSIST, on_tick, NULL);
    P.bound = evtimer_new(P.base, on_bound, NULL);
    event_add(P.tick, &every);
    evtimer_add(P.bound, &bound);
    if (use_stdin)
        P.input = tk_watch_stdin(P.base, command);
    if (P.rc == 0)
        event_base_dispatch(P.base);

    status_text(text, sizeof(text));
    if (P.rc == 0)
        tk_out("done %s", text);
    authlog_close(P.al);
    pgconn_free(P.pg);
    worker_pool_free(P.pool);
    event_free(P.tick);
    event_free(P.bound);
    if (P.input)
        event_free(P.input);
    event_base_free(P.base);
    return P.rc;
fail:
    fprintf(stderr, "mfa-authlog-probe: %s\n", err ? err : "out of memory");
    free(err);
    pgconn_free(P.pg);
    worker_pool_free(P.pool);
    event_base_free(P.base);
    return 1;
}
