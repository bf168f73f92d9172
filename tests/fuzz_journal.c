/*
 * Fuzz target for recovery: the journal's segments as a crash or a disk
 * may leave them, the records' payloads as the decoders of ingest.c read
 * them, and the checkpoint with its engine snapshot. The first byte picks
 * the mode (modulo 5):
 *
 *  0 tail       the rest is the last (only) segment. journal_open must cut
 *               it exactly where an independent scan of the format
 *               (journal.h) finds the first bad record, and journal_replay
 *               must then give exactly the records before it; each is
 *               dispatched as recover.c's replay_record does (samples, tick,
 *               caps, reprice, backfill; an unknown type is an error). A replay from a
 *               boundary gives the records after it; from elsewhere it is
 *               an error. After an append, a reopen cuts nothing.
 *  1 records    the rest is a sequence of {u8 type, u16 len, payload}
 *               appended with journal_append (so CRCs are valid, and the
 *               payloads reach the decoders as they are), over small
 *               segments; reopened and replayed, every record comes back
 *               as appended. A payload that does not decode must be an
 *               error, which an independent decoder predicts.
 *  2 segments   byte 1 (flags: bit 0 leaves a gap), bytes 2-3 (u16 split)
 *               and the rest: two segments, only the second of which is
 *               the last. A bad record in the first, or a gap, is an error
 *               of journal_replay, never a cut and never a crash.
 *  3 snapshot   the rest is an engine snapshot, written as a checkpoint
 *               (valid CRC) and read back: engine_load takes it or refuses
 *               it with a message; what it takes it saves again and
 *               loads again to the same bytes (and, with
 *               FUZZ_JOURNAL_ANY_TIME=1, survives a tick).
 *  4 checkpoint the rest is the checkpoint file itself.
 *
 * Every row the replay closes goes through storage/ledger_rows.c as the
 * daemon hands it to PostgreSQL. Records with times the daemon cannot have
 * written are not dispatched (see plausible()).
 *
 * Finding (not fixed here, tariff/backfill.c): engine_backfill follows a
 * NULL or stale cluster pointer for a plan month whose cluster has no
 * interval in the plan (a cluster not in the config, or one the engine has
 * no state for). Such RECORD_BACKFILL payloads are not dispatched unless
 * FUZZ_JOURNAL_ANY_PLAN=1; crash-backfill-month-without-interval
 * reproduces it then.
 *
 * Finding (not fixed here, daemon/ingest.c): ingest_apply pushes the
 * samples it decoded before it finds that a payload does not decode, so a
 * corrupt samples record is applied halfway before replay stops on it.
 * The target counts these and says so once on stderr.
 *
 * libFuzzer:  tests/fuzz_run.sh builds it with clang -fsanitize=fuzzer.
 * Regression: built with -DFUZZ_STANDALONE, main runs the target once on
 *             every file or directory named (meson test:
 *             tests/corpus/journal); `fuzz_journal --make-seeds DIR`
 *             writes the seed corpus.
 */
#include "daemon/ingest.h"
#include "storage/columns.h"
#include "storage/journal.h"
#include "storage/ledger_rows.h"
#include "tests/fuzz_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>
#include <zlib.h>

#define SEGMENT_BYTES      (64u << 20) /* the daemon's */
#define SMALL_SEGMENT      2048        /* mode 1: several segments */
#define MAX_RECORDS_MODE_1 256
#define SEG0               "0000000000000000.seg"

enum { MODE_TAIL, MODE_RECORDS, MODE_SEGMENTS, MODE_SNAPSHOT, MODE_CHECKPOINT, MODES };

static struct config *cfg;
static char dir[PATH_MAX], jdir[PATH_MAX + 16];
static struct ledger_rows rows;
static size_t applied_halfway;

static void on_billing(void *ctx, const struct billing_row *row)
{
    (void)ctx;
    check(row->cluster != NULL && row->tariff_version != NULL);
    ledger_add_billing(&rows, row);
}

static void on_demand(void *ctx, const struct demand_row *row)
{
    (void)ctx;
    check(row->cluster != NULL && row->tariff_version != NULL);
    ledger_add_demand(&rows, row);
}

static void on_quarantine(void *ctx, const struct engine_sample *s, const char *reason)
{
    (void)ctx;
    check(s->cluster && s->meter && reason && reason[0]);
    ledger_add_quarantine(&rows, s, reason, 0);
}

static const struct engine_sink sink = {NULL, on_billing, on_demand, on_quarantine, NULL};

/* The rows as the ledger writer reads them: whole, with their column
 * count. (Replayed payloads are not validated input: no UTF-8 check.) */
static void drain_rows(void)
{
    size_t off = 0, n = 0;
    struct ledger_row row;
    while (ledger_next(&rows, &off, &row)) {
        /* as storage/ledger_rows.c begins them: the columns and 3 more */
        static const int columns[] = {[LEDGER_BILLING] = BILLING_COLUMNS + 3,
                                      [LEDGER_DEMAND] = DEMAND_COLUMNS + 3,
                                      [LEDGER_QUARANTINE] = 6,
                                      [LEDGER_RELEASE] = 2};
        check(row.kind <= LEDGER_RELEASE && row.n == columns[row.kind]);
        n++;
    }
    check(n == rows.n);
    ledger_rows_free(&rows);
}

/* ------------------------------------------------------------------ */
/* Independent decoders                                                */

struct rd {
    const unsigned char *p, *end;
    bool ok;
};

static void take(struct rd *r, void *out, size_t n)
{
    if (!r->ok || (size_t)(r->end - r->p) < n) {
        r->ok = false;
        return;
    }
    if (out)
        memcpy(out, r->p, n);
    r->p += n;
}

/* A name as ingest.c stores it; ingest.c reads it into 512 bytes. */
static void take_name(struct rd *r)
{
    uint16_t len = 0;
    take(r, &len, 2);
    if (len >= 512)
        r->ok = false;
    take(r, NULL, len);
}

/* Whether a payload of this type decodes (ingest.h's formats), and how
 * many whole entries come before the point where it stops decoding. */
