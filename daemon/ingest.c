#include "ingest.h"
#include "tariff/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct record_buf *b, const void *v, size_t n)
{
    if (n == 0) /* v may be NULL then (no released ids), and memcpy's may not */
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = xrealloc(b->p, cap);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, v, n);
    b->len += n;
}

static void put_str(struct record_buf *b, const char *s)
{
    size_t n = strlen(s);
    uint16_t len = (uint16_t)n; /* the parser bounds cluster and meter to 256 bytes */
    put(b, &len, sizeof len);
    put(b, s, n);
}

void record_buf_put(struct record_buf *b, const void *v, size_t n)
{
    put(b, v, n);
}

void record_buf_free(struct record_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Meters first seen in this batch, to refuse one that switches kind within
 * it: open addressing on the hash of "cluster\0meter", keys are offsets into
 * the record. */
struct new_meter {
    uint64_t hash;
    size_t offset; /* of the cluster's u16 length in the record; 0: empty */
    enum sample_kind kind;
};

struct parse_ctx {
    const struct config *cfg;
    const struct engine *engine;
    const struct tenant *tenant;
    struct record_buf *out;
    struct ingest_result *res;
    struct ingest_meters *handles; /* NULL: not wanted */
    int64_t default_ts_ns;
    const struct cluster *last_cluster;
    uint32_t n;
    struct new_meter *seen;
    size_t seen_size, seen_used;
    /* The tenant's meters: what the engine has (read at the first new
     * meter), plus those this request would create. */
    int64_t meters, max_meters;
    bool meters_known;
};

uint64_t ingest_series_hash(const char *cluster, const char *meter)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = cluster; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = meter; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static bool same_key(const struct record_buf *b, size_t offset, const char *cluster,
                     const char *meter)
{
    uint16_t len;
    memcpy(&len, b->p + offset, sizeof len);
    const char *c = (const char *)b->p + offset + 2;
    if (len != strlen(cluster) || memcmp(c, cluster, len) != 0)
        return false;
    uint16_t mlen;
    memcpy(&mlen, c + len, sizeof mlen);
    return mlen == strlen(meter) && memcmp(c + len + 2, meter, mlen) == 0;
}

/* The kind a meter new to the engine already has in this batch, or -1;
 * remembers it otherwise. */
static int batch_kind(struct parse_ctx *c, const char *cluster, const char *meter,
                      enum sample_kind kind, size_t offset)
{
    if (c->seen_used * 2 >= c->seen_size) {
        size_t size = c->seen_size ? c->seen_size * 2 : 64;
        struct new_meter *t = xcalloc(size, sizeof *t);
        for (size_t i = 0; i < c->seen_size; i++) {
            if (!c->seen[i].offset)
                continue;
            size_t j = c->seen[i].hash & (size - 1);
            while (t[j].offset)
                j = (j + 1) & (size - 1);
            t[j] = c->seen[i];
        }
        free(c->seen);
        c->seen = t;
        c->seen_size = size;
    }
    uint64_t h = ingest_series_hash(cluster, meter);
    size_t mask = c->seen_size - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct new_meter *m = &c->seen[i];
        if (!m->offset) {
            *m = (struct new_meter){h, offset, kind};
            c->seen_used++;
            return -1;
        }
        if (m->hash == h && same_key(c->out, m->offset, cluster, meter))
            return (int)m->kind;
    }
}

