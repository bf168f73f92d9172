#include "daemon/server.h"

#include "daemon/clock.h"
#include "daemon/connections.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "storage/journal.h"
#include "storage/ledger_rows.h"
#include "storage/pg.h"
#include "tariff/alloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define SEGMENT_BYTES          (64u << 20)
#define CHECKPOINT_EVERY_S     60
#define CHECKPOINT_EVERY_BYTES (256ull << 20)

enum job_kind { JOB_RECORD, JOB_CHECKPOINT };

struct job {
    enum job_kind kind;
    uint64_t seq;
    uint8_t type;        /* JOB_RECORD: the record type */
    uint64_t seq_lsn;    /* JOB_CHECKPOINT: the journal offset it covers */
    unsigned char *data; /* JOB_RECORD: the payload; JOB_CHECKPOINT: the snapshot */
    size_t len;
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

struct server {
    struct config *cfg; /* the loop's; replaced whole on reload */
    const char *config_path;
    char *state_dir; /* copies the worker reads: a reload cannot change them */
    bool fsync_each_group;
    struct metrics metrics;
    char degraded[360];       /* server_degraded's message */
    char failed[400];         /* server_failed's */
    uint64_t status_accepted; /* samples accepted at the last STATUS= */
    time_t status_at;
    struct event_base *base;
    struct evhttp *http;
    struct conns *conns;
    struct engine *engine;
    struct ledger_rows rows; /* produced by the engine since the last job */
    bool replaying;          /* rows go straight to the ledger writer */
    struct pg_writer *pg;
    bool caps_pending; /* started empty: yearly caps come from the ledger first */
    struct journal *journal;
    uint64_t next_seq;
    struct waiter *waiters, **waiters_tail;
    bool stopping;
    time_t last_checkpoint;
    uint64_t bytes_since_checkpoint;

    /* Shared with the worker, under lock. */
    pthread_t worker;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *jobs, **jobs_tail;
    bool worker_stop;
    uint64_t durable_seq;
    uint64_t journal_bytes;
    struct event *wake;

    /* The worker's own. */
    uint64_t rows_seq;         /* the last record whose rows went to the writer */
    struct job *checkpoint;    /* waiting for the ledger to commit its rows */
    uint64_t checkpoint_needs; /* ... up to this record */
};

const struct config *server_config(const struct server *s)
{
    return s->cfg;
}

struct metrics *server_metrics(struct server *s)
{
    return &s->metrics;
}

void server_gauges(const struct server *s, struct metrics_gauges *g)
{
    struct engine_stats st;
    engine_stats(s->engine, &st);
    struct pg_status pg;
    pg_status(s->pg, &pg);
    struct server *m = (struct server *)s;
    pthread_mutex_lock(&m->lock);
    uint64_t journal = s->journal_bytes;
    pthread_mutex_unlock(&m->lock);
    *g = (struct metrics_gauges){
        .samples_accepted = st.accepted,
        .duplicates = st.duplicates,
        .conflicts = st.conflicts,
        .quarantined = st.quarantined,
        .intervals_closed = st.billing_rows,
        .adjustments = st.adjustment_rows,
        .demand_rows = st.demand_rows,
        .meters = st.meters,
        .samples_kept = st.samples_kept,
        .journal_bytes = journal,
        .max_backlog_bytes = s->cfg->daemon.max_backlog_bytes,
        .rows_queued = pg.queued,
        .rows_written = pg.written,
        .postgres_up = pg.connected,
        .rows_dead_lettered = pg.dead_lettered,
        .dead_letters_unresolved = pg.dead_letters_unresolved,
        .postgres_errors_transient = pg.errors_transient,
        .postgres_errors_refused = pg.errors_refused,
        .connections = conns_open(s->conns),
        .max_connections = (size_t)s->cfg->daemon.max_connections,
    };
}

const struct engine *server_engine(const struct server *s)
{
    return s->engine;
}

static void pg_changed(void *arg);
static void notify_status(struct server *s);

/* ------------------------------------------------------------------ */
/* Rows out of the engine                                              */

static void replayed_rows(struct server *s)
{
    /* Rows of a replay belong to records already durable. */
    if (s->rows.n)
        pg_submit(s->pg, ++s->next_seq, &s->rows);
}

static void on_billing(void *ctx, const struct billing_row *row)
{
    struct server *s = ctx;
    ledger_add_billing(&s->rows, row);
    metrics_tenant(&s->metrics, row->cluster->tenant->id, row->kwh_micro, row->subsidy_cny4);
    if (s->replaying)
        replayed_rows(s);
}

static void on_demand(void *ctx, const struct demand_row *row)
{
    struct server *s = ctx;
    ledger_add_demand(&s->rows, row);
    metrics_tenant(&s->metrics, row->cluster->tenant->id, 0, row->subsidy_cny4);
    if (s->replaying)
        replayed_rows(s);
}

static void on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason)
{
    struct server *s = ctx;
    int64_t now = clock_wall_ns();
    ledger_add_quarantine(&s->rows, smp, reason, now - now % 1000000000);
    if (s->replaying)
        replayed_rows(s);
}

