/*
 * config_resolve: step 3 of the config parser (config_private.h): the
 * built objects are tied together and checked as a whole.
 *
 * A site gets its tariff, a cluster its tenant, site and dated
 * inventories (chips and counts), a programme its tenants; each tariff's
 * versions are put in date order and labelled NAME@DATE#hash from their
 * text (docs/design.md section 5); the rules that span sections are checked (a
 * cluster has what its tariff's demand basis needs; few enough programmes
 * per province); and the clusters are indexed by id for
 * config_find_cluster.
 */
#include "config_private.h"

#include "civil.h"

#include <openssl/evp.h>

#include <limits.h>
#include <stdlib.h>

static struct raw_entry *find_entry(struct raw_section *s, const char *key)
{
    for (size_t i = 0; i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, key) == 0)
            return &s->entries[i];
    return NULL;
}

static const struct site *find_site(const struct config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (strcmp(cfg->sites[i].id, id) == 0)
            return &cfg->sites[i];
    return NULL;
}

static const struct chip *find_chip(const struct config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_chips; i++)
        if (strcmp(cfg->chips[i].id, id) == 0)
            return &cfg->chips[i];
    return NULL;
}

static bool parse_inventory(struct build *b, struct inventory *inv)
{
    char *copy = xstrdup(b->e->value), *items[MAX_LIST];
    int n = split_list(copy, items, MAX_LIST);
    bool ok = n > 0;
    if (n < 0)
        bad_entry(b, "inventory \"%s\" has an empty item (expected CHIP*COUNT, ...)", b->e->value);
    inv->items = xcalloc(n > 0 ? (size_t)n : 1, sizeof *inv->items);
    inv->has_pflops = true;
    for (int i = 0; i < n && ok; i++) {
        char *star = strchr(items[i], '*');
        if (!star) {
            bad_entry(b, "inventory item \"%s\" is not CHIP*COUNT", items[i]);
            ok = false;
            break;
        }
        *star = '\0';
        char *chip_id = trim(items[i]), *count = trim(star + 1);
        const struct chip *chip = find_chip(b->cfg, chip_id);
        if (!chip) {
            bad_entry(b, "unknown chip \"%s\" in inventory of cluster \"%s\"", chip_id, b->s->name);
            ok = false;
            break;
        }
        int64_t v = 0;
        bool digits = *count != '\0' && strlen(count) <= 9;
        for (const char *p = count; digits && *p; p++) {
            digits = isdigit((unsigned char)*p);
            v = v * 10 + (*p - '0');
        }
        if (!digits || v <= 0) {
            bad_entry(b, "chip count \"%s\" of \"%s\" is not a positive integer", count, chip_id);
            ok = false;
            break;
        }
        for (size_t j = 0; j < inv->n_items; j++)
            if (inv->items[j].chip == chip) {
                bad_entry(b, "chip \"%s\" appears twice in the inventory", chip_id);
                ok = false;
            }
        inv->items[inv->n_items++] = (struct inventory_item){chip, v};
        int64_t item_micro_kw;
        if (__builtin_mul_overflow(chip->rated_micro_kw, v, &item_micro_kw) ||
            __builtin_add_overflow(inv->total_micro_kw, item_micro_kw, &inv->total_micro_kw)) {
            bad_entry(b, "inventory \"%s\" is too large to add up", b->e->value);
            ok = false;
            break;
        }
        if (chip->domestic)
            inv->domestic_micro_kw += item_micro_kw; /* <= total: cannot overflow */
        int64_t item_pflops_micro;
        inv->has_pflops &= chip->has_pflops;
        if (inv->has_pflops &&
            (__builtin_mul_overflow(chip->pflops_micro, v, &item_pflops_micro) ||
             __builtin_add_overflow(inv->pflops_micro, item_pflops_micro, &inv->pflops_micro))) {
            bad_entry(b, "inventory \"%s\" is too large to add up", b->e->value);
            ok = false;
            break;
        }
    }
    free(copy);
    return ok;
}

static int inventory_order(const void *a, const void *b)
{
    const struct inventory *x = a, *y = b;
    return (x->from_day > y->from_day) - (x->from_day < y->from_day);
}

