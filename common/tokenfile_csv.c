/*
 * OATH token seed files as CSV (tokenfile.h): the reader, RFC 4180 with
 * blanks trimmed around unquoted fields, and the writer.
 *
 * The input is untrusted (a file a vendor sent): every field is bounded
 * before it is copied, every error names the line and the column, and a
 * failed read leaves the caller's set as it was (the records it had added
 * are wiped and dropped). Rows and decoded seeds pass through buffers that
 * are wiped before they are freed or go out of scope.
 */
#include "tokenfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"
#include "errmsg.h"
#include "otp.h"
#include "secrets.h"
#include "tokenfile_priv.h"

/* ---- reader */

#define CSV_FIELDS_MAX 16
#define CSV_FIELD_MAX  1024

struct csv_in {
    const char *p, *end;
    size_t line; /* of the next character */
};

struct csv_row {
    size_t line; /* where the record starts */
    size_t n;
    bool quoted0; /* the first field was quoted (so an empty one is not a blank line) */
    char f[CSV_FIELDS_MAX][CSV_FIELD_MAX + 1];
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Consumes one line break at in->p, if any. */
static void csv_eol(struct csv_in *in)
{
    if (in->p < in->end && *in->p == '\r')
        in->p++;
    if (in->p < in->end && *in->p == '\n')
        in->p++;
    in->line++;
}

/* Reads a quoted field (in->p after the opening quote) into <out>. */
static int csv_quoted(struct csv_in *in, struct csv_row *row, char *out, char **err)
{
    size_t k = 0;

    for (;;) {
        char c;

        if (in->p == in->end)
            return err_set(err, "line %zu: field %zu has a quote that is not closed", row->line,
                           row->n + 1);
        c = *in->p++;
        if (c == '"') {
            if (in->p < in->end && *in->p == '"') {
                in->p++;
            } else {
                break;
            }
        } else if (c == '\n' || (c == '\r' && (in->p == in->end || *in->p != '\n'))) {
            in->line++;
        } else if (c == '\0') {
            return err_set(err, "line %zu: a NUL byte in field %zu", in->line, row->n + 1);
        }
        if (k == CSV_FIELD_MAX)
            return err_set(err, "line %zu: field %zu is longer than %d bytes", row->line,
                           row->n + 1, CSV_FIELD_MAX);
        out[k++] = c;
    }
    out[k] = '\0';
    while (in->p < in->end && is_blank(*in->p))
        in->p++;
    if (in->p < in->end && *in->p != ',' && *in->p != '\r' && *in->p != '\n')
        return err_set(err, "line %zu: text after the closing quote of field %zu", in->line,
                       row->n + 1);
    return 0;
}

/* Reads an unquoted field into <out>, blanks around it trimmed. */
static int csv_plain(struct csv_in *in, struct csv_row *row, char *out, char **err)
{
    size_t k = 0;

    while (in->p < in->end && *in->p != ',' && *in->p != '\r' && *in->p != '\n') {
        char c = *in->p++;

        if (c == '"')
            return err_set(err, "line %zu: a quote inside unquoted field %zu", in->line,
                           row->n + 1);
        if (c == '\0')
            return err_set(err, "line %zu: a NUL byte in field %zu", in->line, row->n + 1);
        if (k == CSV_FIELD_MAX)
            return err_set(err, "line %zu: field %zu is longer than %d bytes", in->line, row->n + 1,
                           CSV_FIELD_MAX);
        out[k++] = c;
    }
    while (k > 0 && is_blank(out[k - 1]))
        k--;
    out[k] = '\0';
    return 0;
}

/* Reads the next record. Returns 1, 0 at the end, or -1 with *err. */
static int csv_row_read(struct csv_in *in, struct csv_row *row, char **err)
{
    if (in->p == in->end)
        return 0;
    row->line = in->line;
    row->n = 0;
    row->quoted0 = false;
    for (;;) {
        const char *q = in->p;
        char *out;

        if (row->n == CSV_FIELDS_MAX)
            return err_set(err, "line %zu: more than %d fields", row->line, CSV_FIELDS_MAX);
        out = row->f[row->n];
        while (q < in->end && is_blank(*q))
            q++;
        if (q < in->end && *q == '"') {
            in->p = q + 1;
            if (row->n == 0)
                row->quoted0 = true;
            if (csv_quoted(in, row, out, err) < 0)
                return -1;
        } else {
            in->p = q;
            if (csv_plain(in, row, out, err) < 0)
                return -1;
        }
        row->n++;
        if (in->p < in->end && *in->p == ',') {
            in->p++;
            continue;
        }
        if (in->p < in->end)
            csv_eol(in);
        return 1;
    }
}

static bool csv_row_blank(const struct csv_row *row)
{
    return row->n == 1 && !row->quoted0 && row->f[0][0] == '\0';
}

enum csv_col {
    COL_SERIAL = 0,
    COL_SEED,
    COL_ENCODING,
    COL_TYPE,
    COL_DIGITS,
    COL_PERIOD,
    COL_COUNTER,
    COL_ALGORITHM,
    COL_USER,
    COL_COUNT,
};

static const struct {
    const char *name;
    enum csv_col col;
} csv_names[] = {
    { "serial", COL_SERIAL },       { "seed", COL_SEED },     { "secret", COL_SEED },
    { "encoding", COL_ENCODING },   { "type", COL_TYPE },     { "kind", COL_TYPE },
    { "digits", COL_DIGITS },       { "period", COL_PERIOD }, { "counter", COL_COUNTER },
    { "algorithm", COL_ALGORITHM }, { "user", COL_USER },
};

static const char *const csv_col_names[COL_COUNT] = {
    [COL_SERIAL] = "serial",   [COL_SEED] = "seed",           [COL_ENCODING] = "encoding",
    [COL_TYPE] = "type",       [COL_DIGITS] = "digits",       [COL_PERIOD] = "period",
    [COL_COUNTER] = "counter", [COL_ALGORITHM] = "algorithm", [COL_USER] = "user",
};

/* The header row: which column each field is. pos[col] is the field index or -1. */
static int csv_header(const struct csv_row *row, int pos[COL_COUNT], char **err)
{
    for (int c = 0; c < COL_COUNT; c++)
        pos[c] = -1;
    for (size_t i = 0; i < row->n; i++) {
        size_t k;

        for (k = 0; k < MFA_ARRAY_LEN(csv_names); k++) {
            if (strcasecmp(row->f[i], csv_names[k].name) == 0)
                break;
        }
        if (k == MFA_ARRAY_LEN(csv_names)) {
            if (!tokenfile_text_ok(row->f[i], strlen(row->f[i])) || strlen(row->f[i]) > 40)
                return err_set(err, "line %zu: column %zu has an unknown name", row->line, i + 1);
            return err_set(err,
                           "line %zu: unknown column \"%s\" (the columns are serial, seed, "
                           "encoding, type, digits, period, counter, algorithm and user)",
                           row->line, row->f[i]);
        }
        if (pos[csv_names[k].col] >= 0)
            return err_set(err, "line %zu: the %s column appears twice", row->line,
                           csv_col_names[csv_names[k].col]);
        pos[csv_names[k].col] = (int)i;
    }
    if (pos[COL_SERIAL] < 0 || pos[COL_SEED] < 0 || pos[COL_TYPE] < 0)
        return err_set(err, "line %zu: the header must name the serial, seed and type columns",
                       row->line);
    return 0;
}

static bool all_hex(const char *s, size_t n)
{
    if (n == 0 || n % 2)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (b16_digit(s[i]) < 0)
            return false;
    }
    return true;
}

