/*
 * SMS delivery (node/sms*.c) on a real event loop: templates and escaping,
 * settings checks, the file outbox (a parseable JSON line, the callback once
 * and never inside sms_send), and the exec provider with small shell scripts
 * (success with phone and text delivered and no descriptor leaked, a failing
 * exit status, a command killed at its deadline while a 10 ms timer keeps
 * ticking, sms_free killing what runs) — never a zombie left behind. The http
 * provider is tested against real servers in
 * tests/integration/test_node_sms_http.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "sms.h"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- fixtures ---- */

struct fx {
    struct event_base *base;
    char dir[64];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (!fx)
        return -1;
    fx->base = event_base_new();
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/mfa-sms-XXXXXX");
    if (!fx->base || !mkdtemp(fx->dir))
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static void path_in(const struct fx *fx, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", fx->dir, name);
}

static void write_script(const struct fx *fx, const char *name, const char *body, char *path,
                         size_t size)
{
    FILE *f;

    path_in(fx, name, path, size);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

/* Reads a whole small file into <buf>; returns its length or -1. */
static ssize_t read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

/* A callback's record. */
struct done {
    int calls;
    bool ok;
    char error[256];
    bool in_send; /* set around sms_send(): a callback then is a bug */
    bool called_in_send;
    double at;
};

static void on_done(void *arg, bool ok, const char *error)
{
    struct done *d = arg;

    d->calls++;
    d->ok = ok;
    d->at = now_s();
    if (d->in_send)
        d->called_in_send = true;
    snprintf(d->error, sizeof(d->error), "%s", error ? error : "");
    assert_true(ok ? error == NULL : error != NULL);
}

static int send_one(struct sms_provider *p, struct done *d, const char *phone, const char *code,
                    char **err)
{
    int rc;

    d->in_send = true;
    rc = sms_send(p, phone, code, 5, on_done, d, err);
    d->in_send = false;
    return rc;
}

/* A 10 ms timer that records how regularly the loop ran. */
struct ticker {
    int ticks;
    double last, max_gap;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ticker *t = arg;
    double n = now_s();

    (void)fd;
    (void)what;
    if (t->ticks > 0 && n - t->last > t->max_gap)
        t->max_gap = n - t->last;
    t->last = n;
    t->ticks++;
}

/* Runs <base> until <d> got its callback or <deadline_s> passed; returns the call count. */
static int run_until_done(struct event_base *base, struct done *d, double deadline_s,
                          struct ticker *ticker)
{
    struct timeval ten_ms = { 0, 10000 };
    struct ticker own = { 0 };
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, ticker ? ticker : &own);
    double end = now_s() + deadline_s;

    assert_non_null(tick);
    assert_int_equal(event_add(tick, &ten_ms), 0);
    while (d->calls == 0 && now_s() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return d->calls;
}

/* No child of this process is left, running or zombie. */
static void assert_no_children(void)
{
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ---- templates ---- */

static void test_render(void **state)
{
    char out[128];

    (void)state;
    assert_int_equal(
        sms_render("{code} is your sign-in code ({minutes} min)", "123456", 5, out, sizeof(out)),
        strlen("123456 is your sign-in code (5 min)"));
    assert_string_equal(out, "123456 is your sign-in code (5 min)");
    /* Unknown placeholders and stray braces are copied. */
    assert_true(sms_render("{{code}} {foo} {code {} x{", "42424242", 10, out, sizeof(out)) > 0);
    assert_string_equal(out, "{42424242} {foo} {code {} x{");
    assert_true(sms_render("Code: {code}{code}", "123456", 1, out, sizeof(out)) > 0);
    assert_string_equal(out, "Code: 123456123456");
    /* Exactly fitting, then one byte short. */
    assert_int_equal(sms_render("ab{code}", "123456", 1, out, 9), 8);
    assert_int_equal(sms_render("ab{code}", "123456", 1, out, 8), -1);
    assert_string_equal(out, "");
}

static void test_escape(void **state)
{
    char out[128];

    (void)state;
    assert_true(sms_escape_str(SMS_ESC_JSON, "a\"b\\c\nd\te\x01\x7f\xc3\xa9/", out, sizeof(out)) >
                0);
    assert_string_equal(out, "a\\\"b\\\\c\\nd\\te\\u0001\\u007f\xc3\xa9/");
    assert_true(sms_escape_str(SMS_ESC_FORM, "+49 1/\xc3\xa4-._~&=", out, sizeof(out)) > 0);
    assert_string_equal(out, "%2B49%201%2F%C3%A4-._~%26%3D");
    assert_int_equal(sms_escape_str(SMS_ESC_JSON, "\"\"", out, 4), -1);
    assert_string_equal(out, "");
}

static void test_render_body(void **state)
{
    char out[512];
    json_t *j;
    json_error_t jerr;
    const char *text = "Your \"code\" is 123456\\\nBye \x02";

    (void)state;
    /* JSON: the values are escaped, the template's own quotes are not. */
    assert_true(sms_render_body(SMS_DEFAULT_HTTP_BODY, SMS_ESC_JSON, "+4917012345678", text,
                                "123456", 5, out, sizeof(out)) > 0);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "to")), "+4917012345678");
    assert_string_equal(json_string_value(json_object_get(j, "text")), text);
    json_decref(j);
    /* Form encoding, all four placeholders. */
    assert_true(sms_render_body("To={phone}&Body={text}&c={code}&m={minutes}", SMS_ESC_FORM,
                                "+1555", "a b&c=d", "123456", 7, out, sizeof(out)) > 0);
    assert_string_equal(out, "To=%2B1555&Body=a%20b%26c%3Dd&c=123456&m=7");
}

