/*
 * mfa-node's RADIUS server; see radius_server.h.
 *
 * One non-blocking UDP socket on the loop. A datagram goes: source check
 * (balancer with PROXY header, or a NAS directly) -> client by the NAS's
 * address -> parse -> Message-Authenticator -> duplicate cache -> the
 * sign-in engine (auth.h) -> answer, cached for retransmissions. A request
 * in the engine holds a struct rreq; its duplicate cache entry points to it
 * while it is pending and holds the answer's bytes once it is sent.
 */
#include "radius_server.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "errmsg.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "proxy2.h"
#include "radius.h"
#include "secrets.h"
#include "strmap.h"
#include "users_priv.h"

#define READ_BURST       256 /* datagrams per read callback, so others get the loop */
#define DGRAM_MAX        (PROXY2_MAX_OUT + RADIUS_MAX_LEN + 256)
#define PROXY_STATES_MAX 512 /* bytes of Proxy-State kept per request */
#define DUP_KEY_MAX      (NETADDR_TEXT_MAX + 8 + 4 + 2 * RADIUS_AUTH_LEN + 4)
#define DUP_MAX          (1 << 18) /* entries; more are not cached (and counted) */

/* Why a datagram was dropped; the counters and the metric labels. */
enum drop {
    DROP_MALFORMED = 0,
    DROP_BAD_PROXY,
    DROP_PROXY_NOT_LISTED,
    DROP_UNKNOWN_CLIENT,
    DROP_NOT_REQUEST,
    DROP_MISSING_MA,
    DROP_BAD_AUTHENTICATOR,
    DROP_NOT_PAP,
    DROP_IN_PROGRESS,
    DROP_FAILED,
    DROP_STOPPING,
    DROP_COUNT_,
};

static const char *const drop_names[] = {
    [DROP_MALFORMED] = "malformed",
    [DROP_BAD_PROXY] = "bad_proxy_header",
    [DROP_PROXY_NOT_LISTED] = "proxy_from_unlisted",
    [DROP_UNKNOWN_CLIENT] = "unknown_client",
    [DROP_NOT_REQUEST] = "not_a_request",
    [DROP_MISSING_MA] = "missing_message_authenticator",
    [DROP_BAD_AUTHENTICATOR] = "bad_authenticator",
    [DROP_NOT_PAP] = "not_pap",
    [DROP_IN_PROGRESS] = "duplicate_in_progress",
    [DROP_FAILED] = "unanswered_error",
    [DROP_STOPPING] = "stopping",
};

struct client {
    const char *name;
    struct netaddr_prefix prefix;
    uint8_t secret[RADIUS_SECRET_MAX];
    size_t secret_len;
    bool require_ma;
    unsigned long long requests;
};

/* Where an answer goes: straight to the NAS, or to the balancer with a PROXY header. */
struct route {
    struct sockaddr_storage peer; /* the datagram's source: the NAS or the balancer */
    socklen_t peer_len;
    bool proxied;
    struct sockaddr_storage nas, front; /* from the PROXY header */
};

struct dup {
    char key[DUP_KEY_MAX];
    uint64_t expires_ms;
    struct rreq *pending; /* the request being worked on, or NULL once answered */
    uint8_t *answer;      /* the answer's RADIUS bytes (NULL: none was sent) */
    size_t answer_len;
    struct dup *next; /* in creation order, for expiry */
};

/* One Access-Request in the sign-in engine. */
struct rreq {
    struct radius_server *rs;
    struct client *client;
    struct dup *dup; /* NULL when the cache was full or the entry expired */
    struct route route;
    uint8_t id;
    uint8_t req_auth[RADIUS_AUTH_LEN];
    uint8_t proxy_states[PROXY_STATES_MAX]; /* the request's Proxy-States, in order */
    size_t proxy_states_len;
};

struct radius_server {
    struct node *n;
    int fd;
    struct event *ev;
    struct client *clients;
    size_t nclients;
    struct sockaddr_storage *balancers;
    size_t nbalancers;
    struct strmap *dups;
    struct dup *dup_head, *dup_tail;
    size_t in_flight;
    bool stopping; /* shutting down: only retransmissions and follow-ups are served */
    unsigned long long received, answered[3], duplicates, resent, cache_full;
    unsigned long long drops[DROP_COUNT_];
};

