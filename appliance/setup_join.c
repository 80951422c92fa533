/*
 * `mfactl setup --join` (setup.h): fetches the key file and the cluster
 * section from a member's replicator (GET /join, docs/replication.md) with
 * the join bundle's certificate, over mutual TLS that checks the member's
 * certificate against the bundle's CA, then writes what is missing. The
 * bundle's certificate and key go to a private temporary directory for the
 * request only; nothing is written to the configuration's paths until every
 * check has passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "errmsg.h"
#include "httpclient.h"
#include "keyfile.h"
#include "setup_priv.h"

/* ---- --join ---- */

struct join_fetch {
    struct event_base *base;
    long status;
    char error[300];
    json_t *json;
};

static void join_done(void *arg, const struct httpclient_response *resp, json_t *json,
                      const char *json_error)
{
    struct join_fetch *f = arg;

    f->status = resp->status;
    if (resp->error)
        snprintf(f->error, sizeof(f->error), "%s", resp->error);
    else if (!json_is_object(json))
        snprintf(f->error, sizeof(f->error), "the reply is not a JSON object%s%s",
                 json_error ? ": " : "", json_error ? json_error : "");
    else
        f->json = json_incref(json);
    event_base_loopbreak(f->base);
}

/*
 * GET https://<host>/join with the bundle's CA, certificate and key (files
 * in <tmp>) for <member>. Returns 0 with f->json, or mfactl's exit code
 * with *err.
 */
