#include "columns.h"

#include "tariff/civil.h"
#include "tariff/decimal.h"

#include <stdio.h>
#include <string.h>

const char *const billing_column_names[BILLING_COLUMNS] = {
    "tenant",       "cluster", "site",           "province",      "interval_start",
    "interval_end", "month",   "kind",           "revision",      "period",
    "kwh",          "price",   "surcharge_rate", "energy_charge", "surcharge",
    "subsidy",      "net",     "domestic_share", "programme",     "tariff_version",
    "missing_s",
};

const char *const demand_column_names[DEMAND_COLUMNS] = {
    "tenant",          "cluster",        "site",    "province",
    "month",           "basis",          "max_kw",  "max_interval_start",
    "billing_kw",      "charge",         "subsidy", "net",
    "programme",       "tariff_version", "kind",    "revision",
    "days_in_service", "proration",
};

void format_timestamp(int64_t ts_s, char *buf)
{
    int64_t day = civil_floor_div(ts_s, 86400);
    int64_t sec = ts_s - day * 86400;
    struct civil_date d = civil_from_day((int32_t)day);
    snprintf(buf, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)d.year, (int)d.month, (int)d.day,
             (int)(sec / 3600), (int)(sec % 3600 / 60), (int)(sec % 60));
}

static void put(struct row_values *out, const char *s)
{
    out->v[out->n++] = s;
}

static char *space(struct row_values *out, size_t n)
{
    char *p = out->buf + out->used;
    out->used += n;
    return p;
}

static void number(struct row_values *out, int64_t v, int scale)
{
    char *p = out->buf + out->used;
    out->used += (size_t)decimal_format(v, scale, p, sizeof out->buf - out->used) + 1;
    put(out, p);
}

static void timestamp(struct row_values *out, int64_t ts_s)
{
    char *p = space(out, 32);
    format_timestamp(ts_s, p);
    put(out, p);
}

static void date(struct row_values *out, int32_t day)
{
    char *p = space(out, 16);
    civil_format_date(day, p, 16);
    put(out, p);
}

static void cluster_values(struct row_values *out, const struct cluster *c)
{
    put(out, c->tenant->id);
    put(out, c->id);
    put(out, c->site->id);
    put(out, c->site->province);
}

/* "D/30 x MONTHLY (FROM..UNTIL; billing_kw KW)" per run, joined by " + "
 * ("0" when no day was in service). */
static void proration(struct row_values *out, const struct demand_row *r)
{
    char *p = out->buf + out->used;
    size_t size = sizeof out->buf - out->used, n = 0;
    p[0] = '\0';
    if (r->n_runs == 0)
        n = (size_t)snprintf(p, size, "0");
    for (size_t i = 0; i < r->n_runs && n < size; i++) {
        const struct demand_days *d = &r->runs[i];
        char monthly[32], kw[32], from[16], until[16];
        decimal_format(d->monthly_charge_cny4, 4, monthly, sizeof monthly);
        decimal_format(d->billing_kw_micro, 6, kw, sizeof kw);
        civil_format_date(d->from_day, from, sizeof from);
        civil_format_date(d->from_day + d->days - 1, until, sizeof until);
        n += (size_t)snprintf(p + n, size - n, "%s%d/30 x %s (%s..%s; billing_kw %s)",
                              i ? " + " : "", (int)d->days, monthly, from, until, kw);
    }
    out->used += (n < size ? n : size - 1) + 1;
    put(out, p);
}

void billing_values(const struct billing_row *r, struct row_values *out)
{
    out->n = 0;
    out->used = 0;
    cluster_values(out, r->cluster);
    timestamp(out, r->interval_start_s);
    timestamp(out, r->interval_end_s);
    date(out, r->month_day);
    put(out, r->revision == 0 ? "interval" : "adjustment");
    number(out, r->revision, 0);
    put(out, period_name(r->period));
    number(out, r->kwh_micro, 6);
    number(out, r->price_micro_cny, 6);
    number(out, r->surcharge_rate_micro_cny, 6);
    number(out, r->energy_charge_cny4, 4);
    number(out, r->surcharge_cny4, 4);
    number(out, r->subsidy_cny4, 4);
    number(out, r->net_cny4, 4);
    number(out, r->domestic_share_micro, 6);
    put(out, r->programme);
    put(out, r->tariff_version);
    number(out, r->missing_s, 0);
}

void demand_values(const struct demand_row *r, struct row_values *out)
{
    out->n = 0;
    out->used = 0;
    cluster_values(out, r->cluster);
    date(out, r->month_day);
    put(out, demand_basis_name(r->basis));
    number(out, r->max_kw_micro, 6);
    if (r->max_interval_start_s == INT64_MIN)
        put(out, NULL);
    else
        timestamp(out, r->max_interval_start_s);
    number(out, r->billing_kw_micro, 6);
    number(out, r->charge_cny4, 4);
    number(out, r->subsidy_cny4, 4);
    number(out, r->net_cny4, 4);
    put(out, r->programme);
    put(out, r->tariff_version);
    put(out, r->revision == 0 ? "month" : "adjustment");
    number(out, r->revision, 0);
    if (!r->prorated) {
        put(out, NULL);
        put(out, NULL);
        return;
    }
    number(out, r->days_in_service, 0);
    proration(out, r);
}
