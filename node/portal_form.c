/*
 * The portal's form bodies: application/x-www-form-urlencoded, parsed by
 * hand within fixed bounds (see portal_priv.h). Every POST of the portal
 * goes through here before anything else reads it, and the fuzz target
 * tests/fuzz/fuzz_portal_form.c feeds it.
 */
#include <string.h>

#include "b64.h"
#include "errmsg.h"
#include "portal_priv.h"
#include "secrets.h"

/*
 * Decodes <len> bytes at <in> into <out> of <size> (NUL added): '+' is a
 * space, %XX a byte. Returns the decoded length, -1 for a malformed escape
 * or a NUL, -2 when it does not fit.
 */
static long decode(const char *in, size_t len, char *out, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = len - i > 2 ? b16_digit(in[i + 1]) : -1;
            int lo = len - i > 2 ? b16_digit(in[i + 2]) : -1;

            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0)
            return -1;
        if (o + 1 >= size)
            return -2;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

int portal_form_parse(const char *body, size_t len, struct portal_form *f, char **err)
{
    size_t pos = 0;
    const char *why;
    long rc;

    memset(f, 0, sizeof(*f));
    if (len > PORTAL_FORM_BODY_MAX)
        return err_set(err, "the form is larger than %d bytes", PORTAL_FORM_BODY_MAX);
    while (pos < len) {
        const char *pair = body + pos, *amp = memchr(pair, '&', len - pos), *eq;
        size_t plen = amp ? (size_t)(amp - pair) : len - pos, nlen;

        pos += plen + 1;
        if (plen == 0)
            continue; /* "a=1&&b=2" and a trailing '&': empty pairs are skipped */
        if (f->n == PORTAL_FORM_FIELDS) {
            why = "the form has too many fields";
            goto fail;
        }
        eq = memchr(pair, '=', plen);
        nlen = eq ? (size_t)(eq - pair) : plen;
        rc = decode(pair, nlen, f->f[f->n].name, sizeof(f->f[f->n].name));
        if (rc <= 0) {
            why = rc == 0    ? "a field has no name"
                  : rc == -2 ? "a field name is too long"
                             : "a field name is malformed (bad %-escape or NUL)";
            goto fail;
        }
        for (size_t i = 0; i < f->n; i++) {
            if (strcmp(f->f[i].name, f->f[f->n].name) == 0) {
                why = "a field is given twice";
                goto fail;
            }
        }
        rc = eq ? decode(eq + 1, plen - nlen - 1, f->f[f->n].value, sizeof(f->f[f->n].value)) : 0;
        if (rc < 0) {
            why = rc == -2 ? "a field is too long" : "a field is malformed (bad %-escape or NUL)";
            goto fail;
        }
        f->n++;
    }
    return 0;
fail:
    secret_wipe(f, sizeof(*f));
    return err_set(err, "%s", why);
}

const char *portal_form_get(const struct portal_form *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->f[i].name, name) == 0)
            return f->f[i].value;
    }
    return NULL;
}
