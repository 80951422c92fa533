/*
 * mfactl's cluster commands (docs/replication.md, "mfactl"): status,
 * switchover, failover and rejoin, carried out over the replicators' control
 * API (ctl.h) as cluster_plan.h decides.
 *
 * Each takes the path of appliance.conf, whether --json was given before the
 * command, and the command's own argv (argv[0] is the command's name), and
 * returns the exit code: 0 done, 1 failed, 2 bad usage or configuration,
 * 3 refused (nothing was changed), 4 no member answered. Errors go to stderr
 * as "mfactl: <sentence>"; progress to stdout (to stderr with --json, so that
 * stdout holds only the JSON).
 */
#ifndef MFA_APPLIANCE_CLUSTER_CMD_H
#define MFA_APPLIANCE_CLUSTER_CMD_H

#include <stdbool.h>

#define CLUSTER_EXIT_OK        0
#define CLUSTER_EXIT_FAILED    1
#define CLUSTER_EXIT_USAGE     2
#define CLUSTER_EXIT_REFUSED   3
#define CLUSTER_EXIT_NO_MEMBER 4

/* mfactl status [--json] */
int cluster_cmd_status(const char *config, bool json, int argc, char **argv);

/* mfactl switchover --to N [--timeout S] */
int cluster_cmd_switchover(const char *config, bool json, int argc, char **argv);

/* mfactl failover --to N [--force] [--timeout S] */
int cluster_cmd_failover(const char *config, bool json, int argc, char **argv);

/* mfactl rejoin M [--to N] [--timeout S] */
int cluster_cmd_rejoin(const char *config, bool json, int argc, char **argv);

#endif
