/*
 * E-mail to users: the templates of the events and the building of one
 * message (docs/email.md). Pure functions: no I/O but the template files read
 * by mailmsg_templates_load(), no logging.
 *
 * A message is RFC 5322 text with CRLF line ends, ready for libcurl's SMTP
 * upload (which dot-stuffs lines that start with "." itself, RFC 5321
 * §4.5.2): From, To, Subject (RFC 2047 encoded-words when not ASCII or when
 * it holds "=?", else folded at spaces to 76 characters a line),
 * Date, Message-ID <event_id@domain of the From address>, MIME-Version and a
 * text/plain UTF-8 body in quoted-printable (every line well under 998
 * bytes whatever the template says).
 *
 * What comes from the database is untrusted: a value with a control
 * character (CR and LF above all), a To address that is not one plain
 * addr-spec, an event id that is not a UUID, or text that is not UTF-8 is
 * refused with a reason — never written into a header.
 */
#ifndef MFA_MAILMSG_H
#define MFA_MAILMSG_H

#include <stddef.h>
#include <time.h>

#include "mem.h"

enum mailmsg_event {
    MAILMSG_ENROLLED = 0,
    MAILMSG_METHOD_CHANGED,
    MAILMSG_PIN_RESET,
    MAILMSG_LOCKED,
    MAILMSG_EMAIL_CHANGED,  /* sent to the address before the change */
    MAILMSG_PIN_REMOVED,    /* the PIN was taken away (pin_hash set to NULL) */
    MAILMSG_TOKEN_ENROLLED, /* a TOTP/HOTP token was assigned to the user */
    MAILMSG_NEVENTS,
};

#define MAILMSG_TEMPLATE_MAX (16 * 1024) /* a template file's size cap */
#define MAILMSG_SUBJECT_MAX  400         /* a subject after substitution, bytes */
#define MAILMSG_ADDR_MAX     254         /* RFC 5321 §4.5.3.1.3 path limit less <> */
/* The database counts characters (128 and 256): in UTF-8 up to 4 bytes each. */
#define MAILMSG_USERNAME_MAX     512
#define MAILMSG_DISPLAY_NAME_MAX 1024
#define MAILMSG_FROM_NAME_MAX    256  /* email.from_name, bytes */
#define MAILMSG_PORTAL_URL_MAX   1024 /* email.portal_url, bytes */

struct mailmsg_template {
    char *subject; /* one line, placeholders unreplaced */
    char *body;    /* LF line ends, placeholders unreplaced */
};

struct mailmsg_templates {
    struct mailmsg_template t[MAILMSG_NEVENTS];
};

/*
 * "enrolled", "method_changed", "pin_reset", "locked", "email_changed",
 * "pin_removed", "token_enrolled"; NULL out of range.
 */
const char *mailmsg_event_name(enum mailmsg_event ev);

/* The event named <name>, or -1. */
int mailmsg_event_parse(const char *name);

/*
 * The user's sign-in method in words ("a code by text message to your
 * phone"), for "sms", "totp", "hotp", "push"; NULL for anything else.
 */
const char *mailmsg_method_words(const char *method);

/*
 * Parses a template file's text (<len> bytes, need not be NUL-terminated):
 * a first line "Subject: ...", a blank line, the body. Placeholders are
 * {{username}}, {{display_name}}, {{method}} and {{portal_url}}; anything
 * else between {{ and }} (or a {{ never closed) is an error. The text must
 * be UTF-8 without control characters other than tab and line ends, and at
 * most MAILMSG_TEMPLATE_MAX bytes. Returns 0 with <out> filled (free with
 * mailmsg_template_clear()), or -1 with *err naming <name> and the line.
 */
int mailmsg_template_parse(const char *name, const char *text, size_t len,
                           struct mailmsg_template *out, char **err) MFA_MUSTCHECK;

void mailmsg_template_clear(struct mailmsg_template *t);

/*
 * Fills <out> with the built-in templates, each replaced by
 * <dir>/<event>.txt when <dir> is not empty and that file exists. <dir> must
 * then be a directory. Only a file that does not exist (ENOENT) falls back to
 * the built-in template: one that cannot be read (permissions, a symlink, not
 * a regular file) is an error. Returns 0, or -1 with *err (naming the file
 * and line) and <out> left empty.
 */
int mailmsg_templates_load(struct mailmsg_templates *out, const char *dir,
                           char **err) MFA_MUSTCHECK;

void mailmsg_templates_free(struct mailmsg_templates *t);

/* One outbox row and the sender's settings: all borrowed. */
struct mailmsg_fields {
    const char *event_id;     /* a UUID: the Message-ID's left part */
    const char *event;        /* an event name */
    const char *username;     /* */
    const char *display_name; /* "": the username stands in for it */
    const char *to_addr;      /* one plain addr-spec */
    const char *method;       /* sms, totp, hotp, push */
    const char *from;         /* email.from, the Message-ID's domain */
    const char *from_name;    /* email.from_name */
    const char *portal_url;   /* email.portal_url */
    time_t date;              /* the event's time: a resend is the same message */
};

/*
 * Checks that <addr> is one plain addr-spec: one '@' with text either side,
 * at most MAILMSG_ADDR_MAX bytes, printable ASCII without spaces, quotes,
 * <>, (), commas, semicolons or backslashes. Returns 0, or -1 with *err.
 */
int mailmsg_check_addr(const char *addr, char **err) MFA_MUSTCHECK;

/*
 * Checks the sender's settings as mailmsg_build() will: <from> one plain
 * addr-spec, <from_name> (may be empty) and <portal_url> UTF-8 without
 * control characters, at most MAILMSG_FROM_NAME_MAX and MAILMSG_PORTAL_URL_MAX
 * bytes. appconf's checks call it, so a configuration that would make every
 * message fail is refused at load (and by --check-config). Returns 0, or -1
 * with *err naming the setting.
 */
int mailmsg_check_settings(const char *from, const char *from_name, const char *portal_url,
                           char **err) MFA_MUSTCHECK;

/*
 * Builds the message of <f> with <t>'s template for its event. Returns the
 * text (malloc'd, NUL-terminated, *len bytes; the caller frees it), or NULL
 * with *err saying which value was refused and why. The settings are checked
 * too, but a caller that must tell a bad row from bad settings (the sender:
 * only a bad row is given up) checks them first with
 * mailmsg_check_settings().
 */
char *mailmsg_build(const struct mailmsg_templates *t, const struct mailmsg_fields *f, size_t *len,
                    char **err) MFA_MUSTCHECK;

#endif
