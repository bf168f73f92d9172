/*
 * config_build: step 2 of the config parser (config_private.h): each raw
 * section becomes its object in the model.
 *
 * One handler per section kind takes each key in turn (each_entry reports
 * duplicates, require the missing keys); values are parsed into scaled
 * integers whose unit is in the field's name, and every message names the
 * file and line of the key. References to other sections (a site's tariff,
 * a cluster's tenant, site and inventory, a programme's tenants) are only
 * checked for form here: config_resolve.c follows them.
 */
#include "config_private.h"

#include "civil.h"
#include "decimal.h"

#include <limits.h>
#include <stdlib.h>

/* --- The value of the current entry (b->e), parsed or reported ------- */

/* A decimal as an integer at `scale` digits: 1.05 at scale 6 is 1050000. */
static bool dec(struct build *b, int scale, int64_t *out)
{
    const char *why;
    if (!decimal_parse(b->e->value, scale, out, &why)) {
        bad_value(b, why);
        return false;
    }
    return true;
}

static bool dec_positive(struct build *b, int scale, int64_t *out)
{
    if (!dec(b, scale, out))
        return false;
    if (*out <= 0) {
        bad_value(b, "must be greater than 0");
        return false;
    }
    return true;
}

static bool dec_nonnegative(struct build *b, int scale, int64_t *out)
{
    if (!dec(b, scale, out))
        return false;
    if (*out < 0) {
        bad_value(b, "must not be negative");
        return false;
    }
    return true;
}

/* A whole number >= 1 (a count of meters, connections). */
static bool count(struct build *b, int64_t *out)
{
    int64_t v;
    const char *s = b->e->value;
    bool digits = *s != '\0' && strspn(s, "0123456789") == strlen(s);
    if (!digits || !dec(b, 0, &v)) {
        if (!digits)
            bad_value(b, "is not a whole number");
        return false;
    }
    if (v <= 0) {
        bad_value(b, "must be greater than 0");
        return false;
    }
    *out = v;
    return true;
}

static bool duration(struct build *b, int64_t *out)
{
    const char *why;
    if (!civil_parse_duration(b->e->value, out, &why)) {
        bad_value(b, why);
        return false;
    }
    return true;
}

static bool date(struct build *b, int32_t *out)
{
    const char *why;
    if (!civil_parse_date(b->e->value, out, &why)) {
        bad_value(b, why);
        return false;
    }
    return true;
}

static bool size(struct build *b, uint64_t *out)
{
    const char *why;
    if (!civil_parse_size(b->e->value, out, &why)) {
        bad_value(b, why);
        return false;
    }
    if (*out == 0) {
        bad_value(b, "must be greater than 0");
        return false;
    }
    return true;
}

static bool one_of(struct build *b, const char *const *words, size_t n, int *out,
                   const char *expected)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b->e->value, words[i]) == 0) {
            *out = (int)i;
            return true;
        }
    bad_entry(b, "%s must be %s, not \"%s\"", b->e->key, expected, b->e->value);
    return false;
}

/* --- The keys of a section: duplicate, unknown and missing ----------- */

/* The key's first occurrence among entries[0..i) of the same logical
 * section, or NULL. */
static const struct raw_entry *earlier(struct raw_entry **entries, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(entries[j]->key, entries[i]->key) == 0)
            return entries[j];
    return NULL;
}

static bool has_key(struct raw_entry **entries, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(entries[i]->key, key) == 0)
            return true;
    return false;
}

static void missing(struct build *b, const char *key)
{
    ERR(b, "%s:%d: %s is missing \"%s\"", b->s->loc.file, b->s->loc.line, b->s->title, key);
}

static void unknown_key(struct build *b)
{
    bad_entry(b, "unknown key \"%s\" in %s", b->e->key, b->s->title);
}

static void require(struct build *b, struct raw_entry **entries, size_t n, const char *const *keys)
{
    for (; *keys; keys++)
        if (!has_key(entries, n, *keys))
            missing(b, *keys);
}

/* Walks the entries of one logical section, reporting duplicates; the
 * callback sees each first occurrence (and every occurrence of `repeatable`). */
typedef void (*entry_fn)(struct build *b, void *obj);

static void each_entry(struct build *b, struct raw_entry **entries, size_t n,
                       const char *repeatable, entry_fn fn, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        b->e = entries[i];
        const struct raw_entry *first = earlier(entries, i);
        if (first && !(repeatable && strcmp(b->e->key, repeatable) == 0)) {
            bad_entry(b, "duplicate key \"%s\" in %s (first at line %d)", b->e->key, b->s->title,
                      first->line);
            continue;
        }
        fn(b, obj);
    }
}

static struct raw_entry **entry_list(struct raw_section *s)
{
    struct raw_entry **list = xcalloc(s->n_entries, sizeof *list);
    for (size_t i = 0; i < s->n_entries; i++)
        list[i] = &s->entries[i];
    return list;
}

/* --- [daemon] and [postgres] ---------------------------------------- */

static bool valid_listen(const char *s)
{
    const char *colon;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || close[1] != ':')
            return false;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
            return false;
    }
    const char *port = colon + 1;
    if (!*port || strlen(port) > 5)
        return false;
    long v = 0;
    for (const char *p = port; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (*p - '0');
    }
    return v >= 1 && v <= 65535;
}

