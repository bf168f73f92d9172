/*
 * ledger_model: a model of the PostgreSQL ledger for the engine's unit
 * tests (test_reprice.c, test_backfill.c). Every row a sink gets is summed
 * per interval and per month, with its subsidy lines per programme, as the
 * ledger's views sum revisions; and the engines that fill it.
 *
 * The base config: interval 15m, +08:00, valley 0.25 (00:00-08:00), flat
 * 0.5 (08:00-18:00, 23:00-24:00), peak 1.0 (18:00-23:00), surcharge 0.02,
 * demand 30 CNY/kW-month; c1 (tenant t1) has a domestic share of 0.75, c2
 * (tenant t1) 0.5; programme pa pays 0.5 of the energy charge pro rata.
 */
#ifndef TESTS_LEDGER_MODEL_H
#define TESTS_LEDGER_MODEL_H

#include "civil.h"
#include "config.h"
#include "engine.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define NS    1000000000LL

static const char base_config[] =
    "[daemon]\ninterval = 15m\nmax_gap = 5m\ngrace = 2m\nlate_window = 6h\nmax_subsidy = 0.5\n"
    "[tenant t1]\ntoken_sha256 = " TOKEN "\n"
    "[chip dom]\nvendor = A\ndomestic = yes\nrated_kw = 1\n"
    "[chip for]\nvendor = B\ndomestic = no\nrated_kw = 1\n"
    "[site s1]\nprovince = p1\ntariff = tf\n"
    "[cluster c1]\ntenant = t1\nsite = s1\ninventory = dom*3, for*1\ntransformer_kva = 1000\n"
    "contract_kw = 100\n"
    "[cluster c2]\ntenant = t1\nsite = s1\ninventory = dom*1, for*1\ntransformer_kva = 500\n"
    "contract_kw = 50\n"
    "[tariff tf @ 2025-01-01]\nutc_offset = +08:00\nprice.valley = 0.25\nprice.flat = 0.5\n"
    "price.peak = 1.0\nsurcharge = 0.02\n"
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\nmonths = jan-dec base\n"
    "demand_basis = max_demand\ndemand.kw = 30\n"
    "[programme pa]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5\n"
    "basis = energy\nmode = pro_rata\n";

/* ---------------------------------------------------------------- */
/* The ledger model                                                  */

#define MAX_LINES              4
#define LEDGER_MODEL_INTERVALS 16384

struct lines_sum {
    size_t n;
    char programme[MAX_LINES][16];
    int64_t amount[MAX_LINES];
};

struct l_interval {
    char cluster[16];
    int64_t start_s;
    int32_t month_day;
    int32_t revision;
    int64_t kwh, energy, surcharge, subsidy, net, missing_s;
    struct lines_sum lines;
};

struct l_month {
    char cluster[16];
    int32_t month_day;
    int32_t revision;
    int64_t max_kw, max_start_s, billing_kw, charge, subsidy, net;
    int32_t days_in_service; /* of the latest revision; -1: a whole month */
    struct lines_sum lines;
};

struct ledger {
    struct l_interval iv[LEDGER_MODEL_INTERVALS];
    size_t n_iv;
    struct l_month mo[32];
    size_t n_mo;
    size_t rows; /* every row received */
};

static void add_lines(struct lines_sum *s, const struct paid_line *lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < s->n && strcmp(s->programme[k], lines[i].programme) != 0)
            k++;
        if (k == s->n) {
            ck_assert_uint_lt(s->n, MAX_LINES);
            snprintf(s->programme[s->n++], sizeof s->programme[0], "%s", lines[i].programme);
        }
        s->amount[k] += lines[i].amount_cny4;
    }
}

static int64_t line_of(const struct lines_sum *s, const char *programme)
{
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->programme[k], programme) == 0)
            return s->amount[k];
    return 0;
}

static void on_billing(void *ctx, const struct billing_row *r)
{
    struct ledger *l = ctx;
    l->rows++;
    struct l_interval *x = NULL;
    for (size_t i = 0; i < l->n_iv && !x; i++)
        if (l->iv[i].start_s == r->interval_start_s &&
            strcmp(l->iv[i].cluster, r->cluster->id) == 0)
            x = &l->iv[i];
    if (!x) {
        ck_assert_uint_lt(l->n_iv, LEDGER_MODEL_INTERVALS);
        ck_assert_int_eq(r->revision, 0);
        x = &l->iv[l->n_iv++];
        memset(x, 0, sizeof *x);
        snprintf(x->cluster, sizeof x->cluster, "%s", r->cluster->id);
        x->start_s = r->interval_start_s;
        x->month_day = r->month_day;
        x->revision = -1;
    }
    ck_assert_int_eq(r->revision, x->revision + 1); /* each revision once, in order */
    x->revision = r->revision;
    x->kwh += r->kwh_micro;
    x->energy += r->energy_charge_cny4;
    x->surcharge += r->surcharge_cny4;
    x->subsidy += r->subsidy_cny4;
    x->net += r->net_cny4;
    x->missing_s += r->missing_s;
    add_lines(&x->lines, r->lines, r->n_lines);
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    struct ledger *l = ctx;
    l->rows++;
    struct l_month *x = NULL;
    for (size_t i = 0; i < l->n_mo && !x; i++)
        if (l->mo[i].month_day == r->month_day && strcmp(l->mo[i].cluster, r->cluster->id) == 0)
            x = &l->mo[i];
    if (!x) {
        ck_assert_uint_lt(l->n_mo, 32);
        ck_assert_int_eq(r->revision, 0);
        x = &l->mo[l->n_mo++];
        memset(x, 0, sizeof *x);
        snprintf(x->cluster, sizeof x->cluster, "%s", r->cluster->id);
        x->month_day = r->month_day;
        x->revision = -1;
    }
    ck_assert_int_eq(r->revision, x->revision + 1);
    x->revision = r->revision;
    x->max_kw = r->max_kw_micro;
    x->max_start_s = r->max_interval_start_s;
    x->billing_kw = r->billing_kw_micro;
    x->days_in_service = r->prorated ? r->days_in_service : -1;
    x->charge += r->charge_cny4;
    x->subsidy += r->subsidy_cny4;
    x->net += r->net_cny4;
    add_lines(&x->lines, r->lines, r->n_lines);
}

