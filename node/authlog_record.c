/*
 * Auth log records: validation, the spool line format and its parser; see
 * authlog_record.h.
 *
 * Invariant: an entry that passes authlog_entry_check() encodes to a line of
 * at most AUTHLOG_LINE_MAX bytes that authlog_entry_parse() turns back into
 * the same entry, and that PostgreSQL accepts into auth_log (every CHECK and
 * NOT NULL holds, the text is valid UTF-8 without NUL, addresses are inet).
 */
#include "authlog_record.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "errmsg.h"

static const char *const results[] = { "accepted", "rejected", "challenge", "error" };

bool authlog_result_valid(const char *result)
{
    if (!result)
        return false;
    for (size_t i = 0; i < MFA_ARRAY_LEN(results); i++) {
        if (strcmp(result, results[i]) == 0)
            return true;
    }
    return false;
}

/*
 * Length of the well-formed UTF-8 sequence at <s> (at most <avail> bytes),
 * or 0 when it is not one (RFC 3629 §4: no overlong forms, no surrogates,
 * nothing past U+10FFFF).
 */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static bool utf8_valid(const char *s)
{
    size_t len = strlen(s);

    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len((const unsigned char *)s + i, len - i);

        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

bool authlog_text_copy(char *dst, size_t size, const char *src)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    const unsigned char *s = (const unsigned char *)(src ? src : "");
    size_t len = strlen((const char *)s), out = 0;
    bool clean = true;

    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(s + i, len - i);
        const void *from = s + i;
        size_t take = n;

        if (n == 0) {
            from = replacement;
            take = 3;
            n = 1;
            clean = false;
        }
        if (out + take > size - 1) {
            clean = false;
            break;
        }
        memcpy(dst + out, from, take);
        out += take;
        i += n;
    }
    dst[out] = '\0';
    return clean;
}

bool authlog_ip_copy(char dst[AUTHLOG_IP_MAX + 1], const char *src)
{
    unsigned char addr[sizeof(struct in6_addr)];

    dst[0] = '\0';
    if (!src || !*src || strlen(src) > AUTHLOG_IP_MAX)
        return false;
    if (inet_pton(AF_INET, src, addr) == 1)
        return inet_ntop(AF_INET, addr, dst, AUTHLOG_IP_MAX + 1) != NULL;
    if (inet_pton(AF_INET6, src, addr) == 1)
        return inet_ntop(AF_INET6, addr, dst, AUTHLOG_IP_MAX + 1) != NULL;
    return false;
}

/* True when <ip> is "" or the canonical text of an address. */
static bool ip_canonical(const char *ip)
{
    char canon[AUTHLOG_IP_MAX + 1];

    if (!*ip)
        return true;
    return authlog_ip_copy(canon, ip) && strcmp(canon, ip) == 0;
}

/* Checks a text field: NUL within <size>, valid UTF-8. */
static int check_text(const char *name, const char *s, size_t size, char **err)
{
    if (!memchr(s, '\0', size))
        return err_set(err, "%s is longer than %zu bytes", name, size - 1);
    if (!utf8_valid(s))
        return err_set(err, "%s is not valid UTF-8", name);
    return 0;
}

