/*
 * Users from the company directory (LDAP, Active Directory): the sync that
 * creates, updates and disables this cluster's users from it, and the bind
 * that checks a user's directory password (docs/directory.md).
 *
 * Everything here BLOCKS (libldap's synchronous calls, blocking libpq): a
 * daemon runs it on a worker thread (worker.h), mfactl directly. Each call
 * opens its own LDAP connection and closes it; nothing is shared between
 * threads but the read-only configuration.
 *
 * Transport: ldaps://, or ldap:// with StartTLS required (appconf.c refuses
 * ldap:// in clear). The server's certificate must chain to
 * directory.ca_file (or the system trust store) and name the URL's host.
 * Every operation has directory.timeout_ms as its deadline (network and
 * operation timeouts), so a directory that vanishes cannot hold a worker.
 *
 * What comes from the directory is untrusted: every value is checked against
 * the same rules as the API's (users_check_*: username, display name, e-mail,
 * phone). An entry whose username is missing or invalid is skipped and
 * reported; an invalid optional value is left empty, flagged in
 * directory_user.invalid and reported, and the sync keeps the stored value.
 */
#ifndef MFA_DIRECTORY_H
#define MFA_DIRECTORY_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "mem.h"

/* The advisory lock ("mfadirsy" as a number) a sync holds: one at a time, cluster-wide. */
#define DIRECTORY_LOCK_KEY "7882692138657428857"

/* A directory entry, mapped to a user by directory.attributes. */
struct directory_user {
    char *dn;
    char *username;                     /* checked: a valid username */
    char *display_name, *email, *phone; /* "" when absent or invalid */
    unsigned invalid;                   /* DIRECTORY_INVALID_*: which of them were invalid */
};

/* An invalid value is reported and leaves the stored one as it is (a typo in the directory
 * must not wipe a user's phone); a new user gets "". */
#define DIRECTORY_INVALID_DISPLAY_NAME 1u
#define DIRECTORY_INVALID_EMAIL        2u
#define DIRECTORY_INVALID_PHONE        4u

/* A user of the database as the sync sees it (users with source 'directory', or a local one of
 * the same name). */
struct directory_current {
    char *username;
    char *dn;                           /* "" when none */
    char *display_name, *email, *phone; /* as stored */
    bool local;                         /* source 'local' */
    bool disabled;
    bool missing; /* directory_missing_since is set: the sync disabled it */
};

enum directory_change {
    DIR_UNCHANGED = 0,
    DIR_CREATE,   /* new user: source 'directory', directory.default_method, no PIN, enabled */
    DIR_UPDATE,   /* dn, display name, e-mail or phone differ: updated */
    DIR_ENABLE,   /* back in the directory after a sync disabled it (and maybe updated) */
    DIR_DISABLE,  /* gone from the directory: disabled, directory_missing_since set */
    DIR_ADOPT,    /* a local user of that name becomes a directory user (directory.adopt_local) */
    DIR_CONFLICT, /* a local user of that name, adopt_local off: left alone, reported */
};

/* One line of a sync's plan. */
struct directory_step {
    enum directory_change change;
    const struct directory_user *entry;      /* NULL for DIR_DISABLE */
    const struct directory_current *current; /* NULL for DIR_CREATE */
};

struct directory_plan {
    struct directory_step *steps;
    size_t nsteps;
    size_t counts[DIR_CONFLICT + 1]; /* by enum directory_change */
    bool refused;                    /* the guard said no: nothing may be applied */
    char reason[256];                /* why, for the operator, when refused */
};

/*
 * Reads every user entry: under directory.base_dn (directory.scope) matching
 * directory.filter, and, when directory.group_dn is set, among that group's
 * members (its member and uniqueMember DNs). Paged (RFC 2696) so a large
 * Active Directory answers in full. Usernames are unique case-insensitively:
 * a second entry with the same one is skipped and reported in <report>
 * ("skipped": [{dn, reason}]). Returns 0 with *users (*nusers), or -1 with
 * *err (the directory could not be reached, bound to or searched: the sync
 * must then change nothing).
 */
