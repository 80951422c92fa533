/*
 * The directory's users (directory_fetch()): the paged search (RFC 2696)
 * under directory.base_dn, the group restriction by the group's member and
 * uniqueMember DNs (Active Directory's ranged member values too), and each
 * entry mapped by directory_map.c.
 *
 * An incomplete answer is a failure, never a short list: a page that ends
 * in an error (a size or time limit, a lost connection) fails the whole
 * fetch, so that the sync cannot take missing entries for departed users.
 * A search answering more than DIRECTORY_ENTRIES_MAX entries is refused, as
 * is one of more than DIRECTORY_PAGES_MAX pages or a page with no entry that
 * asks for another (a server looping on its cookie).
 */
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "directory.h"
#include "directory_priv.h"
#include "errmsg.h"
#include "userfields.h"

#define PAGE_SIZE 500 /* entries per page (Active Directory's MaxPageSize is 1000) */

/* ---- the group */

/* The members' normalized DNs, sorted for bsearch. */
struct dn_set {
    char **dns;
    size_t n, cap;
};

static void dn_set_free(struct dn_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->dns[i]);
    mfa_free(s->dns);
    s->n = s->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Adds the member value <v> to <s>. A uniqueMember may end in an optional
 * UID ("#'0101'B", RFC 4517 §3.3.21) that is not part of the DN; a value
 * that is not a DN names no entry and is left out. Returns 0, or -1 (out of
 * memory, or more members than DIRECTORY_ENTRIES_MAX).
 */
static int dn_set_add(struct dn_set *s, const struct berval *v, char **err)
{
    char *dn, *hash, *norm = NULL;

    if (v->bv_len > DIRECTORY_VALUE_MAX || memchr(v->bv_val, '\0', v->bv_len))
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **dns;

        if (s->n >= DIRECTORY_ENTRIES_MAX)
            return err_set(err, "directory: the group has more than %d members",
                           DIRECTORY_ENTRIES_MAX);
        dns = realloc(s->dns, cap * sizeof(*dns));
        if (!dns)
            return err_set(err, "directory: out of memory reading the group");
        s->dns = dns;
        s->cap = cap;
    }
    dn = strndup(v->bv_val, v->bv_len);
    if (!dn)
        return err_set(err, "directory: out of memory reading the group");
    hash = strrchr(dn, '#');
    if (hash && hash[1] == '\'' && hash > dn && hash[-1] != '\\' && strlen(hash) >= 4 &&
        strcmp(hash + strlen(hash) - 2, "'B") == 0)
        *hash = '\0';
    if (directory_dn_normalize(dn, &norm) == 0)
        s->dns[s->n++] = norm;
    free(dn);
    return 0;
}

/*
 * The range of an Active Directory ranged attribute ("member;range=0-1499"):
 * 1 with *next the first index not yet read, 0 for the last range
 * ("member;range=1500-*") or an attribute without a range.
 */
static int range_next(const char *attr, unsigned long *next)
{
    const char *r = strchr(attr, ';');
    unsigned long lo, hi;
    char star;

    if (!r || strncasecmp(r, ";range=", 7) != 0)
        return 0;
    if (sscanf(r + 7, "%lu-%c", &lo, &star) == 2 && star == '*')
        return 0;
    if (sscanf(r + 7, "%lu-%lu", &lo, &hi) != 2 || hi < lo)
        return 0;
    *next = hi + 1;
    return 1;
}

/*
 * Reads one answer for the group entry: every value of member and
 * uniqueMember (also as ranged attributes) into <s>. Returns 1 with *next
 * when Active Directory holds more member values, 0 when all are read, -1
 * with *err.
 */
