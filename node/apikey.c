/*
 * API keys; see apikey.h.
 *
 * The cache is an array of the active keys' SHA-256 (hex), sorted for
 * bsearch, replaced whole on every refresh. Only hashes are kept: the key
 * itself exists in memory just long enough to answer the request that made
 * it, and is wiped.
 */
#include "apikey.h"
#include "apikey_priv.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "secrets.h"

struct key_row {
    char hash[65];
    char name[APIKEY_NAME_MAX + 1];
    enum apikey_scope scope;
};

struct apikeys {
    struct nodedb *db;
    struct key_row *rows; /* sorted by hash */
    size_t n;
    bool loaded, loading;
    unsigned generation; /* bumped by every change made through this node */
    unsigned asked_at;   /* the generation when the refresh in flight was sent */
};

static const char *const scope_names[] = {
    [APIKEY_AUTH] = "auth",
    [APIKEY_ADMIN] = "admin",
};

const char *apikey_scope_name(enum apikey_scope scope)
{
    return (unsigned)scope < MFA_ARRAY_LEN(scope_names) ? scope_names[scope] : "?";
}

static int scope_parse(const char *s, enum apikey_scope *out)
{
    for (size_t i = 0; i < MFA_ARRAY_LEN(scope_names); i++) {
        if (s && strcmp(s, scope_names[i]) == 0) {
            *out = (enum apikey_scope)i;
            return 0;
        }
    }
    return -1;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct key_row *)a)->hash, ((const struct key_row *)b)->hash);
}

struct apikeys *apikeys_new(struct nodedb *db, char **err)
{
    struct apikeys *k = calloc(1, sizeof(*k));

    if (!k) {
        err_set(err, "out of memory");
        return NULL;
    }
    k->db = db;
    apikeys_tick(k);
    return k;
}

void apikeys_free(struct apikeys *k)
{
    if (!k)
        return;
    free(k->rows);
    free(k);
}

bool apikeys_loaded(const struct apikeys *k)
{
    return k->loaded;
}

static void refresh_done(void *arg, const PGresult *res, const char *err)
{
    struct apikeys *k = arg;
    int n;
    struct key_row *rows;

    k->loading = false;
    if (k->asked_at != k->generation)
        return; /* a snapshot from before a change made here: the next one counts */
    if (err) {
        /* Keep the keys we have: the local database may be restarting. */
        log_warn("apikeys.refresh_failed err=%s", err);
        return;
    }
    n = PQntuples(res);
    rows = calloc((size_t)n + 1, sizeof(*rows));
    if (!rows)
        return;
    for (int i = 0; i < n; i++) {
        snprintf(rows[i].hash, sizeof(rows[i].hash), "%s", PQgetvalue(res, i, 0));
        snprintf(rows[i].name, sizeof(rows[i].name), "%s", PQgetvalue(res, i, 2));
        if (scope_parse(PQgetvalue(res, i, 1), &rows[i].scope) < 0)
            rows[i].scope = APIKEY_AUTH;
    }
    qsort(rows, (size_t)n, sizeof(*rows), row_cmp);
    free(k->rows);
    k->rows = rows;
    k->n = (size_t)n;
    k->loaded = true;
}

void apikeys_tick(struct apikeys *k)
{
    char *err = NULL;

    if (k->loading)
        return;
    if (nodedb_read(k->db, "SELECT key_hash, scope, name FROM api_keys WHERE revoked_at IS NULL", 0,
                    NULL, refresh_done, k, &err) < 0) {
        log_error("apikeys.refresh_failed err=%s", err);
        free(err);
        return;
    }
    k->loading = true;
    k->asked_at = k->generation;
}

int apikeys_check(const struct apikeys *k, const char *authorization, enum apikey_scope need,
                  char *name, size_t size)
{
    struct key_row probe;
    const struct key_row *row;
    const char *key;

    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 401;
    key = authorization + 7;
    if (strlen(key) >= APIKEY_MAX || !k->rows)
        return 401;
    apikey_hash(key, probe.hash);
    row = bsearch(&probe, k->rows, k->n, sizeof(*k->rows), row_cmp);
    if (!row)
        return 401;
    if (row->scope < need)
        return 403;
    snprintf(name, size, "%s", row->name);
    return 0;
}

