#include "daemon/correction.h"

#include "daemon/clock.h"
#include "daemon/ledger_read.h"
#include "daemon/log.h"
#include "daemon/server_private.h"
#include "daemon/textbuf.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What one cluster-month changed. */
struct chunk_effect {
    char *cluster;
    int32_t month_day;
    struct reprice_effect e;
};

struct correction {
    struct server *s;
    struct correction_args args;
    correction_answer answer;
    void *arg;
    int32_t watch_from, watch_to; /* the months of the range, as month days */
    uint64_t reloads;             /* s->metrics.reloads_ok when the read started */
    uint64_t changed_seq;         /* the last record with a row of a watched month (0: none) */
    int reads;
    struct ledger_read *read; /* while reading */
    struct event *ready;      /* made active by the reader's thread */
    struct commit_wait *wait; /* while PostgreSQL commits the rows made */
    uint64_t last_seq;        /* the last record journaled */
    size_t journaled;         /* cluster-months */
    uint64_t rows;
    char *report;
};

void correction_request(struct server *s, struct ledger_read_request *req)
{
    req->conninfo = xstrdup(s->conninfo);
    req->schema = xstrdup(s->cfg->postgres.schema);
    req->wait_seq = s->last_rows_seq;
    req->pg = s->pg;
}

struct engine *correction_dry_engine(struct server *s, struct error *err)
{
    size_t len;
    void *state = engine_save(s->engine, &len);
    struct engine_sink none = {0};
    struct engine *e = engine_load(s->cfg, &none, state, len, err);
    free(state);
    return e;
}

struct commit_wait {
    struct server *s;
    uint64_t seq;
    struct timespec started;
    struct event *poll;
    commit_done done;
    void *arg;
};

static void on_commit_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct commit_wait *w = arg;
    struct pg_status st;
    pg_status(w->s->pg, &st);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (st.committed >= w->seq || now.tv_sec - w->started.tv_sec >= CORRECTION_COMMIT_S) {
        event_del(w->poll);
        w->done(w->arg, &st);
    }
}

struct commit_wait *commit_wait_start(struct server *s, uint64_t seq, commit_done done, void *arg)
{
    struct commit_wait *w = xcalloc(1, sizeof *w);
    *w = (struct commit_wait){.s = s, .seq = seq, .done = done, .arg = arg};
    clock_gettime(CLOCK_MONOTONIC, &w->started);
    w->poll = event_new(s->base, -1, EV_PERSIST, on_commit_poll, w);
    struct timeval every = {0, 50 * 1000};
    event_add(w->poll, &every);
    return w;
}

void commit_wait_cancel(struct commit_wait *w)
{
    if (!w)
        return;
    event_free(w->poll);
    free(w);
}

void correction_args_free(struct correction_args *a)
{
    for (size_t i = 0; i < a->n_clusters; i++)
        free(a->clusters[i]);
    free(a->clusters);
    memset(a, 0, sizeof *a);
}

static void finish(struct correction *c, int status, const char *text)
{
    struct server *s = c->s;
    s->correction = NULL;
    if (c->read)
        ledger_read_abandon(c->read);
    if (c->ready)
        event_free(c->ready);
    commit_wait_cancel(c->wait);
    c->answer(c->arg, status, text);
    correction_args_free(&c->args);
    free(c->report);
    free(c);
}

const char *correction_refusal(struct server *s, char *buf, size_t size)
{
    const char *why = server_refuses_writes(s, clock_wall_ns());
    if (why)
        return why;
    struct pg_status st;
    pg_status(s->pg, &st);
    if (!st.connected) {
        snprintf(buf, size, "PostgreSQL is not connected%s%.300s", st.last_error[0] ? ": " : "",
                 st.last_error);
        return buf;
    }
    if (engine_waiting_for_caps(s->engine))
        return "the yearly caps are being read back from PostgreSQL; retry once they are";
    /* A refused row is missing from the sums a correction starts from, and
     * resubmitted after it would collide with the correction's revision. */
    if (st.dead_letters_unresolved) {
        snprintf(buf, size,
                 "%" PRIu64 " ledger rows are in dead_letters, unresolved: resubmit or resolve "
                 "them first",
                 st.dead_letters_unresolved);
        return buf;
    }
    return NULL;
}

