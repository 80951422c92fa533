/*
 * The users API: list, get, create, update, delete, disable and enable (see
 * users.h). The TOTP enrolment, the CSV import and the logs live in
 * users_totp.c, users_import.c and users_log.c.
 *
 * Every change is one statement on the primary, committed with remote_apply:
 * the change and its admin_audit row are written together or not at all, and
 * the answer comes once every synchronous standby shows it. A user is found
 * by its username whatever the case (the unique index is on lower(username)),
 * and shown with USERS_COLS: never the PIN hash, only has_pin. PINs are
 * hashed here (pin_hash, the cluster pepper) and wiped from the request; the
 * audit detail names the fields that changed, never a PIN.
 */
#include "users.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "node.h"
#include "secrets.h"
#include "users_priv.h"

/* Replies 400 with *err (a sentence naming the field) and frees it. */
static void reply_invalid(struct evhttp_request *req, char **err)
{
    http_reply_error(req, 400, "bad_request", "%s", *err ? *err : "invalid request");
    mfa_free(*err);
}

static void list_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;
    json_t *users, *next = json_null();
    int n;

    if (err) {
        users_reply_read_error(j->req, "user.list", err);
        goto done;
    }
    n = PQntuples(res);
    users = json_array();
    for (int i = 0; i < n && i < j->limit; i++)
        json_array_append_new(users, users_row_json(res, i, NULL));
    /* One row more than the page was asked for: there is a next page. */
    if (n > j->limit)
        next = json_string(PQgetvalue(res, j->limit - 1, PQfnumber(res, "username")));
    http_reply_json(j->req, 200, json_pack("{s:o, s:o}", "users", users, "next", next));
done:
    free(j);
}

void users_handle_list(struct evhttp_request *req, void *arg)
{
    static const char sql[] = "SELECT " USERS_COLS " FROM users u"
                              " WHERE $1::text IS NULL OR lower(u.username) > lower($1)"
                              " ORDER BY lower(u.username) LIMIT $2::integer";
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX], after[USERS_USERNAME_MAX], limit[16], *err = NULL;
    const char *params[2];
    struct users_job *j;
    int lim, rc;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    lim = users_limit_param(req);
    if (lim < 0)
        return;
    rc = users_query_param(req, "after", after, sizeof(after));
    if (rc < 0)
        return;
    if (rc == 1 && users_check_username("after", after, &err) < 0) {
        reply_invalid(req, &err);
        return;
    }
    j = users_job_new(n, req);
    if (!j)
        return;
    j->limit = lim;
    snprintf(limit, sizeof(limit), "%d", lim + 1);
    params[0] = rc == 1 ? after : NULL;
    params[1] = limit;
    if (users_read(n, req, "user.list", sql, 2, params, list_done, j) < 0)
        free(j);
}

static void get_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;

    if (err)
        users_reply_read_error(j->req, "user.get", err);
    else if (PQntuples(res) == 0)
        http_reply_error(j->req, 404, "not_found", "no such user");
    else
        http_reply_json(j->req, 200, users_row_json(res, 0, NULL));
    free(j);
}

void users_handle_get(struct evhttp_request *req, void *arg)
{
    static const char sql[] = "SELECT " USERS_COLS " FROM users u"
                              " WHERE lower(u.username) = lower($1)";
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX];
    const char *params[1];
    struct users_job *j;

    j = users_job_for_path(n, req, actor, NULL, 0);
    if (!j)
        return;
    params[0] = j->username;
    if (users_read(n, req, "user.get", sql, 1, params, get_done, j) < 0)
        goto fail;
    return;
fail:
    free(j);
}

/* The audit detail of a create or an update: the fields given, no values of secrets. */
static char *audit_detail(const struct users_fields *f, bool create)
{
    json_t *d = json_object(), *fields = json_array();
    char *text;

    if (f->display_name)
        json_array_append_new(fields, json_string("display_name"));
    if (f->email)
        json_array_append_new(fields, json_string("email"));
    if (f->phone)
        json_array_append_new(fields, json_string("phone"));
    if (f->method)
        json_array_append_new(fields, json_string("method"));
    if (f->pin_given)
        json_array_append_new(fields, json_string("pin"));
    if (f->disabled >= 0)
        json_array_append_new(fields, json_string("disabled"));
    json_object_set_new(d, "fields", fields);
    if (f->method)
        json_object_set_new(d, "method", json_string(f->method));
    if (create)
        json_object_set_new(d, "has_pin", json_boolean(f->pin != NULL));
    else if (f->pin_given)
        json_object_set_new(d, "pin", json_string(f->pin ? "set" : "removed"));
    if (f->disabled >= 0)
        json_object_set_new(d, "disabled", json_boolean(f->disabled));
    text = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return text;
}