static bool decodes(uint8_t type, const unsigned char *p, size_t len, uint32_t *whole)
{
    struct rd r = {p, p + len, true};
    *whole = 0;
    if (type == RECORD_TICK)
        return len == 8;
    if (type != RECORD_SAMPLES && type != RECORD_CAPS)
        return false;
    uint32_t n = 0;
    if (type == RECORD_SAMPLES)
        take(&r, NULL, 8);
    take(&r, &n, 4);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        take_name(&r);
        take_name(&r);
        take(&r, NULL, type == RECORD_SAMPLES ? 1 + 8 + 8 : 4 + 8);
        if (r.ok)
            ++*whole;
    }
    return r.ok && r.p == r.end;
}

/* A reprice record's name: u16 len >= 1, that many bytes without NUL. */
static void take_reprice_name(struct rd *r)
{
    uint16_t len = 0;
    take(r, &len, 2);
    if (r->ok && (len == 0 || (size_t)(r->end - r->p) < len || memchr(r->p, '\0', len)))
        r->ok = false;
    take(r, NULL, len);
}

static void take_reprice_lines(struct rd *r)
{
    uint16_t n = 0;
    take(r, &n, 2);
    for (uint16_t k = 0; k < n && r->ok; k++) {
        take_reprice_name(r);
        take(r, NULL, 8);
    }
}

/* Whether a RECORD_REPRICE payload decodes (ingest.h): the cluster, the
 * month, u32 n intervals of 61 bytes and their lines each, the month's 54
 * bytes and its lines, the two flags 0 or 1, nothing after. */
static bool reprice_decodes(const unsigned char *p, size_t len)
{
    struct rd r = {p, p + len, true};
    uint32_t n = 0;
    take_reprice_name(&r);
    take(&r, NULL, 4);
    take(&r, &n, 4);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        uint8_t flag = 0;
        take(&r, NULL, 12);
        take(&r, &flag, 1);
        take(&r, NULL, 48);
        r.ok &= flag <= 1;
        take_reprice_lines(&r);
    }
    uint8_t has_row = 0;
    take(&r, &has_row, 1);
    take(&r, NULL, 52);
    r.ok &= has_row <= 1;
    take_reprice_lines(&r);
    return r.ok && r.p == r.end;
}

/* Whether a reprice payload holds what a ledger could: its month within
 * the years the daemon's clock accepts (2000 to 2199), its intervals in
 * that month's neighbourhood, and no amount beyond what numeric(20,4)
 * and numeric(20,6) sums parse into without overflow in the arithmetic on
 * them (|v| < 1e15). A payload that does not decode is plausible: its
 * decoder must refuse it. */
static bool reprice_plausible(const unsigned char *p, size_t len)
{
    if (!reprice_decodes(p, len))
        return true;
    const int64_t max = INT64_C(1000000000000000);
    struct rd r = {p, p + len, true};
    uint16_t name = 0;
    int32_t month_day = 0;
    uint32_t n = 0;
    take(&r, &name, 2);
    take(&r, NULL, name);
    take(&r, &month_day, 4);
    take(&r, &n, 4);
    if (month_day < 10957 || month_day > 84005) /* 2000-01-01, 2199-12-31 */
        return false;
    int64_t near = (int64_t)month_day * 86400;
    bool ok = true;
    for (uint32_t i = 0; i <= n; i++) {
        int64_t v[7];
        if (i < n) {
            take(&r, &v[0], 8);
            take(&r, NULL, 5);
            take(&r, &v[1], 48);
            ok &= v[0] > near - 40 * 86400 && v[0] < near + 40 * 86400;
        } else {
            take(&r, NULL, 5);
            take(&r, &v[1], 48);
        }
        for (int k = 1; k < 7; k++)
            ok &= v[k] > -max && v[k] < max;
        uint16_t lines = 0;
        take(&r, &lines, 2);
        for (uint16_t k = 0; k < lines; k++) {
            int64_t amount = 0;
            take(&r, &name, 2);
            take(&r, NULL, name);
            take(&r, &amount, 8);
            ok &= amount > -max && amount < max;
        }
    }
    return ok;
}

/* take_reprice_name, telling where the name is and how long. */
static const unsigned char *take_backfill_name(struct rd *r, uint16_t *len)
{
    *len = 0;
    take(r, len, 2);
    const unsigned char *at = r->p;
    r->p -= 2 * r->ok;
    take_reprice_name(r);
    return at;
}

/* Whether a RECORD_BACKFILL payload decodes (ingest.h): i64 clock; u32
 * clusters of {name, u32 n, n x 24 bytes}; u32 months of {name, i32 day,
 * u8 fate <= 2}; u32 samples of {name, name, u8 kind <= 1, i64, f64,
 * name}; u32 released of i64; nothing after. Every name as a reprice
 * record's (at least a byte, no NUL). When it decodes, *plausible says
 * whether the daemon could have written it (see backfill_plausible). */
static bool backfill_decodes(const unsigned char *p, size_t len, bool *plausible)
{
    const int64_t max = INT64_C(1000000000000000);
    const int64_t min_ns = INT64_C(1704067200) * 1000000000; /* 2024-01-01 */
    const int64_t max_ns = INT64_C(1798761600) * 1000000000; /* 2027-01-01 */
    struct rd r = {p, p + len, true};
    int64_t now = 0;
    uint32_t n = 0, k = 0;
    bool ok = true;
    /* The clusters with intervals (names as offsets into p), for the
     * months. */
    const unsigned char *names[64];
    uint16_t name_len[64];
    size_t n_names = 0;
    bool many = false;
    take(&r, &now, 8);
    ok &= now >= min_ns && now <= max_ns;
    take(&r, &n, 4);
    for (uint32_t g = 0; g < n && r.ok; g++) {
        uint16_t nl;
        const unsigned char *name = take_backfill_name(&r, &nl);
        take(&r, &k, 4);
        if (r.ok && k > 0) {
            if (n_names < 64)
                names[n_names] = name, name_len[n_names++] = nl;
            else
                many = true;
        }
        for (uint32_t i = 0; i < k && r.ok; i++) {
            int64_t v[3] = {0, 0, 0};
            take(&r, v, 24);
            ok &=
                v[0] >= INGEST_CLOCK_MIN_NS / 1000000000 && v[0] < INGEST_CLOCK_MAX_NS / 1000000000;
            ok &= v[1] >= 0 && v[1] < max && v[2] >= 0 && v[2] < max;
        }
    }
    take(&r, &n, 4);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        uint16_t nl;
        int32_t day = 0;
        uint8_t fate = 0;
        const unsigned char *name = take_backfill_name(&r, &nl);
        take(&r, &day, 4);
        take(&r, &fate, 1);
        r.ok &= fate <= 2;
        ok &= day >= 10957 && day <= 84005; /* 2000-01-01, 2199-12-31 */
        bool has_interval = many;
        for (size_t j = 0; j < n_names && r.ok && !has_interval; j++)
            has_interval = name_len[j] == nl && memcmp(names[j], name, nl) == 0;
        ok &= has_interval || !r.ok;
    }
    take(&r, &n, 4);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        uint8_t kind = 0;
        take_reprice_name(&r);
        take_reprice_name(&r);
        take(&r, &kind, 1);
        take(&r, NULL, 16);
        take_reprice_name(&r);
        r.ok &= kind <= 1;
    }
    take(&r, &n, 4);
    if (r.ok && (size_t)(r.end - r.p) / 8 < n)
        r.ok = false;
    take(&r, NULL, (size_t)n * 8 * r.ok);
    *plausible = ok;
    return r.ok && r.p == r.end;
}

