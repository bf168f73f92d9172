/*
 * ledger_read: what a correction reads from the ledger (docs/design.md
 * section 7, "Corrections: tariffd reprice"), on a thread of its own so
 * the loop never waits for PostgreSQL.
 *
 * The thread first waits (up to LEDGER_READ_WAIT_S) until the ledger
 * writer has committed every batch up to wait_seq, the last one made
 * before the command, then opens a connection of its own (the conninfo
 * and schema of the writer) and reads, in one REPEATABLE READ snapshot,
 * every cluster-month of the clusters asked that has an interval_start in
 * [from_s, to_s): all of its billing_rows summed per interval over
 * revisions, with their subsidy_lines per programme, and its
 * demand_charges row likewise. Every number is parsed from PostgreSQL's
 * text at its column's scale (kWh and kW 6, money 4), never through a
 * double.
 *
 * That is the reprice read (LEDGER_READ_REPRICE, kind 0, so a request
 * that does not name its kind is one). The same thread, wait and snapshot
 * serve two more kinds, for the other corrections:
 *
 * - LEDGER_READ_BACKFILL_KEYS, for tariffd backfill, which prices history
 *   only into intervals that have no row yet: for each cluster asked (in
 *   the request's order), the distinct interval_starts of its billing_rows
 *   in [from_s, to_s), the distinct months of those rows, and the distinct
 *   months of its demand_charges from the first of the month of the day
 *   before from_s's UTC date (so the local month of from_s, whatever the
 *   offset, and maybe the one before) up to the day after to_s's UTC date,
 *   excluded; all ascending. One query per cluster per set, never one per
 *   interval.
 *
 * - LEDGER_READ_QUARANTINED, for tariffd requeue: every quarantined
 *   sample that has no quarantine_releases row, with the reason asked
 *   (NULL: any) and ts_ns in [from_ns, to_ns) (INT64_MIN, INT64_MAX: no
 *   bound on that side; a sample without ts_ns is read only when neither
 *   side is bounded), in time order (ts_ns, then id), so that measuring
 *   them needs no late_window. value is parsed with strtod from
 *   PostgreSQL's shortest exact text (extra_float_digits is set for it),
 *   so it is the double that was written.
 *
 * Both read through a cursor, 10000 rows at a time: a million samples or
 * interval starts are held once, in the result, and never also whole in
 * one PGresult.
 *
 * Memory: ledger_read_start takes the request; the result's chunks, keys
 * and samples belong to the ledger_read until ledger_read_free (or the
 * caller takes them). The loop calls ledger_read_free after done() ran, or
 * ledger_read_abandon before (the thread then frees everything itself and
 * never calls done).
 */
#ifndef DAEMON_LEDGER_READ_H
#define DAEMON_LEDGER_READ_H

#include "daemon/ingest.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_READ_WAIT_S 30 /* for the writer to commit what was made before the command */

struct pg_writer;

struct ledger_read_cluster {
    char *id;
    int64_t from_s, to_s; /* local midnight of from and to, in the cluster's UTC offset */
};

/* A cluster asked for from local midnight of day from_day to that of
 * to_day (excluded), in its tariff's offset. */
struct cluster;
struct ledger_read_cluster ledger_read_months(const struct cluster *c, int32_t from_day,
                                              int32_t to_day);

enum ledger_read_kind {
    LEDGER_READ_REPRICE = 0,   /* chunks */
    LEDGER_READ_BACKFILL_KEYS, /* keys */
    LEDGER_READ_QUARANTINED,   /* quarantined */
};

struct ledger_read_request {
    enum ledger_read_kind kind;
    char *conninfo, *schema;              /* the writer's */
    struct ledger_read_cluster *clusters; /* reprice and backfill keys */
    size_t n_clusters;
    /* Quarantined: the reason (NULL: any) and the range of ts_ns. */
    char *reason;
    int64_t from_ns, to_ns; /* [from_ns, to_ns); INT64_MIN, INT64_MAX: unbounded */
    uint64_t wait_seq;      /* the writer must have committed up to this batch */
    struct pg_writer *pg;   /* for its status only (thread-safe) */
};

/* What a backfill must not price again, of one cluster: the starts of its
 * intervals that have a billing row (Unix seconds), the months of those
 * rows and the months that have a demand row (day numbers of each month's
 * first day, as civil_to_day counts). Each ascending, without repeats. */
struct ledger_keys {
    char *id;
    int64_t *interval_starts;
    size_t n_interval_starts;
    int32_t *row_months;
    size_t n_row_months;
    int32_t *demand_months;
    size_t n_demand_months;
};

/* A quarantined sample not yet released. cluster, meter and kind are NULL
 * where the table has NULL; ts_ns and value are 0 unless has_ts and
 * has_value. */
struct quarantined {
    int64_t id;
    char *cluster, *meter, *kind, *reason;
    int64_t ts_ns;
    double value;
    bool has_ts;
    bool has_value;
};

struct ledger_read_result {
    bool ok;
    char error[512]; /* when not ok: the reason, for a 503 */
    /* Every batch up to this one is in what was read (it was committed
     * before the snapshot was taken). */
    uint64_t seen_seq;
    /* Reprice: months in order, then clusters by id. */
    struct reprice_record *chunks;
    size_t n_chunks;
    /* Backfill keys: one per cluster asked, in the request's order. */
    struct ledger_keys *keys;
    size_t n_keys;
    /* Quarantined: by ts_ns (none last), then id. */
    struct quarantined *quarantined;
    size_t n_quarantined;
};

struct ledger_read;

/* Starts reading on a new thread (takes req's contents); done(arg) is
 * called from that thread once the result is ready, and never after
 * ledger_read_abandon. */
struct ledger_read *ledger_read_start(struct ledger_read_request *req, void (*done)(void *arg),
                                      void *arg);

/* After done(): the result, which stays the ledger_read's. */
struct ledger_read_result *ledger_read_result(struct ledger_read *r);

/* After done(): ends the thread and frees everything. */
void ledger_read_free(struct ledger_read *r);

/* Before done() (the daemon stops): the thread gives up as soon as it can
 * and frees what it holds; done() is not called. */
void ledger_read_abandon(struct ledger_read *r);

void ledger_read_request_free(struct ledger_read_request *req);

#endif
