/*
 * Unit tests for the config model: parsing, validation messages (exact text
 * and line) and the lookups pricing relies on.
 */
#include "civil.h"
#include "config.h"
#include "decimal.h"
#include "eligibility.h"
#include "schedule.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* A small valid config; tests change one line (keeping line numbers) or
 * append lines after the last one (line 38 on). */
static const char *const base_lines[] = {
    /*  1 */ "[daemon]",
    /*  2 */ "interval = 15m",
    /*  3 */ "[tenant acme]",
    /*  4 */ "token_sha256 = " TOKEN,
    /*  5 */ "[chip dom]",
    /*  6 */ "vendor = Huawei",
    /*  7 */ "domestic = yes",
    /*  8 */ "rated_kw = 0.3",
    /*  9 */ "[chip foreign]",
    /* 10 */ "vendor = NVIDIA",
    /* 11 */ "domestic = no",
    /* 12 */ "rated_kw = 0.4",
    /* 13 */ "[site s1]",
    /* 14 */ "province = gansu",
    /* 15 */ "tariff = t1",
    /* 16 */ "[cluster c1]",
    /* 17 */ "tenant = acme",
    /* 18 */ "site = s1",
    /* 19 */ "inventory = dom*3, foreign*1",
    /* 20 */ "inventory@2026-03-01 = dom*1, foreign*3",
    /* 21 */ "[tariff t1 @ 2025-01-01]",
    /* 22 */ "utc_offset = +08:00",
    /* 23 */ "price.peak = 0.7443",
    /* 24 */ "price.flat = 0.4962",
    /* 25 */ "price.valley = 0.2481",
    /* 26 */ "surcharge = 0.022925",
    /* 27 */
    "profile.base = 00:00 flat, 06:00 peak, 08:00 flat, 10:00 valley, 16:00 flat, "
    "18:00 peak, 23:00 flat",
    /* 28 */ "months = jan-dec base",
    /* 29 */ "demand_basis = max_demand",
    /* 30 */ "demand.kw = 33.0",
    /* 31 */ "[programme p1]",
    /* 32 */ "provinces = gansu",
    /* 33 */ "from = 2025-11-01",
    /* 34 */ "min_domestic_share = 0.5",
    /* 35 */ "rate = 0.5",
    /* 36 */ "basis = energy",
    /* 37 */ "mode = pro_rata",
};
#define N_BASE (int)(sizeof base_lines / sizeof base_lines[0])

/* The base text with line `line` replaced by `with` (NULL: unchanged), and
 * `append` added at the end. Returns a static buffer. */
static const char *base_with(int line, const char *with, const char *append)
{
    static char buf[16384];
    size_t n = 0;
    for (int i = 1; i <= N_BASE; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\n",
                              i == line && with ? with : base_lines[i - 1]);
    if (append)
        snprintf(buf + n, sizeof buf - n, "%s\n", append);
    return buf;
}

/* Parses text and returns every error joined by newlines ("" when valid). */
static char *errors_of(const char *text)
{
    static char joined[8192];
    struct errors errs = {0};
    struct config *cfg = config_from_string("t.conf", text, &errs);
    size_t n = 0;
    joined[0] = '\0';
    for (size_t i = 0; i < errs.n; i++)
        n += (size_t)snprintf(joined + n, sizeof joined - n, "%s%s", i ? "\n" : "", errs.msgs[i]);
    ck_assert_msg((cfg == NULL) == (errs.n > 0), "config returned despite errors, or vice versa");
    config_free(cfg);
    errors_free(&errs);
    return joined;
}

/* text with the first occurrence of `from` replaced by `to`; a static
 * buffer, so edits can be chained. */
