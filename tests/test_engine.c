/*
 * Unit tests for the engine: metering, closing, pricing and state, with
 * hand-computed expectations (the arithmetic is in the comments).
 *
 * The base config: interval 15m, one tariff in +08:00 with valley 0.25
 * (00:00-08:00), flat 0.5 (08:00-18:00, 23:00-24:00), peak 1.0
 * (18:00-23:00), surcharge 0.02, demand 30 CNY/kW-month; cluster c1 has a
 * domestic share of 0.75, c2 0.5; programme pa pays 0.5 pro rata.
 */
#include "alloc.h"
#include "civil.h"
#include "config.h"
#include "engine.h"
#include "engine_private.h" /* snapshot_write, for the formats of earlier versions */

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define NS    1000000000LL

static const char base_config[] =
    "[daemon]\ninterval = 15m\nmax_gap = 5m\ngrace = 2m\nlate_window = 6h\nmax_subsidy = 0.5\n"
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
    "[tenant t2]\ntoken_sha256 = " TOKEN "\n"
    "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"
    "[chip for]\nvendor = B\ndomestic = no\nrated_kw = 1\n"
    "[site s1]\nprovince = p1\ntariff = tf\n"
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = dom*3, for*1\ntransformer_kva = 1000\n"
    "contract_kw = 100\n"
    "[cluster c2]\ntenant = t1\nsite = s1\ninventory = dom*1, for*1\ntransformer_kva = 500\n"
    "contract_kw = 50\n"
    "[cluster c3]\ntenant = t2\nsite = s1\ninventory = dom*1, for*1\ntransformer_kva = 500\n"
    "contract_kw = 50\n"
    "inventory@2025-06-15 = dom*1, for*3\n"
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nprice.flat = 0.5\n"
    "price.peak = 1.0\nsurcharge = 0.02\n"
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\nmonths = jan-dec base\n"
    "demand_basis = max_demand\ndemand.kw = 30\n"
    "[programme pa]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5\n"
    "basis = energy\nmode = pro_rata\n";

/* ---------------------------------------------------------------- */
/* A sink that keeps copies of everything                            */

struct kept_billing {
    char cluster[16];
    int64_t start_s;
    int revision;
    enum period period;
    int64_t kwh, price, energy, surcharge, subsidy, net, share, missing_s;
    char programme[64];
    char version[64];
    int32_t month_day;
    size_t n_lines;
    struct {
        char programme[16];
        int64_t amount;
    } lines[8];
};

struct kept_demand {
    char cluster[16];
    int32_t month_day;
    int revision;
    int64_t max_kw, max_start_s, billing_kw, charge, subsidy, net;
    char programme[64];
    char version[64];
    bool prorated;
    int32_t days_in_service;
    size_t n_runs;
    struct demand_days runs[4];
};

#define KEPT_BILLING 4096 /* a month of 15-minute rows */
static struct kept_billing billing[KEPT_BILLING];
static size_t n_billing;
static struct kept_demand demand[64];
static size_t n_demand;
static char quarantined[16][96];
static size_t n_quarantined;

static void on_billing(void *ctx, const struct billing_row *r)
{
    (void)ctx;
    ck_assert_uint_lt(n_billing, KEPT_BILLING);
    struct kept_billing *k = &billing[n_billing++];
    memset(k, 0, sizeof *k);
    snprintf(k->cluster, sizeof k->cluster, "%s", r->cluster->id);
    k->start_s = r->interval_start_s;
    k->revision = r->revision;
    k->period = r->period;
    k->kwh = r->kwh_micro;
    k->price = r->price_micro_cny;
    k->energy = r->energy_charge_cny4;
    k->surcharge = r->surcharge_cny4;
    k->subsidy = r->subsidy_cny4;
    k->net = r->net_cny4;
    k->share = r->domestic_share_micro;
    k->missing_s = r->missing_s;
    k->month_day = r->month_day;
    snprintf(k->programme, sizeof k->programme, "%s", r->programme ? r->programme : "");
    snprintf(k->version, sizeof k->version, "%s", r->tariff_version);
    k->n_lines = r->n_lines;
    for (size_t i = 0; i < r->n_lines && i < 8; i++) {
        snprintf(k->lines[i].programme, sizeof k->lines[i].programme, "%s", r->lines[i].programme);
        k->lines[i].amount = r->lines[i].amount_cny4;
    }
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    (void)ctx;
    ck_assert_uint_lt(n_demand, 64);
    struct kept_demand *k = &demand[n_demand++];
    memset(k, 0, sizeof *k);
    snprintf(k->cluster, sizeof k->cluster, "%s", r->cluster->id);
    k->month_day = r->month_day;
    k->revision = r->revision;
    k->max_kw = r->max_kw_micro;
    k->max_start_s = r->max_interval_start_s;
    k->billing_kw = r->billing_kw_micro;
    k->charge = r->charge_cny4;
    k->subsidy = r->subsidy_cny4;
    k->net = r->net_cny4;
    snprintf(k->programme, sizeof k->programme, "%s", r->programme ? r->programme : "");
    snprintf(k->version, sizeof k->version, "%s", r->tariff_version);
    k->prorated = r->prorated;
    k->days_in_service = r->days_in_service;
    k->n_runs = r->n_runs;
    for (size_t i = 0; i < r->n_runs && i < 4; i++)
        k->runs[i] = r->runs[i];
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    (void)ctx;
    (void)s;
    snprintf(quarantined[n_quarantined++ % 16], sizeof quarantined[0], "%s", reason);
}

static const struct engine_sink sink = {NULL, on_billing, on_demand, on_quarantine, NULL};

/* ---------------------------------------------------------------- */

static struct config *cfg;
static struct engine *eng;
static char config_text[8192];

static const char *edit(const char *text, const char *from, const char *to)
{
    static char bufs[2][8192];
    static int which;
    char *buf = bufs[which ^= 1];
    const char *at = strstr(text, from);
    ck_assert_msg(at != NULL, "edit: \"%s\" not found", from);
    size_t head = (size_t)(at - text), tail = strlen(at + strlen(from));
    ck_assert_uint_lt(head + strlen(to) + tail, sizeof bufs[0]);
    memmove(buf, text, head); /* text may be the other buffer, never this one */
    memcpy(buf + head, to, strlen(to));
    memmove(buf + head + strlen(to), at + strlen(from), tail + 1);
    return buf;
}

/* An engine that does not know the caps yet, as a daemon started on an
 * empty state_dir. */
static void start_waiting_with(const char *text)
{
    struct errors errs = {0};
    snprintf(config_text, sizeof config_text, "%s", text);
    cfg = config_from_string("t.conf", config_text, &errs);
    ck_assert_msg(cfg != NULL, "config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
    eng = engine_new(cfg, &sink);
    n_billing = n_demand = n_quarantined = 0;
}

/* An engine that knows the caps (none consumed), as offline pricing. */
static void start_with(const char *text)
{
    start_waiting_with(text);
    engine_caps_recovered(eng);
}

static void start(void)
{
    start_with(base_config);
}

static void stop(void)
{
    engine_free(eng);
    config_free(cfg);
    eng = NULL;
    cfg = NULL;
}

/* An instant in local time (+08:00). */
static int64_t L(int y, int mo, int d, int hh, int mm)
{
    return civil_day_start_ts(civil_to_day((struct civil_date){y, mo, d}), 8 * 3600) + hh * 3600 +
           mm * 60;
}

static int64_t now_ns;

static void push_kind(const char *cluster, const char *meter, enum sample_kind kind, int64_t ts_s,
                      double value)
{
    struct engine_sample s = {cluster, meter, kind, ts_s * NS, value};
    struct error err;
    ck_assert_msg(engine_judge(eng, &s, &err) != ENGINE_REFUSED, "judge: %s", err.msg);
    if (ts_s * NS > now_ns)
        now_ns = ts_s * NS;
    ck_assert(engine_push(eng, &s, now_ns, &err));
    engine_batch_done(eng, now_ns); /* a request of one sample */
}

static void push(const char *cluster, int64_t ts_s, double kw)
{
    push_kind(cluster, "main", SAMPLE_POWER, ts_s, kw);
}

/* Constant power from `from` to `to` inclusive, a sample a minute. */
static void constant(const char *cluster, int64_t from_s, int64_t to_s, double kw)
{
    for (int64_t t = from_s; t <= to_s; t += 60)
        push(cluster, t, kw);
}

static void finish(void)
{
    engine_finish(eng, now_ns);
}

static void setup(void)
{
    now_ns = 0;
}

/* ---------------------------------------------------------------- */

START_TEST(test_segment_crossing_boundary_is_split_with_interpolated_power)
{
    /* 100 kW at 00:10, 200 kW at 00:20; at 00:15 the power is 150 kW.
     * [00:00,00:15): (100+150)/2 x 5/60 h = 125/12 = 10.4166666.. -> 10.416667
     * [00:15,00:30): (150+200)/2 x 5/60 h = 175/12 = 14.5833333.. -> 14.583333
     * valley 0.25: 10.416667 x 0.25 = 2.60416675 -> 2.6042;
     *              14.583333 x 0.25 = 3.64583325 -> 3.6458 */
    start_with(edit(base_config, "max_gap = 5m", "max_gap = 10m"));
    push("c1", L(2025, 3, 1, 0, 10), 100);
    push("c1", L(2025, 3, 1, 0, 20), 200);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].start_s, L(2025, 3, 1, 0, 0));
    ck_assert_int_eq(billing[0].kwh, 10416667);
    ck_assert_int_eq(billing[1].kwh, 14583333);
    ck_assert_int_eq(billing[0].energy, 26042);
    ck_assert_int_eq(billing[1].energy, 36458);
    ck_assert_int_eq(billing[0].missing_s, 0);
    stop();
}
END_TEST

START_TEST(test_period_change_at_interval_boundary)
{
    /* 40 kW from 07:45 to 08:15: 10 kWh in each interval; 07:45 is valley
     * (0.25 -> 2.5000), 08:00 flat (0.5 -> 5.0000). Surcharge 10 x 0.02 =
     * 0.2000 each. */
    start();
    constant("c1", L(2025, 3, 1, 7, 45), L(2025, 3, 1, 8, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].period, PERIOD_VALLEY);
    ck_assert_int_eq(billing[0].kwh, 10000000);
    ck_assert_int_eq(billing[0].energy, 25000);
    ck_assert_int_eq(billing[0].surcharge, 2000);
    ck_assert_int_eq(billing[1].period, PERIOD_FLAT);
    ck_assert_int_eq(billing[1].price, 500000);
    ck_assert_int_eq(billing[1].energy, 50000);
    stop();
}
END_TEST

