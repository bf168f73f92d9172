/*
 * metrics: the daemon's counters and their Prometheus text exposition
 * (GET /metrics). Loop-thread only: every counter is bumped and read on
 * the event loop, so none needs a lock.
 */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum metrics_endpoint {
    ENDPOINT_WRITE_V1,
    ENDPOINT_WRITE_V2,
    ENDPOINT_PING,
    ENDPOINT_HEALTH,
    ENDPOINT_QUERY,
    ENDPOINT_METRICS,
    ENDPOINT_OTHER,
    ENDPOINT_COUNT
};

#define METRICS_STATUSES 10 /* 200 204 400 401 403 404 405 413 503 other */
#define METRICS_BUCKETS  12
#define METRICS_TENANTS  64

struct metrics {
    uint64_t requests[ENDPOINT_COUNT][METRICS_STATUSES];
    uint64_t write_latency_bucket[METRICS_BUCKETS + 1]; /* cumulative at exposition */
    double write_latency_sum_s;
    uint64_t write_latency_count;
    uint64_t samples_rejected[METRICS_STATUSES]; /* by the status of the refusal */
    uint64_t reloads_ok, reloads_failed;
    uint64_t rows_billing, rows_demand, rows_quarantine;
    uint64_t reprices, reprice_rows;   /* corrections applied (not dry runs), the rows they made */
    uint64_t backfills, backfill_rows; /* backfills and requeues applied, the rows they made */
    uint64_t released;                 /* quarantined samples requeue released */
    size_t n_tenants;
    struct {
        char tenant[64];
        int64_t kwh_micro;
        int64_t subsidy_cny4;
    } tenants[METRICS_TENANTS];
};

void metrics_request(struct metrics *m, enum metrics_endpoint e, int status);
/* A write request refused with status: counted as a request and as a
 * refusal by that status. */
void metrics_write_refused(struct metrics *m, enum metrics_endpoint e, int status);
void metrics_write_latency(struct metrics *m, double seconds);
void metrics_tenant(struct metrics *m, const char *tenant, int64_t kwh_micro, int64_t subsidy_cny4);

/* Gauges and counters kept elsewhere, sampled at exposition. */
struct metrics_gauges {
    uint64_t samples_accepted, duplicates, conflicts, quarantined;
    uint64_t intervals_closed, adjustments, demand_rows;
    uint64_t late_samples, intervals_reopened;
    size_t meters, samples_kept;
    bool waiting_for_caps;
    size_t held_calls;
    uint64_t journal_bytes, backlog_bytes, max_backlog_bytes;
    uint64_t rows_queued, rows_written;
    int postgres_up;
    uint64_t rows_dead_lettered, dead_letters_unresolved;
    uint64_t postgres_errors_transient, postgres_errors_refused;
    size_t connections, max_connections;
};

void metrics_expose(const struct metrics *m, const struct metrics_gauges *g, struct evbuffer *out);

#endif
