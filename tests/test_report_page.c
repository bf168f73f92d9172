/*
 * Unit tests for tariffd report's page (daemon/report_page.c, html.c,
 * svg.c) on models built by hand, without PostgreSQL: escaping, the totals
 * row as the sum of the cluster rows, amounts to the fen with separators,
 * the cost per PFLOP-hour per cluster and in total, no URL and no script,
 * and the page for a month without rows.
 * tests/daemon/test_report.py checks the same against a real ledger.
 */
#include "daemon/html.h"
#include "daemon/report_page.h"
#include "daemon/svg.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define T0 1740758400LL /* 2025-03-01 00:00 +08:00 */

static struct report_cluster clusters[2];
static struct report_interval intervals[3];
static struct report_load loads[1];
static struct report_version versions[1];
static int64_t days[31][PERIOD_COUNT];

/* March 2025 of tenant "t<1>", two clusters, one with a name to escape. */
static struct report_model model(void)
{
    clusters[0] = (struct report_cluster){.cluster = "c1",
                                          .province = "p1",
                                          .kwh_micro = 1234567890123, /* 1,234,567.890123 */
                                          .energy_fen = 123456789,
                                          .surcharge_fen = 101,
                                          .demand_fen = 0,
                                          .subsidy_fen = 5,
                                          .net_fen = 123456885};
    clusters[1] = (struct report_cluster){.cluster = "<script>alert(1)</script>",
                                          .province = "p&1",
                                          .kwh_micro = 1,
                                          .energy_fen = 1,
                                          .surcharge_fen = 2,
                                          .demand_fen = 300,
                                          .subsidy_fen = -5,
                                          .net_fen = 308};
    /* Rated compute: 2400 PFLOPS for 24 h (57600 PFLOP-hours) and 151.552
     * PFLOPS for 15 min (37.888), the nets at scale 4. */
    clusters[0].compute =
        (struct statement){.net_cny4 = 12345688512, .pflop_s_micro = (__int128)2400000000 * 86400};
    clusters[1].compute =
        (struct statement){.net_cny4 = 30800, .pflop_s_micro = (__int128)151552000 * 900};
    /* 00:00-00:45 at 40, 60 and 20 kW: the peak is the second interval. */
    intervals[0] = (struct report_interval){T0, T0 + 900, 10000000};
    intervals[1] = (struct report_interval){T0 + 900, T0 + 1800, 15000000};
    intervals[2] = (struct report_interval){T0 + 1800, T0 + 2700, 5000000};
    loads[0] = (struct report_load){.cluster = "c1",
                                    .utc_offset_s = 8 * 3600,
                                    .intervals = intervals,
                                    .n_intervals = 3,
                                    .has_demand = true,
                                    .basis = "contract",
                                    .max_kw_micro = 60000000,
                                    .billing_kw_micro = 75000000,
                                    .max_start_s = T0 + 900,
                                    .has_contract = true,
                                    .contract_micro_kw = 50000000,
                                    .contract_threshold_micro = 1050000};
    versions[0] = (struct report_version){"tf@2025-01-01#0000abcd", 8 * 3600, 3, 1, T0, T0 + 2700};
    memset(days, 0, sizeof days);
    days[0][PERIOD_VALLEY] = 30000000;
    struct report_model m = {.tenant = "t<1>",
                             .tenant_name = "T \"1\" & 'co'",
                             .year = 2025,
                             .month = 3,
                             .days_in_month = 31,
                             .utc_offset_s = 8 * 3600,
                             .generated_s = T0 + 40 * 86400,
                             .clusters = clusters,
                             .n_clusters = 2,
                             .day_kwh_micro = days,
                             .loads = loads,
                             .n_loads = 1,
                             .versions = versions,
                             .n_versions = 1,
                             .adjustments = {.latest_s = INT64_MIN}};
    m.periods[PERIOD_VALLEY] = (struct report_period){true, 30000000, 750};
    return m;
}

