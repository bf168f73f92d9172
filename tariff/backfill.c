#include "backfill.h"

#include "civil.h"
#include "eligibility.h"
#include "engine_private.h"
#include "schedule.h"

#include <inttypes.h>
#include <stdio.h>

/* One interval of a cluster as measured: its last energy and its samples. */
struct measured {
    int64_t start_s;
    int64_t kwh_micro, missing_s;
    uint64_t samples;
    bool has_energy;
};

struct measured_cluster {
    struct measured *v; /* sorted by start_s */
    size_t n, cap;
    int64_t closed_until_s; /* NONE: nothing closed */
};

struct backfill_sums {
    const struct config *cfg;
    struct measured_cluster *clusters; /* by index in cfg->clusters */
};

struct backfill_sums *backfill_sums_new(const struct config *cfg)
{
    struct backfill_sums *b = xcalloc(1, sizeof *b);
    b->cfg = cfg;
    b->clusters = xcalloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof *b->clusters);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        b->clusters[i].closed_until_s = NONE;
    return b;
}

void backfill_sums_free(struct backfill_sums *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->cfg->n_clusters; i++)
        free(b->clusters[i].v);
    free(b->clusters);
    free(b);
}

/* The entry of start_s, created in order: intervals close mostly in time
 * order, so the usual case appends. */
static struct measured *entry(struct backfill_sums *b, const struct cluster *c, int64_t start_s)
{
    struct measured_cluster *mc = &b->clusters[c - b->cfg->clusters];
    size_t lo = 0, hi = mc->n;
    if (mc->n && mc->v[mc->n - 1].start_s < start_s) {
        lo = mc->n;
    } else {
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (mc->v[mid].start_s < start_s)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < mc->n && mc->v[lo].start_s == start_s)
            return &mc->v[lo];
    }
    ARRAY_RESERVE_ONE(mc->v, mc->n, mc->cap);
    memmove(&mc->v[lo + 1], &mc->v[lo], (mc->n - lo) * sizeof *mc->v);
    mc->n++;
    mc->v[lo] = (struct measured){.start_s = start_s};
    return &mc->v[lo];
}

void backfill_sums_energy(void *ctx, const struct cluster *c, int64_t start_s, int64_t kwh_micro,
                          int64_t missing_s)
{
    struct measured *m = entry(ctx, c, start_s);
    m->kwh_micro = kwh_micro;
    m->missing_s = missing_s;
    m->has_energy = true;
}

void backfill_sums_count(struct backfill_sums *b, const struct cluster *c, int64_t ts_ns)
{
    int64_t interval_s = b->cfg->daemon.interval_s;
    int64_t start_s = civil_floor_div(civil_floor_div(ts_ns, NS), interval_s) * interval_s;
    entry(b, c, start_s)->samples++;
}

bool backfill_sums_span(const struct backfill_sums *b, const struct cluster *c, int64_t *from_s,
                        int64_t *to_s)
{
    const struct measured_cluster *mc = &b->clusters[c - b->cfg->clusters];
    if (!mc->n)
        return false;
    *from_s = mc->v[0].start_s;
    *to_s = mc->v[mc->n - 1].start_s + b->cfg->daemon.interval_s;
    return true;
}

bool backfill_plan_has(const struct backfill_plan *p, const char *cluster, int64_t start_s)
{
    size_t lo = 0, hi = p->n_intervals;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->intervals[mid].cluster, cluster);
        if (c < 0 || (c == 0 && p->intervals[mid].start_s < start_s))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_intervals && strcmp(p->intervals[lo].cluster, cluster) == 0 &&
           p->intervals[lo].start_s == start_s;
}

void backfill_sums_finish(struct backfill_sums *b, const struct engine *measured)
{
    for (size_t i = 0; i < b->cfg->n_clusters; i++) {
        size_t ci = engine_find_cluster(measured, b->cfg->clusters[i].id);
        b->clusters[i].closed_until_s =
            ci == SIZE_MAX ? NONE : measured->clusters[ci].closed_until_s;
    }
}

const char *backfill_fate_name(enum backfill_fate f)
{
    switch (f) {
    case BACKFILL_WHOLE:
        return "whole";
    case BACKFILL_MERGED:
        return "merged";
    case BACKFILL_LEFT:
        return "left";
    }
    return "?";
}

