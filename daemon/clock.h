/*
 * clock: the wall clock, in one place. The core never reads a clock (time
 * is a parameter of every engine call); the daemon reads it here, and
 * journals what it decided from it (ticks), so a replay needs no clock.
 */
#ifndef DAEMON_CLOCK_H
#define DAEMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
static inline int64_t clock_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
