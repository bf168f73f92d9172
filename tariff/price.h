/*
 * price: money for one billing row or one month's demand (docs/design.md
 * section 5).
 *
 * Everything is a scaled integer: kWh at scale 6 (kwh_micro), prices in CNY
 * at scale 6 (micro_cny), money in CNY at scale 4 (cny4, the ledger's
 * numeric(20,4)), fractions at scale 6. Every rounding is half-even and
 * happens exactly where docs/design.md section 5 says: a charge is rounded
 * once from the exact product; each programme's subsidy is rounded, then
 * cut to what is left of its yearly cap and of max_subsidy x basis.
 *
 * The yearly caps are a small ledger keyed by tenant, programme and local
 * year; it copies the names it is given, so it survives config reloads.
 */
#ifndef TARIFF_PRICE_H
#define TARIFF_PRICE_H

#include "config.h"

#define PRICE_MAX_PAID PROGRAMMES_PER_PROVINCE /* programmes paying on one row */

struct cap_entry {
    char *tenant;
    char *programme;
    int32_t year;
    int64_t consumed_cny4;
};

struct caps {
    struct cap_entry *v;
    size_t n, cap;
};

/* The consumed amount of a cap, created at 0 on first use. */
int64_t *caps_consumed(struct caps *caps, const char *tenant, const char *programme, int32_t year);
void caps_free(struct caps *caps);

struct paid {
    const struct programme *programme;
    int64_t amount_cny4;
};

struct subsidy {
    int64_t total_cny4;
    size_t n;
    struct paid paid[PRICE_MAX_PAID]; /* only programmes that paid (> 0), config order */
};

/* round_half_even(kwh x rate) at scale 4: a charge in CNY. */
int64_t price_charge_cny4(int64_t kwh_micro, int64_t rate_micro_cny);

/* The subsidy on `basis_cny4` for cluster c at instant at_s (eligibility,
 * domestic share and dates at that instant, share rounded as given), in
 * local year `year`. For a demand charge (demand = true) only programmes
 * with basis energy+demand pay. Consumes the caps. */
void price_subsidy(const struct config *cfg, const struct cluster *c, int64_t at_s,
                   int64_t share_micro, int64_t basis_cny4, bool demand, int32_t year,
                   struct caps *caps, struct subsidy *out);

/* The billing demand of a month under the version's demand_basis, and its
 * charge (docs/design.md section 5), with the transformer kVA and contract
 * kW given (0: the cluster has none). */
struct demand_charge {
    int64_t billing_kw_micro;
    int64_t charge_cny4;
};

void price_demand(const struct tariff_version *v, int64_t transformer_micro_kva,
                  int64_t contract_micro_kw, int64_t max_kw_micro, int64_t month_kwh_micro,
                  struct demand_charge *out);

/* Days of service prorated (docs/design.md section 5): each day at 1/30 of
 * the monthly charge it had; the sum rounded half-even to 4 decimals once.
 * monthly_cny4[i] is the monthly charge of days[i] days. */
int64_t price_prorated_cny4(const int64_t *monthly_cny4, const int32_t *days, size_t n);

#endif
