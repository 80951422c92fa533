/*
 * mfactl apikey create NAME [--scope admin|auth]: an API key made on the
 * primary member itself, for the first administrator key of a new cluster
 * (the admin API needs an admin key to make one) and for recovering when
 * every admin key is lost.
 *
 * It runs on the primary's host as root (or as appliance.user): it becomes
 * appliance.user and reaches the local PostgreSQL as its superuser through
 * the UNIX socket in appliance.run_dir, the way mfa-replicator does — no
 * password, and nothing another host can reach — and writes as the node's
 * database role, which owns the tables (a superuser would run that role's
 * triggers with its own rights). The key is printed once on
 * stdout and only its SHA-256 is stored, with an admin_audit row whose actor
 * is "mfactl", as the admin API does. On a standby it refuses (exit 3) and
 * names no key.
 */
#ifndef MFA_APIKEY_CMD_H
#define MFA_APIKEY_CMD_H

#include <stdbool.h>

int apikey_cmd(const char *config, bool json, int argc, char **argv);

#endif
