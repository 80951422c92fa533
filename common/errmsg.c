/*
 * Error messages for the `char **err` contract; see errmsg.h.
 */
#include "errmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "mem.h"

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

int err_set(char **err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return -1;
    mfa_free(*err);
    va_start(ap, fmt);
    *err = vformat(fmt, ap);
    va_end(ap);
    return -1;
}

int err_prefix(char **err, const char *fmt, ...)
{
    va_list ap;
    char *prefix, *joined = NULL;

    if (!err)
        return -1;
    va_start(ap, fmt);
    prefix = vformat(fmt, ap);
    va_end(ap);
    if (prefix && asprintf(&joined, "%s: %s", prefix, *err ? *err : "error") < 0)
        joined = NULL;
    free(prefix);
    if (joined) {
        free(*err);
        *err = joined;
    }
    return -1;
}
