/*
 * How an interval closes, and how it is priced again.
 *
 * A cluster's intervals close in order: closed_until_s only moves forward.
 * Its target is the smallest boundary every non-silent meter has passed
 * (floor of its last timestamp); when every meter is silent, the end of
 * the interval holding the last sample of any meter. Closing an interval
 * that some meter's span [first, last] overlaps prices it and emits a row.
 *
 * Each advance of closed_until_s is remembered with its wall-clock time;
 * once late_window has passed, intervals up to it are final
 * (frozen_until_s): their money is forgotten and their samples, but one
 * neighbour, dropped. A sample that lands in a final interval is
 * quarantined; one that lands between final and closed re-prices the
 * closed intervals its segments touch and emits adjustments.
 *
 * Intervals closed by one event (a sample, a tick, the end of input) are
 * priced in order of interval start, then cluster id, so caps are consumed
 * in a reproducible order; a month's demand row comes right after the last
 * interval of that month.
 */
#include "engine.h"

#include "civil.h"
#include "decimal.h"
#include "eligibility.h"
#include "sample_mem.h"
#include "schedule.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"

/* ------------------------------------------------------------------ */

const char *engine_intern(struct engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_names; i++)
        if (strcmp(e->names[i], name) == 0)
            return e->names[i];
    ARRAY_RESERVE_ONE(e->names, e->n_names, e->cap_names);
    return e->names[e->n_names++] = xstrdup(name);
}

/* Eight bytes at a time: this runs once per sample. */
static uint64_t hash_mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    size_t n = strlen(s);
    h = hash_mix(h, n);
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = hash_mix(h, v);
    }
    uint64_t tail = 0;
    memcpy(&tail, s, n);
    return hash_mix(h, tail);
}

static uint64_t hash_meter_name(const char *meter)
{
    return hash_str(0x243F6A8885A308D3ULL, meter);
}

/* The meter table is per cluster: a request's lines for one cluster then
 * look up in one small table that stays in cache, where one table of a
 * million meters missed the cache on nearly every sample. */
static struct meter_state *find_meter(const struct engine *e, const char *cluster,
                                      const char *meter)
{
    size_t ci = engine_find_cluster(e, cluster);
    if (ci == SIZE_MAX)
        return NULL;
    const struct cluster_state *cs = &e->clusters[ci];
    if (!cs->table_size)
        return NULL;
    size_t mask = cs->table_size - 1;
    uint64_t h = hash_meter_name(meter);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct meter_slot *slot = &cs->table[i];
        if (!slot->index)
            return NULL;
        if (slot->tag != (uint32_t)(h >> 32))
            continue;
        struct meter_state *m = &e->meters[slot->index - 1];
        if (strcmp(meter_name(m), meter) == 0)
            return m;
    }
}

static void table_insert(struct engine *e, struct cluster_state *cs, size_t index)
{
    size_t mask = cs->table_size - 1;
    uint64_t h = hash_meter_name(meter_name(&e->meters[index]));
    size_t i = h & mask;
    while (cs->table[i].index)
        i = (i + 1) & mask;
    cs->table[i] = (struct meter_slot){(uint32_t)(h >> 32), (uint32_t)(index + 1)};
}

/* Keeps the cluster's meter table at most half full for the meter about to
 * be added. */
static void table_grow(struct engine *e, struct cluster_state *cs)
{
    if ((cs->n_meters + 1) * 2 <= cs->table_size)
        return;
    free(cs->table);
    cs->table_size = cs->table_size ? cs->table_size * 2 : 16;
    cs->table = xcalloc(cs->table_size, sizeof *cs->table);
    for (size_t i = 0; i < cs->n_meters; i++)
        table_insert(e, cs, cs->meters[i]);
}

static uint64_t hash_cluster_id(const char *id)
{
    return hash_str(0x13198A2E03707344ULL, id);
}

/* When cluster c's first tariff version starts: INT64_MAX for a cluster
 * the config no longer has (NULL). */
static int64_t first_tariff_from_s(const struct cluster *c)
{
    return c ? c->site->tariff->versions[0]->from_ts_s : INT64_MAX;
}

static void cluster_table_insert(struct engine *e, size_t index)
{
    size_t mask = e->cluster_table_size - 1;
    size_t i = hash_cluster_id(e->clusters[index].id) & mask;
    while (e->cluster_table[i])
        i = (i + 1) & mask;
    e->cluster_table[i] = (uint32_t)(index + 1);
}

size_t engine_find_cluster(const struct engine *e, const char *id)
{
    if (!e->cluster_table_size)
        return SIZE_MAX;
    size_t mask = e->cluster_table_size - 1;
    for (size_t i = hash_cluster_id(id) & mask;; i = (i + 1) & mask) {
        uint32_t v = e->cluster_table[i];
        if (!v)
            return SIZE_MAX;
        if (strcmp(e->clusters[v - 1].id, id) == 0)
            return v - 1;
    }
}

size_t engine_cluster_index(struct engine *e, const char *id)
{
    size_t found = engine_find_cluster(e, id);
    if (found != SIZE_MAX)
        return found;
    if ((e->n_clusters + 1) * 2 > e->cluster_table_size) {
        free(e->cluster_table);
        e->cluster_table_size = e->cluster_table_size ? e->cluster_table_size * 2 : 256;
        e->cluster_table = xcalloc(e->cluster_table_size, sizeof *e->cluster_table);
        for (size_t i = 0; i < e->n_clusters; i++)
            cluster_table_insert(e, i);
    }
    ARRAY_RESERVE_ONE(e->clusters, e->n_clusters, e->cap_clusters);
    struct cluster_state *cs = &e->clusters[e->n_clusters];
    memset(cs, 0, sizeof *cs);
    cs->id = xstrdup(id);
    cs->cfg = config_find_cluster(e->cfg, id);
    cs->tariff_from_s = first_tariff_from_s(cs->cfg);
    cs->closed_until_s = NONE;
    cs->frozen_until_s = NONE;
    cs->due_at_ns = INT64_MAX;
    cluster_table_insert(e, e->n_clusters);
    return e->n_clusters++;
}

struct meter_state *engine_add_meter(struct engine *e, const char *cluster, const char *meter,
                                     bool counter)
{
    size_t ci = engine_cluster_index(e, cluster);
    if (e->n_meters >= UINT32_MAX - 1) /* the heard list's links are 32 bits */
        abort();
    if (e->n_meters == e->cap_meters) {
        size_t cap = e->cap_meters ? 2 * e->cap_meters : 8;
        e->meters = xrealloc_huge_array(e->meters, e->n_meters, cap, sizeof *e->meters);
        e->cap_meters = cap;
    }
    size_t index = e->n_meters++;
    struct meter_state *m = &e->meters[index];
    memset(m, 0, sizeof *m);
    size_t cluster_len = strlen(cluster), meter_len = strlen(meter);
    char *key = m->key_small;
    if (cluster_len + meter_len + 2 > sizeof m->key_small)
        key = m->key_heap = xmalloc(cluster_len + meter_len + 2);
    memcpy(key, cluster, cluster_len + 1);
    memcpy(key + cluster_len + 1, meter, meter_len + 1);
    m->name_offset = (uint16_t)(cluster_len + 1);
    m->cluster = ci;
    m->counter = counter;
    m->first_ns = NONE;
    m->last_ns = NONE;
    m->last_arrival_ns = NONE;
    struct cluster_state *cs = &e->clusters[ci];
    table_grow(e, cs);
    table_insert(e, cs, index);
    ARRAY_RESERVE_ONE(cs->meters, cs->n_meters, cs->cap_meters);
    cs->meters[cs->n_meters++] = index;
    e->stats.meters = e->n_meters;
    return m;
}

/* ------------------------------------------------------------------ */
/* What a tick looks at                                                */

/* A tick marks silent the meters not heard from for grace, then closes
 * what that, the clock and the pushes since the last tick let close
 * (close_all has the rules). It looks only where something may have
 * changed, so that a tick with nothing to do costs next to nothing at a
 * million meters:
 *
 * - meters: the heard list holds those not silent, by last arrival, so
 *   the ones to silence are at its head, and the first one heard from
 *   within grace ends the walk;
 * - clusters: those a push or a silence touched since the last tick (the
 *   tick set), and those whose deadline has come (e->due): the first close
 *   mark becoming final (freeze), or, in a cluster with no meter active, a
 *   month ending by the clock. Every other cluster would do nothing in
 *   close_all: what its closes and recloses depend on (its meters' last
 *   samples and silences) is as it was when it was last looked at, and
 *   nothing since made a deadline earlier. (A request's recloses may give
 *   a month its first row, but only in a cluster a push just made active:
 *   its months count for the clock once a silence, which touches it,
 *   leaves it with no active meter.)
 *
 * A reload, a load, a reprice, a backfill and the end of input set
 * tick_all: the next tick looks at every cluster, as close_all does, and
 * schedules every deadline afresh.
 *
 * The list is built (sorted) at an engine's first tick and kept by pushes
 * from then on. A push whose arrival is not the latest (the wall clock
 * stepped back) walks back from the tail to its place, but only a few
 * steps: further than that the list is dropped (heard_stale), and ticks
 * walk every meter for silence, as they all did before, until the clock
 * has passed every arrival again and a tick builds the list anew. So a
 * step back costs what ticks cost before, not a walk per push over every
 * meter heard from since. */

static uint32_t meter_link(const struct engine *e, const struct meter_state *m)
{
    return (uint32_t)(m - e->meters) + 1;
}

