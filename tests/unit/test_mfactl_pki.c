/*
 * `mfactl pki`: init makes a CA, issue a leaf it signs; the files are loaded
 * back with OpenSSL and checked as a TLS peer would (chain, purposes, names,
 * key match), plus modes, ownership, the --force guard on ca.key, reissue,
 * and the exit codes of bad usage (2) and failure (1). renew: a due
 * certificate keeps its subject, names and key; one not due is left as it
 * was (same bytes, same inode); --force, --new-key, and the refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki.h"

#define OUT_MAX 8192

struct tmp {
    char dir[64];
};

/* What one pki_main() call returned and printed. */
struct run {
    int rc;
    char out[OUT_MAX];
    char err[OUT_MAX];
};

static int setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    strcpy(t->dir, "/tmp/mfa-pki-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    umask(022);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tmp *t = *state;
    char cmd[160];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        return -1;
    free(t);
    return 0;
}

static void slurp(FILE *f, char *buf, size_t size)
{
    size_t n;

    rewind(f);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/*
 * Runs pki_main() on "pki" and the NULL-terminated arguments, with stdout
 * and stderr captured into <r>.
 */
static void run(struct run *r, ...)
{
    char *argv[40];
    int argc = 0, saved_out, saved_err;
    FILE *out = tmpfile(), *err = tmpfile();
    const char *a;
    va_list ap;

    assert_non_null(out);
    assert_non_null(err);
    argv[argc++] = strdup("pki");
    va_start(ap, r);
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < 39);
        argv[argc++] = strdup(a);
    }
    va_end(ap);
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    assert_true(saved_out >= 0 && saved_err >= 0);
    assert_true(dup2(fileno(out), STDOUT_FILENO) >= 0);
    assert_true(dup2(fileno(err), STDERR_FILENO) >= 0);
    r->rc = pki_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);

    for (int i = 0; i < argc; i++)
        free(argv[i]);
    slurp(out, r->out, sizeof(r->out));
    slurp(err, r->err, sizeof(r->err));
}

static void path_of(char *buf, size_t size, const struct tmp *t, const char *name)
{
    snprintf(buf, size, "%s/%s", t->dir, name);
}

