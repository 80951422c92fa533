/*
 * E-mail to users (mail.h).
 */
#include "mail.h"

int mail_start(struct node *n, char **err)
{
    (void)n;
    (void)err;
    return 0;
}

void mail_tick(struct node *n)
{
    (void)n;
}

void mail_stop(struct node *n)
{
    (void)n;
}

void mail_status(const struct node *n, json_t *status)
{
    (void)n;
    (void)status;
}

void mail_metrics(const struct node *n, struct evbuffer *out)
{
    (void)n;
    (void)out;
}
