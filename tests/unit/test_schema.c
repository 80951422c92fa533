/*
 * The embedded migrations: numbered 1..n without gaps, each with SQL, the
 * first creating the version table; and the rolling-upgrade window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"

static void test_migrations_are_numbered(void **state)
{
    (void)state;
    assert_true(schema_migration_count >= 1);
    assert_int_equal(schema_latest(), schema_migration_count);
    for (int i = 0; i < schema_migration_count; i++) {
        assert_int_equal(schema_migrations[i].version, i + 1);
        assert_true(strlen(schema_migrations[i].sql) > 0);
        assert_non_null(schema_migrations[i].name);
    }
    assert_string_equal(schema_migrations[0].name, "001_initial");
    assert_string_equal(schema_migrations[1].name, "002_node");
    assert_non_null(strstr(schema_migrations[0].sql, "CREATE TABLE schema_version"));
    assert_non_null(strstr(schema_migrations[0].sql, "UNIQUE (node_id, boot_epoch, seq)"));
}

static void test_compatibility_window(void **state)
{
    int v = schema_latest();

    (void)state;
    /* DESIGN §2: a program of schema V works against V-1, V and V+1. */
    assert_true(schema_compatible(v - 1));
    assert_true(schema_compatible(v));
    assert_true(schema_compatible(v + 1));
    assert_false(schema_compatible(v - 2));
    assert_false(schema_compatible(v + 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_are_numbered),
        cmocka_unit_test(test_compatibility_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
