/*
 * POST /api/v1/users/{username}/totp: an administrator enrols a TOTP app
 * for a user (DESIGN §4). The node makes a 20-byte seed (RFC 4226 §4 R6:
 * 160 bits), seals it under the key file's seal key bound to the token's
 * serial (seal.h), and in one statement inserts the token (SHA1, 6 digits,
 * 30 s), assigns it to the user, sets the user's method to totp and writes
 * the audit row. An earlier soft token of the user (serial "totp-...") is
 * deleted in that statement; an imported TOTP token assigned to the user is
 * unassigned, not destroyed (it is a device in someone's drawer).
 *
 * The answer carries the seed in base32 and as an otpauth:// URI (Google
 * Authenticator's Key Uri Format): the only time it leaves the node. The
 * seed, its base32 and the reply text are wiped from our memory afterwards;
 * the audit row names the serial only.
 */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "errmsg.h"
#include "httpserver.h"
#include "ids.h"
#include "log.h"
#include "seal.h"
#include "secrets.h"
#include "users_priv.h"

#define TOTP_SEED_LEN     20
#define TOTP_ISSUER       "MFA Appliance"
#define SERIAL_USER_CHARS 96 /* "totp-" + 96 + "-" + 12 stays under the schema's 128 */
#define SERIAL_RAND_BYTES 6
_Static_assert(USERS_TOTP_SERIAL_MAX == 5 + SERIAL_USER_CHARS * 4 + 1 + SERIAL_RAND_BYTES * 2 + 1,
               "a serial's buffer holds the longest one");

struct totp_job {
    struct node *n;
    struct evhttp_request *req;
    unsigned char seed[TOTP_SEED_LEN];
    char secret[B32_ENCODED_LEN(TOTP_SEED_LEN) + 1];
    char serial[USERS_TOTP_SERIAL_MAX];
};

static void job_free(struct totp_job *j)
{
    if (!j)
        return;
    secret_wipe(j->seed, sizeof(j->seed));
    secret_wipe(j->secret, sizeof(j->secret));
    free(j);
}