/* ---- setup ---- */

/* node.radius.balancers, or every member's address when it is empty. */
static int load_balancers(struct radius_server *rs, const struct appconf *c, char **err)
{
    char bad[NETADDR_TEXT_MAX + 1];
    const char *why = NULL;

    rs->balancers = calloc(APPCONF_MAX_RADIUS_BALANCERS, sizeof(*rs->balancers));
    if (!rs->balancers)
        return err_set(err, "out of memory");
    if (netaddr_parse_list(c->node.radius.balancers, rs->balancers, APPCONF_MAX_RADIUS_BALANCERS,
                           &rs->nbalancers, bad, &why) < 0)
        return err_set(err, "node.radius.balancers: \"%s\": %s", bad, why);
    for (size_t i = 0; i < c->cluster.nmembers && !*c->node.radius.balancers; i++) {
        if (!netaddr_make(c->cluster.members[i].address, 0, &rs->balancers[rs->nbalancers]))
            return err_set(err, "cluster.members[%zu].address: not numeric", i);
        rs->nbalancers++;
    }
    return 0;
}

static int load_clients(struct radius_server *rs, const struct appconf *c, char **err)
{
    const char *why = NULL;

    rs->nclients = c->node.radius.nclients;
    rs->clients = calloc(rs->nclients ? rs->nclients : 1, sizeof(*rs->clients));
    if (!rs->clients)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < rs->nclients; i++) {
        const struct radius_client_conf *cc = &c->node.radius.clients[i];
        struct client *cl = &rs->clients[i];

        cl->name = cc->name;
        if (netaddr_parse_prefix(cc->address, &cl->prefix, &why) < 0)
            return err_set(err, "node.radius.clients[%zu].address: %s", i, why);
        cl->secret_len = strlen(cc->secret);
        if (cl->secret_len == 0 || cl->secret_len > sizeof(cl->secret))
            return err_set(err, "node.radius.clients[%zu].secret: expected 1 to %d bytes", i,
                           RADIUS_SECRET_MAX);
        memcpy(cl->secret, cc->secret, cl->secret_len);
        cl->require_ma = cc->require_message_authenticator;
    }
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

struct radius_server *radius_server_new(struct node *n, char **err)
{
    const struct appconf *c = node_conf(n);
    const struct member_conf *me = appconf_local(c);
    struct radius_server *rs;
    struct sockaddr_storage ss;
    socklen_t len;

    if (!c->node.radius.enabled)
        return NULL;
    rs = calloc(1, sizeof(*rs));
    if (!rs) {
        err_set(err, "out of memory");
        return NULL;
    }
    rs->n = n;
    rs->fd = -1;
    rs->dups = strmap_new();
    if (!rs->dups) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (load_clients(rs, c, err) < 0 || load_balancers(rs, c, err) < 0)
        goto fail;
    len = netaddr_make(me->address, me->ports.node_radius, &ss);
    rs->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (rs->fd < 0 || bind(rs->fd, (struct sockaddr *)&ss, len) < 0) {
        err_set(err, "node.radius: cannot listen on %s port %d/udp: %s", me->address,
                me->ports.node_radius, strerror(errno));
        goto fail;
    }
    rs->ev = event_new(daemon_base(n->d), rs->fd, EV_READ | EV_PERSIST, on_readable, rs);
    if (!rs->ev || event_add(rs->ev, NULL) < 0) {
        err_set(err, "node.radius: cannot watch the socket");
        goto fail;
    }
    log_notice("radius.listening address=%s port=%d clients=%zu balancers=%zu", me->address,
               me->ports.node_radius, rs->nclients, rs->nbalancers);
    return rs;
fail:
    radius_server_free(rs);
    return NULL;
}

static void dup_free(struct dup *d)
{
    if (d->pending)
        d->pending->dup = NULL;
    free(d->answer);
    free(d);
}

