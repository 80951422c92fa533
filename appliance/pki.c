/*
 * The cluster's PKI (`mfactl pki init|issue|renew`); see pki.h for what is made.
 *
 * Everything is done in-process with OpenSSL 3, never by running the
 * `openssl` command: EC P-256 keys from EVP_PKEY_Q_keygen(), certificates
 * built with the X509 API and signed ECDSA-with-SHA256. The subjectAltName is
 * built as GENERAL_NAMEs, not from an OpenSSL config string, so no argument
 * can smuggle in another name.
 *
 * Files: each is written to a mkostemp() name beside its final path (same
 * directory, so the rename is atomic), given its mode (0600 keys, 0644
 * certificates) and owner through the descriptor, fsynced, and only then
 * put in place; the directory is fsynced after. Both files of a pair are
 * complete on disk before either is put in place, the key first. Without
 * --force, ca.key is put in place with link(2), which fails on an existing
 * name, so even a concurrent init cannot replace a CA key.
 *
 * Key material: private keys are PEM-encoded (PKCS#8, unencrypted) into a
 * secure-memory BIO, which wipes its buffer when freed; the CA key is read
 * with read(2) into a buffer wiped after parsing, so no key bytes are left
 * in stdio buffers. Nothing prints key material: stdout gets one
 * "wrote PATH" line per file put in place, stderr the errors.
 */
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "errmsg.h"
#include "fsutil.h"
#include "mem.h"

#define PKI_OK      0
#define PKI_FAILED  1
#define PKI_USAGE   2
#define PKI_REFUSED 3 /* mfactl's "refused, nothing was changed" */

#define PKI_NAME_MAX      64 /* --name: also the CN, ub-common-name (RFC 5280 App. A) */
#define PKI_CLUSTER_MAX   32 /* --cluster: "<NAME> cluster CA" must fit in 64 */
#define PKI_SAN_MAX       32 /* --ip and --dns, each */
#define PKI_DAYS_MAX      36500
#define PKI_CA_DAYS       3650
#define PKI_LEAF_DAYS     825
#define PKI_WITHIN_DAYS   30   /* renew: due when it expires within this many days */
#define PKI_BACKDATE_SECS 3600 /* notBefore an hour back: members' clocks differ */
#define PKI_SERIAL_BITS   128
#define PKI_FILE_MAX      65536 /* a PEM file we read */
#define PKI_CLUSTER_DEF   "mfa"
#define PKI_MEMBER_DEF    "member" /* renew: DIR/member.crt, appliance.tls.cert's default name */

static const char pki_usage_text[] =
    "usage: mfactl pki init  --dir DIR [--cluster NAME] [--days N] [--force]\n"
    "       mfactl pki issue --dir DIR --name ID [--ip ADDR]... [--dns NAME]...\n"
    "                        [--out PREFIX] [--days N] [--owner USER]\n"
    "       mfactl pki renew --dir DIR [--name ID | --out PREFIX] [--within DAYS]\n"
    "                        [--force] [--new-key] [--days N] [--owner USER]\n"
    "renew: DIR/member.crt unless --name or --out says otherwise; only when it\n"
    "expires within DAYS (30) or with --force; same names, same key unless\n"
    "--new-key; then restart the daemons (a reload does not load certificates)\n";

/* What the command line asked for; the strings point into argv. */
struct pki_args {
    const char *dir;
    const char *cluster;
    const char *name;
    const char *out;
    const char *owner;
    const char *ip[PKI_SAN_MAX];
    const char *dns[PKI_SAN_MAX];
    size_t nip, ndns;
    long days;   /* 0: the subcommand's default */
    long within; /* renew --within; 0: PKI_WITHIN_DAYS */
    bool force;
    bool new_key;
    bool help;
};

struct pki_owner {
    bool set;
    uid_t uid;
    gid_t gid;
};

/* One file to write: its final path and, until it is in place, its temporary name. */
struct pki_out {
    char *path;
    char *tmp;
    mode_t mode;
};