static bool on_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct parse_ctx *c = ctx;
    /* A series key the cache holds may know its meter (the memo is its
     * handle plus one), and through it the meter's cluster; otherwise lines
     * of a cluster usually come together: look it up once for them. */
    size_t known = p->memo && *p->memo ? (size_t)(*p->memo - 1) : ENGINE_NO_METER;
    if (p->ahead_memo)
        engine_prefetch_meter(c->engine, (size_t)(p->ahead_memo - 1));
    if (known != ENGINE_NO_METER && !engine_meter_is(c->engine, known, p->cluster, p->meter))
        known = ENGINE_NO_METER; /* a handle of another engine: looked up by name */
    const struct cluster *cl;
    if (known != ENGINE_NO_METER) {
        cl = engine_meter_cluster(c->engine, known);
    } else {
        cl = c->last_cluster && strcmp(c->last_cluster->id, p->cluster) == 0
                 ? c->last_cluster
                 : config_find_cluster(c->cfg, p->cluster);
        c->last_cluster = cl;
    }
    if (!cl) {
        c->res->status = INGEST_INVALID;
        snprintf(err->msg, sizeof err->msg, "line %d: unknown cluster \"%.200s\"", p->line,
                 p->cluster);
        return false;
    }
    if (cl->tenant != c->tenant) {
        c->res->status = INGEST_FORBIDDEN;
        snprintf(err->msg, sizeof err->msg, "line %d: cluster \"%.200s\" belongs to another tenant",
                 p->line, p->cluster);
        return false;
    }
    struct engine_sample s = ingest_sample_of(p, c->default_ts_ns);
    enum sample_kind kind = s.kind;
    struct error e;
    size_t handle = known;
    enum engine_verdict verdict = known != ENGINE_NO_METER
                                      ? engine_judge_handle(c->engine, &s, known, &e)
                                      : engine_judge_meter(c->engine, &s, &e, &handle);
    if (verdict == ENGINE_REFUSED) {
        c->res->status = INGEST_INVALID;
        snprintf(err->msg, sizeof err->msg, "line %d: %.200s", p->line, e.msg);
        return false;
    }
    if (p->memo && handle != ENGINE_NO_METER)
        *p->memo = (uint64_t)handle + 1;
    size_t offset = c->out->len;
    put_str(c->out, s.cluster);
    put_str(c->out, s.meter);
    /* A meter the engine knows has its kind; only new ones can disagree
     * with themselves within the batch. */
    int before = verdict == ENGINE_NEW_METER ? batch_kind(c, s.cluster, s.meter, kind, offset) : -1;
    if (verdict == ENGINE_NEW_METER && before < 0) {
        if (!c->meters_known) {
            c->meters = (int64_t)engine_tenant_meters(c->engine, c->tenant);
            c->meters_known = true;
        }
        if (++c->meters > c->max_meters) {
            c->res->status = INGEST_INVALID;
            snprintf(err->msg, sizeof err->msg,
                     "line %d: meter \"%.40s\" of cluster \"%.40s\" would exceed the limit of "
                     "%lld meters of tenant \"%.40s\" (max_meters)",
                     p->line, s.meter, s.cluster, (long long)c->max_meters, c->tenant->id);
            return false;
        }
    }
    if (before >= 0 && before != (int)kind) {
        c->res->status = INGEST_INVALID;
        snprintf(err->msg, sizeof err->msg,
                 "line %d: meter \"%.64s\" of cluster \"%.64s\" sends both power and an "
                 "energy counter in this request",
                 p->line, s.meter, s.cluster);
        return false;
    }
    uint8_t k = (uint8_t)kind;
    put(c->out, &k, 1);
    put(c->out, &s.ts_ns, sizeof s.ts_ns);
    put(c->out, &s.value, sizeof s.value);
    struct ingest_meters *m = c->handles;
    if (m) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 1024;
            m->v = xrealloc(m->v, m->cap * sizeof *m->v);
        }
        m->v[m->n++] = handle;
    }
    c->n++;
    return true;
}

size_t ingest_cache_keys(const struct config *cfg)
{
    uint64_t meters = 0;
    for (size_t i = 0; i < cfg->n_tenants && meters < UINT32_MAX; i++)
        meters += (uint64_t)tenant_max_meters(cfg, &cfg->tenants[i]);
    return meters < UINT32_MAX ? (size_t)meters * 2 : SIZE_MAX;
}

void ingest_parse(const struct config *cfg, const struct engine *e, const struct tenant *t,
                  const char *body, size_t len, enum lp_precision precision, int64_t now_ns,
                  struct record_buf *out, struct ingest_meters *meters, struct ingest_result *res)
{
    ingest_parse_cached(cfg, e, t, body, len, precision, now_ns, NULL, out, meters, res);
}

