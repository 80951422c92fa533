/*
 * OTP challenges (DESIGN §3, §4): the code a node sent by SMS, waiting for
 * the user to type it back.
 *
 * Challenges live only in this node's memory. An id is used once; a verified
 * or expired challenge is gone. The id is "<node_id>-<22 base64url>" (ids.h),
 * so HAProxy routes the verify request back here. The code is a uniformly
 * random string of 6 to 8 digits; the store keeps only HMAC-SHA-256 of it
 * (under a random key made by chal_store_new(), never written anywhere,
 * bound to the challenge id), compares in constant time and never holds the
 * code in clear after chal_create() returns.
 *
 * Every challenge has the same time to live, an attempt limit and one-time
 * use. An accepted challenge leaves a small tombstone for CHAL_ACCEPTED_KEEP_MS
 * so that a poller (GET /api/v1/challenges/{id}) sees "accepted"; the
 * tombstone cannot be verified again. Expiry is driven by the caller's tick,
 * chal_expire(), and costs only the challenges it removes (creation order is
 * expiry order since the TTL is uniform). Lookups are O(1) (a hash table on
 * the id). Memory: a few hundred bytes per live challenge, nothing per user.
 *
 * Times are the caller's monotonic milliseconds (<now_ms>), never decreasing
 * from one call to the next. Not thread-safe: one store belongs to the loop
 * thread.
 */
#ifndef MFA_NODE_CHALLENGE_H
#define MFA_NODE_CHALLENGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "mem.h"

#define CHAL_USERNAME_MAX     512 /* bytes, without NUL (the schema allows 128 characters) */
#define CHAL_METHOD_MAX       15  /* bytes, without NUL: "sms", "push", ... */
#define CHAL_DATA_MAX         64  /* bytes of caller data per challenge */
#define CHAL_CODE_MAX         9   /* the longest code (8 digits) plus NUL */
#define CHAL_ACCEPTED_KEEP_MS 60000
#define CHAL_DEFAULT_MAX_LIVE 1000000

/*
 * ttl_s         time to live of a challenge, 1..86400 seconds
 * max_attempts  wrong codes allowed per challenge before it is gone, 1..100
 * code_digits   6, 7 or 8
 * max_live      most pending challenges at once (chal_create() refuses more);
 *               0 means CHAL_DEFAULT_MAX_LIVE
 */
struct chal_settings {
    int ttl_s;
    int max_attempts;
    int code_digits;
    size_t max_live;
};

enum chal_result {
    CHAL_ACCEPTED = 0, /* right code: the challenge is used up (tombstone left) */
    CHAL_REJECTED,     /* wrong code, attempts are left */
    CHAL_EXHAUSTED,    /* wrong code and that was the last attempt: it is gone */
    CHAL_EXPIRED,      /* its time was up: it is gone */
    CHAL_UNKNOWN,      /* no such id (never made here, already used, or swept) */
};

/* What GET /api/v1/challenges/{id} reports. */
enum chal_status {
    CHAL_ST_PENDING = 0, /* waiting for the code */
    CHAL_ST_ACCEPTED,    /* verified in the last CHAL_ACCEPTED_KEEP_MS */
    CHAL_ST_GONE,        /* expired, exhausted, cancelled or never made here */
};

/*
 * Facts about a challenge for the caller's answer and the auth log; copied
 * out, so they stay valid after the challenge is gone. attempts_left is what
 * remains after the call that filled it; expires_ms is the <now_ms> at which
 * the pending challenge expires (for a tombstone, when it is dropped).
 */
struct chal_info {
    char id[ID_MAX];
    char username[CHAL_USERNAME_MAX + 1];
    char method[CHAL_METHOD_MAX + 1];
    int attempts_left;
    uint64_t created_ms;
    uint64_t expires_ms;
    unsigned char data[CHAL_DATA_MAX];
    size_t data_len;
};

struct chal_store;

/*
 * Makes an empty store for node <node_id> (must pass node_id_valid()) with
 * <s> (copied) and a fresh random HMAC key. Returns it, or NULL with *err on
 * an invalid node id or setting, an RNG failure or out of memory.
 */
