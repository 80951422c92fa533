/*
 * mfactl restore FILE (backup_cmd.h, docs/backup.md).
 *
 * The cheap refusals come first (this member or another has data, and no
 * --force), then the whole file is read and verified with the passphrase,
 * the dump decrypted into an unlinked temporary file (gone with mfactl,
 * however it stops), before anything is changed; then the refusals again.
 *
 * On a fresh appliance (no data here, no member answering with data) it
 * reuses `setup --primary`'s machinery (setup_priv.h): the key file of the
 * backup, the one-shot bootstrap permission, mfa-replicator started and
 * waited for until this member is a writable primary whose replicator has
 * made the roles, the database and the schema ("setup_done"). A marker,
 * RESTORE_PENDING in appliance.data_dir, is written before that and removed
 * on success: a restore interrupted after the bootstrap finds it and runs
 * again as on a fresh appliance. Over a live cluster only with --force,
 * and only when its key file is the backup's and its schema version the
 * backup's.
 *
 * The data goes in ONE transaction: mfactl sends psql "BEGIN", what to do
 * first (fresh: DROP OWNED BY CURRENT_USER; --force: keep the live HOTP
 * counters, TOTP steps and audit rows aside), then relays pg_restore's SQL
 * script, then what to do after (--force: take the greater counters back
 * and re-insert the newer audit rows) and "COMMIT" only once pg_restore has
 * succeeded. Whatever stops it before — an error, mfactl killed — psql's
 * connection ends inside the transaction and PostgreSQL rolls all of it
 * back. Meanwhile mfactl's own connection holds the schema's advisory lock
 * (common/schema.c), so a replicator's schema_apply() waits; then it runs
 * schema_apply() itself to bring an older backup to this release.
 *
 * Passwords reach psql through PGPASSWORD in the child's environment only.
 */
#include "backup_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "backup_file.h"
#include "backup_priv.h"
#include "dbconn.h"
#include "errmsg.h"
#include "keyfile.h"
#include "schema.h"
#include "secrets.h"
#include "setup_priv.h"

#define RESTORE_WAIT_S  600 /* the other members may have to join first (a fenced primary) */
#define RESTORE_PENDING "restore.pending"
#define RELAY_BUF       65536
#define RESTORE_TRIES   5 /* a fresh primary that fences meanwhile: wait and run it again */
#define READ_ONLY_TEXT  "read-only transaction" /* lc_messages = 'C' (pgsetup.c) */

static const char restore_usage[] =
    "usage: mfactl [-c FILE] restore FILE [--passphrase-file F] [--force] [--no-start]\n"
    "                                [--wait S] [--json]\n"
    "\n"
    "On a fresh appliance (after `mfactl setup --primary ... --no-start`): verifies\n"
    "FILE, installs its key file, lets mfa-replicator create the cluster, waits (S,\n"
    "default 600) until this member is the writable primary, restores the data in\n"
    "one transaction, brings the schema to this release, starts mfa-node and\n"
    "mfa-balancer. The other members then join it (`mfactl setup --join`).\n"
    "--no-start: start nothing (start mfa-replicator yourself; the command waits\n"
    "for it). Refused (exit 3, nothing changed) when this member or another has\n"
    "data, or a member answers in a way that cannot be trusted, unless --force,\n"
    "which restores into the live primary and needs the backup's key file and\n"
    "schema version to be this cluster's.\n";

/* Kept aside before a --force restore (pg_temp: gone with psql's session). */
static const char force_before[] =
    "CREATE TEMP TABLE mfa_live_tokens AS SELECT serial, counter, last_step FROM "
    "public.oath_tokens;\n"
    "CREATE TEMP TABLE mfa_live_auth AS SELECT * FROM public.auth_log;\n"
    "CREATE TEMP TABLE mfa_live_audit AS SELECT * FROM public.admin_audit;\n"
    "CREATE TEMP TABLE mfa_live_seq AS SELECT\n"
    "  pg_sequence_last_value(pg_get_serial_sequence('public.auth_log', 'id')::regclass) AS auth,\n"
    "  pg_sequence_last_value(pg_get_serial_sequence('public.admin_audit', 'id')::regclass) AS "
    "audit;\n";

