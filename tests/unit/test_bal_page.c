/*
 * The health page (balancer/page.c): a healthy cluster, a member down, the
 * degraded cases (one table row each), no writable primary, hostile strings
 * and URLs that must come out escaped or left out, ill-typed and missing
 * fields that show "?", and values at the edges of their types.
 *
 * Besides looking for what must be there, every page is checked to hold no
 * tag but the ones page.c writes, so a string that slipped past the escaping
 * shows up whatever its payload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "page.h"

/* Three members, n1 the primary, n2 and n3 streaming from it, all ready. */
static const char healthy[] =
    "{\"cluster\": \"demo\", \"balancer\": \"n1\", \"generated_at\": \"2026-11-22T18:00:00Z\","
    " \"stats_url\": \"http://127.0.0.1:8404/\", \"members\": ["
    "{\"id\": \"n1\", \"address\": \"10.0.0.1\","
    " \"replicator\": {\"reachable\": true, \"role\": \"primary\", \"timeline\": 2,"
    "  \"lsn\": \"0/3000148\", \"lag_bytes\": null, \"lag_seconds\": null, \"writable\": true,"
    "  \"fenced\": false, \"streaming\": null, \"upstream\": null},"
    " \"node\": {\"reachable\": true, \"ready\": true, \"challenges\": 3, \"sessions\": 1,"
    "  \"clock_offset_s\": 0.001, \"version\": \"0.1.0\"},"
    " \"haproxy\": {\"state\": \"ready\", \"status\": \"UP\", \"current_sessions\": 2},"
    " \"down\": false},"
    "{\"id\": \"n2\", \"address\": \"10.0.0.2\","
    " \"replicator\": {\"reachable\": true, \"role\": \"standby\", \"timeline\": 2,"
    "  \"lsn\": \"0/3000148\", \"lag_bytes\": 12595, \"lag_seconds\": 1.2, \"writable\": false,"
    "  \"fenced\": false, \"streaming\": true, \"upstream\": \"n1\"},"
    " \"node\": {\"reachable\": true, \"ready\": true, \"challenges\": 0, \"sessions\": 0,"
    "  \"clock_offset_s\": -0.002, \"version\": \"0.1.0\"},"
    " \"haproxy\": {\"state\": \"ready\", \"status\": \"UP\", \"current_sessions\": 0},"
    " \"down\": false},"
    "{\"id\": \"n3\", \"address\": \"10.0.0.3\","
    " \"replicator\": {\"reachable\": true, \"role\": \"standby\", \"timeline\": 2,"
    "  \"lsn\": \"0/3000148\", \"lag_bytes\": 0, \"lag_seconds\": 0.0, \"writable\": false,"
    "  \"fenced\": false, \"streaming\": true, \"upstream\": \"n1\"},"
    " \"node\": {\"reachable\": true, \"ready\": true, \"challenges\": 0, \"sessions\": 0,"
    "  \"clock_offset_s\": 0.0, \"version\": \"0.1.0\"},"
    " \"haproxy\": {\"state\": \"ready\", \"status\": \"UP\", \"current_sessions\": 0},"
    " \"down\": false}]}";

/* The tags page.c writes; anything else in a page came from the snapshot. */
static const char *const own_tags[] = { "!DOCTYPE", "html",  "head",  "meta", "title",
                                        "style",    "body",  "h1",    "p",    "a",
                                        "table",    "thead", "tbody", "tr",   "th",
                                        "td",       "span",  "b",     "div" };

static void assert_own_tags_only(const char *html)
{
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        const char *name = p + 1 + (p[1] == '/');
        size_t len = strcspn(name, " >\n");
        bool known = false;

        for (size_t i = 0; i < sizeof(own_tags) / sizeof(own_tags[0]); i++)
            known |= strlen(own_tags[i]) == len && strncmp(name, own_tags[i], len) == 0;
        if (!known)
            fail_msg("a tag page.c does not write: %.40s", p);
    }
}

