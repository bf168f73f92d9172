#include "csv.h"

#include "tariff/civil.h"
#include "tariff/decimal.h"

#include <stdio.h>
#include <string.h>

const char csv_billing_header[] =
    "tenant,cluster,site,province,interval_start,interval_end,month,kind,revision,period,kwh,"
    "price,surcharge_rate,energy_charge,surcharge,subsidy,net,domestic_share,programme,"
    "tariff_version,missing_s\n";

const char csv_demand_header[] =
    "tenant,cluster,site,province,month,basis,max_kw,max_interval_start,billing_kw,charge,"
    "subsidy,net,programme,tariff_version,kind,revision\n";

void csv_timestamp(int64_t ts_s, char *buf)
{
    int64_t day = civil_floor_div(ts_s, 86400);
    int64_t sec = ts_s - day * 86400;
    struct civil_date d = civil_from_day((int32_t)day);
    snprintf(buf, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)d.year, (int)d.month, (int)d.day,
             (int)(sec / 3600), (int)(sec % 3600 / 60), (int)(sec % 60));
}

void csv_text(char *buf, size_t *len, const char *s)
{
    if (!s)
        return; /* NULL: an empty field */
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    size_t n = *len;
    if (quote)
        buf[n++] = '"';
    for (const char *p = s; *p && n < CSV_LINE_MAX - 8; p++) {
        if (*p == '"')
            buf[n++] = '"';
        buf[n++] = *p;
    }
    if (quote)
        buf[n++] = '"';
    buf[n] = '\0';
    *len = n;
}

static void sep(char *buf, size_t *len)
{
    buf[(*len)++] = ',';
    buf[*len] = '\0';
}

static void num(char *buf, size_t *len, int64_t v, int scale)
{
    *len += (size_t)decimal_format(v, scale, buf + *len, CSV_LINE_MAX - *len);
}

static void text_field(char *buf, size_t *len, const char *s)
{
    csv_text(buf, len, s);
}

static void date_field(char *buf, size_t *len, int32_t day)
{
    civil_format_date(day, buf + *len, 11);
    *len += 10;
}

static void ts_field(char *buf, size_t *len, int64_t ts_s)
{
    csv_timestamp(ts_s, buf + *len);
    *len += strlen(buf + *len);
}

static void cluster_fields(char *buf, size_t *len, const struct cluster *c)
{
    text_field(buf, len, c->tenant->id);
    sep(buf, len);
    text_field(buf, len, c->id);
    sep(buf, len);
    text_field(buf, len, c->site->id);
    sep(buf, len);
    text_field(buf, len, c->site->province);
    sep(buf, len);
}

size_t csv_billing_row(const struct billing_row *r, char *buf)
{
    size_t len = 0;
    buf[0] = '\0';
    cluster_fields(buf, &len, r->cluster);
    ts_field(buf, &len, r->interval_start_s);
    sep(buf, &len);
    ts_field(buf, &len, r->interval_end_s);
    sep(buf, &len);
    date_field(buf, &len, r->month_day);
    sep(buf, &len);
    text_field(buf, &len, r->revision == 0 ? "interval" : "adjustment");
    sep(buf, &len);
    num(buf, &len, r->revision, 0);
    sep(buf, &len);
    text_field(buf, &len, period_name(r->period));
    sep(buf, &len);
    num(buf, &len, r->kwh_micro, 6);
    sep(buf, &len);
    num(buf, &len, r->price_micro_cny, 6);
    sep(buf, &len);
    num(buf, &len, r->surcharge_rate_micro_cny, 6);
    sep(buf, &len);
    num(buf, &len, r->energy_charge_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->surcharge_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->subsidy_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->net_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->domestic_share_micro, 6);
    sep(buf, &len);
    text_field(buf, &len, r->programme);
    sep(buf, &len);
    text_field(buf, &len, r->tariff_version);
    sep(buf, &len);
    num(buf, &len, r->missing_s, 0);
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

size_t csv_demand_row(const struct demand_row *r, char *buf)
{
    size_t len = 0;
    buf[0] = '\0';
    cluster_fields(buf, &len, r->cluster);
    date_field(buf, &len, r->month_day);
    sep(buf, &len);
    text_field(buf, &len, demand_basis_name(r->basis));
    sep(buf, &len);
    num(buf, &len, r->max_kw_micro, 6);
    sep(buf, &len);
    if (r->max_interval_start_s != INT64_MIN)
        ts_field(buf, &len, r->max_interval_start_s);
    sep(buf, &len);
    num(buf, &len, r->billing_kw_micro, 6);
    sep(buf, &len);
    num(buf, &len, r->charge_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->subsidy_cny4, 4);
    sep(buf, &len);
    num(buf, &len, r->net_cny4, 4);
    sep(buf, &len);
    text_field(buf, &len, r->programme);
    sep(buf, &len);
    text_field(buf, &len, r->tariff_version);
    sep(buf, &len);
    text_field(buf, &len, r->revision == 0 ? "month" : "adjustment");
    sep(buf, &len);
    num(buf, &len, r->revision, 0);
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}
