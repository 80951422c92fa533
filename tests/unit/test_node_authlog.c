/*
 * The auth log spool (node/authlog*.c) without a database: the line format
 * round-trips and refuses bad lines, fields are bounded, the boot epoch rises
 * at every open and seq restarts at 1, a torn last line is skipped, segments
 * rotate at their size, fsync groups complete off the loop, and a second
 * process cannot open the same spool. Shipping is covered by
 * tests/integration/test_node_authlog.py against a real PostgreSQL.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "authlog.h"
#include "worker.h"

/* ---- helpers ---- */

struct fixture {
    char dir[64];
    struct event_base *base;
    struct worker_pool *pool;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/mfa-authlog-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->base = event_base_new();
    f->pool = worker_pool_new(f->base, 2, &err);
    if (!f->base || !f->pool) {
        free(err);
        return -1;
    }
    *state = f;
    return 0;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        char path[512];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    worker_pool_free(f->pool);
    event_base_free(f->base);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static struct authlog *open_log(struct fixture *f, size_t segment_max)
{
    struct authlog_settings s = { 0 };
    struct authlog *al;
    char *err = NULL;

    s.spool_dir = f->dir;
    s.node_id = "n1";
    s.segment_max = segment_max;
    s.fsync_interval_ms = 10;
    al = authlog_open(f->base, f->pool, &s, &err);
    if (!al)
        fail_msg("authlog_open: %s", err);
    return al;
}

static void append_ok(struct authlog *al, const struct authlog_record *r)
{
    char *err = NULL;

    if (authlog_append(al, r, &err) != 0)
        fail_msg("authlog_append: %s", err);
}

static const struct authlog_record plain = {
    .username = "alice",
    .method = "totp",
    .result = "accepted",
    .reason = "",
    .server_name = "vpn1",
    .server_ip = "10.0.0.1",
    .client_ip = "192.0.2.7",
    .challenge_id = NULL,
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Sorted names of the segment files in <dir>; returns how many (at most <max>). */
static int list_segments(const char *dir, char names[][64], int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);

        if (strncmp(e->d_name, "seg-", 4) == 0 && len < 64)
            memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    qsort(names, (size_t)n, 64, name_cmp);
    return n;
}

/* Reads <dir>/<name> into a malloc'd buffer; *len its size. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[512], *buf;
    FILE *fp;
    long n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

struct collected {
    struct authlog_entry e[256];
    int n;
};

static int collect(void *arg, const struct authlog_entry *e)
{
    struct collected *c = arg;

    if (c->n < 256)
        c->e[c->n++] = *e;
    return 0;
}

/* Parses every segment of <dir> as the shipper does (at_eof: a torn tail is skipped). */
static void read_spool(const char *dir, struct collected *c, uint64_t *corrupt)
{
    char names[64][64];
    int n = list_segments(dir, names, 64);

    c->n = 0;
    *corrupt = 0;
    for (int i = 0; i < n; i++) {
        struct authlog_scan_result r;
        size_t len;
        char *buf = slurp(dir, names[i], &len);

        authlog_scan(buf, len, true, UINT64_MAX, collect, c, &r);
        assert_int_equal(r.consumed, len);
        *corrupt += r.corrupt;
        free(buf);
    }
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void nop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until every record appended so far is fsynced or <secs> pass. */
static bool run_until_synced(struct fixture *f, struct authlog *al, double secs)
{
    struct timeval tv = { 0, 5000 };
    struct event *guard = event_new(f->base, -1, EV_PERSIST, nop_cb, NULL);
    double end = now_s() + secs;
    struct authlog_stats st;

    event_add(guard, &tv);
    for (;;) {
        authlog_get_stats(al, &st);
        if (st.synced_seq == st.last_seq || now_s() > end)
            break;
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    event_free(guard);
    return st.synced_seq == st.last_seq;
}

/* ---- the line format ---- */

/* Entries compare bytewise, so every field must be zero past its NUL. */
static void fill_entry(struct authlog_entry *e)
{
    memset(e, 0, sizeof(*e));
    strcpy(e->node_id, "n1");
    e->boot_epoch = 7;
    e->seq = 42;
    e->at_ms = INT64_C(1700000000123);
    strcpy(e->username, "alice");
    strcpy(e->method, "totp");
    strcpy(e->result, "accepted");
    strcpy(e->server_name, "vpn1");
    strcpy(e->server_ip, "10.0.0.1");
    strcpy(e->challenge_id, "n1-AAAAAAAAAAAAAAAAAAAAAA");
}

static void roundtrip(const struct authlog_entry *e)
{
    char line[AUTHLOG_LINE_MAX + 1], *err = NULL;
    struct authlog_entry back;
    long len = authlog_entry_encode(e, line, sizeof(line), &err);

    if (len < 0)
        fail_msg("encode: %s", err);
    assert_true(len <= AUTHLOG_LINE_MAX);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', (size_t)len - 1));
    if (authlog_entry_parse(line, (size_t)len, &back, &err) != 0)
        fail_msg("parse: %s: %s", err, line);
    assert_memory_equal(e, &back, sizeof(back));
}

static void test_record_roundtrip(void **state)
{
    struct authlog_entry e;

    (void)state;
    fill_entry(&e);
    roundtrip(&e);

    /* nulls, IPv6, the largest numbers */
    fill_entry(&e);
    memset(e.server_ip, 0, sizeof(e.server_ip));
    memset(e.challenge_id, 0, sizeof(e.challenge_id));
    strcpy(e.client_ip, "2001:db8::1");
    e.boot_epoch = e.seq = (uint64_t)INT64_MAX;
    e.at_ms = AUTHLOG_AT_MS_MAX;
    strcpy(e.result, "challenge");
    roundtrip(&e);

    /* every field at its bound, with bytes JSON must escape: the line still fits */
    fill_entry(&e);
    strcpy(e.node_id, "abcdefghij012345");
    memset(e.username, 0x01, AUTHLOG_USERNAME_MAX);
    memset(e.method, '"', AUTHLOG_METHOD_MAX);
    memset(e.reason, '\\', AUTHLOG_REASON_MAX);
    memset(e.server_name, 0x1f, AUTHLOG_SERVER_NAME_MAX);
    memset(e.challenge_id, '\n', AUTHLOG_CHALLENGE_ID_MAX);
    assert_true(authlog_ip_copy(e.server_ip, "1111:2222:3333:4444:5555:6666:7777:8888"));
    strcpy(e.client_ip, "255.255.255.255");
    memset(e.result, 0, sizeof(e.result));
    strcpy(e.result, "error");
    roundtrip(&e);

    /* multi-byte UTF-8 */
    fill_entry(&e);
    memset(e.username, 0, sizeof(e.username));
    strcpy(e.username, "j\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x91");
    strcpy(e.reason, "bad code");
    roundtrip(&e);
}

static void test_record_encode_refuses_invalid(void **state)
{
    struct authlog_entry e;
    char line[AUTHLOG_LINE_MAX + 1], *err = NULL;

    (void)state;
    fill_entry(&e);
    strcpy(e.result, "maybe");
    assert_int_equal(authlog_entry_encode(&e, line, sizeof(line), &err), -1);
    assert_non_null(strstr(err, "result"));
    free(err);
    err = NULL;
    fill_entry(&e);
    strcpy(e.username, "\xff");
    assert_int_equal(authlog_entry_encode(&e, line, sizeof(line), &err), -1);
    free(err);
    err = NULL;
    fill_entry(&e);
    strcpy(e.client_ip, "10.0.0.01");
    assert_int_equal(authlog_entry_encode(&e, line, sizeof(line), &err), -1);
    free(err);
    err = NULL;
    fill_entry(&e);
    assert_int_equal(authlog_entry_encode(&e, line, 64, &err), -1); /* too small */
    free(err);
}

static void test_record_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "\n",
        "{}",
        "[]",
        "null",
        "{\"v\":1}",
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null", /* torn */
        /* wrong version */
        "{\"v\":2,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* bad result */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"ok\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* seq 0 */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":0,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* epoch a string */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":\"1\",\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* seq past bigint */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":9223372036854775808,\"at_ms\":1,"
        "\"username\":\"a\",\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\","
        "\"server_name\":\"\",\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* node id with a dash */
        "{\"v\":1,\"node_id\":\"n-1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* not an address */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":\"example.org\",\"client_ip\":null,\"challenge_id\":null}",
        /* NUL inside a string */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":"
        "\"a\\u0000b\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* a lone surrogate */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":"
        "\"\\ud800\","
        "\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* duplicate key */
        "{\"v\":1,\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,"
        "\"username\":\"a\",\"method\":\"totp\",\"result\":\"accepted\",\"reason\":\"\","
        "\"server_name\":\"\",\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* empty method */
        "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,\"username\":\"a\","
        "\"method\":\"\",\"result\":\"accepted\",\"reason\":\"\",\"server_name\":\"\","
        "\"server_ip\":null,\"client_ip\":null,\"challenge_id\":null}",
        /* two objects on one line */
        "{\"v\":1} {\"v\":1}",
    };
    struct authlog_entry e;
    char line[AUTHLOG_LINE_MAX + 1], *big;
    long len;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *err = NULL;

        if (authlog_entry_parse(bad[i], strlen(bad[i]), &e, &err) == 0)
            fail_msg("accepted bad line %zu: %s", i, bad[i]);
        assert_non_null(err);
        free(err);
    }

