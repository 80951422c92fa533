/*
 * PSKC (RFC 6030) token files: the reader (libxml2); the writer is
 * tokenfile_pskc_write.c.
 *
 * The reader walks the tree by namespace and local name, so any prefixes
 * work. The document is untrusted: libxml2 runs without network access,
 * without loading or expanding entities, and a document type declaration
 * stops the parser at once (no internal subset is ever parsed, so entity
 * bombs and external entities cannot happen); parser messages go to *err,
 * never to stderr. Every base64 value and number is bounded before it is
 * decoded.
 *
 * Encrypted secrets (RFC 6030 §6.2): a key derived from the passphrase with
 * PBKDF2, AES-CBC with the IV before the ciphertext, and a MAC key encrypted
 * under the same key whose HMAC over IV||ciphertext (§6.1.1) is checked
 * before anything is decrypted. The derived key, the MAC key and every
 * plaintext are wiped before they go out of scope, and so is the text of
 * the parsed tree (PlainValue secrets) before it is freed. Not wiped:
 * libxml2's private copy of the input, which the caller's buffer holds too.
 */
#include "tokenfile.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "errmsg.h"
#include "otp.h"
#include "secrets.h"
#include "tokenfile_priv.h"

/* Bounds of what the reader decodes (all far above real files). */
#define PSKC_B64_MAX  1024 /* base64 characters of one value */
#define PSKC_BIN_MAX  768  /* bytes of one decoded value: B64_DECODED_MAX(PSKC_B64_MAX) */
#define PSKC_TEXT_MAX 256  /* a number, a serial, a user, an algorithm name */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define PSKC_ITER_MAX 1000u /* keeps a fuzz input with a huge IterationCount fast */
#else
#define PSKC_ITER_MAX 5000000u
#endif
#define PSKC_MACKEY_MAX 128

struct pskc_cipher {
    const char *uri;
    const EVP_CIPHER *(*evp)(void);
    size_t keylen;
};

static const struct pskc_cipher pskc_ciphers[] = {
    { NS_XENC "aes128-cbc", EVP_aes_128_cbc, 16 },
    { NS_XENC "aes192-cbc", EVP_aes_192_cbc, 24 },
    { NS_XENC "aes256-cbc", EVP_aes_256_cbc, 32 },
};

struct pskc_mac {
    const char *uri;
    const EVP_MD *(*md)(void);
};

static const struct pskc_mac pskc_macs[] = {
    { NS_DS "hmac-sha1", EVP_sha1 },
    { NS_DSMORE "hmac-sha256", EVP_sha256 },
    { NS_DSMORE "hmac-sha384", EVP_sha384 },
    { NS_DSMORE "hmac-sha512", EVP_sha512 },
};

/* What the reader learns from the container before the key packages. */
struct pskc_read {
    const char *passphrase;
    const xmlNode *enc_key;    /* EncryptionKey, or NULL */
    const xmlNode *mac_method; /* MACMethod, or NULL */
    bool keyed;                /* key[] holds the derived key */
    bool mac_mismatch;         /* a MAC check failed: TOKENFILE_WRONG_PASSPHRASE */
    unsigned char key[32];
    size_t keylen;
    const EVP_MD *mac_md; /* NULL: no MACMethod */
    unsigned char mac_key[PSKC_MACKEY_MAX];
    size_t mac_key_len;
};

/* ---- tree helpers */

/* True when <n> is the element <name> in namespace <ns> (NULL: in none). */
static bool is_elem(const xmlNode *n, const char *ns, const char *name)
{
    if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, name) != 0)
        return false;
    if (!ns)
        return !n->ns || !n->ns->href;
    return n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0;
}

/* The first child element <name> of <parent> in namespace <ns>, or NULL. */
static const xmlNode *child(const xmlNode *parent, const char *ns, const char *name)
{
    if (!parent)
        return NULL;
    for (const xmlNode *c = parent->children; c; c = c->next) {
        if (is_elem(c, ns, name))
            return c;
    }
    return NULL;
}

/*
 * A child of PBKDF2-params: RFC 6030 Figure 7 leaves them without a
 * namespace, others put them in the PKCS #5 or xmlenc11 one, and a file whose
 * default namespace is PSKC's puts unprefixed ones in that.
 */
static const xmlNode *pbkdf2_child(const xmlNode *parent, const char *name)
{
    const xmlNode *n = child(parent, NS_PKCS5, name);

    if (!n)
        n = child(parent, NULL, name);
    if (!n)
        n = child(parent, NS_XENC11, name);
    if (!n)
        n = child(parent, NS_PSKC, name);
    return n;
}

