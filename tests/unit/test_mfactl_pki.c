/*
 * `mfactl pki`: init makes a CA, issue a leaf it signs; the files are loaded
 * back with OpenSSL and checked as a TLS peer would (chain, purposes, names,
 * key match), plus modes, ownership, the --force guard on ca.key, reissue,
 * and the exit codes of bad usage (2) and failure (1).
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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