/* Adds a key made on this node to the cache, so it works here at once. */
static void cache_add(struct apikeys *k, const char *hash, const char *name,
                      enum apikey_scope scope)
{
    struct key_row *rows = realloc(k->rows, (k->n + 1) * sizeof(*rows));

    if (!rows)
        return;
    k->rows = rows;
    memset(&rows[k->n], 0, sizeof(rows[k->n]));
    snprintf(rows[k->n].hash, sizeof(rows[k->n].hash), "%s", hash);
    snprintf(rows[k->n].name, sizeof(rows[k->n].name), "%s", name);
    rows[k->n].scope = scope;
    k->n++;
    k->generation++;
    qsort(rows, k->n, sizeof(*rows), row_cmp);
}

/* Drops the key with <hash> from the cache (revoked through this node). */
static void cache_remove(struct apikeys *k, const char *hash)
{
    struct key_row probe, *row;

    snprintf(probe.hash, sizeof(probe.hash), "%s", hash);
    row = bsearch(&probe, k->rows, k->n, sizeof(*k->rows), row_cmp);
    if (!row)
        return;
    memmove(row, row + 1, (size_t)(k->rows + k->n - (row + 1)) * sizeof(*row));
    k->n--;
    k->generation++;
}

/* A create, list or revoke waiting for the database. */
struct key_job {
    struct node *n;
    struct evhttp_request *req;
    char key[APIKEY_MAX];
    char hash[65];
    char name[APIKEY_NAME_MAX + 1];
    enum apikey_scope scope;
};

/* Allocates a job for <req>, or replies 500 and returns NULL. */
static struct key_job *job_new(struct node *n, struct evhttp_request *req)
{
    struct key_job *j = calloc(1, sizeof(*j));