START_TEST(test_day_wraps_from_23_to_00)
{
    /* 22:45 peak, 23:00-23:45 flat, 00:00 next day valley. */
    start();
    constant("c1", L(2025, 3, 1, 22, 45), L(2025, 3, 2, 0, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 6);
    ck_assert_int_eq(billing[0].period, PERIOD_PEAK);
    ck_assert_int_eq(billing[0].energy, 100000); /* 10 kWh x 1.0 */
    for (int i = 1; i <= 4; i++)
        ck_assert_int_eq(billing[i].period, PERIOD_FLAT);
    ck_assert_int_eq(billing[5].period, PERIOD_VALLEY);
    ck_assert_int_eq(billing[5].start_s, L(2025, 3, 2, 0, 0));
    stop();
}
END_TEST

START_TEST(test_month_follows_local_time_not_utc)
{
    /* Local 2025-11-30 23:45 to 2025-12-01 00:15, i.e. 15:45Z-16:15Z on
     * Nov 30 in UTC. The 00:00 interval is December's; each month gets its
     * own demand row: 10 kWh in 15 min = 40 kW, x 30 = 1200.0000. */
    start();
    constant("c1", L(2025, 11, 30, 23, 45), L(2025, 12, 1, 0, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].month_day, civil_to_day((struct civil_date){2025, 11, 1}));
    ck_assert_int_eq(billing[1].month_day, civil_to_day((struct civil_date){2025, 12, 1}));
    ck_assert_int_eq(billing[1].start_s, 1764518400); /* 2025-11-30T16:00:00Z */
    ck_assert_uint_eq(n_demand, 2);
    ck_assert_int_eq(demand[0].month_day, civil_to_day((struct civil_date){2025, 11, 1}));
    ck_assert_int_eq(demand[0].max_kw, 40000000);
    ck_assert_int_eq(demand[0].charge, 12000000);
    ck_assert_int_eq(demand[1].month_day, civil_to_day((struct civil_date){2025, 12, 1}));
    stop();
}
END_TEST

START_TEST(test_yearly_cap_exhausted_inside_interval_and_reset_at_local_new_year)
{
    /* Cap 2.5 CNY a year. 23:30 and 23:45 local on Dec 31 are flat:
     * 10 kWh x 0.5 = 5.0000, subsidy 0.5 x 0.75 x 5 = 1.8750; the second
     * gets only what is left of the cap, 2.5 - 1.875 = 0.6250. 00:00 on
     * Jan 1 local (still 2025 in UTC) is a new year: valley 2.5000 x 0.5 x
     * 0.75 = 0.9375 in full. */
    start_with(edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 2.5\n"));
    constant("c1", L(2025, 12, 31, 23, 30), L(2026, 1, 1, 0, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 3); /* 00:15 is only touched at its start */
    ck_assert_int_eq(billing[0].energy, 50000);
    ck_assert_int_eq(billing[0].subsidy, 18750);
    ck_assert_int_eq(billing[1].subsidy, 6250);
    ck_assert_str_eq(billing[1].programme, "pa");
    ck_assert_int_eq(billing[1].net, 50000 + 2000 - 6250);
    ck_assert_int_eq(billing[2].start_s, L(2026, 1, 1, 0, 0));
    ck_assert_int_eq(billing[2].subsidy, 9375);
    stop();
}
END_TEST

START_TEST(test_cap_exhausted_pays_nothing_and_names_no_programme)
{
    /* Cap 1.875: the first flat interval takes it all, the next gets 0. */
    start_with(
        edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 1.875\n"));
    constant("c1", L(2025, 3, 1, 8, 0), L(2025, 3, 1, 8, 30), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].subsidy, 18750);
    ck_assert_int_eq(billing[1].subsidy, 0);
    ck_assert_str_eq(billing[1].programme, "");
    ck_assert_uint_eq(billing[1].n_lines, 0);
    stop();
}
END_TEST

START_TEST(test_tariff_version_change_mid_month)
{
    /* From 2025-06-15 (local) valley is 0.3 and demand 40 CNY/kW. The
     * 2025-06-14 23:45 interval is priced under the old version (flat 0.5),
     * 2025-06-15 00:00 under the new one (valley 0.3 -> 10 x 0.3 = 3.0000).
     * The June demand row uses the version at the month's last interval:
     * 40 kW x 40 = 1600.0000. */
    char text[8192];
    snprintf(text, sizeof text, "%s%s", base_config,
             "[tariff tf @ 2025-06-15]\nutc_offset = +08:00\nprice.valley = 0.3\n"
             "price.flat = 0.5\nprice.peak = 1.0\nsurcharge = 0.02\n"
             "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\n"
             "months = jan-dec base\ndemand_basis = max_demand\ndemand.kw = 40\n");
    start_with(text);
    constant("c1", L(2025, 6, 14, 23, 45), L(2025, 6, 15, 0, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].energy, 50000);
    ck_assert_int_eq(billing[1].price, 300000);
    ck_assert_int_eq(billing[1].energy, 30000);
    ck_assert_str_ne(billing[0].version, billing[1].version);
    ck_assert_int_eq(strncmp(billing[1].version, "tf@2025-06-15#", 14), 0);
    ck_assert_uint_eq(n_demand, 1);
    ck_assert_int_eq(demand[0].charge, 16000000);
    ck_assert_str_eq(demand[0].version, billing[1].version);
    stop();
}
END_TEST

START_TEST(test_inventory_change_crosses_eligibility_threshold)
{
    /* c3 has share 0.5 (eligible, >= 0.5) until 2025-06-15 local, then
     * 0.25. pro_rata: 0.5 x 0.5 x 5.0000 = 1.2500, then nothing. */
    start();
    constant("c3", L(2025, 6, 14, 23, 45), L(2025, 6, 15, 0, 15), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].share, 500000);
    ck_assert_int_eq(billing[0].subsidy, 12500);
    ck_assert_int_eq(billing[1].share, 250000);
    ck_assert_int_eq(billing[1].subsidy, 0);
    ck_assert_str_eq(billing[1].programme, "");
    stop();
}
END_TEST

START_TEST(test_pro_rata_and_all_or_nothing)
{
    /* 10 kWh valley = 2.5000. pro_rata 0.5 x 0.75 x 2.5 = 0.9375;
     * all_or_nothing 0.5 x 2.5 = 1.2500. */
    start();
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 40);
    finish();
    ck_assert_int_eq(billing[0].subsidy, 9375);
    stop();
    start_with(edit(base_config, "mode = pro_rata", "mode = all_or_nothing"));
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 40);
    finish();
    ck_assert_int_eq(billing[0].subsidy, 12500);
    stop();
}
END_TEST

START_TEST(test_two_programmes_stack_up_to_the_clamp)
{
    /* pa: 0.5 x 0.75 x 2.5 = 0.9375; pb (all_or_nothing 0.3): 0.75, but
     * max_subsidy 0.5 x 2.5 = 1.25 leaves it 1.25 - 0.9375 = 0.3125. */
    char text[8192];
    snprintf(text, sizeof text, "%s%s", base_config,
             "[programme pb]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0\n"
             "rate = 0.3\nbasis = energy\nmode = all_or_nothing\n");
    start_with(text);
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 40);
    finish();
    ck_assert_int_eq(billing[0].subsidy, 12500);
    ck_assert_str_eq(billing[0].programme, "pa,pb");
    ck_assert_uint_eq(billing[0].n_lines, 2);
    ck_assert_int_eq(billing[0].lines[0].amount, 9375);
    ck_assert_int_eq(billing[0].lines[1].amount, 3125);
    ck_assert_int_eq(billing[0].net, 25000 + 2000 - 12500);
    stop();
}
END_TEST

START_TEST(test_rounding_ties_go_to_even)
{
    /* Valley 0.00005... is 0.000050 at scale 6: 1 kWh (4 kW for 15 min)
     * costs 0.00005 -> 0.0000 (tie, even); 3 kWh 0.00015 -> 0.0002;
     * 5 kWh 0.00025 -> 0.0002. Subsidy all_or_nothing 0.5 on 0.0002 =
     * 0.0001 exactly. */
    start_with(edit(edit(base_config, "price.valley = 0.25", "price.valley = 0.00005"),
                    "mode = pro_rata", "mode = all_or_nothing"));
    /* Hours apart, so the gaps between carry no energy. */
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 4);
    constant("c1", L(2025, 3, 1, 2, 0), L(2025, 3, 1, 2, 15), 12);
    constant("c1", L(2025, 3, 1, 4, 0), L(2025, 3, 1, 4, 15), 20);
    finish();
    ck_assert_uint_eq(n_billing, 17);
    ck_assert_int_eq(billing[0].kwh, 1000000);
    ck_assert_int_eq(billing[0].energy, 0);
    ck_assert_int_eq(billing[8].start_s, L(2025, 3, 1, 2, 0));
    ck_assert_int_eq(billing[8].kwh, 3000000);
    ck_assert_int_eq(billing[8].energy, 2);
    ck_assert_int_eq(billing[16].kwh, 5000000);
    ck_assert_int_eq(billing[16].energy, 2);
    ck_assert_int_eq(billing[16].subsidy, 1);
    stop();
}
END_TEST

START_TEST(test_counter_reset_counts_the_new_reading)
{
    /* Readings 100 (00:00), 110 (00:10), 5 (00:20: a reset, delta 5), 15
     * (00:30). [00:00,00:15): 10 + half of 5 = 12.5; [00:15,00:30): 2.5 +
     * 10 = 12.5. Counters never add missing_s, even across 10 min. */
    start();
    push_kind("c1", "m", SAMPLE_COUNTER, L(2025, 3, 1, 0, 0), 100);
    push_kind("c1", "m", SAMPLE_COUNTER, L(2025, 3, 1, 0, 10), 110);
    push_kind("c1", "m", SAMPLE_COUNTER, L(2025, 3, 1, 0, 20), 5);
    push_kind("c1", "m", SAMPLE_COUNTER, L(2025, 3, 1, 0, 30), 15);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].kwh, 12500000);
    ck_assert_int_eq(billing[1].kwh, 12500000);
    ck_assert_int_eq(billing[0].missing_s + billing[1].missing_s, 0);
    stop();
}
END_TEST

START_TEST(test_gap_longer_than_max_gap_is_missing)
{
    /* 40 kW at 00:00, 00:05, 00:20, 00:25: the 15 min gap is not
     * integrated. [00:00,00:15): 40 x 5/60 = 3.333333 kWh, missing 600 s;
     * [00:15,00:30): missing 300 s, then 3.333333. */
    start();
    push("c1", L(2025, 3, 1, 0, 0), 40);
    push("c1", L(2025, 3, 1, 0, 5), 40);
    push("c1", L(2025, 3, 1, 0, 20), 40);
    push("c1", L(2025, 3, 1, 0, 25), 40);
    finish();
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].kwh, 3333333);
    ck_assert_int_eq(billing[0].missing_s, 600);
    ck_assert_int_eq(billing[1].kwh, 3333333);
    ck_assert_int_eq(billing[1].missing_s, 300);
    stop();
}
END_TEST

START_TEST(test_interval_wholly_inside_a_gap_has_a_zero_row)
{
    /* Samples at 00:00 and 01:00: four rows, 0 kWh, 900 s missing each. */
    start();
    push("c1", L(2025, 3, 1, 0, 0), 40);
    push("c1", L(2025, 3, 1, 1, 0), 40);
    finish();
    ck_assert_uint_eq(n_billing, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(billing[i].kwh, 0);
        ck_assert_int_eq(billing[i].missing_s, 900);
    }
    stop();
}
END_TEST

START_TEST(test_missing_seconds_sum_over_meters)
{
    /* Two meters, each with the 00:05-00:20 gap: 600 + 600 meter-seconds. */
    start();
    const int minutes[] = {0, 5, 20};
    for (int i = 0; i < 3; i++) {
        push_kind("c1", "a", SAMPLE_POWER, L(2025, 3, 1, 0, minutes[i]), 40);
        push_kind("c1", "b", SAMPLE_POWER, L(2025, 3, 1, 0, minutes[i]), 40);
    }
    finish();
    ck_assert_int_eq(billing[0].missing_s, 1200);
    ck_assert_int_eq(billing[0].kwh, 6666667); /* 2 x 40 x 5/60 = 6.6666.. */
    stop();
}
END_TEST

START_TEST(test_duplicate_samples_are_ignored_and_first_value_wins)
{
    struct engine_stats st;
    start();
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 40);
    push("c1", L(2025, 3, 1, 0, 5), 40);  /* a retry */
    push("c1", L(2025, 3, 1, 0, 6), 400); /* a conflict: 40 stays */
    finish();
    engine_stats(eng, &st);
    ck_assert_uint_eq(st.accepted, 16);
    ck_assert_uint_eq(st.duplicates, 1);
    ck_assert_uint_eq(st.conflicts, 1);
    ck_assert_uint_eq(n_billing, 1);
    ck_assert_int_eq(billing[0].kwh, 10000000);
    stop();
}
END_TEST

START_TEST(test_late_sample_adjusts_a_closed_interval)
{
    /* 40 kW every minute from 00:00 to 00:30 except 00:07; the 00:00
     * interval closes when 00:15 arrives. Then 00:07 arrives with 100 kW:
     * the 00:06-00:08 segment was 40 x 2/60 = 1.333333 kWh, now
     * (40+100)/2 x 1/60 x 2 = 2.333333: +1.000000 kWh, +0.2500 energy,
     * +0.0200 surcharge. The subsidy is the whole interval priced again,
     * minus what was paid: 0.5 x 0.75 x 2.7500 = 1.03125 -> 1.0312 (tie,
     * even), minus 0.9375: +0.0937. */
    start();
    for (int m = 0; m <= 30; m++)
        if (m != 7)
            push("c1", L(2025, 3, 1, 0, m), 40);
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].kwh, 10000000);
    push("c1", L(2025, 3, 1, 0, 7), 100);
    ck_assert_uint_eq(n_billing, 3);
    ck_assert_int_eq(billing[2].revision, 1);
    ck_assert_int_eq(billing[2].start_s, L(2025, 3, 1, 0, 0));
    ck_assert_int_eq(billing[2].kwh, 1000000);
    ck_assert_int_eq(billing[2].energy, 2500);
    ck_assert_int_eq(billing[2].surcharge, 200);
    ck_assert_int_eq(billing[0].subsidy, 9375);
    ck_assert_int_eq(billing[2].subsidy, 937);
    ck_assert_int_eq(billing[2].net, 2500 + 200 - 937);
    stop();
}
END_TEST

