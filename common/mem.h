/*
 * Memory helpers. Freeing clears: mfa_free(p) frees and sets p to NULL, so a
 * pointer is never left dangling. free(NULL) is fine: no test before it.
 */
#ifndef MFA_MEM_H
#define MFA_MEM_H

#include <stdlib.h>

#define mfa_free(p)                                                                                \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

/* Marks a call whose result must be looked at (it can fail). */
#define MFA_MUSTCHECK __attribute__((warn_unused_result))

#define MFA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
