/*
 * mfactl upgrade-plan: the ordered steps of a rolling upgrade for the
 * cluster as it stands (docs/upgrade.md).
 */
#ifndef MFA_UPGRADE_CMD_H
#define MFA_UPGRADE_CMD_H

#include <stdbool.h>

int upgrade_plan_cmd(const char *config, bool json, int argc, char **argv);

#endif