START_TEST(test_sample_without_tariff_is_quarantined)
{
    start();
    push("c1", L(2024, 12, 31, 23, 59), 40);
    finish();
    ck_assert_uint_eq(n_quarantined, 1);
    ck_assert_str_eq(quarantined[0], "no tariff version in force");
    ck_assert_uint_eq(n_billing, 0);
    stop();
}
END_TEST

START_TEST(test_silent_meter_closes_after_grace)
{
    /* Samples 00:00..00:07 arrive live; nothing closes until the meter has
     * been silent for grace (2m), then the interval holding its last
     * sample closes. */
    start();
    for (int m = 0; m <= 7; m++)
        push("c1", L(2025, 3, 1, 0, m), 40);
    int64_t last = L(2025, 3, 1, 0, 7) * NS;
    engine_tick(eng, last + 119 * NS);
    ck_assert_uint_eq(n_billing, 0);
    engine_tick(eng, last + 120 * NS);
    ck_assert_uint_eq(n_billing, 1);
    ck_assert_int_eq(billing[0].kwh, 4666667); /* 40 x 7/60 */
    ck_assert_uint_eq(n_demand, 0);            /* March has not ended */
    stop();
}
END_TEST

START_TEST(test_sample_older_than_late_window_is_quarantined)
{
    start();
    for (int m = 0; m <= 30; m++)
        push("c1", L(2025, 3, 1, 0, m), 40);
    engine_tick(eng, (L(2025, 3, 1, 0, 30) + 7 * 3600) * NS);
    push("c1", L(2025, 3, 1, 0, 2) + 30, 400);
    ck_assert_uint_eq(n_quarantined, 1);
    ck_assert_str_eq(quarantined[0], "interval closed more than late_window ago");
    stop();
}
END_TEST

START_TEST(test_demand_bases)
{
    /* 120 kW for 15 min in March: max_kw 120.
     * capacity: 1000 kVA x 22.6 = 22600.0000
     * contract 100 kW (1.05 x2): 100 + 2 x (120 - 105) = 130 kW x 30 = 3900
     * max_demand: 120 x 30 = 3600. */
    start();
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 120);
    finish();
    ck_assert_int_eq(demand[0].max_kw, 120000000);
    ck_assert_int_eq(demand[0].charge, 36000000);
    stop();
    start_with(edit(base_config, "demand_basis = max_demand\ndemand.kw = 30",
                    "demand_basis = capacity\ndemand.kva = 22.6"));
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 120);
    finish();
    ck_assert_int_eq(demand[0].billing_kw, 1000000000);
    ck_assert_int_eq(demand[0].charge, 226000000);
    stop();
    start_with(edit(base_config, "demand_basis = max_demand", "demand_basis = contract"));
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 120);
    finish();
    ck_assert_int_eq(demand[0].billing_kw, 130000000);
    ck_assert_int_eq(demand[0].charge, 39000000);
    stop();
}
END_TEST

START_TEST(test_load_factor_rule_and_demand_tie)
{
    /* Load factor 0.02 kWh/kVA with 1000 kVA: 20 kWh a month or more pays
     * 90%. Two intervals of 40 kW (10 kWh each): 20 kWh, max 40 kW at the
     * earlier interval; 40 x 30 x 0.9 = 1080.0000. */
    start_with(edit(base_config, "demand.kw = 30", "demand.kw = 30\nload_factor_rule = 0.02 0.9"));
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 30), 40);
    finish();
    ck_assert_int_eq(demand[0].max_kw, 40000000);
    ck_assert_int_eq(demand[0].max_start_s, L(2025, 3, 1, 0, 0));
    ck_assert_int_eq(demand[0].charge, 10800000);
    stop();
}
END_TEST

START_TEST(test_energy_and_demand_programme_pays_on_demand)
{
    /* basis energy+demand, pro_rata 0.5 x 0.75: demand 3600 -> 1350. */
    start_with(edit(base_config, "basis = energy\n", "basis = energy+demand\n"));
    constant("c1", L(2025, 3, 1, 0, 0), L(2025, 3, 1, 0, 15), 120);
    finish();
    ck_assert_int_eq(demand[0].subsidy, 13500000);
    ck_assert_int_eq(demand[0].net, 36000000 - 13500000);
    ck_assert_str_eq(demand[0].programme, "pa");
    stop();
}
END_TEST

/* ---------------------------------------------------------------- */
/* Days in service (docs/design.md section 5, demand_charges)        */

/* Hubei, January 2026, 110 kV two-part (docs/tariffs.md section 3 A): the
 * time-of-use prices of the official table, funds 0.0452, demand 39.0
 * CNY/kW-month or 24.4 CNY/kVA-month. Cluster h1: 12500 kVA, 9000 kW
 * contracted. `cluster_extra` is added to [cluster h1];
 * `basis` is its demand_basis line(s). */
static const char *hubei(const char *basis, const char *cluster_extra)
{
    static char text[4096];
    snprintf(text, sizeof text,
             "[daemon]\ninterval = 15m\nmax_gap = 15m\ngrace = 2m\nlate_window = 6h\n"
             "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
             "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"
             "[site wuhan]\nprovince = hubei\ntariff = hubei-110kv\n"
             "[cluster h1]\ntenant = t1\nsite = wuhan\ninventory = dom*1\n"
             "transformer_kva = 12500\ncontract_kw = 9000\n%s\n"
             "[tariff hubei-110kv @ 2026-01-01]\nutc_offset = +08:00\n"
             "price.critical = 1.012099\nprice.peak = 0.809061\nprice.flat = 0.613986\n"
             "price.valley = 0.395024\nsurcharge = 0.0452\n"
             "profile.base = 00:00 valley, 06:00 flat, 12:00 valley, 14:00 flat, 16:00 peak, "
             "18:00 critical, 20:00 peak\n"
             "profile.summer = 00:00 valley, 06:00 flat, 12:00 valley, 14:00 flat, 16:00 peak, "
             "20:00 critical, 22:00 peak\n"
             "months = jan-jun base, jul-aug summer, sep-dec base\n"
             "%s\ndemand.kw = 39.0\ndemand.kva = 24.4\n"
             "[programme hp]\nprovinces = hubei\nfrom = 2026-01-01\nmin_domestic_share = 0.5\n"
             "rate = 0.1\nbasis = energy+demand\nmode = all_or_nothing\n",
             cluster_extra, basis);
    return text;
}

static const char *const bases[3] = {"demand_basis = max_demand", "demand_basis = capacity",
                                     "demand_basis = contract"};

/* A constant 10,000 kW on cluster h1, a sample every 15 minutes, from
 * `from` to `to` inclusive: 2500 kWh an interval, max_kw 10000. */
static void hubei_load(int64_t from_s, int64_t to_s)
{
    for (int64_t t = from_s; t <= to_s; t += 900)
        push("h1", t, 10000);
}

/* h1's demand row for month y-mo (the only one: no adjustment here). */
static const struct kept_demand *h1_month(int y, int mo)
{
    int32_t day = civil_to_day((struct civil_date){y, mo, 1});
    const struct kept_demand *found = NULL;
    for (size_t i = 0; i < n_demand; i++)
        if (demand[i].month_day == day && strcmp(demand[i].cluster, "h1") == 0) {
            ck_assert_ptr_null(found);
            found = &demand[i];
        }
    ck_assert_ptr_nonnull(found);
    return found;
}

START_TEST(test_hubei_full_month_charges_reproduce_issue_17)
{
    /* A whole January at 10,000 kW, no service dates:
     *   max_demand 10000 kW x 39.0 = 390000.0000
     *   capacity   12500 kVA x 24.4 = 305000.0000
     *   contract   9000 + 2 x (10000 - 1.05 x 9000) = 9000 + 2 x 550 = 10100 kW
     *              x 39.0 = 393900.0000 */
    static const int64_t charge[3] = {3900000000, 3050000000, 3939000000};
    for (int b = 0; b < 3; b++) {
        start_with(hubei(bases[b], ""));
        hubei_load(L(2026, 1, 1, 0, 0), L(2026, 2, 1, 0, 0));
        finish();
        const struct kept_demand *d = h1_month(2026, 1);
        ck_assert_int_eq(d->max_kw, 10000000000);
        ck_assert_int_eq(d->charge, charge[b]);
        ck_assert(!d->prorated);
        stop();
    }
}
END_TEST

START_TEST(test_entering_service_on_17_january_pays_15_days)
{
    /* In service from 2026-01-17: days 17..31 are 15 days, 15/30 = 1/2 of
     * the monthly charge on every basis (max_kw 10000 from the days in
     * service):
     *   max_demand 15 x 390000.0000 / 30 = 195000.0000
     *   capacity   15 x 305000.0000 / 30 = 152500.0000
     *   contract   15 x 393900.0000 / 30 = 196950.0000
     * The subsidy (hp: 0.1 of energy+demand, all or nothing) follows the
     * prorated charge: 0.1 x 195000 = 19500.0000 on max_demand. A sample
     * on 16 January is quarantined, not billed. */
    static const int64_t monthly[3] = {3900000000, 3050000000, 3939000000};
    static const int64_t charge[3] = {1950000000, 1525000000, 1969500000};
    static const int64_t billing_kw[3] = {10000000000, 12500000000, 10100000000};
    for (int b = 0; b < 3; b++) {
        start_with(hubei(bases[b], "service_from = 2026-01-17"));
        push("h1", L(2026, 1, 16, 23, 45), 10000);
        ck_assert_uint_eq(n_quarantined, 1);
        ck_assert_str_eq(quarantined[0], "outside the cluster's service dates");
        hubei_load(L(2026, 1, 17, 0, 0), L(2026, 2, 1, 0, 0));
        finish();
        const struct kept_demand *d = h1_month(2026, 1);
        ck_assert_int_eq(d->max_kw, 10000000000);
        ck_assert(d->prorated);
        ck_assert_int_eq(d->days_in_service, 15);
        ck_assert_uint_eq(d->n_runs, 1);
        ck_assert_int_eq(d->runs[0].from_day, civil_to_day((struct civil_date){2026, 1, 17}));
        ck_assert_int_eq(d->runs[0].days, 15);
        ck_assert_int_eq(d->runs[0].monthly_charge_cny4, monthly[b]);
        ck_assert_int_eq(d->runs[0].billing_kw_micro, billing_kw[b]);
        ck_assert_int_eq(d->billing_kw, billing_kw[b]);
        ck_assert_int_eq(d->charge, charge[b]);
        ck_assert_int_eq(d->subsidy, charge[b] / 10);
        ck_assert_int_eq(d->net, charge[b] - charge[b] / 10);
        /* Energy is unchanged: 15 days x 96 intervals of 2500 kWh. */
        ck_assert_uint_eq(n_billing, 15 * 96);
        ck_assert_int_eq(billing[0].start_s, L(2026, 1, 17, 0, 0));
        ck_assert_int_eq(billing[0].kwh, 2500000000);
        /* Valley 2500 x 0.395024 = 987.5600, its subsidy 98.7560. */
        ck_assert_int_eq(billing[0].energy, 9875600);
        ck_assert_int_eq(billing[0].subsidy, 987560);
        stop();
    }
}
END_TEST

START_TEST(test_leaving_service_after_10_january_pays_10_days)
{
    /* In service until 2026-01-10 inclusive: 10 days, 10/30 of the month:
     *   max_demand 10 x 390000.0000 / 30 = 130000.0000
     *   capacity   10 x 305000.0000 / 30 = 101666.66666.. -> 101666.6667
     *   contract   10 x 393900.0000 / 30 = 131300.0000
     * The reading at midnight ending 10 January closes its last interval;
     * one five minutes later is quarantined. */
    static const int64_t charge[3] = {1300000000, 1016666667, 1313000000};
    for (int b = 0; b < 3; b++) {
        start_with(hubei(bases[b], "service_until = 2026-01-10"));
        hubei_load(L(2026, 1, 1, 0, 0), L(2026, 1, 11, 0, 0));
        ck_assert_uint_eq(n_quarantined, 0);
        push("h1", L(2026, 1, 11, 0, 5), 10000);
        ck_assert_uint_eq(n_quarantined, 1);
        ck_assert_str_eq(quarantined[0], "outside the cluster's service dates");
        finish();
        ck_assert_uint_eq(n_billing, 10 * 96);
        const struct kept_demand *d = h1_month(2026, 1);
        ck_assert(d->prorated);
        ck_assert_int_eq(d->days_in_service, 10);
        ck_assert_int_eq(d->charge, charge[b]);
        stop();
    }
}
END_TEST

