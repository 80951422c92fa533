/*
 * SMS delivery: the provider interface, message templates and the life of a
 * message in flight; see sms.h. The providers are sms_file.c, sms_http.c and
 * sms_exec.c.
 *
 * Invariants: a request is in its provider's list from an accepted
 * sms_send() until sms_req_finish(), which calls the user's callback exactly
 * once and never from inside sms_send() (providers that know the outcome at
 * once go through sms_req_defer()); stats.in_flight is the length of that
 * list. The rendered text (it holds the code) lives on the stack of
 * sms_send() and is wiped before it returns; only the http provider keeps a
 * copy, the body, for its retries, wiped when the request ends.
 */
#include "sms.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "secrets.h"
#include "sms_priv.h"

#define MINUTES_MAX   1440
#define CODE_MIN_LEN  4
#define CODE_MAX_LEN  16
#define PHONE_MIN_DIG 3
#define PHONE_MAX_DIG 20
#define PH_NAME_MAX   16 /* longest placeholder name looked at */

static const char *const kind_names[] = {
    [SMS_FILE] = "file",
    [SMS_HTTP] = "http",
    [SMS_EXEC] = "exec",
};

const char *sms_kind_name(enum sms_kind k)
{
    return (unsigned)k < MFA_ARRAY_LEN(kind_names) ? kind_names[k] : "unknown";
}

int sms_kind_parse(const char *name, enum sms_kind *out)
{
    for (size_t i = 0; name && i < MFA_ARRAY_LEN(kind_names); i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (enum sms_kind)i;
            return 0;
        }
    }
    return -1;
}

uint64_t sms_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

bool sms_phone_valid(const char *phone)
{
    size_t n;

    if (!phone)
        return false;
    if (*phone == '+')
        phone++;
    n = strspn(phone, "0123456789");
    return phone[n] == '\0' && n >= PHONE_MIN_DIG && n <= PHONE_MAX_DIG;
}

/* ---- templates ---- */

struct sms_var {
    const char *name;
    const char *value;
};

struct outbuf {
    char *p;
    size_t size, len;
    bool full;
};

static void put(struct outbuf *o, const char *s, size_t n)
{
    if (o->full || n >= o->size - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_escaped(struct outbuf *o, enum sms_escape esc, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *c = (const unsigned char *)s; *c && !o->full; c++) {
        char buf[8];

        if (esc == SMS_ESC_FORM) {
            if (isalnum(*c) || strchr("-._~", *c)) {
                put(o, (const char *)c, 1);
            } else {
                buf[0] = '%';
                buf[1] = hex[*c >> 4];
                buf[2] = hex[*c & 15];
                put(o, buf, 3);
            }
            continue;
        }
        /* RFC 8259 §7: quotation mark, reverse solidus and controls are escaped. */
        switch (*c) {
        case '"':
            put(o, "\\\"", 2);
            break;
        case '\\':
            put(o, "\\\\", 2);
            break;
        case '\n':
            put(o, "\\n", 2);
            break;
        case '\r':
            put(o, "\\r", 2);
            break;
        case '\t':
            put(o, "\\t", 2);
            break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(buf, sizeof(buf), "\\u%04x", *c);
                put(o, buf, 6);
            } else {
                put(o, (const char *)c, 1);
            }
        }
    }
}

/* Length of the placeholder name at <s> (just past a '{') when "[a-z]+}" follows, else 0. */
static size_t placeholder_len(const char *s)
{
    size_t n = 0;

    while (s[n] >= 'a' && s[n] <= 'z' && n <= PH_NAME_MAX)
        n++;
    return n > 0 && n <= PH_NAME_MAX && s[n] == '}' ? n : 0;
}

static const struct sms_var *find_var(const struct sms_var *vars, size_t nvars, const char *name,
                                      size_t len)
{
    for (size_t i = 0; i < nvars; i++) {
        if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
            return &vars[i];
    }
    return NULL;
}

