/*
 * config: the configuration model (docs/design.md section 2) and its parser.
 *
 * The model is plain data: tenants, chips, sites, clusters, tariffs with
 * their dated versions, and subsidy programmes, with every reference
 * resolved to a pointer and every number held exactly (scaled integers; the
 * unit is in each field's name). A config that config_finish() accepted is
 * complete and consistent: every lookup in schedule.h and eligibility.h
 * answers without further checks.
 *
 * Parsing is pure: the caller hands in the text of each file (the main file
 * first, then each included file in sorted order; daemon/loader.c does the
 * reading), and gets back the model or a list of "FILE:LINE: message"
 * errors. inih does the INI tokenising through a reader of ours that counts
 * lines, refuses lines longer than inih's buffer instead of letting it split
 * them, and joins multi-line values with one space.
 *
 * Memory: a struct config owns everything reachable from it (strings,
 * arrays, versions); config_free() releases it all. Pointers into it stay
 * valid for the life of the config, so a reload builds a new config and
 * swaps it in whole.
 */
#ifndef TARIFF_CONFIG_H
#define TARIFF_CONFIG_H

#include "errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most programmes that may cover one province (they can all pay on
 * one row). */
#define PROGRAMMES_PER_PROVINCE 8

enum period {
    PERIOD_DEEP_VALLEY,
    PERIOD_VALLEY,
    PERIOD_FLAT,
    PERIOD_PEAK,
    PERIOD_CRITICAL,
    PERIOD_COUNT
};

const char *period_name(enum period p);

enum durability { DURABILITY_FSYNC, DURABILITY_NONE };
enum demand_basis { DEMAND_MAX_DEMAND, DEMAND_CAPACITY, DEMAND_CONTRACT };
enum programme_basis { PROGRAMME_BASIS_ENERGY, PROGRAMME_BASIS_ENERGY_DEMAND };
enum programme_mode { PROGRAMME_PRO_RATA, PROGRAMME_ALL_OR_NOTHING };

const char *demand_basis_name(enum demand_basis b);

/* Where something was written; file points into struct config's file list. */
struct source_loc {
    const char *file;
    int line;
};

struct daemon_config {
    char **listen; /* "host:port" or "[v6]:port"; may be empty with listen_tls */
    size_t n_listen;
    char **listen_tls; /* served over TLS with tls_cert and tls_key */
    size_t n_listen_tls;
    char **metrics_listen; /* /metrics and the detailed /health; default loopback */
    size_t n_metrics_listen;
    char *tls_cert, *tls_key; /* PEM chain and key (NULL: not set) */
    char *tls_client_ca;      /* NULL: no client certificate asked */
    struct source_loc listen_loc, listen_tls_loc;
    char *state_dir;
    int64_t interval_s;
    int64_t grace_s;
    int64_t max_gap_s;
    int64_t late_window_s;
    int64_t max_future_s;
    uint64_t max_backlog_bytes;
    uint64_t max_body_bytes;
    int64_t max_subsidy_micro; /* fraction at scale 6: 0.5 is 500000 */
    enum durability durability;
    int64_t max_meters_per_tenant; /* a tenant's max_meters overrides it */
    int64_t idle_timeout_s;        /* idle or stalled connections are closed */
    int64_t max_connections;       /* concurrent HTTP connections */
    char *include;                 /* as written; relative to the main file's directory */
    struct source_loc include_loc;
    struct source_loc max_backlog_loc; /* where max_backlog, max_body were set (file NULL: */
    struct source_loc max_body_loc;    /* the default) */
};

struct postgres_config {
    char *conninfo;
    char *schema;
};

struct tenant {
    char *id;
    char *name; /* display name; defaults to id */
    uint8_t (*token_sha256)[32];
    size_t n_tokens;
    int64_t max_meters; /* 0: [daemon] max_meters_per_tenant applies */
    struct source_loc loc;
};

struct chip {
    char *id;
    char *vendor;
    bool domestic;
    int64_t rated_micro_kw;
    bool has_pflops;
    int64_t pflops_micro; /* rated dense BF16 PFLOPS per accelerator: 0.78125 is 781250 */
    struct source_loc loc;
};

struct site {
    char *id;
    char *province;
    struct tariff *tariff;
    struct source_loc loc;
};

struct inventory_item {
    const struct chip *chip;
    int64_t count;
};

/* An inventory in force from local midnight of from_day (site's tariff
 * offset); the undated inventory has from_day INT32_MIN. */
struct inventory {
    int32_t from_day;
    struct inventory_item *items;
    size_t n_items;
    int64_t domestic_micro_kw; /* rated power of domestic chips */
    int64_t total_micro_kw;    /* rated power of all chips; > 0 */
    bool has_pflops;           /* every chip of it has pflops */
    int64_t pflops_micro;      /* then their rated PFLOPS (pflops x count), summed */
    struct source_loc loc;
};

/* A quantity in force from local midnight of from_day (site's tariff
 * offset), as `transformer_kva` and `transformer_kva@DATE` give it; the
 * undated value has from_day INT32_MIN. */
struct dated_micro {
    int32_t from_day;
    int64_t micro;
};

