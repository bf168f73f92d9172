/*
 * log: one event per line on stderr with an sd-daemon priority prefix
 * ("<3>" error ... "<7>" debug), which journald turns into priorities.
 * Never log a token, a password or a conninfo string.
 */
#ifndef DAEMON_LOG_H
#define DAEMON_LOG_H

enum { LOG_ERR = 3, LOG_WARNING = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