/* Renders <tmpl> with <vars>; <esc> < 0: values copied as they are. */
static int render(const char *tmpl, const struct sms_var *vars, size_t nvars, int esc, char *out,
                  size_t size)
{
    struct outbuf o = { out, size, 0, false };

    if (!out || size == 0)
        return -1;
    for (const char *s = tmpl; *s && !o.full;) {
        const struct sms_var *v;
        size_t n;

        if (*s == '{' && (n = placeholder_len(s + 1)) > 0 &&
            (v = find_var(vars, nvars, s + 1, n)) != NULL) {
            if (esc < 0)
                put(&o, v->value, strlen(v->value));
            else
                put_escaped(&o, (enum sms_escape)esc, v->value);
            s += n + 2;
            continue;
        }
        n = strcspn(s + 1, "{") + 1;
        put(&o, s, n);
        s += n;
    }
    if (o.full) {
        secret_wipe(out, size);
        out[0] = '\0';
        return -1;
    }
    out[o.len] = '\0';
    return (int)o.len;
}

int sms_render(const char *tmpl, const char *code, int minutes, char *out, size_t size)
{
    char min[16];
    struct sms_var vars[] = { { "code", code ? code : "" }, { "minutes", min } };

    snprintf(min, sizeof(min), "%d", minutes);
    return render(tmpl ? tmpl : "", vars, MFA_ARRAY_LEN(vars), -1, out, size);
}

int sms_render_body(const char *tmpl, enum sms_escape esc, const char *phone, const char *text,
                    const char *code, int minutes, char *out, size_t size)
{
    char min[16];
    struct sms_var vars[] = {
        { "phone", phone ? phone : "" },
        { "text", text ? text : "" },
        { "code", code ? code : "" },
        { "minutes", min },
    };

    snprintf(min, sizeof(min), "%d", minutes);
    return render(tmpl ? tmpl : "", vars, MFA_ARRAY_LEN(vars), (int)esc, out, size);
}

int sms_escape_str(enum sms_escape esc, const char *s, char *out, size_t size)
{
    struct outbuf o = { out, size, 0, false };

    if (!out || size == 0)
        return -1;
    put_escaped(&o, esc, s ? s : "");
    if (o.full) {
        out[0] = '\0';
        return -1;
    }
    out[o.len] = '\0';
    return (int)o.len;
}

int sms_template_check(const char *tmpl, const char *what, const char *const *allowed,
                       const char *const *required, char **err)
{
    bool seen[8] = { false };

    if (strlen(tmpl) >= SMS_BODY_MAX)
        return err_set(err, "%s is longer than %d bytes", what, SMS_BODY_MAX - 1);
    for (const char *s = strchr(tmpl, '{'); s; s = strchr(s + 1, '{')) {
        size_t n = placeholder_len(s + 1);
        size_t i;

        if (n == 0)
            continue;
        for (i = 0; allowed[i]; i++) {
            if (strlen(allowed[i]) == n && memcmp(allowed[i], s + 1, n) == 0)
                break;
        }
        if (!allowed[i])
            return err_set(err, "%s: unknown placeholder {%.*s}", what, (int)n, s + 1);
        if (i < MFA_ARRAY_LEN(seen))
            seen[i] = true;
    }
    for (size_t r = 0; required[r]; r++) {
        for (size_t i = 0; allowed[i]; i++) {
            if (strcmp(allowed[i], required[r]) == 0 && !seen[i])
                return err_set(err, "%s must contain {%s}", what, required[r]);
        }
    }
    return 0;
}

/* ---- provider ---- */

/* <s> with the optional strings that are empty (a config file's default) made NULL. */
static struct sms_settings normalized(const struct sms_settings *s)
{
    struct sms_settings n = *s;
    const char **opt[] = { &n.template, &n.http_body, &n.http_content_type, &n.http_auth_header,
                           &n.http_ca_file };

    for (size_t i = 0; i < MFA_ARRAY_LEN(opt); i++) {
        if (*opt[i] && **opt[i] == '\0')
            *opt[i] = NULL;
    }
    return n;
}

