/*
 * common/pgconn without a server: the conninfo builder and checker, the name
 * tables, caller mistakes, and the loop-driven failure paths against a closed
 * loopback port (a query fails through its callback at its deadline, pending
 * queries get "connection closed" from pgconn_free, also when called from a
 * callback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pgconn.h"

/* The value of <key> in <conninfo> as libpq parses it ("" when absent). */
static void parsed(const char *conninfo, const char *key, char *out, size_t size)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);

    assert_non_null(opts);
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, key) == 0 && o->val)
            snprintf(out, size, "%s", o->val);
    }
    PQconninfoFree(opts);
}

static void assert_key(const char *conninfo, const char *key, const char *want)
{
    char got[256];

    parsed(conninfo, key, got, sizeof(got));
    assert_string_equal(got, want);
}

static void test_conninfo_sets_address_and_timeouts(void **state)
{
    char buf[1024];
    char *err = NULL;

    (void)state;
    assert_int_equal(
        pgconn_conninfo(buf, sizeof(buf), "127.0.0.1", 5432, "mfa", "mfa", NULL, 10000, &err), 0);
    assert_null(err);
    assert_non_null(strstr(buf, "hostaddr='127.0.0.1'"));
    assert_non_null(strstr(buf, "tcp_user_timeout='10000'"));
    assert_non_null(strstr(buf, "keepalives='1'"));
    assert_key(buf, "host", "127.0.0.1");
    assert_key(buf, "port", "5432");
    assert_key(buf, "dbname", "mfa");
    assert_key(buf, "user", "mfa");
    assert_key(buf, "keepalives_idle", "5");
    assert_key(buf, "keepalives_interval", "1");
    assert_key(buf, "keepalives_count", "3");
    assert_key(buf, "connect_timeout", "10");
    assert_key(buf, "gssencmode", "disable");
    assert_int_equal(pgconn_check_conninfo(buf, NULL), 0);

    /* IPv6, libpq's defaults for dbname and user, the smallest backstop */
    assert_int_equal(pgconn_conninfo(buf, sizeof(buf), "::1", 1, NULL, NULL, NULL, 300, &err), 0);
    assert_key(buf, "hostaddr", "::1");
    assert_key(buf, "dbname", "");
    assert_key(buf, "connect_timeout", "2");
    assert_key(buf, "keepalives_idle", "1");
}

static void test_conninfo_refuses_host_names(void **state)
{
    const char *bad[] = { "db.example.com", "localhost", "", "127.0.0.1 port=1", NULL };
    char buf[1024];
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        assert_int_equal(
            pgconn_conninfo(buf, sizeof(buf), bad[i], 5432, "mfa", "mfa", NULL, 5000, &err), -1);
        assert_non_null(strstr(err, "not a numeric IP address"));
        assert_string_equal(buf, "");
        free(err);
        err = NULL;
    }
}

static void test_conninfo_quotes_values(void **state)
{
    char buf[1024];
    char *err = NULL;

    (void)state;
    assert_int_equal(pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "my db",
                                     "o'brien \\ x' port='1", NULL, 5000, &err),
                     0);
    assert_non_null(strstr(buf, "dbname='my db'"));
    assert_non_null(strstr(buf, "user='o\\'brien \\\\ x\\' port=\\'1'"));
    /* libpq reads back exactly what was given; nothing leaked into other keys */
    assert_key(buf, "dbname", "my db");
    assert_key(buf, "user", "o'brien \\ x' port='1");
    assert_key(buf, "port", "5432");
}

