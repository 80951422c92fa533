/*
 * The decisions behind mfactl's cluster commands; see cluster_plan.h.
 *
 * Pure: everything here reads its arguments and writes its results, with no
 * I/O and no clock, so that cluster_cmd.c only carries decisions out. Every
 * sentence built here is meant for an operator: it names the members, the
 * numbers that made the decision and what to do next.
 */
#include "cluster_plan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "errmsg.h"

#define LSN_PART_MAX 8 /* hex digits per half, as PostgreSQL's pg_lsn_in */

static const char *const role_names[] = {
    [PLAN_ROLE_UNKNOWN] = "unknown",     [PLAN_ROLE_PRIMARY] = "primary",
    [PLAN_ROLE_STANDBY] = "standby",     [PLAN_ROLE_STARTING] = "starting",
    [PLAN_ROLE_REJOINING] = "rejoining", [PLAN_ROLE_STOPPED] = "stopped",
    [PLAN_ROLE_WITNESS] = "witness",     [PLAN_ROLE_DOWN] = "down",
};

/* ---- LSNs, sizes, roles ------------------------------------------------ */

/* Parses 1..8 hex digits at *s up to <stop>; advances *s. */
static int parse_half(const char **s, char stop, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0, d;

    while (**s != stop) {
        d = b16_digit(**s);
        if (d < 0 || ++n > LSN_PART_MAX)
            return -1;
        v = v << 4 | (uint32_t)d;
        (*s)++;
    }
    if (n == 0)
        return -1;
    *out = v;
    return 0;
}

int plan_lsn_parse(const char *s, uint64_t *out)
{
    uint32_t hi, lo;

    if (!s || parse_half(&s, '/', &hi) < 0)
        return -1;
    s++; /* the '/' */
    if (parse_half(&s, '\0', &lo) < 0)
        return -1;
    *out = (uint64_t)hi << 32 | lo;
    return 0;
}

char *plan_lsn_format(uint64_t lsn, char buf[PLAN_LSN_MAX])
{
    snprintf(buf, PLAN_LSN_MAX, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
    return buf;
}

char *plan_bytes_format(uint64_t n, char *buf, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, size, "%" PRIu64 " byte%s", n, n == 1 ? "" : "s");
        return buf;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < MFA_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, "%" PRIu64 " bytes (%.1f %s)", n, v, units[u]);
    return buf;
}

enum plan_role plan_role_from_name(const char *name)
{
    for (size_t i = PLAN_ROLE_PRIMARY; i < MFA_ARRAY_LEN(role_names); i++) {
        if (i != PLAN_ROLE_DOWN && strcmp(name, role_names[i]) == 0)
            return (enum plan_role)i;
    }
    return PLAN_ROLE_UNKNOWN;
}

const char *plan_role_name(enum plan_role r)
{
    return (size_t)r < MFA_ARRAY_LEN(role_names) ? role_names[r] : "unknown";
}

/* ---- /status replies ---------------------------------------------------- */

/*
 * Copies a string from a replicator's answer, with control characters (C0,
 * DEL and, in UTF-8, C1) replaced by '?': it goes to an operator's terminal,
 * where an escape sequence could hide a refusal.
 */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (const unsigned char *s = (const unsigned char *)src; *s && i + 1 < size; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            dst[i++] = '?';
        } else if (*s == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) {
            dst[i++] = '?';
            s++;
        } else {
            dst[i++] = (char)*s;
        }
    }
    if (size)
        dst[i] = '\0';
}