/* The username is cut to SERIAL_USER_CHARS characters, at a UTF-8 character boundary. */
int users_totp_serial(const char *username, char *out, size_t size)
{
    unsigned char rnd[SERIAL_RAND_BYTES];
    size_t len = 0, chars = 0;
    int n;

    while (username[len] && chars < SERIAL_USER_CHARS) {
        len++;
        while ((username[len] & 0xC0) == 0x80) /* continuation bytes */
            len++;
        chars++;
    }
    if (rand_bytes(rnd, sizeof(rnd)) < 0)
        return -1;
    n = snprintf(out, size, "totp-%.*s-%02x%02x%02x%02x%02x%02x", (int)len, username, rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

const char users_totp_enrol_sql[] =
    "WITH u AS (UPDATE users SET method = 'totp', updated_at = now()"
    "  WHERE lower(username) = lower($1) AND NOT ($8::boolean AND disabled)"
    "  RETURNING id, username),"
    " d AS (DELETE FROM oath_tokens WHERE user_id IN (SELECT id FROM u)"
    "  AND kind = 'totp' AND serial LIKE 'totp-%' RETURNING serial),"
    " r AS (UPDATE oath_tokens SET user_id = NULL WHERE user_id IN (SELECT id FROM u)"
    "  AND kind = 'totp' AND serial NOT LIKE 'totp-%' RETURNING serial),"
    " t AS (INSERT INTO oath_tokens (serial, kind, algorithm, digits, period, seed_sealed,"
    "  user_id, last_step) SELECT $2, 'totp', 'SHA1', 6, 30, $3, u.id, $6::bigint FROM u"
    "  RETURNING serial),"
    " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
    "  SELECT $4, $5, 'user.totp_enrol', u.username, jsonb_build_object('serial', $2::text,"
    "   'via', $7::text,"
    "   'replaced', (SELECT coalesce(jsonb_agg(serial), '[]') FROM d),"
    "   'unassigned', (SELECT coalesce(jsonb_agg(serial), '[]') FROM r)) FROM u)"
    " SELECT u.username, t.serial FROM u, t";

char *users_totp_uri(const char *username, const char *secret)
{
    char *issuer = evhttp_uriencode(TOTP_ISSUER, -1, 0);
    char *account = evhttp_uriencode(username, -1, 0);
    char *uri = NULL;
    int n;

    if (issuer && account) {
        n = asprintf(&uri,
                     "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&period=30",
                     issuer, account, secret, issuer);
        if (n < 0)
            uri = NULL;
    }
    free(issuer);
    free(account);
    return uri;
}

/* Sends <out> as 201 and wipes every copy of the secret this side of evhttp. */
static void reply_secret(struct evhttp_request *req, json_t *out)
{
    char *text = json_dumps(out, JSON_COMPACT);
    const char *keys[] = { "secret", "otpauth_uri" };

    if (text) {
        http_reply(req, 201, "application/json", text, strlen(text));
        secret_wipe(text, strlen(text));
        free(text);
    } else {
        http_reply_error(req, 500, "internal", "out of memory");
    }
    for (size_t i = 0; i < MFA_ARRAY_LEN(keys); i++) {
        json_t *v = json_object_get(out, keys[i]);
        secret_wipe_str(json_string_value(v));
    }
    json_decref(out);
}

static void enrol_done(void *arg, const PGresult *res, const char *err)
{
    struct totp_job *j = arg;
    const char *username;
    char *uri;

    if (err) {
        users_reply_write_error(j->req, "user.totp_enrol", err);
    } else if (PQntuples(res) == 0) {
        http_reply_error(j->req, 404, "not_found", "no such user");
    } else {
        username = PQgetvalue(res, 0, 0);
        uri = users_totp_uri(username, j->secret);
        if (!uri) {
            /* The token is stored but its seed cannot be shown: enrol again. */
            http_reply_error(j->req, 500, "internal", "out of memory; enrol again");
        } else {
            log_notice("user.totp_enrolled username=%s serial=%s", username, j->serial);
            reply_secret(j->req,
                         json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "username", username,
                                   "serial", j->serial, "secret", j->secret, "otpauth_uri", uri,
                                   "algorithm", "SHA1", "digits", 6, "period", 30));
            secret_wipe(uri, strlen(uri));
            free(uri);
        }
    }
    job_free(j);
}

void users_totp_enrol(struct node *n, struct evhttp_request *req, const char *actor,
                      struct users_job *uj)
{
    struct totp_job *j = calloc(1, sizeof(*j));
    char *sealed = NULL, *err = NULL;
    const char *params[8];

    if (!j) {
        http_reply_error(req, 500, "internal", "out of memory");
        goto done;
    }
    j->n = n;
    j->req = req;
    if (rand_bytes(j->seed, sizeof(j->seed)) < 0 ||
        users_totp_serial(uj->username, j->serial, sizeof(j->serial)) < 0) {
        http_reply_error(req, 500, "internal", "no random numbers");
        goto done;
    }
    if (b32_encode(j->seed, sizeof(j->seed), j->secret, sizeof(j->secret)) < 0 ||
        seal_encrypt(&n->keys, j->seed, sizeof(j->seed), j->serial, &sealed, &err) < 0) {
        log_error("user.totp_seal_failed err=%s", err ? err : "base32");
        http_reply_error(req, 500, "internal", "cannot seal the seed");
        goto done;
    }
    params[0] = uj->username;
    params[1] = j->serial;
    params[2] = sealed;
    params[3] = actor;
    params[4] = n->id;
    params[5] = NULL;
    params[6] = "api";
    params[7] = "f";
    if (users_write(n, req, "user.totp_enrol", users_totp_enrol_sql, 8, params, enrol_done, j) == 0)
        j = NULL;
done:
    job_free(j);
    free(sealed);
    free(err);
    free(uj);
}
