/*
 * The RADIUS UDP front of mfa-balancer (HAProxy's community edition does not
 * balance UDP). One socket on ports.radius takes Access-Request and
 * Status-Server datagrams from the NASes; each goes, behind a PROXY v2
 * header naming the NAS and the address it sent to, to one node's RADIUS
 * port through a UDP socket connected to that node. The node answers with a
 * header of its own (destination: the NAS, source: our front address), and
 * the answer goes back to the NAS from that address (IP_PKTINFO), so the
 * relay keeps no per-request state beyond the retransmission table of
 * radius_route.c.
 *
 * The balancer holds no RADIUS secret and checks no authenticator: it reads
 * just enough of a packet (radius_parse) to route it. A connected socket per
 * node means answers can only come from that node, and a node whose port is
 * closed shows up at once as ECONNREFUSED (ICMP port unreachable): it then
 * rests RROUTE_HOLD_MS and its requests go elsewhere.
 *
 * Nothing here blocks: every socket is non-blocking and read on the loop, at
 * most RF_BURST datagrams per callback so one busy socket does not starve
 * the others.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bal.h"
#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "log.h"
#include "netaddr.h"
#include "proxy2.h"
#include "radius.h"
#include "radius_route.h"

#define RF_BURST       256 /* datagrams read per callback */
#define RF_RCVBUF      (1 << 20)
#define RF_ANSWER_MAX  (RADIUS_MAX_LEN + 256) /* an answer with its header and some TLVs */
#define RF_REASONS_MAX 16                     /* distinct parser reasons counted apart */
/* Room for the destination address of a received datagram, either family. */
#define RF_CTL_LEN (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))

/* Why a datagram was dropped. */
enum rf_drop {
    RF_DROP_TOO_BIG = 0,
    RF_DROP_MALFORMED,
    RF_DROP_NOT_REQUEST,
    RF_DROP_UNKNOWN_CLIENT,
    RF_DROP_NO_DESTINATION,
    RF_DROP_NO_NODE,
    RF_DROP_SEND_FAILED,
    RF_DROP_ANSWER_TOO_BIG,
    RF_DROP_ANSWER_BAD_PROXY,
    RF_DROP_ANSWER_MALFORMED,
    RF_DROP_ANSWER_NOT_RESPONSE,
    RF_DROP_ANSWER_SEND_FAILED,
    RF_DROP_COUNT_,
};

static const char *const drop_names[RF_DROP_COUNT_] = {
    [RF_DROP_TOO_BIG] = "too_big",
    [RF_DROP_MALFORMED] = "malformed",
    [RF_DROP_NOT_REQUEST] = "not_request",
    [RF_DROP_UNKNOWN_CLIENT] = "unknown_client",
    [RF_DROP_NO_DESTINATION] = "no_destination",
    [RF_DROP_NO_NODE] = "no_node",
    [RF_DROP_SEND_FAILED] = "send_failed",
    [RF_DROP_ANSWER_TOO_BIG] = "answer_too_big",
    [RF_DROP_ANSWER_BAD_PROXY] = "answer_bad_proxy",
    [RF_DROP_ANSWER_MALFORMED] = "answer_malformed",
    [RF_DROP_ANSWER_NOT_RESPONSE] = "answer_not_response",
    [RF_DROP_ANSWER_SEND_FAILED] = "answer_send_failed",
};

struct radius_front;

struct rf_node {
    struct radius_front *f;
    size_t index;
    int fd; /* connected to the node's address and ports.node_radius */
    struct event *ev;
    char where[NETADDR_TEXT_MAX + 8];
    uint64_t forwarded, answers, unreachable;
    int logged_mode; /* the mode last logged, -1 before the first */
};

