/*
 * Unit tests for the journal record codec of daemon/ingest.c: a request body
 * becomes a samples record (ingest_parse) with exactly the bytes ingest.h
 * documents, and that record pushes the same samples into an engine
 * (ingest_apply); tick, caps and reprice records round trip too; a
 * truncated or corrupt payload of each kind is refused with "... does not
 * decode" (a reprice record's message also says what is wrong). A backfill
 * record (a plan, its quarantined samples, the released ids) round trips
 * field by field, and every truncation, trailing byte, count too large and
 * unknown fate or kind is refused, leaving the record empty.
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
    struct engine_sink sink = {NULL, on_billing, NULL, on_quarantine, NULL};
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

/* One request parsed with and without the cache against the same engine
 * must give the same record bytes, result and handles. */
static void same_with_cache(struct engine *e, struct lp_cache *cache, const char *tenant,
                            const char *body)
{
    struct record_buf plain = {0}, cached = {0};
    struct ingest_meters plain_m = {0}, cached_m = {0};
    struct ingest_result plain_r, cached_r;
    const struct tenant *t = config_find_tenant(cfg, tenant);
    ingest_parse(cfg, e, t, body, strlen(body), LP_PRECISION_S, (T0 + 900) * NS, &plain, &plain_m,
                 &plain_r);
    ingest_parse_cached(cfg, e, t, body, strlen(body), LP_PRECISION_S, (T0 + 900) * NS, cache,
                        &cached, &cached_m, &cached_r);
    ck_assert_int_eq(cached_r.status, plain_r.status);
    ck_assert_str_eq(cached_r.msg, plain_r.msg);
    ck_assert_uint_eq(cached_r.samples, plain_r.samples);
    ck_assert_uint_eq(cached_r.other_lines, plain_r.other_lines);
    ck_assert_uint_eq(cached.len, plain.len);
    ck_assert(plain.len == 0 || memcmp(cached.p, plain.p, plain.len) == 0);
    ck_assert_uint_eq(cached_m.n, plain_m.n);
    ck_assert(plain_m.n == 0 || memcmp(cached_m.v, plain_m.v, plain_m.n * sizeof *plain_m.v) == 0);
    struct error err;
    if (plain_r.status == INGEST_OK)
        ck_assert_msg(ingest_apply_meters(e, plain.p, plain.len, &plain_m, &err), "apply: %s",
                      err.msg);
    record_buf_free(&plain);
    record_buf_free(&cached);
    ingest_meters_free(&plain_m);
    ingest_meters_free(&cached_m);
}

START_TEST(test_cached_parse_equals_the_plain_one)
{
    /* Requests in turn against one engine, each parsed both ways: the
     * cache's keys (and their handles, once the meters exist) come from
     * the earlier requests. Among them a known key from the wrong tenant, a
     * known meter that switches kind, and a known key with a bad value. */
    static const struct {
        const char *tenant, *body;
    } steps[] = {
        {"t1", "power,cluster=c1,meter=a kw=40 1740758400\npower,cluster=c1,meter=b kw=20 "
               "1740758400\n"},
        {"t1", "power,cluster=c1,meter=a kw=40 1740758700\npower,cluster=c1,meter=b kw=20 "
               "1740758700\npower,cluster=c1,meter=c kwh=5 1740758700\n"},
        {"t2", "power,cluster=c2 kw=1 1740758700\npower,cluster=c1,meter=a kw=40 1740759000\n"},
        {"t1", "power,cluster=c1,meter=a kw=40 1740759000\npower,cluster=c1,meter=c kw=5 "
               "1740759000\n"},
        {"t1", "power,cluster=c1,meter=b kw=-2 1740759000\n"},
        {"t1", "power,cluster=c1,meter=a kw=4e10 1740759000\n"},
        {"t1", "power,cluster=c1,meter=a kw=40 1740759000\npower,cluster=c1,meter=b kw=20 "
               "1740759000\npower,cluster=c1,meter=c kwh=6 1740759000\n"},
        {"t1", "power,cluster=c9,meter=a kw=40 1740759000\n"},
    };
    struct engine *e = new_engine();
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        same_with_cache(e, cache, steps[i].tenant, steps[i].body);
    engine_free(e);
    /* A new engine with the old engine's cache: it gets the meters in
     * another order, so a remembered handle of a (0 before) is c's (a
     * counter) here, and must not be taken for a's. */
    e = new_engine();
    same_with_cache(e, cache, "t1",
                    "power,cluster=c1,meter=c kwh=7 1740759300\n"
                    "power,cluster=c1,meter=b kw=1 1740759300\npower,cluster=c1,meter=a kw=1 "
                    "1740759300\n");
    same_with_cache(e, cache, "t1",
                    "power,cluster=c1,meter=a kw=2 1740759600\npower,cluster=c1,meter=c kwh=8 "
                    "1740759600\n");
    engine_free(e);
    lp_cache_free(cache);
}
END_TEST