static void test_phone_valid(void **state)
{
    (void)state;
    assert_true(sms_phone_valid("+4917012345678"));
    assert_true(sms_phone_valid("017012345678"));
    assert_true(sms_phone_valid("112"));
    assert_false(sms_phone_valid(NULL));
    assert_false(sms_phone_valid(""));
    assert_false(sms_phone_valid("+"));
    assert_false(sms_phone_valid("12"));
    assert_false(sms_phone_valid("-h"));
    assert_false(sms_phone_valid("+49 170 1234"));
    assert_false(sms_phone_valid("++49170"));
    assert_false(sms_phone_valid("123456789012345678901")); /* 21 digits */
    assert_false(sms_phone_valid("1234;rm"));
}

/* ---- settings ---- */

static void check_fails(const struct sms_settings *s, const char *msg)
{
    char *err = NULL;

    assert_int_equal(sms_check(s, &err), -1);
    assert_non_null(err);
    if (!strstr(err, msg))
        fail_msg("expected \"%s\" in \"%s\"", msg, err);
    free(err);
}

static void test_check(void **state)
{
    struct fx *fx = *state;
    char outbox[128], script[128], plain[128];
    struct sms_settings s;
    enum sms_kind k;
    char *err = NULL;

    path_in(fx, "outbox.jsonl", outbox, sizeof(outbox));
    write_script(fx, "ok.sh", "exit 0\n", script, sizeof(script));
    path_in(fx, "plain", plain, sizeof(plain));
    assert_int_equal(close(open(plain, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), 0);

    s = (struct sms_settings){ .kind = SMS_FILE, .file_path = outbox };
    assert_int_equal(sms_check(&s, &err), 0);
    s.template = "Your code";
    check_fails(&s, "must contain {code}");
    s.template = "{code} {minute}";
    check_fails(&s, "unknown placeholder {minute}");
    s.template = NULL;
    s.file_path = "outbox.jsonl";
    check_fails(&s, "absolute");
    s.file_path = "/nonexistent-dir/outbox.jsonl";
    check_fails(&s, "no directory");
    s.file_path = outbox;
    s.retries = 11;
    check_fails(&s, "retries");
    s.retries = 0;
    s.timeout_ms = -1;
    check_fails(&s, "timeout");

    s = (struct sms_settings){ .kind = SMS_HTTP, .http_url = "https://sms.example.com/send" };
    assert_int_equal(sms_check(&s, &err), 0);
    s.http_url = "http://127.0.0.1:9/send";
    assert_int_equal(sms_check(&s, &err), 0);
    /* Empty optional strings (a config file's defaults) mean "not set". */
    s.template = s.http_body = s.http_content_type = s.http_auth_header = s.http_ca_file = "";
    assert_int_equal(sms_check(&s, &err), 0);
    s.template = s.http_body = s.http_content_type = s.http_auth_header = s.http_ca_file = NULL;
    s.http_url = "http://[::1]:9/send";
    assert_int_equal(sms_check(&s, &err), 0);
    s.http_url = "http://sms.example.com/send";
    check_fails(&s, "must be https");
    s.http_url = "http://10.0.0.1/send";
    check_fails(&s, "must be https");
    s.http_url = "ftp://127.0.0.1/send";
    check_fails(&s, "must be https");
    s.http_url = "http://127.0.0.1:9/send";
    s.http_ca_file = outbox;
    check_fails(&s, "with a CA file");
    s.http_url = "https://127.0.0.1:9/send";
    s.http_ca_file = "/nonexistent/ca.crt";
    check_fails(&s, "cannot read");
    s.http_ca_file = NULL;
    s.http_body = "{\"text\":\"{text}\"}";
    check_fails(&s, "must contain {phone}");
    s.http_body = "{\"to\":\"{phone}\",\"x\":\"{secret}\"}";
    check_fails(&s, "unknown placeholder {secret}");
    s.http_body = NULL;
    s.http_auth_header = "Authorization: Bearer x\r\nX-Evil: 1";
    check_fails(&s, "http_auth_header");
    s.http_auth_header = "no colon";
    check_fails(&s, "http_auth_header");
    s.http_auth_header = NULL;
    s.http_url = NULL;
    check_fails(&s, "required");

    s = (struct sms_settings){ .kind = SMS_EXEC, .exec_command = script };
    assert_int_equal(sms_check(&s, &err), 0);
    s.exec_command = "ok.sh";
    check_fails(&s, "absolute");
    s.exec_command = plain;
    check_fails(&s, "not an executable");
    s.exec_command = fx->dir;
    check_fails(&s, "not an executable");

    assert_int_equal(sms_kind_parse("exec", &k), 0);
    assert_int_equal(k, SMS_EXEC);
    assert_int_equal(sms_kind_parse("smtp", &k), -1);
    assert_string_equal(sms_kind_name(SMS_HTTP), "http");
    assert_null(err);
}

/* ---- file ---- */

static void test_file_outbox(void **state)
{
    struct fx *fx = *state;
    char outbox[128], buf[4096], *err = NULL;
    struct sms_settings s = { .kind = SMS_FILE, .template = "{code} is your \"code\"" };
    struct done d1 = { 0 }, d2 = { 0 };
    struct sms_provider *p;
    struct sms_stats st;
    struct stat sb;
    json_t *j;
    json_error_t jerr;
    char *nl;

    path_in(fx, "outbox.jsonl", outbox, sizeof(outbox));
    s.file_path = outbox;
    umask(022);
    p = sms_new(fx->base, &s, &err);
    assert_null(err);
    assert_non_null(p);
    /* Created at start, 0640. */
    assert_int_equal(stat(outbox, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);

    assert_int_equal(send_one(p, &d1, "+4917012345678", "123456", &err), 0);
    assert_int_equal(d1.calls, 0); /* never from inside sms_send */
    assert_int_equal(sms_in_flight(p), 1);
    /* Written already: the append is done in sms_send. */
    assert_true(read_file(outbox, buf, sizeof(buf)) > 0);
    assert_int_equal(run_until_done(fx->base, &d1, 5, NULL), 1);
    assert_false(d1.called_in_send);
    assert_true(d1.ok);
    assert_int_equal(sms_in_flight(p), 0);

    nl = strchr(buf, '\n');
    assert_non_null(nl);
    assert_null(strchr(nl + 1, '\n'));
    j = json_loadb(buf, (size_t)(nl - buf), 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "to")), "+4917012345678");
    assert_string_equal(json_string_value(json_object_get(j, "text")), "123456 is your \"code\"");
    /* "2024-05-01T12:00:00.123Z" */
    assert_int_equal(strlen(json_string_value(json_object_get(j, "at"))), 24);
    assert_int_equal(json_string_value(json_object_get(j, "at"))[23], 'Z');
    json_decref(j);

    /* A deleted outbox comes back; the second line is appended. */
    assert_int_equal(unlink(outbox), 0);
    assert_int_equal(send_one(p, &d2, "0170999", "654321", &err), 0);
    assert_int_equal(run_until_done(fx->base, &d2, 5, NULL), 1);
    assert_true(d2.ok);
    assert_true(read_file(outbox, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"text\":\"654321 is your \\\"code\\\"\""));

    /* Callers' mistakes are refused at once, without a callback. */
    assert_int_equal(send_one(p, &d2, "+49 170", "123456", &err), -1);
    assert_non_null(strstr(err, "phone"));
    mfa_free(err);
    assert_int_equal(send_one(p, &d2, "+4917012345678", "12a456", &err), -1);
    assert_non_null(strstr(err, "code"));
    mfa_free(err);
    assert_int_equal(d2.calls, 1);

    sms_get_stats(p, &st);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.in_flight, 0);
    sms_free(p);
}

