/*
 * Connection strings for pgconn; see pgconn.h.
 *
 * A daemon's loop must not wait on a DNS lookup, so the strings built here
 * carry a numeric hostaddr, and pgconn_check_conninfo() refuses a string
 * whose host libpq would resolve. The built string also carries
 * tcp_user_timeout and keepalives so that the kernel reports a peer that
 * vanished without a reset. Values are always written single-quoted with \
 * and ' escaped, whatever they hold, so no value can add a keyword.
 */
#include "pgconn.h"

#include <libpq-fe.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "errmsg.h"

#define TCP_USER_TIMEOUT_MAX_MS 3600000

/* Keys pgconn_conninfo() sets from its arguments; <extra> may not. */
static const char *const fixed_keys[] = {
    "hostaddr",         "port",       "dbname",          "user",
    "tcp_user_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count",
};

/* True when <s> is a numeric IPv4 or IPv6 address (no lookup is made). */
static bool numeric_host(const char *s)
{
    struct addrinfo hints = { 0 }, *ai = NULL;

    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(s, NULL, &hints, &ai) != 0)
        return false;
    freeaddrinfo(ai);
    return true;
}

/* Output cursor over the caller's buffer; <overflow> once it did not fit. */
struct out {
    char *buf;
    size_t size, len;
    bool overflow;
};

static void put_char(struct out *o, char ch)
{
    if (o->len + 1 >= o->size) {
        o->overflow = true;
        return;
    }
    o->buf[o->len++] = ch;
    o->buf[o->len] = '\0';
}

/* Appends " key='value'" (no leading space for the first pair). */
static void put_pair(struct out *o, const char *key, const char *value)
{
    if (o->len > 0)
        put_char(o, ' ');
    for (const char *p = key; *p; p++)
        put_char(o, *p);
    put_char(o, '=');
    put_char(o, '\'');
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '\'')
            put_char(o, '\\');
        put_char(o, *p);
    }
    put_char(o, '\'');
}

static void put_int(struct out *o, const char *key, int value)
{
    char num[16];

    snprintf(num, sizeof(num), "%d", value);
    put_pair(o, key, num);
}

static const char *opt_value(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    }
    return NULL;
}

/* Parses <conninfo> with libpq; NULL with *err when it does not parse. */
static PQconninfoOption *parse(const char *conninfo, const char *what, char **err)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    size_t n;

    if (opts)
        return opts;
    if (!msg) {
        err_set(err, "%s: out of memory", what);
        return NULL;
    }
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    err_set(err, "%s: %s", what, msg);
    PQfreemem(msg);
    return NULL;
}

