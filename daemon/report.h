/*
 * report: `tariffd report` (docs/design.md section 7). Reads one local month
 * of the ledger in PostgreSQL ([postgres] conninfo and schema) and writes
 * one self-contained HTML statement per tenant, DIR/TENANT-YYYY-MM.html
 * (daemon/report_page.h).
 *
 * Read only: one REPEATABLE READ READ ONLY transaction, so every figure of
 * every page comes from the same snapshot; every query takes its values as
 * parameters. Figures come from the views (monthly_statements,
 * monthly_by_period, subsidy_by_programme) and, for what they do not hold
 * (days, intervals, demand, tariff versions, adjustments, the net at scale
 * 4), from the tables; nothing is priced again. The cost per PFLOP-hour
 * takes the chips' pflops from the config, as tariffd price does.
 */
#ifndef DAEMON_REPORT_H
#define DAEMON_REPORT_H

#include "tariff/config.h"

#include <stddef.h>

struct report_options {
    const char *month;    /* "YYYY-MM", as given */
    const char **tenants; /* none: every tenant of the config and of the month's ledger */
    size_t n_tenants;
    const char *out_dir;
};

/* Whether s is a month tariffd can report on ("2025-12"). */
bool report_parse_month(const char *s, int32_t *year, int32_t *month);

/* Returns the exit status: 0 every page written (a tenant without rows in
 * the month gets a page that says so), 1 PostgreSQL unreachable, the ledger
 * unreadable or a page that could not be written, 2 an unknown tenant (in
 * neither the config nor the ledger). Messages go to stderr, each written
 * file's name to stdout. */
int report_run(const struct config *cfg, const struct report_options *opt);

#endif
