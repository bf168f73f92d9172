#include "reprice.h"

#include "civil.h"
#include "eligibility.h"
#include "engine_private.h"
#include "schedule.h"

#include <inttypes.h>
#include <stdio.h>

/* The sums an interval or month had before: the engine's own where it
 * still holds them, else the ledger's. Programme names are interned, as
 * engine_diff_lines compares them by pointer. */
struct before {
    int32_t revision;
    int64_t energy_charge_cny4, surcharge_cny4, subsidy_cny4, net_cny4;
    size_t n_paid;
    struct stored_paid *paid;
};

static void ledger_before(struct engine *e, int32_t revision, int64_t energy, int64_t surcharge,
                          int64_t subsidy, int64_t net, const struct reprice_paid *paid, size_t n,
                          struct before *out)
{
    *out = (struct before){revision, energy, surcharge, subsidy, net, 0, NULL};
    out->paid = xcalloc(n ? n : 1, sizeof *out->paid);
    for (size_t i = 0; i < n; i++)
        if (paid[i].amount_cny4 != 0)
            out->paid[out->n_paid++] =
                (struct stored_paid){engine_intern(e, paid[i].programme), paid[i].amount_cny4};
}

static void row_before(const struct closed_row *r, struct before *out)
{
    *out = (struct before){r->revision,
                           r->energy_charge_cny4,
                           r->surcharge_cny4,
                           r->subsidy_cny4,
                           r->net_cny4,
                           r->n_paid,
                           NULL};
    out->paid = xcalloc(r->n_paid ? r->n_paid : 1, sizeof *out->paid);
    memcpy(out->paid, r->paid, r->n_paid * sizeof *r->paid);
}

/* Whether the chunk can be applied: its intervals sorted, on the
 * interval grid, inside its month; its programme names present. */
static bool chunk_valid(const struct engine *e, const struct reprice_chunk *ch, int64_t month_start,
                        int64_t month_end, struct error *err)
{
    for (size_t i = 0; i < ch->n_intervals; i++) {
        const struct reprice_interval *in = &ch->intervals[i];
        if (in->start_s < month_start || in->start_s >= month_end ||
            civil_floor_div(in->start_s, e->interval_s) * e->interval_s != in->start_s) {
            error_set(err, "cluster %s: interval %" PRId64 " is not an interval of its month",
                      ch->cluster, in->start_s);
            return false;
        }
        if (i && in->start_s <= ch->intervals[i - 1].start_s) {
            error_set(err, "cluster %s: intervals out of order at %" PRId64, ch->cluster,
                      in->start_s);
            return false;
        }
        if (in->revision < 0) {
            error_set(err, "cluster %s: interval %" PRId64 " has no revision", ch->cluster,
                      in->start_s);
            return false;
        }
        for (size_t k = 0; k < in->n_paid; k++)
            if (!in->paid[k].programme) {
                error_set(err, "cluster %s: a subsidy line without a programme", ch->cluster);
                return false;
            }
    }
    if (ch->month.has_row && (ch->month.revision < 0 || !ch->n_intervals)) {
        error_set(err, "cluster %s: a demand row without interval rows", ch->cluster);
        return false;
    }
    for (size_t k = 0; k < ch->month.n_paid; k++)
        if (!ch->month.paid[k].programme) {
            error_set(err, "cluster %s: a subsidy line without a programme", ch->cluster);
            return false;
        }
    return true;
}

/* Step 2 for one interval: priced under the version in force now, an
 * adjustment row when anything differs. Its old subsidy went back to the
 * caps in step 1. */
static void reprice_interval(struct engine *e, const struct cluster *c, struct cluster_state *cs,
                             const struct reprice_chunk *ch, const struct reprice_interval *in,
                             const struct tariff_version *v, const struct before *old,
                             struct reprice_effect *eff)
{
    struct closed_row *r = cs ? engine_find_row(cs, in->start_s) : NULL;
    if (r && r->revision < 0)
        r = NULL;
    int64_t kwh = r ? r->kwh_micro : in->kwh_micro;
    struct interval_money m;
    engine_interval_money(e, c, v, in->start_s, kwh, &m);
    int32_t year = m.year;
    enum period period = m.period;
    int64_t price = m.price_micro_cny, share = m.share_micro;
    int64_t energy = m.energy_cny4, surcharge = m.surcharge_cny4, net = m.net_cny4;
    struct subsidy sub = m.sub;

