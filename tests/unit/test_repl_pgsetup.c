/*
 * mfa-replicator's files and command lines for PostgreSQL (replicator/
 * pgsetup.c): the parsers of what PostgreSQL leaves on disk (LSN text, a
 * real pg_controldata report and broken ones, timeline history files,
 * postmaster.pid against live and dead processes), the configuration it
 * writes (files, modes, quoting as PostgreSQL's scanner reads it back,
 * primary_conninfo only with an upstream) and the argument vectors, which
 * must fail cleanly when the caller's storage is too small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appconf.h"
#include "pgsetup.h"

/* ---- helpers ------------------------------------------------------------ */

static void contains(const char *s, const char *part)
{
    if (!s || !strstr(s, part))
        fail_msg("\"%s\" lacks \"%s\"", s ? s : "(null)", part);
}

static void lacks(const char *s, const char *part)
{
    if (strstr(s, part))
        fail_msg("\"%s\" has \"%s\"", s, part);
}

static void make_tmpdir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/mfa-pgsetup-XXXXXX");
    if (!mkdtemp(dir))
        fail_msg("mkdtemp: %s", strerror(errno));
}

/* Removes <dir> and what is under it (two levels are enough here). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        char path[512];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, malloc'd and NUL-terminated. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    size_t n;

    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_non_null(buf);
    n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void assert_mode(const char *path, mode_t mode)
{
    struct stat st;

    if (stat(path, &st) != 0)
        fail_msg("%s: %s", path, strerror(errno));
    if ((st.st_mode & 07777) != mode)
        fail_msg("%s has mode %o, not %o", path, (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

/* ---- LSNs ------------------------------------------------------------------ */

static void test_lsn_round_trip(void **state)
{
    static const uint64_t values[] = {
        0,
        1,
        0x3000060,
        0x1500718,
        0xffffffffu,
        0x100000000ull,
        0x16b374d848ull,
        0xfedcba9876543210ull,
        UINT64_MAX,
    };
    char buf[32], again[32];
    uint64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        lsn_format(values[i], buf, sizeof(buf));
        assert_int_equal(lsn_parse(buf, &v), 0);
        assert_true(v == values[i]);
        assert_string_equal(lsn_format(v, again, sizeof(again)), buf);
    }
    /* PostgreSQL prints %X/%X: upper case, no leading zeros. */
    assert_string_equal(lsn_format(0x16b374d848ull, buf, sizeof(buf)), "16/B374D848");
    assert_string_equal(lsn_format(0, buf, sizeof(buf)), "0/0");
    assert_string_equal(lsn_format(UINT64_MAX, buf, 18), "FFFFFFFF/FFFFFFFF");
    /* Either case and leading zeros, up to 8 digits a half, are read. */
    assert_int_equal(lsn_parse("16/b374d848", &v), 0);
    assert_true(v == 0x16b374d848ull);
    assert_int_equal(lsn_parse("00000016/0B374D84", &v), 0);
    assert_true(v == 0x160b374d84ull);
}

static void test_lsn_rejects(void **state)
{
    static const char *const bad[] = {
        "",      "/",    "1/",          "/1",   "x/1",  "1/2/3", "123456789/0",
        " 1/2",  "1/2 ", "0/123456789", "1//2", "1/-2", "+1/2",  "0x1/2",
        "1/2\n", "1\\2", "1:2",         "g/0",  "0/G",  "1 /2",  "1/ 2",
    };
    uint64_t v = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (lsn_parse(bad[i], &v) != -1)
            fail_msg("lsn_parse accepted \"%s\"", bad[i]);
        assert_true(v == 42); /* nothing stored */
    }
}

/* ---- pg_controldata ------------------------------------------------------ */

/*
 * `pg_controldata -D` of a data directory just made by PostgreSQL 15's
 * `initdb --no-sync -U postgres` (Debian bookworm).
 */