void ingest_parse_cached(const struct config *cfg, const struct engine *e, const struct tenant *t,
                         const char *body, size_t len, enum lp_precision precision, int64_t now_ns,
                         struct lp_cache *cache, struct record_buf *out,
                         struct ingest_meters *meters, struct ingest_result *res)
{
    memset(res, 0, sizeof *res);
    if (meters)
        meters->n = 0;
    out->len = 0;
    put(out, &now_ns, sizeof now_ns);
    uint32_t zero = 0;
    put(out, &zero, sizeof zero);
    struct parse_ctx c = {
        .cfg = cfg,
        .engine = e,
        .tenant = t,
        .out = out,
        .res = res,
        .handles = meters,
        .default_ts_ns = now_ns - now_ns % (int64_t)precision,
        .max_meters = tenant_max_meters(cfg, t),
    };
    struct lp_stats stats = {0};
    struct lp_error err = {0};
    size_t consumed;
    if (!lp_parse_cached(body, len, false, precision, cache, on_point, &c, &stats, &err,
                         &consumed)) {
        if (res->status == INGEST_OK)
            res->status = INGEST_INVALID;
        snprintf(res->msg, sizeof res->msg, "%s", err.msg);
    } else {
        memcpy(out->p + sizeof now_ns, &c.n, sizeof c.n);
        res->samples = c.n;
        res->other_lines = stats.other_points;
    }
    free(c.seen);
}

/* A reader over a payload that refuses to run past its end. */
struct reader {
    const unsigned char *p, *end;
    bool ok;
};

static void get(struct reader *r, void *v, size_t n)
{
    if (!r->ok || (size_t)(r->end - r->p) < n) {
        r->ok = false;
        memset(v, 0, n);
        return;
    }
    memcpy(v, r->p, n);
    r->p += n;
}

static void get_str(struct reader *r, char *buf, size_t size)
{
    uint16_t len;
    get(r, &len, sizeof len);
    if (len >= size) {
        r->ok = false;
        buf[0] = '\0';
        return;
    }
    get(r, buf, len);
    buf[r->ok ? len : 0] = '\0';
}

bool ingest_clock_plausible(int64_t now_ns)
{
    return now_ns >= INGEST_CLOCK_MIN_NS && now_ns < INGEST_CLOCK_MAX_NS;
}

/* Reads sample i of a samples record (after its header) into s. */
static void get_sample(struct reader *r, struct engine_sample *s, char *cluster, char *meter,
                       size_t size)
{
    uint8_t kind;
    get_str(r, cluster, size);
    get_str(r, meter, size);
    get(r, &kind, 1);
    get(r, &s->ts_ns, sizeof s->ts_ns);
    get(r, &s->value, sizeof s->value);
    s->kind = kind == SAMPLE_COUNTER ? SAMPLE_COUNTER : SAMPLE_POWER;
}

void ingest_meters_free(struct ingest_meters *m)
{
    free(m->v);
    *m = (struct ingest_meters){0};
}

bool ingest_apply(struct engine *e, const void *payload, size_t len, struct error *err)
{
    return ingest_apply_meters(e, payload, len, NULL, err);
}

bool ingest_apply_meters(struct engine *e, const void *payload, size_t len,
                         const struct ingest_meters *meters, struct error *err)
{
    int64_t now_ns;
    uint32_t n;
    char cluster[512], meter[512];
    /* The whole record decodes, or nothing of it is applied. */
    struct reader r = {payload, (const unsigned char *)payload + len, true};
    get(&r, &now_ns, sizeof now_ns);
    get(&r, &n, sizeof n);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        struct engine_sample s = {.cluster = cluster, .meter = meter};
        get_sample(&r, &s, cluster, meter, sizeof cluster);
    }
    if (!r.ok || r.p != r.end || !ingest_clock_plausible(now_ns)) {
        error_set(err, "a samples record of %zu bytes does not decode", len);
        return false;
    }
    r = (struct reader){payload, (const unsigned char *)payload + len, true};
    get(&r, &now_ns, sizeof now_ns);
    get(&r, &n, sizeof n);
    for (uint32_t i = 0; i < n; i++) {
        struct engine_sample s = {.cluster = cluster, .meter = meter};
        get_sample(&r, &s, cluster, meter, sizeof cluster);
        /* A sample refused now (its cluster removed from the config since it
         * was accepted) is quarantined with the reason, never lost. */
        size_t meter = meters && i < meters->n ? meters->v[i] : ENGINE_NO_METER;
        if (!engine_push_meter(e, &s, meter, now_ns, err))
            engine_quarantine(e, &s, err->msg);
    }
    engine_batch_done(e, now_ns); /* one adjustment per reopened interval per request */
    return true;
}