START_TEST(test_cache_keys_follow_the_meter_limits)
{
    /* Twice what the tenants may have: t1 and t2 at the default 100,000. */
    ck_assert_uint_eq(ingest_cache_keys(cfg), 400000);
    struct errors errs = {0};
    char text[sizeof config_text + 64];
    snprintf(text, sizeof text, "%s", config_text);
    char *at = strstr(text, "[tenant t2]");
    ck_assert_ptr_nonnull(at);
    memmove(at + 16, at, strlen(at) + 1);
    memcpy(at, "max_meters = 50\n", 16);
    struct config *small = config_from_string("small.conf", text, &errs);
    ck_assert_msg(small, "config: %s", errs.n ? errs.msgs[0] : "?");
    ck_assert_uint_eq(ingest_cache_keys(small), 2 * (50 + 100000));
    config_free(small);
    errors_free(&errs);
}
END_TEST

START_TEST(test_a_handle_is_checked_against_the_names)
{
    struct engine *e = new_engine();
    struct record_buf rec = {0};
    struct ingest_result res;
    parse_ok(e, "power,cluster=c1,meter=a kw=40 1740758400\n", T0, &rec, &res);
    struct error err;
    ck_assert(ingest_apply(e, rec.p, rec.len, &err));
    size_t a = engine_meter_handle(e, "c1", "a");
    ck_assert_uint_ne(a, ENGINE_NO_METER);
    ck_assert(engine_meter_is(e, a, "c1", "a"));
    ck_assert(!engine_meter_is(e, a, "c1", "b"));
    ck_assert(!engine_meter_is(e, a, "c2", "a"));
    ck_assert(!engine_meter_is(e, a, "c", "1a"));
    ck_assert(!engine_meter_is(e, a + 1, "c1", "a"));
    ck_assert(!engine_meter_is(e, ENGINE_NO_METER - 1, "c1", "a"));
    record_buf_free(&rec);
    engine_free(e);
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
    struct engine_sink sink = {NULL, on_billing, NULL, on_quarantine, NULL};
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

/* ---------------------------------------------------------------- */
/* Reprice records                                                   */

static const struct reprice_paid interval_lines[] = {{"pa", 750}, {"pb", -25}};
static const struct reprice_paid month_lines[] = {{"pa", 1200}};

/* c1, March 2025: 00:00 local (in range, 1 kWh, paid by pa and pb) and
 * 00:15 (out of range), and the month's demand row. */
static struct reprice_chunk sample_chunk(struct reprice_interval iv[2])
{
    iv[0] = (struct reprice_interval){.start_s = T0,
                                      .revision = 2,
                                      .in_range = true,
                                      .kwh_micro = 1000000,
                                      .energy_charge_cny4 = 2000,
                                      .surcharge_cny4 = 200,
                                      .subsidy_cny4 = 725,
                                      .net_cny4 = 1475,
                                      .missing_s = 30,
                                      .n_paid = 2,
                                      .paid = interval_lines};
    iv[1] = (struct reprice_interval){.start_s = T0 + 900,
                                      .kwh_micro = 2000000,
                                      .energy_charge_cny4 = 5000,
                                      .surcharge_cny4 = 400,
                                      .net_cny4 = 5400};
    return (struct reprice_chunk){
        .cluster = "c1",
        .month_day = (int32_t)((T0 + 8 * 3600) / 86400),
        .n_intervals = 2,
        .intervals = iv,
        .month = {.has_row = true,
                  .revision = 1,
                  .max_kw_micro = 8000000,
                  .billing_kw_micro = 8000000,
                  .max_interval_start_s = T0 + 900,
                  .charge_cny4 = 2400000,
                  .subsidy_cny4 = 1200,
                  .net_cny4 = 2398800,
                  .n_paid = 1,
                  .paid = month_lines},
    };
}

static void take_lines(struct cursor *c, const struct reprice_paid *want, size_t n)
{
    uint16_t count;
    take(c, &count, sizeof count);
    ck_assert_uint_eq(count, n);
    for (size_t k = 0; k < n; k++) {
        char programme[64];
        int64_t amount;
        take_str(c, programme);
        take(c, &amount, sizeof amount);
        ck_assert_str_eq(programme, want[k].programme);
        ck_assert_int_eq(amount, want[k].amount_cny4);
    }
}

START_TEST(test_reprice_record_has_the_documented_layout)
{
    struct reprice_interval iv[2];
    struct reprice_chunk ch = sample_chunk(iv);
    struct record_buf rec = {0};
    ingest_encode_reprice(&ch, &rec);
    struct cursor c = {rec.p};
    char cluster[64];
    int32_t month_day, revision;
    uint32_t n;
    take_str(&c, cluster);
    take(&c, &month_day, sizeof month_day);
    take(&c, &n, sizeof n);
    ck_assert_str_eq(cluster, "c1");
    ck_assert_int_eq(month_day, ch.month_day);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < 2; i++) {
        int64_t start, v[6];
        uint8_t in_range;
        take(&c, &start, sizeof start);
        take(&c, &revision, sizeof revision);
        take(&c, &in_range, 1);
        take(&c, v, sizeof v);
        ck_assert_int_eq(start, iv[i].start_s);
        ck_assert_int_eq(revision, iv[i].revision);
        ck_assert_uint_eq(in_range, iv[i].in_range);
        ck_assert_int_eq(v[0], iv[i].kwh_micro);
        ck_assert_int_eq(v[1], iv[i].energy_charge_cny4);
        ck_assert_int_eq(v[2], iv[i].surcharge_cny4);
        ck_assert_int_eq(v[3], iv[i].subsidy_cny4);
        ck_assert_int_eq(v[4], iv[i].net_cny4);
        ck_assert_int_eq(v[5], iv[i].missing_s);
        take_lines(&c, iv[i].paid, iv[i].n_paid);
    }
    uint8_t has_row;
    int64_t m[6];
    take(&c, &has_row, 1);
    take(&c, &revision, sizeof revision);
    take(&c, m, sizeof m);
    ck_assert_uint_eq(has_row, 1);
    ck_assert_int_eq(revision, 1);
    ck_assert_int_eq(m[0], 8000000);
    ck_assert_int_eq(m[1], 8000000);
    ck_assert_int_eq(m[2], T0 + 900);
    ck_assert_int_eq(m[3], 2400000);
    ck_assert_int_eq(m[4], 1200);
    ck_assert_int_eq(m[5], 2398800);
    take_lines(&c, month_lines, 1);
    ck_assert_ptr_eq(c.p, rec.p + rec.len);
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_reprice_record_round_trips)
{
    struct reprice_interval iv[2];
    struct reprice_chunk ch = sample_chunk(iv);
    struct record_buf rec = {0}, again = {0};
    ingest_encode_reprice(&ch, &rec);
    struct reprice_record got;
    struct error err;
    ck_assert_msg(ingest_decode_reprice(rec.p, rec.len, &got, &err), "%s", err.msg);
    ck_assert_str_eq(got.chunk.cluster, "c1");
    ck_assert_uint_eq(got.chunk.n_intervals, 2);
    ck_assert_uint_eq(got.chunk.intervals[0].n_paid, 2);
    ck_assert_str_eq(got.chunk.intervals[0].paid[1].programme, "pb");
    ck_assert_int_eq(got.chunk.intervals[0].paid[1].amount_cny4, -25);
    ck_assert_uint_eq(got.chunk.intervals[1].n_paid, 0);
    ck_assert(!got.chunk.intervals[1].in_range);
    ck_assert_uint_eq(got.chunk.month.n_paid, 1);
    ck_assert_str_eq(got.chunk.month.paid[0].programme, "pa");
    ingest_encode_reprice(&got.chunk, &again);
    ck_assert_uint_eq(again.len, rec.len);
    ck_assert(memcmp(again.p, rec.p, rec.len) == 0);
    reprice_record_free(&got);
    record_buf_free(&rec);
    record_buf_free(&again);
}
END_TEST

