/*
 * Sign-in; see auth.h.
 *
 * A sign-in is a small state machine on the loop: parse and throttle ->
 * read the user (local database) -> decide (lockout, PIN, method) -> for
 * TOTP/HOTP, mark the code used (primary, or this node's memory) -> log and
 * answer; for SMS, make a challenge and send the code -> log and answer when
 * the provider reports. Each step that waits holds a struct signin, freed
 * when the answer is out. Codes and PINs are wiped from it.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authlog.h"
#include "challenge.h"
#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "ids.h"
#include "ratelimit.h"
#include "log.h"
#include "metrics.h"
#include "otp.h"
#include "seal.h"
#include "secrets.h"
#include "sms.h"
#include "users_priv.h"

#define SECRET_MAX 16 /* PIN or code, as sent */
#define SEED_MAX   128

enum outcome {
    OUT_ACCEPTED = 0,
    OUT_REJECTED,
    OUT_CHALLENGE,
    OUT_ERROR,
};

static const char *const outcome_names[] = {
    [OUT_ACCEPTED] = "accepted",
    [OUT_REJECTED] = "rejected",
    [OUT_CHALLENGE] = "challenge",
    [OUT_ERROR] = "error",
};

struct auth {
    struct chal_store *chal;
    struct sms_provider *sms;
    struct authlog *log;
    struct ratelimit *limits;
    bool merging;
    unsigned long long outcomes[MFA_ARRAY_LEN(outcome_names)];
};

/*
 * Kept with an SMS challenge (chal_set_data) for its verification: the
 * address of the person signing in — the verify request itself comes through
 * HAProxy — and whether they had failures to clear on success.
 */
struct chal_ctx {
    char client_ip[48];
    unsigned char had_failures;
};

/* One sign-in or verification in progress. */
struct signin {
    struct node *n;
    struct evhttp_request *req;
    char username[USERS_USERNAME_MAX];
    char method[8]; /* as asked, or the user's */
    char pin[SECRET_MAX + 1];
    char otp[SECRET_MAX + 1];
    bool has_pin, has_otp, asked_method;
    char client_ip[64];
    /* from the database */
    char phone[32];
    char pin_hash[PIN_HASH_MAX];
    bool has_pin_hash;
    char token_id[24], kind[8], algo[8], serial[129];
    char *sealed;
    int digits, period, drift, new_drift;
    int64_t counter, last_step, matched;
    bool has_token, has_last_step;
    int failures, failures_total;
    int sms_user, sms_phone, sms_cluster;
    char challenge_id[ID_MAX];
    char code[CHAL_CODE_MAX];
};

static struct auth *auth_of(const struct node *n)
{
    return n->auth;
}

static void signin_free(struct signin *si)
{
    secret_wipe(si->pin, sizeof(si->pin));
    secret_wipe(si->otp, sizeof(si->otp));
    secret_wipe(si->code, sizeof(si->code));
    free(si->sealed);
    free(si);
}

/*
 * The statements of the sign-in path, prepared on every connection
 * (nodedb_prepare): parsing and planning would cost more than running them.
 */
static const char user_sql[] =
    "SELECT u.username, u.phone, u.method, u.pin_hash, u.disabled,"
    " t.id, t.kind, t.algorithm, t.digits, t.period, t.counter, t.last_step, t.drift,"
    " t.seed_sealed, t.serial,"
    " coalesce((SELECT l.failures FROM lockouts l WHERE l.username = lower(u.username)"
    "   AND l.client_ip = $2 AND l.last_failure > now() - make_interval(secs => $3::int)), 0),"
    " coalesce((SELECT sum(l.failures) FROM lockouts l WHERE l.username = lower(u.username)"
    "   AND l.last_failure > now() - make_interval(secs => $3::int)), 0),"
    " CASE WHEN m.method = 'sms' THEN (SELECT count(*) FROM sms_sends s"
    "   WHERE s.username = lower(u.username) AND s.at > now() - interval '1 hour') END,"
    " CASE WHEN m.method = 'sms' THEN (SELECT count(*) FROM sms_sends s"
    "   WHERE s.phone = u.phone AND s.at > now() - interval '1 hour') END,"
    " CASE WHEN m.method = 'sms' THEN (SELECT count(*) FROM sms_sends s"
    "   WHERE s.at > now() - interval '1 hour') END"
    " FROM users u CROSS JOIN LATERAL (SELECT coalesce($4, u.method) AS method) m"
    " LEFT JOIN LATERAL (SELECT * FROM oath_tokens t WHERE t.user_id = u.id"
    "   AND t.kind = m.method ORDER BY t.id DESC LIMIT 1) t ON true"
    " WHERE lower(u.username) = lower($1)";

