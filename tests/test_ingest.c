/*
 * Unit tests for the journal record codec of daemon/ingest.c: a request body
 * becomes a samples record (ingest_parse) with exactly the bytes ingest.h
 * documents, and that record pushes the same samples into an engine
 * (ingest_apply); tick and caps records round trip too; a truncated or
 * corrupt payload of each kind is refused with "... does not decode".
 *
 * The config: interval 15m, grace 2m, one tariff in +08:00 with valley 0.25
 * CNY/kWh all day, surcharge 0.02; cluster c1 (tenant t1) has a domestic
 * share of 0.75, c2 (tenant t2) of 0.5; programme pa pays 0.5 pro rata with
 * a yearly cap of 1 CNY per tenant. T0 is 2025-03-01 00:00 local.
 */
#include "daemon/ingest.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define NS    1000000000LL
#define T0    1740758400LL

static const char config_text[] =
    "[daemon]\ninterval = 15m\nmax_gap = 5m\ngrace = 2m\nlate_window = 6h\nmax_subsidy = 0.5\n"
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
    "[tenant t2]\ntoken_sha256 = " TOKEN "\n"
    "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"
    "[chip for]\nvendor = B\ndomestic = no\nrated_kw = 1\n"
    "[site s1]\nprovince = p1\ntariff = tf\n"
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = dom*3, for*1\n"
    "[cluster c2]\ntenant = t2\nsite = s1\ninventory = dom*1, for*1\n"
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nsurcharge = 0.02\n"
    "profile.base = 00:00 valley\nmonths = jan-dec base\n"
    "demand_basis = max_demand\ndemand.kw = 30\n"
    "[programme pa]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5\n"
    "basis = energy\nmode = pro_rata\ncap_cny_per_year = 1\n";

static struct config *cfg;

/* What the engine emitted: billing rows (cluster, kWh, subsidy) and
 * quarantined samples. */
static struct {
    char cluster[16];
    int64_t start_s, kwh_micro, subsidy_cny4;
} rows[16];
static size_t n_rows, n_quarantined;

static void on_billing(void *ctx, const struct billing_row *r)
{
    (void)ctx;
    ck_assert_uint_lt(n_rows, 16);
    snprintf(rows[n_rows].cluster, sizeof rows[n_rows].cluster, "%s", r->cluster->id);
    rows[n_rows].start_s = r->interval_start_s;
    rows[n_rows].kwh_micro = r->kwh_micro;
    rows[n_rows].subsidy_cny4 = r->subsidy_cny4;
    n_rows++;
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    (void)ctx, (void)s, (void)reason;
    n_quarantined++;
}

static struct engine *new_engine(void)
{
    n_rows = n_quarantined = 0;
    struct engine_sink sink = {NULL, on_billing, NULL, on_quarantine};
    struct engine *e = engine_new(cfg, &sink);
    engine_caps_recovered(e); /* as after a checkpoint; the caps tests set them on top */
    return e;
}

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

/* Parses body as tenant t1 at `now_s`, precision s; the result must be OK. */
static void parse_ok(const struct engine *e, const char *body, int64_t now_s,
                     struct record_buf *rec, struct ingest_result *res)
{
    ingest_parse(cfg, e, config_find_tenant(cfg, "t1"), body, strlen(body), LP_PRECISION_S,
                 now_s * NS, rec, NULL, res);
    ck_assert_msg(res->status == INGEST_OK, "parse: %s", res->msg);
}

/* A reader of the documented layout, independent of ingest.c's. */
struct cursor {
    const unsigned char *p;
};

static void take(struct cursor *c, void *out, size_t n)
{
    memcpy(out, c->p, n);
    c->p += n;
}

static void take_str(struct cursor *c, char *out)
{
    uint16_t len;
    take(c, &len, sizeof len);
    memcpy(out, c->p, len);
    out[len] = '\0';
    c->p += len;
}

