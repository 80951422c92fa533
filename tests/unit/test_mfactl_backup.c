/*
 * The backup file format (appliance/backup_file.h): a round trip through a
 * dump larger than one buffer, and each refusal with its sentence — not a
 * backup, a manifest out of bounds, a wrong passphrase, a byte changed in
 * the manifest, the dump or the MAC line, a file cut short anywhere, bytes
 * appended, scrypt parameters out of bounds — with nothing returned: -1,
 * the manifest not filled and the key file never opened. (The dump fd has
 * received the streamed plaintext by then; the caller discards it.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "backup_file.h"

#define PASS     "correct horse battery"
#define KEYTEXT  "version = 1;\npepper = ( { id = 1; key = \"x\"; } );\n"
#define DUMPSIZE (200 * 1024 + 17) /* more than three of the 64 KiB buffers */

/* Cheap scrypt for tests; the reader accepts any cost within its bounds. */
static const struct backup_kdf test_kdf = { .n = 1024, .r = 1, .p = 1 };

static unsigned char *dump_bytes(void)
{
    unsigned char *d = malloc(DUMPSIZE);

    assert_non_null(d);
    for (size_t i = 0; i < DUMPSIZE; i++)
        d[i] = (unsigned char)(i * 31 + (i >> 9));
    return d;
}

static int memfd(const char *name)
{
    int fd = memfd_create(name, 0);

    assert_true(fd >= 0);
    return fd;
}

/* A whole backup of dump_bytes() in a fresh buffer; *len its size. */
static unsigned char *make_backup(size_t *len)
{
    struct backup_manifest m = {
        .schema_version = 2, .users = 3, .oath_tokens = 2, .auth_log = 40
    };
    struct backup_writer *w;
    unsigned char *d = dump_bytes(), *out;
    int body = memfd("body"), file = memfd("file");
    char *err = NULL;
    off_t size;

    snprintf(m.cluster, sizeof(m.cluster), "corp");
    snprintf(m.member, sizeof(m.member), "n2");
    snprintf(m.role, sizeof(m.role), "standby");
    snprintf(m.created_at, sizeof(m.created_at), "2026-11-23T01:02:03Z");
    snprintf(m.release, sizeof(m.release), "0.1.0");
    w = backup_writer_new(PASS, &test_kdf, &err);
    assert_non_null(w);
    /* in uneven pieces, as a pipe gives them */
    for (size_t off = 0, step = 1000; off < DUMPSIZE; off += step, step = step * 3 + 7) {
        size_t n = off + step > DUMPSIZE ? DUMPSIZE - off : step;
        assert_int_equal(backup_writer_encrypt(w, d + off, n), 0);
        assert_int_equal(write(body, d + off, n), (ssize_t)n);
    }
    assert_int_equal(backup_writer_finish(w, &m, KEYTEXT, body, file, &err), 0);
    assert_int_equal(m.dump_bytes, DUMPSIZE);
    backup_writer_free(w);
    size = lseek(file, 0, SEEK_END);
    out = malloc((size_t)size);
    assert_int_equal(pread(file, out, (size_t)size, 0), size);
    *len = (size_t)size;
    close(body);
    close(file);
    free(d);
    return out;
}

/* backup_read() of <data>; *err its message (or NULL), *dump_len what it decrypted. */
static int read_back(const unsigned char *data, size_t len, const char *pass, char **err,
                     struct backup_manifest *m, char *keytext, unsigned char **dump,
                     size_t *dump_len)
{
    int in = memfd("in"), out = memfd("out"), rc;
    off_t size;

    assert_int_equal(write(in, data, len), (ssize_t)len);
    lseek(in, 0, SEEK_SET);
    rc = backup_read(in, pass, out, m, keytext, 4096, err);
    size = lseek(out, 0, SEEK_END);
    *dump_len = (size_t)size;
    *dump = malloc((size_t)size + 1);
    assert_int_equal(pread(out, *dump, (size_t)size, 0), size);
    close(in);
    close(out);
    return rc;
}

static void expect_refused(const unsigned char *data, size_t len, const char *pass,
                           const char *sentence)
{
    struct backup_manifest m;
    char keytext[4096] = "", *err = NULL;
    unsigned char *dump;
    size_t dump_len;

    assert_int_equal(read_back(data, len, pass, &err, &m, keytext, &dump, &dump_len), -1);
    assert_non_null(err);
    if (!strstr(err, sentence))
        fail_msg("expected \"%s\" in \"%s\"", sentence, err);
    assert_string_equal(keytext, ""); /* the key file is never opened */
    free(err);
    free(dump);
}

