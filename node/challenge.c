/*
 * OTP challenges in this node's memory; see challenge.h.
 *
 * Challenges live only in this node's memory. An id is used once; a verified
 * or expired challenge is gone.
 *
 * Layout: every challenge (pending or accepted tombstone) is one malloc'd
 * struct chal, found by id through an open-addressing hash table of pointers
 * (linear probing, backward-shift deletion so there are no deleted markers;
 * load kept at or below 1/2, shrunk on the tick after a burst), and linked in
 * one of two FIFO lists: pending challenges in creation order, tombstones in
 * acceptance order. Since the TTL and the tombstone time are uniform and
 * <now_ms> never goes back, each list is also in expiry order, so
 * chal_expire() only looks at list heads.
 *
 * Invariants: a pending challenge holds mac = HMAC-SHA-256(store key, id ||
 * NUL || code) and never the code; a tombstone's mac is zeroed; a challenge
 * is in the table if and only if it is in one list; npending and ntomb count
 * the two lists.
 */
#include "challenge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "errmsg.h"
#include "secrets.h"

#define MAC_LEN       32
#define KEY_LEN       32
#define TABLE_MIN     64
#define CODE_MAX_LEN  (CHAL_CODE_MAX - 1)
#define TTL_MAX_S     86400
#define ATTEMPTS_MAX  100
#define CODE_MIN_DIGS 6
#define CODE_MAX_DIGS 8

enum chal_phase {
    PHASE_PENDING = 0,
    PHASE_ACCEPTED,
};

struct chal {
    struct chal *prev, *next; /* in pending or tombs */
    uint64_t created_ms;
    uint64_t expires_ms; /* pending: created + ttl; tombstone: accepted + keep */
    unsigned char mac[MAC_LEN];
    char id[ID_MAX];
    char method[CHAL_METHOD_MAX + 1];
    uint8_t attempts_left;
    uint8_t phase;
    uint8_t data_len;
    unsigned char data[CHAL_DATA_MAX];
    char username[]; /* NUL-terminated */
};

struct chal_list {
    struct chal *head, *tail;
};

struct chal_store {
    char node_id[NODE_ID_MAX + 1];
    struct chal_settings set;
    unsigned char key[KEY_LEN];
    uint64_t hash_seed;
    struct chal **slots;
    size_t cap; /* power of two */
    size_t used;
    struct chal_list pending, tombs;
    size_t npending, ntomb;
};

static const char *const result_names[] = {
    [CHAL_ACCEPTED] = "accepted", [CHAL_REJECTED] = "rejected", [CHAL_EXHAUSTED] = "exhausted",
    [CHAL_EXPIRED] = "expired",   [CHAL_UNKNOWN] = "unknown",
};

static const char *const status_names[] = {
    [CHAL_ST_PENDING] = "pending",
    [CHAL_ST_ACCEPTED] = "accepted",
    [CHAL_ST_GONE] = "expired",
};

const char *chal_result_name(enum chal_result r)
{
    return (unsigned)r < MFA_ARRAY_LEN(result_names) ? result_names[r] : "unknown";
}

const char *chal_status_name(enum chal_status s)
{
    return (unsigned)s < MFA_ARRAY_LEN(status_names) ? status_names[s] : "expired";
}

/* ---- lists ---- */

static void list_push(struct chal_list *l, struct chal *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_unlink(struct chal_list *l, struct chal *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

/* ---- hash table ---- */

/*
 * FNV-1a over the id from a random seed, then the splitmix64 finalizer: ids
 * are random already, the seed keeps crafted lookups from clustering.
 */
static uint64_t id_hash(const struct chal_store *st, const char *id)
{
    uint64_t h = st->hash_seed;

    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

/* Index of the slot holding <id>, or of the empty slot ending its probe. */
static size_t table_find_slot(const struct chal_store *st, const char *id)
{
    size_t mask = st->cap - 1;
    size_t i = (size_t)id_hash(st, id) & mask;

    while (st->slots[i] && strcmp(st->slots[i]->id, id) != 0)
        i = (i + 1) & mask;
    return i;
}

static struct chal *table_get(const struct chal_store *st, const char *id)
{
    return st->slots[table_find_slot(st, id)];
}

/* Rebuilds the table with <cap> slots; returns -1 (table unchanged) when out of memory. */
static int table_resize(struct chal_store *st, size_t cap)
{
    struct chal **old = st->slots;
    size_t oldcap = st->cap;
    struct chal **slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return -1;
    st->slots = slots;
    st->cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i])
            slots[table_find_slot(st, old[i]->id)] = old[i];
    }
    free(old);
    return 0;
}