static bool any_plan;

/* Whether a backfill payload is one the daemon could have written: its
 * clock 2024 to 2026 (as a tick's), its intervals in the years the
 * daemon's clock accepts with kWh and missing seconds >= 0 and < 1e15, its
 * months 2000 to 2199, and (unless FUZZ_JOURNAL_ANY_PLAN=1, see the
 * finding at the top) every month of a cluster that has intervals in the
 * plan, as backfill_plan_build makes them. One that does not decode is
 * plausible: its decoder must refuse it. */
static bool backfill_plausible(const unsigned char *p, size_t len)
{
    bool plausible;
    if (!backfill_decodes(p, len, &plausible))
        return true;
    return plausible || any_plan;
}

/* Whether a RECORD_CONFIG payload decodes: u32 n >= 1, then n x {u32 len,
 * a name without NUL, u32 len, a text}, nothing after. */
static bool config_decodes(const unsigned char *p, size_t len)
{
    struct rd r = {p, p + len, true};
    uint32_t n = 0;
    take(&r, &n, 4);
    for (uint32_t i = 0; i < n && r.ok; i++) {
        uint32_t name = 0, text = 0;
        take(&r, &name, 4);
        if (r.ok && (size_t)(r.end - r.p) >= name && memchr(r.p, '\0', name))
            return false;
        take(&r, NULL, name);
        take(&r, &text, 4);
        take(&r, NULL, text);
    }
    return r.ok && n > 0 && r.p == r.end;
}

/* Whether every time in a payload is one the daemon could have written
 * now (2024 to 2026: the wall clock, or up to max_future ahead of it) and
 * every value finite and >= 0, as the line protocol parser guarantees.
 * The engine trusts a record's times: a CRC-valid record the daemon did
 * not write overflows its arithmetic (engine_tick's now - last_arrival),
 * and one whose clock is decades ahead makes a tick close every interval
 * in between (minutes of CPU). Both known and reported, and not what this
 * target is for: such records are not dispatched unless
 * FUZZ_JOURNAL_ANY_TIME=1. Values as large as 1.8e308 stay: HTTP can send
 * them too. */
static bool plausible(uint8_t type, const unsigned char *p, size_t len)
{
    const int64_t min_ns = INT64_C(1704067200) * 1000000000; /* 2024-01-01 */
    const int64_t max_ns = INT64_C(1798761600) * 1000000000; /* 2027-01-01 */
    struct rd r = {p, p + len, true};
    int64_t t;
    if (type == RECORD_TICK) {
        if (len != 8)
            return true;
        memcpy(&t, p, 8);
        return t >= min_ns && t <= max_ns;
    }
    if (type == RECORD_REPRICE)
        return reprice_plausible(p, len);
    if (type == RECORD_BACKFILL)
        return backfill_plausible(p, len);
    if (type != RECORD_SAMPLES)
        return true;
    uint32_t n = 0;
    t = 0;
    take(&r, &t, 8);
    take(&r, &n, 4);
    if (t < min_ns || t > max_ns)
        return false;
    for (uint32_t i = 0; i < n && r.ok; i++) {
        double v = 0;
        t = 0;
        take_name(&r);
        take_name(&r);
        take(&r, NULL, 1);
        take(&r, &t, 8);
        take(&r, &v, 8);
        if (r.ok && (t < min_ns || t > max_ns || !isfinite(v) || v < 0))
            return false;
    }
    return true;
}

static bool any_time;
static size_t implausible;

/* ------------------------------------------------------------------ */
/* Replay, as server.c's replay_record                                 */

struct replay {
    struct engine *e;
    bool tolerant; /* go on after a record that does not decode */
    uint64_t records, refused;
    struct error err;
    bool failed;
};

static uint64_t engine_samples(const struct engine *e)
{
    struct engine_stats st;
    engine_stats(e, &st);
    return st.accepted + st.duplicates + st.conflicts + st.quarantined;
}