struct radius_front {
    struct bal *b;
    int fd, family;
    bool wildcard; /* bound to any address (0.0.0.0, ::): answers name their source */
    int port;
    char address[NETADDR_TEXT_MAX];
    struct event *ev;
    struct rroute route;
    struct rf_node nodes[RROUTE_NODES_MAX];
    /*
     * The nodes' RADIUS clients (node.radius.clients, same file): only they
     * may reach the nodes or take a place in the retransmission table, so a
     * spoofed flood from elsewhere cannot push real requests out of it.
     */
    struct netaddr_prefix *clients;
    size_t nclients;

    uint64_t received, forwarded, answers, retransmissions, state_routed, rerouted, unreachable;
    uint64_t dropped[RF_DROP_COUNT_];
    struct {
        const char *why; /* radius_parse()'s static reason */
        uint64_t n;
    } reasons[RF_REASONS_MAX];
    uint64_t reasons_other;

    struct radius_packet pkt; /* 4 KB: kept off the stack */
    uint8_t req[RADIUS_MAX_LEN];
    uint8_t ans[RF_ANSWER_MAX];
};

/* ---- addresses ---- */

/* The address the NAS sent to, from IP_PKTINFO or IPV6_PKTINFO, with the front's port. */
static bool pktinfo_dst(struct msghdr *msg, int port, struct sockaddr_storage *dst)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            in.sin_addr = pi.ipi_addr;
            memset(dst, 0, sizeof(*dst));
            memcpy(dst, &in, sizeof(in));
            return true;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            struct sockaddr_in6 in6 = { .sin6_family = AF_INET6,
                                        .sin6_port = htons((uint16_t)port) };

            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            in6.sin6_addr = pi.ipi6_addr;
            memset(dst, 0, sizeof(*dst));
            memcpy(dst, &in6, sizeof(in6));
            return true;
        }
    }
    return false;
}

/* ---- node states ---- */

/*
 * Whether node <i> answers. HAProxy's status is the freshest reliable
 * signal: it checks the node's /ready every balancer.check_inter_ms, with
 * fall and rise counts against flapping, and it is read once a second. The
 * members poll (every balancer.poll_interval_ms, no hysteresis) stands in
 * while HAProxy is not running, and while its status says nothing of health
 * (not read yet, MAINT: checks stop in maintenance). A node that closed its
 * RADIUS port is caught sooner by ECONNREFUSED (rroute_unreachable()).
 */
static bool node_answers(const struct bal *b, size_t i)
{
    const char *st = b->servers[i].status;
    const json_t *poll = b->members[i].node;

    if (haproxy_running(b)) {
        if (strncmp(st, "UP", 2) == 0 || strncmp(st, "DRAIN", 5) == 0 ||
            strncmp(st, "NOLB", 4) == 0)
            return true;
        if (strncmp(st, "DOWN", 4) == 0)
            return false;
    }
    return poll && json_is_true(json_object_get(poll, "reachable")) &&
           json_is_true(json_object_get(poll, "ready"));
}

/* One log line per change of what a node takes, never one per packet. */
static void log_modes(struct radius_front *f, uint64_t now)
{
    for (size_t i = 0; i < f->route.nnodes; i++) {
        struct rf_node *n = &f->nodes[i];
        enum rroute_mode m = rroute_mode(&f->route, i, now);

        if ((int)m == n->logged_mode)
            continue;
        log_notice("radius.node id=%s mode=%s was=%s outstanding=%llu", f->route.nodes[i].id,
                   rroute_mode_name(m),
                   n->logged_mode < 0 ? "none" : rroute_mode_name((enum rroute_mode)n->logged_mode),
                   (unsigned long long)f->route.nodes[i].outstanding);
        n->logged_mode = (int)m;
    }
}

static void node_unreachable(struct radius_front *f, size_t i)
{
    uint64_t now = clock_mono_ms();

    rroute_unreachable(&f->route, i, now);
    f->nodes[i].unreachable++;
    f->unreachable++;
    log_modes(f, now);
}

/* ---- requests: NAS -> node ---- */

static void drop(struct radius_front *f, enum rf_drop why)
{
    f->dropped[why]++;
}