/* A listen key: HOST:PORT[, ...], or empty for none. */
static void address_list(struct build *b, char ***list, size_t *n_list)
{
    char *copy = xstrdup(b->e->value), *items[MAX_LIST];
    int n = *trim(copy) == '\0' ? 0 : split_list(copy, items, MAX_LIST);
    if (n < 0) {
        bad_value(b, "has an empty address");
        free(copy);
        return;
    }
    for (int i = 0; i < n; i++)
        if (!valid_listen(items[i])) {
            bad_entry(b,
                      "listen address \"%s\" is not HOST:PORT (like 127.0.0.1:8086 or [::1]:8086)",
                      items[i]);
            free(copy);
            return;
        }
    for (size_t i = 0; i < *n_list; i++)
        free((*list)[i]);
    free(*list);
    *list = n ? xcalloc((size_t)n, sizeof **list) : NULL;
    for (int i = 0; i < n; i++)
        (*list)[i] = xstrdup(items[i]);
    *n_list = (size_t)n;
    free(copy);
}

/* A file the daemon reads (a certificate or key): not empty. */
static void path_value(struct build *b, char **path)
{
    if (b->e->value[0] == '\0') {
        bad_value(b, "must not be empty");
        return;
    }
    free(*path);
    *path = xstrdup(b->e->value);
}

static void daemon_key(struct build *b, void *obj)
{
    struct daemon_config *d = obj;
    const char *k = b->e->key;
    static const int64_t intervals[] = {300, 600, 900, 1800, 3600};
    if (strcmp(k, "listen") == 0) {
        address_list(b, &d->listen, &d->n_listen);
        d->listen_loc = (struct source_loc){b->s->loc.file, b->e->line};
    } else if (strcmp(k, "listen_tls") == 0) {
        address_list(b, &d->listen_tls, &d->n_listen_tls);
        d->listen_tls_loc = (struct source_loc){b->s->loc.file, b->e->line};
    } else if (strcmp(k, "metrics_listen") == 0) {
        address_list(b, &d->metrics_listen, &d->n_metrics_listen);
    } else if (strcmp(k, "tls_cert") == 0) {
        path_value(b, &d->tls_cert);
    } else if (strcmp(k, "tls_key") == 0) {
        path_value(b, &d->tls_key);
    } else if (strcmp(k, "tls_client_ca") == 0) {
        path_value(b, &d->tls_client_ca);
    } else if (strcmp(k, "state_dir") == 0) {
        if (b->e->value[0] == '\0') {
            bad_value(b, "must not be empty");
            return;
        }
        free(d->state_dir);
        d->state_dir = xstrdup(b->e->value);
    } else if (strcmp(k, "interval") == 0) {
        int64_t s;
        if (!duration(b, &s))
            return;
        for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++)
            if (s == intervals[i]) {
                d->interval_s = s;
                return;
            }
        bad_entry(b, "interval must be 5m, 10m, 15m, 30m or 60m, not \"%s\"", b->e->value);
    } else if (strcmp(k, "grace") == 0) {
        duration(b, &d->grace_s);
    } else if (strcmp(k, "max_gap") == 0) {
        if (duration(b, &d->max_gap_s) && d->max_gap_s == 0)
            bad_value(b, "must be greater than 0");
    } else if (strcmp(k, "late_window") == 0) {
        duration(b, &d->late_window_s);
    } else if (strcmp(k, "max_future") == 0) {
        duration(b, &d->max_future_s);
    } else if (strcmp(k, "max_backlog") == 0) {
        if (size(b, &d->max_backlog_bytes))
            d->max_backlog_loc = (struct source_loc){b->s->loc.file, b->e->line};
    } else if (strcmp(k, "max_body") == 0) {
        if (size(b, &d->max_body_bytes))
            d->max_body_loc = (struct source_loc){b->s->loc.file, b->e->line};
    } else if (strcmp(k, "max_subsidy") == 0) {
        int64_t v;
        if (!dec(b, 6, &v))
            return;
        if (v <= 0 || v > 1000000) {
            bad_value(b, "must be greater than 0 and at most 1");
            return;
        }
        d->max_subsidy_micro = v;
    } else if (strcmp(k, "max_meters_per_tenant") == 0) {
        count(b, &d->max_meters_per_tenant);
    } else if (strcmp(k, "idle_timeout") == 0) {
        if (duration(b, &d->idle_timeout_s) && d->idle_timeout_s == 0)
            bad_value(b, "must be greater than 0");
    } else if (strcmp(k, "max_connections") == 0) {
        count(b, &d->max_connections);
    } else if (strcmp(k, "durability") == 0) {
        static const char *const words[] = {"fsync", "none"};
        int v;
        if (one_of(b, words, 2, &v, "fsync or none"))
            d->durability = (enum durability)v;
    } else {
        unknown_key(b);
    }
}

