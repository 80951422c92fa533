/*
 * The web health page: one self-contained HTML5 document (inline CSS, no
 * script, no external asset) rendered from the snapshot members.c builds.
 *
 * Layout: a header (cluster, when and by which balancer the snapshot was
 * taken, a link to HAProxy's statistics page), a summary line that answers
 * "is the cluster fine?" at a glance, then one table row per member, in the
 * snapshot's order, with a status badge:
 *
 *   down      the member says "down": true, or neither its replicator nor
 *             its node answers;
 *   degraded  it answers but something needs a look: a part unreachable,
 *             the node not ready, the database fenced, not primary/standby
 *             (starting, rejoining, stopped), a standby not streaming or
 *             more than LAG_WARN_S behind, the server drained or in
 *             maintenance or not UP in HAProxy, the clock more than
 *             CLOCK_WARN_S off (TOTP codes depend on it), the replicator's
 *             certificate expiring in fewer than CERT_WARN_DAYS days (or
 *             expired; the row then says "certificate expires in N days —
 *             mfactl pki renew");
 *   up        anything else. A witness (it runs no database) needs no node.
 *
 * Invariants: every string taken from the snapshot goes through put_esc()
 * (the snapshot is untrusted: it repeats what members said over the
 * network); a link is written only for an http:// or https:// URL; a missing
 * or ill-typed field prints "?" (a null the format allows, such as the lag
 * of a primary, prints a dash). The page is built in an open_memstream
 * buffer; the only failure is running out of memory.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "page.h"

/* A standby further behind than this, in seconds, is degraded. */
#define LAG_WARN_S 10.0
/* A clock further off than this, in seconds, is degraded (TOTP steps are 30 s). */
#define CLOCK_WARN_S 1.0
/* A member certificate with fewer days left than this is degraded (mfactl pki renew's default). */
#define CERT_WARN_DAYS 30.0

#define UNKNOWN        "<span class=\"unk\">?</span>"
#define NOT_APPLICABLE "<span class=\"na\">—</span>"

enum health {
    HEALTH_UP = 0,
    HEALTH_DEGRADED,
    HEALTH_DOWN,
    HEALTH_COUNT_,
};

static const char *const health_name[HEALTH_COUNT_] = {
    [HEALTH_UP] = "up",
    [HEALTH_DEGRADED] = "degraded",
    [HEALTH_DOWN] = "down",
};

/* Why a member is not up: a short list, truncated when it does not fit. */
struct reasons {
    char text[256];
    size_t len;
};

/* Counts for the summary line. */
struct tally {
    size_t members, primaries, writable, fenced, streaming, not_streaming, witnesses, other;
    size_t health[HEALTH_COUNT_];
};

/* ---- reading the snapshot: every accessor accepts NULL and any type ---- */

static const char *get_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool get_true(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

static bool get_false(const json_t *obj, const char *key)
{
    return json_is_false(json_object_get(obj, key));
}

/* Sets <*out> to the number under <key>; false when absent, not a number or not finite. */
static bool get_num(const json_t *obj, const char *key, double *out)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out) != 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

/* A part ("replicator", "node") answered its last poll. */
static bool reachable(const json_t *part)
{
    return get_true(part, "reachable");
}

/* A witness votes and runs no database, so no node and no HAProxy server either. */
static bool is_witness(const json_t *repl)
{
    return reachable(repl) && str_eq(get_str(repl, "role"), "witness");
}

/*
 * Sets <*days> to the replicator's cert_days_left when it answered and says
 * fewer than CERT_WARN_DAYS are left. False when absent, ill-typed or far off.
 */
static bool cert_expiring(const json_t *repl, double *days)
{
    return reachable(repl) && get_num(repl, "cert_days_left", days) && *days < CERT_WARN_DAYS;
}

/* ---- formatting values (into caller buffers; no snapshot text) ---- */

/* "0 B", "512 B", "12.3 KiB", …, "1.2e+06 EiB" for a size <b> >= 0. */
static void fmt_bytes(char *buf, size_t n, double b)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    size_t u = 0;

    while (b >= 1024 && u + 1 < MFA_ARRAY_LEN(unit)) {
        b /= 1024;
        u++;
    }
    /* 1023.97 KiB would print as "1024.0 KiB" */
    if (u > 0 && b >= 1023.95 && u + 1 < MFA_ARRAY_LEN(unit)) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%.0f B", b);
    else if (b >= 1e6)
        snprintf(buf, n, "%.3g %s", b, unit[u]);
    else
        snprintf(buf, n, "%.1f %s", b, unit[u]);
}

