/*
 * mfa-http-fetch [options] URL...: fetches every URL concurrently with
 * httpclient on one libevent loop, while a 10 ms timer counts ticks, and
 * prints one line per response as it ends, then the loop's tick count:
 *
 *   response idx=0 status=200 body_len=12 elapsed=0.013 json={"a":1} error=-
 *   done ticks=57 max_gap_ms=11 total=0.571 requests=1 failures=0 in_flight=0
 *
 * `error=` is last on its line and runs to its end ("-": none). Options:
 *   --ca F --cert F --key F     mutual TLS (any TLS option: an https-only client)
 *   --ciphers S --ciphersuites S --tls13
 *   --timeout-ms N              each request's deadline (0: the default)
 *   --connect-timeout-ms N      connect + handshake deadline
 *   --max-body N                response body limit in bytes
 *   -X METHOD  -d BODY  -H "Name: value" (repeatable)
 *   --json                      httpclient_json(): BODY is JSON; prints json=
 *   --print-body                adds body=<text, non-printables as '.'>
 *   --close-after-first         frees the client from the first callback
 * Exit status: 0 when every request got an HTTP status, 1 when some failed,
 * 2 on a usage or set-up error. For the integration tests.
 */
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpclient.h"
#include "toolkit.h"

#define MAX_HEADERS 16

struct fetch {
    struct event_base *base;
    struct httpclient *client;
    int total, finished, failed;
    bool print_body, close_after_first;
    struct tk_ticker tick;
};

struct slot {
    struct fetch *f;
    int idx;
};

static void print_text(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        putchar(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '.');
}

static void report(struct slot *s, const struct httpclient_response *resp, json_t *json,
                   const char *json_error, bool is_json)
{
    struct fetch *f = s->f;

    printf("response idx=%d status=%ld body_len=%zu elapsed=%.3f", s->idx, resp->status,
           resp->body_len, resp->elapsed_s);
    if (is_json) {
        char *text =
            json ? json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;

        printf(" json=%s", text ? text : "-");
        if (json_error)
            printf(" json_error=\"%s\"", json_error);
        free(text);
    }
    if (f->print_body) {
        printf(" body=");
        print_text(resp->body, resp->body_len);
    }
    printf(" error=%s\n", resp->error ? resp->error : "-");
    fflush(stdout);
    if (resp->error)
        f->failed++;
    f->finished++;
    free(s);
    if (f->close_after_first && f->client) {
        struct httpclient *c = f->client;

        f->client = NULL;
        httpclient_free(c); /* the others end with "client closed" */
    }
    if (f->finished == f->total)
        event_base_loopbreak(f->base);
}

static void on_response(void *arg, const struct httpclient_response *resp)
{
    report(arg, resp, NULL, NULL, false);
}

static void on_json(void *arg, const struct httpclient_response *resp, json_t *json,
                    const char *json_error)
{
    report(arg, resp, json, json_error, true);
}

static int parse_int(const char *s, long long max, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--ca F] [--cert F] [--key F] [--ciphers S] [--ciphersuites S] "
            "[--tls13] [--timeout-ms N] [--connect-timeout-ms N] [--max-body N] [-X METHOD] "
            "[-d BODY] [-H HEADER]... [--json] [--print-body] [--close-after-first] URL...\n",
            prog);
}

