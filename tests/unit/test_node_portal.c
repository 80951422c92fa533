/*
 * The user portal's pieces that need no network (node/portal_priv.h): HTML
 * escaping, the form body parser's decoding and bounds, the session store's
 * timeouts, eviction (anonymous first, half-done sign-ins last), id
 * rotation, generations and active count, the CSRF check, and which peers
 * X-Forwarded-* headers are believed from (portal_page.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "appconf.h"
#include "ids.h"
#include "portal_page.h"
#include "portal_priv.h"

#define T0 1000000ULL

/* ---- escaping ---- */

static void expect_escaped(const char *in, const char *out)
{
    struct pbuf b = { 0 };

    pbuf_escape(&b, in);
    assert_false(b.oom);
    assert_string_equal(b.p ? b.p : "", out);
    pbuf_free(&b);
}

static void test_escape(void **state)
{
    (void)state;
    expect_escaped("", "");
    expect_escaped("plain text", "plain text");
    expect_escaped("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;");
    expect_escaped("a & b", "a &amp; b");
    expect_escaped("\"quoted\" 'single'", "&quot;quoted&quot; &#39;single&#39;");
    expect_escaped("&amp;", "&amp;amp;");
    expect_escaped("Zoë <b>", "Zoë &lt;b&gt;"); /* UTF-8 passes through */
    expect_escaped("<<>>", "&lt;&lt;&gt;&gt;");
}

static void test_pbuf_grows(void **state)
{
    struct pbuf b = { 0 };

    (void)state;
    for (int i = 0; i < 5000; i++)
        pbuf_printf(&b, "%04d", i % 10000);
    assert_false(b.oom);
    assert_int_equal(b.len, 20000);
    assert_memory_equal(b.p + 19996, "4999", 4);
    assert_int_equal(b.p[b.len], '\0');
    pbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

/* ---- forms ---- */

static int parse(const char *body, struct portal_form *f)
{
    char *err = NULL;
    int rc = portal_form_parse(body, strlen(body), f, &err);

    assert_true(rc == 0 ? err == NULL : err != NULL);
    free(err);
    return rc;
}

static void test_form_decoding(void **state)
{
    struct portal_form f;

    (void)state;
    assert_int_equal(parse("username=alice&pin=1234&csrf=abc", &f), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(portal_form_get(&f, "username"), "alice");
    assert_string_equal(portal_form_get(&f, "pin"), "1234");
    assert_null(portal_form_get(&f, "nope"));

    assert_int_equal(parse("a=x+y%20z%2B%26%3d&b=&c&&d=%C3%AB&", &f), 0);
    assert_string_equal(portal_form_get(&f, "a"), "x y z+&=");
    assert_string_equal(portal_form_get(&f, "b"), "");
    assert_string_equal(portal_form_get(&f, "c"), "");
    assert_string_equal(portal_form_get(&f, "d"), "ë");
    assert_int_equal(f.n, 4);

    assert_int_equal(parse("", &f), 0);
    assert_int_equal(f.n, 0);
    assert_int_equal(parse("%61=1", &f), 0); /* an encoded name */
    assert_string_equal(portal_form_get(&f, "a"), "1");
}

static void test_form_refused(void **state)
{
    static const char *const bad[] = {
        "a=1&a=2",                             /* duplicate */
        "a=%",                                 /* truncated escape */
        "a=%4",                                /* truncated escape */
        "a=%zz",                               /* not hex */
        "a=%00",                               /* NUL */
        "%00=1",                               /* NUL in a name */
        "=1",                                  /* no name */
        "a=1&=2",                              /* no name */
        "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9", /* too many fields */
    };
    struct portal_form f;
    char body[PORTAL_FORM_BODY_MAX + 64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &f), -1);
        assert_int_equal(f.n, 0); /* wiped: nothing half-parsed is left */
    }
    /* A name of PORTAL_FORM_NAME_MAX fits, one more does not. */
    memset(body, 'n', PORTAL_FORM_NAME_MAX);
    strcpy(body + PORTAL_FORM_NAME_MAX, "=1");
    assert_int_equal(parse(body, &f), 0);
    memset(body, 'n', PORTAL_FORM_NAME_MAX + 1);
    strcpy(body + PORTAL_FORM_NAME_MAX + 1, "=1");
    assert_int_equal(parse(body, &f), -1);
    /* A value of PORTAL_FORM_VALUE_MAX fits, one more does not ("%41" counts once). */
    strcpy(body, "v=");
    for (int i = 0; i < PORTAL_FORM_VALUE_MAX; i++)
        strcat(body, i % 2 ? "%41" : "b");
    assert_true(strlen(body) <= PORTAL_FORM_BODY_MAX);
    assert_int_equal(parse(body, &f), 0);
    assert_int_equal(strlen(portal_form_get(&f, "v")), PORTAL_FORM_VALUE_MAX);
    strcat(body, "c");
    assert_int_equal(parse(body, &f), -1);
    /* The whole body is bounded, and need not end in a NUL. */
    memset(body, 'a', sizeof(body));
    {
        char *err = NULL;

        assert_int_equal(portal_form_parse(body, PORTAL_FORM_BODY_MAX + 1, &f, &err), -1);
        free(err);
        body[0] = 'k';
        body[1] = '=';
        assert_int_equal(portal_form_parse(body, 5, &f, &err), 0);
        assert_string_equal(portal_form_get(&f, "k"), "aaa");
    }
}

