/*
 * RFC 4180 reader; see csv.h.
 *
 * The reader walks the input once with a cursor that only moves forward and
 * is compared with the end before every access. Decoded fields go into one
 * buffer allocated up front, max_fields slots of max_field_len + 1 bytes, so
 * a hostile record costs at most that and then fails.
 */
#include "csv.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "secrets.h"

/* Refuse limits whose buffer would be absurd (and catch overflow). */
#define CSV_BUFFER_MAX (64u * 1024 * 1024)

struct csv_reader {
    const char *p, *end;
    size_t line; /* the physical line the cursor is on, 1-based */
    struct csv_limits lim;
    char *buf;          /* max_fields slots of max_field_len + 1 bytes */
    const char **slots; /* max_fields pointers into buf */
    bool failed;
};

struct csv_reader *csv_reader_new(const char *data, size_t len, const struct csv_limits *lim,
                                  char **err)
{
    struct csv_reader *r;
    size_t slot;

    if (!lim || lim->max_fields < 1 || lim->max_field_len < 1 ||
        lim->max_field_len >= CSV_BUFFER_MAX ||
        lim->max_fields > CSV_BUFFER_MAX / (lim->max_field_len + 1) || (!data && len)) {
        err_set(err, "csv: bad limits");
        return NULL;
    }
    slot = lim->max_field_len + 1;
    r = calloc(1, sizeof(*r));
    if (!r)
        goto nomem;
    r->lim = *lim;
    r->buf = malloc(lim->max_fields * slot);
    r->slots = calloc(lim->max_fields, sizeof(*r->slots));
    if (!r->buf || !r->slots)
        goto nomem;
    for (size_t i = 0; i < lim->max_fields; i++)
        r->slots[i] = r->buf + i * slot;
    r->p = data ? data : "";
    r->end = r->p + len;
    r->line = 1;
    /* A UTF-8 byte order mark (EF BB BF) is not part of the first field. */
    if (len >= 3 && memcmp(r->p, "\xEF\xBB\xBF", 3) == 0)
        r->p += 3;
    return r;
nomem:
    csv_reader_free(r);
    err_set(err, "out of memory");
    return NULL;
}

void csv_reader_free(struct csv_reader *r)
{
    if (!r)
        return;
    secret_wipe(r->buf, r->lim.max_fields * (r->lim.max_field_len + 1));
    free(r->buf);
    free(r->slots);
    free(r);
}

static bool at(const struct csv_reader *r, char c)
{
    return r->p < r->end && *r->p == c;
}

static bool at_record_end(const struct csv_reader *r)
{
    return r->p == r->end || *r->p == '\n' || *r->p == '\r';
}

/* Steps over one line break (CRLF, LF or a lone CR) at the cursor. */
static void skip_line_break(struct csv_reader *r)
{
    if (at(r, '\r')) {
        r->p++;
        if (at(r, '\n'))
            r->p++;
    } else if (at(r, '\n')) {
        r->p++;
    } else {
        return;
    }
    r->line++;
}

/* Appends <c> to field <nf> holding *len bytes; -1 when it is full. */
static int put(struct csv_reader *r, size_t nf, size_t *len, char c, char **err)
{
    if (*len >= r->lim.max_field_len)
        return err_set(err, "line %zu: field %zu is longer than %zu bytes", r->line, nf + 1,
                       r->lim.max_field_len);
    r->buf[nf * (r->lim.max_field_len + 1) + *len] = c;
    (*len)++;
    return 0;
}

/* RFC 4180 §2 (5)-(7): a field in quotes; the cursor is on the opening quote. */
static int read_quoted(struct csv_reader *r, size_t nf, size_t *len, char **err)
{
    size_t opened = r->line;

    r->p++;
    for (;;) {
        char c;

        if (r->p == r->end)
            return err_set(err, "line %zu: a quoted field is not closed", opened);
        c = *r->p;
        if (c == '"') {
            if (r->p + 1 < r->end && r->p[1] == '"') {
                /* (7): a quote inside is written twice */
                if (put(r, nf, len, '"', err) < 0)
                    return -1;
                r->p += 2;
                continue;
            }
            r->p++;
            break;
        }
        if (c == '\0')
            return err_set(err, "line %zu: a NUL byte", r->line);
        /* (6): line breaks inside quotes belong to the field */
        if (c == '\n' || (c == '\r' && !(r->p + 1 < r->end && r->p[1] == '\n')))
            r->line++;
        if (put(r, nf, len, c, err) < 0)
            return -1;
        r->p++;
    }
    if (!at_record_end(r) && !at(r, ','))
        return err_set(err, "line %zu: only a comma or a line break may follow a closing quote",
                       r->line);
    return 0;
}

/* RFC 4180 §2 (4), (5): a field without quotes, which may not hold any. */
static int read_plain(struct csv_reader *r, size_t nf, size_t *len, char **err)
{
    while (!at_record_end(r) && !at(r, ',')) {
        if (*r->p == '"')
            return err_set(err,
                           "line %zu: a quote inside an unquoted field (quote the whole field and "
                           "double the quote)",
                           r->line);
        if (*r->p == '\0')
            return err_set(err, "line %zu: a NUL byte", r->line);
        if (put(r, nf, len, *r->p, err) < 0)
            return -1;
        r->p++;
    }
    return 0;
}

int csv_read(struct csv_reader *r, struct csv_record *rec, char **err)
{
    size_t nf = 0;

    if (r->failed)
        return err_set(err, "line %zu: the input was rejected", r->line);
    /* An empty line is no record (a trailing line break, a blank line). */
    while (r->p < r->end && (*r->p == '\n' || *r->p == '\r'))
        skip_line_break(r);
    if (r->p == r->end)
        return 0;
    rec->line = r->line;
    for (;;) {
        size_t len = 0;
        int rc;

        if (nf == r->lim.max_fields) {
            err_set(err, "line %zu: more than %zu fields", r->line, r->lim.max_fields);
            goto fail;
        }
        rc = at(r, '"') ? read_quoted(r, nf, &len, err) : read_plain(r, nf, &len, err);
        if (rc < 0)
            goto fail;
        r->buf[nf * (r->lim.max_field_len + 1) + len] = '\0';
        nf++;
        if (!at(r, ','))
            break;
        r->p++;
    }
    skip_line_break(r);
    rec->nfields = nf;
    rec->fields = r->slots;
    return 1;
fail:
    r->failed = true;
    return -1;
}