static const struct option pki_init_opts[] = {
    { "dir", required_argument, NULL, 'd' },  { "cluster", required_argument, NULL, 'c' },
    { "days", required_argument, NULL, 'D' }, { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
};

static const struct option pki_issue_opts[] = {
    { "dir", required_argument, NULL, 'd' },
    { "name", required_argument, NULL, 'n' },
    { "ip", required_argument, NULL, 'i' },
    { "dns", required_argument, NULL, 's' },
    { "out", required_argument, NULL, 'o' },
    { "days", required_argument, NULL, 'D' },
    { "owner", required_argument, NULL, 'u' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct option pki_renew_opts[] = {
    { "dir", required_argument, NULL, 'd' },    { "name", required_argument, NULL, 'n' },
    { "out", required_argument, NULL, 'o' },    { "days", required_argument, NULL, 'D' },
    { "within", required_argument, NULL, 'w' }, { "force", no_argument, NULL, 'f' },
    { "new-key", no_argument, NULL, 'k' },      { "owner", required_argument, NULL, 'u' },
    { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
};

/* ---- messages ---- */

static int pki_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "mfactl pki: <message>" and the usage on stderr. Returns PKI_USAGE. */
static int pki_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("mfactl pki: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(pki_usage_text, stderr);
    return PKI_USAGE;
}

/* Prints *err (then frees it) as "mfactl pki: <err>". Returns PKI_FAILED. */
static int pki_fail(char **err)
{
    fprintf(stderr, "mfactl pki: %s\n", *err != NULL ? *err : "failed");
    mfa_free(*err);
    return PKI_FAILED;
}

static int pki_ossl_fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Sets *err to the formatted text followed by the reason of OpenSSL's last
 * error, and clears OpenSSL's error queue. Returns -1.
 */
static int pki_ossl_fail(char **err, const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    char *what = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    ERR_clear_error();
    err_set(err, "%s%s%s", what != NULL ? what : "OpenSSL failed", reason != NULL ? ": " : "",
            reason != NULL ? reason : "");
    free(what);
    return -1;
}

/* ---- argument checks ---- */

/* Parses a numeric IPv4 or IPv6 address into <buf>. Returns its length (4 or 16), or 0. */
static int pki_parse_ip(const char *s, unsigned char buf[16])
{
    if (inet_pton(AF_INET, s, buf) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, buf) == 1)
        return 16;
    return 0;
}

/* True for 1 to <max> characters of [A-Za-z0-9._-], not starting with '.' or '-'. */
static bool pki_valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", s[i]) ==
            NULL)
            return false;
    return true;
}

/*
 * True for a host name (RFC 1123 §2.1): at most 253 characters, dot-separated
 * labels of 1 to 63 letters, digits and hyphens, no hyphen at a label's ends.
 */
static bool pki_valid_dns(const char *s)
{
    size_t n = strlen(s), label = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];

        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* Parses --days: a decimal 1..PKI_DAYS_MAX. Returns 0, or -1. */
static int pki_parse_days(const char *s, long *days)
{
    char *end;
    long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > PKI_DAYS_MAX)
        return -1;
    *days = v;
    return 0;
}

/*
 * Parses the options after the subcommand (argv[0] is the subcommand) with
 * <opts> into <a>. Returns 0, or PKI_USAGE after printing why.
 */
static int pki_parse_args(int argc, char **argv, const struct option *opts, struct pki_args *a)
{
    unsigned char ip[16];
    int c;

    optind = 0; /* glibc: start afresh, pki_main() may run more than once */
    opterr = 0; /* we print our own messages */
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "?";

        switch (c) {
        case 'd':
            a->dir = optarg;
            break;
        case 'c':
            a->cluster = optarg;
            break;
        case 'D':
            if (pki_parse_days(optarg, &a->days) < 0)
                return pki_usage("--days %s: must be a whole number of days from 1 to %d", optarg,
                                 PKI_DAYS_MAX);
            break;
        case 'w':
            if (pki_parse_days(optarg, &a->within) < 0)
                return pki_usage("--within %s: must be a whole number of days from 1 to %d", optarg,
                                 PKI_DAYS_MAX);
            break;
        case 'f':
            a->force = true;
            break;
        case 'k':
            a->new_key = true;
            break;
        case 'n':
            a->name = optarg;
            break;
        case 'i':
            if (pki_parse_ip(optarg, ip) == 0)
                return pki_usage("--ip %s: not a numeric IPv4 or IPv6 address", optarg);
            if (a->nip == PKI_SAN_MAX)
                return pki_usage("at most %d --ip", PKI_SAN_MAX);
            a->ip[a->nip++] = optarg;
            break;
        case 's':
            if (pki_parse_ip(optarg, ip) != 0)
                return pki_usage("--dns %s: that is an address; use --ip", optarg);
            if (!pki_valid_dns(optarg))
                return pki_usage("--dns %s: not a valid host name", optarg);
            if (a->ndns == PKI_SAN_MAX)
                return pki_usage("at most %d --dns", PKI_SAN_MAX);
            a->dns[a->ndns++] = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'u':
            a->owner = optarg;
            break;
        case 'h':
            a->help = true;
            break;
        case ':':
            return pki_usage("%s needs a value", opt);
        default:
            if (strncmp(opt, "--", 2) != 0 && optopt != 0)
                return pki_usage("unknown option -%c for %s", optopt, argv[0]);
            return pki_usage("unknown option or unexpected value '%s' for %s", opt, argv[0]);
        }
    }
    if (optind < argc)
        return pki_usage("unexpected argument '%s'", argv[optind]);
    if (!a->help && (a->dir == NULL || a->dir[0] == '\0'))
        return pki_usage("%s needs --dir DIR", argv[0]);
    return 0;
}

/* ---- files ---- */