START_TEST(test_truncated_reprice_record_says_what_is_wrong)
{
    struct reprice_interval iv[2];
    struct reprice_chunk ch = sample_chunk(iv);
    struct record_buf rec = {0};
    ingest_encode_reprice(&ch, &rec);
    unsigned char *longer = malloc(rec.len + 1);
    memcpy(longer, rec.p, rec.len);
    longer[rec.len] = 0;
    for (size_t len = 0; len <= rec.len + 1; len++) {
        if (len == rec.len)
            continue;
        struct reprice_record got;
        struct error err;
        ck_assert_msg(!ingest_decode_reprice(longer, len, &got, &err), "%zu of %zu bytes decoded",
                      len, rec.len);
        char want[96];
        snprintf(want, sizeof want, "a reprice record of %zu bytes does not decode: ", len);
        ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
        ck_assert_ptr_null(got.cluster);
    }
    struct reprice_record got;
    struct error err;
    ck_assert(!ingest_decode_reprice(longer, 0, &got, &err));
    ck_assert_str_eq(err.msg, "a reprice record of 0 bytes does not decode: the cluster is cut "
                              "short or empty");
    ck_assert(!ingest_decode_reprice(longer, rec.len + 1, &got, &err));
    char want[128];
    snprintf(want, sizeof want,
             "a reprice record of %zu bytes does not decode: 1 bytes left over after the month",
             rec.len + 1);
    ck_assert_str_eq(err.msg, want);
    /* An interval count the bytes cannot hold is refused before anything
     * is allocated for it. */
    uint32_t huge = 100000000;
    memcpy(longer + 2 + 2 + 4, &huge, sizeof huge);
    ck_assert(!ingest_decode_reprice(longer, rec.len, &got, &err));
    ck_assert_msg(strstr(err.msg, ": 100000000 intervals cannot fit in the") != NULL, "%s",
                  err.msg);
    free(longer);
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_reprice_record_with_a_bad_flag_does_not_decode)
{
    struct reprice_interval iv[2];
    struct reprice_chunk ch = sample_chunk(iv);
    struct record_buf rec = {0};
    ingest_encode_reprice(&ch, &rec);
    size_t in_range_at = 2 + 2 + 4 + 4 + 8 + 4;
    rec.p[in_range_at] = 7;
    struct reprice_record got;
    struct error err;
    ck_assert(!ingest_decode_reprice(rec.p, rec.len, &got, &err));
    ck_assert_msg(strstr(err.msg, ": interval 1 has in_range 7 where 0 or 1 belongs") != NULL, "%s",
                  err.msg);
    record_buf_free(&rec);
}
END_TEST