static void drop_malformed(struct radius_front *f, const char *why)
{
    drop(f, RF_DROP_MALFORMED);
    for (size_t i = 0; i < RF_REASONS_MAX; i++) {
        if (!f->reasons[i].why)
            f->reasons[i].why = why;
        if (f->reasons[i].why == why || strcmp(f->reasons[i].why, why) == 0) {
            f->reasons[i].n++;
            return;
        }
    }
    f->reasons_other++;
}

/* Sends header + datagram on the node's connected socket. Returns 0, or -1 with errno. */
static int send_to_node(struct rf_node *n, const uint8_t *hdr, size_t hlen, const uint8_t *pkt,
                        size_t len)
{
    /* sendmsg() does not write through iov_base: the casts drop a const it honours. */
    struct iovec iov[2] = { { (void *)(uintptr_t)hdr, hlen }, { (void *)(uintptr_t)pkt, len } };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

    return sendmsg(n->fd, &msg, MSG_DONTWAIT) < 0 ? -1 : 0;
}

static void count_route(struct radius_front *f, enum rroute_why why)
{
    if (why == RROUTE_RETRANSMIT)
        f->retransmissions++;
    else if (why == RROUTE_STATE)
        f->state_routed++;
    else if (why == RROUTE_REROUTED)
        f->rerouted++;
}

/*
 * Routes and forwards the request of <len> bytes in f->req from <nas> to
 * <dst>. A node that refuses it (ECONNREFUSED: the ICMP of an earlier
 * datagram) is held down and the request routed once more.
 */
static bool known_client(const struct radius_front *f, const struct sockaddr *nas)
{
    for (size_t i = 0; i < f->nclients; i++) {
        if (netaddr_prefix_match(&f->clients[i], nas))
            return true;
    }
    return false;
}

static void handle_request(struct radius_front *f, size_t len, struct sockaddr_storage *nas,
                           struct sockaddr_storage *dst)
{
    struct radius_packet *p = &f->pkt;
    const struct radius_attr *state;
    struct rroute_key key;
    uint8_t hdr[PROXY2_MAX_OUT];
    const char *why = NULL;
    int hlen, state_node = -1;

    if (!known_client(f, (const struct sockaddr *)nas)) {
        drop(f, RF_DROP_UNKNOWN_CLIENT);
        return;
    }
    if (radius_parse(f->req, len, p, &why) < 0) {
        drop_malformed(f, why ? why : "unknown");
        return;
    }
    /* The node serves authentication only; accounting and answers have no business here. */
    if (p->code != RADIUS_ACCESS_REQUEST && p->code != RADIUS_STATUS_SERVER) {
        drop(f, RF_DROP_NOT_REQUEST);
        return;
    }
    state = radius_find(p, RADIUS_STATE);
    if (state)
        state_node = rroute_state_node(&f->route, state->value, state->len);
    rroute_key_make(&key, (const struct sockaddr *)nas, p->id, p->authenticator);
    /* A v4-mapped NAS (a "::" front) goes to the node as the IPv4 it is. */
    netaddr_to_family(nas, AF_INET);
    netaddr_to_family(dst, AF_INET);
    hlen = proxy2_write(hdr, sizeof(hdr), (const struct sockaddr *)nas,
                        (const struct sockaddr *)dst, SOCK_DGRAM);
    if (hlen < 0) {
        drop(f, RF_DROP_NO_DESTINATION);
        return;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        enum rroute_why rwhy;
        int i = rroute_request(&f->route, &key, state_node, clock_mono_ms(), &rwhy);

        if (i < 0) {
            drop(f, RF_DROP_NO_NODE);
            return;
        }
        if (send_to_node(&f->nodes[i], hdr, (size_t)hlen, f->req, len) == 0) {
            f->forwarded++;
            f->nodes[i].forwarded++;
            count_route(f, rwhy);
            return;
        }
        if (errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH) {
            log_debug("radius.send node=%s err=%s", f->route.nodes[i].id, strerror(errno));
            break;
        }
        node_unreachable(f, (size_t)i);
    }
    drop(f, RF_DROP_SEND_FAILED);
}

