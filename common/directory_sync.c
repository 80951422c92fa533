/*
 * The directory sync (directory.h): the plan, which compares the directory's
 * entries with the database's users and decides, and the run, which fetches,
 * plans and applies on the primary.
 *
 * Invariants: the sync writes only users of its own (source 'directory') or
 * a local one it adopts (directory.adopt_local), and of them only
 * display_name, email, phone, disabled, source, the directory_* columns and
 * updated_at: never a PIN, a method or a token. It disables only what it
 * can re-enable: a user it disabled carries directory_missing_since, and
 * one an administrator disabled stays disabled when its entry comes back.
 * An empty directory result is a broken directory or filter, never a mass
 * departure: it changes nothing, even when forced. Every run leaves a row
 * in directory_syncs (but one that found the lock taken, or that its stop
 * flag ended: a node stopping is not a failed sync), and a run that
 * changed users an admin_audit row.
 *
 * Usernames are compared by the keys PostgreSQL's lower() makes of them,
 * asked of the database in one query: the C library folds ASCII only, the
 * database Unicode, and the two must never disagree on who is who.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "directory.h"
#include "directory_priv.h"
#include "errmsg.h"
#include "schema.h"

/* ---- the plan */

static const char *const change_names[] = {
    [DIR_UNCHANGED] = "unchanged", [DIR_CREATE] = "create",   [DIR_UPDATE] = "update",
    [DIR_ENABLE] = "enable",       [DIR_DISABLE] = "disable", [DIR_ADOPT] = "adopt",
    [DIR_CONFLICT] = "conflict",
};

static int cmp_current(const void *a, const void *b)
{
    const struct directory_current *const *x = a, *const *y = b;

    return strcmp(directory_current_key(*x), directory_current_key(*y));
}

/* The value the sync stores for a field: the entry's, or the stored one when the entry's broke a
 * rule. */
static const char *field_value(const struct directory_user *e, const struct directory_current *c,
                               unsigned flag, const char *mine, const char *stored)
{
    return c && (e->invalid & flag) ? stored : mine;
}

#define DISPLAY_NAME(e, c)                                                                         \
    field_value(e, c, DIRECTORY_INVALID_DISPLAY_NAME, (e)->display_name,                           \
                (c) ? (c)->display_name : "")
#define EMAIL(e, c) field_value(e, c, DIRECTORY_INVALID_EMAIL, (e)->email, (c) ? (c)->email : "")
#define PHONE(e, c) field_value(e, c, DIRECTORY_INVALID_PHONE, (e)->phone, (c) ? (c)->phone : "")

static bool differs(const struct directory_user *e, const struct directory_current *c)
{
    return strcmp(e->dn, c->dn) != 0 || strcmp(DISPLAY_NAME(e, c), c->display_name) != 0 ||
           strcmp(EMAIL(e, c), c->email) != 0 || strcmp(PHONE(e, c), c->phone) != 0;
}

/* What becomes of the user <c> (NULL: none of that name) for the entry <e>. */
static enum directory_change decide(const struct appconf *conf, const struct directory_user *e,
                                    const struct directory_current *c)
{
    if (!c)
        return DIR_CREATE;
    if (c->local)
        return conf->directory.adopt_local ? DIR_ADOPT : DIR_CONFLICT;
    if (c->missing)
        return DIR_ENABLE;
    return differs(e, c) ? DIR_UPDATE : DIR_UNCHANGED;
}

static void add_step(struct directory_plan *plan, enum directory_change change,
                     const struct directory_user *e, const struct directory_current *c)
{
    plan->steps[plan->nsteps++] = (struct directory_step){ change, e, c };
    plan->counts[change]++;
}

