/*
 * `mfactl setup` (setup.h), its pure parts: the command line, and the edit
 * of one setting's value in a libconfig text — found through libconfig's
 * own parse (the setting's line), then replaced byte for byte, so the
 * file's comments and every other setting stay as the operator left them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "setup_priv.h"

/* ---- arguments ---- */

bool setup_valid_id(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= SETUP_ID_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= SETUP_NAME_MAX && s[0] != '.' && s[0] != '-' &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static bool valid_address(const char *s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int setup_parse_args(int argc, char **argv, struct setup_args *a, char **err)
{
    enum {
        O_PRIMARY = 256,
        O_INVITE,
        O_JOIN,
        O_CLUSTER,
        O_ID,
        O_ADDRESS,
        O_MEMBER,
        O_BUNDLE,
        O_OUT,
        O_NO_START,
        O_WAIT,
        O_FORCE,
        O_HELP
    };
    static const struct option opts[] = {
        { "primary", no_argument, NULL, O_PRIMARY },
        { "invite", required_argument, NULL, O_INVITE },
        { "join", required_argument, NULL, O_JOIN },
        { "cluster", required_argument, NULL, O_CLUSTER },
        { "id", required_argument, NULL, O_ID },
        { "address", required_argument, NULL, O_ADDRESS },
        { "member", required_argument, NULL, O_MEMBER },
        { "bundle", required_argument, NULL, O_BUNDLE },
        { "out", required_argument, NULL, O_OUT },
        { "no-start", no_argument, NULL, O_NO_START },
        { "wait", required_argument, NULL, O_WAIT },
        { "force", no_argument, NULL, O_FORCE },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    int ch, modes = 0;

    memset(a, 0, sizeof(*a));
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        char *eq, *end;
        long v;

        switch (ch) {
        case O_PRIMARY:
            a->mode = SETUP_PRIMARY;
            modes++;
            break;
        case O_INVITE:
            a->mode = SETUP_INVITE;
            a->id = optarg;
            modes++;
            break;
        case O_JOIN:
            a->mode = SETUP_JOIN;
            a->join = optarg;
            modes++;
            break;
        case O_CLUSTER:
            a->cluster = optarg;
            break;
        case O_ID:
            a->id = optarg;
            break;
        case O_ADDRESS:
            a->address = optarg;
            break;
        case O_MEMBER:
            eq = strchr(optarg, '=');
            if (a->nmembers == APPCONF_MAX_MEMBERS - 1)
                return err_set(err, "at most %d --member", APPCONF_MAX_MEMBERS - 1);
            if (!eq || (size_t)(eq - optarg) > SETUP_ID_MAX ||
                strlen(eq + 1) >= sizeof(a->member_addr[0]))
                return err_set(err, "--member %s: expected ID=ADDRESS", optarg);
            snprintf(a->member_id[a->nmembers], sizeof(a->member_id[0]), "%.*s", (int)(eq - optarg),
                     optarg);
            snprintf(a->member_addr[a->nmembers], sizeof(a->member_addr[0]), "%s", eq + 1);
            if (!setup_valid_id(a->member_id[a->nmembers]) || !valid_address(eq + 1))
                return err_set(err,
                               "--member %s: ID is 1-16 of a-z 0-9, ADDRESS a numeric IPv4 or "
                               "IPv6 address",
                               optarg);
            a->nmembers++;
            break;
        case O_BUNDLE:
            a->bundle = optarg;
            break;
        case O_OUT:
            a->out = optarg;
            break;
        case O_NO_START:
            a->no_start = true;
            break;
        case O_WAIT:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > 86400)
                return err_set(err, "--wait %s: seconds from 1 to 86400", optarg);
            a->wait_s = (int)v;
            break;
        case O_FORCE:
            a->force = true;
            break;
        case 'h':
        case O_HELP:
            a->help = true;
            return 0;
        case ':':
            return err_set(err, "%s needs a value", opt);
        default:
            return err_set(err, "unknown option %s", opt);
        }
    }
    if (optind < argc)
        return err_set(err, "unexpected argument \"%s\"", argv[optind]);
    if (modes != 1)
        return err_set(err, "give exactly one of --primary, --invite ID, --join HOST");
    if (a->id && !setup_valid_id(a->id))
        return err_set(err, "member id \"%s\": 1 to 16 of a-z and 0-9", a->id);
    if (a->address && !valid_address(a->address))
        return err_set(err, "--address %s: a numeric IPv4 or IPv6 address", a->address);
    if (a->cluster && !valid_name(a->cluster))
        return err_set(err, "--cluster %s: 1 to %d of A-Z a-z 0-9 . _ - (not starting with . or -)",
                       a->cluster, SETUP_NAME_MAX);
    switch (a->mode) {
    case SETUP_PRIMARY:
        if (!a->cluster || !a->id || !a->address)
            return err_set(err, "--primary needs --cluster NAME, --id ID and --address ADDR");
        if (a->bundle || a->out)
            return err_set(err, "--primary takes no --bundle or --out");
        for (size_t i = 0; i < a->nmembers; i++) {
            if (strcmp(a->member_id[i], a->id) == 0)
                return err_set(err, "--member %s: that is this member (--id)", a->id);
            for (size_t j = 0; j < i; j++)
                if (strcmp(a->member_id[i], a->member_id[j]) == 0)
                    return err_set(err, "--member %s given twice", a->member_id[i]);
        }
        break;
    case SETUP_INVITE:
        if (!a->address)
            return err_set(err, "--invite needs --address ADDR (the new member's)");
        if (a->cluster || a->bundle || a->nmembers || a->wait_s || a->force)
            return err_set(err, "--invite takes only --address, --out and --no-start");
        break;
    case SETUP_JOIN:
        if (!a->bundle)
            return err_set(err, "--join needs --bundle FILE (made by setup --invite)");
        if (a->cluster || a->id || a->address || a->out || a->nmembers || a->force)
            return err_set(err, "--join takes only --bundle, --no-start and --wait (the bundle "
                                "names the member)");
        break;
    case SETUP_NONE:
        break;
    }
    return 0;
}

/* ---- editing the configuration text ---- */

static bool word_char(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Skips a string literal starting at <p> ('"'); returns the byte after it. */
static const char *skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

/* Skips a comment at <p> if there is one; returns where the text goes on (p when none). */
static const char *skip_comment(const char *p)
{
    if (*p == '#' || (p[0] == '/' && p[1] == '/'))
        return p + strcspn(p, "\n");
    if (p[0] == '/' && p[1] == '*') {
        const char *e = strstr(p + 2, "*/");
        return e ? e + 2 : p + strlen(p);
    }
    return p;
}

/* The end of the value starting at <p>: a string, a bracketed aggregate or a scalar. */
static const char *value_end(const char *p)
{
    int depth = 0;

    if (*p == '"')
        return skip_string(p);
    if (*p != '(' && *p != '{' && *p != '[')
        return p + strcspn(p, ";,\n)}]");
    while (*p) {
        const char *q = skip_comment(p);
        if (q != p) {
            p = q;
            continue;
        }
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '(' || *p == '{' || *p == '[')
            depth++;
        else if (*p == ')' || *p == '}' || *p == ']')
            if (--depth == 0)
                return p + 1;
        p++;
    }
    return p;
}

int setup_conf_replace(const char *text, const char *path, const char *value, char **out,
                       char **err)
{
    const char *key = strrchr(path, '.'), *p = text, *v = NULL;
    config_setting_t *s;
    config_t cfg;
    size_t klen;
    int line;

    key = key ? key + 1 : path;
    klen = strlen(key);
    config_init(&cfg);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        err_set(err, "line %d: %s", config_error_line(&cfg), config_error_text(&cfg));
        config_destroy(&cfg);
        return -1;
    }
    s = config_lookup(&cfg, path);
    line = s ? (int)config_setting_source_line(s) : 0;
    config_destroy(&cfg);
    if (line < 1)
        return err_set(err, "no setting %s", path);
    for (int l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    /* On that line: the key as a whole word, then '=' or ':' and the value. */
    for (; p && *p && *p != '\n'; p++) {
        const char *q;

        if (*p == '"' || *p == '#') {
            p = *p == '"' ? skip_string(p) - 1 : p + strcspn(p, "\n") - 1;
            continue;
        }
        if (strncmp(p, key, klen) != 0 || (p > text && word_char(p[-1])))
            continue;
        q = p + klen;
        q += strspn(q, " \t");
        if (*q != '=' && *q != ':')
            continue;
        v = q + 1 + strspn(q + 1, " \t\r\n");
        break;
    }
    if (!v)
        return err_set(err, "cannot find %s on line %d", path, line);
    if (asprintf(out, "%.*s%s%s", (int)(v - text), text, value, value_end(v)) < 0) {
        *out = NULL;
        return err_set(err, "out of memory");
    }
    return 0;
}

const char *const setup_port_names[] = {
    "api",  "stats",       "health",     "balancer_control", "radius",
    "node", "node_radius", "replicator", "postgres",
};

int *setup_port_slot(struct member_ports *p, size_t i)
{
    int *slots[] = { &p->api,  &p->stats,       &p->health,     &p->balancer_control, &p->radius,
                     &p->node, &p->node_radius, &p->replicator, &p->postgres };

    return slots[i];
}

char *setup_members_text(const struct setup_member *m, size_t n, const struct member_ports *base)
{
    char *text = NULL, *next;

    if (asprintf(&text, "(") < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        struct member_ports mp = m[i].ports, bp = *base;
        char ports[400] = "";
        size_t len = 0;

        for (size_t k = 0; k < MFA_ARRAY_LEN(setup_port_names); k++) {
            int v = *setup_port_slot(&mp, k);
            if (v != 0 && v != *setup_port_slot(&bp, k))
                len += (size_t)snprintf(ports + len, sizeof(ports) - len, "%s%s = %d;",
                                        len ? " " : " ports = { ", setup_port_names[k], v);
        }
        if (len)
            snprintf(ports + len, sizeof(ports) - len, " };");
        if (asprintf(&next, "%s\n    { id = \"%s\"; address = \"%s\";%s }%s", text, m[i].id,
                     m[i].address, ports, i + 1 < n ? "," : "") < 0) {
            free(text);
            return NULL;
        }
        free(text);
        text = next;
    }
    if (asprintf(&next, "%s\n  )", text) < 0)
        next = NULL;
    free(text);
    return next;
}

bool setup_conf_is_default(const struct appconf *c)
{
    return strcmp(c->cluster.name, "mfa") == 0 && c->cluster.nmembers == 1 &&
           strcmp(c->cluster.members[0].id, "n1") == 0 &&
           strcmp(c->cluster.members[0].address, "127.0.0.1") == 0 &&
           strcmp(c->appliance.member, "n1") == 0;
}
