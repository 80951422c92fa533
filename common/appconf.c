/*
 * The appliance configuration file: its key table and the checks that span
 * keys (see appconf.h). The table drives parsing, defaults, --check-config
 * and the reload rules through config.c.
 */
#include "appconf.h"

#include <ldap.h>

#include <stddef.h>
#include <string.h>

#include "directory.h"
#include "errmsg.h"
#include "ids.h"
#include "log.h"
#include "mailmsg.h"
#include "netaddr.h"
#include "radius.h"

static const struct cfg_enum_name repl_names[] = {
    { "sync", REPL_SYNC },
    { "async", REPL_ASYNC },
    { NULL, 0 },
};

static const struct cfg_enum_name tls_names[] = {
    { "1.2", TLS_MIN_1_2 },
    { "1.3", TLS_MIN_1_3 },
    { NULL, 0 },
};

static const struct cfg_enum_name sms_names[] = {
    { "file", SMS_PROVIDER_FILE },
    { "http", SMS_PROVIDER_HTTP },
    { "exec", SMS_PROVIDER_EXEC },
    { NULL, 0 },
};

static const struct cfg_enum_name scope_names[] = {
    { "sub", DIRECTORY_SCOPE_SUB },
    { "one", DIRECTORY_SCOPE_ONE },
    { NULL, 0 },
};

static const struct cfg_enum_name first_factor_names[] = {
    { "pin", FIRST_FACTOR_PIN },
    { "ldap", FIRST_FACTOR_LDAP },
    { NULL, 0 },
};

static const struct cfg_enum_name level_names[] = {
    { "debug", LOG_LVL_DEBUG },     { "info", LOG_LVL_INFO },   { "notice", LOG_LVL_NOTICE },
    { "warning", LOG_LVL_WARNING }, { "error", LOG_LVL_ERROR }, { NULL, 0 },
};

static const struct cfg_enum_name target_names[] = {
    { "stderr", LOG_TO_STDERR },
    { "syslog", LOG_TO_SYSLOG },
    { NULL, 0 },
};

#define PORT_KEY(prefix, base, field, def)                                                         \
    {                                                                                              \
        prefix #field, CFG_INT, (base) + offsetof(struct member_ports, field), def, 0, 65535,      \
            NULL, NULL, 0                                                                          \
    }

#define PORT_KEYS(prefix, base, d1, d2, d3, d4, d5, d6, d7, d8, d9)                                \
    PORT_KEY(prefix, base, api, d1), PORT_KEY(prefix, base, stats, d2),                            \
        PORT_KEY(prefix, base, health, d3), PORT_KEY(prefix, base, balancer_control, d4),          \
        PORT_KEY(prefix, base, radius, d5), PORT_KEY(prefix, base, node, d6),                      \
        PORT_KEY(prefix, base, node_radius, d7), PORT_KEY(prefix, base, replicator, d8),           \
        PORT_KEY(prefix, base, postgres, d9)

static const struct cfg_key member_keys[] = {
    { "id", CFG_STRING, offsetof(struct member_conf, id), NULL, 0, 0, NULL, NULL, CFG_REQUIRED },
    { "address", CFG_STRING, offsetof(struct member_conf, address), NULL, 0, 0, NULL, NULL,
      CFG_REQUIRED },
    /* 0: the cluster's port. */
    PORT_KEYS("ports.", offsetof(struct member_conf, ports), "0", "0", "0", "0", "0", "0", "0", "0",
              "0"),
};

static const struct cfg_list member_list = {
    member_keys,
    MFA_ARRAY_LEN(member_keys),
    sizeof(struct member_conf),
    offsetof(struct appconf, cluster.nmembers),
    APPCONF_MAX_MEMBERS,
};

static const struct cfg_key radius_client_keys[] = {
    { "name", CFG_STRING, offsetof(struct radius_client_conf, name), NULL, 0, 0, NULL, NULL,
      CFG_REQUIRED },
    { "address", CFG_STRING, offsetof(struct radius_client_conf, address), NULL, 0, 0, NULL, NULL,
      CFG_REQUIRED },
    { "secret", CFG_STRING, offsetof(struct radius_client_conf, secret), NULL, 0, 0, NULL, NULL,
      CFG_REQUIRED | CFG_SECRET },
    { "require_message_authenticator", CFG_BOOL,
      offsetof(struct radius_client_conf, require_message_authenticator), "true", 0, 0, NULL, NULL,
      0 },
};