static bool xml_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The text of <n> (its text and CDATA children) into <buf>: blanks at both
 * ends trimmed, or every blank removed when <squeeze> (base64 may be folded).
 * Returns 0, or -1 when it does not fit.
 */
static int node_text(const xmlNode *n, char *buf, size_t sz, bool squeeze)
{
    size_t k = 0;

    for (const xmlNode *c = n->children; c; c = c->next) {
        if ((c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) || !c->content)
            continue;
        for (const xmlChar *p = c->content; *p; p++) {
            if (xml_blank(*p) && (squeeze || k == 0))
                continue;
            if (k + 1 >= sz) {
                secret_wipe(buf, sz);
                return -1;
            }
            buf[k++] = (char)*p;
        }
    }
    while (k > 0 && xml_blank(buf[k - 1]))
        k--;
    buf[k] = '\0';
    return 0;
}

/* The base64 text of <n> decoded into <out>. <what> names the element in the error. */
static int node_b64(const xmlNode *n, unsigned char *out, size_t outsz, size_t *outlen,
                    const char *what, char **err)
{
    char text[PSKC_B64_MAX + 1];
    int rc = 0;

    if (node_text(n, text, sizeof(text), true) < 0)
        return err_set(err, "%s is longer than %d base64 characters", what, PSKC_B64_MAX);
    if (b64_decode(text, strlen(text), out, outsz, outlen) < 0)
        rc = err_set(err, "%s is not valid base64", what);
    secret_wipe(text, sizeof(text));
    return rc;
}

/* The decimal number in the text of <n>, 0..max. */
static int node_uint(const xmlNode *n, uint64_t max, const char *what, uint64_t *out, char **err)
{
    char text[PSKC_TEXT_MAX];

    if (node_text(n, text, sizeof(text), false) < 0 ||
        tokenfile_parse_uint(text, strlen(text), max, out) < 0)
        return err_set(err, "%s must be a whole number from 0 to %llu", what,
                       (unsigned long long)max);
    return 0;
}

/*
 * The attribute <name> (no namespace) of <n> into <buf>, blanks trimmed.
 * Returns 1 when present, 0 when absent, -1 when longer than the buffer.
 */
static int attr_text(const xmlNode *n, const char *name, char *buf, size_t sz)
{
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    const char *s = (const char *)v;
    size_t len;

    if (!v)
        return 0;
    while (xml_blank(*s))
        s++;
    len = strlen(s);
    while (len > 0 && xml_blank(s[len - 1]))
        len--;
    if (len >= sz) {
        xmlFree(v);
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    xmlFree(v);
    return 1;
}

/* Replaces anything but printable ASCII in <s> with '?', so it may go into a message. */
static const char *printable(char *s)
{
    for (char *p = s; *p; p++) {
        if (*p < ' ' || *p > '~')
            *p = '?';
    }
    if (strlen(s) > 80)
        strcpy(s + 77, "...");
    return s;
}

/* The Algorithm attribute of <n> into <buf>; an error naming <what> when absent. */
static int algorithm_attr(const xmlNode *n, char *buf, size_t sz, const char *what, char **err)
{
    int rc = attr_text(n, "Algorithm", buf, sz);

    if (rc < 0)
        return err_set(err, "the Algorithm of %s is too long", what);
    if (rc == 0 || !*buf)
        return err_set(err, "%s has no Algorithm", what);
    return 0;
}

/* ---- crypto */

/*
 * An xenc EncryptedValue-like element (EncryptedValue or MACKey): its
 * EncryptionMethod's cipher and the decoded CipherValue (IV || ciphertext).
 */
static int enc_parse(const xmlNode *ev, const char *what, const struct pskc_cipher **cipher,
                     unsigned char *cv, size_t cvsz, size_t *cvlen, char **err)
{
    const xmlNode *m = child(ev, NS_XENC, "EncryptionMethod");
    const xmlNode *v = child(child(ev, NS_XENC, "CipherData"), NS_XENC, "CipherValue");
    char uri[PSKC_TEXT_MAX];
    char name[64];

    if (!m)
        return err_set(err, "%s has no EncryptionMethod", what);
    snprintf(name, sizeof(name), "the EncryptionMethod of %s", what);
    if (algorithm_attr(m, uri, sizeof(uri), name, err) < 0)
        return -1;
    *cipher = NULL;
    for (size_t i = 0; i < MFA_ARRAY_LEN(pskc_ciphers); i++) {
        if (strcmp(uri, pskc_ciphers[i].uri) == 0)
            *cipher = &pskc_ciphers[i];
    }
    if (!*cipher)
        return err_set(err, "%s is encrypted with %s; only AES-128/192/256-CBC are supported", what,
                       printable(uri));
    if (!v)
        return err_set(err, "%s has no CipherData/CipherValue", what);
    snprintf(name, sizeof(name), "the CipherValue of %s", what);
    if (node_b64(v, cv, cvsz, cvlen, name, err) < 0)
        return -1;
    /* RFC 6030 §6.1.1: the IV, then at least one block */
    if (*cvlen < 32 || *cvlen % 16 != 0)
        return err_set(err, "the CipherValue of %s is not an IV and whole AES blocks", what);
    return 0;
}

/*
 * AES-CBC decryption of IV||ciphertext with PKCS #7 padding. Returns 0, or -1
 * when the padding is wrong (a wrong key, mostly).
 */
static int cbc_decrypt(const struct pskc_cipher *c, const unsigned char *key,
                       const unsigned char *cv, size_t cvlen, unsigned char *out, size_t *outlen)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0, ok;

    if (!ctx)
        return -1;
    ok = EVP_DecryptInit_ex(ctx, c->evp(), NULL, key, cv) == 1 &&
         EVP_DecryptUpdate(ctx, out, &n1, cv + 16, (int)(cvlen - 16)) == 1 &&
         EVP_DecryptFinal_ex(ctx, out + n1, &n2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        secret_wipe(out, cvlen);
        return -1;
    }
    *outlen = (size_t)(n1 + n2);
    return 0;
}

