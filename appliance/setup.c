/*
 * `mfactl setup` (setup.h): an appliance's first boot in one command.
 *
 * Every step first looks at what exists. Missing: it is made ("made PATH").
 * Present and in agreement with the flags (or, for --join, with what the
 * cluster sent): it is kept ("kept PATH"). Present and in disagreement: the
 * command refuses (exit 3) — and all the checks run before the first write,
 * so a refusal changes nothing. A run that was interrupted completes on the
 * next one; a run after a success changes nothing.
 *
 * The configuration file is edited only in two cases: it still holds the
 * package's placeholders (setup_conf_is_default()), or a member is added to
 * cluster.members by --invite. Edits replace the values of single settings
 * in the text (setup_conf_replace()), so the file's comments and every other
 * section stay as the operator left them; the result is loaded again and
 * must agree, else nothing is written.
 *
 * The key file never passes through argv, the log or a URL: --join gets it
 * in the body of a mutually authenticated TLS reply and writes it 0600.
 * Certificates are made by `mfactl pki` itself (pki_main()), not copied.
 */
#include "setup.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl.h"
#include "errmsg.h"
#include "keyfile.h"
#include "setup_priv.h"

static const char setup_usage_text[] =
    "usage: mfactl [-c FILE] setup --primary --cluster NAME --id ID --address ADDR\n"
    "                              [--member ID=ADDR]... [--force] [--no-start] [--wait S]\n"
    "       mfactl [-c FILE] setup --invite ID --address ADDR [--out FILE] [--no-start]\n"
    "       mfactl [-c FILE] setup --join HOST[:PORT] --bundle FILE [--no-start] [--wait S]\n"
    "\n"
    "--primary  on the first host: key file, cluster CA, this member's certificate,\n"
    "           the cluster section of FILE, and the permission to create the cluster\n"
    "           alone; then starts the units and waits (S, default 120) until primary.\n"
    "           Refused when another member answers with data, or this host made a\n"
    "           cluster before (key file, no data): --force makes a new one anyway\n"
    "--invite   on the host that holds the CA: a certificate for member ID in a join\n"
    "           bundle (FILE, default ./ID.join, mode 0600; copy it to the new host),\n"
    "           and ID added to cluster.members here (restarts mfa-replicator and\n"
    "           mfa-balancer, which read the members when they start)\n"
    "--join     on the new host: fetches the key file and the cluster section from the\n"
    "           member at HOST (PORT: its replicator's, default the bundle's), writes\n"
    "           them with the bundle's certificates, starts the units and waits (S,\n"
    "           default 600) until this member is a streaming standby\n"
    "--no-start write the files only; start nothing\n"
    "Safe to run again: what exists and agrees is kept; what disagrees is refused\n"
    "(exit 3) before anything is written.\n";

/* ---- --primary ---- */

/* 1: the configuration says what the flags say; 0: it is the package's, to fill in; -1: not. */
static int primary_conf_state(const struct appconf *c, const struct setup_args *a, char **err)
{
    const struct member_conf *me = appconf_member(c, a->id);

    if (strcmp(c->cluster.name, a->cluster) == 0 && strcmp(c->appliance.member, a->id) == 0 && me &&
        strcmp(me->address, a->address) == 0) {
        for (size_t i = 0; i < a->nmembers; i++) {
            const struct member_conf *m = appconf_member(c, a->member_id[i]);
            if (!m || strcmp(m->address, a->member_addr[i]) != 0)
                return err_set(err, "--member %s=%s: cluster.members says %s", a->member_id[i],
                               a->member_addr[i], m ? m->address : "no such member");
        }
        return 1;
    }
    if (setup_conf_is_default(c))
        return 0;
    return err_set(err,
                   "the configuration is for member \"%s\" (%s) of cluster \"%s\", not for "
                   "--id %s --address %s --cluster %s",
                   c->appliance.member, appconf_local(c)->address, c->cluster.name, a->id,
                   a->address, a->cluster);
}

/* Fills in the package's placeholders: the cluster's name, its members, this member. */
static int primary_edit_conf(const char *config, const struct appconf *c,
                             const struct setup_args *a, char **err)
{
    struct setup_member m[APPCONF_MAX_MEMBERS];
    const char *paths[] = { "cluster.name", "cluster.members", "appliance.member" };
    char *values[3], *text = NULL;
    int rc = -1;

    memset(m, 0, sizeof(m));
    m[0].id = a->id;
    m[0].address = a->address;
    for (size_t i = 0; i < a->nmembers; i++) {
        m[i + 1].id = a->member_id[i];
        m[i + 1].address = a->member_addr[i];
    }
    values[0] = setup_quoted(a->cluster);
    values[1] = setup_members_text(m, a->nmembers + 1, &c->cluster.ports);
    values[2] = setup_quoted(a->id);
    if (!values[0] || !values[1] || !values[2])
        err_set(err, "out of memory");
    else if (setup_edit_conf(config, paths, values, 3, &text, err) == 0 &&
             setup_write_conf(config, text, err) == 0)
        rc = 0;
    for (size_t i = 0; i < 3; i++)
        free(values[i]);
    free(text);
    return rc;
}

