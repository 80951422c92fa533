/*
 * The backup file: writer and verifying reader; see backup_file.h for the
 * format and the order of the checks.
 *
 * Everything here works on file descriptors through fixed buffers of
 * BUF_SIZE bytes, so the size of the dump never matters to memory. Keys live
 * in struct backup_keys and are wiped (OPENSSL_cleanse) on every path out.
 * Untrusted input — every byte of a file being read — is bounded before it
 * is used: the manifest line by BACKUP_MANIFEST_MAX, its strings by their
 * fields, scrypt's cost by KDF_* below (a file must not make us allocate
 * gigabytes), the dump by its declared size checked against the bytes read.
 */
#include "backup_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "b64.h"
#include "errmsg.h"

#define BUF_SIZE      65536
#define SALT_LEN      16
#define IV_LEN        16 /* AES-CTR's initial counter block */
#define NONCE_LEN     12 /* AES-GCM */
#define TAG_LEN       16
#define KEY_BYTES     32
#define KDF_N_MIN     (1u << 10)
#define KDF_N_MAX     (1u << 20)
#define KDF_R_MAX     32
#define KDF_P_MAX     16
#define KDF_MEM_MAX   (256ull << 20) /* 128 * N * r, scrypt's memory */
#define CHECK_CONTEXT "mfa-appliance backup passphrase check"
#define KEYFILE_AAD   "mfa-appliance backup key file"

/* scrypt's 96 bytes, split. */
struct backup_keys {
    unsigned char dump[KEY_BYTES];
    unsigned char keyfile[KEY_BYTES];
    unsigned char mac[KEY_BYTES];
};

struct backup_writer {
    struct backup_kdf kdf;
    unsigned char salt[SALT_LEN], iv[IV_LEN];
    struct backup_keys keys;
    EVP_CIPHER_CTX *ctr;
    EVP_MD_CTX *sha;
    uint64_t dump_bytes;
};

/* ---- HMAC-SHA-256 and SHA-256 through OpenSSL 3's EVP ---- */

static EVP_MAC_CTX *mac_new(const unsigned char *key)
{
    static char digest[] = "SHA256"; /* OSSL_PARAM wants it writable */
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = alg ? EVP_MAC_CTX_new(alg) : NULL;
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end() };

    EVP_MAC_free(alg); /* the context keeps its own reference */
    if (c && EVP_MAC_init(c, key, KEY_BYTES, params) != 1) {
        EVP_MAC_CTX_free(c);
        return NULL;
    }
    return c;
}

static int mac_final(EVP_MAC_CTX *c, unsigned char out[32])
{
    size_t len = 0;

    return EVP_MAC_final(c, out, &len, 32) == 1 && len == 32 ? 0 : -1;
}

static EVP_MD_CTX *sha_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    if (c && EVP_DigestInit_ex2(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    return c;
}

static int sha_final(EVP_MD_CTX *c, unsigned char out[32])
{
    unsigned int len = 0;

    return EVP_DigestFinal_ex(c, out, &len) == 1 && len == 32 ? 0 : -1;
}

/* ---- shared ---- */

static bool kdf_ok(const struct backup_kdf *k)
{
    return k->n >= KDF_N_MIN && k->n <= KDF_N_MAX && (k->n & (k->n - 1)) == 0 && k->r >= 1 &&
           k->r <= KDF_R_MAX && k->p >= 1 && k->p <= KDF_P_MAX &&
           128ull * k->n * k->r <= KDF_MEM_MAX;
}

static int derive(const char *pass, const unsigned char *salt, const struct backup_kdf *k,
                  struct backup_keys *out, char **err)
{
    unsigned char raw[3 * KEY_BYTES];
    uint64_t mem = 128ull * k->n * k->r * (k->p + 2) + (1u << 20);

    if (EVP_PBE_scrypt(pass, strlen(pass), salt, SALT_LEN, k->n, k->r, k->p, mem, raw,
                       sizeof(raw)) != 1) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return err_set(err, "scrypt failed (out of memory?)");
    }
    memcpy(out->dump, raw, KEY_BYTES);
    memcpy(out->keyfile, raw + KEY_BYTES, KEY_BYTES);
    memcpy(out->mac, raw + 2 * KEY_BYTES, KEY_BYTES);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The passphrase check value: HMAC-SHA-256(mac key, CHECK_CONTEXT), in hex. */
static void check_value(const struct backup_keys *k, char out[65])
{
    unsigned char mac[32];
    unsigned int len = sizeof(mac);

    if (!HMAC(EVP_sha256(), k->mac, KEY_BYTES, (const unsigned char *)CHECK_CONTEXT,
              strlen(CHECK_CONTEXT), mac, &len))
        memset(mac, 0, sizeof(mac));
    hex(mac, sizeof(mac), out);
}

static EVP_CIPHER_CTX *ctr_new(const unsigned char *key, const unsigned char *iv, bool enc)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    if (c && EVP_CipherInit_ex(c, EVP_aes_256_ctr(), NULL, key, iv, enc ? 1 : 0) != 1) {
        EVP_CIPHER_CTX_free(c);
        return NULL;
    }
    return c;
}

