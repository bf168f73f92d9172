#include "deadlines.h"

#include "alloc.h"

#include <stdlib.h>

void deadlines_push(struct deadlines *d, int64_t at_ns, size_t cluster)
{
    ARRAY_RESERVE_ONE(d->v, d->n, d->cap);
    size_t i = d->n++;
    while (i > 0 && d->v[(i - 1) / 2].at_ns > at_ns) {
        d->v[i] = d->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->v[i] = (struct deadline){at_ns, cluster};
}

bool deadlines_pop_due(struct deadlines *d, int64_t now_ns, size_t *cluster)
{
    if (d->n == 0 || d->v[0].at_ns > now_ns)
        return false;
    *cluster = d->v[0].cluster;
    struct deadline last = d->v[--d->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= d->n)
            break;
        if (child + 1 < d->n && d->v[child + 1].at_ns < d->v[child].at_ns)
            child++;
        if (d->v[child].at_ns >= last.at_ns)
            break;
        d->v[i] = d->v[child];
        i = child;
    }
    if (d->n > 0)
        d->v[i] = last;
    return true;
}

void deadlines_clear(struct deadlines *d)
{
    d->n = 0;
}

void deadlines_free(struct deadlines *d)
{
    free(d->v);
    *d = (struct deadlines){0};
}
