/*
 * E-mail to users (mail.h, docs/email.md).
 *
 * Every email.poll_interval_ms the node whose local database is the writable
 * primary (schema 3 or later) claims up to MAIL_BATCH due rows of
 * email_outbox with one write: attempts + 1 and next_attempt_at pushed past a
 * lease, so a node that dies mid-send leaves its rows to be claimed again
 * once the lease ends — by itself or by the next primary. Rows older than
 * email.max_age_s are given up in the same write. Each claimed row is built
 * into a message (common/mailmsg) and the messages are sent one after the
 * other with libcurl's SMTP on a worker thread of the sender's own. Not on
 * the event loop through libcurl's multi interface: libcurl's SMTP waits for
 * the server's answer to the end of the data, and for QUIT, with blocking
 * calls even there (curl issue #8555, "known issue"), which would stall
 * every sign-in of the node for up to email.timeout_ms. One at a time, each
 * message has its whole deadline, so the k-th row of a claim gets a lease of
 * k deadlines plus a margin for its row update. After each message sent_at is written with
 * remote_apply (after a failover the new primary knows it was sent) or, on failure, the next
 * attempt is put off by a backoff (30 s doubling, at most an hour). A full claim is followed by the
 * next at once, not after the poll interval.
 *
 * At least once: a crash or failover between the server's 250 and the
 * sent_at write sends the message again, with the same Message-ID (its
 * event_id), so the recipient's mail program can tell it is the same. A
 * sent_at write that fails is tried again before the next claim while the
 * node is still on the primary (m->unmarked), so a message is not sent twice
 * for a write that merely failed once. Only a row that cannot make a message
 * is given up: bad settings (possible only after a reload the checks let
 * through) leave the rows to their lease.
 *
 * A graceful stop (the daemon's drain, first SIGTERM) claims nothing more,
 * hands the rows claimed but not started back (attempts as before, due now),
 * lets the message in flight finish and writes its sent_at: mail_in_flight()
 * keeps the drain open until then (appliance.drain_timeout at most).
 *
 * Housekeeping, whether or not email.enabled: the node on the primary
 * deletes sent and given-up rows older than email.retention_days every
 * MAIL_PURGE_MS in batches, and while e-mail is disabled gives up unsent rows
 * older than email.max_age_s, so the outbox does not grow for ever.
 *
 * Invariants: a claim starts only while nothing is in flight (m->busy counts
 * the claim, the queued and sending messages and the writes after them); at
 * most one message is on the worker thread, which touches nothing but its
 * struct mail_send and m->abort; the password never leaves m->password and
 * libcurl; no message body is logged.
 */
#include "mail.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "directory.h"
#include "errmsg.h"
#include "log.h"
#include "mailmsg.h"
#include "metrics.h"
#include "worker.h"

#define MAIL_BATCH          5    /* rows one claim takes */
#define MAIL_BACKOFF_S      30   /* after the first failure; doubles */
#define MAIL_BACKOFF_MAX_S  3600 /* at most an hour between attempts */
#define MAIL_CONNECT_MS     10000
#define MAIL_LEASE_MARGIN_S 10  /* past the SMTP deadline: the sender's row update */
#define MAIL_ERROR_MAX      400 /* last_error stored and shown */
#define MAIL_PASSWORD_MAX   256
#define MAIL_SCHEMA_VERSION 3                /* email_outbox */
#define MAIL_UNMARKED_MAX   64               /* sent_at writes kept to try again */
#define MAIL_MARK_TRIES     3                /* then the row is left to its lease */
#define MAIL_PURGE_MS       (20 * 60 * 1000) /* housekeeping: three times an hour */
#define MAIL_PURGE_RETRY_MS 10000            /* not on the primary: look again */
#define MAIL_PURGE_BATCH    1000             /* rows one housekeeping write touches */