/* Decodes the seed column as <encoding> ("" = guess) into r->seed. */
static int csv_seed(const char *seed, const char *encoding, struct token_rec *r, char **err)
{
    unsigned char tmp[B32_DECODED_MAX(CSV_FIELD_MAX)];
    size_t n = strlen(seed), len = 0;
    bool hex;
    int rc = 0;

    if (n == 0)
        return err_set(err, "the seed is empty");
    if (strcasecmp(encoding, "hex") == 0)
        hex = true;
    else if (strcasecmp(encoding, "base32") == 0)
        hex = false;
    else if (*encoding == '\0')
        hex = all_hex(seed, n);
    else
        return err_set(err, "the encoding must be hex or base32");
    if (hex) {
        if (!all_hex(seed, n))
            return err_set(err, "the seed is not hex (an even number of 0-9, a-f)");
        len = n / 2;
        for (size_t i = 0; i < len; i++)
            tmp[i] = (unsigned char)(b16_digit(seed[2 * i]) << 4 | b16_digit(seed[2 * i + 1]));
    } else if (b32_decode(seed, n, tmp, sizeof(tmp), &len) < 0) {
        rc = err_set(err, "the seed is neither hex nor base32");
    }
    if (rc == 0 && (len < TOKEN_SEED_MIN || len > TOKEN_SEED_MAX))
        rc = err_set(err, "the seed is %zu bytes; it must be %d to %d", len, TOKEN_SEED_MIN,
                     TOKEN_SEED_MAX);
    if (rc == 0) {
        memcpy(r->seed, tmp, len);
        r->seed_len = len;
    }
    secret_wipe(tmp, sizeof(tmp));
    return rc;
}

