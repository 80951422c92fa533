/*
 * PostgreSQL's files and command lines for mfa-replicator (see pgsetup.h).
 *
 * The configuration is written whole every time from appliance.conf and the
 * member's current role, never edited in place, so what runs is always what
 * this file says. Values are single-quoted with quotes and backslashes doubled.
 */
#include "pgsetup.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "fsutil.h"
#include "pgconn.h"

#define CONF_MAX 16384

struct buf {
    char *p;
    size_t len, size;
    bool overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->size - b->len)
        b->overflow = true;
    else
        b->len += (size_t)n;
}

/*
 * name = 'value' with ' and \ doubled: in a quoted value PostgreSQL's
 * configuration scanner (guc-file.l, GUC_scanstr) reads '' as ' and a
 * backslash as the start of an escape (\n, \t, octal, \\).
 */
static void put_setting(struct buf *b, const char *name, const char *value)
{
    put(b, "%s = '", name);
    for (const char *s = value; *s; s++)
        put(b, *s == '\'' ? "''" : *s == '\\' ? "\\\\" : "%c", *s);
    put(b, "'\n");
}

/* " key='value'" for a libpq conninfo string: \ and ' backslash-escaped. */
static void put_conn_value(struct buf *b, const char *key, const char *value)
{
    put(b, "%s%s='", b->len ? " " : "", key);
    for (const char *s = value; *s; s++)
        put(b, *s == '\'' || *s == '\\' ? "\\%c" : "%c", *s);
    put(b, "'");
}

static int path_join(char *out, size_t size, const char *dir, const char *name, char **err)
{
    if (snprintf(out, size, "%s/%s", dir, name) >= (int)size)
        return err_set(err, "path %s/%s is too long", dir, name);
    return 0;
}

int pgsetup_paths(const struct appconf *conf, struct pgpaths *p, char **err)
{
    const char *data = conf->appliance.data_dir;

    memset(p, 0, sizeof(*p));
    if (*conf->replicator.pgdata) {
        if (snprintf(p->pgdata, sizeof(p->pgdata), "%s", conf->replicator.pgdata) >=
            (int)sizeof(p->pgdata))
            return err_set(err, "replicator.pgdata is too long");
    } else if (path_join(p->pgdata, sizeof(p->pgdata), data, "pgdata", err) < 0) {
        return -1;
    }
    if (path_join(p->confdir, sizeof(p->confdir), data, "pg", err) < 0 ||
        path_join(p->conf, sizeof(p->conf), p->confdir, "postgresql.conf", err) < 0 ||
        path_join(p->passfile, sizeof(p->passfile), p->confdir, "pgpass", err) < 0 ||
        path_join(p->log, sizeof(p->log), data, "postgresql.log", err) < 0)
        return -1;
    if (snprintf(p->socket_dir, sizeof(p->socket_dir), "%s", conf->appliance.run_dir) >=
        (int)sizeof(p->socket_dir))
        return err_set(err, "appliance.run_dir is too long");
    /* sun_path holds 108 bytes: "<dir>/.s.PGSQL.<port>" must fit. */
    if (strlen(p->socket_dir) + 20 > 107)
        return err_set(err, "appliance.run_dir \"%s\" is too long for a Unix socket path",
                       p->socket_dir);
    return 0;
}

void pgsetup_slot_name(const char *id, char *buf, size_t size)
{
    snprintf(buf, size, "member_%s", id);
}

int pgsetup_conninfo(const struct appconf *conf, const struct pgpaths *p,
                     const struct member_conf *m, const char *user, const char *dbname,
                     const char *app, char *buf, size_t size, char **err)
{
    char extra[1024];
    struct buf b = { extra, 0, sizeof(extra), false };

    put(&b, "sslmode=verify-ca");
    put_conn_value(&b, "sslrootcert", conf->cluster.tls_ca);
    put_conn_value(&b, "passfile", p->passfile);
    put_conn_value(&b, "application_name", app);
    if (b.overflow)
        return err_set(err, "conninfo too long");
    return pgconn_conninfo(buf, size, m->address, m->ports.postgres, dbname, user, extra, 10000,
                           err);
}