struct mail {
    struct node *n;
    bool enabled;               /* email.enabled at start; else only the housekeeping runs */
    struct worker_pool *thread; /* one thread: the SMTP transfers */
    int abort;                  /* set by mail_stop(): the transfer gives up (atomic) */
    struct mailmsg_templates tpl;
    char password[MAIL_PASSWORD_MAX];
    struct mail_send *queue, *queue_tail; /* claimed and built, waiting their turn */
    size_t busy;   /* claim, queued and sending messages, row updates in flight */
    bool more;     /* the last claim was full: claim again at once */
    bool sending;  /* at the last tick this node was on the writable primary */
    bool stopping; /* mail_stop() ran: freed when busy reaches 0 */
    bool draining; /* the daemon drains: nothing new is claimed */
    bool purging;  /* the housekeeping write is in flight */
    uint64_t last_poll_ms, next_purge_ms;
    struct unmarked {
        char id[24];
        int tries;
    } unmarked[MAIL_UNMARKED_MAX]; /* sent, but the sent_at write failed */
    size_t nunmarked;
    uint64_t sent, failed, given_up;
    char last_error[MAIL_ERROR_MAX];
};

/* One message on its way: the claimed row and the upload's read position. */
struct mail_send {
    struct mail_send *next;
    struct mail *m;
    CURL *easy; /* prepared on the loop, performed on the worker thread */
    struct curl_slist *rcpt;
    CURLcode rc;
    long reply; /* the server's last reply code */
    char errbuf[CURL_ERROR_SIZE];
    char *to;
    char id[24];
    char event_id[40];
    char event[24];
    char *username;
    int attempts;
    char *msg;
    size_t len, off;
};

/*
 * Claims due rows, oldest first. $1: one message's deadline in seconds, $2:
 * email.max_age_s, $3: the lease's margin, $4: MAIL_BATCH; the n-th row (turn)
 * is leased for n deadlines and the margin. SKIP LOCKED: two nodes that both
 * believe they are on the primary for a moment never claim the same row in
 * one go.
 */
static const char claim_sql[] =
    "UPDATE email_outbox o SET attempts = o.attempts + 1,"
    " next_attempt_at = now() + make_interval(secs => $1::int * d.turn + $3::int),"
    " given_up_at = CASE WHEN o.created_at < now() - make_interval(secs => $2::int)"
    "  THEN now() END,"
    " last_error = CASE WHEN o.created_at < now() - make_interval(secs => $2::int)"
    "  THEN 'too old' ELSE o.last_error END"
    " FROM (SELECT id, row_number() OVER (ORDER BY id) AS turn FROM"
    "  (SELECT id FROM email_outbox WHERE sent_at IS NULL AND given_up_at IS NULL"
    "   AND next_attempt_at <= now() ORDER BY id LIMIT $4::int FOR UPDATE SKIP LOCKED) due) d"
    " WHERE o.id = d.id"
    " RETURNING o.id, o.event_id, o.event, o.username, o.display_name, o.to_addr, o.method,"
    " extract(epoch FROM o.created_at)::bigint, o.given_up_at IS NOT NULL, o.attempts, d.turn";

/* coalesce: writing it again after a write whose answer was lost keeps the first time */
static const char sent_sql[] =
    "UPDATE email_outbox SET sent_at = coalesce(sent_at, now()), last_error = '' WHERE id = $1";
/* A claimed row handed back at a graceful stop: that claim was no attempt. */
static const char release_sql[] =
    "UPDATE email_outbox SET attempts = greatest(attempts - 1, 0), next_attempt_at = now()"
    " WHERE id = $1 AND sent_at IS NULL AND given_up_at IS NULL";
/*
 * Housekeeping. $1: email.retention_days, $2: email.max_age_s, $3: give up
 * unsent rows older than that (e-mail disabled: nobody else does), $4: the
 * batch. SKIP LOCKED: never waits on a claim.
 */
