/*
 * The key file: create (mode 0600, refuses to overwrite), load (refuses
 * group/other access and non-regular files), strict parsing with errors that
 * name the line or setting, and rotation (new current key, old ones kept).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "b64.h"
#include "keyfile.h"

struct tmp {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    strcpy(t->dir, "/tmp/mfa-keyfile-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s/keys.conf", t->dir);
    umask(022);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tmp *t = *state;
    char cmd[160];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        return -1;
    free(t);
    return 0;
}

/* base64 of 32 bytes of <c> */
static const char *key64(int c)
{
    static char out[4][B64_ENCODED_LEN(KEY_LEN) + 1];
    static int next;
    unsigned char raw[KEY_LEN];
    char *o = out[next++ % 4];

    memset(raw, c, sizeof(raw));
    assert_int_equal(b64_encode(raw, sizeof(raw), o, sizeof(out[0])), 0);
    return o;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f;

    unlink(path);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_create_and_load(void **state)
{
    struct tmp *t = *state;
    struct keyring kr;
    struct stat st;
    char *err = NULL;

    assert_int_equal(keyfile_create(t->path, &err), 0);
    assert_null(err);
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(keyfile_load(t->path, &kr, &err), 0);
    assert_null(err);
    assert_int_equal(kr.npepper, 1);
    assert_int_equal(kr.nseal, 1);
    assert_int_equal(keyring_current(&kr, KEY_PEPPER)->id, 1);
    assert_int_equal(keyring_current(&kr, KEY_SEAL)->id, 1);
    assert_memory_not_equal(kr.pepper[0].key, kr.seal[0].key, KEY_LEN);
    keyring_wipe(&kr);
    assert_int_equal(kr.npepper, 0);
    assert_null(keyring_current(&kr, KEY_PEPPER));

    /* refuses to overwrite */
    assert_int_equal(keyfile_create(t->path, &err), -1);
    assert_non_null(strstr(err, "exists"));
    free(err);
}

static void test_load_refuses_modes(void **state)
{
    struct tmp *t = *state;
    struct keyring kr;
    char *err = NULL;
    static const mode_t bad[] = { 0640, 0644, 0604, 0660, 0606 };

    assert_int_equal(keyfile_create(t->path, &err), 0);
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        assert_int_equal(chmod(t->path, bad[i]), 0);
        assert_int_equal(keyfile_load(t->path, &kr, &err), -1);
        assert_non_null(strstr(err, t->path));
        assert_non_null(strstr(err, "chmod 600"));
        assert_int_equal(kr.npepper, 0);
        free(err);
        err = NULL;
    }
    assert_int_equal(chmod(t->path, 0400), 0);
    assert_int_equal(keyfile_load(t->path, &kr, &err), 0);
    keyring_wipe(&kr);

    /* not a regular file, missing file */
    assert_int_equal(keyfile_load(t->dir, &kr, &err), -1);
    assert_non_null(strstr(err, "regular"));
    free(err);
    err = NULL;
    assert_int_equal(keyfile_load("/nonexistent/keys.conf", &kr, &err), -1);
    assert_non_null(strstr(err, "/nonexistent/keys.conf"));
    free(err);
}

static void test_parse_valid(void **state)
{
    struct keyring kr;
    char text[1024], *err = NULL;
    const struct key_entry *e;

    (void)state;
    snprintf(text, sizeof(text),
             "# comment\nversion = 1;\n"
             "pepper = ( { id = 3; key = \"%s\"; }, { id = 1; key = \"%s\"; } );\n"
             "seal = ( { key = \"%s\"; id = 2147483648L; } );\n",
             key64(3), key64(1), key64(9));
    assert_int_equal(keyfile_parse(text, &kr, &err), 0);
    assert_null(err);
    assert_int_equal(kr.npepper, 2);
    e = keyring_current(&kr, KEY_PEPPER);
    assert_int_equal(e->id, 3);
    assert_int_equal(e->key[0], 3);
    e = keyring_find(&kr, KEY_PEPPER, 1);
    assert_non_null(e);
    assert_int_equal(e->key[31], 1);
    assert_null(keyring_find(&kr, KEY_PEPPER, 2));
    assert_int_equal(keyring_current(&kr, KEY_SEAL)->id, 2147483648u);
    assert_null(keyring_find(&kr, KEY_SEAL, 1));
    assert_null(keyring_find(NULL, KEY_SEAL, 1));
    keyring_wipe(&kr);
}