static const struct cfg_list radius_client_list = {
    radius_client_keys,
    MFA_ARRAY_LEN(radius_client_keys),
    sizeof(struct radius_client_conf),
    offsetof(struct appconf, node.radius.nclients),
    APPCONF_MAX_RADIUS_CLIENTS,
};

#define STR(path, field, def, flags)                                                               \
    {                                                                                              \
        path, CFG_STRING, offsetof(struct appconf, field), def, 0, 0, NULL, NULL, flags            \
    }
#define INT(path, field, def, min, max, flags)                                                     \
    {                                                                                              \
        path, CFG_INT, offsetof(struct appconf, field), def, min, max, NULL, NULL, flags           \
    }
#define ENUM(path, field, def, names, flags)                                                       \
    {                                                                                              \
        path, CFG_ENUM, offsetof(struct appconf, field), def, 0, 0, names, NULL, flags             \
    }

static const struct cfg_key appconf_keys[] = {
    STR("cluster.name", cluster.name, NULL, CFG_REQUIRED),
    ENUM("cluster.replication", cluster.replication, "sync", repl_names, 0),
    { "cluster.fence_after", CFG_INT, offsetof(struct appconf, cluster.fence_after), "10", 2, 3600,
      NULL, NULL, 0 },
    /* DESIGN §4 defaults. */
    PORT_KEYS("cluster.ports.", offsetof(struct appconf, cluster.ports), "443", "8404", "8405",
              "8406", "1812", "8080", "18120", "8500", "5432"),
    STR("cluster.tls.ca", cluster.tls_ca, "/etc/mfa-appliance/pki/ca.crt", 0),
    ENUM("cluster.tls.min_version", cluster.tls_min_version, "1.2", tls_names, 0),
    STR("cluster.tls.ciphers", cluster.tls_ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS",
        0),
    STR("cluster.tls.ciphersuites", cluster.tls_ciphersuites,
        "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", 0),
    { "cluster.members", CFG_LIST, offsetof(struct appconf, cluster.members), NULL, 0, 0, NULL,
      &member_list, CFG_REQUIRED },
    STR("appliance.member", appliance.member, NULL, CFG_REQUIRED),
    STR("appliance.key_file", appliance.key_file, "/etc/mfa-appliance/keys.conf", 0),
    STR("appliance.data_dir", appliance.data_dir, "/var/lib/mfa-appliance", 0),
    STR("appliance.run_dir", appliance.run_dir, "/run/mfa-appliance", 0),
    STR("appliance.user", appliance.user, "mfa", 0),
    STR("appliance.tls.cert", appliance.tls_cert, "/etc/mfa-appliance/pki/member.crt", 0),
    STR("appliance.tls.key", appliance.tls_key, "/etc/mfa-appliance/pki/member.key", 0),
    { "appliance.drain_timeout", CFG_INT, offsetof(struct appconf, appliance.drain_timeout), "30",
      1, 3600, NULL, NULL, CFG_RELOADABLE },
    ENUM("log.level", log.level, "info", level_names, CFG_RELOADABLE),
    ENUM("log.target", log.target, "stderr", target_names, CFG_RELOADABLE),

    /* mfa-node */
    STR("node.db.name", node.db.name, "mfa", 0),
    STR("node.db.user", node.db.user, "mfa", 0),
    STR("node.db.password", node.db.password, "", CFG_SECRET),
    STR("node.db.sslmode", node.db.sslmode, "prefer", 0),
    STR("node.db.sslrootcert", node.db.sslrootcert, "", 0),
    INT("node.db.connect_timeout_ms", node.db.connect_timeout_ms, "3000", 100, 60000, 0),
    INT("node.db.query_timeout_ms", node.db.query_timeout_ms, "2000", 100, 60000, 0),
    INT("node.db.connections", node.db.connections, "4", 1, 32, 0),
    INT("node.http.max_body", node.http.max_body, "1048576", 1024, 16777216, 0),
    INT("node.http.max_headers", node.http.max_headers, "16384", 1024, 1048576, 0),
    INT("node.http.timeout_ms", node.http.timeout_ms, "10000", 100, 600000, 0),
    INT("node.challenge.ttl", node.challenge.ttl, "300", 2, 3600, CFG_RELOADABLE),
    INT("node.challenge.max_attempts", node.challenge.max_attempts, "3", 1, 10, CFG_RELOADABLE),
    INT("node.challenge.code_digits", node.challenge.code_digits, "6", 6, 8, CFG_RELOADABLE),
    INT("node.otp.totp_window", node.otp.totp_window, "1", 0, 10, CFG_RELOADABLE),
    INT("node.otp.hotp_lookahead", node.otp.hotp_lookahead, "10", 0, 100, CFG_RELOADABLE),
    INT("node.lockout.max_failures", node.lockout.max_failures, "5", 1, 1000, CFG_RELOADABLE),
    INT("node.lockout.max_failures_total", node.lockout.max_failures_total, "20", 1, 10000,
        CFG_RELOADABLE),
    INT("node.lockout.duration", node.lockout.duration, "300", 1, 86400, CFG_RELOADABLE),
    INT("node.lockout.offline_max_failures", node.lockout.offline_max_failures, "3", 1, 1000,
        CFG_RELOADABLE),
    INT("node.lockout.offline_max_failures_total", node.lockout.offline_max_failures_total, "10", 1,
        10000, CFG_RELOADABLE),
    INT("node.lockout.per_address_per_minute", node.lockout.per_address_per_minute, "30", 1, 100000,
        CFG_RELOADABLE),
    ENUM("node.sms.provider", node.sms.provider, "file", sms_names, 0),
    STR("node.sms.template", node.sms.template,
        "{code} is your sign-in code. It expires in "
        "{minutes} minutes.",
        0),
    STR("node.sms.file", node.sms.file, "/var/lib/mfa-appliance/sms-outbox.jsonl", 0),
    STR("node.sms.http.url", node.sms.http_url, "", 0),
    STR("node.sms.http.body", node.sms.http_body, "{\"to\":\"{phone}\",\"text\":\"{text}\"}", 0),
    STR("node.sms.http.auth_header", node.sms.http_auth_header, "", CFG_SECRET),
    STR("node.sms.http.ca", node.sms.http_ca, "", 0),
    STR("node.sms.exec.command", node.sms.exec_command, "", 0),
    INT("node.sms.timeout_ms", node.sms.timeout_ms, "10000", 100, 120000, 0),
    INT("node.sms.retries", node.sms.retries, "2", 0, 10, 0),
    INT("node.sms.per_user_per_hour", node.sms.per_user_per_hour, "5", 1, 1000, CFG_RELOADABLE),
    INT("node.sms.per_phone_per_hour", node.sms.per_phone_per_hour, "5", 1, 1000, CFG_RELOADABLE),
    INT("node.sms.cluster_per_hour", node.sms.cluster_per_hour, "1000", 1, 10000000,
        CFG_RELOADABLE),
    INT("node.sms.offline_per_user_per_hour", node.sms.offline_per_user_per_hour, "3", 1, 1000,
        CFG_RELOADABLE),
    INT("node.sms.offline_node_per_hour", node.sms.offline_node_per_hour, "100", 1, 10000000,
        CFG_RELOADABLE),
    STR("node.auth_log.spool_dir", node.auth_log.spool_dir, "/var/lib/mfa-appliance/spool", 0),
    INT("node.auth_log.batch_max", node.auth_log.batch_max, "500", 1, 10000, 0),
    INT("node.auth_log.fsync_interval_ms", node.auth_log.fsync_interval_ms, "50", 1, 10000, 0),
    { "node.radius.enabled", CFG_BOOL, offsetof(struct appconf, node.radius.enabled), "true", 0, 0,
      NULL, NULL, 0 },
    STR("node.radius.balancers", node.radius.balancers, "", 0),
    INT("node.radius.duplicate_window_ms", node.radius.duplicate_window_ms, "30000", 1000, 600000,
        0),
    STR("node.radius.challenge_message", node.radius.challenge_message,
        "Enter the code sent to your phone", 0),
    { "node.radius.clients", CFG_LIST, offsetof(struct appconf, node.radius.clients), NULL, 0, 0,
      NULL, &radius_client_list, 0 },
    { "node.portal.enabled", CFG_BOOL, offsetof(struct appconf, node.portal.enabled), "true", 0, 0,
      NULL, NULL, 0 },
    INT("node.portal.idle_timeout_s", node.portal.idle_timeout_s, "900", 60, 86400, CFG_RELOADABLE),
    INT("node.portal.absolute_timeout_s", node.portal.absolute_timeout_s, "28800", 60, 604800,
        CFG_RELOADABLE),
    INT("node.portal.signin_timeout_s", node.portal.signin_timeout_s, "300", 30, 3600,
        CFG_RELOADABLE),
    INT("node.portal.max_sessions", node.portal.max_sessions, "10000", 1, 1000000, CFG_RELOADABLE),

    /* mfa-replicator */
    STR("replicator.pg_bin", replicator.pg_bin, "/usr/lib/postgresql/15/bin", 0),
    STR("replicator.pgdata", replicator.pgdata, "", 0),
    { "replicator.witness", CFG_BOOL, offsetof(struct appconf, replicator.witness), "false", 0, 0,
      NULL, NULL, 0 },
    { "replicator.fsync", CFG_BOOL, offsetof(struct appconf, replicator.fsync), "true", 0, 0, NULL,
      NULL, 0 },
    INT("replicator.poll_interval_ms", replicator.poll_interval_ms, "250", 50, 10000,
        CFG_RELOADABLE),
    INT("replicator.peer_timeout_ms", replicator.peer_timeout_ms, "1500", 100, 60000,
        CFG_RELOADABLE),
    INT("replicator.standby_timeout_ms", replicator.standby_timeout_ms, "2000", 500, 60000,
        CFG_RELOADABLE),
    STR("replicator.max_slot_wal_keep_size", replicator.max_slot_wal_keep_size, "1GB", 0),
    STR("replicator.max_standby_streaming_delay", replicator.max_standby_streaming_delay, "30s", 0),
    INT("replicator.restart_backoff_max", replicator.restart_backoff_max, "30", 1, 3600, 0),

    /* mfa-balancer */
    { "balancer.enabled", CFG_BOOL, offsetof(struct appconf, balancer.enabled), "true", 0, 0, NULL,
      NULL, 0 },
    STR("balancer.haproxy_bin", balancer.haproxy_bin, "/usr/sbin/haproxy", 0),
    STR("balancer.address", balancer.address, "", CFG_RELOADABLE),
    STR("balancer.tls.cert", balancer.tls_cert, "", CFG_RELOADABLE),
    STR("balancer.tls.key", balancer.tls_key, "", CFG_RELOADABLE),
    STR("balancer.stats.user", balancer.stats_user, "admin", CFG_RELOADABLE),
    STR("balancer.stats.password", balancer.stats_password, "", CFG_SECRET | CFG_RELOADABLE),
    INT("balancer.check_inter_ms", balancer.check_inter_ms, "1000", 100, 60000, CFG_RELOADABLE),
    INT("balancer.check_fall", balancer.check_fall, "2", 1, 10, CFG_RELOADABLE),
    INT("balancer.check_rise", balancer.check_rise, "2", 1, 10, CFG_RELOADABLE),
    INT("balancer.connect_timeout_ms", balancer.connect_timeout_ms, "500", 50, 60000,
        CFG_RELOADABLE),
    INT("balancer.client_timeout_ms", balancer.client_timeout_ms, "30000", 1000, 600000,
        CFG_RELOADABLE),
    INT("balancer.server_timeout_ms", balancer.server_timeout_ms, "30000", 1000, 600000,
        CFG_RELOADABLE),
    INT("balancer.maxconn", balancer.maxconn, "4096", 16, 1000000, CFG_RELOADABLE),
    INT("balancer.poll_interval_ms", balancer.poll_interval_ms, "1000", 100, 60000, CFG_RELOADABLE),
    { "balancer.radius.enabled", CFG_BOOL, offsetof(struct appconf, balancer.radius.enabled),
      "true", 0, 0, NULL, NULL, 0 },
    STR("balancer.radius.address", balancer.radius.address, "", 0),
    INT("balancer.radius.retransmit_window_ms", balancer.radius.retransmit_window_ms, "30000", 1000,
        600000, 0),

    /* directory sync and the LDAP first factor (mfa-node on the primary, mfactl) */
    { "directory.enabled", CFG_BOOL, offsetof(struct appconf, directory.enabled), "false", 0, 0,
      NULL, NULL, 0 },
    STR("directory.url", directory.url, "", 0),
    { "directory.starttls", CFG_BOOL, offsetof(struct appconf, directory.starttls), "false", 0, 0,
      NULL, NULL, 0 },
    STR("directory.ca_file", directory.ca_file, "", 0),
    STR("directory.bind_dn", directory.bind_dn, "", 0),
    STR("directory.bind_password_file", directory.bind_password_file, "", 0),
    STR("directory.base_dn", directory.base_dn, "", 0),
    ENUM("directory.scope", directory.scope, "sub", scope_names, 0),
    STR("directory.filter", directory.filter, "(objectClass=person)", 0),
    STR("directory.group_dn", directory.group_dn, "", 0),
    INT("directory.interval_s", directory.interval_s, "3600", 60, 86400, 0),
    INT("directory.max_disable_percent", directory.max_disable_percent, "10", 0, 100, 0),
    INT("directory.max_disable_min", directory.max_disable_min, "3", 0, 1000000, 0),
    INT("directory.timeout_ms", directory.timeout_ms, "10000", 100, 120000, 0),
    { "directory.adopt_local", CFG_BOOL, offsetof(struct appconf, directory.adopt_local), "false",
      0, 0, NULL, NULL, 0 },
    STR("directory.default_method", directory.default_method, "sms", 0),
    ENUM("directory.first_factor", directory.first_factor, "pin", first_factor_names, 0),
    STR("directory.attributes.username", directory.attributes.username, "uid", 0),
    STR("directory.attributes.display_name", directory.attributes.display_name, "displayName", 0),
    STR("directory.attributes.email", directory.attributes.email, "mail", 0),
    STR("directory.attributes.phone", directory.attributes.phone, "mobile,telephoneNumber", 0),

    /* e-mail to users (mfa-node on the primary) */
    { "email.enabled", CFG_BOOL, offsetof(struct appconf, email.enabled), "false", 0, 0, NULL, NULL,
      0 },
    STR("email.smtp_url", email.smtp_url, "", 0),
    STR("email.ca_file", email.ca_file, "", 0),
    STR("email.username", email.username, "", 0),
    STR("email.password_file", email.password_file, "", 0),
    STR("email.from", email.from, "", 0),
    STR("email.from_name", email.from_name, "MFA Appliance", 0),
    STR("email.portal_url", email.portal_url, "", 0),
    STR("email.templates_dir", email.templates_dir, "", 0),
    INT("email.timeout_ms", email.timeout_ms, "30000", 1000, 300000, 0),
    INT("email.max_age_s", email.max_age_s, "172800", 60, 2592000, 0),
    INT("email.poll_interval_ms", email.poll_interval_ms, "2000", 100, 60000, 0),
    INT("email.retention_days", email.retention_days, "30", 1, 3650, 0),
};