void ingest_encode_tick(int64_t now_ns, struct record_buf *out)
{
    out->len = 0;
    put(out, &now_ns, sizeof now_ns);
}

bool ingest_apply_tick(struct engine *e, const void *payload, size_t len, struct error *err)
{
    int64_t now_ns;
    if (len != sizeof now_ns) {
        error_set(err, "a tick record of %zu bytes does not decode", len);
        return false;
    }
    memcpy(&now_ns, payload, sizeof now_ns);
    if (!ingest_clock_plausible(now_ns)) {
        error_set(err, "a tick record of %zu bytes does not decode", len);
        return false;
    }
    engine_tick(e, now_ns);
    return true;
}

void ingest_encode_caps(const struct cap_consumed *caps, size_t n, struct record_buf *out)
{
    out->len = 0;
    uint32_t count = (uint32_t)n;
    put(out, &count, sizeof count);
    for (size_t i = 0; i < n; i++) {
        put_str(out, caps[i].tenant);
        put_str(out, caps[i].programme);
        put(out, &caps[i].year, sizeof caps[i].year);
        put(out, &caps[i].consumed_cny4, sizeof caps[i].consumed_cny4);
    }
}

bool ingest_apply_caps(struct engine *e, const void *payload, size_t len, struct error *err)
{
    struct reader r = {payload, (const unsigned char *)payload + len, true};
    uint32_t n;
    get(&r, &n, sizeof n);
    char tenant[512], programme[512];
    for (uint32_t i = 0; i < n && r.ok; i++) {
        int32_t year;
        int64_t consumed;
        get_str(&r, tenant, sizeof tenant);
        get_str(&r, programme, sizeof programme);
        get(&r, &year, sizeof year);
        get(&r, &consumed, sizeof consumed);
        if (r.ok)
            engine_set_cap_consumed(e, tenant, programme, year, consumed);
    }
    if (!r.ok || r.p != r.end) {
        error_set(err, "a caps record of %zu bytes does not decode", len);
        return false;
    }
    /* All of them are in: what waited for them closes now. */
    engine_caps_recovered(e);
    return true;
}

static void put_text(struct record_buf *b, const char *text, size_t n)
{
    uint32_t len = (uint32_t)n; /* the loader bounds a file to 16 MiB */
    put(b, &len, sizeof len);
    put(b, text, n);
}

void ingest_encode_config(const struct config_source *src, struct record_buf *out)
{
    out->len = 0;
    uint32_t n = (uint32_t)src->n;
    put(out, &n, sizeof n);
    for (size_t i = 0; i < src->n; i++) {
        put_text(out, src->files[i].name, strlen(src->files[i].name));
        put_text(out, src->files[i].text, src->files[i].len);
    }
}

/* A malloc'd, NUL-terminated copy of the next u32-counted text. */
static char *get_text(struct reader *r, size_t *len)
{
    uint32_t n;
    get(r, &n, sizeof n);
    if (!r->ok || (size_t)(r->end - r->p) < n) {
        r->ok = false;
        return NULL;
    }
    char *text = xmalloc((size_t)n + 1);
    memcpy(text, r->p, n);
    text[n] = '\0';
    r->p += n;
    *len = n;
    return text;
}

struct config *ingest_config_of(const void *payload, size_t len, struct errors *errs)
{
    struct reader r = {payload, (const unsigned char *)payload + len, true};
    uint32_t n;
    get(&r, &n, sizeof n);
    struct config_source src = {0};
    for (uint32_t i = 0; i < n && r.ok; i++) {
        size_t name_len, text_len;
        char *name = get_text(&r, &name_len);
        char *text = get_text(&r, &text_len);
        if (!r.ok || strlen(name) != name_len) {
            free(name);
            free(text);
            r.ok = false;
            break;
        }
        src.files = xrealloc(src.files, (src.n + 1) * sizeof *src.files);
        src.files[src.n++] = (struct config_file){name, text, text_len};
    }
    struct config *cfg = NULL;
    if (!r.ok || r.p != r.end || !n)
        errors_add(errs, "a config record of %zu bytes does not decode", len);
    else
        cfg = loader_build(&src, errs);
    config_source_free(&src);
    return cfg;
}

