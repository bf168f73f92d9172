/*
 * Unit tests for what a tick looks at (tariff/engine.c): a tick marks
 * silent only the meters at the head of the heard list and closes only in
 * the clusters touched since the last tick, those with reopened intervals
 * and those whose deadline has come (tariff/deadlines.c). That must give
 * exactly what looking at every meter and cluster gives: the same rows, in
 * the same order, with the same money.
 *
 * So each test drives two engines with the same calls: one as the daemon
 * runs it, and a reference that, before each tick, is told to build its
 * heard list again from every meter and to look at every cluster (what
 * the engine does after a load), which is the tick as it was before
 * deadlines. Their sinks write every row as a line of text; the texts
 * must be equal.
 */
#include "config.h"
#include "deadlines.h"
#include "engine.h"
#include "engine_private.h" /* heard_stale and tick_all, to make the reference */

#include <check.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* Three clusters, two tenants sharing a capped programme, a late window
 * of an hour so that intervals become final within a run. */
#define TICK_CONFIG(daemon)                                                                        \
    "[daemon]\ninterval = 15m\nmax_gap = 5m\n" daemon "max_subsidy = 0.5\n"                        \
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"                                                      \
    "[tenant t2]\ntoken_sha256 = " TOKEN "\n"                                                      \
    "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"                                       \
    "[chip for]\nvendor = B\ndomestic = no\nrated_kw = 1\n"                                        \
    "[site s1]\nprovince = p1\ntariff = tf\n"                                                      \
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = dom*3, for*1\ntransformer_kva = 1000\n"     \
    "contract_kw = 100\n"                                                                          \
    "[cluster c2]\ntenant = t1\nsite = s1\ninventory = dom*1, for*1\ntransformer_kva = 500\n"      \
    "contract_kw = 50\n"                                                                           \
    "[cluster c3]\ntenant = t2\nsite = s1\ninventory = dom*2, for*1\ntransformer_kva = 500\n"      \
    "contract_kw = 50\n"                                                                           \
    "[cluster c4]\ntenant = t2\nsite = s1\ninventory = dom*1, for*1\ntransformer_kva = 500\n"      \
    "contract_kw = 50\n"                                                                           \
    "[cluster c5]\ntenant = t1\nsite = s1\ninventory = dom*1\ntransformer_kva = 500\n"             \
    "contract_kw = 50\n"                                                                           \
    "[cluster c6]\ntenant = t2\nsite = s1\ninventory = dom*2, for*2\ntransformer_kva = 500\n"      \
    "contract_kw = 50\n"                                                                           \
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nprice.flat = 0.5\n"       \
    "price.peak = 1.0\nsurcharge = 0.02\n"                                                         \
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\nmonths = jan-dec base\n"     \
    "demand_basis = max_demand\ndemand.kw = 30\n"                                                  \
    "[programme pa]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5\n"    \
    "basis = energy\nmode = pro_rata\ncap_cny_per_year = 40\n"

static const char tick_config[] = TICK_CONFIG("grace = 2m\nlate_window = 1h\n");
/* What a reload may bring: other silences and finals, and finals sooner
 * than silences. */
static const char tick_config_reloaded[] = TICK_CONFIG("grace = 5m\nlate_window = 2h\n");
static const char tick_config_short_window[] = TICK_CONFIG("grace = 30m\nlate_window = 5m\n");
/* A grace of centuries: a month's end plus grace is past what int64
 * nanoseconds hold. */
static const char tick_config_long_grace[] = TICK_CONFIG("grace = 106751d\nlate_window = 1h\n");

/* ---------------------------------------------------------------- */
/* A sink that writes every row as text                              */

struct trace {
    char *text;
    size_t len, cap;
    size_t rows;
};

static void trace_add(struct trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace_add(struct trace *t, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof line);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->text = realloc(t->text, t->cap);
    }
    memcpy(t->text + t->len, line, (size_t)n + 1);
    t->len += (size_t)n;
    t->rows++;
}

