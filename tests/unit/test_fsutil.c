/*
 * common/fsutil.c: the atomic writes. fsutil_write_atomic_owned() gives the
 * file exactly its mode whatever the umask, replaces what was there, and
 * leaves nothing at the temporary name when it fails.
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

#include "fsutil.h"

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/mfa-fsutil.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/f", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

static void read_back(const char *path, const char *want)
{
    char buf[64] = "";
    FILE *f = fopen(path, "r");

    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), strlen(want));
    fclose(f);
    assert_string_equal(buf, want);
}

static void test_owned_mode_and_replace(void **state)
{
    char path[128], tmp[140], *err = NULL;
    struct stat st;
    mode_t old = umask(077);

    (void)state;
    snprintf(path, sizeof(path), "%s/f", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* 0644 under umask 077: the mode asked for, not what the umask leaves */
    assert_int_equal(fsutil_write_atomic_owned(path, "one", 3, 0644, (uid_t)-1, (gid_t)-1, &err),
                     0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_uid, geteuid());
    read_back(path, "one");
    /* our own uid given explicitly works without privileges */
    assert_int_equal(fsutil_write_atomic_owned(path, "second", 6, 0600, geteuid(), getegid(), &err),
                     0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    read_back(path, "second");
    assert_int_equal(access(tmp, F_OK), -1);
    umask(old);
}

static void test_owned_failure_leaves_nothing(void **state)
{
    char path[128], *err = NULL;

    (void)state;
    snprintf(path, sizeof(path), "%s/missing/f", dir);
    assert_int_equal(fsutil_write_atomic_owned(path, "x", 1, 0600, (uid_t)-1, (gid_t)-1, &err), -1);
    assert_non_null(strstr(err, "missing"));
    free(err);
    err = NULL;
    /* an owner we may not give (root's, unless we are root) fails before a byte is written */
    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/f", dir);
        assert_int_equal(fsutil_write_atomic_owned(path, "x", 1, 0600, 0, 0, &err), -1);
        free(err);
        assert_int_equal(access(path, F_OK), -1);
        snprintf(path, sizeof(path), "%s/f.tmp", dir);
        assert_int_equal(access(path, F_OK), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_owned_mode_and_replace, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_owned_failure_leaves_nothing, make_dir, remove_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
