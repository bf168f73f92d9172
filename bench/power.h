/*
 * power: the deterministic power of the benchmark fleet, shared by the
 * generators (gen_telemetry.c, loadgen.c) so that tariffd and the
 * PostgreSQL peer price the same data.
 */
#ifndef BENCH_POWER_H
#define BENCH_POWER_H

/* The power of meter m of cluster c in round r, in kW. */
static inline double power_kw(long c, long m, long r)
{
    unsigned long long h = (unsigned long long)c * 0x9E3779B97F4A7C15ULL ^
                           (unsigned long long)m * 0xC2B2AE3D27D4EB4FULL ^
                           (unsigned long long)r * 0x165667B19E3779F9ULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return 500 + (double)(h % 100000) / 100.0;
}

#endif
