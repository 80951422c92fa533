/*
 * The portal's settings (docs/portal.md): the home page with the user's
 * row and recent sign-ins, the changes of phone, method and PIN, and a TOTP
 * app's enrolment.
 *
 * Changes are admin writes on the primary (remote_apply, like the admin
 * API's) with an audit row whose actor is "portal". Changing the phone or
 * the PIN and confirming an app also take the current PIN, checked by the
 * engine (AUTH_STEP_REPIN: a wrong one counts toward lockout), so a session
 * left open is not enough to move the second factor elsewhere.
 *
 * Under directory.first_factor = "ldap" a directory user's "current PIN" is
 * their directory password (the engine binds as them), and their PIN part
 * only says where that password is changed: in the directory, not here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "b64.h"
#include "db.h"
#include "log.h"
#include "otp.h"
#include "portal_page.h"
#include "seal.h"
#include "secrets.h"
#include "users_priv.h"

#define TOTP_PERIOD 30
#define TOTP_DIGITS 6

static const char home_user_sql[] =
    "SELECT u.username, u.display_name, u.phone, u.method, u.disabled,"
    " EXISTS (SELECT 1 FROM oath_tokens t WHERE t.user_id = u.id AND t.kind = 'totp'),"
    " EXISTS (SELECT 1 FROM oath_tokens t WHERE t.user_id = u.id AND t.kind = 'hotp'),"
    " to_jsonb(u) ->> 'source'" /* schema 3's; NULL on schema 2 (docs/upgrade.md) */
    " FROM users u WHERE lower(u.username) = lower($1)";

static const char home_recent_sql[] =
    "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), method, result, reason,"
    " coalesce(host(client_ip), ''), server_name FROM auth_log"
    " WHERE lower(username) = lower($1) AND result <> 'challenge'"
    " ORDER BY at DESC, id DESC LIMIT 10"; /* the contract's "last 10" */

