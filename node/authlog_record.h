/*
 * One auth log record as it lives in the spool: a line of JSON (DESIGN §2).
 *
 * This file knows nothing of files, events or PostgreSQL; it turns a
 * caller's record into a bounded, valid entry, an entry into a spool line,
 * and a spool line back into an entry. The spool is untrusted input (a host
 * crash leaves a torn line, a disk returns garbage), so the parser checks
 * every bound and type and never trusts a length it did not measure; it is
 * the target of tests/fuzz/fuzz_authlog.c.
 *
 * A line, one JSON object and '\n', keys in this order:
 *
 *     {"v":1,"node_id":"n1","boot_epoch":7,"seq":42,"at_ms":1700000000123,
 *      "username":"alice","method":"totp","result":"accepted","reason":"",
 *      "server_name":"vpn1","server_ip":"10.0.0.1","client_ip":null,
 *      "challenge_id":null}
 *
 * The key names are the auth_log column names (at_ms: milliseconds since
 * 1970 UTC), so a batch of entries is shipped as json_to_recordset() input.
 * No field holds a secret: there is none for a code, a PIN or a seed.
 */
#ifndef MFA_AUTHLOG_RECORD_H
#define MFA_AUTHLOG_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "mem.h"

/* Format version of a line ("v"); a line of another version is refused. */
#define AUTHLOG_RECORD_VERSION 1

/* Bounds in bytes (without NUL) of the text fields. */
#define AUTHLOG_USERNAME_MAX     128
#define AUTHLOG_METHOD_MAX       32
#define AUTHLOG_RESULT_MAX       9 /* "challenge" */
#define AUTHLOG_REASON_MAX       256
#define AUTHLOG_SERVER_NAME_MAX  128
#define AUTHLOG_IP_MAX           45 /* INET6_ADDRSTRLEN - 1 */
#define AUTHLOG_CHALLENGE_ID_MAX 64

/*
 * The longest line a valid entry can take, '\n' included: every text field
 * at its bound with each byte escaped as \uXXXX (6 bytes), plus keys and
 * numbers. Longer lines are corrupt without being parsed.
 */
#define AUTHLOG_LINE_MAX 8192

/* The latest at_ms accepted: 9999-12-31T23:59:59.999Z. */
#define AUTHLOG_AT_MS_MAX INT64_C(253402300799999)

/*
 * A record with every field checked. Text is NUL-terminated valid UTF-8
 * within its bound; an empty server_ip, client_ip or challenge_id stands for
 * SQL NULL. boot_epoch and seq are 1 .. INT64_MAX (PostgreSQL bigint).
 */
struct authlog_entry {
    char node_id[NODE_ID_MAX + 1];
    uint64_t boot_epoch;
    uint64_t seq;
    int64_t at_ms;
    char username[AUTHLOG_USERNAME_MAX + 1];
    char method[AUTHLOG_METHOD_MAX + 1];
    char result[AUTHLOG_RESULT_MAX + 1];
    char reason[AUTHLOG_REASON_MAX + 1];
    char server_name[AUTHLOG_SERVER_NAME_MAX + 1];
    char server_ip[AUTHLOG_IP_MAX + 1];
    char client_ip[AUTHLOG_IP_MAX + 1];
    char challenge_id[AUTHLOG_CHALLENGE_ID_MAX + 1];
};

/* True for the four results the auth_log CHECK constraint allows. */
bool authlog_result_valid(const char *result);

/*
 * Copies <src> (NULL reads as "") into <dst> of <size> bytes as valid UTF-8:
 * every byte that does not start a well-formed sequence becomes U+FFFD, and
 * the copy stops before the first character that would not fit, so it is
 * never cut inside a character. Returns true when nothing was replaced or
 * cut. <size> must be at least 1.
 */
bool authlog_text_copy(char *dst, size_t size, const char *src);

/*
 * Writes the canonical text of the IPv4 or IPv6 address <src> into <dst> of
 * AUTHLOG_IP_MAX + 1 bytes ("::FFFF:10.0.0.1" gives "::ffff:10.0.0.1").
 * Anything else (NULL, empty, a name, a prefix, a zone, too long) gives ""
 * (SQL NULL) and false.
 */
bool authlog_ip_copy(char dst[AUTHLOG_IP_MAX + 1], const char *src);

/*
 * Checks an entry as the parser would (the bounds above, node id, result,
 * positive epoch and seq, at_ms in 0 .. AUTHLOG_AT_MS_MAX, addresses
 * canonical or empty, all text valid UTF-8). Returns 0, or -1 with *err.
 */
int authlog_entry_check(const struct authlog_entry *e, char **err) MFA_MUSTCHECK;

/*
 * Writes <e> as one line, '\n' included and a NUL after it, into <buf> of
 * <size> bytes (AUTHLOG_LINE_MAX + 1 always suffices). Returns the length
 * without the NUL, or -1 with *err when <e> fails authlog_entry_check() or
 * does not fit.
 */
long authlog_entry_encode(const struct authlog_entry *e, char *buf, size_t size,
                          char **err) MFA_MUSTCHECK;

/*
 * Parses one line of <len> bytes (the trailing '\n' optional; nothing else
 * may follow the object) into *out. Strict: an object, no duplicate keys,
 * "v" equal to AUTHLOG_RECORD_VERSION, every field of the right type and
 * within bounds as authlog_entry_check() says; unknown keys are ignored (a
 * newer writer may add some). Returns 0, or -1 with *err; *out is then
 * unspecified. Never reads past <len>.
 */
int authlog_entry_parse(const char *line, size_t len, struct authlog_entry *out,
                        char **err) MFA_MUSTCHECK;

/*
 * Called by authlog_scan() for each valid entry; returns 0 to go on, 1 to
 * stop after this entry (it counts as taken), or -1 to stop before it (it is
 * not consumed, e.g. a buffer is full).
 */
typedef int (*authlog_scan_fn)(void *arg, const struct authlog_entry *e);

struct authlog_scan_result {
    size_t consumed; /* bytes of whole lines taken, from the start */
    uint64_t lines;  /* lines taken: records, corrupt lines, a torn tail */
    uint64_t records;
    uint64_t corrupt; /* lines that did not parse, torn tail included */
    bool torn_tail;   /* the data ended in a partial line, taken as corrupt */
};

/*
 * Walks the lines of <buf>[0 .. <len>), a stretch of a spool segment that
 * starts at a line boundary, and calls <fn> for each that parses; corrupt
 * lines are counted and skipped. A partial line at the end (no '\n') is left
 * for the next read unless <at_eof> (then it is a torn tail: taken, counted
 * as corrupt) or it is already AUTHLOG_LINE_MAX long (it can only be corrupt:
 * taken, counted). Stops after <max_records> records or when <fn> says so.
 * Fills *out; never fails.
 */
void authlog_scan(const char *buf, size_t len, bool at_eof, uint64_t max_records,
                  authlog_scan_fn fn, void *arg, struct authlog_scan_result *out);

#endif