static void assert_contains(const char *html, const char *what)
{
    if (!strstr(html, what))
        fail_msg("the page lacks \"%s\"", what);
}

static void assert_lacks(const char *html, const char *what)
{
    const char *at = strstr(html, what);

    if (at)
        fail_msg("the page has \"%s\": %.80s", what, at);
}

static size_t count(const char *html, const char *what)
{
    size_t n = 0;

    for (const char *p = strstr(html, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    if (!j)
        fail_msg("bad test JSON: %s at %d", e.text, e.position);
    return j;
}

/* Renders <snap> (may be NULL), checks what every page must have, and gives it back. */
static char *render(const json_t *snap)
{
    char *html = page_html(snap);

    assert_non_null(html);
    assert_true(strncmp(html, "<!DOCTYPE html>\n", 16) == 0);
    assert_contains(html, "<meta charset=\"utf-8\">");
    assert_contains(html, "<meta http-equiv=\"refresh\" content=\"3\">");
    assert_contains(html, "</html>\n");
    assert_lacks(html, "<script");
    assert_lacks(html, "<img");
    assert_lacks(html, "<link");
    assert_own_tags_only(html);
    return html;
}

static char *render_text(const char *text)
{
    json_t *snap = load(text);
    char *html = render(snap);

    json_decref(snap);
    return html;
}

/* Member <i> of <snap>'s list. */
static json_t *member(json_t *snap, size_t i)
{
    return json_array_get(json_object_get(snap, "members"), i);
}

/* Sets <key> of member <i>'s <part> (or of the member itself when <part> is NULL) to <value>. */
static void set(json_t *snap, size_t i, const char *part, const char *key, const char *value)
{
    json_t *obj = part ? json_object_get(member(snap, i), part) : member(snap, i);

    assert_non_null(obj);
    assert_int_equal(json_object_set_new(obj, key, load(value)), 0);
}

/* The row of the member with id <id>, from its <tr> to its </tr>, in a static buffer. */
static const char *row(const char *html, const char *id)
{
    static char buf[8192];
    char key[64];
    const char *start, *end, *at;

    snprintf(key, sizeof(key), "<span class=\"id\">%s</span>", id);
    at = strstr(html, key);
    if (!at)
        fail_msg("no row for %s", id);
    for (start = at; start > html && strncmp(start, "<tr", 3) != 0; start--)
        ;
    end = strstr(at, "</tr>");
    assert_non_null(end);
    assert_true((size_t)(end - start) < sizeof(buf));
    memcpy(buf, start, (size_t)(end - start));
    buf[end - start] = '\0';
    return buf;
}

/* The row of member <id> has class <cls> (up, degraded, down). */
static void assert_row_class(const char *html, const char *id, const char *cls)
{
    char want[64];
    const char *r = row(html, id);

    snprintf(want, sizeof(want), "<tr class=\"%s\">", cls);
    if (strncmp(r, want, strlen(want)) != 0)
        fail_msg("%s is not %s: %s", id, cls, r);
}

static void test_healthy(void **state)
{
    char *html = render_text(healthy);

    (void)state;
    assert_contains(html, "<title>MFA Appliance — demo</title>");
    assert_contains(html, "Generated 2026-11-22T18:00:00Z by balancer n1");
    assert_contains(html, "<a href=\"http://127.0.0.1:8404/\">");
    assert_contains(html, "3 members: 1 primary, 2 standbys streaming, 0 down</p>");
    assert_lacks(html, "no writable primary");
    assert_lacks(html, "degraded</span>");
    assert_int_equal(count(html, "<tr class=\"up\">"), 3);
    assert_contains(row(html, "n1"), "<b>primary</b><span class=\"sub\">writable</span>");
    assert_contains(row(html, "n1"), "10.0.0.1");
    assert_contains(row(html, "n1"), "<span class=\"badge up\"");
    assert_contains(row(html, "n1"), "+1 ms");
    assert_contains(row(html, "n1"), "ready</span> / <span class=\"ok\">UP</span>");
    assert_contains(row(html, "n1"), "0.1.0");
    assert_contains(row(html, "n2"), "<b>standby</b><span class=\"sub\">from n1</span>");
    assert_contains(row(html, "n2"), "12.3 KiB<span class=\"sub\">1.2 s</span>");
    assert_contains(row(html, "n2"), "-2 ms");
    assert_contains(row(html, "n3"), "0 B<span class=\"sub\">0 s</span>");
    assert_contains(row(html, "n3"), "0/3000148");
    assert_lacks(html, ">?<");
    free(html);
}

static void test_member_down(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    set(snap, 2, NULL, "replicator", "{\"reachable\": false, \"error\": \"connection refused\"}");
    set(snap, 2, NULL, "node", "{\"reachable\": false, \"error\": \"timed out\"}");
    set(snap, 2, "haproxy", "status", "\"DOWN\"");
    set(snap, 2, NULL, "down", "true");
    html = render(snap);
    assert_row_class(html, "n3", "down");
    assert_contains(row(html, "n3"), "<span class=\"badge down\"");
    assert_contains(row(html, "n3"), "replicator: connection refused");
    assert_contains(row(html, "n3"), "node: timed out");
    assert_contains(
        html, "3 members: 1 primary, 1 standby streaming, <span class=\"bad\">1 down</span></p>");
    free(html);

    /* both parts unreachable is down even when "down" says otherwise or is missing */
    set(snap, 2, NULL, "down", "false");
    html = render(snap);
    assert_row_class(html, "n3", "down");
    free(html);
    json_object_del(member(snap, 2), "down");
    html = render(snap);
    assert_row_class(html, "n3", "down");
    free(html);

    /* "down": true wins over parts that answer */
    json_decref(snap);
    snap = load(healthy);
    set(snap, 1, NULL, "down", "true");
    html = render(snap);
    assert_row_class(html, "n2", "down");
    assert_contains(html, "<span class=\"bad\">1 down</span></p>");
    free(html);
    json_decref(snap);
}

/* One change to n2 of the healthy cluster, and the reason its row then gives. */
static const struct {
    const char *part, *key, *value, *reason;
} degraded_cases[] = {
    { "node", "ready", "false", "node not ready" },
    { "node", "reachable", "false", "node unreachable" },
    { "replicator", "reachable", "false", "replicator unreachable" },
    { "haproxy", "state", "\"drain\"", "drained" },
    { "haproxy", "state", "\"maint\"", "in maintenance" },
    { "haproxy", "status", "\"DOWN\"", "not UP in HAProxy" },
    { "replicator", "fenced", "true", "fenced" },
    { "replicator", "streaming", "false", "not streaming" },
    { "replicator", "lag_seconds", "10.5", "lagging" },
    { "replicator", "role", "\"rejoining\"", "database not serving" },
    { "replicator", "role", "7", "role unknown" },
    { "node", "clock_offset_s", "-1.5", "clock off" },
    { "replicator", "cert_days_left", "12", "certificate expiring" },
    { "replicator", "cert_days_left", "-3", "certificate expired" },
};

static void test_degraded(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(degraded_cases) / sizeof(degraded_cases[0]); i++) {
        json_t *snap = load(healthy);
        char *html;
        const char *r;

        set(snap, 1, degraded_cases[i].part, degraded_cases[i].key, degraded_cases[i].value);
        html = render(snap);
        r = row(html, "n2");
        if (strncmp(r, "<tr class=\"degraded\">", 21) != 0 || !strstr(r, degraded_cases[i].reason))
            fail_msg("case %zu (%s.%s): %s", i, degraded_cases[i].part, degraded_cases[i].key, r);
        assert_contains(html, "<span class=\"warn\">1 degraded</span>, 0 down</p>");
        assert_int_equal(count(html, "<tr class=\"up\">"), 2);
        free(html);
        json_decref(snap);
    }
}

static void test_marks(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    set(snap, 1, "node", "clock_offset_s", "1.5");
    set(snap, 2, "replicator", "lag_seconds", "75");
    set(snap, 2, "replicator", "streaming", "false");
    html = render(snap);
    assert_contains(row(html, "n2"), "<td class=\"n bad\">+1500 ms</td>");
    assert_contains(row(html, "n3"), "<td class=\"n warn\">0 B<span class=\"sub\">1 min 15 s");
    assert_contains(row(html, "n3"), "not streaming");
    assert_contains(html, "1 standby streaming, 1 standby not streaming, "
                          "<span class=\"warn\">2 degraded</span>, 0 down");
    free(html);
    json_decref(snap);
}

/* A witness runs no database and no node: its row is up without them. */
static void test_witness(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    set(snap, 2, NULL, "replicator",
        "{\"reachable\": true, \"role\": \"witness\", \"timeline\": null, \"lsn\": null,"
        " \"lag_bytes\": null, \"lag_seconds\": null, \"writable\": false, \"fenced\": false}");
    set(snap, 2, NULL, "node", "{\"reachable\": false, \"error\": \"connection refused\"}");
    set(snap, 2, NULL, "haproxy", "null");
    set(snap, 1, "replicator", "role", "\"rejoining\"");
    html = render(snap);
    assert_row_class(html, "n3", "up");
    assert_contains(row(html, "n3"), "witness");
    assert_lacks(row(html, "n3"), "unreachable");
    assert_lacks(row(html, "n3"), "connection refused");
    assert_lacks(row(html, "n3"), ">?<");
    assert_contains(html, "3 members: 1 primary, 0 standbys streaming, 1 witness, 1 not serving, "
                          "<span class=\"warn\">1 degraded</span>, 0 down</p>");
    free(html);
    json_decref(snap);
}

static void test_no_writable_primary(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    /* the primary fenced */
    set(snap, 0, "replicator", "fenced", "true");
    set(snap, 0, "replicator", "writable", "false");
    html = render(snap);
    assert_contains(html, "<span class=\"alarm\">no writable primary!</span>");
    assert_contains(row(html, "n1"), "<span class=\"fenced\">FENCED</span>");
    assert_contains(row(html, "n1"), "not writable");
    assert_contains(html, "1 primary, 2 standbys streaming, <span class=\"bad\">1 fenced</span>, "
                          "<span class=\"warn\">1 degraded</span>, 0 down");
    free(html);

    /* the primary gone */
    set(snap, 0, NULL, "down", "true");
    html = render(snap);
    assert_contains(html,
                    "3 members: 0 primaries, 2 standbys streaming, <span class=\"bad\">1 down");
    assert_contains(html, "no writable primary!");
    free(html);
    json_decref(snap);

    /* two writable primaries */
    snap = load(healthy);
    set(snap, 1, "replicator", "role", "\"primary\"");
    set(snap, 1, "replicator", "writable", "true");
    html = render(snap);
    assert_contains(html, "<span class=\"alarm\">2 writable primaries!</span>");
    free(html);
    json_decref(snap);

    /* no member at all */
    html = render_text("{\"members\": []}");
    assert_contains(html, "0 members: 0 primaries, 0 standbys streaming, 0 down");
    assert_contains(html, "no writable primary!");
    free(html);
}

static void test_escaping(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    set(snap, 0, NULL, "id", "\"<b onclick=x>n1</b>\"");
    set(snap, 0, "replicator", "role", "\"\\\"><img src=x>\"");
    set(snap, 1, "node", "reachable", "false");
    set(snap, 1, "node", "error", "\"<script>alert(1)</script>\"");
    set(snap, 1, "replicator", "upstream", "\"' onmouseover='x\"");
    set(snap, 2, "node", "version", "\"1.0 & <style>\"");
    set(snap, 2, NULL, "address", "\"a\\u0001b\"");
    json_object_set_new(snap, "cluster", json_string("</title><script>x</script>"));
    json_object_set_new(snap, "generated_at", json_string("\"now\""));
    html = render(snap);
    assert_contains(html, "node: &lt;script&gt;alert(1)&lt;/script&gt;");
    assert_contains(html, "title=\"node: &lt;script&gt;alert(1)&lt;/script&gt;\"");
    assert_contains(html, "&quot;&gt;&lt;img src=x&gt;");
    assert_contains(html, "&lt;b onclick=x&gt;n1&lt;/b&gt;");
    assert_contains(html, "from &#39; onmouseover=&#39;x");
    assert_contains(html, "1.0 &amp; &lt;style&gt;");
    assert_contains(html, "a\xef\xbf\xbd"
                          "b");
    assert_contains(html, "<title>MFA Appliance — &lt;/title&gt;&lt;script&gt;x&lt;/script&gt;");
    assert_contains(html, "&quot;now&quot;");
    assert_int_equal(count(html, "<style>"), 1);
    free(html);
    json_decref(snap);
}

static const struct {
    const char *url; /* JSON */
    bool linked;
} stats_cases[] = {
    { "\"http://127.0.0.1:8404/\"", true },
    { "\"HTTPS://[::1]:8404/\"", true },
    { "\"javascript:alert(1)\"", false },
    { "\"JavaScript:alert(1)//http://\"", false },
    { "\" http://x/\"", false },
    { "\"data:text/html,<script>x</script>\"", false },
    { "\"//evil.example/\"", false },
    { "null", false },
    { "8404", false },
};

static void test_stats_url(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(stats_cases) / sizeof(stats_cases[0]); i++) {
        json_t *snap = load(healthy);
        char *html;

        json_object_set_new(snap, "stats_url", load(stats_cases[i].url));
        html = render(snap);
        if ((strstr(html, "<a ") != NULL) != stats_cases[i].linked)
            fail_msg("stats_url %s: linked should be %d", stats_cases[i].url,
                     stats_cases[i].linked);
        assert_lacks(html, "avascript:");
        free(html);
        json_decref(snap);
    }

    /* a quote cannot leave the attribute */
    {
        char *html =
            render_text("{\"stats_url\": \"http://x/\\\" onclick=\\\"y\", \"members\": []}");

        assert_contains(html, "<a href=\"http://x/&quot; onclick=&quot;y\">");
        free(html);
    }
}