/*
 * After it, in the same transaction: a HOTP counter or TOTP step never goes
 * back (DESIGN §2: counters merge by the maximum; a used code stays used),
 * and no audit row written since the backup is lost. auth_log rows are told
 * apart by their origin (node_id, boot_epoch, seq), admin_audit rows by id.
 */
static const char force_after[] =
    "UPDATE public.oath_tokens t SET counter = GREATEST(t.counter, l.counter),\n"
    "  last_step = GREATEST(t.last_step, l.last_step)\n"
    "  FROM pg_temp.mfa_live_tokens l WHERE t.serial = l.serial;\n"
    "INSERT INTO public.auth_log OVERRIDING SYSTEM VALUE SELECT * FROM pg_temp.mfa_live_auth\n"
    "  ON CONFLICT DO NOTHING;\n"
    "INSERT INTO public.admin_audit OVERRIDING SYSTEM VALUE SELECT * FROM pg_temp.mfa_live_audit "
    "a\n"
    "  WHERE NOT EXISTS (SELECT 1 FROM public.admin_audit b WHERE b.id = a.id);\n"
    "SELECT setval(pg_get_serial_sequence('public.auth_log', 'id'),\n"
    "  GREATEST((SELECT max(id) FROM public.auth_log), (SELECT auth FROM pg_temp.mfa_live_seq), "
    "1));\n"
    "SELECT setval(pg_get_serial_sequence('public.admin_audit', 'id'),\n"
    "  GREATEST((SELECT max(id) FROM public.admin_audit), (SELECT audit FROM "
    "pg_temp.mfa_live_seq), "
    "1));\n";

struct restore_opts {
    const char *file, *pass_file;
    bool force, no_start, json;
    int wait_s;
    int json_out; /* with --json: the real stdout; progress goes to stderr meanwhile */
};

/* The marker's path into <buf>. */
static void pending_path(const struct appconf *c, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", c->appliance.data_dir, RESTORE_PENDING);
}

static bool restore_pending(const struct appconf *c)
{
    char path[4200];

    pending_path(c, path, sizeof(path));
    return setup_exists(path);
}

/* Writes <len> bytes of <buf> to <fd>. Returns 0, or -1 (errno set). */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, buf, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        buf += k;
        len -= (size_t)k;
    }
    return 0;
}

/*
 * pg_restore's script relayed into psql's stdin (<to>) from <from>, until
 * its end. Returns 0, or -1 when psql stopped reading (it failed; its
 * stderr says why) or reading failed.
 */
static int relay(int from, int to)
{
    char *buf = malloc(RELAY_BUF);
    ssize_t n;
    int rc = 0;

    if (!buf)
        return -1;
    while ((n = read(from, buf, RELAY_BUF)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write_all(to, buf, (size_t)n) < 0) {
            rc = -1;
            break;
        }
    }
    OPENSSL_cleanse(buf, RELAY_BUF); /* the data in clear */
    free(buf);
    return rc;
}

/*
 * The restore transaction: pg_restore turns the verified dump on <dump_fd>
 * into SQL; psql runs "BEGIN", <before>, that script, <after> and "COMMIT"
 * against <t> with ON_ERROR_STOP. COMMIT is sent only once pg_restore has
 * exited 0: on any failure psql is killed inside the transaction and
 * nothing is changed. With <clean>, pg_restore drops each object before
 * making it again. Returns 0, or -1 with *err (and *read_only when the
 * server refused to write: the primary fenced meanwhile).
 */