static void test_round_trip(void **state)
{
    struct backup_manifest m;
    char keytext[4096], *err = NULL;
    unsigned char *file, *dump, *want = dump_bytes();
    size_t len, dump_len;

    (void)state;
    file = make_backup(&len);
    assert_memory_equal(file, BACKUP_MAGIC, strlen(BACKUP_MAGIC));
    /* the dump is stored encrypted: its bytes do not appear in the file */
    assert_null(memmem(file, len, want + 5000, 64));
    assert_int_equal(read_back(file, len, PASS, &err, &m, keytext, &dump, &dump_len), 0);
    assert_null(err);
    assert_int_equal(dump_len, DUMPSIZE);
    assert_memory_equal(dump, want, DUMPSIZE);
    assert_string_equal(keytext, KEYTEXT);
    assert_string_equal(m.cluster, "corp");
    assert_string_equal(m.member, "n2");
    assert_string_equal(m.role, "standby");
    assert_string_equal(m.created_at, "2026-11-23T01:02:03Z");
    assert_int_equal(m.schema_version, 2);
    assert_int_equal(m.users, 3);
    assert_int_equal(m.auth_log, 40);
    assert_int_equal(m.dump_bytes, DUMPSIZE);
    assert_int_equal(strlen(m.dump_sha256), 64);
    /* the key file is sealed, not in clear */
    assert_null(memmem(file, len, "pepper", 6));
    free(file);
    free(dump);
    free(want);
}

static void test_wrong_passphrase(void **state)
{
    unsigned char *file;
    size_t len;

    (void)state;
    file = make_backup(&len);
    expect_refused(file, len, "correct horse battery!", "wrong passphrase");
    free(file);
}

static void test_not_a_backup(void **state)
{
    static const char *const bad[] = {
        "",
        "MFA-BACKUP 2\n{}\n",
        "PK\x03\x04 zip",
        "MFA-BACKUP 1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused((const unsigned char *)bad[i], strlen(bad[i]), PASS,
                       "not an MFA Appliance backup");
    expect_refused((const unsigned char *)"MFA-BACKUP 1\n{\"format\":1", 24, PASS,
                   "truncated: the file ends inside the manifest line");
    expect_refused((const unsigned char *)"MFA-BACKUP 1\n[1,2]\n", 19, PASS,
                   "not an MFA Appliance backup: the manifest is not JSON");
    expect_refused((const unsigned char *)"MFA-BACKUP 1\n{\"format\":1}\n", 26, PASS,
                   "not an MFA Appliance backup: the manifest has no valid");
}

static void test_manifest_too_long(void **state)
{
    size_t len = strlen(BACKUP_MAGIC) + BACKUP_MANIFEST_MAX + 10;
    unsigned char *data = malloc(len);

    (void)state;
    memcpy(data, BACKUP_MAGIC, strlen(BACKUP_MAGIC));
    memset(data + strlen(BACKUP_MAGIC), ' ', len - strlen(BACKUP_MAGIC));
    expect_refused(data, len, PASS, "the manifest line is longer than 65536 bytes");
    free(data);
}

/* Replaces the first occurrence of <from> in <data> with <to> (same length). */
static void patch(unsigned char *data, size_t len, const char *from, const char *to)
{
    unsigned char *p = memmem(data, len, from, strlen(from));

    assert_non_null(p);
    memcpy(p, to, strlen(to));
}

static void test_tampered(void **state)
{
    unsigned char *file, *copy;
    size_t len, head;

    (void)state;
    file = make_backup(&len);
    head = (size_t)((unsigned char *)memchr(file + strlen(BACKUP_MAGIC), '\n', len) - file) + 1;
    copy = malloc(len);

    /* the manifest: a plausible edit, still valid JSON */
    memcpy(copy, file, len);
    patch(copy, len, "\"member\":\"n2\"", "\"member\":\"n3\"");
    expect_refused(copy, len, PASS, "the backup was altered or is corrupt (MAC mismatch)");
    memcpy(copy, file, len);
    patch(copy, len, "\"users\":3", "\"users\":9");
    expect_refused(copy, len, PASS, "the backup was altered or is corrupt (MAC mismatch)");

    /* one bit of the dump: first, middle and last byte */
    for (size_t at = head; at < len - BACKUP_MAC_LINE; at += (len - BACKUP_MAC_LINE - head) / 2) {
        memcpy(copy, file, len);
        copy[at] ^= 0x01;
        expect_refused(copy, len, PASS, "the backup was altered or is corrupt (MAC mismatch)");
    }
    memcpy(copy, file, len);
    copy[len - BACKUP_MAC_LINE - 1] ^= 0x80;
    expect_refused(copy, len, PASS, "(MAC mismatch)");

    /* the MAC itself */
    memcpy(copy, file, len);
    copy[len - 2] = copy[len - 2] == 'a' ? 'b' : 'a';
    expect_refused(copy, len, PASS, "(MAC mismatch)");
    memcpy(copy, file, len);
    copy[len - 2] = 'X';
    expect_refused(copy, len, PASS, "no MAC line at its end");
    free(copy);
    free(file);
}

