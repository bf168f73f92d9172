/*
 * deadlines: when each cluster next needs the clock, as a binary min-heap
 * of (at_ns, cluster), so that a tick finds the clusters whose time has
 * come without looking at the others (engine.c, "What a tick looks at").
 *
 * An entry is a hint, not a promise: the engine pushes one whenever a
 * cluster's deadline becomes earlier than the one it has pending, and a
 * popped entry only makes the tick look at its cluster. An entry whose
 * cluster's deadline has since moved later costs one look for nothing; a
 * due cluster is never missed. The heap owns its array.
 */
#ifndef TARIFF_DEADLINES_H
#define TARIFF_DEADLINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct deadline {
    int64_t at_ns;
    size_t cluster;
};

struct deadlines {
    struct deadline *v; /* v[0] is the earliest */
    size_t n, cap;
};

void deadlines_push(struct deadlines *d, int64_t at_ns, size_t cluster);

/* Pops the earliest entry into *cluster when it is due (at_ns <= now_ns);
 * false, popping nothing, when none is. */
bool deadlines_pop_due(struct deadlines *d, int64_t now_ns, size_t *cluster);

void deadlines_clear(struct deadlines *d);
void deadlines_free(struct deadlines *d);

#endif
