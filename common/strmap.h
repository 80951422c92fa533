/*
 * A hash map from strings to pointers: open addressing with linear probing
 * and backward-shift deletion, so no tombstones pile up. Keys are copied;
 * values are the caller's. For the per-node tables of mfa-node (lockout
 * counters, throttles, replay marks kept while the primary is away).
 */
#ifndef MFA_STRMAP_H
#define MFA_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct strmap;

struct strmap *strmap_new(void) MFA_MUSTCHECK;

/* Frees the map and its keys; calls <free_value> on each value when not NULL. */
void strmap_free(struct strmap *m, void (*free_value)(void *));

/* The value under <key>, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);

/* Sets <key> to <value> (replacing and returning the old value through *old). Returns 0 or -1. */
int strmap_put(struct strmap *m, const char *key, void *value, void **old) MFA_MUSTCHECK;

/* Removes <key>; returns its value, or NULL when absent. */
void *strmap_remove(struct strmap *m, const char *key);

size_t strmap_count(const struct strmap *m);

/*
 * Calls <fn> for every entry; when it returns true the entry is removed (the
 * callback frees the value itself). Safe against removal during the walk.
 */
void strmap_sweep(struct strmap *m, bool (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
