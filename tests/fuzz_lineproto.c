/*
 * Fuzz target for the line protocol parser: runs lp_parse on the input
 * with every precision, and lp_parse_cached with a new and a filled cache
 * against it, and aborts when an invariant breaks.
 *
 * libFuzzer:  clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *                 tests/fuzz_lineproto.c daemon/lineproto.c -o fuzz_lineproto
 *             ./fuzz_lineproto tests/corpus/lineproto
 * Regression: built with -DFUZZ_STANDALONE, main runs the target once on
 *             every file named on the command line (meson test does that
 *             with tests/corpus/lineproto).
 */
#include "daemon/lineproto.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The offset of the first byte in s[0..n) that does not begin a valid
 * UTF-8 character, or n. Written apart from the parser, from the code
 * point ranges of RFC 3629, so a bug in the parser's own check shows. */
static size_t first_invalid_utf8(const unsigned char *s, size_t n)
{
    size_t at = 0;
    while (at < n) {
        uint32_t cp;
        size_t more;
        if (s[at] < 0x80) {
            at++;
            continue;
        } else if (s[at] >= 0xC0 && s[at] < 0xE0) {
            cp = s[at] & 0x1Fu, more = 1;
        } else if (s[at] >= 0xE0 && s[at] < 0xF0) {
            cp = s[at] & 0x0Fu, more = 2;
        } else if (s[at] >= 0xF0 && s[at] < 0xF8) {
            cp = s[at] & 0x07u, more = 3;
        } else {
            return at;
        }
        if (n - at <= more)
            return at;
        for (size_t i = 1; i <= more; i++) {
            if ((s[at + i] & 0xC0) != 0x80)
                return at;
            cp = cp << 6 | (s[at + i] & 0x3Fu);
        }
        uint32_t shortest = more == 1 ? 0x80 : more == 2 ? 0x800 : 0x10000;
        if (cp < shortest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return at;
        at += more + 1;
    }
    return n;
}

/* Valid UTF-8 without control bytes, so no NUL within strlen's reach. */
static bool clean_utf8(const char *str)
{
    size_t n = strlen(str);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)str[i] < 0x20 || str[i] == 0x7F)
            return false;
    return first_invalid_utf8((const unsigned char *)str, n) == n;
}

struct seen {
    size_t points;
    int last_line;
    size_t reject_at; /* 1-based point to reject, 0 for none */
};

static bool on_point(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    struct seen *s = ctx;
    check(p->line > s->last_line);
    s->last_line = p->line;
    check(p->cluster != NULL && p->cluster[0] != '\0' && strlen(p->cluster) <= 256);
    check(p->meter != NULL && p->meter[0] != '\0' && strlen(p->meter) <= 256);
    /* lineproto.h promises this; the PostgreSQL writer relies on it. */
    check(clean_utf8(p->cluster));
    check(clean_utf8(p->meter));
    check(p->field >= LP_FIELD_KW && p->field <= LP_FIELD_WH);
    check(isfinite(p->value) && p->value >= 0 && !signbit(p->value));
    check(p->has_ts || p->ts_ns == 0);
    if (++s->points == s->reject_at) {
        snprintf(err->msg, sizeof err->msg, "line %d: rejected", p->line);
        err->line = p->line;
        return false;
    }
    return true;
}

static const enum lp_precision precisions[] = {
    LP_PRECISION_NS, LP_PRECISION_US, LP_PRECISION_MS,
    LP_PRECISION_S,  LP_PRECISION_M,  LP_PRECISION_H,
};