static void send_home(struct portal_job *j, struct portal_session *s, const PGresult *recent)
{
    static const char *const methods[] = { "sms", "totp", "hotp" };
    bool usable[] = { *j->phone != '\0', j->has_totp, j->has_hotp };
    const char *current = j->directory ? "Your directory password" : "Your current PIN";
    struct pbuf b = { 0 };

    portal_page_begin(&b, j->n, "Your sign-in settings", s);
    pbuf_puts(&b, "<dl id=\"profile\"><dt>Username</dt><dd id=\"username\">");
    pbuf_escape(&b, j->username);
    pbuf_puts(&b, "</dd><dt>Name</dt><dd id=\"display-name\">");
    pbuf_escape(&b, j->display_name);
    pbuf_puts(&b, "</dd><dt>Phone</dt><dd id=\"phone\">");
    pbuf_escape(&b, j->phone);
    pbuf_puts(&b, "</dd><dt>Sign-in method</dt><dd id=\"method\">");
    pbuf_escape(&b, j->method);
    pbuf_puts(&b, "</dd></dl>");

    pbuf_puts(&b, "<h2>Phone number</h2>");
    portal_form_begin(&b, "phone-form", "/portal/phone", s);
    pbuf_puts(&b, "<label for=\"phone-input\">Phone (digits, may start with +)</label>"
                  "<input id=\"phone-input\" name=\"phone\" type=\"tel\" value=\"");
    pbuf_escape(&b, j->phone);
    pbuf_printf(&b,
                "\"><label for=\"phone-pin\">%s</label><input id=\"phone-pin\" "
                "name=\"current_pin\" type=\"password\"%s autocomplete=\"current-password\">"
                "<button type=\"submit\">Save phone</button></form>",
                current, j->directory ? "" : " inputmode=\"numeric\"");

    pbuf_puts(&b, "<h2>Sign-in method</h2>");
    portal_form_begin(&b, "method-form", "/portal/method", s);
    pbuf_puts(&b, "<label for=\"method-select\">Method</label>"
                  "<select id=\"method-select\" name=\"method\">");
    for (size_t i = 0; i < MFA_ARRAY_LEN(methods); i++) {
        if (usable[i])
            pbuf_printf(&b, "<option value=\"%s\"%s>%s</option>", methods[i],
                        strcmp(methods[i], j->method) == 0 ? " selected" : "", methods[i]);
    }
    pbuf_puts(&b, "</select><button type=\"submit\">Save method</button></form>");

    if (j->directory) {
        /* Their first factor is the directory password (directory.first_factor = "ldap"). */
        pbuf_puts(&b, "<h2>Password</h2><p id=\"pin-directory\">You sign in with the password of "
                      "your company directory. It is changed there, not here.</p>");
    } else {
        pbuf_puts(&b, "<h2>PIN</h2>");
        portal_form_begin(&b, "pin-form", "/portal/pin", s);
        pbuf_puts(&b, "<label for=\"current_pin\">Current PIN</label><input id=\"current_pin\" "
                      "name=\"current_pin\" type=\"password\" inputmode=\"numeric\" "
                      "autocomplete=\"current-password\">"
                      "<label for=\"new_pin\">New PIN (4 to 8 digits)</label><input id=\"new_pin\" "
                      "name=\"new_pin\" type=\"password\" inputmode=\"numeric\" "
                      "autocomplete=\"new-password\">"
                      "<label for=\"new_pin2\">New PIN again</label><input id=\"new_pin2\" "
                      "name=\"new_pin2\" type=\"password\" inputmode=\"numeric\" "
                      "autocomplete=\"new-password\">"
                      "<button type=\"submit\">Change PIN</button></form>");
    }

    pbuf_puts(&b, "<h2>Authenticator app</h2><p><a id=\"totp-link\" href=\"/portal/totp\">Set up "
                  "an authenticator app</a></p>");

    pbuf_puts(&b, "<h2>Recent sign-ins</h2><table id=\"recent\"><thead><tr><th>Time (UTC)</th>"
                  "<th>Method</th><th>Result</th><th>Client IP</th><th>Server</th></tr></thead>"
                  "<tbody>");
    for (int i = 0; recent && i < PQntuples(recent); i++) {
        pbuf_puts(&b, "<tr><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 0));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 1));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 2));
        if (*PQgetvalue(recent, i, 3)) {
            pbuf_puts(&b, " (");
            pbuf_escape(&b, PQgetvalue(recent, i, 3));
            pbuf_puts(&b, ")");
        }
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 4));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 5));
        pbuf_puts(&b, "</td></tr>");
    }
    pbuf_puts(&b, "</tbody></table>");
    /* The auth log reaches the database in batches, through the primary. */
    if (!recent)
        pbuf_puts(&b, "<p>Recent sign-ins cannot be shown right now.</p>");
    else if (PQntuples(recent) == 0)
        pbuf_puts(&b, nodedb_writable(j->n->db)
                          ? "<p>None recorded yet; a sign-in shows here a few seconds after it.</p>"
                          : "<p>None recorded yet; new sign-ins show here once the primary server "
                            "is back.</p>");
    portal_form_begin(&b, "signout", "/portal/signout", s);
    pbuf_puts(&b, "<button type=\"submit\">Sign out</button></form>");
    portal_page_end(&b, j->n);
    portal_send_page(j->n, j->req, 200, s->id, &b);
}

static void home_failed(struct portal_job *j, struct portal_session *s, const char *err)
{
    log_error("portal.read_failed err=%s", err);
    portal_send_message(j->n, j->req, 503, s->id, "Your sign-in settings",
                        "Your settings cannot be read right now. Please try again in a moment.");
}

static void home_recent_done(void *arg, const PGresult *res, const char *err)
{
    struct portal_job *j = arg;
    struct portal_session *s = portal_session_again(j->n, j->req, j->sid);

    if (s) {
        if (err) /* the settings without the list beat no page */
            log_warn("portal.recent_failed err=%s", err);
        send_home(j, s, err ? NULL : res);
    }
    portal_job_free(j);
}