/* Makes <dir> (0750) when it is missing; gives it to the daemons' owner either way. */
int setup_make_data_dir(const char *dir, const struct setup_owner *o, char **err)
{
    if (mkdir(dir, 0750) < 0 && errno != EEXIST &&
        (setup_make_parent(dir, err) < 0 || mkdir(dir, 0750) < 0))
        return err_set(err, "cannot create %s: %s", dir, strerror(errno));
    return setup_give(dir, o, err);
}

/* True when the permission file <path> is there and names member <id>. */
static bool allow_present(const char *path, const char *id)
{
    char want[64], *have, *err = NULL;
    bool same;

    if (!setup_exists(path))
        return false;
    snprintf(want, sizeof(want), "member=%s\n", id);
    have = setup_read_text(path, &err);
    same = have && strcmp(have, want) == 0;
    free(have);
    free(err);
    return same;
}

/*
 * True when something accepts a TCP connection at <address>:<port> within
 * <timeout_ms>: a member whose replicator failed to answer /status (TLS,
 * HTTP) but whose port is open is there, not gone.
 */
static bool port_open(const char *address, int port, int timeout_ms)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
    struct addrinfo *ai = NULL;
    char service[16];
    bool open_ = false;
    int fd, soerr = 0;
    socklen_t len = sizeof(soerr);

    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(address, service, &hints, &ai) != 0 || !ai)
        return false;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            open_ = true;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            open_ = poll(&p, 1, timeout_ms) == 1 &&
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return open_;
}

/*
 * Asks every other member's replicator for its /status, as mfactl's cluster
 * commands do. -1 with *err when one answers that it has data or is
 * primary (a cluster exists: join it). With <strict> (restore), also when
 * one gives an answer that is not a clean "no data" — a TLS or certificate
 * failure, an HTTP error, a reply that does not parse, or no reply although
 * its port accepts connections: the member is there, we just cannot trust
 * what it says (a new CA made by `setup --primary` next to old members
 * still alive). A member whose port does not answer at all (refused,
 * unreachable, timeout) is not set up or is gone, which is what --primary
 * and restore expect; it is printed as such. Without <strict> (--primary,
 * whose tests make a second CA beside a live cluster on purpose) every
 * failed call is taken so. Prints one line a member. Returns 0, or -1.
 */
int setup_check_others(const char *config, bool strict, char **err)
{
    struct ctl_call calls[APPCONF_MAX_MEMBERS];
    struct ctl *c = ctl_open(config, err);
    const struct appconf *conf;
    size_t n = 0;
    int rc = 0;

    if (!c)
        return -1;
    conf = ctl_conf(c);
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        if (strcmp(conf->cluster.members[i].id, conf->appliance.member) == 0)
            continue;
        memset(&calls[n], 0, sizeof(calls[n]));
        calls[n].idx = i;
        calls[n].api = CTL_API_REPLICATOR;
        calls[n].method = "GET";
        calls[n].path = "/status";
        calls[n].timeout_ms = CTL_STATUS_TIMEOUT_MS;
        n++;
    }
    ctl_call_all(c, calls, n);
    for (size_t i = 0; i < n; i++) {
        const struct member_conf *mc = &conf->cluster.members[calls[i].idx];
        const struct ctl_reply *r = &calls[i].reply;
        json_t *j = r->error ? NULL : r->json;
        const char *role = json_string_value(json_object_get(j, "role"));
        json_t *has_data = json_object_get(j, "has_data");

        if (r->error &&
            (!strict || (r->status == 0 && !port_open(mc->address, mc->ports.replicator, 2000)))) {
            printf("check member %s: no answer, taken as not set up or gone (%s)\n", mc->id,
                   r->error);
        } else if (!j || (!json_is_boolean(has_data) && !role)) {
            rc = rc ? rc
                    : err_set(err,
                              "member %s is there but its answer cannot be trusted (%s): stop its "
                              "mfa-replicator if it is not part of this cluster, or join it",
                              mc->id, r->error ? r->error : "no role or has_data in /status");
        } else if (!json_is_false(has_data) || (role && strcmp(role, "primary") == 0)) {
            rc = rc ? rc
                    : err_set(err,
                              "member %s answers that it has data (%s): the cluster exists; "
                              "join it with --join",
                              mc->id, role ? role : "?");
        } else {
            printf("check member %s: answers, no data\n", mc->id);
        }
        ctl_reply_clear(&calls[i].reply);
    }
    ctl_close(c);
    return rc;
}