    /* an oversized username: the writer would have cut it, so the line is corrupt */
    big = malloc(AUTHLOG_LINE_MAX);
    assert_non_null(big);
    len = snprintf(big, AUTHLOG_LINE_MAX,
                   "{\"v\":1,\"node_id\":\"n1\",\"boot_epoch\":1,\"seq\":1,\"at_ms\":1,"
                   "\"username\":\"%0*d\",\"method\":\"totp\",\"result\":\"accepted\","
                   "\"reason\":\"\",\"server_name\":\"\",\"server_ip\":null,\"client_ip\":null,"
                   "\"challenge_id\":null}",
                   AUTHLOG_USERNAME_MAX + 1, 0);
    assert_int_equal(authlog_entry_parse(big, (size_t)len, &e, NULL), -1);
    free(big);

    /* a valid line parses without its '\n' and with it, and only up to <len> */
    fill_entry(&e);
    len = authlog_entry_encode(&e, line, sizeof(line), NULL);
    assert_true(len > 0);
    assert_int_equal(authlog_entry_parse(line, (size_t)len - 1, &e, NULL), 0);
    assert_int_equal(authlog_entry_parse(line, (size_t)len - 2, &e, NULL), -1);
}

static void test_scan_skips_corrupt_and_torn(void **state)
{
    struct authlog_entry e;
    char line[AUTHLOG_LINE_MAX + 1], buf[8192];
    size_t n = 0, torn_at;
    struct authlog_scan_result r;
    struct collected *c = calloc(1, sizeof(*c));
    long len;

    (void)state;
    assert_non_null(c);
    fill_entry(&e);
    for (int i = 1; i <= 3; i++) {
        e.seq = (uint64_t)i;
        len = authlog_entry_encode(&e, line, sizeof(line), NULL);
        memcpy(buf + n, line, (size_t)len);
        n += (size_t)len;
        if (i == 1) {
            memcpy(buf + n, "garbage\n", 8);
            n += 8;
        }
    }
    torn_at = n;
    e.seq = 4;
    len = authlog_entry_encode(&e, line, sizeof(line), NULL);
    memcpy(buf + n, line, (size_t)len / 2); /* a crash in mid-line */
    n += (size_t)len / 2;

    /* more may come: the partial line stays for the next read */
    authlog_scan(buf, n, false, UINT64_MAX, collect, c, &r);
    assert_int_equal(c->n, 3);
    assert_int_equal(r.records, 3);
    assert_int_equal(r.corrupt, 1);
    assert_int_equal(r.lines, 4);
    assert_int_equal(r.consumed, torn_at);
    assert_false(r.torn_tail);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->e[i].seq, (uint64_t)i + 1);

    /* end of a finished segment: the tail is torn and skipped */
    c->n = 0;
    authlog_scan(buf, n, true, UINT64_MAX, collect, c, &r);
    assert_int_equal(c->n, 3);
    assert_int_equal(r.corrupt, 2);
    assert_true(r.torn_tail);
    assert_int_equal(r.consumed, n);

    /* a limit stops after that many records, at a line boundary */
    c->n = 0;
    authlog_scan(buf, n, true, 2, collect, c, &r);
    assert_int_equal(r.records, 2);
    assert_int_equal(c->e[1].seq, 2);
    assert_true(r.consumed < torn_at && buf[r.consumed - 1] == '\n');

    /* a partial line already AUTHLOG_LINE_MAX long can only be garbage: taken */
    {
        char *junk = malloc(AUTHLOG_LINE_MAX + 10);

        assert_non_null(junk);
        memset(junk, 'x', AUTHLOG_LINE_MAX + 10);
        authlog_scan(junk, AUTHLOG_LINE_MAX + 10, false, UINT64_MAX, collect, c, &r);
        assert_int_equal(r.consumed, AUTHLOG_LINE_MAX + 10);
        assert_int_equal(r.corrupt, 1);
        free(junk);
    }
    free(c);
}