static const char lockout_sql[] =
    "INSERT INTO lockouts AS l (username, client_ip, failures, last_failure)"
    " VALUES (lower($1), $2, 1, now())"
    " ON CONFLICT (username, client_ip) DO UPDATE SET last_failure = now(),"
    "  failures = CASE WHEN l.last_failure < now() - make_interval(secs => $3::int)"
    "   THEN 1 ELSE l.failures + 1 END";

static const char totp_mark_sql[] =
    "UPDATE oath_tokens SET last_step = $2, drift = $3"
    " WHERE id = $1 AND (last_step IS NULL OR last_step < $2) RETURNING id";

static const char hotp_mark_sql[] = "UPDATE oath_tokens SET counter = $2 + 1"
                                    " WHERE id = $1 AND counter <= $2 RETURNING id";

/* The sentence for a reason that ends in an HTTP error. */
static const char *detail_of(const char *reason)
{
    static const struct {
        const char *reason, *detail;
    } details[] = {
        { "throttled", "too many failed sign-ins from this address; wait and retry" },
        { "sms_rate_limited", "too many codes sent to this user or phone this hour" },
        { "sms_cap_reached", "the cluster's SMS budget for this hour is spent" },
        { "sms_failed", "the code could not be sent" },
        { "database_unavailable", "the local database does not answer; try again" },
        { "token_unusable", "the token cannot be used; see the node's log" },
        { "challenge_expired", "the challenge expired or was used; start the sign-in again" },
    };

    for (size_t i = 0; reason && i < MFA_ARRAY_LEN(details); i++) {
        if (strcmp(details[i].reason, reason) == 0)
            return details[i].detail;
    }
    return "the sign-in could not be completed";
}

/*
 * Records the decision in the auth log and answers. The record is in the
 * spool before the reply goes out; if it cannot be written, the answer is an
 * error, never an acceptance that left no trace.
 */
static void finish(struct signin *si, enum outcome out, const char *reason, int status,
                   json_t *extra)
{
    struct auth *a = auth_of(si->n);
    const struct member_conf *me = appconf_local(node_conf(si->n));
    struct authlog_record r = {
        .username = si->username,
        .method = si->method,
        .result = outcome_names[out],
        .reason = reason ? reason : "",
        .server_name = si->n->id,
        .server_ip = me->address,
        .client_ip = si->client_ip,
        .challenge_id = *si->challenge_id ? si->challenge_id : NULL,
        .at_ms = (int64_t)clock_wall_ms(),
    };
    char *err = NULL;
    json_t *body;

    if (authlog_append(a->log, &r, &err) < 0) {
        log_error("authlog.append_failed err=%s", err);
        free(err);
        json_decref(extra);
        a->outcomes[OUT_ERROR]++;
        http_reply_error(si->req, 503, "unavailable",
                         "the sign-in could not be recorded; try again");
        signin_free(si);
        return;
    }
    a->outcomes[out]++;
    body = json_pack("{s:s, s:s}", "result", outcome_names[out], "method", si->method);
    if (reason)
        json_object_set_new(body, "reason", json_string(reason));
    /* An HTTP error is also an error in the API's uniform form. */
    if (status >= 400 && !json_object_get(extra, "error")) {
        json_object_set_new(body, "error", json_string(reason ? reason : "error"));
        if (!json_object_get(extra, "detail"))
            json_object_set_new(body, "detail", json_string(detail_of(reason)));
    }
    if (status == 429 && json_object_get(extra, "retry_after")) {
        char retry[16];

        snprintf(retry, sizeof(retry), "%lld",
                 (long long)json_integer_value(json_object_get(extra, "retry_after")));
        evhttp_add_header(evhttp_request_get_output_headers(si->req), "Retry-After", retry);
    }
    if (extra) {
        json_object_update(body, extra);
        json_decref(extra);
    }
    http_reply_json(si->req, status, body);
    signin_free(si);
}

/* ---- failures and lockout ---- */

/* Names of the fire-and-forget writes, for the log (callback arguments). */
static char what_lockout[] = "lockout", what_unlock[] = "unlock", what_sms[] = "sms";

static void write_done(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    if (err)
        log_warn("auth.mark_failed what=%s err=%s", (const char *)arg, err);
}

/* Counts a failed sign-in: the address's throttle, and the user's lockout. */
static void count_failure(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    struct auth *a = auth_of(si->n);
    char window[16];
    const char *params[3] = { si->username, si->client_ip, window };

    ratelimit_addr_failure(a->limits, si->client_ip, c->node.lockout.per_address_per_minute,
                           clock_mono_ms());
    bool offline;

    snprintf(window, sizeof(window), "%d", c->node.lockout.duration);
    offline = nodedb_write_prepared(si->n->db, "auth_lockout", 3, params, PGCONN_SYNC_OFF,
                                    write_done, what_lockout, NULL) != 0;
    ratelimit_failure(a->limits, si->username, si->client_ip, offline, c->node.lockout.duration,
                      clock_mono_ms());
}

