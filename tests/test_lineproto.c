/*
 * Unit tests for the line protocol parser: every rule with its exact
 * message and line number, every field type and precision, and vectors
 * from InfluxDB's documentation and from influxdata/line-protocol's
 * decoder tests (adapted where we deliberately differ, see lineproto.c).
 */
#include "daemon/lineproto.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_POINTS 16

/* What the callback saw, copied: the strings die with the callback. */
struct recorded {
    int n;
    int reject_at; /* 1-based point the callback rejects, 0 for none */
    bool reject_silently;
    struct lp_point points[MAX_POINTS];
    char cluster[MAX_POINTS][300];
    char meter[MAX_POINTS][300];
};

static struct recorded rec;
static struct lp_stats stats;
static struct lp_error lerr;

static bool record(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct recorded *r = ctx;
    if (r->n + 1 == r->reject_at) {
        if (!r->reject_silently) {
            snprintf(err->msg, sizeof err->msg, "line %d: unknown cluster \"%s\"", p->line,
                     p->cluster);
            err->line = p->line;
        }
        return false;
    }
    ck_assert_int_lt(r->n, MAX_POINTS);
    r->points[r->n] = *p;
    snprintf(r->cluster[r->n], sizeof r->cluster[0], "%s", p->cluster);
    snprintf(r->meter[r->n], sizeof r->meter[0], "%s", p->meter);
    r->n++;
    return true;
}

/* What differs between two parses (points but for the memo, strings,
 * stats, error), or NULL. One check per parse, not one per point: each
 * check costs Check a write. */
static const char *parse_difference(const struct recorded *a, const struct lp_stats *as,
                                    const struct lp_error *ae, const struct recorded *b,
                                    const struct lp_stats *bs, const struct lp_error *be)
{
    if (a->n != b->n)
        return "number of points";
    for (int i = 0; i < a->n; i++) {
        const struct lp_point *x = &a->points[i], *y = &b->points[i];
        if (x->line != y->line || x->field != y->field || x->has_ts != y->has_ts ||
            x->ts_ns != y->ts_ns || memcmp(&x->value, &y->value, sizeof x->value) != 0)
            return "a point";
        if (strcmp(a->cluster[i], b->cluster[i]) != 0 || strcmp(a->meter[i], b->meter[i]) != 0)
            return "a point's cluster or meter";
    }
    if (as->lines != bs->lines || as->power_points != bs->power_points ||
        as->other_points != bs->other_points)
        return "stats";
    if (ae->line != be->line || strcmp(ae->msg, be->msg) != 0)
        return "the error";
    return NULL;
}

/* Every text a test parses is parsed three ways: by lp_parse, and by
 * lp_parse_cached with a new cache and then with the cache that parse
 * filled (so each valid key is found there): all three must see the same. */
static bool run_len(const char *text, size_t len, enum lp_precision precision)
{
    int reject_at = rec.reject_at;
    bool silently = rec.reject_silently;
    memset(&rec, 0, sizeof rec);
    rec.reject_at = reject_at;
    rec.reject_silently = silently;
    memset(&lerr, 0x55, sizeof lerr); /* the parser must reset it */
    bool ok = lp_parse(text, len, precision, record, &rec, &stats, &lerr);
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    static struct recorded cached;
    for (int pass = 0; pass < 2; pass++) {
        memset(&cached, 0, sizeof cached);
        cached.reject_at = reject_at;
        cached.reject_silently = silently;
        struct lp_stats cached_stats;
        struct lp_error cached_err;
        size_t consumed;
        bool cached_ok = lp_parse_cached(text, len, false, precision, cache, record, &cached,
                                         &cached_stats, &cached_err, &consumed);
        const char *diff = ok != cached_ok ? "success"
                                           : parse_difference(&rec, &stats, &lerr, &cached,
                                                              &cached_stats, &cached_err);
        if (diff)
            ck_abort_msg("lp_parse_cached (pass %d) differs from lp_parse in %s", pass + 1, diff);
    }
    lp_cache_free(cache);
    if (ok) {
        ck_assert_int_eq(lerr.line, 0);
        ck_assert_str_eq(lerr.msg, "");
    } else {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "line %d: ", lerr.line);
        ck_assert_msg(strncmp(lerr.msg, prefix, strlen(prefix)) == 0,
                      "message \"%s\" does not start with \"%s\"", lerr.msg, prefix);
        ck_assert_uint_lt(strlen(lerr.msg), sizeof lerr.msg);
    }
    return ok;
}

/* The message of parsing text ("" when it parses). */
static const char *error_in(const char *text, enum lp_precision precision)
{
    return run_len(text, strlen(text), precision) ? "" : lerr.msg;
}

static const char *error_of(const char *text)
{
    return error_in(text, LP_PRECISION_NS);
}

#define ck_assert_error(text, expected) ck_assert_str_eq(error_of(text), expected)

static void parse_ok_in(const char *text, enum lp_precision precision)
{
    ck_assert_msg(run_len(text, strlen(text), precision), "\"%s\": unexpected error: %s", text,
                  lerr.msg);
}

static void parse_ok(const char *text)
{
    parse_ok_in(text, LP_PRECISION_NS);
}

/* The value of kw in "power,cluster=c kw=<value>". */
static double kw_of(const char *value)
{
    char line[1200];
    snprintf(line, sizeof line, "power,cluster=c kw=%s", value);
    parse_ok(line);
    ck_assert_int_eq(rec.n, 1);
    return rec.points[0].value;
}

/* ---------------------------------------------------------------- */
/* Points                                                            */

START_TEST(test_typical_line_gives_one_point)
{
    parse_ok("power,cluster=qy-a01,meter=pdu-3 kw=1234.5 1764547200000000000\n");
    ck_assert_int_eq(rec.n, 1);
    const struct lp_point *p = &rec.points[0];
    ck_assert_int_eq(p->line, 1);
    ck_assert_str_eq(rec.cluster[0], "qy-a01");
    ck_assert_str_eq(rec.meter[0], "pdu-3");
    ck_assert_int_eq(p->field, LP_FIELD_KW);
    ck_assert_double_eq(p->value, 1234.5);
    ck_assert(p->has_ts);
    ck_assert_int_eq(p->ts_ns, 1764547200000000000LL);
    ck_assert_uint_eq(stats.lines, 1);
    ck_assert_uint_eq(stats.power_points, 1);
    ck_assert_uint_eq(stats.other_points, 0);
}
END_TEST

START_TEST(test_meter_defaults_to_main)
{
    parse_ok("power,cluster=c kw=1");
    ck_assert_str_eq(rec.meter[0], "main");
}
END_TEST

START_TEST(test_each_energy_field_is_recognised)
{
    parse_ok("power,cluster=c w=1500\npower,cluster=c kwh=10.25\npower,cluster=c wh=7");
    ck_assert_int_eq(rec.n, 3);
    ck_assert_int_eq(rec.points[0].field, LP_FIELD_W);
    ck_assert_double_eq(rec.points[0].value, 1500);
    ck_assert_int_eq(rec.points[1].field, LP_FIELD_KWH);
    ck_assert_double_eq(rec.points[1].value, 10.25);
    ck_assert_int_eq(rec.points[2].field, LP_FIELD_WH);
    ck_assert_int_eq(rec.points[2].line, 3);
}
END_TEST

START_TEST(test_line_without_timestamp_has_none)
{
    parse_ok("power,cluster=c kw=1");
    ck_assert(!rec.points[0].has_ts);
    ck_assert_int_eq(rec.points[0].ts_ns, 0);
}
END_TEST

START_TEST(test_tag_order_does_not_matter)
{
    parse_ok("power,meter=m1,cluster=c1 kw=1");
    ck_assert_str_eq(rec.cluster[0], "c1");
    ck_assert_str_eq(rec.meter[0], "m1");
}
END_TEST

START_TEST(test_other_tags_and_fields_are_parsed_then_ignored)
{
    parse_ok("power,host=h1,cluster=c,rack=r9 temp=20.5,kw=3,status=\"ok\",up=true,n=3i,u=4u,"
             "v=-1.5e-3 1");
    ck_assert_int_eq(rec.n, 1);
    ck_assert_str_eq(rec.cluster[0], "c");
    ck_assert_str_eq(rec.meter[0], "main");
    ck_assert_double_eq(rec.points[0].value, 3);
    ck_assert_int_eq(rec.points[0].ts_ns, 1);
}
END_TEST

START_TEST(test_measurement_must_be_exactly_power)
{
    parse_ok("Power,cluster=c kw=1\npowers,cluster=c kw=1\npowe kw=1\n");
    ck_assert_int_eq(rec.n, 0);
    ck_assert_uint_eq(stats.other_points, 3);
}
END_TEST

START_TEST(test_valid_line_of_another_measurement_is_counted)
{
    parse_ok("cpu,host=a usage_idle=99.5,usage_user=0.5 1\npower,cluster=c kw=1\n"
             "mem free=1i,used=2u\n");
    ck_assert_uint_eq(stats.lines, 3);
    ck_assert_uint_eq(stats.other_points, 2);
    ck_assert_uint_eq(stats.power_points, 1);
    ck_assert_int_eq(rec.points[0].line, 2);
}
END_TEST

START_TEST(test_malformed_line_of_another_measurement_is_an_error)
{
    ck_assert_error("power,cluster=c kw=1\ncpu usage=12x",
                    "line 2: invalid number \"12x\" in field \"usage\"");
    ck_assert_error("cpu,host= usage=1", "line 1: expected value for tag \"host\", found \" \"");
    ck_assert_error("cpu usage=1 abc", "line 1: timestamp \"abc\" is not an integer");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Escaping                                                          */

START_TEST(test_escaped_comma_in_tag_value)
{
    parse_ok("power,cluster=a\\,b kw=1");
    ck_assert_str_eq(rec.cluster[0], "a,b");
}
END_TEST

START_TEST(test_escaped_space_and_equals_in_tag_value)
{
    parse_ok("power,cluster=hall\\ 2\\=b,meter=x\\ y kw=1");
    ck_assert_str_eq(rec.cluster[0], "hall 2=b");
    ck_assert_str_eq(rec.meter[0], "x y");
}
END_TEST

START_TEST(test_other_backslashes_in_tag_value_are_literal)
{
    /* Like influxdata/line-protocol's decoder: "\\" is not an escape in
     * tags, so both backslashes stay. */
    parse_ok("power,cluster=a\\b\\\\c kw=1");
    ck_assert_str_eq(rec.cluster[0], "a\\b\\\\c");
}
END_TEST

START_TEST(test_backslash_before_an_escapable_byte_always_escapes_it)
{
    /* The second backslash escapes the space, so the tag value runs on
     * into "kw" and the "=" after it is misplaced. */
    ck_assert_error("power,cluster=c\\\\ kw=1",
                    "line 1: expected \",\" or \" \" after value of tag \"cluster\", found \"=\"");
    /* A backslash with nothing after it is literal. */
    ck_assert_error("power,cluster=c kw=1,x\\",
                    "line 1: expected \"=\" after field key \"x\\\", found end of line");
}
END_TEST

START_TEST(test_quotes_in_tag_values_are_literal)
{
    parse_ok("power,cluster=\"a\",meter='m' kw=1");
    ck_assert_str_eq(rec.cluster[0], "\"a\"");
    ck_assert_str_eq(rec.meter[0], "'m'");
}
END_TEST

START_TEST(test_escaped_measurement_is_not_power)
{
    parse_ok("pow\\,er,cluster=c kw=1\npower\\ x,cluster=c kw=1\npow\\er,cluster=c kw=1");
    ck_assert_int_eq(rec.n, 0);
    ck_assert_uint_eq(stats.other_points, 3);
}
END_TEST

START_TEST(test_equals_sign_in_measurement_is_literal)
{
    parse_ok("a=b,t=v f=1");
    ck_assert_uint_eq(stats.other_points, 1);
}
END_TEST

START_TEST(test_escaped_tag_key_is_not_cluster)
{
    ck_assert_error("power,clus\\=ter=c kw=1", "line 1: missing tag \"cluster\"");
    ck_assert_error("power,cluster\\ =c kw=1", "line 1: missing tag \"cluster\"");
}
END_TEST

START_TEST(test_escaped_field_keys)
{
    parse_ok("power,cluster=c k\\ w=5,k\\=w=6,k\\,w=7,kw=1");
    ck_assert_double_eq(rec.points[0].value, 1);
}
END_TEST

START_TEST(test_escaped_quote_and_backslash_in_string_field)
{
    parse_ok("m s=\"a \\\"b\\\" \\\\\" 5");
    ck_assert_uint_eq(stats.other_points, 1);
    parse_ok("m s=\"ends in backslash\\\\\",t=1 5");
    ck_assert_error("m s=\"a\\\" 5", "line 1: unterminated string in field \"s\"");
}
END_TEST

START_TEST(test_other_backslashes_in_string_field_are_literal)
{
    parse_ok("m s=\"C:\\dir\\n\\t\" 1");
    ck_assert_uint_eq(stats.other_points, 1);
}
END_TEST

START_TEST(test_string_field_may_contain_any_byte)
{
    static const char text[] = "m s=\"tab\there, comma, = and space\x01\x7f\r\n\0\" 1";
    ck_assert(run_len(text, sizeof text - 1, LP_PRECISION_NS));
    ck_assert_uint_eq(stats.other_points, 1);
}
END_TEST

START_TEST(test_utf8_is_accepted)
{
    parse_ok("power,cluster=青海-01,meter=电表 kw=1");
    ck_assert_str_eq(rec.cluster[0], "青海-01");
    ck_assert_str_eq(rec.meter[0], "电表");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Field types                                                       */

START_TEST(test_float_forms)
{
    ck_assert_double_eq(kw_of("1"), 1);
    ck_assert_double_eq(kw_of("1.0"), 1);
    ck_assert_double_eq(kw_of("1."), 1);
    ck_assert_double_eq(kw_of(".5"), 0.5);
    ck_assert_double_eq(kw_of("007.250"), 7.25);
    ck_assert_double_eq(kw_of("1e3"), 1000);
    ck_assert_double_eq(kw_of("1.5E+2"), 150);
    ck_assert_double_eq(kw_of("2.e1"), 20);
    ck_assert_double_eq(kw_of(".5e-1"), 0.05);
    ck_assert_double_eq(kw_of("1.2e+78"), 1.2e78);
    ck_assert_double_eq(kw_of("0.000000000000000000000000001"), 1e-27);
    ck_assert_double_eq(kw_of("12345678901234567890123"), 12345678901234567890123.0);
    ck_assert_double_eq(kw_of("1e-400"), 0); /* underflow rounds, as in strtod */
    parse_ok("m x=-1.2e+78,y=-.5,z=-0");
}
END_TEST

START_TEST(test_invalid_floats)
{
    ck_assert_error("m x=1e", "line 1: invalid number \"1e\" in field \"x\"");
    ck_assert_error("m x=1e+", "line 1: invalid number \"1e+\" in field \"x\"");
    ck_assert_error("m x=.", "line 1: invalid number \".\" in field \"x\"");
    ck_assert_error("m x=-", "line 1: invalid number \"-\" in field \"x\"");
    ck_assert_error("m x=.e5", "line 1: invalid number \".e5\" in field \"x\"");
    ck_assert_error("m x=1.2.3", "line 1: invalid number \"1.2.3\" in field \"x\"");
    ck_assert_error("m x=0x10", "line 1: invalid number \"0x10\" in field \"x\"");
    ck_assert_error("m x=1_000", "line 1: invalid number \"1_000\" in field \"x\"");
    ck_assert_error("m x=--1", "line 1: invalid number \"--1\" in field \"x\"");
    ck_assert_error("m x=-inf", "line 1: invalid number \"-inf\" in field \"x\"");
    ck_assert_error("m x=1\"", "line 1: invalid number \"1\"\" in field \"x\"");
    ck_assert_error("m x=+1", "line 1: invalid value \"+1\" in field \"x\"");
    ck_assert_error("m x=inf", "line 1: invalid value \"inf\" in field \"x\"");
    ck_assert_error("m x=NaN", "line 1: invalid value \"NaN\" in field \"x\"");
}
END_TEST

/* The fast path must give strtod's correctly rounded result. */
START_TEST(test_floats_equal_strtod)
{
    static const char *const cases[] = {
        "0.1",
        "0.3",
        "1234.5",
        "9007199254740993",   /* 2^53 + 1: a tie, rounds to even */
        "9007199254740992.5", /* 17 digits: slow path */
        "123456789012345678", /* 18 digits, > 2^53 */
        "1e22",               /* last exact power of ten */
        "1e23",               /* not exact */
        "4.9406564584124654e-324",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "0.30000000000000004441",
        "8.988465674311579e307",
        "2."
        "470328229206232720882843964341106861825299013071623822127928412503377536351043759326499181"
        "8"
        "0e-324",
        "1000000000000000000000000000000000000000000000000000000000000000000000000000000000001",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double want = strtod(cases[i], NULL);
        double got = kw_of(cases[i]);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: got %.17g, want %.17g", cases[i],
                      got, want);
    }
    /* Random mantissas, points and exponents. */
    srand(12345);
    for (int i = 0; i < 50000; i++) {
        char s[64];
        int n = 0, digits = 1 + rand() % 22, point = rand() % (digits + 1);
        for (int d = 0; d < digits; d++) {
            if (d == point && rand() % 2)
                s[n++] = '.';
            s[n++] = (char)('0' + rand() % 10);
        }
        if (rand() % 3 == 0)
            n += snprintf(s + n, sizeof s - (size_t)n, "e%d", rand() % 80 - 40);
        s[n] = '\0';
        double want = strtod(s, NULL);
        double got = kw_of(s);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: got %.17g, want %.17g", s, got,
                      want);
    }
}
END_TEST