static const char *edit(const char *text, const char *from, const char *to)
{
    static char bufs[2][16384];
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

#define ck_assert_errors(text, expected) ck_assert_str_eq(errors_of(text), expected)

static struct config *parse_ok(const char *text)
{
    struct errors errs = {0};
    struct config *cfg = config_from_string("t.conf", text, &errs);
    ck_assert_msg(cfg != NULL, "unexpected error: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
    return cfg;
}

/* 2025-06-01 00:00 local (+08:00) is 2025-05-31T16:00:00Z. */
static int64_t local_ts(int y, int m, int d, int hh, int mm)
{
    return civil_day_start_ts(civil_to_day((struct civil_date){y, m, d}), 8 * 3600) + hh * 3600 +
           mm * 60;
}

/* ---------------------------------------------------------------- */

START_TEST(test_base_config_is_valid)
{
    struct config *cfg = parse_ok(base_with(0, NULL, NULL));
    ck_assert_uint_eq(cfg->n_tenants, 1);
    ck_assert_uint_eq(cfg->n_chips, 2);
    ck_assert_uint_eq(cfg->n_clusters, 1);
    ck_assert_uint_eq(cfg->n_tariff_versions, 1);
    ck_assert_int_eq(cfg->daemon.interval_s, 900);
    ck_assert_int_eq(cfg->daemon.grace_s, 120);
    ck_assert_int_eq(cfg->daemon.late_window_s, 6 * 3600);
    ck_assert_uint_eq(cfg->daemon.max_body_bytes, 32u << 20);
    ck_assert_uint_eq(cfg->daemon.max_backlog_bytes, 1u << 30);
    ck_assert_int_eq(cfg->daemon.max_subsidy_micro, 500000);
    ck_assert_int_eq(cfg->daemon.durability, DURABILITY_FSYNC);
    ck_assert_int_eq(cfg->daemon.max_meters_per_tenant, 100000);
    ck_assert_int_eq(cfg->daemon.idle_timeout_s, 60);
    ck_assert_int_eq(cfg->daemon.max_connections, 1000);
    ck_assert_int_eq(tenant_max_meters(cfg, &cfg->tenants[0]), 100000);
    ck_assert_str_eq(cfg->postgres.schema, "tariffd");
    ck_assert_str_eq(cfg->tenants[0].name, "acme"); /* defaults to the id */
    ck_assert_int_eq(cfg->tenants[0].token_sha256[0][0], 0x9f);
    ck_assert_int_eq(cfg->tenants[0].token_sha256[0][31], 0x08);
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_int_eq(v->price_micro_cny[PERIOD_PEAK], 744300);
    ck_assert_int_eq(v->surcharge_micro_cny, 22925);
    ck_assert_int_eq(v->demand_kw_micro_cny, 33000000);
    ck_assert_int_eq(v->contract_threshold_micro, 1050000); /* default 1.05 x2 */
    ck_assert_int_eq(v->contract_factor_micro, 2000000);
    ck_assert_ptr_eq(config_find_cluster(cfg, "c1"), &cfg->clusters[0]);
    ck_assert_ptr_null(config_find_cluster(cfg, "c2"));
    config_free(cfg);
}
END_TEST

START_TEST(test_daemon_keys_parse_units)
{
    struct config *cfg = parse_ok(
        base_with(2,
                  "interval = 5m\ngrace = 90s\nmax_gap = 1h\nlate_window = 7d\nmax_future = 0s\n"
                  "max_backlog = 4GiB\nmax_body = 2GiB\nmax_subsidy = 0.6\ndurability = none\n"
                  "max_meters_per_tenant = 1000\nidle_timeout = 2m\nmax_connections = 50\n"
                  "listen = 127.0.0.1:8086, [::1]:9999",
                  NULL));
    ck_assert_int_eq(cfg->daemon.interval_s, 300);
    ck_assert_int_eq(cfg->daemon.grace_s, 90);
    ck_assert_int_eq(cfg->daemon.max_gap_s, 3600);
    ck_assert_int_eq(cfg->daemon.late_window_s, 7 * 86400);
    ck_assert_int_eq(cfg->daemon.max_future_s, 0);
    ck_assert_uint_eq(cfg->daemon.max_backlog_bytes, 4ull << 30);
    ck_assert_uint_eq(cfg->daemon.max_body_bytes, 2ull << 30);
    ck_assert_int_eq(cfg->daemon.max_subsidy_micro, 600000);
    ck_assert_int_eq(cfg->daemon.durability, DURABILITY_NONE);
    ck_assert_uint_eq(cfg->daemon.n_listen, 2);
    ck_assert_str_eq(cfg->daemon.listen[1], "[::1]:9999");
    ck_assert_int_eq(cfg->daemon.max_meters_per_tenant, 1000);
    ck_assert_int_eq(cfg->daemon.idle_timeout_s, 120);
    ck_assert_int_eq(cfg->daemon.max_connections, 50);
    config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- */
/* One test per mistake a person can make: exact message and line.   */

START_TEST(test_backlog_under_body)
{
    /* A request as large as max_body could never fit under max_backlog. */
    ck_assert_errors(base_with(2, "max_backlog = 1KiB", NULL),
                     "t.conf:2: max_backlog (1024 bytes) must be at least twice max_body "
                     "(33554432 bytes), or a request could never fit");
    ck_assert_errors(base_with(2, "max_body = 600MiB", NULL),
                     "t.conf:2: max_backlog (1073741824 bytes) must be at least twice max_body "
                     "(629145600 bytes), or a request could never fit");
    /* A value refused on its own gets its own error only. */
    ck_assert_errors(base_with(2, "max_backlog = 0GiB", NULL),
                     "t.conf:2: max_backlog \"0GiB\" must be greater than 0");
}
END_TEST

START_TEST(test_listeners)
{
    /* Line 2 is in [daemon]: each case replaces it. */
    ck_assert_errors(base_with(2, "listen =", NULL),
                     "t.conf:2: listen is empty and listen_tls is not set: nothing would take "
                     "writes");
    ck_assert_errors(base_with(2, "listen_tls = 0.0.0.0:8443", NULL),
                     "t.conf:2: listen_tls needs tls_cert and tls_key");
    ck_assert_errors(base_with(2, "listen_tls = 0.0.0.0:8443, 8444", NULL),
                     "t.conf:2: listen address \"8444\" is not HOST:PORT (like 127.0.0.1:8086 or "
                     "[::1]:8086)");
    ck_assert_errors(base_with(2, "tls_key =", NULL), "t.conf:2: tls_key \"\" must not be empty");
    /* TLS only, and no metrics listener: valid. */
    struct config *cfg =
        parse_ok(base_with(2,
                           "listen =\nlisten_tls = [::]:8443\ntls_cert = c.pem\ntls_key = k.pem\n"
                           "metrics_listen =",
                           NULL));
    ck_assert_uint_eq(cfg->daemon.n_listen, 0);
    ck_assert_uint_eq(cfg->daemon.n_listen_tls, 1);
    ck_assert_str_eq(cfg->daemon.listen_tls[0], "[::]:8443");
    ck_assert_str_eq(cfg->daemon.tls_key, "k.pem");
    ck_assert_ptr_null(cfg->daemon.tls_client_ca);
    ck_assert_uint_eq(cfg->daemon.n_metrics_listen, 0);
    config_free(cfg);
    /* The default: metrics on loopback. */
    cfg = parse_ok(base_with(0, NULL, NULL));
    ck_assert_uint_eq(cfg->daemon.n_metrics_listen, 1);
    ck_assert_str_eq(cfg->daemon.metrics_listen[0], "127.0.0.1:8087");
    config_free(cfg);
}
END_TEST

START_TEST(test_unknown_key)
{
    ck_assert_errors(base_with(0, NULL, "colour = red"),
                     "t.conf:38: unknown key \"colour\" in [programme p1]");
}
END_TEST

START_TEST(test_unknown_section_kind)
{
    ck_assert_errors(base_with(0, NULL, "[meter m1]\nfoo = bar"),
                     "t.conf:38: unknown section kind \"meter\" (expected daemon, postgres, "
                     "tenant, chip, site, cluster, tariff or programme)");
}
END_TEST

START_TEST(test_duplicate_name)
{
    ck_assert_errors(base_with(0, NULL, "[chip dom]\nvendor = X"),
                     "t.conf:38: duplicate chip \"dom\" (first defined at t.conf:5)");
}
END_TEST

START_TEST(test_duplicate_key)
{
    ck_assert_errors(base_with(0, NULL, "rate = 0.4"),
                     "t.conf:38: duplicate key \"rate\" in [programme p1] (first at line 35)");
}
END_TEST

START_TEST(test_duplicate_key_across_daemon_sections)
{
    ck_assert_errors(base_with(0, NULL, "[daemon]\ninterval = 30m"),
                     "t.conf:39: duplicate key \"interval\" in [daemon] (first at line 2)");
}
END_TEST

START_TEST(test_missing_required_key)
{
    ck_assert_errors(base_with(12, "; rated_kw removed", NULL),
                     "t.conf:9: [chip foreign] is missing \"rated_kw\"");
}
END_TEST

START_TEST(test_unknown_tenant)
{
    ck_assert_errors(base_with(17, "tenant = acne", NULL),
                     "t.conf:17: unknown tenant \"acne\" in cluster \"c1\"");
}
END_TEST

START_TEST(test_unknown_site)
{
    ck_assert_errors(base_with(18, "site = s2", NULL),
                     "t.conf:18: unknown site \"s2\" in cluster \"c1\"");
}
END_TEST

START_TEST(test_unknown_chip)
{
    ck_assert_errors(base_with(19, "inventory = dom*3, h200*1", NULL),
                     "t.conf:19: unknown chip \"h200\" in inventory of cluster \"c1\"");
}
END_TEST

START_TEST(test_unknown_tariff)
{
    ck_assert_errors(base_with(15, "tariff = t2", NULL),
                     "t.conf:15: unknown tariff \"t2\" in site \"s1\"");
}
END_TEST

START_TEST(test_unknown_programme_tenant)
{
    ck_assert_errors(base_with(0, NULL, "tenants = acme, globex"),
                     "t.conf:38: unknown tenant \"globex\" in programme \"p1\"");
}
END_TEST

START_TEST(test_profile_must_start_at_midnight)
{
    ck_assert_errors(base_with(27, "profile.base = 01:00 flat, 06:00 peak", NULL),
                     "t.conf:27: profile \"base\" must start at 00:00, not 01:00\n"
                     "t.conf:28: unknown profile \"base\" in months");
}
END_TEST

START_TEST(test_profile_must_increase)
{
    ck_assert_errors(base_with(27, "profile.base = 00:00 flat, 10:00 peak, 08:00 valley", NULL),
                     "t.conf:27: profile \"base\": 08:00 is not after 10:00\n"
                     "t.conf:28: unknown profile \"base\" in months");
}
END_TEST

START_TEST(test_unknown_period)
{
    ck_assert_errors(base_with(27, "profile.base = 00:00 flat, 06:00 peek", NULL),
                     "t.conf:27: unknown period \"peek\" in profile \"base\" (expected "
                     "deep_valley, valley, flat, peak or critical)\n"
                     "t.conf:28: unknown profile \"base\" in months");
}
END_TEST

START_TEST(test_period_without_price)
{
    ck_assert_errors(base_with(27, "profile.base = 00:00 flat, 19:00 critical", NULL),
                     "t.conf:27: period \"critical\" used by profile \"base\" has no price (set "
                     "price.critical, or ratio.critical with floating and fixed)");
}
END_TEST

START_TEST(test_boundary_not_aligned_to_interval)
{
    ck_assert_errors(base_with(27, "profile.base = 00:00 flat, 06:10 peak", NULL),
                     "t.conf:27: profile \"base\": 06:10 is not aligned to the 15m interval\n"
                     "t.conf:28: unknown profile \"base\" in months");
}
END_TEST

START_TEST(test_boundary_alignment_follows_interval)
{
    /* 06:30 is fine at 15m and 30m but not at 60m. */
    const char *text = base_with(27, "profile.base = 00:00 flat, 06:30 peak", NULL);
    ck_assert_errors(text, "");
    ck_assert_errors(edit(text, "interval = 15m", "interval = 30m"), "");
    ck_assert_errors(edit(text, "interval = 15m", "interval = 60m"),
                     "t.conf:27: profile \"base\": 06:30 is not aligned to the 60m interval\n"
                     "t.conf:28: unknown profile \"base\" in months");
}
END_TEST

START_TEST(test_month_without_profile)
{
    ck_assert_errors(base_with(28, "months = jan-sep base, nov-dec base", NULL),
                     "t.conf:28: month \"oct\" has no profile in months");
}
END_TEST

START_TEST(test_month_twice)
{
    ck_assert_errors(base_with(28, "months = jan-jun base, jun-dec base", NULL),
                     "t.conf:28: month \"jun\" appears twice in months");
}
END_TEST

START_TEST(test_month_range_does_not_wrap)
{
    ck_assert_errors(base_with(28, "months = mar-dec base, nov-feb base", NULL),
                     "t.conf:28: month range \"nov-feb\" wraps around the year (split it: "
                     "nov-dec, jan-feb)");
}
END_TEST

START_TEST(test_rate_above_max_subsidy)
{
    ck_assert_errors(base_with(35, "rate = 0.6", NULL),
                     "t.conf:35: rate 0.6 is above max_subsidy 0.5");
}
END_TEST

START_TEST(test_rate_follows_max_subsidy_wherever_it_is_set)
{
    /* max_subsidy after the programme in config order still applies. */
    ck_assert_errors(base_with(35, "rate = 0.6", "[daemon]\nmax_subsidy = 0.7"), "");
}
END_TEST

START_TEST(test_rate_zero)
{
    ck_assert_errors(base_with(35, "rate = 0", NULL), "t.conf:35: rate 0 must be greater than 0");
}
END_TEST

START_TEST(test_min_domestic_share_outside_unit_interval)
{
    ck_assert_errors(base_with(34, "min_domestic_share = 1.2", NULL),
                     "t.conf:34: min_domestic_share 1.2 is outside [0, 1]");
    ck_assert_errors(base_with(34, "min_domestic_share = -0.1", NULL),
                     "t.conf:34: min_domestic_share -0.1 is outside [0, 1]");
}
END_TEST

START_TEST(test_malformed_token_hash)
{
    ck_assert_errors(base_with(0, NULL, "[tenant other]\ntoken_sha256 = 9f86d0"),
                     "t.conf:39: token_sha256 item 1 (6 characters, not shown: it may be a "
                     "token) is not a SHA-256 hex digest of 64 hex digits");
    /* The items are never quoted: a pasted token would reach the log. */
    ck_assert_errors(
        base_with(0, NULL, "[tenant other]\ntoken_sha256 = 7GFf26FUn912e2-SWOKTNgeXfClN04y,,x"),
        "t.conf:39: token_sha256 has an empty item, or more than 256");
}
END_TEST

START_TEST(test_token_hash_repeats_and_lists)
{
    struct config *cfg =
        parse_ok(base_with(4, "token_sha256 = " TOKEN ", " TOKEN "\ntoken_sha256 = " TOKEN, NULL));
    ck_assert_uint_eq(cfg->tenants[0].n_tokens, 3);
    config_free(cfg);
}
END_TEST

START_TEST(test_tariff_version_date_repeats)
{
    ck_assert_errors(base_with(0, NULL, "[tariff t1 @ 2025-01-01]\nutc_offset = +08:00"),
                     "t.conf:38: tariff \"t1\" version 2025-01-01 is defined twice (first at "
                     "t.conf:21)");
}
END_TEST

START_TEST(test_tariff_needs_a_date)
{
    ck_assert_errors(base_with(21, "[tariff t1]", NULL),
                     "t.conf:21: tariff \"t1\" needs the date it takes effect, like [tariff t1 @ "
                     "YYYY-MM-DD]\n"
                     "t.conf:15: unknown tariff \"t1\" in site \"s1\"");
}
END_TEST

START_TEST(test_inventory_count_not_positive_integer)
{
    ck_assert_errors(base_with(19, "inventory = dom*0", NULL),
                     "t.conf:19: chip count \"0\" of \"dom\" is not a positive integer");
    ck_assert_errors(base_with(19, "inventory = dom*2.5", NULL),
                     "t.conf:19: chip count \"2.5\" of \"dom\" is not a positive integer");
    ck_assert_errors(base_with(19, "inventory = dom", NULL),
                     "t.conf:19: inventory item \"dom\" is not CHIP*COUNT");
}
END_TEST

START_TEST(test_utc_offset_not_multiple_of_interval)
{
    const char *text = base_with(22, "utc_offset = +05:45", NULL);
    ck_assert_errors(text, ""); /* 5h45m is a whole number of 15m intervals */
    ck_assert_errors(edit(text, "interval = 15m", "interval = 30m"),
                     "t.conf:22: utc_offset +05:45 is not a multiple of the 30m interval");
}
END_TEST

START_TEST(test_versions_share_one_offset)
{
    char extra[1024];
    snprintf(extra, sizeof extra,
             "[tariff t1 @ 2026-01-01]\nutc_offset = +09:00\nprice.flat = 0.5\nsurcharge = 0\n"
             "profile.all = 00:00 flat\nmonths = jan-dec all\ndemand_basis = max_demand\n"
             "demand.kw = 30");
    ck_assert_errors(base_with(0, NULL, extra),
                     "t.conf:38: [tariff t1 @ 2026-01-01] has utc_offset +09:00, but t.conf:21 "
                     "has +08:00 (all versions of a tariff share one)");
}
END_TEST

START_TEST(test_bad_interval)
{
    ck_assert_errors(base_with(2, "interval = 20m", NULL),
                     "t.conf:2: interval must be 5m, 10m, 15m, 30m or 60m, not \"20m\"");
}
END_TEST

START_TEST(test_invalid_utf8_is_an_error)
{
    ck_assert_errors(base_with(17, "tenant = acme\xff", NULL),
                     "t.conf:17: invalid UTF-8 at column 14");
    ck_assert_errors(base_with(3, "[tenant b\xed\xa0\x80]", NULL),
                     "t.conf:3: invalid UTF-8 at column 10");
    /* Valid UTF-8 anywhere is fine (a display name in Chinese). */
    struct config *cfg = parse_ok(base_with(0, NULL,
                                            "[tenant zj]\nname = 字节跳动\n"
                                            "token_sha256 = " TOKEN));
    ck_assert_str_eq(config_find_tenant(cfg, "zj")->name, "字节跳动");
    config_free(cfg);
}
END_TEST

START_TEST(test_limits)
{
    ck_assert_errors(base_with(2, "max_meters_per_tenant = 0", NULL),
                     "t.conf:2: max_meters_per_tenant \"0\" must be greater than 0");
    ck_assert_errors(base_with(2, "max_meters_per_tenant = 1e3", NULL),
                     "t.conf:2: max_meters_per_tenant \"1e3\" is not a whole number");
    ck_assert_errors(base_with(2, "max_connections = -5", NULL),
                     "t.conf:2: max_connections \"-5\" is not a whole number");
    ck_assert_errors(base_with(2, "idle_timeout = 0s", NULL),
                     "t.conf:2: idle_timeout \"0s\" must be greater than 0");
    /* A tenant's max_meters overrides the daemon's. */
    struct config *cfg = parse_ok(base_with(2, "max_meters_per_tenant = 500",
                                            "[tenant other]\nmax_meters = 7\n"
                                            "token_sha256 = " TOKEN));
    ck_assert_int_eq(tenant_max_meters(cfg, config_find_tenant(cfg, "acme")), 500);
    ck_assert_int_eq(tenant_max_meters(cfg, config_find_tenant(cfg, "other")), 7);
    config_free(cfg);
}
END_TEST

START_TEST(test_bad_duration_and_size)
{
    ck_assert_errors(base_with(2, "grace = 2 minutes", NULL),
                     "t.conf:2: grace \"2 minutes\" is not a duration (expected a whole number "
                     "with s, m, h or d, like 15m)");
    ck_assert_errors(base_with(2, "max_body = 32MB", NULL),
                     "t.conf:2: max_body \"32MB\" is not a size (expected a whole number with "
                     "KiB, MiB or GiB, like 32MiB)");
}
END_TEST

START_TEST(test_bad_number)
{
    ck_assert_errors(base_with(8, "rated_kw = 0.3kW", NULL),
                     "t.conf:8: rated_kw \"0.3kW\" is not a number");
    ck_assert_errors(base_with(23, "price.peak = 0.74433333", NULL),
                     "t.conf:23: price.peak \"0.74433333\" has more than 6 decimals");
}
END_TEST

START_TEST(test_bad_enum_values)
{
    ck_assert_errors(base_with(7, "domestic = maybe", NULL),
                     "t.conf:7: domestic must be yes or no, not \"maybe\"");
    ck_assert_errors(base_with(37, "mode = some", NULL),
                     "t.conf:37: mode must be pro_rata or all_or_nothing, not \"some\"");
}
END_TEST

START_TEST(test_demand_basis_needs_its_price)
{
    ck_assert_errors(base_with(20, "transformer_kva = 12500",
                               "[cluster c2]\ntenant = acme\n"
                               "site = s1\ninventory = dom*1"),
                     "");
    const char *text = edit(base_with(20, "transformer_kva = 12500", NULL),
                            "demand_basis = "
                            "max_demand",
                            "demand_basis = capacity");
    ck_assert_errors(text, "t.conf:29: demand_basis capacity needs demand.kva (CNY per kVA-month)");
}
END_TEST

/* The message names the tariff version by its label, whose hash part the
 * label test pins; here only the prefix and the reason matter. */
static void assert_one_error_like(const char *text, const char *prefix, const char *suffix)
{
    struct errors errs = {0};
    struct config *cfg = config_from_string("t.conf", text, &errs);
    ck_assert_ptr_null(cfg);
    ck_assert_uint_eq(errs.n, 1);
    size_t n = strlen(errs.msgs[0]), k = strlen(suffix);
    ck_assert_msg(strncmp(errs.msgs[0], prefix, strlen(prefix)) == 0 && n >= k &&
                      strcmp(errs.msgs[0] + n - k, suffix) == 0,
                  "got %s", errs.msgs[0]);
    errors_free(&errs);
}

START_TEST(test_capacity_basis_needs_transformer_on_clusters)
{
    assert_one_error_like(base_with(29, "demand_basis = capacity\ndemand.kva = 22.6", NULL),
                          "t.conf:16: [cluster c1] is missing \"transformer_kva\", which tariff "
                          "t1@2025-01-01#",
                          " needs for demand_basis capacity");
    assert_one_error_like(base_with(29, "demand_basis = contract", NULL),
                          "t.conf:16: [cluster c1] is missing \"contract_kw\", which tariff "
                          "t1@2025-01-01#",
                          " needs for demand_basis contract");
}
END_TEST

START_TEST(test_load_factor_rule_needs_transformer)
{
    assert_one_error_like(base_with(30, "demand.kw = 33\nload_factor_rule = 260 0.9", NULL),
                          "t.conf:16: [cluster c1] is missing \"transformer_kva\", which tariff "
                          "t1@2025-01-01#",
                          " needs for its load_factor_rule");
}
END_TEST

/* Line 20 (the dated inventory) followed by `more`, in [cluster c1]: the
 * lines of `more` are 21, 22, ... */
static const char *cluster_with(const char *more)
{
    static char line[1024];
    snprintf(line, sizeof line, "%s\n%s", base_lines[19], more);
    return base_with(20, line, NULL);
}

START_TEST(test_service_dates_are_checked)
{
    ck_assert_errors(cluster_with("service_from = 2026-02-30"),
                     "t.conf:21: service_from \"2026-02-30\" is not a valid date");
    ck_assert_errors(cluster_with("service_until = 17 January"),
                     "t.conf:21: service_until \"17 January\" is not a date (expected "
                     "YYYY-MM-DD)");
    ck_assert_errors(cluster_with("service_from = 2026-01-17\nservice_until = 2026-01-16"),
                     "t.conf:22: service_until 2026-01-16 is before service_from 2026-01-17");
    /* Written the other way round, the message stays on service_until. */
    ck_assert_errors(cluster_with("service_until = 2026-01-16\nservice_from = 2026-01-17"),
                     "t.conf:21: service_until 2026-01-16 is before service_from 2026-01-17");
    ck_assert_errors(
        cluster_with("service_from = 2026-01-17\nservice_from = 2026-01-18"),
        "t.conf:22: duplicate key \"service_from\" in [cluster c1] (first at line 21)");
    /* One day in service is fine. */
    ck_assert_errors(cluster_with("service_from = 2026-01-17\nservice_until = 2026-01-17"), "");
}
END_TEST

START_TEST(test_dated_capacity_and_contract_are_checked)
{
    ck_assert_errors(cluster_with("transformer_kva = 12500\ntransformer_kva@2026-04-31 = 15000"),
                     "t.conf:22: transformer_kva date \"2026-04-31\" is not a valid date");
    ck_assert_errors(cluster_with("contract_kw = 9000\ncontract_kw@2026-04-16 = 0"),
                     "t.conf:22: contract_kw@2026-04-16 \"0\" must be greater than 0");
    ck_assert_errors(cluster_with("transformer_kva@2026-04-16 = 15000"),
                     "t.conf:21: transformer_kva@2026-04-16 needs an undated transformer_kva, "
                     "in force before it");
    ck_assert_errors(cluster_with("contract_kw@2026-04-16 = 9500"),
                     "t.conf:21: contract_kw@2026-04-16 needs an undated contract_kw, in force "
                     "before it");
    ck_assert_errors(cluster_with("transformer_kva = 12500\ntransformer_kva@2026-04-16 = 15000\n"
                                  "transformer_kva@2026-04-16 = 16000"),
                     "t.conf:23: duplicate key \"transformer_kva@2026-04-16\" in [cluster c1] "
                     "(first at line 22)");
    ck_assert_errors(cluster_with("transformer_kvaa@2026-04-16 = 15000"),
                     "t.conf:21: unknown key \"transformer_kvaa@2026-04-16\" in [cluster c1]");
}
END_TEST

START_TEST(test_service_and_capacity_on_a_day)
{
    /* Dated values apply from their day in any order written; service
     * dates are inclusive. */
    struct config *cfg =
        parse_ok(cluster_with("transformer_kva@2026-05-01 = 16000\ntransformer_kva = 12500\n"
                              "transformer_kva@2026-04-16 = 15000\ncontract_kw = 9000\n"
                              "service_from = 2026-01-17\nservice_until = 2026-06-30"));
    const struct cluster *c = &cfg->clusters[0];
    int32_t apr15 = civil_to_day((struct civil_date){2026, 4, 15});
    ck_assert_int_eq(cluster_transformer_micro_kva_on(c, INT32_MIN + 1), 12500000000);
    ck_assert_int_eq(cluster_transformer_micro_kva_on(c, apr15), 12500000000);
    ck_assert_int_eq(cluster_transformer_micro_kva_on(c, apr15 + 1), 15000000000);
    ck_assert_int_eq(cluster_transformer_micro_kva_on(c, apr15 + 16), 16000000000);
    ck_assert_int_eq(cluster_contract_micro_kw_on(c, apr15), 9000000000);
    int32_t jan17 = civil_to_day((struct civil_date){2026, 1, 17});
    int32_t jun30 = civil_to_day((struct civil_date){2026, 6, 30});
    ck_assert(!cluster_in_service_on(c, jan17 - 1));
    ck_assert(cluster_in_service_on(c, jan17));
    ck_assert(cluster_in_service_on(c, jun30));
    ck_assert(!cluster_in_service_on(c, jun30 + 1));
    config_free(cfg);
    /* Without service dates every day is in service; without a contract,
     * contract_kw is 0. */
    cfg = parse_ok(base_with(0, NULL, NULL));
    ck_assert(cluster_in_service_on(&cfg->clusters[0], 0));
    ck_assert_int_eq(cluster_contract_micro_kw_on(&cfg->clusters[0], jan17), 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_key_outside_section)
{
    ck_assert_errors("interval = 15m\n", "t.conf:1: key \"interval\" is outside any section");
}
END_TEST

START_TEST(test_syntax_error_line)
{
    ck_assert_errors(base_with(0, NULL, "just some words"),
                     "t.conf:38: expected \"key = value\", \"[section]\" or a comment");
}
END_TEST

START_TEST(test_line_longer_than_inih_buffer_is_an_error)
{
    char line[300];
    memset(line, 'x', sizeof line);
    memcpy(line, "name = ", 7);
    line[250] = '\0';
    const char *text = base_with(0, NULL, NULL);
    char buf[20000];
    snprintf(buf, sizeof buf, "%s[tenant other]\n%s\n", text, line);
    ck_assert_errors(buf, "t.conf:39: line is longer than 198 bytes");
}
END_TEST

START_TEST(test_line_of_198_bytes_is_fine)
{
    char line[200];
    memset(line, 'x', 198);
    memcpy(line, "name = ", 7);
    line[198] = '\0';
    char buf[20000];
    snprintf(buf, sizeof buf, "%s%s\n", base_with(3, "[tenant acme]", NULL), "");
    /* Put the long display name into tenant acme (line 5 becomes it). */
    snprintf(buf, sizeof buf, "%s", base_with(4, "token_sha256 = " TOKEN, NULL));
    char *p = strstr(buf, "[chip dom]");
    char rest[20000];
    snprintf(rest, sizeof rest, "%s", p);
    snprintf(p, sizeof buf - (size_t)(p - buf), "%s\n%s", line, rest);
    struct config *cfg = parse_ok(buf);
    ck_assert_uint_eq(strlen(cfg->tenants[0].name), 191);
    config_free(cfg);
}
END_TEST

START_TEST(test_multiline_values_join_with_one_space)
{
    struct config *cfg = parse_ok(base_with(27,
                                            "profile.base = 00:00 flat, 06:00 peak,\n"
                                            "    08:00 flat, 10:00 valley, 16:00 flat,\n"
                                            "\t18:00 peak, 23:00 flat",
                                            NULL));
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_uint_eq(v->profiles[0].n_steps, 7);
    ck_assert_ptr_nonnull(strstr(v->text, "profile.base = 00:00 flat, 06:00 peak, 08:00 flat, "
                                          "10:00 valley, 16:00 flat, 18:00 peak, 23:00 flat\n"));
    config_free(cfg);
}
END_TEST

START_TEST(test_indented_comment_is_not_a_continuation)
{
    struct config *cfg = parse_ok(base_with(26,
                                            "surcharge = 0.022925   ; funds\n"
                                            "                       ; more about funds",
                                            NULL));
    ck_assert_int_eq(cfg->tariffs[0].versions[0]->surcharge_micro_cny, 22925);
    config_free(cfg);
}
END_TEST

START_TEST(test_continuation_of_refused_key_is_ignored)
{
    /* The key outside any section is reported once, not again for its
     * continuation line; an include cannot continue. */
    ck_assert_errors("interval = 15m\n  more\n",
                     "t.conf:1: key \"interval\" is outside any section");
    struct errors errs = {0};
    struct config *cfg = config_new();
    const char *text = "[daemon]\ninclude = conf.d\n  other.d\n";
    config_parse_text(cfg, "main.conf", text, strlen(text), true, &errs);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_str_eq(errs.msgs[0], "main.conf:3: include must fit on one line");
    config_free(cfg);
    errors_free(&errs);
}
END_TEST

START_TEST(test_inventory_too_large)
{
    ck_assert_errors(base_with(19, "inventory = dom*999999999, foreign*999999999",
                               "[chip huge]\nvendor = X\ndomestic = no\nrated_kw = 99999999"),
                     "");
    ck_assert_errors(base_with(19, "inventory = huge*999999999",
                               "[chip huge]\nvendor = X\ndomestic = no\nrated_kw = 99999999999"),
                     "t.conf:19: inventory \"huge*999999999\" is too large to add up");
}
END_TEST

START_TEST(test_include_only_in_main_file)
{
    struct errors errs = {0};
    struct config *cfg = config_new();
    const char *main_text = "[daemon]\ninclude = conf.d\n";
    const char *inc = "[daemon]\ninclude = more.d\n";
    config_parse_text(cfg, "main.conf", main_text, strlen(main_text), true, &errs);
    ck_assert_str_eq(cfg->daemon.include, "conf.d");
    config_parse_text(cfg, "conf.d/a.conf", inc, strlen(inc), false, &errs);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_str_eq(errs.msgs[0], "conf.d/a.conf:2: include is only allowed in the main file");
    config_free(cfg);
    errors_free(&errs);
}
END_TEST

START_TEST(test_sections_across_files_resolve)
{
    /* References may point forward into a later file; errors name the file. */
    struct errors errs = {0};
    struct config *cfg = config_new();
    char main_text[16384];
    snprintf(main_text, sizeof main_text, "%s", base_with(0, NULL, NULL));
    /* Move the tariff into a second file by renaming the site's tariff. */
    char *p = strstr(main_text, "tariff = t1");
    memcpy(p, "tariff = t9", 11);
    const char *second = "[tariff t9 @ 2024-01-01]\nutc_offset = +08:00\nprice.flat = 0.5\n"
                         "surcharge = 0\nprofile.all = 00:00 flat\nmonths = jan-dec al\n"
                         "demand_basis = max_demand\ndemand.kw = 30\n";
    config_parse_text(cfg, "main.conf", main_text, strlen(main_text), true, &errs);
    config_parse_text(cfg, "conf.d/t9.conf", second, strlen(second), false, &errs);
    ck_assert(!config_finish(cfg, &errs));
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_str_eq(errs.msgs[0], "conf.d/t9.conf:6: unknown profile \"al\" in months");
    config_free(cfg);
    errors_free(&errs);
}
END_TEST

START_TEST(test_every_error_is_reported_at_once)
{
    const char *text = "[daemon]\ninterval = 7m\n[chip x]\nvendor = A\ndomestic = perhaps\n"
                       "rated_kw = -1\n";
    ck_assert_errors(text, "t.conf:2: interval must be 5m, 10m, 15m, 30m or 60m, not \"7m\"\n"
                           "t.conf:5: domestic must be yes or no, not \"perhaps\"\n"
                           "t.conf:6: rated_kw \"-1\" must be greater than 0");
}
END_TEST

START_TEST(test_province_of_programme_must_have_a_site)
{
    ck_assert_errors(base_with(32, "provinces = gansu, gansuu", NULL),
                     "t.conf:32: unknown province \"gansuu\" in programme \"p1\" (no site is in "
                     "it)");
}
END_TEST

START_TEST(test_more_programmes_in_a_province_than_a_row_records)
{
    char extra[4096] = "";
    size_t n = 0;
    for (int i = 2; i <= 9; i++)
        n += (size_t)snprintf(extra + n, sizeof extra - n,
                              "[programme p%d]\nprovinces = gansu\nfrom = 2025-01-01\n"
                              "min_domestic_share = 0\nrate = 0.1\nbasis = energy\n"
                              "mode = pro_rata\n",
                              i);
    /* p1 and p2..p9: the ninth starts at line 38 + 7 x 7. */
    ck_assert_errors(base_with(0, NULL, extra),
                     "t.conf:87: more than 8 programmes in province \"gansu\"");
}
END_TEST

START_TEST(test_price_and_ratio_for_one_period)
{
    ck_assert_errors(base_with(0, NULL, NULL), "");
    ck_assert_errors(
        base_with(23, "price.peak = 0.7443\nfloating = 0.4\nfixed = 0.2\nratio.peak = 1.5", NULL),
        "t.conf:26: period \"peak\" has both price.peak (line 23) and ratio.peak");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Lookups                                                            */

START_TEST(test_formation_reproduces_hubei_table)
{
    /* Hubei Jan 2026, 110 kV two-part (reference/tariffs.md section 3 A):
     * 0.398113 x m + 0.215873, rounded half-even to 6 decimals.
     *   x2.0  = 0.796226   + 0.215873 = 1.012099
     *   x1.49 = 0.59318837 + 0.215873 = 0.80906137 -> 0.809061
     *   x1.0  = 0.398113   + 0.215873 = 0.613986
     *   x0.45 = 0.17915085 + 0.215873 = 0.39502385 -> 0.395024 */
    const char *text =
        base_with(23,
                  "floating = 0.398113\nfixed = 0.215873\nratio.critical = 2.0\nratio.peak = 1.49\n"
                  "ratio.flat = 1.0\nratio.valley = 0.45",
                  NULL);
    text = edit(edit(text, "price.flat = 0.4962", ";"), "price.valley = 0.2481", ";");
    struct config *cfg = parse_ok(text);
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_int_eq(v->price_micro_cny[PERIOD_CRITICAL], 1012099);
    ck_assert_int_eq(v->price_micro_cny[PERIOD_PEAK], 809061);
    ck_assert_int_eq(v->price_micro_cny[PERIOD_FLAT], 613986);
    ck_assert_int_eq(v->price_micro_cny[PERIOD_VALLEY], 395024);
    config_free(cfg);
}
END_TEST

START_TEST(test_formation_rounds_half_even)
{
    /* 0.5 x 0.000001 + 0 = 0.0000005 -> 0.000000 (tie to even 0);
     * 1.5 x 0.000001 + 0 = 0.0000015 -> 0.000002 (tie to even 2). */
    const char *text = base_with(
        23, "floating = 0.000001\nfixed = 0\nratio.peak = 0.5\nratio.flat = 1.5\nratio.valley = 1",
        NULL);
    text = edit(edit(text, "price.flat = 0.4962", ";"), "price.valley = 0.2481", ";");
    struct config *cfg = parse_ok(text);
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_int_eq(v->price_micro_cny[PERIOD_PEAK], 0);
    ck_assert_int_eq(v->price_micro_cny[PERIOD_FLAT], 2);
    config_free(cfg);
}
END_TEST

START_TEST(test_period_at_local_time)
{
    struct config *cfg = parse_ok(base_with(0, NULL, NULL));
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 0, 0)), PERIOD_FLAT);
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 5, 45)), PERIOD_FLAT);
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 6, 0)), PERIOD_PEAK);
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 10, 0)), PERIOD_VALLEY);
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 22, 45)), PERIOD_PEAK);
    /* 23:00 -> 00:00 wraps: 23:00 is flat, and 15:00Z (23:00 local) too. */
    ck_assert_int_eq(tariff_period_at(v, local_ts(2025, 6, 1, 23, 0)), PERIOD_FLAT);
    ck_assert_int_eq(tariff_period_at(v, 1748790000), PERIOD_FLAT); /* 2025-06-01T15:00Z */
    ck_assert_int_eq(tariff_period_at(v, 1748789100), PERIOD_PEAK); /* 14:45Z = 22:45 local */
    config_free(cfg);
}
END_TEST

