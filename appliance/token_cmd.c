/*
 * mfactl token import|list|assign|unassign; see token_cmd.h and
 * docs/tokens.md.
 *
 * An import is all or nothing: the file is parsed whole (tokenfile.h), every
 * seed sealed under the key file's current seal key bound to its serial (as
 * the node seals an enrolled TOTP seed, users_totp.c, so the node opens it),
 * and the tokens written on the writable primary in ONE transaction with an
 * audit row per token and one for the import. A serial the cluster has already, or a user it does
 * not know, fails the whole import before anything is written. Seeds and passphrases are wiped once
 * used and never printed.
 *
 * Which token signs a user in: node/auth.c takes the user's newest token
 * whose kind is the user's method. So `token assign` makes the token the
 * user's only one of its kind (others of that kind are unassigned, kept) and
 * sets the user's method to its kind; it refuses to take a token from
 * another user, or to give a user another user's enrolled app, unless
 * --move says so. An import only assigns, as the file says, and warns about
 * users whose method is another kind and users whose signing token it
 * changes (a newer token of the kind now signs them in).
 */
#include "token_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "seal.h"
#include "secrets.h"
#include "strlist.h"
#include "token_priv.h"
#include "tokenfile.h"

#define IMPORT_BATCH 1000 /* tokens per INSERT statement */
#define NAMES_SHOWN  5    /* serials or users named in a refusal */

static const char usage_text[] =
    "usage: mfactl token import FILE [--format csv|pskc] [--passphrase-file F]\n"
    "       mfactl token list [--user U] [--unassigned] [--json]\n"
    "       mfactl token assign SERIAL USER [--move] [--json]\n"
    "       mfactl token unassign SERIAL [--json]\n"
    "\n"
    "OATH tokens (TOTP, HOTP) from seed files, and who signs in with them\n"
    "(docs/tokens.md). Run as root on a member: the seeds are sealed with the key\n"
    "file. Writes go to the writable primary, list reads this member's database.\n"
    "\n"
    "  import    a CSV seed file or a PSKC (RFC 6030) file, all or nothing: a serial\n"
    "            the cluster has already, or a user it does not know, imports nothing.\n"
    "            --format: default from the content; --passphrase-file: the first\n"
    "            line of F decrypts a PSKC file's seeds (else asked on the terminal).\n"
    "            A token naming a user is assigned to that user.\n"
    "  list      serial, type, digits, period or counter, user, created; never a seed.\n"
    "            --user: that user's tokens; --unassigned: tokens of nobody\n"
    "  assign    the user signs in with this token from now on: the user's method\n"
    "            becomes the token's type and the user's other tokens of that type\n"
    "            are unassigned. A token of another user (or another user's\n"
    "            enrolled app, totp-OTHER-...) is refused unless --move: it is\n"
    "            then taken from them\n"
    "  unassign  the token belongs to nobody (it is kept)\n"
    "\n"
    "exit codes: 0 done, 1 failed (nothing was changed), 2 bad usage or configuration\n"
    "(an unreadable or empty passphrase file too),\n"
    "3 refused (no writable primary), 4 no member's database answered\n";

/* ---- import ---- */

/* Reads <path> whole (at most TOKENFILE_MAX_BYTES) into a malloc'd, NUL-terminated *text. */
static int read_file(const char *path, char **text, size_t *len, char **err)
{
    /* O_NONBLOCK: a FIFO must not hang the open before fstat() refuses it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    size_t got = 0;
    ssize_t n;
    char *buf;

    if (fd < 0)
        return err_set(err, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s is not a regular file", path);
    }
    if ((unsigned long long)st.st_size > TOKENFILE_MAX_BYTES) {
        close(fd);
        return err_set(err, "%s is larger than %u bytes", path, TOKENFILE_MAX_BYTES);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return err_set(err, "out of memory");
    }
    while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)n;
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return err_set(err, "cannot read %s whole", path);
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
}

/*
 * Parses <path> into <set>; *fmt: as given, or TOKENFILE_UNKNOWN to detect
 * (then set). Returns 0, -1 with *err (a bad file), or -2 with *err (the
 * passphrase could not be had: a usage error).
 */
static int parse_file(const char *path, enum tokenfile_format *fmt, const char *passfile,
                      struct token_set *set, char **err)
{
    char *text = NULL, pass[TOKEN_PASSPHRASE_MAX + 1] = "";
    size_t len = 0;
    int rc;

    if (read_file(path, &text, &len, err) < 0)
        return -1;
    if (*fmt == TOKENFILE_UNKNOWN)
        *fmt = tokenfile_detect(text, len);
    if (*fmt == TOKENFILE_CSV) {
        rc = tokenfile_read_csv(text, len, set, err);
    } else if (!tokenfile_pskc_encrypted(text, len)) {
        if (passfile)
            fprintf(stderr,
                    "mfactl token import: warning: %s holds no encrypted seed; "
                    "--passphrase-file is not used\n",
                    path);
        rc = tokenfile_read_pskc(text, len, NULL, set, err);
    } else {
        if (!passfile && !isatty(STDIN_FILENO)) {
            err_set(err, "its seeds are encrypted: give --passphrase-file F (there is no "
                         "terminal to ask for the passphrase on)");
            rc = -2;
            goto done;
        }
        if (tok_passphrase(passfile, false, 1, pass, err) < 0) {
            rc = -2;
            goto done;
        }
        rc = tokenfile_read_pskc(text, len, pass, set, err);
        if (rc == TOKENFILE_WRONG_PASSPHRASE)
            rc = -1; /* a bad file or passphrase (exit 1), not a usage error */
    }
done:
    if (rc < 0)
        err_prefix(err, "%s", path);
    secret_wipe(pass, sizeof(pass));
    secret_wipe(text, len);
    free(text);
    return rc;
}

/* Runs <sql> with one JSON parameter; the rows' first column as a JSON array of strings. */
static json_t *query_names(PGconn *conn, const char *sql, const char *param, char **err)
{
    PGresult *res = PQexecParams(conn, sql, 1, NULL, &param, NULL, NULL, 0);
    json_t *out = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "", err);
    } else {
        out = json_array();
        for (int i = 0; out && i < PQntuples(res); i++)
            json_array_append_new(out, json_string(PQgetvalue(res, i, 0)));
    }
    PQclear(res);
    return out;
}

