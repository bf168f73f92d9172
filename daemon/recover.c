/*
 * recover: the daemon's start (docs/design.md section 6). Opens the journal
 * (a torn tail is cut and logged), loads the checkpoint if there is one,
 * starts the ledger writer (which reads the yearly caps back from
 * subsidy_lines when neither the checkpoint nor the journal has them) and
 * replays every record after the checkpoint through the same code the live
 * daemon ran, so the engine is where it was and the rows it makes again are
 * those the ledger may be missing.
 */
#include "daemon/history.h"
#include "daemon/log.h"
#include "daemon/server_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct replay_ctx {
    struct server *s;
    struct config *cfg;       /* the engine's, from the journal (NULL: s->cfg) */
    struct record_buf config; /* ... as its RECORD_CONFIG payload */
    uint64_t records, configs;
    struct error err;
    bool failed;
};

/* Makes the config a RECORD_CONFIG payload (or a checkpoint) holds the
 * engine's, as it was at this point of the live run. */
static bool use_config(struct replay_ctx *r, const void *payload, size_t len)
{
    struct errors errs = {0};
    struct config *cfg = ingest_config_of(payload, len, &errs);
    if (!cfg) {
        error_set(&r->err, "a journaled configuration no longer loads: %s%s",
                  errs.n ? errs.msgs[0] : "", errs.n > 1 ? " (and more)" : "");
        errors_free(&errs);
        return false;
    }
    errors_free(&errs);
    if (r->s->engine)
        engine_set_config(r->s->engine, cfg);
    config_free(r->cfg);
    r->cfg = cfg;
    r->config.len = 0;
    record_buf_put(&r->config, payload, len);
    r->configs++;
    return true;
}

static bool replay_record(void *ctx, uint8_t type, const void *payload, size_t len,
                          uint64_t lsn_after)
{
    (void)lsn_after;
    struct replay_ctx *r = ctx;
    struct reprice_effect effect = {0};
    bool ok = type == RECORD_SAMPLES  ? ingest_apply(r->s->engine, payload, len, &r->err)
              : type == RECORD_TICK   ? ingest_apply_tick(r->s->engine, payload, len, &r->err)
              : type == RECORD_CAPS   ? ingest_apply_caps(r->s->engine, payload, len, &r->err)
              : type == RECORD_CONFIG ? use_config(r, payload, len)
              : type == RECORD_REPRICE
                  ? ingest_apply_reprice(r->s->engine, payload, len, &effect, &r->err)
              : type == RECORD_BACKFILL
                  ? history_apply_record(r->s, r->s->engine, payload, len, NULL, &r->err)
                  : (error_set(&r->err, "unknown record type %d", type), false);
    r->records++;
    r->failed = !ok;
    return ok;
}

static bool note_caps(void *ctx, uint8_t type, const void *payload, size_t len, uint64_t lsn)
{
    (void)payload;
    (void)len;
    (void)lsn;
    *(bool *)ctx |= type == RECORD_CAPS;
    return true;
}

/* Whether the journal holds the caps read back from the ledger. */
static bool journal_has_caps(struct journal *j)
{
    bool has = false;
    struct error err;
    journal_replay(j, 0, note_caps, &has, &err);
    return has;
}

static bool open_journal(struct server *s, struct error *err)
{
    uint64_t cut_at = UINT64_MAX;
    s->journal = journal_open(s->state_dir, SEGMENT_BYTES, &cut_at, err);
    if (!s->journal)
        return false;
    if (cut_at != JOURNAL_NOTHING_CUT) {
        char where[512];
        journal_describe_lsn(s->journal, cut_at, where, sizeof where);
        log_msg(LOG_WARNING, "journal: cut a torn or corrupt tail at %s", where);
    }
    return true;
}

/* Loads the checkpoint and replays the journal after it into a new engine;
 * at start (starting) it also starts the ledger writer. */