static int run_restore(const struct appconf *c, const struct keyring *kr,
                       const struct dbconn_target *t, int dump_fd, const char *tmpdir, bool clean,
                       const char *before, const char *after, bool *read_only, char **err)
{
    char pg_restore[4200], psql[4200], conninfo[2048], password[DB_PASSWORD_MAX + 256], line[512];
    const char *restore_argv[] = { pg_restore,    "--no-owner", "--no-privileges",
                                   "-f",          "-",          clean ? "--clean" : NULL,
                                   "--if-exists", NULL };
    const char *psql_argv[] = { psql, "-X",     "-q", "-v", "ON_ERROR_STOP=1",
                                "-d", conninfo, "-f", "-",  NULL };
    int script[2] = { -1, -1 }, in[2] = { -1, -1 }, restore_err = -1, psql_err = -1, devnull = -1;
    int restore_st = -1, psql_st = -1, rc = -1;
    pid_t restore_pid = -1, psql_pid = -1;
    bool relayed;

    *read_only = false;
    snprintf(pg_restore, sizeof(pg_restore), "%s/pg_restore", c->replicator.pg_bin);
    snprintf(psql, sizeof(psql), "%s/psql", c->replicator.pg_bin);
    if (lseek(dump_fd, 0, SEEK_SET) < 0)
        return err_set(err, "cannot read the decrypted dump back: %s", strerror(errno));
    if (dbconn_conninfo(c, t, "restore", conninfo, sizeof(conninfo), err) < 0 ||
        dbconn_password(c, kr, password, sizeof(password), err) < 0)
        goto done;
    restore_err = backup_anon_file(tmpdir, err);
    psql_err = restore_err < 0 ? -1 : backup_anon_file(tmpdir, err);
    if (psql_err < 0)
        goto done;
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(script, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0) {
        err_set(err, "cannot make pipes: %s", strerror(errno));
        goto done;
    }
    psql_pid = backup_spawn_pg(psql_argv, password, in[0], devnull, psql_err);
    restore_pid =
        psql_pid < 0 ? -1 : backup_spawn_pg(restore_argv, "", dump_fd, script[1], restore_err);
    close(in[0]);
    close(script[1]);
    in[0] = script[1] = -1;
    if (restore_pid < 0) {
        err_set(err, "cannot fork: %s", strerror(errno));
        goto done;
    }
    relayed = write_all(in[1], "BEGIN;\n", 7) == 0 &&
              write_all(in[1], before, strlen(before)) == 0 && relay(script[0], in[1]) == 0;
    close(script[0]); /* pg_restore gets EPIPE if psql stopped early */
    script[0] = -1;
    restore_st = backup_wait_child(restore_pid);
    restore_pid = -1;
    if (relayed && restore_st == 0 && write_all(in[1], after, strlen(after)) == 0 &&
        write_all(in[1], "COMMIT;\n", 8) == 0) {
        close(in[1]); /* psql runs the COMMIT, then ends with its input */
        in[1] = -1;
        psql_st = backup_wait_child(psql_pid);
        psql_pid = -1;
        if (psql_st == 0) {
            rc = 0;
            goto done;
        }
    }
    if (psql_pid > 0) {
        kill(psql_pid, SIGKILL); /* inside the transaction: PostgreSQL rolls it back */
        psql_st = backup_wait_child(psql_pid);
        psql_pid = -1;
    }
    backup_last_line(psql_err, line, sizeof(line));
    *read_only = strstr(line, READ_ONLY_TEXT) != NULL;
    if (*line && psql_st != 0 && psql_st != 128 + SIGKILL) {
        err_set(err, "psql failed (exit %d; rolled back, the database is as it was): %s", psql_st,
                line);
    } else {
        backup_last_line(restore_err, line, sizeof(line));
        err_set(err, "pg_restore failed (exit %d; rolled back, the database is as it was): %s",
                restore_st, *line ? line : "no message");
    }
done:
    if (restore_pid > 0) {
        kill(restore_pid, SIGKILL);
        backup_wait_child(restore_pid);
    }
    if (psql_pid > 0) {
        kill(psql_pid, SIGKILL);
        backup_wait_child(psql_pid);
    }
    for (size_t i = 0; i < 2; i++) {
        if (script[i] >= 0)
            close(script[i]);
        if (in[i] >= 0)
            close(in[i]);
    }
    if (devnull >= 0)
        close(devnull);
    if (restore_err >= 0)
        close(restore_err);
    if (psql_err >= 0)
        close(psql_err);
    secret_wipe(password, sizeof(password));
    return rc;
}

/* The restored row counts and the schema, printed (or as JSON). */
static int print_result(PGconn *conn, const struct dbconn_target *t, const struct restore_opts *o,
                        const struct backup_manifest *m, int version, int applied, char **err)
{
    PGresult *res = PQexec(conn, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
                                 "oath_tokens), (SELECT count(*) FROM auth_log)");

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        dbconn_result_error(res, "counting the restored rows", err);
        PQclear(res);
        return -1;
    }
    if (o->json) {
        json_t *j;

        fflush(stdout);
        dup2(o->json_out, STDOUT_FILENO);
        j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:{s:I, s:I, s:I}}", "file", o->file,
                      "member", t->id, "from_member", m->member, "created_at", m->created_at,
                      "schema_version", version, "migrations", applied, "force", o->force, "rows",
                      "users", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "oath_tokens",
                      (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10), "auth_log",
                      (json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10));
        if (j)
            json_dumpf(j, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        printf("\n");
        fflush(stdout);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        json_decref(j);
    } else {
        printf("done  restored into member %s: users %s, oath_tokens %s, auth_log %s; schema "
               "version %d (%d migration%s applied)\n",
               t->id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), version,
               applied, applied == 1 ? "" : "s");
    }
    PQclear(res);
    return 0;
}