static void test_conninfo_extra(void **state)
{
    char buf[1024], small[64];
    char *err = NULL;

    (void)state;
    assert_int_equal(pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "mfa", "mfa",
                                     "sslmode=verify-full sslrootcert='/etc/my ca/ca.pem' "
                                     "host=db1.example connect_timeout=7",
                                     5000, &err),
                     0);
    assert_key(buf, "host", "db1.example"); /* the TLS name; hostaddr is used to connect */
    assert_key(buf, "hostaddr", "10.1.2.3");
    assert_key(buf, "sslmode", "verify-full");
    assert_key(buf, "sslrootcert", "/etc/my ca/ca.pem");
    assert_key(buf, "connect_timeout", "7");
    assert_int_equal(pgconn_check_conninfo(buf, NULL), 0);

    assert_int_equal(
        pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "mfa", "mfa", "port=6432", 5000, &err),
        -1);
    assert_non_null(strstr(err, "may not set port"));
    assert_int_equal(pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "mfa", "mfa",
                                     "keepalives=0", 5000, &err),
                     -1);
    assert_non_null(strstr(err, "may not set keepalives"));
    assert_int_equal(
        pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "mfa", "mfa", "sslmode", 5000, &err),
        -1);
    assert_non_null(strstr(err, "extra options"));
    assert_int_equal(
        pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 0, "mfa", "mfa", NULL, 5000, &err), -1);
    assert_int_equal(
        pgconn_conninfo(buf, sizeof(buf), "10.1.2.3", 5432, "mfa", "mfa", NULL, 0, &err), -1);
    assert_non_null(strstr(err, "tcp_user_timeout"));
    assert_int_equal(
        pgconn_conninfo(small, sizeof(small), "10.1.2.3", 5432, "mfa", "mfa", NULL, 5000, &err),
        -1);
    assert_non_null(strstr(err, "does not fit"));
    assert_string_equal(small, "");
    free(err);
}

static void test_check_conninfo(void **state)
{
    const char *good[] = {
        "host=127.0.0.1 port=5432",        "hostaddr=10.0.0.1 host=db.example.com",
        "host=/var/run/postgresql",        "host=127.0.0.1,::1",
        "postgresql://127.0.0.1:5432/mfa", "service=mfa hostaddr=10.0.0.1",
    };
    const char *bad[] = {
        "host=db.example.com",
        "host=127.0.0.1,db.example.com",
        "postgresql://db.example.com/mfa",
        "host=a,b hostaddr=10.0.0.1,",
        "host='unterminated",
        "service=mfa",
    };
    struct event_base *base = event_base_new();
    struct pgconn_settings s = { 0 };
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(good); i++)
        assert_int_equal(pgconn_check_conninfo(good[i], NULL), 0);
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++) {
        assert_int_equal(pgconn_check_conninfo(bad[i], &err), -1);
        assert_non_null(err);
    }
    s.conninfo = "host=db.example.com";
    assert_null(pgconn_new(base, &s, &err));
    assert_non_null(strstr(err, "DNS lookup"));
    s.conninfo = "host=127.0.0.1";
    s.backoff_min_ms = 500;
    s.backoff_max_ms = 100;
    assert_null(pgconn_new(base, &s, &err));
    assert_non_null(strstr(err, "backoff"));
    free(err);
    event_base_free(base);
}

static void test_names(void **state)
{
    char code[6];

    (void)state;
    assert_string_equal(pgconn_state_name(PGCONN_DISCONNECTED), "disconnected");
    assert_string_equal(pgconn_state_name(PGCONN_CONNECTING), "connecting");
    assert_string_equal(pgconn_state_name(PGCONN_IDLE), "idle");
    assert_string_equal(pgconn_state_name(PGCONN_BUSY), "busy");
    assert_string_equal(pgconn_state_name((enum pgconn_state)99), "unknown");
    assert_string_equal(pgconn_sync_name(PGCONN_SYNC_DEFAULT), "default");
    assert_string_equal(pgconn_sync_name(PGCONN_SYNC_OFF), "off");
    assert_string_equal(pgconn_sync_name(PGCONN_SYNC_LOCAL), "local");
    assert_string_equal(pgconn_sync_name(PGCONN_SYNC_REMOTE_APPLY), "remote_apply");
    assert_string_equal(pgconn_sync_name((enum pgconn_sync) - 1), "unknown");

    assert_true(pgconn_err_sqlstate("server error 25006: cannot execute INSERT in a read-only "
                                    "transaction",
                                    code));
    assert_string_equal(code, "25006");
    assert_false(pgconn_err_sqlstate("query timed out after 5 ms", code));
    assert_false(pgconn_err_sqlstate("server error 2500: x", code));
    assert_false(pgconn_err_sqlstate(NULL, code));
}