/* CTR in place: a stream cipher, out length == in length. */
static int ctr_update(EVP_CIPHER_CTX *c, unsigned char *buf, size_t len)
{
    int out;

    while (len > 0) {
        int n = len > BUF_SIZE ? BUF_SIZE : (int)len;
        if (EVP_CipherUpdate(c, buf, &out, buf, n) != 1 || out != n)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const void *data, size_t len, char **err)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(err, "cannot write: %s", n < 0 ? strerror(errno) : "nothing written");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static char *b64_of(const unsigned char *in, size_t n)
{
    size_t size = B64_ENCODED_LEN(n) + 1;
    char *out = malloc(size);

    if (out && b64_encode(in, n, out, size) < 0)
        mfa_free(out);
    return out;
}

/* ---- writing ---- */

struct backup_writer *backup_writer_new(const char *pass, const struct backup_kdf *kdf, char **err)
{
    struct backup_writer *w;

    if (strlen(pass) < BACKUP_PASS_MIN) {
        err_set(err, "the passphrase must be at least %d bytes", BACKUP_PASS_MIN);
        return NULL;
    }
    if (!kdf_ok(kdf)) {
        err_set(err, "scrypt parameters out of range");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        err_set(err, "out of memory");
        return NULL;
    }
    w->kdf = *kdf;
    w->sha = sha_new();
    if (!w->sha) {
        err_set(err, "SHA-256 is not available");
        goto fail;
    }
    if (RAND_bytes(w->salt, SALT_LEN) != 1 || RAND_bytes(w->iv, IV_LEN) != 1) {
        err_set(err, "no random numbers");
        goto fail;
    }
    if (derive(pass, w->salt, kdf, &w->keys, err) < 0)
        goto fail;
    w->ctr = ctr_new(w->keys.dump, w->iv, true);
    if (!w->ctr) {
        err_set(err, "AES-256-CTR is not available");
        goto fail;
    }
    return w;
fail:
    backup_writer_free(w);
    return NULL;
}

int backup_writer_encrypt(struct backup_writer *w, unsigned char *buf, size_t len)
{
    if (ctr_update(w->ctr, buf, len) < 0)
        return -1;
    if (EVP_DigestUpdate(w->sha, buf, len) != 1)
        return -1;
    w->dump_bytes += len;
    return 0;
}

void backup_writer_free(struct backup_writer *w)
{
    if (!w)
        return;
    EVP_CIPHER_CTX_free(w->ctr);
    EVP_MD_CTX_free(w->sha);
    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

/* The key file text sealed with AES-256-GCM: *nonce_b64 and *sealed_b64 (ciphertext || tag). */
static int seal_keyfile(const struct backup_keys *k, const char *text, char **nonce_b64,
                        char **sealed_b64, char **err)
{
    size_t len = strlen(text);
    unsigned char nonce[NONCE_LEN], *buf = NULL;
    EVP_CIPHER_CTX *c = NULL;
    int out, fin, rc = -1;

    *nonce_b64 = *sealed_b64 = NULL;
    if (len == 0 || len >= BACKUP_KEYFILE_MAX)
        return err_set(err, "the key file is empty or too large");
    buf = malloc(len + TAG_LEN);
    c = EVP_CIPHER_CTX_new();
    if (!buf || !c || RAND_bytes(nonce, NONCE_LEN) != 1 ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, k->keyfile, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &out, (const unsigned char *)KEYFILE_AAD,
                          (int)strlen(KEYFILE_AAD)) != 1 ||
        EVP_EncryptUpdate(c, buf, &out, (const unsigned char *)text, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, buf + out, &fin) != 1 || (size_t)(out + fin) != len ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + len) != 1) {
        err_set(err, "cannot seal the key file");
        goto done;
    }
    *nonce_b64 = b64_of(nonce, NONCE_LEN);
    *sealed_b64 = b64_of(buf, len + TAG_LEN);
    if (!*nonce_b64 || !*sealed_b64) {
        mfa_free(*nonce_b64);
        mfa_free(*sealed_b64);
        err_set(err, "out of memory");
        goto done;
    }
    rc = 0;
done:
    EVP_CIPHER_CTX_free(c);
    free(buf);
    return rc;
}

