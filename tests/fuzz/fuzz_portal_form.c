/*
 * Fuzz target for the portal's form bodies (node/portal_form.c): every
 * POST under /portal/ goes through portal_form_parse() before anything else
 * reads it. The input is the body, in a heap buffer of exactly its size
 * with no NUL after it (as evbuffer_pullup() hands it over), so ASan sees
 * any read past the end.
 *
 * Besides ASan/UBSan findings and leaks the target aborts when the parser
 * breaks its contract: a return other than 0 or -1, an error without a
 * message or a message without an error, a refused body that left fields
 * behind, or an accepted one with too many fields, an empty, over-long or
 * repeated name, an over-long value, or a value portal_form_get() does not
 * find. Seeds: tests/fuzz/corpus/portal_form/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portal_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct portal_form *f)
{
    if (f->n > PORTAL_FORM_FIELDS)
        abort();
    for (size_t i = 0; i < f->n; i++) {
        size_t nlen = strnlen(f->f[i].name, sizeof(f->f[i].name));
        size_t vlen = strnlen(f->f[i].value, sizeof(f->f[i].value));

        if (nlen == 0 || nlen > PORTAL_FORM_NAME_MAX || vlen > PORTAL_FORM_VALUE_MAX)
            abort();
        if (portal_form_get(f, f->f[i].name) != f->f[i].value) /* names are unique */
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    struct portal_form *f = malloc(sizeof(*f));
    char *err = NULL;
    int rc;

    if (!body || !f)
        abort();
    if (size)
        memcpy(body, data, size);
    rc = portal_form_parse(body, size, f, &err);
    if ((rc != 0 && rc != -1) || (rc == 0) != (err == NULL) || (err && !*err))
        abort();
    if (rc < 0 && f->n != 0)
        abort();
    if (rc == 0)
        check(f);
    free(err);
    free(f);
    free(body);
    return 0;
}