/* "0 s", "1.2 s", "3 min 05 s", "2 h 10 min", "4.5 d", "1.2e+07 d" for a duration <s> >= 0. */
static void fmt_seconds(char *buf, size_t n, double s)
{
    if (s == 0)
        snprintf(buf, n, "0 s");
    else if (s < 60)
        snprintf(buf, n, "%.1f s", s);
    else if (s < 3600)
        snprintf(buf, n, "%d min %02d s", (int)s / 60, (int)s % 60);
    else if (s < 86400)
        snprintf(buf, n, "%d h %02d min", (int)s / 3600, (int)s / 60 % 60);
    else if (s < 86400 * 1e6)
        snprintf(buf, n, "%.1f d", s / 86400);
    else
        snprintf(buf, n, "%.3g d", s / 86400);
}

/* A clock offset in milliseconds with its sign, "0 ms" when under half of one. */
static void fmt_offset(char *buf, size_t n, double s)
{
    double ms = s * 1000;

    if (fabs(ms) < 0.5)
        snprintf(buf, n, "0 ms");
    else if (fabs(ms) < 1e7)
        snprintf(buf, n, "%+.0f ms", ms);
    else
        snprintf(buf, n, "%+.3g s", s);
}

/* ---- writing ---- */

/*
 * Writes <s> HTML-escaped: & < > " ' become entities, so the text is safe in
 * element content and in quoted attribute values. C0 controls other than
 * tab and newline become U+FFFD.
 */
static void put_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                fputs("\xef\xbf\xbd", f);
            else
                fputc(*s, f);
        }
    }
}

/* Writes the string <s> escaped, or "?" when it is NULL (missing or not a string). */
static void put_str_or_unknown(FILE *f, const char *s)
{
    if (s)
        put_esc(f, s);
    else
        fputs(UNKNOWN, f);
}

/* Writes the integer under <key>; a dash for null when <null_ok>, else "?". */
static void put_int(FILE *f, const json_t *obj, const char *key, bool null_ok)
{
    const json_t *v = json_object_get(obj, key);

    if (json_is_integer(v))
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (null_ok && json_is_null(v))
        fputs(NOT_APPLICABLE, f);
    else
        fputs(UNKNOWN, f);
}

/* <sep>, then "1 primary" / "2 primaries": <n> and the noun it takes, in a <cls> span if any. */
static void put_counted(FILE *f, const char *sep, const char *cls, size_t n, const char *one,
                        const char *many)
{
    fputs(sep, f);
    if (cls)
        fprintf(f, "<span class=\"%s\">", cls);
    fprintf(f, "%zu %s", n, n == 1 ? one : many);
    if (cls)
        fputs("</span>", f);
}

/* ---- the verdict on a member ---- */

static void reason_add(struct reasons *r, const char *what)
{
    int n;

    if (r->len >= sizeof(r->text) - 1)
        return;
    n = snprintf(r->text + r->len, sizeof(r->text) - r->len, "%s%s", r->len ? ", " : "", what);
    if (n > 0)
        r->len += (size_t)n;
    if (r->len >= sizeof(r->text))
        r->len = sizeof(r->text) - 1;
}

/*
 * The health of member <m> (any JSON value); why it is not up goes into
 * <why>, which starts empty. See the file comment for the rules.
 */
static enum health member_health(const json_t *m, struct reasons *why)
{
    const json_t *repl = json_object_get(m, "replicator");
    const json_t *node = json_object_get(m, "node");
    const json_t *ha = json_object_get(m, "haproxy");
    const char *role = get_str(repl, "role");
    const char *state = get_str(ha, "state");
    const char *status = get_str(ha, "status");
    bool witness = is_witness(repl);
    double v;

