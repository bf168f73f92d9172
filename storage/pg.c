#include "pg.h"

#include "daemon/log.h"
#include "storage/migrations.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"

#include <libpq-fe.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define BATCH_ROWS_MAX 20000

struct batch {
    uint64_t seq;
    struct ledger_rows rows;
    struct batch *next;
};

struct tariff_row {
    char *label, *name, *date, *hash, *text;
};

struct cap_row {
    char *programme, *cap;
};

struct pg_writer {
    /* Copied from the config at start: the thread never reads the config,
     * which the loop may swap on reload. */
    char *conninfo, *schema;
    struct tariff_row *tariffs;
    size_t n_tariffs;
    struct cap_row *caps_cfg;
    size_t n_caps_cfg;
    bool recover_caps;
    /* A reload hands over a new copy under the lock; the writer adopts it
     * and records it without holding the lock (it may wait on the server). */
    bool config_changed;
    struct tariff_row *new_tariffs;
    size_t n_new_tariffs;
    struct cap_row *new_caps;
    size_t n_new_caps;
    void (*wake)(void *);
    void *wake_arg;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct batch *head, **tail;
    size_t queued_rows;
    bool stop;
    struct pg_status status;
    struct pg_cap *caps;
    size_t n_caps;
    PGconn *conn;
};

static char *dup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

static void set_status(struct pg_writer *w, bool connected, bool standby, const char *error)
{
    pthread_mutex_lock(&w->lock);
    bool changed = w->status.connected != connected || w->status.standby != standby;
    w->status.connected = connected;
    w->status.standby = standby;
    if (error)
        snprintf(w->status.last_error, sizeof w->status.last_error, "%.255s", error);
    pthread_mutex_unlock(&w->lock);
    if (changed)
        w->wake(w->wake_arg);
}

/* Sleeps up to ms unless stopped; returns whether to stop. */
static bool nap(struct pg_writer *w, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
        ;
    bool stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop;
}

