/*
 * clock: the wall clock, in one place. The core never reads a clock (time
 * is a parameter of every engine call); the daemon reads it here, and
 * journals what it decided from it (ticks), so a replay needs no clock.
 *
 * A test hook: TARIFFD_TEST_CLOCK=SECONDS (Unix time, a whole number) in
 * the daemon's environment makes the wall clock read SECONDS at start and
 * run on in real time from there, so a test can run the daemon in 1999 or
 * in 2200 without touching the host's clock. clock_init reads it once,
 * before any other thread starts; the daemon logs a warning while it is
 * set. Unset, the clock is CLOCK_REALTIME.
 */
#ifndef DAEMON_CLOCK_H
#define DAEMON_CLOCK_H

#include "tariff/errors.h"

#include <stdbool.h>
#include <stdint.h>

/* Reads TARIFFD_TEST_CLOCK: false, err set, when it is set to anything but
 * a whole number of seconds within 1e10 of the epoch. */
bool clock_init(struct error *err);

/* Whether TARIFFD_TEST_CLOCK is set, and how far it moved the clock. */
bool clock_is_hooked(void);
int64_t clock_shift_s(void);

/* Nanoseconds since the Unix epoch. */
int64_t clock_wall_ns(void);

#endif
