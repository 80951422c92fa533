/*
 * The LDAP connection of the directory (directory.h): the secret file of the
 * service password, the connection with its TLS and deadlines, the service
 * bind, and the bind check of a user's password. The search is
 * directory_fetch.c's.
 *
 * A connection is opened per call and closed before it returns; every option
 * is set on the handle, never globally, so that threads do not share TLS
 * contexts. TLS always: ldaps:// or StartTLS (appconf.c refuses ldap:// in
 * clear), the certificate verified against directory.ca_file (or the system
 * bundle, never a CA directory or file from libldap's defaults) and the
 * URL's host (REQUIRE_CERT = DEMAND). Every operation is bounded by
 * directory.timeout_ms: the connect and the TLS handshake by the network
 * timeout and the watchdog (per URL of the list: each has a handle, a
 * watchdog and a deadline of its own), each request by the operation
 * timeout, each search by its own time limit, and each read or write on the
 * socket by SO_RCVTIMEO/SO_SNDTIMEO and TCP_USER_TIMEOUT (a server that
 * stops in the middle of an answer).
 *
 * No password ever reaches an error message: errors say what failed, where,
 * and libldap's sentence for it.
 */
#include "directory.h"

#include <errno.h>
#include <fcntl.h>
#include <ldap.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "directory_priv.h"
#include "errmsg.h"
#include "secrets.h"

#define SECRET_FILE_MAX 4096 /* a secret file larger than this is not one */

/* ---- secret files */

/* Reads at most <size> bytes of <fd> into <buf>; returns the count or -1 (errno). */
static ssize_t read_some(int fd, char *buf, size_t size)
{
    size_t len = 0;

    while (len < size) {
        ssize_t r = read(fd, buf + len, size - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        len += (size_t)r;
    }
    return (ssize_t)len;
}

static int secret_check_stat(int fd, const char *path, char **err)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return err_set(err, "cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, "%s is not a regular file", path);
    if (st.st_mode & 007)
        return err_set(err,
                       "%s has mode %04o: others may read the secret; fix with: chmod o-rwx %s",
                       path, (unsigned)(st.st_mode & 07777), path);
    if (st.st_size > SECRET_FILE_MAX)
        return err_set(err, "%s is larger than %d bytes", path, SECRET_FILE_MAX);
    return 0;
}

int directory_read_secret_file(const char *path, char *out, size_t size, char **err)
{
    char buf[SECRET_FILE_MAX + 1];
    ssize_t len;
    size_t line;
    int fd, rc = -1;

    if (size == 0)
        return err_set(err, "no room for the secret of %s", path);
    /* O_NONBLOCK: a FIFO put there must not hang the reader before fstat says what it is */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, "cannot open %s: %s", path, strerror(errno));
    if (secret_check_stat(fd, path, err) < 0)
        goto out;
    len = read_some(fd, buf, sizeof(buf) - 1);
    if (len < 0) {
        err_set(err, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    line = strcspn(buf, "\r\n");
    if (memchr(buf, '\0', line) != NULL) {
        err_set(err, "%s holds a NUL byte in its first line", path);
        goto out;
    }
    if (line >= size) {
        err_set(err, "the first line of %s is longer than %zu bytes", path, size - 1);
        goto out;
    }
    memcpy(out, buf, line);
    out[line] = '\0';
    rc = 0;
out:
    secret_wipe(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* ---- the list of URLs */

int directory_url_next(const char *list, size_t *pos, char *out, size_t size)
{
    const char *p = list + *pos;
    size_t len;

    p += strspn(p, ", ");
    if (!*p) {
        *pos = (size_t)(p - list);
        return 0;
    }
    len = strcspn(p, ", ");
    *pos = (size_t)(p + len - list);
    if (len >= size)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return 1;
}

/* ---- errors */

/* (directory_priv.h) */
int directory_ldap_err(LDAP *ld, int rc, char **err, const char *fmt, ...)
{
    char what[512], diag[200] = "";
    char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) == LDAP_OPT_SUCCESS && msg &&
        *msg) {
        size_t i;

        for (i = 0; msg[i] && i < sizeof(diag) - 1; i++)
            diag[i] = (unsigned char)msg[i] < 0x20 || msg[i] == 0x7f ? ' ' : msg[i];
        diag[i] = '\0';
    }
    ldap_memfree(msg);
    /* what libldap says when the TLS handshake failed, most often over the certificate */
    if (strcmp(diag, "(unknown error code)") == 0)
        snprintf(diag, sizeof(diag),
                 "the TLS handshake failed: a certificate not issued by directory.ca_file's CA "
                 "or not for the URL's host, or no TLS server there");
    if (*diag)
        return err_set(err, "directory: %s: %s (%s)", what, ldap_err2string(rc), diag);
    return err_set(err, "directory: %s: %s", what, ldap_err2string(rc));
}

/* ---- the connection */

void directory_timeval(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* The handle's options: LDAPv3, no referrals, the deadlines, TLS with the CA. */
static int set_options(LDAP *ld, const struct appconf *conf, char **err)
{
    int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, tls12 = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
    int newctx = 0, ms = conf->directory.timeout_ms;
    /* a dead peer found by keepalives within about the timeout; idle and interval in seconds */
    int idle = ms / 2000 > 0 ? ms / 2000 : 1, probes = 2, interval = idle;
    unsigned user_timeout = (unsigned)ms;
    const char *ca = *conf->directory.ca_file ? conf->directory.ca_file : DIRECTORY_SYSTEM_CA_FILE;
    struct timeval tv;

    directory_timeval(&tv, ms);
    if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_TCP_USER_TIMEOUT, &user_timeout) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_IDLE, &idle) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_PROBES, &probes) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_INTERVAL, &interval) != LDAP_OPT_SUCCESS)
        return err_set(err, "directory: cannot set the LDAP options");
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls12) != LDAP_OPT_SUCCESS)
        return err_set(err, "directory: cannot set the TLS options");
    /* only the file named: no CA directory, whatever libldap's defaults say */
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTDIR, NULL) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, ca) != LDAP_OPT_SUCCESS)
        return err_set(err, "directory: cannot use the CA file %s", ca);
    /* the options above take effect in a TLS context of this handle's own */
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newctx) != LDAP_OPT_SUCCESS)
        return err_set(err, "directory: cannot make a TLS context with directory.ca_file %s",
                       *conf->directory.ca_file ? conf->directory.ca_file : "(system trust)");
    return 0;
}

