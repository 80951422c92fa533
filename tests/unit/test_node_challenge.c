/*
 * OTP challenges (node/challenge.c): create and verify, wrong codes, the
 * attempt limit, expiry at the TTL, one-time use and the accepted tombstone,
 * id format, a burst of 100k challenges expiring to nothing, memory per live
 * challenge (< 1 KiB), uniform codes, and no code kept in clear.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "challenge.h"
#include "ids.h"

#define T0 1000000ULL /* an arbitrary monotonic start */

static const struct chal_settings defaults = {
    .ttl_s = 120,
    .max_attempts = 3,
    .code_digits = 6,
};

static struct chal_store *store(const struct chal_settings *s)
{
    char *err = NULL;
    struct chal_store *st = chal_store_new("n1", s ? s : &defaults, &err);

    assert_null(err);
    assert_non_null(st);
    return st;
}

static void create(struct chal_store *st, uint64_t now, char *id, char *code)
{
    char *err = NULL;

    assert_int_equal(chal_create(st, "alice", "sms", now, id, ID_MAX, code, CHAL_CODE_MAX, &err),
                     0);
    assert_null(err);
}

/* A wrong code of the same shape as <code>. */
static void wrong_of(const char *code, char *out)
{
    strcpy(out, code);
    out[0] = out[0] == '9' ? '0' : (char)(out[0] + 1);
}

static void test_settings_checked(void **state)
{
    struct chal_settings bad[] = {
        { .ttl_s = 0, .max_attempts = 3, .code_digits = 6 },
        { .ttl_s = 86401, .max_attempts = 3, .code_digits = 6 },
        { .ttl_s = 60, .max_attempts = 0, .code_digits = 6 },
        { .ttl_s = 60, .max_attempts = 3, .code_digits = 5 },
        { .ttl_s = 60, .max_attempts = 3, .code_digits = 9 },
    };
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        assert_null(chal_store_new("n1", &bad[i], &err));
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    assert_null(chal_store_new("N-1", &defaults, &err));
    assert_non_null(strstr(err, "node id"));
    free(err);
}

static void test_accept_once(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX];
    struct chal_info info;

    (void)state;
    create(st, T0, id, code);
    assert_int_equal(chal_count(st), 1);
    assert_int_equal(strlen(code), 6);
    assert_int_equal(strspn(code, "0123456789"), 6);
    assert_int_equal(chal_state(st, id, T0 + 1, &info), CHAL_ST_PENDING);
    assert_string_equal(info.username, "alice");
    assert_int_equal(info.expires_ms, T0 + 120000);

    assert_int_equal(chal_verify(st, id, code, T0 + 5000, &info), CHAL_ACCEPTED);
    assert_string_equal(info.id, id);
    assert_string_equal(info.username, "alice");
    assert_string_equal(info.method, "sms");
    assert_int_equal(info.attempts_left, 3);
    assert_int_equal(chal_count(st), 0);
    assert_int_equal(chal_tombstones(st), 1);

    /* One-time use: the tombstone answers pollers but never verifies again. */
    assert_int_equal(chal_verify(st, id, code, T0 + 5001, &info), CHAL_UNKNOWN);
    assert_string_equal(info.username, "");
    assert_int_equal(chal_state(st, id, T0 + 5002, &info), CHAL_ST_ACCEPTED);
    assert_string_equal(chal_status_name(CHAL_ST_ACCEPTED), "accepted");
    assert_false(chal_cancel(st, id));

    /* The tombstone is dropped CHAL_ACCEPTED_KEEP_MS after acceptance. */
    chal_expire(st, T0 + 5000 + CHAL_ACCEPTED_KEEP_MS - 1);
    assert_int_equal(chal_tombstones(st), 1);
    chal_expire(st, T0 + 5000 + CHAL_ACCEPTED_KEEP_MS);
    assert_int_equal(chal_tombstones(st), 0);
    assert_int_equal(chal_state(st, id, T0 + 70000, NULL), CHAL_ST_GONE);
    assert_string_equal(chal_status_name(CHAL_ST_GONE), "expired");
    chal_store_free(st);
}