static void heard_unlink(struct engine *e, struct meter_state *m)
{
    uint32_t prev = m->heard_prev, next = m->heard_next;
    if (prev)
        e->meters[prev - 1].heard_next = next;
    else
        e->heard_head = next;
    if (next)
        e->meters[next - 1].heard_prev = prev;
    else
        e->heard_tail = prev;
    m->heard_prev = m->heard_next = 0;
}

#define HEARD_STEPS_BACK 16

/* Links m in by its last_arrival_ns: at the tail, unless the clock went
 * back (then after the last meter heard from no later), or drops the list
 * when that is more than HEARD_STEPS_BACK meters back. */
static void heard_insert(struct engine *e, struct meter_state *m)
{
    uint32_t after = e->heard_tail;
    for (int steps = 0; after && e->meters[after - 1].last_arrival_ns > m->last_arrival_ns;
         steps++) {
        if (steps == HEARD_STEPS_BACK) {
            e->heard_stale = true;
            return;
        }
        after = e->meters[after - 1].heard_prev;
    }
    uint32_t at = meter_link(e, m);
    uint32_t next = after ? e->meters[after - 1].heard_next : e->heard_head;
    m->heard_prev = after;
    m->heard_next = next;
    if (after)
        e->meters[after - 1].heard_next = at;
    else
        e->heard_head = at;
    if (next)
        e->meters[next - 1].heard_prev = at;
    else
        e->heard_tail = at;
}

static int heard_order(const void *a, const void *b, void *ctx)
{
    const struct engine *e = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int64_t tx = e->meters[x - 1].last_arrival_ns, ty = e->meters[y - 1].last_arrival_ns;
    if (tx != ty)
        return tx < ty ? -1 : 1;
    return (x > y) - (x < y);
}

/* The heard list from the meters' silences and arrivals. */
static void heard_build(struct engine *e)
{
    uint32_t *order = xrealloc_array(NULL, e->n_meters ? e->n_meters : 1, sizeof *order);
    size_t n = 0;
    for (size_t i = 0; i < e->n_meters; i++) {
        struct meter_state *m = &e->meters[i];
        m->heard_prev = m->heard_next = 0;
        if (!m->silent && m->last_arrival_ns != NONE)
            order[n++] = meter_link(e, m);
    }
    if (n > 1)
        qsort_r(order, n, sizeof *order, heard_order, e);
    e->heard_head = n ? order[0] : 0;
    e->heard_tail = n ? order[n - 1] : 0;
    for (size_t i = 0; i < n; i++) {
        struct meter_state *m = &e->meters[order[i] - 1];
        m->heard_prev = i > 0 ? order[i - 1] : 0;
        m->heard_next = i + 1 < n ? order[i + 1] : 0;
    }
    free(order);
    e->heard_stale = false;
}

/* Cluster ci is for the next tick to look at. */
static void tick_touch(struct engine *e, size_t ci)
{
    struct cluster_state *cs = &e->clusters[ci];
    if (cs->in_tick)
        return;
    cs->in_tick = true;
    ARRAY_RESERVE_ONE(e->tick_set, e->n_tick_set, e->cap_tick_set);
    e->tick_set[e->n_tick_set++] = ci;
}

/* ------------------------------------------------------------------ */
/* Interval arithmetic (seconds, aligned to the epoch)                 */

static int64_t floor_boundary(const struct engine *e, int64_t ts_ns)
{
    return civil_floor_div(civil_floor_div(ts_ns, NS), e->interval_s) * e->interval_s;
}

static int64_t ceil_boundary(const struct engine *e, int64_t ts_ns)
{
    int64_t f = floor_boundary(e, ts_ns);
    return (int64_t)f * NS == ts_ns ? f : f + e->interval_s;
}

static bool covered(const struct engine *e, const struct cluster_state *cs, int64_t start_s)
{
    int64_t a = start_s * NS, b = (start_s + e->interval_s) * NS;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        /* A span of one instant overlaps nothing (docs/design.md section 4). */
        if (m->first_ns < m->last_ns && m->first_ns < b && m->last_ns > a)
            return true;
    }
    return false;
}

/* The most energy one interval of a cluster can bill: 1e9 kWh (scale 6). */
#define INTERVAL_KWH_MICRO_MAX ((int64_t)1000000000 * 1000000)

static void integrate(const struct engine *e, const struct cluster_state *cs, int64_t start_s,
                      int64_t *kwh_micro, int64_t *missing_s)
{
    int64_t a = start_s * NS, b = (start_s + e->interval_s) * NS;
    int64_t max_gap_ns = e->cfg->daemon.max_gap_s * NS;
    double kwh = 0;
    int64_t missing_ns = 0;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        if (m->first_ns < b && m->last_ns > a)
            meter_integrate(&m->buf, m->counter, a, b, max_gap_ns, &kwh, &missing_ns);
    }
    /* Half-even to 6 decimals: llrint rounds ties to even in the default
     * rounding mode. */
    /* An interval of more than INTERVAL_KWH_MAX is nonsense (a counter
     * jumping by 1e15 kWh, many meters at their limits): saturate there, so
     * that a month of such intervals (8,928 of 5 minutes) still sums inside
     * int64 rather than wrapping. */
    double micro = kwh * 1e6;
    *kwh_micro = micro >= INTERVAL_KWH_MICRO_MAX    ? INTERVAL_KWH_MICRO_MAX
                 : micro <= -INTERVAL_KWH_MICRO_MAX ? -INTERVAL_KWH_MICRO_MAX
                                                    : llrint(micro);
    *missing_s = decimal_div_half_even(missing_ns, NS);
}

/* ------------------------------------------------------------------ */
/* Rows and months of a cluster                                        */

static struct closed_row *find_row(struct cluster_state *cs, int64_t start_s)
{
    size_t lo = 0, hi = cs->n_rows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cs->rows[mid].start_s < start_s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < cs->n_rows && cs->rows[lo].start_s == start_s ? &cs->rows[lo] : NULL;
}

/* Inserts a row for each of starts[0..n) (ascending, none in cs->rows):
 * merged from the back in one pass, so n rows cost the rows once, not n
 * times over. */
static void insert_rows(struct cluster_state *cs, const int64_t *starts, size_t n)
{
    size_t old = cs->n_rows;
    ARRAY_RESERVE(cs->rows, cs->n_rows, cs->cap_rows, n);
    size_t i = old, j = n, out = old + n;
    while (j > 0) {
        if (i > 0 && cs->rows[i - 1].start_s > starts[j - 1]) {
            cs->rows[--out] = cs->rows[--i];
        } else {
            struct closed_row *r = &cs->rows[--out];
            memset(r, 0, sizeof *r);
            r->start_s = starts[--j];
            r->revision = -1; /* no revision emitted yet */
        }
    }
    cs->n_rows = old + n;
}

static struct month_state *find_month(struct cluster_state *cs, int64_t start_s)
{
    for (size_t i = 0; i < cs->n_months; i++)
        if (cs->months[i].start_s <= start_s && start_s < cs->months[i].end_s)
            return &cs->months[i];
    return NULL;
}

static struct month_state *month_for(struct cluster_state *cs, int64_t start_s)
{
    struct month_state *ms = find_month(cs, start_s);
    if (ms)
        return ms;
    int32_t offset = cluster_utc_offset_s(cs->cfg);
    int32_t first = civil_month_first(civil_local_day(start_s, offset));
    ARRAY_RESERVE_ONE(cs->months, cs->n_months, cs->cap_months);
    size_t i = cs->n_months;
    while (i > 0 && cs->months[i - 1].start_s > start_s)
        i--;
    memmove(&cs->months[i + 1], &cs->months[i], (cs->n_months - i) * sizeof *cs->months);
    cs->n_months++;
    ms = &cs->months[i];
    memset(ms, 0, sizeof *ms);
    ms->month_day = first;
    ms->start_s = civil_day_start_ts(first, offset);
    ms->end_s = civil_day_start_ts(civil_month_next(first), offset);
    ms->frozen_max_start_s = NONE;
    ms->last_row_start_s = NONE;
    ms->revision = -1;
    return ms;
}

static int32_t local_year(const struct cluster *c, int64_t ts_s)
{
    return civil_from_day(civil_local_day(ts_s, cluster_utc_offset_s(c))).year;
}

/* Returns stored subsidy amounts to the caps by programme name, so it
 * works across reloads. */
static void release_stored(struct engine *e, const struct cluster *c, int32_t year,
                           const struct stored_paid *paid, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < e->caps.n; k++) {
            struct cap_entry *ce = &e->caps.v[k];
            if (ce->year == year && strcmp(ce->programme, paid[i].programme) == 0 &&
                strcmp(ce->tenant, c->tenant->id) == 0)
                ce->consumed_cny4 -= paid[i].amount_cny4;
        }
}

/* The per-programme change from `old` to `new`, and the comma list of
 * those that paid in `new` (struct lines: engine_private.h). */
static void diff_lines(struct engine *e, const struct stored_paid *old, size_t n_old,
                       const struct subsidy *new, struct engine_lines *out)
{
    out->n = 0;
    out->programme[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < new->n; i++) {
        const char *name = engine_intern(e, new->paid[i].programme->id);
        int64_t before = 0;
        for (size_t k = 0; k < n_old; k++)
            if (old[k].programme == name)
                before = old[k].amount_cny4;
        if (new->paid[i].amount_cny4 != before)
            out->v[out->n++] = (struct paid_line){name, new->paid[i].amount_cny4 - before};
        len += (size_t)snprintf(out->programme + len, sizeof out->programme - len, "%s%s",
                                len ? "," : "", name);
    }
    for (size_t k = 0; k < n_old; k++) {
        bool still = false;
        for (size_t i = 0; i < new->n; i++)
            still |= strcmp(new->paid[i].programme->id, old[k].programme) == 0;
        if (!still && old[k].amount_cny4 != 0)
            out->v[out->n++] = (struct paid_line){old[k].programme, -old[k].amount_cny4};
    }
}

