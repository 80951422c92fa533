/*
 * Prometheus text exposition format (version 0.0.4) for the /metrics
 * endpoints: each family once with its # HELP and # TYPE lines, then its
 * samples. Label values are escaped as the format requires.
 */
#ifndef MFA_METRICS_H
#define MFA_METRICS_H

#include <event2/buffer.h>
#include <event2/http.h>

enum metric_type {
    METRIC_COUNTER = 0,
    METRIC_GAUGE,
};

/* Writes the # HELP and # TYPE lines of family <name>. */
void metrics_family(struct evbuffer *out, const char *name, enum metric_type type,
                    const char *help);

/*
 * Writes one sample of <name>. <labels> alternate names and values and end
 * with NULL (pass just NULL for none): metrics_sample(out, "x", 1, "role",
 * "primary", NULL).
 */
void metrics_sample(struct evbuffer *out, const char *name, double value, ...)
    __attribute__((sentinel));

/* A family with one unlabelled sample: the common case. */
void metrics_single(struct evbuffer *out, const char *name, enum metric_type type, const char *help,
                    double value);

/* Replies 200 with <out>'s contents as text/plain; version=0.0.4. */
void metrics_reply(struct evhttp_request *req, struct evbuffer *out);

#endif