START_TEST(test_period_follows_local_month)
{
    /* Summer profile in jun-aug. 2025-05-31T16:00Z is 2025-06-01 00:00 local:
     * June in Gansu though still May in UTC. */
    struct config *cfg =
        parse_ok(base_with(28,
                           "profile.summer = 00:00 valley\nmonths = jan-may base, jun-aug summer, "
                           "sep-dec base",
                           NULL));
    const struct tariff_version *v = cfg->tariffs[0].versions[0];
    ck_assert_int_eq(tariff_period_at(v, 1748707200 - 900), PERIOD_FLAT); /* 23:45 May 31 */
    ck_assert_int_eq(tariff_period_at(v, 1748707200), PERIOD_VALLEY);     /* 00:00 Jun 1 */
    ck_assert_int_eq(tariff_local_month_start_day(v, 1748707200),
                     civil_to_day((struct civil_date){2025, 6, 1}));
    ck_assert_int_eq(tariff_local_month_start_day(v, 1748707200 - 1),
                     civil_to_day((struct civil_date){2025, 5, 1}));
    config_free(cfg);
}
END_TEST

START_TEST(test_version_in_force_changes_at_local_midnight)
{
    char extra[1024];
    snprintf(extra, sizeof extra,
             "[tariff t1 @ 2026-08-01]\nutc_offset = +08:00\nprice.flat = 0.5\nsurcharge = 0.03\n"
             "profile.all = 00:00 flat\nmonths = jan-dec all\ndemand_basis = max_demand\n"
             "demand.kw = 30");
    struct config *cfg = parse_ok(base_with(0, NULL, extra));
    const struct tariff *t = &cfg->tariffs[0];
    ck_assert_uint_eq(t->n_versions, 2);
    int64_t change = local_ts(2026, 8, 1, 0, 0); /* 2026-07-31T16:00:00Z */
    ck_assert_int_eq(change, 1785513600);
    ck_assert_ptr_null(tariff_version_at(t, local_ts(2024, 12, 31, 23, 59)));
    ck_assert_ptr_eq(tariff_version_at(t, local_ts(2025, 1, 1, 0, 0)), t->versions[0]);
    ck_assert_ptr_eq(tariff_version_at(t, change - 1), t->versions[0]);
    ck_assert_ptr_eq(tariff_version_at(t, change), t->versions[1]);
    ck_assert_int_eq(tariff_version_at(t, change)->surcharge_micro_cny, 30000);
    ck_assert_int_eq(tariff_price_micro_cny(tariff_version_at(t, change - 1), PERIOD_PEAK), 744300);
    ck_assert_int_eq(tariff_price_micro_cny(tariff_version_at(t, change), PERIOD_FLAT), 500000);
    config_free(cfg);
}
END_TEST