void radius_server_free(struct radius_server *rs)
{
    if (!rs)
        return;
    if (rs->ev)
        event_free(rs->ev);
    if (rs->fd >= 0)
        close(rs->fd);
    while (rs->dup_head) {
        struct dup *d = rs->dup_head;

        rs->dup_head = d->next;
        dup_free(d);
    }
    strmap_free(rs->dups, NULL);
    for (size_t i = 0; rs->clients && i < rs->nclients; i++)
        secret_wipe(rs->clients[i].secret, sizeof(rs->clients[i].secret));
    free(rs->clients);
    free(rs->balancers);
    free(rs);
}

/*
 * The socket stays open while the node drains: retransmissions and the
 * follow-ups of this node's challenges are still answered, new sign-ins are
 * dropped (the NAS retries, and the balancer sends them elsewhere once the
 * node's checks fail or its closed port refuses them).
 */
void radius_server_stop_listening(struct radius_server *rs)
{
    if (rs)
        rs->stopping = true;
}

size_t radius_server_in_flight(const struct radius_server *rs)
{
    return rs ? rs->in_flight : 0;
}

/* ---- the duplicate cache (RFC 5080 §2.2.2) ---- */

static void dup_key(const struct sockaddr *nas, uint8_t id, const uint8_t *auth, char *out,
                    size_t size)
{
    char host[NETADDR_TEXT_MAX];
    size_t n;

    n = (size_t)snprintf(out, size, "%s|%d|%u|", netaddr_text(nas, host, sizeof(host)),
                         netaddr_port(nas), id);
    for (size_t i = 0; i < RADIUS_AUTH_LEN && n + 2 < size; i++, n += 2)
        snprintf(out + n, size - n, "%02x", auth[i]);
}

static uint64_t window_ms(const struct radius_server *rs)
{
    return (uint64_t)node_conf(rs->n)->node.radius.duplicate_window_ms;
}

static void dup_append(struct radius_server *rs, struct dup *d)
{
    if (rs->dup_tail)
        rs->dup_tail->next = d;
    else
        rs->dup_head = d;
    rs->dup_tail = d;
}

void radius_server_tick(struct radius_server *rs)
{
    uint64_t now = clock_mono_ms();

    if (!rs)
        return;
    while (rs->dup_head && rs->dup_head->expires_ms <= now) {
        struct dup *d = rs->dup_head;

        rs->dup_head = d->next;
        if (!rs->dup_head)
            rs->dup_tail = NULL;
        d->next = NULL;
        if (d->pending) {
            /* Still being worked on (a slow SMS): it must keep catching retransmissions. */
            d->expires_ms = now + window_ms(rs);
            dup_append(rs, d);
            continue;
        }
        if (*d->key)
            strmap_remove(rs->dups, d->key);
        dup_free(d);
    }
}

/* A new entry for a request being worked on, or NULL when the cache is full. */
static struct dup *dup_add(struct radius_server *rs, const char *key, struct rreq *rq)
{
    struct dup *d;

    if (strmap_count(rs->dups) >= DUP_MAX || !(d = calloc(1, sizeof(*d)))) {
        rs->cache_full++;
        return NULL;
    }
    snprintf(d->key, sizeof(d->key), "%s", key);
    d->expires_ms = clock_mono_ms() + window_ms(rs);
    d->pending = rq;
    if (strmap_put(rs->dups, d->key, d, NULL) < 0) {
        free(d);
        rs->cache_full++;
        return NULL;
    }
    dup_append(rs, d);
    return d;
}

/*
 * The request is done: its entry keeps <answer> (or, with none, swallows
 * retransmissions) for the window from now.
 */
static void dup_settle(struct radius_server *rs, struct rreq *rq, const uint8_t *answer, size_t len)
{
    struct dup *d = rq->dup;

    if (!d)
        return;
    d->pending = NULL;
    d->expires_ms = clock_mono_ms() + window_ms(rs);
    if (answer && (d->answer = malloc(len))) {
        memcpy(d->answer, answer, len);
        d->answer_len = len;
    }
    rq->dup = NULL;
}

/* The request is forgotten: a retransmission is handled as a new request. */
static void dup_forget(struct radius_server *rs, struct rreq *rq)
{
    struct dup *d = rq->dup;

    if (!d)
        return;
    strmap_remove(rs->dups, d->key);
    d->key[0] = '\0'; /* the FIFO frees it in its turn */
    d->pending = NULL;
    rq->dup = NULL;
}

/* ---- sending ---- */