/* The number in a field, 0..max; <name> names the column in the error. */
static int csv_uint(const char *s, uint64_t max, const char *name, uint64_t *out, char **err)
{
    if (tokenfile_parse_uint(s, strlen(s), max, out) < 0)
        return err_set(err, "%s must be a whole number from 0 to %llu", name,
                       (unsigned long long)max);
    return 0;
}

/* One data row into <r>; the error names the column (the caller adds the line). */
static int csv_record(const struct csv_row *row, const int pos[COL_COUNT], struct token_rec *r,
                      char **err)
{
    const char *v[COL_COUNT];
    uint64_t num;

    for (int c = 0; c < COL_COUNT; c++)
        v[c] = pos[c] >= 0 ? row->f[pos[c]] : "";
    memset(r, 0, sizeof(*r));
    if (*v[COL_SERIAL] == '\0')
        return err_set(err, "the serial is empty");
    if (strlen(v[COL_SERIAL]) > TOKEN_SERIAL_MAX)
        return err_set(err, "the serial is longer than %d bytes", TOKEN_SERIAL_MAX);
    memcpy(r->serial, v[COL_SERIAL], strlen(v[COL_SERIAL]) + 1);
    if (*v[COL_TYPE] == '\0')
        return err_set(err, "the type is empty (totp or hotp)");
    if (strcasecmp(v[COL_TYPE], "totp") == 0)
        r->kind = TOKEN_TOTP;
    else if (strcasecmp(v[COL_TYPE], "hotp") == 0)
        r->kind = TOKEN_HOTP;
    else
        return err_set(err, "the type must be totp or hotp");
    if (csv_seed(v[COL_SEED], v[COL_ENCODING], r, err) < 0)
        return -1;
    r->digits = 6;
    if (*v[COL_DIGITS]) {
        if (csv_uint(v[COL_DIGITS], 1000, "digits", &num, err) < 0)
            return -1;
        r->digits = (int)num;
    }
    r->period = 30;
    if (*v[COL_PERIOD]) {
        if (csv_uint(v[COL_PERIOD], 100000, "the period", &num, err) < 0)
            return -1;
        if (r->kind == TOKEN_TOTP)
            r->period = (int)num;
    }
    if (*v[COL_COUNTER] &&
        csv_uint(v[COL_COUNTER], UINT64_MAX, "the counter", &r->counter, err) < 0)
        return -1;
    if (r->kind == TOKEN_TOTP)
        r->counter = 0;
    snprintf(r->algorithm, sizeof(r->algorithm), "SHA1");
    if (*v[COL_ALGORITHM]) {
        enum otp_algo algo;

        if (otp_algo_parse(v[COL_ALGORITHM], &algo) < 0)
            return err_set(err, "the algorithm must be SHA1, SHA256 or SHA512");
        snprintf(r->algorithm, sizeof(r->algorithm), "%s", otp_algo_name(algo));
    }
    if (strlen(v[COL_USER]) > TOKEN_USER_MAX)
        return err_set(err, "the user is longer than %d bytes", TOKEN_USER_MAX);
    memcpy(r->user, v[COL_USER], strlen(v[COL_USER]) + 1);
    return tokenrec_check(r, err);
}

