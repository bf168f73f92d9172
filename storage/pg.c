#include "pg.h"

#include "storage/columns.h"
#include "storage/migrations.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/utf8.h"

#include <libpq-fe.h>
#include <openssl/evp.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define BATCH_ROWS_MAX 20000
#define DEAD_RECOUNT_S 10 /* how often the writer rereads the unresolved dead letters */

static char *xstrdup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

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
    struct pg_callbacks cb;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct batch *head, **tail;
    size_t queued_rows;
    bool stop;
    struct pg_status status;
    struct cap_consumed *caps;
    size_t n_caps;
    PGconn *conn;
    struct timespec dead_counted; /* when dead_letters were last counted */
};

__attribute__((format(printf, 3, 4))) static void
plog(struct pg_writer *w, enum pg_log_priority priority, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->cb.log(w->cb.arg, priority, msg);
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
        w->cb.wake(w->cb.arg);
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

/* libpq's message after a failed connect has one line per address or host
 * it tried, each with indented hints. The last attempt, where libpq gave
 * up, comes first and the earlier ones after it, so a cut for length keeps
 * it: when "localhost" resolves to ::1 before 127.0.0.1, the first line
 * alone says "Connection refused" while the server itself refused, say,
 * the certificate. */
static void connect_error(const char *msg, char *out, size_t size)
{
    enum { MAX_TRIES = 16 };
    const char *line[MAX_TRIES];
    int len[MAX_TRIES], n = 0;
    for (const char *p = msg ? msg : ""; *p;) {
        size_t l = strcspn(p, "\n");
        if (l > 0 && p[0] != '\t' && p[0] != ' ') {
            int i = n < MAX_TRIES ? n++ : MAX_TRIES - 1; /* past the limit, keep the last */
            line[i] = p;
            len[i] = (int)l;
        }
        p += l + (p[l] == '\n');
    }
    if (n == 0) {
        first_line(msg, out, size);
        return;
    }
    size_t w = (size_t)snprintf(out, size, "%.*s", len[n - 1], line[n - 1]);
    for (int i = 0; i < n - 1 && w < size; i++)
        w += (size_t)snprintf(out + w, size - w, "%s%.*s", i == 0 ? " (tried before: " : "; ",
                              len[i], line[i]);
    if (n > 1 && w < size)
        snprintf(out + w, size - w, ")");
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
            plog(w, PG_LOG_NOTICE, "postgres: applied migration %s to schema %s", name, w->schema);
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
    struct cap_consumed *caps = xcalloc((size_t)n + 1, sizeof *caps);
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
    plog(w, PG_LOG_NOTICE, "postgres: recovered %d yearly cap totals from subsidy_lines", n);
    return true;
}

/* A row's INSERT, its columns from storage/columns.h: ON CONFLICT on the
 * unique key does nothing (a replay), and the subsidy lines go in with the
 * row (parameters after its columns: the local year, then the programmes
 * and amounts as arrays). */
static void insert_sql(char *sql, size_t size, const char *table, const char *const *names, int n,
                       const char *key)
{
    int o = snprintf(sql, size, "WITH r AS (INSERT INTO %s (", table);
    for (int i = 0; i < n; i++)
        o += snprintf(sql + o, size - (size_t)o, "%s%s", i ? ", " : "", names[i]);
    o += snprintf(sql + o, size - (size_t)o, ") VALUES (");
    for (int i = 0; i < n; i++)
        o += snprintf(sql + o, size - (size_t)o, "%s$%d", i ? ", " : "", i + 1);
    snprintf(sql + o, size - (size_t)o,
             ") ON CONFLICT (%s) DO NOTHING RETURNING id), "
             "l AS (INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount) "
             "SELECT '%s', r.id, x.p, $1, $%d, x.a FROM r, unnest($%d::text[], $%d::numeric[]) "
             "AS x(p, a) RETURNING 1) SELECT id FROM r",
             key, table, n + 1, n + 2, n + 3);
}

static const char quarantine_sql[] =
    "INSERT INTO quarantined_samples (cluster, meter, ts, ts_ns, value, kind, reason) "
    "VALUES ($1, $2, to_timestamp($3::bigint / 1e9), $3, $4, $5, $6) "
    "ON CONFLICT (cluster, meter, ts_ns, reason) DO NOTHING";

/* A quarantined sample released by tariffd requeue: once (a replay's
 * second release does nothing). $2 is nanoseconds, kept to the
 * microsecond (the bigint times an interval is exact below 2^53 us). */
static const char release_sql[] =
    "INSERT INTO quarantine_releases (quarantined_id, released_at) "
    "VALUES ($1, timestamptz 'epoch' + ($2::bigint / 1000) * interval '1 microsecond') "
    "ON CONFLICT (quarantined_id) DO NOTHING";

static const char notify_sql[] =
    "SELECT pg_notify('tariffd_billing', coalesce((SELECT max(id) FROM billing_rows), 0)::text)";

static bool prepare(struct pg_writer *w, char *err, size_t size)
{
    char billing_sql[2048], demand_sql[2048];
    insert_sql(billing_sql, sizeof billing_sql, "billing_rows", billing_column_names,
               BILLING_COLUMNS, "cluster, interval_start, revision");
    insert_sql(demand_sql, sizeof demand_sql, "demand_charges", demand_column_names, DEMAND_COLUMNS,
               "cluster, month, revision");
    const char *names[] = {"billing", "demand", "quarantine", "release", "notify"};
    const char *sql[] = {billing_sql, demand_sql, quarantine_sql, release_sql, notify_sql};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
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

/* ------------------------------------------------------------------ */
/* Errors: transient (retried with backoff) or a refusal of the row     */

/* What PostgreSQL's answer means for the writer. Transient: the
 * connection, the server's state or a conflict with another transaction;
 * the same statement can succeed later. Anything else (a data exception,
 * 22xxx; a constraint, 23xxx; ...) refuses the row itself, and retrying it
 * would wedge the ledger. */
static bool transient_sqlstate(const char *st)
{
    if (!st || strlen(st) != 5)
        return true; /* no SQLSTATE: libpq's own error, a lost connection */
    static const char *const codes[] = {"57P01", "57P02", "57P03", "40001", "40P01",
                                        "55P03", "57014", "58000", "58030"};
    /* Class 25 (invalid transaction state) would be a fault of the writer's
     * own, never of a row: retry rather than dead-letter good rows. */
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 || strncmp(st, "25", 2) == 0)
        return true;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(st, codes[i]) == 0)
            return true;
    return false;
}