int authlog_entry_check(const struct authlog_entry *e, char **err)
{
    if (!memchr(e->node_id, '\0', sizeof(e->node_id)) || !node_id_valid(e->node_id))
        return err_set(err, "node_id is not a valid node id");
    if (e->boot_epoch < 1 || e->boot_epoch > (uint64_t)INT64_MAX)
        return err_set(err, "boot_epoch is out of range");
    if (e->seq < 1 || e->seq > (uint64_t)INT64_MAX)
        return err_set(err, "seq is out of range");
    if (e->at_ms < 0 || e->at_ms > AUTHLOG_AT_MS_MAX)
        return err_set(err, "at_ms is out of range");
    if (check_text("username", e->username, sizeof(e->username), err) < 0 ||
        check_text("method", e->method, sizeof(e->method), err) < 0 ||
        check_text("result", e->result, sizeof(e->result), err) < 0 ||
        check_text("reason", e->reason, sizeof(e->reason), err) < 0 ||
        check_text("server_name", e->server_name, sizeof(e->server_name), err) < 0 ||
        check_text("server_ip", e->server_ip, sizeof(e->server_ip), err) < 0 ||
        check_text("client_ip", e->client_ip, sizeof(e->client_ip), err) < 0 ||
        check_text("challenge_id", e->challenge_id, sizeof(e->challenge_id), err) < 0)
        return -1;
    if (!e->method[0])
        return err_set(err, "method is empty");
    if (!authlog_result_valid(e->result))
        return err_set(err, "result is not accepted, rejected, challenge or error");
    if (!ip_canonical(e->server_ip))
        return err_set(err, "server_ip is not an address");
    if (!ip_canonical(e->client_ip))
        return err_set(err, "client_ip is not an address");
    return 0;
}

/*
 * The line is written by hand rather than through jansson: it is on the
 * sign-in path, and its shape is fixed. Text is already valid UTF-8 (checked
 * above), so only RFC 8259 §7's musts are escaped: '"', '\\' and the
 * control characters below U+0020.
 */
struct out {
    char *buf;
    size_t size, len;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->overflow || n > o->size - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* ,"<key>":"<escaped s>", or null for "" when <empty_is_null>; <key> needs no escaping. */
static void put_text(struct out *o, const char *key, const char *s, bool empty_is_null)
{
    static const char hex[] = "0123456789abcdef";

    put_str(o, ",\"");
    put_str(o, key);
    if (empty_is_null && !*s) {
        put_str(o, "\":null");
        return;
    }
    put_str(o, "\":\"");
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(o, run, (size_t)(s - run));
        run = s + 1;
        if (c == '\0')
            break;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };

            put(o, esc, 2);
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

            put(o, esc, 6);
        }
    }
    put_str(o, "\"");
}

long authlog_entry_encode(const struct authlog_entry *e, char *buf, size_t size, char **err)
{
    struct out o = { buf, size, 0, false };
    char num[128];

    if (authlog_entry_check(e, err) < 0)
        return -1;
    snprintf(num, sizeof(num),
             "{\"v\":%d,\"node_id\":\"%s\",\"boot_epoch\":%" PRIu64 ",\"seq\":%" PRIu64
             ",\"at_ms\":%" PRId64,
             AUTHLOG_RECORD_VERSION, e->node_id, e->boot_epoch, e->seq, e->at_ms);
    put_str(&o, num);
    put_text(&o, "username", e->username, false);
    put_text(&o, "method", e->method, false);
    put_text(&o, "result", e->result, false);
    put_text(&o, "reason", e->reason, false);
    put_text(&o, "server_name", e->server_name, false);
    put_text(&o, "server_ip", e->server_ip, true);
    put_text(&o, "client_ip", e->client_ip, true);
    put_text(&o, "challenge_id", e->challenge_id, true);
    put(&o, "}\n", 3); /* with the NUL */
    if (o.overflow || o.len - 1 > AUTHLOG_LINE_MAX)
        return err_set(err, "record does not fit in %zu bytes", size);
    return (long)(o.len - 1);
}

/* Copies string member <key> of <o> into <dst> of <size> bytes; null allowed when <nullable>. */
static int get_text(json_t *o, const char *key, char *dst, size_t size, bool nullable, char **err)
{
    json_t *v = json_object_get(o, key);
    size_t len;

    if (!v)
        return err_set(err, "%s is missing", key);
    if (json_is_null(v) && nullable) {
        dst[0] = '\0';
        return 0;
    }
    if (!json_is_string(v))
        return err_set(err, "%s is not a string", key);
    len = json_string_length(v);
    if (len >= size)
        return err_set(err, "%s is longer than %zu bytes", key, size - 1);
    /* jansson refuses \u0000 unless JSON_ALLOW_NUL, so strlen() == len here */
    memcpy(dst, json_string_value(v), len + 1);
    if (strlen(dst) != len)
        return err_set(err, "%s holds a NUL", key);
    if (nullable && len == 0)
        return err_set(err, "%s is empty (absent is null)", key);
    return 0;
}