/* A string field into <buf>; absent or null: "". */
static int get_str(const json_t *o, const char *key, char *buf, size_t size, char **err)
{
    const json_t *v = json_object_get(o, key);

    buf[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return err_set(err, "\"%s\" is not a string", key);
    if (json_string_length(v) >= size)
        return err_set(err, "\"%s\" is longer than %zu characters", key, size - 1);
    copy_str(buf, size, json_string_value(v));
    return 0;
}

/* A boolean field: 1, 0, or -1 when absent or null. */
static int get_tri(const json_t *o, const char *key, int *out, char **err)
{
    const json_t *v = json_object_get(o, key);

    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return err_set(err, "\"%s\" is not true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int get_int(const json_t *o, const char *key, bool *has, int64_t *out, char **err)
{
    const json_t *v = json_object_get(o, key);

    *has = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return err_set(err, "\"%s\" is not an integer", key);
    *out = json_integer_value(v);
    *has = true;
    return 0;
}

static int get_real(const json_t *o, const char *key, bool *has, double *out, char **err)
{
    const json_t *v = json_object_get(o, key);

    *has = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return err_set(err, "\"%s\" is not a number", key);
    *out = json_number_value(v);
    *has = true;
    return 0;
}

static int get_lsn(const json_t *o, const char *key, bool *has, uint64_t *out, char **err)
{
    const json_t *v = json_object_get(o, key);

    *has = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || plan_lsn_parse(json_string_value(v), out) < 0)
        return err_set(err, "\"%s\" is not an LSN like \"0/3000148\"", key);
    *has = true;
    return 0;
}

static int parse_peer(const json_t *p, struct plan_peer *out, char **err)
{
    bool has_tl, has_lsn;
    int seen;

    if (!json_is_object(p))
        return err_set(err, "an entry is not an object");
    if (get_str(p, "id", out->id, sizeof(out->id), err) < 0 || get_tri(p, "seen", &seen, err) < 0 ||
        get_real(p, "age_s", &out->has_age, &out->age_s, err) < 0 ||
        get_int(p, "timeline", &has_tl, &out->timeline, err) < 0 ||
        get_lsn(p, "lsn", &has_lsn, &out->lsn, err) < 0)
        return -1;
    if (!out->id[0])
        return err_set(err, "an entry has no \"id\"");
    out->seen = seen == 1;
    out->has_pos = has_tl && has_lsn;
    return 0;
}

static int parse_status(const json_t *st, const char *id, struct plan_member *m, char **err)
{
    char who[PLAN_ID_MAX];
    const json_t *peers;
    size_t i;
    int writable, fenced;
    bool has_tl, has_lsn, has_recv;
    uint64_t recv;

    if (!json_is_object(st))
        return err_set(err, "the reply is not a JSON object");
    if (get_str(st, "member", who, sizeof(who), err) < 0)
        return -1;
    if (who[0] && strcmp(who, id) != 0)
        return err_set(err,
                       "it answers as member \"%s\", not \"%s\": check the addresses and ports "
                       "in cluster.members",
                       who, id);
    if (get_str(st, "role", m->role_name, sizeof(m->role_name), err) < 0)
        return -1;
    if (!m->role_name[0])
        return err_set(err, "\"role\" is missing");
    m->role = plan_role_from_name(m->role_name);
    if (get_tri(st, "writable", &writable, err) < 0 || get_tri(st, "fenced", &fenced, err) < 0 ||
        get_str(st, "fence_reason", m->fence_reason, sizeof(m->fence_reason), err) < 0 ||
        get_int(st, "timeline", &has_tl, &m->timeline, err) < 0 ||
        get_lsn(st, "lsn", &has_lsn, &m->lsn, err) < 0 ||
        get_lsn(st, "receive_lsn", &has_recv, &recv, err) < 0 ||
        get_lsn(st, "replay_lsn", &m->has_replay, &m->replay_lsn, err) < 0 ||
        get_int(st, "lag_bytes", &m->has_lag, &m->lag_bytes, err) < 0 ||
        get_real(st, "lag_seconds", &m->has_lag_s, &m->lag_seconds, err) < 0 ||
        get_str(st, "upstream", m->upstream, sizeof(m->upstream), err) < 0 ||
        get_str(st, "primary", m->primary, sizeof(m->primary), err) < 0 ||
        get_str(st, "task", m->task, sizeof(m->task), err) < 0 ||
        get_tri(st, "streaming", &m->streaming, err) < 0)
        return -1;
    m->writable = writable == 1;
    m->fenced = fenced == 1;
    m->has_pos = has_tl && has_lsn;
    peers = json_object_get(st, "peers");
    if (peers && !json_is_null(peers)) {
        if (!json_is_array(peers))
            return err_set(err, "\"peers\" is not an array");
        for (i = 0; i < json_array_size(peers) && m->npeers < MFA_ARRAY_LEN(m->peers); i++) {
            if (parse_peer(json_array_get(peers, i), &m->peers[m->npeers], err) < 0)
                return err_prefix(err, "\"peers\"");
            m->npeers++;
        }
    }
    return 0;
}

int plan_member_from_json(const json_t *st, const char *id, struct plan_member *m, char **err)
{
    memset(m, 0, sizeof(*m));
    copy_str(m->id, sizeof(m->id), id);
    m->reachable = true;
    m->streaming = -1;
    if (parse_status(st, id, m, err) < 0) {
        plan_member_down(m, id, err && *err ? *err : "invalid /status reply");
        return -1;
    }
    return 0;
}

void plan_member_down(struct plan_member *m, const char *id, const char *why)
{
    char reason[PLAN_WHY_MAX];

    copy_str(reason, sizeof(reason), why); /* <why> may point into *m */
    memset(m, 0, sizeof(*m));
    copy_str(m->id, sizeof(m->id), id);
    copy_str(m->why, sizeof(m->why), reason);
    m->role = PLAN_ROLE_DOWN;
    copy_str(m->role_name, sizeof(m->role_name), "down");
    m->streaming = -1;
}

const struct plan_peer *plan_peer_of(const struct plan_member *m, const char *id)
{
    for (size_t i = 0; i < m->npeers; i++) {
        if (strcmp(m->peers[i].id, id) == 0)
            return &m->peers[i];
    }
    return NULL;
}

/* ---- ranking ------------------------------------------------------------ */

static int pos_cmp(int64_t tl_a, uint64_t lsn_a, int64_t tl_b, uint64_t lsn_b)
{
    if (tl_a != tl_b)
        return tl_a < tl_b ? -1 : 1;
    if (lsn_a != lsn_b)
        return lsn_a < lsn_b ? -1 : 1;
    return 0;
}

int plan_rank_cmp(const struct plan_member *a, const struct plan_member *b)
{
    if (!a->has_pos || !b->has_pos)
        return (int)a->has_pos - (int)b->has_pos;
    return pos_cmp(a->timeline, a->lsn, b->timeline, b->lsn);
}

bool plan_streams_from(const struct plan_member *m, const char *primary)
{
    return m->reachable && m->role == PLAN_ROLE_STANDBY && m->streaming == 1 &&
           strcmp(m->upstream, primary) == 0;
}

static int index_of(const struct plan_member *m, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].id, id) == 0)
            return (int)i;
    }
    return -1;
}

