/*
 * Fuzz target for the health page (balancer/page.c): the input is parsed as
 * JSON (any value, NULs allowed in strings), rendered with page_html() and
 * freed; input that is not JSON renders the page for no snapshot.
 *
 * Besides ASan/UBSan findings the target aborts when the page breaks its
 * contract: no page (NULL) with memory to spare, a page that does not end,
 * or a tag page.c does not write (which means a string from the snapshot
 * got out unescaped). Seeds: tests/fuzz/corpus/page/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "page.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The tags page.c writes, each followed by its delimiter. */
static const char *const own_tags[] = {
    "!DOCTYPE ", "html>", "html ", "head>", "meta ",  "title>", "style>", "body>", "h1>",
    "p ",        "p>",    "a ",    "a>",    "table>", "thead>", "tbody>", "tr>",   "tr ",
    "th>",       "td>",   "td ",   "span ", "span>",  "b>",     "b ",     "div ",  "div>"
};

static void check_tags(const char *html)
{
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        const char *name = p + 1 + (p[1] == '/');
        size_t i;

        for (i = 0; i < MFA_ARRAY_LEN(own_tags); i++)
            if (strncmp(name, own_tags[i], strlen(own_tags[i])) == 0)
                break;
        if (i == MFA_ARRAY_LEN(own_tags))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *snap = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    char *html = page_html(snap);
    size_t len;

    json_decref(snap);
    if (!html)
        abort(); /* out of memory, which a fuzzing run does not reach */
    len = strlen(html);
    if (len < 8 || strcmp(html + len - 8, "</html>\n") != 0)
        abort();
    check_tags(html);
    free(html);
    return 0;
}
