/*
 * config: the model's life (config.h): its defaults, the parse from start
 * to finish, the names of its enums, its lookups, and freeing it.
 *
 * The parser itself is three files, one per step (config_private.h):
 * config_read.c (config_parse_text: text to raw sections), config_build.c
 * (sections to objects) and config_resolve.c (references and the rules
 * across sections); config_finish here runs the last two.
 */
#include "config_private.h"

#include <stdlib.h>

static const char *const period_names[PERIOD_COUNT] = {"deep_valley", "valley", "flat", "peak",
                                                       "critical"};

const char *period_name(enum period p)
{
    return p < PERIOD_COUNT ? period_names[p] : "?";
}

const char *demand_basis_name(enum demand_basis b)
{
    switch (b) {
    case DEMAND_MAX_DEMAND:
        return "max_demand";
    case DEMAND_CAPACITY:
        return "capacity";
    case DEMAND_CONTRACT:
        return "contract";
    }
    return "?";
}

struct config *config_new(void)
{
    struct config *cfg = xcalloc(1, sizeof *cfg);
    cfg->raw = xcalloc(1, sizeof *cfg->raw);
    struct daemon_config *d = &cfg->daemon;
    d->listen = xcalloc(1, sizeof *d->listen);
    d->listen[0] = xstrdup("127.0.0.1:8086");
    d->n_listen = 1;
    d->metrics_listen = xcalloc(1, sizeof *d->metrics_listen);
    d->metrics_listen[0] = xstrdup("127.0.0.1:8087");
    d->n_metrics_listen = 1;
    d->state_dir = xstrdup("/var/lib/tariffd");
    d->interval_s = 15 * 60;
    d->grace_s = 2 * 60;
    d->max_gap_s = 5 * 60;
    d->late_window_s = 6 * 3600;
    d->max_future_s = 5 * 60;
    d->max_backlog_bytes = 1ULL << 30;
    d->max_body_bytes = 32ULL << 20;
    d->max_subsidy_micro = 500000;
    d->durability = DURABILITY_FSYNC;
    d->max_meters_per_tenant = 100000;
    d->idle_timeout_s = 60;
    d->max_connections = 1000;
    cfg->postgres.conninfo = xstrdup("host=/run/postgresql dbname=tariffd user=tariffd");
    cfg->postgres.schema = xstrdup("tariffd");
    return cfg;
}

bool config_finish(struct config *cfg, struct errors *errs)
{
    if (cfg->raw->unreadable)
        return false; /* checking a partial file would only add noise */
    struct build b = {.cfg = cfg, .errs = errs};
    config_build(&b);
    config_resolve(&b);
    return !errors_any(errs);
}

struct config *config_from_string(const char *file_name, const char *text, struct errors *errs)
{
    struct config *cfg = config_new();
    config_parse_text(cfg, file_name, text, strlen(text), true, errs);
    if (!config_finish(cfg, errs)) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    struct daemon_config *d = &cfg->daemon;
    char **lists[] = {d->listen, d->listen_tls, d->metrics_listen};
    size_t counts[] = {d->n_listen, d->n_listen_tls, d->n_metrics_listen};
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < counts[l]; i++)
            free(lists[l][i]);
        free(lists[l]);
    }
    free(d->tls_cert);
    free(d->tls_key);
    free(d->tls_client_ca);
    free(cfg->daemon.state_dir);
    free(cfg->daemon.include);
    free(cfg->postgres.conninfo);
    free(cfg->postgres.schema);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        free(cfg->tenants[i].id);
        free(cfg->tenants[i].name);
        free(cfg->tenants[i].token_sha256);
    }
    free(cfg->tenants);
    for (size_t i = 0; i < cfg->n_chips; i++) {
        free(cfg->chips[i].id);
        free(cfg->chips[i].vendor);
    }
    free(cfg->chips);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        free(cfg->sites[i].id);
        free(cfg->sites[i].province);
    }
    free(cfg->sites);
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct cluster *c = &cfg->clusters[i];
        for (size_t j = 0; j < c->n_inventories; j++)
            free(c->inventories[j].items);
        free(c->inventories);
        free(c->transformer_micro_kva);
        free(c->contract_micro_kw);
        free(c->id);
    }
    free(cfg->clusters);
    free(cfg->clusters_by_id);
    for (size_t i = 0; i < cfg->n_tariffs; i++) {
        struct tariff *t = &cfg->tariffs[i];
        for (size_t j = 0; j < t->n_versions; j++) {
            struct tariff_version *v = t->versions[j];
            for (size_t k = 0; k < v->n_profiles; k++) {
                free(v->profiles[k].name);
                free(v->profiles[k].steps);
            }
            free(v->profiles);
            free(v->text);
            free(v->label);
            free(v);
        }
        free(t->versions);
        free(t->name);
    }
    free(cfg->tariffs);
    for (size_t i = 0; i < cfg->n_programmes; i++) {
        struct programme *p = &cfg->programmes[i];
        for (size_t j = 0; j < p->n_provinces; j++)
            free(p->provinces[j]);
        free(p->provinces);
        free(p->tenants);
        free(p->id);
    }
    free(cfg->programmes);
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    config_raw_free(cfg->raw);
    free(cfg);
}

const struct cluster *config_find_cluster(const struct config *cfg, const char *id)
{
    size_t lo = 0, hi = cfg->n_clusters;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cfg->clusters_by_id[mid]->id, id);
        if (c == 0)
            return cfg->clusters_by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct tenant *config_find_tenant(const struct config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_tenants; i++)
        if (strcmp(cfg->tenants[i].id, id) == 0)
            return &cfg->tenants[i];
    return NULL;
}

const struct tariff *config_find_tariff(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        if (strcmp(cfg->tariffs[i].name, name) == 0)
            return &cfg->tariffs[i];
    return NULL;
}

const struct programme *config_find_programme(const struct config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_programmes; i++)
        if (strcmp(cfg->programmes[i].id, id) == 0)
            return &cfg->programmes[i];
    return NULL;
}

int64_t tenant_max_meters(const struct config *cfg, const struct tenant *t)
{
    return t->max_meters ? t->max_meters : cfg->daemon.max_meters_per_tenant;
}