/* The manifest line (no newline), for the caller to free. */
static char *manifest_text(const struct backup_writer *w, const struct backup_manifest *m,
                           const char *keyfile, char **err)
{
    char check[65], *salt = b64_of(w->salt, SALT_LEN), *iv = b64_of(w->iv, IV_LEN);
    char *nonce = NULL, *sealed = NULL, *text = NULL;
    json_t *j = NULL;

    check_value(&w->keys, check);
    if (!salt || !iv) {
        err_set(err, "out of memory");
        goto done;
    }
    if (seal_keyfile(&w->keys, keyfile, &nonce, &sealed, err) < 0)
        goto done;
    j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:{s:I, s:I, s:I},"
                  " s:{s:s, s:I, s:I, s:I, s:s}, s:s, s:{s:s, s:s}, s:s, s:I, s:s}",
                  "format", 1, "cluster", m->cluster, "member", m->member, "role", m->role,
                  "created_at", m->created_at, "release", m->release, "schema_version",
                  m->schema_version, "rows", "users", (json_int_t)m->users, "oath_tokens",
                  (json_int_t)m->oath_tokens, "auth_log", (json_int_t)m->auth_log, "kdf", "name",
                  "scrypt", "N", (json_int_t)w->kdf.n, "r", (json_int_t)w->kdf.r, "p",
                  (json_int_t)w->kdf.p, "salt", salt, "dump_iv", iv, "key_file", "nonce", nonce,
                  "sealed", sealed, "check", check, "dump_bytes", (json_int_t)m->dump_bytes,
                  "dump_sha256", m->dump_sha256);
    text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text)
        err_set(err, "cannot make the manifest (a field is not UTF-8?)");
    else if (strlen(text) > BACKUP_MANIFEST_MAX - 1) {
        err_set(err, "the manifest is longer than %d bytes", BACKUP_MANIFEST_MAX);
        mfa_free(text);
    }
done:
    json_decref(j);
    free(salt);
    free(iv);
    free(nonce);
    free(sealed);
    return text;
}

