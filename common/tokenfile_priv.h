/*
 * What the parts of the token file code share (tokenfile.c defines it;
 * tokenfile_csv.c, tokenfile_pskc.c and tokenfile_pskc_write.c use it): the
 * checks every record goes through, the duplicate serial check, and an
 * output buffer that wipes what it drops (it holds seeds).
 */
#ifndef MFA_TOKENFILE_PRIV_H
#define MFA_TOKENFILE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenfile.h"

/* The namespaces of PSKC (RFC 6030 §4) and what it borrows. */
#define NS_PSKC   "urn:ietf:params:xml:ns:keyprov:pskc"
#define NS_XENC   "http://www.w3.org/2001/04/xmlenc#"
#define NS_XENC11 "http://www.w3.org/2009/xmlenc11#"
#define NS_DS     "http://www.w3.org/2000/09/xmldsig#"
#define NS_DSMORE "http://www.w3.org/2001/04/xmldsig-more#"
#define NS_PKCS5  "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"

/*
 * Checks every field of <r> against the limits of tokenfile.h. Returns 0, or
 * -1 with a sentence naming the field in *err (the caller prefixes the line
 * or key package).
 */
int tokenrec_check(const struct token_rec *r, char **err) MFA_MUSTCHECK;

/* True when <s> is <n> bytes of valid UTF-8 without control characters. */
bool tokenfile_text_ok(const char *s, size_t n);

/*
 * Fails when two of the records <s>->v[from..] share a serial. where[i] is
 * the line (CSV) or key package index (PSKC) of record from + i, named in
 * the message ("line 7: serial ... appears twice (first on line 3)").
 */
int tokenfile_check_dups(const struct token_set *s, size_t from, const size_t *where, bool pskc,
                         char **err) MFA_MUSTCHECK;

/* Wipes and drops the records of <s> past the first <n> (a failed read). */
void tokenfile_rollback(struct token_set *s, size_t n);

/*
 * Parses <len> bytes of decimal digits (no sign, no blanks) as a number no
 * greater than <max>. Returns 0, or -1.
 */
int tokenfile_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out) MFA_MUSTCHECK;

/* A growing, NUL-terminated output buffer; a failed append sets <failed>. */
struct tokenfile_buf {
    char *p;
    size_t n, cap;
    bool failed;
};

void tokenfile_buf_add(struct tokenfile_buf *b, const char *s, size_t n);
void tokenfile_buf_str(struct tokenfile_buf *b, const char *s);
void tokenfile_buf_printf(struct tokenfile_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Wipes and frees the buffer. */
void tokenfile_buf_wipe(struct tokenfile_buf *b);
/* Hands the text to *out / *len (the buffer is empty after); -1 with *err if an append failed. */
int tokenfile_buf_take(struct tokenfile_buf *b, char **out, size_t *len, char **err) MFA_MUSTCHECK;

#endif
