/*
 * Logging: one line per event with key=value fields, to stderr or syslog.
 *
 * The line is built in a stack buffer and written with one write(2), so
 * lines from threads or processes sharing a descriptor never interleave. The
 * formatter understands only the small printf subset listed in log.h; %s
 * values are quoted when they hold a space, '=', a quote, a backslash, a
 * control or a non-ASCII byte, so a value cannot start a new field or line.
 */
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
    char ident[64];
    enum log_target target;
    enum log_level min_level;
} log_cfg = { "mfa", LOG_TO_STDERR, LOG_LVL_INFO };

static const char *const level_names[] = {
    [LOG_LVL_DEBUG] = "debug",     [LOG_LVL_INFO] = "info",   [LOG_LVL_NOTICE] = "notice",
    [LOG_LVL_WARNING] = "warning", [LOG_LVL_ERROR] = "error",
};

static const int level_syslog[] = {
    [LOG_LVL_DEBUG] = LOG_DEBUG,     [LOG_LVL_INFO] = LOG_INFO, [LOG_LVL_NOTICE] = LOG_NOTICE,
    [LOG_LVL_WARNING] = LOG_WARNING, [LOG_LVL_ERROR] = LOG_ERR,
};

static const char truncated_mark[] = " truncated=1";

void log_setup(const char *ident, enum log_target target, enum log_level min_level)
{
    snprintf(log_cfg.ident, sizeof(log_cfg.ident), "%s", ident ? ident : "mfa");
    log_cfg.target = target;
    log_cfg.min_level = min_level;
    if (target == LOG_TO_SYSLOG)
        openlog(log_cfg.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_reopen(void)
{
    if (log_cfg.target == LOG_TO_SYSLOG) {
        closelog();
        openlog(log_cfg.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
}

bool log_enabled(enum log_level level)
{
    return level >= log_cfg.min_level;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level >= MFA_ARRAY_LEN(level_names))
        return "?";
    return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < MFA_ARRAY_LEN(level_names); i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Output cursor: appends stop at the end and remember that they did. */
struct out {
    char *buf;
    size_t size, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full)
        return;
    if (n > o->size - 1 - o->len) {
        n = o->size - 1 - o->len;
        o->full = true;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static bool plain_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

/* Appends <s> bare when it is plain, else quoted with C-style escapes. */
static void put_value(struct out *o, const char *s)
{
    const unsigned char *p;
    bool plain = *s != '\0';

    for (p = (const unsigned char *)s; *p && plain; p++)
        plain = plain_char(*p);
    if (plain) {
        put(o, s, strlen(s));
        return;
    }
    put(o, "\"", 1);
    for (p = (const unsigned char *)s; *p; p++) {
        char esc[5];

        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(o, esc, 2);
        } else if (*p == '\n') {
            put(o, "\\n", 2);
        } else if (*p == '\r') {
            put(o, "\\r", 2);
        } else if (*p == '\t') {
            put(o, "\\t", 2);
        } else if (*p < ' ' || *p >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            put(o, esc, 4);
        } else {
            put(o, (const char *)p, 1);
        }
    }
    put(o, "\"", 1);
}

/* Length modifiers the formatter accepts. */
enum len_mod { LEN_NONE = 0, LEN_L, LEN_LL, LEN_Z };

static void put_number(struct out *o, char conv, enum len_mod mod, va_list *ap)
{
    char num[32];
    bool is_signed = conv == 'd' || conv == 'i';
    const char *f = conv == 'x' ? "%llx" : is_signed ? "%lld" : "%llu";

    if (is_signed) {
        long long v = mod == LEN_LL  ? va_arg(*ap, long long)
                      : mod == LEN_L ? va_arg(*ap, long)
                      : mod == LEN_Z ? (long long)va_arg(*ap, ssize_t)
                                     : va_arg(*ap, int);
        snprintf(num, sizeof(num), "%lld", v);
    } else {
        unsigned long long v = mod == LEN_LL  ? va_arg(*ap, unsigned long long)
                               : mod == LEN_L ? va_arg(*ap, unsigned long)
                               : mod == LEN_Z ? va_arg(*ap, size_t)
                                              : va_arg(*ap, unsigned int);
        /* The format is one of two literals chosen above. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(num, sizeof(num), f, v);
#pragma GCC diagnostic pop
    }
    put(o, num, strlen(num));
}

size_t log_vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0, false };
    va_list args;
    const char *p;

    if (size == 0)
        return 0;
    va_copy(args, ap);
    for (p = fmt; *p && !o.full; p++) {
        enum len_mod mod = LEN_NONE;

        if (*p != '%') {
            put(&o, p, 1);
            continue;
        }
        p++;
        if (*p == 'l' && p[1] == 'l') {
            mod = LEN_LL;
            p += 2;
        } else if (*p == 'l') {
            mod = LEN_L;
            p++;
        } else if (*p == 'z') {
            mod = LEN_Z;
            p++;
        }
        switch (*p) {
        case '%':
            put(&o, "%", 1);
            break;
        case 's': {
            const char *s = va_arg(args, const char *);

            put_value(&o, s ? s : "-");
            break;
        }
        case 'c': {
            char s[2] = { (char)va_arg(args, int), '\0' };

            put_value(&o, s);
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
            put_number(&o, *p, mod, &args);
            break;
        default:
            /* A conversion outside the subset: stop before reading a wrong argument. */
            put(&o, "%!", 2);
            goto out;
        }
    }
out:
    va_end(args);
    if (o.full) {
        size_t keep =
            size - 1 < sizeof(truncated_mark) - 1 ? 0 : size - 1 - (sizeof(truncated_mark) - 1);

        o.len = keep < o.len ? keep : o.len;
        o.full = false;
        put(&o, truncated_mark, sizeof(truncated_mark) - 1);
    }
    buf[o.len] = '\0';
    return o.len;
}

size_t log_format(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = log_vformat(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX + 128];
    struct timespec ts;
    struct tm tm;
    size_t head;

    if (!log_enabled(level))
        return;
    if (log_cfg.target == LOG_TO_SYSLOG) {
        log_vformat(line, LOG_LINE_MAX, fmt, ap);
        syslog(level_syslog[level], "%s", line);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    head = strftime(line, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    head += (size_t)snprintf(line + head, sizeof(line) - head, ".%03ldZ %s[%ld] %s ",
                             ts.tv_nsec / 1000000, log_cfg.ident, (long)getpid(),
                             log_level_name(level));
    head += log_vformat(line + head, sizeof(line) - head - 1, fmt, ap);
    line[head++] = '\n';
    /* One write per line; a failing stderr has nowhere else to report to. */
    if (write(STDERR_FILENO, line, head) < 0)
        return;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

const char *log_mask_phone(const char *phone, char *buf, size_t size)
{
    size_t len, i;

    if (size == 0)
        return buf;
    if (!phone) {
        snprintf(buf, size, "-");
        return buf;
    }
    len = strlen(phone);
    if (len >= size) {
        /* Never cut first and mask after: that could show middle digits. */
        snprintf(buf, size, "%s", "***");
        return buf;
    }
    for (i = 0; i < len; i++) {
        bool keep = i + 2 >= len || (len > 6 && i < 3);

        buf[i] = keep ? phone[i] : '*';
    }
    buf[len] = '\0';
    return buf;
}
