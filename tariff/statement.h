/*
 * statement: monthly statements summed from billing and demand rows, as the
 * ledger's views compute them (docs/design.md section 5): per tenant, cluster
 * and local month (monthly_statements) and per period (monthly_by_period),
 * the 4-decimal amounts summed first, rounded half-even to 0.01 CNY when
 * shown (statement_round_fen).
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
};

struct statements {
    struct statement *v;
    size_t n, cap;
};

void statements_add_billing(struct statements *s, const struct billing_row *r);
void statements_add_demand(struct statements *s, const struct demand_row *r);

/* Sorts by month, tenant, cluster. */
void statements_sort(struct statements *s);

/* A 4-decimal amount rounded half-even to 2 decimals (fen). */
int64_t statement_round_fen(int64_t cny4);

void statements_free(struct statements *s);

#endif