static void test_file_write_failure_and_free(void **state)
{
    struct fx *fx = *state;
    char outbox[128], *err = NULL;
    struct sms_settings s = { .kind = SMS_FILE };
    struct done d1 = { 0 }, d2 = { 0 };
    struct sms_provider *p;

    path_in(fx, "outbox.jsonl", outbox, sizeof(outbox));
    s.file_path = outbox;
    p = sms_new(fx->base, &s, &err);
    assert_non_null(p);

    /* A line already written is reported as sent even when freed before the loop ran. */
    assert_int_equal(send_one(p, &d1, "+4917012345678", "123456", &err), 0);
    /* An outbox that cannot be written: the failure comes through the callback. */
    assert_int_equal(unlink(outbox), 0);
    assert_int_equal(mkdir(outbox, 0700), 0);
    assert_int_equal(send_one(p, &d2, "+4917012345678", "123456", &err), 0);
    assert_int_equal(d2.calls, 0);
    sms_free(p);
    assert_int_equal(d1.calls, 1);
    assert_true(d1.ok);
    assert_int_equal(d2.calls, 1);
    assert_false(d2.ok);
    assert_non_null(strstr(d2.error, "cannot open the SMS outbox"));
    assert_null(strstr(d2.error, "123456"));
    assert_int_equal(rmdir(outbox), 0);
}