START_TEST(test_version_label_hashes_section_text)
{
    /* printf 'utc_offset = +08:00\nprice.flat = 0.5\nsurcharge = 0\nprofile.all = 00:00
     * flat\nmonths = jan-dec all\ndemand_basis = max_demand\ndemand.kw = 30\n' | sha256sum
     * -> 8f999202... (computed outside tariffd). */
    const char *text = "[tenant a]\ntoken_sha256 = " TOKEN "\n"
                       "[tariff flat-one @ 2025-01-01]\n"
                       "utc_offset   =   +08:00   ; spaces and comments are not hashed\n"
                       "price.flat = 0.5\nsurcharge = 0\nprofile.all = 00:00 flat\n"
                       "months = jan-dec all\ndemand_basis = max_demand\ndemand.kw = 30\n";
    struct config *cfg = parse_ok(text);
    ck_assert_str_eq(cfg->tariffs[0].versions[0]->text,
                     "utc_offset = +08:00\nprice.flat = 0.5\nsurcharge = 0\nprofile.all = 00:00 "
                     "flat\nmonths = jan-dec all\ndemand_basis = max_demand\ndemand.kw = 30\n");
    ck_assert_str_eq(cfg->tariffs[0].versions[0]->label, "flat-one@2025-01-01#8f999202");
    config_free(cfg);
}
END_TEST