/* Creates <dir> and its missing parents with mode 0755 (less the umask). Returns 0, or -1. */
static int pki_make_dirs(const char *dir, char **err)
{
    char *p = strdup(dir);
    struct stat st;
    int rc = 0;

    if (p == NULL)
        return err_set(err, "out of memory");
    for (char *s = p + 1; rc == 0; s++) {
        char c = *s;

        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = err_set(err, "cannot create directory %s: %s", p, strerror(errno));
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (rc == 0 && stat(dir, &st) < 0)
        return err_set(err, "cannot use directory %s: %s", dir, strerror(errno));
    if (rc == 0 && !S_ISDIR(st.st_mode))
        return err_set(err, "%s is not a directory", dir);
    return rc;
}

/*
 * Reads the regular file <path> (at most PKI_FILE_MAX bytes) into *buf, a
 * malloc'd copy the caller wipes and frees, and its length into *len.
 * Returns 0, or -1 (errno kept from a failed open, for the caller's message).
 */
static int pki_read_file(const char *path, char **buf, size_t *len, char **err)
{
    struct stat st;
    char *b = NULL;
    size_t n = 0;
    int fd, saved;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        saved = errno;
        err_set(err, "cannot open %s: %s", path, strerror(errno));
        errno = saved;
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > PKI_FILE_MAX) {
        err_set(err, "%s is not a regular file of at most %d bytes", path, PKI_FILE_MAX);
        goto fail;
    }
    b = malloc(PKI_FILE_MAX + 1);
    if (b == NULL) {
        err_set(err, "out of memory reading %s", path);
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, b + n, PKI_FILE_MAX + 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_set(err, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > PKI_FILE_MAX) {
            err_set(err, "%s is larger than %d bytes", path, PKI_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
fail:
    if (b != NULL)
        OPENSSL_cleanse(b, PKI_FILE_MAX + 1);
    free(b);
    close(fd);
    errno = 0;
    return -1;
}

/* Sets o->path to "<prefix><suffix>". Returns 0, or -1. */
static int pki_out_path(struct pki_out *o, const char *prefix, const char *suffix, mode_t mode,
                        char **err)
{
    o->mode = mode;
    if (asprintf(&o->path, "%s%s", prefix, suffix) < 0) {
        o->path = NULL;
        return err_set(err, "out of memory");
    }
    return 0;
}

/*
 * Writes <len> bytes of <data> to a new temporary file beside o->path, with
 * o->mode and, when own->set, that owner; fsyncs and closes it. Sets o->tmp,
 * which pki_out_discard() removes unless pki_install() put it in place.
 */
static int pki_stage(struct pki_out *o, const char *data, size_t len, const struct pki_owner *own,
                     char **err)
{
    size_t off = 0;
    int fd;

    if (asprintf(&o->tmp, "%s.XXXXXX", o->path) < 0) {
        o->tmp = NULL;
        return err_set(err, "out of memory");
    }
    fd = mkostemp(o->tmp, O_CLOEXEC); /* O_CREAT | O_EXCL, mode 0600 */
    if (fd < 0) {
        err_set(err, "cannot create a temporary file for %s: %s", o->path, strerror(errno));
        mfa_free(o->tmp);
        return -1;
    }
    if (own->set && fchown(fd, own->uid, own->gid) < 0) {
        err_set(err, "cannot give %s to uid %u gid %u: %s", o->path, (unsigned)own->uid,
                (unsigned)own->gid, strerror(errno));
        goto fail;
    }
    if (fchmod(fd, o->mode) < 0) {
        err_set(err, "cannot chmod %s: %s", o->tmp, strerror(errno));
        goto fail;
    }
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            err_set(err, "cannot write %s: %s", o->tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        err_set(err, "cannot fsync %s: %s", o->tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) < 0)
        return err_set(err, "cannot close %s: %s", o->tmp, strerror(errno));
    return 0;
fail:
    close(fd);
    return -1;
}

/*
 * Puts the staged o->tmp in place as o->path: renamed over an existing file
 * when <replace>, else linked, so that an existing o->path is kept and
 * reported. Prints "wrote <path>". Returns 0, or -1.
 */
static int pki_install(struct pki_out *o, bool replace, const char *hint, char **err)
{
    if (replace) {
        if (rename(o->tmp, o->path) < 0)
            return err_set(err, "cannot rename %s to %s: %s", o->tmp, o->path, strerror(errno));
    } else {
        if (link(o->tmp, o->path) < 0) {
            if (errno == EEXIST)
                return err_set(err, "%s already exists%s", o->path, hint);
            return err_set(err, "cannot create %s: %s", o->path, strerror(errno));
        }
        unlink(o->tmp);
    }
    mfa_free(o->tmp);
    printf("wrote %s\n", o->path);
    fflush(stdout);
    return fsutil_fsync_dir(o->path, err);
}

/* Removes a temporary file not put in place and frees <o>'s names. */
static void pki_out_discard(struct pki_out *o)
{
    if (o->tmp != NULL)
        unlink(o->tmp);
    mfa_free(o->tmp);
    mfa_free(o->path);
}

/* ---- keys and certificates ---- */

/* A new EC P-256 key, or NULL. The caller frees it with EVP_PKEY_free(). */
static EVP_PKEY *pki_new_key(char **err)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    if (k == NULL)
        pki_ossl_fail(err, "cannot generate an EC P-256 key");
    return k;
}

/* Writes <pkey> as an unencrypted PKCS#8 PEM to a staged 0600 file <o>. */
static int pki_stage_key(struct pki_out *o, EVP_PKEY *pkey, const struct pki_owner *own, char **err)
{
    BIO *bio = BIO_new(BIO_s_secmem()); /* wiped when freed */
    char *data = NULL;
    long len;
    int rc;

    if (bio == NULL || PEM_write_bio_PKCS8PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &data)) <= 0) {
        BIO_free(bio);
        return pki_ossl_fail(err, "cannot encode the key for %s", o->path);
    }
    rc = pki_stage(o, data, (size_t)len, own, err);
    BIO_free(bio);
    return rc;
}

