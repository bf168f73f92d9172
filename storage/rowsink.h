/*
 * rowsink: where closed rows go until the PostgreSQL ledger exists: CSV
 * files in state_dir, in the columns of `tariffd price` —
 * rows.csv (billing rows), demand.csv (demand rows) and quarantine.csv
 * (samples that could not be billed, with the reason).
 *
 * Rows reach the sink only once the journal records that produced them are
 * durable (the server holds them until then), so after a crash the files
 * plus a replay of the journal give each row exactly once: a checkpoint
 * records the files' sizes, and opening the sink cuts the files back to
 * them before the journal after the checkpoint is replayed.
 */
#ifndef STORAGE_ROWSINK_H
#define STORAGE_ROWSINK_H

#include "tariff/engine.h"
#include "tariff/errors.h"

#include <stdbool.h>
#include <stdint.h>

enum { ROWSINK_ROWS, ROWSINK_DEMAND, ROWSINK_QUARANTINE, ROWSINK_FILES };

struct rowsink;

/* Opens the files in dir, creating them with their header. With sizes
 * (from a checkpoint) each file is cut back to its size; without, files
 * are started afresh. */
struct rowsink *rowsink_open(const char *dir, const uint64_t *sizes, struct error *err);
void rowsink_close(struct rowsink *s);

/* Appends bytes already formatted as CSV lines to one of the files. */
bool rowsink_write(struct rowsink *s, int file, const char *bytes, size_t len, struct error *err);

/* The current size of each file, and fsync of all of them (callable from
 * another thread: it only uses the file descriptors). */
void rowsink_sizes(const struct rowsink *s, uint64_t sizes[ROWSINK_FILES]);
bool rowsink_sync(const struct rowsink *s, struct error *err);

/* Formats a quarantined sample as a CSV line (buf of CSV_LINE_MAX). */
size_t rowsink_quarantine_line(const struct engine_sample *smp, const char *reason,
                               int64_t received_ns, char *buf);

#endif