static void store_paid(struct engine *e, const struct subsidy *s, struct stored_paid *paid,
                       size_t *n)
{
    *n = s->n;
    for (size_t i = 0; i < s->n; i++)
        paid[i] = (struct stored_paid){engine_intern(e, s->paid[i].programme->id),
                                       s->paid[i].amount_cny4};
}

static void price_month(struct engine *e, struct cluster_state *cs, struct month_state *ms);

void engine_interval_money(struct engine *e, const struct cluster *c,
                           const struct tariff_version *v, int64_t start_s, int64_t kwh_micro,
                           struct interval_money *out)
{
    out->year = local_year(c, start_s);
    out->period = tariff_period_at(v, start_s);
    out->price_micro_cny = tariff_price_micro_cny(v, out->period);
    out->share_micro = cluster_domestic_share_micro(c, start_s);
    out->energy_cny4 = price_charge_cny4(kwh_micro, out->price_micro_cny);
    out->surcharge_cny4 = price_charge_cny4(kwh_micro, v->surcharge_micro_cny);
    price_subsidy(e->cfg, c, start_s, out->share_micro, out->energy_cny4, false, out->year,
                  &e->caps, &out->sub);
    out->net_cny4 = out->energy_cny4 + out->surcharge_cny4 - out->sub.total_cny4;
}

/* Prices interval start_s of cs from its samples and emits a row: revision
 * 0, or an adjustment against what its earlier revisions said. An engine
 * whose sink has `energy` only measures: the interval's sums go there. */
static void price_interval(struct engine *e, struct cluster_state *cs, int64_t start_s)
{
    const struct cluster *c = cs->cfg;
    /* keeps_row says when this returns before finding its row. */
    const struct tariff_version *v = tariff_version_at(c->site->tariff, start_s);
    if (!v)
        return; /* samples before the first version were quarantined */
    int64_t kwh_micro, missing_s;
    integrate(e, cs, start_s, &kwh_micro, &missing_s);
    if (e->sink.energy) {
        e->sink.energy(e->sink.ctx, c, start_s, kwh_micro, missing_s);
        return;
    }

    struct closed_row *r = find_row(cs, start_s);
    if (!r)
        abort(); /* run_items made it (make_rows, keeps_row) */
    int32_t year = local_year(c, start_s);
    if (r->revision >= 0)
        release_stored(e, c, year, r->paid, r->n_paid);

    struct interval_money m;
    engine_interval_money(e, c, v, start_s, kwh_micro, &m);
    enum period period = m.period;
    int64_t price = m.price_micro_cny, share = m.share_micro;
    int64_t energy = m.energy_cny4, surcharge = m.surcharge_cny4, net = m.net_cny4;
    struct subsidy sub = m.sub;

    struct engine_lines lines;
    diff_lines(e, r->paid, r->revision >= 0 ? r->n_paid : 0, &sub, &lines);
    struct billing_row row = {
        .cluster = c,
        .interval_start_s = start_s,
        .interval_end_s = start_s + e->interval_s,
        .year = year,
        .revision = r->revision + 1,
        .period = period,
        .kwh_micro = kwh_micro - r->kwh_micro,
        .price_micro_cny = price,
        .surcharge_rate_micro_cny = v->surcharge_micro_cny,
        .energy_charge_cny4 = energy - r->energy_charge_cny4,
        .surcharge_cny4 = surcharge - r->surcharge_cny4,
        .subsidy_cny4 = sub.total_cny4 - r->subsidy_cny4,
        .net_cny4 = net - r->net_cny4,
        .domestic_share_micro = share,
        .programme = sub.n ? lines.programme : NULL,
        .tariff_version = v->label,
        .missing_s = missing_s - r->missing_s,
        .n_lines = lines.n,
        .lines = lines.v,
    };
    struct month_state *ms = month_for(cs, start_s);
    row.month_day = ms->month_day;
    bool changed = row.kwh_micro || row.energy_charge_cny4 || row.surcharge_cny4 ||
                   row.subsidy_cny4 || row.missing_s || lines.n;
    if (r->revision >= 0 && !changed) {
        store_paid(e, &sub, r->paid, &r->n_paid); /* same amounts, fresh names */
        return;
    }
    r->revision++;
    r->kwh_micro = kwh_micro;
    r->energy_charge_cny4 = energy;
    r->surcharge_cny4 = surcharge;
    r->subsidy_cny4 = sub.total_cny4;
    r->net_cny4 = net;
    r->missing_s = missing_s;
    store_paid(e, &sub, r->paid, &r->n_paid);

    if (row.revision == 0)
        e->stats.billing_rows++;
    else
        e->stats.adjustment_rows++;
    if (e->sink.billing)
        e->sink.billing(e->sink.ctx, &row);

    ms->kwh_micro += row.kwh_micro;
    if (ms->last_row_start_s < start_s)
        ms->last_row_start_s = start_s;
    if (ms->closed)
        ms->dirty = true;
}

/* An interval's average kW from its kWh (both scale 6), saturating. */
static int64_t kw_of(int64_t kwh_micro, int64_t per_hour)
{
    int64_t kw;
    if (__builtin_mul_overflow(kwh_micro, per_hour, &kw))
        return kwh_micro < 0 ? INT64_MIN : INT64_MAX;
    return kw;
}

/* The month's largest interval average and the interval it is in, over
 * its days in service; ties go to the earlier interval. */
static void month_max(const struct engine *e, const struct cluster_state *cs,
                      const struct month_state *ms, int64_t *kw_micro, int64_t *start_s)
{
    int64_t per_hour = 3600 / e->interval_s;
    int32_t offset = cluster_utc_offset_s(cs->cfg);
    *kw_micro = ms->frozen_max_kw_micro;
    *start_s = ms->frozen_max_start_s;
    for (size_t i = 0; i < cs->n_rows; i++) {
        const struct closed_row *r = &cs->rows[i];
        if (r->start_s < ms->start_s || r->start_s >= ms->end_s || r->revision < 0 ||
            !cluster_in_service_on(cs->cfg, civil_local_day(r->start_s, offset)))
            continue;
        int64_t kw = kw_of(r->kwh_micro, per_hour);
        if (*start_s == NONE || kw > *kw_micro || (kw == *kw_micro && r->start_s < *start_s)) {
            *kw_micro = kw;
            *start_s = r->start_s;
        }
    }
}

/* The demand charge of month ms: its monthly charge, or, in a month the
 * cluster is not in service every day of or whose monthly charge changes
 * from one day to another (its transformer_kva or contract_kw), the sum
 * over its days in service of 1/30 of each day's monthly charge
 * (docs/design.md section 5). Runs of days with one monthly charge go in
 * runs; the version is the one of the month's last row. */
static void month_demand(const struct cluster *c, const struct tariff_version *v,
                         const struct month_state *ms, int64_t max_kw, struct month_demand *out)
{
    int32_t offset = cluster_utc_offset_s(c);
    int32_t first = ms->month_day, end = civil_local_day(ms->end_s, offset);
    memset(out, 0, sizeof *out);
    bool whole = true;
    for (int32_t day = first; day < end; day++) {
        struct demand_charge dc;
        if (!cluster_in_service_on(c, day)) {
            whole = false;
            continue;
        }
        price_demand(v, cluster_transformer_micro_kva_on(c, day),
                     cluster_contract_micro_kw_on(c, day), max_kw, ms->kwh_micro, &dc);
        struct demand_days *last = out->n_runs ? &out->runs[out->n_runs - 1] : NULL;
        if (last && last->from_day + last->days == day &&
            last->monthly_charge_cny4 == dc.charge_cny4 &&
            last->billing_kw_micro == dc.billing_kw_micro) {
            last->days++;
        } else {
            if (last)
                whole = false; /* the monthly charge changed within the month */
            out->runs[out->n_runs++] =
                (struct demand_days){day, 1, dc.billing_kw_micro, dc.charge_cny4};
        }
        out->days_in_service++;
        out->dc = dc; /* the last day's billing demand stands for the month */
    }
    if (whole)
        return; /* n_runs is 1: the monthly charge as it always was */
    out->prorated = true;
    int64_t monthly[DEMAND_MAX_RUNS];
    int32_t days[DEMAND_MAX_RUNS];
    for (size_t i = 0; i < out->n_runs; i++) {
        monthly[i] = out->runs[i].monthly_charge_cny4;
        days[i] = out->runs[i].days;
    }
    out->dc.charge_cny4 = price_prorated_cny4(monthly, days, out->n_runs);
}

