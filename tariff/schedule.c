#include "schedule.h"

#include "civil.h"

const struct tariff_version *tariff_version_at(const struct tariff *t, int64_t ts_s)
{
    /* Versions are few and sorted; the last one starting at or before ts_s
     * is in force. */
    const struct tariff_version *in_force = NULL;
    for (size_t i = 0; i < t->n_versions && t->versions[i]->from_ts_s <= ts_s; i++)
        in_force = t->versions[i];
    return in_force;
}

enum period tariff_period_at(const struct tariff_version *v, int64_t ts_s)
{
    struct civil_date d = civil_from_day(civil_local_day(ts_s, v->utc_offset_s));
    int32_t second = civil_local_second_of_day(ts_s, v->utc_offset_s);
    const struct profile *p = v->month_profile[d.month - 1];
    size_t i = p->n_steps - 1;
    while (p->steps[i].start_s > second)
        i--;
    return p->steps[i].period;
}

int64_t tariff_price_micro_cny(const struct tariff_version *v, enum period p)
{
    return v->price_micro_cny[p];
}

int32_t tariff_local_month_start_day(const struct tariff_version *v, int64_t ts_s)
{
    struct civil_date d = civil_from_day(civil_local_day(ts_s, v->utc_offset_s));
    d.day = 1;
    return civil_to_day(d);
}
