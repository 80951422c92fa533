/*
 * The key file (pepper and seal keys); see keyfile.h for the format.
 *
 * Reading: the file is opened once and checked through that descriptor
 * (regular file, mode & 077 == 0, size), read into memory and parsed with
 * config_read_string(), so there is no race between the checks and the read
 * and a FIFO cannot block us. Before libconfig sees the text, cfg_prescan()
 * refuses @include and what libconfig 1.5 would misread (integers above
 * INT_MAX, wrapped silently) or leak memory on (misplaced strings).
 *
 * Writing: the text is built in a stack buffer and written with write(2),
 * not stdio, so no unwiped copy of the keys is left in a FILE buffer; new
 * files are created exclusively, replaced files are renamed over after an
 * fsync, and the directory is fsynced after both.
 *
 * Invariants: on error a keyring comes back wiped and empty; every buffer
 * that held key text or key bytes is wiped before it is freed or goes out of
 * scope. (libconfig frees its own copy of the key strings without wiping;
 * that cannot be helped through its API.)
 */
#include "keyfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "b64.h"
#include "config.h"
#include "errmsg.h"
#include "fsutil.h"
#include "ids.h"

#define KEYFILE_TEXT_MAX 4096 /* what we write: KEYRING_MAX * 2 lines of < 80 */
#define KEY_B64_LEN      B64_ENCODED_LEN(KEY_LEN)

static const char keyfile_header[] =
    "# MFA Appliance key file: the PIN pepper and the seed-sealing keys.\n"
    "# Identical on every member. Keep it mode 0600. Never put it in a backup unsealed.\n";

static const struct key_entry *ring_list(const struct keyring *kr, enum key_kind kind, size_t *n)
{
    switch (kind) {
    case KEY_PEPPER:
        *n = kr->npepper;
        return kr->pepper;
    case KEY_SEAL:
        *n = kr->nseal;
        return kr->seal;
    }
    *n = 0;
    return NULL;
}

static const char *kind_name(enum key_kind kind)
{
    return kind == KEY_PEPPER ? "pepper" : "seal";
}

const struct key_entry *keyring_current(const struct keyring *kr, enum key_kind kind)
{
    const struct key_entry *list, *best = NULL;
    size_t n;

    if (kr == NULL)
        return NULL;
    list = ring_list(kr, kind, &n);
    for (size_t i = 0; i < n && i < KEYRING_MAX; i++)
        if (best == NULL || list[i].id > best->id)
            best = &list[i];
    return best;
}

const struct key_entry *keyring_find(const struct keyring *kr, enum key_kind kind, uint32_t id)
{
    const struct key_entry *list;
    size_t n;

    if (kr == NULL)
        return NULL;
    list = ring_list(kr, kind, &n);
    for (size_t i = 0; i < n && i < KEYRING_MAX; i++)
        if (list[i].id == id)
            return &list[i];
    return NULL;
}

bool keyring_equal(const struct keyring *a, const struct keyring *b)
{
    if (a->npepper != b->npepper || a->nseal != b->nseal)
        return false;
    for (size_t i = 0; i < a->npepper; i++) {
        const struct key_entry *k = keyring_find(b, KEY_PEPPER, a->pepper[i].id);
        if (!k || CRYPTO_memcmp(k->key, a->pepper[i].key, KEY_LEN) != 0)
            return false;
    }
    for (size_t i = 0; i < a->nseal; i++) {
        const struct key_entry *k = keyring_find(b, KEY_SEAL, a->seal[i].id);
        if (!k || CRYPTO_memcmp(k->key, a->seal[i].key, KEY_LEN) != 0)
            return false;
    }
    return true;
}

void keyring_wipe(struct keyring *kr)
{
    if (kr != NULL)
        OPENSSL_cleanse(kr, sizeof(*kr));
}

int keyring_id_parse(const char *s, size_t len, uint32_t *id)
{
    uint64_t v = 0;

    if (len == 0 || len > 10 || s[0] < '1' || s[0] > '9')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > KEYRING_ID_MAX)
        return -1;
    *id = (uint32_t)v;
    return 0;
}

/* ---- parsing ---- */

static unsigned line_of(const config_setting_t *s)
{
    return (unsigned)config_setting_source_line(s);
}

static int parse_entry(const config_setting_t *grp, const char *list, int idx,
                       struct key_entry *out, char **err)
{
    const config_setting_t *id, *key;
    unsigned char raw[B64_DECODED_MAX(KEY_B64_LEN)];
    const char *text;
    size_t rawlen = 0;
    long long v;

