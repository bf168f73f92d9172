/*
 * Unit tests for engine_reprice (tariff/reprice.h): a correction priced
 * from a ledger's sums gives the ledger that pricing the same samples
 * under the corrected config gives, a second one gives nothing, and caps
 * go in the documented order.
 *
 * The ledger is tests/ledger_model.h's model of the PostgreSQL one, read
 * back as reprice chunks the way the daemon reads them.
 */
#include "ledger_model.h"
#include "reprice.h"

static int32_t month_of(int64_t ts_s)
{
    struct civil_date d = civil_from_day(civil_local_day(ts_s, 8 * 3600));
    d.day = 1;
    return civil_to_day(d);
}

/* The chunks of every cluster-month with an interval starting in
 * [from_s, to_s), as the daemon reads them from PostgreSQL: months in
 * order, clusters by id. Everything points into *storage. */
struct chunks {
    struct reprice_chunk v[16];
    size_t n;
    struct reprice_interval iv[2048];
    struct reprice_paid paid[4096];
    size_t n_iv, n_paid;
};

static const struct reprice_paid *paid_of(struct chunks *c, const struct lines_sum *s, size_t *n)
{
    const struct reprice_paid *at = &c->paid[c->n_paid];
    for (size_t k = 0; k < s->n; k++)
        c->paid[c->n_paid++] = (struct reprice_paid){s->programme[k], s->amount[k]};
    *n = s->n;
    return at;
}

static int chunk_order(const void *a, const void *b)
{
    const struct reprice_chunk *x = a, *y = b;
    if (x->month_day != y->month_day)
        return x->month_day < y->month_day ? -1 : 1;
    return strcmp(x->cluster, y->cluster);
}

static int interval_order(const void *a, const void *b)
{
    const struct l_interval *x = *(const struct l_interval *const *)a;
    const struct l_interval *y = *(const struct l_interval *const *)b;
    return x->start_s < y->start_s ? -1 : x->start_s > y->start_s;
}

static void read_chunks(struct ledger *l, int64_t from_s, int64_t to_s, struct chunks *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < l->n_iv; i++) {
        struct l_interval *x = &l->iv[i];
        if (x->start_s < from_s || x->start_s >= to_s)
            continue;
        bool seen = false;
        for (size_t k = 0; k < out->n; k++)
            seen |=
                out->v[k].month_day == x->month_day && strcmp(out->v[k].cluster, x->cluster) == 0;
        if (!seen) {
            ck_assert_uint_lt(out->n, 16);
            out->v[out->n++] =
                (struct reprice_chunk){.cluster = x->cluster, .month_day = x->month_day};
        }
    }
    qsort(out->v, out->n, sizeof out->v[0], chunk_order);
    for (size_t k = 0; k < out->n; k++) {
        struct reprice_chunk *ch = &out->v[k];
        static const struct l_interval *mine[2048];
        size_t n = 0;
        for (size_t i = 0; i < l->n_iv; i++)
            if (l->iv[i].month_day == ch->month_day && strcmp(l->iv[i].cluster, ch->cluster) == 0)
                mine[n++] = &l->iv[i];
        qsort(mine, n, sizeof mine[0], interval_order);
        ch->intervals = &out->iv[out->n_iv];
        ch->n_intervals = n;
        for (size_t i = 0; i < n; i++) {
            const struct l_interval *x = mine[i];
            struct reprice_interval *in = &out->iv[out->n_iv++];
            *in = (struct reprice_interval){
                .start_s = x->start_s,
                .revision = x->revision,
                .in_range = x->start_s >= from_s && x->start_s < to_s,
                .kwh_micro = x->kwh,
                .energy_charge_cny4 = x->energy,
                .surcharge_cny4 = x->surcharge,
                .subsidy_cny4 = x->subsidy,
                .net_cny4 = x->net,
                .missing_s = x->missing_s,
            };
            in->paid = paid_of(out, &x->lines, &in->n_paid);
        }
        for (size_t i = 0; i < l->n_mo; i++) {
            const struct l_month *m = &l->mo[i];
            if (m->month_day != ch->month_day || strcmp(m->cluster, ch->cluster) != 0)
                continue;
            ch->month = (struct reprice_month){
                .has_row = true,
                .revision = m->revision,
                .max_kw_micro = m->max_kw,
                .billing_kw_micro = m->billing_kw,
                .max_interval_start_s = m->max_start_s,
                .charge_cny4 = m->charge,
                .subsidy_cny4 = m->subsidy,
                .net_cny4 = m->net,
            };
            ch->month.paid = paid_of(out, &m->lines, &ch->month.n_paid);
        }
    }
}

