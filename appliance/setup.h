/*
 * `mfactl setup`: the first boot of an appliance, idempotent and safe to
 * run again (docs/install.md, "Setting up a member").
 *
 *   mfactl setup --primary --cluster NAME --id ID --address ADDR
 *                [--member ID=ADDR]... [--force] [--no-start] [--wait S]
 *   mfactl setup --invite ID --address ADDR [--out FILE] [--no-start]
 *   mfactl setup --join HOST[:PORT] --bundle FILE [--no-start] [--wait S]
 *
 * --primary makes what this host lacks to create the cluster: the key file,
 * the cluster CA, this member's certificate, the cluster section of the
 * configuration and the one-shot permission for its replicator to make the
 * cluster alone (<data_dir>/bootstrap.allow: written before the key file,
 * and only when no other member answers with data; a host with a key file
 * but no data and no permission made a cluster before and is refused unless
 * --force); --invite, on the host that
 * holds the CA, issues a member's certificate into a join bundle (0600) and
 * lists the member in the local configuration; --join, on the new host,
 * fetches the key file and the cluster section from a member's replicator
 * (GET /join, mutual TLS with the bundle's certificate) and writes them with
 * the bundle's CA and certificate. Each step prints "made" or "kept"; what
 * exists and agrees is kept, what exists and disagrees is refused (exit 3)
 * before anything is written. Then, unless --no-start, the units are enabled
 * and started and the command waits until the member is primary (or a
 * streaming standby).
 */
#ifndef MFA_APPLIANCE_SETUP_H
#define MFA_APPLIANCE_SETUP_H

#include <stdbool.h>

#include "appconf.h"
#include "mem.h"

enum setup_mode {
    SETUP_NONE = 0,
    SETUP_PRIMARY,
    SETUP_INVITE,
    SETUP_JOIN,
};

#define SETUP_ID_MAX   16 /* node ids: 1-16 of [a-z0-9] (DESIGN §3) */
#define SETUP_NAME_MAX 32 /* the cluster name, as `pki init --cluster` takes it */

/* What the command line asked for; strings point into argv or the arrays. */
struct setup_args {
    enum setup_mode mode;
    const char *cluster;
    const char *id; /* --id, or --invite's ID */
    const char *address;
    const char *join; /* HOST[:PORT] */
    const char *bundle;
    const char *out;
    char member_id[APPCONF_MAX_MEMBERS][SETUP_ID_MAX + 1];
    char member_addr[APPCONF_MAX_MEMBERS][64];
    size_t nmembers; /* --member ID=ADDR, other than this one */
    bool no_start;
    bool force; /* --primary: make a new cluster where this host made one before */
    int wait_s; /* 0: the mode's default */
    bool help;
};

/*
 * Parses `setup ...` (argv[0] is "setup") into *a (zeroed first). Checks
 * what can be checked without files: one mode, the flags it needs and no
 * others, ids, addresses, the cluster name, --wait 1..86400. Returns 0, or
 * -1 with *err (a usage error: exit 2).
 */
int setup_parse_args(int argc, char **argv, struct setup_args *a, char **err) MFA_MUSTCHECK;

/*
 * Replaces the value of the setting <path> ("cluster.name") in the libconfig
 * <text> with <value> (libconfig syntax, e.g. "\"corp\"" or a list), keeping
 * every other byte — comments too. Sets *out (the caller frees). Returns 0,
 * or -1 with *err: the text does not parse, or has no such setting.
 */
int setup_conf_replace(const char *text, const char *path, const char *value, char **out,
                       char **err) MFA_MUSTCHECK;

/* A member as setup writes it into cluster.members; a port of 0 is the cluster's. */
struct setup_member {
    const char *id;
    const char *address;
    struct member_ports ports;
};

/*
 * The cluster.members list for <m> (n entries) as libconfig text "( ... )",
 * each member's ports written only where they differ from <base> (the
 * file's cluster.ports). Returns it (the caller frees), or NULL.
 */
char *setup_members_text(const struct setup_member *m, size_t n, const struct member_ports *base);

/*
 * True when <c> still holds the package's placeholders (cluster "mfa", one
 * member n1 on 127.0.0.1, this host n1): setup may fill it in.
 */
bool setup_conf_is_default(const struct appconf *c);

/* Runs `setup ...` (argv[0] is "setup"). Returns mfactl's exit code. */
int setup_cmd(const char *config, bool json, int argc, char **argv);

#endif