    struct engine_lines lines;
    engine_diff_lines(e, old->paid, old->n_paid, &sub, &lines);
    eff->intervals++;
    eff->kwh_micro += kwh;
    bool changed = energy != old->energy_charge_cny4 || surcharge != old->surcharge_cny4 ||
                   sub.total_cny4 != old->subsidy_cny4 || net != old->net_cny4 || lines.n;
    if (!changed) {
        if (r)
            engine_store_paid(e, &sub, r->paid, &r->n_paid);
        return;
    }
    struct billing_row row = {
        .cluster = c,
        .interval_start_s = in->start_s,
        .interval_end_s = in->start_s + e->interval_s,
        .month_day = ch->month_day,
        .year = year,
        .revision = old->revision + 1,
        .period = period,
        .kwh_micro = 0,
        .price_micro_cny = price,
        .surcharge_rate_micro_cny = v->surcharge_micro_cny,
        .energy_charge_cny4 = energy - old->energy_charge_cny4,
        .surcharge_cny4 = surcharge - old->surcharge_cny4,
        .subsidy_cny4 = sub.total_cny4 - old->subsidy_cny4,
        .net_cny4 = net - old->net_cny4,
        .domestic_share_micro = share,
        .programme = sub.n ? lines.programme : NULL,
        .tariff_version = v->label,
        .missing_s = 0,
        .n_lines = lines.n,
        .lines = lines.v,
    };
    if (r) {
        r->revision++;
        r->energy_charge_cny4 = energy;
        r->surcharge_cny4 = surcharge;
        r->subsidy_cny4 = sub.total_cny4;
        r->net_cny4 = net;
        engine_store_paid(e, &sub, r->paid, &r->n_paid);
    }
    e->stats.adjustment_rows++;
    reprice_effect_billing(eff, &row);
    if (e->sink.billing)
        e->sink.billing(e->sink.ctx, &row);
}

/* Step 3 for a month the engine no longer holds: its demand from the
 * ledger's interval rows, as engine_price_month prices a month it holds. */