static void on_ready(evutil_socket_t fd, short what, void *arg);

/* From the reader's thread. */
static void read_done(void *arg)
{
    struct correction *c = arg;
    event_active(c->ready, 0, 0);
}

static void start_read(struct correction *c)
{
    struct server *s = c->s;
    struct ledger_read_request req = {
        .clusters = xcalloc(c->args.n_clusters, sizeof *req.clusters),
        .n_clusters = c->args.n_clusters,
    };
    correction_request(s, &req);
    for (size_t i = 0; i < c->args.n_clusters; i++) {
        const struct cluster *cl = config_find_cluster(s->cfg, c->args.clusters[i]);
        req.clusters[i] = ledger_read_months(cl, c->args.from_day, c->args.to_day);
    }
    c->reads++;
    c->reloads = s->metrics.reloads_ok;
    c->changed_seq = 0;
    c->read = ledger_read_start(&req, read_done, c);
}

bool correction_start(struct server *s, struct correction_args *args, correction_answer answer,
                      void *arg, int *status, char *why, size_t why_size)
{
    const char *refused;
    if (s->correction || s->history) {
        *status = 409;
        snprintf(why, why_size, "another correction is running; retry once it has answered");
    } else if ((refused = correction_refusal(s, why, why_size)) != NULL) {
        *status = 503;
        if (refused != why)
            snprintf(why, why_size, "%s", refused);
    } else {
        struct correction *c = xcalloc(1, sizeof *c);
        c->s = s;
        c->args = *args;
        memset(args, 0, sizeof *args);
        c->answer = answer;
        c->arg = arg;
        c->watch_from = civil_month_first(c->args.from_day);
        c->watch_to = civil_month_first(c->args.to_day - 1);
        c->ready = event_new(s->base, -1, 0, on_ready, c);
        s->correction = c;
        start_read(c);
        return true;
    }
    correction_args_free(args);
    return false;
}

