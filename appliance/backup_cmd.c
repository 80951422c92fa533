/*
 * mfactl backup FILE (backup_cmd.h, docs/backup.md; restore is restore_cmd.c).
 *
 * pg_dump -Fc of the member dbconn_find(DBCONN_BACKUP) picks (or --from),
 * as the node's role over TLS, its output encrypted as it streams into an
 * unlinked temporary file beside FILE; then FILE.tmp (0600) gets the
 * manifest, the sealed key file and that body (backup_file.h), is fsynced
 * and renamed to FILE. On a standby, replay may cancel pg_dump (a recovery
 * conflict): it is run again, up to BACKUP_ATTEMPTS times, waiting longer
 * each time — mfactl is a command-line program, sleeping is fine.
 *
 * Passwords reach pg_dump through PGPASSWORD in the child's environment,
 * never argv; the passphrase comes from a file or the terminal.
 */
#include "backup_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "backup_file.h"
#include "backup_priv.h"
#include "dbconn.h"
#include "errmsg.h"
#include "fsutil.h"
#include "keyfile.h"
#include "schema.h"
#include "secrets.h"
#include "setup_priv.h"

#define BACKUP_ATTEMPTS  5
#define STDERR_TAIL      4096
#define CONFLICT_MESSAGE "conflict with recovery"

static const char backup_usage[] =
    "usage: mfactl [-c FILE] backup FILE [--from MEMBER] [--passphrase-file F] [--json]\n"
    "\n"
    "A consistent snapshot of the cluster's database (pg_dump, one transaction) from\n"
    "the writable primary, else the most advanced standby, or MEMBER; with the key\n"
    "file. Everything but the manifest is encrypted under the passphrase (F's first\n"
    "line, at least 8 bytes; else asked twice on the terminal). Written to FILE.tmp\n"
    "(0600), then renamed. A standby's recovery conflicts are retried (5 attempts).\n";

/* ---- the passphrase ---- */

/*
 * Reads one line from the terminal without echo into <buf>. SIGINT, SIGTERM,
 * SIGHUP and SIGTSTP wait until echo is back on (they act once the line is
 * read), and the stream is unbuffered so that no copy stays in stdio's
 * buffer. Returns 0, or -1 when nothing was read or the line is too long.
 */
static int prompt(FILE *tty, const char *what, char *buf, size_t size, char **err)
{
    struct termios old, quiet;
    sigset_t block, saved;
    bool echo_off;
    char *ok;
    size_t len;

    fprintf(stderr, "%s: ", what);
    fflush(stderr);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTSTP);
    sigprocmask(SIG_BLOCK, &block, &saved);
    echo_off = tcgetattr(fileno(tty), &old) == 0;
    if (echo_off) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    ok = fgets(buf, (int)size, tty);
    if (echo_off)
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', stderr);
    sigprocmask(SIG_SETMASK, &saved, NULL);
    if (!ok)
        return err_set(err, "no passphrase was typed");
    len = strcspn(buf, "\r\n");
    if (!buf[len] && len == size - 1)
        return err_set(err, "the passphrase is longer than %zu bytes", size - 2);
    buf[len] = '\0';
    return 0;
}

int backup_get_passphrase(const char *file, bool twice, char *out, size_t size, char **err)
{
    size_t len;

    if (file) {
        char *text = setup_read_text(file, err);
        size_t all;

        if (!text)
            return DBCONN_EXIT_USAGE;
        all = strlen(text);
        len = strcspn(text, "\r\n");
        text[len] = '\0';
        if (len >= size)
            err_set(err, "the passphrase in %s is too long", file);
        else
            memcpy(out, text, len + 1);
        OPENSSL_cleanse(text, all); /* the whole file: a later line may be secret too */
        free(text);
        if (len >= size)
            return DBCONN_EXIT_USAGE;
    } else {
        FILE *tty = isatty(STDIN_FILENO) ? fopen("/dev/tty", "r+") : NULL;
        char again[BACKUP_PASS_BUF];
        int rc = 0;

        if (!tty) {
            err_set(err, "no passphrase: give --passphrase-file F, or run it on a terminal to "
                         "be asked");
            return DBCONN_EXIT_USAGE;
        }
        setvbuf(tty, NULL, _IONBF, 0);
        if (prompt(tty, "backup passphrase", out, size, err) < 0 ||
            (twice && prompt(tty, "the same again", again, sizeof(again), err) < 0))
            rc = -1;
        else if (twice && strcmp(out, again) != 0)
            rc = err_set(err, "the two passphrases differ");
        secret_wipe(again, sizeof(again));
        fclose(tty);
        if (rc < 0)
            return DBCONN_EXIT_USAGE;
    }
    len = strlen(out);
    if (len < BACKUP_PASS_MIN) {
        err_set(err, "the passphrase must be at least %d bytes", BACKUP_PASS_MIN);
        return DBCONN_EXIT_USAGE;
    }
    if (len < BACKUP_PASS_WARN)
        fprintf(stderr,
                "mfactl: warning: a passphrase of %zu bytes is short for a file that can be "
                "attacked offline for years; use %d or more (a few random words)\n",
                len, BACKUP_PASS_WARN);
    return DBCONN_EXIT_OK;
}