int pgsetup_write_conf(const struct appconf *conf, const struct pgpaths *p, const char *os_user,
                       const struct pgsetup_role *role, char **err)
{
    const struct member_conf *me = appconf_local(conf);
    char text[CONF_MAX], path[320], conninfo[2048], slot[40];
    struct buf b = { text, 0, sizeof(text), false };

    if (mkdir(p->confdir, 0700) < 0 && errno != EEXIST)
        return err_set(err, "cannot create %s: %s", p->confdir, strerror(errno));

    put(&b, "# Written by mfa-replicator, which rewrites it on every role change:\n"
            "# change appliance.conf instead.\n");
    if (path_join(path, sizeof(path), p->confdir, "pg_hba.conf", err) < 0)
        return -1;
    put_setting(&b, "hba_file", path);
    if (path_join(path, sizeof(path), p->confdir, "pg_ident.conf", err) < 0)
        return -1;
    put_setting(&b, "ident_file", path);
    put_setting(&b, "listen_addresses", me->address);
    put(&b, "port = %d\n", me->ports.postgres);
    put_setting(&b, "unix_socket_directories", p->socket_dir);
    put(&b, "unix_socket_permissions = 0700\n");
    put_setting(&b, "cluster_name", me->id);
    put(&b, "max_connections = 200\n");
    put(&b, "ssl = on\n");
    put_setting(&b, "ssl_cert_file", conf->appliance.tls_cert);
    put_setting(&b, "ssl_key_file", conf->appliance.tls_key);
    put_setting(&b, "ssl_ca_file", conf->cluster.tls_ca);
    put_setting(&b, "ssl_min_protocol_version",
                conf->cluster.tls_min_version == TLS_MIN_1_3 ? "TLSv1.3" : "TLSv1.2");
    put_setting(&b, "ssl_ciphers", conf->cluster.tls_ciphers);
    put(&b, "password_encryption = 'scram-sha-256'\n");
    put(&b, "wal_level = replica\nwal_log_hints = on\n");
    put(&b, "max_wal_senders = 20\nmax_replication_slots = 20\n");
    put_setting(&b, "max_slot_wal_keep_size", conf->replicator.max_slot_wal_keep_size);
    put(&b, "wal_keep_size = '256MB'\n");
    put(&b, "hot_standby = on\nhot_standby_feedback = on\n");
    /* how long replay waits for a conflicting standby query (a backup's pg_dump) */
    put_setting(&b, "max_standby_streaming_delay", conf->replicator.max_standby_streaming_delay);
    /* Standbys report every second: the primary drops a silent one fast. */
    put(&b, "wal_receiver_status_interval = '1s'\nwal_receiver_timeout = '10s'\n");
    put(&b, "wal_sender_timeout = '10s'\n");
    put(&b, "recovery_target_timeline = 'latest'\n");
    put(&b, "fsync = %s\n", conf->replicator.fsync ? "on" : "off");
    /* PostgreSQL writes its own log: it outlives the replicator that started it. */
    put(&b, "log_destination = 'stderr'\nlogging_collector = on\n");
    put_setting(&b, "log_directory", conf->appliance.data_dir);
    put(&b, "log_filename = 'postgresql.log'\nlog_file_mode = 0600\nlog_rotation_age = 0\n");
    /*
     * Messages in English whatever the host's locale: mfactl backup tells a
     * recovery conflict by its text, and the node's role cannot set it per
     * session (lc_messages is superuser-only).
     */
    put(&b, "lc_messages = 'C'\n");
    put(&b, "log_line_prefix = '%%m [%%p] %%q%%u@%%d '\n");
    put(&b, "log_connections = off\n");
    put_setting(&b, "synchronous_standby_names", role->sync_names ? role->sync_names : "");
    put(&b, "default_transaction_read_only = %s\n", role->read_only ? "on" : "off");
    if (role->upstream && *role->upstream) {
        const struct member_conf *up = appconf_member(conf, role->upstream);
        if (!up)
            return err_set(err, "unknown upstream member \"%s\"", role->upstream);
        if (pgsetup_conninfo(conf, p, up, PG_ROLE_REPLICATION, NULL, me->id, conninfo,
                             sizeof(conninfo), err) < 0)
            return -1;
        pgsetup_slot_name(me->id, slot, sizeof(slot));
        put_setting(&b, "primary_conninfo", conninfo);
        put_setting(&b, "primary_slot_name", slot);
    } else {
        put(&b, "primary_conninfo = ''\nprimary_slot_name = ''\n");
    }
    if (b.overflow)
        return err_set(err, "postgresql.conf would be longer than %d bytes", CONF_MAX);
    if (fsutil_write_atomic(p->conf, text, b.len, 0600, err) < 0)
        return -1;

    /* Client authentication: TLS and SCRAM between hosts; the superuser only locally. */
    b.len = 0;
    put(&b,
        "# Written by mfa-replicator.\n"
        "local   all          %s   peer map=superuser\n"
        "hostssl replication  %s   all  scram-sha-256\n"
        "hostssl postgres     %s   all  scram-sha-256\n",
        PG_SUPERUSER, PG_ROLE_REPLICATION, PG_ROLE_REWIND);
    /* pg_hba.conf quotes names with "; a name holding one cannot be written. */
    if (strchr(conf->node.db.name, '"') || strchr(conf->node.db.user, '"') ||
        strpbrk(conf->node.db.name, "\n\r") || strpbrk(conf->node.db.user, "\n\r"))
        return err_set(err, "node.db.name and node.db.user must not hold '\"' or a line break");
    put(&b, "hostssl \"%s\"  \"%s\"  all  scram-sha-256\n", conf->node.db.name, conf->node.db.user);
    if (b.overflow)
        return err_set(err, "pg_hba.conf too long");
    if (path_join(path, sizeof(path), p->confdir, "pg_hba.conf", err) < 0 ||
        fsutil_write_atomic(path, text, b.len, 0600, err) < 0)
        return -1;

    b.len = 0;
    put(&b,
        "# Written by mfa-replicator: the daemons' user is the superuser.\n"
        "superuser  %s  %s\n",
        os_user, PG_SUPERUSER);
    if (b.overflow)
        return err_set(err, "pg_ident.conf too long");
    if (path_join(path, sizeof(path), p->confdir, "pg_ident.conf", err) < 0 ||
        fsutil_write_atomic(path, text, b.len, 0600, err) < 0)
        return -1;
    return 0;
}

