/*
 * mfactl directory sync|status: a directory sync on demand, on the writable
 * primary, and the last syncs (docs/directory.md). The sync itself is
 * common/directory.h's directory_sync_run(), the one the node runs on its
 * schedule.
 */
#ifndef MFA_DIRECTORY_CMD_H
#define MFA_DIRECTORY_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

int directory_cmd(const char *config, bool json, int argc, char **argv);

/*
 * Writes a sync's report (directory_sync_run()'s JSON) for the operator:
 * the result, the counts, at most <max_changes> changes by user, the
 * conflicts, the skipped entries and a refusal's reason. Unknown or missing
 * members print as nothing (0 for counts): a report of an older or newer
 * release still prints.
 */
void directory_cmd_print_report(FILE *out, const json_t *report, size_t max_changes);

#endif
