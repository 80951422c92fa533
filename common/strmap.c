/*
 * String-keyed hash map; see strmap.h. The table doubles when it is 70 %
 * full; FNV-1a hashes the keys.
 */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char *key; /* NULL: empty */
    void *value;
    uint64_t hash;
};

struct strmap {
    struct slot *slots;
    size_t cap; /* a power of two */
    size_t count;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct strmap *strmap_new(void)
{
    struct strmap *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void strmap_free(struct strmap *m, void (*free_value)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key) {
            free(m->slots[i].key);
            if (free_value)
                free_value(m->slots[i].value);
        }
    }
    free(m->slots);
    free(m);
}

/* The slot holding <key>, or the empty slot where it would go. */
static size_t find(const struct strmap *m, const char *key, uint64_t h)
{
    size_t i = h & (m->cap - 1);

    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    size_t i = find(m, key, hash_str(key));

    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(struct strmap *m)
{
    struct slot *old = m->slots;
    size_t oldcap = m->cap;

    m->slots = calloc(oldcap * 2, sizeof(*m->slots));
    if (!m->slots) {
        m->slots = old;
        return -1;
    }
    m->cap = oldcap * 2;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key)
            m->slots[find(m, old[i].key, old[i].hash)] = old[i];
    }
    free(old);
    return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value, void **old)
{
    uint64_t h = hash_str(key);
    size_t i;

    if (old)
        *old = NULL;
    if ((m->count + 1) * 10 > m->cap * 7 && grow(m) < 0)
        return -1;
    i = find(m, key, h);
    if (m->slots[i].key) {
        if (old)
            *old = m->slots[i].value;
        m->slots[i].value = value;
        return 0;
    }
    m->slots[i].key = strdup(key);
    if (!m->slots[i].key)
        return -1;
    m->slots[i].value = value;
    m->slots[i].hash = h;
    m->count++;
    return 0;
}

/* Empties slot <i> and shifts back the entries of its probe run. */
static void delete_at(struct strmap *m, size_t i)
{
    size_t j = i;

    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    for (;;) {
        size_t home;

        j = (j + 1) & (m->cap - 1);
        if (!m->slots[j].key)
            return;
        home = m->slots[j].hash & (m->cap - 1);
        /* Move j back to i when its home is not in the run (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
}

void *strmap_remove(struct strmap *m, const char *key)
{
    size_t i = find(m, key, hash_str(key));
    void *v;

    if (!m->slots[i].key)
        return NULL;
    v = m->slots[i].value;
    delete_at(m, i);
    return v;
}

size_t strmap_count(const struct strmap *m)
{
    return m->count;
}

void strmap_sweep(struct strmap *m, bool (*fn)(const char *key, void *value, void *arg), void *arg)
{
    size_t i = 0;

    while (i < m->cap) {
        if (m->slots[i].key && fn(m->slots[i].key, m->slots[i].value, arg))
            delete_at(m, i); /* another entry may have moved into slot i: look again */
        else
            i++;
    }
}