/* A day of load on c1 and c2, a sample every 5 minutes: c1 steps with the
 * hour, c2 a flat 40 kW; 2025-03-31 and 2025-04-01, so two months. */
static void load(struct run *r)
{
    for (int64_t t = L(2025, 3, 31, 0, 0); t <= L(2025, 4, 1, 23, 55); t += 300) {
        int hour = (int)((t - L(2025, 3, 31, 0, 0)) / 3600 % 24);
        push(r, "c1", t, 100 + 10 * hour);
        push(r, "c2", t, 40);
    }
}

static struct ledger ledger_a, ledger_b, ledger_c;
static struct chunks chunks;

/* Reprices [from_s, to_s) of l with a fresh engine under text, as a
 * daemon restarted after the intervals went final would; its caps as the
 * ledger's lines say. Returns the effect summed over chunks. */
static struct reprice_effect reprice_fresh(const char *text, struct ledger *l, int64_t from_s,
                                           int64_t to_s)
{
    struct run r;
    run_start(&r, text, l);
    read_chunks(l, from_s, to_s, &chunks);
    struct reprice_effect eff = {0};
    for (size_t k = 0; k < chunks.n; k++) {
        struct error err;
        ck_assert_msg(engine_reprice(r.e, &chunks.v[k], &eff, &err), "reprice: %s", err.msg);
    }
    run_stop(&r);
    return eff;
}

/* The ledger of pricing load() under text, everything closed. */
static void priced(const char *text, struct ledger *l)
{
    memset(l, 0, sizeof *l);
    struct run r;
    run_start(&r, text, l);
    load(&r);
    engine_finish(r.e, r.now_ns);
    run_stop(&r);
}

/* ---------------------------------------------------------------- */