static void on_billing(void *ctx, const struct billing_row *r)
{
    trace_add(ctx,
              "B %s %" PRId64 " r%d kwh=%" PRId64 " e=%" PRId64 " s=%" PRId64 " sub=%" PRId64
              " net=%" PRId64 " miss=%" PRId64 " %s\n",
              r->cluster->id, r->interval_start_s, r->revision, r->kwh_micro, r->energy_charge_cny4,
              r->surcharge_cny4, r->subsidy_cny4, r->net_cny4, r->missing_s,
              r->programme ? r->programme : "-");
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    trace_add(ctx,
              "D %s %d r%d max=%" PRId64 "@%" PRId64 " bill=%" PRId64 " c=%" PRId64 " sub=%" PRId64
              " net=%" PRId64 "\n",
              r->cluster->id, (int)r->month_day, r->revision, r->max_kw_micro,
              r->max_interval_start_s, r->billing_kw_micro, r->charge_cny4, r->subsidy_cny4,
              r->net_cny4);
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    trace_add(ctx, "Q %s %s %" PRId64 " %.3f %s\n", s->cluster, s->meter, s->ts_ns, s->value,
              reason);
}

/* ---------------------------------------------------------------- */
/* Two engines, the same calls                                       */

struct pair {
    struct config *cfg, *cfg_reloaded, *cfg_short_window, *cfg_long_grace, *cfg_in_force;
    struct trace ta, tb;
    struct engine *a; /* as the daemon runs it */
    struct engine *b; /* the reference: every tick looks at everything */
    int64_t now_ns;
    int step;
};

static struct engine *new_engine(struct pair *p, struct trace *t)
{
    struct engine_sink sink = {t, on_billing, on_demand, on_quarantine, NULL};
    struct engine *e = engine_new(p->cfg_in_force, &sink);
    engine_caps_recovered(e);
    return e;
}

static void pair_open(struct pair *p)
{
    memset(p, 0, sizeof *p);
    struct errors errs = {0};
    p->cfg = config_from_string("tick.conf", tick_config, &errs);
    p->cfg_reloaded = config_from_string("tick.conf", tick_config_reloaded, &errs);
    p->cfg_short_window = config_from_string("tick.conf", tick_config_short_window, &errs);
    p->cfg_long_grace = config_from_string("tick.conf", tick_config_long_grace, &errs);
    ck_assert_msg(p->cfg && p->cfg_reloaded && p->cfg_short_window && p->cfg_long_grace,
                  "the test configs do not load");
    p->cfg_in_force = p->cfg;
    p->a = new_engine(p, &p->ta);
    p->b = new_engine(p, &p->tb);
}

static void pair_close(struct pair *p)
{
    engine_free(p->a);
    engine_free(p->b);
    config_free(p->cfg);
    config_free(p->cfg_reloaded);
    config_free(p->cfg_short_window);
    config_free(p->cfg_long_grace);
    free(p->ta.text);
    free(p->tb.text);
}

/* Both traces the same, and both engines' counters. */
static void pair_check(struct pair *p, unsigned seed)
{
    if (p->ta.len != p->tb.len ||
        (p->ta.len > 0 && memcmp(p->ta.text, p->tb.text, p->ta.len) != 0)) {
        size_t i = 0;
        while (i < p->ta.len && i < p->tb.len && p->ta.text[i] == p->tb.text[i])
            i++;
        while (i > 0 && p->ta.text[i - 1] != '\n')
            i--;
        ck_abort_msg("seed %u, step %d: the ticks differ from the reference at\n  %.120s\n"
                     "  reference: %.120s",
                     seed, p->step, p->ta.text + i, p->tb.text + i);
    }
    struct engine_stats sa, sb;
    engine_stats(p->a, &sa);
    engine_stats(p->b, &sb);
    ck_assert_uint_eq(sa.billing_rows, sb.billing_rows);
    ck_assert_uint_eq(sa.adjustment_rows, sb.adjustment_rows);
    ck_assert_uint_eq(sa.demand_rows, sb.demand_rows);
    ck_assert_uint_eq(sa.samples_kept, sb.samples_kept);
}

