#include "report.h"

#include "daemon/report_page.h"
#include "storage/pg.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/eligibility.h"
#include "tariff/statement.h"

#include <libpq-fe.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The connection and the schema every query names ("@." in the SQL texts
 * below stands for the quoted schema and a dot). */
struct ledger {
    const struct config *cfg;
    PGconn *conn;
    char *schema; /* quoted identifier */
    char err[512];
};

bool report_parse_month(const char *s, int32_t *year, int32_t *month)
{
    /* Strictly YYYY-MM, within the years the daemon's clock accepts. */
    if (strlen(s) != 7 || s[4] != '-')
        return false;
    for (int i = 0; i < 7; i++)
        if (i != 4 && (s[i] < '0' || s[i] > '9'))
            return false;
    *year = (int32_t)strtol(s, NULL, 10);
    *month = (int32_t)strtol(s + 5, NULL, 10);
    return *year >= 2000 && *year <= 2199 && *month >= 1 && *month <= 12;
}

static void first_line(const char *msg, char *out, size_t size)
{
    snprintf(out, size, "%s", msg && *msg ? msg : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

/* Runs sql (with "@." expanded) with text parameters; NULL with l->err set
 * when it fails. */
static PGresult *run(struct ledger *l, const char *sql, int n, const char *const *params)
{
    char *text = pg_schema_sql(sql, l->schema);
    PGresult *r = PQexecParams(l->conn, text, n, NULL, params, NULL, NULL, 0);
    free(text);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    /* The primary message alone ("relation ... does not exist"), without
     * libpq's "ERROR:" and the lines after it. */
    char msg[400];
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    first_line(primary ? primary : PQresultErrorMessage(r), msg, sizeof msg);
    snprintf(l->err, sizeof l->err, "reading the ledger in schema %s failed: %s", l->schema, msg);
    PQclear(r);
    return NULL;
}

/* A numeric column at the given scale; NULL reads as 0. */
static bool num(struct ledger *l, PGresult *r, int row, int col, int scale, int64_t *out)
{
    if (PQgetisnull(r, row, col)) {
        *out = 0;
        return true;
    }
    const char *s = PQgetvalue(r, row, col), *why;
    if (decimal_parse(s, scale, out, &why))
        return true;
    snprintf(l->err, sizeof l->err, "the ledger's %s \"%.40s\" %s", PQfname(r, col), s, why);
    return false;
}

/* An integer column (epoch seconds, counts); NULL reads as `null`. */
static int64_t integer(PGresult *r, int row, int col, int64_t null)
{
    return PQgetisnull(r, row, col) ? null : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static char *text(PGresult *r, int row, int col)
{
    return xstrdup(PQgetvalue(r, row, col));
}

/* ------------------------------------------------------------------ */
/* The month's figures                                                 */

/* The statement line of a cluster and province; NULL when the view has
 * none (it and the tables come from one snapshot). */
static struct report_cluster *line_of(struct report_model *m, const char *cluster,
                                      const char *province)
{
    for (size_t i = 0; i < m->n_clusters; i++)
        if (strcmp(m->clusters[i].cluster, cluster) == 0 &&
            strcmp(m->clusters[i].province, province) == 0)
            return &m->clusters[i];
    return NULL;
}

static bool read_statement(struct ledger *l, const char *const *p, struct report_model *m)
{
    PGresult *r = run(l,
                      "SELECT cluster, province, kwh, energy_charge, surcharge, demand_charge, "
                      "subsidy, net FROM @.monthly_statements "
                      "WHERE tenant = $1 AND month = $2::date ORDER BY cluster, province",
                      2, p);
    if (!r)
        return false;
    int n = PQntuples(r);
    m->clusters = xcalloc((size_t)n, sizeof *m->clusters);
    for (int i = 0; i < n; i++) {
        struct report_cluster *c = &m->clusters[m->n_clusters++];
        c->cluster = text(r, i, 0);
        c->province = text(r, i, 1);
        if (!num(l, r, i, 2, 6, &c->kwh_micro) || !num(l, r, i, 3, 2, &c->energy_fen) ||
            !num(l, r, i, 4, 2, &c->surcharge_fen) || !num(l, r, i, 5, 2, &c->demand_fen) ||
            !num(l, r, i, 6, 2, &c->subsidy_fen) || !num(l, r, i, 7, 2, &c->net_fen)) {
            PQclear(r);
            return false;
        }
    }
    PQclear(r);

    /* For the cost per PFLOP-hour: the net at scale 4, which the view
     * rounds to the fen, and whether the config still knows the cluster
     * (its rating is the config's; the ledger has none). */
    r = run(l,
            "SELECT cluster, province, sum(net) FROM ("
            " SELECT cluster, province, net FROM @.billing_rows"
            " WHERE tenant = $1 AND month = $2::date"
            " UNION ALL SELECT cluster, province, net FROM @.demand_charges"
            " WHERE tenant = $1 AND month = $2::date) AS r GROUP BY cluster, province",
            2, p);
    if (!r)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        struct report_cluster *c = line_of(m, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        if (c && !num(l, r, i, 2, 4, &c->compute.net_cny4)) {
            PQclear(r);
            return false;
        }
    }
    PQclear(r);
    for (size_t i = 0; i < m->n_clusters; i++)
        if (!config_find_cluster(l->cfg, m->clusters[i].cluster))
            m->clusters[i].compute.pflops_unrated = true;
    return true;
}

static bool parse_period(const char *s, enum period *p)
{
    for (int i = 0; i < PERIOD_COUNT; i++)
        if (strcmp(s, period_name((enum period)i)) == 0) {
            *p = (enum period)i;
            return true;
        }
    return false;
}

static bool read_periods(struct ledger *l, const char *const *p, struct report_model *m)
{
    PGresult *r = run(l,
                      "SELECT period, kwh, energy_charge FROM @.monthly_by_period "
                      "WHERE tenant = $1 AND month = $2::date",
                      2, p);
    if (!r)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        enum period period;
        int64_t kwh, fen;
        if (!parse_period(PQgetvalue(r, i, 0), &period)) {
            snprintf(l->err, sizeof l->err, "the ledger has an unknown period \"%.40s\"",
                     PQgetvalue(r, i, 0));
            PQclear(r);
            return false;
        }
        if (!num(l, r, i, 1, 6, &kwh) || !num(l, r, i, 2, 2, &fen)) {
            PQclear(r);
            return false;
        }
        m->periods[period].seen = true;
        m->periods[period].kwh_micro += kwh;
        m->periods[period].energy_fen += fen;
    }
    PQclear(r);
    return true;
}

static bool read_programmes(struct ledger *l, const char *const *p, struct report_model *m)
{
    /* The year's months up to this one, for the year to date; the cap as
     * subsidy_by_programme measures it (programme_caps). */
    PGresult *r = run(l,
                      "SELECT s.programme, s.month = $2::date, s.subsidy, s.cap_remaining, "
                      "(SELECT c.cap_cny_per_year FROM @.programme_caps AS c "
                      " WHERE c.programme = s.programme AND (c.tenant IS NULL OR c.tenant = "
                      "s.tenant)) "
                      "FROM @.subsidy_by_programme AS s WHERE s.tenant = $1 "
                      "AND s.year = extract(year FROM $2::date) AND s.month <= $2::date "
                      "ORDER BY s.programme, s.month",
                      2, p);
    if (!r)
        return false;
    int n = PQntuples(r);
    m->programmes = xcalloc((size_t)n, sizeof *m->programmes);
    int64_t year_to_date = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(PQgetvalue(r, i, 0), PQgetvalue(r, i - 1, 0)) != 0)
            year_to_date = 0;
        int64_t fen;
        if (!num(l, r, i, 2, 2, &fen))
            goto fail;
        year_to_date += fen;
        if (strcmp(PQgetvalue(r, i, 1), "t") != 0)
            continue;
        struct report_programme *g = &m->programmes[m->n_programmes++];
        g->programme = text(r, i, 0);
        g->month_fen = fen;
        g->year_to_date_fen = year_to_date;
        g->has_cap = !PQgetisnull(r, i, 4);
        if (!num(l, r, i, 3, 2, &g->cap_remaining_fen) || !num(l, r, i, 4, 4, &g->cap_cny4))
            goto fail;
    }
    PQclear(r);

    r = run(l,
            "SELECT l.programme, r.cluster, "
            "@.round_half_even(sum(l.amount), 2)::numeric(20, 2) AS subsidy "
            "FROM @.subsidy_lines AS l JOIN ("
            " SELECT 'billing_rows' AS row_table, id, cluster FROM @.billing_rows"
            " WHERE tenant = $1 AND month = $2::date"
            " UNION ALL SELECT 'demand_charges', id, cluster FROM @.demand_charges"
            " WHERE tenant = $1 AND month = $2::date) AS r"
            " ON l.row_table = r.row_table AND l.row_id = r.id "
            "GROUP BY l.programme, r.cluster ORDER BY l.programme, r.cluster",
            2, p);
    if (!r)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        struct report_programme *g = NULL;
        for (size_t k = 0; k < m->n_programmes && !g; k++)
            if (strcmp(m->programmes[k].programme, PQgetvalue(r, i, 0)) == 0)
                g = &m->programmes[k];
        if (!g)
            continue; /* subsidy_by_programme and the lines come from one snapshot */
        g->clusters = xrealloc_array(g->clusters, g->n_clusters + 1, sizeof *g->clusters);
        struct report_programme_cluster *pc = &g->clusters[g->n_clusters++];
        pc->cluster = text(r, i, 1);
        if (!num(l, r, i, 2, 2, &pc->fen))
            goto fail;
    }
    PQclear(r);
    return true;