static void test_ill_typed(void **state)
{
    static const char *const snapshots[] = {
        "null",
        "[]",
        "\"demo\"",
        "42",
        "{}",
        "{\"members\": {}}",
        "{\"members\": \"n1\"}",
        "{\"cluster\": 1, \"balancer\": [], \"generated_at\": {}, \"members\": "
        "[1, \"x\", null, [], {}, {\"id\": 5, \"replicator\": \"up\", \"node\": 7, "
        "\"haproxy\": [], \"down\": \"yes\"}]}",
    };
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    html = render(NULL);
    assert_contains(html, "<title>MFA Appliance — ?</title>");
    assert_contains(html, "? members");
    free(html);
    for (size_t i = 0; i < sizeof(snapshots) / sizeof(snapshots[0]); i++) {
        html = render_text(snapshots[i]);
        assert_contains(html, ">?<");
        assert_contains(html, "no writable primary!");
        free(html);
    }

    /* numbers as strings, strings as numbers, objects where values go */
    set(snap, 1, "replicator", "timeline", "\"2\"");
    set(snap, 1, "replicator", "lag_bytes", "\"0\"");
    set(snap, 1, "replicator", "lag_seconds", "[1]");
    set(snap, 1, "node", "ready", "\"true\"");
    set(snap, 1, "node", "challenges", "\"3\"");
    set(snap, 1, "node", "sessions", "1.5");
    set(snap, 1, "node", "clock_offset_s", "\"0.001\"");
    set(snap, 1, "node", "version", "1");
    set(snap, 1, "haproxy", "state", "{}");
    set(snap, 1, "haproxy", "current_sessions", "null");
    set(snap, 1, NULL, "address", "false");
    html = render(snap);
    /* timeline, lag bytes and seconds, ready, challenges, sessions, clock, version,
     * HAProxy state and sessions, address */
    assert_int_equal(count(row(html, "n2"), ">?<"), 11);
    assert_row_class(html, "n2", "degraded");
    free(html);

    /* a part with nothing but "reachable" */
    set(snap, 2, NULL, "replicator", "{\"reachable\": true}");
    set(snap, 2, NULL, "node", "{\"reachable\": true}");
    set(snap, 2, NULL, "haproxy", "{}");
    html = render(snap);
    assert_true(count(row(html, "n3"), ">?<") >= 9);
    free(html);
    json_decref(snap);
}

