/*
 * strlist_join(): the first few names of a refusal, quoted or not, the rest
 * counted, and a buffer too small cut but always terminated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "strlist.h"

static json_t *names(int n)
{
    json_t *arr = json_array();
    char name[16];

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "n%d", i + 1);
        json_array_append_new(arr, json_string(name));
    }
    return arr;
}

static void test_join(void **state)
{
    json_t *arr;
    char out[256];

    (void)state;
    arr = names(0);
    strlist_join(arr, 5, true, out, sizeof(out));
    assert_string_equal(out, "");
    json_decref(arr);

    arr = names(2);
    strlist_join(arr, 5, true, out, sizeof(out));
    assert_string_equal(out, "\"n1\", \"n2\"");
    strlist_join(arr, 5, false, out, sizeof(out));
    assert_string_equal(out, "n1, n2");
    json_decref(arr);

    arr = names(7);
    strlist_join(arr, 5, true, out, sizeof(out));
    assert_string_equal(out, "\"n1\", \"n2\", \"n3\", \"n4\", \"n5\" and 2 more");
    strlist_join(arr, 2, false, out, sizeof(out));
    assert_string_equal(out, "n1, n2 and 5 more");
    json_decref(arr);
}

static void test_long_names_and_small_buffers(void **state)
{
    json_t *arr = json_array();
    char longname[200], out[256], small[8];

    (void)state;
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    json_array_append_new(arr, json_string(longname));
    strlist_join(arr, 5, true, out, sizeof(out));
    assert_int_equal(strlen(out), 64 + 2); /* each name cut at 64 bytes */
    json_array_append_new(arr, json_string("second"));
    strlist_join(arr, 5, false, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1); /* cut, terminated */
    assert_memory_equal(small, "xxxxxxx", 7);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_long_names_and_small_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