/* ---- child programs ---- */

int backup_anon_file(const char *dir, char **err)
{
    char path[4200];
    int fd;

    /* not inherited: pg_dump must see EPIPE when we stop */
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return err_set(err, "cannot make a temporary file in %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/.mfa-backup.XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return err_set(err, "cannot make a temporary file in %s: %s", dir, strerror(errno));
    unlink(path);
    return fd;
}

void backup_last_line(int fd, char *buf, size_t size)
{
    char tail[STDERR_TAIL + 1];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > STDERR_TAIL ? end - STDERR_TAIL : 0;
    ssize_t n = pread(fd, tail, STDERR_TAIL, from);
    char *line;

    tail[n > 0 ? n : 0] = '\0';
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == ' '))
        tail[--n] = '\0';
    line = strrchr(tail, '\n');
    snprintf(buf, size, "%s", line ? line + 1 : tail);
}

/* True when what <fd> holds says a recovery conflict ended the dump. */
static bool says_conflict(int fd)
{
    char tail[STDERR_TAIL + 1];
    off_t end = lseek(fd, 0, SEEK_END);
    ssize_t n = pread(fd, tail, STDERR_TAIL, end > STDERR_TAIL ? end - STDERR_TAIL : 0);

    tail[n > 0 ? n : 0] = '\0';
    return strstr(tail, CONFLICT_MESSAGE) != NULL;
}

pid_t backup_spawn_pg(const char *const *args, const char *password, int in_fd, int out_fd,
                      int err_fd)
{
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid != 0)
        return pid;
    if (setenv("PGPASSWORD", password, 1) < 0 || (in_fd >= 0 && dup2(in_fd, 0) < 0) ||
        (out_fd >= 0 && dup2(out_fd, 1) < 0) || dup2(err_fd, 2) < 0)
        _exit(126);
    unsetenv("PGPASSFILE");
    /* execv() does not write its argv; no copy after fork(), which is not async-signal-safe */
    execv(args[0], (char *const *)(uintptr_t)args);
    fprintf(stderr, "cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
}

int backup_wait_child(pid_t pid)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- backup ---- */

struct source {
    const char *dir; /* where the temporary files go: beside FILE */
    const struct appconf *c;
    const struct keyring *kr;
    struct dbconn_target t;
    char conninfo[2048];
};

/* The manifest's facts about the source: role, schema version, row counts. */
static int source_facts(const struct source *s, struct backup_manifest *m, char **err)
{
    PGconn *conn = dbconn_open(s->c, s->kr, &s->t, "backup", err);
    PGresult *res;
    int rc = -1;

    if (!conn)
        return -1;
    if (schema_version(conn, &m->schema_version, err) < 0)
        goto done;
    res = PQexec(conn, "SELECT pg_is_in_recovery(), (SELECT count(*) FROM users),"
                       " (SELECT count(*) FROM oath_tokens), (SELECT count(*) FROM auth_log)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        dbconn_result_error(res, "reading the row counts", err);
        PQclear(res);
        goto done;
    }
    snprintf(m->role, sizeof(m->role), "%s",
             strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? "standby" : "primary");
    m->users = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    m->oath_tokens = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    m->auth_log = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    rc = m->schema_version > 0 ? 0 : err_set(err, "member %s's database has no schema", s->t.id);
done:
    PQfinish(conn);
    return rc;
}

/*
 * One pg_dump into <body> through a fresh writer (*w). Returns 0, 1 when a
 * recovery conflict cancelled it (try again), or -1 with *err.
 */
static int dump_once(const struct source *s, const char *password, const char *pass, int body,
                     struct backup_writer **w, char **err)
{
    char pg_dump[4200], line[512];
    const char *argv[] = {
        pg_dump, "-Fc", "--no-owner", "--no-privileges", "-d", s->conninfo, NULL
    };
    unsigned char *buf = NULL;
    int pipefd[2] = { -1, -1 }, errfd = -1, rc = -1, status;
    pid_t pid = -1;
    ssize_t n;