/* An admin_audit row "backup.restore" for the restore just made. Returns 0, or -1 with *err. */
static int audit_restore(PGconn *conn, const struct appconf *c, const struct restore_opts *o,
                         const struct backup_manifest *m, char **err)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "created_at", m->created_at, "from_member",
                          m->member, "release", m->release, "force", o->force);
    char *detail = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int rc = -1;

    json_decref(j);
    if (!detail)
        return err_set(err, "out of memory");
    if (dbconn_begin_write(conn, err) == 0) {
        if (dbconn_audit(conn, c, "backup.restore", o->file, detail, err) == 0)
            rc = dbconn_commit(conn, err);
        else
            dbconn_rollback(conn);
    }
    free(detail);
    return rc;
}

/*
 * Everything that changes the database at <t>, under the schema's advisory
 * lock held by this session: the schema check (--force: only the live
 * version), the restore transaction, schema_apply(), the audit row and the
 * counts. <fresh>: the database holds only what the replicator made, which
 * goes first (a backup of an older schema must not meet the newer
 * migrations' objects). Returns mfactl's exit code with *err, and
 * *read_only when the primary would not write (fenced meanwhile).
 */
static int restore_into(const struct appconf *c, const struct keyring *kr,
                        const struct dbconn_target *t, int dump_fd, const char *tmpdir, bool fresh,
                        const struct restore_opts *o, const struct backup_manifest *m,
                        bool *read_only, char **err)
{
    PGconn *conn = dbconn_open(c, kr, t, "restore", err);
    PGresult *res;
    int live = 0, version = 0, applied, rc = DBCONN_EXIT_FAILED;

    if (!conn)
        return DBCONN_EXIT_FAILED;
    res = PQexec(conn, "SELECT pg_advisory_lock(" SCHEMA_LOCK_KEY ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "taking the schema lock", err);
        PQclear(res);
        goto done;
    }
    PQclear(res);
    if (schema_version(conn, &live, err) < 0)
        goto done;
    if (!fresh && live != m->schema_version) {
        err_set(err,
                "the backup's schema version %d is not the live cluster's (%d): --force restores "
                "only a backup of the same schema; restore it on a fresh appliance",
                m->schema_version, live);
        rc = DBCONN_EXIT_REFUSED;
        goto done;
    }
    printf("restore into member %s (one transaction%s)\n", t->id,
           fresh ? "" : "; the live HOTP counters, TOTP steps and newer audit rows are kept");
    fflush(stdout);
    if (run_restore(c, kr, t, dump_fd, tmpdir, !fresh,
                    fresh ? "DROP OWNED BY CURRENT_USER;\n" : force_before,
                    fresh ? "" : force_after, read_only, err) < 0)
        goto done;
    applied = schema_apply(conn, &version, err);
    if (applied < 0) {
        err_prefix(err, "the data is restored but the schema could not be brought to this "
                        "release");
        goto done;
    }
    if (audit_restore(conn, c, o, m, err) < 0 ||
        print_result(conn, t, o, m, version, applied, err) < 0)
        goto done;
    rc = DBCONN_EXIT_OK;
done:
    PQfinish(conn); /* and the advisory lock with it */
    return rc;
}

/* systemctl <verb> of <units> (NULL-terminated, at most 4). Returns 0, or -1. */
static int systemctl(const char *verb, const char *const *units)
{
    const char *argv[8] = { "systemctl", verb };
    size_t n = 2;

    if (strcmp(verb, "enable") == 0)
        argv[n++] = "--now";
    for (size_t i = 0; units[i] && n < 7; i++)
        argv[n++] = units[i];
    argv[n] = NULL;
    printf("start systemctl %s", verb);
    for (size_t i = 2; i < n; i++)
        printf(" %s", argv[i]);
    printf("\n");
    return setup_run_program(argv);
}

