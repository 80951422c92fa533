/*
 * Fuzz target for the e-mail message builder (common/mailmsg.c): template
 * files and outbox rows, both untrusted.
 *
 * The input is read three times. As a template file: a parse either fails with a
 * message or gives a template that, with well-formed values, must build. As
 * an outbox row: the input split at NUL bytes gives the event id, event,
 * username, display name, To address and method (missing parts are filled
 * with good values), built with the built-in templates. As the sender's
 * settings (from, from_name, portal_url): accepted ones build every event.
 * Every message built
 * must keep the contract of mailmsg.h, or the target aborts: 7-bit text with
 * CRLF line ends only, no line longer than 998 bytes (76 in the body), the
 * header block exactly the nine headers in their order (a value can never add
 * a header), and the Message-ID the event id's. Seeds: tests/fuzz/corpus/mailmsg/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailmsg.h"
#include "mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const header_order[] = {
    "From: ",           "To: ",
    "Subject: ",        "Date: ",
    "Message-ID: ",     "MIME-Version: 1.0",
    "Content-Type: ",   "Content-Transfer-Encoding: quoted-printable",
    "Auto-Submitted: ",
};

static void check_message(const char *msg, size_t len, const struct mailmsg_fields *f)
{
    size_t i = 0, header = 0, col = 0;
    bool in_body = false, line_start = true;
    const char *domain = strrchr(f->from, '@');
    char *want;
    size_t wsize;

    if (len != strlen(msg) || len < 4)
        abort();
    for (; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];

        if (c >= 0x80 || c == '\0' || c == '\n')
            abort();
        if (c == '\r') {
            if (i + 1 >= len || msg[i + 1] != '\n')
                abort();
            i++;
            if (!in_body && line_start) {
                in_body = true; /* the blank line */
                if (header != MFA_ARRAY_LEN(header_order))
                    abort();
            }
            line_start = true;
            col = 0;
            continue;
        }
        if (!in_body && line_start && c != ' ') {
            /* a new header: must be the next one expected */
            if (header >= MFA_ARRAY_LEN(header_order) ||
                strncmp(msg + i, header_order[header], strlen(header_order[header])) != 0)
                abort();
            header++;
        }
        line_start = false;
        if (++col > (in_body ? 76 : 998))
            abort();
    }
    if (!in_body || !line_start)
        abort();
    /* The Message-ID is the event's id at the domain of the From address, whatever it is. */
    if (!domain)
        abort();
    wsize = strlen(f->event_id) + strlen(domain) + 32;
    want = malloc(wsize);
    if (!want)
        return;
    snprintf(want, wsize, "\r\nMessage-ID: <%s%s>\r\n", f->event_id, domain);
    if (!strstr(msg, want))
        abort();
    free(want);
}

static struct mailmsg_fields good_fields(void)
{
    struct mailmsg_fields f = {
        .event_id = "6f1c2b1e-59a4-4c1b-9c1e-0a7d2f3b4c5d",
        .event = "enrolled",
        .username = "alice",
        .display_name = "Alice",
        .to_addr = "alice@example.com",
        .method = "sms",
        .from = "mfa@corp.example",
        .from_name = "MFA Appliance",
        .portal_url = "https://mfa.corp.example/",
        .date = 1795000000,
    };

    return f;
}

static void build_and_check(const struct mailmsg_templates *t, const struct mailmsg_fields *f,
                            bool must_build)
{
    size_t len = 0;
    char *err = NULL, *msg = mailmsg_build(t, f, &len, &err);

    if (!msg) {
        if (!err || must_build)
            abort();
        mfa_free(err);
        return;
    }
    if (err)
        abort();
    check_message(msg, len, f);
    free(msg);
}

static void as_template(const char *buf, size_t size, const struct mailmsg_templates *builtin)
{
    struct mailmsg_templates t = *builtin;
    struct mailmsg_template tp;
    struct mailmsg_fields f = good_fields();
    char *err = NULL;
    int rc = mailmsg_template_parse("fuzz.txt", buf, size, &tp, &err);

    if ((rc != 0 && rc != -1) || (rc < 0) != (err != NULL))
        abort();
    if (rc < 0) {
        if (tp.subject || tp.body)
            abort();
        mfa_free(err);
        return;
    }
    t.t[MAILMSG_ENROLLED] = tp;
    /* a subject too long after substitution is the one refusal left */
    build_and_check(&t, &f, strlen(tp.subject) < MAILMSG_SUBJECT_MAX / 8);
    mailmsg_template_clear(&tp);
}

static void as_row(const char *buf, size_t size, const struct mailmsg_templates *builtin)
{
    struct mailmsg_fields f = good_fields();
    const char **slots[] = { &f.event_id,     &f.event,   &f.username,
                             &f.display_name, &f.to_addr, &f.method };
    size_t pos = 0;

    for (size_t k = 0; k < MFA_ARRAY_LEN(slots) && pos < size; k++) {
        const char *part = buf + pos;
        size_t n = strnlen(part, size - pos);

        if (pos + n >= size)
            break; /* the last part is not terminated: left at its good value */
        *slots[k] = part;
        pos += n + 1;
    }
    build_and_check(builtin, &f, false);
}

/*
 * The input as the sender's settings (from, from_name, portal_url split at
 * NUL bytes): settings mailmsg_check_settings() accepts must build every
 * event's message for a good row, so appconf's check is all the sender needs
 * (a row is given up only for its own faults).
 */
static void as_settings(const char *buf, size_t size, const struct mailmsg_templates *builtin)
{
    struct mailmsg_fields f = good_fields();
    const char **slots[] = { &f.from, &f.from_name, &f.portal_url };
    size_t pos = 0;

    for (size_t k = 0; k < MFA_ARRAY_LEN(slots) && pos < size; k++) {
        const char *part = buf + pos;
        size_t n = strnlen(part, size - pos);

        if (pos + n >= size)
            break;
        *slots[k] = part;
        pos += n + 1;
    }
    if (mailmsg_check_settings(f.from, f.from_name, f.portal_url, NULL) < 0)
        return;
    for (int ev = 0; ev < MAILMSG_NEVENTS; ev++) {
        f.event = mailmsg_event_name(ev);
        build_and_check(builtin, &f, true);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mailmsg_templates builtin;
    static bool loaded;
    char *buf = malloc(size ? size : 1);

    if (!loaded) {
        if (mailmsg_templates_load(&builtin, "", NULL) < 0)
            abort();
        loaded = true;
    }
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    as_template(buf, size, &builtin);
    as_row(buf, size, &builtin);
    as_settings(buf, size, &builtin);
    free(buf);
    return 0;
}