enum write_outcome { WRITE_OK, WRITE_TRANSIENT, WRITE_REFUSED };

struct write_result {
    enum write_outcome outcome;
    long refused_at; /* the row PostgreSQL refused; -1: not one row (COMMIT) */
    bool broken;     /* the connection's state is unknown (pipeline left open): drop it */
    char sqlstate[6];
    char message[256];
};

static void note_error(struct write_result *res, const PGresult *r, PGconn *conn, long row)
{
    if (res->outcome != WRITE_OK)
        return; /* the first error decides; the rest of the pipeline was aborted */
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    first_line(primary ? primary
               : r     ? PQresultErrorMessage(r)
                       : PQerrorMessage(conn),
               res->message, sizeof res->message);
    snprintf(res->sqlstate, sizeof res->sqlstate, "%s", st ? st : "");
    /* Only a data exception (22) or an integrity violation (23) is a row's
     * fault. Anything else (no privilege, a missing table or column, a full
     * NOTIFY queue, an internal error) is PostgreSQL failing for every
     * row: they all wait and are retried, with /health saying why. */
    bool lost = PQstatus(conn) != CONNECTION_OK;
    bool rows_fault = st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0);
    res->outcome = lost || transient_sqlstate(st) || !rows_fault ? WRITE_TRANSIENT : WRITE_REFUSED;
    res->refused_at = row;
}

/* The prepared statement (prepare) and the table of a row of each kind;
 * the table is also what a dead letter's row_table says. */
static const char *statement_of(enum ledger_kind kind)
{
    switch (kind) {
    case LEDGER_BILLING:
        return "billing";
    case LEDGER_DEMAND:
        return "demand";
    case LEDGER_QUARANTINE:
        return "quarantine";
    case LEDGER_RELEASE:
        return "release";
    }
    return "quarantine";
}

static const char *table_of(enum ledger_kind kind)
{
    switch (kind) {
    case LEDGER_BILLING:
        return "billing_rows";
    case LEDGER_DEMAND:
        return "demand_charges";
    case LEDGER_QUARANTINE:
        return "quarantined_samples";
    case LEDGER_RELEASE:
        return "quarantine_releases";
    }
    return "quarantined_samples";
}

/* Writes rows[0..n) in one pipelined transaction, with the NOTIFY. On a
 * failure nothing of it is committed, and *res says which statement failed
 * and how. */
