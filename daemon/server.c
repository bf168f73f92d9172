#include "daemon/server_private.h"

#include "daemon/clock.h"
#include "daemon/connections.h"
#include "daemon/control.h"
#include "daemon/correction.h"
#include "daemon/history.h"
#include "daemon/http.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/tls.h"
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
#if defined(__GLIBC__)
#include <malloc.h>
#endif
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
    uint64_t journal = s->journal_bytes, backlog = s->backlog_bytes;
    pthread_mutex_unlock(&m->lock);
    *g = (struct metrics_gauges){
        .samples_accepted = st.accepted,
        .duplicates = st.duplicates,
        .conflicts = st.conflicts,
        .quarantined = st.quarantined,
        .intervals_closed = st.billing_rows,
        .adjustments = st.adjustment_rows,
        .demand_rows = st.demand_rows,
        .late_samples = st.late_samples,
        .intervals_reopened = st.intervals_reopened,
        .meters = st.meters,
        .samples_kept = st.samples_kept,
        .journal_bytes = journal,
        .backlog_bytes = backlog,
        .max_backlog_bytes = s->cfg->daemon.max_backlog_bytes,
        .rows_queued = pg.queued,
        .rows_written = pg.written,
        .postgres_up = pg.connected,
        .rows_dead_lettered = pg.dead_lettered,
        .dead_letters_unresolved = pg.dead_letters_unresolved,
        .postgres_errors_transient = pg.errors_transient,
        .postgres_errors_refused = pg.errors_refused,
        .waiting_for_caps = st.waiting_for_caps,
        .held_calls = st.held_calls,
        .connections = conns_open(s->conns),
        .max_connections = (size_t)s->cfg->daemon.max_connections,
    };
}

const struct engine *server_engine(const struct server *s)
{
    return s->engine;
}

struct lp_cache *server_ingest_cache(struct server *s)
{
    return s->ingest_cache;
}

void server_pg_changed(void *arg);
static void notify_status(struct server *s);
static bool disk_nearly_full(const struct server *s);

/* ------------------------------------------------------------------ */
/* Rows out of the engine                                              */

void server_flush_replayed(struct server *s)
{
    /* Rows of a replay belong to records already durable. */
    if (s->rows.n) {
        s->last_rows_seq = ++s->next_seq;
        pg_submit(s->pg, s->next_seq, &s->rows);
    }
}

void server_on_billing(void *ctx, const struct billing_row *row)
{
    struct server *s = ctx;
    ledger_add_billing(&s->rows, row);
    if (s->correction)
        correction_note_row(s, row->cluster->id, row->month_day);
    metrics_tenant(&s->metrics, row->cluster->tenant->id, row->kwh_micro, row->subsidy_cny4);
    if (s->replaying)
        server_flush_replayed(s);
}

void server_on_demand(void *ctx, const struct demand_row *row)
{
    struct server *s = ctx;
    ledger_add_demand(&s->rows, row);
    if (s->correction)
        correction_note_row(s, row->cluster->id, row->month_day);
    metrics_tenant(&s->metrics, row->cluster->tenant->id, 0, row->subsidy_cny4);
    if (s->replaying)
        server_flush_replayed(s);
}

void server_on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason)
{
    struct server *s = ctx;
    int64_t now = clock_wall_ns();
    ledger_add_quarantine(&s->rows, smp, reason, now - now % 1000000000);
    if (s->replaying)
        server_flush_replayed(s);
}

/* ------------------------------------------------------------------ */
/* The loop side                                                       */

/* By bytes journaled: often enough that a ledger keeping up keeps the
 * backlog under max_backlog. */
static bool checkpoint_due(const struct server *s)
{
    uint64_t every = s->cfg->daemon.max_backlog_bytes / 4;
    return s->bytes_since_checkpoint >=
           (every < CHECKPOINT_EVERY_BYTES ? every : CHECKPOINT_EVERY_BYTES);
}