fail:
    PQclear(r);
    return false;
}

/* The UTC offset of a tariff version: from its text as tariffd recorded it
 * (tariff_versions), else from the config's tariff of that name. */
static bool version_offset(struct ledger *l, const char *label, PGresult *r, int row, int col,
                           int32_t *offset_s)
{
    const char *why = "is missing";
    if (!PQgetisnull(r, row, col)) {
        const char *key = strstr(PQgetvalue(r, row, col), "utc_offset = ");
        if (key) {
            char value[16];
            snprintf(value, sizeof value, "%s", key + strlen("utc_offset = "));
            value[strcspn(value, "\n")] = '\0';
            if (civil_parse_utc_offset(value, offset_s, &why))
                return true;
        }
    }
    char name[256];
    snprintf(name, sizeof name, "%s", label);
    name[strcspn(name, "@")] = '\0';
    const struct tariff *t = config_find_tariff(l->cfg, name);
    if (t && t->n_versions) {
        *offset_s = t->versions[0]->utc_offset_s;
        return true;
    }
    snprintf(l->err, sizeof l->err,
             "cannot tell the UTC offset of tariff version \"%.100s\": tariff_versions has no "
             "utc_offset for it and the configuration no tariff \"%.60s\"",
             label, name);
    return false;
}

static bool read_versions(struct ledger *l, const char *const *p, struct report_model *m)
{
    PGresult *r = run(
        l,
        "SELECT u.label, t.text, sum(u.n)::bigint, sum(u.d)::bigint, "
        "extract(epoch FROM min(u.first))::bigint, extract(epoch FROM max(u.last))::bigint "
        "FROM (SELECT tariff_version AS label, count(*) AS n, 0 AS d, min(interval_start) AS first,"
        " max(interval_end) AS last FROM @.billing_rows WHERE tenant = $1 AND month = $2::date"
        " GROUP BY tariff_version"
        " UNION ALL SELECT tariff_version, 0, count(*), NULL, NULL FROM @.demand_charges"
        " WHERE tenant = $1 AND month = $2::date GROUP BY tariff_version) AS u "
        "LEFT JOIN @.tariff_versions AS t ON t.label = u.label "
        "GROUP BY u.label, t.text ORDER BY u.label",
        2, p);
    if (!r)
        return false;
    int n = PQntuples(r);
    m->versions = xcalloc((size_t)n, sizeof *m->versions);
    for (int i = 0; i < n; i++) {
        struct report_version *v = &m->versions[m->n_versions++];
        v->label = text(r, i, 0);
        v->billing_rows = integer(r, i, 2, 0);
        v->demand_rows = integer(r, i, 3, 0);
        v->first_start_s = integer(r, i, 4, INT64_MIN);
        v->last_end_s = integer(r, i, 5, INT64_MIN);
        if (!version_offset(l, v->label, r, i, 1, &v->utc_offset_s)) {
            PQclear(r);
            return false;
        }
    }
    PQclear(r);
    return true;
}