static void price_month(struct engine *e, struct cluster_state *cs, struct month_state *ms)
{
    const struct cluster *c = cs->cfg;
    if (ms->last_row_start_s == NONE || e->sink.energy)
        return;
    const struct tariff_version *v = tariff_version_at(c->site->tariff, ms->last_row_start_s);
    if (!v)
        return; /* a reload started the tariff after its last row: as reprice_ledger_month */
    int64_t max_kw, max_start;
    month_max(e, cs, ms, &max_kw, &max_start);
    struct month_demand md;
    month_demand(c, v, ms, max_kw, &md);
    const struct demand_charge dc = md.dc;
    int32_t year = local_year(c, ms->start_s);
    if (ms->revision >= 0)
        release_stored(e, c, year, ms->paid, ms->n_paid);
    int64_t share = cluster_domestic_share_micro(c, ms->last_row_start_s);
    struct subsidy sub;
    price_subsidy(e->cfg, c, ms->last_row_start_s, share, dc.charge_cny4, true, year, &e->caps,
                  &sub);
    int64_t net = dc.charge_cny4 - sub.total_cny4;
    struct engine_lines lines;
    diff_lines(e, ms->paid, ms->revision >= 0 ? ms->n_paid : 0, &sub, &lines);
    bool changed = ms->revision < 0 || dc.charge_cny4 != ms->charge_cny4 ||
                   sub.total_cny4 != ms->subsidy_cny4 || lines.n || max_kw != ms->max_kw_micro ||
                   dc.billing_kw_micro != ms->billing_kw_micro;
    if (!changed) {
        store_paid(e, &sub, ms->paid, &ms->n_paid);
        return;
    }
    struct demand_row row = {
        .cluster = c,
        .month_day = ms->month_day,
        .year = year,
        .revision = ms->revision + 1,
        .basis = v->demand_basis,
        .max_kw_micro = max_kw,
        .max_interval_start_s = max_start,
        .billing_kw_micro = dc.billing_kw_micro,
        .charge_cny4 = dc.charge_cny4 - (ms->revision >= 0 ? ms->charge_cny4 : 0),
        .subsidy_cny4 = sub.total_cny4 - (ms->revision >= 0 ? ms->subsidy_cny4 : 0),
        .net_cny4 = net - (ms->revision >= 0 ? ms->net_cny4 : 0),
        .programme = sub.n ? lines.programme : NULL,
        .tariff_version = v->label,
        .prorated = md.prorated,
        .days_in_service = md.days_in_service,
        .n_runs = md.prorated ? md.n_runs : 0,
        .runs = md.runs,
        .n_lines = lines.n,
        .lines = lines.v,
    };
    ms->revision++;
    ms->charge_cny4 = dc.charge_cny4;
    ms->subsidy_cny4 = sub.total_cny4;
    ms->net_cny4 = net;
    ms->max_kw_micro = max_kw;
    ms->billing_kw_micro = dc.billing_kw_micro;
    store_paid(e, &sub, ms->paid, &ms->n_paid);
    e->stats.demand_rows++;
    if (e->sink.demand)
        e->sink.demand(e->sink.ctx, &row);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

/* The boundaries are monotonic in the time, so the earliest floor is the
 * floor of the earliest sample (and the latest ceiling that of the latest):
 * one division per cluster rather than one per meter, which a tick at a
 * million meters pays for every meter. */
static int64_t close_target(const struct engine *e, const struct cluster_state *cs, bool all_silent)
{
    int64_t active_min_ns = INT64_MAX, silent_max_ns = INT64_MIN;
    bool any_active = false, any_silent = false;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        if (m->last_ns == NONE)
            continue;
        if (all_silent || m->silent) {
            any_silent = true;
            if (m->last_ns > silent_max_ns)
                silent_max_ns = m->last_ns;
        } else {
            any_active = true;
            if (m->last_ns < active_min_ns)
                active_min_ns = m->last_ns;
        }
    }
    if (any_active)
        return floor_boundary(e, active_min_ns);
    return any_silent ? ceil_boundary(e, silent_max_ns) : NONE;
}

static int64_t first_start(const struct engine *e, const struct cluster_state *cs)
{
    int64_t first_ns = INT64_MAX;
    bool any = false;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        if (m->first_ns != NONE && m->first_ns < first_ns) {
            first_ns = m->first_ns;
            any = true;
        }
    }
    return any ? floor_boundary(e, first_ns) : INT64_MAX;
}

static void add_item(struct engine *e, int64_t start_s, size_t cluster, enum close_kind kind)
{
    ARRAY_RESERVE_ONE(e->items, e->n_items, e->cap_items);
    e->items[e->n_items++] = (struct close_item){start_s, cluster, kind};
}

/* Queues the intervals and months that closing cs up to target closes. */
static void queue_advance(struct engine *e, size_t ci, int64_t target, int64_t now_ns)
{
    struct cluster_state *cs = &e->clusters[ci];
    if (!cs->cfg || target == NONE || (cs->closed_until_s != NONE && target <= cs->closed_until_s))
        return;
    int64_t from = cs->closed_until_s != NONE ? cs->closed_until_s : first_start(e, cs);
    int32_t offset = cluster_utc_offset_s(cs->cfg);
    for (int64_t s = from; s < target; s += e->interval_s) {
        /* A month has ended once a later interval closes: the first
         * interval of the next month closes it, right after the month's
         * last interval (docs/design.md section 5). */
        if (civil_local_second_of_day(s, offset) == 0 &&
            civil_from_day(civil_local_day(s, offset)).day == 1)
            add_item(e, s - e->interval_s, ci, CLOSE_MONTH);
        if (covered(e, cs, s)) {
            month_for(cs, s); /* so a month whose rows come at once exists to close */
            add_item(e, s, ci, CLOSE_INTERVAL);
        }
    }
    cs->closed_until_s = target;
    ARRAY_RESERVE_ONE(cs->marks, cs->n_marks, cs->cap_marks);
    cs->marks[cs->n_marks++] = (struct close_mark){target, now_ns};
}

static int item_order(const void *a, const void *b, void *ctx)
{
    const struct close_item *x = a, *y = b;
    const struct engine *e = ctx;
    if (x->start_s != y->start_s)
        return x->start_s < y->start_s ? -1 : 1;
    if (x->cluster != y->cluster)
        return strcmp(e->clusters[x->cluster].id, e->clusters[y->cluster].id);
    return (x->kind > y->kind) - (x->kind < y->kind);
}

static void close_month_at(struct engine *e, struct cluster_state *cs, int64_t last_start_s)
{
    struct month_state *ms = find_month(cs, last_start_s);
    if (!ms || ms->closed)
        return;
    ms->closed = true;
    ms->dirty = false;
    price_month(e, cs, ms);
}

/* Whether item i is the last interval of the batch for its cluster and
 * month (the items are sorted by start, then cluster): a month of which
 * several closed intervals are priced again is priced again once, right
 * after the last of them, as it would be had they come one by one; not
 * once per interval, which made a counter spread over months cost their
 * square. Only intervals count: the month's own close item, which sorts
 * right after its last interval, prices nothing in a month the clock has
 * closed already, so counting it would leave the month unpriced. */
static bool last_of_month(const struct engine *e, size_t i, const struct month_state *ms)
{
    for (size_t j = i + 1; j < e->n_items && e->items[j].start_s < ms->end_s; j++)
        if (e->items[j].cluster == e->items[i].cluster && e->items[j].kind == CLOSE_INTERVAL)
            return false;
    return true;
}

/* Whether price_interval keeps a row for interval start_s of cs: it
 * returns before finding one when no tariff version is in force, or when
 * the engine only measures energy. */
static bool keeps_row(const struct engine *e, const struct cluster_state *cs, int64_t start_s)
{
    return !e->sink.energy && tariff_version_at(cs->cfg->site->tariff, start_s);
}

static int by_cluster_start(const void *a, const void *b)
{
    const struct close_item *x = a, *y = b;
    if (x->cluster != y->cluster)
        return x->cluster < y->cluster ? -1 : 1;
    return (x->start_s > y->start_s) - (x->start_s < y->start_s);
}

/* The rows a pass over e->items will make, made before it in one merge
 * per cluster. Made one at a time as each interval was priced, every row
 * moved those after it: a counter read months out of order made tens of
 * thousands of rows before tens of thousands (RELIABILITY.md #17). */
static void make_rows(struct engine *e)
{
    struct close_item *need = NULL;
    size_t n = 0;
    for (size_t i = 0; i < e->n_items; i++) {
        const struct close_item *it = &e->items[i];
        struct cluster_state *cs = &e->clusters[it->cluster];
        if (it->kind != CLOSE_INTERVAL || !keeps_row(e, cs, it->start_s) ||
            find_row(cs, it->start_s))
            continue;
        if (!need)
            need = xrealloc_array(NULL, e->n_items, sizeof *need);
        need[n++] = *it;
    }
    if (n == 0)
        return;
    qsort(need, n, sizeof *need, by_cluster_start);
    int64_t *starts = xrealloc_array(NULL, n, sizeof *starts);
    for (size_t i = 0; i < n;) {
        size_t ci = need[i].cluster, k = 0;
        for (; i < n && need[i].cluster == ci; i++)
            if (k == 0 || starts[k - 1] != need[i].start_s)
                starts[k++] = need[i].start_s;
        insert_rows(&e->clusters[ci], starts, k);
    }
    free(starts);
    free(need);
}

static void run_items(struct engine *e)
{
    if (e->n_items > 1)
        qsort_r(e->items, e->n_items, sizeof *e->items, item_order, e);
    make_rows(e);
    for (size_t i = 0; i < e->n_items; i++) {
        const struct close_item *it = &e->items[i];
        struct cluster_state *cs = &e->clusters[it->cluster];
        if (it->kind != CLOSE_INTERVAL) {
            close_month_at(e, cs, it->start_s);
            continue;
        }
        price_interval(e, cs, it->start_s);
        struct month_state *ms = find_month(cs, it->start_s);
        if (ms && ms->dirty && last_of_month(e, i, ms)) {
            ms->dirty = false;
            price_month(e, cs, ms);
        }
    }
    e->n_items = 0;
}

/* ------------------------------------------------------------------ */
/* Reopened intervals                                                  */

/* A late sample does not price the closed intervals it changes: it reopens
 * them, and each closes again by the rules of its first close, once every
 * meter of the cluster that is not silent has data past its end (or is
 * silent for grace), checked at the end of a request, at a tick and at
 * the end of input; or when it is about to become final. So a meter that
 * sends an hour it had buffered makes one adjustment per interval, not
 * one per sample, and its subsidy is returned and consumed again once. */

/* Clusters with reopened intervals are listed, so the end of a request
 * looks at those only, not at every cluster. */