    if (get_true(m, "down") || (!reachable(repl) && !reachable(node))) {
        reason_add(why, reachable(repl) || reachable(node) ? "marked down" : "nothing answers");
        return HEALTH_DOWN;
    }
    if (!reachable(repl)) {
        reason_add(why, "replicator unreachable");
    } else {
        if (get_true(repl, "fenced"))
            reason_add(why, "fenced");
        if (str_eq(role, "primary") && get_false(repl, "writable") && !get_true(repl, "fenced"))
            reason_add(why, "primary not writable");
        if (str_eq(role, "standby") && !get_true(repl, "streaming"))
            reason_add(why, "not streaming");
        if (!str_eq(role, "primary") && !str_eq(role, "standby") && !witness)
            reason_add(why, role ? "database not serving" : "role unknown");
        if (get_num(repl, "lag_seconds", &v) && v > LAG_WARN_S)
            reason_add(why, "lagging");
        if (cert_expiring(repl, &v))
            reason_add(why, v < 0 ? "certificate expired" : "certificate expiring");
    }
    if (!witness) {
        if (!reachable(node))
            reason_add(why, "node unreachable");
        else if (!get_true(node, "ready"))
            reason_add(why, "node not ready");
    }
    if (reachable(node) && get_num(node, "clock_offset_s", &v) && fabs(v) > CLOCK_WARN_S)
        reason_add(why, "clock off");
    if (str_eq(state, "drain"))
        reason_add(why, "drained");
    else if (str_eq(state, "maint"))
        reason_add(why, "in maintenance");
    else if (status && strncmp(status, "UP", 2) != 0)
        reason_add(why, "not UP in HAProxy");
    return why->len > 0 ? HEALTH_DEGRADED : HEALTH_UP;
}

static void tally_member(struct tally *t, const json_t *m)
{
    const json_t *repl = json_object_get(m, "replicator");
    const char *role = get_str(repl, "role");
    struct reasons why = { .len = 0 };
    enum health h = member_health(m, &why);

    t->members++;
    t->health[h]++;
    if (h == HEALTH_DOWN || !reachable(repl))
        return;
    if (get_true(repl, "fenced"))
        t->fenced++;
    if (str_eq(role, "primary")) {
        t->primaries++;
        if (get_true(repl, "writable") && !get_true(repl, "fenced"))
            t->writable++;
    } else if (str_eq(role, "standby")) {
        if (get_true(repl, "streaming"))
            t->streaming++;
        else
            t->not_streaming++;
    } else if (str_eq(role, "witness")) {
        t->witnesses++;
    } else {
        t->other++;
    }
}

/* ---- the page ---- */

static const char style[] =
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;"
    "padding:16px 24px;color:#1d2127;background:#f6f7f9}"
    "h1{font-size:20px;margin:0 0 2px}"
    ".meta{color:#5f6b7a;font-size:13px;margin:0 0 12px}"
    ".meta a{color:#1a5fb4}"
    ".summary{font-size:16px;font-weight:600;margin:0 0 12px;padding:10px 14px;"
    "background:#fff;border:1px solid #dde1e6;border-radius:6px}"
    ".alarm{display:inline-block;white-space:nowrap;color:#fff;background:#c62828;"
    "padding:0 8px;border-radius:4px;margin-left:8px}"
    "table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e6}"
    "th,td{padding:6px 7px;text-align:left;vertical-align:top;border-bottom:1px solid #e8ebef}"
    "th{font-size:12px;font-weight:600;color:#5f6b7a;background:#eef0f3;white-space:nowrap}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    ".nw{white-space:nowrap}"
    "tr.up td:first-child{border-left:4px solid #2e7d32}"
    "tr.degraded td:first-child{border-left:4px solid #e09b00}"
    "tr.down td:first-child{border-left:4px solid #c62828}"
    "tr.down{background:#fdf0f0}"
    ".id{font-weight:600}"
    ".sub{display:block;color:#5f6b7a;font-size:12px}"
    ".badge{display:inline-block;min-width:64px;text-align:center;padding:1px 8px;"
    "border-radius:10px;font-size:12px;font-weight:700;color:#fff}"
    ".badge.up{background:#2e7d32}"
    ".badge.degraded{background:#e09b00;color:#1d2127}"
    ".badge.down{background:#c62828}"
    ".fenced{color:#fff;background:#c62828;font-weight:700;padding:0 5px;border-radius:3px}"
    ".ok{color:#2e7d32}"
    ".warn{color:#a86400;font-weight:600}"
    ".bad{color:#c62828;font-weight:600}"
    ".unk,.na{color:#98a2ae}"
    ".err{color:#c62828;font-size:12px;max-width:240px;overflow-wrap:anywhere}"
    ".legend{color:#5f6b7a;font-size:12px;margin-top:10px}";

