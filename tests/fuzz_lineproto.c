/*
 * Fuzz target for the line protocol parser: runs lp_parse on the input
 * with every precision and aborts when an invariant breaks.
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
    if (ok) {
        check(err.line == 0 && err.msg[0] == '\0');
        check(reject_at == 0 || seen.points < reject_at);
        check(stats.lines == newlines + (size > 0 && buf[size - 1] != '\n'));
    } else {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "line %d: ", err.line);
        check(err.line >= 1 && (size_t)err.line == stats.lines);
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
