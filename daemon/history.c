#include "daemon/history.h"

#include "daemon/clock.h"
#include "daemon/ledger_read.h"
#include "daemon/log.h"
#include "daemon/server_private.h"
#include "daemon/textbuf.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/eligibility.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS 1000000000LL

enum phase {
    MEASURING,       /* a backfill taking lines */
    READING_SAMPLES, /* a requeue reading quarantined samples */
    READING_KEYS,    /* reading what the ledger has of the clusters measured */
    WAITING_COMMIT,  /* applied and journaled: PostgreSQL commits its rows */
    READING_LEFT,    /* committed: reading the left months to price their demand again */
    WAITING_LEFT,    /* their demand adjustments journaled: PostgreSQL commits them */
};

/* A requeued sample as measured: whether the measuring quarantined it
 * again, else its interval, which the plan may bill. */
struct requeued {
    int64_t id;
    const struct cluster *cluster;
    int64_t ts_ns;
    bool again;
};

/* A month whose demand row was final when its intervals were backfilled
 * (BACKFILL_LEFT): its demand is priced again from the ledger once the
 * backfilled rows are committed. */
struct left_month {
    char *cluster;
    int32_t month_day;
};

/* Samples that stay quarantined, per reason. */
struct reason_count {
    char *reason;
    uint64_t n;
};

struct history {
    struct server *s;
    bool requeue;
    uint64_t id;
    bool dry_run;
    enum phase phase;
    enum lp_precision precision;
    const struct config *cfg; /* what it measures under: s->cfg when it began */
    struct engine *measure;
    struct backfill_sums *sums;
    int64_t now_ns; /* the newest timestamp read: the measuring engine's clock */
    uint64_t lines, samples, others;
    int line_base;
    char *carry; /* the start of a point a piece cut (a newline in a string) */
    size_t carry_len;
    bool quarantined; /* the sample just pushed was */
    bool stale;       /* a reload freed the config it measured under */
    struct backfill_quarantined *q;
    size_t n_q, cap_q;
    struct reason_count *reasons;
    size_t n_reasons;
    /* requeue */
    struct requeue_args args;
    struct requeued *rq;
    size_t n_rq;
    uint64_t read_samples, unusable;
    /* commit */
    struct event *idle;
    struct ledger_read *read;
    struct event *ready;
    struct commit_wait *wait; /* while PostgreSQL commits what it journaled */
    correction_answer answer;
    void *arg;
    uint64_t last_seq, rows;
    char *report;
    struct left_month *left;
    size_t n_left;
    struct reprice_effect left_effect; /* of pricing their demand again */
    uint64_t left_rows;
};

static uint64_t sessions; /* for session ids */