static void note_reopened(struct engine *e, struct cluster_state *cs)
{
    if (cs->listed)
        return;
    cs->listed = true;
    ARRAY_RESERVE_ONE(e->reopened_clusters, e->n_reopened_clusters, e->cap_reopened_clusters);
    e->reopened_clusters[e->n_reopened_clusters++] = (size_t)(cs - e->clusters);
}

/* Reopens the covered intervals in [from, to): merged into the sorted
 * list in one pass, so a sample that reopens a long segment (a counter's
 * difference spreads over all of it) costs the segment, not the segment
 * times the list. */
static void reopen_range(struct engine *e, struct cluster_state *cs, int64_t from, int64_t to)
{
    /* covered() walks the cluster's meters: once per interval. */
    int64_t *range = xmalloc((size_t)((to - from) / e->interval_s + 1) * sizeof *range);
    size_t n_range = 0;
    for (int64_t st = from; st < to; st += e->interval_s)
        if (covered(e, cs, st))
            range[n_range++] = st;
    if (n_range == 0) {
        free(range);
        return;
    }
    /* How many are new: the list is sorted, so one pass over both. */
    size_t added = 0;
    for (size_t i = 0, j = 0; j < n_range; j++) {
        while (i < cs->n_reopened && cs->reopened[i] < range[j])
            i++;
        added += i == cs->n_reopened || cs->reopened[i] != range[j];
    }
    if (added == 0) {
        free(range);
        return;
    }
    size_t old = cs->n_reopened;
    ARRAY_RESERVE(cs->reopened, cs->n_reopened, cs->cap_reopened, added);
    /* Merged from the back, in place: the usual late sample reopens
     * intervals after every one reopened already, and only appends. */
    size_t i = old, j = n_range, out = old + added;
    while (j > 0) {
        if (i > 0 && cs->reopened[i - 1] > range[j - 1]) {
            cs->reopened[--out] = cs->reopened[--i];
        } else {
            if (i > 0 && cs->reopened[i - 1] == range[j - 1])
                i--; /* reopened already: kept once */
            cs->reopened[--out] = range[--j];
        }
    }
    cs->n_reopened = old + added;
    free(range);
    e->stats.intervals_reopened += added;
    note_reopened(e, cs);
}

/* Where the meters of cs that are not silent let intervals close: the
 * earliest boundary at or below one's last sample (INT64_MAX when all are
 * silent), as close_target has it for a first close. */
static int64_t ready_until(const struct engine *e, const struct cluster_state *cs)
{
    int64_t until_ns = INT64_MAX;
    bool any = false;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        if (m->last_ns == NONE || m->silent)
            continue;
        if (m->last_ns < until_ns)
            until_ns = m->last_ns;
        any = true;
    }
    return any ? floor_boundary(e, until_ns) : INT64_MAX;
}

/* Queues the reopened intervals of cluster ci that end by until_s.
 * Returns whether it queued any. */
static bool queue_reclose(struct engine *e, size_t ci, int64_t until_s)
{
    struct cluster_state *cs = &e->clusters[ci];
    if (cs->n_reopened == 0 || !cs->cfg)
        return false;
    size_t kept = 0;
    for (size_t i = 0; i < cs->n_reopened; i++) {
        int64_t start_s = cs->reopened[i];
        if (start_s + e->interval_s <= until_s)
            add_item(e, start_s, ci, CLOSE_INTERVAL);
        else
            cs->reopened[kept++] = start_s;
    }
    bool queued = kept < cs->n_reopened;
    cs->n_reopened = kept;
    return queued;
}

/* The reopened intervals of cluster ci its meters let close again. */
static bool queue_ready(struct engine *e, size_t ci)
{
    struct cluster_state *cs = &e->clusters[ci];
    return cs->n_reopened > 0 && cs->cfg && queue_reclose(e, ci, ready_until(e, cs));
}

/* A late sample may give a month its first row after the data closed it:
 * it closes now, as its last interval did. */
static void close_months_behind(struct engine *e, struct cluster_state *cs)
{
    for (size_t k = 0; k < cs->n_months; k++)
        if (!cs->months[k].closed && cs->months[k].end_s < cs->closed_until_s)
            close_month_at(e, cs, cs->months[k].start_s);
}

/* Closes again what may close again, in the clusters that have reopened
 * intervals; the months of those that closed some are priced again once.
 * A cluster with none left is struck off the list. */
static void reclose_ready(struct engine *e)
{
    if (e->n_reopened_clusters == 0)
        return;
    bool any = false;
    for (size_t k = 0; k < e->n_reopened_clusters; k++)
        any |= queue_ready(e, e->reopened_clusters[k]);
    if (any)
        run_items(e);
    size_t kept = 0;
    for (size_t k = 0; k < e->n_reopened_clusters; k++) {
        struct cluster_state *cs = &e->clusters[e->reopened_clusters[k]];
        if (any)
            close_months_behind(e, cs);
        if (cs->n_reopened > 0)
            e->reopened_clusters[kept++] = e->reopened_clusters[k];
        else
            cs->listed = false;
    }
    e->n_reopened_clusters = kept;
}

/* The instant a close mark must be no later than to become final at
 * now_ns: late_window before it. */
static int64_t freeze_horizon_ns(const struct engine *e, int64_t now_ns)
{
    return now_ns - e->cfg->daemon.late_window_s * NS;
}

/* freeze, once its first mark is due. */
static void freeze_due(struct engine *e, struct cluster_state *cs, int64_t now_ns)
{
    int64_t horizon_ns = freeze_horizon_ns(e, now_ns);
    size_t k = 0;
    /* Never backwards: a backfill may have made history final beyond a
     * mark (engine_backfill). */
    for (; k < cs->n_marks && cs->marks[k].at_ns <= horizon_ns; k++)
        if (cs->marks[k].upto_s > cs->frozen_until_s)
            cs->frozen_until_s = cs->marks[k].upto_s;
    if (k == 0)
        return;
    memmove(cs->marks, cs->marks + k, (cs->n_marks - k) * sizeof *cs->marks);
    cs->n_marks -= k;
    /* A reopened interval is priced before it becomes final; one whose
     * cluster the config no longer has cannot be, and stays as it was. */
    if (queue_reclose(e, (size_t)(cs - e->clusters), cs->frozen_until_s)) {
        run_items(e);
        close_months_behind(e, cs);
    }
    size_t kept = 0;
    for (size_t i = 0; i < cs->n_reopened; i++)
        if (cs->reopened[i] + e->interval_s > cs->frozen_until_s)
            cs->reopened[kept++] = cs->reopened[i];
    cs->n_reopened = kept;

    int64_t per_hour = 3600 / e->interval_s;
    size_t r = 0;
    for (; r < cs->n_rows && cs->rows[r].start_s + e->interval_s <= cs->frozen_until_s; r++) {
        const struct closed_row *row = &cs->rows[r];
        struct month_state *ms = find_month(cs, row->start_s);
        int64_t kw = kw_of(row->kwh_micro, per_hour);
        /* Over the days in service, as month_max (the config may have
         * moved them since the interval closed). */
        bool in_service =
            !cs->cfg || cluster_in_service_on(
                            cs->cfg, civil_local_day(row->start_s, cluster_utc_offset_s(cs->cfg)));
        if (ms && in_service && (ms->frozen_max_start_s == NONE || kw > ms->frozen_max_kw_micro)) {
            ms->frozen_max_kw_micro = kw;
            ms->frozen_max_start_s = row->start_s;
        }
    }
    if (r > 0) {
        memmove(cs->rows, cs->rows + r, (cs->n_rows - r) * sizeof *cs->rows);
        cs->n_rows -= r;
    }

    size_t m = 0;
    while (m < cs->n_months && cs->months[m].closed && cs->months[m].end_s <= cs->frozen_until_s)
        m++;
    if (m > 0) {
        memmove(cs->months, cs->months + m, (cs->n_months - m) * sizeof *cs->months);
        cs->n_months -= m;
    }

    for (size_t i = 0; i < cs->n_meters; i++) {
        struct meter_state *mt = &e->meters[cs->meters[i]];
        size_t keep_from = sample_buf_lower_bound(&mt->buf, cs->frozen_until_s * NS);
        if (keep_from > 1)
            sample_buf_drop_front(e->samples, &mt->buf, keep_from - 1);
    }
}

/* Intervals closed late_window ago become final: their money and all but
 * one neighbouring sample are forgotten; months wholly final and closed
 * are dropped. Every sample comes here first: the usual answer, nothing
 * due, costs one comparison. */
static inline void freeze(struct engine *e, struct cluster_state *cs, int64_t now_ns)
{
    if (cs->n_marks > 0 && cs->marks[0].at_ns <= freeze_horizon_ns(e, now_ns))
        freeze_due(e, cs, now_ns);
}

/* ------------------------------------------------------------------ */
/* Public                                                              */

struct engine *engine_alloc(const struct config *cfg, const struct engine_sink *sink)
{
    struct engine *e = xcalloc(1, sizeof *e);
    e->cfg = cfg;
    e->interval_s = cfg->daemon.interval_s;
    e->samples = sample_mem_new();
    /* The heard list is built by the first tick: `tariffd price`, which
     * never ticks, and a replay up to its first tick do not keep it. */
    e->heard_stale = true;
    e->tick_all = true;
    if (sink)
        e->sink = *sink;
    return e;
}

struct engine *engine_new(const struct config *cfg, const struct engine_sink *sink)
{
    struct engine *e = engine_alloc(cfg, sink);
    hold_update(e);
    return e;
}