/* The PRF of PBKDF2-params: HMAC-SHA1 when not named (PKCS #5 default). */
static int pbkdf2_prf(const xmlNode *params, const EVP_MD **md, char **err)
{
    const xmlNode *prf = pbkdf2_child(params, "PRF");
    char uri[PSKC_TEXT_MAX];
    const char *h;
    int rc;

    *md = EVP_sha1();
    if (!prf)
        return 0;
    rc = attr_text(prf, "Algorithm", uri, sizeof(uri));
    if (rc == 0 && node_text(prf, uri, sizeof(uri), false) == 0)
        rc = 1; /* some writers put the URI in the text */
    if (rc < 0)
        return err_set(err, "the PBKDF2 PRF is too long");
    if (rc == 0 || !*uri)
        return 0;
    h = strrchr(uri, '#');
    if (h && strcmp(h, "#hmac-sha1") == 0)
        *md = EVP_sha1();
    else if (h && strcmp(h, "#hmac-sha256") == 0)
        *md = EVP_sha256();
    else if (h && strcmp(h, "#hmac-sha512") == 0)
        *md = EVP_sha512();
    else
        return err_set(err, "the PBKDF2 PRF %s is not supported (HMAC-SHA1, -SHA256, -SHA512)",
                       printable(uri));
    return 0;
}

/* The key length the MACKey's cipher needs, or 0 when there is none. */
static size_t mackey_keylen(const struct pskc_read *x)
{
    const xmlNode *m = child(child(x->mac_method, NS_PSKC, "MACKey"), NS_XENC, "EncryptionMethod");
    char uri[PSKC_TEXT_MAX];

    if (!m || attr_text(m, "Algorithm", uri, sizeof(uri)) != 1)
        return 0;
    for (size_t i = 0; i < MFA_ARRAY_LEN(pskc_ciphers); i++) {
        if (strcmp(uri, pskc_ciphers[i].uri) == 0)
            return pskc_ciphers[i].keylen;
    }
    return 0;
}

