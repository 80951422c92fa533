/*
 * The scheduled directory sync (dirsync.h).
 */
#include "dirsync.h"

int dirsync_start(struct node *n, char **err)
{
    (void)n;
    (void)err;
    return 0;
}

void dirsync_tick(struct node *n)
{
    (void)n;
}

void dirsync_stop(struct node *n)
{
    (void)n;
}

void dirsync_status(const struct node *n, json_t *status)
{
    (void)n;
    (void)status;
}

void dirsync_metrics(const struct node *n, struct evbuffer *out)
{
    (void)n;
    (void)out;
}
