#include "compare.h"

#include "daemon/offline.h"
#include "storage/csv.h"
#include "tariff/alloc.h"
#include "tariff/breakeven.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"
#include "tariff/statement.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One cluster and month: its statement under each config (NULL where that
 * config has none, e.g. months cut at another utc_offset). */
struct pair {
    const struct statement *conf, *alt;
};

struct comparison {
    struct pair *v;
    size_t n;
    /* The totals over the input, at scale 4 (kWh at 6). */
    struct statement conf_total, alt_total;
};

/* The input, held for the many pricings. */
struct input {
    char *buf;
    size_t len;
    enum lp_precision precision;
};

static bool same_clusters(const struct config *a, const char *a_path, const struct config *b,
                          const char *b_path)
{
    bool ok = true;
    for (size_t i = 0; i < a->n_clusters; i++)
        if (!config_find_cluster(b, a->clusters[i].id)) {
            fprintf(stderr,
                    "tariffd: cluster \"%s\" is in %s but not in %s (--compare needs the same "
                    "clusters in both)\n",
                    a->clusters[i].id, a_path, b_path);
            ok = false;
        }
    return ok;
}

static bool read_all(FILE *in, struct input *input)
{
    size_t cap = 1 << 20;
    input->buf = xmalloc(cap);
    input->len = 0;
    for (;;) {
        if (input->len == cap) {
            cap *= 2;
            input->buf = xrealloc(input->buf, cap);
        }
        size_t got = fread(input->buf + input->len, 1, cap - input->len, in);
        input->len += got;
        if (got == 0)
            break;
    }
    if (ferror(in)) {
        fprintf(stderr, "tariffd: could not read the input: %s\n", strerror(errno));
        return false;
    }
    return true;
}

/* Prices the held input under cfg at power scale F: a run (NULL after the
 * reason is on stderr) for the caller to read and free. *status is the
 * exit status. */
static struct offline_run *price(const struct config *cfg, const struct input *input, double scale,
                                 bool keep_rows, const char *label, int *status)
{
    struct offline_run *run = offline_run_new(cfg, scale, keep_rows);
    if (!run) {
        *status = 1;
        return NULL;
    }
    /* The same reader as tariffd price, on the bytes in memory, so the
     * input is cut into the same chunks and priced exactly as it is from a
     * pipe. POSIX lets fmemopen refuse a size of 0: an empty input is read
     * from a buffer of one newline, a blank line that changes nothing. */
    static char blank_line[] = "\n";
    FILE *in = input->len ? fmemopen(input->buf, input->len, "r") : fmemopen(blank_line, 1, "r");
    if (!in) {
        fprintf(stderr, "tariffd: could not read the input again: %s\n", strerror(errno));
        offline_run_free(run);
        *status = 1;
        return NULL;
    }
    *status = offline_run_price(run, in, input->precision, label);
    fclose(in);
    if (*status != 0) {
        offline_run_free(run);
        return NULL;
    }
    return run;
}

/* The break-even search's pricing: ALT at steps / 1000. */
struct alt_pricing {
    const struct config *alt;
    const struct input *input;
    int status;
};

/* A scale of the grid as text: 1137 steps is "1.137". */
static void grid_scale(int32_t steps, char *buf, size_t size)
{
    decimal_format(steps, 3, buf, size);
}

static bool alt_net(void *ctx, int32_t steps, int64_t *net_cny4)
{
    struct alt_pricing *a = ctx;
    char label[64], scale_text[40];
    grid_scale(steps, scale_text, sizeof scale_text);
    snprintf(label, sizeof label, "ALT x%s", scale_text);
    double scale = (double)steps / BREAK_EVEN_STEPS_PER_UNIT;
    struct offline_run *run = price(a->alt, a->input, scale, false, label, &a->status);
    if (!run)
        return false;
    *net_cny4 = statements_net_cny4(offline_run_statements(run));
    offline_run_free(run);
    return true;
}

static const struct statement *either(const struct pair *p)
{
    return p->conf ? p->conf : p->alt;
}

static int pair_order(const void *a, const void *b)
{
    const struct statement *x = either(a), *y = either(b);
    if (x->month_day != y->month_day)
        return x->month_day < y->month_day ? -1 : 1;
    int c = strcmp(x->tenant, y->tenant);
    return c ? c : strcmp(x->cluster, y->cluster);
}

