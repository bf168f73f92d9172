/*
 * meter: the samples of one meter and the energy they put in an interval
 * (docs/design.md section 4).
 *
 * Samples are kept sorted by timestamp in a growable array whose front is
 * consumed as samples age out (the array is compacted, so a meter in
 * steady state does not allocate, and shrunk when the meter goes quiet;
 * its memory comes from the engine's pool, sample_mem.h). Energy is
 * integrated in double precision: power samples by the trapezoid rule
 * between neighbours at most
 * max_gap apart (a longer gap is missing time instead), counter readings by
 * spreading each difference evenly over the time between the readings (a
 * decrease is a reset: the new reading is the delta). A segment crossing an
 * interval boundary is split there, by time.
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

struct sample_mem;

struct sample_buf {
    struct sample *v; /* samples v[start .. start + n), sorted, unique ts */
    size_t start, n, cap;
};

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

static inline const struct sample *sample_buf_at(const struct sample_buf *b, size_t i)
{
    return &b->v[b->start + i];
}

/* Adds the energy (kWh) and missing time (ns) the samples put in
 * [a_ns, b_ns) to *kwh and *missing_ns. */
void meter_integrate(const struct sample_buf *b, bool counter, int64_t a_ns, int64_t b_ns,
                     int64_t max_gap_ns, double *kwh, int64_t *missing_ns);

#endif