static void send_answer(struct radius_server *rs, const struct route *rt, const uint8_t *pkt,
                        size_t len)
{
    uint8_t buf[DGRAM_MAX];
    size_t off = 0;
    int hl;

    if (rt->proxied) {
        hl = proxy2_write(buf, sizeof(buf), (const struct sockaddr *)&rt->front,
                          (const struct sockaddr *)&rt->nas, SOCK_DGRAM);
        if (hl < 0) {
            log_warn("radius.answer_unsent err=%s", "cannot write the PROXY header");
            return;
        }
        off = (size_t)hl;
    }
    memcpy(buf + off, pkt, len);
    if (sendto(rs->fd, buf, off + len, 0, (const struct sockaddr *)&rt->peer, rt->peer_len) < 0)
        log_warn("radius.answer_unsent err=%s", strerror(errno));
}

/*
 * The Reply-Message a user sees for a rejection, or NULL for none: a wrong
 * PIN or an unknown user gets a bare Access-Reject.
 */
static const char *reject_message(const struct auth_result *r)
{
    static const struct {
        const char *reason, *text;
    } texts[] = {
        { "challenge_expired", "The code expired or was already used; start the sign-in again" },
        { "wrong_code", "Wrong code; start the sign-in again" },
        { "throttled", "Too many failed sign-ins; wait and try again" },
        { "locked_out", "Too many failed sign-ins; wait and try again" },
        { "sms_rate_limited", "Too many codes were sent; try again later" },
        { "sms_cap_reached", "No code can be sent now; try again later" },
        { "sms_failed", "The code could not be sent; try again later" },
        { "directory_unavailable", "The directory does not answer; try again later" },
        /* Another sign-in of the user's is at the directory (auth.h): no bind, not counted. */
        { "busy", "The sign-in could not be completed; try again later" },
    };

    for (size_t i = 0; r->reason && i < MFA_ARRAY_LEN(texts); i++) {
        if (strcmp(texts[i].reason, r->reason) == 0)
            return texts[i].text;
    }
    return r->outcome == AUTH_ERROR ? "The sign-in could not be completed; try again later" : NULL;
}

static void add_text(struct radius_builder *b, uint8_t type, const char *text)
{
    if (text)
        (void)radius_build_add(b, type, text, strlen(text));
}

/*
 * The engine's decision as a RADIUS answer. When nothing was done (no
 * database) there is no answer and the cache forgets the request, so the
 * NAS's retransmission tries again. Any other error is an Access-Reject:
 * something may have happened (an SMS sent), so a retransmission must not
 * start it again.
 */
static void reply(void *arg, const struct auth_result *r)
{
    struct rreq *rq = arg;
    struct radius_server *rs = rq->rs;
    const struct appconf *c = node_conf(rs->n);
    struct radius_builder b;
    uint8_t code;
    int len;

    rs->in_flight--;
    if (r->outcome == AUTH_ERROR && r->retry) {
        rs->drops[DROP_FAILED]++;
        dup_forget(rs, rq);
        free(rq);
        return;
    }
    code = r->outcome == AUTH_ACCEPTED    ? RADIUS_ACCESS_ACCEPT
           : r->outcome == AUTH_CHALLENGE ? RADIUS_ACCESS_CHALLENGE
                                          : RADIUS_ACCESS_REJECT;
    radius_build_start(&b, code, rq->id);
    if (code == RADIUS_ACCESS_CHALLENGE) {
        add_text(&b, RADIUS_REPLY_MESSAGE, c->node.radius.challenge_message);
        add_text(&b, RADIUS_STATE, r->challenge_id);
    } else if (code == RADIUS_ACCESS_REJECT) {
        add_text(&b, RADIUS_REPLY_MESSAGE, reject_message(r));
    }
    /* Proxy-State comes back as it came, in order (RFC 2865 §5.33). */
    for (size_t off = 0; off + 2 <= rq->proxy_states_len; off += 2u + rq->proxy_states[off + 1])
        (void)radius_build_add(&b, RADIUS_PROXY_STATE, rq->proxy_states + off + 2,
                               rq->proxy_states[off + 1]);
    len = radius_build_response(&b, rq->req_auth, rq->client->secret, rq->client->secret_len);
    if (len < 0) {
        log_error("radius.answer_unsent err=%s", "cannot build or sign the answer");
        rs->drops[DROP_FAILED]++;
        dup_settle(rs, rq, NULL, 0);
        free(rq);
        return;
    }
    send_answer(rs, &rq->route, b.buf, (size_t)len);
    rs->answered[code == RADIUS_ACCESS_ACCEPT ? 0 : code == RADIUS_ACCESS_REJECT ? 1 : 2]++;
    dup_settle(rs, rq, b.buf, (size_t)len);
    free(rq);
}

