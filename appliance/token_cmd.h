/*
 * mfactl token import|list|assign|unassign and mfactl export: OATH tokens
 * from and to seed files (CSV, PSKC RFC 6030), and the users and tokens out
 * of the cluster for a migration (docs/tokens.md). They reach the database
 * through dbconn.h: writes on the primary, reads on this member.
 */
#ifndef MFA_TOKEN_CMD_H
#define MFA_TOKEN_CMD_H

#include <stdbool.h>

int token_cmd(const char *config, bool json, int argc, char **argv);
int export_cmd(const char *config, bool json, int argc, char **argv);

#endif
