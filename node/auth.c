/*
 * Sign-in; see auth.h.
 *
 * A sign-in is a small state machine on the loop: parse and throttle ->
 * read the user (local database) -> decide (lockout, PIN, method) -> for
 * TOTP/HOTP, mark the code used (primary, or this node's memory) -> log and
 * answer; for SMS, make a challenge and send the code -> log and answer when
 * the provider reports. Each step that waits holds a struct signin, freed
 * when the answer is out. Codes and PINs are wiped from it.
 *
 * A directory user's password (directory.first_factor = "ldap") takes the
 * PIN's place: after the lockout check a bind runs on a worker
 * (auth_dirbind.h), and its answer goes on where a PIN's would. One bind
 * per user at a time: a sign-in of a user whose check is still running or
 * waiting is refused ("busy", not counted), so parallel wrong passwords
 * cannot all pass the lockout check before the first is counted.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth_dirbind.h"
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

#define SECRET_MAX   AUTH_SECRET_MAX
#define PASSWORD_MAX (2 * SECRET_MAX)
/* The longer limits of directory.first_factor = "ldap": a directory password (and a code). */
#define DIR_PIN_MAX      AUTH_PASSWORD_MAX
#define DIR_PASSWORD_MAX (AUTH_PASSWORD_MAX + SECRET_MAX)
#define SEED_MAX         128
/*
 * Directory binds at once: the pool has 8 threads in that mode (main.c), two
 * stay for the auth log. The line behind them is long enough for a morning's
 * rush; each waits at most directory.timeout_ms (auth_dirbind.h).
 */
#define DIRBIND_RUNNING 6
#define DIRBIND_WAITING 256

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
    bool ldap;               /* directory.first_factor = "ldap" (needs a restart) */
    struct dirbind *dirbind; /* its binds; NULL otherwise, and once stopping */
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
    auth_done_fn done;
    void *done_arg;
    char username[USERS_USERNAME_MAX];
    char method[8];            /* as asked, or the user's */
    char pin[DIR_PIN_MAX + 1]; /* or a directory password: longer only in that mode */
    char otp[SECRET_MAX + 1];
    char password[DIR_PASSWORD_MAX + 1]; /* PIN and code in one, split once the user is known */
    bool has_pin, has_otp, has_password, asked_method;
    enum auth_step step;
    bool require_pin; /* auth_request's */
    char client_ip[64];
    /* for the answer */
    int attempts_left, retry_after;
    const char *detail;
    bool retry;
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
    bool directory; /* the first factor is the directory password (bind as dn) */
    char *dn;
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
    secret_wipe(si->password, sizeof(si->password));
    secret_wipe(si->code, sizeof(si->code));
    free(si->sealed);
    free(si->dn);
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
    "   WHERE s.at > now() - interval '1 hour') END,"
    " d.source, d.directory_dn"
    " FROM users u CROSS JOIN LATERAL (SELECT coalesce($4, u.method) AS method) m"
    /* Schema 3's columns, one row conversion, NULL on a schema 2 database (docs/upgrade.md). */
    " CROSS JOIN LATERAL jsonb_to_record(to_jsonb(u)) AS d(source text, directory_dn text)"
    /* Columns named, never *: a later release may add columns (docs/upgrade.md). */
    " LEFT JOIN LATERAL (SELECT t.id, t.kind, t.algorithm, t.digits, t.period, t.counter,"
    "   t.last_step, t.drift, t.seed_sealed, t.serial FROM oath_tokens t WHERE t.user_id = u.id"
    "   AND t.kind = m.method ORDER BY t.id DESC LIMIT 1) t ON true"
    " WHERE lower(u.username) = lower($1)";

static const char lockout_sql[] =
    "INSERT INTO lockouts AS l (username, client_ip, failures, last_failure)"
    " VALUES (lower($1), $2, 1, now())"
    " ON CONFLICT (username, client_ip) DO UPDATE SET last_failure = now(),"
    "  failures = CASE WHEN l.last_failure < now() - make_interval(secs => $3::int)"
    "   THEN 1 ELSE l.failures + 1 END";

/*
 * The same on a schema 3 database, and the "locked" e-mail (docs/email.md)
 * when the user's failures from all addresses reach $4
 * (node.lockout.max_failures_total): the threshold is the node's setting,
 * so the node passes it; the decision is the database's (schema 003's
 * lockout_failure(): failures of one user take turns, each reading after
 * the one before), so it holds across nodes and for every path that counts
 * a failure (a wrong SMS code too): one message per lock. The per-address
 * limit (max_failures) sends none.
 */
