/*
 * What sms.c shares with the providers (sms_file.c, sms_http.c, sms_exec.c);
 * not for other modules.
 *
 * A message in flight is a struct sms_req, linked in its provider's list from
 * sms_send() until sms_req_finish() calls the user's callback and frees it.
 * A provider that knows the outcome at once (the file append, a command that
 * could not be started) records it with sms_req_defer(), which ends the
 * request from the loop's next turn.
 */
#ifndef MFA_NODE_SMS_PRIV_H
#define MFA_NODE_SMS_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sms.h"

struct httpclient;

struct sms_req {
    struct sms_provider *p;
    struct sms_req *prev, *next;
    sms_done_cb cb;
    void *arg;
    struct event *timer;  /* deferred end, http backoff, exec timeout */
    uint64_t deadline_ms; /* sms_now_ms() by which it must be over */
    /* deferred end (sms_req_defer) */
    bool deferred;
    bool defer_ok;
    char *defer_error;
    /* http */
    char *body;
    size_t body_len;
    int attempts;
    bool http_active; /* a request of httpclient's is pending */
    char *last_error;
    /* exec */
    pid_t pid; /* 0: no child */
    int pidfd; /* -1: none (then child_ev polls) */
    struct event *child_ev;
    bool killed;
};

struct sms_provider {
    struct event_base *base;
    enum sms_kind kind;
    char *template;
    int timeout_ms, retries;
    size_t max_in_flight;
    /* file */
    char *file_path;
    /* http */
    char *http_url, *http_body, *http_ctype_line, *http_auth_header;
    enum sms_escape http_esc;
    struct httpclient *http;
    /* exec */
    char *exec_command;

    struct sms_req *reqs;
    struct sms_stats stats;
    bool closing;
};

/* Monotonic milliseconds. */
uint64_t sms_now_ms(void);

/*
 * Ends <req>: unlinks and counts it, calls the callback with <ok>/<error>,
 * then releases what it holds (timer, child watch, body) and frees it. The
 * caller must not touch <req> afterwards.
 */
void sms_req_finish(struct sms_req *req, bool ok, const char *error);

/*
 * Records the outcome of <req> and ends it from the loop's next turn. Returns
 * 0, or -1 with *err when out of memory (nothing recorded).
 */
int sms_req_defer(struct sms_req *req, bool ok, const char *error, char **err) MFA_MUSTCHECK;

/*
 * Checks that every "{name}" in <tmpl> is one of <allowed> (NULL-terminated,
 * at most 8) and that the <required> ones (NULL-terminated) appear; at most
 * SMS_BODY_MAX - 1 bytes. <what> names the setting in *err.
 */
int sms_template_check(const char *tmpl, const char *what, const char *const *allowed,
                       const char *const *required, char **err) MFA_MUSTCHECK;

/* file provider */
int sms_file_check(const struct sms_settings *s, char **err) MFA_MUSTCHECK;
int sms_file_init(struct sms_provider *p, char **err) MFA_MUSTCHECK;
int sms_file_send(struct sms_req *req, const char *phone, const char *text,
                  char **err) MFA_MUSTCHECK;

/* http provider */
int sms_http_check(const struct sms_settings *s, char **err) MFA_MUSTCHECK;
int sms_http_init(struct sms_provider *p, const struct sms_settings *s, char **err) MFA_MUSTCHECK;
int sms_http_send(struct sms_req *req, const char *phone, const char *text, const char *code,
                  int minutes, char **err) MFA_MUSTCHECK;
/* Aborts every pending gateway request (their requests end with SMS_SHUTDOWN_ERROR). */
void sms_http_close(struct sms_provider *p);

/* exec provider */
int sms_exec_check(const struct sms_settings *s, char **err) MFA_MUSTCHECK;
int sms_exec_send(struct sms_req *req, const char *phone, const char *text,
                  char **err) MFA_MUSTCHECK;
/* Kills and reaps <req>'s child if it has one (blocking only for the reap of a SIGKILLed child). */
void sms_exec_kill(struct sms_req *req);
/* Releases <req>'s child watch (pidfd and its event); the child must be reaped. */
void sms_exec_release(struct sms_req *req);

#endif