/* Writes <x> as PEM to a staged 0644 file <o>. */
static int pki_stage_cert(struct pki_out *o, X509 *x, const struct pki_owner *own, char **err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int rc;

    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1 ||
        (len = BIO_get_mem_data(bio, &data)) <= 0) {
        BIO_free(bio);
        return pki_ossl_fail(err, "cannot encode the certificate for %s", o->path);
    }
    rc = pki_stage(o, data, (size_t)len, own, err);
    BIO_free(bio);
    return rc;
}

/* Gives <x> a random positive non-zero serial of up to 128 bits (RFC 5280 §4.1.2.2). */
static int pki_set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int rc = -1;

    if (bn == NULL)
        return -1;
    do {
        if (BN_rand(bn, PKI_SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1)
            goto done;
    } while (BN_is_zero(bn));
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL)
        rc = 0;
done:
    BN_free(bn);
    return rc;
}

/*
 * A new v3 certificate for <pkey> with subject CN=<cn>, a random serial and
 * a validity from an hour ago to <days> from now; no issuer, extensions or
 * signature yet. Returns it (the caller frees it with X509_free()), or NULL.
 */
static X509 *pki_cert_new(EVP_PKEY *pkey, const char *cn, long days, char **err)
{
    X509 *x = X509_new();

    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 || pki_set_serial(x) < 0 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_SECS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL ||
        X509_set_pubkey(x, pkey) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1) {
        pki_ossl_fail(err, "cannot build the certificate for %s", cn);
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Adds the extension <nid> = <value> (OpenSSL's x509v3_config syntax) to <x>, issued by <ca>. */
static int pki_add_ext(X509 *x, X509 *ca, int nid, const char *value, char **err)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return pki_ossl_fail(err, "cannot add %s = %s", OBJ_nid2sn(nid), value);
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return pki_ossl_fail(err, "cannot add %s", OBJ_nid2sn(nid));
    return 0;
}

/* Appends a GEN_IPADD (<data> the address bytes) or GEN_DNS name to <gens>. */
static int pki_push_name(GENERAL_NAMES *gens, int type, const void *data, int len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *s = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();

    if (g == NULL || s == NULL || ASN1_STRING_set(s, data, len) != 1) {
        GENERAL_NAME_free(g);
        ASN1_STRING_free(s);
        return -1;
    }
    GENERAL_NAME_set0_value(g, type, s);
    if (sk_GENERAL_NAME_push(gens, g) <= 0) {
        GENERAL_NAME_free(g);
        return -1;
    }
    return 0;
}

/*
 * Adds the subjectAltName: every --ip, every --dns, and the ID as a DNS name
 * when it is a host name, not an address, and not already among the --dns.
 */
static int pki_add_san(X509 *x, const struct pki_args *a, char **err)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    unsigned char ip[16];
    bool id_dns = pki_parse_ip(a->name, ip) == 0 && pki_valid_dns(a->name);
    int rc = -1;

    if (gens == NULL)
        goto done;
    for (size_t i = 0; i < a->nip; i++) {
        int len = pki_parse_ip(a->ip[i], ip);

        if (len == 0 || pki_push_name(gens, GEN_IPADD, ip, len) < 0)
            goto done;
    }
    for (size_t i = 0; i < a->ndns; i++) {
        if (strcasecmp(a->dns[i], a->name) == 0)
            id_dns = false;
        if (pki_push_name(gens, GEN_DNS, a->dns[i], -1) < 0)
            goto done;
    }
    if (id_dns && pki_push_name(gens, GEN_DNS, a->name, -1) < 0)
        goto done;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        goto done;
    rc = 0;
done:
    GENERAL_NAMES_free(gens);
    if (rc < 0)
        pki_ossl_fail(err, "cannot add the subjectAltName for %s", a->name);
    return rc;
}

/* Signs <x> with <key> and ECDSA-SHA256. */
static int pki_sign(X509 *x, EVP_PKEY *key, const char *what, char **err)
{
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        return pki_ossl_fail(err, "cannot sign the certificate for %s", what);
    return 0;
}

/* The self-signed CA certificate for <pkey>, or NULL. The caller frees it. */
static X509 *pki_make_ca(EVP_PKEY *pkey, const char *cluster, long days, char **err)
{
    char cn[PKI_CLUSTER_MAX + sizeof(" cluster CA")];
    X509 *x;

    snprintf(cn, sizeof(cn), "%s cluster CA", cluster);
    x = pki_cert_new(pkey, cn, days, err);
    if (x == NULL)
        return NULL;
    if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1) {
        pki_ossl_fail(err, "cannot set the CA's issuer");
        goto fail;
    }
    /* only leaves below it: pathlen 0 */
    if (pki_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err) < 0 ||
        pki_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err) < 0 ||
        pki_add_ext(x, x, NID_subject_key_identifier, "hash", err) < 0 ||
        pki_add_ext(x, x, NID_authority_key_identifier, "keyid:always", err) < 0 ||
        pki_sign(x, pkey, cn, err) < 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* Adds what every leaf has: a TLS server and client, no CA, key identifiers. */
