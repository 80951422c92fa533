/*
 * `mfactl setup` (setup.h): the files it writes and reads, the
 * certificates it checks, the configuration it loads and edits, and the
 * units it starts and waits for.
 *
 * Files are written with fsutil_write_atomic_owned(): a temporary name beside
 * the final one, given its mode and owner through the descriptor, fsynced,
 * renamed over, and the directory fsynced: a reader sees the old file or the
 * new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cluster_plan.h"
#include "ctl.h"
#include "errmsg.h"
#include "fsutil.h"
#include "pki.h"
#include "setup_priv.h"

/* ---- files ---- */

/* The daemons' user (appliance.user) when we are root and it exists: it must read its files. */
struct setup_owner setup_daemon_owner(const struct appconf *c)
{
    struct setup_owner o = { .set = false };
    struct passwd *pw = geteuid() == 0 ? getpwnam(c->appliance.user) : NULL;

    if (pw) {
        o.set = true;
        o.uid = pw->pw_uid;
        o.gid = pw->pw_gid;
    }
    return o;
}

int setup_give(const char *path, const struct setup_owner *o, char **err)
{
    if (o && o->set && chown(path, o->uid, o->gid) < 0)
        return err_set(err, "cannot chown %s: %s", path, strerror(errno));
    return 0;
}

bool setup_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Reads the regular file <path> (at most SETUP_FILE_MAX bytes) as a string; NULL with *err. */
char *setup_read_text(const char *path, char **err)
{
    struct stat st;
    char *buf;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        err_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SETUP_FILE_MAX) {
        close(fd);
        err_set(err, "%s is not a regular file of at most %d bytes", path, SETUP_FILE_MAX);
        return NULL;
    }
    buf = calloc(1, (size_t)st.st_size + 1);
    n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        free(buf);
        err_set(err, "cannot read %s", path);
        return NULL;
    }
    return buf;
}

/* fsutil_write_atomic_owned() with the owner <o> (NULL or unset: ours). */
int setup_write_file(const char *path, const char *data, size_t len, mode_t mode,
                     const struct setup_owner *o, char **err)
{
    bool own = o && o->set;

    return fsutil_write_atomic_owned(path, data, len, mode, own ? o->uid : (uid_t)-1,
                                     own ? o->gid : (gid_t)-1, err);
}

/* Creates the directory holding <path> (0755) when it is missing, parents too. */
int setup_make_parent(const char *path, char **err)
{
    char dir[4096];

    snprintf(dir, sizeof(dir), "%s", path);
    for (char *s = dir + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return err_set(err, "cannot create directory %s: %s", dir, strerror(errno));
        *s = '/';
    }
    return 0;
}

void setup_dir_of(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(buf, size, ".");
    else
        snprintf(buf, size, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

void setup_say(const char *what, const char *how, const char *path)
{
    printf("%-5s %-22s %s\n", how, what, path);
    fflush(stdout);
}

/* ---- certificates ---- */

static X509 *cert_from_pem(const char *pem, size_t len)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    ERR_clear_error();
    return x;
}

/*
 * Checks that the certificate <crt> (PEM text) was issued by <ca> (PEM text)
 * for member <id> (its common name). Returns 0, or -1 with *err.
 */
int setup_cert_check(const char *crt, const char *ca, const char *id, const char *what, char **err)
{
    X509 *x = cert_from_pem(crt, strlen(crt)), *c = cert_from_pem(ca, strlen(ca));
    char cn[80] = "";
    int rc = 0;

    if (!x || !c)
        rc = err_set(err, "%s: not a PEM certificate", !x ? what : "the CA");
    else if (X509_check_issued(c, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(c)) != 1)
        rc = err_set(err, "%s was not issued by this cluster's CA", what);
    else if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) <=
                 0 ||
             strcmp(cn, id) != 0)
        rc = err_set(err, "%s is member \"%s\"'s, not \"%s\"'s", what, cn, id);
    ERR_clear_error();
    X509_free(x);
    X509_free(c);
    return rc;
}

