/*
 * main: the command line (DESIGN.md section 7).
 *
 *   tariffd --check-config [-c FILE]   validate, print a summary; exit 0 or 1
 *   tariffd --version
 *
 * Exit status: 0 success, 1 configuration error, 2 usage error.
 */
#include "build_config.h"
#include "daemon/loader.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONFIG TARIFFD_SYSCONFDIR "/tariffd.conf"

static void usage(FILE *out)
{
    fprintf(out, "usage: tariffd --check-config [-c FILE]\n"
                 "       tariffd --version\n"
                 "\n"
                 "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
                 "      --check-config  validate the configuration, print a summary and exit\n"
                 "      --version       print the version and exit\n");
}

static void print_errors(const struct errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
    if (errs->dropped)
        fprintf(stderr, "(and %zu more errors)\n", errs->dropped);
}

static int check_config(const char *path)
{
    struct errors errs = {0};
    struct config *cfg = loader_load(path, &errs);
    if (!cfg) {
        print_errors(&errs);
        errors_free(&errs);
        return 1;
    }
    printf("%s: configuration ok (%zu file%s)\n", path, cfg->n_files, cfg->n_files == 1 ? "" : "s");
    printf("  tenants     %zu\n", cfg->n_tenants);
    printf("  chips       %zu\n", cfg->n_chips);
    printf("  sites       %zu\n", cfg->n_sites);
    printf("  clusters    %zu\n", cfg->n_clusters);
    printf("  tariffs     %zu (%zu version%s)\n", cfg->n_tariffs, cfg->n_tariff_versions,
           cfg->n_tariff_versions == 1 ? "" : "s");
    printf("  programmes  %zu\n", cfg->n_programmes);
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        for (size_t j = 0; j < cfg->tariffs[i].n_versions; j++)
            printf("  tariff version %s\n", cfg->tariffs[i].versions[j]->label);
    config_free(cfg);
    errors_free(&errs);
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256, OPT_VERSION };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = DEFAULT_CONFIG;
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case OPT_VERSION:
            printf("tariffd %s\n", TARIFFD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tariffd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!check) {
        fprintf(stderr, "tariffd: this build only validates configurations; give --check-config\n");
        usage(stderr);
        return 2;
    }
    return check_config(config_path);
}
