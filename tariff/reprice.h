/*
 * reprice: pricing closed intervals and months again under the config in
 * force, from the energy the ledger already holds (docs/design.md,
 * "Corrections").
 *
 * The unit is one cluster-month: every interval row the ledger holds for
 * it, summed over revisions, and its demand row if the month closed. The
 * daemon reads a chunk from PostgreSQL, journals it, and applies it here;
 * a replay applies the same chunk to the same state and makes the same
 * rows. Nothing here reads samples: an interval's kWh is what its rows say.
 *
 * For each chunk, in this order (the caps' order, documented):
 *   1. the subsidies the chunk's repriced intervals hold go back to the
 *      yearly caps;
 *   2. each repriced interval, in time order, is priced under the version
 *      in force at its start now, and consumes the caps;
 *   3. the month's demand, if the month closed, is priced again (its old
 *      subsidy released first, then consumed), after its intervals, as a
 *      live month is.
 * A row whose money and subsidy lines come out unchanged makes no
 * adjustment, so a second reprice makes no rows.
 *
 * Where the engine still holds an interval or month (closed within
 * late_window, not final), its own sums are used and updated, so a late
 * sample afterwards is diffed against the repriced amounts.
 */
#ifndef TARIFF_REPRICE_H
#define TARIFF_REPRICE_H

#include "engine.h"
#include "errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one programme paid on a row, summed over its revisions. */
struct reprice_paid {
    const char *programme;
    int64_t amount_cny4;
};

/* One interval row of the ledger, every column summed over revisions. */
struct reprice_interval {
    int64_t start_s;
    int32_t revision; /* the latest */
    bool in_range;    /* priced again; otherwise counted only for its month's demand */
    int64_t kwh_micro;
    int64_t energy_charge_cny4, surcharge_cny4, subsidy_cny4, net_cny4;
    int64_t missing_s;
    size_t n_paid;
    const struct reprice_paid *paid;
};

/* The month's demand row, summed over revisions (has_row false: the
 * month has not closed, and only its intervals are priced again). */
struct reprice_month {
    bool has_row;
    int32_t revision;                       /* the latest */
    int64_t max_kw_micro, billing_kw_micro; /* of the latest revision */
    int64_t max_interval_start_s;
    int64_t charge_cny4, subsidy_cny4, net_cny4;
    size_t n_paid;
    const struct reprice_paid *paid;
};

struct reprice_chunk {
    const char *cluster;
    int32_t month_day; /* the month's first local day, as demand_row.month_day */
    size_t n_intervals;
    const struct reprice_interval *intervals; /* sorted by start_s, no duplicates */
    struct reprice_month month;
};

/* What applying a chunk changed: the sums of the rows it made. */
struct reprice_effect {
    uint64_t billing_rows, demand_rows;
    uint64_t intervals; /* in range and priced again (changed or not) */
    uint64_t skipped;   /* in range, but no tariff version covers it now */
    int64_t kwh_micro;  /* of the intervals priced again */
    int64_t energy_charge_cny4, surcharge_cny4;
    int64_t demand_charge_cny4;
    int64_t subsidy_cny4, net_cny4; /* intervals and demand */
};

/* Adds e to sum, field by field. */
void reprice_effect_add(struct reprice_effect *sum, const struct reprice_effect *e);

/* Counts in eff a billing row emitted (its money), or a demand row whose
 * charge, subsidy and net changed by these amounts. */
void reprice_effect_billing(struct reprice_effect *eff, const struct billing_row *row);
void reprice_effect_demand(struct reprice_effect *eff, int64_t charge_cny4, int64_t subsidy_cny4,
                           int64_t net_cny4);

/* Applies one chunk: emits adjustment rows through the engine's sink and
 * adds what they changed to *effect. False (nothing changed, err set)
 * when the cluster is not in the config, the engine waits for the caps,
 * or the chunk is malformed. */
bool engine_reprice(struct engine *e, const struct reprice_chunk *c, struct reprice_effect *effect,
                    struct error *err);

#endif