/* A writable copy of the NULL-terminated <args> (getopt wants char **). Returns 0, or -1. */
static int argv_copy(const char *const *args, char **argv)
{
    size_t n = 0;

    for (; args[n] && n < SETUP_ARGV_MAX - 1; n++)
        if (!(argv[n] = strdup(args[n])))
            break;
    argv[n] = NULL;
    return args[n] ? -1 : (int)n;
}

static void argv_free(char **argv)
{
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
}

/* Runs `mfactl pki <args>` in-process. Returns 0, or -1 (pki printed why). */
int setup_run_pki(const char *const *args)
{
    char *argv[SETUP_ARGV_MAX];
    int argc = argv_copy(args, argv), rc = -1;

    if (argc > 0)
        rc = pki_main(argc, argv) == 0 ? 0 : -1;
    argv_free(argv);
    return rc;
}

/* Where pki issue writes the certificate <crt>/<key>: "<prefix>.crt" and "<prefix>.key". */
int setup_leaf_prefix(const struct appconf *c, char *buf, size_t size, char **err)
{
    size_t n = strlen(c->appliance.tls_cert);

    if (n < 5 || strcmp(c->appliance.tls_cert + n - 4, ".crt") != 0 || n - 4 >= size)
        return err_set(err, "appliance.tls.cert %s: setup needs a name ending in .crt",
                       c->appliance.tls_cert);
    snprintf(buf, size, "%.*s", (int)(n - 4), c->appliance.tls_cert);
    if (strncmp(c->appliance.tls_key, buf, n - 4) != 0 ||
        strcmp(c->appliance.tls_key + n - 4, ".key") != 0)
        return err_set(err, "appliance.tls.key must be %s.key beside appliance.tls.cert", buf);
    return 0;
}

/* The CA's directory: cluster.tls.ca must be <dir>/ca.crt, where pki init writes it. */
int setup_ca_dir(const struct appconf *c, char *buf, size_t size, char **err)
{
    const char *base = strrchr(c->cluster.tls_ca, '/');

    if (strcmp(base ? base + 1 : c->cluster.tls_ca, "ca.crt") != 0)
        return err_set(err, "cluster.tls.ca %s: setup needs it named ca.crt", c->cluster.tls_ca);
    setup_dir_of(c->cluster.tls_ca, buf, size);
    return 0;
}

/* ---- the data directory ---- */

static void pgdata_of(const struct appconf *c, char *buf, size_t size)
{
    if (*c->replicator.pgdata)
        snprintf(buf, size, "%s", c->replicator.pgdata);
    else
        snprintf(buf, size, "%s/pgdata", c->appliance.data_dir);
}

/* True when this member's PostgreSQL data exists (the replicator's own test: PG_VERSION). */
bool setup_has_data(const struct appconf *c)
{
    char pgdata[4096], path[4200];

    pgdata_of(c, pgdata, sizeof(pgdata));
    snprintf(path, sizeof(path), "%s/PG_VERSION", pgdata);
    return setup_exists(path);
}

/* ---- the configuration ---- */

int setup_load_conf(const char *path, struct appconf *c, char **err)
{
    memset(c, 0, sizeof(*c));
    return appconf_load(path, c, NULL, NULL, err);
}

/*
 * Writes <text> over the configuration <path>, keeping its mode and owner,
 * after checking that it loads.
 */
int setup_write_conf(const char *path, const char *text, char **err)
{
    struct appconf check;
    struct setup_owner o = { .set = false };
    struct stat st;

    memset(&check, 0, sizeof(check));
    if (appconf_load_string(text, path, &check, NULL, NULL, err) < 0)
        return err_prefix(err, "the edited configuration does not load");
    appconf_free(&check);
    if (stat(path, &st) < 0)
        return err_set(err, "%s: %s", path, strerror(errno));
    if (st.st_uid != geteuid() || st.st_gid != getegid()) {
        o.set = true;
        o.uid = st.st_uid;
        o.gid = st.st_gid;
    }
    return setup_write_file(path, text, strlen(text), st.st_mode & 07777, &o, err);
}

