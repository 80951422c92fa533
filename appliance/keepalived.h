/*
 * mfactl keepalived: the keepalived.conf that puts a floating address in
 * front of several balancer hosts (DESIGN §1: keepalived's job, its
 * configuration generated here). One file per member, from the same
 * appliance.conf and the same --vip, --interface and --router-id on each;
 * docs/install.md, "A floating address (keepalived)", says why it looks the
 * way it does.
 *
 * Every member is a BACKUP with nopreempt: the address stays where it is
 * until its holder fails, and a member that comes back does not take it
 * back (which would cut the connections a second time). Priorities only
 * break ties at start-up. Peers are reached by unicast, so the group needs
 * no multicast and cannot mix with another cluster's on the same segment.
 *
 * The rendering is a pure function, tested with its exact text in
 * tests/unit/test_mfactl_keepalived.c and by `keepalived --config-test` in
 * tests/integration/test_keepalived.py.
 */
#ifndef MFA_APPLIANCE_KEEPALIVED_H
#define MFA_APPLIANCE_KEEPALIVED_H

#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "mem.h"

#define KEEPALIVED_IFNAME_MAX   15 /* IFNAMSIZ - 1 */
#define KEEPALIVED_PASSWORD_MAX 8  /* VRRPv2 simple password: 8 octets (RFC 2338 §5.3.7) */

/* What the operator chose; the strings are borrowed. */
struct keepalived_opts {
    const char *vip;       /* "192.0.2.10/24", "2001:db8::10/64" */
    const char *interface; /* "eth0" */
    int router_id;         /* 1..255, the same on every member */
    int priority;          /* 0: from this member's place in cluster.members; else 1..254 */
    const char *password;  /* NULL: no authentication */
    const char *peers;     /* comma-separated member ids running keepalived; NULL: every member */
};

/*
 * The priority a member gets when --priority is not given: 200 for the first
 * of cluster.members, 10 less for each after it (at least 50).
 */
int keepalived_default_priority(size_t member_index);

/*
 * Renders this member's (appliance.member) keepalived.conf from <conf> and
 * <o> into *out (malloc'd, the caller frees). Refuses, with *err saying
 * what to change: a VIP that is not a numeric address with a prefix, or of
 * another family than the members' addresses, or one of their addresses; an
 * interface name outside [A-Za-z0-9_.:-]{1,15}; a router id outside 1..255
 * or a priority outside 1..254; a password that is not 1..8 printable
 * characters without blanks, quotes, '#', '!' or '\', or any password with an
 * IPv6 VIP (VRRPv3 has no authentication); peers that are not members, that
 * leave out this member or name it twice, or share its address; this member
 * with balancer.enabled = false; a group of one. Returns 0 or -1.
 */
int keepalived_render(const struct appconf *conf, const struct keepalived_opts *o, char **out,
                      char **err) MFA_MUSTCHECK;

/* mfactl keepalived --vip A/P --interface IF --router-id N [...] */
int keepalived_cmd(const char *config, bool json, int argc, char **argv);

#endif