/* The ledger says 00:00 local cost 0.2000 for 1 kWh; the config prices
 * valley at 0.25: energy 0.2500 (+0.0500), surcharge 0.0200 (unchanged),
 * pa pays 0.5 x 0.75 x 0.2500 = 0.09375 -> 0.0938 half-even (+0.0188
 * against the 0.0750 the ledger holds), net 0.2500 + 0.0200 - 0.0938 =
 * 0.1762 (+0.0312). One adjustment row of kWh 0. */
START_TEST(test_reprice_record_applies_a_correction)
{
    static const struct reprice_paid paid[] = {{"pa", 750}};
    struct reprice_interval in = {.start_s = T0,
                                  .in_range = true,
                                  .kwh_micro = 1000000,
                                  .energy_charge_cny4 = 2000,
                                  .surcharge_cny4 = 200,
                                  .subsidy_cny4 = 750,
                                  .net_cny4 = 1450,
                                  .n_paid = 1,
                                  .paid = paid};
    struct reprice_chunk ch = {.cluster = "c1",
                               .month_day = (int32_t)((T0 + 8 * 3600) / 86400),
                               .n_intervals = 1,
                               .intervals = &in};
    struct record_buf rec = {0};
    ingest_encode_reprice(&ch, &rec);
    struct engine *e = new_engine();
    struct reprice_effect eff = {0};
    struct error err;
    ck_assert_msg(ingest_apply_reprice(e, rec.p, rec.len, &eff, &err), "%s", err.msg);
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_int_eq(rows[0].start_s, T0);
    ck_assert_int_eq(rows[0].kwh_micro, 0);
    ck_assert_int_eq(rows[0].subsidy_cny4, 188);
    ck_assert_uint_eq(eff.billing_rows, 1);
    ck_assert_uint_eq(eff.intervals, 1);
    ck_assert_int_eq(eff.energy_charge_cny4, 500);
    ck_assert_int_eq(eff.surcharge_cny4, 0);
    ck_assert_int_eq(eff.net_cny4, 312);
    engine_free(e);

    /* A cluster the config does not have: refused, nothing made. */
    ch.cluster = "c9";
    ingest_encode_reprice(&ch, &rec);
    e = new_engine();
    ck_assert(!ingest_apply_reprice(e, rec.p, rec.len, &eff, &err));
    ck_assert_str_eq(err.msg, "cluster c9 is not in the config");
    ck_assert_uint_eq(n_rows, 0);
    engine_free(e);
    record_buf_free(&rec);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Backfill records                                                  */

#define MARCH_DAY ((int32_t)((T0 + 8 * 3600) / 86400))
#define APRIL_DAY (MARCH_DAY + 31)

static const struct backfill_interval bf_intervals[] = {
    {"c1", T0, 1250000, 0},
    {"c1", T0 + 900, 2500000, 60},
    {"c1", T0 + 31 * 86400, 7, 900},
    {"c2", T0, 40000000, 0},
};
static const struct backfill_month bf_months[] = {
    {"c1", MARCH_DAY, BACKFILL_WHOLE},
    {"c1", APRIL_DAY, BACKFILL_MERGED},
    {"c2", MARCH_DAY, BACKFILL_LEFT},
};
static const struct backfill_quarantined bf_quarantined[] = {
    {{"c1", "main", SAMPLE_POWER, (T0 - 60) * NS, 40.5}, "no tariff version in force"},
    {{"c2", "kwh-meter", SAMPLE_COUNTER, T0 *NS + 1, 1234567.125}, "counter went backwards"},
};
static const int64_t bf_released[] = {7, INT64_C(123456789012)};

static struct backfill_plan sample_plan(void)
{
    return (struct backfill_plan){(T0 + 40 * 86400) * NS, (struct backfill_interval *)bf_intervals,
                                  4, (struct backfill_month *)bf_months, 3};
}

/* Where the layout puts the counts and the flags, as an independent
 * reading of ingest.h finds them (checking every field on the way). */
struct bf_offsets {
    size_t groups, group_n[2], months, fate[3], quarantined, kind[2], released, end;
};

static void take_expect_str(struct cursor *c, const char *want)
{
    char got[128];
    take_str(c, got);
    ck_assert_str_eq(got, want);
}

static struct bf_offsets walk_backfill(const struct record_buf *rec)
{
    struct bf_offsets o;
    struct cursor c = {rec->p};
    int64_t now_ns, v[3];
    uint32_t n;
    take(&c, &now_ns, 8);
    ck_assert_int_eq(now_ns, (T0 + 40 * 86400) * NS);
    o.groups = (size_t)(c.p - rec->p);
    take(&c, &n, 4);
    ck_assert_uint_eq(n, 2); /* c1's three intervals, c2's one */
    size_t k = 0;
    for (int g = 0; g < 2; g++) {
        take_expect_str(&c, g ? "c2" : "c1");
        o.group_n[g] = (size_t)(c.p - rec->p);
        take(&c, &n, 4);
        ck_assert_uint_eq(n, g ? 1 : 3);
        for (uint32_t i = 0; i < n; i++, k++) {
            take(&c, v, sizeof v);
            ck_assert_int_eq(v[0], bf_intervals[k].start_s);
            ck_assert_int_eq(v[1], bf_intervals[k].kwh_micro);
            ck_assert_int_eq(v[2], bf_intervals[k].missing_s);
        }
    }
    o.months = (size_t)(c.p - rec->p);
    take(&c, &n, 4);
    ck_assert_uint_eq(n, 3);
    for (size_t i = 0; i < 3; i++) {
        int32_t day;
        uint8_t fate;
        take_expect_str(&c, bf_months[i].cluster);
        take(&c, &day, 4);
        o.fate[i] = (size_t)(c.p - rec->p);
        take(&c, &fate, 1);
        ck_assert_int_eq(day, bf_months[i].month_day);
        ck_assert_uint_eq(fate, (unsigned)bf_months[i].fate);
    }
    o.quarantined = (size_t)(c.p - rec->p);
    take(&c, &n, 4);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct backfill_quarantined *q = &bf_quarantined[i];
        uint8_t kind;
        int64_t ts;
        double value;
        take_expect_str(&c, q->s.cluster);
        take_expect_str(&c, q->s.meter);
        o.kind[i] = (size_t)(c.p - rec->p);
        take(&c, &kind, 1);
        take(&c, &ts, 8);
        take(&c, &value, 8);
        take_expect_str(&c, q->reason);
        ck_assert_uint_eq(kind, (unsigned)q->s.kind);
        ck_assert_int_eq(ts, q->s.ts_ns);
        ck_assert(memcmp(&value, &q->s.value, 8) == 0);
    }
    o.released = (size_t)(c.p - rec->p);
    take(&c, &n, 4);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < 2; i++) {
        int64_t id;
        take(&c, &id, 8);
        ck_assert_int_eq(id, bf_released[i]);
    }
    o.end = (size_t)(c.p - rec->p);
    ck_assert_uint_eq(o.end, rec->len);
    return o;
}

