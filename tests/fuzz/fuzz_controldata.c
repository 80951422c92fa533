/*
 * Fuzz target for mfa-replicator's parsers of what PostgreSQL leaves on disk
 * (replicator/pgsetup.c): pg_controldata's report
 * (pgsetup_parse_controldata), timeline history files
 * (pgsetup_parse_history) and LSN text (lsn_parse).
 *
 * The input is copied and NUL-terminated, then given to each parser. Besides
 * ASan/UBSan findings the target aborts when a result breaks the documented
 * contract: a return value out of range, a failure without a message or a
 * success with one, a parsed field that is not what the parser promises
 * (an unterminated string, timeline 0 in a history, timelines out of order),
 * an LSN that does not survive lsn_format(), or lsn_parse() and mfactl's
 * plan_lsn_parse() disagreeing on the same text. The history is parsed into
 * a heap array of exactly <max> entries so that ASan sees a write past it.
 * Seeds: tests/fuzz/corpus/controldata/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_plan.h"
#include "mem.h"
#include "pgsetup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void fuzz_report(const char *text)
{
    struct pg_controldata c;
    char *err = NULL;
    int rc = pgsetup_parse_controldata(text, &c, &err);

    if (rc == 0) {
        if (err != NULL || !terminated(c.system_identifier, sizeof(c.system_identifier)) ||
            !terminated(c.state, sizeof(c.state)) || !c.system_identifier[0] || !c.state[0] ||
            strspn(c.system_identifier, "0123456789") != strlen(c.system_identifier))
            abort();
    } else if (rc != -1 || err == NULL) {
        abort();
    }
    mfa_free(err);
}

static void fuzz_history(const char *text, size_t max)
{
    struct tli_switch *h = malloc((max ? max : 1) * sizeof(*h));
    char *err = NULL;
    int rc;

    if (!h)
        return;
    rc = pgsetup_parse_history(text, h, max, &err);
    if (rc < -1 || rc > (int)max || (rc < 0) != (err != NULL))
        abort();
    for (int i = 0; i < rc; i++) {
        if (h[i].tli == 0 || (i > 0 && h[i].tli <= h[i - 1].tli))
            abort();
    }
    mfa_free(err);
    free(h);
}

/* lsn_parse() of <s>: a round trip through lsn_format(), and mfactl's parser agrees. */
static void fuzz_lsn(const char *s)
{
    uint64_t a = 0, b = 0, again = 0;
    char buf[PLAN_LSN_MAX], buf2[32];
    int ra = lsn_parse(s, &a), rb = plan_lsn_parse(s, &b);

    if ((ra != 0 && ra != -1) || ra != rb || (ra == 0 && a != b))
        abort();
    if (ra < 0)
        return;
    if (lsn_parse(lsn_format(a, buf2, sizeof(buf2)), &again) != 0 || again != a ||
        strcmp(buf2, plan_lsn_format(a, buf)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    fuzz_report(text);
    fuzz_history(text, 64); /* as struct repl's history */
    fuzz_history(text, 2);
    fuzz_history(text, 0);
    fuzz_lsn(text);
    /* and each line alone, where LSNs in the corpus are */
    for (char *line = text, *end; line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (end)
            *end = '\0';
        fuzz_lsn(line);
        if (end)
            *end = '\n';
    }

    free(text);
    return 0;
}