static void test_big_values(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    set(snap, 1, "replicator", "timeline", "4611686018427387904");
    set(snap, 1, "replicator", "lag_bytes", "1e18");
    set(snap, 1, "replicator", "lag_seconds", "1e18");
    set(snap, 1, "node", "challenges", "9223372036854775807");
    set(snap, 1, "node", "sessions", "-9223372036854775808");
    set(snap, 1, "node", "clock_offset_s", "-1e300");
    set(snap, 2, "replicator", "lag_bytes", "1e300");
    set(snap, 2, "replicator", "lag_seconds", "-1");
    set(snap, 2, "replicator", "timeline", "-1");
    html = render(snap);
    assert_contains(row(html, "n2"), "4611686018427387904");
    assert_contains(row(html, "n2"), "888.2 PiB");
    assert_contains(row(html, "n2"), "1.16e+13 d");
    assert_contains(row(html, "n2"), "9223372036854775807");
    assert_contains(row(html, "n2"), "-9223372036854775808");
    assert_contains(row(html, "n2"), "-1e+300 s");
    assert_contains(row(html, "n3"), "8.67e+281 EiB");
    free(html);
    json_decref(snap);
}

/* cert_days_left of n2, and the warning its row then has ("" for none: the row stays up). */
static const struct {
    const char *days, *text;
} cert_cases[] = {
    { "12", ">certificate expires in 12 days — mfactl pki renew</div>" },
    { "29", ">certificate expires in 29 days — mfactl pki renew</div>" },
    { "29.9", ">certificate expires in 29 days — mfactl pki renew</div>" },
    { "1", ">certificate expires in 1 day — mfactl pki renew</div>" },
    { "0", ">certificate expires today — mfactl pki renew</div>" },
    { "-1", ">certificate expired 1 day ago — mfactl pki renew</div>" },
    { "-0.5", ">certificate expired 1 day ago — mfactl pki renew</div>" },
    { "-40", ">certificate expired 40 days ago — mfactl pki renew</div>" },
    { "-1e300", ">certificate expired — mfactl pki renew</div>" },
    { "30", "" },
    { "825", "" },
    { "1e300", "" },
    { "null", "" },
    { "\"3\"", "" },
    { "[3]", "" },
    { "{}", "" },
};

