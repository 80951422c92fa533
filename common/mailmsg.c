/*
 * Templates and message building for e-mail to users; see mailmsg.h.
 *
 * Everything written into the message goes through one growable buffer
 * (struct mbuf) whose out-of-memory state is checked once at the end. Values
 * are checked before anything is built, so the builder itself cannot be
 * steered: a header value never holds CR, LF or another control character,
 * and the body is quoted-printable, so no line of it is longer than 76 bytes
 * or can end the DATA phase early.
 */
#include "mailmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "errmsg.h"

static const char *const event_names[MAILMSG_NEVENTS] = {
    [MAILMSG_ENROLLED] = "enrolled",
    [MAILMSG_METHOD_CHANGED] = "method_changed",
    [MAILMSG_PIN_RESET] = "pin_reset",
    [MAILMSG_LOCKED] = "locked",
    [MAILMSG_EMAIL_CHANGED] = "email_changed",
    [MAILMSG_PIN_REMOVED] = "pin_removed",
    [MAILMSG_TOKEN_ENROLLED] = "token_enrolled",
};

/* The built-in templates, in the file format of an override. */
static const char *const builtin[MAILMSG_NEVENTS] = {
    [MAILMSG_ENROLLED] = "Subject: Two-step sign-in is set up for you\n"
                         "\n"
                         "Hello {{display_name}},\n"
                         "\n"
                         "your account {{username}} now signs in in two steps. After your\n"
                         "password or PIN you confirm each sign-in with {{method}}.\n"
                         "\n"
                         "You can see and change your settings in the portal:\n"
                         "{{portal_url}}\n"
                         "\n"
                         "If this was not you, tell your IT department.\n",
    [MAILMSG_METHOD_CHANGED] = "Subject: Your sign-in method was changed\n"
                               "\n"
                               "Hello {{display_name}},\n"
                               "\n"
                               "the sign-in method of your account {{username}} was changed.\n"
                               "From now on you confirm each sign-in with {{method}}.\n"
                               "\n"
                               "You can see your settings in the portal:\n"
                               "{{portal_url}}\n"
                               "\n"
                               "If this was not you, tell your IT department.\n",
    [MAILMSG_PIN_RESET] = "Subject: Your PIN was reset\n"
                          "\n"
                          "Hello {{display_name}},\n"
                          "\n"
                          "the PIN of your account {{username}} was reset. You confirm each\n"
                          "sign-in with {{method}}.\n"
                          "\n"
                          "You can see your settings in the portal:\n"
                          "{{portal_url}}\n"
                          "\n"
                          "If this was not you, tell your IT department.\n",
    [MAILMSG_LOCKED] = "Subject: Your account is locked\n"
                       "\n"
                       "Hello {{display_name}},\n"
                       "\n"
                       "your account {{username}} was locked after too many failed\n"
                       "sign-ins. It unlocks by itself after a while; until then you\n"
                       "cannot sign in. You confirm each sign-in with {{method}}.\n"
                       "\n"
                       "The portal:\n"
                       "{{portal_url}}\n"
                       "\n"
                       "If this was not you, tell your IT department.\n",
    [MAILMSG_EMAIL_CHANGED] = "Subject: Your e-mail address was changed\n"
                              "\n"
                              "Hello {{display_name}},\n"
                              "\n"
                              "the e-mail address of your account {{username}} was changed.\n"
                              "Later messages about your sign-in go to the new address, if\n"
                              "there is one. You confirm each sign-in with {{method}}.\n"
                              "\n"
                              "You can see your settings in the portal:\n"
                              "{{portal_url}}\n"
                              "\n"
                              "If this was not you, tell your IT department.\n",
    [MAILMSG_PIN_REMOVED] = "Subject: Your PIN was removed\n"
                            "\n"
                            "Hello {{display_name}},\n"
                            "\n"
                            "the PIN of your account {{username}} was removed. You confirm\n"
                            "each sign-in with {{method}}.\n"
                            "\n"
                            "You can see your settings in the portal:\n"
                            "{{portal_url}}\n"
                            "\n"
                            "If this was not you, tell your IT department.\n",
    [MAILMSG_TOKEN_ENROLLED] = "Subject: A new sign-in token was set up for you\n"
                               "\n"
                               "Hello {{display_name}},\n"
                               "\n"
                               "a new authenticator (an app or a hardware token) now makes the\n"
                               "sign-in codes of your account {{username}}. You confirm each\n"
                               "sign-in with {{method}}.\n"
                               "\n"
                               "You can see your settings in the portal:\n"
                               "{{portal_url}}\n"
                               "\n"
                               "If this was not you, tell your IT department.\n",
};