/* Inserts <c> (its id not present); the caller made room. */
static void table_put(struct chal_store *st, struct chal *c)
{
    st->slots[table_find_slot(st, c->id)] = c;
    st->used++;
}

/* Removes <c> (present) with backward-shift deletion. */
static void table_del(struct chal_store *st, const struct chal *c)
{
    size_t mask = st->cap - 1;
    size_t hole = table_find_slot(st, c->id);
    size_t i = hole;

    st->slots[hole] = NULL;
    st->used--;
    for (;;) {
        size_t home;

        i = (i + 1) & mask;
        if (!st->slots[i])
            break;
        home = (size_t)id_hash(st, st->slots[i]->id) & mask;
        /* Move slots[i] into the hole unless its home lies cyclically in (hole, i]. */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            st->slots[hole] = st->slots[i];
            st->slots[i] = NULL;
            hole = i;
        }
    }
}

/*
 * Shrinks the table once it is at most 1/8 full, to the smallest size (never
 * below TABLE_MIN) at which it is at most 1/4 full, so a burst does not keep
 * its memory.
 */
static void table_maybe_shrink(struct chal_store *st)
{
    size_t cap = st->cap;

    if (cap == TABLE_MIN || st->used * 8 > cap)
        return;
    while (cap / 2 >= TABLE_MIN && st->used * 4 <= cap / 2)
        cap /= 2;
    (void)table_resize(st, cap); /* out of memory: keep the bigger table */
}

/* ---- challenges ---- */

static void chal_destroy(struct chal_store *st, struct chal *c)
{
    table_del(st, c);
    if (c->phase == PHASE_PENDING) {
        list_unlink(&st->pending, c);
        st->npending--;
    } else {
        list_unlink(&st->tombs, c);
        st->ntomb--;
    }
    secret_wipe(c->mac, sizeof(c->mac));
    free(c);
}

static void fill_info(const struct chal *c, struct chal_info *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof(*info));
    memcpy(info->id, c->id, sizeof(info->id));
    snprintf(info->username, sizeof(info->username), "%s", c->username);
    memcpy(info->method, c->method, sizeof(info->method));
    info->attempts_left = c->attempts_left;
    info->created_ms = c->created_ms;
    info->expires_ms = c->expires_ms;
    memcpy(info->data, c->data, c->data_len);
    info->data_len = c->data_len;
}

/* mac = HMAC-SHA-256(key, id || NUL || code). Returns 0 or -1. */
static int code_mac(const struct chal_store *st, const char *id, const char *code,
                    unsigned char mac[MAC_LEN])
{
    unsigned char msg[ID_MAX + CHAL_CODE_MAX];
    size_t idlen = strlen(id), codelen = strlen(code);
    unsigned int maclen = 0;
    int rc = 0;

    if (idlen >= ID_MAX || codelen > CODE_MAX_LEN)
        return -1;
    memcpy(msg, id, idlen + 1);
    memcpy(msg + idlen + 1, code, codelen);
    if (HMAC(EVP_sha256(), st->key, KEY_LEN, msg, idlen + 1 + codelen, mac, &maclen) == NULL ||
        maclen != MAC_LEN)
        rc = -1;
    secret_wipe(msg, sizeof(msg));
    return rc;
}

/*
 * Writes <digits> uniformly random decimal digits and a NUL to <out>:
 * rejection sampling on 32-bit draws (values past the last whole multiple of
 * 10^digits are drawn again), so no digit string is likelier than another.
 */
static int code_new(int digits, char *out)
{
    uint32_t mod = 1;
    uint64_t bound;

    for (int i = 0; i < digits; i++)
        mod *= 10;
    bound = ((uint64_t)1 << 32) / mod * mod;
    for (;;) {
        uint32_t r;

        if (rand_bytes(&r, sizeof(r)) < 0)
            return -1;
        if ((uint64_t)r < bound) {
            snprintf(out, CHAL_CODE_MAX, "%0*u", digits, (unsigned)(r % mod));
            secret_wipe(&r, sizeof(r));
            return 0;
        }
    }
}

/* ---- API ---- */

