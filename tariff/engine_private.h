/*
 * engine_private: the engine's state, shared by engine.c (the rules) and
 * snapshot.c (its bytes). Nothing outside tariff/ includes this.
 */
#ifndef TARIFF_ENGINE_PRIVATE_H
#define TARIFF_ENGINE_PRIVATE_H

#include "alloc.h"
#include "deadlines.h"
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define NS   1000000000LL
#define NONE INT64_MIN

struct stored_paid {
    const char *programme; /* interned */
    int64_t amount_cny4;
};

/* The money of a closed, not yet final interval: the sum of its revisions. */
struct closed_row {
    int64_t start_s;
    int32_t revision;
    int64_t kwh_micro;
    int64_t energy_charge_cny4;
    int64_t surcharge_cny4;
    int64_t subsidy_cny4;
    int64_t net_cny4;
    int64_t missing_s;
    size_t n_paid;
    struct stored_paid paid[PRICE_MAX_PAID];
};

struct month_state {
    int32_t month_day;
    int64_t start_s, end_s;
    int64_t kwh_micro; /* every row of the month, adjustments included */
    int64_t frozen_max_kw_micro;
    int64_t frozen_max_start_s; /* NONE: no final interval yet */
    int64_t last_row_start_s;
    bool closed;
    bool dirty; /* an interval of this closed month was priced again; run_items
                   prices the month once, after the last such interval */
    int32_t revision;
    int64_t charge_cny4, subsidy_cny4, net_cny4;
    int64_t max_kw_micro, billing_kw_micro; /* of the last pricing */
    size_t n_paid;
    struct stored_paid paid[PRICE_MAX_PAID];
};

struct close_mark {
    int64_t upto_s;
    int64_t at_ns;
};

struct meter_state {
    /* The hash key, "CLUSTER\0METER\0", kept in the struct when short so
     * that a lookup touches one cache line (meter_key, meter_name). */
    char key_small[40];
    char *key_heap; /* the key when it does not fit key_small */
    size_t cluster;
    uint16_t name_offset;
    bool counter;
    bool silent;
    /* The heard list (engine.c, "What a tick looks at"): the meters not
     * silent, by last_arrival_ns; meter index + 1, 0 for none. Here the
     * two fit in what was padding: a meter stays 128 bytes. */
    uint32_t heard_prev, heard_next;
    struct sample_buf buf;
    int64_t first_ns, last_ns;
    int64_t last_arrival_ns;
};

static inline const char *meter_key(const struct meter_state *m)
{
    return m->key_heap ? m->key_heap : m->key_small;
}

static inline const char *meter_name(const struct meter_state *m)
{
    return meter_key(m) + m->name_offset;
}

/* 8 bytes, so a cluster's meter table stays small. */
struct meter_slot {
    uint32_t tag;   /* the upper half of the key's hash */
    uint32_t index; /* meter index + 1; 0: empty */
};

struct cluster_state {
    char *id;
    const struct cluster *cfg; /* NULL when the config no longer has it */
    size_t *meters;
    size_t n_meters, cap_meters;
    struct meter_slot *table; /* open addressing on the meter's name */
    size_t table_size;
    int64_t closed_until_s; /* NONE: nothing closed yet */
    int64_t frozen_until_s; /* NONE: nothing final yet */
    int64_t tariff_from_s;  /* when its first tariff version starts; from the config */
    /* Non-silent meters whose last sample is not past closed_until_s: only
     * when the last of them moves on can the cluster close more, so most
     * samples skip the scan over the cluster's meters. */
    size_t blockers;
    bool blockers_valid;
    uint64_t blockers_tick; /* valid only through the tick they were counted in */
    bool in_tick;           /* in the engine's tick_set */
    int64_t due_at_ns;      /* its earliest entry in the engine's deadlines; INT64_MAX none */
    struct close_mark *marks;
    size_t n_marks, cap_marks;
    struct closed_row *rows; /* sorted by start_s */
    size_t n_rows, cap_rows;
    struct month_state *months; /* sorted by start_s */
    size_t n_months, cap_months;
    /* Closed, not final intervals a late sample changed, sorted: each is
     * priced again once, when it closes again (engine.c, "Reopened
     * intervals"). */
    int64_t *reopened;
    size_t n_reopened, cap_reopened;
    bool listed; /* in the engine's reopened_clusters */
};

