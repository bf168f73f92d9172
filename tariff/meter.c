#include "meter.h"

#include "sample_mem.h"

#include <stdlib.h>
#include <string.h>

size_t sample_buf_lower_bound(const struct sample_buf *b, int64_t ts_ns)
{
    size_t lo = 0, hi = b->n;
    /* Most lookups are for the newest samples: check the end first. */
    if (hi > 0 && b->v[b->start + hi - 1].ts_ns < ts_ns)
        return hi;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->v[b->start + mid].ts_ns < ts_ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Moves b's samples to a fresh block of cap samples, at its front. */
static void move_to(struct sample_mem *mem, struct sample_buf *b, size_t cap)
{
    struct sample *v = sample_mem_get(mem, cap);
    if (b->n > 0)
        memcpy(v, b->v + b->start, b->n * sizeof *v);
    sample_mem_put(mem, b->v, b->cap);
    b->v = v;
    b->start = 0;
    b->cap = cap;
}

static void make_room(struct sample_mem *mem, struct sample_buf *b)
{
    if (b->start + b->n < b->cap)
        return;
    if (b->start > 0 && b->start >= b->cap / 2) {
        memmove(b->v, b->v + b->start, b->n * sizeof *b->v);
        b->start = 0;
        return;
    }
    move_to(mem, b, b->cap ? b->cap * 2 : SAMPLE_MEM_MIN);
}

void sample_buf_append(struct sample_mem *mem, struct sample_buf *b, struct sample s)
{
    make_room(mem, b);
    size_t at = b->start + b->n++;
    b->v[at] = s;
    /* The next cache line this buffer will write, asked for now: a fleet's
     * meters take turns, so it has long arrived when its turn comes, where
     * writing it cold stalled every fourth append. */
    if (at + 4 < b->cap)
        __builtin_prefetch(&b->v[at + 4], 1);
}

enum sample_insert sample_buf_insert(struct sample_mem *mem, struct sample_buf *b, struct sample s,
                                     size_t *index)
{
    size_t i = sample_buf_lower_bound(b, s.ts_ns);
    *index = i;
    if (i < b->n && b->v[b->start + i].ts_ns == s.ts_ns)
        return b->v[b->start + i].value == s.value ? SAMPLE_DUPLICATE : SAMPLE_CONFLICT;
    make_room(mem, b);
    struct sample *at = b->v + b->start + i;
    if (i < b->n)
        memmove(at + 1, at, (b->n - i) * sizeof *at);
    *at = s;
    b->n++;
    return SAMPLE_INSERTED;
}

void sample_buf_drop_front(struct sample_mem *mem, struct sample_buf *b, size_t k)
{
    if (k > b->n)
        k = b->n;
    b->start += k;
    b->n -= k;
    if (b->n == 0)
        b->start = 0;
    /* A meter that went quiet gives memory back to the pool; one in steady state
     * (n about constant, cap at most 2n) never comes here. */
    if (b->cap > SAMPLE_MEM_MIN && b->n < b->cap / 4) {
        size_t cap = b->cap / 2;
        while (cap > SAMPLE_MEM_MIN && b->n < cap / 4)
            cap /= 2;
        move_to(mem, b, cap);
    }
}

void sample_buf_free(struct sample_mem *mem, struct sample_buf *b)
{
    sample_mem_put(mem, b->v, b->cap);
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
    for (; i + 1 < b->n; i++) {
        const struct sample *s0 = sample_buf_at(b, i), *s1 = s0 + 1;
        if (s0->ts_ns >= b_ns)
            break;
        int64_t x = s0->ts_ns > a_ns ? s0->ts_ns : a_ns;
        int64_t y = s1->ts_ns < b_ns ? s1->ts_ns : b_ns;
        if (y <= x)
            continue;
        int64_t span = s1->ts_ns - s0->ts_ns;
        if (counter) {
            double delta = s1->value >= s0->value ? s1->value - s0->value : s1->value;
            energy += delta * (double)(y - x) / (double)span;
        } else if (span > max_gap_ns) {
            *missing_ns += y - x;
        } else {
            double slope = (s1->value - s0->value) / (double)span;
            double px = s0->value + slope * (double)(x - s0->ts_ns);
            double py = s0->value + slope * (double)(y - s0->ts_ns);
            energy += (px + py) / 2 * ((double)(y - x) / 3.6e12);
        }
    }
    *kwh += energy;
}
