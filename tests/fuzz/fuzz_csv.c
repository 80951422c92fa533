/*
 * Fuzz target for the CSV reader of the user import (node/csv.c) and the
 * checks every imported field goes through (users_fields_check,
 * users_check_username, users_parse_time).
 *
 * The input is copied to a heap buffer of exactly its size (no NUL after
 * it), so ASan sees any read past the end, and read twice: with tight limits
 * (the error paths) and with the import's own. Besides ASan/UBSan findings
 * the target aborts when a result breaks the contract of csv.h: a return
 * value out of range, an error without a message or a message without an
 * error, a record with no fields or more than the limit, a field longer than
 * the limit, line numbers that go backwards or past the input's line count,
 * or an end that does not stay the end. Seeds: tests/fuzz/corpus/csv/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "mem.h"
#include "users_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Line breaks in the input bound the line numbers (CRLF counts once, so this is generous). */
static size_t count_breaks(const char *s, size_t n)
{
    size_t breaks = 0;

    for (size_t i = 0; i < n; i++)
        breaks += s[i] == '\n' || s[i] == '\r';
    return breaks;
}

static void check_fields(const struct csv_record *rec)
{
    struct users_fields f = { .disabled = -1 };
    char when[48], *err = NULL;
    int rc;

    /* the import's column order when all six are present */
    f.username = rec->fields[0];
    f.display_name = rec->nfields > 1 ? rec->fields[1] : "";
    f.email = rec->nfields > 2 ? rec->fields[2] : "";
    f.phone = rec->nfields > 3 ? rec->fields[3] : "";
    f.method = rec->nfields > 4 ? rec->fields[4] : "sms";
    f.pin = rec->nfields > 5 && *rec->fields[5] ? rec->fields[5] : NULL;
    rc = users_fields_check(&f, true, &err);
    if ((rc != 0 && rc != -1) || (rc < 0) != (err != NULL))
        abort();
    mfa_free(err);
    rc = users_check_username("username", rec->fields[0], &err);
    if ((rc != 0 && rc != -1) || (rc < 0) != (err != NULL))
        abort();
    mfa_free(err);
    if (users_parse_time(rec->fields[0], when, sizeof(when)) == 0 && strlen(when) < 25)
        abort();
}

static void read_all(const char *buf, size_t size, const struct csv_limits *lim, bool fields)
{
    struct csv_reader *r = csv_reader_new(buf, size, lim, NULL);
    struct csv_record rec;
    size_t last = 0, records = 0, lines = count_breaks(buf, size) + 1;
    char *err = NULL;
    int rc;

    if (!r)
        abort();
    while ((rc = csv_read(r, &rec, &err)) == 1) {
        if (err || rec.nfields < 1 || rec.nfields > lim->max_fields || rec.line < last ||
            rec.line < 1 || rec.line > lines || ++records > size + 1)
            abort();
        for (size_t i = 0; i < rec.nfields; i++) {
            if (strlen(rec.fields[i]) > lim->max_field_len)
                abort();
        }
        if (fields)
            check_fields(&rec);
        last = rec.line;
    }
    if (rc == 0) {
        if (err || csv_read(r, &rec, &err) != 0 || err)
            abort();
    } else if (rc != -1 || !err) {
        abort();
    }
    mfa_free(err);
    csv_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct csv_limits tight = { .max_fields = 3, .max_field_len = 4 };
    static const struct csv_limits import = { .max_fields = 64, .max_field_len = 1024 };
    char *buf = malloc(size ? size : 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    read_all(buf, size, &tight, false);
    read_all(buf, size, &import, true);
    free(buf);
    return 0;
}
