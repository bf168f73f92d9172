/*
 * lineproto: InfluxDB line protocol, parsed as InfluxDB 2.x accepts it
 * (DESIGN.md section 3; docs/influx-protocol.md section 1).
 *
 * The parser is pure: it reads a buffer and reports each point of the
 * measurement `power` through a callback, with the tags and the one energy
 * field tariffd uses; every other line is parsed in full (so a malformed
 * line of another measurement is still an error) and only counted. It
 * never allocates: unescaped tag values are written to a scratch buffer in
 * the parser state, valid until the callback returns.
 *
 * Errors stop the parse and say where and what, in PostgreSQL's style:
 * "line 3: field "kw" is not a number". Line numbers count every line of
 * the buffer from 1, blank and comment lines included.
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
    int line;            /* 1-based line number in the buffer */
    const char *cluster; /* tag `cluster` (required, non-empty) */
    const char *meter;   /* tag `meter`, or "main" when absent */
    enum lp_field field; /* exactly one of kw, w, kwh, wh */
    double value;        /* finite and >= 0; integers (i, u) converted */
    bool has_ts;
    int64_t ts_ns; /* the timestamp times the precision; checked for overflow */
};

struct lp_error {
    int line;
    char msg[256]; /* "line N: reason", ready to show to a client */
};

/* Called for each `power` point; returning false stops the parse with
 * *err as the callback filled it (e.g. "line 4: unknown cluster "x""). */
typedef bool (*lp_point_fn)(void *ctx, const struct lp_point *p, struct lp_error *err);

struct lp_stats {
    size_t lines;        /* every line, including blank and comments */
    size_t power_points; /* points passed to the callback */
    size_t other_points; /* valid points of other measurements, ignored */
};

/* Parses buf[0..len) (it need not end with a newline; "\r\n" and "\n" both
 * end lines). Returns true when every line was valid and every callback
 * returned true; otherwise false with *err set. */
bool lp_parse(const char *buf, size_t len, enum lp_precision precision, lp_point_fn fn, void *ctx,
              struct lp_stats *stats, struct lp_error *err);

#endif