/* The guard (directory.h): sets plan->refused and the reason. */
static void guard(const struct appconf *conf, size_t nusers, const struct directory_current *cur,
                  size_t ncur, bool force, struct directory_plan *plan)
{
    size_t ours = 0, enabled = 0, disable = plan->counts[DIR_DISABLE], allowed;
    int pct = conf->directory.max_disable_percent, min = conf->directory.max_disable_min;

    for (size_t i = 0; i < ncur; i++) {
        ours += !cur[i].local;
        enabled += !cur[i].local && !cur[i].disabled;
    }
    /* max(pct% of enabled, min): a few departures from a small directory are not a disaster
     * (disable > floor(pct * enabled / 100) is disable * 100 > pct * enabled) */
    allowed = (size_t)pct * enabled / 100;
    if (min > 0 && (size_t)min > allowed)
        allowed = (size_t)min;
    if (nusers == 0 && ours > 0) {
        plan->refused = true;
        snprintf(plan->reason, sizeof(plan->reason),
                 "the directory returned no users while %zu directory users are here: a broken "
                 "directory, base_dn, filter or group, not everyone leaving; nothing changed",
                 ours);
    } else if (!force && disable > allowed) {
        plan->refused = true;
        snprintf(plan->reason, sizeof(plan->reason),
                 "the sync would disable %zu of the %zu enabled directory users, more than "
                 "directory.max_disable_percent (%d%%) and directory.max_disable_min (%d) allow; "
                 "nothing changed (force it if that is right)",
                 disable, enabled, pct, min);
    }
}

struct entry_key {
    const char *key;
    size_t index;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Marks in <dup> each entry whose username an earlier one has (fetch drops them; be safe). */
static int mark_duplicates(const struct directory_user *users, size_t n, bool *dup)
{
    struct entry_key *keys = calloc(n + 1, sizeof(*keys));

    if (!keys)
        return -1;
    for (size_t i = 0; i < n; i++)
        keys[i] = (struct entry_key){ directory_user_key(&users[i]), i };
    qsort(keys, n, sizeof(*keys), cmp_entry);
    for (size_t i = 1; i < n; i++)
        dup[keys[i].index] = strcmp(keys[i].key, keys[i - 1].key) == 0;
    free(keys);
    return 0;
}

int directory_plan_make(const struct appconf *conf, const struct directory_user *users,
                        size_t nusers, const struct directory_current *current, size_t ncurrent,
                        bool force, struct directory_plan *plan)
{
    const struct directory_current **index;
    bool *seen, *dup;

    memset(plan, 0, sizeof(*plan));
    plan->steps = calloc(nusers + ncurrent + 1, sizeof(*plan->steps));
    index = calloc(ncurrent + 1, sizeof(*index));
    seen = calloc(ncurrent + 1, sizeof(*seen));
    dup = calloc(nusers + 1, sizeof(*dup));
    if (!plan->steps || !index || !seen || !dup || mark_duplicates(users, nusers, dup) < 0) {
        free(index);
        free(seen);
        free(dup);
        directory_plan_free(plan);
        return -1;
    }
    for (size_t i = 0; i < ncurrent; i++)
        index[i] = &current[i];
    qsort(index, ncurrent, sizeof(*index), cmp_current);
    for (size_t i = 0; i < nusers; i++) {
        struct directory_current key = { .username = users[i].username,
                                         .key = (char *)(uintptr_t)directory_user_key(&users[i]) },
                                 *pkey = &key;
        const struct directory_current **hit =
            ncurrent ? bsearch(&pkey, index, ncurrent, sizeof(*index), cmp_current) : NULL;
        const struct directory_current *c = hit ? *hit : NULL;

        if (dup[i])
            continue;
        if (c)
            seen[c - current] = true;
        add_step(plan, decide(conf, &users[i], c), &users[i], c);
    }
    /* gone from the directory: disabled, unless disabled already (by the sync or an admin) */
    for (size_t i = 0; i < ncurrent; i++) {
        if (!seen[i] && !current[i].local && !current[i].disabled)
            add_step(plan, DIR_DISABLE, NULL, &current[i]);
    }
    free(index);
    free(seen);
    free(dup);
    guard(conf, nusers, current, ncurrent, force, plan);
    return 0;
}

void directory_plan_free(struct directory_plan *plan)
{
    mfa_free(plan->steps);
    plan->nsteps = 0;
}

/* ---- the run */

/* The database's answer <res> as a sentence for *err, without libpq's line end. */
static int pq_err(char **err, const char *what, const PGresult *res, const PGconn *conn)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    size_t len;

    if (!m)
        m = PQerrorMessage(conn);
    len = strcspn(m, "\n");

    return err_set(err, "directory sync: %s: %.*s", what, (int)len, *m ? m : "no answer");
}