    if (!j) {
        http_reply_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->n = n;
    j->req = req;
    return j;
}

static void job_free(struct key_job *j)
{
    secret_wipe(j->key, sizeof(j->key));
    free(j);
}

static void create_done(void *arg, const PGresult *res, const char *err)
{
    struct key_job *j = arg;
    json_t *out;

    if (err) {
        node_reply_db_error(j->req, "api_key.create", err);
    } else {
        out = nodedb_row_json(res, 0);
        json_object_set_new(out, "key", json_string(j->key));
        cache_add(j->n->apikeys, j->hash, j->name, j->scope);
        log_notice("api_key.created name=%s scope=%s", j->name, apikey_scope_name(j->scope));
        http_reply_json(j->req, 201, out);
    }
    job_free(j);
}

int apikey_body_create(json_t *body, char name[APIKEY_NAME_MAX + 1], enum apikey_scope *scope)
{
    json_t *v = json_object_get(body, "name");
    const char *s = json_string_value(v);

    /* A NUL inside would cut the name short: refused, as every other field does. */
    if (!s || !*s || strlen(s) > APIKEY_NAME_MAX || strlen(s) != json_string_length(v) ||
        scope_parse(json_string_value(json_object_get(body, "scope")), scope) < 0)
        return -1;
    snprintf(name, APIKEY_NAME_MAX + 1, "%s", s);
    return 0;
}

void apikeys_handle_create(struct evhttp_request *req, void *arg)
{
    static const char sql[] =
        "WITH k AS (INSERT INTO api_keys (name, scope, key_hash, prefix, created_by)"
        "  VALUES ($1, $2, $3, $4, $5) RETURNING id, name, scope, prefix, created_at),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $5, $6, 'api_key.create', k.name,"
        "         jsonb_build_object('id', k.id, 'scope', k.scope) FROM k)"
        " SELECT id, name, scope, prefix, created_at FROM k";
    struct node *n = arg;
    char actor[APIKEY_NAME_MAX + 1], prefix[13];
    const char *params[6];
    struct key_job *j;
    json_t *body;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    body = http_read_json(req);
    if (!body)
        return;
    j = job_new(n, req);
    if (!j) {
        json_decref(body);
        return;
    }
    if (apikey_body_create(body, j->name, &j->scope) < 0) {
        json_decref(body);
        job_free(j);
        http_reply_error(req, 400, "bad_request",
                         "name must be a string of 1 to 128 characters and scope \"auth\" or "
                         "\"admin\"");
        return;
    }
    json_decref(body);
    if (apikey_new(j->key, sizeof(j->key)) < 0) {
        job_free(j);
        http_reply_error(req, 500, "internal", "no random numbers");
        return;
    }
    apikey_hash(j->key, j->hash);
    snprintf(prefix, sizeof(prefix), "%.12s", j->key);
    params[0] = j->name;
    params[1] = apikey_scope_name(j->scope);
    params[2] = j->hash;
    params[3] = prefix;
    params[4] = actor;
    params[5] = n->id;
    if (!node_admin_write(n, req, "api_key.create", sql, 6, params, create_done, j))
        job_free(j);
}

static void list_done(void *arg, const PGresult *res, const char *err)
{
    struct key_job *j = arg;

    if (err)
        node_reply_db_error(j->req, "api_key.list", err);
    else
        http_reply_json(j->req, 200, json_pack("{s:o}", "api_keys", nodedb_rows_json(res)));
    job_free(j);
}

void apikeys_handle_list(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    char actor[APIKEY_NAME_MAX + 1], *err = NULL;
    struct key_job *j;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    j = job_new(n, req);
    if (!j)
        return;
    if (nodedb_read(n->db,
                    "SELECT id, name, scope, prefix, created_by, created_at, revoked_at"
                    " FROM api_keys ORDER BY id",
                    0, NULL, list_done, j, &err) < 0) {
        http_reply_error(req, 503, "unavailable", "the local database does not answer");
        free(err);
        free(j);
    }
}

static void revoke_done(void *arg, const PGresult *res, const char *err)
{
    struct key_job *j = arg;

    if (err) {
        node_reply_db_error(j->req, "api_key.revoke", err);
    } else if (PQntuples(res) == 0) {
        http_reply_error(j->req, 404, "not_found", "no active API key with that id");
    } else {
        cache_remove(j->n->apikeys, PQgetvalue(res, 0, 2));
        log_notice("api_key.revoked id=%s", PQgetvalue(res, 0, 0));
        http_reply_json(j->req, 200,
                        json_pack("{s:s, s:s, s:b}", "id", PQgetvalue(res, 0, 0), "name",
                                  PQgetvalue(res, 0, 1), "revoked", 1));
    }
    job_free(j);
}

void apikeys_handle_revoke(struct evhttp_request *req, void *arg)
{
    static const char sql[] =
        "WITH k AS (UPDATE api_keys SET revoked_at = now()"
        "  WHERE id = $1 AND revoked_at IS NULL RETURNING id, name, key_hash),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT $2, $3, 'api_key.revoke', k.name, jsonb_build_object('id', k.id) FROM k)"
        " SELECT id, name, key_hash FROM k";
    struct node *n = arg;
    char actor[APIKEY_NAME_MAX + 1], path[256];
    const char *id, *params[3];
    struct key_job *j;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    id = http_request_path(req, path, sizeof(path)) + strlen("/api/v1/api-keys/");
    if (!*id || strlen(id) > 18 || strspn(id, "0123456789") != strlen(id)) {
        http_reply_error(req, 400, "bad_request", "the key id must be a number");
        return;
    }
    j = job_new(n, req);
    if (!j)
        return;
    params[0] = id;
    params[1] = actor;
    params[2] = n->id;
    if (!node_admin_write(n, req, "api_key.revoke", sql, 3, params, revoke_done, j))
        job_free(j);
}
