/*
 * history: `tariffd backfill` and `tariffd requeue` on the loop
 * (docs/design.md section 7, "Corrections: tariffd backfill and
 * requeue"), one correction at a time (with reprice).
 *
 * A backfill is a session over the control socket, so that a file of any
 * size goes in pieces and the command line can show progress:
 *
 *   POST /backfill?precision=P[&dry_run=1]   begins; 200 "session ID"
 *   POST /backfill/lines?session=ID          a piece of whole lines; 200
 *   POST /backfill/commit?session=ID         prices and writes; 200 report
 *   POST /backfill/abort?session=ID          drops it; 200
 *
 * Each piece is parsed and measured at once (tariff/backfill.h, step 1) by
 * an engine of its own, on the loop between live requests, which go on
 * as always. A malformed line ends the session with a 400 ("line N: ...",
 * N counted over the whole input) and nothing is written; so does a
 * reload (the measuring engine prices under the config it began with), a
 * session left idle for HISTORY_IDLE_S, or the daemon stopping. At the
 * commit the ledger's keys of the clusters measured are read on a thread
 * (daemon/ledger_read.h), the plan is made against them and the live
 * engine, journaled as one RECORD_BACKFILL and applied; the answer goes
 * out once PostgreSQL has committed the rows.
 *
 *   POST /requeue[?reason=TEXT][&from=DATE&to=DATE][&dry_run=1]
 *
 * reads the quarantined samples not yet released (daemon/ledger_read.h),
 * in time order, and measures them as a backfill
 * would; the samples whose intervals the plan bills are released (their
 * ids in the record, written to quarantine_releases), the others stay
 * quarantined: those the engine quarantines again are recorded again with
 * their reason now (the ledger keeps one row per sample and reason).
 */
#ifndef DAEMON_HISTORY_H
#define DAEMON_HISTORY_H

#include "daemon/correction.h"
#include "daemon/lineproto.h"
#include "daemon/server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY_IDLE_S 120 /* a session with no request for this long is dropped */

struct server;
struct history;

/* The outcome of a request that answers at once. */
struct history_answer {
    int status;
    char text[640];
};

void history_begin(struct server *s, enum lp_precision precision, bool dry_run,
                   struct history_answer *out);
void history_lines(struct server *s, uint64_t session, const char *body, size_t len,
                   struct history_answer *out);
void history_abort(struct server *s, uint64_t session, struct history_answer *out);

/* The commit, and a requeue, answer later through answer (exactly once),
 * unless they return false with *out holding the refusal. */
bool history_commit(struct server *s, uint64_t session, correction_answer answer, void *arg,
                    struct history_answer *out);

struct requeue_args {
    char *reason;           /* NULL: any */
    int64_t from_ns, to_ns; /* INT64_MIN, INT64_MAX: unbounded */
    bool dry_run;
};

/* Takes args' reason. */
bool history_requeue(struct server *s, struct requeue_args *args, correction_answer answer,
                     void *arg, struct history_answer *out);

/* Decodes a RECORD_BACKFILL payload and applies it to e (the daemon's
 * engine, or a dry run's copy); for the daemon's own, the released
 * samples go to the ledger with its rows. Live and in a replay alike. */
struct engine;
struct error;
struct reprice_effect;
bool history_apply_record(struct server *s, struct engine *e, const void *payload, size_t len,
                          struct reprice_effect *effects, struct error *err);

/* The config changed (a reload): a session measuring under the old one
 * ends (its command gets a 404 at its next request); one reading the
 * ledger answers 503; one that has applied is done with the config. */
void history_config_changed(struct server *s);

/* The daemon stops, or the journal failed: whatever is in flight is
 * answered 503 saying whether it was applied, and dropped. */
void history_stop(struct server *s);
void history_suspend(struct server *s);

#endif
