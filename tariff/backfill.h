/*
 * backfill: history priced into the intervals the ledger has no row for
 * (docs/design.md, "Corrections: tariffd backfill").
 *
 * Three steps, so that only the last touches the daemon's engine:
 *  1. Measure. A second engine whose sink has `energy` (it measures and
 *     does not price) takes the history exactly as `tariffd price` would:
 *     the same pushes, the clock the newest timestamp read, engine_finish
 *     at the end. A backfill_sums keeps the last energy each interval
 *     closed with and counts the samples of each interval.
 *  2. Plan. backfill_plan_build leaves out every interval the ledger has
 *     a row for, or that the daemon's engine may still bill (from the
 *     start of the interval of the cluster's earliest live sample on), and
 *     decides each touched month's demand (enum backfill_fate).
 *  3. Apply. engine_backfill prices the plan's intervals on the daemon's
 *     engine, against its yearly caps, in time order and clusters by id
 *     within an instant (as live closes run), each WHOLE month right after
 *     its last interval; then the MERGED months. It makes the backfilled
 *     span of each cluster final, so no live sample can bill into it
 *     later. The daemon journals the plan (with the clock) and a replay
 *     applies it again to the same state, making the same rows.
 *
 * The rows are the live ones' kind: revision 0, with the version, share
 * and subsidy in force at each interval's start. Summed per interval they
 * equal `tariffd price` on the same input; months WHOLE too (the caps
 * aside: a backfill consumes what the caps have left, in its own order,
 * where `tariffd price` starts from none consumed).
 */
#ifndef TARIFF_BACKFILL_H
#define TARIFF_BACKFILL_H

#include "engine.h"
#include "errors.h"
#include "reprice.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backfill_sums;

struct backfill_sums *backfill_sums_new(const struct config *cfg);
void backfill_sums_free(struct backfill_sums *b);

/* The measuring engine's sink.energy, with ctx the backfill_sums. */
void backfill_sums_energy(void *ctx, const struct cluster *c, int64_t start_s, int64_t kwh_micro,
                          int64_t missing_s);

/* A sample of cluster c at ts_ns that the measuring engine took (not
 * quarantined): counted in its interval. */
void backfill_sums_count(struct backfill_sums *b, const struct cluster *c, int64_t ts_ns);

/* The span [*from_s, *to_s) of the intervals measured or counted for c;
 * false when there are none. */
bool backfill_sums_span(const struct backfill_sums *b, const struct cluster *c, int64_t *from_s,
                        int64_t *to_s);

/* After the measuring engine's engine_finish: how far it closed each
 * cluster, which tells which months the history reaches the end of. */
void backfill_sums_finish(struct backfill_sums *b, const struct engine *measured);

/* What the ledger holds of a cluster around the history (read by the
 * daemon): sorted interval starts of its billing rows, and the months
 * (first local day, as a day number) with billing rows and with demand
 * rows. */
struct backfill_ledger_keys {
    const char *cluster;
    const int64_t *interval_starts;
    size_t n_interval_starts;
    const int32_t *row_months;
    size_t n_row_months;
    const int32_t *demand_months;
    size_t n_demand_months;
};

/* What becomes of a month a backfilled interval is in. */
enum backfill_fate {
    /* The backfill has all of it: no row of it anywhere, the history
     * reaches its end, and the live data begins after it. Its demand row
     * is the backfill's. */
    BACKFILL_WHOLE = 0,
    /* Shared with the live data (the daemon's engine holds the month or
     * may still bill in it) or the history stops inside it: the
     * backfilled intervals go into the engine's month, which prices its
     * demand when it closes, as live months do; at once when it closed
     * already (an adjustment), or when the live data and the clock are
     * both past its end. */
    BACKFILL_MERGED = 1,
    /* The month's demand row is final in the ledger: its intervals are
     * billed here; the daemon then prices its demand again from the
     * ledger's intervals, as `tariffd reprice` does (daemon/history.c). */
    BACKFILL_LEFT = 2,
};

const char *backfill_fate_name(enum backfill_fate f);

struct backfill_interval {
    const char *cluster;
    int64_t start_s, kwh_micro, missing_s;
};

struct backfill_month {
    const char *cluster;
    int32_t month_day;
    enum backfill_fate fate;
};

struct backfill_plan {
    int64_t now_ns;                      /* the wall clock when it was made */
    struct backfill_interval *intervals; /* by cluster id, then start */
    size_t n_intervals;
    struct backfill_month *months; /* by cluster id, then month; each an interval's */
    size_t n_months;
};

/* What the plan leaves out because the ledger or the live data has it. */
struct backfill_taken {
    uint64_t intervals, samples;
};

/* The plan for what b measured, against the ledger's keys (of any
 * clusters; one missing means the ledger has nothing of it) and the
 * daemon's engine. The plan's cluster ids point into the config. */
void backfill_plan_build(const struct backfill_sums *b, const struct engine *live,
                         const struct backfill_ledger_keys *keys, size_t n_keys, int64_t now_ns,
                         struct backfill_plan *out, struct backfill_taken *taken);
void backfill_plan_free(struct backfill_plan *p);

/* Whether interval start_s of the cluster is in the plan. */
bool backfill_plan_has(const struct backfill_plan *p, const char *cluster, int64_t start_s);

/* What applying a plan did to one of its months, as a struct
 * reprice_effect (effects[i] is plan->months[i]'s): intervals billed,
 * their kWh and money, and the demand rows the month made (money
 * included); skipped stays 0. */

/* Applies a plan to the daemon's engine (see the top). False, changing
 * nothing, with err set, when it does not fit the engine: a cluster not in
 * the config, an interval off the grid or without a tariff version, one
 * the live data may bill, a month the plan lacks, or the caps not known.
 * effects has plan->n_months entries (may be NULL). */
bool engine_backfill(struct engine *e, const struct backfill_plan *p,
                     struct reprice_effect *effects, struct error *err);

#endif