START_TEST(test_late_telemetry_without_service_dates_pays_the_full_month)
{
    /* No service dates: telemetry from 17 January on still pays the whole
     * month, 390000.0000 on max_demand (as before service dates existed). */
    start_with(hubei(bases[0], ""));
    hubei_load(L(2026, 1, 17, 0, 0), L(2026, 2, 1, 0, 0));
    finish();
    const struct kept_demand *d = h1_month(2026, 1);
    ck_assert(!d->prorated);
    ck_assert_uint_eq(d->n_runs, 0);
    ck_assert_int_eq(d->charge, 3900000000);
    stop();
    /* Nor does a late start within the service dates reduce it: outages do
     * not count, the days in service do (15 days from 17 January). */
    start_with(hubei(bases[0], "service_from = 2026-01-17"));
    hubei_load(L(2026, 1, 25, 0, 0), L(2026, 2, 1, 0, 0));
    finish();
    d = h1_month(2026, 1);
    ck_assert_int_eq(d->days_in_service, 15);
    ck_assert_int_eq(d->charge, 1950000000);
    stop();
}
END_TEST

START_TEST(test_capacity_change_on_16_april_charges_15_days_each)
{
    /* April has 30 days. transformer_kva 12500 until 15 April, 15000 from
     * 16 April, capacity basis at 24.4:
     *   1-15 April:  12500 x 24.4 = 305000.0000, 15/30 -> 152500
     *   16-30 April: 15000 x 24.4 = 366000.0000, 15/30 -> 183000
     *   charge 152500 + 183000 = 335500.0000; billing_kw is the last day's. */
    start_with(hubei(bases[1], "transformer_kva@2026-04-16 = 15000"));
    hubei_load(L(2026, 4, 1, 0, 0), L(2026, 5, 1, 0, 0));
    finish();
    const struct kept_demand *d = h1_month(2026, 4);
    ck_assert(d->prorated);
    ck_assert_int_eq(d->days_in_service, 30);
    ck_assert_uint_eq(d->n_runs, 2);
    ck_assert_int_eq(d->runs[0].days, 15);
    ck_assert_int_eq(d->runs[0].monthly_charge_cny4, 3050000000);
    ck_assert_int_eq(d->runs[1].from_day, civil_to_day((struct civil_date){2026, 4, 16}));
    ck_assert_int_eq(d->runs[1].days, 15);
    ck_assert_int_eq(d->runs[1].monthly_charge_cny4, 3660000000);
    ck_assert_int_eq(d->billing_kw, 15000000000);
    ck_assert_int_eq(d->charge, 3355000000);
    stop();
    /* The same for a contract of 9000 kW, then 9500 kW, at max 10000 kW:
     *   9000: 9000 + 2 x (10000 - 9450) = 10100 kW x 39 = 393900, /2 -> 196950
     *   9500: 9500 + 2 x (10000 - 9975) =  9550 kW x 39 = 372450, /2 -> 186225
     *   charge 383175.0000 */
    start_with(hubei(bases[2], "contract_kw@2026-04-16 = 9500"));
    hubei_load(L(2026, 4, 1, 0, 0), L(2026, 5, 1, 0, 0));
    finish();
    d = h1_month(2026, 4);
    ck_assert_uint_eq(d->n_runs, 2);
    ck_assert_int_eq(d->runs[1].billing_kw_micro, 9550000000);
    ck_assert_int_eq(d->charge, 3831750000);
    /* A capacity change does not prorate a contract-basis month: what it
     * bills did not change. */
    stop();
    start_with(hubei(bases[2], "transformer_kva@2026-04-16 = 15000"));
    hubei_load(L(2026, 4, 1, 0, 0), L(2026, 5, 1, 0, 0));
    finish();
    d = h1_month(2026, 4);
    ck_assert(!d->prorated);
    ck_assert_int_eq(d->charge, 3939000000);
    stop();
}
END_TEST

START_TEST(test_31_day_month_in_service_all_month_pays_one_month)
{
    /* January has 31 days. In service from 1 January, no change: exactly
     * one month, 390000.0000, not 31/30 of it. A change on 1 January (in
     * force the whole month) is no change within it either. */
    start_with(hubei(bases[0], "service_from = 2026-01-01\nservice_until = 2026-12-31"));
    hubei_load(L(2026, 1, 1, 0, 0), L(2026, 2, 1, 0, 0));
    finish();
    const struct kept_demand *d = h1_month(2026, 1);
    ck_assert(!d->prorated);
    ck_assert_int_eq(d->charge, 3900000000);
    stop();
    start_with(hubei(bases[1], "transformer_kva@2026-01-01 = 15000"));
    hubei_load(L(2026, 1, 1, 0, 0), L(2026, 2, 1, 0, 0));
    finish();
    d = h1_month(2026, 1);
    ck_assert(!d->prorated);
    ck_assert_int_eq(d->charge, 3660000000);
    stop();
}
END_TEST

START_TEST(test_change_in_a_31_day_month_counts_31_days)
{
    /* The rule bills each day of a change month at 1/30 of its monthly
     * charge, with no cap at one month (docs/tariffs.md section 2.2): a
     * capacity change on 16 January charges 15 days at 12500 kVA and 16 at
     * 15000 kVA:
     *   15 x 305000.0000 / 30 = 152500
     *   16 x 366000.0000 / 30 = 195200
     *   charge 347700.0000 (31/30 of a month's worth of days) */
    start_with(hubei(bases[1], "transformer_kva@2026-01-16 = 15000"));
    hubei_load(L(2026, 1, 1, 0, 0), L(2026, 2, 1, 0, 0));
    finish();
    const struct kept_demand *d = h1_month(2026, 1);
    ck_assert(d->prorated);
    ck_assert_int_eq(d->days_in_service, 31);
    ck_assert_int_eq(d->runs[0].days, 15);
    ck_assert_int_eq(d->runs[1].days, 16);
    ck_assert_int_eq(d->charge, 3477000000);
    stop();
}
END_TEST

START_TEST(test_prorated_month_survives_a_snapshot_and_adjusts)
{
    /* The proration comes from the config and the month's rows, so a
     * snapshot in the middle changes nothing. A late 12000 kW at 31
     * January 23:50 and 23:55 (between 10000 kW at 23:45 and 00:00) makes
     * the last interval (10000+12000)/2 x 5/60 + 12000 x 5/60 +
     * (12000+10000)/2 x 5/60 = 2833.3333.. -> 2833.333333 kWh, so max_kw
     * 11333.333332; monthly 11333.333332 x 39 = 441999.999948 -> 441999.9999;
     * 15 days: 15 x 441999.9999 / 30 = 220999.99995, a tie, to the even
     * 221000.0000: the adjustments carry +26000.0000 over 195000. */
    start_with(hubei(bases[0], "service_from = 2026-01-17"));
    hubei_load(L(2026, 1, 17, 0, 0), L(2026, 1, 24, 0, 0));
    size_t len;
    void *bytes = engine_save(eng, &len);
    engine_free(eng);
    struct error err;
    eng = engine_load(cfg, &sink, bytes, len, &err);
    ck_assert_msg(eng != NULL, "load: %s", err.msg);
    free(bytes);
    hubei_load(L(2026, 1, 24, 0, 15), L(2026, 2, 1, 0, 0));
    engine_tick(eng, now_ns + 3 * 60 * NS); /* January ends by the clock */
    ck_assert_int_eq(h1_month(2026, 1)->charge, 1950000000);
    push("h1", L(2026, 1, 31, 23, 50), 12000);
    push("h1", L(2026, 1, 31, 23, 55), 12000);
    finish();
    /* One adjustment per request (each sample is one here). */
    ck_assert_uint_eq(n_demand, 3);
    const struct kept_demand *last = &demand[2];
    ck_assert_int_eq(last->revision, 2);
    ck_assert(last->prorated);
    ck_assert_int_eq(last->days_in_service, 15);
    ck_assert_int_eq(last->max_kw, 11333333332);
    ck_assert_int_eq(last->runs[0].monthly_charge_cny4, 4419999999);
    ck_assert_int_eq(demand[0].charge + demand[1].charge + last->charge, 2210000000);
    stop();
}
END_TEST

/* Feeds the same stream in one engine, and in two with a snapshot
 * between them: the rows must be identical. */
static void stream(int from, int to)
{
    for (int m = from; m < to; m++) {
        push("c1", L(2025, 3, 1, 0, 0) + m * 60, 40 + m % 7);
        push_kind("c2", "ctr", SAMPLE_COUNTER, L(2025, 3, 1, 0, 0) + m * 60, 1000 + m * 3);
        if (m % 45 == 20)
            push("c1", L(2025, 3, 1, 0, 0) + (m - 17) * 60 + 30, 90); /* late */
    }
}