static bool replay_record(void *ctx, uint8_t type, const void *payload, size_t len,
                          uint64_t lsn_after)
{
    (void)lsn_after;
    struct replay *r = ctx;
    if (!any_time && !plausible(type, payload, len)) {
        implausible++;
        r->records++;
        return true;
    }
    if (type == RECORD_CONFIG) {
        /* A config that builds came from a payload that decodes; one that
         * does not build says why. */
        struct errors errs = {0};
        struct config *cfg = ingest_config_of(payload, len, &errs);
        check(!cfg || config_decodes(payload, len));
        check(cfg || errs.n > 0);
        config_free(cfg);
        errors_free(&errs);
        r->records++;
        return true;
    }
    if (type == RECORD_REPRICE) {
        /* It decodes exactly when the layout says so; a chunk that decodes
         * may still be refused by the engine (a cluster not in the config,
         * intervals out of order), with a reason, and then changes
         * nothing. */
        struct reprice_record rec;
        struct reprice_effect effect = {0};
        bool expect = reprice_decodes(payload, len);
        bool decoded = ingest_decode_reprice(payload, len, &rec, &r->err);
        check(decoded == expect);
        if (decoded)
            reprice_record_free(&rec);
        r->err.msg[0] = '\0';
        bool ok = ingest_apply_reprice(r->e, payload, len, &effect, &r->err);
        check(!ok || decoded);
        check(ok || r->err.msg[0] != '\0');
        check(ok || (effect.billing_rows == 0 && effect.demand_rows == 0));
        drain_rows();
        r->records++;
        r->refused += !ok;
        r->failed = !ok;
        return ok || r->tolerant;
    }
    if (type == RECORD_BACKFILL) {
        /* As history_apply_record: decoded exactly when the layout says
         * so; applied, or refused with a reason and nothing made (not even
         * its quarantined samples); applied, every quarantined sample is
         * a row and every released id a release row. */
        struct backfill_record rec;
        bool plausible;
        bool expect = backfill_decodes(payload, len, &plausible);
        r->err.msg[0] = '\0';
        bool decoded = ingest_decode_backfill(payload, len, &rec, &r->err);
        check(decoded == expect);
        check(decoded || r->err.msg[0] != '\0');
        bool ok = false;
        if (decoded) {
            size_t before = rows.n, offset = rows.len;
            struct reprice_effect *eff = calloc(rec.plan.n_months + 1, sizeof *eff);
            check(eff != NULL);
            ok = ingest_apply_backfill(r->e, &rec, eff, &r->err);
            check(ok || r->err.msg[0] != '\0');
            check(ok || rows.n == before);
            if (ok) {
                uint64_t billed = 0, quarantined = 0;
                for (size_t i = 0; i < rec.plan.n_months; i++)
                    billed += eff[i].billing_rows;
                struct ledger_row row;
                uint64_t billing_rows = 0;
                while (ledger_next(&rows, &offset, &row)) {
                    billing_rows += row.kind == LEDGER_BILLING;
                    quarantined += row.kind == LEDGER_QUARANTINE;
                }
                check(billed <= billing_rows && quarantined >= rec.n_quarantined);
                for (size_t i = 0; i < rec.n_released; i++)
                    ledger_add_release(&rows, rec.released[i], rec.plan.now_ns);
            }
            free(eff);
            backfill_record_free(&rec);
        }
        drain_rows();
        r->records++;
        r->refused += !ok;
        r->failed = !ok;
        return ok || r->tolerant;
    }
    uint32_t whole;
    bool expect = decodes(type, payload, len, &whole);
    uint64_t before = engine_samples(r->e);
    r->err.msg[0] = '\0';
    bool ok = type == RECORD_SAMPLES ? ingest_apply(r->e, payload, len, &r->err)
              : type == RECORD_TICK  ? ingest_apply_tick(r->e, payload, len, &r->err)
              : type == RECORD_CAPS  ? ingest_apply_caps(r->e, payload, len, &r->err)
                                     : (error_set(&r->err, "unknown record type %d", type), false);
    check(ok == expect);
    check(ok || r->err.msg[0] != '\0');
    if (!ok && type == RECORD_SAMPLES) {
        /* What it pushed before it stopped decoding stays pushed. */
        uint64_t pushed = engine_samples(r->e) - before;
        check(pushed <= whole);
        if (pushed > 0 && applied_halfway++ == 0)
            fprintf(stderr,
                    "fuzz_journal: note: ingest_apply pushed %llu samples of a payload "
                    "it then refused (a corrupt record is applied halfway)\n",
                    (unsigned long long)pushed);
    }
    drain_rows();
    r->records++;
    r->refused += !ok;
    r->failed = !ok;
    return ok || r->tolerant;
}

/* Replays into a fresh engine, as recover() does, then again tolerating
 * bad payloads (so every payload reaches its decoder). */
static void replay_all(struct journal *j, uint64_t from)
{
    for (int tolerant = 0; tolerant < 2; tolerant++) {
        struct replay r = {.e = engine_new(cfg, &sink), .tolerant = tolerant};
        struct error err;
        bool ok = journal_replay(j, from, replay_record, &r, &err);
        /* After journal_open, the only way to fail is a record refused. */
        check(ok == !(r.failed && !tolerant));
        check(ok || err.msg[0] == '\0');
        engine_tick(r.e, 1767225600LL * 1000000000); /* 2026-01-01 */
        drain_rows();
        engine_free(r.e);
    }
}

/* ------------------------------------------------------------------ */
/* Scanning a segment (journal.h's format, written from its comment)    */

struct rec_ref {
    uint8_t type;
    uint32_t len;
    uint64_t off;
};

struct scan {
    struct rec_ref *recs;
    size_t n, cap;
    uint64_t end; /* where the good records end */
    bool bad;     /* a bad record starts at end */
};

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void scan_segment(const unsigned char *p, size_t size, struct scan *s)
{
    *s = (struct scan){0};
    uint64_t off = 0;
    while (off < size) {
        if (size - off < JOURNAL_RECORD_HEADER_BYTES)
            break;
        uint32_t len = le32(p + off), crc = le32(p + off + 4);
        uint8_t type = p[off + 8];
        if (len > JOURNAL_MAX_PAYLOAD || len > size - off - JOURNAL_RECORD_HEADER_BYTES ||
            type == 0)
            break;
        uLong c = crc32(0, &type, 1);
        c = crc32(c, p + off + JOURNAL_RECORD_HEADER_BYTES, len);
        if ((uint32_t)c != crc)
            break;
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->recs = realloc(s->recs, s->cap * sizeof *s->recs);
            if (!s->recs)
                abort();
        }
        s->recs[s->n++] = (struct rec_ref){type, len, off};
        off += JOURNAL_RECORD_HEADER_BYTES + (uint64_t)len;
    }
    s->end = off;
    s->bad = off < size;
}

/* Collects what journal_replay hands out, to compare with a scan. */
struct collect {
    const unsigned char *seg; /* the bytes scanned */
    uint64_t seg_start;       /* LSN of seg[0] */
    const struct scan *scan;
    size_t next;
    uint64_t extra; /* records beyond the scan (appended since) */
};

