/*
 * Unit tests for row formatting: the CSV lines of `tariffd price --out`
 * (storage/csv.c) and the text parameters of the ledger's INSERTs
 * (storage/ledger_rows.c), as exact strings. Numbers carry exactly their
 * column's decimals and are never "-0"; NULL is an empty CSV field and a
 * null parameter; CSV quoting follows RFC 4180.
 *
 * The rows are built by hand on cluster c1 (tenant t1, site s1, province
 * p1); T0 is 2025-03-01 00:00 local (+08:00), 2025-02-28T16:00:00Z.
 */
#include "storage/columns.h"
#include "storage/csv.h"
#include "storage/ledger_rows.h"
#include "tariff/civil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define T0    1740758400LL

static const char config_text[] =
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
    "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"
    "[site s1]\nprovince = p1\ntariff = tf\n"
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = dom*4\n"
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nsurcharge = 0.02\n"
    "profile.base = 00:00 valley\nmonths = jan-dec base\n"
    "demand_basis = max_demand\ndemand.kw = 30\n";

static struct config *cfg;

static void setup(void)
{
    struct errors errs = {0};
    cfg = config_from_string("test.conf", config_text, &errs);
    if (!cfg)
        ck_abort_msg("config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
}

static void teardown(void)
{
    config_free(cfg);
    cfg = NULL;
}

static const struct paid_line two_lines[] = {{"pa", 9375}, {"pb", -1}};

/* c1's interval at T0, revision 0: 10 kWh at 0.25 + 0.02, subsidy 0.9375
 * from pa (0.5 x 0.75 x 2.5000). */
static struct billing_row interval_row(void)
{
    return (struct billing_row){
        .cluster = config_find_cluster(cfg, "c1"),
        .interval_start_s = T0,
        .interval_end_s = T0 + 900,
        .month_day = civil_to_day((struct civil_date){2025, 3, 1}),
        .year = 2025,
        .revision = 0,
        .period = PERIOD_VALLEY,
        .kwh_micro = 10000000,
        .price_micro_cny = 250000,
        .surcharge_rate_micro_cny = 20000,
        .energy_charge_cny4 = 25000,
        .surcharge_cny4 = 2000,
        .subsidy_cny4 = 9375,
        .net_cny4 = 17625,
        .domestic_share_micro = 750000,
        .programme = "pa",
        .tariff_version = "tf@2025-01-01#1a2b3c4d",
        .missing_s = 0,
        .n_lines = 1,
        .lines = two_lines,
    };
}

/* An adjustment that takes energy away: every difference negative, some
 * smaller than one unit of their column, and no programme paid. */
static struct billing_row adjustment_row(void)
{
    struct billing_row r = interval_row();
    r.revision = 2;
    r.kwh_micro = -500000;
    r.energy_charge_cny4 = -1250;
    r.surcharge_cny4 = -100;
    r.subsidy_cny4 = 0;
    r.net_cny4 = -1350;
    r.domestic_share_micro = 5;
    r.missing_s = -30;
    r.programme = NULL;
    r.n_lines = 0;
    r.lines = NULL;
    return r;
}

static struct demand_row month_row(void)
{
    return (struct demand_row){
        .cluster = config_find_cluster(cfg, "c1"),
        .month_day = civil_to_day((struct civil_date){2025, 3, 1}),
        .year = 2025,
        .revision = 0,
        .basis = DEMAND_MAX_DEMAND,
        .max_kw_micro = 40000000,
        .max_interval_start_s = T0,
        .billing_kw_micro = 40000000,
        .charge_cny4 = 12000000,
        .subsidy_cny4 = 0,
        .net_cny4 = 12000000,
        .programme = NULL,
        .tariff_version = "tf@2025-01-01#1a2b3c4d",
    };
}

static const char *header_of(size_t (*make)(char *))
{
    static char buf[CSV_LINE_MAX];
    make(buf);
    return buf;
}

static size_t count_fields(const char *line)
{
    size_t n = 1;
    for (const char *p = line; *p; p++)
        n += *p == ',';
    return n;
}

/* ---------------------------------------------------------------- */
/* CSV                                                               */

START_TEST(test_billing_csv_line_has_each_columns_decimals)
{
    struct billing_row r = interval_row();
    char buf[CSV_LINE_MAX];
    size_t len = csv_billing_row(&r, buf);
    const char *want =
        "t1,c1,s1,p1,2025-02-28T16:00:00Z,2025-02-28T16:15:00Z,2025-03-01,interval,0,"
        "valley,10.000000,0.250000,0.020000,2.5000,0.2000,0.9375,1.7625,0.750000,pa,"
        "tf@2025-01-01#1a2b3c4d,0\n";
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_uint_eq(count_fields(buf), count_fields(header_of(csv_billing_header)));
}
END_TEST

START_TEST(test_adjustment_csv_line_has_negative_differences_and_null_programme)
{
    /* -0.5 kWh is "-0.500000", -0.0100 CNY "-0.0100"; a zero is "0.0000",
     * never "-0.0000"; a share of 5e-6 keeps its six decimals; NULL
     * programme is an empty field. */
    struct billing_row r = adjustment_row();
    char buf[CSV_LINE_MAX];
    csv_billing_row(&r, buf);
    ck_assert_str_eq(buf, "t1,c1,s1,p1,2025-02-28T16:00:00Z,2025-02-28T16:15:00Z,2025-03-01,"
                          "adjustment,2,valley,-0.500000,0.250000,0.020000,-0.1250,-0.0100,0.0000,"
                          "-0.1350,0.000005,,tf@2025-01-01#1a2b3c4d,-30\n");
}
END_TEST

START_TEST(test_zero_is_never_negative)
{
    struct billing_row r = adjustment_row();
    r.kwh_micro = 0;
    r.energy_charge_cny4 = 0;
    r.surcharge_cny4 = 0;
    r.net_cny4 = 0;
    r.domestic_share_micro = 0;
    r.missing_s = 0;
    char buf[CSV_LINE_MAX];
    csv_billing_row(&r, buf);
    ck_assert_ptr_null(strstr(buf, ",-"));
    ck_assert_ptr_nonnull(strstr(buf, ",0.000000,0.250000,0.020000,0.0000,0.0000,0.0000,0.0000,"
                                      "0.000000,,"));
}
END_TEST

START_TEST(test_programme_list_is_quoted)
{
    /* Two programmes paid: the comma list is one field, quoted. */
    struct billing_row r = interval_row();
    r.programme = "pa,pb";
    char buf[CSV_LINE_MAX];
    csv_billing_row(&r, buf);
    ck_assert_ptr_nonnull(strstr(buf, ",0.750000,\"pa,pb\",tf@2025-01-01#1a2b3c4d,0\n"));
}
END_TEST

START_TEST(test_demand_csv_line_and_null_max_interval)
{
    struct demand_row r = month_row();
    char buf[CSV_LINE_MAX];
    size_t len = csv_demand_row(&r, buf);
    const char *want = "t1,c1,s1,p1,2025-03-01,max_demand,40.000000,2025-02-28T16:00:00Z,"
                       "40.000000,1200.0000,0.0000,1200.0000,,tf@2025-01-01#1a2b3c4d,month,0,,\n";
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_uint_eq(count_fields(buf), count_fields(header_of(csv_demand_header)));
    /* A month with no final interval has no max_interval_start: empty. An
     * adjustment that lowers the demand charge. */
    r.max_interval_start_s = INT64_MIN;
    r.revision = 1;
    r.max_kw_micro = -2000000;
    r.charge_cny4 = -600000;
    r.net_cny4 = -600000;
    csv_demand_row(&r, buf);
    ck_assert_str_eq(buf, "t1,c1,s1,p1,2025-03-01,max_demand,-2.000000,,40.000000,-60.0000,0.0000,"
                          "-60.0000,,tf@2025-01-01#1a2b3c4d,adjustment,1,,\n");
}
END_TEST

START_TEST(test_prorated_demand_says_how)
{
    /* Capacity 12500 kVA to 15000 kVA on 2025-04-16, at 24.4 CNY/kVA:
     * 15/30 x 305000.0000 + 15/30 x 366000.0000 = 335500.0000. */
    struct demand_days runs[] = {
        {civil_to_day((struct civil_date){2025, 4, 1}), 15, 12500000000, 3050000000},
        {civil_to_day((struct civil_date){2025, 4, 16}), 15, 15000000000, 3660000000},
    };
    struct demand_row r = month_row();
    r.month_day = runs[0].from_day;
    r.basis = DEMAND_CAPACITY;
    r.billing_kw_micro = 15000000000;
    r.charge_cny4 = r.net_cny4 = 3355000000;
    r.prorated = true;
    r.days_in_service = 30;
    r.n_runs = 2;
    r.runs = runs;
    char buf[CSV_LINE_MAX];
    csv_demand_row(&r, buf);
    ck_assert_str_eq(buf, "t1,c1,s1,p1,2025-04-01,capacity,40.000000,2025-02-28T16:00:00Z,"
                          "15000.000000,335500.0000,0.0000,335500.0000,,tf@2025-01-01#1a2b3c4d,"
                          "month,0,30,15/30 x 305000.0000 (2025-04-01..2025-04-15; billing_kw "
                          "12500.000000) + 15/30 x 366000.0000 (2025-04-16..2025-04-30; "
                          "billing_kw 15000.000000)\n");
    /* No day in service (a reload moved the dates): nothing to add. */
    r.n_runs = 0;
    r.days_in_service = 0;
    struct ledger_rows rows = {0};
    ledger_add_demand(&rows, &r);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert_str_eq(row.values[16], "0");
    ck_assert_str_eq(row.values[17], "0");
    ledger_rows_free(&rows);
    /* 31 runs of one day each, the longest proration, fits a line. */
    struct demand_days many[31];
    for (int i = 0; i < 31; i++)
        many[i] = (struct demand_days){runs[0].from_day + i, 1, 99999999999999, 999999999999999};
    r.n_runs = 31;
    r.runs = many;
    r.days_in_service = 31;
    size_t len = csv_demand_row(&r, buf);
    ck_assert_uint_lt(len, CSV_LINE_MAX);
    ck_assert_uint_eq(count_fields(buf), count_fields(header_of(csv_demand_header)));
    ck_assert(strstr(buf, "1/30 x 99999999999.9999 (2025-05-01..2025-05-01; billing_kw "
                          "99999999.999999)\n") != NULL);
}
END_TEST

START_TEST(test_rfc4180_quoting)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"two\nlines", "\"two\nlines\""},
        {"cr\r", "\"cr\r\""},
        {"", ""},
        {NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[CSV_LINE_MAX] = "x,";
        size_t len = 2;
        csv_text(buf, &len, cases[i].in);
        ck_assert_str_eq(buf + 2, cases[i].out);
        ck_assert_uint_eq(len, 2 + strlen(cases[i].out));
    }
}
END_TEST