/*
 * Applies the edits (paths[i] = values[i], n of them) to the text of
 * <path>; *out is the new text. Returns 0, or -1 with *err.
 */
int setup_edit_conf(const char *path, const char *const *paths, char *const *values, size_t n,
                    char **out, char **err)
{
    char *text = setup_read_text(path, err), *next;

    if (!text)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (setup_conf_replace(text, paths[i], values[i], &next, err) < 0) {
            free(text);
            return err_prefix(err, "%s", path);
        }
        free(text);
        text = next;
    }
    *out = text;
    return 0;
}

/*
 * A quoted libconfig string of <s>, with '"' and '\\' escaped; NULL for a
 * control character (none belongs in a name, an id or an address) or out of
 * memory. What a member sent goes through here: whatever it holds stays one
 * string.
 */
char *setup_quoted(const char *s)
{
    size_t len = strlen(s), j = 0;
    char *q = malloc(2 * len + 3);

    if (!q)
        return NULL;
    q[j++] = '"';
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            free(q);
            return NULL;
        }
        if (s[i] == '"' || s[i] == '\\')
            q[j++] = '\\';
        q[j++] = s[i];
    }
    q[j++] = '"';
    q[j] = '\0';
    return q;
}

/* ---- starting the units and waiting ---- */

/* Runs <args> (a program on PATH) and waits for it. Returns 0 when it exited 0. */
int setup_run_program(const char *const *args)
{
    char *argv[SETUP_ARGV_MAX];
    pid_t pid;
    int st;

    fflush(stdout);
    if (argv_copy(args, argv) < 0) {
        argv_free(argv);
        return -1;
    }
    pid = fork();
    if (pid != 0)
        argv_free(argv);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "mfactl setup: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The thin systemd step: enable the three units and start them now. */
static int start_units(void)
{
    const char *argv[] = { "systemctl",
                           "enable",
                           "--now",
                           "mfa-replicator.service",
                           "mfa-node.service",
                           "mfa-balancer.service",
                           NULL };

    printf("start systemctl enable --now mfa-replicator mfa-node mfa-balancer\n");
    if (setup_run_program(argv) < 0) {
        fprintf(stderr, "mfactl setup: systemctl failed; see journalctl -u mfa-replicator\n");
        return -1;
    }
    return 0;
}

/*
 * One GET /status of member <idx> into *m (plan_member_down() when it does
 * not answer), and its "setup_done" into *setup_done.
 */
static void fetch_one(struct ctl *c, size_t idx, struct plan_member *m, bool *setup_done)
{
    struct ctl_call k = { .idx = idx,
                          .api = CTL_API_REPLICATOR,
                          .method = "GET",
                          .path = "/status",
                          .timeout_ms = CTL_STATUS_TIMEOUT_MS };
    const char *id = ctl_conf(c)->cluster.members[idx].id;
    char *err = NULL;

    *setup_done = false;
    ctl_call_all(c, &k, 1);
    if (k.reply.error) {
        plan_member_down(m, id, k.reply.error);
    } else if (plan_member_from_json(k.reply.json, id, m, &err) < 0) {
        free(err);
    } else {
        *setup_done = json_is_true(json_object_get(k.reply.json, "setup_done"));
    }
    ctl_reply_clear(&k.reply);
}

/*
 * Polls this member's replicator (with the configuration just written)
 * until it is a primary (<primary>; fenced counts unless <writable>) or a
 * streaming standby, at most <wait_s> seconds. <writable> also waits for
 * "setup_done": the replicator has made the roles, the database and the
 * schema (restore must not race its migrations). Returns mfactl's exit code.
 */
int setup_wait_role(const char *config, bool primary, bool writable, int wait_s)
{
    struct plan_member m[APPCONF_MAX_MEMBERS];
    bool want[APPCONF_MAX_MEMBERS] = { false };
    char *err = NULL;
    struct ctl *c = ctl_open(config, &err);
    int idx, rc = SETUP_FAILED;
    bool said_fenced = false, setup_done = false;

    if (!c) {
        fprintf(stderr, "mfactl setup: %s\n", err);
        free(err);
        return SETUP_USAGE;
    }
    idx = ctl_member_index(c, ctl_conf(c)->appliance.member);
    if (idx < 0) {
        fprintf(stderr, "mfactl setup: appliance.member %s is not in cluster.members\n",
                ctl_conf(c)->appliance.member);
        ctl_close(c);
        return SETUP_USAGE;
    }
    want[idx] = true;
    printf("wait  until this member is %s (at most %d s)\n",
           primary ? "the primary" : "a streaming standby", wait_s);
    for (;;) {
        memset(&m[idx], 0, sizeof(m[idx]));
        if (writable)
            fetch_one(c, (size_t)idx, &m[idx], &setup_done);
        else
            ctl_fetch(c, m, want, false);
        /* fenced: created with --member hosts not there yet, it waits for a majority */
        if (m[idx].reachable && primary && m[idx].role == PLAN_ROLE_PRIMARY &&
            ((m[idx].writable && (!writable || setup_done)) || (m[idx].fenced && !writable))) {
            rc = SETUP_OK;
            break;
        }
        if (writable && !said_fenced && m[idx].reachable && m[idx].role == PLAN_ROLE_PRIMARY &&
            m[idx].fenced) {
            said_fenced = true;
            printf("wait  member %s is primary but fenced until a majority of cluster.members "
                   "answers: join the other members now (mfactl setup --join)\n",
                   m[idx].id);
            fflush(stdout);
        }
        if (m[idx].reachable && !primary && m[idx].role == PLAN_ROLE_STANDBY &&
            m[idx].streaming == 1) {
            rc = SETUP_OK;
            break;
        }
        if (ctl_elapsed_s(c) >= wait_s || !ctl_sleep(c, 1.0)) {
            fprintf(stderr,
                    "mfactl setup: not %s after %d s (last: %s%s%s%s); see journalctl -u "
                    "mfa-replicator\n",
                    primary ? "primary" : "streaming", wait_s,
                    m[idx].reachable ? m[idx].role_name : "no answer",
                    m[idx].reachable && m[idx].task[0] ? ", task " : "", m[idx].task,
                    writable && m[idx].writable && !setup_done
                        ? ", writable but the database setup is not done"
                        : "");
            break;
        }
    }
    if (rc == SETUP_OK)
        printf("done  member %s is %s%s\n", m[idx].id, primary ? "primary" : "a streaming standby",
               primary && !m[idx].writable
                   ? " (fenced: writable once a majority of cluster.members has joined)"
                   : "");
    ctl_close(c);
    return rc;
}

/* A private directory for files that must not outlive the command; "" on failure. */
int setup_temp_dir(char *buf, size_t size, char **err)
{
    const char *t = getenv("TMPDIR");

    snprintf(buf, size, "%s/mfa-setup.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf))
        return err_set(err, "cannot make a temporary directory: %s", strerror(errno));
    return 0;
}

/* Removes the files <names> of the temporary directory <dir>, then the directory. */
void setup_temp_remove(const char *dir, const char *const *names, size_t n)
{
    char path[4200];

    if (!*dir)
        return;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Frees <s> after wiping it (it may hold a private key). */
void setup_free_secret(char *s)
{
    if (s)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
}

int setup_start_and_wait(const char *config, const struct setup_args *a, bool primary)
{
    if (a->no_start) {
        printf("next: start the units (systemctl enable --now mfa-replicator mfa-node "
               "mfa-balancer); the replicator %s\n",
               primary ? "creates the cluster" : "copies the primary");
        return SETUP_OK;
    }
    if (start_units() < 0)
        return SETUP_FAILED;
    return setup_wait_role(config, primary, false,
                           a->wait_s ? a->wait_s
                           : primary ? SETUP_WAIT_PRIMARY_S
                                     : SETUP_WAIT_JOIN_S);
}