/*
 * Refuses the import, before anything is written, when a serial is in the
 * cluster already, or a user is unknown. The users are
 * locked (KEY SHARE) until the commit so none is deleted in between.
 */
static int check_import(PGconn *conn, const struct token_set *set, char **err)
{
    static const char serials_sql[] =
        "SELECT t.serial FROM oath_tokens t"
        " WHERE t.serial IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY t.serial";
    static const char users_sql[] =
        "SELECT x FROM (SELECT DISTINCT jsonb_array_elements_text($1::jsonb) AS x) n"
        " WHERE NOT EXISTS (SELECT 1 FROM users u WHERE lower(u.username) = lower(n.x))"
        " ORDER BY x";
    static const char lock_sql[] = "SELECT 1 FROM users u WHERE lower(u.username) IN"
                                   " (SELECT lower(jsonb_array_elements_text($1::jsonb)))"
                                   " FOR KEY SHARE";
    json_t *serials = json_array(), *users = json_array(), *bad = NULL;
    char *ps = NULL, *pu = NULL, names[512];
    int rc = -1;

    /* A serial named twice in the file was refused by the reader (tokenfile.h). */
    if (!serials || !users)
        goto oom;
    for (size_t i = 0; i < set->n; i++) {
        if (json_array_append_new(serials, json_string(set->v[i].serial)) < 0 ||
            (set->v[i].user[0] && json_array_append_new(users, json_string(set->v[i].user)) < 0)) {
            /* jansson takes UTF-8 only */
            err_set(err, "token %.64s: its serial or user is not valid UTF-8; nothing was imported",
                    set->v[i].serial);
            goto done;
        }
    }
    ps = json_dumps(serials, JSON_COMPACT);
    pu = json_dumps(users, JSON_COMPACT);
    if (!ps || !pu)
        goto oom;
    json_decref(bad);
    if (!(bad = query_names(conn, lock_sql, pu, err)))
        goto done;
    json_decref(bad);
    if (!(bad = query_names(conn, serials_sql, ps, err)))
        goto done;
    if (json_array_size(bad) > 0) {
        strlist_join(bad, NAMES_SHOWN, true, names, sizeof(names));
        err_set(err, "%zu serial%s in the cluster already: %s; nothing was imported",
                json_array_size(bad), json_array_size(bad) == 1 ? " is" : "s are", names);
        goto done;
    }
    json_decref(bad);
    if (!(bad = query_names(conn, users_sql, pu, err)))
        goto done;
    if (json_array_size(bad) > 0) {
        strlist_join(bad, NAMES_SHOWN, true, names, sizeof(names));
        err_set(err, "no such user%s: %s; nothing was imported",
                json_array_size(bad) == 1 ? "" : "s", names);
        goto done;
    }
    rc = 0;
    goto done;
oom:
    err_set(err, "out of memory");
done:
    json_decref(serials);
    json_decref(users);
    json_decref(bad);
    free(ps);
    free(pu);
    return rc;
}

/*
 * The tokens [from, to) of <set> as one INSERT, with an audit row per token
 * (target the serial, detail its user, kind and the file's <format>) in the
 * same statement; adds the assigned ones to *assigned.
 */