static void add_to_total(struct statement *total, const struct statement *st)
{
    total->pflop_s_micro += st->pflop_s_micro;
    total->pflops_unrated |= st->pflops_unrated;
    total->kwh_micro += st->kwh_micro;
    total->energy_charge_cny4 += st->energy_charge_cny4;
    total->surcharge_cny4 += st->surcharge_cny4;
    total->demand_charge_cny4 += st->demand_charge_cny4;
    total->subsidy_cny4 += st->subsidy_cny4;
    total->net_cny4 += st->net_cny4;
}

/* Pairs are matched by month and cluster: the tenant may differ. */
static int key_order(const void *a, const void *b)
{
    const struct statement *x = either(a), *y = either(b);
    if (x->month_day != y->month_day)
        return x->month_day < y->month_day ? -1 : 1;
    return strcmp(x->cluster, y->cluster);
}

static void pair_up(const struct statements *conf, const struct statements *alt,
                    struct comparison *cmp)
{
    memset(cmp, 0, sizeof *cmp);
    cmp->v = xcalloc(conf->n + alt->n, sizeof *cmp->v);
    for (size_t i = 0; i < conf->n; i++) {
        cmp->v[cmp->n++].conf = &conf->v[i];
        add_to_total(&cmp->conf_total, &conf->v[i]);
    }
    qsort(cmp->v, conf->n, sizeof *cmp->v, key_order);
    for (size_t i = 0; i < alt->n; i++) {
        const struct statement *st = &alt->v[i];
        add_to_total(&cmp->alt_total, st);
        struct pair key = {NULL, st};
        struct pair *p = bsearch(&key, cmp->v, conf->n, sizeof *cmp->v, key_order);
        if (!p)
            p = &cmp->v[cmp->n++];
        p->alt = st;
    }
    qsort(cmp->v, cmp->n, sizeof *cmp->v, pair_order);
}

/* The columns of a row: kwh, energy, surcharge, demand, subsidy, net and
 * the net per PFLOP-hour ("" when none). */
enum { COL_KWH, COL_ENERGY, COL_SURCHARGE, COL_DEMAND, COL_SUBSIDY, COL_NET, COL_PFLOP, COLS };

struct row_text {
    char v[COLS][40];
};

/* One side as it is shown: amounts rounded to the fen, the per PFLOP-hour
 * figure to 4 decimals; a missing statement is all zeros. The difference
 * row subtracts what the other two rows show, so each column adds up as
 * printed. */
static void side_values(const struct statement *st, int64_t out[COLS], bool *has_pflop)
{
    static const struct statement none;
    if (!st)
        st = &none;
    out[COL_KWH] = st->kwh_micro;
    out[COL_ENERGY] = statement_round_fen(st->energy_charge_cny4);
    out[COL_SURCHARGE] = statement_round_fen(st->surcharge_cny4);
    out[COL_DEMAND] = statement_round_fen(st->demand_charge_cny4);
    out[COL_SUBSIDY] = statement_round_fen(st->subsidy_cny4);
    out[COL_NET] = statement_round_fen(st->net_cny4);
    *has_pflop = st != &none && statement_cny4_per_pflop_hour(st, &out[COL_PFLOP]);
}

static void format_row(const int64_t v[COLS], bool has_pflop, struct row_text *t)
{
    decimal_format(v[COL_KWH], 6, t->v[COL_KWH], sizeof t->v[0]);
    for (int c = COL_ENERGY; c <= COL_NET; c++)
        decimal_format(v[c], 2, t->v[c], sizeof t->v[0]);
    if (has_pflop)
        decimal_format(v[COL_PFLOP], 4, t->v[COL_PFLOP], sizeof t->v[0]);
    else
        t->v[COL_PFLOP][0] = '\0';
}

/* The rows conf, alt and alt - conf of one pair (or of the totals). */
static void pair_rows(const struct statement *conf, const struct statement *alt,
                      struct row_text out[3])
{
    int64_t c[COLS], a[COLS], d[COLS];
    bool c_pflop, a_pflop;
    side_values(conf, c, &c_pflop);
    side_values(alt, a, &a_pflop);
    for (int i = 0; i < COLS; i++)
        d[i] = a[i] - c[i];
    format_row(c, c_pflop, &out[0]);
    format_row(a, a_pflop, &out[1]);
    format_row(d, c_pflop && a_pflop, &out[2]);
}

static const char *const side_csv[3] = {"conf", "alt", "difference"};

