/*
 * snapshot: the engine's whole state as bytes (engine_save) and back
 * (engine_load), for the journal's checkpoints.
 *
 * Format, host byte order (a checkpoint is read back on the machine that
 * wrote it): a magic and version, the interval it was made with, whether
 * the caps are known, then the caps, the clusters (closing marks,
 * adjustable rows, months, reopened intervals), the meters (samples), the counters, and what a
 * waiting engine holds (hold.c): the bytes of the state its wait began in,
 * the caps set and the calls made since. Names are stored, not config
 * pointers, so a snapshot loads under a reloaded config. The reader checks
 * every length against what is left, so truncated or foreign bytes fail
 * cleanly.
 *
 * Version 1 had neither caps_known nor the hold, and is read still: such a
 * checkpoint was written only once the caps were known. Version 2 had no
 * reopened intervals (every late sample was priced at once) and no
 * late-sample counters.
 */
#include "engine_private.h"

#include <stdio.h>

static const char magic[8] = {'T', 'F', 'E', 'N', 'G', 'I', 'N', 'E'};

struct wbuf {
    unsigned char *p;
    size_t n, cap;
};

/* Room for len more bytes. A large buffer is advised to be backed by huge
 * pages before it is written (xrealloc_huge): at a million meters the
 * page faults of a 4 KiB-paged buffer cost more than the writing. */
static void reserve(struct wbuf *w, size_t len)
{
    if (w->n + len > w->cap) {
        size_t cap = w->cap;
        while (w->n + len > cap)
            cap = cap ? cap * 2 : 4096;
        w->p = xrealloc_huge(w->p, w->n, cap);
        w->cap = cap;
    }
}

static void put(struct wbuf *w, const void *v, size_t len)
{
    reserve(w, len);
    memcpy(w->p + w->n, v, len);
    w->n += len;
}

static void put_i64(struct wbuf *w, int64_t v)
{
    put(w, &v, sizeof v);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
    put(w, &v, sizeof v);
}

static void put_f64(struct wbuf *w, double v)
{
    put(w, &v, sizeof v);
}

static void put_str(struct wbuf *w, const char *s)
{
    uint64_t len = strlen(s);
    put_u64(w, len);
    put(w, s, len);
}

static void put_text(struct wbuf *w, const struct hold *h, size_t *at)
{
    const char *t = h->text + *at;
    put_str(w, t);
    *at += strlen(t) + 1;
}

static void put_hold(struct wbuf *w, const struct hold *h)
{
    put_u64(w, h != NULL);
    if (!h)
        return;
    put_u64(w, h->base_len);
    put(w, h->base, h->base_len);
    put_u64(w, h->billing_rows);
    put_u64(w, h->adjustment_rows);
    put_u64(w, h->demand_rows);
    put_u64(w, h->n_caps);
    for (size_t i = 0; i < h->n_caps; i++) {
        size_t at = h->caps[i].text_at;
        put_text(w, h, &at);
        put_text(w, h, &at);
        put_i64(w, h->caps[i].year);
        put_i64(w, h->caps[i].consumed_cny4);
    }
    put_u64(w, h->n_calls);
    for (size_t i = 0; i < h->n_calls; i++) {
        const struct held_call *c = &h->calls[i];
        put_i64(w, c->kind);
        put_i64(w, c->now_ns);
        if (c->kind != HELD_PUSH && c->kind != HELD_QUARANTINE)
            continue;
        put_i64(w, c->sample_kind);
        put_i64(w, c->ts_ns);
        put_f64(w, c->value);
        size_t at = c->text_at;
        put_text(w, h, &at);
        put_text(w, h, &at);
        if (c->kind == HELD_QUARANTINE)
            put_text(w, h, &at);
    }
}

static void put_paid(struct wbuf *w, const struct stored_paid *paid, size_t n)
{
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) {
        put_str(w, paid[i].programme);
        put_i64(w, paid[i].amount_cny4);
    }
}

void *engine_save(const struct engine *e, size_t *len)
{
    return snapshot_write(e, len, SNAPSHOT_VERSION);
}

