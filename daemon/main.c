/*
 * main: the command line (docs/design.md section 7).
 *
 *   tariffd [-c FILE]                  the daemon (daemon/server.c)
 *   tariffd --check-config [-c FILE]   validate, print a summary; exit 0 or 1
 *   tariffd price [-c FILE] [--precision ns|us|ms|s] [--out DIR] < telemetry.lp
 *   tariffd token                      a new tenant token and its token_sha256 line
 *   tariffd price [-c FILE] --compare ALT [--scale F] [--precision P] [--out DIR] < telemetry.lp
 *   tariffd reprice [-c FILE] --from DATE --to DATE [--cluster ID]... [--dry-run]
 *                                      a correction, through the running daemon's control socket
 *   tariffd backfill [-c FILE] [--precision P] [--dry-run] [--quiet] < history.lp
 *   tariffd requeue [-c FILE] [--reason TEXT] [--from DATE --to DATE] [--dry-run]
 *                                      history and quarantined samples, the same way
 *   tariffd report [-c FILE] --month YYYY-MM [--tenant ID]... --out DIR
 *   tariffd --version
 *
 * Exit status: 0 success, 1 configuration (or output) error, or for report
 * PostgreSQL unreachable, 2 usage error, a malformed input line or, for
 * report, an unknown tenant.
 */
#include "build_config.h"
#include "daemon/clock.h"
#include "daemon/compare.h"
#include "daemon/control.h"
#include "daemon/control_client.h"
#include "daemon/correction_cli.h"
#include "daemon/loader.h"
#include "daemon/offline.h"
#include "daemon/report.h"
#include "daemon/server.h"
#include "daemon/tls.h"
#include "daemon/token.h"
#include "storage/pg.h"
#include "tariff/alloc.h"
#include "tariff/decimal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONFIG TARIFFD_SYSCONFDIR "/tariffd.conf"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: tariffd [-c FILE]                        run the daemon\n"
        "       tariffd --check-config [-c FILE]\n"
        "       tariffd price [-c FILE] [--precision ns|us|ms|s] [--out DIR] < telemetry.lp\n"
        "       tariffd price [-c FILE] --compare ALT [--scale F] [--precision P] [--out DIR]\n"
        "                     < telemetry.lp\n"
        "       tariffd report [-c FILE] --month YYYY-MM [--tenant ID]... --out DIR\n"
        "       tariffd reprice [-c FILE] --from YYYY-MM-DD --to YYYY-MM-DD [--cluster ID]...\n"
        "                       [--dry-run]\n"
        "       tariffd backfill [-c FILE] [--precision P] [--dry-run] [--quiet] < history.lp\n"
        "       tariffd requeue [-c FILE] [--reason TEXT] [--from YYYY-MM-DD --to YYYY-MM-DD]\n"
        "                       [--dry-run]\n"
        "       tariffd token                            a new tenant token and its "
        "token_sha256 line\n"
        "       tariffd --version\n"
        "\n"
        "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
        "      --check-config  validate the configuration, print a summary and exit\n"
        "      --precision P   timestamp precision of the input (default ns)\n"
        "      --out DIR       price: also write the ledger rows and statements as CSV into DIR;\n"
        "                      report: write one HTML statement per tenant into DIR\n"
        "      --compare ALT   price the input under ALT too, side by side, and find the\n"
        "                      break-even power scale of ALT\n"
        "      --scale F       multiply ALT's power (and counters) by F (default 1)\n"
        "      --month YYYY-MM the local month to report on\n"
        "      --tenant ID     report on this tenant only (repeatable; default: every tenant)\n"
        "      --from, --to    reprice: price again the closed intervals whose local date is\n"
        "                      in [from, to), under the configuration in force in the daemon\n"
        "      --cluster ID    reprice: only this cluster (repeatable; default every one)\n"
        "      --dry-run       reprice, backfill, requeue: print what would change, write\n"
        "                      nothing\n"
        "      --reason TEXT   requeue: only samples quarantined for this reason\n"
        "      --version       print the version and exit\n");
}