START_TEST(test_inventory_and_domestic_share_over_time)
{
    /* Before 2026-03-01 local: dom*3 (0.9 kW) + foreign*1 (0.4 kW):
     * 0.9 / 1.3 = 0.692307692... -> 0.692308.
     * From 2026-03-01: dom*1 (0.3) + foreign*3 (1.2): 0.3 / 1.5 = 0.2. */
    struct config *cfg = parse_ok(base_with(0, NULL, NULL));
    const struct cluster *c = &cfg->clusters[0];
    int64_t change = local_ts(2026, 3, 1, 0, 0);
    ck_assert_int_eq(cluster_domestic_share_micro(c, change - 1), 692308);
    ck_assert_int_eq(cluster_domestic_share_micro(c, change), 200000);
    ck_assert_int_eq(cluster_inventory_at(c, change - 1)->n_items, 2);
    ck_assert_int_eq(cluster_inventory_at(c, change)->items[1].count, 3);
    config_free(cfg);
}
END_TEST

START_TEST(test_pflops_rates_an_inventory_when_every_chip_has_it)
{
    /* dom 0.78125 PFLOPS, foreign 0.148: c1's dom*3, foreign*1 is
     * 3 x 0.78125 + 0.148 = 2.49175, then dom*1, foreign*3 is 0.78125 +
     * 0.444 = 1.22525. Without foreign's rating neither inventory of c1 is
     * rated, while c2's dom*2 (1.5625) still is. */
    const char *c2 = "[cluster c2]\ntenant = acme\nsite = s1\ninventory = dom*2";
    struct config *cfg = parse_ok(edit(base_with(8, "rated_kw = 0.3\npflops = 0.78125", c2),
                                       "rated_kw = 0.4", "rated_kw = 0.4\npflops = 0.148"));
    const struct cluster *c = config_find_cluster(cfg, "c1");
    ck_assert(c->inventories[0].has_pflops && c->inventories[1].has_pflops);
    ck_assert_int_eq(c->inventories[0].pflops_micro, 2491750);
    ck_assert_int_eq(c->inventories[1].pflops_micro, 1225250);
    ck_assert_int_eq(cfg->chips[0].pflops_micro, 781250);
    config_free(cfg);

    cfg = parse_ok(base_with(8, "rated_kw = 0.3\npflops = 0.78125", c2));
    c = config_find_cluster(cfg, "c1");
    ck_assert(!cfg->chips[1].has_pflops);
    ck_assert(!c->inventories[0].has_pflops && !c->inventories[1].has_pflops);
    c = config_find_cluster(cfg, "c2");
    ck_assert(c->inventories[0].has_pflops);
    ck_assert_int_eq(c->inventories[0].pflops_micro, 1562500);
    config_free(cfg);
}
END_TEST

