/*
 * mfactl directory (appliance/directory_cmd.c), the parts that need no
 * cluster: the human summary of a sync's report (counts, the changes up to
 * a limit, conflicts, skipped entries, a refusal's reason; a report with
 * members missing or of the wrong type still prints) and the usage errors
 * refused before any configuration is read. tests/integration/
 * test_directory.py runs the commands against a cluster and slapd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "directory_cmd.h"

#define NO_CONFIG "/nonexistent/appliance.conf"

/* The summary of <report_text> (JSON) with at most <max> changes listed. */
static char *summary(const char *report_text, size_t max)
{
    json_t *report = json_loads(report_text, 0, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    assert_non_null(report);
    assert_non_null(out);
    directory_cmd_print_report(out, report, max);
    fclose(out);
    json_decref(report);
    return text;
}

static void ok_report(void **state)
{
    char *s =
        summary("{\"result\": \"ok\", \"directory_users\": 7, \"created\": 2, \"updated\": 1,"
                " \"enabled\": 0, \"disabled\": 1, \"adopted\": 0, \"unchanged\": 3,"
                " \"changes\": [{\"username\": \"alice\", \"change\": \"create\"},"
                "  {\"username\": \"bob\", \"change\": \"create\"},"
                "  {\"username\": \"carol\", \"change\": \"update\"},"
                "  {\"username\": \"dave\", \"change\": \"disable\"}],"
                " \"conflicts\": [\"erin\"],"
                " \"skipped\": [{\"dn\": \"uid=x y,ou=people\", \"reason\": \"bad username\"}]}",
                100);

    (void)state;
    assert_non_null(strstr(s, "directory sync done: 7 directory users\n"));
    assert_non_null(strstr(s, "created 2, updated 1, enabled 0, disabled 1, adopted 0, "
                              "unchanged 3\n"));
    assert_non_null(strstr(s, "changes:\n  create    alice\n  create    bob\n"
                              "  update    carol\n  disable   dave\n"));
    assert_non_null(strstr(s, "conflicts: 1 local user(s)"));
    assert_non_null(strstr(s, "  erin\n"));
    assert_non_null(strstr(s, "skipped: 1 directory entry:\n  uid=x y,ou=people: bad username\n"));
    assert_null(strstr(s, "reason:"));
    assert_null(strstr(s, "REFUSED"));
    free(s);
}

static void refused_report_lists_what_was_planned(void **state)
{
    char *s = summary("{\"result\": \"refused\", \"directory_users\": 1, \"disabled\": 3,"
                      " \"reason\": \"3 of 4 directory users would be disabled (75%)\","
                      " \"changes\": [{\"username\": \"a\", \"change\": \"disable\"},"
                      "  {\"username\": \"b\", \"change\": \"disable\"},"
                      "  {\"username\": \"c\", \"change\": \"disable\"}]}",
                      2);

    (void)state;
    assert_non_null(strstr(s, "directory sync REFUSED (nothing was changed): 1 directory users\n"));
    assert_non_null(strstr(s, "reason: 3 of 4 directory users would be disabled (75%)\n"));
    assert_non_null(strstr(s, "changes planned:\n  disable   a\n  disable   b\n"
                              "  ... and 1 more (--json lists up to 1000)\n"));
    assert_null(strstr(s, "disable   c"));
    free(s);
}

static void dry_run_and_odd_reports_print(void **state)
{
    char *s = summary("{\"result\": \"dry_run\"}", 10);

    (void)state;
    assert_non_null(strstr(s, "dry run (nothing was changed): 0 directory users\n"));
    assert_non_null(strstr(s, "created 0, updated 0"));
    assert_null(strstr(s, "changes"));
    free(s);
    /* members of the wrong type: no crash, nothing invented */
    s = summary("{\"result\": 5, \"created\": \"x\", \"changes\": {}, \"conflicts\": [1],"
                " \"skipped\": [\"x\"]}",
                10);
    assert_non_null(strstr(s, "directory sync failed (nothing was changed)"));
    assert_non_null(strstr(s, "created 0,"));
    assert_non_null(strstr(s, "  ?\n"));
    free(s);
}

/* Runs mfactl directory with the NULL-terminated words; the exit code. */
static int run(const char *first, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;

    argv[argc++] = (char *)(uintptr_t) "directory";
    va_start(ap, first);
    for (const char *w = first; w && argc < 15; w = va_arg(ap, const char *))
        argv[argc++] = (char *)(uintptr_t)w;
    va_end(ap);
    argv[argc] = NULL;
    return directory_cmd(NO_CONFIG, false, argc, argv);
}

static void usage_errors_before_any_configuration(void **state)
{
    (void)state;
    assert_int_equal(run("sync", "--frobnicate", NULL), 2);
    assert_int_equal(run("sync", "now", NULL), 2);
    assert_int_equal(run("status", "x", NULL), 2);
    assert_int_equal(run("resync", NULL), 2);
    assert_int_equal(run(NULL), 2);
    assert_int_equal(run("sync", "--help", NULL), 0);
    /* a configuration that cannot be read: 2 as well, before any connection */
    assert_int_equal(run("sync", "--dry-run", NULL), 2);
    assert_int_equal(run("status", NULL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_report),
        cmocka_unit_test(refused_report_lists_what_was_planned),
        cmocka_unit_test(dry_run_and_odd_reports_print),
        cmocka_unit_test(usage_errors_before_any_configuration),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