/* ------------------------------------------------------------------ */
/* RECORD_REPRICE                                                      */

static void put_lines(struct record_buf *b, const struct reprice_paid *paid, size_t n)
{
    uint16_t count = (uint16_t)n; /* at most one line per programme */
    put(b, &count, sizeof count);
    for (size_t i = 0; i < n; i++) {
        put_str(b, paid[i].programme);
        put(b, &paid[i].amount_cny4, sizeof paid[i].amount_cny4);
    }
}

void ingest_encode_reprice(const struct reprice_chunk *c, struct record_buf *out)
{
    out->len = 0;
    put_str(out, c->cluster);
    put(out, &c->month_day, sizeof c->month_day);
    uint32_t n = (uint32_t)c->n_intervals;
    put(out, &n, sizeof n);
    for (size_t i = 0; i < c->n_intervals; i++) {
        const struct reprice_interval *in = &c->intervals[i];
        uint8_t in_range = in->in_range;
        put(out, &in->start_s, sizeof in->start_s);
        put(out, &in->revision, sizeof in->revision);
        put(out, &in_range, 1);
        put(out, &in->kwh_micro, sizeof in->kwh_micro);
        put(out, &in->energy_charge_cny4, sizeof in->energy_charge_cny4);
        put(out, &in->surcharge_cny4, sizeof in->surcharge_cny4);
        put(out, &in->subsidy_cny4, sizeof in->subsidy_cny4);
        put(out, &in->net_cny4, sizeof in->net_cny4);
        put(out, &in->missing_s, sizeof in->missing_s);
        put_lines(out, in->paid, in->n_paid);
    }
    const struct reprice_month *m = &c->month;
    uint8_t has_row = m->has_row;
    put(out, &has_row, 1);
    put(out, &m->revision, sizeof m->revision);
    put(out, &m->max_kw_micro, sizeof m->max_kw_micro);
    put(out, &m->billing_kw_micro, sizeof m->billing_kw_micro);
    put(out, &m->max_interval_start_s, sizeof m->max_interval_start_s);
    put(out, &m->charge_cny4, sizeof m->charge_cny4);
    put(out, &m->subsidy_cny4, sizeof m->subsidy_cny4);
    put(out, &m->net_cny4, sizeof m->net_cny4);
    put_lines(out, m->paid, m->n_paid);
}

void reprice_record_free(struct reprice_record *r)
{
    for (size_t i = 0; i < r->n_paid; i++)
        free((char *)r->paid[i].programme);
    free(r->paid);
    free(r->intervals);
    free(r->cluster);
    memset(r, 0, sizeof *r);
}

/* The smallest encoding of an interval: its fixed fields and no line. */
#define REPRICE_INTERVAL_MIN_BYTES (8 + 4 + 1 + 6 * 8 + 2)

/* A malloc'd copy of the next u16-counted text; NULL (r->ok false) when
 * it is cut short or empty. */
static char *get_name(struct reader *r)
{
    uint16_t n;
    get(r, &n, sizeof n);
    if (!r->ok || n == 0 || (size_t)(r->end - r->p) < n) {
        r->ok = false;
        return NULL;
    }
    char *s = xmalloc((size_t)n + 1);
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    if (strlen(s) != n) { /* a NUL inside */
        free(s);
        r->ok = false;
        return NULL;
    }
    return s;
}

/* Appends a lines block to out->paid; false with why set when it does not
 * decode. */