static int32_t offset_of(const struct report_model *m, const char *label)
{
    for (size_t i = 0; i < m->n_versions; i++)
        if (strcmp(m->versions[i].label, label) == 0)
            return m->versions[i].utc_offset_s;
    return m->utc_offset_s;
}

static struct report_load *load_of(struct report_model *m, const char *cluster)
{
    for (size_t i = 0; i < m->n_loads; i++)
        if (strcmp(m->loads[i].cluster, cluster) == 0)
            return &m->loads[i];
    m->loads = xrealloc_array(m->loads, m->n_loads + 1, sizeof *m->loads);
    struct report_load *ld = &m->loads[m->n_loads++];
    *ld = (struct report_load){.cluster = xstrdup(cluster), .max_start_s = INT64_MIN};
    return ld;
}

/* The intervals: each cluster's load curve (revisions summed), the energy
 * of each local day by period, and each statement line's rated compute
 * (over the revision-0 rows, as tariffd price sums it). */
static bool read_intervals(struct ledger *l, const char *const *p, struct report_model *m)
{
    PGresult *r = run(l,
                      "SELECT cluster, extract(epoch FROM interval_start)::bigint, "
                      "extract(epoch FROM interval_end)::bigint, period, tariff_version, "
                      "sum(kwh) AS kwh, province, bool_or(revision = 0) "
                      "FROM @.billing_rows WHERE tenant = $1 AND month = $2::date "
                      "GROUP BY 1, 2, 3, 4, 5, 7 ORDER BY 1, 2",
                      2, p);
    if (!r)
        return false;
    int32_t first_day = civil_to_day((struct civil_date){m->year, m->month, 1});
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t start = integer(r, i, 1, 0), end = integer(r, i, 2, 0), kwh;
        enum period period;
        if (!parse_period(PQgetvalue(r, i, 3), &period)) {
            snprintf(l->err, sizeof l->err, "the ledger has an unknown period \"%.40s\"",
                     PQgetvalue(r, i, 3));
            PQclear(r);
            return false;
        }
        if (!num(l, r, i, 5, 6, &kwh)) {
            PQclear(r);
            return false;
        }
        /* An interval has one revision-0 row, so one group says t. */
        const struct cluster *c = config_find_cluster(l->cfg, PQgetvalue(r, i, 0));
        struct report_cluster *line = line_of(m, PQgetvalue(r, i, 0), PQgetvalue(r, i, 6));
        if (c && line && strcmp(PQgetvalue(r, i, 7), "t") == 0)
            statement_add_rated_interval(&line->compute, c, start, end);

        int32_t offset = offset_of(m, PQgetvalue(r, i, 4));
        int32_t day = civil_local_day(start, offset) - first_day;
        if (day >= 0 && day < m->days_in_month)
            m->day_kwh_micro[day][period] += kwh;

        struct report_load *ld = load_of(m, PQgetvalue(r, i, 0));
        ld->utc_offset_s = offset;
        /* Rows of one interval may differ in period or version (an
         * adjustment priced under a later config): one point per interval. */
        if (ld->n_intervals && ld->intervals[ld->n_intervals - 1].start_s == start) {
            ld->intervals[ld->n_intervals - 1].kwh_micro += kwh;
            continue;
        }
        ld->intervals = xrealloc_array(ld->intervals, ld->n_intervals + 1, sizeof *ld->intervals);
        ld->intervals[ld->n_intervals++] = (struct report_interval){start, end, kwh};
    }
    PQclear(r);
    return true;
}