    if (config_setting_type(grp) != CONFIG_TYPE_GROUP)
        return err_set(err, "line %u: %s[%d]: must be a group { id = N; key = \"...\"; }",
                       line_of(grp), list, idx);
    for (int j = 0; j < config_setting_length(grp); j++) {
        const config_setting_t *m = config_setting_get_elem(grp, (unsigned)j);
        const char *name = config_setting_name(m);

        if (name == NULL || (strcmp(name, "id") != 0 && strcmp(name, "key") != 0))
            return err_set(err, "line %u: %s[%d].%s: unknown setting (expected id and key)",
                           line_of(m), list, idx, name ? name : "?");
    }
    id = config_setting_get_member(grp, "id");
    if (id == NULL)
        return err_set(err, "line %u: %s[%d]: missing id", line_of(grp), list, idx);
    if (config_setting_type(id) != CONFIG_TYPE_INT && config_setting_type(id) != CONFIG_TYPE_INT64)
        return err_set(err, "line %u: %s[%d].id: must be an integer", line_of(id), list, idx);
    v = config_setting_get_int64(id);
    if (v < 1 || v > (long long)KEYRING_ID_MAX)
        return err_set(err, "line %u: %s[%d].id: %lld is out of range 1..%u", line_of(id), list,
                       idx, v, KEYRING_ID_MAX);
    key = config_setting_get_member(grp, "key");
    if (key == NULL)
        return err_set(err, "line %u: %s[%d]: missing key", line_of(grp), list, idx);
    if (config_setting_type(key) != CONFIG_TYPE_STRING)
        return err_set(err, "line %u: %s[%d].key: must be a string", line_of(key), list, idx);
    text = config_setting_get_string(key);
    if (strlen(text) != KEY_B64_LEN ||
        b64_decode(text, KEY_B64_LEN, raw, sizeof(raw), &rawlen) < 0 || rawlen != KEY_LEN) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return err_set(err, "line %u: %s[%d].key: must be base64 of exactly %d bytes", line_of(key),
                       list, idx, KEY_LEN);
    }
    out->id = (uint32_t)v;
    memcpy(out->key, raw, KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static int parse_list(const config_setting_t *root, const char *name, struct key_entry *out,
                      size_t *n, char **err)
{
    const config_setting_t *list = config_setting_get_member(root, name);
    int count;

    if (list == NULL)
        return err_set(err, "missing setting '%s' (a list: %s = ( { id = 1; key = \"...\"; } );)",
                       name, name);
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return err_set(err, "line %u: %s: must be a list ( { id = N; key = \"...\"; }, ... )",
                       line_of(list), name);
    count = config_setting_length(list);
    if (count == 0 || count > KEYRING_MAX)
        return err_set(err, "line %u: %s: has %d keys, must have 1 to %d", line_of(list), name,
                       count, KEYRING_MAX);
    for (int i = 0; i < count; i++) {
        const config_setting_t *grp = config_setting_get_elem(list, (unsigned)i);

        if (parse_entry(grp, name, i, &out[i], err) < 0)
            return -1;
        for (int k = 0; k < i; k++)
            if (out[k].id == out[i].id)
                return err_set(err, "line %u: %s[%d].id: duplicate id %u", line_of(grp), name, i,
                               (unsigned)out[i].id);
        *n = (size_t)i + 1;
    }
    return 0;
}

static int parse_config(const config_t *cfg, struct keyring *kr, char **err)
{
    const config_setting_t *root = config_root_setting(cfg), *version;

    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);

        if (name == NULL ||
            (strcmp(name, "version") && strcmp(name, "pepper") && strcmp(name, "seal")))
            return err_set(err, "line %u: %s: unknown setting (expected version, pepper, seal)",
                           line_of(s), name ? name : "?");
    }
    version = config_setting_get_member(root, "version");
    if (version == NULL)
        return err_set(err, "missing setting 'version' (expected version = 1;)");
    if (config_setting_type(version) != CONFIG_TYPE_INT || config_setting_get_int(version) != 1)
        return err_set(err, "line %u: version: unsupported (expected version = 1;)",
                       line_of(version));
    if (parse_list(root, "pepper", kr->pepper, &kr->npepper, err) < 0)
        return -1;
    return parse_list(root, "seal", kr->seal, &kr->nseal, err);
}