static const char purge_sql[] =
    "WITH old AS (UPDATE email_outbox SET given_up_at = now(), last_error = 'too old'"
    "  WHERE id IN (SELECT id FROM email_outbox WHERE $3::bool AND sent_at IS NULL"
    "   AND given_up_at IS NULL AND created_at < now() - make_interval(secs => $2::int)"
    "   ORDER BY id LIMIT $4::int FOR UPDATE SKIP LOCKED) RETURNING id),"
    " gone AS (DELETE FROM email_outbox WHERE id IN (SELECT id FROM email_outbox"
    "  WHERE coalesce(sent_at, given_up_at) < now() - make_interval(days => $1::int)"
    "  ORDER BY id LIMIT $4::int FOR UPDATE SKIP LOCKED) RETURNING id)"
    " SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM gone)";
static const char retry_sql[] = "UPDATE email_outbox SET last_error = $2,"
                                " next_attempt_at = now() + make_interval(secs => $3::int)"
                                " WHERE id = $1 AND sent_at IS NULL";
static const char give_up_sql[] = "UPDATE email_outbox SET given_up_at = now(), last_error = $2"
                                  " WHERE id = $1 AND sent_at IS NULL";

static void mail_free(struct mail *m)
{
    if (!m)
        return;
    mailmsg_templates_free(&m->tpl);
    OPENSSL_cleanse(m->password, sizeof(m->password));
    free(m);
}

/* Counts one thing in flight less; frees <m> when it was the last after a stop. */
static void mail_done_one(struct mail *m)
{
    m->busy--;
    if (m->stopping && m->busy == 0)
        mail_free(m);
}

static void set_last_error(struct mail *m, const char *e)
{
    snprintf(m->last_error, sizeof(m->last_error), "%s", e);
}

static void send_free(struct mail_send *s)
{
    if (s->easy)
        curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->rcpt);
    free(s->to);
    free(s->username);
    free(s->msg);
    free(s);
}

/* ---- row updates ---- */

static void update_done(void *arg, const PGresult *res, const char *err)
{
    struct mail *m = arg;

    (void)res;
    if (err && !m->stopping)
        log_warn("mail.update_failed error=%s (the row is claimed again after its lease)", err);
    mail_done_one(m);
}

static void update_row(struct mail *m, const char *sql, int nparams, const char *const *params,
                       enum pgconn_sync sync)
{
    char *err = NULL;
    int rc = nodedb_write(m->n->db, sql, nparams, params, sync, update_done, m, &err);

    if (rc == 0) {
        m->busy++;
        return;
    }
    log_warn("mail.update_failed id=%s error=%s (the row is claimed again after its lease)",
             params[0], rc == NODEDB_READ_ONLY ? "no primary" : err);
    mfa_free(err);
}

/*
 * Keeps <id>, whose sent_at was written <tries> times in vain, to write again
 * before the next claim. A write that keeps failing (the claim waits for
 * these) gives way after MAIL_MARK_TRIES: the row's lease ends and the
 * message is sent again, with its Message-ID.
 */
static void remember_unmarked(struct mail *m, const char *id, int tries)
{
    struct unmarked *u;

    if (tries >= MAIL_MARK_TRIES || m->nunmarked == MAIL_UNMARKED_MAX) {
        log_warn("mail.mark_dropped id=%s tries=%d (sent again after its lease)", id, tries);
        return;
    }
    u = &m->unmarked[m->nunmarked++];
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->tries = tries;
}

struct mark {
    struct mail *m;
    char id[24];
    int tries; /* this write included */
};

static void mark_done(void *arg, const PGresult *res, const char *err)
{
    struct mark *k = arg;
    struct mail *m = k->m;

    (void)res;
    if (err && !m->stopping) {
        log_warn("mail.mark_failed id=%s error=%s (tried again before the next claim)", k->id, err);
        remember_unmarked(m, k->id, k->tries);
    }
    free(k);
    mail_done_one(m);
}

/*
 * Writes sent_at of row <id>, its <tries>-th write (remote_apply: a new
 * primary after a failover knows it was sent).
 */