static void clear_failures(struct signin *si)
{
    static const char sql[] = "DELETE FROM lockouts WHERE username = lower($1) AND client_ip = $2";
    const char *params[2] = { si->username, si->client_ip };

    struct ratelimit_counts rc;

    ratelimit_failures(auth_of(si->n)->limits, si->username, si->client_ip,
                       node_conf(si->n)->node.lockout.duration, clock_mono_ms(), &rc);
    ratelimit_clear(auth_of(si->n)->limits, si->username, si->client_ip);
    /* Without a primary the count simply ages out there. */
    if ((si->failures > 0 || rc.pair > 0) &&
        nodedb_write(si->n->db, sql, 2, params, PGCONN_SYNC_OFF, write_done, what_unlock, NULL))
        log_debug("auth.unlock_deferred user=%s", si->username);
}

static void reject(struct signin *si, const char *reason)
{
    count_failure(si);
    finish(si, OUT_REJECTED, reason, 200, NULL);
}

/*
 * Locked when the failures of this user from this address, or from all
 * addresses, reach the limits. Online, the database's counts and this node's
 * own (which may be ahead of what the database shows yet) — the larger wins.
 * Offline, this node's failures add to what the database had, against the
 * tighter offline limits.
 */
static bool locked_out(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    struct ratelimit_counts rc;

    ratelimit_failures(auth_of(si->n)->limits, si->username, si->client_ip,
                       c->node.lockout.duration, clock_mono_ms(), &rc);
    if (nodedb_writable(si->n->db))
        return (rc.pair > si->failures ? rc.pair : si->failures) >= c->node.lockout.max_failures ||
               (rc.total > si->failures_total ? rc.total : si->failures_total) >=
                   c->node.lockout.max_failures_total;
    /* The database (a standby's copy) has the online ones; add the rest. */
    return si->failures + rc.pair_offline >= c->node.lockout.offline_max_failures ||
           si->failures_total + rc.total_offline >= c->node.lockout.offline_max_failures_total;
}

/* ---- TOTP and HOTP ---- */

static void mark_done(void *arg, const PGresult *res, const char *err)
{
    struct signin *si = arg;
    struct auth *a = auth_of(si->n);

    if (err) {
        /* The primary went away on the way: this node keeps the mark. */
        log_warn("auth.mark_failed what=replay err=%s", err);
        if (!ratelimit_mark(a->limits, si->token_id, si->has_last_step ? si->last_step : -1,
                            si->matched)) {
            reject(si, "replayed");
            return;
        }
    } else if (PQntuples(res) == 0) {
        reject(si, "replayed");
        return;
    }
    clear_failures(si);
    finish(si, OUT_ACCEPTED, NULL, 200, NULL);
}

/* Marks the matched step or counter used, cluster-wide when it can. */
static void mark_used(struct signin *si)
{
    struct auth *a = auth_of(si->n);
    bool totp = strcmp(si->kind, "totp") == 0;
    int64_t db_value = totp ? (si->has_last_step ? si->last_step : -1) : si->counter - 1;
    char value[24], drift[16];
    const char *params[3] = { si->token_id, value, drift };
    char *err = NULL;
    int rc;

    /* Used already: by the database's word, or by this node's (not yet merged). */
    if (si->matched <= db_value || ratelimit_marked(a->limits, si->token_id, si->matched)) {
        reject(si, "replayed");
        return;
    }
    snprintf(value, sizeof(value), "%lld", (long long)si->matched);
    snprintf(drift, sizeof(drift), "%d", si->new_drift);
    rc = nodedb_write_prepared(si->n->db, totp ? "auth_totp_mark" : "auth_hotp_mark", totp ? 3 : 2,
                               params, PGCONN_SYNC_OFF, mark_done, si, &err);
    if (rc == 0)
        return;
    free(err);
    /* No primary: once per node, merged later. */
    if (!ratelimit_mark(a->limits, si->token_id, db_value, si->matched)) {
        reject(si, "replayed");
        return;
    }
    clear_failures(si);
    finish(si, OUT_ACCEPTED, NULL, 200, NULL);
}

static void check_token(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    unsigned char seed[SEED_MAX];
    size_t seedlen = 0;
    enum otp_algo algo;
    char *err = NULL;
    uint64_t matched = 0;
    int rc;

    if (!si->has_token) {
        reject(si, "no_token");
        return;
    }
    if (!si->has_otp) {
        reject(si, "otp_required");
        return;
    }
    if (otp_algo_parse(si->algo, &algo) < 0 ||
        seal_decrypt(&si->n->keys, si->sealed, si->serial, seed, sizeof(seed), &seedlen, &err) <
            0) {
        log_error("auth.token_unusable serial=%s err=%s", si->serial, err ? err : "bad algorithm");
        free(err);
        finish(si, OUT_ERROR, "token_unusable", 500, NULL);
        return;
    }
    if (strcmp(si->kind, "totp") == 0) {
        int64_t now = (int64_t)time(NULL), centre = now + (int64_t)si->drift * si->period;

        rc = otp_totp_check(seed, seedlen, centre > 0 ? (uint64_t)centre : 0, (unsigned)si->period,
                            (unsigned)c->node.otp.totp_window, si->digits, algo, si->otp, &matched);
        si->new_drift = (int)((int64_t)matched - now / si->period);
    } else {
        rc = otp_hotp_check(seed, seedlen, (uint64_t)si->counter,
                            (unsigned)c->node.otp.hotp_lookahead, si->digits, algo, si->otp,
                            &matched);
    }
    secret_wipe(seed, sizeof(seed));
    if (rc != 1) {
        reject(si, rc < 0 ? "token_unusable" : "wrong_code");
        return;
    }
    si->matched = (int64_t)matched;
    mark_used(si);
}