START_TEST(test_bad_pflops)
{
    /* pflops is line 9, right after dom's rated_kw. */
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 0", NULL),
                     "t.conf:9: pflops \"0\" must be greater than 0");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = -0.78", NULL),
                     "t.conf:9: pflops \"-0.78\" must be greater than 0");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 0.78 PFLOPS", NULL),
                     "t.conf:9: pflops \"0.78 PFLOPS\" is not a number");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 7.8e-1", NULL),
                     "t.conf:9: pflops \"7.8e-1\" is not a number");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 0.0000001", NULL),
                     "t.conf:9: pflops \"0.0000001\" has more than 6 decimals");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = ", NULL),
                     "t.conf:9: pflops \"\" is not a number");
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 0.78\npflops = 0.8", NULL),
                     "t.conf:10: duplicate key \"pflops\" in [chip dom] (first at line 9)");
    /* 1e11 PFLOPS x 999999999 chips does not fit the inventory's sum. */
    ck_assert_errors(base_with(8, "rated_kw = 0.3\npflops = 100000000000",
                               "[cluster c2]\ntenant = acme\nsite = s1\n"
                               "inventory = dom*999999999"),
                     "t.conf:42: inventory \"dom*999999999\" is too large to add up");
}
END_TEST

START_TEST(test_domestic_share_rounds_half_even)
{
    /* dom 0.000001 kW x1, foreign 0.000001 kW x 1999999: share = 1/2000000
     * = 0.0000005 -> tie -> 0.000000; with x 666665: 1/666666 =
     * 0.0000015000015 -> 0.000002 (not a tie, above half). A true tie at
     * 0.0000015: dom 3, total 2000000 -> 0.0000015 -> 0.000002 (even). */
    struct config *cfg = parse_ok(
        base_with(8, "rated_kw = 0.000001",
                  "[cluster c2]\ntenant = acme\nsite = s1\ninventory = dom*1, tiny*1999999\n"
                  "[cluster c3]\ntenant = acme\nsite = s1\ninventory = dom*3, tiny*1999997\n"
                  "[chip tiny]\nvendor = X\ndomestic = no\nrated_kw = 0.000001"));
    ck_assert_int_eq(cluster_domestic_share_micro(config_find_cluster(cfg, "c2"), 0), 0);
    ck_assert_int_eq(cluster_domestic_share_micro(config_find_cluster(cfg, "c3"), 0), 2);
    config_free(cfg);
}
END_TEST

