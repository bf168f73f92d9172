/*
 * history_cli: `tariffd backfill` and `tariffd requeue`, the command line's
 * side (daemon/history.h is the daemon's). The daemon does the work; these
 * find its control socket from the config and ask.
 *
 *   tariffd backfill [-c FILE] [--precision P] [--dry-run] [--quiet] < history.lp
 *     sends the input in whole lines, BACKFILL_PIECE_BYTES per request,
 *     printing its progress on stderr after each, then commits and prints
 *     the report. Exit 0, 1 (the daemon refused or is not running), 2 (a
 *     malformed or refused line, or a usage error).
 *   tariffd requeue [-c FILE] [--reason TEXT] [--from DATE --to DATE] [--dry-run]
 */
#ifndef DAEMON_HISTORY_CLI_H
#define DAEMON_HISTORY_CLI_H

int backfill_main(int argc, char **argv);
int requeue_main(int argc, char **argv);

#endif