/* ---- SMS ---- */

static void sms_done(void *arg, bool ok, const char *error)
{
    struct signin *si = arg;
    struct auth *a = auth_of(si->n);
    static const char sql[] = "INSERT INTO sms_sends (node_id, username, phone) VALUES ($1, "
                              "lower($2), $3)";
    const char *params[3] = { si->n->id, si->username, si->phone };

    secret_wipe(si->code, sizeof(si->code));
    if (!ok) {
        char masked[32];

        log_warn("sms.failed user=%s phone=%s err=%s", si->username,
                 log_mask_phone(si->phone, masked, sizeof(masked)), error);
        chal_cancel(a->chal, si->challenge_id);
        finish(si, OUT_ERROR, "sms_failed", 502, json_pack("{s:s}", "detail", error));
        return;
    }
    /* Counted here already when the challenge was made; this is the cluster's count. */
    if (nodedb_write(si->n->db, sql, 3, params, PGCONN_SYNC_OFF, write_done, what_sms, NULL) != 0)
        log_debug("sms.count_deferred user=%s", si->username);
    finish(si, OUT_CHALLENGE, NULL, 200,
           json_pack("{s:s, s:i}", "challenge_id", si->challenge_id, "expires_in",
                     node_conf(si->n)->node.challenge.ttl));
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static void start_sms(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    struct auth *a = auth_of(si->n);
    uint64_t wall = clock_wall_ms();
    char key[USERS_USERNAME_MAX + 8], *err = NULL;
    bool offline = !nodedb_writable(si->n->db);
    struct chal_ctx ctx = { .had_failures = si->failures > 0 };
    int user_n, phone_n, node_n;

    if (!*si->phone) {
        reject(si, "no_phone");
        return;
    }
    /*
     * This node counts a send when the challenge is made, so requests in
     * flight count at once; the database (maybe a standby's copy) counts the
     * cluster's. The larger of the two is the count.
     */
    snprintf(key, sizeof(key), "user:%s", si->username);
    user_n = max_int(si->sms_user, ratelimit_sms_count(a->limits, key, wall));
    snprintf(key, sizeof(key), "phone:%s", si->phone);
    phone_n = max_int(si->sms_phone, ratelimit_sms_count(a->limits, key, wall));
    node_n = ratelimit_sms_node_count(a->limits, wall);
    if (user_n >=
            (offline ? c->node.sms.offline_per_user_per_hour : c->node.sms.per_user_per_hour) ||
        phone_n >= c->node.sms.per_phone_per_hour) {
        finish(si, OUT_REJECTED, "sms_rate_limited", 429, NULL);
        return;
    }
    if (max_int(si->sms_cluster, node_n) >= c->node.sms.cluster_per_hour ||
        (offline && node_n >= c->node.sms.offline_node_per_hour)) {
        finish(si, OUT_ERROR, "sms_cap_reached", 503, NULL);
        return;
    }
    snprintf(ctx.client_ip, sizeof(ctx.client_ip), "%.45s", si->client_ip);
    if (chal_create(a->chal, si->username, "sms", clock_mono_ms(), si->challenge_id,
                    sizeof(si->challenge_id), si->code, sizeof(si->code), &err) < 0 ||
        chal_set_data(a->chal, si->challenge_id, &ctx, sizeof(ctx)) < 0 ||
        sms_send(a->sms, si->phone, si->code, (c->node.challenge.ttl + 59) / 60, sms_done, si,
                 &err) < 0) {
        log_error("sms.not_sent err=%s", err ? err : "cannot keep the challenge");
        free(err);
        if (*si->challenge_id)
            chal_cancel(a->chal, si->challenge_id);
        secret_wipe(si->code, sizeof(si->code));
        finish(si, OUT_ERROR, "sms_failed", 503, NULL);
        return;
    }
    ratelimit_sms_note(a->limits, si->username, si->phone, offline, wall);
}

/* ---- the sign-in ---- */

static void copy_col(const PGresult *res, int col, char *out, size_t size)
{
    snprintf(out, size, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

static void user_loaded(void *arg, const PGresult *res, const char *err)
{
    struct signin *si = arg;

    if (err) {
        log_error("auth.read_failed err=%s", err);
        finish(si, OUT_ERROR, "database_unavailable", 503, NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        reject(si, "unknown_user");
        return;
    }
    copy_col(res, 0, si->username, sizeof(si->username));
    copy_col(res, 1, si->phone, sizeof(si->phone));
    if (!si->asked_method)
        copy_col(res, 2, si->method, sizeof(si->method));
    si->has_pin_hash = !PQgetisnull(res, 0, 3);
    copy_col(res, 3, si->pin_hash, sizeof(si->pin_hash));
    si->has_token = !PQgetisnull(res, 0, 5);
    if (si->has_token) {
        copy_col(res, 5, si->token_id, sizeof(si->token_id));
        copy_col(res, 6, si->kind, sizeof(si->kind));
        copy_col(res, 7, si->algo, sizeof(si->algo));
        si->digits = atoi(PQgetvalue(res, 0, 8));
        si->period = atoi(PQgetvalue(res, 0, 9));
        si->counter = atoll(PQgetvalue(res, 0, 10));
        si->has_last_step = !PQgetisnull(res, 0, 11);
        si->last_step = atoll(PQgetvalue(res, 0, 11));
        si->drift = atoi(PQgetvalue(res, 0, 12));
        si->sealed = strdup(PQgetvalue(res, 0, 13));
        copy_col(res, 14, si->serial, sizeof(si->serial));
    }
    si->failures = atoi(PQgetvalue(res, 0, 15));
    si->failures_total = atoi(PQgetvalue(res, 0, 16));
    si->sms_user = atoi(PQgetvalue(res, 0, 17));
    si->sms_phone = atoi(PQgetvalue(res, 0, 18));
    si->sms_cluster = atoi(PQgetvalue(res, 0, 19));

    if (strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
        reject(si, "disabled");
        return;
    }
    if (locked_out(si)) {
        finish(si, OUT_REJECTED, "locked_out", 200, NULL);
        return;
    }
    if (si->has_pin_hash) {
        char *perr = NULL;
        int ok = si->has_pin ? pin_verify(&si->n->keys, si->pin, si->pin_hash, &perr) : 0;

        secret_wipe(si->pin, sizeof(si->pin));
        if (ok < 0) {
            log_error("auth.pin_unusable user=%s err=%s", si->username, perr);
            free(perr);
        }
        if (ok != 1) {
            reject(si, si->has_pin ? "wrong_pin" : "pin_required");
            return;
        }
    }
    if (strcmp(si->method, "sms") == 0)
        start_sms(si);
    else
        check_token(si);
}

/* Reads an optional string member <key> of at most <max> bytes into <out>. */
static int get_str(json_t *body, const char *key, char *out, size_t max, bool *present,
                   const char **bad)
{
    json_t *v = json_object_get(body, key);

    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = key;
        return -1;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Drops the request body, clearing the PIN and code in it and in the parse. */
static void drop_body(struct evhttp_request *req, json_t *body)
{
    secret_wipe_str(json_string_value(json_object_get(body, "pin")));
    secret_wipe_str(json_string_value(json_object_get(body, "otp")));
    json_decref(body);
    http_wipe_body(req);
}

static bool valid_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Common start of both requests: authorize, read the body, throttle. */
static struct signin *begin(struct node *n, struct evhttp_request *req, json_t **body)
{
    char actor[130], peer[64];
    struct signin *si;

    if (!node_authorize(n, req, APIKEY_AUTH, actor, sizeof(actor)))
        return NULL;
    *body = http_read_json(req);
    if (!*body)
        return NULL;
    si = calloc(1, sizeof(*si));
    if (!si) {
        json_decref(*body);
        http_reply_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    si->n = n;
    si->req = req;
    snprintf(si->client_ip, sizeof(si->client_ip), "%s",
             http_peer_address(req, peer, sizeof(peer)));
    return si;
}

static bool throttled(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    int retry;

    if (!ratelimit_throttled(auth_of(si->n)->limits, si->client_ip,
                             c->node.lockout.per_address_per_minute, clock_mono_ms(), &retry))
        return false;
    finish(si, OUT_REJECTED, "throttled", 429, json_pack("{s:i}", "retry_after", retry));
    return true;
}

void auth_handle_auth(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    const char *bad = NULL, *params[4];
    char window[16], ip[64], *err = NULL;
    bool present;
    json_t *body;
    struct signin *si = begin(n, req, &body);

    if (!si)
        return;
    if (get_str(body, "username", si->username, sizeof(si->username) - 1, &present, &bad) < 0 ||
        !present || users_check_username("username", si->username, NULL) < 0)
        bad = "username";
    else if (get_str(body, "method", si->method, sizeof(si->method) - 1, &si->asked_method, &bad) <
                 0 ||
             (si->asked_method && strcmp(si->method, "sms") && strcmp(si->method, "totp") &&
              strcmp(si->method, "hotp")))
        bad = "method";
    else if (get_str(body, "pin", si->pin, SECRET_MAX, &si->has_pin, &bad) < 0 ||
             get_str(body, "otp", si->otp, SECRET_MAX, &si->has_otp, &bad) < 0)
        ;
    else if (get_str(body, "client_ip", ip, sizeof(ip) - 1, &present, &bad) < 0 ||
             (present && !valid_ip(ip)))
        bad = "client_ip";
    else if (present)
        snprintf(si->client_ip, sizeof(si->client_ip), "%s", ip);
    drop_body(req, body);
    if (bad) {
        http_reply_error(req, 400, "bad_request", "%s: expected %s", bad,
                         strcmp(bad, "method") == 0      ? "\"sms\", \"totp\" or \"hotp\""
                         : strcmp(bad, "client_ip") == 0 ? "an IPv4 or IPv6 address"
                         : strcmp(bad, "username") == 0
                             ? "a string of 1 to 128 characters, no spaces or controls"
                             : "a non-empty string of at most 16 characters");
        signin_free(si);
        return;
    }
    if (!si->asked_method)
        snprintf(si->method, sizeof(si->method), "-");
    if (throttled(si))
        return;
    snprintf(window, sizeof(window), "%d", node_conf(n)->node.lockout.duration);
    params[0] = si->username;
    params[1] = si->client_ip;
    params[2] = window;
    params[3] = si->asked_method ? si->method : NULL;
    if (nodedb_read_prepared(n->db, "auth_user", 4, params, user_loaded, si, &err) < 0) {
        log_error("auth.read_failed err=%s", err);
        free(err);
        finish(si, OUT_ERROR, "database_unavailable", 503, NULL);
    }
}

/* The challenge id in /api/v1/challenges/<id>[/verify], or NULL after a 4xx reply. */
static const char *challenge_id(struct node *n, struct evhttp_request *req, char *path, size_t size,
                                bool verify)
{
    char *id, *slash;

    http_request_path(req, path, size);
    id = path + strlen("/api/v1/challenges/");
    slash = strchr(id, '/');

    if (verify != (slash && strcmp(slash, "/verify") == 0)) {
        http_reply_error(req, 404, "not_found", "no such resource");
        return NULL;
    }
    if (slash)
        *slash = '\0';
    if (!id_valid(id)) {
        http_reply_error(req, 400, "bad_request", "not a challenge id");
        return NULL;
    }
    if (!id_belongs_to(id, n->id)) {
        /* Its node is gone, or the balancer sent it astray: start again. */
        http_reply_error(req, 410, "challenge_expired",
                         "this challenge is not known here; start the sign-in again");
        return NULL;
    }
    return id;
}

void auth_handle_verify(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    struct auth *a = auth_of(n);
    char path[256];
    const char *id, *bad = NULL;
    struct chal_info info;
    enum chal_result r;
    bool present;
    json_t *body;
    struct signin *si;

    id = challenge_id(n, req, path, sizeof(path), true);
    if (!id || !(si = begin(n, req, &body)))
        return;
    snprintf(si->challenge_id, sizeof(si->challenge_id), "%s", id);
    snprintf(si->method, sizeof(si->method), "sms");
    if (get_str(body, "otp", si->otp, SECRET_MAX, &present, &bad) < 0 || !present) {
        drop_body(req, body);
        http_reply_error(req, 400, "bad_request", "otp: expected the code as a string");
        signin_free(si);
        return;
    }
    drop_body(req, body);
    /* The person's address and earlier failures, from when the challenge was made. */
    if (chal_state(a->chal, si->challenge_id, clock_mono_ms(), &info) == CHAL_ST_PENDING &&
        info.data_len == sizeof(struct chal_ctx)) {
        struct chal_ctx ctx;

        memcpy(&ctx, info.data, sizeof(ctx));
        snprintf(si->client_ip, sizeof(si->client_ip), "%s", ctx.client_ip);
        si->failures = ctx.had_failures;
    }
    if (throttled(si))
        return;
    r = chal_verify(a->chal, si->challenge_id, si->otp, clock_mono_ms(), &info);
    secret_wipe(si->otp, sizeof(si->otp));
    if (r == CHAL_EXPIRED || r == CHAL_UNKNOWN) {
        snprintf(si->username, sizeof(si->username), "-");
        finish(si, OUT_REJECTED, "challenge_expired", 410,
               json_pack("{s:s, s:s}", "error", "challenge_expired", "detail",
                         "the challenge expired or was used; start the sign-in again"));
        return;
    }
    snprintf(si->username, sizeof(si->username), "%.128s", info.username);
    snprintf(si->method, sizeof(si->method), "%.7s", info.method);
    if (r == CHAL_ACCEPTED) {
        clear_failures(si);
        finish(si, OUT_ACCEPTED, NULL, 200, NULL);
    } else if (r == CHAL_REJECTED) {
        count_failure(si);
        finish(si, OUT_REJECTED, "wrong_code", 200,
               json_pack("{s:i}", "attempts_left", info.attempts_left));
    } else {
        reject(si, "attempts_exhausted");
    }
}

void auth_handle_challenge(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    char path[256], actor[130];
    struct chal_info info;
    const char *id;
    enum chal_status st;

    if (!node_authorize(n, req, APIKEY_AUTH, actor, sizeof(actor)))
        return;
    id = challenge_id(n, req, path, sizeof(path), false);
    if (!id)
        return;
    st = chal_state(auth_of(n)->chal, id, clock_mono_ms(), &info);
    if (st == CHAL_ST_GONE) {
        http_reply_error(req, 410, "challenge_expired",
                         "the challenge expired or was used; start the sign-in again");
        return;
    }
    http_reply_json(req, 200,
                    json_pack("{s:s, s:s, s:s, s:I}", "challenge_id", id, "state",
                              chal_status_name(st), "method", info.method, "expires_in",
                              (json_int_t)(info.expires_ms > clock_mono_ms()
                                               ? (info.expires_ms - clock_mono_ms()) / 1000
                                               : 0)));
}

/* ---- lifecycle ---- */

static void set_primary(void *arg, struct pgconn *primary)
{
    struct auth *a = arg;

    authlog_set_primary(a->log, primary);
}

int auth_start(struct node *n, char **err)
{
    const struct appconf *c = node_conf(n);
    static const enum sms_kind kinds[] = {
        [SMS_PROVIDER_FILE] = SMS_FILE,
        [SMS_PROVIDER_HTTP] = SMS_HTTP,
        [SMS_PROVIDER_EXEC] = SMS_EXEC,
    };
    struct chal_settings cs = {
        .ttl_s = c->node.challenge.ttl,
        .max_attempts = c->node.challenge.max_attempts,
        .code_digits = c->node.challenge.code_digits,
    };
    struct sms_settings ss = {
        .kind = kinds[c->node.sms.provider],
        .template = c->node.sms.template,
        .file_path = c->node.sms.file,
        .http_url = c->node.sms.http_url,
        .http_body = c->node.sms.http_body,
        .http_auth_header = c->node.sms.http_auth_header,
        .http_ca_file = *c->node.sms.http_ca ? c->node.sms.http_ca : NULL,
        .exec_command = c->node.sms.exec_command,
        .timeout_ms = c->node.sms.timeout_ms,
        .retries = c->node.sms.retries,
    };
    struct authlog_settings as = {
        .spool_dir = c->node.auth_log.spool_dir,
        .node_id = n->id,
        .fsync_interval_ms = c->node.auth_log.fsync_interval_ms,
        .batch_max = c->node.auth_log.batch_max,
    };
    struct auth *a = calloc(1, sizeof(*a));

    if (!a)
        return err_set(err, "out of memory");
    n->auth = a;
    a->limits = ratelimit_new();
    if (!a->limits)
        return err_set(err, "out of memory");
    a->chal = chal_store_new(n->id, &cs, err);
    if (!a->chal)
        return -1;
    a->sms = sms_new(daemon_base(n->d), &ss, err);
    if (!a->sms)
        return err_prefix(err, "node.sms");
    a->log = authlog_open(daemon_base(n->d), n->workers, &as, err);
    if (!a->log)
        return err_prefix(err, "node.auth_log");
    if (nodedb_prepare(n->db, false, "auth_user", user_sql, 4, err) < 0 ||
        nodedb_prepare(n->db, true, "auth_lockout", lockout_sql, 3, err) < 0 ||
        nodedb_prepare(n->db, true, "auth_totp_mark", totp_mark_sql, 3, err) < 0 ||
        nodedb_prepare(n->db, true, "auth_hotp_mark", hotp_mark_sql, 2, err) < 0)
        return -1;
    nodedb_on_primary(n->db, set_primary, a);
    return 0;
}

void auth_stop_delivery(struct node *n)
{
    struct auth *a = auth_of(n);

    if (a) {
        sms_free(a->sms);
        a->sms = NULL;
    }
}

void auth_stop(struct node *n)
{
    struct auth *a = auth_of(n);

    if (!a)
        return;
    authlog_close(a->log);
    chal_store_free(a->chal);
    ratelimit_free(a->limits);
    free(a);
    n->auth = NULL;
}

static void merge_done(void *arg, const PGresult *res, const char *err)
{
    struct auth *a = arg;

    (void)res;
    a->merging = false;
    if (err) {
        log_warn("auth.merge_failed err=%s", err);
        ratelimit_merge_failed(a->limits);
        return;
    }
    log_notice("auth.merged");
    ratelimit_merged(a->limits);
}

/* Hands the counts kept while the primary was away to the primary. */
static void merge_offline(struct node *n, struct auth *a)
{
    static const char sql[] =
        "WITH d AS (SELECT $1::jsonb AS j),"
        " f AS (INSERT INTO lockouts AS l (username, client_ip, failures, last_failure)"
        "  SELECT lower(x.username), x.client_ip, x.failures, now()"
        "  FROM d, jsonb_to_recordset(d.j->'failures') AS x(username text, client_ip text,"
        "   failures int)"
        "  ON CONFLICT (username, client_ip) DO UPDATE SET last_failure = now(),"
        "   failures = CASE WHEN l.last_failure < now() - make_interval(secs => $3::int)"
        "    THEN excluded.failures ELSE l.failures + excluded.failures END),"
        " m AS (UPDATE oath_tokens t SET"
        "   last_step = CASE WHEN t.kind = 'totp' THEN greatest(t.last_step, x.value)"
        "    ELSE t.last_step END,"
        "   counter = CASE WHEN t.kind = 'hotp' THEN greatest(t.counter, x.value + 1)"
        "    ELSE t.counter END"
        "  FROM d, jsonb_to_recordset(d.j->'marks') AS x(token_id bigint, value bigint)"
        "  WHERE t.id = x.token_id),"
        " s AS (INSERT INTO sms_sends (at, node_id, username, phone)"
        "  SELECT to_timestamp(x.at_ms / 1000.0), $2, lower(x.username), x.phone"
        "  FROM d, jsonb_to_recordset(d.j->'sms') AS x(username text, phone text, at_ms bigint))"
        " SELECT 1";
    char *json, *err = NULL, window[16];
    const char *params[3];

    if (a->merging || !nodedb_writable(n->db))
        return;
    json = ratelimit_pending_json(a->limits);
    if (!json)
        return;
    snprintf(window, sizeof(window), "%d", node_conf(n)->node.lockout.duration);
    params[0] = json;
    params[1] = n->id;
    params[2] = window;
    if (nodedb_write(n->db, sql, 3, params, PGCONN_SYNC_OFF, merge_done, a, &err) == 0)
        a->merging = true;
    else
        ratelimit_merge_failed(a->limits);
    free(err);
    free(json);
}

/* Drops counts that no longer count: failures past the window, SMS past the hour. */
static void prune(struct node *n)
{
    static const char sql[] = "WITH l AS (DELETE FROM lockouts"
                              "  WHERE last_failure < now() - make_interval(secs => $1::int))"
                              " DELETE FROM sms_sends WHERE at < now() - interval '1 hour'";
    static char what_prune[] = "prune";
    char window[16];
    const char *params[1] = { window };

    snprintf(window, sizeof(window), "%d", node_conf(n)->node.lockout.duration);
    if (nodedb_write(n->db, sql, 1, params, PGCONN_SYNC_OFF, write_done, what_prune, NULL))
        log_debug("auth.prune_deferred");
}

void auth_tick(struct node *n)
{
    struct auth *a = auth_of(n);
    uint64_t now = clock_mono_ms();

    chal_expire(a->chal, now);
    if (daemon_every(n->d, 60000))
        prune(n);
    if (daemon_every(n->d, 1000)) {
        merge_offline(n, a);
        ratelimit_sweep(a->limits, node_conf(n)->node.lockout.duration, now, clock_wall_ms());
    }
}

size_t auth_live_challenges(const struct node *n)
{
    return auth_of(n) ? chal_count(auth_of(n)->chal) : 0;
}

void auth_metrics(const struct node *n, struct evbuffer *out)
{
    struct auth *a = auth_of(n);
    struct authlog_stats ls;

    metrics_family(out, "mfa_auth_total", METRIC_COUNTER, "Sign-in decisions by result.");
    for (size_t i = 0; i < MFA_ARRAY_LEN(outcome_names); i++)
        metrics_sample(out, "mfa_auth_total", (double)a->outcomes[i], "result", outcome_names[i],
                       NULL);
    metrics_single(out, "mfa_challenges_live", METRIC_GAUGE, "Challenges waiting for a code.",
                   (double)chal_count(a->chal));
    authlog_get_stats(a->log, &ls);
    metrics_single(out, "mfa_auth_log_pending", METRIC_GAUGE,
                   "Auth log records not yet on the primary.", (double)ls.pending);
    metrics_single(out, "mfa_auth_log_shipped_total", METRIC_COUNTER,
                   "Auth log records shipped to the primary.", (double)ls.shipped);
}

void auth_status(const struct node *n, json_t *status)
{
    struct auth *a = auth_of(n);
    struct authlog_stats ls;

    authlog_get_stats(a->log, &ls);
    json_object_set_new(status, "challenges", json_integer((json_int_t)chal_count(a->chal)));
    json_object_set_new(status, "sessions", json_integer(0));
    json_object_set_new(status, "auth_log_pending", json_integer((json_int_t)ls.pending));
}
