#include "daemon/server.h"

#include "daemon/log.h"
#include "storage/csv.h"
#include "storage/journal.h"
#include "storage/rowsink.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define SEGMENT_BYTES          (64u << 20)
#define CHECKPOINT_EVERY_S     60
#define CHECKPOINT_EVERY_BYTES (256ull << 20)

/* Bytes of CSV lines for each row file. */
struct rows {
    char *p[ROWSINK_FILES];
    size_t len[ROWSINK_FILES], cap[ROWSINK_FILES];
};

enum job_kind { JOB_RECORD, JOB_CHECKPOINT };

struct job {
    enum job_kind kind;
    uint64_t seq;
    uint8_t type;        /* JOB_RECORD: the record type */
    unsigned char *data; /* JOB_RECORD: the payload; JOB_CHECKPOINT: the snapshot */
    size_t len;
    struct rows rows; /* JOB_RECORD: rows its application produced */
    struct job *next;
};

/* A request waiting for its record to be durable. If the client goes away
 * meanwhile, libevent keeps the request for us (its connection detached)
 * and frees it when we answer, so every waiter is answered. */
struct waiter {
    uint64_t seq;
    struct evhttp_request *req;
    struct waiter *next;
};

struct server {
    struct config *cfg;
    struct event_base *base;
    struct evhttp *http;
    struct engine *engine;
    struct rows rows; /* produced by the engine since the last job */
    bool replaying;   /* rows go straight to the sink */
    struct rowsink *sink;
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
    bool worker_failed;
    struct event *wake;
};

const struct config *server_config(const struct server *s)
{
    return s->cfg;
}

const struct engine *server_engine(const struct server *s)
{
    return s->engine;
}

/* ------------------------------------------------------------------ */
/* Rows out of the engine                                              */

static void rows_add(struct rows *r, int file, const char *bytes, size_t len)
{
    if (r->len[file] + len > r->cap[file]) {
        size_t cap = r->cap[file] ? r->cap[file] : 4096;
        while (cap < r->len[file] + len)
            cap *= 2;
        r->p[file] = realloc(r->p[file], cap);
        if (!r->p[file])
            abort();
        r->cap[file] = cap;
    }
    memcpy(r->p[file] + r->len[file], bytes, len);
    r->len[file] += len;
}

static void rows_free(struct rows *r)
{
    for (int i = 0; i < ROWSINK_FILES; i++)
        free(r->p[i]);
    memset(r, 0, sizeof *r);
}

static void write_rows_now(struct server *s, struct rows *r)
{
    struct error err;
    for (int i = 0; i < ROWSINK_FILES; i++)
        if (r->len[i] && !rowsink_write(s->sink, i, r->p[i], r->len[i], &err)) {
            log_msg(LOG_ERR, "row files: %s; stopping so a restart replays the journal", err.msg);
            exit(1);
        }
    for (int i = 0; i < ROWSINK_FILES; i++)
        r->len[i] = 0;
}

static void emit(struct server *s, int file, const char *line, size_t len)
{
    rows_add(&s->rows, file, line, len);
    if (s->replaying)
        write_rows_now(s, &s->rows);
}

static void on_billing(void *ctx, const struct billing_row *row)
{
    char line[CSV_LINE_MAX];
    emit(ctx, ROWSINK_ROWS, line, csv_billing_row(row, line));
}

static void on_demand(void *ctx, const struct demand_row *row)
{
    char line[CSV_LINE_MAX];
    emit(ctx, ROWSINK_DEMAND, line, csv_demand_row(row, line));
}