START_TEST(test_very_long_float_is_exact)
{
    /* 1000 digits, more than the 800 kept for strtod. */
    static char num[1100];
    memset(num, '0', 1000);
    num[0] = '1';
    strcpy(num + 1000, "e-999");
    ck_assert_double_eq(kw_of(num), 1.0);

    /* 2^-1075 = 5^1075 * 10^-1075, half the smallest subnormal, is a tie
     * that rounds to 0; a 1 in the 853rd digit, beyond those kept, must
     * still round it up. */
    static char digits[800];
    int n = 1;
    digits[0] = 1;
    for (int i = 0; i < 1075; i++) {
        int carry = 0;
        for (int d = 0; d < n; d++) {
            int v = digits[d] * 5 + carry;
            digits[d] = (char)(v % 10);
            carry = v / 10;
        }
        while (carry) {
            digits[n++] = (char)(carry % 10);
            carry /= 10;
        }
    }
    static char tie[1100], above[1100];
    for (int d = 0; d < n; d++)
        tie[d] = above[d] = (char)('0' + digits[n - 1 - d]);
    snprintf(tie + n, sizeof tie - (size_t)n, "e-1075");
    memset(above + n, '0', 100);
    snprintf(above + n + 100, sizeof above - (size_t)n - 100, "1e-1176");
    ck_assert_int_eq(n, 752);
    ck_assert_double_eq(kw_of(tie), 0);
    ck_assert_double_eq(kw_of(above), strtod("4.9406564584124654e-324", NULL));
    ck_assert_double_eq(strtod(above, NULL), strtod("4.9406564584124654e-324", NULL));
}
END_TEST

START_TEST(test_integer_fields)
{
    parse_ok("m a=9223372036854775807i,b=-9223372036854775808i,c=0i,d=-0i");
    ck_assert_double_eq(kw_of("12i"), 12);
    ck_assert_double_eq(kw_of("-0i"), 0);
    ck_assert_double_eq(kw_of("9223372036854775807i"), 9223372036854775807.0);
}
END_TEST

START_TEST(test_integer_out_of_range)
{
    ck_assert_error("m x=99999999999999999999i",
                    "line 1: integer \"99999999999999999999i\" out of range in field \"x\"");
    ck_assert_error("m x=9223372036854775808i",
                    "line 1: integer \"9223372036854775808i\" out of range in field \"x\"");
    ck_assert_error("m x=-9223372036854775809i",
                    "line 1: integer \"-9223372036854775809i\" out of range in field \"x\"");
}
END_TEST

START_TEST(test_invalid_integers)
{
    ck_assert_error("m x=1.0i", "line 1: invalid number \"1.0i\" in field \"x\"");
    ck_assert_error("m x=-i", "line 1: invalid number \"-i\" in field \"x\"");
    ck_assert_error("m x=1ii", "line 1: invalid number \"1ii\" in field \"x\"");
    ck_assert_error("m x=1e3i", "line 1: invalid number \"1e3i\" in field \"x\"");
    ck_assert_error("m x=i", "line 1: invalid value \"i\" in field \"x\"");
    ck_assert_error("m x=99999999999999999999x9i",
                    "line 1: invalid number \"99999999999999999999x9i\" in field \"x\"");
}
END_TEST

START_TEST(test_unsigned_fields)
{
    parse_ok("m a=18446744073709551615u,b=0u");
    ck_assert_double_eq(kw_of("12u"), 12);
    ck_assert_error("m x=18446744073709551616u",
                    "line 1: unsigned integer \"18446744073709551616u\" out of range in field "
                    "\"x\"");
    ck_assert_error("m x=-1u", "line 1: invalid number \"-1u\" in field \"x\"");
    ck_assert_error("m x=1.5u", "line 1: invalid number \"1.5u\" in field \"x\"");
}
END_TEST

START_TEST(test_booleans)
{
    parse_ok("m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE");
    ck_assert_uint_eq(stats.other_points, 1);
    ck_assert_error("m x=tru", "line 1: invalid value \"tru\" in field \"x\"");
    ck_assert_error("m x=TRue", "line 1: invalid value \"TRue\" in field \"x\"");
    ck_assert_error("m x=yes", "line 1: invalid value \"yes\" in field \"x\"");
}
END_TEST

START_TEST(test_unquoted_string_is_an_error)
{
    ck_assert_error("m x=abc", "line 1: invalid value \"abc\" in field \"x\"");
}
END_TEST

START_TEST(test_float_overflow_in_other_field_is_an_error)
{
    ck_assert_error("m x=1e999", "line 1: number \"1e999\" out of range in field \"x\"");
    ck_assert_error("m x=-1e999", "line 1: number \"-1e999\" out of range in field \"x\"");
    parse_ok("m x=1e-999");
}
END_TEST

/* ---------------------------------------------------------------- */
/* The rules for `power`                                             */

START_TEST(test_missing_cluster)
{
    ck_assert_error("power,meter=m kw=1", "line 1: missing tag \"cluster\"");
    ck_assert_error("power kw=1", "line 1: missing tag \"cluster\"");
}
END_TEST

START_TEST(test_empty_tag_value_is_an_error)
{
    ck_assert_error("power,cluster= kw=1",
                    "line 1: expected value for tag \"cluster\", found \" \"");
    ck_assert_error("power,cluster=,meter=m kw=1",
                    "line 1: expected value for tag \"cluster\", found \",\"");
    ck_assert_error("power,cluster=c,meter= kw=1",
                    "line 1: expected value for tag \"meter\", found \" \"");
    ck_assert_error("power,cluster=",
                    "line 1: expected value for tag \"cluster\", found end of line");
}
END_TEST

START_TEST(test_no_energy_field)
{
    ck_assert_error("power,cluster=c temp=1", "line 1: no field kw, w, kwh or wh");
    ck_assert_error("power,cluster=c KW=1", "line 1: no field kw, w, kwh or wh");
}
END_TEST

START_TEST(test_two_energy_fields)
{
    ck_assert_error("power,cluster=c kw=1,kwh=2",
                    "line 1: fields \"kw\" and \"kwh\" both given; send one");
    ck_assert_error("power,cluster=c wh=1,x=0,w=2",
                    "line 1: fields \"wh\" and \"w\" both given; send one");
    ck_assert_error("power,cluster=c kw=1,kw=2", "line 1: field \"kw\" given twice");
}
END_TEST

START_TEST(test_energy_field_must_be_a_number)
{
    ck_assert_error("power,cluster=c kw=\"1\"", "line 1: field \"kw\" is not a number");
    ck_assert_error("power,cluster=c kwh=true", "line 1: field \"kwh\" is not a number");
    ck_assert_error("power,cluster=c w=F", "line 1: field \"w\" is not a number");
}
END_TEST

START_TEST(test_negative_energy_value)
{
    ck_assert_error("power,cluster=c kw=-1", "line 1: field \"kw\" is negative");
    ck_assert_error("power,cluster=c wh=-5i", "line 1: field \"wh\" is negative");
    ck_assert_error("power,cluster=c w=-1e-300", "line 1: field \"w\" is negative");
    double zero = kw_of("-0");
    ck_assert_double_eq(zero, 0);
    ck_assert(!signbit(zero));
    ck_assert(!signbit(kw_of("-0.0e5")));
}
END_TEST

START_TEST(test_non_finite_energy_value)
{
    ck_assert_error("power,cluster=c kw=1e999", "line 1: field \"kw\" is not finite");
    ck_assert_error("power,cluster=c kwh=-1e999", "line 1: field \"kwh\" is not finite");
    ck_assert_error("power,cluster=c kw=179769313486231580793728971405303415079934132710037826936"
                    "173778980444968292764750946649017977587207096330286416692887910946555547851"
                    "940402630657488671505820681908902000708383676273854845817711531764475730270"
                    "069855571366959622842914819860834936475292719074168444365510704342711559699"
                    "508093042880177904174497792",
                    "line 1: field \"kw\" is not finite");
}
END_TEST

START_TEST(test_duplicate_cluster_or_meter_tag)
{
    ck_assert_error("power,cluster=a,cluster=b kw=1", "line 1: duplicate tag key \"cluster\"");
    ck_assert_error("power,cluster=a,meter=x,meter=x kw=1", "line 1: duplicate tag key \"meter\"");
    ck_assert_int_eq(rec.n, 0);
}
END_TEST

START_TEST(test_cluster_longer_than_256_bytes)
{
    char line[1200];
    int n = snprintf(line, sizeof line, "power,cluster=");
    memset(line + n, 'c', 256);
    snprintf(line + n + 256, sizeof line - (size_t)n - 256, " kw=1");
    parse_ok(line);
    ck_assert_uint_eq(strlen(rec.cluster[0]), 256);

    snprintf(line + n + 256, sizeof line - (size_t)n - 256, "c kw=1");
    ck_assert_error(line, "line 1: tag \"cluster\" is longer than 256 bytes");

    n = snprintf(line, sizeof line, "power,cluster=c,meter=");
    memset(line + n, 'm', 300);
    snprintf(line + n + 300, sizeof line - (size_t)n - 300, " kw=1");
    ck_assert_error(line, "line 1: tag \"meter\" is longer than 256 bytes");
}
END_TEST

START_TEST(test_tag_length_counts_unescaped_bytes)
{
    char line[1200];
    int n = snprintf(line, sizeof line, "power,cluster=");
    for (int i = 0; i < 256; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "\\,");
    snprintf(line + n, sizeof line - (size_t)n, " kw=1");
    parse_ok(line);
    ck_assert_uint_eq(strlen(rec.cluster[0]), 256);
    ck_assert_int_eq(rec.cluster[0][255], ',');
}
END_TEST