static bool get_lines(struct reader *r, struct reprice_record *out, size_t *cap, const char **why)
{
    uint16_t n;
    get(r, &n, sizeof n);
    if (!r->ok) {
        *why = "a subsidy line count is cut short";
        return false;
    }
    for (uint16_t k = 0; k < n; k++) {
        char *programme = get_name(r);
        int64_t amount;
        get(r, &amount, sizeof amount);
        if (!r->ok) {
            free(programme);
            *why = "a subsidy line is cut short or names no programme";
            return false;
        }
        if (out->n_paid == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            out->paid = xrealloc(out->paid, *cap * sizeof *out->paid);
        }
        out->paid[out->n_paid++] = (struct reprice_paid){programme, amount};
    }
    return true;
}

bool ingest_decode_reprice(const void *payload, size_t len, struct reprice_record *out,
                           struct error *err)
{
    memset(out, 0, sizeof *out);
    struct reader r = {payload, (const unsigned char *)payload + len, true};
    const char *why = NULL;
    char detail[96] = "";
    size_t cap = 0, *first = NULL; /* each interval's first line, then the month's */
    uint32_t n = 0;
    out->cluster = get_name(&r);
    if (!r.ok) {
        why = "the cluster is cut short or empty";
        goto fail;
    }
    get(&r, &out->chunk.month_day, sizeof out->chunk.month_day);
    get(&r, &n, sizeof n);
    if (!r.ok) {
        why = "the month or the interval count is cut short";
        goto fail;
    }
    if ((size_t)(r.end - r.p) / REPRICE_INTERVAL_MIN_BYTES < n) {
        snprintf(detail, sizeof detail, "%" PRIu32 " intervals cannot fit in the %zu bytes left", n,
                 (size_t)(r.end - r.p));
        goto fail;
    }
    out->intervals = xcalloc(n, sizeof *out->intervals);
    first = xcalloc((size_t)n + 1, sizeof *first);
    for (uint32_t i = 0; i < n; i++) {
        struct reprice_interval *in = &out->intervals[i];
        uint8_t in_range;
        get(&r, &in->start_s, sizeof in->start_s);
        get(&r, &in->revision, sizeof in->revision);
        get(&r, &in_range, 1);
        get(&r, &in->kwh_micro, sizeof in->kwh_micro);
        get(&r, &in->energy_charge_cny4, sizeof in->energy_charge_cny4);
        get(&r, &in->surcharge_cny4, sizeof in->surcharge_cny4);
        get(&r, &in->subsidy_cny4, sizeof in->subsidy_cny4);
        get(&r, &in->net_cny4, sizeof in->net_cny4);
        get(&r, &in->missing_s, sizeof in->missing_s);
        if (!r.ok) {
            snprintf(detail, sizeof detail, "interval %" PRIu32 " of %" PRIu32 " is cut short",
                     i + 1, n);
            goto fail;
        }
        if (in_range > 1) {
            snprintf(detail, sizeof detail,
                     "interval %" PRIu32 " has in_range %u where 0 or 1 belongs", i + 1,
                     (unsigned)in_range);
            goto fail;
        }
        in->in_range = in_range;
        first[i] = out->n_paid;
        if (!get_lines(&r, out, &cap, &why))
            goto fail;
        in->n_paid = out->n_paid - first[i];
    }
    struct reprice_month *m = &out->chunk.month;
    uint8_t has_row;
    get(&r, &has_row, 1);
    get(&r, &m->revision, sizeof m->revision);
    get(&r, &m->max_kw_micro, sizeof m->max_kw_micro);
    get(&r, &m->billing_kw_micro, sizeof m->billing_kw_micro);
    get(&r, &m->max_interval_start_s, sizeof m->max_interval_start_s);
    get(&r, &m->charge_cny4, sizeof m->charge_cny4);
    get(&r, &m->subsidy_cny4, sizeof m->subsidy_cny4);
    get(&r, &m->net_cny4, sizeof m->net_cny4);
    if (!r.ok) {
        why = "the month's demand is cut short";
        goto fail;
    }
    if (has_row > 1) {
        snprintf(detail, sizeof detail, "the month has has_row %u where 0 or 1 belongs",
                 (unsigned)has_row);
        goto fail;
    }
    m->has_row = has_row;
    first[n] = out->n_paid;
    if (!get_lines(&r, out, &cap, &why))
        goto fail;
    if (r.p != r.end) {
        snprintf(detail, sizeof detail, "%zu bytes left over after the month",
                 (size_t)(r.end - r.p));
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++)
        out->intervals[i].paid = out->paid + first[i];
    m->n_paid = out->n_paid - first[n];
    m->paid = out->paid + first[n];
    out->chunk.cluster = out->cluster;
    out->chunk.n_intervals = n;
    out->chunk.intervals = out->intervals;
    free(first);
    return true;
fail:
    error_set(err, "a reprice record of %zu bytes does not decode: %s", len, why ? why : detail);
    free(first);
    reprice_record_free(out);
    return false;
}