static void test_cert_expiry(void **state)
{
    json_t *snap = load(healthy);
    char *html;

    (void)state;
    /* the field absent (an older replicator): nothing about certificates in any row */
    html = render(snap);
    assert_int_equal(count(html, "<tr class=\"up\">"), 3);
    assert_lacks(row(html, "n1"), "certificate");
    assert_lacks(row(html, "n2"), "certificate");
    assert_lacks(html, ">?<");
    free(html);
    json_decref(snap);

    for (size_t i = 0; i < sizeof(cert_cases) / sizeof(cert_cases[0]); i++) {
        const char *r;

        snap = load(healthy);
        set(snap, 1, "replicator", "cert_expires_at", "\"2026-12-04T18:00:00Z\"");
        set(snap, 1, "replicator", "cert_days_left", cert_cases[i].days);
        html = render(snap);
        r = row(html, "n2");
        if (*cert_cases[i].text) {
            if (strncmp(r, "<tr class=\"degraded\">", 21) != 0 || !strstr(r, cert_cases[i].text))
                fail_msg("case %zu (%s): %s", i, cert_cases[i].days, r);
            assert_contains(r, "<div class=\"warn\" title=\"certificate valid until "
                               "2026-12-04T18:00:00Z\">");
            assert_contains(html, "<span class=\"warn\">1 degraded</span>, 0 down</p>");
        } else {
            if (strncmp(r, "<tr class=\"up\">", 15) != 0 || strstr(r, "certificate"))
                fail_msg("case %zu (%s): %s", i, cert_cases[i].days, r);
            assert_lacks(r, ">?<");
        }
        free(html);
        json_decref(snap);
    }

    /* a hostile or missing date is escaped or left out; an unreachable replicator says nothing */
    snap = load(healthy);
    set(snap, 1, "replicator", "cert_days_left", "5");
    set(snap, 1, "replicator", "cert_expires_at", "\"\\\"><script>alert(1)</script>\"");
    html = render(snap);
    assert_contains(row(html, "n2"), "title=\"certificate valid until &quot;&gt;&lt;script&gt;");
    assert_contains(row(html, "n2"), "certificate expires in 5 days");
    free(html);
    set(snap, 1, "replicator", "cert_expires_at", "7");
    html = render(snap);
    assert_contains(row(html, "n2"), "<div class=\"warn\">certificate expires in 5 days");
    free(html);
    set(snap, 1, "replicator", "reachable", "false");
    html = render(snap);
    assert_lacks(row(html, "n2"), "certificate");
    free(html);
    json_decref(snap);
}