/* What one queued close item does. Of a cluster's items at one start_s
 * the interval runs first: a month closes after its last interval. */
enum close_kind {
    CLOSE_INTERVAL, /* price the interval at start_s */
    CLOSE_MONTH,    /* close the month whose last interval is at start_s */
};

struct close_item {
    int64_t start_s;
    size_t cluster;
    enum close_kind kind;
};

/* A call made while the engine waits for the caps (hold.c), in order. */
enum held_kind {
    HELD_PUSH,       /* engine_push that returned true */
    HELD_QUARANTINE, /* engine_quarantine */
    HELD_TICK,       /* engine_tick */
    HELD_FINISH,     /* engine_finish */
    HELD_BATCH,      /* engine_batch_done */
};

struct held_call {
    enum held_kind kind;
    int64_t now_ns; /* PUSH, TICK, FINISH, BATCH */
    /* PUSH and QUARANTINE: the sample, whose cluster, meter (and the
     * quarantine's reason) are at text_at in the hold's text, each ended
     * by a NUL. */
    enum sample_kind sample_kind;
    int64_t ts_ns;
    double value;
    size_t text_at;
};

/* An engine_set_cap_consumed made while waiting: tenant and programme at
 * text_at, each ended by a NUL. */
struct held_cap {
    size_t text_at;
    int32_t year;
    int64_t consumed_cny4;
};

/* What the engine keeps while it waits for the caps. The engine itself
 * goes on as always, to take the same decisions, but with a sink that has
 * no billing or demand: the rows it prices do not know the caps. */
struct hold {
    void *base; /* engine_save of the state when the wait began */
    size_t base_len;
    struct engine_sink sink; /* the real one */
    /* the row counters when the wait began: engine_stats reports them */
    uint64_t billing_rows, adjustment_rows, demand_rows;
    struct held_cap *caps;
    size_t n_caps, cap_caps;
    struct held_call *calls;
    size_t n_calls, cap_calls;
    char *text;
    size_t text_len, text_cap;
};

struct engine {
    const struct config *cfg;
    struct engine_sink sink;
    int64_t interval_s;
    struct meter_state *meters;
    size_t n_meters, cap_meters;
    struct sample_mem *samples; /* the meters' sample buffers */
    struct cluster_state *clusters;
    size_t n_clusters, cap_clusters;
    uint32_t *cluster_table; /* open addressing on the id: index + 1, 0 empty */
    size_t cluster_table_size;
    struct caps caps;
    char **names; /* interned programme names */
    size_t n_names, cap_names;
    struct close_item *items;
    size_t n_items, cap_items;
    size_t *reopened_clusters; /* clusters with reopened intervals (listed) */
    size_t n_reopened_clusters, cap_reopened_clusters;
    /* What a tick looks at (engine.c): the heard list's ends (meter index
     * + 1, 0 for none), the clusters touched since the last tick, their
     * deadlines, and whether the next tick must look at everything. */
    uint32_t heard_head, heard_tail;
    bool heard_stale; /* the list is to be built from the meters */
    bool tick_all;
    size_t *tick_set;
    size_t n_tick_set, cap_tick_set;
    struct deadlines due;
    uint64_t ticks;     /* counts close passes; blockers_tick against it */
    size_t tick_looked; /* clusters the last tick looked at (for the tests) */
    struct engine_stats stats;
    bool caps_known;   /* engine_caps_recovered, or loaded knowing them */
    struct hold *hold; /* while engine_waiting_for_caps; else NULL */
};

/* engine_new and engine_load without looking at the caps (hold_update):
 * the engine as created, or as the bytes say. */
struct engine *engine_alloc(const struct config *cfg, const struct engine_sink *sink);
struct engine *snapshot_read(const struct config *cfg, const struct engine_sink *sink,
                             const void *bytes, size_t len, struct error *err);

