/*
 * POST /api/v1/tokens/import: OATH tokens from a seed file (DESIGN §4), as
 * `mfactl token import` takes them, through the admin API.
 *
 * The body is a CSV seed file (Content-Type: text/csv) or a PSKC file
 * (application/pskc+xml, RFC 6030), read with tokenfile.h; an encrypted
 * PSKC file's passphrase comes in the X-PSKC-Passphrase header (never the
 * URL), is copied out of the request and wiped there at once, and wiped
 * again after the read. Reading the file (a PBKDF2 of up to millions of
 * iterations) and sealing every seed bound to its serial (seal.h, as
 * users_totp.c and mfactl do, so auth.c opens it) is CPU work: it runs on a
 * worker thread (worker.h), one import per node at a time so that a worker
 * stays free for the auth log.
 *
 * All or nothing, in ONE statement on the primary (remote_apply): the users
 * the file names are locked (KEY SHARE) and looked up; when a serial is in
 * the cluster already or a user does not exist, nothing is inserted and the
 * answer names them (409 / 422); otherwise every token is inserted,
 * assigned to its user when the file names one, with an admin_audit row per
 * token (target the serial; detail user, kind, format; never a seed). A
 * serial stored by someone else between our look-up and our insert fails
 * the statement on the unique index: 409 too. As with mfactl, an import only
 * assigns: a user whose method is not the token's kind is named in the
 * answer (method_mismatch) and keeps signing in as before.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "node.h"
#include "pgconn.h"
#include "seal.h"
#include "secrets.h"
#include "strlist.h"
#include "tokenfile.h"
#include "tokens.h"
#include "worker.h"

#define PASSPHRASE_HEADER "X-PSKC-Passphrase"
#define PASSPHRASE_MAX    1024 /* bytes; a longer header is refused */
#define ACTOR_MAX         129  /* an API key's name and a NUL */
#define NAMES_SHOWN       5    /* serials or users named in a refusal's sentence */

/*
 * Imports running on this node (0 or 1): the loop thread's alone. A second
 * one waits for the first rather than taking the second worker thread.
 */
static unsigned imports_running;

struct import_job {
    struct node *n;
    struct evhttp_request *req;
    char actor[ACTOR_MAX];
    enum tokenfile_format format;
    char *text; /* the body, wiped once read */
    size_t len;
    char *passphrase; /* NULL when no header came; wiped once used */
    /* The work's outcome: a refusal (status != 0), or the rows to insert. */
    int status;
    const char *code;
    char *detail;
    size_t ntokens;
    json_t *serials; /* the file's serials, in its order */
    char *rows;      /* JSON: every token, its seed sealed */
};

static void job_free(struct import_job *j)
{
    if (!j)
        return;
    if (j->text)
        secret_wipe(j->text, j->len);
    free(j->text);
    secret_wipe_str(j->passphrase);
    free(j->passphrase);
    free(j->detail);
    json_decref(j->serials);
    free(j->rows);
    free(j);
}

static const char *format_name(enum tokenfile_format f)
{
    return f == TOKENFILE_PSKC ? "pskc" : "csv";
}

/* The format for a Content-Type (parameters after ';' ignored), or TOKENFILE_UNKNOWN. */
static enum tokenfile_format format_of(const char *type)
{
    static const struct {
        const char *name;
        enum tokenfile_format format;
    } types[] = {
        { "text/csv", TOKENFILE_CSV },
        { "application/pskc+xml", TOKENFILE_PSKC },
    };

    for (size_t i = 0; type && i < MFA_ARRAY_LEN(types); i++) {
        size_t len = strlen(types[i].name);

        if (strncasecmp(type, types[i].name, len) == 0 &&
            (type[len] == '\0' || type[len] == ';' || type[len] == ' '))
            return types[i].format;
    }
    return TOKENFILE_UNKNOWN;
}

/* Records a refusal for the loop thread to send; <detail> is taken. */
static void refuse(struct import_job *j, int status, const char *code, char *detail)
{
    j->status = status;
    j->code = code;
    free(j->detail);
    j->detail = detail;
}

