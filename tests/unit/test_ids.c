/*
 * Node ids and challenge/session ids: format, uniqueness, the node prefix
 * (n1 never matches n10), and rejection of malformed ids and node ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ids.h"

static void test_node_id_valid(void **state)
{
    (void)state;
    assert_true(node_id_valid("n1"));
    assert_true(node_id_valid("a"));
    assert_true(node_id_valid("0123456789abcdef")); /* 16 */
    assert_false(node_id_valid(NULL));
    assert_false(node_id_valid(""));
    assert_false(node_id_valid("0123456789abcdefg")); /* 17 */
    assert_false(node_id_valid("N1"));
    assert_false(node_id_valid("n-1"));
    assert_false(node_id_valid("n1-"));
    assert_false(node_id_valid("n 1"));
    assert_false(node_id_valid("n_1"));
    assert_false(node_id_valid("n\xc3\xa9"));
}

static void test_new_format(void **state)
{
    char id[ID_MAX], node[NODE_ID_MAX + 1];

    (void)state;
    assert_int_equal(id_new("n1", id, sizeof(id)), 0);
    assert_int_equal(strlen(id), 2 + 1 + ID_RAND_LEN);
    assert_memory_equal(id, "n1-", 3);
    assert_int_equal(strspn(id + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_"),
                     ID_RAND_LEN);
    assert_true(id_valid(id));
    assert_int_equal(id_node(id, node, sizeof(node)), 0);
    assert_string_equal(node, "n1");

    /* the longest node id fits ID_MAX exactly */
    assert_int_equal(id_new("0123456789abcdef", id, sizeof(id)), 0);
    assert_int_equal(strlen(id) + 1, ID_MAX);
    assert_true(id_valid(id));
    assert_int_equal(id_new("0123456789abcdef", id, ID_MAX - 1), -1);
    assert_string_equal(id, "");
}

static void test_new_rejects(void **state)
{
    char id[ID_MAX];

    (void)state;
    assert_int_equal(id_new("", id, sizeof(id)), -1);
    assert_int_equal(id_new("0123456789abcdefg", id, sizeof(id)), -1);
    assert_int_equal(id_new("N1", id, sizeof(id)), -1);
    assert_int_equal(id_new("n-1", id, sizeof(id)), -1);
    assert_int_equal(id_new(NULL, id, sizeof(id)), -1);
    assert_int_equal(id_new("n1", id, 2 + 1 + ID_RAND_LEN), -1); /* no room for NUL */
    assert_int_equal(id_new("n1", id, 0), -1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique(void **state)
{
    enum { N = 1000 };
    char(*ids)[ID_MAX] = calloc(N, ID_MAX);

    (void)state;
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        assert_int_equal(id_new("node7", ids[i], ID_MAX), 0);
        assert_true(id_valid(ids[i]));
    }
    qsort(ids, N, ID_MAX, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void test_prefix(void **state)
{
    char id1[ID_MAX], id10[ID_MAX], node[NODE_ID_MAX + 1];

    (void)state;
    assert_int_equal(id_new("n1", id1, sizeof(id1)), 0);
    assert_int_equal(id_new("n10", id10, sizeof(id10)), 0);
    assert_true(id_belongs_to(id1, "n1"));
    assert_false(id_belongs_to(id1, "n10"));
    assert_false(id_belongs_to(id1, "n"));
    assert_true(id_belongs_to(id10, "n10"));
    assert_false(id_belongs_to(id10, "n1"));
    assert_false(id_belongs_to(id10, "n100"));
    assert_false(id_belongs_to(id1, NULL));
    assert_false(id_belongs_to(NULL, "n1"));
    assert_false(id_belongs_to(id1, "N1"));
    assert_int_equal(id_node(id10, node, sizeof(node)), 0);
    assert_string_equal(node, "n10");
    assert_int_equal(id_node(id10, node, 3), -1); /* "n10" + NUL needs 4 */
    assert_string_equal(node, "");
}

static void test_invalid_ids(void **state)
{
    static const char *bad[] = {
        "",
        "n1",
        "n1-",
        "-AAAAAAAAAAAAAAAAAAAAAA",
        "n1-AAAAAAAAAAAAAAAAAAAAA",   /* 21 */
        "n1-AAAAAAAAAAAAAAAAAAAAAAA", /* 23 */
        "n1-AAAAAAAAAAAAAAAAAAAAAB",  /* non-canonical last character */
        "n1-AAAAAAAAAAAAAAAAAAAA+A",  /* standard base64 character */
        "n1-AAAAAAAAAAAAAAAAAAAA=A",
        "N1-AAAAAAAAAAAAAAAAAAAAAA",
        "n-1-AAAAAAAAAAAAAAAAAAAAA",
        "0123456789abcdefg-AAAAAAAAAAAAAAAAAAAAAA", /* 17-char node */
        "n1 AAAAAAAAAAAAAAAAAAAAAA",
    };
    char node[NODE_ID_MAX + 1];

    (void)state;
    assert_true(id_valid("n1-AAAAAAAAAAAAAAAAAAAAAA"));
    assert_true(id_valid("n1-_____________________w"));
    assert_true(id_valid("n1-AAAAAAAAAAAAAAAAAAAA-Q"));
    assert_true(id_valid("n1--AAAAAAAAAAAAAAAAAAAAA")); /* base64url may start with '-' */
    assert_true(id_belongs_to("n1--AAAAAAAAAAAAAAAAAAAAA", "n1"));
    assert_false(id_valid(NULL));
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        assert_false(id_valid(bad[i]));
        assert_int_equal(id_node(bad[i], node, sizeof(node)), -1);
        assert_false(id_belongs_to(bad[i], "n1"));
    }
}

static void test_rand_bytes(void **state)
{
    unsigned char a[32] = { 0 }, b[32] = { 0 };

    (void)state;
    assert_int_equal(rand_bytes(a, sizeof(a)), 0);
    assert_int_equal(rand_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(rand_bytes(a, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_id_valid), cmocka_unit_test(test_new_format),
        cmocka_unit_test(test_new_rejects),   cmocka_unit_test(test_unique),
        cmocka_unit_test(test_prefix),        cmocka_unit_test(test_invalid_ids),
        cmocka_unit_test(test_rand_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