static bool rebuild(struct server *s, bool starting, struct error *err)
{
    const char *dir = s->state_dir;
    bool found = false;
    uint64_t lsn = 0;
    void *payload = NULL;
    size_t len = 0;
    if (!journal_read_checkpoint(dir, &found, &lsn, &payload, &len, err) && found)
        return false;
    struct engine_sink sink = {s, server_on_billing, server_on_demand, server_on_quarantine, NULL};
    struct replay_ctx r = {.s = s};
    if (found) {
        /* The engine's state under the config in force when it was saved. */
        const unsigned char *state = payload;
        size_t state_len = len;
        uint32_t config_len;
        if (len >= 8 && memcmp(payload, CHECKPOINT_CONFIG_MAGIC, 4) == 0) {
            memcpy(&config_len, state + 4, 4);
            if (config_len > len - 8 || !use_config(&r, state + 8, config_len)) {
                error_set(err, "checkpoint: %s",
                          config_len > len - 8 ? "the configuration is cut short" : r.err.msg);
                free(payload);
                return false;
            }
            state += 8 + config_len;
            state_len -= 8 + config_len;
        }
        s->engine = engine_load(r.cfg ? r.cfg : s->cfg, &sink, state, state_len, err);
        free(payload);
        if (!s->engine) {
            config_free(r.cfg);
            record_buf_free(&r.config);
            return false;
        }
    } else {
        s->engine = engine_new(s->cfg, &sink);
    }
    /* The series cache's memos are handles of the engine it was filled
     * against: a new engine starts it empty (a stale handle would only
     * cost a lookup). */
    server_new_ingest_cache(s);
    /* Started without a checkpoint and without a caps record in the
     * journal (an empty state_dir, or one whose first start never reached
     * PostgreSQL): what the yearly caps have consumed is in the ledger, and
     * no write is taken before it is read back. No checkpoint is written
     * meanwhile, so a restart still knows. */
    if (starting) {
        s->caps_pending = !found && !journal_has_caps(s->journal);
        struct pg_callbacks cb = {server_pg_changed, server_pg_log, s};
        s->pg = pg_start(s->cfg, s->caps_pending, &cb);
    }
    if (found && lsn < journal_start(s->journal)) {
        error_set(err,
                  "the checkpoint starts at journal offset %llu but the journal starts at %llu: "
                  "journal segments are missing",
                  (unsigned long long)lsn, (unsigned long long)journal_start(s->journal));
        return false;
    }
    s->replaying = true;
    bool replayed = journal_replay(s->journal, found ? lsn : 0, replay_record, &r, err);
    if (!replayed && r.failed)
        *err = r.err;
    if (replayed && r.cfg && r.cfg->daemon.interval_s != s->cfg->daemon.interval_s) {
        error_set(err,
                  "interval is %llds in %s but the journal was written with %llds: interval "
                  "cannot change under billed data; restore it or start with a fresh state_dir",
                  (long long)s->cfg->daemon.interval_s, s->config_path,
                  (long long)r.cfg->daemon.interval_s);
        replayed = false;
    }
    /* The files on disk are in force from here; when they differ from the
     * journal's last, that is a reload at start, journaled as such below. */
    bool changed = r.cfg && (r.config.len != s->config_record.len ||
                             memcmp(r.config.p, s->config_record.p, r.config.len) != 0);
    engine_set_config(s->engine, s->cfg);
    config_free(r.cfg);
    record_buf_free(&r.config);
    if (!replayed)
        return false;
    s->replaying = false;
    server_flush_replayed(s);
    /* The first checkpoint must wait for the replay's rows too (the worker
     * is not running, so no lock). */
    s->rows_seq = s->next_seq;
    log_msg(
        LOG_INFO, "recovered: checkpoint %s, %llu journal records replayed (%llu configurations)",
        found ? "loaded" : "none", (unsigned long long)r.records, (unsigned long long)r.configs);
    if (changed)
        log_msg(LOG_NOTICE,
                "the configuration differs from the one the journal ends with: %s is "
                "in force from here",
                s->config_path);
    if (s->config_record.len > JOURNAL_MAX_PAYLOAD) {
        error_set(err, "the configuration files together exceed 64 MiB, more than a journal "
                       "record holds");
        return false;
    }
    /* Every start (and every recovery after a journal failure) journals the
     * config it runs with. */
    worker_submit_record(s, RECORD_CONFIG, &s->config_record);
    s->checkpoint_lsn = found ? lsn : journal_start(s->journal);
    worker_measure(s);
    return true;
}

bool recover(struct server *s, struct error *err)
{
    if (mkdir(s->state_dir, 0750) != 0 && errno != EEXIST) {
        error_set(err, "could not create state_dir %s: %s", s->state_dir, strerror(errno));
        return false;
    }
    return open_journal(s, err) && rebuild(s, true, err);
}

bool recover_again(struct server *s, struct error *err)
{
    journal_close(s->journal);
    s->journal = NULL;
    if (!open_journal(s, err))
        return false; /* the old engine stays for /metrics meanwhile */
    engine_free(s->engine);
    s->engine = NULL;
    ledger_rows_free(&s->rows);
    if (!rebuild(s, false, err)) {
        /* What the files hold cannot be replayed: nothing in-process can
         * make that right. */
        log_msg(LOG_ERR, "journal: %s; stopping", err->msg);
        exit(1);
    }
    return true;
}
