/*
 * The string map: put, get, replace, remove with backward shifts, growth,
 * and sweeping while removing — checked against a plain array model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "strmap.h"

#define N 5000

static bool drop_odd(const char *key, void *value, void *arg)
{
    (void)key;
    (*(int *)arg)++;
    return ((intptr_t)value & 1) != 0;
}

static void test_against_model(void **state)
{
    struct strmap *m = strmap_new();
    char key[32];
    void *old;
    int visited = 0;

    (void)state;
    assert_non_null(m);
    for (intptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "user%ld@10.0.0.%ld", (long)i, (long)(i % 251));
        assert_int_equal(strmap_put(m, key, (void *)i, &old), 0);
        assert_null(old);
    }
    assert_int_equal(strmap_count(m), N);
    snprintf(key, sizeof(key), "user%d@10.0.0.%d", 7, 7);
    assert_int_equal(strmap_put(m, key, (void *)(intptr_t)70, &old), 0);
    assert_ptr_equal(old, (void *)(intptr_t)7);
    assert_ptr_equal(strmap_get(m, key), (void *)(intptr_t)70);
    assert_int_equal(strmap_put(m, key, (void *)(intptr_t)7, &old), 0);
    /* Remove every third; the rest stay reachable across the shifted runs. */
    for (intptr_t i = 3; i <= N; i += 3) {
        snprintf(key, sizeof(key), "user%ld@10.0.0.%ld", (long)i, (long)(i % 251));
        assert_ptr_equal(strmap_remove(m, key), (void *)i);
        assert_null(strmap_remove(m, key));
    }
    for (intptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "user%ld@10.0.0.%ld", (long)i, (long)(i % 251));
        assert_ptr_equal(strmap_get(m, key), i % 3 ? (void *)i : NULL);
    }
    strmap_sweep(m, drop_odd, &visited);
    assert_int_equal(visited, N - N / 3);
    for (intptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "user%ld@10.0.0.%ld", (long)i, (long)(i % 251));
        assert_ptr_equal(strmap_get(m, key), (i % 3 && !(i & 1)) ? (void *)i : NULL);
    }
    strmap_free(m, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