static void mark_sent(struct mail *m, const char *id, int tries)
{
    const char *params[1] = { id };
    struct mark *k = calloc(1, sizeof(*k));
    char *err = NULL;
    int rc;

    if (!k) {
        remember_unmarked(m, id, tries);
        return;
    }
    k->m = m;
    k->tries = tries;
    snprintf(k->id, sizeof(k->id), "%s", id);
    rc = nodedb_write(m->n->db, sent_sql, 1, params, PGCONN_SYNC_REMOTE_APPLY, mark_done, k, &err);
    if (rc == 0) {
        m->busy++;
        return;
    }
    log_warn("mail.mark_failed id=%s error=%s (tried again before the next claim)", id,
             rc == NODEDB_READ_ONLY ? "no primary" : err);
    mfa_free(err);
    free(k);
    remember_unmarked(m, id, tries);
}

/* The sent_at writes that failed, again; each one is still counted once in m->sent. */
static void mark_again(struct mail *m)
{
    struct unmarked again[MAIL_UNMARKED_MAX];
    size_t n = m->nunmarked;

    memcpy(again, m->unmarked, sizeof(again[0]) * n);
    m->nunmarked = 0;
    for (size_t i = 0; i < n; i++)
        mark_sent(m, again[i].id, again[i].tries + 1);
}

static void give_up(struct mail *m, const char *id, const char *why)
{
    const char *params[2] = { id, why };

    m->given_up++;
    set_last_error(m, why);
    update_row(m, give_up_sql, 2, params, PGCONN_SYNC_REMOTE_APPLY);
}

/* ---- sending ---- */

static int backoff_s(int attempts)
{
    int s = MAIL_BACKOFF_S;

    for (int i = 1; i < attempts && s < MAIL_BACKOFF_MAX_S; i++)
        s *= 2;
    return s < MAIL_BACKOFF_MAX_S ? s : MAIL_BACKOFF_MAX_S;
}

static void send_next(struct mail *m);

/* CURLOPT_READFUNCTION: the message, then the end. */
static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct mail_send *s = arg;
    size_t n = size * nitems;

    if (n > s->len - s->off)
        n = s->len - s->off;
    memcpy(buf, s->msg + s->off, n);
    s->off += n;
    return n;
}

/* CURLOPT_XFERINFOFUNCTION, on the worker thread: non-zero ends the transfer. */
static int progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct mail_send *s = arg;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return __atomic_load_n(&s->m->abort, __ATOMIC_RELAXED);
}

/* The worker thread: the whole SMTP exchange, blocking. */
static void send_work(void *arg)
{
    struct mail_send *s = arg;

    s->rc = curl_easy_perform(s->easy);
    if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->reply) != CURLE_OK)
        s->reply = 0;
}

/* Back on the loop: records the outcome of <s> and starts the next message. */
static void send_done(void *arg)
{
    struct mail_send *s = arg;
    struct mail *m = s->m;
    char error[CURL_ERROR_SIZE + 64];

    if (s->rc != CURLE_OK) {
        const char *text = s->errbuf[0] ? s->errbuf : curl_easy_strerror(s->rc);

        /* "Weird server reply" says more with the code (451, say) */
        if (s->reply > 0)
            snprintf(error, sizeof(error), "%s (last server reply %ld)", text, s->reply);
        else
            snprintf(error, sizeof(error), "%s", text);
    }
    if (m->stopping && s->rc == CURLE_OK) {
        /* the database is going away with the node: the row keeps its lease */
        log_notice("mail.sent event=%s user=%s message_id=%s attempt=%d smtp=%ld (not marked: "
                   "stopping, so it is sent again after the lease)",
                   s->event, s->username, s->event_id, s->attempts, s->reply);
    } else if (m->stopping) {
        log_notice("mail.aborted event=%s user=%s message_id=%s (sent again after the lease)",
                   s->event, s->username, s->event_id);
    } else if (s->rc != CURLE_OK) {
        char wait[16];
        const char *params[3] = { s->id, error, wait };

        m->failed++;
        set_last_error(m, error);
        snprintf(wait, sizeof(wait), "%d", backoff_s(s->attempts));
        log_warn("mail.failed event=%s user=%s message_id=%s attempt=%d retry_in_s=%s error=%s",
                 s->event, s->username, s->event_id, s->attempts, wait, error);
        update_row(m, retry_sql, 3, params, PGCONN_SYNC_DEFAULT);
    } else {
        m->sent++;
        log_notice("mail.sent event=%s user=%s message_id=%s attempt=%d smtp=%ld", s->event,
                   s->username, s->event_id, s->attempts, s->reply);
        mark_sent(m, s->id, 1);
    }
    send_free(s);
    if (!m->stopping)
        send_next(m);
    mail_done_one(m);
}