static void test_text_and_ip_bounds(void **state)
{
    char small[8], ip[AUTHLOG_IP_MAX + 1];

    (void)state;
    assert_true(authlog_text_copy(small, sizeof(small), "abc"));
    assert_string_equal(small, "abc");
    /* cut at the bound, never inside a character */
    assert_false(authlog_text_copy(small, sizeof(small), "abcdef\xc3\xa9"));
    assert_string_equal(small, "abcdef");
    assert_false(authlog_text_copy(small, sizeof(small), "abcdefgh"));
    assert_string_equal(small, "abcdefg");
    /* bad bytes become U+FFFD; overlong forms and surrogates are bad */
    assert_false(authlog_text_copy(small, sizeof(small),
                                   "a\xff"
                                   "b"));
    assert_string_equal(small, "a\xef\xbf\xbd"
                               "b");
    assert_false(authlog_text_copy(small, sizeof(small), "\xc0\xaf"));
    assert_string_equal(small, "\xef\xbf\xbd\xef\xbf\xbd");
    assert_false(authlog_text_copy(small, sizeof(small), "\xed\xa0\x80"));
    assert_true(authlog_text_copy(small, sizeof(small), NULL));
    assert_string_equal(small, "");

    assert_true(authlog_ip_copy(ip, "10.0.0.1"));
    assert_string_equal(ip, "10.0.0.1");
    assert_true(authlog_ip_copy(ip, "2001:DB8:0:0::1"));
    assert_string_equal(ip, "2001:db8::1");
    assert_true(authlog_ip_copy(ip, "::FFFF:10.0.0.1"));
    assert_string_equal(ip, "::ffff:10.0.0.1");
    assert_false(authlog_ip_copy(ip, "10.0.0.1/24"));
    assert_string_equal(ip, "");
    assert_false(authlog_ip_copy(ip, "fe80::1%eth0"));
    assert_false(authlog_ip_copy(ip, "localhost"));
    assert_false(authlog_ip_copy(ip, "10.0.0"));
    assert_false(authlog_ip_copy(ip, ""));
    assert_false(authlog_ip_copy(ip, NULL));
}