/* The config at path, or NULL after printing every mistake. */
static struct config *load(const char *path, struct config_source *src)
{
    struct errors errs = {0};
    struct config *cfg = loader_load(path, src, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    if (errs.dropped)
        fprintf(stderr, "(and %zu more errors)\n", errs.dropped);
    errors_free(&errs);
    return cfg;
}

/* Whether the control socket's path fits a socket address (a config error
 * otherwise, said on stderr): for --check-config and the daemon's start. */
static bool control_socket_fits(const char *path, const struct config *cfg)
{
    struct error err;
    char control_path[256];
    if (control_socket_path(cfg->daemon.state_dir, control_path, sizeof control_path, &err))
        return true;
    fprintf(stderr, "%s: %s\n", path, err.msg);
    return false;
}

static int check_config(const char *path)
{
    struct config *cfg = load(path, NULL);
    if (!cfg)
        return 1;
    /* The certificate and key as the daemon will read them. */
    if (cfg->daemon.tls_cert && cfg->daemon.tls_key) {
        struct error err;
        SSL_CTX *tls = tls_context_new(&cfg->daemon, &err);
        if (!tls) {
            fprintf(stderr, "%s\n", err.msg);
            config_free(cfg);
            return 1;
        }
        tls_context_free(tls);
    }
    /* Malformed, it would only show as a writer that never connects; the
     * daemon's log cannot say why (libpq's reason may quote a password). */
    char why[256];
    if (!pg_conninfo_parses(cfg->postgres.conninfo, why, sizeof why)) {
        fprintf(stderr, "%s: [postgres] conninfo is not a valid libpq connection string: %s\n",
                path, why);
        config_free(cfg);
        return 1;
    }
    if (!control_socket_fits(path, cfg)) {
        config_free(cfg);
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
    /* Valid, but a daemon on it answers every write 401: the installed
     * template is such a file until the operator adds a tenant. */
    if (cfg->n_tenants == 0)
        printf("note: no [tenant] section, so every write would get 401; add one with the "
               "token_sha256 line of \"tariffd token\"\n");
    config_free(cfg);
    return 0;
}

/* `tariffd token` takes no options: anything after it is a mistake, not
 * something to ignore (a script that meant another command must not get a
 * token instead). */
static int token_main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "tariffd: \"tariffd token\" takes no arguments (got \"%s\")\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return token_command();
}

static int price(const char *config_path, const char *precision, const char *out_dir)
{
    struct offline_options opt = {.out_dir = out_dir};
    if (!lp_parse_precision(precision, false, &opt.precision)) {
        fprintf(stderr, "tariffd: unknown precision \"%s\" (expected ns, us, ms or s)\n",
                precision);
        return 2;
    }
    struct config *cfg = load(config_path, NULL);
    if (!cfg)
        return 1;
    int status = offline_price(cfg, stdin, &opt);
    config_free(cfg);
    return status;
}

/* The largest --scale: far beyond any real difference in power draw, and
 * small enough that a scaled value stays in the engine's range. */
#define MAX_SCALE_MICRO 1000000000LL

static int compare(const char *config_path, const char *alt_path, const char *precision,
                   const char *out_dir, const char *scale_text)
{
    struct compare_options opt = {
        .out_dir = out_dir, .conf_path = config_path, .alt_path = alt_path};
    if (!lp_parse_precision(precision, false, &opt.precision)) {
        fprintf(stderr, "tariffd: unknown precision \"%s\" (expected ns, us, ms or s)\n",
                precision);
        return 2;
    }
    /* A plain decimal (no exponent, no "inf"), read as the double a line
     * protocol value of the same text would be. */
    int64_t scale_micro;
    const char *why;
    if (!decimal_parse(scale_text, 6, &scale_micro, &why)) {
        fprintf(stderr, "tariffd: --scale \"%s\" %s\n", scale_text, why);
        return 2;
    }
    if (scale_micro <= 0 || scale_micro > MAX_SCALE_MICRO) {
        fprintf(stderr, "tariffd: --scale \"%s\" must be greater than 0 and at most 1000\n",
                scale_text);
        return 2;
    }
    opt.scale_text = scale_text;
    opt.scale = strtod(scale_text, NULL);
    struct config *conf = load(config_path, NULL);
    if (!conf)
        return 1;
    struct config *alt = load(alt_path, NULL);
    if (!alt) {
        config_free(conf);
        return 1;
    }
    int status = compare_price(conf, alt, stdin, &opt);
    config_free(alt);
    config_free(conf);
    return status;
}

static int report(const char *config_path, const struct report_options *opt)
{
    struct config *cfg = load(config_path, NULL);
    if (!cfg)
        return 1;
    int status = report_run(cfg, opt);
    config_free(cfg);
    return status;
}

int main(int argc, char **argv)
{
    enum {
        OPT_CHECK = 256,
        OPT_VERSION,
        OPT_PRECISION,
        OPT_OUT,
        OPT_COMPARE,
        OPT_SCALE,
        OPT_MONTH,
        OPT_TENANT,
    };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"out", required_argument, NULL, OPT_OUT},
        {"compare", required_argument, NULL, OPT_COMPARE},
        {"scale", required_argument, NULL, OPT_SCALE},
        {"month", required_argument, NULL, OPT_MONTH},
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = DEFAULT_CONFIG;
    const char *precision = "ns", *out_dir = NULL, *alt_path = NULL, *scale = NULL;
    bool check = false, pricing = false, reporting = false;
    struct report_options report_opt = {0};
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "reprice") == 0)
        return reprice_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "backfill") == 0)
        return backfill_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "requeue") == 0)
        return requeue_main(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "price") == 0 || strcmp(argv[1], "report") == 0)) {
        pricing = strcmp(argv[1], "price") == 0;
        reporting = !pricing;
        argv[1] = argv[0];
        argc--;
        argv++;
    }
    /* --tenant repeats: at most one per argument. */
    const char **tenants = calloc((size_t)argc, sizeof *tenants);
    if (!tenants)
        return 1;
    report_opt.tenants = tenants;
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
            free(tenants);
            return 0;
        case OPT_PRECISION:
            precision = optarg;
            break;
        case OPT_OUT:
            out_dir = optarg;
            break;
        case OPT_COMPARE:
            alt_path = optarg;
            break;
        case OPT_SCALE:
            scale = optarg;
            break;
        case OPT_MONTH:
            report_opt.month = optarg;
            break;
        case OPT_TENANT:
            tenants[report_opt.n_tenants++] = optarg;
            break;
        case 'h':
            usage(stdout);
            free(tenants);
            return 0;
        default:
            usage(stderr);
            free(tenants);
            return 2;
        }
    }
    int status = -1;
    if (optind < argc) {
        fprintf(stderr, "tariffd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        status = 2;
    } else if ((report_opt.month || report_opt.n_tenants) && !reporting) {
        fprintf(stderr, "tariffd: --month and --tenant are options of \"tariffd report\"\n");
        status = 2;
    } else if ((alt_path || scale || strcmp(precision, "ns") != 0) && !pricing) {
        fprintf(stderr, "tariffd: --precision, --compare and --scale are options of "
                        "\"tariffd price\"\n");
        status = 2;
    } else if (out_dir && !pricing && !reporting) {
        fprintf(stderr, "tariffd: --out is an option of \"tariffd price\" and \"tariffd "
                        "report\"\n");
        status = 2;
    } else if (scale && !alt_path) {
        fprintf(stderr, "tariffd: --scale scales ALT's power: it needs --compare ALT\n");
        status = 2;
    } else if ((pricing || reporting) && check) {
        fprintf(stderr, "tariffd: give either %s or --check-config\n",
                pricing ? "price" : "report");
        status = 2;
    } else if (reporting && (!report_opt.month || !out_dir)) {
        fprintf(stderr, "tariffd: \"tariffd report\" needs --month YYYY-MM and --out DIR\n");
        usage(stderr);
        status = 2;
    } else if (reporting) {
        int32_t year, month;
        report_opt.out_dir = out_dir;
        if (!report_parse_month(report_opt.month, &year, &month)) {
            fprintf(stderr, "tariffd: --month \"%s\" is not a month (expected YYYY-MM)\n",
                    report_opt.month);
            status = 2;
        } else {
            status = report(config_path, &report_opt);
        }
    } else if (pricing && alt_path) {
        status = compare(config_path, alt_path, precision, out_dir, scale ? scale : "1");
    }
    free(tenants);
    if (status >= 0)
        return status;
    if (pricing)
        return price(config_path, precision, out_dir);
    if (check)
        return check_config(config_path);
    struct error err;
    if (!clock_init(&err)) {
        fprintf(stderr, "tariffd: %s\n", err.msg);
        return 1;
    }
    struct config_source src = {0};
    struct config *cfg = load(config_path, &src);
    if (!cfg || !control_socket_fits(config_path, cfg)) {
        config_free(cfg);
        config_source_free(&src);
        return 1;
    }
    return server_run(cfg, &src, config_path);
}