static bool has_start(const int64_t *v, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

static bool has_day(const int32_t *v, size_t n, int32_t x)
{
    for (size_t i = 0; i < n; i++) /* a handful of months */
        if (v[i] == x)
            return true;
    return false;
}

/* The first local day of the month of start_s, and that month's end. */
static int32_t month_of(const struct cluster *c, int64_t start_s, int64_t *end_s)
{
    int32_t offset = cluster_utc_offset_s(c);
    int32_t first = civil_month_first(civil_local_day(start_s, offset));
    if (end_s)
        *end_s = civil_day_start_ts(civil_month_next(first), offset);
    return first;
}

static int by_cluster_id(const void *a, const void *b)
{
    const struct cluster *const *x = a, *const *y = b;
    return strcmp((*x)->id, (*y)->id);
}

void backfill_plan_build(const struct backfill_sums *b, const struct engine *live,
                         const struct backfill_ledger_keys *keys, size_t n_keys, int64_t now_ns,
                         struct backfill_plan *out, struct backfill_taken *taken)
{
    memset(out, 0, sizeof *out);
    memset(taken, 0, sizeof *taken);
    out->now_ns = now_ns;
    const struct config *cfg = b->cfg;
    const struct cluster **order = xcalloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof *order);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        order[i] = &cfg->clusters[i];
    qsort(order, cfg->n_clusters, sizeof *order, by_cluster_id);
    size_t cap_i = 0, cap_m = 0;
    for (size_t k = 0; k < cfg->n_clusters; k++) {
        const struct cluster *c = order[k];
        const struct measured_cluster *mc = &b->clusters[c - cfg->clusters];
        if (!mc->n)
            continue;
        const struct backfill_ledger_keys *lk = NULL;
        for (size_t i = 0; i < n_keys && !lk; i++)
            if (strcmp(keys[i].cluster, c->id) == 0)
                lk = &keys[i];
        size_t ci = engine_find_cluster(live, c->id);
        const struct cluster_state *cs = ci == SIZE_MAX ? NULL : &live->clusters[ci];
        int64_t live_from = cs ? engine_first_start(live, cs) : INT64_MAX;
        int32_t last_month = INT32_MIN;
        for (size_t i = 0; i < mc->n; i++) {
            const struct measured *m = &mc->v[i];
            bool in_ledger =
                lk && has_start(lk->interval_starts, lk->n_interval_starts, m->start_s);
            if (m->start_s >= live_from || in_ledger) {
                taken->intervals += m->has_energy;
                taken->samples += m->samples;
                continue;
            }
            if (!m->has_energy)
                continue;
            ARRAY_RESERVE_ONE(out->intervals, out->n_intervals, cap_i);
            out->intervals[out->n_intervals++] =
                (struct backfill_interval){c->id, m->start_s, m->kwh_micro, m->missing_s};
            int64_t month_end;
            int32_t month = month_of(c, m->start_s, &month_end);
            if (month == last_month)
                continue;
            last_month = month;
            enum backfill_fate fate;
            /* engine_find_month only reads; the engine is not changed. */
            if (cs && engine_find_month((struct cluster_state *)cs, m->start_s))
                fate = BACKFILL_MERGED;
            else if (lk && (has_day(lk->demand_months, lk->n_demand_months, month) ||
                            has_day(lk->row_months, lk->n_row_months, month)))
                fate = BACKFILL_LEFT;
            else if (month_end <= live_from && mc->closed_until_s != NONE &&
                     mc->closed_until_s >= month_end)
                fate = BACKFILL_WHOLE;
            else
                fate = BACKFILL_MERGED;
            ARRAY_RESERVE_ONE(out->months, out->n_months, cap_m);
            out->months[out->n_months++] = (struct backfill_month){c->id, month, fate};
        }
    }
    free(order);
}

void backfill_plan_free(struct backfill_plan *p)
{
    free(p->intervals);
    free(p->months);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ */
/* Applying a plan                                                     */

enum item_kind { ITEM_INTERVAL, ITEM_MONTH };

struct item {
    int64_t start_s;
    const char *cluster;
    enum item_kind kind;
    size_t index; /* into the plan's intervals or months */
};

static int item_order(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->start_s != y->start_s)
        return x->start_s < y->start_s ? -1 : 1;
    int c = strcmp(x->cluster, y->cluster);
    if (c)
        return c;
    return (x->kind > y->kind) - (x->kind < y->kind);
}

static size_t find_plan_month(const struct backfill_plan *p, const char *cluster, int32_t month)
{
    size_t lo = 0, hi = p->n_months;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->months[mid].cluster, cluster);
        if (c < 0 || (c == 0 && p->months[mid].month_day < month))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_months && strcmp(p->months[lo].cluster, cluster) == 0 &&
                   p->months[lo].month_day == month
               ? lo
               : SIZE_MAX;
}