static const char controldata_real[] =
    "pg_control version number:            1300\n"
    "Catalog version number:               202209061\n"
    "Database system identifier:           7711058811124314153\n"
    "Database cluster state:               shut down\n"
    "pg_control last modified:             Sun Nov 22 18:06:26 2026\n"
    "Latest checkpoint location:           0/1500718\n"
    "Latest checkpoint's REDO location:    0/1500718\n"
    "Latest checkpoint's REDO WAL file:    000000010000000000000001\n"
    "Latest checkpoint's TimeLineID:       1\n"
    "Latest checkpoint's PrevTimeLineID:   1\n"
    "Latest checkpoint's full_page_writes: on\n"
    "Latest checkpoint's NextXID:          0:724\n"
    "Latest checkpoint's NextOID:          13572\n"
    "Latest checkpoint's NextMultiXactId:  1\n"
    "Latest checkpoint's NextMultiOffset:  0\n"
    "Latest checkpoint's oldestXID:        716\n"
    "Latest checkpoint's oldestXID's DB:   1\n"
    "Latest checkpoint's oldestActiveXID:  0\n"
    "Latest checkpoint's oldestMultiXid:   1\n"
    "Latest checkpoint's oldestMulti's DB: 1\n"
    "Latest checkpoint's oldestCommitTsXid:0\n"
    "Latest checkpoint's newestCommitTsXid:0\n"
    "Time of latest checkpoint:            Sun Nov 22 18:06:26 2026\n"
    "Fake LSN counter for unlogged rels:   0/3E8\n"
    "Minimum recovery ending location:     0/0\n"
    "Min recovery ending loc's timeline:   0\n"
    "Backup start location:                0/0\n"
    "Backup end location:                  0/0\n"
    "End-of-backup record required:        no\n"
    "wal_level setting:                    replica\n"
    "wal_log_hints setting:                off\n"
    "max_connections setting:              100\n"
    "max_worker_processes setting:         8\n"
    "max_wal_senders setting:              10\n"
    "max_prepared_xacts setting:           0\n"
    "max_locks_per_xact setting:           64\n"
    "track_commit_timestamp setting:       off\n"
    "Maximum data alignment:               8\n"
    "Database block size:                  8192\n"
    "Blocks per segment of large relation: 131072\n"
    "WAL block size:                       8192\n"
    "Bytes per WAL segment:                16777216\n"
    "Maximum length of identifiers:        64\n"
    "Maximum columns in an index:          32\n"
    "Maximum size of a TOAST chunk:        1996\n"
    "Size of a large-object chunk:         2048\n"
    "Date/time type storage:               64-bit integers\n"
    "Float8 argument passing:              by value\n"
    "Data page checksum version:           0\n"
    "Mock authentication nonce:            "
    "dff9c90283e31dc28f5ca57dc4e8426b449126ea5f0d9e01f37c32dcf2a563f5\n";

/* <text> with the line starting with <name> replaced by <line> (NULL: removed). */
static char *replace_line(const char *text, const char *name, const char *line)
{
    char *out = calloc(1, strlen(text) + (line ? strlen(line) : 0) + 2);
    const char *at = strstr(text, name), *end;

    assert_non_null(out);
    if (!at || (at != text && at[-1] != '\n'))
        fail_msg("no line \"%s\"", name);
    end = strchr(at, '\n');
    memcpy(out, text, (size_t)(at - text));
    if (line) {
        strcat(out, line);
        strcat(out, "\n");
    }
    strcat(out, end ? end + 1 : "");
    return out;
}

static void controldata_bad(const char *text, const char *part)
{
    struct pg_controldata c;
    char *err = NULL;

    if (pgsetup_parse_controldata(text, &c, &err) != -1)
        fail_msg("accepted a report for \"%s\"", part);
    contains(err, part);
    free(err);
}

/* The real report with line <name> replaced by <line>: refused naming <part>. */
static void controldata_bad_line(const char *name, const char *line, const char *part)
{
    char *text = replace_line(controldata_real, name, line);

    controldata_bad(text, part);
    free(text);
}

static void test_controldata_real(void **state)
{
    struct pg_controldata c;
    char *err = NULL, *text;

    (void)state;
    assert_int_equal(pgsetup_parse_controldata(controldata_real, &c, &err), 0);
    assert_null(err);
    assert_string_equal(c.system_identifier, "7711058811124314153");
    assert_string_equal(c.state, "shut down");
    assert_true(c.checkpoint_lsn == 0x1500718);
    assert_int_equal(c.checkpoint_tli, 1);
    assert_true(c.min_recovery_lsn == 0);
    assert_int_equal(c.min_recovery_tli, 0);

    /* A standby shut down after a promotion elsewhere: every value moves. */
    text = replace_line(controldata_real, "Database cluster state",
                        "Database cluster state:               shut down in recovery");
    char *t2 = replace_line(text, "Latest checkpoint location",
                            "Latest checkpoint location:           16/B374D848");
    char *t3 = replace_line(t2, "Latest checkpoint's TimeLineID",
                            "Latest checkpoint's TimeLineID:       4294967295");
    char *t4 = replace_line(t3, "Minimum recovery ending location",
                            "Minimum recovery ending location:     FFFFFFFF/FFFFFFFF");
    char *t5 = replace_line(t4, "Min recovery ending loc's timeline",
                            "Min recovery ending loc's timeline:\t3");
    assert_int_equal(pgsetup_parse_controldata(t5, &c, &err), 0);
    assert_string_equal(c.state, "shut down in recovery");
    assert_true(c.checkpoint_lsn == 0x16b374d848ull);
    assert_true(c.checkpoint_tli == UINT32_MAX);
    assert_true(c.min_recovery_lsn == UINT64_MAX);
    assert_int_equal(c.min_recovery_tli, 3);
    free(text);
    free(t2);
    free(t3);
    free(t4);
    free(t5);

    /* "Latest checkpoint location" is not "Latest checkpoint's REDO location". */
    text = replace_line(controldata_real, "Latest checkpoint location", NULL);
    controldata_bad(text, "latest checkpoint location");
    free(text);
    /* The last line needs no newline. */
    text = strdup(controldata_real);
    assert_non_null(text);
    text[strlen(text) - 1] = '\0';
    assert_int_equal(pgsetup_parse_controldata(text, &c, &err), 0);
    free(text);
}

