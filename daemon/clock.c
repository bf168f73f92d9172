#include "daemon/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define NS 1000000000LL

/* Written once by clock_init, before any other thread exists. */
static bool hooked;
static int64_t shift_ns;

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

bool clock_init(struct error *err)
{
    hooked = false;
    shift_ns = 0;
    const char *text = getenv("TARIFFD_TEST_CLOCK");
    if (!text)
        return true;
    char *end;
    errno = 0;
    long long s = strtoll(text, &end, 10);
    if (errno || end == text || *end || s < -10000000000LL || s > 10000000000LL) {
        error_set(err,
                  "TARIFFD_TEST_CLOCK \"%.64s\" is not a whole number of seconds since the "
                  "epoch (at most 1e10 either way)",
                  text);
        return false;
    }
    shift_ns = (int64_t)s * NS - realtime_ns();
    hooked = true;
    return true;
}

bool clock_is_hooked(void)
{
    return hooked;
}

int64_t clock_shift_s(void)
{
    return shift_ns / NS;
}

int64_t clock_wall_ns(void)
{
    return realtime_ns() + shift_ns;
}