START_TEST(test_eligibility_crosses_threshold_with_inventory)
{
    struct config *cfg = parse_ok(base_with(0, NULL, NULL));
    const struct cluster *c = &cfg->clusters[0];
    const struct programme *out[4];
    /* Before the programme starts (2025-11-01 local). */
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2025, 10, 31, 23, 45), out, 4), 0);
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2025, 11, 1, 0, 0), out, 4), 1);
    ck_assert_ptr_eq(out[0], &cfg->programmes[0]);
    /* The 2026-03-01 inventory drops the share to 0.2 < 0.5. */
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2026, 2, 28, 23, 45), out, 4), 1);
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2026, 3, 1, 0, 0), out, 4), 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_eligibility_rules)
{
    struct config *cfg = parse_ok(base_with(
        0, NULL,
        "until = 2026-01-31\ntenants = acme\n"
        "[tenant other]\ntoken_sha256 = " TOKEN "\n"
        "[programme p2]\nprovinces = gansu\nfrom = 2025-01-01\nmin_domestic_share = 0.692308\n"
        "rate = 0.1\nbasis = energy+demand\nmode = all_or_nothing\ntenants = other\n"
        "[programme p3]\nprovinces = gansu\nfrom = 2025-01-01\nmin_domestic_share = 0.692308\n"
        "rate = 0.2\nbasis = energy\nmode = all_or_nothing\ncap_cny_per_year = 1000.5"));
    const struct cluster *c = &cfg->clusters[0];
    const struct programme *out[4];
    /* p1 until 2026-01-31 inclusive; p2 is for another tenant; p3 needs
     * share >= 0.692308, which the rounded 0.692308 meets exactly. */
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2026, 1, 31, 23, 45), out, 4), 2);
    ck_assert_str_eq(out[0]->id, "p1");
    ck_assert_str_eq(out[1]->id, "p3");
    ck_assert_uint_eq(programmes_eligible(cfg, c, local_ts(2026, 2, 1, 0, 0), out, 4), 1);
    ck_assert_str_eq(out[0]->id, "p3");
    ck_assert_int_eq(out[0]->cap_cny4_per_year, 10005000);
    ck_assert_int_eq(config_find_programme(cfg, "p2")->basis, PROGRAMME_BASIS_ENERGY_DEMAND);
    config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Units                                                              */

START_TEST(test_decimal_parse_is_exact)
{
    int64_t v;
    const char *why;
    ck_assert(decimal_parse("0.7443", 6, &v, &why) && v == 744300);
    ck_assert(decimal_parse("-1", 4, &v, &why) && v == -10000);
    ck_assert(decimal_parse(".5", 6, &v, &why) && v == 500000);
    ck_assert(decimal_parse("2.", 6, &v, &why) && v == 2000000);
    ck_assert(decimal_parse("0.1234560000", 6, &v, &why) && v == 123456);
    ck_assert(!decimal_parse("0.1234567", 6, &v, &why));
    ck_assert_str_eq(why, "has more than 6 decimals");
    ck_assert(!decimal_parse("1e3", 6, &v, &why));
    ck_assert(!decimal_parse("", 6, &v, &why));
    ck_assert(!decimal_parse(".", 6, &v, &why));
    ck_assert(!decimal_parse("99999999999999", 6, &v, &why));
    ck_assert_str_eq(why, "is out of range");
}
END_TEST

