#include "daemon/ledger_read.h"

#include "storage/pg.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/eligibility.h"

#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ledger_read {
    struct ledger_read_request req;
    struct ledger_read_result res;
    void (*done)(void *arg);
    void *arg;
    pthread_t thread;
    pthread_mutex_t lock;
    bool finished;  /* done() was called */
    bool abandoned; /* the loop let go: the thread frees everything */
};

/* The reading: one connection, the schema quoted once ("@." in the SQL
 * texts stands for it and a dot). */
struct reader {
    struct ledger_read *r;
    PGconn *conn;
    char *schema;
};

static bool abandoned(struct ledger_read *r)
{
    pthread_mutex_lock(&r->lock);
    bool a = r->abandoned;
    pthread_mutex_unlock(&r->lock);
    return a;
}

static void fail(struct ledger_read *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ledger_read *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->res.error, sizeof r->res.error, fmt, ap);
    va_end(ap);
    r->res.ok = false;
}

/* The line of a libpq message that says why (the last one not indented),
 * without "ERROR:" noise; never a conninfo. */
static void why_of(const char *msg, char *out, size_t size)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (const char *p = msg ? msg : ""; *p;) {
        size_t l = strcspn(p, "\n");
        if (l > 0 && p[0] != ' ' && p[0] != '\t') {
            best = p;
            best_len = l;
        }
        p += l + (p[l] == '\n');
    }
    if (!best)
        snprintf(out, size, "unknown error");
    else
        snprintf(out, size, "%.*s", (int)best_len, best);
}

/* Waits until the writer has committed every batch up to wait_seq. */
static bool wait_for_writer(struct ledger_read *r)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct pg_status st;
    for (;;) {
        /* The writer is the loop's: once the loop let go of this read it
         * may stop and free it, so it is asked only under the lock that
         * ledger_read_abandon takes. */
        pthread_mutex_lock(&r->lock);
        bool gone = r->abandoned;
        if (!gone)
            pg_status(r->req.pg, &st);
        pthread_mutex_unlock(&r->lock);
        if (gone)
            return false;
        if (st.committed >= r->req.wait_seq) {
            r->res.seen_seq = st.committed;
            return true;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= LEDGER_READ_WAIT_S) {
            fail(r, "the ledger is behind: %" PRIu64 " rows queued for PostgreSQL%s%.300s",
                 st.queued, st.connected ? "" : ", which is not connected: ",
                 st.connected ? "" : st.last_error);
            return false;
        }
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Runs sql (with "@." expanded) with text parameters; NULL (the error
 * set) when it fails. */
static PGresult *run(struct reader *rd, const char *sql, int n, const char *const *params)
{
    char *text = pg_schema_sql(sql, rd->schema);
    PGresult *res = PQexecParams(rd->conn, text, n, NULL, params, NULL, NULL, 0);
    free(text);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char why[300];
    why_of(primary ? primary : PQresultErrorMessage(res), why, sizeof why);
    fail(rd->r, "reading the ledger in schema %s failed: %s", rd->schema, why);
    PQclear(res);
    return NULL;
}

/* A numeric column at the given scale, exactly. */
static bool num(struct reader *rd, PGresult *res, int row, int col, int scale, int64_t *out)
{
    if (PQgetisnull(res, row, col)) {
        *out = 0;
        return true;
    }
    const char *s = PQgetvalue(res, row, col), *why;
    if (decimal_parse(s, scale, out, &why))
        return true;
    fail(rd->r, "the ledger's %s \"%.40s\" %s", PQfname(res, col), s, why);
    return false;
}

/* An integer column (day numbers, epoch seconds, revisions, seconds). */
static bool integer(struct reader *rd, PGresult *res, int row, int col, int64_t *out)
{
    if (PQgetisnull(res, row, col)) {
        *out = 0;
        return true;
    }
    const char *s = PQgetvalue(res, row, col);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        fail(rd->r, "the ledger's %s \"%.40s\" is not an integer", PQfname(res, col), s);
        return false;
    }
    *out = v;
    return true;
}

/* The cluster-months touched: those with an interval_start in range. */
#define TOUCHED                                                                                    \
    "WITH touched AS (SELECT DISTINCT month FROM @.billing_rows WHERE cluster = $1 "               \
    "AND interval_start >= to_timestamp($2::bigint) AND interval_start < "                         \
    "to_timestamp($3::bigint)) "

