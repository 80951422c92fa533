/*
 * Sealing of OTP seeds at rest: AES-256-GCM under the current seal key of the
 * key file (keyfile.h), so a database dump alone does not reveal any seed.
 *
 * Sealed text: "s1$<seal_key_id>$<base64url(nonce || ciphertext || tag)>",
 * nonce 12 random bytes, tag 16 bytes. The additional authenticated data is
 * "s1$<seal_key_id>$" followed by the caller's <aad> (e.g. the token serial),
 * so neither the key id nor the record a value belongs to can be changed: a
 * sealed seed copied to another row, or relabelled with another key id, does
 * not open. Plaintexts are at most SEAL_PLAIN_MAX bytes.
 */
#ifndef MFA_SEAL_H
#define MFA_SEAL_H

#include <stddef.h>

#include "mem.h"

struct keyring;

#define SEAL_PLAIN_MAX 4096
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN   16

/*
 * Seals <len> bytes (1 .. SEAL_PLAIN_MAX) of <plain> with the current seal
 * key, binding <aad> (a NUL-terminated string; NULL means ""). On success
 * returns 0 and sets *out to a malloc'd NUL-terminated sealed text the caller
 * frees; on failure returns -1 with *out NULL and *err set.
 */
int seal_encrypt(const struct keyring *kr, const unsigned char *plain, size_t len, const char *aad,
                 char **out, char **err) MFA_MUSTCHECK;

/*
 * Opens <sealed> (untrusted text, parsed strictly) with the seal key it names
 * and the same <aad> as at sealing, writing the plaintext to <plain> (at most
 * <plainsz> bytes) and its length to *plainlen. Returns 0, or -1 with *err set
 * when the value is malformed, names an unknown key id, fails authentication
 * (tampered, wrong aad, wrong key) or does not fit in <plainsz>; <plain> is
 * then wiped. The caller wipes <plain> (secret_wipe) when done with the seed.
 */
int seal_decrypt(const struct keyring *kr, const char *sealed, const char *aad,
                 unsigned char *plain, size_t plainsz, size_t *plainlen, char **err) MFA_MUSTCHECK;

#endif