/* ------------------------------------------------------------------ */
/* The worker: journal appends, group fsync, row files, checkpoints   */

static void worker_fail(const char *what, const struct error *err)
{
    log_msg(LOG_ERR, "%s: %s; stopping so a restart replays the journal", what, err->msg);
    exit(1);
}

static void free_job(struct job *j)
{
    free(j->data);
    ledger_rows_free(&j->rows);
    free(j);
}

/* Writes the waiting checkpoint once the ledger has every row it covers:
 * only then may the journal before it go. */
static void try_checkpoint(struct server *s)
{
    struct job *j = s->checkpoint;
    if (!j)
        return;
    struct pg_status st;
    pg_status(s->pg, &st);
    if (st.committed < s->checkpoint_needs)
        return;
    struct error err;
    if (!journal_sync(s->journal, &err))
        worker_fail("journal", &err);
    uint64_t lsn = j->seq_lsn;
    if (!journal_write_checkpoint(s->state_dir, lsn, j->data, j->len, &err))
        worker_fail("checkpoint", &err);
    if (!journal_trim(s->journal, lsn, &err))
        log_msg(LOG_WARNING, "journal: %s", err.msg);
    log_msg(LOG_INFO, "checkpoint at journal offset %llu (%zu bytes of engine state)",
            (unsigned long long)lsn, j->len);
    s->checkpoint = NULL;
    free_job(j);
    pthread_mutex_lock(&s->lock);
    s->journal_bytes = journal_bytes(s->journal);
    pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (!s->jobs && !s->worker_stop) {
            /* Woken by a job, or by the ledger writer after a commit (a
             * waiting checkpoint may now be written). */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&s->cond, &s->lock, &until);
        }
        struct job *batch = s->jobs;
        s->jobs = NULL;
        s->jobs_tail = &s->jobs;
        bool stop = s->worker_stop;
        pthread_mutex_unlock(&s->lock);
        try_checkpoint(s);
        if (!batch && stop)
            return NULL;

        while (batch) {
            /* A group: the records up to the next checkpoint share one fsync. */
            struct job *group = batch, *j = batch, *last = NULL;
            struct error err;
            for (; j && j->kind == JOB_RECORD; j = j->next) {
                uint64_t lsn;
                if (!journal_append(s->journal, j->type, j->data, j->len, &lsn, &err))
                    worker_fail("journal", &err);
                last = j;
            }
            if (last && s->fsync_each_group && !journal_sync(s->journal, &err))
                worker_fail("journal", &err);
            /* Durable now: their rows may go to the ledger. */
            for (struct job *k = group; k != j; k = k->next)
                if (k->rows.n) {
                    pg_submit(s->pg, k->seq, &k->rows);
                    s->rows_seq = k->seq;
                }
            uint64_t done = last ? last->seq : 0;
            struct job *next_batch = j;
            if (j && j->kind == JOB_CHECKPOINT) {
                /* It waits for the ledger; a newer one replaces it. */
                if (s->checkpoint)
                    free_job(s->checkpoint);
                s->checkpoint = j;
                s->checkpoint_needs = s->rows_seq;
                j->seq_lsn = journal_end(s->journal);
                done = j->seq;
                next_batch = j->next;
            }
            pthread_mutex_lock(&s->lock);
            if (done > s->durable_seq)
                s->durable_seq = done;
            s->journal_bytes = journal_bytes(s->journal);
            pthread_mutex_unlock(&s->lock);
            event_active(s->wake, 0, 0);
            while (batch != j) {
                struct job *next = batch->next;
                free_job(batch);
                batch = next;
            }
            batch = next_batch;
            try_checkpoint(s);
        }
    }
}

