/*
 * server_private: what the daemon's three files share, and nothing else
 * includes. server.c is the event loop (requests, ticks, signals, reload,
 * health); worker.c the worker thread (journal appends with group commit,
 * checkpoints); recover.c the start (checkpoint, journal replay).
 *
 * Threads: the loop owns the config, the engine and every request; the
 * worker owns the journal; the fields under "Shared with the worker" are
 * read and written only under lock.
 */
#ifndef DAEMON_SERVER_PRIVATE_H
#define DAEMON_SERVER_PRIVATE_H

#include "daemon/ingest.h"
#include "daemon/metrics.h"
#include "daemon/server.h"
#include "storage/journal.h"
#include "storage/ledger_rows.h"
#include "storage/pg.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define SEGMENT_BYTES          (64u << 20)
#define CHECKPOINT_EVERY_S     60
#define CHECKPOINT_EVERY_BYTES (256ull << 20)
#define STOP_FLUSH_MS          5000 /* at SIGTERM, for the ledger to catch up */
#define CHECKPOINT_RETRY_S     5    /* after a checkpoint could not be written */
#define SHED_MS                1000 /* writes waiting longer than this: shed new ones (503) */

enum job_kind { JOB_RECORD, JOB_CHECKPOINT };

struct job {
    enum job_kind kind;
    uint64_t seq;
    uint8_t type;        /* JOB_RECORD: the record type */
    uint64_t seq_lsn;    /* JOB_CHECKPOINT: the journal offset it covers */
    unsigned char *data; /* JOB_RECORD: the payload; JOB_CHECKPOINT: the engine state */
    size_t len;
    /* JOB_CHECKPOINT: the config that goes before the engine state, apart
     * so the state (hundreds of MB at a million meters) is not copied */
    unsigned char *head;
    size_t head_len;
    struct ledger_rows rows; /* JOB_RECORD: rows its application produced */
    struct job *next;
};

/* A request waiting for its record to be durable. If the client goes away
 * meanwhile, libevent keeps the request for us (its connection detached)
 * and frees it when we answer, so every waiter is answered. */
struct waiter {
    uint64_t seq;
    struct evhttp_request *req;
    bool v2;
    struct timespec started;
    struct waiter *next;
};

/* A checkpoint's payload: "TFCC", u32 length, the RECORD_CONFIG payload of
 * the config in force, then the engine's state (engine_save). One written
 * before the config was journaled holds the engine's state alone (it
 * starts with the engine's own magic, "TFENGINE"). */
#define CHECKPOINT_CONFIG_MAGIC "TFCC"

struct server {
    struct config *cfg; /* the loop's; replaced whole on reload */
    const char *config_path;
    struct config_source source;     /* the files cfg was built from */
    struct record_buf config_record; /* ... as a RECORD_CONFIG payload */
    char *state_dir;                 /* copies the worker reads: a reload cannot change them */
    bool fsync_each_group;
    struct metrics metrics;
    char degraded[360];       /* server_degraded's message */
    char failed[400];         /* server_failed's */
    char clock_refusal[256];  /* server_refuses_writes' for the wall clock, and on_tick's */
    bool clock_bad;           /* on_tick said the clock cannot be journaled */
    uint64_t status_accepted; /* samples accepted at the last STATUS= */
    time_t status_at;
    struct event_base *base;
    struct evhttp *http;    /* the tenants' listeners, plain */
    struct evhttp *https;   /* listen_tls; NULL without tls_cert and tls_key */
    struct evhttp *admin;   /* metrics_listen: /metrics and the detailed /health */
    struct ssl_ctx_st *tls; /* SSL_CTX new TLS connections get; a reload swaps it */
    struct conns *conns;
    struct engine *engine;
    struct lp_cache *ingest_cache; /* series keys of the writes, for this engine */
    struct ledger_rows rows;       /* produced by the engine since the last job */
    bool replaying;                /* rows go straight to the ledger writer */
    struct pg_writer *pg;
    bool caps_pending; /* started empty: yearly caps come from the ledger first */
    struct journal *journal;
    uint64_t next_seq;
    uint64_t last_rows_seq; /* the last record whose rows went (or go) to the ledger writer */
    struct waiter *waiters, **waiters_tail;
    bool stopping;
    bool suspended;          /* the journal failed: writes refused until it is rebuilt */
    char suspended_why[600]; /* server_refuses_writes' message meanwhile */
    struct event *rebuild;   /* tries the journal again, every second */
    bool worker_running;
    time_t last_checkpoint;
    int64_t tick_ms;           /* the clock's period */
    struct timespec last_tick; /* monotonic, for the loop's lag */
    int64_t lag_ms;            /* how late the last tick ran: the loop's backlog */
    char overloaded[200];      /* server_shed_write's message */
    int64_t busy_ns;           /* the loop's time in writes since the last tick */
    int64_t busy_permille;     /* ... as a share of the time, smoothed */
    int64_t shed_credit;       /* spreads the writes shed evenly */
    uint64_t bytes_since_checkpoint;
    char *conninfo;                /* the writer's (a reload changes it at the next start) */
    struct control *control;       /* the control socket (daemon/control.h) */
    struct correction *correction; /* tariffd reprice in flight (daemon/correction.h); NULL: none */
    struct history *history;       /* tariffd backfill or requeue (daemon/history.h); NULL: none */