static const struct tariff_version *config_version(const struct config *cfg, const char *label)
{
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        for (size_t j = 0; j < cfg->tariffs[i].n_versions; j++)
            if (strcmp(cfg->tariffs[i].versions[j]->label, label) == 0)
                return cfg->tariffs[i].versions[j];
    return NULL;
}

static bool read_demand(struct ledger *l, const char *const *p, struct report_model *m)
{
    /* A demand adjustment carries the month's new max_kw and billing_kw
     * whole (only the money is a difference): the latest revision has them. */
    PGresult *r = run(l,
                      "SELECT DISTINCT ON (cluster) cluster, basis, max_kw, billing_kw, "
                      "extract(epoch FROM max_interval_start)::bigint, tariff_version "
                      "FROM @.demand_charges WHERE tenant = $1 AND month = $2::date "
                      "ORDER BY cluster, revision DESC",
                      2, p);
    if (!r)
        return false;
    for (int i = 0; i < PQntuples(r); i++) {
        struct report_load *ld = load_of(m, PQgetvalue(r, i, 0));
        ld->has_demand = true;
        ld->basis = text(r, i, 1);
        ld->max_start_s = integer(r, i, 4, INT64_MIN);
        if (!num(l, r, i, 2, 6, &ld->max_kw_micro) || !num(l, r, i, 3, 6, &ld->billing_kw_micro)) {
            PQclear(r);
            return false;
        }
        /* The contract and its threshold are the config's: the ledger
         * keeps only what they made of the month (billing_kw). A contract
         * that changes within the month is drawn as it stands on its last
         * day. */
        const struct cluster *c = config_find_cluster(l->cfg, ld->cluster);
        const struct tariff_version *v = config_version(l->cfg, PQgetvalue(r, i, 5));
        if (strcmp(ld->basis, "contract") == 0 && c && c->has_contract_kw) {
            int32_t first = civil_to_day((struct civil_date){m->year, m->month, 1});
            ld->has_contract = true;
            ld->contract_micro_kw = cluster_contract_micro_kw_on(c, civil_month_next(first) - 1);
            ld->contract_threshold_micro = v ? v->contract_threshold_micro : 0;
        }
    }
    PQclear(r);
    return true;
}

