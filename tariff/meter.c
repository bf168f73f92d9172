#include "meter.h"

#include "sample_mem.h"

#include <stdlib.h>
#include <string.h>

/* Buffers hold at most 2^31 samples (cap doubles up to it): beyond that,
 * as out of memory, the process aborts. */
#define CAP_MAX ((uint32_t)1 << 31)

static size_t sample_size(unsigned unit)
{
    return unit == SAMPLES_WIDE ? sizeof(struct sample) : sizeof(struct packed_sample);
}

/* The pool's blocks are counted in struct samples (16 bytes). */
static size_t block_slots(size_t cap, unsigned unit)
{
    return cap * sample_size(unit) / sizeof(struct sample);
}

static size_t cap_min(unsigned unit)
{
    return SAMPLE_MEM_MIN * sizeof(struct sample) / sample_size(unit);
}

/* Whether v is m / 10^decimals, bit for bit, for an int32 m. */
static bool value_packs(double v, unsigned decimals, int32_t *m)
{
    double x = v * sample_pow10[decimals];
    if (!(x >= -2147483648.0 && x <= 2147483647.0)) /* NaN too */
        return false;
    int32_t r = (int32_t)(x < 0 ? x - 0.5 : x + 0.5);
    double back = sample_unpack_value(r, decimals);
    if (memcmp(&back, &v, sizeof v) != 0) /* -0.0 and +0.0 differ here */
        return false;
    *m = r;
    return true;
}

/* Whether ts_ns is base_ns plus an int32 count of unit. */
static bool ts_packs(int64_t ts_ns, int64_t base_ns, unsigned unit, int32_t *dt)
{
    int64_t d;
    if (__builtin_sub_overflow(ts_ns, base_ns, &d))
        return false;
    int64_t q;
    switch (unit) { /* constant divisors: no division instruction */
    case SAMPLES_SECONDS:
        if (d % 1000000000 != 0)
            return false;
        q = d / 1000000000;
        break;
    case SAMPLES_MILLIS:
        if (d % 1000000 != 0)
            return false;
        q = d / 1000000;
        break;
    default:
        if (d % 1000 != 0)
            return false;
        q = d / 1000;
        break;
    }
    if (q < INT32_MIN || q > INT32_MAX)
        return false;
    *dt = (int32_t)q;
    return true;
}

/* Whether s fits packed buffer b as it stands: *p receives it. */
static bool pack(const struct sample_buf *b, struct sample s, struct packed_sample *p)
{
    return ts_packs(s.ts_ns, b->base_ns, b->unit, &p->dt) &&
           value_packs(s.value, b->decimals, &p->m);
}

static void store(struct sample_buf *b, size_t at, struct sample s)
{
    if (b->unit == SAMPLES_WIDE) {
        ((struct sample *)b->v)[at] = s;
        return;
    }
    struct packed_sample p;
    if (!pack(b, s, &p))
        abort(); /* fit() made the buffer hold it */
    ((struct packed_sample *)b->v)[at] = p;
}

/* Moves b's samples to a fresh block of cap samples in format unit, at its
 * front (decoding them when unit is wide and b was not). */
static void move_to(struct sample_mem *mem, struct sample_buf *b, size_t cap, unsigned unit)
{
    void *v = sample_mem_get(mem, block_slots(cap, unit));
    if (unit == b->unit) {
        if (b->n > 0)
            memcpy(v, (char *)b->v + b->start * sample_size(unit), b->n * sample_size(unit));
    } else {
        for (size_t i = 0; i < b->n; i++)
            ((struct sample *)v)[i] = sample_buf_get(b, i);
    }
    sample_mem_put(mem, b->v, block_slots(b->cap, b->unit));
    b->v = v;
    b->start = 0;
    b->cap = (uint32_t)cap;
    b->unit = (uint8_t)unit;
}

/* The coarsest unit ts_ns is a whole number of; wide for none. */
static unsigned unit_of(int64_t ts_ns)
{
    for (unsigned u = SAMPLES_SECONDS; u <= SAMPLES_MICROS; u++)
        if (ts_ns % sample_unit_ns(u) == 0)
            return u;
    return SAMPLES_WIDE;
}

/* An empty buffer takes the format of its first sample: packed from it in
 * its coarsest unit with the fewest decimals that give its value back, or
 * wide. Its block, if it has one, is kept (its cap counted anew). */
static void format_for(struct sample_buf *b, struct sample s)
{
    size_t bytes = b->cap * sample_size(b->unit);
    unsigned unit = unit_of(s.ts_ns);
    unsigned decimals = 0;
    int32_t m;
    while (unit != SAMPLES_WIDE && !value_packs(s.value, decimals, &m))
        if (++decimals > SAMPLE_DECIMALS_MAX)
            unit = SAMPLES_WIDE;
    b->unit = (uint8_t)unit;
    b->decimals = unit == SAMPLES_WIDE ? 0 : (uint8_t)decimals;
    b->base_ns = s.ts_ns;
    b->start = 0;
    b->cap = (uint32_t)(bytes / sample_size(unit));
}

