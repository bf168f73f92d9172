/*
 * control_client: the command line's side of the control socket
 * (daemon/control.h). One HTTP/1.1 request with `Connection: close` over
 * a plain blocking AF_UNIX socket, and its answer read to the end.
 */
#ifndef DAEMON_CONTROL_CLIENT_H
#define DAEMON_CONTROL_CLIENT_H

#include "tariff/errors.h"

#include <stddef.h>

enum control_call_result {
    CONTROL_ANSWERED,       /* *status and *body hold the answer */
    CONTROL_CANNOT_CONNECT, /* nothing listens: err says why */
    CONTROL_FAILED,         /* connected, but no whole answer within the timeout: err */
};

/* Sends `method target` to the socket at path and waits up to timeout_s
 * for the answer. *body (malloc'd, NUL-terminated) is the caller's. */
enum control_call_result control_call(const char *path, const char *method, const char *target,
                                      int timeout_s, int *status, char **body, struct error *err);

/* control_call with a body of content_len bytes. */
enum control_call_result control_send(const char *path, const char *method, const char *target,
                                      const char *content, size_t content_len, int timeout_s,
                                      int *status, char **body, struct error *err);

/* The most a piece of `tariffd backfill` holds: the input goes in whole
 * lines of up to this many bytes per request. */
#define BACKFILL_PIECE_BYTES (4u << 20)

/* s percent-encoded for a query string value (malloc'd). */
char *control_query_escape(const char *s);

#endif