/* ---- the spool ---- */

static void test_append_reopen_epoch(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0);
    struct authlog_stats st;
    struct collected *c = calloc(1, sizeof(*c));
    uint64_t epoch, corrupt;
    char names[8][64], *text;
    size_t len;

    assert_non_null(c);
    authlog_get_stats(al, &st);
    epoch = st.boot_epoch;
    assert_true(epoch >= 1);
    assert_int_equal(st.last_seq, 0);
    for (int i = 1; i <= 20; i++) {
        append_ok(al, &plain);
        authlog_get_stats(al, &st);
        assert_int_equal(st.last_seq, (uint64_t)i);
    }
    assert_int_equal(st.appended, 20);
    assert_int_equal(st.pending, 20);
    authlog_close(al);

    text = slurp(f->dir, "epoch", &len);
    assert_int_equal(strtoull(text, NULL, 10), epoch);
    free(text);

    al = open_log(f, 0);
    authlog_get_stats(al, &st);
    assert_int_equal(st.boot_epoch, epoch + 1);
    assert_int_equal(st.appended, 0);
    assert_int_equal(st.pending, 20); /* the earlier epoch, unshipped */
    append_ok(al, &plain);
    authlog_get_stats(al, &st);
    assert_int_equal(st.last_seq, 1);
    assert_int_equal(st.pending, 21);
    assert_int_equal(st.segments, 2);
    authlog_close(al);

    /* one segment per epoch, seq from 1 in each */
    assert_int_equal(list_segments(f->dir, names, 8), 2);
    read_spool(f->dir, c, &corrupt);
    assert_int_equal(corrupt, 0);
    assert_int_equal(c->n, 21);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(c->e[i].boot_epoch, epoch);
        assert_int_equal(c->e[i].seq, (uint64_t)i + 1);
        assert_string_equal(c->e[i].node_id, "n1");
        assert_string_equal(c->e[i].username, "alice");
        assert_string_equal(c->e[i].client_ip, "192.0.2.7");
    }
    assert_int_equal(c->e[20].boot_epoch, epoch + 1);
    assert_int_equal(c->e[20].seq, 1);

    /* an open without appends leaves no empty segment behind, but still counts */
    al = open_log(f, 0);
    authlog_get_stats(al, &st);
    assert_int_equal(st.boot_epoch, epoch + 2);
    authlog_close(al);
    assert_int_equal(list_segments(f->dir, names, 8), 2);
    free(c);
}

