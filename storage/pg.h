/*
 * pg: the PostgreSQL ledger writer (docs/design.md sections 5 and 6).
 *
 * One thread of its own with a blocking libpq connection. A thread rather
 * than non-blocking libpq on the event loop: the writer's life is a
 * sequence of waits (connect, back off, wait for the advisory lock, run a
 * pipelined transaction) that reads straight as blocking code, and the
 * loop hands it finished rows and never waits for PostgreSQL.
 *
 * It connects (reconnecting with capped exponential backoff and jitter),
 * takes the schema's writer advisory lock for its session (a second daemon
 * waits as a standby), applies the embedded migrations under a migration
 * lock, records every loaded tariff version and the programmes' caps, and
 * then writes batches in submission order, one transaction each: every
 * row an INSERT ... ON CONFLICT DO NOTHING (so a replay after a crash
 * cannot bill twice) with its subsidy lines, then pg_notify with the
 * largest id. A batch leaves the queue only after its COMMIT.
 *
 * Every failure is judged by its SQLSTATE. A transient one (the
 * connection, a server shutting down or out of resources, a serialization
 * failure or deadlock) is retried with the same backoff, on the same
 * connection when it is still good, and so is any error that is no row's
 * fault (no privilege, a missing table, a trigger raising, dead_letters
 * refusing a row): every row waits. A data exception (22) or an integrity
 * violation (23) refuses one row: the pipeline names it (or halves of the
 * group are tried until one row is left), the rows around it are committed
 * in order, and the row goes to the dead_letters table with its raw
 * parameters and the error, so one bad row never stops the ledger and
 * nothing is lost. Text parameters are valid UTF-8 without NUL by
 * construction (daemon/lineproto.h and the config reader refuse anything
 * else); a journal written before that was checked is what dead_letters is
 * for.
 */
#ifndef STORAGE_PG_H
#define STORAGE_PG_H

#include "storage/ledger_rows.h"
#include "tariff/config.h"

#include <stdbool.h>
#include <stdint.h>

struct pg_writer;

struct pg_status {
    bool connected;     /* connected, lock held, schema migrated */
    bool standby;       /* another daemon holds the schema's writer lock */
    bool failing;       /* the last write failed transiently (last_error); cleared by a
                           commit, or by an empty queue while connected */
    uint64_t committed; /* the last batch sequence committed */
    uint64_t queued;    /* rows waiting */
    uint64_t written;   /* rows committed since start (a replay's duplicates included) */
    bool caps_ready;    /* recover_caps was asked and the caps are read */
    char last_error[256];
    /* Rows PostgreSQL refused (by SQLSTATE: not transient) went to
     * dead_letters: how many since start, how many the table holds
     * unresolved (counted at connect, after each, and every 10 s while any
     * are, the writer busy or idle), and the newest unresolved one's "SQLSTATE: message". */
    uint64_t dead_lettered;
    uint64_t dead_letters_unresolved;
    char dead_letter_error[300];
    char refused_sqlstate[6];
    uint64_t errors_transient, errors_refused;
};

/* Log priorities, as sd-daemon numbers them. */
enum pg_log_priority { PG_LOG_ERR = 3, PG_LOG_WARNING = 4, PG_LOG_NOTICE = 5, PG_LOG_DEBUG = 7 };

/* What the writer calls from its thread: wake whenever its status changes
 * (a commit, a connection won or lost), log for each event worth a line
 * (never a conninfo or a password). storage/ sits below the daemon and
 * knows nothing of how it logs. */
struct pg_callbacks {
    void (*wake)(void *arg);
    void (*log)(void *arg, enum pg_log_priority priority, const char *message);
    void *arg;
};

/* sql with every "@." replaced by the quoted schema and a dot (a
 * malloc'd string): the readers of the ledger (tariffd report, a
 * correction's read) name their tables so. */
char *pg_schema_sql(const char *sql, const char *quoted_schema);

/* Whether libpq can parse conninfo; when it cannot and why is not NULL,
 * libpq's reason. That reason may quote a piece of the string, part of a
 * password even ("missing "=" after "def""), so it is for the operator's
 * terminal (tariffd --check-config), never for the log: the writer logs a
 * fixed message instead. */
bool pg_conninfo_parses(const char *conninfo, char *why, size_t size);

/* Starts the writer. With recover_caps, it reads the caps from
 * subsidy_lines once connected (pg_take_caps). */
struct pg_writer *pg_start(const struct config *cfg, bool recover_caps,
                           const struct pg_callbacks *callbacks);

/* After a reload: records the new config's tariff versions and caps. */
void pg_reload(struct pg_writer *w, const struct config *cfg);

/* Hands over the rows of every record up to seq (takes ownership). */
void pg_submit(struct pg_writer *w, uint64_t seq, struct ledger_rows *rows);

void pg_status(struct pg_writer *w, struct pg_status *out);

/* The caps read back (malloc'd array, caller frees); once. */
struct cap_consumed *pg_take_caps(struct pg_writer *w, size_t *n);

/* Stops the thread: waits up to timeout_ms for the queue to be written,
 * then gives up (what is left is in the journal and is written after the
 * restart). */
void pg_stop(struct pg_writer *w, int timeout_ms);

#endif
