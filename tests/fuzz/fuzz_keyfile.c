/*
 * Fuzz target for the parsers of untrusted key material: the key file text
 * (keyfile_parse), stored PIN hashes (pin_verify, pin_needs_rehash) and sealed
 * seeds (seal_decrypt), plus the RFC 4648 decoders on the raw bytes.
 *
 * The input is copied and NUL-terminated, then given to each parser; a fixed
 * keyring (pepper and seal ids 1 and 2, constant keys) lets valid corpus
 * entries reach the HMAC and GCM paths. Besides ASan/UBSan findings the
 * target aborts when a result breaks the documented contract (a return value
 * out of range, a failure without a message, a parsed keyring out of
 * bounds). Seeds: tests/fuzz/corpus/keyfile/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "ids.h"
#include "keyfile.h"
#include "mem.h"
#include "seal.h"
#include "secrets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Pepper key <id> is 32 bytes of 0x40 + id, seal key <id> 32 bytes of 0x60 + id. */
static void fixed_keyring(struct keyring *kr)
{
    memset(kr, 0, sizeof(*kr));
    for (uint32_t id = 1; id <= 2; id++) {
        kr->pepper[id - 1].id = id;
        memset(kr->pepper[id - 1].key, 0x40 + (int)id, KEY_LEN);
        kr->seal[id - 1].id = id;
        memset(kr->seal[id - 1].key, 0x60 + (int)id, KEY_LEN);
    }
    kr->npepper = kr->nseal = 2;
}

static void fuzz_keyfile_text(const char *text)
{
    struct keyring kr;
    char *err = NULL;

    if (keyfile_parse(text, &kr, &err) == 0) {
        if (err != NULL || kr.npepper < 1 || kr.npepper > KEYRING_MAX || kr.nseal < 1 ||
            kr.nseal > KEYRING_MAX || keyring_current(&kr, KEY_PEPPER) == NULL ||
            keyring_current(&kr, KEY_SEAL) == NULL)
            abort();
    } else if (err == NULL || kr.npepper != 0 || kr.nseal != 0) {
        abort();
    }
    mfa_free(err);
    keyring_wipe(&kr);
}

static void fuzz_stored(const struct keyring *kr, const char *text)
{
    unsigned char plain[SEAL_PLAIN_MAX];
    size_t plainlen = 0;
    char *err = NULL;
    int rc;

    rc = pin_verify(kr, "1234", text, &err);
    if (rc < -1 || rc > 1 || (rc < 0) != (err != NULL))
        abort();
    mfa_free(err);
    if (rc >= 0 && pin_needs_rehash(kr, text) != (strncmp(text, "pin1$2$", 7) != 0))
        abort();

    rc = seal_decrypt(kr, text, "fuzz", plain, sizeof(plain), &plainlen, &err);
    if ((rc != 0 && rc != -1) || (rc < 0) != (err != NULL) || plainlen > sizeof(plain) ||
        (rc < 0 && plainlen != 0))
        abort();
    mfa_free(err);
    /* a small output buffer takes the "does not fit" path */
    rc = seal_decrypt(kr, text, "fuzz", plain, 8, &plainlen, NULL);
    if ((rc != 0 && rc != -1) || plainlen > 8)
        abort();
    secret_wipe(plain, sizeof(plain));
}

static void fuzz_decoders(const uint8_t *data, size_t size, const char *text)
{
    unsigned char out[64];
    size_t n;
    char node[NODE_ID_MAX + 1];

    /* raw bytes, embedded NULs included */
    if (b64_decode((const char *)data, size, out, sizeof(out), &n) == 0 && n > sizeof(out))
        abort();
    if (b64url_decode((const char *)data, size, out, sizeof(out), &n) == 0 && n > sizeof(out))
        abort();
    if (b32_decode((const char *)data, size, out, sizeof(out), &n) == 0 && n > sizeof(out))
        abort();
    if (id_valid(text) != (id_node(text, node, sizeof(node)) == 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keyring kr;
    char *text = malloc(size + 1);

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    fuzz_keyfile_text(text);
    fixed_keyring(&kr);
    fuzz_stored(&kr, text);
    keyring_wipe(&kr);
    fuzz_decoders(data, size, text);

    free(text);
    return 0;
}