/* EncryptionKey/DerivedKey: PBKDF2 of the passphrase into x->key. */
static int derive_key(struct pskc_read *x, const xmlNode *derived, char **err)
{
    const xmlNode *kdm = child(derived, NS_XENC11, "KeyDerivationMethod"), *params, *n;
    unsigned char salt[PSKC_BIN_MAX];
    size_t saltlen = 0;
    uint64_t iter, keylen = 0;
    const EVP_MD *md;
    char uri[PSKC_TEXT_MAX];
    const char *h;

    if (!kdm)
        return err_set(err, "EncryptionKey/DerivedKey has no KeyDerivationMethod");
    if (algorithm_attr(kdm, uri, sizeof(uri), "KeyDerivationMethod", err) < 0)
        return -1;
    h = strrchr(uri, '#');
    if (!h || strcmp(h, "#pbkdf2") != 0)
        return err_set(err, "the key derivation %s is not supported (only PBKDF2)", printable(uri));
    params = child(kdm, NS_PKCS5, "PBKDF2-params");
    if (!params)
        params = child(kdm, NS_XENC11, "PBKDF2-params");
    if (!params)
        return err_set(err, "KeyDerivationMethod has no PBKDF2-params");
    n = pbkdf2_child(pbkdf2_child(params, "Salt"), "Specified");
    if (!n)
        return err_set(err, "PBKDF2-params has no Salt/Specified");
    if (node_b64(n, salt, sizeof(salt), &saltlen, "the PBKDF2 salt", err) < 0)
        return -1;
    if (saltlen == 0 || saltlen > 64)
        return err_set(err, "the PBKDF2 salt must be 1 to 64 bytes");
    n = pbkdf2_child(params, "IterationCount");
    if (!n)
        return err_set(err, "PBKDF2-params has no IterationCount");
    if (node_uint(n, PSKC_ITER_MAX, "the PBKDF2 IterationCount", &iter, err) < 0)
        return -1;
    if (iter == 0)
        return err_set(err, "the PBKDF2 IterationCount is 0");
    n = pbkdf2_child(params, "KeyLength");
    if (n && node_uint(n, 64, "the PBKDF2 KeyLength", &keylen, err) < 0)
        return -1;
    if (!n)
        keylen = mackey_keylen(x);
    if (keylen == 0)
        keylen = 16;
    if (keylen != 16 && keylen != 24 && keylen != 32)
        return err_set(err, "the PBKDF2 KeyLength must be 16, 24 or 32 (an AES key)");
    if (pbkdf2_prf(params, &md, err) < 0)
        return -1;
    if (PKCS5_PBKDF2_HMAC(x->passphrase, (int)strlen(x->passphrase), salt, (int)saltlen, (int)iter,
                          md, (int)keylen, x->key) != 1)
        return err_set(err, "PBKDF2 failed");
    x->keylen = (size_t)keylen;
    x->keyed = true;
    return 0;
}

/* Checks that the derived key fits <c>. */
static int key_fits(const struct pskc_read *x, const struct pskc_cipher *c, const char *what,
                    char **err)
{
    if (c->keylen != x->keylen)
        return err_set(err, "%s needs a %zu-byte key, but the derived key is %zu bytes", what,
                       c->keylen, x->keylen);
    return 0;
}

/* MACMethod: the algorithm, and the MAC key decrypted with the derived key. */
static int mac_setup(struct pskc_read *x, char **err)
{
    const xmlNode *mk = child(x->mac_method, NS_PSKC, "MACKey");
    const struct pskc_cipher *c;
    unsigned char cv[PSKC_BIN_MAX], pt[PSKC_BIN_MAX];
    size_t cvlen, ptlen = 0;
    char uri[PSKC_TEXT_MAX];
    int rc = 0;

    if (algorithm_attr(x->mac_method, uri, sizeof(uri), "MACMethod", err) < 0)
        return -1;
    for (size_t i = 0; i < MFA_ARRAY_LEN(pskc_macs); i++) {
        if (strcmp(uri, pskc_macs[i].uri) == 0)
            x->mac_md = pskc_macs[i].md();
    }
    if (!x->mac_md)
        return err_set(err, "the MACMethod %s is not supported (HMAC-SHA1, -SHA256, -SHA512)",
                       printable(uri));
    if (!mk) {
        /* drafts before RFC 6030 MAC with the encryption key itself */
        memcpy(x->mac_key, x->key, x->keylen);
        x->mac_key_len = x->keylen;
        return 0;
    }
    if (enc_parse(mk, "MACKey", &c, cv, sizeof(cv), &cvlen, err) < 0 ||
        key_fits(x, c, "MACKey", err) < 0)
        return -1;
    x->mac_mismatch = true; /* until the MACKey decrypts to a plausible key */
    if (cbc_decrypt(c, x->key, cv, cvlen, pt, &ptlen) < 0)
        rc = err_set(err, "cannot decrypt the MACKey: wrong passphrase, or the file was altered");
    else if (ptlen == 0 || ptlen > PSKC_MACKEY_MAX)
        rc = err_set(err,
                     "the MACKey must be 1 to %d bytes: wrong passphrase, or the file was "
                     "altered",
                     PSKC_MACKEY_MAX);
    if (rc == 0) {
        x->mac_mismatch = false;
        memcpy(x->mac_key, pt, ptlen);
        x->mac_key_len = ptlen;
    }
    secret_wipe(pt, sizeof(pt));
    return rc;
}