void *snapshot_write(const struct engine *e, size_t *len, int version)
{
    struct wbuf w = {0};
    put(&w, magic, sizeof magic);
    put_u64(&w, (uint64_t)version);
    put_i64(&w, e->interval_s);
    if (version >= 2)
        put_u64(&w, e->caps_known);

    put_u64(&w, e->caps.n);
    for (size_t i = 0; i < e->caps.n; i++) {
        put_str(&w, e->caps.v[i].tenant);
        put_str(&w, e->caps.v[i].programme);
        put_i64(&w, e->caps.v[i].year);
        put_i64(&w, e->caps.v[i].consumed_cny4);
    }

    put_u64(&w, e->n_clusters);
    for (size_t i = 0; i < e->n_clusters; i++) {
        const struct cluster_state *cs = &e->clusters[i];
        put_str(&w, cs->id);
        put_i64(&w, cs->closed_until_s);
        put_i64(&w, cs->frozen_until_s);
        put_u64(&w, cs->n_marks);
        for (size_t k = 0; k < cs->n_marks; k++) {
            put_i64(&w, cs->marks[k].upto_s);
            put_i64(&w, cs->marks[k].at_ns);
        }
        put_u64(&w, cs->n_rows);
        for (size_t k = 0; k < cs->n_rows; k++) {
            const struct closed_row *r = &cs->rows[k];
            put_i64(&w, r->start_s);
            put_i64(&w, r->revision);
            put_i64(&w, r->kwh_micro);
            put_i64(&w, r->energy_charge_cny4);
            put_i64(&w, r->surcharge_cny4);
            put_i64(&w, r->subsidy_cny4);
            put_i64(&w, r->net_cny4);
            put_i64(&w, r->missing_s);
            put_paid(&w, r->paid, r->n_paid);
        }
        put_u64(&w, cs->n_months);
        for (size_t k = 0; k < cs->n_months; k++) {
            const struct month_state *ms = &cs->months[k];
            put_i64(&w, ms->month_day);
            put_i64(&w, ms->start_s);
            put_i64(&w, ms->end_s);
            put_i64(&w, ms->kwh_micro);
            put_i64(&w, ms->frozen_max_kw_micro);
            put_i64(&w, ms->frozen_max_start_s);
            put_i64(&w, ms->last_row_start_s);
            put_i64(&w, ms->closed);
            put_i64(&w, ms->revision);
            put_i64(&w, ms->charge_cny4);
            put_i64(&w, ms->subsidy_cny4);
            put_i64(&w, ms->net_cny4);
            put_i64(&w, ms->max_kw_micro);
            put_i64(&w, ms->billing_kw_micro);
            put_paid(&w, ms->paid, ms->n_paid);
        }
        if (version < 3)
            continue;
        put_u64(&w, cs->n_reopened);
        for (size_t k = 0; k < cs->n_reopened; k++)
            put_i64(&w, cs->reopened[k]);
    }

    /* The meters are most of a large snapshot: their room (and the
     * counters' after them) is made at once, so the buffer is not copied
     * as it grows through them. */
    size_t meter_bytes = 8 + 9 * 8;
    for (size_t i = 0; i < e->n_meters; i++)
        meter_bytes += 8 * 8 + strlen(meter_name(&e->meters[i])) + 16 * (size_t)e->meters[i].buf.n;
    reserve(&w, meter_bytes);
    put_u64(&w, e->n_meters);
    for (size_t i = 0; i < e->n_meters; i++) {
        const struct meter_state *m = &e->meters[i];
        put_u64(&w, m->cluster);
        put_str(&w, meter_name(m));
        put_i64(&w, m->counter);
        put_i64(&w, m->silent);
        put_i64(&w, m->first_ns);
        put_i64(&w, m->last_ns);
        put_i64(&w, m->last_arrival_ns);
        put_u64(&w, m->buf.n);
        for (size_t k = 0; k < m->buf.n; k++) {
            struct sample sample = sample_buf_get(&m->buf, k);
            put_i64(&w, sample.ts_ns);
            put_f64(&w, sample.value);
        }
    }

    const struct engine_stats *st = &e->stats;
    put_u64(&w, st->accepted);
    put_u64(&w, st->duplicates);
    put_u64(&w, st->conflicts);
    put_u64(&w, st->quarantined);
    put_u64(&w, st->billing_rows);
    put_u64(&w, st->adjustment_rows);
    put_u64(&w, st->demand_rows);
    if (version >= 3) {
        put_u64(&w, st->late_samples);
        put_u64(&w, st->intervals_reopened);
    }
    if (version >= 2)
        put_hold(&w, e->hold);
    *len = w.n;
    return w.p;
}

