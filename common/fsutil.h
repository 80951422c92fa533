/*
 * Small file-system helpers shared by the code that writes files which must
 * survive a crash (the key file, the PKI).
 */
#ifndef MFA_FSUTIL_H
#define MFA_FSUTIL_H

#include "mem.h"

/*
 * fsyncs the directory holding <path>, so that a create, rename or link of
 * <path> is durable. Returns 0, or -1 with *err.
 */
int fsutil_fsync_dir(const char *path, char **err) MFA_MUSTCHECK;

#endif