static void test_torn_last_line_skipped(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0);
    struct authlog_stats st;
    struct collected *c = calloc(1, sizeof(*c));
    char names[8][64], path[512];
    uint64_t corrupt, epoch;
    int fd;

    assert_non_null(c);
    for (int i = 0; i < 5; i++)
        append_ok(al, &plain);
    authlog_get_stats(al, &st);
    epoch = st.boot_epoch;
    authlog_close(al);

    /* a host crash cut the last line short */
    assert_int_equal(list_segments(f->dir, names, 8), 1);
    snprintf(path, sizeof(path), "%s/%s", f->dir, names[0]);
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"v\":1,\"node_id\":\"n1\",\"boot_ep", 30), 30);
    close(fd);

    al = open_log(f, 0);
    authlog_get_stats(al, &st);
    assert_int_equal(st.boot_epoch, epoch + 1);
    assert_int_equal(st.pending, 6); /* five records and the torn line */
    append_ok(al, &plain);           /* the new epoch never appends to the torn segment */
    authlog_close(al);

    assert_int_equal(list_segments(f->dir, names, 8), 2);
    read_spool(f->dir, c, &corrupt);
    assert_int_equal(corrupt, 1);
    assert_int_equal(c->n, 6);
    assert_int_equal(c->e[4].seq, 5);
    assert_int_equal(c->e[5].boot_epoch, epoch + 1);
    assert_int_equal(c->e[5].seq, 1);
    free(c);
}