static void home_user_done(void *arg, const PGresult *res, const char *err)
{
    struct portal_job *j = arg;
    struct portal_session *s = portal_session_again(j->n, j->req, j->sid);
    const char *params[1] = { j->username };
    char *qerr = NULL;

    if (!s)
        goto done;
    if (err) {
        home_failed(j, s, err);
        goto done;
    }
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
        /* Deleted or disabled since the sign-in: the session is over. */
        portal_session_end(portal_store_of(j->n), s);
        if ((s = portal_new_session(j->n, j->req, portal_msg_ended)) != NULL)
            portal_redirect(j->n, j->req, s->id, "/portal/");
        goto done;
    }
    snprintf(j->username, sizeof(j->username), "%s", PQgetvalue(res, 0, 0));
    /* As the database spells it, not as typed at sign-in (the app's account name). */
    snprintf(s->username, sizeof(s->username), "%s", j->username);
    snprintf(j->display_name, sizeof(j->display_name), "%s", PQgetvalue(res, 0, 1));
    snprintf(j->phone, sizeof(j->phone), "%s", PQgetvalue(res, 0, 2));
    snprintf(j->method, sizeof(j->method), "%s", PQgetvalue(res, 0, 3));
    j->has_totp = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
    j->has_hotp = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
    j->directory = portal_directory_password(j->n) && !PQgetisnull(res, 0, 7) &&
                   strcmp(PQgetvalue(res, 0, 7), "directory") == 0;
    if (nodedb_read(j->n->db, home_recent_sql, 1, params, home_recent_done, j, &qerr) == 0)
        return;
    log_warn("portal.recent_failed err=%s", qerr);
    free(qerr);
    send_home(j, s, NULL);
done:
    portal_job_free(j);
}

void portal_page_home(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    const char *params[1] = { s->username };
    char *err = NULL;
    struct portal_job *j;

    if (s->state != PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/");
        return;
    }
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    if (nodedb_read(n->db, home_user_sql, 1, params, home_user_done, j, &err) < 0) {
        home_failed(j, s, err);
        free(err);
        portal_job_free(j);
    }
}

/* ---- changes ---- */

/*
 * What a change of <j> says once written: 1 row is done (<ok>), none is
 * <none>; a lost primary is the read-only message.
 */
struct change {
    const char *what, *ok, *none;
};

static void change_done(struct portal_job *j, const struct change *c, const PGresult *res,
                        const char *err)
{
    struct portal_session *s = portal_session_again(j->n, j->req, j->sid);

    if (!s)
        return;
    if (err) {
        bool ro = nodedb_error_is_read_only(err);

        if (ro)
            log_warn("portal.write_failed what=%s err=%s", c->what, err);
        else
            log_error("portal.write_failed what=%s err=%s", c->what, err);
        portal_flash(s, true, "%s", ro ? portal_msg_read_only : portal_msg_failed);
    } else if (PQntuples(res) == 0) {
        portal_flash(s, true, "%s", c->none);
    } else {
        log_notice("portal.changed what=%s username=%s", c->what, j->username);
        portal_flash(s, false, "%s", c->ok);
    }
    portal_redirect(j->n, j->req, s->id, "/portal/home");
}

/*
 * Queues an admin write (remote_apply, like the admin API's) for <j>.
 * Returns true when <cb> will run; false after redirecting with the reason.
 */
static bool write_change(struct portal_job *j, struct portal_session *s, const char *what,
                         const char *sql, int nparams, const char *const *params, pgconn_cb cb)
{
    char *err = NULL;
    int rc = nodedb_write(j->n->db, sql, nparams, params, PGCONN_SYNC_REMOTE_APPLY, cb, j, &err);

    if (rc == 0)
        return true;
    if (rc != NODEDB_READ_ONLY)
        log_error("portal.write_failed what=%s err=%s", what, err);
    free(err);
    portal_flash(s, true, "%s", rc == NODEDB_READ_ONLY ? portal_msg_read_only : portal_msg_failed);
    portal_redirect(j->n, j->req, s->id, "/portal/home");
    return false;
}

/*
 * The start of every change: signed in, and a primary to write to. Returns
 * true, or false after redirecting.
 */
static bool may_change(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    if (s->state != PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/");
        return false;
    }
    if (!nodedb_writable(n->db)) {
        portal_flash(s, true, "%s", portal_msg_read_only);
        portal_redirect(n, req, s->id, "/portal/home");
        return false;
    }
    return true;
}

/* What follows a right current PIN: true when <j> lives on (a write was queued). */
typedef bool (*after_pin_fn)(struct portal_job *j, struct portal_session *s);

/* A job of check_current_pin(): the portal's job, and what comes after. */
struct repin_job {
    struct portal_job *j;
    after_pin_fn then;
    const char *back; /* the page a wrong PIN goes back to */
};

