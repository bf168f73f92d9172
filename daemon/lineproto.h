/*
 * lineproto: InfluxDB line protocol, parsed as InfluxDB 2.x accepts it
 * (docs/design.md section 3; docs/influx-protocol.md section 1).
 *
 * The parser is pure: it reads a buffer and reports each point of the
 * measurement `power` through a callback, with the tags and the one energy
 * field tariffd uses; every other line is parsed in full (so a malformed
 * line of another measurement is still an error) and only counted. It
 * never allocates (but for lp_parse_cached's cache): unescaped tag values
 * are written to a scratch buffer in the parser state, valid until the
 * callback returns.
 *
 * The body must be valid UTF-8 throughout, comments and string fields
 * included; a line that is not is refused before it is parsed, so earlier
 * lines (their errors, a point the callback refuses) still come first.
 *
 * Errors stop the parse and say where and what, in PostgreSQL's style:
 * "line 3: field "kw" is not a number". Line numbers are physical: they
 * count every "\n" of the buffer from 1, blank and comment lines included,
 * and a newline inside a quoted string field, which belongs to the value
 * (as in InfluxDB 2), so a point over three lines moves the count by three.
 * The parser's own messages are valid UTF-8 (they quote only checked lines,
 * cut at character boundaries).
 *
 * What the callback may rely on (the PostgreSQL writer does): cluster and
 * meter are non-empty, at most 256 bytes, valid UTF-8, and hold no NUL nor
 * any other byte 0x00-0x1F or 0x7F. That holds by construction: the whole
 * line was checked for UTF-8 before its point is reported, control bytes
 * are refused outside string fields, and unescaping only drops a backslash
 * before an ASCII ",", " " or "=".
 */
#ifndef DAEMON_LINEPROTO_H
#define DAEMON_LINEPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The multiplier from a timestamp in this precision to nanoseconds. */
enum lp_precision {
    LP_PRECISION_NS = 1,
    LP_PRECISION_US = 1000,
    LP_PRECISION_MS = 1000000,
    LP_PRECISION_S = 1000000000,
    LP_PRECISION_M = 60 * 1000000000LL,   /* v1 only */
    LP_PRECISION_H = 3600 * 1000000000LL, /* v1 only */
};

/* Parses the `precision` query parameter: v2 takes ns, us, ms, s; v1 (the
 * /write endpoint) takes n, ns, u, us, ms, s, m, h. NULL or "" means ns.
 * Returns false for anything else. */
bool lp_parse_precision(const char *s, bool v1, enum lp_precision *out);

enum lp_field {
    LP_FIELD_KW,  /* instantaneous power, kW */
    LP_FIELD_W,   /* instantaneous power, W */
    LP_FIELD_KWH, /* cumulative energy counter, kWh */
    LP_FIELD_WH,  /* cumulative energy counter, Wh */
};

/* A point of measurement `power`. Strings are unescaped and NUL-terminated;
 * they point into the parser's scratch space or the input and are valid
 * only during the callback. */
struct lp_point {
    int line;            /* 1-based physical line where the point starts */
    const char *cluster; /* tag `cluster` (required, non-empty) */
    const char *meter;   /* tag `meter`, or "main" when absent */
    enum lp_field field; /* exactly one of kw, w, kwh, wh */
    double value;        /* finite and >= 0; integers (i, u) converted */
    bool has_ts;
    int64_t ts_ns; /* the timestamp times the precision; checked for overflow */
    /* With a cache (lp_parse_cached), the caller's word kept beside the
     * point's series key, its bytes before the first space; NULL when the
     * key is not cached. 0 when the key came into the cache, else what the
     * caller last stored for the same bytes, which always give the same
     * cluster and meter: a caller stores what it looked up for them and
     * skips the lookup next time. */
    uint64_t *memo;
    /* With memo: the memo of the key that came a few points after this
     * one the last time this key came (0: none known), so the caller can
     * ask memory now for what it will need then. Only a hint: the key
     * may not come. */
    uint64_t ahead_memo;
};

/* An error names the physical line of the byte or token at fault; an
 * unterminated string, the line of its opening quote; a missing cluster or
 * energy field, and a point the callback refused, the line where the point
 * starts (lp_point.line). */
struct lp_error {
    int line;
    char msg[256]; /* "line N: reason", ready to show to a client */
};

/* Called for each `power` point; returning false stops the parse with
 * *err as the callback filled it (e.g. "line 4: unknown cluster "x""). */
typedef bool (*lp_point_fn)(void *ctx, const struct lp_point *p, struct lp_error *err);

struct lp_stats {
    size_t lines;        /* physical lines read, including blank and comments */
    size_t power_points; /* points passed to the callback */
    size_t other_points; /* valid points of other measurements, ignored */
};

/* Parses buf[0..len) (it need not end with a newline; "\r\n" and "\n" both
 * end lines, but for one inside a string field). Returns true when every
 * line was valid and every callback returned true; otherwise false with
 * *err set, and stats counting up to the line where the parse stopped. */
bool lp_parse(const char *buf, size_t len, enum lp_precision precision, lp_point_fn fn, void *ctx,
              struct lp_stats *stats, struct lp_error *err);

/* lp_parse for input read in pieces (tariffd price): buf[0..len) ends at a
 * line end, and more input may follow. A point whose quoted string field
 * runs into the end of buf (a newline in the string fell on the cut) is not
 * an error: the parse stops before the line that point starts on, and
 * *consumed says how many bytes were parsed (stats count their lines); the
 * caller passes the rest again with more input after it. At the end of the
 * input, call lp_parse on what is left. */
bool lp_parse_stream(const char *buf, size_t len, enum lp_precision precision, lp_point_fn fn,
                     void *ctx, struct lp_stats *stats, struct lp_error *err, size_t *consumed);

/* Series keys seen before, for lp_parse_cached: about 80 bytes and the
 * key's text per key, for at most max_keys keys (64 to a million) whose
 * text takes at most 128 bytes a key on average; past either it starts
 * again empty. Not for two parses at once. */
struct lp_cache;
struct lp_cache *lp_cache_new(size_t max_keys);
/* With the hash's seed given rather than random: for tests, which make up
 * keys that collide. */
struct lp_cache *lp_cache_new_seeded(size_t max_keys, uint64_t seed);
size_t lp_cache_keys(const struct lp_cache *c); /* the keys it holds now */
/* Lines whose key was looked up by its hash, not found where the order
 * the cache learnt predicted it (the rest cost no lookup). */
size_t lp_cache_hashed(const struct lp_cache *c);
void lp_cache_free(struct lp_cache *c);

/* lp_parse (more false) or lp_parse_stream (more true), where a line whose
 * measurement and tags are byte for byte those of a cached line skips to
 * its fields: the same points, errors and stats, with lp_point.memo set. */
bool lp_parse_cached(const char *buf, size_t len, bool more, enum lp_precision precision,
                     struct lp_cache *cache, lp_point_fn fn, void *ctx, struct lp_stats *stats,
                     struct lp_error *err, size_t *consumed);

#endif
