/*
 * The appliance configuration file, /etc/mfa-appliance/appliance.conf.
 *
 * One libconfig file per appliance. The `cluster` section is identical on
 * every member (name, members with id and address, ports, TLS, replication
 * mode); `appliance` says which member this host is and where its files
 * live; `log` sets logging. The daemons' own sections (node, replicator,
 * balancer) join this schema as each daemon lands. Every key has a default
 * except the ones that name the cluster and its members.
 */
#ifndef MFA_APPCONF_H
#define MFA_APPCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "mem.h"

/* The newest file `version` this build knows (config.h: newer files warn). */
#define APPCONF_VERSION 1

#define APPCONF_DEFAULT_PATH         "/etc/mfa-appliance/appliance.conf"
#define APPCONF_MAX_MEMBERS          16
#define APPCONF_MAX_RADIUS_CLIENTS   1024
#define APPCONF_MAX_RADIUS_BALANCERS 64

enum repl_mode {
    REPL_SYNC = 0, /* admin writes wait for every live standby (remote_apply) */
    REPL_ASYNC,    /* admin writes return once on the primary */
};

enum sms_provider_kind {
    SMS_PROVIDER_FILE = 0, /* JSON lines outbox */
    SMS_PROVIDER_HTTP,     /* templated HTTPS POST to a gateway */
    SMS_PROVIDER_EXEC,     /* a command gets the phone number and the text */
};

enum tls_min {
    TLS_MIN_1_2 = 0,
    TLS_MIN_1_3,
};

enum directory_scope {
    DIRECTORY_SCOPE_SUB = 0, /* the base DN and everything below it */
    DIRECTORY_SCOPE_ONE,     /* the base DN's direct children */
};

/* What a directory user's first factor is (docs/directory.md). */
enum first_factor {
    FIRST_FACTOR_PIN = 0, /* the PIN kept here, as for every user */
    FIRST_FACTOR_LDAP,    /* the directory password, checked by a bind as the user's DN */
};

/* A RADIUS client (NAS) of the node: who may ask, and the secret it signs with. */
struct radius_client_conf {
    char *name;    /* for logs and metrics */
    char *address; /* numeric address or prefix, "192.0.2.10" or "10.0.0.0/8" */
    char *secret;  /* the shared secret, 1..128 bytes */
    bool require_message_authenticator; /* drop Access-Requests without it (BlastRADIUS) */
};

/* Ports of one member; in a member entry, 0 means "the cluster's port". */
struct member_ports {
    int api;              /* HAProxy: API and portal (TLS) */
    int stats;            /* HAProxy stats page */
    int health;           /* mfa-balancer web health page */
    int balancer_control; /* mfa-balancer control API */
    int radius;           /* mfa-balancer RADIUS front (UDP) */
    int node;             /* mfa-node HTTP(S) */
    int node_radius;      /* mfa-node RADIUS behind the balancer (UDP) */
    int replicator;       /* mfa-replicator control API */
    int postgres;         /* PostgreSQL */
};

struct member_conf {
    char *id;      /* node id: 1-16 of [a-z0-9] */
    char *address; /* numeric IPv4 or IPv6 address */
    struct member_ports ports;
};

