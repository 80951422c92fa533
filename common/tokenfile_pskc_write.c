/*
 * PSKC (RFC 6030) token files: the writer (tokenfile.h). The structure is
 * RFC 6030 §6.2 (Figure 7) with stronger parameters: PBKDF2-HMAC-SHA256 of
 * the passphrase (pkcs5:PBKDF2-params under xenc11:DerivedKey) to an
 * AES-256-CBC key, a random 32-byte HMAC-SHA256 MAC key encrypted under it,
 * and per secret an EncryptedValue (a fresh IV each) with the ValueMAC over
 * IV || ciphertext. It is made to be read by other PSKC readers
 * (python-pskc, pskctool) as RFC 6030 describes; the repository's tests
 * check it with this reader and an independent ElementTree parser only. The
 * derived key, the MAC key and the base64 of every secret are wiped
 * after use.
 */
#include "tokenfile.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "b64.h"
#include "errmsg.h"
#include "secrets.h"
#include "tokenfile_priv.h"

/* Writer parameters (tokenfile.h). */
#define PSKC_WRITE_ITER 600000
#define PSKC_WRITE_SALT 16
#define PSKC_BIN_MAX    256 /* the largest value encrypted: a seed or the MAC key */

/* AES-256-CBC under a fresh random IV into <out> (IV || ciphertext, PKCS #7 padding). */
static int cbc_encrypt(const unsigned char *key, const unsigned char *in, size_t inlen,
                       unsigned char *out, size_t *outlen)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0, ok;

    if (!ctx)
        return -1;
    ok = RAND_bytes(out, 16) == 1 &&
         EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, out) == 1 &&
         EVP_EncryptUpdate(ctx, out + 16, &n1, in, (int)inlen) == 1 &&
         EVP_EncryptFinal_ex(ctx, out + 16 + n1, &n2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return -1;
    *outlen = 16 + (size_t)(n1 + n2);
    return 0;
}

/* Text with the five XML special characters escaped. */
static void xml_put(struct tokenfile_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            tokenfile_buf_str(b, "&amp;");
            break;
        case '<':
            tokenfile_buf_str(b, "&lt;");
            break;
        case '>':
            tokenfile_buf_str(b, "&gt;");
            break;
        case '"':
            tokenfile_buf_str(b, "&quot;");
            break;
        case '\'':
            tokenfile_buf_str(b, "&apos;");
            break;
        default:
            tokenfile_buf_add(b, s, 1);
        }
    }
}

/* <bin> as base64 into the buffer. */
static void b64_put(struct tokenfile_buf *b, const unsigned char *bin, size_t n)
{
    char text[B64_ENCODED_LEN(PSKC_BIN_MAX) + 1];

    if (n > PSKC_BIN_MAX || b64_encode(bin, n, text, sizeof(text)) < 0) {
        b->failed = true;
        return;
    }
    tokenfile_buf_str(b, text);
    secret_wipe(text, sizeof(text));
}

/*
 * An EncryptedValue-like body: EncryptionMethod and CipherData of <pt> under
 * <key> (AES-256-CBC, a fresh IV). The CipherValue (IV || ciphertext, what
 * the ValueMAC covers) is left in <cv> (16 + PSKC_BIN_MAX bytes).
 */
static int put_encrypted(struct tokenfile_buf *b, const char *indent, const unsigned char *key,
                         const unsigned char *pt, size_t ptlen, unsigned char *cv, size_t *cvlen)
{
    if (ptlen > PSKC_BIN_MAX - 16 || cbc_encrypt(key, pt, ptlen, cv, cvlen) < 0)
        return -1;
    tokenfile_buf_printf(b, "%s<xenc:EncryptionMethod Algorithm=\"%saes256-cbc\"/>\n", indent,
                         NS_XENC);
    tokenfile_buf_printf(b, "%s<xenc:CipherData>\n%s  <xenc:CipherValue>", indent, indent);
    b64_put(b, cv, *cvlen);
    tokenfile_buf_printf(b, "</xenc:CipherValue>\n%s</xenc:CipherData>\n", indent);
    return 0;
}

static void put_header(struct tokenfile_buf *b, const unsigned char *salt)
{
    tokenfile_buf_str(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<pskc:KeyContainer Version=\"1.0\"\n"
                         "    xmlns:pskc=\"" NS_PSKC "\"\n"
                         "    xmlns:xenc=\"" NS_XENC "\"\n"
                         "    xmlns:xenc11=\"" NS_XENC11 "\"\n"
                         "    xmlns:pkcs5=\"" NS_PKCS5 "\">\n"
                         "  <pskc:EncryptionKey>\n"
                         "    <xenc11:DerivedKey>\n"
                         "      <xenc11:KeyDerivationMethod Algorithm=\"" NS_PKCS5 "pbkdf2\">\n"
                         "        <pkcs5:PBKDF2-params>\n"
                         "          <Salt>\n"
                         "            <Specified>");
    b64_put(b, salt, PSKC_WRITE_SALT);
    tokenfile_buf_printf(b,
                         "</Specified>\n"
                         "          </Salt>\n"
                         "          <IterationCount>%d</IterationCount>\n"
                         "          <KeyLength>32</KeyLength>\n"
                         "          <PRF Algorithm=\"%shmac-sha256\"/>\n"
                         "        </pkcs5:PBKDF2-params>\n"
                         "      </xenc11:KeyDerivationMethod>\n"
                         "    </xenc11:DerivedKey>\n"
                         "  </pskc:EncryptionKey>\n",
                         PSKC_WRITE_ITER, NS_DSMORE);
}