    backup_writer_free(*w);
    *w = backup_writer_new(pass, &BACKUP_KDF_DEFAULT, err);
    snprintf(pg_dump, sizeof(pg_dump), "%s/pg_dump", s->c->replicator.pg_bin);
    if (!*w || ftruncate(body, 0) < 0 || lseek(body, 0, SEEK_SET) < 0)
        return *w ? err_set(err, "cannot reset the temporary file: %s", strerror(errno)) : -1;
    errfd = backup_anon_file(s->dir, err);
    buf = malloc(65536);
    if (errfd < 0 || !buf || pipe2(pipefd, O_CLOEXEC) < 0) {
        if (errfd >= 0)
            err_set(err, "out of memory or pipes");
        goto done;
    }
    pid = backup_spawn_pg(argv, password, -1, pipefd[1], errfd);
    close(pipefd[1]);
    pipefd[1] = -1;
    if (pid < 0) {
        err_set(err, "cannot fork: %s", strerror(errno));
        goto done;
    }
    while ((n = read(pipefd[0], buf, 65536)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || backup_writer_encrypt(*w, buf, (size_t)n) < 0) {
            err_set(err, "reading pg_dump's output failed");
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t k = write(body, buf + off, (size_t)(n - off));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                err_set(err, "cannot write the temporary file: %s", strerror(errno));
                n = -1;
                break;
            }
            off += k;
        }
        if (n < 0)
            break;
    }
    close(pipefd[0]); /* pg_dump gets EPIPE if we stopped early */
    pipefd[0] = -1;
    status = backup_wait_child(pid);
    if (*err)
        goto done;
    if (status == 0) {
        rc = 0;
    } else if (says_conflict(errfd)) {
        rc = 1;
    } else {
        backup_last_line(errfd, line, sizeof(line));
        err_set(err, "pg_dump failed (exit %d): %s", status, line);
    }
done:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (errfd >= 0)
        close(errfd);
    if (buf)
        OPENSSL_cleanse(buf, 65536);
    free(buf);
    return rc;
}

/*
 * One attempt: the manifest's facts, then the dump. Returns 0, 1 when a
 * recovery conflict cancelled either (try again), or -1 with *err.
 */
static int attempt_once(const struct source *s, const char *password, const char *pass, int body,
                        struct backup_writer **w, struct backup_manifest *m, bool json, char **err)
{
    time_t now;