/* One line of libpq's message: it may span lines and name the server. */
static void first_line(const char *msg, char *out, size_t size)
{
    snprintf(out, size, "%s", msg ? msg : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

/* Runs one statement (n > 0: with parameters; n < 0: a script of several
 * statements, simple protocol). */
static bool exec_ok(struct pg_writer *w, const char *sql, int n, const char *const *params,
                    char *err, size_t size)
{
    PGresult *r =
        n < 0 ? PQexec(w->conn, sql) : PQexecParams(w->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok && err)
        first_line(PQresultErrorMessage(r), err, size);
    PQclear(r);
    return ok;
}

/* The writer lock's key: one per schema. */
static void adopt_config(struct pg_writer *w);

static const char lock_sql[] =
    "SELECT pg_try_advisory_lock(hashtext('tariffd writer'), hashtext($1))";

/* How many of the embedded migrations the schema has: -1 when it has no
 * schema_migrations table yet. Reads only, so a daemon that logs in as a
 * role without CREATE starts fine once the owner has migrated. */
static int applied_migrations(struct pg_writer *w)
{
    const char *schema = w->schema;
    PGresult *r = PQexecParams(w->conn,
                               "SELECT to_regclass(quote_ident($1) || '.schema_migrations') "
                               "IS NOT NULL",
                               1, NULL, &schema, NULL, NULL, 0);
    bool exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists)
        return -1;
    char *quoted = PQescapeIdentifier(w->conn, w->schema, strlen(w->schema));
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT name FROM %s.schema_migrations", quoted);
    PQfreemem(quoted);
    r = PQexec(w->conn, sql);
    int n = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (unsigned i = 0; i < n_migrations; i++)
            for (int k = 0; k < PQntuples(r); k++)
                n += strcmp(PQgetvalue(r, k, 0), migrations[i].name) == 0;
    PQclear(r);
    return n;
}

static bool migrate(struct pg_writer *w, char *err, size_t size)
{
    char *quoted = PQescapeIdentifier(w->conn, w->schema, strlen(w->schema));
    char sql[512];
    const char *schema = w->schema;
    if (applied_migrations(w) == (int)n_migrations) {
        snprintf(sql, sizeof sql, "SET search_path TO %s", quoted);
        PQfreemem(quoted);
        return exec_ok(w, sql, 0, NULL, err, size);
    }
    bool ok = exec_ok(w, "BEGIN", 0, NULL, err, size) &&
              exec_ok(w, "SELECT pg_advisory_xact_lock(hashtext('tariffd migrate'), hashtext($1))",
                      1, &schema, err, size);
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", quoted);
    ok = ok && exec_ok(w, sql, 0, NULL, err, size);
    snprintf(sql, sizeof sql, "SET LOCAL search_path TO %s", quoted);
    ok = ok && exec_ok(w, sql, 0, NULL, err, size);
    ok = ok && exec_ok(w,
                       "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                       "applied_at timestamptz NOT NULL DEFAULT now())",
                       0, NULL, err, size);
    for (unsigned i = 0; ok && i < n_migrations; i++) {
        const char *name = migrations[i].name;
        PGresult *r = PQexecParams(w->conn, "SELECT 1 FROM schema_migrations WHERE name = $1", 1,
                                   NULL, &name, NULL, NULL, 0);
        bool applied = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            first_line(PQresultErrorMessage(r), err, size);
        PQclear(r);
        if (!ok || applied)
            continue;
        ok = exec_ok(w, migrations[i].sql, -1, NULL, err, size) &&
             exec_ok(w, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, &name, err, size);
        if (ok)
            log_msg(LOG_NOTICE, "postgres: applied migration %s to schema %s", name, w->schema);
    }
    ok = ok && exec_ok(w, "COMMIT", 0, NULL, err, size);
    if (!ok)
        exec_ok(w, "ROLLBACK", 0, NULL, sql, sizeof sql);
    snprintf(sql, sizeof sql, "SET search_path TO %s", quoted);
    ok = ok && exec_ok(w, sql, 0, NULL, err, size);
    PQfreemem(quoted);
    return ok;
}

/* Every loaded tariff version, and the programmes' caps for the views. */
static bool record_config(struct pg_writer *w, char *err, size_t size)
{
    bool ok = exec_ok(w, "BEGIN", 0, NULL, err, size);
    for (size_t i = 0; ok && i < w->n_tariffs; i++) {
        const struct tariff_row *t = &w->tariffs[i];
        const char *p[] = {t->label, t->name, t->date, t->hash, t->text};
        ok = exec_ok(w,
                     "INSERT INTO tariff_versions (label, name, effective, hash, text) "
                     "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (label) DO NOTHING",
                     5, p, err, size);
    }
    ok = ok && exec_ok(w, "DELETE FROM programme_caps", 0, NULL, err, size);
    for (size_t i = 0; ok && i < w->n_caps_cfg; i++) {
        const char *p[] = {w->caps_cfg[i].programme, w->caps_cfg[i].cap};
        ok = exec_ok(w, "INSERT INTO programme_caps (programme, cap_cny_per_year) VALUES ($1, $2)",
                     2, p, err, size);
    }
    ok = ok && exec_ok(w, "COMMIT", 0, NULL, err, size);
    if (!ok)
        exec_ok(w, "ROLLBACK", 0, NULL, NULL, 0);
    return ok;
}