START_TEST(test_timestamps_are_rfc3339_utc)
{
    static const struct {
        int64_t ts_s;
        const char *want;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {-1, "1969-12-31T23:59:59Z"},
        {1709164800 + 86399, "2024-02-29T23:59:59Z"},
        {T0, "2025-02-28T16:00:00Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        format_timestamp(cases[i].ts_s, buf);
        ck_assert_str_eq(buf, cases[i].want);
    }
}
END_TEST

/* ---------------------------------------------------------------- */
/* Ledger parameters                                                 */

START_TEST(test_billing_parameters_in_insert_order)
{
    /* $1..$21 the billing_rows columns as storage/pg.c lists them, $22 the
     * year, $23 and $24 the subsidy lines as array literals. */
    static const char *const want[] = {"t1",
                                       "c1",
                                       "s1",
                                       "p1",
                                       "2025-02-28T16:00:00Z",
                                       "2025-02-28T16:15:00Z",
                                       "2025-03-01",
                                       "interval",
                                       "0",
                                       "valley",
                                       "10.000000",
                                       "0.250000",
                                       "0.020000",
                                       "2.5000",
                                       "0.2000",
                                       "0.9375",
                                       "1.7625",
                                       "0.750000",
                                       "pa",
                                       "tf@2025-01-01#1a2b3c4d",
                                       "0",
                                       "2025",
                                       "{pa,pb}",
                                       "{0.9375,-0.0001}"};
    struct billing_row r = interval_row();
    r.n_lines = 2;
    struct ledger_rows rows = {0};
    ledger_add_billing(&rows, &r);
    ck_assert_uint_eq(rows.n, 1);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert(row.kind == LEDGER_BILLING);
    ck_assert_int_eq(row.n, 24);
    for (int i = 0; i < 24; i++) {
        ck_assert_ptr_nonnull(row.values[i]);
        ck_assert_str_eq(row.values[i], want[i]);
    }
    ck_assert(!ledger_next(&rows, &off, &row));
    ledger_rows_free(&rows);
}
END_TEST

START_TEST(test_adjustment_parameters_with_null_programme_and_no_lines)
{
    struct billing_row r = adjustment_row();
    struct ledger_rows rows = {0};
    ledger_add_billing(&rows, &r);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert_str_eq(row.values[7], "adjustment");
    ck_assert_str_eq(row.values[8], "2");
    ck_assert_str_eq(row.values[10], "-0.500000");
    ck_assert_str_eq(row.values[13], "-0.1250");
    ck_assert_str_eq(row.values[15], "0.0000");
    ck_assert_str_eq(row.values[17], "0.000005");
    ck_assert_ptr_null(row.values[18]); /* programme: SQL NULL */
    ck_assert_str_eq(row.values[20], "-30");
    ck_assert_str_eq(row.values[22], "{}");
    ck_assert_str_eq(row.values[23], "{}");
    ledger_rows_free(&rows);
}
END_TEST

START_TEST(test_demand_parameters_with_null_max_interval)
{
    static const char *const want[] = {"t1",         "c1",
                                       "s1",         "p1",
                                       "2025-03-01", "max_demand",
                                       "40.000000",  NULL,
                                       "40.000000",  "1200.0000",
                                       "0.0000",     "1200.0000",
                                       NULL,         "tf@2025-01-01#1a2b3c4d",
                                       "month",      "0",
                                       NULL,         NULL,
                                       "2025",       "{}",
                                       "{}"};
    struct demand_row r = month_row();
    r.max_interval_start_s = INT64_MIN;
    struct ledger_rows rows = {0};
    ledger_add_demand(&rows, &r);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert(row.kind == LEDGER_DEMAND);
    ck_assert_int_eq(row.n, 21);
    for (int i = 0; i < 21; i++) {
        if (!want[i])
            ck_assert_ptr_null(row.values[i]);
        else
            ck_assert_str_eq(row.values[i], want[i]);
    }
    ledger_rows_free(&rows);
}
END_TEST

START_TEST(test_quarantine_parameters_keep_the_raw_value)
{
    /* The value is a measurement, not money: printed so that it reads back
     * as the same double. */
    struct engine_sample s = {"c1", "main", SAMPLE_COUNTER, T0 * 1000000000LL, 0.1};
    struct ledger_rows rows = {0};
    ledger_add_quarantine(&rows, &s, "no tariff version in force", 0);
    s.kind = SAMPLE_POWER;
    s.value = 40;
    ledger_add_quarantine(&rows, &s, "timestamp more than max_future ahead of the clock", 0);
    ck_assert_uint_eq(rows.n, 2);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert(row.kind == LEDGER_QUARANTINE);
    ck_assert_int_eq(row.n, 6);
    ck_assert_str_eq(row.values[0], "c1");
    ck_assert_str_eq(row.values[1], "main");
    ck_assert_str_eq(row.values[2], "1740758400000000000");
    ck_assert_str_eq(row.values[3], "0.10000000000000001");
    ck_assert_double_eq(strtod(row.values[3], NULL), 0.1);
    ck_assert_str_eq(row.values[4], "counter");
    ck_assert_str_eq(row.values[5], "no tariff version in force");
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert_str_eq(row.values[3], "40");
    ck_assert_str_eq(row.values[4], "power");
    ck_assert(!ledger_next(&rows, &off, &row));
    ledger_rows_free(&rows);
}
END_TEST

START_TEST(test_release_parameters_are_the_id_and_the_nanoseconds)
{
    /* storage/pg.c's release_sql: $1 the quarantined_samples id, $2 the
     * release time in ns as an exact integer (never through a double). */
    struct ledger_rows rows = {0};
    ledger_add_release(&rows, 42, T0 * 1000000000LL + 123456789);
    ledger_add_release(&rows, INT64_MAX, 0);
    ck_assert_uint_eq(rows.n, 2);
    size_t off = 0;
    struct ledger_row row;
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert(row.kind == LEDGER_RELEASE);
    ck_assert_int_eq(row.n, 2);
    ck_assert_str_eq(row.values[0], "42");
    ck_assert_str_eq(row.values[1], "1740758400123456789");
    ck_assert(ledger_next(&rows, &off, &row));
    ck_assert(row.kind == LEDGER_RELEASE);
    ck_assert_int_eq(row.n, 2);
    ck_assert_str_eq(row.values[0], "9223372036854775807");
    ck_assert_str_eq(row.values[1], "0");
    ck_assert(!ledger_next(&rows, &off, &row));
    ck_assert_uint_eq(off, rows.len);
    ledger_rows_free(&rows);
}
END_TEST

START_TEST(test_rows_come_back_in_order)
{
    struct ledger_rows rows = {0};
    struct billing_row b = interval_row();
    struct demand_row d = month_row();
    for (int i = 0; i < 300; i++) {
        b.revision = i;
        ledger_add_billing(&rows, &b);
        if (i % 100 == 99)
            ledger_add_demand(&rows, &d);
    }
    ck_assert_uint_eq(rows.n, 303);
    size_t off = 0, n = 0;
    int revision = 0;
    struct ledger_row row;
    while (ledger_next(&rows, &off, &row)) {
        n++;
        if (row.kind == LEDGER_BILLING) {
            char want[16];
            snprintf(want, sizeof want, "%d", revision++);
            ck_assert_str_eq(row.values[8], want);
        }
    }
    ck_assert_uint_eq(n, 303);
    ck_assert_uint_eq(off, rows.len);
    ledger_rows_free(&rows);
}
END_TEST

static Suite *rows_suite(void)
{
    Suite *s = suite_create("rows");
    TCase *tc = tcase_create("format");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_billing_csv_line_has_each_columns_decimals);
    tcase_add_test(tc, test_adjustment_csv_line_has_negative_differences_and_null_programme);
    tcase_add_test(tc, test_zero_is_never_negative);
    tcase_add_test(tc, test_programme_list_is_quoted);
    tcase_add_test(tc, test_demand_csv_line_and_null_max_interval);
    tcase_add_test(tc, test_prorated_demand_says_how);
    tcase_add_test(tc, test_rfc4180_quoting);
    tcase_add_test(tc, test_timestamps_are_rfc3339_utc);
    tcase_add_test(tc, test_billing_parameters_in_insert_order);
    tcase_add_test(tc, test_adjustment_parameters_with_null_programme_and_no_lines);
    tcase_add_test(tc, test_demand_parameters_with_null_max_interval);
    tcase_add_test(tc, test_quarantine_parameters_keep_the_raw_value);
    tcase_add_test(tc, test_release_parameters_are_the_id_and_the_nanoseconds);
    tcase_add_test(tc, test_rows_come_back_in_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rows_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