/* 0001-01-01 and 9999-12-31 UTC: the civil calendar's range. */
#define PLAUSIBLE_FROM_S (-62135596800LL)
#define PLAUSIBLE_TO_S   253402214400LL

static bool intervals_fit(struct engine *e, const struct backfill_plan *p, size_t *month_at,
                          bool *used, struct error *err);

/* Everything engine_backfill checks before it changes anything; *month_of
 * gets each interval's plan month. */
static bool plan_fits(struct engine *e, const struct backfill_plan *p, size_t *month_at,
                      struct error *err)
{
    if (!engine_caps_known(e) && engine_waiting_for_caps(e)) {
        error_set(err, "the yearly caps are not known yet");
        return false;
    }
    for (size_t i = 0; i < p->n_months; i++) {
        const struct backfill_month *m = &p->months[i];
        if (i && (strcmp(p->months[i - 1].cluster, m->cluster) > 0 ||
                  (strcmp(p->months[i - 1].cluster, m->cluster) == 0 &&
                   p->months[i - 1].month_day >= m->month_day))) {
            error_set(err, "the plan's months are out of order at %s", m->cluster);
            return false;
        }
        if ((unsigned)m->fate > BACKFILL_LEFT) {
            error_set(err, "month of %s: unknown fate %d", m->cluster, (int)m->fate);
            return false;
        }
        if (!config_find_cluster(e->cfg, m->cluster)) {
            error_set(err, "cluster %s is not in the config", m->cluster);
            return false;
        }
    }
    bool *used = xcalloc(p->n_months + 1, sizeof *used);
    bool ok = intervals_fit(e, p, month_at, used, err);
    for (size_t i = 0; ok && i < p->n_months; i++)
        if (!used[i]) {
            error_set(err, "month of %s: no interval of the plan is in it", p->months[i].cluster);
            ok = false;
        }
    free(used);
    return ok;
}

/* plan_fits for the intervals: each of a cluster in the config, on the
 * grid, later than the one before it of its cluster, at a plausible time
 * (a year of 0001-9999), with a tariff version, before the live data, in
 * a month of the plan (marked in used). */
static bool intervals_fit(struct engine *e, const struct backfill_plan *p, size_t *month_at,
                          bool *used, struct error *err)
{
    for (size_t i = 0; i < p->n_intervals; i++) {
        const struct backfill_interval *in = &p->intervals[i];
        const struct cluster *c = config_find_cluster(e->cfg, in->cluster);
        if (!c) {
            error_set(err, "cluster %s is not in the config", in->cluster);
            return false;
        }
        if (in->start_s < PLAUSIBLE_FROM_S || in->start_s > PLAUSIBLE_TO_S) {
            error_set(err, "cluster %s: %" PRId64 " is not a plausible time", c->id, in->start_s);
            return false;
        }
        if (i && (strcmp(p->intervals[i - 1].cluster, in->cluster) > 0 ||
                  (strcmp(p->intervals[i - 1].cluster, in->cluster) == 0 &&
                   p->intervals[i - 1].start_s >= in->start_s))) {
            error_set(err,
                      "cluster %s: the plan's intervals are out of order or repeated at %" PRId64,
                      c->id, in->start_s);
            return false;
        }
        if (civil_floor_div(in->start_s, e->interval_s) * e->interval_s != in->start_s) {
            error_set(err, "cluster %s: %" PRId64 " is not the start of an interval", c->id,
                      in->start_s);
            return false;
        }
        if (!tariff_version_at(c->site->tariff, in->start_s)) {
            error_set(err, "cluster %s: no tariff version at %" PRId64, c->id, in->start_s);
            return false;
        }
        size_t ci = engine_find_cluster(e, c->id);
        if (ci != SIZE_MAX && in->start_s >= engine_first_start(e, &e->clusters[ci])) {
            error_set(err, "cluster %s: the interval at %" PRId64 " is live data's", c->id,
                      in->start_s);
            return false;
        }
        month_at[i] = find_plan_month(p, c->id, month_of(c, in->start_s, NULL));
        if (month_at[i] == SIZE_MAX) {
            error_set(err, "cluster %s: the plan has no month for %" PRId64, c->id, in->start_s);
            return false;
        }
        used[month_at[i]] = true;
        if (p->months[month_at[i]].fate == BACKFILL_WHOLE && ci != SIZE_MAX &&
            engine_find_month(&e->clusters[ci], in->start_s)) {
            error_set(err, "cluster %s: a whole month the engine holds", c->id);
            return false;
        }
    }
    return true;
}