START_TEST(test_long_values_of_other_tags_are_fine)
{
    static char line[5000];
    int n = snprintf(line, sizeof line, "power,description=");
    memset(line + n, 'd', 4000);
    snprintf(line + n + 4000, sizeof line - (size_t)n - 4000, ",cluster=c kw=1");
    parse_ok(line);
    ck_assert_int_eq(rec.n, 1);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Syntax errors                                                     */

START_TEST(test_syntax_errors_in_measurement_and_tags)
{
    ck_assert_error(",cluster=c kw=1", "line 1: expected measurement, found \",\"");
    ck_assert_error("power", "line 1: missing fields");
    ck_assert_error("power,cluster=c", "line 1: missing fields");
    ck_assert_error("power,cluster=c   ", "line 1: missing fields");
    ck_assert_error("power,,cluster=c kw=1", "line 1: expected tag key after \",\", found \",\"");
    ck_assert_error("power, cluster=c kw=1", "line 1: expected tag key after \",\", found \" \"");
    ck_assert_error("power,cluster=c, kw=1", "line 1: expected tag key after \",\", found \" \"");
    ck_assert_error("power,cluster=c,", "line 1: expected tag key after \",\", found end of line");
    ck_assert_error("power,=c kw=1", "line 1: expected tag key after \",\", found \"=\"");
    ck_assert_error("power,cluster kw=1",
                    "line 1: expected \"=\" after tag key \"cluster\", found \" \"");
    ck_assert_error("power,cluster,meter=m kw=1",
                    "line 1: expected \"=\" after tag key \"cluster\", found \",\"");
    ck_assert_error("power,cluster=a=b kw=1",
                    "line 1: expected \",\" or \" \" after value of tag \"cluster\", found \"=\"");
}
END_TEST

START_TEST(test_equals_after_tag_value_is_an_error)
{
    /* "\," continues the value, so "=" then ends it. */
    ck_assert_error("power,meter=m\\,cluster=c kw=1",
                    "line 1: expected \",\" or \" \" after value of tag \"meter\", found \"=\"");
}
END_TEST

START_TEST(test_syntax_errors_in_fields)
{
    ck_assert_error("power,cluster=c ,kw=1", "line 1: expected field key, found \",\"");
    ck_assert_error("power,cluster=c =1", "line 1: expected field key, found \"=\"");
    ck_assert_error("power,cluster=c kw=1,", "line 1: expected field key, found end of line");
    ck_assert_error("power,cluster=c kw=1, w=2", "line 1: expected field key, found \" \"");
    ck_assert_error("power,cluster=c kw",
                    "line 1: expected \"=\" after field key \"kw\", found end of line");
    ck_assert_error("power,cluster=c kw 1",
                    "line 1: expected \"=\" after field key \"kw\", found \" \"");
    ck_assert_error("power,cluster=c kw,w=1",
                    "line 1: expected \"=\" after field key \"kw\", found \",\"");
    ck_assert_error("power,cluster=c kw=",
                    "line 1: expected value for field \"kw\", found end of line");
    ck_assert_error("power,cluster=c kw= 1",
                    "line 1: expected value for field \"kw\", found \" \"");
    ck_assert_error("power,cluster=c x=,kw=1",
                    "line 1: expected value for field \"x\", found \",\"");
    ck_assert_error("power,cluster=c kw=12x", "line 1: invalid number \"12x\" in field \"kw\"");
    ck_assert_error("power,cluster=c s=\"x\"y,kw=1",
                    "line 1: expected \",\" or \" \" after value of field \"s\", found \"y\"");
    ck_assert_error("power,cluster=c s=\"abc", "line 1: unterminated string in field \"s\"");
    ck_assert_error("m s=\"x\"é",
                    "line 1: expected \",\" or \" \" after value of field \"s\", found \"é\"");
}
END_TEST

START_TEST(test_syntax_errors_in_timestamp)
{
    ck_assert_error("power,cluster=c kw=1 abc", "line 1: timestamp \"abc\" is not an integer");
    ck_assert_error("power,cluster=c kw=1 12a", "line 1: timestamp \"12a\" is not an integer");
    ck_assert_error("power,cluster=c kw=1 1.5", "line 1: timestamp \"1.5\" is not an integer");
    ck_assert_error("power,cluster=c kw=1 -", "line 1: timestamp \"-\" is not an integer");
    ck_assert_error("power,cluster=c kw=1 +5", "line 1: timestamp \"+5\" is not an integer");
    ck_assert_error("power,cluster=c kw=1 1 2", "line 1: unexpected text \"2\" after timestamp");
    ck_assert_error("power,cluster=c kw=1 1  x y ",
                    "line 1: unexpected text \"x y \" after timestamp");
}
END_TEST

START_TEST(test_control_characters_are_errors)
{
    ck_assert_error("power,cluster=c\tkw=1", "line 1: invalid character 0x09 at column 16");
    ck_assert_error("\tpower,cluster=c kw=1", "line 1: invalid character 0x09 at column 1");
    ck_assert_error("power,cluster=c kw=1\t", "line 1: invalid character 0x09 at column 21");
    ck_assert_error("power,cluster=c kw=1 5\t", "line 1: invalid character 0x09 at column 23");
    ck_assert_error("power,cluster=c kw=1 5 \x0b", "line 1: invalid character 0x0B at column 24");
    ck_assert_error("power,clu\x7fster=c kw=1", "line 1: invalid character 0x7F at column 10");
    ck_assert_error("power,cluster=c k\x01w=1", "line 1: invalid character 0x01 at column 18");
    ck_assert_error("pow\x1b"
                    "er,cluster=c kw=1",
                    "line 1: invalid character 0x1B at column 4");
    ck_assert_error("power,cluster=c\x02,meter=m kw=1",
                    "line 1: invalid character 0x02 at column 16");
    ck_assert_error("# fine\n#\x01 comment", "line 2: invalid character 0x01 at column 2");
    static const char nul[] = "power,cluster=c\0 kw=1";
    ck_assert(!run_len(nul, sizeof nul - 1, LP_PRECISION_NS));
    ck_assert_str_eq(lerr.msg, "line 1: invalid character 0x00 at column 16");
}
END_TEST

START_TEST(test_long_values_are_cut_in_messages)
{
    static char line[600];
    int n = snprintf(line, sizeof line, "m ");
    memset(line + n, 'k', 300);
    snprintf(line + n + 300, sizeof line - (size_t)n - 300, "=");
    memset(line + n + 301, '9', 200);
    strcpy(line + n + 501, "x");
    const char *msg = error_of(line);
    char want[256];
    snprintf(want, sizeof want, "line 1: invalid number \"%.64s...\" in field \"%.64s...\"",
             line + n + 301, line + n);
    ck_assert_str_eq(msg, want);
}
END_TEST

START_TEST(test_message_cut_keeps_utf8_whole)
{
    /* The token is "1", k times "a", then 3-byte characters: 64 bytes are
     * kept, less the part of a character that does not fit. */
    static const struct {
        int k;
        const char *kept_tail;
    } cases[] = {{60, "电"}, {61, ""}, {62, ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[300], as[100], want[300];
        memset(as, 'a', (size_t)cases[i].k);
        as[cases[i].k] = '\0';
        snprintf(line, sizeof line, "m x=1%s电电电", as);
        snprintf(want, sizeof want, "line 1: invalid number \"1%s%s...\" in field \"x\"", as,
                 cases[i].kept_tail);
        ck_assert_str_eq(error_of(line), want);
    }
}
END_TEST

START_TEST(test_escaped_key_is_unescaped_in_messages)
{
    ck_assert_error("m my\\ field=abc", "line 1: invalid value \"abc\" in field \"my field\"");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Timestamps and precision                                          */

START_TEST(test_every_precision_scales_the_timestamp)
{
    static const struct {
        enum lp_precision precision;
        int64_t ns;
    } cases[] = {
        {LP_PRECISION_NS, 7},           {LP_PRECISION_US, 7000},
        {LP_PRECISION_MS, 7000000},     {LP_PRECISION_S, 7000000000},
        {LP_PRECISION_M, 420000000000}, {LP_PRECISION_H, 25200000000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parse_ok_in("power,cluster=c kw=1 7\npower,cluster=c kw=1 -7", cases[i].precision);
        ck_assert_int_eq(rec.points[0].ts_ns, cases[i].ns);
        ck_assert_int_eq(rec.points[1].ts_ns, -cases[i].ns);
    }
}
END_TEST

START_TEST(test_timestamp_overflow_for_each_precision)
{
    static const struct {
        enum lp_precision precision;
        const char *max, *over, *min, *under, *name;
    } cases[] = {
        /* INT64_MAX = 9223372036854775807, INT64_MIN = -9223372036854775808 */
        {LP_PRECISION_NS, "9223372036854775807", "9223372036854775808", "-9223372036854775808",
         "-9223372036854775809", "ns"},
        /* 9223372036854775 * 1000 = 9223372036854775000 */
        {LP_PRECISION_US, "9223372036854775", "9223372036854776", "-9223372036854775",
         "-9223372036854776", "us"},
        {LP_PRECISION_MS, "9223372036854", "9223372036855", "-9223372036854", "-9223372036855",
         "ms"},
        {LP_PRECISION_S, "9223372036", "9223372037", "-9223372036", "-9223372037", "s"},
        /* 153722867 * 60e9 = 9223372020000000000 */
        {LP_PRECISION_M, "153722867", "153722868", "-153722867", "-153722868", "m"},
        /* 2562047 * 3600e9 = 9223369200000000000 */
        {LP_PRECISION_H, "2562047", "2562048", "-2562047", "-2562048", "h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[200], want[200];
        snprintf(line, sizeof line, "power,cluster=c kw=1 %s\npower,cluster=c kw=1 %s",
                 cases[i].max, cases[i].min);
        parse_ok_in(line, cases[i].precision);
        ck_assert_int_eq(rec.n, 2);
        snprintf(line, sizeof line, "power,cluster=c kw=1 %s", cases[i].over);
        snprintf(want, sizeof want, "line 1: timestamp \"%s\" out of range for precision \"%s\"",
                 cases[i].over, cases[i].name);
        ck_assert_str_eq(error_in(line, cases[i].precision), want);
        snprintf(line, sizeof line, "power,cluster=c kw=1 %s", cases[i].under);
        snprintf(want, sizeof want, "line 1: timestamp \"%s\" out of range for precision \"%s\"",
                 cases[i].under, cases[i].name);
        ck_assert_str_eq(error_in(line, cases[i].precision), want);
    }
    ck_assert_str_eq(error_of("power,cluster=c kw=1 99999999999999999999999"),
                     "line 1: timestamp \"99999999999999999999999\" out of range for precision "
                     "\"ns\"");
}
END_TEST

START_TEST(test_lp_parse_precision)
{
    enum lp_precision p;
    static const struct {
        const char *s;
        enum lp_precision want;
        bool v2;
    } ok[] = {
        {"", LP_PRECISION_NS, true},   {"ns", LP_PRECISION_NS, true}, {"us", LP_PRECISION_US, true},
        {"ms", LP_PRECISION_MS, true}, {"s", LP_PRECISION_S, true},   {"n", LP_PRECISION_NS, false},
        {"u", LP_PRECISION_US, false}, {"m", LP_PRECISION_M, false},  {"h", LP_PRECISION_H, false},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        p = 0;
        ck_assert_msg(lp_parse_precision(ok[i].s, true, &p), "v1 \"%s\"", ok[i].s);
        ck_assert_int_eq(p, ok[i].want);
        p = 0;
        ck_assert_int_eq(lp_parse_precision(ok[i].s, false, &p), ok[i].v2);
        if (ok[i].v2)
            ck_assert_int_eq(p, ok[i].want);
    }
    ck_assert(lp_parse_precision(NULL, false, &p));
    ck_assert_int_eq(p, LP_PRECISION_NS);
    static const char *const bad[] = {"NS", "sec", "µs", "mu", " s", "s ", "d", "nss"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!lp_parse_precision(bad[i], true, &p), "v1 \"%s\"", bad[i]);
        ck_assert_msg(!lp_parse_precision(bad[i], false, &p), "v2 \"%s\"", bad[i]);
    }
}
END_TEST

/* ---------------------------------------------------------------- */
/* Lines                                                             */

START_TEST(test_crlf_line_ends)
{
    parse_ok("power,cluster=a kw=1 5\r\n# note\r\n\r\npower,cluster=b kw=2\r\n");
    ck_assert_int_eq(rec.n, 2);
    ck_assert_str_eq(rec.cluster[1], "b");
    ck_assert_int_eq(rec.points[1].line, 4);
    ck_assert_uint_eq(stats.lines, 4);
}
END_TEST

START_TEST(test_final_cr_without_newline)
{
    parse_ok("power,cluster=a kw=1\r");
    ck_assert_int_eq(rec.n, 1);
}
END_TEST

START_TEST(test_lone_cr_is_an_error)
{
    ck_assert_error("power,cluster=a kw=1\rpower,cluster=b kw=2",
                    "line 1: invalid character 0x0D at column 21");
    ck_assert_error("power,cluster=a kw=1\r\r\n", "line 1: invalid character 0x0D at column 21");
}
END_TEST

START_TEST(test_comment_and_blank_lines_keep_line_numbers)
{
    parse_ok("# header, with = and \"quotes\"\n\n   \npower,cluster=a kw=1\n  # indented\n");
    ck_assert_int_eq(rec.points[0].line, 4);
    ck_assert_uint_eq(stats.lines, 5);
    ck_assert_error("# one\n\npower,cluster=a kw=1\n  \npower kw=1\n",
                    "line 5: missing tag \"cluster\"");
}
END_TEST

START_TEST(test_comment_may_contain_tab)
{
    parse_ok("#\tpower\tcomment\n");
    ck_assert_uint_eq(stats.lines, 1);
}
END_TEST

START_TEST(test_measurement_cannot_start_with_hash)
{
    parse_ok("#power,cluster=a kw=1\n");
    ck_assert_int_eq(rec.n, 0);
    ck_assert_uint_eq(stats.other_points, 0);
    /* Escaped, "\#" is a literal backslash and "#": a measurement. */
    parse_ok("\\#power,cluster=a kw=1\n");
    ck_assert_uint_eq(stats.other_points, 1);
}
END_TEST

START_TEST(test_leading_and_trailing_spaces)
{
    parse_ok("   power,cluster=a    kw=1    5   \n  power,cluster=b kw=2  \n");
    ck_assert_int_eq(rec.n, 2);
    ck_assert_int_eq(rec.points[0].ts_ns, 5);
    ck_assert(!rec.points[1].has_ts);
}
END_TEST

START_TEST(test_buffer_without_final_newline)
{
    parse_ok("cpu x=1\npower,cluster=a kw=1 9");
    ck_assert_int_eq(rec.n, 1);
    ck_assert_int_eq(rec.points[0].line, 2);
    ck_assert_int_eq(rec.points[0].ts_ns, 9);
    ck_assert_uint_eq(stats.lines, 2);
}
END_TEST

START_TEST(test_buffer_is_not_read_past_its_length)
{
    /* The byte after len is not part of the line (and not NUL). */
    static const char text[] = "power,cluster=a kw=12X";
    ck_assert(run_len(text, sizeof text - 2, LP_PRECISION_NS));
    ck_assert_double_eq(rec.points[0].value, 12);
}
END_TEST

START_TEST(test_empty_buffer)
{
    parse_ok("");
    ck_assert_uint_eq(stats.lines, 0);
    ck_assert(lp_parse(NULL, 0, LP_PRECISION_NS, record, &rec, &stats, &lerr));
    parse_ok("\n");
    ck_assert_uint_eq(stats.lines, 1);
}
END_TEST

START_TEST(test_callback_false_stops_the_parse)
{
    rec.reject_at = 2;
    const char *msg =
        error_of("power,cluster=a kw=1\npower,cluster=zz kw=2\npower,cluster=b kw=3\n");
    rec.reject_at = 0;
    ck_assert_str_eq(msg, "line 2: unknown cluster \"zz\"");
    ck_assert_int_eq(lerr.line, 2);
    ck_assert_int_eq(rec.n, 1);
    ck_assert_uint_eq(stats.lines, 2);
}
END_TEST

START_TEST(test_callback_false_without_message)
{
    rec.reject_at = 1;
    rec.reject_silently = true;
    const char *msg = error_of("\npower,cluster=a kw=1\n");
    rec.reject_at = 0;
    rec.reject_silently = false;
    ck_assert_str_eq(msg, "line 2: point rejected");
    ck_assert_int_eq(lerr.line, 2);
}
END_TEST

START_TEST(test_lines_after_the_first_error_are_not_reported)
{
    ck_assert_error("power,cluster=a kw=1\npower,cluster=b kw=x\npower,cluster=c kw=3\nbad",
                    "line 2: invalid value \"x\" in field \"kw\"");
    ck_assert_int_eq(rec.n, 1);
    ck_assert_str_eq(rec.cluster[0], "a");
    ck_assert_uint_eq(stats.lines, 2);
}
END_TEST

START_TEST(test_null_stats_error_and_callback_are_allowed)
{
    static const char text[] = "power,cluster=a kw=1\n";
    ck_assert(lp_parse(text, sizeof text - 1, LP_PRECISION_NS, NULL, NULL, NULL, NULL));
    ck_assert(!lp_parse("x", 1, LP_PRECISION_NS, NULL, NULL, NULL, NULL));
}
END_TEST

/* ---------------------------------------------------------------- */
/* Vectors from InfluxDB's documentation (docs-v2, line-protocol.md)  */
/* and influxdata/line-protocol's decoder_test.go                     */

START_TEST(test_influxdb_documentation_examples)
{
    static const char doc[] =
        "myMeasurement,tag1=value1,tag2=value2 fieldKey=\"fieldValue\" 1556813561098000000\n"
        "measurementName fieldKey=\"field string value\" 1556813561098000000\n"
        "myMeasurement fieldKey=1.0\n"
        "myMeasurement fieldKey=1\n"
        "myMeasurement fieldKey=-1.234456e+78\n"
        "myMeasurement fieldKey=1i\n"
        "myMeasurement fieldKey=12485903i\n"
        "myMeasurement fieldKey=-12485903i\n"
        "myMeasurement fieldKey=1u\n"
        "myMeasurement fieldKey=12485903u\n"
        "myMeasurement fieldKey=\"this is a string\"\n"
        "myMeasurement fieldKey=true\n"
        "myMeasurement fieldKey=false\n"
        "myMeasurement fieldKey=t\n"
        "myMeasurement fieldKey=f\n"
        "myMeasurement fieldKey=TRUE\n"
        "myMeasurement fieldKey=FALSE\n"
        "myMeasurementName fieldKey=\"fieldValue\" 1556813561098000000\n"
        "# Measurement name with spaces\n"
        "my\\ Measurement fieldKey=\"string value\"\n"
        "# Double quotes in a string field value\n"
        "myMeasurement fieldKey=\"\\\"string\\\" within a string\"\n"
        "# Tag keys and values with spaces\n"
        "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100\n"
        "# Emojis\n"
        "myMeasurement,tagKey=🍭 fieldKey=\"Launch 🚀\" 1556813561098000000\n"
        "# This is a comment\n"
        "myMeasurement fieldKey=\"string value\" 1556813561098000000\n"
        "home,room=Living\\ Room temp=21.1,hum=35.9,co=0i 1641024000\n";
    parse_ok(doc);
    ck_assert_uint_eq(stats.lines, 29);
    ck_assert_uint_eq(stats.other_points, 24);
    /* Quoted booleans are strings, so they are no number for kw. */
    ck_assert_error("power,cluster=c kw=\"true\"", "line 1: field \"kw\" is not a number");
}
END_TEST

START_TEST(test_line_protocol_decoder_vectors)
{
    /* all-fields-present-no-escapes */
    parse_ok("\n   # comment\n somename,tag1=val1,tag2=val2  floatfield=1,strfield=\"hello\","
             "intfield=-1i,uintfield=1u,boolfield=true  1602841605822791506\n");
    ck_assert_uint_eq(stats.other_points, 1);
    /* escaped-values: a raw newline in a string belongs to it */
    parse_ok("\n comma\\,1,equals\\==e\\,x,two=val2 field\\=x=\"fir\\\"\n,st\\\\\"  "
             "1602841605822791506\n\n # last comment\n");
    ck_assert_uint_eq(stats.other_points, 1);
    ck_assert_uint_eq(stats.lines, 5);
    /* field-value-error-after-newline-in-string: lines are physical */
    ck_assert_error("m f=\"hello\ngoodbye\nx\",gé=invalid",
                    "line 3: invalid value \"invalid\" in field \"gé\"");
    /* field-string-value-error-after-newline-in-string */
    ck_assert_error("m f=\"a\nb\",g=\"c\nd", "line 2: unterminated string in field \"g\"");
    /* multiple-entries-with-error#1: we stop at the first error */
    ck_assert_error("\nm1 value=12.0\nm2 value=2a.0\nm3 value=32.0\n",
                    "line 3: invalid number \"2a.0\" in field \"value\"");
    /* multiple-entries-with-error#2 */
    ck_assert_error("\nm1 value=12.0\nm2\nm3 value=32.0\n", "line 3: missing fields");
    /* missing-quotes */
    ck_assert_error("TestBucket FieldOné=Happy,FieldTwo=sad",
                    "line 1: invalid value \"Happy\" in field \"FieldOné\"");
    /* trailing-comma-after-measurement */
    ck_assert_error("TestBuckét, FieldOne=Happy\nnext x=1",
                    "line 1: expected tag key after \",\", found \" \"");
    /* missing-comma-after-field */
    ck_assert_error("TestBuckét TagOné=\"Happy\" FieldOne=123.45",
                    "line 1: timestamp \"FieldOne=123.45\" is not an integer");
    /* field-with-space-and-no-timestamp, missing timestamp */
    parse_ok("9 f=-7 \nb f=1\nb f=1\n");
    /* carriage-returns, carriage-return-in-comment */
    parse_ok("# foo\r\nm x=1\r\n\r\n");
    ck_assert_error("# foo\rxxx\nm x=1\r\n\r\n", "line 1: invalid character 0x0D at column 6");
    /* out-of-range-value */
    ck_assert_error("mmmé é=1e9999999999999",
                    "line 1: number \"1e9999999999999\" out of range in field \"é\"");
    /* backslash-escapes-in-tags */
    parse_ok("m,s=\\t\\r\\n\\v x=1");
    /* non-printable-ASCII-in-tag-key, -tag-value, -field-key */
    ck_assert_error("m,foo\x03=bar x=1", "line 1: invalid character 0x03 at column 6");
    ck_assert_error("m,foo=bar\x02 x=1", "line 1: invalid character 0x02 at column 10");
    ck_assert_error("m foo\x01=bar", "line 1: invalid character 0x01 at column 6");
}
END_TEST

/* ---------------------------------------------------------------- */
/* UTF-8                                                             */

START_TEST(test_invalid_utf8_in_meter_tag_value)
{
    ck_assert_error("power,cluster=c,meter=m\xff kw=1", "line 1: invalid UTF-8 at column 24");
    ck_assert_int_eq(rec.n, 0);
}
END_TEST

START_TEST(test_invalid_utf8_in_cluster_tag_value)
{
    ck_assert_error("power,cluster=qy\xfe kw=1", "line 1: invalid UTF-8 at column 17");
    /* Latin-1, as a misconfigured client sends it. */
    ck_assert_error("power,cluster=h\xe9tel kw=1", "line 1: invalid UTF-8 at column 16");
}
END_TEST

START_TEST(test_invalid_utf8_in_keys_and_measurement)
{
    ck_assert_error("power,cluster=c k\x80w=1", "line 1: invalid UTF-8 at column 18");
    ck_assert_error("pow\xe9r,cluster=c kw=1", "line 1: invalid UTF-8 at column 4");
    ck_assert_error("power,clu\xf5ster=c kw=1", "line 1: invalid UTF-8 at column 10");
    /* Other measurements too. */
    ck_assert_error("cpu,host=h\xc3 usage=1", "line 1: invalid UTF-8 at column 11");
}
END_TEST

START_TEST(test_invalid_utf8_in_comment)
{
    ck_assert_error("power,cluster=c kw=1\n# caf\xe9 au lait\n",
                    "line 2: invalid UTF-8 at column 6");
    ck_assert_int_eq(rec.n, 1);
    ck_assert_uint_eq(stats.lines, 2);
}
END_TEST

START_TEST(test_invalid_utf8_in_string_field)
{
    ck_assert_error("m s=\"na\xefve\" 1", "line 1: invalid UTF-8 at column 8");
    /* On a later line of a string that spans lines. */
    ck_assert_error("m s=\"ok\nbad\xff\" 1", "line 2: invalid UTF-8 at column 4");
}
END_TEST

START_TEST(test_encoded_surrogate_is_invalid)
{
    ck_assert_error("m s=\"\xed\xa0\x80\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xed\xbf\xbf\"", "line 1: invalid UTF-8 at column 6");
}
END_TEST

START_TEST(test_overlong_forms_are_invalid)
{
    ck_assert_error("m s=\"\xc0\xaf\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xc1\xbf\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xe0\x80\xaf\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xf0\x8f\xbf\xbf\"", "line 1: invalid UTF-8 at column 6");
}
END_TEST

START_TEST(test_code_points_past_10ffff_are_invalid)
{
    ck_assert_error("m s=\"\xf4\x90\x80\x80\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xf5\x80\x80\x80\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xff\"", "line 1: invalid UTF-8 at column 6");
}
END_TEST

START_TEST(test_stray_continuation_and_cut_sequences_are_invalid)
{
    /* The column is that of the lead byte of a cut sequence. */
    ck_assert_error("m s=\"ab\x80\"", "line 1: invalid UTF-8 at column 8");
    ck_assert_error("m s=\"\xe4\xb8\"", "line 1: invalid UTF-8 at column 6");
    ck_assert_error("m s=\"\xe4\xb8\xad\xe4\" 1", "line 1: invalid UTF-8 at column 9");
    /* Cut by the end of the buffer. */
    ck_assert_error("power,cluster=c kw=1\nm s=\"\xe4\xb8", "line 2: invalid UTF-8 at column 6");
    ck_assert_error("power,cluster=\xf0\x9f\x98", "line 1: invalid UTF-8 at column 15");
    static const char text[] = "power,cluster=c kw=1 # \xe4\xb8\xad";
    ck_assert(!run_len(text, sizeof text - 2, LP_PRECISION_NS));
    ck_assert_str_eq(lerr.msg, "line 1: invalid UTF-8 at column 24");
}
END_TEST

START_TEST(test_valid_multibyte_characters_are_accepted)
{
    parse_ok("power,cluster=中文-é,meter=😀 s=\"Launch 🚀, ü, 中\",kw=1");
    ck_assert_str_eq(rec.cluster[0], "中文-é");
    ck_assert_str_eq(rec.meter[0], "😀");
    /* The first and last code point of each length, and around the
     * surrogates: U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF,
     * U+10000, U+10FFFF. */
    parse_ok("m s=\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80"
             "\x80\xf4\x8f\xbf\xbf\"");
    /* Long runs, crossing the 8 and 32 byte blocks of the fast path. */
    parse_ok("power,cluster=a meter=1,kw=1\n"
             "# 中文中文中文中文中文中文中文中文中文中文中文中文, and some ASCII after it: "
             "0123456789abcdefghijklmnopqrstuvwxyz 😀😀😀😀😀😀😀😀😀\n");
}
END_TEST

/* An independent decoder: the bits of each code point, then the rules.
 * Returns the offset of the first character that breaks them, or n. */
static size_t first_invalid_utf8(const unsigned char *s, size_t n)
{
    static const uint32_t shortest[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t at = 0;
    while (at < n) {
        size_t len;
        uint32_t cp;
        unsigned char b = s[at];
        if (b < 0x80)
            len = 1, cp = b;
        else if ((b & 0xE0) == 0xC0)
            len = 2, cp = b & 0x1Fu;
        else if ((b & 0xF0) == 0xE0)
            len = 3, cp = b & 0x0Fu;
        else if ((b & 0xF8) == 0xF0)
            len = 4, cp = b & 0x07u;
        else
            return at;
        if (len > n - at)
            return at;
        for (size_t i = 1; i < len; i++) {
            if ((s[at + i] & 0xC0) != 0x80)
                return at;
            cp = cp << 6 | (s[at + i] & 0x3Fu);
        }
        if (cp < shortest[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return at;
        at += len;
    }
    return n;
}

/* seq[0..n) in a string field: no byte of it is a quote, a backslash or
 * a newline, so only its UTF-8 can make the line fail. */
static void check_sequence(const unsigned char *seq, size_t n)
{
    char line[16] = "m s=\"";
    memcpy(line + 5, seq, n);
    line[5 + n] = '"';
    bool ok = run_len(line, 6 + n, LP_PRECISION_NS);
    size_t bad = first_invalid_utf8(seq, n);
    ck_assert_msg(ok == (bad == n), "%02X %02X %02X %02X (%zu bytes): %s", seq[0],
                  n > 1 ? seq[1] : 0, n > 2 ? seq[2] : 0, n > 3 ? seq[3] : 0, n,
                  ok ? "accepted" : lerr.msg);
    if (!ok) {
        char want[64];
        snprintf(want, sizeof want, "line 1: invalid UTF-8 at column %zu", 6 + bad);
        ck_assert_str_eq(lerr.msg, want);
    }
}

START_TEST(test_utf8_validation_matches_a_reference_decoder)
{
    unsigned char seq[4];
    /* Every two bytes, but for a quote, a backslash or a newline. */
    for (unsigned a = 0; a <= 0xFF; a++) {
        if (a == '"' || a == '\\' || a == '\n')
            continue;
        seq[0] = (unsigned char)a;
        check_sequence(seq, 1);
        for (unsigned b = 0; b <= 0xFF; b++) {
            if (b == '"' || b == '\\' || b == '\n')
                continue;
            seq[1] = (unsigned char)b;
            check_sequence(seq, 2);
        }
    }
    /* Three and four bytes: the edges of every range. */
    static const unsigned char edges[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90,
                                          0x9F, 0xA0, 0xBE, 0xBF, 0xC0, 0xF4, 0xFF};
    size_t ne = sizeof edges;
    for (unsigned a = 0xE0; a <= 0xFF; a++) {
        seq[0] = (unsigned char)a;
        for (size_t i = 0; i < ne; i++) {
            seq[1] = edges[i];
            for (size_t j = 0; j < ne; j++) {
                seq[2] = edges[j];
                check_sequence(seq, 3);
                for (size_t k = 0; k < ne; k++) {
                    seq[3] = edges[k];
                    check_sequence(seq, 4);
                }
            }
        }
    }
}
END_TEST

START_TEST(test_refused_point_comes_before_invalid_utf8_on_a_later_line)
{
    rec.reject_at = 1;
    const char *msg = error_of("power,cluster=zz kw=1\npower,cluster=c\xff kw=2\n");
    rec.reject_at = 0;
    ck_assert_str_eq(msg, "line 1: unknown cluster \"zz\"");
    ck_assert_int_eq(lerr.line, 1);
}
END_TEST

START_TEST(test_syntax_error_comes_before_invalid_utf8_on_a_later_line)
{
    ck_assert_error("power,cluster=a kw=1\npower,cluster=b kw=x\npower,cluster=\xff kw=3\n",
                    "line 2: invalid value \"x\" in field \"kw\"");
    ck_assert_int_eq(rec.n, 1);
}
END_TEST

START_TEST(test_invalid_utf8_comes_before_other_errors_in_its_line)
{
    /* The line is refused before it is parsed. */
    ck_assert_error("power,cluster=c kw=x \xff", "line 1: invalid UTF-8 at column 22");
    ck_assert_error("power kw=1,\x01 \xff", "line 1: invalid UTF-8 at column 14");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Duplicate tag keys                                                */

/* "m" with n tags t0=v, t1=v, ... then extra, then " x=1". */
static char *many_tags(int n, const char *extra)
{
    static char line[20000];
    int o = snprintf(line, sizeof line, "m");
    for (int i = 0; i < n; i++)
        o += snprintf(line + o, sizeof line - (size_t)o, ",t%d=v", i);
    snprintf(line + o, sizeof line - (size_t)o, "%s x=1", extra);
    return line;
}

START_TEST(test_same_tag_key_twice_is_an_error)
{
    ck_assert_error("m,host=a,host=b x=1", "line 1: duplicate tag key \"host\"");
    ck_assert_error("m,host=a,host=a x=1", "line 1: duplicate tag key \"host\"");
    ck_assert_error("power,cluster=c,host=1,rack=2,host=2 kw=1",
                    "line 1: duplicate tag key \"host\"");
    ck_assert_error("power,cluster=c kw=1\ncpu,a=1,b=2,c=3,b=4 usage=1",
                    "line 2: duplicate tag key \"b\"");
}
END_TEST

START_TEST(test_keys_with_a_common_prefix_are_distinct)
{
    parse_ok("m,host=a,hostname=b,h=c,hos=d,Host=e x=1");
    ck_assert_uint_eq(stats.other_points, 1);
}
END_TEST

START_TEST(test_escaped_tag_key_twice_is_an_error)
{
    ck_assert_error("m,a\\ b=1,a\\ b=2 x=1", "line 1: duplicate tag key \"a b\"");
    ck_assert_error("m,a\\=b=1,x=0,a\\=b=2 x=1", "line 1: duplicate tag key \"a=b\"");
    /* Escapes are part of the key: these are all different. */
    parse_ok("m,a\\ b=1,a\\,b=2,a\\=b=3,ab=4,a\\b=5,a\\\\b=6 x=1");
    /* An escaped "cluster" is not the tag cluster, and not its duplicate. */
    parse_ok("power,clus\\=ter=a,cluster=b kw=1");
    ck_assert_str_eq(rec.cluster[0], "b");
}
END_TEST

START_TEST(test_first_repeated_key_is_named)
{
    /* The key whose second occurrence comes first, pairwise... */
    ck_assert_error("m,a=1,b=1,b=2,a=2 x=1", "line 1: duplicate tag key \"b\"");
    /* ...and when there are too many tags to compare pairwise. */
    char extra[64];
    snprintf(extra, sizeof extra, ",t5=w,t2=w");
    ck_assert_error(many_tags(20, extra), "line 1: duplicate tag key \"t5\"");
    snprintf(extra, sizeof extra, ",t7=w,t7=y,t1=w");
    ck_assert_error(many_tags(40, extra), "line 1: duplicate tag key \"t7\"");
}
END_TEST

START_TEST(test_many_distinct_tags_are_accepted)
{
    parse_ok(many_tags(16, ""));
    parse_ok(many_tags(17, ""));
    parse_ok(many_tags(100, ""));
    ck_assert_uint_eq(stats.other_points, 1);
    parse_ok(many_tags(1024, ""));
}
END_TEST

START_TEST(test_many_tags_with_a_duplicate_are_refused)
{
    ck_assert_error(many_tags(100, ",t42=w"), "line 1: duplicate tag key \"t42\"");
    ck_assert_error(many_tags(100, ",t0=w"), "line 1: duplicate tag key \"t0\"");
    ck_assert_error(many_tags(100, ",t99=w"), "line 1: duplicate tag key \"t99\"");
    ck_assert_error(many_tags(16, ",t3=w"), "line 1: duplicate tag key \"t3\"");
    ck_assert_error(many_tags(1023, ",t1000=w"), "line 1: duplicate tag key \"t1000\"");
}
END_TEST

START_TEST(test_keys_alike_at_both_ends_are_told_apart)
{
    /* 40 keys of one length that differ only in the middle, where the
     * sort's quick fingerprint does not look. */
    static char line[4000];
    int o = snprintf(line, sizeof line, "m");
    for (int i = 0; i < 40; i++)
        o += snprintf(line + o, sizeof line - (size_t)o, ",abcdefghij%02dklmnopqrst=v", i);
    snprintf(line + o, sizeof line - (size_t)o, " x=1");
    parse_ok(line);
    snprintf(line + o, sizeof line - (size_t)o, ",abcdefghij17klmnopqrst=w x=1");
    ck_assert_error(line, "line 1: duplicate tag key \"abcdefghij17klmnopqrst\"");
}
END_TEST

START_TEST(test_more_than_1024_tags_are_refused)
{
    ck_assert_error(many_tags(1025, ""), "line 1: more than 1024 tags");

    /* A 32 MiB line of a million tags is refused at the first one too
     * many, without comparing keys. */
    size_t cap = 40u << 20;
    char *big = malloc(cap);
    ck_assert_ptr_nonnull(big);
    size_t o = (size_t)snprintf(big, cap, "m");
    for (int i = 0; i < 1000000; i++)
        o += (size_t)snprintf(big + o, cap - o, ",t%07d=vvvvvvvvvvvvvvvvvvvvvvvvv", i);
    o += (size_t)snprintf(big + o, cap - o, " x=1");
    ck_assert_uint_ge(o, 32u << 20);
    ck_assert(!run_len(big, o, LP_PRECISION_NS));
    ck_assert_str_eq(lerr.msg, "line 1: more than 1024 tags");
    free(big);
}
END_TEST

START_TEST(test_duplicate_is_checked_after_the_tags_are_read)
{
    /* A syntax error among the tags comes first... */
    ck_assert_error("m,a=1,a=2,=x f=1", "line 1: expected tag key after \",\", found \"=\"");
    /* ...but the duplicate comes before anything in the fields. */
    ck_assert_error("m,a=1,a=2 f=x", "line 1: duplicate tag key \"a\"");
    ck_assert_error("power,cluster=a,cluster=b", "line 1: duplicate tag key \"cluster\"");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Newlines in string fields                                         */

/* tariffd price reads its input in pieces cut at a newline: a cut inside a
 * string field is not an error, the point waits for the next piece. */
START_TEST(test_stream_stops_before_a_string_cut_by_the_piece)
{
    const char text[] = "power,cluster=c1 kw=1 10\n"
                        "power,cluster=c1 note=\"a\n"
                        "b\",kw=2 20\n";
    size_t first = strlen("power,cluster=c1 kw=1 10\npower,cluster=c1 note=\"a\n");
    size_t consumed = 99;
    memset(&rec, 0, sizeof rec);
    ck_assert(lp_parse_stream(text, first, LP_PRECISION_S, record, &rec, &stats, &lerr, &consumed));
    ck_assert_uint_eq(consumed, strlen("power,cluster=c1 kw=1 10\n"));
    ck_assert_uint_eq(stats.lines, 1); /* the lines of what was consumed */
    ck_assert_int_eq(rec.n, 1);
    ck_assert_str_eq(lerr.msg, "");
    /* The rest, with what followed, parses whole; a complete buffer is
     * consumed to its end. */
    memset(&rec, 0, sizeof rec);
    ck_assert(lp_parse_stream(text + consumed, sizeof text - 1 - consumed, LP_PRECISION_S, record,
                              &rec, &stats, &lerr, &consumed));
    ck_assert_uint_eq(consumed, sizeof text - 1 - strlen("power,cluster=c1 kw=1 10\n"));
    ck_assert_int_eq(rec.n, 1);
    ck_assert_int_eq(rec.points[0].ts_ns, 20 * 1000000000LL);
    ck_assert_uint_eq(stats.lines, 2);
    /* Any other error is still an error. */
    ck_assert(
        !lp_parse_stream("power kw=1 1\n", 13, LP_PRECISION_S, NULL, NULL, NULL, &lerr, &consumed));
    ck_assert_str_eq(lerr.msg, "line 1: missing tag \"cluster\"");
}
END_TEST

START_TEST(test_raw_newline_in_string_belongs_to_the_value)
{
    parse_ok("power,cluster=c s=\"a\nb\",kw=1 10");
    ck_assert_int_eq(rec.n, 1);
    ck_assert_int_eq(rec.points[0].line, 1);
    ck_assert(rec.points[0].has_ts);
    ck_assert_int_eq(rec.points[0].ts_ns, 10);
    ck_assert_double_eq(rec.points[0].value, 1);
    ck_assert_uint_eq(stats.lines, 2);
}
END_TEST

START_TEST(test_line_numbers_stay_physical_after_a_string_over_lines)
{
    ck_assert_error("power,cluster=c s=\"a\nb\",kw=1 10\npower kw=1",
                    "line 3: missing tag \"cluster\"");
    ck_assert_int_eq(rec.n, 1);
    /* A point over three lines moves the count by three. */
    parse_ok("m s=\"a\nb\nc\" 1\npower,cluster=c kw=1\n");
    ck_assert_int_eq(rec.points[0].line, 4);
    ck_assert_uint_eq(stats.lines, 4);
    /* Columns count from the start of the physical line. */
    ck_assert_error("m s=\"a\nb\" \x01", "line 2: invalid character 0x01 at column 4");
    ck_assert_error("m s=\"a\nb\",x=1 12a", "line 2: timestamp \"12a\" is not an integer");
}
END_TEST

START_TEST(test_crlf_in_string_belongs_to_the_value)
{
    parse_ok("power,cluster=c s=\"a\r\nb\",kw=1 10\r\npower,cluster=d kw=2\r\n");
    ck_assert_int_eq(rec.n, 2);
    ck_assert_int_eq(rec.points[0].ts_ns, 10);
    ck_assert_int_eq(rec.points[1].line, 3);
    ck_assert_str_eq(rec.cluster[1], "d");
    ck_assert_uint_eq(stats.lines, 3);
}
END_TEST

START_TEST(test_unterminated_string_at_end_of_buffer)
{
    /* Named by the line of its opening quote. */
    ck_assert_error("power,cluster=c kw=1\nm s=\"abc\ndef",
                    "line 2: unterminated string in field \"s\"");
    ck_assert_error("m s=\"abc\n", "line 1: unterminated string in field \"s\"");
    ck_assert_error("m s=\"abc\r\n", "line 1: unterminated string in field \"s\"");
    ck_assert_error("m s=\"abc\\\"\n\n", "line 1: unterminated string in field \"s\"");
    ck_assert_int_eq(rec.n, 0);
}
END_TEST

START_TEST(test_errors_about_the_point_name_its_first_line)
{
    ck_assert_error("power s=\"a\nb\",kw=1", "line 1: missing tag \"cluster\"");
    ck_assert_error("\npower,cluster=c s=\"a\nb\"", "line 2: no field kw, w, kwh or wh");
    /* The value that is no number starts on line 1. */
    ck_assert_error("power,cluster=c kw=\"1\n2\"", "line 1: field \"kw\" is not a number");
    rec.reject_at = 1;
    const char *msg = error_of("power,cluster=zz s=\"a\nb\",kw=1\n");
    rec.reject_at = 0;
    ck_assert_str_eq(msg, "line 1: unknown cluster \"zz\"");
    rec.reject_at = 1;
    rec.reject_silently = true;
    msg = error_of("# c\npower,cluster=c s=\"a\nb\",kw=1\n");
    rec.reject_at = 0;
    rec.reject_silently = false;
    ck_assert_str_eq(msg, "line 2: point rejected");
    ck_assert_uint_eq(stats.lines, 3);
}
END_TEST

START_TEST(test_quotes_outside_field_values_are_literal)
{
    /* Only a field value that starts with a quote is a string. */
    parse_ok("\"m\",t=\"v kw=1\npower,cluster=\"c kw=1\nm a\"b=1,c=\"d\"\n");
    ck_assert_uint_eq(stats.lines, 3);
    ck_assert_uint_eq(stats.other_points, 2);
    ck_assert_str_eq(rec.cluster[0], "\"c");
    ck_assert_error("m x=1\"\nb\" 1", "line 1: invalid number \"1\"\" in field \"x\"");
    ck_assert_error("# \"\nm x=1\n# \"", "");
}
END_TEST

/* ---------------------------------------------------------------- */
/* The series cache                                                  */

/* Each point's memo as the callback found it (-1: no memo), after which
 * it stores its line number there. */
struct memos {
    int n;
    long long seen[MAX_POINTS];
    char meter[MAX_POINTS][32];
};

static bool note_memo(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    (void)err;
    struct memos *m = ctx;
    ck_assert_int_lt(m->n, MAX_POINTS);
    m->seen[m->n] = p->memo ? (long long)*p->memo : -1;
    snprintf(m->meter[m->n], sizeof m->meter[0], "%s", p->meter);
    m->n++;
    if (p->memo)
        *p->memo = (uint64_t)p->line;
    return true;
}

static struct memos parse_cached(struct lp_cache *cache, const char *text)
{
    struct memos m = {0};
    size_t consumed;
    ck_assert(lp_parse_cached(text, strlen(text), false, LP_PRECISION_S, cache, note_memo, &m, NULL,
                              &lerr, &consumed));
    ck_assert_uint_eq(consumed, strlen(text));
    return m;
}

START_TEST(test_memo_stays_with_the_series_key)
{
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    struct memos m = parse_cached(cache, "power,cluster=c,meter=a kw=1 10\n"
                                         "power,cluster=c,meter=b kw=1 10\n"
                                         "power,cluster=c,meter=a kw=2 20\n"
                                         "power,cluster=c,meter=a  kw=3 30\n"
                                         "power,meter=a,cluster=c kw=4 40\n");
    ck_assert_int_eq(m.n, 5);
    ck_assert_int_eq(m.seen[0], 0); /* new key */
    ck_assert_int_eq(m.seen[1], 0);
    ck_assert_int_eq(m.seen[2], 1); /* what line 1 stored */
    ck_assert_int_eq(m.seen[3], 3); /* two spaces: the key is the same bytes */
    ck_assert_int_eq(m.seen[4], 0); /* the same series written otherwise: another key */
    /* The cache outlives a parse. */
    m = parse_cached(cache, "power,cluster=c,meter=b kw=5 50\n");
    ck_assert_int_eq(m.seen[0], 2);
    lp_cache_free(cache);
}
END_TEST

static bool accept_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    (void)p;
    (void)err;
    (*(size_t *)ctx)++;
    return true;
}

/* A fleet's keys come in the same order round after round: from the
 * second round on, each key is the one the cache predicts, and is not
 * looked up by its hash, even though the index grew many times in the
 * first round. */
START_TEST(test_cache_keeps_the_order_it_learnt_as_it_grows)
{
    enum { KEYS = 3000, ROUNDS = 3 };
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    size_t hashed_after[ROUNDS], points = 0;
    char *text = malloc((size_t)KEYS * 64);
    ck_assert_ptr_nonnull(text);
    for (int r = 0; r < ROUNDS; r++) {
        size_t len = 0, consumed;
        for (int k = 0; k < KEYS; k++)
            len += (size_t)sprintf(text + len, "power,cluster=c,meter=m%04d kw=1 %d\n", k,
                                   10 * (r + 1));
        ck_assert(lp_parse_cached(text, len, false, LP_PRECISION_S, cache, accept_point, &points,
                                  NULL, &lerr, &consumed));
        hashed_after[r] = lp_cache_hashed(cache);
    }
    ck_assert_uint_eq(points, (size_t)KEYS * ROUNDS);
    ck_assert_uint_eq(lp_cache_keys(cache), KEYS);
    ck_assert_uint_eq(hashed_after[0], KEYS); /* each key once, when new */
    /* The first line of round 2 follows the last of round 1 for the first
     * time: that lookup, and no other. */
    ck_assert_uint_eq(hashed_after[ROUNDS - 1], KEYS + 1);
    lp_cache_free(cache);
    free(text);
}
END_TEST

/* Each point's memo set to its meter's number + 1, and the ahead_memo it
 * came with. */
struct aheads {
    int n;
    uint64_t ahead[64];
};

static bool note_ahead(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    (void)err;
    struct aheads *a = ctx;
    ck_assert_int_lt(a->n, 64);
    a->ahead[a->n++] = p->ahead_memo;
    ck_assert_ptr_nonnull(p->memo);
    *p->memo = (uint64_t)atoi(p->meter + 1) + 1;
    return true;
}

static bool nothing_ahead(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    (void)ctx;
    (void)err;
    ck_assert_ptr_null(p->memo);
    ck_assert_uint_eq(p->ahead_memo, 0);
    return true;
}

/* From a fleet's second round on, a point names the memo of the key that
 * comes a few points later (CACHE_AHEAD, 4), across the end of a round
 * too: what the daemon asks memory for ahead of time. */
START_TEST(test_point_names_the_memo_of_a_key_ahead)
{
    enum { KEYS = 50, ROUNDS = 3, AHEAD = 4 };
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    char text[KEYS * 64];
    struct aheads a;
    for (int r = 0; r < ROUNDS; r++) {
        size_t len = 0, consumed;
        for (int k = 0; k < KEYS; k++)
            len +=
                (size_t)sprintf(text + len, "power,cluster=c,meter=m%d kw=1 %d\n", k, 10 * (r + 1));
        a.n = 0;
        ck_assert(lp_parse_cached(text, len, false, LP_PRECISION_S, cache, note_ahead, &a, NULL,
                                  &lerr, &consumed));
        ck_assert_int_eq(a.n, KEYS);
        for (int k = 0; r > 0 && k < KEYS; k++)
            ck_assert_uint_eq(a.ahead[k], (uint64_t)((k + AHEAD) % KEYS) + 1);
    }
    /* Without a cache, no memo and nothing ahead. */
    const char *line = "power,cluster=c,meter=m1 kw=1 10\n";
    ck_assert(lp_parse(line, strlen(line), LP_PRECISION_S, nothing_ahead, NULL, NULL, &lerr));
    lp_cache_free(cache);
}
END_TEST

START_TEST(test_keys_that_are_not_cached)
{
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    /* An escaped space makes the first space not the key's end; a key
     * without a space before the line's end has no fields (an error). */
    struct memos m = parse_cached(cache, "power,cluster=c,meter=a\\ b kw=1 10\n"
                                         "power,cluster=c,meter=a\\ b kw=1 20\n"
                                         "cpu,cluster=c kw=1 10\n"
                                         "cpu,cluster=c kw=1 20\n");
    ck_assert_int_eq(m.n, 2);
    ck_assert_int_eq(m.seen[0], -1);
    ck_assert_int_eq(m.seen[1], -1);
    ck_assert_str_eq(m.meter[1], "a b");
    lp_cache_free(cache);
}
END_TEST

START_TEST(test_cached_key_gives_the_same_errors)
{
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    parse_cached(cache, "power,cluster=c,meter=a kw=1 10\n");
    const char *bad[][2] = {
        {"power,cluster=c,meter=a kw=x 20", "line 1: invalid value \"x\" in field \"kw\""},
        {"power,cluster=c,meter=a  ", "line 1: missing fields"},
        {"power,cluster=c,meter=a kw=-1 20", "line 1: field \"kw\" is negative"},
        {"power,cluster=c,meter=a v=1 20", "line 1: no field kw, w, kwh or wh"},
        {"power,cluster=c,meter=a kw=1 2x", "line 1: timestamp \"2x\" is not an integer"},
        {"power,cluster=c,meter=a kw=1,kw=2 20", "line 1: field \"kw\" given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct memos m = {0};
        size_t consumed;
        ck_assert(!lp_parse_cached(bad[i][0], strlen(bad[i][0]), false, LP_PRECISION_S, cache,
                                   note_memo, &m, NULL, &lerr, &consumed));
        ck_assert_str_eq(lerr.msg, bad[i][1]);
        ck_assert_str_eq(error_in(bad[i][0], LP_PRECISION_S), bad[i][1]);
    }
    lp_cache_free(cache);
}
END_TEST

/* After a cached key, the usual " kw=DIGITS[.DIGITS] DIGITS" is read in one
 * pass, and anything else by the full parse (parse_rest_fast). Each rest
 * below follows a line that puts its key in the cache, and run_len checks
 * that the cached parses (the warm one takes the one-pass read wherever it
 * can) give what lp_parse gives: the edges of the one-pass read on both
 * sides, in both precisions. */
START_TEST(test_cached_key_rest_read_as_the_full_parse_reads_it)
{
    static const char *const rests[] = {
        "kw=1.25 10",
        "kw=0 10",
        "kw=0.000 10",
        "kw=007.50 10",
        "kw=1. 10",
        "kw=.5 10",
        "kw=123456789012345 10",
        "kw=12345678901234.5 10",
        "kw=1234567890123456 10",
        "kw=0.1234567890123456789 10",
        "kw=1.5e3 10",
        "kw=1E2 10",
        "kw=-0 10",
        "kw=+1 10",
        "kw=1i 10",
        "kw=1u 10",
        "kw=1 10 ",
        "kw=1  10",
        "kw=1 -10",
        "kw=1 +10",
        "kw=1",
        "kw=1 ",
        "kw=1,x=2 10",
        "x=2,kw=1 10",
        "kw=1 10\r",
        "kW=1 10",
        "w=1500 10",
        "kwh=3.5 10",
        "wh=7 10",
        "kwhx=7 10",
        "kw=1 922337203685477580",
        "kw=1 9223372036854775807",
        "kw=1 9223372036854775808",
        "kw=1 999999999999999999",
        "kw=1 9223372036",
        "kw=1 9223372037",
        "kw=1 1x",
        "kw=1x 10",
        "kw=1.2.3 10",
        "kw=\"1\" 10",
        "kw=t 10",
        "kw= 10",
        "=1 10",
        "kw==1 10",
        /* Values the one-pass read would get wrong were it to take them: a
         * mantissa past 2^53 (rounded twice), past 19 digits (wrapped), and
         * one it must divide by 10^frac, never multiply by its inverse. */
        "kw=586455046669598393.0 10",
        "kw=18446744073709551617 10",
        "kw=0.3 10",
    };
    for (size_t i = 0; i < sizeof rests / sizeof rests[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=a %s\n",
                 rests[i]);
        error_in(text, LP_PRECISION_S);
        error_in(text, LP_PRECISION_NS);
    }
    /* What the one-pass read gives, looked at directly. */
    ck_assert_str_eq(error_in("power,cluster=c,meter=a kw=1 5\n"
                              "power,cluster=c,meter=a kw=123456789012.345 1764518400\n"
                              "power,cluster=c,meter=a w=0.5 9223372036\n",
                              LP_PRECISION_S),
                     "");
    ck_assert_int_eq(rec.n, 3);
    ck_assert(rec.points[1].value == 123456789012.345);
    ck_assert_int_eq(rec.points[1].ts_ns, 1764518400 * 1000000000LL);
    ck_assert_int_eq(rec.points[2].field, LP_FIELD_W);
    ck_assert(rec.points[2].value == 0.5);
    ck_assert_int_eq(rec.points[2].ts_ns, 9223372036 * 1000000000LL);
    ck_assert_str_eq(error_in("power,cluster=c,meter=a kw=1 5\n"
                              "power,cluster=c,meter=a kw=1 9223372037\n",
                              LP_PRECISION_S),
                     "line 2: timestamp \"9223372037\" out of range for precision \"s\"");
}
END_TEST

/* Every length of integer part, fraction and timestamp the one-pass read
 * takes or leaves, with more lines after it and as the buffer's last
 * bytes, gives what lp_parse gives. */
START_TEST(test_digit_runs_read_as_the_full_parse_reads_them)
{
    static const char digits[] = "9081726354453627189";
    char value[64], ts[32], text[512];
    for (int whole = 1; whole <= 20; whole++) {
        for (int frac = -1; frac <= 20; frac += whole % 3 == 0 ? 1 : 7) {
            for (int tsn = 1; tsn <= 19; tsn += 1 + (whole + frac) % 3) {
                int n = snprintf(value, sizeof value, "%.*s", whole > 19 ? 19 : whole, digits);
                if (whole > 19)
                    n += snprintf(value + n, sizeof value - (size_t)n, "0");
                if (frac >= 0)
                    snprintf(value + n, sizeof value - (size_t)n, ".%.*s%s", frac > 19 ? 19 : frac,
                             digits + 1, frac > 19 ? "5" : "");
                snprintf(ts, sizeof ts, "%.*s", tsn, digits + 2);
                for (int pad = 0; pad < 8; pad += 5) {
                    /* pad moves the rest within the buffer */
                    snprintf(text, sizeof text,
                             "power,cluster=c,meter=a kw=1 5\n"
                             "power,cluster=c,meter=a%.*s kw=1 5\n"
                             "power,cluster=c,meter=a%.*s kw=%s %s\n"
                             "power,cluster=c,meter=a kw=%s %s\n"
                             "power,cluster=c,meter=b kw=1 5\n",
                             pad, "zzzzzzz", pad, "zzzzzzz", value, ts, value, ts);
                    error_in(text, LP_PRECISION_S);
                    error_in(text, LP_PRECISION_NS);
                    /* The same rest at the very end, no newline after it. */
                    snprintf(text, sizeof text,
                             "power,cluster=c,meter=a kw=1 5\n"
                             "power,cluster=c,meter=a%.*s kw=%s %s",
                             pad, "zzzzzzz", value, ts);
                    error_in(text, LP_PRECISION_S);
                }
            }
        }
    }
    /* What it gives, looked at directly: eight, sixteen and seventeen
     * digits, and a run of digits in the bytes after a line's end (the
     * next line's) not taken into it. */
    ck_assert_str_eq(error_in("power,cluster=c,meter=a kw=1 5\n"
                              "power,cluster=c,meter=a kw=12345678 1234567890123456\n"
                              "power,cluster=c,meter=a kw=1234567.1234567891 12345678901234567\n"
                              "power,cluster=c,meter=a kw=1.5 9\n"
                              "12345678901234567890\n",
                              LP_PRECISION_NS),
                     "line 5: missing fields");
    ck_assert_int_eq(rec.n, 4);
    ck_assert(rec.points[1].value == 12345678.0);
    ck_assert_int_eq(rec.points[1].ts_ns, 1234567890123456LL);
    ck_assert(rec.points[2].value == 1234567.1234567891);
    ck_assert_int_eq(rec.points[2].ts_ns, 12345678901234567LL);
    ck_assert_int_eq(rec.points[3].ts_ns, 9);
}
END_TEST

/* A timestamp of the same bytes as the line before is not read again: only
 * the same bytes, of the same length, give the same time; a request's
 * precision applies to its own lines, whatever the request before had. */
START_TEST(test_repeated_timestamp_is_the_same_time)
{
    static const char *const pairs[][2] = {
        {"1764518400", "1764518400"},               /* the same */
        {"1764518400", "1764518401"},               /* the last byte differs */
        {"1764518400", "2764518400"},               /* the first byte differs */
        {"1764518400", "1764519400"},               /* a middle byte, in both words */
        {"12345678", "12345679"},                   /* 8 bytes: the words are one */
        {"12345678", "123456789"},                  /* a longer one that starts the same */
        {"123456789", "12345678"},                  /* a shorter one */
        {"1111111111", "111111111"},                /* shorter, the same first and last 8 */
        {"111111111", "11111111111"},               /* longer, the same first and last 8 */
        {"1234567890123456", "1234567890123457"},   /* 16 bytes */
        {"12345678901234567", "12345678901234567"}, /* 17: not kept, read each time */
        {"12345678901234567", "12345678801234567"}, /* 17, only the 9th byte differs */
        {"1234567", "1234567"},                     /* 7: not kept */
        {"1764518400", "17645184x0"},               /* the same length, not a number */
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=a kw=1 %s\n"
                 "power,cluster=c,meter=a kw=2 %s\npower,cluster=c,meter=a kw=3 %s\n",
                 pairs[i][0], pairs[i][1], pairs[i][0]);
        error_in(text, LP_PRECISION_S);
        error_in(text, LP_PRECISION_NS);
    }
    ck_assert_str_eq(error_in("power,cluster=c,meter=a kw=1 5\n"
                              "power,cluster=c,meter=a kw=1 1764518400\n"
                              "power,cluster=c,meter=a kw=1 1764518401\n"
                              "power,cluster=c,meter=a kw=1 1764518401\n"
                              "power,cluster=c,meter=a kw=1 2764518401\n",
                              LP_PRECISION_S),
                     "");
    ck_assert_int_eq(rec.points[1].ts_ns, 1764518400 * 1000000000LL);
    ck_assert_int_eq(rec.points[2].ts_ns, 1764518401 * 1000000000LL);
    ck_assert_int_eq(rec.points[3].ts_ns, 1764518401 * 1000000000LL);
    ck_assert_int_eq(rec.points[4].ts_ns, 2764518401 * 1000000000LL);
    /* A line whose space after the fields is the very end of a buffer of
     * just its size (a point without a timestamp), before any timestamp
     * was kept: nothing past it is read (which the sanitizer build would
     * report). */
    static const char bare[] = "power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=a kw=1 ";
    char *exact = malloc(sizeof bare - 1);
    memcpy(exact, bare, sizeof bare - 1);
    ck_assert(run_len(exact, sizeof bare - 1, LP_PRECISION_S));
    free(exact);
    ck_assert_int_eq(rec.n, 2);
    ck_assert(!rec.points[1].has_ts);
    /* One cache, two requests in two precisions, the same bytes. */
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    static const char body[] = "power,cluster=c,meter=a kw=1 1764518400\n"
                               "power,cluster=c,meter=a kw=1 1764518400\n";
    size_t consumed;
    struct lp_error e;
    memset(&rec, 0, sizeof rec);
    ck_assert(lp_parse_cached(body, sizeof body - 1, false, LP_PRECISION_S, cache, record, &rec,
                              NULL, &e, &consumed));
    ck_assert(lp_parse_cached(body, sizeof body - 1, false, LP_PRECISION_MS, cache, record, &rec,
                              NULL, &e, &consumed));
    ck_assert_int_eq(rec.n, 4);
    ck_assert_int_eq(rec.points[1].ts_ns, 1764518400 * 1000000000LL);
    ck_assert_int_eq(rec.points[2].ts_ns, 1764518400 * 1000000LL);
    ck_assert_int_eq(rec.points[3].ts_ns, 1764518400 * 1000000LL);
    lp_cache_free(cache);
}
END_TEST

/* The key that came next last time is taken without a search for the
 * line's first space only when the line holds that key whole and a space
 * right after it: a longer key it begins, a line that ends inside or right
 * after it, are read as any other line. */
START_TEST(test_predicted_key_is_only_taken_whole)
{
    static const char *const lines[] = {
        "power,cluster=c,meter=bb kw=2 7",    "power,cluster=c,meter=b",
        "power,cluster=c,meter=b ",           "power,cluster=c,meter",
        "power,cluster=c,meter=b,x=y kw=2 7", "power,cluster=c,meter=b\tkw=2 7",
        "power,cluster=c,meter=b kw=2 7",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char text[256];
        /* Twice a then b, so a predicts b, then a and the line. */
        snprintf(text, sizeof text,
                 "power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=b kw=1 5\n"
                 "power,cluster=c,meter=a kw=1 6\npower,cluster=c,meter=b kw=1 6\n"
                 "power,cluster=c,meter=a kw=1 7\n%s\npower,cluster=c,meter=a kw=1 8\n",
                 lines[i]);
        error_in(text, LP_PRECISION_S);
    }
    ck_assert_str_eq(error_in("power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=b kw=1 5\n"
                              "power,cluster=c,meter=a kw=1 6\npower,cluster=c,meter=bb kw=3 6\n",
                              LP_PRECISION_S),
                     "");
    ck_assert_str_eq(rec.meter[3], "bb");
    ck_assert(rec.points[3].value == 3.0);
    /* A line shorter than the predicted key, at the very end of a buffer
     * of just its size: nothing past it is read (which the sanitizer
     * build would report). */
    static const char tail[] = "power,cluster=c,meter=a kw=1 5\npower,cluster=c,meter=b kw=1 5\n"
                               "power,cluster=c,meter=a kw=1 6\npower,cluster=c,meter";
    char *exact = malloc(sizeof tail - 1);
    memcpy(exact, tail, sizeof tail - 1);
    ck_assert(!run_len(exact, sizeof tail - 1, LP_PRECISION_S));
    ck_assert_str_eq(lerr.msg, "line 4: expected \"=\" after tag key \"meter\", found end of line");
    free(exact);
}
END_TEST

/* The usual line is read in one pass without first finding its end
 * (fast_line): only when its timestamp is followed by "\n" or "\r\n". Any
 * other byte after it, or the end of the input, is read the full way, with
 * the same points, lines and errors. */
START_TEST(test_a_line_read_in_one_pass_ends_at_its_newline)
{
    static const char *const endings[] = {"x", "\r", " ", ",", ".", "\t", "\r\r", "0x"};
    for (size_t i = 0; i < sizeof endings / sizeof endings[0]; i++) {
        char text[512];
        /* a then b twice over, so a predicts b; the timestamps repeat. */
        snprintf(
            text, sizeof text,
            "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=1 1764518400\n"
            "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=1 1764518400\n"
            "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=1 1764518400%s\n"
            "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=x 1\n",
            endings[i]);
        const char *err = error_in(text, LP_PRECISION_S);
        if (strcmp(endings[i], "\r") == 0 || strcmp(endings[i], " ") == 0) /* allowed */
            ck_assert_str_eq(err, "line 8: invalid value \"x\" in field \"kw\"");
        else
            ck_assert_msg(strncmp(err, "line 6: ", 8) == 0, "ending %zu: %s", i, err);
    }
    /* The input ends right after a repeated timestamp: nothing past it is
     * read (which the sanitizer build would report). */
    static const char tail[] =
        "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=1 1764518400\n"
        "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=1 1764518400\n"
        "power,cluster=c,meter=a kw=1 1764518400\npower,cluster=c,meter=b kw=2 1764518400";
    char *exact = malloc(sizeof tail - 1);
    memcpy(exact, tail, sizeof tail - 1);
    ck_assert(run_len(exact, sizeof tail - 1, LP_PRECISION_S));
    ck_assert_int_eq(rec.n, 6);
    ck_assert(rec.points[5].value == 2.0);
    free(exact);
}
END_TEST

START_TEST(test_cache_holds_many_keys)
{
    /* More keys than the cache's first table: entered in one order, then
     * found in the same order (where each key's successor is looked at
     * first), then in the reverse order (where that guess is always
     * wrong): each time every key finds the line number its first time
     * stored, and its own cluster and meter. */
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    enum { KEYS = 5000 };
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < KEYS; i++) {
            int k = round == 2 ? KEYS - 1 - i : i;
            char line[96], meter[16];
            snprintf(line, sizeof line, "power,cluster=c%d,meter=m%d kw=1 %d\n", k % 7, k,
                     10 + round);
            snprintf(meter, sizeof meter, "m%d", k);
            struct memos m = parse_cached(cache, line);
            ck_assert_int_eq(m.n, 1);
            if (m.seen[0] != (round == 0 ? 0 : 1) || strcmp(m.meter[0], meter) != 0)
                ck_abort_msg("round %d, key %d: memo %lld, meter %s", round, k, m.seen[0],
                             m.meter[0]);
        }
    }
    lp_cache_free(cache);
}
END_TEST

/* How many mappings of this process have the kernel's huge page advice
 * (the "hg" of VmFlags in /proc/self/smaps). */
static int mappings_advised_huge(void)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " hg") != NULL;
    fclose(f);
    return n;
}

START_TEST(test_a_large_cache_is_kept_in_huge_pages)
{
    /* 100,000 keys: a table of 12 MB, reached at random, asks for huge
     * pages (the only block of this size the test makes). */
    /* Not on a kernel without transparent huge pages, nor where the C
     * library advises every large block itself. */
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0 ||
        (tunables && strstr(tunables, "hugetlb")))
        return;
    int before = mappings_advised_huge();
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    enum { KEYS = 100000 };
    size_t cap = (size_t)KEYS * 48, len = 0;
    char *text = malloc(cap);
    for (int k = 0; k < KEYS; k++)
        len += (size_t)snprintf(text + len, cap - len, "power,cluster=c,meter=m%d kw=1 10\n", k);
    size_t consumed;
    ck_assert(lp_parse_cached(text, len, false, LP_PRECISION_S, cache, NULL, NULL, NULL, &lerr,
                              &consumed));
    ck_assert_uint_gt(lp_cache_keys(cache), KEYS / 2); /* a few may be too far from their slot */
    ck_assert_int_gt(mappings_advised_huge(), before);
    lp_cache_free(cache);
    free(text);
}
END_TEST

START_TEST(test_cache_is_bounded)
{
    /* A tag whose value changes on every line makes every key new: the
     * cache empties itself rather than hold more than its keys (or, for
     * long keys, more text than 128 bytes a key), and every point still
     * parses right. */
    struct lp_cache *cache = lp_cache_new(100);
    char pad[200];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    size_t most = 0;
    for (int k = 0; k < 3000; k++) {
        char line[400], meter[16];
        snprintf(line, sizeof line, "power,cluster=c,meter=m%d,pad=%s,n=%d kw=1 10\n", k % 10,
                 k % 2 ? pad : "y", k);
        snprintf(meter, sizeof meter, "m%d", k % 10);
        struct memos m = parse_cached(cache, line);
        ck_assert_int_eq(m.n, 1);
        ck_assert_str_eq(m.meter[0], meter);
        if (lp_cache_keys(cache) > most)
            most = lp_cache_keys(cache);
    }
    ck_assert_uint_le(most, 100);
    ck_assert_uint_ge(most, 50); /* 100 x 128 bytes hold at least 50 of these keys */
    lp_cache_free(cache);
}
END_TEST

/* Keys that collide in full under a known seed, made up as a sender
 * that knew the seed would: lineproto.c's key_hash for 40-byte keys, run
 * backwards from a chosen hash to the last 8 bytes. */
static uint64_t load8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static uint64_t inverse_mul(uint64_t a) /* a odd: a * inverse_mul(a) == 1 mod 2^64 */
{
    uint64_t x = a;
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static uint64_t inverse_xorshift(uint64_t y, int s) /* of y ^= y >> s */
{
    uint64_t x = y;
    for (int i = s; i < 64; i += s)
        x ^= y >> i;
    return x;
}

START_TEST(test_keys_made_to_collide_are_not_probed_for)
{
    const uint64_t seed = 12345, target = UINT64_C(0x123456789ABCDEF1);
    /* The state before the last word is XORed in, undone from the hash. */
    uint64_t x = inverse_xorshift(target, 31);
    x *= inverse_mul(UINT64_C(0x94D049BB133111EB));
    x = inverse_xorshift(x, 27);
    x *= inverse_mul(UINT64_C(0xBF58476D1CE4E5B9));
    x = inverse_xorshift(x, 30);
    enum { KEYS = 100 };
    static char text[KEYS * 64];
    size_t len = 0;
    int made = 0;
    for (uint64_t ctr = 1; made < KEYS && ctr < (UINT64_C(1) << 32); ctr++) {
        char key[48];
        snprintf(key, sizeof key, "power,cluster=c,j=%014llx",
                 (unsigned long long)(ctr * UINT64_C(0x9E3779B97F4A7C15) >> 8));
        ck_assert_uint_eq(strlen(key), 32);
        uint64_t h = (seed ^ 40) * UINT64_C(0x9E3779B97F4A7C15);
        for (size_t i = 0; i + 8 < 40; i += 8) {
            h = (h ^ load8(key + i)) * UINT64_C(0xFF51AFD7ED558CCD);
            h ^= h >> 32;
        }
        uint64_t last = x ^ h;
        unsigned char b[8];
        memcpy(b, &last, 8);
        bool tag_bytes = true; /* printable, and nothing the grammar stops at */
        for (int i = 0; i < 8; i++)
            tag_bytes &= b[i] > 0x20 && b[i] < 0x7F && b[i] != ',' && b[i] != '=' && b[i] != '\\' &&
                         b[i] != '"';
        if (!tag_bytes)
            continue;
        memcpy(key + 32, b, 8);
        len += (size_t)snprintf(text + len, sizeof text - len, "%.40s kw=1 1\n", key);
        made++;
    }
    ck_assert_int_eq(made, KEYS);
    /* All of them parse, as without a cache; the cache keeps those within
     * 64 slots of their one slot (CACHE_PROBES_MAX) and parses the others
     * in full. */
    struct lp_cache *cache = lp_cache_new_seeded(SIZE_MAX, seed);
    struct lp_stats st;
    size_t consumed;
    ck_assert(lp_parse_cached(text, len, false, LP_PRECISION_S, cache, NULL, NULL, &st, &lerr,
                              &consumed));
    ck_assert_uint_eq(st.power_points, KEYS);
    ck_assert_uint_eq(lp_cache_keys(cache), 64);
    ck_assert(lp_parse_cached(text, len, false, LP_PRECISION_S, cache, NULL, NULL, &st, &lerr,
                              &consumed));
    ck_assert_uint_eq(st.power_points, KEYS);
    ck_assert_uint_eq(lp_cache_keys(cache), 64);
    lp_cache_free(cache);
}
END_TEST

static Suite *lineproto_suite(void)
{
    Suite *s = suite_create("lineproto");

    TCase *points = tcase_create("points");
    tcase_add_test(points, test_typical_line_gives_one_point);
    tcase_add_test(points, test_meter_defaults_to_main);
    tcase_add_test(points, test_each_energy_field_is_recognised);
    tcase_add_test(points, test_line_without_timestamp_has_none);
    tcase_add_test(points, test_tag_order_does_not_matter);
    tcase_add_test(points, test_other_tags_and_fields_are_parsed_then_ignored);
    tcase_add_test(points, test_measurement_must_be_exactly_power);
    tcase_add_test(points, test_valid_line_of_another_measurement_is_counted);
    tcase_add_test(points, test_malformed_line_of_another_measurement_is_an_error);
    suite_add_tcase(s, points);

    TCase *escaping = tcase_create("escaping");
    tcase_add_test(escaping, test_escaped_comma_in_tag_value);
    tcase_add_test(escaping, test_escaped_space_and_equals_in_tag_value);
    tcase_add_test(escaping, test_other_backslashes_in_tag_value_are_literal);
    tcase_add_test(escaping, test_backslash_before_an_escapable_byte_always_escapes_it);
    tcase_add_test(escaping, test_quotes_in_tag_values_are_literal);
    tcase_add_test(escaping, test_escaped_measurement_is_not_power);
    tcase_add_test(escaping, test_equals_sign_in_measurement_is_literal);
    tcase_add_test(escaping, test_escaped_tag_key_is_not_cluster);
    tcase_add_test(escaping, test_escaped_field_keys);
    tcase_add_test(escaping, test_escaped_quote_and_backslash_in_string_field);
    tcase_add_test(escaping, test_other_backslashes_in_string_field_are_literal);
    tcase_add_test(escaping, test_string_field_may_contain_any_byte);
    tcase_add_test(escaping, test_utf8_is_accepted);
    suite_add_tcase(s, escaping);

    TCase *types = tcase_create("field types");
    tcase_set_timeout(types, 30);
    tcase_add_test(types, test_float_forms);
    tcase_add_test(types, test_invalid_floats);
    tcase_add_test(types, test_floats_equal_strtod);
    tcase_add_test(types, test_very_long_float_is_exact);
    tcase_add_test(types, test_integer_fields);
    tcase_add_test(types, test_integer_out_of_range);
    tcase_add_test(types, test_invalid_integers);
    tcase_add_test(types, test_unsigned_fields);
    tcase_add_test(types, test_booleans);
    tcase_add_test(types, test_unquoted_string_is_an_error);
    tcase_add_test(types, test_float_overflow_in_other_field_is_an_error);
    suite_add_tcase(s, types);

    TCase *power = tcase_create("power");
    tcase_add_test(power, test_missing_cluster);
    tcase_add_test(power, test_empty_tag_value_is_an_error);
    tcase_add_test(power, test_no_energy_field);
    tcase_add_test(power, test_two_energy_fields);
    tcase_add_test(power, test_energy_field_must_be_a_number);
    tcase_add_test(power, test_negative_energy_value);
    tcase_add_test(power, test_non_finite_energy_value);
    tcase_add_test(power, test_duplicate_cluster_or_meter_tag);
    tcase_add_test(power, test_cluster_longer_than_256_bytes);
    tcase_add_test(power, test_tag_length_counts_unescaped_bytes);
    tcase_add_test(power, test_long_values_of_other_tags_are_fine);
    suite_add_tcase(s, power);

    TCase *syntax = tcase_create("syntax");
    tcase_add_test(syntax, test_syntax_errors_in_measurement_and_tags);
    tcase_add_test(syntax, test_equals_after_tag_value_is_an_error);
    tcase_add_test(syntax, test_syntax_errors_in_fields);
    tcase_add_test(syntax, test_syntax_errors_in_timestamp);
    tcase_add_test(syntax, test_control_characters_are_errors);
    tcase_add_test(syntax, test_long_values_are_cut_in_messages);
    tcase_add_test(syntax, test_message_cut_keeps_utf8_whole);
    tcase_add_test(syntax, test_escaped_key_is_unescaped_in_messages);
    suite_add_tcase(s, syntax);

    TCase *time = tcase_create("timestamps");
    tcase_add_test(time, test_every_precision_scales_the_timestamp);
    tcase_add_test(time, test_timestamp_overflow_for_each_precision);
    tcase_add_test(time, test_lp_parse_precision);
    suite_add_tcase(s, time);

    TCase *lines = tcase_create("lines");
    tcase_add_test(lines, test_crlf_line_ends);
    tcase_add_test(lines, test_final_cr_without_newline);
    tcase_add_test(lines, test_lone_cr_is_an_error);
    tcase_add_test(lines, test_comment_and_blank_lines_keep_line_numbers);
    tcase_add_test(lines, test_comment_may_contain_tab);
    tcase_add_test(lines, test_measurement_cannot_start_with_hash);
    tcase_add_test(lines, test_leading_and_trailing_spaces);
    tcase_add_test(lines, test_buffer_without_final_newline);
    tcase_add_test(lines, test_buffer_is_not_read_past_its_length);
    tcase_add_test(lines, test_empty_buffer);
    tcase_add_test(lines, test_callback_false_stops_the_parse);
    tcase_add_test(lines, test_callback_false_without_message);
    tcase_add_test(lines, test_lines_after_the_first_error_are_not_reported);
    tcase_add_test(lines, test_null_stats_error_and_callback_are_allowed);
    suite_add_tcase(s, lines);

    TCase *utf8 = tcase_create("utf-8");
    tcase_set_timeout(utf8, 60);
    tcase_add_test(utf8, test_invalid_utf8_in_meter_tag_value);
    tcase_add_test(utf8, test_invalid_utf8_in_cluster_tag_value);
    tcase_add_test(utf8, test_invalid_utf8_in_keys_and_measurement);
    tcase_add_test(utf8, test_invalid_utf8_in_comment);
    tcase_add_test(utf8, test_invalid_utf8_in_string_field);
    tcase_add_test(utf8, test_encoded_surrogate_is_invalid);
    tcase_add_test(utf8, test_overlong_forms_are_invalid);
    tcase_add_test(utf8, test_code_points_past_10ffff_are_invalid);
    tcase_add_test(utf8, test_stray_continuation_and_cut_sequences_are_invalid);
    tcase_add_test(utf8, test_valid_multibyte_characters_are_accepted);
    tcase_add_test(utf8, test_utf8_validation_matches_a_reference_decoder);
    tcase_add_test(utf8, test_refused_point_comes_before_invalid_utf8_on_a_later_line);
    tcase_add_test(utf8, test_syntax_error_comes_before_invalid_utf8_on_a_later_line);
    tcase_add_test(utf8, test_invalid_utf8_comes_before_other_errors_in_its_line);
    suite_add_tcase(s, utf8);

    TCase *dup = tcase_create("duplicate tags");
    tcase_set_timeout(dup, 60);
    tcase_add_test(dup, test_same_tag_key_twice_is_an_error);
    tcase_add_test(dup, test_keys_with_a_common_prefix_are_distinct);
    tcase_add_test(dup, test_escaped_tag_key_twice_is_an_error);
    tcase_add_test(dup, test_first_repeated_key_is_named);
    tcase_add_test(dup, test_many_distinct_tags_are_accepted);
    tcase_add_test(dup, test_many_tags_with_a_duplicate_are_refused);
    tcase_add_test(dup, test_keys_alike_at_both_ends_are_told_apart);
    tcase_add_test(dup, test_more_than_1024_tags_are_refused);
    tcase_add_test(dup, test_duplicate_is_checked_after_the_tags_are_read);
    suite_add_tcase(s, dup);

    TCase *strings = tcase_create("newlines in strings");
    tcase_add_test(strings, test_raw_newline_in_string_belongs_to_the_value);
    tcase_add_test(strings, test_stream_stops_before_a_string_cut_by_the_piece);
    tcase_add_test(strings, test_line_numbers_stay_physical_after_a_string_over_lines);
    tcase_add_test(strings, test_crlf_in_string_belongs_to_the_value);
    tcase_add_test(strings, test_unterminated_string_at_end_of_buffer);
    tcase_add_test(strings, test_errors_about_the_point_name_its_first_line);
    tcase_add_test(strings, test_quotes_outside_field_values_are_literal);
    suite_add_tcase(s, strings);

    TCase *cache = tcase_create("series cache");
    tcase_set_timeout(cache, 60); /* the digit runs take seconds under the sanitizers */
    tcase_add_test(cache, test_memo_stays_with_the_series_key);
    tcase_add_test(cache, test_cache_keeps_the_order_it_learnt_as_it_grows);
    tcase_add_test(cache, test_point_names_the_memo_of_a_key_ahead);
    tcase_add_test(cache, test_keys_that_are_not_cached);
    tcase_add_test(cache, test_cached_key_gives_the_same_errors);
    tcase_add_test(cache, test_cached_key_rest_read_as_the_full_parse_reads_it);
    tcase_add_test(cache, test_digit_runs_read_as_the_full_parse_reads_them);
    tcase_add_test(cache, test_repeated_timestamp_is_the_same_time);
    tcase_add_test(cache, test_predicted_key_is_only_taken_whole);
    tcase_add_test(cache, test_a_line_read_in_one_pass_ends_at_its_newline);
    tcase_add_test(cache, test_cache_holds_many_keys);
    tcase_add_test(cache, test_a_large_cache_is_kept_in_huge_pages);
    tcase_add_test(cache, test_cache_is_bounded);
    tcase_add_test(cache, test_keys_made_to_collide_are_not_probed_for);
    suite_add_tcase(s, cache);

    TCase *vectors = tcase_create("vectors");
    tcase_add_test(vectors, test_influxdb_documentation_examples);
    tcase_add_test(vectors, test_line_protocol_decoder_vectors);
    suite_add_tcase(s, vectors);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lineproto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
