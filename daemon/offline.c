#include "offline.h"

#include "daemon/ingest.h"
#include "storage/csv.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/engine.h"
#include "tariff/statement.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Rows arrive in closing order; the files list them by interval (or
 * month), then cluster, then revision. Each row's CSV line goes to a
 * temporary file as it arrives and only this small key stays in memory, so
 * the input is never held. */
struct row_key {
    int64_t when; /* interval_start_s, or the month's day number */
    size_t cluster_rank;
    int revision;
    long offset;
    size_t len;
};

struct row_file {
    FILE *tmp;
    struct row_key *keys;
    size_t n, cap;
};

struct offline_run {
    const struct config *cfg;
    struct engine *engine;
    struct statements statements;
    size_t *cluster_rank; /* by index in cfg->clusters: position by id */
    bool write_rows;
    struct row_file billing, demand;
    uint64_t quarantined_by_reason[QUARANTINE_REASON_COUNT];
    int64_t now_ns;
    bool io_error;
    double power_scale; /* every value read is multiplied by it (--compare's ALT) */
    struct engine_sink sink;
    /* By the reader's series number: the engine's meter handle (or
     * ENGINE_NO_METER), and the series' cluster and meter. */
    struct series_seen *series;
    size_t n_series;
};

static size_t rank_of(const struct offline_run *o, const struct cluster *c)
{
    return o->cluster_rank[c - o->cfg->clusters];
}

static void keep_row(struct offline_run *o, struct row_file *f, int64_t when,
                     const struct cluster *c, int revision, const char *line, size_t len)
{
    if (!f->tmp)
        return;
    ARRAY_RESERVE_ONE(f->keys, f->n, f->cap);
    long offset = ftell(f->tmp);
    if (offset < 0 || fwrite(line, 1, len, f->tmp) != len)
        o->io_error = true;
    f->keys[f->n++] = (struct row_key){when, rank_of(o, c), revision, offset, len};
}

static void on_billing(void *ctx, const struct billing_row *r)
{
    struct offline_run *o = ctx;
    statements_add_billing(&o->statements, r);
    if (o->write_rows) {
        char line[CSV_LINE_MAX];
        size_t len = csv_billing_row(r, line);
        keep_row(o, &o->billing, r->interval_start_s, r->cluster, r->revision, line, len);
    }
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    struct offline_run *o = ctx;
    statements_add_demand(&o->statements, r);
    if (o->write_rows) {
        char line[CSV_LINE_MAX];
        size_t len = csv_demand_row(r, line);
        keep_row(o, &o->demand, r->month_day, r->cluster, r->revision, line, len);
    }
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    struct offline_run *o = ctx;
    (void)s;
    o->quarantined_by_reason[quarantine_reason_parse(reason)]++;
}

static int key_order(const void *a, const void *b)
{
    const struct row_key *x = a, *y = b;
    if (x->when != y->when)
        return x->when < y->when ? -1 : 1;
    if (x->cluster_rank != y->cluster_rank)
        return x->cluster_rank < y->cluster_rank ? -1 : 1;
    return x->revision - y->revision;
}