/* Status-Server (RFC 5997): alive, answered at once with Access-Accept. */
static void answer_status(struct radius_server *rs, const struct route *rt, const struct client *cl,
                          const struct radius_packet *p)
{
    struct radius_builder b;
    int len;

    radius_build_start(&b, RADIUS_ACCESS_ACCEPT, p->id);
    len = radius_build_response(&b, p->authenticator, cl->secret, cl->secret_len);
    if (len > 0)
        send_answer(rs, rt, b.buf, (size_t)len);
}

/* ---- receiving ---- */

static bool listed_balancer(const struct radius_server *rs, const struct sockaddr *sa)
{
    for (size_t i = 0; i < rs->nbalancers; i++) {
        if (netaddr_same_host((const struct sockaddr *)&rs->balancers[i], sa))
            return true;
    }
    return false;
}

/* The client whose prefix holds <nas>, the longest prefix winning; NULL for none. */
static struct client *find_client(struct radius_server *rs, const struct sockaddr *nas)
{
    struct client *best = NULL;

    for (size_t i = 0; i < rs->nclients; i++) {
        struct client *cl = &rs->clients[i];

        if (netaddr_prefix_match(&cl->prefix, nas) &&
            (!best || cl->prefix.bits > best->prefix.bits))
            best = cl;
    }
    return best;
}

static void drop(struct radius_server *rs, enum drop why, const struct sockaddr *from)
{
    char host[NETADDR_TEXT_MAX];

    rs->drops[why]++;
    log_debug("radius.dropped reason=%s from=%s", drop_names[why],
              netaddr_text(from, host, sizeof(host)));
}

/* A string attribute as text; false when absent, empty, too long or holding a NUL. */
static bool attr_text(const struct radius_packet *p, uint8_t type, char *out, size_t size)
{
    const struct radius_attr *a = radius_find(p, type);

    if (!a || a->len == 0 || a->len >= size || memchr(a->value, '\0', a->len))
        return false;
    memcpy(out, a->value, a->len);
    out[a->len] = '\0';
    return true;
}

/* The person's address: Calling-Station-Id when it is an IP address, else the NAS's. */
static void person_address(const struct radius_packet *p, const struct sockaddr *nas, char *out,
                           size_t size)
{
    struct sockaddr_storage ss;
    char text[64];

    if (attr_text(p, RADIUS_CALLING_STATION_ID, text, sizeof(text)) && netaddr_make(text, 0, &ss)) {
        snprintf(out, size, "%s", text);
        return;
    }
    netaddr_text(nas, out, size);
}

static void keep_proxy_states(struct rreq *rq, const struct radius_packet *p)
{
    for (size_t i = 0; i < p->nattrs; i++) {
        const struct radius_attr *a = &p->attrs[i];

        if (a->type != RADIUS_PROXY_STATE ||
            rq->proxy_states_len + 2u + a->len > sizeof(rq->proxy_states))
            continue;
        /* Kept as <0, len, value>: the value's length, then the value. */
        rq->proxy_states[rq->proxy_states_len++] = 0;
        rq->proxy_states[rq->proxy_states_len++] = a->len;
        memcpy(rq->proxy_states + rq->proxy_states_len, a->value, a->len);
        rq->proxy_states_len += a->len;
    }
}