int backup_writer_finish(struct backup_writer *w, struct backup_manifest *m, const char *keyfile,
                         int body_fd, int out_fd, char **err)
{
    unsigned char digest[32], *buf = NULL;
    char *manifest = NULL, trailer[BACKUP_MAC_LINE + 1], machex[65];
    EVP_MAC_CTX *mac = NULL;
    uint64_t left;
    int rc = -1;

    if (sha_final(w->sha, digest) < 0)
        return err_set(err, "SHA-256 failed");
    hex(digest, sizeof(digest), m->dump_sha256);
    m->dump_bytes = w->dump_bytes;
    manifest = manifest_text(w, m, keyfile, err);
    buf = malloc(BUF_SIZE);
    mac = mac_new(w->keys.mac);
    if (!manifest || !buf || !mac) {
        if (manifest)
            err_set(err, "out of memory");
        goto done;
    }
    if (EVP_MAC_update(mac, (const unsigned char *)BACKUP_MAGIC, strlen(BACKUP_MAGIC)) != 1 ||
        EVP_MAC_update(mac, (const unsigned char *)manifest, strlen(manifest)) != 1 ||
        EVP_MAC_update(mac, (const unsigned char *)"\n", 1) != 1) {
        err_set(err, "HMAC-SHA-256 failed");
        goto done;
    }
    if (write_all(out_fd, BACKUP_MAGIC, strlen(BACKUP_MAGIC), err) < 0 ||
        write_all(out_fd, manifest, strlen(manifest), err) < 0 ||
        write_all(out_fd, "\n", 1, err) < 0)
        goto done;
    if (lseek(body_fd, 0, SEEK_SET) < 0) {
        err_set(err, "cannot read the encrypted dump back: %s", strerror(errno));
        goto done;
    }
    for (left = w->dump_bytes; left > 0;) {
        ssize_t n = read(body_fd, buf, left < BUF_SIZE ? (size_t)left : BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err_set(err, "cannot read the encrypted dump back: %s",
                    n < 0 ? strerror(errno) : "it is shorter than written");
            goto done;
        }
        if (EVP_MAC_update(mac, buf, (size_t)n) != 1 || write_all(out_fd, buf, (size_t)n, err) < 0)
            goto done;
        left -= (uint64_t)n;
    }
    if (mac_final(mac, digest) < 0) {
        err_set(err, "HMAC-SHA-256 failed");
        goto done;
    }
    hex(digest, sizeof(digest), machex);
    snprintf(trailer, sizeof(trailer), "MAC %s\n", machex);
    rc = write_all(out_fd, trailer, BACKUP_MAC_LINE, err);
done:
    EVP_MAC_CTX_free(mac);
    free(buf);
    free(manifest);
    return rc;
}

/* ---- reading ---- */

/* A buffered reader over <fd> that counts what it gave out. */
struct reader {
    int fd;
    unsigned char *buf;
    size_t pos, len;
    bool eof;
    bool io_error; /* a read or a write failed: not the file's fault */
};

/* Up to <want> bytes at *out (in the buffer); 0 at the end; -1 on an error. */
static ssize_t rd_some(struct reader *r, size_t want, const unsigned char **out, char **err)
{
    if (r->pos == r->len && !r->eof) {
        ssize_t n;
        do
            n = read(r->fd, r->buf, BUF_SIZE);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            r->io_error = true;
            return err_set(err, "cannot read the backup: %s", strerror(errno));
        }
        r->pos = 0;
        r->len = (size_t)n;
        r->eof = n == 0;
    }
    if (r->pos == r->len)
        return 0;
    if (want > r->len - r->pos)
        want = r->len - r->pos;
    *out = r->buf + r->pos;
    r->pos += want;
    return (ssize_t)want;
}

/* Exactly <n> bytes into <dst>, or fewer at the end: their count in *got. -1 on an error. */
static int rd_exact(struct reader *r, void *dst, size_t n, size_t *got, char **err)
{
    const unsigned char *p = NULL;

    *got = 0;
    while (*got < n) {
        ssize_t k = rd_some(r, n - *got, &p, err);
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        memcpy((char *)dst + *got, p, (size_t)k);
        *got += (size_t)k;
    }
    return 0;
}

static const char *jstr(json_t *o, const char *key, size_t max)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (!s || strlen(s) >= max)
        return NULL;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return NULL; /* printed to a terminal later */
    return s;
}

static bool jint(json_t *o, const char *key, long long min, long long max, long long *out)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* Decodes the base64 field <key> of exactly <n> bytes (n 0: up to <max>) into <out>. */
static bool jb64(json_t *o, const char *key, unsigned char *out, size_t n, size_t max,
                 size_t *outlen)
{
    const char *s = json_string_value(json_object_get(o, key));
    size_t got = 0, cap = n ? n : max;

    if (!s || strlen(s) > B64_ENCODED_LEN(cap))
        return false;
    if (b64_decode(s, strlen(s), out, cap, &got) < 0 || (n && got != n))
        return false;
    if (outlen)
        *outlen = got;
    return true;
}

static bool lower_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* What the manifest holds, parsed and bounded; the sealed key file in <sealed>. */
struct parsed {
    struct backup_manifest m;
    struct backup_kdf kdf;
    unsigned char salt[SALT_LEN], iv[IV_LEN], nonce[NONCE_LEN];
    unsigned char *sealed;
    size_t sealed_len;
    char check[65];
};