static bool valid_schema(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

static void postgres_key(struct build *b, void *obj)
{
    struct postgres_config *pg = obj;
    if (strcmp(b->e->key, "conninfo") == 0) {
        free(pg->conninfo);
        pg->conninfo = xstrdup(b->e->value);
    } else if (strcmp(b->e->key, "schema") == 0) {
        if (!valid_schema(b->e->value)) {
            bad_value(b, "is not a schema name (lower-case letters, digits and \"_\", at most "
                         "63)");
            return;
        }
        free(pg->schema);
        pg->schema = xstrdup(b->e->value);
    } else {
        unknown_key(b);
    }
}

/* The singletons may be split over several [daemon] sections (in the main
 * file and in included ones); a key may still be set only once. */
static void build_singleton(struct build *b, enum section_kind kind, entry_fn fn, void *obj)
{
    struct config_raw *raw = b->cfg->raw;
    size_t n = 0;
    for (size_t i = 0; i < raw->n_sections; i++)
        if (raw->sections[i].kind == kind && !raw->sections[i].ignored)
            n += raw->sections[i].n_entries;
    struct raw_entry **all = xcalloc(n, sizeof *all);
    size_t k = 0;
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->kind != kind || s->ignored)
            continue;
        for (size_t j = 0; j < s->n_entries; j++)
            all[k++] = &s->entries[j];
    }
    /* Walk in order, but attribute each entry to the section it is in. */
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->kind != kind || s->ignored)
            continue;
        b->s = s;
        for (size_t j = 0; j < s->n_entries; j++) {
            b->e = &s->entries[j];
            size_t pos = 0;
            while (all[pos] != b->e)
                pos++;
            const struct raw_entry *first = earlier(all, pos);
            if (first) {
                bad_entry(b, "duplicate key \"%s\" in [%s] (first at line %d)", b->e->key,
                          section_kind_name(kind), first->line);
                continue;
            }
            fn(b, obj);
        }
    }
    free(all);
}

/* --- [tenant], [chip], [site] --------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void tenant_key(struct build *b, void *obj)
{
    struct tenant *t = obj;
    if (strcmp(b->e->key, "name") == 0) {
        free(t->name);
        t->name = xstrdup(b->e->value);
    } else if (strcmp(b->e->key, "max_meters") == 0) {
        count(b, &t->max_meters);
    } else if (strcmp(b->e->key, "token_sha256") == 0) {
        /* The messages never quote a value: an operator who pastes the
         * token itself here would find it in the log of a reload. */
        char *copy = xstrdup(b->e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0)
            bad_entry(b, "token_sha256 has an empty item, or more than %d", MAX_LIST);
        for (int i = 0; i < n; i++) {
            uint8_t digest[32];
            bool ok = strlen(items[i]) == 64;
            for (int j = 0; ok && j < 32; j++) {
                int hi = hexval(items[i][2 * j]), lo = hexval(items[i][2 * j + 1]);
                ok = hi >= 0 && lo >= 0;
                if (ok)
                    digest[j] = (uint8_t)(hi << 4 | lo);
            }
            if (!ok) {
                bad_entry(b,
                          "token_sha256 item %d (%zu characters, not shown: it may be a token) "
                          "is not a SHA-256 hex digest of 64 hex digits",
                          i + 1, strlen(items[i]));
                continue;
            }
            t->token_sha256 =
                xrealloc_array(t->token_sha256, t->n_tokens + 1, sizeof *t->token_sha256);
            memcpy(t->token_sha256[t->n_tokens++], digest, 32);
        }
        free(copy);
    } else {
        unknown_key(b);
    }
}

static void chip_key(struct build *b, void *obj)
{
    struct chip *c = obj;
    if (strcmp(b->e->key, "vendor") == 0) {
        free(c->vendor);
        c->vendor = xstrdup(b->e->value);
    } else if (strcmp(b->e->key, "domestic") == 0) {
        static const char *const words[] = {"no", "yes"};
        int v;
        if (one_of(b, words, 2, &v, "yes or no"))
            c->domestic = v == 1;
    } else if (strcmp(b->e->key, "rated_kw") == 0) {
        dec_positive(b, 6, &c->rated_micro_kw);
    } else if (strcmp(b->e->key, "pflops") == 0) {
        c->has_pflops = dec_positive(b, 6, &c->pflops_micro);
    } else {
        unknown_key(b);
    }
}

static void site_key(struct build *b, void *obj)
{
    struct site *s = obj;
    if (strcmp(b->e->key, "province") == 0) {
        if (!valid_name(b->e->value)) {
            bad_value(b, "is not a province name (letters, digits, \".\", \"_\" and \"-\")");
            return;
        }
        s->province = xstrdup(b->e->value);
    } else if (strcmp(b->e->key, "tariff") != 0) {
        unknown_key(b); /* tariff is resolved in config_resolve.c */
    }
}

/* --- [cluster] ------------------------------------------------------- */

/* `name` or `name@DATE` of a cluster's dated quantity (transformer_kva,
 * contract_kw): its value goes in *v at its date, kept in date order. A
 * bad value or date is reported and leaves nothing. Returns false when the
 * key is neither. */
static bool dated_key(struct build *b, const char *name, struct dated_micro **v, size_t *n,
                      bool *has_undated)
{
    const char *k = b->e->key;
    size_t len = strlen(name);
    if (strncmp(k, name, len) != 0 || (k[len] != '\0' && k[len] != '@'))
        return false;
    struct dated_micro d = {.from_day = INT32_MIN};
    const char *why;
    if (k[len] == '@' && !civil_parse_date(k + len + 1, &d.from_day, &why)) {
        bad_entry(b, "%s date \"%s\" %s", name, k + len + 1, why);
        return true;
    }
    if (!dec_positive(b, 6, &d.micro))
        return true;
    if (d.from_day == INT32_MIN)
        *has_undated = true;
    *v = xrealloc_array(*v, *n + 1, sizeof **v);
    size_t i = *n;
    while (i > 0 && (*v)[i - 1].from_day > d.from_day)
        i--;
    memmove(&(*v)[i + 1], &(*v)[i], (*n - i) * sizeof **v);
    (*v)[i] = d;
    (*n)++;
    return true;
}

