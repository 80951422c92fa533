/* Placeholder until the command lands. */
#include "upgrade_cmd.h"

#include <stdio.h>

int upgrade_plan_cmd(const char *config, bool json, int argc, char **argv)
{
    (void)config;
    (void)json;
    (void)argc;
    (void)argv;
    fprintf(stderr, "mfactl: not yet available\n");
    return 2;
}

