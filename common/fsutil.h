/*
 * Small file-system helpers shared by the code that writes files which must
 * survive a crash (the key file, the PKI, PostgreSQL's and HAProxy's
 * configuration).
 */
#ifndef MFA_FSUTIL_H
#define MFA_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "mem.h"

/*
 * fsyncs the directory holding <path>, so that a create, rename or link of
 * <path> is durable. Returns 0, or -1 with *err.
 */
int fsutil_fsync_dir(const char *path, char **err) MFA_MUSTCHECK;

/*
 * Replaces <path> with <len> bytes of <data>: written to "<path>.tmp"
 * (created with <mode>, no symlink followed), fsynced, renamed over <path>,
 * so a reader sees the old file or the new one, never half of it. Returns
 * 0, or -1 with *err; nothing is left at the temporary name then.
 */
int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                        char **err) MFA_MUSTCHECK;

/*
 * fsutil_write_atomic() for a file another user must own: the temporary file
 * is given exactly <mode> (fchmod, whatever the umask) and, unless <uid> is
 * (uid_t)-1, owner <uid>:<gid> (fchown) before a byte is written, and the
 * directory is fsynced after the rename. Returns 0, or -1 with *err; nothing
 * is left at the temporary name then (but for a failed directory fsync, the
 * new file is in place).
 */
int fsutil_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode,
                              uid_t uid, gid_t gid, char **err) MFA_MUSTCHECK;

#endif
