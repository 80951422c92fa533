/*
 * What `mfactl backup` (backup_cmd.c) and `mfactl restore` (restore_cmd.c)
 * share: the passphrase, temporary files and PostgreSQL's client programs
 * run with the password in their environment only. Not for the rest of
 * mfactl: backup_cmd.h is its API.
 */
#ifndef MFA_APPLIANCE_BACKUP_PRIV_H
#define MFA_APPLIANCE_BACKUP_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "backup_file.h"
#include "mem.h"

#define BACKUP_PASS_BUF 1024 /* a passphrase's buffer; a longer one is refused */

/*
 * The passphrase: the first line of <file> (newline stripped), or asked on
 * the terminal (<twice> for a new backup). Refuses one shorter than
 * BACKUP_PASS_MIN or too long for <out>; warns below BACKUP_PASS_WARN.
 * Returns 0, or mfactl's exit code with *err.
 */
int backup_get_passphrase(const char *file, bool twice, char *out, size_t size, char **err);

/*
 * An unlinked temporary file (0600, close-on-exec) in <dir>, opened for
 * reading and writing: its data is gone when it is closed, whatever stops
 * mfactl. Returns its fd, or -1 with *err.
 */
int backup_anon_file(const char *dir, char **err) MFA_MUSTCHECK;

/* The last non-empty line of what <fd> holds (its last few KiB) into <buf>. */
void backup_last_line(int fd, char *buf, size_t size);

/*
 * Starts <args> (args[0] a path) with PGPASSWORD=<password> in its
 * environment only, stdin from <in_fd> and stdout to <out_fd> (-1: ours),
 * stderr to <err_fd>. Returns its pid, or -1 (errno set).
 */
pid_t backup_spawn_pg(const char *const *args, const char *password, int in_fd, int out_fd,
                      int err_fd);

/* Waits for <pid>: its exit status, 128 + the signal that ended it, or -1. */
int backup_wait_child(pid_t pid);

/* Prints <m> of <file> after <verb> ("wrote", "verified"), or with <json> one object. */
void backup_print_manifest(const char *verb, const char *file, const struct backup_manifest *m,
                           bool json, int attempts);

#endif
