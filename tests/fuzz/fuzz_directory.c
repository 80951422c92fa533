/*
 * Fuzz target for the mapping of a directory entry's untrusted attribute
 * values into a user (common/directory_map.c): directory_map_entry(),
 * directory_phone_normalize(), directory_users_dedup(), the DN normalization
 * the group membership compares with, and the plan over what was mapped.
 *
 * The input is split at 0x1E (record separator) into the entry's DN and the
 * values of uid, displayName, mail, mobile and telephoneNumber, in that
 * order; a value may hold any byte, a NUL too, and is handed over with its
 * length only, from a heap copy of exactly its size, so ASan sees any read
 * past its end. An empty value is an absent attribute. Besides ASan/UBSan
 * findings the target aborts when a result breaks the contract of
 * directory_priv.h: a return out of range; a skip without a reason; a mapped
 * username the users API would refuse; a stored display name, e-mail or
 * phone that breaks the API's rules, or one flagged invalid yet not empty;
 * a normalized phone holding a character the normalization removes; a dedup
 * that keeps two entries of one name; or a plan that does not find the
 * mapped user unchanged against itself. Seeds: tests/fuzz/corpus/directory/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory.h"
#include "directory_priv.h"
#include "mem.h"
#include "userfields.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NVALUES 6 /* the DN and five attributes */

static const char *const names[NVALUES] = {
    "dn", "uid", "displayName", "mail", "mobile", "telephoneNumber",
};

static char *S(const char *s)
{
    return (char *)(uintptr_t)s;
}

static struct appconf fuzz_conf(void)
{
    struct appconf c;

    memset(&c, 0, sizeof(c));
    c.directory.max_disable_percent = 10;
    c.directory.attributes.username = S("uid");
    c.directory.attributes.display_name = S("displayName");
    c.directory.attributes.email = S("mail");
    c.directory.attributes.phone = S("mobile,telephoneNumber");
    return c;
}

static void check_stored(const struct directory_user *u)
{
    char norm[DIRECTORY_VALUE_MAX + 1];

    if (users_check_username("u", u->username, NULL) != 0 ||
        users_check_text("d", u->display_name, false, NULL) != 0 ||
        users_check_email("e", u->email, NULL) != 0 || users_check_phone("p", u->phone, NULL) != 0)
        abort();
    if (((u->invalid & DIRECTORY_INVALID_DISPLAY_NAME) && *u->display_name) ||
        ((u->invalid & DIRECTORY_INVALID_EMAIL) && *u->email) ||
        ((u->invalid & DIRECTORY_INVALID_PHONE) && *u->phone))
        abort();
    /* normalizing a stored phone again changes nothing */
    if (directory_phone_normalize(u->phone, norm, sizeof(norm)) != 0 || strcmp(norm, u->phone))
        abort();
}

/* The mapped user against itself as the database would hold it: nothing to do. */
static void check_plan(const struct appconf *conf, const struct directory_user *u)
{
    struct directory_current cur = { u->username, u->dn, u->display_name, u->email, u->phone,
                                     false,       false, false,           NULL };
    struct directory_plan plan;

    if (directory_plan_make(conf, u, 1, &cur, 1, false, &plan) != 0)
        abort();
    if (plan.refused || plan.nsteps != 1 || plan.steps[0].change != DIR_UNCHANGED)
        abort();
    directory_plan_free(&plan);
}

static void check_dedup(struct directory_user *u)
{
    struct directory_user *two = calloc(2, sizeof(*two));
    size_t n = 2;

    if (!two)
        return;
    for (int i = 0; i < 2; i++) {
        two[i] = (struct directory_user){ strdup(u->dn), strdup(u->username), strdup(""),
                                          strdup(""),    strdup(""),          0,
                                          NULL };
    }
    if (directory_users_dedup(two, &n, NULL) != 0 || n != 1)
        abort();
    directory_users_free(two, n);
}

/* A heap copy of exactly <len> bytes (no NUL after it), so ASan sees a read past the end. */
static char *exact_copy(const uint8_t *p, size_t len)
{
    char *c = malloc(len ? len : 1);

    if (c && len)
        memcpy(c, p, len);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct appconf conf = fuzz_conf();
    struct directory_attr attrs[NVALUES];
    char *values[NVALUES] = { NULL }, *dn, *norm = NULL, *reason = NULL;
    struct directory_user u;
    json_t *invalid = json_array();
    size_t lens[NVALUES] = { 0 }, n = 0, start = 0, nattrs = 0;
    int rc;

    for (size_t i = 0; i <= size && n < NVALUES; i++) {
        if (i == size || data[i] == 0x1E) {
            values[n] = exact_copy(data + start, i - start);
            lens[n] = i - start;
            if (n > 0 && i > start)
                attrs[nattrs++] = (struct directory_attr){ names[n], values[n], i - start };
            n++;
            start = i + 1;
        }
    }
    dn = values[0] ? strndup(values[0], lens[0]) : strdup("");
    if (dn && directory_dn_normalize(dn, &norm) == 0 && !norm)
        abort();
    free(norm);
    rc = directory_map_entry(&conf, dn ? dn : "", attrs, nattrs, &u, invalid, &reason);
    if (rc < -1 || rc > 1 || (rc == 0) != (reason != NULL))
        abort();
    if (rc == 1) {
        check_stored(&u);
        check_plan(&conf, &u);
        check_dedup(&u);
        directory_user_clear(&u);
    }
    free(reason);
    free(dn);
    json_decref(invalid);
    for (size_t i = 0; i < NVALUES; i++)
        free(values[i]);
    return 0;
}