static void submit(struct server *s, struct job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&s->lock);
    *s->jobs_tail = j;
    s->jobs_tail = &j->next;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Journals a record the engine has just applied, with the rows it made. */
static uint64_t submit_record(struct server *s, uint8_t type, const struct record_buf *r)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_RECORD;
    j->seq = ++s->next_seq;
    j->type = type;
    j->data = xmalloc(r->len ? r->len : 1);
    memcpy(j->data, r->p, r->len);
    j->len = r->len;
    j->rows = s->rows;
    memset(&s->rows, 0, sizeof s->rows);
    s->bytes_since_checkpoint += r->len;
    uint64_t seq = j->seq; /* the worker owns (and may free) j once submitted */
    submit(s, j);
    return seq;
}

static void submit_checkpoint(struct server *s)
{
    if (s->caps_pending)
        return; /* a restart must still see that the caps are not read back */
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_CHECKPOINT;
    j->seq = ++s->next_seq;
    j->data = engine_save(s->engine, &j->len);
    s->last_checkpoint = time(NULL);
    s->bytes_since_checkpoint = 0;
    submit(s, j);
}

/* ------------------------------------------------------------------ */
/* The loop side                                                       */

void server_accept(struct server *s, struct evhttp_request *req, bool v2, struct record_buf *record)
{
    struct error err;
    if (!ingest_apply(s->engine, record->p, record->len, &err)) {
        /* ingest_parse checked every sample against this engine just now. */
        log_msg(LOG_ERR, "engine refused a validated request: %s", err.msg);
        abort();
    }
    uint64_t seq = submit_record(s, RECORD_SAMPLES, record);
    struct waiter *w = xcalloc(1, sizeof *w);
    w->seq = seq;
    w->req = req;
    w->v2 = v2;
    clock_gettime(CLOCK_MONOTONIC, &w->started);
    *s->waiters_tail = w;
    s->waiters_tail = &w->next;
}

/* From the ledger writer's thread: its status changed. */
static void pg_changed(void *arg)
{
    struct server *s = arg;
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cond); /* a checkpoint may be waiting for a commit */
    pthread_mutex_unlock(&s->lock);
    event_active(s->wake, 0, 0);
}

/* From the ledger writer's thread: a line for the log. */
static void pg_log(void *arg, enum pg_log_priority priority, const char *message)
{
    (void)arg;
    log_msg((int)priority, "%s", message);
}

/* The caps read back from the ledger become a journal record, so a replay
 * starts from them too. */
static void apply_recovered_caps(struct server *s)
{
    struct pg_status st;
    pg_status(s->pg, &st);
    if (!s->caps_pending || !st.caps_ready)
        return;
    size_t n;
    struct cap_consumed *caps = pg_take_caps(s->pg, &n);
    struct record_buf r = {0};
    ingest_encode_caps(caps, n, &r);
    struct error err;
    if (!ingest_apply_caps(s->engine, r.p, r.len, &err))
        log_msg(LOG_ERR, "caps: %s", err.msg);
    submit_record(s, RECORD_CAPS, &r);
    record_buf_free(&r);
    free(caps);
    s->caps_pending = false;
    log_msg(LOG_NOTICE, "yearly caps recovered from the ledger; taking writes");
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (!s->wake)
        return;
    apply_recovered_caps(s);
    pthread_mutex_lock(&s->lock);
    uint64_t durable = s->durable_seq;
    pthread_mutex_unlock(&s->lock);
    while (s->waiters && s->waiters->seq <= durable) {
        struct waiter *w = s->waiters;
        s->waiters = w->next;
        if (!s->waiters)
            s->waiters_tail = &s->waiters;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        metrics_write_latency(&s->metrics, (double)(now.tv_sec - w->started.tv_sec) +
                                               (now.tv_nsec - w->started.tv_nsec) / 1e9);
        metrics_request(&s->metrics, w->v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, 204);
        evhttp_send_reply(w->req, 204, "No Content", NULL);
        free(w);
    }
    if (s->stopping && !s->waiters)
        event_base_loopexit(s->base, NULL);
}