static void test_controldata_broken(void **state)
{
    (void)state;
    controldata_bad("", "system identifier");
    controldata_bad("\n\n\n", "system identifier");
    controldata_bad("garbage without lines", "system identifier");

    /* each needed line missing */
    controldata_bad_line("Database system identifier", NULL, "system identifier");
    controldata_bad_line("Database cluster state", NULL, "cluster state");
    controldata_bad_line("Latest checkpoint location", NULL, "latest checkpoint location");
    controldata_bad_line("Latest checkpoint's TimeLineID", NULL, "latest checkpoint's timeline");
    controldata_bad_line("Minimum recovery ending location", NULL,
                         "minimum recovery ending location");
    controldata_bad_line("Min recovery ending loc's timeline", NULL,
                         "minimum recovery ending timeline");
    /* a name without its colon is not the line */
    controldata_bad_line("Database cluster state", "Database cluster state   shut down",
                         "cluster state");

    /* empty or malformed values */
    controldata_bad_line("Database system identifier",
                         "Database system identifier:", "system identifier");
    controldata_bad_line("Database system identifier", "Database system identifier:    77x1",
                         "system identifier");
    controldata_bad_line("Database system identifier", "Database system identifier:  -1",
                         "system identifier");
    controldata_bad_line("Database cluster state", "Database cluster state:   ", "cluster state");

    /* bad LSNs */
    controldata_bad_line("Latest checkpoint location", "Latest checkpoint location: 0/15007G8",
                         "latest checkpoint location");
    controldata_bad_line("Latest checkpoint location", "Latest checkpoint location: 1500718",
                         "latest checkpoint location");
    controldata_bad_line("Latest checkpoint location", "Latest checkpoint location: 0/1500718 x",
                         "latest checkpoint location");
    controldata_bad_line("Latest checkpoint location",
                         "Latest checkpoint location:", "latest checkpoint location");
    controldata_bad_line("Minimum recovery ending location",
                         "Minimum recovery ending location: 123456789/0",
                         "minimum recovery ending location");

    /* bad timelines */
    controldata_bad_line("Latest checkpoint's TimeLineID", "Latest checkpoint's TimeLineID: -1",
                         "latest checkpoint's timeline");
    controldata_bad_line("Latest checkpoint's TimeLineID", "Latest checkpoint's TimeLineID: 1x",
                         "latest checkpoint's timeline");
    controldata_bad_line("Latest checkpoint's TimeLineID", "Latest checkpoint's TimeLineID: +1",
                         "latest checkpoint's timeline");
    controldata_bad_line("Latest checkpoint's TimeLineID",
                         "Latest checkpoint's TimeLineID:", "latest checkpoint's timeline");
    controldata_bad_line("Min recovery ending loc's timeline",
                         "Min recovery ending loc's timeline: 0x1",
                         "minimum recovery ending timeline");

    /* huge values */
    controldata_bad_line("Latest checkpoint's TimeLineID",
                         "Latest checkpoint's TimeLineID: 4294967296",
                         "latest checkpoint's timeline");
    controldata_bad_line("Latest checkpoint's TimeLineID",
                         "Latest checkpoint's TimeLineID: 99999999999999999999999999",
                         "latest checkpoint's timeline");
    controldata_bad_line("Database system identifier",
                         "Database system identifier: 123456789012345678901234567890",
                         "system identifier");
    controldata_bad_line(
        "Database cluster state",
        "Database cluster state: in production in production in production in production",
        "cluster state");
    {
        char line[300];

        memset(line, 0, sizeof(line));
        strcpy(line, "Latest checkpoint location: ");
        memset(line + strlen(line), '0', 200);
        controldata_bad_line("Latest checkpoint location", line, "latest checkpoint location");
    }
}

/* ---- timeline history ----------------------------------------------------- */

static int history(const char *text, struct tli_switch *out, size_t max, char **err)
{
    return pgsetup_parse_history(text, out, max, err);
}

static void history_bad(const char *text, const char *part)
{
    struct tli_switch h[8];
    char *err = NULL;

    if (history(text, h, 8, &err) != -1)
        fail_msg("accepted history \"%s\"", text);
    contains(err, part);
    free(err);
}