/* Adjustment rows created at or after the local midnight that ends the
 * month, under each version's own offset. */
static bool read_adjustments(struct ledger *l, const char *const *p, struct report_model *m)
{
    struct report_adjustments *a = &m->adjustments;
    a->latest_s = INT64_MIN;
    int32_t next = civil_to_day((struct civil_date){m->year, m->month, 1}) + m->days_in_month;
    for (size_t i = 0; i < m->n_versions; i++) {
        char end[24];
        snprintf(end, sizeof end, "%lld",
                 (long long)civil_day_start_ts(next, m->versions[i].utc_offset_s));
        const char *params[] = {p[0], p[1], m->versions[i].label, end};
        PGresult *r = run(
            l,
            "SELECT count(*), sum(kwh), sum(net), extract(epoch FROM max(created_at))::bigint "
            "FROM @.billing_rows WHERE tenant = $1 AND month = $2::date AND tariff_version = $3 "
            "AND kind = 'adjustment' AND created_at >= to_timestamp($4::bigint) "
            "UNION ALL SELECT count(*), 0, sum(net), extract(epoch FROM max(created_at))::bigint "
            "FROM @.demand_charges WHERE tenant = $1 AND month = $2::date "
            "AND tariff_version = $3 AND kind = 'adjustment' "
            "AND created_at >= to_timestamp($4::bigint)",
            4, params);
        if (!r)
            return false;
        for (int row = 0; row < PQntuples(r); row++) {
            int64_t kwh, net;
            if (!num(l, r, row, 1, 6, &kwh) || !num(l, r, row, 2, 4, &net)) {
                PQclear(r);
                return false;
            }
            *(row == 0 ? &a->billing_rows : &a->demand_rows) += integer(r, row, 0, 0);
            a->kwh_micro += kwh;
            a->net_cny4 += net;
            int64_t latest = integer(r, row, 3, INT64_MIN);
            if (latest > a->latest_s)
                a->latest_s = latest;
        }
        PQclear(r);
    }
    return true;
}