int sms_check(const struct sms_settings *settings, char **err)
{
    static const char *const text_vars[] = { "code", "minutes", NULL };
    static const char *const text_required[] = { "code", NULL };
    char probe[SMS_TEXT_MAX];
    struct sms_settings n;
    const struct sms_settings *s = &n;

    if (!settings)
        return err_set(err, "sms: no settings");
    n = normalized(settings);
    if (sms_template_check(s->template ? s->template : SMS_DEFAULT_TEMPLATE, "sms template",
                           text_vars, text_required, err) < 0)
        return -1;
    /* The longest code and ttl must fit. */
    if (sms_render(s->template ? s->template : SMS_DEFAULT_TEMPLATE, "0000000000000000", 1440,
                   probe, sizeof(probe)) < 0)
        return err_set(err, "sms template renders longer than %d bytes", SMS_TEXT_MAX - 1);
    if (s->timeout_ms < 0 || s->timeout_ms > SMS_MAX_TIMEOUT_MS)
        return err_set(err, "sms timeout must be 0 (default) to %d ms", SMS_MAX_TIMEOUT_MS);
    if (s->retries < 0 || s->retries > SMS_MAX_RETRIES)
        return err_set(err, "sms retries must be 0 to %d", SMS_MAX_RETRIES);
    switch (s->kind) {
    case SMS_FILE:
        return sms_file_check(s, err);
    case SMS_HTTP:
        return sms_http_check(s, err);
    case SMS_EXEC:
        return sms_exec_check(s, err);
    }
    return err_set(err, "unknown sms provider %d", (int)s->kind);
}

/* Copies <s> into *<dst> (NULL stays NULL); returns -1 when out of memory. */
static int dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (!s)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : -1;
}

struct sms_provider *sms_new(struct event_base *base, const struct sms_settings *settings,
                             char **err)
{
    struct sms_provider *p = NULL;
    struct sms_settings n;
    const struct sms_settings *s = &n;

    if (!base) {
        err_set(err, "sms: no event base");
        return NULL;
    }
    if (sms_check(settings, err) < 0)
        return NULL;
    n = normalized(settings);
    p = calloc(1, sizeof(*p));
    if (!p)
        goto nomem;
    p->base = base;
    p->kind = s->kind;
    p->timeout_ms = s->timeout_ms ? s->timeout_ms : SMS_DEFAULT_TIMEOUT_MS;
    p->retries = s->retries;
    p->max_in_flight = s->max_in_flight ? s->max_in_flight : SMS_DEFAULT_MAX_FLIGHT;
    if (dup_opt(&p->template, s->template ? s->template : SMS_DEFAULT_TEMPLATE) < 0)
        goto nomem;
    switch (s->kind) {
    case SMS_FILE:
        if (dup_opt(&p->file_path, s->file_path) < 0)
            goto nomem;
        if (sms_file_init(p, err) < 0)
            goto fail;
        break;
    case SMS_HTTP:
        if (sms_http_init(p, s, err) < 0)
            goto fail;
        break;
    case SMS_EXEC:
        if (dup_opt(&p->exec_command, s->exec_command) < 0)
            goto nomem;
        break;
    }
    return p;
nomem:
    err_set(err, "out of memory");
fail:
    sms_free(p);
    return NULL;
}

static void req_free_parts(struct sms_req *req)
{
    if (req->timer)
        event_free(req->timer);
    req->timer = NULL;
    sms_exec_release(req);
    if (req->body)
        secret_wipe(req->body, req->body_len);
    mfa_free(req->body);
    mfa_free(req->defer_error);
    mfa_free(req->last_error);
}

static void req_unlink(struct sms_req *req)
{
    struct sms_provider *p = req->p;

    if (req->prev)
        req->prev->next = req->next;
    else
        p->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    p->stats.in_flight--;
}

void sms_req_finish(struct sms_req *req, bool ok, const char *error)
{
    struct sms_provider *p = req->p;

    req_unlink(req);
    if (ok)
        p->stats.sent++;
    else
        p->stats.failed++;
    /* <error> may live in <req>: call back before freeing. */
    req->cb(req->arg, ok, ok ? NULL : error ? error : "unknown error");
    req_free_parts(req);
    free(req);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct sms_req *req = arg;

    (void)fd;
    (void)what;
    sms_req_finish(req, req->defer_ok, req->defer_error);
}

