/*
 * correction: `tariffd reprice` on the loop (docs/design.md section 7,
 * "Corrections: tariffd reprice"), one at a time.
 *
 * Started from the control socket (daemon/control.h) with validated
 * arguments, a correction is refused at once (409 while another runs; 503
 * while writes are refused, PostgreSQL is not connected or the yearly
 * caps are not read back), or it reads the touched cluster-months from
 * the ledger on a thread (daemon/ledger_read.h), after the writer has
 * committed every row made before the command. Back on the loop it
 * applies them, months in order and clusters by id within a month:
 *  - a dry run to a copy of the engine (engine_save, engine_load without
 *    a sink), nothing journaled or written;
 *  - a real run to the engine itself; a cluster-month that makes rows is
 *    journaled as one RECORD_REPRICE record with them (daemon/ingest.h),
 *    so a replay after a crash makes the same rows; one that makes none
 *    leaves the engine as it was and is not journaled.
 * The answer, a report of what changed per cluster-month and in total
 * (the same for a dry run, after a first line saying so), goes out once
 * PostgreSQL has committed the last of the rows.
 *
 * The loop runs on while the ledger is read. Everything committed before
 * the read's snapshot is in it; a row made after that for a touched
 * month (a late sample, an interval becoming final and priced on the
 * way) may not be. Where the engine still holds the interval or month it
 * reprices from its own sums and the read does not matter, but one that
 * became final meanwhile would be repriced from stale sums. So when any
 * row of an asked cluster in the months of the range was made after the
 * snapshot's last committed batch, or the config was reloaded, the
 * ledger is read again (CORRECTION_READS reads in all, then 503). This is
 * stricter than "the freeze point moved": the engine does not tell when
 * its intervals become final, and a retry costs one read.
 */
#ifndef DAEMON_CORRECTION_H
#define DAEMON_CORRECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORRECTION_READS    3  /* reads of the ledger before giving up on one that keeps changing */
#define CORRECTION_COMMIT_S 60 /* for PostgreSQL to commit the rows made, before a 503 */

struct server;

struct correction_args {
    int32_t from_day, to_day; /* local dates (day numbers): [from, to) */
    char **clusters;          /* sorted, unique, each in the config */
    size_t n_clusters;
    bool all_clusters; /* none named: every cluster of the config */
    bool dry_run;
};

void correction_args_free(struct correction_args *a);

/* Called exactly once, on the loop: status 200 with the report, or an
 * error status with a one-line reason. */
typedef void (*correction_answer)(void *arg, int status, const char *text);

/* Starts a correction (taking args' clusters); answer comes later. When it
 * cannot start, returns false with *status (409 or 503) and why, and
 * answer is never called. */
bool correction_start(struct server *s, struct correction_args *args, correction_answer answer,
                      void *arg, int *status, char *why, size_t why_size);

/* Why no correction (reprice, backfill, requeue) can run now, in buf or a
 * static text; NULL when one can: writes refused, PostgreSQL not
 * connected, the caps not read back, dead letters unresolved. */
const char *correction_refusal(struct server *s, char *buf, size_t size);

/* What every correction shares (daemon/history.c too). */

/* A ledger read request with the writer's conninfo and schema, waiting
 * for every row made so far to be committed. */
struct ledger_read_request;
void correction_request(struct server *s, struct ledger_read_request *req);

/* A copy of the engine with no sink, for a dry run; NULL (err set) when
 * its state does not load again. */
struct engine;
struct error;
struct engine *correction_dry_engine(struct server *s, struct error *err);

/* Waits, polling the writer, for PostgreSQL to commit every record up to
 * seq, or CORRECTION_COMMIT_S: then calls done once, with the writer's
 * status (committed >= seq, or not within the time). Freed by
 * commit_wait_cancel, which done may call. */
struct pg_status;
struct commit_wait;
typedef void (*commit_done)(void *arg, const struct pg_status *st);
struct commit_wait *commit_wait_start(struct server *s, uint64_t seq, commit_done done, void *arg);
void commit_wait_cancel(struct commit_wait *w);

/* From the engine's sink, while a correction reads: a row of cluster in the
 * local month month_day goes into the next record journaled. */
void correction_note_row(struct server *s, const char *cluster, int32_t month_day);

/* The daemon stops: a correction in flight is answered 503 (saying
 * whether it was applied), its reader let go. */
void correction_stop(struct server *s);

/* The journal failed (the daemon suspends writes): a correction in flight
 * is answered 503 with the reason, its reader let go. */
void correction_suspend(struct server *s);

#endif