static void write_rows(struct pg_writer *w, const struct ledger_row *rows, size_t n,
                       struct write_result *res)
{
    *res = (struct write_result){.outcome = WRITE_OK, .refused_at = -1};
    if (!PQenterPipelineMode(w->conn)) {
        note_error(res, NULL, w->conn, -1);
        res->broken = true;
        return;
    }
    /* Statement k of the pipeline: 0 BEGIN, 1..n the rows, n+1 NOTIFY, n+2
     * COMMIT; each one's results end with a NULL, then comes the sync. */
    long sent = 0;
    bool ok = PQsendQueryParams(w->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    sent += ok;
    for (size_t i = 0; ok && i < n; i++) {
        ok = PQsendQueryPrepared(w->conn, statement_of(rows[i].kind), rows[i].n, rows[i].values,
                                 NULL, NULL, 0);
        sent += ok;
    }
    ok = ok && PQsendQueryPrepared(w->conn, "notify", 0, NULL, NULL, NULL, 0);
    sent += ok;
    ok = ok && PQsendQueryParams(w->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    sent += ok;
    ok = ok && PQpipelineSync(w->conn);
    if (!ok) {
        /* Could not even send: whatever went out has no sync after it, so
         * the pipeline cannot be drained and left; only a new connection
         * is in a known state. */
        note_error(res, NULL, w->conn, -1);
        res->outcome = WRITE_TRANSIENT;
        res->broken = true;
        return;
    }
    for (long k = 0; k < sent; k++) {
        bool seen = false;
        for (PGresult *r; (r = PQgetResult(w->conn));) {
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED)
                note_error(res, r, w->conn, k >= 1 && (size_t)k <= n ? k - 1 : -1);
            seen = true;
            PQclear(r);
        }
        if (!seen)
            note_error(res, NULL, w->conn, -1);
        if (PQstatus(w->conn) != CONNECTION_OK) {
            note_error(res, NULL, w->conn, -1);
            res->outcome = WRITE_TRANSIENT;
            res->broken = true;
            return;
        }
    }
    bool synced = false;
    PGresult *r = PQgetResult(w->conn);
    if (r) {
        synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    if (!synced || !PQexitPipelineMode(w->conn)) {
        note_error(res, NULL, w->conn, -1);
        res->outcome = WRITE_TRANSIENT;
        res->broken = true;
        return;
    }
    /* After an error the server skipped the rest up to the sync, COMMIT
     * included: the transaction is still open, aborted. */
    if (res->outcome != WRITE_OK) {
        PGresult *rb = PQexec(w->conn, "ROLLBACK");
        PQclear(rb);
    }
}

/* A row PostgreSQL refused, kept with its raw parameters (bytea, so text
 * that is not UTF-8 survives) and the error. The fingerprint makes a second
 * refusal of the same row (a replay after a restart) a no-op. */
static void dead_letter(struct pg_writer *w, const struct ledger_row *row,
                        const struct write_result *why, struct write_result *res)
{
    const char *table = table_of(row->kind);
    unsigned char digest[32];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, table, strlen(table) + 1);
    for (int i = 0; i < row->n; i++) {
        uint32_t len = row->values[i] ? (uint32_t)strlen(row->values[i]) : UINT32_MAX;
        EVP_DigestUpdate(md, &len, sizeof len);
        if (row->values[i])
            EVP_DigestUpdate(md, row->values[i], len);
    }
    EVP_DigestFinal_ex(md, digest, NULL);
    EVP_MD_CTX_free(md);

    /* The server's message is UTF-8 as it sends it; cut at a character. */
    char message[256];
    snprintf(message, sizeof message, "%s", why->message);
    message[utf8_invalid(message, strlen(message)) - message] = '\0';

    char sql[512];
    int o = snprintf(sql, sizeof sql,
                     "INSERT INTO dead_letters (row_table, fingerprint, sqlstate, message, params) "
                     "VALUES ($1, $2, $3, $4, ARRAY[");
    for (int i = 0; i < row->n; i++)
        o += snprintf(sql + o, sizeof sql - (size_t)o, "%s$%d::bytea", i ? ", " : "", i + 5);
    snprintf(sql + o, sizeof sql - (size_t)o, "]::bytea[]) ON CONFLICT (fingerprint) DO NOTHING");
    const char *values[4 + LEDGER_MAX_VALUES];
    int lengths[4 + LEDGER_MAX_VALUES], formats[4 + LEDGER_MAX_VALUES];
    values[0] = table;
    values[1] = (const char *)digest;
    values[2] = why->sqlstate;
    values[3] = message;
    for (int i = 0; i < 4 + row->n; i++) {
        if (i >= 4)
            values[i] = row->values[i - 4];
        formats[i] = i == 1 || i >= 4; /* bytea in binary: the bytes themselves */
        lengths[i] = i == 1 ? 32 : values[i] ? (int)strlen(values[i]) : 0;
    }
    PGresult *r = PQexecParams(w->conn, sql, 4 + row->n, NULL, values, lengths, formats, 0);
    *res = (struct write_result){.outcome = WRITE_OK, .refused_at = -1};
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        note_error(res, r, w->conn, -1);
    PQclear(r);
}

/* The unresolved dead letters, for /health. */
static void count_dead_letters(struct pg_writer *w)
{
    PGresult *r =
        PQexec(w->conn, "SELECT count(*), (SELECT sqlstate || ': ' || message FROM "
                        "dead_letters WHERE resolved_at IS NULL ORDER BY id DESC LIMIT 1) "
                        "FROM dead_letters WHERE resolved_at IS NULL");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        pthread_mutex_lock(&w->lock);
        w->status.dead_letters_unresolved = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(w->status.dead_letter_error, sizeof w->status.dead_letter_error, "%s",
                 PQgetvalue(r, 0, 1));
        pthread_mutex_unlock(&w->lock);
    }
    PQclear(r);
    clock_gettime(CLOCK_MONOTONIC, &w->dead_counted);
}