/* Adds a priced interval to the month that carries its demand. */
static void month_take(const struct engine *e, const struct cluster *c, struct month_state *ms,
                       const struct backfill_interval *in)
{
    ms->kwh_micro += in->kwh_micro;
    if (ms->last_row_start_s == NONE || ms->last_row_start_s < in->start_s)
        ms->last_row_start_s = in->start_s;
    /* Over the days in service, as the engine's month_max. */
    if (!cluster_in_service_on(c, civil_local_day(in->start_s, cluster_utc_offset_s(c))))
        return;
    int64_t kw = engine_kw_of(in->kwh_micro, 3600 / e->interval_s);
    if (ms->frozen_max_start_s == NONE || kw > ms->frozen_max_kw_micro ||
        (kw == ms->frozen_max_kw_micro && in->start_s < ms->frozen_max_start_s)) {
        ms->frozen_max_kw_micro = kw;
        ms->frozen_max_start_s = in->start_s;
    }
}

static void bill(struct engine *e, const struct cluster *c, const struct backfill_interval *in,
                 int32_t month_day, struct reprice_effect *eff)
{
    const struct tariff_version *v = tariff_version_at(c->site->tariff, in->start_s);
    struct interval_money m;
    engine_interval_money(e, c, v, in->start_s, in->kwh_micro, &m);
    struct engine_lines lines;
    engine_diff_lines(e, NULL, 0, &m.sub, &lines);
    struct billing_row row = {
        .cluster = c,
        .interval_start_s = in->start_s,
        .interval_end_s = in->start_s + e->interval_s,
        .month_day = month_day,
        .year = m.year,
        .revision = 0,
        .period = m.period,
        .kwh_micro = in->kwh_micro,
        .price_micro_cny = m.price_micro_cny,
        .surcharge_rate_micro_cny = v->surcharge_micro_cny,
        .energy_charge_cny4 = m.energy_cny4,
        .surcharge_cny4 = m.surcharge_cny4,
        .subsidy_cny4 = m.sub.total_cny4,
        .net_cny4 = m.net_cny4,
        .domestic_share_micro = m.share_micro,
        .programme = m.sub.n ? lines.programme : NULL,
        .tariff_version = v->label,
        .missing_s = in->missing_s,
        .n_lines = lines.n,
        .lines = lines.v,
    };
    e->stats.billing_rows++;
    eff->intervals++;
    eff->kwh_micro += row.kwh_micro;
    reprice_effect_billing(eff, &row);
    if (e->sink.billing)
        e->sink.billing(e->sink.ctx, &row);
}

/* Prices ms (its demand) and adds the row it made, if any, to eff. */
static void price_demand_of(struct engine *e, struct cluster_state *cs, struct month_state *ms,
                            bool close, struct reprice_effect *eff)
{
    int32_t revision = ms->revision;
    int64_t charge = revision >= 0 ? ms->charge_cny4 : 0;
    int64_t subsidy = revision >= 0 ? ms->subsidy_cny4 : 0;
    int64_t net = revision >= 0 ? ms->net_cny4 : 0;
    if (close) {
        engine_close_month_at(e, cs, ms->end_s - e->interval_s);
        ms = engine_find_month(cs, ms->start_s); /* the same month */
    } else {
        ms->dirty = false;
        engine_price_month(e, cs, ms);
    }
    if (!ms || ms->revision == revision)
        return;
    reprice_effect_demand(eff, ms->charge_cny4 - charge, ms->subsidy_cny4 - subsidy,
                          ms->net_cny4 - net);
}

bool engine_backfill(struct engine *e, const struct backfill_plan *p,
                     struct reprice_effect *effects, struct error *err)
{
    e->tick_all = true; /* final history changes here, not by the tick's rules */
    size_t *month_at = xcalloc(p->n_intervals ? p->n_intervals : 1, sizeof *month_at);
    if (!plan_fits(e, p, month_at, err)) {
        free(month_at);
        return false;
    }
    struct reprice_effect *eff = effects;
    if (!eff)
        eff = xcalloc(p->n_months ? p->n_months : 1, sizeof *eff);
    else if (p->n_months)
        memset(eff, 0, p->n_months * sizeof *eff);