static void on_ready(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------------ */
/* Life                                                                */

static void drop(struct history *h)
{
    struct server *s = h->s;
    if (s->history == h)
        s->history = NULL;
    if (h->read)
        ledger_read_abandon(h->read);
    if (h->idle)
        event_free(h->idle);
    if (h->ready)
        event_free(h->ready);
    commit_wait_cancel(h->wait);
    if (h->measure)
        engine_free(h->measure);
    backfill_sums_free(h->sums);
    for (size_t i = 0; i < h->n_q; i++) {
        free((char *)h->q[i].s.cluster);
        free((char *)h->q[i].s.meter);
        free((char *)h->q[i].reason);
    }
    free(h->q);
    for (size_t i = 0; i < h->n_reasons; i++)
        free(h->reasons[i].reason);
    free(h->reasons);
    free(h->rq);
    free(h->args.reason);
    free(h->carry);
    free(h->report);
    for (size_t i = 0; i < h->n_left; i++)
        free(h->left[i].cluster);
    free(h->left);
    free(h);
}

/* What measuring holds points into the config: let go of it. */
static void forget_measuring(struct history *h)
{
    if (h->measure)
        engine_free(h->measure);
    h->measure = NULL;
    backfill_sums_free(h->sums);
    h->sums = NULL;
    free(h->rq);
    h->rq = NULL;
    h->n_rq = 0;
    h->cfg = NULL;
}

/* Answers the command waiting (a commit or a requeue) and drops h. */
static void finish(struct history *h, int status, const char *text)
{
    if (h->answer)
        h->answer(h->arg, status, text); /* text may be h's report */
    drop(h);
}

static void set(struct history_answer *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set(struct history_answer *out, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out->status = status;
    vsnprintf(out->text, sizeof out->text, fmt, ap);
    va_end(ap);
}

static const char *name(const struct history *h)
{
    return h->requeue ? "requeue" : "backfill";
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct history *h = arg;
    log_msg(LOG_WARNING,
            "backfill: session %" PRIu64 " idle for %d s, dropped; nothing was written", h->id,
            HISTORY_IDLE_S);
    drop(h);
}

static void touch(struct history *h)
{
    struct timeval t = {HISTORY_IDLE_S, 0};
    event_add(h->idle, &t);
}

static void note_reason(struct history *h, const char *reason)
{
    for (size_t i = 0; i < h->n_reasons; i++)
        if (strcmp(h->reasons[i].reason, reason) == 0) {
            h->reasons[i].n++;
            return;
        }
    h->reasons = xrealloc(h->reasons, (h->n_reasons + 1) * sizeof *h->reasons);
    h->reasons[h->n_reasons++] = (struct reason_count){xstrdup(reason), 1};
}

/* The measuring engine's sink: what it quarantines goes to the ledger
 * with the rest (and is counted for the report). */
static void on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason)
{
    struct history *h = ctx;
    h->quarantined = true;
    ARRAY_RESERVE_ONE(h->q, h->n_q, h->cap_q);
    struct backfill_quarantined *q = &h->q[h->n_q++];
    q->s = *smp;
    q->s.cluster = xstrdup(smp->cluster);
    q->s.meter = xstrdup(smp->meter);
    q->reason = xstrdup(reason);
    note_reason(h, reason);
}

static void on_energy(void *ctx, const struct cluster *c, int64_t start_s, int64_t kwh_micro,
                      int64_t missing_s)
{
    struct history *h = ctx;
    backfill_sums_energy(h->sums, c, start_s, kwh_micro, missing_s);
}

static struct history *create(struct server *s, bool requeue, bool dry_run)
{
    struct history *h = xcalloc(1, sizeof *h);
    h->s = s;
    h->requeue = requeue;
    h->dry_run = dry_run;
    h->id = ((uint64_t)clock_wall_ns() << 8) ^ ++sessions;
    h->cfg = s->cfg;
    h->now_ns = INT64_MIN;
    h->line_base = 1;
    h->sums = backfill_sums_new(s->cfg);
    struct engine_sink sink = {.ctx = h, .quarantine = on_quarantine, .energy = on_energy};
    h->measure = engine_new(s->cfg, &sink);
    engine_caps_recovered(h->measure); /* it consumes none */
    h->ready = event_new(s->base, -1, 0, on_ready, h);
    s->history = h;
    return h;
}

/* Whether a correction can start; *out says why not. */
static bool may_start(struct server *s, struct history_answer *out)
{
    char buf[512];
    const char *why;
    if (s->correction || s->history) {
        set(out, 409, "another correction is running; retry once it has answered");
        return false;
    }
    if ((why = correction_refusal(s, buf, sizeof buf)) != NULL) {
        set(out, 503, "%s", why);
        return false;
    }
    return true;
}

static struct history *session(struct server *s, uint64_t id, struct history_answer *out)
{
    struct history *h = s->history;
    if (!h || h->requeue || h->id != id) {
        set(out, 404,
            "no backfill session %" PRIu64 " (it ended: dropped after %d s idle, by a reload or "
            "a restart; nothing was written)",
            id, HISTORY_IDLE_S);
        return NULL;
    }
    if (h->phase != MEASURING) {
        set(out, 409, "backfill session %" PRIu64 " is committing", id);
        return NULL;
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* Measuring                                                           */

/* Measures one sample; false (why set) for one the engine refuses. */
static bool measure_one(struct history *h, const struct engine_sample *smp, char *why, size_t size)
{
    if (smp->ts_ns > h->now_ns)
        h->now_ns = smp->ts_ns;
    h->quarantined = false;
    h->samples++;
    /* History is past; a sample beyond max_future of the wall clock is not
     * history, whatever the input's own clock says. */
    int64_t future_ns = h->cfg->daemon.max_future_s * NS;
    int64_t wall = clock_wall_ns();
    if (wall < INT64_MAX - future_ns && smp->ts_ns > wall + future_ns) {
        engine_quarantine(h->measure, smp, quarantine_reason_name(QUARANTINE_BEYOND_MAX_FUTURE));
        return true;
    }
    struct error err;
    if (!engine_push(h->measure, smp, h->now_ns, &err)) {
        snprintf(why, size, "%.180s", err.msg);
        return false;
    }
    if (!h->quarantined)
        backfill_sums_count(h->sums, config_find_cluster(h->cfg, smp->cluster), smp->ts_ns);
    return true;
}

static bool on_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct history *h = ctx;
    err->line = p->line;
    if (!p->has_ts) {
        snprintf(err->msg, sizeof err->msg,
                 "line %d: no timestamp (history needs one on every line)", p->line);
        return false;
    }
    struct engine_sample smp = ingest_sample_of(p, p->ts_ns);
    char why[200];
    if (!measure_one(h, &smp, why, sizeof why)) {
        snprintf(err->msg, sizeof err->msg, "line %d: %s", p->line, why);
        return false;
    }
    return true;
}

/* Parses buf[0..len) (final: the end of input) into the measuring engine.
 * False with *out the 400 when a line is refused. */
static bool parse(struct history *h, const char *buf, size_t len, bool final,
                  struct history_answer *out)
{
    size_t upto = len;
    if (!final)
        while (upto > 0 && buf[upto - 1] != '\n')
            upto--;
    struct lp_stats st = {0};
    struct lp_error err = {0};
    size_t done = upto;
    bool ok = upto == 0 ||
              (final ? lp_parse(buf, upto, h->precision, on_point, h, &st, &err)
                     : lp_parse_stream(buf, upto, h->precision, on_point, h, &st, &err, &done));
    if (!ok) {
        const char *reason = strstr(err.msg, ": ");
        set(out, 400, "line %d: %s; nothing was written", h->line_base + err.line - 1,
            reason ? reason + 2 : err.msg);
        return false;
    }
    engine_batch_done(h->measure, h->now_ns);
    h->line_base += (int)st.lines;
    h->lines += st.lines;
    h->others += st.other_points;
    char *rest = len > done ? xmalloc(len - done) : NULL;
    if (rest)
        memcpy(rest, buf + done, len - done);
    free(h->carry);
    h->carry = rest;
    h->carry_len = len - done;
    return true;
}

void history_begin(struct server *s, enum lp_precision precision, bool dry_run,
                   struct history_answer *out)
{
    if (!may_start(s, out))
        return;
    struct history *h = create(s, false, dry_run);
    h->precision = precision;
    h->idle = event_new(s->base, -1, 0, on_idle, h);
    touch(h);
    log_msg(LOG_INFO, "backfill: session %" PRIu64 " begins%s", h->id, dry_run ? " (dry run)" : "");
    set(out, 200, "session %" PRIu64, h->id);
}

void history_lines(struct server *s, uint64_t id, const char *body, size_t len,
                   struct history_answer *out)
{
    struct history *h = session(s, id, out);
    if (!h)
        return;
    touch(h);
    bool ok;
    if (h->carry_len) {
        char *buf = xmalloc(h->carry_len + len);
        memcpy(buf, h->carry, h->carry_len);
        memcpy(buf + h->carry_len, body, len);
        ok = parse(h, buf, h->carry_len + len, false, out);
        free(buf);
    } else {
        ok = parse(h, body, len, false, out);
    }
    if (!ok) {
        log_msg(LOG_WARNING, "backfill: session %" PRIu64 " refused: %s", h->id, out->text);
        drop(h);
        return;
    }
    set(out, 200, "lines %" PRIu64 " samples %" PRIu64, h->lines, h->samples);
}

void history_abort(struct server *s, uint64_t id, struct history_answer *out)
{
    struct history *h = session(s, id, out);
    if (!h)
        return;
    log_msg(LOG_INFO, "backfill: session %" PRIu64 " aborted; nothing was written", h->id);
    drop(h);
    set(out, 200, "aborted; nothing was written");
}

/* ------------------------------------------------------------------ */
/* Applying                                                            */

bool history_apply_record(struct server *s, struct engine *e, const void *payload, size_t len,
                          struct reprice_effect *effects, struct error *err)
{
    struct backfill_record r;
    if (!ingest_decode_backfill(payload, len, &r, err))
        return false;
    bool ok = ingest_apply_backfill(e, &r, effects, err);
    if (ok && e == s->engine)
        for (size_t i = 0; i < r.n_released; i++)
            ledger_add_release(&s->rows, r.released[i], r.plan.now_ns);
    backfill_record_free(&r);
    return ok;
}

static void read_left(struct history *h);
static void finish_left(struct history *h, const char *failed);

static void on_committed(void *arg, const struct pg_status *st)
{
    struct history *h = arg;
    commit_wait_cancel(h->wait);
    h->wait = NULL;
    if (st->committed < h->last_seq) {
        char why[800];
        snprintf(why, sizeof why,
                 "the %s is applied and journaled (%" PRIu64
                 " rows), but PostgreSQL has not committed them within %d s (%" PRIu64
                 " rows queued%s%.200s); they are written once it can",
                 name(h), h->phase == WAITING_LEFT ? h->left_rows : h->rows, CORRECTION_COMMIT_S,
                 st->queued,
                 st->connected ? "" : ", not connected: ", st->connected ? "" : st->last_error);
        finish(h, 503, why);
    } else if (h->phase == WAITING_COMMIT && h->n_left) {
        read_left(h);
    } else if (h->phase == WAITING_LEFT) {
        finish_left(h, NULL);
    } else {
        finish(h, 200, h->report);
    }
}

static void report_line(struct textbuf *t, int width, const char *cluster, const char *month,
                        const char *fate, const struct reprice_effect *e)
{
    char kwh[48], energy[48], surcharge[48], demand[48], subsidy[48], net[48];
    decimal_format(e->kwh_micro, 6, kwh, sizeof kwh);
    decimal_format(e->energy_charge_cny4, 4, energy, sizeof energy);
    decimal_format(e->surcharge_cny4, 4, surcharge, sizeof surcharge);
    textbuf_signed(e->demand_charge_cny4, 4, demand, sizeof demand);
    textbuf_signed(e->subsidy_cny4, 4, subsidy, sizeof subsidy);
    textbuf_signed(e->net_cny4, 4, net, sizeof net);
    textbuf_printf(t,
                   "%-*s  %-7s  %-6s  %9" PRIu64 "  %18s  %12" PRIu64 "  %11" PRIu64
                   "  %15s  %13s  %15s  %13s  %15s\n",
                   width, cluster, month, fate, e->intervals, kwh, e->billing_rows, e->demand_rows,
                   energy, surcharge, demand, subsidy, net);
}

static char *report(const struct history *h, const struct backfill_plan *p,
                    const struct reprice_effect *fx, const struct backfill_taken *taken,
                    uint64_t released, struct reprice_effect *total)
{
    struct textbuf t = {0};
    if (h->dry_run)
        textbuf_printf(&t, "dry run: nothing written\n");
    if (h->requeue) {
        textbuf_printf(&t,
                       "requeue: %" PRIu64 " quarantined samples read; %" PRIu64
                       " released, %" PRIu64 " stay quarantined\n",
                       h->read_samples, released, h->read_samples - released);
        if (h->unusable)
            textbuf_printf(&t,
                           "  %" PRIu64 " cannot be measured (no cluster, meter, time or value, "
                           "or a cluster not in the config, or refused)\n",
                           h->unusable);
    } else {
        textbuf_printf(&t,
                       "backfill: %" PRIu64 " lines, %" PRIu64 " samples measured, %" PRIu64
                       " lines of other measurements ignored\n",
                       h->lines, h->samples, h->others);
    }
    if (h->n_q)
        textbuf_printf(&t, "quarantined: %zu samples\n", h->n_q);
    for (size_t i = 0; i < h->n_reasons; i++)
        textbuf_printf(&t, "  %" PRIu64 " %s\n", h->reasons[i].n, h->reasons[i].reason);
    textbuf_printf(&t,
                   "left out: %" PRIu64 " intervals (%" PRIu64
                   " samples) the ledger or the live data has already\n",
                   taken->intervals, taken->samples);
    int width = (int)strlen("cluster");
    for (size_t i = 0; i < p->n_months; i++)
        if ((int)strlen(p->months[i].cluster) > width)
            width = (int)strlen(p->months[i].cluster);
    textbuf_printf(&t, "%-*s  %-7s  %-6s  %9s  %18s  %12s  %11s  %15s  %13s  %15s  %13s  %15s\n",
                   width, "cluster", "month", "demand", "intervals", "kwh", "billing_rows",
                   "demand_rows", "energy_charge", "surcharge", "demand_charge", "subsidy", "net");
    *total = (struct reprice_effect){0};
    bool left = false;
    for (size_t i = 0; i < p->n_months; i++) {
        char month[16];
        civil_format_date(p->months[i].month_day, month, sizeof month);
        month[7] = '\0';
        report_line(&t, width, p->months[i].cluster, month, backfill_fate_name(p->months[i].fate),
                    &fx[i]);
        reprice_effect_add(total, &fx[i]);
        left |= p->months[i].fate == BACKFILL_LEFT;
    }
    report_line(&t, width, "total", "", "", total);
    if (left && h->dry_run)
        textbuf_printf(&t, "demand \"left\": the month's demand row is final; once the backfilled "
                           "rows are in the ledger its demand is priced again over them\n");
    return t.p;
}

/* Plans against the keys read, journals and applies (or, for a dry run,
 * applies to a copy of the engine), and answers once committed. */
static void apply(struct history *h, const struct ledger_read_result *res)
{
    struct server *s = h->s;
    struct backfill_ledger_keys *keys = xcalloc(res->n_keys + 1, sizeof *keys);
    for (size_t i = 0; i < res->n_keys; i++) {
        const struct ledger_keys *k = &res->keys[i];
        keys[i] = (struct backfill_ledger_keys){
            k->id,           k->interval_starts, k->n_interval_starts, k->row_months,
            k->n_row_months, k->demand_months,   k->n_demand_months};
    }
    struct backfill_plan plan;
    struct backfill_taken taken;
    backfill_plan_build(h->sums, s->engine, keys, res->n_keys, clock_wall_ns(), &plan, &taken);
    free(keys);
    int64_t *released = xcalloc(h->n_rq + 1, sizeof *released);
    size_t n_released = 0;
    int64_t interval_s = h->cfg->daemon.interval_s;
    for (size_t i = 0; i < h->n_rq; i++) {
        const struct requeued *r = &h->rq[i];
        if (r->again)
            continue;
        int64_t start_s = civil_floor_div(civil_floor_div(r->ts_ns, NS), interval_s) * interval_s;
        if (backfill_plan_has(&plan, r->cluster->id, start_s))
            released[n_released++] = r->id;
    }
    struct record_buf record = {0};
    ingest_encode_backfill(&plan, h->q, h->n_q, released, n_released, &record);
    free(released);
    struct reprice_effect *fx = xcalloc(plan.n_months + 1, sizeof *fx);
    struct error err;
    bool ok = true;
    char why[700];
    if (record.len > JOURNAL_MAX_PAYLOAD) {
        snprintf(why, sizeof why,
                 "the %s is too large for one journal record (%zu bytes, at most %u): split its "
                 "input by time; nothing was written",
                 name(h), record.len, JOURNAL_MAX_PAYLOAD);
        finish(h, 413, why);
        goto out;
    }
    if (h->dry_run) {
        struct engine *copy = correction_dry_engine(s, &err);
        ok = copy && history_apply_record(s, copy, record.p, record.len, fx, &err);
        engine_free(copy);
    } else {
        ok = history_apply_record(s, s->engine, record.p, record.len, fx, &err);
        if (ok && (plan.n_intervals || h->n_q || n_released)) {
            h->rows = s->rows.n;
            h->last_seq = worker_submit_record(s, RECORD_BACKFILL, &record);
        }
    }
    if (!ok) {
        snprintf(why, sizeof why, "the engine refused the %s: %s; nothing was written", name(h),
                 err.msg);
        log_msg(LOG_ERR, "%s: %s", name(h), why);
        finish(h, 500, why);
        goto out;
    }
    for (size_t i = 0; i < plan.n_months && !h->dry_run; i++)
        if (plan.months[i].fate == BACKFILL_LEFT) {
            h->left = xrealloc(h->left, (h->n_left + 1) * sizeof *h->left);
            h->left[h->n_left++] =
                (struct left_month){xstrdup(plan.months[i].cluster), plan.months[i].month_day};
        }
    struct reprice_effect total;
    h->report = report(h, &plan, fx, &taken, n_released, &total);
    char net[48];
    log_msg(LOG_INFO,
            "%s%s: %" PRIu64 " samples, %zu intervals billed in %zu cluster-months, %" PRIu64
            " left out, %zu quarantined, %zu released, net %s CNY",
            name(h), h->dry_run ? " (dry run)" : "", h->samples, plan.n_intervals, plan.n_months,
            taken.intervals, h->n_q, n_released,
            textbuf_signed(total.net_cny4, 4, net, sizeof net));
    if (!h->dry_run) {
        s->metrics.backfills++;
        s->metrics.backfill_rows += h->rows;
        s->metrics.released += n_released;
    }
    if (!h->last_seq) {
        finish(h, 200, h->report);
        goto out;
    }
    h->phase = WAITING_COMMIT;
    forget_measuring(h);
    h->wait = commit_wait_start(s, h->last_seq, on_committed, h);
out:
    free(fx);
    record_buf_free(&record);
    backfill_plan_free(&plan);
}

static void read_done(void *arg)
{
    struct history *h = arg;
    event_active(h->ready, 0, 0);
}

static void start_read(struct history *h, struct ledger_read_request *req, enum phase phase)
{
    struct server *s = h->s;
    correction_request(s, req);
    h->phase = phase;
    h->read = ledger_read_start(req, read_done, h);
}

/* The ledger's keys of every cluster measured, over its whole months. */
static void read_keys(struct history *h)
{
    struct ledger_read_request req = {.kind = LEDGER_READ_BACKFILL_KEYS};
    const struct config *cfg = h->cfg;
    req.clusters = xcalloc(cfg->n_clusters + 1, sizeof *req.clusters);
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct cluster *c = &cfg->clusters[i];
        int64_t from_s, to_s;
        if (!backfill_sums_span(h->sums, c, &from_s, &to_s))
            continue;
        int32_t offset = cluster_utc_offset_s(c);
        req.clusters[req.n_clusters++] =
            ledger_read_months(c, civil_month_first(civil_local_day(from_s, offset)),
                               civil_month_next(civil_local_day(to_s - 1, offset)));
    }
    start_read(h, &req, READING_KEYS);
}

/* The measuring of a commit or a requeue is done: closes everything. */
static void measured(struct history *h)
{
    engine_finish(h->measure, h->now_ns);
    backfill_sums_finish(h->sums, h->measure);
    read_keys(h);
}

/* A quarantined row as a sample to measure; false when it cannot be one. */
static bool requeue_one(struct history *h, const struct quarantined *q)
{
    const struct cluster *c = q->cluster ? config_find_cluster(h->cfg, q->cluster) : NULL;
    if (!c || !q->meter || !q->has_ts || !q->has_value) {
        h->unusable++;
        return false;
    }
    struct engine_sample smp = {
        c->id, q->meter, q->kind && strcmp(q->kind, "counter") == 0 ? SAMPLE_COUNTER : SAMPLE_POWER,
        q->ts_ns, q->value};
    char why[200];
    if (!measure_one(h, &smp, why, sizeof why)) {
        h->unusable++;
        note_reason(h, why);
        return false;
    }
    h->rq[h->n_rq++] = (struct requeued){q->id, c, q->ts_ns, h->quarantined};
    return true;
}

/* ------------------------------------------------------------------ */
/* The left months                                                     */

/* The answer once the left months' demand is priced again, or could not
 * be: the backfill stands either way. */
static void finish_left(struct history *h, const char *failed)
{
    struct textbuf t = {0};
    textbuf_printf(&t, "%s", h->report);
    char demand[48], subsidy[48], net[48];
    if (failed) {
        textbuf_printf(&t,
                       "the demand of the months left was not priced again (%s): run `tariffd "
                       "reprice` over them:",
                       failed);
        for (size_t i = 0; i < h->n_left; i++) {
            char month[16];
            civil_format_date(h->left[i].month_day, month, sizeof month);
            month[7] = '\0';
            textbuf_printf(&t, " %s %s", h->left[i].cluster, month);
        }
        textbuf_printf(&t, "\n");
    } else {
        textbuf_printf(&t,
                       "the demand of the %zu month%s left, priced again over the backfilled "
                       "intervals: %" PRIu64 " demand rows, demand_charge %s, subsidy %s, net %s\n",
                       h->n_left, h->n_left == 1 ? "" : "s", h->left_effect.demand_rows,
                       textbuf_signed(h->left_effect.demand_charge_cny4, 4, demand, sizeof demand),
                       textbuf_signed(h->left_effect.subsidy_cny4, 4, subsidy, sizeof subsidy),
                       textbuf_signed(h->left_effect.net_cny4, 4, net, sizeof net));
    }
    if (failed)
        log_msg(LOG_WARNING, "backfill: the demand of its left months was not priced again: %s",
                failed);
    finish(h, 200, t.p);
    free(t.p);
}

/* The backfill's rows are committed: the ledger's left months (their
 * intervals and final demand rows) are read, as `tariffd reprice` reads
 * them, to price their demand again. */
static void read_left(struct history *h)
{
    struct server *s = h->s;
    struct ledger_read_request req = {.kind = LEDGER_READ_REPRICE};
    req.clusters = xcalloc(h->n_left, sizeof *req.clusters);
    for (size_t i = 0; i < h->n_left; i++) {
        const struct cluster *c = config_find_cluster(s->cfg, h->left[i].cluster);
        if (!c) {
            ledger_read_request_free(&req);
            finish_left(h, "its cluster is no longer in the config");
            return;
        }
        req.clusters[req.n_clusters++] =
            ledger_read_months(c, h->left[i].month_day, civil_month_next(h->left[i].month_day));
    }
    start_read(h, &req, READING_LEFT);
}

/* Prices each left month's demand again from the ledger's intervals (none
 * of them priced again: only counted for the month's peak), journaled as
 * reprice records, and waits for PostgreSQL to commit the adjustments. */
static void price_left(struct history *h, const struct ledger_read_result *res)
{
    struct server *s = h->s;
    char buf[512];
    const char *why = !res->ok   ? res->error
                      : h->stale ? "the config was reloaded meanwhile"
                                 : correction_refusal(s, buf, sizeof buf);
    if (why) {
        finish_left(h, why);
        return;
    }
    struct record_buf record = {0};
    uint64_t last = 0;
    struct error err;
    for (size_t i = 0; i < res->n_chunks; i++) {
        struct reprice_record *r = &res->chunks[i];
        if (!r->chunk.month.has_row)
            continue;
        for (size_t k = 0; k < r->chunk.n_intervals; k++)
            r->intervals[k].in_range = false;
        ingest_encode_reprice(&r->chunk, &record);
        if (!ingest_apply_reprice(s->engine, record.p, record.len, &h->left_effect, &err)) {
            record_buf_free(&record);
            finish_left(h, err.msg);
            return;
        }
        if (s->rows.n) {
            h->left_rows += s->rows.n;
            last = worker_submit_record(s, RECORD_REPRICE, &record);
        }
    }
    record_buf_free(&record);
    s->metrics.reprice_rows += h->left_rows;
    if (!last) {
        finish_left(h, NULL);
        return;
    }
    h->last_seq = last;
    h->phase = WAITING_LEFT;
    h->wait = commit_wait_start(s, last, on_committed, h);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct history *h = arg;
    struct server *s = h->s;
    struct ledger_read *read = h->read;
    h->read = NULL;
    struct ledger_read_result *res = ledger_read_result(read);
    char buf[512];
    const char *why;
    if (h->phase == READING_LEFT) {
        price_left(h, res);
    } else if (!res->ok) {
        log_msg(LOG_WARNING, "%s: %s", name(h), res->error);
        snprintf(buf, sizeof buf, "%.480s; nothing was written", res->error);
        finish(h, 503, buf);
    } else if (h->stale) {
        snprintf(buf, sizeof buf,
                 "the config was reloaded during the %s; nothing was written: run it again",
                 name(h));
        finish(h, 503, buf);
    } else if ((why = correction_refusal(s, buf, sizeof buf)) != NULL) {
        finish(h, 503, why);
    } else if (h->phase == READING_SAMPLES) {
        h->read_samples = res->n_quarantined;
        h->rq = xcalloc(res->n_quarantined + 1, sizeof *h->rq);
        for (size_t i = 0; i < res->n_quarantined; i++) {
            requeue_one(h, &res->quarantined[i]);
            if (i % 4096 == 4095)
                engine_batch_done(h->measure, h->now_ns);
        }
        engine_batch_done(h->measure, h->now_ns);
        measured(h);
    } else {
        apply(h, res);
    }
    ledger_read_free(read);
}

bool history_commit(struct server *s, uint64_t id, correction_answer answer, void *arg,
                    struct history_answer *out)
{
    struct history *h = session(s, id, out);
    if (!h)
        return false;
    char buf[512];
    const char *why = correction_refusal(s, buf, sizeof buf);
    if (why) {
        set(out, 503, "%s; the session stays open: commit again", why);
        return false;
    }
    if (h->carry_len && !parse(h, h->carry, h->carry_len, true, out)) {
        drop(h);
        return false;
    }
    event_del(h->idle);
    h->answer = answer;
    h->arg = arg;
    measured(h);
    return true;
}

bool history_requeue(struct server *s, struct requeue_args *args, correction_answer answer,
                     void *arg, struct history_answer *out)
{
    if (!may_start(s, out)) {
        free(args->reason);
        args->reason = NULL;
        return false;
    }
    struct history *h = create(s, true, args->dry_run);
    h->args = *args;
    memset(args, 0, sizeof *args);
    h->answer = answer;
    h->arg = arg;
    struct ledger_read_request req = {
        .kind = LEDGER_READ_QUARANTINED,
        .reason = h->args.reason ? xstrdup(h->args.reason) : NULL,
        .from_ns = h->args.from_ns,
        .to_ns = h->args.to_ns,
    };
    start_read(h, &req, READING_SAMPLES);
    return true;
}

void history_config_changed(struct server *s)
{
    struct history *h = s->history;
    if (!h || h->phase == WAITING_COMMIT)
        return; /* applied: done with the config */
    if (h->phase != MEASURING) {
        /* Reading the ledger: the read ends as it would, then says so. */
        forget_measuring(h);
        h->stale = true;
        return;
    }
    log_msg(LOG_WARNING, "backfill: session %" PRIu64 " dropped by the reload; nothing was written",
            h->id);
    drop(h);
}

static void stop(struct server *s, const char *why, bool journal_failed)
{
    struct history *h = s->history;
    if (!h)
        return;
    char text[900];
    if (h->phase == READING_LEFT || h->phase == WAITING_LEFT)
        snprintf(text, sizeof text,
                 "%s: the %s is applied and committed; the demand of the months it left may not "
                 "be priced again: run `tariffd reprice` over them",
                 why, name(h));
    else if (h->phase == WAITING_COMMIT && journal_failed)
        snprintf(text, sizeof text,
                 "%s; the %s may not have reached the journal: run it again once writes are "
                 "taken (what the ledger has by then is left out)",
                 why, name(h));
    else if (h->phase == WAITING_COMMIT)
        snprintf(text, sizeof text,
                 "%s: the %s is applied and journaled; its rows reach PostgreSQL once it can take "
                 "them",
                 why, name(h));
    else
        snprintf(text, sizeof text, "%s: nothing was written; run the %s again", why, name(h));
    finish(h, 503, text);
}

void history_stop(struct server *s)
{
    stop(s, "shutting down", false);
}

void history_suspend(struct server *s)
{
    stop(s, s->suspended_why, true);
}
