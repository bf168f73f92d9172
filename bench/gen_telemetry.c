/*
 * gen_telemetry: line protocol for benchmarks and samples, fast enough to
 * make tens of millions of lines in seconds.
 *
 *   gen_telemetry CLUSTERS METERS_PER_CLUSTER SAMPLES_PER_METER STEP_S START_S [PREFIX] [csv]
 *
 * Writes SAMPLES_PER_METER rounds; in each, every meter of every cluster
 * reports its power at the same timestamp (as a fleet streams), with
 * timestamps START_S + round * STEP_S in seconds precision. Cluster names
 * are PREFIX%05d (default "bench-"), meters m%03d. The power of a meter
 * wanders deterministically between 500 and 1500 kW. With "csv", the same
 * samples as CSV rows cluster,meter,ts_s,kw (for the PostgreSQL peer).
 */
#include "power.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: gen_telemetry CLUSTERS METERS SAMPLES STEP_S START_S [PREFIX]\n");
        return 2;
    }
    long clusters = atol(argv[1]), meters = atol(argv[2]), samples = atol(argv[3]);
    long step = atol(argv[4]);
    long long start = atoll(argv[5]);
    const char *prefix = argc > 6 ? argv[6] : "bench-";
    int csv = argc > 7 && argv[7][0] == 'c';
    static char out[1 << 16];
    setvbuf(stdout, out, _IOFBF, sizeof out);
    for (long r = 0; r < samples; r++)
        for (long c = 0; c < clusters; c++)
            for (long m = 0; m < meters; m++) {
                double kw = power_kw(c, m, r);
                if (csv)
                    printf("%s%05ld,m%03ld,%lld,%.2f\n", prefix, c, m, start + r * step, kw);
                else
                    printf("power,cluster=%s%05ld,meter=m%03ld kw=%.2f %lld\n", prefix, c, m, kw,
                           start + r * step);
            }
    return 0;
}
