/*
 * Logging: one line per event, key=value fields, to stderr or syslog.
 *
 * A call names the event first and then its fields, printf-style:
 *
 *     log_info("pg.started pid=%d port=%d dir=%s", pid, port, dir);
 *
 * The format is checked by the compiler, and every %s argument is quoted and
 * escaped when it holds anything but plain printable characters, so a value
 * from the network cannot forge a second line or a field. Supported
 * conversions: %s %c %d %i %u %x with the l, ll and z modifiers, and %%.
 *
 * Secrets (PINs, seeds, OTP codes, API keys) are never passed to the log;
 * phone numbers go through log_mask_phone() first.
 */
#ifndef MFA_LOG_H
#define MFA_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO,
    LOG_LVL_NOTICE,
    LOG_LVL_WARNING,
    LOG_LVL_ERROR,
};

enum log_target {
    LOG_TO_STDERR = 0,
    LOG_TO_SYSLOG,
};

/* The longest line written; longer ones end in " truncated=1". */
#define LOG_LINE_MAX 2048

/*
 * Sets the program name, where lines go and the lowest level written. May be
 * called again (SIGHUP) to change them; never fails.
 */
void log_setup(const char *ident, enum log_target target, enum log_level min_level);

/* Reopens the log after a SIGHUP (syslog: closelog and openlog again). */
void log_reopen(void);

/* Returns true when a line of <level> would be written. */
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_debug(...)  log_write(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)   log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...) log_write(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...)   log_write(LOG_LVL_WARNING, __VA_ARGS__)
#define log_error(...)  log_write(LOG_LVL_ERROR, __VA_ARGS__)

/*
 * Formats <fmt> into <buf> of <size> bytes as log_write() does (quoting %s
 * values). Returns the length written; the result is always NUL-terminated
 * and cut at a character boundary with " truncated=1" when it did not fit.
 */
size_t log_format(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t log_vformat(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Level names: "debug", "info", "notice", "warning", "error". */
const char *log_level_name(enum log_level level);

/* Parses a level name; returns 0, or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *out) MFA_MUSTCHECK;

/*
 * Writes a masked copy of <phone> into <buf>: the first three and the last
 * two characters stay, every other one becomes '*' ("+4917012345678" gives
 * "+49*********78"); numbers of six characters or fewer keep only the last
 * two; a number that does not fit <buf> gives "***". Returns <buf>. NULL
 * gives "-".
 */
const char *log_mask_phone(const char *phone, char *buf, size_t size);

#endif