/* lag_bytes and lag_seconds of n2, and how they read. */
static const struct {
    const char *bytes, *seconds, *text;
} format_cases[] = {
    { "0", "0", "0 B<span class=\"sub\">0 s</span>" },
    { "512", "0.04", "512 B<span class=\"sub\">0.0 s</span>" },
    { "1023", "59.9", "1023 B<span class=\"sub\">59.9 s</span>" },
    { "1024", "60", "1.0 KiB<span class=\"sub\">1 min 00 s</span>" },
    { "12595", "1.23", "12.3 KiB<span class=\"sub\">1.2 s</span>" },
    { "1048575", "3599", "1.0 MiB<span class=\"sub\">59 min 59 s</span>" },
    { "1610612736", "7260", "1.5 GiB<span class=\"sub\">2 h 01 min</span>" },
    { "1.5e3", "129600", "1.5 KiB<span class=\"sub\">1.5 d</span>" },
    { "-1", "null", "?</span><span class=\"sub\"><span class=\"na\">—</span>" },
    { "\"0\"", "-0.5", "?</span><span class=\"sub\"><span class=\"unk\">?</span>" },
};

static void test_formats(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
        json_t *snap = load(healthy);
        char *html;

        set(snap, 1, "replicator", "lag_bytes", format_cases[i].bytes);
        set(snap, 1, "replicator", "lag_seconds", format_cases[i].seconds);
        html = render(snap);
        if (!strstr(row(html, "n2"), format_cases[i].text))
            fail_msg("case %zu: no \"%s\" in %s", i, format_cases[i].text, row(html, "n2"));
        free(html);
        json_decref(snap);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy),   cmocka_unit_test(test_member_down),
        cmocka_unit_test(test_degraded),  cmocka_unit_test(test_marks),
        cmocka_unit_test(test_witness),   cmocka_unit_test(test_no_writable_primary),
        cmocka_unit_test(test_escaping),  cmocka_unit_test(test_stats_url),
        cmocka_unit_test(test_ill_typed), cmocka_unit_test(test_big_values),
        cmocka_unit_test(test_formats),   cmocka_unit_test(test_cert_expiry),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
