/*
 * Fuzz target for the token seed file readers (common/tokenfile.c,
 * tokenfile_pskc.c): every input goes to the CSV reader and to the PSKC
 * reader with a fixed passphrase ("qwerty", the one of the RFC 6030 Figure 7
 * seed, so encrypted inputs reach the MAC check and the decryption).
 *
 * The input is copied to a heap buffer of exactly its size (no NUL after
 * it), so ASan sees any read past the end. Besides ASan/UBSan findings the
 * target aborts when a result breaks the contract of tokenfile.h: a return
 * value other than 0/-1, an error without a message or a message without an
 * error, a failed read that changed the set, or a record outside the limits.
 * What is read is written back as CSV and read again, which must give the
 * same records. Seeds: tests/fuzz/corpus/tokenfile/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_set(const struct token_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct token_rec *r = &s->v[i];

        if (r->seed_len < TOKEN_SEED_MIN || r->seed_len > TOKEN_SEED_MAX || r->digits < 6 ||
            r->digits > 8 || (r->kind != TOKEN_TOTP && r->kind != TOKEN_HOTP) ||
            (r->kind == TOKEN_TOTP && (r->period < 10 || r->period > 300)) || !r->serial[0] ||
            !memchr(r->serial, '\0', sizeof(r->serial)) || !memchr(r->user, '\0', sizeof(r->user)))
            abort();
    }
}

/* Writes <s> as CSV and reads it back: the same records must come out. */
static void round_trip(const struct token_set *s)
{
    struct token_set again = { 0 };
    char *text = NULL, *err = NULL;
    size_t len = 0;

    if (tokenfile_write_csv(s, &text, &len, &err) != 0 || err)
        abort();
    if (tokenfile_read_csv(text, len, &again, &err) != 0 || err || again.n != s->n)
        abort();
    for (size_t i = 0; i < s->n; i++) {
        const struct token_rec *a = &s->v[i], *b = &again.v[i];

        if (strcmp(a->serial, b->serial) || a->kind != b->kind || a->seed_len != b->seed_len ||
            memcmp(a->seed, b->seed, a->seed_len) || strcmp(a->user, b->user) ||
            a->digits != b->digits || strcmp(a->algorithm, b->algorithm))
            abort();
    }
    free(text);
    token_set_free(&again);
}

static void read_one(const char *buf, size_t size, bool pskc)
{
    struct token_set s = { 0 };
    char *err = NULL;
    int rc = pskc ? tokenfile_read_pskc(buf, size, "qwerty", &s, &err)
                  : tokenfile_read_csv(buf, size, &s, &err);

    if ((rc != 0 && rc != -1 && !(pskc && rc == TOKENFILE_WRONG_PASSPHRASE)) ||
        (rc < 0) != (err != NULL) || (rc < 0 && s.n != 0))
        abort();
    check_set(&s);
    if (rc == 0 && s.n > 0)
        round_trip(&s);
    free(err);
    token_set_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    (void)tokenfile_detect(buf, size);
    read_one(buf, size, false);
    read_one(buf, size, true);
    free(buf);
    return 0;
}
