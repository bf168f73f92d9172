/*
 * eligibility: a cluster's inventory, domestic share and subsidy
 * programmes at an instant, and its service dates, billed capacity and
 * contract on a day (docs/design.md sections 1 and 5).
 *
 * Dates in a cluster's inventory and in programmes are local dates in the
 * utc_offset of the cluster's site tariff, taking effect at local midnight.
 * The domestic share is rounded half-even to 6 decimals, and eligibility
 * compares that rounded value, as the ledger records it. Pure lookups on a
 * finished config; no allocation.
 */
#ifndef TARIFF_ELIGIBILITY_H
#define TARIFF_ELIGIBILITY_H

#include "config.h"

/* The inventory in force at ts_s (the undated one before any dated one). */
const struct inventory *cluster_inventory_at(const struct cluster *c, int64_t ts_s);

/* Rated power of domestic chips / rated power of all chips at ts_s, as a
 * fraction at scale 6, rounded half-even. */
int64_t cluster_domestic_share_micro(const struct cluster *c, int64_t ts_s);

/* Whether programme p pays on cluster c at ts_s given its rounded share:
 * province, dates, tenant allow-list and min_domestic_share. */
bool programme_eligible(const struct programme *p, const struct cluster *c, int64_t ts_s,
                        int64_t domestic_share_micro);

/* The programmes eligible for c at ts_s, in config order (the order their
 * subsidies stack in). Writes up to max pointers to out; returns how many
 * are eligible. */
size_t programmes_eligible(const struct config *cfg, const struct cluster *c, int64_t ts_s,
                           const struct programme **out, size_t max);

/* Whether local day `day` lies within the cluster's service_from and
 * service_until (inclusive; an absent one sets no limit). */
bool cluster_in_service_on(const struct cluster *c, int32_t day);

/* The UTC offset of the cluster's site tariff (one for all its versions):
 * the offset of its local days and months. */
int32_t cluster_utc_offset_s(const struct cluster *c);

/* The transformer_kva (contract_kw) in force on local day `day`: the last
 * dated value from that day or before, else the undated one; 0 when the
 * cluster has none. */
int64_t cluster_transformer_micro_kva_on(const struct cluster *c, int32_t day);
int64_t cluster_contract_micro_kw_on(const struct cluster *c, int32_t day);

#endif
