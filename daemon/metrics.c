#include "metrics.h"

#include "tariff/decimal.h"

#include <event2/buffer.h>

#include <stdio.h>
#include <string.h>

static const int statuses[METRICS_STATUSES - 1] = {200, 204, 400, 401, 403, 404, 405, 413, 503};
static const char *const endpoints[ENDPOINT_COUNT] = {"/write", "/api/v2/write", "/ping", "/health",
                                                      "/query", "/metrics",      "other"};
static const double buckets_s[METRICS_BUCKETS] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                  0.1,   0.2,   0.5,   1,    2,    5};

static int status_index(int status)
{
    for (int i = 0; i < METRICS_STATUSES - 1; i++)
        if (statuses[i] == status)
            return i;
    return METRICS_STATUSES - 1;
}

void metrics_request(struct metrics *m, enum metrics_endpoint e, int status)
{
    m->requests[e][status_index(status)]++;
}

void metrics_write_refused(struct metrics *m, enum metrics_endpoint e, int status)
{
    m->requests[e][status_index(status)]++;
    m->samples_rejected[status_index(status)]++;
}

void metrics_write_latency(struct metrics *m, double seconds)
{
    int i = 0;
    while (i < METRICS_BUCKETS && seconds > buckets_s[i])
        i++;
    m->write_latency_bucket[i]++;
    m->write_latency_sum_s += seconds;
    m->write_latency_count++;
}

void metrics_tenant(struct metrics *m, const char *tenant, int64_t kwh_micro, int64_t subsidy_cny4)
{
    size_t i = 0;
    while (i < m->n_tenants && strcmp(m->tenants[i].tenant, tenant) != 0)
        i++;
    if (i == m->n_tenants) {
        if (m->n_tenants == METRICS_TENANTS)
            return;
        snprintf(m->tenants[i].tenant, sizeof m->tenants[i].tenant, "%s", tenant);
        m->n_tenants++;
    }
    m->tenants[i].kwh_micro += kwh_micro;
    m->tenants[i].subsidy_cny4 += subsidy_cny4;
}

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, double v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name,
                        v);
}

