/*
 * The backup file of `mfactl backup` (docs/backup.md): a pg_dump of the
 * cluster's database and its key file, both encrypted under keys derived
 * from an operator's passphrase, behind a manifest anyone can read.
 *
 *   MFA-BACKUP 1\n
 *   {manifest JSON, one line of at most BACKUP_MANIFEST_MAX bytes}\n
 *   <dump_bytes bytes: the pg_dump -Fc output, AES-256-CTR>
 *   MAC <64 hex digits>\n
 *
 * scrypt(passphrase, salt) gives 96 bytes: the dump's AES-256-CTR key, the
 * key file's AES-256-GCM key and the HMAC-SHA-256 key of the trailer, which
 * covers every byte before it (encrypt-then-MAC). The manifest holds the
 * scrypt parameters and salt, the sealed key file, a passphrase check value
 * (an HMAC under the MAC key), the dump's size and the SHA-256 of the dump
 * bytes as stored (ciphertext: a checksum anyone can recompute), plus where
 * and when the backup was taken. So the file alone reveals no PIN, seed,
 * username or phone number.
 *
 * Reading checks, in order: the magic line, the manifest (bounded, typed),
 * the passphrase, the dump's length, the MAC (constant time), the checksum.
 * Nothing the file holds is used — the key file is not opened, the manifest
 * not returned — before the MAC verifies. The dump streams through fixed
 * buffers both ways: a dump of many gigabytes is never held in memory.
 */
#ifndef MFA_APPLIANCE_BACKUP_FILE_H
#define MFA_APPLIANCE_BACKUP_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyfile.h"
#include "mem.h"

#define BACKUP_MAGIC        "MFA-BACKUP 1\n"
#define BACKUP_MANIFEST_MAX 65536
#define BACKUP_KEYFILE_MAX  KEYFILE_SIZE_MAX
#define BACKUP_PASS_MIN     8
#define BACKUP_PASS_WARN    12 /* mfactl warns below this: the file can be attacked offline */
#define BACKUP_MAC_LINE     69 /* "MAC " + 64 + "\n" */

/* scrypt's cost: N (a power of two), r, p. */
struct backup_kdf {
    uint64_t n;
    uint32_t r, p;
};

/*
 * What `mfactl backup` uses: N = 2^17, r = 8 (OWASP's scrypt minimum), 128
 * MiB of memory and about a third of a second, for a file that can be
 * attacked offline for as long as it exists. The reader accepts any N up to
 * 2^20 within 256 MiB, so files of the older N = 2^15 still open.
 */
#define BACKUP_KDF_DEFAULT ((struct backup_kdf){ .n = 1u << 17, .r = 8, .p = 1 })

/* What the manifest says besides the cryptography. */
struct backup_manifest {
    char cluster[64];
    char member[32];
    char role[16];       /* "primary" or "standby": what the member was when dumped */
    char created_at[32]; /* UTC, ISO 8601: 2026-11-23T01:02:03Z */
    char release[32];    /* MFA_VERSION of the mfactl that wrote it */
    int schema_version;
    long long users, oath_tokens, auth_log; /* row counts, taken just before the dump */
    uint64_t dump_bytes;
    char dump_sha256[65]; /* lowercase hex of the stored (encrypted) dump */
};

struct backup_writer;

/*
 * A writer for a backup under <pass> (at least BACKUP_PASS_MIN bytes) with
 * scrypt cost <kdf>: fresh salt and IVs, keys derived. Returns it, or NULL
 * with *err. Free with backup_writer_free().
 */
struct backup_writer *backup_writer_new(const char *pass, const struct backup_kdf *kdf,
                                        char **err) MFA_MUSTCHECK;

/* Encrypts the next <len> bytes of the dump in place, counting and hashing them. */
int backup_writer_encrypt(struct backup_writer *w, unsigned char *buf, size_t len) MFA_MUSTCHECK;

/*
 * Writes the whole backup to <out_fd>: the magic line, the manifest (<m>'s
 * fields; dump_bytes and dump_sha256 are the writer's own), the key file
 * text <keyfile> sealed, the encrypted dump read back from <body_fd> (from
 * its start; it holds what backup_writer_encrypt() produced) and the MAC
 * line. Fills m->dump_bytes and m->dump_sha256. Returns 0, or -1 with *err.
 */
int backup_writer_finish(struct backup_writer *w, struct backup_manifest *m, const char *keyfile,
                         int body_fd, int out_fd, char **err) MFA_MUSTCHECK;

/* Wipes the keys and frees <w>; NULL is fine. */
void backup_writer_free(struct backup_writer *w);

/*
 * Reads and verifies the backup on <in_fd> with <pass>. The dump is
 * decrypted into <dump_fd> as it streams (-1: verify only); its content
 * counts only when this returns 0 — on failure the caller discards it.
 * On success fills *m and <keyfile> (a NUL-terminated text of at most
 * <keyfile_size> - 1 bytes; wipe it when done) and returns 0. When the
 * file is at fault, -1 with *err, one sentence: "not an MFA Appliance
 * backup ...", "truncated: ...", "wrong passphrase", "the backup was
 * altered or is corrupt (MAC mismatch)". When reading <in_fd>, writing
 * <dump_fd> or memory failed, -2 with *err: the file may be fine.
 */
int backup_read(int in_fd, const char *pass, int dump_fd, struct backup_manifest *m, char *keyfile,
                size_t keyfile_size, char **err) MFA_MUSTCHECK;

#endif
