/*
 * SMS delivery (DESIGN §4): a provider interface over three ways to hand a
 * one-time code to a phone.
 *
 *   file  appends one JSON line {"at", "to", "text"} to an outbox file (the
 *         local demo and the tests read the code from it)
 *   http  POSTs a templated body to an SMS gateway over HTTPS (libcurl on the
 *         event loop, common/httpclient.h), with a total deadline and retries
 *   exec  runs an operator's command (e.g. a GSM modem tool) as
 *         `command PHONE`, the text on its standard input, exit status 0
 *         meaning sent
 *
 * Nothing here blocks the event loop (a file append is one small write(2)).
 * Every accepted sms_send() ends with exactly one callback, later, from the
 * loop (never from inside sms_send()), or from sms_free() for what is still
 * in flight. Delivery failures arrive there with a sentence the caller puts
 * in the auth result and the auth log.
 *
 * Secrets: the code appears only in the message text handed to the provider,
 * and the buffers that held it are wiped. Nothing here logs: the caller logs
 * a failure (with log_mask_phone() on the number). Error sentences never
 * contain the text, the body, the gateway's answer, the Authorization header
 * or a phone number, so they may go into the auth result and the auth log.
 *
 * Threading: a provider belongs to the loop thread of its event_base.
 */
#ifndef MFA_NODE_SMS_H
#define MFA_NODE_SMS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

enum sms_kind {
    SMS_FILE = 0,
    SMS_HTTP,
    SMS_EXEC,
};

#define SMS_TEXT_MAX           1024 /* rendered message text, bytes with NUL */
#define SMS_BODY_MAX           8192 /* rendered http body, bytes with NUL */
#define SMS_DEFAULT_TIMEOUT_MS 10000
#define SMS_MAX_TIMEOUT_MS     300000
#define SMS_MAX_RETRIES        10
#define SMS_DEFAULT_MAX_FLIGHT 256
#define SMS_DEFAULT_TEMPLATE   "{code} is your sign-in code. It expires in {minutes} minutes."
#define SMS_DEFAULT_HTTP_BODY  "{\"to\":\"{phone}\",\"text\":\"{text}\"}"
#define SMS_DEFAULT_HTTP_CTYPE "application/json"
#define SMS_FORM_CTYPE         "application/x-www-form-urlencoded"
#define SMS_SHUTDOWN_ERROR     "shutting down"

/*
 * Provider settings, all copied by sms_new() (the caller may free them
 * afterwards). Only the fields of the chosen kind are looked at. For the
 * optional strings (template, http_body, http_content_type,
 * http_auth_header, http_ca_file) an empty string is the same as NULL.
 *
 *   template           the message text; placeholders {code} (required) and
 *                      {minutes}; NULL: SMS_DEFAULT_TEMPLATE. Unknown
 *                      {placeholders} are an error.
 *   file_path          file: the outbox, absolute path. Created 0640 if
 *                      missing, opened for each message with O_APPEND.
 *   http_url           http: the gateway URL. https://, verified against
 *                      http_ca_file or the system trust store. http:// only
 *                      to a loopback address (127.0.0.0/8, [::1], localhost),
 *                      for a relay on the same host and for tests.
 *   http_body          http: the request body; placeholders {phone}, {text},
 *                      {code}, {minutes}, their values escaped for the
 *                      content type (JSON string escapes, or percent-encoding
 *                      for SMS_FORM_CTYPE). NULL: SMS_DEFAULT_HTTP_BODY.
 *   http_content_type  http: NULL: SMS_DEFAULT_HTTP_CTYPE.
 *   http_auth_header   http: an extra "Name: value" header line, typically
 *                      "Authorization: Bearer ..."; a secret, never logged.
 *                      NULL: none.
 *   http_ca_file       http: PEM CA bundle for a private gateway; with it the
 *                      URL must be https. NULL: the system trust store.
 *   exec_command       exec: absolute path of an executable, run without a
 *                      shell as `command PHONE` with the text on stdin,
 *                      stdout and stderr to /dev/null, in its own process
 *                      group, with the daemon's environment.
 *   timeout_ms         total deadline of one message (http: all attempts and
 *                      the waits between them; exec: the command is killed
 *                      with SIGKILL, its whole process group, when it passes);
 *                      0: SMS_DEFAULT_TIMEOUT_MS; at most SMS_MAX_TIMEOUT_MS.
 *   retries            http: further attempts after a transport error or a
 *                      5xx answer (never after a 4xx), 0..SMS_MAX_RETRIES,
 *                      waiting 200 ms, 400 ms, ... (at most 2 s) between them.
 *   max_in_flight      messages in flight at once (sms_send() refuses more);
 *                      0: SMS_DEFAULT_MAX_FLIGHT.
 */
