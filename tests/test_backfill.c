/*
 * Unit tests for backfill (tariff/backfill.h): history measured by an
 * engine that does not price, planned against a ledger and a live engine,
 * and applied to the live engine gives, per interval and per whole month,
 * the ledger that pricing the same samples offline gives; a second
 * backfill gives nothing; months shared with live data get one demand row
 * over both; the backfilled span is closed to live samples. A capped
 * programme pays a backfill what live data left of the yearly cap and no
 * more; a plan applied to an engine reloaded from its snapshot makes the
 * same rows and state; a counter meter backfills as it prices offline.
 */
#include "backfill.h"
#include "ledger_model.h"

#define INTERVAL_S 900

/* c1 steps with the hour and peaks at 400 kW at 19:00 on 2025-03-20
 * (history), c2 a flat 40 kW: a sample every 5 minutes in [from, to). */
static double c1_kw(int64_t t)
{
    int hour = (int)((t - L(2025, 3, 1, 0, 0)) / 3600 % 24);
    if (t >= L(2025, 3, 20, 19, 0) && t < L(2025, 3, 20, 19, 30))
        return 400;
    return 100 + 10 * hour;
}

typedef void (*push_fn)(void *ctx, const char *cluster, int64_t ts_s, double kw);

static void history(push_fn push_to, void *ctx, int64_t from, int64_t to)
{
    for (int64_t t = from; t < to; t += 300) {
        push_to(ctx, "c1", t, c1_kw(t));
        push_to(ctx, "c2", t, 40);
    }
}

static void push_run(void *ctx, const char *cluster, int64_t ts_s, double kw)
{
    push(ctx, cluster, ts_s, kw);
}

/* The measuring side of a backfill, as the daemon runs it. */
struct measuring {
    struct engine *e;
    struct backfill_sums *b;
    const struct config *cfg;
    int64_t now_ns;
    bool quarantined;
    uint64_t samples;
};

static void on_measured_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    (void)s;
    (void)reason;
    ((struct measuring *)ctx)->quarantined = true;
}

static void push_meter(struct measuring *m, const char *cluster, const char *meter, int64_t ts_s,
                       double kw)
{
    struct engine_sample s = {cluster, meter, SAMPLE_POWER, ts_s * NS, kw};
    if (s.ts_ns > m->now_ns)
        m->now_ns = s.ts_ns;
    m->quarantined = false;
    struct error err;
    ck_assert_msg(engine_push(m->e, &s, m->now_ns, &err), "push: %s", err.msg);
    if (!m->quarantined)
        backfill_sums_count(m->b, config_find_cluster(m->cfg, cluster), s.ts_ns);
    m->samples++;
    engine_batch_done(m->e, m->now_ns);
}

static void push_measuring(void *ctx, const char *cluster, int64_t ts_s, double kw)
{
    push_meter(ctx, cluster, "main", ts_s, kw);
}

static void on_measured_energy(void *ctx, const struct cluster *c, int64_t start_s,
                               int64_t kwh_micro, int64_t missing_s)
{
    backfill_sums_energy(((struct measuring *)ctx)->b, c, start_s, kwh_micro, missing_s);
}

static struct measuring *measuring_new(const struct config *cfg)
{
    static struct measuring m;
    memset(&m, 0, sizeof m);
    m.cfg = cfg;
    m.now_ns = INT64_MIN;
    m.b = backfill_sums_new(cfg);
    struct engine_sink sink = {
        .ctx = &m, .quarantine = on_measured_quarantine, .energy = on_measured_energy};
    m.e = engine_new(cfg, &sink);
    engine_caps_recovered(m.e);
    return &m;
}

static void measuring_finish(struct measuring *m)
{
    engine_finish(m->e, m->now_ns);
    backfill_sums_finish(m->b, m->e);
}

static void measuring_free(struct measuring *m)
{
    engine_free(m->e);
    backfill_sums_free(m->b);
}

static struct ledger want, got;