static int pki_add_leaf_exts(X509 *x, X509 *ca, char **err)
{
    if (pki_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
        pki_add_ext(x, ca, NID_key_usage, "critical,digitalSignature", err) < 0 ||
        pki_add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth", err) < 0 ||
        pki_add_ext(x, ca, NID_subject_key_identifier, "hash", err) < 0 ||
        pki_add_ext(x, ca, NID_authority_key_identifier, "keyid:always", err) < 0)
        return -1;
    return 0;
}

/* The leaf certificate for <pkey> as <a> asks, signed by <ca>/<cakey>, or NULL. */
static X509 *pki_make_leaf(EVP_PKEY *pkey, X509 *ca, EVP_PKEY *cakey, const struct pki_args *a,
                           long days, char **err)
{
    X509 *x = pki_cert_new(pkey, a->name, days, err);

    if (x == NULL)
        return NULL;
    if (X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1) {
        pki_ossl_fail(err, "cannot set the issuer of %s", a->name);
        goto fail;
    }
    if (pki_add_leaf_exts(x, ca, err) < 0 || pki_add_san(x, a, err) < 0 ||
        pki_sign(x, cakey, a->name, err) < 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* PEM passphrase callback: an encrypted key is refused, never prompted for. */
static int pki_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/*
 * Reads the PEM certificate <path> (<what> names it in errors). Returns it,
 * or NULL (errno ENOENT: no such file).
 */
static X509 *pki_read_cert(const char *path, const char *what, char **err)
{
    char *buf = NULL;
    size_t len = 0;
    BIO *bio;
    X509 *x;

    if (pki_read_file(path, &buf, &len, err) < 0)
        return NULL;
    bio = BIO_new_mem_buf(buf, (int)len);
    x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    mfa_free(buf);
    if (x == NULL) {
        pki_ossl_fail(err, "cannot read the %s %s (not a PEM certificate)", what, path);
        errno = 0;
    }
    return x;
}

/*
 * Reads the unencrypted PEM private key <path> (<what> names it in errors),
 * wiping the bytes read. Returns it, or NULL (errno ENOENT: no such file).
 */
static EVP_PKEY *pki_read_key(const char *path, const char *what, char **err)
{
    char *buf = NULL;
    size_t len = 0;
    EVP_PKEY *k;
    BIO *bio;

    if (pki_read_file(path, &buf, &len, err) < 0)
        return NULL;
    bio = BIO_new_mem_buf(buf, (int)len);
    k = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, pki_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(buf, len);
    mfa_free(buf);
    if (k == NULL) {
        pki_ossl_fail(err, "cannot read the %s %s (it must be an unencrypted PEM key)", what, path);
        errno = 0;
    }
    return k;
}

/*
 * Loads DIR/ca.crt and DIR/ca.key and checks that the certificate is a CA
 * and the key is its key. Returns 0 with *ca and *cakey set (the caller
 * frees them), or -1.
 */
static int pki_load_ca(const char *dir, X509 **ca, EVP_PKEY **cakey, char **err)
{
    char *crt_path = NULL, *key_path = NULL;
    const char *missing = NULL;
    int rc = -1;

    *ca = NULL;
    *cakey = NULL;
    if (asprintf(&crt_path, "%s/ca.crt", dir) < 0)
        crt_path = NULL; /* undefined after a failed asprintf */
    if (asprintf(&key_path, "%s/ca.key", dir) < 0)
        key_path = NULL;
    if (crt_path == NULL || key_path == NULL) {
        err_set(err, "out of memory");
        goto done;
    }
    *ca = pki_read_cert(crt_path, "CA certificate", err);
    if (*ca == NULL) {
        missing = crt_path;
        goto missing;
    }
    if (X509_check_ca(*ca) == 0) {
        err_set(err, "%s is not a CA certificate", crt_path);
        goto done;
    }
    *cakey = pki_read_key(key_path, "CA key", err);
    if (*cakey == NULL) {
        missing = key_path;
        goto missing;
    }
    if (X509_check_private_key(*ca, *cakey) != 1) {
        ERR_clear_error();
        err_set(err, "%s is not the key of %s", key_path, crt_path);
        goto done;
    }
    rc = 0;
    goto done;
missing:
    if (errno == ENOENT)
        err_set(err, "no CA in %s: %s does not exist (run mfactl pki init --dir %s first)", dir,
                missing, dir);
done:
    if (rc < 0) {
        X509_free(*ca);
        EVP_PKEY_free(*cakey);
        *ca = NULL;
        *cakey = NULL;
    }
    free(crt_path);
    free(key_path);
    return rc;
}

/* Refuses <path> when it is the same file as <ca_path> (e.g. --name ca). */
static int pki_not_ca_file(const char *path, const char *dir, const char *ca_file, char **err)
{
    struct stat a, b;
    char *ca_path = NULL;
    int rc = 0;

    if (asprintf(&ca_path, "%s/%s", dir, ca_file) < 0)
        return err_set(err, "out of memory");
    if (stat(path, &a) == 0 && stat(ca_path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        rc = err_set(err, "%s is the CA's %s; choose another --name or --out", path, ca_file);
    free(ca_path);
    return rc;
}

/*
 * The key and certificate paths of a member: <out> when given, else
 * <dir>/<name>, plus ".key" and ".crt" (into *prefix, which the caller
 * frees), refusing the CA's own files. Shared by issue and renew.
 */
static int pki_leaf_paths(const char *dir, const char *out, const char *name, char **prefix,
                          struct pki_out *key, struct pki_out *crt, char **err)
{
    if (out != NULL)
        *prefix = strdup(out);
    else if (asprintf(prefix, "%s/%s", dir, name) < 0)
        *prefix = NULL;
    if (*prefix == NULL)
        return err_set(err, "out of memory");
    if (pki_out_path(key, *prefix, ".key", 0600, err) < 0 ||
        pki_out_path(crt, *prefix, ".crt", 0644, err) < 0)
        return -1;
    if (pki_not_ca_file(key->path, dir, "ca.key", err) < 0 ||
        pki_not_ca_file(key->path, dir, "ca.crt", err) < 0 ||
        pki_not_ca_file(crt->path, dir, "ca.key", err) < 0 ||
        pki_not_ca_file(crt->path, dir, "ca.crt", err) < 0)
        return -1;
    return 0;
}

/* Resolves --owner <user> to its uid and primary gid. */
static int pki_resolve_owner(const char *user, struct pki_owner *own, char **err)
{
    struct passwd *pw;

    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL)
        return err_set(err, "--owner %s: %s", user, errno != 0 ? strerror(errno) : "no such user");
    own->set = true;
    own->uid = pw->pw_uid;
    own->gid = pw->pw_gid;
    return 0;
}

/* ---- subcommands ---- */

/* `pki init`: argv[0] is "init". Returns the exit code. */
static int pki_init(int argc, char **argv)
{
    static const struct pki_owner nobody = { .set = false };
    static const char refuse_hint[] = "; refusing to replace the CA (--force replaces it)";
    struct pki_args a = { .cluster = PKI_CLUSTER_DEF, .days = 0 };
    struct pki_out key = { 0 }, crt = { 0 };
    struct stat st;
    EVP_PKEY *pkey = NULL;
    X509 *ca = NULL;
    char *prefix = NULL, *err = NULL;
    int rc;

    rc = pki_parse_args(argc, argv, pki_init_opts, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        fputs(pki_usage_text, stdout);
        return PKI_OK;
    }
    if (!pki_valid_name(a.cluster, PKI_CLUSTER_MAX))
        return pki_usage("--cluster %s: must be 1 to %d of A-Z a-z 0-9 . _ - (not starting with "
                         ". or -)",
                         a.cluster, PKI_CLUSTER_MAX);
    rc = PKI_FAILED;
    if (asprintf(&prefix, "%s/ca", a.dir) < 0) {
        prefix = NULL;
        err_set(&err, "out of memory");
        goto done;
    }
    if (pki_out_path(&key, prefix, ".key", 0600, &err) < 0 ||
        pki_out_path(&crt, prefix, ".crt", 0644, &err) < 0)
        goto done;
    if (!a.force && lstat(key.path, &st) == 0) {
        err_set(&err,
                "%s already exists; refusing to replace the CA (--force replaces it, and "
                "every certificate it issued stops being trusted)",
                key.path);
        goto done;
    }
    if (pki_make_dirs(a.dir, &err) < 0)
        goto done;
    pkey = pki_new_key(&err);
    if (pkey == NULL)
        goto done;
    ca = pki_make_ca(pkey, a.cluster, a.days != 0 ? a.days : PKI_CA_DAYS, &err);
    if (ca == NULL)
        goto done;
    if (pki_stage_key(&key, pkey, &nobody, &err) < 0 ||
        pki_stage_cert(&crt, ca, &nobody, &err) < 0 ||
        pki_install(&key, a.force, refuse_hint, &err) < 0 || pki_install(&crt, true, "", &err) < 0)
        goto done;
    rc = PKI_OK;
done:
    if (rc != PKI_OK)
        pki_fail(&err);
    pki_out_discard(&key);
    pki_out_discard(&crt);
    X509_free(ca);
    EVP_PKEY_free(pkey);
    free(prefix);
    return rc;
}

/* `pki issue`: argv[0] is "issue". Returns the exit code. */
static int pki_issue(int argc, char **argv)
{
    struct pki_args a = { .days = 0 };
    struct pki_owner own = { .set = false };
    struct pki_out key = { 0 }, crt = { 0 };
    EVP_PKEY *pkey = NULL, *cakey = NULL;
    X509 *ca = NULL, *leaf = NULL;
    char *prefix = NULL, *outdir = NULL, *slash, *err = NULL;
    int rc;

    rc = pki_parse_args(argc, argv, pki_issue_opts, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        fputs(pki_usage_text, stdout);
        return PKI_OK;
    }
    if (a.name == NULL)
        return pki_usage("issue needs --name ID");
    if (!pki_valid_name(a.name, PKI_NAME_MAX))
        return pki_usage("--name %s: must be 1 to %d of A-Z a-z 0-9 . _ - (not starting with . "
                         "or -)",
                         a.name, PKI_NAME_MAX);
    if (a.nip == 0 && a.ndns == 0)
        return pki_usage("issue needs at least one --ip ADDR or --dns NAME");
    if (a.out != NULL && (a.out[0] == '\0' || a.out[strlen(a.out) - 1] == '/'))
        return pki_usage("--out %s: must be a path prefix such as /etc/mfa/tls/node", a.out);
    if (a.owner != NULL && a.owner[0] == '\0')
        return pki_usage("--owner needs a user name");
    rc = PKI_FAILED;
    if (a.owner != NULL && pki_resolve_owner(a.owner, &own, &err) < 0)
        goto done;
    if (pki_load_ca(a.dir, &ca, &cakey, &err) < 0)
        goto done;
    if (pki_leaf_paths(a.dir, a.out, a.name, &prefix, &key, &crt, &err) < 0)
        goto done;
    slash = strrchr(prefix, '/');
    if (slash != NULL) {
        outdir = strndup(prefix, slash == prefix ? 1 : (size_t)(slash - prefix));
        if (outdir == NULL) {
            err_set(&err, "out of memory");
            goto done;
        }
        if (pki_make_dirs(outdir, &err) < 0)
            goto done;
    }
    pkey = pki_new_key(&err);
    if (pkey == NULL)
        goto done;
    leaf = pki_make_leaf(pkey, ca, cakey, &a, a.days != 0 ? a.days : PKI_LEAF_DAYS, &err);
    if (leaf == NULL)
        goto done;
    if (ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)) > 0)
        fprintf(stderr,
                "mfactl pki: warning: the certificate for %s outlives the CA; it stops being "
                "valid when the CA expires\n",
                a.name);
    if (pki_stage_key(&key, pkey, &own, &err) < 0 || pki_stage_cert(&crt, leaf, &own, &err) < 0 ||
        pki_install(&key, true, "", &err) < 0 || pki_install(&crt, true, "", &err) < 0)
        goto done;
    rc = PKI_OK;
done:
    if (rc != PKI_OK)
        pki_fail(&err);
    pki_out_discard(&key);
    pki_out_discard(&crt);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(cakey);
    free(outdir);
    free(prefix);
    return rc;
}

/* ---- renew ---- */

/* Formats <t> as ISO 8601 UTC ("2026-11-22T21:00:00Z") into <buf>; "?" if it cannot. */
static const char *pki_time_iso(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "?");
    return buf;
}