static void test_history_good(void **state)
{
    struct tli_switch h[8];
    char *err = NULL, line[256];

    (void)state;
    /* 00000002.history as PostgreSQL 15 writes it after a promotion */
    assert_int_equal(history("1\t0/3000060\tno recovery target specified\n", h, 8, &err), 1);
    assert_null(err);
    assert_int_equal(h[0].tli, 1);
    assert_true(h[0].switch_lsn == 0x3000060);

    /* 00000003.history as PostgreSQL 15 writes it: a blank line between entries */
    assert_int_equal(history("1\t0/1500790\tno recovery target specified\n"
                             "\n"
                             "2\t0/15008E8\tno recovery target specified\n",
                             h, 8, &err),
                     2);
    assert_int_equal(h[0].tli, 1);
    assert_true(h[0].switch_lsn == 0x1500790);
    assert_int_equal(h[1].tli, 2);
    assert_true(h[1].switch_lsn == 0x15008e8);

    /* a history with comments, blank lines and other reasons */
    assert_int_equal(history("# written by hand\n"
                             "\n"
                             "1\t0/3000060\tno recovery target specified\n"
                             "   \t\n"
                             "  # indented comment\n"
                             "2\t0/50000D8\tbefore 2024-05-01 10:00:00+00\n"
                             "3\t16/B374D848\tat restore point \"before-upgrade\"",
                             h, 8, &err),
                     3);
    assert_int_equal(h[1].tli, 2);
    assert_true(h[1].switch_lsn == 0x50000d8);
    assert_int_equal(h[2].tli, 3);
    assert_true(h[2].switch_lsn == 0x16b374d848ull);

    /* no reason, spaces for tabs, CRLF line ends */
    assert_int_equal(history("1 0/3000060\r\n2 0/4000000\r\n", h, 8, &err), 2);
    assert_true(h[1].switch_lsn == 0x4000000);

    /* nothing but comments: no entries, and none needed room */
    assert_int_equal(history("", h, 0, &err), 0);
    assert_int_equal(history("# nothing\n\n", h, 0, &err), 0);

    /* exactly <max> entries */
    assert_int_equal(history("1\t0/1\tx\n2\t0/2\tx\n", h, 2, &err), 2);

    /* A long reason is free text: only the first two fields are read. */
    snprintf(line, sizeof(line), "1\t0/3000060\t%0190d\n", 0);
    assert_int_equal(strlen(line), 12 + 190 + 1);
    assert_int_equal(history(line, h, 8, &err), 1);
    assert_true(h[0].switch_lsn == 0x3000060);
    /* a 200-character comment is still a comment */
    memset(line, '#', 200);
    line[200] = '\0';
    assert_int_equal(history(line, h, 8, &err), 0);
}

static void test_history_bad(void **state)
{
    struct tli_switch h[2];
    char *err = NULL, line[256];

    (void)state;
    /* more entries than room, and nothing written past it */
    memset(h, 0, sizeof(h));
    assert_int_equal(history("1\t0/1\tx\n2\t0/2\tx\n3\t0/3\tx\n", h, 2, &err), -1);
    contains(err, "more than 2 entries");
    free(err);
    err = NULL;
    assert_int_equal(history("1\t0/1\n", h, 0, &err), -1);
    contains(err, "more than 0 entries");
    free(err);

    history_bad("1\n", "line 1: expected a timeline and an LSN");
    history_bad("1\t\n", "line 1: expected a timeline and an LSN");
    history_bad("# c\n\n1\t0/1\nx\n", "line 4");
    history_bad("x\t0/1\tx\n", "bad timeline or LSN");
    history_bad("0\t0/1\tx\n", "bad timeline or LSN");
    history_bad("-1\t0/1\tx\n", "bad timeline or LSN");
    history_bad("4294967296\t0/1\tx\n", "bad timeline or LSN");
    history_bad("1\t0/1/2\tx\n", "bad timeline or LSN");
    history_bad("1\tzz\tx\n", "bad timeline or LSN");
    history_bad("1\t123456789/0\tx\n", "bad timeline or LSN");
    history_bad("1,0/1,x\n", "expected a timeline and an LSN");
    /* a 16-character first field is no timeline, not a timeline and the rest an LSN */
    history_bad("0000000000000012/3000060\tx\n", "expected a timeline and an LSN");
    history_bad("1234567890123456 0/1\n", "expected a timeline and an LSN");
    /* an over-long LSN field */
    history_bad("1\t0/00000000000000000000000000000001\n", "expected a timeline and an LSN");
    /* timelines only increase, as PostgreSQL's readTimeLineHistory() requires */
    history_bad("2\t0/1\tx\n1\t0/2\tx\n", "line 2: timeline 1 does not follow 2");
    history_bad("1\t0/1\tx\n1\t0/2\tx\n", "line 2");
    /* a 200-character line that is no entry */
    memset(line, 'z', 200);
    line[200] = '\0';
    history_bad(line, "line 1");
}