static int parse_manifest(const char *line, size_t len, struct parsed *p, char **err)
{
    static const char bad[] = "not an MFA Appliance backup: the manifest";
    json_error_t jerr;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr), *rows, *kdf, *kf;
    const char *s[5], *name, *check, *sha;
    const char *keys[5] = { "cluster", "member", "role", "created_at", "release" };
    size_t sizes[5] = { sizeof(p->m.cluster), sizeof(p->m.member), sizeof(p->m.role),
                        sizeof(p->m.created_at), sizeof(p->m.release) };
    long long v[8];
    int rc = -1;

    if (!json_is_object(j)) {
        err_set(err, "%s is not JSON (%s)", bad, j ? "not an object" : jerr.text);
        goto done;
    }
    if (!jint(j, "format", 1, 1, &v[0])) {
        err_set(err, "%s has no \"format\": 1 (a newer mfactl's backup?)", bad);
        goto done;
    }
    for (size_t i = 0; i < 5; i++)
        if (!(s[i] = jstr(j, keys[i], sizes[i]))) {
            err_set(err, "%s has no valid \"%s\"", bad, keys[i]);
            goto done;
        }
    rows = json_object_get(j, "rows");
    kdf = json_object_get(j, "kdf");
    kf = json_object_get(j, "key_file");
    name = json_string_value(json_object_get(kdf, "name"));
    check = json_string_value(json_object_get(j, "check"));
    sha = json_string_value(json_object_get(j, "dump_sha256"));
    if (!jint(j, "schema_version", 1, 1000000, &v[0]) ||
        !jint(rows, "users", 0, INT64_MAX, &v[1]) ||
        !jint(rows, "oath_tokens", 0, INT64_MAX, &v[2]) ||
        !jint(rows, "auth_log", 0, INT64_MAX, &v[3]) || !jint(kdf, "N", 0, KDF_N_MAX, &v[4]) ||
        !jint(kdf, "r", 0, KDF_R_MAX, &v[5]) || !jint(kdf, "p", 0, KDF_P_MAX, &v[6]) ||
        !jint(j, "dump_bytes", 0, INT64_MAX, &v[7]) || !name || strcmp(name, "scrypt") != 0 ||
        !lower_hex(check, 64) || !lower_hex(sha, 64)) {
        err_set(err, "%s lacks a field or holds one of the wrong type or range", bad);
        goto done;
    }
    p->kdf.n = (uint64_t)v[4];
    p->kdf.r = (uint32_t)v[5];
    p->kdf.p = (uint32_t)v[6];
    if (!kdf_ok(&p->kdf)) {
        err_set(err, "%s asks for scrypt parameters out of range", bad);
        goto done;
    }
    p->sealed = malloc(BACKUP_KEYFILE_MAX + TAG_LEN);
    if (!p->sealed) {
        err_set(err, "out of memory");
        goto done;
    }
    if (!jb64(kdf, "salt", p->salt, SALT_LEN, 0, NULL) ||
        !jb64(j, "dump_iv", p->iv, IV_LEN, 0, NULL) ||
        !jb64(kf, "nonce", p->nonce, NONCE_LEN, 0, NULL) ||
        !jb64(kf, "sealed", p->sealed, 0, BACKUP_KEYFILE_MAX + TAG_LEN, &p->sealed_len) ||
        p->sealed_len <= TAG_LEN) {
        err_set(err, "%s holds a salt, IV or sealed key file of the wrong size", bad);
        goto done;
    }
    snprintf(p->m.cluster, sizeof(p->m.cluster), "%s", s[0]);
    snprintf(p->m.member, sizeof(p->m.member), "%s", s[1]);
    snprintf(p->m.role, sizeof(p->m.role), "%s", s[2]);
    snprintf(p->m.created_at, sizeof(p->m.created_at), "%s", s[3]);
    snprintf(p->m.release, sizeof(p->m.release), "%s", s[4]);
    p->m.schema_version = (int)v[0];
    p->m.users = v[1];
    p->m.oath_tokens = v[2];
    p->m.auth_log = v[3];
    p->m.dump_bytes = (uint64_t)v[7];
    snprintf(p->m.dump_sha256, sizeof(p->m.dump_sha256), "%s", sha);
    snprintf(p->check, sizeof(p->check), "%s", check);
    rc = 0;