/* ---- sessions ---- */

static const struct portal_limits lim = {
    .idle_ms = 900000,
    .absolute_ms = 3600000,
    .signin_ms = 300000,
    .max_sessions = 3,
};

static struct portal_session *new_session(struct portal_store *st, uint64_t now)
{
    bool full = true;
    struct portal_session *s = portal_session_new(st, &lim, now, &full);

    assert_non_null(s);
    assert_false(full);
    return s;
}

static void sign_in(struct portal_store *st, struct portal_session *s, uint64_t now)
{
    portal_session_set_state(st, s, PORTAL_SIGNED_IN);
    s->signed_in_ms = now;
}

static void test_session_ids_and_csrf(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *s = new_session(st, T0);
    char id[ID_MAX], csrf[PORTAL_CSRF_LEN + 1], wrong[PORTAL_CSRF_LEN + 1];

    (void)state;
    assert_true(id_valid(s->id));
    assert_true(id_belongs_to(s->id, "n1"));
    assert_int_equal(strlen(s->csrf), PORTAL_CSRF_LEN);
    assert_true(portal_csrf_ok(s, s->csrf));
    memcpy(wrong, s->csrf, sizeof(wrong));
    wrong[PORTAL_CSRF_LEN - 1] ^= 1;
    assert_false(portal_csrf_ok(s, wrong));
    assert_false(portal_csrf_ok(s, NULL));
    assert_false(portal_csrf_ok(s, ""));
    wrong[PORTAL_CSRF_LEN - 1] ^= 1;
    wrong[10] = '\0'; /* a prefix of the token */
    assert_false(portal_csrf_ok(s, wrong));

    /* Rotation: a new id and token; the old id finds nothing. */
    strcpy(id, s->id);
    strcpy(csrf, s->csrf);
    assert_int_equal(portal_session_rotate(st, s), 0);
    assert_string_not_equal(id, s->id);
    assert_string_not_equal(csrf, s->csrf);
    assert_null(portal_session_get(st, id, &lim, T0));
    assert_ptr_equal(portal_session_get(st, s->id, &lim, T0), s);
    assert_false(portal_csrf_ok(s, csrf));

    /* Ids of another node, malformed ones and NULL are unknown. */
    assert_null(portal_session_get(st, "n2-AAAAAAAAAAAAAAAAAAAAAA", &lim, T0));
    assert_null(portal_session_get(st, "garbage", &lim, T0));
    assert_null(portal_session_get(st, NULL, &lim, T0));
    portal_store_free(st);
}