/*
 * When the existing <path> belongs to another user or group than ours, sets
 * <own> to them, so that its replacement keeps them (a key the daemons'
 * user reads stays readable). Leaves <own> unset otherwise.
 */
static void pki_owner_of(const char *path, struct pki_owner *own)
{
    struct stat st;

    if (stat(path, &st) == 0 && (st.st_uid != geteuid() || st.st_gid != getegid())) {
        own->set = true;
        own->uid = st.st_uid;
        own->gid = st.st_gid;
    }
}

/*
 * A renewal of <old> for <pkey>: the same subject and subjectAltName, a new
 * random serial, <days> from an hour ago, the leaf extensions, signed by
 * <ca>/<cakey>. Returns it (the caller frees it), or NULL.
 */
static X509 *pki_make_renewal(X509 *old, EVP_PKEY *pkey, X509 *ca, EVP_PKEY *cakey, long days,
                              const char *what, char **err)
{
    int san = X509_get_ext_by_NID(old, NID_subject_alt_name, -1);
    X509 *x = X509_new();

    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 || pki_set_serial(x) < 0 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_SECS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL ||
        X509_set_pubkey(x, pkey) != 1 ||
        X509_set_subject_name(x, X509_get_subject_name(old)) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1) {
        pki_ossl_fail(err, "cannot build the renewal of %s", what);
        goto fail;
    }
    if (pki_add_leaf_exts(x, ca, err) < 0)
        goto fail;
    /* the names as they were, byte for byte */
    if (san >= 0 && X509_add_ext(x, X509_get_ext(old, san), -1) != 1) {
        pki_ossl_fail(err, "cannot copy the subjectAltName of %s", what);
        goto fail;
    }
    if (pki_sign(x, cakey, what, err) < 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* True when <x> was issued and signed by <ca>. */
static bool pki_issued_by(X509 *x, X509 *ca)
{
    bool ok = X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, X509_get0_pubkey(ca)) == 1;

    ERR_clear_error();
    return ok;
}