static void run(const char *buf, size_t size, enum lp_precision precision, size_t reject_at)
{
    struct seen seen = {.reject_at = reject_at};
    struct lp_stats stats;
    struct lp_error err;
    bool ok = lp_parse(buf, size, precision, on_point, &seen, &stats, &err);
    check(stats.power_points == seen.points);
    size_t newlines = 0;
    for (size_t i = 0; i < size; i++)
        newlines += buf[i] == '\n';
    check(stats.lines <= newlines + 1);
    check(stats.power_points + stats.other_points <= stats.lines);
    check(memchr(err.msg, '\0', sizeof err.msg) != NULL);
    /* Invalid UTF-8 anywhere fails the parse; when that is the reason
     * given, the line and column are those of its first byte. */
    size_t bad = first_invalid_utf8((const unsigned char *)buf, size);
    check(!ok || bad == size);
    /* The reason follows the first ": " (a quoted token may repeat it). */
    const char *reason = strstr(err.msg, ": ");
    bool utf8_reason = reason && strncmp(reason + 2, "invalid UTF-8 ", 14) == 0;
    if (!ok && utf8_reason) {
        check(bad < size);
        size_t line = 1, col0 = 0;
        for (size_t i = 0; i < bad; i++)
            if (buf[i] == '\n')
                line++, col0 = i + 1;
        char want[64];
        snprintf(want, sizeof want, "line %zu: invalid UTF-8 at column %zu", line, bad - col0 + 1);
        check(strcmp(err.msg, want) == 0);
    }
    if (!ok && bad == size)
        check(!utf8_reason);
    if (ok) {
        check(err.line == 0 && err.msg[0] == '\0');
        check(reject_at == 0 || seen.points < reject_at);
        check(stats.lines == newlines + (size > 0 && buf[size - 1] != '\n'));
    } else {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "line %d: ", err.line);
        /* A point over several lines may be refused for its first. */
        check(err.line >= 1 && (size_t)err.line <= stats.lines);
        check(err.line > seen.last_line || (reject_at != 0 && seen.points == reject_at));
        check(strncmp(err.msg, prefix, strlen(prefix)) == 0);
        check(strlen(err.msg) > strlen(prefix));
    }
    /* Without the callback, the same answer (unless the callback said no). */
    if (reject_at == 0 || seen.points < reject_at) {
        struct lp_error again;
        check(lp_parse(buf, size, precision, NULL, NULL, NULL, &again) == ok);
        check(strcmp(again.msg, err.msg) == 0);
    }
}

/* A digest of every point seen, in order; with a cache, the memo holds a
 * fingerprint of the point's cluster and meter, which a later point with
 * the same key must have too. */
struct digest {
    uint64_t h;
    size_t points;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * UINT64_C(0x100000001B3);
    return h ^ (h >> 31);
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = mix(h, (unsigned char)*s);
    return mix(h, 0);
}

static bool on_point_digest(void *ctx, const struct lp_point *p, struct lp_error *err)
{
    (void)err;
    struct digest *d = ctx;
    uint64_t who = mix_str(mix_str(1, p->cluster), p->meter) | 1;
    if (p->memo) {
        check(*p->memo == 0 || *p->memo == who);
        *p->memo = who;
    }
    uint64_t bits;
    memcpy(&bits, &p->value, sizeof bits);
    d->h = mix(mix(mix(mix(mix(d->h, who), (uint64_t)p->line), (uint64_t)p->field), bits),
               (uint64_t)p->ts_ns + (uint64_t)p->has_ts);
    d->points++;
    return true;
}

/* lp_parse_cached, with a new cache and then with the one it filled,
 * sees what lp_parse sees: the same points, stats and error. */
static void run_cached(const char *buf, size_t size)
{
    struct digest plain = {0};
    struct lp_stats ps;
    struct lp_error pe;
    bool ok = lp_parse(buf, size, LP_PRECISION_NS, on_point_digest, &plain, &ps, &pe);
    struct lp_cache *cache = lp_cache_new(SIZE_MAX);
    for (int pass = 0; pass < 2; pass++) {
        struct digest cached = {0};
        struct lp_stats cs;
        struct lp_error ce;
        size_t consumed;
        check(lp_parse_cached(buf, size, false, LP_PRECISION_NS, cache, on_point_digest, &cached,
                              &cs, &ce, &consumed) == ok);
        check(cached.h == plain.h && cached.points == plain.points);
        check(cs.lines == ps.lines && cs.power_points == ps.power_points &&
              cs.other_points == ps.other_points);
        check(ce.line == pe.line && strcmp(ce.msg, pe.msg) == 0);
    }
    lp_cache_free(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
        run(buf, size, precisions[i], 0);
    run(buf, size, LP_PRECISION_NS, 2);
    run_cached(buf, size);
    free(buf);
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    printf("%d inputs passed\n", n);
    return 0;
}
#endif