static void encode_sample_backfill(struct record_buf *rec)
{
    struct backfill_plan p = sample_plan();
    ingest_encode_backfill(&p, bf_quarantined, 2, bf_released, 2, rec);
}

/* A refused decode leaves the record as empty as it found it. */
static void expect_empty_record(const struct backfill_record *r)
{
    static const struct backfill_record zero;
    ck_assert(memcmp(r, &zero, sizeof zero) == 0);
}

START_TEST(test_backfill_record_has_the_documented_layout)
{
    struct record_buf rec = {0};
    encode_sample_backfill(&rec);
    walk_backfill(&rec);
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_backfill_record_round_trips)
{
    struct record_buf rec = {0}, again = {0};
    encode_sample_backfill(&rec);
    struct backfill_record got;
    struct error err;
    ck_assert_msg(ingest_decode_backfill(rec.p, rec.len, &got, &err), "%s", err.msg);
    ck_assert_int_eq(got.plan.now_ns, (T0 + 40 * 86400) * NS);
    ck_assert_uint_eq(got.plan.n_intervals, 4);
    for (size_t i = 0; i < 4; i++) {
        const struct backfill_interval *g = &got.plan.intervals[i], *w = &bf_intervals[i];
        ck_assert_str_eq(g->cluster, w->cluster);
        ck_assert_int_eq(g->start_s, w->start_s);
        ck_assert_int_eq(g->kwh_micro, w->kwh_micro);
        ck_assert_int_eq(g->missing_s, w->missing_s);
    }
    /* One copy of a group's cluster for all its intervals. */
    ck_assert_ptr_eq(got.plan.intervals[0].cluster, got.plan.intervals[2].cluster);
    ck_assert_uint_eq(got.plan.n_months, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(got.plan.months[i].cluster, bf_months[i].cluster);
        ck_assert_int_eq(got.plan.months[i].month_day, bf_months[i].month_day);
        ck_assert_int_eq(got.plan.months[i].fate, bf_months[i].fate);
    }
    ck_assert_uint_eq(got.n_quarantined, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct backfill_quarantined *g = &got.quarantined[i], *w = &bf_quarantined[i];
        ck_assert_str_eq(g->s.cluster, w->s.cluster);
        ck_assert_str_eq(g->s.meter, w->s.meter);
        ck_assert_int_eq(g->s.kind, w->s.kind);
        ck_assert_int_eq(g->s.ts_ns, w->s.ts_ns);
        ck_assert(memcmp(&g->s.value, &w->s.value, sizeof g->s.value) == 0);
        ck_assert_str_eq(g->reason, w->reason);
    }
    ck_assert_uint_eq(got.n_released, 2);
    ck_assert_int_eq(got.released[0], 7);
    ck_assert_int_eq(got.released[1], INT64_C(123456789012));
    ingest_encode_backfill(&got.plan, got.quarantined, got.n_quarantined, got.released,
                           got.n_released, &again);
    ck_assert_uint_eq(again.len, rec.len);
    ck_assert(memcmp(again.p, rec.p, rec.len) == 0);
    backfill_record_free(&got);
    expect_empty_record(&got);

    /* An empty plan (a requeue that releases only) round trips too. */
    struct backfill_plan empty = {(T0 + 1) * NS, NULL, 0, NULL, 0};
    ingest_encode_backfill(&empty, NULL, 0, bf_released, 1, &rec);
    ck_assert_uint_eq(rec.len, 8 + 4 + 4 + 4 + 4 + 8);
    ck_assert_msg(ingest_decode_backfill(rec.p, rec.len, &got, &err), "%s", err.msg);
    ck_assert_uint_eq(got.plan.n_intervals + got.plan.n_months + got.n_quarantined, 0);
    ck_assert_uint_eq(got.n_released, 1);
    ck_assert_int_eq(got.released[0], 7);
    backfill_record_free(&got);
    record_buf_free(&rec);
    record_buf_free(&again);
}
END_TEST

