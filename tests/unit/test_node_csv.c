/*
 * The RFC 4180 reader of mfa-node (node/csv.c), in tables: plain and quoted
 * fields, doubled quotes, commas and line breaks inside quotes, CRLF / LF /
 * lone CR, blank lines, a byte order mark, empty fields, records with fewer
 * or more fields than the header (the reader returns them; the caller
 * judges), line numbers across embedded line breaks, and the errors: an
 * unterminated quote, text after a closing quote, a quote inside an
 * unquoted field, a NUL byte, a field or a record over the limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csv.h"

#define MAXREC 8
#define MAXF   8

struct csv_case {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    /* the records expected before the end or the error */
    size_t nrec;
    size_t lines[MAXREC];
    size_t nfields[MAXREC];
    const char *fields[MAXREC][MAXF];
    const char *error; /* a substring of the error after nrec records; NULL: clean end */
};

static const struct csv_limits small = { .max_fields = 4, .max_field_len = 8 };

static const struct csv_case cases[] = {
    { "plain",
      "a,b,c\n1,2,3\n",
      0,
      2,
      { 1, 2 },
      { 3, 3 },
      { { "a", "b", "c" }, { "1", "2", "3" } },
      NULL },
    { "no final line break",
      "a,b\n1,2",
      0,
      2,
      { 1, 2 },
      { 2, 2 },
      { { "a", "b" }, { "1", "2" } },
      NULL },
    { "crlf", "a,b\r\n1,2\r\n", 0, 2, { 1, 2 }, { 2, 2 }, { { "a", "b" }, { "1", "2" } }, NULL },
    { "lone cr", "a,b\r1,2\r", 0, 2, { 1, 2 }, { 2, 2 }, { { "a", "b" }, { "1", "2" } }, NULL },
    { "blank lines skipped",
      "\n\r\na\n\n\nb\r\n\r\n",
      0,
      2,
      { 3, 6 },
      { 1, 1 },
      { { "a" }, { "b" } },
      NULL },
    { "empty input", "", 0, 0, { 0 }, { 0 }, { { NULL } }, NULL },
    { "only line breaks", "\r\n\n", 0, 0, { 0 }, { 0 }, { { NULL } }, NULL },
    { "empty fields", ",,\n,", 0, 2, { 1, 2 }, { 3, 2 }, { { "", "", "" }, { "", "" } }, NULL },
    { "spaces kept", " a , b\n", 0, 1, { 1 }, { 2 }, { { " a ", " b" } }, NULL },
    { "quoted", "\"a\",\"b,c\"\n", 0, 1, { 1 }, { 2 }, { { "a", "b,c" } }, NULL },
    { "doubled quote",
      "\"say \"\"hi\"\"\",x\n",
      0,
      1,
      { 1 },
      { 2 },
      { { "say \"hi\"", "x" } },
      NULL },
    { "empty quoted", "\"\",\"\"\"\"\n", 0, 1, { 1 }, { 2 }, { { "", "\"" } }, NULL },
    { "newline in quotes",
      "\"a\nb\",c\nd\n",
      0,
      2,
      { 1, 3 },
      { 2, 1 },
      { { "a\nb", "c" }, { "d" } },
      NULL },
    { "crlf in quotes",
      "\"a\r\nb\"\r\nc\r\n",
      0,
      2,
      { 1, 3 },
      { 1, 1 },
      { { "a\r\nb" }, { "c" } },
      NULL },
    { "quoted last field at eof", "a,\"b\"", 0, 1, { 1 }, { 2 }, { { "a", "b" } }, NULL },
    { "bom skipped",
      "\xEF\xBB\xBFusername,method\n",
      0,
      1,
      { 1 },
      { 2 },
      { { "username", "method" } },
      NULL },
    { "utf-8 kept", "J\xC3\xBCrgen\n", 0, 1, { 1 }, { 1 }, { { "J\xC3\xBCrgen" } }, NULL },
    { "fewer and more fields",
      "a,b,c\n1,2\n1,2,3,4\n",
      0,
      3,
      { 1, 2, 3 },
      { 3, 2, 4 },
      { { "a", "b", "c" }, { "1", "2" }, { "1", "2", "3", "4" } },
      NULL },
    { "field at the limit", "12345678\n", 0, 1, { 1 }, { 1 }, { { "12345678" } }, NULL },
    { "quoted field at the limit",
      "\"1234567\"\"\"\n",
      0,
      1,
      { 1 },
      { 1 },
      { { "1234567\"" } },
      NULL },
    /* errors */
    { "unterminated quote",
      "a\n\"b,c\nd\n",
      0,
      1,
      { 1 },
      { 1 },
      { { "a" } },
      "line 2: a quoted field is not closed" },
    { "text after closing quote",
      "\"a\"b,c\n",
      0,
      0,
      { 0 },
      { 0 },
      { { NULL } },
      "line 1: only a comma" },
    { "space after closing quote",
      "x\n\"a\" ,c\n",
      0,
      1,
      { 1 },
      { 1 },
      { { "x" } },
      "line 2: only a comma" },
    { "quote in unquoted field",
      "ab\"c\n",
      0,
      0,
      { 0 },
      { 0 },
      { { NULL } },
      "line 1: a quote inside an unquoted field" },
    { "nul byte", "a,b\0c\n", 6, 0, { 0 }, { 0 }, { { NULL } }, "line 1: a NUL byte" },
    { "nul in quotes", "\"a\0\"\n", 5, 0, { 0 }, { 0 }, { { NULL } }, "line 1: a NUL byte" },
    { "field too long",
      "ok\n123456789\n",
      0,
      1,
      { 1 },
      { 1 },
      { { "ok" } },
      "line 2: field 1 is longer than 8 bytes" },
    { "quoted field too long",
      "\"12345678\"\"\"\n",
      0,
      0,
      { 0 },
      { 0 },
      { { NULL } },
      "longer than 8 bytes" },
    { "too many fields",
      "a,b,c,d\na,b,c,d,e\n",
      0,
      1,
      { 1 },
      { 4 },
      { { "a", "b", "c", "d" } },
      "line 2: more than 4 fields" },
    { "line number after quoted newlines",
      "\"a\n\nb\"\n\"c\n",
      0,
      1,
      { 1 },
      { 1 },
      { { "a\n\nb" } },
      "line 4: a quoted field is not closed" },
};