/* Writes rows[0..n): every row PostgreSQL takes is committed in order, and
 * every row it refuses goes to dead_letters. The refused row is named by
 * the pipeline; when the refusal is not one row's (a constraint checked at
 * COMMIT), halves are tried until it is. Returns WRITE_OK, or
 * WRITE_TRANSIENT (with *res) when the rest must wait and be retried:
 * rows committed before that are skipped by the unique keys then. */
static enum write_outcome write_all(struct pg_writer *w, const struct ledger_row *rows, size_t n,
                                    struct write_result *res)
{
    while (n > 0) {
        write_rows(w, rows, n, res);
        if (res->outcome != WRITE_REFUSED)
            return res->outcome;
        struct write_result refusal = *res;
        pthread_mutex_lock(&w->lock);
        w->status.errors_refused++;
        pthread_mutex_unlock(&w->lock);
        if (refusal.refused_at < 0 && n > 1) {
            size_t half = n / 2;
            if (write_all(w, rows, half, res) != WRITE_OK)
                return res->outcome;
            rows += half;
            n -= half;
            continue;
        }
        size_t at = refusal.refused_at < 0 ? 0 : (size_t)refusal.refused_at;
        if (at > 0 && write_all(w, rows, at, res) != WRITE_OK)
            return res->outcome;
        dead_letter(w, &rows[at], &refusal, res);
        if (res->outcome != WRITE_OK) {
            /* Not even dead_letters takes it: the row stays queued (and in
             * the journal) and is tried again with the rest, /health
             * saying why, until an operator fixes the table or its
             * grants. */
            char why[sizeof res->message];
            snprintf(why, sizeof why, "%s", res->message);
            snprintf(res->message, sizeof res->message,
                     "a refused %s row (SQLSTATE %s) cannot be kept in dead_letters: %.160s",
                     table_of(rows[at].kind), refusal.sqlstate, why);
            res->outcome = WRITE_TRANSIENT;
            return res->outcome;
        }
        plog(w, PG_LOG_ERR, "postgres: refused a %s row (SQLSTATE %s: %s); kept in dead_letters",
             table_of(rows[at].kind), refusal.sqlstate, refusal.message);
        pthread_mutex_lock(&w->lock);
        w->status.dead_lettered++;
        snprintf(w->status.refused_sqlstate, sizeof w->status.refused_sqlstate, "%s",
                 refusal.sqlstate);
        pthread_mutex_unlock(&w->lock);
        count_dead_letters(w);
        rows += at + 1;
        n -= at + 1;
    }
    res->outcome = WRITE_OK;
    return WRITE_OK;
}

static void disconnect(struct pg_writer *w, const char *why)
{
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    if (why)
        plog(w, PG_LOG_WARNING, "postgres: %s", why);
    set_status(w, false, false, why);
}

