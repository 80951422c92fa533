/*
 * mfactl token and export (appliance/token_cmd.c, token_export.c), the
 * parts that need no cluster: the passphrase file (first line, line break
 * stripped, empty or short refused, never longer than the buffer) and the
 * usage errors that are refused before any configuration is read.
 * tests/integration/test_tokens.py runs the commands against clusters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "token_cmd.h"
#include "token_priv.h"

#define NO_CONFIG "/nonexistent/appliance.conf"

static char *temp_file(const char *text, size_t len)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/test_mfactl_token.XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void passphrase_file(void **state)
{
    static const struct {
        const char *text;
        size_t min;
        const char *want; /* NULL: refused */
        const char *why;  /* in the error */
    } cases[] = {
        { "correct horse\n", 8, "correct horse", NULL },
        { "crlf line\r\nsecond line\n", 1, "crlf line", NULL },
        { "no line break", 1, "no line break", NULL },
        { " spaces kept \n", 1, " spaces kept ", NULL },
        { "\nsecond\n", 1, NULL, "empty" },
        { "", 1, NULL, "empty" },
        { "short\n", 8, NULL, "at least 8" },
    };
    char out[TOKEN_PASSPHRASE_MAX + 1], *err = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = temp_file(cases[i].text, strlen(cases[i].text));
        int rc = tok_passphrase(path, false, cases[i].min, out, &err);

        unlink(path);
        if (cases[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].want);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, cases[i].why));
            free(err);
            err = NULL;
        }
    }
    assert_int_equal(tok_passphrase("/nonexistent/pass", false, 1, out, &err), -1);
    assert_non_null(strstr(err, "/nonexistent/pass"));
    free(err);
}

static void passphrase_too_long(void **state)
{
    char text[TOKEN_PASSPHRASE_MAX + 8], out[TOKEN_PASSPHRASE_MAX + 1], *err = NULL;
    char *path;

    (void)state;
    memset(text, 'x', sizeof(text));
    text[sizeof(text) - 1] = '\n';
    path = temp_file(text, sizeof(text));
    assert_int_equal(tok_passphrase(path, false, 1, out, &err), -1);
    assert_non_null(strstr(err, "longer than"));
    free(err);
    err = NULL;
    /* exactly the limit, with its line break, is fine */
    memset(text, 'y', TOKEN_PASSPHRASE_MAX);
    text[TOKEN_PASSPHRASE_MAX] = '\n';
    path = temp_file(text, TOKEN_PASSPHRASE_MAX + 1);
    assert_int_equal(tok_passphrase(path, false, 1, out, &err), 0);
    assert_int_equal(strlen(out), TOKEN_PASSPHRASE_MAX);
    unlink(path);
}

/* Runs <fn> on the NULL-terminated words; the exit code. */
static int run(int (*fn)(const char *, bool, int, char **), ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;

    va_start(ap, fn);
    while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    return fn(NO_CONFIG, false, argc, argv);
}

static void usage_errors(void **state)
{
    char *path, *pass;

    (void)state;
    /* token: refused before the configuration is read (which does not exist here) */
    assert_int_equal(run(token_cmd, "token", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "frobnicate", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "import", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "import", "a", "b", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "import", "f", "--format", "xml", NULL), 2);
    assert_int_equal(
        run(token_cmd, "token", "import", "f", "--format", "csv", "--passphrase-file", "p", NULL),
        2);
    assert_int_equal(run(token_cmd, "token", "assign", "S", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "unassign", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "list", "--user", "u", "--unassigned", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "list", "extra", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "--help", NULL), 0);
    /* a file that cannot be read fails (1) before the configuration is needed */
    assert_int_equal(run(token_cmd, "token", "import", "/nonexistent/seeds.csv", NULL), 1);
    /* a file of no tokens (an export of a cluster without any) is done at once */
    path = temp_file("serial,seed,type\n", 17);
    assert_int_equal(run(token_cmd, "token", "import", path, NULL), 0);
    unlink(path);
    path = temp_file("serial,seed,type\nX1,abcd,totp\n", 30);
    assert_int_equal(run(token_cmd, "token", "import", path, NULL), 1); /* a short seed */
    unlink(path);
    /* a passphrase that cannot be had is a usage error (2), as for export */
    path = strdup(temp_file("<KeyContainer><EncryptedValue/></KeyContainer>", 46));
    assert_non_null(path);
    assert_int_equal(
        run(token_cmd, "token", "import", path, "--passphrase-file", "/nonexistent/p", NULL), 2);
    if (!isatty(STDIN_FILENO)) /* no terminal to ask on: --passphrase-file is needed */
        assert_int_equal(run(token_cmd, "token", "import", path, NULL), 2);
    pass = strdup(temp_file("\n", 1));
    assert_non_null(pass);
    assert_int_equal(run(token_cmd, "token", "import", path, "--passphrase-file", pass, NULL), 2);
    unlink(pass);
    free(pass);
    unlink(path);
    free(path);
    /* assign and unassign take their options after the words too */
    assert_int_equal(run(token_cmd, "token", "assign", "S", "U", "--bogus", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "assign", "S", "U", "V", "--move", NULL), 2);
    assert_int_equal(run(token_cmd, "token", "unassign", "S", "T", "--json", NULL), 2);

    /* export */
    assert_int_equal(run(export_cmd, "export", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--tokens", "t", "--format", "csv", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--tokens", "t", "--plaintext-seeds", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--tokens", "t", "--format", "csv",
                         "--plaintext-seeds", "--passphrase-file", "p", NULL),
                     2);
    assert_int_equal(run(export_cmd, "export", "--users", "-", "--tokens", "-", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--users", "x", "--tokens", "x", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--users", "u", "--passphrase-file", "p", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--users", "u", "extra", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--format", "xml", "--tokens", "t", NULL), 2);
    /* the configuration is read last: a missing one is a configuration error (2) too */
    assert_int_equal(run(export_cmd, "export", "--users", "u", NULL), 2);
    assert_int_equal(run(export_cmd, "export", "--help", NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passphrase_file),
        cmocka_unit_test(passphrase_too_long),
        cmocka_unit_test(usage_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