void metrics_expose(const struct metrics *m, const struct metrics_gauges *g, struct evbuffer *out)
{
    counter(out, "tariffd_samples_accepted_total", "Samples accepted and priced.",
            g->samples_accepted);
    counter(out, "tariffd_samples_duplicate_total",
            "Samples ignored as duplicates (same meter and timestamp).", g->duplicates);
    counter(out, "tariffd_samples_conflicting_total",
            "Duplicates with another value (the first one is kept).", g->conflicts);
    counter(out, "tariffd_samples_quarantined_total", "Samples that could not be billed.",
            g->quarantined);
    evbuffer_add_printf(out, "# HELP tariffd_write_requests_rejected_total Write requests "
                             "refused, by status.\n# TYPE tariffd_write_requests_rejected_total "
                             "counter\n");
    for (int i = 0; i < METRICS_STATUSES - 1; i++)
        if (statuses[i] >= 400)
            evbuffer_add_printf(out, "tariffd_write_requests_rejected_total{code=\"%d\"} %llu\n",
                                statuses[i], (unsigned long long)m->samples_rejected[i]);
    evbuffer_add_printf(out, "# HELP tariffd_http_requests_total HTTP requests by endpoint and "
                             "status.\n# TYPE tariffd_http_requests_total counter\n");
    for (int e = 0; e < ENDPOINT_COUNT; e++)
        for (int i = 0; i < METRICS_STATUSES; i++)
            if (m->requests[e][i])
                evbuffer_add_printf(
                    out, "tariffd_http_requests_total{endpoint=\"%s\",code=\"%s%d\"} %llu\n",
                    endpoints[e], i == METRICS_STATUSES - 1 ? "other" : "",
                    i == METRICS_STATUSES - 1 ? 0 : statuses[i],
                    (unsigned long long)m->requests[e][i]);
    evbuffer_add_printf(out, "# HELP tariffd_write_duration_seconds Time from a write request to "
                             "its 204 (durable).\n# TYPE tariffd_write_duration_seconds "
                             "histogram\n");
    uint64_t cumulative = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += m->write_latency_bucket[i];
        evbuffer_add_printf(out, "tariffd_write_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            buckets_s[i], (unsigned long long)cumulative);
    }
    evbuffer_add_printf(out,
                        "tariffd_write_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "tariffd_write_duration_seconds_sum %.9f\n"
                        "tariffd_write_duration_seconds_count %llu\n",
                        (unsigned long long)m->write_latency_count, m->write_latency_sum_s,
                        (unsigned long long)m->write_latency_count);
    counter(out, "tariffd_intervals_closed_total", "Interval rows (revision 0) produced.",
            g->intervals_closed);
    counter(out, "tariffd_adjustments_total", "Adjustment rows produced by late samples.",
            g->adjustments);
    counter(out, "tariffd_demand_rows_total", "Demand charge rows produced.", g->demand_rows);
    counter(out, "tariffd_late_samples_total",
            "Samples that changed closed intervals (absorbed into their reopened intervals).",
            g->late_samples);
    counter(out, "tariffd_intervals_reopened_total",
            "Closed intervals reopened by late samples; each closes again with one adjustment.",
            g->intervals_reopened);
    gauge(out, "tariffd_meters", "Meters known to the engine.", (double)g->meters);
    gauge(out, "tariffd_connections", "HTTP connections open.", (double)g->connections);
    gauge(out, "tariffd_connections_max", "max_connections: at it, new connections wait.",
          (double)g->max_connections);
    gauge(out, "tariffd_samples_kept", "Samples held for open and adjustable intervals.",
          (double)g->samples_kept);
    gauge(out, "tariffd_waiting_for_caps",
          "1 while closing waits for the yearly caps to be read back from PostgreSQL.",
          g->waiting_for_caps ? 1 : 0);
    gauge(out, "tariffd_held_calls", "Pushes and ticks kept until the yearly caps are read back.",
          (double)g->held_calls);
    gauge(out, "tariffd_journal_bytes", "Bytes in the journal's segments on disk.",
          (double)g->journal_bytes);
    gauge(out, "tariffd_journal_backlog_bytes",
          "Journal bytes after the last checkpoint: not yet known to be in PostgreSQL.",
          (double)g->backlog_bytes);
    gauge(out, "tariffd_journal_backlog_limit_bytes", "max_backlog.", (double)g->max_backlog_bytes);
    gauge(out, "tariffd_ledger_rows_queued", "Rows waiting to be written to PostgreSQL.",
          (double)g->rows_queued);
    counter(out, "tariffd_ledger_rows_written_total",
            "Rows committed to PostgreSQL (a replay's rows the ledger already had included).",
            g->rows_written);
    gauge(out, "tariffd_postgres_up", "1 when connected to PostgreSQL and writing the schema.",
          g->postgres_up);
    counter(out, "tariffd_rows_dead_lettered_total",
            "Rows PostgreSQL refused, kept in dead_letters instead (since start).",
            g->rows_dead_lettered);
    gauge(out, "tariffd_dead_letters_unresolved", "Rows in dead_letters not yet resolved.",
          (double)g->dead_letters_unresolved);
    evbuffer_add_printf(out,
                        "# HELP tariffd_postgres_errors_total PostgreSQL errors by class: "
                        "transient (retried) or refused (the row goes to dead_letters).\n"
                        "# TYPE tariffd_postgres_errors_total counter\n"
                        "tariffd_postgres_errors_total{class=\"transient\"} %llu\n"
                        "tariffd_postgres_errors_total{class=\"refused\"} %llu\n",
                        (unsigned long long)g->postgres_errors_transient,
                        (unsigned long long)g->postgres_errors_refused);
    counter(out, "tariffd_reprices_total",
            "Corrections (tariffd reprice) applied; dry runs are not counted.", m->reprices);
    counter(out, "tariffd_reprice_rows_total",
            "Adjustment rows (billing and demand) made by corrections.", m->reprice_rows);
    counter(out, "tariffd_backfills_total",
            "Backfills and requeues applied (tariffd backfill, tariffd requeue); dry runs are not "
            "counted.",
            m->backfills);
    counter(out, "tariffd_backfill_rows_total",
            "Rows (billing, demand, quarantined samples, releases) backfills and requeues made.",
            m->backfill_rows);
    counter(out, "tariffd_released_samples_total",
            "Quarantined samples tariffd requeue released into billed intervals.", m->released);
    counter(out, "tariffd_reloads_ok_total", "Configuration reloads applied.", m->reloads_ok);
    counter(out, "tariffd_reloads_failed_total", "Configuration reloads rejected.",
            m->reloads_failed);
    evbuffer_add_printf(out, "# HELP tariffd_energy_kwh_total Energy billed per tenant "
                             "(adjustments included).\n# TYPE tariffd_energy_kwh_total counter\n");
    char v[48];
    for (size_t i = 0; i < m->n_tenants; i++) {
        decimal_format(m->tenants[i].kwh_micro, 6, v, sizeof v);
        evbuffer_add_printf(out, "tariffd_energy_kwh_total{tenant=\"%s\"} %s\n",
                            m->tenants[i].tenant, v);
    }
    evbuffer_add_printf(out, "# HELP tariffd_subsidy_cny_total Subsidy granted per tenant on "
                             "energy and demand.\n# TYPE tariffd_subsidy_cny_total counter\n");
    for (size_t i = 0; i < m->n_tenants; i++) {
        decimal_format(m->tenants[i].subsidy_cny4, 4, v, sizeof v);
        evbuffer_add_printf(out, "tariffd_subsidy_cny_total{tenant=\"%s\"} %s\n",
                            m->tenants[i].tenant, v);
    }
}
