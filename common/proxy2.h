/*
 * The PROXY protocol version 2 header (HAProxy's proxy-protocol.txt §2.2),
 * as mfa-balancer and mfa-node use it around RADIUS datagrams (DESIGN §4).
 *
 * Towards a node, the balancer prefixes each datagram with a PROXY
 * header, transport DGRAM: source = the NAS's address and port, destination
 * = the address and port the NAS sent to. The node answers with its own
 * header naming the NAS as destination and that front address as source, so
 * the balancer relays the answer without keeping any state: it sends the
 * payload to the destination, from the source (IP_PKTINFO).
 *
 * The parser reads untrusted bytes: the 12-byte signature, version 2,
 * command LOCAL or PROXY, family INET or INET6 over STREAM or DGRAM (with
 * LOCAL the family is ignored, as §2.2 asks, and the block skipped), the
 * length of the address block within the datagram and large enough for the
 * family; TLVs after the addresses are skipped, never read.
 */
#ifndef MFA_PROXY2_H
#define MFA_PROXY2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mem.h"

#define PROXY2_SIG_LEN 12
#define PROXY2_MIN_LEN 16 /* signature, version/command, family, length */
#define PROXY2_MAX_OUT 52 /* the longest header proxy2_write() makes (INET6) */

struct proxy2 {
    bool local;                  /* command LOCAL: no addresses; the peer speaks for itself */
    int socktype;                /* SOCK_STREAM or SOCK_DGRAM; 0 with LOCAL/UNSPEC */
    struct sockaddr_storage src; /* AF_INET or AF_INET6 with the port; zeroed with LOCAL */
    struct sockaddr_storage dst;
    size_t header_len; /* bytes of header: the payload starts here */
};

/* True when <data> starts with the PROXY v2 signature (needs 12 bytes). */
bool proxy2_has_signature(const uint8_t *data, size_t len);

/*
 * Parses the header at the start of <data> (<len> bytes, the datagram) into
 * <out>. Returns 0, or -1 with *why (a static string) when the signature,
 * version, command, family or lengths are wrong.
 */
int proxy2_parse(const uint8_t *data, size_t len, struct proxy2 *out,
                 const char **why) MFA_MUSTCHECK;

/*
 * Writes a PROXY header (command PROXY) for <src> -> <dst>, both AF_INET or
 * both AF_INET6, with transport <socktype> (SOCK_DGRAM or SOCK_STREAM),
 * into <out>. Returns its length (16 + 12 or 16 + 36), or -1 when the
 * families differ or are unsupported or <size> is too small.
 */
int proxy2_write(uint8_t *out, size_t size, const struct sockaddr *src, const struct sockaddr *dst,
                 int socktype) MFA_MUSTCHECK;

#endif