static int group_take(LDAP *ld, LDAPMessage *e, struct dn_set *s, unsigned long *next, char **err)
{
    BerElement *ber = NULL;
    int more = 0, rc = 0;

    for (char *a = ldap_first_attribute(ld, e, &ber); a && rc == 0;
         a = ldap_next_attribute(ld, e, ber)) {
        struct berval **vals = NULL;

        if (strcasecmp(a, "member") == 0 || strcasecmp(a, "uniqueMember") == 0 ||
            strncasecmp(a, "member;", 7) == 0)
            vals = ldap_get_values_len(ld, e, a);
        for (size_t i = 0; vals && vals[i] && rc == 0; i++)
            rc = dn_set_add(s, vals[i], err);
        if (vals && strncasecmp(a, "member;", 7) == 0 && range_next(a, next))
            more = 1;
        ldap_value_free_len(vals);
        ldap_memfree(a);
    }
    ber_free(ber, 0);
    return rc < 0 ? -1 : more;
}

/* The members of directory.group_dn, normalized and sorted, into <s>. Returns 0, or -1 with *err.
 */
static int group_members(LDAP *ld, const struct appconf *conf, struct dn_set *s, char **err)
{
    const char *group = conf->directory.group_dn;
    unsigned long next = 0, last;
    struct timeval tv;
    int more;

    directory_timeval(&tv, conf->directory.timeout_ms);
    do {
        char member[] = "member", unique[] = "uniqueMember", range[64];
        char *first[] = { member, unique, NULL }, *ranged[] = { range, NULL };
        LDAPMessage *res = NULL, *e;
        int rc;

        /* after the first answer only the next range, or Active Directory repeats the first */
        snprintf(range, sizeof(range), "member;range=%lu-*", next);
        rc = ldap_search_ext_s(ld, group, LDAP_SCOPE_BASE, "(objectClass=*)", next ? ranged : first,
                               0, NULL, NULL, &tv, 1, &res);
        if (rc != LDAP_SUCCESS) {
            ldap_msgfree(res);
            return directory_ldap_err(ld, rc, err, "cannot read the group %s", group);
        }
        last = next;
        e = ldap_first_entry(ld, res);
        more = e ? group_take(ld, e, s, &next, err) : 0;
        ldap_msgfree(res);
        if (more < 0)
            return -1;
        if (more && next <= last)
            return err_set(err, "directory: the member ranges of the group %s do not advance",
                           group);
    } while (more);
    qsort(s->dns, s->n, sizeof(*s->dns), cmp_str);
    return 0;
}

static bool dn_set_has(const struct dn_set *s, const char *dn)
{
    char *norm = NULL;
    bool found;

    if (directory_dn_normalize(dn, &norm) < 0)
        return false;
    found = s->n && bsearch(&norm, s->dns, s->n, sizeof(*s->dns), cmp_str) != NULL;
    free(norm);
    return found;
}

/* ---- the search */

#define PHONE_ATTRS_MAX DIRECTORY_PHONE_ATTRS_MAX

/* What a fetch collects. */
struct fetch {
    const struct appconf *conf;
    const atomic_bool *stop;              /* may be NULL */
    char *attrs[3 + PHONE_ATTRS_MAX + 1]; /* username, display name, e-mail, phones; NULL */
    char phones[PHONE_ATTRS_MAX][DIRECTORY_ATTR_NAME_MAX];
    const struct dn_set *group; /* NULL: every entry */
    struct directory_user *users;
    size_t n, cap, seen, page_entries;
    json_t *report, *skipped, *invalid; /* may be NULL */
};

static void fetch_attrs(struct fetch *f)
{
    size_t k = 0;

    f->attrs[k++] = f->conf->directory.attributes.username;
    if (*f->conf->directory.attributes.display_name)
        f->attrs[k++] = f->conf->directory.attributes.display_name;
    if (*f->conf->directory.attributes.email)
        f->attrs[k++] = f->conf->directory.attributes.email;
    for (size_t i = 0; i < PHONE_ATTRS_MAX; i++) {
        if (!directory_attr_list_item(f->conf->directory.attributes.phone, i, f->phones[i],
                                      sizeof(f->phones[i])))
            break;
        f->attrs[k++] = f->phones[i];
    }
    f->attrs[k] = NULL;
}