static bool write_sorted(struct row_file *f, const char *dir, const char *name, const char *header)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "tariffd: could not create %s: %s\n", path, strerror(errno));
        return false;
    }
    qsort(f->keys, f->n, sizeof *f->keys, key_order);
    fputs(header, out);
    char line[CSV_LINE_MAX];
    bool ok = true;
    for (size_t i = 0; i < f->n && ok; i++) {
        ok = fseek(f->tmp, f->keys[i].offset, SEEK_SET) == 0 &&
             fread(line, 1, f->keys[i].len, f->tmp) == f->keys[i].len &&
             fwrite(line, 1, f->keys[i].len, out) == f->keys[i].len;
    }
    if (fclose(out) != 0 || !ok) {
        fprintf(stderr, "tariffd: could not write %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

void offline_format_fen(int64_t cny4, char *buf, size_t size)
{
    decimal_format(statement_round_fen(cny4), 2, buf, size);
}

void offline_format_per_pflop_hour(const struct statement *st, char *buf, size_t size)
{
    int64_t cny4;
    if (statement_cny4_per_pflop_hour(st, &cny4))
        decimal_format(cny4, 4, buf, size);
    else if (size > 0)
        buf[0] = '\0';
}

static bool write_statements(const struct statements *s, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/monthly_statements.csv", dir);
    FILE *out = fopen(path, "w");
    snprintf(path, sizeof path, "%s/monthly_by_period.csv", dir);
    FILE *by_period = out ? fopen(path, "w") : NULL;
    if (!out || !by_period) {
        fprintf(stderr, "tariffd: could not create %s: %s\n", path, strerror(errno));
        if (out)
            fclose(out);
        return false;
    }
    fputs("tenant,cluster,province,month,kwh,energy_charge,surcharge,demand_charge,subsidy,net,"
          "demand_days,cny_per_pflop_hour\n",
          out);
    fputs("tenant,cluster,month,period,kwh,energy_charge\n", by_period);
    for (size_t i = 0; i < s->n; i++) {
        const struct statement *st = &s->v[i];
        char line[CSV_LINE_MAX], v[8][40], month[16];
        size_t len = 0;
        line[0] = '\0';
        csv_text(line, &len, st->tenant);
        line[len++] = ',';
        line[len] = '\0';
        csv_text(line, &len, st->cluster);
        size_t prefix = len; /* tenant,cluster: shared with by_period */
        line[len++] = ',';
        line[len] = '\0';
        csv_text(line, &len, st->province);
        civil_format_date(st->month_day, month, sizeof month);
        decimal_format(st->kwh_micro, 6, v[0], sizeof v[0]);
        offline_format_fen(st->energy_charge_cny4, v[1], sizeof v[1]);
        offline_format_fen(st->surcharge_cny4, v[2], sizeof v[2]);
        offline_format_fen(st->demand_charge_cny4, v[3], sizeof v[3]);
        offline_format_fen(st->subsidy_cny4, v[4], sizeof v[4]);
        offline_format_fen(st->net_cny4, v[5], sizeof v[5]);
        v[6][0] = '\0'; /* NULL: a whole month */
        if (st->demand_days >= 0)
            snprintf(v[6], sizeof v[6], "%d", (int)st->demand_days);
        offline_format_per_pflop_hour(st, v[7], sizeof v[7]);
        fprintf(out, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", line, month, v[0], v[1], v[2], v[3], v[4],
                v[5], v[6], v[7]);
        for (int p = 0; p < PERIOD_COUNT; p++) {
            if (!st->period_seen[p])
                continue;
            decimal_format(st->period_kwh_micro[p], 6, v[0], sizeof v[0]);
            offline_format_fen(st->period_energy_charge_cny4[p], v[1], sizeof v[1]);
            fprintf(by_period, "%.*s,%s,%s,%s,%s\n", (int)prefix, line, month,
                    period_name((enum period)p), v[0], v[1]);
        }
    }
    bool ok = !ferror(out) && !ferror(by_period);
    ok &= fclose(out) == 0;
    ok &= fclose(by_period) == 0;
    if (!ok)
        fprintf(stderr, "tariffd: could not write the statements in %s\n", dir);
    return ok;
}

void offline_run_print_statements(const struct offline_run *o)
{
    const struct statements *s = &o->statements;
    /* The compute column only when some statement has a figure, so a
     * config without pflops prints what it always printed. */
    bool rated = false;
    for (size_t i = 0; i < s->n && !rated; i++) {
        int64_t unused;
        rated = statement_cny4_per_pflop_hour(&s->v[i], &unused);
    }
    printf("%-10s  %-12s  %-12s  %-14s  %16s  %14s  %12s  %12s  %14s  %14s%s\n", "month", "tenant",
           "cluster", "province", "kwh", "energy", "surcharge", "demand", "subsidy", "net",
           rated ? "  CNY/PFLOP-h" : "");
    for (size_t i = 0; i < s->n; i++) {
        const struct statement *st = &s->v[i];
        char month[16], kwh[40], v[5][40], per_pflop_hour[40];
        civil_format_date(st->month_day, month, sizeof month);
        decimal_format(st->kwh_micro, 6, kwh, sizeof kwh);
        offline_format_fen(st->energy_charge_cny4, v[0], sizeof v[0]);
        offline_format_fen(st->surcharge_cny4, v[1], sizeof v[1]);
        offline_format_fen(st->demand_charge_cny4, v[2], sizeof v[2]);
        offline_format_fen(st->subsidy_cny4, v[3], sizeof v[3]);
        offline_format_fen(st->net_cny4, v[4], sizeof v[4]);
        offline_format_per_pflop_hour(st, per_pflop_hour, sizeof per_pflop_hour);
        printf("%-10s  %-12s  %-12s  %-14s  %16s  %14s  %12s  %12s  %14s  %14s", month, st->tenant,
               st->cluster, st->province, kwh, v[0], v[1], v[2], v[3], v[4]);
        if (per_pflop_hour[0])
            printf("  %11s", per_pflop_hour);
        putchar('\n');
    }
}

void offline_run_print_counts(const struct offline_run *o, const char *label)
{
    struct engine_stats st;
    engine_stats(o->engine, &st);
    printf("%s%s%llu samples priced, %llu duplicates ignored (%llu with another value), "
           "%llu quarantined; %llu interval rows, %llu adjustments, %llu demand rows\n",
           label ? label : "", label ? ": " : "", (unsigned long long)st.accepted,
           (unsigned long long)st.duplicates, (unsigned long long)st.conflicts,
           (unsigned long long)st.quarantined, (unsigned long long)st.billing_rows,
           (unsigned long long)st.adjustment_rows, (unsigned long long)st.demand_rows);
    for (int r = 0; r < QUARANTINE_REASON_COUNT; r++)
        if (o->quarantined_by_reason[r])
            fprintf(stderr, "tariffd: %s%s%llu samples quarantined: %s\n", label ? label : "",
                    label ? ": " : "", (unsigned long long)o->quarantined_by_reason[r],
                    quarantine_reason_name((enum quarantine_reason)r));
}

static int rank_order(const void *a, const void *b, void *ctx)
{
    const struct config *cfg = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return strcmp(cfg->clusters[x].id, cfg->clusters[y].id);
}

struct offline_run *offline_run_new(const struct config *cfg, double power_scale, bool keep_rows)
{
    struct offline_run *o = xcalloc(1, sizeof *o);
    *o = (struct offline_run){
        .cfg = cfg, .write_rows = keep_rows, .now_ns = INT64_MIN, .power_scale = power_scale};
    o->cluster_rank = xcalloc(cfg->n_clusters, sizeof *o->cluster_rank);
    size_t *by_id = xcalloc(cfg->n_clusters, sizeof *by_id);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        by_id[i] = i;
    qsort_r(by_id, cfg->n_clusters, sizeof *by_id, rank_order, (void *)cfg);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        o->cluster_rank[by_id[i]] = i;
    free(by_id);
    if (o->write_rows) {
        o->billing.tmp = tmpfile();
        o->demand.tmp = tmpfile();
        if (!o->billing.tmp || !o->demand.tmp) {
            fprintf(stderr, "tariffd: could not create a temporary file: %s\n", strerror(errno));
            offline_run_free(o);
            return NULL;
        }
    }
    o->sink = (struct engine_sink){o, on_billing, on_demand, on_quarantine, NULL};
    o->engine = engine_new(cfg, &o->sink);
    engine_caps_recovered(o->engine); /* offline, every cap starts unconsumed */
    return o;
}

/* ---------------------------------------------------------------- */
/* Reading and pricing, on two threads                               */

/* The input is read and parsed on a thread of its own while the calling
 * thread prices what it parsed, in the same order: the engine sees the
 * very pushes, clock and batches of one thread doing both, so the output
 * is the same; only the two halves of the work overlap. */

/* A series (cluster and meter) as the pricing thread knows it. */
struct series_seen {
    size_t handle; /* the engine's, or ENGINE_NO_METER */
    const char *cluster, *meter;
};

/* One sample as read, in 24 bytes: what crosses between the threads is
 * written by one and read by the other, ten million times a file. */
struct parsed {
    int64_t ts_ns;
    double value;
    uint32_t series : 31; /* the reader's number for the cluster and meter */
    uint32_t counter : 1; /* SAMPLE_COUNTER, else SAMPLE_POWER */
    int line;             /* physical, in the whole input */
};

/* A series first read in a batch: its cluster and meter point to the
 * reader's copy, which lives as long as the reading. */
struct new_series {
    size_t series;
    const char *cluster, *meter;
};

/* Series numbers fit in struct parsed: more distinct series than this in
 * one input is refused (each costs the engine a meter, so memory gives
 * out long before). */
#define SERIES_MAX ((size_t)1 << 31)

/* What one parse of one piece of input gave: its samples and the series
 * they were the first of, then the engine's batch ends. The last batch
 * says how the reading ended. */
struct batch {
    struct parsed *v;
    size_t n, cap;
    struct new_series *fresh;
    size_t n_fresh, cap_fresh;
    bool last;
    bool refused;        /* with last: the parser refused a line (msg says which) */
    bool read_failed;    /* with last: reading failed (read_msg says why) */
    char msg[1024];      /* "line N: reason" */
    char read_msg[1024]; /* "tariffd: could not read the input: ..." */
};

/* Batches in flight between the threads (a piece of 1 MiB gives about
 * 18,000 samples): enough that the reader goes on while the engine closes
 * and prices a fleet's intervals at a boundary. */
#define BATCHES 16

/* A slot of the reader's table of series (cluster and meter pairs). */
struct series_slot {
    uint64_t hash; /* 0: empty */
    size_t index;  /* in the reader's texts and meters */
};

struct reader {
    FILE *in;
    enum lp_precision precision;
    const char *label;
    double power_scale;
    struct lp_cache *cache;
    struct series_slot *table; /* open addressing, at most half full */
    size_t table_size, n_series;
    char **texts;        /* by series index: "CLUSTER\0METER\0" */
    const char **meters; /* by series index: the meter in its text */
    int line_base;
    struct batch *filling;
    /* Shared with the pricing thread, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct batch ring[BATCHES];
    size_t written, read; /* batches handed over, and taken */
    bool stop;            /* the pricing thread wants no more */
};

/* The series number of cluster and meter, made on first sight (and told
 * to the pricing thread in the batch being filled). */
static size_t intern(struct reader *r, const char *cluster, const char *meter)
{
    if ((r->n_series + 1) * 2 > r->table_size) {
        struct series_slot *old = r->table;
        size_t old_size = r->table_size;
        r->table_size = old_size ? old_size * 2 : 1024;
        r->table = xcalloc(r->table_size, sizeof *r->table);
        for (size_t i = 0; i < old_size; i++) {
            if (!old[i].hash)
                continue;
            size_t j = old[i].hash & (r->table_size - 1);
            while (r->table[j].hash)
                j = (j + 1) & (r->table_size - 1);
            r->table[j] = old[i];
        }
        free(old);
        r->texts = xrealloc_array(r->texts, r->table_size / 2, sizeof *r->texts);
        r->meters = xrealloc_array(r->meters, r->table_size / 2, sizeof *r->meters);
    }
    uint64_t h = ingest_series_hash(cluster, meter) | 1; /* 0 marks an empty slot */
    size_t mask = r->table_size - 1, i = h & mask;
    for (; r->table[i].hash; i = (i + 1) & mask) {
        size_t k = r->table[i].index;
        if (r->table[i].hash == h && strcmp(r->texts[k], cluster) == 0 &&
            strcmp(r->meters[k], meter) == 0)
            return k;
    }
    size_t cn = strlen(cluster), mn = strlen(meter);
    char *text = xmalloc(cn + mn + 2);
    memcpy(text, cluster, cn + 1);
    memcpy(text + cn + 1, meter, mn + 1);
    r->texts[r->n_series] = text;
    r->meters[r->n_series] = text + cn + 1;
    r->table[i] = (struct series_slot){h, r->n_series};
    struct batch *b = r->filling;
    ARRAY_RESERVE_ONE(b->fresh, b->n_fresh, b->cap_fresh);
    b->fresh[b->n_fresh++] = (struct new_series){r->n_series, text, text + cn + 1};
    return r->n_series++;
}

static bool on_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct reader *r = ctx;
    /* Like the parser's own errors, line numbers here count from the start
     * of the piece; the reader makes them absolute. */
    if (!p->has_ts) {
        err->line = p->line;
        snprintf(err->msg, sizeof err->msg,
                 "line %d: no timestamp (offline pricing needs one on every line)", p->line);
        return false;
    }
    /* The memo keeps the series number (plus one) with its key. */
    size_t series;
    if (p->memo && *p->memo) {
        series = (size_t)(*p->memo - 1);
    } else {
        if (r->n_series == SERIES_MAX) {
            err->line = p->line;
            snprintf(err->msg, sizeof err->msg, "line %d: more than %zu series in one input",
                     p->line, SERIES_MAX);
            return false;
        }
        series = intern(r, p->cluster, p->meter);
        if (p->memo)
            *p->memo = (uint64_t)series + 1;
    }
    /* The value as read is scaled, whatever its unit (kw, w, kwh, wh): the
     * same double as a file with every value multiplied would give. A
     * counter's every reading scales, so its differences do too. */
    struct lp_point scaled = *p;
    scaled.value *= r->power_scale;
    struct engine_sample s = ingest_sample_of(&scaled, p->ts_ns);
    struct batch *b = r->filling;
    ARRAY_RESERVE_ONE(b->v, b->n, b->cap);
    b->v[b->n++] = (struct parsed){s.ts_ns, s.value, (uint32_t)series, s.kind == SAMPLE_COUNTER,
                                   r->line_base + p->line - 1};
    return true;
}

/* The next empty batch, once the pricing thread has taken it; NULL when
 * it wants no more. */
static struct batch *next_empty(struct reader *r)
{
    pthread_mutex_lock(&r->lock);
    while (!r->stop && r->written - r->read == BATCHES)
        pthread_cond_wait(&r->changed, &r->lock);
    struct batch *b = r->stop ? NULL : &r->ring[r->written % BATCHES];
    pthread_mutex_unlock(&r->lock);
    if (b) {
        b->n = b->n_fresh = 0;
        b->last = b->refused = b->read_failed = false;
        b->msg[0] = b->read_msg[0] = '\0';
    }
    return b;
}

static void hand_over(struct reader *r)
{
    pthread_mutex_lock(&r->lock);
    r->written++;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

/* When reading has failed by the last batch, it says so (after whatever
 * line that batch refused, as one thread reports both). */
static void note_read_error(struct reader *r, struct batch *b)
{
    if (!ferror(r->in))
        return;
    b->read_failed = true;
    snprintf(b->read_msg, sizeof b->read_msg, "tariffd: could not read the input: %s\n",
             strerror(errno));
}

/* The reading thread: large reads, every complete line parsed, the rest
 * carried; each parse is a batch. */
static void *read_input(void *arg)
{
    struct reader *r = arg;
    size_t cap = 1 << 20, have = 0;
    char *buf = xmalloc(cap);
    r->line_base = 1;
    for (;;) {
        struct batch *b = next_empty(r);
        if (!b)
            break;
        r->filling = b;
        size_t got = fread(buf + have, 1, cap - have, r->in);
        have += got;
        bool eof = got == 0;
        size_t upto = have;
        if (!eof) {
            while (upto > 0 && buf[upto - 1] != '\n')
                upto--;
            if (upto == 0) {
                if (have == cap) { /* a line longer than the buffer */
                    cap *= 2;
                    buf = xrealloc(buf, cap);
                }
                continue; /* the batch stays empty, and is filled next */
            }
        }
        struct lp_stats stats = {0};
        struct lp_error err = {0};
        size_t done = upto;
        bool ok = lp_parse_cached(buf, upto, !eof, r->precision, r->cache, on_point, r, &stats,
                                  &err, &done);
        if (upto > 0 && !ok) {
            const char *reason = strstr(err.msg, ": ");
            snprintf(b->msg, sizeof b->msg, "%s%sline %d: %s\n", r->label ? r->label : "",
                     r->label ? ": " : "", r->line_base + err.line - 1,
                     reason ? reason + 2 : err.msg);
            b->last = b->refused = true;
            note_read_error(r, b);
            hand_over(r);
            break;
        }
        r->line_base += (int)stats.lines;
        if (done == 0 && !eof && have == cap) {
            cap *= 2; /* one point (a string with newlines) longer than the buffer */
            buf = xrealloc(buf, cap);
        }
        memmove(buf, buf + done, have - done);
        have -= done;
        if (eof) {
            b->last = true;
            note_read_error(r, b);
        }
        hand_over(r);
        if (eof)
            break;
    }
    free(buf);
    return NULL;
}

/* Prices batch b's samples; false after saying why a sample was refused. */
static bool price_batch(struct offline_run *o, const struct batch *b, const char *label)
{
    for (size_t i = 0; i < b->n_fresh; i++) {
        const struct new_series *f = &b->fresh[i];
        if (f->series >= o->n_series) {
            size_t n = o->n_series ? o->n_series : 1024;
            while (n <= f->series)
                n *= 2;
            o->series = xrealloc_array(o->series, n, sizeof *o->series);
            o->n_series = n;
        }
        o->series[f->series] = (struct series_seen){ENGINE_NO_METER, f->cluster, f->meter};
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct parsed *p = &b->v[i];
        /* Offline, the clock is the input: the newest timestamp read so far. */
        if (p->ts_ns > o->now_ns)
            o->now_ns = p->ts_ns;
        struct series_seen *seen = &o->series[p->series];
        struct engine_sample s = {seen->cluster, seen->meter,
                                  p->counter ? SAMPLE_COUNTER : SAMPLE_POWER, p->ts_ns, p->value};
        struct error e;
        if (!engine_push_meter(o->engine, &s, seen->handle, o->now_ns, &e)) {
            fprintf(stderr, "%s%sline %d: %.200s\n", label ? label : "", label ? ": " : "", p->line,
                    e.msg);
            return false;
        }
        if (seen->handle == ENGINE_NO_METER)
            seen->handle = engine_meter_handle(o->engine, seen->cluster, seen->meter);
    }
    /* A piece is priced as the daemon prices a request: intervals its
     * late samples reopened close again once their meters let them. */
    engine_batch_done(o->engine, o->now_ns);
    return true;
}

int offline_run_price(struct offline_run *o, FILE *in, enum lp_precision precision,
                      const char *label)
{
    struct reader *r = xcalloc(1, sizeof *r);
    r->in = in;
    r->precision = precision;
    r->label = label;
    r->power_scale = o->power_scale;
    r->cache = lp_cache_new(SIZE_MAX);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    /* Handles are the engine's; series numbers are this reading's. */
    free(o->series);
    o->series = NULL;
    o->n_series = 0;
    /* A piece of 1 MiB gives about 18,000 samples: room for them from
     * the start, rather than each batch growing to it. */
    for (size_t i = 0; i < BATCHES; i++) {
        r->ring[i].cap = 32768;
        r->ring[i].v = xrealloc_array(NULL, r->ring[i].cap, sizeof *r->ring[i].v);
    }
    pthread_t reader;
    int status = 0;
    bool started = pthread_create(&reader, NULL, read_input, r) == 0;
    if (!started) {
        fprintf(stderr, "tariffd: could not start the reading thread\n");
        status = 1;
    }
    for (bool done = status != 0; !done;) {
        pthread_mutex_lock(&r->lock);
        while (r->read == r->written)
            pthread_cond_wait(&r->changed, &r->lock);
        pthread_mutex_unlock(&r->lock);
        const struct batch *b = &r->ring[r->read % BATCHES];
        bool priced = price_batch(o, b, label);
        done = !priced || b->last;
        if (!priced) {
            status = 2;
        } else if (b->refused) {
            fputs(b->msg, stderr);
            status = 2;
        }
        /* A failed read is reported last, and its status wins, even after
         * a line of the last batch was refused. */
        if (b->last && b->read_failed) {
            fputs(b->read_msg, stderr);
            status = 1;
        }
        pthread_mutex_lock(&r->lock);
        r->read++;
        r->stop |= !priced;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
    }
    /* After a refused sample the reader stops at its next piece (a read
     * from a pipe still waits for that piece, or its end). */
    if (started)
        pthread_join(reader, NULL);
    for (size_t i = 0; i < BATCHES; i++) {
        free(r->ring[i].v);
        free(r->ring[i].fresh);
    }
    for (size_t i = 0; i < r->n_series; i++)
        free(r->texts[i]);
    free(r->texts);
    free(r->meters);
    free(r->table);
    lp_cache_free(r->cache);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    free(r);
    if (status == 0) {
        engine_finish(o->engine, o->now_ns);
        statements_sort(&o->statements);
    }
    return status;
}

const struct statements *offline_run_statements(const struct offline_run *o)
{
    return &o->statements;
}

bool offline_run_write(struct offline_run *o, const char *dir)
{
    char billing_header[CSV_LINE_MAX], demand_header[CSV_LINE_MAX];
    csv_billing_header(billing_header);
    csv_demand_header(demand_header);
    return !o->io_error && write_sorted(&o->billing, dir, "billing_rows.csv", billing_header) &&
           write_sorted(&o->demand, dir, "demand_charges.csv", demand_header) &&
           write_statements(&o->statements, dir);
}

void offline_run_free(struct offline_run *o)
{
    if (!o)
        return;
    if (o->billing.tmp)
        fclose(o->billing.tmp);
    if (o->demand.tmp)
        fclose(o->demand.tmp);
    free(o->billing.keys);
    free(o->demand.keys);
    free(o->cluster_rank);
    free(o->series);
    statements_free(&o->statements);
    engine_free(o->engine);
    free(o);
}

int offline_price(const struct config *cfg, FILE *in, const struct offline_options *opt)
{
    struct offline_run *o = offline_run_new(cfg, 1.0, opt->out_dir != NULL);
    if (!o)
        return 1;
    int status = offline_run_price(o, in, opt->precision, NULL);
    if (status == 0) {
        offline_run_print_statements(o);
        putchar('\n');
        offline_run_print_counts(o, NULL);
        if (opt->out_dir && !offline_run_write(o, opt->out_dir))
            status = 1;
    }
    offline_run_free(o);
    return status;
}