static bool read_caps(struct pg_writer *w, char *err, size_t size)
{
    PGresult *r = PQexec(w->conn, "SELECT tenant, programme, year, sum(amount)::text "
                                  "FROM subsidy_lines GROUP BY tenant, programme, year");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        first_line(PQresultErrorMessage(r), err, size);
        PQclear(r);
        return false;
    }
    int n = PQntuples(r);
    struct pg_cap *caps = calloc((size_t)n + 1, sizeof *caps);
    if (!caps)
        abort();
    for (int i = 0; i < n; i++) {
        snprintf(caps[i].tenant, sizeof caps[i].tenant, "%s", PQgetvalue(r, i, 0));
        snprintf(caps[i].programme, sizeof caps[i].programme, "%s", PQgetvalue(r, i, 1));
        caps[i].year = atoi(PQgetvalue(r, i, 2));
        const char *why;
        if (!decimal_parse(PQgetvalue(r, i, 3), 4, &caps[i].consumed_cny4, &why))
            caps[i].consumed_cny4 = 0;
    }
    PQclear(r);
    pthread_mutex_lock(&w->lock);
    w->caps = caps;
    w->n_caps = (size_t)n;
    w->status.caps_ready = true;
    pthread_mutex_unlock(&w->lock);
    log_msg(LOG_NOTICE, "postgres: recovered %d yearly cap totals from subsidy_lines", n);
    return true;
}

static const char billing_sql[] =
    "WITH r AS (INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, "
    "interval_end, month, kind, revision, period, kwh, price, surcharge_rate, energy_charge, "
    "surcharge, subsidy, net, domestic_share, programme, tariff_version, missing_s) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21) ON CONFLICT (cluster, interval_start, revision) DO NOTHING RETURNING id), "
    "l AS (INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount) "
    "SELECT 'billing_rows', r.id, x.p, $1, $22, x.a FROM r, unnest($23::text[], "
    "$24::numeric[]) AS x(p, a) RETURNING 1) SELECT id FROM r";

static const char demand_sql[] =
    "WITH r AS (INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, "
    "max_kw, max_interval_start, billing_kw, charge, subsidy, net, programme, tariff_version, "
    "kind, revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
    "$16) ON CONFLICT (cluster, month, revision) DO NOTHING RETURNING id), "
    "l AS (INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount) "
    "SELECT 'demand_charges', r.id, x.p, $1, $17, x.a FROM r, unnest($18::text[], "
    "$19::numeric[]) AS x(p, a) RETURNING 1) SELECT id FROM r";

static const char quarantine_sql[] =
    "INSERT INTO quarantined_samples (cluster, meter, ts, ts_ns, value, kind, reason) "
    "VALUES ($1, $2, to_timestamp($3::bigint / 1e9), $3, $4, $5, $6) "
    "ON CONFLICT (cluster, meter, ts_ns, reason) DO NOTHING";

static const char notify_sql[] =
    "SELECT pg_notify('tariffd_billing', coalesce((SELECT max(id) FROM billing_rows), 0)::text)";