/*
 * The permission for this member's replicator to create the cluster alone
 * (role.c), after asking the other members that none has data. Returns 0,
 * or -1 with *err and *refused when a member has data.
 */
static int primary_allow(const char *config, const struct appconf *c, const char *id,
                         const struct setup_owner *o, bool *refused, char **err)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/%s", c->appliance.data_dir, SETUP_ALLOW_FILE);
    if (allow_present(path, id)) {
        setup_say("bootstrap permission", "kept", path);
        return 0;
    }
    if (setup_check_others(config, false, err) < 0) {
        *refused = true;
        return -1;
    }
    return setup_write_allow(c, id, o, err);
}

int setup_write_allow(const struct appconf *c, const char *id, const struct setup_owner *o,
                      char **err)
{
    char path[4200], want[64];

    snprintf(path, sizeof(path), "%s/%s", c->appliance.data_dir, SETUP_ALLOW_FILE);
    snprintf(want, sizeof(want), "member=%s\n", id);
    if (setup_write_file(path, want, strlen(want), 0600, o, err) < 0)
        return -1;
    setup_say("bootstrap permission", "made", path);
    return 0;
}

/* The key file: made when missing; given to the daemons' owner either way. */
static int primary_key_file(const struct appconf *c, bool have_keys, const struct setup_owner *o,
                            char **err)
{
    if (!have_keys && (setup_make_parent(c->appliance.key_file, err) < 0 ||
                       keyfile_create(c->appliance.key_file, err) < 0))
        return -1;
    if (setup_give(c->appliance.key_file, o, err) < 0)
        return -1;
    setup_say("key file", have_keys ? "kept" : "made", c->appliance.key_file);
    return 0;
}

static int setup_primary(const char *config, const struct setup_args *a)
{
    struct appconf c;
    struct keyring kr;
    struct setup_owner o;
    char dir[4096], prefix[4096], ca_crt[4200], ca_key[4200], allow[4200];
    char *err = NULL, *ca = NULL, *crt = NULL;
    int rc = SETUP_USAGE, state;
    bool have_keys, have_ca, have_cert, have_data, refused = false, wrote = false;

    if (setup_load_conf(config, &c, &err) < 0)
        goto out;
    o = setup_daemon_owner(&c);
    if (setup_ca_dir(&c, dir, sizeof(dir), &err) < 0 ||
        setup_leaf_prefix(&c, prefix, sizeof(prefix), &err) < 0)
        goto out;
    snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", dir);
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", dir);
    snprintf(allow, sizeof(allow), "%s/%s", c.appliance.data_dir, SETUP_ALLOW_FILE);

    /* Every check first: a refusal changes nothing. */
    rc = SETUP_REFUSED;
    state = primary_conf_state(&c, a, &err);
    if (state < 0)
        goto out;
    have_keys = setup_exists(c.appliance.key_file);
    if (have_keys) {
        if (keyfile_load(c.appliance.key_file, &kr, &err) < 0) {
            err_prefix(&err, "the key file exists but cannot be used");
            goto out;
        }
        keyring_wipe(&kr);
    }
    /*
     * The permission is written before the key file: a key file without
     * data or permission means this host made a cluster whose data is gone
     * (a wiped disk). A new permission would make a second cluster beside
     * the one the other members still run.
     */
    have_data = setup_has_data(&c);
    if (have_keys && !have_data && !allow_present(allow, a->id) && !a->force) {
        err_set(&err,
                "this host already made a cluster (%s exists) but its data is gone; join it "
                "with --join, or --force to make a new one",
                c.appliance.key_file);
        goto out;
    }
    have_ca = setup_exists(ca_crt);
    if (have_ca != setup_exists(ca_key)) {
        if (have_ca)
            err_set(&err,
                    "%s exists without %s: this host joined a cluster (its CA is elsewhere); "
                    "--primary would make another",
                    ca_crt, ca_key);
        else
            err_set(&err, "%s is missing but %s exists: restore the CA certificate", ca_crt,
                    ca_key);
        goto out;
    }
    have_cert = setup_exists(c.appliance.tls_cert);
    if (have_cert) {
        ca = have_ca ? setup_read_text(ca_crt, &err) : NULL;
        crt = ca ? setup_read_text(c.appliance.tls_cert, &err) : NULL;
        if (!have_ca)
            err_set(&err, "%s exists but there is no CA to check it against", c.appliance.tls_cert);
        if (!crt || setup_cert_check(crt, ca, a->id, c.appliance.tls_cert, &err) < 0)
            goto out;
    }

    rc = SETUP_FAILED;
    wrote = true;
    if (state == 0) {
        if (primary_edit_conf(config, &c, a, &err) < 0)
            goto out;
        setup_say("configuration", "made", config);
        appconf_free(&c);
        if (setup_load_conf(config, &c, &err) < 0)
            goto out;
    } else {
        setup_say("configuration", "kept", config);
    }
    if (have_ca) {
        setup_say("cluster CA", "kept", ca_crt);
    } else {
        const char *argv[] = { "pki", "init", "--dir", dir, "--cluster", a->cluster, NULL };
        if (setup_run_pki(argv) < 0)
            goto out;
        setup_say("cluster CA", "made", ca_crt);
    }
    if (have_cert) {
        setup_say("member certificate", "kept", c.appliance.tls_cert);
    } else {
        const char *argv[] = { "pki",     "issue",          "--dir",    dir,     "--name",
                               a->id,     "--ip",           a->address, "--out", prefix,
                               "--owner", c.appliance.user, NULL };
        if (!o.set)
            argv[10] = NULL;
        if (setup_run_pki(argv) < 0)
            goto out;
        setup_say("member certificate", "made", c.appliance.tls_cert);
    }
    if (setup_make_data_dir(c.appliance.data_dir, &o, &err) < 0)
        goto out;
    if (have_data) {
        setup_say("cluster (has data)", "kept", c.appliance.data_dir);
    } else if (primary_allow(config, &c, a->id, &o, &refused, &err) < 0) {
        if (refused)
            rc = SETUP_REFUSED;
        goto out;
    }
    if (primary_key_file(&c, have_keys, &o, &err) < 0)
        goto out;
    rc = setup_start_and_wait(config, a, true);
out:
    if (err) {
        fprintf(stderr, "mfactl setup: %s%s\n", err,
                rc != SETUP_REFUSED ? ""
                : wrote             ? " (refused; no permission and no key file were written)"
                                    : " (refused; nothing was changed)");
        free(err);
    }
    free(ca);
    free(crt);
    appconf_free(&c);
    return rc;
}

