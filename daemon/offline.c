#include "offline.h"

#include "daemon/ingest.h"
#include "storage/csv.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/engine.h"
#include "tariff/statement.h"

#include <errno.h>
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

struct offline {
    const struct config *cfg;
    struct engine *engine;
    struct statements statements;
    size_t *cluster_rank; /* by index in cfg->clusters: position by id */
    bool write_rows;
    struct row_file billing, demand;
    uint64_t quarantined_by_reason[QUARANTINE_REASON_COUNT];
    int64_t now_ns;
    int line_base;
    bool io_error;
};

static size_t rank_of(const struct offline *o, const struct cluster *c)
{
    return o->cluster_rank[c - o->cfg->clusters];
}

static void keep_row(struct offline *o, struct row_file *f, int64_t when, const struct cluster *c,
                     int revision, const char *line, size_t len)
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
    struct offline *o = ctx;
    statements_add_billing(&o->statements, r);
    if (o->write_rows) {
        char line[CSV_LINE_MAX];
        size_t len = csv_billing_row(r, line);
        keep_row(o, &o->billing, r->interval_start_s, r->cluster, r->revision, line, len);
    }
}

static void on_demand(void *ctx, const struct demand_row *r)
{
    struct offline *o = ctx;
    statements_add_demand(&o->statements, r);
    if (o->write_rows) {
        char line[CSV_LINE_MAX];
        size_t len = csv_demand_row(r, line);
        keep_row(o, &o->demand, r->month_day, r->cluster, r->revision, line, len);
    }
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    struct offline *o = ctx;
    (void)s;
    o->quarantined_by_reason[quarantine_reason_parse(reason)]++;
}

static bool on_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct offline *o = ctx;
    /* Like the parser's own errors, line numbers here count from the start
     * of the chunk; offline_price makes them absolute. */
    if (!p->has_ts) {
        err->line = p->line;
        snprintf(err->msg, sizeof err->msg,
                 "line %d: no timestamp (offline pricing needs one on every line)", p->line);
        return false;
    }
    struct engine_sample s = ingest_sample_of(p, p->ts_ns);
    /* Offline, the clock is the input: the newest timestamp read so far. */
    if (s.ts_ns > o->now_ns)
        o->now_ns = s.ts_ns;
    struct error e;
    if (!engine_push(o->engine, &s, o->now_ns, &e)) {
        err->line = p->line;
        snprintf(err->msg, sizeof err->msg, "line %d: %.200s", p->line, e.msg);
        return false;
    }
    return true;
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

