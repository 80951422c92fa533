/*
 * Fuzz target for the auth log spool reader (node/authlog_record.c): the
 * spool is untrusted input after a crash or a bad disk.
 *
 * The input is used as it is, without a NUL (the parser must respect the
 * length), as a stretch of a segment: authlog_scan() walks it once as the
 * middle of a file and once as its end, and authlog_entry_parse() takes it as
 * one line. Besides ASan/UBSan findings the target aborts when a result
 * breaks the contract: consumed past the input or not at a line boundary, a
 * whole line left unread,
 * parsed entry that fails authlog_entry_check(), or one that does not encode
 * and parse back to itself. Seeds: tests/fuzz/corpus/authlog/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authlog_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An entry the parser produced must be valid and survive a round trip. */
static void check_entry(const struct authlog_entry *e)
{
    char line[AUTHLOG_LINE_MAX + 1];
    struct authlog_entry back;
    long len;

    if (authlog_entry_check(e, NULL) != 0)
        abort();
    len = authlog_entry_encode(e, line, sizeof(line), NULL);
    if (len <= 0 || len > AUTHLOG_LINE_MAX || line[len - 1] != '\n')
        abort();
    if (authlog_entry_parse(line, (size_t)len, &back, NULL) != 0)
        abort();
    /* compare field by field: bytes after a NUL are unspecified */
    if (strcmp(e->node_id, back.node_id) != 0 || e->boot_epoch != back.boot_epoch ||
        e->seq != back.seq || e->at_ms != back.at_ms || strcmp(e->username, back.username) != 0 ||
        strcmp(e->method, back.method) != 0 || strcmp(e->result, back.result) != 0 ||
        strcmp(e->reason, back.reason) != 0 || strcmp(e->server_name, back.server_name) != 0 ||
        strcmp(e->server_ip, back.server_ip) != 0 || strcmp(e->client_ip, back.client_ip) != 0 ||
        strcmp(e->challenge_id, back.challenge_id) != 0)
        abort();
}

static int on_entry(void *arg, const struct authlog_entry *e)
{
    (*(uint64_t *)arg)++;
    check_entry(e);
    return 0;
}

static void scan(const char *buf, size_t size, bool at_eof)
{
    struct authlog_scan_result r;
    uint64_t seen = 0;

    authlog_scan(buf, size, at_eof, UINT64_MAX, on_entry, &seen, &r);
    if (r.consumed > size || r.records != seen || r.lines != r.records + r.corrupt)
        abort();
    if (at_eof && r.consumed != size)
        abort();
    /* what is taken ends at a line boundary (or is all of it) */
    if (r.consumed > 0 && r.consumed < size && buf[r.consumed - 1] != '\n')
        abort();
    /* in mid-file only a short partial line is left for the next read */
    if (!at_eof && (memchr(buf + r.consumed, '\n', size - r.consumed) ||
                    size - r.consumed >= AUTHLOG_LINE_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so reading one byte past <size> is an ASan finding */
    char *buf = malloc(size ? size : 1);
    struct authlog_entry e;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    scan(buf, size, false);
    scan(buf, size, true);
    if (authlog_entry_parse(buf, size, &e, NULL) == 0)
        check_entry(&e);
    free(buf);
    return 0;
}