int sms_req_defer(struct sms_req *req, bool ok, const char *error, char **err)
{
    if (!ok && !(req->defer_error = strdup(error ? error : "unknown error")))
        return err_set(err, "out of memory");
    if (req->timer)
        event_free(req->timer);
    req->timer = evtimer_new(req->p->base, on_deferred, req);
    if (!req->timer) {
        mfa_free(req->defer_error);
        return err_set(err, "cannot make a timer");
    }
    req->deferred = true;
    req->defer_ok = ok;
    event_active(req->timer, EV_TIMEOUT, 1);
    return 0;
}

static bool code_valid(const char *code)
{
    size_t n = code ? strspn(code, "0123456789") : 0;

    return code && code[n] == '\0' && n >= CODE_MIN_LEN && n <= CODE_MAX_LEN;
}

int sms_send(struct sms_provider *p, const char *phone, const char *code, int ttl_minutes,
             sms_done_cb cb, void *arg, char **err)
{
    struct sms_req *req = NULL;
    char text[SMS_TEXT_MAX];
    int rc = -1;

    if (!p || !cb)
        return err_set(err, "sms_send: bad arguments");
    if (p->closing)
        return err_set(err, "sms provider is %s", SMS_SHUTDOWN_ERROR);
    if (!sms_phone_valid(phone))
        return err_set(err, "not a phone number this provider accepts (+ and 3 to %d digits)",
                       PHONE_MAX_DIG);
    if (!code_valid(code))
        return err_set(err, "the code must be %d to %d digits", CODE_MIN_LEN, CODE_MAX_LEN);
    if (ttl_minutes < 0 || ttl_minutes > MINUTES_MAX)
        return err_set(err, "minutes must be 0 to %d", MINUTES_MAX);
    if (p->stats.in_flight >= p->max_in_flight)
        return err_set(err, "too many SMS in flight (%zu)", p->stats.in_flight);
    if (sms_render(p->template, code, ttl_minutes, text, sizeof(text)) < 0)
        return err_set(err, "the SMS text is longer than %d bytes", SMS_TEXT_MAX - 1);

    req = calloc(1, sizeof(*req));
    if (!req) {
        err_set(err, "out of memory");
        goto out;
    }
    req->p = p;
    req->cb = cb;
    req->arg = arg;
    req->pidfd = -1;
    req->deadline_ms = sms_now_ms() + (uint64_t)p->timeout_ms;
    req->next = p->reqs;
    if (p->reqs)
        p->reqs->prev = req;
    p->reqs = req;
    p->stats.in_flight++;

    switch (p->kind) {
    case SMS_FILE:
        rc = sms_file_send(req, phone, text, err);
        break;
    case SMS_HTTP:
        rc = sms_http_send(req, phone, text, code, ttl_minutes, err);
        break;
    case SMS_EXEC:
        rc = sms_exec_send(req, phone, text, err);
        break;
    }
    if (rc < 0) {
        /* Not accepted: the callback is never called. */
        req_unlink(req);
        req_free_parts(req);
        free(req);
    }
out:
    secret_wipe(text, sizeof(text));
    return rc;
}

size_t sms_in_flight(const struct sms_provider *p)
{
    return p ? p->stats.in_flight : 0;
}

void sms_get_stats(const struct sms_provider *p, struct sms_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p)
        *out = p->stats;
}

void sms_free(struct sms_provider *p)
{
    if (!p)
        return;
    p->closing = true;
    /* Gateway requests end through httpclient's "client closed" callbacks. */
    sms_http_close(p);
    while (p->reqs) {
        struct sms_req *req = p->reqs;

        /* An outcome already known (a written outbox line) is reported as it is. */
        if (req->deferred) {
            sms_req_finish(req, req->defer_ok, req->defer_error);
            continue;
        }
        sms_exec_kill(req);
        sms_req_finish(req, false, SMS_SHUTDOWN_ERROR);
    }
    free(p->template);
    free(p->file_path);
    free(p->http_url);
    free(p->http_body);
    free(p->http_ctype_line);
    if (p->http_auth_header)
        secret_wipe(p->http_auth_header, strlen(p->http_auth_header));
    free(p->http_auth_header);
    free(p->exec_command);
    free(p);
}