static int insert_batch(struct tok_session *s, const struct token_set *set, size_t from, size_t to,
                        const char *format, size_t *assigned, char **err)
{
    static const char sql[] =
        "WITH ins AS (INSERT INTO oath_tokens (serial, kind, algorithm, digits, period, counter,"
        "  seed_sealed, user_id)"
        " SELECT r.serial, r.kind, r.algorithm, r.digits, r.period, r.counter, r.seed_sealed,"
        "  (SELECT u.id FROM users u WHERE lower(u.username) = lower(r.username))"
        " FROM jsonb_to_recordset($1::jsonb) AS r(n int, serial text, kind text, algorithm text,"
        "  digits int, period int, counter bigint, seed_sealed text, username text)"
        " ORDER BY r.n RETURNING serial, kind, user_id),"
        " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"
        "  SELECT 'mfactl', $2, 'token.import', ins.serial,"
        "   jsonb_build_object('user', u.username, 'kind', ins.kind, 'format', $3::text)"
        "  FROM ins LEFT JOIN users u ON u.id = ins.user_id)"
        " SELECT user_id IS NOT NULL FROM ins";
    json_t *rows = json_array();
    char *param = NULL, *sealed = NULL;
    const char *params[3];
    PGresult *res = NULL;
    int rc = -1;

    for (size_t i = from; rows && i < to; i++) {
        const struct token_rec *t = &set->v[i];

        /* the counter fits a bigint: tokenrec_check bounded it when the file was read */
        if (seal_encrypt(&s->keys, t->seed, t->seed_len, t->serial, &sealed, err) < 0) {
            err_prefix(err, "sealing the seed of %s", t->serial);
            goto done;
        }
        json_array_append_new(
            rows, json_pack("{s:I, s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:s?}", "n", (json_int_t)i,
                            "serial", t->serial, "kind", t->kind == TOKEN_HOTP ? "hotp" : "totp",
                            "algorithm", t->algorithm, "digits", t->digits, "period",
                            t->kind == TOKEN_TOTP ? t->period : 30, "counter",
                            (json_int_t)(t->kind == TOKEN_HOTP ? t->counter : 0), "seed_sealed",
                            sealed, "username", t->user[0] ? t->user : NULL));
        free(sealed);
        sealed = NULL;
    }
    param = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
    if (!param || json_array_size(rows) != to - from) {
        err_set(err, "out of memory");
        goto done;
    }
    params[0] = param;
    params[1] = s->conf.appliance.member;
    params[2] = format;
    res = PQexecParams(s->conn, sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "storing the tokens", err);
        goto done;
    }
    for (int i = 0; i < PQntuples(res); i++)
        *assigned += strcmp(PQgetvalue(res, i, 0), "t") == 0;
    rc = 0;
done:
    PQclear(res);
    json_decref(rows);
    free(param);
    return rc;
}

/* Users the import assigned a token to whose method is another kind (json array). */
static json_t *method_mismatches(PGconn *conn, const struct token_set *set, char **err)
{
    static const char sql[] =
        "SELECT DISTINCT u.username FROM oath_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.serial IN (SELECT jsonb_array_elements_text($1::jsonb))"
        "  AND u.method <> t.kind ORDER BY u.username";
    json_t *serials = json_array(), *out = NULL;
    char *param;

    for (size_t i = 0; serials && i < set->n; i++)
        if (set->v[i].user[0])
            json_array_append_new(serials, json_string(set->v[i].serial));
    param = serials ? json_dumps(serials, JSON_COMPACT) : NULL;
    if (param)
        out = query_names(conn, sql, param, err);
    else
        err_set(err, "out of memory");
    json_decref(serials);
    free(param);
    return out;
}

/*
 * The users the import gave more than one assigned token of a kind (after
 * the insert), as [{user, kind, signs_in, no_longer: [...]}]: node/auth.c
 * signs them in with the newest, the others no longer do.
 */
