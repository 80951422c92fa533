/*
 * The key file: the secrets each appliance keeps outside the database.
 *
 * It holds the PIN pepper keys (HMAC keys for PIN hashes, see secrets.h) and
 * the seal keys (AES-256-GCM keys for OTP seeds, see seal.h). It is a
 * libconfig file, identical on every cluster member, mode 0600:
 *
 *   version = 1;
 *   pepper = ( { id = 1; key = "<base64 of 32 bytes>"; } );
 *   seal = ( { id = 1; key = "<base64 of 32 bytes>"; } );
 *
 * Every key has an id (1 .. 2^31, unique per kind) that is written next to
 * each hash or sealed value, so keys can be rotated: the current key of a kind
 * is the one with the highest id and is used for new values; older keys still
 * verify and open old ones. A keyring never has more than KEYRING_MAX keys of
 * a kind. Keys are wiped from memory by keyring_wipe().
 */
#ifndef MFA_KEYFILE_H
#define MFA_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

enum key_kind {
    KEY_PEPPER = 0,
    KEY_SEAL,
};

#define KEY_LEN          32
#define KEYFILE_SIZE_MAX 65536 /* bytes of a key file's text, at most */
#define KEYRING_MAX      8
#define KEYRING_ID_MAX   2147483648u /* 2^31 */

struct key_entry {
    uint32_t id;
    unsigned char key[KEY_LEN];
};

struct keyring {
    struct key_entry pepper[KEYRING_MAX];
    size_t npepper;
    struct key_entry seal[KEYRING_MAX];
    size_t nseal;
};

/*
 * Creates a key file at <path> with one random pepper and one random seal
 * key, both id 1. Refuses an existing path (O_CREAT|O_EXCL, mode 0600, no
 * symlink followed), fsyncs the file and its directory. Returns 0, or -1 with
 * *err set; on failure nothing is left at <path>.
 */
int keyfile_create(const char *path, char **err) MFA_MUSTCHECK;

/*
 * Loads and validates the key file at <path> into *kr. Refuses a file that is
 * not a regular file or whose mode gives group or others any access
 * (mode & 077), larger than 64 KiB, or that keyfile_parse() rejects. Errors
 * name the file and, for content errors, the line and the setting. Returns 0,
 * or -1 with *err set and *kr wiped. Call keyring_wipe() when done.
 */
int keyfile_load(const char *path, struct keyring *kr, char **err) MFA_MUSTCHECK;

/*
 * Parses key file text (NUL-terminated, untrusted). Rules: version = 1;
 * "pepper" and "seal" lists both present, non-empty, at most KEYRING_MAX
 * groups each; each group exactly { id, key } with id an integer in
 * 1 .. 2^31 unique within its list and key a string of canonical base64 of
 * exactly 32 bytes; no other settings; no @include. An integer above
 * 2147483647 must carry libconfig's L suffix (id = 2147483648L;): libconfig
 * 1.5 would wrap it silently, so such a literal without L is rejected.
 * Returns 0, or -1 with
 * *err naming the line and setting (e.g. "line 4: pepper[0].key: ...") and
 * *kr wiped.
 */
int keyfile_parse(const char *text, struct keyring *kr, char **err) MFA_MUSTCHECK;

/*
 * Adds a fresh random key of <kind> to the key file at <path>, with id = the
 * highest id of that kind + 1 (stored in *new_id), which becomes current. The
 * file is loaded with keyfile_load()'s checks, then replaced atomically: a
 * temporary file in the same directory (mode and owner of the old file),
 * fsync, rename, fsync of the directory. Comments in the old file are not
 * kept. Fails when the kind already has KEYRING_MAX keys or the id would pass
 * 2^31. Not safe against a concurrent rotation of the same file. Returns 0,
 * or -1 with *err set; the file is then unchanged, except when only the final
 * directory fsync failed (the new file is in place but may not be durable).
 */
int keyfile_rotate(const char *path, enum key_kind kind, uint32_t *new_id,
                   char **err) MFA_MUSTCHECK;

/*
 * The key file text of <kr> (header comment <comment>, "" for none; each
 * line of it must start with "#"), as keyfile_create() and keyfile_rotate()
 * write it and keyfile_parse() reads it back: ids above 2^31 - 1 carry
 * libconfig's L suffix. Returns its length, or -1 when it does not fit
 * <size>. <buf> holds keys: wipe it (OPENSSL_cleanse) when done.
 */
int keyfile_format(const struct keyring *kr, const char *comment, char *buf,
                   size_t size) MFA_MUSTCHECK;

/* The key of <kind> with the highest id, or NULL if there is none. */
const struct key_entry *keyring_current(const struct keyring *kr, enum key_kind kind);

/* The key of <kind> with id <id>, or NULL. */
const struct key_entry *keyring_find(const struct keyring *kr, enum key_kind kind, uint32_t id);

/*
 * True when both keyrings hold the same keys under the same ids, in any
 * order. Keys are compared in constant time (CRYPTO_memcmp).
 */
bool keyring_equal(const struct keyring *a, const struct keyring *b);

/* Wipes all keys (OPENSSL_cleanse) and empties the keyring. NULL is fine. */
void keyring_wipe(struct keyring *kr);

/*
 * Parses a key id as it is written in hashes and sealed values: <len>
 * characters, decimal, no sign, no leading zero, 1 .. 2^31. Returns 0 and
 * sets *id, or -1.
 */
int keyring_id_parse(const char *s, size_t len, uint32_t *id) MFA_MUSTCHECK;

#endif