/* ---- postmaster.pid ------------------------------------------------------ */

struct pid_fixture {
    char dir[64];
    struct pgpaths p;
    char pidfile[320];
};

static int pid_setup(void **state)
{
    struct pid_fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    make_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->p.pgdata, sizeof(f->p.pgdata), "%s", f->dir);
    snprintf(f->pidfile, sizeof(f->pidfile), "%s/postmaster.pid", f->dir);
    *state = f;
    return 0;
}

static int pid_teardown(void **state)
{
    struct pid_fixture *f = *state;

    remove_tree(f->dir);
    free(f);
    return 0;
}

/* postmaster.pid with <pid> on its first line and <rest> after it. */
static void pid_file(struct pid_fixture *f, long pid, const char *rest)
{
    char text[256];

    snprintf(text, sizeof(text), "%ld\n%s", pid, rest);
    write_text(f->pidfile, text);
}

/* A copy of /bin/sleep as <path>, running; returns its pid. */
static pid_t run_copy_of_sleep(const char *path)
{
    int in, out;
    char buf[65536];
    ssize_t n;
    pid_t pid;

    in = open("/bin/sleep", O_RDONLY | O_CLOEXEC);
    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    assert_true(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    assert_int_equal(close(out), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(path, path, "60", (char *)NULL);
        _exit(127);
    }
    /* wait until the child runs the copy, not this test program */
    for (int i = 0; i < 500; i++) {
        char link[64], exe[512];
        ssize_t len;

        snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
        len = readlink(link, exe, sizeof(exe) - 1);
        if (len > 0) {
            exe[len] = '\0';
            if (strncmp(exe, path, strlen(path)) == 0)
                return pid;
        }
        usleep(10000);
    }
    fail_msg("%s did not start", path);
    return -1;
}

static void stop_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_read_pid(void **state)
{
    struct pid_fixture *f = *state;
    char *err = NULL, bin[128], path[256];
    pid_t pid;

    /* no file: no postmaster */
    assert_int_equal(pgsetup_read_pid(&f->p, &err), 0);
    assert_null(err);

    /* a live process that is not postgres: this test */
    pid_file(f, getpid(), "/tmp/x\n1700000000\n5432\n/run/mfa\n*\n  5432001   0\nready\n");
    assert_int_equal(pgsetup_read_pid(&f->p, &err), 0);
    assert_null(err);

    /* a dead process */
    if (kill(999999, 0) < 0 && errno == ESRCH) {
        pid_file(f, 999999, "");
        assert_int_equal(pgsetup_read_pid(&f->p, &err), 0);
        assert_null(err);
    }

    /* a live program named postgres is taken for the postmaster */
    snprintf(bin, sizeof(bin), "%s/bin", f->dir);
    assert_int_equal(mkdir(bin, 0700), 0);
    snprintf(path, sizeof(path), "%s/postgres", bin);
    pid = run_copy_of_sleep(path);
    pid_file(f, pid, "");
    assert_int_equal(pgsetup_read_pid(&f->p, &err), pid);
    assert_null(err);
    /* ... still when a package upgrade replaced its program */
    unlink(path);
    assert_int_equal(pgsetup_read_pid(&f->p, &err), pid);
    assert_null(err);
    stop_child(pid);

    /* another PostgreSQL program (its path names "postgres" too) is not */
    snprintf(bin, sizeof(bin), "%s/postgresql", f->dir);
    assert_int_equal(mkdir(bin, 0700), 0);
    snprintf(path, sizeof(path), "%s/pg_basebackup", bin);
    pid = run_copy_of_sleep(path);
    pid_file(f, pid, "");
    assert_int_equal(pgsetup_read_pid(&f->p, &err), 0);
    assert_null(err);
    stop_child(pid);
}

static void test_read_pid_malformed(void **state)
{
    static const char *const bad[] = {
        "",    "\n",  "abc\n", "12x\n",     " x\n",
        "1\n", "0\n", "-5\n",  "4194305\n", "99999999999999999999\n",
    };
    struct pid_fixture *f = *state;
    char *err = NULL, link[400];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_text(f->pidfile, bad[i]);
        if (pgsetup_read_pid(&f->p, &err) != -1)
            fail_msg("postmaster.pid \"%s\" accepted", bad[i]);
        contains(err, "not a process id");
        free(err);
        err = NULL;
    }
    /* a symbolic link is not followed */
    unlink(f->pidfile);
    snprintf(link, sizeof(link), "%s/elsewhere", f->dir);
    write_text(link, "4242\n");
    assert_int_equal(symlink(link, f->pidfile), 0);
    assert_int_equal(pgsetup_read_pid(&f->p, &err), -1);
    contains(err, "cannot open");
    free(err);
}

