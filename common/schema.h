/*
 * The database schema: numbered SQL migrations (common/schema/NNN_name.sql,
 * compiled into the library) and the call that applies them on the primary.
 *
 * Migrations are additive across one release, so a program of schema V works
 * against a database at V-1, V or V+1 (a rolling upgrade). Each migration runs
 * in its own transaction with its row in schema_version, under an advisory
 * lock, so two callers never apply one twice and a failure leaves nothing
 * half-written.
 */
#ifndef MFA_SCHEMA_H
#define MFA_SCHEMA_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "mem.h"

struct schema_migration {
    int version;
    const char *name;
    const char *sql;
};

/* Generated from the .sql files, in version order 1..count. */
extern const struct schema_migration schema_migrations[];
extern const int schema_migration_count;

/* The schema version this build was made for. */
int schema_latest(void);

/*
 * The oldest and newest database versions this build works against:
 * schema_latest() - 1 and + 1 (a rolling upgrade's one release either way).
 */
int schema_min(void);
int schema_max(void);

/* True when this build can work against a database at <db_version>. */
bool schema_compatible(int db_version);

/* The advisory lock key ("mfaschem" as a number) migrations are applied under: holding it keeps
 * them out. */
#define SCHEMA_LOCK_KEY "7882697064710159693"

/*
 * Reads the database's schema version into *version (0 for an empty
 * database). Blocking libpq: run it before the event loop or on a worker
 * thread. Returns 0 or -1 with *err.
 */
int schema_version(PGconn *conn, int *version, char **err) MFA_MUSTCHECK;

/*
 * Applies every migration newer than the database's version. A database
 * newer than this build is left alone (rolling upgrade). Blocking libpq, as
 * schema_version(). Returns the number of migrations applied (0 when none
 * were due) and the resulting version in *version, or -1 with *err; a failed
 * migration is rolled back whole.
 */
int schema_apply(PGconn *conn, int *version, char **err) MFA_MUSTCHECK;

#endif