/* Hands an Access-Request to the sign-in engine. */
static void sign_in(struct radius_server *rs, struct rreq *rq, const struct radius_packet *p)
{
    /* All 128 bytes: a directory user's password and code may need them (auth.h). */
    char username[USERS_USERNAME_MAX], password[RADIUS_PASSWORD_MAX + 1], state[ID_MAX];
    char client_ip[64];
    const struct radius_attr *pw = radius_find(p, RADIUS_USER_PASSWORD);
    const struct radius_attr *st = radius_find(p, RADIUS_STATE);
    struct auth_request ar = { 0 };
    int rc;

    if (!attr_text(p, RADIUS_USER_NAME, username, sizeof(username)) ||
        users_check_username("User-Name", username, NULL) < 0 || !pw ||
        radius_decode_password(pw, p->authenticator, rq->client->secret, rq->client->secret_len,
                               password, sizeof(password)) < 0) {
        /* No user name, or no PAP password (CHAP and EAP are not served). */
        drop(rs, DROP_NOT_PAP, (struct sockaddr *)&rq->route.nas);
        dup_forget(rs, rq);
        free(rq);
        return;
    }
    person_address(p, (struct sockaddr *)&rq->route.nas, client_ip, sizeof(client_ip));
    rs->in_flight++;
    if (st) {
        /* The follow-up of an SMS challenge: State is its id, the password the code. */
        snprintf(state, sizeof(state), "%.*s",
                 (int)(st->len < sizeof(state) && !memchr(st->value, '\0', st->len) ? st->len : 0),
                 (const char *)st->value);
        rc = auth_verify(rs->n, state, password, username, true, client_ip, reply, rq);
    } else {
        ar.username = username;
        ar.password = password;
        ar.client_ip = client_ip;
        rc = auth_signin(rs->n, &ar, reply, rq);
    }
    secret_wipe(password, sizeof(password));
    if (rc < 0) {
        log_error("radius.dropped reason=%s", "out of memory");
        rs->in_flight--;
        dup_forget(rs, rq);
        free(rq);
    }
}

/* One datagram from <from>. */
static void handle(struct radius_server *rs, const uint8_t *data, size_t len,
                   const struct sockaddr *from, socklen_t fromlen)
{
    struct route rt = { .peer_len = fromlen };
    struct radius_packet p;
    struct client *cl;
    struct proxy2 hdr;
    const char *why = NULL;
    char key[DUP_KEY_MAX];
    struct dup *d;
    struct rreq *rq;
    int ma;

    memcpy(&rt.peer, from, fromlen);
    if (proxy2_has_signature(data, len)) {
        if (!listed_balancer(rs, from)) {
            drop(rs, DROP_PROXY_NOT_LISTED, from);
            return;
        }
        if (proxy2_parse(data, len, &hdr, &why) < 0 || hdr.local || hdr.socktype != SOCK_DGRAM) {
            drop(rs, DROP_BAD_PROXY, from);
            return;
        }
        rt.proxied = true;
        rt.nas = hdr.src;
        rt.front = hdr.dst;
        data += hdr.header_len;
        len -= hdr.header_len;
    } else {
        memcpy(&rt.nas, from, fromlen);
    }
    cl = find_client(rs, (struct sockaddr *)&rt.nas);
    if (!cl) {
        drop(rs, DROP_UNKNOWN_CLIENT, (struct sockaddr *)&rt.nas);
        return;
    }
    if (radius_parse(data, len, &p, &why) < 0) {
        drop(rs, DROP_MALFORMED, (struct sockaddr *)&rt.nas);
        return;
    }
    if (p.code != RADIUS_ACCESS_REQUEST && p.code != RADIUS_STATUS_SERVER) {
        drop(rs, DROP_NOT_REQUEST, (struct sockaddr *)&rt.nas);
        return;
    }
    ma = radius_check_request_ma(&p, cl->secret, cl->secret_len);
    if (ma < 0) {
        drop(rs, DROP_BAD_AUTHENTICATOR, (struct sockaddr *)&rt.nas);
        return;
    }
    if (ma == 0 && (cl->require_ma || p.code == RADIUS_STATUS_SERVER)) {
        drop(rs, DROP_MISSING_MA, (struct sockaddr *)&rt.nas);
        return;
    }
    cl->requests++;
    if (p.code == RADIUS_STATUS_SERVER) {
        answer_status(rs, &rt, cl, &p);
        return;
    }
    dup_key((struct sockaddr *)&rt.nas, p.id, p.authenticator, key, sizeof(key));
    d = strmap_get(rs->dups, key);
    if (d) {
        rs->duplicates++;
        if (d->pending) {
            drop(rs, DROP_IN_PROGRESS, (struct sockaddr *)&rt.nas);
        } else if (d->answer) {
            rs->resent++;
            send_answer(rs, &rt, d->answer, d->answer_len);
        }
        return;
    }
    if (rs->stopping && !radius_find(&p, RADIUS_STATE)) {
        drop(rs, DROP_STOPPING, (struct sockaddr *)&rt.nas);
        return;
    }
    rq = calloc(1, sizeof(*rq));
    if (!rq) {
        log_error("radius.dropped reason=%s", "out of memory");
        return;
    }
    rq->rs = rs;
    rq->client = cl;
    rq->route = rt;
    rq->id = p.id;
    memcpy(rq->req_auth, p.authenticator, RADIUS_AUTH_LEN);
    keep_proxy_states(rq, &p);
    rq->dup = dup_add(rs, key, rq);
    sign_in(rs, rq, &p);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct radius_server *rs = arg;
    uint8_t buf[DGRAM_MAX];
    struct sockaddr_storage from;

    (void)what;
    for (int i = 0; i < READ_BURST; i++) {
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);

        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("radius.recv_failed err=%s", strerror(errno));
            return;
        }
        rs->received++;
        handle(rs, buf, (size_t)n, (struct sockaddr *)&from, fromlen);
    }
}