static bool prepare(struct pg_writer *w, char *err, size_t size)
{
    const char *names[] = {"billing", "demand", "quarantine", "notify"};
    const char *sql[] = {billing_sql, demand_sql, quarantine_sql, notify_sql};
    for (int i = 0; i < 4; i++) {
        PGresult *r = PQprepare(w->conn, names[i], sql[i], 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            first_line(PQresultErrorMessage(r), err, size);
        PQclear(r);
        if (!ok)
            return false;
    }
    return true;
}

/* Writes batches [first, last] in one pipelined transaction. */
static bool write_batches(struct pg_writer *w, struct batch *first, struct batch *last, char *err,
                          size_t size)
{
    if (!PQenterPipelineMode(w->conn)) {
        first_line(PQerrorMessage(w->conn), err, size);
        return false;
    }
    int sent = 0;
    bool ok = PQsendQueryParams(w->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    /* Counted as sent: the loop below reads one result list per statement. */
    sent++;
    for (struct batch *b = first; ok; b = b->next) {
        size_t off = 0;
        struct ledger_row row;
        while (ok && ledger_next(&b->rows, &off, &row)) {
            const char *stmt = row.kind == LEDGER_BILLING  ? "billing"
                               : row.kind == LEDGER_DEMAND ? "demand"
                                                           : "quarantine";
            ok = PQsendQueryPrepared(w->conn, stmt, row.n, row.values, NULL, NULL, 0);
            sent++;
        }
        if (b == last)
            break;
    }
    ok = ok && PQsendQueryPrepared(w->conn, "notify", 0, NULL, NULL, NULL, 0);
    sent++;
    ok = ok && PQsendQueryParams(w->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    sent++;
    ok = ok && PQpipelineSync(w->conn);
    if (!ok) {
        first_line(PQerrorMessage(w->conn), err, size);
        return false;
    }
    /* Each statement's results end with a NULL; then the sync. Success is
     * every statement OK and the sync seen: anything less (a lost
     * connection included) is a failure and the batch stays queued. */
    bool all_ok = true;
    for (int i = 0; i < sent; i++) {
        bool seen = false;
        for (PGresult *r; (r = PQgetResult(w->conn));) {
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && all_ok) {
                if (st == PGRES_PIPELINE_ABORTED)
                    snprintf(err, size, "transaction aborted");
                else
                    first_line(PQresultErrorMessage(r), err, size);
                all_ok = false;
            }
            seen = true;
            PQclear(r);
        }
        if (!seen && all_ok) {
            first_line(PQerrorMessage(w->conn), err, size);
            all_ok = false;
        }
        if (PQstatus(w->conn) != CONNECTION_OK)
            return false;
    }
    bool synced = false;
    PGresult *r = PQgetResult(w->conn);
    if (r) {
        synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    if (!synced || !PQexitPipelineMode(w->conn)) {
        if (all_ok)
            first_line(PQerrorMessage(w->conn), err, size);
        return false;
    }
    return all_ok;
}

static void disconnect(struct pg_writer *w, const char *why)
{
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    if (why)
        log_msg(LOG_WARNING, "postgres: %s", why);
    set_status(w, false, false, why);
}

/* Server notices ("schema ... already exists, skipping") are not events
 * an operator needs; libpq would print them raw on stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char line[256];
    first_line(message, line, sizeof line);
    log_msg(LOG_DEBUG, "postgres: %s", line);
}

/* Connects, takes the writer lock, migrates: true when ready to write. */
static bool get_ready(struct pg_writer *w, long *backoff_ms)
{
    char err[256];
    w->conn = PQconnectdb(w->conninfo);
    PQsetNoticeProcessor(w->conn, on_notice, NULL);
    if (PQstatus(w->conn) != CONNECTION_OK) {
        char msg[400];
        first_line(PQerrorMessage(w->conn), err, sizeof err);
        snprintf(msg, sizeof msg, "cannot connect (retrying in %ld ms): %s", *backoff_ms, err);
        disconnect(w, msg);
        return false;
    }
    const char *schema = w->schema;
    for (bool announced = false;;) {
        PGresult *r = PQexecParams(w->conn, lock_sql, 1, NULL, &schema, NULL, NULL, 0);
        bool locked = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
        bool failed = PQresultStatus(r) != PGRES_TUPLES_OK;
        if (failed)
            first_line(PQresultErrorMessage(r), err, sizeof err);
        PQclear(r);
        if (failed) {
            disconnect(w, err);
            return false;
        }
        if (locked)
            break;
        if (!announced) {
            log_msg(LOG_NOTICE, "postgres: another tariffd writes schema %s; standing by",
                    w->schema);
            set_status(w, false, true, "another tariffd writes this schema");
            announced = true;
        }
        if (nap(w, 1000))
            return false;
    }
    adopt_config(w);
    if (!migrate(w, err, sizeof err) || !record_config(w, err, sizeof err) ||
        !prepare(w, err, sizeof err) ||
        (w->recover_caps && !w->status.caps_ready && !read_caps(w, err, sizeof err))) {
        disconnect(w, err);
        return false;
    }
    *backoff_ms = BACKOFF_MIN_MS;
    log_msg(LOG_NOTICE, "postgres: connected; writing schema %s", w->schema);
    set_status(w, true, false, "");
    return true;
}

static void *writer_main(void *arg)
{
    struct pg_writer *w = arg;
    long backoff_ms = BACKOFF_MIN_MS;
    unsigned seed = (unsigned)time(NULL);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (stop) /* pg_stop gave the queue its time; the rest is in the journal */
            break;
        if (!w->conn) {
            if (get_ready(w, &backoff_ms))
                continue;
            long jitter = (long)(rand_r(&seed) % (unsigned)(backoff_ms / 2 + 1));
            if (nap(w, backoff_ms + jitter))
                break;
            backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
            continue;
        }
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop && !w->config_changed)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->config_changed) {
            pthread_mutex_unlock(&w->lock);
            adopt_config(w);
            char err[256];
            if (!record_config(w, err, sizeof err))
                disconnect(w, err); /* get_ready records it again */
            continue;
        }
        struct batch *first = w->head, *last = first;
        size_t rows = first ? first->rows.n : 0;
        while (last && last->next && rows + last->next->rows.n <= BATCH_ROWS_MAX) {
            last = last->next;
            rows += last->rows.n;
        }
        pthread_mutex_unlock(&w->lock);
        if (!first)
            continue;
        char err[256];
        if (!write_batches(w, first, last, err, sizeof err)) {
            char msg[400];
            snprintf(msg, sizeof msg, "writing rows failed, will retry: %s", err);
            disconnect(w, msg);
            continue;
        }
        pthread_mutex_lock(&w->lock);
        struct batch *rest = last->next; /* read under the lock: pg_submit appends */
        w->head = rest;
        if (!w->head)
            w->tail = &w->head;
        w->status.committed = last->seq;
        w->status.written += rows;
        w->queued_rows -= rows;
        pthread_mutex_unlock(&w->lock);
        for (struct batch *b = first, *next; b != rest; b = next) {
            next = b->next;
            ledger_rows_free(&b->rows);
            free(b);
        }
        w->wake(w->wake_arg);
    }
    if (w->conn)
        PQfinish(w->conn);
    w->conn = NULL;
    return NULL;
}