static X509 *load_cert(const struct tmp *t, const char *name)
{
    char path[256];
    FILE *f;
    X509 *x;

    path_of(path, sizeof(path), t, name);
    f = fopen(path, "r");
    assert_non_null(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *load_key(const struct tmp *t, const char *name)
{
    char path[256], line[64] = "";
    FILE *f;
    EVP_PKEY *k;

    path_of(path, sizeof(path), t, name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "-----BEGIN PRIVATE KEY-----\n"); /* PKCS#8, unencrypted */
    rewind(f);
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static unsigned mode_of(const struct tmp *t, const char *name)
{
    char path[256];
    struct stat st;

    path_of(path, sizeof(path), t, name);
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

static bool file_exists(const struct tmp *t, const char *name)
{
    char path[256];
    struct stat st;

    path_of(path, sizeof(path), t, name);
    return lstat(path, &st) == 0;
}

/* The whole of file <name> in <buf> (NUL-terminated). */
static void read_all(const struct tmp *t, const char *name, char *buf, size_t size)
{
    char path[256];
    FILE *f;

    path_of(path, sizeof(path), t, name);
    f = fopen(path, "r");
    assert_non_null(f);
    slurp(f, buf, size);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* X509_verify_cert() of <leaf> against <ca> alone, for <purpose>. Returns its result. */
static int verify(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void assert_cn(X509 *x, const char *want)
{
    char cn[128] = "";

    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, want);
}

/*
 * Returns how many subjectAltName entries <x> has; sets *ip_found when the
 * address <ip> (<iplen> bytes) is among them, *dns_found when the DNS name <dns> is.
 */
static int san_check(X509 *x, const unsigned char *ip, int iplen, const char *dns, bool *ip_found,
                     bool *dns_found)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n;

    assert_non_null(gens);
    n = sk_GENERAL_NAME_num(gens);
    *ip_found = *dns_found = false;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

        if (g->type == GEN_IPADD && ip != NULL && ASN1_STRING_length(g->d.iPAddress) == iplen &&
            memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, (size_t)iplen) == 0)
            *ip_found = true;
        if (g->type == GEN_DNS && dns != NULL &&
            (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(dns) &&
            memcmp(ASN1_STRING_get0_data(g->d.dNSName), dns, strlen(dns)) == 0)
            *dns_found = true;
    }
    GENERAL_NAMES_free(gens);
    return n;
}

static int days_left(X509 *x)
{
    int day = 0, sec = 0;

    assert_int_equal(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x)), 1);
    return day;
}

static void init_ca(const struct tmp *t)
{
    struct run r;

    run(&r, "init", "--dir", t->dir, "--cluster", "test", NULL);
    assert_int_equal(r.rc, 0);
}

static void test_init_and_issue(void **state)
{
    struct tmp *t = *state;
    static const unsigned char lo[4] = { 127, 0, 0, 1 };
    char want[256], group[64] = "";
    struct run r;
    X509 *ca, *leaf;
    EVP_PKEY *cakey, *key;
    bool ip_found, dns_found;
    uint32_t kusage;

    run(&r, "init", "--dir", t->dir, "--cluster", "test", NULL);
    assert_int_equal(r.rc, 0);
    snprintf(want, sizeof(want), "wrote %s/ca.key\nwrote %s/ca.crt\n", t->dir, t->dir);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");

    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 0);
    snprintf(want, sizeof(want), "wrote %s/n1.key\nwrote %s/n1.crt\n", t->dir, t->dir);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    assert_null(strstr(r.out, "PRIVATE"));

    /* exactly the four files: no temporaries left behind */
    assert_int_equal(count_entries(t->dir), 4);
    assert_int_equal(mode_of(t, "ca.key"), 0600);
    assert_int_equal(mode_of(t, "n1.key"), 0600);
    assert_int_equal(mode_of(t, "ca.crt"), 0644);
    assert_int_equal(mode_of(t, "n1.crt"), 0644);

    ca = load_cert(t, "ca.crt");
    cakey = load_key(t, "ca.key");
    leaf = load_cert(t, "n1.crt");
    key = load_key(t, "n1.key");

    /* the CA: self-signed, CA:true critical, keyCertSign|cRLSign, its key */
    assert_cn(ca, "test cluster CA");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_get_ext_by_critical(ca, 1, -1) >= 0, 1);
    assert_int_equal(X509_get_extension_flags(ca) & EXFLAG_SS, EXFLAG_SS);
    kusage = X509_get_key_usage(ca);
    assert_int_equal(kusage & (KU_KEY_CERT_SIGN | KU_CRL_SIGN), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_check_private_key(ca, cakey), 1);
    assert_int_equal(days_left(ca) >= 3649 && days_left(ca) <= 3650, 1);
    {
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);

        assert_non_null(bc);
        assert_true(bc->ca);
        assert_int_equal(crit, 1);
        BASIC_CONSTRAINTS_free(bc);
    }

    /* the leaf: chains to the CA for both TLS purposes */
    assert_int_equal(verify(ca, leaf, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify(ca, leaf, X509_PURPOSE_SSL_CLIENT), 1);
    assert_int_equal(X509_verify(leaf, cakey), 1);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca)), 0);
    assert_cn(leaf, "n1");
    assert_int_equal(san_check(leaf, lo, 4, "n1", &ip_found, &dns_found), 2);
    assert_true(ip_found);
    assert_true(dns_found);
    assert_int_equal(X509_get_extended_key_usage(leaf) & (XKU_SSL_SERVER | XKU_SSL_CLIENT),
                     XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(X509_check_ca(leaf), 0);
    assert_int_equal(X509_get_extension_flags(leaf) & (EXFLAG_BCONS | EXFLAG_CA), EXFLAG_BCONS);
    assert_int_equal(X509_check_private_key(leaf, key), 1);
    assert_int_equal(X509_check_private_key(leaf, cakey), 0);
    assert_int_equal(days_left(leaf) >= 824 && days_left(leaf) <= 825, 1);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf), X509_get0_serialNumber(ca)),
                         0);

    /* EC P-256 keys */
    assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), NULL), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(EVP_PKEY_get_base_id(cakey), EVP_PKEY_EC);

    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(key);
}