static json_t *superseded(PGconn *conn, const struct token_set *set, char **err)
{
    static const char sql[] =
        "SELECT coalesce(jsonb_agg(jsonb_build_object('user', g.username, 'kind', g.kind,"
        "  'signs_in', g.serials[1], 'no_longer', to_jsonb(g.serials[2:])) ORDER BY g.username,"
        "  g.kind)::text, '[]')"
        " FROM (SELECT u.username, t.kind, array_agg(t.serial ORDER BY t.id DESC) AS serials"
        "  FROM oath_tokens t JOIN users u ON u.id = t.user_id"
        "  WHERE (t.user_id, t.kind) IN (SELECT user_id, kind FROM oath_tokens"
        "   WHERE serial IN (SELECT jsonb_array_elements_text($1::jsonb)))"
        "  GROUP BY u.username, t.kind HAVING count(*) > 1) g";
    json_t *serials = json_array(), *out = NULL;
    char *param = NULL;
    PGresult *res = NULL;

    for (size_t i = 0; serials && i < set->n; i++)
        if (set->v[i].user[0])
            json_array_append_new(serials, json_string(set->v[i].serial));
    param = serials ? json_dumps(serials, JSON_COMPACT) : NULL;
    if (!param) {
        err_set(err, "out of memory");
        goto done;
    }
    res = PQexecParams(conn, sql, 1, NULL, (const char *const *)&param, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        dbconn_result_error(res, "reading the users' tokens", err);
    else if (!(out = json_loads(PQgetvalue(res, 0, 0), 0, NULL)))
        err_set(err, "out of memory");
done:
    PQclear(res);
    json_decref(serials);
    free(param);
    return out;
}

/* One stderr line per superseded user (the first NAMES_SHOWN), "and N more" after. */
static void warn_superseded(json_t *sup)
{
    size_t n = json_array_size(sup);

    for (size_t i = 0; i < n && i < NAMES_SHOWN; i++) {
        json_t *o = json_array_get(sup, i), *old = json_object_get(o, "no_longer");
        char names[512];

        strlist_join(old, NAMES_SHOWN, true, names, sizeof(names));
        fprintf(stderr,
                "mfactl token import: warning: %s: %s now signs them in (%s); %s no longer "
                "do%s\n",
                json_string_value(json_object_get(o, "user")),
                json_string_value(json_object_get(o, "signs_in")),
                json_string_value(json_object_get(o, "kind")), names,
                json_array_size(old) == 1 ? "es" : "");
    }
    if (n > NAMES_SHOWN)
        fprintf(stderr, "mfactl token import: warning: and %zu more users (--json lists them)\n",
                n - NAMES_SHOWN);
}

static int import_run(struct tok_session *s, const struct token_set *set, const char *format,
                      bool json)
{
    size_t assigned = 0;
    json_t *mismatch = NULL, *sup = NULL;
    char *err = NULL, detail[256], names[512];
    int rc;

    if (dbconn_begin_write(s->conn, &err) < 0)
        return tok_fail("token import", DBCONN_EXIT_FAILED, &err);
    if (check_import(s->conn, set, &err) < 0)
        goto fail;
    for (size_t i = 0; i < set->n; i += IMPORT_BATCH)
        if (insert_batch(s, set, i, i + IMPORT_BATCH < set->n ? i + IMPORT_BATCH : set->n, format,
                         &assigned, &err) < 0)
            goto fail;
    if (!(mismatch = method_mismatches(s->conn, set, &err)) ||
        !(sup = superseded(s->conn, set, &err)))
        goto fail;
    snprintf(detail, sizeof(detail), "{\"imported\": %zu, \"assigned\": %zu, \"format\": \"%s\"}",
             set->n, assigned, format);
    if (dbconn_audit(s->conn, &s->conf, "token.import", "", detail, &err) < 0 ||
        dbconn_commit(s->conn, &err) < 0)
        goto fail;
    if (json) {
        json_t *out = json_pack("{s:I, s:I, s:[], s:O}", "imported", (json_int_t)set->n, "assigned",
                                (json_int_t)assigned, "serials", "superseded", sup);
        json_t *serials = json_object_get(out, "serials");
        char *text;

        for (size_t i = 0; i < set->n; i++)
            json_array_append_new(serials, json_string(set->v[i].serial));
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(out);
    } else {
        printf("imported %zu token%s (%zu assigned)\n", set->n, set->n == 1 ? "" : "s", assigned);
    }
    if (json_array_size(mismatch) > 0) {
        strlist_join(mismatch, NAMES_SHOWN, true, names, sizeof(names));
        fprintf(stderr,
                "mfactl token import: warning: %zu user%s sign%s in by another method than the "
                "type of the token assigned: %s; `mfactl token assign SERIAL USER` makes a "
                "token the user's method\n",
                json_array_size(mismatch), json_array_size(mismatch) == 1 ? "" : "s",
                json_array_size(mismatch) == 1 ? "s" : "", names);
    }
    warn_superseded(sup);
    json_decref(mismatch);
    json_decref(sup);
    return DBCONN_EXIT_OK;
fail:
    dbconn_rollback(s->conn);
    json_decref(mismatch);
    json_decref(sup);
    rc = tok_fail("token import", DBCONN_EXIT_FAILED, &err);
    return rc;
}

static int cmd_import(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "format", required_argument, NULL, 'f' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    enum tokenfile_format fmt = TOKENFILE_UNKNOWN;
    const char *passfile = NULL;
    struct token_set set = { 0 };
    struct tok_session s = { 0 };
    char *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'f' && strcasecmp(optarg, "csv") == 0) {
            fmt = TOKENFILE_CSV;
        } else if (ch == 'f' && strcasecmp(optarg, "pskc") == 0) {
            fmt = TOKENFILE_PSKC;
        } else if (ch == 'p') {
            passfile = optarg;
        } else if (ch == 'j') {
            json = true;
        } else {
            fprintf(stderr, "mfactl token import: bad option or value %s\n%s", argv[optind - 1],
                    usage_text);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fputs(usage_text, stderr);
        return DBCONN_EXIT_USAGE;
    }
    if (passfile && fmt == TOKENFILE_CSV) {
        fprintf(stderr, "mfactl token import: a CSV seed file has no passphrase\n");
        return DBCONN_EXIT_USAGE;
    }
    /* Parse before connecting: a bad file is said at once, and needs no cluster. */
    rc = parse_file(argv[optind], &fmt, passfile, &set, &err);
    if (rc < 0) {
        token_set_free(&set);
        return tok_fail("token import", rc == -2 ? DBCONN_EXIT_USAGE : DBCONN_EXIT_FAILED, &err);
    }
    if (set.n == 0) { /* an export of a cluster without tokens, say: nothing to do */
        if (json)
            printf("{\"imported\":0,\"assigned\":0,\"serials\":[],\"superseded\":[]}\n");
        else
            printf("imported 0 tokens: the file holds none\n");
        return DBCONN_EXIT_OK;
    }
    rc = tok_open(&s, config, DBCONN_PRIMARY, "token-import", &err);
    if (rc == DBCONN_EXIT_OK)
        rc = import_run(&s, &set, fmt == TOKENFILE_CSV ? "csv" : "pskc", json);
    else
        rc = tok_fail("token import", rc, &err);
    tok_close(&s);
    token_set_free(&set);
    return rc;
}