const char *server_degraded(struct server *s)
{
    struct pg_status st;
    pg_status(s->pg, &st);
    if (st.standby || (st.connected && !st.failing))
        return NULL;
    snprintf(s->degraded, sizeof s->degraded, "%s, rows wait in the journal%s%.256s",
             st.connected ? "writing to PostgreSQL fails, retrying" : "PostgreSQL unreachable",
             st.last_error[0] ? ": " : "", st.last_error);
    return s->degraded;
}

const char *server_failed(struct server *s)
{
    struct pg_status st;
    pg_status(s->pg, &st);
    if (!st.dead_letters_unresolved)
        return NULL;
    snprintf(s->failed, sizeof s->failed,
             "%llu row%s refused by PostgreSQL (SQLSTATE %.290s); see dead_letters",
             (unsigned long long)st.dead_letters_unresolved,
             st.dead_letters_unresolved == 1 ? "" : "s", st.dead_letter_error);
    return s->failed;
}

const char *server_refuses_writes(const struct server *s)
{
    if (s->stopping)
        return "shutting down";
    struct pg_status st;
    pg_status(s->pg, &st);
    if (st.standby)
        return "standby: another tariffd writes this schema";
    if (s->caps_pending)
        return "recovering the yearly caps from PostgreSQL; retry later";
    struct server *m = (struct server *)s;
    pthread_mutex_lock(&m->lock);
    uint64_t backlog = s->journal_bytes;
    pthread_mutex_unlock(&m->lock);
    if (backlog > s->cfg->daemon.max_backlog_bytes)
        return "journal backlog over max_backlog; retry later";
    struct statvfs fs;
    if (statvfs(s->cfg->daemon.state_dir, &fs) == 0 &&
        (uint64_t)fs.f_bavail * fs.f_frsize < 2 * s->cfg->daemon.max_body_bytes + (64u << 20))
        return "disk of state_dir nearly full; retry later";
    return NULL;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (s->stopping)
        return;
    struct record_buf r = {0};
    struct error err;
    ingest_encode_tick(clock_wall_ns(), &r);
    ingest_apply_tick(s->engine, r.p, r.len, &err);
    submit_record(s, RECORD_TICK, &r);
    record_buf_free(&r);
    if (time(NULL) - s->last_checkpoint >= CHECKPOINT_EVERY_S ||
        s->bytes_since_checkpoint >= CHECKPOINT_EVERY_BYTES)
        submit_checkpoint(s);
    notify_status(s);
}

/* STATUS= for systemctl status: rates, backlog, PostgreSQL. */
static void notify_status(struct server *s)
{
    time_t now = time(NULL);
    if (s->status_at && now - s->status_at < 5)
        return;
    struct metrics_gauges g;
    server_gauges(s, &g);
    double rate = s->status_at ? (double)(g.samples_accepted - s->status_accepted) /
                                     (double)(now - s->status_at)
                               : 0;
    s->status_accepted = g.samples_accepted;
    s->status_at = now;
    const char *degraded = server_degraded(s), *refusal = server_refuses_writes(s);
    if (!refusal)
        refusal = server_failed(s);
    sd_notifyf(0, "STATUS=%.0f samples/s, %zu meters, journal %.1f MiB, %s%s%s", rate, g.meters,
               (double)g.journal_bytes / 1048576,
               g.postgres_up ? "PostgreSQL connected" : "PostgreSQL not connected",
               refusal || degraded ? "; " : "",
               refusal    ? refusal
               : degraded ? degraded
                          : "");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* From the loop itself: a wedged loop stops the pings. */
    sd_notify(0, "WATCHDOG=1");
}