static void test_init_force(void **state)
{
    struct tmp *t = *state;
    char before[4096], after[4096];
    struct run r;
    X509 *ca, *leaf;

    init_ca(t);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "10.0.0.1", NULL);
    assert_int_equal(r.rc, 0);
    read_all(t, "ca.key", before, sizeof(before));

    /* an existing ca.key is kept */
    run(&r, "init", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "mfactl pki: "));
    assert_non_null(strstr(r.err, "already exists"));
    assert_non_null(strstr(r.err, "--force"));
    read_all(t, "ca.key", after, sizeof(after));
    assert_string_equal(before, after);
    assert_int_equal(count_entries(t->dir), 4);

    /* --force replaces it: the old leaf no longer chains */
    run(&r, "init", "--dir", t->dir, "--force", NULL);
    assert_int_equal(r.rc, 0);
    read_all(t, "ca.key", after, sizeof(after));
    assert_string_not_equal(before, after);
    assert_int_equal(mode_of(t, "ca.key"), 0600);
    ca = load_cert(t, "ca.crt");
    leaf = load_cert(t, "n1.crt");
    assert_cn(ca, "mfa cluster CA");
    assert_int_not_equal(verify(ca, leaf, X509_PURPOSE_SSL_SERVER), 1);
    X509_free(ca);
    X509_free(leaf);
    assert_int_equal(count_entries(t->dir), 4);
}

static void test_usage(void **state)
{
    struct tmp *t = *state;
    char sub[256];
    struct run r;
    static const char *const bad_ips[] = { "localhost", "10.0.0", "::1%lo", "", "1.2.3.4/24" };

    init_ca(t);

    run(&r, "bogus", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "mfactl pki: unknown subcommand 'bogus'"));
    assert_non_null(strstr(r.err, "usage:"));
    run(&r, NULL);
    assert_int_equal(r.rc, 2);

    run(&r, "issue", "--dir", t->dir, "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--name"));
    for (size_t i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
        run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", bad_ips[i], NULL);
        assert_int_equal(r.rc, 2);
        assert_non_null(strstr(r.err, "--ip"));
    }
    run(&r, "issue", "--dir", t->dir, "--name", "n1", NULL); /* no --ip nor --dns */
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n/1", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "..", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--dns", "bad_host", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--dns", "10.0.0.1", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", "--force", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", "extra", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--ip needs a value"));

    run(&r, "init", "--dir", t->dir, "--days", "0", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--days"));
    run(&r, "init", "--dir", t->dir, "--days", "36501", "--force", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "init", "--dir", t->dir, "--days", "10x", "--force", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", "--days", "-5", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "init", "--force", NULL); /* no --dir */
    assert_int_equal(r.rc, 2);
    run(&r, "init", "--dir", t->dir, "--cluster", "a b", "--force", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "init", "--dir", t->dir, "--bogus", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--bogus"));

    /* nothing was written by any of them */
    assert_int_equal(count_entries(t->dir), 2);
    snprintf(sub, sizeof(sub), "%s/x", t->dir);
    run(&r, "init", "--dir", sub, "--days", "0", NULL);
    assert_int_equal(r.rc, 2);
    assert_false(file_exists(t, "x"));

    run(&r, "help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage:"));
}

static void test_issue_without_ca(void **state)
{
    struct tmp *t = *state;
    char path[256];
    struct run r;

    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "mfactl pki: no CA in"));
    assert_non_null(strstr(r.err, "pki init"));
    assert_int_equal(count_entries(t->dir), 0);

    /* a CA certificate without its key is no CA either */
    init_ca(t);
    path_of(path, sizeof(path), t, "ca.key");
    assert_int_equal(unlink(path), 0);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "ca.key"));
    assert_false(file_exists(t, "n1.key"));
}