START_TEST(test_corrected_price_equals_pricing_under_it)
{
    const char *fixed = edit(edit(base_config, "price.peak = 1.0", "price.peak = 1.2"),
                             "price.flat = 0.5", "price.flat = 0.55");
    priced(base_config, &ledger_a);
    priced(fixed, &ledger_b);
    size_t rows = ledger_a.rows;
    /* Both days, both months. */
    struct reprice_effect eff =
        reprice_fresh(fixed, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_uint_eq(eff.intervals, 2 * 2 * 96);
    ck_assert_uint_eq(eff.skipped, 0);
    /* Valley intervals keep their price: 32 of each day's 96 per cluster
     * make no row; the 64 flat and peak ones do. Demand is max_demand:
     * no change. */
    ck_assert_uint_eq(eff.billing_rows, 2 * 2 * 64);
    ck_assert_uint_eq(eff.demand_rows, 0);
    ck_assert_uint_eq(ledger_a.rows, rows + eff.billing_rows);
    expect_same_ledger(&ledger_a, &ledger_b);
    int64_t kwh = 0;
    for (size_t i = 0; i < ledger_b.n_iv; i++)
        kwh += ledger_b.iv[i].kwh;
    ck_assert_int_eq(eff.kwh_micro, kwh); /* every interval priced again, its kWh as it was */
    /* The effect is what the rows changed. */
    int64_t energy_b = 0, energy_a_before = 0;
    for (size_t i = 0; i < ledger_b.n_iv; i++)
        energy_b += ledger_b.iv[i].energy;
    priced(base_config, &ledger_c);
    for (size_t i = 0; i < ledger_c.n_iv; i++)
        energy_a_before += ledger_c.iv[i].energy;
    ck_assert_int_eq(eff.energy_charge_cny4, energy_b - energy_a_before);

    /* A second run makes nothing. */
    rows = ledger_a.rows;
    eff = reprice_fresh(fixed, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_uint_eq(eff.billing_rows + eff.demand_rows, 0);
    ck_assert_uint_eq(eff.intervals, 2 * 2 * 96);
    ck_assert_int_eq(eff.net_cny4, 0);
    ck_assert_uint_eq(ledger_a.rows, rows);
}
END_TEST

START_TEST(test_range_is_by_local_date_and_touches_its_month)
{
    /* Only 2025-04-01, local: the March day keeps its prices, April's
     * intervals and April's demand are priced again. */
    const char *fixed = edit(base_config, "demand.kw = 30", "demand.kw = 33");
    priced(base_config, &ledger_a);
    struct reprice_effect eff =
        reprice_fresh(fixed, &ledger_a, L(2025, 4, 1, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_uint_eq(eff.intervals, 2 * 96);
    ck_assert_uint_eq(eff.billing_rows, 0); /* energy prices unchanged */
    ck_assert_uint_eq(eff.demand_rows, 2);  /* April of c1 and c2 */
    for (size_t i = 0; i < ledger_a.n_mo; i++) {
        const struct l_month *m = &ledger_a.mo[i];
        bool april = m->month_day == month_of(L(2025, 4, 1, 0, 0));
        ck_assert_int_eq(m->revision, april ? 1 : 0);
        /* charge = billing_kw x price: 33 in April, 30 in March. */
        ck_assert_int_eq(m->charge * 100, m->billing_kw * (april ? 33 : 30));
    }
    /* c1's April peak: 23:xx at 100 + 10 x 23 = 330 kW; c2's 40 kW. 3 CNY
     * more per kW: 990 + 120. */
    ck_assert_int_eq(eff.demand_charge_cny4, (990 + 120) * 10000);
    ck_assert_int_eq(eff.net_cny4, eff.demand_charge_cny4);
}
END_TEST

START_TEST(test_corrected_service_dates_bill_the_months_by_days)
{
    /* Capacity basis, 20 CNY per kVA-month. The correction: c1 entered
     * service on 2025-03-31 and its transformer went from 1000 to 1200 kVA
     * on 2025-04-02; c2 left service after 2025-04-01. Every sample stays
     * in service, so pricing under the correction makes the same intervals
     * and months billed by days (docs/design.md section 5). */
    const char *capacity = edit(base_config, "demand_basis = max_demand\ndemand.kw = 30",
                                "demand_basis = capacity\ndemand.kva = 20");
    const char *fixed =
        edit(edit(capacity, "transformer_kva = 1000\n",
                  "transformer_kva = 1000\ntransformer_kva@2025-04-02 = 1200\n"
                  "service_from = 2025-03-31\n"),
             "transformer_kva = 500\n", "transformer_kva = 500\nservice_until = 2025-04-01\n");
    priced(capacity, &ledger_a);
    priced(fixed, &ledger_b);
    struct reprice_effect eff =
        reprice_fresh(fixed, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_uint_eq(eff.billing_rows, 0);
    ck_assert_uint_eq(eff.demand_rows, 3); /* c1's March and April, c2's April */
    expect_same_ledger(&ledger_a, &ledger_b);
    int32_t march = month_of(L(2025, 3, 1, 0, 0)), april = month_of(L(2025, 4, 1, 0, 0));
    for (size_t i = 0; i < ledger_a.n_mo; i++) {
        const struct l_month *m = &ledger_a.mo[i];
        bool c1 = strcmp(m->cluster, "c1") == 0;
        if (m->month_day == march && c1) {
            /* 1/30 x 20000.0000 */
            ck_assert_int_eq(m->days_in_service, 1);
            ck_assert_int_eq(m->charge, 6666667);
        } else if (m->month_day == april && c1) {
            /* (1 x 20000 + 29 x 24000) / 30 = 23866.6667; billed kVA of
             * the last day */
            ck_assert_int_eq(m->days_in_service, 30);
            ck_assert_int_eq(m->charge, 238666667);
            ck_assert_int_eq(m->billing_kw, 1200000000);
        } else if (m->month_day == april) {
            ck_assert_int_eq(m->days_in_service, 1); /* 1/30 x 10000.0000 */
            ck_assert_int_eq(m->charge, 3333333);
        } else {
            ck_assert_int_eq(m->days_in_service, -1); /* c2's March, whole */
            ck_assert_int_eq(m->charge, 100000000);
        }
    }
    /* 666.6667 - 20000 + 23866.6667 - 20000 + 333.3333 - 10000 */
    ck_assert_int_eq(eff.demand_charge_cny4, -251333333);
}
END_TEST

START_TEST(test_retroactive_programme_respects_its_cap_in_order)
{
    /* pb: 0.1 of the energy charge, capped at 20 CNY a year for t1. The
     * correction releases nothing (pb paid nothing), then consumes in the
     * documented order: March (c1, then c2), then April. */
    const char *with_pb =
        edit(base_config, "mode = pro_rata\n",
             "mode = pro_rata\n[programme pb]\nprovinces = p1\nfrom = 2025-01-01\n"
             "min_domestic_share = 0.5\nrate = 0.1\nbasis = energy\nmode = pro_rata\n"
             "cap_cny_per_year = 20\n");
    priced(base_config, &ledger_a);
    struct reprice_effect eff =
        reprice_fresh(with_pb, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    int64_t pb_total = 0, pb_march_c1 = 0, pb_april = 0;
    for (size_t i = 0; i < ledger_a.n_iv; i++) {
        const struct l_interval *x = &ledger_a.iv[i];
        int64_t pb = line_of(&x->lines, "pb");
        pb_total += pb;
        if (strcmp(x->cluster, "c1") == 0 && x->start_s < L(2025, 4, 1, 0, 0))
            pb_march_c1 += pb;
        if (x->start_s >= L(2025, 4, 1, 0, 0))
            pb_april += pb;
        ck_assert_int_eq(x->subsidy, line_of(&x->lines, "pa") + pb);
    }
    ck_assert_int_eq(pb_total, 200000); /* the cap, exactly */
    ck_assert_int_eq(eff.subsidy_cny4, 200000);
    ck_assert_int_eq(pb_april, 0); /* March took all of it */
    ck_assert_int_gt(pb_march_c1, 0);
    /* A second run: the cap is spent, nothing moves. */
    eff = reprice_fresh(with_pb, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_uint_eq(eff.billing_rows + eff.demand_rows, 0);
}
END_TEST

START_TEST(test_programme_removed_gives_its_subsidy_back)
{
    /* pa corrected to start in 2030: every line of pa is taken back by an
     * adjustment, and the net rises by as much. */
    const char *without =
        edit(base_config, "from = 2025-01-01\nmin_domestic_share = 0.5\nrate = 0.5",
             "from = 2030-01-01\nmin_domestic_share = 0.5\nrate = 0.5");
    priced(base_config, &ledger_a);
    int64_t subsidy = 0;
    for (size_t i = 0; i < ledger_a.n_iv; i++)
        subsidy += ledger_a.iv[i].subsidy;
    ck_assert_int_gt(subsidy, 0);
    struct reprice_effect eff =
        reprice_fresh(without, &ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0));
    ck_assert_int_eq(eff.subsidy_cny4, -subsidy);
    ck_assert_int_eq(eff.net_cny4, subsidy);
    priced(without, &ledger_b);
    expect_same_ledger(&ledger_a, &ledger_b);
}
END_TEST

START_TEST(test_interval_the_engine_holds_is_adjusted_against_the_correction)
{
    /* The live engine still holds April 1's intervals (late_window 6h, the
     * clock just past the last one). It reloads the corrected config and
     * reprices; then a late sample changes 12:00-12:15. The ledger must
     * equal pricing everything, the late sample included, under the
     * corrected config. */
    const char *fixed = edit(edit(base_config, "price.flat = 0.5", "price.flat = 0.6"),
                             "demand.kw = 30", "demand.kw = 31");
    memset(&ledger_a, 0, sizeof ledger_a);
    struct run r;
    run_start(&r, base_config, &ledger_a);
    load(&r);
    struct config *cfg2 = parse(fixed);
    engine_set_config(r.e, cfg2);
    read_chunks(&ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 2, 0, 0), &chunks);
    struct reprice_effect eff = {0};
    for (size_t k = 0; k < chunks.n; k++) {
        struct error err;
        ck_assert_msg(engine_reprice(r.e, &chunks.v[k], &eff, &err), "reprice: %s", err.msg);
    }
    ck_assert_uint_gt(eff.billing_rows, 0);
    /* March closed (April's first interval closed after it) and the engine
     * holds it: its demand priced again. April is still open: priced
     * under the correction when it closes. */
    ck_assert_uint_eq(eff.demand_rows, 2);
    push(&r, "c1", L(2025, 4, 1, 12, 7), 500);
    engine_finish(r.e, r.now_ns);
    engine_free(r.e);
    config_free(r.cfg);

    memset(&ledger_b, 0, sizeof ledger_b);
    struct run w;
    run_start(&w, fixed, &ledger_b);
    load(&w);
    push(&w, "c1", L(2025, 4, 1, 12, 7), 500);
    engine_finish(w.e, w.now_ns);
    run_stop(&w);
    expect_same_ledger(&ledger_a, &ledger_b);
    config_free(cfg2);
}
END_TEST

START_TEST(test_malformed_chunks_are_refused_and_change_nothing)
{
    priced(base_config, &ledger_a);
    struct run r;
    run_start(&r, base_config, &ledger_a);
    read_chunks(&ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 1, 0, 0), &chunks);
    ck_assert_uint_eq(chunks.n, 2);
    struct reprice_chunk ch = chunks.v[0];
    struct reprice_effect eff = {0};
    struct error err;
    size_t rows = ledger_a.rows;

    ch.cluster = "c9";
    ck_assert(!engine_reprice(r.e, &ch, &eff, &err));
    ck_assert_str_eq(err.msg, "cluster c9 is not in the config");

    ch = chunks.v[0];
    ch.month_day += 1;
    ck_assert(!engine_reprice(r.e, &ch, &eff, &err));
    ck_assert_msg(strstr(err.msg, "is not a first of a month") != NULL, "%s", err.msg);

    ch = chunks.v[0];
    struct reprice_interval two[2] = {ch.intervals[1], ch.intervals[0]};
    ch.intervals = two;
    ch.n_intervals = 2;
    ch.month.has_row = false;
    ck_assert(!engine_reprice(r.e, &ch, &eff, &err));
    ck_assert_msg(strstr(err.msg, "out of order") != NULL, "%s", err.msg);

    two[0] = chunks.v[0].intervals[0];
    two[1] = chunks.v[0].intervals[1];
    two[1].start_s += 60;
    ck_assert(!engine_reprice(r.e, &ch, &eff, &err));
    ck_assert_msg(strstr(err.msg, "is not an interval of its month") != NULL, "%s", err.msg);

    ck_assert_uint_eq(ledger_a.rows, rows);
    ck_assert_uint_eq(eff.intervals + eff.billing_rows + eff.demand_rows, 0);
    run_stop(&r);
}
END_TEST

START_TEST(test_waiting_for_caps_refuses)
{
    const char *capped =
        edit(base_config, "mode = pro_rata\n", "mode = pro_rata\ncap_cny_per_year = 1000\n");
    priced(capped, &ledger_a);
    struct config *c = parse(capped);
    struct engine_sink s = sink_into;
    s.ctx = &ledger_a;
    struct engine *e = engine_new(c, &s); /* caps not recovered */
    read_chunks(&ledger_a, L(2025, 3, 31, 0, 0), L(2025, 4, 1, 0, 0), &chunks);
    struct reprice_effect eff = {0};
    struct error err;
    ck_assert(engine_waiting_for_caps(e));
    ck_assert(!engine_reprice(e, &chunks.v[0], &eff, &err));
    ck_assert_str_eq(err.msg, "the yearly caps are not read back from the ledger yet");
    engine_free(e);
    config_free(c);
}
END_TEST

START_TEST(test_held_month_peak_is_over_the_days_in_service_now)
{
    /* c1 peaks at 500 kW on 2025-03-30 12:00-13:00, else 100 kW; the
     * correction says it entered service on 2025-03-31. The live engine
     * still holds March (closed; the clock at 2025-04-01 03:01 with
     * late_window 6h, so March 30 is final). Its repriced demand must be
     * what the same correction gives from the ledger alone: a peak of
     * 100 kW over March 31, 1/30 of 3000.0000. */
    const char *fixed =
        edit(base_config, "contract_kw = 100\n", "contract_kw = 100\nservice_from = 2025-03-31\n");
    memset(&ledger_a, 0, sizeof ledger_a);
    struct run r;
    run_start(&r, base_config, &ledger_a);
    for (int64_t t = L(2025, 3, 30, 0, 0); t <= L(2025, 4, 1, 3, 0); t += 300) {
        bool peak = t >= L(2025, 3, 30, 12, 0) && t < L(2025, 3, 30, 13, 0);
        push(&r, "c1", t, peak ? 500 : 100);
        push(&r, "c2", t, 40);
    }
    engine_tick(r.e, r.now_ns + 60 * NS);
    ledger_c = ledger_a; /* the ledger before the correction */
    struct config *cfg2 = parse(fixed);
    engine_set_config(r.e, cfg2);
    read_chunks(&ledger_a, L(2025, 3, 30, 0, 0), L(2025, 4, 1, 0, 0), &chunks);
    struct reprice_effect eff = {0};
    for (size_t k = 0; k < chunks.n; k++) {
        struct error err;
        ck_assert_msg(engine_reprice(r.e, &chunks.v[k], &eff, &err), "reprice: %s", err.msg);
    }
    engine_free(r.e);
    config_free(r.cfg);
    reprice_fresh(fixed, &ledger_c, L(2025, 3, 30, 0, 0), L(2025, 4, 1, 0, 0));
    int32_t march = month_of(L(2025, 3, 1, 0, 0));
    bool seen = false;
    for (size_t i = 0; i < ledger_a.n_mo; i++) {
        const struct l_month *a = &ledger_a.mo[i], *c = NULL;
        for (size_t k = 0; k < ledger_c.n_mo; k++)
            if (ledger_c.mo[k].month_day == a->month_day &&
                strcmp(ledger_c.mo[k].cluster, a->cluster) == 0)
                c = &ledger_c.mo[k];
        ck_assert(c != NULL);
        ck_assert_int_eq(a->max_kw, c->max_kw);
        ck_assert_int_eq(a->charge, c->charge);
        if (a->month_day == march && strcmp(a->cluster, "c1") == 0) {
            seen = true;
            ck_assert_int_eq(a->max_kw, 100000000);
            ck_assert_int_eq(a->days_in_service, 1);
            ck_assert_int_eq(a->charge, 1000000); /* 3000.0000 / 30 */
        }
    }
    ck_assert(seen);
    config_free(cfg2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reprice");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_corrected_price_equals_pricing_under_it);
    tcase_add_test(tc, test_range_is_by_local_date_and_touches_its_month);
    tcase_add_test(tc, test_corrected_service_dates_bill_the_months_by_days);
    tcase_add_test(tc, test_retroactive_programme_respects_its_cap_in_order);
    tcase_add_test(tc, test_programme_removed_gives_its_subsidy_back);
    tcase_add_test(tc, test_interval_the_engine_holds_is_adjusted_against_the_correction);
    tcase_add_test(tc, test_malformed_chunks_are_refused_and_change_nothing);
    tcase_add_test(tc, test_waiting_for_caps_refuses);
    tcase_add_test(tc, test_held_month_peak_is_over_the_days_in_service_now);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
