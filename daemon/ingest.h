/*
 * ingest: a write request's body becomes one journal record, and a journal
 * record becomes engine pushes — the same code live and in replay, so a
 * replay pushes exactly what the live daemon pushed.
 *
 * ingest_parse validates the whole body before anything is accepted (a
 * request is atomic): every line parses, every cluster exists and belongs
 * to the authenticated tenant, no meter switches between power and counter
 * (against the engine and within the batch). The first offending line
 * decides the status. On success the record holds every `power` sample,
 * with timestamps (a line without one takes the time of receipt, truncated
 * to the precision) and values in kW or kWh.
 *
 * Record payload (host byte order, read back on the same machine):
 *   i64 now_ns, u32 n, then n x {u16 len, cluster, u16 len, meter, u8 kind,
 *   i64 ts_ns, f64 value}.
 */
#ifndef DAEMON_INGEST_H
#define DAEMON_INGEST_H

#include "daemon/lineproto.h"
#include "daemon/loader.h"
#include "tariff/backfill.h"
#include "tariff/config.h"
#include "tariff/engine.h"
#include "tariff/reprice.h"

#include <stddef.h>
#include <stdint.h>

enum ingest_status {
    INGEST_OK,
    INGEST_INVALID,   /* 400 */
    INGEST_FORBIDDEN, /* 403 */
};

/* Journal record types. */
enum {
    RECORD_SAMPLES = 1,
    RECORD_TICK = 2,
    RECORD_CAPS = 3,
    RECORD_CONFIG = 4,
    RECORD_REPRICE = 5,
    RECORD_BACKFILL = 6
};

struct record_buf {
    unsigned char *p;
    size_t len, cap;
};

struct ingest_result {
    enum ingest_status status;
    char msg[256];      /* "line N: reason" when not OK */
    size_t samples;     /* power samples in the record */
    size_t other_lines; /* points of other measurements, ignored */
};

/* Per sample of a record, its meter's handle in the engine it was parsed
 * against (ENGINE_NO_METER for a new meter), for ingest_apply_meters. The
 * caller owns it and may reuse it for the next request. */
struct ingest_meters {
    size_t *v;
    size_t n, cap;
};

void ingest_meters_free(struct ingest_meters *m);

/* The engine's sample for a point: kW or kWh (w and wh divided by 1000),
 * power or counter, the point's timestamp or default_ts_ns. Pointers into
 * p, valid while p is. The one place the field names meet the engine. */
static inline struct engine_sample ingest_sample_of(const struct lp_point *p, int64_t default_ts_ns)
{
    bool watts = p->field == LP_FIELD_W || p->field == LP_FIELD_WH;
    return (struct engine_sample){
        .cluster = p->cluster,
        .meter = p->meter,
        .kind = p->field == LP_FIELD_KW || p->field == LP_FIELD_W ? SAMPLE_POWER : SAMPLE_COUNTER,
        .ts_ns = p->has_ts ? p->ts_ns : default_ts_ns,
        .value = watts ? p->value / 1000 : p->value,
    };
}

/* Parses body for tenant t into out (cleared first); meters (NULL: not
 * wanted) receives each sample's meter handle. */
void ingest_parse(const struct config *cfg, const struct engine *e, const struct tenant *t,
                  const char *body, size_t len, enum lp_precision precision, int64_t now_ns,
                  struct record_buf *out, struct ingest_meters *meters, struct ingest_result *res);

/* A hash of cluster and meter together (FNV-1a over the cluster, a byte
 * 0xff and the meter), for tables keyed by the pair. */
uint64_t ingest_series_hash(const char *cluster, const char *meter);

/* How many series keys the daemon's cache for ingest_parse_cached holds:
 * twice the meters the tenants may have (their max_meters), so a fleet's
 * keys fit with room for a change of tags, while keys made up to fill
 * memory get no further (lp_cache_new bounds it to a million). */
size_t ingest_cache_keys(const struct config *cfg);

/* ingest_parse with a series cache (lp_parse_cached; NULL: none), whose
 * memos are meter handles: a line of a key seen before skips the parse of
 * its tags and the lookups of its cluster and meter. A remembered handle
 * is checked against the line's names before it is used, so a cache
 * filled against another engine costs lookups, never a wrong meter. The
 * same record, result and handles as ingest_parse. */
void ingest_parse_cached(const struct config *cfg, const struct engine *e, const struct tenant *t,
                         const char *body, size_t len, enum lp_precision precision, int64_t now_ns,
                         struct lp_cache *cache, struct record_buf *out,
                         struct ingest_meters *meters, struct ingest_result *res);

/* Pushes every sample of a RECORD_SAMPLES payload; one the engine now
 * refuses (its cluster removed by a reload since) is quarantined. False
 * (err set) only for a payload it cannot decode. */
bool ingest_apply(struct engine *e, const void *payload, size_t len, struct error *err);

/* ingest_apply of a record ingest_parse made just now against e (nothing
 * pushed to e since), with the meter handles it gave, so no sample's
 * meter is looked up twice. */
bool ingest_apply_meters(struct engine *e, const void *payload, size_t len,
                         const struct ingest_meters *meters, struct error *err);

/* The clocks a record may carry: from 2000-01-01 (inclusive) to
 * 2200-01-01 (exclusive), UTC. The engine does arithmetic on a record's
 * clock (now - a meter's last arrival) that a clock near the int64 limits
 * would overflow. The daemon checks its wall clock against this before it
 * takes a write or applies a tick, so it never journals a record with
 * another; ingest_apply and ingest_apply_tick refuse one as a record that
 * does not decode. */