/* Reads EncryptionKey and MACMethod; derives the keys when a passphrase was given. */
static int crypto_setup(struct pskc_read *x, const xmlNode *container, char **err)
{
    const xmlNode *derived;

    x->enc_key = child(container, NS_PSKC, "EncryptionKey");
    x->mac_method = child(container, NS_PSKC, "MACMethod");
    derived = child(x->enc_key, NS_XENC11, "DerivedKey");
    if (!x->enc_key || !derived || !x->passphrase)
        return 0; /* an encrypted value says what is missing */
    if (!*x->passphrase)
        return err_set(err, "the passphrase is empty");
    if (derive_key(x, derived, err) < 0)
        return err_prefix(err, "EncryptionKey");
    if (x->mac_method && mac_setup(x, err) < 0)
        return -1;
    return 0;
}

/*
 * A Data/Secret's EncryptedValue: checks the ValueMAC over IV||ciphertext,
 * then decrypts into <out> (PSKC_BIN_MAX bytes).
 */
static int decrypt_value(struct pskc_read *x, const xmlNode *holder, const xmlNode *ev,
                         unsigned char *out, size_t *outlen, char **err)
{
    const xmlNode *vm = child(holder, NS_PSKC, "ValueMAC");
    const struct pskc_cipher *c;
    unsigned char cv[PSKC_BIN_MAX], mac[EVP_MAX_MD_SIZE], want[PSKC_BIN_MAX];
    unsigned int maclen = 0;
    size_t cvlen, wantlen = 0;

    if (!x->keyed) {
        if (!x->enc_key)
            return err_set(err, "the secret is encrypted, but the file has no EncryptionKey");
        if (!child(x->enc_key, NS_XENC11, "DerivedKey"))
            return err_set(err, "the secret is encrypted under a pre-shared key (KeyName); only "
                                "passphrase-protected (PBKDF2) files can be read");
        return err_set(err, "the secret is encrypted: a passphrase is needed");
    }
    if (!x->mac_md)
        return err_set(err, "the secret is encrypted, but the file has no MACMethod to check it "
                            "with (RFC 6030 §6.1.1)");
    if (enc_parse(ev, "the secret", &c, cv, sizeof(cv), &cvlen, err) < 0 ||
        key_fits(x, c, "the secret", err) < 0)
        return -1;
    if (!vm)
        return err_set(err, "the encrypted secret has no ValueMAC");
    if (node_b64(vm, want, sizeof(want), &wantlen, "the ValueMAC", err) < 0)
        return -1;
    if (!HMAC(x->mac_md, x->mac_key, (int)x->mac_key_len, cv, cvlen, mac, &maclen))
        return err_set(err, "HMAC failed");
    if (wantlen != maclen || !ct_equal(mac, want, maclen)) {
        x->mac_mismatch = true;
        return err_set(err, "the MAC of the secret does not match: wrong passphrase, or the file "
                            "was altered");
    }
    if (cbc_decrypt(c, x->key, cv, cvlen, out, outlen) < 0)
        return err_set(err, "cannot decrypt the secret: the file was altered");
    return 0;
}

/* ---- one key package */

/* Data/<name>/PlainValue as a number 0..max; *out unchanged when absent. */
static int data_uint(const xmlNode *data, const char *name, uint64_t max, uint64_t *out, char **err)
{
    const xmlNode *e = child(data, NS_PSKC, name), *pv;
    char what[48];

    if (!e)
        return 0;
    if (child(e, NS_PSKC, "EncryptedValue"))
        return err_set(err, "an encrypted Data/%s is not supported", name);
    pv = child(e, NS_PSKC, "PlainValue");
    if (!pv)
        return err_set(err, "Data/%s has no PlainValue", name);
    snprintf(what, sizeof(what), "Data/%s", name);
    return node_uint(pv, max, what, out, err);
}

static int kp_secret(struct pskc_read *x, const xmlNode *data, struct token_rec *r, char **err)
{
    const xmlNode *s = child(data, NS_PSKC, "Secret"), *pv, *ev;
    unsigned char buf[PSKC_BIN_MAX];
    size_t len = 0;
    int rc;

    if (!s)
        return err_set(err, "the key has no Data/Secret");
    pv = child(s, NS_PSKC, "PlainValue");
    ev = child(s, NS_PSKC, "EncryptedValue");
    if (pv)
        rc = node_b64(pv, buf, sizeof(buf), &len, "the secret's PlainValue", err);
    else if (ev)
        rc = decrypt_value(x, s, ev, buf, &len, err);
    else
        rc = err_set(err, "Data/Secret has neither a PlainValue nor an EncryptedValue");
    if (rc == 0 && (len < TOKEN_SEED_MIN || len > TOKEN_SEED_MAX))
        rc = err_set(err, "the secret is %zu bytes; it must be %d to %d", len, TOKEN_SEED_MIN,
                     TOKEN_SEED_MAX);
    if (rc == 0) {
        memcpy(r->seed, buf, len);
        r->seed_len = len;
    }
    secret_wipe(buf, sizeof(buf));
    return rc;
}