/* Reads j->text into <set>; a refusal when the file is bad. Wipes the text and passphrase. */
static int read_tokens(struct import_job *j, struct token_set *set)
{
    char *err = NULL;
    int rc;

    if (j->format == TOKENFILE_PSKC && !j->passphrase &&
        tokenfile_pskc_encrypted(j->text, j->len)) {
        err_set(&err,
                "the file's seeds are encrypted: send its passphrase in the " PASSPHRASE_HEADER
                " request header");
        refuse(j, 400, "passphrase_required", err);
        rc = -1;
    } else {
        if (j->format == TOKENFILE_CSV)
            rc = tokenfile_read_csv(j->text, j->len, set, &err);
        else
            rc = tokenfile_read_pskc(j->text, j->len, j->passphrase, set, &err);
        if (rc < 0)
            refuse(j, 400, rc == TOKENFILE_WRONG_PASSPHRASE ? "wrong_passphrase" : "bad_file", err);
    }
    secret_wipe(j->text, j->len);
    free(j->text);
    j->text = NULL;
    secret_wipe_str(j->passphrase);
    free(j->passphrase);
    j->passphrase = NULL;
    return rc;
}

/* One token as a row of the statement's $1, its seed sealed bound to its serial. */
static json_t *token_row(const struct keyring *kr, const struct token_rec *t, size_t i, char **err)
{
    char *sealed = NULL;
    json_t *row;

    if (seal_encrypt(kr, t->seed, t->seed_len, t->serial, &sealed, err) < 0)
        return NULL;
    row = json_pack("{s:I, s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:s?}", "n", (json_int_t)i, "serial",
                    t->serial, "kind", t->kind == TOKEN_HOTP ? "hotp" : "totp", "algorithm",
                    t->algorithm, "digits", t->digits, "period",
                    t->kind == TOKEN_TOTP ? t->period : 30, "counter",
                    (json_int_t)(t->kind == TOKEN_HOTP ? t->counter : 0), "seed_sealed", sealed,
                    "username", t->user[0] ? t->user : NULL);
    free(sealed);
    if (!row)
        err_set(err, "out of memory");
    return row;
}

/* On a worker thread: reads the file and seals every seed into j->rows. */
static void import_work(void *arg)
{
    struct import_job *j = arg;
    struct token_set set = { 0 };
    json_t *rows = json_array();
    char *err = NULL;

    j->serials = json_array();
    if (!rows || !j->serials) {
        refuse(j, 500, "internal", strdup("out of memory"));
        goto done;
    }
    if (read_tokens(j, &set) < 0)
        goto done;
    for (size_t i = 0; i < set.n; i++) {
        const struct token_rec *t = &set.v[i];
        json_t *row;

        /* tokenrec_check() in the readers guarantees UTF-8 text and the bigint range */
        row = token_row(&j->n->keys, t, i, &err);
        if (!row) {
            refuse(j, 500, "internal", err);
            goto done;
        }
        if (json_array_append_new(rows, row) < 0 ||
            json_array_append_new(j->serials, json_string(t->serial)) < 0) {
            refuse(j, 500, "internal", strdup("out of memory"));
            goto done;
        }
    }
    j->ntokens = set.n;
    j->rows = json_dumps(rows, JSON_COMPACT);
    if (!j->rows)
        refuse(j, 500, "internal", strdup("out of memory"));
done:
    token_set_free(&set); /* wipes the seeds */
    json_decref(rows);
}

/* {"error", "detail", <key>: <names>} with <status>; <names> is taken. */
static void reply_refusal(struct evhttp_request *req, int status, const char *code,
                          const char *detail, const char *key, json_t *names)
{
    json_t *body = json_pack("{s:s, s:s, s:o}", "error", code, "detail", detail, key, names);

    http_reply_json(req, status, body);
}

