/*
 * Fuzz target for the JSON request bodies of mfa-node's HTTP API: the checks
 * every body goes through between http_read_json() and the database.
 *
 * The first byte chooses the body, by its low four bits modulo 5 (so the
 * seeds start with a digit):
 *
 *   0  POST /api/v1/users                      users_fields_from_json(create)
 *   1  PATCH /api/v1/users/{username}          users_fields_from_json(update)
 *   2  POST /api/v1/auth                       auth_body_signin
 *   3  POST /api/v1/challenges/{id}/verify     auth_body_verify
 *   4  POST /api/v1/api-keys                   apikey_body_create
 *
 * The rest is parsed as http_read_json() does (json_loadb with
 * JSON_REJECT_DUPLICATES, jansson's own depth limit; only an object goes
 * on). With the first byte's high bit set it is parsed with JSON_ALLOW_NUL
 * as well, so the validators' own NUL checks are reached although the node's
 * parse refuses "\u0000" before them. The input is copied to a heap buffer of
 * exactly its size, so ASan sees any read past the end.
 *
 * Besides ASan/UBSan findings and leaks the target aborts when a validator
 * breaks its contract: a return value out of range, an error without a
 * message or a message without an error, or an accepted body whose values
 * break the rules the validator promises (a username users_check_username()
 * refuses, a method outside sms/totp/hotp, a secret of 0 or more than
 * AUTH_SECRET_MAX bytes, a client_ip that is not numeric, a key name of 0 or
 * more than 128 bytes, an unknown scope). Seeds: tests/fuzz/corpus/api_json/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "apikey_priv.h"
#include "auth_http_priv.h"
#include "mem.h"
#include "netaddr.h"
#include "secrets.h"
#include "users_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum body_kind {
    BODY_USER_CREATE = 0,
    BODY_USER_UPDATE,
    BODY_SIGNIN,
    BODY_VERIFY,
    BODY_KEY_CREATE,
    BODY_KINDS,
};

static bool is_method(const char *s)
{
    return strcmp(s, "sms") == 0 || strcmp(s, "totp") == 0 || strcmp(s, "hotp") == 0;
}

/* A text the validator accepted: at most USERS_TEXT_CHARS characters of UTF-8. */
static void check_text(const char *s)
{
    if (s && strlen(s) > USERS_TEXT_CHARS * 4)
        abort();
}

static void user_fields(json_t *body, bool create)
{
    struct users_fields f;
    char *err = NULL, *again = NULL;
    int rc = users_fields_from_json(body, create, &f, &err);

    if ((rc != 0 && rc != -1) || (rc < 0) != (err != NULL) || (err && !*err))
        abort();
    mfa_free(err);
    if (rc < 0)
        return;
    /* What the handler then writes: the rules hold for every field given. */
    if (users_fields_check(&f, create, &again) != 0 || again)
        abort();
    if (create && (!f.username || !f.method || f.disabled != -1))
        abort();
    if (f.method && strcmp(f.method, "sms") == 0 && (create || f.phone) && (!f.phone || !*f.phone))
        abort();
    if (!create && f.username)
        abort();
    if (f.username && users_check_username("username", f.username, NULL) != 0)
        abort();
    if (f.method && !is_method(f.method))
        abort();
    if ((f.pin && (!f.pin_given || !pin_syntax_ok(f.pin))) || f.disabled < -1 || f.disabled > 1)
        abort();
    check_text(f.display_name);
    check_text(f.email);
    if (f.phone && strlen(f.phone) > 21)
        abort();
    secret_wipe_str(f.pin);
}

static void secret_ok(bool has, const char *s)
{
    size_t n = strlen(s);

    if (has ? n < 1 || n > AUTH_SECRET_MAX : n != 0)
        abort();
}

static void signin(json_t *body)
{
    static const char *const names[] = { "username", "method", "pin", "otp", "client_ip" };
    struct auth_body b;
    const char *bad = auth_body_signin(body, &b);
    bool known = false;

    for (size_t i = 0; bad && i < MFA_ARRAY_LEN(names); i++)
        known = known || strcmp(bad, names[i]) == 0;
    if (bad && !known)
        abort();
    if (!bad) {
        if (users_check_username("username", b.username, NULL) != 0)
            abort();
        if (b.has_method != (*b.method != '\0') || (b.has_method && !is_method(b.method)))
            abort();
        secret_ok(b.has_pin, b.pin);
        secret_ok(b.has_otp, b.otp);
        if (b.has_client_ip ? !netaddr_numeric(b.client_ip) : *b.client_ip != '\0')
            abort();
    }
    /* as the handler's drop_body(): the secrets in the parse are wiped in place */
    secret_wipe_str(json_string_value(json_object_get(body, "pin")));
    secret_wipe_str(json_string_value(json_object_get(body, "otp")));
    secret_wipe(&b, sizeof(b));
}

static void verify(json_t *body)
{
    char otp[AUTH_SECRET_MAX + 1];
    int rc = auth_body_verify(body, otp);

    if (rc != 0 && rc != -1)
        abort();
    if (rc == 0)
        secret_ok(true, otp);
    secret_wipe(otp, sizeof(otp));
}

static void key_create(json_t *body)
{
    char name[APIKEY_NAME_MAX + 1];
    enum apikey_scope scope = (enum apikey_scope)7;
    const char *given = json_string_value(json_object_get(body, "name"));
    int rc = apikey_body_create(body, name, &scope);
    size_t n;

    if (rc != 0 && rc != -1)
        abort();
    if (rc < 0)
        return;
    n = strlen(name);
    if (n < 1 || n > APIKEY_NAME_MAX || !given || strncmp(given, name, n) != 0 ||
        n != json_string_length(json_object_get(body, "name")) ||
        (scope != APIKEY_AUTH && scope != APIKEY_ADMIN))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t flags = JSON_REJECT_DUPLICATES; /* http_read_json()'s */
    enum body_kind kind;
    json_error_t jerr;
    json_t *body;
    char *buf;

    if (size < 1)
        return 0;
    kind = (enum body_kind)((data[0] & 0x0F) % BODY_KINDS);
    if (data[0] & 0x80)
        flags |= JSON_ALLOW_NUL;
    buf = malloc(size - 1 ? size - 1 : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    body = json_loadb(buf, size - 1, flags, &jerr);
    free(buf);
    if (!body)
        return 0;
    if (json_is_object(body)) {
        switch (kind) {
        case BODY_USER_CREATE:
            user_fields(body, true);
            break;
        case BODY_USER_UPDATE:
            user_fields(body, false);
            break;
        case BODY_SIGNIN:
            signin(body);
            break;
        case BODY_VERIFY:
            verify(body);
            break;
        case BODY_KEY_CREATE:
        case BODY_KINDS:
            key_create(body);
            break;
        }
    }
    json_decref(body);
    return 0;
}