static void test_wrong_then_right(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX], wrong[CHAL_CODE_MAX];
    struct chal_info info;

    (void)state;
    create(st, T0, id, code);
    wrong_of(code, wrong);
    assert_int_equal(chal_verify(st, id, wrong, T0 + 1, &info), CHAL_REJECTED);
    assert_int_equal(info.attempts_left, 2);
    assert_string_equal(info.username, "alice");
    /* Malformed answers are wrong codes too and count. */
    assert_int_equal(chal_verify(st, id, NULL, T0 + 2, &info), CHAL_REJECTED);
    assert_int_equal(info.attempts_left, 1);
    assert_int_equal(chal_verify(st, id, code, T0 + 3, &info), CHAL_ACCEPTED);
    assert_int_equal(info.attempts_left, 1);
    assert_string_equal(chal_result_name(CHAL_REJECTED), "rejected");
    chal_store_free(st);
}

static void test_attempts_exhausted(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX], wrong[CHAL_CODE_MAX];
    char longer[64];
    struct chal_info info;

    (void)state;
    create(st, T0, id, code);
    wrong_of(code, wrong);
    snprintf(longer, sizeof(longer), "%s0", code); /* the code plus a digit is wrong */
    assert_int_equal(chal_verify(st, id, wrong, T0 + 1, NULL), CHAL_REJECTED);
    assert_int_equal(chal_verify(st, id, longer, T0 + 2, NULL), CHAL_REJECTED);
    assert_int_equal(chal_verify(st, id, "", T0 + 3, &info), CHAL_EXHAUSTED);
    assert_int_equal(info.attempts_left, 0);
    assert_string_equal(info.username, "alice");
    assert_int_equal(chal_count(st), 0);
    /* Gone: even the right code fails now. */
    assert_int_equal(chal_verify(st, id, code, T0 + 4, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_state(st, id, T0 + 4, NULL), CHAL_ST_GONE);
    assert_int_equal(chal_tombstones(st), 0);
    chal_store_free(st);
}