static void log_changes(const struct config *old, const struct config *new)
{
    for (size_t i = 0; i < new->n_tariffs; i++)
        for (size_t j = 0; j < new->tariffs[i].n_versions; j++) {
            const char *label = new->tariffs[i].versions[j]->label;
            bool known = false;
            for (size_t k = 0; k < old->n_tariffs && !known; k++)
                for (size_t l = 0; l < old->tariffs[k].n_versions && !known; l++)
                    known = strcmp(old->tariffs[k].versions[l]->label, label) == 0;
            if (!known)
                log_msg(LOG_NOTICE, "reload: tariff version %s added", label);
        }
    for (size_t i = 0; i < new->n_clusters; i++)
        if (!config_find_cluster(old, new->clusters[i].id))
            log_msg(LOG_NOTICE, "reload: cluster %s added", new->clusters[i].id);
    for (size_t i = 0; i < old->n_clusters; i++)
        if (!config_find_cluster(new, old->clusters[i].id))
            log_msg(LOG_NOTICE, "reload: cluster %s removed", old->clusters[i].id);
}

/* SIGHUP: build the new config, then swap it in whole. Requests in flight
 * hold nothing of the old one across an event, so it can go at once. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct server *s = arg;
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)mono.tv_sec * 1000000 + (unsigned long long)mono.tv_nsec / 1000);
    struct errors errs = {0};
    struct config *cfg = loader_load(s->config_path, &errs);
    const char *refused = NULL;
    if (cfg && cfg->daemon.interval_s != s->cfg->daemon.interval_s)
        refused = "interval cannot change under billed data; restart with a fresh state_dir";
    else if (cfg && strcmp(cfg->postgres.schema, s->cfg->postgres.schema) != 0)
        refused = "[postgres] schema cannot change on reload; restart";
    if (!cfg || refused) {
        for (size_t i = 0; i < errs.n; i++)
            log_msg(LOG_ERR, "reload: %s", errs.msgs[i]);
        if (refused)
            log_msg(LOG_ERR, "reload: %s", refused);
        log_msg(LOG_ERR, "reload rejected; the configuration in force stays");
        s->metrics.reloads_failed++;
        config_free(cfg);
    } else {
        if (strcmp(cfg->daemon.state_dir, s->state_dir) != 0 ||
            cfg->daemon.n_listen != s->cfg->daemon.n_listen ||
            strcmp(cfg->postgres.conninfo, s->cfg->postgres.conninfo) != 0)
            log_msg(LOG_WARNING, "reload: state_dir, listen and conninfo take effect at the "
                                 "next restart");
        log_changes(s->cfg, cfg);
        engine_set_config(s->engine, cfg);
        pg_reload(s->pg, cfg);
        conns_set_limits(s->conns, cfg->daemon.max_connections, cfg->daemon.idle_timeout_s);
        config_free(s->cfg);
        s->cfg = cfg;
        s->metrics.reloads_ok++;
        log_msg(LOG_NOTICE, "reloaded %s", s->config_path);
    }
    errors_free(&errs);
    sd_notify(0, "READY=1");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    log_msg(LOG_NOTICE, "%s: no new writes; finishing those in flight",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");
    s->stopping = true;
    /* A last checkpoint makes the restart quick; open intervals stay open. */
    submit_checkpoint(s);
    on_wake(-1, 0, s);
}

/* ------------------------------------------------------------------ */
/* Start: checkpoint, replay, listen                                   */

struct replay_ctx {
    struct server *s;
    uint64_t records;
    struct error err;
    bool failed;
};

static bool replay_record(void *ctx, uint8_t type, const void *payload, size_t len,
                          uint64_t lsn_after)
{
    (void)lsn_after;
    struct replay_ctx *r = ctx;
    bool ok = type == RECORD_SAMPLES ? ingest_apply(r->s->engine, payload, len, &r->err)
              : type == RECORD_TICK  ? ingest_apply_tick(r->s->engine, payload, len, &r->err)
              : type == RECORD_CAPS  ? ingest_apply_caps(r->s->engine, payload, len, &r->err)
                                     : (error_set(&r->err, "unknown record type %d", type), false);
    r->records++;
    r->failed = !ok;
    return ok;
}