int directory_fetch(const struct appconf *conf, struct directory_user **users, size_t *nusers,
                    json_t *report, char **err) MFA_MUSTCHECK;

void directory_users_free(struct directory_user *users, size_t n);

/*
 * Compares the directory with the database and decides, without touching
 * either. The guard: an empty directory result with directory users in the
 * database is refused (a broken directory or filter, not a mass departure);
 * more DIR_DISABLE steps than directory.max_disable_percent of the directory
 * users now enabled is refused unless <force>. Pure: unit-tested.
 */
int directory_plan_make(const struct appconf *conf, const struct directory_user *users,
                        size_t nusers, const struct directory_current *current, size_t ncurrent,
                        bool force, struct directory_plan *plan) MFA_MUSTCHECK;

void directory_plan_free(struct directory_plan *plan);

enum directory_trigger {
    DIRECTORY_TRIGGER_SCHEDULE = 0, /* the node on the primary, every directory.interval_s */
    DIRECTORY_TRIGGER_MFACTL,       /* mfactl directory sync */
};

struct directory_sync_opts {
    enum directory_trigger trigger;
    const char *node_id; /* who ran it, for the directory_syncs row */
    bool dry_run;        /* plan and report, change nothing (the row says "dry_run") */
    bool force;          /* past the max_disable_percent guard (never past an empty result) */
};

/*
 * One whole sync on <conn>, a connection to the writable primary: takes the
 * advisory lock (another sync running: -1, "another directory sync is
 * running"), fetches, plans and applies the plan in ONE transaction with
 * synchronous_commit remote_apply, touching only display_name, email, phone,
 * disabled, source and the directory_* columns — never a PIN, method or
 * token. Every outcome (ok, refused, failed, dry_run) leaves a
 * directory_syncs row with the report.
 *
 * *report (always set, also on failure; the caller frees it) is
 * {"result": "ok"|"refused"|"failed"|"dry_run", "created": N, "updated": N,
 * "enabled": N, "disabled": N, "adopted": N, "unchanged": N, "conflicts":
 * [username], "skipped": [{dn, reason}], "invalid": [{dn, username, field,
 * reason}] (values left as stored), "changes": [{"username", "change"}],
 * "reason"?: sentence, "directory_users": N, "started_at", "finished_at"}.
 * Each list holds at most 1000 items; past that "<list>_more" (e.g.
 * "changes_more") counts the rest (the counts above are whole). A refused or dry run reports what
 * it would have done; a failed one has its error as "reason". Returns 0 when the sync ran (ok or
 * dry_run), 1 when refused, -1 with *err when it failed (the directory, the
 * database, the lock held by another sync, or a database below schema 3,
 * the one case without a directory_syncs row).
 */
int directory_sync_run(PGconn *conn, const struct appconf *conf,
                       const struct directory_sync_opts *opts, json_t **report,
                       char **err) MFA_MUSTCHECK;

/*
 * Checks <password> for the entry <dn> by a simple bind as it, on a
 * connection of its own (directory.url, TLS as above). An empty password is
 * refused before any bind (LDAP takes it as an anonymous bind that
 * "succeeds"), as is a password longer than DIRECTORY_PASSWORD_MAX.
 * Returns 1 (right), 0 (wrong: invalid credentials, or the account is
 * locked or disabled there), or -1 with *err (the directory could not be
 * reached: not the user's fault, not counted as a failure).
 */
#define DIRECTORY_PASSWORD_MAX 128
int directory_bind_check(const struct appconf *conf, const char *dn, const char *password,
                         char **err) MFA_MUSTCHECK;

/*
 * Reads the first line of <path> (directory.bind_password_file,
 * email.password_file) into <out>, without its line end. The file must be a
 * regular file, not readable by others (mode & 007 == 0). Returns 0, or -1
 * with *err naming the file.
 */
int directory_read_secret_file(const char *path, char *out, size_t size, char **err) MFA_MUSTCHECK;

#endif