/*
 * The fresh case: the marker, key file, permission (not when an
 * interrupted restore's cluster exists, <have_data>: a permission left
 * lying would let a wiped member start a cluster alone later),
 * mfa-replicator, and the wait until this member is a writable primary
 * with its setup done. Returns mfactl's exit code.
 */
static int restore_bootstrap(const char *config, const struct appconf *c, const char *keytext,
                             const struct restore_opts *o, bool have_data, char **err)
{
    static const char *const replicator[] = { "mfa-replicator.service", NULL };
    struct setup_owner owner = setup_daemon_owner(c);
    char marker[4200];

    pending_path(c, marker, sizeof(marker));
    if (setup_make_data_dir(c->appliance.data_dir, &owner, err) < 0 ||
        setup_write_file(marker, o->file, strlen(o->file), 0600, NULL, err) < 0 ||
        (!have_data && setup_write_allow(c, c->appliance.member, &owner, err) < 0) ||
        setup_make_parent(c->appliance.key_file, err) < 0 ||
        setup_write_file(c->appliance.key_file, keytext, strlen(keytext), 0600, &owner, err) < 0)
        return DBCONN_EXIT_FAILED;
    setup_say("key file (the backup's)", "made", c->appliance.key_file);
    if (o->no_start) {
        printf("next: start mfa-replicator on this member (systemctl start mfa-replicator); it "
               "creates the cluster and this command waits for it\n");
        fflush(stdout);
    } else if (systemctl("enable", replicator) < 0) {
        err_set(err, "systemctl failed; see journalctl -u mfa-replicator");
        return DBCONN_EXIT_FAILED;
    }
    return setup_wait_role(config, true, true, o->wait_s ? o->wait_s : RESTORE_WAIT_S);
}

/*
 * Whether this restore is over live data: this member's (unless an
 * interrupted restore left it, RESTORE_PENDING) or another member's
 * (setup_check_others(), which also refuses an answer it cannot trust).
 * Sets *live, with the reason in *err, and *pending.
 */
static void find_live(const char *config, const struct appconf *c, bool *live, bool *pending,
                      char **err)
{
    *pending = restore_pending(c);
    *live = setup_has_data(c) && !*pending;
    if (*live)
        err_set(err, "this member has data (%s)", c->appliance.data_dir);
    else if (setup_check_others(config, true, err) < 0)
        *live = true;
    else if (*pending)
        printf("note  %s/%s: an earlier restore was interrupted; this one replaces its data\n",
               c->appliance.data_dir, RESTORE_PENDING);
}

/* *same: whether this member's key file holds the keys of <kr>. Returns 0, or -1 with *err. */
static int key_file_same(const struct appconf *c, const struct keyring *kr, bool *same, char **err)
{
    struct keyring have;

    if (keyfile_load(c->appliance.key_file, &have, err) < 0)
        return -1;
    *same = keyring_equal(&have, kr);
    keyring_wipe(&have);
    return 0;
}

/*
 * Where the data goes: with no data anywhere, this member after the
 * bootstrap; with --force and the same keys, the live primary. Returns
 * mfactl's exit code with *t filled, or another with *err.
 */
static int restore_target(const char *config, const struct appconf *c, const struct keyring *kr,
                          const char *keytext, const struct restore_opts *o,
                          struct dbconn_target *t, bool *fresh, char **err)
{
    bool live, pending, same;
    int rc;

    find_live(config, c, &live, &pending, err);
    if (live && !o->force) {
        err_prefix(err, "restoring here would replace a live cluster's data; --force restores "
                        "into its primary");
        return DBCONN_EXIT_REFUSED;
    }
    *fresh = !live;
    if (!live) {
        /* an interrupted restore's data: only the same keys, else the node role's password differs
         */
        if (pending && setup_has_data(c)) {
            if (key_file_same(c, kr, &same, err) < 0)
                return DBCONN_EXIT_REFUSED;
            if (!same) {
                err_set(err,
                        "an interrupted restore of a backup with other keys left data here: "
                        "stop mfa-replicator, remove %s/pgdata and %s/%s, and run it again",
                        c->appliance.data_dir, c->appliance.data_dir, RESTORE_PENDING);
                return DBCONN_EXIT_REFUSED;
            }
        }
        mfa_free(*err);
        *fresh = true;
        rc = restore_bootstrap(config, c, keytext, o, pending && setup_has_data(c), err);
        if (rc != DBCONN_EXIT_OK)
            return rc;
        return dbconn_find(config, DBCONN_PRIMARY, c->appliance.member, t, err);
    }
    mfa_free(*err);
    if (key_file_same(c, kr, &same, err) < 0)
        return DBCONN_EXIT_REFUSED;
    if (!same) {
        err_set(err,
                "the backup's key file is not this cluster's (%s): its PINs and seeds would not "
                "open here; restore it on a fresh appliance",
                c->appliance.key_file);
        return DBCONN_EXIT_REFUSED;
    }
    printf("force restore into the live cluster's primary (same key file)\n");
    return dbconn_find(config, DBCONN_PRIMARY, NULL, t, err);
}

