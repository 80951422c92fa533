/*
 * The portal's sessions: node-local, in memory only (DESIGN §3). An id is
 * "<node id>-<22 base64url>" (ids.h), so HAProxy sends every request of a
 * session to the node that holds it; if that node goes away the session is
 * gone with it and the user signs in again elsewhere.
 *
 * A session lives at most: signin_timeout after its last request while no
 * one is signed in (and signin_timeout after the PIN was accepted, for the
 * code), idle_timeout after its last request and absolute_timeout after the
 * sign-in once signed in. The store holds at most max_sessions: a new
 * visitor pushes out the oldest anonymous session (then the oldest half-done
 * sign-in: those go last), and is turned away when all are signed in.
 * Sessions are kept in creation order (a list)
 * for that, and by id (strmap) for lookups.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "portal_priv.h"
#include "secrets.h"
#include "strmap.h"

struct portal_store {
    char node_id[NODE_ID_MAX + 1];
    struct strmap *byid;
    struct portal_session *oldest, *newest;
    size_t active; /* mid-sign-in or signed in */
};

struct portal_store *portal_store_new(const char *node_id)
{
    struct portal_store *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    snprintf(st->node_id, sizeof(st->node_id), "%s", node_id);
    st->byid = strmap_new();
    if (!st->byid) {
        free(st);
        return NULL;
    }
    return st;
}

static void session_wipe_free(void *p)
{
    struct portal_session *s = p;

    secret_wipe(s, sizeof(*s));
    free(s);
}

void portal_store_free(struct portal_store *st)
{
    if (!st)
        return;
    strmap_free(st->byid, session_wipe_free);
    free(st);
}

static bool is_active(const struct portal_session *s)
{
    return s->state != PORTAL_ANON;
}

static void unlink_session(struct portal_store *st, struct portal_session *s)
{
    if (s->older)
        s->older->newer = s->newer;
    else
        st->oldest = s->newer;
    if (s->newer)
        s->newer->older = s->older;
    else
        st->newest = s->older;
    s->older = s->newer = NULL;
}

void portal_session_end(struct portal_store *st, struct portal_session *s)
{
    strmap_remove(st->byid, s->id);
    unlink_session(st, s);
    if (is_active(s))
        st->active--;
    session_wipe_free(s);
}

/* A fresh id and CSRF token for <s>. Returns 0 or -1 (RNG). */
static int new_secrets(struct portal_store *st, struct portal_session *s)
{
    unsigned char rnd[PORTAL_CSRF_BYTES];
    int rc = id_new(st->node_id, s->id, sizeof(s->id)) < 0 || rand_bytes(rnd, sizeof(rnd)) < 0 ||
                     b64url_encode(rnd, sizeof(rnd), s->csrf, sizeof(s->csrf)) < 0
                 ? -1
                 : 0;

    secret_wipe(rnd, sizeof(rnd));
    return rc;
}

/*
 * Who goes when the store is full: the oldest anonymous session (a sign-in
 * page shown, nothing typed yet) first, so that a flood of them cannot push
 * out people entering their code; then the oldest half-done sign-in; never
 * a signed-in one (NULL).
 */
static struct portal_session *eviction_victim(struct portal_store *st)
{
    struct portal_session *waiting = NULL;

    for (struct portal_session *s = st->oldest; s; s = s->newer) {
        if (s->state == PORTAL_ANON)
            return s;
        if (!waiting && s->state != PORTAL_SIGNED_IN)
            waiting = s;
    }
    return waiting;
}

struct portal_session *portal_session_new(struct portal_store *st, const struct portal_limits *lim,
                                          uint64_t now_ms, bool *full)
{
    struct portal_session *s;

    *full = false;
    /* The tick expires sessions; a full store does it now, before pushing anyone out. */
    if (strmap_count(st->byid) >= lim->max_sessions)
        portal_store_expire(st, lim, now_ms);
    while (strmap_count(st->byid) >= lim->max_sessions) {
        struct portal_session *victim = eviction_victim(st);

        if (!victim) {
            *full = true;
            return NULL;
        }
        portal_session_end(st, victim);
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (new_secrets(st, s) < 0 || strmap_put(st->byid, s->id, s, NULL) < 0) {
        session_wipe_free(s);
        return NULL;
    }
    s->created_ms = s->used_ms = now_ms;
    s->older = st->newest;
    if (st->newest)
        st->newest->newer = s;
    else
        st->oldest = s;
    st->newest = s;
    return s;
}

static bool expired(const struct portal_session *s, const struct portal_limits *lim,
                    uint64_t now_ms)
{
    switch (s->state) {
    case PORTAL_ANON:
        return now_ms - s->used_ms >= lim->signin_ms;
    case PORTAL_WAIT_SMS:
    case PORTAL_WAIT_CODE:
        return now_ms - s->stage_ms >= lim->signin_ms;
    case PORTAL_SIGNED_IN:
        return now_ms - s->used_ms >= lim->idle_ms || now_ms - s->signed_in_ms >= lim->absolute_ms;
    }
    return true;
}

struct portal_session *portal_session_get(struct portal_store *st, const char *id,
                                          const struct portal_limits *lim, uint64_t now_ms)
{
    struct portal_session *s;

    if (!id_valid(id) || !id_belongs_to(id, st->node_id))
        return NULL;
    s = strmap_get(st->byid, id);
    if (!s)
        return NULL;
    if (expired(s, lim, now_ms)) {
        portal_session_end(st, s);
        return NULL;
    }
    s->used_ms = now_ms;
    return s;
}

int portal_session_rotate(struct portal_store *st, struct portal_session *s)
{
    strmap_remove(st->byid, s->id);
    if (new_secrets(st, s) < 0 || strmap_put(st->byid, s->id, s, NULL) < 0) {
        /* Not in the map under its new id (if it got one): end() removes nothing there. */
        *s->id = '\0';
        portal_session_end(st, s);
        return -1;
    }
    return 0;
}

/* Keeps the active count when <s> moves to <state>. */
void portal_session_set_state(struct portal_store *st, struct portal_session *s,
                              enum portal_state state)
{
    bool was = is_active(s), will = state != PORTAL_ANON;

    if (!was && will)
        st->active++;
    else if (was && !will)
        st->active--;
    s->state = state;
    s->gen++;
}

void portal_store_expire(struct portal_store *st, const struct portal_limits *lim, uint64_t now_ms)
{
    struct portal_session *s = st->oldest, *next;

    for (; s; s = next) {
        next = s->newer;
        if (expired(s, lim, now_ms))
            portal_session_end(st, s);
    }
}

size_t portal_store_count(const struct portal_store *st)
{
    return strmap_count(st->byid);
}

size_t portal_store_active(const struct portal_store *st)
{
    return st->active;
}

bool portal_csrf_ok(const struct portal_session *s, const char *token)
{
    return token && strlen(token) == PORTAL_CSRF_LEN &&
           CRYPTO_memcmp(token, s->csrf, PORTAL_CSRF_LEN) == 0;
}