struct chal_store *chal_store_new(const char *node_id, const struct chal_settings *s, char **err)
{
    struct chal_store *st = NULL;

    if (!node_id_valid(node_id)) {
        err_set(err, "invalid node id \"%s\"", node_id ? node_id : "(null)");
        return NULL;
    }
    if (!s || s->ttl_s < 1 || s->ttl_s > TTL_MAX_S) {
        err_set(err, "challenge ttl must be 1 to %d seconds", TTL_MAX_S);
        return NULL;
    }
    if (s->max_attempts < 1 || s->max_attempts > ATTEMPTS_MAX) {
        err_set(err, "challenge attempt limit must be 1 to %d", ATTEMPTS_MAX);
        return NULL;
    }
    if (s->code_digits < CODE_MIN_DIGS || s->code_digits > CODE_MAX_DIGS) {
        err_set(err, "challenge code digits must be %d to %d", CODE_MIN_DIGS, CODE_MAX_DIGS);
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (!st)
        goto nomem;
    snprintf(st->node_id, sizeof(st->node_id), "%s", node_id);
    st->set = *s;
    if (st->set.max_live == 0)
        st->set.max_live = CHAL_DEFAULT_MAX_LIVE;
    if (rand_bytes(st->key, sizeof(st->key)) < 0 ||
        rand_bytes(&st->hash_seed, sizeof(st->hash_seed)) < 0) {
        err_set(err, "random number generator failed");
        goto fail;
    }
    st->cap = TABLE_MIN;
    st->slots = calloc(st->cap, sizeof(*st->slots));
    if (!st->slots)
        goto nomem;
    return st;
nomem:
    err_set(err, "out of memory");
fail:
    chal_store_free(st);
    return NULL;
}

void chal_store_free(struct chal_store *st)
{
    if (!st)
        return;
    while (st->pending.head)
        chal_destroy(st, st->pending.head);
    while (st->tombs.head)
        chal_destroy(st, st->tombs.head);
    free(st->slots);
    secret_wipe(st->key, sizeof(st->key));
    free(st);
}

int chal_create(struct chal_store *st, const char *username, const char *method, uint64_t now_ms,
                char *id_out, size_t id_size, char *code_out, size_t code_size, char **err)
{
    struct chal *c = NULL;
    size_t ulen, mlen;

    if (id_out && id_size > 0)
        id_out[0] = '\0';
    if (code_out && code_size > 0)
        code_out[0] = '\0';
    if (!st || !id_out || id_size < ID_MAX || !code_out || code_size < CHAL_CODE_MAX)
        return err_set(err, "chal_create: bad arguments");
    ulen = username ? strnlen(username, CHAL_USERNAME_MAX + 1) : 0;
    mlen = method ? strnlen(method, CHAL_METHOD_MAX + 1) : 0;
    if (ulen == 0 || ulen > CHAL_USERNAME_MAX)
        return err_set(err, "challenge user name must be 1 to %d bytes", CHAL_USERNAME_MAX);
    if (mlen == 0 || mlen > CHAL_METHOD_MAX)
        return err_set(err, "challenge method must be 1 to %d bytes", CHAL_METHOD_MAX);
    if (st->npending >= st->set.max_live)
        return err_set(err, "too many live challenges (%zu)", st->npending);
    if ((st->used + 1) * 2 > st->cap && table_resize(st, st->cap * 2) < 0)
        return err_set(err, "out of memory");

    c = calloc(1, sizeof(*c) + ulen + 1);
    if (!c)
        return err_set(err, "out of memory");
    /* A fresh id cannot collide in practice (128 random bits); checked anyway. */
    do {
        if (id_new(st->node_id, c->id, sizeof(c->id)) < 0) {
            err_set(err, "random number generator failed");
            goto fail;
        }
    } while (table_get(st, c->id));
    if (code_new(st->set.code_digits, code_out) < 0) {
        err_set(err, "random number generator failed");
        goto fail;
    }
    if (code_mac(st, c->id, code_out, c->mac) < 0) {
        err_set(err, "HMAC-SHA-256 failed");
        goto fail;
    }
    memcpy(c->method, method, mlen);
    memcpy(c->username, username, ulen);
    c->created_ms = now_ms;
    c->expires_ms = now_ms + (uint64_t)st->set.ttl_s * 1000;
    c->attempts_left = (uint8_t)st->set.max_attempts;
    c->phase = PHASE_PENDING;
    table_put(st, c);
    list_push(&st->pending, c);
    st->npending++;
    memcpy(id_out, c->id, strlen(c->id) + 1);
    return 0;
fail:
    free(c);
    secret_wipe(code_out, code_size);
    code_out[0] = '\0';
    return -1;
}

/* The pending challenge <id> (untrusted), or NULL. */
static struct chal *find_pending(struct chal_store *st, const char *id)
{
    struct chal *c;