struct rbuf {
    const unsigned char *p;
    size_t n;
    bool ok;
};

static void get(struct rbuf *r, void *v, size_t len)
{
    if (!r->ok || r->n < len) {
        r->ok = false;
        memset(v, 0, len);
        return;
    }
    memcpy(v, r->p, len);
    r->p += len;
    r->n -= len;
}

static int64_t get_i64(struct rbuf *r)
{
    int64_t v;
    get(r, &v, sizeof v);
    return v;
}

static uint64_t get_u64(struct rbuf *r)
{
    uint64_t v;
    get(r, &v, sizeof v);
    return v;
}

/* A count of items at least `item_size` bytes each: never more than the
 * bytes left could hold. */
static size_t get_count(struct rbuf *r, size_t item_size)
{
    uint64_t n = get_u64(r);
    if (n > r->n / item_size) {
        r->ok = false;
        return 0;
    }
    return (size_t)n;
}

static char *get_str(struct rbuf *r)
{
    size_t len = get_count(r, 1);
    char *s = xmalloc(len + 1);
    get(r, s, len);
    s[r->ok ? len : 0] = '\0';
    return s;
}

static size_t get_paid(struct engine *e, struct rbuf *r, struct stored_paid *paid)
{
    size_t n = get_count(r, 16);
    if (n > PRICE_MAX_PAID) {
        r->ok = false;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char *name = get_str(r);
        paid[i].programme = engine_intern(e, name);
        paid[i].amount_cny4 = get_i64(r);
        free(name);
    }
    return n;
}

/* A string of the hold's text, copied into it; its offset. */
static size_t get_text(struct rbuf *r, struct hold *h)
{
    char *t = get_str(r);
    size_t at = hold_text(h, t, strlen(t) + 1);
    free(t);
    return at;
}

/* The hold of a waiting engine, NULL (and r->ok) when it had none. The
 * caller installs it. Its base must read back as an engine that holds
 * nothing, for the wait's end replays from it. */
static struct hold *get_hold(const struct config *cfg, struct rbuf *r, uint64_t version)
{
    if (get_u64(r) == 0)
        return NULL;
    struct hold *h = xcalloc(1, sizeof *h);
    h->base_len = get_count(r, 1);
    h->base = xmalloc(h->base_len);
    get(r, h->base, h->base_len);
    if (r->ok) {
        struct error err;
        struct engine *base = snapshot_read(cfg, NULL, h->base, h->base_len, &err);
        r->ok = base && !base->hold;
        engine_free(base);
    }
    h->billing_rows = get_u64(r);
    h->adjustment_rows = get_u64(r);
    h->demand_rows = get_u64(r);
    for (size_t n = get_count(r, 32), i = 0; i < n && r->ok; i++) {
        ARRAY_RESERVE_ONE(h->caps, h->n_caps, h->cap_caps);
        struct held_cap *c = &h->caps[h->n_caps++];
        c->text_at = get_text(r, h);
        get_text(r, h);
        c->year = (int32_t)get_i64(r);
        c->consumed_cny4 = get_i64(r);
    }
    for (size_t n = get_count(r, 16), i = 0; i < n && r->ok; i++) {
        ARRAY_RESERVE_ONE(h->calls, h->n_calls, h->cap_calls);
        struct held_call *c = &h->calls[h->n_calls++];
        memset(c, 0, sizeof *c);
        int64_t kind = get_i64(r);
        c->now_ns = get_i64(r);
        if (kind < HELD_PUSH || kind > (version >= 3 ? HELD_BATCH : HELD_FINISH)) {
            r->ok = false;
            break;
        }
        c->kind = (enum held_kind)kind;
        if (c->kind != HELD_PUSH && c->kind != HELD_QUARANTINE)
            continue;
        int64_t sample_kind = get_i64(r);
        if (sample_kind != SAMPLE_POWER && sample_kind != SAMPLE_COUNTER)
            r->ok = false;
        c->sample_kind = (enum sample_kind)sample_kind;
        c->ts_ns = get_i64(r);
        get(r, &c->value, sizeof c->value);
        c->text_at = get_text(r, h);
        get_text(r, h);
        if (c->kind == HELD_QUARANTINE)
            get_text(r, h);
    }
    return h;
}

