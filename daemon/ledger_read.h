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
 * Memory: ledger_read_start takes the request; the result's chunks belong
 * to the ledger_read until ledger_read_free (or the caller takes them).
 * The loop calls ledger_read_free after done() ran, or ledger_read_abandon
 * before (the thread then frees everything itself and never calls done).
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

struct ledger_read_request {
    char *conninfo, *schema; /* the writer's */
    struct ledger_read_cluster *clusters;
    size_t n_clusters;
    uint64_t wait_seq;    /* the writer must have committed up to this batch */
    struct pg_writer *pg; /* for its status only (thread-safe) */
};

struct ledger_read_result {
    bool ok;
    char error[512]; /* when not ok: the reason, for a 503 */
    /* Every batch up to this one is in what was read (it was committed
     * before the snapshot was taken). */
    uint64_t seen_seq;
    /* Months in order, then clusters by id. */
    struct reprice_record *chunks;
    size_t n_chunks;
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
