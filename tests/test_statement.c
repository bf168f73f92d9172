/*
 * Unit tests for monthly statements (tariff/statement.c): the cost per
 * PFLOP-hour of rated compute, computed by hand in the comments.
 *
 * The config: chip a rates 0.5 PFLOPS, chip b 0.25, chip u none. Cluster
 * c1 has a*4, b*2 (2.5 PFLOPS), then from 2025-03-16 a*2 (1 PFLOPS);
 * cluster c2 has a*1, u*1 (unrated). Interval 15m, +08:00.
 */
#include "civil.h"
#include "config.h"
#include "statement.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static const char config_text[] =
    "[daemon]\ninterval = 15m\n"
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
    "[chip a]\nvendor = A\ndomestic = yes\nrated_kw = 1\npflops = 0.5\n"
    "[chip b]\nvendor = B\ndomestic = no\nrated_kw = 1\npflops = 0.25\n"
    "[chip u]\nvendor = U\ndomestic = no\nrated_kw = 1\n"
    "[site s1]\nprovince = p1\ntariff = tf\n"
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = a*4, b*2\n"
    "inventory@2025-03-16 = a*2\n"
    "[cluster c2]\ntenant = t1\nsite = s1\ninventory = a*1, u*1\n"
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.flat = 0.5\nsurcharge = 0\n"
    "profile.base = 00:00 flat\nmonths = jan-dec base\n"
    "demand_basis = max_demand\ndemand.kw = 30\n";

static struct config *cfg;

static void setup(void)
{
    struct errors errs = {0};
    cfg = config_from_string("t.conf", config_text, &errs);
    ck_assert_msg(cfg != NULL, "config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
}

static void teardown(void)
{
    config_free(cfg);
}

/* Local (+08:00) midnight of 2025-03-DAY. */
static int64_t march(int day)
{
    return civil_day_start_ts(civil_to_day((struct civil_date){2025, 3, day}), 8 * 3600);
}

static struct billing_row row(const char *cluster, int64_t start_s, int revision, int64_t net_cny4)
{
    return (struct billing_row){
        .cluster = config_find_cluster(cfg, cluster),
        .interval_start_s = start_s,
        .interval_end_s = start_s + 900,
        .month_day = civil_to_day((struct civil_date){2025, 3, 1}),
        .revision = revision,
        .period = PERIOD_FLAT,
        .net_cny4 = net_cny4,
    };
}

START_TEST(test_net_per_pflop_hour_over_the_priced_span)
{
    /* Two intervals under a*4, b*2 (2.5 PFLOPS) and one under a*2 (1
     * PFLOPS): 2.5 x 0.25 h x 2 + 1 x 0.25 h = 1.5 PFLOP-hours. The
     * adjustment adds money, not time. Net: 10 + 10 + 10 + 3 + the demand
     * charge's 100 = 133 CNY; 133 / 1.5 = 88.66666... -> 88.6667. */
    struct statements s = {0};
    struct billing_row r = row("c1", march(1), 0, 100000);
    statements_add_billing(&s, &r);
    r = row("c1", march(1) + 900, 0, 100000);
    statements_add_billing(&s, &r);
    r = row("c1", march(20), 0, 100000);
    statements_add_billing(&s, &r);
    r = row("c1", march(1), 1, 30000);
    statements_add_billing(&s, &r);
    struct demand_row d = {.cluster = r.cluster, .month_day = r.month_day, .net_cny4 = 1000000};
    statements_add_demand(&s, &d);
    ck_assert_uint_eq(s.n, 1);
    ck_assert(s.v[0].pflop_s_micro == (__int128)5400000000);
    int64_t cny4 = 0;
    ck_assert(statement_cny4_per_pflop_hour(&s.v[0], &cny4));
    ck_assert_int_eq(cny4, 886667);
    ck_assert_int_eq(statements_net_cny4(&s), 1330000);
    statements_free(&s);
}
END_TEST

START_TEST(test_net_per_pflop_hour_rounds_half_even)
{
    /* Eight intervals under 1 PFLOPS are 2 PFLOP-hours. A net of 0.0001
     * CNY is 0.00005 per PFLOP-hour: a tie, to the even 0.0000; 0.0003 is
     * 0.00015, to 0.0002. */
    for (int64_t net = 1; net <= 3; net += 2) {
        struct statements s = {0};
        for (int i = 0; i < 8; i++) {
            struct billing_row r = row("c1", march(20) + 900 * i, 0, i == 0 ? net : 0);
            statements_add_billing(&s, &r);
        }
        int64_t cny4 = -1;
        ck_assert(statement_cny4_per_pflop_hour(&s.v[0], &cny4));
        ck_assert_int_eq(cny4, net == 1 ? 0 : 2);
        statements_free(&s);
    }
}
END_TEST

START_TEST(test_no_figure_without_a_rating_or_a_span)
{
    /* c2 has a chip without pflops; a month with only its demand row has
     * no priced span. */
    struct statements s = {0};
    struct billing_row r = row("c2", march(1), 0, 100000);
    statements_add_billing(&s, &r);
    struct demand_row d = {
        .cluster = config_find_cluster(cfg, "c1"), .month_day = r.month_day, .net_cny4 = 1000000};
    statements_add_demand(&s, &d);
    ck_assert_uint_eq(s.n, 2);
    int64_t cny4 = 0;
    ck_assert(!statement_cny4_per_pflop_hour(&s.v[0], &cny4));
    ck_assert(!statement_cny4_per_pflop_hour(&s.v[1], &cny4));
    statements_free(&s);
}
END_TEST

/* Many statements (2 clusters x 300 months, rows interleaved), sorted
 * between passes: each row still adds to its own statement. */
START_TEST(test_rows_find_their_statement_among_many)
{
    struct statements s = {0};
    for (int pass = 0; pass < 3; pass++) {
        for (int m = 0; m < 300; m++)
            for (int c = 0; c < 2; c++) {
                struct billing_row r = row(c ? "c2" : "c1", march(1), 1, 1 + c);
                r.month_day = 20000 + 31 * (pass == 0 ? 299 - m : m); /* not sorted at first */
                statements_add_billing(&s, &r);
            }
        statements_sort(&s);
    }
    ck_assert_uint_eq(s.n, 600);
    size_t bad = 0;
    for (size_t i = 0; i < s.n; i++)
        bad += s.v[i].net_cny4 != (strcmp(s.v[i].cluster, "c2") == 0 ? 6 : 3) ||
               (i > 0 && s.v[i - 1].month_day > s.v[i].month_day);
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(statements_net_cny4(&s), 300 * 9);
    statements_free(&s);
}
END_TEST

static Suite *statement_suite(void)
{
    Suite *s = suite_create("statement");
    TCase *tc = tcase_create("per pflop-hour");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_net_per_pflop_hour_over_the_priced_span);
    tcase_add_test(tc, test_net_per_pflop_hour_rounds_half_even);
    tcase_add_test(tc, test_no_figure_without_a_rating_or_a_span);
    tcase_add_test(tc, test_rows_find_their_statement_among_many);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(statement_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