static void resolve_cluster(struct build *b, struct cluster *c)
{
    struct raw_section *s = b->s;
    struct raw_entry *e;
    if ((e = find_entry(s, "tenant"))) {
        b->e = e;
        if (!(c->tenant = config_find_tenant(b->cfg, e->value)))
            bad_entry(b, "unknown tenant \"%s\" in cluster \"%s\"", e->value, c->id);
    }
    if ((e = find_entry(s, "site"))) {
        b->e = e;
        if (!(c->site = find_site(b->cfg, e->value)))
            bad_entry(b, "unknown site \"%s\" in cluster \"%s\"", e->value, c->id);
    }
    size_t n = 0;
    for (size_t i = 0; i < s->n_entries; i++)
        n += strncmp(s->entries[i].key, "inventory", 9) == 0;
    c->inventories = xcalloc(n, sizeof *c->inventories);
    for (size_t i = 0; i < s->n_entries; i++) {
        b->e = &s->entries[i];
        const char *k = b->e->key, *why;
        struct inventory inv = {.from_day = INT32_MIN, .loc = {s->loc.file, b->e->line}};
        if (strcmp(k, "inventory") != 0 &&
            (strncmp(k, "inventory@", 10) != 0 || !civil_parse_date(k + 10, &inv.from_day, &why)))
            continue;
        bool dup = false;
        for (size_t j = 0; j < c->n_inventories; j++)
            dup |= c->inventories[j].from_day == inv.from_day;
        if (dup)
            continue; /* reported as a duplicate key by config_build */
        if (parse_inventory(b, &inv))
            c->inventories[c->n_inventories++] = inv;
        else
            free(inv.items);
    }
    qsort(c->inventories, c->n_inventories, sizeof *c->inventories, inventory_order);

    if (!c->site || !c->site->tariff)
        return;
    const struct tariff *t = c->site->tariff;
    for (size_t i = 0; i < t->n_versions; i++) {
        const struct tariff_version *v = t->versions[i];
        const char *need = NULL, *why = NULL;
        if (v->demand_basis == DEMAND_CAPACITY && !c->has_transformer_kva)
            need = "transformer_kva", why = "for demand_basis capacity";
        else if (v->demand_basis == DEMAND_CONTRACT && !c->has_contract_kw)
            need = "contract_kw", why = "for demand_basis contract";
        else if (v->has_load_factor_rule && !c->has_transformer_kva)
            need = "transformer_kva", why = "for its load_factor_rule";
        if (need) {
            ERR(b, "%s:%d: %s is missing \"%s\", which tariff %s needs %s", s->loc.file,
                s->loc.line, s->title, need, v->label, why);
            break;
        }
    }
}

static bool province_has_site(const struct config *cfg, const char *province)
{
    for (size_t i = 0; i < cfg->n_sites; i++)
        if (cfg->sites[i].province && strcmp(cfg->sites[i].province, province) == 0)
            return true;
    return false;
}

static void resolve_programme(struct build *b, struct programme *p)
{
    struct raw_entry *e;
    if ((e = find_entry(b->s, "provinces"))) {
        b->e = e;
        for (size_t i = 0; i < p->n_provinces; i++)
            if (!province_has_site(b->cfg, p->provinces[i]))
                bad_entry(b, "unknown province \"%s\" in programme \"%s\" (no site is in it)",
                          p->provinces[i], p->id);
    }
    if ((e = find_entry(b->s, "until")) && p->has_until && p->until_day < p->from_day) {
        b->e = e;
        bad_entry(b, "until %s is before from", e->value);
    }
    if ((e = find_entry(b->s, "tenants"))) {
        b->e = e;
        char *copy = xstrdup(e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0)
            bad_value(b, "has an empty item");
        p->tenants = xcalloc(n > 0 ? (size_t)n : 1, sizeof *p->tenants);
        for (int i = 0; i < n; i++) {
            const struct tenant *t = config_find_tenant(b->cfg, items[i]);
            if (!t)
                bad_entry(b, "unknown tenant \"%s\" in programme \"%s\"", items[i], p->id);
            else
                p->tenants[p->n_tenants++] = t;
        }
        free(copy);
    }
}