/* ---- on the loop, against a loopback port nothing listens on ---- */

struct outcome {
    int calls;
    bool ok;
    char err[512];
    long elapsed_ms;
};

struct fixture {
    struct event_base *base;
    struct pgconn *c;
    struct event *bound;
    struct timespec t0;
    struct outcome out[3];
    bool free_in_callback;
};

static long ms_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_nsec - t->tv_nsec) / 1000000L;
}

static int closed_port(void)
{
    struct sockaddr_in sa = { 0 };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void on_bound(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(f->base);
}

static struct fixture *fixture_new(void)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct pgconn_settings s = { 0 };
    struct timeval bound = { 5, 0 };
    char conninfo[512];
    char *err = NULL;

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(pgconn_conninfo(conninfo, sizeof(conninfo), "127.0.0.1", closed_port(), "mfa",
                                     "mfa", NULL, 2000, &err),
                     0);
    s.conninfo = conninfo;
    s.connect_timeout_ms = 1000;
    s.query_timeout_ms = 300;
    s.backoff_min_ms = 20;
    s.backoff_max_ms = 100;
    f->c = pgconn_new(f->base, &s, &err);
    assert_non_null(f->c);
    assert_int_equal(pgconn_state(f->c), PGCONN_DISCONNECTED);
    f->bound = evtimer_new(f->base, on_bound, f);
    evtimer_add(f->bound, &bound);
    clock_gettime(CLOCK_MONOTONIC, &f->t0);
    return f;
}

static void fixture_free(struct fixture *f)
{
    pgconn_free(f->c);
    event_free(f->bound);
    event_base_free(f->base);
    free(f);
}

static struct fixture *current;

static void record(struct outcome *o, const PGresult *res, const char *err)
{
    o->calls++;
    o->ok = res != NULL && err == NULL;
    snprintf(o->err, sizeof(o->err), "%s", err ? err : "");
    o->elapsed_ms = ms_since(&current->t0);
}

static void cb_first(void *arg, const PGresult *res, const char *err)
{
    struct fixture *f = arg;

    record(&f->out[0], res, err);
    if (f->free_in_callback) {
        pgconn_free(f->c); /* deferred until this returns; the second gets "closed" */
        f->c = NULL;
        assert_int_equal(f->out[1].calls, 0);
    } else {
        event_base_loopbreak(f->base);
    }
}

static void cb_second(void *arg, const PGresult *res, const char *err)
{
    struct fixture *f = arg;

    record(&f->out[1], res, err);
}

static void test_query_fails_at_deadline_when_unreachable(void **state)
{
    struct fixture *f = current = fixture_new();
    struct pgconn_stats st;

    (void)state;
    assert_int_equal(
        pgconn_query(f->c, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, 0, cb_first, f, NULL), 0);
    event_base_dispatch(f->base);

    assert_int_equal(f->out[0].calls, 1);
    assert_false(f->out[0].ok);
    assert_non_null(strstr(f->out[0].err, "query timed out after 300 ms (not connected: "));
    assert_non_null(strstr(f->out[0].err, "Connection refused"));
    assert_true(f->out[0].elapsed_ms >= 300);
    assert_true(f->out[0].elapsed_ms < 1300);
    assert_false(pgconn_ready(f->c));
    assert_non_null(strstr(pgconn_last_error(f->c), "Connection refused"));
    pgconn_get_stats(f->c, &st);
    assert_int_equal(st.queries, 1);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.reconnects, 0);
    assert_true(st.connect_failures >= 2); /* retried with backoff meanwhile */
    fixture_free(f);
}

