/*
 * haproxy.cfg from appliance.conf (see hacfg.h).
 *
 * The file is written whole on every render and never edited in place, so
 * what HAProxy runs is always what this code says. Every value taken from
 * the configuration is checked before a line is written: HAProxy's line
 * parser (parse_line() in its tools.c) splits words on whitespace, starts a
 * comment at '#', reads quotes and backslash escapes, and expands $NAME and
 * ${NAME} from the environment, so a value that holds any of those would be
 * read as something else. Paths and cipher lists go in as plain words and
 * may hold none of them; the stats credentials go in single quotes (which
 * keep '$' and ':' literal) and may not hold whitespace, quotes,
 * backslashes, '#' or control characters. A refused value is named by its
 * key in *err, and a secret is never repeated there.
 *
 * HAProxy runs as the balancer's unprivileged child in master-worker mode
 * (-W on its command line, so not in this file), in the foreground, logging
 * to the stderr the balancer reads.
 */
#include "hacfg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "netaddr.h"

/* The userlist that guards the whole stats front end, /metrics included. */
#define HACFG_STATS_USERS "stats_users"

/*
 * What <c> is, for a message, when HAProxy's parser would not take it as a
 * literal character of a word; NULL when it would. <quoted>: inside single
 * quotes, where '$' is literal.
 */
static const char *bad_char(unsigned char c, bool quoted)
{
    if (c < 0x20 || c == 0x7f)
        return "a control character";
    if (c == ' ')
        return "a space";
    if (c == '\'' || c == '"')
        return "a quote";
    if (c == '\\')
        return "a backslash";
    if (c == '#')
        return "'#'";
    if (c == '$' && !quoted)
        return "'$'";
    return NULL;
}

/*
 * Checks that <value> can stand in haproxy.cfg as one word, in single quotes
 * when <quoted>. <what> names it in *err; the value itself is shown only when
 * <show>. Returns 0, or -1 with *err.
 */
static int check_word(const char *what, const char *value, bool quoted, bool show, char **err)
{
    const char *why;

    if (!value || !*value)
        return err_set(err, "%s: must not be empty", what);
    for (const unsigned char *s = (const unsigned char *)value; *s; s++) {
        why = bad_char(*s, quoted);
        if (!why)
            continue;
        /* A control character is not shown: it could upset the terminal. */
        if (show && *s >= 0x20 && *s != 0x7f)
            return err_set(err, "%s: \"%.200s\" has %s, which haproxy.cfg cannot hold", what, value,
                           why);
        return err_set(err, "%s: has %s, which haproxy.cfg cannot hold", what, why);
    }
    return 0;
}

static int check_port(const char *what, int port, char **err)
{
    if (port < 1 || port > 65535)
        return err_set(err, "%s: %d is not a port HAProxy can use", what, port);
    return 0;
}

/*
 * Everything the file will hold from <conf> and <p>, before a line is
 * written. Sets *remote when a member is reached over the network (TLS to
 * that node). Returns 0, or -1 with *err.
 */
