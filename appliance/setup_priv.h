/*
 * What the parts of `mfactl setup` share (setup.c: --primary, --invite and
 * the command; setup_join.c: --join; setup_conf.c: the command line and the
 * configuration text; setup_files.c: files, certificates, starting and
 * waiting). Not for the rest of mfactl: setup.h is its API.
 */
#ifndef MFA_APPLIANCE_SETUP_PRIV_H
#define MFA_APPLIANCE_SETUP_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "appconf.h"
#include "mem.h"
#include "setup.h"

/* mfactl's exit codes */
#define SETUP_OK      0
#define SETUP_FAILED  1
#define SETUP_USAGE   2
#define SETUP_REFUSED 3
#define SETUP_NO_ONE  4

#define SETUP_FILE_MAX       65536
#define SETUP_WAIT_PRIMARY_S 120
#define SETUP_WAIT_JOIN_S    600 /* the base backup of a large database */
#define SETUP_JOIN_TIMEOUT   15000
#define SETUP_ALLOW_FILE     "bootstrap.allow"
#define SETUP_ARGV_MAX       16

/* The owner a file is given; unset: whoever runs mfactl. */
struct setup_owner {
    bool set;
    uid_t uid;
    gid_t gid;
};

/* setup_conf.c */
bool setup_valid_id(const char *s);
/* The port keys in the order struct member_ports holds them (9). */
extern const char *const setup_port_names[9];
int *setup_port_slot(struct member_ports *p, size_t i);

/* setup_files.c */
/* The daemons' user (appliance.user) when we are root and it exists: it must read its files. */
struct setup_owner setup_daemon_owner(const struct appconf *c);
/* Gives <path> to owner <o> (NULL or unset: nothing), made now or kept. Returns 0, or -1. */
int setup_give(const char *path, const struct setup_owner *o, char **err) MFA_MUSTCHECK;
bool setup_exists(const char *path);
/* The regular file <path> (at most SETUP_FILE_MAX bytes) as a string; NULL with *err. */
char *setup_read_text(const char *path, char **err);
/* <data> put at <path> atomically with <mode> and owner <o> (NULL: ours). Returns 0, or -1. */
int setup_write_file(const char *path, const char *data, size_t len, mode_t mode,
                     const struct setup_owner *o, char **err) MFA_MUSTCHECK;
/* The directory part of <path> into <buf> ("." when none, "/" for a file in /). */
void setup_dir_of(const char *path, char *buf, size_t size);
/* Creates the missing directories above <path> (0755). Returns 0, or -1. */
int setup_make_parent(const char *path, char **err) MFA_MUSTCHECK;
/* Prints one step: "made  key file  /etc/...". */
void setup_say(const char *what, const char *how, const char *path);
/* 0 when PEM <crt> was issued by PEM <ca> for member <id>; else -1 with *err. */
int setup_cert_check(const char *crt, const char *ca, const char *id, const char *what,
                     char **err) MFA_MUSTCHECK;
/* `mfactl pki <args...>` in-process (NULL-terminated). Returns 0, or -1 (pki said why). */
int setup_run_pki(const char *const *args) MFA_MUSTCHECK;
/* Runs a program on PATH (NULL-terminated <args>) and waits. Returns 0 when it exited 0. */
int setup_run_program(const char *const *args) MFA_MUSTCHECK;
/* "<prefix>" of appliance.tls.cert "<prefix>.crt" (and .key). Returns 0, or -1. */
int setup_leaf_prefix(const struct appconf *c, char *buf, size_t size, char **err) MFA_MUSTCHECK;
/* The directory of cluster.tls.ca, which must be named ca.crt. Returns 0, or -1. */
int setup_ca_dir(const struct appconf *c, char *buf, size_t size, char **err) MFA_MUSTCHECK;
/* True when this member's PostgreSQL data exists (PG_VERSION, the replicator's test). */
bool setup_has_data(const struct appconf *c);
int setup_load_conf(const char *path, struct appconf *c, char **err) MFA_MUSTCHECK;
/* <text> over the configuration <path> (mode and owner kept) once it loads. 0, or -1. */
int setup_write_conf(const char *path, const char *text, char **err) MFA_MUSTCHECK;
/* The text of <path> with paths[i] set to values[i]; *out for the caller to free. 0, or -1. */
int setup_edit_conf(const char *path, const char *const *paths, char *const *values, size_t n,
                    char **out, char **err) MFA_MUSTCHECK;
/* <s> as a libconfig string, '"' and '\\' escaped; NULL for a control character or no memory. */
char *setup_quoted(const char *s);
/*
 * The last step of --primary (<primary>) and --join: unless --no-start,
 * systemctl enable --now of the three units, then a wait (a->wait_s, or the
 * mode's default) until this member is primary or a streaming standby.
 * Returns mfactl's exit code.
 */
int setup_start_and_wait(const char *config, const struct setup_args *a, bool primary);
/*
 * Polls this member's replicator until it is primary (<primary>; a fenced
 * primary counts unless <writable>) or a streaming standby, at most <wait_s>
 * seconds. Returns mfactl's exit code.
 */
int setup_wait_role(const char *config, bool primary, bool writable, int wait_s);
/* A private (0700) temporary directory into <buf>. Returns 0, or -1. */
int setup_temp_dir(char *buf, size_t size, char **err) MFA_MUSTCHECK;
/* Removes files <names> of <dir>, then <dir>; "" is nothing. */
void setup_temp_remove(const char *dir, const char *const *names, size_t n);
/* Wipes and frees <s> (it may hold a private key); NULL is fine. */
void setup_free_secret(char *s);

/* setup.c, for restore (backup_cmd.c) too */
/* Makes the data directory <dir> (0750) when missing; gives it to <o> either way. 0, or -1. */
int setup_make_data_dir(const char *dir, const struct setup_owner *o, char **err) MFA_MUSTCHECK;
/*
 * Asks every other member's replicator for its /status: -1 with *err when
 * one answers that it has data or is primary (a cluster exists), and with
 * <strict> also when one gives an answer that cannot be trusted (TLS, HTTP,
 * unparsable, or its port open without a reply); a member whose port does
 * not answer is taken as gone. Prints one line a member. Returns 0, or -1.
 */
int setup_check_others(const char *config, bool strict, char **err) MFA_MUSTCHECK;
/* Writes the one-shot bootstrap permission for member <id> (0600, owner <o>). 0, or -1. */
int setup_write_allow(const struct appconf *c, const char *id, const struct setup_owner *o,
                      char **err) MFA_MUSTCHECK;

/* setup_join.c */
int setup_join(const char *config, const struct setup_args *a);

#endif