static void print_row(const char *month, const char *tenant, const char *cluster, const char *side,
                      const struct row_text *t)
{
    printf("%-10s  %-12s  %-12s  %-11s  %16s  %14s  %12s  %12s  %14s  %14s", month, tenant, cluster,
           side, t->v[COL_KWH], t->v[COL_ENERGY], t->v[COL_SURCHARGE], t->v[COL_DEMAND],
           t->v[COL_SUBSIDY], t->v[COL_NET]);
    if (t->v[COL_PFLOP][0])
        printf("  %11s", t->v[COL_PFLOP]);
    putchar('\n');
}

static void print_comparison(const struct comparison *cmp, const struct compare_options *opt)
{
    char alt_side[48];
    snprintf(alt_side, sizeof alt_side, "ALT x%s", opt->scale_text);
    const char *sides[3] = {"CONF", alt_side, "ALT-CONF"};
    printf("CONF  %s\nALT   %s, power x%s\n\n", opt->conf_path, opt->alt_path, opt->scale_text);
    printf("%-10s  %-12s  %-12s  %-11s  %16s  %14s  %12s  %12s  %14s  %14s  %11s\n", "month",
           "tenant", "cluster", "config", "kwh", "energy", "surcharge", "demand", "subsidy", "net",
           "CNY/PFLOP-h");
    for (size_t i = 0; i < cmp->n; i++) {
        const struct pair *p = &cmp->v[i];
        const struct statement *st = either(p);
        char month[16];
        civil_format_date(st->month_day, month, sizeof month);
        struct row_text rows[3];
        pair_rows(p->conf, p->alt, rows);
        for (int r = 0; r < 3; r++)
            print_row(month, st->tenant, st->cluster, sides[r], &rows[r]);
    }
    struct row_text rows[3];
    pair_rows(&cmp->conf_total, &cmp->alt_total, rows);
    for (int r = 0; r < 3; r++)
        print_row("total", "", "", sides[r], &rows[r]);
}

/* The break-even compares exact totals: they are shown with their 4
 * decimals, not rounded to the fen as the statements are. */
static void print_break_even(const struct break_even *be, int64_t conf_net_cny4)
{
    char conf[40], below[40], at[40], scale[40], scale_below[40], max[40];
    decimal_format(conf_net_cny4, 4, conf, sizeof conf);
    decimal_format(be->below_cny4, 4, below, sizeof below);
    decimal_format(be->at_cny4, 4, at, sizeof at);
    grid_scale(be->steps, scale, sizeof scale);
    grid_scale(be->steps - 1, scale_below, sizeof scale_below);
    snprintf(max, sizeof max, "%d", BREAK_EVEN_MAX_STEPS / BREAK_EVEN_STEPS_PER_UNIT);
    switch (be->outcome) {
    case BREAK_EVEN_FOUND:
        printf(
            "break-even at power x%s: ALT's net is %s at x%s and %s at x%s, CONF's %s (searched to "
            "0.001 in (0, %s], %d pricings of ALT)\n",
            scale, below, scale_below, at, scale, conf, max, be->pricings);
        break;
    case BREAK_EVEN_ALT_CHEAPER:
        printf("break-even: none in (0, %s]: ALT's net at x%s is %s, still below CONF's %s\n", max,
               max, at, conf);
        break;
    case BREAK_EVEN_ALT_DEARER:
        grid_scale(1, scale, sizeof scale);
        printf("break-even: none in (0, %s]: ALT's net at x%s is %s, already at or above CONF's "
               "%s\n",
               max, scale, at, conf);
        break;
    case BREAK_EVEN_FAILED:
        break;
    }
}

static bool make_dir(const char *dir, const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "tariffd: could not create %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

static bool write_comparison(const struct comparison *cmp, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/comparison.csv", dir);
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "tariffd: could not create %s: %s\n", path, strerror(errno));
        return false;
    }
    fputs("tenant,cluster,month,config,kwh,energy_charge,surcharge,demand_charge,subsidy,net,"
          "cny_per_pflop_hour\n",
          out);
    for (size_t i = 0; i < cmp->n; i++) {
        const struct pair *p = &cmp->v[i];
        const struct statement *st = either(p);
        char names[CSV_LINE_MAX], month[16];
        size_t len = 0;
        names[0] = '\0';
        csv_text(names, &len, st->tenant);
        names[len++] = ',';
        names[len] = '\0';
        csv_text(names, &len, st->cluster);
        civil_format_date(st->month_day, month, sizeof month);
        struct row_text rows[3];
        pair_rows(p->conf, p->alt, rows);
        for (int r = 0; r < 3; r++) {
            const struct row_text *t = &rows[r];
            fprintf(out, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", names, month, side_csv[r],
                    t->v[COL_KWH], t->v[COL_ENERGY], t->v[COL_SURCHARGE], t->v[COL_DEMAND],
                    t->v[COL_SUBSIDY], t->v[COL_NET], t->v[COL_PFLOP]);
        }
    }
    bool ok = !ferror(out);
    ok &= fclose(out) == 0;
    if (!ok)
        fprintf(stderr, "tariffd: could not write %s\n", path);
    return ok;
}