size_t engine_tenant_meters(const struct engine *e, const struct tenant *t)
{
    /* A scan rather than a counter kept in step with meters, reloads and
     * snapshots: it runs once per request that brings a new meter. */
    size_t n = 0;
    for (size_t i = 0; i < e->n_clusters; i++)
        if (e->clusters[i].cfg && e->clusters[i].cfg->tenant == t)
            n += e->clusters[i].n_meters;
    return n;
}

void engine_set_config(struct engine *e, const struct config *cfg)
{
    /* A cluster the new config drops cannot be priced after it: what late
     * samples reopened in it closes now, under the config they came in. */
    bool queued = false;
    for (size_t i = 0; i < e->n_clusters; i++)
        if (e->clusters[i].cfg && !config_find_cluster(cfg, e->clusters[i].id))
            queued |= queue_reclose(e, i, INT64_MAX);
    if (queued) {
        run_items(e);
        for (size_t i = 0; i < e->n_clusters; i++)
            close_months_behind(e, &e->clusters[i]);
    }
    e->cfg = cfg;
    for (size_t i = 0; i < e->n_clusters; i++) {
        struct cluster_state *cs = &e->clusters[i];
        cs->cfg = config_find_cluster(cfg, cs->id);
        cs->tariff_from_s = first_tariff_from_s(cs->cfg);
    }
    e->tick_all = true; /* grace, late_window and the clusters' configs may have moved */
    hold_update(e);
}

/* engine_judge's rule, for s whose meter is m (NULL when new): the
 * cluster's config, or NULL with err saying why s is refused. */
static const struct cluster *admit(const struct engine *e, const struct meter_state *m,
                                   const struct engine_sample *s, struct error *err)
{
    /* Bounds that keep every interval's kWh x 1e6 and kW x 1e6 well inside
     * int64, far beyond any real meter: 1 TW of power, 1e15 kWh on a
     * counter. */
    double limit = s->kind == SAMPLE_COUNTER ? 1e15 : 1e9;
    if (!(s->value >= 0 && s->value <= limit)) {
        error_set(err, "value %g is out of range (%s at most %g)", s->value,
                  s->kind == SAMPLE_COUNTER ? "a counter reads" : "power is", limit);
        return NULL;
    }
    const struct cluster *c =
        m ? e->clusters[m->cluster].cfg : config_find_cluster(e->cfg, s->cluster);
    if (!c) {
        error_set(err, "unknown cluster \"%s\"", s->cluster);
        return NULL;
    }
    if (m && m->counter != (s->kind == SAMPLE_COUNTER)) {
        error_set(err, "meter \"%s\" of cluster \"%s\" sends %s, not %s", s->meter, s->cluster,
                  m->counter ? "an energy counter (kwh or wh)" : "power (kw or w)",
                  m->counter ? "power" : "an energy counter");
        return NULL;
    }
    return c;
}

enum engine_verdict engine_judge_meter(const struct engine *e, const struct engine_sample *s,
                                       struct error *err, size_t *meter)
{
    const struct meter_state *m = find_meter(e, s->cluster, s->meter);
    *meter = ENGINE_NO_METER;
    if (!admit(e, m, s, err))
        return ENGINE_REFUSED;
    if (!m)
        return ENGINE_NEW_METER;
    *meter = (size_t)(m - e->meters);
    return ENGINE_KNOWN_METER;
}

enum engine_verdict engine_judge(const struct engine *e, const struct engine_sample *s,
                                 struct error *err)
{
    size_t meter;
    return engine_judge_meter(e, s, err, &meter);
}

static const char *const quarantine_reason_names[QUARANTINE_REASON_COUNT] = {
    [QUARANTINE_NO_TARIFF_VERSION] = "no tariff version in force",
    [QUARANTINE_BEYOND_MAX_FUTURE] = "timestamp more than max_future ahead of the clock",
    [QUARANTINE_PAST_LATE_WINDOW] = "interval closed more than late_window ago",
    [QUARANTINE_OUT_OF_SERVICE] = "outside the cluster's service dates",
    [QUARANTINE_REFUSED] = "refused by the engine",
};

const char *quarantine_reason_name(enum quarantine_reason r)
{
    return r < QUARANTINE_REASON_COUNT ? quarantine_reason_names[r] : "?";
}

enum quarantine_reason quarantine_reason_parse(const char *text)
{
    for (int r = 0; r < QUARANTINE_REFUSED; r++)
        if (strcmp(text, quarantine_reason_names[r]) == 0)
            return (enum quarantine_reason)r;
    return QUARANTINE_REFUSED;
}

static void quarantine_text(struct engine *e, const struct engine_sample *s, const char *reason)
{
    e->stats.quarantined++;
    if (e->sink.quarantine)
        e->sink.quarantine(e->sink.ctx, s, reason);
}

void engine_quarantine(struct engine *e, const struct engine_sample *s, const char *reason)
{
    if (e->hold)
        hold_call(e, HELD_QUARANTINE, s, reason, 0);
    quarantine_text(e, s, reason);
}

static void quarantine(struct engine *e, const struct engine_sample *s, enum quarantine_reason why)
{
    quarantine_text(e, s, quarantine_reason_name(why));
}

/* Recounts the blockers of cs after its closed_until_s moved. */
static void count_blockers(struct engine *e, struct cluster_state *cs)
{
    cs->blockers = 0;
    /* floor_boundary(last_ns) <= closed_until_s, without a division per
     * meter: the last sample is before the end of the interval that holds
     * closed_until_s. */
    int64_t before_ns =
        cs->closed_until_s == NONE
            ? NONE
            : (civil_floor_div(cs->closed_until_s, e->interval_s) + 1) * e->interval_s * NS;
    for (size_t i = 0; i < cs->n_meters; i++) {
        const struct meter_state *m = &e->meters[cs->meters[i]];
        if (!m->silent && m->last_ns != NONE && m->last_ns < before_ns)
            cs->blockers++;
    }
    cs->blockers_valid = cs->closed_until_s != NONE;
    cs->blockers_tick = e->ticks;
}

/* Whether instant ts_ns is within cluster c's service dates: on a day in
 * service, or the very end of its last day (a reading at midnight closes
 * that day's last interval and touches the next one only at its start,
 * which gives no row: docs/design.md section 4). */
static bool in_service(const struct cluster *c, int64_t ts_ns)
{
    if (!c->has_service_from && !c->has_service_until)
        return true;
    int32_t offset = cluster_utc_offset_s(c);
    int64_t ts_s = civil_floor_div(ts_ns, NS);
    if (cluster_in_service_on(c, civil_local_day(ts_s, offset)))
        return true;
    return c->has_service_until && ts_ns % NS == 0 &&
           ts_s == civil_day_start_ts(c->service_until_day + 1, offset) &&
           cluster_in_service_on(c, c->service_until_day);
}

/* Whether s, admitted, arrives where it cannot be billed (*why says
 * where): before its tariff's first version, more than max_future ahead
 * of the clock, or in an interval already final. The cluster's final
 * intervals are brought up to now first (it may have had no push for a
 * while). Its meter is not created here, so a quarantined sample leaves
 * none behind. */
static bool unbillable_on_arrival(struct engine *e, const struct meter_state *m,
                                  const struct cluster *c, const struct engine_sample *s,
                                  int64_t now_ns, enum quarantine_reason *why)
{
    int64_t from_s = m ? e->clusters[m->cluster].tariff_from_s : first_tariff_from_s(c);
    if (s->ts_ns < from_s * NS) {
        *why = QUARANTINE_NO_TARIFF_VERSION;
        return true;
    }
    if (!in_service(c, s->ts_ns)) {
        *why = QUARANTINE_OUT_OF_SERVICE;
        return true;
    }
    int64_t max_future_ns = e->cfg->daemon.max_future_s * NS;
    if (now_ns < INT64_MAX - max_future_ns && s->ts_ns > now_ns + max_future_ns) {
        *why = QUARANTINE_BEYOND_MAX_FUTURE;
        return true;
    }
    size_t ci = m ? m->cluster : engine_cluster_index(e, s->cluster);
    struct cluster_state *cs = &e->clusters[ci];
    tick_touch(e, ci);
    freeze(e, cs, now_ns);
    if (cs->frozen_until_s != NONE && s->ts_ns < cs->frozen_until_s * NS) {
        *why = QUARANTINE_PAST_LATE_WINDOW;
        return true;
    }
    return false;
}

/* Whether s, landing between two samples of m (not after its last), would
 * change the energy of a final interval: the segment between them reaches
 * into one and carries energy there, so the change could not be billed. */
static bool changes_final_interval(const struct engine *e, const struct cluster_state *cs,
                                   const struct meter_state *m, const struct engine_sample *s)
{
    if (cs->frozen_until_s == NONE)
        return false;
    size_t i = sample_buf_lower_bound(&m->buf, s->ts_ns);
    if (i == 0 || i >= m->buf.n)
        return false;
    int64_t before_ns = sample_buf_ts(&m->buf, i - 1), after_ns = sample_buf_ts(&m->buf, i);
    bool integrated = m->counter || after_ns - before_ns <= e->cfg->daemon.max_gap_s * NS;
    return integrated && after_ns != s->ts_ns && before_ns < cs->frozen_until_s * NS;
}

/* Stores s in m's buffer, at index *at. Returns false, storing nothing,
 * for a duplicate or a conflict (counted; the first value stands). */
