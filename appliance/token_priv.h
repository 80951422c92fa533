/*
 * What mfactl's token and export commands share (token_cmd.c,
 * token_export.c): the configuration, the key file and one database
 * connection opened together, and passphrases read from a file or a
 * terminal.
 */
#ifndef MFA_TOKEN_PRIV_H
#define MFA_TOKEN_PRIV_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "dbconn.h"
#include "keyfile.h"
#include "mem.h"

#define TOKEN_PASSPHRASE_MAX        1024 /* bytes, without the NUL */
#define TOKEN_EXPORT_PASSPHRASE_MIN 8

/* One command's session: zero it, tok_open(), tok_close(). */
struct tok_session {
    struct appconf conf;
    struct keyring keys;
    struct dbconn_target target;
    PGconn *conn;
    bool conf_loaded;
};

/*
 * Loads <config> and the key file, finds the member <want> asks for and
 * connects to its database as the node's role (application_name
 * "mfactl-<what>"). Returns DBCONN_EXIT_OK, or an exit code with *err; call
 * tok_close() in both cases.
 */
int tok_open(struct tok_session *s, const char *config, enum dbconn_want want, const char *what,
             char **err) MFA_MUSTCHECK;

/* Closes the connection, wipes the keys, frees the configuration. */
void tok_close(struct tok_session *s);

/*
 * A passphrase into <out> (TOKEN_PASSPHRASE_MAX + 1 bytes): the first line
 * of <file> without its line break, or, when <file> is NULL, typed on the
 * controlling terminal without echo (twice when <confirm>). Empty, or shorter
 * than <min> bytes, is an error. Returns 0, or -1 with *err; the caller
 * wipes <out>.
 */
int tok_passphrase(const char *file, bool confirm, size_t min, char *out, char **err) MFA_MUSTCHECK;

/* Prints "mfactl <cmd>: <err>" on stderr, frees *err, returns <rc>. */
int tok_fail(const char *cmd, int rc, char **err);

#endif
