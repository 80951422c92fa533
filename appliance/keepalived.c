/*
 * mfactl keepalived; see keepalived.h.
 *
 * Two checks decide whether this member may hold the address, both run by
 * keepalived as an unprivileged user (script_user nobody) with curl:
 *
 * - mfa_api: HAProxy's API front answers GET /ready over TLS, whatever the
 *   status. That is what the clients of the address reach. Any HTTP answer
 *   counts, a 503 too: every balancer checks the same nodes, so when none is
 *   ready here none is ready elsewhere either, and moving the address would
 *   only cut connections. The certificate is not verified (-k): nothing is
 *   sent but the request line, and the front may carry a public certificate
 *   that the cluster CA did not sign.
 * - mfa_balancer: mfa-balancer answers on its health page (ports.health).
 *   It runs the RADIUS front, which the address carries too, and it restarts
 *   HAProxy; HAProxy alone outlives it (KillMode=process).
 *
 * Either check failing twice (2 s apart) puts the instance in FAULT: the
 * address goes to the next member. Both passing twice bring it back to
 * BACKUP; with nopreempt it does not take the address back.
 */
#include "keepalived.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster_cmd.h"
#include "errmsg.h"
#include "fsutil.h"

#define CHECK_INTERVAL_S  2 /* between runs of each check */
#define CHECK_FALL        2 /* failures in a row that take the address away */
#define CHECK_RISE        2 /* successes in a row that make the member eligible again */
#define VIP_TEXT_MAX      (INET6_ADDRSTRLEN + 4)
#define PASSWORD_FILE_MAX 256

/* ---- validation ---------------------------------------------------------- */

/* The family of numeric address <text> (AF_INET, AF_INET6) and its bytes, or 0. */
static int addr_family(const char *text, unsigned char bytes[16])
{
    if (inet_pton(AF_INET, text, bytes) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, text, bytes) == 1)
        return AF_INET6;
    return 0;
}

static const char *family_name(int family)
{
    return family == AF_INET6 ? "IPv6" : "IPv4";
}

/*
 * Checks "<address>/<bits>": a numeric address and a prefix length 1..32 or
 * 1..128 in decimal without a leading zero (host bits may be set: it is an
 * interface address, not a network). Sets *family and <bytes>.
 */
static int check_vip(const char *vip, int *family, unsigned char bytes[16], char **err)
{
    char addr[VIP_TEXT_MAX];
    const char *slash = strchr(vip, '/'), *p;
    long bits = 0;

    if (!slash)
        return err_set(err,
                       "--vip \"%s\" has no prefix length; write it as ADDRESS/PREFIX, "
                       "e.g. 192.0.2.10/24, with the prefix of the interface's network",
                       vip);
    if ((size_t)(slash - vip) >= sizeof(addr))
        return err_set(err, "--vip \"%s\" is not a numeric IPv4 or IPv6 address", vip);
    memcpy(addr, vip, (size_t)(slash - vip));
    addr[slash - vip] = '\0';
    *family = addr_family(addr, bytes);
    if (!*family)
        return err_set(err, "--vip \"%s\": \"%s\" is not a numeric IPv4 or IPv6 address", vip,
                       addr);
    for (p = slash + 1; *p >= '0' && *p <= '9' && bits <= 128; p++)
        bits = bits * 10 + (*p - '0');
    if (p == slash + 1 || *p != '\0' || slash[1] == '0' || bits > (*family == AF_INET ? 32 : 128))
        return err_set(err, "--vip \"%s\": the prefix length must be 1..%d", vip,
                       *family == AF_INET ? 32 : 128);
    return 0;
}

static bool ifname_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static int check_interface(const char *name, char **err)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < n; i++) {
        if (!ifname_char(name[i]))
            n = 0;
    }
    if (n < 1 || n > KEEPALIVED_IFNAME_MAX)
        return err_set(err,
                       "--interface \"%s\" is not an interface name (1-%d of A-Z a-z 0-9 _ . : -)",
                       name, KEEPALIVED_IFNAME_MAX);
    return 0;
}

/*
 * keepalived reads auth_pass as one word: no blanks, no quotes, no comment
 * characters ('#', '!'), no backslash; it would cut a longer one to 8.
 */