done:
    json_decref(j);
    return rc;
}

/* Opens the sealed key file into <out> (NUL-terminated). Returns 0, or -1 with *err. */
static int open_keyfile(const struct parsed *p, const struct backup_keys *k, char *out, size_t size,
                        char **err)
{
    size_t len = p->sealed_len - TAG_LEN;
    EVP_CIPHER_CTX *c;
    int n, fin, ok;

    if (len + 1 > size)
        return err_set(err, "the key file in the backup is too large");
    c = EVP_CIPHER_CTX_new();
    ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
         EVP_DecryptInit_ex(c, NULL, NULL, k->keyfile, p->nonce) == 1 &&
         EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)KEYFILE_AAD,
                           (int)strlen(KEYFILE_AAD)) == 1 &&
         EVP_DecryptUpdate(c, (unsigned char *)out, &n, p->sealed, (int)len) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, p->sealed + len) == 1 &&
         EVP_DecryptFinal_ex(c, (unsigned char *)out + n, &fin) == 1 && (size_t)(n + fin) == len;
    EVP_CIPHER_CTX_free(c);
    if (!ok || memchr(out, '\0', len)) {
        OPENSSL_cleanse(out, size);
        return err_set(err, "the backup was altered or is corrupt (the key file does not open)");
    }
    out[len] = '\0';
    return 0;
}

/* Reads the magic line and the manifest line into <line> (NUL-terminated); *len its length. */
static int read_head(struct reader *r, char *line, size_t *len, char **err)
{
    char magic[sizeof(BACKUP_MAGIC) - 1];
    const unsigned char *p;
    size_t got;

    if (rd_exact(r, magic, sizeof(magic), &got, err) < 0)
        return -1;
    if (got != sizeof(magic) || memcmp(magic, BACKUP_MAGIC, sizeof(magic)) != 0)
        return err_set(err, "not an MFA Appliance backup (it does not start with \"MFA-BACKUP "
                            "1\")");
    for (*len = 0;;) {
        ssize_t k = rd_some(r, 1, &p, err);
        if (k < 0)
            return -1;
        if (k == 0)
            return err_set(
                err, "truncated: the file ends inside the manifest line, after %zu bytes", *len);
        if (*p == '\n')
            break;
        if (*len == BACKUP_MANIFEST_MAX - 1)
            return err_set(err,
                           "not an MFA Appliance backup: the manifest line is longer than %d "
                           "bytes",
                           BACKUP_MANIFEST_MAX);
        line[(*len)++] = (char)*p;
    }
    line[*len] = '\0';
    return 0;
}

/* Streams the dump: MAC, checksum, decryption into <dump_fd>. */
static int read_dump(struct reader *r, const struct parsed *p, EVP_CIPHER_CTX *ctr,
                     EVP_MAC_CTX *mac, EVP_MD_CTX *sha, int dump_fd, unsigned char *out, char **err)
{
    uint64_t left = p->m.dump_bytes, got = 0;
    const unsigned char *in;

    while (left > 0) {
        ssize_t n = rd_some(r, left < BUF_SIZE ? (size_t)left : BUF_SIZE, &in, err);
        if (n < 0)
            return -1;
        if (n == 0)
            return err_set(err,
                           "truncated: the dump part expected %" PRIu64 " bytes, found %" PRIu64,
                           p->m.dump_bytes, got);
        if (EVP_MAC_update(mac, in, (size_t)n) != 1 || EVP_DigestUpdate(sha, in, (size_t)n) != 1)
            return err_set(err, "HMAC-SHA-256 or SHA-256 failed");
        if (dump_fd >= 0) {
            memcpy(out, in, (size_t)n);
            if (ctr_update(ctr, out, (size_t)n) < 0 ||
                write_all(dump_fd, out, (size_t)n, err) < 0) {
                r->io_error = true;
                return err_prefix(err, "decrypting the dump");
            }
        }
        left -= (uint64_t)n;
        got += (uint64_t)n;
    }
    return 0;
}