/* Key/@Algorithm: HOTP or TOTP, with the spellings seen in the wild. */
static int kp_kind(const xmlNode *key, struct token_rec *r, char **err)
{
    static const struct {
        const char *uri;
        enum token_kind kind;
    } uris[] = {
        { NS_PSKC ":hotp", TOKEN_HOTP },
        { NS_PSKC ":totp", TOKEN_TOTP },
        { NS_PSKC "#hotp", TOKEN_HOTP },
        { NS_PSKC "#totp", TOKEN_TOTP },
        { "http://www.ietf.org/keyprov/pskc#hotp", TOKEN_HOTP },
        { "http://www.ietf.org/keyprov/pskc#totp", TOKEN_TOTP },
    };
    char uri[PSKC_TEXT_MAX];

    if (algorithm_attr(key, uri, sizeof(uri), "the Key", err) < 0)
        return -1;
    for (size_t i = 0; i < MFA_ARRAY_LEN(uris); i++) {
        if (strcmp(uri, uris[i].uri) == 0) {
            r->kind = uris[i].kind;
            return 0;
        }
    }
    return err_set(err, "the key algorithm %s is neither HOTP nor TOTP", printable(uri));
}

/* AlgorithmParameters: ResponseFormat (digits) and Suite (the hash). */
static int kp_params(const xmlNode *key, struct token_rec *r, char **err)
{
    const xmlNode *ap = child(key, NS_PSKC, "AlgorithmParameters");
    const xmlNode *rf = child(ap, NS_PSKC, "ResponseFormat");
    const xmlNode *suite = child(ap, NS_PSKC, "Suite");
    char text[PSKC_TEXT_MAX];
    uint64_t digits;
    int rc;

    r->digits = 6;
    if (rf) {
        rc = attr_text(rf, "Encoding", text, sizeof(text));
        if (rc < 0 || (rc == 1 && strcasecmp(text, "DECIMAL") != 0))
            return err_set(err, "the ResponseFormat Encoding must be DECIMAL");
        rc = attr_text(rf, "Length", text, sizeof(text));
        if (rc < 0 || (rc == 1 && tokenfile_parse_uint(text, strlen(text), 1000, &digits) < 0))
            return err_set(err, "the ResponseFormat Length must be a whole number");
        if (rc == 1)
            r->digits = (int)digits;
    }
    snprintf(r->algorithm, sizeof(r->algorithm), "SHA1");
    if (suite) {
        enum otp_algo algo;
        const char *s = text;
        char name[16];
        size_t k = 0;

        if (node_text(suite, text, sizeof(text), false) < 0)
            return err_set(err, "AlgorithmParameters/Suite is too long");
        if (strncasecmp(s, "HMAC-", 5) == 0)
            s += 5;
        for (; *s && k + 1 < sizeof(name); s++) {
            if (*s != '-')
                name[k++] = *s;
        }
        name[k] = '\0';
        if (*s || otp_algo_parse(name, &algo) < 0)
            return err_set(err, "AlgorithmParameters/Suite %s is not SHA1, SHA256 or SHA512",
                           printable(text));
        snprintf(r->algorithm, sizeof(r->algorithm), "%s", otp_algo_name(algo));
    }
    return 0;
}

/* A short text element (serial, user) into <buf>; 0 when absent, 1 present, -1. */
static int kp_text(const xmlNode *n, char *buf, size_t sz, const char *what, char **err)
{
    char text[PSKC_TEXT_MAX * 2];

    if (!n)
        return 0;
    if (node_text(n, text, sizeof(text), false) < 0 || strlen(text) >= sz)
        return err_set(err, "%s is longer than %zu bytes", what, sz - 1);
    memcpy(buf, text, strlen(text) + 1);
    return 1;
}