/* The engine checked the current PIN (AUTH_STEP_REPIN): on to the change, or back. */
static void repin_done(void *arg, const struct auth_result *r)
{
    struct repin_job *rj = arg;
    struct portal_job *j = rj->j;
    struct portal_session *s = portal_session_again(j->n, j->req, j->sid);

    if (!s)
        goto done;
    if (s->state != PORTAL_SIGNED_IN || strcasecmp(s->username, j->username) != 0) {
        portal_redirect(j->n, j->req, s->id, "/portal/"); /* signed out meanwhile */
        goto done;
    }
    if (r->outcome != AUTH_ACCEPTED) {
        bool wrong = r->reason && (strcmp(r->reason, "wrong_pin") == 0 ||
                                   strcmp(r->reason, "pin_required") == 0);
        bool wrong_password = r->reason && strcmp(r->reason, "wrong_password") == 0;

        portal_flash(s, true, "%s",
                     wrong            ? "Your current PIN is not right."
                     : wrong_password ? "Your directory password is not right."
                                      : portal_signin_problem(j->n, r));
        portal_redirect(j->n, j->req, s->id, rj->back);
        goto done;
    }
    if (rj->then(j, s))
        j = NULL; /* the write's callback frees it */
done:
    portal_job_free(j);
    free(rj);
}

/*
 * Checks <cur> (the form's current PIN, may be NULL) of <s>'s user through
 * the engine, then runs <then> with <j>, or goes back to <back> saying why
 * not. Takes <j>; answers the request in every case.
 */
static void check_current_pin(struct portal_job *j, struct portal_session *s, const char *cur,
                              after_pin_fn then, const char *back)
{
    struct repin_job *rj = calloc(1, sizeof(*rj));
    char ip[64];
    struct auth_request rq = {
        .step = AUTH_STEP_REPIN,
        .username = s->username,
        .pin = cur && *cur ? cur : NULL,
        .client_ip = ip,
        .require_pin = true,
    };

    portal_client_ip(j->n, j->req, ip, sizeof(ip));
    if (rj) {
        *rj = (struct repin_job){ j, then, back };
        if (auth_signin(j->n, &rq, repin_done, rj) == 0)
            return;
        free(rj);
    }
    portal_send_message(j->n, j->req, 500, s->id, "Error",
                        "The server is out of memory; try again.");
    portal_job_free(j);
}

/* The audit row of a change the user made themselves (actor "portal"). */
#define AUDIT(fields)                                                                              \
    " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"                      \
    "  SELECT 'portal', $3, 'user.update', u.username,"                                            \
    "   '{\"fields\": [" fields "], \"via\": \"portal\"}'::jsonb FROM u)"

static void phone_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = {
        "phone",
        "Your phone number was changed.",
        "The phone number cannot be removed while text messages are your sign-in method; "
        "choose another method first.",
    };

    change_done(arg, &c, res, err);
    portal_job_free(arg);
}

/* The current PIN was right: the phone is written. */
static bool phone_write(struct portal_job *j, struct portal_session *s)
{
    static const char sql[] =
        "WITH u AS (UPDATE users SET phone = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled AND ($2 <> '' OR method <> 'sms')"
        "  RETURNING username)," AUDIT("\"phone\"") " SELECT username FROM u";
    const char *params[3] = { j->username, j->value, j->n->id };

    return write_change(j, s, "phone", sql, 3, params, phone_done);
}

void portal_post_phone(struct node *n, struct evhttp_request *req, struct portal_session *s,
                       const struct portal_form *f)
{
    const char *phone = portal_form_get(f, "phone");
    struct users_fields uf = { .phone = phone ? phone : "", .disabled = -1 };
    char *err = NULL;
    struct portal_job *j;

    if (!may_change(n, req, s))
        return;
    if (users_fields_check(&uf, false, &err) < 0) {
        portal_flash(s, true, "%s", err); /* "phone: ...", the admin API's sentence */
        free(err);
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    snprintf(j->value, sizeof(j->value), "%s", uf.phone);
    check_current_pin(j, s, portal_form_get(f, "current_pin"), phone_write, "/portal/home");
}

static void method_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = {
        "method",
        "Your sign-in method was changed.",
        "That method cannot be used with your account.",
    };

    change_done(arg, &c, res, err);
    portal_job_free(arg);
}