static bool note_caps(void *ctx, uint8_t type, const void *payload, size_t len, uint64_t lsn)
{
    (void)payload;
    (void)len;
    (void)lsn;
    *(bool *)ctx |= type == RECORD_CAPS;
    return true;
}

/* Whether the journal holds the caps read back from the ledger. */
static bool journal_has_caps(struct journal *j)
{
    bool has = false;
    struct error err;
    journal_replay(j, 0, note_caps, &has, &err);
    return has;
}

static bool recover(struct server *s, struct error *err)
{
    const char *dir = s->cfg->daemon.state_dir;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        error_set(err, "could not create state_dir %s: %s", dir, strerror(errno));
        return false;
    }
    uint64_t cut_at = UINT64_MAX;
    s->journal = journal_open(dir, SEGMENT_BYTES, &cut_at, err);
    if (!s->journal)
        return false;
    if (cut_at != JOURNAL_NOTHING_CUT) {
        char where[512];
        journal_describe_lsn(s->journal, cut_at, where, sizeof where);
        log_msg(LOG_WARNING, "journal: cut a torn or corrupt tail at %s", where);
    }

    bool found = false;
    uint64_t lsn = 0;
    void *payload = NULL;
    size_t len = 0;
    if (!journal_read_checkpoint(dir, &found, &lsn, &payload, &len, err) && found)
        return false;
    struct engine_sink sink = {s, on_billing, on_demand, on_quarantine};
    if (found) {
        s->engine = engine_load(s->cfg, &sink, payload, len, err);
        free(payload);
        if (!s->engine)
            return false;
    } else {
        s->engine = engine_new(s->cfg, &sink);
    }
    /* Started without a checkpoint and without a caps record in the
     * journal (an empty state_dir, or one whose first start never reached
     * PostgreSQL): what the yearly caps have consumed is in the ledger, and
     * no write is taken before it is read back. No checkpoint is written
     * meanwhile, so a restart still knows. */
    s->caps_pending = !found && !journal_has_caps(s->journal);
    struct pg_callbacks cb = {pg_changed, pg_log, s};
    s->pg = pg_start(s->cfg, s->caps_pending, &cb);
    if (found && lsn < journal_start(s->journal)) {
        error_set(err,
                  "the checkpoint starts at journal offset %llu but the journal starts at %llu: "
                  "journal segments are missing",
                  (unsigned long long)lsn, (unsigned long long)journal_start(s->journal));
        return false;
    }
    s->replaying = true;
    struct replay_ctx r = {.s = s};
    if (!journal_replay(s->journal, found ? lsn : 0, replay_record, &r, err)) {
        if (r.failed)
            *err = r.err;
        return false;
    }
    s->replaying = false;
    replayed_rows(s);
    /* The first checkpoint must wait for the replay's rows too (the worker
     * starts after this, so no lock). */
    s->rows_seq = s->next_seq;
    log_msg(LOG_INFO, "recovered: checkpoint %s, %llu journal records replayed",
            found ? "loaded" : "none", (unsigned long long)r.records);
    s->journal_bytes = journal_bytes(s->journal);
    return true;
}

static bool listen_all(struct server *s, struct error *err)
{
    /* Socket activation: serve what systemd passed instead of listen. */
    int n = sd_listen_fds(1);
    if (n < 0) {
        error_set(err, "sd_listen_fds: %s", strerror(-n));
        return false;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        evutil_make_socket_nonblocking(fd);
        struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(s->http, fd);
        if (!bound) {
            error_set(err, "could not serve inherited socket %d", fd);
            return false;
        }
        conns_add_listener(s->conns, bound);
        log_msg(LOG_INFO, "serving inherited socket %d", fd);
    }
    if (n > 0)
        return true;
    for (size_t i = 0; i < s->cfg->daemon.n_listen; i++) {
        char host[256];
        const char *a = s->cfg->daemon.listen[i];
        const char *colon = strrchr(a, ':');
        int port = atoi(colon + 1);
        if (a[0] == '[')
            snprintf(host, sizeof host, "%.*s", (int)(colon - a - 2), a + 1);
        else
            snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
        struct evhttp_bound_socket *bound =
            evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
        if (!bound) {
            error_set(err, "could not listen on %s: %s", a, strerror(errno));
            return false;
        }
        conns_add_listener(s->conns, bound);
        log_msg(LOG_INFO, "listening on %s", a);
    }
    return true;
}

