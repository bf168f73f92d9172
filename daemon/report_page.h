/*
 * report_page: one tenant's monthly statement as a self-contained HTML page
 * (docs/design.md section 7, `tariffd report`), from a model that
 * daemon/report.c reads out of the ledger.
 *
 * The page holds no URL and no script: styles are inline, charts are inline
 * SVG (daemon/svg.h), every text from the ledger or the config is escaped.
 * It prints on A4. Money is carried exactly: amounts the views rounded to
 * the fen are integers at scale 2 (_fen), row-level amounts at scale 4
 * (_cny4), kWh and kW at scale 6 (_micro); only chart geometry uses double.
 * The totals the page shows are sums of the figures it shows above them, so
 * every column adds up, except the cost per PFLOP-hour, a ratio: its total
 * is the total net over the total rated compute. Total cells carry
 * id="total-FIELD" and data-value="DECIMAL" (empty where there is no
 * figure) for programs that read the page.
 *
 * The model's strings and arrays belong to it: report_model_free.
 */
#ifndef DAEMON_REPORT_PAGE_H
#define DAEMON_REPORT_PAGE_H

#include "daemon/html.h"
#include "tariff/config.h"
#include "tariff/statement.h"

#include <stdbool.h>
#include <stdint.h>

/* A row of monthly_statements, and what its cost per PFLOP-hour of rated
 * compute is computed from (display only, as tariffd price computes it:
 * tariff/statement.h). */
struct report_cluster {
    char *cluster, *province;
    int64_t kwh_micro;
    int64_t energy_fen, surcharge_fen, demand_fen, subsidy_fen, net_fen;
    /* Only net_cny4 (every revision summed, before the view rounds it),
     * pflop_s_micro (statement_add_rated_interval over the revision-0
     * interval rows) and pflops_unrated (also: the cluster has left the
     * config) are set; the names are NULL. */
    struct statement compute;
};

/* monthly_by_period, summed over the tenant's clusters. */
struct report_period {
    bool seen;
    int64_t kwh_micro;
    int64_t energy_fen;
};

/* What one programme paid one cluster this month (subsidy_lines). */
struct report_programme_cluster {
    char *cluster;
    int64_t fen;
};

/* A programme that paid the tenant this month (subsidy_by_programme). */
struct report_programme {
    char *programme;
    int64_t month_fen;         /* paid on this month's rows */
    int64_t year_to_date_fen;  /* the months of the year up to this one, as the view rounds them */
    bool has_cap;              /* programme_caps has a cap for it */
    int64_t cap_cny4;          /* the yearly cap configured now */
    int64_t cap_remaining_fen; /* after this month */
    struct report_programme_cluster *clusters;
    size_t n_clusters;
};

/* One interval of a cluster, summed over revisions (billing_rows). */
struct report_interval {
    int64_t start_s, end_s;
    int64_t kwh_micro;
};

/* A cluster's load curve and its demand row (the latest revision). */
struct report_load {
    char *cluster;
    int32_t utc_offset_s;
    struct report_interval *intervals; /* by start_s */
    size_t n_intervals;
    bool has_demand;
    char *basis;
    int64_t max_kw_micro, billing_kw_micro;
    int64_t max_start_s; /* INT64_MIN: none */
    bool has_contract;   /* basis contract and the cluster is in the config */
    int64_t contract_micro_kw;
    int64_t contract_threshold_micro; /* 1.05 is 1050000 */
};

/* A tariff version that priced rows of the month. */
struct report_version {
    char *label;
    int32_t utc_offset_s;
    int64_t billing_rows, demand_rows;
    int64_t first_start_s, last_end_s; /* INT64_MIN when it priced only demand */
};

/* Adjustment rows written after the month ended (local midnight). */
struct report_adjustments {
    int64_t billing_rows, demand_rows;
    int64_t kwh_micro;
    int64_t net_cny4;
    int64_t latest_s; /* created_at of the latest; INT64_MIN: none */
};

struct report_model {
    const char *tenant; /* the id */
    const char *tenant_name;
    int32_t year, month;   /* the local month */
    int32_t days_in_month; /* 28..31 */
    int32_t utc_offset_s;  /* for the month's dates and times on the page */
    int64_t generated_s;   /* the database's clock when the ledger was read */
    int64_t max_billing_id, max_demand_id;

    struct report_cluster *clusters;
    size_t n_clusters;
    struct report_period periods[PERIOD_COUNT];
    int64_t (*day_kwh_micro)[PERIOD_COUNT]; /* days_in_month entries, day 1 first */
    struct report_programme *programmes;
    size_t n_programmes;
    struct report_load *loads;
    size_t n_loads;
    struct report_version *versions;
    size_t n_versions;
    struct report_adjustments adjustments;
};

/* Appends the whole page. */
void report_page(struct html *h, const struct report_model *m);

void report_model_free(struct report_model *m);

#endif
