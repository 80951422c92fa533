/*
 * Error messages for the `char **err` contract.
 *
 * Library code in common/ never logs on its own: a fallible call returns -1,
 * false or NULL and, when the caller passed a non-NULL `err`, leaves a
 * malloc'd sentence there that the caller logs or shows and then frees.
 */
#ifndef MFA_ERRMSG_H
#define MFA_ERRMSG_H

/*
 * Replaces *err (freeing what was there) with the formatted message. Does
 * nothing when <err> is NULL. Always returns -1, so that a failing path can
 * end with `return err_set(err, "...")`.
 */
int err_set(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Prefixes the message already in *err with the formatted text and ": ",
 * e.g. to add a file name to a parser's message. Returns -1 like err_set().
 */
int err_prefix(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