/* ---- counters ---- */

void radius_server_metrics(const struct radius_server *rs, struct evbuffer *out)
{
    static const char *const answers[] = { "accept", "reject", "challenge" };

    if (!rs)
        return;
    metrics_single(out, "mfa_radius_requests_total", METRIC_COUNTER, "RADIUS datagrams received.",
                   (double)rs->received);
    metrics_family(out, "mfa_radius_answers_total", METRIC_COUNTER,
                   "RADIUS answers sent by kind (retransmissions answered from the cache apart).");
    for (size_t i = 0; i < 3; i++)
        metrics_sample(out, "mfa_radius_answers_total", (double)rs->answered[i], "kind", answers[i],
                       NULL);
    metrics_single(out, "mfa_radius_duplicates_total", METRIC_COUNTER,
                   "Retransmissions recognised by the duplicate cache.", (double)rs->duplicates);
    metrics_single(out, "mfa_radius_resent_total", METRIC_COUNTER,
                   "Retransmissions answered again from the duplicate cache.", (double)rs->resent);
    metrics_single(out, "mfa_radius_cache_full_total", METRIC_COUNTER,
                   "Requests not cached because the duplicate cache was full.",
                   (double)rs->cache_full);
    metrics_family(out, "mfa_radius_client_requests_total", METRIC_COUNTER,
                   "Authenticated requests by RADIUS client (node.radius.clients name).");
    for (size_t i = 0; i < rs->nclients; i++)
        metrics_sample(out, "mfa_radius_client_requests_total", (double)rs->clients[i].requests,
                       "client", rs->clients[i].name, NULL);
    metrics_family(out, "mfa_radius_dropped_total", METRIC_COUNTER,
                   "RADIUS datagrams dropped without an answer, by reason.");
    for (size_t i = 0; i < DROP_COUNT_; i++)
        metrics_sample(out, "mfa_radius_dropped_total", (double)rs->drops[i], "reason",
                       drop_names[i], NULL);
}

void radius_server_status(const struct radius_server *rs, json_t *status)
{
    json_t *r, *drops;

    if (!rs)
        return;
    drops = json_object();
    for (size_t i = 0; i < DROP_COUNT_; i++)
        json_object_set_new(drops, drop_names[i], json_integer((json_int_t)rs->drops[i]));
    r = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "received",
                  (json_int_t)rs->received, "accepts", (json_int_t)rs->answered[0], "rejects",
                  (json_int_t)rs->answered[1], "challenges", (json_int_t)rs->answered[2],
                  "duplicates", (json_int_t)rs->duplicates, "resent", (json_int_t)rs->resent,
                  "in_flight", (json_int_t)rs->in_flight, "cached",
                  (json_int_t)strmap_count(rs->dups), "dropped", drops);
    json_object_set_new(r, "cache_full", json_integer((json_int_t)rs->cache_full));
    json_object_set_new(status, "radius", r);
}
