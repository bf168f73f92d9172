/*
 * breakeven: the power scale at which an alternative configuration costs
 * as much as the one in force (`tariffd price --compare`, docs/design.md
 * section 7).
 *
 * The alternative's total net as a function of its power scale F is found
 * by pricing, never by a formula: demand charges (on max demand, capacity
 * or a contract with its excess), subsidies cut to max_subsidy and to
 * yearly caps, and the half-even rounding of every row make it piecewise
 * and non-linear. The search asks its caller for the net at points of a
 * grid, F = steps / BREAK_EVEN_STEPS_PER_UNIT for steps in 1 ...
 * BREAK_EVEN_MAX_STEPS (0.001 to 10), and bisects for the smallest point
 * at which the net reaches the target: about 15 pricings.
 *
 * Bisection assumes the net never falls as F grows. It holds for energy,
 * surcharges and every demand basis, and for subsidies up to their
 * rounding (stacked programmes that all round up on one row can pay a
 * unit of 0.0001 CNY more than the charge grew), but not across a
 * load_factor_rule threshold, which cuts a month's demand charge once its
 * kWh per kVA reach it: there the net can reach the target more than
 * once, and the search finds one of the crossings, not necessarily the
 * first.
 *
 * Pure: the caller's function does the pricing. Nothing is allocated.
 */
#ifndef TARIFF_BREAKEVEN_H
#define TARIFF_BREAKEVEN_H

#include <stdbool.h>
#include <stdint.h>

#define BREAK_EVEN_STEPS_PER_UNIT 1000  /* precision 0.001 */
#define BREAK_EVEN_MAX_STEPS      10000 /* F up to 10 */

enum break_even_outcome {
    BREAK_EVEN_FOUND,       /* net(steps - 1) < target <= net(steps) */
    BREAK_EVEN_ALT_CHEAPER, /* net < target even at the largest F */
    BREAK_EVEN_ALT_DEARER,  /* net >= target already at the smallest F */
    BREAK_EVEN_FAILED,      /* the pricing function failed */
};

struct break_even {
    enum break_even_outcome outcome;
    int32_t steps;      /* FOUND: F = steps / BREAK_EVEN_STEPS_PER_UNIT */
    int64_t below_cny4; /* FOUND: the net at steps - 1 */
    int64_t at_cny4;    /* FOUND: at steps; CHEAPER: at the largest F; DEARER: at the smallest */
    int pricings;       /* how many times the function ran */
};

/* The net at F = steps / BREAK_EVEN_STEPS_PER_UNIT into *net_cny4; false
 * when pricing failed (the function has said why). */
typedef bool (*break_even_net_fn)(void *ctx, int32_t steps, int64_t *net_cny4);

/* Searches for the smallest grid point whose net reaches target_cny4. */
void break_even_search(int64_t target_cny4, break_even_net_fn net_at, void *ctx,
                       struct break_even *out);

#endif
