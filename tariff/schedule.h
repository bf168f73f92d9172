/*
 * schedule: what a tariff says at an instant.
 *
 * A tariff version is in force from local midnight of its date until the
 * next version's; its time-of-use period at an instant follows the profile
 * of the local month, at the local time of day (utc_offset, no DST: China
 * has none). Pure lookups on a finished config; no allocation.
 */
#ifndef TARIFF_SCHEDULE_H
#define TARIFF_SCHEDULE_H

#include "config.h"

/* The version in force at ts_s, or NULL before the first version. */
const struct tariff_version *tariff_version_at(const struct tariff *t, int64_t ts_s);

/* The time-of-use period at ts_s under version v. */
enum period tariff_period_at(const struct tariff_version *v, int64_t ts_s);

/* CNY per kWh at scale 6 for a period the version prices. */
int64_t tariff_price_micro_cny(const struct tariff_version *v, enum period p);

/* The first day (day number) of the local month containing ts_s. */
int32_t tariff_local_month_start_day(const struct tariff_version *v, int64_t ts_s);

#endif