enum placeholder {
    PH_USERNAME = 0,
    PH_DISPLAY_NAME,
    PH_METHOD,
    PH_PORTAL_URL,
    PH_COUNT,
};

static const char *const placeholder_names[PH_COUNT] = {
    [PH_USERNAME] = "username",
    [PH_DISPLAY_NAME] = "display_name",
    [PH_METHOD] = "method",
    [PH_PORTAL_URL] = "portal_url",
};

const char *mailmsg_event_name(enum mailmsg_event ev)
{
    return (unsigned)ev < MAILMSG_NEVENTS ? event_names[ev] : NULL;
}

int mailmsg_event_parse(const char *name)
{
    for (int i = 0; name && i < MAILMSG_NEVENTS; i++) {
        if (strcmp(name, event_names[i]) == 0)
            return i;
    }
    return -1;
}

const char *mailmsg_method_words(const char *method)
{
    if (!method)
        return NULL;
    if (strcmp(method, "sms") == 0)
        return "a code by text message to your phone";
    if (strcmp(method, "totp") == 0)
        return "an authenticator app (TOTP)";
    if (strcmp(method, "hotp") == 0)
        return "a hardware token (HOTP)";
    if (strcmp(method, "push") == 0)
        return "a notification on your phone (push)";
    return NULL;
}

/* ---- text checks ---- */

/*
 * Length of the UTF-8 sequence at <s> (at most <n> bytes), or 0 when it is
 * not a well-formed one (RFC 3629 §4: no overlongs, no surrogates, nothing
 * past U+10FFFF).
 */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

/*
 * Checks <n> bytes of <s>: UTF-8 with no control character (C0, DEL), tab
 * allowed when <tab>. Returns NULL, or what is wrong.
 */
static const char *text_problem(const char *s, size_t n, bool tab)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0; i < n;) {
        size_t len;

        if (u[i] == '\r' || u[i] == '\n')
            return "a line break";
        if ((u[i] < 0x20 && !(tab && u[i] == '\t')) || u[i] == 0x7f)
            return "a control character";
        len = utf8_seq(u + i, n - i);
        if (!len)
            return "bytes that are not UTF-8";
        i += len;
    }
    return NULL;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80)
            return false;
    }
    return true;
}

/* Checks a database or configuration value going into the message. */
static int check_value(const char *what, const char *v, size_t max, char **err)
{
    const char *why;

    if (!v)
        return err_set(err, "%s is missing", what);
    if (strlen(v) > max)
        return err_set(err, "%s is longer than %zu bytes", what, max);
    why = text_problem(v, strlen(v), false);
    if (why)
        return err_set(err, "%s contains %s", what, why);
    return 0;
}

int mailmsg_check_addr(const char *addr, char **err)
{
    const char *at;
    size_t n;

    if (!addr || !*addr)
        return err_set(err, "the address is empty");
    n = strlen(addr);
    if (n > MAILMSG_ADDR_MAX)
        return err_set(err, "the address is longer than %d bytes", MAILMSG_ADDR_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];

        if (c <= 0x20 || c >= 0x7f)
            return err_set(err, "the address contains a space, a control or a non-ASCII "
                                "character");
        if (strchr("<>()[],;:\\\"", c))
            return err_set(err, "the address contains '%c' (one plain user@domain is expected)", c);
    }
    at = strchr(addr, '@');
    if (!at || strchr(at + 1, '@'))
        return err_set(err, "the address must contain exactly one '@'");
    if (at == addr || !at[1])
        return err_set(err, "the address needs text before and after the '@'");
    return 0;
}

static bool is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                   (s[i] >= 'A' && s[i] <= 'F');

        if (shape[i] == '-' ? s[i] != '-' : !hex)
            return false;
    }
    return s[sizeof(shape) - 1] == '\0';
}

/* ---- templates ---- */

/*
 * Checks the placeholders of <line> (<n> bytes): each "{{" opens one of
 * placeholder_names closed by "}}". Returns 0, or -1 with *err.
 */