    if (source_facts(s, m, err) < 0) {
        if (!*err || !strstr(*err, CONFLICT_MESSAGE))
            return -1;
        mfa_free(*err);
        return 1;
    }
    fprintf(json ? stderr : stdout, "dump  member %s (%s), schema version %d\n", s->t.id, m->role,
            m->schema_version);
    fflush(json ? stderr : stdout);
    /* "as of": the snapshot is taken as pg_dump starts, not when it ends */
    now = time(NULL);
    strftime(m->created_at, sizeof(m->created_at), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    return dump_once(s, password, pass, body, w, err);
}

/* Writes the finished backup to <file>.tmp (0600), fsyncs it and renames it to <file>. */
static int write_backup(const char *file, struct backup_writer *w, struct backup_manifest *m,
                        const char *keytext, int body, char **err)
{
    char tmp[4200];
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(err, "cannot create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, 0600) < 0 || backup_writer_finish(w, m, keytext, body, fd, err) < 0 ||
        fsync(fd) < 0) {
        if (!*err)
            err_set(err, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) < 0 || rename(tmp, file) < 0) {
        err_set(err, "cannot write %s: %s", file, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return fsutil_fsync_dir(file, err);
}

void backup_print_manifest(const char *verb, const char *file, const struct backup_manifest *m,
                           bool json, int attempts)
{
    if (json) {
        json_t *j =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:I, s:I, s:I}, s:I, s:s}", "file",
                      file, "cluster", m->cluster, "member", m->member, "role", m->role,
                      "created_at", m->created_at, "release", m->release, "schema_version",
                      m->schema_version, "rows", "users", (json_int_t)m->users, "oath_tokens",
                      (json_int_t)m->oath_tokens, "auth_log", (json_int_t)m->auth_log, "dump_bytes",
                      (json_int_t)m->dump_bytes, "dump_sha256", m->dump_sha256);
        if (j && attempts)
            json_object_set_new(j, "attempts", json_integer(attempts));
        if (j)
            json_dumpf(j, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        printf("\n");
        json_decref(j);
        return;
    }
    printf("%s %s\n"
           "  cluster %s, member %s (%s), taken %s by release %s\n"
           "  schema version %d; users %lld, oath_tokens %lld, auth_log %lld\n"
           "  dump %" PRIu64 " bytes, sha256 %s\n",
           verb, file, m->cluster, m->member, m->role, m->created_at, m->release, m->schema_version,
           m->users, m->oath_tokens, m->auth_log, m->dump_bytes, m->dump_sha256);
}

/*
 * The whole of `mfactl backup FILE`: the source, the dump (retried on
 * recovery conflicts), FILE written atomically, the manifest printed.
 * <pass> is the checked passphrase; the caller wipes it. Returns mfactl's
 * exit code, the error said on stderr.
 */
static int backup_run(const char *config, const char *file, const char *from, const char *pass,
                      bool json)
{
    struct appconf c;
    struct keyring kr;
    struct source s;
    struct backup_manifest m;
    struct backup_writer *w = NULL;
    char *err = NULL, *keytext = NULL, password[DB_PASSWORD_MAX + 256], dir[4200];
    int rc = DBCONN_EXIT_USAGE, body = -1, attempt, got = -1;

    memset(&m, 0, sizeof(m));
    memset(&kr, 0, sizeof(kr));
    memset(password, 0, sizeof(password));
    if (setup_load_conf(config, &c, &err) < 0)
        goto out;
    keytext = setup_read_text(c.appliance.key_file, &err);
    if (!keytext || keyfile_load(c.appliance.key_file, &kr, &err) < 0)
        goto out;
    memset(&s, 0, sizeof(s));
    s.c = &c;
    s.kr = &kr;
    rc = dbconn_find(config, DBCONN_BACKUP, from, &s.t, &err);
    if (rc != DBCONN_EXIT_OK)
        goto out;
    rc = DBCONN_EXIT_FAILED;
    if (dbconn_conninfo(&c, &s.t, "backup", s.conninfo, sizeof(s.conninfo), &err) < 0 ||
        dbconn_password(&c, &kr, password, sizeof(password), &err) < 0)
        goto out;
    setup_dir_of(file, dir, sizeof(dir));
    s.dir = dir;
    body = backup_anon_file(dir, &err);
    if (body < 0)
        goto out;
    for (attempt = 1; attempt <= BACKUP_ATTEMPTS; attempt++) {
        got = attempt_once(&s, password, pass, body, &w, &m, json, &err);
        if (got != 1)
            break;
        if (attempt < BACKUP_ATTEMPTS) {
            unsigned wait_s = 1u << (attempt - 1);
            fprintf(stderr,
                    "mfactl backup: pg_dump on member %s was cancelled by a recovery conflict "
                    "(attempt %d of %d); retrying in %u s\n",
                    s.t.id, attempt, BACKUP_ATTEMPTS, wait_s);
            sleep(wait_s);
        }
    }
    if (got == 1) {
        err_set(&err,
                "pg_dump on member %s was cancelled by recovery conflicts %d times; take the "
                "backup from the primary, or raise replicator.max_standby_streaming_delay there",
                s.t.id, BACKUP_ATTEMPTS);
        goto out;
    }
    if (got < 0)
        goto out;
    snprintf(m.cluster, sizeof(m.cluster), "%s", c.cluster.name);
    snprintf(m.member, sizeof(m.member), "%s", s.t.id);
    snprintf(m.release, sizeof(m.release), "%s", MFA_VERSION);
    if (write_backup(file, w, &m, keytext, body, &err) < 0)
        goto out;
    backup_print_manifest("wrote", file, &m, json, attempt);
    rc = DBCONN_EXIT_OK;
out:
    if (err) {
        fprintf(stderr, "mfactl backup: %s\n", err);
        free(err);
    }
    if (body >= 0)
        close(body);
    backup_writer_free(w);
    secret_wipe(password, sizeof(password));
    keyring_wipe(&kr);
    setup_free_secret(keytext);
    appconf_free(&c);
    return rc;
}

/* ---- the commands ---- */

int backup_cmd(const char *config, bool json, int argc, char **argv)
{
    enum { OPT_FROM = 256, OPT_PASS, OPT_JSON };
    static const struct option opts[] = {
        { "from", required_argument, NULL, OPT_FROM },
        { "passphrase-file", required_argument, NULL, OPT_PASS },
        { "json", no_argument, NULL, OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *from = NULL, *pass_file = NULL;
    char pass[BACKUP_PASS_BUF], *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_FROM:
            from = optarg;
            break;
        case OPT_PASS:
            pass_file = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'h':
            fputs(backup_usage, stdout);
            return DBCONN_EXIT_OK;
        default:
            fprintf(stderr, "mfactl backup: bad option %s\n%s", argv[optind - 1], backup_usage);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !*argv[optind]) {
        fputs(backup_usage, stderr);
        return DBCONN_EXIT_USAGE;
    }
    rc = backup_get_passphrase(pass_file, true, pass, sizeof(pass), &err);
    if (rc != DBCONN_EXIT_OK) {
        fprintf(stderr, "mfactl backup: %s\n", err);
        free(err);
        secret_wipe(pass, sizeof(pass));
        return rc;
    }
    rc = backup_run(config, argv[optind], from, pass, json);
    secret_wipe(pass, sizeof(pass));
    return rc;
}
