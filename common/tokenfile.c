/* Placeholder: the helper replaces it. */
#include "tokenfile.h"

#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "secrets.h"

int token_set_add(struct token_set *s, const struct token_rec *r, char **err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct token_rec *v = realloc(s->v, cap * sizeof(*v));

        if (!v)
            return err_set(err, "out of memory");
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

enum tokenfile_format tokenfile_detect(const char *text, size_t len)
{
    (void)text;
    (void)len;
    return TOKENFILE_UNKNOWN;
}

int tokenfile_read_csv(const char *text, size_t len, struct token_set *out, char **err)
{
    (void)text;
    (void)len;
    (void)out;
    return err_set(err, "not yet");
}

int tokenfile_read_pskc(const char *text, size_t len, const char *passphrase,
                        struct token_set *out, char **err)
{
    (void)text;
    (void)len;
    (void)passphrase;
    (void)out;
    return err_set(err, "not yet");
}

int tokenfile_write_csv(const struct token_set *s, char **out, size_t *len, char **err)
{
    (void)s;
    (void)out;
    (void)len;
    return err_set(err, "not yet");
}

int tokenfile_write_pskc(const struct token_set *s, const char *passphrase, char **out,
                         size_t *len, char **err)
{
    (void)s;
    (void)passphrase;
    (void)out;
    (void)len;
    return err_set(err, "not yet");
}