    if (!st || !id_valid(id))
        return NULL;
    c = table_get(st, id);
    return c && c->phase == PHASE_PENDING ? c : NULL;
}

int chal_set_data(struct chal_store *st, const char *id, const void *data, size_t len)
{
    struct chal *c = find_pending(st, id);

    if (!c || len > CHAL_DATA_MAX || (len > 0 && !data))
        return -1;
    memset(c->data, 0, sizeof(c->data));
    if (len > 0)
        memcpy(c->data, data, len);
    c->data_len = (uint8_t)len;
    return 0;
}

enum chal_result chal_verify(struct chal_store *st, const char *id, const char *code,
                             uint64_t now_ms, struct chal_info *info_out)
{
    struct chal *c = find_pending(st, id);
    unsigned char mac[MAC_LEN];
    bool right;

    if (info_out)
        memset(info_out, 0, sizeof(*info_out));
    if (!c)
        return CHAL_UNKNOWN;
    if (now_ms >= c->expires_ms) {
        fill_info(c, info_out);
        chal_destroy(st, c);
        return CHAL_EXPIRED;
    }
    /* Anything that is not a code of at most 8 characters is a wrong code. */
    right = code && strnlen(code, CODE_MAX_LEN + 1) <= CODE_MAX_LEN &&
            code_mac(st, c->id, code, mac) == 0 && ct_equal(mac, c->mac, MAC_LEN);
    secret_wipe(mac, sizeof(mac));
    if (right) {
        list_unlink(&st->pending, c);
        st->npending--;
        secret_wipe(c->mac, sizeof(c->mac));
        c->phase = PHASE_ACCEPTED;
        c->expires_ms = now_ms + CHAL_ACCEPTED_KEEP_MS;
        list_push(&st->tombs, c);
        st->ntomb++;
        fill_info(c, info_out);
        return CHAL_ACCEPTED;
    }
    c->attempts_left--;
    fill_info(c, info_out);
    if (c->attempts_left == 0) {
        chal_destroy(st, c);
        return CHAL_EXHAUSTED;
    }
    return CHAL_REJECTED;
}

enum chal_status chal_state(struct chal_store *st, const char *id, uint64_t now_ms,
                            struct chal_info *info_out)
{
    struct chal *c;

    if (info_out)
        memset(info_out, 0, sizeof(*info_out));
    if (!st || !id_valid(id))
        return CHAL_ST_GONE;
    c = table_get(st, id);
    if (!c)
        return CHAL_ST_GONE;
    if (now_ms >= c->expires_ms) {
        chal_destroy(st, c);
        return CHAL_ST_GONE;
    }
    fill_info(c, info_out);
    return c->phase == PHASE_PENDING ? CHAL_ST_PENDING : CHAL_ST_ACCEPTED;
}

bool chal_cancel(struct chal_store *st, const char *id)
{
    struct chal *c = find_pending(st, id);

    if (!c)
        return false;
    chal_destroy(st, c);
    return true;
}

void chal_expire(struct chal_store *st, uint64_t now_ms)
{
    if (!st)
        return;
    while (st->pending.head && now_ms >= st->pending.head->expires_ms)
        chal_destroy(st, st->pending.head);
    while (st->tombs.head && now_ms >= st->tombs.head->expires_ms)
        chal_destroy(st, st->tombs.head);
    table_maybe_shrink(st);
}

size_t chal_count(const struct chal_store *st)
{
    return st ? st->npending : 0;
}

size_t chal_tombstones(const struct chal_store *st)
{
    return st ? st->ntomb : 0;
}

size_t chal_debug_record(const struct chal_store *st, const char *id, void *out, size_t size)
{
    const struct chal *c;
    size_t n;

    if (!st || !id_valid(id))
        return 0;
    c = table_get(st, id);
    if (!c)
        return 0;
    n = sizeof(*c) + strlen(c->username) + 1;
    memcpy(out, c, n < size ? n : size);
    return n;
}