static void front_readable(evutil_socket_t fd, short what, void *arg)
{
    struct radius_front *f = arg;

    (void)what;
    for (int i = 0; i < RF_BURST; i++) {
        struct sockaddr_storage nas, dst;
        union {
            struct cmsghdr align;
            char buf[RF_CTL_LEN];
        } ctl;
        struct iovec iov = { f->req, sizeof(f->req) };
        struct msghdr msg = { .msg_name = &nas,
                              .msg_namelen = sizeof(nas),
                              .msg_iov = &iov,
                              .msg_iovlen = 1,
                              .msg_control = ctl.buf,
                              .msg_controllen = sizeof(ctl.buf) };
        ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT);

        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_debug("radius.recv err=%s", strerror(errno));
            return;
        }
        f->received++;
        /* RFC 2865 §3: 4096 bytes at most; the kernel cut a longer one. */
        if (msg.msg_flags & MSG_TRUNC) {
            drop(f, RF_DROP_TOO_BIG);
            continue;
        }
        if (!pktinfo_dst(&msg, f->port, &dst)) {
            drop(f, RF_DROP_NO_DESTINATION);
            continue;
        }
        handle_request(f, (size_t)got, &nas, &dst);
    }
}

/* ---- answers: node -> NAS ---- */

/* Sends <len> bytes to <to> from <from> through the front socket. Returns 0, or -1 with errno. */
static int send_to_nas(struct radius_front *f, const uint8_t *data, size_t len,
                       struct sockaddr_storage *to, socklen_t tolen,
                       const struct sockaddr_storage *from)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    } ctl;
    struct iovec iov = { (void *)(uintptr_t)data, len };
    struct msghdr msg = { .msg_name = to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1 };
    struct cmsghdr *c;

    /* Bound to one address, that is the source; bound to any, the one the NAS sent to. */
    if (f->wildcard) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        c = (struct cmsghdr *)ctl.buf;
        if (f->family == AF_INET) {
            struct in_pktinfo pi = { 0 };

            pi.ipi_spec_dst = ((const struct sockaddr_in *)from)->sin_addr;
            msg.msg_controllen = CMSG_SPACE(sizeof(pi));
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        } else {
            struct in6_pktinfo pi = { 0 };

            pi.ipi6_addr = ((const struct sockaddr_in6 *)from)->sin6_addr;
            msg.msg_controllen = CMSG_SPACE(sizeof(pi));
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        }
    }
    return sendmsg(f->fd, &msg, MSG_DONTWAIT) < 0 ? -1 : 0;
}

/*
 * Relays the answer of <len> bytes in f->ans from node <n>: its PROXY header
 * names the NAS (destination) and our front address (source); the payload,
 * header stripped, goes there. The Response Authenticator is the NAS's to
 * check.
 */
static void handle_answer(struct radius_front *f, struct rf_node *n, size_t len)
{
    struct radius_packet *p = &f->pkt;
    struct proxy2 h;
    const char *why = NULL;
    socklen_t tolen;

    if (proxy2_parse(f->ans, len, &h, &why) < 0 || h.local || h.socktype != SOCK_DGRAM) {
        drop(f, RF_DROP_ANSWER_BAD_PROXY);
        return;
    }
    if (radius_parse(f->ans + h.header_len, len - h.header_len, p, &why) < 0) {
        drop(f, RF_DROP_ANSWER_MALFORMED);
        return;
    }
    if (p->code != RADIUS_ACCESS_ACCEPT && p->code != RADIUS_ACCESS_REJECT &&
        p->code != RADIUS_ACCESS_CHALLENGE) {
        drop(f, RF_DROP_ANSWER_NOT_RESPONSE);
        return;
    }
    rroute_answered(&f->route, n->index, (const struct sockaddr *)&h.dst, p->id);
    /* In the front socket's family: IPv4 is v4-mapped on an IPv6 socket. */
    tolen = netaddr_to_family(&h.dst, f->family);
    if (tolen == 0 || netaddr_to_family(&h.src, f->family) == 0) {
        drop(f, RF_DROP_ANSWER_BAD_PROXY);
        return;
    }
    if (send_to_nas(f, p->data, p->length, &h.dst, tolen, &h.src) < 0) {
        log_debug("radius.answer node=%s err=%s", f->route.nodes[n->index].id, strerror(errno));
        drop(f, RF_DROP_ANSWER_SEND_FAILED);
        return;
    }
    f->answers++;
    n->answers++;
}

