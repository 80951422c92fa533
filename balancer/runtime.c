/*
 * HAProxy's runtime API (the admin stats socket) from mfa-balancer's loop:
 * one connection per command, written and read through a bufferevent with a
 * deadline, the reply handed to a callback. The tick re-applies the server
 * states after a start or a reload and reads every server's status
 * ("show stat") once a second.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "bal.h"
#include "daemon.h"
#include "errmsg.h"
#include "hacfg.h"
#include "log.h"

#define RUNTIME_TIMEOUT_S 2
#define RUNTIME_REPLY_MAX (1 << 20)

struct rcmd {
    struct bal *b;
    struct bufferevent *bev;
    void (*done)(struct bal *b, const char *reply, void *arg);
    void *arg;
};

static void rcmd_finish(struct rcmd *c, bool ok)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    char *reply = NULL;

    if (ok && len <= RUNTIME_REPLY_MAX && (reply = malloc(len + 1))) {
        evbuffer_remove(in, reply, len);
        reply[len] = '\0';
    }
    bufferevent_free(c->bev);
    c->done(c->b, reply, c->arg);
    free(reply);
    free(c);
}

static void rcmd_event(struct bufferevent *bev, short what, void *arg)
{
    struct rcmd *c = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    /* The socket closes after the answer: EOF is success. */
    rcmd_finish(c, (what & BEV_EVENT_EOF) != 0);
}

static void rcmd_read(struct bufferevent *bev, void *arg)
{
    struct rcmd *c = arg;

    if (evbuffer_get_length(bufferevent_get_input(bev)) > RUNTIME_REPLY_MAX)
        rcmd_finish(c, false);
}

int runtime_command(struct bal *b, const char *cmd,
                    void (*done)(struct bal *b, const char *reply, void *arg), void *arg,
                    char **err)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct timeval tv = { RUNTIME_TIMEOUT_S, 0 };
    struct rcmd *c;

    if (strlen(b->admin_sock) >= sizeof(sun.sun_path))
        return err_set(err, "runtime socket path too long");
    memcpy(sun.sun_path, b->admin_sock, strlen(b->admin_sock) + 1);
    c = calloc(1, sizeof(*c));
    if (!c)
        return err_set(err, "out of memory");
    c->b = b;
    c->done = done;
    c->arg = arg;
    c->bev = bufferevent_socket_new(b->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        free(c);
        return err_set(err, "out of memory");
    }
    bufferevent_setcb(c->bev, rcmd_read, NULL, rcmd_event, c);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\n", cmd);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        bufferevent_free(c->bev);
        free(c);
        return err_set(err, "cannot connect to %s", b->admin_sock);
    }
    return 0;
}

static void states_applied(struct bal *b, const char *reply, void *arg)
{
    unsigned gen = (unsigned)(uintptr_t)arg;

    b->runtime_busy = false;
    /* Each command answers an empty line when it took; anything else is an error text. */
    if (!reply) {
        log_debug("runtime.states_failed err=%s", "no answer");
        return;
    }
    for (const char *s = reply; *s; s++) {
        if (*s != '\n' && *s != '\r') {
            log_warn("runtime.states_refused reply=%s", reply);
            break;
        }
    }
    /* Marked again meanwhile (a reload, a new state): that batch is still due. */
    if (gen == b->states_gen)
        b->states_dirty = false;
    log_info("runtime.states_applied servers=%zu", b->nservers);
}

/*
 * A line of "show servers state": "<be_id> <be_name> <srv_id> <srv_name>
 * <srv_addr> <srv_op_state> <srv_admin_state> ...". When the admin state
 * HAProxy runs with is not the one kept (a new worker after a reload that
 * came up before our states reached it), mark them to be applied again.
 */
static void check_admin_state(struct bal *b, const char *line, size_t len)
{
    char buf[512], be[64], name[64];
    unsigned admin;
    struct bal_server *s;

    if (len >= sizeof(buf) || line[0] == '#')
        return;
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (sscanf(buf, "%*s %63s %*s %63s %*s %*s %u", be, name, &admin) != 3 ||
        strcmp(be, HACFG_BACKEND) != 0 || !(s = bal_server(b, name)))
        return;
    /* SRV_ADMF_FMAINT 0x01, SRV_ADMF_FDRAIN 0x08: what "set server ... state" sets. */
    if (((admin & 0x01) != 0) != (s->state == SERVER_MAINT) ||
        ((admin & 0x08) != 0) != (s->state == SERVER_DRAIN)) {
        if (!b->states_dirty)
            log_notice("runtime.state_drift server=%s want=%s admin=%u", name,
                       server_state_name(s->state), admin);
        bal_states_dirty(b);
    }
}

/* "show stat" CSV: # pxname,svname,qcur,qmax,scur,...,status (field 17),... */
static void stat_read(struct bal *b, const char *reply, void *arg)
{
    (void)arg;
    b->runtime_busy = false;
    if (!reply)
        return;
    for (const char *line = reply; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024], *field[20];
        int n = 0;

        if (len < sizeof(buf) && strncmp(line, HACFG_BACKEND ",", strlen(HACFG_BACKEND) + 1) == 0) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            /* Empty fields count: split by hand (strtok would skip them). */
            for (char *p = buf; n < 20; n++) {
                field[n] = p;
                p = strchr(p, ',');
                if (!p) {
                    n++;
                    break;
                }
                *p++ = '\0';
            }
            if (n >= 18) {
                struct bal_server *s = bal_server(b, field[1]);
                if (s) {
                    snprintf(s->status, sizeof(s->status), "%s", field[17]);
                    s->current_sessions = strtol(field[4], NULL, 10);
                }
            }
        }
        check_admin_state(b, line, len);
        line = end ? end + 1 : NULL;
    }
}

void runtime_tick(struct bal *b)
{
    char cmd[2048], *err = NULL;
    size_t len = 0;

    if (b->runtime_busy || !haproxy_running(b))
        return;
    if (b->states_dirty) {
        for (size_t i = 0; i < b->nservers && len < sizeof(cmd) - 100; i++)
            len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, "%sset server %s/%s state %s",
                                    i ? "; " : "", HACFG_BACKEND, b->servers[i].id,
                                    server_state_name(b->servers[i].state));
        if (runtime_command(b, cmd, states_applied, (void *)(uintptr_t)b->states_gen, &err) == 0) {
            b->runtime_busy = true;
        } else {
            log_debug("runtime.connect err=%s", err);
            free(err);
        }
        return;
    }
    if (daemon_every(b->d, 1000)) {
        if (runtime_command(b, "show stat; show servers state " HACFG_BACKEND, stat_read, NULL,
                            &err) == 0) {
            b->runtime_busy = true;
        } else {
            free(err);
        }
    }
}
