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
 * ldap:// in clear; directory.url may list several servers, each of them
 * so). The server's certificate must chain to directory.ca_file (or the
 * system bundle, /etc/ssl/certs/ca-certificates.crt) and name the URL's
 * host. directory.timeout_ms bounds the connect and the TLS handshake (a
 * watchdog), each request (libldap's operation timeout) and each read or
 * write on the socket (SO_RCVTIMEO/SO_SNDTIMEO, TCP_USER_TIMEOUT and
 * keepalives), so a directory that vanishes or stalls in mid-answer cannot
 * hold a worker for longer than about that.
 *
 * libldap's own configuration (ldap.conf, ~/.ldaprc, ./ldaprc, LDAP* and
 * LDAPTLS_* variables) is never read: directory_lib_init() turns it off,
 * and every option comes from appliance.conf.
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "mem.h"

/* The advisory lock ("mfadirsy" as a number) a sync holds: one at a time, cluster-wide. */
#define DIRECTORY_LOCK_KEY "7882692138657428857"

/* directory.attributes: a name's bytes with its NUL, and the phone list's names (appconf.c checks).
 */
#define DIRECTORY_ATTR_NAME_MAX   128
#define DIRECTORY_PHONE_ATTRS_MAX 8

/*
 * directory.url is one URL or a list of them separated by commas and spaces
 * (as libldap splits one). Puts the next URL of <list> from *<pos> (0 at
 * first) into <out> of <size> and moves *pos past it. Returns 1, 0 at the
 * end of the list, or -1 when that URL is <size> bytes or longer (*pos past
 * it). appconf.c checks every URL with it; the connection tries them so.
 */
#define DIRECTORY_URL_MAX 512 /* a URL's bytes with its NUL */
int directory_url_next(const char *list, size_t *pos, char *out, size_t size);

/* The system's CA bundle, the trust when directory.ca_file is empty (never libldap's defaults). */
#define DIRECTORY_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/*
 * Turns libldap's own configuration files and environment off (LDAPNOINIT)
 * and makes its global state once. Call it in main() before any thread
 * starts (it sets an environment variable); the directory calls make it
 * themselves when a program did not (the unit tests).
 */
void directory_lib_init(void);

/* A directory entry, mapped to a user by directory.attributes. */
struct directory_user {
    char *dn;
    char *username;                     /* checked: a valid username */
    char *display_name, *email, *phone; /* "" when absent or invalid */
    unsigned invalid;                   /* DIRECTORY_INVALID_*: which of them were invalid */
    /* The username as the database folds it (lower()), set by the sync before it matches; NULL:
     * the username as it is. Matching and duplicates go by it, so C never folds a name. */
    char *key;
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
    char *key;    /* lower(username) from the database; NULL: the username as it is */
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
 * Active Directory answers in full. An entry that cannot be a user (no
 * username, more than one, a DN that is not UTF-8 or too long) is skipped
 * and reported in <report> ("skipped": [{dn, reason}]); duplicates are the
 * sync's to find (the database folds the names). <stop> (may be NULL) set
 * ends the fetch early with an error, the connection shut down at once.
 * Returns 0 with *users (*nusers), or -1 with *err (the directory could not
 * be reached, bound to or searched: the sync must then change nothing).
 */
int directory_fetch(const struct appconf *conf, const atomic_bool *stop,
                    struct directory_user **users, size_t *nusers, json_t *report,
                    char **err) MFA_MUSTCHECK;

void directory_users_free(struct directory_user *users, size_t n);

/*
 * Compares the directory with the database and decides, without touching
 * either. An entry and a user are the same when their keys (directory_user
 * .key, directory_current.key: the database's lower() of the username) are
 * equal; of entries with the same key the first is taken. The guard: an
 * empty directory result with directory users in the database is refused
 * (a broken directory or filter, not a mass departure); more DIR_DISABLE
 * steps than max(directory.max_disable_percent of the directory users now
 * enabled, directory.max_disable_min) is refused unless <force>. Pure:
 * unit-tested.
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
    /* May be NULL. Set (by another thread): the run ends at the next page or before it applies,
     * the LDAP connection shut down at once, as DIRECTORY_SYNC_STOPPED, with no row. */
    const atomic_bool *stop;
};

/* directory_sync_run()'s answer when another sync holds the lock: nothing done, no row. */
#define DIRECTORY_SYNC_BUSY 2
/* ... and when its stop flag was set: nothing applied (or rolled back), no row; the sync is not
 * done and is due again as it was (whatever error the stop caused: a cancelled statement, a shut
 * down LDAP socket). */
#define DIRECTORY_SYNC_STOPPED 3

/*
 * One whole sync on <conn>, a connection to the writable primary: takes the
 * advisory lock (another sync running: DIRECTORY_SYNC_BUSY, nothing done),
 * fetches, plans and applies the plan in ONE transaction with
 * synchronous_commit remote_apply, touching only display_name, email, phone,
 * disabled, source and the directory_* columns of the sync's own users (and
 * of local ones it adopts) — never a PIN, method or token. Every outcome
 * (ok, refused, failed, dry_run) leaves a directory_syncs row with the
 * report, except the busy one, a stopped one and a database below schema 3.
 *
 * *report (always set, also on failure; the caller frees it) is
 * {"result": "ok"|"refused"|"failed"|"dry_run"|"busy"|"stopped", "created": N, "updated": N,
 * "enabled": N, "disabled": N, "adopted": N, "unchanged": N, "conflicts":
 * [username], "skipped": [{dn, reason}], "invalid": [{dn, username, field,
 * reason}] (values left as stored), "changes": [{"username", "change"}],
 * "reason"?: sentence, "directory_users": N, "started_at", "finished_at"}.
 * Each list holds at most 1000 items; past that "<list>_more" (e.g.
 * "changes_more") counts the rest (the counts above are whole). A refused or dry run reports what
 * it would have done; a failed one has its error as "reason". Returns 0 when the sync ran (ok or
 * dry_run), 1 when refused, DIRECTORY_SYNC_BUSY (with *err "another
 * directory sync is running") when another sync holds the lock,
 * DIRECTORY_SYNC_STOPPED (with *err) when opts->stop ended it, -1 with
 * *err when it failed (the directory, the database, or a database below
 * schema 3: no row for that one either).
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
