/*
 * The rules of a user's fields (userfields.h): UTF-8 decoding, the
 * characters a username or a text may hold, the shapes of an e-mail address
 * and a phone number. Pure functions: the unit tests and the fuzz targets
 * link them alone.
 */
#include "userfields.h"

#include <stdint.h>
#include <string.h>

#include "errmsg.h"

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

bool users_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c;

    while (*p) {
        if (utf8_next(&p, &c) < 0)
            return false;
    }
    return true;
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

int users_check_text(const char *what, const char *s, bool no_space, char **err)
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

int users_check_email(const char *what, const char *s, char **err)
{
    if (!*s)
        return 0;
    if (users_check_text(what, s, true, err) < 0)
        return -1;
    if (!strchr(s, '@'))
        return err_set(err, "%s: must contain an '@'", what);
    return 0;
}

int users_check_phone(const char *what, const char *s, char **err)
{
    const char *p = *s == '+' ? s + 1 : s;
    size_t digits = strspn(p, "0123456789");

    if (!*s || (p[digits] == '\0' && digits >= 3 && digits <= USERS_PHONE_DIGITS))
        return 0;
    return err_set(err, "%s: must be 3 to %d digits, optionally after a '+', no spaces", what,
                   USERS_PHONE_DIGITS);
}