static void cluster_key(struct build *b, void *obj)
{
    struct cluster *c = obj;
    const char *k = b->e->key;
    if (dated_key(b, "transformer_kva", &c->transformer_micro_kva, &c->n_transformer_kva,
                  &c->has_transformer_kva) ||
        dated_key(b, "contract_kw", &c->contract_micro_kw, &c->n_contract_kw,
                  &c->has_contract_kw)) {
        return;
    } else if (strcmp(k, "service_from") == 0) {
        c->has_service_from = date(b, &c->service_from_day);
    } else if (strcmp(k, "service_until") == 0) {
        c->has_service_until = date(b, &c->service_until_day);
    } else if (strncmp(k, "inventory@", 10) == 0) {
        int32_t day;
        const char *why;
        if (!civil_parse_date(k + 10, &day, &why))
            bad_entry(b, "inventory date \"%s\" %s", k + 10, why);
    } else if (strcmp(k, "tenant") != 0 && strcmp(k, "site") != 0 && strcmp(k, "inventory") != 0) {
        unknown_key(b);
    }
}

/* The rules between a cluster's keys: a dated capacity or contract needs
 * the undated one (what is billed before its date), and service ends no
 * earlier than it starts. */
static void check_cluster(struct build *b, struct raw_entry **entries, size_t n,
                          const struct cluster *c)
{
    for (size_t i = 0; i < n; i++) {
        b->e = entries[i];
        const char *k = b->e->key;
        if (strncmp(k, "transformer_kva@", 16) == 0 && !c->has_transformer_kva)
            bad_entry(b, "%s needs an undated transformer_kva, in force before it", k);
        else if (strncmp(k, "contract_kw@", 12) == 0 && !c->has_contract_kw)
            bad_entry(b, "%s needs an undated contract_kw, in force before it", k);
        else if (strcmp(k, "service_until") == 0 && c->has_service_from && c->has_service_until &&
                 c->service_until_day < c->service_from_day) {
            char from[16];
            civil_format_date(c->service_from_day, from, sizeof from);
            bad_entry(b, "service_until %s is before service_from %s", b->e->value, from);
        }
    }
}

/* --- [tariff NAME @ DATE] --------------------------------------------- */

static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};

static bool parse_period(const char *s, enum period *p)
{
    for (int i = 0; i < PERIOD_COUNT; i++)
        if (strcmp(s, period_name((enum period)i)) == 0) {
            *p = (enum period)i;
            return true;
        }
    return false;
}

static bool parse_month(const char *s, int *m)
{
    for (int i = 0; i < 12; i++)
        if (strcmp(s, month_names[i]) == 0) {
            *m = i;
            return true;
        }
    return false;
}

struct tariff_build {
    struct tariff_version *v;
    int64_t interval_s;
    bool has_ratio[PERIOD_COUNT];
    int64_t ratio_micro[PERIOD_COUNT];
    int ratio_line[PERIOD_COUNT];
    int price_line[PERIOD_COUNT];
    bool has_floating, has_fixed;
    int64_t floating_micro_cny, fixed_micro_cny;
    int months_line;
    char *months; /* parsed once every profile is known */
};

static void parse_profile(struct build *b, struct tariff_build *tb, const char *name)
{
    struct tariff_version *v = tb->v;
    if (!valid_name(name)) {
        bad_entry(b, "invalid profile name \"%s\"", name);
        return;
    }
    char *copy = xstrdup(b->e->value), *items[MAX_LIST];
    int n = split_list(copy, items, MAX_LIST);
    if (n < 0) {
        bad_entry(b, "profile \"%s\" has an empty item", name);
        free(copy);
        return;
    }
    struct profile p = {.name = xstrdup(name),
                        .steps = xcalloc((size_t)n, sizeof *p.steps),
                        .loc = {b->s->loc.file, b->e->line}};
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        char *sp = items[i] + strcspn(items[i], " \t");
        char *period = trim(sp);
        if (*sp)
            *sp = '\0';
        const char *why;
        int32_t start_s;
        enum period per;
        ok = false;
        if (*period == '\0')
            bad_entry(b, "profile \"%s\": item \"%s\" is not \"HH:MM PERIOD\"", name, items[i]);
        else if (!civil_parse_time_of_day(items[i], &start_s, &why))
            bad_entry(b, "profile \"%s\": \"%s\" %s", name, items[i], why);
        else if (!parse_period(period, &per))
            bad_entry(b,
                      "unknown period \"%s\" in profile \"%s\" (expected deep_valley, valley, "
                      "flat, peak or critical)",
                      period, name);
        else if (i == 0 && start_s != 0)
            bad_entry(b, "profile \"%s\" must start at 00:00, not %s", name, items[i]);
        else if (i > 0 && start_s <= p.steps[i - 1].start_s)
            bad_entry(b, "profile \"%s\": %s is not after %02d:%02d", name, items[i],
                      (int)(p.steps[i - 1].start_s / 3600),
                      (int)(p.steps[i - 1].start_s % 3600 / 60));
        else if (start_s % tb->interval_s != 0)
            bad_entry(b, "profile \"%s\": %s is not aligned to the %lldm interval", name, items[i],
                      (long long)(tb->interval_s / 60));
        else
            ok = true;
        if (ok)
            p.steps[p.n_steps++] = (struct profile_step){start_s, per};
    }
    free(copy);
    if (!ok) {
        free(p.name);
        free(p.steps);
        return;
    }
    v->profiles = xrealloc_array(v->profiles, v->n_profiles + 1, sizeof *v->profiles);
    v->profiles[v->n_profiles++] = p;
}