/* What the writer records from the config (tariff versions, caps), copied
 * so the thread never reads a config the loop may swap. */
static void copy_config(struct pg_writer *w, const struct config *cfg)
{
    w->tariffs = calloc(cfg->n_tariff_versions + 1, sizeof *w->tariffs);
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        for (size_t j = 0; j < cfg->tariffs[i].n_versions; j++) {
            const struct tariff_version *v = cfg->tariffs[i].versions[j];
            char date[16];
            civil_format_date(v->from_day, date, sizeof date);
            w->tariffs[w->n_tariffs++] =
                (struct tariff_row){dup(v->label), dup(cfg->tariffs[i].name), dup(date),
                                    dup(strrchr(v->label, '#') + 1), dup(v->text)};
        }
    w->caps_cfg = calloc(cfg->n_programmes + 1, sizeof *w->caps_cfg);
    for (size_t i = 0; i < cfg->n_programmes; i++) {
        if (!cfg->programmes[i].has_cap)
            continue;
        char cap[40];
        decimal_format(cfg->programmes[i].cap_cny4_per_year, 4, cap, sizeof cap);
        w->caps_cfg[w->n_caps_cfg++] = (struct cap_row){dup(cfg->programmes[i].id), dup(cap)};
    }
}

static void free_config_copy(struct pg_writer *w)
{
    for (size_t i = 0; i < w->n_tariffs; i++) {
        free(w->tariffs[i].label);
        free(w->tariffs[i].name);
        free(w->tariffs[i].date);
        free(w->tariffs[i].hash);
        free(w->tariffs[i].text);
    }
    free(w->tariffs);
    for (size_t i = 0; i < w->n_caps_cfg; i++) {
        free(w->caps_cfg[i].programme);
        free(w->caps_cfg[i].cap);
    }
    free(w->caps_cfg);
    w->tariffs = NULL;
    w->caps_cfg = NULL;
    w->n_tariffs = w->n_caps_cfg = 0;
}