static int check_placeholders(const char *name, int lineno, const char *line, size_t n, char **err)
{
    for (size_t i = 0; i + 1 < n; i++) {
        size_t start, end;
        bool known = false;

        if (line[i] != '{' || line[i + 1] != '{')
            continue;
        start = i + 2;
        for (end = start; end + 1 < n && !(line[end] == '}' && line[end + 1] == '}'); end++)
            ;
        if (end + 1 >= n)
            return err_set(err, "%s: line %d: \"{{\" without \"}}\"", name, lineno);
        for (int p = 0; p < PH_COUNT; p++) {
            if (end - start == strlen(placeholder_names[p]) &&
                memcmp(line + start, placeholder_names[p], end - start) == 0)
                known = true;
        }
        if (!known)
            return err_set(err,
                           "%s: line %d: unknown placeholder {{%.*s}} (known: {{username}}, "
                           "{{display_name}}, {{method}}, {{portal_url}})",
                           name, lineno, (int)(end - start > 40 ? 40 : end - start), line + start);
        i = end + 1;
    }
    return 0;
}

void mailmsg_template_clear(struct mailmsg_template *t)
{
    mfa_free(t->subject);
    mfa_free(t->body);
}

int mailmsg_template_parse(const char *name, const char *text, size_t len,
                           struct mailmsg_template *out, char **err)
{
    size_t pos = 0, body_len = 0;
    int lineno = 0;
    char *body = NULL;

    memset(out, 0, sizeof(*out));
    if (len > MAILMSG_TEMPLATE_MAX)
        return err_set(err, "%s: larger than %d bytes", name, MAILMSG_TEMPLATE_MAX);
    body = malloc(len + 1);
    if (!body)
        return err_set(err, "out of memory");
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        const char *why;

        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n && line[n - 1] == '\r')
            n--; /* CRLF files are fine */
        why = text_problem(line, n, lineno > 2);
        if (why) {
            err_set(err, "%s: line %d contains %s", name, lineno, why);
            goto fail;
        }
        if (check_placeholders(name, lineno, line, n, err) < 0)
            goto fail;
        if (lineno == 1) {
            size_t skip = 8;

            if (n < 8 || strncasecmp(line, "Subject:", 8) != 0) {
                err_set(err, "%s: line 1: the first line must be \"Subject: ...\"", name);
                goto fail;
            }
            while (skip < n && line[skip] == ' ')
                skip++;
            while (n > skip && line[n - 1] == ' ')
                n--;
            if (n == skip) {
                err_set(err, "%s: line 1: the subject is empty", name);
                goto fail;
            }
            out->subject = strndup(line + skip, n - skip);
            if (!out->subject)
                goto oom;
        } else if (lineno == 2) {
            if (n) {
                err_set(err, "%s: line 2: a blank line must follow the subject", name);
                goto fail;
            }
        } else {
            memcpy(body + body_len, line, n);
            body_len += n;
            body[body_len++] = '\n';
        }
    }
    if (lineno < 1) {
        err_set(err, "%s: line 1: empty (\"Subject: ...\", a blank line and the body expected)",
                name);
        goto fail;
    }
    if (lineno < 3) {
        err_set(err, "%s: line %d: the body is missing", name, lineno + 1);
        goto fail;
    }
    body[body_len] = '\0';
    out->body = body;
    return 0;

oom:
    err_set(err, "out of memory");
fail:
    free(body);
    mailmsg_template_clear(out);
    return -1;
}

