/*
 * lineproto: the InfluxDB line protocol parser (see lineproto.h).
 *
 * Shape: one pass over the whole buffer finds the first byte that is not
 * valid UTF-8 (if any); then lp_parse cuts the buffer into lines with
 * memchr, and parse_line walks one line left to right, once, with a table
 * of byte classes. A line is refused for its invalid UTF-8 before it is
 * parsed, so the lines before it keep their say: their errors, and a point
 * the callback refuses, come first. The first error in a line (syntax
 * first, then the rules for `power` that need the whole line, such as the
 * missing cluster) stops the whole parse.
 *
 * Deliberate choices where InfluxDB's own implementations differ, or where
 * the grammar leaves room (docs/influx-protocol.md section 1.2):
 * - The body must be UTF-8 throughout (RFC 3629: no overlong forms, no
 *   surrogates, nothing past U+10FFFF), comments and string fields
 *   included; so every message, which quotes only parts of lines already
 *   checked, is valid UTF-8 too.
 * - A raw newline ("\n" or "\r\n") in a quoted string field belongs to the
 *   value, as in InfluxDB 2, and the point goes on on the next line; line
 *   numbers stay physical. Only a field value that starts with a quote is
 *   a string: quotes elsewhere are literal. Outside strings, "\r" is only a
 *   line end right before "\n" or at the end of the buffer.
 * - Escapes follow the Go decoder and the server, not the docs' table of
 *   doubled backslashes: in the measurement "\," and "\ ", in tag keys,
 *   tag values and field keys also "\=", in string fields "\"" and "\\";
 *   any other backslash is a literal character (so "\\" in a tag value
 *   stays two backslashes, and "\n" in a string stays backslash and n).
 * - Whitespace between the parts of a line is spaces only; a tab (like any
 *   byte 0x00-0x1F or 0x7F) is an error outside string fields and comments.
 * - A tag key given twice in a point is an error, for every measurement.
 *   Keys are compared as written, which for these escapes is the same as
 *   unescaped. The check runs once the tags of the point are read (so a
 *   syntax error later among the tags is reported first): pairwise up to
 *   TAGS_PAIRWISE tags, by sorting the keys beyond, never quadratic; a
 *   point may have at most TAGS_MAX tags, so the keys fit in struct parser.
 * - Floats are exact: Clinger's fast path when the digits fit in 2^53 and
 *   the power of ten in 10^22 (one IEEE operation on exact operands), and
 *   strtod on a canonical, NUL-terminated copy for everything else (17
 *   digit values, as Go's shortest formatting often gives, take that
 *   path). Overflow ("1e999") is an error; underflow rounds to 0 or a
 *   subnormal, as in strtod and Go.
 * - Errors about a byte or a token name the physical line it is on; an
 *   unterminated string names the line of its opening quote; errors about
 *   the point as a whole (missing cluster, no energy field) and refusals
 *   by the callback name the line where the point starts. On an error,
 *   stats count the physical lines read up to where the parse stopped,
 *   and power_points includes a point the callback refused.
 *
 * Memory: none allocated but by a series cache (lp_parse_cached). The
 * unescaped cluster and meter, and the tag keys of the point being read,
 * live in struct parser on lp_parse's stack (about 25 KiB), or in the
 * cache, so points are valid only during the callback.
 */
#include "daemon/lineproto.h"

#include "tariff/alloc.h"
#include "tariff/utf8.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TAG_MAX   256 /* bytes of an unescaped cluster or meter */
#define QUOTE_MAX 64  /* bytes of a value quoted in a message */
#define QUOTE_BUF (QUOTE_MAX + 6)

/* Tags of one point: up to TAGS_PAIRWISE, duplicates are looked for by
 * comparing each key with those before it (at most 120 comparisons, less
 * work than sorting); beyond, by sorting. TAGS_MAX bounds the keys kept;
 * real points have a few dozen tags at most, and a line of a million tags
 * is refused at the first one too many. */
#define TAGS_PAIRWISE 16
#define TAGS_MAX      1024

/* Digits kept for strtod: more than the 767 significant digits a double's
 * exact halfway point can need, so one sticky digit after them rounds
 * correctly. */
#define FLOAT_DIGITS_MAX 800

/* Byte classes; a scan stops at a byte with any bit of its stop mask. */
enum {
    B_CTRL = 1,   /* 0x00-0x1F, 0x7F: never valid outside strings */
    B_SPACE = 2,  /* ' ' */
    B_COMMA = 4,  /* ',' */
    B_EQUALS = 8, /* '=' */
    B_BSLASH = 16 /* '\\' */
};

#define STOP_MEASUREMENT (B_CTRL | B_SPACE | B_COMMA | B_BSLASH)
#define STOP_KEY         (B_CTRL | B_SPACE | B_COMMA | B_EQUALS | B_BSLASH)
#define STOP_VALUE       (B_CTRL | B_SPACE | B_COMMA)
#define STOP_TIMESTAMP   (B_CTRL | B_SPACE)
#define ESC_MEASUREMENT  (B_SPACE | B_COMMA)
#define ESC_KEY          (B_SPACE | B_COMMA | B_EQUALS)

#define CTRL8(b)                                                                                   \
    [b] = B_CTRL, [b + 1] = B_CTRL, [b + 2] = B_CTRL, [b + 3] = B_CTRL, [b + 4] = B_CTRL,          \
    [b + 5] = B_CTRL, [b + 6] = B_CTRL, [b + 7] = B_CTRL

static const unsigned char byte_class[256] = {
    CTRL8(0x00),     CTRL8(0x08),     CTRL8(0x10),      CTRL8(0x18),       [0x7f] = B_CTRL,
    [' '] = B_SPACE, [','] = B_COMMA, ['='] = B_EQUALS, ['\\'] = B_BSLASH,
};

static inline unsigned cls(char c)
{
    return byte_class[(unsigned char)c];
}

static inline bool is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

static const char *const field_names[] = {
    [LP_FIELD_KW] = "kw",
    [LP_FIELD_W] = "w",
    [LP_FIELD_KWH] = "kwh",
    [LP_FIELD_WH] = "wh",
};

struct tag_key {
    const char *p; /* as written, escapes included */
    size_t n;
    uint64_t fp; /* of n and the first and last 8 bytes, for sorting */
};

struct parser {
    int line;               /* the physical line being read */
    int point_line;         /* where the point being read starts */
    const char *line_start; /* of the physical line, for columns in messages */
    const char *line_end;   /* of the physical line, before its "\r\n" or "\n" */
    const char *nl;         /* its "\n", NULL when it is the last line */
    const char *bufend;
    const char *bad_utf8; /* the first byte of invalid UTF-8, or bufend */
    bool more;            /* more input follows the buffer (lp_parse_stream) */
    bool incomplete;      /* a string field ran into the end of the buffer */
    enum lp_precision precision;
    lp_point_fn fn;
    void *ctx;
    struct lp_stats *stats;
    struct lp_error *err;
    struct lp_cache *cache; /* NULL: every line parsed in full */
    /* The last timestamp parse_rest_fast read, 8 to 16 bytes long, as its
     * first and last 8 bytes; ts_len 0: none. */
    size_t ts_len;
    uint64_t ts_head, ts_tail;
    int64_t ts_ns;
    char cluster[TAG_MAX + 1];
    char meter[TAG_MAX + 1];
    struct tag_key tags[TAGS_MAX];
};