static void reply_db_error(struct import_job *j, const char *err)
{
    char state[6];

    if (pgconn_err_sqlstate(err, state) && strcmp(state, "23505") == 0) {
        http_reply_error(j->req, 409, "conflict",
                         "a serial of the file was stored meanwhile; nothing was imported");
    } else if (pgconn_err_sqlstate(err, state) && strcmp(state, "23503") == 0) {
        http_reply_error(j->req, 422, "unknown_users",
                         "a user of the file was deleted meanwhile; nothing was imported");
    } else if (pgconn_err_sqlstate(err, state) &&
               (strcmp(state, "23514") == 0 || strncmp(state, "22", 2) == 0)) {
        log_warn("db.rejected what=token.import err=%s", err);
        http_reply_error(j->req, 400, "bad_request",
                         "the database refused a value (SQLSTATE %s); see the node's log", state);
    } else {
        node_reply_db_error(j->req, "token.import", err);
    }
}

static json_t *column_json(const PGresult *res, int col)
{
    json_t *v = json_loads(PQgetvalue(res, 0, col), JSON_DECODE_ANY, NULL);

    return v ? v : json_array();
}

static void import_done(void *arg, const PGresult *res, const char *err)
{
    struct import_job *j = arg;
    json_t *dups, *missing;
    char names[512], *detail = NULL;
    long long imported, assigned;

    if (err) {
        reply_db_error(j, err);
        goto done;
    }
    dups = column_json(res, 0);
    missing = column_json(res, 1);
    imported = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    assigned = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    if (json_array_size(dups) > 0) {
        strlist_join(dups, NAMES_SHOWN, true, names, sizeof(names));
        err_set(&detail, "%zu serial%s in the cluster already: %s; nothing was imported",
                json_array_size(dups), json_array_size(dups) == 1 ? " is" : "s are", names);
        json_decref(missing);
        reply_refusal(j->req, 409, "conflict", detail, "serials", dups);
    } else if (json_array_size(missing) > 0) {
        strlist_join(missing, NAMES_SHOWN, true, names, sizeof(names));
        err_set(&detail, "no such user%s: %s; nothing was imported",
                json_array_size(missing) == 1 ? "" : "s", names);
        json_decref(dups);
        reply_refusal(j->req, 422, "unknown_users", detail, "users", missing);
    } else {
        json_decref(dups);
        json_decref(missing);
        log_notice("token.imported actor=%s format=%s imported=%lld assigned=%lld", j->actor,
                   format_name(j->format), imported, assigned);
        http_reply_json(j->req, 201,
                        json_pack("{s:I, s:I, s:O, s:o}", "imported", (json_int_t)imported,
                                  "assigned", (json_int_t)assigned, "serials", j->serials,
                                  "method_mismatch", column_json(res, 4)));
    }
done:
    free(detail);
    job_free(j);
}

/* Back on the loop thread: the refusal, or the statement. */
static void import_parsed(void *arg)
{
    static const char sql[] =
        "WITH r AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(n int, serial text,"
        "  kind text, algorithm text, digits int, period int, counter bigint,"
        "  seed_sealed text, username text)),"
        " u AS (SELECT id, username, method FROM users WHERE lower(username) IN"
        "  (SELECT lower(username) FROM r WHERE username IS NOT NULL) FOR KEY SHARE),"
        " dup AS (SELECT serial FROM oath_tokens WHERE serial IN (SELECT serial FROM r)),"
        " missing AS (SELECT min(r.username) AS username FROM r WHERE r.username IS NOT NULL"
        "  AND NOT EXISTS (SELECT 1 FROM u WHERE lower(u.username) = lower(r.username))"
        "  GROUP BY lower(r.username)),"
        " t AS (INSERT INTO oath_tokens (serial, kind, algorithm, digits, period, counter,"
        "  seed_sealed, user_id)"
        "  SELECT r.serial, r.kind, r.algorithm, r.digits, r.period, r.counter, r.seed_sealed,"
        "   (SELECT u.id FROM u WHERE lower(u.username) = lower(r.username)) FROM r"
        "  WHERE NOT EXISTS (SELECT 1 FROM dup) AND NOT EXISTS (SELECT 1 FROM missing)"
        "  ORDER BY r.n RETURNING serial, kind, user_id),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $2, $3, 'token.import', t.serial, jsonb_build_object('user', u.username,"
        "   'kind', t.kind, 'format', $4::text) FROM t LEFT JOIN u ON u.id = t.user_id)"
        " SELECT (SELECT coalesce(jsonb_agg(serial ORDER BY serial), '[]') FROM dup),"
        "  (SELECT coalesce(jsonb_agg(username ORDER BY username), '[]') FROM missing),"
        "  (SELECT count(*) FROM t), (SELECT count(user_id) FROM t),"
        "  (SELECT coalesce(jsonb_agg(DISTINCT u.username), '[]') FROM t JOIN u"
        "   ON u.id = t.user_id WHERE u.method <> t.kind)";
    struct import_job *j = arg;
    const char *params[4];

    imports_running--;
    if (!j->n->http) {
        /* Shutting down (main.c frees the pool last): the request is gone. */
        job_free(j);
        return;
    }
    if (j->status == 500) {
        /* Ours, not the file's (no memory, no seal key): the log says which. */
        log_error("token.import_failed actor=%s err=%s", j->actor,
                  j->detail ? j->detail : "out of memory");
        http_reply_error(j->req, 500, "internal", "the import failed; see the node's log");
        job_free(j);
        return;
    }
    if (j->status) {
        http_reply_error(j->req, j->status, j->code, "%s",
                         j->detail ? j->detail : "the file cannot be read");
        job_free(j);
        return;
    }
    if (j->ntokens == 0) {
        http_reply_json(j->req, 201,
                        json_pack("{s:i, s:i, s:[], s:[]}", "imported", 0, "assigned", 0, "serials",
                                  "method_mismatch"));
        job_free(j);
        return;
    }
    params[0] = j->rows;
    params[1] = j->actor;
    params[2] = j->n->id;
    params[3] = format_name(j->format);
    if (!node_admin_write(j->n, j->req, "token.import", sql, 4, params, import_done, j))
        job_free(j);
}

