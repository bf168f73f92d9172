/*
 * server: the daemon (docs/design.md sections 3, 4 and 6), and what its
 * HTTP endpoints (daemon/http.h) may ask of it.
 *
 * One libevent loop thread owns the config, the engine and every HTTP
 * request; one worker thread (worker.c) owns the journal; the ledger
 * writer (storage/pg.c) has a thread of its own. The loop validates a
 * write, applies it to the engine (which may close intervals), and hands
 * the worker a job: the journal record plus the rows it produced. The
 * worker appends a group of records, fsyncs once for all of them (group
 * commit), hands their rows to the ledger writer, and wakes the loop,
 * which then answers 204 to every request of the group. Rows thus reach
 * PostgreSQL only once what produced them is durable, and a replay of the
 * journal after the last checkpoint (recover.c) produces exactly the rows
 * the ledger may be missing.
 *
 * Wall-clock decisions are records too (a tick a second), so a replay
 * closes what the live daemon closed. A checkpoint (the engine's state) is
 * written by the worker about every minute, once the ledger has every row
 * it covers; the journal before it is deleted.
 */
#ifndef DAEMON_SERVER_H
#define DAEMON_SERVER_H

#include "daemon/ingest.h"
#include "daemon/loader.h"
#include "tariff/config.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct server;
struct lp_cache;
struct evhttp_request;

/* Runs the daemon until SIGTERM or SIGINT; returns the exit status. Takes
 * ownership of cfg and src, the texts it was built from (a reload replaces
 * both); config_path is read on SIGHUP. */
int server_run(struct config *cfg, struct config_source *src, const char *config_path);

/* For daemon/http.c: the loop-side state a request handler needs. */
const struct config *server_config(const struct server *s);
const struct engine *server_engine(const struct server *s);
struct lp_cache *server_ingest_cache(struct server *s);

/* Why a write cannot be taken at the wall clock now_ns (NULL when it
 * can): shutting down, a clock no record may carry (ingest.h), standby,
 * the yearly caps being read back, the journal backlog over max_backlog,
 * the disk nearly full. */
const char *server_refuses_writes(const struct server *s, int64_t now_ns);

/* NULL when a write may go on; otherwise why it is shed (503, retry):
 * admission control under overload. Asked once per write request, after
 * server_refuses_writes. */
const char *server_shed_write(struct server *s);

/* A write request's parsing and applying took the loop from started to
 * now (monotonic): the load admission control measures. */
void server_write_work(struct server *s, const struct timespec *started);

/* Why the daemon is degraded but working (NULL when healthy): PostgreSQL
 * unreachable or failing transiently; rows wait in the journal. */
const char *server_degraded(struct server *s);

/* Why the ledger needs an operator although writes are taken (NULL when
 * it does not): rows PostgreSQL refused sit unresolved in dead_letters. */
const char *server_failed(struct server *s);

/* Applies a validated record (meters: the handles ingest_parse gave) and
 * answers req (204) once it is durable. */
struct ingest_meters;
void server_accept(struct server *s, struct evhttp_request *req, bool v2, struct record_buf *record,
                   const struct ingest_meters *meters);

struct metrics;
struct metrics_gauges;
struct metrics *server_metrics(struct server *s);
void server_gauges(const struct server *s, struct metrics_gauges *g);

#endif