START_TEST(test_snapshot_round_trip_gives_the_same_rows)
{
    start();
    stream(0, 200);
    finish();
    static struct kept_billing expect[KEPT_BILLING];
    size_t n_expect = n_billing;
    memcpy(expect, billing, sizeof billing);
    ck_assert_uint_gt(n_expect, 20);
    stop();

    now_ns = 0;
    start();
    stream(0, 97);
    size_t len;
    void *bytes = engine_save(eng, &len);
    engine_free(eng);
    struct error err;
    eng = engine_load(cfg, &sink, bytes, len, &err);
    ck_assert_msg(eng != NULL, "load: %s", err.msg);
    /* A second save of the loaded state is byte-identical. */
    size_t len2;
    void *bytes2 = engine_save(eng, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_int_eq(memcmp(bytes, bytes2, len), 0);
    free(bytes);
    free(bytes2);
    stream(97, 200);
    finish();
    ck_assert_uint_eq(n_billing, n_expect);
    for (size_t i = 0; i < n_expect; i++) {
        ck_assert_int_eq(billing[i].start_s, expect[i].start_s);
        ck_assert_int_eq(billing[i].revision, expect[i].revision);
        ck_assert_int_eq(billing[i].kwh, expect[i].kwh);
        ck_assert_int_eq(billing[i].net, expect[i].net);
    }
    stop();
}
END_TEST

START_TEST(test_snapshot_rejects_foreign_bytes)
{
    start();
    struct error err;
    ck_assert_ptr_null(engine_load(cfg, &sink, "garbage!", 8, &err));
    ck_assert_str_eq(err.msg, "not an engine snapshot");
    stream(0, 30);
    size_t len;
    unsigned char *bytes = engine_save(eng, &len);
    ck_assert_ptr_null(engine_load(cfg, &sink, bytes, len - 3, &err));
    ck_assert_str_eq(err.msg, "engine snapshot is truncated or corrupt");
    free(bytes);
    stop();
}
END_TEST

/* A snapshot whose meter claims a last sample older than one it keeps is
 * refused: the engine would append behind it, and a buffer must stay
 * sorted. */
/* The engine's snapshot loads; with the bytes `find` first holds in it
 * overwritten by `put`, it is refused as corrupt. */
static void assert_patch_is_refused(const void *find, size_t find_n, const void *put, size_t put_n)
{
    size_t len;
    unsigned char *bytes = engine_save(eng, &len);
    unsigned char *at = memmem(bytes, len, find, find_n);
    ck_assert_ptr_nonnull(at);
    struct error err;
    struct engine *again = engine_load(cfg, &sink, bytes, len, &err);
    ck_assert_ptr_nonnull(again);
    engine_free(again);
    memcpy(at, put, put_n);
    ck_assert_ptr_null(engine_load(cfg, &sink, bytes, len, &err));
    ck_assert_str_eq(err.msg, "engine snapshot is truncated or corrupt");
    free(bytes);
}

START_TEST(test_snapshot_refuses_samples_outside_the_span)
{
    start();
    stream(0, 30);
    const struct meter_state *m = &eng->meters[0];
    ck_assert_uint_gt(m->buf.n, 1);
    int64_t span[2] = {m->first_ns, m->last_ns};
    int64_t shorter[2] = {m->first_ns, m->last_ns - 1000000000}; /* before its last sample */
    assert_patch_is_refused(span, sizeof span, shorter, sizeof shorter);
    stop();
}
END_TEST

START_TEST(test_snapshot_refuses_rows_out_of_order)
{
    /* A cluster's rows are found by binary search: a snapshot whose rows
     * are not sorted, each once, would have the engine miss one it holds
     * (and make another). */
    start();
    stream(0, 60);
    const struct cluster_state *cs = &eng->clusters[eng->meters[0].cluster];
    ck_assert_uint_gt(cs->n_rows, 1);
    int64_t first[2] = {cs->rows[0].start_s, cs->rows[0].revision};
    int64_t second = cs->rows[1].start_s; /* rows 0 and 1 both at the second's start */
    assert_patch_is_refused(first, sizeof first, &second, sizeof second);
    stop();
}
END_TEST

START_TEST(test_meter_cannot_switch_kind)
{
    start();
    push("c1", L(2025, 3, 1, 0, 0), 40);
    struct engine_sample s = {"c1", "main", SAMPLE_COUNTER, L(2025, 3, 1, 0, 1) * NS, 5};
    struct error err;
    ck_assert(engine_judge(eng, &s, &err) == ENGINE_REFUSED);
    ck_assert_str_eq(err.msg, "meter \"main\" of cluster \"c1\" sends power (kw or w), not an "
                              "energy counter");
    s.cluster = "nope";
    ck_assert(engine_judge(eng, &s, &err) == ENGINE_REFUSED);
    ck_assert_str_eq(err.msg, "unknown cluster \"nope\"");
    stop();
}
END_TEST

/* Found by review: each was a bug. */

START_TEST(test_month_whose_rows_all_come_at_the_end_still_closes)
{
    /* Meter a runs 00:00-01:00, meter b only 00:00-00:01: nothing closes
     * before the end of input; March must still get its demand row.
     * 00:00 row: a 10 kWh + b 10 x 1/60 = 10.166667 -> 40.666668 kW x 30. */
    start();
    for (int m = 0; m <= 60; m++) {
        push_kind("c1", "a", SAMPLE_POWER, L(2025, 3, 1, 0, m), 40);
        if (m <= 1)
            push_kind("c1", "b", SAMPLE_POWER, L(2025, 3, 1, 0, m), 10);
    }
    finish();
    ck_assert_uint_eq(n_demand, 1);
    ck_assert_int_eq(demand[0].max_kw, 40666668);
    ck_assert_int_eq(demand[0].charge, 12200000);
    stop();
}
END_TEST

START_TEST(test_meter_with_a_single_sample_makes_no_row)
{
    /* a covers 00:00-00:10; b has one sample at 00:20: an instant, no row
     * for 00:15. */
    start();
    for (int m = 0; m <= 10; m += 5)
        push_kind("c1", "a", SAMPLE_POWER, L(2025, 3, 1, 0, m), 40);
    push_kind("c1", "b", SAMPLE_POWER, L(2025, 3, 1, 0, 20), 40);
    finish();
    ck_assert_uint_eq(n_billing, 1);
    ck_assert_int_eq(billing[0].start_s, L(2025, 3, 1, 0, 0));
    stop();
}
END_TEST

START_TEST(test_month_closes_only_once_a_later_interval_closed)
{
    /* 40 kW from Mar 31 23:30 to 23:50, silent past grace (tick at
     * 23:52:30 closes the 23:45 interval), then 100 kW 23:53-23:59 and 40 kW
     * from Apr 1 00:00. March's row waits for April's first interval:
     * 23:45 = 40 x 5/60 + (gap) + ... its final value, one row only. */
    start();
    for (int m = 30; m <= 50; m++)
        push("c1", L(2025, 3, 31, 23, m), 40);
    engine_tick(eng, (L(2025, 3, 31, 23, 52) + 30) * NS);
    ck_assert_uint_eq(n_demand, 0);
    for (int m = 53; m <= 59; m++)
        push("c1", L(2025, 3, 31, 23, m), 100);
    ck_assert_uint_eq(n_demand, 0);
    for (int m = 0; m <= 16; m++)
        push("c1", L(2025, 4, 1, 0, m), 40);
    ck_assert_uint_eq(n_demand, 1);
    ck_assert_int_eq(demand[0].month_day, civil_to_day((struct civil_date){2025, 3, 1}));
    ck_assert_int_eq(demand[0].revision, 0);
    stop();
}
END_TEST

START_TEST(test_late_window_counts_from_now_for_a_quiet_cluster)
{
    /* c1's 00:00 interval closes at 00:15; c2 moves the clock to 07:31; a
     * c1 sample for 00:07 is then older than late_window: quarantined. */
    start();
    for (int m = 0; m <= 30; m++)
        if (m != 7)
            push("c1", L(2025, 3, 1, 0, m), 40);
    push("c2", L(2025, 3, 1, 7, 31), 40);
    push("c1", L(2025, 3, 1, 0, 7), 100);
    ck_assert_uint_eq(n_quarantined, 1);
    ck_assert_str_eq(quarantined[0], "interval closed more than late_window ago");
    stop();
}
END_TEST

START_TEST(test_refused_first_sample_leaves_no_meter_behind)
{
    /* Meter b's first sample is too late and quarantined; it must not
     * become a meter that is never silent and keeps March open. */
    start();
    for (int m = 0; m <= 30; m++)
        push_kind("c1", "a", SAMPLE_POWER, L(2025, 3, 1, 0, m), 40);
    engine_tick(eng, (L(2025, 3, 1, 0, 30) + 7 * 3600) * NS);
    now_ns = (L(2025, 3, 1, 0, 30) + 7 * 3600) * NS;
    push_kind("c1", "b", SAMPLE_POWER, L(2025, 3, 1, 0, 5), 40);
    ck_assert_uint_eq(n_quarantined, 1);
    engine_tick(eng, (L(2025, 4, 1, 0, 10)) * NS);
    ck_assert_uint_eq(n_demand, 1);
    stop();
}
END_TEST

START_TEST(test_absurd_values_are_refused)
{
    start();
    struct engine_sample s = {"c1", "main", SAMPLE_POWER, L(2025, 3, 1, 0, 0) * NS, 1e14};
    struct error err;
    ck_assert(engine_judge(eng, &s, &err) == ENGINE_REFUSED);
    ck_assert_str_eq(err.msg, "value 1e+14 is out of range (power is at most 1e+09)");
    ck_assert(!engine_push(eng, &s, s.ts_ns, &err));
    s.kind = SAMPLE_COUNTER;
    s.value = 5e12; /* a large counter reading is fine */
    ck_assert(engine_push(eng, &s, s.ts_ns, &err));
    stop();
}
END_TEST

START_TEST(test_insert_reaching_into_a_final_interval_is_quarantined)
{
    /* 40 kW at 00:00..00:16 every 4 min, then 06:20 far ahead: the 00:00
     * interval is final 6 h after it closed. A 100 kW sample at 00:15 sits
     * between 00:12 (final) and 00:16 and would change the final
     * interval: quarantined, nothing adjusted. */
    start();
    for (int m = 0; m <= 16; m += 4)
        push("c1", L(2025, 3, 1, 0, m), 40);
    now_ns = L(2025, 3, 1, 6, 20) * NS;
    engine_tick(eng, now_ns); /* silent: closes 00:00 and 00:15 */
    size_t before = n_billing;
    now_ns = L(2025, 3, 1, 6, 30) * NS;
    push("c1", L(2025, 3, 1, 0, 15), 100);
    ck_assert_uint_eq(n_quarantined, 1);
    ck_assert_uint_eq(n_billing, before);
    stop();
}
END_TEST

/* c1's last demand row for month y-mo; *charge (may be NULL) receives the
 * charge of all of them summed: what the ledger holds for the month after
 * every adjustment. */
static const struct kept_demand *demand_of(int y, int mo, int64_t *charge)
{
    int32_t day = civil_to_day((struct civil_date){y, mo, 1});
    const struct kept_demand *last = NULL;
    int64_t sum = 0;
    for (size_t i = 0; i < n_demand; i++)
        if (demand[i].month_day == day && strcmp(demand[i].cluster, "c1") == 0) {
            last = &demand[i];
            sum += demand[i].charge;
        }
    if (charge)
        *charge = sum;
    return last;
}

START_TEST(test_clock_closed_month_is_priced_again_when_one_batch_holds_its_last_interval)
{
    /* max_gap 90m. 40 kW Mar 31 23:00-23:10, then silence: the tick at Apr 1
     * 00:05 closes 23:00 (40 x 10/60 = 6.666667 kWh -> 26.666668 kW) and,
     * March being over by grace, March (26.666668 x 30 = 800.0000).
     * A 100 kW sample at 00:20 joins 23:10 by a 70-minute line (under
     * max_gap): P(t) = 40 + 60 x (t - 23:10)/70 min, so P(23:45) = 70 and
     * P(00:00) = 82.857142..; the 23:45 interval is
     * (70 + 82.857142..)/2 x 1/4 h = 19.1071428.. -> 19.107143 kWh, and
     * max_kw = 19.107143 x 4 = 76.428572 (the rounded kWh over the hours,
     * docs/design.md section 5; the line's own average is 76.4285714..).
     * The same sample closes 23:15, 23:30, 23:45 (March, closed by the
     * clock) and 00:00 in one batch, with March's close item after 23:45:
     * March must be priced again after 23:45, to 76.428572 x 30 =
     * 2292.85716 -> 2292.8572, as pricing everything at once says. */
    const char *text = edit(base_config, "max_gap = 5m", "max_gap = 90m");
    start_with(text);
    constant("c1", L(2025, 3, 31, 23, 0), L(2025, 3, 31, 23, 10), 40);
    now_ns = L(2025, 4, 1, 0, 5) * NS;
    engine_tick(eng, now_ns);
    ck_assert_uint_eq(n_demand, 1);
    ck_assert_int_eq(demand[0].max_kw, 26666668);
    ck_assert_int_eq(demand[0].charge, 8000000);
    push("c1", L(2025, 4, 1, 0, 20), 100);
    int64_t live;
    const struct kept_demand *march = demand_of(2025, 3, &live);
    ck_assert_int_eq(march->max_kw, 76428572);
    ck_assert_int_eq(march->max_start_s, L(2025, 3, 31, 23, 45));
    ck_assert_int_eq(march->billing_kw, 76428572);
    ck_assert_int_eq(live, 22928572);
    stop();

    /* Priced independently, all at once as `tariffd price` does: the same
     * month, the same money. */
    start_with(text);
    constant("c1", L(2025, 3, 31, 23, 0), L(2025, 3, 31, 23, 10), 40);
    push("c1", L(2025, 4, 1, 0, 20), 100);
    finish();
    int64_t offline;
    march = demand_of(2025, 3, &offline);
    ck_assert_int_eq(march->revision, 0);
    ck_assert_int_eq(march->max_kw, 76428572);
    ck_assert_int_eq(offline, live);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- */
/* Late bursts                                                       */

/* One sample of a request of several; batch_done() ends the request. */
static void push_in_batch(const char *cluster, const char *meter, int64_t ts_s, double kw)
{
    struct engine_sample s = {cluster, meter, SAMPLE_POWER, ts_s * NS, kw};
    struct error err;
    ck_assert_msg(engine_push(eng, &s, now_ns, &err), "push: %s", err.msg);
}

static void batch_done(void)
{
    engine_batch_done(eng, now_ns);
}

/* Rows from index `from` on: whether no interval has two adjustments. */
static bool one_adjustment_per_interval(size_t from)
{
    for (size_t i = from; i < n_billing; i++)
        for (size_t j = i + 1; j < n_billing; j++)
            if (billing[i].revision > 0 && billing[j].revision > 0 &&
                billing[i].start_s == billing[j].start_s &&
                strcmp(billing[i].cluster, billing[j].cluster) == 0)
                return false;
    return true;
}

static size_t adjustments_since(size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < n_billing; i++)
        n += billing[i].revision > 0;
    return n;
}

/* Per interval of c1, the sums over revisions: what the ledger holds. */
struct interval_sum {
    int64_t start_s, kwh, energy, surcharge, subsidy, net, missing_s;
};

static size_t interval_sums(struct interval_sum *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < n_billing; i++) {
        size_t k = 0;
        while (k < n && out[k].start_s != billing[i].start_s)
            k++;
        if (k == n) {
            ck_assert_uint_lt(n, cap);
            out[n++] = (struct interval_sum){.start_s = billing[i].start_s};
        }
        out[k].kwh += billing[i].kwh;
        out[k].energy += billing[i].energy;
        out[k].surcharge += billing[i].surcharge;
        out[k].subsidy += billing[i].subsidy;
        out[k].net += billing[i].net;
        out[k].missing_s += billing[i].missing_s;
    }
    return n;
}

static int64_t demand_charge_sum(void)
{
    int64_t sum = 0;
    for (size_t i = 0; i < n_demand; i++)
        sum += demand[i].charge;
    return sum;
}

/* c1 has meters a (40 kW) and b (60 kW), a sample every 10 s from t0 to
 * t0 + 90 min, sent live with a tick a minute; b's agent loses its link
 * from t0 + 10 min to t0 + 70 min and then sends the hour it buffered
 * (360 samples) in `requests` requests back to back. */
