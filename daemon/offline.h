/*
 * offline: `tariffd price` (docs/design.md section 7). Reads line protocol
 * from a stream, pushes each point into the engine as it is read (no sorting,
 * no holding the input), closes everything at the end of input, prints the
 * monthly statements and, with an output directory, writes the ledger's rows
 * as CSV.
 */
#ifndef DAEMON_OFFLINE_H
#define DAEMON_OFFLINE_H

#include "daemon/lineproto.h"
#include "tariff/config.h"

#include <stdio.h>

struct offline_options {
    enum lp_precision precision;
    const char *out_dir; /* NULL: statements only */
};

/* Returns the exit status: 0 done, 2 a malformed or refused line (reported
 * on stderr as "line N: reason"), 1 an output file could not be written. */
int offline_price(const struct config *cfg, FILE *in, const struct offline_options *opt);

#endif