static void node_readable(evutil_socket_t fd, short what, void *arg)
{
    struct rf_node *n = arg;
    struct radius_front *f = n->f;

    (void)what;
    for (int i = 0; i < RF_BURST; i++) {
        /* MSG_TRUNC: the datagram's real length, to tell a cut one. */
        ssize_t got = recv(fd, f->ans, sizeof(f->ans), MSG_DONTWAIT | MSG_TRUNC);

        if (got < 0) {
            if (errno == EINTR)
                continue;
            /* An ICMP error for an earlier datagram: reported once, then the socket reads on. */
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
                node_unreachable(f, n->index);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_debug("radius.recv node=%s err=%s", f->route.nodes[n->index].id,
                          strerror(errno));
            return;
        }
        if ((size_t)got > sizeof(f->ans)) {
            drop(f, RF_DROP_ANSWER_TOO_BIG);
            continue;
        }
        handle_answer(f, n, (size_t)got);
    }
}

/* ---- setup ---- */

static int front_socket(struct radius_front *f, const char *address, char **err)
{
    struct sockaddr_storage ss;
    socklen_t len = netaddr_make(address, f->port, &ss);
    int on = 1, off = 0, rcvbuf = RF_RCVBUF;

    if (len == 0)
        return err_set(err, "balancer.radius.address: \"%s\" is not a numeric address", address);
    f->family = ss.ss_family;
    f->wildcard = f->family == AF_INET
                      ? ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)
                      : IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    f->fd = socket(f->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        return err_set(err, "RADIUS front: socket: %s", strerror(errno));
    /* Best effort: a deeper queue rides out a burst of NASes. */
    (void)setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (f->family == AF_INET ? setsockopt(f->fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on))
                             : setsockopt(f->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)))
        return err_set(err, "RADIUS front: cannot ask for the destination address: %s",
                       strerror(errno));
    /* "::" takes IPv4 too (as v4-mapped), whatever net.ipv6.bindv6only says. */
    if (f->family == AF_INET6 && f->wildcard &&
        setsockopt(f->fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0)
        return err_set(err, "RADIUS front: IPV6_V6ONLY: %s", strerror(errno));
    if (bind(f->fd, (struct sockaddr *)&ss, len) < 0)
        return err_set(err, "RADIUS front: cannot bind UDP %s%s%s:%d: %s",
                       f->family == AF_INET6 ? "[" : "", address, f->family == AF_INET6 ? "]" : "",
                       f->port, strerror(errno));
    f->ev = event_new(f->b->base, f->fd, EV_READ | EV_PERSIST, front_readable, f);
    if (!f->ev || event_add(f->ev, NULL) < 0)
        return err_set(err, "RADIUS front: out of memory");
    return 0;
}

/*
 * The socket towards member <m>'s node, from <me>'s own address: the node
 * takes PROXY headers only from the members' addresses (node.radius.balancers),
 * and the kernel's choice of source could be a floating address instead.
 */
