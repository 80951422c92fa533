/*
 * Random bytes and node / challenge / session ids; see ids.h.
 *
 * Invariant: every id produced by id_new() passes id_valid(), and id_valid()
 * accepts exactly the strings id_new() can produce.
 */
#include "ids.h"

#include <limits.h>
#include <string.h>

#include <openssl/rand.h>

#include "b64.h"

int rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;

    /* RAND_bytes takes an int: feed it in chunks. */
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;

        if (RAND_bytes(p, chunk) != 1)
            return -1;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

/* Length of the node id at the start of <s> ending at <end>, or 0 if invalid. */
static size_t node_prefix_len(const char *s, char end)
{
    size_t n = 0;

    while (n <= NODE_ID_MAX && s[n] != end) {
        char c = s[n];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return 0;
        n++;
    }
    return n <= NODE_ID_MAX ? n : 0;
}

bool node_id_valid(const char *id)
{
    return id != NULL && node_prefix_len(id, '\0') > 0;
}

int id_new(const char *node_id, char *out, size_t outsz)
{
    unsigned char raw[ID_RAND_BYTES];
    size_t n;

    if (outsz > 0)
        out[0] = '\0';
    if (!node_id_valid(node_id))
        return -1;
    n = strlen(node_id);
    if (outsz < n + 1 + ID_RAND_LEN + 1)
        return -1;
    if (rand_bytes(raw, sizeof(raw)) < 0)
        return -1;
    memcpy(out, node_id, n);
    out[n] = '-';
    if (b64url_encode(raw, sizeof(raw), out + n + 1, outsz - n - 1) < 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

bool id_valid(const char *id)
{
    unsigned char raw[ID_RAND_BYTES];
    size_t n, rawlen;

    if (id == NULL)
        return false;
    n = node_prefix_len(id, '-');
    if (n == 0 || id[n] != '-')
        return false;
    id += n + 1;
    if (strnlen(id, ID_RAND_LEN + 1) != ID_RAND_LEN)
        return false;
    /* Canonical base64url of exactly 16 bytes (RFC 4648 §5, §3.5). */
    return b64url_decode(id, ID_RAND_LEN, raw, sizeof(raw), &rawlen) == 0 &&
           rawlen == ID_RAND_BYTES;
}

int id_node(const char *id, char *node, size_t nodesz)
{
    size_t n;

    if (nodesz > 0)
        node[0] = '\0';
    if (!id_valid(id))
        return -1;
    n = strcspn(id, "-");
    if (nodesz < n + 1)
        return -1;
    memcpy(node, id, n);
    node[n] = '\0';
    return 0;
}

bool id_belongs_to(const char *id, const char *node_id)
{
    size_t n;

    if (!id_valid(id) || !node_id_valid(node_id))
        return false;
    n = strlen(node_id);
    return strncmp(id, node_id, n) == 0 && id[n] == '-';
}
