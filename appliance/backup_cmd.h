/*
 * mfactl backup FILE and mfactl restore FILE: a consistent snapshot of the
 * cluster's database with the key file sealed under an operator passphrase,
 * and the rebuilding of a primary from one (docs/backup.md).
 */
#ifndef MFA_BACKUP_CMD_H
#define MFA_BACKUP_CMD_H

#include <stdbool.h>

int backup_cmd(const char *config, bool json, int argc, char **argv);
int restore_cmd(const char *config, bool json, int argc, char **argv);

#endif
