/*
 * engine: the incremental metering and pricing engine (docs/design.md
 * sections 4 and 5).
 *
 * Samples are pushed one at a time in arrival order; rows come out through
 * the sink as intervals and months close. Time is always a parameter: every
 * call that may close something takes the wall clock `now_ns` (offline, the
 * largest timestamp read so far), so the same sequence of calls always gives
 * the same rows — the daemon journals its calls and replays them.
 *
 * State, all of it serialisable (engine_save / engine_load):
 *  - per meter: its samples, kept until every interval they touch is final
 *    (closed more than late_window ago), its first and last timestamp, its
 *    last arrival (wall clock) and whether it is silent (no sample for
 *    grace);
 *  - per cluster: how far its intervals are closed (closed_until_s) and
 *    final (frozen_until_s), the money of each closed interval that can
 *    still be adjusted, and its open or adjustable months;
 *  - the yearly caps consumed, per tenant, programme and local year, and
 *    whether they are known (caps_known).
 *
 * Waiting for the caps: a daemon started on an empty state_dir reads back
 * from the ledger what the yearly caps have consumed, and until
 * engine_caps_recovered() no capped subsidy can be priced. Meanwhile, when
 * the config in force has a capped programme (engine_waiting_for_caps),
 * the engine takes pushes and ticks as always (the same duplicates,
 * conflicts and quarantines, at the same moments) but emits no billing,
 * demand or adjustment row: it keeps every call since the wait began, with
 * its samples, and engine_caps_recovered() replays them from the state the
 * wait began in, with the caps set. The rows are then exactly those of an
 * engine that had the caps before the wait: the same amounts, cap order
 * and revisions, and the same state after. Memory grows with the calls
 * kept; the daemon bounds it by its journal backlog limit (max_backlog),
 * since every call kept is a journal record not yet covered by a
 * checkpoint. A reload during the wait prices every call kept under the
 * config in force when they are replayed, as a replay of the journal
 * would.
 *
 * The engine holds a pointer to the config; engine_set_config() swaps it
 * (reload). Rows handed to the sink point into the engine and the config:
 * copy what you keep. Nothing here does I/O.
 */
#ifndef TARIFF_ENGINE_H
#define TARIFF_ENGINE_H

#include "config.h"
#include "errors.h"
#include "meter.h"
#include "price.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sample_kind { SAMPLE_POWER, SAMPLE_COUNTER };

struct engine_sample {
    const char *cluster;
    const char *meter;
    enum sample_kind kind;
    int64_t ts_ns;
    double value; /* kW (power) or kWh (counter), finite, >= 0 */
};

/* What one programme paid on a row (for an adjustment: the change). */
struct paid_line {
    const char *programme;
    int64_t amount_cny4;
};

struct billing_row {
    const struct cluster *cluster;
    int64_t interval_start_s;
    int64_t interval_end_s;
    int32_t month_day; /* first day of the local month, as a day number */
    int32_t year;      /* local year, for the caps */
    int revision;      /* 0: kind interval; 1, 2, ...: adjustment */
    enum period period;
    int64_t kwh_micro;
    int64_t price_micro_cny;
    int64_t surcharge_rate_micro_cny;
    int64_t energy_charge_cny4;
    int64_t surcharge_cny4;
    int64_t subsidy_cny4;
    int64_t net_cny4;
    int64_t domestic_share_micro;
    const char *programme; /* comma list of those that paid; NULL when none */
    const char *tariff_version;
    int64_t missing_s;
    size_t n_lines;
    const struct paid_line *lines; /* subsidy_lines of this row */
};

/* In a prorated month (docs/design.md section 5), a run of consecutive
 * days in service that had one monthly charge: it adds days/30 of it. */
struct demand_days {
    int32_t from_day; /* its first local day */
    int32_t days;
    int64_t billing_kw_micro;
    int64_t monthly_charge_cny4;
};

#define DEMAND_MAX_RUNS 31 /* a month has at most 31 days */

struct demand_row {
    const struct cluster *cluster;
    int32_t month_day;
    int32_t year;
    int revision; /* 0: kind month; 1, 2, ...: adjustment */
    enum demand_basis basis;
    int64_t max_kw_micro;
    int64_t max_interval_start_s;
    int64_t billing_kw_micro;
    int64_t charge_cny4;
    int64_t subsidy_cny4;
    int64_t net_cny4;
    const char *programme;
    const char *tariff_version;
    /* How the charge was computed: a whole month (prorated false), or a
     * month the cluster entered or left service or changed its billed
     * capacity or contract in, charged by its days in service. */
    bool prorated;
    int32_t days_in_service;
    size_t n_runs;
    const struct demand_days *runs; /* in day order */
    size_t n_lines;
    const struct paid_line *lines;
};

