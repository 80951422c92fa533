/*
 * Fuzz target for the backup file reader and verifier (appliance/backup_file.h):
 * every byte of a backup is untrusted until its MAC verifies.
 *
 * The input goes to backup_read() through a memory file, with the passphrase
 * the seeds were written with, so valid seeds reach scrypt, the MAC and the
 * decryption (their scrypt cost is the smallest the reader accepts). Besides
 * ASan/UBSan findings the target aborts when a result breaks the contract: a
 * return other than 0 or -1, a failure without a sentence, a success whose
 * key file text or manifest strings are not terminated within their fields.
 * Seeds: tests/fuzz/corpus/backup/ (a valid backup, the same cut short and
 * altered).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backup_file.h"

#define FUZZ_PASS "fuzz passphrase"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_success(const struct backup_manifest *m, const char *keytext, size_t keysize)
{
    if (!memchr(keytext, '\0', keysize) || !memchr(m->cluster, '\0', sizeof(m->cluster)) ||
        !memchr(m->member, '\0', sizeof(m->member)) ||
        !memchr(m->created_at, '\0', sizeof(m->created_at)) || strlen(m->dump_sha256) != 64)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char keytext[BACKUP_KEYFILE_MAX];
    struct backup_manifest m;
    char *err = NULL;
    int in = memfd_create("fuzz-in", 0), out = memfd_create("fuzz-out", 0), rc;

    if (in < 0 || out < 0)
        abort();
    if (size && write(in, data, size) != (ssize_t)size)
        abort();
    lseek(in, 0, SEEK_SET);
    rc = backup_read(in, FUZZ_PASS, out, &m, keytext, sizeof(keytext), &err);
    if (rc == 0)
        check_success(&m, keytext, sizeof(keytext));
    else if (rc != -1 || !err || !*err)
        abort();
    free(err);
    close(in);
    close(out);
    return 0;
}