/* ---------------------------------------------------------------- */
/* Samples records                                                   */

START_TEST(test_samples_record_has_the_documented_layout)
{
    struct engine *e = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    /* W is divided by 1000 into kW; the line without a timestamp takes the
     * time of receipt truncated to the precision (now is T0 + 60.75 s, so
     * T0 + 60 s); the cpu line is counted and ignored. */
    const char *body = "power,cluster=c1,meter=a kw=40 1740758400\n"
                       "cpu,host=x usage=3 1740758400\n"
                       "power,cluster=c1,meter=b w=1500i 1740758430\n"
                       "power,cluster=c1 kwh=12.5\n";
    ingest_parse(cfg, e, config_find_tenant(cfg, "t1"), body, strlen(body), LP_PRECISION_S,
                 (T0 + 60) * NS + 750000000, &rec, NULL, &res);
    ck_assert_msg(res.status == INGEST_OK, "parse: %s", res.msg);
    ck_assert_uint_eq(res.samples, 3);
    ck_assert_uint_eq(res.other_lines, 1);
    /* 8 + 4 header; per sample 2 + 2 ("c1") + 2 + meter + 1 + 8 + 8:
     * 23 + 1 ("a"), 23 + 1 ("b"), 23 + 4 ("main") = 75. */
    ck_assert_uint_eq(rec.len, 12 + 75);

    struct cursor c = {rec.p};
    int64_t now_ns;
    uint32_t n;
    take(&c, &now_ns, sizeof now_ns);
    take(&c, &n, sizeof n);
    ck_assert_int_eq(now_ns, (T0 + 60) * NS + 750000000);
    ck_assert_uint_eq(n, 3);
    static const struct {
        const char *meter;
        uint8_t kind;
        int64_t ts_ns;
        double value;
    } want[] = {
        {"a", SAMPLE_POWER, T0 * NS, 40},
        {"b", SAMPLE_POWER, (T0 + 30) * NS, 1.5},
        {"main", SAMPLE_COUNTER, (T0 + 60) * NS, 12.5},
    };
    for (size_t i = 0; i < 3; i++) {
        char cluster[64], meter[64];
        uint8_t kind;
        int64_t ts_ns;
        double value;
        take_str(&c, cluster);
        take_str(&c, meter);
        take(&c, &kind, 1);
        take(&c, &ts_ns, sizeof ts_ns);
        take(&c, &value, sizeof value);
        ck_assert_str_eq(cluster, "c1");
        ck_assert_str_eq(meter, want[i].meter);
        ck_assert_uint_eq(kind, want[i].kind);
        ck_assert_int_eq(ts_ns, want[i].ts_ns);
        ck_assert_double_eq(value, want[i].value);
    }
    ck_assert_ptr_eq(c.p, rec.p + rec.len);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_samples_record_round_trips_into_the_engine)
{
    /* c1 at 40 kW from T0 to T0 + 15 min, every 5 min (max_gap): one row
     * of 40 x 0.25 h = 10 kWh; the sample at T0 + 900 only touches the next
     * interval. */
    struct engine *parser = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    parse_ok(parser,
             "power,cluster=c1 kw=40 1740758400\npower,cluster=c1 kw=40 1740758700\n"
             "power,cluster=c1 kw=40 1740759000\npower,cluster=c1 kw=40 1740759300\n",
             T0 + 900, &rec, &res);
    engine_free(parser);

    struct engine *e = new_engine();
    struct error err;
    ck_assert_msg(ingest_apply(e, rec.p, rec.len, &err), "apply: %s", err.msg);
    struct engine_stats st;
    engine_stats(e, &st);
    ck_assert_uint_eq(st.accepted, 4);
    /* The same record again: the same meter, timestamps and values, so
     * all four are duplicates (a conflict would mean a value changed). */
    ck_assert(ingest_apply(e, rec.p, rec.len, &err));
    engine_stats(e, &st);
    ck_assert_uint_eq(st.accepted, 4);
    ck_assert_uint_eq(st.duplicates, 4);
    ck_assert_uint_eq(st.conflicts, 0);
    engine_finish(e, (T0 + 900) * NS);
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_str_eq(rows[0].cluster, "c1");
    ck_assert_int_eq(rows[0].start_s, T0);
    ck_assert_int_eq(rows[0].kwh_micro, 10000000);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_meter_handles_from_the_parse_apply_as_the_names_do)
{
    /* Meters a (known before the request) and b (new in it); the second
     * request sees both known. The handles ingest_parse gives point at the
     * meters the names name: the engine fed with them and the engine fed
     * by name bill the same. */
    const char *first = "power,cluster=c1,meter=a kw=40 1740758400\n";
    const char *second = "power,cluster=c1,meter=b kw=20 1740758400\n"
                         "power,cluster=c1,meter=a kw=40 1740758700\n"
                         "power,cluster=c1,meter=b kw=20 1740758700\n"
                         "power,cluster=c1,meter=a kw=40 1740759000\n"
                         "power,cluster=c1,meter=b kw=20 1740759000\n"
                         "power,cluster=c1,meter=a kw=40 1740759300\n"
                         "power,cluster=c1,meter=b kw=20 1740759300\n";
    int64_t kwh[2];
    for (int hinted = 0; hinted < 2; hinted++) {
        struct engine *e = new_engine();
        struct record_buf rec = {0};
        struct ingest_meters meters = {0};
        struct ingest_result res;
        struct error err;
        const char *bodies[2] = {first, second};
        for (int k = 0; k < 2; k++) {
            ingest_parse(cfg, e, config_find_tenant(cfg, "t1"), bodies[k], strlen(bodies[k]),
                         LP_PRECISION_S, (T0 + 900) * NS, &rec, hinted ? &meters : NULL, &res);
            ck_assert_msg(res.status == INGEST_OK, "parse: %s", res.msg);
            if (hinted) {
                ck_assert_uint_eq(meters.n, res.samples);
                /* a is known in the second request, b is new */
                if (k == 1) {
                    ck_assert_uint_eq(meters.v[0], ENGINE_NO_METER);
                    ck_assert_uint_ne(meters.v[1], ENGINE_NO_METER);
                }
            }
            ck_assert_msg(ingest_apply_meters(e, rec.p, rec.len, hinted ? &meters : NULL, &err),
                          "apply: %s", err.msg);
        }
        engine_finish(e, (T0 + 900) * NS);
        ck_assert_uint_eq(n_rows, 1);
        kwh[hinted] = rows[0].kwh_micro;
        record_buf_free(&rec);
        ingest_meters_free(&meters);
        engine_free(e);
    }
    ck_assert_int_eq(kwh[0], 15000000); /* (40 + 20) x 0.25 h */
    ck_assert_int_eq(kwh[1], kwh[0]);
}
END_TEST