/* The serial: DeviceInfo/SerialNo, else the Key's Id (RFC 6030 Figure 2 has only that). */
static int kp_serial(const xmlNode *kp, const xmlNode *key, struct token_rec *r, char **err)
{
    const xmlNode *di = child(kp, NS_PSKC, "DeviceInfo");
    int rc = kp_text(child(di, NS_PSKC, "SerialNo"), r->serial, sizeof(r->serial),
                     "DeviceInfo/SerialNo", err);

    if (rc == 0 && key) {
        rc = attr_text(key, "Id", r->serial, sizeof(r->serial));
        if (rc < 0)
            return err_set(err, "the Key Id is longer than %d bytes", TOKEN_SERIAL_MAX);
    }
    if (rc == 0 || (rc == 1 && !*r->serial))
        return err_set(err, "no serial (DeviceInfo/SerialNo)");
    if (rc < 0)
        return -1;
    return 0; /* its syntax is checked with the rest of the record (tokenrec_check) */
}

static int kp_read(struct pskc_read *x, const xmlNode *kp, struct token_rec *r, char **err)
{
    const xmlNode *key = child(kp, NS_PSKC, "Key"), *data;
    uint64_t v;

    if (kp_serial(kp, key, r, err) < 0)
        return -1;
    if (!key)
        return err_set(err, "no Key");
    data = child(key, NS_PSKC, "Data");
    if (kp_kind(key, r, err) < 0 || kp_params(key, r, err) < 0 || kp_secret(x, data, r, err) < 0)
        return -1;
    r->counter = 0;
    if (r->kind == TOKEN_HOTP && data_uint(data, "Counter", UINT64_MAX, &r->counter, err) < 0)
        return -1;
    v = 30;
    if (data_uint(data, "TimeInterval", 100000, &v, err) < 0)
        return -1;
    r->period = r->kind == TOKEN_TOTP ? (int)v : 30;
    v = 0;
    if (data_uint(data, "Time", UINT64_MAX, &v, err) < 0)
        return -1;
    if (v != 0)
        return err_set(err, "Data/Time (T0) is %llu; only 0, the Unix epoch, is supported",
                       (unsigned long long)v);
    if (kp_text(child(key, NS_PSKC, "UserId"), r->user, sizeof(r->user), "UserId", err) < 0 ||
        (!*r->user && kp_text(child(child(kp, NS_PSKC, "DeviceInfo"), NS_PSKC, "UserId"), r->user,
                              sizeof(r->user), "DeviceInfo/UserId", err) < 0))
        return -1;
    return tokenrec_check(r, err);
}

/* ---- the document */

/* SAX hook: a document type declaration stops the parser before its internal subset. */
static void pskc_no_dtd(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    xmlParserCtxtPtr p = ctx;

    (void)name;
    (void)ext;
    (void)sys;
    *(bool *)p->_private = true;
    xmlStopParser(p);
}

/*
 * Wipes the text of every node under <n>: PlainValue secrets must not stay
 * in freed memory. Strings in the document's dictionary are shared, never
 * secrets (libxml2 interns names and short blanks), and left alone.
 */
static void wipe_text(xmlNode *n, xmlDictPtr dict)
{
    for (; n; n = n->next) {
        if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content &&
            !(dict && xmlDictOwns(dict, n->content) == 1))
            secret_wipe(n->content, strlen((const char *)n->content));
        if (n->type == XML_ELEMENT_NODE)
            wipe_text(n->children, dict); /* depth: libxml2 stops at 256 levels */
    }
}

/* Parser messages are read from the context after the parse, never printed. */
#if LIBXML_VERSION >= 21200
static void pskc_quiet(void *ctx, const xmlError *e)
#else
static void pskc_quiet(void *ctx, xmlErrorPtr e)
#endif
{
    (void)ctx;
    (void)e;
}

/* Parses the XML; NULL with *err on a syntax error or a DTD. */
static xmlDoc *pskc_parse(const char *text, size_t len, char **err)
{
    xmlStructuredErrorFunc old_handler;
    void *old_ctx;
    xmlParserCtxtPtr p;
    xmlDoc *doc;
    bool dtd = false;

    xmlInitParser();
    p = xmlNewParserCtxt();
    if (!p) {
        err_set(err, "out of memory");
        return NULL;
    }
    p->_private = &dtd;
    p->sax->internalSubset = pskc_no_dtd;
    p->sax->externalSubset = pskc_no_dtd;
    p->sax->serror = pskc_quiet;
    /*
     * Some messages (encoding errors) bypass the context and go to the
     * thread's handler, which prints them: quiet it for the parse.
     */
    old_handler = xmlStructuredError;
    old_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(NULL, pskc_quiet);
    /* no NOENT (entity expansion), no DTDLOAD, no network */
    doc = xmlCtxtReadMemory(p, text, (int)len, NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                XML_PARSE_NOCDATA);
    xmlSetStructuredErrorFunc(old_ctx, old_handler);
    if (dtd || (doc && (doc->intSubset || doc->extSubset))) {
        err_set(err, "the PSKC file has a document type declaration (DTD), which is not allowed");
    } else if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(p);
        char msg[200];

        snprintf(msg, sizeof(msg), "%s", e && e->message ? e->message : "unknown error");
        msg[strcspn(msg, "\n")] = '\0';
        err_set(err, "the PSKC file is not well-formed XML: line %d: %s", e ? e->line : 0,
                printable(msg));
    }
    if (doc && (dtd || doc->intSubset || doc->extSubset)) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    xmlFreeParserCtxt(p);
    return doc;
}