static void test_issue_options(void **state)
{
    struct tmp *t = *state;
    static const unsigned char v6[16] = { [15] = 1 };
    char prefix[128], path[256], before[4096], after[4096], want[512];
    /* as root, a user other than us, so that the chown is seen */
    struct passwd *pw = geteuid() == 0 ? getpwnam("nobody") : getpwuid(geteuid());
    struct run r;
    struct stat st;
    X509 *ca, *leaf;
    bool ip_found, dns_found;

    assert_non_null(pw);
    init_ca(t);
    snprintf(prefix, sizeof(prefix), "%s/tls/sub/node", t->dir);
    run(&r, "issue", "--dir", t->dir, "--name", "admin", "--ip", "::1", "--dns",
        "admin.example.org", "--out", prefix, "--days", "30", "--owner", pw->pw_name, NULL);
    assert_int_equal(r.rc, 0);
    snprintf(want, sizeof(want), "wrote %s.key\nwrote %s.crt\n", prefix, prefix);
    assert_string_equal(r.out, want);
    assert_int_equal(mode_of(t, "tls/sub/node.key"), 0600);
    assert_int_equal(mode_of(t, "tls"), 0755);
    snprintf(path, sizeof(path), "%s.key", prefix);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, pw->pw_uid);
    assert_int_equal(st.st_gid, pw->pw_gid);

    ca = load_cert(t, "ca.crt");
    leaf = load_cert(t, "tls/sub/node.crt");
    assert_cn(leaf, "admin");
    assert_int_equal(verify(ca, leaf, X509_PURPOSE_SSL_CLIENT), 1);
    assert_int_equal(san_check(leaf, v6, 16, "admin.example.org", &ip_found, &dns_found), 3);
    assert_true(ip_found);
    assert_true(dns_found);
    assert_int_equal(san_check(leaf, NULL, 0, "admin", &ip_found, &dns_found), 3);
    assert_true(dns_found);
    assert_int_equal(days_left(leaf) >= 29 && days_left(leaf) <= 30, 1);
    X509_free(leaf);

    /* reissue replaces the key */
    read_all(t, "tls/sub/node.key", before, sizeof(before));
    run(&r, "issue", "--dir", t->dir, "--name", "admin", "--dns", "admin", "--out", prefix, NULL);
    assert_int_equal(r.rc, 0);
    read_all(t, "tls/sub/node.key", after, sizeof(after));
    assert_string_not_equal(before, after);
    leaf = load_cert(t, "tls/sub/node.crt");
    assert_int_equal(verify(ca, leaf, X509_PURPOSE_SSL_SERVER), 1);
    /* the ID is not repeated when it is a --dns already */
    assert_int_equal(san_check(leaf, NULL, 0, "admin", &ip_found, &dns_found), 1);
    assert_true(dns_found);
    X509_free(leaf);
    X509_free(ca);
    path_of(path, sizeof(path), t, "tls/sub");
    assert_int_equal(count_entries(path), 2);

    /* an unknown owner fails before anything is written */
    run(&r, "issue", "--dir", t->dir, "--name", "n2", "--ip", "127.0.0.1", "--owner",
        "no-such-user-mfa-test", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "no-such-user-mfa-test"));
    assert_false(file_exists(t, "n2.key"));
}

static void test_issue_refuses_ca_files(void **state)
{
    struct tmp *t = *state;
    char before[4096], after[4096];
    struct run r;

    init_ca(t);
    read_all(t, "ca.key", before, sizeof(before));
    run(&r, "issue", "--dir", t->dir, "--name", "ca", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "CA's"));
    read_all(t, "ca.key", after, sizeof(after));
    assert_string_equal(before, after);
    assert_int_equal(count_entries(t->dir), 2);
}

static void test_leaf_outliving_ca_warns(void **state)
{
    struct tmp *t = *state;
    struct run r;

    run(&r, "init", "--dir", t->dir, "--days", "10", NULL);
    assert_int_equal(r.rc, 0);
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.err, "warning"));
    run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "127.0.0.1", "--days", "5", NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
}

/* The bytes and inode of file <name>: a file put in place by rename has a new inode. */
struct snap {
    char data[4096];
    ino_t ino;
};

static void snap_of(const struct tmp *t, const char *name, struct snap *s)
{
    char path[256];
    struct stat st;

    path_of(path, sizeof(path), t, name);
    assert_int_equal(stat(path, &st), 0);
    s->ino = st.st_ino;
    read_all(t, name, s->data, sizeof(s->data));
}