void portal_post_method(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    /* Only a method the user can sign in with: a phone for sms, a token for totp or hotp. */
    static const char sql[] =
        "WITH u AS (UPDATE users SET method = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled"
        "  AND (($2 = 'sms' AND phone <> '') OR EXISTS (SELECT 1 FROM oath_tokens t"
        "   WHERE t.user_id = users.id AND t.kind = $2))"
        "  RETURNING username)," AUDIT("\"method\"") " SELECT username FROM u";
    const char *method = portal_form_get(f, "method");
    const char *params[3];
    struct portal_job *j;

    if (!may_change(n, req, s))
        return;
    if (!method || (strcmp(method, "sms") != 0 && strcmp(method, "totp") != 0 &&
                    strcmp(method, "hotp") != 0)) {
        portal_flash(s, true, "Choose a sign-in method from the list.");
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    snprintf(j->value, sizeof(j->value), "%s", method);
    params[0] = j->username;
    params[1] = j->value;
    params[2] = n->id;
    if (!write_change(j, s, "method", sql, 3, params, method_done))
        portal_job_free(j);
}

static void pin_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = { "pin", "Your PIN was changed.", "Your PIN was not changed." };
    static const struct change c_directory = {
        "pin", "Your PIN was changed.",
        "Your PIN was not changed. If you sign in with your company directory password, that "
        "password is changed in the directory."
    };
    struct portal_job *j = arg;

    change_done(j, portal_directory_password(j->n) ? &c_directory : &c, res, err);
    portal_job_free(j);
}

/* The current PIN was right: the new PIN's hash is written. */
static bool pin_write(struct portal_job *j, struct portal_session *s)
{
    /* $4: a directory user's first factor is the directory password; a PIN would be unused. */
    static const char sql[] =
        "WITH u AS (UPDATE users SET pin_hash = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled"
        "  AND NOT ($4::boolean AND to_jsonb(users) ->> 'source' IS NOT DISTINCT FROM 'directory')"
        "  RETURNING username)," AUDIT("\"pin\"") " SELECT username FROM u";
    const char *params[4] = { j->username, j->value, j->n->id,
                              portal_directory_password(j->n) ? "t" : "f" };

    return write_change(j, s, "pin", sql, 4, params, pin_done);
}
void portal_post_pin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                     const struct portal_form *f)
{
    const char *cur = portal_form_get(f, "current_pin"), *pin = portal_form_get(f, "new_pin"),
               *pin2 = portal_form_get(f, "new_pin2");
    char *err = NULL;
    struct portal_job *j;

    if (!may_change(n, req, s))
        return;
    if (!pin || !pin2 || strcmp(pin, pin2) != 0 || !pin_syntax_ok(pin)) {
        portal_flash(s, true, "%s",
                     !pin || !pin2 || strcmp(pin, pin2) != 0
                         ? "The new PINs do not match."
                         : "The new PIN must be 4 to 8 digits.");
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    /* Hashed now, so only the hash waits for the check of the current PIN. */
    if (pin_hash(&n->keys, pin, j->value, sizeof(j->value), &err) < 0) {
        log_error("portal.pin_hash_failed err=%s", err);
        free(err);
        portal_flash(s, true, "%s", portal_msg_failed);
        portal_redirect(n, req, s->id, "/portal/home");
        portal_job_free(j);
        return;
    }
    check_current_pin(j, s, cur, pin_write, "/portal/home");
}

/* ---- a TOTP app ---- */

void portal_page_totp(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    char secret[B32_ENCODED_LEN(PORTAL_SEED_LEN) + 1], *uri;
    struct pbuf b = { 0 };

    if (s->state != PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/");
        return;
    }
    /* One pending seed per session, until a code confirms it or the session ends. */
    if (!s->has_seed && rand_bytes(s->seed, sizeof(s->seed)) < 0) {
        portal_send_message(n, req, 500, s->id, "Error", "The server has no random numbers.");
        return;
    }
    s->has_seed = true;
    if (b32_encode(s->seed, sizeof(s->seed), secret, sizeof(secret)) < 0 ||
        !(uri = users_totp_uri(s->username, secret))) {
        portal_send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        return;
    }
    portal_page_begin(&b, n, "Set up an authenticator app", s);
    pbuf_printf(&b,
                "<p>Scan the QR code with your authenticator app, or type in the key. Then "
                "enter the code the app shows, and your %s, to finish.</p>",
                portal_directory_password(n) ? "password or PIN" : "PIN");
    if (portal_qr_svg(&b, uri) < 0)
        pbuf_puts(&b, "<p>The QR code cannot be drawn; type in the key instead.</p>");
    pbuf_puts(&b, "<p>Key: <code id=\"totp-secret\">");
    pbuf_escape(&b, secret);
    pbuf_puts(&b, "</code></p><p>Link: <code id=\"otpauth-uri\">");
    pbuf_escape(&b, uri);
    pbuf_puts(&b, "</code></p>");
    portal_form_begin(&b, "totp-form", "/portal/totp", s);
    pbuf_puts(&b, "<label for=\"code\">Code from the app</label>"
                  "<input id=\"code\" name=\"code\" inputmode=\"numeric\" "
                  "autocomplete=\"one-time-code\" required>"
                  "<label for=\"totp-pin\">");
    pbuf_puts(&b, portal_directory_password(n)
                      ? "Your password or PIN</label><input id=\"totp-pin\" name=\"current_pin\" "
                        "type=\"password\" "
                      : "Your current PIN</label><input id=\"totp-pin\" name=\"current_pin\" "
                        "type=\"password\" inputmode=\"numeric\" ");
    pbuf_puts(&b, "autocomplete=\"current-password\">"
                  "<button type=\"submit\">Finish</button></form>"
                  "<p><a href=\"/portal/home\">Back to your settings</a></p>");
    portal_page_end(&b, n);
    portal_send_page(n, req, 200, s->id, &b);
    secret_wipe(secret, sizeof(secret));
    secret_wipe(uri, strlen(uri));
    free(uri);
}

static void totp_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = { "totp", "Authenticator app set up.",
                                     "Your account could not be found." };
    struct portal_job *j = arg;

    if (!err && PQntuples(res) > 0)
        log_notice("portal.totp_enrolled username=%s serial=%s", j->username, j->serial);
    change_done(j, &c, res, err);
    portal_job_free(j);
}