/* ---- exec ---- */

static struct sms_provider *exec_provider(struct fx *fx, const char *script, int timeout_ms)
{
    struct sms_settings s = {
        .kind = SMS_EXEC,
        .exec_command = script,
        .template = "Code {code}, valid {minutes} min.\nDo not share it.",
        .timeout_ms = timeout_ms,
    };
    char *err = NULL;
    struct sms_provider *p = sms_new(fx->base, &s, &err);

    assert_null(err);
    assert_non_null(p);
    return p;
}

static void test_exec_delivers(void **state)
{
    struct fx *fx = *state;
    char script[128], body[1024], phone_file[160], text_file[160], fd_file[160], sig_file[160];
    char buf[512];
    sigset_t usr1, old;
    struct done d = { 0 };
    struct sms_provider *p;
    char *err = NULL;
    int devnull, leak_fd;

    /* A descriptor the daemon has open without O_CLOEXEC must not reach the child. */
    devnull = open("/dev/null", O_RDONLY);
    assert_true(devnull >= 0);
    leak_fd = fcntl(devnull, F_DUPFD, 100);
    assert_true(leak_fd >= 100);
    close(devnull);

    path_in(fx, "phone", phone_file, sizeof(phone_file));
    path_in(fx, "text", text_file, sizeof(text_file));
    path_in(fx, "fds", fd_file, sizeof(fd_file));
    path_in(fx, "sigs", sig_file, sizeof(sig_file));
    snprintf(body, sizeof(body),
             "printf '%%s|%%s' \"$1\" \"$#\" > '%s'\n"
             "cat > '%s'\n"
             "if [ -e /proc/$$/fd/%d ]; then echo leaked; else echo closed; fi > '%s'\n"
             "echo 'noise on stdout'; echo 'noise on stderr' >&2\n"
             "exec grep -E '^Sig(Blk|Ign):' /proc/self/status > '%s'\n",
             phone_file, text_file, leak_fd, fd_file, sig_file);
    write_script(fx, "deliver.sh", body, script, sizeof(script));
    p = exec_provider(fx, script, 10000);

    /* Neither a blocked signal nor the ignored SIGPIPE (main) reaches the child. */
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    assert_int_equal(sigprocmask(SIG_BLOCK, &usr1, &old), 0);
    assert_int_equal(send_one(p, &d, "+4917012345678", "042042", &err), 0);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
    assert_int_equal(d.calls, 0);
    assert_int_equal(sms_in_flight(p), 1);
    assert_int_equal(run_until_done(fx->base, &d, 20, NULL), 1);
    if (!d.ok)
        fail_msg("exec failed: %s", d.error);
    assert_int_equal(sms_in_flight(p), 0);
    assert_no_children();

    assert_true(read_file(phone_file, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "+4917012345678|1"); /* one argument: the phone */
    assert_true(read_file(text_file, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "Code 042042, valid 5 min.\nDo not share it.");
    assert_true(read_file(fd_file, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "closed\n");
    assert_true(read_file(sig_file, buf, sizeof(buf)) > 0);
    {
        unsigned long long blk = 1, ign = 1;

        assert_int_equal(sscanf(buf, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2);
        assert_int_equal(blk, 0);
        /* Signals 1-31 at their defaults (glibc's own 32 and 33 may show as ignored). */
        assert_int_equal(ign & 0x7fffffffULL, 0);
    }
    close(leak_fd);
    sms_free(p);
}

static void test_exec_failure_status(void **state)
{
    struct fx *fx = *state;
    char script[128];
    struct done d = { 0 };
    struct sms_provider *p;
    char *err = NULL;

    write_script(fx, "fail.sh", "cat > /dev/null\nexit 3\n", script, sizeof(script));
    p = exec_provider(fx, script, 10000);
    assert_int_equal(send_one(p, &d, "+4917012345678", "123456", &err), 0);
    assert_int_equal(run_until_done(fx->base, &d, 20, NULL), 1);
    assert_false(d.ok);
    assert_string_equal(d.error, "the command exited with status 3");
    assert_no_children();
    sms_free(p);
}

/* Whether process <pid> is gone (or only a zombie some other parent will reap). */
static bool process_gone(pid_t pid)
{
    char path[64], buf[256], *paren;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return true;
    paren = strrchr(buf, ')');
    return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

static void test_exec_killed_at_deadline(void **state)
{
    struct fx *fx = *state;
    char script[128], body[512], pid_file[160], buf[64];
    struct done d = { 0 };
    struct ticker t = { 0 };
    struct sms_provider *p;
    char *err = NULL;
    double start, elapsed, end;
    pid_t grandchild;

    /* The shell waits for a sleep of its own: the kill must reach the whole group. */
    path_in(fx, "sleep.pid", pid_file, sizeof(pid_file));
    snprintf(body, sizeof(body), "sleep 10 &\necho $! > '%s'\nwait\n", pid_file);
    write_script(fx, "slow.sh", body, script, sizeof(script));
    p = exec_provider(fx, script, 300);
    start = now_s();
    assert_int_equal(send_one(p, &d, "+4917012345678", "123456", &err), 0);
    assert_int_equal(run_until_done(fx->base, &d, 20, &t), 1);
    elapsed = d.at - start;
    printf("killed after %.3f s; %d ticks of 10 ms, longest gap %.1f ms\n", elapsed, t.ticks,
           t.max_gap * 1000);
    assert_false(d.ok);
    assert_non_null(strstr(d.error, "did not finish in 300 ms"));
    assert_true(elapsed >= 0.29 && elapsed < 3.0);
    /* The loop kept running meanwhile. */
    assert_true(t.ticks >= (int)(elapsed * 100 * 0.5));
    assert_true(t.max_gap < 0.25);
    assert_no_children();

    /* The grandchild died with its group. */
    assert_true(read_file(pid_file, buf, sizeof(buf)) > 0);
    grandchild = (pid_t)atoi(buf);
    assert_true(grandchild > 0);
    end = now_s() + 5;
    while (!process_gone(grandchild) && now_s() < end)
        usleep(10000);
    assert_true(process_gone(grandchild));
    sms_free(p);
}

static void test_exec_free_kills(void **state)
{
    struct fx *fx = *state;
    char script[128];
    struct done d1 = { 0 }, d2 = { 0 };
    struct sms_settings s = { .kind = SMS_EXEC, .max_in_flight = 1 };
    struct sms_provider *p;
    char *err = NULL;
    double start;

    write_script(fx, "forever.sh", "exec sleep 30\n", script, sizeof(script));
    s.exec_command = script;
    p = sms_new(fx->base, &s, &err);
    assert_non_null(p);
    assert_int_equal(send_one(p, &d1, "+4917012345678", "123456", &err), 0);
    /* max_in_flight reached. */
    assert_int_equal(send_one(p, &d2, "+4917012345678", "123456", &err), -1);
    assert_non_null(strstr(err, "too many"));
    mfa_free(err);
    /* Let it start, then shut down: killed, reaped, told. */
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    start = now_s();
    sms_free(p);
    assert_true(now_s() - start < 2.0);
    assert_int_equal(d1.calls, 1);
    assert_false(d1.ok);
    assert_string_equal(d1.error, SMS_SHUTDOWN_ERROR);
    assert_int_equal(d2.calls, 0);
    assert_no_children();
}

static void test_exec_cannot_run(void **state)
{
    struct fx *fx = *state;
    char script[128];
    struct done d = { 0 };
    struct sms_provider *p;
    char *err = NULL;

    /* Checked at start, gone at send time: reported through the callback. */
    write_script(fx, "vanishing.sh", "exit 0\n", script, sizeof(script));
    p = exec_provider(fx, script, 1000);
    assert_int_equal(unlink(script), 0);
    assert_int_equal(send_one(p, &d, "+4917012345678", "123456", &err), 0);
    assert_int_equal(d.calls, 0);
    assert_int_equal(run_until_done(fx->base, &d, 5, NULL), 1);
    assert_false(d.called_in_send);
    assert_false(d.ok);
    assert_non_null(strstr(d.error, "cannot run the command"));
    assert_no_children();
    sms_free(p);
}

/* Several at once, each with its own outcome. */
static void test_exec_concurrent(void **state)
{
    struct fx *fx = *state;
    char script[128];
    struct done d[6] = { { 0 } };
    struct sms_provider *p;
    char *err = NULL;
    const char *phones[6] = { "+111", "+222", "+333", "+444", "+555", "+666" };
    double end;
    int total;

    /* Numbers ending in an even digit fail. */
    write_script(fx, "parity.sh",
                 "cat > /dev/null\ncase \"$1\" in *[02468]) exit 1;; esac\nexit 0\n", script,
                 sizeof(script));
    p = exec_provider(fx, script, 10000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(send_one(p, &d[i], phones[i], "123456", &err), 0);
    assert_int_equal(sms_in_flight(p), 6);
    end = now_s() + 20;
    do {
        event_base_loop(fx->base, EVLOOP_ONCE);
        total = 0;
        for (int i = 0; i < 6; i++)
            total += d[i].calls;
    } while (total < 6 && now_s() < end);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].ok, i % 2 == 0);
    }
    assert_int_equal(sms_in_flight(p), 0);
    assert_no_children();
    sms_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_render_body),
        cmocka_unit_test(test_phone_valid),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_write_failure_and_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_delivers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_killed_at_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_free_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_cannot_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_concurrent, setup, teardown),
    };

    /* As the daemon does: a child must not inherit this. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