static int check_password(const char *pw, int family, char **err)
{
    size_t n = strlen(pw);

    if (family == AF_INET6)
        return err_set(err, "--password-file with an IPv6 --vip: IPv6 needs VRRPv3, which has "
                            "no authentication; leave the password out");
    if (n < 1 || n > KEEPALIVED_PASSWORD_MAX)
        return err_set(err,
                       "the password must be 1..%d characters (VRRP's simple password "
                       "has 8 octets), not %zu",
                       KEEPALIVED_PASSWORD_MAX, n);
    for (size_t i = 0; i < n; i++) {
        if (pw[i] <= ' ' || pw[i] > '~' || strchr("\"'#!\\", pw[i]))
            return err_set(err, "the password may hold printable ASCII characters other than "
                                "blanks, quotes, '#', '!' and '\\' only");
    }
    return 0;
}

/*
 * Marks in <in> the members named in <list> ("n1,n3"; NULL: every member).
 * Every id must be a member's, once.
 */
static int parse_peers(const struct appconf *conf, const char *list, bool *in, char **err)
{
    const char *p = list, *end;
    size_t n = conf->cluster.nmembers;

    for (size_t i = 0; i < n; i++)
        in[i] = list == NULL;
    if (!list)
        return 0;
    for (;;) {
        size_t len, i;

        end = strchr(p, ',');
        len = end ? (size_t)(end - p) : strlen(p);
        for (i = 0; i < n; i++) {
            const char *id = conf->cluster.members[i].id;

            if (strlen(id) == len && memcmp(id, p, len) == 0)
                break;
        }
        if (i == n)
            return err_set(err, "--peers: \"%.*s\" is not a member of cluster.members", (int)len,
                           p);
        if (in[i])
            return err_set(err, "--peers names %s twice", conf->cluster.members[i].id);
        in[i] = true;
        if (!end)
            return 0;
        p = end + 1;
    }
}

/* ---- rendering ------------------------------------------------------------ */

int keepalived_default_priority(size_t member_index)
{
    return member_index >= 15 ? 50 : 200 - 10 * (int)member_index;
}

/* <addr>:<port> in a URL, an IPv6 address in brackets. */
static void put_url_host(FILE *f, const char *addr, int port)
{
    fprintf(f, strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, port);
}

static void put_script(FILE *f, const char *name, const char *comment, const char *flags,
                       const char *scheme, const char *addr, int port, const char *path)
{
    fprintf(f, "\n# %s\nvrrp_script %s {\n", comment, name);
    /* -g: no globbing, so that an IPv6 address's brackets reach the URL. */
    fprintf(f, "    script \"/usr/bin/curl %s -o /dev/null --max-time 1 %s://", flags, scheme);
    put_url_host(f, addr, port);
    fprintf(f, "%s\"\n", path);
    fprintf(f,
            "    interval %d\n"
            "    timeout %d\n"
            "    fall %d\n"
            "    rise %d\n"
            "}\n",
            CHECK_INTERVAL_S, CHECK_INTERVAL_S, CHECK_FALL, CHECK_RISE);
}