/* Parses <text> expecting failure with an error holding <want1> and <want2>. */
static void expect_error(const char *text, const char *want1, const char *want2)
{
    struct keyring kr;
    char *err = NULL;

    kr.npepper = 5;
    assert_int_equal(keyfile_parse(text, &kr, &err), -1);
    assert_non_null(err);
    if (strstr(err, want1) == NULL || (want2 && strstr(err, want2) == NULL))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
    assert_int_equal(kr.npepper, 0);
    assert_int_equal(kr.nseal, 0);
    free(err);
}

static void test_parse_errors(void **state)
{
    char text[2048], k31[64];
    unsigned char raw[31] = { 0 };
    const char *k = key64(7);

    (void)state;
    assert_int_equal(b64_encode(raw, sizeof(raw), k31, sizeof(k31)), 0);

#define GOOD_SEAL "seal = ( { id = 1; key = \"%s\"; } );\n"
    snprintf(text, sizeof(text),
             "version = 2;\npepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 1", "version");
    snprintf(text, sizeof(text),
             "version = \"1\";\npepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 1", "version");
    snprintf(text, sizeof(text), "pepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "version", NULL);
    snprintf(text, sizeof(text), "version = 1;\npepper = ( { id = 1; key = \"%s\"; } );\n", k);
    expect_error(text, "seal", "missing");
    snprintf(text, sizeof(text), "version = 1;\n" GOOD_SEAL, k);
    expect_error(text, "pepper", "missing");
    snprintf(text, sizeof(text), "version = 1;\npepper = ( );\n" GOOD_SEAL, k);
    expect_error(text, "line 2", "pepper");
    snprintf(text, sizeof(text), "version = 1;\npepper = [ 1, 2 ];\n" GOOD_SEAL, k);
    expect_error(text, "line 2", "pepper");
    snprintf(text, sizeof(text), "version = 1;\npepper = ( 1 );\n" GOOD_SEAL, k);
    expect_error(text, "line 2", "pepper[0]");
    /* bad base64, 31-byte key, non-string key, missing key */
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\"; },\n"
             "  { id = 2; key = \"not base64 at all!\"; } );\n" GOOD_SEAL,
             k, k);
    expect_error(text, "line 3", "pepper[1].key");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL, k, k31);
    expect_error(text, "line 3", "seal[0].key");
    snprintf(text, sizeof(text), "version = 1;\npepper = ( { id = 1; key = 5; } );\n" GOOD_SEAL, k);
    expect_error(text, "line 2", "pepper[0].key");
    snprintf(text, sizeof(text), "version = 1;\npepper = ( { id = 1; } );\n" GOOD_SEAL, k);
    expect_error(text, "pepper[0]", "missing key");
    /* ids: duplicate, 0, above 2^31, not an integer, missing */
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\"; } );\n"
             "seal = ( { id = 4; key = \"%s\"; },\n { id = 4; key = \"%s\"; } );\n",
             k, k, k);
    expect_error(text, "line 4", "duplicate");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 0; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "pepper[0].id");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 2147483649; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "too large");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 2147483649L; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "pepper[0].id");
    /* libconfig 1.5 would wrap these to 1 */
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 4294967297; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "4294967297");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 0x100000001; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "too large");
    snprintf(text, sizeof(text),
             "# 99999999999 in a comment is fine\n"
             "version = 4294967297;\npepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL,
             k, k);
    expect_error(text, "line 2", "too large");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = -4294967295; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "too large");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = \"1\"; key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "line 2", "pepper[0].id");
    snprintf(text, sizeof(text), "version = 1;\npepper = ( { key = \"%s\"; } );\n" GOOD_SEAL, k, k);
    expect_error(text, "pepper[0]", "missing id");
    /* unknown settings at the top and inside a key */
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\"; } );\n" GOOD_SEAL "colour = 1;\n", k,
             k);
    expect_error(text, "line 4", "colour");
    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\";\n  note = \"x\"; } );\n" GOOD_SEAL,
             k, k);
    expect_error(text, "line 3", "pepper[0].note");
    /* syntax errors, include */
    expect_error("version = 1;\npepper = ( { id = 1; key = \"abc }\n", "line 2", "unterminated");
    expect_error("version = 1;\n\"stray string\";\n", "line 2", "syntax error");
    expect_error("\x01\x02garbage\xff", "line 1", NULL);
    expect_error("version = 1;\n\n@include \"/etc/passwd\"\n", "line 3", "@include");
    expect_error("", "version", NULL);
