/*
 * csv: billing rows and demand rows as CSV lines, in the ledger's column
 * names and exact decimals (docs/design.md section 7): timestamps in RFC
 * 3339 UTC, months as YYYY-MM-DD, numbers with the column's scale (never
 * "-0"), NULL as an empty field, quoting per RFC 4180.
 *
 * Only `tariffd price --out` writes CSV files (daemon/offline.c, which also
 * writes its statement files with csv_text); the columns and their values
 * come from storage/columns.h, as the ledger's do.
 *
 * Each formatter writes one line, with its "\n", into a caller's buffer and
 * returns its length; CSV_LINE_MAX always suffices.
 */
#ifndef STORAGE_CSV_H
#define STORAGE_CSV_H

#include "tariff/engine.h"

#include <stddef.h>

#define CSV_LINE_MAX 8192

/* The header lines: the column names of storage/columns.h. */
size_t csv_billing_header(char *buf);
size_t csv_demand_header(char *buf);

size_t csv_billing_row(const struct billing_row *r, char *buf);
size_t csv_demand_row(const struct demand_row *r, char *buf);

/* Appends s to buf at *len, quoted when RFC 4180 requires it. */
void csv_text(char *buf, size_t *len, const char *s);

#endif