int plan_old_primary(const struct plan_member *m, size_t n, size_t cand)
{
    unsigned votes[APPCONF_MAX_MEMBERS] = { 0 };
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        const char *named = m[i].upstream[0] ? m[i].upstream : m[i].primary;
        int j;

        if (!m[i].reachable || m[i].role == PLAN_ROLE_PRIMARY || !named[0])
            continue;
        j = index_of(m, n, named);
        if (j >= 0 && (size_t)j != cand && j < APPCONF_MAX_MEMBERS)
            votes[j]++;
    }
    for (size_t j = 0; j < n && j < APPCONF_MAX_MEMBERS; j++) {
        if (votes[j] && (best < 0 || votes[j] > votes[best]))
            best = (int)j;
    }
    if (best >= 0)
        return best;
    for (size_t j = 0; j < n; j++) {
        if (j != cand && m[j].role == PLAN_ROLE_PRIMARY && m[j].reachable)
            return (int)j;
    }
    for (size_t j = 0; j < n; j++) {
        if (j != cand && !m[j].reachable)
            return (int)j;
    }
    return -1;
}

/* ---- sentences ------------------------------------------------------------ */

/* Appends to the malloc'd string *s; on failure frees it and returns -1. */
static int add(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add(char **s, const char *fmt, ...)
{
    char *more = NULL, *joined = NULL;
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&more, fmt, ap);
    va_end(ap);
    if (r < 0) {
        mfa_free(*s);
        return -1;
    }
    if (!*s) {
        *s = more;
        return 0;
    }
    r = asprintf(&joined, "%s%s", *s, more);
    free(more);
    mfa_free(*s);
    if (r < 0)
        return -1;
    *s = joined;
    return 0;
}