/*
 * Keeps the report's list <key> to DIRECTORY_REPORT_LIST_MAX entries,
 * counting the rest in "<key>_more": a directory gone wrong must not make a
 * report of a million lines.
 */
static void cap_list(json_t *report, const char *key)
{
    json_t *a = json_object_get(report, key);
    char more[32];

    snprintf(more, sizeof(more), "%s_more", key);
    while (json_array_size(a) > DIRECTORY_REPORT_LIST_MAX) {
        json_array_remove(a, json_array_size(a) - 1);
        json_object_set_new(report, more,
                            json_integer(json_integer_value(json_object_get(report, more)) + 1));
    }
}

/* Reports the entry <dn> (valid UTF-8) as skipped. Returns 0, or -1 with *err. */
static int skip(struct fetch *f, const char *dn, const char *reason, char **err)
{
    char cut[DIRECTORY_DN_MAX + 4];
    json_t *item;

    if (!f->skipped)
        return 0;
    directory_cut(dn, DIRECTORY_DN_MAX, cut, sizeof(cut));
    /* json_pack fails on invalid UTF-8 as well as without memory: a reason quoting a value */
    item = json_pack("{s:s, s:s}", "dn", cut, "reason", reason);
    if (!item)
        item = json_pack("{s:s, s:s}", "dn", cut, "reason", "not a valid entry (not UTF-8)");
    if (json_array_append_new(f->skipped, item) < 0)
        return err_set(
            err, "directory: cannot report the entry %.200s: not UTF-8, or out of memory", cut);
    return 0;
}

static int push_user(struct fetch *f, struct directory_user *u)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        struct directory_user *users = realloc(f->users, cap * sizeof(*users));

        if (!users)
            return -1;
        f->users = users;
        f->cap = cap;
    }
    f->users[f->n++] = *u;
    return 0;
}

/* Maps the entry <e> (already known to be of the group, if any). Returns 0, or -1 with *err. */
static int take_mapped(LDAP *ld, LDAPMessage *e, struct fetch *f, const char *dn, char **err)
{
    struct directory_attr attrs[3 + PHONE_ATTRS_MAX];
    struct berval **vals[3 + PHONE_ATTRS_MAX] = { NULL };
    struct directory_user u = { 0 };
    char *reason = NULL;
    size_t n = 0;
    int rc;

    for (size_t i = 0; f->attrs[i]; i++) {
        vals[i] = ldap_get_values_len(ld, e, f->attrs[i]);
        if (vals[i] && vals[i][0])
            attrs[n++] =
                (struct directory_attr){ f->attrs[i], vals[i][0]->bv_val, vals[i][0]->bv_len };
    }
    /* which of two names is the user's is not for the sync to guess (f->attrs[0]: the username) */
    if (vals[0] && vals[0][0] && vals[0][1]) {
        rc = 0;
        reason = strdup("the username attribute has more than one value");
        if (!reason)
            rc = -1;
    } else {
        rc = directory_map_entry(f->conf, dn, attrs, n, &u, f->invalid, &reason);
    }
    for (size_t i = 0; f->attrs[i]; i++)
        ldap_value_free_len(vals[i]);
    if (rc == 1 && push_user(f, &u) < 0) {
        directory_user_clear(&u);
        rc = -1;
    }
    if (rc < 0) {
        free(reason);
        return err_set(err, "directory: out of memory reading the entries");
    }
    rc = rc == 0 ? skip(f, dn, reason ? reason : "not a user", err) : 0;
    free(reason);
    return rc;
}