void correction_note_row(struct server *s, const char *cluster, int32_t month_day)
{
    struct correction *c = s->correction;
    if (!c || month_day < c->watch_from || month_day > c->watch_to)
        return;
    size_t lo = 0, hi = c->args.n_clusters;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(c->args.clusters[mid], cluster);
        if (cmp == 0) {
            c->changed_seq = s->next_seq + 1; /* the record the row goes with */
            return;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
}

void correction_stop(struct server *s)
{
    struct correction *c = s->correction;
    if (!c)
        return;
    char why[300];
    if (c->wait)
        snprintf(why, sizeof why,
                 "shutting down: the correction is applied and journaled; its rows reach "
                 "PostgreSQL before the daemon stops or after it starts again");
    else
        snprintf(why, sizeof why,
                 "shutting down: nothing was applied; run it again after the "
                 "restart");
    finish(c, 503, why);
}

void correction_suspend(struct server *s)
{
    struct correction *c = s->correction;
    if (!c)
        return;
    char why[800];
    snprintf(why, sizeof why, "%s; %s", s->suspended_why,
             c->wait ? "the correction may be applied in part: run it again once writes are taken"
                     : "nothing was applied");
    finish(c, 503, why);
}

/* ------------------------------------------------------------------ */
/* The report                                                          */

static void report_line(struct textbuf *t, int width, const char *cluster, const char *month,
                        const struct reprice_effect *e)
{
    char kwh[48], energy[48], surcharge[48], demand[48], subsidy[48], net[48];
    decimal_format(e->kwh_micro, 6, kwh, sizeof kwh);
    textbuf_printf(t,
                   "%-*s  %-7s  %9" PRIu64 "  %7" PRIu64 "  %18s  %12" PRIu64 "  %11" PRIu64
                   "  %15s  %13s  %15s  %13s  %13s\n",
                   width, cluster, month, e->intervals, e->skipped, kwh, e->billing_rows,
                   e->demand_rows, textbuf_signed(e->energy_charge_cny4, 4, energy, sizeof energy),
                   textbuf_signed(e->surcharge_cny4, 4, surcharge, sizeof surcharge),
                   textbuf_signed(e->demand_charge_cny4, 4, demand, sizeof demand),
                   textbuf_signed(e->subsidy_cny4, 4, subsidy, sizeof subsidy),
                   textbuf_signed(e->net_cny4, 4, net, sizeof net));
}

/* The report (malloc'd): a line per cluster-month, then the totals. A
 * dry run's has a first line saying so and is otherwise the same. */
static char *report(const struct correction *c, const struct chunk_effect *fx, size_t n,
                    struct reprice_effect *total)
{
    struct textbuf t = {0};
    char from[16], to[16];
    civil_format_date(c->args.from_day, from, sizeof from);
    civil_format_date(c->args.to_day, to, sizeof to);
    if (c->args.dry_run)
        textbuf_printf(&t, "dry run: nothing written\n");
    textbuf_printf(&t, "reprice from %s to %s (local dates, to excluded) of ", from, to);
    if (c->args.all_clusters)
        textbuf_printf(&t, "every cluster (%zu)", c->args.n_clusters);
    else
        for (size_t i = 0; i < c->args.n_clusters; i++)
            textbuf_printf(&t, "%s%s", i ? ", " : "cluster ", c->args.clusters[i]);
    textbuf_printf(&t, ": %zu cluster-month%s\n", n, n == 1 ? "" : "s");
    int width = (int)strlen("cluster");
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(fx[i].cluster) > width)
            width = (int)strlen(fx[i].cluster);
    textbuf_printf(&t, "%-*s  %-7s  %9s  %7s  %18s  %12s  %11s  %15s  %13s  %15s  %13s  %13s\n",
                   width, "cluster", "month", "intervals", "skipped", "kwh", "billing_rows",
                   "demand_rows", "energy_charge", "surcharge", "demand_charge", "subsidy", "net");
    *total = (struct reprice_effect){0};
    for (size_t i = 0; i < n; i++) {
        char month[16];
        civil_format_date(fx[i].month_day, month, sizeof month);
        month[7] = '\0'; /* YYYY-MM */
        report_line(&t, width, fx[i].cluster, month, &fx[i].e);
        reprice_effect_add(total, &fx[i].e);
    }
    report_line(&t, width, "total", "", total);
    return t.p;
}

static void log_report(const struct correction *c, size_t n, const struct reprice_effect *total)
{
    char from[16], to[16], net[48], subsidy[48];
    civil_format_date(c->args.from_day, from, sizeof from);
    civil_format_date(c->args.to_day, to, sizeof to);
    log_msg(LOG_INFO,
            "reprice%s from %s to %s, %zu cluster%s: %zu cluster-months, %" PRIu64
            " intervals priced again (%" PRIu64 " skipped), %" PRIu64 " billing and %" PRIu64
            " demand rows, subsidy %s, net %s CNY",
            c->args.dry_run ? " (dry run)" : "", from, to, c->args.n_clusters,
            c->args.n_clusters == 1 ? "" : "s", n, total->intervals, total->skipped,
            total->billing_rows, total->demand_rows,
            textbuf_signed(total->subsidy_cny4, 4, subsidy, sizeof subsidy),
            textbuf_signed(total->net_cny4, 4, net, sizeof net));
}

/* ------------------------------------------------------------------ */
/* Applying                                                            */

static void on_committed(void *arg, const struct pg_status *st)
{
    struct correction *c = arg;
    struct server *s = c->s;
    char why[800];
    if (s->suspended) {
        snprintf(why, sizeof why,
                 "%s; the correction may be applied in part: run it again once writes are taken",
                 s->suspended_why);
        finish(c, 503, why);
        return;
    }
    if (st->committed >= c->last_seq) {
        finish(c, 200, c->report);
        return;
    }
    snprintf(why, sizeof why,
             "the correction is applied and journaled (%zu cluster-month%s, %" PRIu64
             " rows), but PostgreSQL has not committed its rows within %d s (%" PRIu64
             " rows queued%s%.200s); they are written once it can",
             c->journaled, c->journaled == 1 ? "" : "s", c->rows, CORRECTION_COMMIT_S, st->queued,
             st->connected ? "" : ", not connected: ", st->connected ? "" : st->last_error);
    finish(c, 503, why);
}