/* Runs <sql> with <n> <params>; 0 when it did, -1 with *err. *out (may be NULL) keeps the rows. */
static int run(PGconn *conn, const char *what, const char *sql, int n, const char *const *params,
               PGresult **out, char **err)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pq_err(err, what, res, conn);
        PQclear(res);
        return -1;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

static void iso_now(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *trigger_name(enum directory_trigger t)
{
    return t == DIRECTORY_TRIGGER_MFACTL ? "mfactl" : "schedule";
}

/* Takes the cluster-wide sync lock for the session. 1 taken, 0 held by another, -1 with *err. */
static int lock_take(PGconn *conn, char **err)
{
    PGresult *res = NULL;
    int taken;

    if (run(conn, "taking the sync lock", "SELECT pg_try_advisory_lock(" DIRECTORY_LOCK_KEY ")", 0,
            NULL, &res, err) < 0)
        return -1;
    taken = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return taken;
}

static void lock_release(PGconn *conn)
{
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" DIRECTORY_LOCK_KEY ")"));
}

static void current_free(struct directory_current *cur, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cur[i].username);
        free(cur[i].dn);
        free(cur[i].display_name);
        free(cur[i].email);
        free(cur[i].phone);
        free(cur[i].key);
    }
    free(cur);
}

/* The entries' usernames as a JSON array text (malloc'd), or NULL. */
static char *usernames_json(const struct directory_user *users, size_t n)
{
    json_t *a = json_array();
    char *s = NULL;

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_string(users[i].username)) < 0)
            goto out;
    }
    s = a ? json_dumps(a, JSON_COMPACT) : NULL;
out:
    json_decref(a);
    return s;
}

/*
 * Reads, locking them for this transaction, the sync's users and the local
 * ones that have an entry's name. Returns 0 with *cur (*ncur), or -1 with *err.
 */
static int read_current(PGconn *conn, const struct directory_user *users, size_t nusers,
                        struct directory_current **cur, size_t *ncur, char **err)
{
    static const char sql[] =
        "SELECT username, coalesce(directory_dn, ''), display_name, email, phone,"
        " source = 'local', disabled, directory_missing_since IS NOT NULL, lower(username)"
        " FROM users"
        " WHERE source = 'directory' OR (source = 'local' AND lower(username) IN"
        "  (SELECT lower(value) FROM json_array_elements_text($1::json)))"
        " FOR UPDATE";
    char *names = usernames_json(users, nusers);
    const char *params[1] = { names };
    PGresult *res = NULL;
    bool ok;
    int n;

    *cur = NULL;
    *ncur = 0;
    if (!names)
        return err_set(err, "directory sync: out of memory");
    n = run(conn, "reading the users", sql, 1, params, &res, err);
    free(names);
    if (n < 0)
        return -1;
    n = PQntuples(res);
    *cur = calloc((size_t)n + 1, sizeof(**cur));
    ok = *cur != NULL;
    for (int i = 0; ok && i < n; i++) {
        struct directory_current *c = &(*cur)[i];

        c->username = strdup(PQgetvalue(res, i, 0));
        c->dn = strdup(PQgetvalue(res, i, 1));
        c->display_name = strdup(PQgetvalue(res, i, 2));
        c->email = strdup(PQgetvalue(res, i, 3));
        c->phone = strdup(PQgetvalue(res, i, 4));
        c->local = strcmp(PQgetvalue(res, i, 5), "t") == 0;
        c->disabled = strcmp(PQgetvalue(res, i, 6), "t") == 0;
        c->missing = strcmp(PQgetvalue(res, i, 7), "t") == 0;
        c->key = strdup(PQgetvalue(res, i, 8));
        *ncur = (size_t)i + 1;
        ok = c->username && c->dn && c->display_name && c->email && c->phone && c->key;
    }
    PQclear(res);
    if (!ok) {
        current_free(*cur, *ncur);
        *cur = NULL;
        *ncur = 0;
        return err_set(err, "directory sync: out of memory");
    }
    return 0;
}

/*
 * Sets each entry's key to the database's lower() of its username, in one
 * query, so that matching and duplicates follow the same folding as the
 * users table's lower(username) uniqueness. Returns 0, or -1 with *err.
 */
