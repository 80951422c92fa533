/*
 * The rules of a user's fields (see users_priv.h), apart from the handlers
 * so that the unit tests and the fuzz target link them alone. The rules of
 * each field are common/userfields.c's, which the directory sync applies
 * too; here is what the API adds: which fields a request may give, the
 * method and PIN, and ISO 8601 times.
 */
#include "users_priv.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "secrets.h"

int users_fields_check(const struct users_fields *f, bool create, char **err)
{
    if (create && !f->username)
        return err_set(err, "username: required");
    if (f->username && users_check_username("username", f->username, err) < 0)
        return -1;
    if (f->display_name && users_check_text("display_name", f->display_name, false, err) < 0)
        return -1;
    if (f->email && users_check_email("email", f->email, err) < 0)
        return -1;
    if (f->phone && users_check_phone("phone", f->phone, err) < 0)
        return -1;
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
