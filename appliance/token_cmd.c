/* Placeholder until the command lands. */
#include "token_cmd.h"

#include <stdio.h>

int token_cmd(const char *config, bool json, int argc, char **argv)
{
    (void)config;
    (void)json;
    (void)argc;
    (void)argv;
    fprintf(stderr, "mfactl: not yet available\n");
    return 2;
}

int export_cmd(const char *config, bool json, int argc, char **argv)
{
    (void)config;
    (void)json;
    (void)argc;
    (void)argv;
    fprintf(stderr, "mfactl: not yet available\n");
    return 2;
}