int pgconn_conninfo(char *buf, size_t size, const char *hostaddr, int port, const char *dbname,
                    const char *user, const char *extra, int tcp_user_timeout_ms, char **err)
{
    PQconninfoOption *opts = NULL;
    struct out o = { buf, size, 0, false };
    int secs;

    if (!buf || size == 0)
        return err_set(err, "conninfo: no buffer");
    buf[0] = '\0';
    if (!hostaddr || !numeric_host(hostaddr))
        return err_set(err,
                       "conninfo: hostaddr \"%s\" is not a numeric IP address (a host name "
                       "would need a DNS lookup, which blocks)",
                       hostaddr ? hostaddr : "");
    if (port < 1 || port > 65535)
        return err_set(err, "conninfo: port %d is not in 1-65535", port);
    if (tcp_user_timeout_ms < 1 || tcp_user_timeout_ms > TCP_USER_TIMEOUT_MAX_MS)
        return err_set(err, "conninfo: tcp_user_timeout %d ms is not in 1-%d", tcp_user_timeout_ms,
                       TCP_USER_TIMEOUT_MAX_MS);
    if ((dbname && !*dbname) || (user && !*user))
        return err_set(err, "conninfo: empty dbname or user (pass NULL for libpq's default)");
    if (extra) {
        const char *h;

        opts = parse(extra, "conninfo: extra options", err);
        if (!opts)
            return -1;
        for (size_t i = 0; i < MFA_ARRAY_LEN(fixed_keys); i++) {
            if (opt_value(opts, fixed_keys[i])) {
                err_set(err, "conninfo: extra options may not set %s", fixed_keys[i]);
                goto fail;
            }
        }
        h = opt_value(opts, "host");
        if (h && (!*h || strchr(h, ','))) {
            err_set(err, "conninfo: extra options may set one host name, not \"%s\"", h);
            goto fail;
        }
    }

    secs = (tcp_user_timeout_ms + 999) / 1000;
    if (!opt_value(opts, "host"))
        put_pair(&o, "host", hostaddr);
    put_pair(&o, "hostaddr", hostaddr);
    put_int(&o, "port", port);
    if (dbname)
        put_pair(&o, "dbname", dbname);
    if (user)
        put_pair(&o, "user", user);
    if (!opt_value(opts, "connect_timeout"))
        put_int(&o, "connect_timeout", secs < 2 ? 2 : secs);
    put_int(&o, "tcp_user_timeout", tcp_user_timeout_ms);
    put_int(&o, "keepalives", 1);
    put_int(&o, "keepalives_idle", secs / 2 < 1 ? 1 : secs / 2);
    put_int(&o, "keepalives_interval", secs / 6 < 1 ? 1 : secs / 6);
    put_int(&o, "keepalives_count", 3);
    if (!opt_value(opts, "gssencmode"))
        put_pair(&o, "gssencmode", "disable");
    for (const PQconninfoOption *p = opts; p && p->keyword; p++) {
        if (p->val)
            put_pair(&o, p->keyword, p->val);
    }
    if (o.overflow) {
        err_set(err, "conninfo: does not fit in %zu bytes", size);
        goto fail;
    }
    PQconninfoFree(opts);
    return 0;

fail:
    buf[0] = '\0';
    PQconninfoFree(opts);
    return -1;
}

/*
 * Copies the <i>th element of the comma-separated <list> into <buf>; returns
 * false when the list has fewer elements.
 */
static bool list_item(const char *list, size_t i, char *buf, size_t size)
{
    const char *p = list, *end;

    for (; i > 0; i--) {
        p = strchr(p, ',');
        if (!p)
            return false;
        p++;
    }
    end = strchr(p, ',');
    if (!end)
        end = p + strlen(p);
    snprintf(buf, size, "%.*s", (int)(end - p), p);
    return true;
}

int pgconn_check_conninfo(const char *conninfo, char **err)
{
    PQconninfoOption *opts;
    const char *host, *hostaddr, *service;
    char h[256], a[256];

    if (!conninfo)
        return err_set(err, "conninfo: missing");
    opts = parse(conninfo, "conninfo", err);
    if (!opts)
        return -1;
    host = opt_value(opts, "host");
    hostaddr = opt_value(opts, "hostaddr");
    if (!host)
        host = getenv("PGHOST");
    if (!hostaddr)
        hostaddr = getenv("PGHOSTADDR");
    service = opt_value(opts, "service");
    if (!service)
        service = getenv("PGSERVICE");
    if (service && *service && !(hostaddr && *hostaddr)) {
        err_set(err,
                "conninfo: service \"%s\" may name a host that needs a DNS lookup, "
                "which blocks; give hostaddr= as well",
                service);
        PQconninfoFree(opts);
        return -1;
    }
    for (size_t i = 0; host && list_item(host, i, h, sizeof(h)); i++) {
        if (hostaddr && list_item(hostaddr, i, a, sizeof(a)) && a[0])
            continue;
        if (!h[0] || h[0] == '/' || h[0] == '@' || numeric_host(h))
            continue;
        err_set(err,
                "conninfo: host \"%s\" would need a DNS lookup, which blocks; give its "
                "address in hostaddr= (pgconn_conninfo() does)",
                h);
        PQconninfoFree(opts);
        return -1;
    }
    PQconninfoFree(opts);
    return 0;
}
