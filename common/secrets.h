/*
 * Secrets at rest that are only ever compared: PINs and API keys. Plus the
 * constant-time comparisons and wiping every secret-handling module uses.
 *
 * DESIGN §2: a 4-8 digit PIN has at most 10^8 values, so no slow hash can
 * protect it once the hash leaks; instead a PIN is stored as a salted keyed
 * hash, HMAC-SHA-256 keyed with the cluster pepper (keyfile.h), which never
 * enters the database. The stored text names the pepper id so peppers can be
 * rotated: "pin1$<pepper_id>$<salt>$<mac>", salt 16 random bytes and
 * mac = HMAC-SHA-256(pepper, salt || pin), both base64url unpadded.
 *
 * API keys are long random tokens ("mfa_" + base64url of 32 random bytes, 256
 * bits), so a plain SHA-256 is enough to store them: the database keeps
 * apikey_hash(), a lookup recomputes it.
 */
#ifndef MFA_SECRETS_H
#define MFA_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct keyring;

/* True when the <n> bytes at a and b are equal; time depends only on n. */
bool ct_equal(const void *a, const void *b, size_t n);

/*
 * True when the strings are equal; time depends on their lengths, not on
 * their content. NULL equals nothing.
 */
bool ct_streq(const char *a, const char *b);

/* Overwrites <n> bytes at <p> in a way the compiler keeps. NULL is fine. */
void secret_wipe(void *p, size_t n);

/* Wipes the NUL-terminated string <s> in place (NULL is fine): for secrets in
 * buffers someone else frees, such as a parsed JSON body's strings. */
void secret_wipe_str(const char *s);

/* True when <pin> is 4 to 8 ASCII digits. */
bool pin_syntax_ok(const char *pin);

/* "pin1$" + id (<= 10 digits) + "$" + 22 + "$" + 43 + NUL */
#define PIN_HASH_MAX (5 + 10 + 1 + 22 + 1 + 43 + 1)

/*
 * Hashes <pin> (must pass pin_syntax_ok) with a fresh salt and the current
 * pepper of <kr>, writing the stored form and a NUL to <out>; outsz must be
 * at least PIN_HASH_MAX. Returns 0, or -1 with *err set (bad PIN syntax, no
 * pepper, small buffer, RNG failure).
 */
int pin_hash(const struct keyring *kr, const char *pin, char *out, size_t outsz,
             char **err) MFA_MUSTCHECK;

/*
 * Verifies <pin> against a <stored> pin_hash() value (untrusted text, parsed
 * strictly). Returns 1 on a match, 0 when the PIN does not match or is not
 * 4-8 digits, -1 with *err set when <stored> is malformed or names a pepper
 * id <kr> does not have. The MAC is compared in constant time.
 */
int pin_verify(const struct keyring *kr, const char *pin, const char *stored,
               char **err) MFA_MUSTCHECK;

/*
 * True when <stored> was not made with the current pepper of <kr> (so after a
 * successful pin_verify() the caller should store a fresh pin_hash()). A
 * malformed value also needs a rehash: true.
 */
bool pin_needs_rehash(const struct keyring *kr, const char *stored);

/* "mfa_" + 43 + NUL */
#define APIKEY_MAX (4 + 43 + 1)

/*
 * Writes a new API key ("mfa_" + base64url of 32 random bytes) and a NUL to
 * <out> (outsz >= APIKEY_MAX). Returns 0, or -1 (small buffer, RNG failure).
 * The key is shown once to the user; store only apikey_hash() of it.
 */
int apikey_new(char *out, size_t outsz) MFA_MUSTCHECK;

/*
 * SHA-256 of the string <key> (whatever it is: the lookup of a presented key
 * hashes it as given) as 64 lowercase hex digits and a NUL. On the (never
 * seen) failure of the digest, writes "" which matches no stored hash.
 */
void apikey_hash(const char *key, char out[65]);

/* base64url of 32 bytes + NUL */
#define DB_PASSWORD_MAX (43 + 1)

/*
 * The password of database role <role>, the same on every member and stored
 * nowhere: base64url(HMAC-SHA-256(oldest pepper key of <kr>,
 * "mfa-appliance db password" NUL <role>)). The oldest key, so rotating in a
 * new pepper does not change it. Writes it and a NUL to <out> (outsz >=
 * DB_PASSWORD_MAX). Returns 0, or -1 with *err (no pepper, small buffer).
 */
int db_password(const struct keyring *kr, const char *role, char *out, size_t outsz,
                char **err) MFA_MUSTCHECK;

#endif
