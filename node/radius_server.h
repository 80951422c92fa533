/*
 * mfa-node's RADIUS server (RFC 2865 PAP, RFC 3579 Message-Authenticator,
 * RFC 5080 duplicate detection), behind mfa-balancer's UDP front (DESIGN
 * §4).
 *
 * It listens on UDP <member address>:ports.node_radius. A datagram from a
 * listed balancer carries a PROXY v2 header naming the NAS and the address
 * the NAS sent to; a datagram from anywhere else is the NAS itself. The NAS
 * must be one of node.radius.clients (by address); its shared secret checks
 * the Message-Authenticator, required unless the client's
 * require_message_authenticator is false (BlastRADIUS, CVE-2024-3596).
 * Unknown clients, bad or missing authenticators and malformed packets are
 * dropped and counted, never answered.
 *
 * An Access-Request without State is a sign-in (auth.h): User-Password is
 * the PIN for SMS users, PIN and code for token users. SMS answers
 * Access-Challenge with State = the challenge id (it starts with this
 * node's id, so the balancer routes the follow-up here) and a
 * Reply-Message; the follow-up carries State and the code. Every answer has
 * Message-Authenticator first. Answers through a balancer carry a PROXY v2
 * header naming the NAS, so the balancer relays them without state.
 *
 * A retransmission — same NAS address and port, identifier and Request
 * Authenticator — within node.radius.duplicate_window_ms gets the cached
 * answer; one that arrives while the first is still being worked on (an
 * SMS being sent) is dropped, and the NAS gets the one answer. So a
 * retransmission never sends a second SMS.
 */
#ifndef MFA_NODE_RADIUS_SERVER_H
#define MFA_NODE_RADIUS_SERVER_H

#include <event2/buffer.h>
#include <jansson.h>
#include <stddef.h>

#include "mem.h"
#include "node.h"

struct radius_server;

/*
 * Binds the socket and starts serving on <n>'s loop. Returns NULL with
 * *err on a bad client entry or a socket error. With node.radius.enabled
 * false it returns NULL and no error (*err stays NULL).
 */
struct radius_server *radius_server_new(struct node *n, char **err) MFA_MUSTCHECK;

/* Stops reading new requests (shutdown); answers in progress still go out. */
void radius_server_stop_listening(struct radius_server *rs);

/* Requests being worked on. */
size_t radius_server_in_flight(const struct radius_server *rs);

/* Expires the duplicate cache; call on the maintenance tick. */
void radius_server_tick(struct radius_server *rs);

/* Frees the server; requests still in progress answer nothing. NULL is fine. */
void radius_server_free(struct radius_server *rs);

/* The RADIUS counters for /metrics and /status. */
void radius_server_metrics(const struct radius_server *rs, struct evbuffer *out);
void radius_server_status(const struct radius_server *rs, json_t *status);

#endif
