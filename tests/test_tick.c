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
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nprice.flat = 0.5\n"       \
    "price.peak = 1.0\nsurcharge = 0.02\n"                                                         \
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\nmonths = jan-dec base\n"     \
    "demand_basis = max_demand\ndemand.kw = 30\n"                                                  \
    "[programme pa]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5\n"    \
    "basis = energy\nmode = pro_rata\ncap_cny_per_year = 40\n"

static const char tick_config[] = TICK_CONFIG("grace = 2m\nlate_window = 1h\n");
/* What a reload may bring: other silences and finals. */
static const char tick_config_reloaded[] = TICK_CONFIG("grace = 5m\nlate_window = 2h\n");

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
    struct config *cfg, *cfg_reloaded, *cfg_in_force;
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
    ck_assert_msg(p->cfg && p->cfg_reloaded, "the test configs do not load");
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
                              x->months[k].revision == y->months[k].revision,
                          "seed %u, step %d: a month of %s is not as the reference has it", seed,
                          p->step, x->id);
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

/* A random day and a half of a fleet of meters across a month's end:
 * the wall clock mostly steps a few seconds, sometimes minutes or hours
 * (meters fall silent, intervals become final, a month ends by the
 * clock), and now and then goes back a little; samples come mostly on
 * time, some late, some duplicated, some beyond max_future; requests end,
 * ticks come, the daemon's engine is saved and loaded, the config is
 * reloaded. */
static void run_random(unsigned seed, int steps)
{
    static const char *const clusters[] = {"c1", "c2", "c3", "c9"}; /* c9: unknown */
    static const char *const meters[] = {"p1", "p2", "p3", "k1"};   /* k1: a counter */
    struct pair p;
    pair_open(&p);
    uint32_t rnd = seed * 2654435761u + 1;
    /* 2025-01-31 20:00 +08:00: the month ends four hours in. */
    p.now_ns = (int64_t)1738324800 * NS;
    double counter[4][4] = {{0}};
    int64_t last_ts[4][4] = {{0}};
    for (p.step = 0; p.step < steps; p.step++) {
        uint32_t r = next_random(&rnd) % 1000;
        if (r < 600) {
            int c =
                (int)(next_random(&rnd) % 4 == 0 ? next_random(&rnd) % 4 : next_random(&rnd) % 3);
            int m = (int)(next_random(&rnd) % 4);
            uint32_t when = next_random(&rnd) % 100;
            int64_t ts = p.now_ns - (int64_t)(next_random(&rnd) % 20) * NS;
            if (when < 8)
                ts = p.now_ns - (int64_t)(next_random(&rnd) % 7200) * NS; /* late, maybe final */
            else if (when < 12 && last_ts[c][m])
                ts = last_ts[c][m]; /* a retry */
            else if (when < 14)
                ts = p.now_ns + (int64_t)(next_random(&rnd) % 900) * NS; /* maybe too far ahead */
            ts -= ts % NS;
            if (m == 3) {
                counter[c][m] += (double)(next_random(&rnd) % 5000) / 100.0;
                pair_push(&p, clusters[c], meters[m], SAMPLE_COUNTER, ts, counter[c][m]);
            } else {
                double kw = (double)(next_random(&rnd) % 20000) / 100.0;
                pair_push(&p, clusters[c], meters[m], SAMPLE_POWER, ts, kw);
            }
            if (ts > last_ts[c][m])
                last_ts[c][m] = ts;
        } else if (r < 700) {
            pair_batch_done(&p);
        } else if (r < 960) {
            pair_tick(&p, seed);
        } else if (r < 965) {
            pair_reload_a(&p);
        } else if (r < 968) {
            p.cfg_in_force = p.cfg_in_force == p.cfg ? p.cfg_reloaded : p.cfg;
            engine_set_config(p.a, p.cfg_in_force);
            engine_set_config(p.b, p.cfg_in_force);
        }
        /* The clock: mostly seconds, now and then minutes or hours, and
         * back a little. */
        uint32_t jump = next_random(&rnd) % 1000;
        if (jump < 900)
            p.now_ns += (int64_t)(next_random(&rnd) % 15) * NS;
        else if (jump < 985)
            p.now_ns += (int64_t)(60 + next_random(&rnd) % 600) * NS;
        else if (jump < 995)
            p.now_ns += (int64_t)(3600 + next_random(&rnd) % 7200) * NS;
        else
            p.now_ns -= (int64_t)(next_random(&rnd) % 30) * NS;
        if (p.step % 64 == 0)
            pair_check(&p, seed);
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
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_deadlines_come_out_in_time_order);
    tcase_add_test(tc, test_heard_list_keeps_arrival_order);
    tcase_add_test(tc, test_silence_comes_to_each_meter_after_its_own_grace);
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
