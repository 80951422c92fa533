/*
 * TLS contexts for the servers on OpenSSL: certificate and key, an optional
 * CA for client certificates (mutual TLS between hosts), a minimum version
 * and the cipher lists from the configuration. Nothing older than TLS 1.2 is
 * ever offered.
 */
#ifndef MFA_TLS_H
#define MFA_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct tls_settings {
    const char *cert_file;    /* PEM certificate (chain) */
    const char *key_file;     /* PEM private key */
    const char *ca_file;      /* CA for client certificates; NULL or "": none asked */
    bool require_client_cert; /* with ca_file: refuse a handshake without one */
    int min_version;          /* enum tls_min (appconf.h): 0 = TLS 1.2, 1 = TLS 1.3 */
    const char *ciphers;      /* TLS 1.2 list, OpenSSL syntax; NULL: OpenSSL's */
    const char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's */
};

struct appconf;

/*
 * The settings of a server that only members and mfactl reach (control APIs,
 * the node port between hosts): this member's certificate and key, client
 * certificates from the cluster CA required, the cluster's TLS version and
 * ciphers. Strings borrowed from <c>.
 */
struct tls_settings tls_settings_cluster(const struct appconf *c);

/*
 * Builds a server context from <s>. Returns it (the caller frees it with
 * SSL_CTX_free()), or NULL with *err naming the file or setting at fault.
 */
SSL_CTX *tls_server_ctx_new(const struct tls_settings *s, char **err) MFA_MUSTCHECK;

/*
 * Copies the common name of the peer's verified certificate into <buf>.
 * Returns 0, or -1 when the peer sent none (or it did not verify).
 */
int tls_peer_name(SSL *ssl, char *buf, size_t size) MFA_MUSTCHECK;

#endif