static int join_fetch(const char *host, int port, const char *member, const char *tmp,
                      const struct appconf *c, struct join_fetch *f, char **err)
{
    char ca[4200], crt[4200], key[4200], url[400];
    struct httpclient_tls tls = {
        .ca_file = ca, .cert_file = crt, .key_file = key, .min_tls = c->cluster.tls_min_version
    };
    struct httpclient *client = NULL;
    int rc = SETUP_FAILED;

    snprintf(ca, sizeof(ca), "%s/ca.crt", tmp);
    snprintf(crt, sizeof(crt), "%s/m.crt", tmp);
    snprintf(key, sizeof(key), "%s/m.key", tmp);
    snprintf(url, sizeof(url), "https://%s%s%s:%d/join", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", port);
    f->base = event_base_new();
    if (!f->base || !(client = httpclient_new(f->base, &tls, err)) ||
        httpclient_json(client, "GET", url, NULL, SETUP_JOIN_TIMEOUT, join_done, f, err) < 0)
        goto out;
    event_base_dispatch(f->base);
    if (f->status == 0) {
        /* a handshake that failed on a certificate: the bundle is not this cluster's */
        bool tls_refused = strstr(f->error, "SSL") || strstr(f->error, "certificate");
        err_set(err, "%s: %s%s", url, f->error,
                tls_refused ? " (is the bundle from this cluster's CA, and HOST the address "
                              "in that member's certificate?)"
                            : "");
        rc = tls_refused ? SETUP_REFUSED : SETUP_NO_ONE;
    } else if (f->status == 403) {
        err_set(err,
                "%s: refused (HTTP 403): that member does not list %s in cluster.members (add "
                "it there and restart its mfa-replicator, which reads the list when it starts)",
                url, member);
        rc = SETUP_REFUSED;
    } else if (f->status != 200 || !f->json) {
        err_set(err, "%s: HTTP %ld %s", url, f->status, f->error);
    } else {
        rc = 0;
    }
out:
    httpclient_free(client);
    if (f->base)
        event_base_free(f->base);
    f->base = NULL;
    return rc;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "";
}

/*
 * Does the local configuration <c> agree with the cluster section <cl> the
 * member sent, for member <id>? 1 yes; 0 it is the package's, to fill in;
 * -1 no (*err says what differs).
 */
static int join_conf_state(const struct appconf *c, json_t *cl, const char *id, char **err)
{
    json_t *members = json_object_get(cl, "members"), *jm;
    const char *repl = c->cluster.replication == REPL_ASYNC ? "async" : "sync";
    const char *tmin = c->cluster.tls_min_version == TLS_MIN_1_3 ? "1.3" : "1.2";
    size_t i;

    /* what an edit of the placeholders does not set: must agree already */
    if (strcmp(jstr(cl, "replication"), repl) != 0)
        return err_set(err, "set cluster.replication = \"%s\" as the cluster has it",
                       jstr(cl, "replication"));
    if (json_integer_value(json_object_get(cl, "fence_after")) != c->cluster.fence_after)
        return err_set(err, "set cluster.fence_after = %d as the cluster has it",
                       (int)json_integer_value(json_object_get(cl, "fence_after")));
    if (strcmp(jstr(cl, "tls_min_version"), tmin) != 0 ||
        strcmp(jstr(cl, "tls_ciphers"), c->cluster.tls_ciphers) != 0 ||
        strcmp(jstr(cl, "tls_ciphersuites"), c->cluster.tls_ciphersuites) != 0)
        return err_set(err,
                       "set cluster.tls (min_version \"%s\", ciphers, ciphersuites) as the "
                       "cluster has it",
                       jstr(cl, "tls_min_version"));
    if (strcmp(jstr(cl, "name"), c->cluster.name) != 0 || strcmp(c->appliance.member, id) != 0 ||
        json_array_size(members) != c->cluster.nmembers)
        goto differs;
    json_array_foreach(members, i, jm)
    {
        const struct member_conf *m = appconf_member(c, jstr(jm, "id"));
        json_t *ports = json_object_get(jm, "ports");
        struct member_ports mp;

        if (!m || strcmp(m->address, jstr(jm, "address")) != 0)
            goto differs;
        mp = m->ports;
        for (size_t k = 0; k < MFA_ARRAY_LEN(setup_port_names); k++)
            if (json_integer_value(json_object_get(ports, setup_port_names[k])) !=
                *setup_port_slot(&mp, k))
                goto differs;
    }
    return 1;
differs:
    if (setup_conf_is_default(c))
        return 0;
    return err_set(err,
                   "the configuration's cluster section (name, members, their addresses and "
                   "ports) or appliance.member (%s) differs from cluster \"%s\"'s for member %s",
                   c->appliance.member, jstr(cl, "name"), id);
}

/* The members <cl> lists, for setup_members_text(); strings borrowed from <cl>. */
static size_t join_members(json_t *cl, struct setup_member *m)
{
    json_t *jm, *members = json_object_get(cl, "members");
    size_t i, n = 0;

    json_array_foreach(members, i, jm)
    {
        json_t *ports = json_object_get(jm, "ports");
        if (n == APPCONF_MAX_MEMBERS)
            break;
        memset(&m[n], 0, sizeof(m[n]));
        m[n].id = jstr(jm, "id");
        m[n].address = jstr(jm, "address");
        for (size_t k = 0; k < MFA_ARRAY_LEN(setup_port_names); k++)
            *setup_port_slot(&m[n].ports, k) =
                (int)json_integer_value(json_object_get(ports, setup_port_names[k]));
        n++;
    }
    return n;
}

/* Splits HOST[:PORT] ("[v6]:PORT" for IPv6) into <host> and *port (unchanged when none). */
static int parse_host(const char *s, char *host, size_t size, int *port, char **err)
{
    const char *colon = NULL, *h = s;
    size_t hlen;

    if (*s == '[') {
        const char *e = strchr(s, ']');
        if (!e || (e[1] && e[1] != ':'))
            return err_set(err, "--join %s: expected HOST, HOST:PORT or [IPV6]:PORT", s);
        h = s + 1;
        hlen = (size_t)(e - h);
        colon = e[1] ? e + 1 : NULL;
    } else {
        colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address */
        hlen = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (hlen == 0 || hlen >= size)
        return err_set(err, "--join %s: no host", s);
    snprintf(host, size, "%.*s", (int)hlen, h);
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 1 || v > 65535)
            return err_set(err, "--join %s: the port must be 1 to 65535", s);
        *port = (int)v;
    }
    return 0;
}