/* ---- list ---- */

static void print_table(const PGresult *res)
{
    printf("%-24s %-5s %-6s %-14s %-20s %s\n", "SERIAL", "TYPE", "DIGITS", "PERIOD/COUNTER", "USER",
           "CREATED");
    for (int i = 0; i < PQntuples(res); i++) {
        bool hotp = strcmp(PQgetvalue(res, i, 1), "hotp") == 0;
        char pc[32];

        snprintf(pc, sizeof(pc), hotp ? "counter %s" : "%ss", PQgetvalue(res, i, hotp ? 5 : 4));
        printf("%-24s %-5s %-6s %-14s %-20s %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 3), pc, PQgetisnull(res, i, 6) ? "-" : PQgetvalue(res, i, 6),
               PQgetvalue(res, i, 7));
    }
}

static int print_json(const PGresult *res)
{
    json_t *out = json_pack("{s:[]}", "tokens"), *arr = json_object_get(out, "tokens");
    char *text;

    for (int i = 0; arr && i < PQntuples(res); i++) {
        bool hotp = strcmp(PQgetvalue(res, i, 1), "hotp") == 0;

        json_array_append_new(
            arr,
            json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:s?, s:s}", "serial", PQgetvalue(res, i, 0),
                      "type", PQgetvalue(res, i, 1), "algorithm", PQgetvalue(res, i, 2), "digits",
                      atoi(PQgetvalue(res, i, 3)), "period",
                      hotp ? json_null() : json_integer(atoll(PQgetvalue(res, i, 4))), "counter",
                      hotp ? json_integer(atoll(PQgetvalue(res, i, 5))) : json_null(), "user",
                      PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6), "created_at",
                      PQgetvalue(res, i, 7)));
    }
    text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(out);
    return text ? 0 : -1;
}

/* True when <user> exists; false with *err when not, or when the database cannot say. */
static bool user_exists(PGconn *conn, const char *user, char **err)
{
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM users WHERE lower(username) = lower($1)", 1,
                                 NULL, &user, NULL, NULL, 0);
    bool yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        dbconn_result_error(res, "reading the user", err);
    else if (!yes)
        err_set(err, "no user \"%.128s\"", user);
    PQclear(res);
    return yes;
}

static int cmd_list(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "user", required_argument, NULL, 'u' },
        { "unassigned", no_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    static const char sql[] =
        "SELECT t.serial, t.kind, t.algorithm, t.digits, t.period, t.counter, u.username,"
        " to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM oath_tokens t LEFT JOIN users u ON u.id = t.user_id"
        " WHERE ($1::text IS NULL OR lower(u.username) = lower($1))"
        "  AND (NOT $2::boolean OR t.user_id IS NULL)"
        " ORDER BY t.serial";
    const char *user = NULL, *params[2];
    struct tok_session s = { 0 };
    bool unassigned = false;
    PGresult *res = NULL;
    char *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'u') {
            user = optarg;
        } else if (ch == 'n') {
            unassigned = true;
        } else if (ch == 'j') {
            json = true;
        } else {
            fprintf(stderr, "mfactl token list: bad option %s\n%s", argv[optind - 1], usage_text);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc != optind || (user && unassigned)) {
        fprintf(stderr, "mfactl token list: %s\n%s",
                argc != optind ? "no arguments" : "--user or --unassigned, not both", usage_text);
        return DBCONN_EXIT_USAGE;
    }
    rc = tok_open(&s, config, DBCONN_READ, "token-list", &err);
    if (rc != DBCONN_EXIT_OK)
        goto done;
    params[0] = user;
    params[1] = unassigned ? "t" : "f";
    res = PQexecParams(s.conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "reading the tokens", &err);
        rc = DBCONN_EXIT_FAILED;
    } else if (user && PQntuples(res) == 0 && !user_exists(s.conn, user, &err)) {
        rc = DBCONN_EXIT_FAILED;
    } else if (json) {
        rc = print_json(res) == 0 ? DBCONN_EXIT_OK : DBCONN_EXIT_FAILED;
        if (rc != DBCONN_EXIT_OK)
            err_set(&err, "out of memory");
    } else {
        print_table(res);
    }
