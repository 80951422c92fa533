/*
 * The helpers the test tools share; see toolkit.h. One stdin per process:
 * the line being read is kept here.
 */
#include "toolkit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void tk_out(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

double tk_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct tk_ticker *t = arg;
    double now = tk_now();

    (void)fd;
    (void)what;
    if (now - t->last > t->max_gap)
        t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
}

int tk_ticker_start(struct tk_ticker *t, struct event_base *base)
{
    struct timeval ten_ms = { 0, 10000 };

    t->ticks = 0;
    t->max_gap = 0;
    t->last = tk_now();
    t->ev = event_new(base, -1, EV_PERSIST, on_tick, t);
    return t->ev && event_add(t->ev, &ten_ms) == 0 ? 0 : -1;
}

void tk_ticker_free(struct tk_ticker *t)
{
    if (t->ev)
        event_free(t->ev);
    t->ev = NULL;
}

static struct {
    void (*cb)(const char *line);
    char line[256];
    size_t len;
} stdin_lines;

static void on_input(evutil_socket_t fd, short what, void *arg)
{
    struct event *self = arg;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));

    (void)what;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        event_del(self);
        stdin_lines.cb(NULL);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (stdin_lines.len + 1 < sizeof(stdin_lines.line))
                stdin_lines.line[stdin_lines.len++] = buf[i];
            continue;
        }
        stdin_lines.line[stdin_lines.len] = '\0';
        stdin_lines.len = 0;
        stdin_lines.cb(stdin_lines.line);
    }
}

struct event *tk_watch_stdin(struct event_base *base, void (*cb)(const char *line))
{
    struct event *ev = event_new(base, 0, EV_READ | EV_PERSIST, on_input, event_self_cbarg());

    stdin_lines.cb = cb;
    if (ev && event_add(ev, NULL) != 0) {
        event_free(ev);
        ev = NULL;
    }
    return ev;
}
