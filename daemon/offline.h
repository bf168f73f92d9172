/*
 * offline: `tariffd price` (docs/design.md section 7). Reads line protocol
 * from a stream, pushes each point into the engine as it is read (no sorting,
 * no holding the input), closes everything at the end of input, prints the
 * monthly statements and, with an output directory, writes the ledger's rows
 * as CSV.
 *
 * One pricing of one input is an offline_run; `tariffd price` is one run,
 * `tariffd price --compare` (daemon/compare.c) many, over the same input
 * under two configs and at several power scales. A run owns its engine,
 * its statements and the temporary files of its rows; offline_run_free
 * releases them.
 */
#ifndef DAEMON_OFFLINE_H
#define DAEMON_OFFLINE_H

#include "daemon/lineproto.h"
#include "tariff/config.h"
#include "tariff/statement.h"

#include <stdio.h>

struct offline_options {
    enum lp_precision precision;
    const char *out_dir; /* NULL: statements only */
};

/* Returns the exit status: 0 done, 2 a malformed or refused line (reported
 * on stderr as "line N: reason"), 1 an output file could not be written. */
int offline_price(const struct config *cfg, FILE *in, const struct offline_options *opt);

struct offline_run;

/* A run pricing under cfg. power_scale multiplies every value as read (kw,
 * w, kwh or wh), before anything else looks at it: 1 prices the input as it
 * is. keep_rows keeps the ledger rows for offline_run_write. NULL (after
 * saying why on stderr) when a temporary file cannot be made. */
struct offline_run *offline_run_new(const struct config *cfg, double power_scale, bool keep_rows);

/* Prices everything in `in` and closes every interval and month. Returns
 * 0; 2 for a malformed or refused line, reported on stderr as "line N:
 * reason" (after "LABEL: " when label is not NULL); 1 when reading failed. */
int offline_run_price(struct offline_run *o, FILE *in, enum lp_precision precision,
                      const char *label);

/* After offline_run_price: sorted by month, tenant, cluster. */
const struct statements *offline_run_statements(const struct offline_run *o);

/* The statements as tariffd price prints them, on stdout. */
void offline_run_print_statements(const struct offline_run *o);

/* The count of samples, duplicates, quarantined samples and rows on
 * stdout, and each quarantine reason on stderr, after "LABEL: " when label
 * is not NULL. */
void offline_run_print_counts(const struct offline_run *o, const char *label);

/* billing_rows.csv, demand_charges.csv, monthly_statements.csv and
 * monthly_by_period.csv in dir (which must exist); false after saying why
 * on stderr. Needs keep_rows. */
bool offline_run_write(struct offline_run *o, const char *dir);

void offline_run_free(struct offline_run *o);

/* A statement's amount as the tables and files show it: rounded half-even
 * to the fen, 2 decimals. */
void offline_format_fen(int64_t cny4, char *buf, size_t size);

/* Its net per PFLOP-hour of rated compute, 4 decimals, or "" when it has
 * none (statement_cny4_per_pflop_hour). */
void offline_format_per_pflop_hour(const struct statement *st, char *buf, size_t size);

#endif