static bool store_sample(struct engine *e, struct meter_state *m, const struct engine_sample *s,
                         bool appended, size_t *at)
{
    struct sample sample = {s->ts_ns, s->value};
    if (appended) {
        /* The usual case: the newest sample of its meter, known without
         * reading the (cold) end of its buffer. */
        sample_buf_append(e->samples, &m->buf, sample);
        *at = m->buf.n - 1;
    } else {
        switch (sample_buf_insert(e->samples, &m->buf, sample, at)) {
        case SAMPLE_DUPLICATE:
            e->stats.duplicates++;
            return false;
        case SAMPLE_CONFLICT:
            e->stats.conflicts++;
            return false;
        case SAMPLE_INSERTED:
            break;
        }
    }
    e->stats.accepted++;
    return true;
}

/* Stretches m's span over s (stored) and marks m heard from at now_ns.
 * Returns whether cs may now close further: m is new or was silent, its
 * blockers are not counted, or m was the last one holding it back. */
static bool take_in_span(struct engine *e, struct cluster_state *cs, struct meter_state *m,
                         const struct engine_sample *s, bool new_meter, int64_t now_ns)
{
    /* Whether a meter's last sample is past closed_until_s's next interval,
     * without dividing: floor(last) <= closed_until <=> last < open_from. */
    int64_t open_from_ns =
        cs->closed_until_s == NONE ? INT64_MIN : (cs->closed_until_s + e->interval_s) * NS;
    bool was_blocker =
        !m->silent && m->last_ns != NONE && cs->closed_until_s != NONE && m->last_ns < open_from_ns;
    bool may_close = new_meter || m->silent || !cs->blockers_valid || cs->blockers_tick != e->ticks;
    if (m->first_ns == NONE || s->ts_ns < m->first_ns)
        m->first_ns = s->ts_ns;
    if (m->last_ns == NONE || s->ts_ns > m->last_ns)
        m->last_ns = s->ts_ns;
    if (!e->heard_stale && !m->silent && m->last_arrival_ns != NONE)
        heard_unlink(e, m);
    m->last_arrival_ns = now_ns;
    m->silent = false;
    if (!e->heard_stale)
        heard_insert(e, m);
    if (!may_close && was_blocker && m->last_ns >= open_from_ns)
        may_close = --cs->blockers == 0;
    return may_close;
}

/* Reopens the closed, not final intervals that the segments of m's
 * sample at index `at` touch: from its earlier neighbour (lo_ns) to its
 * later one. For power, a segment longer than max_gap carries no energy
 * and all its seconds are missing, before the sample split it and after:
 * the intervals it spans do not change, so they are not reopened (else
 * one sample far from the others would make each later-arriving sample
 * reopen every interval up to it). A counter spreads its difference over
 * the whole segment, so there the whole segment changes; and a new first
 * or last sample brings the whole segment to its neighbour into the span. */
static void reopen_closed(struct engine *e, struct cluster_state *cs, const struct meter_state *m,
                          size_t at, int64_t lo_ns)
{
    int64_t hi_ns = sample_buf_ts(&m->buf, at + 1 < m->buf.n ? at + 1 : at); /* or itself */
    if (!m->counter && at > 0 && at + 1 < m->buf.n) {
        /* Inside the meter's span (not a new first or last sample, which
         * brings the intervals up to its neighbour into the span: they get
         * rows even with no energy). */
        int64_t t = sample_buf_ts(&m->buf, at);
        int64_t max_gap_ns = e->cfg->daemon.max_gap_s * NS;
        if (t - lo_ns > max_gap_ns)
            lo_ns = t;
        if (hi_ns - t > max_gap_ns)
            hi_ns = t;
    }
    int64_t from = floor_boundary(e, lo_ns);
    if (cs->frozen_until_s != NONE && from < cs->frozen_until_s)
        from = cs->frozen_until_s;
    int64_t to = ceil_boundary(e, hi_ns);
    if (to > cs->closed_until_s)
        to = cs->closed_until_s;
    e->stats.late_samples++;
    if (from < to)
        reopen_range(e, cs, from, to);
}

/* Closes cluster ci as far as its meters now let it, then recounts what
 * holds it back. */
static void close_what_can_close(struct engine *e, size_t ci, int64_t now_ns)
{
    struct cluster_state *cs = &e->clusters[ci];
    queue_advance(e, ci, close_target(e, cs, false), now_ns);
    run_items(e);
    count_blockers(e, cs);
}

static bool push(struct engine *e, const struct engine_sample *s, size_t meter, int64_t now_ns,
                 struct error *err)
{
    struct meter_state *m =
        meter < e->n_meters ? &e->meters[meter] : find_meter(e, s->cluster, s->meter);
    const struct cluster *c = admit(e, m, s, err);
    if (!c)
        return false;
    enum quarantine_reason why;
    if (unbillable_on_arrival(e, m, c, s, now_ns, &why)) {
        quarantine(e, s, why);
        return true;
    }
    bool new_meter = !m;
    if (new_meter)
        m = engine_add_meter(e, s->cluster, s->meter, s->kind == SAMPLE_COUNTER);
    struct cluster_state *cs = &e->clusters[m->cluster];
    bool appended = m->last_ns == NONE || s->ts_ns > m->last_ns;
    if (!appended && changes_final_interval(e, cs, m, s)) {
        quarantine(e, s, QUARANTINE_PAST_LATE_WINDOW);
        return true;
    }
    int64_t prev_last_ns = m->last_ns;
    size_t at;
    if (!store_sample(e, m, s, appended, &at))
        return true;
    bool may_close = take_in_span(e, cs, m, s, new_meter, now_ns);

    /* The segments the sample changed start at its earlier neighbour: for
     * an append the previous last sample, known without reading the (cold)
     * buffer. Closed intervals among them are reopened. */
    int64_t lo_ns = appended ? (prev_last_ns != NONE ? prev_last_ns : s->ts_ns)
                    : at > 0 ? sample_buf_ts(&m->buf, at - 1)
                             : s->ts_ns;
    if (cs->closed_until_s != NONE && lo_ns < cs->closed_until_s * NS)
        reopen_closed(e, cs, m, at, lo_ns);
    if (may_close)
        close_what_can_close(e, m->cluster, now_ns);
    return true;
}

size_t engine_meter_handle(const struct engine *e, const char *cluster, const char *meter)
{
    const struct meter_state *m = find_meter(e, cluster, meter);
    return m ? (size_t)(m - e->meters) : ENGINE_NO_METER;
}

enum engine_verdict engine_judge_handle(const struct engine *e, const struct engine_sample *s,
                                        size_t meter, struct error *err)
{
    return admit(e, &e->meters[meter], s, err) ? ENGINE_KNOWN_METER : ENGINE_REFUSED;
}

const struct cluster *engine_meter_cluster(const struct engine *e, size_t meter)
{
    return e->clusters[e->meters[meter].cluster].cfg;
}

bool engine_meter_is(const struct engine *e, size_t meter, const char *cluster, const char *name)
{
    if (meter >= e->n_meters)
        return false;
    const struct meter_state *m = &e->meters[meter];
    return strcmp(meter_name(m), name) == 0 && strcmp(meter_key(m), cluster) == 0;
}

void engine_prefetch_meter(const struct engine *e, size_t meter)
{
    if (meter >= e->n_meters)
        return;
    const struct meter_state *m = &e->meters[meter];
    __builtin_prefetch(m);
    __builtin_prefetch((const char *)(m + 1) - 1);
}

bool engine_push(struct engine *e, const struct engine_sample *s, int64_t now_ns, struct error *err)
{
    return engine_push_meter(e, s, ENGINE_NO_METER, now_ns, err);
}

bool engine_push_meter(struct engine *e, const struct engine_sample *s, size_t meter,
                       int64_t now_ns, struct error *err)
{
    if (!push(e, s, meter, now_ns, err))
        return false;
    if (e->hold)
        hold_call(e, HELD_PUSH, s, NULL, now_ns);
    return true;
}

void engine_batch_done(struct engine *e, int64_t now_ns)
{
    if (e->hold)
        hold_call(e, HELD_BATCH, NULL, NULL, now_ns);
    reclose_ready(e);
}

/* Whether a meter of cs is active: not silent, with a sample. */
static bool any_active(const struct engine *e, const struct cluster_state *cs)
{
    for (size_t k = 0; k < cs->n_meters; k++)
        if (!e->meters[cs->meters[k]].silent && e->meters[cs->meters[k]].last_ns != NONE)
            return true;
    return false;
}

/* When month ms of a cluster with no active meter ends by the clock: grace
 * after its end (INT64_MAX when that is past what int64 holds, as with a
 * grace of centuries). */
static int64_t month_clock_close_ns(const struct engine *e, const struct month_state *ms)
{
    int64_t s = ms->end_s + e->cfg->daemon.grace_s;
    return s > INT64_MAX / NS ? INT64_MAX : s * NS;
}

/* Months of cluster i, with no active meter, end by the clock (or the end
 * of input); their intervals with data are all closed by now. */
static void queue_months_by_clock(struct engine *e, size_t i, int64_t now_ns, bool all_silent)
{
    struct cluster_state *cs = &e->clusters[i];
    if (!cs->cfg || (!all_silent && any_active(e, cs)))
        return;
    for (size_t k = 0; k < cs->n_months; k++) {
        const struct month_state *ms = &cs->months[k];
        if (ms->closed || !(all_silent || now_ns >= month_clock_close_ns(e, ms)))
            continue;
        bool queued = false;
        for (size_t q = 0; q < e->n_items; q++)
            queued |= e->items[q].kind == CLOSE_MONTH && e->items[q].cluster == i &&
                      e->items[q].start_s == ms->end_s - e->interval_s;
        if (!queued)
            add_item(e, ms->end_s - e->interval_s, i, CLOSE_MONTH);
    }
}

/* When cluster i next needs the clock (INT64_MAX: not before something
 * touches it): its first close mark becomes final, as freeze has it; with
 * no meter active, a month ends by the clock, as queue_months_by_clock has
 * it. */
