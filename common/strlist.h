/*
 * Short lists of names in messages: a refusal names the first few serials or
 * users it is about and counts the rest, so one line stays readable however
 * many there are.
 */
#ifndef MFA_STRLIST_H
#define MFA_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/*
 * Writes the first <shown> strings of the JSON array <arr> into <out>,
 * comma-separated, each cut at 64 bytes and in double quotes when <quoted>,
 * then " and N more" when the array has more. The text is cut where <size>
 * ends; <out> is always NUL-terminated (<size> at least 1).
 */
void strlist_join(const json_t *arr, size_t shown, bool quoted, char *out, size_t size);

#endif