const struct cfg_schema appconf_schema = { appconf_keys, MFA_ARRAY_LEN(appconf_keys),
                                           APPCONF_VERSION };

const struct member_conf *appconf_member(const struct appconf *conf, const char *id)
{
    for (size_t i = 0; i < conf->cluster.nmembers; i++) {
        if (strcmp(conf->cluster.members[i].id, id) == 0)
            return &conf->cluster.members[i];
    }
    return NULL;
}

const struct member_conf *appconf_local(const struct appconf *conf)
{
    return appconf_member(conf, conf->appliance.member);
}

static int *port_slot(struct member_ports *p, size_t i)
{
    int *slots[] = { &p->api,  &p->stats,       &p->health,     &p->balancer_control, &p->radius,
                     &p->node, &p->node_radius, &p->replicator, &p->postgres };

    return i < MFA_ARRAY_LEN(slots) ? slots[i] : NULL;
}

/* RADIUS clients, the balancer list and the front's address: numeric, in range. */
static int validate_radius(const struct appconf *conf, const char *name, char **err)
{
    struct sockaddr_storage balancers[APPCONF_MAX_RADIUS_BALANCERS];
    const char *why = NULL;
    struct netaddr_prefix prefix;
    char bad[NETADDR_TEXT_MAX + 1];
    size_t count, mlen = strlen(conf->node.radius.challenge_message);

    for (size_t i = 0; i < conf->node.radius.nclients; i++) {
        const struct radius_client_conf *c = &conf->node.radius.clients[i];
        size_t slen = strlen(c->secret);

        if (netaddr_parse_prefix(c->address, &prefix, &why) < 0)
            return err_set(err, "%s: node.radius.clients[%zu].address: \"%.60s\": %s", name, i,
                           c->address, why);
        if (slen == 0 || slen > RADIUS_SECRET_MAX)
            return err_set(err, "%s: node.radius.clients[%zu].secret: expected 1 to %d bytes", name,
                           i, RADIUS_SECRET_MAX);
        if (!*c->name)
            return err_set(err, "%s: node.radius.clients[%zu].name: must not be empty", name, i);
    }
    if (netaddr_parse_list(conf->node.radius.balancers, balancers, MFA_ARRAY_LEN(balancers), &count,
                           bad, &why) < 0)
        return err_set(err,
                       "%s: node.radius.balancers: \"%s\": %s (expected numeric addresses "
                       "separated by commas)",
                       name, bad, why);
    /* One RADIUS attribute holds it. */
    if (mlen == 0 || mlen > RADIUS_ATTR_MAX)
        return err_set(err, "%s: node.radius.challenge_message: expected 1 to %d bytes", name,
                       RADIUS_ATTR_MAX);
    if (*conf->balancer.address && !netaddr_numeric(conf->balancer.address))
        return err_set(err, "%s: balancer.address: \"%.60s\" is not a numeric IPv4 or IPv6 address",
                       name, conf->balancer.address);
    if (*conf->balancer.radius.address && !netaddr_numeric(conf->balancer.radius.address))
        return err_set(err,
                       "%s: balancer.radius.address: \"%.60s\" is not a numeric IPv4 or "
                       "IPv6 address",
                       name, conf->balancer.radius.address);
    return 0;
}