static int check_values(const struct appconf *conf, const struct hacfg_paths *p, bool *remote,
                        char **err)
{
    const struct member_conf *self = appconf_local(conf);
    const char *pw = conf->balancer.stats_password;
    char what[64];

    *remote = false;
    if (!self)
        return err_set(err, "appliance.member: \"%.40s\" is not one of cluster.members",
                       conf->appliance.member ? conf->appliance.member : "");
    if (check_word("the front end's certificate file", p->pem, false, true, err) < 0 ||
        check_word("the runtime API socket", p->admin_socket, false, true, err) < 0 ||
        (p->state_file && check_word("the server state file", p->state_file, false, true, err) < 0))
        return -1;
    if (*conf->cluster.tls_ciphers &&
        check_word("cluster.tls.ciphers", conf->cluster.tls_ciphers, false, true, err) < 0)
        return -1;
    if (*conf->cluster.tls_ciphersuites &&
        check_word("cluster.tls.ciphersuites", conf->cluster.tls_ciphersuites, false, true, err) <
            0)
        return -1;
    snprintf(what, sizeof(what), "cluster.members[%zu].ports.api",
             (size_t)(self - conf->cluster.members));
    if (check_port(what, self->ports.api, err) < 0)
        return -1;
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        const struct member_conf *m = &conf->cluster.members[i];

        snprintf(what, sizeof(what), "cluster.members[%zu].address", i);
        if (!netaddr_numeric(m->address))
            return err_set(err, "%s: \"%.60s\" is not a numeric IPv4 or IPv6 address", what,
                           m->address);
        if (!netaddr_is_loopback(m->address))
            *remote = true;
        snprintf(what, sizeof(what), "cluster.members[%zu].ports.node", i);
        if (check_port(what, m->ports.node, err) < 0)
            return -1;
    }
    if (*remote && check_word("cluster.tls.ca", conf->cluster.tls_ca, false, true, err) < 0)
        return -1;
    if (!pw || !*pw)
        return 0; /* no stats page */
    snprintf(what, sizeof(what), "cluster.members[%zu].ports.stats",
             (size_t)(self - conf->cluster.members));
    if (check_port(what, self->ports.stats, err) < 0 ||
        check_word("balancer.stats.user", conf->balancer.stats_user, true, true, err) < 0 ||
        check_word("balancer.stats.password", pw, true, false, err) < 0)
        return -1;
    /* `stats auth <user>:<password>` splits at the first colon. */
    if (strchr(conf->balancer.stats_user, ':'))
        return err_set(err,
                       "balancer.stats.user: \"%.40s\" has ':', which cannot be in a user "
                       "name for the stats page",
                       conf->balancer.stats_user);
    return 0;
}

/* <addr>:<port>, an IPv6 address in brackets. */
static void put_addr(FILE *f, const char *addr, int port)
{
    fprintf(f, strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, port);
}

static const char *tls_min_name(int v)
{
    return v == TLS_MIN_1_3 ? "TLSv1.3" : "TLSv1.2";
}

static void put_global(FILE *f, const struct appconf *conf, const struct hacfg_paths *p)
{
    const char *side[] = { "bind", "server" };

    fprintf(f, "global\n"
               "    log stderr format raw local0 info\n");
    fprintf(f, "    maxconn %d\n", conf->balancer.maxconn);
    fprintf(f, "    stats socket %s mode 600 level admin expose-fd listeners\n", p->admin_socket);
    if (p->state_file)
        fprintf(f, "    server-state-file %s\n", p->state_file);
    /* Empty cipher settings leave OpenSSL's defaults. */
    for (size_t i = 0; i < MFA_ARRAY_LEN(side); i++) {
        if (*conf->cluster.tls_ciphers)
            fprintf(f, "    ssl-default-%s-ciphers %s\n", side[i], conf->cluster.tls_ciphers);
        if (*conf->cluster.tls_ciphersuites)
            fprintf(f, "    ssl-default-%s-ciphersuites %s\n", side[i],
                    conf->cluster.tls_ciphersuites);
        fprintf(f, "    ssl-default-%s-options ssl-min-ver %s\n", side[i],
                tls_min_name(conf->cluster.tls_min_version));
    }
}

/*
 * A request for a node that is down goes to another at once (DESIGN §3):
 * one retry, redispatched, after a short connect timeout.
 */
static void put_defaults(FILE *f, const struct appconf *conf, const struct hacfg_paths *p)
{
    fprintf(f, "\ndefaults\n"
               "    mode http\n"
               "    log global\n"
               "    option httplog\n"
               "    option redispatch 1\n"
               "    retries 1\n");
    fprintf(f, "    timeout connect %dms\n", conf->balancer.connect_timeout_ms);
    fprintf(f, "    timeout client %dms\n", conf->balancer.client_timeout_ms);
    fprintf(f, "    timeout server %dms\n", conf->balancer.server_timeout_ms);
    /*
     * The request and the first buffer of its body (~15 KB) within
     * `timeout http-request`: a body trickling in a byte at a time
     * (slowloris) is cut off with 408 instead of holding a connection to a
     * node. The API's bodies are small; past a buffer the node's own
     * timeout is all there is (docs/security.md).
     */
    fprintf(f, "    timeout http-request 10s\n"
               "    option http-buffer-request\n");
    if (p->state_file)
        fprintf(f, "    load-server-state-from-file global\n");
}

/*
 * The API and portal over TLS. HAProxy is the edge: an X-Forwarded-For from
 * the client is dropped, so the one the nodes see is HAProxy's own.
 */