/* Applies the chunks read: to a copy of the engine for a dry run, else to
 * the engine, journaling each cluster-month that made rows. */
static void apply(struct correction *c, struct ledger_read_result *res)
{
    struct server *s = c->s;
    struct engine *e = s->engine;
    struct error err;
    if (c->args.dry_run) {
        e = correction_dry_engine(s, &err);
        if (!e) {
            char why[400];
            snprintf(why, sizeof why, "the engine could not be copied for a dry run: %s", err.msg);
            finish(c, 500, why);
            return;
        }
    }
    struct chunk_effect *fx = xcalloc(res->n_chunks, sizeof *fx);
    struct record_buf record = {0};
    size_t done = 0;
    bool ok = true;
    for (; done < res->n_chunks && ok; done++) {
        const struct reprice_chunk *ch = &res->chunks[done].chunk;
        fx[done].cluster = res->chunks[done].cluster;
        fx[done].month_day = ch->month_day;
        /* Applied from the record's bytes, as a replay applies them. */
        ingest_encode_reprice(ch, &record);
        ok = ingest_apply_reprice(e, record.p, record.len, &fx[done].e, &err);
        if (ok && !c->args.dry_run && s->rows.n) {
            c->rows += s->rows.n;
            c->journaled++;
            c->last_seq = worker_submit_record(s, RECORD_REPRICE, &record);
        }
    }
    record_buf_free(&record);
    if (c->args.dry_run)
        engine_free(e);
    if (!ok) {
        char month[16], why[600];
        civil_format_date(fx[done - 1].month_day, month, sizeof month);
        month[7] = '\0';
        snprintf(why, sizeof why, "cluster %s, month %s: %s; %zu cluster-month%s before it %s",
                 fx[done - 1].cluster, month, err.msg, done - 1, done - 1 == 1 ? "" : "s",
                 c->args.dry_run ? "priced in the dry run"
                                 : "applied (run it again once the cause "
                                   "is fixed)");
        log_msg(LOG_ERR, "reprice: %s", why);
        free(fx);
        finish(c, 500, why);
        return;
    }
    struct reprice_effect total;
    c->report = report(c, fx, res->n_chunks, &total);
    log_report(c, res->n_chunks, &total);
    free(fx);
    if (!c->args.dry_run) {
        s->metrics.reprices++;
        s->metrics.reprice_rows += c->rows;
    }
    if (!c->last_seq) {
        finish(c, 200, c->report);
        return;
    }
    c->wait = commit_wait_start(s, c->last_seq, on_committed, c);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct correction *c = arg;
    struct server *s = c->s;
    struct ledger_read *read = c->read;
    c->read = NULL;
    struct ledger_read_result *res = ledger_read_result(read);
    char buf[512];
    const char *why;
    /* A reload while the ledger was read may have dropped a cluster asked
     * for: said before anything reads the config for it again. */
    const char *gone = NULL;
    for (size_t i = 0; i < c->args.n_clusters && !gone; i++)
        if (!config_find_cluster(s->cfg, c->args.clusters[i]))
            gone = c->args.clusters[i];
    if (!res->ok) {
        log_msg(LOG_WARNING, "reprice: %s", res->error);
        finish(c, 503, res->error);
    } else if ((why = correction_refusal(s, buf, sizeof buf)) != NULL) {
        finish(c, 503, why);
    } else if (gone) {
        snprintf(buf, sizeof buf, "cluster \"%.200s\" is not in the config", gone);
        finish(c, 400, buf);
    } else if (c->changed_seq > res->seen_seq || s->metrics.reloads_ok != c->reloads) {
        if (c->reads < CORRECTION_READS) {
            log_msg(LOG_INFO, "reprice: the ledger changed while it was read; reading it again");
            start_read(c);
        } else {
            snprintf(buf, sizeof buf,
                     "the ledger kept changing while it was read (%d reads); run it again",
                     c->reads);
            finish(c, 503, buf);
        }
    } else {
        apply(c, res);
    }
    ledger_read_free(read);
}
