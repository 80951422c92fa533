/*
 * Numeric network addresses and prefixes: the RADIUS client list ("10.0.0.0/8"),
 * the balancers a node takes PROXY headers from, and socket addresses as text.
 * Only numeric forms; nothing here resolves names.
 */
#ifndef MFA_NETADDR_H
#define MFA_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mem.h"

#define NETADDR_TEXT_MAX 46 /* INET6_ADDRSTRLEN */

/* An address and a prefix length: "192.0.2.7" is a /32, "2001:db8::/32" a /32. */
struct netaddr_prefix {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits; /* 0..32 or 0..128 */
};

/*
 * Parses "<address>" or "<address>/<bits>" (numeric IPv4 or IPv6; <bits> in
 * decimal without a leading zero, 0..32 or 0..128). Refuses host bits set
 * beyond the prefix ("10.0.0.1/8"), so a typo is not silently widened.
 * Returns 0, or -1 with *why (a static string).
 */
int netaddr_parse_prefix(const char *text, struct netaddr_prefix *out,
                         const char **why) MFA_MUSTCHECK;

/*
 * True when <sa> (AF_INET or AF_INET6) lies in <p>. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) matches IPv4 prefixes.
 */
bool netaddr_prefix_match(const struct netaddr_prefix *p, const struct sockaddr *sa);

/* True when <a> and <b> are the same address (ports ignored; v4-mapped = v4). */
bool netaddr_same_host(const struct sockaddr *a, const struct sockaddr *b);

/* The address of <sa> as text, without the port; "?" for other families or
 * when <buf> is too small (NETADDR_TEXT_MAX always suffices). */
const char *netaddr_text(const struct sockaddr *sa, char *buf, size_t size);

/* The port of <sa> (host order), 0 for other families. */
int netaddr_port(const struct sockaddr *sa);

/*
 * Puts <ss> (AF_INET or AF_INET6, port kept) in <family>: IPv4 becomes
 * v4-mapped IPv6 (::ffff:a.b.c.d) for AF_INET6, a v4-mapped address plain
 * IPv4 for AF_INET. Returns its length, or 0 (<ss> unchanged) when it has no
 * form in <family> (a real IPv6 address for AF_INET, another family).
 */
socklen_t netaddr_to_family(struct sockaddr_storage *ss, int family);

/* True when <text> is a numeric IPv4 or IPv6 address. */
bool netaddr_numeric(const char *text);

/*
 * True when <numeric> is a loopback address: 127.0.0.0/8, ::1 or a
 * v4-mapped 127.x (::ffff:127.0.0.1). False for any other address and for
 * text that is not a numeric address (check netaddr_numeric() first when
 * that must be told apart). Decides whether a member's node is reached in
 * plain HTTP (the same host) or over TLS (between hosts, DESIGN §4).
 */
bool netaddr_is_loopback(const char *numeric);

/*
 * Parses a comma-separated list of numeric addresses ("192.0.2.1,2001:db8::1";
 * no spaces, no empty entries) into <out> (at most <max>, ports 0), setting
 * *count. An empty <text> is an empty list. Returns 0, or -1 with *why
 * naming the problem and <bad> (size >= NETADDR_TEXT_MAX + 1) the entry.
 */
int netaddr_parse_list(const char *text, struct sockaddr_storage *out, size_t max, size_t *count,
                       char *bad, const char **why) MFA_MUSTCHECK;

/*
 * Fills <out> from numeric <address> and <port>. Returns its length for
 * bind()/sendto(), or 0 when <address> is not numeric or <port> is not
 * 0..65535.
 */
socklen_t netaddr_make(const char *address, int port, struct sockaddr_storage *out);

#endif