static void test_free_answers_pending_queries(void **state)
{
    struct fixture *f = current = fixture_new();
    const char *params[2] = { "a", NULL };

    (void)state;
    assert_int_equal(pgconn_query(f->c, "SELECT $1, $2", 2, params, PGCONN_SYNC_REMOTE_APPLY, 10000,
                                  cb_first, f, NULL),
                     0);
    assert_int_equal(pgconn_prepare(f->c, "p", "SELECT 1", 0, NULL), 0);
    assert_int_equal(
        pgconn_exec_prepared(f->c, "p", 0, NULL, PGCONN_SYNC_OFF, 10000, cb_second, f, NULL), 0);
    /* callbacks only ever run from the loop or pgconn_free */
    assert_int_equal(f->out[0].calls + f->out[1].calls, 0);
    pgconn_free(f->c);
    f->c = NULL;
    assert_int_equal(f->out[0].calls, 1);
    assert_string_equal(f->out[0].err, "connection closed");
    assert_int_equal(f->out[1].calls, 1);
    assert_string_equal(f->out[1].err, "connection closed");
    fixture_free(f);
}

static void test_free_from_callback(void **state)
{
    struct fixture *f = current = fixture_new();
    struct timeval settle = { 0, 300000 };

    (void)state;
    f->free_in_callback = true;
    assert_int_equal(
        pgconn_query(f->c, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, 100, cb_first, f, NULL), 0);
    assert_int_equal(
        pgconn_query(f->c, "SELECT 2", 0, NULL, PGCONN_SYNC_DEFAULT, 2000, cb_second, f, NULL), 0);
    /* after the first callback freed the connection, nothing of it may fire */
    event_del(f->bound);
    evtimer_add(f->bound, &settle);
    event_base_dispatch(f->base);
    assert_int_equal(f->out[0].calls, 1);
    assert_non_null(strstr(f->out[0].err, "timed out after 100 ms"));
    assert_int_equal(f->out[1].calls, 1);
    assert_string_equal(f->out[1].err, "connection closed");
    assert_true(f->out[1].elapsed_ms < 1000);
    fixture_free(f);
}

static void never(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    (void)err;
    fail_msg("callback of a refused call");
}

static void test_caller_mistakes(void **state)
{
    struct fixture *f = current = fixture_new();
    char *err = NULL;

    (void)state;
    assert_int_equal(
        pgconn_exec_prepared(f->c, "nope", 0, NULL, PGCONN_SYNC_DEFAULT, 0, never, NULL, &err), -1);
    assert_non_null(strstr(err, "unknown prepared statement nope"));
    assert_int_equal(pgconn_prepare(f->c, "p", "SELECT $1", 1, &err), 0);
    assert_int_equal(pgconn_prepare(f->c, "p", "SELECT 2", 0, &err), -1);
    assert_non_null(strstr(err, "already registered"));
    assert_int_equal(pgconn_prepare(f->c, "", "SELECT 2", 0, &err), -1);
    assert_int_equal(
        pgconn_exec_prepared(f->c, "p", 0, NULL, PGCONN_SYNC_DEFAULT, 0, never, NULL, &err), -1);
    assert_non_null(strstr(err, "takes 1 parameters"));
    assert_int_equal(
        pgconn_query(f->c, "SELECT $1", 1, NULL, PGCONN_SYNC_DEFAULT, 0, never, NULL, &err), -1);
    assert_int_equal(
        pgconn_query(f->c, "SELECT 1", 0, NULL, (enum pgconn_sync)7, 0, never, NULL, &err), -1);
    assert_int_equal(
        pgconn_query(f->c, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, -1, never, NULL, &err), -1);
    assert_int_equal(
        pgconn_query(f->c, "SELECT 1", 0, NULL, PGCONN_SYNC_DEFAULT, 0, NULL, NULL, &err), -1);
    assert_int_equal(pgconn_query(f->c, "", 0, NULL, PGCONN_SYNC_DEFAULT, 0, never, NULL, &err),
                     -1);
    free(err);
    fixture_free(f); /* nothing pending: never() is not called */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conninfo_sets_address_and_timeouts),
        cmocka_unit_test(test_conninfo_refuses_host_names),
        cmocka_unit_test(test_conninfo_quotes_values),
        cmocka_unit_test(test_conninfo_extra),
        cmocka_unit_test(test_check_conninfo),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_query_fails_at_deadline_when_unreachable),
        cmocka_unit_test(test_free_answers_pending_queries),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_caller_mistakes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