struct cluster {
    char *id;
    const struct tenant *tenant;
    const struct site *site;
    struct inventory *inventories; /* sorted by from_day, first undated */
    size_t n_inventories;
    /* The billed capacity and contract, each undated first, then its dated
     * changes by from_day (a dated one needs the undated one). Look them
     * up by date with eligibility.h. */
    bool has_transformer_kva;
    struct dated_micro *transformer_micro_kva;
    size_t n_transformer_kva;
    bool has_contract_kw;
    struct dated_micro *contract_micro_kw;
    size_t n_contract_kw;
    /* Local dates in service, both inclusive; absent: no limit. */
    bool has_service_from;
    int32_t service_from_day;
    bool has_service_until;
    int32_t service_until_day;
    struct source_loc loc;
};

struct profile_step {
    int32_t start_s; /* second of the local day */
    enum period period;
};

struct profile {
    char *name;
    struct profile_step *steps; /* first at 0, strictly increasing */
    size_t n_steps;
    struct source_loc loc;
};

struct tariff_version {
    const struct tariff *tariff;
    int32_t from_day;  /* local date it takes effect */
    int64_t from_ts_s; /* that local midnight as an instant */
    int32_t utc_offset_s;
    char currency[8];
    bool has_price[PERIOD_COUNT];          /* the periods its profiles use, at least */
    int64_t price_micro_cny[PERIOD_COUNT]; /* CNY per kWh, scale 6, excluding funds */
    int64_t surcharge_micro_cny;           /* CNY per kWh, scale 6 */
    struct profile *profiles;
    size_t n_profiles;
    const struct profile *month_profile[12]; /* jan..dec */
    enum demand_basis demand_basis;
    bool has_demand_kw;
    int64_t demand_kw_micro_cny; /* CNY per kW-month */
    bool has_demand_kva;
    int64_t demand_kva_micro_cny;     /* CNY per kVA-month */
    int64_t contract_threshold_micro; /* 1.05 is 1050000 */
    int64_t contract_factor_micro;    /* x2 is 2000000 */
    bool has_load_factor_rule;
    int64_t load_factor_micro_kwh_per_kva; /* threshold, kWh per kVA in a month */
    int64_t load_factor_fraction_micro;    /* 0.9 is 900000 */
    char *text;  /* the section as hashed: "key = value\n" per key, in file order */
    char *label; /* NAME@YYYY-MM-DD#xxxxxxxx (docs/design.md section 5, tariff_version) */
    struct source_loc loc;
};

struct tariff {
    char *name;
    struct tariff_version **versions; /* sorted by from_day, all one utc_offset */
    size_t n_versions;
};

struct programme {
    char *id;
    char **provinces;
    size_t n_provinces;
    int32_t from_day;
    bool has_until;
    int32_t until_day; /* inclusive */
    int64_t min_domestic_share_micro;
    int64_t rate_micro;
    enum programme_basis basis;
    enum programme_mode mode;
    const struct tenant **tenants; /* allow-list; none means every tenant */
    size_t n_tenants;
    bool has_cap;
    int64_t cap_cny4_per_year; /* CNY at scale 4 */
    struct source_loc loc;
};

struct config_raw; /* parser state between config_parse_text and config_finish */

struct config {
    struct daemon_config daemon;
    struct postgres_config postgres;
    struct tenant *tenants;
    size_t n_tenants;
    struct chip *chips;
    size_t n_chips;
    struct site *sites;
    size_t n_sites;
    struct cluster *clusters; /* in config order */
    size_t n_clusters;
    struct tariff *tariffs;
    size_t n_tariffs;
    size_t n_tariff_versions;
    struct programme *programmes; /* in config order: subsidies stack in it */
    size_t n_programmes;
    char **files; /* names given to config_parse_text, in order */
    size_t n_files;
    const struct cluster **clusters_by_id; /* sorted, for config_find_cluster */
    struct config_raw *raw;
};

/* A new, empty config holding the defaults of docs/design.md section 2. */
struct config *config_new(void);

/* Adds one file's text. file_name appears in error messages; is_main says
 * whether `include` is allowed in it. Errors are appended to errs. */
void config_parse_text(struct config *cfg, const char *file_name, const char *text, size_t len,
                       bool is_main, struct errors *errs);

/* Interprets and cross-checks everything parsed so far. Returns false (with
 * errs non-empty) when the config is unusable. Call once, after the last
 * config_parse_text. */
bool config_finish(struct config *cfg, struct errors *errs);

void config_free(struct config *cfg);

/* Parses a single text as the main file and finishes it: NULL on error. */
struct config *config_from_string(const char *file_name, const char *text, struct errors *errs);

const struct cluster *config_find_cluster(const struct config *cfg, const char *id);
const struct tenant *config_find_tenant(const struct config *cfg, const char *id);

/* The most meters tenant t may have: its max_meters, or the daemon's
 * max_meters_per_tenant. */
int64_t tenant_max_meters(const struct config *cfg, const struct tenant *t);
const struct tariff *config_find_tariff(const struct config *cfg, const char *name);
const struct programme *config_find_programme(const struct config *cfg, const char *id);

#endif
