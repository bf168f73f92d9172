/*
 * meter: the samples of one meter and the energy they put in an interval
 * (docs/design.md section 4).
 *
 * Samples are kept sorted by timestamp in a growable array whose front is
 * consumed as samples age out (the array is compacted, so a meter in
 * steady state does not allocate, and shrunk when the meter goes quiet;
 * its memory comes from the engine's pool, sample_mem.h).
 *
 * A buffer stores its samples packed, in 8 bytes, when they allow it
 * without losing a bit: the timestamp as a 32-bit count of seconds (or
 * milliseconds, or microseconds) from the buffer's base, the value as a
 * 32-bit count of 10^-decimals. That is a meter's usual telemetry (whole
 * seconds, a few decimals), and it halves the memory every kept sample
 * costs, which bounds pricing a large file (every sample of late_window is
 * kept). A sample that does not fit makes the buffer use a finer unit or
 * more decimals where every sample still fits, and otherwise 16 bytes per
 * sample (a struct sample) until the buffer is empty again. A packed
 * sample decodes to exactly the ts_ns and value stored, bit for bit: the
 * value is m / 10^decimals, correctly rounded, and a value is packed only
 * when that gives it back.
 *
 * Energy is integrated in double precision: power samples by the trapezoid
 * rule between neighbours at most max_gap apart (a longer gap is missing
 * time instead), counter readings by spreading each difference evenly over
 * the time between the readings (a decrease is a reset: the new reading is
 * the delta). A segment crossing an interval boundary is split there, by
 * time.
 */
#ifndef TARIFF_METER_H
#define TARIFF_METER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sample {
    int64_t ts_ns;
    double value; /* kW for power, kWh for a counter */
};

/* A sample in a packed buffer: ts_ns = base_ns + dt * the buffer's unit,
 * value = m / 10^decimals. */
struct packed_sample {
    int32_t dt;
    int32_t m;
};

enum sample_unit {
    SAMPLES_WIDE,    /* not packed: struct sample */
    SAMPLES_SECONDS, /* packed, dt in seconds */
    SAMPLES_MILLIS,
    SAMPLES_MICROS,
};

#define SAMPLE_DECIMALS_MAX 9

struct sample_mem;

struct sample_buf {
    void *v;                /* cap samples, packed or not (unit) */
    uint32_t start, n, cap; /* samples v[start .. start + n), sorted, unique ts */
    uint8_t unit;           /* enum sample_unit */
    uint8_t decimals;       /* packed: value = m / 10^decimals */
    int64_t base_ns;        /* packed: ts_ns = base_ns + dt * unit */
};

static inline int64_t sample_unit_ns(unsigned unit)
{
    return unit == SAMPLES_SECONDS ? 1000000000 : unit == SAMPLES_MILLIS ? 1000000 : 1000;
}

static const double sample_pow10[SAMPLE_DECIMALS_MAX + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                                             1e5, 1e6, 1e7, 1e8, 1e9};

static inline double sample_unpack_value(int32_t m, unsigned decimals)
{
    return decimals == 0 ? (double)m : (double)m / sample_pow10[decimals];
}

/* The sample at index i (relative to start). */
static inline struct sample sample_buf_get(const struct sample_buf *b, size_t i)
{
    if (b->unit == SAMPLES_WIDE)
        return ((const struct sample *)b->v)[b->start + i];
    struct packed_sample p = ((const struct packed_sample *)b->v)[b->start + i];
    return (struct sample){b->base_ns + p.dt * sample_unit_ns(b->unit),
                           sample_unpack_value(p.m, b->decimals)};
}

static inline int64_t sample_buf_ts(const struct sample_buf *b, size_t i)
{
    if (b->unit == SAMPLES_WIDE)
        return ((const struct sample *)b->v)[b->start + i].ts_ns;
    return b->base_ns +
           ((const struct packed_sample *)b->v)[b->start + i].dt * sample_unit_ns(b->unit);
}

enum sample_insert {
    SAMPLE_INSERTED,
    SAMPLE_DUPLICATE, /* same ts and value: a retry */
    SAMPLE_CONFLICT,  /* same ts, another value: the first one stays */
};

/* Inserts s in timestamp order; O(1) when it is the newest. Returns
 * whether it was new. *index receives its position (relative to start). */
enum sample_insert sample_buf_insert(struct sample_mem *mem, struct sample_buf *b, struct sample s,
                                     size_t *index);

/* Appends s, which must be newer than every sample in b. */
void sample_buf_append(struct sample_mem *mem, struct sample_buf *b, struct sample s);

/* Index (relative) of the first sample with ts >= ts_ns; n if none. */
size_t sample_buf_lower_bound(const struct sample_buf *b, int64_t ts_ns);

/* Drops the first k samples. */
void sample_buf_drop_front(struct sample_mem *mem, struct sample_buf *b, size_t k);

void sample_buf_free(struct sample_mem *mem, struct sample_buf *b);

/* Adds the energy (kWh) and missing time (ns) the samples put in
 * [a_ns, b_ns) to *kwh and *missing_ns. */
void meter_integrate(const struct sample_buf *b, bool counter, int64_t a_ns, int64_t b_ns,
                     int64_t max_gap_ns, double *kwh, int64_t *missing_ns);

#endif