START_TEST(test_html_text_escapes_the_five_characters)
{
    struct html h = {0};
    html_text(&h, "a&b<c>d\"e'f");
    ck_assert_str_eq(h.buf, "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    html_free(&h);
}
END_TEST

START_TEST(test_html_printf_longer_than_its_stack_buffer)
{
    struct html h = {0};
    char long_text[2000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    html_printf(&h, "<%s>", long_text);
    ck_assert_uint_eq(h.len, 2001);
    ck_assert_int_eq(h.buf[2000], '>');
    html_free(&h);
}
END_TEST

START_TEST(test_nice_step_is_1_2_or_5_times_a_power_of_ten)
{
    ck_assert_double_eq(svg_nice_step(47, 5), 10);    /* 9.4 -> 10 */
    ck_assert_double_eq(svg_nice_step(1076, 5), 500); /* 215 -> 500 */
    ck_assert_double_eq(svg_nice_step(0.9, 5), 0.2);  /* 0.18 -> 0.2 */
}
END_TEST

START_TEST(test_totals_are_the_sum_of_the_cluster_rows)
{
    struct report_model m = model();
    struct html h = {0};
    report_page(&h, &m);
    /* 1234567.890123 + 0.000001; 1234567.89 + 0.01; 1.01 + 0.02;
     * 0 + 3.00; 0.05 - 0.05; 1234568.85 + 3.08 */
    ck_assert_ptr_nonnull(
        strstr(h.buf, "id=\"total-kwh\" data-value=\"1234567.890124\">1,234,567.890<"));
    ck_assert_ptr_nonnull(
        strstr(h.buf, "id=\"total-energy_charge\" data-value=\"1234567.90\">1,234,567.90<"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-surcharge\" data-value=\"1.03\">1.03<"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-demand_charge\" data-value=\"3.00\">3.00<"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-subsidy\" data-value=\"0.00\">0.00<"));
    ck_assert_ptr_nonnull(
        strstr(h.buf, "id=\"total-net\" data-value=\"1234571.93\">1,234,571.93<"));
    ck_assert_ptr_nonnull(strstr(h.buf, "data-value=\"-0.05\">-0.05<"));
    html_free(&h);
}
END_TEST

START_TEST(test_cost_per_pflop_hour_per_cluster_and_in_total)
{
    struct report_model m = model();
    struct html h = {0};
    report_page(&h, &m);
    /* 1234568.8512 / 57600 = 21.433487 -> 21.4335; 3.08 / 37.888 =
     * 0.081292 -> 0.0813; the total is the total net over the total hours,
     * not a sum: 1234571.9312 / 57637.888 = 21.419451 -> 21.4195 */
    ck_assert_ptr_nonnull(strstr(h.buf, "data-value=\"21.4335\">21.4335</td></tr>"));
    ck_assert_ptr_nonnull(strstr(h.buf, "data-value=\"0.0813\">0.0813</td></tr>"));
    ck_assert_ptr_nonnull(
        strstr(h.buf, "id=\"total-cny_per_pflop_hour\" data-value=\"21.4195\">21.4195<"));
    ck_assert_ptr_nonnull(strstr(h.buf, "元/PFLOP·时<br><span class=\"en\">CNY per PFLOP-hour"));
    html_free(&h);

    /* A chip of the second cluster has no pflops: its line and the total
     * have no figure; the first keeps its own. */
    clusters[1].compute.pflops_unrated = true;
    report_page(&h, &m);
    ck_assert_ptr_nonnull(strstr(h.buf, "data-value=\"21.4335\">21.4335</td></tr>"));
    ck_assert_ptr_nonnull(strstr(h.buf, "data-value=\"3.08\">3.08</td><td class=\"n\" "
                                        "data-value=\"\">—</td></tr>"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-cny_per_pflop_hour\" data-value=\"\">—</td>"));
    html_free(&h);

    /* A line without interval rows (pflop_s_micro 0) has none either. */
    clusters[1].compute.pflops_unrated = false;
    clusters[1].compute.pflop_s_micro = 0;
    report_page(&h, &m);
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-cny_per_pflop_hour\" data-value=\"\">—</td>"));
    html_free(&h);
}
END_TEST

START_TEST(test_names_are_escaped_and_nothing_is_fetched)
{
    struct report_model m = model();
    struct html h = {0};
    report_page(&h, &m);
    ck_assert_ptr_null(strstr(h.buf, "<script"));
    ck_assert_ptr_nonnull(strstr(h.buf, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    ck_assert_ptr_nonnull(strstr(h.buf, "T &quot;1&quot; &amp; &#39;co&#39;"));
    ck_assert_ptr_nonnull(strstr(h.buf, "p&amp;1"));
    ck_assert_ptr_null(strstr(h.buf, "p&1"));
    const char *outside[] = {"http:", "https:", "src=", "href=", "url(", "@import"};
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++)
        ck_assert_msg(!strstr(h.buf, outside[i]), "the page has %s", outside[i]);
    html_free(&h);
}
END_TEST

START_TEST(test_load_curve_marks_the_peak_and_the_contract)
{
    struct report_model m = model();
    struct html h = {0};
    report_page(&h, &m);
    ck_assert_ptr_nonnull(strstr(h.buf, "peak 60.0 kW, 2025-03-01 00:15"));
    ck_assert_ptr_nonnull(strstr(h.buf, "contract 50 kW"));
    ck_assert_ptr_nonnull(strstr(h.buf, "105% "));
    ck_assert_ptr_nonnull(strstr(h.buf, "tf@2025-01-01#0000abcd"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"adjustments\" data-rows=\"0\""));
    html_free(&h);
}
END_TEST

START_TEST(test_a_month_without_rows_says_so)
{
    struct report_model m = {.tenant = "t2",
                             .tenant_name = "t2",
                             .year = 2025,
                             .month = 2,
                             .days_in_month = 28,
                             .utc_offset_s = 8 * 3600};
    struct html h = {0};
    report_page(&h, &m);
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"no-rows\""));
    ck_assert_ptr_nonnull(strstr(h.buf, "February 2025"));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-net\" data-value=\"0.00\""));
    ck_assert_ptr_nonnull(strstr(h.buf, "id=\"total-cny_per_pflop_hour\" data-value=\"\""));
    ck_assert_ptr_null(strstr(h.buf, "<svg"));
    html_free(&h);
}
END_TEST

static Suite *page_suite(void)
{
    Suite *s = suite_create("report page");
    TCase *tc = tcase_create("page");
    tcase_add_test(tc, test_html_text_escapes_the_five_characters);
    tcase_add_test(tc, test_html_printf_longer_than_its_stack_buffer);
    tcase_add_test(tc, test_nice_step_is_1_2_or_5_times_a_power_of_ten);
    tcase_add_test(tc, test_totals_are_the_sum_of_the_cluster_rows);
    tcase_add_test(tc, test_cost_per_pflop_hour_per_cluster_and_in_total);
    tcase_add_test(tc, test_names_are_escaped_and_nothing_is_fetched);
    tcase_add_test(tc, test_load_curve_marks_the_peak_and_the_contract);
    tcase_add_test(tc, test_a_month_without_rows_says_so);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(page_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