int keyfile_parse(const char *text, struct keyring *kr, char **err)
{
    config_t cfg;
    int rc;

    keyring_wipe(kr);
    if (text == NULL)
        return err_set(err, "no key file text");
    if (cfg_prescan(text, err) < 0)
        return -1;
    config_init(&cfg);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        rc = err_set(err, "line %d: %s", config_error_line(&cfg),
                     config_error_text(&cfg) ? config_error_text(&cfg) : "syntax error");
    } else {
        rc = parse_config(&cfg, kr, err);
    }
    config_destroy(&cfg);
    if (rc < 0)
        keyring_wipe(kr);
    return rc;
}

/* ---- files ---- */

/* Opens, checks and parses <path>; also returns its stat for rotation. */
static int load(const char *path, struct keyring *kr, struct stat *st, char **err)
{
    char *buf = NULL;
    size_t len = 0;
    int fd, rc = -1;

    keyring_wipe(kr);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "cannot open key file %s: %s", path, strerror(errno));
    if (fstat(fd, st) < 0) {
        err_set(err, "cannot stat key file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st->st_mode)) {
        err_set(err, "key file %s is not a regular file", path);
        goto fail;
    }
    if (st->st_mode & 077) {
        err_set(err,
                "key file %s has mode %04o: group or others may access the keys; "
                "fix with: chmod 600 %s",
                path, (unsigned)(st->st_mode & 07777), path);
        goto fail;
    }
    if (st->st_size > KEYFILE_SIZE_MAX) {
        err_set(err, "key file %s is larger than %d bytes", path, KEYFILE_SIZE_MAX);
        goto fail;
    }
    buf = malloc(KEYFILE_SIZE_MAX + 1);
    if (buf == NULL) {
        err_set(err, "out of memory reading key file %s", path);
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, KEYFILE_SIZE_MAX + 1 - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_set(err, "cannot read key file %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > KEYFILE_SIZE_MAX) {
            err_set(err, "key file %s is larger than %d bytes", path, KEYFILE_SIZE_MAX);
            goto fail;
        }
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        err_set(err, "key file %s contains a NUL byte", path);
        goto fail;
    }
    if (keyfile_parse(buf, kr, err) < 0) {
        err_prefix(err, "key file %s", path);
        goto fail;
    }
    rc = 0;
fail:
    if (buf != NULL)
        OPENSSL_cleanse(buf, KEYFILE_SIZE_MAX + 1);
    mfa_free(buf);
    close(fd);
    return rc;
}

int keyfile_load(const char *path, struct keyring *kr, char **err)
{
    struct stat st;

    return load(path, kr, &st, err);
}

static int format_list(char *buf, size_t bufsz, size_t *pos, const char *name,
                       const struct key_entry *list, size_t n)
{
    char b64[KEY_B64_LEN + 1];
    int w;

    w = snprintf(buf + *pos, bufsz - *pos, "%s = (\n", name);
    if (w < 0 || (size_t)w >= bufsz - *pos)
        return -1;
    *pos += (size_t)w;
    for (size_t i = 0; i < n; i++) {
        if (b64_encode(list[i].key, KEY_LEN, b64, sizeof(b64)) < 0)
            return -1;
        /* an id above INT_MAX needs libconfig's 64-bit suffix */
        w = snprintf(buf + *pos, bufsz - *pos, "    { id = %u%s; key = \"%s\"; }%s\n",
                     (unsigned)list[i].id, list[i].id > INT_MAX ? "L" : "", b64,
                     i + 1 < n ? "," : "");
        OPENSSL_cleanse(b64, sizeof(b64));
        if (w < 0 || (size_t)w >= bufsz - *pos)
            return -1;
        *pos += (size_t)w;
    }
    w = snprintf(buf + *pos, bufsz - *pos, ");\n");
    if (w < 0 || (size_t)w >= bufsz - *pos)
        return -1;
    *pos += (size_t)w;
    return 0;
}

int keyfile_format(const struct keyring *kr, const char *comment, char *buf, size_t size)
{
    size_t len = 0;
    int w = snprintf(buf, size, "%s%sversion = 1;\n", comment,
                     *comment && comment[strlen(comment) - 1] != '\n' ? "\n" : "");

    if (w < 0 || (size_t)w >= size)
        return -1;
    len = (size_t)w;
    if (format_list(buf, size, &len, "pepper", kr->pepper, kr->npepper) < 0 ||
        format_list(buf, size, &len, "seal", kr->seal, kr->nseal) < 0 || len > INT_MAX)
        return -1;
    return (int)len;
}