/* Keys of a model ledger, as the daemon reads them from PostgreSQL. */
struct keys {
    struct backfill_ledger_keys k[2];
    int64_t starts[2][LEDGER_MODEL_INTERVALS];
    int32_t row_months[2][8], demand_months[2][8];
};

static int by_start(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static size_t keys_of(const struct ledger *l, struct keys *k)
{
    static const char *ids[2] = {"c1", "c2"};
    memset(k, 0, sizeof *k);
    for (int c = 0; c < 2; c++) {
        struct backfill_ledger_keys *x = &k->k[c];
        x->cluster = ids[c];
        size_t n = 0, nm = 0, nd = 0;
        for (size_t i = 0; i < l->n_iv; i++) {
            if (strcmp(l->iv[i].cluster, ids[c]) != 0)
                continue;
            k->starts[c][n++] = l->iv[i].start_s;
            bool seen = false;
            for (size_t j = 0; j < nm; j++)
                seen |= k->row_months[c][j] == l->iv[i].month_day;
            if (!seen)
                k->row_months[c][nm++] = l->iv[i].month_day;
        }
        for (size_t i = 0; i < l->n_mo; i++)
            if (strcmp(l->mo[i].cluster, ids[c]) == 0)
                k->demand_months[c][nd++] = l->mo[i].month_day;
        qsort(k->starts[c], n, sizeof k->starts[c][0], by_start);
        x->interval_starts = k->starts[c];
        x->n_interval_starts = n;
        x->row_months = k->row_months[c];
        x->n_row_months = nm;
        x->demand_months = k->demand_months[c];
        x->n_demand_months = nd;
    }
    return 2;
}

static struct keys keys;

/* Measures history [from, to) and backfills it into live (against the
 * ledger l's keys, l may be NULL); returns the plan's taken counts. */
static struct backfill_taken backfill(struct run *live, const struct ledger *l, int64_t from,
                                      int64_t to, int64_t now_s, struct backfill_plan *plan_out)
{
    struct measuring *m = measuring_new(live->cfg);
    history(push_measuring, m, from, to);
    measuring_finish(m);
    struct backfill_plan plan;
    struct backfill_taken taken;
    size_t nk = l ? keys_of(l, &keys) : 0;
    backfill_plan_build(m->b, live->e, keys.k, nk, now_s * NS, &plan, &taken);
    struct reprice_effect *eff = calloc(plan.n_months + 1, sizeof *eff);
    struct error err;
    ck_assert_msg(engine_backfill(live->e, &plan, eff, &err), "backfill: %s", err.msg);
    free(eff);
    if (plan_out)
        *plan_out = plan;
    else
        backfill_plan_free(&plan);
    measuring_free(m);
    return taken;
}

/* tariffd price on history [from, to). */
static void priced_history(int64_t from, int64_t to)
{
    memset(&want, 0, sizeof want);
    struct run r;
    run_start(&r, base_config, &want);
    history(push_run, &r, from, to);
    engine_finish(r.e, r.now_ns);
    run_stop(&r);
}

static const struct l_month *month_in(const struct ledger *l, const char *cluster, int y, int mo)
{
    int32_t day = civil_to_day((struct civil_date){y, mo, 1});
    for (size_t i = 0; i < l->n_mo; i++)
        if (l->mo[i].month_day == day && strcmp(l->mo[i].cluster, cluster) == 0)
            return &l->mo[i];
    return NULL;
}

START_TEST(test_history_equals_offline_pricing_and_twice_adds_nothing)
{
    int64_t from = L(2025, 3, 1, 0, 0), to = L(2025, 4, 10, 0, 0);
    priced_history(from, to);
    ck_assert_uint_gt(want.n_iv, 7000);
    ck_assert_uint_eq(want.n_mo, 4);

    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    struct backfill_plan plan;
    struct backfill_taken taken = backfill(&live, NULL, from, to, L(2025, 6, 1, 0, 0), &plan);
    ck_assert_uint_eq(taken.intervals, 0);
    ck_assert_uint_eq(plan.n_months, 4);
    ck_assert_str_eq(plan.months[0].cluster, "c1");
    ck_assert_int_eq(plan.months[0].fate, BACKFILL_WHOLE);  /* March */
    ck_assert_int_eq(plan.months[1].fate, BACKFILL_MERGED); /* April: history stops inside */
    backfill_plan_free(&plan);
    expect_same_ledger(&got, &want);
    ck_assert_uint_eq(got.rows, want.n_iv + want.n_mo); /* revision 0 only */

    /* Again, with the ledger as it now is: nothing. */
    size_t rows = got.rows;
    taken = backfill(&live, &got, from, to, L(2025, 6, 1, 0, 0), NULL);
    ck_assert_uint_eq(got.rows, rows);
    ck_assert_uint_eq(taken.intervals, want.n_iv);
    ck_assert_uint_eq(taken.samples, 2 * (uint64_t)((to - from) / 300));
    run_stop(&live);
}
END_TEST

START_TEST(test_month_shared_with_live_data_gets_one_demand_over_both)
{
    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    /* Live data from 2025-04-15 to 2025-05-01 02:00: April closes live,
     * and the engine still holds it (late_window is 6 h). */
    for (int64_t t = L(2025, 4, 15, 0, 0); t < L(2025, 5, 1, 2, 0); t += 300) {
        push(&live, "c1", t, 150);
        push(&live, "c2", t, 40);
    }
    engine_tick(live.e, live.now_ns);
    ck_assert_ptr_nonnull(month_in(&got, "c1", 2025, 4));
    ck_assert_int_eq(month_in(&got, "c1", 2025, 4)->max_kw, 150000000);

    /* History 2025-03-01 .. 2025-04-10 (its peak, 400 kW, in March; in
     * April c1 reaches 330 kW at 23:00). */
    int64_t from = L(2025, 3, 1, 0, 0), to = L(2025, 4, 10, 0, 0);
    struct backfill_plan plan;
    backfill(&live, &got, from, to, L(2025, 5, 1, 2, 0), &plan);
    ck_assert_int_eq(plan.months[0].fate, BACKFILL_WHOLE);
    ck_assert_int_eq(plan.months[1].fate, BACKFILL_MERGED);
    backfill_plan_free(&plan);

    /* March as offline; April's demand (held closed by the engine) was
     * adjusted to the history's peak, in one more revision. */
    priced_history(from, to);
    const struct l_month *mar = month_in(&got, "c1", 2025, 3), *apr = month_in(&got, "c1", 2025, 4);
    ck_assert_int_eq(mar->max_kw, month_in(&want, "c1", 2025, 3)->max_kw);
    ck_assert_int_eq(mar->charge, month_in(&want, "c1", 2025, 3)->charge);
    ck_assert_int_eq(apr->max_kw, month_in(&want, "c1", 2025, 4)->max_kw);
    ck_assert_int_eq(apr->charge, month_in(&want, "c1", 2025, 4)->charge);
    ck_assert_int_eq(apr->revision, 1);
    for (size_t i = 0; i < want.n_iv; i++) {
        const struct l_interval *w = &want.iv[i];
        bool found = false;
        for (size_t k = 0; k < got.n_iv && !found; k++)
            if (got.iv[k].start_s == w->start_s && strcmp(got.iv[k].cluster, w->cluster) == 0) {
                found = true;
                ck_assert_int_eq(got.iv[k].kwh, w->kwh);
                ck_assert_int_eq(got.iv[k].net, w->net);
            }
        ck_assert(found);
    }

    /* A live sample in the backfilled span is quarantined, not billed. */
    size_t rows = got.rows;
    struct engine_stats st;
    engine_stats(live.e, &st);
    uint64_t q = st.quarantined;
    push(&live, "c1", L(2025, 4, 9, 12, 0), 999);
    engine_stats(live.e, &st);
    ck_assert_uint_eq(st.quarantined, q + 1);
    engine_tick(live.e, live.now_ns);
    ck_assert_uint_eq(got.rows, rows);
    run_stop(&live);
}
END_TEST

START_TEST(test_intervals_the_ledger_has_are_left_out_and_counted)
{
    /* A ledger that has 2025-03-10 of c1 (a day: 96 intervals). */
    int64_t from = L(2025, 3, 1, 0, 0), to = L(2025, 3, 15, 0, 0);
    static struct ledger held;
    memset(&held, 0, sizeof held);
    for (int64_t t = L(2025, 3, 10, 0, 0); t < L(2025, 3, 11, 0, 0); t += INTERVAL_S) {
        struct l_interval *x = &held.iv[held.n_iv++];
        memset(x, 0, sizeof *x);
        snprintf(x->cluster, sizeof x->cluster, "c1");
        x->start_s = t;
        x->month_day = civil_to_day((struct civil_date){2025, 3, 1});
    }
    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    struct backfill_plan plan;
    struct backfill_taken taken = backfill(&live, &held, from, to, L(2025, 6, 1, 0, 0), &plan);
    ck_assert_uint_eq(taken.intervals, 96);
    ck_assert_uint_eq(taken.samples, 96 * 3);
    /* March has rows in the ledger: its demand is left as it is. */
    ck_assert_int_eq(plan.months[0].fate, BACKFILL_LEFT);
    backfill_plan_free(&plan);
    ck_assert_ptr_null(month_in(&got, "c1", 2025, 3));
    ck_assert_ptr_nonnull(month_in(&got, "c2", 2025, 3)); /* c2's: closed at once */
    size_t c1 = 0;
    for (size_t i = 0; i < got.n_iv; i++)
        c1 += strcmp(got.iv[i].cluster, "c1") == 0;
    ck_assert_uint_eq(c1, 14 * 96 - 96);
    run_stop(&live);
}
END_TEST

START_TEST(test_a_plan_that_does_not_fit_changes_nothing)
{
    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    push(&live, "c1", L(2025, 3, 5, 0, 0), 100);
    struct backfill_interval iv[2] = {
        {"c1", L(2025, 3, 4, 0, 0), 25000000, 0},
        {"c1", L(2025, 3, 5, 0, 0), 25000000, 0}, /* live data's */
    };
    struct backfill_month mo = {"c1", civil_to_day((struct civil_date){2025, 3, 1}),
                                BACKFILL_MERGED};
    struct backfill_plan plan = {L(2025, 3, 6, 0, 0) * NS, iv, 2, &mo, 1};
    struct error err;
    ck_assert(!engine_backfill(live.e, &plan, NULL, &err));
    ck_assert_msg(strstr(err.msg, "live data's") != NULL, "%s", err.msg);
    ck_assert_uint_eq(got.rows, 0);
    struct backfill_interval off = {"c1", L(2025, 3, 4, 0, 7), 1, 0};
    plan.intervals = &off;
    plan.n_intervals = 1;
    ck_assert(!engine_backfill(live.e, &plan, NULL, &err));
    ck_assert_msg(strstr(err.msg, "not the start of an interval") != NULL, "%s", err.msg);
    struct backfill_interval unknown = {"c9", L(2025, 3, 4, 0, 0), 1, 0};
    plan.intervals = &unknown;
    ck_assert(!engine_backfill(live.e, &plan, NULL, &err));
    ck_assert_msg(strstr(err.msg, "not in the config") != NULL, "%s", err.msg);
    ck_assert_uint_eq(got.rows, 0);
    run_stop(&live);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Caps, a reloaded engine, a counter                                */

static int64_t programme_total(const struct ledger *l, const char *programme)
{
    int64_t sum = 0;
    for (size_t i = 0; i < l->n_iv; i++)
        sum += line_of(&l->iv[i].lines, programme);
    for (size_t i = 0; i < l->n_mo; i++)
        sum += line_of(&l->mo[i].lines, programme);
    return sum;
}

/* pa capped at 2000 CNY a year for t1: a day of live data in May takes
 * part of it, then history of March (ten days, more than what is left)
 * takes exactly the rest, and a second backfill (other days of March)
 * takes nothing. The live rows keep what they were paid. */
START_TEST(test_backfill_consumes_what_the_cap_has_left_and_no_more)
{
    const int64_t cap = 20000000; /* 2000 CNY in cny4 */
    const char *text =
        edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 2000\n");
    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, text, &got);
    for (int64_t t = L(2025, 5, 1, 0, 0); t < L(2025, 5, 2, 0, 0); t += 300)
        push(&live, "c1", t, 150);
    engine_tick(live.e, L(2025, 5, 2, 1, 0) * NS);
    int64_t live_paid = programme_total(&got, "pa");
    size_t live_rows = got.n_iv;
    ck_assert_int_gt(live_paid, 0);
    ck_assert_int_lt(live_paid, cap / 2);

    /* Uncapped, this history would be paid more than the cap has left. */
    priced_history(L(2025, 3, 1, 0, 0), L(2025, 3, 11, 0, 0));
    ck_assert_int_gt(programme_total(&want, "pa"), cap - live_paid);

    backfill(&live, &got, L(2025, 3, 1, 0, 0), L(2025, 3, 11, 0, 0), L(2025, 5, 2, 1, 0), NULL);
    ck_assert_int_eq(programme_total(&got, "pa"), cap);
    int64_t live_after = 0;
    for (size_t i = 0; i < live_rows; i++)
        live_after += line_of(&got.iv[i].lines, "pa");
    ck_assert_int_eq(live_after, live_paid);
    /* Interval by interval, the history was paid as priced until the cap
     * ran out, and nothing after. */
    int64_t history_paid = 0;
    for (size_t i = live_rows; i < got.n_iv; i++) {
        int64_t paid = line_of(&got.iv[i].lines, "pa");
        ck_assert_int_ge(paid, 0);
        history_paid += paid;
    }
    ck_assert_int_eq(history_paid, cap - live_paid);

    size_t rows = got.rows;
    backfill(&live, &got, L(2025, 3, 20, 0, 0), L(2025, 3, 22, 0, 0), L(2025, 5, 2, 1, 0), NULL);
    ck_assert_uint_gt(got.rows, rows);
    ck_assert_int_eq(programme_total(&got, "pa"), cap);
    run_stop(&live);
}
END_TEST

static struct ledger other;

/* The live engine saved and loaded again (as a checkpoint does) takes the
 * same plan to the same rows, and to the same state. */
START_TEST(test_a_plan_on_a_reloaded_engine_makes_the_same_rows)
{
    memset(&got, 0, sizeof got);
    struct run a, b;
    run_start(&a, base_config, &got);
    for (int64_t t = L(2025, 5, 1, 0, 0); t < L(2025, 5, 2, 0, 0); t += 300) {
        push(&a, "c1", t, 150);
        push(&a, "c2", t, 40);
    }
    engine_tick(a.e, a.now_ns);
    size_t len;
    void *snap = engine_save(a.e, &len);
    memset(&b, 0, sizeof b);
    b.cfg = parse(base_config);
    b.l = &other;
    struct engine_sink s = sink_into;
    s.ctx = &other;
    struct error err;
    b.e = engine_load(b.cfg, &s, snap, len, &err);
    ck_assert_msg(b.e != NULL, "engine_load: %s", err.msg);
    free(snap);

    struct measuring *m = measuring_new(a.cfg);
    history(push_measuring, m, L(2025, 3, 1, 0, 0), L(2025, 4, 10, 0, 0));
    measuring_finish(m);
    struct backfill_plan plan;
    struct backfill_taken taken;
    backfill_plan_build(m->b, a.e, NULL, 0, L(2025, 5, 2, 0, 0) * NS, &plan, &taken);
    ck_assert_uint_gt(plan.n_intervals, 7000);
    memset(&got, 0, sizeof got);
    memset(&other, 0, sizeof other);
    struct reprice_effect ea[8] = {0}, eb[8] = {0};
    ck_assert_uint_le(plan.n_months, 8);
    ck_assert_msg(engine_backfill(a.e, &plan, ea, &err), "%s", err.msg);
    ck_assert_msg(engine_backfill(b.e, &plan, eb, &err), "%s", err.msg);
    ck_assert_uint_eq(other.rows, got.rows);
    ck_assert_uint_eq(got.n_mo, 4);
    expect_same_ledger(&other, &got);
    ck_assert(memcmp(ea, eb, sizeof ea) == 0);
    size_t la, lb;
    void *sa = engine_save(a.e, &la), *sb = engine_save(b.e, &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert(memcmp(sa, sb, la) == 0);
    free(sa);
    free(sb);
    backfill_plan_free(&plan);
    measuring_free(m);
    run_stop(&a);
    run_stop(&b);
}
END_TEST

/* c1 measured by a counter (kWh read every 5 minutes, c1_kw's energy)
 * backfills as tariffd price prices the same readings. */
static double c1_counter;

static void push_counter(void *ctx, const char *cluster, int64_t ts_s, double kw, bool measuring)
{
    struct engine_sample s = {cluster, "main", SAMPLE_POWER, ts_s * NS, kw};
    if (strcmp(cluster, "c1") == 0) {
        s.meter = "kwh";
        s.kind = SAMPLE_COUNTER;
        s.value = c1_counter;
        c1_counter += kw * 300 / 3600;
    }
    if (measuring) {
        struct measuring *m = ctx;
        if (s.ts_ns > m->now_ns)
            m->now_ns = s.ts_ns;
        m->quarantined = false;
        struct error err;
        ck_assert_msg(engine_push(m->e, &s, m->now_ns, &err), "push: %s", err.msg);
        ck_assert(!m->quarantined);
        backfill_sums_count(m->b, config_find_cluster(m->cfg, cluster), s.ts_ns);
        engine_batch_done(m->e, m->now_ns);
    } else {
        struct run *r = ctx;
        struct error err;
        if (s.ts_ns > r->now_ns)
            r->now_ns = s.ts_ns;
        ck_assert_msg(engine_push(r->e, &s, r->now_ns, &err), "push: %s", err.msg);
        engine_batch_done(r->e, r->now_ns);
    }
}

static void push_counter_run(void *ctx, const char *cluster, int64_t ts_s, double kw)
{
    push_counter(ctx, cluster, ts_s, kw, false);
}

static void push_counter_measuring(void *ctx, const char *cluster, int64_t ts_s, double kw)
{
    push_counter(ctx, cluster, ts_s, kw, true);
}

START_TEST(test_history_of_a_counter_equals_offline_pricing)
{
    int64_t from = L(2025, 3, 1, 0, 0), to = L(2025, 4, 2, 0, 0);
    memset(&want, 0, sizeof want);
    struct run r;
    run_start(&r, base_config, &want);
    c1_counter = 1000;
    history(push_counter_run, &r, from, to);
    engine_finish(r.e, r.now_ns);
    run_stop(&r);

    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    struct measuring *m = measuring_new(live.cfg);
    c1_counter = 1000;
    history(push_counter_measuring, m, from, to);
    measuring_finish(m);
    struct backfill_plan plan;
    struct backfill_taken taken;
    backfill_plan_build(m->b, live.e, NULL, 0, L(2025, 5, 1, 0, 0) * NS, &plan, &taken);
    ck_assert_uint_eq(plan.n_months, 4);
    ck_assert_int_eq(plan.months[0].fate, BACKFILL_WHOLE); /* c1's March */
    struct error err;
    ck_assert_msg(engine_backfill(live.e, &plan, NULL, &err), "%s", err.msg);
    backfill_plan_free(&plan);
    measuring_free(m);
    expect_same_ledger(&got, &want);
    const struct l_month *mar = month_in(&got, "c1", 2025, 3);
    ck_assert_ptr_nonnull(mar);
    ck_assert_int_eq(mar->max_kw, 400000000); /* 19:00 on the 20th, from the counter */
    int64_t kwh = 0;
    for (size_t i = 0; i < got.n_iv; i++)
        if (strcmp(got.iv[i].cluster, "c1") == 0)
            kwh += got.iv[i].kwh;
    ck_assert_int_gt(kwh, 0);
    run_stop(&live);
}
END_TEST

/* A whole month whose history ends before the month does (its old meter
 * stopped on the 20th; the new one is the live data's, from the 1st of
 * the next month) is final to its end: a live sample on the 25th cannot
 * give the month a second demand row of revision 0. */
START_TEST(test_a_whole_month_is_final_to_its_end)
{
    memset(&got, 0, sizeof got);
    struct run live;
    run_start(&live, base_config, &got);
    for (int64_t t = L(2025, 2, 1, 0, 0); t < L(2025, 2, 1, 6, 0); t += 300)
        push(&live, "c1", t, 80);

    struct measuring *m = measuring_new(live.cfg);
    for (int64_t t = L(2025, 1, 1, 0, 0); t < L(2025, 1, 20, 0, 0); t += 300)
        push_meter(m, "c1", "old", t, 60);
    for (int64_t t = L(2025, 2, 1, 0, 0); t < L(2025, 2, 1, 6, 0); t += 300)
        push_meter(m, "c1", "main", t, 80);
    measuring_finish(m);
    struct backfill_plan plan;
    struct backfill_taken taken;
    backfill_plan_build(m->b, live.e, NULL, 0, L(2025, 2, 1, 6, 0) * NS, &plan, &taken);
    ck_assert_uint_eq(plan.n_months, 1);
    ck_assert_int_eq(plan.months[0].fate, BACKFILL_WHOLE);
    struct error err;
    ck_assert_msg(engine_backfill(live.e, &plan, NULL, &err), "backfill: %s", err.msg);
    backfill_plan_free(&plan);
    measuring_free(m);
    ck_assert_ptr_nonnull(month_in(&got, "c1", 2025, 1));

    /* Before the live engine's own intervals are final (late_window). */
    size_t january = 0;
    for (size_t i = 0; i < got.n_iv; i++)
        january += got.iv[i].start_s < L(2025, 2, 1, 0, 0);
    struct engine_stats st;
    engine_stats(live.e, &st);
    uint64_t q = st.quarantined;
    push(&live, "c1", L(2025, 1, 25, 12, 0), 500);
    engine_tick(live.e, live.now_ns + 600 * NS);
    engine_stats(live.e, &st);
    ck_assert_uint_eq(st.quarantined, q + 1);
    size_t after = 0;
    for (size_t i = 0; i < got.n_iv; i++)
        after += got.iv[i].start_s < L(2025, 2, 1, 0, 0);
    ck_assert_uint_eq(after, january);
    ck_assert_int_eq(month_in(&got, "c1", 2025, 1)->revision, 0);
    run_stop(&live);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backfill");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_history_equals_offline_pricing_and_twice_adds_nothing);
    tcase_add_test(tc, test_month_shared_with_live_data_gets_one_demand_over_both);
    tcase_add_test(tc, test_intervals_the_ledger_has_are_left_out_and_counted);
    tcase_add_test(tc, test_a_plan_that_does_not_fit_changes_nothing);
    tcase_add_test(tc, test_backfill_consumes_what_the_cap_has_left_and_no_more);
    tcase_add_test(tc, test_a_plan_on_a_reloaded_engine_makes_the_same_rows);
    tcase_add_test(tc, test_history_of_a_counter_equals_offline_pricing);
    tcase_add_test(tc, test_a_whole_month_is_final_to_its_end);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
