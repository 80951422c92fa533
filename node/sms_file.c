/*
 * The file SMS provider: one JSON line per message appended to an outbox,
 * {"at": "<ISO-8601 UTC>", "to": "<phone>", "text": "<text>"}. The local demo
 * and the tests read codes from it; an operator can hand it to any tool that
 * tails a file.
 *
 * Each message opens the file with O_APPEND (creating it 0640 when missing,
 * so a rotated or deleted outbox comes back), writes the whole line with one
 * write(2) — lines of concurrent writers never interleave — and closes it.
 * That small local append is the only file I/O done on the loop; its outcome
 * reaches the caller from the loop's next turn.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "secrets.h"
#include "sms_priv.h"

#define PATH_LEN     4096 /* PATH_LEN on Linux */
#define OUTBOX_MODE  0640
#define OUTBOX_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY)
/* Escaped text (at most 6 bytes per byte) plus phone, time and punctuation. */
#define LINE_MAX_LEN (SMS_TEXT_MAX * 6 + 256)

int sms_file_check(const struct sms_settings *s, char **err)
{
    char dir[PATH_LEN];
    struct stat sb;

    if (!s->file_path || s->file_path[0] != '/')
        return err_set(err, "sms file provider: the outbox path must be absolute");
    if (strlen(s->file_path) >= sizeof(dir))
        return err_set(err, "sms file provider: the outbox path is too long");
    snprintf(dir, sizeof(dir), "%s", s->file_path);
    if (stat(dirname(dir), &sb) != 0 || !S_ISDIR(sb.st_mode))
        return err_set(err, "sms file provider: no directory %s for the outbox", dir);
    return 0;
}

int sms_file_init(struct sms_provider *p, char **err)
{
    int fd = open(p->file_path, OUTBOX_FLAGS, OUTBOX_MODE);

    if (fd < 0)
        return err_set(err, "cannot open the SMS outbox %s: %s", p->file_path, strerror(errno));
    close(fd);
    return 0;
}

/* "2024-05-01T12:00:00.123Z" */
static void iso_now(char *buf, size_t size)
{
    struct timespec t;
    struct tm tm;
    char secs[24];

    clock_gettime(CLOCK_REALTIME, &t);
    gmtime_r(&t.tv_sec, &tm);
    if (strftime(secs, sizeof(secs), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(secs, sizeof(secs), "9999-12-31T23:59:59");
    snprintf(buf, size, "%s.%03uZ", secs, (unsigned)(t.tv_nsec / 1000000) % 1000u);
}

/* Appends <line> (<len> bytes) to the outbox; returns 0, or -1 with <error> filled. */
static int append(const char *path, const char *line, size_t len, char *error, size_t esize)
{
    int fd = open(path, OUTBOX_FLAGS, OUTBOX_MODE);
    ssize_t n;

    if (fd < 0) {
        snprintf(error, esize, "cannot open the SMS outbox %s: %s", path, strerror(errno));
        return -1;
    }
    n = write(fd, line, len);
    if (n < 0 || (size_t)n != len) {
        snprintf(error, esize, "cannot write the SMS outbox %s: %s", path,
                 n < 0 ? strerror(errno) : "short write");
        close(fd);
        return -1;
    }
    if (close(fd) != 0) {
        snprintf(error, esize, "cannot write the SMS outbox %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int sms_file_send(struct sms_req *req, const char *phone, const char *text, char **err)
{
    char line[LINE_MAX_LEN], at[40], error[PATH_LEN + 128] = "";
    char esc_phone[64], esc_text[SMS_TEXT_MAX * 6];
    int len, rc;

    iso_now(at, sizeof(at));
    if (sms_escape_str(SMS_ESC_JSON, phone, esc_phone, sizeof(esc_phone)) < 0 ||
        sms_escape_str(SMS_ESC_JSON, text, esc_text, sizeof(esc_text)) < 0)
        return err_set(err, "the SMS text does not fit the outbox line");
    len = snprintf(line, sizeof(line), "{\"at\":\"%s\",\"to\":\"%s\",\"text\":\"%s\"}\n", at,
                   esc_phone, esc_text);
    secret_wipe(esc_text, sizeof(esc_text));
    if (len < 0 || (size_t)len >= sizeof(line)) {
        secret_wipe(line, sizeof(line));
        return err_set(err, "the SMS text does not fit the outbox line");
    }
    rc = append(req->p->file_path, line, (size_t)len, error, sizeof(error));
    secret_wipe(line, sizeof(line));
    return sms_req_defer(req, rc == 0, error, err);
}
