/*
 * Prometheus text format; see metrics.h. Values are written with %.17g so
 * counters up to 2^53 stay exact.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stddef.h>

#include "httpserver.h"

static const char *const type_names[] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
};

/* Writes <s> escaping backslash, newline and (in label values) the quote. */
static void put_escaped(struct evbuffer *out, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else if (*s == '"' && quote)
            evbuffer_add(out, "\\\"", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

void metrics_family(struct evbuffer *out, const char *name, enum metric_type type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    put_escaped(out, help, 0);
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type_names[type]);
}

void metrics_sample(struct evbuffer *out, const char *name, double value, ...)
{
    const char *label;
    va_list ap;
    int n = 0;

    evbuffer_add_printf(out, "%s", name);
    va_start(ap, value);
    while ((label = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);

        evbuffer_add_printf(out, "%s%s=\"", n++ ? "," : "{", label);
        put_escaped(out, v ? v : "", 1);
        evbuffer_add(out, "\"", 1);
    }
    va_end(ap);
    evbuffer_add_printf(out, "%s %.17g\n", n ? "}" : "", value);
}

void metrics_single(struct evbuffer *out, const char *name, enum metric_type type, const char *help,
                    double value)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, value, NULL);
}

void metrics_reply(struct evhttp_request *req, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);

    http_reply(req, 200, "text/plain; version=0.0.4", evbuffer_pullup(out, (ev_ssize_t)len), len);
}