START_TEST(test_truncated_backfill_record_does_not_decode)
{
    struct record_buf rec = {0};
    encode_sample_backfill(&rec);
    unsigned char *longer = malloc(rec.len + 1);
    memcpy(longer, rec.p, rec.len);
    longer[rec.len] = 0;
    for (size_t len = 0; len < rec.len; len++) {
        /* Exactly len bytes, so ASan sees a read past them. */
        unsigned char *cut = malloc(len ? len : 1);
        memcpy(cut, rec.p, len);
        struct backfill_record got;
        struct error err = {{0}};
        ck_assert_msg(!ingest_decode_backfill(cut, len, &got, &err), "%zu of %zu bytes decoded",
                      len, rec.len);
        ck_assert_msg(strncmp(err.msg, "a backfill record does not decode: ", 35) == 0 &&
                          strlen(err.msg) > 35,
                      "%zu: %s", len, err.msg);
        expect_empty_record(&got);
        free(cut);
    }
    struct backfill_record got;
    struct error err;
    ck_assert(!ingest_decode_backfill(longer, rec.len + 1, &got, &err));
    ck_assert_str_eq(err.msg, "a backfill record does not decode: bytes after the end");
    expect_empty_record(&got);
    free(longer);
    record_buf_free(&rec);
}
END_TEST