/* The stats link, only for an http:// or https:// URL (a javascript: one stays out). */
static void put_stats_link(FILE *f, const char *url)
{
    if (!url || (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0))
        return;
    fputs(" · <a href=\"", f);
    put_esc(f, url);
    fputs("\">HAProxy statistics</a>", f);
}

static void put_head(FILE *f, const json_t *snap)
{
    const char *cluster = get_str(snap, "cluster");

    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
    /* defence in depth: even a slip in escaping could load nothing and run nothing */
    fputs("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\">\n",
          f);
    fprintf(f, "<meta http-equiv=\"refresh\" content=\"%d\">\n", PAGE_REFRESH_S);
    fputs("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n", f);
    fputs("<title>MFA Appliance — ", f);
    put_esc(f, cluster ? cluster : "?");
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", style);
    fputs("<h1>MFA Appliance — ", f);
    put_str_or_unknown(f, cluster);
    fputs("</h1>\n<p class=\"meta\">Generated ", f);
    put_str_or_unknown(f, get_str(snap, "generated_at"));
    fputs(" by balancer ", f);
    put_str_or_unknown(f, get_str(snap, "balancer"));
    fprintf(f, " · refreshes every %d s", PAGE_REFRESH_S);
    put_stats_link(f, get_str(snap, "stats_url"));
    fputs("</p>\n", f);
}

static void put_summary(FILE *f, const json_t *members)
{
    struct tally t = { 0 };
    size_t i;
    const json_t *m;

    fputs("<p class=\"summary\">", f);
    if (!json_is_array(members)) {
        fputs("? members (the snapshot has no member list)", f);
        fputs("<span class=\"alarm\">no writable primary!</span></p>\n", f);
        return;
    }
    json_array_foreach(members, i, m)
    {
        tally_member(&t, m);
    }
    put_counted(f, "", NULL, t.members, "member", "members");
    put_counted(f, ": ", NULL, t.primaries, "primary", "primaries");
    put_counted(f, ", ", NULL, t.streaming, "standby streaming", "standbys streaming");
    if (t.not_streaming)
        put_counted(f, ", ", NULL, t.not_streaming, "standby not streaming",
                    "standbys not streaming");
    if (t.witnesses)
        put_counted(f, ", ", NULL, t.witnesses, "witness", "witnesses");
    if (t.other)
        put_counted(f, ", ", NULL, t.other, "not serving", "not serving");
    if (t.fenced)
        put_counted(f, ", ", "bad", t.fenced, "fenced", "fenced");
    if (t.health[HEALTH_DEGRADED])
        put_counted(f, ", ", "warn", t.health[HEALTH_DEGRADED], "degraded", "degraded");
    put_counted(f, ", ", t.health[HEALTH_DOWN] ? "bad" : NULL, t.health[HEALTH_DOWN], "down",
                "down");
    if (t.writable == 0)
        fputs("<span class=\"alarm\">no writable primary!</span>", f);
    else if (t.writable > 1)
        fprintf(f, "<span class=\"alarm\">%zu writable primaries!</span>", t.writable);
    fputs("</p>\n", f);
}

/* Database: role, upstream, streaming, fenced. */
static void put_db_cell(FILE *f, const json_t *repl)
{
    const char *role = get_str(repl, "role");
    const json_t *upstream = json_object_get(repl, "upstream");

    fputs("<td>", f);
    if (!reachable(repl)) {
        fputs("<span class=\"bad\">unreachable</span></td>", f);
        return;
    }
    fputs(str_eq(role, "primary") || str_eq(role, "standby") || is_witness(repl)
              ? "<b>"
              : "<b class=\"warn\">",
          f);
    put_str_or_unknown(f, role);
    fputs("</b>", f);
    if (get_true(repl, "fenced"))
        fputs(" <span class=\"fenced\">FENCED</span>", f);
    if (str_eq(role, "primary") && get_true(repl, "writable") && !get_true(repl, "fenced"))
        fputs("<span class=\"sub\">writable</span>", f);
    else if (str_eq(role, "primary") && get_false(repl, "writable"))
        fputs("<span class=\"sub bad\">not writable</span>", f);
    if (str_eq(role, "standby")) {
        if (json_is_string(upstream)) {
            fputs("<span class=\"sub\">from ", f);
            put_esc(f, json_string_value(upstream));
            fputs("</span>", f);
        }
        if (!get_true(repl, "streaming"))
            fputs("<span class=\"sub warn\">not streaming</span>", f);
    }
    fputs("</td>", f);
}