static void test_segment_rotation(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 1024);
    struct authlog_stats st;
    struct collected *c = calloc(1, sizeof(*c));
    char names[64][64];
    uint64_t corrupt, first_seq = 1;
    int n;

    assert_non_null(c);
    for (int i = 0; i < 40; i++)
        append_ok(al, &plain);
    authlog_get_stats(al, &st);
    assert_true(st.segments > 5);
    authlog_close(al);

    n = list_segments(f->dir, names, 64);
    assert_int_equal((uint64_t)n, st.segments);
    for (int i = 0; i < n; i++) {
        struct authlog_scan_result r;
        size_t len;
        char *buf = slurp(f->dir, names[i], &len), want[64];

        c->n = 0;
        assert_true(len <= 1024);
        authlog_scan(buf, len, true, UINT64_MAX, collect, c, &r);
        assert_int_equal(r.corrupt, 0);
        assert_true(c->n >= 1);
        /* named after its first record; seqs run on from the previous segment */
        snprintf(want, sizeof(want), "seg-%020" PRIu64 "-%020" PRIu64 ".jsonl", st.boot_epoch,
                 first_seq);
        assert_string_equal(names[i], want);
        for (int k = 0; k < c->n; k++)
            assert_int_equal(c->e[k].seq, first_seq + (uint64_t)k);
        first_seq += (uint64_t)c->n;
        free(buf);
    }
    assert_int_equal(first_seq, 41);
    read_spool(f->dir, c, &corrupt);
    assert_int_equal(c->n, 40);
    free(c);
}

static void test_append_bounds(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0);
    struct authlog_record r = plain;
    struct authlog_stats st;
    struct collected *c = calloc(1, sizeof(*c));
    char longname[1000], edge[AUTHLOG_USERNAME_MAX + 2], *err = NULL;
    uint64_t corrupt;
    struct timespec now;

    assert_non_null(c);
    memset(longname, 'u', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    r.username = longname; /* cut to 128 bytes */
    r.server_ip = "not-an-ip";
    r.client_ip = "2001:DB8::7";
    r.challenge_id = "n1-AAAAAAAAAAAAAAAAAAAAAA";
    r.result = "challenge";
    append_ok(al, &r);

    memset(edge, 'a', AUTHLOG_USERNAME_MAX - 1);
    memcpy(edge + AUTHLOG_USERNAME_MAX - 1, "\xc3\xa9", 3); /* é across the bound */
    r = plain;
    r.username = edge;
    r.reason = "bad \xff byte";
    r.at_ms = INT64_C(1600000000000);
    append_ok(al, &r);

    /* refused: nothing is appended */
    r = plain;
    r.result = "maybe";
    assert_int_equal(authlog_append(al, &r, &err), -1);
    assert_non_null(err);
    free(err);
    err = NULL;
    r = plain;
    r.result = NULL;
    assert_int_equal(authlog_append(al, &r, &err), -1);
    free(err);
    err = NULL;
    r = plain;
    r.method = NULL;
    assert_int_equal(authlog_append(al, &r, &err), -1);
    free(err);
    err = NULL;
    r = plain;
    r.at_ms = AUTHLOG_AT_MS_MAX + 1;
    assert_int_equal(authlog_append(al, &r, &err), -1);
    free(err);
    /* NULL texts are empty, addresses NULL */
    memset(&r, 0, sizeof(r));
    r.method = "sms";
    r.result = "error";
    append_ok(al, &r);

    authlog_get_stats(al, &st);
    assert_int_equal(st.appended, 3);
    assert_int_equal(st.last_seq, 3);
    authlog_close(al);

    read_spool(f->dir, c, &corrupt);
    assert_int_equal(corrupt, 0);
    assert_int_equal(c->n, 3);
    assert_int_equal(strlen(c->e[0].username), AUTHLOG_USERNAME_MAX);
    assert_string_equal(c->e[0].server_ip, "");
    assert_string_equal(c->e[0].client_ip, "2001:db8::7");
    assert_string_equal(c->e[0].challenge_id, "n1-AAAAAAAAAAAAAAAAAAAAAA");
    assert_string_equal(c->e[0].result, "challenge");
    clock_gettime(CLOCK_REALTIME, &now);
    assert_true(c->e[0].at_ms > ((int64_t)now.tv_sec - 60) * 1000);
    assert_true(c->e[0].at_ms <= ((int64_t)now.tv_sec + 1) * 1000);
    assert_int_equal(strlen(c->e[1].username), AUTHLOG_USERNAME_MAX - 1);
    assert_string_equal(c->e[1].reason, "bad \xef\xbf\xbd byte");
    assert_int_equal(c->e[1].at_ms, INT64_C(1600000000000));
    assert_int_equal(c->e[2].seq, 3);
    assert_string_equal(c->e[2].username, "");
    assert_string_equal(c->e[2].client_ip, "");
    free(c);
}