/*
 * The deadline of the connect and the TLS handshake. libldap 2.5's ldaps://
 * handshake spins without end on a server that accepts and then says
 * nothing, whatever the network timeout, and a StartTLS handshake may wait
 * as long: a watchdog thread shuts the socket down at the deadline, which
 * ends either with an error. The socket comes from the connect callback and
 * is forgotten, under the mutex, before libldap closes it.
 */
struct directory_conn {
    LDAP *ld;
    struct ldap_conncb cb;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;                  /* -1 when not connected */
    bool done;               /* the handshake is over: the deadline no longer holds */
    bool closing;            /* the connection is being closed: the watchdog leaves */
    bool fired;              /* the watchdog shut the socket down at the deadline */
    bool stopped;            /* ... or because *stop was set */
    const atomic_bool *stop; /* NULL: the watchdog leaves after the handshake */
    bool watching;           /* the watchdog thread runs (joined at the close) */
    pthread_t th;
    int timeout_ms;
    struct timespec deadline;
    char url[DIRECTORY_URL_MAX]; /* the one URL of directory.url this handle is for */
};

static int conn_added(LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv, struct sockaddr *addr,
                      struct ldap_conncb *cb)
{
    struct directory_conn *c = cb->lc_arg;
    ber_socket_t fd = -1;