/* ---- --invite ---- */

static int setup_invite(const char *config, const struct setup_args *a)
{
    static const char *const tmp_names[] = { "m.crt", "m.key", "m.key.tmp" };
    struct appconf c, check;
    const struct member_conf *m;
    struct setup_member all[APPCONF_MAX_MEMBERS];
    char dir[4096], ca_key[4200], tmp[4096] = "", prefix[4200], path[4300], out[4200];
    char *err = NULL, *members = NULL, *text = NULL, *ca = NULL, *crt = NULL, *key = NULL,
         *bundle = NULL;
    const char *paths[] = { "cluster.members" };
    json_t *j = NULL;
    int rc = SETUP_USAGE;
    bool added = false;

    memset(&check, 0, sizeof(check));
    if (setup_load_conf(config, &c, &err) < 0 || setup_ca_dir(&c, dir, sizeof(dir), &err) < 0)
        goto out;
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", dir);
    snprintf(out, sizeof(out), "%s", a->out ? a->out : "");
    if (!a->out)
        snprintf(out, sizeof(out), "%s.join", a->id);

    rc = SETUP_REFUSED;
    if (!setup_exists(ca_key)) {
        err_set(&err, "%s is not here: run --invite on the host that made the cluster", ca_key);
        goto out;
    }
    m = appconf_member(&c, a->id);
    if (m && strcmp(m->address, a->address) != 0) {
        err_set(&err, "cluster.members has %s at %s, not %s", a->id, m->address, a->address);
        goto out;
    }
    if (!m) {
        if (c.cluster.nmembers == APPCONF_MAX_MEMBERS) {
            err_set(&err, "cluster.members is full (%d)", APPCONF_MAX_MEMBERS);
            goto out;
        }
        for (size_t i = 0; i < c.cluster.nmembers; i++) {
            all[i].id = c.cluster.members[i].id;
            all[i].address = c.cluster.members[i].address;
            all[i].ports = c.cluster.members[i].ports;
        }
        memset(&all[c.cluster.nmembers], 0, sizeof(all[0]));
        all[c.cluster.nmembers].id = a->id;
        all[c.cluster.nmembers].address = a->address;
        members = setup_members_text(all, c.cluster.nmembers + 1, &c.cluster.ports);
        if (!members || setup_edit_conf(config, paths, &members, 1, &text, &err) < 0)
            goto out;
        if (appconf_load_string(text, config, &check, NULL, NULL, &err) < 0) {
            err_prefix(&err,
                       "with %s added, the configuration does not load (a member on a "
                       "shared address needs its own ports: add it by hand)",
                       a->id);
            goto out;
        }
        added = true;
    }

    rc = SETUP_FAILED;
    if (setup_temp_dir(tmp, sizeof(tmp), &err) < 0)
        goto out;
    snprintf(prefix, sizeof(prefix), "%s/m", tmp);
    {
        const char *argv[] = { "pki",  "issue",    "--dir", dir,    "--name", a->id,
                               "--ip", a->address, "--out", prefix, NULL };
        if (setup_run_pki(argv) < 0)
            goto out;
    }
    snprintf(path, sizeof(path), "%s.crt", prefix);
    crt = setup_read_text(path, &err);
    snprintf(path, sizeof(path), "%s.key", prefix);
    key = crt ? setup_read_text(path, &err) : NULL;
    ca = key ? setup_read_text(c.cluster.tls_ca, &err) : NULL;
    if (!ca)
        goto out;
    m = appconf_local(&c);
    j = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:s, s:i}, s:s, s:s, s:s}", "mfa_join_bundle", 1,
                  "cluster", c.cluster.name, "member", a->id, "address", a->address, "from", "id",
                  m->id, "address", m->address, "port", m->ports.replicator, "ca", ca, "cert", crt,
                  "key", key);
    bundle = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    if (!bundle) {
        err_set(&err, "out of memory");
        goto out;
    }
    if (setup_write_file(out, bundle, strlen(bundle), 0600, NULL, &err) < 0)
        goto out;
    setup_say("join bundle (0600)", "made", out);
    if (added) {
        if (setup_write_conf(config, text, &err) < 0)
            goto out;
        setup_say("configuration", "made", config);
    } else {
        setup_say("configuration", "kept", config);
    }
    printf("next: copy %s to the new member (it holds a private key: scp, then delete it "
           "here), and there run\n  mfactl setup --join %s%s%s:%d --bundle %s\n",
           out, strchr(m->address, ':') ? "[" : "", m->address, strchr(m->address, ':') ? "]" : "",
           m->ports.replicator, out);
    if (added)
        printf("on every other member, add to cluster.members in its configuration\n"
               "  { id = \"%s\"; address = \"%s\"; }\nand restart its mfa-replicator\n",
               a->id, a->address);
    rc = SETUP_OK;
    if (added && !a->no_start) {
        /* cluster.members takes a restart; both adopt what they run (PostgreSQL, HAProxy) */
        const char *argv[] = { "systemctl", "try-restart", "mfa-replicator.service",
                               "mfa-balancer.service", NULL };
        printf("start systemctl try-restart mfa-replicator mfa-balancer (they learn of %s; "
               "PostgreSQL and HAProxy run on)\n"
               "note: restart mfa-node when convenient (drain it first: its challenges and "
               "sessions live in memory)\n",
               a->id);
        if (setup_run_program(argv) < 0)
            rc = SETUP_FAILED;
    }