static void buffered_hour(int64_t t0, int requests, size_t *adjustments)
{
    int64_t outage = t0 + 600, back = t0 + 4200;
    *adjustments = 0;
    for (int64_t t = t0; t <= t0 + 5400; t += 10) {
        push_kind("c1", "a", SAMPLE_POWER, t, 40);
        if (t <= outage || t > back)
            push_kind("c1", "b", SAMPLE_POWER, t, 60);
        if (t == back) {
            int per = 360 / requests;
            for (int r = 0; r < requests; r++) {
                size_t before = n_billing;
                for (int k = 1; k <= per; k++)
                    push_in_batch("c1", "b", outage + (r * per + k) * 10, 60);
                batch_done();
                ck_assert_msg(one_adjustment_per_interval(before),
                              "request %d of %d: an interval adjusted twice", r + 1, requests);
                *adjustments += adjustments_since(before);
            }
        }
        if (t % 60 == 0)
            engine_tick(eng, now_ns);
    }
    finish();
}

/* The same samples priced at once, in timestamp order. */
static void buffered_hour_at_once(int64_t t0)
{
    for (int64_t t = t0; t <= t0 + 5400; t += 10) {
        push_kind("c1", "a", SAMPLE_POWER, t, 40);
        push_kind("c1", "b", SAMPLE_POWER, t, 60);
    }
    finish();
}

static void assert_sums_equal(const struct interval_sum *got, size_t n_got,
                              const struct interval_sum *want, size_t n_want)
{
    ck_assert_uint_eq(n_got, n_want);
    for (size_t i = 0; i < n_want; i++) {
        size_t k = 0;
        while (k < n_got && got[k].start_s != want[i].start_s)
            k++;
        ck_assert_msg(k < n_got, "interval %lld missing", (long long)want[i].start_s);
        ck_assert_int_eq(got[k].kwh, want[i].kwh);
        ck_assert_int_eq(got[k].energy, want[i].energy);
        ck_assert_int_eq(got[k].surcharge, want[i].surcharge);
        ck_assert_int_eq(got[k].subsidy, want[i].subsidy);
        ck_assert_int_eq(got[k].net, want[i].net);
        ck_assert_int_eq(got[k].missing_s, want[i].missing_s);
    }
}

START_TEST(test_an_hour_sent_late_in_one_request_adjusts_each_interval_once)
{
    /* 00:00 local: b is silent from 00:10 (grace 2 m), so a closes 00:00,
     * 00:15, 00:30 and 00:45 without b's last hour. At 01:10 b sends
     * 00:10:10..01:10:00: the four intervals reopen and, both meters being
     * past 01:00, close again at the end of the request: four adjustments,
     * not 360. The sums over revisions are those of pricing it all at
     * once. */
    struct interval_sum live[16], once[16];
    for (int requests = 1; requests <= 4; requests *= 4) {
        now_ns = 0;
        start();
        size_t adjustments;
        buffered_hour(L(2025, 3, 1, 0, 0), requests, &adjustments);
        ck_assert_uint_eq(adjustments, 4);
        struct engine_stats st;
        engine_stats(eng, &st);
        ck_assert_uint_eq(st.adjustment_rows, 4);
        ck_assert_uint_eq(st.intervals_reopened, 4);
        ck_assert_uint_eq(st.late_samples, 300); /* 00:10:10..01:00:00; 01:00 is still open */
        size_t n_live = interval_sums(live, 16);
        stop();

        now_ns = 0;
        start();
        buffered_hour_at_once(L(2025, 3, 1, 0, 0));
        ck_assert_uint_eq(adjustments_since(0), 0);
        size_t n_once = interval_sums(once, 16);
        stop();
        assert_sums_equal(live, n_live, once, n_once);
    }
}
END_TEST

START_TEST(test_a_late_burst_over_a_month_boundary_adjusts_the_month_once)
{
    /* From Mar 31 23:30 local: b is silent from 23:40; a closes March's
     * last intervals and, with April's first, March (a demand row). At
     * 00:40 b sends its hour: March's 23:30 and 23:45 reopen with April's
     * 00:00 and 00:15, close again in one go, and March's demand is priced
     * again once: one demand adjustment, and the month's charge is that of
     * pricing it all at once. */
    now_ns = 0;
    start();
    int64_t t0 = L(2025, 3, 31, 23, 30);
    int64_t outage = t0 + 600, back = t0 + 4200;
    size_t demand_before = 0;
    for (int64_t t = t0; t <= t0 + 5400; t += 10) {
        push_kind("c1", "a", SAMPLE_POWER, t, 40);
        if (t <= outage || t > back)
            push_kind("c1", "b", SAMPLE_POWER, t, 60);
        if (t == back) {
            demand_before = n_demand;
            ck_assert_uint_eq(demand_before, 1); /* March, closed */
            for (int k = 1; k <= 360; k++)
                push_in_batch("c1", "b", outage + k * 10, 60);
            batch_done();
            ck_assert_uint_eq(n_demand, 2);
            ck_assert_int_eq(demand[1].revision, 1);
            ck_assert_int_eq(demand[1].month_day, demand[0].month_day);
            ck_assert(one_adjustment_per_interval(0));
        }
        if (t % 60 == 0)
            engine_tick(eng, now_ns);
    }
    int64_t march_live = 0;
    for (size_t i = 0; i < n_demand; i++)
        if (demand[i].month_day == demand[0].month_day)
            march_live += demand[i].charge;
    finish();
    int64_t live_all = demand_charge_sum();
    stop();

    now_ns = 0;
    start();
    buffered_hour_at_once(t0);
    ck_assert_int_eq(demand_charge_sum(), live_all);
    ck_assert_int_eq(demand[0].charge, march_live);
    stop();
}
END_TEST

static void push_counter_in_batch(const char *cluster, const char *meter, int64_t ts_s, double kwh)
{
    struct engine_sample s = {cluster, meter, SAMPLE_COUNTER, ts_s * NS, kwh};
    struct error err;
    ck_assert_msg(engine_push(eng, &s, now_ns, &err), "push: %s", err.msg);
}

START_TEST(test_a_counter_read_before_every_row_makes_its_rows_in_order)
{
    /* c1 and c2: meter a at 40 and 20 kW from 00:00 to 02:00 local, its
     * intervals closed as it goes. Then one request: counter b of each
     * read at 22:00 (22:05 in c2) the day before and at 01:00. Its
     * difference spreads over intervals before every row each cluster
     * holds (22:00 to 23:45, made in one pass, RELIABILITY.md #17) and
     * over some it holds (adjusted). The sums over revisions are those of
     * pricing it all in timestamp order. */
    int64_t t0 = L(2025, 3, 2, 0, 0);
    struct interval_sum live[32], once[32];
    now_ns = 0;
    start();
    for (int64_t t = t0; t <= t0 + 7200; t += 60) {
        push_kind("c1", "a", SAMPLE_POWER, t, 40);
        push_kind("c2", "a", SAMPLE_POWER, t, 20);
    }
    size_t before = n_billing;
    ck_assert_uint_eq(before, 16); /* 00:00 to 01:45, both clusters */
    push_counter_in_batch("c1", "b", t0 - 7200, 100);
    push_counter_in_batch("c1", "b", t0 + 3600, 130);
    push_counter_in_batch("c2", "b", t0 - 6900, 50);
    push_counter_in_batch("c2", "b", t0 + 3600, 62);
    batch_done();
    finish();
    ck_assert_uint_eq(n_quarantined, 0);
    ck_assert(one_adjustment_per_interval(before));
    size_t made_before = 0;
    for (size_t i = before; i < n_billing; i++)
        made_before += billing[i].revision == 0 && billing[i].start_s < t0;
    ck_assert_uint_eq(made_before, 16); /* 22:00 to 23:45, both clusters */
    size_t n_live = interval_sums(live, 32);
    stop();

    now_ns = 0;
    start();
    push_kind("c1", "b", SAMPLE_COUNTER, t0 - 7200, 100);
    push_kind("c2", "b", SAMPLE_COUNTER, t0 - 6900, 50);
    for (int64_t t = t0; t <= t0 + 7200; t += 60) {
        push_kind("c1", "a", SAMPLE_POWER, t, 40);
        push_kind("c2", "a", SAMPLE_POWER, t, 20);
        if (t == t0 + 3600) {
            push_kind("c1", "b", SAMPLE_COUNTER, t, 130);
            push_kind("c2", "b", SAMPLE_COUNTER, t, 62);
        }
    }
    finish();
    ck_assert_uint_eq(n_quarantined, 0);
    size_t n_once = interval_sums(once, 32);
    stop();
    assert_sums_equal(live, n_live, once, n_once);
}
END_TEST

START_TEST(test_a_late_sample_that_changes_nothing_makes_no_row)
{
    /* 40 kW a minute, 00:07 missing (the 00:06-00:08 segment is 40 kW
     * anyway). 00:07 arrives late with 40 kW: 00:00 reopens and closes
     * again with the same energy: no row. */
    start();
    for (int m = 0; m <= 20; m++)
        if (m != 7)
            push("c1", L(2025, 3, 1, 0, m), 40);
    ck_assert_uint_eq(n_billing, 1);
    push("c1", L(2025, 3, 1, 0, 7), 40);
    ck_assert_uint_eq(n_billing, 1);
    struct engine_stats st;
    engine_stats(eng, &st);
    ck_assert_uint_eq(st.late_samples, 1);
    ck_assert_uint_eq(st.intervals_reopened, 1);
    ck_assert_uint_eq(st.adjustment_rows, 0);
    stop();
}
END_TEST

START_TEST(test_a_reopened_interval_gets_back_only_its_own_subsidy_once_the_cap_ran_out)
{
    /* Cap 3 CNY. c1's flat 08:00 (10 kWh, 5.0000) is paid 0.5 x 0.75 x 5 =
     * 1.8750; then c2's 08:00 (share 0.5: 0.5 x 0.5 x 5 = 1.2500) gets the
     * 1.1250 left. A late 100 kW sample at c1's 08:07 adds 1 kWh (+0.5000
     * energy, +0.0200 surcharge): priced again, c1's 08:00 would be paid
     * 2.0625, but only its own 1.8750 comes back to the cap: the
     * adjustment pays no subsidy, and the year's total stays the cap. */
    start_with(edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 3\n"));
    for (int m = 0; m <= 20; m++)
        if (m != 7)
            push("c1", L(2025, 3, 1, 8, m), 40);
    constant("c2", L(2025, 3, 1, 8, 0), L(2025, 3, 1, 8, 20), 40);
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].subsidy, 18750);
    ck_assert_str_eq(billing[1].cluster, "c2");
    ck_assert_int_eq(billing[1].subsidy, 11250);
    push("c1", L(2025, 3, 1, 8, 7), 100);
    ck_assert_uint_eq(n_billing, 3);
    ck_assert_str_eq(billing[2].cluster, "c1");
    ck_assert_int_eq(billing[2].revision, 1);
    ck_assert_int_eq(billing[2].kwh, 1000000);
    ck_assert_int_eq(billing[2].energy, 5000);
    ck_assert_int_eq(billing[2].surcharge, 200);
    ck_assert_int_eq(billing[2].subsidy, 0);
    ck_assert_int_eq(billing[2].net, 5200);
    finish();
    int64_t total = 0;
    for (size_t i = 0; i < n_billing; i++)
        total += billing[i].subsidy;
    for (size_t i = 0; i < n_demand; i++)
        total += demand[i].subsidy;
    ck_assert_int_eq(total, 30000);
    stop();
}
END_TEST

/* c1: meter a at 40 kW 00:00-00:30 a minute apart, meter b at 60 kW
 * 00:00-00:10, then b silent (a tick past grace): a closes 00:00 and
 * 00:15 without b. At 00:31 b sends 00:11-00:14: 00:00 reopens, and as b
 * is now behind (its last sample before 00:15), 00:00 waits. */
static void b_behind(void)
{
    for (int m = 0; m <= 30; m++) {
        push_kind("c1", "a", SAMPLE_POWER, L(2025, 3, 1, 0, m), 40);
        if (m <= 10)
            push_kind("c1", "b", SAMPLE_POWER, L(2025, 3, 1, 0, m), 60);
        engine_tick(eng, now_ns);
    }
    ck_assert_uint_eq(n_billing, 2);
    for (int m = 11; m <= 14; m++)
        push_in_batch("c1", "b", L(2025, 3, 1, 0, m), 60);
    batch_done();
    ck_assert_uint_eq(n_billing, 2); /* 00:00 is reopened, not yet closed */
}