/* Writes the key file text of <kr> to <fd> and fsyncs it. */
static int write_keyring(int fd, const struct keyring *kr, const char *path, char **err)
{
    char buf[KEYFILE_TEXT_MAX];
    size_t len, off = 0;
    int rc = -1, n;

    n = keyfile_format(kr, keyfile_header, buf, sizeof(buf));
    if (n < 0) {
        err_set(err, "key file %s: text too long", path);
        goto done;
    }
    len = (size_t)n;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            err_set(err, "cannot write key file %s: %s", path, strerror(errno));
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        err_set(err, "cannot fsync key file %s: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int new_key(struct key_entry *e, uint32_t id, char **err)
{
    e->id = id;
    if (rand_bytes(e->key, KEY_LEN) < 0)
        return err_set(err, "random generator failed");
    return 0;
}

int keyfile_create(const char *path, char **err)
{
    struct keyring kr;
    int fd, rc = -1;

    keyring_wipe(&kr);
    if (new_key(&kr.pepper[0], 1, err) < 0 || new_key(&kr.seal[0], 1, err) < 0)
        goto done;
    kr.npepper = kr.nseal = 1;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            err_set(err, "key file %s already exists; refusing to overwrite it", path);
        else
            err_set(err, "cannot create key file %s: %s", path, strerror(errno));
        goto done;
    }
    rc = write_keyring(fd, &kr, path, err);
    if (close(fd) < 0 && rc == 0)
        rc = err_set(err, "cannot close key file %s: %s", path, strerror(errno));
    if (rc == 0)
        rc = fsutil_fsync_dir(path, err);
    if (rc < 0)
        unlink(path);
done:
    keyring_wipe(&kr);
    return rc;
}

/* Gives the temporary file the mode and owner of the file it replaces. */
static int copy_owner(int fd, const struct stat *st, const char *path, char **err)
{
    if (fchmod(fd, st->st_mode & 0700) < 0)
        return err_set(err, "cannot chmod %s: %s", path, strerror(errno));
    if (st->st_uid != geteuid()) {
        if (fchown(fd, st->st_uid, st->st_gid) < 0)
            return err_set(err, "cannot give %s the owner of the key file: %s", path,
                           strerror(errno));
    } else if (st->st_gid != getegid()) {
        /* best effort: the group has no access anyway (mode & 077 == 0) */
        if (fchown(fd, (uid_t)-1, st->st_gid) < 0)
            errno = 0;
    }
    return 0;
}

int keyfile_rotate(const char *path, enum key_kind kind, uint32_t *new_id, char **err)
{
    struct keyring kr;
    struct key_entry *list;
    size_t *n;
    uint32_t max = 0;
    struct stat st;
    char *tmp = NULL;
    int fd = -1, rc = -1;

    if (kind != KEY_PEPPER && kind != KEY_SEAL)
        return err_set(err, "unknown key kind %d", (int)kind);
    if (load(path, &kr, &st, err) < 0)
        return -1;
    list = kind == KEY_PEPPER ? kr.pepper : kr.seal;
    n = kind == KEY_PEPPER ? &kr.npepper : &kr.nseal;
    if (*n >= KEYRING_MAX) {
        err_set(err, "key file %s already holds %d %s keys; remove old ones first", path,
                KEYRING_MAX, kind_name(kind));
        goto done;
    }
    for (size_t i = 0; i < *n; i++)
        if (list[i].id > max)
            max = list[i].id;
    if (max >= KEYRING_ID_MAX) {
        err_set(err, "key file %s: %s key id %u is the largest allowed", path, kind_name(kind),
                (unsigned)max);
        goto done;
    }
    if (new_key(&list[*n], max + 1, err) < 0)
        goto done;
    (*n)++;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
        tmp = NULL;
        err_set(err, "out of memory");
        goto done;
    }
    fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600, same directory */
    if (fd < 0) {
        err_set(err, "cannot create temporary file %s: %s", tmp, strerror(errno));
        mfa_free(tmp);
        goto done;
    }
    if (copy_owner(fd, &st, tmp, err) < 0 || write_keyring(fd, &kr, tmp, err) < 0)
        goto done;
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        err_set(err, "cannot close %s: %s", tmp, strerror(errno));
        goto done;
    }
    rc = -1;
    if (rename(tmp, path) < 0) {
        err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    mfa_free(tmp); /* renamed: nothing to remove any more */
    if (fsutil_fsync_dir(path, err) < 0)
        goto done;
    *new_id = max + 1;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        unlink(tmp);
    free(tmp);
    keyring_wipe(&kr);
    return rc;
}