static bool snap_same(const struct tmp *t, const char *name, const struct snap *before)
{
    struct snap now;

    snap_of(t, name, &now);
    return now.ino == before->ino && strcmp(now.data, before->data) == 0;
}

/* The DER bytes of <x>'s subjectAltName extension value, for comparing two certificates. */
static void san_der(X509 *x, const unsigned char **data, int *len)
{
    int i = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    const ASN1_OCTET_STRING *v;

    assert_true(i >= 0);
    v = X509_EXTENSION_get_data(X509_get_ext(x, i));
    *data = ASN1_STRING_get0_data(v);
    *len = ASN1_STRING_length(v);
}

/* Asserts that <after> renews <before>: same subject and names, a new serial, signed by <ca>. */
static void assert_renewal(X509 *before, X509 *after, X509 *ca)
{
    const unsigned char *d1, *d2;
    int l1, l2;

    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(before), X509_get_subject_name(after)), 0);
    san_der(before, &d1, &l1);
    san_der(after, &d2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(d1, d2, (size_t)l1);
    assert_int_not_equal(
        ASN1_INTEGER_cmp(X509_get0_serialNumber(before), X509_get0_serialNumber(after)), 0);
    /* later, or the same second when both were made within one */
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(after), X509_get0_notAfter(before)) >= 0);
    assert_int_equal(verify(ca, after, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify(ca, after, X509_PURPOSE_SSL_CLIENT), 1);
    assert_int_equal(X509_get_extended_key_usage(after) & (XKU_SSL_SERVER | XKU_SSL_CLIENT),
                     XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(X509_check_ca(after), 0);
}

/* Issues DIR/member.{crt,key} for n1 valid <days>. */
static void issue_member_days(const struct tmp *t, const char *days)
{
    char prefix[128];
    struct run r;

    snprintf(prefix, sizeof(prefix), "%s/member", t->dir);
    if (days != NULL)
        run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "10.0.0.1", "--dns",
            "m.example.org", "--out", prefix, "--days", days, NULL);
    else
        run(&r, "issue", "--dir", t->dir, "--name", "n1", "--ip", "10.0.0.1", "--dns",
            "m.example.org", "--out", prefix, NULL);
    assert_int_equal(r.rc, 0);
}

static void test_renew_due(void **state)
{
    struct tmp *t = *state;
    char want[256];
    struct snap key_before;
    struct run r;
    X509 *ca, *before, *after;
    EVP_PKEY *key;

    init_ca(t);
    issue_member_days(t, "10");
    before = load_cert(t, "member.crt");
    snap_of(t, "member.key", &key_before);

    /* this member's certificate by default, due within the default 30 days */
    run(&r, "renew", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    snprintf(want, sizeof(want), "wrote %s/member.crt\nrenewed %s/member.crt: valid until ", t->dir,
             t->dir);
    assert_memory_equal(r.out, want, strlen(want));
    assert_non_null(strstr(r.out, "same key"));
    assert_non_null(strstr(r.out, "systemctl restart mfa-replicator mfa-node mfa-balancer"));
    assert_null(strstr(r.out, "PRIVATE"));

    ca = load_cert(t, "ca.crt");
    after = load_cert(t, "member.crt");
    key = load_key(t, "member.key");
    assert_renewal(before, after, ca);
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(after), X509_get0_notAfter(before)) > 0);
    assert_cn(after, "n1");
    assert_int_equal(days_left(after) >= 824 && days_left(after) <= 825, 1);
    /* the key is kept, untouched */
    assert_true(snap_same(t, "member.key", &key_before));
    assert_int_equal(X509_check_private_key(after, key), 1);
    assert_int_equal(mode_of(t, "member.crt"), 0644);
    assert_int_equal(mode_of(t, "member.key"), 0600);
    assert_int_equal(count_entries(t->dir), 4);
    X509_free(before);
    X509_free(after);
    X509_free(ca);
    EVP_PKEY_free(key);

    /* now it is not due: nothing more happens */
    run(&r, "renew", "--dir", t->dir, "--days", "20", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "not renewed"));
}