#define SET(o, v)                                                                                  \
    do {                                                                                           \
        if (curl_easy_setopt(e, o, v) != CURLE_OK) {                                               \
            which = #o;                                                                            \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/*
 * Prepares the SMTP transfer of <s> and hands it to the worker thread;
 * on failure (-1 with *err) the row waits for its lease.
 */
static int send_start(struct mail *m, struct mail_send *s, char **err)
{
    const struct appconf *c = node_conf(m->n);
    const char *which = "curl_easy_init";
    char addr[MAILMSG_ADDR_MAX + 3];
    CURL *e = curl_easy_init();

    s->easy = e;
    if (!e)
        goto fail;
    snprintf(addr, sizeof(addr), "<%s>", s->to);
    which = "CURLOPT_MAIL_RCPT";
    s->rcpt = curl_slist_append(NULL, addr);
    if (!s->rcpt)
        goto fail;
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, s->errbuf);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, progress_cb);
    SET(CURLOPT_XFERINFODATA, (void *)s);
    SET(CURLOPT_URL, c->email.smtp_url);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_PROXY, "");
    /*
     * One SMTP session per message: a connection left by a transfer that
     * timed out waiting for its 250 could hand that late reply to the next
     * message's commands.
     */
    SET(CURLOPT_FRESH_CONNECT, 1L);
    SET(CURLOPT_FORBID_REUSE, 1L);
    /* STARTTLS or fail (smtps:// is TLS from the start) */
    SET(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, c->cluster.tls_min_version == TLS_MIN_1_3
                                ? (long)CURL_SSLVERSION_TLSv1_3
                                : (long)CURL_SSLVERSION_TLSv1_2);
    if (*c->email.ca_file) {
        SET(CURLOPT_CAINFO, c->email.ca_file);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    if (c->cluster.tls_ciphers && *c->cluster.tls_ciphers)
        SET(CURLOPT_SSL_CIPHER_LIST, c->cluster.tls_ciphers);
    if (c->cluster.tls_ciphersuites && *c->cluster.tls_ciphersuites)
        SET(CURLOPT_TLS13_CIPHERS, c->cluster.tls_ciphersuites);
    if (*c->email.username) {
        SET(CURLOPT_USERNAME, c->email.username);
        SET(CURLOPT_PASSWORD, m->password);
    }
    snprintf(addr, sizeof(addr), "<%s>", c->email.from);
    SET(CURLOPT_MAIL_FROM, addr);
    SET(CURLOPT_MAIL_RCPT, s->rcpt);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, read_cb);
    SET(CURLOPT_READDATA, (void *)s);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->len);
    SET(CURLOPT_TIMEOUT_MS, (long)c->email.timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        (long)(c->email.timeout_ms < MAIL_CONNECT_MS ? c->email.timeout_ms : MAIL_CONNECT_MS));
    if (worker_submit(m->thread, send_work, send_done, s) < 0)
        return err_set(err, "cannot start the sender's thread job");
    return 0;

fail:
    return err_set(err, "libcurl refuses %s", which);
}

/*
 * Starts the next queued message, if any; one that libcurl refuses is left
 * to its lease (logged) and the one after it tried.
 */
static void send_next(struct mail *m)
{
    struct mail_send *s;
    char *err = NULL;

    while ((s = m->queue)) {
        m->queue = s->next;
        if (!m->queue)
            m->queue_tail = NULL;
        s->next = NULL;
        if (send_start(m, s, &err) == 0)
            return;
        log_error("mail.send_failed event=%s user=%s message_id=%s error=%s (tried again after "
                  "the lease)",
                  s->event, s->username, s->event_id, err);
        set_last_error(m, err);
        mfa_free(err);
        send_free(s);
        mail_done_one(m);
    }
}

