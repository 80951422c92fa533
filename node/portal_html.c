/*
 * The portal's page buffer and its HTML escaping (portal_priv.h). Every
 * value from a user or the database reaches a page through pbuf_escape(),
 * so a display name such as "<script>" is shown, never run.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portal_priv.h"
#include "secrets.h"

/* Makes room for <more> bytes and a NUL; false (and oom) when it cannot. */
static bool reserve(struct pbuf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    /* No realloc: the old block may hold a seed and must be wiped, not just freed. */
    p = malloc(cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    if (b->p) {
        memcpy(p, b->p, b->len + 1);
        secret_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pbuf_add(struct pbuf *b, const char *s, size_t len)
{
    if (!reserve(b, len))
        return;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void pbuf_puts(struct pbuf *b, const char *s)
{
    pbuf_add(b, s, strlen(s));
}

void pbuf_printf(struct pbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pbuf_escape(struct pbuf *b, const char *s)
{
    const char *run = s;

    for (; *s; s++) {
        const char *ent = *s == '&'    ? "&amp;"
                          : *s == '<'  ? "&lt;"
                          : *s == '>'  ? "&gt;"
                          : *s == '"'  ? "&quot;"
                          : *s == '\'' ? "&#39;"
                                       : NULL;

        if (!ent)
            continue;
        pbuf_add(b, run, (size_t)(s - run));
        pbuf_puts(b, ent);
        run = s + 1;
    }
    pbuf_add(b, run, (size_t)(s - run));
}

void pbuf_free(struct pbuf *b)
{
    if (b->p)
        secret_wipe(b->p, b->cap);
    free(b->p);
    *b = (struct pbuf){ 0 };
}
