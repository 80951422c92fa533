/*
 * The rules of a user's fields (see users_priv.h), apart from the handlers
 * so that the unit tests and the fuzz target link them alone.
 *
 * The checks mirror the CHECK constraints of the users table (schema 001)
 * and are a little stricter where the database's answer would depend on its
 * locale: a username may hold no Unicode space or invisible character either,
 * whatever [:space:] means to the server. Text must be valid UTF-8 without
 * NUL (PostgreSQL stores neither invalid UTF-8 nor NUL); lengths are counted
 * in characters, as the schema counts them.
 */
#include "users_priv.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "secrets.h"

/*
 * Decodes the UTF-8 sequence at *p (RFC 3629: no overlong forms, no
 * surrogates, at most U+10FFFF) into *cp and advances *p. Returns 0, or -1.
 */
static int utf8_next(const unsigned char **p, uint32_t *cp)
{
    const unsigned char *s = *p;
    uint32_t c = s[0], min;
    int n;

    if (c < 0x80) {
        *cp = c;
        *p = s + 1;
        return 0;
    }
    if ((c & 0xE0) == 0xC0) {
        n = 1, c &= 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2, c &= 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3, c &= 0x07, min = 0x10000;
    } else {
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
            return -1;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *cp = c;
    *p = s + n + 1;
    return 0;
}

static bool is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

/* Unicode White_Space and the invisible format characters that fake one. */
static bool is_space_like(uint32_t c)
{
    return c == ' ' || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x2060 || c == 0x3000 || c == 0xFEFF;
}

/*
 * Counts the characters of <s>: -1 when it is not valid UTF-8, -2 when one
 * is a control character (or, with <no_space>, a space or invisible one).
 */
static long text_chars(const char *s, bool no_space)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    uint32_t c;

    while (*p) {
        if (utf8_next(&p, &c) < 0)
            return -1;
        if (is_control(c) || (no_space && is_space_like(c)))
            return -2;
        n++;
    }
    return n;
}

int users_check_username(const char *what, const char *s, char **err)
{
    long n = text_chars(s, true);

    if (n < 1 || n > USERS_USERNAME_CHARS)
        return err_set(err,
                       "%s: must be 1 to %d characters of UTF-8, none of them a space or a "
                       "control character",
                       what, USERS_USERNAME_CHARS);
    return 0;
}

static int check_text(const char *what, const char *s, bool no_space, char **err)
{
    long n = text_chars(s, no_space);

    if (n == -1)
        return err_set(err, "%s: is not valid UTF-8", what);
    if (n == -2)
        return err_set(err, "%s: must not contain control characters%s", what,
                       no_space ? " or spaces" : "");
    if (n > USERS_TEXT_CHARS)
        return err_set(err, "%s: must be at most %d characters", what, USERS_TEXT_CHARS);
    return 0;
}

/* The schema's ^\+?[0-9]{3,20}$ */
static bool phone_ok(const char *s)
{
    size_t digits;

    if (*s == '+')
        s++;
    digits = strspn(s, "0123456789");
    return s[digits] == '\0' && digits >= 3 && digits <= 20;
}

int users_fields_check(const struct users_fields *f, bool create, char **err)
{
    if (create && !f->username)
        return err_set(err, "username: required");
    if (f->username && users_check_username("username", f->username, err) < 0)
        return -1;
    if (f->display_name && check_text("display_name", f->display_name, false, err) < 0)
        return -1;
    if (f->email && *f->email) {
        if (check_text("email", f->email, true, err) < 0)
            return -1;
        if (!strchr(f->email, '@'))
            return err_set(err, "email: must contain an '@'");
    }
    if (f->phone && *f->phone && !phone_ok(f->phone))
        return err_set(err, "phone: must be 3 to 20 digits, optionally after a '+', no spaces");
    if (create && !f->method)
        return err_set(err, "method: required (sms, totp or hotp)");
    if (f->method && strcmp(f->method, "push") == 0)
        return err_set(err, "method: push is not available yet; use sms, totp or hotp");
    if (f->method && strcmp(f->method, "sms") != 0 && strcmp(f->method, "totp") != 0 &&
        strcmp(f->method, "hotp") != 0)
        return err_set(err, "method: must be sms, totp or hotp");
    if (f->pin && !pin_syntax_ok(f->pin))
        return err_set(err, "pin: must be 4 to 8 digits");
    if (f->method && strcmp(f->method, "sms") == 0 &&
        ((create && (!f->phone || !*f->phone)) || (f->phone && !*f->phone)))
        return err_set(err, "phone: required when method is sms");
    return 0;
}

static const char *const create_fields[] = {
    "username", "display_name", "email", "phone", "method", "pin",
};
static const char *const update_fields[] = {
    "display_name", "email", "phone", "method", "pin", "disabled",
};