/* One entry of a page. Returns 0, or -1 with *err. */
static int take_entry(LDAP *ld, LDAPMessage *e, struct fetch *f, char **err)
{
    char *dn = ldap_get_dn(ld, e);
    int rc = 0;

    f->page_entries++;
    if (++f->seen > DIRECTORY_ENTRIES_MAX) {
        rc = err_set(err,
                     "directory: the search returned more than %d entries; narrow "
                     "directory.filter or directory.base_dn",
                     DIRECTORY_ENTRIES_MAX);
    } else if (!dn) {
        rc = err_set(err, "directory: an entry without a DN");
    } else if (!users_utf8_valid(dn)) {
        /* LDAP DNs are UTF-8 (RFC 4514); neither the report nor the database takes others */
        rc = skip(f, "(not UTF-8)", "the DN is not valid UTF-8", err);
    } else if (f->group && !dn_set_has(f->group, dn)) {
        rc = 0; /* not a member: not one of the sync's users */
    } else if (strlen(dn) > DIRECTORY_DN_MAX) {
        char cut[80];

        directory_cut(dn, 60, cut, sizeof(cut));
        rc = skip(f, cut, "the DN is longer than 1024 bytes", err);
    } else {
        rc = take_mapped(ld, e, f, dn, err);
    }
    ldap_memfree(dn);
    cap_list(f->report, "skipped");
    cap_list(f->report, "invalid");
    return rc;
}

/*
 * Reads the paged-results cookie of <res> into *cookie (NULL on the last
 * page, or when the server ignored the control and sent everything at once).
 */
static int page_cookie(LDAP *ld, LDAPMessage *res, struct berval **cookie, char **err)
{
    LDAPControl **ctrls = NULL, *c;
    struct berval next = { 0, NULL };
    ber_int_t estimate;
    int code = LDAP_SUCCESS, rc;

    *cookie = NULL;
    rc = ldap_parse_result(ld, res, &code, NULL, NULL, NULL, &ctrls, 0);
    if (rc != LDAP_SUCCESS)
        return directory_ldap_err(ld, rc, err, "cannot read the search result");
    c = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL);
    rc = c ? ldap_parse_pageresponse_control(ld, c, &estimate, &next) : LDAP_SUCCESS;
    ldap_controls_free(ctrls);
    if (rc != LDAP_SUCCESS)
        return directory_ldap_err(ld, rc, err, "cannot read the paged results control");
    if (next.bv_len > 0) {
        *cookie = ber_bvdup(&next);
        if (!*cookie)
            rc = -1;
    }
    ber_memfree(next.bv_val);
    return rc == LDAP_SUCCESS ? 0 : err_set(err, "directory: out of memory");
}

/* One page (RFC 2696) after <cookie> (NULL: the first). Returns 0 with *next, or -1 with *err. */
static int search_page(LDAP *ld, struct fetch *f, struct berval *cookie, struct berval **next,
                       char **err)
{
    const struct appconf *conf = f->conf;
    LDAPControl *page = NULL, *ctrls[2] = { NULL, NULL };
    LDAPMessage *res = NULL;
    struct timeval tv;
    int rc, scope = conf->directory.scope == DIRECTORY_SCOPE_ONE ? LDAP_SCOPE_ONELEVEL
                                                                 : LDAP_SCOPE_SUBTREE;

    *next = NULL;
    directory_timeval(&tv, conf->directory.timeout_ms);
    /* not critical: a server without paging answers in one go (or says its size limit) */
    rc = ldap_create_page_control(ld, PAGE_SIZE, cookie, 0, &page);
    if (rc != LDAP_SUCCESS)
        return directory_ldap_err(ld, rc, err, "cannot make the paged results control");
    ctrls[0] = page;
    rc = ldap_search_ext_s(ld, conf->directory.base_dn, scope, conf->directory.filter, f->attrs, 0,
                           ctrls, NULL, &tv, LDAP_NO_LIMIT, &res);
    ldap_control_free(page);
    if (rc != LDAP_SUCCESS) {
        ldap_msgfree(res);
        return directory_ldap_err(ld, rc, err, "cannot search %s for %s", conf->directory.base_dn,
                                  conf->directory.filter);
    }
    f->page_entries = 0;
    for (LDAPMessage *e = ldap_first_entry(ld, res); e && rc == 0; e = ldap_next_entry(ld, e))
        rc = take_entry(ld, e, f, err);
    if (rc == 0)
        rc = page_cookie(ld, res, next, err);
    ldap_msgfree(res);
    return rc;
}