bool ingest_apply_reprice(struct engine *e, const void *payload, size_t len,
                          struct reprice_effect *effect, struct error *err)
{
    struct reprice_record r;
    if (!ingest_decode_reprice(payload, len, &r, err))
        return false;
    bool ok = engine_reprice(e, &r.chunk, effect, err);
    reprice_record_free(&r);
    return ok;
}

/* ------------------------------------------------------------------ */
/* RECORD_BACKFILL                                                     */

void ingest_encode_backfill(const struct backfill_plan *p, const struct backfill_quarantined *q,
                            size_t n_q, const int64_t *released, size_t n_released,
                            struct record_buf *out)
{
    out->len = 0;
    put(out, &p->now_ns, sizeof p->now_ns);
    /* Intervals grouped by cluster (the plan sorts them so). */
    uint32_t groups = 0;
    for (size_t i = 0; i < p->n_intervals; i++)
        groups += i == 0 || strcmp(p->intervals[i - 1].cluster, p->intervals[i].cluster) != 0;
    put(out, &groups, sizeof groups);
    for (size_t i = 0; i < p->n_intervals;) {
        size_t j = i;
        while (j < p->n_intervals && strcmp(p->intervals[j].cluster, p->intervals[i].cluster) == 0)
            j++;
        uint32_t n = (uint32_t)(j - i);
        put_str(out, p->intervals[i].cluster);
        put(out, &n, sizeof n);
        for (; i < j; i++) {
            put(out, &p->intervals[i].start_s, 8);
            put(out, &p->intervals[i].kwh_micro, 8);
            put(out, &p->intervals[i].missing_s, 8);
        }
    }
    uint32_t n = (uint32_t)p->n_months;
    put(out, &n, sizeof n);
    for (size_t i = 0; i < p->n_months; i++) {
        uint8_t fate = (uint8_t)p->months[i].fate;
        put_str(out, p->months[i].cluster);
        put(out, &p->months[i].month_day, 4);
        put(out, &fate, 1);
    }
    n = (uint32_t)n_q;
    put(out, &n, sizeof n);
    for (size_t i = 0; i < n_q; i++) {
        uint8_t kind = (uint8_t)q[i].s.kind;
        put_str(out, q[i].s.cluster);
        put_str(out, q[i].s.meter);
        put(out, &kind, 1);
        put(out, &q[i].s.ts_ns, 8);
        put(out, &q[i].s.value, 8);
        put_str(out, q[i].reason);
    }
    n = (uint32_t)n_released;
    put(out, &n, sizeof n);
    put(out, released, n_released * sizeof *released);
}

void backfill_record_free(struct backfill_record *r)
{
    for (size_t i = 0; i < r->n_texts; i++)
        free(r->texts[i]);
    free(r->texts);
    free(r->plan.intervals);
    free(r->plan.months);
    free(r->quarantined);
    free(r->released);
    memset(r, 0, sizeof *r);
}

/* The next u16-counted text, kept in r's texts; NULL when it does not
 * decode (empty or cut short). */
static const char *get_kept(struct reader *rd, struct backfill_record *r, size_t *cap)
{
    char *s = get_name(rd);
    if (!s)
        return NULL;
    if (r->n_texts == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        r->texts = xrealloc(r->texts, *cap * sizeof *r->texts);
    }
    return r->texts[r->n_texts++] = s;
}

/* A count of items of at least `least` bytes each that fits in what is left. */
static bool get_count(struct reader *rd, size_t least, uint32_t *n)
{
    get(rd, n, sizeof *n);
    return rd->ok && (size_t)(rd->end - rd->p) / least >= *n;
}

