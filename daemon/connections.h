/*
 * connections: the limits on the HTTP connections of one evhttp — how many
 * may be open at once (max_connections), how long one may sit idle or
 * stalled mid-request (idle_timeout), and how large a request's headers
 * may be (64 KiB).
 *
 * libevent 2.1's evhttp has no connection limit of its own, so this module
 * counts: every accepted connection goes through the bufferevent callback
 * (evhttp_set_bevcb), and a close callback on its evhttp_connection counts
 * it out. At the limit the listeners stop accepting (new clients wait in
 * the kernel's backlog) until a connection closes; nothing is refused
 * half-read. Over-long headers (or request line) get libevent's own 400,
 * and the connection is closed; idle or stalled connections are closed
 * without an answer.
 *
 * Several evhttp may share the limits (the plain, TLS and metrics
 * listeners); a TLS one wraps each connection in an OpenSSL bufferevent.
 *
 * Runs on the loop thread only. Memory: conns_new's result is freed by
 * conns_free, after evhttp_free (which closes the connections).
 */
#ifndef DAEMON_CONNECTIONS_H
#define DAEMON_CONNECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEADERS_MAX_BYTES (64 * 1024)

struct evhttp;
struct evhttp_bound_socket;
struct event_base;
struct conns;

typedef struct ssl_ctx_st SSL_CTX;

/* The limits, shared by every evhttp attached; max_connections >= 1,
 * idle_timeout_s >= 1. */
struct conns *conns_new(struct event_base *base, int64_t max_connections, int64_t idle_timeout_s);

/* Installs the limits on http (at most three). With tls, its connections
 * speak TLS with the context *tls holds when each is accepted. A listener
 * not counted (the operator's metrics_listen) is neither counted against
 * max_connections nor paused at it, so tenants cannot shut the operator
 * out of /metrics and /health; its idle timeout and header limit hold. */
void conns_attach(struct conns *c, struct evhttp *http, SSL_CTX *const *tls, bool counted);

/* A listener to pause at the limit. */
void conns_add_listener(struct conns *c, struct evhttp_bound_socket *bound);

/* After a reload: new limits (the timeout applies to new connections). */
void conns_set_limits(struct conns *c, int64_t max_connections, int64_t idle_timeout_s);

size_t conns_open(const struct conns *c);

void conns_free(struct conns *c);

#endif
