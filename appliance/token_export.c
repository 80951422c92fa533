/*
 * mfactl export: the users and the tokens out of the cluster, in files
 * another cluster (or another system) imports, so no one is locked in; see
 * token_cmd.h and docs/tokens.md.
 *
 * Both are read in ONE repeatable-read, read-only transaction on the
 * primary, else the most advanced standby (DBCONN_BACKUP: a migration wants
 * the newest copy, HOTP counters included, which are written asynchronously),
 * so the users and the tokens' assignments agree with each other; the member
 * read is said. The users file is exactly what POST /api/v1/users/import
 * takes (node/users_import.c), disabled users marked so, with the PIN column
 * empty: a PIN is a keyed hash under this cluster's pepper and cannot leave
 * it, so the users who had one are named. The tokens file holds every token, the users' enrolled
 * TOTP apps included, with its seed opened from its seal (and wiped once written): PSKC encrypted
 * under a passphrase, or, only when asked for by name, CSV with the seeds in clear. TOTP drift and
 * the replay guard stay behind; HOTP counters travel. Files are replaced atomically, mode 0600.
 *
 * An export opens every seed, so it is audited: once the files are written,
 * an admin_audit row "export" on the writable primary; with none answering,
 * a syslog notice (LOG_AUTHPRIV) and a sentence on stderr say it was not.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "errmsg.h"
#include "fsutil.h"
#include "seal.h"
#include "secrets.h"
#include "strlist.h"
#include "token_cmd.h"
#include "token_priv.h"
#include "tokenfile.h"

static const char usage_text[] =
    "usage: mfactl export [--users FILE] [--tokens FILE] [--format pskc|csv]\n"
    "                     [--passphrase-file F] [--plaintext-seeds] [--json]\n"
    "\n"
    "The users and the OATH tokens out of the cluster, for a migration\n"
    "(docs/tokens.md). Run as root on a member; reads the primary's database,\n"
    "else the most advanced standby's, and says which. At least one of:\n"
    "  --users FILE   CSV as POST /api/v1/users/import takes it (username,\n"
    "                 display_name, email, phone, method, pin, disabled); the PIN\n"
    "                 column is empty: PINs cannot leave the cluster, users set new\n"
    "                 ones (the users who had one are listed)\n"
    "  --tokens FILE  every token with its seed and user: PSKC (RFC 6030) with the\n"
    "                 seeds encrypted under a passphrase (default), read from the\n"
    "                 first line of --passphrase-file F or asked twice on the terminal;\n"
    "                 --format csv --plaintext-seeds: a CSV seed file with the seeds\n"
    "                 IN CLEAR\n"
    "FILE \"-\" is the standard output. Files are written atomically, mode 0600.\n"
    "mfactl token import and POST /api/v1/users/import read them back.\n"
    "The export is audited on the writable primary (when none answers, in syslog).\n"
    "\n"
    "exit codes: 0 done, 1 failed (no file was written), 2 bad usage or configuration,\n"
    "4 no member's database answered\n";

struct export_opts {
    const char *users, *tokens, *passfile;
    enum tokenfile_format format;
    bool plaintext, json;
};

#define USERS_IMPORT_ROWS_MAX 10000 /* what POST /api/v1/users/import takes at once */
#define PIN_NAMES_SHOWN       10

struct export_counts {
    size_t users, disabled, push, tokens;
    json_t *had_pin; /* usernames whose PIN stays behind */
};

/* ---- users ---- */

/* Appends <s> as one RFC 4180 field: quoted when it holds a comma, a quote or a line break. */
static int csv_field(FILE *f, const char *s, bool last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    return fputc(last ? '\n' : ',', f) == EOF ? -1 : 0;
}