/* Whether every sample of b, and s, packs in unit with decimals (a unit
 * no coarser, decimals no fewer than b's). */
static bool all_pack(const struct sample_buf *b, struct sample s, unsigned unit, unsigned decimals)
{
    int32_t dt, m;
    if (!ts_packs(s.ts_ns, b->base_ns, unit, &dt) || !value_packs(s.value, decimals, &m))
        return false;
    int64_t dt_scale = sample_unit_ns(b->unit) / sample_unit_ns(unit);
    int64_t m_scale = (int64_t)sample_pow10[decimals - b->decimals];
    const struct packed_sample *v = (const struct packed_sample *)b->v + b->start;
    for (size_t i = 0; i < b->n; i++) {
        int64_t x = v[i].dt * dt_scale, y = v[i].m * m_scale;
        if (x < INT32_MIN || x > INT32_MAX || y < INT32_MIN || y > INT32_MAX)
            return false;
    }
    return true;
}

/* Moves b's base to its oldest sample: a live meter's buffer is never
 * empty, and its samples move on in time while the base would stay, until
 * they are 2^31 units from it (24.8 days of milliseconds). Sorted, every
 * dt is at least the first one: none overflows. */
static void rebase(struct sample_buf *b)
{
    struct packed_sample *v = (struct packed_sample *)b->v + b->start;
    int32_t dt0 = v[0].dt;
    if (dt0 == 0)
        return;
    for (size_t i = 0; i < b->n; i++)
        v[i].dt -= dt0;
    b->base_ns += dt0 * sample_unit_ns(b->unit);
}

/* Makes b, packed, hold s too: from its oldest sample, in a finer unit or
 * with more decimals where all its samples still fit, else wide. Rare: a
 * buffer's unit only gets finer and its decimals only more until it is
 * empty again, and its base moves once its samples have moved 2^31 units
 * on. */
static void repack(struct sample_mem *mem, struct sample_buf *b, struct sample s)
{
    rebase(b);
    for (unsigned unit = b->unit; unit <= SAMPLES_MICROS; unit++)
        for (unsigned decimals = b->decimals; decimals <= SAMPLE_DECIMALS_MAX; decimals++) {
            if (!all_pack(b, s, unit, decimals))
                continue;
            int64_t dt_scale = sample_unit_ns(b->unit) / sample_unit_ns(unit);
            int64_t m_scale = (int64_t)sample_pow10[decimals - b->decimals];
            struct packed_sample *v = (struct packed_sample *)b->v + b->start;
            for (size_t i = 0; i < b->n; i++) {
                v[i].dt = (int32_t)(v[i].dt * dt_scale);
                v[i].m = (int32_t)(v[i].m * m_scale); /* all_pack: it fits */
            }
            b->unit = (uint8_t)unit;
            b->decimals = (uint8_t)decimals;
            return;
        }
    move_to(mem, b, b->cap ? b->cap : cap_min(SAMPLES_WIDE), SAMPLES_WIDE);
}

/* Makes b's format hold s. */
static void fit(struct sample_mem *mem, struct sample_buf *b, struct sample s)
{
    struct packed_sample p;
    if (b->n == 0)
        format_for(b, s);
    else if (b->unit != SAMPLES_WIDE && !pack(b, s, &p))
        repack(mem, b, s);
}

/* Whether b has no room after its last sample. */
static inline bool buf_full(const struct sample_buf *b)
{
    return b->start + b->n >= b->cap;
}

static void make_room(struct sample_mem *mem, struct sample_buf *b)
{
    if (!buf_full(b))
        return;
    if (b->start > 0 && b->start >= b->cap / 2) {
        size_t size = sample_size(b->unit);
        memmove(b->v, (char *)b->v + b->start * size, b->n * size);
        b->start = 0;
        return;
    }
    if (b->cap >= CAP_MAX)
        abort();
    move_to(mem, b, b->cap ? 2 * (size_t)b->cap : cap_min(b->unit), b->unit);
}