/* The two engines' state after a tick: what each cluster closed, made
 * final and holds, and each meter's silence and samples. A tick that
 * leaves a cluster out where it had work shows here, even where no row
 * tells (a freeze that came late, say, before a sample it would have
 * quarantined). */
static void pair_check_state(struct pair *p, unsigned seed)
{
    const struct engine *a = p->a, *b = p->b;
    ck_assert_uint_eq(a->n_clusters, b->n_clusters);
    for (size_t i = 0; i < a->n_clusters; i++) {
        const struct cluster_state *x = &a->clusters[i], *y = &b->clusters[i];
        ck_assert_msg(
            x->closed_until_s == y->closed_until_s && x->frozen_until_s == y->frozen_until_s &&
                x->n_marks == y->n_marks && x->n_rows == y->n_rows && x->n_months == y->n_months &&
                x->n_reopened == y->n_reopened,
            "seed %u, step %d: cluster %s is not as the reference has it", seed, p->step, x->id);
        for (size_t k = 0; k < x->n_months; k++)
            ck_assert_msg(x->months[k].closed == y->months[k].closed &&
                              x->months[k].revision == y->months[k].revision &&
                              x->months[k].net_cny4 == y->months[k].net_cny4 &&
                              x->months[k].subsidy_cny4 == y->months[k].subsidy_cny4,
                          "seed %u, step %d: a month of %s is not as the reference has it", seed,
                          p->step, x->id);
        for (size_t k = 0; k < x->n_marks; k++)
            ck_assert_msg(x->marks[k].at_ns == y->marks[k].at_ns &&
                              x->marks[k].upto_s == y->marks[k].upto_s,
                          "seed %u, step %d: a close mark of %s is not as the reference has it",
                          seed, p->step, x->id);
        for (size_t k = 0; k < x->n_rows; k++)
            ck_assert_msg(x->rows[k].start_s == y->rows[k].start_s &&
                              x->rows[k].revision == y->rows[k].revision &&
                              x->rows[k].net_cny4 == y->rows[k].net_cny4 &&
                              x->rows[k].subsidy_cny4 == y->rows[k].subsidy_cny4,
                          "seed %u, step %d: a row of %s is not as the reference has it", seed,
                          p->step, x->id);
        for (size_t k = 0; k < x->n_reopened; k++)
            ck_assert_msg(x->reopened[k] == y->reopened[k],
                          "seed %u, step %d: a reopened interval of %s is not the reference's",
                          seed, p->step, x->id);
    }
    ck_assert_uint_eq(a->n_meters, b->n_meters);
    for (size_t i = 0; i < a->n_meters; i++)
        ck_assert_msg(a->meters[i].silent == b->meters[i].silent &&
                          a->meters[i].buf.n == b->meters[i].buf.n,
                      "seed %u, step %d: meter %s/%s is not as the reference has it", seed, p->step,
                      meter_key(&a->meters[i]), meter_name(&a->meters[i]));
}

static void pair_push(struct pair *p, const char *cluster, const char *meter, enum sample_kind kind,
                      int64_t ts_ns, double value)
{
    struct engine_sample s = {cluster, meter, kind, ts_ns, value};
    struct error ea, eb;
    bool a = engine_push(p->a, &s, p->now_ns, &ea);
    bool b = engine_push(p->b, &s, p->now_ns, &eb);
    ck_assert_int_eq(a, b);
}

static void pair_tick(struct pair *p, unsigned seed)
{
    p->b->heard_stale = true;
    p->b->tick_all = true;
    engine_tick(p->a, p->now_ns);
    engine_tick(p->b, p->now_ns);
    pair_check_state(p, seed);
}

