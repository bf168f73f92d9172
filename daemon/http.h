/*
 * http: the InfluxDB-compatible endpoints (docs/design.md section 3) on the
 * daemon's evhttp. The handlers ask the server (daemon/server.h) for the
 * config, the engine and its state, and hand it validated writes; the
 * server knows of HTTP only that it installs these routes and answers the
 * requests it was handed.
 */
#ifndef DAEMON_HTTP_H
#define DAEMON_HTTP_H

#include <stdbool.h>

struct server;
struct evhttp;
struct evhttp_request;

/* Who a listener serves: the tenants (writes, /ping, /health with its
 * status only, /query), or the operator on metrics_listen (/metrics, the
 * detailed /health, /ping). */
enum http_role { HTTP_TENANTS, HTTP_ADMIN };

/* Installs the routes for role on http; they run on the loop thread. */
void http_install(struct server *s, struct evhttp *http, enum http_role role);

/* Sends a JSON error in the style of the endpoint (v1 {"error":...}, v2
 * {"code":...,"message":...}); retry_after_s > 0 adds Retry-After. */
void http_error(struct evhttp_request *req, bool v2, int status, const char *msg,
                int retry_after_s);

#endif