    (void)ld, (void)srv, (void)addr;
    ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd);
    if (fd >= 0) {
        /* a read or write that stalls (a server stopped in mid-answer) fails at the timeout */
        struct timeval tv;

        directory_timeval(&tv, c->timeout_ms);
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    pthread_mutex_lock(&c->mu);
    c->fd = fd;
    /* past the deadline already (another address of the host): no handshake without a watchdog */
    if (fd >= 0 && c->fired)
        shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void conn_deleted(LDAP *ld, Sockbuf *sb, struct ldap_conncb *cb)
{
    struct directory_conn *c = cb->lc_arg;

    (void)ld, (void)sb;
    pthread_mutex_lock(&c->mu);
    c->fd = -1;
    pthread_mutex_unlock(&c->mu);
}

#define STOP_POLL_MS 200 /* how often the watchdog looks at the stop flag */

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void add_ms(struct timespec *t, long ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Shuts the socket down at the handshake's deadline, or (with a stop flag) when it is set. */
static void *watchdog(void *arg)
{
    struct directory_conn *c = arg;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        struct timespec now, wake;

        if (c->closing || (c->done && !c->stop))
            break;
        if (c->stop && atomic_load(c->stop)) {
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
            c->stopped = true;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!c->done && !before(&now, &c->deadline)) {
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
            c->fired = true;
            break;
        }
        wake = now;
        add_ms(&wake, STOP_POLL_MS);
        if (!c->stop || (!c->done && before(&c->deadline, &wake)))
            wake = c->deadline;
        pthread_cond_timedwait(&c->cv, &c->mu, &wake);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void watchdog_end(struct directory_conn *c)
{
    if (!c->watching)
        return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->th, NULL);
    c->watching = false;
}

bool directory_conn_stopped(struct directory_conn *c)
{
    bool stopped;

    pthread_mutex_lock(&c->mu);
    stopped = c->stopped || (c->stop && atomic_load(c->stop));
    pthread_mutex_unlock(&c->mu);
    return stopped;
}

void directory_conn_close(struct directory_conn *c)
{
    if (!c)
        return;
    watchdog_end(c);
    if (c->ld)
        ldap_unbind_ext_s(c->ld, NULL, NULL); /* calls conn_deleted: c lives until after */
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* A handle for <url>, one URL of the list, its deadline timeout_ms from now. */
static struct directory_conn *conn_new(const struct appconf *conf, const char *url,
                                       const atomic_bool *stop, char **err)
{
    struct directory_conn *c = calloc(1, sizeof(*c));
    pthread_condattr_t ca;
    int ms = conf->directory.timeout_ms;

    if (!c) {
        err_set(err, "directory: out of memory");
        return NULL;
    }
    snprintf(c->url, sizeof(c->url), "%s", url);
    c->fd = -1;
    c->stop = stop;
    c->timeout_ms = ms;
    c->cb = (struct ldap_conncb){ conn_added, conn_deleted, c };
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    clock_gettime(CLOCK_MONOTONIC, &c->deadline);
    add_ms(&c->deadline, ms);
    return c;
}

/* Connects and (with directory.starttls) starts TLS, under the watchdog. Returns an LDAP result
 * code. */
static int handshake(struct directory_conn *c, const struct appconf *conf, const char **step)
{
    int rc;

    if (pthread_create(&c->th, NULL, watchdog, c) != 0) {
        *step = "cannot start the connection's watchdog for";
        return LDAP_NO_MEMORY;
    }
    c->watching = true;
    *step = "cannot connect to";
    rc = ldap_connect(c->ld);
    if (rc == LDAP_SUCCESS && conf->directory.starttls) {
        *step = "cannot start TLS with";
        rc = ldap_start_tls_s(c->ld, NULL, NULL);
    }
    pthread_mutex_lock(&c->mu);
    c->done = true;
    pthread_cond_signal(&c->cv);
    /* the watchdog fired: a timeout, whatever libldap made of the socket shut under it */
    if (c->fired)
        rc = LDAP_TIMEOUT;
    pthread_mutex_unlock(&c->mu);
    if (!c->stop)
        watchdog_end(c);
    return rc;
}

/*
 * libldap makes its global state (options from ldap.conf, ldaprc and the
 * LDAP* variables, the TLS library) on first use, and its TLS start-up
 * counts without a lock: done once here, before worker threads race to it,
 * with LDAPNOINIT so that no file or variable of the host changes what the
 * appliance's configuration says. A global TLS context made with the
 * defaults is how it is started; each handle still makes its own.
 */
static void lib_init(void)
{
    int version = 0, newctx = 0;

    if (!getenv("LDAPNOINIT"))
        (void)setenv("LDAPNOINIT", "1", 1);
    (void)ldap_get_option(NULL, LDAP_OPT_PROTOCOL_VERSION, &version);
    (void)ldap_set_option(NULL, LDAP_OPT_X_TLS_NEWCTX, &newctx);
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

void directory_lib_init(void)
{
    pthread_once(&lib_once, lib_init);
}

/*
 * Opens a handle for <url> (one URL) and connects it: NULL with *err when
 * it did not (*stopped set when the stop flag ended it).
 */
static struct directory_conn *conn_open_one(const struct appconf *conf, const char *url,
                                            const atomic_bool *stop, bool *stopped, char **err)
{
    const char *step = "";
    struct directory_conn *c;
    int rc;

    c = conn_new(conf, url, stop, err);
    if (!c)
        return NULL;
    rc = ldap_initialize(&c->ld, url);
    if (rc != LDAP_SUCCESS) {
        err_set(err, "directory: %s is not a usable LDAP URL: %s", url, ldap_err2string(rc));
        goto fail;
    }
    if (set_options(c->ld, conf, err) < 0)
        goto fail;
    if (ldap_set_option(c->ld, LDAP_OPT_CONNECT_CB, &c->cb) != LDAP_OPT_SUCCESS) {
        err_set(err, "directory: cannot set the LDAP options");
        goto fail;
    }
    rc = handshake(c, conf, &step);
    if (rc != LDAP_SUCCESS && directory_conn_stopped(c)) {
        *stopped = true;
        err_set(err, "directory: stopped");
        goto fail;
    }
    if (rc == LDAP_TIMEOUT) {
        err_set(err, "directory: %s %s: no answer within directory.timeout_ms (%d ms)", step, url,
                conf->directory.timeout_ms);
        goto fail;
    }
    if (rc != LDAP_SUCCESS) {
        directory_ldap_err(c->ld, rc, err, "%s %s", step, url);
        goto fail;
    }
    return c;
fail:
    directory_conn_close(c);
    return NULL;
}

/*
 * (directory_priv.h) Each URL of the list in turn, with its own handle,
 * watchdog and deadline: libldap's own walk of a list would share one
 * deadline among them, and a watchdog that fired on the first would leave
 * the next one's TLS handshake unwatched. The first that connects (and
 * starts TLS) is the one; what it answers after that (a bind refused) is
 * the directory's answer, not a reason to try the next.
 */
struct directory_conn *directory_conn_open(const struct appconf *conf, const atomic_bool *stop,
                                           char **err)
{
    const char *list = conf->directory.url;
    char url[DIRECTORY_URL_MAX], *why = NULL;
    size_t pos = 0, tried = 0;
    bool stopped = false;
    int r;

    directory_lib_init();
    while ((r = directory_url_next(list, &pos, url, sizeof(url))) != 0) {
        struct directory_conn *c;
        char *one = NULL;

        if (stop && atomic_load(stop)) {
            stopped = true;
            break;
        }
        if (r < 0) {
            err_set(&one, "directory: a URL of directory.url is longer than %zu bytes",
                    sizeof(url) - 1);
        } else {
            c = conn_open_one(conf, url, stop, &stopped, &one);
            if (c) {
                free(why);
                return c;
            }
        }
        tried++;
        /* every server's reason, in order: "<first>; <second>" */
        if (why && one) {
            char *both = NULL;

            err_set(&both, "%s; %s", why, one);
            free(one);
            one = both;
        }
        free(why);
        why = one;
        if (stopped)
            break;
    }
    if (stopped)
        err_set(err, "directory: stopped");
    else if (!tried)
        err_set(err, "directory: directory.url names no server");
    else if (why)
        err_set(err, "%s", why);
    else
        err_set(err, "directory: out of memory");
    free(why);
    return NULL;
}

LDAP *directory_conn_ldap(const struct directory_conn *c)
{
    return c->ld;
}

/* A simple bind as <dn> with <password> (not empty). Returns the LDAP result code. */
static int simple_bind(LDAP *ld, const char *dn, const char *password)
{
    struct berval cred;

    cred.bv_val = (char *)(uintptr_t)password; /* libldap only reads it */
    cred.bv_len = strlen(password);
    return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
}

int directory_service_bind(struct directory_conn *c, const struct appconf *conf, char **err)
{
    char password[DIRECTORY_PASSWORD_MAX * 4 + 1];
    LDAP *ld = c->ld;
    int rc;

    if (!*conf->directory.bind_dn)
        return 0;
    if (directory_read_secret_file(conf->directory.bind_password_file, password, sizeof(password),
                                   err) < 0)
        return err_prefix(err, "directory: directory.bind_password_file");
    if (!*password)
        return err_set(err,
                       "directory: directory.bind_password_file %s is empty (an empty password "
                       "would bind anonymously)",
                       conf->directory.bind_password_file);
    rc = simple_bind(ld, conf->directory.bind_dn, password);
    secret_wipe(password, sizeof(password));
    if (rc != LDAP_SUCCESS)
        return directory_ldap_err(ld, rc, err, "cannot bind to %s as %s", c->url,
                                  conf->directory.bind_dn);
    return 0;
}

int directory_bind_check(const struct appconf *conf, const char *dn, const char *password,
                         char **err)
{
    struct directory_conn *c;
    int rc;

    if (!dn || !*dn)
        return err_set(err, "directory: the user has no directory DN to bind as");
    /* An empty password is an unauthenticated bind that "succeeds" (RFC 4513 §5.1.2). */
    if (!password || !*password || strlen(password) > DIRECTORY_PASSWORD_MAX)
        return 0;
    c = directory_conn_open(conf, NULL, err);
    if (!c)
        return -1;
    rc = simple_bind(c->ld, dn, password);
    if (rc == LDAP_SUCCESS) {
        rc = 1;
    } else if (rc == LDAP_INVALID_CREDENTIALS || rc == LDAP_INAPPROPRIATE_AUTH) {
        /* also what Active Directory and ppolicy answer for a locked or disabled account */
        rc = 0;
    } else {
        rc = directory_ldap_err(c->ld, rc, err, "cannot bind to %s as %s", c->url, dn);
    }
    directory_conn_close(c);
    return rc;
}