done:
    PQclear(res);
    if (rc != DBCONN_EXIT_OK)
        rc = tok_fail("token list", rc, &err);
    tok_close(&s);
    return rc;
}

/* ---- assign, unassign ---- */

/* One row of <sql> with <n> <params> into *res (NULL when none). Returns 0 or -1 with *err. */
static int one_row(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **res,
                   const char *what, char **err)
{
    *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK) {
        dbconn_result_error(*res, what, err);
        PQclear(*res);
        *res = NULL;
        return -1;
    }
    if (PQntuples(*res) == 0) {
        PQclear(*res);
        *res = NULL;
    }
    return 0;
}

static const char token_sql[] =
    "SELECT t.id, t.kind, u.username, t.user_id FROM oath_tokens t"
    " LEFT JOIN users u ON u.id = t.user_id WHERE t.serial = $1 FOR UPDATE OF t";

/* What an assign did, for its output. */
struct assign_out {
    char user[TOKEN_USER_MAX + 1];     /* as stored */
    char previous[TOKEN_USER_MAX + 1]; /* "" when the token was nobody's or the user's */
    char method_was[16], method[16];
    long long previous_left; /* the previous user's tokens of the kind left */
    json_t *others;          /* the user's tokens of the kind unassigned */
};

#define APP_USER_CHARS 96 /* node/users_totp.c: a serial holds the username's first 96 */

/*
 * True when <serial> is a TOTP app enrolled through the node
 * ("totp-<username>-<12 hex>", users_totp.c) by another user than <user>.
 */
static bool others_app(const char *serial, const char *user)
{
    size_t len = strlen(serial), n = strlen(user), k, chars = 0;

    if (strncmp(serial, "totp-", 5) != 0 || len < 5 + 1 + 12)
        return false;
    k = len - 5 - 13; /* the bytes of the username part */
    for (size_t i = 0; i < k; i++)
        chars += ((unsigned char)serial[5 + i] & 0xC0) != 0x80;
    if (k > n || serial[5 + k] != '-' || strncasecmp(serial + 5, user, k) != 0)
        return true;
    return k < n && chars < APP_USER_CHARS; /* shorter: someone else's, unless cut at 96 */
}

/* Refuses, without --move, to take <tok>'s token from another user or another user's app. */
static int check_move(const PGresult *tok, const PGresult *usr, const char *serial, bool move,
                      char **err)
{
    bool other = !PQgetisnull(tok, 0, 3) && strcmp(PQgetvalue(tok, 0, 3), PQgetvalue(usr, 0, 0));

    if (move)
        return 0;
    if (other)
        return err_set(err,
                       "token %s belongs to %s; `mfactl token unassign %s` first, or add --move "
                       "to take it from them",
                       serial, PQgetvalue(tok, 0, 2), serial);
    if (others_app(serial, PQgetvalue(usr, 0, 1)))
        return err_set(err,
                       "token %s is a phone app another user enrolled: %s and that user would "
                       "share one seed; add --move to mean it",
                       serial, PQgetvalue(usr, 0, 1));
    return 0;
}

