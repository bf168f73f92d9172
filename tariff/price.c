#include "price.h"

#include "alloc.h"
#include "decimal.h"
#include "eligibility.h"

#include <stdlib.h>
#include <string.h>

int64_t *caps_consumed(struct caps *caps, const char *tenant, const char *programme, int32_t year)
{
    for (size_t i = 0; i < caps->n; i++) {
        struct cap_entry *e = &caps->v[i];
        if (e->year == year && strcmp(e->programme, programme) == 0 &&
            strcmp(e->tenant, tenant) == 0)
            return &e->consumed_cny4;
    }
    ARRAY_RESERVE_ONE(caps->v, caps->n, caps->cap);
    struct cap_entry *e = &caps->v[caps->n++];
    e->tenant = xstrdup(tenant);
    e->programme = xstrdup(programme);
    e->year = year;
    e->consumed_cny4 = 0;
    return &e->consumed_cny4;
}

void caps_free(struct caps *caps)
{
    for (size_t i = 0; i < caps->n; i++) {
        free(caps->v[i].tenant);
        free(caps->v[i].programme);
    }
    free(caps->v);
    memset(caps, 0, sizeof *caps);
}

int64_t price_charge_cny4(int64_t kwh_micro, int64_t rate_micro_cny)
{
    /* scale 6 x scale 6 = scale 12; to scale 4. */
    return decimal_div_half_even((__int128)kwh_micro * rate_micro_cny, 100000000);
}

void price_subsidy(const struct config *cfg, const struct cluster *c, int64_t at_s,
                   int64_t share_micro, int64_t basis_cny4, bool demand, int32_t year,
                   struct caps *caps, struct subsidy *out)
{
    memset(out, 0, sizeof *out);
    if (basis_cny4 <= 0)
        return;
    /* max_subsidy x basis, rounded to 4 decimals: the most all programmes
     * together may pay on this basis. */
    int64_t clamp_cny4 =
        decimal_div_half_even((__int128)cfg->daemon.max_subsidy_micro * basis_cny4, 1000000);
    for (size_t i = 0; i < cfg->n_programmes && out->n < PRICE_MAX_PAID; i++) {
        const struct programme *p = &cfg->programmes[i];
        if (demand && p->basis != PROGRAMME_BASIS_ENERGY_DEMAND)
            continue;
        if (!programme_eligible(p, c, at_s, share_micro))
            continue;
        int64_t factor_micro = p->mode == PROGRAMME_PRO_RATA ? share_micro : 1000000;
        /* scale 6 x scale 6 x scale 4 = scale 16; to scale 4. */
        int64_t pay = decimal_div_half_even((__int128)p->rate_micro * factor_micro * basis_cny4,
                                            (__int128)1000000000000);
        int64_t left = clamp_cny4 - out->total_cny4;
        if (pay > left)
            pay = left;
        int64_t *consumed = NULL;
        if (p->has_cap) {
            consumed = caps_consumed(caps, c->tenant->id, p->id, year);
            int64_t cap_left = p->cap_cny4_per_year - *consumed;
            if (pay > cap_left)
                pay = cap_left;
        }
        if (pay <= 0)
            continue;
        if (consumed)
            *consumed += pay;
        out->paid[out->n++] = (struct paid){p, pay};
        out->total_cny4 += pay;
    }
}

void price_demand(const struct tariff_version *v, int64_t transformer_micro_kva,
                  int64_t contract_micro_kw, int64_t max_kw_micro, int64_t month_kwh_micro,
                  struct demand_charge *out)
{
    int64_t price_micro_cny;
    switch (v->demand_basis) {
    case DEMAND_CAPACITY:
        out->billing_kw_micro = transformer_micro_kva;
        price_micro_cny = v->demand_kva_micro_cny;
        break;
    case DEMAND_CONTRACT: {
        /* contract + factor x (max - threshold x contract, if positive),
         * exact at scale 12, rounded once to scale 6. */
        __int128 threshold12 = (__int128)v->contract_threshold_micro * contract_micro_kw;
        __int128 excess12 = (__int128)max_kw_micro * 1000000 - threshold12;
        __int128 billing18 = (__int128)contract_micro_kw * 1000000000000;
        if (excess12 > 0)
            billing18 += excess12 * v->contract_factor_micro;
        out->billing_kw_micro = decimal_div_half_even(billing18, 1000000000000);
        price_micro_cny = v->demand_kw_micro_cny;
        break;
    }
    case DEMAND_MAX_DEMAND:
    default:
        out->billing_kw_micro = max_kw_micro;
        price_micro_cny = v->demand_kw_micro_cny;
        break;
    }
    int64_t fraction_micro = 1000000;
    if (v->has_load_factor_rule && transformer_micro_kva > 0 &&
        (__int128)month_kwh_micro * 1000000 >=
            (__int128)v->load_factor_micro_kwh_per_kva * transformer_micro_kva) {
        fraction_micro = v->load_factor_fraction_micro;
    }
    /* scale 6 x 6 x 6 = 18; to scale 4. */
    out->charge_cny4 =
        decimal_div_half_even((__int128)out->billing_kw_micro * price_micro_cny * fraction_micro,
                              (__int128)100000000000000);
}

int64_t price_prorated_cny4(const int64_t *monthly_cny4, const int32_t *days, size_t n)
{
    __int128 sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (__int128)monthly_cny4[i] * days[i];
    return decimal_div_half_even(sum, 30);
}
