/*
 * The node's own sign-in counters; see ratelimit.h.
 *
 * Pending state moves through three marks: PENDING (changed since the last
 * merge), MERGING (in the statement now on its way to the primary) and
 * clean. A change during a merge sets PENDING again, so ratelimit_merged()
 * never forgets something the statement did not carry.
 */
#include "ratelimit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

#define HOUR_MS 3600000ULL

enum merge_mark {
    MARK_CLEAN = 0,
    MARK_PENDING,
    MARK_MERGING,
};

struct bucket {
    double tokens;
    uint64_t at_ms;
    int per_minute;
};

struct failure {
    int failures;         /* all this node saw in the window */
    int offline_failures; /* those the primary has not seen */
    uint64_t last_ms;
    enum merge_mark mark;
    char user[129];
    char addr[64];
};

struct replay_mark {
    int64_t value;
    enum merge_mark mark;
};

struct sms_sent {
    char user[129];
    char phone[32];
    uint64_t at_ms;
    enum merge_mark mark;
};

struct ratelimit {
    struct strmap *buckets;  /* address -> bucket */
    struct strmap *failures; /* "user\x1faddr" -> failure */
    struct strmap *marks;    /* token id -> replay_mark */
    struct sms_sent *sms;    /* offline sends of the last hour */
    size_t nsms, capsms;
};

struct ratelimit *ratelimit_new(void)
{
    struct ratelimit *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->buckets = strmap_new();
    l->failures = strmap_new();
    l->marks = strmap_new();
    if (!l->buckets || !l->failures || !l->marks) {
        ratelimit_free(l);
        return NULL;
    }
    return l;
}

void ratelimit_free(struct ratelimit *l)
{
    if (!l)
        return;
    strmap_free(l->buckets, free);
    strmap_free(l->failures, free);
    strmap_free(l->marks, free);
    free(l->sms);
    free(l);
}

/* The bucket of <addr> refilled to <now_ms>; NULL when it is full (none kept). */
static struct bucket *refill(struct ratelimit *l, const char *addr, int per_minute, uint64_t now_ms)
{
    struct bucket *b = strmap_get(l->buckets, addr);

    if (!b)
        return NULL;
    b->tokens += (double)(now_ms - b->at_ms) * per_minute / 60000.0;
    b->at_ms = now_ms;
    b->per_minute = per_minute;
    if (b->tokens > per_minute)
        b->tokens = per_minute;
    return b;
}

bool ratelimit_throttled(struct ratelimit *l, const char *addr, int per_minute, uint64_t now_ms,
                         int *retry_after_s)
{
    struct bucket *b = refill(l, addr, per_minute, now_ms);

    if (!b || b->tokens >= 1.0)
        return false;
    *retry_after_s = (int)((1.0 - b->tokens) * 60.0 / per_minute) + 1;
    return true;
}

void ratelimit_addr_failure(struct ratelimit *l, const char *addr, int per_minute, uint64_t now_ms)
{
    struct bucket *b = refill(l, addr, per_minute, now_ms);

    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b || strmap_put(l->buckets, addr, b, NULL) < 0) {
            free(b);
            return;
        }
        b->tokens = per_minute;
        b->at_ms = now_ms;
        b->per_minute = per_minute;
    }
    b->tokens -= 1.0;
}

static void failure_key(char *key, size_t size, const char *user, const char *addr)
{
    snprintf(key, size, "%s\x1f%s", user, addr);
}

void ratelimit_failure(struct ratelimit *l, const char *user, const char *addr, bool offline,
                       int window_s, uint64_t now_ms)
{
    char key[200];
    struct failure *f;

    failure_key(key, sizeof(key), user, addr);
    f = strmap_get(l->failures, key);
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f || strmap_put(l->failures, key, f, NULL) < 0) {
            free(f);
            return;
        }
        snprintf(f->user, sizeof(f->user), "%s", user);
        snprintf(f->addr, sizeof(f->addr), "%s", addr);
    }
    if (f->last_ms + (uint64_t)window_s * 1000 < now_ms) {
        f->failures = 0;
        f->offline_failures = 0;
    }
    f->failures++;
    f->last_ms = now_ms;
    if (offline) {
        f->offline_failures++;
        f->mark = MARK_PENDING;
    }
}

struct count_arg {
    const char *user;
    uint64_t since_ms;
    int total, total_offline;
};