static const char intervals_sql[] = TOUCHED
    "SELECT b.month - date '1970-01-01' AS month_day, "
    "extract(epoch FROM b.interval_start)::bigint AS interval_start, "
    "max(b.revision) AS revision, sum(b.kwh) AS kwh, sum(b.energy_charge) AS energy_charge, "
    "sum(b.surcharge) AS surcharge, sum(b.subsidy) AS subsidy, sum(b.net) AS net, "
    "sum(b.missing_s) AS missing_s "
    "FROM @.billing_rows AS b WHERE b.cluster = $1 AND b.month IN (SELECT month FROM touched) "
    "GROUP BY b.month, b.interval_start ORDER BY b.month, b.interval_start";

static const char interval_lines_sql[] =
    TOUCHED "SELECT b.month - date '1970-01-01' AS month_day, "
            "extract(epoch FROM b.interval_start)::bigint AS interval_start, l.programme, "
            "sum(l.amount) AS amount "
            "FROM @.billing_rows AS b JOIN @.subsidy_lines AS l "
            "ON l.row_table = 'billing_rows' AND l.row_id = b.id "
            "WHERE b.cluster = $1 AND b.month IN (SELECT month FROM touched) "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

/* max_kw, billing_kw and max_interval_start are the month's as it stands:
 * the latest revision's. */
static const char months_sql[] = TOUCHED
    "SELECT d.month - date '1970-01-01' AS month_day, max(d.revision) AS revision, "
    "sum(d.charge) AS charge, sum(d.subsidy) AS subsidy, sum(d.net) AS net, "
    "(array_agg(d.max_kw ORDER BY d.revision DESC))[1] AS max_kw, "
    "(array_agg(d.billing_kw ORDER BY d.revision DESC))[1] AS billing_kw, "
    "(array_agg(extract(epoch FROM d.max_interval_start)::bigint "
    "ORDER BY d.revision DESC))[1] AS max_interval_start "
    "FROM @.demand_charges AS d WHERE d.cluster = $1 AND d.month IN (SELECT month FROM touched) "
    "GROUP BY d.month ORDER BY d.month";

static const char month_lines_sql[] =
    TOUCHED "SELECT d.month - date '1970-01-01' AS month_day, l.programme, sum(l.amount) AS amount "
            "FROM @.demand_charges AS d JOIN @.subsidy_lines AS l "
            "ON l.row_table = 'demand_charges' AND l.row_id = d.id "
            "WHERE d.cluster = $1 AND d.month IN (SELECT month FROM touched) "
            "GROUP BY 1, 2 ORDER BY 1, 2";

/* A chunk being built: its lines gathered per interval (and the month's
 * last), linked into one array at the end. */
struct building {
    struct reprice_record rec;
    size_t cap_intervals;
    struct reprice_paid **lines; /* per interval, then the month's */
    size_t *n_lines;
};

static void add_line(struct building *b, size_t at, const char *programme, int64_t amount)
{
    b->lines[at] = xrealloc(b->lines[at], (b->n_lines[at] + 1) * sizeof *b->lines[at]);
    b->lines[at][b->n_lines[at]++] = (struct reprice_paid){xstrdup(programme), amount};
}

/* Moves the gathered lines into rec->paid and points the intervals and
 * the month at their slices. */
static void link_lines(struct building *b)
{
    struct reprice_record *rec = &b->rec;
    size_t n = rec->chunk.n_intervals, total = 0;
    for (size_t i = 0; i <= n; i++)
        total += b->n_lines[i];
    rec->paid = xcalloc(total, sizeof *rec->paid);
    for (size_t i = 0; i <= n; i++) {
        struct reprice_paid *at = rec->paid + rec->n_paid;
        if (b->n_lines[i])
            memcpy(at, b->lines[i], b->n_lines[i] * sizeof *at);
        rec->n_paid += b->n_lines[i];
        free(b->lines[i]);
        if (i < n) {
            rec->intervals[i].paid = at;
            rec->intervals[i].n_paid = b->n_lines[i];
        } else {
            rec->chunk.month.paid = at;
            rec->chunk.month.n_paid = b->n_lines[i];
        }
    }
    free(b->lines);
    free(b->n_lines);
    b->lines = NULL;
    b->n_lines = NULL;
    rec->chunk.intervals = rec->intervals;
    rec->chunk.cluster = rec->cluster;
}

