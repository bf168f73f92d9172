/*
 * control: the operator's control socket (docs/design.md section 7,
 * "Corrections: tariffd reprice"): STATE_DIR/control.sock, a UNIX domain
 * socket of mode 0600 in the daemon user's own directory, so only that
 * user (and root) can connect. It speaks HTTP/1.1 on a second evhttp of
 * the loop (curl --unix-socket works):
 *
 *   POST /reprice?from=YYYY-MM-DD&to=YYYY-MM-DD[&cluster=ID]...[&dry_run=1]
 *
 * answered 200 text/plain with the report, or 400 (bad arguments, an
 * unknown cluster), 409 (a correction is running), 503 (PostgreSQL
 * unreachable or behind, the caps not read back, writes refused), 500 (the
 * engine refused a cluster-month), each with a one-line reason. It is not a
 * tenant listener: no token, no connection limit of max_connections.
 *
 * A stale socket left by a crash is replaced at start; the socket is
 * removed at stop. The command line side is daemon/control_client.h.
 */
#ifndef DAEMON_CONTROL_H
#define DAEMON_CONTROL_H

#include "tariff/errors.h"

#include <stdbool.h>
#include <stddef.h>

#define CONTROL_SOCKET_NAME "control.sock"

/* STATE_DIR/control.sock in buf; false (err set) when it is longer than a
 * socket address holds (107 bytes): a config error. */
bool control_socket_path(const char *state_dir, char *buf, size_t size, struct error *err);

struct server;
struct event_base;
struct control;

/* Binds the socket (replacing a stale one) and serves it on base. No other
 * thread may create files meanwhile: the socket's mode comes from umask. */
struct control *control_open(struct server *s, struct event_base *base, const char *state_dir,
                             struct error *err);

/* Closes the socket's connections and removes it. A correction in flight
 * must have been answered (correction_stop). */
void control_close(struct control *c);

#endif