static bool listed(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(key, list[i]) == 0)
            return true;
    }
    return false;
}

/* A string member (or null, for <nullable>) into *out: NULL for null. */
static int string_member(const char *key, json_t *v, bool nullable, const char **out, char **err)
{
    if (json_is_null(v) && nullable) {
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return err_set(err, "%s: must be a string%s", key, nullable ? " or null" : "");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return err_set(err, "%s: must not contain a NUL character", key);
    *out = json_string_value(v);
    return 0;
}

int users_fields_from_json(json_t *body, bool create, struct users_fields *f, char **err)
{
    const char *key;
    json_t *v;

    memset(f, 0, sizeof(*f));
    f->disabled = -1;
    json_object_foreach(body, key, v)
    {
        bool ok = create ? listed(key, create_fields, MFA_ARRAY_LEN(create_fields))
                         : listed(key, update_fields, MFA_ARRAY_LEN(update_fields));
        int rc = 0;

        if (!ok && !create && strcmp(key, "username") == 0)
            return err_set(err, "username: cannot be changed (create a new user instead)");
        if (!ok)
            return err_set(err, "unknown field \"%.64s\"; the fields are %s", key,
                           create ? "username, display_name, email, phone, method, pin"
                                  : "display_name, email, phone, method, pin, disabled");
        if (strcmp(key, "username") == 0) {
            rc = string_member(key, v, false, &f->username, err);
        } else if (strcmp(key, "display_name") == 0) {
            rc = string_member(key, v, true, &f->display_name, err);
            f->display_name = rc == 0 && !f->display_name ? "" : f->display_name;
        } else if (strcmp(key, "email") == 0) {
            rc = string_member(key, v, true, &f->email, err);
            f->email = rc == 0 && !f->email ? "" : f->email;
        } else if (strcmp(key, "phone") == 0) {
            rc = string_member(key, v, true, &f->phone, err);
            f->phone = rc == 0 && !f->phone ? "" : f->phone;
        } else if (strcmp(key, "method") == 0) {
            rc = string_member(key, v, false, &f->method, err);
        } else if (strcmp(key, "pin") == 0) {
            rc = string_member(key, v, true, &f->pin, err);
            f->pin_given = true;
        } else if (!json_is_boolean(v)) {
            return err_set(err, "disabled: must be true or false");
        } else {
            f->disabled = json_is_true(v);
        }
        if (rc < 0)
            return -1;
    }
    if (!create && json_object_size(body) == 0)
        return err_set(err, "give at least one of display_name, email, phone, method, pin, "
                            "disabled");
    return users_fields_check(f, create, err);
}

/* Reads exactly <n> digits at *p into *v and advances; -1 otherwise. */
static int digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        *v = *v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

int users_parse_time(const char *s, char *out, size_t size)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, tzh = 0, tzm = 0, n;
    char frac[8] = "", sign = '+';
    size_t nf = 0;

    /* ISO 8601 §4.1.2.2 calendar date, extended format */
    if (digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 || *s++ != '-' ||
        digits(&s, 2, &d) < 0)
        return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return -1;
    if (*s == 'T' || *s == 't' || (*s == ' ' && isdigit((unsigned char)s[1]))) {
        s++;
        /* §4.2.2.2 time of day, extended format, with a decimal fraction (§4.2.2.4) */
        if (digits(&s, 2, &h) < 0 || *s++ != ':' || digits(&s, 2, &mi) < 0)
            return -1;
        if (*s == ':') {
            s++;
            if (digits(&s, 2, &sec) < 0)
                return -1;
            if (*s == '.' || *s == ',') {
                s++;
                frac[nf++] = '.';
                for (n = 0; isdigit((unsigned char)*s); n++, s++) {
                    if (nf < 7) /* microseconds, as PostgreSQL keeps them */
                        frac[nf++] = *s;
                }
                if (n < 1 || n > 9)
                    return -1;
                frac[nf] = '\0';
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return -1;
        /* §4.2.4 UTC designator, §4.2.5.1 difference from UTC */
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-' || *s == ' ') {
            sign = *s == '-' ? '-' : '+';
            s++;
            if (digits(&s, 2, &tzh) < 0)
                return -1;
            if (*s == ':') {
                s++;
                if (digits(&s, 2, &tzm) < 0)
                    return -1;
            } else if (*s && digits(&s, 2, &tzm) < 0) {
                return -1;
            }
            if (tzh > 15 || tzm > 59)
                return -1;
        }
    }
    if (*s)
        return -1;
    n = snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d", y, mo, d, h, mi, sec,
                 frac, sign, tzh, tzm);
    return n > 0 && (size_t)n < size ? 0 : -1;
}