/* Reads <path> (at most MAILMSG_TEMPLATE_MAX bytes) and parses it into <out>. */
static int load_file(const char *path, struct mailmsg_template *out, char **err)
{
    char buf[MAILMSG_TEMPLATE_MAX + 1];
    size_t len = 0;
    ssize_t got;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    if (fd < 0)
        return err_set(err, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    while (len < sizeof(buf) && (got = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            err_set(err, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        len += (size_t)got;
    }
    close(fd);
    return mailmsg_template_parse(path, buf, len, out, err);
}

void mailmsg_templates_free(struct mailmsg_templates *t)
{
    for (int i = 0; i < MAILMSG_NEVENTS; i++)
        mailmsg_template_clear(&t->t[i]);
}

int mailmsg_templates_load(struct mailmsg_templates *out, const char *dir, char **err)
{
    struct stat st;

    memset(out, 0, sizeof(*out));
    if (dir && *dir) {
        if (stat(dir, &st) != 0)
            return err_set(err, "email.templates_dir %s: %s", dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return err_set(err, "email.templates_dir %s: not a directory", dir);
    }
    for (int i = 0; i < MAILMSG_NEVENTS; i++) {
        char path[4096];
        int rc;

        if (dir && *dir) {
            snprintf(path, sizeof(path), "%s/%s.txt", dir, event_names[i]);
            /* only a missing file means "the built-in one": anything else is the operator's */
            if (lstat(path, &st) == 0 || errno != ENOENT) {
                if (load_file(path, &out->t[i], err) < 0)
                    goto fail;
                continue;
            }
        }
        snprintf(path, sizeof(path), "built-in %s template", event_names[i]);
        rc = mailmsg_template_parse(path, builtin[i], strlen(builtin[i]), &out->t[i], err);
        if (rc < 0)
            goto fail;
    }
    return 0;

fail:
    mailmsg_templates_free(out);
    return -1;
}

/* ---- building ---- */

struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put(struct mbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_str(struct mbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(struct mbuf *b, const char *fmt, ...)
{
    char tmp[1200];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        b->oom = true; /* callers only format bounded values */
    else
        put(b, tmp, (size_t)n);
}

/* Appends <tmpl> with its placeholders replaced by <values>. */
static void expand(struct mbuf *b, const char *tmpl, const char *const values[PH_COUNT])
{
    const char *p = tmpl;

    while (*p) {
        const char *open = strstr(p, "{{");
        const char *close;
        bool done = false;

        if (!open) {
            put_str(b, p);
            return;
        }
        put(b, p, (size_t)(open - p));
        close = strstr(open + 2, "}}");
        for (int i = 0; close && i < PH_COUNT; i++) {
            size_t n = strlen(placeholder_names[i]);

            if ((size_t)(close - open - 2) == n && memcmp(open + 2, placeholder_names[i], n) == 0) {
                put_str(b, values[i]);
                done = true;
            }
        }
        if (!done) { /* the parser refuses these: copied as they are */
            put(b, open, 2);
            p = open + 2;
            continue;
        }
        p = close + 2;
    }
}

/*
 * Appends <s> as RFC 2047 "B" encoded-words, folded with CRLF SP, never
 * splitting a UTF-8 character (§5: each encoded-word holds whole
 * characters). <col> is where the first word starts on its line (after
 * "Subject: ", say): every line, the first included, stays within 76
 * characters (§2).
 */
static void put_encoded_words(struct mbuf *b, const char *s, size_t col)
{
    size_t n = strlen(s), i = 0;
    bool first = true;

    while (i < n) {
        size_t chunk = 0, max;
        char enc[B64_ENCODED_LEN(45) + 1];

        /*
         * 45 bytes make 60 base64 characters: 73 with " =?UTF-8?B?" and "?="
         * on a folded line. The first line has <col> characters before it.
         */
        max = first ? (76 - 12 - (col < 60 ? col : 60)) / 4 * 3 : 45;
        while (i + chunk < n) {
            size_t len = utf8_seq((const unsigned char *)s + i + chunk, n - i - chunk);

            if (!len)
                len = 1; /* checked before: cannot happen */
            if (chunk + len > max && chunk > 0)
                break;
            chunk += len;
        }
        if (b64_encode(s + i, chunk, enc, sizeof(enc)) < 0) {
            b->oom = true;
            return;
        }
        if (!first)
            put_str(b, "\r\n ");
        putf(b, "=?UTF-8?B?%s?=", enc);
        first = false;
        i += chunk;
    }
}

/*
 * Appends the ASCII text <s> folded (RFC 5322 §2.2.3): a CRLF goes before
 * the space that would take a line past 76 characters, <col> of them used
 * before <s>. A word longer than a line stays whole (the subject's cap keeps
 * it far under 998).
 */
static void put_folded(struct mbuf *b, const char *s, size_t col)
{
    while (*s) {
        size_t word = strcspn(s + 1, " ") + 1; /* a space and the word after it */

        if (*s == ' ' && col + word > 76 && col > 1) {
            put_str(b, "\r\n");
            col = 0;
        }
        put(b, s, word);
        col += word;
        s += word;
    }
}

/* RFC 5322 §3.3 date-time in UTC, independent of the locale. */
static void put_date(struct mbuf *b, time_t when)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;

    if (!gmtime_r(&when, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        b->oom = true;
        return;
    }
    putf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Appends <text> (LF line ends) as a quoted-printable body, RFC 2045 §6.7:
 * printable ASCII but '=' as is, everything else =XX, a space or tab at a
 * line's end encoded, soft line breaks keeping lines at 76 characters.
 */
static void put_qp(struct mbuf *b, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *p = text;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p), col = 0;

        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            char tok[3];
            size_t k = 1;

            if (((c == ' ' || c == '\t') && i + 1 < n) || (c >= 33 && c <= 126 && c != '=')) {
                tok[0] = (char)c;
            } else {
                tok[0] = '=';
                tok[1] = hex[c >> 4];
                tok[2] = hex[c & 15];
                k = 3;
            }
            if (col + k > 75) {
                put_str(b, "=\r\n");
                col = 0;
            }
            put(b, tok, k);
            col += k;
        }
        put_str(b, "\r\n");
        p += n + (nl ? 1 : 0);
    }
}

int mailmsg_check_settings(const char *from, const char *from_name, const char *portal_url,
                           char **err)
{
    if (mailmsg_check_addr(from, err) < 0)
        return err_prefix(err, "the sender (email.from)");
    if (check_value("the sender name (email.from_name)", from_name, MAILMSG_FROM_NAME_MAX, err) <
            0 ||
        check_value("the portal link (email.portal_url)", portal_url, MAILMSG_PORTAL_URL_MAX, err) <
            0)
        return -1;
    return 0;
}

static int check_fields(const struct mailmsg_fields *f, char **err)
{
    if (mailmsg_event_parse(f->event) < 0)
        return err_set(err, "unknown event \"%.40s\"", f->event ? f->event : "");
    if (!f->event_id || !is_uuid(f->event_id))
        return err_set(err, "the event id is not a UUID");
    if (check_value("the username", f->username, MAILMSG_USERNAME_MAX, err) < 0 ||
        check_value("the display name", f->display_name, MAILMSG_DISPLAY_NAME_MAX, err) < 0)
        return -1;
    if (!mailmsg_method_words(f->method))
        return err_set(err, "unknown sign-in method \"%.20s\"", f->method ? f->method : "");
    if (mailmsg_check_addr(f->to_addr, err) < 0)
        return err_prefix(err, "the recipient (to_addr)");
    if (mailmsg_check_settings(f->from, f->from_name, f->portal_url, err) < 0)
        return -1;
    if (!*f->username)
        return err_set(err, "the username is empty");
    return 0;
}

char *mailmsg_build(const struct mailmsg_templates *t, const struct mailmsg_fields *f, size_t *len,
                    char **err)
{
    const struct mailmsg_template *tp;
    const char *values[PH_COUNT];
    struct mbuf subject = { 0 }, body = { 0 }, msg = { 0 };
    const char *why;

    if (check_fields(f, err) < 0)
        return NULL;
    tp = &t->t[mailmsg_event_parse(f->event)];
    if (!tp->subject || !tp->body) {
        err_set(err, "no template for the event %s", f->event);
        return NULL;
    }
    values[PH_USERNAME] = f->username;
    values[PH_DISPLAY_NAME] = *f->display_name ? f->display_name : f->username;
    values[PH_METHOD] = mailmsg_method_words(f->method);
    values[PH_PORTAL_URL] = f->portal_url;
    expand(&subject, tp->subject, values);
    expand(&body, tp->body, values);
    if (subject.oom || body.oom)
        goto oom;
    if (subject.len > MAILMSG_SUBJECT_MAX) {
        err_set(err, "the subject is longer than %d bytes", MAILMSG_SUBJECT_MAX);
        goto fail;
    }
    /* The template and the values were checked; this holds by construction. */
    why = text_problem(subject.p, subject.len, false);
    if (why) {
        err_set(err, "the subject contains %s", why);
        goto fail;
    }

    put_str(&msg, "From: ");
    if (!*f->from_name) {
        put_str(&msg, f->from);
    } else if (is_ascii(f->from_name)) {
        put_str(&msg, "\"");
        for (const char *p = f->from_name; *p; p++) {
            if (*p == '"' || *p == '\\')
                put_str(&msg, "\\");
            put(&msg, p, 1);
        }
        putf(&msg, "\" <%s>", f->from);
    } else {
        put_encoded_words(&msg, f->from_name, strlen("From: "));
        putf(&msg, " <%s>", f->from);
    }
    putf(&msg, "\r\nTo: %s\r\nSubject: ", f->to_addr);
    /* "=?" in plain text would be read as an encoded-word by mail programs */
    if (is_ascii(subject.p) && !strstr(subject.p, "=?"))
        put_folded(&msg, subject.p, strlen("Subject: "));
    else
        put_encoded_words(&msg, subject.p, strlen("Subject: "));
    put_str(&msg, "\r\n");
    put_date(&msg, f->date);
    putf(&msg, "Message-ID: <%s@%s>\r\n", f->event_id, strchr(f->from, '@') + 1);
    put_str(&msg, "MIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: quoted-printable\r\n"
                  "Auto-Submitted: auto-generated\r\n"
                  "\r\n");
    put_qp(&msg, body.p ? body.p : "");
    if (msg.oom)
        goto oom;
    free(subject.p);
    free(body.p);
    *len = msg.len;
    return msg.p;

oom:
    err_set(err, "out of memory building the message");
fail:
    free(subject.p);
    free(body.p);
    free(msg.p);
    return NULL;
}