struct sms_settings {
    enum sms_kind kind;
    const char *template;
    const char *file_path;
    const char *http_url;
    const char *http_body;
    const char *http_content_type;
    const char *http_auth_header;
    const char *http_ca_file;
    const char *exec_command;
    int timeout_ms;
    int retries;
    size_t max_in_flight;
};

/*
 * The end of one message: <ok> true when the provider took it (file written,
 * gateway answered 2xx, command exited 0); else <error> says why (valid only
 * during the call; SMS_SHUTDOWN_ERROR from sms_free()). The callback may call
 * sms_send() but must not free the provider.
 */
typedef void (*sms_done_cb)(void *arg, bool ok, const char *error);

struct sms_stats {
    uint64_t sent;    /* callbacks with ok */
    uint64_t failed;  /* callbacks without */
    size_t in_flight; /* accepted, callback not yet called */
};

struct sms_provider;

/* "file", "http", "exec". */
const char *sms_kind_name(enum sms_kind k);

/* Parses a kind name; returns 0, or -1 for an unknown name. */
int sms_kind_parse(const char *name, enum sms_kind *out) MFA_MUSTCHECK;

/*
 * Checks <s> without touching anything but reading the file system (for
 * --check-config): templates and their placeholders, URL scheme and host,
 * header syntax, limits, that the command is an absolute path to an
 * executable file and the CA file and the outbox's directory exist. Returns
 * 0, or -1 with *err naming the setting.
 */
int sms_check(const struct sms_settings *s, char **err) MFA_MUSTCHECK;

/*
 * Makes a provider on <base> (which must outlive it) after sms_check(); the
 * file provider creates the outbox if missing (so call it as the user the
 * daemon serves as), the http provider loads the CA file. Returns the
 * provider, or NULL with *err.
 */
struct sms_provider *sms_new(struct event_base *base, const struct sms_settings *s,
                             char **err) MFA_MUSTCHECK;

/*
 * Sends the message text (the template with <code> and <ttl_minutes>) to
 * <phone> (must pass sms_phone_valid()). <code>: 4 to 16 ASCII digits;
 * <ttl_minutes>: 0..1440. The caller may wipe <code> when this returns.
 *
 * Returns 0 when the message was accepted: <cb>(<arg>, ok, error) is then
 * called exactly once, later, from the loop, or from sms_free(). Returns -1
 * with *err, and <cb> is never called, on a caller error (bad phone or code,
 * NULL cb), when max_in_flight messages are in flight, when the rendered text
 * is longer than SMS_TEXT_MAX, or when out of memory.
 */
int sms_send(struct sms_provider *p, const char *phone, const char *code, int ttl_minutes,
             sms_done_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/* Messages accepted whose callback has not been called yet. */
size_t sms_in_flight(const struct sms_provider *p);

/* Counters since sms_new(), into *out. */
void sms_get_stats(const struct sms_provider *p, struct sms_stats *out);

/*
 * Frees the provider. Every message still in flight ends first, from inside
 * this call, with ok false and SMS_SHUTDOWN_ERROR (a command still running is
 * killed with SIGKILL and reaped). NULL is fine. Not from a callback.
 */
void sms_free(struct sms_provider *p);

/*
 * True when <phone> is a number a provider accepts: an optional '+' and 3 to
 * 20 ASCII digits, nothing else (no spaces: store numbers normalized). The
 * exec provider passes it as an argument, so it can never look like an option.
 */
bool sms_phone_valid(const char *phone);

/*
 * Renders the message template <tmpl>: {code} becomes <code>, {minutes}
 * <minutes> in decimal; any other text, unknown placeholders included, is
 * copied. Writes the text and a NUL to <out>. Returns the length, or -1 when
 * it does not fit in <size> bytes (out is then "").
 */
int sms_render(const char *tmpl, const char *code, int minutes, char *out, size_t size);

enum sms_escape {
    SMS_ESC_JSON = 0, /* inside a JSON string: RFC 8259 §7 escapes */
    SMS_ESC_FORM,     /* percent-encoding of all but A-Z a-z 0-9 - . _ ~ */
};

/*
 * Renders an http body template <tmpl>: {phone}, {text}, {code} and {minutes}
 * become their values escaped with <esc>; the template's own text is copied
 * as it is. Returns the length, or -1 when it does not fit (out is then "").
 */
int sms_render_body(const char *tmpl, enum sms_escape esc, const char *phone, const char *text,
                    const char *code, int minutes, char *out, size_t size);

/*
 * Writes <s> escaped with <esc> and a NUL to <out>. Returns the length, or -1
 * when it does not fit (out is then "").
 */
int sms_escape_str(enum sms_escape esc, const char *s, char *out, size_t size);

#endif