bool ingest_decode_backfill(const void *payload, size_t len, struct backfill_record *out,
                            struct error *err)
{
    memset(out, 0, sizeof *out);
    struct reader rd = {payload, (const unsigned char *)payload + len, true};
    size_t texts = 0, cap_i = 0;
    const char *why = NULL;
    uint32_t groups, n;
    get(&rd, &out->plan.now_ns, 8);
    if (!get_count(&rd, 2 + 1 + 4, &groups)) {
        why = "the clock or the cluster count is cut short or too large";
        goto fail;
    }
    for (uint32_t g = 0; g < groups; g++) {
        const char *cluster = get_kept(&rd, out, &texts);
        if (!cluster || !get_count(&rd, 24, &n)) {
            why = "a cluster of intervals is cut short";
            goto fail;
        }
        if (out->plan.n_intervals + n > cap_i) {
            cap_i = (out->plan.n_intervals + n) * 2;
            out->plan.intervals =
                xrealloc(out->plan.intervals, cap_i * sizeof *out->plan.intervals);
        }
        for (uint32_t i = 0; i < n; i++) {
            struct backfill_interval *in = &out->plan.intervals[out->plan.n_intervals++];
            in->cluster = cluster;
            get(&rd, &in->start_s, 8);
            get(&rd, &in->kwh_micro, 8);
            get(&rd, &in->missing_s, 8);
        }
    }
    if (!get_count(&rd, 2 + 1 + 4 + 1, &n)) {
        why = "the month count is cut short or too large";
        goto fail;
    }
    out->plan.months = xcalloc(n ? n : 1, sizeof *out->plan.months);
    for (uint32_t i = 0; i < n; i++) {
        struct backfill_month *m = &out->plan.months[out->plan.n_months++];
        uint8_t fate;
        m->cluster = get_kept(&rd, out, &texts);
        get(&rd, &m->month_day, 4);
        get(&rd, &fate, 1);
        if (!m->cluster || !rd.ok || fate > BACKFILL_LEFT) {
            why = "a month is cut short or has an unknown fate";
            goto fail;
        }
        m->fate = (enum backfill_fate)fate;
    }
    if (!get_count(&rd, 3 * (2 + 1) + 1 + 16, &n)) {
        why = "the quarantined sample count is cut short or too large";
        goto fail;
    }
    out->quarantined = xcalloc(n ? n : 1, sizeof *out->quarantined);
    for (uint32_t i = 0; i < n; i++) {
        struct backfill_quarantined *q = &out->quarantined[out->n_quarantined++];
        uint8_t kind;
        q->s.cluster = get_kept(&rd, out, &texts);
        q->s.meter = get_kept(&rd, out, &texts);
        get(&rd, &kind, 1);
        get(&rd, &q->s.ts_ns, 8);
        get(&rd, &q->s.value, 8);
        q->reason = get_kept(&rd, out, &texts);
        if (!q->s.cluster || !q->s.meter || !q->reason || !rd.ok || kind > SAMPLE_COUNTER) {
            why = "a quarantined sample is cut short";
            goto fail;
        }
        q->s.kind = (enum sample_kind)kind;
    }
    if (!get_count(&rd, 8, &n)) {
        why = "the released count is cut short or too large";
        goto fail;
    }
    out->released = xcalloc(n ? n : 1, sizeof *out->released);
    get(&rd, out->released, (size_t)n * 8);
    out->n_released = n;
    if (!rd.ok || rd.p != rd.end) {
        why = rd.ok ? "bytes after the end" : "the released samples are cut short";
        goto fail;
    }
    return true;
fail:
    error_set(err, "a backfill record does not decode: %s", why);
    backfill_record_free(out);
    return false;
}

bool ingest_apply_backfill(struct engine *e, const struct backfill_record *r,
                           struct reprice_effect *effects, struct error *err)
{
    if (!engine_backfill(e, &r->plan, effects, err))
        return false;
    for (size_t i = 0; i < r->n_quarantined; i++)
        engine_quarantine(e, &r->quarantined[i].s, r->quarantined[i].reason);
    return true;
}