/* ---- configuration files -------------------------------------------------- */

struct conf_fixture {
    char dir[64];
    struct appconf conf;
    struct pgpaths p;
};

/*
 * n1 is this member; the CA path holds a quote and a backslash, the cipher
 * list a quote, so that every quoting layer is crossed.
 */
static const char conf_fmt[] =
    "version = 1;\n"
    "cluster = {\n"
    "  name = \"demo\";\n"
    "  tls = { ca = \"%s/o'brien\\\\ca.crt\"; ciphers = \"HIGH:!aNULL:it's\"; };\n"
    "  members = ( { id = \"n1\"; address = \"127.0.0.1\"; },\n"
    "              { id = \"n2\"; address = \"10.0.0.2\"; ports = { postgres = 5433; }; } );\n"
    "};\n"
    "appliance = { member = \"n1\"; data_dir = \"%s\"; run_dir = \"/run/mfa\"; };\n"
    "replicator = { fsync = %s; };\n";

static int conf_load(struct conf_fixture *f, bool fsync)
{
    char text[2048], *err = NULL;

    snprintf(text, sizeof(text), conf_fmt, f->dir, f->dir, fsync ? "true" : "false");
    if (appconf_load_string(text, "test.conf", &f->conf, NULL, NULL, &err) < 0 ||
        pgsetup_paths(&f->conf, &f->p, &err) < 0) {
        print_error("%s\n", err);
        free(err);
        return -1;
    }
    return 0;
}

static int conf_setup(void **state)
{
    struct conf_fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    make_tmpdir(f->dir, sizeof(f->dir));
    *state = f;
    return conf_load(f, false);
}

static int conf_teardown(void **state)
{
    struct conf_fixture *f = *state;

    remove_tree(f->dir);
    appconf_free(&f->conf);
    free(f);
    return 0;
}

/*
 * The value of "<name> = '...'" in postgresql.conf <text>, read back the way
 * PostgreSQL's GUC_scanstr() does for the escapes we write ('' and \\).
 */
static char *conf_value(const char *text, const char *name)
{
    char key[64], *out = calloc(1, strlen(text) + 1), *o = out;
    const char *s;

    assert_non_null(out);
    snprintf(key, sizeof(key), "\n%s = '", name);
    s = strstr(text, key);
    if (!s)
        fail_msg("no quoted %s in postgresql.conf", name);
    for (s += strlen(key); *s && *s != '\n'; s++) {
        if (*s == '\'' && s[1] == '\'')
            *o++ = *++s;
        else if (*s == '\\' && s[1] == '\\')
            *o++ = *++s;
        else if (*s == '\\')
            fail_msg("%s: PostgreSQL would read \\%c as an escape", name, s[1]);
        else if (*s == '\'')
            break;
        else
            *o++ = *s;
    }
    if (*s != '\'' || s[1] != '\n')
        fail_msg("%s: value not closed at the end of its line", name);
    return out;
}

static char *conninfo_get(const char *conninfo, const char *key)
{
    char *msg = NULL, *val = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);

    if (!opts)
        fail_msg("conninfo \"%s\" does not parse: %s", conninfo, msg ? msg : "");
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, key) == 0 && o->val)
            val = strdup(o->val);
    }
    PQconninfoFree(opts);
    return val;
}

static void test_write_conf_primary(void **state)
{
    struct conf_fixture *f = *state;
    struct pgsetup_role role = { NULL, NULL, false };
    char *err = NULL, *text, *v, path[400];
    DIR *d;
    struct dirent *e;

    assert_string_equal(f->p.conf + strlen(f->dir), "/pg/postgresql.conf");
    assert_int_equal(pgsetup_write_conf(&f->conf, &f->p, "mfa", &role, &err), 0);
    assert_null(err);
    assert_mode(f->p.confdir, 0700);
    assert_mode(f->p.conf, 0600);
    snprintf(path, sizeof(path), "%s/pg_hba.conf", f->p.confdir);
    assert_mode(path, 0600);
    text = read_text(path);
    contains(text, "local   all          postgres   peer map=superuser\n");
    contains(text, "hostssl replication  mfa_replication   all  scram-sha-256\n");
    contains(text, "hostssl \"mfa\"  \"mfa\"  all  scram-sha-256\n");
    free(text);
    snprintf(path, sizeof(path), "%s/pg_ident.conf", f->p.confdir);
    assert_mode(path, 0600);
    text = read_text(path);
    contains(text, "\nsuperuser  mfa  postgres\n");
    free(text);
    /* no temporary file left behind */
    d = opendir(f->p.confdir);
    assert_non_null(d);
    while ((e = readdir(d)))
        lacks(e->d_name, ".tmp");
    closedir(d);

    text = read_text(f->p.conf);
    contains(text, "\nprimary_conninfo = ''\nprimary_slot_name = ''\n");
    contains(text, "\ndefault_transaction_read_only = off\n");
    contains(text, "\nsynchronous_standby_names = ''\n");
    contains(text, "\nport = 5432\n");
    contains(text, "\nlisten_addresses = '127.0.0.1'\n");
    contains(text, "\ncluster_name = 'n1'\n");
    contains(text, "\nunix_socket_directories = '/run/mfa'\n");
    contains(text, "\nfsync = off\n");
    /* a quote is doubled */
    contains(text, "\nssl_ciphers = 'HIGH:!aNULL:it''s'\n");
    v = conf_value(text, "ssl_ciphers");
    assert_string_equal(v, "HIGH:!aNULL:it's");
    free(v);
    /* and a backslash too: PostgreSQL would read "\c" as an escape */
    v = conf_value(text, "ssl_ca_file");
    assert_string_equal(v + strlen(f->dir), "/o'brien\\ca.crt");
    free(v);
    v = conf_value(text, "log_directory");
    assert_string_equal(v, f->dir);
    free(v);
    free(text);
}