#define INGEST_CLOCK_MIN_NS (INT64_C(946684800) * 1000000000)  /* 2000-01-01 */
#define INGEST_CLOCK_MAX_NS (INT64_C(7258118400) * 1000000000) /* 2200-01-01 */
bool ingest_clock_plausible(int64_t now_ns);

/* A RECORD_TICK payload, and its application. */
void ingest_encode_tick(int64_t now_ns, struct record_buf *out);
bool ingest_apply_tick(struct engine *e, const void *payload, size_t len, struct error *err);

/* A RECORD_CAPS payload: the yearly caps read back from the ledger. Applying
 * one sets them all, then ends the engine's wait for them
 * (engine_caps_recovered): the closes it held run. */
void ingest_encode_caps(const struct cap_consumed *caps, size_t n, struct record_buf *out);
bool ingest_apply_caps(struct engine *e, const void *payload, size_t len, struct error *err);

/* A RECORD_CONFIG payload: the configuration in force from this point of
 * the journal on, as the text of every file (u32 n, then n x {u32 len,
 * name, u32 len, text}), so a replay builds exactly the config that was
 * loaded, whatever the files on disk say by then. The daemon journals one
 * at every start and every reload, and a checkpoint carries the one in
 * force. */
void ingest_encode_config(const struct config_source *src, struct record_buf *out);

/* The config a RECORD_CONFIG payload describes; NULL with errs filled when
 * it does not decode or no longer builds. */
struct config *ingest_config_of(const void *payload, size_t len, struct errors *errs);

/* A RECORD_REPRICE payload: one cluster-month of a correction as the
 * ledger held it when `tariffd reprice` read it (tariff/reprice.h), so a
 * replay applies the very chunk the live daemon applied and makes the
 * same rows. The daemon journals one per cluster-month that made rows.
 *
 *   u16 len, cluster; i32 month_day; u32 n, then n x {i64 start_s,
 *   i32 revision, u8 in_range, i64 kwh_micro, energy_charge_cny4,
 *   surcharge_cny4, subsidy_cny4, net_cny4, missing_s, lines}; then the
 *   month: u8 has_row, i32 revision, i64 max_kw_micro, billing_kw_micro,
 *   max_interval_start_s, charge_cny4, subsidy_cny4, net_cny4, lines.
 *   lines: u16 n, then n x {u16 len, programme, i64 amount_cny4}.
 *
 * A decoded record owns its memory; chunk points into it. */
struct reprice_record {
    struct reprice_chunk chunk;
    char *cluster;
    struct reprice_interval *intervals;
    struct reprice_paid *paid; /* every line: each interval's, then the month's */
    size_t n_paid;
};

void ingest_encode_reprice(const struct reprice_chunk *c, struct record_buf *out);

/* False (err says what is wrong, and *out is empty) for a payload that
 * does not decode exactly. */
bool ingest_decode_reprice(const void *payload, size_t len, struct reprice_record *out,
                           struct error *err);
void reprice_record_free(struct reprice_record *r);

/* Decodes and applies with engine_reprice, adding what changed to
 * *effect. False (err set) when it does not decode or the engine refuses
 * it; nothing is applied then. */
bool ingest_apply_reprice(struct engine *e, const void *payload, size_t len,
                          struct reprice_effect *effect, struct error *err);

/* A RECORD_BACKFILL payload: a backfill or a requeue as applied
 * (tariff/backfill.h): the plan with the clock it was made at, the
 * samples its measuring quarantined (they go to the ledger through
 * engine_quarantine), and for a requeue the quarantined_samples ids it
 * released. One record per command, so a replay applies all of it or none.
 *
 *   i64 now_ns; u32 clusters, then each {u16 len, cluster; u32 n, then
 *   n x {i64 start_s, kwh_micro, missing_s}}; u32 months, then each {u16
 *   len, cluster; i32 month_day; u8 fate}; u32 quarantined, then each
 *   {u16 len, cluster; u16 len, meter; u8 kind; i64 ts_ns; f64 value; u16
 *   len, reason}; u32 released, then that many i64 ids.
 */
struct backfill_quarantined {
    struct engine_sample s;
    const char *reason;
};

struct backfill_record {
    struct backfill_plan plan; /* its strings are among texts */
    struct backfill_quarantined *quarantined;
    size_t n_quarantined;
    int64_t *released;
    size_t n_released;
    char **texts;
    size_t n_texts;
};

void ingest_encode_backfill(const struct backfill_plan *p, const struct backfill_quarantined *q,
                            size_t n_q, const int64_t *released, size_t n_released,
                            struct record_buf *out);
/* False (err set, *out empty) for a payload that does not decode exactly. */
bool ingest_decode_backfill(const void *payload, size_t len, struct backfill_record *out,
                            struct error *err);
void backfill_record_free(struct backfill_record *r);
/* engine_backfill, then each quarantined sample through engine_quarantine
 * (the released ids are the caller's: they are not the engine's). False
 * (err set), nothing applied, when the engine refuses the plan. */
bool ingest_apply_backfill(struct engine *e, const struct backfill_record *r,
                           struct reprice_effect *effects, struct error *err);

/* Appends n bytes. */
void record_buf_put(struct record_buf *b, const void *v, size_t n);
void record_buf_free(struct record_buf *b);

#endif