static const char lockout_mail_sql[] = "SELECT lockout_failure($1, $2, $3::int, $4::int)";

static const char totp_mark_sql[] =
    "UPDATE oath_tokens SET last_step = $2, drift = $3"
    " WHERE id = $1 AND (last_step IS NULL OR last_step < $2) RETURNING id";

static const char hotp_mark_sql[] = "UPDATE oath_tokens SET counter = $2 + 1"
                                    " WHERE id = $1 AND counter <= $2 RETURNING id";

/*
 * Records the decision in the auth log and hands it to the caller. The
 * record is in the spool before the answer goes out; if it cannot be
 * written, the answer is an error, never an acceptance that left no trace.
 */
static void finish(struct signin *si, enum outcome out, const char *reason, int status)
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
    struct auth_result res = {
        .outcome = (enum auth_outcome)out,
        .outcome_name = outcome_names[out],
        .method = si->method,
        .reason = reason,
        .http_status = status,
        .challenge_id = out == OUT_CHALLENGE && *si->challenge_id ? si->challenge_id : NULL,
        .expires_in = out == OUT_CHALLENGE ? node_conf(si->n)->node.challenge.ttl : 0,
        .phone = out == OUT_CHALLENGE && *si->challenge_id ? si->phone : NULL,
        .attempts_left = si->attempts_left,
        .retry_after = si->retry_after,
        .detail = si->detail,
        .retry = si->retry,
    };
    char *err = NULL;

    if (authlog_append(a->log, &r, &err) < 0) {
        log_error("authlog.append_failed err=%s", err);
        free(err);
        res = (struct auth_result){
            .outcome = AUTH_ERROR,
            .outcome_name = outcome_names[OUT_ERROR],
            .method = si->method,
            .reason = "unrecorded",
            .http_status = 503,
            .attempts_left = -1,
            .detail = "the sign-in could not be recorded; try again",
        };
        out = OUT_ERROR;
    }
    a->outcomes[out]++;
    si->done(si->done_arg, &res);
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
    char window[16], total[16];
    const char *params[4] = { si->username, si->client_ip, window, total };
    struct nodedb_status st;
    bool offline;

    ratelimit_addr_failure(a->limits, si->client_ip, c->node.lockout.per_address_per_minute,
                           clock_mono_ms());
    snprintf(window, sizeof(window), "%d", c->node.lockout.duration);
    snprintf(total, sizeof(total), "%d", c->node.lockout.max_failures_total);
    /*
     * Schema 3 has the e-mail outbox; a schema 2 database (a rolling upgrade)
     * only the count. The schema 3 statement is not prepared: a connection
     * made before the migration would hold it as failed until it reconnects,
     * and failures are few beside sign-ins.
     */
    nodedb_get_status(si->n->db, &st);
    if (st.schema_version >= 3)
        offline = nodedb_write(si->n->db, lockout_mail_sql, 4, params, PGCONN_SYNC_OFF, write_done,
                               what_lockout, NULL) != 0;
    else
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
    finish(si, OUT_REJECTED, reason, 200);
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
    finish(si, OUT_ACCEPTED, NULL, 200);
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
    finish(si, OUT_ACCEPTED, NULL, 200);
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
        finish(si, OUT_ERROR, "token_unusable", 500);
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
        si->detail = error;
        finish(si, OUT_ERROR, "sms_failed", 502);
        return;
    }
    /* Counted here already when the challenge was made; this is the cluster's count. */
    if (nodedb_write(si->n->db, sql, 3, params, PGCONN_SYNC_OFF, write_done, what_sms, NULL) != 0)
        log_debug("sms.count_deferred user=%s", si->username);
    finish(si, OUT_CHALLENGE, NULL, 200);
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
        finish(si, OUT_REJECTED, "sms_rate_limited", 429);
        return;
    }
    if (max_int(si->sms_cluster, node_n) >= c->node.sms.cluster_per_hour ||
        (offline && node_n >= c->node.sms.offline_node_per_hour)) {
        finish(si, OUT_ERROR, "sms_cap_reached", 503);
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
        finish(si, OUT_ERROR, "sms_failed", 503);
        return;
    }
    ratelimit_sms_note(a->limits, si->username, si->phone, offline, wall);
}

/* ---- the sign-in ---- */