/* Every connection is a descriptor: lift the soft limit to the hard one,
 * and say so when max_connections cannot fit under it. */
static void raise_fd_limit(int64_t max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* The journal, PostgreSQL, listeners and the rest need some too. */
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)max_connections + 64 > rl.rlim_cur)
        log_msg(LOG_WARNING,
                "max_connections %lld does not fit under the open-file limit %llu; raise "
                "LimitNOFILE",
                (long long)max_connections, (unsigned long long)rl.rlim_cur);
}

int server_run(struct config *cfg, const char *config_path)
{
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->config_path = config_path;
    s->state_dir = xstrdup(cfg->daemon.state_dir);
    s->fsync_each_group = cfg->daemon.durability == DURABILITY_FSYNC;
    s->waiters_tail = &s->waiters;
    s->jobs_tail = &s->jobs;
    s->last_checkpoint = time(NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    /* The loop and its wake event first: the ledger writer, started by
     * recover(), may report progress while the journal is still replaying. */
    s->base = event_base_new();
    s->wake = event_new(s->base, -1, 0, on_wake, s);
    struct error err;
    if (!recover(s, &err)) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    s->http = evhttp_new(s->base);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->daemon.max_body_bytes);
    s->conns = conns_new(s->base, s->http, cfg->daemon.max_connections, cfg->daemon.idle_timeout_s);
    raise_fd_limit(cfg->daemon.max_connections);
    http_install(s, s->http);
    if (!listen_all(s, &err)) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    /* The clock ticks a quarter of grace (100 ms to 1 s), so a silent meter
     * is noticed soon after grace has passed. */
    int64_t tick_ms = cfg->daemon.grace_s * 1000 / 4;
    tick_ms = tick_ms < 100 ? 100 : tick_ms > 1000 ? 1000 : tick_ms;
    struct timeval period = {(time_t)(tick_ms / 1000), (suseconds_t)(tick_ms % 1000 * 1000)};
    struct event *tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    event_add(tick, &period);
    struct event *term = evsignal_new(s->base, SIGTERM, on_signal, s);
    struct event *intr = evsignal_new(s->base, SIGINT, on_signal, s);
    struct event *hup = evsignal_new(s->base, SIGHUP, on_reload, s);
    event_add(term, NULL);
    event_add(intr, NULL);
    event_add(hup, NULL);
    struct event *watchdog = NULL;
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
        struct timeval half = {(time_t)(watchdog_usec / 2000000),
                               (suseconds_t)(watchdog_usec / 2 % 1000000)};
        watchdog = event_new(s->base, -1, EV_PERSIST, on_watchdog, s);
        event_add(watchdog, &half);
    }
    pthread_create(&s->worker, NULL, worker_main, s);
    /* What the replay rebuilt becomes the new starting point. */
    submit_checkpoint(s);
    log_msg(LOG_NOTICE, "ready");
    sd_notify(0, "READY=1\nSTATUS=started");

    event_base_dispatch(s->base);

    pthread_mutex_lock(&s->lock);
    s->worker_stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->worker, NULL);
    /* Rows not yet in the ledger stay in the journal for the next start. */
    pg_stop(s->pg, 5000);
    if (s->checkpoint)
        free_job(s->checkpoint);
    event_free(tick);
    event_free(term);
    event_free(intr);
    event_free(hup);
    if (watchdog)
        event_free(watchdog);
    event_free(s->wake);
    evhttp_free(s->http); /* closes the connections, so before conns_free */
    conns_free(s->conns);
    event_base_free(s->base);
    engine_free(s->engine);
    journal_close(s->journal);
    ledger_rows_free(&s->rows);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    config_free(s->cfg);
    free(s->state_dir);
    free(s);
    log_msg(LOG_NOTICE, "stopped");
    return 0;
}