/* Each count set beyond what the bytes after it can hold, and the last
 * of each one more than there is. */
START_TEST(test_backfill_record_with_counts_too_large_does_not_decode)
{
    struct record_buf rec = {0};
    encode_sample_backfill(&rec);
    struct bf_offsets o = walk_backfill(&rec);
    const struct {
        size_t at;
        uint32_t n;
        const char *why;
    } cases[] = {
        {o.groups, UINT32_MAX, "the clock or the cluster count is cut short or too large"},
        {o.groups, 3, "a cluster of intervals is cut short"},
        {o.group_n[0], 100000000, "a cluster of intervals is cut short"},
        {o.group_n[1], UINT32_MAX, "a cluster of intervals is cut short"},
        {o.months, UINT32_MAX, "the month count is cut short or too large"},
        {o.months, 4, "a month is cut short or has an unknown fate"},
        {o.quarantined, 1u << 31, "the quarantined sample count is cut short or too large"},
        {o.quarantined, 3, "a quarantined sample is cut short"},
        {o.released, UINT32_MAX, "the released count is cut short or too large"},
        {o.released, 3, "the released count is cut short or too large"},
        {o.released, 1, "bytes after the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *bad = malloc(rec.len);
        memcpy(bad, rec.p, rec.len);
        memcpy(bad + cases[i].at, &cases[i].n, 4);
        struct backfill_record got;
        struct error err;
        ck_assert_msg(!ingest_decode_backfill(bad, rec.len, &got, &err), "case %zu decoded", i);
        char want[160];
        snprintf(want, sizeof want, "a backfill record does not decode: %s", cases[i].why);
        ck_assert_msg(strcmp(err.msg, want) == 0, "case %zu: %s", i, err.msg);
        expect_empty_record(&got);
        free(bad);
    }
    record_buf_free(&rec);
}
END_TEST

START_TEST(test_backfill_record_with_an_unknown_fate_or_kind_does_not_decode)
{
    struct record_buf rec = {0};
    encode_sample_backfill(&rec);
    struct bf_offsets o = walk_backfill(&rec);
    struct backfill_record got;
    struct error err;
    for (int i = 0; i < 3; i++) {
        for (unsigned fate = BACKFILL_LEFT + 1; fate < 256; fate += 126) {
            rec.p[o.fate[i]] = (unsigned char)fate;
            ck_assert_msg(!ingest_decode_backfill(rec.p, rec.len, &got, &err), "fate %u", fate);
            ck_assert_str_eq(err.msg,
                             "a backfill record does not decode: a month is cut short or has "
                             "an unknown fate");
            expect_empty_record(&got);
        }
        rec.p[o.fate[i]] = (unsigned char)bf_months[i].fate;
    }
    for (int i = 0; i < 2; i++) {
        rec.p[o.kind[i]] = SAMPLE_COUNTER + 1;
        ck_assert(!ingest_decode_backfill(rec.p, rec.len, &got, &err));
        ck_assert_str_eq(err.msg, "a backfill record does not decode: a quarantined sample is "
                                  "cut short");
        expect_empty_record(&got);
        rec.p[o.kind[i]] = (unsigned char)bf_quarantined[i].s.kind;
    }
    /* Restored, it decodes again. */
    ck_assert_msg(ingest_decode_backfill(rec.p, rec.len, &got, &err), "%s", err.msg);
    backfill_record_free(&got);
    record_buf_free(&rec);
}
END_TEST

/* c1's first interval of March (1.25 kWh at valley 0.25) backfilled whole,
 * with a quarantined sample: one billing row, the sample quarantined once.
 * A plan naming a cluster the config lacks changes nothing. */
START_TEST(test_backfill_record_applies_a_plan_and_its_quarantined_samples)
{
    static const struct backfill_interval iv = {"c1", T0, 1250000, 0};
    static const struct backfill_month mo = {"c1", MARCH_DAY, BACKFILL_WHOLE};
    struct backfill_plan p = {(T0 + 40 * 86400) * NS, (struct backfill_interval *)&iv, 1,
                              (struct backfill_month *)&mo, 1};
    struct record_buf rec = {0};
    ingest_encode_backfill(&p, bf_quarantined, 1, bf_released, 2, &rec);
    struct backfill_record r;
    struct error err;
    ck_assert_msg(ingest_decode_backfill(rec.p, rec.len, &r, &err), "%s", err.msg);
    struct engine *e = new_engine();
    struct reprice_effect eff[1];
    ck_assert_msg(ingest_apply_backfill(e, &r, eff, &err), "%s", err.msg);
    ck_assert_uint_eq(n_rows, 1);
    ck_assert_str_eq(rows[0].cluster, "c1");
    ck_assert_int_eq(rows[0].start_s, T0);
    ck_assert_int_eq(rows[0].kwh_micro, 1250000);
    ck_assert_uint_eq(n_quarantined, 1);
    ck_assert_uint_eq(eff[0].intervals, 1);
    ck_assert_uint_eq(eff[0].billing_rows, 1);
    ck_assert_int_eq(eff[0].kwh_micro, 1250000);
    ck_assert_int_eq(eff[0].energy_charge_cny4, 3125); /* 1.25 x 0.25 */
    engine_free(e);
    backfill_record_free(&r);

    static const struct backfill_interval c9 = {"c9", T0, 1250000, 0};
    static const struct backfill_month mo9 = {"c9", MARCH_DAY, BACKFILL_WHOLE};
    p.intervals = (struct backfill_interval *)&c9;
    p.months = (struct backfill_month *)&mo9;
    ingest_encode_backfill(&p, bf_quarantined, 1, NULL, 0, &rec);
    ck_assert_msg(ingest_decode_backfill(rec.p, rec.len, &r, &err), "%s", err.msg);
    e = new_engine();
    ck_assert(!ingest_apply_backfill(e, &r, NULL, &err));
    ck_assert_str_eq(err.msg, "cluster c9 is not in the config");
    ck_assert_uint_eq(n_rows, 0);
    ck_assert_uint_eq(n_quarantined, 0);
    engine_free(e);
    backfill_record_free(&r);
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
    tcase_add_test(tc, test_cached_parse_equals_the_plain_one);
    tcase_add_test(tc, test_a_handle_is_checked_against_the_names);
    tcase_add_test(tc, test_cache_keys_follow_the_meter_limits);
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
    tcase_add_test(tc, test_reprice_record_has_the_documented_layout);
    tcase_add_test(tc, test_reprice_record_round_trips);
    tcase_add_test(tc, test_truncated_reprice_record_says_what_is_wrong);
    tcase_add_test(tc, test_reprice_record_with_a_bad_flag_does_not_decode);
    tcase_add_test(tc, test_reprice_record_applies_a_correction);
    tcase_add_test(tc, test_backfill_record_has_the_documented_layout);
    tcase_add_test(tc, test_backfill_record_round_trips);
    tcase_add_test(tc, test_truncated_backfill_record_does_not_decode);
    tcase_add_test(tc, test_backfill_record_with_counts_too_large_does_not_decode);
    tcase_add_test(tc, test_backfill_record_with_an_unknown_fate_or_kind_does_not_decode);
    tcase_add_test(tc, test_backfill_record_applies_a_plan_and_its_quarantined_samples);
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