static int get_int(json_t *o, const char *key, json_int_t min, json_int_t max, json_int_t *out,
                   char **err)
{
    json_t *v = json_object_get(o, key);

    if (!v)
        return err_set(err, "%s is missing", key);
    if (!json_is_integer(v))
        return err_set(err, "%s is not an integer", key);
    *out = json_integer_value(v);
    if (*out < min || *out > max)
        return err_set(err, "%s is out of range", key);
    return 0;
}

int authlog_entry_parse(const char *line, size_t len, struct authlog_entry *out, char **err)
{
    json_error_t jerr;
    json_t *o = NULL;
    json_int_t v, epoch = 0, seq = 0, at = 0;

    memset(out, 0, sizeof(*out));
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len == 0)
        return err_set(err, "empty line");
    if (len >= AUTHLOG_LINE_MAX)
        return err_set(err, "line longer than %d bytes", AUTHLOG_LINE_MAX);
    if (memchr(line, '\n', len))
        return err_set(err, "more than one line");
    o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return err_set(err, "not JSON: %s at column %d", jerr.text, jerr.column);
    if (!json_is_object(o)) {
        err_set(err, "not a JSON object");
        goto fail;
    }
    if (get_int(o, "v", AUTHLOG_RECORD_VERSION, AUTHLOG_RECORD_VERSION, &v, err) < 0 ||
        get_text(o, "node_id", out->node_id, sizeof(out->node_id), false, err) < 0 ||
        get_int(o, "boot_epoch", 1, INT64_MAX, &epoch, err) < 0 ||
        get_int(o, "seq", 1, INT64_MAX, &seq, err) < 0 ||
        get_int(o, "at_ms", 0, AUTHLOG_AT_MS_MAX, &at, err) < 0 ||
        get_text(o, "username", out->username, sizeof(out->username), false, err) < 0 ||
        get_text(o, "method", out->method, sizeof(out->method), false, err) < 0 ||
        get_text(o, "result", out->result, sizeof(out->result), false, err) < 0 ||
        get_text(o, "reason", out->reason, sizeof(out->reason), false, err) < 0 ||
        get_text(o, "server_name", out->server_name, sizeof(out->server_name), false, err) < 0 ||
        get_text(o, "server_ip", out->server_ip, sizeof(out->server_ip), true, err) < 0 ||
        get_text(o, "client_ip", out->client_ip, sizeof(out->client_ip), true, err) < 0 ||
        get_text(o, "challenge_id", out->challenge_id, sizeof(out->challenge_id), true, err) < 0)
        goto fail;
    json_decref(o);
    out->boot_epoch = (uint64_t)epoch;
    out->seq = (uint64_t)seq;
    out->at_ms = at;
    return authlog_entry_check(out, err);
fail:
    json_decref(o);
    return -1;
}

void authlog_scan(const char *buf, size_t len, bool at_eof, uint64_t max_records,
                  authlog_scan_fn fn, void *arg, struct authlog_scan_result *out)
{
    size_t pos = 0;

    memset(out, 0, sizeof(*out));
    while (pos < len && out->records < max_records) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t linelen = nl ? (size_t)(nl - (buf + pos)) + 1 : len - pos;
        struct authlog_entry e;
        int rc;

        if (!nl && !at_eof && linelen < AUTHLOG_LINE_MAX)
            break; /* the rest of this line comes with the next read */
        if (authlog_entry_parse(buf + pos, linelen, &e, NULL) < 0) {
            out->corrupt++;
            if (!nl)
                out->torn_tail = true;
        } else {
            rc = fn ? fn(arg, &e) : 0;
            if (rc < 0)
                break;
            out->records++;
            if (rc > 0) {
                pos += linelen;
                out->lines++;
                break;
            }
        }
        pos += linelen;
        out->lines++;
    }
    out->consumed = pos;
}