static void run_case(const struct csv_case *c)
{
    size_t len = c->len ? c->len : strlen(c->in);
    char *err = NULL;
    struct csv_reader *r = csv_reader_new(c->in, len, &small, &err);
    struct csv_record rec;
    int rc;

    assert_non_null(r);
    for (size_t i = 0; i < c->nrec; i++) {
        rc = csv_read(r, &rec, &err);
        if (rc != 1)
            fail_msg("%s: record %zu: rc %d err %s", c->name, i, rc, err ? err : "-");
        assert_int_equal(rec.line, c->lines[i]);
        assert_int_equal(rec.nfields, c->nfields[i]);
        for (size_t f = 0; f < rec.nfields; f++)
            assert_string_equal(rec.fields[f], c->fields[i][f]);
    }
    rc = csv_read(r, &rec, &err);
    if (c->error) {
        if (rc != -1 || !err || !strstr(err, c->error))
            fail_msg("%s: rc %d err \"%s\", want \"%s\"", c->name, rc, err ? err : "-", c->error);
        free(err);
        err = NULL;
        /* stays failed */
        assert_int_equal(csv_read(r, &rec, &err), -1);
        assert_non_null(err);
        free(err);
    } else {
        if (rc != 0)
            fail_msg("%s: rc %d at the end, err %s", c->name, rc, err ? err : "-");
        assert_null(err);
        /* the end stays the end */
        assert_int_equal(csv_read(r, &rec, &err), 0);
    }
    csv_reader_free(r);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
}

static void test_bad_limits(void **state)
{
    static const struct csv_limits bad[] = {
        { .max_fields = 0, .max_field_len = 8 },
        { .max_fields = 4, .max_field_len = 0 },
        { .max_fields = SIZE_MAX / 2, .max_field_len = SIZE_MAX / 2 },
        { .max_fields = 1 << 20, .max_field_len = 1 << 20 },
    };
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(csv_reader_new("a", 1, &bad[i], &err));
        assert_non_null(err);
        free(err);
        err = NULL;
    }
}

/* No read past the end: the input is an exact-size heap copy (ASan checks). */
static void test_exact_buffer(void **state)
{
    static const char *const inputs[] = { "\"abc", "a,", "\"a\"\"", "a\r", "\xEF\xBB", "\"" };
    struct csv_limits lim = { .max_fields = 8, .max_field_len = 64 };

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t len = strlen(inputs[i]);
        char *copy = malloc(len);
        struct csv_reader *r;
        struct csv_record rec;
        int rc;

        memcpy(copy, inputs[i], len);
        r = csv_reader_new(copy, len, &lim, NULL);
        assert_non_null(r);
        while ((rc = csv_read(r, &rec, NULL)) == 1)
            ;
        csv_reader_free(r);
        free(copy);
    }
}

/* A file of many records: every one is read, with its line. */
static void test_many_records(void **state)
{
    struct csv_limits lim = { .max_fields = 6, .max_field_len = 64 };
    size_t n = 20000, len = 0;
    char *buf = malloc(n * 32);
    struct csv_reader *r;
    struct csv_record rec;
    size_t count = 0;

    (void)state;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(buf + len, "user%zu,\"Name, %zu\",totp\r\n", i, i);
    r = csv_reader_new(buf, len, &lim, NULL);
    assert_non_null(r);
    while (csv_read(r, &rec, NULL) == 1) {
        char want[32];

        snprintf(want, sizeof(want), "user%zu", count);
        assert_int_equal(rec.line, count + 1);
        assert_int_equal(rec.nfields, 3);
        assert_string_equal(rec.fields[0], want);
        count++;
    }
    assert_int_equal(count, n);
    csv_reader_free(r);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bad_limits),
        cmocka_unit_test(test_exact_buffer),
        cmocka_unit_test(test_many_records),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
