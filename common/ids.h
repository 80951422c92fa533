/*
 * Random bytes and the identifiers of nodes, challenges and portal sessions.
 *
 * A node id names one appliance of the cluster: 1 to 16 characters of
 * [a-z0-9], no dash. Challenge and portal session ids are
 * "<node_id>-<22 characters of base64url>", the base64url being 16 bytes from
 * the OpenSSL CSPRNG, so an id says which node created it (requests are routed
 * there) and is unguessable. The dash is the only separator: a node id cannot
 * contain one, so the prefix of an id is unambiguous ("n1-..." belongs to n1,
 * never to n10).
 */
#ifndef MFA_IDS_H
#define MFA_IDS_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

#define NODE_ID_MAX   16 /* characters, without NUL */
#define ID_RAND_BYTES 16
#define ID_RAND_LEN   22                /* B64URL_ENCODED_LEN(ID_RAND_BYTES) */
#define ID_MAX        (16 + 1 + 22 + 1) /* longest id plus NUL */

/*
 * Fills <buf> with <n> bytes from the OpenSSL CSPRNG (RAND_bytes). Returns 0,
 * or -1 if the generator failed (then the buffer must not be used).
 */
int rand_bytes(void *buf, size_t n) MFA_MUSTCHECK;

/* True when <id> is a valid node id (1-16 of [a-z0-9]). NULL is invalid. */
bool node_id_valid(const char *id);

/*
 * Writes a fresh "<node_id>-<22 base64url>" id and a NUL to <out>. Returns 0,
 * or -1 on an invalid node id, outsz too small (ID_MAX always suffices) or an
 * RNG failure; out[0] is then NUL when outsz > 0.
 */
int id_new(const char *node_id, char *out, size_t outsz) MFA_MUSTCHECK;

/*
 * Exact format check of a challenge or session id: valid node id, one dash,
 * exactly 22 base64url characters that are the canonical encoding of 16
 * bytes. NULL is invalid.
 */
bool id_valid(const char *id);

/*
 * Copies the node id prefix of a valid <id> into <node> (with NUL). Returns 0,
 * or -1 when <id> is not valid or nodesz is too small (NODE_ID_MAX + 1
 * always suffices); node[0] is then NUL when nodesz > 0.
 */
int id_node(const char *id, char *node, size_t nodesz) MFA_MUSTCHECK;

/*
 * True when <id> is a valid id created by node <node_id> (exact prefix match
 * up to the dash).
 */
bool id_belongs_to(const char *id, const char *node_id);

#endif