static bool collect_record(void *ctx, uint8_t type, const void *payload, size_t len,
                           uint64_t lsn_after)
{
    struct collect *c = ctx;
    if (c->next == c->scan->n) {
        c->extra++;
        return true;
    }
    const struct rec_ref *r = &c->scan->recs[c->next++];
    check(type == r->type && len == r->len);
    check(lsn_after == c->seg_start + r->off + JOURNAL_RECORD_HEADER_BYTES + len);
    check(memcmp(payload, c->seg + r->off + JOURNAL_RECORD_HEADER_BYTES, len) == 0);
    return true;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

static void write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    check(fd >= 0);
    const unsigned char *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        check(k > 0);
        b += k;
        n -= (size_t)k;
    }
    close(fd);
}

static void clean_state(void)
{
    DIR *d = opendir(jdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                check(unlinkat(dirfd(d), e->d_name, 0) == 0);
        closedir(d);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    unlink(path);
}

static void remove_state(void)
{
    clean_state();
    rmdir(jdir);
    rmdir(dir);
}

static void fuzz_init(void)
{
    struct errors errs = {0};
    cfg = config_from_string("fuzz.conf", fuzz_config_text, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        abort();
    }
    errors_free(&errs);
    any_time = getenv("FUZZ_JOURNAL_ANY_TIME") != NULL;
    any_plan = getenv("FUZZ_JOURNAL_ANY_PLAN") != NULL;
    /* Memory-backed when there is one: fsync is free there. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/tariffd-fuzz-journal-XXXXXX", tmp);
    check(mkdtemp(dir) != NULL);
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    check(mkdir(jdir, 0700) == 0);
    atexit(remove_state);
}

/* ------------------------------------------------------------------ */
/* The modes                                                           */

static struct journal *open_journal(uint64_t segment_bytes, uint64_t *cut)
{
    struct error err;
    struct journal *j = journal_open(dir, segment_bytes, cut, &err);
    if (!j)
        fprintf(stderr, "journal_open: %s\n", err.msg);
    check(j != NULL);
    return j;
}

static void mode_tail(const unsigned char *p, size_t size)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/" SEG0, jdir);
    write_file(path, p, size);
    struct scan s;
    scan_segment(p, size, &s);

    uint64_t cut;
    struct journal *j = open_journal(SEGMENT_BYTES, &cut);
    check(cut == (s.bad ? s.end : JOURNAL_NOTHING_CUT));
    check(journal_end(j) == s.end && journal_bytes(j) == s.end && journal_start(j) == 0);
    struct error err;
    struct collect c = {p, 0, &s, 0, 0};
    check(journal_replay(j, 0, collect_record, &c, &err));
    check(c.next == s.n && c.extra == 0);
    replay_all(j, 0);

    /* From a record boundary: the records after it; from anywhere else
     * (a checkpoint naming a torn place): an error, not a crash. */
    uint64_t from = s.n ? s.recs[s.n / 2].off : 0;
    c = (struct collect){p, 0, &s, s.n / 2, 0};
    check(journal_replay(j, from, collect_record, &c, &err));
    check(c.next == s.n);
    if (s.n > 0) {
        check(!journal_replay(j, 1, collect_record, &c, &err));
        check(strstr(err.msg, "not a record boundary") != NULL);
    }
    check(!journal_replay(j, s.end + 1, collect_record, &c, &err) && err.msg[0]);

    /* The cut left a clean end: an append after it survives a reopen. */
    struct record_buf tick = {0};
    ingest_encode_tick(1767225600LL * 1000000000, &tick);
    uint64_t lsn;
    check(journal_append(j, RECORD_TICK, tick.p, tick.len, &lsn, &err));
    record_buf_free(&tick);
    check(lsn == s.end + JOURNAL_RECORD_HEADER_BYTES + 8);
    journal_close(j);
    j = open_journal(SEGMENT_BYTES, &cut);
    check(cut == JOURNAL_NOTHING_CUT && journal_end(j) == lsn);
    c = (struct collect){p, 0, &s, 0, 0};
    check(journal_replay(j, 0, collect_record, &c, &err));
    check(c.next == s.n && c.extra == 1);
    journal_close(j);
    free(s.recs);
}

struct appended {
    uint8_t type;
    const unsigned char *payload;
    size_t len;
};

struct compare {
    const struct appended *a;
    size_t n, next;
};

static bool compare_record(void *ctx, uint8_t type, const void *payload, size_t len,
                           uint64_t lsn_after)
{
    (void)lsn_after;
    struct compare *c = ctx;
    check(c->next < c->n);
    const struct appended *a = &c->a[c->next++];
    check(type == a->type && len == a->len && (len == 0 || memcmp(payload, a->payload, len) == 0));
    return true;
}

static void mode_records(const unsigned char *p, size_t size)
{
    static struct appended a[MAX_RECORDS_MODE_1];
    size_t n = 0;
    uint64_t cut;
    struct journal *j = open_journal(SMALL_SEGMENT, &cut);
    check(cut == JOURNAL_NOTHING_CUT);
    struct error err;
    const unsigned char *end = p + size;
    while (end - p >= 3 && n < MAX_RECORDS_MODE_1) {
        uint8_t type = p[0];
        size_t len = (size_t)p[1] | (size_t)p[2] << 8;
        p += 3;
        if (len > (size_t)(end - p))
            len = (size_t)(end - p);
        bool ok = journal_append(j, type, p, len, NULL, &err);
        check(ok == (type != 0));
        if (ok)
            a[n++] = (struct appended){type, p, len};
        p += len;
    }
    check(journal_sync(j, &err));
    journal_close(j);

    j = open_journal(SMALL_SEGMENT, &cut);
    check(cut == JOURNAL_NOTHING_CUT);
    struct compare c = {a, n, 0};
    check(journal_replay(j, 0, compare_record, &c, &err));
    check(c.next == n);
    replay_all(j, 0);
    journal_close(j);
}

static void mode_segments(const unsigned char *p, size_t size)
{
    if (size < 3)
        return;
    bool gap = p[0] & 1;
    size_t split = (size_t)p[1] | (size_t)p[2] << 8;
    p += 3;
    size -= 3;
    if (split == 0 || split >= size) {
        mode_tail(p, size);
        return;
    }
    uint64_t start1 = split + gap;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/" SEG0, jdir);
    write_file(path, p, split);
    snprintf(path, sizeof path, "%s/%016llx.seg", jdir, (unsigned long long)start1);
    write_file(path, p + split, size - split);

    struct scan s0, s1;
    scan_segment(p, split, &s0);
    scan_segment(p + split, size - split, &s1);
    uint64_t cut;
    struct journal *j = open_journal(SEGMENT_BYTES, &cut);
    /* Only the last segment is scanned and cut. */
    check(cut == (s1.bad ? start1 + s1.end : JOURNAL_NOTHING_CUT));
    check(journal_end(j) == start1 + s1.end && journal_start(j) == 0);
    check(journal_bytes(j) == split + s1.end);
    struct error err;
    struct collect c = {p, 0, &s0, 0, 0};
    bool ok = journal_replay(j, 0, collect_record, &c, &err);
    /* A damaged segment that is not the last, or a gap, is an error. */
    check(ok == (!s0.bad && !gap));
    check(ok || err.msg[0] != '\0');
    if (ok) {
        check(c.next == s0.n && c.extra == s1.n);
        replay_all(j, 0);
        /* From the second segment's first byte: its records only. */
        c = (struct collect){p + split, start1, &s1, 0, 0};
        check(journal_replay(j, start1, collect_record, &c, &err));
        check(c.next == s1.n && c.extra == 0);
    } else {
        check(c.next <= s0.n);
    }
    journal_close(j);
    free(s0.recs);
    free(s1.recs);
}

/* What recover() does with a checkpoint's payload, and what a loaded
 * engine must then do. */
static void load_snapshot(const void *payload, size_t len)
{
    struct error err = {0};
    struct engine *e = engine_load(cfg, &sink, payload, len, &err);
    if (!e) {
        check(err.msg[0] != '\0');
        return;
    }
    size_t len1, len2;
    unsigned char *b1 = engine_save(e, &len1);
    struct engine *e2 = engine_load(cfg, &sink, b1, len1, &err);
    check(e2 != NULL);
    unsigned char *b2 = engine_save(e2, &len2);
    check(len1 == len2 && memcmp(b1, b2, len1) == 0);
    free(b1);
    free(b2);
    engine_free(e2);
    /* engine_load checks lengths, not times: a loaded snapshot with times
     * the engine cannot have saved overflows a tick (known, reported). */
    if (any_time) {
        engine_tick(e, 1767225600LL * 1000000000);
        drain_rows();
    }
    engine_free(e);
}

static void mode_snapshot(const unsigned char *p, size_t size)
{
    struct error err;
    check(journal_write_checkpoint(dir, 42, p, size, &err));
    bool found;
    uint64_t lsn;
    void *payload;
    size_t len;
    check(journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err));
    check(found && lsn == 42 && len == size && (size == 0 || memcmp(payload, p, size) == 0));
    load_snapshot(payload, len);
    free(payload);
}

