/*
 * POST /api/v1/users/import: users from a CSV file (text/csv, RFC 4180, see
 * csv.h), with a report per row.
 *
 * The first record names the columns, in any order: username and method are
 * required, display_name, email, phone, pin and disabled (true or false,
 * empty: false; what mfactl export writes) optional; any other column,
 * or one named twice, rejects the file. Then at most IMPORT_ROWS_MAX rows
 * (the body limit of the HTTP server applies too). A file that is not CSV
 * (an unterminated quote, ...) is rejected whole, and nothing is written.
 *
 * Every row is checked here with the rules of a create (users_fields_check);
 * a row that breaks one is reported "invalid" with the reason and never
 * sent. The valid rows go to the primary in ONE statement: an INSERT ...
 * SELECT from json_to_recordset ... ON CONFLICT DO NOTHING RETURNING
 * username, with an admin_audit row per created user in the same statement
 * (remote_apply). A returned username is "created"; a valid row whose
 * username is not returned already existed (in the table, or earlier in the
 * file, any case): "exists". Either every row of the statement is written or
 * none is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "csv.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "secrets.h"
#include "users.h"
#include "users_priv.h"

#define IMPORT_ROWS_MAX   10000
#define IMPORT_FIELDS_MAX 64   /* more fields in one record reject the file */
#define IMPORT_FIELD_MAX  1024 /* bytes: 256 characters of up to 4 bytes */

enum column {
    COL_USERNAME = 0,
    COL_DISPLAY_NAME,
    COL_EMAIL,
    COL_PHONE,
    COL_METHOD,
    COL_PIN,
    COL_DISABLED,
    COL_COUNT,
};

static const char *const column_names[] = {
    [COL_USERNAME] = "username", [COL_DISPLAY_NAME] = "display_name",
    [COL_EMAIL] = "email",       [COL_PHONE] = "phone",
    [COL_METHOD] = "method",     [COL_PIN] = "pin",
    [COL_DISABLED] = "disabled",
};

enum row_result {
    ROW_INVALID = 0,
    ROW_PENDING, /* valid, sent to the database */
    ROW_CREATED,
    ROW_EXISTS,
};

static const char *const result_names[] = {
    [ROW_INVALID] = "invalid",
    [ROW_PENDING] = "pending",
    [ROW_CREATED] = "created",
    [ROW_EXISTS] = "exists",
};

struct import_row {
    size_t line;
    char *username;
    char *detail; /* why a row is invalid */
    enum row_result result;
};

struct import_job {
    struct node *n;
    struct evhttp_request *req;
    struct import_row *rows;
    size_t nrows;
    int pos[COL_COUNT]; /* field index of each column, -1: absent */
    size_t ncols;       /* fields of the header */
};

static void job_free(struct import_job *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->nrows; i++) {
        free(j->rows[i].username);
        free(j->rows[i].detail);
    }
    free(j->rows);
    free(j);
}

/* Maps the header record's names to columns. Returns 0, or -1 with *err. */
static int read_header(struct import_job *j, const struct csv_record *rec, char **err)
{
    for (size_t c = 0; c < COL_COUNT; c++)
        j->pos[c] = -1;
    for (size_t i = 0; i < rec->nfields; i++) {
        const char *name = rec->fields[i];
        size_t c;

        for (c = 0; c < COL_COUNT && strcasecmp(name, column_names[c]) != 0; c++)
            ;
        if (c == COL_COUNT)
            return err_set(err,
                           "line %zu: unknown column \"%.64s\"; the columns are username, "
                           "display_name, email, phone, method, pin and disabled",
                           rec->line, name);
        if (j->pos[c] >= 0)
            return err_set(err, "line %zu: column %s is named twice", rec->line, column_names[c]);
        j->pos[c] = (int)i;
    }
    if (j->pos[COL_USERNAME] < 0 || j->pos[COL_METHOD] < 0)
        return err_set(err,
                       "line %zu: the first line must name the columns, at least username "
                       "and method",
                       rec->line);
    j->ncols = rec->nfields;
    return 0;
}

static const char *field(const struct import_job *j, const struct csv_record *rec, enum column c)
{
    return j->pos[c] < 0 ? "" : rec->fields[j->pos[c]];
}