out:
    if (err) {
        fprintf(stderr, "mfactl setup: %s%s\n", err,
                rc == SETUP_REFUSED ? " (refused; nothing was changed)" : "");
        free(err);
    }
    setup_temp_remove(tmp, tmp_names, MFA_ARRAY_LEN(tmp_names));
    json_decref(j);
    setup_free_secret(bundle);
    setup_free_secret(key);
    free(crt);
    free(ca);
    free(text);
    free(members);
    appconf_free(&check);
    appconf_free(&c);
    return rc;
}

int setup_cmd(const char *config, bool json, int argc, char **argv)
{
    struct setup_args a;
    char *err = NULL;

    if (json) {
        fprintf(stderr, "mfactl setup: --json is not supported: setup prints one line a step\n");
        return SETUP_USAGE;
    }
    if (setup_parse_args(argc, argv, &a, &err) < 0) {
        fprintf(stderr, "mfactl setup: %s\n%s", err, setup_usage_text);
        free(err);
        return SETUP_USAGE;
    }
    if (a.help) {
        fputs(setup_usage_text, stdout);
        return SETUP_OK;
    }
    switch (a.mode) {
    case SETUP_PRIMARY:
        return setup_primary(config, &a);
    case SETUP_INVITE:
        return setup_invite(config, &a);
    case SETUP_JOIN:
        return setup_join(config, &a);
    case SETUP_NONE:
        break;
    }
    return SETUP_USAGE;
}