void server_accept(struct server *s, struct evhttp_request *req, bool v2, struct record_buf *record,
                   const struct ingest_meters *meters)
{
    struct error err;
    if (!ingest_apply_meters(s->engine, record->p, record->len, meters, &err)) {
        /* ingest_parse checked every sample against this engine just now. */
        log_msg(LOG_ERR, "engine refused a validated request: %s", err.msg);
        abort();
    }
    uint64_t seq = worker_submit_record(s, RECORD_SAMPLES, record);
    if (checkpoint_due(s))
        worker_submit_checkpoint(s);
    struct waiter *w = xcalloc(1, sizeof *w);
    w->seq = seq;
    w->req = req;
    w->v2 = v2;
    clock_gettime(CLOCK_MONOTONIC, &w->started);
    *s->waiters_tail = w;
    s->waiters_tail = &w->next;
}

/* From the ledger writer's thread: its status changed. */
void server_pg_changed(void *arg)
{
    struct server *s = arg;
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cond); /* a checkpoint may be waiting for a commit */
    pthread_mutex_unlock(&s->lock);
    event_active(s->wake, 0, 0);
}

/* From the ledger writer's thread: a line for the log. */
void server_pg_log(void *arg, enum pg_log_priority priority, const char *message)
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
    worker_submit_record(s, RECORD_CAPS, &r);
    record_buf_free(&r);
    free(caps);
    s->caps_pending = false;
    log_msg(LOG_NOTICE, "yearly caps recovered from the ledger; what waited for them closes now");
}

static void start_worker(struct server *s)
{
    s->worker_stop = false;
    pthread_create(&s->worker, NULL, worker_main, s);
    s->worker_running = true;
}

static void stop_worker(struct server *s)
{
    if (!s->worker_running)
        return;
    pthread_mutex_lock(&s->lock);
    s->worker_stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->worker, NULL);
    s->worker_running = false;
}

/* Every second while suspended: once the disk has room and the journal
 * opens, stop the worker, rebuild the engine from the checkpoint and the
 * journal (what was acknowledged, exactly) and take writes again. */