static int pskc_container(struct pskc_read *x, const xmlNode *root, struct token_set *out,
                          size_t **where, char **err)
{
    size_t idx = 0, start = out->n, cap = 0;
    char version[16];
    int rc;

    if (!root || !is_elem(root, NS_PSKC, "KeyContainer"))
        return err_set(err, "the document is not a PSKC KeyContainer (namespace %s)", NS_PSKC);
    rc = attr_text(root, "Version", version, sizeof(version));
    if (rc < 0 || (rc == 1 && strcmp(version, "1.0") != 0 && strcmp(version, "1") != 0))
        return err_set(err, "the PSKC version is not 1.0");
    if (crypto_setup(x, root, err) < 0)
        return -1;
    for (const xmlNode *kp = root->children; kp; kp = kp->next) {
        struct token_rec r;

        if (!is_elem(kp, NS_PSKC, "KeyPackage"))
            continue;
        idx++;
        memset(&r, 0, sizeof(r));
        rc = kp_read(x, kp, &r, err);
        if (rc == 0 && out->n - start == cap) {
            size_t ncap = cap ? cap * 2 : 64, *w = realloc(*where, ncap * sizeof(*w));

            if (!w)
                rc = err_set(err, "out of memory");
            else
                *where = w, cap = ncap;
        }
        if (rc == 0) {
            (*where)[out->n - start] = idx;
            rc = token_set_add(out, &r, err);
        }
        if (rc < 0 && *r.serial && tokenfile_text_ok(r.serial, strlen(r.serial)))
            err_prefix(err, "key package %zu (serial %s)", idx, r.serial);
        else if (rc < 0)
            err_prefix(err, "key package %zu", idx);
        secret_wipe(&r, sizeof(r));
        if (rc < 0)
            return -1;
    }
    return tokenfile_check_dups(out, start, *where, true, err);
}

/*
 * An upper bound of the nodes libxml2 would build for <text>: every element
 * starts with '<' and every attribute has a '='. libxml2 keeps the whole
 * tree (a few hundred bytes a node), so counting first bounds its memory
 * whatever the bytes hold.
 */
static size_t pskc_nodes(const char *text, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += text[i] == '<' || text[i] == '=';
    return n;
}

int tokenfile_read_pskc(const char *text, size_t len, const char *passphrase, struct token_set *out,
                        char **err)
{
    struct pskc_read x = { .passphrase = passphrase };
    size_t start = out->n, *where = NULL;
    xmlDoc *doc;
    int rc;

    if (len > TOKENFILE_PSKC_MAX_BYTES)
        return err_set(err,
                       "the PSKC file is larger than %u MiB (some 12 000 to 16 000 encrypted "
                       "tokens): split it",
                       TOKENFILE_PSKC_MAX_BYTES >> 20);
    if (pskc_nodes(text, len) > TOKENFILE_PSKC_MAX_NODES)
        return err_set(err,
                       "the PSKC file has more than %u elements and attributes, far more than "
                       "its tokens need; it is refused unread",
                       TOKENFILE_PSKC_MAX_NODES);
    doc = pskc_parse(text, len, err);
    if (!doc)
        return -1;
    rc = pskc_container(&x, xmlDocGetRootElement(doc), out, &where, err);
    if (rc < 0 && x.mac_mismatch)
        rc = TOKENFILE_WRONG_PASSPHRASE;
    secret_wipe(&x, sizeof(x));
    free(where);
    wipe_text(doc->children, doc->dict);
    xmlFreeDoc(doc);
    if (rc < 0)
        tokenfile_rollback(out, start);
    return rc;
}

bool tokenfile_pskc_encrypted(const char *text, size_t len)
{
    return memmem(text, len, "EncryptedValue", 14) != NULL;
}