int keepalived_render(const struct appconf *conf, const struct keepalived_opts *o, char **out,
                      char **err)
{
    const struct member_conf *self = appconf_local(conf);
    unsigned char vip[16], self_bytes[16], bytes[16];
    bool in[APPCONF_MAX_MEMBERS];
    size_t self_idx = 0, npeers = 0, len = 0;
    int family = 0, priority;
    char *text = NULL;
    FILE *f;

    *out = NULL;
    if (conf->cluster.nmembers > APPCONF_MAX_MEMBERS)
        return err_set(err, "more than %d members", APPCONF_MAX_MEMBERS);
    if (check_vip(o->vip, &family, vip, err) < 0 || check_interface(o->interface, err) < 0)
        return -1;
    if (o->router_id < 1 || o->router_id > 255)
        return err_set(err,
                       "--router-id must be 1..255 and unique among the VRRP groups on the "
                       "interface's network, not %d",
                       o->router_id);
    if (o->priority != 0 && (o->priority < 1 || o->priority > 254))
        return err_set(err, "--priority must be 1..254 (255 is for the address's owner), not %d",
                       o->priority);
    if (o->password && check_password(o->password, family, err) < 0)
        return -1;
    if (!conf->balancer.enabled)
        return err_set(err,
                       "member %s has balancer.enabled = false: it takes no client traffic, "
                       "so it must not hold the floating address",
                       self->id);
    if (parse_peers(conf, o->peers, in, err) < 0)
        return -1;
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        if (&conf->cluster.members[i] == self)
            self_idx = i;
    }
    if (!in[self_idx])
        return err_set(err,
                       "--peers leaves out this member, %s; name every member that runs "
                       "keepalived, this one too",
                       self->id);
    if (addr_family(self->address, self_bytes) != family)
        return err_set(err,
                       "--vip is %s but member %s's address %s is %s: VRRP carries one "
                       "family per group, the members' own",
                       family_name(family), self->id, self->address,
                       family_name(addr_family(self->address, bytes)));
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        const struct member_conf *m = &conf->cluster.members[i];
        int fam = addr_family(m->address, bytes);

        if (fam == family && memcmp(bytes, vip, fam == AF_INET ? 4 : 16) == 0)
            return err_set(err,
                           "--vip is member %s's own address; the floating address must "
                           "be one no host has",
                           m->id);
        if (!in[i] || i == self_idx)
            continue;
        if (fam != family)
            return err_set(err,
                           "member %s's address %s is %s, the VIP %s: VRRP carries one "
                           "family per group",
                           m->id, m->address, family_name(fam), family_name(family));
        if (memcmp(bytes, self_bytes, fam == AF_INET ? 4 : 16) == 0)
            return err_set(err,
                           "members %s and %s share the address %s: a floating address "
                           "needs them on different hosts",
                           self->id, m->id, m->address);
        npeers++;
    }
    if (!npeers)
        return err_set(err, "no other member to share the address with: a floating address "
                            "needs at least two balancer hosts");
    priority = o->priority ? o->priority : keepalived_default_priority(self_idx);

    f = open_memstream(&text, &len);
    if (!f)
        return err_set(err, "keepalived.conf: %s", strerror(errno));
    fprintf(f,
            "# keepalived.conf of member %s of the cluster \"%s\", written by mfactl keepalived.\n"
            "# Every member gets its own from the same appliance.conf, --vip, --interface\n"
            "# and --router-id; write them again when cluster.members changes.\n",
            self->id, conf->cluster.name);
    fprintf(f,
            "\nglobal_defs {\n"
            "    router_id mfa-%s\n"
            "    enable_script_security\n"
            "    script_user nobody\n"
            "}\n",
            self->id);
    put_script(f, "mfa_api", "HAProxy's API front answers (any HTTP status).", "-gsSk", "https",
               self->address, self->ports.api, "/ready");
    put_script(f, "mfa_balancer", "mfa-balancer answers: its health page.", "-gfsS", "http",
               self->address, self->ports.health, "/");
    fprintf(f,
            "\nvrrp_instance mfa_vip_%d {\n"
            "    state BACKUP\n"
            "    nopreempt\n"
            "    interface %s\n"
            "    virtual_router_id %d\n"
            "    priority %d\n"
            "    advert_int 1\n"
            "    unicast_src_ip %s\n"
            "    unicast_peer {\n",
            o->router_id, o->interface, o->router_id, priority, self->address);
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        if (in[i] && i != self_idx)
            fprintf(f, "        %s\n", conf->cluster.members[i].address);
    }
    fprintf(f, "    }\n");
    if (o->password)
        fprintf(f,
                "    # VRRP's simple password: sent in clear in every advertisement. It keeps\n"
                "    # out a misconfigured neighbour, not an attacker on the network.\n"
                "    authentication {\n"
                "        auth_type PASS\n"
                "        auth_pass %s\n"
                "    }\n",
                o->password);
    fprintf(f,
            "    virtual_ipaddress {\n"
            "        %s dev %s\n"
            "    }\n"
            "    track_script {\n"
            "        mfa_api\n"
            "        mfa_balancer\n"
            "    }\n"
            "}\n",
            o->vip, o->interface);
    if (fclose(f) != 0 || !text) {
        free(text);
        return err_set(err, "keepalived.conf: out of memory");
    }
    *out = text;
    return 0;
}

/* ---- the command ------------------------------------------------------------ */