/*
 * Where the decrypted dump goes: TMPDIR when set (the operator's choice),
 * else appliance.data_dir — on the data disk, which has room for the
 * database anyway, and not a small tmpfs /tmp.
 */
static const char *dump_dir(const struct appconf *c)
{
    const char *t = getenv("TMPDIR");

    return t && *t ? t : c->appliance.data_dir;
}

/*
 * The whole of `mfactl restore FILE`. <pass> is the checked passphrase;
 * the caller wipes it. Returns mfactl's exit code, the error said on stderr.
 */
static int restore_run(const char *config, struct restore_opts *o, const char *pass)
{
    static const char *const rest[] = { "mfa-node.service", "mfa-balancer.service", NULL };
    struct appconf c;
    struct keyring kr;
    struct backup_manifest m;
    struct dbconn_target t;
    char *err = NULL, *keytext = malloc(BACKUP_KEYFILE_MAX), marker[4200];
    int rc = DBCONN_EXIT_USAGE, in = -1, dump = -1, got, tries = 0;
    bool loaded = false, fresh = false, live, pending, read_only = false;

    memset(&kr, 0, sizeof(kr));
    o->json_out = -1;
    if (o->json) {
        fflush(stdout);
        o->json_out = dup(STDOUT_FILENO);
        if (o->json_out >= 0)
            dup2(STDERR_FILENO, STDOUT_FILENO);
    }
    if (!keytext || setup_load_conf(config, &c, &err) < 0)
        goto out;
    loaded = true;
    in = open(o->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (in < 0) {
        err_set(&err, "cannot open %s: %s", o->file, strerror(errno));
        goto out;
    }

    /* The cheap refusals before a large file is read and decrypted. */
    rc = DBCONN_EXIT_REFUSED;
    if (!o->force) {
        find_live(config, &c, &live, &pending, &err);
        if (live) {
            err_prefix(&err, "restoring here would replace a live cluster's data; --force "
                             "restores into its primary");
            goto out;
        }
        mfa_free(err);
    }
    rc = DBCONN_EXIT_FAILED;
    dump = backup_anon_file(dump_dir(&c), &err);
    if (dump < 0) {
        err_prefix(&err, "the decrypted dump (set TMPDIR to a directory with room for it)");
        goto out;
    }

    /* Every check first: a refusal changes nothing. */
    got = backup_read(in, pass, dump, &m, keytext, BACKUP_KEYFILE_MAX, &err);
    if (got < 0) {
        err_prefix(&err, "%s", o->file);
        rc = got == -2 ? DBCONN_EXIT_FAILED : DBCONN_EXIT_REFUSED;
        goto out;
    }
    rc = DBCONN_EXIT_REFUSED;
    if (keyfile_parse(keytext, &kr, &err) < 0) {
        err_prefix(&err, "%s: the key file in it", o->file);
        goto out;
    }
    if (m.schema_version > schema_max()) {
        err_set(&err,
                "%s holds schema version %d, newer than this release can restore (%d): use "
                "mfactl of release %s or later",
                o->file, m.schema_version, schema_latest(), m.release);
        goto out;
    }
    backup_print_manifest("verified", o->file, &m, false, 0);
    if (strcmp(m.cluster, c.cluster.name) != 0)
        printf("note  the backup is of cluster \"%s\"; this configuration names \"%s\" (the "
               "data and keys are restored all the same)\n",
               m.cluster, c.cluster.name);
    rc = restore_target(config, &c, &kr, keytext, o, &t, &fresh, &err);
    while (rc == DBCONN_EXIT_OK) {
        rc = restore_into(&c, &kr, &t, dump, dump_dir(&c), fresh, o, &m, &read_only, &err);
        /*
         * A fresh primary alone of three is writable until cluster.fence_after
         * passes without a majority: the rolled-back restore waits for the
         * other members to join and runs again.
         */
        if (rc == DBCONN_EXIT_OK || !fresh || !read_only || ++tries >= RESTORE_TRIES)
            break;
        printf("wait  member %s fenced itself during the restore (rolled back): join the other "
               "members now; it runs again once this member is writable\n",
               t.id);
        mfa_free(err);
        rc = setup_wait_role(config, true, true, o->wait_s ? o->wait_s : RESTORE_WAIT_S);
        if (rc != DBCONN_EXIT_OK)
            err_set(&err, "this member did not become writable again");
    }
    if (rc != DBCONN_EXIT_OK)
        goto out;
    if (fresh) {
        pending_path(&c, marker, sizeof(marker));
        if (unlink(marker) < 0 && errno != ENOENT)
            fprintf(stderr, "mfactl restore: cannot remove %s: %s\n", marker, strerror(errno));
    }
    if (fresh && !o->no_start && systemctl("enable", rest) < 0) {
        err_set(&err, "systemctl failed; see journalctl -u mfa-node");
        rc = DBCONN_EXIT_FAILED;
    } else if (fresh) {
        printf("next: %son every other member whose data was wiped, `mfactl setup --invite ID "
               "--address ADDR` here and `mfactl setup --join` there: it copies this data; "
               "resynchronise HOTP tokens (their counters are as of the backup)\n",
               o->no_start ? "start mfa-node and mfa-balancer here; " : "");
    }
out:
    if (err) {
        fprintf(stderr, "mfactl restore: %s%s\n", err,
                rc == DBCONN_EXIT_REFUSED ? " (refused; nothing was changed)" : "");
        free(err);
    }
    if (in >= 0)
        close(in);
    if (dump >= 0)
        close(dump); /* unlinked: the decrypted dump is gone */
    keyring_wipe(&kr);
    if (keytext)
        OPENSSL_cleanse(keytext, BACKUP_KEYFILE_MAX);
    free(keytext);
    if (loaded)
        appconf_free(&c);
    if (o->json_out >= 0) {
        fflush(stdout);
        dup2(o->json_out, STDOUT_FILENO);
        close(o->json_out);
    }
    return rc;
}

int restore_cmd(const char *config, bool json, int argc, char **argv)
{
    enum { OPT_PASS = 256, OPT_FORCE, OPT_NO_START, OPT_WAIT, OPT_JSON };
    static const struct option opts[] = {
        { "passphrase-file", required_argument, NULL, OPT_PASS },
        { "force", no_argument, NULL, OPT_FORCE },
        { "no-start", no_argument, NULL, OPT_NO_START },
        { "wait", required_argument, NULL, OPT_WAIT },
        { "json", no_argument, NULL, OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct restore_opts o = { .json = json };
    char pass[BACKUP_PASS_BUF], *err = NULL, *end;
    int ch, rc;
    long v;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_PASS:
            o.pass_file = optarg;
            break;
        case OPT_FORCE:
            o.force = true;
            break;
        case OPT_NO_START:
            o.no_start = true;
            break;
        case OPT_WAIT:
            v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 86400) {
                fprintf(stderr, "mfactl restore: --wait must be 1 to 86400 seconds\n");
                return DBCONN_EXIT_USAGE;
            }
            o.wait_s = (int)v;
            break;
        case OPT_JSON:
            o.json = true;
            break;
        case 'h':
            fputs(restore_usage, stdout);
            return DBCONN_EXIT_OK;
        default:
            fprintf(stderr, "mfactl restore: bad option %s\n%s", argv[optind - 1], restore_usage);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !*argv[optind]) {
        fputs(restore_usage, stderr);
        return DBCONN_EXIT_USAGE;
    }
    o.file = argv[optind];
    rc = backup_get_passphrase(o.pass_file, false, pass, sizeof(pass), &err);
    if (rc != DBCONN_EXIT_OK) {
        fprintf(stderr, "mfactl restore: %s\n", err);
        free(err);
        secret_wipe(pass, sizeof(pass));
        return rc;
    }
    rc = restore_run(config, &o, pass);
    secret_wipe(pass, sizeof(pass));
    return rc;
}
