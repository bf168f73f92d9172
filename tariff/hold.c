/*
 * hold: what the engine keeps while it waits for the yearly caps, and the
 * replay that ends the wait (engine.h, "Waiting for the caps").
 *
 * No close can be priced before the caps are known, yet the decisions a
 * push or a tick takes (a duplicate, a quarantine past late_window, which
 * meter exists) must be those of the engine that knew them, at the moment
 * of the call. So while waiting the engine runs as always, with billing
 * and demand cut from its sink, and every call is kept beside it. When the
 * wait ends, an engine is read back from the state the wait began in, the
 * caps are set in it, the calls are made again in order with the real
 * sink (but for quarantines, already told), and its state replaces the
 * waiting one. The engine is deterministic and its decisions do not
 * depend on the caps, so the replay takes the same decisions and emits
 * the rows, states and counters of the engine that knew the caps first.
 */
#include "engine_private.h"

#include <stdio.h>

static bool has_capped_programme(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_programmes; i++)
        if (cfg->programmes[i].has_cap)
            return true;
    return false;
}

bool engine_caps_known(const struct engine *e)
{
    return e->caps_known;
}

bool engine_waiting_for_caps(const struct engine *e)
{
    return !e->caps_known && has_capped_programme(e->cfg);
}

void engine_caps_recovered(struct engine *e)
{
    e->caps_known = true;
    hold_update(e);
}

size_t hold_text(struct hold *h, const char *text, size_t n)
{
    if (h->text_len + n > h->text_cap) {
        while (h->text_len + n > h->text_cap)
            h->text_cap = h->text_cap ? h->text_cap * 2 : 4096;
        h->text = xrealloc(h->text, h->text_cap);
    }
    memcpy(h->text + h->text_len, text, n);
    h->text_len += n;
    return h->text_len - n;
}

void hold_call(struct engine *e, enum held_kind kind, const struct engine_sample *s,
               const char *reason, int64_t now_ns)
{
    struct hold *h = e->hold;
    ARRAY_RESERVE_ONE(h->calls, h->n_calls, h->cap_calls);
    struct held_call *c = &h->calls[h->n_calls++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->now_ns = now_ns;
    if (s) {
        c->sample_kind = s->kind;
        c->ts_ns = s->ts_ns;
        c->value = s->value;
        c->text_at = hold_text(h, s->cluster, strlen(s->cluster) + 1);
        hold_text(h, s->meter, strlen(s->meter) + 1);
        if (reason)
            hold_text(h, reason, strlen(reason) + 1);
    }
}

void hold_cap(struct engine *e, const char *tenant, const char *programme, int32_t year,
              int64_t consumed_cny4)
{
    struct hold *h = e->hold;
    ARRAY_RESERVE_ONE(h->caps, h->n_caps, h->cap_caps);
    struct held_cap *c = &h->caps[h->n_caps++];
    c->text_at = hold_text(h, tenant, strlen(tenant) + 1);
    hold_text(h, programme, strlen(programme) + 1);
    c->year = year;
    c->consumed_cny4 = consumed_cny4;
}

void hold_free(struct hold *h)
{
    if (!h)
        return;
    free(h->base);
    free(h->caps);
    free(h->calls);
    free(h->text);
    free(h);
}

static void begin(struct engine *e)
{
    struct hold *h = xcalloc(1, sizeof *h);
    h->base = engine_save(e, &h->base_len); /* e->hold is still NULL */
    h->sink = e->sink;
    h->billing_rows = e->stats.billing_rows;
    h->adjustment_rows = e->stats.adjustment_rows;
    h->demand_rows = e->stats.demand_rows;
    e->sink.billing = NULL;
    e->sink.demand = NULL;
    e->hold = h;
}

/* The next NUL-ended string at *at in h's text. */
static const char *next_text(const struct hold *h, size_t *at)
{
    const char *t = h->text + *at;
    *at += strlen(t) + 1;
    return t;
}

/* Makes call c again on r, which does not wait. */
static void replay(struct engine *r, const struct hold *h, const struct held_call *c)
{
    if (c->kind == HELD_TICK) {
        engine_tick(r, c->now_ns);
        return;
    }
    if (c->kind == HELD_FINISH) {
        engine_finish(r, c->now_ns);
        return;
    }
    if (c->kind == HELD_BATCH) {
        engine_batch_done(r, c->now_ns);
        return;
    }
    size_t at = c->text_at;
    struct engine_sample s = {.kind = c->sample_kind, .ts_ns = c->ts_ns, .value = c->value};
    s.cluster = next_text(h, &at);
    s.meter = next_text(h, &at);
    if (c->kind == HELD_QUARANTINE) {
        engine_quarantine(r, &s, next_text(h, &at));
        return;
    }
    struct error err;
    if (engine_push(r, &s, c->now_ns, &err))
        return;
    /* Taken when it came, refused now: a reload during the wait removed
     * its cluster. It is kept with the reason, as a replay of the journal
     * keeps it (daemon/ingest.c), and told now: the sink never heard of
     * it. */
    r->sink.quarantine = h->sink.quarantine;
    engine_quarantine(r, &s, err.msg);
    r->sink.quarantine = NULL;
}

static void end(struct engine *e)
{
    struct hold *h = e->hold;
    e->hold = NULL;
    struct engine_sink quiet = h->sink;
    quiet.quarantine = NULL; /* each was told when its sample came */
    struct error err;
    struct engine *r = snapshot_read(e->cfg, &quiet, h->base, h->base_len, &err);
    if (!r) {
        /* Bytes engine_save wrote a moment ago, under the same interval:
         * failing to read them is a bug, and going on would lose rows. */
        fprintf(stderr, "engine: cannot read back the state the wait began in: %s\n", err.msg);
        abort();
    }
    r->caps_known = e->caps_known;
    size_t at;
    for (size_t i = 0; i < h->n_caps; i++) {
        at = h->caps[i].text_at;
        const char *tenant = next_text(h, &at);
        engine_set_cap_consumed(r, tenant, next_text(h, &at), h->caps[i].year,
                                h->caps[i].consumed_cny4);
    }
    for (size_t i = 0; i < h->n_calls; i++)
        replay(r, h, &h->calls[i]);
    r->sink = h->sink;

    /* r's state becomes e's (callers hold e), the waiting one goes. */
    struct engine waited = *e;
    *e = *r;
    *r = waited;
    engine_free(r);
    hold_free(h);
}

void hold_update(struct engine *e)
{
    bool waiting = engine_waiting_for_caps(e);
    if (waiting && !e->hold)
        begin(e);
    else if (!waiting && e->hold)
        end(e);
}