/* b falls silent again (a tick past grace): 00:00 closes again. */
static void b_silent(void)
{
    engine_tick(eng, now_ns + 3 * 60 * NS);
}

START_TEST(test_reopened_intervals_survive_a_checkpoint)
{
    /* The same calls with a save and a load in the middle give the same
     * rows: the reopened 00:00 is part of the state, and closes again when
     * b is silent, with no sample to reopen it after the load. */
    struct kept_billing straight[8];
    start();
    b_behind();
    b_silent();
    ck_assert_uint_eq(n_billing, 3);
    ck_assert_int_eq(billing[2].start_s, L(2025, 3, 1, 0, 0));
    ck_assert_int_eq(billing[2].revision, 1);
    memcpy(straight, billing, sizeof straight);
    stop();

    now_ns = 0;
    start();
    b_behind();
    size_t len;
    void *bytes = engine_save(eng, &len);
    engine_free(eng);
    struct error err;
    eng = engine_load(cfg, &sink, bytes, len, &err);
    free(bytes);
    ck_assert_msg(eng != NULL, "load: %s", err.msg);
    b_silent();
    ck_assert_uint_eq(n_billing, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(billing[i].start_s, straight[i].start_s);
        ck_assert_int_eq(billing[i].revision, straight[i].revision);
        ck_assert_int_eq(billing[i].kwh, straight[i].kwh);
        ck_assert_int_eq(billing[i].net, straight[i].net);
    }
    stop();
}
END_TEST

/* Reloads the engine to config text; returns the config, which
 * stop_reloaded frees with the engine and the one it started with. */
static struct config *reload(const char *text)
{
    struct errors errs = {0};
    struct config *next = config_from_string("t.conf", text, &errs);
    ck_assert_msg(next != NULL, "config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
    engine_set_config(eng, next);
    return next;
}

static void stop_reloaded(struct config *next)
{
    engine_free(eng);
    eng = NULL;
    config_free(next);
    config_free(cfg);
    cfg = NULL;
}

START_TEST(test_a_reload_that_drops_a_cluster_closes_what_it_reopened)
{
    /* c1 leaves the config while 00:00 waits reopened: it is priced
     * before the swap, under the config the samples came in (b's 4
     * minutes at 60 kW from 00:10: +1.8 kWh), not dropped. */
    start();
    b_behind();
    const char *text = strstr(base_config, "[cluster c1]");
    const char *end = strstr(text, "[cluster c2]");
    char without[8192];
    snprintf(without, sizeof without, "%.*s%s", (int)(text - base_config), base_config, end);
    struct config *next = reload(without);
    ck_assert_uint_eq(n_billing, 3);
    ck_assert_str_eq(billing[2].cluster, "c1");
    ck_assert_int_eq(billing[2].start_s, L(2025, 3, 1, 0, 0));
    ck_assert_int_eq(billing[2].revision, 1);
    ck_assert_int_gt(billing[2].kwh, 0);
    stop_reloaded(next);
}
END_TEST

START_TEST(test_a_month_whose_tariff_a_reload_moved_later_closes_unpriced)
{
    /* 40 kW from Mar 31 22:00 local: March's last intervals are priced.
     * Then a reload starts the tariff on April 1: when April's first
     * interval closes March, no version is in force at its last row, so
     * its demand is not priced (as its intervals would not be), and
     * April's is. Before, March's pricing read the missing version. */
    start();
    int64_t t0 = L(2025, 3, 31, 22, 0);
    for (int64_t t = t0; t < L(2025, 3, 31, 23, 59); t += 60)
        push("c1", t, 40);
    ck_assert_uint_gt(n_billing, 0);
    ck_assert_uint_eq(n_demand, 0);
    struct config *next =
        reload(edit(base_config, "[tariff tf @ 2025-01-01]", "[tariff tf @ 2025-04-01]"));
    for (int64_t t = L(2025, 3, 31, 23, 59); t <= L(2025, 4, 1, 0, 40); t += 60)
        push("c1", t, 40);
    finish();
    ck_assert_uint_eq(n_demand, 1);
    ck_assert_int_eq(demand[0].month_day, civil_to_day((struct civil_date){2025, 4, 1}));
    stop_reloaded(next);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Waiting for the caps                                              */

/* Tenant t1's pa capped at 30 CNY a year, of which the ledger says 1.0000
 * was consumed: c1 (about 1.9 a flat interval) and c2 (a counter, about
 * 5.6) run it out within the hour, so the order they consume it in
 * shows. */
static const char *capped_config(void)
{
    return edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 30\n");
}

static void recover_caps(void)
{
    engine_set_cap_consumed(eng, "t1", "pa", 2025, 10000);
    engine_caps_recovered(eng);
}

/* From Mar 31 23:00 local, a minute apart: c1's power with a late sample
 * now and then (an adjustment), c2's counter silent from minute 50 to 70
 * (the clock closes it after grace, its return adjusts), a tick every ten
 * minutes 30 s after the newest sample. April's first interval closes
 * March. */
static void feed(int from, int to)
{
    int64_t t0 = L(2025, 3, 31, 23, 0);
    for (int m = from; m < to; m++) {
        push("c1", t0 + m * 60, 40 + m % 7);
        if (m < 50 || m > 70)
            push_kind("c2", "ctr", SAMPLE_COUNTER, t0 + m * 60, 1000 + m * 3);
        if (m % 45 == 20)
            push("c1", t0 + (m - 17) * 60 + 30, 90);
        if (m % 10 == 5)
            engine_tick(eng, now_ns + 30 * NS);
    }
}

static struct kept_billing expect_billing[KEPT_BILLING];
static size_t n_expect_billing;
static struct kept_demand expect_demand[64];
static size_t n_expect_demand;
static size_t n_expect_quarantined;
static void *expect_state;
static size_t expect_state_len;

/* The rows and state of an engine that had the caps from the start. */
static void run_with_caps_first(void (*calls)(void))
{
    now_ns = 0;
    start_with(capped_config());
    engine_set_cap_consumed(eng, "t1", "pa", 2025, 10000);
    calls();
    memcpy(expect_billing, billing, sizeof billing);
    n_expect_billing = n_billing;
    memcpy(expect_demand, demand, sizeof demand);
    n_expect_demand = n_demand;
    n_expect_quarantined = n_quarantined;
    free(expect_state);
    expect_state = engine_save(eng, &expect_state_len);
    stop();
    now_ns = 0;
}

/* Row by row, every field, money first so a failure names it. */
static void assert_rows_as_expected(void)
{
    ck_assert_uint_eq(n_billing, n_expect_billing);
    for (size_t i = 0; i < n_billing; i++) {
        const struct kept_billing *a = &billing[i], *b = &expect_billing[i];
        ck_assert_str_eq(a->cluster, b->cluster);
        ck_assert_int_eq(a->start_s, b->start_s);
        ck_assert_int_eq(a->revision, b->revision);
        ck_assert_int_eq(a->kwh, b->kwh);
        ck_assert_int_eq(a->energy, b->energy);
        ck_assert_int_eq(a->surcharge, b->surcharge);
        ck_assert_int_eq(a->subsidy, b->subsidy);
        ck_assert_int_eq(a->net, b->net);
        ck_assert_str_eq(a->programme, b->programme);
        ck_assert_uint_eq(a->n_lines, b->n_lines);
        ck_assert_int_eq(memcmp(a, b, sizeof *a), 0); /* the rest: price, lines, ... */
    }
    ck_assert_uint_eq(n_demand, n_expect_demand);
    for (size_t i = 0; i < n_demand; i++) {
        const struct kept_demand *a = &demand[i], *b = &expect_demand[i];
        ck_assert_str_eq(a->cluster, b->cluster);
        ck_assert_int_eq(a->revision, b->revision);
        ck_assert_int_eq(a->charge, b->charge);
        ck_assert_int_eq(a->subsidy, b->subsidy);
        ck_assert_int_eq(a->net, b->net);
        ck_assert_int_eq(memcmp(a, b, sizeof *a), 0);
    }
    ck_assert_uint_eq(n_quarantined, n_expect_quarantined);
}

static void assert_state_as_expected(void)
{
    size_t len;
    void *bytes = engine_save(eng, &len);
    ck_assert_uint_eq(len, expect_state_len);
    ck_assert_int_eq(memcmp(bytes, expect_state, len), 0);
    free(bytes);
}

/* Then an hour of silence: past grace for every meter. */
static void feed_all_and_wait_an_hour(void)
{
    feed(0, 200);
    engine_tick(eng, now_ns + 3600 * NS);
}

static void feed_all_and_finish(void)
{
    feed(0, 200);
    finish();
}

START_TEST(test_waiting_engine_emits_nothing_then_what_caps_first_would_have)
{
    run_with_caps_first(feed_all_and_wait_an_hour);
    /* The scenario does what it claims: adjustments, a March demand row,
     * and the cap running out. */
    bool adjusted = false, capped = false;
    for (size_t i = 0; i < n_expect_billing; i++) {
        adjusted |= expect_billing[i].revision > 0;
        capped |= expect_billing[i].revision == 0 && expect_billing[i].subsidy == 0 &&
                  expect_billing[i].energy > 0;
    }
    ck_assert(adjusted && capped);
    ck_assert_uint_ge(n_expect_demand, 2); /* March, c1 and c2 */

    start_waiting_with(capped_config());
    ck_assert(engine_waiting_for_caps(eng));
    ck_assert(!engine_caps_known(eng));
    feed_all_and_wait_an_hour();
    ck_assert_uint_eq(n_billing, 0);
    ck_assert_uint_eq(n_demand, 0);
    struct engine_stats st;
    engine_stats(eng, &st);
    ck_assert(st.waiting_for_caps);
    ck_assert_uint_gt(st.held_calls, 400);
    ck_assert_uint_eq(st.billing_rows + st.adjustment_rows + st.demand_rows, 0);
    ck_assert_uint_gt(st.accepted, 350);

    recover_caps();
    ck_assert(!engine_waiting_for_caps(eng));
    ck_assert(engine_caps_known(eng));
    assert_rows_as_expected();
    assert_state_as_expected();
    engine_stats(eng, &st);
    ck_assert(!st.waiting_for_caps);
    ck_assert_uint_eq(st.held_calls, 0);
    stop();
}
END_TEST

START_TEST(test_rows_and_state_after_the_wait_equal_caps_first)
{
    /* The same calls, finish included, before the caps come: identical
     * rows and engine_save bytes. */
    run_with_caps_first(feed_all_and_finish);
    start_waiting_with(capped_config());
    feed_all_and_finish();
    ck_assert_uint_eq(n_billing + n_demand, 0);
    recover_caps();
    assert_rows_as_expected();
    assert_state_as_expected();
    stop();
}
END_TEST

static void feed_half_then_rest(void)
{
    feed(0, 97);
    if (!engine_caps_known(eng))
        recover_caps();
    feed(97, 200);
    finish();
}

START_TEST(test_calls_after_the_caps_come_price_as_they_come)
{
    /* Caps arriving mid-stream: the held half replays, the rest prices
     * live; the same as caps first. */
    run_with_caps_first(feed_half_then_rest);
    start_waiting_with(capped_config());
    feed_half_then_rest();
    assert_rows_as_expected();
    assert_state_as_expected();
    stop();
}
END_TEST

START_TEST(test_config_without_capped_programme_does_not_wait)
{
    /* base_config's pa has no cap: rows come out though the caps are not
     * known. 40 kW flat from 08:00: 10 kWh x 0.5 = 5.0000. */
    start_waiting_with(base_config);
    ck_assert(!engine_caps_known(eng));
    ck_assert(!engine_waiting_for_caps(eng));
    constant("c1", L(2025, 3, 1, 8, 0), L(2025, 3, 1, 8, 30), 40);
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].energy, 50000);
    struct engine_stats st;
    engine_stats(eng, &st);
    ck_assert(!st.waiting_for_caps);
    stop();
}
END_TEST

