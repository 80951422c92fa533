/*
 * OATH token seed files: reading and writing the two formats tokens travel
 * in between systems (docs/tokens.md).
 *
 * - CSV seed files: a header row naming the columns (any order, names
 *   case-insensitive), one token a row:
 *     serial      required, 1-128 characters of UTF-8 text, no space (ASCII or
 *                 Unicode) or control character
 *     seed        required, hex (an even number of [0-9a-fA-F]) or base32
 *                 (RFC 4648, '=' padding and spaces optional, any case);
 *                 "secret" is a synonym. 10 to 64 bytes once decoded
 *     encoding    optional, "hex" or "base32" when the seed could be either;
 *                 by default hex when it is valid hex, else base32
 *     type        required, "totp" or "hotp" ("kind" is a synonym)
 *     digits      optional, 6-8 (default 6)
 *     period      optional, TOTP seconds 10-300 (default 30)
 *     counter     optional, HOTP next counter 0 to 2^63-1 (default 0)
 *     algorithm   optional, SHA1 | SHA256 | SHA512 (default SHA1)
 *     user        optional, the username to assign the token to
 *   Quoted fields ("a,b", "" inside) as RFC 4180; CRLF or LF; a UTF-8 BOM is
 *   skipped; blank lines are skipped; an unknown column is an error. Blanks
 *   around an unquoted field are trimmed; a row must have as many fields as
 *   the header; a field is at most 1024 bytes. A header alone is a valid
 *   file of no tokens.
 *
 * - PSKC (RFC 6030) XML, parsed with libxml2 (no network, no DTD, no
 *   entity expansion): KeyPackage / DeviceInfo/SerialNo (else Key/@Id),
 *   Key/@Algorithm (urn:ietf:params:xml:ns:keyprov:pskc:hotp or :totp; the
 *   "#hotp"/"#totp" spellings too), AlgorithmParameters/ResponseFormat/@Length
 *   (6 when absent), AlgorithmParameters/Suite (SHA1 when absent), Data/Secret
 *   as PlainValue or EncryptedValue, Data/Counter, Data/TimeInterval,
 *   Key/UserId (else DeviceInfo/UserId). Elements are matched by namespace,
 *   so any prefixes work.
 *   Encrypted secrets: a key derived from a passphrase (EncryptionKey /
 *   DerivedKey, PBKDF2 with PRF HMAC-SHA1, -SHA256 or -SHA512) with
 *   AES-128-CBC, AES-192-CBC or AES-256-CBC (IV first in CipherValue), and
 *   a MACMethod (HMAC-SHA1, -SHA256, -SHA384 or -SHA512 with an encrypted
 *   MACKey; without a MACKey, the encryption key itself, as some older
 *   writers do) whose ValueMAC of every encrypted value is checked (an encrypted
 *   secret without a MACMethod is refused). A pre-shared key
 *   (KeyName) is refused with a clear error. Data/Time (T0) other than 0
 *   is refused (the cluster counts from the Unix epoch).
 *
 * Every error is a sentence naming the line (CSV) or the key package
 * (PSKC, 1-based, with its serial when known) and the field. A file is
 * read whole or not at all: the first bad record fails the read.
 */
#ifndef MFA_TOKENFILE_H
#define MFA_TOKENFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* In bytes: the schema allows 128 characters, each up to 4 bytes of UTF-8. */
#define TOKEN_SERIAL_MAX     512
#define TOKEN_USER_MAX       512
#define TOKEN_TEXT_CHARS_MAX 128
#define TOKEN_SEED_MIN       10
#define TOKEN_SEED_MAX       64
#define TOKENFILE_MAX_BYTES  (64u * 1024 * 1024) /* bigger files are refused */
/*
 * PSKC is parsed into a whole tree, so it is bounded harder: 16 MiB (an
 * encrypted KeyPackage is about 1.4 KB: some 12 000 tokens) and at most
 * 1 000 000 elements and attributes, counted before parsing (about 12 a
 * token). The worst file within both bounds stays under about 0.5 GB of tree
 * (docs/tokens.md has the measure).
 */