static void building_free(struct building *b, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (b[k].lines) {
            for (size_t i = 0; i <= b[k].rec.chunk.n_intervals; i++) {
                for (size_t j = 0; j < b[k].n_lines[i]; j++)
                    free((char *)b[k].lines[i][j].programme);
                free(b[k].lines[i]);
            }
            free(b[k].lines);
            free(b[k].n_lines);
        }
        reprice_record_free(&b[k].rec);
    }
    free(b);
}

/* The chunk of month_day among b[0..n) (they are in month order). */
static struct building *chunk_of(struct building *b, size_t n, int64_t month_day)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b[mid].rec.chunk.month_day < month_day)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && b[lo].rec.chunk.month_day == month_day ? &b[lo] : NULL;
}

/* The interval of b starting at start_s; SIZE_MAX when there is none. */
static size_t interval_of(const struct building *b, int64_t start_s)
{
    size_t lo = 0, hi = b->rec.chunk.n_intervals;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b->rec.intervals[mid].start_s < start_s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->rec.chunk.n_intervals && b->rec.intervals[lo].start_s == start_s ? lo : SIZE_MAX;
}

/* Reads the touched cluster-months of one cluster, appending them. */
static bool read_cluster(struct reader *rd, const struct ledger_read_cluster *c,
                         struct reprice_record **out, size_t *n_out)
{
    char from[24], to[24];
    snprintf(from, sizeof from, "%" PRId64, c->from_s);
    snprintf(to, sizeof to, "%" PRId64, c->to_s);
    const char *params[] = {c->id, from, to};
    struct building *b = NULL;
    size_t n = 0;

    PGresult *res = run(rd, intervals_sql, 3, params);
    if (!res)
        return false;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t month_day, start, revision;
        struct reprice_interval in = {0};
        if (!integer(rd, res, row, 0, &month_day) || !integer(rd, res, row, 1, &start) ||
            !integer(rd, res, row, 2, &revision) || !num(rd, res, row, 3, 6, &in.kwh_micro) ||
            !num(rd, res, row, 4, 4, &in.energy_charge_cny4) ||
            !num(rd, res, row, 5, 4, &in.surcharge_cny4) ||
            !num(rd, res, row, 6, 4, &in.subsidy_cny4) || !num(rd, res, row, 7, 4, &in.net_cny4) ||
            !integer(rd, res, row, 8, &in.missing_s))
            goto fail;
        in.start_s = start;
        in.revision = (int32_t)revision;
        in.in_range = start >= c->from_s && start < c->to_s;
        if (!n || b[n - 1].rec.chunk.month_day != month_day) {
            b = xrealloc(b, (n + 1) * sizeof *b);
            b[n] = (struct building){0};
            b[n].rec.cluster = xstrdup(c->id);
            b[n].rec.chunk.month_day = (int32_t)month_day;
            n++;
        }
        struct building *x = &b[n - 1];
        if (x->rec.chunk.n_intervals == x->cap_intervals) {
            x->cap_intervals = x->cap_intervals ? 2 * x->cap_intervals : 128;
            x->rec.intervals =
                xrealloc(x->rec.intervals, x->cap_intervals * sizeof *x->rec.intervals);
        }
        x->rec.intervals[x->rec.chunk.n_intervals++] = in;
    }
    PQclear(res);
    for (size_t k = 0; k < n; k++) {
        b[k].lines = xcalloc(b[k].rec.chunk.n_intervals + 1, sizeof *b[k].lines);
        b[k].n_lines = xcalloc(b[k].rec.chunk.n_intervals + 1, sizeof *b[k].n_lines);
    }

    res = run(rd, interval_lines_sql, 3, params);
    if (!res)
        goto fail_clean;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t month_day, start, amount;
        if (!integer(rd, res, row, 0, &month_day) || !integer(rd, res, row, 1, &start) ||
            !num(rd, res, row, 3, 4, &amount))
            goto fail;
        struct building *x = chunk_of(b, n, month_day);
        size_t i = x ? interval_of(x, start) : SIZE_MAX;
        if (i == SIZE_MAX) { /* one snapshot: cannot happen */
            fail(rd->r, "a subsidy line of cluster %s at %" PRId64 " has no billing row", c->id,
                 start);
            goto fail;
        }
        add_line(x, i, PQgetvalue(res, row, 2), amount);
    }
    PQclear(res);

    res = run(rd, months_sql, 3, params);
    if (!res)
        goto fail_clean;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t month_day, revision;
        struct reprice_month m = {.has_row = true};
        if (!integer(rd, res, row, 0, &month_day) || !integer(rd, res, row, 1, &revision) ||
            !num(rd, res, row, 2, 4, &m.charge_cny4) || !num(rd, res, row, 3, 4, &m.subsidy_cny4) ||
            !num(rd, res, row, 4, 4, &m.net_cny4) || !num(rd, res, row, 5, 6, &m.max_kw_micro) ||
            !num(rd, res, row, 6, 6, &m.billing_kw_micro) ||
            !integer(rd, res, row, 7, &m.max_interval_start_s))
            goto fail;
        m.revision = (int32_t)revision;
        struct building *x = chunk_of(b, n, month_day);
        if (x)
            x->rec.chunk.month = m;
    }
    PQclear(res);

    res = run(rd, month_lines_sql, 3, params);
    if (!res)
        goto fail_clean;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t month_day, amount;
        if (!integer(rd, res, row, 0, &month_day) || !num(rd, res, row, 2, 4, &amount))
            goto fail;
        struct building *x = chunk_of(b, n, month_day);
        if (x)
            add_line(x, x->rec.chunk.n_intervals, PQgetvalue(res, row, 1), amount);
    }
    PQclear(res);

    *out = xrealloc(*out, (*n_out + n) * sizeof **out);
    for (size_t k = 0; k < n; k++) {
        link_lines(&b[k]);
        (*out)[(*n_out)++] = b[k].rec;
    }
    free(b);
    return true;