static void mode_checkpoint(const unsigned char *p, size_t size)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    write_file(path, p, size);
    bool found;
    uint64_t lsn;
    void *payload;
    size_t len;
    struct error err = {0};
    bool ok = journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err);
    check(found);
    if (!ok) {
        check(err.msg[0] != '\0' && payload == NULL);
        return;
    }
    check(payload != NULL && len + 28 == size);
    load_snapshot(payload, len);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg)
        fuzz_init();
    if (size == 0)
        return 0;
    clean_state();
    const unsigned char *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % MODES) {
    case MODE_TAIL:
        mode_tail(p, n);
        break;
    case MODE_RECORDS:
        mode_records(p, n);
        break;
    case MODE_SEGMENTS:
        mode_segments(p, n);
        break;
    case MODE_SNAPSHOT:
        mode_snapshot(p, n);
        break;
    default:
        mode_checkpoint(p, n);
        break;
    }
    drain_rows();
    return 0;
}

#ifdef FUZZ_STANDALONE
/* ------------------------------------------------------------------ */
/* --make-seeds DIR: real records, made by the code the daemon runs     */

static void seed(const char *out, const char *name, uint8_t mode, const void *p, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", out, name);
    unsigned char *b = malloc(n + 1);
    if (!b)
        abort();
    b[0] = mode;
    memcpy(b + 1, p, n);
    write_file(path, b, n + 1);
    free(b);
}