#define TOKENFILE_PSKC_MAX_BYTES (16u * 1024 * 1024)
#define TOKENFILE_PSKC_MAX_NODES 1000000u
#define TOKENFILE_MAX_TOKENS     200000

enum token_kind {
    TOKEN_TOTP = 0,
    TOKEN_HOTP,
};

struct token_rec {
    char serial[TOKEN_SERIAL_MAX + 1];
    enum token_kind kind;
    char algorithm[8]; /* "SHA1", "SHA256", "SHA512" */
    int digits;        /* 6..8 */
    int period;        /* TOTP: 10..300 seconds */
    uint64_t counter;  /* HOTP: the next counter */
    unsigned char seed[TOKEN_SEED_MAX];
    size_t seed_len;               /* TOKEN_SEED_MIN..TOKEN_SEED_MAX */
    char user[TOKEN_USER_MAX + 1]; /* "" when the file names none */
};

struct token_set {
    struct token_rec *v;
    size_t n, cap;
};

enum tokenfile_format {
    TOKENFILE_UNKNOWN = 0,
    TOKENFILE_CSV,
    TOKENFILE_PSKC,
};

/*
 * Appends a copy of <r> to <s> (at most TOKENFILE_MAX_TOKENS in all).
 * Returns 0 or -1 with *err (out of memory, too many).
 */
int token_set_add(struct token_set *s, const struct token_rec *r, char **err) MFA_MUSTCHECK;

/* Wipes every seed and frees the set; it is empty and reusable after. */
void token_set_free(struct token_set *s);

/* True when the PSKC text holds encrypted secrets (EncryptedValue, RFC 6030 §6). */
bool tokenfile_pskc_encrypted(const char *text, size_t len);

/* PSKC when the text (after a BOM and white space) starts with '<', else CSV. */
enum tokenfile_format tokenfile_detect(const char *text, size_t len);

/* Parses a CSV seed file into <out> (appended to). Returns 0, or -1 with *err. */
int tokenfile_read_csv(const char *text, size_t len, struct token_set *out,
                       char **err) MFA_MUSTCHECK;

/*
 * Parses a PSKC file into <out> (appended to). <passphrase>: for encrypted
 * secrets; NULL when none was given (an encrypted file then fails with a
 * sentence saying a passphrase is needed). A wrong passphrase fails the MAC
 * check: "wrong passphrase, or the file was altered". Returns 0,
 * TOKENFILE_WRONG_PASSPHRASE with *err when a MAC does not match (a wrong
 * passphrase or an altered file), or -1 with *err for any other fault.
 */
#define TOKENFILE_WRONG_PASSPHRASE (-2)
int tokenfile_read_pskc(const char *text, size_t len, const char *passphrase, struct token_set *out,
                        char **err) MFA_MUSTCHECK;

/*
 * Writes <s> as a CSV seed file (header serial,type,seed,encoding,digits,
 * period,counter,algorithm,user; seeds hex, in clear) into a malloc'd
 * *out of *len bytes, NUL-terminated. The caller wipes and frees it.
 * Returns 0 or -1 with *err.
 */
int tokenfile_write_csv(const struct token_set *s, char **out, size_t *len,
                        char **err) MFA_MUSTCHECK;

/*
 * Writes <s> as PSKC 1.0 whose secrets are encrypted under <passphrase>
 * (non-empty): PBKDF2-HMAC-SHA256 (600000 iterations, 16-byte random salt)
 * to an AES-256-CBC key, a random HMAC-SHA256 MAC key encrypted under it,
 * a ValueMAC per secret; counters and periods in PlainValue, the user in
 * UserId. Into a malloc'd, NUL-terminated *out of *len bytes. Returns 0 or
 * -1 with *err.
 */
int tokenfile_write_pskc(const struct token_set *s, const char *passphrase, char **out, size_t *len,
                         char **err) MFA_MUSTCHECK;

#endif