START_TEST(test_reload_that_brings_a_cap_starts_the_wait)
{
    /* Without a capped programme the first hour prices at once; the
     * reload that adds the cap makes the rest wait for it. The reference
     * knew the caps all along (and its cap starts consumed at 1.0000,
     * set after the reload like the waiting engine's). */
    now_ns = 0;
    start_with(base_config);
    feed(0, 60);
    struct errors errs = {0};
    struct config *capped = config_from_string("t2.conf", capped_config(), &errs);
    engine_set_config(eng, capped);
    engine_set_cap_consumed(eng, "t1", "pa", 2025, 10000);
    feed(60, 200);
    finish();
    memcpy(expect_billing, billing, sizeof billing);
    n_expect_billing = n_billing;
    memcpy(expect_demand, demand, sizeof demand);
    n_expect_demand = n_demand;
    n_expect_quarantined = n_quarantined;
    engine_set_config(eng, cfg);
    config_free(capped);
    stop();

    now_ns = 0;
    start_waiting_with(base_config);
    feed(0, 60);
    size_t before = n_billing;
    ck_assert_uint_gt(before, 0);
    capped = config_from_string("t2.conf", capped_config(), &errs);
    engine_set_config(eng, capped);
    ck_assert(engine_waiting_for_caps(eng));
    feed(60, 200);
    finish();
    ck_assert_uint_eq(n_billing, before);
    recover_caps();
    assert_rows_as_expected();
    engine_set_config(eng, cfg);
    config_free(capped);
    stop();
}
END_TEST

START_TEST(test_reload_that_drops_the_cap_ends_the_wait)
{
    /* Waiting under the capped config; a reload to one without a cap
     * runs what was held (under it), without the caps ever known. */
    start_waiting_with(capped_config());
    constant("c1", L(2025, 3, 1, 8, 0), L(2025, 3, 1, 8, 30), 40);
    ck_assert_uint_eq(n_billing, 0);
    struct errors errs = {0};
    struct config *uncapped = config_from_string("t2.conf", base_config, &errs);
    engine_set_config(eng, uncapped);
    ck_assert(!engine_waiting_for_caps(eng));
    ck_assert(!engine_caps_known(eng));
    ck_assert_uint_eq(n_billing, 2);
    ck_assert_int_eq(billing[0].subsidy, 18750); /* 0.5 x 0.75 x 5.0000 */
    engine_set_config(eng, cfg);
    config_free(uncapped);
    stop();
}
END_TEST

START_TEST(test_snapshot_while_waiting_keeps_waiting_and_the_held_calls)
{
    run_with_caps_first(feed_all_and_finish);
    start_waiting_with(capped_config());
    feed(0, 97);
    size_t len;
    void *bytes = engine_save(eng, &len);
    engine_free(eng);
    struct error err;
    eng = engine_load(cfg, &sink, bytes, len, &err);
    ck_assert_msg(eng != NULL, "load: %s", err.msg);
    ck_assert(engine_waiting_for_caps(eng));
    struct engine_stats st;
    engine_stats(eng, &st);
    ck_assert_uint_gt(st.held_calls, 180);
    size_t len2;
    void *bytes2 = engine_save(eng, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_int_eq(memcmp(bytes, bytes2, len), 0);
    free(bytes);
    free(bytes2);
    feed(97, 200);
    finish();
    ck_assert_uint_eq(n_billing + n_demand, 0);
    recover_caps();
    assert_rows_as_expected();
    assert_state_as_expected();
    stop();
}
END_TEST

START_TEST(test_snapshot_of_the_format_before_caps_known_loads_knowing_them)
{
    /* Version 1 had no caps_known word and no hold. Such a checkpoint was
     * written only once the caps were known: it loads not waiting, and
     * prices at once. */
    start_with(capped_config());
    constant("c1", L(2025, 3, 1, 8, 0), L(2025, 3, 1, 8, 20), 40);
    size_t len;
    unsigned char *v1 = snapshot_write(eng, &len, 1);
    stop();

    start_waiting_with(capped_config());
    engine_free(eng);
    struct error err;
    eng = engine_load(cfg, &sink, v1, len, &err);
    free(v1);
    ck_assert_msg(eng != NULL, "load: %s", err.msg);
    ck_assert(engine_caps_known(eng));
    ck_assert(!engine_waiting_for_caps(eng));
    push("c1", L(2025, 3, 1, 8, 30), 40);
    /* 08:15: 40 kW to 08:20, then a gap over max_gap: 3.333333 kWh x 0.5 =
     * 1.6667, x 0.5 x 0.75 = 0.6250125 -> 0.6250. */
    ck_assert_uint_eq(n_billing, 1);
    ck_assert_int_eq(billing[0].subsidy, 6250);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- */
/* Memory                                                            */

/* Whether the mapping holding p has the kernel's huge page advice (the
 * "hg" of its VmFlags in /proc/self/smaps). */
static bool advised_huge(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    bool inside = false, hg = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long from, to;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &from, &dash, &to) == 3 && dash == '-') {
            inside = (uintptr_t)p >= from && (uintptr_t)p < to;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            hg = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return hg;
}

/* Whether advice on a block shows as ours: the kernel has transparent
 * huge pages, and the C library is not advising every large block itself
 * (GLIBC_TUNABLES=glibc.malloc.hugetlb=1). */
static bool advice_shows(void)
{
    const char *tunables = getenv("GLIBC_TUNABLES");
    return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0 &&
           !(tunables && strstr(tunables, "hugetlb"));
}

START_TEST(test_large_blocks_are_advised_huge_pages)
{
    if (!advice_shows())
        return;
    char *big = xmalloc(HUGE_ADVICE_MIN * 2), *small = xmalloc(HUGE_ADVICE_MIN / 4);
    ck_assert(!advised_huge(big + HUGE_ADVICE_MIN));
    advise_huge(big, HUGE_ADVICE_MIN * 2);
    advise_huge(small, HUGE_ADVICE_MIN / 4);
    ck_assert(advised_huge(big + HUGE_ADVICE_MIN));
    ck_assert(!advised_huge(small + HUGE_ADVICE_MIN / 8));
    free(big);
    free(small);
}
END_TEST

/* A growing array passing HUGE_ADVICE_MIN moves to a block advised before
 * the copy (so the copy faults in huge pages), keeping what it held. */
START_TEST(test_a_large_array_grows_into_huge_pages)
{
    size_t small = HUGE_ADVICE_MIN / 4, big = HUGE_ADVICE_MIN * 2;
    unsigned char *p = xrealloc_huge(NULL, 0, small);
    for (size_t i = 0; i < small; i++)
        p[i] = (unsigned char)(i * 7 + 1);
    p = xrealloc_huge(p, small, big);
    ck_assert_uint_eq((uintptr_t)p % HUGE_PAGE_BYTES, 0);
    for (size_t i = 0; i < small; i++)
        if (p[i] != (unsigned char)(i * 7 + 1))
            ck_abort_msg("byte %zu was not kept", i);
    memset(p + small, 0, big - small);
    if (advice_shows())
        ck_assert(advised_huge(p + big / 2));
    free(p);
}
END_TEST

START_TEST(test_a_fleet_of_meters_is_kept_in_huge_pages)
{
    /* 40,000 meters: 5 MB of meter state, reached at random by a fleet's
     * samples. */
    if (!advice_shows())
        return;
    start();
    char name[16];
    for (int i = 0; i < 40000; i++) {
        snprintf(name, sizeof name, "m%d", i);
        engine_add_meter(eng, "c1", name, false);
    }
    ck_assert_uint_ge(eng->cap_meters * sizeof *eng->meters, HUGE_ADVICE_MIN);
    ck_assert(advised_huge(eng->meters + eng->n_meters / 2));
    stop();
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *t = tcase_create("metering");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_segment_crossing_boundary_is_split_with_interpolated_power);
    tcase_add_test(t, test_period_change_at_interval_boundary);
    tcase_add_test(t, test_day_wraps_from_23_to_00);
    tcase_add_test(t, test_month_follows_local_time_not_utc);
    tcase_add_test(t, test_gap_longer_than_max_gap_is_missing);
    tcase_add_test(t, test_interval_wholly_inside_a_gap_has_a_zero_row);
    tcase_add_test(t, test_missing_seconds_sum_over_meters);
    tcase_add_test(t, test_counter_reset_counts_the_new_reading);
    tcase_add_test(t, test_duplicate_samples_are_ignored_and_first_value_wins);
    tcase_add_test(t, test_meter_cannot_switch_kind);
    suite_add_tcase(s, t);

    t = tcase_create("closing");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_late_sample_adjusts_a_closed_interval);
    tcase_add_test(t, test_sample_without_tariff_is_quarantined);
    tcase_add_test(t, test_silent_meter_closes_after_grace);
    tcase_add_test(t, test_sample_older_than_late_window_is_quarantined);
    tcase_add_test(t, test_snapshot_round_trip_gives_the_same_rows);
    tcase_add_test(t, test_snapshot_rejects_foreign_bytes);
    suite_add_tcase(s, t);

    t = tcase_create("pricing");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_yearly_cap_exhausted_inside_interval_and_reset_at_local_new_year);
    tcase_add_test(t, test_cap_exhausted_pays_nothing_and_names_no_programme);
    tcase_add_test(t, test_tariff_version_change_mid_month);
    tcase_add_test(t, test_inventory_change_crosses_eligibility_threshold);
    tcase_add_test(t, test_pro_rata_and_all_or_nothing);
    tcase_add_test(t, test_two_programmes_stack_up_to_the_clamp);
    tcase_add_test(t, test_rounding_ties_go_to_even);
    tcase_add_test(t, test_demand_bases);
    tcase_add_test(t, test_load_factor_rule_and_demand_tie);
    tcase_add_test(t, test_energy_and_demand_programme_pays_on_demand);
    suite_add_tcase(s, t);

    t = tcase_create("days in service");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_hubei_full_month_charges_reproduce_issue_17);
    tcase_add_test(t, test_entering_service_on_17_january_pays_15_days);
    tcase_add_test(t, test_leaving_service_after_10_january_pays_10_days);
    tcase_add_test(t, test_late_telemetry_without_service_dates_pays_the_full_month);
    tcase_add_test(t, test_capacity_change_on_16_april_charges_15_days_each);
    tcase_add_test(t, test_31_day_month_in_service_all_month_pays_one_month);
    tcase_add_test(t, test_change_in_a_31_day_month_counts_31_days);
    tcase_add_test(t, test_prorated_month_survives_a_snapshot_and_adjusts);
    suite_add_tcase(s, t);

    t = tcase_create("review");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_month_whose_rows_all_come_at_the_end_still_closes);
    tcase_add_test(t, test_meter_with_a_single_sample_makes_no_row);
    tcase_add_test(t, test_month_closes_only_once_a_later_interval_closed);
    tcase_add_test(t, test_late_window_counts_from_now_for_a_quiet_cluster);
    tcase_add_test(t, test_refused_first_sample_leaves_no_meter_behind);
    tcase_add_test(t, test_snapshot_refuses_samples_outside_the_span);
    tcase_add_test(t, test_snapshot_refuses_rows_out_of_order);
    tcase_add_test(t, test_absurd_values_are_refused);
    tcase_add_test(t, test_insert_reaching_into_a_final_interval_is_quarantined);
    tcase_add_test(t,
                   test_clock_closed_month_is_priced_again_when_one_batch_holds_its_last_interval);
    tcase_add_test(t, test_an_hour_sent_late_in_one_request_adjusts_each_interval_once);
    tcase_add_test(t, test_a_late_burst_over_a_month_boundary_adjusts_the_month_once);
    tcase_add_test(t, test_a_late_sample_that_changes_nothing_makes_no_row);
    tcase_add_test(t, test_a_counter_read_before_every_row_makes_its_rows_in_order);
    tcase_add_test(t, test_reopened_intervals_survive_a_checkpoint);
    tcase_add_test(t, test_a_reload_that_drops_a_cluster_closes_what_it_reopened);
    tcase_add_test(t, test_a_month_whose_tariff_a_reload_moved_later_closes_unpriced);
    tcase_add_test(t, test_a_reopened_interval_gets_back_only_its_own_subsidy_once_the_cap_ran_out);
    suite_add_tcase(s, t);

    t = tcase_create("caps");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_waiting_engine_emits_nothing_then_what_caps_first_would_have);
    tcase_add_test(t, test_rows_and_state_after_the_wait_equal_caps_first);
    tcase_add_test(t, test_calls_after_the_caps_come_price_as_they_come);
    tcase_add_test(t, test_config_without_capped_programme_does_not_wait);
    tcase_add_test(t, test_reload_that_brings_a_cap_starts_the_wait);
    tcase_add_test(t, test_reload_that_drops_the_cap_ends_the_wait);
    tcase_add_test(t, test_snapshot_while_waiting_keeps_waiting_and_the_held_calls);
    tcase_add_test(t, test_snapshot_of_the_format_before_caps_known_loads_knowing_them);
    suite_add_tcase(s, t);

    t = tcase_create("memory");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, test_large_blocks_are_advised_huge_pages);
    tcase_add_test(t, test_a_fleet_of_meters_is_kept_in_huge_pages);
    tcase_add_test(t, test_a_large_array_grows_into_huge_pages);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