static int fold_keys(PGconn *conn, struct directory_user *users, size_t n, char **err)
{
    static const char sql[] = "SELECT lower(value) FROM json_array_elements_text($1::json)"
                              " WITH ORDINALITY AS x(value, i) ORDER BY i";
    char *names;
    const char *params[1];
    PGresult *res = NULL;
    int rc;

    if (n == 0)
        return 0;
    names = usernames_json(users, n);
    if (!names)
        return err_set(err, "directory sync: out of memory");
    params[0] = names;
    rc = run(conn, "folding the usernames", sql, 1, params, &res, err);
    free(names);
    if (rc < 0)
        return -1;
    if ((size_t)PQntuples(res) != n) {
        int got = PQntuples(res);

        PQclear(res);
        return err_set(err, "directory sync: folding the usernames: %d answers for %zu names", got,
                       n);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        free(users[i].key);
        users[i].key = strdup(PQgetvalue(res, (int)i, 0));
        if (!users[i].key)
            rc = err_set(err, "directory sync: out of memory");
    }
    PQclear(res);
    return rc;
}

/* ---- the report */

/* Appends <v> to the report's array <key>, listing at most DIRECTORY_REPORT_LIST_MAX (then
 * counting). */
static void report_list(json_t *report, const char *key, json_t *v)
{
    json_t *a = json_object_get(report, key);
    char more[64];

    if (!a) {
        a = json_array();
        json_object_set_new(report, key, a);
    }
    if (json_array_size(a) < DIRECTORY_REPORT_LIST_MAX) {
        json_array_append_new(a, v);
        return;
    }
    json_decref(v);
    snprintf(more, sizeof(more), "%s_more", key);
    json_object_set_new(report, more,
                        json_integer(json_integer_value(json_object_get(report, more)) + 1));
}

static const char *step_username(const struct directory_step *s)
{
    return s->entry ? s->entry->username : s->current->username;
}

static void report_plan(json_t *report, const struct directory_plan *plan, size_t nusers)
{
    json_object_set_new(report, "created", json_integer((json_int_t)plan->counts[DIR_CREATE]));
    json_object_set_new(report, "updated", json_integer((json_int_t)plan->counts[DIR_UPDATE]));
    json_object_set_new(report, "enabled", json_integer((json_int_t)plan->counts[DIR_ENABLE]));
    json_object_set_new(report, "disabled", json_integer((json_int_t)plan->counts[DIR_DISABLE]));
    json_object_set_new(report, "adopted", json_integer((json_int_t)plan->counts[DIR_ADOPT]));
    json_object_set_new(report, "unchanged", json_integer((json_int_t)plan->counts[DIR_UNCHANGED]));
    json_object_set_new(report, "directory_users", json_integer((json_int_t)nusers));
    json_object_set_new(report, "conflicts", json_array());
    json_object_set_new(report, "changes", json_array());
    for (size_t i = 0; i < plan->nsteps; i++) {
        const struct directory_step *s = &plan->steps[i];

        if (s->change == DIR_CONFLICT)
            report_list(report, "conflicts", json_string(step_username(s)));
        else if (s->change != DIR_UNCHANGED)
            report_list(report, "changes",
                        json_pack("{s:s, s:s}", "username", step_username(s), "change",
                                  change_names[s->change]));
    }
    if (plan->refused)
        json_object_set_new(report, "reason", json_string(plan->reason));
}

static json_t *report_new(const char *started)
{
    json_t *r = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:[], s:[], s:[], s:[], s:i}",
                          "result", "failed", "started_at", started, "created", 0, "updated", 0,
                          "enabled", 0, "disabled", 0, "adopted", 0, "unchanged", 0, "conflicts",
                          "skipped", "invalid", "changes", "directory_users", 0);

    return r ? r : json_object();
}

/* ---- applying */

