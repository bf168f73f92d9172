/*
 * ledger_rows: closed rows as the text parameters of the ledger's INSERTs
 * (docs/design.md section 5). Built on the loop thread from the engine's
 * rows, which point into the engine and the config, and handed whole to the
 * PostgreSQL writer thread, which owns them from then on.
 *
 * Each value is PostgreSQL's text form (timestamps in RFC 3339 UTC, exact
 * decimals, NULL as a null pointer); the subsidy lines of a row travel as
 * two array literals, programme names ({a,b}: names are plain identifiers)
 * and amounts ({0.9375,0.3125}).
 */
#ifndef STORAGE_LEDGER_ROWS_H
#define STORAGE_LEDGER_ROWS_H

#include "tariff/engine.h"

#include <stddef.h>
#include <stdint.h>

enum ledger_kind { LEDGER_BILLING, LEDGER_DEMAND, LEDGER_QUARANTINE, LEDGER_RELEASE };

/* Parameters: a row's columns (storage/columns.h), then for billing and
 * demand rows the local year, the programmes and the amounts of its
 * subsidy lines (24 and 19); a quarantined sample has 6; a release
 * (quarantine_releases) 2, the quarantined_samples id and the release
 * time in nanoseconds since the epoch. */
#define LEDGER_MAX_VALUES 24

struct ledger_rows {
    unsigned char *p;
    size_t len, cap;
    size_t n;
};

struct ledger_row {
    enum ledger_kind kind;
    int n;
    const char *values[LEDGER_MAX_VALUES]; /* NULL: SQL NULL */
};

void ledger_add_billing(struct ledger_rows *r, const struct billing_row *row);
void ledger_add_demand(struct ledger_rows *r, const struct demand_row *row);
void ledger_add_quarantine(struct ledger_rows *r, const struct engine_sample *s, const char *reason,
                           int64_t received_ns);
/* tariffd requeue sent quarantined sample quarantined_id back through
 * pricing at released_ns. A replay adds it again; the writer's ON CONFLICT
 * keeps the first. */
void ledger_add_release(struct ledger_rows *r, int64_t quarantined_id, int64_t released_ns);

/* The row at *offset (0 for the first), advancing *offset; false at the end. */
bool ledger_next(const struct ledger_rows *r, size_t *offset, struct ledger_row *out);

void ledger_rows_free(struct ledger_rows *r);

#endif