struct chal_store *chal_store_new(const char *node_id, const struct chal_settings *s,
                                  char **err) MFA_MUSTCHECK;

/* Frees the store and every challenge in it (key and MACs are wiped). NULL is fine. */
void chal_store_free(struct chal_store *st);

/*
 * Creates a pending challenge for <username> (1..CHAL_USERNAME_MAX bytes)
 * and <method> (1..CHAL_METHOD_MAX bytes) at <now_ms>. Writes its id and a
 * NUL to <id_out> (id_size >= ID_MAX) and the clear code and a NUL to
 * <code_out> (code_size >= CHAL_CODE_MAX). The caller sends the code and then
 * wipes it (secret_wipe); the store keeps only its MAC. Returns 0, or -1 with
 * *err (bad argument, small buffer, max_live reached, RNG failure, out of
 * memory); the outputs are then empty strings.
 */
int chal_create(struct chal_store *st, const char *username, const char *method, uint64_t now_ms,
                char *id_out, size_t id_size, char *code_out, size_t code_size,
                char **err) MFA_MUSTCHECK;

/*
 * Attaches <len> bytes of <data> (len <= CHAL_DATA_MAX; copied) to the
 * pending challenge <id>, replacing what was there; returned in
 * chal_info.data (e.g. the RADIUS front's request context). Returns 0, or -1
 * when there is no such pending challenge or <len> is too large.
 */
int chal_set_data(struct chal_store *st, const char *id, const void *data,
                  size_t len) MFA_MUSTCHECK;

/*
 * Checks <code> (untrusted; NULL or any text is a wrong code) against the
 * pending challenge <id> (untrusted) at <now_ms>:
 *   CHAL_ACCEPTED   right code; the challenge becomes an accepted tombstone
 *   CHAL_REJECTED   wrong code; one attempt fewer, still pending
 *   CHAL_EXHAUSTED  wrong code on the last attempt; the challenge is gone
 *   CHAL_EXPIRED    ttl passed (whatever the code); the challenge is gone
 *   CHAL_UNKNOWN    no pending challenge with that id (also a tombstone)
 * The MAC comparison takes constant time. <info_out>, when not NULL, is
 * filled for every result but CHAL_UNKNOWN (then it is zeroed).
 */
enum chal_result chal_verify(struct chal_store *st, const char *id, const char *code,
                             uint64_t now_ms, struct chal_info *info_out);

/*
 * The state of <id> at <now_ms> for pollers, without changing anything but
 * sweeping <id> if it has expired. <info_out>, when not NULL, is filled for
 * PENDING and ACCEPTED (zeroed for GONE).
 */
enum chal_status chal_state(struct chal_store *st, const char *id, uint64_t now_ms,
                            struct chal_info *info_out);

/*
 * Removes the pending challenge <id> at once (e.g. its SMS could not be
 * delivered). Returns true when there was one.
 */
bool chal_cancel(struct chal_store *st, const char *id);

/*
 * Drops every pending challenge whose ttl has passed and every tombstone
 * older than CHAL_ACCEPTED_KEEP_MS at <now_ms>. Costs O(1) plus the number
 * removed; call it on the maintenance tick.
 */
void chal_expire(struct chal_store *st, uint64_t now_ms);

/* Pending challenges (not tombstones): for /status, /metrics and drain. */
size_t chal_count(const struct chal_store *st);

/* Accepted tombstones still kept. */
size_t chal_tombstones(const struct chal_store *st);

/*
 * For tests: copies the bytes of challenge <id>'s record (pending or
 * tombstone, with its user name) to <out> and returns how many there are
 * (copying at most <size>), or 0 when there is no such challenge. Lets a test
 * check that no code is kept in clear.
 */
size_t chal_debug_record(const struct chal_store *st, const char *id, void *out, size_t size);

/* "accepted", "rejected", "exhausted", "expired", "unknown". */
const char *chal_result_name(enum chal_result r);

/* "pending", "accepted", "expired" (GONE reads "expired", as the API says it). */
const char *chal_status_name(enum chal_status s);

#endif
