/*
 * OATH token seed files: what the formats share. The token set, format
 * detection, the checks every record read or written goes through, the
 * duplicate serial check and the output buffer. The CSV reader and writer
 * are tokenfile_csv.c, PSKC tokenfile_pskc.c (reader) and
 * tokenfile_pskc_write.c. See tokenfile.h for the formats.
 *
 * Every copy of a seed is wiped when dropped: the set and the output buffer
 * grow by malloc + copy + wipe, never realloc, which could leave the old
 * block in the heap unwiped.
 */
#include "tokenfile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "otp.h"
#include "secrets.h"
#include "tokenfile_priv.h"

/* ---- the token set */

int token_set_add(struct token_set *s, const struct token_rec *r, char **err)
{
    if (s->n >= TOKENFILE_MAX_TOKENS)
        return err_set(err, "more than %u tokens", (unsigned)TOKENFILE_MAX_TOKENS);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct token_rec *v = malloc(cap * sizeof(*v));

        /* not realloc: the old block holds seeds and must be wiped */
        if (!v)
            return err_set(err, "out of memory");
        if (s->n)
            memcpy(v, s->v, s->n * sizeof(*v));
        if (s->v)
            secret_wipe(s->v, s->cap * sizeof(*s->v));
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *r;
    return 0;
}

void token_set_free(struct token_set *s)
{
    if (s->v)
        secret_wipe(s->v, s->cap * sizeof(*s->v));
    free(s->v);
    memset(s, 0, sizeof(*s));
}

void tokenfile_rollback(struct token_set *s, size_t n)
{
    if (s->n > n)
        secret_wipe(s->v + n, (s->n - n) * sizeof(*s->v));
    if (s->n > n)
        s->n = n;
}

enum tokenfile_format tokenfile_detect(const char *text, size_t len)
{
    size_t i = 0;

    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    return i < len && text[i] == '<' ? TOKENFILE_PSKC : TOKENFILE_CSV;
}

/* ---- checks both formats share */

bool tokenfile_text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i], more, min, cp;

        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (unsigned k = 1; k <= more; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* overlong forms, UTF-16 surrogates, beyond Unicode, C1 controls */
        if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
            (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += more + 1;
    }
    return true;
}

/*
 * True when the valid UTF-8 text <s> of <n> bytes holds a space: ASCII, or
 * one of Unicode's (no-break, en, em, thin, zero-width, line and paragraph
 * separators, ideographic, BOM), which would look like a space in a list.
 */
static bool has_space(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n;) {
        unsigned c = p[i], cp = c, more = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;

        if (more)
            cp = c & (0x3fu >> more);
        for (unsigned k = 1; k <= more && i + k < n; k++)
            cp = (cp << 6) | (p[i + k] & 0x3f);
        if (cp == ' ' || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200b) ||
            cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 ||
            cp == 0xfeff)
            return true;
        i += more + 1;
    }
    return false;
}

/* The characters of the valid UTF-8 text <s> of <n> bytes. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t chars = 0;

    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

int tokenrec_check(const struct token_rec *r, char **err)
{
    size_t n = strnlen(r->serial, sizeof(r->serial));
    enum otp_algo algo;

    if (n == 0)
        return err_set(err, "the serial is empty");
    if (n > TOKEN_SERIAL_MAX)
        return err_set(err, "the serial is longer than %d bytes", TOKEN_SERIAL_MAX);
    /* As the schema and the node's enrolled serials ("totp-<username>-..."): any text without
     * white space, at most 128 characters. */
    if (!tokenfile_text_ok(r->serial, n) || has_space(r->serial, n))
        return err_set(err, "the serial must be UTF-8 text without spaces (ASCII or Unicode) or "
                            "control characters");
    if (utf8_chars(r->serial, n) > TOKEN_TEXT_CHARS_MAX)
        return err_set(err, "the serial is longer than %d characters", TOKEN_TEXT_CHARS_MAX);
    if (r->kind != TOKEN_TOTP && r->kind != TOKEN_HOTP)
        return err_set(err, "the type is neither TOTP nor HOTP");
    if (strnlen(r->algorithm, sizeof(r->algorithm)) == sizeof(r->algorithm) ||
        otp_algo_parse(r->algorithm, &algo) < 0)
        return err_set(err, "the algorithm must be SHA1, SHA256 or SHA512");
    if (r->digits < OTP_DIGITS_MIN || r->digits > OTP_DIGITS_MAX)
        return err_set(err, "digits must be 6, 7 or 8, not %d", r->digits);
    if (r->kind == TOKEN_TOTP && (r->period < 10 || r->period > 300))
        return err_set(err, "the period must be 10 to 300 seconds, not %d", r->period);
    if (r->kind == TOKEN_HOTP && r->counter > (uint64_t)INT64_MAX) /* the schema's bigint */
        return err_set(err, "the counter is larger than %lld", (long long)INT64_MAX);
    if (r->seed_len < TOKEN_SEED_MIN || r->seed_len > TOKEN_SEED_MAX)
        return err_set(err, "the seed is %zu bytes; it must be %d to %d", r->seed_len,
                       TOKEN_SEED_MIN, TOKEN_SEED_MAX);
    n = strnlen(r->user, sizeof(r->user));
    if (n > TOKEN_USER_MAX)
        return err_set(err, "the user is longer than %d bytes", TOKEN_USER_MAX);
    if (!tokenfile_text_ok(r->user, n))
        return err_set(err, "the user is not UTF-8 text without control characters");
    if (utf8_chars(r->user, n) > TOKEN_TEXT_CHARS_MAX)
        return err_set(err, "the user is longer than %d characters", TOKEN_TEXT_CHARS_MAX);
    return 0;
}