size_t sample_buf_lower_bound(const struct sample_buf *b, int64_t ts_ns)
{
    size_t n = b->n;
    if (n == 0)
        return 0;
    /* Most lookups are for the newest samples: check the end first. */
    int64_t last_ns = sample_buf_ts(b, n - 1);
    if (last_ns < ts_ns)
        return n;
    if (n == 1)
        return 0;
    /* Now ts(n - 1) >= ts_ns: the answer is in [0, n - 1]. A meter's
     * samples are mostly evenly spaced, so it is about (last - ts_ns) /
     * step samples back from the end, the step being the last one: the
     * memory read is the buffer's end, just written, and where the answer
     * is (an interval's start, in the middle of a buffer, took ten probes
     * of cold memory from the ends). Worked out in doubles, which cannot
     * overflow (samples 292 years apart would in int64); the guess only
     * decides where to look first, and is kept in [0, n - 1] whatever it
     * comes to (+inf, NaN). */
    double step_ns = (double)last_ns - (double)sample_buf_ts(b, n - 2);
    double back = ((double)last_ns - (double)ts_ns) / step_ns;
    size_t guess = n - 1;
    if (back >= (double)(n - 1))
        guess = 0;
    else if (back > 0)
        guess = n - 1 - (size_t)back;
    size_t lo = 0, hi = n - 1;
    if (sample_buf_ts(b, guess) < ts_ns) {
        lo = guess + 1; /* at most n - 1: ts(n - 1) >= ts_ns */
        if (sample_buf_ts(b, lo) >= ts_ns)
            return lo;
        lo++;
    } else {
        if (guess == 0 || sample_buf_ts(b, guess - 1) < ts_ns)
            return guess;
        hi = guess - 1; /* ts(hi) >= ts_ns */
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sample_buf_ts(b, mid) < ts_ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void sample_buf_append(struct sample_mem *mem, struct sample_buf *b, struct sample s)
{
    struct packed_sample p;
    if (b->unit != SAMPLES_WIDE && b->n > 0 && pack(b, s, &p)) {
        /* The usual case: the sample fits as the buffer stands. */
        if (buf_full(b))
            make_room(mem, b);
        size_t at = b->start + b->n++;
        struct packed_sample *v = b->v;
        v[at] = p;
        /* The next cache line this buffer will write, asked for now: a
         * fleet's meters take turns, so it has long arrived when its turn
         * comes, where writing it cold stalled every eighth append. */
        if (at + 8 < b->cap)
            __builtin_prefetch(&v[at + 8], 1);
        return;
    }
    fit(mem, b, s);
    make_room(mem, b);
    size_t at = b->start + b->n++;
    store(b, at, s);
    size_t ahead = 64 / sample_size(b->unit);
    if (at + ahead < b->cap)
        __builtin_prefetch((char *)b->v + (at + ahead) * sample_size(b->unit), 1);
}

enum sample_insert sample_buf_insert(struct sample_mem *mem, struct sample_buf *b, struct sample s,
                                     size_t *index)
{
    size_t i = sample_buf_lower_bound(b, s.ts_ns);
    *index = i;
    if (i < b->n && sample_buf_ts(b, i) == s.ts_ns)
        return sample_buf_get(b, i).value == s.value ? SAMPLE_DUPLICATE : SAMPLE_CONFLICT;
    fit(mem, b, s);
    make_room(mem, b);
    size_t size = sample_size(b->unit);
    char *at = (char *)b->v + (b->start + i) * size;
    if (i < b->n)
        memmove(at + size, at, (b->n - i) * size);
    store(b, b->start + i, s);
    b->n++;
    return SAMPLE_INSERTED;
}

void sample_buf_drop_front(struct sample_mem *mem, struct sample_buf *b, size_t k)
{
    if (k > b->n)
        k = b->n;
    b->start += (uint32_t)k;
    b->n -= (uint32_t)k;
    if (b->n == 0)
        b->start = 0;
    /* A meter that went quiet gives memory back to the pool; one in steady state
     * (n about constant, cap at most 2n) never comes here. */
    size_t min = cap_min(b->unit);
    if (b->cap > min && b->n < b->cap / 4) {
        size_t cap = b->cap / 2;
        while (cap > min && b->n < cap / 4)
            cap /= 2;
        move_to(mem, b, cap, b->unit);
    }
}

void sample_buf_free(struct sample_mem *mem, struct sample_buf *b)
{
    sample_mem_put(mem, b->v, block_slots(b->cap, b->unit));
    memset(b, 0, sizeof *b);
}

void meter_integrate(const struct sample_buf *b, bool counter, int64_t a_ns, int64_t b_ns,
                     int64_t max_gap_ns, double *kwh, int64_t *missing_ns)
{
    size_t i = sample_buf_lower_bound(b, a_ns);
    /* The segment that crosses a_ns starts at the sample before it. */
    if (i > 0)
        i--;
    double energy = 0;
    struct sample s1 = i < b->n ? sample_buf_get(b, i) : (struct sample){0, 0};
    for (; i + 1 < b->n; i++) {
        struct sample s0 = s1;
        s1 = sample_buf_get(b, i + 1);
        if (s0.ts_ns >= b_ns)
            break;
        int64_t x = s0.ts_ns > a_ns ? s0.ts_ns : a_ns;
        int64_t y = s1.ts_ns < b_ns ? s1.ts_ns : b_ns;
        if (y <= x)
            continue;
        int64_t span; /* samples 292 years apart: as long as int64 goes */
        if (__builtin_sub_overflow(s1.ts_ns, s0.ts_ns, &span))
            span = INT64_MAX;
        if (counter) {
            double delta = s1.value >= s0.value ? s1.value - s0.value : s1.value;
            energy += delta * (double)(y - x) / (double)span;
        } else if (span > max_gap_ns) {
            *missing_ns += y - x;
        } else {
            double slope = (s1.value - s0.value) / (double)span;
            double px = s0.value + slope * (double)(x - s0.ts_ns);
            double py = s0.value + slope * (double)(y - s0.ts_ns);
            energy += (px + py) / 2 * ((double)(y - x) / 3.6e12);
        }
    }
    *kwh += energy;
}