static bool count_user(const char *key, void *value, void *arg)
{
    struct failure *f = value;
    struct count_arg *c = arg;

    (void)key;
    if (strcmp(f->user, c->user) == 0 && f->last_ms >= c->since_ms) {
        c->total += f->failures;
        c->total_offline += f->offline_failures;
    }
    return false;
}

void ratelimit_failures(struct ratelimit *l, const char *user, const char *addr, int window_s,
                        uint64_t now_ms, struct ratelimit_counts *out)
{
    char key[200];
    struct failure *f;
    uint64_t window = (uint64_t)window_s * 1000;
    struct count_arg c = { user, now_ms > window ? now_ms - window : 0, 0, 0 };

    strmap_sweep(l->failures, count_user, &c);
    failure_key(key, sizeof(key), user, addr);
    f = strmap_get(l->failures, key);
    if (!f || f->last_ms < c.since_ms)
        f = NULL;
    out->pair = f ? f->failures : 0;
    out->pair_offline = f ? f->offline_failures : 0;
    out->total = c.total;
    out->total_offline = c.total_offline;
}

void ratelimit_clear(struct ratelimit *l, const char *user, const char *addr)
{
    char key[200];

    failure_key(key, sizeof(key), user, addr);
    free(strmap_remove(l->failures, key));
}

bool ratelimit_mark(struct ratelimit *l, const char *token_id, int64_t db_value, int64_t value)
{
    struct replay_mark *m = strmap_get(l->marks, token_id);

    if (value <= db_value || (m && value <= m->value))
        return false;
    if (!m) {
        m = calloc(1, sizeof(*m));
        if (!m || strmap_put(l->marks, token_id, m, NULL) < 0) {
            free(m);
            return false; /* without memory, refuse rather than allow a replay */
        }
    }
    m->value = value;
    m->mark = MARK_PENDING;
    return true;
}

bool ratelimit_marked(struct ratelimit *l, const char *token_id, int64_t value)
{
    const struct replay_mark *m = strmap_get(l->marks, token_id);

    return m && value <= m->value;
}

int ratelimit_sms_count(struct ratelimit *l, const char *key, uint64_t wall_ms)
{
    int n = 0;

    for (size_t i = 0; i < l->nsms; i++) {
        const struct sms_sent *s = &l->sms[i];

        if (s->at_ms + HOUR_MS > wall_ms &&
            ((strncmp(key, "user:", 5) == 0 && strcmp(s->user, key + 5) == 0) ||
             (strncmp(key, "phone:", 6) == 0 && strcmp(s->phone, key + 6) == 0)))
            n++;
    }
    return n;
}

int ratelimit_sms_node_count(struct ratelimit *l, uint64_t wall_ms)
{
    int n = 0;

    for (size_t i = 0; i < l->nsms; i++)
        n += l->sms[i].at_ms + HOUR_MS > wall_ms;
    return n;
}

void ratelimit_sms_note(struct ratelimit *l, const char *user, const char *phone, bool offline,
                        uint64_t wall_ms)
{
    struct sms_sent *s;

    if (l->nsms == l->capsms) {
        size_t cap = l->capsms ? l->capsms * 2 : 16;
        struct sms_sent *grown = realloc(l->sms, cap * sizeof(*grown));

        if (!grown)
            return;
        l->sms = grown;
        l->capsms = cap;
    }
    s = &l->sms[l->nsms++];
    memset(s, 0, sizeof(*s));
    snprintf(s->user, sizeof(s->user), "%s", user);
    snprintf(s->phone, sizeof(s->phone), "%s", phone);
    s->at_ms = wall_ms;
    s->mark = offline ? MARK_PENDING : MARK_CLEAN;
}

struct collect {
    json_t *failures, *marks;
};

static bool collect_failure(const char *key, void *value, void *arg)
{
    struct failure *f = value;
    struct collect *c = arg;

    (void)key;
    if (f->mark != MARK_CLEAN) {
        json_array_append_new(c->failures,
                              json_pack("{s:s, s:s, s:i}", "username", f->user, "client_ip",
                                        f->addr, "failures", f->offline_failures));
        f->mark = MARK_MERGING;
    }
    return false;
}

static bool collect_mark(const char *key, void *value, void *arg)
{
    struct replay_mark *m = value;
    struct collect *c = arg;

    if (m->mark != MARK_CLEAN) {
        json_array_append_new(
            c->marks, json_pack("{s:s, s:I}", "token_id", key, "value", (json_int_t)m->value));
        m->mark = MARK_MERGING;
    }
    return false;
}