static int decide(struct plan_decision *d, enum plan_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the verdict and its message; returns 0, or -1 when out of memory. */
static int decide(struct plan_decision *d, enum plan_verdict v, const char *fmt, ...)
{
    va_list ap;
    int r;

    d->verdict = v;
    d->exit_code = v == PLAN_REFUSE ? PLAN_EXIT_REFUSED : 0;
    mfa_free(d->message);
    va_start(ap, fmt);
    r = vasprintf(&d->message, fmt, ap);
    va_end(ap);
    if (r < 0) {
        d->message = NULL;
        return -1;
    }
    return 0;
}

/* Sets the verdict PLAN_GO, without a message; returns 0. */
static int go(struct plan_decision *d)
{
    d->verdict = PLAN_GO;
    d->exit_code = 0;
    mfa_free(d->message);
    return 0;
}

/*
 * How far position a is ahead of member <b>'s (a ranks higher), into <buf>,
 * to follow "is" or "was": "1234 bytes ahead of n2 on timeline 2 (0/3000500
 * against 0/30000CC)" or "on a newer timeline than n2 (3 against 2)".
 */
static char *ahead_of(int64_t tl_a, uint64_t lsn_a, const struct plan_member *b, char *buf,
                      size_t size)
{
    char la[PLAN_LSN_MAX], lb[PLAN_LSN_MAX], bytes[64];

    if (tl_a != b->timeline)
        snprintf(buf, size, "on a newer timeline than %s (%" PRId64 " against %" PRId64 ")", b->id,
                 tl_a, b->timeline);
    else
        snprintf(buf, size, "%s ahead of %s on timeline %" PRId64 " (%s against %s)",
                 plan_bytes_format(lsn_a - b->lsn, bytes, sizeof(bytes)), b->id, tl_a,
                 plan_lsn_format(lsn_a, la), plan_lsn_format(b->lsn, lb));
    return buf;
}

/* ---- failover ------------------------------------------------------------- */

/*
 * Seconds the old primary <old> has been unseen by every member that
 * answered; see cluster_plan.h.
 */
static double unseen_s(const struct plan_member *m, size_t n, int old,
                       const struct plan_failover_opts *o)
{
    double least = -1, age;

    for (size_t i = 0; i < n; i++) {
        const struct plan_peer *p;

        if ((int)i == old || !m[i].reachable || !(p = plan_peer_of(&m[i], m[old].id)))
            continue;
        if (p->seen)
            age = p->has_age ? p->age_s : 0;
        else if (p->has_age)
            age = p->age_s;
        else
            continue;
        if (age < 0)
            age = 0;
        if (least < 0 || age < least)
            least = age;
    }
    return least >= 0 ? least : o->watched_unseen_s;
}

/* The newest position the members answering report for member <idx>. */
static bool last_reported(const struct plan_member *m, size_t n, size_t idx, int64_t *tl,
                          uint64_t *lsn)
{
    bool found = false;

    for (size_t i = 0; i < n; i++) {
        const struct plan_peer *p;

        if (i == idx || !m[i].reachable || !(p = plan_peer_of(&m[i], m[idx].id)) || !p->has_pos)
            continue;
        if (!found || pos_cmp(p->timeline, p->lsn, *tl, *lsn) > 0) {
            *tl = p->timeline;
            *lsn = p->lsn;
            found = true;
        }
    }
    return found;
}

/* "n3 (why), n4 (why)" for the members down other than <old> and <cand>. */
static int others_down(const struct plan_member *m, size_t n, int old, size_t cand, char **list,
                       size_t *count)
{
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if ((int)i == old || i == cand || m[i].reachable)
            continue;
        if (add(list, "%s%s (%s)", *count ? ", " : "", m[i].id, m[i].why) < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

/* The reachable member with the most data above <cand>'s, other than <old>. */
static int most_ahead(const struct plan_member *m, size_t n, int old, size_t cand)
{
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        if ((int)i == old || i == cand || !m[i].reachable || m[i].role == PLAN_ROLE_WITNESS ||
            plan_rank_cmp(&m[i], &m[cand]) <= 0)
            continue;
        if (best < 0 || plan_rank_cmp(&m[i], &m[best]) > 0)
            best = (int)i;
    }
    return best;
}

/* The sentence about data the old primary has beyond <cand>, or NULL. */
static int old_ahead(const struct plan_member *m, size_t n, int old, size_t cand, char **out)
{
    const struct plan_member *c = &m[cand];
    int64_t tl = 0;
    uint64_t lsn = 0;
    char buf[160];

    if (old < 0)
        return 0;
    if (m[old].reachable) {
        if (!m[old].has_pos || plan_rank_cmp(&m[old], c) <= 0)
            return 0;
        return add(out,
                   "%s (the old primary) is %s; that data never reached %s and is discarded "
                   "when %s rejoins",
                   m[old].id, ahead_of(m[old].timeline, m[old].lsn, c, buf, sizeof(buf)), c->id,
                   m[old].id);
    }
    if (!last_reported(m, n, (size_t)old, &tl, &lsn) || pos_cmp(tl, lsn, c->timeline, c->lsn) <= 0)
        return 0;
    return add(out, "%s (the old primary) was last reported %s; that data is lost", m[old].id,
               ahead_of(tl, lsn, c, buf, sizeof(buf)));
}

/* With --force: every way the promotion may lose data, into d->loss. */
static int loss_report(const struct plan_member *m, size_t n, int old, size_t cand,
                       const struct plan_failover_opts *o, struct plan_decision *d)
{
    const struct plan_member *c = &m[cand];
    char *items = NULL, *ahead = NULL, buf[160];
    double unseen;

    for (size_t i = 0; i < n; i++) {
        if ((int)i == old || i == cand || !m[i].reachable || m[i].role == PLAN_ROLE_WITNESS ||
            plan_rank_cmp(&m[i], c) <= 0)
            continue;
        if (add(&items, "%s%s is %s; that data is discarded when %s rejoins", items ? "; " : "",
                m[i].id, ahead_of(m[i].timeline, m[i].lsn, c, buf, sizeof(buf)), m[i].id) < 0)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((int)i == old || i == cand || m[i].reachable)
            continue;
        if (add(&items, "%s%s did not answer (%s): whatever it has beyond %s is lost",
                items ? "; " : "", m[i].id, m[i].why, c->id) < 0)
            return -1;
    }
    if (old_ahead(m, n, old, cand, &ahead) < 0)
        goto fail;
    if (ahead && add(&items, "%s%s", items ? "; " : "", ahead) < 0)
        goto fail;
    if (old >= 0 && !m[old].reachable) {
        unseen = unseen_s(m, n, old, o);
        if (n <= 2 && add(&items,
                          "%sthis cluster has no witness, so %s never fences itself: if it is "
                          "running, it accepts writes until it is stopped, and they are lost",
                          items ? "; " : "", m[old].id) < 0)
            goto fail;
        if (n > 2 && unseen < o->fence_after + PLAN_FENCE_MARGIN_S &&
            add(&items,
                "%s%s was seen %.1f s ago, less than fence_after (%d s): if it is running, it "
                "may still accept writes until it fences itself, and they are lost",
                items ? "; " : "", m[old].id, unseen, o->fence_after) < 0)
            goto fail;
    }
    free(ahead);
    if (items &&
        asprintf(&d->loss, "promoting %s with --force may lose data: %s.", c->id, items) < 0) {
        d->loss = NULL;
        free(items);
        return -1;
    }
    free(items);
    return 0;
fail:
    free(ahead);
    free(items);
    return -1;
}

/* Rule 1: the candidate can be promoted at all. Returns 1 when refused. */
static int check_candidate(const struct plan_member *c, struct plan_decision *d)
{
    int r = 0;

    if (!c->reachable)
        r = decide(d, PLAN_REFUSE,
                   "%s did not answer (%s), so it cannot be promoted; choose a member that answers "
                   "(`mfactl status`)",
                   c->id, c->why);
    else if (c->role == PLAN_ROLE_PRIMARY)
        r = decide(d, PLAN_REFUSE, "%s is already a primary (%s); there is nothing to fail over to",
                   c->id, c->fenced ? "fenced" : "writable");
    else if (c->role != PLAN_ROLE_STANDBY)
        r = decide(d, PLAN_REFUSE,
                   "%s's role is %s, not standby; only a standby can be promoted: wait until "
                   "it streams (`mfactl status`) or choose another member",
                   c->id, c->role_name);
    else if (!c->has_pos)
        r = decide(d, PLAN_REFUSE, "%s reports no data (no timeline or LSN); it cannot be promoted",
                   c->id);
    else
        return 0;
    return r < 0 ? -1 : 1;
}

int plan_failover(const struct plan_member *m, size_t n, size_t cand,
                  const struct plan_failover_opts *o, struct plan_decision *d)
{
    const struct plan_member *c = &m[cand];
    char *down = NULL, buf[160], lsn[PLAN_LSN_MAX];
    size_t ndown;
    int old, best, r;
    double unseen, need;

    plan_decision_clear(d);
    d->primary = -1;
    if ((r = check_candidate(c, d)) != 0)
        return r < 0 ? -1 : 0;
    for (size_t i = 0; i < n; i++) {
        /* A primary that may write: writable, unfenced, or being promoted right now. */
        if (i != cand && m[i].reachable &&
            (m[i].writable || (m[i].role == PLAN_ROLE_PRIMARY && !m[i].fenced) ||
             strcmp(m[i].task, "promote") == 0))
            return decide(d, PLAN_REFUSE,
                          "%s is a writable primary (timeline %" PRId64 ", LSN %s): a failover "
                          "would make a second one. To move the primary to %s without losing a "
                          "write, run `mfactl switchover --to %s`",
                          m[i].id, m[i].timeline,
                          m[i].has_pos ? plan_lsn_format(m[i].lsn, lsn) : "?", c->id, c->id);
    }
    old = d->primary = plan_old_primary(m, n, cand);
    if (!o->force) {
        if (others_down(m, n, old, cand, &down, &ndown) < 0)
            return -1;
        if (ndown) {
            r = decide(d, PLAN_REFUSE,
                       "%s did not answer: %s may have more data than %s. Bring %s back and "
                       "retry, or add --force if %s gone for good (whatever %s beyond %s is lost)",
                       down, ndown > 1 ? "they" : "it", c->id, ndown > 1 ? "them" : "it",
                       ndown > 1 ? "they are" : "it is", ndown > 1 ? "they have" : "it has", c->id);
            free(down);
            return r;
        }
        best = most_ahead(m, n, old, cand);
        if (best >= 0)
            return decide(d, PLAN_REFUSE,
                          "%s has more data than %s: it is %s. Promote %s instead (`mfactl "
                          "failover --to %s`), or add --force to promote %s and lose that data",
                          m[best].id, c->id,
                          ahead_of(m[best].timeline, m[best].lsn, c, buf, sizeof(buf)), m[best].id,
                          m[best].id, c->id);
        /* A fenced old primary that answers and holds more: its writes would be discarded. */
        if (old >= 0 && m[old].reachable && m[old].has_pos && plan_rank_cmp(&m[old], c) > 0)
            return decide(d, PLAN_REFUSE,
                          "%s (the old primary, fenced) is %s: promoting %s would discard that "
                          "data when %s rejoins. Bring the others back so that %s can be primary "
                          "again, or add --force to discard it",
                          m[old].id, ahead_of(m[old].timeline, m[old].lsn, c, buf, sizeof(buf)),
                          c->id, m[old].id, m[old].id);
        if (old >= 0 && !m[old].reachable && n <= 2)
            return decide(d, PLAN_REFUSE,
                          "this cluster has two members and no witness, so %s never fences "
                          "itself: if it is running behind a partition it still accepts writes, "
                          "and promoting %s would make two writable primaries. Make sure %s is "
                          "stopped (power it off, or stop mfa-replicator and PostgreSQL on it), "
                          "then repeat with --force",
                          m[old].id, c->id, m[old].id);
        if (old >= 0 && !m[old].reachable) {
            unseen = unseen_s(m, n, old, o);
            need = o->fence_after + o->detect_s + PLAN_FENCE_MARGIN_S;
            if (unseen < need) {
                d->wait_s = need - unseen;
                return decide(d, PLAN_WAIT,
                              "waiting %.1f s until %s has been unseen for fence_after (%d s), so "
                              "that it has fenced itself if it is still running",
                              d->wait_s, m[old].id, o->fence_after);
            }
        }
    }
    go(d);
    if (o->force)
        return loss_report(m, n, old, cand, o, d);
    if (old_ahead(m, n, old, cand, &d->message) < 0)
        return -1;
    return 0;
}

/* ---- switchover and rejoin ----------------------------------------------- */

/* The one writable primary: its index, -1 for none, -2 for several (*list names them). */
static int writable_primary(const struct plan_member *m, size_t n, char **list)
{
    int found = -1, count = 0;

    for (size_t i = 0; i < n; i++) {
        if (!m[i].reachable || !m[i].writable)
            continue;
        if (add(list, "%s%s", count ? " and " : "", m[i].id) < 0)
            return -3;
        found = (int)i;
        count++;
    }
    return count > 1 ? -2 : found;
}

/* Why no member is a writable primary, for a refusal: fenced ones, and those down. */
static int no_primary_detail(const struct plan_member *m, size_t n, char **out)
{
    for (size_t i = 0; i < n; i++) {
        if (m[i].reachable && m[i].role == PLAN_ROLE_PRIMARY && m[i].fenced &&
            add(out, " (%s is a primary but fenced%s%s)", m[i].id, m[i].fence_reason[0] ? ": " : "",
                m[i].fence_reason) < 0)
            return -1;
        if (!m[i].reachable && add(out, " (%s did not answer: %s)", m[i].id, m[i].why) < 0)
            return -1;
    }
    return 0;
}

int plan_switchover(const struct plan_member *m, size_t n, size_t to, struct plan_decision *d)
{
    const struct plan_member *t = &m[to];
    char *list = NULL, *detail = NULL;
    int p, r;

    plan_decision_clear(d);
    p = d->primary = writable_primary(m, n, &list);
    if (p == -3)
        return -1;
    if (p == -2) {
        d->primary = -1;
        r = decide(d, PLAN_REFUSE,
                   "%s are all writable primaries: stop all but one before anything else "
                   "(`mfactl status` shows their timelines and LSNs)",
                   list);
        free(list);
        return r;
    }
    free(list);
    if (p == -1) {
        if (no_primary_detail(m, n, &detail) < 0)
            return -1;
        r = decide(d, PLAN_REFUSE,
                   "no member is a writable primary%s; a switchover needs one. With the primary "
                   "gone, use `mfactl failover --to %s`",
                   detail ? detail : "", t->id);
        free(detail);
        return r;
    }
    if ((size_t)p == to)
        return decide(d, PLAN_REFUSE, "%s is already the primary", t->id);
    if (!t->reachable)
        return decide(d, PLAN_REFUSE, "%s did not answer (%s); it cannot take over", t->id, t->why);
    if (t->role != PLAN_ROLE_STANDBY)
        return decide(d, PLAN_REFUSE, "%s's role is %s, not standby; wait until it streams from %s",
                      t->id, t->role_name, m[p].id);
    if (!plan_streams_from(t, m[p].id))
        return decide(d, PLAN_REFUSE,
                      "%s is not streaming from %s (upstream %s, streaming %s), so it could not "
                      "catch up. Wait until it streams, or run `mfactl rejoin %s --to %s` first",
                      t->id, m[p].id, t->upstream[0] ? t->upstream : "none",
                      t->streaming == 1   ? "true"
                      : t->streaming == 0 ? "false"
                                          : "null",
                      t->id, m[p].id);
    return go(d);
}

int plan_rejoin(const struct plan_member *m, size_t n, size_t who, int to, struct plan_decision *d)
{
    const struct plan_member *w = &m[who];
    char *list = NULL, *detail = NULL;
    int p, r;

    plan_decision_clear(d);
    d->primary = -1;
    if (!w->reachable)
        return decide(d, PLAN_REFUSE, "%s did not answer (%s); nothing was changed", w->id, w->why);
    if (w->role == PLAN_ROLE_WITNESS)
        return decide(d, PLAN_REFUSE, "%s is a witness: it runs no PostgreSQL to rejoin", w->id);
    if (to < 0) {
        p = writable_primary(m, n, &list);
        if (p == -3)
            return -1;
        if (p == -2) {
            r = decide(d, PLAN_REFUSE,
                       "%s are all writable primaries; say which %s follows with --to", list,
                       w->id);
            free(list);
            return r;
        }
        free(list);
        if (p == -1) {
            if (no_primary_detail(m, n, &detail) < 0)
                return -1;
            r = decide(d, PLAN_REFUSE,
                       "no member is a writable primary for %s to follow%s; name one with --to",
                       w->id, detail ? detail : "");
            free(detail);
            return r;
        }
    } else {
        p = to;
        if (!m[p].reachable)
            return decide(d, PLAN_REFUSE,
                          "%s did not answer (%s); it must answer as a primary for %s to follow "
                          "it",
                          m[p].id, m[p].why, w->id);
        if (m[p].role != PLAN_ROLE_PRIMARY)
            return decide(d, PLAN_REFUSE,
                          "%s's role is %s, not primary; %s can only follow a primary", m[p].id,
                          m[p].role_name, w->id);
    }
    d->primary = p;
    if ((size_t)p == who)
        return decide(d, PLAN_REFUSE, "%s is the primary; it cannot follow itself", w->id);
    return go(d);
}

void plan_decision_clear(struct plan_decision *d)
{
    free(d->message);
    free(d->loss);
    memset(d, 0, sizeof(*d));
}