static bool write_break_even(const struct comparison *cmp, const struct break_even *be,
                             const struct compare_options *opt, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/break_even.csv", dir);
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "tariffd: could not create %s: %s\n", path, strerror(errno));
        return false;
    }
    static const char *const outcome[] = {
        [BREAK_EVEN_FOUND] = "found",
        [BREAK_EVEN_ALT_CHEAPER] = "alt_cheaper_throughout",
        [BREAK_EVEN_ALT_DEARER] = "alt_dearer_throughout",
        [BREAK_EVEN_FAILED] = "failed",
    };
    char conf[40], alt[40], below[40] = "", at[40], scale[40] = "";
    decimal_format(cmp->conf_total.net_cny4, 4, conf, sizeof conf);
    decimal_format(cmp->alt_total.net_cny4, 4, alt, sizeof alt);
    decimal_format(be->at_cny4, 4, at, sizeof at);
    if (be->outcome == BREAK_EVEN_FOUND) {
        grid_scale(be->steps, scale, sizeof scale);
        decimal_format(be->below_cny4, 4, below, sizeof below);
    }
    fputs("scale,conf_net,alt_net,outcome,break_even,alt_net_below,alt_net_at\n", out);
    fprintf(out, "%s,%s,%s,%s,%s,%s,%s\n", opt->scale_text, conf, alt, outcome[be->outcome], scale,
            below, at);
    bool ok = !ferror(out);
    ok &= fclose(out) == 0;
    if (!ok)
        fprintf(stderr, "tariffd: could not write %s\n", path);
    return ok;
}

int compare_price(const struct config *conf, const struct config *alt, FILE *in,
                  const struct compare_options *opt)
{
    bool same = same_clusters(conf, opt->conf_path, alt, opt->alt_path);
    same &= same_clusters(alt, opt->alt_path, conf, opt->conf_path);
    if (!same)
        return 1;
    struct input input = {.precision = opt->precision};
    if (!read_all(in, &input)) {
        free(input.buf);
        return 1;
    }
    char alt_label[64];
    snprintf(alt_label, sizeof alt_label, "ALT x%s", opt->scale_text);
    bool keep_rows = opt->out_dir != NULL;
    int status;
    struct offline_run *conf_run = price(conf, &input, 1, keep_rows, NULL, &status);
    struct offline_run *alt_run =
        conf_run ? price(alt, &input, opt->scale, keep_rows, alt_label, &status) : NULL;
    struct comparison cmp = {0};
    struct break_even be = {.outcome = BREAK_EVEN_FAILED};
    if (alt_run) {
        pair_up(offline_run_statements(conf_run), offline_run_statements(alt_run), &cmp);
        print_comparison(&cmp, opt);
        putchar('\n');
        offline_run_print_counts(conf_run, "CONF");
        offline_run_print_counts(alt_run, alt_label);
        fflush(stdout);
        struct alt_pricing search = {alt, &input, 0};
        break_even_search(cmp.conf_total.net_cny4, alt_net, &search, &be);
        status = search.status;
        print_break_even(&be, cmp.conf_total.net_cny4);
    }
    if (status == 0 && opt->out_dir) {
        char dir[4096];
        bool ok =
            make_dir(opt->out_dir, "conf", dir, sizeof dir) && offline_run_write(conf_run, dir) &&
            make_dir(opt->out_dir, "alt", dir, sizeof dir) && offline_run_write(alt_run, dir) &&
            write_comparison(&cmp, opt->out_dir) && write_break_even(&cmp, &be, opt, opt->out_dir);
        if (!ok)
            status = 1;
    }
    free(cmp.v);
    offline_run_free(conf_run);
    offline_run_free(alt_run);
    free(input.buf);
    return status;
}