/* The MAC line and the end of the file; the MAC compared in constant time. */
static int read_trailer(struct reader *r, EVP_MAC_CTX *mac, char **err)
{
    char line[BACKUP_MAC_LINE + 1], want[65];
    unsigned char digest[32], extra;
    size_t got;

    if (rd_exact(r, line, BACKUP_MAC_LINE, &got, err) < 0)
        return -1;
    if (got < BACKUP_MAC_LINE)
        return err_set(err, "truncated: the MAC line expected %d bytes, found %zu", BACKUP_MAC_LINE,
                       got);
    if (rd_exact(r, &extra, 1, &got, err) < 0)
        return -1;
    if (got)
        return err_set(err, "the backup was altered or is corrupt (bytes after the MAC line)");
    if (memcmp(line, "MAC ", 4) != 0 || line[BACKUP_MAC_LINE - 1] != '\n')
        return err_set(err, "the backup was altered or is corrupt (no MAC line at its end)");
    line[BACKUP_MAC_LINE - 1] = '\0'; /* the 64 hex digits alone */
    if (!lower_hex(line + 4, 64))
        return err_set(err, "the backup was altered or is corrupt (no MAC line at its end)");
    if (mac_final(mac, digest) < 0)
        return err_set(err, "HMAC-SHA-256 failed");
    hex(digest, sizeof(digest), want);
    if (CRYPTO_memcmp(want, line + 4, 64) != 0)
        return err_set(err, "the backup was altered or is corrupt (MAC mismatch)");
    return 0;
}

int backup_read(int in_fd, const char *pass, int dump_fd, struct backup_manifest *m, char *keyfile,
                size_t keyfile_size, char **err)
{
    struct reader r = { .fd = in_fd };
    struct parsed p;
    struct backup_keys k;
    EVP_CIPHER_CTX *ctr = NULL;
    EVP_MAC_CTX *mac = NULL;
    EVP_MD_CTX *sha = sha_new();
    unsigned char digest[32], *out = malloc(BUF_SIZE);
    char *line = malloc(BACKUP_MANIFEST_MAX), check[65], sum[65];
    size_t len = 0;
    int rc = -1;

    memset(&p, 0, sizeof(p));
    memset(&k, 0, sizeof(k));
    r.buf = malloc(BUF_SIZE);
    if (!r.buf || !out || !line || !sha) {
        err_set(err, "out of memory");
        r.io_error = true;
        goto done;
    }
    if (read_head(&r, line, &len, err) < 0 || parse_manifest(line, len, &p, err) < 0)
        goto done;
    if (derive(pass, p.salt, &p.kdf, &k, err) < 0)
        goto done;
    check_value(&k, check);
    if (CRYPTO_memcmp(check, p.check, 64) != 0) {
        err_set(err, "wrong passphrase");
        goto done;
    }
    ctr = ctr_new(k.dump, p.iv, false);
    mac = mac_new(k.mac);
    if (!ctr || !mac ||
        EVP_MAC_update(mac, (const unsigned char *)BACKUP_MAGIC, strlen(BACKUP_MAGIC)) != 1 ||
        EVP_MAC_update(mac, (const unsigned char *)line, len) != 1 ||
        EVP_MAC_update(mac, (const unsigned char *)"\n", 1) != 1) {
        err_set(err, "AES-256-CTR or HMAC-SHA-256 failed");
        goto done;
    }
    if (read_dump(&r, &p, ctr, mac, sha, dump_fd, out, err) < 0 || read_trailer(&r, mac, err) < 0)
        goto done;
    if (sha_final(sha, digest) < 0) {
        err_set(err, "SHA-256 failed");
        goto done;
    }
    hex(digest, sizeof(digest), sum);
    if (strcmp(sum, p.m.dump_sha256) != 0) {
        err_set(err, "the backup was altered or is corrupt (checksum mismatch)");
        goto done;
    }
    if (open_keyfile(&p, &k, keyfile, keyfile_size, err) < 0)
        goto done;
    *m = p.m;
    rc = 0;
done:
    OPENSSL_cleanse(&k, sizeof(k));
    if (out)
        OPENSSL_cleanse(out, BUF_SIZE);
    EVP_CIPHER_CTX_free(ctr);
    EVP_MAC_CTX_free(mac);
    EVP_MD_CTX_free(sha);
    free(p.sealed);
    free(out);
    free(line);
    free(r.buf);
    return rc < 0 && r.io_error ? -2 : rc;
}