int tokenfile_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');

        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

struct dup_ent {
    const char *serial;
    size_t where;
};

static int dup_cmp(const void *a, const void *b)
{
    const struct dup_ent *x = a, *y = b;
    int c = strcmp(x->serial, y->serial);

    if (c)
        return c;
    return x->where < y->where ? -1 : x->where > y->where;
}

int tokenfile_check_dups(const struct token_set *s, size_t from, const size_t *where, bool pskc,
                         char **err)
{
    size_t n = s->n - from, bad = 0;
    struct dup_ent *e;

    if (n < 2)
        return 0;
    e = malloc(n * sizeof(*e));
    if (!e)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        e[i] = (struct dup_ent){ s->v[from + i].serial, where[i] };
    /* sorted by serial, then by position: the first repeat is e[i] after e[i - 1] */
    qsort(e, n, sizeof(*e), dup_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(e[i].serial, e[i - 1].serial) == 0 && (!bad || e[i].where < e[bad].where))
            bad = i;
    }
    if (bad) {
        size_t first = bad;

        while (first > 0 && strcmp(e[first - 1].serial, e[bad].serial) == 0)
            first--;
        if (pskc)
            err_set(err,
                    "key package %zu: serial \"%s\" appears twice in the file (first in key "
                    "package %zu)",
                    e[bad].where, e[bad].serial, e[first].where);
        else
            err_set(err, "line %zu: serial \"%s\" appears twice in the file (first on line %zu)",
                    e[bad].where, e[bad].serial, e[first].where);
    }
    free(e);
    return bad ? -1 : 0;
}

/* ---- output buffer */

static void buf_reserve(struct tokenfile_buf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->failed)
        return;
    if (more < b->cap - b->n)
        return;
    if (more > TOKENFILE_MAX_BYTES * 4u) {
        b->failed = true;
        return;
    }
    cap = b->cap ? b->cap : 4096;
    while (cap - b->n <= more)
        cap *= 2;
    /* not realloc: the old block holds seeds and must be wiped */
    p = malloc(cap);
    if (!p) {
        b->failed = true;
        return;
    }
    if (b->p) {
        memcpy(p, b->p, b->n + 1);
        secret_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = p;
    b->cap = cap;
}

void tokenfile_buf_add(struct tokenfile_buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void tokenfile_buf_str(struct tokenfile_buf *b, const char *s)
{
    tokenfile_buf_add(b, s, strlen(s));
}

void tokenfile_buf_printf(struct tokenfile_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        b->failed = true;
    else
        tokenfile_buf_add(b, tmp, (size_t)n);
    secret_wipe(tmp, sizeof(tmp));
}

void tokenfile_buf_wipe(struct tokenfile_buf *b)
{
    if (b->p)
        secret_wipe(b->p, b->cap);
    free(b->p);
    memset(b, 0, sizeof(*b));
}

int tokenfile_buf_take(struct tokenfile_buf *b, char **out, size_t *len, char **err)
{
    if (b->failed || !b->p) {
        buf_reserve(b, 1);
        if (b->failed) {
            tokenfile_buf_wipe(b);
            return err_set(err, "out of memory");
        }
        b->p[0] = '\0';
    }
    *out = b->p;
    *len = b->n;
    memset(b, 0, sizeof(*b));
    return 0;
}