/* balancer.address, or the member's own: "0.0.0.0" takes a floating address too. */
static void put_api(FILE *f, const struct appconf *conf, const struct member_conf *self,
                    const struct hacfg_paths *p)
{
    fprintf(f, "\nfrontend api\n"
               "    bind ");
    put_addr(f, *conf->balancer.address ? conf->balancer.address : self->address, self->ports.api);
    fprintf(f, " ssl crt %s\n", p->pem);
    fprintf(f, "    option forwardfor\n"
               "    http-request del-header X-Forwarded-For\n"
               "    http-request set-header X-Forwarded-Proto https\n"
               "    default_backend " HACFG_BACKEND "\n");
}

/*
 * One server per member, named by its id. Sticky rules first: a challenge
 * id and a portal session cookie start with "<node id>-", and node ids hold
 * no dash, so "n1-" never matches "n10-" (DESIGN §3); HAProxy skips a rule
 * whose server is down or in maintenance, but a drained server still gets
 * its own. Sessions are not shut down when a server goes down, so the
 * requests in flight on a node that is drained or failing can finish.
 */
static void put_backend(FILE *f, const struct appconf *conf, const struct hacfg_paths *p)
{
    fprintf(f, "\nbackend " HACFG_BACKEND "\n"
               "    balance leastconn\n"
               "    option httpchk GET /ready\n"
               "    http-check expect status 200\n");
    fprintf(f, "    default-server inter %dms fall %d rise %d\n", conf->balancer.check_inter_ms,
            conf->balancer.check_fall, conf->balancer.check_rise);
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        const char *id = conf->cluster.members[i].id;

        fprintf(f, "    use-server %s if { path_beg /api/v1/challenges/%s- }\n", id, id);
        fprintf(f, "    use-server %s if { req.cook(mfa_sid) -m beg %s- }\n", id, id);
    }
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        const struct member_conf *m = &conf->cluster.members[i];

        fprintf(f, "    server %s ", m->id);
        put_addr(f, m->address, m->ports.node);
        fprintf(f, " check");
        /* Between hosts the node is reached over TLS (DESIGN §4); the check follows. */
        if (!netaddr_is_loopback(m->address))
            fprintf(f, " ssl verify required ca-file %s crt %s", conf->cluster.tls_ca, p->pem);
        fprintf(f, "\n");
    }
}

/*
 * The stats page, read-only, and the Prometheus exporter on /metrics. The
 * exporter is a service that `stats auth` does not cover, so an
 * `http-request auth` rule with the same credentials guards the whole front
 * end first.
 */
static void put_stats(FILE *f, const struct appconf *conf, const struct member_conf *self)
{
    const char *user = conf->balancer.stats_user, *pw = conf->balancer.stats_password;

    fprintf(f,
            "\nuserlist " HACFG_STATS_USERS "\n"
            "    user '%s' insecure-password '%s'\n",
            user, pw);
    fprintf(f, "\nfrontend stats\n"
               "    bind ");
    put_addr(f, self->address, self->ports.stats);
    fprintf(f, "\n    http-request auth realm stats unless { http_auth(" HACFG_STATS_USERS ") }\n"
               "    http-request use-service prometheus-exporter if { path /metrics }\n"
               "    stats enable\n"
               "    stats uri /\n"
               "    stats refresh 5s\n");
    fprintf(f, "    stats auth '%s:%s'\n", user, pw);
    fprintf(f, "    stats admin if FALSE\n");
}

int hacfg_render(const struct appconf *conf, const struct hacfg_paths *p, char **out, char **err)
{
    const struct member_conf *self;
    const char *pw = conf->balancer.stats_password;
    char *text = NULL;
    size_t len = 0;
    bool remote, failed;
    FILE *f;

    *out = NULL;
    if (check_values(conf, p, &remote, err) < 0)
        return -1;
    self = appconf_local(conf);
    f = open_memstream(&text, &len);
    if (!f)
        return err_set(err, "haproxy.cfg: %s", strerror(errno));
    fprintf(f,
            "# Written by mfa-balancer from appliance.conf; it rewrites this file.\n"
            "# Member %s.\n\n",
            self->id);
    put_global(f, conf, p);
    put_defaults(f, conf, p);
    put_api(f, conf, self, p);
    put_backend(f, conf, p);
    if (pw && *pw)
        put_stats(f, conf, self);
    failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return err_set(err, "haproxy.cfg: cannot build the text (out of memory)");
    }
    *out = text;
    return 0;
}