/* The disabled column: "true" or "false" (any case), empty or absent false. */
static int parse_disabled(const char *v, int *out, char **err)
{
    if (!*v || strcasecmp(v, "false") == 0)
        *out = 0;
    else if (strcasecmp(v, "true") == 0)
        *out = 1;
    else
        return err_set(err, "disabled: must be true or false, not \"%.16s\"", v);
    return 0;
}

/*
 * Checks one data record; a valid one is appended to <batch> (with its PIN
 * hashed). Fills <row>. Returns 0, or -1 when out of memory.
 */
static int read_row(struct import_job *j, const struct csv_record *rec, struct import_row *row,
                    json_t *batch)
{
    char hash[PIN_HASH_MAX] = "", *err = NULL;
    struct users_fields f = { .disabled = -1 };
    json_t *o;

    row->line = rec->line;
    row->username = strdup(
        rec->nfields > (size_t)j->pos[COL_USERNAME] ? rec->fields[j->pos[COL_USERNAME]] : "");
    if (!row->username)
        return -1;
    if (rec->nfields != j->ncols) {
        err_set(&err, "the line has %zu fields, the header %zu", rec->nfields, j->ncols);
        goto invalid;
    }
    f.username = field(j, rec, COL_USERNAME);
    f.display_name = field(j, rec, COL_DISPLAY_NAME);
    f.email = field(j, rec, COL_EMAIL);
    f.phone = field(j, rec, COL_PHONE);
    f.method = field(j, rec, COL_METHOD);
    f.pin = *field(j, rec, COL_PIN) ? field(j, rec, COL_PIN) : NULL;
    if (parse_disabled(field(j, rec, COL_DISABLED), &f.disabled, &err) < 0)
        goto invalid;
    if (users_fields_check(&f, true, &err) < 0)
        goto invalid;
    if (f.pin && pin_hash(&j->n->keys, f.pin, hash, sizeof(hash), &err) < 0)
        goto invalid;
    o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s?, s:b}", "line", (json_int_t)rec->line,
                  "username", f.username, "display_name", f.display_name, "email", f.email, "phone",
                  f.phone, "method", f.method, "pin_hash", f.pin ? hash : NULL, "disabled",
                  f.disabled == 1);
    secret_wipe(hash, sizeof(hash));
    if (!o || json_array_append_new(batch, o) < 0)
        return -1;
    row->result = ROW_PENDING;
    return 0;
invalid:
    row->result = ROW_INVALID;
    row->detail = err;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void reply_report(struct import_job *j)
{
    json_t *rows = json_array();
    size_t counts[4] = { 0 };

    for (size_t i = 0; i < j->nrows; i++) {
        const struct import_row *r = &j->rows[i];
        json_t *name = json_string(r->username);
        json_t *o = json_pack("{s:I, s:o, s:s}", "line", (json_int_t)r->line, "username",
                              name ? name : json_null(), "result", result_names[r->result]);

        counts[r->result]++;
        if (o && r->detail)
            json_object_set_new(o, "detail", json_string(r->detail));
        json_array_append_new(rows, o);
    }
    http_reply_json(j->req, 200,
                    json_pack("{s:I, s:I, s:I, s:o}", "created", (json_int_t)counts[ROW_CREATED],
                              "skipped", (json_int_t)counts[ROW_EXISTS], "failed",
                              (json_int_t)counts[ROW_INVALID], "rows", rows));
}