/* Timeline, with the LSN under it. */
static void put_timeline_cell(FILE *f, const json_t *repl)
{
    const json_t *lsn = json_object_get(repl, "lsn");

    fputs("<td class=\"n\">", f);
    put_int(f, repl, "timeline", true);
    if (json_is_string(lsn)) {
        fputs("<span class=\"sub\">", f);
        put_esc(f, json_string_value(lsn));
        fputs("</span>", f);
    }
    fputs("</td>", f);
}

/* Lag in bytes and seconds; a dash where the format says null (a primary). */
static void put_lag_cell(FILE *f, const json_t *repl)
{
    const json_t *lb = json_object_get(repl, "lag_bytes");
    const json_t *ls = json_object_get(repl, "lag_seconds");
    char buf[64];
    double v;
    bool warn = get_num(repl, "lag_seconds", &v) && v > LAG_WARN_S;

    fputs(warn ? "<td class=\"n warn\">" : "<td class=\"n\">", f);
    if (json_is_null(lb) && json_is_null(ls)) {
        fputs(NOT_APPLICABLE "</td>", f);
        return;
    }
    if (get_num(repl, "lag_bytes", &v) && v >= 0) {
        fmt_bytes(buf, sizeof(buf), v);
        fputs(buf, f);
    } else {
        fputs(json_is_null(lb) ? NOT_APPLICABLE : UNKNOWN, f);
    }
    fputs("<span class=\"sub\">", f);
    if (get_num(repl, "lag_seconds", &v) && v >= 0) {
        fmt_seconds(buf, sizeof(buf), v);
        fputs(buf, f);
    } else {
        fputs(json_is_null(ls) ? NOT_APPLICABLE : UNKNOWN, f);
    }
    fputs("</span></td>", f);
}

static void put_node_cell(FILE *f, const json_t *node)
{
    const json_t *ready = json_object_get(node, "ready");

    if (!reachable(node))
        fputs("<td class=\"bad\">unreachable</td>", f);
    else if (json_is_true(ready))
        fputs("<td class=\"ok\">ready</td>", f);
    else if (json_is_false(ready))
        fputs("<td class=\"warn nw\">not ready</td>", f);
    else
        fputs("<td>" UNKNOWN "</td>", f);
}

/* HAProxy: the state the balancer keeps, HAProxy's status, its connections. */
static void put_haproxy_cell(FILE *f, const json_t *ha)
{
    const char *state = get_str(ha, "state");
    const char *status = get_str(ha, "status");

    if (json_is_null(ha)) {
        fputs("<td>" NOT_APPLICABLE "</td>", f);
        return;
    }
    fputs(str_eq(state, "ready") ? "<td class=\"nw\"><span class=\"ok\">"
                                 : "<td class=\"nw\"><span class=\"warn\">",
          f);
    put_str_or_unknown(f, state);
    fputs(status && strncmp(status, "UP", 2) == 0 ? "</span> / <span class=\"ok\">"
                                                  : "</span> / <span class=\"bad\">",
          f);
    put_str_or_unknown(f, status);
    fputs("</span><span class=\"sub\">", f);
    put_int(f, ha, "current_sessions", false);
    fputs(" conn.</span></td>", f);
}

static void put_clock_cell(FILE *f, const json_t *node)
{
    char buf[64];
    double v;

    if (!get_num(node, "clock_offset_s", &v)) {
        fputs("<td class=\"n\">" UNKNOWN "</td>", f);
        return;
    }
    fmt_offset(buf, sizeof(buf), v);
    fprintf(f, "<td class=\"n%s\">%s</td>", fabs(v) > CLOCK_WARN_S ? " bad" : "", buf);
}

/* What an unreachable part said, "<part>: <error>", escaped, with a tooltip. */
static void put_error(FILE *f, const char *part, const json_t *obj)
{
    const char *err = get_str(obj, "error");

    if (reachable(obj) && !err)
        return;
    fprintf(f, "<div class=\"err\" title=\"%s: ", part);
    put_esc(f, err ? err : "unreachable");
    fprintf(f, "\">%s: ", part);
    put_esc(f, err ? err : "unreachable");
    fputs("</div>", f);
}

/*
 * The certificate warning, when the replicator's has fewer than
 * CERT_WARN_DAYS days left: "certificate expires in N days — mfactl pki
 * renew", cert_expires_at (escaped) as its tooltip.
 */