/* The rows of one kind of change as a JSON array text (malloc'd), or NULL (out of memory). */
static char *rows_json(const struct directory_plan *plan, bool updates)
{
    json_t *a = json_array();
    char *s = NULL;

    for (size_t i = 0; a && i < plan->nsteps; i++) {
        const struct directory_step *st = &plan->steps[i];
        const struct directory_user *e = st->entry;
        const struct directory_current *c = st->current;
        bool upd = st->change == DIR_UPDATE || st->change == DIR_ENABLE || st->change == DIR_ADOPT;
        json_t *row;

        if (updates ? !upd : st->change != DIR_CREATE)
            continue;
        row = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "username", e->username, "dn", e->dn,
                        "display_name", DISPLAY_NAME(e, c), "email", EMAIL(e, c), "phone",
                        PHONE(e, c), "enable", st->change == DIR_ENABLE, "adopt",
                        st->change == DIR_ADOPT);
        if (json_array_append_new(a, row) < 0)
            goto out;
    }
    s = a ? json_dumps(a, JSON_COMPACT) : NULL;
out:
    json_decref(a);
    return s;
}

static char *disabled_json(const struct directory_plan *plan)
{
    json_t *a = json_array();
    char *s = NULL;

    for (size_t i = 0; a && i < plan->nsteps; i++) {
        if (plan->steps[i].change == DIR_DISABLE &&
            json_array_append_new(a, json_string(plan->steps[i].current->username)) < 0)
            goto out;
    }
    s = a ? json_dumps(a, JSON_COMPACT) : NULL;
out:
    json_decref(a);
    return s;
}

/*
 * Runs <sql> with the JSON text <rows> as $1 and <p2> as $2 (when not NULL),
 * and checks that it wrote <expect> rows: a user that changed under the plan
 * (its source, its name) fails the transaction rather than being written
 * half. Frees <rows>. Returns 0, or -1 with *err.
 */
static int run_rows(PGconn *conn, const char *what, const char *sql, char *rows, const char *p2,
                    size_t expect, char **err)
{
    const char *params[2] = { rows, p2 };
    PGresult *res = NULL;
    long long wrote;
    int rc;

    if (!rows)
        return err_set(err, "directory sync: out of memory");
    rc = run(conn, what, sql, p2 ? 2 : 1, params, &res, err);
    free(rows);
    if (rc < 0)
        return -1;
    wrote = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (wrote != (long long)expect)
        return err_set(err,
                       "directory sync: %s: %lld rows written where the plan had %zu; nothing "
                       "changed",
                       what, wrote, expect);
    return 0;
}

/* The plan's writes, in the caller's transaction. Returns 0, or -1 with *err. */
static int apply(PGconn *conn, const struct appconf *conf, const struct directory_plan *plan,
                 char **err)
{
    static const char create_sql[] =
        "INSERT INTO users (username, display_name, email, phone, method, source, directory_dn,"
        " directory_synced_at)"
        " SELECT x.username, x.display_name, x.email, x.phone, $2, 'directory', x.dn, now()"
        " FROM json_to_recordset($1::json)"
        "  AS x(username text, dn text, display_name text, email text, phone text)";
    /* never pin_hash, method or tokens; enabled again only what the sync disabled */
    static const char update_sql[] =
        "UPDATE users u SET display_name = x.display_name, email = x.email, phone = x.phone,"
        " source = 'directory', directory_dn = x.dn, directory_synced_at = now(),"
        " updated_at = now(),"
        " disabled = CASE WHEN x.enable AND u.directory_missing_since IS NOT NULL THEN false"
        "  ELSE u.disabled END,"
        " directory_missing_since = CASE WHEN x.enable THEN NULL"
        "  ELSE u.directory_missing_since END"
        " FROM json_to_recordset($1::json)"
        "  AS x(username text, dn text, display_name text, email text, phone text, enable boolean,"
        "  adopt boolean)"
        " WHERE lower(u.username) = lower(x.username) AND (u.source = 'directory' OR x.adopt)";
    static const char disable_sql[] =
        "UPDATE users SET disabled = true, directory_missing_since = now(), updated_at = now()"
        " WHERE source = 'directory' AND NOT disabled AND lower(username) IN"
        "  (SELECT lower(value) FROM json_array_elements_text($1::json))";

    size_t updates = plan->counts[DIR_UPDATE] + plan->counts[DIR_ENABLE] + plan->counts[DIR_ADOPT];

    if (plan->counts[DIR_CREATE] &&
        run_rows(conn, "creating users", create_sql, rows_json(plan, false),
                 conf->directory.default_method, plan->counts[DIR_CREATE], err) < 0)
        return -1;
    if (updates &&
        run_rows(conn, "updating users", update_sql, rows_json(plan, true), NULL, updates, err) < 0)
        return -1;
    if (plan->counts[DIR_DISABLE] &&
        run_rows(conn, "disabling users", disable_sql, disabled_json(plan), NULL,
                 plan->counts[DIR_DISABLE], err) < 0)
        return -1;
    return 0;
}