/* ---------------------------------------------------------------- */
/* Engines                                                           */

static const struct engine_sink sink_into = {NULL, on_billing, on_demand, NULL, NULL};

struct run {
    struct config *cfg;
    struct engine *e;
    struct ledger *l;
    int64_t now_ns;
};

static struct config *parse(const char *text)
{
    struct errors errs = {0};
    struct config *c = config_from_string("t.conf", text, &errs);
    ck_assert_msg(c != NULL, "config: %s", errs.n ? errs.msgs[0] : "?");
    errors_free(&errs);
    return c;
}

static void run_start(struct run *r, const char *text, struct ledger *l)
{
    memset(r, 0, sizeof *r);
    r->cfg = parse(text);
    r->l = l;
    struct engine_sink s = sink_into;
    s.ctx = l;
    r->e = engine_new(r->cfg, &s);
    engine_caps_recovered(r->e);
}

static void run_stop(struct run *r)
{
    engine_free(r->e);
    config_free(r->cfg);
}

__attribute__((unused)) static const char *edit(const char *text, const char *from, const char *to)
{
    static char bufs[4][8192];
    static int which;
    char *buf = bufs[which = (which + 1) % 4];
    const char *at = strstr(text, from);
    ck_assert_msg(at != NULL, "edit: \"%s\" not found", from);
    snprintf(buf, sizeof bufs[0], "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return buf;
}

static int64_t L(int y, int mo, int d, int hh, int mm)
{
    return civil_day_start_ts(civil_to_day((struct civil_date){y, mo, d}), 8 * 3600) + hh * 3600 +
           mm * 60;
}

static void push(struct run *r, const char *cluster, int64_t ts_s, double kw)
{
    struct engine_sample s = {cluster, "main", SAMPLE_POWER, ts_s * NS, kw};
    struct error err;
    if (ts_s * NS > r->now_ns)
        r->now_ns = ts_s * NS;
    ck_assert_msg(engine_push(r->e, &s, r->now_ns, &err), "push: %s", err.msg);
    engine_batch_done(r->e, r->now_ns);
}

static void expect_same_ledger(const struct ledger *got, const struct ledger *want)
{
    ck_assert_uint_eq(got->n_iv, want->n_iv);
    for (size_t i = 0; i < want->n_iv; i++) {
        const struct l_interval *w = &want->iv[i], *g = NULL;
        for (size_t k = 0; k < got->n_iv && !g; k++)
            if (got->iv[k].start_s == w->start_s && strcmp(got->iv[k].cluster, w->cluster) == 0)
                g = &got->iv[k];
        ck_assert_msg(g != NULL, "%s %lld missing", w->cluster, (long long)w->start_s);
        ck_assert_int_eq(g->kwh, w->kwh);
        ck_assert_int_eq(g->energy, w->energy);
        ck_assert_int_eq(g->surcharge, w->surcharge);
        ck_assert_int_eq(g->subsidy, w->subsidy);
        ck_assert_int_eq(g->net, w->net);
        ck_assert_int_eq(g->missing_s, w->missing_s);
        ck_assert_int_eq(line_of(&g->lines, "pa"), line_of(&w->lines, "pa"));
        ck_assert_int_eq(line_of(&g->lines, "pb"), line_of(&w->lines, "pb"));
    }
    ck_assert_uint_eq(got->n_mo, want->n_mo);
    for (size_t i = 0; i < want->n_mo; i++) {
        const struct l_month *w = &want->mo[i], *g = NULL;
        for (size_t k = 0; k < got->n_mo && !g; k++)
            if (got->mo[k].month_day == w->month_day && strcmp(got->mo[k].cluster, w->cluster) == 0)
                g = &got->mo[k];
        ck_assert(g != NULL);
        ck_assert_int_eq(g->max_kw, w->max_kw);
        ck_assert_int_eq(g->max_start_s, w->max_start_s);
        ck_assert_int_eq(g->billing_kw, w->billing_kw);
        ck_assert_int_eq(g->days_in_service, w->days_in_service);
        ck_assert_int_eq(g->charge, w->charge);
        ck_assert_int_eq(g->subsidy, w->subsidy);
        ck_assert_int_eq(g->net, w->net);
        ck_assert_int_eq(line_of(&g->lines, "pa"), line_of(&w->lines, "pa"));
        ck_assert_int_eq(line_of(&g->lines, "pb"), line_of(&w->lines, "pb"));
    }
}

#endif