/*
 * `pki renew`: argv[0] is "renew". Renews PREFIX.crt (DIR/member, DIR/<ID>
 * with --name, or --out PREFIX) when it expires within --within days or with
 * --force; otherwise says when it expires and changes nothing. Returns the
 * exit code.
 */
static int pki_renew(int argc, char **argv)
{
    struct pki_args a = { .days = 0 };
    struct pki_owner key_own = { .set = false }, crt_own = { .set = false };
    struct pki_out key = { 0 }, crt = { 0 };
    EVP_PKEY *pkey = NULL, *cakey = NULL;
    X509 *old = NULL, *ca = NULL, *leaf = NULL;
    char *prefix = NULL, *err = NULL, was[32], until[32];
    time_t limit;
    int rc, cmp, day = 0, sec = 0;

    rc = pki_parse_args(argc, argv, pki_renew_opts, &a);
    if (rc != 0)
        return rc;
    if (a.help) {
        fputs(pki_usage_text, stdout);
        return PKI_OK;
    }
    if (a.name != NULL && a.out != NULL)
        return pki_usage("renew takes --name ID or --out PREFIX, not both");
    if (a.name != NULL && !pki_valid_name(a.name, PKI_NAME_MAX))
        return pki_usage("--name %s: must be 1 to %d of A-Z a-z 0-9 . _ - (not starting with . "
                         "or -)",
                         a.name, PKI_NAME_MAX);
    if (a.out != NULL && (a.out[0] == '\0' || a.out[strlen(a.out) - 1] == '/'))
        return pki_usage("--out %s: must be a path prefix such as /etc/mfa/tls/node", a.out);
    if (a.owner != NULL && a.owner[0] == '\0')
        return pki_usage("--owner needs a user name");
    if (a.within == 0)
        a.within = PKI_WITHIN_DAYS;
    rc = PKI_FAILED;
    if (a.owner != NULL && pki_resolve_owner(a.owner, &key_own, &err) < 0)
        goto done;
    crt_own = key_own;
    if (pki_leaf_paths(a.dir, a.out, a.name != NULL ? a.name : PKI_MEMBER_DEF, &prefix, &key, &crt,
                       &err) < 0)
        goto done;

    old = pki_read_cert(crt.path, "certificate", &err);
    if (old == NULL) {
        if (errno == ENOENT)
            err_set(&err, "%s does not exist: nothing to renew (make one with mfactl pki issue)",
                    crt.path);
        goto done;
    }
    /* due: notAfter before now + --within days */
    limit = time(NULL) + (time_t)a.within * 86400;
    cmp = X509_cmp_time(X509_get0_notAfter(old), &limit);
    if (cmp == 0 || ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(old)) != 1) {
        pki_ossl_fail(&err, "%s: cannot read its expiry", crt.path);
        goto done;
    }
    pki_time_iso(X509_get0_notAfter(old), was, sizeof(was));
    if (cmp > 0 && !a.force) {
        printf("%s expires %s (in %d days), not within %ld days: not renewed (--force renews "
               "it now)\n",
               crt.path, was, day, a.within);
        rc = PKI_OK;
        goto done;
    }

    if (pki_load_ca(a.dir, &ca, &cakey, &err) < 0)
        goto done;
    if (!pki_issued_by(old, ca)) {
        err_set(&err,
                "%s was not issued by the CA in %s; refusing to renew it (mfactl pki issue makes "
                "a new one)",
                crt.path, a.dir);
        rc = PKI_REFUSED;
        goto done;
    }
    if (a.new_key) {
        pkey = pki_new_key(&err);
    } else if (access(key.path, F_OK) != 0) {
        /*
         * The member's key is not here (renewing another member's
         * certificate on the CA host): the certificate carries its public
         * key, which is all the CA signs.
         */
        pkey = X509_get_pubkey(old);
        if (pkey == NULL)
            err_set(&err, "%s: cannot read its public key", crt.path);
    } else {
        pkey = pki_read_key(key.path, "key", &err);
        if (pkey != NULL && X509_check_private_key(old, pkey) != 1) {
            ERR_clear_error();
            err_set(&err, "%s is not the key of %s (--new-key makes a new one)", key.path,
                    crt.path);
            goto done;
        }
    }
    if (pkey == NULL)
        goto done;
    leaf = pki_make_renewal(old, pkey, ca, cakey, a.days != 0 ? a.days : PKI_LEAF_DAYS, crt.path,
                            &err);
    if (leaf == NULL)
        goto done;
    if (ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)) > 0)
        fprintf(stderr,
                "mfactl pki: warning: the renewal of %s outlives the CA; it stops being valid "
                "when the CA expires\n",
                crt.path);
    if (!key_own.set)
        pki_owner_of(key.path, &key_own);
    if (!crt_own.set)
        pki_owner_of(crt.path, &crt_own);
    /* as issue: both complete on disk, then the key put in place first */
    if ((a.new_key && pki_stage_key(&key, pkey, &key_own, &err) < 0) ||
        pki_stage_cert(&crt, leaf, &crt_own, &err) < 0 ||
        (a.new_key && pki_install(&key, true, "", &err) < 0) ||
        pki_install(&crt, true, "", &err) < 0)
        goto done;
    printf("renewed %s: valid until %s (was %s)%s\n", crt.path,
           pki_time_iso(X509_get0_notAfter(leaf), until, sizeof(until)), was,
           a.new_key ? ", with a new key" : ", same key");
    printf("next: the daemons load certificates only when they start; on the member that uses "
           "it, run\n  systemctl restart mfa-replicator mfa-node mfa-balancer\n");
    rc = PKI_OK;
done:
    if (rc != PKI_OK)
        pki_fail(&err);
    pki_out_discard(&key);
    pki_out_discard(&crt);
    X509_free(leaf);
    X509_free(old);
    X509_free(ca);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(cakey);
    free(prefix);
    return rc;
}

int pki_main(int argc, char **argv)
{
    if (argc < 2 || argv[1] == NULL)
        return pki_usage("missing subcommand (init, issue or renew)");
    if (strcmp(argv[1], "init") == 0)
        return pki_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "issue") == 0)
        return pki_issue(argc - 1, argv + 1);
    if (strcmp(argv[1], "renew") == 0)
        return pki_renew(argc - 1, argv + 1);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(pki_usage_text, stdout);
        return PKI_OK;
    }
    return pki_usage("unknown subcommand '%s' (expected init, issue or renew)", argv[1]);
}