static void fen(int64_t cny4, char *buf, size_t size)
{
    decimal_format(statement_round_fen(cny4), 2, buf, size);
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
          "demand_days\n",
          out);
    fputs("tenant,cluster,month,period,kwh,energy_charge\n", by_period);
    for (size_t i = 0; i < s->n; i++) {
        const struct statement *st = &s->v[i];
        char line[CSV_LINE_MAX], v[7][40], month[16];
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
        fen(st->energy_charge_cny4, v[1], sizeof v[1]);
        fen(st->surcharge_cny4, v[2], sizeof v[2]);
        fen(st->demand_charge_cny4, v[3], sizeof v[3]);
        fen(st->subsidy_cny4, v[4], sizeof v[4]);
        fen(st->net_cny4, v[5], sizeof v[5]);
        v[6][0] = '\0'; /* NULL: a whole month */
        if (st->demand_days >= 0)
            snprintf(v[6], sizeof v[6], "%d", (int)st->demand_days);
        fprintf(out, "%s,%s,%s,%s,%s,%s,%s,%s,%s\n", line, month, v[0], v[1], v[2], v[3], v[4],
                v[5], v[6]);
        for (int p = 0; p < PERIOD_COUNT; p++) {
            if (!st->period_seen[p])
                continue;
            decimal_format(st->period_kwh_micro[p], 6, v[0], sizeof v[0]);
            fen(st->period_energy_charge_cny4[p], v[1], sizeof v[1]);
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

static void print_statements(const struct statements *s)
{
    printf("%-10s  %-12s  %-12s  %-14s  %16s  %14s  %12s  %12s  %14s  %14s\n", "month", "tenant",
           "cluster", "province", "kwh", "energy", "surcharge", "demand", "subsidy", "net");
    for (size_t i = 0; i < s->n; i++) {
        const struct statement *st = &s->v[i];
        char month[16], kwh[40], v[5][40];
        civil_format_date(st->month_day, month, sizeof month);
        decimal_format(st->kwh_micro, 6, kwh, sizeof kwh);
        fen(st->energy_charge_cny4, v[0], sizeof v[0]);
        fen(st->surcharge_cny4, v[1], sizeof v[1]);
        fen(st->demand_charge_cny4, v[2], sizeof v[2]);
        fen(st->subsidy_cny4, v[3], sizeof v[3]);
        fen(st->net_cny4, v[4], sizeof v[4]);
        printf("%-10s  %-12s  %-12s  %-14s  %16s  %14s  %12s  %12s  %14s  %14s\n", month,
               st->tenant, st->cluster, st->province, kwh, v[0], v[1], v[2], v[3], v[4]);
    }
}

static int rank_order(const void *a, const void *b, void *ctx)
{
    const struct config *cfg = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return strcmp(cfg->clusters[x].id, cfg->clusters[y].id);
}

int offline_price(const struct config *cfg, FILE *in, const struct offline_options *opt)
{
    struct offline o = {.cfg = cfg, .write_rows = opt->out_dir != NULL, .now_ns = INT64_MIN};
    o.cluster_rank = xcalloc(cfg->n_clusters, sizeof *o.cluster_rank);
    size_t *by_id = xcalloc(cfg->n_clusters, sizeof *by_id);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        by_id[i] = i;
    qsort_r(by_id, cfg->n_clusters, sizeof *by_id, rank_order, (void *)cfg);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        o.cluster_rank[by_id[i]] = i;
    free(by_id);
    if (o.write_rows) {
        o.billing.tmp = tmpfile();
        o.demand.tmp = tmpfile();
        if (!o.billing.tmp || !o.demand.tmp) {
            fprintf(stderr, "tariffd: could not create a temporary file: %s\n", strerror(errno));
            return 1;
        }
    }
    struct engine_sink sink = {&o, on_billing, on_demand, on_quarantine};
    o.engine = engine_new(cfg, &sink);
    engine_caps_recovered(o.engine); /* offline, every cap starts unconsumed */

    /* Read in large chunks; parse every complete line, carry the rest. */
    size_t cap = 1 << 20, have = 0;
    char *buf = xmalloc(cap);
    int status = 0;
    o.line_base = 1;
    for (;;) {
        size_t got = fread(buf + have, 1, cap - have, in);
        have += got;
        bool eof = got == 0;
        size_t upto = have;
        if (!eof) {
            while (upto > 0 && buf[upto - 1] != '\n')
                upto--;
            if (upto == 0) {
                if (have < cap)
                    continue;
                cap *= 2; /* a line longer than the buffer */
                buf = xrealloc(buf, cap);
                continue;
            }
        }
        struct lp_stats stats = {0};
        struct lp_error err = {0};
        size_t done = upto;
        bool ok =
            eof ? lp_parse(buf, upto, opt->precision, on_point, &o, &stats, &err)
                : lp_parse_stream(buf, upto, opt->precision, on_point, &o, &stats, &err, &done);
        if (upto > 0 && !ok) {
            const char *reason = strstr(err.msg, ": ");
            fprintf(stderr, "line %d: %s\n", o.line_base + err.line - 1,
                    reason ? reason + 2 : err.msg);
            status = 2;
            break;
        }
        /* A chunk is priced as the daemon prices a request: intervals its
         * late samples reopened close again once their meters let them. */
        engine_batch_done(o.engine, o.now_ns);
        o.line_base += (int)stats.lines;
        if (done == 0 && !eof && have == cap) {
            cap *= 2; /* one point (a string with newlines) longer than the buffer */
            buf = xrealloc(buf, cap);
        }
        memmove(buf, buf + done, have - done);
        have -= done;
        if (eof)
            break;
    }
    free(buf);
    if (ferror(in)) {
        fprintf(stderr, "tariffd: could not read the input: %s\n", strerror(errno));
        status = 1;
    }

    if (status == 0) {
        engine_finish(o.engine, o.now_ns);
        statements_sort(&o.statements);
        print_statements(&o.statements);
        struct engine_stats st;
        engine_stats(o.engine, &st);
        printf("\n%llu samples priced, %llu duplicates ignored (%llu with another value), "
               "%llu quarantined; %llu interval rows, %llu adjustments, %llu demand rows\n",
               (unsigned long long)st.accepted, (unsigned long long)st.duplicates,
               (unsigned long long)st.conflicts, (unsigned long long)st.quarantined,
               (unsigned long long)st.billing_rows, (unsigned long long)st.adjustment_rows,
               (unsigned long long)st.demand_rows);
        for (int r = 0; r < QUARANTINE_REASON_COUNT; r++)
            if (o.quarantined_by_reason[r])
                fprintf(stderr, "tariffd: %llu samples quarantined: %s\n",
                        (unsigned long long)o.quarantined_by_reason[r],
                        quarantine_reason_name((enum quarantine_reason)r));
        char billing_header[CSV_LINE_MAX], demand_header[CSV_LINE_MAX];
        csv_billing_header(billing_header);
        csv_demand_header(demand_header);
        if (o.write_rows &&
            (o.io_error ||
             !write_sorted(&o.billing, opt->out_dir, "billing_rows.csv", billing_header) ||
             !write_sorted(&o.demand, opt->out_dir, "demand_charges.csv", demand_header) ||
             !write_statements(&o.statements, opt->out_dir)))
            status = 1;
    }
    if (o.billing.tmp)
        fclose(o.billing.tmp);
    if (o.demand.tmp)
        fclose(o.demand.tmp);
    free(o.billing.keys);
    free(o.demand.keys);
    free(o.cluster_rank);
    statements_free(&o.statements);
    engine_free(o.engine);
    return status;
}
