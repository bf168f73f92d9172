/*
 * correction_cli: the corrections' command lines, `tariffd reprice`,
 * `tariffd backfill` and `tariffd requeue` (daemon/correction.h and
 * daemon/history.h are the daemon's side). The daemon does the work (it is
 * the ledger's single writer, and its engine holds what later adjustments
 * are computed against) and validates the arguments, so the rules live in
 * one place; these find its control socket from the config and ask.
 *
 *   tariffd reprice [-c FILE] --from DATE --to DATE [--cluster ID]... [--dry-run]
 *     exit 0 with the report; 1 when the daemon refuses or is not running;
 *     2 for a usage error.
 *   tariffd backfill [-c FILE] [--precision P] [--dry-run] [--quiet] < history.lp
 *     sends the input in whole lines, BACKFILL_PIECE_BYTES per request,
 *     printing its progress on stderr after each, then commits and prints
 *     the report. Exit 0, 1 (the daemon refused or is not running), 2 (a
 *     malformed or refused line, or a usage error).
 *   tariffd requeue [-c FILE] [--reason TEXT] [--from DATE --to DATE] [--dry-run]
 */
#ifndef DAEMON_CORRECTION_CLI_H
#define DAEMON_CORRECTION_CLI_H

int reprice_main(int argc, char **argv);
int backfill_main(int argc, char **argv);
int requeue_main(int argc, char **argv);

#endif