static void test_session_timeouts(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *anon = new_session(st, T0), *mid = new_session(st, T0),
                          *in = new_session(st, T0);
    char anon_id[ID_MAX], mid_id[ID_MAX], in_id[ID_MAX];

    (void)state;
    strcpy(anon_id, anon->id);
    strcpy(mid_id, mid->id);
    strcpy(in_id, in->id);
    portal_session_set_state(st, mid, PORTAL_WAIT_CODE);
    mid->stage_ms = T0;
    sign_in(st, in, T0);
    assert_int_equal(portal_store_count(st), 3);
    assert_int_equal(portal_store_active(st), 2);

    /* Anonymous: signin timeout after the last use, which a request renews. */
    assert_non_null(portal_session_get(st, anon_id, &lim, T0 + 200000));
    assert_non_null(portal_session_get(st, anon_id, &lim, T0 + 400000));
    /* Mid-sign-in: signin timeout after the PIN, whatever the requests. */
    assert_non_null(portal_session_get(st, mid_id, &lim, T0 + 200000));
    assert_null(portal_session_get(st, mid_id, &lim, T0 + 300000));
    assert_int_equal(portal_store_active(st), 1);
    /* Signed in: idle timeout, renewed by use ... */
    for (uint64_t t = T0 + 800000; t < T0 + 3600000; t += 800000)
        assert_non_null(portal_session_get(st, in_id, &lim, t));
    /* ... and the absolute timeout after the sign-in, however busy. */
    assert_null(portal_session_get(st, in_id, &lim, T0 + 3600000));
    assert_int_equal(portal_store_active(st), 0);

    /* The tick's sweep ends what timed out without a request. */
    portal_store_expire(st, &lim, T0 + 400000 + 299999);
    assert_int_equal(portal_store_count(st), 1);
    portal_store_expire(st, &lim, T0 + 400000 + 300000);
    assert_int_equal(portal_store_count(st), 0);
    portal_store_free(st);
}

static void test_session_eviction(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *a = new_session(st, T0), *b = new_session(st, T0 + 1),
                          *c = new_session(st, T0 + 2), *d;
    char a_id[ID_MAX], b_id[ID_MAX];
    bool full = false;

    (void)state;
    strcpy(a_id, a->id);
    strcpy(b_id, b->id);
    sign_in(st, b, T0);
    /* Full: the oldest that is not signed in (a) goes, not b. */
    d = new_session(st, T0 + 3);
    assert_int_equal(portal_store_count(st), 3);
    assert_null(portal_session_get(st, a_id, &lim, T0 + 4));
    assert_non_null(portal_session_get(st, b_id, &lim, T0 + 4));
    /* All signed in: no room for a new visitor. */
    sign_in(st, c, T0);
    sign_in(st, d, T0);
    assert_null(portal_session_new(st, &lim, T0 + 5, &full));
    assert_true(full);
    assert_int_equal(portal_store_active(st), 3);
    /* Signing out makes room again. */
    portal_session_end(st, c);
    assert_non_null(new_session(st, T0 + 6));
    assert_int_equal(portal_store_active(st), 2);
    portal_store_free(st);
}

static void test_session_eviction_order(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *w = new_session(st, T0), *a1 = new_session(st, T0 + 1),
                          *a2 = new_session(st, T0 + 2), *x, *y;
    char w_id[ID_MAX], a1_id[ID_MAX], a2_id[ID_MAX];

    (void)state;
    strcpy(w_id, w->id);
    strcpy(a1_id, a1->id);
    strcpy(a2_id, a2->id);
    portal_session_set_state(st, w, PORTAL_WAIT_CODE);
    w->stage_ms = T0;
    /* A flood of sign-in pages pushes out the anonymous ones, never the code page first. */
    x = new_session(st, T0 + 3);
    assert_null(portal_session_get(st, a1_id, &lim, T0 + 4));
    assert_non_null(portal_session_get(st, w_id, &lim, T0 + 4));
    y = new_session(st, T0 + 5);
    assert_null(portal_session_get(st, a2_id, &lim, T0 + 6));
    assert_non_null(portal_session_get(st, w_id, &lim, T0 + 6));
    /* Only when no anonymous one is left does the half-done sign-in go. */
    sign_in(st, x, T0);
    sign_in(st, y, T0);
    new_session(st, T0 + 7);
    assert_null(portal_session_get(st, w_id, &lim, T0 + 8));
    assert_int_equal(portal_store_count(st), 3);
    assert_int_equal(portal_store_active(st), 2);
    portal_store_free(st);
}

static void test_session_expiry_only_when_full(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *s = new_session(st, T0), *in = new_session(st, T0);

    (void)state;
    (void)s;
    sign_in(st, in, T0);
    /* Room left: no sweep of the whole store (the tick does that). */
    new_session(st, T0 + lim.signin_ms);
    assert_int_equal(portal_store_count(st), 3);
    /* Full: what expired goes before anyone is pushed out or turned away. */
    sign_in(st, new_session(st, T0 + lim.signin_ms + 1), T0);
    assert_int_equal(portal_store_count(st), 3);
    assert_int_equal(portal_store_active(st), 2);
    portal_store_free(st);
}