static void import_done(void *arg, const PGresult *res, const char *err)
{
    struct import_job *j = arg;
    const char **created = NULL;
    bool *used = NULL;
    size_t n;

    if (err) {
        users_reply_write_error(j->req, "user.import", err);
        goto done;
    }
    n = (size_t)PQntuples(res);
    created = calloc(n + 1, sizeof(*created));
    used = calloc(n + 1, sizeof(*used));
    if (!created || !used) {
        /* Written, but we cannot say which: the audit log can. */
        http_reply_error(j->req, 500, "internal", "out of memory; see the audit log");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        created[i] = PQgetvalue(res, (int)i, 0);
    qsort(created, n, sizeof(*created), cmp_str);
    /* The first row of a username in the file is the one that was inserted. */
    for (size_t i = 0; i < j->nrows; i++) {
        struct import_row *r = &j->rows[i];
        const char **hit;

        if (r->result != ROW_PENDING)
            continue;
        hit = n ? bsearch(&r->username, created, n, sizeof(*created), cmp_str) : NULL;
        if (hit && !used[hit - created]) {
            used[hit - created] = true;
            r->result = ROW_CREATED;
        } else {
            r->result = ROW_EXISTS;
        }
    }
    log_notice("user.imported created=%zu rows=%zu", n, j->nrows);
    reply_report(j);
done:
    free(created);
    free(used);
    job_free(j);
}

/* Reads the whole CSV body into j->rows and <batch>. Returns 0, or -1 after replying. */
static int read_csv(struct import_job *j, const char *body, size_t len, json_t *batch)
{
    static const struct csv_limits lim = {
        .max_fields = IMPORT_FIELDS_MAX,
        .max_field_len = IMPORT_FIELD_MAX,
    };
    struct csv_reader *r = csv_reader_new(body, len, &lim, NULL);
    struct csv_record rec;
    char *err = NULL;
    int rc;

    if (!r || !(j->rows = calloc(IMPORT_ROWS_MAX, sizeof(*j->rows)))) {
        http_reply_error(j->req, 500, "internal", "out of memory");
        goto fail;
    }
    rc = csv_read(r, &rec, &err);
    if (rc == 0)
        err_set(&err, "the file is empty; its first line names the columns");
    if (rc <= 0 || read_header(j, &rec, &err) < 0)
        goto bad;
    while ((rc = csv_read(r, &rec, &err)) == 1) {
        if (j->nrows == IMPORT_ROWS_MAX) {
            err_set(&err, "line %zu: more than %d rows; split the file", rec.line, IMPORT_ROWS_MAX);
            goto bad;
        }
        if (read_row(j, &rec, &j->rows[j->nrows++], batch) < 0) {
            http_reply_error(j->req, 500, "internal", "out of memory");
            goto fail;
        }
    }
    if (rc < 0)
        goto bad;
    csv_reader_free(r);
    return 0;
bad:
    http_reply_error(j->req, 400, "bad_request", "%s; nothing was imported", err);
fail:
    free(err);
    csv_reader_free(r);
    return -1;
}

void users_handle_import(struct evhttp_request *req, void *arg)
{
    static const char sql[] =
        "WITH r AS (SELECT * FROM json_to_recordset($1::json) AS r(line integer, username text,"
        "  display_name text, email text, phone text, method text, pin_hash text,"
        "  disabled boolean)),"
        " u AS (INSERT INTO users (username, display_name, email, phone, method, pin_hash,"
        "  disabled)"
        "  SELECT username, display_name, email, phone, method, pin_hash, disabled FROM r"
        "  ORDER BY line ON CONFLICT DO NOTHING"
        "  RETURNING username, method, pin_hash IS NOT NULL AS has_pin, disabled),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $2, $3, 'user.import', u.username,"
        "   jsonb_build_object('method', u.method, 'has_pin', u.has_pin, 'disabled', u.disabled)"
        "  FROM u)"
        " SELECT username FROM u";
    struct node *n = arg;
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char actor[USERS_ACTOR_MAX], *text = NULL;
    const char *params[3];
    struct import_job *j = NULL;
    json_t *batch = NULL;
    char *body;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    if (!type || strncasecmp(type, "text/csv", 8) != 0 ||
        (type[8] != '\0' && type[8] != ';' && type[8] != ' ')) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send the file as Content-Type: "
                         "text/csv");
        return;
    }
    body = (char *)evbuffer_pullup(in, (ev_ssize_t)len);
    j = calloc(1, sizeof(*j));
    batch = json_array();
    if (!j || !batch) {
        http_reply_error(req, 500, "internal", "out of memory");
        goto done;
    }
    j->n = n;
    j->req = req;
    if (read_csv(j, body, len, batch) < 0)
        goto done;
    if (json_array_size(batch) == 0) {
        reply_report(j); /* nothing to write */
        goto done;
    }
    text = json_dumps(batch, JSON_COMPACT);
    if (!text) {
        http_reply_error(req, 500, "internal", "out of memory");
        goto done;
    }
    params[0] = text;
    params[1] = actor;
    params[2] = n->id;
    if (users_write(n, req, "user.import", sql, 3, params, import_done, j) == 0)
        j = NULL;
done:
    if (len)
        secret_wipe(body, len); /* the PINs in clear */
    if (text)
        secret_wipe(text, strlen(text));
    free(text);
    json_decref(batch);
    job_free(j);
}