START_TEST(test_half_even_division)
{
    ck_assert_int_eq(decimal_div_half_even(5, 10), 0);
    ck_assert_int_eq(decimal_div_half_even(15, 10), 2);
    ck_assert_int_eq(decimal_div_half_even(25, 10), 2);
    ck_assert_int_eq(decimal_div_half_even(26, 10), 3);
    ck_assert_int_eq(decimal_div_half_even(-25, 10), -2);
    ck_assert_int_eq(decimal_div_half_even(-35, 10), -4);
    ck_assert_int_eq(decimal_div_half_even(-26, 10), -3);
    ck_assert_int_eq(decimal_div_half_even(7, -2), -4); /* -3.5 -> -4 */
    char buf[32];
    decimal_format(-5, 4, buf, sizeof buf);
    ck_assert_str_eq(buf, "-0.0005");
    decimal_format(0, 4, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.0000");
}
END_TEST

START_TEST(test_civil_dates)
{
    int32_t day;
    const char *why;
    ck_assert(civil_parse_date("1970-01-01", &day, &why) && day == 0);
    ck_assert(civil_parse_date("2024-02-29", &day, &why));
    ck_assert(!civil_parse_date("2025-02-29", &day, &why));
    ck_assert_str_eq(why, "is not a valid date");
    ck_assert(!civil_parse_date("2025-1-01", &day, &why));
    struct civil_date d = civil_from_day(civil_to_day((struct civil_date){2026, 12, 31}));
    ck_assert(d.year == 2026 && d.month == 12 && d.day == 31);
    /* 2025-12-31T16:00:00Z is 2026-01-01 00:00 in +08:00. */
    ck_assert_int_eq(civil_local_day(1767196800, 8 * 3600),
                     civil_to_day((struct civil_date){2026, 1, 1}));
    ck_assert_int_eq(civil_local_day(1767196799, 8 * 3600),
                     civil_to_day((struct civil_date){2025, 12, 31}));
    ck_assert_int_eq(civil_local_day(-1, 0), -1);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, test_base_config_is_valid);
    tcase_add_test(parse, test_daemon_keys_parse_units);
    tcase_add_test(parse, test_multiline_values_join_with_one_space);
    tcase_add_test(parse, test_indented_comment_is_not_a_continuation);
    tcase_add_test(parse, test_token_hash_repeats_and_lists);
    tcase_add_test(parse, test_include_only_in_main_file);
    tcase_add_test(parse, test_continuation_of_refused_key_is_ignored);
    tcase_add_test(parse, test_sections_across_files_resolve);
    tcase_add_test(parse, test_line_of_198_bytes_is_fine);
    suite_add_tcase(s, parse);

    TCase *mistakes = tcase_create("mistakes");
    tcase_add_test(mistakes, test_backlog_under_body);
    tcase_add_test(mistakes, test_listeners);
    tcase_add_test(mistakes, test_unknown_key);
    tcase_add_test(mistakes, test_unknown_section_kind);
    tcase_add_test(mistakes, test_duplicate_name);
    tcase_add_test(mistakes, test_duplicate_key);
    tcase_add_test(mistakes, test_duplicate_key_across_daemon_sections);
    tcase_add_test(mistakes, test_missing_required_key);
    tcase_add_test(mistakes, test_unknown_tenant);
    tcase_add_test(mistakes, test_unknown_site);
    tcase_add_test(mistakes, test_unknown_chip);
    tcase_add_test(mistakes, test_unknown_tariff);
    tcase_add_test(mistakes, test_unknown_programme_tenant);
    tcase_add_test(mistakes, test_profile_must_start_at_midnight);
    tcase_add_test(mistakes, test_profile_must_increase);
    tcase_add_test(mistakes, test_unknown_period);
    tcase_add_test(mistakes, test_period_without_price);
    tcase_add_test(mistakes, test_boundary_not_aligned_to_interval);
    tcase_add_test(mistakes, test_boundary_alignment_follows_interval);
    tcase_add_test(mistakes, test_month_without_profile);
    tcase_add_test(mistakes, test_month_twice);
    tcase_add_test(mistakes, test_month_range_does_not_wrap);
    tcase_add_test(mistakes, test_rate_above_max_subsidy);
    tcase_add_test(mistakes, test_rate_follows_max_subsidy_wherever_it_is_set);
    tcase_add_test(mistakes, test_rate_zero);
    tcase_add_test(mistakes, test_min_domestic_share_outside_unit_interval);
    tcase_add_test(mistakes, test_malformed_token_hash);
    tcase_add_test(mistakes, test_tariff_version_date_repeats);
    tcase_add_test(mistakes, test_tariff_needs_a_date);
    tcase_add_test(mistakes, test_inventory_count_not_positive_integer);
    tcase_add_test(mistakes, test_inventory_too_large);
    tcase_add_test(mistakes, test_utc_offset_not_multiple_of_interval);
    tcase_add_test(mistakes, test_versions_share_one_offset);
    tcase_add_test(mistakes, test_bad_interval);
    tcase_add_test(mistakes, test_bad_duration_and_size);
    tcase_add_test(mistakes, test_limits);
    tcase_add_test(mistakes, test_invalid_utf8_is_an_error);
    tcase_add_test(mistakes, test_bad_number);
    tcase_add_test(mistakes, test_bad_pflops);
    tcase_add_test(mistakes, test_bad_enum_values);
    tcase_add_test(mistakes, test_demand_basis_needs_its_price);
    tcase_add_test(mistakes, test_capacity_basis_needs_transformer_on_clusters);
    tcase_add_test(mistakes, test_load_factor_rule_needs_transformer);
    tcase_add_test(mistakes, test_service_dates_are_checked);
    tcase_add_test(mistakes, test_dated_capacity_and_contract_are_checked);
    tcase_add_test(mistakes, test_key_outside_section);
    tcase_add_test(mistakes, test_syntax_error_line);
    tcase_add_test(mistakes, test_line_longer_than_inih_buffer_is_an_error);
    tcase_add_test(mistakes, test_every_error_is_reported_at_once);
    tcase_add_test(mistakes, test_province_of_programme_must_have_a_site);
    tcase_add_test(mistakes, test_price_and_ratio_for_one_period);
    tcase_add_test(mistakes, test_more_programmes_in_a_province_than_a_row_records);
    suite_add_tcase(s, mistakes);

    TCase *lookups = tcase_create("lookups");
    tcase_add_test(lookups, test_formation_reproduces_hubei_table);
    tcase_add_test(lookups, test_formation_rounds_half_even);
    tcase_add_test(lookups, test_period_at_local_time);
    tcase_add_test(lookups, test_period_follows_local_month);
    tcase_add_test(lookups, test_version_in_force_changes_at_local_midnight);
    tcase_add_test(lookups, test_version_label_hashes_section_text);
    tcase_add_test(lookups, test_inventory_and_domestic_share_over_time);
    tcase_add_test(lookups, test_domestic_share_rounds_half_even);
    tcase_add_test(lookups, test_pflops_rates_an_inventory_when_every_chip_has_it);
    tcase_add_test(lookups, test_eligibility_crosses_threshold_with_inventory);
    tcase_add_test(lookups, test_eligibility_rules);
    tcase_add_test(lookups, test_service_and_capacity_on_a_day);
    suite_add_tcase(s, lookups);

    TCase *units = tcase_create("units");
    tcase_add_test(units, test_decimal_parse_is_exact);
    tcase_add_test(units, test_half_even_division);
    tcase_add_test(units, test_civil_dates);
    suite_add_tcase(s, units);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