    /* The WHOLE months, apart from the engine's: their demand is priced at
     * their last interval and they are then forgotten. */
    struct month_state *whole = xcalloc(p->n_months ? p->n_months : 1, sizeof *whole);
    size_t n_items = p->n_intervals;
    for (size_t i = 0; i < p->n_months; i++) {
        const struct backfill_month *pm = &p->months[i];
        const struct cluster *c = config_find_cluster(e->cfg, pm->cluster);
        int32_t offset = c ? cluster_utc_offset_s(c) : 0;
        whole[i].month_day = pm->month_day;
        whole[i].start_s = civil_day_start_ts(pm->month_day, offset);
        if (c)
            month_of(c, whole[i].start_s, &whole[i].end_s);
        whole[i].revision = -1;
        whole[i].frozen_max_start_s = NONE;
        whole[i].last_row_start_s = NONE;
        n_items += pm->fate == BACKFILL_WHOLE;
    }
    struct item *items = xcalloc(n_items ? n_items : 1, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < p->n_intervals; i++)
        items[n++] =
            (struct item){p->intervals[i].start_s, p->intervals[i].cluster, ITEM_INTERVAL, i};
    /* A month closes after its last interval of the grid, as live ones
     * do, whether or not the history has that interval. */
    for (size_t i = 0; i < p->n_months; i++)
        if (p->months[i].fate == BACKFILL_WHOLE)
            items[n++] =
                (struct item){whole[i].end_s - e->interval_s, p->months[i].cluster, ITEM_MONTH, i};
    qsort(items, n, sizeof *items, item_order);

    for (size_t k = 0; k < n; k++) {
        const struct item *it = &items[k];
        const struct cluster *c = config_find_cluster(e->cfg, it->cluster);
        size_t ci = engine_cluster_index(e, c->id);
        struct cluster_state *cs = &e->clusters[ci];
        if (it->kind == ITEM_MONTH) {
            struct month_state *ms = &whole[it->index];
            price_demand_of(e, cs, ms, false, &eff[it->index]);
            continue;
        }
        const struct backfill_interval *in = &p->intervals[it->index];
        size_t mi = month_at[it->index];
        const struct backfill_month *pm = &p->months[mi];
        bill(e, c, in, pm->month_day, &eff[mi]);
        struct month_state *ms = NULL;
        if (pm->fate == BACKFILL_WHOLE) {
            ms = &whole[mi];
        } else if (pm->fate == BACKFILL_MERGED) {
            ms = engine_month_for(cs, in->start_s);
            if (ms->closed)
                ms->dirty = true;
        }
        if (ms)
            month_take(e, c, ms, in);
    }

    /* The MERGED months, once all their intervals are in. */
    for (size_t i = 0; i < p->n_months; i++) {
        const struct backfill_month *pm = &p->months[i];
        if (pm->fate != BACKFILL_MERGED)
            continue;
        const struct cluster *c = config_find_cluster(e->cfg, pm->cluster);
        size_t ci = engine_cluster_index(e, c->id); /* may move e->clusters */
        struct cluster_state *cs = &e->clusters[ci];
        struct month_state *ms =
            engine_find_month(cs, civil_day_start_ts(pm->month_day, cluster_utc_offset_s(c)));
        if (!ms)
            continue;
        int64_t live_from = engine_first_start(e, cs);
        bool live_past = cs->closed_until_s != NONE && ms->end_s <= cs->closed_until_s;
        bool history = ms->end_s <= live_from && ms->end_s <= civil_floor_div(p->now_ns, NS);
        if (ms->closed && ms->dirty)
            price_demand_of(e, cs, ms, false, &eff[i]);
        else if (!ms->closed && (live_past || history))
            price_demand_of(e, cs, ms, true, &eff[i]);
    }

    /* The backfilled span is final, to the end of its last whole month
     * (whose demand row is made): a live sample in it is quarantined. */
    for (size_t i = 0; i < p->n_intervals; i++) {
        const struct backfill_interval *in = &p->intervals[i];
        struct cluster_state *cs = &e->clusters[engine_find_cluster(e, in->cluster)];
        const struct month_state *w = &whole[month_at[i]];
        int64_t end_s =
            p->months[month_at[i]].fate == BACKFILL_WHOLE ? w->end_s : in->start_s + e->interval_s;
        if (cs->frozen_until_s == NONE || cs->frozen_until_s < end_s)
            cs->frozen_until_s = end_s;
    }
    free(items);
    free(whole);
    free(month_at);
    if (!effects)
        free(eff);
    return true;
}