/* How many tokens of <kind> user <id> has; -1 with *err. */
static long long tokens_left(PGconn *conn, const char *id, const char *kind, char **err)
{
    const char *p[2] = { id, kind };
    PGresult *res =
        PQexecParams(conn, "SELECT count(*) FROM oath_tokens WHERE user_id = $1 AND kind = $2", 2,
                     NULL, p, NULL, NULL, 0);
    long long n = -1;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        dbconn_result_error(res, "counting the previous user's tokens", err);
    else
        n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

/*
 * In the open transaction: the token <serial> to <user>, the user's other
 * tokens of its kind unassigned (into o->others), the user's method its kind.
 * Returns an exit code with *err.
 */
static int assign_tx(struct tok_session *s, const char *serial, const char *user, bool move,
                     struct assign_out *o, char **err)
{
    static const char user_sql[] =
        "SELECT id, username, method FROM users WHERE lower(username) = lower($1) FOR UPDATE";
    static const char others_sql[] = "UPDATE oath_tokens SET user_id = NULL"
                                     " WHERE user_id = $1 AND kind = $2 AND id <> $3"
                                     " RETURNING serial";
    static const char set_sql[] =
        "WITH t AS (UPDATE oath_tokens SET user_id = $1 WHERE id = $3 RETURNING id)"
        " UPDATE users SET method = $2, updated_at = now() WHERE id = $1 AND method <> $2"
        " RETURNING id";
    PGresult *tok = NULL, *usr = NULL, *res = NULL;
    const char *p[3];
    json_t *d = NULL;
    char *dtext = NULL;
    int rc = DBCONN_EXIT_FAILED;

    p[0] = serial;
    if (one_row(s->conn, token_sql, 1, p, &tok, "reading the token", err) < 0)
        goto done;
    if (!tok) {
        err_set(err, "no token with serial \"%.128s\" (mfactl token list shows them)", serial);
        goto done;
    }
    p[0] = user;
    if (one_row(s->conn, user_sql, 1, p, &usr, "reading the user", err) < 0)
        goto done;
    if (!usr) {
        err_set(err, "no user \"%.128s\"", user);
        goto done;
    }
    if (check_move(tok, usr, serial, move, err) < 0)
        goto done;
    snprintf(o->user, sizeof(o->user), "%s", PQgetvalue(usr, 0, 1));
    if (!PQgetisnull(tok, 0, 3) && strcmp(PQgetvalue(tok, 0, 3), PQgetvalue(usr, 0, 0)) != 0)
        snprintf(o->previous, sizeof(o->previous), "%s", PQgetvalue(tok, 0, 2));
    snprintf(o->method_was, sizeof(o->method_was), "%s", PQgetvalue(usr, 0, 2));
    snprintf(o->method, sizeof(o->method), "%s", PQgetvalue(tok, 0, 1));
    p[0] = PQgetvalue(usr, 0, 0);
    p[1] = PQgetvalue(tok, 0, 1);
    p[2] = PQgetvalue(tok, 0, 0);
    res = PQexecParams(s->conn, others_sql, 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "unassigning the user's other tokens", err);
        goto done;
    }
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(o->others, json_string(PQgetvalue(res, i, 0)));
    PQclear(res);
    res = PQexecParams(s->conn, set_sql, 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "assigning the token", err);
        goto done;
    }
    if (o->previous[0] &&
        (o->previous_left = tokens_left(s->conn, PQgetvalue(tok, 0, 3), o->method, err)) < 0)
        goto done;
    d = json_pack("{s:s, s:s?, s:s, s:s, s:O}", "user", o->user, "previous_user",
                  o->previous[0] ? o->previous : NULL, "method", o->method, "method_was",
                  o->method_was, "unassigned", o->others);
    dtext = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (!dtext) {
        err_set(err, "out of memory");
        goto done;
    }
    if (dbconn_audit(s->conn, &s->conf, "token.assign", serial, dtext, err) < 0)
        goto done;
    rc = DBCONN_EXIT_OK;
done:
    PQclear(tok);
    PQclear(usr);
    PQclear(res);
    json_decref(d);
    free(dtext);
    return rc;
}

static void print_assign(const char *serial, const struct assign_out *o, bool json)
{
    char names[512];

    strlist_join(o->others, NAMES_SHOWN, true, names, sizeof(names));
    if (json) {
        json_t *out =
            json_pack("{s:s, s:s, s:s?, s:s, s:s, s:O}", "serial", serial, "user", o->user,
                      "previous_user", o->previous[0] ? o->previous : NULL, "method", o->method,
                      "method_was", o->method_was, "unassigned", o->others);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;

        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(out);
        return;
    }
    printf("token %s assigned to %s", serial, o->user);
    if (strcmp(o->method_was, o->method) != 0)
        printf("; they now sign in with it (method %s, was %s)", o->method, o->method_was);
    if (json_array_size(o->others))
        printf("; unassigned from them: %s", names);
    if (o->previous[0] && o->previous_left == 0)
        printf("; taken from %s (%s has no %s token now)", o->previous, o->previous, o->method);
    else if (o->previous[0])
        printf("; taken from %s (%s has %lld other %s token%s)", o->previous, o->previous,
               o->previous_left, o->method, o->previous_left == 1 ? "" : "s");
    printf("\n");
}

