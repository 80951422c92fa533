/*
 * common/mailmsg: the built-in templates make a well-formed message for each
 * event (headers, CRLF, Message-ID from the event id, quoted-printable body
 * that decodes back to the text), non-ASCII subjects and names become
 * RFC 2047 encoded-words, every untrusted value that could break a header is
 * refused, and template files are checked with errors naming file and line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "b64.h"
#include "mailmsg.h"
#include "mem.h"

#define EVENT_ID "6f1c2b1e-59a4-4c1b-9c1e-0a7d2f3b4c5d"

static struct mailmsg_fields fields(const char *event)
{
    struct mailmsg_fields f = {
        .event_id = EVENT_ID,
        .event = event,
        .username = "alice",
        .display_name = "Alice Example",
        .to_addr = "alice@example.com",
        .method = "totp",
        .from = "mfa@corp.example",
        .from_name = "MFA Appliance",
        .portal_url = "https://mfa.corp.example/portal/",
        .date = 0,
    };

    return f;
}

/* The header block of <msg> (up to the blank line), or fails the test. */
static char *headers_of(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");

    assert_non_null(end);
    return strndup(msg, (size_t)(end - msg) + 2);
}

/* Decodes the quoted-printable body of <msg> (after the blank line). */
static char *qp_body(const char *msg)
{
    const char *p = strstr(msg, "\r\n\r\n");
    char *out, *o;

    assert_non_null(p);
    p += 4;
    out = o = malloc(strlen(p) + 1);
    assert_non_null(out);
    while (*p) {
        if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
            p += 3;
        } else if (p[0] == '=') {
            unsigned v;

            assert_int_equal(sscanf(p + 1, "%2X", &v), 1);
            *o++ = (char)v;
            p += 3;
        } else if (p[0] == '\r' && p[1] == '\n') {
            *o++ = '\n';
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* Every line ends CRLF, no bare CR or LF, none longer than <max>. */
static void assert_lines(const char *msg, size_t len, size_t max)
{
    size_t col = 0;

    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\r') {
            assert_true(i + 1 < len && msg[i + 1] == '\n');
            i++;
            col = 0;
            continue;
        }
        assert_true(msg[i] != '\n');
        col++;
        assert_true(col <= max);
    }
    assert_int_equal(col, 0);
}

static struct mailmsg_templates builtin(void)
{
    struct mailmsg_templates t;
    char *err = NULL;

    assert_int_equal(mailmsg_templates_load(&t, "", &err), 0);
    assert_null(err);
    return t;
}

