/*
 * The sign-in engine (auth.c) over the HTTP API: POST /api/v1/auth, POST
 * /api/v1/challenges/{id}/verify and GET /api/v1/challenges/{id}, auth
 * scope (DESIGN §4). This file reads and checks the JSON, and turns the
 * engine's decision into the API's answer.
 */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "auth_http_priv.h"
#include "httpserver.h"
#include "ids.h"
#include "netaddr.h"
#include "secrets.h"
#include "users_priv.h"

#define SECRET_MAX AUTH_SECRET_MAX

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
        { "directory_unavailable", "the directory does not answer; try again" },
    };

    for (size_t i = 0; reason && i < MFA_ARRAY_LEN(details); i++) {
        if (strcmp(details[i].reason, reason) == 0)
            return details[i].detail;
    }
    return "the sign-in could not be completed";
}

/* The engine's decision as the API's JSON answer; <arg> is the request. */
static void reply(void *arg, const struct auth_result *r)
{
    struct evhttp_request *req = arg;
    json_t *body;

    if (r->reason && strcmp(r->reason, "unrecorded") == 0) {
        http_reply_error(req, 503, "unavailable", "%s", r->detail);
        return;
    }
    body = json_pack("{s:s, s:s}", "result", r->outcome_name, "method", r->method);
    if (r->reason)
        json_object_set_new(body, "reason", json_string(r->reason));
    if (r->http_status >= 400) {
        /* An HTTP error is also an error in the API's uniform form. */
        json_object_set_new(body, "error", json_string(r->reason ? r->reason : "error"));
        json_object_set_new(body, "detail",
                            json_string(r->detail ? r->detail : detail_of(r->reason)));
    }
    if (r->challenge_id) {
        json_object_set_new(body, "challenge_id", json_string(r->challenge_id));
        json_object_set_new(body, "expires_in", json_integer(r->expires_in));
    }
    if (r->attempts_left >= 0)
        json_object_set_new(body, "attempts_left", json_integer(r->attempts_left));
    if (r->retry_after > 0) {
        char retry[16];

        json_object_set_new(body, "retry_after", json_integer(r->retry_after));
        snprintf(retry, sizeof(retry), "%d", r->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", retry);
    }
    http_reply_json(req, r->http_status, body);
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

/* Common start of both requests: authorize and read the body. */
static json_t *begin(struct node *n, struct evhttp_request *req, char *peer, size_t size)
{
    char actor[130];

    if (!node_authorize(n, req, APIKEY_AUTH, actor, sizeof(actor)))
        return NULL;
    http_peer_address(req, peer, size);
    return http_read_json(req);
}

static void out_of_memory(struct evhttp_request *req)
{
    http_reply_error(req, 500, "internal", "out of memory");
}

const char *auth_body_signin(json_t *body, struct auth_body *b)
{
    return auth_body_signin_max(body, b, SECRET_MAX);
}

const char *auth_body_signin_max(json_t *body, struct auth_body *b, size_t pin_max)
{
    const char *bad = NULL;
    bool present = false;

    memset(b, 0, sizeof(*b));
    if (get_str(body, "username", b->username, sizeof(b->username) - 1, &present, &bad) < 0 ||
        !present || users_check_username("username", b->username, NULL) < 0)
        return "username";
    if (get_str(body, "method", b->method, sizeof(b->method) - 1, &b->has_method, &bad) < 0 ||
        (b->has_method && strcmp(b->method, "sms") && strcmp(b->method, "totp") &&
         strcmp(b->method, "hotp")))
        return "method";
    if (pin_max > AUTH_PASSWORD_MAX)
        pin_max = AUTH_PASSWORD_MAX;
    if (get_str(body, "pin", b->pin, pin_max, &b->has_pin, &bad) < 0 ||
        get_str(body, "otp", b->otp, SECRET_MAX, &b->has_otp, &bad) < 0)
        return bad;
    if (get_str(body, "client_ip", b->client_ip, sizeof(b->client_ip) - 1, &b->has_client_ip,
                &bad) < 0 ||
        (b->has_client_ip && !netaddr_numeric(b->client_ip)))
        return "client_ip";
    return NULL;
}

int auth_body_verify(json_t *body, char otp[AUTH_SECRET_MAX + 1])
{
    const char *bad = NULL;
    bool present = false;

    return get_str(body, "otp", otp, SECRET_MAX, &present, &bad) < 0 || !present ? -1 : 0;
}

void auth_handle_auth(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    char peer[64];
    const char *bad;
    json_t *body = begin(n, req, peer, sizeof(peer));
    struct auth_request rq = { 0 };
    struct auth_body b;
    /* Under directory.first_factor = "ldap", pin may carry a directory password (docs/api.md). */
    bool ldap = node_conf(n)->directory.first_factor == FIRST_FACTOR_LDAP;

    if (!body)
        return;
    bad = auth_body_signin_max(body, &b, ldap ? AUTH_PASSWORD_MAX : SECRET_MAX);
    drop_body(req, body);
    if (bad) {
        http_reply_error(req, 400, "bad_request", "%s: expected %s", bad,
                         strcmp(bad, "method") == 0      ? "\"sms\", \"totp\" or \"hotp\""
                         : strcmp(bad, "client_ip") == 0 ? "an IPv4 or IPv6 address"
                         : strcmp(bad, "username") == 0
                             ? "a string of 1 to 128 characters, no spaces or controls"
                         : strcmp(bad, "pin") == 0 && ldap
                             ? "a non-empty string of at most 128 characters"
                             : "a non-empty string of at most 16 characters");
        secret_wipe(&b, sizeof(b));
        return;
    }
    rq.username = b.username;
    rq.method = b.has_method ? b.method : NULL;
    rq.pin = b.has_pin ? b.pin : NULL;
    rq.otp = b.has_otp ? b.otp : NULL;
    rq.client_ip = b.has_client_ip ? b.client_ip : peer;
    if (auth_signin(n, &rq, reply, req) < 0)
        out_of_memory(req);
    secret_wipe(&b, sizeof(b));
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
    char path[256], peer[64], otp[SECRET_MAX + 1];
    const char *id;
    json_t *body;

    id = challenge_id(n, req, path, sizeof(path), true);
    if (!id || !(body = begin(n, req, peer, sizeof(peer))))
        return;
    if (auth_body_verify(body, otp) < 0) {
        drop_body(req, body);
        http_reply_error(req, 400, "bad_request", "otp: expected the code as a string");
        return;
    }
    drop_body(req, body);
    if (auth_verify(n, id, otp, NULL, false, peer, reply, req) < 0)
        out_of_memory(req);
    secret_wipe(otp, sizeof(otp));
}

void auth_handle_challenge(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    char path[256], actor[130], method[16];
    const char *id;
    uint64_t expires_in;
    bool accepted;

    if (!node_authorize(n, req, APIKEY_AUTH, actor, sizeof(actor)))
        return;
    id = challenge_id(n, req, path, sizeof(path), false);
    if (!id)
        return;
    if (!auth_challenge_state(n, id, method, sizeof(method), &expires_in, &accepted)) {
        http_reply_error(req, 410, "challenge_expired",
                         "the challenge expired or was used; start the sign-in again");
        return;
    }
    http_reply_json(req, 200,
                    json_pack("{s:s, s:s, s:s, s:I}", "challenge_id", id, "state",
                              accepted ? "accepted" : "pending", "method", method, "expires_in",
                              (json_int_t)expires_in));
}