/* ---------------------------------------------------------------- */
/* Series keys seen before                                           */

/* A series key is a line's bytes before its first space: the measurement
 * and the tags. Their parse depends on those bytes alone (the line's UTF-8
 * was checked when it was entered), so a key that parsed as a valid
 * `power` point with a cluster parses the same every time: a line whose
 * key is byte for byte one the cache holds skips to its fields, with the
 * cluster and meter the first parse gave. Only keys without a space (no
 * escaped one) are entered, so "the bytes before the first space" is the
 * whole key.
 *
 * The keys are kept in the order they came (a fleet's telemetry repeats
 * its order, so a round of its lines walks them from start to end, and
 * memory is read in sequence, not at random) and found by an index, open
 * addressing kept at most half full. Its keys are bounded in number
 * (lp_cache_new) and their text in bytes, CACHE_TEXT_PER_KEY a key on
 * average: at either bound it is emptied and fills again (a memo is only
 * ever a shortcut), so keys made up by the million (a tag whose value
 * changes on every line) cost parsing, never unbounded memory. */
#define CACHE_KEY_MAX 256 /* longer keys are parsed in full every time */
/* A key further from its index slot is not cached. With the index at
 * most half full, linear probing put some key more than 32 slots away in
 * about one fleet of 5,000 keys in 30 (a test that wants every key cached
 * failed that often); more than 64, in none of 300 simulated, nor in a
 * million keys. Keys made to collide cost at most 64 probes of 8 bytes. */
#define CACHE_PROBES_MAX   64
#define CACHE_TEXT_PER_KEY 128
#define CACHE_KEYS_MAX     (1u << 20)

struct cached_key {
    uint64_t hash;  /* never 0 */
    uint32_t key_n; /* text[0..key_n): the key as written */
    uint32_t meter; /* offset in text of the meter, NUL-terminated */
    uint64_t memo;  /* the caller's word for this key (lp_point.memo) */
    char *text;     /* key, then cluster and meter unescaped, each NUL-ended */
    /* Telemetry repeats its order. The key that came next the last time
     * this one came (key + 1; 0: none yet) is looked at first; the one
     * that came CACHE_AHEAD keys later, and its text, are asked for from
     * memory now, so they are there when their line comes. */
    uint32_t next, ahead;
    const char *ahead_text;
    uint64_t ahead_memo; /* that key's memo, for lp_point.ahead_memo */
};

#define CACHE_AHEAD 4

/* An index slot: the key's number + 1 (0: empty), and the upper half of
 * its hash, so a probe reads the key only when that matches. */
struct cache_index {
    uint32_t tag;
    uint32_t key;
};

struct lp_cache {
    struct cached_key *keys; /* in the order they came */
    size_t n, cap;
    struct cache_index *index;
    size_t size; /* of index: a power of two, or 0 before the first key */
    size_t max_keys, text_bytes;
    uint64_t seed; /* random: which keys collide cannot be worked out */
    /* The keys (+ 1; 0: none) of the last CACHE_AHEAD keys found or
     * entered, the last one at recent[seen % CACHE_AHEAD]. */
    uint32_t recent[CACHE_AHEAD];
    size_t seen;
    size_t hashed;       /* lines whose key was not the one predicted */
    uint32_t back;       /* the key (+ 1) CACHE_AHEAD before the last one followed */
    uint64_t ahead_memo; /* for the point being read: lp_point.ahead_memo */
};

struct lp_cache *lp_cache_new_seeded(size_t max_keys, uint64_t seed)
{
    struct lp_cache *c = xcalloc(1, sizeof *c);
    c->max_keys = max_keys < 64 ? 64 : max_keys > CACHE_KEYS_MAX ? CACHE_KEYS_MAX : max_keys;
    c->seed = seed;
    return c;
}

struct lp_cache *lp_cache_new(size_t max_keys)
{
    /* Without the kernel's randomness (never on Linux 3.17 and later) the
     * probe bound alone keeps colliding keys cheap. */
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)(uintptr_t)&seed * UINT64_C(0x9E3779B97F4A7C15);
    return lp_cache_new_seeded(max_keys, seed);
}

size_t lp_cache_keys(const struct lp_cache *c)
{
    return c->n;
}

size_t lp_cache_hashed(const struct lp_cache *c)
{
    return c->hashed;
}

static void cache_empty(struct lp_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i].text);
    free(c->keys);
    free(c->index);
    c->keys = NULL;
    c->index = NULL;
    c->size = c->n = c->cap = c->seen = c->text_bytes = 0;
    memset(c->recent, 0, sizeof c->recent);
}

void lp_cache_free(struct lp_cache *c)
{
    if (!c)
        return;
    cache_empty(c);
    free(c);
}

static inline uint64_t load8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Never 0. A key of 8 bytes or more is read in whole words, the last one
 * overlapping the one before (no byte-wise tail, whose store and reload
 * stalled the lookup). Seeded per cache: a sender cannot make up keys
 * that collide, and had it the luck to, a key at most CACHE_PROBES_MAX
 * index slots away is all a lookup ever reads. */
static inline uint64_t key_hash(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = (seed ^ n) * UINT64_C(0x9E3779B97F4A7C15);
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            h = (h ^ load8(p + i)) * UINT64_C(0xFF51AFD7ED558CCD);
            h ^= h >> 32;
        }
        h ^= load8(p + n - 8);
    } else {
        for (size_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)p[i]) * UINT64_C(0x100000001B3);
    }
    /* Every bit of the key into the low bits, which pick the slot: keys
     * alike but for their last bytes (meter names) must not pile up. */
    h = (h ^ (h >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    h = (h ^ (h >> 27)) * UINT64_C(0x94D049BB133111EB);
    h ^= h >> 31;
    return h | 1;
}

/* Whether a[0..n) and b[0..n) are the same bytes, in words as key_hash. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    if (n < 8)
        return memcmp(a, b, n) == 0;
    /* No early exit: the words are or-ed together, two at a time, and
     * the one branch is at the end (keys mostly match). */
    uint64_t diff = load8(a + n - 8) ^ load8(b + n - 8);
    size_t i = 0;
    for (; i + 16 < n; i += 16)
        diff |= (load8(a + i) ^ load8(b + i)) | (load8(a + i + 8) ^ load8(b + i + 8));
    if (i + 8 < n)
        diff |= load8(a + i) ^ load8(b + i);
    return !diff;
}

static inline uint32_t hash_tag(uint64_t h)
{
    return (uint32_t)(h >> 32);
}

/* The key key[0..n) (hash h), or NULL. */
static inline struct cached_key *cache_lookup(struct lp_cache *c, const char *key, size_t n,
                                              uint64_t h)
{
    if (!c->size)
        return NULL;
    size_t mask = c->size - 1;
    uint32_t tag = hash_tag(h);
    for (size_t i = h & mask, probes = 0; probes < CACHE_PROBES_MAX; i = (i + 1) & mask, probes++) {
        struct cache_index *x = &c->index[i];
        if (!x->key)
            return NULL;
        if (x->tag != tag)
            continue;
        struct cached_key *s = &c->keys[x->key - 1];
        if (s->hash == h && s->key_n == n && same_bytes(s->text, key, n))
            return s;
    }
    return NULL;
}