/* The users as the import's CSV into a malloc'd *out of *len bytes. */
static int users_csv(PGconn *conn, struct export_counts *n, char **out, size_t *len, char **err)
{
    static const char sql[] = "SELECT username, display_name, email, phone, method, disabled,"
                              " pin_hash IS NOT NULL FROM users ORDER BY lower(username)";
    PGresult *res = PQexec(conn, sql);
    FILE *f = NULL;
    int rc = -1;

    *out = NULL;
    *len = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "reading the users", err);
        goto done;
    }
    f = open_memstream(out, len);
    if (!f) {
        err_set(err, "out of memory");
        goto done;
    }
    fputs("username,display_name,email,phone,method,pin,disabled\n", f);
    for (int i = 0; i < PQntuples(res); i++) {
        bool disabled = strcmp(PQgetvalue(res, i, 5), "t") == 0;

        for (int c = 0; c < 5; c++)
            csv_field(f, PQgetvalue(res, i, c), false);
        csv_field(f, "", false); /* the PIN: see the top of the file */
        csv_field(f, disabled ? "true" : "false", true);
        n->users++;
        n->disabled += disabled;
        n->push += strcmp(PQgetvalue(res, i, 4), "push") == 0;
        if (strcmp(PQgetvalue(res, i, 6), "t") == 0)
            json_array_append_new(n->had_pin, json_string(PQgetvalue(res, i, 0)));
    }
    if (fclose(f) != 0 || !*out) {
        f = NULL;
        err_set(err, "out of memory");
        goto done;
    }
    f = NULL;
    rc = 0;
done:
    if (f)
        fclose(f);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    PQclear(res);
    return rc;
}

/* ---- tokens ---- */

/* Every token with its seed opened, in the order they were made, into <set>. */
static int read_tokens(PGconn *conn, const struct keyring *kr, struct token_set *set, char **err)
{
    static const char sql[] =
        "SELECT t.serial, t.kind, t.algorithm, t.digits, t.period, t.counter, t.seed_sealed,"
        " u.username FROM oath_tokens t LEFT JOIN users u ON u.id = t.user_id ORDER BY t.id";
    PGresult *res = PQexec(conn, sql);
    struct token_rec r;
    int rc = -1;

    memset(&r, 0, sizeof(r));
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "reading the tokens", err);
        goto done;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *serial = PQgetvalue(res, i, 0), *user = PQgetvalue(res, i, 7);

        /* The schema counts characters, the file format bytes: a long UTF-8 name may not fit. */
        if (strlen(serial) > TOKEN_SERIAL_MAX || strlen(user) > TOKEN_USER_MAX) {
            err_set(err,
                    "token %.64s...: its serial or user is longer than %d bytes, more than "
                    "a seed file holds",
                    serial, TOKEN_SERIAL_MAX);
            goto done;
        }
        memset(&r, 0, sizeof(r));
        snprintf(r.serial, sizeof(r.serial), "%s", serial);
        r.kind = strcmp(PQgetvalue(res, i, 1), "hotp") == 0 ? TOKEN_HOTP : TOKEN_TOTP;
        snprintf(r.algorithm, sizeof(r.algorithm), "%s", PQgetvalue(res, i, 2));
        r.digits = atoi(PQgetvalue(res, i, 3));
        r.period = atoi(PQgetvalue(res, i, 4));
        r.counter = strtoull(PQgetvalue(res, i, 5), NULL, 10);
        snprintf(r.user, sizeof(r.user), "%s", PQgetisnull(res, i, 7) ? "" : user);
        if (seal_decrypt(kr, PQgetvalue(res, i, 6), serial, r.seed, sizeof(r.seed), &r.seed_len,
                         err) < 0) {
            err_prefix(err, "opening the seed of token %s", serial);
            goto done;
        }
        if (token_set_add(set, &r, err) < 0)
            goto done;
    }
    rc = 0;
done:
    secret_wipe(&r, sizeof(r));
    PQclear(res);
    return rc;
}

