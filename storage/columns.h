/*
 * columns: the columns of the ledger's billing and demand rows, in one
 * place: their names (as in PostgreSQL and in tariffd price's CSV files) and
 * each row's values as PostgreSQL's text, in that order (docs/design.md
 * section 5). The CSV writer (csv.c), the ledger's parameters
 * (ledger_rows.c) and the INSERTs of the PostgreSQL writer (pg.c) are all
 * built from this table, so they cannot disagree.
 *
 * Text forms: timestamps in RFC 3339 UTC (2025-11-30T16:00:00Z), dates as
 * YYYY-MM-DD, numbers with the column's exact decimals (never "-0"), NULL
 * as a null pointer. A prorated demand row's `proration` is its charge as
 * a sum, one term per run of days with one monthly charge:
 * "15/30 x 305000.0000 (2026-04-01..2026-04-15; billing_kw 12500.000000)
 * + ..."; the charge is that sum rounded half-even to 4 decimals.
 */
#ifndef STORAGE_COLUMNS_H
#define STORAGE_COLUMNS_H

#include "tariff/engine.h"

#include <stddef.h>

#define BILLING_COLUMNS 21
#define DEMAND_COLUMNS  18

extern const char *const billing_column_names[BILLING_COLUMNS];
extern const char *const demand_column_names[DEMAND_COLUMNS];

/* One row's values; the strings point into buf or are static. */
struct row_values {
    int n;
    const char *v[BILLING_COLUMNS];
    char buf[4096]; /* a proration of 31 runs of days fits */
    size_t used;
};

void billing_values(const struct billing_row *r, struct row_values *out);
void demand_values(const struct demand_row *r, struct row_values *out);

/* RFC 3339 UTC: 2025-11-30T16:00:00Z (buf of 32). */
void format_timestamp(int64_t ts_s, char *buf);

#endif
