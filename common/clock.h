/*
 * Clocks. Deadlines, durations and rates use the monotonic clock, which
 * never jumps; wall-clock time is only for what people and other hosts read
 * (log lines, auth log records, TOTP).
 */
#ifndef MFA_CLOCK_H
#define MFA_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic microseconds since an arbitrary start. */
static inline uint64_t clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Monotonic milliseconds, for deadlines and durations. */
static inline uint64_t clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

/* Wall-clock milliseconds since the Unix epoch. */
static inline uint64_t clock_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
