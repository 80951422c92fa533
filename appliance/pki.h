/*
 * The cluster's PKI (`mfactl pki`): one cluster CA and a certificate per
 * member, made with OpenSSL. Every TLS link between hosts (replication,
 * control APIs, HAProxy to nodes) uses certificates the CA signed, and trusts
 * only that CA.
 *
 *   mfactl pki init  --dir DIR [--cluster NAME] [--days N] [--force]
 *   mfactl pki issue --dir DIR --name ID [--ip ADDR]... [--dns NAME]...
 *                    [--out PREFIX] [--days N] [--owner USER]
 *   mfactl pki renew --dir DIR [--name ID | --out PREFIX] [--within DAYS]
 *                    [--force] [--new-key] [--days N] [--owner USER]
 *
 * init writes DIR/ca.crt (0644) and DIR/ca.key (0600): an ECDSA P-256 key, a
 * self-signed CA (basicConstraints CA:true pathlen:0 critical,
 * keyCertSign|cRLSign, subject "CN=<NAME> cluster CA", NAME "mfa" by
 * default, 3650 days by default). DIR is created (0755) if missing. An
 * existing ca.key is never replaced without --force.
 *
 * issue writes PREFIX.crt (0644; the leaf) and PREFIX.key (0600), PREFIX
 * defaulting to DIR/<ID>: an ECDSA P-256 key and a certificate signed by the
 * CA in DIR with CN=<ID>, subjectAltName of every --ip (IP:) and --dns (DNS:)
 * (at least one --ip or --dns, and ID itself as a DNS name when it is a host
 * name, not an address), extendedKeyUsage serverAuth+clientAuth, keyUsage
 * digitalSignature, basicConstraints CA:false, a random 128-bit serial, 825
 * days by default. --owner chowns both files to that user and its group (the
 * daemons' user must read its key). An existing PREFIX.key is replaced
 * (reissue); the CA's own files never are.
 *
 * renew renews PREFIX.crt — DIR/member by default (this member's, as the
 * install guide lays it out: appliance.tls.cert's default name), DIR/<ID>
 * with --name, PREFIX with --out — when it expires within --within days (30
 * by default) or with --force. Not due: it prints when it expires and
 * changes nothing (exit 0), without reading the CA. Due: the certificate
 * must have been issued by the CA in DIR (else exit 3, refused); the new
 * one has the old subject and subjectAltName (copied as they are), a new
 * random serial, the leaf extensions above, --days (825 by default) from
 * now, and the same key — the key file, which must match the old
 * certificate, or without one (another member's certificate renewed on the
 * CA host) the old certificate's public key — or with
 * --new-key a new one, put in place before the certificate. Replaced files
 * keep their owner (unless --owner); the certificate is written 0644, the
 * key 0600. The daemons load their
 * certificate when they start, not on SIGHUP: the output says to restart them.
 *
 * Arguments: ID is 1-64 and NAME 1-32 characters of [A-Za-z0-9._-], not
 * starting with '.' or '-'; --ip is a numeric IPv4 or IPv6 address; --dns a
 * host name; --days 1..36500. Keys are unencrypted PKCS#8 PEM. Files are
 * written to a temporary name in the same directory, fsynced and renamed.
 */
#ifndef MFA_APPLIANCE_PKI_H
#define MFA_APPLIANCE_PKI_H

/*
 * Runs `pki <argv[1]> ...` (argv[0] is "pki"). Prints what it wrote on
 * stdout and errors on stderr. Returns the exit code: 0 done (or, for
 * renew, not due), 1 failed, 2 bad usage, 3 refused (renew: the certificate
 * is not from this CA; nothing was changed).
 */
int pki_main(int argc, char **argv);

#endif