void pg_reload(struct pg_writer *w, const struct config *cfg)
{
    struct pg_writer fresh = {0};
    copy_config(&fresh, cfg);
    pthread_mutex_lock(&w->lock);
    struct pg_writer stale = {.tariffs = w->new_tariffs,
                              .n_tariffs = w->n_new_tariffs,
                              .caps_cfg = w->new_caps,
                              .n_caps_cfg = w->n_new_caps};
    w->new_tariffs = fresh.tariffs;
    w->n_new_tariffs = fresh.n_tariffs;
    w->new_caps = fresh.caps_cfg;
    w->n_new_caps = fresh.n_caps_cfg;
    w->config_changed = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    free_config_copy(&stale); /* a reload not yet adopted */
}

/* The writer's side of a reload: adopt the new copy (writer-owned from
 * then on). */
static void adopt_config(struct pg_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool changed = w->config_changed;
    struct pg_writer fresh = {.tariffs = w->new_tariffs,
                              .n_tariffs = w->n_new_tariffs,
                              .caps_cfg = w->new_caps,
                              .n_caps_cfg = w->n_new_caps};
    w->new_tariffs = NULL;
    w->new_caps = NULL;
    w->n_new_tariffs = w->n_new_caps = 0;
    w->config_changed = false;
    pthread_mutex_unlock(&w->lock);
    if (!changed)
        return;
    free_config_copy(w);
    w->tariffs = fresh.tariffs;
    w->n_tariffs = fresh.n_tariffs;
    w->caps_cfg = fresh.caps_cfg;
    w->n_caps_cfg = fresh.n_caps_cfg;
}

struct pg_writer *pg_start(const struct config *cfg, bool recover_caps, void (*wake)(void *),
                           void *arg)
{
    struct pg_writer *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->conninfo = dup(cfg->postgres.conninfo);
    w->schema = dup(cfg->postgres.schema);
    w->recover_caps = recover_caps;
    w->wake = wake;
    w->wake_arg = arg;
    w->tail = &w->head;
    copy_config(w, cfg);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_create(&w->thread, NULL, writer_main, w);
    return w;
}

void pg_submit(struct pg_writer *w, uint64_t seq, struct ledger_rows *rows)
{
    struct batch *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    b->seq = seq;
    b->rows = *rows;
    memset(rows, 0, sizeof *rows);
    pthread_mutex_lock(&w->lock);
    *w->tail = b;
    w->tail = &b->next;
    w->queued_rows += b->rows.n;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void pg_status(struct pg_writer *w, struct pg_status *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->status;
    out->queued = w->queued_rows;
    pthread_mutex_unlock(&w->lock);
}

struct pg_cap *pg_take_caps(struct pg_writer *w, size_t *n)
{
    pthread_mutex_lock(&w->lock);
    struct pg_cap *caps = w->caps;
    *n = w->n_caps;
    w->caps = NULL;
    w->n_caps = 0;
    pthread_mutex_unlock(&w->lock);
    return caps;
}

void pg_stop(struct pg_writer *w, int timeout_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pg_status st;
        pg_status(w, &st);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (st.queued == 0 || !st.connected || elapsed >= timeout_ms)
            break;
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    /* A write in progress finishes; a connect in progress may take its
     * timeout (set connect_timeout in conninfo to bound it). */
    pthread_join(w->thread, NULL);
    for (struct batch *b = w->head, *next; b; b = next) {
        next = b->next;
        ledger_rows_free(&b->rows);
        free(b);
    }
    free_config_copy(w);
    adopt_config(w); /* a reload never adopted: free it as the current copy */
    free_config_copy(w);
    free(w->caps);
    free(w->conninfo);
    free(w->schema);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}