struct engine *engine_load(const struct config *cfg, const struct engine_sink *sink,
                           const void *bytes, size_t len, struct error *err)
{
    struct engine *e = snapshot_read(cfg, sink, bytes, len, err);
    if (e)
        hold_update(e); /* under this config the wait may begin or end */
    return e;
}

struct engine *snapshot_read(const struct config *cfg, const struct engine_sink *sink,
                             const void *bytes, size_t len, struct error *err)
{
    struct rbuf r = {bytes, len, true};
    char m[sizeof magic];
    get(&r, m, sizeof m);
    if (!r.ok || memcmp(m, magic, sizeof magic) != 0) {
        error_set(err, "not an engine snapshot");
        return NULL;
    }
    uint64_t version = get_u64(&r);
    if (version < 1 || version > SNAPSHOT_VERSION) {
        error_set(err, "engine snapshot version %llu is not 1 to %d", (unsigned long long)version,
                  SNAPSHOT_VERSION);
        return NULL;
    }
    int64_t interval_s = get_i64(&r);
    if (r.ok && interval_s != cfg->daemon.interval_s) {
        error_set(err,
                  "engine snapshot was made with a %llds interval, the config has %llds: "
                  "intervals cannot change under billed data",
                  (long long)interval_s, (long long)cfg->daemon.interval_s);
        return NULL;
    }
    struct engine *e = engine_alloc(cfg, sink);
    e->caps_known = version == 1 || get_u64(&r) != 0;

    for (size_t n = get_count(&r, 32), i = 0; i < n && r.ok; i++) {
        char *tenant = get_str(&r), *programme = get_str(&r);
        int32_t year = (int32_t)get_i64(&r);
        int64_t consumed = get_i64(&r);
        if (r.ok)
            *caps_consumed(&e->caps, tenant, programme, year) = consumed;
        free(tenant);
        free(programme);
    }

    for (size_t n = get_count(&r, 48), i = 0; i < n && r.ok; i++) {
        char *id = get_str(&r);
        size_t ci = engine_cluster_index(e, id);
        free(id);
        struct cluster_state *cs = &e->clusters[ci];
        cs->closed_until_s = get_i64(&r);
        cs->frozen_until_s = get_i64(&r);
        for (size_t nm = get_count(&r, 16), k = 0; k < nm && r.ok; k++) {
            ARRAY_RESERVE_ONE(cs->marks, cs->n_marks, cs->cap_marks);
            cs->marks[cs->n_marks].upto_s = get_i64(&r);
            cs->marks[cs->n_marks++].at_ns = get_i64(&r);
        }
        for (size_t nr = get_count(&r, 72), k = 0; k < nr && r.ok; k++) {
            ARRAY_RESERVE_ONE(cs->rows, cs->n_rows, cs->cap_rows);
            struct closed_row *row = &cs->rows[cs->n_rows++];
            memset(row, 0, sizeof *row);
            row->start_s = get_i64(&r);
            row->revision = (int32_t)get_i64(&r);
            row->kwh_micro = get_i64(&r);
            row->energy_charge_cny4 = get_i64(&r);
            row->surcharge_cny4 = get_i64(&r);
            row->subsidy_cny4 = get_i64(&r);
            row->net_cny4 = get_i64(&r);
            row->missing_s = get_i64(&r);
            row->n_paid = get_paid(e, &r, row->paid);
            /* sorted, each once: found by binary search (engine.c find_row) */
            if (cs->n_rows > 1 && row->start_s <= row[-1].start_s)
                r.ok = false;
        }
        for (size_t nmo = get_count(&r, 120), k = 0; k < nmo && r.ok; k++) {
            ARRAY_RESERVE_ONE(cs->months, cs->n_months, cs->cap_months);
            struct month_state *ms = &cs->months[cs->n_months++];
            memset(ms, 0, sizeof *ms);
            ms->month_day = (int32_t)get_i64(&r);
            ms->start_s = get_i64(&r);
            ms->end_s = get_i64(&r);
            ms->kwh_micro = get_i64(&r);
            ms->frozen_max_kw_micro = get_i64(&r);
            ms->frozen_max_start_s = get_i64(&r);
            ms->last_row_start_s = get_i64(&r);
            ms->closed = get_i64(&r) != 0;
            ms->revision = (int32_t)get_i64(&r);
            ms->charge_cny4 = get_i64(&r);
            ms->subsidy_cny4 = get_i64(&r);
            ms->net_cny4 = get_i64(&r);
            ms->max_kw_micro = get_i64(&r);
            ms->billing_kw_micro = get_i64(&r);
            ms->n_paid = get_paid(e, &r, ms->paid);
        }
        for (size_t no = version >= 3 ? get_count(&r, 8) : 0, k = 0; k < no && r.ok; k++) {
            int64_t start_s = get_i64(&r);
            /* sorted, each once, on the interval grid, closed and not final */
            if (start_s % e->interval_s != 0 ||
                (cs->n_reopened > 0 && start_s <= cs->reopened[cs->n_reopened - 1]) ||
                cs->closed_until_s == NONE || start_s >= cs->closed_until_s ||
                (cs->frozen_until_s != NONE && start_s < cs->frozen_until_s)) {
                r.ok = false;
                break;
            }
            ARRAY_RESERVE_ONE(cs->reopened, cs->n_reopened, cs->cap_reopened);
            cs->reopened[cs->n_reopened++] = start_s;
        }
        if (cs->n_reopened > 0) {
            cs->listed = true;
            ARRAY_RESERVE_ONE(e->reopened_clusters, e->n_reopened_clusters,
                              e->cap_reopened_clusters);
            e->reopened_clusters[e->n_reopened_clusters++] = ci;
        }
    }

    for (size_t n = get_count(&r, 64), i = 0; i < n && r.ok; i++) {
        uint64_t ci = get_u64(&r);
        char *name = get_str(&r);
        if (ci >= e->n_clusters)
            r.ok = false;
        if (!r.ok) {
            free(name);
            break;
        }
        struct meter_state *m = engine_add_meter(e, e->clusters[ci].id, name, get_i64(&r) != 0);
        free(name);
        m->silent = get_i64(&r) != 0;
        m->first_ns = get_i64(&r);
        m->last_ns = get_i64(&r);
        m->last_arrival_ns = get_i64(&r);
        for (size_t ns = get_count(&r, 16), k = 0; k < ns && r.ok; k++) {
            struct sample s;
            s.ts_ns = get_i64(&r);
            get(&r, &s.value, sizeof s.value);
            size_t at;
            if (r.ok && sample_buf_insert(e->samples, &m->buf, s, &at) != SAMPLE_INSERTED)
                r.ok = false;
        }
        /* Its span holds its samples: the engine appends what is past
         * last_ns without reading the buffer, which must stay sorted. */
        if (r.ok && m->buf.n > 0 &&
            (sample_buf_ts(&m->buf, 0) < m->first_ns ||
             sample_buf_ts(&m->buf, m->buf.n - 1) > m->last_ns))
            r.ok = false;
    }

    struct engine_stats *st = &e->stats;
    st->accepted = get_u64(&r);
    st->duplicates = get_u64(&r);
    st->conflicts = get_u64(&r);
    st->quarantined = get_u64(&r);
    st->billing_rows = get_u64(&r);
    st->adjustment_rows = get_u64(&r);
    st->demand_rows = get_u64(&r);
    if (version >= 3) {
        st->late_samples = get_u64(&r);
        st->intervals_reopened = get_u64(&r);
    }
    if (version >= 2) {
        e->hold = get_hold(cfg, &r, version);
        if (e->hold) {
            e->hold->sink = e->sink;
            e->sink.billing = NULL;
            e->sink.demand = NULL;
        }
    }
    if (!r.ok || r.n != 0) {
        error_set(err, "engine snapshot is truncated or corrupt");
        engine_free(e);
        return NULL;
    }
    return e;
}
