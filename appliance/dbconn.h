/*
 * mfactl's connections to the cluster's PostgreSQL, for the commands that
 * read or write the data (token, export, backup, restore).
 *
 * mfactl connects as the node's role (node.db.user), which owns the tables,
 * exactly as an mfa-node does: over TCP with the TLS of node.db.sslmode and
 * the password of node.db.password or, when that is empty, the one derived
 * from the key file (db_password()). So these commands run on an appliance
 * (they need the key file, as root) and reach the primary from any member:
 * no API key, no superuser, no private door.
 *
 * Which member: dbconn_find() asks every replicator's /status (ctl.h) and
 * picks by <want>. libpq is used in blocking mode here: mfactl is a
 * command-line program with no event loop to keep free; every connection has
 * connect_timeout and tcp_user_timeout so a vanished host cannot hang it.
 */
#ifndef MFA_APPLIANCE_DBCONN_H
#define MFA_APPLIANCE_DBCONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "keyfile.h"
#include "mem.h"

/* mfactl's exit codes for these commands (docs/operations.md). */
#define DBCONN_EXIT_OK      0
#define DBCONN_EXIT_FAILED  1
#define DBCONN_EXIT_USAGE   2
#define DBCONN_EXIT_REFUSED 3
#define DBCONN_EXIT_NOBODY  4 /* no member's database could be reached */

enum dbconn_want {
    DBCONN_PRIMARY, /* the writable primary; none: DBCONN_EXIT_REFUSED ("read_only") */
    DBCONN_READ,    /* this member when its database answers, else the primary, else any */
    DBCONN_BACKUP,  /* the primary (writable, else fenced), else the most advanced standby */
};

/* A member whose PostgreSQL to connect to. */
struct dbconn_target {
    char id[32];
    char address[64];
    int port;
    bool primary; /* its replicator said writable primary */
};

/*
 * Loads <config> and fills *t with the member <want> asks for, or with
 * member <from> (non-NULL: the operator's --from; it must answer as a primary
 * or standby). Returns DBCONN_EXIT_OK, or another exit code with *err (a
 * sentence for the operator: no writable primary, member unknown or down).
 */
int dbconn_find(const char *config, enum dbconn_want want, const char *from,
                struct dbconn_target *t, char **err) MFA_MUSTCHECK;

/*
 * The libpq conninfo for <t> as the node's role, WITHOUT the password
 * (hostaddr, port, dbname, user, TLS, timeouts, application_name
 * "mfactl-<what>"). For child programs (pg_dump, pg_restore): give them the
 * password in their environment (PGPASSWORD), never in argv. Returns 0 or -1
 * with *err.
 */
int dbconn_conninfo(const struct appconf *c, const struct dbconn_target *t, const char *what,
                    char *buf, size_t size, char **err) MFA_MUSTCHECK;

/*
 * The node role's password: node.db.password, else derived from <kr>.
 * Returns 0 or -1 with *err. Wipe <out> when done.
 */
int dbconn_password(const struct appconf *c, const struct keyring *kr, char *out, size_t size,
                    char **err) MFA_MUSTCHECK;

/*
 * Connects to <t> as the node's role (blocking) with search_path fixed to
 * public (pg_catalog before it, as always). Returns the connection, or NULL with *err.
 */
PGconn *dbconn_open(const struct appconf *c, const struct keyring *kr,
                    const struct dbconn_target *t, const char *what, char **err) MFA_MUSTCHECK;

/*
 * BEGIN a transaction for an admin write: synchronous_commit remote_apply,
 * as the node's admin writes (an acknowledged change is on every streaming
 * standby). Returns 0 or -1 with *err.
 */
int dbconn_begin_write(PGconn *conn, char **err) MFA_MUSTCHECK;

/* COMMIT (0) or, with *err, ROLLBACK and -1. */
int dbconn_commit(PGconn *conn, char **err) MFA_MUSTCHECK;
void dbconn_rollback(PGconn *conn);

/*
 * One admin_audit row in the open transaction: actor "mfactl", node_id the
 * member mfactl runs on, <action> ("token.import"), <target>, <detail_json>
 * (a JSON object as text, or NULL for {}). Returns 0 or -1 with *err.
 */
int dbconn_audit(PGconn *conn, const struct appconf *c, const char *action, const char *target,
                 const char *detail_json, char **err) MFA_MUSTCHECK;

/* Sets *err to libpq's message for <conn> (first line), after <what>. Returns -1. */
int dbconn_error(PGconn *conn, const char *what, char **err);

/* Same for a failed result. Returns -1. */
int dbconn_result_error(const PGresult *res, const char *what, char **err);

/* A data command's subcommand (mfactl token import, mfactl directory sync, ...). */
struct dbconn_subcmd {
    const char *name;
    int (*run)(const char *config, bool json, int argc, char **argv);
};

/*
 * Runs the subcommand argv[1] of the command argv[0] with argv shifted so
 * that the subcommand is argv[0], as getopt wants. --help, -h or "help"
 * anywhere prints <usage> to stdout (DBCONN_EXIT_OK); an unknown or missing
 * subcommand prints it to stderr (DBCONN_EXIT_USAGE).
 */
int dbconn_dispatch(const struct dbconn_subcmd *subs, size_t nsubs, const char *usage,
                    const char *config, bool json, int argc, char **argv);

#endif