char *ratelimit_pending_json(struct ratelimit *l)
{
    struct collect c = { json_array(), json_array() };
    json_t *sms = json_array(), *all;
    char *text = NULL;

    strmap_sweep(l->failures, collect_failure, &c);
    strmap_sweep(l->marks, collect_mark, &c);
    for (size_t i = 0; i < l->nsms; i++) {
        if (l->sms[i].mark == MARK_CLEAN)
            continue;
        json_array_append_new(sms,
                              json_pack("{s:s, s:s, s:I}", "username", l->sms[i].user, "phone",
                                        l->sms[i].phone, "at_ms", (json_int_t)l->sms[i].at_ms));
        l->sms[i].mark = MARK_MERGING;
    }
    if (json_array_size(c.failures) + json_array_size(c.marks) + json_array_size(sms) > 0) {
        all = json_pack("{s:o, s:o, s:o}", "failures", c.failures, "marks", c.marks, "sms", sms);
        text = all ? json_dumps(all, JSON_COMPACT) : NULL;
        json_decref(all);
        return text;
    }
    json_decref(c.failures);
    json_decref(c.marks);
    json_decref(sms);
    return NULL;
}

static bool settle_failure(const char *key, void *value, void *arg)
{
    struct failure *f = value;

    (void)key;
    if (f->mark == MARK_MERGING) {
        f->mark = *(const enum merge_mark *)arg;
        if (f->mark == MARK_CLEAN)
            f->offline_failures = 0; /* the primary has them now */
    }
    return false;
}

static bool settle_mark(const char *key, void *value, void *arg)
{
    struct replay_mark *m = value;

    (void)key;
    if (m->mark == MARK_MERGING)
        m->mark = *(const enum merge_mark *)arg;
    return false;
}

/* Moves every MERGING entry to <to>. */
static void settle_all(struct ratelimit *l, enum merge_mark to)
{
    strmap_sweep(l->failures, settle_failure, &to);
    strmap_sweep(l->marks, settle_mark, &to);
    for (size_t i = 0; i < l->nsms; i++) {
        if (l->sms[i].mark == MARK_MERGING)
            l->sms[i].mark = to;
    }
}

void ratelimit_merged(struct ratelimit *l)
{
    settle_all(l, MARK_CLEAN);
}

void ratelimit_merge_failed(struct ratelimit *l)
{
    settle_all(l, MARK_PENDING);
}

static bool expired_bucket(const char *key, void *value, void *arg)
{
    struct bucket *b = value;
    uint64_t now_ms = *(const uint64_t *)arg;
    double tokens = b->tokens + (double)(now_ms - b->at_ms) * b->per_minute / 60000.0;

    (void)key;
    if (tokens < b->per_minute)
        return false;
    free(b);
    return true;
}

struct sweep_arg {
    uint64_t now_ms, window_ms;
};

static bool expired_failure(const char *key, void *value, void *arg)
{
    struct failure *f = value;
    const struct sweep_arg *sw = arg;

    (void)key;
    /* Kept while it counts, and never before it was merged. */
    if (f->mark != MARK_CLEAN || f->last_ms + sw->window_ms > sw->now_ms)
        return false;
    free(f);
    return true;
}

static bool merged_mark(const char *key, void *value, void *arg)
{
    struct replay_mark *m = value;

    (void)key;
    (void)arg;
    /* Once on the primary, the database's own value is the guard. */
    if (m->mark != MARK_CLEAN)
        return false;
    free(m);
    return true;
}

void ratelimit_sweep(struct ratelimit *l, int window_s, uint64_t now_ms, uint64_t wall_ms)
{
    struct sweep_arg sw = { now_ms, (uint64_t)window_s * 1000 };
    size_t kept = 0;

    strmap_sweep(l->buckets, expired_bucket, &now_ms);
    strmap_sweep(l->failures, expired_failure, &sw);
    strmap_sweep(l->marks, merged_mark, NULL);
    for (size_t i = 0; i < l->nsms; i++) {
        if (l->sms[i].mark != MARK_CLEAN || l->sms[i].at_ms + HOUR_MS > wall_ms)
            l->sms[kept++] = l->sms[i];
    }
    l->nsms = kept;
}