static void reprice_ledger_month(struct engine *e, const struct cluster *c,
                                 const struct reprice_chunk *ch, int64_t month_start,
                                 int64_t month_end, struct reprice_effect *eff)
{
    const struct reprice_month *old = &ch->month;
    int64_t last_start = ch->intervals[ch->n_intervals - 1].start_s;
    const struct tariff_version *v = tariff_version_at(c->site->tariff, last_start);
    if (!v)
        return; /* its last interval was skipped as well */
    struct month_state ms = {
        .month_day = ch->month_day,
        .start_s = month_start,
        .end_s = month_end,
        .frozen_max_start_s = NONE,
        .last_row_start_s = last_start,
    };
    for (size_t i = 0; i < ch->n_intervals; i++)
        ms.kwh_micro += ch->intervals[i].kwh_micro;
    int64_t max_kw = 0, max_start = NONE;
    int64_t per_hour = 3600 / e->interval_s;
    int32_t offset = cluster_utc_offset_s(c);
    for (size_t i = 0; i < ch->n_intervals; i++) {
        const struct reprice_interval *in = &ch->intervals[i];
        if (!cluster_in_service_on(c, civil_local_day(in->start_s, offset)))
            continue; /* as month_max: the month's peak over its days in service */
        int64_t kw = engine_kw_of(in->kwh_micro, per_hour);
        if (max_start == NONE || kw > max_kw) { /* ties: the earlier, met first */
            max_kw = kw;
            max_start = in->start_s;
        }
    }
    struct month_demand md;
    engine_month_demand(c, v, &ms, max_kw, &md);
    int32_t year = engine_local_year(c, month_start);
    struct before before;
    ledger_before(e, old->revision, 0, 0, old->subsidy_cny4, old->net_cny4, old->paid, old->n_paid,
                  &before);
    engine_release_stored(e, c, year, before.paid, before.n_paid);
    int64_t share = cluster_domestic_share_micro(c, last_start);
    struct subsidy sub;
    price_subsidy(e->cfg, c, last_start, share, md.dc.charge_cny4, true, year, &e->caps, &sub);
    int64_t net = md.dc.charge_cny4 - sub.total_cny4;
    struct engine_lines lines;
    engine_diff_lines(e, before.paid, before.n_paid, &sub, &lines);
    bool changed = md.dc.charge_cny4 != old->charge_cny4 || sub.total_cny4 != old->subsidy_cny4 ||
                   net != old->net_cny4 || lines.n || max_kw != old->max_kw_micro ||
                   md.dc.billing_kw_micro != old->billing_kw_micro;
    free(before.paid);
    if (!changed)
        return;
    struct demand_row row = {
        .cluster = c,
        .month_day = ch->month_day,
        .year = year,
        .revision = old->revision + 1,
        .basis = v->demand_basis,
        .max_kw_micro = max_kw,
        .max_interval_start_s = max_start == NONE ? month_start : max_start,
        .billing_kw_micro = md.dc.billing_kw_micro,
        .charge_cny4 = md.dc.charge_cny4 - old->charge_cny4,
        .subsidy_cny4 = sub.total_cny4 - old->subsidy_cny4,
        .net_cny4 = net - old->net_cny4,
        .programme = sub.n ? lines.programme : NULL,
        .tariff_version = v->label,
        .prorated = md.prorated,
        .days_in_service = md.days_in_service,
        .n_runs = md.prorated ? md.n_runs : 0,
        .runs = md.runs,
        .n_lines = lines.n,
        .lines = lines.v,
    };
    e->stats.demand_rows++;
    reprice_effect_demand(eff, row.charge_cny4, row.subsidy_cny4, row.net_cny4);
    if (e->sink.demand)
        e->sink.demand(e->sink.ctx, &row);
}

/* Step 3 for a month the engine holds: priced again as a late sample
 * would have it, the change read off its sums. The peak of its final
 * intervals was kept when they became final, under the config then; their
 * kWh is in the chunk, so it is taken again over the days in service now
 * (the held intervals month_max reads itself). */
static void reprice_engine_month(struct engine *e, const struct cluster *c,
                                 struct cluster_state *cs, struct month_state *ms,
                                 const struct reprice_chunk *ch, struct reprice_effect *eff)
{
    int64_t per_hour = 3600 / e->interval_s;
    int32_t offset = cluster_utc_offset_s(c);
    int64_t max_kw = 0, max_start = NONE;
    for (size_t i = 0; i < ch->n_intervals; i++) {
        const struct reprice_interval *in = &ch->intervals[i];
        if (cs->frozen_until_s == NONE || in->start_s + e->interval_s > cs->frozen_until_s ||
            !cluster_in_service_on(c, civil_local_day(in->start_s, offset)))
            continue;
        int64_t kw = engine_kw_of(in->kwh_micro, per_hour);
        if (max_start == NONE || kw > max_kw) { /* ties: the earlier, met first */
            max_kw = kw;
            max_start = in->start_s;
        }
    }
    ms->frozen_max_kw_micro = max_kw;
    ms->frozen_max_start_s = max_start;
    int32_t revision = ms->revision;
    int64_t charge = ms->charge_cny4, subsidy = ms->subsidy_cny4, net = ms->net_cny4;
    engine_price_month(e, cs, ms);
    if (ms->revision == revision)
        return;
    reprice_effect_demand(eff, ms->charge_cny4 - charge, ms->subsidy_cny4 - subsidy,
                          ms->net_cny4 - net);
}