int main(int argc, char **argv)
{
    enum {
        OPT_CA = 256,
        OPT_CERT,
        OPT_KEY,
        OPT_CIPHERS,
        OPT_SUITES,
        OPT_TLS13,
        OPT_TIMEOUT,
        OPT_CONNECT,
        OPT_MAXBODY,
        OPT_JSON,
        OPT_PRINT,
        OPT_CLOSE,
    };
    static const struct option opts[] = {
        { "ca", required_argument, NULL, OPT_CA },
        { "cert", required_argument, NULL, OPT_CERT },
        { "key", required_argument, NULL, OPT_KEY },
        { "ciphers", required_argument, NULL, OPT_CIPHERS },
        { "ciphersuites", required_argument, NULL, OPT_SUITES },
        { "tls13", no_argument, NULL, OPT_TLS13 },
        { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
        { "connect-timeout-ms", required_argument, NULL, OPT_CONNECT },
        { "max-body", required_argument, NULL, OPT_MAXBODY },
        { "json", no_argument, NULL, OPT_JSON },
        { "print-body", no_argument, NULL, OPT_PRINT },
        { "close-after-first", no_argument, NULL, OPT_CLOSE },
        { "method", required_argument, NULL, 'X' },
        { "data", required_argument, NULL, 'd' },
        { "header", required_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    struct httpclient_tls tls = { 0 };
    bool use_tls = false, use_json = false;
    const char *method = NULL, *data = NULL;
    const char *headers[MAX_HEADERS + 1] = { NULL };
    int nheaders = 0, timeout_ms = 0, connect_ms = HTTPCLIENT_CONNECT_TIMEOUT_MS;
    long long v, max_body = HTTPCLIENT_MAX_BODY;
    struct fetch f = { 0 };
    json_t *json_body = NULL;
    struct httpclient_stats st = { 0 };
    char *err = NULL;
    double start;
    int c, rc = 2;

    while ((c = getopt_long(argc, argv, "X:d:H:", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CA:
            tls.ca_file = optarg;
            use_tls = true;
            break;
        case OPT_CERT:
            tls.cert_file = optarg;
            use_tls = true;
            break;
        case OPT_KEY:
            tls.key_file = optarg;
            use_tls = true;
            break;
        case OPT_CIPHERS:
            tls.ciphers = optarg;
            use_tls = true;
            break;
        case OPT_SUITES:
            tls.ciphersuites = optarg;
            use_tls = true;
            break;
        case OPT_TLS13:
            tls.min_tls = HTTPCLIENT_TLS_1_3;
            use_tls = true;
            break;
        case OPT_TIMEOUT:
        case OPT_CONNECT:
            if (parse_int(optarg, INT_MAX, &v) < 0) {
                fprintf(stderr, "mfa-http-fetch: bad number of milliseconds \"%s\"\n", optarg);
                return 2;
            }
            *(c == OPT_TIMEOUT ? &timeout_ms : &connect_ms) = (int)v;
            break;
        case OPT_MAXBODY:
            if (parse_int(optarg, LLONG_MAX, &max_body) < 0) {
                fprintf(stderr, "mfa-http-fetch: bad size \"%s\"\n", optarg);
                return 2;
            }
            break;
        case OPT_JSON:
            use_json = true;
            break;
        case OPT_PRINT:
            f.print_body = true;
            break;
        case OPT_CLOSE:
            f.close_after_first = true;
            break;
        case 'X':
            method = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'H':
            if (nheaders == MAX_HEADERS) {
                fprintf(stderr, "mfa-http-fetch: at most %d headers\n", MAX_HEADERS);
                return 2;
            }
            headers[nheaders++] = optarg;
            break;
        default:
            usage(argv[0]);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(argv[0]);
        return 2;
    }
    if (!method)
        method = data ? "POST" : "GET";
    if (use_json && data) {
        json_error_t jerr;

        json_body = json_loads(data, JSON_DECODE_ANY, &jerr);
        if (!json_body) {
            fprintf(stderr, "mfa-http-fetch: -d is not JSON: %s\n", jerr.text);
            return 2;
        }
    }

    f.base = event_base_new();
    if (!f.base) {
        fprintf(stderr, "mfa-http-fetch: event_base_new failed\n");
        goto out;
    }
    f.client = httpclient_new(f.base, use_tls ? &tls : NULL, &err);
    if (!f.client) {
        fprintf(stderr, "mfa-http-fetch: %s\n", err);
        goto out;
    }
    if (httpclient_set_limits(f.client, (size_t)max_body, connect_ms, &err) < 0) {
        fprintf(stderr, "mfa-http-fetch: %s\n", err);
        goto out;
    }
    if (tk_ticker_start(&f.tick, f.base) < 0) {
        fprintf(stderr, "mfa-http-fetch: cannot add the tick timer\n");
        goto out;
    }
    start = tk_now();
    for (int i = optind; i < argc; i++) {
        struct slot *s = malloc(sizeof(*s));
        int r;

        if (!s) {
            fprintf(stderr, "mfa-http-fetch: out of memory\n");
            goto out;
        }
        s->f = &f;
        s->idx = i - optind;
        if (use_json)
            r = httpclient_json(f.client, method, argv[i], json_body, timeout_ms, on_json, s, &err);
        else
            r = httpclient_request(f.client, method, argv[i], nheaders ? headers : NULL, data,
                                   data ? strlen(data) : 0, timeout_ms, on_response, s, &err);
        if (r < 0) {
            fprintf(stderr, "mfa-http-fetch: %s: %s\n", argv[i], err);
            free(s);
            goto out;
        }
        f.total++;
    }
    event_base_dispatch(f.base);
    if (f.client)
        httpclient_get_stats(f.client, &st);
    printf("done ticks=%d max_gap_ms=%.0f total=%.3f requests=%llu failures=%llu in_flight=%zu\n",
           f.tick.ticks, f.tick.max_gap * 1000, tk_now() - start, (unsigned long long)st.requests,
           (unsigned long long)st.failures, st.in_flight);
    rc = f.failed ? 1 : 0;
out:
    tk_ticker_free(&f.tick);
    httpclient_free(f.client);
    if (f.base)
        event_base_free(f.base);
    json_decref(json_body);
    free(err);
    return rc;
}