/* Why a sample is quarantined. Each reason's name is the text the sink
 * gets, and the ledger keeps it word for word (quarantined_samples.reason). */
enum quarantine_reason {
    QUARANTINE_NO_TARIFF_VERSION, /* before the first version of its site's tariff */
    QUARANTINE_BEYOND_MAX_FUTURE, /* more than max_future ahead of the clock */
    QUARANTINE_PAST_LATE_WINDOW,  /* in, or changing, an interval already final */
    QUARANTINE_OUT_OF_SERVICE,    /* before its cluster's service_from or after service_until */
    QUARANTINE_REFUSED,           /* engine_quarantine: its caller's text says why */
    QUARANTINE_REASON_COUNT
};

/* The text of a reason. A refused sample's own text is its caller's; the
 * name of QUARANTINE_REFUSED only stands for all of them. */
const char *quarantine_reason_name(enum quarantine_reason r);

/* The reason a sink's text is the name of; any other text (a caller's,
 * through engine_quarantine) is QUARANTINE_REFUSED. */
enum quarantine_reason quarantine_reason_parse(const char *text);

struct engine_sink {
    void *ctx;
    void (*billing)(void *ctx, const struct billing_row *row);
    void (*demand)(void *ctx, const struct demand_row *row);
    /* A sample that cannot be billed: reason says why, as
     * quarantine_reason_name() or engine_quarantine's text. */
    void (*quarantine)(void *ctx, const struct engine_sample *s, const char *reason);
    /* Set only for an engine that measures and does not price (a
     * backfill's, tariff/backfill.h): each interval that closes, or closes
     * again, gives its energy here, and no billing or demand row is made
     * nor cap consumed. A later call for an interval replaces an earlier. */
    void (*energy)(void *ctx, const struct cluster *c, int64_t start_s, int64_t kwh_micro,
                   int64_t missing_s);
};

struct engine_stats {
    uint64_t accepted;
    uint64_t duplicates; /* same meter and timestamp, same value */
    uint64_t conflicts;  /* same meter and timestamp, another value: first wins */
    uint64_t quarantined;
    uint64_t billing_rows;
    uint64_t adjustment_rows;
    uint64_t demand_rows;
    uint64_t late_samples;       /* samples that changed closed intervals */
    uint64_t intervals_reopened; /* closed intervals reopened by them */
    size_t meters;
    size_t samples_kept;
    bool waiting_for_caps; /* engine_waiting_for_caps */
    size_t held_calls;     /* pushes and ticks kept for engine_caps_recovered */
};

struct engine;

/* A new engine, empty, with the caps not known: it waits for
 * engine_caps_recovered() when cfg has a capped programme. */
struct engine *engine_new(const struct config *cfg, const struct engine_sink *sink);
void engine_free(struct engine *e);

/* Swaps in a new config (a reload). Closed rows are not re-priced; later
 * adjustments price under it. Clusters no longer in it keep their state.
 * A config that brings the first capped programme while the caps are not
 * known starts the wait; one without any ends it (the calls kept run). */
void engine_set_config(struct engine *e, const struct config *cfg);

/* Whether s can be pushed: its value is in range, its cluster exists, and
 * its meter does not switch between power and counter. Changes nothing;
 * err says why not. Tells also whether the meter is new (a batch checks
 * that a new meter does not switch kind within itself). */
enum engine_verdict { ENGINE_REFUSED, ENGINE_NEW_METER, ENGINE_KNOWN_METER };
enum engine_verdict engine_judge(const struct engine *e, const struct engine_sample *s,
                                 struct error *err);

/* Pushes one sample. May emit rows. Returns false, changing nothing, for a
 * sample engine_judge refuses (err says why). */
bool engine_push(struct engine *e, const struct engine_sample *s, int64_t now_ns,
                 struct error *err);

/* A meter's handle: its index, stable for the engine's life (meters are
 * never removed), so a sample judged can be pushed without looking its
 * meter up again (the lookup is most of a sample's cost). */
#define ENGINE_NO_METER SIZE_MAX

/* engine_judge, and *meter the handle of s's meter (ENGINE_NO_METER when
 * it is new or refused). */
enum engine_verdict engine_judge_meter(const struct engine *e, const struct engine_sample *s,
                                       struct error *err, size_t *meter);