static void test_write_conf_standby(void **state)
{
    struct conf_fixture *f = *state;
    struct pgsetup_role role = { "n2", "ANY 1 (\"n2\")", true };
    char *err = NULL, *text, *ci, *v;

    assert_int_equal(pgsetup_write_conf(&f->conf, &f->p, "mfa", &role, &err), 0);
    assert_null(err);
    assert_mode(f->p.conf, 0600);
    text = read_text(f->p.conf);
    contains(text, "\ndefault_transaction_read_only = on\n");
    contains(text, "\nsynchronous_standby_names = 'ANY 1 (\"n2\")'\n");
    contains(text, "\nprimary_slot_name = 'member_n1'\n");
    lacks(text, "primary_conninfo = ''");

    /* primary_conninfo reads back, then parses as libpq does, to what was meant */
    ci = conf_value(text, "primary_conninfo");
    v = conninfo_get(ci, "hostaddr");
    assert_string_equal(v, "10.0.0.2");
    free(v);
    v = conninfo_get(ci, "port");
    assert_string_equal(v, "5433");
    free(v);
    v = conninfo_get(ci, "user");
    assert_string_equal(v, PG_ROLE_REPLICATION);
    free(v);
    v = conninfo_get(ci, "sslmode");
    assert_string_equal(v, "verify-ca");
    free(v);
    v = conninfo_get(ci, "application_name");
    assert_string_equal(v, "n1");
    free(v);
    v = conninfo_get(ci, "passfile");
    assert_string_equal(v, f->p.passfile);
    free(v);
    v = conninfo_get(ci, "sslrootcert");
    assert_non_null(v);
    assert_string_equal(v + strlen(f->dir), "/o'brien\\ca.crt");
    free(v);
    free(ci);
    free(text);

    /* back to no upstream: the file is rewritten whole */
    role = (struct pgsetup_role){ "", NULL, false };
    assert_int_equal(pgsetup_write_conf(&f->conf, &f->p, "mfa", &role, &err), 0);
    text = read_text(f->p.conf);
    contains(text, "\nprimary_conninfo = ''\n");
    contains(text, "\ndefault_transaction_read_only = off\n");
    free(text);

    /* an unknown upstream is refused */
    role = (struct pgsetup_role){ "n9", NULL, false };
    assert_int_equal(pgsetup_write_conf(&f->conf, &f->p, "mfa", &role, &err), -1);
    contains(err, "unknown upstream member \"n9\"");
    free(err);
}

static void test_write_passfile(void **state)
{
    struct conf_fixture *f = *state;
    char *err = NULL, *text;

    assert_int_equal(pgsetup_write_passfile(&f->p, "replpw", "rewindpw", &err), 0);
    assert_mode(f->p.passfile, 0600);
    text = read_text(f->p.passfile);
    assert_string_equal(text, "*:*:*:mfa_replication:replpw\n*:*:*:mfa_rewind:rewindpw\n");
    free(text);
}

/* ---- argument vectors ------------------------------------------------------ */

typedef int (*argv_fn)(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                       size_t size);

static int initdb(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                  size_t size)
{
    return pgsetup_argv_initdb(&f->conf, &f->p, argv, max, store, size);
}

static int postgres(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                    size_t size)
{
    return pgsetup_argv_postgres(&f->conf, &f->p, argv, max, store, size);
}

static int basebackup(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                      size_t size)
{
    return pgsetup_argv_basebackup(&f->conf, &f->p, "host=10.0.0.2 user=x", "member_n1", argv, max,
                                   store, size);
}

static int rewind_(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                   size_t size)
{
    return pgsetup_argv_rewind(&f->conf, &f->p, "host=10.0.0.2 user=x", argv, max, store, size);
}