/*
 * PostgreSQL's syntax for a time setting such as max_standby_streaming_delay:
 * -1, or a non-negative integer with an optional unit (ms, s, min, h, d; none
 * means ms). Checked here because the text goes into postgresql.conf, where
 * a typo keeps PostgreSQL from starting on that member.
 */
static bool pg_duration_valid(const char *s)
{
    static const char *const units[] = { "", "ms", "s", "min", "h", "d" };
    const char *p = s;

    if (strcmp(s, "-1") == 0)
        return true;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s || p - s > 9)
        return false;
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < MFA_ARRAY_LEN(units); i++)
        if (strcmp(p, units[i]) == 0)
            return true;
    return false;
}

static bool prefixed(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * directory.url: one URL or several (libldap takes a list separated by
 * commas or blanks, tried in order: "ldaps://dc1,ldaps://dc2"), every one
 * of them ldaps://, or every one ldap:// with directory.starttls; a list
 * that mixes them would send a password in clear to one of its servers.
 */
static int validate_directory_url(const struct appconf *conf, const char *name, char **err)
{
    const char *url = conf->directory.url;
    char one[DIRECTORY_URL_MAX];
    size_t pos = 0;
    int plain = 0, tls = 0, next;

    /* split at commas and spaces as the connection does (directory_url_next()); other blanks
     * break it */
    if (strpbrk(url, "\t\r\n"))
        return err_set(err, "%s: directory.url: separate the URLs with commas or spaces", name);
    while ((next = directory_url_next(url, &pos, one, sizeof(one))) != 0) {
        LDAPURLDesc *u = NULL;
        int rc;

        if (next < 0)
            return err_set(err, "%s: directory.url: a URL is longer than %zu bytes", name,
                           sizeof(one) - 1);
        if (ldap_url_parse(one, &u) != LDAP_URL_SUCCESS || !u)
            return err_set(
                err,
                "%s: directory.url: \"%.60s\" is not an ldap:// or ldaps:// URL, or a "
                "list of them (e.g. \"ldaps://dc1.example.com,ldaps://dc2.example.com\")",
                name, one);
        rc = strcmp(u->lud_scheme, "ldaps") == 0 ? 2 : strcmp(u->lud_scheme, "ldap") == 0 ? 1 : 0;
        if (rc == 0)
            err_set(err, "%s: directory.url: %s:// is neither ldap:// nor ldaps://", name,
                    u->lud_scheme);
        ldap_free_urldesc(u);
        if (rc == 0)
            return -1;
        tls += rc == 2;
        plain += rc == 1;
    }
    if (!plain && !tls)
        return err_set(err,
                       "%s: directory.url: \"%.60s\" is not an ldap:// or ldaps:// URL, or a list "
                       "of them (e.g. \"ldaps://dc1.example.com,ldaps://dc2.example.com\")",
                       name, url);
    if (plain && tls)
        return err_set(err,
                       "%s: directory.url: \"%.60s\" mixes ldap:// and ldaps://; list servers of "
                       "one kind (ldaps://, or ldap:// with directory.starttls)",
                       name, url);
    if (plain && !conf->directory.starttls)
        return err_set(err,
                       "%s: directory.url: %s is in clear; use ldaps:// or set "
                       "directory.starttls = true (passwords cross this connection)",
                       name, url);
    if (tls && conf->directory.starttls)
        return err_set(err, "%s: directory.starttls: ldaps:// is TLS already; use one or the other",
                       name);
    return 0;
}

/* The attribute names of directory.attributes fit what the fetch asks for. */
static int validate_directory_attrs(const struct appconf *conf, const char *name, char **err)
{
    const char *single[] = { conf->directory.attributes.username,
                             conf->directory.attributes.display_name,
                             conf->directory.attributes.email };
    const char *p = conf->directory.attributes.phone;
    size_t names = 0;

    for (size_t i = 0; i < sizeof(single) / sizeof(*single); i++) {
        if (strlen(single[i]) >= DIRECTORY_ATTR_NAME_MAX)
            return err_set(err, "%s: directory.attributes: \"%.40s...\" is longer than %d bytes",
                           name, single[i], DIRECTORY_ATTR_NAME_MAX - 1);
    }
    while (*p) {
        size_t len;

        p += strspn(p, " \t,");
        len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len >= DIRECTORY_ATTR_NAME_MAX)
            return err_set(err, "%s: directory.attributes.phone: a name is longer than %d bytes",
                           name, DIRECTORY_ATTR_NAME_MAX - 1);
        names += len > 0;
        p += strcspn(p, ",");
    }
    if (names > DIRECTORY_PHONE_ATTRS_MAX)
        return err_set(err, "%s: directory.attributes.phone: more than %d names", name,
                       DIRECTORY_PHONE_ATTRS_MAX);
    return 0;
}