fail:
    PQclear(res);
fail_clean:
    for (size_t k = 0; k < n; k++)
        if (!b[k].lines) {
            b[k].lines = xcalloc(b[k].rec.chunk.n_intervals + 1, sizeof *b[k].lines);
            b[k].n_lines = xcalloc(b[k].rec.chunk.n_intervals + 1, sizeof *b[k].n_lines);
        }
    building_free(b, n);
    return false;
}

static int chunk_order(const void *a, const void *b)
{
    const struct reprice_record *x = a, *y = b;
    if (x->chunk.month_day != y->chunk.month_day)
        return x->chunk.month_day < y->chunk.month_day ? -1 : 1;
    return strcmp(x->cluster, y->cluster);
}

/* ------------------------------------------------------------------ */
/* Reads through a cursor                                              */

#define FETCH_ROWS 10000

/* Runs sql (with "@." expanded) through a cursor inside the read's
 * transaction, handing each FETCH_ROWS rows to each(): a million rows never
 * sit in one PGresult beside what is built from them. Gives up when the
 * loop lets go of the read. */
static bool each_batch(struct reader *rd, const char *sql, int n, const char *const *params,
                       bool (*each)(struct reader *rd, PGresult *res, void *ctx), void *ctx)
{
    static const char declare[] = "DECLARE ledger_read NO SCROLL CURSOR FOR ";
    char *text = xmalloc(sizeof declare + strlen(sql));
    memcpy(text, declare, sizeof declare - 1);
    memcpy(text + sizeof declare - 1, sql, strlen(sql) + 1);
    PGresult *res = run(rd, text, n, params);
    free(text);
    if (!res)
        return false;
    PQclear(res);
    for (;;) {
        if (abandoned(rd->r)) {
            fail(rd->r, "the read was abandoned");
            return false;
        }
        char fetch[64];
        snprintf(fetch, sizeof fetch, "FETCH %d FROM ledger_read", FETCH_ROWS);
        res = run(rd, fetch, 0, NULL);
        if (!res)
            return false;
        int rows = PQntuples(res);
        bool ok = rows == 0 || each(rd, res, ctx);
        PQclear(res);
        if (!ok)
            return false;
        if (rows < FETCH_ROWS)
            break;
    }
    res = run(rd, "CLOSE ledger_read", 0, NULL);
    PQclear(res);
    return res != NULL;
}