struct appconf {
    struct {
        char *name;
        int replication; /* enum repl_mode */
        int fence_after; /* seconds without a majority before a primary fences */
        struct member_ports ports;
        char *tls_ca;
        int tls_min_version;    /* enum tls_min */
        char *tls_ciphers;      /* TLS 1.2 cipher list (OpenSSL syntax) */
        char *tls_ciphersuites; /* TLS 1.3 suites */
        struct member_conf *members;
        size_t nmembers;
    } cluster;
    struct {
        char *member; /* this host's member id */
        char *key_file;
        char *data_dir;
        char *run_dir;
        char *user; /* the unprivileged user daemons run as */
        char *tls_cert;
        char *tls_key;
        int drain_timeout; /* seconds a SIGTERM waits for requests in flight */
    } appliance;
    struct {
        int level;  /* enum log_level */
        int target; /* enum log_target */
    } log;
    /* mfa-node */
    struct {
        struct {
            char *name, *user, *password, *sslmode, *sslrootcert;
            int connect_timeout_ms, query_timeout_ms;
            int connections; /* per side: reads (local) and writes (primary) */
        } db;
        struct {
            int max_body, max_headers, timeout_ms;
        } http;
        struct {
            int ttl, max_attempts, code_digits;
        } challenge;
        struct {
            int totp_window, hotp_lookahead;
        } otp;
        struct {
            int max_failures, max_failures_total, duration;
            int offline_max_failures, offline_max_failures_total;
            int per_address_per_minute;
        } lockout;
        struct {
            int provider; /* enum sms_provider_kind */
            char *template;
            char *file;
            char *http_url, *http_body, *http_auth_header, *http_ca;
            char *exec_command;
            int timeout_ms, retries;
            int per_user_per_hour, per_phone_per_hour, cluster_per_hour;
            int offline_per_user_per_hour, offline_node_per_hour;
        } sms;
        struct {
            char *spool_dir;
            int batch_max, fsync_interval_ms;
        } auth_log;
        struct {
            bool enabled;
            char *balancers; /* comma-separated addresses sending PROXY v2; "": every member */
            int duplicate_window_ms; /* how long an answer is kept for retransmissions */
            char *challenge_message; /* Reply-Message of an SMS Access-Challenge */
            struct radius_client_conf *clients;
            size_t nclients;
        } radius;
        struct {
            bool enabled;           /* serve /portal/ */
            int idle_timeout_s;     /* a signed-in session unused this long ends */
            int absolute_timeout_s; /* a signed-in session ends this long after the sign-in */
            int signin_timeout_s;   /* a session not signed in ends this long after its start */
            int max_sessions;       /* when full the oldest not signed in goes first */
        } portal;
    } node;
    /* mfa-replicator */
    struct {
        char *pg_bin;           /* PostgreSQL's programs */
        char *pgdata;           /* "": <appliance.data_dir>/pgdata */
        bool witness;           /* a voter without PostgreSQL */
        bool fsync;             /* PostgreSQL's fsync (off only for throwaway test clusters) */
        int poll_interval_ms;   /* how often each peer's /status is asked */
        int peer_timeout_ms;    /* a peer unanswered this long is not seen */
        int standby_timeout_ms; /* a standby silent this long leaves synchronous_standby_names */
        char *max_slot_wal_keep_size;
        char *max_standby_streaming_delay; /* a standby query may hold up replay this long */
        int restart_backoff_max;           /* seconds between restarts of a crashing PostgreSQL */
    } replicator;
    /* mfa-balancer */
    struct {
        bool enabled; /* this host takes client traffic (runs HAProxy) */
        char *haproxy_bin;
        char *address;  /* HAProxy's API front; "": this member's address, "0.0.0.0"/"::": any */
        char *tls_cert; /* front end; "": appliance.tls.cert */
        char *tls_key;  /* "": appliance.tls.key */
        char *stats_user;
        char *stats_password; /* "": the stats page is not served */
        int check_inter_ms, check_fall, check_rise;
        int connect_timeout_ms, client_timeout_ms, server_timeout_ms;
        int maxconn;
        int poll_interval_ms; /* how often the health page asks every member */
        struct {
            bool enabled;             /* the UDP front on ports.radius */
            char *address;            /* "": this member's address; "0.0.0.0" or "::" for any */
            int retransmit_window_ms; /* how long a request's node is remembered */
        } radius;
    } balancer;
    /* Users from LDAP/Active Directory (docs/directory.md). */
    struct {
        bool enabled;
        char *url;                /* ldap://host[:port] or ldaps://host[:port] */
        bool starttls;            /* with ldap://: StartTLS, required */
        char *ca_file;            /* CA the server's certificate must chain to; "": system's */
        char *bind_dn;            /* the sync's service account; "": anonymous */
        char *bind_password_file; /* its password, the file's first line */
        char *base_dn;            /* where users are searched (a domain, an OU) */
        int scope;                /* enum directory_scope */
        char *filter;             /* which entries under base_dn are users */
        char *group_dn;           /* "": every match; else only the group's members */
        int interval_s;           /* the scheduled sync's period */
        int max_disable_percent;  /* a sync disabling more of the directory's users is refused */
        int max_disable_min;      /* ... unless it disables at most this many (small directories) */
        int timeout_ms;           /* every LDAP operation's deadline */
        bool adopt_local;         /* a local user of the same name becomes a directory user */
        char *default_method;     /* of a user the sync creates: sms or totp */
        int first_factor;         /* enum first_factor */
        struct {
            char *username, *display_name, *email, *phone; /* phone: names, first one set wins */
        } attributes;
    } directory;
    /* E-mail to users (docs/email.md). */
    struct {
        bool enabled;
        char *smtp_url;       /* smtp://host[:port] (STARTTLS required) or smtps://host[:port] */
        char *ca_file;        /* "": the system trust store */
        char *username;       /* "": no SMTP AUTH */
        char *password_file;  /* its password, the file's first line */
        char *from;           /* the envelope and From: address */
        char *from_name;      /* the From: display name */
        char *portal_url;     /* the portal link in the messages */
        char *templates_dir;  /* "": the built-in templates; else <event>.txt files there */
        int timeout_ms;       /* one message's whole SMTP exchange */
        int max_age_s;        /* an event not sent this long after it happened is given up */
        int poll_interval_ms; /* how often the node on the primary looks for due messages */
        int retention_days;   /* sent and given-up rows are deleted after this (even disabled) */
    } email;
};

extern const struct cfg_schema appconf_schema;

/*
 * Loads and validates <path> into <conf>, which the caller zeroed: member ids
 * well formed and unique, addresses numeric, `appliance.member` one of the
 * members, each member's zero ports filled in from the cluster's, and no two
 * members on one address sharing a port. Returns 0, or -1 with *err naming
 * file, line and key. Free with appconf_free().
 */
int appconf_load(const char *path, struct appconf *conf, cfg_warn_fn warn, void *warn_arg,
                 char **err) MFA_MUSTCHECK;

/* Same from text; <name> stands for the file in messages. */
int appconf_load_string(const char *text, const char *name, struct appconf *conf, cfg_warn_fn warn,
                        void *warn_arg, char **err) MFA_MUSTCHECK;

void appconf_free(struct appconf *conf);

/* The member with <id>, or NULL; the caller does not own it. */
const struct member_conf *appconf_member(const struct appconf *conf, const char *id);

/* This host's member (never NULL after a successful load). */
const struct member_conf *appconf_local(const struct appconf *conf);

#endif