/* Builds row <i> of a claim into a message and queues it (in claim order). */
static void queue_row(struct mail *m, const PGresult *res, int i)
{
    const struct appconf *c = node_conf(m->n);
    struct mailmsg_fields f = {
        .event_id = PQgetvalue(res, i, 1),
        .event = PQgetvalue(res, i, 2),
        .username = PQgetvalue(res, i, 3),
        .display_name = PQgetvalue(res, i, 4),
        .to_addr = PQgetvalue(res, i, 5),
        .method = PQgetvalue(res, i, 6),
        .from = c->email.from,
        .from_name = c->email.from_name,
        .portal_url = c->email.portal_url,
        .date = (time_t)strtoll(PQgetvalue(res, i, 7), NULL, 10),
    };
    const char *id = PQgetvalue(res, i, 0);
    struct mail_send *s;
    char *err = NULL;

    if (strcmp(PQgetvalue(res, i, 8), "t") == 0) {
        m->given_up++;
        set_last_error(m, "too old");
        log_warn("mail.given_up event=%.24s user=%s message_id=%.40s reason=\"too old\" "
                 "(not sent within email.max_age_s=%d)",
                 f.event, f.username, f.event_id, c->email.max_age_s);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->username = strdup(f.username)) || !(s->to = strdup(f.to_addr))) {
        if (s)
            send_free(s);
        log_error("mail.send_failed id=%s error=\"out of memory\"", id);
        return;
    }
    s->m = m;
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->event_id, sizeof(s->event_id), "%s", f.event_id);
    snprintf(s->event, sizeof(s->event), "%s", f.event);
    s->attempts = atoi(PQgetvalue(res, i, 9));
    s->msg = mailmsg_build(&m->tpl, &f, &s->len, &err);
    if (!s->msg) {
        /* the row can never make a message: asking again changes nothing */
        log_warn("mail.given_up event=%s user=%s message_id=%s reason=%s", s->event, s->username,
                 s->event_id, err);
        give_up(m, s->id, err);
        mfa_free(err);
        send_free(s);
        return;
    }
    if (m->queue_tail)
        m->queue_tail->next = s;
    else
        m->queue = s;
    m->queue_tail = s;
    m->busy++;
}

/*
 * The claim's rows in turn order (RETURNING has none of its own). Settings
 * that cannot make any message (appconf refuses them; a reload might not)
 * give no row up: the rows wait for their lease and a fixed configuration.
 */
static void queue_claim(struct mail *m, const PGresult *res)
{
    const struct appconf *c = node_conf(m->n);
    int rows = PQntuples(res);
    char *err = NULL;

    if (rows > 0 &&
        mailmsg_check_settings(c->email.from, c->email.from_name, c->email.portal_url, &err) < 0) {
        log_error("mail.settings_invalid error=%s (%d messages wait for their lease)", err, rows);
        set_last_error(m, err);
        mfa_free(err);
        return;
    }

    for (int turn = 1; turn <= rows; turn++) {
        for (int i = 0; i < rows; i++) {
            if (atoi(PQgetvalue(res, i, 10)) == turn)
                queue_row(m, res, i);
        }
    }
    m->more = rows == MAIL_BATCH;
}

/* Hands the claimed rows not started back to the outbox (a graceful stop). */
static void release_queue(struct mail *m)
{
    struct mail_send *s = m->queue, *next;
    int released = 0;

    m->queue = NULL;
    m->queue_tail = NULL;
    for (; s; s = next) {
        const char *params[1] = { s->id };

        next = s->next;
        log_notice("mail.released event=%s user=%s message_id=%s (stopping: sent later)", s->event,
                   s->username, s->event_id);
        update_row(m, release_sql, 1, params, PGCONN_SYNC_DEFAULT);
        send_free(s);
        released++;
    }
    if (released == 0)
        return;
    /* The rows' references last, the final one through mail_done_one(): m may go with it. */
    m->busy -= (size_t)released - 1;
    mail_done_one(m);
}