static void tariff_key(struct build *b, void *obj)
{
    struct tariff_build *tb = obj;
    struct tariff_version *v = tb->v;
    const char *k = b->e->key;
    enum period p;
    if (strcmp(k, "utc_offset") == 0) {
        const char *why;
        if (!civil_parse_utc_offset(b->e->value, &v->utc_offset_s, &why))
            bad_value(b, why);
        else if (v->utc_offset_s % tb->interval_s != 0)
            bad_entry(b, "utc_offset %s is not a multiple of the %lldm interval", b->e->value,
                      (long long)(tb->interval_s / 60));
    } else if (strcmp(k, "currency") == 0) {
        const char *c = b->e->value;
        if (strlen(c) != 3 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
            !isupper((unsigned char)c[2]))
            bad_value(b, "is not a currency code (three capital letters, like CNY)");
        else
            memcpy(v->currency, c, 4);
    } else if (strncmp(k, "price.", 6) == 0 && parse_period(k + 6, &p)) {
        /* A price given but malformed is reported once, here, not again as
         * a missing price. */
        dec_nonnegative(b, 6, &v->price_micro_cny[p]);
        v->has_price[p] = true;
        tb->price_line[p] = b->e->line;
    } else if (strncmp(k, "ratio.", 6) == 0 && parse_period(k + 6, &p)) {
        tb->has_ratio[p] = dec_positive(b, 6, &tb->ratio_micro[p]);
        tb->ratio_line[p] = b->e->line;
        if (!tb->has_ratio[p])
            v->has_price[p] = true;
    } else if (strcmp(k, "floating") == 0) {
        tb->has_floating = dec_nonnegative(b, 6, &tb->floating_micro_cny);
    } else if (strcmp(k, "fixed") == 0) {
        tb->has_fixed = dec(b, 6, &tb->fixed_micro_cny);
    } else if (strcmp(k, "surcharge") == 0) {
        dec_nonnegative(b, 6, &v->surcharge_micro_cny);
    } else if (strncmp(k, "profile.", 8) == 0) {
        parse_profile(b, tb, k + 8);
    } else if (strcmp(k, "months") == 0) {
        tb->months = b->e->value;
        tb->months_line = b->e->line;
    } else if (strcmp(k, "demand_basis") == 0) {
        static const char *const words[] = {"max_demand", "capacity", "contract"};
        int w;
        if (one_of(b, words, 3, &w, "max_demand, capacity or contract"))
            v->demand_basis = (enum demand_basis)w;
    } else if (strcmp(k, "demand.kw") == 0) {
        v->has_demand_kw = dec_nonnegative(b, 6, &v->demand_kw_micro_cny);
    } else if (strcmp(k, "demand.kva") == 0) {
        v->has_demand_kva = dec_nonnegative(b, 6, &v->demand_kva_micro_cny);
    } else if (strcmp(k, "contract_excess") == 0) {
        char a[64], x[64], extra;
        const char *why;
        int64_t th, f;
        if (sscanf(b->e->value, "%63s x%63s %c", a, x, &extra) != 2 ||
            !decimal_parse(a, 6, &th, &why) || !decimal_parse(x, 6, &f, &why) || th <= 0 || f <= 0)
            bad_value(b, "is not \"THRESHOLD xFACTOR\" with positive numbers (like 1.05 x2)");
        else {
            v->contract_threshold_micro = th;
            v->contract_factor_micro = f;
        }
    } else if (strcmp(k, "load_factor_rule") == 0) {
        char a[64], f[64], extra;
        const char *why;
        int64_t th, fr;
        if (sscanf(b->e->value, "%63s %63s %c", a, f, &extra) != 2 ||
            !decimal_parse(a, 6, &th, &why) || !decimal_parse(f, 6, &fr, &why) || th <= 0 ||
            fr <= 0 || fr > 1000000)
            bad_value(b, "is not \"KWH_PER_KVA FRACTION\" with a fraction in (0, 1] (like 260 "
                         "0.9)");
        else {
            v->has_load_factor_rule = true;
            v->load_factor_micro_kwh_per_kva = th;
            v->load_factor_fraction_micro = fr;
        }
    } else {
        unknown_key(b);
    }
}

static const struct profile *find_profile(const struct tariff_version *v, const char *name)
{
    for (size_t i = 0; i < v->n_profiles; i++)
        if (strcmp(v->profiles[i].name, name) == 0)
            return &v->profiles[i];
    return NULL;
}