static void test_expiry(void **state)
{
    struct chal_store *st = store(NULL);
    char id1[ID_MAX], id2[ID_MAX], id3[ID_MAX], code1[CHAL_CODE_MAX], code2[CHAL_CODE_MAX],
        code3[CHAL_CODE_MAX];
    struct chal_info info;

    (void)state;
    create(st, T0, id1, code1);
    create(st, T0 + 1000, id2, code2);
    create(st, T0 + 2000, id3, code3);
    /* The right code one millisecond before the TTL is fine ... */
    assert_int_equal(chal_verify(st, id1, code1, T0 + 120000 - 1, NULL), CHAL_ACCEPTED);
    /* ... at the TTL it has expired, even before a tick swept it. */
    assert_int_equal(chal_verify(st, id2, code2, T0 + 1000 + 120000, &info), CHAL_EXPIRED);
    assert_string_equal(info.id, id2);
    assert_int_equal(chal_verify(st, id2, code2, T0 + 1000 + 120001, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_count(st), 1);
    /* The tick removes exactly what has expired. */
    chal_expire(st, T0 + 2000 + 120000 - 1);
    assert_int_equal(chal_count(st), 1);
    chal_expire(st, T0 + 2000 + 120000);
    assert_int_equal(chal_count(st), 0);
    assert_int_equal(chal_verify(st, id3, code3, T0 + 2000 + 120000, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_state(st, id3, T0 + 2000 + 120000, NULL), CHAL_ST_GONE);
    chal_store_free(st);
}

static void test_ids_and_unknown(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX], other[ID_MAX], node[NODE_ID_MAX + 1];
    char *err = NULL;

    (void)state;
    create(st, T0, id, code);
    assert_true(id_valid(id));
    assert_true(id_belongs_to(id, "n1"));
    assert_int_equal(id_node(id, node, sizeof(node)), 0);
    assert_string_equal(node, "n1");
    assert_int_equal(strlen(id), 2 + 1 + ID_RAND_LEN);

    /* Unknown, foreign and malformed ids. */
    assert_int_equal(id_new("n1", other, sizeof(other)), 0);
    assert_int_equal(chal_verify(st, other, code, T0, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_verify(st, NULL, code, T0, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_verify(st, "garbage", code, T0, NULL), CHAL_UNKNOWN);
    assert_int_equal(chal_state(st, "", T0, NULL), CHAL_ST_GONE);
    assert_int_equal(chal_count(st), 1);

    /* Bad arguments to create. */
    assert_int_equal(chal_create(st, "", "sms", T0, other, ID_MAX, code, CHAL_CODE_MAX, &err), -1);
    assert_non_null(err);
    assert_string_equal(other, "");
    free(err);
    err = NULL;
    assert_int_equal(
        chal_create(st, "bob", "a-method-too-long", T0, other, ID_MAX, code, CHAL_CODE_MAX, &err),
        -1);
    free(err);
    err = NULL;
    assert_int_equal(chal_create(st, "bob", "sms", T0, other, ID_MAX, code, 6, &err), -1);
    free(err);
    err = NULL;

    /* Cancel removes a pending one. */
    assert_true(chal_cancel(st, id));
    assert_int_equal(chal_count(st), 0);
    assert_int_equal(chal_verify(st, id, code, T0, NULL), CHAL_UNKNOWN);
    chal_store_free(st);
}

static void test_code_digits_and_data(void **state)
{
    struct chal_settings s = defaults;
    char id[ID_MAX], code[CHAL_CODE_MAX];
    struct chal_info info;
    struct chal_store *st;

    (void)state;
    for (int d = 6; d <= 8; d++) {
        s.code_digits = d;
        st = store(&s);
        create(st, T0, id, code);
        assert_int_equal(strlen(code), (size_t)d);
        assert_int_equal(strspn(code, "0123456789"), (size_t)d);
        assert_int_equal(chal_set_data(st, id, "nas-7", 5), 0);
        assert_int_equal(chal_set_data(st, id, code, CHAL_DATA_MAX + 1), -1);
        assert_int_equal(chal_verify(st, id, code, T0 + 1, &info), CHAL_ACCEPTED);
        assert_int_equal(info.data_len, 5);
        assert_memory_equal(info.data, "nas-7", 5);
        assert_int_equal(chal_set_data(st, id, "x", 1), -1); /* not pending any more */
        chal_store_free(st);
    }
}

/*
 * Codes are uniform: over 20000 six-digit codes, each digit position shows
 * every digit about 2000 times (a chi-square bound generous enough never to
 * fail by chance, tight enough to catch a stuck or biased digit).
 */
static void test_codes_uniform(void **state)
{
    struct chal_settings s = defaults;
    struct chal_store *st;
    unsigned counts[6][10] = { { 0 } };
    char id[ID_MAX], code[CHAL_CODE_MAX];
    const int n = 20000;

    (void)state;
    s.ttl_s = 1;
    st = store(&s);
    for (int i = 0; i < n; i++) {
        create(st, T0, id, code);
        for (int p = 0; p < 6; p++)
            counts[p][code[p] - '0']++;
        chal_expire(st, T0 + 1000);
    }
    for (int p = 0; p < 6; p++) {
        double chi = 0, e = n / 10.0;

        for (int d = 0; d < 10; d++)
            chi += (counts[p][d] - e) * (counts[p][d] - e) / e;
        /* 9 degrees of freedom: P(chi > 40) is about 5e-6. */
        assert_true(chi < 40.0);
    }
    chal_store_free(st);
}

static void test_no_code_in_clear(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX];
    unsigned char rec[2048];
    size_t n;
    uint32_t bin;

    (void)state;
    for (int i = 0; i < 200; i++) {
        create(st, T0, id, code);
        n = chal_debug_record(st, id, rec, sizeof(rec));
        assert_true(n > 0 && n <= sizeof(rec));
        /* Neither the digits nor their value as a binary number. */
        assert_null(memmem(rec, n, code, strlen(code)));
        bin = (uint32_t)strtoul(code, NULL, 10);
        assert_null(memmem(rec, n, &bin, sizeof(bin)));
        assert_non_null(memmem(rec, n, id, strlen(id))); /* the scan sees the record */
    }
    chal_store_free(st);
}

/* Allocated heap bytes: the sanitizer's count under ASan, glibc's otherwise. */
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_bytes(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_bytes(void)
{
    return mallinfo2().uordblks;
}
#endif

static void test_memory_per_challenge(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX], *err = NULL;
    /* A long-ish user name, as a directory might have. */
    const char *user = "firstname.lastname@department.example.org";
    const size_t n = 10000;
    size_t before, after;
    double per;

    (void)state;
    before = heap_bytes();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(chal_create(st, user, "sms", T0, id, sizeof(id), code, sizeof(code), &err),
                         0);
    after = heap_bytes();
    per = (double)(after - before) / (double)n;
    printf("memory per live challenge: %.0f bytes (%zu challenges, %zu bytes)\n", per, n,
           after - before);
    assert_true(after > before);
    assert_true(per < 1024.0);
    chal_store_free(st);
}

static void test_burst_expires_to_nothing(void **state)
{
    struct chal_store *st = store(NULL);
    char id[ID_MAX], code[CHAL_CODE_MAX], *err = NULL;
    static char ids[100][ID_MAX];
    static char codes[100][CHAL_CODE_MAX];
    const size_t n = 100000;
    size_t before = heap_bytes();
    uint64_t now = T0;

    (void)state;
    /* 100k challenges over 10 s of loop time, the tick every 100 ms. */
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) {
            now += 100;
            chal_expire(st, now);
        }
        assert_int_equal(
            chal_create(st, "bob", "sms", now, id, sizeof(id), code, sizeof(code), &err), 0);
        if (i % 1000 == 0) {
            memcpy(ids[i / 1000], id, ID_MAX);
            memcpy(codes[i / 1000], code, CHAL_CODE_MAX);
        }
    }
    assert_int_equal(chal_count(st), n);
    /* Every sampled one is still found among 100k (the table works when big). */
    for (size_t k = 0; k < 100; k += 2)
        assert_int_equal(chal_verify(st, ids[k], codes[k], now, NULL), CHAL_ACCEPTED);
    for (size_t k = 1; k < 100; k += 2)
        assert_int_equal(chal_state(st, ids[k], now, NULL), CHAL_ST_PENDING);
    assert_int_equal(chal_count(st), n - 50);
    assert_int_equal(chal_tombstones(st), 50);

    /* Ticks past the TTL and the tombstone time leave nothing. */
    for (uint64_t t = now; t <= now + 130000; t += 100)
        chal_expire(st, t);
    assert_int_equal(chal_count(st), 0);
    assert_int_equal(chal_tombstones(st), 0);
    for (size_t k = 0; k < 100; k++)
        assert_int_equal(chal_state(st, ids[k], now + 130000, NULL), CHAL_ST_GONE);
    /* The table shrank back: little more than the empty store remains. */
    printf("heap after the burst expired: %zd bytes over the start\n",
           (ssize_t)(heap_bytes() - before));
    assert_true(heap_bytes() < before + 4096);
    chal_store_free(st);
}

static void test_max_live(void **state)
{
    struct chal_settings s = defaults;
    struct chal_store *st;
    char id[ID_MAX], code[CHAL_CODE_MAX], *err = NULL;

    (void)state;
    s.max_live = 3;
    st = store(&s);
    for (int i = 0; i < 3; i++)
        create(st, T0, id, code);
    assert_int_equal(chal_create(st, "x", "sms", T0, id, sizeof(id), code, sizeof(code), &err), -1);
    assert_non_null(strstr(err, "too many"));
    free(err);
    chal_expire(st, T0 + 120000);
    create(st, T0 + 120000, id, code);
    chal_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings_checked),
        cmocka_unit_test(test_accept_once),
        cmocka_unit_test(test_wrong_then_right),
        cmocka_unit_test(test_attempts_exhausted),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_ids_and_unknown),
        cmocka_unit_test(test_code_digits_and_data),
        cmocka_unit_test(test_codes_uniform),
        cmocka_unit_test(test_no_code_in_clear),
        cmocka_unit_test(test_memory_per_challenge),
        cmocka_unit_test(test_burst_expires_to_nothing),
        cmocka_unit_test(test_max_live),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
