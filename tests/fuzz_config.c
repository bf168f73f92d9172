/*
 * Fuzz target for the config parser (tariff/config*.c).
 *
 * libFuzzer: clang -g -O1 -fsanitize=fuzzer,address,undefined -Itariff \
 *            tests/fuzz_config.c
 * tariff/{civil,config,config_read,config_build,config_resolve,decimal,errors,utf8}.c -linih
 * -lcrypto Regression: built with -DFUZZ_STANDALONE, main runs the target on every file named on
 * the command line (meson test does that with the shipped etc/ and tests/corpus/config).
 *
 * Invariants: a text either gives a complete config (every cluster has a
 * tenant, a site with a tariff, and an inventory with rated power; every
 * tariff version a label) or at least one error, each starting with
 * "fuzz.conf:".
 */
#include "config.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct errors errs = {0};
    struct config *cfg = config_new();
    config_parse_text(cfg, "fuzz.conf", (const char *)data, size, true, &errs);
    bool ok = config_finish(cfg, &errs);
    check(ok == !errors_any(&errs));
    if (ok) {
        for (size_t i = 0; i < cfg->n_clusters; i++) {
            const struct cluster *c = &cfg->clusters[i];
            check(c->tenant && c->site && c->site->tariff && c->n_inventories > 0);
            check(c->inventories[0].total_micro_kw > 0);
            check(config_find_cluster(cfg, c->id) == c);
        }
        for (size_t i = 0; i < cfg->n_tariffs; i++)
            for (size_t j = 0; j < cfg->tariffs[i].n_versions; j++)
                check(cfg->tariffs[i].versions[j]->label != NULL);
    } else {
        for (size_t i = 0; i < errs.n; i++)
            check(strncmp(errs.msgs[i], "fuzz.conf:", 10) == 0);
    }
    config_free(cfg);
    errors_free(&errs);
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
    static uint8_t buf[1 << 20];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("%d passed, 0 failed\n", argc - 1);
    return 0;
}
#endif