static void test_fsync_groups(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0);
    struct authlog_stats st;

    authlog_get_stats(al, &st);
    assert_int_equal(st.last_fsync_ms, 0);
    for (int i = 0; i < 10; i++)
        append_ok(al, &plain);
    authlog_get_stats(al, &st);
    assert_int_equal(st.synced_seq, 0); /* not on the loop: the group waits for it */
    assert_true(run_until_synced(f, al, 10));
    authlog_get_stats(al, &st);
    assert_int_equal(st.synced_seq, 10);
    assert_true(st.last_fsync_ms > 0);
    assert_int_equal(st.fsync_failures, 0);

    /* more appends: another group */
    for (int i = 0; i < 5; i++)
        append_ok(al, &plain);
    assert_true(run_until_synced(f, al, 10));
    authlog_get_stats(al, &st);
    assert_int_equal(st.synced_seq, 15);
    /* close with a group in flight and records behind it */
    append_ok(al, &plain);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    append_ok(al, &plain);
    authlog_close(al);
}

static void test_second_open_refused(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0), *second;
    struct authlog_settings s = { 0 };
    char *err = NULL;

    /* flock() is per open file description, so a second open in this process
       stands for a second process */
    s.spool_dir = f->dir;
    s.node_id = "n1";
    second = authlog_open(f->base, f->pool, &s, &err);
    assert_null(second);
    assert_non_null(strstr(err, "in use"));
    free(err);
    authlog_close(al);

    second = open_log(f, 0); /* free again */
    authlog_close(second);
}

static void test_bad_settings(void **state)
{
    struct fixture *f = *state;
    struct authlog_settings s = { 0 };
    char *err = NULL;

    s.spool_dir = f->dir;
    s.node_id = "N1";
    assert_null(authlog_open(f->base, f->pool, &s, &err));
    assert_non_null(strstr(err, "node_id"));
    free(err);
    err = NULL;
    s.node_id = "n1";
    s.segment_max = 10;
    assert_null(authlog_open(f->base, f->pool, &s, &err));
    free(err);
    err = NULL;
    s.segment_max = 0;
    s.spool_dir = "/proc/nope/spool";
    assert_null(authlog_open(f->base, f->pool, &s, &err));
    assert_non_null(err);
    free(err);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_epoch_never_goes_back(void **state)
{
    struct fixture *f = *state;
    struct authlog *al = open_log(f, 0);
    struct authlog_stats st;
    uint64_t epoch;
    char text[64];

    append_ok(al, &plain);
    authlog_get_stats(al, &st);
    epoch = st.boot_epoch;
    authlog_close(al);

    /* a counter restored from an old backup: the segments and position outrank it */
    write_text(f->dir, "epoch", "3\n");
    al = open_log(f, 0);
    authlog_get_stats(al, &st);
    assert_int_equal(st.boot_epoch, epoch + 1);
    authlog_close(al);

    /* an unreadable counter beside spool files: recovered above everything seen */
    write_text(f->dir, "epoch", "garbage");
    snprintf(text, sizeof(text), "%" PRIu64 " 5\n", epoch + 1000);
    write_text(f->dir, "shipped", text);
    al = open_log(f, 0);
    authlog_get_stats(al, &st);
    assert_true(st.boot_epoch > epoch + 1000);
    authlog_close(al);

    /* a garbled position only means re-sending: the open succeeds */
    write_text(f->dir, "shipped", "x y z");
    al = open_log(f, 0);
    authlog_close(al);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_encode_refuses_invalid),
        cmocka_unit_test(test_record_parse_rejects),
        cmocka_unit_test(test_scan_skips_corrupt_and_torn),
        cmocka_unit_test(test_text_and_ip_bounds),
        cmocka_unit_test_setup_teardown(test_append_reopen_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_line_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_never_goes_back, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