static void pair_batch_done(struct pair *p)
{
    engine_batch_done(p->a, p->now_ns);
    engine_batch_done(p->b, p->now_ns);
}

/* The daemon's engine saved and loaded again, as a checkpoint and a
 * restart do: it goes on from a built heard list and a full tick. */
static void pair_reload_a(struct pair *p)
{
    size_t len;
    void *bytes = engine_save(p->a, &len);
    struct engine_sink sink = {&p->ta, on_billing, on_demand, on_quarantine, NULL};
    struct error err;
    struct engine *loaded = engine_load(p->cfg_in_force, &sink, bytes, len, &err);
    ck_assert_msg(loaded != NULL, "%s", err.msg);
    free(bytes);
    engine_free(p->a);
    p->a = loaded;
}

static uint32_t next_random(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

/* Through its meter's handle, as the daemon pushes a known meter. */
static void pair_push_meter(struct pair *p, const char *cluster, const char *meter,
                            enum sample_kind kind, int64_t ts_ns, double value)
{
    size_t ha = engine_meter_handle(p->a, cluster, meter);
    size_t hb = engine_meter_handle(p->b, cluster, meter);
    struct engine_sample s = {cluster, meter, kind, ts_ns, value};
    struct error ea, eb;
    bool a = engine_push_meter(p->a, &s, ha, p->now_ns, &ea);
    bool b = engine_push_meter(p->b, &s, hb, p->now_ns, &eb);
    ck_assert_int_eq(a, b);
}

/* A random day and a half of six clusters of five meters across a
 * month's end: the wall clock mostly steps a few seconds, sometimes
 * minutes or hours (meters fall silent, intervals become final, a month
 * ends by the clock), now and then goes back a little, and rarely back by
 * up to two hours; samples come mostly on time, some late, some
 * duplicated, some beyond max_future, some through a handle; requests
 * end, ticks come, the daemon's engine is saved and loaded, the config is
 * reloaded (another grace and late window, a late window shorter than
 * grace, a grace of centuries), samples are quarantined by hand, input
 * ends and goes on. Every third seed starts waiting for the yearly caps,
 * holding its calls until they are read back. */
static void run_random(unsigned seed, int steps)
{
    static const char *const clusters[] = {"c1", "c2", "c3", "c4",
                                           "c5", "c6", "c9"};           /* c9: unknown */
    static const char *const meters[] = {"p1", "p2", "p3", "p4", "k1"}; /* k1: a counter */
    enum { CLUSTERS = 7, METERS = 5 };
    struct pair p;
    pair_open(&p);
    bool waiting = seed % 3 == 0;
    if (waiting) {
        /* new_engine recovered the caps; these wait. */
        engine_free(p.a);
        engine_free(p.b);
        struct engine_sink sa = {&p.ta, on_billing, on_demand, on_quarantine, NULL};
        struct engine_sink sb = {&p.tb, on_billing, on_demand, on_quarantine, NULL};
        p.a = engine_new(p.cfg_in_force, &sa);
        p.b = engine_new(p.cfg_in_force, &sb);
        ck_assert(engine_waiting_for_caps(p.a));
    }
    uint32_t rnd = seed * 2654435761u + 1;
    /* 2025-01-31 20:00 +08:00: the month ends four hours in. */
    p.now_ns = (int64_t)1738324800 * NS;
    double counter[CLUSTERS] = {0};
    int64_t last_ts[CLUSTERS][METERS] = {{0}};
    struct config *const configs[] = {p.cfg, p.cfg_reloaded, p.cfg_short_window, p.cfg_long_grace};
    for (p.step = 0; p.step < steps; p.step++) {
        if (waiting && p.step == 300) {
            engine_set_cap_consumed(p.a, "t1", "pa", 2025, 350000);
            engine_set_cap_consumed(p.b, "t1", "pa", 2025, 350000);
            engine_caps_recovered(p.a);
            engine_caps_recovered(p.b);
            waiting = false;
        }
        uint32_t r = next_random(&rnd) % 1000;
        if (r < 600) {
            int c = (int)(next_random(&rnd) % 8 == 0 ? 6 : next_random(&rnd) % 6);
            int m = (int)(next_random(&rnd) % METERS);
            uint32_t when = next_random(&rnd) % 100;
            int64_t ts = p.now_ns - (int64_t)(next_random(&rnd) % 20) * NS;
            if (when < 8)
                ts = p.now_ns - (int64_t)(next_random(&rnd) % 7200) * NS; /* late, maybe final */
            else if (when < 12 && last_ts[c][m])
                ts = last_ts[c][m]; /* a retry */
            else if (when < 14)
                ts = p.now_ns + (int64_t)(next_random(&rnd) % 900) * NS; /* maybe too far ahead */
            ts -= ts % NS;
            enum sample_kind kind = m == METERS - 1 ? SAMPLE_COUNTER : SAMPLE_POWER;
            double value = (double)(next_random(&rnd) % 20000) / 100.0;
            if (kind == SAMPLE_COUNTER)
                value = counter[c] += value / 4;
            if (next_random(&rnd) % 2)
                pair_push(&p, clusters[c], meters[m], kind, ts, value);
            else
                pair_push_meter(&p, clusters[c], meters[m], kind, ts, value);
            if (ts > last_ts[c][m])
                last_ts[c][m] = ts;
        } else if (r < 700) {
            pair_batch_done(&p);
        } else if (r < 955) {
            pair_tick(&p, seed);
        } else if (r < 962) {
            pair_reload_a(&p);
        } else if (r < 968) {
            p.cfg_in_force = configs[next_random(&rnd) % 4];
            engine_set_config(p.a, p.cfg_in_force);
            engine_set_config(p.b, p.cfg_in_force);
        } else if (r < 972) {
            struct engine_sample s = {clusters[next_random(&rnd) % 6], "p1", SAMPLE_POWER, p.now_ns,
                                      1.0};
            engine_quarantine(p.a, &s, "refused by hand");
            engine_quarantine(p.b, &s, "refused by hand");
        } else if (r < 973) {
            engine_finish(p.a, p.now_ns);
            engine_finish(p.b, p.now_ns);
        }
        /* The clock: mostly seconds, now and then minutes or hours, back
         * a little, and rarely back a lot (the wall clock stepped). */
        uint32_t jump = next_random(&rnd) % 1000;
        if (jump < 900)
            p.now_ns += (int64_t)(next_random(&rnd) % 15) * NS;
        else if (jump < 985)
            p.now_ns += (int64_t)(60 + next_random(&rnd) % 600) * NS;
        else if (jump < 994)
            p.now_ns += (int64_t)(3600 + next_random(&rnd) % 7200) * NS;
        else if (jump < 998)
            p.now_ns -= (int64_t)(next_random(&rnd) % 30) * NS;
        else
            p.now_ns -= (int64_t)(next_random(&rnd) % 7200) * NS;
        if (p.step % 64 == 0)
            pair_check(&p, seed);
    }
    if (waiting) {
        engine_caps_recovered(p.a);
        engine_caps_recovered(p.b);
    }
    pair_tick(&p, seed);
    engine_finish(p.a, p.now_ns);
    engine_finish(p.b, p.now_ns);
    pair_check(&p, seed);
    ck_assert_uint_gt(p.ta.rows, 0);
    pair_close(&p);
}

START_TEST(test_ticks_give_what_looking_at_everything_gives)
{
    /* Each seed a different day; together they reach every branch of the
     * tick: silences, month ends by the clock, finals, late samples that
     * reopen, loads and reloads. */
    for (unsigned seed = 1; seed <= 150; seed++)
        run_random(seed, 1500);
}
END_TEST

/* A fleet that goes quiet: each meter falls silent at its own time, and
 * a tick that has nothing to do touches no cluster. */
START_TEST(test_silence_comes_to_each_meter_after_its_own_grace)
{
    unsigned seed = 0;
    struct pair p;
    pair_open(&p);
    p.now_ns = (int64_t)1738324800 * NS;
    /* Ten minutes of 100 kW each; p1 last heard at +0 s, p2 at +50 s,
     * p3 at +100 s (grace 2m). */
    int64_t from = p.now_ns - 600 * NS;
    pair_push(&p, "c1", "p1", SAMPLE_POWER, from, 100);
    pair_push(&p, "c1", "p1", SAMPLE_POWER, p.now_ns, 100);
    p.now_ns += 50 * NS;
    pair_push(&p, "c1", "p2", SAMPLE_POWER, from, 100);
    pair_push(&p, "c1", "p2", SAMPLE_POWER, p.now_ns, 100);
    p.now_ns += 50 * NS;
    pair_push(&p, "c2", "p3", SAMPLE_POWER, from, 100);
    pair_push(&p, "c2", "p3", SAMPLE_POWER, p.now_ns, 100);
    pair_tick(&p, seed);
    struct engine *e = p.a;
    /* +119 s: none; +120 s: p1; +170 s: p2; +220 s: p3. */
    int64_t t0 = (int64_t)1738324800 * NS;
    static const struct {
        int64_t at_s;
        bool p1, p2, p3;
    } expect[] = {{119, 0, 0, 0}, {120, 1, 0, 0}, {169, 1, 0, 0}, {170, 1, 1, 0}, {220, 1, 1, 1}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        p.now_ns = t0 + expect[i].at_s * NS;
        pair_tick(&p, seed);
        ck_assert_int_eq(e->meters[0].silent, expect[i].p1);
        ck_assert_int_eq(e->meters[1].silent, expect[i].p2);
        ck_assert_int_eq(e->meters[2].silent, expect[i].p3);
    }
    /* All silent: the heard list is empty, and a tick looks at no
     * cluster until a deadline comes: here the month's end (2025-02-01
     * 00:00 +08:00, t0 + 4 h) and grace, which closes the months of c1
     * and c2 by the clock (their first close marks became final an hour
     * after they were made, before it). */
    ck_assert_uint_eq(e->heard_head, 0);
    ck_assert_uint_eq(e->heard_tail, 0);
    p.now_ns += NS;
    pair_tick(&p, seed);
    ck_assert_uint_eq(e->tick_looked, 0);
    size_t rows = p.ta.rows;
    p.now_ns = t0 + (4 * 3600 + 120) * NS;
    pair_tick(&p, seed);
    ck_assert_uint_eq(e->tick_looked, 2);
    ck_assert_uint_gt(p.ta.rows, rows); /* the months' demand rows */
    p.now_ns += NS;
    pair_tick(&p, seed);
    ck_assert_uint_eq(e->tick_looked, 0);
    pair_check(&p, seed);
    pair_close(&p);
}
END_TEST

/* A meter heard from again moves to the list's end; the clock going back
 * puts it where its arrival belongs. */
START_TEST(test_heard_list_keeps_arrival_order)
{
    unsigned seed = 0;
    struct pair p;
    pair_open(&p);
    int64_t t0 = (int64_t)1738324800 * NS;
    p.now_ns = t0;
    pair_push(&p, "c1", "p1", SAMPLE_POWER, t0, 1);
    p.now_ns = t0 + 10 * NS;
    pair_push(&p, "c1", "p2", SAMPLE_POWER, t0, 1);
    p.now_ns = t0 + 20 * NS;
    pair_push(&p, "c1", "p3", SAMPLE_POWER, t0, 1);
    /* Until the first tick there is no list; that tick builds it. */
    ck_assert(p.a->heard_stale);
    pair_tick(&p, seed);
    ck_assert(!p.a->heard_stale);
    struct engine *e = p.a;
    /* p1, p2, p3 by arrival: indices 0, 1, 2. */
    ck_assert_uint_eq(e->heard_head, 1);
    ck_assert_uint_eq(e->heard_tail, 3);
    p.now_ns = t0 + 30 * NS;
    pair_push(&p, "c1", "p1", SAMPLE_POWER, t0 + 10 * NS, 1); /* p1 again: last */
    ck_assert_uint_eq(e->heard_head, 2);
    ck_assert_uint_eq(e->heard_tail, 1);
    ck_assert_uint_eq(e->meters[1].heard_next, 3);
    ck_assert_uint_eq(e->meters[2].heard_next, 1);
    p.now_ns = t0 + 15 * NS; /* the clock back: p2, heard at +15, goes before p3 (+20) */
    pair_push(&p, "c1", "p2", SAMPLE_POWER, t0 + 10 * NS, 1);
    /* arrivals: p3 +20, p1 +30, p2 +15: order p2, p3, p1 */
    ck_assert_uint_eq(e->heard_head, 2);
    ck_assert_uint_eq(e->meters[1].heard_next, 3);
    ck_assert_uint_eq(e->meters[2].heard_next, 1);
    ck_assert_uint_eq(e->heard_tail, 1);
    ck_assert_uint_eq(e->meters[0].heard_prev, 3);
    pair_check(&p, seed);
    pair_close(&p);
}
END_TEST

/* The wall clock stepping back: a push a few meters out of order goes to
 * its place in the heard list; one further back drops the list, ticks
 * silence by looking at every meter, and once the clock has passed every
 * arrival again a tick builds the list anew. Silences come at the same
 * ticks as the reference's all along. */
START_TEST(test_clock_stepping_back_keeps_silences_exact)
{
    unsigned seed = 0;
    struct pair p;
    pair_open(&p);
    int64_t t0 = (int64_t)1738324800 * NS;
    static const char *const clusters[] = {"c1", "c2", "c3", "c4", "c5", "c6"};
    char meter[8];
    /* 30 meters heard from at t0 + 0..29 s, one a second. */
    for (int i = 0; i < 30; i++) {
        p.now_ns = t0 + i * NS;
        snprintf(meter, sizeof meter, "p%d", i / 6);
        pair_push(&p, clusters[i % 6], meter, SAMPLE_POWER, t0, 10);
    }
    pair_tick(&p, seed);
    ck_assert(!p.a->heard_stale);
    /* Back to t0 + 25 s: the meter pushed goes four places back. */
    p.now_ns = t0 + 25 * NS;
    pair_push(&p, "c1", "p0", SAMPLE_POWER, t0 + NS, 10);
    ck_assert(!p.a->heard_stale);
    /* Back to t0 + 2 s: 27 places back, past HEARD_STEPS_BACK: no list. */
    p.now_ns = t0 + 2 * NS;
    pair_push(&p, "c2", "p0", SAMPLE_POWER, t0 + NS, 10);
    ck_assert(p.a->heard_stale);
    /* A tick while the clock is still behind the latest arrival (+29 s)
     * leaves it so. */
    p.now_ns = t0 + 3 * NS;
    pair_tick(&p, seed);
    ck_assert(p.a->heard_stale);
    /* Ticks from t0 + 100 s: silences by every meter's own arrival. */
    for (int64_t at = 100; at <= 160; at += 3) {
        p.now_ns = t0 + at * NS;
        pair_tick(&p, seed);
    }
    /* Every arrival is behind the clock now: the list is back. */
    ck_assert(!p.a->heard_stale);
    p.now_ns = t0 + 170 * NS;
    pair_push(&p, "c3", "p1", SAMPLE_POWER, t0 + 2 * NS, 10);
    p.now_ns = t0 + 300 * NS;
    pair_tick(&p, seed);
    ck_assert(!p.a->heard_stale);
    ck_assert_uint_eq(p.a->heard_head, 0); /* all silent */
    pair_check(&p, seed);
    pair_close(&p);
}
END_TEST

/* A month of a cluster with no active meter ends by the clock grace after
 * its end; with a grace of centuries that time is past what int64
 * nanoseconds hold, and it never comes (it wrapped negative, and the
 * month closed at once). */
START_TEST(test_grace_of_centuries_closes_no_month_by_the_clock)
{
    unsigned seed = 0;
    struct pair p;
    pair_open(&p);
    int64_t t0 = (int64_t)1738324800 * NS; /* 2025-01-31 20:00 +08:00 */
    p.now_ns = t0;
    pair_push(&p, "c1", "p1", SAMPLE_POWER, t0 - 600 * NS, 100);
    pair_push(&p, "c1", "p1", SAMPLE_POWER, t0, 100);
    p.now_ns = t0 + 200 * NS; /* grace 2m: silent, its intervals closed */
    pair_tick(&p, seed);
    ck_assert(p.a->meters[0].silent);
    p.cfg_in_force = p.cfg_long_grace;
    engine_set_config(p.a, p.cfg_in_force);
    engine_set_config(p.b, p.cfg_in_force);
    for (int64_t at = 300; at < 6 * 3600; at += 600) { /* past the month's end */
        p.now_ns = t0 + at * NS;
        pair_tick(&p, seed);
    }
    ck_assert_ptr_nonnull(p.ta.text); /* the intervals' rows */
    ck_assert_ptr_null(strstr(p.ta.text, "\nD "));
    ck_assert(strncmp(p.ta.text, "D ", 2) != 0);
    pair_check(&p, seed);
    pair_close(&p);
}
END_TEST

/* The heap under the deadlines: what is due comes out earliest first, and
 * nothing before its time. */
START_TEST(test_deadlines_come_out_in_time_order)
{
    struct deadlines d = {0};
    uint32_t rnd = 7;
    int64_t at[500];
    for (size_t i = 0; i < 500; i++) {
        at[i] = (int64_t)(next_random(&rnd) % 1000);
        deadlines_push(&d, at[i], i);
    }
    size_t cluster;
    ck_assert(!deadlines_pop_due(&d, -1, &cluster));
    int64_t last = -1;
    size_t popped = 0;
    for (int64_t now = 0; now < 1000; now += 37) {
        while (deadlines_pop_due(&d, now, &cluster)) {
            ck_assert_int_le(at[cluster], now);
            ck_assert_int_ge(at[cluster], last);
            last = at[cluster];
            popped++;
        }
        /* nothing left that is due */
        for (size_t i = 0; i < d.n; i++)
            ck_assert_int_gt(d.v[i].at_ns, now);
    }
    while (deadlines_pop_due(&d, INT64_MAX, &cluster))
        popped++;
    ck_assert_uint_eq(popped, 500);
    deadlines_push(&d, 5, 1);
    deadlines_clear(&d);
    ck_assert(!deadlines_pop_due(&d, INT64_MAX, &cluster));
    deadlines_free(&d);
}
END_TEST

static Suite *tick_suite(void)
{
    Suite *s = suite_create("tick");
    TCase *tc = tcase_create("tick");
    tcase_set_timeout(tc, 280); /* the random days take 45 s under the sanitizers */
    tcase_add_test(tc, test_deadlines_come_out_in_time_order);
    tcase_add_test(tc, test_heard_list_keeps_arrival_order);
    tcase_add_test(tc, test_silence_comes_to_each_meter_after_its_own_grace);
    tcase_add_test(tc, test_clock_stepping_back_keeps_silences_exact);
    tcase_add_test(tc, test_grace_of_centuries_closes_no_month_by_the_clock);
    tcase_add_test(tc, test_ticks_give_what_looking_at_everything_gives);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tick_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