/* The current PIN was right: the pending seed is sealed and stored (the admin API's enrolment). */
static bool totp_write(struct portal_job *j, struct portal_session *s)
{
    const char *params[8];
    char *sealed = NULL, *err = NULL;
    bool queued;

    if (users_totp_serial(j->username, j->serial, sizeof(j->serial)) < 0 ||
        seal_encrypt(&j->n->keys, j->seed, sizeof(j->seed), j->serial, &sealed, &err) < 0) {
        log_error("portal.totp_seal_failed err=%s", err ? err : "no random numbers");
        free(err);
        portal_flash(s, true, "%s", portal_msg_failed);
        portal_redirect(j->n, j->req, s->id, "/portal/home");
        return false;
    }
    /*
     * The admin API's enrolment, by the user: the confirming code's step
     * (j->value) is marked used (it cannot sign in again), and a disabled
     * user gets none.
     */
    params[0] = j->username;
    params[1] = j->serial;
    params[2] = sealed;
    params[3] = "portal";
    params[4] = j->n->id;
    params[5] = j->value;
    params[6] = "portal";
    params[7] = "t";
    /* The pending seed is spent: on success it is in the database, else set up again. */
    if (s->has_seed && memcmp(s->seed, j->seed, sizeof(s->seed)) == 0) {
        secret_wipe(s->seed, sizeof(s->seed));
        s->has_seed = false;
    }
    queued = write_change(j, s, "totp", users_totp_enrol_sql, 8, params, totp_done);
    free(sealed);
    return queued;
}

void portal_post_totp(struct node *n, struct evhttp_request *req, struct portal_session *s,
                      const struct portal_form *f)
{
    const char *code = portal_form_get(f, "code");
    uint64_t matched = 0;
    struct portal_job *j;

    if (s->state != PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/");
        return;
    }
    if (!s->has_seed) {
        portal_flash(s, true, "Start the set-up again.");
        portal_redirect(n, req, s->id, "/portal/totp");
        return;
    }
    if (!code || otp_totp_check(s->seed, sizeof(s->seed), (uint64_t)time(NULL), TOTP_PERIOD,
                                (unsigned)node_conf(n)->node.otp.totp_window, TOTP_DIGITS, OTP_SHA1,
                                code, &matched) != 1) {
        portal_flash(s, true,
                     "That code is not right. Check that your phone's clock is right and enter "
                     "the code the app shows now.");
        portal_redirect(n, req, s->id, "/portal/totp");
        return;
    }
    if (!may_change(n, req, s))
        return;
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    memcpy(j->seed, s->seed, sizeof(j->seed));
    snprintf(j->value, sizeof(j->value), "%llu", (unsigned long long)matched);
    /* A wrong current PIN keeps the pending seed: the page is shown again. */
    check_current_pin(j, s, portal_form_get(f, "current_pin"), totp_write, "/portal/totp");
}