/* Writes the bundle's CA, certificate and key into <tmp> for the request. */
static int join_stage(const char *tmp, json_t *b, char **err)
{
    const char *names[] = { "ca.crt", "m.crt", "m.key" }, *keys[] = { "ca", "cert", "key" };
    char path[4200];

    for (size_t i = 0; i < 3; i++) {
        const char *v = jstr(b, keys[i]);
        snprintf(path, sizeof(path), "%s/%s", tmp, names[i]);
        if (!*v)
            return err_set(err, "the bundle has no \"%s\"", keys[i]);
        if (setup_write_file(path, v, strlen(v), 0600, NULL, err) < 0)
            return -1;
    }
    return 0;
}

int setup_join(const char *config, const struct setup_args *a)
{
    static const char *const tmp_names[] = { "ca.crt", "m.crt", "m.key" };
    struct appconf c;
    struct keyring fetched, have;
    struct join_fetch f = { .status = 0 };
    struct setup_member mm[APPCONF_MAX_MEMBERS];
    struct setup_owner o;
    char host[256], tmp[4096] = "", prefix[4096], *err = NULL, *text = NULL, *btext = NULL;
    const char *member, *cacert, *keytext;
    json_error_t jerr;
    json_t *b = NULL, *cl;
    int rc = SETUP_USAGE, port, state;
    bool have_keys, have_ca, have_cert;

    memset(&fetched, 0, sizeof(fetched));
    if (setup_load_conf(config, &c, &err) < 0 ||
        setup_leaf_prefix(&c, prefix, sizeof(prefix), &err) < 0)
        goto out;
    o = setup_daemon_owner(&c);
    btext = setup_read_text(a->bundle, &err);
    if (!btext)
        goto out;
    b = json_loads(btext, 0, &jerr);
    member = jstr(b, "member");
    if (!json_is_object(b) || json_integer_value(json_object_get(b, "mfa_join_bundle")) != 1 ||
        !setup_valid_id(member)) {
        err_set(&err, "%s is not a join bundle (mfactl setup --invite makes one)", a->bundle);
        goto out;
    }
    port = (int)json_integer_value(json_object_get(json_object_get(b, "from"), "port"));
    if (port < 1 || port > 65535)
        port = c.cluster.ports.replicator;
    if (parse_host(a->join, host, sizeof(host), &port, &err) < 0)
        goto out;
    cacert = jstr(b, "ca");

    rc = SETUP_FAILED;
    if (setup_temp_dir(tmp, sizeof(tmp), &err) < 0 || join_stage(tmp, b, &err) < 0)
        goto out;
    printf("fetch the key file and the cluster section from %s:%d\n", host, port);
    rc = join_fetch(host, port, member, tmp, &c, &f, &err);
    if (rc != 0)
        goto out;

    /* Every check first: a refusal changes nothing. */
    rc = SETUP_REFUSED;
    cl = json_object_get(f.json, "cluster");
    keytext = jstr(f.json, "key_file");
    if (!json_is_object(cl) || strcmp(jstr(cl, "name"), jstr(b, "cluster")) != 0 ||
        strcmp(jstr(f.json, "member"), member) != 0) {
        err_set(&err, "the member at %s is not of cluster \"%s\", or did not know %s", host,
                jstr(b, "cluster"), member);
        goto out;
    }
    if (keyfile_parse(keytext, &fetched, &err) < 0) {
        err_prefix(&err, "the key file sent");
        goto out;
    }
    state = join_conf_state(&c, cl, member, &err);
    if (state < 0)
        goto out;
    have_keys = setup_exists(c.appliance.key_file);
    if (have_keys) {
        if (keyfile_load(c.appliance.key_file, &have, &err) < 0)
            goto out;
        if (!keyring_equal(&have, &fetched)) {
            keyring_wipe(&have);
            err_set(&err, "%s holds other keys than the cluster's", c.appliance.key_file);
            goto out;
        }
        keyring_wipe(&have);
    }
    have_ca = setup_exists(c.cluster.tls_ca);
    if (have_ca) {
        char *ca = setup_read_text(c.cluster.tls_ca, &err);
        bool same = ca && strcmp(ca, cacert) == 0;
        free(ca);
        if (!same) {
            if (!err)
                err_set(&err, "%s is another CA than the bundle's", c.cluster.tls_ca);
            goto out;
        }
    }
    have_cert = setup_exists(c.appliance.tls_cert);
    if (have_cert) {
        char *crt = setup_read_text(c.appliance.tls_cert, &err);
        int ok = crt ? setup_cert_check(crt, cacert, member, c.appliance.tls_cert, &err) : -1;
        free(crt);
        if (ok < 0)
            goto out;
    }

    rc = SETUP_FAILED;
    if (state == 0) {
        const char *paths[] = { "cluster.name", "cluster.members", "appliance.member" };
        char *values[3] = { setup_quoted(jstr(cl, "name")), NULL, setup_quoted(member) };
        size_t n = join_members(cl, mm);
        struct appconf check;
        int ok;

        values[1] = setup_members_text(mm, n, &c.cluster.ports);
        memset(&check, 0, sizeof(check));
        ok = values[0] && values[1] && values[2] &&
             setup_edit_conf(config, paths, values, 3, &text, &err) == 0 &&
             appconf_load_string(text, config, &check, NULL, NULL, &err) == 0 &&
             join_conf_state(&check, cl, member, &err) == 1;
        appconf_free(&check);
        for (size_t i = 0; i < 3; i++)
            free(values[i]);
        if (!ok || setup_write_conf(config, text, &err) < 0) {
            if (!err)
                err_set(&err, "cannot make the configuration agree with the cluster's");
            goto out;
        }
        setup_say("configuration", "made", config);
    } else {
        setup_say("configuration", "kept", config);
    }
    if (have_ca) {
        setup_say("cluster CA", "kept", c.cluster.tls_ca);
    } else {
        if (setup_make_parent(c.cluster.tls_ca, &err) < 0 ||
            setup_write_file(c.cluster.tls_ca, cacert, strlen(cacert), 0644, NULL, &err) < 0)
            goto out;
        setup_say("cluster CA", "made", c.cluster.tls_ca);
    }
    if (have_cert) {
        setup_say("member certificate", "kept", c.appliance.tls_cert);
    } else {
        /* the key first: a certificate in place always has its key */
        const char *key = jstr(b, "key"), *crt = jstr(b, "cert");
        if (setup_make_parent(c.appliance.tls_cert, &err) < 0 ||
            setup_make_parent(c.appliance.tls_key, &err) < 0 ||
            setup_write_file(c.appliance.tls_key, key, strlen(key), 0600, &o, &err) < 0 ||
            setup_write_file(c.appliance.tls_cert, crt, strlen(crt), 0644, &o, &err) < 0)
            goto out;
        setup_say("member certificate", "made", c.appliance.tls_cert);
    }
    if (have_keys) {
        /* kept, but given to the daemons' user all the same: it may have been copied in as root */
        if (setup_give(c.appliance.key_file, &o, &err) < 0)
            goto out;
        setup_say("key file", "kept", c.appliance.key_file);
    } else {
        if (setup_make_parent(c.appliance.key_file, &err) < 0 ||
            setup_write_file(c.appliance.key_file, keytext, strlen(keytext), 0600, &o, &err) < 0)
            goto out;
        setup_say("key file", "made", c.appliance.key_file);
    }
    if (setup_exists(c.appliance.data_dir) && setup_give(c.appliance.data_dir, &o, &err) < 0)
        goto out;
    rc = setup_start_and_wait(config, a, false);
out:
    if (err) {
        fprintf(stderr, "mfactl setup: %s%s\n", err,
                rc == SETUP_REFUSED ? " (refused; nothing was changed)" : "");
        free(err);
    }
    setup_temp_remove(tmp, tmp_names, MFA_ARRAY_LEN(tmp_names));
    keyring_wipe(&fetched);
    json_decref(f.json);
    json_decref(b);
    setup_free_secret(btext);
    free(text);
    appconf_free(&c);
    return rc;
}
