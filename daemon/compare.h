/*
 * compare: `tariffd price -c CONF --compare ALT [--scale F]` (docs/design.md
 * section 7). Prices one input under two configs, CONF as it is and ALT
 * with every value multiplied by F (daemon/offline.c's power scale), prints
 * both monthly statements side by side per cluster and month with their
 * differences, and searches the break-even scale (tariff/breakeven.h) by
 * pricing the input under ALT again at other scales.
 *
 * Unlike tariffd price, it holds its whole input in memory: it reads it
 * about 17 times. Both configs must have the same clusters.
 */
#ifndef DAEMON_COMPARE_H
#define DAEMON_COMPARE_H

#include "daemon/lineproto.h"
#include "tariff/config.h"

#include <stdio.h>

struct compare_options {
    enum lp_precision precision;
    const char *out_dir;   /* NULL: print only */
    const char *conf_path; /* for the labels */
    const char *alt_path;
    const char *scale_text; /* F as given: "1.4" */
    double scale;           /* F, > 0 */
};

/* Returns the exit status: 0 done (with or without a break-even), 1 a
 * cluster in one config only, or an input or output file that could not
 * be read or written, 2 a malformed or refused line ("line N: reason" on
 * stderr, after "ALT xF: " when only ALT's pricing refused it). */
int compare_price(const struct config *conf, const struct config *alt, FILE *in,
                  const struct compare_options *opt);

#endif