static bool stopped(const struct fetch *f)
{
    return f->stop && atomic_load(f->stop);
}

/* Every page, bounded: a server that keeps sending cookies must not hold the sync for ever. */
static int search_all(LDAP *ld, struct fetch *f, char **err)
{
    struct berval *cookie = NULL;
    size_t pages = 0;
    int rc;

    do {
        struct berval *next = NULL;

        if (stopped(f)) {
            rc = err_set(err, "directory: stopped");
            break;
        }
        rc = search_page(ld, f, cookie, &next, err);
        ber_bvfree(cookie);
        cookie = next;
        if (rc == 0 && cookie && f->page_entries == 0)
            rc = err_set(err, "directory: the server sent a page without entries that asks for "
                              "another (a paging loop); nothing changed");
        else if (rc == 0 && cookie && ++pages >= DIRECTORY_PAGES_MAX)
            rc = err_set(err, "directory: the search took more than %d pages; nothing changed",
                         DIRECTORY_PAGES_MAX);
    } while (rc == 0 && cookie);
    ber_bvfree(cookie);
    return rc;
}

/* The report's array <key>, added when absent; NULL without a report (or memory). */
static json_t *report_array(json_t *report, const char *key)
{
    json_t *a;

    if (!report)
        return NULL;
    a = json_object_get(report, key);
    if (json_is_array(a))
        return a;
    a = json_array();
    if (json_object_set_new(report, key, a) < 0)
        return NULL;
    return a;
}

int directory_fetch(const struct appconf *conf, const atomic_bool *stop,
                    struct directory_user **users, size_t *nusers, json_t *report, char **err)
{
    struct dn_set group = { 0 };
    struct fetch f = { .conf = conf, .stop = stop };
    struct directory_conn *c;
    LDAP *ld;
    int rc = -1;

    *users = NULL;
    *nusers = 0;
    f.report = report;
    f.skipped = report_array(report, "skipped");
    f.invalid = report_array(report, "invalid");
    fetch_attrs(&f);
    c = directory_conn_open(conf, stop, err);
    if (!c)
        return -1;
    ld = directory_conn_ldap(c);
    if (directory_service_bind(c, conf, err) < 0)
        goto out;
    if (*conf->directory.group_dn) {
        if (group_members(ld, conf, &group, err) < 0)
            goto out;
        f.group = &group;
    }
    if (search_all(ld, &f, err) < 0) {
        /* whatever libldap made of a socket shut down under it, say why */
        if (directory_conn_stopped(c))
            err_set(err, "directory: stopped");
        goto out;
    }
    cap_list(report, "skipped");
    *users = f.users;
    *nusers = f.n;
    f.users = NULL;
    f.n = 0;
    rc = 0;
out:
    directory_users_free(f.users, f.n);
    dn_set_free(&group);
    directory_conn_close(c);
    return rc;
}

void directory_users_free(struct directory_user *users, size_t n)
{
    for (size_t i = 0; i < n; i++)
        directory_user_clear(&users[i]);
    free(users);
}

int directory_dn_normalize(const char *dn, char **out)
{
    char *norm = NULL;

    *out = NULL;
    if (ldap_dn_normalize(dn, LDAP_DN_FORMAT_LDAP, &norm, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
        !norm)
        return -1;
    *out = strdup(norm);
    ldap_memfree(norm);
    if (!*out)
        return -1;
    for (char *p = *out; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return 0;
}