/* A directory that is enabled says where it is and what to read, over TLS. */
static int validate_directory(const struct appconf *conf, const char *name, char **err)
{
    const char *m = conf->directory.default_method;

    if (!conf->directory.enabled) {
        if (conf->directory.first_factor == FIRST_FACTOR_LDAP)
            return err_set(err, "%s: directory.first_factor: \"ldap\" needs directory.enabled",
                           name);
        return 0;
    }
    if (validate_directory_url(conf, name, err) < 0 ||
        validate_directory_attrs(conf, name, err) < 0)
        return -1;
    if (!*conf->directory.base_dn)
        return err_set(err, "%s: directory.base_dn: needed when the directory is enabled", name);
    if (*conf->directory.bind_dn && !*conf->directory.bind_password_file)
        return err_set(err, "%s: directory.bind_password_file: needed with directory.bind_dn",
                       name);
    if (conf->directory.filter[0] != '(')
        return err_set(err, "%s: directory.filter: \"%.60s\" is not an LDAP filter in parentheses",
                       name, conf->directory.filter);
    if (strcmp(m, "sms") != 0 && strcmp(m, "totp") != 0)
        return err_set(err, "%s: directory.default_method: \"%.20s\" is not sms or totp", name, m);
    if (!*conf->directory.attributes.username)
        return err_set(err, "%s: directory.attributes.username: must name an attribute", name);
    return 0;
}