static int version_order(const void *a, const void *b)
{
    const struct tariff_version *x = *(struct tariff_version *const *)a;
    const struct tariff_version *y = *(struct tariff_version *const *)b;
    return (x->from_day > y->from_day) - (x->from_day < y->from_day);
}

/* NAME@YYYY-MM-DD#xxxxxxxx: the first four bytes of the SHA-256 of the
 * version's text (docs/design.md section 5, tariff_version). */
static void label_version(struct tariff_version *v)
{
    unsigned char md[32];
    unsigned int md_len = 0;
    char date[16], hex[9];
    if (!EVP_Digest(v->text, strlen(v->text), md, &md_len, EVP_sha256(), NULL))
        abort();
    for (int i = 0; i < 4; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    civil_format_date(v->from_day, date, sizeof date);
    size_t n = strlen(v->tariff->name) + strlen(date) + strlen(hex) + 3;
    v->label = xcalloc(n, 1);
    snprintf(v->label, n, "%s@%s#%s", v->tariff->name, date, hex);
}

static void order_versions(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_tariffs; i++) {
        struct tariff *t = &cfg->tariffs[i];
        qsort(t->versions, t->n_versions, sizeof *t->versions, version_order);
        for (size_t j = 0; j < t->n_versions; j++)
            label_version(t->versions[j]);
    }
}

static void resolve_site(struct build *b, struct site *st)
{
    struct raw_entry *e = find_entry(b->s, "tariff");
    if (!e)
        return;
    st->tariff = (struct tariff *)config_find_tariff(b->cfg, e->value);
    b->e = e;
    if (!st->tariff)
        bad_entry(b, "unknown tariff \"%s\" in site \"%s\"", e->value, st->id);
}

/* A row records the programmes that paid on it in a fixed array. */
static void check_programmes_per_province(struct build *b)
{
    const struct config *cfg = b->cfg;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const char *province = cfg->sites[i].province;
        bool seen = false;
        for (size_t k = 0; k < i && province; k++)
            seen |= cfg->sites[k].province && strcmp(cfg->sites[k].province, province) == 0;
        if (seen)
            continue;
        size_t n = 0;
        for (size_t k = 0; k < cfg->n_programmes && province; k++) {
            const struct programme *p = &cfg->programmes[k];
            for (size_t j = 0; j < p->n_provinces; j++)
                if (strcmp(p->provinces[j], province) == 0 && ++n == PROGRAMMES_PER_PROVINCE + 1)
                    ERR(b, "%s:%d: more than %d programmes in province \"%s\"", p->loc.file,
                        p->loc.line, PROGRAMMES_PER_PROVINCE, province);
        }
    }
}

static int cluster_id_order(const void *a, const void *b)
{
    return strcmp((*(const struct cluster *const *)a)->id, (*(const struct cluster *const *)b)->id);
}

/* For config_find_cluster's binary search. */
static void index_clusters(struct config *cfg)
{
    cfg->clusters_by_id = xcalloc(cfg->n_clusters, sizeof *cfg->clusters_by_id);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        cfg->clusters_by_id[i] = &cfg->clusters[i];
    qsort(cfg->clusters_by_id, cfg->n_clusters, sizeof *cfg->clusters_by_id, cluster_id_order);
}

/* Sites first: a cluster checks its site's tariff. */
void config_resolve(struct build *b)
{
    struct config_raw *raw = b->cfg->raw;
    order_versions(b->cfg);
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored || s->kind != SECTION_SITE)
            continue;
        b->s = s;
        resolve_site(b, &b->cfg->sites[s->object]);
    }
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored)
            continue;
        b->s = s;
        if (s->kind == SECTION_CLUSTER)
            resolve_cluster(b, &b->cfg->clusters[s->object]);
        else if (s->kind == SECTION_PROGRAMME)
            resolve_programme(b, &b->cfg->programmes[s->object]);
    }
    check_programmes_per_province(b);
    index_clusters(b->cfg);
}