static int tokens_file(const struct export_opts *o, const struct token_set *set, const char *pass,
                       char **out, size_t *len, char **err)
{
    if (o->format == TOKENFILE_CSV)
        return tokenfile_write_csv(set, out, len, err);
    return tokenfile_write_pskc(set, pass, out, len, err);
}

/* ---- output ---- */

static int put(const char *path, const char *data, size_t len, char **err)
{
    if (strcmp(path, "-") == 0) {
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
            return err_set(err, "cannot write to the standard output");
        return 0;
    }
    if (fsutil_write_atomic(path, data, len, 0600, err) < 0)
        return err_prefix(err, "%s", path);
    return 0;
}

static const char *where(const char *path)
{
    return strcmp(path, "-") == 0 ? "the standard output" : path;
}

static void report(const struct export_opts *o, const struct export_counts *n, const char *member)
{
    bool to_stdout =
        (o->users && strcmp(o->users, "-") == 0) || (o->tokens && strcmp(o->tokens, "-") == 0);
    FILE *f = to_stdout ? stderr : stdout;
    char names[1024];

    if (o->json && !to_stdout) {
        json_t *out = json_pack("{s:I, s:I, s:I, s:s, s:O}", "users", (json_int_t)n->users,
                                "tokens", (json_int_t)n->tokens, "disabled_users",
                                (json_int_t)n->disabled, "member", member, "had_pin", n->had_pin);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;

        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(out);
    } else {
        fprintf(f, "read %s\n", member);
        if (o->users)
            fprintf(f, "exported %zu users (%zu disabled) to %s\n", n->users, n->disabled,
                    where(o->users));
        if (o->tokens)
            fprintf(f, "exported %zu tokens to %s (%s)\n", n->tokens, where(o->tokens),
                    o->format == TOKENFILE_CSV ? "CSV, seeds in clear" : "PSKC, seeds encrypted");
    }
    if (json_array_size(n->had_pin) > 0) {
        strlist_join(n->had_pin, PIN_NAMES_SHOWN, false, names, sizeof(names));
        fprintf(stderr,
                "mfactl export: note: %zu user%s a PIN, which cannot leave the cluster: %s; on "
                "the new cluster they sign in without one until a PIN is set again\n",
                json_array_size(n->had_pin), json_array_size(n->had_pin) == 1 ? " had" : "s had",
                names);
    }
    if (n->users > USERS_IMPORT_ROWS_MAX)
        fprintf(stderr,
                "mfactl export: note: POST /api/v1/users/import takes at most %d rows a file: "
                "split the users file (the header line first in each part)\n",
                USERS_IMPORT_ROWS_MAX);
    if (n->push)
        fprintf(stderr,
                "mfactl export: note: %zu user%s method push, which the import refuses; change "
                "them first\n",
                n->push, n->push == 1 ? " has" : "s have");
}

/* "member m1 (primary)" or "member m2 (a standby, N s behind the primary)" into <out>. */
static void describe_member(struct tok_session *s, char *out, size_t size)
{
    PGresult *res;

    if (s->target.primary) {
        snprintf(out, size, "member %s (primary)", s->target.id);
        return;
    }
    /* The standby's lag: how old the last transaction it applied is. */
    res = PQexec(s->conn, "SELECT coalesce(round(extract(epoch FROM now() -"
                          " pg_last_xact_replay_timestamp()))::text, 'unknown')");
    snprintf(out, size,
             "member %s (a standby, the primary did not answer; its last applied change is "
             "%s s old: newer changes are not in the files)",
             s->target.id, PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "?");
    PQclear(res);
}

/*
 * The audit row of the export, on the writable primary (this session's
 * connection when it is one). Returns 0, or -1 with *err when no primary
 * answered or the row could not be written.
 */
