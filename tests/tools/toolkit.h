/*
 * What the test tools share: printing a line the test reads, a monotonic
 * clock, a 10 ms ticker that measures how long the event loop stalls, and
 * command lines read from stdin on the loop. Not part of any daemon.
 */
#ifndef MFA_TESTS_TOOLKIT_H
#define MFA_TESTS_TOOLKIT_H

#include <event2/event.h>

/* Prints <fmt> and a newline on stdout and flushes it. */
void tk_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds on the monotonic clock. */
double tk_now(void);

/* A 10 ms timer: how often it ran and the longest gap between two runs. */
struct tk_ticker {
    struct event *ev;
    int ticks;
    double last, max_gap; /* seconds */
};

/* Starts <t> on <base> now. Returns 0, or -1 (tk_ticker_free() still applies). */
int tk_ticker_start(struct tk_ticker *t, struct event_base *base);

/* Stops and frees the timer of <t>, if any. */
void tk_ticker_free(struct tk_ticker *t);

/*
 * Calls <cb> with each line read from stdin (without its '\n'; longer lines
 * are cut at 255 bytes), and once with NULL at the end of the input. Returns
 * the watching event, which the caller frees, or NULL.
 */
struct event *tk_watch_stdin(struct event_base *base, void (*cb)(const char *line));

#endif
