/*
 * The files and command lines through which mfa-replicator drives its
 * PostgreSQL, apart from the running of them: the member's configuration
 * outside PGDATA (postgresql.conf, pg_hba.conf, pg_ident.conf, a passfile),
 * the argument vectors of initdb, postgres, pg_basebackup and pg_rewind, and
 * parsers for what PostgreSQL leaves on disk (pg_controldata's report,
 * postmaster.pid, timeline history files).
 *
 * Everything a member needs of its own lives outside PGDATA, so that
 * pg_basebackup and pg_rewind may copy a whole data directory from another
 * member: postgres runs with --config-file pointing here, and the copy's
 * postgresql.auto.conf is emptied (pgsetup_after_copy()).
 */
#ifndef MFA_REPL_PGSETUP_H
#define MFA_REPL_PGSETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "appconf.h"
#include "mem.h"

#define PG_ROLE_REPLICATION "mfa_replication"
#define PG_ROLE_REWIND      "mfa_rewind"
#define PG_SUPERUSER        "postgres"

/* 0/0: no position */
#define LSN_INVALID 0

/* Paths of one member's PostgreSQL. */
struct pgpaths {
    char pgdata[256];
    char confdir[256];  /* <data_dir>/pg */
    char conf[300];     /* <confdir>/postgresql.conf */
    char passfile[300]; /* <confdir>/pgpass */
    char socket_dir[256];
    char log[300]; /* <data_dir>/postgresql.log */
};

/* What changes with the member's role; the rest comes from the configuration. */
struct pgsetup_role {
    const char *upstream;   /* member id to stream from; NULL or "": none */
    const char *sync_names; /* synchronous_standby_names; NULL: "" */
    bool read_only;         /* fenced: default_transaction_read_only = on */
};

/* Fills <p> from <conf>. Returns 0, or -1 with *err when a path is too long. */
int pgsetup_paths(const struct appconf *conf, struct pgpaths *p, char **err) MFA_MUSTCHECK;

/*
 * Writes postgresql.conf, pg_hba.conf and pg_ident.conf (mapping <os_user>
 * to the superuser) into p->confdir (made if missing), each to a temporary
 * file renamed over the old one. <repl_password> goes only to the passfile
 * (pgsetup_write_passfile()); primary_conninfo names the passfile. Returns 0,
 * or -1 with *err.
 */
int pgsetup_write_conf(const struct appconf *conf, const struct pgpaths *p, const char *os_user,
                       const struct pgsetup_role *role, char **err) MFA_MUSTCHECK;

/*
 * Writes the passfile (0600) with the passwords of the replication and the
 * rewind role. Returns 0, or -1 with *err.
 */
int pgsetup_write_passfile(const struct pgpaths *p, const char *repl_password,
                           const char *rewind_password, char **err) MFA_MUSTCHECK;

/*
 * The conninfo of a connection to member <m>'s PostgreSQL as <user> on
 * <dbname>, over TLS verified against the cluster CA, password from the
 * passfile, application_name <app>. Returns 0, or -1 with *err.
 */
int pgsetup_conninfo(const struct appconf *conf, const struct pgpaths *p,
                     const struct member_conf *m, const char *user, const char *dbname,
                     const char *app, char *buf, size_t size, char **err) MFA_MUSTCHECK;

/* The replication slot of member <id> on the primary: "member_<id>". */
void pgsetup_slot_name(const char *id, char *buf, size_t size);

/*
 * Argument vectors, NULL-terminated, in <argv> of <max> entries, their
 * strings in <store> of <size> bytes (so nothing to free). Return 0, or -1
 * when out of room.
 */
int pgsetup_argv_initdb(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                        size_t max, char *store, size_t size);
int pgsetup_argv_postgres(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                          size_t max, char *store, size_t size);
int pgsetup_argv_basebackup(const struct appconf *conf, const struct pgpaths *p,
                            const char *conninfo, const char *slot, const char **argv, size_t max,
                            char *store, size_t size);
int pgsetup_argv_rewind(const struct appconf *conf, const struct pgpaths *p, const char *conninfo,
                        const char **argv, size_t max, char *store, size_t size);
int pgsetup_argv_controldata(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                             size_t max, char *store, size_t size);

/*
 * After pg_basebackup or pg_rewind copied another member's data directory:
 * empties postgresql.auto.conf, removes a copied standby.signal or
 * recovery.signal, and writes standby.signal. Returns 0, or -1 with *err.
 */
int pgsetup_after_copy(const struct pgpaths *p, char **err) MFA_MUSTCHECK;

/* True when PGDATA holds a data directory (PG_VERSION exists). */
bool pgsetup_has_data(const struct pgpaths *p);

/* True when PGDATA has standby.signal: it starts as a standby. */
bool pgsetup_is_standby(const struct pgpaths *p);

/* Creates or removes standby.signal. Returns 0, or -1 with *err. */
int pgsetup_set_standby(const struct pgpaths *p, bool standby, char **err) MFA_MUSTCHECK;

/* What pg_controldata says of a data directory. */
struct pg_controldata {
    char system_identifier[24];
    char state[48];            /* "shut down", "shut down in recovery", "in production", ... */
    uint64_t checkpoint_lsn;   /* Latest checkpoint location */
    uint32_t checkpoint_tli;   /* Latest checkpoint's TimeLineID */
    uint64_t min_recovery_lsn; /* Minimum recovery ending location */
    uint32_t min_recovery_tli;
};

/*
 * Parses pg_controldata's report (untrusted text; lines "Name:   value").
 * Returns 0, or -1 with *err when a needed line is missing or malformed.
 */
int pgsetup_parse_controldata(const char *text, struct pg_controldata *out,
                              char **err) MFA_MUSTCHECK;

/*
 * Reads the postmaster's pid from PGDATA/postmaster.pid and checks that the
 * process is alive. Returns the pid, 0 when there is no live postmaster
 * (no file, a stale file), or -1 with *err when the file is unreadable or
 * malformed.
 */
pid_t pgsetup_read_pid(const struct pgpaths *p, char **err);

/* One line of a timeline history file: timeline <tli> ended at <switch_lsn>. */
struct tli_switch {
    uint32_t tli;
    uint64_t switch_lsn;
};

/*
 * Parses a timeline history file (untrusted: "<tli>\t<X/Y>\t<reason>" lines,
 * '#' comments, blank lines) into <out> (up to <max>). Returns the number of
 * entries, or -1 with *err.
 */
int pgsetup_parse_history(const char *text, struct tli_switch *out, size_t max,
                          char **err) MFA_MUSTCHECK;

/* Parses "X/Y" (hex halves) into *lsn. Returns 0, or -1. */
int lsn_parse(const char *s, uint64_t *lsn) MFA_MUSTCHECK;

/* Writes "X/Y" into <buf> (>= 18 bytes). Returns <buf>. */
const char *lsn_format(uint64_t lsn, char *buf, size_t size);

#endif