#undef GOOD_SEAL
}

static void test_parse_too_many(void **state)
{
    char text[4096], *p = text;
    struct keyring kr;
    char *err = NULL;

    (void)state;
    p += sprintf(p, "version = 1;\nseal = ( { id = 1; key = \"%s\"; } );\npepper = (", key64(1));
    for (int i = 1; i <= KEYRING_MAX; i++)
        p += sprintf(p, "%s{ id = %d; key = \"%s\"; }", i > 1 ? ", " : "", i, key64(i));
    strcpy(p, ");\n");
    assert_int_equal(keyfile_parse(text, &kr, &err), 0);
    assert_int_equal(kr.npepper, KEYRING_MAX);
    assert_int_equal(keyring_current(&kr, KEY_PEPPER)->id, KEYRING_MAX);
    keyring_wipe(&kr);
    p += sprintf(p, ", { id = 99; key = \"%s\"; });\n", key64(2));
    expect_error(text, "line 3", "pepper");
}

static void test_rotate(void **state)
{
    struct tmp *t = *state;
    struct keyring before, after;
    struct stat st;
    uint32_t id = 0;
    char *err = NULL;

    assert_int_equal(keyfile_create(t->path, &err), 0);
    assert_int_equal(keyfile_load(t->path, &before, &err), 0);
    assert_int_equal(keyfile_rotate(t->path, KEY_PEPPER, &id, &err), 0);
    assert_null(err);
    assert_int_equal(id, 2);
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(keyfile_load(t->path, &after, &err), 0);
    assert_int_equal(keyring_current(&after, KEY_PEPPER)->id, 2);
    assert_non_null(keyring_find(&after, KEY_PEPPER, 1));
    assert_memory_equal(keyring_find(&after, KEY_PEPPER, 1)->key, before.pepper[0].key, KEY_LEN);
    assert_memory_not_equal(keyring_find(&after, KEY_PEPPER, 2)->key, before.pepper[0].key,
                            KEY_LEN);
    assert_int_equal(after.nseal, 1);
    assert_memory_equal(after.seal[0].key, before.seal[0].key, KEY_LEN);
    keyring_wipe(&after);

    assert_int_equal(keyfile_rotate(t->path, KEY_SEAL, &id, &err), 0);
    assert_int_equal(id, 2);
    assert_int_equal(keyfile_load(t->path, &after, &err), 0);
    assert_int_equal(keyring_current(&after, KEY_SEAL)->id, 2);
    assert_non_null(keyring_find(&after, KEY_SEAL, 1));
    assert_int_equal(after.npepper, 2);
    keyring_wipe(&after);
    keyring_wipe(&before);

    /* fill the pepper list; the next rotation fails and leaves the file alone */
    for (uint32_t want = 3; want <= KEYRING_MAX; want++) {
        assert_int_equal(keyfile_rotate(t->path, KEY_PEPPER, &id, &err), 0);
        assert_int_equal(id, want);
    }
    assert_int_equal(keyfile_rotate(t->path, KEY_PEPPER, &id, &err), -1);
    assert_non_null(strstr(err, "already holds"));
    free(err);
    err = NULL;
    assert_int_equal(keyfile_load(t->path, &after, &err), 0);
    assert_int_equal(after.npepper, KEYRING_MAX);
    keyring_wipe(&after);

    /* a file with a bad mode is not rotated */
    assert_int_equal(chmod(t->path, 0644), 0);
    assert_int_equal(keyfile_rotate(t->path, KEY_SEAL, &id, &err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    free(err);
}

static void test_rotate_high_ids(void **state)
{
    struct tmp *t = *state;
    struct keyring kr;
    char text[512], *err = NULL;
    uint32_t id = 0;

    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 2147483647; key = \"%s\"; } );\n"
             "seal = ( { id = 1; key = \"%s\"; } );\n",
             key64(1), key64(2));
    write_file(t->path, text, 0600);
    /* 2^31 is written as 2147483648L and reads back */
    assert_int_equal(keyfile_rotate(t->path, KEY_PEPPER, &id, &err), 0);
    assert_int_equal(id, 2147483648u);
    assert_int_equal(keyfile_load(t->path, &kr, &err), 0);
    assert_int_equal(keyring_current(&kr, KEY_PEPPER)->id, 2147483648u);
    assert_non_null(keyring_find(&kr, KEY_PEPPER, 2147483647u));
    keyring_wipe(&kr);
    assert_int_equal(keyfile_rotate(t->path, KEY_PEPPER, &id, &err), -1);
    assert_non_null(strstr(err, "largest"));
    free(err);
}

/* keyfile_format() writes what keyfile_parse() reads back, ids past INT_MAX with their L. */
static void test_format_round_trip(void **state)
{
    struct keyring kr, back;
    char text[4096], *err = NULL;
    int n;

    (void)state;
    memset(&kr, 0, sizeof(kr));
    kr.npepper = 2;
    kr.pepper[0].id = 1;
    kr.pepper[1].id = 2147483648u;
    kr.nseal = 1;
    kr.seal[0].id = 2147483647u;
    for (size_t i = 0; i < KEY_LEN; i++) {
        kr.pepper[0].key[i] = (unsigned char)i;
        kr.pepper[1].key[i] = (unsigned char)(255 - i);
        kr.seal[0].key[i] = (unsigned char)(i * 7);
    }
    n = keyfile_format(&kr, "# fetched\n", text, sizeof(text));
    assert_true(n > 0 && (size_t)n == strlen(text));
    assert_non_null(strstr(text, "id = 2147483648L;"));
    assert_null(strstr(text, "id = 2147483647L;"));
    assert_int_equal(strncmp(text, "# fetched\nversion = 1;\n", 23), 0);
    if (keyfile_parse(text, &back, &err) != 0)
        fail_msg("%s", err);
    assert_int_equal(back.npepper, 2);
    assert_int_equal(back.nseal, 1);
    assert_int_equal(keyring_current(&back, KEY_PEPPER)->id, 2147483648u);
    assert_memory_equal(keyring_find(&back, KEY_PEPPER, 2147483648u)->key, kr.pepper[1].key,
                        KEY_LEN);
    assert_memory_equal(keyring_find(&back, KEY_PEPPER, 1)->key, kr.pepper[0].key, KEY_LEN);
    assert_memory_equal(keyring_find(&back, KEY_SEAL, 2147483647u)->key, kr.seal[0].key, KEY_LEN);
    keyring_wipe(&back);
    /* too small a buffer: -1, never a cut text */
    assert_int_equal(keyfile_format(&kr, "", text, 100), -1);
    keyring_wipe(&kr);
}

/* keyring_equal(): same keys under the same ids in any order; any other key, id or count differs.
 */
static void test_keyring_equal(void **state)
{
    struct keyring a, b;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.npepper = 2;
    a.pepper[0].id = 1;
    a.pepper[1].id = 2;
    a.nseal = 1;
    a.seal[0].id = 1;
    memset(a.pepper[0].key, 1, KEY_LEN);
    memset(a.pepper[1].key, 2, KEY_LEN);
    memset(a.seal[0].key, 3, KEY_LEN);
    b = a;
    b.pepper[0] = a.pepper[1]; /* the same keys listed in another order */
    b.pepper[1] = a.pepper[0];
    assert_true(keyring_equal(&a, &b));
    assert_true(keyring_equal(&b, &a));
    b.seal[0].key[KEY_LEN - 1] ^= 1; /* one bit of one key */
    assert_false(keyring_equal(&a, &b));
    b.seal[0] = a.seal[0];
    b.pepper[1].id = 3; /* the same key under another id */
    assert_false(keyring_equal(&a, &b));
    b.pepper[1].id = 1;
    b.nseal = 2; /* one key more */
    b.seal[1].id = 2;
    memset(b.seal[1].key, 4, KEY_LEN);
    assert_false(keyring_equal(&a, &b));
    assert_false(keyring_equal(&b, &a));
    b.nseal = 1;
    assert_true(keyring_equal(&a, &b));
    keyring_wipe(&a);
    keyring_wipe(&b);
}

static void test_load_content_errors(void **state)
{
    struct tmp *t = *state;
    struct keyring kr;
    char text[512], *err = NULL;

    snprintf(text, sizeof(text),
             "version = 1;\npepper = ( { id = 1; key = \"%s\"; } );\nseal = ( );\n", key64(1));
    write_file(t->path, text, 0600);
    assert_int_equal(keyfile_load(t->path, &kr, &err), -1);
    assert_non_null(strstr(err, t->path));
    assert_non_null(strstr(err, "line 3"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_modes, setup, teardown),
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_too_many),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_high_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_content_errors, setup, teardown),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_keyring_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