/*
 * Copies the passphrase header of <req> (if any, non-empty) into j->passphrase
 * and wipes it in the request. Returns 0, or -1 after replying.
 */
static int take_passphrase(struct import_job *j, struct evhttp_request *req)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), PASSPHRASE_HEADER);
    size_t len = v ? strlen(v) : 0;

    if (len == 0)
        return 0;
    if (len <= PASSPHRASE_MAX)
        j->passphrase = strdup(v);
    secret_wipe_str(v);
    if (len > PASSPHRASE_MAX) {
        http_reply_error(req, 400, "bad_request", "the " PASSPHRASE_HEADER " is over %d bytes",
                         PASSPHRASE_MAX);
        return -1;
    }
    if (!j->passphrase) {
        http_reply_error(req, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

/* Moves the body of <req> into j->text (NUL-terminated), wiping the request's copy. */
static int take_body(struct import_job *j, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    unsigned char *body = len ? evbuffer_pullup(in, (ev_ssize_t)len) : NULL;

    j->text = malloc(len + 1);
    if (j->text && len)
        memcpy(j->text, body, len);
    if (len)
        secret_wipe(body, len); /* seeds, perhaps in clear */
    if (!j->text) {
        http_reply_error(req, 500, "internal", "out of memory");
        return -1;
    }
    j->text[len] = '\0';
    j->len = len;
    return 0;
}

void tokens_handle_import(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct import_job *j = calloc(1, sizeof(*j));

    if (!j) {
        secret_wipe_str(
            evhttp_find_header(evhttp_request_get_input_headers(req), PASSPHRASE_HEADER));
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->n = n;
    j->req = req;
    /* First, so that no answer leaves the passphrase in the request. */
    if (take_passphrase(j, req) < 0)
        goto fail;
    if (!node_authorize(n, req, APIKEY_ADMIN, j->actor, sizeof(j->actor)))
        goto fail;
    j->format = format_of(type);
    if (j->format == TOKENFILE_UNKNOWN) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send the file as Content-Type: text/csv (a CSV seed file) or "
                         "application/pskc+xml (PSKC)");
        goto fail;
    }
    if (imports_running > 0) {
        http_reply_error(req, 429, "busy",
                         "another token import is running on this node; retry when it is done");
        goto fail;
    }
    if (take_body(j, req) < 0)
        goto fail;
    if (worker_submit(n->workers, import_work, import_parsed, j) < 0) {
        http_reply_error(req, 500, "internal", "the import could not be queued");
        goto fail;
    }
    imports_running++;
    return;
fail:
    job_free(j);
}
