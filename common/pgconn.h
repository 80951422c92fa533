/*
 * Non-blocking PostgreSQL access on libpq for one libevent loop.
 *
 * A struct pgconn owns one server connection that it keeps up by itself:
 * PQconnectStart/PQconnectPoll driven by events on PQsocket() (re-armed on
 * every poll, since the socket can change while connecting), a deadline on
 * every attempt, and reconnection with exponential backoff and jitter after a
 * failed attempt or a lost connection. Nothing here ever blocks the loop: no
 * PQexec, PQconnectdb, PQcancel or sleep, PQgetResult only when PQisBusy() says
 * it will not wait, and every deadline is an evtimer on the caller's base.
 *
 * Queries are queued FIFO and run one at a time in libpq pipeline mode. Each
 * has a deadline counted from the moment it is queued and its callback is
 * called exactly once: with the result, with the server's error, when its
 * deadline passes ("query timed out after N ms"), when the connection is lost
 * while it is in flight, or with "connection closed" from pgconn_free(). A
 * query that was never sent is never failed because of a lost connection: it
 * waits for the reconnection until its own deadline. A query that was sent
 * when the connection broke is failed, never silently retried (it may have
 * been committed).
 *
 * Callbacks are called from the loop (and from pgconn_free()), never from
 * inside pgconn_query(), pgconn_exec_prepared() or pgconn_prepare(), so a
 * callback may queue further queries or call pgconn_free() on its own
 * connection.
 */
#ifndef MFA_PGCONN_H
#define MFA_PGCONN_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

struct pgconn;

enum pgconn_state {
    PGCONN_DISCONNECTED = 0, /* no connection; the next attempt is scheduled */
    PGCONN_CONNECTING,       /* an attempt is under way */
    PGCONN_IDLE,             /* connected, nothing in flight */
    PGCONN_BUSY,             /* connected, a request in flight */
};

/*
 * How a query is committed. DEFAULT runs the statement as it is, in its own
 * implicit transaction at the server's synchronous_commit. The others run
 * BEGIN; SET LOCAL synchronous_commit TO <level>; <statement>; COMMIT in one
 * round trip: REMOTE_APPLY for admin writes (the callback runs once every
 * synchronous standby has applied the commit), OFF for sign-in marks.
 */
enum pgconn_sync {
    PGCONN_SYNC_DEFAULT = 0,
    PGCONN_SYNC_OFF,
    PGCONN_SYNC_LOCAL,
    PGCONN_SYNC_REMOTE_APPLY,
};

/*
 * A query's outcome. On success <err> is NULL and <res> is the statement's
 * result (PGRES_TUPLES_OK or PGRES_COMMAND_OK, text format). On failure <res>
 * is NULL and <err> says why; an error the server reported reads
 * "server error SSSSS: <message>" (pgconn_err_sqlstate() extracts SSSSS). Both
 * belong to pgconn and are valid only during the call.
 */
typedef void (*pgconn_cb)(void *arg, const PGresult *res, const char *err);

/*
 * Called when the connection comes up (<connected> true, <why> NULL) or an
 * established one is lost (<connected> false, <why> the reason). Failed
 * attempts while down are not reported again; see pgconn_last_error().
 */
typedef void (*pgconn_state_cb)(void *arg, bool connected, const char *why);

/*
 * Reconnection: the first attempt starts from the loop at once; after a failed
 * or timed-out attempt the next waits a random delay in [d/2, d] (jitter),
 * and d doubles from backoff_min_ms up to backoff_max_ms; a lost connection
 * or a successful one resets d to backoff_min_ms.
 */
struct pgconn_settings {
    const char *conninfo;     /* libpq keyword/value string or URI; copied */
    int connect_timeout_ms;   /* deadline of one connection attempt; 0: 5000 */
    int query_timeout_ms;     /* default deadline of a query; 0: 5000 */
    int backoff_min_ms;       /* delay d before the first retry; 0: 100 */
    int backoff_max_ms;       /* d doubles per failed attempt up to this; 0: 5000 */
    pgconn_state_cb on_state; /* optional */
    void *state_arg;
};

struct pgconn_stats {
    uint64_t queries;          /* queries accepted by pgconn_query/exec_prepared */
    uint64_t failures;         /* callbacks called with an error, timeouts included */
    uint64_t timeouts;         /* callbacks called because a deadline passed */
    uint64_t reconnects;       /* connections established after the first one */
    uint64_t connect_failures; /* attempts that failed or passed their deadline */
};