static int audit_export(struct tok_session *s, const char *config, const struct export_opts *o,
                        const struct export_counts *n, char **err)
{
    struct dbconn_target t;
    PGconn *conn = s->conn;
    const char *format = NULL; /* no tokens file */
    json_t *d;
    char *dtext = NULL;
    int rc = -1;

    if (!s->target.primary) {
        if (dbconn_find(config, DBCONN_PRIMARY, NULL, &t, err) != DBCONN_EXIT_OK)
            return -1;
        if (!(conn = dbconn_open(&s->conf, &s->keys, &t, "export", err)))
            return -1;
    }
    if (o->tokens)
        format = o->format == TOKENFILE_CSV ? "csv" : "pskc";
    d = json_pack("{s:I, s:I, s:s?, s:b, s:s}", "users", (json_int_t)(o->users ? n->users : 0),
                  "tokens", (json_int_t)n->tokens, "format", format, "plaintext", o->plaintext,
                  "member", s->target.id);
    dtext = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (!dtext)
        err_set(err, "out of memory");
    else if (dbconn_begin_write(conn, err) == 0) {
        if (dbconn_audit(conn, &s->conf, "export", "", dtext, err) < 0)
            dbconn_rollback(conn);
        else
            rc = dbconn_commit(conn, err);
    }
    if (conn != s->conn)
        PQfinish(conn);
    json_decref(d);
    free(dtext);
    return rc;
}

static int export_run(const struct export_opts *o, const char *config, const char *pass)
{
    struct tok_session s = { 0 };
    struct token_set set = { 0 };
    struct export_counts n = { .had_pin = json_array() };
    char *users = NULL, *tokens = NULL, *err = NULL, member[256] = "";
    size_t ulen = 0, tlen = 0;
    PGresult *res;
    int rc = tok_open(&s, config, DBCONN_BACKUP, "export", &err);

    if (rc != DBCONN_EXIT_OK)
        goto done;
    rc = DBCONN_EXIT_FAILED;
    if (!n.had_pin) {
        err_set(&err, "out of memory");
        goto done;
    }
    /* One snapshot for both files: the tokens' users are the users exported. */
    res = PQexec(s.conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        dbconn_result_error(res, "BEGIN", &err);
        PQclear(res);
        goto done;
    }
    PQclear(res);
    if ((o->users && users_csv(s.conn, &n, &users, &ulen, &err) < 0) ||
        (o->tokens && read_tokens(s.conn, &s.keys, &set, &err) < 0))
        goto done;
    dbconn_rollback(s.conn); /* read only: nothing to keep */
    describe_member(&s, member, sizeof(member));
    n.tokens = set.n;
    if (o->tokens && tokens_file(o, &set, pass, &tokens, &tlen, &err) < 0)
        goto done;
    if (o->tokens && o->format == TOKENFILE_PSKC && tlen > TOKENFILE_PSKC_MAX_BYTES)
        fprintf(stderr,
                "mfactl export: warning: the PSKC file is %zu MiB; mfactl token import reads at "
                "most %u MiB of PSKC: import it in parts, or export --format csv "
                "--plaintext-seeds (up to %d tokens)\n",
                tlen >> 20, TOKENFILE_PSKC_MAX_BYTES >> 20, TOKENFILE_MAX_TOKENS);
    /* The users first: a failure then leaves no seed file behind. */
    if ((o->users && put(o->users, users, ulen, &err) < 0) ||
        (o->tokens && put(o->tokens, tokens, tlen, &err) < 0))
        goto done;
    report(o, &n, member);
    rc = DBCONN_EXIT_OK;
    if (audit_export(&s, config, o, &n, &err) < 0) {
        syslog(LOG_AUTHPRIV | LOG_NOTICE,
               "mfactl export: %zu users, %zu tokens (%s%s) read from member %s; not audited "
               "in the database: no writable primary",
               n.users, n.tokens, o->format == TOKENFILE_CSV ? "csv" : "pskc",
               o->plaintext ? ", seeds in clear" : "", s.target.id);
        fprintf(stderr, "mfactl export: not audited: no writable primary (%s); logged to syslog\n",
                err ? err : "?");
        free(err);
        err = NULL;
    }
done:
    if (rc != DBCONN_EXIT_OK)
        rc = tok_fail("export", rc, &err);
    if (tokens)
        secret_wipe(tokens, tlen);
    free(tokens);
    free(users);
    json_decref(n.had_pin);
    token_set_free(&set);
    tok_close(&s);
    return rc;
}