static int cmd_assign(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "move", no_argument, NULL, 'm' },
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    struct tok_session s = { 0 };
    struct assign_out o = { .others = json_array() };
    bool move = false;
    char *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'm') {
            move = true;
        } else if (ch == 'j') {
            json = true;
        } else {
            fprintf(stderr, "mfactl token assign: bad option %s\n%s", argv[optind - 1], usage_text);
            json_decref(o.others);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fputs(usage_text, stderr);
        json_decref(o.others);
        return DBCONN_EXIT_USAGE;
    }
    rc = tok_open(&s, config, DBCONN_PRIMARY, "token-assign", &err);
    if (rc == DBCONN_EXIT_OK && !o.others)
        rc = err_set(&err, "out of memory") < 0 ? DBCONN_EXIT_FAILED : rc;
    if (rc == DBCONN_EXIT_OK && dbconn_begin_write(s.conn, &err) < 0)
        rc = DBCONN_EXIT_FAILED;
    else if (rc == DBCONN_EXIT_OK) {
        rc = assign_tx(&s, argv[optind], argv[optind + 1], move, &o, &err);
        if (rc == DBCONN_EXIT_OK && dbconn_commit(s.conn, &err) < 0)
            rc = DBCONN_EXIT_FAILED;
        else if (rc != DBCONN_EXIT_OK)
            dbconn_rollback(s.conn);
    }
    if (rc == DBCONN_EXIT_OK)
        print_assign(argv[optind], &o, json);
    else
        rc = tok_fail("token assign", rc, &err);
    json_decref(o.others);
    tok_close(&s);
    return rc;
}

static int unassign_tx(struct tok_session *s, const char *serial, char *user, size_t usize,
                       char **err)
{
    static const char sql[] = "UPDATE oath_tokens SET user_id = NULL WHERE id = $1";
    PGresult *tok = NULL, *res = NULL;
    const char *p[1] = { serial };
    json_t *d = NULL;
    char *dtext = NULL;
    int rc = DBCONN_EXIT_FAILED;

    if (one_row(s->conn, token_sql, 1, p, &tok, "reading the token", err) < 0)
        goto done;
    if (!tok) {
        err_set(err, "no token with serial \"%.128s\" (mfactl token list shows them)", serial);
        goto done;
    }
    if (PQgetisnull(tok, 0, 2)) { /* nobody's already: nothing to write */
        user[0] = '\0';
        rc = DBCONN_EXIT_OK;
        goto done;
    }
    snprintf(user, usize, "%s", PQgetvalue(tok, 0, 2));
    p[0] = PQgetvalue(tok, 0, 0);
    res = PQexecParams(s->conn, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        dbconn_result_error(res, "unassigning the token", err);
        goto done;
    }
    d = json_pack("{s:s}", "user", user);
    dtext = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (!dtext)
        err_set(err, "out of memory");
    else if (dbconn_audit(s->conn, &s->conf, "token.unassign", serial, dtext, err) == 0)
        rc = DBCONN_EXIT_OK;
done:
    PQclear(tok);
    PQclear(res);
    json_decref(d);
    free(dtext);
    return rc;
}

static int cmd_unassign(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    struct tok_session s = { 0 };
    char *err = NULL, user[TOKEN_USER_MAX + 1] = "";
    const char *serial;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'j') {
            fprintf(stderr, "mfactl token unassign: bad option %s\n%s", argv[optind - 1],
                    usage_text);
            return DBCONN_EXIT_USAGE;
        }
        json = true;
    }
    if (argc - optind != 1) {
        fputs(usage_text, stderr);
        return DBCONN_EXIT_USAGE;
    }
    serial = argv[optind];
    rc = tok_open(&s, config, DBCONN_PRIMARY, "token-unassign", &err);

    if (rc == DBCONN_EXIT_OK && dbconn_begin_write(s.conn, &err) < 0)
        rc = DBCONN_EXIT_FAILED;
    else if (rc == DBCONN_EXIT_OK) {
        rc = unassign_tx(&s, serial, user, sizeof(user), &err);
        if (rc == DBCONN_EXIT_OK && dbconn_commit(s.conn, &err) < 0)
            rc = DBCONN_EXIT_FAILED;
        else if (rc != DBCONN_EXIT_OK)
            dbconn_rollback(s.conn);
    }
    if (rc != DBCONN_EXIT_OK) {
        rc = tok_fail("token unassign", rc, &err);
    } else if (json) {
        json_t *out = json_pack("{s:s, s:s?}", "serial", serial, "was", user[0] ? user : NULL);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;

        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(out);
    } else if (user[0]) {
        printf("token %s unassigned from %s\n", serial, user);
    } else {
        printf("token %s was assigned to nobody\n", serial);
    }
    tok_close(&s);
    return rc;
}

int token_cmd(const char *config, bool json, int argc, char **argv)
{
    static const struct dbconn_subcmd subs[] = {
        { "import", cmd_import },
        { "list", cmd_list },
        { "assign", cmd_assign },
        { "unassign", cmd_unassign },
    };

    return dbconn_dispatch(subs, MFA_ARRAY_LEN(subs), usage_text, config, json, argc, argv);
}
