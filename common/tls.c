/*
 * Server TLS contexts; see tls.h. Compression, renegotiation and session
 * tickets are off; the server's cipher order wins.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "appconf.h"
#include "errmsg.h"

/* The text of OpenSSL's most recent error, or <fallback>. */
static const char *ssl_error(const char *fallback)
{
    static __thread char buf[256];
    unsigned long e = ERR_get_error();

    if (!e)
        return fallback;
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

SSL_CTX *tls_server_ctx_new(const struct tls_settings *s, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int min = s->min_version == 1 ? TLS1_3_VERSION : TLS1_2_VERSION;

    if (!ctx) {
        err_set(err, "TLS: %s", ssl_error("cannot create a context"));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    if (!SSL_CTX_set_min_proto_version(ctx, min)) {
        err_set(err, "TLS: cannot set the minimum version: %s", ssl_error("?"));
        goto fail;
    }
    if (s->ciphers && *s->ciphers && !SSL_CTX_set_cipher_list(ctx, s->ciphers)) {
        err_set(err, "TLS: cipher list \"%s\": %s", s->ciphers, ssl_error("no usable cipher"));
        goto fail;
    }
    if (s->ciphersuites && *s->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, s->ciphersuites)) {
        err_set(err, "TLS: ciphersuites \"%s\": %s", s->ciphersuites, ssl_error("no usable suite"));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        err_set(err, "TLS: certificate %s: %s", s->cert_file, ssl_error("cannot load"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, s->key_file, SSL_FILETYPE_PEM) != 1) {
        err_set(err, "TLS: key %s: %s", s->key_file, ssl_error("cannot load"));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        err_set(err, "TLS: key %s does not match certificate %s", s->key_file, s->cert_file);
        goto fail;
    }
    if (s->ca_file && *s->ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);

        if (SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1 || !names) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            err_set(err, "TLS: CA %s: %s", s->ca_file, ssl_error("cannot load"));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | (s->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_peer_name(SSL *ssl, char *buf, size_t size)
{
    X509 *cert;
    int n;

    if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return -1;
    n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, (int)size);
    X509_free(cert);
    return n > 0 ? 0 : -1;
}

struct tls_settings tls_settings_cluster(const struct appconf *c)
{
    return (struct tls_settings){
        .cert_file = c->appliance.tls_cert,
        .key_file = c->appliance.tls_key,
        .ca_file = c->cluster.tls_ca,
        .require_client_cert = true,
        .min_version = c->cluster.tls_min_version,
        .ciphers = c->cluster.tls_ciphers,
        .ciphersuites = c->cluster.tls_ciphersuites,
    };
}
