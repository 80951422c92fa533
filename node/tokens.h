/*
 * The admin API for OATH tokens (DESIGN §4), admin scope:
 *
 *   POST /api/v1/tokens/import   a CSV seed file (text/csv) or a PSKC file
 *                                (application/pskc+xml, RFC 6030), all or
 *                                nothing; an encrypted PSKC file's passphrase
 *                                in the X-PSKC-Passphrase header
 *
 * The formats are tokenfile.h's and docs/tokens.md's; `mfactl token import`
 * takes the same files (and files bigger than node.http.max_body).
 */
#ifndef MFA_NODE_TOKENS_H
#define MFA_NODE_TOKENS_H

#include <event2/http.h>

void tokens_handle_import(struct evhttp_request *req, void *arg);

#endif