static void on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason)
{
    struct server *s = ctx;
    char line[CSV_LINE_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    emit(s, ROWSINK_QUARANTINE, line,
         rowsink_quarantine_line(smp, reason, (int64_t)ts.tv_sec * 1000000000, line));
}

/* ------------------------------------------------------------------ */
/* The worker: journal appends, group fsync, row files, checkpoints   */

static void worker_fail(struct server *s, const char *what, const struct error *err)
{
    log_msg(LOG_ERR, "%s: %s; stopping so a restart replays the journal", what, err->msg);
    pthread_mutex_lock(&s->lock);
    s->worker_failed = true;
    pthread_mutex_unlock(&s->lock);
    exit(1);
}

static void write_checkpoint(struct server *s, struct job *j)
{
    struct error err;
    if (!journal_sync(s->journal, &err))
        worker_fail(s, "journal", &err);
    if (!rowsink_sync(s->sink, &err))
        worker_fail(s, "row files", &err);
    /* The payload: the row files' sizes, then the engine snapshot. */
    uint64_t sizes[ROWSINK_FILES];
    rowsink_sizes(s->sink, sizes);
    size_t len = sizeof sizes + j->len;
    unsigned char *payload = malloc(len);
    if (!payload)
        abort();
    memcpy(payload, sizes, sizeof sizes);
    memcpy(payload + sizeof sizes, j->data, j->len);
    uint64_t lsn = journal_end(s->journal);
    if (!journal_write_checkpoint(s->cfg->daemon.state_dir, lsn, payload, len, &err))
        worker_fail(s, "checkpoint", &err);
    free(payload);
    if (!journal_trim(s->journal, lsn, &err))
        log_msg(LOG_WARNING, "journal: %s", err.msg);
    log_msg(LOG_INFO, "checkpoint at journal offset %llu (%zu bytes of engine state)",
            (unsigned long long)lsn, j->len);
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->jobs && !s->worker_stop)
            pthread_cond_wait(&s->cond, &s->lock);
        struct job *batch = s->jobs;
        s->jobs = NULL;
        s->jobs_tail = &s->jobs;
        bool stop = s->worker_stop;
        pthread_mutex_unlock(&s->lock);
        if (!batch && stop)
            return NULL;

        while (batch) {
            /* A group: the records up to the next checkpoint share one fsync. */
            struct job *group = batch, *j = batch, *last = NULL;
            struct error err;
            for (; j && j->kind == JOB_RECORD; j = j->next) {
                uint64_t lsn;
                if (!journal_append(s->journal, j->type, j->data, j->len, &lsn, &err))
                    worker_fail(s, "journal", &err);
                last = j;
            }
            if (last && s->cfg->daemon.durability == DURABILITY_FSYNC &&
                !journal_sync(s->journal, &err))
                worker_fail(s, "journal", &err);
            for (struct job *k = group; k != j; k = k->next)
                write_rows_now(s, &k->rows);
            uint64_t done = last ? last->seq : 0;
            if (j && j->kind == JOB_CHECKPOINT) {
                write_checkpoint(s, j);
                done = j->seq;
                j = j->next;
            }
            pthread_mutex_lock(&s->lock);
            if (done > s->durable_seq)
                s->durable_seq = done;
            s->journal_bytes = journal_bytes(s->journal);
            pthread_mutex_unlock(&s->lock);
            event_active(s->wake, 0, 0);
            while (batch != j) {
                struct job *next = batch->next;
                free(batch->data);
                rows_free(&batch->rows);
                free(batch);
                batch = next;
            }
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
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->kind = JOB_RECORD;
    j->seq = ++s->next_seq;
    j->type = type;
    j->data = malloc(r->len ? r->len : 1);
    if (!j->data)
        abort();
    memcpy(j->data, r->p, r->len);
    j->len = r->len;
    j->rows = s->rows;
    memset(&s->rows, 0, sizeof s->rows);
    s->bytes_since_checkpoint += r->len;
    submit(s, j);
    return j->seq;
}

static void submit_checkpoint(struct server *s)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->kind = JOB_CHECKPOINT;
    j->seq = ++s->next_seq;
    j->data = engine_save(s->engine, &j->len);
    s->last_checkpoint = time(NULL);
    s->bytes_since_checkpoint = 0;
    submit(s, j);
}

/* ------------------------------------------------------------------ */
/* The loop side                                                       */

void server_accept(struct server *s, struct evhttp_request *req, struct record_buf *record)
{
    struct error err;
    if (!ingest_apply(s->engine, record->p, record->len, &err)) {
        /* ingest_parse checked every sample against this engine just now. */
        log_msg(LOG_ERR, "engine refused a validated request: %s", err.msg);
        abort();
    }
    uint64_t seq = submit_record(s, RECORD_SAMPLES, record);
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->seq = seq;
    w->req = req;
    *s->waiters_tail = w;
    s->waiters_tail = &w->next;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    pthread_mutex_lock(&s->lock);
    uint64_t durable = s->durable_seq;
    pthread_mutex_unlock(&s->lock);
    while (s->waiters && s->waiters->seq <= durable) {
        struct waiter *w = s->waiters;
        s->waiters = w->next;
        if (!s->waiters)
            s->waiters_tail = &s->waiters;
        evhttp_send_reply(w->req, 204, "No Content", NULL);
        free(w);
    }
    if (s->stopping && !s->waiters)
        event_base_loopexit(s->base, NULL);
}

