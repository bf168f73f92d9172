#include "statement.h"

#include "alloc.h"
#include "decimal.h"
#include "eligibility.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t slot_hash(const char *cluster, int32_t month_day)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325) ^ (uint32_t)month_day;
    for (const unsigned char *p = (const unsigned char *)cluster; *p; p++)
        h = (h ^ *p) * UINT64_C(0x100000001b3);
    return h ^ (h >> 29);
}

static void index_put(struct statements *s, size_t i)
{
    size_t mask = s->n_slots - 1, j = slot_hash(s->v[i].cluster, s->v[i].month_day) & mask;
    while (s->slots[j])
        j = (j + 1) & mask;
    s->slots[j] = i + 1;
}

static void reindex(struct statements *s, size_t n_slots)
{
    free(s->slots);
    s->n_slots = n_slots;
    s->slots = xcalloc(n_slots, sizeof *s->slots);
    for (size_t i = 0; i < s->n; i++)
        index_put(s, i);
}

static struct statement *find(struct statements *s, const struct cluster *c, int32_t month_day)
{
    if (2 * (s->n + 1) > s->n_slots) {
        size_t n_slots = 64;
        while (n_slots < 2 * (s->n + 1))
            n_slots *= 2;
        reindex(s, n_slots);
    }
    size_t mask = s->n_slots - 1;
    for (size_t j = slot_hash(c->id, month_day) & mask; s->slots[j]; j = (j + 1) & mask) {
        struct statement *st = &s->v[s->slots[j] - 1];
        if (st->month_day == month_day && strcmp(st->cluster, c->id) == 0)
            return st;
    }
    ARRAY_RESERVE_ONE(s->v, s->n, s->cap);
    struct statement *st = &s->v[s->n++];
    memset(st, 0, sizeof *st);
    st->tenant = xstrdup(c->tenant->id);
    st->cluster = xstrdup(c->id);
    st->province = xstrdup(c->site->province);
    st->month_day = month_day;
    st->demand_days = -1;
    st->demand_revision = -1;
    index_put(s, s->n - 1);
    return st;
}

void statements_add_billing(struct statements *s, const struct billing_row *r)
{
    struct statement *st = find(s, r->cluster, r->month_day);
    st->kwh_micro += r->kwh_micro;
    st->energy_charge_cny4 += r->energy_charge_cny4;
    st->surcharge_cny4 += r->surcharge_cny4;
    st->subsidy_cny4 += r->subsidy_cny4;
    st->net_cny4 += r->net_cny4;
    st->period_kwh_micro[r->period] += r->kwh_micro;
    st->period_energy_charge_cny4[r->period] += r->energy_charge_cny4;
    st->period_seen[r->period] = true;
    if (r->revision == 0)
        statement_add_rated_interval(st, r->cluster, r->interval_start_s, r->interval_end_s);
}

void statement_add_rated_interval(struct statement *st, const struct cluster *c, int64_t start_s,
                                  int64_t end_s)
{
    const struct inventory *inv = cluster_inventory_at(c, start_s);
    if (inv->has_pflops)
        st->pflop_s_micro += (__int128)inv->pflops_micro * (end_s - start_s);
    else
        st->pflops_unrated = true;
}

void statements_add_demand(struct statements *s, const struct demand_row *r)
{
    struct statement *st = find(s, r->cluster, r->month_day);
    st->demand_charge_cny4 += r->charge_cny4;
    if (r->revision > st->demand_revision) {
        st->demand_revision = r->revision;
        st->demand_days = r->prorated ? r->days_in_service : -1;
    }
    st->subsidy_cny4 += r->subsidy_cny4;
    st->net_cny4 += r->net_cny4;
}

static int order(const void *a, const void *b)
{
    const struct statement *x = a, *y = b;
    if (x->month_day != y->month_day)
        return x->month_day < y->month_day ? -1 : 1;
    int c = strcmp(x->tenant, y->tenant);
    return c ? c : strcmp(x->cluster, y->cluster);
}

void statements_sort(struct statements *s)
{
    if (s->n > 1)
        qsort(s->v, s->n, sizeof *s->v, order);
    if (s->slots)
        reindex(s, s->n_slots);
}

bool statement_cny4_per_pflop_hour(const struct statement *st, int64_t *out)
{
    if (st->pflops_unrated || st->pflop_s_micro <= 0)
        return false;
    /* net_cny4 / 1e4 CNY over pflop_s_micro / (1e6 x 3600) PFLOP-hours, at
     * scale 4: net_cny4 x 3600 x 1e6 / pflop_s_micro. The product fits:
     * |net_cny4| < 2^63 and 3.6e9 < 2^32. */
    __int128 num = (__int128)st->net_cny4 * 3600000000;
    __int128 q = num / st->pflop_s_micro;
    if (q > INT64_MAX / 2 || q < -(INT64_MAX / 2))
        return false;
    *out = decimal_div_half_even(num, st->pflop_s_micro);
    return true;
}

int64_t statements_net_cny4(const struct statements *s)
{
    int64_t sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i].net_cny4;
    return sum;
}

int64_t statement_round_fen(int64_t cny4)
{
    return decimal_div_half_even(cny4, 100);
}

void statements_free(struct statements *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].tenant);
        free(s->v[i].cluster);
        free(s->v[i].province);
    }
    free(s->v);
    free(s->slots);
    memset(s, 0, sizeof *s);
}