static void create_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;

    if (err) {
        users_reply_write_error(j->req, "user.create", err);
    } else {
        log_notice("user.created username=%s", j->username);
        http_reply_json(j->req, 201, users_row_json(res, 0, NULL));
    }
    free(j);
}

/*
 * Reads the request's user fields (all of them for a create), hashes a new
 * PIN into <hash> and writes the audit detail into *detail (malloc'd).
 * Returns 0, or -1 after replying; *body is then the caller's to release
 * either way, and f->pin to wipe.
 */
static int read_fields(struct node *n, struct evhttp_request *req, bool create, json_t **body,
                       struct users_fields *f, char hash[PIN_HASH_MAX], char **detail)
{
    char *err = NULL;

    *body = http_read_json(req);
    http_wipe_body(req);
    if (!*body)
        return -1;
    if (users_fields_from_json(*body, create, f, &err) < 0) {
        reply_invalid(req, &err);
        return -1;
    }
    if (f->pin && pin_hash(&n->keys, f->pin, hash, PIN_HASH_MAX, &err) < 0) {
        log_error("user.pin_hash_failed err=%s", err);
        free(err);
        http_reply_error(req, 500, "internal", "cannot hash the PIN");
        return -1;
    }
    *detail = audit_detail(f, create);
    if (!*detail) {
        http_reply_error(req, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

void users_handle_create(struct evhttp_request *req, void *arg)
{
    static const char sql[] =
        "WITH u AS (INSERT INTO users (username, display_name, email, phone, method, pin_hash)"
        "  VALUES ($1, $2, $3, $4, $5, $6) RETURNING *),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $7, $8, 'user.create', u.username, $9::jsonb FROM u)"
        " SELECT " USERS_COLS " FROM u";
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX], hash[PIN_HASH_MAX], *detail = NULL;
    const char *params[9];
    struct users_fields f = { .disabled = -1 };
    struct users_job *j = NULL;
    json_t *body = NULL;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    if (read_fields(n, req, true, &body, &f, hash, &detail) < 0 || !(j = users_job_new(n, req)))
        goto done;
    snprintf(j->username, sizeof(j->username), "%s", f.username);
    params[0] = f.username;
    params[1] = f.display_name ? f.display_name : "";
    params[2] = f.email ? f.email : "";
    params[3] = f.phone ? f.phone : "";
    params[4] = f.method;
    params[5] = f.pin ? hash : NULL;
    params[6] = actor;
    params[7] = n->id;
    params[8] = detail;
    if (users_write(n, req, "user.create", sql, 9, params, create_done, j) == 0)
        j = NULL;
done:
    secret_wipe_str(f.pin);
    secret_wipe(hash, sizeof(hash));
    free(detail);
    free(j);
    json_decref(body);
}

static void update_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;

    if (err)
        users_reply_write_error(j->req, "user.update", err);
    else if (strcmp(PQgetvalue(res, 0, 0), "0") == 0)
        http_reply_error(j->req, 404, "not_found", "no such user");
    else if (PQgetisnull(res, 0, 1))
        /* found, but the update would leave method sms without a phone */
        http_reply_error(j->req, 400, "bad_request", "phone: required when method is sms");
    else
        http_reply_json(j->req, 200, users_row_json(res, 0, "found"));
    free(j);
}

void users_handle_update(struct evhttp_request *req, void *arg)
{
    static const char sql[] =
        "WITH cur AS (SELECT id, phone, method FROM users"
        "  WHERE lower(username) = lower($1) FOR UPDATE),"
        " u AS (UPDATE users SET display_name = COALESCE($2, users.display_name),"
        "  email = COALESCE($3, users.email), phone = COALESCE($4, users.phone),"
        "  method = COALESCE($5, users.method),"
        "  pin_hash = CASE WHEN $6::boolean THEN $7 ELSE users.pin_hash END,"
        "  disabled = COALESCE($8::boolean, users.disabled), updated_at = now()"
        "  FROM cur WHERE users.id = cur.id"
        "  AND (COALESCE($5, cur.method) <> 'sms' OR COALESCE($4, cur.phone) <> '')"
        "  RETURNING users.*),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $9, $10, 'user.update', u.username, $11::jsonb FROM u)"
        " SELECT (SELECT count(*) FROM cur) AS found, " USERS_COLS
        " FROM (SELECT 1) AS one LEFT JOIN u ON true";
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX], hash[PIN_HASH_MAX], *detail = NULL;
    const char *params[11];
    struct users_fields f = { .disabled = -1 };
    struct users_job *j;
    json_t *body = NULL;