/* Appends the line of a new record to *where (grown as needed). */
static int where_add(size_t **where, size_t *cap, size_t i, size_t line, char **err)
{
    if (i == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        size_t *w = realloc(*where, ncap * sizeof(*w));

        if (!w)
            return err_set(err, "out of memory");
        *where = w;
        *cap = ncap;
    }
    (*where)[i] = line;
    return 0;
}

int tokenfile_read_csv(const char *text, size_t len, struct token_set *out, char **err)
{
    struct csv_in in = { text, text + len, 1 };
    struct csv_row *row;
    struct token_rec r;
    size_t start = out->n, *where = NULL, wcap = 0, ncols = 0;
    int pos[COL_COUNT], rc;
    bool header = false;

    if (len > TOKENFILE_MAX_BYTES)
        return err_set(err, "the file is larger than %u MiB", TOKENFILE_MAX_BYTES >> 20);
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        in.p += 3;
    row = malloc(sizeof(*row));
    if (!row)
        return err_set(err, "out of memory");
    while ((rc = csv_row_read(&in, row, err)) == 1) {
        if (csv_row_blank(row))
            continue;
        if (!header) {
            rc = csv_header(row, pos, err);
            if (rc < 0)
                break;
            header = true;
            ncols = row->n;
            continue;
        }
        rc = -1;
        if (row->n != ncols) {
            err_set(err, "line %zu: %zu fields, but the header names %zu columns", row->line,
                    row->n, ncols);
            break;
        }
        if (csv_record(row, pos, &r, err) < 0) {
            err_prefix(err, "line %zu", row->line);
            break;
        }
        if (where_add(&where, &wcap, out->n - start, row->line, err) < 0 ||
            token_set_add(out, &r, err) < 0) {
            err_prefix(err, "line %zu", row->line);
            break;
        }
        rc = 1;
    }
    if (rc == 0 && !header)
        rc = err_set(err, "the file is empty: no header row (serial,type,seed,...)");
    if (rc == 0)
        rc = tokenfile_check_dups(out, start, where, false, err);
    secret_wipe(&r, sizeof(r));
    secret_wipe(row, sizeof(*row));
    free(row);
    free(where);
    if (rc < 0)
        tokenfile_rollback(out, start);
    return rc < 0 ? -1 : 0;
}

/* ---- writer */

/* A field, quoted when the reader would otherwise split or trim it. */
static void csv_put(struct tokenfile_buf *b, const char *s)
{
    size_t n = strlen(s);
    bool quote = n > 0 && (is_blank(s[0]) || is_blank(s[n - 1]));

    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        tokenfile_buf_add(b, s, n);
        return;
    }
    tokenfile_buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        tokenfile_buf_add(b, s + i, 1);
        if (s[i] == '"')
            tokenfile_buf_add(b, "\"", 1); /* RFC 4180: a quote is doubled */
    }
    tokenfile_buf_add(b, "\"", 1);
}

int tokenfile_write_csv(const struct token_set *s, char **out, size_t *len, char **err)
{
    struct tokenfile_buf b = { 0 };

    tokenfile_buf_str(&b, "serial,type,seed,encoding,digits,period,counter,algorithm,user\r\n");
    for (size_t i = 0; i < s->n; i++) {
        const struct token_rec *r = &s->v[i];
        char hex[2 * TOKEN_SEED_MAX + 1];

        if (tokenrec_check(r, err) < 0) {
            tokenfile_buf_wipe(&b);
            return err_prefix(err, "token %zu", i + 1);
        }
        for (size_t k = 0; k < r->seed_len; k++)
            snprintf(hex + 2 * k, 3, "%02x", r->seed[k]);
        csv_put(&b, r->serial);
        tokenfile_buf_str(&b, r->kind == TOKEN_TOTP ? ",totp," : ",hotp,");
        tokenfile_buf_str(&b, hex);
        secret_wipe(hex, sizeof(hex));
        if (r->kind == TOKEN_TOTP)
            tokenfile_buf_printf(&b, ",hex,%d,%d,,%s,", r->digits, r->period, r->algorithm);
        else
            tokenfile_buf_printf(&b, ",hex,%d,,%llu,%s,", r->digits, (unsigned long long)r->counter,
                                 r->algorithm);
        csv_put(&b, r->user);
        tokenfile_buf_str(&b, "\r\n");
    }
    return tokenfile_buf_take(&b, out, len, err);
}