static void parse_months(struct build *b, struct tariff_build *tb)
{
    struct tariff_version *v = tb->v;
    struct raw_entry at = {.key = "months", .value = tb->months, .line = tb->months_line};
    b->e = &at;
    char *copy = xstrdup(tb->months), *items[MAX_LIST];
    int n = split_list(copy, items, MAX_LIST);
    if (n < 0) {
        bad_value(b, "has an empty item");
        free(copy);
        return;
    }
    int seen_line[12] = {0};
    bool ok = true;
    for (int i = 0; i < n; i++) {
        char *sp = items[i] + strcspn(items[i], " \t");
        char *profile = trim(sp);
        if (*sp)
            *sp = '\0';
        char *dash = strchr(items[i], '-');
        if (dash)
            *dash = '\0';
        int from, to;
        if (*profile == '\0') {
            bad_entry(b, "months item \"%s\" is not \"MONTH[-MONTH] PROFILE\"", items[i]);
            ok = false;
            continue;
        }
        if (!parse_month(items[i], &from) || (dash && !parse_month(dash + 1, &to))) {
            bad_entry(b, "unknown month in \"%s%s%s\" (expected jan, feb, ... dec)", items[i],
                      dash ? "-" : "", dash ? dash + 1 : "");
            ok = false;
            continue;
        }
        if (!dash)
            to = from;
        if (to < from) {
            bad_entry(b, "month range \"%s-%s\" wraps around the year (split it: %s-dec, jan-%s)",
                      items[i], dash + 1, items[i], dash + 1);
            ok = false;
            continue;
        }
        const struct profile *p = find_profile(v, profile);
        if (!p) {
            bad_entry(b, "unknown profile \"%s\" in months", profile);
            ok = false;
            continue;
        }
        for (int m = from; m <= to; m++) {
            if (seen_line[m]) {
                bad_entry(b, "month \"%s\" appears twice in months", month_names[m]);
                ok = false;
            }
            seen_line[m] = 1;
            v->month_profile[m] = p;
        }
    }
    free(copy);
    for (int m = 0; m < 12 && ok; m++)
        if (!v->month_profile[m])
            bad_entry(b, "month \"%s\" has no profile in months", month_names[m]);
}

/* Prices from the published formation: floating x ratio + fixed, rounded
 * half-even to 6 decimals as the provincial tables are. */
static void form_prices(struct build *b, struct tariff_build *tb)
{
    struct tariff_version *v = tb->v;
    for (int p = 0; p < PERIOD_COUNT; p++) {
        if (!tb->has_ratio[p])
            continue;
        struct raw_entry at = {.key = "ratio", .value = "", .line = tb->ratio_line[p]};
        b->e = &at;
        if (v->has_price[p]) {
            bad_entry(b, "period \"%s\" has both price.%s (line %d) and ratio.%s", period_name(p),
                      period_name(p), tb->price_line[p], period_name(p));
            continue;
        }
        if (!tb->has_floating || !tb->has_fixed) {
            bad_entry(b, "ratio.%s needs floating and fixed", period_name(p));
            continue;
        }
        __int128 scaled12 = (__int128)tb->floating_micro_cny * tb->ratio_micro[p] +
                            (__int128)tb->fixed_micro_cny * 1000000;
        int64_t price = decimal_div_half_even(scaled12, 1000000);
        if (price < 0) {
            bad_entry(b, "ratio.%s gives a negative price", period_name(p));
            continue;
        }
        v->price_micro_cny[p] = price;
        v->has_price[p] = true;
    }
}

static struct tariff_version *build_tariff_version(struct build *b, struct raw_entry **entries,
                                                   size_t n)
{
    struct tariff_version *v = xcalloc(1, sizeof *v);
    struct raw_section *s = b->s;
    v->from_day = s->day;
    v->loc = s->loc;
    memcpy(v->currency, "CNY", 4);
    v->contract_threshold_micro = 1050000; /* contract_excess = 1.05 x2 */
    v->contract_factor_micro = 2000000;

    size_t text_len = 1;
    for (size_t i = 0; i < n; i++)
        text_len += strlen(entries[i]->key) + strlen(entries[i]->value) + 4;
    v->text = xcalloc(text_len, 1);
    char *t = v->text;
    for (size_t i = 0; i < n; i++)
        t += sprintf(t, "%s = %s\n", entries[i]->key, entries[i]->value);

    struct tariff_build tb = {.v = v, .interval_s = b->cfg->daemon.interval_s};
    each_entry(b, entries, n, NULL, tariff_key, &tb);
    static const char *const required[] = {"utc_offset", "surcharge", "months", "demand_basis",
                                           NULL};
    require(b, entries, n, required);
    form_prices(b, &tb);

    bool any_profile = false;
    for (size_t i = 0; i < n; i++)
        any_profile |= strncmp(entries[i]->key, "profile.", 8) == 0;
    if (!any_profile)
        missing(b, "profile.NAME");
    if (tb.months)
        parse_months(b, &tb);

    for (size_t i = 0; i < v->n_profiles; i++) {
        const struct profile *p = &v->profiles[i];
        for (size_t j = 0; j < p->n_steps; j++) {
            enum period per = p->steps[j].period;
            if (v->has_price[per])
                continue;
            ERR(b,
                "%s:%d: period \"%s\" used by profile \"%s\" has no price (set price.%s, or "
                "ratio.%s with floating and fixed)",
                p->loc.file, p->loc.line, period_name(per), p->name, period_name(per),
                period_name(per));
            v->has_price[per] = true; /* once per period is enough */
        }
    }

    for (size_t i = 0; i < n; i++) {
        if (strcmp(entries[i]->key, "demand_basis") != 0)
            continue;
        b->e = entries[i];
        if (v->demand_basis == DEMAND_CAPACITY && !v->has_demand_kva)
            bad_entry(b, "demand_basis capacity needs demand.kva (CNY per kVA-month)");
        if (v->demand_basis != DEMAND_CAPACITY && !v->has_demand_kw)
            bad_entry(b, "demand_basis %s needs demand.kw (CNY per kW-month)",
                      demand_basis_name(v->demand_basis));
    }
    return v;
}