/* Indexes key number k, which no index slot holds yet; false when its
 * slot is too far (the index is at most half full: only keys made to
 * collide get there). */
static bool index_key(struct lp_cache *c, size_t k)
{
    size_t mask = c->size - 1;
    uint64_t h = c->keys[k].hash;
    for (size_t i = h & mask, probes = 0; probes < CACHE_PROBES_MAX; i = (i + 1) & mask, probes++) {
        if (!c->index[i].key) {
            c->index[i] = (struct cache_index){hash_tag(h), (uint32_t)k + 1};
            return true;
        }
    }
    return false;
}

/* Enters key[0..n) (hash h, not held) with the cluster and meter its parse
 * gave; returns it, or NULL when it is left out (too far from its index
 * slot). */
static struct cached_key *cache_enter(struct lp_cache *c, const char *key, size_t n, uint64_t h,
                                      const char *cluster, const char *meter)
{
    size_t cn = strlen(cluster), mn = strlen(meter), text_n = n + cn + mn + 2;
    if (c->n == c->max_keys || c->text_bytes + text_n > c->max_keys * CACHE_TEXT_PER_KEY)
        cache_empty(c);
    if ((c->n + 1) * 2 > c->size) {
        /* The keys stay where they are: only the index is made again. */
        free(c->index);
        c->size = c->size ? c->size * 2 : 64;
        c->index = xcalloc(c->size, sizeof *c->index);
        advise_huge(c->index, c->size * sizeof *c->index);
        /* A key too far from its slot now is not found by its hash any
         * more: it may come in again (both copies are the same bytes and
         * give the same cluster and meter). */
        for (size_t k = 0; k < c->n; k++)
            (void)index_key(c, k);
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        c->keys = xrealloc_huge_array(c->keys, c->n, cap, sizeof *c->keys);
        c->cap = cap;
    }
    struct cached_key *s = &c->keys[c->n];
    s->hash = h;
    if (!index_key(c, c->n))
        return NULL;
    s->text = xmalloc(text_n);
    c->text_bytes += text_n;
    memcpy(s->text, key, n);
    memcpy(s->text + n, cluster, cn + 1);
    memcpy(s->text + n + cn + 1, meter, mn + 1);
    s->key_n = (uint32_t)n;
    s->meter = (uint32_t)(n + cn + 1);
    s->memo = 0;
    s->next = s->ahead = 0;
    s->ahead_text = NULL;
    s->ahead_memo = 0;
    c->n++;
    return s;
}

/* The key that came after the last one found, the last time, or NULL. */
static inline struct cached_key *cache_predicted(const struct lp_cache *c)
{
    uint32_t last = c->recent[c->seen % CACHE_AHEAD];
    if (!last)
        return NULL;
    uint32_t next = c->keys[last - 1].next;
    return next ? &c->keys[next - 1] : NULL;
}

/* s is the key of the line being read: it is what followed the
 * last key, and what came CACHE_AHEAD keys after an earlier one; the key
 * that came CACHE_AHEAD after it last time is asked for. */
static inline void cache_follow(struct lp_cache *c, struct cached_key *s)
{
    uint32_t at = (uint32_t)(s - c->keys) + 1;
    uint32_t last = c->recent[c->seen % CACHE_AHEAD];
    if (last && c->keys[last - 1].next != at)
        c->keys[last - 1].next = at;
    c->seen++;
    uint32_t back = c->recent[c->seen % CACHE_AHEAD]; /* CACHE_AHEAD keys ago */
    c->back = back;
    if (back) {
        struct cached_key *b = &c->keys[back - 1];
        if (b->ahead != at || b->ahead_memo != s->memo) {
            b->ahead = at;
            b->ahead_text = s->text;
            b->ahead_memo = s->memo;
        }
    }
    c->recent[c->seen % CACHE_AHEAD] = at;
    c->ahead_memo = 0;
    if (s->ahead) {
        __builtin_prefetch(&c->keys[s->ahead - 1]);
        __builtin_prefetch(s->ahead_text);
        c->ahead_memo = s->ahead_memo;
    }
}

/* After the point of s, a key just entered, went to the caller: the memo
 * the caller gave it is what the key CACHE_AHEAD before it names from the
 * fleet's next round on (cache_follow copied it while it was still 0). */
static void cache_noted(struct lp_cache *c, const struct cached_key *s)
{
    if (c->back && c->keys[c->back - 1].ahead == (uint32_t)(s - c->keys) + 1)
        c->keys[c->back - 1].ahead_memo = s->memo;
}

/* ---------------------------------------------------------------- */
/* Messages                                                          */

__attribute__((format(printf, 3, 0))) static bool vfail_at(struct parser *ps, int line,
                                                           const char *fmt, va_list ap)
{
    struct lp_error *err = ps->err;
    int n = snprintf(err->msg, sizeof err->msg, "line %d: ", line);
    vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
    err->line = line;
    return false;
}

/* An error on the physical line being read. */
__attribute__((format(printf, 2, 3))) static bool fail(struct parser *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(ps, ps->line, fmt, ap);
    va_end(ap);
    return false;
}

/* An error on an earlier line of the point being read. */
__attribute__((format(printf, 3, 4))) static bool fail_at(struct parser *ps, int line,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(ps, line, fmt, ap);
    va_end(ap);
    return false;
}

static bool fail_char(struct parser *ps, const char *at)
{
    return fail(ps, "invalid character 0x%02X at column %zu", (unsigned)(unsigned char)*at,
                (size_t)(at - ps->line_start) + 1);
}

/* "expected X, found Y" where Y is the byte at p, or the end of the line;
 * a control character there is reported as such instead. */
__attribute__((format(printf, 4, 5))) static bool
fail_expected(struct parser *ps, const char *p, const char *end, const char *fmt, ...)
{
    if (p < end && (cls(*p) & B_CTRL))
        return fail_char(ps, p);
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p == end)
        return fail(ps, "%s, found end of line", what);
    /* The whole character, when it is UTF-8 (only after a string field). */
    unsigned char b = (unsigned char)*p;
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (n > (size_t)(end - p))
        n = (size_t)(end - p);
    return fail(ps, "%s, found \"%.*s\"", what, (int)n, p);
}

/* s[0..n) in double quotes for a message: unescaped (the escapable byte
 * classes are given, 0 for none), cut to QUOTE_MAX bytes at a UTF-8
 * boundary, "..." marking the cut. */