/* E-mail that is enabled has a server (over TLS), a sender and a portal link. */
static int validate_email(const struct appconf *conf, const char *name, char **err)
{
    const char *url = conf->email.smtp_url;

    if (!conf->email.enabled)
        return 0;
    if (!prefixed(url, "smtp://") && !prefixed(url, "smtps://"))
        return err_set(err,
                       "%s: email.smtp_url: \"%.60s\" is not an smtp:// (STARTTLS) or smtps:// "
                       "URL",
                       name, url);
    if (!strchr(conf->email.from, '@') || strpbrk(conf->email.from, "<>\r\n \t\","))
        return err_set(err, "%s: email.from: \"%.60s\" is not a plain address (user@domain)", name,
                       conf->email.from);
    if (strpbrk(conf->email.from_name, "\r\n\"<>"))
        return err_set(err, "%s: email.from_name: line breaks, quotes and <> are not allowed",
                       name);
    if ((!prefixed(conf->email.portal_url, "https://") &&
         !prefixed(conf->email.portal_url, "http://")) ||
        strpbrk(conf->email.portal_url, " \t\r\n\"<>"))
        return err_set(err, "%s: email.portal_url: \"%.60s\" is not an http(s):// URL", name,
                       conf->email.portal_url);
    if (*conf->email.username && !*conf->email.password_file)
        return err_set(err, "%s: email.password_file: needed with email.username", name);
    /* the message builder's own rules: what passes here builds every message */
    if (mailmsg_check_settings(conf->email.from, conf->email.from_name, conf->email.portal_url,
                               err) < 0)
        return err_prefix(err, "%s", name);
    return 0;
}

