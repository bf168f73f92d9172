#include "eligibility.h"

#include "civil.h"
#include "decimal.h"

#include <string.h>

int32_t cluster_utc_offset_s(const struct cluster *c)
{
    return c->site->tariff->versions[0]->utc_offset_s;
}

const struct inventory *cluster_inventory_at(const struct cluster *c, int64_t ts_s)
{
    int32_t day = civil_local_day(ts_s, cluster_utc_offset_s(c));
    const struct inventory *in_force = &c->inventories[0];
    for (size_t i = 1; i < c->n_inventories && c->inventories[i].from_day <= day; i++)
        in_force = &c->inventories[i];
    return in_force;
}

int64_t cluster_domestic_share_micro(const struct cluster *c, int64_t ts_s)
{
    const struct inventory *inv = cluster_inventory_at(c, ts_s);
    return decimal_div_half_even((__int128)inv->domestic_micro_kw * 1000000, inv->total_micro_kw);
}

bool programme_eligible(const struct programme *p, const struct cluster *c, int64_t ts_s,
                        int64_t domestic_share_micro)
{
    int32_t day = civil_local_day(ts_s, cluster_utc_offset_s(c));
    if (day < p->from_day || (p->has_until && day > p->until_day))
        return false;
    if (domestic_share_micro < p->min_domestic_share_micro)
        return false;
    bool in_province = false;
    for (size_t i = 0; i < p->n_provinces && !in_province; i++)
        in_province = strcmp(p->provinces[i], c->site->province) == 0;
    if (!in_province)
        return false;
    if (p->n_tenants == 0)
        return true;
    for (size_t i = 0; i < p->n_tenants; i++)
        if (p->tenants[i] == c->tenant)
            return true;
    return false;
}

size_t programmes_eligible(const struct config *cfg, const struct cluster *c, int64_t ts_s,
                           const struct programme **out, size_t max)
{
    int64_t share = cluster_domestic_share_micro(c, ts_s);
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_programmes; i++) {
        if (!programme_eligible(&cfg->programmes[i], c, ts_s, share))
            continue;
        if (n < max)
            out[n] = &cfg->programmes[i];
        n++;
    }
    return n;
}

bool cluster_in_service_on(const struct cluster *c, int32_t day)
{
    return !(c->has_service_from && day < c->service_from_day) &&
           !(c->has_service_until && day > c->service_until_day);
}

static int64_t dated_on(const struct dated_micro *v, size_t n, int32_t day)
{
    int64_t in_force = 0;
    for (size_t i = 0; i < n && v[i].from_day <= day; i++)
        in_force = v[i].micro;
    return in_force;
}

int64_t cluster_transformer_micro_kva_on(const struct cluster *c, int32_t day)
{
    return dated_on(c->transformer_micro_kva, c->n_transformer_kva, day);
}

int64_t cluster_contract_micro_kw_on(const struct cluster *c, int32_t day)
{
    return dated_on(c->contract_micro_kw, c->n_contract_kw, day);
}