static const char *quote(char buf[QUOTE_BUF], const char *s, size_t n, unsigned escapable)
{
    size_t o = 0, i = 0;
    buf[o++] = '"';
    while (i < n && o < QUOTE_MAX + 1) {
        char c = s[i++];
        if (escapable && c == '\\' && i < n && (cls(s[i]) & escapable))
            c = s[i++];
        buf[o++] = c;
    }
    if (i < n) {
        size_t lead = o;
        while (lead > 1 && ((unsigned char)buf[lead - 1] & 0xC0) == 0x80)
            lead--;
        if (lead > 1 && (unsigned char)buf[lead - 1] >= 0xC0) {
            unsigned char b = (unsigned char)buf[lead - 1];
            size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
            if (o - (lead - 1) < need)
                o = lead - 1;
        }
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static const char *precision_name(enum lp_precision p)
{
    switch (p) {
    case LP_PRECISION_US:
        return "us";
    case LP_PRECISION_MS:
        return "ms";
    case LP_PRECISION_S:
        return "s";
    case LP_PRECISION_M:
        return "m";
    case LP_PRECISION_H:
        return "h";
    default:
        return "ns";
    }
}

/* ---------------------------------------------------------------- */
/* UTF-8 and physical lines                                          */

/* Starts reading the physical line at p: finds where it ends, and refuses
 * it when it holds the first invalid UTF-8 of the buffer, before anything
 * else in it is looked at. */
__attribute__((always_inline)) static inline bool enter_line(struct parser *ps, const char *p)
{
    if (ps->line == INT_MAX)
        return fail(ps, "too many lines");
    ps->line++;
    ps->stats->lines++;
    const char *nl = memchr(p, '\n', (size_t)(ps->bufend - p));
    const char *end = nl ? nl : ps->bufend;
    ps->line_start = p;
    ps->nl = nl;
    if (ps->bad_utf8 < end)
        return fail(ps, "invalid UTF-8 at column %zu", (size_t)(ps->bad_utf8 - p) + 1);
    if (end > p && end[-1] == '\r')
        end--;
    ps->line_end = end;
    return true;
}

/* ---------------------------------------------------------------- */
/* Tokens                                                            */

/* Skips a token that ends at a byte of `stop`, where a backslash before a
 * byte of `escapable` escapes it and any other backslash is literal. Sets
 * *esc when an escape was seen (the unescaped text then differs). */
static inline const char *scan(const char *p, const char *end, unsigned stop, unsigned escapable,
                               bool *esc)
{
    while (p < end) {
        unsigned c = cls(*p);
        if (!(c & stop)) {
            p++;
            continue;
        }
        if (!(c & B_BSLASH))
            break;
        if (p + 1 < end && (cls(p[1]) & escapable)) {
            *esc = true;
            p += 2;
        } else {
            p++;
        }
    }
    return p;
}

/* A tag value, unescaped into dst[0..TAG_MAX] and NUL-terminated. NULL
 * when it is longer than TAG_MAX bytes. */
static const char *scan_copy(const char *p, const char *end, char *dst)
{
    size_t n = 0;
    while (p < end) {
        char c = *p;
        unsigned k = cls(c);
        if (k & STOP_KEY) {
            if (!(k & B_BSLASH))
                break;
            if (p + 1 < end && (cls(p[1]) & ESC_KEY))
                c = *++p;
        }
        if (n == TAG_MAX)
            return NULL;
        dst[n++] = c;
        p++;
    }
    dst[n] = '\0';
    return p;
}

/* A string field after its opening quote: sets *pp to the byte after the
 * closing quote. A raw newline belongs to the string, as in InfluxDB 2, so
 * the string may go on over the next lines, which are entered on the way
 * (*end follows them). False with the error set when the buffer ends
 * first or a line is refused. */
static bool scan_string(struct parser *ps, const char **pp, const char **end, const char *k0,
                        size_t kn)
{
    int open_line = ps->line;
    const char *p = *pp, *e = *end;
    for (;;) {
        while (p < e) {
            char c = *p++;
            if (c == '"') {
                *pp = p;
                *end = e;
                return true;
            }
            /* Before "\r\n", "\n" or the end of the buffer, a backslash
             * escapes nothing and is literal. */
            if (c == '\\' && p < e && (*p == '"' || *p == '\\'))
                p++;
        }
        if (!ps->nl || ps->nl + 1 == ps->bufend) {
            if (ps->more) { /* the rest of the string is still to come */
                ps->incomplete = true;
                return false;
            }
            char qk[QUOTE_BUF];
            return fail_at(ps, open_line, "unterminated string in field %s",
                           quote(qk, k0, kn, ESC_KEY));
        }
        if (!enter_line(ps, ps->nl + 1))
            return false;
        p = ps->line_start;
        e = ps->line_end;
    }
}

/* ---------------------------------------------------------------- */
/* Duplicate tag keys                                                */

/* Keys (never empty) that share a prefix, as host and hostname, or a
 * length, as t1 and t2, mostly differ in length or last byte. */
static inline bool same_key(const struct tag_key *a, const struct tag_key *b)
{
    return a->n == b->n && a->p[a->n - 1] == b->p[b->n - 1] && memcmp(a->p, b->p, a->n) == 0;
}

static inline uint64_t load_upto8(const char *p, size_t n)
{
    uint64_t w = 0;
    memcpy(&w, p, n < 8 ? n : 8);
    return w;
}

/* A fingerprint in O(1) whatever the length: sorting compares it first,
 * and only keys alike in length and both ends fall back to memcmp (so
 * keys made alike cost comparisons, never more of them). */
static void fingerprint(struct tag_key *k)
{
    uint64_t h = load_upto8(k->p, k->n) * UINT64_C(0x9E3779B97F4A7C15);
    if (k->n > 8)
        h ^= load_upto8(k->p + k->n - 8, 8) * UINT64_C(0xC2B2AE3D27D4EB4F);
    h ^= k->n;
    k->fp = h ^ (h >> 29);
}

/* Any total order puts equal keys together: fingerprint, length, bytes,
 * then place in the line. */
static int key_cmp(const struct tag_key *a, const struct tag_key *b)
{
    if (a->fp != b->fp)
        return a->fp < b->fp ? -1 : 1;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    int c = memcmp(a->p, b->p, a->n);
    if (c != 0)
        return c;
    return a->p < b->p ? -1 : a->p > b->p;
}

static void sift_down(struct tag_key *t, size_t root, size_t n)
{
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && key_cmp(&t[child], &t[child + 1]) < 0)
            child++;
        if (key_cmp(&t[root], &t[child]) >= 0)
            return;
        struct tag_key tmp = t[root];
        t[root] = t[child];
        t[child] = tmp;
    }
}

/* Heapsort: in place and O(n log n) whatever the keys (qsort may
 * allocate, and a hash table could be fed colliding keys). */
static void sort_keys(struct tag_key *t, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(t, i, n);
    for (size_t i = n; i-- > 1;) {
        struct tag_key tmp = t[0];
        t[0] = t[i];
        t[i] = tmp;
        sift_down(t, 0, i);
    }
}

/* duplicate_tag beyond TAGS_PAIRWISE keys: sorts t. Kept out of line so
 * that the pairwise case, almost every point, stays small. */
__attribute__((noinline)) static const struct tag_key *duplicate_tag_sorting(struct tag_key *t,
                                                                             size_t n)
{
    for (size_t i = 0; i < n; i++)
        fingerprint(&t[i]);
    sort_keys(t, n);
    /* Equal keys are now together, in line order: a key equal to the one
     * before it is a second (or later) occurrence, and the earliest of
     * those is the answer. */
    const struct tag_key *first = NULL;
    for (size_t i = 1; i < n; i++)
        if (same_key(&t[i - 1], &t[i]) && (!first || t[i].p < first->p))
            first = &t[i];
    return first;
}

/* The second occurrence of the tag key, among t[0..n), whose second
 * occurrence comes first in the line; NULL when every key is distinct. */