static int say_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "mfactl: keepalived: <sentence>" on stderr; returns <code>. */
static int say_error(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("mfactl: keepalived: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

/* "N" in lo..hi into *out; 0, or -1 after saying what is wrong. */
static int int_arg(const char *opt, const char *text, int lo, int hi, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi) {
        say_error(CLUSTER_EXIT_USAGE, "%s takes a number %d..%d, not \"%s\"", opt, lo, hi, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/*
 * The password: the first line of <path>, its newline dropped. Returns a
 * malloc'd string, or NULL after saying what is wrong.
 */
static char *read_password(const char *path)
{
    char buf[PASSWORD_FILE_MAX], *nl;
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        say_error(CLUSTER_EXIT_USAGE, "cannot read the password file %s: %s", path,
                  strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (!buf[0] || strlen(buf) != (nl ? (size_t)(nl - buf) : n)) {
        say_error(CLUSTER_EXIT_USAGE, "the password file %s holds no password on its first line",
                  path);
        return NULL;
    }
    return strdup(buf);
}

int keepalived_cmd(const char *config, bool json, int argc, char **argv)
{
    enum { OPT_VIP = 256, OPT_IF, OPT_RID, OPT_PRIO, OPT_PW, OPT_PEERS, OPT_OUT };
    static const struct option opts[] = {
        { "vip", required_argument, NULL, OPT_VIP },
        { "interface", required_argument, NULL, OPT_IF },
        { "router-id", required_argument, NULL, OPT_RID },
        { "priority", required_argument, NULL, OPT_PRIO },
        { "password-file", required_argument, NULL, OPT_PW },
        { "peers", required_argument, NULL, OPT_PEERS },
        { "out", required_argument, NULL, OPT_OUT },
        { NULL, 0, NULL, 0 },
    };
    struct keepalived_opts o = { 0 };
    struct appconf conf = { 0 };
    const char *pw_file = NULL, *out_path = NULL;
    char *password = NULL, *text = NULL, *err = NULL;
    int ch, rc = CLUSTER_EXIT_USAGE;

    (void)json;
    opterr = 0;
    optind = 0; /* glibc: start afresh on this argv */
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_VIP:
            o.vip = optarg;
            break;
        case OPT_IF:
            o.interface = optarg;
            break;
        case OPT_RID:
            if (int_arg("--router-id", optarg, 1, 255, &o.router_id) < 0)
                return CLUSTER_EXIT_USAGE;
            break;
        case OPT_PRIO:
            if (int_arg("--priority", optarg, 1, 254, &o.priority) < 0)
                return CLUSTER_EXIT_USAGE;
            break;
        case OPT_PW:
            pw_file = optarg;
            break;
        case OPT_PEERS:
            o.peers = optarg;
            break;
        case OPT_OUT:
            out_path = optarg;
            break;
        case ':':
            return say_error(CLUSTER_EXIT_USAGE, "%s needs a value; see `mfactl --help`",
                             argv[optind - 1]);
        default:
            return say_error(CLUSTER_EXIT_USAGE, "unknown option %s; see `mfactl --help`",
                             argv[optind - 1]);
        }
    }
    if (optind < argc)
        return say_error(CLUSTER_EXIT_USAGE, "unexpected argument \"%s\"; see `mfactl --help`",
                         argv[optind]);
    if (!o.vip || !o.interface || !o.router_id)
        return say_error(CLUSTER_EXIT_USAGE,
                         "--vip, --interface and --router-id are required (the same on every "
                         "member); see `mfactl --help`");
    if (pw_file && !(password = read_password(pw_file)))
        return CLUSTER_EXIT_USAGE;
    o.password = password;

    if (appconf_load(config, &conf, NULL, NULL, &err) < 0) {
        say_error(CLUSTER_EXIT_USAGE, "%s", err ? err : "out of memory");
        goto out;
    }
    if (keepalived_render(&conf, &o, &text, &err) < 0) {
        say_error(CLUSTER_EXIT_USAGE, "%s", err ? err : "out of memory");
        goto out;
    }
    if (!out_path) {
        rc = fputs(text, stdout) < 0 || fflush(stdout) != 0 ? CLUSTER_EXIT_FAILED : CLUSTER_EXIT_OK;
        if (rc)
            say_error(rc, "cannot write to stdout: %s", strerror(errno));
    } else if (fsutil_write_atomic(out_path, text, strlen(text), S_IRUSR | S_IWUSR, &err) < 0) {
        rc = say_error(CLUSTER_EXIT_FAILED, "%s", err ? err : "out of memory");
    } else {
        fprintf(stderr, "mfactl: keepalived: wrote %s for member %s\n", out_path,
                conf.appliance.member);
        rc = CLUSTER_EXIT_OK;
    }
out:
    free(err);
    free(text);
    if (password)
        explicit_bzero(password, strlen(password));
    free(password);
    appconf_free(&conf);
    return rc;
}
