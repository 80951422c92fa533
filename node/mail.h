/*
 * E-mail to users (docs/email.md): the node whose local database is the
 * writable primary sends what email_outbox holds — queued by the database in
 * the same transaction as the event (schema 003) — over SMTP with STARTTLS
 * (libcurl on a worker thread of its own), at least once, each message
 * with the Message-ID its event fixed, so a resend after a failover is the
 * same message. Standbys' nodes send nothing.
 */
#ifndef MFA_NODE_MAIL_H
#define MFA_NODE_MAIL_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stdbool.h>

#include "mem.h"
#include "node.h"

/*
 * Sets up the sender when email.enabled (settings checked, templates and
 * password read now); else only the outbox's housekeeping.
 */
int mail_start(struct node *n, char **err) MFA_MUSTCHECK;

/* Claims and sends due messages when this node is on the writable primary. */
void mail_tick(struct node *n);

/*
 * What the daemon's drain waits for: the message in flight and the writes
 * recording outcomes (mail_tick() sees the drain and claims nothing more).
 */
size_t mail_in_flight(const struct node *n);

/* Ends deliveries in flight (they are sent again later: at least once). */
void mail_stop(struct node *n);

/* "email" of /status and the mail metrics. */
void mail_status(const struct node *n, json_t *status);
void mail_metrics(const struct node *n, struct evbuffer *out);

#endif