static int64_t cluster_deadline(const struct engine *e, size_t i)
{
    const struct cluster_state *cs = &e->clusters[i];
    int64_t at_ns = INT64_MAX;
    if (cs->n_marks > 0) {
        int64_t late_ns = e->cfg->daemon.late_window_s * NS;
        at_ns = cs->marks[0].at_ns > INT64_MAX - late_ns ? INT64_MAX : cs->marks[0].at_ns + late_ns;
    }
    if (cs->cfg && !any_active(e, cs))
        for (size_t k = 0; k < cs->n_months; k++)
            if (!cs->months[k].closed && month_clock_close_ns(e, &cs->months[k]) < at_ns)
                at_ns = month_clock_close_ns(e, &cs->months[k]);
    return at_ns;
}

/* Puts cluster i's deadline in e->due, unless an entry no later is there. */
static void schedule(struct engine *e, size_t i)
{
    struct cluster_state *cs = &e->clusters[i];
    int64_t at_ns = cluster_deadline(e, i);
    if (at_ns < cs->due_at_ns) {
        deadlines_push(&e->due, at_ns, i);
        cs->due_at_ns = at_ns;
    }
}

/* The k-th cluster of a pass over set[0..n), or over every cluster when
 * set is NULL. */
static size_t nth_cluster(const size_t *set, size_t k)
{
    return set ? set[k] : k;
}

/* Closes what may close in the clusters of set[0..n), ascending (NULL:
 * every cluster): by the meters' samples and silences (all_silent: as if
 * every meter were silent, at the end of input), months by the clock,
 * reopened intervals, and what becomes final. A tick passes it only the
 * clusters where this would do something (close_due); either way the
 * rules are these, cluster by cluster in index order: freeze prices what
 * becomes final, and the same rows come in the same order and consume the
 * caps in it. */
static void close_clusters(struct engine *e, const size_t *set, size_t n, int64_t now_ns,
                           bool all_silent)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = nth_cluster(set, k);
        queue_advance(e, i, close_target(e, &e->clusters[i], all_silent), now_ns);
    }
    for (size_t k = 0; k < n; k++)
        queue_months_by_clock(e, nth_cluster(set, k), now_ns, all_silent);
    bool reopened = false;
    for (size_t k = 0; k < n; k++) {
        size_t i = nth_cluster(set, k);
        reopened |= all_silent ? queue_reclose(e, i, INT64_MAX) : queue_ready(e, i);
    }
    run_items(e);
    /* A month a late sample left open behind closed_until_s may be in any
     * cluster. */
    for (size_t i = 0; reopened && i < e->n_clusters; i++)
        close_months_behind(e, &e->clusters[i]);
    for (size_t k = 0; k < n; k++)
        freeze(e, &e->clusters[nth_cluster(set, k)], now_ns);
    e->ticks++; /* silences changed: every cluster's blockers are to be counted again */
    e->tick_looked = n;
}

static void close_all(struct engine *e, int64_t now_ns, bool all_silent)
{
    close_clusters(e, NULL, e->n_clusters, now_ns, all_silent);
}

/* A tick that looks at every cluster: close_all, then every deadline
 * afresh and an empty tick set. */
static void close_everything(struct engine *e, int64_t now_ns)
{
    close_all(e, now_ns, false);
    deadlines_clear(&e->due);
    for (size_t i = 0; i < e->n_clusters; i++) {
        e->clusters[i].due_at_ns = INT64_MAX;
        e->clusters[i].in_tick = false;
        schedule(e, i);
    }
    e->n_tick_set = 0;
}

static int index_order(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* close_clusters over the tick set and the clusters whose deadline has
 * come, then their deadlines anew. */
static void close_due(struct engine *e, int64_t now_ns)
{
    size_t ci;
    while (deadlines_pop_due(&e->due, now_ns, &ci)) {
        e->clusters[ci].due_at_ns = INT64_MAX;
        tick_touch(e, ci);
    }
    size_t *set = e->tick_set, n = e->n_tick_set;
    if (n > 1)
        qsort(set, n, sizeof *set, index_order);
    close_clusters(e, set, n, now_ns, false);
    for (size_t k = 0; k < n; k++) {
        e->clusters[set[k]].in_tick = false;
        schedule(e, set[k]);
    }
    e->n_tick_set = 0;
}

void engine_tick(struct engine *e, int64_t now_ns)
{
    if (e->hold)
        hold_call(e, HELD_TICK, NULL, NULL, now_ns);
    int64_t grace_ns = e->cfg->daemon.grace_s * NS;
    if (e->heard_stale) {
        /* No list: every meter, as every tick did before it. */
        int64_t latest_ns = INT64_MIN;
        for (size_t i = 0; i < e->n_meters; i++) {
            struct meter_state *m = &e->meters[i];
            if (m->silent || m->last_arrival_ns == NONE)
                continue;
            if (now_ns - m->last_arrival_ns >= grace_ns) {
                m->silent = true;
                tick_touch(e, m->cluster);
            } else if (m->last_arrival_ns > latest_ns) {
                latest_ns = m->last_arrival_ns;
            }
        }
        /* Pushes from now on come at the list's tail again. */
        if (latest_ns <= now_ns)
            heard_build(e);
    } else {
        while (e->heard_head) {
            struct meter_state *m = &e->meters[e->heard_head - 1];
            if (now_ns - m->last_arrival_ns < grace_ns)
                break;
            m->silent = true;
            heard_unlink(e, m);
            tick_touch(e, m->cluster);
        }
    }
    if (e->tick_all) {
        e->tick_all = false;
        close_everything(e, now_ns);
    } else {
        close_due(e, now_ns);
    }
}

void engine_finish(struct engine *e, int64_t now_ns)
{
    if (e->hold)
        hold_call(e, HELD_FINISH, NULL, NULL, now_ns);
    close_all(e, now_ns, true);
    e->tick_all = true; /* closed as if all were silent: a later tick looks at everything */
}

void engine_stats(const struct engine *e, struct engine_stats *out)
{
    *out = e->stats;
    out->meters = e->n_meters;
    out->samples_kept = 0;
    for (size_t i = 0; i < e->n_meters; i++)
        out->samples_kept += e->meters[i].buf.n;
    out->waiting_for_caps = engine_waiting_for_caps(e);
    out->held_calls = 0;
    if (e->hold) {
        /* The rows priced while waiting are not emitted: the counters stand
         * where the wait began until the replay counts them. */
        out->billing_rows = e->hold->billing_rows;
        out->adjustment_rows = e->hold->adjustment_rows;
        out->demand_rows = e->hold->demand_rows;
        out->held_calls = e->hold->n_calls;
    }
}

void engine_set_cap_consumed(struct engine *e, const char *tenant, const char *programme,
                             int32_t year, int64_t consumed_cny4)
{
    if (e->hold)
        hold_cap(e, tenant, programme, year, consumed_cny4);
    *caps_consumed(&e->caps, tenant, programme, year) = consumed_cny4;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_meters; i++) {
        free(e->meters[i].key_heap);
        sample_buf_free(e->samples, &e->meters[i].buf);
    }
    free(e->meters);
    sample_mem_free(e->samples);
    for (size_t i = 0; i < e->n_clusters; i++) {
        struct cluster_state *cs = &e->clusters[i];
        free(cs->id);
        free(cs->meters);
        free(cs->table);
        free(cs->marks);
        free(cs->rows);
        free(cs->months);
        free(cs->reopened);
    }
    free(e->clusters);
    free(e->cluster_table);
    caps_free(&e->caps);
    for (size_t i = 0; i < e->n_names; i++)
        free(e->names[i]);
    free(e->names);
    free(e->items);
    free(e->reopened_clusters);
    free(e->tick_set);
    deadlines_free(&e->due);
    hold_free(e->hold);
    free(e);
}

/* ------------------------------------------------------------------ */
/* For reprice.c (engine_private.h)                                    */

struct closed_row *engine_find_row(struct cluster_state *cs, int64_t start_s)
{
    return find_row(cs, start_s);
}

struct month_state *engine_find_month(struct cluster_state *cs, int64_t start_s)
{
    return find_month(cs, start_s);
}

int32_t engine_local_year(const struct cluster *c, int64_t ts_s)
{
    return local_year(c, ts_s);
}

int64_t engine_kw_of(int64_t kwh_micro, int64_t per_hour)
{
    return kw_of(kwh_micro, per_hour);
}

void engine_release_stored(struct engine *e, const struct cluster *c, int32_t year,
                           const struct stored_paid *paid, size_t n)
{
    release_stored(e, c, year, paid, n);
}

void engine_diff_lines(struct engine *e, const struct stored_paid *old, size_t n_old,
                       const struct subsidy *new, struct engine_lines *out)
{
    diff_lines(e, old, n_old, new, out);
}

void engine_store_paid(struct engine *e, const struct subsidy *s, struct stored_paid *paid,
                       size_t *n)
{
    store_paid(e, s, paid, n);
}

void engine_price_month(struct engine *e, struct cluster_state *cs, struct month_state *ms)
{
    price_month(e, cs, ms);
}

void engine_month_demand(const struct cluster *c, const struct tariff_version *v,
                         const struct month_state *ms, int64_t max_kw, struct month_demand *out)
{
    month_demand(c, v, ms, max_kw, out);
}

struct month_state *engine_month_for(struct cluster_state *cs, int64_t start_s)
{
    return month_for(cs, start_s);
}

void engine_close_month_at(struct engine *e, struct cluster_state *cs, int64_t last_start_s)
{
    close_month_at(e, cs, last_start_s);
}

int64_t engine_first_start(const struct engine *e, const struct cluster_state *cs)
{
    return first_start(e, cs);
}