static void test_each_event(void **state)
{
    static const char *const subjects[] = {
        "Subject: Two-step sign-in is set up for you\r\n",
        "Subject: Your sign-in method was changed\r\n",
        "Subject: Your PIN was reset\r\n",
        "Subject: Your account is locked\r\n",
        "Subject: Your e-mail address was changed\r\n",
        "Subject: Your PIN was removed\r\n",
        "Subject: A new sign-in token was set up for you\r\n",
    };
    struct mailmsg_templates t = builtin();

    (void)state;
    assert_int_equal(MFA_ARRAY_LEN(subjects), MAILMSG_NEVENTS);
    for (int ev = 0; ev < MAILMSG_NEVENTS; ev++) {
        struct mailmsg_fields f = fields(mailmsg_event_name(ev));
        size_t len = 0;
        char *err = NULL, *msg = mailmsg_build(&t, &f, &len, &err), *h, *body;

        assert_non_null(msg);
        assert_null(err);
        assert_int_equal(len, strlen(msg));
        assert_lines(msg, len, 998);
        h = headers_of(msg);
        assert_non_null(strstr(h, "From: \"MFA Appliance\" <mfa@corp.example>\r\n"));
        assert_non_null(strstr(h, "To: alice@example.com\r\n"));
        assert_non_null(strstr(h, subjects[ev]));
        assert_non_null(strstr(h, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        assert_non_null(strstr(h, "Message-ID: <" EVENT_ID "@corp.example>\r\n"));
        assert_non_null(strstr(h, "MIME-Version: 1.0\r\n"));
        assert_non_null(strstr(h, "Content-Type: text/plain; charset=utf-8\r\n"));
        assert_non_null(strstr(h, "Content-Transfer-Encoding: quoted-printable\r\n"));
        assert_int_equal(strncmp(msg, "From: ", 6), 0);
        body = qp_body(msg);
        assert_non_null(strstr(body, "Hello Alice Example,\n"));
        assert_non_null(strstr(body, "alice"));
        assert_non_null(strstr(body, "an authenticator app (TOTP)"));
        assert_non_null(strstr(body, "https://mfa.corp.example/portal/\n"));
        assert_non_null(strstr(body, "If this was not you, tell your IT department.\n"));
        assert_null(strstr(body, "{{"));
        free(body);
        free(h);
        free(msg);
    }
    mailmsg_templates_free(&t);
}

static void test_same_event_same_message(void **state)
{
    struct mailmsg_templates t = builtin();
    struct mailmsg_fields f = fields("locked");
    size_t l1, l2;
    char *a, *b;

    (void)state;
    f.date = 1795000000;
    a = mailmsg_build(&t, &f, &l1, NULL);
    b = mailmsg_build(&t, &f, &l2, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(l1, l2);
    assert_memory_equal(a, b, l1); /* a resend is byte for byte the same */
    free(a);
    free(b);
    mailmsg_templates_free(&t);
}

static void test_methods(void **state)
{
    struct mailmsg_templates t = builtin();
    static const char *const methods[][2] = {
        { "sms", "a code by text message to your phone" },
        { "totp", "an authenticator app (TOTP)" },
        { "hotp", "a hardware token (HOTP)" },
        { "push", "a notification on your phone (push)" },
    };

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(methods); i++) {
        struct mailmsg_fields f = fields("method_changed");
        size_t len;
        char *msg, *body;

        f.method = methods[i][0];
        msg = mailmsg_build(&t, &f, &len, NULL);
        assert_non_null(msg);
        body = qp_body(msg);
        assert_non_null(strstr(body, methods[i][1]));
        free(body);
        free(msg);
    }
    assert_null(mailmsg_method_words("voice"));
    mailmsg_templates_free(&t);
}

/* Decodes one "=?UTF-8?B?...?=" word at <p> into <out>; returns its length. */
static size_t decode_word(const char *p, char *out, size_t *outlen)
{
    const char *end = strstr(p + 10, "?=");
    size_t n = 0;

    assert_int_equal(strncmp(p, "=?UTF-8?B?", 10), 0);
    assert_non_null(end);
    assert_true((size_t)(end + 2 - p) <= 75); /* RFC 2047 §2 */
    assert_int_equal(b64_decode(p + 10, (size_t)(end - p - 10), (unsigned char *)out, 200, &n), 0);
    *outlen = n;
    return (size_t)(end + 2 - p);
}

static void test_non_ascii(void **state)
{
    struct mailmsg_templates t;
    struct mailmsg_template custom;
    struct mailmsg_fields f = fields("enrolled");
    const char *file = "Subject: Bienvenue {{display_name}}, vérifiez votre accès à la "
                       "connexion en deux étapes maintenant\n\nBonjour {{display_name}} ✓\n";
    char *err = NULL, *msg, *h, *body, *p, decoded[1024];
    size_t len, dlen = 0;

    (void)state;
    t = builtin();
    assert_int_equal(mailmsg_template_parse("fr.txt", file, strlen(file), &custom, &err), 0);
    mailmsg_template_clear(&t.t[MAILMSG_ENROLLED]);
    t.t[MAILMSG_ENROLLED] = custom;
    f.display_name = "Zoë Ünal";
    f.from_name = "Sécurité";
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    assert_lines(msg, len, 998);
    for (size_t i = 0; i < len; i++)
        assert_true((unsigned char)msg[i] < 0x80); /* 7-bit on the wire */
    h = headers_of(msg);
    assert_lines(h, strlen(h), 76); /* RFC 2047 §2: the first line too */
    assert_non_null(strstr(h, "From: =?UTF-8?B?"));
    assert_non_null(strstr(h, "?= <mfa@corp.example>\r\n"));
    /* the subject: folded encoded-words that decode to the whole text */
    p = strstr(h, "Subject: ") + 9;
    while (1) {
        size_t n;

        p += decode_word(p, decoded + dlen, &n);
        dlen += n;
        if (strncmp(p, "\r\n =?", 5) != 0)
            break;
        p += 3;
    }
    decoded[dlen] = '\0';
    assert_string_equal(decoded, "Bienvenue Zoë Ünal, vérifiez votre accès à la connexion en "
                                 "deux étapes maintenant");
    body = qp_body(msg);
    assert_string_equal(body, "Bonjour Zoë Ünal ✓\n");
    free(body);
    free(h);
    free(msg);
    mailmsg_templates_free(&t);
}

static void test_long_lines_and_dots(void **state)
{
    struct mailmsg_templates t = builtin();
    struct mailmsg_template custom;
    struct mailmsg_fields f = fields("pin_reset");
    char file[4096], *msg, *body, *err = NULL;
    size_t len;
    int n;

    (void)state;
    n = snprintf(file, sizeof(file), "Subject: x\n\n.\n.hidden line \nend=\t\n");
    memset(file + n, 'y', 2000);
    strcpy(file + n + 2000, "\n");
    assert_int_equal(mailmsg_template_parse("long.txt", file, strlen(file), &custom, &err), 0);
    mailmsg_template_clear(&t.t[MAILMSG_PIN_RESET]);
    t.t[MAILMSG_PIN_RESET] = custom;
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    assert_lines(msg, len, 76); /* quoted-printable keeps every line short */
    body = qp_body(msg);
    assert_int_equal(strncmp(body, ".\n.hidden line \nend=\t\nyyy", 25), 0);
    assert_int_equal(strlen(body), 22 + 2000 + 1);
    /* trailing white space is encoded, so no relay can strip it */
    assert_non_null(strstr(msg, "line=20\r\n"));
    assert_non_null(strstr(msg, "end=3D=09\r\n"));
    free(body);
    free(msg);
    mailmsg_templates_free(&t);
}

static void expect_refused(const struct mailmsg_fields *f, const char *why);

/* Unfolds the Subject header of <h> (CRLF SP -> SP). */
static char *subject_of(const char *h)
{
    const char *p = strstr(h, "\r\nSubject: "), *end;
    char *out, *o;

    assert_non_null(p);
    p += 11;
    out = o = calloc(1, strlen(p) + 1);
    assert_non_null(out);
    for (end = p; !(end[0] == '\r' && end[1] == '\n' && end[2] != ' '); end++) {
        if (end[0] == '\r' && end[1] == '\n') {
            end++; /* the CR: LF skipped next, the SP kept */
            continue;
        }
        *o++ = *end;
    }
    return out;
}

static void test_subject_encoding_and_folding(void **state)
{
    struct mailmsg_templates t = builtin();
    struct mailmsg_template custom;
    struct mailmsg_fields f = fields("enrolled");
    const char *file = "Subject: Welcome {{display_name}} to two-step sign-in, which keeps your "
                       "account {{username}} safe from password thieves everywhere\n\nHi\n";
    char *err = NULL, *msg, *h, *subj;
    size_t len;

    (void)state;
    assert_int_equal(mailmsg_template_parse("long.txt", file, strlen(file), &custom, &err), 0);
    mailmsg_template_clear(&t.t[MAILMSG_ENROLLED]);
    t.t[MAILMSG_ENROLLED] = custom;
    /* a long ASCII subject is folded at spaces, each line within 76 */
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    h = headers_of(msg);
    assert_lines(h, strlen(h), 76);
    subj = subject_of(h);
    assert_string_equal(subj, "Welcome Alice Example to two-step sign-in, which keeps your account "
                              "alice safe from password thieves everywhere");
    free(subj);
    free(h);
    free(msg);
    /* "=?" in an ASCII subject is encoded, so no mail program decodes it */
    f.display_name = "=?UTF-8?B?QWRtaW4=?=";
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    h = headers_of(msg);
    assert_lines(h, strlen(h), 76);
    assert_non_null(strstr(h, "\r\nSubject: =?UTF-8?B?"));
    assert_null(strstr(h, "Welcome =?"));
    free(h);
    free(msg);
    mailmsg_templates_free(&t);
}

static void test_byte_limits(void **state)
{
    /* the database counts characters: 128 and 256 of them, 4 bytes each at most */
    char user[MAILMSG_USERNAME_MAX + 8], name[MAILMSG_DISPLAY_NAME_MAX + 8];
    struct mailmsg_templates t = builtin();
    struct mailmsg_template custom;
    struct mailmsg_fields f = fields("enrolled");
    const char *file = "Subject: Welcome\n\n{{username}} {{display_name}}\n";
    char *err = NULL, *msg;
    size_t len;

    (void)state;
    assert_int_equal(mailmsg_template_parse("plain.txt", file, strlen(file), &custom, &err), 0);
    mailmsg_template_clear(&t.t[MAILMSG_ENROLLED]);
    t.t[MAILMSG_ENROLLED] = custom;
    for (size_t i = 0; i < MAILMSG_USERNAME_MAX / 4; i++)
        memcpy(user + 4 * i, "\xf0\x9f\x98\x80", 4); /* U+1F600 */
    user[MAILMSG_USERNAME_MAX] = '\0';
    for (size_t i = 0; i < MAILMSG_DISPLAY_NAME_MAX / 4; i++)
        memcpy(name + 4 * i, "\xf0\x9f\x98\x80", 4);
    name[MAILMSG_DISPLAY_NAME_MAX] = '\0';
    f.username = user;
    f.display_name = name;
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    assert_null(err);
    free(msg);
    mailmsg_templates_free(&t);
    strcat(user, "a");
    f.username = user;
    expect_refused(&f, "the username is longer than 512 bytes");
    f.username = "alice";
    strcat(name, "a");
    f.display_name = name;
    expect_refused(&f, "the display name is longer than 1024 bytes");
}

static void expect_settings_refused(const char *from, const char *from_name, const char *portal_url,
                                    const char *why)
{
    char *err = NULL;

    assert_int_equal(mailmsg_check_settings(from, from_name, portal_url, &err), -1);
    assert_non_null(err);
    if (!strstr(err, why))
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
    free(err);
}

static void test_check_settings(void **state)
{
    const char *url = "https://mfa.corp.example/portal/";
    char longurl[1100], longname[300];
    char *err = NULL;

    (void)state;
    assert_int_equal(mailmsg_check_settings("mfa@corp.example", "MFA Appliance", url, &err), 0);
    assert_int_equal(mailmsg_check_settings("mfa@corp.example", "", url, &err), 0);
    assert_int_equal(mailmsg_check_settings("mfa@corp.example", "Sécurité", url, &err), 0);
    assert_null(err);
    expect_settings_refused("mfa@b@corp.example", "x", url, "email.from");
    expect_settings_refused("mfa;x@corp.example", "x", url, "email.from");
    expect_settings_refused("mfa@corp.example(x)", "x", url, "email.from");
    expect_settings_refused("mfa@[127.0.0.1]", "x", url, "email.from");
    expect_settings_refused("mfa:x@corp.example", "x", url, "email.from");
    expect_settings_refused("mfa@corp.example", "MFA\x01", url, "email.from_name");
    expect_settings_refused("mfa@corp.example", "MFA\tApp", url, "email.from_name");
    expect_settings_refused("mfa@corp.example", "MFA \xff", url, "email.from_name");
    memset(longname, 'n', 257);
    longname[257] = '\0';
    expect_settings_refused("mfa@corp.example", longname, url, "longer than 256 bytes");
    snprintf(longurl, sizeof(longurl), "https://mfa.corp.example/%01030d", 0);
    expect_settings_refused("mfa@corp.example", "x", longurl, "email.portal_url");
    /* mailmsg_build() applies the same rules */
    {
        struct mailmsg_fields f = fields("enrolled");

        f.from_name = "MFA\x7f";
        expect_refused(&f, "email.from_name");
    }
}

static void expect_refused(const struct mailmsg_fields *f, const char *why)
{
    struct mailmsg_templates t = builtin();
    size_t len = 0;
    char *err = NULL, *msg = mailmsg_build(&t, f, &len, &err);

    if (msg)
        fail_msg("built a message for %s", why);
    assert_non_null(err);
    if (!strstr(err, why))
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
    free(err);
    mailmsg_templates_free(&t);
}

static void test_untrusted_values(void **state)
{
    static const char *const bad_to[] = {
        "alice@example.com\r\nBcc: eve@evil.example",
        "alice@example.com\nBcc: eve@evil.example",
        "alice example@example.com",
        "<alice@example.com>",
        "Alice <alice@example.com>",
        "alice@example.com,eve@evil.example",
        "alice@b@example.com",
        "alice",
        "@example.com",
        "alice@",
        "",
        "al\"ice@example.com",
        "alïce@example.com",
    };
    struct mailmsg_fields f;
    char longaddr[300];

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad_to); i++) {
        f = fields("enrolled");
        f.to_addr = bad_to[i];
        expect_refused(&f, "the recipient");
    }
    memset(longaddr, 'a', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    longaddr[100] = '@';
    f = fields("enrolled");
    f.to_addr = longaddr;
    expect_refused(&f, "longer than 254");

    f = fields("enrolled");
    f.display_name = "Alice\r\nBcc: eve@evil.example";
    expect_refused(&f, "the display name contains a line break");
    f = fields("enrolled");
    f.display_name = "Alice\x1b[31m";
    expect_refused(&f, "the display name contains a control character");
    f = fields("enrolled");
    f.username = "alice\xff";
    expect_refused(&f, "the username contains bytes that are not UTF-8");
    f = fields("enrolled");
    f.username = "";
    expect_refused(&f, "the username is empty");
    f = fields("enrolled");
    f.event_id = EVENT_ID ">\r\nBcc: x";
    expect_refused(&f, "not a UUID");
    f = fields("enrolled");
    f.event_id = "not-a-uuid";
    expect_refused(&f, "not a UUID");
    f = fields("enrolled");
    f.method = "voice";
    expect_refused(&f, "unknown sign-in method");
    f = fields("deleted");
    expect_refused(&f, "unknown event");
    f = fields("enrolled");
    f.from = "mfa";
    expect_refused(&f, "the sender");
}

static void test_check_addr(void **state)
{
    char *err = NULL;

    (void)state;
    assert_int_equal(mailmsg_check_addr("first.last+tag@sub.example.co.uk", &err), 0);
    assert_null(err);
    assert_int_equal(mailmsg_check_addr("a@b", &err), 0);
    assert_int_equal(mailmsg_check_addr("a@b c", &err), -1);
    assert_non_null(err);
    free(err);
}

static void expect_parse_error(const char *text, const char *want)
{
    struct mailmsg_template t;
    char *err = NULL;

    if (mailmsg_template_parse("t.txt", text, strlen(text), &t, &err) == 0)
        fail_msg("parsed \"%s\"", text);
    assert_null(t.subject);
    assert_null(t.body);
    assert_non_null(err);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
    free(err);
}

static void test_template_parse(void **state)
{
    struct mailmsg_template t;
    char *err = NULL, *big;
    static const char ok[] = "subject:   Hi {{username}}  \r\n\r\nA\r\n\t{{method}} {{portal_url}}";

    (void)state;
    assert_int_equal(mailmsg_template_parse("ok.txt", ok, strlen(ok), &t, &err), 0);
    assert_string_equal(t.subject, "Hi {{username}}");
    assert_string_equal(t.body, "A\n\t{{method}} {{portal_url}}\n");
    mailmsg_template_clear(&t);

    expect_parse_error("", "t.txt: line 1: empty");
    expect_parse_error("Hello\n\nbody\n", "t.txt: line 1: the first line must be \"Subject: ...\"");
    expect_parse_error("Subject:   \n\nbody\n", "t.txt: line 1: the subject is empty");
    expect_parse_error("Subject: x\nbody\n", "t.txt: line 2: a blank line must follow");
    expect_parse_error("Subject: x\n", "t.txt: line 2: the body is missing");
    expect_parse_error("Subject: x\n\nHi\n{{user}}\n",
                       "t.txt: line 4: unknown placeholder {{user}}");
    expect_parse_error("Subject: {{ username }}\n\nHi\n", "line 1: unknown placeholder");
    expect_parse_error("Subject: x\n\nHi {{username\n", "t.txt: line 3: \"{{\" without \"}}\"");
    expect_parse_error("Subject: x\ty\n\nHi\n", "line 1 contains a control character");
    expect_parse_error("Subject: x\n\nHi\x01\n", "line 3 contains a control character");
    expect_parse_error("Subject: x\n\nHi\rthere\n", "line 3 contains a line break");
    expect_parse_error("Subject: x\n\nHi \xc3\x28\n", "line 3 contains bytes that are not UTF-8");
    expect_parse_error("Subject: x\n\nHi \xed\xa0\x80\n", "not UTF-8"); /* a surrogate */

    big = malloc(MAILMSG_TEMPLATE_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', MAILMSG_TEMPLATE_MAX + 1);
    big[MAILMSG_TEMPLATE_MAX + 1] = '\0';
    memcpy(big, "Subject: x\n\n", 12);
    expect_parse_error(big, "larger than 16384 bytes");
    free(big);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_templates_dir(void **state)
{
    char dir[] = "/tmp/test_mailmsg.XXXXXX", path[256];
    struct mailmsg_templates t;
    struct mailmsg_fields f = fields("locked");
    char *err = NULL, *msg, *body;
    size_t len;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/locked.txt", dir);
    write_file(path, "Subject: Locked: {{username}}\n\nCall the desk. {{portal_url}}\n");
    assert_int_equal(mailmsg_templates_load(&t, dir, &err), 0);
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "\r\nSubject: Locked: alice\r\n"));
    body = qp_body(msg);
    assert_string_equal(body, "Call the desk. https://mfa.corp.example/portal/\n");
    free(body);
    free(msg);
    /* the other events keep the built-in text */
    f = fields("pin_reset");
    msg = mailmsg_build(&t, &f, &len, &err);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "\r\nSubject: Your PIN was reset\r\n"));
    free(msg);
    mailmsg_templates_free(&t);

    snprintf(path, sizeof(path), "%s/enrolled.txt", dir);
    write_file(path, "Subject: hi\n\nline\n{{password}}\n");
    assert_int_equal(mailmsg_templates_load(&t, dir, &err), -1);
    assert_non_null(strstr(err, "enrolled.txt: line 4: unknown placeholder {{password}}"));
    free(err);
    err = NULL;
    unlink(path);
    /* a file there that cannot be read is an error, not the built-in text */
    assert_int_equal(symlink("/nonexistent/enrolled.txt", path), 0);
    assert_int_equal(mailmsg_templates_load(&t, dir, &err), -1);
    assert_non_null(strstr(err, "enrolled.txt"));
    free(err);
    err = NULL;
    unlink(path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(mailmsg_templates_load(&t, dir, &err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    free(err);
    err = NULL;
    rmdir(path);
    snprintf(path, sizeof(path), "%s/locked.txt", dir);
    unlink(path);
    rmdir(dir);
    assert_int_equal(mailmsg_templates_load(&t, dir, &err), -1);
    assert_non_null(strstr(err, "email.templates_dir"));
    free(err);
}

static void test_event_names(void **state)
{
    /* The names of schema 003's CHECK on email_outbox.event, in its order. */
    static const char *const schema[] = { "enrolled",      "method_changed", "pin_reset",
                                          "locked",        "email_changed",  "pin_removed",
                                          "token_enrolled" };

    (void)state;
    assert_int_equal(MFA_ARRAY_LEN(schema), MAILMSG_NEVENTS);
    for (int i = 0; i < MAILMSG_NEVENTS; i++)
        assert_string_equal(mailmsg_event_name(i), schema[i]);
    for (int i = 0; i < MAILMSG_NEVENTS; i++)
        assert_int_equal(mailmsg_event_parse(mailmsg_event_name(i)), i);
    assert_int_equal(mailmsg_event_parse("Locked"), -1);
    assert_int_equal(mailmsg_event_parse(NULL), -1);
    assert_null(mailmsg_event_name(MAILMSG_NEVENTS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_event),
        cmocka_unit_test(test_same_event_same_message),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_non_ascii),
        cmocka_unit_test(test_long_lines_and_dots),
        cmocka_unit_test(test_untrusted_values),
        cmocka_unit_test(test_check_addr),
        cmocka_unit_test(test_template_parse),
        cmocka_unit_test(test_templates_dir),
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_subject_encoding_and_folding),
        cmocka_unit_test(test_byte_limits),
        cmocka_unit_test(test_check_settings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