    /* Shared with the worker, under lock. */
    pthread_t worker;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *jobs, **jobs_tail;
    bool worker_stop;
    uint64_t durable_seq;
    bool journal_failed;     /* the worker could not journal: see worker.c */
    char journal_error[512]; /* ... why */
    uint64_t journal_bytes;  /* on disk */
    uint64_t backlog_bytes;  /* after the last checkpoint: not yet known to be in PostgreSQL */
    struct event *wake;

    /* The worker's own. */
    uint64_t rows_seq;          /* the last record whose rows went to the writer */
    uint64_t checkpoint_lsn;    /* where the last checkpoint written starts replay */
    time_t checkpoint_retry_at; /* after one could not be written */
    struct job *checkpoint;     /* waiting for the ledger to commit its rows */
    uint64_t checkpoint_needs;  /* ... up to this record */
};

/* server.c: the engine's sink (rows into s->rows), and the ledger writer's
 * callbacks. During a replay rows go straight to the writer. */
void server_on_billing(void *ctx, const struct billing_row *row);
void server_on_demand(void *ctx, const struct demand_row *row);
void server_on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason);
void server_flush_replayed(struct server *s);
void server_pg_changed(void *arg);
void server_pg_log(void *arg, enum pg_log_priority priority, const char *message);

/* worker.c: the worker thread, and the jobs the loop hands it. A record is
 * journaled with the rows its application produced; a checkpoint waits
 * until the ledger has committed every row it covers. */
void *worker_main(void *arg);
uint64_t worker_submit_record(struct server *s, uint8_t type, const struct record_buf *r);
void worker_submit_checkpoint(struct server *s);
void worker_free_job(struct job *j);

/* Updates journal_bytes and backlog_bytes from the journal (the worker's,
 * or the loop's before the worker starts). */
void worker_measure(struct server *s);

/* At stop, after the worker thread has ended: waits up to timeout_ms for
 * the ledger to commit every row the waiting checkpoint covers, then
 * writes it; or gives up. Logs which happened. */
void worker_final_checkpoint(struct server *s, int timeout_ms);

/* recover.c: opens the journal (cutting a torn tail), loads the checkpoint,
 * starts the ledger writer and replays the journal after the checkpoint. */
bool recover(struct server *s, struct error *err);

/* After the journal failed (disk full, read-only): closes the journal and
 * drops the engine, then opens and replays again, the ledger writer left
 * running. False (err set) while the journal cannot be opened: try again
 * later. The worker must be stopped. */
bool recover_again(struct server *s, struct error *err);

/* server.c: makes cfg (built from src, both taken over) the config in
 * force: the engine's, journaled as a RECORD_CONFIG record. */
void server_set_config(struct server *s, struct config *cfg, struct config_source *src);

/* A new, empty series cache for the writes (ingest_parse_cached), sized for
 * s->cfg: its memos are handles of one engine, sized by one config. */
void server_new_ingest_cache(struct server *s);

#endif