static void test_renew_not_due(void **state)
{
    struct tmp *t = *state;
    struct snap crt_before, key_before;
    struct run r;
    X509 *ca, *before, *after;

    init_ca(t);
    issue_member_days(t, NULL); /* 825 days */
    snap_of(t, "member.crt", &crt_before);
    snap_of(t, "member.key", &key_before);

    run(&r, "renew", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "not renewed"));
    assert_non_null(strstr(r.out, "not within 30 days"));
    assert_null(strstr(r.out, "wrote"));
    assert_true(snap_same(t, "member.crt", &crt_before));
    assert_true(snap_same(t, "member.key", &key_before));
    run(&r, "renew", "--dir", t->dir, "--within", "800", NULL);
    assert_int_equal(r.rc, 0);
    assert_true(snap_same(t, "member.crt", &crt_before));
    assert_int_equal(count_entries(t->dir), 4);

    /* a larger threshold makes it due */
    before = load_cert(t, "member.crt");
    run(&r, "renew", "--dir", t->dir, "--within", "900", "--days", "100", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "renewed"));
    ca = load_cert(t, "ca.crt");
    after = load_cert(t, "member.crt");
    assert_int_equal(days_left(after) >= 99 && days_left(after) <= 100, 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(before), X509_get_subject_name(after)), 0);
    assert_int_equal(verify(ca, after, X509_PURPOSE_SSL_SERVER), 1);
    assert_true(snap_same(t, "member.key", &key_before));
    X509_free(before);
    X509_free(after);
    X509_free(ca);
}

static void test_renew_force_and_new_key(void **state)
{
    struct tmp *t = *state;
    struct snap key_before;
    struct run r;
    X509 *ca, *before, *after;
    EVP_PKEY *oldkey, *key;

    init_ca(t);
    run(&r, "issue", "--dir", t->dir, "--name", "n2", "--ip", "::1", NULL);
    assert_int_equal(r.rc, 0);
    ca = load_cert(t, "ca.crt");

    /* --force renews one not due; --name picks DIR/<ID> as issue does */
    before = load_cert(t, "n2.crt");
    snap_of(t, "n2.key", &key_before);
    run(&r, "renew", "--dir", t->dir, "--name", "n2", "--force", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "renewed"));
    after = load_cert(t, "n2.crt");
    assert_renewal(before, after, ca);
    assert_true(snap_same(t, "n2.key", &key_before));
    X509_free(before);
    before = after;

    /* --new-key: a new key, in place first, that matches the new certificate */
    oldkey = load_key(t, "n2.key");
    run(&r, "renew", "--dir", t->dir, "--name", "n2", "--force", "--new-key", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "wrote"));
    assert_non_null(strstr(r.out, "with a new key"));
    assert_true(strstr(r.out, "n2.key") < strstr(r.out, "n2.crt"));
    assert_false(snap_same(t, "n2.key", &key_before));
    key = load_key(t, "n2.key");
    after = load_cert(t, "n2.crt");
    assert_int_not_equal(EVP_PKEY_eq(key, oldkey), 1);
    assert_int_equal(X509_check_private_key(after, key), 1);
    assert_int_equal(X509_check_private_key(after, oldkey), 0);
    assert_int_equal(mode_of(t, "n2.key"), 0600);
    assert_renewal(before, after, ca);
    assert_int_equal(count_entries(t->dir), 4);
    X509_free(before);
    X509_free(after);
    X509_free(ca);
    EVP_PKEY_free(oldkey);
    EVP_PKEY_free(key);
}

/* On the CA host without the member's key: the certificate's public key is kept. */
static void test_renew_without_the_key(void **state)
{
    struct tmp *t = *state;
    char from[600], to[600];
    struct run r;
    X509 *ca, *before, *after;
    EVP_PKEY *key;

    init_ca(t);
    run(&r, "issue", "--dir", t->dir, "--name", "n3", "--ip", "127.0.0.3", NULL);
    assert_int_equal(r.rc, 0);
    snprintf(from, sizeof(from), "%s/n3.key", t->dir);
    snprintf(to, sizeof(to), "%s/n3.key.elsewhere", t->dir);
    assert_int_equal(rename(from, to), 0);
    before = load_cert(t, "n3.crt");
    run(&r, "renew", "--dir", t->dir, "--name", "n3", "--force", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "same key"));
    ca = load_cert(t, "ca.crt");
    after = load_cert(t, "n3.crt");
    key = load_key(t, "n3.key.elsewhere");
    assert_renewal(before, after, ca);
    assert_int_equal(X509_check_private_key(after, key), 1);
    assert_int_equal(access(from, F_OK), -1); /* no key was made */
    X509_free(before);
    X509_free(after);
    X509_free(ca);
    EVP_PKEY_free(key);
}