/* The current snapshot format, and engine_save in any format from 1 to it
 * (the older ones only for tests that load them). */
#define SNAPSHOT_VERSION 3
void *snapshot_write(const struct engine *e, size_t *len, int version);

/* hold.c. Starts the wait when engine_waiting_for_caps(e) became true,
 * ends it (replaying what it held) when it became false. */
void hold_update(struct engine *e);
/* Appends a call to e->hold (non-NULL). reason: HELD_QUARANTINE only. */
void hold_call(struct engine *e, enum held_kind kind, const struct engine_sample *s,
               const char *reason, int64_t now_ns);
void hold_cap(struct engine *e, const char *tenant, const char *programme, int32_t year,
              int64_t consumed_cny4);
/* Appends n bytes of text (NUL included) and returns where they start. */
size_t hold_text(struct hold *h, const char *text, size_t n);
void hold_free(struct hold *h);

/* engine.c's own, for reprice.c. */
struct engine_lines { /* what diff_lines makes: a row's subsidy_lines and programme list */
    size_t n;
    struct paid_line v[2 * PRICE_MAX_PAID];
    char programme[PRICE_MAX_PAID * 64];
};
struct closed_row *engine_find_row(struct cluster_state *cs, int64_t start_s);
struct month_state *engine_find_month(struct cluster_state *cs, int64_t start_s);
/* The index of a cluster's state; SIZE_MAX when the engine has none. */
size_t engine_find_cluster(const struct engine *e, const char *id);
int32_t engine_local_year(const struct cluster *c, int64_t ts_s);
int64_t engine_kw_of(int64_t kwh_micro, int64_t per_hour);
void engine_release_stored(struct engine *e, const struct cluster *c, int32_t year,
                           const struct stored_paid *paid, size_t n);
void engine_diff_lines(struct engine *e, const struct stored_paid *old, size_t n_old,
                       const struct subsidy *new, struct engine_lines *out);
void engine_store_paid(struct engine *e, const struct subsidy *s, struct stored_paid *paid,
                       size_t *n);
void engine_price_month(struct engine *e, struct cluster_state *cs, struct month_state *ms);
/* A month's demand charge over its days in service (engine.c, month_demand). */
struct month_demand {
    struct demand_charge dc;
    bool prorated;
    int32_t days_in_service;
    size_t n_runs;
    struct demand_days runs[DEMAND_MAX_RUNS];
};
void engine_month_demand(const struct cluster *c, const struct tariff_version *v,
                         const struct month_state *ms, int64_t max_kw, struct month_demand *out);

/* The money of an interval of kwh_micro under version v, consuming the
 * caps: what a first close, a reprice and a backfill all charge. */
struct interval_money {
    int32_t year;
    enum period period;
    int64_t price_micro_cny, share_micro;
    int64_t energy_cny4, surcharge_cny4, net_cny4;
    struct subsidy sub;
};
void engine_interval_money(struct engine *e, const struct cluster *c,
                           const struct tariff_version *v, int64_t start_s, int64_t kwh_micro,
                           struct interval_money *out);
/* The cluster's month that start_s is in, created empty if need be. */
struct month_state *engine_month_for(struct cluster_state *cs, int64_t start_s);
/* Closes the month whose last interval starts at last_start_s and prices
 * it, unless it closed already. */
void engine_close_month_at(struct engine *e, struct cluster_state *cs, int64_t last_start_s);
/* The start of the interval of the cluster's earliest sample (INT64_MAX:
 * it has none). */
int64_t engine_first_start(const struct engine *e, const struct cluster_state *cs);

/* A stable copy of a programme name; equal names give equal pointers. */
const char *engine_intern(struct engine *e, const char *name);
/* The index of a cluster's state, created empty on first use. */
size_t engine_cluster_index(struct engine *e, const char *id);
/* A new meter of a cluster, registered in the hash table. */
struct meter_state *engine_add_meter(struct engine *e, const char *cluster, const char *meter,
                                     bool counter);

#endif
