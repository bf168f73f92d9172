/*
 * Unit tests for the break-even search (tariff/breakeven.c): on cases
 * computed by hand, each pricing done by the engine with every sample's
 * power multiplied by F, as tariffd price --compare does.
 *
 * The input: one cluster drawing a constant 40 kW for one hour, a sample a
 * minute from 2025-03-01 00:00 local (+08:00) to 01:00, so four 15-minute
 * intervals of 10 kWh each at F = 1 (40 kWh, 40 kW of max demand), and
 * 10 F kWh each at F (the fifth interval is only touched at its start: no
 * row).
 */
#include "breakeven.h"
#include "civil.h"
#include "config.h"
#include "engine.h"
#include "statement.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define NS    1000000000LL

/* A config with one cluster c1 under a tariff whose lines are `tariff`
 * and whose cluster adds `cluster_extra`. */
static struct config *config_with(const char *tariff, const char *cluster_extra)
{
    char text[4096];
    snprintf(text, sizeof text,
             "[daemon]\ninterval = 15m\nmax_gap = 5m\n"
             "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
             "[chip x]\nvendor = X\ndomestic = no\nrated_kw = 1\n"
             "[site s1]\nprovince = p1\ntariff = tf\n"
             "[cluster c1]\ntenant = t1\nsite = s1\ninventory = x*40\n%s"
             "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nsurcharge = 0\n"
             "profile.base = 00:00 flat\nmonths = jan-dec base\n%s",
             cluster_extra, tariff);
    struct errors errs = {0};
    struct config *cfg = config_from_string("t.conf", text, &errs);
    ck_assert_msg(cfg != NULL, "config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
    return cfg;
}

static void on_billing(void *ctx, const struct billing_row *r)
{
    statements_add_billing(ctx, r);
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    statements_add_demand(ctx, r);
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    (void)ctx;
    (void)s;
    ck_abort_msg("quarantined: %s", reason);
}

/* The total net of the hour at 40 x F kW under cfg, at scale 4. */
static int64_t net_of_hour(const struct config *cfg, double scale)
{
    struct statements s = {0};
    struct engine_sink sink = {&s, on_billing, on_demand, on_quarantine, NULL};
    struct engine *e = engine_new(cfg, &sink);
    engine_caps_recovered(e);
    int64_t t0 = civil_day_start_ts(civil_to_day((struct civil_date){2025, 3, 1}), 8 * 3600);
    int64_t now_ns = 0;
    for (int i = 0; i <= 60; i++) {
        double kw = 40;
        struct engine_sample sample = {"c1", "main", SAMPLE_POWER, (t0 + 60 * i) * NS, kw * scale};
        struct error err;
        now_ns = sample.ts_ns;
        ck_assert_msg(engine_push(e, &sample, now_ns, &err), "push: %s", err.msg);
    }
    engine_finish(e, now_ns);
    int64_t net = statements_net_cny4(&s);
    engine_free(e);
    statements_free(&s);
    return net;
}

struct alt {
    const struct config *cfg;
    int calls;
};

static bool alt_net(void *ctx, int32_t steps, int64_t *net_cny4)
{
    struct alt *a = ctx;
    a->calls++;
    *net_cny4 = net_of_hour(a->cfg, (double)steps / BREAK_EVEN_STEPS_PER_UNIT);
    return true;
}

static struct break_even search(const struct config *conf, const struct config *alt_cfg)
{
    struct alt a = {alt_cfg, 0};
    struct break_even be;
    break_even_search(net_of_hour(conf, 1), alt_net, &a, &be);
    ck_assert_int_eq(be.pricings, a.calls);
    return be;
}

START_TEST(test_energy_only_break_even_is_the_price_ratio)
{
    /* No demand charge (demand.kw = 0). CONF at 0.5 CNY/kWh: 40 kWh x 0.5 =
     * 20.0000. ALT at 0.3: 40 F x 0.3 = 12 F, so F = 20 / 12 = 1.66667,
     * and the grid's first point at or above it is 1.667. Each interval's
     * kWh is rounded, then charged: at 1.667, 10 x 1.667 = 16.67 kWh x 0.3
     * = 5.001 a quarter, 20.004 in all; at 1.666, 16.66 x 0.3 = 4.998, 19.992
     * in all. */
    const char *demand = "demand_basis = max_demand\ndemand.kw = 0\n";
    char conf_tariff[256], alt_tariff[256];
    snprintf(conf_tariff, sizeof conf_tariff, "price.flat = 0.5\n%s", demand);
    snprintf(alt_tariff, sizeof alt_tariff, "price.flat = 0.3\n%s", demand);
    struct config *conf = config_with(conf_tariff, ""), *alt = config_with(alt_tariff, "");
    ck_assert_int_eq(net_of_hour(conf, 1), 200000);
    struct break_even be = search(conf, alt);
    ck_assert_int_eq(be.outcome, BREAK_EVEN_FOUND);
    ck_assert_int_eq(be.steps, 1667);
    ck_assert_int_eq(be.below_cny4, 199920);
    ck_assert_int_eq(be.at_cny4, 200040);
    /* 10000 and 1 first, then bisection of 9999 steps: 14 halvings. */
    ck_assert_int_le(be.pricings, 2 + 14);
    config_free(conf);
    config_free(alt);
}
END_TEST

START_TEST(test_break_even_with_a_contract_demand_charge)
{
    /* CONF: 0.5 CNY/kWh and 30 CNY per kW of max demand: 20 + 40 x 30 =
     * 1220.0000. ALT: the same energy price, but billed on a contract of
     * 20 kW (excess above 1.05 x 20 = 21 kW counts twice): at F, max demand
     * is 40 F kW and the net 20 F + 30 x (20 + 2 x (40 F - 21)) = 2420 F -
     * 660 once 40 F > 21, so F = 1880 / 2420 = 0.77686. At 0.777: 7.77 kWh
     * a quarter, max 31.08 kW, billing 20 + 2 x 10.08 = 40.16 kW x 30 =
     * 1204.80, energy 31.08 x 0.5 = 15.54, net 1220.34. At 0.776: 7.76 kWh,
     * 31.04 kW, 40.08 x 30 = 1202.40 + 15.52 = 1217.92. */
    struct config *conf = config_with("price.flat = 0.5\ndemand_basis = max_demand\n"
                                      "demand.kw = 30\n",
                                      "");
    struct config *alt = config_with("price.flat = 0.5\ndemand_basis = contract\n"
                                     "demand.kw = 30\n",
                                     "contract_kw = 20\n");
    ck_assert_int_eq(net_of_hour(conf, 1), 12200000);
    struct break_even be = search(conf, alt);
    ck_assert_int_eq(be.outcome, BREAK_EVEN_FOUND);
    ck_assert_int_eq(be.steps, 777);
    ck_assert_int_eq(be.below_cny4, 12179200);
    ck_assert_int_eq(be.at_cny4, 12203400);
    config_free(conf);
    config_free(alt);
}
END_TEST

START_TEST(test_no_break_even_when_alt_is_dearer_even_at_the_smallest_scale)
{
    /* ALT pays a capacity charge of 100 kVA x 24 = 2400 whatever it draws:
     * at F = 0.001, 0.04 kWh x 0.5 = 0.02 more, 2400.02 > CONF's 1220. */
    struct config *conf = config_with("price.flat = 0.5\ndemand_basis = max_demand\n"
                                      "demand.kw = 30\n",
                                      "");
    struct config *alt = config_with("price.flat = 0.5\ndemand_basis = capacity\n"
                                     "demand.kva = 24\n",
                                     "transformer_kva = 100\n");
    struct break_even be = search(conf, alt);
    ck_assert_int_eq(be.outcome, BREAK_EVEN_ALT_DEARER);
    ck_assert_int_eq(be.at_cny4, 24000200);
    ck_assert_int_eq(be.pricings, 2);
    config_free(conf);
    config_free(alt);
}
END_TEST

START_TEST(test_no_break_even_when_alt_is_cheaper_even_at_the_largest_scale)
{
    /* ALT at 0.001 CNY/kWh without demand: at F = 10, 400 kWh x 0.001 =
     * 0.40 < CONF's 20. */
    struct config *conf = config_with("price.flat = 0.5\ndemand_basis = max_demand\n"
                                      "demand.kw = 0\n",
                                      "");
    struct config *alt = config_with("price.flat = 0.001\ndemand_basis = max_demand\n"
                                     "demand.kw = 0\n",
                                     "");
    struct break_even be = search(conf, alt);
    ck_assert_int_eq(be.outcome, BREAK_EVEN_ALT_CHEAPER);
    ck_assert_int_eq(be.at_cny4, 4000);
    ck_assert_int_eq(be.pricings, 1);
    config_free(conf);
    config_free(alt);
}
END_TEST

/* A net that is a step function of the scale: 0 below `at`, 1 from it. */
struct step {
    int32_t at;
    int32_t fail_at; /* 0: never fails */
};

static bool step_net(void *ctx, int32_t steps, int64_t *net_cny4)
{
    const struct step *s = ctx;
    if (steps == s->fail_at)
        return false;
    *net_cny4 = steps >= s->at;
    return true;
}

START_TEST(test_search_finds_every_point_of_the_grid)
{
    for (int32_t at = 2; at <= BREAK_EVEN_MAX_STEPS; at += 997) {
        struct step s = {at, 0};
        struct break_even be;
        break_even_search(1, step_net, &s, &be);
        ck_assert_int_eq(be.outcome, BREAK_EVEN_FOUND);
        ck_assert_int_eq(be.steps, at);
        ck_assert_int_eq(be.below_cny4, 0);
        ck_assert_int_eq(be.at_cny4, 1);
    }
    struct step last = {BREAK_EVEN_MAX_STEPS, 0};
    struct break_even be;
    break_even_search(1, step_net, &last, &be);
    ck_assert_int_eq(be.steps, BREAK_EVEN_MAX_STEPS);
}
END_TEST

START_TEST(test_search_stops_when_pricing_fails)
{
    struct step s = {5000, 1}; /* fails at the smallest scale, the second pricing */
    struct break_even be;
    break_even_search(1, step_net, &s, &be);
    ck_assert_int_eq(be.outcome, BREAK_EVEN_FAILED);
    ck_assert_int_eq(be.pricings, 2);
}
END_TEST

static Suite *breakeven_suite(void)
{
    Suite *s = suite_create("breakeven");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_energy_only_break_even_is_the_price_ratio);
    tcase_add_test(tc, test_break_even_with_a_contract_demand_charge);
    tcase_add_test(tc, test_no_break_even_when_alt_is_dearer_even_at_the_smallest_scale);
    tcase_add_test(tc, test_no_break_even_when_alt_is_cheaper_even_at_the_largest_scale);
    tcase_add_test(tc, test_search_finds_every_point_of_the_grid);
    tcase_add_test(tc, test_search_stops_when_pricing_fails);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(breakeven_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