static void test_renew_refusals(void **state)
{
    struct tmp *t = *state;
    char other[128], prefix[160], path[256];
    struct snap crt_before, key_before;
    struct run r;

    init_ca(t);
    /*
     * a certificate from another CA of the same name (two clusters both
     * called "test"): the issuer names match, the signature must not
     */
    snprintf(other, sizeof(other), "%s/other", t->dir);
    run(&r, "init", "--dir", other, "--cluster", "test", NULL);
    assert_int_equal(r.rc, 0);
    snprintf(prefix, sizeof(prefix), "%s/member", other);
    run(&r, "issue", "--dir", other, "--name", "n1", "--ip", "10.0.0.1", "--out", prefix, "--days",
        "5", NULL);
    assert_int_equal(r.rc, 0);
    snap_of(t, "other/member.crt", &crt_before);
    snap_of(t, "other/member.key", &key_before);
    run(&r, "renew", "--dir", t->dir, "--out", prefix, NULL);
    assert_int_equal(r.rc, 3);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "mfactl pki: "));
    assert_non_null(strstr(r.err, "not issued by the CA"));
    assert_true(snap_same(t, "other/member.crt", &crt_before));
    assert_true(snap_same(t, "other/member.key", &key_before));
    path_of(path, sizeof(path), t, "other");
    assert_int_equal(count_entries(path), 4);

    /* no certificate to renew */
    run(&r, "renew", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "member.crt does not exist"));
    assert_non_null(strstr(r.err, "pki issue"));

    /* not a certificate */
    issue_member_days(t, "5");
    path_of(path, sizeof(path), t, "junk.crt");
    {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs("not a certificate\n", f);
        fclose(f);
    }
    run(&r, "renew", "--dir", t->dir, "--name", "junk", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "junk.crt"));

    /* a key that is not the certificate's */
    snap_of(t, "member.crt", &crt_before);
    run(&r, "issue", "--dir", t->dir, "--name", "n9", "--ip", "10.0.0.9", NULL);
    assert_int_equal(r.rc, 0);
    {
        char from[256], to[256];

        path_of(from, sizeof(from), t, "n9.key");
        path_of(to, sizeof(to), t, "member.key");
        assert_int_equal(rename(from, to), 0);
    }
    run(&r, "renew", "--dir", t->dir, NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "is not the key of"));
    assert_non_null(strstr(r.err, "--new-key"));
    assert_true(snap_same(t, "member.crt", &crt_before));

    /* no CA key here: a member without ca.key cannot renew */
    path_of(path, sizeof(path), t, "ca.key");
    assert_int_equal(unlink(path), 0);
    run(&r, "renew", "--dir", t->dir, "--new-key", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "ca.key"));
    assert_true(snap_same(t, "member.crt", &crt_before));

    /* the CA's own files are never a target */
    run(&r, "renew", "--dir", t->dir, "--name", "ca", "--force", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "CA's"));

    /* usage */
    run(&r, "renew", "--dir", t->dir, "--name", "n1", "--out", prefix, NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "renew", "--dir", t->dir, "--within", "0", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--within"));
    run(&r, "renew", "--dir", t->dir, "--ip", "10.0.0.1", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "renew", "--new-key", NULL);
    assert_int_equal(r.rc, 2);
    run(&r, "renew", "--dir", t->dir, "--name", "../x", NULL);
    assert_int_equal(r.rc, 2);
    assert_true(snap_same(t, "member.crt", &crt_before));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_and_issue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_without_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_refuses_ca_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_outliving_ca_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_not_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_force_and_new_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_without_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_refusals, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