    j = users_job_for_path(n, req, actor, NULL, 0);
    if (!j)
        return;
    if (read_fields(n, req, false, &body, &f, hash, &detail) < 0)
        goto done;
    params[0] = j->username;
    params[1] = f.display_name;
    params[2] = f.email;
    params[3] = f.phone;
    params[4] = f.method;
    params[5] = f.pin_given ? "t" : "f";
    params[6] = f.pin ? hash : NULL;
    params[7] = f.disabled < 0 ? NULL : f.disabled ? "t" : "f";
    params[8] = actor;
    params[9] = n->id;
    params[10] = detail;
    if (users_write(n, req, "user.update", sql, 11, params, update_done, j) == 0)
        j = NULL;
done:
    secret_wipe_str(f.pin);
    secret_wipe(hash, sizeof(hash));
    free(detail);
    free(j);
    json_decref(body);
}

static void delete_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;

    if (err) {
        users_reply_write_error(j->req, "user.delete", err);
    } else if (PQntuples(res) == 0) {
        http_reply_error(j->req, 404, "not_found", "no such user");
    } else {
        log_notice("user.deleted username=%s", PQgetvalue(res, 0, 0));
        http_reply_json(j->req, 200,
                        json_pack("{s:s, s:b}", "username", PQgetvalue(res, 0, 0), "deleted", 1));
    }
    free(j);
}

void users_handle_delete(struct evhttp_request *req, void *arg)
{
    /*
     * The user's soft TOTP tokens (enrolled here, serial "totp-...") go with
     * it; other tokens (imported hardware) are unassigned by the foreign key.
     */
    static const char sql[] =
        "WITH u AS (DELETE FROM users WHERE lower(username) = lower($1) RETURNING id, username),"
        " t AS (DELETE FROM oath_tokens WHERE user_id IN (SELECT id FROM u)"
        "  AND serial LIKE 'totp-%' RETURNING serial),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $2, $3, 'user.delete', u.username,"
        "   jsonb_build_object('tokens_deleted', (SELECT count(*) FROM t)) FROM u)"
        " SELECT username FROM u";
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX];
    const char *params[3];
    struct users_job *j;

    j = users_job_for_path(n, req, actor, NULL, 0);
    if (!j)
        return;
    params[0] = j->username;
    params[1] = actor;
    params[2] = n->id;
    if (users_write(n, req, "user.delete", sql, 3, params, delete_done, j) < 0)
        goto fail;
    return;
fail:
    free(j);
}

static void disable_done(void *arg, const PGresult *res, const char *err)
{
    struct users_job *j = arg;

    if (err)
        users_reply_write_error(j->req, "user.disable", err);
    else if (PQntuples(res) == 0)
        http_reply_error(j->req, 404, "not_found", "no such user");
    else
        http_reply_json(j->req, 200, users_row_json(res, 0, NULL));
    free(j);
}

/* POST .../disable and .../enable: sets users.disabled to <disabled>. */
static void set_disabled(struct node *n, struct evhttp_request *req, const char *actor,
                         struct users_job *j, bool disabled)
{
    static const char sql[] =
        "WITH u AS (UPDATE users SET disabled = $2::boolean, updated_at = now()"
        "  WHERE lower(username) = lower($1) RETURNING *),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target)"
        "  SELECT $3, $4, $5, u.username FROM u)"
        " SELECT " USERS_COLS " FROM u";
    const char *params[5];

    params[0] = j->username;
    params[1] = disabled ? "t" : "f";
    params[2] = actor;
    params[3] = n->id;
    params[4] = disabled ? "user.disable" : "user.enable";
    if (users_write(n, req, params[4], sql, 5, params, disable_done, j) < 0)
        free(j);
}

void users_handle_action(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    char actor[USERS_ACTOR_MAX], action[16];
    struct users_job *j;

    j = users_job_for_path(n, req, actor, action, sizeof(action));
    if (!j)
        return;
    if (strcmp(action, "disable") == 0 || strcmp(action, "enable") == 0) {
        set_disabled(n, req, actor, j, strcmp(action, "disable") == 0);
    } else if (strcmp(action, "totp") == 0) {
        users_totp_enrol(n, req, actor, j);
    } else if (*action) {
        http_reply_error(req, 404, "not_found", "no such action; use disable, enable or totp");
        free(j);
    } else {
        http_reply_error(req, 405, "method_not_allowed", "use PATCH to change a user");
        free(j);
    }
}