static void claim_done(void *arg, const PGresult *res, const char *err)
{
    struct mail *m = arg;

    if (m->stopping) {
        mail_done_one(m);
        return;
    }
    if (err) {
        log_warn("mail.claim_failed error=%s", err);
    } else {
        queue_claim(m, res);
        if (m->draining)
            release_queue(m);
        else
            send_next(m);
    }
    mail_done_one(m);
}

/* ---- housekeeping ---- */

static void purge_done(void *arg, const PGresult *res, const char *err)
{
    struct mail *m = arg;

    m->purging = false;
    if (err) {
        if (!m->stopping)
            log_warn("mail.purge_failed error=%s", err);
    } else if (PQntuples(res) == 1) {
        long old = atol(PQgetvalue(res, 0, 0)), gone = atol(PQgetvalue(res, 0, 1));

        if (old > 0 || gone > 0)
            log_notice("mail.purged deleted=%ld given_up=%ld", gone, old);
        m->given_up += (uint64_t)old;
        /* a full batch: more are due, at the next poll */
        if (old == MAIL_PURGE_BATCH || gone == MAIL_PURGE_BATCH)
            m->next_purge_ms = clock_mono_ms();
    }
    mail_done_one(m);
}

static void purge(struct mail *m)
{
    const struct appconf *c = node_conf(m->n);
    char days[16], max_age[16], batch[16];
    const char *params[4] = { days, max_age, m->enabled ? "false" : "true", batch };
    char *err = NULL;
    int rc;

    snprintf(days, sizeof(days), "%d", c->email.retention_days);
    snprintf(max_age, sizeof(max_age), "%d", c->email.max_age_s);
    snprintf(batch, sizeof(batch), "%d", MAIL_PURGE_BATCH);
    rc = nodedb_write(m->n->db, purge_sql, 4, params, PGCONN_SYNC_DEFAULT, purge_done, m, &err);
    if (rc == 0) {
        m->busy++;
        m->purging = true;
    } else if (rc < 0) {
        log_error("mail.purge_failed error=%s", err);
        mfa_free(err);
    }
}

/* ---- the node's hooks ---- */

int mail_start(struct node *n, char **err)
{
    const struct appconf *c = node_conf(n);
    struct mail *m;

    m = calloc(1, sizeof(*m));
    if (!m)
        return err_set(err, "out of memory");
    m->n = n;
    m->enabled = c->email.enabled;
    if (!m->enabled) {
        n->mail = m; /* the housekeeping only */
        return 0;
    }
    if (mailmsg_check_settings(c->email.from, c->email.from_name, c->email.portal_url, err) < 0)
        goto fail;
    if (mailmsg_templates_load(&m->tpl, c->email.templates_dir, err) < 0)
        goto fail;
    if (*c->email.password_file && directory_read_secret_file(c->email.password_file, m->password,
                                                              sizeof(m->password), err) < 0) {
        err_prefix(err, "email.password_file");
        goto fail;
    }
    m->thread = worker_pool_new(daemon_base(n->d), 1, err);
    if (!m->thread)
        goto fail;
    n->mail = m;
    log_notice("mail.ready smtp=%s from=%s templates=%s", c->email.smtp_url, c->email.from,
               *c->email.templates_dir ? c->email.templates_dir : "built-in");
    return 0;

fail:
    err_prefix(err, "email");
    mail_free(m);
    return -1;
}

/* True when this node's local database is the writable primary with email_outbox. */
static bool on_primary(const struct node *n)
{
    struct nodedb_status st;

    nodedb_get_status(n->db, &st);
    return st.role == NODEDB_PRIMARY && st.primary_up && st.schema_version >= MAIL_SCHEMA_VERSION;
}