/*
 * Writes a conninfo string into <buf> of <size> bytes that connects without a
 * DNS lookup (which would block the loop) and notices a dead peer:
 * hostaddr=<hostaddr> port=<port> dbname=<dbname> user=<user>,
 * tcp_user_timeout=<tcp_user_timeout_ms>, and with T that timeout in whole
 * seconds (rounded up): keepalives=1, keepalives_idle = max(1, T/2),
 * keepalives_interval = max(1, T/6), keepalives_count=3, gssencmode=disable,
 * and connect_timeout = max(2, T) as a backstop for blocking users of the same
 * string such as schema_apply() (pgconn's own deadline governs on the loop).
 * Every value is single-quoted with \ and ' escaped.
 *
 * <hostaddr> must be a numeric IPv4 or IPv6 address; a host name is refused.
 * <port> is 1-65535, <tcp_user_timeout_ms> 1-3600000. <dbname> and <user> may
 * be NULL for libpq's defaults. <extra> is NULL or more conninfo ("sslmode=
 * verify-full sslrootcert=/etc/..."): it is parsed and written back quoted; it
 * may set host= (the name TLS verification and .pgpass use; never resolved,
 * as hostaddr is given; by default host is the address itself),
 * connect_timeout and gssencmode, but not the keys set from the other
 * arguments. Returns 0, or -1 with *err (bad argument, or <buf> too small).
 */
int pgconn_conninfo(char *buf, size_t size, const char *hostaddr, int port, const char *dbname,
                    const char *user, const char *extra, int tcp_user_timeout_ms,
                    char **err) MFA_MUSTCHECK;

/*
 * Checks that <conninfo> parses and names no host that would need a DNS
 * lookup: every host must come with a hostaddr, be a numeric address, or be
 * a Unix socket directory (an empty host means the default socket); PGHOST
 * and PGHOSTADDR count when the string sets neither, and a service (which may
 * name a host) needs a hostaddr. Returns 0, or -1 with *err. pgconn_new() runs
 * it.
 */
int pgconn_check_conninfo(const char *conninfo, char **err) MFA_MUSTCHECK;

/*
 * Creates a connection on <base> with the settings <s> (copied; see
 * pgconn_check_conninfo() for the conninfo rules). The first attempt starts
 * from the loop, so this call does no network I/O; queries may be queued at
 * once. Returns the connection, or NULL with *err on bad settings or out of
 * memory. Free with pgconn_free() before the base.
 */
struct pgconn *pgconn_new(struct event_base *base, const struct pgconn_settings *s,
                          char **err) MFA_MUSTCHECK;

/*
 * Calls the callback of every query not yet answered with "connection
 * closed", then closes the connection and frees everything. Called from one
 * of this connection's callbacks, it takes effect when that callback returns.
 * NULL is fine. No callback runs after pgconn_free() returns (outside
 * callbacks).
 */
void pgconn_free(struct pgconn *c);

/*
 * Registers prepared statement <name> (1-63 characters) with <sql> and
 * <nparams> text parameters ($1..$n, types inferred by the server). It is
 * prepared on the current connection before the next queued query and again
 * on every reconnection, each statement on its own so one refused does not
 * hold back the others. A statement the server refused fails each query that
 * uses it with "prepared statement <name>: server error ..." (and is tried
 * again on the next connection). Returns 0, or -1 with *err on a bad or already registered name
 * or out of memory.
 */
int pgconn_prepare(struct pgconn *c, const char *name, const char *sql, int nparams,
                   char **err) MFA_MUSTCHECK;

/*
 * Queues one SQL statement (no transaction control of its own) with
 * <nparams> text parameters <params> (copied; an entry may be NULL for SQL
 * NULL; <params> may be NULL when nparams is 0), to be committed as <sync>
 * says, with a deadline of <timeout_ms> from now (0: the default). <cb> is
 * called exactly once, later, from the loop. Returns 0, or -1 with *err only
 * for a caller's mistake (bad arguments, connection being freed) or out of
 * memory; then <cb> is never called. An unreachable server is reported
 * through <cb>.
 */
int pgconn_query(struct pgconn *c, const char *sql, int nparams, const char *const *params,
                 enum pgconn_sync sync, int timeout_ms, pgconn_cb cb, void *arg,
                 char **err) MFA_MUSTCHECK;

/*
 * As pgconn_query(), running the prepared statement <name>; <nparams> must
 * be the number it was registered with. An unknown name is -1 with *err.
 */
int pgconn_exec_prepared(struct pgconn *c, const char *name, int nparams, const char *const *params,
                         enum pgconn_sync sync, int timeout_ms, pgconn_cb cb, void *arg,
                         char **err) MFA_MUSTCHECK;

enum pgconn_state pgconn_state(const struct pgconn *c);

/* "disconnected", "connecting", "idle", "busy"; "unknown" otherwise. */
const char *pgconn_state_name(enum pgconn_state state);

/* "default", "off", "local", "remote_apply"; "unknown" otherwise. */
const char *pgconn_sync_name(enum pgconn_sync sync);

/* True while connected (PGCONN_IDLE or PGCONN_BUSY). */
bool pgconn_ready(const struct pgconn *c);

/*
 * Why the connection is down or last went down: the last failed attempt or
 * lost connection, one line. NULL when nothing failed yet. Valid until the
 * loop runs again.
 */
const char *pgconn_last_error(const struct pgconn *c);

/* Copies the counters into *out. */
void pgconn_get_stats(const struct pgconn *c, struct pgconn_stats *out);

/*
 * When <err> (as passed to a pgconn_cb) is an error the server reported,
 * copies its SQLSTATE into <sqlstate> and returns true; "25006" is a
 * read-only standby, "23505" a unique violation. False otherwise.
 */
bool pgconn_err_sqlstate(const char *err, char sqlstate[6]);

#endif