/* ------------------------------------------------------------------ */
/* Backfill keys                                                        */

#define KEYS_RANGE                                                                                 \
    "WHERE cluster = $1 AND interval_start >= to_timestamp($2::bigint) "                           \
    "AND interval_start < to_timestamp($3::bigint) "

/* DISTINCT on the column itself, so the unique key's index gives the order. */
static const char key_intervals_sql[] =
    "SELECT extract(epoch FROM d.interval_start)::bigint FROM (SELECT DISTINCT interval_start "
    "FROM @.billing_rows " KEYS_RANGE ") AS d ORDER BY d.interval_start";

static const char key_row_months_sql[] =
    "SELECT DISTINCT month - date '1970-01-01' AS month_day FROM @.billing_rows " KEYS_RANGE
    "ORDER BY 1";

/* The request has no UTC offset: from the first of the month of the day
 * before from_s's UTC date (a local date is at most a day before its UTC
 * date), to the day after to_s's (at most a day after). A month or so too
 * many is harmless. */
static const char key_demand_months_sql[] =
    "SELECT DISTINCT month - date '1970-01-01' AS month_day FROM @.demand_charges "
    "WHERE cluster = $1 AND month >= date_trunc('month', to_timestamp($2::bigint) "
    "AT TIME ZONE 'UTC' - interval '1 day')::date "
    "AND month < (to_timestamp($3::bigint) AT TIME ZONE 'UTC')::date + 1 ORDER BY 1";

/* Where each_batch appends column 0 of every row: an array of int64 or
 * (v32) of int32, and its count. */
struct int_list {
    int64_t **v64;
    int32_t **v32;
    size_t *n, cap;
};

static bool append_ints(struct reader *rd, PGresult *res, void *ctx)
{
    struct int_list *l = ctx;
    size_t rows = (size_t)PQntuples(res);
    if (*l->n + rows > l->cap) {
        l->cap = *l->n + rows > 2 * l->cap ? *l->n + rows : 2 * l->cap;
        if (l->v64)
            *l->v64 = xrealloc(*l->v64, l->cap * sizeof **l->v64);
        else
            *l->v32 = xrealloc(*l->v32, l->cap * sizeof **l->v32);
    }
    for (size_t row = 0; row < rows; row++) {
        int64_t v;
        if (!integer(rd, res, (int)row, 0, &v))
            return false;
        if (l->v64) {
            (*l->v64)[(*l->n)++] = v;
        } else if (v < INT32_MIN || v > INT32_MAX) {
            fail(rd->r, "the ledger's %s %" PRId64 " is out of range", PQfname(res, 0), v);
            return false;
        } else {
            (*l->v32)[(*l->n)++] = (int32_t)v;
        }
    }
    return true;
}

