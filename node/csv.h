/*
 * A reader for comma-separated values as RFC 4180 defines them, for the
 * admin API's users import (token seed files have their own reader,
 * common/tokenfile_csv.c, which mfactl shares). The input is untrusted: the
 * reader never reads or writes outside its buffers, and a record larger than
 * the limits is an error, not a bigger allocation.
 *
 * RFC 4180 §2, with the usual leniencies:
 *   - records end with CRLF, LF or a lone CR; the last one may have none;
 *   - a field that starts with '"' is quoted: it may hold commas, line
 *     breaks and '""' (one quote); after its closing quote comes a comma or
 *     the end of the record, nothing else;
 *   - a quote inside an unquoted field is an error (it is ambiguous);
 *   - an empty line (no characters at all) is skipped, so a trailing blank
 *     line is fine; a line of spaces is a record with one field;
 *   - a UTF-8 byte order mark at the very start is skipped (spreadsheets
 *     write one);
 *   - a NUL byte anywhere is an error (fields are C strings).
 * Fields are returned as they are: no trimming, no character set check.
 *
 * A syntax error names the line it is on and ends the reading: the caller
 * rejects the whole input (there is no safe way to resynchronise after,
 * say, an unterminated quote).
 */
#ifndef MFA_NODE_CSV_H
#define MFA_NODE_CSV_H

#include <stddef.h>

#include "mem.h"

struct csv_reader;

struct csv_limits {
    size_t max_fields;    /* fields per record, >= 1 */
    size_t max_field_len; /* bytes per decoded field, >= 1 */
};

/* One record; valid until the next csv_read() or csv_reader_free(). */
struct csv_record {
    size_t line;               /* 1-based line on which the record starts */
    size_t nfields;            /* >= 1 */
    const char *const *fields; /* nfields NUL-terminated, decoded fields */
};

/*
 * A reader over <len> bytes at <data>, which must stay valid and unchanged
 * while the reader is used (it is not copied). Returns the reader, or NULL
 * with *err (bad limits, out of memory). Memory is bounded by the limits:
 * about max_fields * (max_field_len + 1 + sizeof(char *)) bytes.
 */
struct csv_reader *csv_reader_new(const char *data, size_t len, const struct csv_limits *lim,
                                  char **err) MFA_MUSTCHECK;

/* Wipes the decoded fields (an import may carry PINs) and frees <r>; NULL is fine. */
void csv_reader_free(struct csv_reader *r);

/*
 * Reads the next record into *rec. Returns 1 (a record), 0 at the end of the
 * input, or -1 with *err ("line N: ...") on a syntax error or a record over
 * the limits; after -1 every further call returns -1 again.
 */
int csv_read(struct csv_reader *r, struct csv_record *rec, char **err) MFA_MUSTCHECK;

#endif