static void put_cert_warning(FILE *f, const json_t *repl)
{
    const char *at = get_str(repl, "cert_expires_at");
    double v;

    if (!cert_expiring(repl, &v))
        return;
    fputs("<div class=\"warn\"", f);
    if (at) {
        fputs(" title=\"certificate valid until ", f);
        put_esc(f, at);
        fputs("\"", f);
    }
    if (v < -1e6) {
        fputs(">certificate expired", f);
    } else if (v < 0) {
        long long n = (long long)-v > 0 ? (long long)-v : 1; /* bounded above: no overflow */

        fprintf(f, ">certificate expired %lld day%s ago", n, n == 1 ? "" : "s");
    } else if (v < 1) {
        fputs(">certificate expires today", f);
    } else {
        long long n = (long long)v; /* 1 <= v < CERT_WARN_DAYS */

        fprintf(f, ">certificate expires in %lld day%s", n, n == 1 ? "" : "s");
    }
    fputs(" — mfactl pki renew</div>", f);
}

static void put_member(FILE *f, const json_t *m)
{
    const json_t *repl = json_object_get(m, "replicator");
    const json_t *node = json_object_get(m, "node");
    const json_t *ha = json_object_get(m, "haproxy");
    struct reasons why = { .len = 0 };
    enum health h = member_health(m, &why);

    fprintf(f, "<tr class=\"%s\"><td><span class=\"id\">", health_name[h]);
    put_str_or_unknown(f, get_str(m, "id"));
    fputs("</span><span class=\"sub\">", f);
    put_str_or_unknown(f, get_str(m, "address"));
    fprintf(f, "</span></td><td><span class=\"badge %s\">%s</span>", health_name[h],
            health_name[h]);
    if (why.len) {
        fputs("<span class=\"sub\">", f);
        put_esc(f, why.text);
        fputs("</span>", f);
    }
    fputs("</td>", f);
    put_db_cell(f, repl);
    put_timeline_cell(f, repl);
    put_lag_cell(f, repl);
    if (is_witness(repl) && !reachable(node)) {
        /* node, HAProxy, challenges, sessions, clock, version: a witness has none */
        for (int i = 0; i < 6; i++)
            fputs("<td>" NOT_APPLICABLE "</td>", f);
    } else {
        put_node_cell(f, node);
        put_haproxy_cell(f, ha);
        fputs("<td class=\"n\">", f);
        put_int(f, node, "challenges", false);
        fputs("</td><td class=\"n\">", f);
        put_int(f, node, "sessions", false);
        fputs("</td>", f);
        put_clock_cell(f, node);
        fputs("<td>", f);
        put_str_or_unknown(f, get_str(node, "version"));
        fputs("</td>", f);
    }
    fputs("<td>", f);
    put_cert_warning(f, repl);
    put_error(f, "replicator", repl);
    if (!is_witness(repl))
        put_error(f, "node", node);
    fputs("</td></tr>\n", f);
}

static void put_table(FILE *f, const json_t *members)
{
    size_t i;
    const json_t *m;

    fputs("<table>\n<thead><tr><th>Member</th><th>Status</th><th>Database</th>"
          "<th>Timeline</th><th>Lag</th><th>Node</th><th>HAProxy</th><th>Challenges</th>"
          "<th>Sessions</th><th>Clock</th><th>Version</th><th>Errors</th></tr></thead>\n"
          "<tbody>\n",
          f);
    if (!json_is_array(members))
        fputs("<tr><td colspan=\"12\">" UNKNOWN "</td></tr>\n", f);
    json_array_foreach(members, i, m)
    {
        put_member(f, m);
    }
    fputs("</tbody>\n</table>\n", f);
}

char *page_html(const json_t *snapshot)
{
    const json_t *members = json_object_get(snapshot, "members");
    char *text = NULL;
    size_t len = 0;
    bool failed;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    put_head(f, snapshot);
    put_summary(f, members);
    put_table(f, members);
    fprintf(f,
            "<p class=\"legend\">Degraded: a part unreachable, node not ready, drained or in "
            "maintenance, fenced, a standby not streaming or more than %.0f s behind, a clock "
            "more than %.0f s off (TOTP depends on it), a certificate expiring within %.0f days. "
            "Down: neither the replicator nor the node answers.</p>\n"
            "</body>\n</html>\n",
            LAG_WARN_S, CLOCK_WARN_S, CERT_WARN_DAYS);
    failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}