/* One KeyPackage: the secret encrypted under <key> and MAC'd with <mac_key>. */
static int put_key_package(struct tokenfile_buf *b, const struct token_rec *r,
                           const unsigned char *key, const unsigned char *mac_key)
{
    unsigned char cv[16 + PSKC_BIN_MAX], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t cvlen = 0;

    tokenfile_buf_str(b, "  <pskc:KeyPackage>\n    <pskc:DeviceInfo>\n      <pskc:SerialNo>");
    xml_put(b, r->serial);
    tokenfile_buf_str(b, "</pskc:SerialNo>\n    </pskc:DeviceInfo>\n    <pskc:Key Id=\"");
    xml_put(b, r->serial);
    tokenfile_buf_printf(b,
                         "\" Algorithm=\"%s:%s\">\n"
                         "      <pskc:AlgorithmParameters>\n"
                         "        <pskc:Suite>%s</pskc:Suite>\n"
                         "        <pskc:ResponseFormat Encoding=\"DECIMAL\" Length=\"%d\"/>\n"
                         "      </pskc:AlgorithmParameters>\n"
                         "      <pskc:Data>\n"
                         "        <pskc:Secret>\n"
                         "          <pskc:EncryptedValue>\n",
                         NS_PSKC, r->kind == TOKEN_HOTP ? "hotp" : "totp", r->algorithm, r->digits);
    if (put_encrypted(b, "            ", key, r->seed, r->seed_len, cv, &cvlen) < 0 ||
        !HMAC(EVP_sha256(), mac_key, 32, cv, cvlen, mac, &maclen))
        return -1;
    tokenfile_buf_str(b, "          </pskc:EncryptedValue>\n          <pskc:ValueMAC>");
    b64_put(b, mac, maclen);
    tokenfile_buf_str(b, "</pskc:ValueMAC>\n        </pskc:Secret>\n");
    if (r->kind == TOKEN_HOTP)
        tokenfile_buf_printf(b,
                             "        <pskc:Counter>\n"
                             "          <pskc:PlainValue>%llu</pskc:PlainValue>\n"
                             "        </pskc:Counter>\n",
                             (unsigned long long)r->counter);
    else
        tokenfile_buf_printf(b,
                             "        <pskc:TimeInterval>\n"
                             "          <pskc:PlainValue>%d</pskc:PlainValue>\n"
                             "        </pskc:TimeInterval>\n",
                             r->period);
    tokenfile_buf_str(b, "      </pskc:Data>\n");
    if (*r->user) {
        tokenfile_buf_str(b, "      <pskc:UserId>");
        xml_put(b, r->user);
        tokenfile_buf_str(b, "</pskc:UserId>\n");
    }
    tokenfile_buf_str(b, "    </pskc:Key>\n  </pskc:KeyPackage>\n");
    return 0;
}

int tokenfile_write_pskc(const struct token_set *s, const char *passphrase, char **out, size_t *len,
                         char **err)
{
    struct tokenfile_buf b = { 0 };
    unsigned char salt[PSKC_WRITE_SALT], key[32], mac_key[32], cv[16 + PSKC_BIN_MAX];
    size_t cvlen;
    int rc = 0;

    if (!passphrase || !*passphrase)
        return err_set(err, "a PSKC file is only written with a passphrase");
    for (size_t i = 0; i < s->n; i++) {
        if (tokenrec_check(&s->v[i], err) < 0)
            return err_prefix(err, "token %zu", i + 1);
    }
    if (RAND_bytes(salt, sizeof(salt)) != 1 || RAND_bytes(mac_key, sizeof(mac_key)) != 1)
        return err_set(err, "no random bytes");
    if (PKCS5_PBKDF2_HMAC(passphrase, (int)strlen(passphrase), salt, sizeof(salt), PSKC_WRITE_ITER,
                          EVP_sha256(), sizeof(key), key) != 1)
        return err_set(err, "PBKDF2 failed");
    put_header(&b, salt);
    tokenfile_buf_printf(&b,
                         "  <pskc:MACMethod Algorithm=\"%shmac-sha256\">\n"
                         "    <pskc:MACKey>\n",
                         NS_DSMORE);
    if (put_encrypted(&b, "      ", key, mac_key, sizeof(mac_key), cv, &cvlen) < 0)
        rc = err_set(err, "encryption failed");
    tokenfile_buf_str(&b, "    </pskc:MACKey>\n  </pskc:MACMethod>\n");
    for (size_t i = 0; rc == 0 && i < s->n; i++) {
        if (put_key_package(&b, &s->v[i], key, mac_key) < 0)
            rc = err_set(err, "token %zu: encryption failed", i + 1);
    }
    tokenfile_buf_str(&b, "</pskc:KeyContainer>\n");
    secret_wipe(key, sizeof(key));
    secret_wipe(mac_key, sizeof(mac_key));
    if (rc < 0) {
        tokenfile_buf_wipe(&b);
        return -1;
    }
    return tokenfile_buf_take(&b, out, len, err);
}