const char *server_refuses_writes(const struct server *s)
{
    if (s->stopping)
        return "shutting down";
    struct server *m = (struct server *)s;
    pthread_mutex_lock(&m->lock);
    uint64_t backlog = s->journal_bytes;
    pthread_mutex_unlock(&m->lock);
    if (backlog > s->cfg->daemon.max_backlog_bytes)
        return "journal backlog over max_backlog; retry later";
    struct statvfs st;
    if (statvfs(s->cfg->daemon.state_dir, &st) == 0 &&
        (uint64_t)st.f_bavail * st.f_frsize < 2 * s->cfg->daemon.max_body_bytes + (64u << 20))
        return "disk of state_dir nearly full; retry later";
    return NULL;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
    ingest_encode_tick(now_ns(), &r);
    ingest_apply_tick(s->engine, r.p, r.len, &err);
    submit_record(s, RECORD_TICK, &r);
    record_buf_free(&r);
    if (time(NULL) - s->last_checkpoint >= CHECKPOINT_EVERY_S ||
        s->bytes_since_checkpoint >= CHECKPOINT_EVERY_BYTES)
        submit_checkpoint(s);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    log_msg(LOG_NOTICE, "%s: no new writes; finishing those in flight",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
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
                                     : (error_set(&r->err, "unknown record type %d", type), false);
    r->records++;
    r->failed = !ok;
    return ok;
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
    uint64_t sizes[ROWSINK_FILES];
    if (found) {
        if (len < sizeof sizes) {
            error_set(err, "checkpoint in %s is too short", dir);
            free(payload);
            return false;
        }
        memcpy(sizes, payload, sizeof sizes);
        s->engine = engine_load(s->cfg, &sink, (unsigned char *)payload + sizeof sizes,
                                len - sizeof sizes, err);
        free(payload);
        if (!s->engine)
            return false;
    } else {
        s->engine = engine_new(s->cfg, &sink);
    }
    s->sink = rowsink_open(dir, found ? sizes : NULL, err);
    if (!s->sink)
        return false;
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
    log_msg(LOG_INFO, "recovered: checkpoint %s, %llu journal records replayed",
            found ? "loaded" : "none", (unsigned long long)r.records);
    s->journal_bytes = journal_bytes(s->journal);
    return true;
}

static bool listen_all(struct server *s, struct error *err)
{
    for (size_t i = 0; i < s->cfg->daemon.n_listen; i++) {
        char host[256];
        const char *a = s->cfg->daemon.listen[i];
        const char *colon = strrchr(a, ':');
        int port = atoi(colon + 1);
        if (a[0] == '[')
            snprintf(host, sizeof host, "%.*s", (int)(colon - a - 2), a + 1);
        else
            snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
        if (!evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port)) {
            error_set(err, "could not listen on %s: %s", a, strerror(errno));
            return false;
        }
        log_msg(LOG_INFO, "listening on %s", a);
    }
    return true;
}

int server_run(struct config *cfg, const char *config_path)
{
    (void)config_path;
    struct server *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->cfg = cfg;
    s->waiters_tail = &s->waiters;
    s->jobs_tail = &s->jobs;
    s->last_checkpoint = time(NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    struct error err;
    if (!recover(s, &err)) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    s->base = event_base_new();
    s->http = evhttp_new(s->base);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->daemon.max_body_bytes);
    http_install(s, s->http);
    if (!listen_all(s, &err)) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    s->wake = event_new(s->base, -1, 0, on_wake, s);
    struct timeval second = {1, 0};
    struct event *tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    event_add(tick, &second);
    struct event *term = evsignal_new(s->base, SIGTERM, on_signal, s);
    struct event *intr = evsignal_new(s->base, SIGINT, on_signal, s);
    event_add(term, NULL);
    event_add(intr, NULL);
    pthread_create(&s->worker, NULL, worker_main, s);
    /* What the replay rebuilt becomes the new starting point. */
    submit_checkpoint(s);
    log_msg(LOG_NOTICE, "ready");

    event_base_dispatch(s->base);

    pthread_mutex_lock(&s->lock);
    s->worker_stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->worker, NULL);
    event_free(tick);
    event_free(term);
    event_free(intr);
    event_free(s->wake);
    evhttp_free(s->http);
    event_base_free(s->base);
    engine_free(s->engine);
    rowsink_close(s->sink);
    journal_close(s->journal);
    rows_free(&s->rows);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    log_msg(LOG_NOTICE, "stopped");
    return 0;
}
