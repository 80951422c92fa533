/*
 * mfa-sms-send [options] PHONE CODE [MINUTES]: sends one message (or
 * --count N of them at once) through an SMS provider of mfa-node
 * (node/sms.h) on one libevent loop, while a 10 ms timer counts ticks, and
 * prints one line per message as it ends, then the loop's figures:
 *
 *   result idx=0 ok=1 elapsed=0.013 error=-
 *   done ticks=57 max_gap_ms=11 total=0.571 sent=1 failed=0 in_flight=0
 *
 * `error=` is last on its line and runs to its end ("-": none). Options:
 *   --kind file|http|exec   (default http)
 *   --template T            message text template
 *   --file PATH             file: the outbox
 *   --url URL --body T --content-type C --auth-header H --ca FILE    http
 *   --command PATH          exec
 *   --timeout-ms N --retries N --count N
 *   --free-after-ms N       frees the provider N ms after sending
 * Exit status: 0 when every message was sent, 1 when some failed, 2 on a
 * usage or set-up error (the message on stderr). For the integration tests.
 */
#include <event2/event.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sms.h"
#include "toolkit.h"

#define MAX_COUNT  64
#define MAX_NUMBER 100000000 /* (node/limits.h shadows <limits.h> here) */

struct run {
    struct event_base *base;
    struct sms_provider *p;
    int total, finished, failed;
    struct tk_ticker tick;
    double start;
};

struct slot {
    struct run *r;
    int idx;
};

static void on_done(void *arg, bool ok, const char *error)
{
    struct slot *s = arg;
    struct run *r = s->r;

    printf("result idx=%d ok=%d elapsed=%.3f error=%s\n", s->idx, ok ? 1 : 0, tk_now() - r->start,
           ok ? "-" : error);
    fflush(stdout);
    if (!ok)
        r->failed++;
    r->finished++;
    if (r->finished == r->total)
        event_base_loopbreak(r->base);
}

static void on_free(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;

    (void)fd;
    (void)what;
    sms_free(r->p); /* the rest end with "shutting down", from inside */
    r->p = NULL;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0 || v > MAX_NUMBER)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--kind file|http|exec] [--template T] [--file PATH] [--url URL] "
            "[--body T] [--content-type C] [--auth-header H] [--ca FILE] [--command PATH] "
            "[--timeout-ms N] [--retries N] [--count N] [--free-after-ms N] PHONE CODE "
            "[MINUTES]\n",
            prog);
}

int main(int argc, char **argv)
{
    enum {
        OPT_KIND = 256,
        OPT_TEMPLATE,
        OPT_FILE,
        OPT_URL,
        OPT_BODY,
        OPT_CTYPE,
        OPT_AUTH,
        OPT_CA,
        OPT_COMMAND,
        OPT_TIMEOUT,
        OPT_RETRIES,
        OPT_COUNT,
        OPT_FREE,
    };
    static const struct option opts[] = {
        { "kind", required_argument, NULL, OPT_KIND },
        { "template", required_argument, NULL, OPT_TEMPLATE },
        { "file", required_argument, NULL, OPT_FILE },
        { "url", required_argument, NULL, OPT_URL },
        { "body", required_argument, NULL, OPT_BODY },
        { "content-type", required_argument, NULL, OPT_CTYPE },
        { "auth-header", required_argument, NULL, OPT_AUTH },
        { "ca", required_argument, NULL, OPT_CA },
        { "command", required_argument, NULL, OPT_COMMAND },
        { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
        { "retries", required_argument, NULL, OPT_RETRIES },
        { "count", required_argument, NULL, OPT_COUNT },
        { "free-after-ms", required_argument, NULL, OPT_FREE },
        { NULL, 0, NULL, 0 },
    };
    struct sms_settings s = { .kind = SMS_HTTP };
    struct run r = { 0 };
    struct slot slots[MAX_COUNT];
    struct event *freer = NULL;
    struct sms_stats st = { 0 };
    int count = 1, minutes = 5, free_after = -1, *target, c, rc = 2;
    char *err = NULL;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_KIND:
            if (sms_kind_parse(optarg, &s.kind) < 0) {
                fprintf(stderr, "mfa-sms-send: unknown kind \"%s\"\n", optarg);
                return 2;
            }
            break;
        case OPT_TEMPLATE:
            s.template = optarg;
            break;
        case OPT_FILE:
            s.file_path = optarg;
            break;
        case OPT_URL:
            s.http_url = optarg;
            break;
        case OPT_BODY:
            s.http_body = optarg;
            break;
        case OPT_CTYPE:
            s.http_content_type = optarg;
            break;
        case OPT_AUTH:
            s.http_auth_header = optarg;
            break;
        case OPT_CA:
            s.http_ca_file = optarg;
            break;
        case OPT_COMMAND:
            s.exec_command = optarg;
            break;
        case OPT_TIMEOUT:
        case OPT_RETRIES:
        case OPT_COUNT:
        case OPT_FREE:
            target = c == OPT_TIMEOUT   ? &s.timeout_ms
                     : c == OPT_RETRIES ? &s.retries
                     : c == OPT_COUNT   ? &count
                                        : &free_after;
            if (parse_int(optarg, target) < 0) {
                fprintf(stderr, "mfa-sms-send: bad number \"%s\"\n", optarg);
                return 2;
            }
            break;
        default:
            usage(argv[0]);
            return 2;
        }
    }
    if (argc - optind < 2 || argc - optind > 3 || count < 1 || count > MAX_COUNT ||
        (argc - optind == 3 && parse_int(argv[optind + 2], &minutes) < 0)) {
        usage(argv[0]);
        return 2;
    }

    r.base = event_base_new();
    if (!r.base) {
        fprintf(stderr, "mfa-sms-send: event_base_new failed\n");
        goto out;
    }
    r.p = sms_new(r.base, &s, &err);
    if (!r.p) {
        fprintf(stderr, "mfa-sms-send: %s\n", err);
        goto out;
    }
    if (tk_ticker_start(&r.tick, r.base) < 0) {
        fprintf(stderr, "mfa-sms-send: cannot add the tick timer\n");
        goto out;
    }
    r.start = tk_now();
    for (int i = 0; i < count; i++) {
        slots[i].r = &r;
        slots[i].idx = i;
        if (sms_send(r.p, argv[optind], argv[optind + 1], minutes, on_done, &slots[i], &err) < 0) {
            fprintf(stderr, "mfa-sms-send: %s\n", err);
            goto out;
        }
        r.total++;
    }
    if (free_after >= 0) {
        struct timeval tv = { free_after / 1000, (free_after % 1000) * 1000 };

        freer = evtimer_new(r.base, on_free, &r);
        if (!freer || evtimer_add(freer, &tv) != 0) {
            fprintf(stderr, "mfa-sms-send: cannot add the free timer\n");
            goto out;
        }
    }
    if (r.finished < r.total)
        event_base_dispatch(r.base);
    if (r.p) {
        sms_get_stats(r.p, &st);
    } else {
        st.sent = (uint64_t)(r.finished - r.failed);
        st.failed = (uint64_t)r.failed;
    }
    printf("done ticks=%d max_gap_ms=%.0f total=%.3f sent=%llu failed=%llu in_flight=%zu\n",
           r.tick.ticks, r.tick.max_gap * 1000, tk_now() - r.start, (unsigned long long)st.sent,
           (unsigned long long)st.failed, st.in_flight);
    rc = r.failed ? 1 : 0;
out:
    tk_ticker_free(&r.tick);
    if (freer)
        event_free(freer);
    sms_free(r.p);
    if (r.base)
        event_base_free(r.base);
    free(err);
    return rc;
}