static void copy_col(const PGresult *res, int col, char *out, size_t size)
{
    snprintf(out, size, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

size_t auth_password_split(size_t len, bool sms, bool has_first, size_t digits)
{
    if (!has_first)
        return 0; /* no first factor to check; the code decides */
    if (sms || len <= digits)
        return len;
    return len - digits;
}

/*
 * Reads a RADIUS password by the user's method (auth_password_split()): the
 * first factor — the PIN, or a directory user's password — then the code.
 */
static void split_password(struct signin *si)
{
    size_t len = strlen(si->password);
    bool sms = strcmp(si->method, "sms") == 0;
    bool has_first = si->has_pin_hash || si->directory;
    size_t first_len =
        auth_password_split(len, sms, has_first, si->has_token ? (size_t)si->digits : 6);

    si->has_pin = has_first && first_len > 0 &&
                  first_len <= (si->directory ? (size_t)DIR_PIN_MAX : (size_t)SECRET_MAX);
    if (si->has_pin)
        snprintf(si->pin, sizeof(si->pin), "%.*s", (int)first_len, si->password);
    si->has_otp = len > first_len && len - first_len <= SECRET_MAX && !sms;
    if (si->has_otp)
        snprintf(si->otp, sizeof(si->otp), "%s", si->password + first_len);
    secret_wipe(si->password, sizeof(si->password));
}

/* The PIN was right (or the user has none): on to what the step asks for (auth.h). */
static void after_pin(struct signin *si)
{
    bool sms = strcmp(si->method, "sms") == 0;

    switch (si->step) {
    case AUTH_STEP_REPIN:
        finish(si, OUT_ACCEPTED, NULL, 200);
        return;
    case AUTH_STEP_PIN:
        if (!sms && !si->has_token) {
            reject(si, "no_token");
            return;
        }
        if (!sms) {
            finish(si, OUT_CHALLENGE, NULL, 200); /* the code comes in AUTH_STEP_CODE */
            return;
        }
        break;
    case AUTH_STEP_CODE:
        if (sms) {
            finish(si, OUT_ERROR, "wrong_step", 400); /* an SMS code is auth_verify()'s */
            return;
        }
        break;
    case AUTH_STEP_ALL:
        break;
    }
    if (sms)
        start_sms(si);
    else
        check_token(si);
}

/* The directory's answer for a directory user's password (auth_dirbind.h). */
static void password_checked(void *arg, int rc, const char *err)
{
    struct signin *si = arg;

    if (rc == 1) {
        after_pin(si);
    } else if (rc == 0) {
        reject(si, "wrong_password");
    } else {
        /* Not the user's fault: not counted. The error names the directory, never a secret. */
        log_warn("auth.directory_unavailable user=%s err=%s", si->username, err);
        finish(si, OUT_ERROR, "directory_unavailable", 503);
    }
}

/* A directory user's first factor: a bind as their DN with the password given (si->pin). */
static void check_password(struct signin *si)
{
    struct auth *a = auth_of(si->n);
    int rc;

    if (!*si->dn) {
        /* The user's row says directory but names no entry: the administrator's to fix. */
        secret_wipe(si->pin, sizeof(si->pin));
        log_warn("auth.no_directory_dn user=%s", si->username);
        finish(si, OUT_REJECTED, "no_directory_dn", 200);
        return;
    }
    if (!si->has_pin || !*si->pin) {
        /* No bind: LDAP takes an empty password for an anonymous bind that "succeeds". */
        reject(si, "wrong_password");
        return;
    }
    rc = a->dirbind ? dirbind_check(a->dirbind, node_conf(si->n), si->username, si->dn, si->pin,
                                    password_checked, si)
                    : -1; /* stopping */
    secret_wipe(si->pin, sizeof(si->pin));
    if (rc == DIRBIND_BUSY) {
        /* Another check of this user's is under way: not counted, never a second bind. */
        si->detail = "a check for this user is in progress";
        si->retry_after = 1;
        finish(si, OUT_REJECTED, "busy", 429);
    } else if (rc < 0) {
        log_warn("auth.directory_unavailable user=%s err=%s", si->username,
                 "the check could not be queued (too many waiting, or stopping)");
        finish(si, OUT_ERROR, "directory_unavailable", 503);
    }
}

static void user_loaded(void *arg, const PGresult *res, const char *err)
{
    struct signin *si = arg;

    if (err) {
        log_error("auth.read_failed err=%s", err);
        si->retry = true;
        finish(si, OUT_ERROR, "database_unavailable", 503);
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
    si->directory = auth_of(si->n)->ldap && !PQgetisnull(res, 0, 20) &&
                    strcmp(PQgetvalue(res, 0, 20), "directory") == 0;
    if (si->directory &&
        !(si->dn = strdup(PQgetisnull(res, 0, 21) ? "" : PQgetvalue(res, 0, 21)))) {
        finish(si, OUT_ERROR, "internal", 500);
        return;
    }

    if (strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
        reject(si, "disabled");
        return;
    }
    if (si->has_password)
        split_password(si);
    if (locked_out(si)) {
        finish(si, OUT_REJECTED, "locked_out", 200);
        return;
    }
    if (si->directory && si->step != AUTH_STEP_CODE) {
        check_password(si);
        return;
    }
    /*
     * A user without a PIN, where one is required: refused as a wrong PIN,
     * and counted. Outside "ldap" mode a directory user is a user like any:
     * without a PIN the code decides, as for a local user without one
     * (docs/directory.md: the mode is the same on every member).
     */
    if (!si->has_pin_hash && si->require_pin && si->step != AUTH_STEP_CODE) {
        secret_wipe(si->pin, sizeof(si->pin));
        reject(si, "pin_required");
        return;
    }
    if (si->has_pin_hash && si->step != AUTH_STEP_CODE) {
        char *perr = NULL;
        /* Longer than any PIN: only a directory password may be (directory.first_factor). */
        int ok = si->has_pin && strlen(si->pin) <= SECRET_MAX
                     ? pin_verify(&si->n->keys, si->pin, si->pin_hash, &perr)
                     : 0;

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
    after_pin(si);
}

/* ---- the engine's entry points ---- */

static struct signin *signin_new(struct node *n, const char *client_ip, auth_done_fn done,
                                 void *arg)
{
    struct signin *si = calloc(1, sizeof(*si));

    if (!si)
        return NULL;
    si->n = n;
    si->done = done;
    si->done_arg = arg;
    si->attempts_left = -1;
    snprintf(si->client_ip, sizeof(si->client_ip), "%s", client_ip);
    return si;
}

static bool throttled(struct signin *si)
{
    const struct appconf *c = node_conf(si->n);
    int retry;

    if (!ratelimit_throttled(auth_of(si->n)->limits, si->client_ip,
                             c->node.lockout.per_address_per_minute, clock_mono_ms(), &retry))
        return false;
    si->retry_after = retry;
    finish(si, OUT_REJECTED, "throttled", 429);
    return true;
}

/* Copies an optional secret; false when it is longer than <size> - 1. */
static bool take_secret(const char *from, char *to, size_t size, bool *present)
{
    *present = from != NULL;
    if (!from)
        return true;
    if (strlen(from) >= size)
        return false;
    memcpy(to, from, strlen(from) + 1);
    return true;
}

int auth_signin(struct node *n, const struct auth_request *rq, auth_done_fn done, void *arg)
{
    struct signin *si = signin_new(n, rq->client_ip, done, arg);
    bool ldap = auth_of(n)->ldap;
    const char *params[4];
    char window[16], *err = NULL;
    bool too_long;

    if (!si)
        return -1;
    snprintf(si->username, sizeof(si->username), "%s", rq->username);
    si->step = rq->step;
    si->require_pin = rq->require_pin;
    si->asked_method = rq->method != NULL || rq->step == AUTH_STEP_REPIN;
    snprintf(si->method, sizeof(si->method), "%s",
             rq->step == AUTH_STEP_REPIN ? "pin"
             : rq->method                ? rq->method
                                         : "-");
    /* The longer limits only where a directory password may come (auth.h). */
    too_long =
        !take_secret(rq->pin, si->pin, (ldap ? DIR_PIN_MAX : SECRET_MAX) + 1, &si->has_pin) ||
        !take_secret(rq->otp, si->otp, sizeof(si->otp), &si->has_otp) ||
        !take_secret(rq->password, si->password, (ldap ? DIR_PASSWORD_MAX : PASSWORD_MAX) + 1,
                     &si->has_password);
    if (throttled(si))
        return 0;
    if (too_long) {
        /* Longer than any PIN and code: wrong, and counted as such. */
        reject(si, si->has_password ? "wrong_pin" : "bad_secret");
        return 0;
    }
    snprintf(window, sizeof(window), "%d", node_conf(n)->node.lockout.duration);
    params[0] = si->username;
    params[1] = si->client_ip;
    params[2] = window;
    params[3] = si->asked_method && rq->step != AUTH_STEP_REPIN ? si->method : NULL;
    if (nodedb_read_prepared(n->db, "auth_user", 4, params, user_loaded, si, &err) < 0) {
        log_error("auth.read_failed err=%s", err);
        free(err);
        si->retry = true;
        finish(si, OUT_ERROR, "database_unavailable", 503);
    }
    return 0;
}

int auth_verify(struct node *n, const char *challenge_id, const char *otp, const char *username,
                bool end_on_wrong, const char *client_ip, auth_done_fn done, void *arg)
{
    struct auth *a = auth_of(n);
    struct signin *si = signin_new(n, client_ip, done, arg);
    struct chal_info info;
    enum chal_result r;
    bool pending = false;

    if (!si)
        return -1;
    snprintf(si->method, sizeof(si->method), "sms");
    snprintf(si->username, sizeof(si->username), "%s", username ? username : "-");
    if (id_valid(challenge_id))
        snprintf(si->challenge_id, sizeof(si->challenge_id), "%s", challenge_id);
    /* The person's address and earlier failures, from when the challenge was made. */
    if (*si->challenge_id &&
        chal_state(a->chal, si->challenge_id, clock_mono_ms(), &info) == CHAL_ST_PENDING) {
        pending = true;
        if (info.data_len == sizeof(struct chal_ctx)) {
            struct chal_ctx ctx;

            memcpy(&ctx, info.data, sizeof(ctx));
            snprintf(si->client_ip, sizeof(si->client_ip), "%s", ctx.client_ip);
            si->failures = ctx.had_failures;
        }
    }
    if (throttled(si))
        return 0;
    if (!pending) {
        finish(si, OUT_REJECTED, "challenge_expired", 410);
        return 0;
    }
    if (username && strcasecmp(username, info.username) != 0) {
        /* Someone else's challenge: not this user's to answer. */
        reject(si, "challenge_user_mismatch");
        return 0;
    }
    r = chal_verify(a->chal, si->challenge_id, otp, clock_mono_ms(), &info);
    if (r == CHAL_EXPIRED || r == CHAL_UNKNOWN) {
        finish(si, OUT_REJECTED, "challenge_expired", 410);
        return 0;
    }
    snprintf(si->username, sizeof(si->username), "%.128s", info.username);
    snprintf(si->method, sizeof(si->method), "%.7s", info.method);
    if (r == CHAL_ACCEPTED) {
        clear_failures(si);
        finish(si, OUT_ACCEPTED, NULL, 200);
    } else if (r == CHAL_REJECTED) {
        if (end_on_wrong)
            chal_cancel(a->chal, si->challenge_id);
        count_failure(si);
        si->attempts_left = end_on_wrong ? 0 : info.attempts_left;
        finish(si, OUT_REJECTED, "wrong_code", 200);
    } else {
        reject(si, "attempts_exhausted");
    }
    return 0;
}

size_t auth_challenge_state(const struct node *n, const char *id, char *method, size_t msize,
                            uint64_t *expires_in_s, bool *accepted)
{
    struct chal_info info;
    enum chal_status st = chal_state(auth_of(n)->chal, id, clock_mono_ms(), &info);
    uint64_t now = clock_mono_ms();

    if (st == CHAL_ST_GONE)
        return 0;
    snprintf(method, msize, "%s", info.method);
    *expires_in_s = info.expires_ms > now ? (info.expires_ms - now) / 1000 : 0;
    *accepted = st == CHAL_ST_ACCEPTED;
    return 1;
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
    a->ldap = c->directory.first_factor == FIRST_FACTOR_LDAP;
    if (a->ldap) {
        a->dirbind = dirbind_new(daemon_base(n->d), n->workers, DIRBIND_RUNNING, DIRBIND_WAITING);
        if (!a->dirbind)
            return err_set(err, "out of memory");
    }
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
    struct dirbind *q;

    if (a) {
        sms_free(a->sms);
        a->sms = NULL;
        q = a->dirbind;
        /*
         * Sign-ins waiting for the directory are answered now, while their
         * callers live; one started from an answer finds no queue.
         */
        a->dirbind = NULL;
        dirbind_free(q);
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
    json_object_set_new(status, "auth_log_pending", json_integer((json_int_t)ls.pending));
    if (a->ldap)
        json_object_set_new(status, "directory_checks",
                            json_integer((json_int_t)dirbind_pending(a->dirbind)));
}
