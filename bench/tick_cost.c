/*
 * What a tick costs the engine as the fleet grows: CLUSTERS x METERS meters
 * each send three samples 10 s apart, then the clock ticks once a second,
 * as the daemon's does, for 220 s. Reported, in microseconds: the median
 * tick while every meter is still heard from (within grace: nothing to
 * close), the tick that silences them all (everything closes), and the
 * median tick after (all silent: nothing to do). The engine's public API
 * only, so that the same file measures another revision's library.
 *
 * usage: tick_cost CONFIG CLUSTERS METERS   (CONFIG: one file, no include;
 *        clusters named bench-00000 and up, as bench/gen_config.py writes)
 */
#include "config.h"
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NS 1000000000LL

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tick_cost CONFIG CLUSTERS METERS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char text[1 << 24];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    struct errors errs = {0};
    struct config *cfg = config_from_string(argv[1], text, &errs);
    if (!cfg) {
        fprintf(stderr, "%s: the config does not load\n", argv[1]);
        return 1;
    }
    int clusters = atoi(argv[2]), meters = atoi(argv[3]);
    struct engine *e = engine_new(cfg, NULL);
    engine_caps_recovered(e);

    int64_t t0 = 1764518400LL * NS; /* 2025-12-01 00:00 UTC, as the other benchmarks */
    char cluster[32], meter[32];
    for (int s = 0; s < 3; s++) {
        int64_t ts = t0 + s * 10 * NS;
        for (int c = 0; c < clusters; c++) {
            snprintf(cluster, sizeof cluster, "bench-%05d", c);
            for (int m = 0; m < meters; m++) {
                snprintf(meter, sizeof meter, "m%03d", m);
                struct engine_sample sample = {cluster, meter, SAMPLE_POWER, ts, 500.0};
                struct error err;
                if (!engine_push(e, &sample, ts, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
            }
        }
        engine_batch_done(e, ts);
    }
    /* grace is 2m: the meters, last heard at t0 + 20 s, fall silent at
     * t0 + 140 s. The first tick also settles what the pushes left. */
    double heard[100], quiet[100], silencing = 0;
    size_t n_heard = 0, n_quiet = 0;
    for (int64_t now = t0 + 21 * NS; now <= t0 + 240 * NS; now += NS) {
        double a = seconds();
        engine_tick(e, now);
        double us = (seconds() - a) * 1e6;
        if (now == t0 + 21 * NS)
            continue;
        if (now < t0 + 140 * NS && n_heard < 100)
            heard[n_heard++] = us;
        else if (now == t0 + 140 * NS)
            silencing = us;
        else if (n_quiet < 100)
            quiet[n_quiet++] = us;
    }
    printf("%.1f %.0f %.1f\n", median(heard, n_heard), silencing, median(quiet, n_quiet));
    engine_free(e);
    config_free(cfg);
    return 0;
}
