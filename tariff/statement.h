/*
 * statement: monthly statements summed from billing and demand rows, as the
 * ledger's views compute them (docs/design.md section 5): per tenant, cluster
 * and local month (monthly_statements) and per period (monthly_by_period),
 * the 4-decimal amounts summed first, rounded half-even to 0.01 CNY when
 * shown (statement_round_fen).
 *
 * Cost per unit of compute (display only, never money): where the chips of
 * a cluster are rated in PFLOPS ([chip] pflops), a statement also sums the
 * rated compute of its priced span, the rated PFLOPS of the inventory in
 * force at the start of each interval row (revision 0) times the interval's
 * length. Adjustments add no time: they re-price an interval already
 * counted. statement_cny4_per_pflop_hour divides the net by it.
 *
 * Owns copies of the names it is given; statements_free releases them.
 */
#ifndef TARIFF_STATEMENT_H
#define TARIFF_STATEMENT_H

#include "engine.h"

struct statement {
    char *tenant, *cluster, *province;
    int32_t month_day;
    int64_t kwh_micro;
    int64_t energy_charge_cny4, surcharge_cny4, demand_charge_cny4, subsidy_cny4, net_cny4;
    /* The days in service of a prorated demand charge, as its latest
     * revision says; -1 for a whole month or no demand row. */
    int32_t demand_days;
    int demand_revision; /* of the demand row demand_days is from; -1: none */
    int64_t period_kwh_micro[PERIOD_COUNT];
    int64_t period_energy_charge_cny4[PERIOD_COUNT];
    bool period_seen[PERIOD_COUNT];
    __int128 pflop_s_micro; /* rated PFLOPS x seconds of the priced span, at scale 6 */
    bool pflops_unrated;    /* an inventory of the span has a chip without pflops */
};

struct statements {
    struct statement *v;
    size_t n, cap;
    /* An index of v by cluster and month (open addressing, v's index + 1;
     * rebuilt when v grows past half of it or is sorted): every billing
     * row adds to one statement, and a fleet has thousands. */
    size_t *slots;
    size_t n_slots;
};

void statements_add_billing(struct statements *s, const struct billing_row *r);
void statements_add_demand(struct statements *s, const struct demand_row *r);

/* Adds the rated compute of one interval of c (its revision-0 row) to st:
 * the PFLOPS of the inventory in force at start_s times the interval's
 * length, or marks st unrated when a chip of that inventory has no pflops.
 * statements_add_billing calls it; tariffd report, reading the ledger's
 * rows, calls it too, so both compute the same figure. */
void statement_add_rated_interval(struct statement *st, const struct cluster *c, int64_t start_s,
                                  int64_t end_s);

/* Sorts by month, tenant, cluster. */
void statements_sort(struct statements *s);

/* The net of st per PFLOP-hour of rated compute over its priced span, in
 * CNY at scale 4, rounded half-even: false when some inventory of the span
 * has a chip without pflops, when the span is empty (a month with only
 * demand or adjustment rows), or when the figure would not fit. */
bool statement_cny4_per_pflop_hour(const struct statement *st, int64_t *out);

/* The net of every statement, summed at scale 4 (the total the break-even
 * of tariffd price --compare compares). */
int64_t statements_net_cny4(const struct statements *s);

/* A 4-decimal amount rounded half-even to 2 decimals (fen). */
int64_t statement_round_fen(int64_t cny4);

void statements_free(struct statements *s);

#endif