static inline const struct tag_key *duplicate_tag(struct tag_key *t, size_t n)
{
    if (n > TAGS_PAIRWISE)
        return duplicate_tag_sorting(t, n);
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (same_key(&t[i], &t[j]))
                return &t[i];
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Values                                                            */

enum status { ST_OK, ST_SYNTAX, ST_RANGE };

/* [-]digits as an unsigned magnitude; *neg tells the sign. */
static enum status parse_digits(const char *s, const char *e, bool allow_minus, bool *neg,
                                uint64_t *out)
{
    *neg = allow_minus && s < e && *s == '-';
    if (*neg)
        s++;
    if (s == e)
        return ST_SYNTAX;
    uint64_t v = 0;
    for (const char *p = s; p < e; p++) {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9)
            return ST_SYNTAX;
        v = v * 10 + d; /* wraps only past 19 digits, checked below */
    }
    if (e - s > 19) {
        v = 0;
        for (; s < e; s++) {
            unsigned d = (unsigned)(*s - '0');
            if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
                return ST_RANGE;
            v = v * 10 + d;
        }
    }
    *out = v;
    return ST_OK;
}

static enum status to_int64(bool neg, uint64_t u, int64_t *out)
{
    if (u > (uint64_t)INT64_MAX + neg)
        return ST_RANGE;
    *out = neg ? (u == 0 ? 0 : -(int64_t)(u - 1) - 1) : (int64_t)u;
    return ST_OK;
}

/* [-]digits within int64. */
static enum status parse_int64(const char *s, const char *e, int64_t *out)
{
    bool neg;
    uint64_t u;
    enum status st = parse_digits(s, e, true, &neg, &u);
    return st == ST_OK ? to_int64(neg, u, out) : st;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The slow path: all significant digits of s (at most FLOAT_DIGITS_MAX,
 * then a sticky 1 when a non-zero digit was cut) with a decimal exponent,
 * in a form strtod reads the same in every locale: "[-]DDDDe[-]X". */
static enum status parse_float_slow(const char *s, const char *e, bool neg, int64_t exp10,
                                    double *out)
{
    char buf[FLOAT_DIGITS_MAX + 32];
    size_t n = 0, sig = 0, frac = 0;
    bool in_frac = false, sticky = false;
    if (neg)
        buf[n++] = '-';
    size_t d0 = n;
    for (const char *p = s + neg; p < e && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            in_frac = true;
            continue;
        }
        frac += in_frac;
        if (sig == 0 && *p == '0')
            continue;
        sig++;
        if (n - d0 < FLOAT_DIGITS_MAX)
            buf[n++] = *p;
        else if (*p != '0')
            sticky = true;
    }
    if (sticky)
        buf[n++] = '1';
    /* value = 0.DIGITS * 10^point, and point beyond +-1000 is inf or 0. */
    int64_t point = (int64_t)sig + exp10 - (int64_t)frac;
    if (point > 1000)
        point = 1000;
    if (point < -1000)
        point = -1000;
    snprintf(buf + n, sizeof buf - n, "e%lld", (long long)(point - (int64_t)(n - d0)));
    double v = strtod(buf, NULL);
    if (isinf(v))
        return ST_RANGE;
    *out = v;
    return ST_OK;
}

/* floatfield = [ "-" ] ( digits [ "." [digits] [exp] ] | digits exp |
 * "." digits [exp] ), correctly rounded. */
static enum status parse_float(const char *s, const char *e, double *out)
{
    const char *p = s;
    bool neg = p < e && *p == '-';
    p += neg;
    uint64_t m = 0;    /* the first 19 significant digits */
    int nd = 0;        /* digits in m */
    int64_t dexp = 0;  /* value = m * 10^(dexp + exponent) */
    bool cut = false;  /* a non-zero digit did not fit in m */
    size_t digits = 0; /* in the mantissa, both sides of the point */
    for (; p < e && is_digit(*p); p++, digits++) {
        if (nd < 19) {
            m = m * 10 + (unsigned)(*p - '0');
            nd += m != 0;
        } else {
            dexp++;
            cut |= *p != '0';
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && is_digit(*p); p++, digits++) {
            if (nd < 19) {
                m = m * 10 + (unsigned)(*p - '0');
                nd += m != 0;
                dexp--;
            } else {
                cut |= *p != '0';
            }
        }
    }
    if (digits == 0)
        return ST_SYNTAX;
    int64_t xexp = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        bool xneg = false;
        if (p < e && (*p == '-' || *p == '+'))
            xneg = *p++ == '-';
        const char *x0 = p;
        for (; p < e && is_digit(*p); p++)
            if (xexp < 1000000000000000LL)
                xexp = xexp * 10 + (*p - '0');
        if (p == x0)
            return ST_SYNTAX;
        if (xneg)
            xexp = -xexp;
    }
    if (p != e)
        return ST_SYNTAX;
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return ST_OK;
    }
    /* Clinger's fast path: m and 10^|e| are exact doubles, so one IEEE
     * multiplication or division rounds correctly. */
    int64_t e10 = dexp + xexp;
    if (!cut && m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
        *out = neg ? -v : v;
        return ST_OK;
    }
    return parse_float_slow(s, e, neg, xexp, out);
}