bool engine_reprice(struct engine *e, const struct reprice_chunk *ch, struct reprice_effect *eff,
                    struct error *err)
{
    if (e->hold) {
        error_set(err, "the yearly caps are not read back from the ledger yet");
        return false;
    }
    e->tick_all = true; /* rows and months change here, not by the tick's rules */
    const struct cluster *c = config_find_cluster(e->cfg, ch->cluster);
    if (!c) {
        error_set(err, "cluster %s is not in the config", ch->cluster);
        return false;
    }
    int32_t offset = cluster_utc_offset_s(c);
    struct civil_date d = civil_from_day(ch->month_day);
    if (d.day != 1) {
        error_set(err, "cluster %s: month day %" PRId32 " is not a first of a month", ch->cluster,
                  ch->month_day);
        return false;
    }
    int64_t month_start = civil_day_start_ts(ch->month_day, offset);
    int64_t month_end = civil_day_start_ts(civil_month_next(ch->month_day), offset);
    if (!chunk_valid(e, ch, month_start, month_end, err))
        return false;
    size_t ci = engine_find_cluster(e, ch->cluster);
    struct cluster_state *cs = ci == SIZE_MAX ? NULL : &e->clusters[ci];

    /* 1. What the repriced intervals hold goes back to the caps. */
    size_t n = ch->n_intervals;
    struct before *old = xcalloc(n ? n : 1, sizeof *old);
    const struct tariff_version **versions = xcalloc(n ? n : 1, sizeof *versions);
    for (size_t i = 0; i < n; i++) {
        const struct reprice_interval *in = &ch->intervals[i];
        if (!in->in_range)
            continue;
        versions[i] = tariff_version_at(c->site->tariff, in->start_s);
        if (!versions[i]) {
            eff->skipped++;
            continue;
        }
        struct closed_row *r = cs ? engine_find_row(cs, in->start_s) : NULL;
        if (r && r->revision >= 0)
            row_before(r, &old[i]);
        else
            ledger_before(e, in->revision, in->energy_charge_cny4, in->surcharge_cny4,
                          in->subsidy_cny4, in->net_cny4, in->paid, in->n_paid, &old[i]);
        engine_release_stored(e, c, engine_local_year(c, in->start_s), old[i].paid, old[i].n_paid);
    }
    /* 2. Each in time order, consuming the caps. */
    for (size_t i = 0; i < n; i++)
        if (versions[i])
            reprice_interval(e, c, cs, ch, &ch->intervals[i], versions[i], &old[i], eff);
    for (size_t i = 0; i < n; i++)
        free(old[i].paid);
    free(old);
    free(versions);
    /* 3. The month's demand, after its intervals. */
    struct month_state *ms = cs ? engine_find_month(cs, month_start) : NULL;
    if (ms) {
        if (ms->closed && ms->revision >= 0)
            reprice_engine_month(e, c, cs, ms, ch, eff);
    } else if (ch->month.has_row) {
        reprice_ledger_month(e, c, ch, month_start, month_end, eff);
    }
    return true;
}

void reprice_effect_add(struct reprice_effect *sum, const struct reprice_effect *e)
{
    sum->billing_rows += e->billing_rows;
    sum->demand_rows += e->demand_rows;
    sum->intervals += e->intervals;
    sum->skipped += e->skipped;
    sum->kwh_micro += e->kwh_micro;
    sum->energy_charge_cny4 += e->energy_charge_cny4;
    sum->surcharge_cny4 += e->surcharge_cny4;
    sum->demand_charge_cny4 += e->demand_charge_cny4;
    sum->subsidy_cny4 += e->subsidy_cny4;
    sum->net_cny4 += e->net_cny4;
}

void reprice_effect_billing(struct reprice_effect *eff, const struct billing_row *row)
{
    eff->billing_rows++;
    eff->energy_charge_cny4 += row->energy_charge_cny4;
    eff->surcharge_cny4 += row->surcharge_cny4;
    eff->subsidy_cny4 += row->subsidy_cny4;
    eff->net_cny4 += row->net_cny4;
}

void reprice_effect_demand(struct reprice_effect *eff, int64_t charge_cny4, int64_t subsidy_cny4,
                           int64_t net_cny4)
{
    eff->demand_rows++;
    eff->demand_charge_cny4 += charge_cny4;
    eff->subsidy_cny4 += subsidy_cny4;
    eff->net_cny4 += net_cny4;
}