static int node_socket(struct radius_front *f, size_t i, const struct member_conf *m,
                       const struct member_conf *me, char **err)
{
    struct rf_node *n = &f->nodes[i];
    struct sockaddr_storage ss, self;
    socklen_t len = netaddr_make(m->address, m->ports.node_radius, &ss);
    socklen_t self_len = netaddr_make(me->address, 0, &self);

    n->f = f;
    n->index = i;
    n->logged_mode = -1;
    snprintf(n->where, sizeof(n->where), strchr(m->address, ':') ? "[%s]:%d" : "%s:%d", m->address,
             m->ports.node_radius);
    if (len == 0)
        return err_set(err, "RADIUS front: member %s: \"%s\" is not a numeric address", m->id,
                       m->address);
    n->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (n->fd < 0)
        return err_set(err, "RADIUS front: socket: %s", strerror(errno));
    if (self_len && self.ss_family == ss.ss_family &&
        bind(n->fd, (struct sockaddr *)&self, self_len) < 0)
        return err_set(err, "RADIUS front: cannot send from the member address %s: %s", me->address,
                       strerror(errno));
    /* Connected: only that node's datagrams come in, and its ICMP errors reach us. */
    if (connect(n->fd, (struct sockaddr *)&ss, len) < 0)
        return err_set(err, "RADIUS front: cannot reach node %s at UDP %s: %s", m->id, n->where,
                       strerror(errno));
    n->ev = event_new(f->b->base, n->fd, EV_READ | EV_PERSIST, node_readable, n);
    if (!n->ev || event_add(n->ev, NULL) < 0)
        return err_set(err, "RADIUS front: out of memory");
    return 0;
}

int radius_front_start(struct bal *b, char **err)
{
    const struct appconf *c = daemon_conf(b->d);
    const struct member_conf *me = appconf_local(c);
    const char *address = *c->balancer.radius.address ? c->balancer.radius.address : me->address;
    const char *ids[RROUTE_NODES_MAX];
    struct radius_front *f;

    if (!c->balancer.radius.enabled)
        return 0;
    f = calloc(1, sizeof(*f));
    if (!f)
        return err_set(err, "RADIUS front: out of memory");
    b->radius = f;
    f->b = b;
    f->fd = -1;
    f->port = me->ports.radius;
    snprintf(f->address, sizeof(f->address), "%s", address);
    for (size_t i = 0; i < RROUTE_NODES_MAX; i++)
        f->nodes[i].fd = -1;
    f->clients = calloc(c->node.radius.nclients + 1, sizeof(*f->clients));
    if (!f->clients)
        return err_set(err, "RADIUS front: out of memory");
    for (size_t i = 0; i < c->node.radius.nclients; i++) {
        const char *why = NULL;

        if (netaddr_parse_prefix(c->node.radius.clients[i].address, &f->clients[f->nclients++],
                                 &why) < 0)
            return err_set(err, "node.radius.clients[%zu].address: %s", i, why);
    }
    for (size_t i = 0; i < c->cluster.nmembers; i++)
        ids[i] = c->cluster.members[i].id;
    if (rroute_init(&f->route, ids, c->cluster.nmembers,
                    (uint64_t)c->balancer.radius.retransmit_window_ms, RROUTE_TABLE_MAX, err) < 0)
        return -1;
    for (size_t i = 0; i < c->cluster.nmembers; i++)
        if (node_socket(f, i, &c->cluster.members[i], me, err) < 0)
            return -1;
    if (front_socket(f, address, err) < 0)
        return -1;
    log_notice("radius.listening address=%s port=%d nodes=%zu clients=%zu window_ms=%d", address,
               f->port, f->route.nnodes, f->nclients, c->balancer.radius.retransmit_window_ms);
    /* The nodes' modes now, not at the first tick: early datagrams find them. */
    radius_front_tick(b);
    return 0;
}