static bool changed(const struct directory_plan *plan)
{
    return plan->counts[DIR_CREATE] + plan->counts[DIR_UPDATE] + plan->counts[DIR_ENABLE] +
               plan->counts[DIR_DISABLE] + plan->counts[DIR_ADOPT] >
           0;
}

/* The admin_audit row of a sync that changed users: who, and the counts. */
static int audit(PGconn *conn, const struct directory_sync_opts *opts, json_t *report, char **err)
{
    static const char sql[] = "INSERT INTO admin_audit (actor, node_id, action, target, detail)"
                              " VALUES ($1, $2, 'directory.sync', '', $3::jsonb)";
    json_t *d = json_pack(
        "{s:O?, s:O?, s:O?, s:O?, s:O?}", "created", json_object_get(report, "created"), "updated",
        json_object_get(report, "updated"), "enabled", json_object_get(report, "enabled"),
        "disabled", json_object_get(report, "disabled"), "adopted",
        json_object_get(report, "adopted"));
    char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
    const char *params[3] = { opts->trigger == DIRECTORY_TRIGGER_MFACTL ? "mfactl"
                                                                        : "directory-sync",
                              opts->node_id ? opts->node_id : "", detail };
    int rc;

    json_decref(d);
    if (!detail)
        return err_set(err, "directory sync: out of memory");
    rc = run(conn, "writing the audit row", sql, 3, params, NULL, err);
    free(detail);
    return rc;
}

/* Writes the directory_syncs row of this run, in whatever transaction is open (or none). */
static int record(PGconn *conn, const struct directory_sync_opts *opts, json_t *report,
                  const char *error, char **err)
{
    static const char sql[] =
        "INSERT INTO directory_syncs (started_at, finished_at, node_id, trigger, result, report,"
        " error) VALUES ($1, now(), $2, $3, $4, $5::jsonb, $6)";
    char finished[32], *text;
    const char *params[6];
    int rc;

    iso_now(finished, sizeof(finished));
    json_object_set_new(report, "finished_at", json_string(finished));
    text = json_dumps(report, JSON_COMPACT);
    if (!text)
        return err_set(err, "directory sync: out of memory");
    params[0] = json_string_value(json_object_get(report, "started_at"));
    params[1] = opts->node_id ? opts->node_id : "";
    params[2] = trigger_name(opts->trigger);
    params[3] = json_string_value(json_object_get(report, "result"));
    params[4] = text;
    params[5] = error ? error : "";
    rc = run(conn, "recording the sync", sql, 6, params, NULL, err);
    free(text);
    return rc;
}

static bool stop_requested(const struct directory_sync_opts *opts)
{
    return opts->stop && atomic_load(opts->stop);
}

/* A run its stop flag ended, whatever error the stop caused (a cancelled statement, a shut down
 * socket): no row, so that the sync is due again as it was; DIRECTORY_SYNC_STOPPED. */
static int stopped(json_t *report, char **err)
{
    static const char why[] = "directory sync: stopped (the node is stopping); nothing changed";

    json_object_set_new(report, "result", json_string("stopped"));
    json_object_set_new(report, "reason", json_string(why));
    err_set(err, "%s", why);
    return DIRECTORY_SYNC_STOPPED;
}

/* Ends a run that changed nothing: rolls back, records it and returns <rc> (stopped: no row). */
static int finish_unchanged(PGconn *conn, const struct directory_sync_opts *opts, json_t *report,
                            const char *result, int rc, char **err)
{
    char *error;

    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
    if (stop_requested(opts))
        return stopped(report, err);
    error = rc < 0 && err && *err ? strdup(*err) : NULL;
    json_object_set_new(report, "result", json_string(result));
    if (rc < 0 && !json_object_get(report, "reason") && error)
        json_object_set_new(report, "reason", json_string(error));
    if (record(conn, opts, report, error, rc < 0 ? NULL : err) < 0 && rc >= 0)
        rc = -1;
    free(error);
    return rc;
}