/* The checks that span keys; see appconf_load(). */
static int validate(struct appconf *conf, const char *name, char **err)
{
    struct member_conf *m = conf->cluster.members;
    size_t n = conf->cluster.nmembers, i, j, k;
    int *slot;

    if (n == 0)
        return err_set(err, "%s: cluster.members: at least one member is needed", name);
    for (i = 0; i < n; i++) {
        if (!node_id_valid(m[i].id))
            return err_set(err,
                           "%s: cluster.members[%zu].id: \"%.40s\" is not a node id "
                           "(1 to 16 of a-z and 0-9)",
                           name, i, m[i].id);
        if (!netaddr_numeric(m[i].address))
            return err_set(err,
                           "%s: cluster.members[%zu].address: \"%.60s\" is not a numeric IPv4 or "
                           "IPv6 address",
                           name, i, m[i].address);
        for (j = 0; j < i; j++) {
            if (strcmp(m[i].id, m[j].id) == 0)
                return err_set(err, "%s: cluster.members[%zu].id: \"%s\" is listed twice", name, i,
                               m[i].id);
        }
        for (k = 0; (slot = port_slot(&m[i].ports, k)); k++) {
            if (*slot == 0)
                *slot = *port_slot(&conf->cluster.ports, k);
        }
    }
    /* Members that share an address (the one-host demo) need distinct ports. */
    for (i = 0; i < n; i++) {
        for (j = 0; j < i; j++) {
            if (strcmp(m[i].address, m[j].address) != 0)
                continue;
            for (k = 0; port_slot(&m[i].ports, k); k++) {
                if (*port_slot(&m[i].ports, k) == *port_slot(&m[j].ports, k))
                    return err_set(err,
                                   "%s: cluster.members: %s and %s share address %s and port %d; "
                                   "give one of them its own ports",
                                   name, m[j].id, m[i].id, m[i].address,
                                   *port_slot(&m[i].ports, k));
            }
        }
    }
    if (!appconf_local(conf))
        return err_set(err, "%s: appliance.member: \"%.40s\" is not one of cluster.members", name,
                       conf->appliance.member);
    if (!pg_duration_valid(conf->replicator.max_standby_streaming_delay))
        return err_set(err,
                       "%s: replicator.max_standby_streaming_delay: \"%.40s\" is not -1 or a "
                       "whole number with an optional unit (ms, s, min, h, d), e.g. \"30s\"",
                       name, conf->replicator.max_standby_streaming_delay);
    if (conf->node.portal.idle_timeout_s > conf->node.portal.absolute_timeout_s)
        return err_set(
            err, "%s: node.portal.idle_timeout_s: %d is longer than absolute_timeout_s (%d)", name,
            conf->node.portal.idle_timeout_s, conf->node.portal.absolute_timeout_s);
    if (validate_radius(conf, name, err) < 0)
        return -1;
    if (validate_directory(conf, name, err) < 0)
        return -1;
    return validate_email(conf, name, err);
}

static int finish(int rc, struct appconf *conf, const char *name, char **err)
{
    if (rc < 0)
        return -1;
    if (validate(conf, name, err) < 0) {
        appconf_free(conf);
        return -1;
    }
    return 0;
}

int appconf_load(const char *path, struct appconf *conf, cfg_warn_fn warn, void *warn_arg,
                 char **err)
{
    return finish(cfg_load(path, &appconf_schema, conf, warn, warn_arg, err), conf, path, err);
}

int appconf_load_string(const char *text, const char *name, struct appconf *conf, cfg_warn_fn warn,
                        void *warn_arg, char **err)
{
    return finish(cfg_load_string(text, name, &appconf_schema, conf, warn, warn_arg, err), conf,
                  name, err);
}

void appconf_free(struct appconf *conf)
{
    cfg_free(&appconf_schema, conf);
}