static bool is_bool(const char *s, size_t n)
{
    static const char *const words[] = {"t", "T", "true",  "True",  "TRUE",
                                        "f", "F", "false", "False", "FALSE"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- */
/* Lines                                                             */

static int energy_field(const char *k, size_t n)
{
    switch (n) {
    case 1:
        return k[0] == 'w' ? LP_FIELD_W : -1;
    case 2:
        if (k[0] == 'k' && k[1] == 'w')
            return LP_FIELD_KW;
        if (k[0] == 'w' && k[1] == 'h')
            return LP_FIELD_WH;
        return -1;
    case 3:
        return memcmp(k, "kwh", 3) == 0 ? LP_FIELD_KWH : -1;
    default:
        return -1;
    }
}

static bool check_comment(struct parser *ps, const char *p, const char *end)
{
    for (; p < end; p++)
        if ((cls(*p) & B_CTRL) && *p != '\t')
            return fail_char(ps, p);
    return true;
}

/* One field value at p (after "="); sets *after, and *endp when a string
 * went on over more lines. For an energy field (f >= 0) also *value. */
static bool parse_field_value(struct parser *ps, const char *k0, size_t kn, int f, const char *p,
                              const char **endp, const char **after, double *value)
{
    char qk[QUOTE_BUF], qv[QUOTE_BUF];
    const char *end = *endp;
    if (p < end && *p == '"') {
        int line = ps->line; /* of the value, which may end on a later one */
        p++;
        if (!scan_string(ps, &p, endp, k0, kn))
            return false;
        if (f >= 0)
            return fail_at(ps, line, "field \"%s\" is not a number", field_names[f]);
        *after = p;
        return true;
    }
    const char *v0 = p;
    while (p < end && !(cls(*p) & STOP_VALUE))
        p++;
    *after = p;
    size_t vn = (size_t)(p - v0);
    if (vn == 0)
        return fail_expected(ps, p, end, "expected value for field %s", quote(qk, k0, kn, ESC_KEY));
    char c0 = *v0, last = p[-1];
    double v = 0;
    enum status st;
    if (c0 == 't' || c0 == 'T' || c0 == 'f' || c0 == 'F') {
        if (!is_bool(v0, vn))
            return fail(ps, "invalid value %s in field %s", quote(qv, v0, vn, 0),
                        quote(qk, k0, kn, ESC_KEY));
        if (f >= 0)
            return fail(ps, "field \"%s\" is not a number", field_names[f]);
        return true;
    }
    if (!is_digit(c0) && c0 != '-' && c0 != '.')
        return fail(ps, "invalid value %s in field %s", quote(qv, v0, vn, 0),
                    quote(qk, k0, kn, ESC_KEY));
    if (last == 'i') {
        int64_t i;
        st = parse_int64(v0, p - 1, &i);
        if (st == ST_RANGE)
            return fail(ps, "integer %s out of range in field %s", quote(qv, v0, vn, 0),
                        quote(qk, k0, kn, ESC_KEY));
        v = (double)i;
    } else if (last == 'u') {
        bool neg;
        uint64_t u;
        st = parse_digits(v0, p - 1, false, &neg, &u);
        if (st == ST_RANGE)
            return fail(ps, "unsigned integer %s out of range in field %s", quote(qv, v0, vn, 0),
                        quote(qk, k0, kn, ESC_KEY));
        v = (double)u;
    } else {
        st = parse_float(v0, p, &v);
        if (st == ST_RANGE) {
            if (f >= 0)
                return fail(ps, "field \"%s\" is not finite", field_names[f]);
            return fail(ps, "number %s out of range in field %s", quote(qv, v0, vn, 0),
                        quote(qk, k0, kn, ESC_KEY));
        }
    }
    if (st != ST_OK)
        return fail(ps, "invalid number %s in field %s", quote(qv, v0, vn, 0),
                    quote(qk, k0, kn, ESC_KEY));
    if (f >= 0) {
        if (v < 0)
            return fail(ps, "field \"%s\" is negative", field_names[f]);
        *value = v + 0.0; /* -0 becomes 0 */
    }
    return true;
}

static bool parse_timestamp(struct parser *ps, const char *p, const char *end, int64_t *ts_ns)
{
    char q[QUOTE_BUF];
    const char *t0 = p;
    /* The common case in one pass: up to 19 digits, then space or end. */
    bool neg = *p == '-';
    p += neg;
    const char *d0 = p;
    uint64_t u = 0;
    for (unsigned d; p < end && (d = (unsigned)(unsigned char)*p - '0') <= 9; p++)
        u = u * 10 + d;
    int64_t ts = 0;
    enum status st;
    if (p == d0 || (p < end && *p != ' ')) {
        while (p < end && !(cls(*p) & STOP_TIMESTAMP))
            p++;
        if (p < end && (cls(*p) & B_CTRL))
            return fail_char(ps, p);
        st = ST_SYNTAX;
    } else {
        st = p - d0 > 19 ? parse_int64(t0, p, &ts) : to_int64(neg, u, &ts);
    }
    size_t tn = (size_t)(p - t0);
    if (st == ST_SYNTAX)
        return fail(ps, "timestamp %s is not an integer", quote(q, t0, tn, 0));
    if (st == ST_RANGE || __builtin_mul_overflow(ts, (int64_t)ps->precision, ts_ns))
        return fail(ps, "timestamp %s out of range for precision \"%s\"", quote(q, t0, tn, 0),
                    precision_name(ps->precision));
    while (p < end && *p == ' ')
        p++;
    if (p < end) {
        for (const char *c = p; c < end; c++)
            if (cls(*c) & B_CTRL)
                return fail_char(ps, c);
        return fail(ps, "unexpected text %s after timestamp", quote(q, p, (size_t)(end - p), 0));
    }
    return true;
}

/* One line, from the physical line entered last; a string field may take
 * it on over the next ones. */
/* The tags of a point (after the measurement), up to the space before the
 * fields: keys recorded for the duplicate check, `cluster` and `meter` of a
 * `power` point unescaped into the parser. */
struct tags_read {
    bool have_cluster, have_meter;
    const char *k0; /* the last key, for messages about what follows it */
    size_t kn;
};

static bool parse_tags(struct parser *ps, const char **pp, const char *end, bool power,
                       struct tags_read *t)
{
    char qk[QUOTE_BUF];
    const char *p = *pp;
    size_t ntags = 0;
    while (p < end && *p == ',') {
        const char *k0 = ++p;
        bool esc = false;
        p = scan(p, end, STOP_KEY, ESC_KEY, &esc);
        size_t kn = (size_t)(p - k0);
        t->k0 = k0;
        t->kn = kn;
        if (kn == 0)
            return fail_expected(ps, p, end, "expected tag key after \",\"");
        if (p == end || *p != '=')
            return fail_expected(ps, p, end, "expected \"=\" after tag key %s",
                                 quote(qk, k0, kn, ESC_KEY));
        if (ntags == TAGS_MAX)
            return fail(ps, "more than %d tags", TAGS_MAX);
        ps->tags[ntags].p = k0; /* the fingerprint only if need be */
        ps->tags[ntags++].n = kn;
        const char *v0 = ++p;
        char *dst = NULL;
        /* A second one is refused below, as a duplicate tag key. */
        if (power && !esc && kn == 7 && memcmp(k0, "cluster", 7) == 0) {
            t->have_cluster = true;
            dst = ps->cluster;
        } else if (power && !esc && kn == 5 && memcmp(k0, "meter", 5) == 0) {
            t->have_meter = true;
            dst = ps->meter;
        }
        if (dst) {
            p = scan_copy(p, end, dst);
            if (!p)
                return fail(ps, "tag %s is longer than %d bytes", quote(qk, k0, kn, ESC_KEY),
                            TAG_MAX);
        } else {
            bool vesc = false;
            p = scan(p, end, STOP_KEY, ESC_KEY, &vesc);
        }
        if (p == v0)
            return fail_expected(ps, p, end, "expected value for tag %s",
                                 quote(qk, k0, kn, ESC_KEY));
    }
    if (ntags > 1) {
        const struct tag_key *dup = duplicate_tag(ps->tags, ntags);
        if (dup)
            return fail(ps, "duplicate tag key %s", quote(qk, dup->p, dup->n, ESC_KEY));
    }
    *pp = p;
    return true;
}

/* The fields of a point, up to the space before the timestamp or the line's
 * end (which a string field with a raw newline moves: *end). *field is the
 * energy field of a `power` point (-1: none), *value its value. */
static bool parse_fields(struct parser *ps, const char **pp, const char **end, bool power,
                         int *field, double *value)
{
    char qk[QUOTE_BUF];
    const char *p = *pp;
    for (;;) {
        const char *k0 = p;
        bool esc = false;
        p = scan(p, *end, STOP_KEY, ESC_KEY, &esc);
        size_t kn = (size_t)(p - k0);
        if (kn == 0)
            return fail_expected(ps, p, *end, "expected field key");
        if (p == *end || *p != '=')
            return fail_expected(ps, p, *end, "expected \"=\" after field key %s",
                                 quote(qk, k0, kn, ESC_KEY));
        p++;
        int f = power && !esc ? energy_field(k0, kn) : -1;
        if (f >= 0 && *field == f)
            return fail(ps, "field \"%s\" given twice", field_names[f]);
        if (f >= 0 && *field >= 0)
            return fail(ps, "fields \"%s\" and \"%s\" both given; send one", field_names[*field],
                        field_names[f]);
        if (!parse_field_value(ps, k0, kn, f, p, end, &p, value))
            return false;
        if (f >= 0)
            *field = f;
        if (p == *end || *p == ' ')
            break;
        if (*p != ',')
            return fail_expected(ps, p, *end, "expected \",\" or \" \" after value of field %s",
                                 quote(qk, k0, kn, ESC_KEY));
        p++;
    }
    *pp = p;
    return true;
}

/* A complete `power` point, to the callback. */
static bool emit_point(struct parser *ps, const char *cluster, const char *meter, uint64_t *memo,
                       int field, double value, bool has_ts, int64_t ts_ns)
{
    if (field < 0)
        return fail_at(ps, ps->point_line, "no field kw, w, kwh or wh");
    struct lp_point pt = {
        .line = ps->point_line,
        .cluster = cluster,
        .meter = meter,
        .field = (enum lp_field)field,
        .value = value,
        .has_ts = has_ts,
        .ts_ns = ts_ns,
        .memo = memo,
        .ahead_memo = memo && ps->cache ? ps->cache->ahead_memo : 0,
    };
    ps->stats->power_points++;
    if (!ps->fn)
        return true;
    ps->err->msg[0] = '\0';
    if (ps->fn(ps->ctx, &pt, ps->err))
        return true;
    if (ps->err->msg[0] == '\0')
        return fail_at(ps, ps->point_line, "point rejected");
    if (ps->err->line == 0)
        ps->err->line = ps->point_line;
    return false;
}

/* What follows the measurement and tags, from p (at the space after
 * them): the fields and the timestamp; then a `power` point goes to the
 * callback with its cluster and meter (and memo, when its key is cached). */
static bool parse_rest(struct parser *ps, const char *p, const char *end, bool power,
                       const char *cluster, const char *meter, uint64_t *memo)
{
    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return fail(ps, "missing fields");

    int field = -1;
    double value = 0;
    if (!parse_fields(ps, &p, &end, power, &field, &value))
        return false;

    while (p < end && *p == ' ')
        p++;
    bool has_ts = p < end;
    int64_t ts_ns = 0;
    if (has_ts && !parse_timestamp(ps, p, end, &ts_ns))
        return false;

    if (!power) {
        ps->stats->other_points++;
        return true;
    }
    if (!cluster)
        return fail_at(ps, ps->point_line, "missing tag \"cluster\"");
    return emit_point(ps, cluster, meter, memo, field, value, has_ts, ts_ns);
}

/* What follows a cached key in nearly every line, " kw=DIGITS[.DIGITS]
 * DIGITS" (or w, kwh, wh), read in one pass. Anything else (one more space
 * or field, a sign, an exponent, a type suffix, a value not exact in a
 * double, more than 18 digits of timestamp, an overflow) is not read here
 * but left to parse_rest, which reads the line from the same place as if
 * this had not looked. The value is what parse_float gives such digits (Clinger's exact
 * path), the timestamp what parse_timestamp gives. */
struct fast_rest {
    int field;
    double value;
    int64_t ts_ns;
};

/* Whether [p, end) starts with a line's end, "\n" or "\r\n". */
static inline bool at_line_end(const char *p, const char *end)
{
    return p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'));
}

/* With to_newline, end is the buffer's end and the timestamp must be
 * followed by "\n" or "\r\n" before it (a line not yet split off); else
 * end is the line's, and the timestamp must run to it. *ts_end receives
 * where the timestamp ends. */
static inline bool parse_rest_fast(struct parser *ps, const char *p, const char *end,
                                   bool to_newline, struct fast_rest *out, const char **ts_end)
{
    p++; /* the space that ended the key */
    if (end - p > 3 && p[0] == 'k' && p[1] == 'w' && p[2] == '=') {
        out->field = LP_FIELD_KW; /* the usual field, without the scan */
        p += 3;
    } else {
        const char *k0 = p;
        while (p < end && *p >= 'a' && *p <= 'z')
            p++;
        if (p == end || *p != '=' || (out->field = energy_field(k0, (size_t)(p - k0))) < 0)
            return false;
        p++;
    }
    uint64_t m = 0;
    unsigned d, digits = 0, frac = 0;
    for (; p < end && (d = (unsigned)(unsigned char)*p - '0') <= 9; p++, digits++)
        m = m * 10 + d;
    if (digits == 0)
        return false;
    if (p < end && *p == '.')
        for (p++; p < end && (d = (unsigned)(unsigned char)*p - '0') <= 9; p++, frac++)
            m = m * 10 + d;
    /* Where parse_float takes Clinger's path too: m and 10^frac exact. */
    if (digits + frac > 19 || m > (UINT64_C(1) << 53) || frac > 22 || p == end || *p != ' ')
        return false;
    p++;
    out->value = m == 0 ? 0.0 : (double)m / pow10_exact[frac];
    /* The lines of a request mostly share their timestamp (a collector
     * stamps one gathering of many series with one time): the same bytes
     * as the last one read here are the same time, not read again. */
    size_t ts_len = to_newline ? ps->ts_len : (size_t)(end - p);
    if (ps->ts_len && ts_len == ps->ts_len &&
        (!to_newline || ((size_t)(end - p) > ts_len && at_line_end(p + ts_len, end))) &&
        load8(p) == ps->ts_head && load8(p + ts_len - 8) == ps->ts_tail) {
        out->ts_ns = ps->ts_ns;
        *ts_end = p + ts_len;
        return true;
    }
    const char *t0 = p;
    uint64_t u = 0;
    for (; p < end && (d = (unsigned)(unsigned char)*p - '0') <= 9; p++)
        u = u * 10 + d;
    if (p == t0 || (to_newline ? !at_line_end(p, end) : p != end) || p - t0 > 18 ||
        __builtin_mul_overflow((int64_t)u, (int64_t)ps->precision, &out->ts_ns))
        return false;
    *ts_end = p;
    ts_len = (size_t)(p - t0);
    if (ts_len >= 8 && ts_len <= 16) {
        ps->ts_len = ts_len;
        ps->ts_head = load8(t0);
        ps->ts_tail = load8(p - 8);
        ps->ts_ns = out->ts_ns;
    }
    return true;
}

/* A point whose key the cache holds: its cluster, meter and memo are the key's. */
static bool emit_cached(struct parser *ps, struct cached_key *slot, const struct fast_rest *f)
{
    const char *cluster = slot->text + slot->key_n, *meter = slot->text + slot->meter;
    return emit_point(ps, cluster, meter, &slot->memo, f->field, f->value, true, f->ts_ns);
}

/* One point: measurement, tags, fields, timestamp. */
static bool parse_line(struct parser *ps)
{
    char qk[QUOTE_BUF];
    const char *p = ps->line_start, *end = ps->line_end;
    ps->point_line = ps->line;
    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return true;
    if (*p == '#')
        return check_comment(ps, p + 1, end);

    /* A key seen before skips to the fields. */
    const char *key_end = NULL;
    uint64_t h = 0;
    if (ps->cache && (key_end = memchr(p, ' ', (size_t)(end - p))) &&
        key_end - p <= CACHE_KEY_MAX) {
        /* The key that came next last time is compared first: when it is
         * this one, the key is not even hashed. */
        size_t n = (size_t)(key_end - p);
        struct cached_key *slot = cache_predicted(ps->cache);
        if (!slot || slot->key_n != n || !same_bytes(slot->text, p, n)) {
            h = key_hash(ps->cache->seed, p, n);
            slot = cache_lookup(ps->cache, p, n, h);
            ps->cache->hashed++;
        }
        if (slot) {
            cache_follow(ps->cache, slot);
            struct fast_rest f;
            const char *ts_end;
            if (parse_rest_fast(ps, key_end, end, false, &f, &ts_end))
                return emit_cached(ps, slot, &f);
            return parse_rest(ps, key_end, end, true, slot->text + slot->key_n,
                              slot->text + slot->meter, &slot->memo);
        }
    }

    const char *m0 = p;
    bool esc = false;
    p = scan(p, end, STOP_MEASUREMENT, ESC_MEASUREMENT, &esc);
    if (p == m0)
        return fail_expected(ps, p, end, "expected measurement");
    bool power = !esc && p - m0 == 5 && memcmp(m0, "power", 5) == 0;

    struct tags_read t = {0};
    if (!parse_tags(ps, &p, end, power, &t))
        return false;
    if (p == end)
        return fail(ps, "missing fields");
    if (*p != ' ') /* '=' after a tag value, or a control character */
        return fail_expected(ps, p, end, "expected \",\" or \" \" after value of tag %s",
                             quote(qk, t.k0, t.kn, ESC_KEY));
    const char *meter = t.have_meter ? ps->meter : "main";
    uint64_t *memo = NULL;
    struct cached_key *entered = NULL;
    if (h && power && t.have_cluster && p == key_end) {
        entered = cache_enter(ps->cache, m0, (size_t)(p - m0), h, ps->cluster, meter);
        if (entered) {
            cache_follow(ps->cache, entered);
            memo = &entered->memo;
        }
    }
    bool ok = parse_rest(ps, p, end, power, t.have_cluster ? ps->cluster : NULL, meter, memo);
    if (entered) /* the caller's callback entered nothing: still where it was */
        cache_noted(ps->cache, entered);
    return ok;
}

enum fast_line { FAST_NOT_TAKEN, FAST_TAKEN, FAST_REFUSED };

/* The usual line, read in one pass from p without first finding where it
 * ends: the key that came next last time (cache_predicted), byte for
 * byte, a space, then " kw=DIGITS[.DIGITS] DIGITS" and "\n" (or "\r\n"). It is what
 * parse_line would make of it, found by the same steps (that key's bytes
 * hold no space and no newline, so the line's first space is right after
 * them). Anything else is not taken, nothing of it read for good: the
 * line is entered and parsed the full way. *next receives where the next
 * line starts. */
static inline enum fast_line fast_line(struct parser *ps, const char *p, const char **next)
{
    struct cached_key *slot = cache_predicted(ps->cache);
    if (!slot || ps->line == INT_MAX)
        return FAST_NOT_TAKEN;
    size_t n = slot->key_n;
    if ((size_t)(ps->bufend - p) <= n || p[n] != ' ' || !same_bytes(slot->text, p, n))
        return FAST_NOT_TAKEN;
    struct fast_rest f;
    const char *ts_end;
    if (!parse_rest_fast(ps, p + n, ps->bufend, true, &f, &ts_end))
        return FAST_NOT_TAKEN;
    const char *nl = *ts_end == '\n' ? ts_end : ts_end + 1;
    if (ps->bad_utf8 < nl)
        return FAST_NOT_TAKEN;
    ps->line++;
    ps->stats->lines++;
    ps->point_line = ps->line;
    ps->line_start = p;
    ps->line_end = ts_end;
    ps->nl = nl;
    *next = nl + 1;
    cache_follow(ps->cache, slot);
    return emit_cached(ps, slot, &f) ? FAST_TAKEN : FAST_REFUSED;
}

static bool parse_buffer(const char *buf, size_t len, bool more, enum lp_precision precision,
                         struct lp_cache *cache, lp_point_fn fn, void *ctx, struct lp_stats *stats,
                         struct lp_error *err, size_t *consumed)
{
    struct lp_stats own_stats;
    struct lp_error own_err;
    struct parser ps;
    ps.line = 0;
    ps.precision = precision;
    ps.fn = fn;
    ps.ctx = ctx;
    ps.stats = stats ? stats : &own_stats;
    ps.err = err ? err : &own_err;
    ps.more = more;
    ps.cache = cache;
    ps.ts_len = 0;
    ps.incomplete = false;
    *ps.stats = (struct lp_stats){0};
    ps.err->line = 0;
    ps.err->msg[0] = '\0';
    *consumed = 0;
    if (len == 0)
        return true;

    ps.bufend = buf + len;
    ps.bad_utf8 = utf8_invalid(buf, len);
    const char *p = buf;
    while (p < ps.bufend) {
        if (ps.cache) {
            const char *next;
            enum fast_line fl = fast_line(&ps, p, &next);
            if (fl == FAST_REFUSED)
                return false;
            if (fl == FAST_TAKEN) {
                p = next;
                continue;
            }
        }
        int line = ps.line;
        if (!enter_line(&ps, p) || !parse_line(&ps)) {
            if (!ps.incomplete)
                return false;
            /* The point starting at p ends in a later buffer. */
            ps.line = line;
            ps.stats->lines = (size_t)line;
            ps.err->line = 0;
            ps.err->msg[0] = '\0';
            break;
        }
        p = ps.nl ? ps.nl + 1 : ps.bufend;
    }
    *consumed = (size_t)(p - buf);
    return true;
}

bool lp_parse(const char *buf, size_t len, enum lp_precision precision, lp_point_fn fn, void *ctx,
              struct lp_stats *stats, struct lp_error *err)
{
    size_t consumed;
    return parse_buffer(buf, len, false, precision, NULL, fn, ctx, stats, err, &consumed);
}

bool lp_parse_stream(const char *buf, size_t len, enum lp_precision precision, lp_point_fn fn,
                     void *ctx, struct lp_stats *stats, struct lp_error *err, size_t *consumed)
{
    return parse_buffer(buf, len, true, precision, NULL, fn, ctx, stats, err, consumed);
}

bool lp_parse_cached(const char *buf, size_t len, bool more, enum lp_precision precision,
                     struct lp_cache *cache, lp_point_fn fn, void *ctx, struct lp_stats *stats,
                     struct lp_error *err, size_t *consumed)
{
    return parse_buffer(buf, len, more, precision, cache, fn, ctx, stats, err, consumed);
}

bool lp_parse_precision(const char *s, bool v1, enum lp_precision *out)
{
    static const struct {
        const char *name;
        bool v1_only;
        enum lp_precision precision;
    } names[] = {
        {"ns", false, LP_PRECISION_NS}, {"us", false, LP_PRECISION_US},
        {"ms", false, LP_PRECISION_MS}, {"s", false, LP_PRECISION_S},
        {"n", true, LP_PRECISION_NS},   {"u", true, LP_PRECISION_US},
        {"m", true, LP_PRECISION_M},    {"h", true, LP_PRECISION_H},
    };
    if (!s || !*s) {
        *out = LP_PRECISION_NS;
        return true;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((v1 || !names[i].v1_only) && strcmp(s, names[i].name) == 0) {
            *out = names[i].precision;
            return true;
        }
    }
    return false;
}