static void append_bytes(struct record_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    check(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    check(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int make_seeds(const char *out)
{
    fuzz_init();
    const int64_t t0 = 1740758400LL * 1000000000; /* 2025-03-01 00:00 +08:00 */
    struct engine *e = engine_new(cfg, &sink);
    const struct tenant *t1 = config_find_tenant(cfg, "t1");
    static const char *const bodies[] = {
        "power,cluster=c1,meter=m1 kw=40 1740758400\n"
        "power,cluster=c1,meter=m2 w=4000 1740758460\n"
        "power,cluster=c2 kwh=12.5 1740758400\n",
        "power,cluster=c1,meter=m1 kw=42 1740759300\n"
        "power,cluster=c1,meter=\xe6\x9c\xba kw=1 1740759300\n"
        "power,cluster=c2 kwh=20 1740759300\n",
        "power,cluster=c1,meter=m1 kw=41 1740760200\n"
        "power,cluster=c1,meter=m2 w=1 4102444800\n",
    };
    struct record_buf recs[8] = {{0}};
    uint8_t types[8];
    size_t n = 0;
    struct config_file file = {"fuzz.conf", (char *)fuzz_config_text, strlen(fuzz_config_text)};
    struct config_source src = {&file, 1};
    ingest_encode_config(&src, &recs[n]);
    types[n++] = RECORD_CONFIG;
    struct cap_consumed caps[2] = {{"t1", "pa", 2025, 1234567}, {"t2", "pa", 2025, 0}};
    ingest_encode_caps(caps, 2, &recs[n]);
    types[n++] = RECORD_CAPS;
    for (size_t i = 0; i < 3; i++) {
        struct ingest_result res;
        ingest_parse(cfg, e, t1, bodies[i], strlen(bodies[i]), LP_PRECISION_S,
                     t0 + (int64_t)i * 900000000000, &recs[n], NULL, &res);
        check(res.status == INGEST_OK);
        struct error err;
        check(ingest_apply(e, recs[n].p, recs[n].len, &err));
        types[n++] = RECORD_SAMPLES;
        ingest_encode_tick(t0 + (int64_t)(i + 1) * 900000000000, &recs[n]);
        check(ingest_apply_tick(e, recs[n].p, recs[n].len, &err));
        types[n++] = RECORD_TICK;
    }
    drain_rows();

    /* Mode 0: the segment the daemon would write, and what a crash or a
     * disk makes of it. */
    clean_state();
    struct error err;
    struct journal *j = open_journal(SEGMENT_BYTES, NULL);
    for (size_t i = 0; i < n; i++)
        check(journal_append(j, types[i], recs[i].p, recs[i].len, NULL, &err));
    journal_close(j);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/" SEG0, jdir);
    size_t seg_len;
    unsigned char *seg = read_whole(path, &seg_len);
    seed(out, "tail_valid", MODE_TAIL, seg, seg_len);
    seed(out, "tail_torn_payload", MODE_TAIL, seg, seg_len - 5);
    seed(out, "tail_torn_header", MODE_TAIL, seg, seg_len - 17 + 4); /* 4 of 9 bytes */
    unsigned char *bad = malloc(seg_len + 64);
    check(bad != NULL);
    memcpy(bad, seg, seg_len);
    bad[40] ^= 0x10; /* in the caps record's payload: CRC mismatch */
    seed(out, "tail_bad_crc", MODE_TAIL, bad, seg_len);
    memcpy(bad, seg, seg_len);
    memset(bad + seg_len, 0, 64); /* a preallocated, zero-filled tail */
    seed(out, "tail_zero_filled", MODE_TAIL, bad, seg_len + 64);
    memcpy(bad, seg, seg_len);
    bad[0] = 0xff, bad[1] = 0xff, bad[2] = 0xff, bad[3] = 0x7f; /* huge length */
    seed(out, "tail_huge_length", MODE_TAIL, bad, seg_len);

    /* Mode 2: the same records over two segments, and with a gap. */
    size_t split =
        JOURNAL_RECORD_HEADER_BYTES + recs[0].len + JOURNAL_RECORD_HEADER_BYTES + recs[1].len;
    struct record_buf two = {0};
    unsigned char head[3] = {0, (unsigned char)split, (unsigned char)(split >> 8)};
    append_bytes(&two, head, 3);
    append_bytes(&two, seg, seg_len);
    seed(out, "segments_valid", MODE_SEGMENTS, two.p, two.len);
    two.p[0] = 1;
    seed(out, "segments_gap", MODE_SEGMENTS, two.p, two.len);
    two.p[0] = 0;
    two.p[3 + 30] ^= 0x01; /* the first segment, not the last, is damaged */
    seed(out, "segments_bad_first", MODE_SEGMENTS, two.p, two.len);
    record_buf_free(&two);

    /* Mode 1: the records as {type, u16 len, payload}, and payloads the
     * decoders must refuse. */
    struct record_buf list = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char h[3] = {types[i], (unsigned char)recs[i].len,
                              (unsigned char)(recs[i].len >> 8)};
        append_bytes(&list, h, 3);
        append_bytes(&list, recs[i].p, recs[i].len);
    }
    seed(out, "records_valid", MODE_RECORDS, list.p, list.len);
    struct record_buf cut = {0};
    unsigned char h[3] = {RECORD_SAMPLES, (unsigned char)(recs[1].len - 3),
                          (unsigned char)((recs[1].len - 3) >> 8)};
    append_bytes(&cut, h, 3);
    append_bytes(&cut, recs[1].p, recs[1].len - 3); /* two samples, then a torn third */
    append_bytes(&cut, list.p, list.len);
    seed(out, "records_samples_truncated", MODE_RECORDS, cut.p, cut.len);
    cut.len = 0;
    unsigned char unknown[3] = {9, 4, 0};
    append_bytes(&cut, unknown, 3);
    append_bytes(&cut, "abcd", 4);
    append_bytes(&cut, list.p, list.len);
    seed(out, "records_unknown_type", MODE_RECORDS, cut.p, cut.len);
    cut.len = 0;
    unsigned char tick7[3] = {RECORD_TICK, 7, 0};
    append_bytes(&cut, tick7, 3);
    append_bytes(&cut, recs[2].p, 7);
    unsigned char caps_extra[3] = {RECORD_CAPS, (unsigned char)(recs[0].len + 1), 0};
    append_bytes(&cut, caps_extra, 3);
    append_bytes(&cut, recs[0].p, recs[0].len);
    append_bytes(&cut, "x", 1);
    seed(out, "records_tick_and_caps_bad", MODE_RECORDS, cut.p, cut.len);
    /* A correction of c1's March after the valid records (its first two
     * intervals, which the engine still holds, and a month row), then the
     * same record cut short and with a bad flag. */
    static const struct reprice_paid paid[] = {{"pa", 1500}};
    const struct reprice_interval iv[] = {
        {.start_s = t0 / 1000000000,
         .in_range = true,
         .kwh_micro = 10000000,
         .energy_charge_cny4 = 25000,
         .surcharge_cny4 = 2000,
         .subsidy_cny4 = 1500,
         .net_cny4 = 25500,
         .n_paid = 1,
         .paid = paid},
        {.start_s = t0 / 1000000000 + 900,
         .kwh_micro = 10500000,
         .energy_charge_cny4 = 26250,
         .surcharge_cny4 = 2100,
         .net_cny4 = 28350},
    };
    const struct reprice_chunk chunk = {
        .cluster = "c1",
        .month_day = (int32_t)((t0 / 1000000000 + 8 * 3600) / 86400),
        .n_intervals = 2,
        .intervals = iv,
        .month = {.has_row = true,
                  .max_kw_micro = 42000000,
                  .billing_kw_micro = 42000000,
                  .max_interval_start_s = t0 / 1000000000 + 900,
                  .charge_cny4 = 12600000,
                  .net_cny4 = 12600000},
    };
    struct record_buf reprice = {0};
    ingest_encode_reprice(&chunk, &reprice);
    cut.len = 0;
    append_bytes(&cut, list.p, list.len);
    unsigned char rh[3] = {RECORD_REPRICE, (unsigned char)reprice.len,
                           (unsigned char)(reprice.len >> 8)};
    append_bytes(&cut, rh, 3);
    append_bytes(&cut, reprice.p, reprice.len);
    seed(out, "records_reprice", MODE_RECORDS, cut.p, cut.len);
    cut.len = 0;
    rh[1] = (unsigned char)(reprice.len - 1), rh[2] = (unsigned char)((reprice.len - 1) >> 8);
    append_bytes(&cut, rh, 3);
    append_bytes(&cut, reprice.p, reprice.len - 1);
    reprice.p[2 + 2 + 4 + 4 + 8 + 4] = 7; /* the first interval's in_range */
    rh[1] = (unsigned char)reprice.len, rh[2] = (unsigned char)(reprice.len >> 8);
    append_bytes(&cut, rh, 3);
    append_bytes(&cut, reprice.p, reprice.len);
    append_bytes(&cut, list.p, list.len);
    seed(out, "records_reprice_bad", MODE_RECORDS, cut.p, cut.len);
    /* A backfill after the valid records: c1's and c2's 2025-02-10 00:00
     * local (before the live data), February whole for c1 and merged for
     * c2, a quarantined power and counter sample, two released ids; then
     * the same record cut short, with an unknown fate and with a byte
     * after its end. */
    const int64_t feb10 = t0 / 1000000000 - 19 * 86400;
    const int32_t feb = (int32_t)((t0 / 1000000000 + 8 * 3600) / 86400) - 28;
    struct backfill_interval biv[] = {
        {"c1", feb10, 10000000, 0}, {"c1", feb10 + 900, 12500000, 60}, {"c2", feb10, 2500000, 0}};
    struct backfill_month bmo[] = {{"c1", feb, BACKFILL_WHOLE}, {"c2", feb, BACKFILL_MERGED}};
    const struct backfill_plan plan = {t0 + 3 * 900000000000, biv, 3, bmo, 2};
    const struct backfill_quarantined bq[] = {
        {{"c1", "m9", SAMPLE_POWER, t0 - 30 * 86400 * INT64_C(1000000000), 12.5},
         "no tariff version in force"},
        {{"c2", "k1", SAMPLE_COUNTER, t0 - 29 * 86400 * INT64_C(1000000000), 100.25},
         "counter went backwards"}};
    const int64_t released[] = {11, 12};
    struct record_buf backfill = {0};
    ingest_encode_backfill(&plan, bq, 2, released, 2, &backfill);
    {
        /* It applies to an engine that has the caps. */
        struct backfill_record br;
        check(ingest_decode_backfill(backfill.p, backfill.len, &br, &err));
        struct engine *fresh = engine_new(cfg, &sink);
        check(ingest_apply_caps(fresh, recs[1].p, recs[1].len, &err));
        check(ingest_apply_backfill(fresh, &br, NULL, &err));
        backfill_record_free(&br);
        engine_free(fresh);
        drain_rows();
    }
    cut.len = 0;
    append_bytes(&cut, list.p, list.len);
    unsigned char bh[3] = {RECORD_BACKFILL, (unsigned char)backfill.len,
                           (unsigned char)(backfill.len >> 8)};
    append_bytes(&cut, bh, 3);
    append_bytes(&cut, backfill.p, backfill.len);
    seed(out, "records_backfill", MODE_RECORDS, cut.p, cut.len);
    cut.len = 0;
    bh[1] = (unsigned char)(backfill.len - 1), bh[2] = (unsigned char)((backfill.len - 1) >> 8);
    append_bytes(&cut, bh, 3);
    append_bytes(&cut, backfill.p, backfill.len - 1);
    backfill.p[8 + 4 + (2 + 2 + 4 + 48) + (2 + 2 + 4 + 24) + 4 + 2 + 2 + 4] = 3; /* c1's fate */
    bh[1] = (unsigned char)backfill.len, bh[2] = (unsigned char)(backfill.len >> 8);
    append_bytes(&cut, bh, 3);
    append_bytes(&cut, backfill.p, backfill.len);
    backfill.p[8 + 4 + (2 + 2 + 4 + 48) + (2 + 2 + 4 + 24) + 4 + 2 + 2 + 4] = BACKFILL_WHOLE;
    bh[1] = (unsigned char)(backfill.len + 1), bh[2] = (unsigned char)((backfill.len + 1) >> 8);
    append_bytes(&cut, bh, 3);
    append_bytes(&cut, backfill.p, backfill.len);
    append_bytes(&cut, "x", 1);
    append_bytes(&cut, list.p, list.len);
    seed(out, "records_backfill_bad", MODE_RECORDS, cut.p, cut.len);
    record_buf_free(&backfill);
    record_buf_free(&reprice);
    record_buf_free(&cut);
    record_buf_free(&list);

    /* Modes 3 and 4: the engine's snapshot, and the checkpoint holding it. */
    size_t snap_len;
    unsigned char *snap = engine_save(e, &snap_len);
    seed(out, "snapshot_valid", MODE_SNAPSHOT, snap, snap_len);
    seed(out, "snapshot_truncated", MODE_SNAPSHOT, snap, snap_len / 2);
    clean_state();
    check(journal_write_checkpoint(dir, 1234, snap, snap_len, &err));
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    size_t ck_len;
    unsigned char *ck = read_whole(path, &ck_len);
    seed(out, "checkpoint_valid", MODE_CHECKPOINT, ck, ck_len);
    ck[30] ^= 0x40;
    seed(out, "checkpoint_bad_crc", MODE_CHECKPOINT, ck, ck_len);
    seed(out, "checkpoint_short", MODE_CHECKPOINT, ck, 20);
    free(ck);
    free(snap);
    free(seg);
    free(bad);
    for (size_t i = 0; i < n; i++)
        record_buf_free(&recs[i]);
    engine_free(e);
    printf("seeds written to %s\n", out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--make-seeds") == 0)
        return make_seeds(argv[2]);
    int n = fuzz_run_paths(argc - 1, argv + 1);
    if (applied_halfway)
        printf("%zu corrupt samples records were applied halfway before refused\n",
               applied_halfway);
    printf("%d passed, 0 failed\n", n);
    return 0;
}
#endif