/* Checks the combination of options; 0, or -1 with *err (a usage error). */
static int check_opts(const struct export_opts *o, char **err)
{
    if (!o->users && !o->tokens)
        return err_set(err, "give --users FILE, --tokens FILE or both");
    if (o->users && o->tokens && strcmp(o->users, "-") == 0 && strcmp(o->tokens, "-") == 0)
        return err_set(err, "only one of the files can be the standard output");
    if (o->users && o->tokens && strcmp(o->users, o->tokens) == 0)
        return err_set(err, "--users and --tokens name the same file");
    if (o->format == TOKENFILE_CSV && !o->plaintext)
        return err_set(err, "a CSV seed file holds the seeds in clear: add --plaintext-seeds "
                            "to mean it, or export PSKC with a passphrase");
    if (o->plaintext && o->format != TOKENFILE_CSV)
        return err_set(err, "--plaintext-seeds goes with --format csv");
    if (o->passfile && o->format == TOKENFILE_CSV)
        return err_set(err, "a CSV seed file has no passphrase");
    if (o->passfile && !o->tokens)
        return err_set(err, "--passphrase-file is for --tokens");
    return 0;
}

int export_cmd(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "users", required_argument, NULL, 'u' },
        { "tokens", required_argument, NULL, 't' },
        { "format", required_argument, NULL, 'f' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "plaintext-seeds", no_argument, NULL, 'P' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct export_opts o = { .format = TOKENFILE_PSKC, .json = json };
    char pass[TOKEN_PASSPHRASE_MAX + 1] = "", *err = NULL;
    int ch, rc;

    optind = 0; /* glibc: start afresh on this argv (argv[0] is "export") */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o.users = optarg;
            break;
        case 't':
            o.tokens = optarg;
            break;
        case 'f':
            if (strcasecmp(optarg, "csv") != 0 && strcasecmp(optarg, "pskc") != 0) {
                fprintf(stderr, "mfactl export: --format is pskc or csv\n");
                return DBCONN_EXIT_USAGE;
            }
            o.format = strcasecmp(optarg, "csv") == 0 ? TOKENFILE_CSV : TOKENFILE_PSKC;
            break;
        case 'p':
            o.passfile = optarg;
            break;
        case 'P':
            o.plaintext = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return DBCONN_EXIT_OK;
        default:
            fprintf(stderr, "mfactl export: bad option %s\n%s", argv[optind - 1], usage_text);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc != optind) {
        fprintf(stderr, "mfactl export: unexpected argument %s\n%s", argv[optind], usage_text);
        return DBCONN_EXIT_USAGE;
    }
    if (check_opts(&o, &err) < 0) {
        fprintf(stderr, "mfactl export: %s (mfactl export --help)\n", err);
        free(err);
        return DBCONN_EXIT_USAGE;
    }
    if (o.tokens && o.format == TOKENFILE_PSKC &&
        tok_passphrase(o.passfile, true, TOKEN_EXPORT_PASSPHRASE_MIN, pass, &err) < 0)
        return tok_fail("export", DBCONN_EXIT_USAGE, &err);
    if (o.tokens && o.plaintext)
        fprintf(stderr,
                "mfactl export: WARNING: %s will hold every token's seed IN CLEAR: "
                "anyone who reads it can make the codes. Move it over a safe channel, "
                "import it, and destroy it (shred).\n",
                where(o.tokens));
    rc = export_run(&o, config, pass);
    secret_wipe(pass, sizeof(pass));
    return rc;
}