static int controldata(const struct conf_fixture *f, const char **argv, size_t max, char *store,
                       size_t size)
{
    return pgsetup_argv_controldata(&f->conf, &f->p, argv, max, store, size);
}

/*
 * <fn> gives <want> (NULL-terminated, "%D" for PGDATA, "%C" for the config
 * file) with room to spare and with exactly enough, and -1 with one entry or
 * one byte less, writing nothing out of bounds (the buffers are malloc'd to
 * size, for ASan).
 */
static void check_argv(const struct conf_fixture *f, argv_fn fn, const char *const *want)
{
    size_t count = 0, bytes = 0;
    char expect[16][512];
    bool ok;
    int rc;
    const char **argv;
    char *store;

    for (; want[count]; count++) {
        const char *w = want[count], *mark = strchr(w, '%');

        if (mark)
            snprintf(expect[count], sizeof(expect[count]), "%.*s%s", (int)(mark - w), w,
                     mark[1] == 'D' ? f->p.pgdata : f->p.conf);
        else
            snprintf(expect[count], sizeof(expect[count]), "%s", w);
        bytes += strlen(expect[count]) + 1;
    }

    /* exactly enough: count entries and the NULL, every string and its NUL */
    argv = malloc((count + 1) * sizeof(*argv));
    store = malloc(bytes);
    assert_true(argv && store);
    rc = fn(f, argv, count + 1, store, bytes);
    for (size_t i = 0; rc == 0 && i < count; i++)
        assert_string_equal(argv[i], expect[i]);
    ok = rc == 0 && argv[count] == NULL;
    free(argv);
    free(store);
    assert_true(ok);

    /* one byte short, anywhere down to nothing */
    argv = malloc((count + 1) * sizeof(*argv));
    for (size_t size = 0; size < bytes; size++) {
        store = malloc(size ? size : 1);
        assert_non_null(store);
        assert_int_equal(fn(f, argv, count + 1, store, size), -1);
        free(store);
    }
    free(argv);

    /* one entry short, down to none */
    store = malloc(bytes);
    for (size_t max = 0; max <= count; max++) {
        argv = malloc((max ? max : 1) * sizeof(*argv));
        assert_non_null(argv);
        assert_int_equal(fn(f, argv, max, store, bytes), -1);
        free(argv);
    }
    free(store);
}

static void test_argv(void **state)
{
    struct conf_fixture *f = *state;
    static const char *const want_initdb[] = {
        "/usr/lib/postgresql/15/bin/initdb",
        "--pgdata=%D",
        "--username=postgres",
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--data-checksums",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        NULL,
    };
    static const char *const want_initdb_fsync[] = {
        "/usr/lib/postgresql/15/bin/initdb",
        "--pgdata=%D",
        "--username=postgres",
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--data-checksums",
        "--encoding=UTF8",
        "--locale=C",
        NULL,
    };
    static const char *const want_postgres[] = {
        "/usr/lib/postgresql/15/bin/postgres", "-D", "%D", "--config-file=%C", NULL,
    };
    static const char *const want_basebackup[] = {
        "/usr/lib/postgresql/15/bin/pg_basebackup",
        "--dbname=host=10.0.0.2 user=x",
        "--pgdata=%D",
        "--wal-method=stream",
        "--slot=member_n1",
        "--checkpoint=fast",
        "--no-sync",
        NULL,
    };
    static const char *const want_rewind[] = {
        "/usr/lib/postgresql/15/bin/pg_rewind",
        "--target-pgdata=%D",
        "--source-server=host=10.0.0.2 user=x",
        "--config-file=%C",
        "--progress",
        "--no-sync",
        NULL,
    };
    static const char *const want_controldata[] = {
        "/usr/lib/postgresql/15/bin/pg_controldata",
        "-D",
        "%D",
        NULL,
    };

    check_argv(f, initdb, want_initdb);
    check_argv(f, postgres, want_postgres);
    check_argv(f, basebackup, want_basebackup);
    check_argv(f, rewind_, want_rewind);
    check_argv(f, controldata, want_controldata);

    /* with fsync on, no --no-sync */
    appconf_free(&f->conf);
    assert_int_equal(conf_load(f, true), 0);
    check_argv(f, initdb, want_initdb_fsync);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsn_round_trip),
        cmocka_unit_test(test_lsn_rejects),
        cmocka_unit_test(test_controldata_real),
        cmocka_unit_test(test_controldata_broken),
        cmocka_unit_test(test_history_good),
        cmocka_unit_test(test_history_bad),
        cmocka_unit_test_setup_teardown(test_read_pid, pid_setup, pid_teardown),
        cmocka_unit_test_setup_teardown(test_read_pid_malformed, pid_setup, pid_teardown),
        cmocka_unit_test_setup_teardown(test_write_conf_primary, conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_write_conf_standby, conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_write_passfile, conf_setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_argv, conf_setup, conf_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