static void on_rebuild(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (s->stopping || disk_nearly_full(s))
        return;
    struct error err;
    if (!recover_again(s, &err)) {
        /* Not yet: the worker stays stopped, and the journal closed. */
        if (strcmp(err.msg, s->journal_error) != 0) {
            log_msg(LOG_ERR, "journal: %s; retrying every second", err.msg);
            snprintf(s->journal_error, sizeof s->journal_error, "%s", err.msg);
        }
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->journal_failed = false;
    pthread_mutex_unlock(&s->lock);
    /* Before the worker starts, as at start (the socket's mode comes from
     * the umask). */
    s->control = control_open(s, s->base, s->state_dir, &err);
    if (!s->control)
        log_msg(LOG_ERR, "%s; tariffd reprice cannot reach this daemon until it restarts", err.msg);
    start_worker(s);
    worker_submit_checkpoint(s);
    s->suspended = false;
    event_del(s->rebuild);
    log_msg(LOG_NOTICE, "journal: writable again, the engine rebuilt from it; taking writes");
}

/* The worker could not journal: the requests it did not make durable get
 * 503 (the client retries them), and writes are refused until on_rebuild
 * succeeds. */
static void suspend(struct server *s, uint64_t durable)
{
    /* The worker is done with the journal; close it at once, so nothing
     * holds a file on a filesystem the operator must unmount to repair. */
    stop_worker(s);
    journal_close(s->journal);
    s->journal = NULL;
    if (s->checkpoint) {
        worker_free_job(s->checkpoint);
        s->checkpoint = NULL;
    }
    pthread_mutex_lock(&s->lock);
    struct job *jobs = s->jobs;
    s->jobs = NULL;
    s->jobs_tail = &s->jobs;
    pthread_mutex_unlock(&s->lock);
    while (jobs) {
        struct job *next = jobs->next;
        worker_free_job(jobs);
        jobs = next;
    }
    s->suspended = true;
    snprintf(s->suspended_why, sizeof s->suspended_why,
             "the journal cannot be written (%.500s); retry later", s->journal_error);
    /* The control socket too: a bound socket pins the filesystem it lives
     * on. A correction in flight is answered first. */
    correction_suspend(s);
    history_suspend(s);
    control_close(s->control);
    s->control = NULL;
    log_msg(LOG_ERR, "journal: %s; writes get 503 until it can be written again", s->journal_error);
    while (s->waiters) {
        struct waiter *w = s->waiters;
        s->waiters = w->next;
        if (w->seq <= durable) {
            metrics_request(&s->metrics, w->v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, 204);
            evhttp_send_reply(w->req, 204, "No Content", NULL);
        } else {
            metrics_request(&s->metrics, w->v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, 503);
            http_error(w->req, w->v2, 503, s->suspended_why, 1);
        }
        free(w);
    }
    s->waiters_tail = &s->waiters;
    struct timeval second = {1, 0};
    event_add(s->rebuild, &second);
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
    bool failed = s->journal_failed;
    pthread_mutex_unlock(&s->lock);
    if (failed && !s->suspended)
        suspend(s, durable);
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
    if (st.standby)
        return NULL;
    if (!st.connected || st.failing) {
        snprintf(s->degraded, sizeof s->degraded, "%s, rows wait in the journal%s%.256s",
                 st.connected ? "writing to PostgreSQL fails, retrying" : "PostgreSQL unreachable",
                 st.last_error[0] ? ": " : "", st.last_error);
        return s->degraded;
    }
    if (engine_waiting_for_caps(s->engine)) {
        struct engine_stats es;
        engine_stats(s->engine, &es);
        snprintf(s->degraded, sizeof s->degraded,
                 "reading the yearly caps back from PostgreSQL; closing waits for them "
                 "(%zu calls held), writes are taken",
                 es.held_calls);
        return s->degraded;
    }
    return NULL;
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

static int64_t ms_between(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

/* Admission control, so an overloaded daemon answers at once instead of
 * queueing without bound (the client retries):
 * - the oldest write still waiting for the journal has waited longer than
 *   SHED_MS, or the loop itself runs that late: every new write is shed;
 * - the loop spent over 80% of the last ticks parsing and applying
 *   writes: a growing share of new writes is shed (all of them at 100%),
 *   spread evenly, so the work admitted stays under what the loop does. */
const char *server_shed_write(struct server *s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t waited = s->waiters ? ms_between(&s->waiters->started, &now) : 0;
    int64_t late = ms_between(&s->last_tick, &now) - s->tick_ms;
    int64_t lag = s->lag_ms > late ? s->lag_ms : late;
    if (waited > SHED_MS || lag > SHED_MS) {
        snprintf(s->overloaded, sizeof s->overloaded,
                 "overloaded: writes wait %lld ms for the journal, the loop runs %lld ms late; "
                 "retry later",
                 (long long)waited, (long long)(lag > 0 ? lag : 0));
        return s->overloaded;
    }
    if (s->busy_permille <= 800)
        return NULL;
    s->shed_credit += (s->busy_permille - 800) * 5;
    if (s->shed_credit < 1000)
        return NULL;
    s->shed_credit -= 1000;
    snprintf(s->overloaded, sizeof s->overloaded,
             "overloaded: the loop is %lld%% busy with writes; retry later",
             (long long)(s->busy_permille / 10));
    return s->overloaded;
}

void server_write_work(struct server *s, const struct timespec *started)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->busy_ns +=
        (int64_t)(now.tv_sec - started->tv_sec) * 1000000000 + (now.tv_nsec - started->tv_nsec);
}

/* Room for two requests and a checkpoint's worth of margin. */
static bool disk_nearly_full(const struct server *s)
{
    struct statvfs fs;
    return statvfs(s->state_dir, &fs) == 0 &&
           (uint64_t)fs.f_bavail * fs.f_frsize < 2 * s->cfg->daemon.max_body_bytes + (64u << 20);
}

/* ns since the epoch as RFC 3339 UTC, or as the number when gmtime cannot. */
static void format_utc(int64_t ns, char *buf, size_t size)
{
    time_t t = (time_t)(ns / 1000000000 - (ns % 1000000000 < 0));
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, size, "%lld ns after the epoch", (long long)ns);
}

/* Why the wall clock at now_ns cannot be journaled (NULL when it can), in
 * buf. */
static const char *clock_refusal(int64_t now_ns, char *buf, size_t size)
{
    if (ingest_clock_plausible(now_ns))
        return NULL;
    char now[40], min[40], max[40];
    format_utc(now_ns, now, sizeof now);
    format_utc(INGEST_CLOCK_MIN_NS, min, sizeof min);
    format_utc(INGEST_CLOCK_MAX_NS, max, sizeof max);
    snprintf(buf, size,
             "the wall clock reads %s, outside %s to %s: nothing is journaled until the host "
             "clock is set right",
             now, min, max);
    return buf;
}

const char *server_refuses_writes(const struct server *s, int64_t now_ns)
{
    if (s->stopping)
        return "shutting down";
    struct server *m = (struct server *)s;
    const char *clock = clock_refusal(now_ns, m->clock_refusal, sizeof m->clock_refusal);
    if (clock)
        return clock;
    struct pg_status st;
    pg_status(s->pg, &st);
    if (st.standby)
        return "standby: another tariffd writes this schema";
    if (s->suspended)
        return s->suspended_why;
    pthread_mutex_lock(&m->lock);
    uint64_t backlog = s->backlog_bytes;
    pthread_mutex_unlock(&m->lock);
    if (backlog > s->cfg->daemon.max_backlog_bytes)
        return "journal backlog over max_backlog; retry later";
    if (disk_nearly_full(s))
        return "disk of state_dir nearly full; retry later";
    return NULL;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t elapsed = ms_between(&s->last_tick, &now);
    s->lag_ms = elapsed - s->tick_ms;
    /* The share of the loop's time writes took since the last tick,
     * smoothed over about two ticks. */
    int64_t busy = elapsed > 0 ? s->busy_ns / 1000 / elapsed : 0;
    s->busy_permille = (s->busy_permille + (busy > 1000 ? 1000 : busy)) / 2;
    s->busy_ns = 0;
    s->last_tick = now;
    if (s->stopping || s->suspended)
        return;
    /* A clock no record may carry (docs/design.md section 6: replay refuses
     * one) skips the tick: nothing closes by silence meanwhile, and writes
     * are refused at the door. Said once, not once per tick. */
    int64_t now_ns = clock_wall_ns();
    const char *bad = clock_refusal(now_ns, s->clock_refusal, sizeof s->clock_refusal);
    if (bad != NULL) {
        if (!s->clock_bad)
            log_msg(LOG_ERR, "%s; ticks and writes wait for it", bad);
        s->clock_bad = true;
    } else {
        if (s->clock_bad)
            log_msg(LOG_NOTICE, "the wall clock is plausible again; ticks and writes resume");
        s->clock_bad = false;
        struct record_buf r = {0};
        struct error err;
        ingest_encode_tick(now_ns, &r);
        if (ingest_apply_tick(s->engine, r.p, r.len, &err))
            worker_submit_record(s, RECORD_TICK, &r);
        else
            log_msg(LOG_ERR, "tick not journaled: %s", err.msg);
        record_buf_free(&r);
    }
    /* Often enough that a healthy ledger keeps the backlog well under
     * max_backlog. */
    uint64_t every = s->cfg->daemon.max_backlog_bytes / 4;
    if (time(NULL) - s->last_checkpoint >= CHECKPOINT_EVERY_S ||
        s->bytes_since_checkpoint >=
            (every < CHECKPOINT_EVERY_BYTES ? every : CHECKPOINT_EVERY_BYTES))
        worker_submit_checkpoint(s);
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
    const char *degraded = server_degraded(s), *refusal = server_refuses_writes(s, clock_wall_ns());
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

void server_set_config(struct server *s, struct config *cfg, struct config_source *src)
{
    ingest_encode_config(src, &s->config_record);
    engine_set_config(s->engine, cfg);
    worker_submit_record(s, RECORD_CONFIG, &s->config_record);
    if (s->cfg != cfg) {
        history_config_changed(s); /* a session measuring under the old one ends */
        config_free(s->cfg);
    }
    s->cfg = cfg;
    config_source_free(&s->source);
    s->source = *src;
    memset(src, 0, sizeof *src);
    server_new_ingest_cache(s); /* sized by the tenants' max_meters, which may have changed */
}

void server_new_ingest_cache(struct server *s)
{
    lp_cache_free(s->ingest_cache);
    s->ingest_cache = lp_cache_new(ingest_cache_keys(s->cfg));
}

/* Bytes of src as a RECORD_CONFIG payload. */
static uint64_t source_bytes(const struct config_source *src)
{
    uint64_t n = 4;
    for (size_t i = 0; i < src->n; i++)
        n += 8 + strlen(src->files[i].name) + src->files[i].len;
    return n;
}

static bool same_addresses(char *const *a, size_t n_a, char *const *b, size_t n_b)
{
    if (n_a != n_b)
        return false;
    for (size_t i = 0; i < n_a; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* SIGHUP: build the new config, then swap it in whole. Requests in flight
 * hold nothing of the old one across an event, so it can go at once. The
 * new config's texts are journaled where it took effect, so a replay after
 * a crash reloads at the same point of the record stream. */
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
    struct config_source src = {0};
    struct config *cfg = loader_load(s->config_path, &src, &errs);
    const char *refused = NULL;
    if (cfg && cfg->daemon.interval_s != s->cfg->daemon.interval_s)
        refused = "interval cannot change under billed data; restart with a fresh state_dir";
    else if (cfg && strcmp(cfg->postgres.schema, s->cfg->postgres.schema) != 0)
        refused = "[postgres] schema cannot change on reload; restart";
    else if (cfg && source_bytes(&src) > JOURNAL_MAX_PAYLOAD)
        refused =
            "the configuration files together exceed 64 MiB, more than a journal record holds";
    /* The certificate and key are read again (a rotation); a pair that
     * cannot be used rejects the reload, and the one in force stays. */
    SSL_CTX *tls = NULL;
    struct error tls_err;
    if (cfg && !refused && s->https) {
        if (!cfg->daemon.tls_cert || !cfg->daemon.tls_key)
            refused = "tls_cert and tls_key cannot be removed while listen_tls is served; restart";
        else if (!(tls = tls_context_new(&cfg->daemon, &tls_err)))
            refused = tls_err.msg;
    }
    if (!cfg || refused) {
        for (size_t i = 0; i < errs.n; i++)
            log_msg(LOG_ERR, "reload: %s", errs.msgs[i]);
        if (refused)
            log_msg(LOG_ERR, "reload: %s", refused);
        log_msg(LOG_ERR, "reload rejected; the configuration in force stays");
        s->metrics.reloads_failed++;
        config_free(cfg);
        config_source_free(&src);
    } else {
        if (strcmp(cfg->daemon.state_dir, s->state_dir) != 0 ||
            !same_addresses(cfg->daemon.listen, cfg->daemon.n_listen, s->cfg->daemon.listen,
                            s->cfg->daemon.n_listen) ||
            !same_addresses(cfg->daemon.listen_tls, cfg->daemon.n_listen_tls,
                            s->cfg->daemon.listen_tls, s->cfg->daemon.n_listen_tls) ||
            !same_addresses(cfg->daemon.metrics_listen, cfg->daemon.n_metrics_listen,
                            s->cfg->daemon.metrics_listen, s->cfg->daemon.n_metrics_listen) ||
            strcmp(cfg->postgres.conninfo, s->cfg->postgres.conninfo) != 0)
            log_msg(LOG_WARNING, "reload: state_dir, listen, listen_tls, metrics_listen and "
                                 "conninfo take effect at the next restart");
        if (tls) {
            tls_context_free(s->tls); /* connections made with it keep it */
            s->tls = tls;
            log_msg(LOG_NOTICE, "reload: TLS certificate and key read again from %s and %s",
                    cfg->daemon.tls_cert, cfg->daemon.tls_key);
        }
        log_changes(s->cfg, cfg);
        pg_reload(s->pg, cfg);
        conns_set_limits(s->conns, cfg->daemon.max_connections, cfg->daemon.idle_timeout_s);
        server_set_config(s, cfg, &src);
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
    correction_stop(s);
    history_stop(s);
    /* A last checkpoint makes the restart quick; open intervals stay open. */
    worker_submit_checkpoint(s);
    on_wake(-1, 0, s);
}

/* ------------------------------------------------------------------ */
/* Start: listen, run                                                  */

/* Binds each HOST:PORT of a listen key to http. */
static bool bind_all(struct server *s, struct evhttp *http, char *const *addresses, size_t n,
                     const char *what, struct error *err)
{
    for (size_t i = 0; i < n; i++) {
        char host[256];
        const char *a = addresses[i];
        const char *colon = strrchr(a, ':');
        int port = atoi(colon + 1);
        if (a[0] == '[')
            snprintf(host, sizeof host, "%.*s", (int)(colon - a - 2), a + 1);
        else
            snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
        struct evhttp_bound_socket *bound =
            evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
        if (!bound) {
            error_set(err, "could not listen on %s (%s): %s", a, what, strerror(errno));
            return false;
        }
        if (http != s->admin) /* the operator's listener is never paused */
            conns_add_listener(s->conns, bound);
        log_msg(LOG_INFO, "listening on %s (%s)", a, what);
    }
    return true;
}

/* Which evhttp an inherited socket serves, by its FileDescriptorName=:
 * "tls" the TLS listener, "metrics" the metrics listener, any other name
 * the plain one. */
static struct evhttp *door_of(struct server *s, const char *name, const char **what)
{
    if (strcmp(name, "tls") == 0) {
        *what = "tls";
        return s->https;
    }
    if (strcmp(name, "metrics") == 0) {
        *what = "metrics";
        return s->admin;
    }
    *what = "http";
    return s->http;
}

/* Socket activation first: systemd's sockets serve the listener their
 * name says, and a listener that got one does not bind its listen key.
 * The others bind what the config says. */
static bool listen_all(struct server *s, struct error *err)
{
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) {
        error_set(err, "sd_listen_fds: %s", strerror(-n));
        return false;
    }
    bool inherited[3] = {false, false, false}; /* http, tls, metrics */
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        const char *what;
        struct evhttp *http = door_of(s, names && names[i] ? names[i] : "", &what);
        if (!http) {
            error_set(err, "systemd passed a socket named \"tls\" but tls_cert and tls_key are not "
                           "set");
            ok = false;
            break;
        }
        evutil_make_socket_nonblocking(fd);
        struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(http, fd);
        if (!bound) {
            error_set(err, "could not serve inherited socket %d (%s)", fd, what);
            ok = false;
            break;
        }
        if (http != s->admin)
            conns_add_listener(s->conns, bound);
        inherited[http == s->http ? 0 : http == s->https ? 1 : 2] = true;
        log_msg(LOG_INFO, "serving inherited socket %d (%s)", fd, what);
    }
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    if (!ok)
        return false;
    const struct daemon_config *d = &s->cfg->daemon;
    if (!inherited[0] && !bind_all(s, s->http, d->listen, d->n_listen, "http", err))
        return false;
    if (!inherited[1] && d->n_listen_tls > 0 &&
        !bind_all(s, s->https, d->listen_tls, d->n_listen_tls, "tls", err))
        return false;
    if (!inherited[2] &&
        !bind_all(s, s->admin, d->metrics_listen, d->n_metrics_listen, "metrics", err))
        return false;
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

/* A write's blocks (its body made contiguous, its record, the worker's
 * copy) are a few hundred KiB each: over glibc's starting mmap threshold,
 * so they were mapped, unmapped and faulted in afresh request after
 * request (docs/design.md, "How a sample flows", has why and what it
 * cost). Fixed thresholds keep them in the heap: blocks under
 * HUGE_ADVICE_MIN come from it, larger ones (the huge-page arrays,
 * checkpoint buffers) usually get mappings of their own, and an arena
 * gives its top back once 16 MiB of it is free. The trim threshold is set
 * only once the mmap threshold was taken (either call alone stops glibc's
 * own adjustment); thresholds set in the environment stand. */
static void keep_request_memory(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
        (tunables &&
         (strstr(tunables, "malloc.mmap_threshold") || strstr(tunables, "malloc.trim_threshold"))))
        return;
    if (mallopt(M_MMAP_THRESHOLD, (int)HUGE_ADVICE_MIN) == 1)
        (void)mallopt(M_TRIM_THRESHOLD, 16 << 20);
#endif
}

int server_run(struct config *cfg, struct config_source *src, const char *config_path)
{
    keep_request_memory();
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->config_path = config_path;
    s->source = *src;
    memset(src, 0, sizeof *src);
    ingest_encode_config(&s->source, &s->config_record);
    s->state_dir = xstrdup(cfg->daemon.state_dir);
    s->conninfo = xstrdup(cfg->postgres.conninfo);
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
    if (cfg->daemon.tls_cert && cfg->daemon.tls_key) {
        s->tls = tls_context_new(&cfg->daemon, &err);
        if (!s->tls) {
            log_msg(LOG_ERR, "%s", err.msg);
            return 1;
        }
    }
    s->conns = conns_new(s->base, cfg->daemon.max_connections, cfg->daemon.idle_timeout_s);
    s->http = evhttp_new(s->base);
    s->admin = evhttp_new(s->base);
    s->https = s->tls ? evhttp_new(s->base) : NULL;
    struct evhttp *doors[] = {s->http, s->https, s->admin};
    for (size_t i = 0; i < 3; i++) {
        if (!doors[i])
            continue;
        evhttp_set_max_body_size(doors[i], (ev_ssize_t)cfg->daemon.max_body_bytes);
        conns_attach(s->conns, doors[i], doors[i] == s->https ? &s->tls : NULL,
                     doors[i] != s->admin);
        http_install(s, doors[i], doors[i] == s->admin ? HTTP_ADMIN : HTTP_TENANTS);
    }
    raise_fd_limit(cfg->daemon.max_connections);
    if (!listen_all(s, &err)) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    /* Before the worker starts: no other thread creates files meanwhile
     * (the socket's mode comes from the umask). */
    s->control = control_open(s, s->base, s->state_dir, &err);
    if (!s->control) {
        log_msg(LOG_ERR, "%s", err.msg);
        return 1;
    }
    /* The clock ticks a quarter of grace (100 ms to 1 s), so a silent meter
     * is noticed soon after grace has passed. */
    int64_t tick_ms = cfg->daemon.grace_s * 1000 / 4;
    tick_ms = tick_ms < 100 ? 100 : tick_ms > 1000 ? 1000 : tick_ms;
    s->tick_ms = tick_ms;
    clock_gettime(CLOCK_MONOTONIC, &s->last_tick);
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
    if (clock_is_hooked())
        log_msg(LOG_WARNING,
                "TARIFFD_TEST_CLOCK is set: the wall clock is shifted by %lld s (a test hook, "
                "never for production)",
                (long long)clock_shift_s());
    s->rebuild = event_new(s->base, -1, EV_PERSIST, on_rebuild, s);
    start_worker(s);
    /* What the replay rebuilt becomes the new starting point. */
    worker_submit_checkpoint(s);
    log_msg(LOG_NOTICE, "ready");
    sd_notify(0, "READY=1\nSTATUS=started");

    event_base_dispatch(s->base);

    correction_stop(s);
    history_stop(s);
    control_close(s->control);
    stop_worker(s);
    /* The ledger catches up (or the flush times out), then the final
     * checkpoint, in that order: rows not yet in the ledger stay in the
     * journal for the next start. */
    if (s->suspended)
        log_msg(LOG_NOTICE, "stop: no final checkpoint, the journal could not be written; it "
                            "replays at the next start");
    else
        worker_final_checkpoint(s, STOP_FLUSH_MS);
    pg_stop(s->pg, 0);
    if (s->checkpoint)
        worker_free_job(s->checkpoint);
    event_free(tick);
    event_free(s->rebuild);
    event_free(term);
    event_free(intr);
    event_free(hup);
    if (watchdog)
        event_free(watchdog);
    event_free(s->wake);
    evhttp_free(s->http); /* closes the connections, so before conns_free */
    if (s->https)
        evhttp_free(s->https);
    evhttp_free(s->admin);
    conns_free(s->conns);
    tls_context_free(s->tls);
    event_base_free(s->base);
    engine_free(s->engine);
    lp_cache_free(s->ingest_cache);
    journal_close(s->journal);
    ledger_rows_free(&s->rows);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    config_free(s->cfg);
    config_source_free(&s->source);
    record_buf_free(&s->config_record);
    free(s->state_dir);
    free(s->conninfo);
    free(s);
    log_msg(LOG_NOTICE, "stopped");
    return 0;
}