/* The handle of cluster's meter, ENGINE_NO_METER when the engine has none
 * (yet). */
size_t engine_meter_handle(const struct engine *e, const char *cluster, const char *meter);

/* engine_judge_meter for a sample of the meter whose handle is `meter`
 * (known to this engine: s names it): ENGINE_KNOWN_METER or
 * ENGINE_REFUSED, without looking the meter up. */
enum engine_verdict engine_judge_handle(const struct engine *e, const struct engine_sample *s,
                                        size_t meter, struct error *err);

/* The configured cluster of the meter whose handle is `meter`; NULL when
 * the config no longer has it. */
const struct cluster *engine_meter_cluster(const struct engine *e, size_t meter);

/* Whether `meter` is the handle of cluster's meter `name` in this engine
 * (false for a handle it never gave): a handle remembered elsewhere is
 * checked against the names before it is trusted. */
bool engine_meter_is(const struct engine *e, size_t meter, const char *cluster, const char *name);

/* Asks memory for the state of the meter whose handle is `meter`, which
 * a sample will soon need (any value is safe: a handle the engine never
 * gave is ignored). */
void engine_prefetch_meter(const struct engine *e, size_t meter);

/* engine_push for a sample whose meter handle engine_judge_meter gave on
 * this engine (ENGINE_NO_METER: looked up, as engine_push does). */
bool engine_push_meter(struct engine *e, const struct engine_sample *s, size_t meter,
                       int64_t now_ns, struct error *err);

/* The samples of one request are all pushed. A late sample does not price
 * the closed intervals it changes at once: it reopens them, and each closes
 * again by the rules of a first close (every meter of its cluster that is
 * not silent has data past its end) at the end of a request, at a tick or
 * at engine_finish, so a burst of late samples makes at most one adjustment
 * per interval per request (docs/design.md section 4). */
void engine_batch_done(struct engine *e, int64_t now_ns);

/* Quarantines a sample the engine cannot take (e.g. replayed for a
 * cluster a reload removed), so it is kept with its reason, not lost: a
 * QUARANTINE_REFUSED whose text is `reason`. */
void engine_quarantine(struct engine *e, const struct engine_sample *s, const char *reason);

/* The wall clock moved: meters silent for grace stop holding intervals
 * open (reopened ones too), months end, intervals become final (a reopened
 * one is priced first). */
void engine_tick(struct engine *e, int64_t now_ns);

/* The end of offline input: every meter counts as silent, every interval
 * and month with data closes. */
void engine_finish(struct engine *e, int64_t now_ns);

void engine_stats(const struct engine *e, struct engine_stats *out);

/* How many meters the clusters of tenant t have (meters are never removed,
 * so this only grows; it survives restarts with the meters themselves). */
size_t engine_tenant_meters(const struct engine *e, const struct tenant *t);

/* What a tenant's programme consumed of its yearly cap in a local year, as
 * the ledger's subsidy_lines sum it (read back by storage/pg.c, journaled
 * as a record by daemon/ingest.c). */
struct cap_consumed {
    char tenant[64];
    char programme[64];
    int32_t year;
    int64_t consumed_cny4;
};

/* Sets what a tenant's programme has consumed of its cap in a local year:
 * for a daemon started without a checkpoint, which recovers the caps from
 * the ledger's subsidy_lines. */
void engine_set_cap_consumed(struct engine *e, const char *tenant, const char *programme,
                             int32_t year, int64_t consumed_cny4);

/* The caps are all set (engine_set_cap_consumed) or none was consumed
 * (offline pricing, a fresh ledger): the closes that waited for them run
 * now, in the order they would have run, and later ones run as they come. */
void engine_caps_recovered(struct engine *e);

/* Whether the caps are known: engine_caps_recovered() was called, or the
 * state was loaded from a snapshot of an engine that knew them. */
bool engine_caps_known(const struct engine *e);

/* Whether closing waits for the caps: they are not known and the config in
 * force has a programme with a yearly cap. Without one nothing waits. */
bool engine_waiting_for_caps(const struct engine *e);

/* The whole state as bytes (malloc'd, *len set), and back. engine_load
 * fails (NULL, err set) on bytes it did not write. A waiting engine's
 * bytes keep the calls it holds, and it loads still waiting. Bytes of the
 * format before caps_known (version 1) load with the caps known: a
 * checkpoint was only ever written once they were. */
void *engine_save(const struct engine *e, size_t *len);
struct engine *engine_load(const struct config *cfg, const struct engine_sink *sink,
                           const void *bytes, size_t len, struct error *err);

#endif