START_TEST(test_empty_body_is_an_empty_samples_record)
{
    struct engine *e = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    parse_ok(e, "# only a comment\n\n", T0, &rec, &res);
    ck_assert_uint_eq(res.samples, 0);
    ck_assert_uint_eq(rec.len, 12);
    struct error err;
    ck_assert(ingest_apply(e, rec.p, rec.len, &err));
    struct engine_stats st;
    engine_stats(e, &st);
    ck_assert_uint_eq(st.accepted, 0);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_truncated_samples_record_does_not_decode)
{
    struct engine *parser = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    parse_ok(parser,
             "power,cluster=c1,meter=a kw=40 1740758400\npower,cluster=c1 kwh=3 1740758460\n",
             T0 + 60, &rec, &res);
    engine_free(parser);
    /* Every proper prefix, and the record with a byte too many. */
    unsigned char *longer = malloc(rec.len + 1);
    memcpy(longer, rec.p, rec.len);
    longer[rec.len] = 0;
    for (size_t len = 0; len <= rec.len + 1; len++) {
        if (len == rec.len)
            continue;
        struct engine *e = new_engine();
        struct error err;
        ck_assert_msg(!ingest_apply(e, longer, len, &err), "%zu of %zu bytes decoded", len,
                      rec.len);
        char want[96];
        snprintf(want, sizeof want, "a samples record of %zu bytes does not decode", len);
        ck_assert_str_eq(err.msg, want);
        /* Nothing of a record that does not decode is applied, not even the
         * samples before the damage. */
        struct engine_stats st;
        engine_stats(e, &st);
        ck_assert_uint_eq(st.accepted + st.quarantined, 0);
        engine_free(e);
    }
    free(longer);
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_corrupt_name_length_does_not_decode)
{
    struct engine *parser = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    parse_ok(parser, "power,cluster=c1 kw=40 1740758400\n", T0, &rec, &res);
    engine_free(parser);
    /* The cluster's u16 length, right after the 12-byte header, claims
     * more bytes than the record and than any name can have. */
    uint16_t bad = 0xffff;
    memcpy(rec.p + 12, &bad, sizeof bad);
    /* 12 + 2 + 2 ("c1") + 2 + 4 ("main") + 1 + 8 + 8 */
    ck_assert_uint_eq(rec.len, 39);
    struct engine *e = new_engine();
    struct error err;
    ck_assert(!ingest_apply(e, rec.p, rec.len, &err));
    ck_assert_str_eq(err.msg, "a samples record of 39 bytes does not decode");
    /* A count larger than the samples present. */
    uint32_t n = 2;
    bad = 2;
    memcpy(rec.p + 12, &bad, sizeof bad);
    memcpy(rec.p + 8, &n, sizeof n);
    ck_assert(!ingest_apply(e, rec.p, rec.len, &err));
    ck_assert_str_eq(err.msg, "a samples record of 39 bytes does not decode");
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_sample_for_a_removed_cluster_is_quarantined_not_lost)
{
    /* A record accepted for c2, replayed under a config without c2 (a
     * reload removed it): decoded fine, the sample is quarantined. */
    struct engine *parser = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    const char *body = "power,cluster=c2 kw=1 1740758400\n";
    ingest_parse(cfg, parser, config_find_tenant(cfg, "t2"), body, strlen(body), LP_PRECISION_S,
                 T0 * NS, &rec, NULL, &res);
    ck_assert_msg(res.status == INGEST_OK, "parse: %s", res.msg);
    engine_free(parser);
    /* Rename c2 in the record to a cluster no config has. */
    ck_assert_int_eq(memcmp(rec.p + 14, "c2", 2), 0);
    memcpy(rec.p + 14, "c9", 2);
    struct engine *e = new_engine();
    struct error err;
    ck_assert_msg(ingest_apply(e, rec.p, rec.len, &err), "apply: %s", err.msg);
    ck_assert_uint_eq(n_quarantined, 1);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_refused_body_names_its_first_offending_line)
{
    struct engine *e = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    const char *body = "power,cluster=c1 kw=40 1740758400\npower,cluster=c2 kw=1 1740758400\n";
    ingest_parse(cfg, e, config_find_tenant(cfg, "t1"), body, strlen(body), LP_PRECISION_S, T0 * NS,
                 &rec, NULL, &res);
    ck_assert(res.status == INGEST_FORBIDDEN);
    ck_assert_str_eq(res.msg, "line 2: cluster \"c2\" belongs to another tenant");
    ck_assert_uint_eq(res.samples, 0);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Tick records                                                      */

START_TEST(test_tick_record_round_trips)
{
    struct record_buf rec = {0};
    ingest_encode_tick((T0 + 1021) * NS, &rec);
    ck_assert_uint_eq(rec.len, 8);
    int64_t now_ns;
    memcpy(&now_ns, rec.p, sizeof now_ns);
    ck_assert_int_eq(now_ns, (T0 + 1021) * NS);

    /* c1's samples from T0 to T0 + 7.5 min arrive at T0 + 450 s and do not
     * reach the interval's end. A tick 60 s later closes nothing; one 121 s
     * later (grace 2m has passed) makes the meter silent and T0's interval
     * closes: 40 kW x 0.125 h = 5 kWh. */
    struct engine *e = new_engine();
    struct record_buf samples = {0};
    struct ingest_result res;
    parse_ok(e,
             "power,cluster=c1 kw=40 1740758400\npower,cluster=c1 kw=40 1740758625\n"
             "power,cluster=c1 kw=40 1740758850\n",
             T0 + 450, &samples, &res);
    struct error err;
    ck_assert(ingest_apply(e, samples.p, samples.len, &err));
    ck_assert_uint_eq(n_rows, 0);
    ingest_encode_tick((T0 + 510) * NS, &rec);
    ck_assert(ingest_apply_tick(e, rec.p, rec.len, &err));
    ck_assert_uint_eq(n_rows, 0);
    ingest_encode_tick((T0 + 571) * NS, &rec);
    ck_assert(ingest_apply_tick(e, rec.p, rec.len, &err));
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_int_eq(rows[0].kwh_micro, 5000000);
    record_buf_free(&samples);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

/* The engine computes with a record's clock (now - a meter's last
 * arrival): a clock the daemon could not have read is refused, in a tick
 * and in a samples record alike. */
START_TEST(test_record_with_an_implausible_clock_does_not_decode)
{
    struct engine *e = new_engine();
    struct record_buf rec = {0};
    struct error err;
    ingest_encode_tick(INT64_MAX - 5, &rec);
    ck_assert(!ingest_apply_tick(e, rec.p, rec.len, &err));
    ck_assert_str_eq(err.msg, "a tick record of 8 bytes does not decode");
    ingest_encode_tick(-1, &rec);
    ck_assert(!ingest_apply_tick(e, rec.p, rec.len, &err));
    ingest_encode_tick((T0 + 60) * NS, &rec);
    ck_assert(ingest_apply_tick(e, rec.p, rec.len, &err));
    struct record_buf samples = {0};
    struct ingest_result res;
    parse_ok(e, "power,cluster=c1 kw=40 1740758400\n", T0 + 60, &samples, &res);
    int64_t far = INT64_MIN + 1;
    memcpy(samples.p, &far, sizeof far); /* the record's clock */
    ck_assert(!ingest_apply(e, samples.p, samples.len, &err));
    struct engine_stats st;
    engine_stats(e, &st);
    ck_assert_uint_eq(st.accepted, 0);
    record_buf_free(&samples);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

/* The daemon checks its wall clock with ingest_clock_plausible before it
 * takes a write or journals a tick; replay refuses exactly the clocks it
 * refuses, so whatever the live path journals replays. The edges:
 * 2000-01-01T00:00:00Z is the first clock taken, 2200-01-01T00:00:00Z the
 * first refused. */
START_TEST(test_replay_refuses_exactly_the_clocks_the_door_refuses)
{
    static const int64_t clocks[] = {
        INGEST_CLOCK_MIN_NS - 1,  INGEST_CLOCK_MIN_NS, INGEST_CLOCK_MAX_NS - 1,
        INGEST_CLOCK_MAX_NS,      928195200 * NS, /* 1999-06-01 */
        (int64_t)4102444800 * NS,                 /* 2100-01-01 */
    };
    static const bool taken[] = {false, true, true, false, false, true};
    ck_assert_int_eq(INGEST_CLOCK_MIN_NS, (int64_t)946684800 * NS);
    ck_assert_int_eq(INGEST_CLOCK_MAX_NS, (int64_t)7258118400 * NS);
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        ck_assert_msg(ingest_clock_plausible(clocks[i]) == taken[i], "clock %zu", i);
        struct engine *e = new_engine();
        struct record_buf rec = {0};
        struct error err;
        ingest_encode_tick(clocks[i], &rec);
        ck_assert(ingest_apply_tick(e, rec.p, rec.len, &err) == taken[i]);
        struct ingest_result res;
        parse_ok(e, "power,cluster=c1 kw=40 1740758400\n", T0 + 60, &rec, &res);
        memcpy(rec.p, &clocks[i], sizeof clocks[i]); /* the record's clock */
        ck_assert(ingest_apply(e, rec.p, rec.len, &err) == taken[i]);
        record_buf_free(&rec);
        engine_free(e);
    }
}
END_TEST

START_TEST(test_tick_record_of_another_size_does_not_decode)
{
    struct engine *e = new_engine();
    unsigned char bytes[9] = {0};
    struct error err;
    ck_assert(!ingest_apply_tick(e, bytes, 7, &err));
    ck_assert_str_eq(err.msg, "a tick record of 7 bytes does not decode");
    ck_assert(!ingest_apply_tick(e, bytes, 9, &err));
    ck_assert_str_eq(err.msg, "a tick record of 9 bytes does not decode");
    ck_assert(!ingest_apply_tick(e, bytes, 0, &err));
    ck_assert_str_eq(err.msg, "a tick record of 0 bytes does not decode");
    engine_free(e);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Caps records                                                      */

static const struct cap_consumed two_caps[] = {
    {"t1", "pa", 2025, 9990},
    {"t2", "pa", 2026, 7},
};

START_TEST(test_caps_record_has_the_documented_layout)
{
    struct record_buf rec = {0};
    ingest_encode_caps(two_caps, 2, &rec);
    /* u32 count, then per cap u16 + tenant, u16 + programme, i32 year,
     * i64 consumed: 4 + 2 x (4 + 4 + 4 + 8). */
    ck_assert_uint_eq(rec.len, 4 + 2 * 20);
    struct cursor c = {rec.p};
    uint32_t n;
    take(&c, &n, sizeof n);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < 2; i++) {
        char tenant[64], programme[64];
        int32_t year;
        int64_t consumed;
        take_str(&c, tenant);
        take_str(&c, programme);
        take(&c, &year, sizeof year);
        take(&c, &consumed, sizeof consumed);
        ck_assert_str_eq(tenant, two_caps[i].tenant);
        ck_assert_str_eq(programme, two_caps[i].programme);
        ck_assert_int_eq(year, two_caps[i].year);
        ck_assert_int_eq(consumed, two_caps[i].consumed_cny4);
    }
    ck_assert_ptr_eq(c.p, rec.p + rec.len);
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_caps_record_round_trips_into_the_engine)
{
    /* t1 has consumed 0.9990 of pa's 1 CNY in 2025. c1's 10 kWh at 0.25
     * would get 0.5 x 0.75 x 2.5000 = 0.9375; what is left is 0.0010. */
    struct record_buf rec = {0};
    ingest_encode_caps(two_caps, 2, &rec);
    struct engine *e = new_engine();
    struct error err;
    ck_assert_msg(ingest_apply_caps(e, rec.p, rec.len, &err), "caps: %s", err.msg);
    struct record_buf samples = {0};
    struct ingest_result res;
    parse_ok(e,
             "power,cluster=c1 kw=40 1740758400\npower,cluster=c1 kw=40 1740758700\n"
             "power,cluster=c1 kw=40 1740759000\npower,cluster=c1 kw=40 1740759300\n",
             T0 + 900, &samples, &res);
    ck_assert(ingest_apply(e, samples.p, samples.len, &err));
    engine_finish(e, (T0 + 900) * NS);
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_int_eq(rows[0].subsidy_cny4, 10);
    record_buf_free(&samples);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_caps_record_ends_the_engines_wait_for_the_caps)
{
    /* A daemon started empty: samples are taken, nothing closes; the caps
     * record sets t1's 0.9990 of 1 CNY and closes what waited, with what
     * is left of the cap: 0.0010 (not 0.9375). */
    n_rows = n_quarantined = 0;
    struct engine_sink sink = {NULL, on_billing, NULL, on_quarantine};
    struct engine *e = engine_new(cfg, &sink);
    struct record_buf samples = {0};
    struct ingest_result res;
    parse_ok(e,
             "power,cluster=c1 kw=40 1740758400\npower,cluster=c1 kw=40 1740758700\n"
             "power,cluster=c1 kw=40 1740759000\npower,cluster=c1 kw=40 1740759300\n",
             T0 + 900, &samples, &res);
    struct error err;
    ck_assert(ingest_apply(e, samples.p, samples.len, &err));
    engine_finish(e, (T0 + 900) * NS);
    ck_assert_uint_eq(n_rows, 0);
    ck_assert(engine_waiting_for_caps(e));
    struct record_buf rec = {0};
    ingest_encode_caps(two_caps, 2, &rec);
    ck_assert_msg(ingest_apply_caps(e, rec.p, rec.len, &err), "caps: %s", err.msg);
    ck_assert(!engine_waiting_for_caps(e));
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_int_eq(rows[0].subsidy_cny4, 10);
    record_buf_free(&samples);
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_empty_caps_record_round_trips)
{
    struct record_buf rec = {0};
    ingest_encode_caps(NULL, 0, &rec);
    ck_assert_uint_eq(rec.len, 4);
    struct engine *e = new_engine();
    struct error err;
    ck_assert(ingest_apply_caps(e, rec.p, rec.len, &err));
    record_buf_free(&rec);
    engine_free(e);
}
END_TEST

START_TEST(test_truncated_caps_record_does_not_decode)
{
    struct record_buf rec = {0};
    ingest_encode_caps(two_caps, 2, &rec);
    unsigned char *longer = malloc(rec.len + 1);
    memcpy(longer, rec.p, rec.len);
    longer[rec.len] = 0;
    for (size_t len = 0; len <= rec.len + 1; len++) {
        if (len == rec.len)
            continue;
        struct engine *e = new_engine();
        struct error err;
        ck_assert_msg(!ingest_apply_caps(e, longer, len, &err), "%zu of %zu bytes decoded", len,
                      rec.len);
        char want[96];
        snprintf(want, sizeof want, "a caps record of %zu bytes does not decode", len);
        ck_assert_str_eq(err.msg, want);
        engine_free(e);
    }
    free(longer);
    record_buf_free(&rec);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("records");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_samples_record_has_the_documented_layout);
    tcase_add_test(tc, test_samples_record_round_trips_into_the_engine);
    tcase_add_test(tc, test_meter_handles_from_the_parse_apply_as_the_names_do);
    tcase_add_test(tc, test_empty_body_is_an_empty_samples_record);
    tcase_add_test(tc, test_truncated_samples_record_does_not_decode);
    tcase_add_test(tc, test_corrupt_name_length_does_not_decode);
    tcase_add_test(tc, test_sample_for_a_removed_cluster_is_quarantined_not_lost);
    tcase_add_test(tc, test_refused_body_names_its_first_offending_line);
    tcase_add_test(tc, test_tick_record_round_trips);
    tcase_add_test(tc, test_tick_record_of_another_size_does_not_decode);
    tcase_add_test(tc, test_record_with_an_implausible_clock_does_not_decode);
    tcase_add_test(tc, test_replay_refuses_exactly_the_clocks_the_door_refuses);
    tcase_add_test(tc, test_caps_record_has_the_documented_layout);
    tcase_add_test(tc, test_caps_record_round_trips_into_the_engine);
    tcase_add_test(tc, test_caps_record_ends_the_engines_wait_for_the_caps);
    tcase_add_test(tc, test_empty_caps_record_round_trips);
    tcase_add_test(tc, test_truncated_caps_record_does_not_decode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ingest_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
