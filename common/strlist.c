#include "strlist.h"

#include <stdio.h>

void strlist_join(const json_t *arr, size_t shown, bool quoted, char *out, size_t size)
{
    const char *q = quoted ? "\"" : "";
    size_t used = 0, n = json_array_size(arr);
    int w;

    out[0] = '\0';
    for (size_t i = 0; i < n && i < shown; i++) {
        w = snprintf(out + used, size - used, "%s%s%.64s%s", i ? ", " : "", q,
                     json_string_value(json_array_get(arr, i)), q);
        if (w < 0 || (size_t)w >= size - used)
            return;
        used += (size_t)w;
    }
    if (n > shown)
        snprintf(out + used, size - used, " and %zu more", n - shown);
}