/* Adds a tariff version to its tariff, creating the tariff on first sight. */
static void add_version(struct build *b, struct tariff_version *v, const char *name)
{
    struct config *cfg = b->cfg;
    struct tariff *t = NULL;
    for (size_t i = 0; i < cfg->n_tariffs; i++)
        if (strcmp(cfg->tariffs[i].name, name) == 0)
            t = &cfg->tariffs[i];
    if (!t) {
        t = &cfg->tariffs[cfg->n_tariffs++];
        t->name = xstrdup(name);
    }
    if (t->n_versions > 0 && t->versions[0]->utc_offset_s != v->utc_offset_s) {
        char a[16], c[16];
        int32_t x = v->utc_offset_s, y = t->versions[0]->utc_offset_s;
        snprintf(a, sizeof a, "%c%02d:%02d", x < 0 ? '-' : '+', abs(x) / 3600, abs(x) % 3600 / 60);
        snprintf(c, sizeof c, "%c%02d:%02d", y < 0 ? '-' : '+', abs(y) / 3600, abs(y) % 3600 / 60);
        ERR(b, "%s:%d: %s has utc_offset %s, but %s:%d has %s (all versions of a tariff share one)",
            v->loc.file, v->loc.line, b->s->title, a, t->versions[0]->loc.file,
            t->versions[0]->loc.line, c);
    }
    t->versions = xrealloc_array(t->versions, t->n_versions + 1, sizeof *t->versions);
    t->versions[t->n_versions++] = v;
    v->tariff = t;
    v->from_ts_s = civil_day_start_ts(v->from_day, v->utc_offset_s);
    cfg->n_tariff_versions++;
}

/* --- [programme] ----------------------------------------------------- */

static void programme_key(struct build *b, void *obj)
{
    struct programme *p = obj;
    const char *k = b->e->key;
    if (strcmp(k, "provinces") == 0) {
        /* The messages never quote a value: an operator who pastes the
         * token itself here would find it in the log of a reload. */
        char *copy = xstrdup(b->e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0)
            bad_entry(b, "token_sha256 has an empty item, or more than %d", MAX_LIST);
        for (int i = 0; i < n; i++) {
            p->provinces = xrealloc_array(p->provinces, p->n_provinces + 1, sizeof *p->provinces);
            p->provinces[p->n_provinces++] = xstrdup(items[i]);
        }
        free(copy);
    } else if (strcmp(k, "from") == 0) {
        date(b, &p->from_day);
    } else if (strcmp(k, "until") == 0) {
        p->has_until = date(b, &p->until_day);
    } else if (strcmp(k, "min_domestic_share") == 0) {
        if (dec(b, 6, &p->min_domestic_share_micro) &&
            (p->min_domestic_share_micro < 0 || p->min_domestic_share_micro > 1000000))
            bad_entry(b, "min_domestic_share %s is outside [0, 1]", b->e->value);
    } else if (strcmp(k, "rate") == 0) {
        int64_t max = b->cfg->daemon.max_subsidy_micro;
        char max_text[32];
        decimal_format(max, 6, max_text, sizeof max_text);
        /* As a person writes it: 0.5, not 0.500000. */
        char *end = max_text + strlen(max_text);
        while (end[-1] == '0')
            *--end = '\0';
        if (end[-1] == '.')
            end[-1] = '\0';
        if (!dec(b, 6, &p->rate_micro))
            return;
        if (p->rate_micro <= 0)
            bad_entry(b, "rate %s must be greater than 0", b->e->value);
        else if (p->rate_micro > max)
            bad_entry(b, "rate %s is above max_subsidy %s", b->e->value, max_text);
    } else if (strcmp(k, "basis") == 0) {
        static const char *const words[] = {"energy", "energy+demand"};
        int w;
        if (one_of(b, words, 2, &w, "energy or energy+demand"))
            p->basis = (enum programme_basis)w;
    } else if (strcmp(k, "mode") == 0) {
        static const char *const words[] = {"pro_rata", "all_or_nothing"};
        int w;
        if (one_of(b, words, 2, &w, "pro_rata or all_or_nothing"))
            p->mode = (enum programme_mode)w;
    } else if (strcmp(k, "cap_cny_per_year") == 0) {
        p->has_cap = dec_positive(b, 4, &p->cap_cny4_per_year);
    } else if (strcmp(k, "tenants") != 0) {
        unknown_key(b); /* tenants are resolved in config_resolve.c */
    }
}

/* --- The step ------------------------------------------------------- */

/* Every raw section becomes its object: [daemon] and [postgres] first,
 * then the others in file order, so that messages come in the order of
 * the lines they are about. */