/* The skipped list (the dedup added to it) kept to DIRECTORY_REPORT_LIST_MAX, the rest counted. */
static void cap_skipped(json_t *report)
{
    json_t *a = json_object_get(report, "skipped");
    json_int_t more = json_integer_value(json_object_get(report, "skipped_more"));
    size_t n = json_array_size(a);

    if (n <= DIRECTORY_REPORT_LIST_MAX)
        return;
    for (size_t i = n; i > DIRECTORY_REPORT_LIST_MAX; i--)
        json_array_remove(a, i - 1);
    json_object_set_new(report, "skipped_more",
                        json_integer(more + (json_int_t)(n - DIRECTORY_REPORT_LIST_MAX)));
}

/* Fetches, plans and, unless refused or dry, applies with the directory_syncs row. */
static int sync_locked(PGconn *conn, const struct appconf *conf,
                       const struct directory_sync_opts *opts, json_t *report, char **err)
{
    struct directory_user *users = NULL;
    struct directory_current *cur = NULL;
    struct directory_plan plan = { 0 };
    size_t nusers = 0, ncur = 0;
    int rc = -1;

    if (directory_fetch(conf, opts->stop, &users, &nusers, report, err) < 0)
        return finish_unchanged(conn, opts, report, "failed", -1, err);
    if (fold_keys(conn, users, nusers, err) < 0 ||
        directory_users_dedup(users, &nusers, json_object_get(report, "skipped")) < 0) {
        if (err && !*err)
            err_set(err, "directory sync: out of memory");
        goto fail;
    }
    cap_skipped(report);
    if (run(conn, "starting the transaction", "BEGIN", 0, NULL, NULL, err) < 0 ||
        run(conn, "starting the transaction", "SET LOCAL synchronous_commit TO remote_apply", 0,
            NULL, NULL, err) < 0 ||
        read_current(conn, users, nusers, &cur, &ncur, err) < 0)
        goto fail;
    if (directory_plan_make(conf, users, nusers, cur, ncur, opts->force, &plan) < 0) {
        err_set(err, "directory sync: out of memory");
        goto fail;
    }
    report_plan(report, &plan, nusers);
    if (plan.refused) {
        rc = finish_unchanged(conn, opts, report, "refused", 1, err);
    } else if (opts->dry_run) {
        rc = finish_unchanged(conn, opts, report, "dry_run", 0, err);
    } else if (stop_requested(opts)) {
        err_set(err, "directory sync: stopped before applying; nothing changed");
        goto fail;
    } else {
        json_object_set_new(report, "result", json_string("ok"));
        if (apply(conn, conf, &plan, err) < 0 ||
            (changed(&plan) && audit(conn, opts, report, err) < 0) ||
            record(conn, opts, report, NULL, err) < 0 ||
            run(conn, "committing", "COMMIT", 0, NULL, NULL, err) < 0)
            goto fail;
        rc = 0;
    }
    goto out;
fail:
    rc = finish_unchanged(conn, opts, report, "failed", -1, err);
out:
    directory_plan_free(&plan);
    current_free(cur, ncur);
    directory_users_free(users, nusers);
    return rc;
}

int directory_sync_run(PGconn *conn, const struct appconf *conf,
                       const struct directory_sync_opts *opts, json_t **report, char **err)
{
    char started[32];
    int version = 0, rc;

    iso_now(started, sizeof(started));
    *report = report_new(started);
    if (schema_version(conn, &version, err) < 0)
        return stop_requested(opts) ? stopped(*report, err) : -1;
    if (version < 3)
        return err_set(err,
                       "directory sync: the database is at schema version %d and the sync needs "
                       "3; finish the upgrade first",
                       version);
    rc = lock_take(conn, err);
    if (rc < 0)
        return stop_requested(opts) ? stopped(*report, err) : -1;
    if (rc == 0) {
        /* not a failure: the other one is doing the work; no row, the caller tries later */
        err_set(err, "another directory sync is running");
        json_object_set_new(*report, "result", json_string("busy"));
        json_object_set_new(*report, "reason", json_string("another directory sync is running"));
        return DIRECTORY_SYNC_BUSY;
    }
    rc = sync_locked(conn, conf, opts, *report, err);
    lock_release(conn);
    return rc;
}