void radius_front_tick(struct bal *b)
{
    struct radius_front *f = b->radius;
    uint64_t now = clock_mono_ms();

    if (!f)
        return;
    for (size_t i = 0; i < f->route.nnodes && i < b->nservers; i++) {
        f->route.nodes[i].admin = b->servers[i].state;
        f->route.nodes[i].answers = node_answers(b, i);
    }
    rroute_expire(&f->route, now);
    log_modes(f, now);
}

void radius_front_stop_listening(struct bal *b)
{
    struct radius_front *f = b->radius;

    if (f && f->ev)
        event_del(f->ev);
}

void radius_front_free(struct bal *b)
{
    struct radius_front *f = b->radius;

    if (!f)
        return;
    for (size_t i = 0; i < RROUTE_NODES_MAX; i++) {
        if (f->nodes[i].ev)
            event_free(f->nodes[i].ev);
        if (f->nodes[i].fd >= 0)
            close(f->nodes[i].fd);
    }
    if (f->ev)
        event_free(f->ev);
    if (f->fd >= 0)
        close(f->fd);
    rroute_free(&f->route);
    free(f->clients);
    mfa_free(b->radius);
}

/* ---- status ---- */

static json_t *drops_json(const struct radius_front *f)
{
    json_t *o = json_object();

    for (int i = 0; i < RF_DROP_COUNT_; i++)
        json_object_set_new(o, drop_names[i], json_integer((json_int_t)f->dropped[i]));
    return o;
}

static json_t *reasons_json(const struct radius_front *f)
{
    json_t *o = json_object();

    for (size_t i = 0; i < RF_REASONS_MAX && f->reasons[i].why; i++)
        json_object_set_new(o, f->reasons[i].why, json_integer((json_int_t)f->reasons[i].n));
    if (f->reasons_other)
        json_object_set_new(o, "other", json_integer((json_int_t)f->reasons_other));
    return o;
}

static uint64_t drops_total(const struct radius_front *f)
{
    uint64_t n = 0;

    for (int i = 0; i < RF_DROP_COUNT_; i++)
        n += f->dropped[i];
    return n;
}

json_t *radius_front_counters(struct bal *b)
{
    const struct radius_front *f = b->radius;

    if (!f)
        return json_null();
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "received",
                     (json_int_t)f->received, "forwarded", (json_int_t)f->forwarded, "answers",
                     (json_int_t)f->answers, "dropped", (json_int_t)drops_total(f),
                     "retransmissions", (json_int_t)f->retransmissions, "state_routed",
                     (json_int_t)f->state_routed, "rerouted", (json_int_t)f->rerouted,
                     "unreachable", (json_int_t)f->unreachable);
}

json_t *radius_front_status(struct bal *b)
{
    const struct radius_front *f = b->radius;
    uint64_t now = clock_mono_ms();
    json_t *out, *nodes;

    if (!f)
        return json_pack("{s:b}", "enabled", 0);
    nodes = json_array();
    for (size_t i = 0; i < f->route.nnodes; i++) {
        const struct rf_node *n = &f->nodes[i];

        json_array_append_new(
            nodes,
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "id", f->route.nodes[i].id, "address",
                      n->where, "mode", rroute_mode_name(rroute_mode(&f->route, i, now)),
                      "outstanding", (json_int_t)f->route.nodes[i].outstanding, "forwarded",
                      (json_int_t)n->forwarded, "answers", (json_int_t)n->answers, "unreachable",
                      (json_int_t)n->unreachable));
    }
    out = radius_front_counters(b);
    json_object_set_new(out, "enabled", json_true());
    json_object_set_new(out, "address", json_string(f->address));
    json_object_set_new(out, "port", json_integer(f->port));
    json_object_set_new(out, "drops", drops_json(f));
    json_object_set_new(out, "malformed", reasons_json(f));
    json_object_set_new(out, "table",
                        json_pack("{s:I, s:I}", "entries", (json_int_t)rroute_entries(&f->route),
                                  "evicted", (json_int_t)f->route.evicted));
    json_object_set_new(out, "nodes", nodes);
    return out;
}