static int32_t days_in(int32_t year, int32_t month)
{
    int32_t first = civil_to_day((struct civil_date){year, month, 1});
    int32_t next = month == 12 ? civil_to_day((struct civil_date){year + 1, 1, 1})
                               : civil_to_day((struct civil_date){year, month + 1, 1});
    return next - first;
}

/* The offset the page shows dates in: the tenant's clusters' tariff in the
 * config, else +08:00 (every tariff of etc/ has it). A version that priced
 * the month overrides both. */
static int32_t default_offset(const struct config *cfg, const char *tenant)
{
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct cluster *c = &cfg->clusters[i];
        if (strcmp(c->tenant->id, tenant) == 0 && c->site->tariff->n_versions)
            return c->site->tariff->versions[0]->utc_offset_s;
    }
    return 8 * 3600;
}

static bool read_model(struct ledger *l, const char *tenant, const char *month_date,
                       struct report_model *m)
{
    const char *p[] = {tenant, month_date};
    const struct tenant *t = config_find_tenant(l->cfg, tenant);
    m->tenant = tenant;
    m->tenant_name = t ? t->name : tenant;
    m->days_in_month = days_in(m->year, m->month);
    m->day_kwh_micro = xcalloc((size_t)m->days_in_month, sizeof *m->day_kwh_micro);
    m->utc_offset_s = default_offset(l->cfg, tenant);

    PGresult *r = run(l,
                      "SELECT extract(epoch FROM now())::bigint, "
                      "(SELECT coalesce(max(id), 0) FROM @.billing_rows), "
                      "(SELECT coalesce(max(id), 0) FROM @.demand_charges)",
                      0, NULL);
    if (!r)
        return false;
    m->generated_s = integer(r, 0, 0, 0);
    m->max_billing_id = integer(r, 0, 1, 0);
    m->max_demand_id = integer(r, 0, 2, 0);
    PQclear(r);

    if (!read_statement(l, p, m) || !read_periods(l, p, m) || !read_programmes(l, p, m) ||
        !read_versions(l, p, m))
        return false;
    if (m->n_versions)
        m->utc_offset_s = m->versions[0].utc_offset_s;
    return read_intervals(l, p, m) && read_demand(l, p, m) && read_adjustments(l, p, m);
}

/* ------------------------------------------------------------------ */
/* Tenants and files                                                   */

struct names {
    char **v;
    size_t n, cap;
};