static void test_truncated_and_extended(void **state)
{
    unsigned char *file, *longer;
    size_t len, head;
    char want[128];

    (void)state;
    file = make_backup(&len);
    head = (size_t)((unsigned char *)memchr(file + strlen(BACKUP_MAGIC), '\n', len) - file) + 1;

    /* in the dump */
    snprintf(want, sizeof(want), "truncated: the dump part expected %d bytes, found %d", DUMPSIZE,
             DUMPSIZE - 1000);
    expect_refused(file, head + DUMPSIZE - 1000, PASS, want);
    /* right after the manifest, and in the MAC line */
    snprintf(want, sizeof(want), "truncated: the dump part expected %d bytes, found 0", DUMPSIZE);
    expect_refused(file, head, PASS, want);
    expect_refused(file, len - 10, PASS, "truncated: the MAC line expected 69 bytes, found 59");
    expect_refused(file, len - BACKUP_MAC_LINE, PASS,
                   "truncated: the MAC line expected 69 bytes, found 0");
    /* in the manifest */
    expect_refused(file, head - 20, PASS, "truncated: the file ends inside the manifest line");

    longer = malloc(len + 1);
    memcpy(longer, file, len);
    longer[len] = '\n';
    expect_refused(longer, len + 1, PASS, "bytes after the MAC line");
    free(longer);
    free(file);
}

static void test_writer_refuses_a_short_passphrase(void **state)
{
    char *err = NULL;

    (void)state;
    assert_null(backup_writer_new("short", &test_kdf, &err));
    assert_non_null(strstr(err, "at least 8 bytes"));
    free(err);
    err = NULL;
    assert_null(backup_writer_new(PASS, &(struct backup_kdf){ .n = 1000, .r = 1, .p = 1 }, &err));
    free(err);
}

/* <data> with the first <from> replaced by <to> (any length) in a fresh buffer; *len updated. */
static unsigned char *replace(const unsigned char *data, size_t *len, const char *from,
                              const char *to)
{
    const unsigned char *at = memmem(data, *len, from, strlen(from));
    size_t head, out_len;
    unsigned char *out;

    assert_non_null(at);
    head = (size_t)(at - data);
    out_len = *len - strlen(from) + strlen(to);
    out = malloc(out_len);
    assert_non_null(out);
    memcpy(out, data, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), *len - head - strlen(from));
    *len = out_len;
    return out;
}

/*
 * scrypt's bounds: what "a crafted file cannot make mfactl allocate more
 * than 256 MiB" rests on. Each is refused by the reader before any key is
 * derived, and by the writer.
 */
static void test_kdf_bounds(void **state)
{
    static const struct {
        const char *json;
        struct backup_kdf kdf;
    } bad[] = {
        { "\"N\":1000,\"name\":\"scrypt\",\"p\":1,\"r\":1", { 1000, 1, 1 } }, /* not 2^k */
        { "\"N\":512,\"name\":\"scrypt\",\"p\":1,\"r\":1", { 512, 1, 1 } },   /* < 2^10 */
        { "\"N\":2097152,\"name\":\"scrypt\",\"p\":1,\"r\":1", { 1u << 21, 1, 1 } },
        { "\"N\":1048576,\"name\":\"scrypt\",\"p\":1,\"r\":8", { 1u << 20, 8, 1 } }, /* 1 GiB */
        { "\"N\":262144,\"name\":\"scrypt\",\"p\":1,\"r\":9", { 1u << 18, 9, 1 } },  /* 288 MiB */
        { "\"N\":1024,\"name\":\"scrypt\",\"p\":1,\"r\":0", { 1024, 0, 1 } },
        { "\"N\":1024,\"name\":\"scrypt\",\"p\":0,\"r\":1", { 1024, 1, 0 } },
        { "\"N\":1024,\"name\":\"scrypt\",\"p\":17,\"r\":1", { 1024, 1, 17 } },
        { "\"N\":1024,\"name\":\"scrypt\",\"p\":1,\"r\":33", { 1024, 33, 1 } },
    };
    size_t len;
    unsigned char *file = make_backup(&len);

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        size_t n = len;
        unsigned char *crafted =
            replace(file, &n, "\"N\":1024,\"name\":\"scrypt\",\"p\":1,\"r\":1", bad[i].json);
        char *err = NULL;

        /* past the bounds jint() allows: "lacks a field or holds one of the wrong ... range" */
        expect_refused(crafted, n, PASS, "not an MFA Appliance backup: the manifest");
        free(crafted);
        assert_null(backup_writer_new(PASS, &bad[i].kdf, &err));
        assert_non_null(err);
        free(err);
    }
    free(file);
}

/* The default cost is OWASP's scrypt minimum, N = 2^17, r = 8, and the reader accepts it. */
static void test_kdf_default(void **state)
{
    struct backup_writer *w;
    char *err = NULL;

    (void)state;
    assert_true(BACKUP_KDF_DEFAULT.n >= (1u << 17) && BACKUP_KDF_DEFAULT.r >= 8);
    w = backup_writer_new(PASS, &BACKUP_KDF_DEFAULT, &err);
    assert_non_null(w);
    backup_writer_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_passphrase),
        cmocka_unit_test(test_not_a_backup),
        cmocka_unit_test(test_manifest_too_long),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_truncated_and_extended),
        cmocka_unit_test(test_writer_refuses_a_short_passphrase),
        cmocka_unit_test(test_kdf_bounds),
        cmocka_unit_test(test_kdf_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