/* Writes are refused while the journal not yet in PostgreSQL is over
 * max_backlog; a request as large as max_body must fit under it, with room
 * for the clock's records until the next checkpoint. */
static void check_backlog(struct build *b, const struct daemon_config *d)
{
    if (d->max_backlog_bytes / 2 >= d->max_body_bytes)
        return;
    const struct source_loc *at = d->max_backlog_loc.file ? &d->max_backlog_loc : &d->max_body_loc;
    if (!at->file)
        return; /* a value refused already, with its own error */
    ERR(b,
        "%s:%d: max_backlog (%llu bytes) must be at least twice max_body (%llu bytes), or a "
        "request could never fit",
        at->file, at->line, (unsigned long long)d->max_backlog_bytes,
        (unsigned long long)d->max_body_bytes);
}

/* Something to serve, and what TLS needs. The certificate and key are read
 * by the daemon (daemon/tls.c), not here: the config stays pure. */
static void check_listeners(struct build *b, const struct daemon_config *d)
{
    if (d->n_listen == 0 && d->n_listen_tls == 0 && d->listen_loc.file)
        ERR(b, "%s:%d: listen is empty and listen_tls is not set: nothing would take writes",
            d->listen_loc.file, d->listen_loc.line);
    if (d->n_listen_tls > 0 && (!d->tls_cert || !d->tls_key))
        ERR(b, "%s:%d: listen_tls needs tls_cert and tls_key", d->listen_tls_loc.file,
            d->listen_tls_loc.line);
}

void config_build(struct build *b)
{
    struct config *cfg = b->cfg;
    struct config_raw *raw = cfg->raw;
    size_t count[SECTION_KIND_COUNT] = {0};
    for (size_t i = 0; i < raw->n_sections; i++)
        if (!raw->sections[i].ignored)
            count[raw->sections[i].kind]++;

    /* The daemon section first: tariffs and programmes check against it. */
    build_singleton(b, SECTION_DAEMON, daemon_key, &cfg->daemon);
    check_backlog(b, &cfg->daemon);
    check_listeners(b, &cfg->daemon);
    build_singleton(b, SECTION_POSTGRES, postgres_key, &cfg->postgres);

    cfg->tenants = xcalloc(count[SECTION_TENANT], sizeof *cfg->tenants);
    cfg->chips = xcalloc(count[SECTION_CHIP], sizeof *cfg->chips);
    cfg->sites = xcalloc(count[SECTION_SITE], sizeof *cfg->sites);
    cfg->clusters = xcalloc(count[SECTION_CLUSTER], sizeof *cfg->clusters);
    cfg->tariffs = xcalloc(count[SECTION_TARIFF], sizeof *cfg->tariffs);
    cfg->programmes = xcalloc(count[SECTION_PROGRAMME], sizeof *cfg->programmes);

    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored || s->kind == SECTION_DAEMON || s->kind == SECTION_POSTGRES)
            continue;
        b->s = s;
        struct raw_entry **entries = entry_list(s);
        size_t n = s->n_entries;
        switch (s->kind) {
        case SECTION_TENANT: {
            static const char *const req[] = {"token_sha256", NULL};
            struct tenant *t = &cfg->tenants[s->object = cfg->n_tenants++];
            t->id = xstrdup(s->name);
            t->loc = s->loc;
            each_entry(b, entries, n, "token_sha256", tenant_key, t);
            require(b, entries, n, req);
            if (!t->name)
                t->name = xstrdup(s->name);
            break;
        }
        case SECTION_CHIP: {
            static const char *const req[] = {"vendor", "domestic", "rated_kw", NULL};
            struct chip *c = &cfg->chips[s->object = cfg->n_chips++];
            c->id = xstrdup(s->name);
            c->loc = s->loc;
            each_entry(b, entries, n, NULL, chip_key, c);
            require(b, entries, n, req);
            break;
        }
        case SECTION_SITE: {
            static const char *const req[] = {"province", "tariff", NULL};
            struct site *st = &cfg->sites[s->object = cfg->n_sites++];
            st->id = xstrdup(s->name);
            st->loc = s->loc;
            each_entry(b, entries, n, NULL, site_key, st);
            require(b, entries, n, req);
            break;
        }
        case SECTION_CLUSTER: {
            static const char *const req[] = {"tenant", "site", "inventory", NULL};
            struct cluster *c = &cfg->clusters[s->object = cfg->n_clusters++];
            c->id = xstrdup(s->name);
            c->loc = s->loc;
            each_entry(b, entries, n, NULL, cluster_key, c);
            require(b, entries, n, req);
            check_cluster(b, entries, n, c);
            break;
        }
        case SECTION_TARIFF:
            add_version(b, build_tariff_version(b, entries, n), s->name);
            break;
        case SECTION_PROGRAMME: {
            static const char *const req[] = {"provinces",          "from", "rate", "basis",
                                              "min_domestic_share", "mode", NULL};
            struct programme *p = &cfg->programmes[s->object = cfg->n_programmes++];
            p->id = xstrdup(s->name);
            p->loc = s->loc;
            each_entry(b, entries, n, NULL, programme_key, p);
            require(b, entries, n, req);
            break;
        }
        default:
            break;
        }
        free(entries);
    }
}