/* The keys of every cluster asked, in the request's order. */
static bool read_keys(struct reader *rd)
{
    struct ledger_read *r = rd->r;
    r->res.keys = xcalloc(r->req.n_clusters + 1, sizeof *r->res.keys);
    r->res.n_keys = r->req.n_clusters;
    for (size_t i = 0; i < r->req.n_clusters; i++)
        r->res.keys[i].id = xstrdup(r->req.clusters[i].id);
    for (size_t i = 0; i < r->req.n_clusters; i++) {
        const struct ledger_read_cluster *c = &r->req.clusters[i];
        struct ledger_keys *k = &r->res.keys[i];
        char from[24], to[24];
        snprintf(from, sizeof from, "%" PRId64, c->from_s);
        snprintf(to, sizeof to, "%" PRId64, c->to_s);
        const char *params[] = {c->id, from, to};
        struct int_list starts = {.v64 = &k->interval_starts, .n = &k->n_interval_starts};
        struct int_list rows = {.v32 = &k->row_months, .n = &k->n_row_months};
        struct int_list demand = {.v32 = &k->demand_months, .n = &k->n_demand_months};
        if (!each_batch(rd, key_intervals_sql, 3, params, append_ints, &starts) ||
            !each_batch(rd, key_row_months_sql, 3, params, append_ints, &rows) ||
            !each_batch(rd, key_demand_months_sql, 3, params, append_ints, &demand))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Quarantined samples not yet released                                */

/* A bound that is NULL is no bound; so is a NULL reason. */
static const char quarantined_sql[] =
    "SELECT q.id, q.cluster, q.meter, q.kind, q.reason, q.ts_ns, q.value "
    "FROM @.quarantined_samples AS q "
    "WHERE NOT EXISTS (SELECT FROM @.quarantine_releases AS r WHERE r.quarantined_id = q.id) "
    "AND ($1::text IS NULL OR q.reason = $1::text) "
    "AND ($2::bigint IS NULL OR q.ts_ns >= $2::bigint) "
    "AND ($3::bigint IS NULL OR q.ts_ns < $3::bigint) ORDER BY q.ts_ns NULLS LAST, q.id";

static char *text_or_null(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static bool append_quarantined(struct reader *rd, PGresult *res, void *ctx)
{
    struct ledger_read_result *out = &rd->r->res;
    size_t *cap = ctx, rows = (size_t)PQntuples(res);
    if (out->n_quarantined + rows > *cap) {
        *cap = out->n_quarantined + rows > 2 * *cap ? out->n_quarantined + rows : 2 * *cap;
        out->quarantined = xrealloc(out->quarantined, *cap * sizeof *out->quarantined);
    }
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        struct quarantined *q = &out->quarantined[out->n_quarantined];
        *q = (struct quarantined){0};
        if (!integer(rd, res, row, 0, &q->id) || !integer(rd, res, row, 5, &q->ts_ns))
            return false;
        q->has_ts = !PQgetisnull(res, row, 5);
        q->has_value = !PQgetisnull(res, row, 6);
        if (q->has_value) {
            const char *s = PQgetvalue(res, row, 6);
            char *end;
            q->value = strtod(s, &end);
            if (end == s || *end) {
                fail(rd->r, "the ledger's value \"%.40s\" is not a number", s);
                return false;
            }
        }
        q->cluster = text_or_null(res, row, 1);
        q->meter = text_or_null(res, row, 2);
        q->kind = text_or_null(res, row, 3);
        q->reason = text_or_null(res, row, 4);
        out->n_quarantined++;
    }
    return true;
}

static bool read_quarantined(struct reader *rd)
{
    const struct ledger_read_request *req = &rd->r->req;
    char from[24], to[24];
    snprintf(from, sizeof from, "%" PRId64, req->from_ns);
    snprintf(to, sizeof to, "%" PRId64, req->to_ns);
    const char *params[] = {req->reason, req->from_ns == INT64_MIN ? NULL : from,
                            req->to_ns == INT64_MAX ? NULL : to};
    /* The shortest text that reads back as the same double, whatever the
     * server's or the role's setting. */
    PGresult *res = run(rd, "SET LOCAL extra_float_digits = 3", 0, NULL);
    PQclear(res);
    size_t cap = 0;
    return res && each_batch(rd, quarantined_sql, 3, params, append_quarantined, &cap);
}

static void read_ledger(struct ledger_read *r)
{
    r->res.ok = true;
    if (r->req.kind != LEDGER_READ_REPRICE && r->req.kind != LEDGER_READ_BACKFILL_KEYS &&
        r->req.kind != LEDGER_READ_QUARANTINED) {
        fail(r, "unknown kind of ledger read %d", (int)r->req.kind);
        return;
    }
    if (!wait_for_writer(r))
        return;
    struct reader rd = {.r = r};
    rd.conn = PQconnectdb(r->req.conninfo);
    if (PQstatus(rd.conn) != CONNECTION_OK) {
        char why[400];
        why_of(PQerrorMessage(rd.conn), why, sizeof why);
        fail(r, "cannot read the ledger: %s", why);
        PQfinish(rd.conn);
        return;
    }
    PQsetNoticeProcessor(rd.conn, ignore_notice, NULL);
    rd.schema = PQescapeIdentifier(rd.conn, r->req.schema, strlen(r->req.schema));
    PGresult *res =
        rd.schema ? run(&rd, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL) : NULL;
    if (!rd.schema)
        fail(r, "cannot quote schema %s", r->req.schema);
    bool ok = res != NULL;
    PQclear(res);
    switch (r->req.kind) {
    case LEDGER_READ_REPRICE:
        for (size_t i = 0; ok && i < r->req.n_clusters; i++)
            ok = !abandoned(r) &&
                 read_cluster(&rd, &r->req.clusters[i], &r->res.chunks, &r->res.n_chunks);
        break;
    case LEDGER_READ_BACKFILL_KEYS:
        ok = ok && read_keys(&rd);
        break;
    case LEDGER_READ_QUARANTINED:
        ok = ok && read_quarantined(&rd);
        break;
    }
    if (ok)
        PQclear(run(&rd, "COMMIT", 0, NULL));
    PQfreemem(rd.schema);
    PQfinish(rd.conn);
    if (ok && r->res.ok && r->req.kind == LEDGER_READ_REPRICE)
        qsort(r->res.chunks, r->res.n_chunks, sizeof *r->res.chunks, chunk_order);
}

static void result_free(struct ledger_read_result *res)
{
    for (size_t i = 0; i < res->n_chunks; i++)
        reprice_record_free(&res->chunks[i]);
    free(res->chunks);
    res->chunks = NULL;
    res->n_chunks = 0;
    for (size_t i = 0; i < res->n_keys; i++) {
        free(res->keys[i].id);
        free(res->keys[i].interval_starts);
        free(res->keys[i].row_months);
        free(res->keys[i].demand_months);
    }
    free(res->keys);
    res->keys = NULL;
    res->n_keys = 0;
    for (size_t i = 0; i < res->n_quarantined; i++) {
        free(res->quarantined[i].cluster);
        free(res->quarantined[i].meter);
        free(res->quarantined[i].kind);
        free(res->quarantined[i].reason);
    }
    free(res->quarantined);
    res->quarantined = NULL;
    res->n_quarantined = 0;
}

static void destroy(struct ledger_read *r)
{
    result_free(&r->res);
    ledger_read_request_free(&r->req);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void *thread_main(void *arg)
{
    struct ledger_read *r = arg;
    read_ledger(r);
    pthread_mutex_lock(&r->lock);
    if (r->abandoned) {
        pthread_mutex_unlock(&r->lock);
        destroy(r); /* detached: nobody joins */
        return NULL;
    }
    r->finished = true;
    r->done(r->arg); /* under the lock: the loop cannot abandon meanwhile */
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

struct ledger_read *ledger_read_start(struct ledger_read_request *req, void (*done)(void *arg),
                                      void *arg)
{
    struct ledger_read *r = xcalloc(1, sizeof *r);
    r->req = *req;
    memset(req, 0, sizeof *req);
    r->done = done;
    r->arg = arg;
    pthread_mutex_init(&r->lock, NULL);
    if (pthread_create(&r->thread, NULL, thread_main, r) != 0) {
        /* No thread: the answer is ready at once. */
        fail(r, "cannot start a thread to read the ledger: %s", strerror(errno));
        r->finished = true;
        r->thread = pthread_self();
        done(arg);
    }
    return r;
}

struct ledger_read_result *ledger_read_result(struct ledger_read *r)
{
    return &r->res;
}

void ledger_read_free(struct ledger_read *r)
{
    if (!r)
        return;
    if (!pthread_equal(r->thread, pthread_self()))
        pthread_join(r->thread, NULL);
    destroy(r);
}

void ledger_read_abandon(struct ledger_read *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    if (r->finished) {
        pthread_mutex_unlock(&r->lock);
        ledger_read_free(r);
        return;
    }
    r->abandoned = true;
    pthread_mutex_unlock(&r->lock);
    pthread_detach(r->thread);
}

void ledger_read_request_free(struct ledger_read_request *req)
{
    for (size_t i = 0; i < req->n_clusters; i++)
        free(req->clusters[i].id);
    free(req->clusters);
    free(req->reason);
    free(req->conninfo);
    free(req->schema);
    memset(req, 0, sizeof *req);
}

struct ledger_read_cluster ledger_read_months(const struct cluster *c, int32_t from_day,
                                              int32_t to_day)
{
    int32_t offset = cluster_utc_offset_s(c);
    return (struct ledger_read_cluster){
        .id = xstrdup(c->id),
        .from_s = civil_day_start_ts(from_day, offset),
        .to_s = civil_day_start_ts(to_day, offset),
    };
}