static void names_add(struct names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return;
    ARRAY_RESERVE_ONE(s->v, s->n, s->cap);
    s->v[s->n++] = xstrdup(name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The tenants to report on; returns the exit status when one is unknown
 * or the ledger cannot be read (0: go on). */
static int choose_tenants(struct ledger *l, const struct report_options *opt,
                          const char *month_date, struct names *out)
{
    if (opt->n_tenants) {
        for (size_t i = 0; i < opt->n_tenants; i++) {
            const char *t = opt->tenants[i];
            if (!config_find_tenant(l->cfg, t)) {
                const char *p[] = {t};
                PGresult *r = run(l,
                                  "SELECT EXISTS (SELECT FROM @.billing_rows WHERE tenant = $1) "
                                  "OR EXISTS (SELECT FROM @.demand_charges WHERE tenant = $1)",
                                  1, p);
                if (!r)
                    return 1;
                bool known = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
                PQclear(r);
                if (!known) {
                    fprintf(stderr,
                            "tariffd report: unknown tenant \"%s\" (in neither the configuration "
                            "nor the ledger)\n",
                            t);
                    return 2;
                }
            }
            names_add(out, t);
        }
        return 0;
    }
    for (size_t i = 0; i < l->cfg->n_tenants; i++)
        names_add(out, l->cfg->tenants[i].id);
    const char *p[] = {month_date};
    PGresult *r =
        run(l, "SELECT DISTINCT tenant FROM @.monthly_statements WHERE month = $1::date", 1, p);
    if (!r)
        return 1;
    for (int i = 0; i < PQntuples(r); i++)
        names_add(out, PQgetvalue(r, i, 0));
    PQclear(r);
    qsort(out->v, out->n, sizeof *out->v, by_name);
    return 0;
}

/* Writes the page next to its final name and renames it into place, so a
 * reader never sees half a page. */
static bool write_page(const char *path, const struct html *h)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fprintf(stderr, "tariffd report: %s: path too long\n", path);
        return false;
    }
    FILE *f = fopen(tmp, "w");
    bool ok = f && fwrite(h->buf, 1, h->len, f) == h->len;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "tariffd report: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
    }
    return ok;
}

int report_run(const struct config *cfg, const struct report_options *opt)
{
    int32_t year, month;
    if (!report_parse_month(opt->month, &year, &month)) {
        fprintf(stderr, "tariffd report: --month \"%s\" is not a month (expected YYYY-MM)\n",
                opt->month);
        return 2;
    }
    char month_date[16];
    snprintf(month_date, sizeof month_date, "%04d-%02d-01", (int)year, (int)month);

    struct ledger l = {.cfg = cfg};
    l.conn = PQconnectdb(cfg->postgres.conninfo);
    if (PQstatus(l.conn) != CONNECTION_OK) {
        char msg[400];
        first_line(PQerrorMessage(l.conn), msg, sizeof msg);
        fprintf(stderr, "tariffd report: cannot connect to PostgreSQL: %s\n", msg);
        PQfinish(l.conn);
        return 1;
    }
    if (mkdir(opt->out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "tariffd report: cannot create %s: %s\n", opt->out_dir, strerror(errno));
        PQfinish(l.conn);
        return 1;
    }
    char *quoted = PQescapeIdentifier(l.conn, cfg->postgres.schema, strlen(cfg->postgres.schema));
    l.schema = xstrdup(quoted ? quoted : "\"\"");
    PQfreemem(quoted);

    int status = 0;
    struct names tenants = {0};
    PGresult *r = run(&l, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
    if (r) {
        PQclear(r);
        status = choose_tenants(&l, opt, month_date, &tenants);
    } else {
        status = 1;
    }
    if (status == 1)
        fprintf(stderr, "tariffd report: %s\n", l.err);
    for (size_t i = 0; status == 0 && i < tenants.n; i++) {
        if (strchr(tenants.v[i], '/')) {
            fprintf(stderr, "tariffd report: tenant \"%s\" cannot name a file (it has a \"/\")\n",
                    tenants.v[i]);
            status = 1;
            break;
        }
        struct report_model m = {.year = year, .month = month};
        if (!read_model(&l, tenants.v[i], month_date, &m)) {
            fprintf(stderr, "tariffd report: %s\n", l.err);
            report_model_free(&m);
            status = 1;
            break;
        }
        struct html page = {0};
        report_page(&page, &m);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s-%s.html", opt->out_dir, tenants.v[i], opt->month);
        if (write_page(path, &page))
            printf("%s%s\n", path, m.n_clusters ? "" : " (no ledger rows in this month)");
        else
            status = 1;
        html_free(&page);
        report_model_free(&m);
    }
    for (size_t i = 0; i < tenants.n; i++)
        free(tenants.v[i]);
    free(tenants.v);
    free(l.schema);
    PQfinish(l.conn); /* the transaction only read: ending it with the connection is enough */
    return status;
}