void mail_tick(struct node *n)
{
    struct mail *m = n->mail;
    const struct appconf *c = node_conf(n);
    uint64_t now = clock_mono_ms();
    char deadline[16], max_age[16], margin[16], batch[16];
    const char *params[4] = { deadline, max_age, margin, batch };
    char *err = NULL;
    int rc;

    if (!m || m->stopping || m->draining)
        return;
    if (daemon_draining(n->d)) {
        m->draining = true;
        release_queue(m);
        return;
    }
    if (now >= m->next_purge_ms && !m->purging) {
        m->next_purge_ms = now + MAIL_PURGE_MS;
        if (on_primary(n))
            purge(m);
        else
            m->next_purge_ms = now + MAIL_PURGE_RETRY_MS;
    }
    if (!m->enabled)
        return;
    if (!(m->more && m->busy == 0) && now - m->last_poll_ms < (uint64_t)c->email.poll_interval_ms)
        return;
    m->last_poll_ms = now;
    m->sending = on_primary(n);
    if (!m->sending && m->nunmarked > 0) {
        /* the next primary claims them after their lease: sent again, same Message-ID */
        log_warn("mail.mark_dropped count=%zu (no longer on the primary)", m->nunmarked);
        m->nunmarked = 0;
    }
    if (!m->sending || m->busy > 0)
        return;
    if (m->nunmarked > 0) {
        mark_again(m); /* before claiming: the claim waits for these */
        return;
    }
    m->more = false;
    snprintf(deadline, sizeof(deadline), "%d", c->email.timeout_ms / 1000 + 1);
    snprintf(max_age, sizeof(max_age), "%d", c->email.max_age_s);
    snprintf(margin, sizeof(margin), "%d", MAIL_LEASE_MARGIN_S);
    snprintf(batch, sizeof(batch), "%d", MAIL_BATCH);
    rc = nodedb_write(n->db, claim_sql, 4, params, PGCONN_SYNC_DEFAULT, claim_done, m, &err);
    if (rc == 0) {
        m->busy++;
    } else if (rc < 0) {
        log_error("mail.claim_failed error=%s", err);
        mfa_free(err);
    }
}

void mail_stop(struct node *n)
{
    struct mail *m = n->mail;

    if (!m)
        return;
    n->mail = NULL;
    m->stopping = true;
    m->busy++; /* <m> lives through the aborts below */
    while (m->queue) {
        struct mail_send *s = m->queue;

        m->queue = s->next;
        send_free(s);
        m->busy--;
    }
    m->queue_tail = NULL;
    /* the transfer in flight gives up within a second (progress_cb) */
    __atomic_store_n(&m->abort, 1, __ATOMIC_RELAXED);
    worker_pool_free(m->thread);
    m->thread = NULL;
    /* the database's callbacks still to come free it */
    mail_done_one(m);
}

size_t mail_in_flight(const struct node *n)
{
    const struct mail *m = n->mail;

    return m ? m->busy : 0;
}

void mail_status(const struct node *n, json_t *status)
{
    const struct mail *m = n->mail;

    if (!m || !m->enabled) {
        json_object_set_new(status, "email", json_pack("{s:b}", "enabled", 0));
        return;
    }
    json_object_set_new(status, "email",
                        json_pack("{s:b, s:b, s:I, s:I, s:I, s:s}", "enabled", 1, "sending",
                                  m->sending, "sent", (json_int_t)m->sent, "failed",
                                  (json_int_t)m->failed, "given_up", (json_int_t)m->given_up,
                                  "last_error", m->last_error));
}

void mail_metrics(const struct node *n, struct evbuffer *out)
{
    const struct mail *m = n->mail;

    if (!m || !m->enabled)
        return;
    metrics_single(out, "mfa_email_sent_total", METRIC_COUNTER,
                   "E-mails the SMTP server accepted from this node.", (double)m->sent);
    metrics_single(out, "mfa_email_failed_total", METRIC_COUNTER,
                   "E-mail attempts that failed (tried again later).", (double)m->failed);
    metrics_single(out, "mfa_email_given_up_total", METRIC_COUNTER,
                   "E-mails given up (too old, or a message that cannot be built).",
                   (double)m->given_up);
    metrics_single(out, "mfa_email_sending", METRIC_GAUGE,
                   "This node sends the e-mail (its database is the writable primary).",
                   m->sending);
}