static void test_session_generations(void **state)
{
    struct portal_store *st = portal_store_new("n1");
    struct portal_session *s = new_session(st, T0);
    uint64_t gen = s->gen;

    (void)state;
    /* Every change of state makes answers asked for before it stale. */
    portal_session_set_state(st, s, PORTAL_WAIT_SMS);
    assert_true(s->gen > gen);
    gen = s->gen;
    portal_session_set_state(st, s, PORTAL_ANON);
    assert_true(s->gen > gen);
    assert_int_equal(portal_store_active(st), 0);
    /* Rotating a half-done sign-in keeps it active, once. */
    portal_session_set_state(st, s, PORTAL_WAIT_CODE);
    assert_int_equal(portal_session_rotate(st, s), 0);
    assert_int_equal(portal_store_active(st), 1);
    portal_session_end(st, s);
    assert_int_equal(portal_store_active(st), 0);
    portal_store_free(st);
}

static void test_forwarded_trust(void **state)
{
    char id1[] = "n1", id2[] = "n2", addr1[] = "192.0.2.10", addr2[] = "2001:db8::2";
    struct member_conf members[] = {
        { .id = id1, .address = addr1 },
        { .id = id2, .address = addr2 },
    };
    struct appconf c = { 0 };
    char ip[64];

    (void)state;
    c.cluster.members = members;
    c.cluster.nmembers = MFA_ARRAY_LEN(members);
    /* Loopback (this host's HAProxy) and the members, also as IPv4-mapped IPv6. */
    assert_true(portal_peer_trusted(&c, "127.0.0.1"));
    assert_true(portal_peer_trusted(&c, "127.3.2.1"));
    assert_true(portal_peer_trusted(&c, "::1"));
    assert_true(portal_peer_trusted(&c, "::ffff:127.0.0.1"));
    assert_true(portal_peer_trusted(&c, "192.0.2.10"));
    assert_true(portal_peer_trusted(&c, "::ffff:192.0.2.10"));
    assert_true(portal_peer_trusted(&c, "2001:db8::2"));
    /* Anyone else, and what is not an address, is not believed. */
    assert_false(portal_peer_trusted(&c, "192.0.2.11"));
    assert_false(portal_peer_trusted(&c, "::ffff:192.0.2.11"));
    assert_false(portal_peer_trusted(&c, "2001:db8::3"));
    assert_false(portal_peer_trusted(&c, "localhost"));
    assert_false(portal_peer_trusted(&c, ""));

    /* Trusted: the last entry (HAProxy's); else the peer. */
    portal_forwarded_for("127.0.0.1", "203.0.113.9, 198.51.100.4", true, ip, sizeof(ip));
    assert_string_equal(ip, "198.51.100.4");
    portal_forwarded_for("192.0.2.99", "198.51.100.4", false, ip, sizeof(ip));
    assert_string_equal(ip, "192.0.2.99");
    portal_forwarded_for("127.0.0.1", "not-an-address", true, ip, sizeof(ip));
    assert_string_equal(ip, "127.0.0.1");
    portal_forwarded_for("127.0.0.1", NULL, true, ip, sizeof(ip));
    assert_string_equal(ip, "127.0.0.1");
    /* One spelling of an IPv4 client, from the header or the socket. */
    portal_forwarded_for("127.0.0.1", "::ffff:198.51.100.4", true, ip, sizeof(ip));
    assert_string_equal(ip, "198.51.100.4");
    portal_forwarded_for("::ffff:192.0.2.99", NULL, false, ip, sizeof(ip));
    assert_string_equal(ip, "192.0.2.99");
    portal_forwarded_for("127.0.0.1", "2001:db8::7", true, ip, sizeof(ip));
    assert_string_equal(ip, "2001:db8::7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_pbuf_grows),
        cmocka_unit_test(test_form_decoding),
        cmocka_unit_test(test_form_refused),
        cmocka_unit_test(test_session_ids_and_csrf),
        cmocka_unit_test(test_session_timeouts),
        cmocka_unit_test(test_session_eviction),
        cmocka_unit_test(test_session_eviction_order),
        cmocka_unit_test(test_session_expiry_only_when_full),
        cmocka_unit_test(test_session_generations),
        cmocka_unit_test(test_forwarded_trust),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