/* Server notices ("schema ... already exists, skipping") are not events
 * an operator needs; libpq would print them raw on stderr. */
static void on_notice(void *arg, const char *message)
{
    struct pg_writer *w = arg;
    char line[256];
    first_line(message, line, sizeof line);
    plog(w, PG_LOG_DEBUG, "postgres: %s", line);
}

bool pg_conninfo_parses(const char *conninfo, char *why, size_t size)
{
    char *libpq_why = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &libpq_why);
    if (opts) {
        PQconninfoFree(opts);
        return true;
    }
    if (why)
        first_line(libpq_why ? libpq_why : "out of memory", why, size);
    PQfreemem(libpq_why);
    return false;
}

/* Connects, takes the writer lock, migrates: true when ready to write. */
static bool get_ready(struct pg_writer *w, long *backoff_ms)
{
    char err[256];
    if (!pg_conninfo_parses(w->conninfo, NULL, 0)) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "cannot connect (retrying in %ld ms): [postgres] conninfo is not a valid libpq "
                 "connection string (not shown, it may hold a password; tariffd --check-config "
                 "says why)",
                 *backoff_ms);
        disconnect(w, msg);
        return false;
    }
    w->conn = PQconnectdb(w->conninfo);
    PQsetNoticeProcessor(w->conn, on_notice, w);
    if (PQstatus(w->conn) != CONNECTION_OK) {
        char why[512], msg[600];
        connect_error(PQerrorMessage(w->conn), why, sizeof why);
        snprintf(msg, sizeof msg, "cannot connect (retrying in %ld ms): %s", *backoff_ms, why);
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
            plog(w, PG_LOG_NOTICE, "postgres: another tariffd writes schema %s; standing by",
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
    /* The backoff starts over only once rows commit again: a server that
     * takes connections but fails every write is not hammered. */
    plog(w, PG_LOG_NOTICE, "postgres: connected; writing schema %s", w->schema);
    count_dead_letters(w);
    set_status(w, true, false, NULL);
    return true;
}

/* Sleeps the backoff (with jitter) and doubles it; returns whether to stop. */
static bool back_off(struct pg_writer *w, long *backoff_ms, unsigned *seed)
{
    long jitter = (long)(rand_r(seed) % (unsigned)(*backoff_ms / 2 + 1));
    bool stop = nap(w, *backoff_ms + jitter);
    *backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
    return stop;
}

static void set_failing(struct pg_writer *w, const char *error)
{
    pthread_mutex_lock(&w->lock);
    bool changed = w->status.failing != (error != NULL);
    w->status.failing = error != NULL;
    if (error) {
        snprintf(w->status.last_error, sizeof w->status.last_error, "%.255s", error);
        w->status.errors_transient++;
    }
    pthread_mutex_unlock(&w->lock);
    if (changed)
        w->cb.wake(w->cb.arg);
}

static double since_s(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
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
            if (back_off(w, &backoff_ms, &seed))
                break;
            continue;
        }
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop && !w->config_changed) {
            /* Idle: nothing is failing; an operator may resolve dead
             * letters meanwhile, so count them again now and then. */
            if (w->status.failing) {
                pthread_mutex_unlock(&w->lock);
                set_failing(w, NULL);
                pthread_mutex_lock(&w->lock);
                continue;
            }
            if (w->status.dead_letters_unresolved && since_s(&w->dead_counted) >= DEAD_RECOUNT_S) {
                pthread_mutex_unlock(&w->lock);
                count_dead_letters(w);
                w->cb.wake(w->cb.arg);
                pthread_mutex_lock(&w->lock);
                continue;
            }
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&w->cond, &w->lock, &until);
        }
        if (w->config_changed) {
            pthread_mutex_unlock(&w->lock);
            adopt_config(w);
            char err[256];
            if (!record_config(w, err, sizeof err))
                disconnect(w, err); /* get_ready records it again */
            continue;
        }
        struct batch *first = w->head, *last = first;
        size_t n = first ? first->rows.n : 0;
        while (last && last->next && n + last->next->rows.n <= BATCH_ROWS_MAX) {
            last = last->next;
            n += last->rows.n;
        }
        bool recount =
            w->status.dead_letters_unresolved && since_s(&w->dead_counted) >= DEAD_RECOUNT_S;
        pthread_mutex_unlock(&w->lock);
        if (!first)
            continue;
        /* Under a load that never lets the queue run dry, as well. */
        if (recount) {
            count_dead_letters(w);
            w->cb.wake(w->cb.arg);
        }
        /* The rows of the group, in order (they point into the batches). */
        struct ledger_row *rows = xcalloc(n + 1, sizeof *rows);
        size_t k = 0;
        for (struct batch *b = first;; b = b->next) {
            size_t off = 0;
            while (k < n && ledger_next(&b->rows, &off, &rows[k]))
                k++;
            if (b == last)
                break;
        }
        struct write_result res;
        enum write_outcome outcome = write_all(w, rows, k, &res);
        free(rows);
        if (outcome != WRITE_OK) {
            char full[700];
            snprintf(full, sizeof full, "writing rows failed, retrying in %ld ms: %s%s%s",
                     backoff_ms, res.sqlstate[0] ? res.sqlstate : "", res.sqlstate[0] ? " " : "",
                     res.message);
            plog(w, PG_LOG_WARNING, "postgres: %s", full);
            set_failing(w, res.message);
            if (res.broken || PQstatus(w->conn) != CONNECTION_OK)
                disconnect(w, NULL);
            if (back_off(w, &backoff_ms, &seed))
                break;
            continue;
        }
        backoff_ms = BACKOFF_MIN_MS;
        pthread_mutex_lock(&w->lock);
        struct batch *rest = last->next; /* read under the lock: pg_submit appends */
        w->head = rest;
        if (!w->head)
            w->tail = &w->head;
        w->status.committed = last->seq;
        w->status.written += n;
        w->queued_rows -= n;
        w->status.failing = false;
        pthread_mutex_unlock(&w->lock);
        for (struct batch *b = first, *next; b != rest; b = next) {
            next = b->next;
            ledger_rows_free(&b->rows);
            free(b);
        }
        w->cb.wake(w->cb.arg);
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
    w->tariffs = xcalloc(cfg->n_tariff_versions + 1, sizeof *w->tariffs);
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        for (size_t j = 0; j < cfg->tariffs[i].n_versions; j++) {
            const struct tariff_version *v = cfg->tariffs[i].versions[j];
            char date[16];
            civil_format_date(v->from_day, date, sizeof date);
            w->tariffs[w->n_tariffs++] = (struct tariff_row){
                xstrdup_or_empty(v->label), xstrdup_or_empty(cfg->tariffs[i].name),
                xstrdup_or_empty(date), xstrdup_or_empty(strrchr(v->label, '#') + 1),
                xstrdup_or_empty(v->text)};
        }
    w->caps_cfg = xcalloc(cfg->n_programmes + 1, sizeof *w->caps_cfg);
    for (size_t i = 0; i < cfg->n_programmes; i++) {
        if (!cfg->programmes[i].has_cap)
            continue;
        char cap[40];
        decimal_format(cfg->programmes[i].cap_cny4_per_year, 4, cap, sizeof cap);
        w->caps_cfg[w->n_caps_cfg++] =
            (struct cap_row){xstrdup_or_empty(cfg->programmes[i].id), xstrdup_or_empty(cap)};
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

struct pg_writer *pg_start(const struct config *cfg, bool recover_caps,
                           const struct pg_callbacks *callbacks)
{
    struct pg_writer *w = xcalloc(1, sizeof *w);
    w->conninfo = xstrdup_or_empty(cfg->postgres.conninfo);
    w->schema = xstrdup_or_empty(cfg->postgres.schema);
    w->recover_caps = recover_caps;
    w->cb = *callbacks;
    w->tail = &w->head;
    copy_config(w, cfg);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_create(&w->thread, NULL, writer_main, w);
    return w;
}

void pg_submit(struct pg_writer *w, uint64_t seq, struct ledger_rows *rows)
{
    struct batch *b = xcalloc(1, sizeof *b);
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

struct cap_consumed *pg_take_caps(struct pg_writer *w, size_t *n)
{
    pthread_mutex_lock(&w->lock);
    struct cap_consumed *caps = w->caps;
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

char *pg_schema_sql(const char *sql, const char *quoted_schema)
{
    size_t len = strlen(sql), slen = strlen(quoted_schema), count = 0;
    for (const char *p = sql; (p = strstr(p, "@.")) != NULL; p += 2)
        count++;
    char *text = xmalloc(len + count * slen + 1), *o = text;
    for (const char *p = sql; *p;) {
        if (p[0] == '@' && p[1] == '.') {
            memcpy(o, quoted_schema, slen);
            o += slen;
            *o++ = '.';
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return text;
}