int pgsetup_write_passfile(const struct pgpaths *p, const char *repl_password,
                           const char *rewind_password, char **err)
{
    char text[512];
    int n;

    if (mkdir(p->confdir, 0700) < 0 && errno != EEXIST)
        return err_set(err, "cannot create %s: %s", p->confdir, strerror(errno));
    /* host:port:database:user:password; base64url passwords need no escaping. */
    n = snprintf(text, sizeof(text), "*:*:*:%s:%s\n*:*:*:%s:%s\n", PG_ROLE_REPLICATION,
                 repl_password, PG_ROLE_REWIND, rewind_password);
    if (n < 0 || n >= (int)sizeof(text))
        return err_set(err, "passfile too long");
    int rc = fsutil_write_atomic(p->passfile, text, (size_t)n, 0600, err);
    memset(text, 0, sizeof(text));
    return rc;
}

/* Appends a copy of <s> to <store> as the next argv entry. */
struct argvb {
    const char **argv;
    size_t n, max;
    char *store;
    size_t used, size;
    bool overflow;
};

__attribute__((format(printf, 2, 3))) static void arg(struct argvb *a, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (a->overflow || a->n + 1 >= a->max) {
        a->overflow = true;
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(a->store + a->used, a->size - a->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= a->size - a->used) {
        a->overflow = true;
        return;
    }
    a->argv[a->n++] = a->store + a->used;
    a->argv[a->n] = NULL;
    a->used += (size_t)n + 1;
}

static int argv_end(struct argvb *a)
{
    return a->overflow ? -1 : 0;
}

#define ARGVB(argv, max, store, size)                                                              \
    {                                                                                              \
        argv, 0, max, store, 0, size, false                                                        \
    }

int pgsetup_argv_initdb(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                        size_t max, char *store, size_t size)
{
    struct argvb a = ARGVB(argv, max, store, size);

    arg(&a, "%s/initdb", conf->replicator.pg_bin);
    arg(&a, "--pgdata=%s", p->pgdata);
    arg(&a, "--username=%s", PG_SUPERUSER);
    arg(&a, "--auth-local=peer");
    arg(&a, "--auth-host=scram-sha-256");
    arg(&a, "--data-checksums"); /* pg_rewind needs checksums or wal_log_hints */
    arg(&a, "--encoding=UTF8");
    arg(&a, "--locale=C");
    if (!conf->replicator.fsync)
        arg(&a, "--no-sync");
    return argv_end(&a);
}

int pgsetup_argv_postgres(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                          size_t max, char *store, size_t size)
{
    struct argvb a = ARGVB(argv, max, store, size);

    arg(&a, "%s/postgres", conf->replicator.pg_bin);
    arg(&a, "-D");
    arg(&a, "%s", p->pgdata);
    arg(&a, "--config-file=%s", p->conf);
    return argv_end(&a);
}

int pgsetup_argv_basebackup(const struct appconf *conf, const struct pgpaths *p,
                            const char *conninfo, const char *slot, const char **argv, size_t max,
                            char *store, size_t size)
{
    struct argvb a = ARGVB(argv, max, store, size);

    arg(&a, "%s/pg_basebackup", conf->replicator.pg_bin);
    arg(&a, "--dbname=%s", conninfo);
    arg(&a, "--pgdata=%s", p->pgdata);
    arg(&a, "--wal-method=stream");
    arg(&a, "--slot=%s", slot);
    arg(&a, "--checkpoint=fast");
    if (!conf->replicator.fsync)
        arg(&a, "--no-sync");
    return argv_end(&a);
}

int pgsetup_argv_rewind(const struct appconf *conf, const struct pgpaths *p, const char *conninfo,
                        const char **argv, size_t max, char *store, size_t size)
{
    struct argvb a = ARGVB(argv, max, store, size);

    arg(&a, "%s/pg_rewind", conf->replicator.pg_bin);
    arg(&a, "--target-pgdata=%s", p->pgdata);
    arg(&a, "--source-server=%s", conninfo);
    /* For the crash recovery it runs on a target that was not shut down cleanly. */
    arg(&a, "--config-file=%s", p->conf);
    arg(&a, "--progress");
    if (!conf->replicator.fsync)
        arg(&a, "--no-sync");
    return argv_end(&a);
}

int pgsetup_argv_controldata(const struct appconf *conf, const struct pgpaths *p, const char **argv,
                             size_t max, char *store, size_t size)
{
    struct argvb a = ARGVB(argv, max, store, size);

    arg(&a, "%s/pg_controldata", conf->replicator.pg_bin);
    arg(&a, "-D");
    arg(&a, "%s", p->pgdata);
    return argv_end(&a);
}

static int data_file(const struct pgpaths *p, const char *name, char *buf, size_t size)
{
    return snprintf(buf, size, "%s/%s", p->pgdata, name) >= (int)size ? -1 : 0;
}

bool pgsetup_has_data(const struct pgpaths *p)
{
    char path[320];

    return data_file(p, "PG_VERSION", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

bool pgsetup_is_standby(const struct pgpaths *p)
{
    char path[320];

    return data_file(p, "standby.signal", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

int pgsetup_set_standby(const struct pgpaths *p, bool standby, char **err)
{
    char path[320];

    if (data_file(p, "standby.signal", path, sizeof(path)) < 0)
        return err_set(err, "PGDATA path too long");
    if (!standby) {
        if (unlink(path) < 0 && errno != ENOENT)
            return err_set(err, "cannot remove %s: %s", path, strerror(errno));
        return 0;
    }
    return fsutil_write_atomic(path, "", 0, 0600, err);
}

int pgsetup_after_copy(const struct pgpaths *p, char **err)
{
    char path[320];

    if (data_file(p, "postgresql.auto.conf", path, sizeof(path)) < 0)
        return err_set(err, "PGDATA path too long");
    static const char note[] = "# Emptied by mfa-replicator: settings live in its own file.\n";
    if (fsutil_write_atomic(path, note, sizeof(note) - 1, 0600, err) < 0)
        return -1;
    if (data_file(p, "recovery.signal", path, sizeof(path)) < 0)
        return err_set(err, "PGDATA path too long");
    if (unlink(path) < 0 && errno != ENOENT)
        return err_set(err, "cannot remove %s: %s", path, strerror(errno));
    return pgsetup_set_standby(p, true, err);
}

int lsn_parse(const char *s, uint64_t *lsn)
{
    unsigned long long hi = 0, lo = 0;
    const char *q = s;
    int digits = 0;

    for (; isxdigit((unsigned char)*q) && digits < 9; q++, digits++)
        hi = hi * 16 + (unsigned)(isdigit((unsigned char)*q) ? *q - '0' : (*q | 0x20) - 'a' + 10);
    if (digits == 0 || digits > 8 || *q != '/')
        return -1;
    q++;
    for (digits = 0; isxdigit((unsigned char)*q) && digits < 9; q++, digits++)
        lo = lo * 16 + (unsigned)(isdigit((unsigned char)*q) ? *q - '0' : (*q | 0x20) - 'a' + 10);
    if (digits == 0 || digits > 8 || *q != '\0')
        return -1;
    *lsn = ((uint64_t)hi << 32) | lo;
    return 0;
}

const char *lsn_format(uint64_t lsn, char *buf, size_t size)
{
    snprintf(buf, size, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
    return buf;
}

/* The value of "<name>:<spaces><value>" in <text>, into <out>; -1 when absent. */
static int report_value(const char *text, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);

    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);

        if (len > nlen && strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < line + len && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(line + len - v);
            if (vlen >= size)
                return -1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || !isdigit((unsigned char)*s))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int pgsetup_parse_controldata(const char *text, struct pg_controldata *out, char **err)
{
    char v[64];

    memset(out, 0, sizeof(*out));
    /* The identifier is a uint64 printed in decimal. */
    if (report_value(text, "Database system identifier", out->system_identifier,
                     sizeof(out->system_identifier)) < 0 ||
        !out->system_identifier[0] ||
        strspn(out->system_identifier, "0123456789") != strlen(out->system_identifier))
        return err_set(err, "pg_controldata: no database system identifier");
    if (report_value(text, "Database cluster state", out->state, sizeof(out->state)) < 0 ||
        !out->state[0])
        return err_set(err, "pg_controldata: no database cluster state");
    if (report_value(text, "Latest checkpoint location", v, sizeof(v)) < 0 ||
        lsn_parse(v, &out->checkpoint_lsn) < 0)
        return err_set(err, "pg_controldata: bad latest checkpoint location");
    if (report_value(text, "Latest checkpoint's TimeLineID", v, sizeof(v)) < 0 ||
        parse_u32(v, &out->checkpoint_tli) < 0)
        return err_set(err, "pg_controldata: bad latest checkpoint's timeline");
    if (report_value(text, "Minimum recovery ending location", v, sizeof(v)) < 0 ||
        lsn_parse(v, &out->min_recovery_lsn) < 0)
        return err_set(err, "pg_controldata: bad minimum recovery ending location");
    if (report_value(text, "Min recovery ending loc's timeline", v, sizeof(v)) < 0 ||
        parse_u32(v, &out->min_recovery_tli) < 0)
        return err_set(err, "pg_controldata: bad minimum recovery ending timeline");
    return 0;
}

pid_t pgsetup_read_pid(const struct pgpaths *p, char **err)
{
    char path[320], text[64], proc[64], exe[512];
    ssize_t n;
    long pid;
    char *end;
    int fd;

    if (data_file(p, "postmaster.pid", path, sizeof(path)) < 0)
        return err_set(err, "PGDATA path too long");
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return err_set(err, "cannot open %s: %s", path, strerror(errno));
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0)
        return err_set(err, "cannot read %s: %s", path, strerror(errno));
    text[n] = '\0';
    errno = 0;
    pid = strtol(text, &end, 10);
    if (end == text || (*end != '\n' && *end != '\0') || errno || pid <= 1 || pid > 4194304)
        return err_set(err, "%s: the first line is not a process id", path);
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        return 0;
    /* A pid reused by another program is not our postmaster. */
    snprintf(proc, sizeof(proc), "/proc/%ld/exe", pid);
    n = readlink(proc, exe, sizeof(exe) - 1);
    if (n < 0)
        return errno == ENOENT ? 0 : err_set(err, "cannot read %s: %s", proc, strerror(errno));
    exe[n] = '\0';
    /*
     * The program must be postgres itself, not another one from the same
     * directory (/usr/lib/postgresql/15/bin/pg_basebackup names "postgres"
     * too); " (deleted)" follows when a package upgrade replaced it.
     */
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    if (strcmp(base, "postgres") != 0 && strcmp(base, "postgres (deleted)") != 0)
        return 0;
    return (pid_t)pid;
}

/*
 * The whitespace-delimited field at or after *s (before <end>) into <out> of <size>;
 * advances *s past it. Returns -1 when there is none or it does not fit.
 */
static int history_field(const char **s, const char *end, char *out, size_t size)
{
    const char *f;

    while (*s < end && isspace((unsigned char)**s))
        (*s)++;
    for (f = *s; *s < end && !isspace((unsigned char)**s); (*s)++)
        ;
    if (*s == f || (size_t)(*s - f) >= size)
        return -1;
    memcpy(out, f, (size_t)(*s - f));
    out[*s - f] = '\0';
    return 0;
}

int pgsetup_parse_history(const char *text, struct tli_switch *out, size_t max, char **err)
{
    size_t n = 0;
    int lineno = 0;

    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        const char *s = line;
        char tli[16], lsn[32];

        lineno++;
        if (!end)
            end = line + strlen(line);
        line = *end ? end + 1 : NULL;
        while (s < end && isspace((unsigned char)*s))
            s++;
        if (s == end || *s == '#')
            continue;
        /* The reason after the LSN is free text: it is not read. */
        if (history_field(&s, end, tli, sizeof(tli)) < 0 ||
            history_field(&s, end, lsn, sizeof(lsn)) < 0)
            return err_set(err, "history line %d: expected a timeline and an LSN", lineno);
        if (n == max)
            return err_set(err, "history has more than %zu entries", max);
        if (parse_u32(tli, &out[n].tli) < 0 || out[n].tli == 0 ||
            lsn_parse(lsn, &out[n].switch_lsn) < 0)
            return err_set(err, "history line %d: bad timeline or LSN", lineno);
        /* As PostgreSQL's readTimeLineHistory(): timelines only increase. */
        if (n > 0 && out[n].tli <= out[n - 1].tli)
            return err_set(err, "history line %d: timeline %u does not follow %u", lineno,
                           out[n].tli, out[n - 1].tli);
        n++;
    }
    return (int)n;
}
