/*
 * The config parser works in three steps, so that sections may come in any
 * order and every mistake is reported with the line it is on:
 *
 *   1. config_parse_text(): inih tokenises each file through read_line(),
 *      which counts lines, classifies them exactly as inih will (so it knows
 *      section headers and continuation lines) and refuses over-long ones.
 *      The handler records every key in a raw section with its line.
 *   2. config_finish(), pass one: each raw section becomes its object;
 *      values are parsed, unknown, duplicate and missing keys reported.
 *   3. pass two: references (tenant, site, tariff, chip, province) are
 *      resolved and the cross-section rules checked.
 */
#include "config.h"

#include "alloc.h"
#include "civil.h"
#include "decimal.h"

#include <ini.h>
#include <openssl/evp.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_DAEMON, K_POSTGRES, K_TENANT, K_CHIP, K_SITE, K_CLUSTER, K_TARIFF, K_PROGRAMME };

static const char *const kind_names[] = {"daemon", "postgres", "tenant", "chip",
                                         "site",   "cluster",  "tariff", "programme"};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

static const char *const period_names[PERIOD_COUNT] = {"deep_valley", "valley", "flat", "peak",
                                                       "critical"};

static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};

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

struct raw_entry {
    char *key;
    char *value;
    int line;
};

struct raw_section {
    enum kind kind;
    char *name;   /* NULL for daemon and postgres */
    int32_t day;  /* tariff version date */
    char *title;  /* "[tariff x @ 2025-01-01]", for messages */
    bool ignored; /* a bad or duplicate header: its keys are not checked */
    struct source_loc loc;
    struct raw_entry *entries;
    size_t n_entries;
    size_t object; /* index of the object built from it */
};

struct config_raw {
    struct raw_section *sections;
    size_t n_sections;
    bool unreadable; /* a file stopped early: what was read is incomplete */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* Splits a comma list into trimmed items (modifies s). Returns the count, or
 * -1 when an item is empty. */
static int split_list(char *s, char **items, int max)
{
    int n = 0;
    char *p = s;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        char *item = trim(p);
        if (*item == '\0' || n == max)
            return -1;
        items[n++] = item;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

#define MAX_LIST 256

/* ------------------------------------------------------------------ */
/* Step 1: reading lines and collecting raw sections                   */

struct reader {
    struct config *cfg;
    struct errors *errs;
    const char *file;
    bool is_main;
    const char *p, *end;
    int line;
    bool stop;
    bool have_prev_key; /* mirrors inih's prev_name: continuation allowed */
    bool continuation;  /* the current line continues the previous value */
    bool last_stored;   /* the previous key went into the current section's entries */
    long section;       /* index of the current raw section, -1 before any */
    int syntax_error_line;
};

static const char *pass_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\f' || *s == '\v' || *s == '\r')
        s++;
    return s;
}

/* inih's find_chars_or_comment: the first of chars, or an inline ';'
 * preceded by whitespace, or the end. */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
    bool was_space = false;
    while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static struct raw_section *current_section(struct reader *r)
{
    return r->section < 0 ? NULL : &r->cfg->raw->sections[r->section];
}

static void section_title(struct raw_section *s)
{
    char date[16];
    char buf[160];
    if (s->kind == K_TARIFF) {
        civil_format_date(s->day, date, sizeof date);
        snprintf(buf, sizeof buf, "[tariff %s @ %s]", s->name, date);
    } else if (s->name) {
        snprintf(buf, sizeof buf, "[%s %s]", kind_names[s->kind], s->name);
    } else {
        snprintf(buf, sizeof buf, "[%s]", kind_names[s->kind]);
    }
    s->title = xstrdup(buf);
}

/* A section header: "[kind]", "[kind name]" or "[tariff name @ date]". */
static void begin_section(struct reader *r, const char *header)
{
    struct config_raw *raw = r->cfg->raw;
    raw->sections = xrealloc_array(raw->sections, raw->n_sections + 1, sizeof *raw->sections);
    r->section = (long)raw->n_sections;
    struct raw_section *s = &raw->sections[raw->n_sections++];
    memset(s, 0, sizeof *s);
    s->loc = (struct source_loc){r->file, r->line};
    s->ignored = true;

    char buf[256];
    snprintf(buf, sizeof buf, "%s", header);
    char *inner = trim(buf);
    char *rest = inner + strcspn(inner, " \t");
    if (*rest)
        *rest++ = '\0';
    rest = trim(rest);

    size_t k = 0;
    while (k < N_KINDS && strcmp(inner, kind_names[k]) != 0)
        k++;
    if (k == N_KINDS) {
        errors_add(r->errs,
                   "%s:%d: unknown section kind \"%s\" (expected daemon, postgres, tenant, chip, "
                   "site, cluster, tariff or programme)",
                   r->file, r->line, inner);
        return;
    }
    s->kind = (enum kind)k;
    if (s->kind == K_DAEMON || s->kind == K_POSTGRES) {
        if (*rest) {
            errors_add(r->errs, "%s:%d: section [%s] takes no name", r->file, r->line, inner);
            return;
        }
        s->ignored = false;
        section_title(s);
        return;
    }
    if (*rest == '\0') {
        errors_add(r->errs, "%s:%d: section [%s] needs a name, like [%s NAME]%s", r->file, r->line,
                   inner, inner, s->kind == K_TARIFF ? " @ YYYY-MM-DD" : "");
        return;
    }
    char *name = rest;
    if (s->kind == K_TARIFF) {
        char *at = strchr(rest, '@');
        if (!at) {
            errors_add(r->errs,
                       "%s:%d: tariff \"%s\" needs the date it takes effect, like [tariff %s @ "
                       "YYYY-MM-DD]",
                       r->file, r->line, rest, rest);
            return;
        }
        *at = '\0';
        name = trim(rest);
        const char *date = trim(at + 1), *why;
        if (!civil_parse_date(date, &s->day, &why)) {
            errors_add(r->errs, "%s:%d: tariff version date \"%s\" %s", r->file, r->line, date,
                       why);
            return;
        }
    }
    if (!valid_name(name)) {
        errors_add(r->errs,
                   "%s:%d: invalid %s name \"%s\" (use up to 63 letters, digits, \".\", \"_\" "
                   "and \"-\")",
                   r->file, r->line, kind_names[k], name);
        return;
    }
    s->name = xstrdup(name);
    for (size_t i = 0; i + 1 < raw->n_sections; i++) {
        struct raw_section *o = &raw->sections[i];
        if (o->kind != s->kind || !o->name || strcmp(o->name, s->name) != 0)
            continue;
        if (s->kind == K_TARIFF && o->day != s->day)
            continue;
        if (s->kind == K_TARIFF) {
            char date[16];
            civil_format_date(s->day, date, sizeof date);
            errors_add(r->errs, "%s:%d: tariff \"%s\" version %s is defined twice (first at %s:%d)",
                       r->file, r->line, s->name, date, o->loc.file, o->loc.line);
        } else {
            errors_add(r->errs, "%s:%d: duplicate %s \"%s\" (first defined at %s:%d)", r->file,
                       r->line, kind_names[k], s->name, o->loc.file, o->loc.line);
        }
        return;
    }
    s->ignored = false;
    section_title(s);
}

/* Classifies the line the way inih's ini_parse_stream will, to learn what
 * inih does not tell its handler: section boundaries (so an empty section
 * still exists) and continuation lines (so they are joined, not taken for a
 * repeated key). */
static void classify_line(struct reader *r, const char *line)
{
    r->continuation = false;
    const char *start = pass_ws(line);
    if (*start == '\0' || *start == ';' || *start == '#')
        return;
    if (r->have_prev_key && start > line) {
        r->continuation = true;
        return;
    }
    if (*start == '[') {
        const char *end = find_chars_or_comment(start + 1, "]");
        if (*end != ']') {
            errors_add(r->errs, "%s:%d: section header has no closing \"]\"", r->file, r->line);
            r->syntax_error_line = r->line;
            r->section = -2;
            return;
        }
        const char *after = pass_ws(end + 1);
        if (*after != '\0' && *after != ';' && *after != '#') {
            errors_add(r->errs, "%s:%d: unexpected text after \"]\"", r->file, r->line);
            r->syntax_error_line = r->line;
        }
        char header[256];
        snprintf(header, sizeof header, "%.*s", (int)(end - start - 1), start + 1);
        r->have_prev_key = false;
        begin_section(r, header);
        return;
    }
    const char *end = find_chars_or_comment(start, "=:");
    if (*end != '=' && *end != ':') {
        errors_add(r->errs, "%s:%d: expected \"key = value\", \"[section]\" or a comment", r->file,
                   r->line);
        r->syntax_error_line = r->line;
        return;
    }
    r->have_prev_key = true;
}

static char *read_line(char *str, int num, void *stream)
{
    struct reader *r = stream;
    if (r->stop || r->p >= r->end)
        return NULL;
    const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    const char *line_end = nl ? nl : r->end;
    const char *next = nl ? nl + 1 : r->end;
    size_t len = (size_t)(line_end - r->p);
    const char *p = r->p;
    r->p = next;
    r->line++;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (r->line == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
        p += 3;
        len -= 3;
    }
    if (memchr(p, '\0', len)) {
        errors_add(r->errs, "%s:%d: line contains a NUL byte", r->file, r->line);
        r->stop = true;
        return NULL;
    }
    /* inih's buffer holds num bytes: the line, its newline and a NUL. A
     * longer line would be split in two silently (and newer inih releases
     * drop a line that arrives without its newline). Stop rather than guess
     * what the rest meant. */
    if (len > (size_t)num - 2) {
        errors_add(r->errs, "%s:%d: line is longer than %d bytes", r->file, r->line, num - 2);
        r->stop = true;
        return NULL;
    }
    memcpy(str, p, len);
    str[len] = '\0';
    classify_line(r, str);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static int on_key(void *user, const char *section_name, const char *key, const char *value)
{
    (void)section_name; /* ours comes from classify_line, untruncated */
    struct reader *r = user;
    if (r->section == -2)
        return 1;
    struct raw_section *s = current_section(r);
    if (r->continuation && !r->last_stored) {
        /* The key it continues was refused or taken aside (include). */
        if (s && s->kind == K_DAEMON && strcmp(key, "include") == 0)
            errors_add(r->errs, "%s:%d: include must fit on one line", r->file, r->line);
        return 1;
    }
    if (!r->continuation)
        r->last_stored = false;
    if (!s) {
        errors_add(r->errs, "%s:%d: key \"%s\" is outside any section", r->file, r->line, key);
        return 1;
    }
    if (s->ignored)
        return 1;
    if (r->continuation) {
        struct raw_entry *e = &s->entries[s->n_entries - 1];
        size_t old = strlen(e->value), add = strlen(value);
        e->value = xrealloc(e->value, old + add + 2);
        if (old > 0)
            e->value[old++] = ' ';
        memcpy(e->value + old, value, add + 1);
        return 1;
    }
    if (s->kind == K_DAEMON && strcmp(key, "include") == 0) {
        if (!r->is_main) {
            errors_add(r->errs, "%s:%d: include is only allowed in the main file", r->file,
                       r->line);
            return 1;
        }
        if (r->cfg->daemon.include) {
            errors_add(r->errs, "%s:%d: duplicate key \"include\" in [daemon] (first at %s:%d)",
                       r->file, r->line, r->cfg->daemon.include_loc.file,
                       r->cfg->daemon.include_loc.line);
            return 1;
        }
        if (*value == '\0') {
            errors_add(r->errs, "%s:%d: include needs a directory", r->file, r->line);
            return 1;
        }
        r->cfg->daemon.include = xstrdup(value);
        r->cfg->daemon.include_loc = (struct source_loc){r->file, r->line};
        return 1;
    }
    s->entries = xrealloc_array(s->entries, s->n_entries + 1, sizeof *s->entries);
    s->entries[s->n_entries++] =
        (struct raw_entry){.key = xstrdup(key), .value = xstrdup(value), .line = r->line};
    r->last_stored = true;
    return 1;
}

void config_parse_text(struct config *cfg, const char *file_name, const char *text, size_t len,
                       bool is_main, struct errors *errs)
{
    cfg->files = xrealloc_array(cfg->files, cfg->n_files + 1, sizeof *cfg->files);
    char *file = cfg->files[cfg->n_files++] = xstrdup(file_name);
    struct reader r = {.cfg = cfg,
                       .errs = errs,
                       .file = file,
                       .is_main = is_main,
                       .p = text,
                       .end = text + len,
                       .section = -1};
    int rc = ini_parse_stream(read_line, &r, on_key, &r);
    if (r.stop)
        cfg->raw->unreadable = true;
    if (rc < 0)
        errors_add(errs, "%s: inih could not parse the file (error %d)", file, rc);
    else if (rc > 0 && rc != r.syntax_error_line && !r.stop)
        errors_add(errs, "%s:%d: syntax error", file, rc);
}

/* ------------------------------------------------------------------ */
/* Step 2: building objects from raw sections                          */

struct build {
    struct config *cfg;
    struct errors *errs;
    struct raw_section *s;
    struct raw_entry *e;
};

#define ERR(b, ...) errors_add((b)->errs, __VA_ARGS__)

/* Reports a bad value at the current entry: "FILE:LINE: key "value" why". */
static void bad_value(struct build *b, const char *why)
{
    ERR(b, "%s:%d: %s \"%s\" %s", b->s->loc.file, b->e->line, b->e->key, b->e->value, why);
}

static void bad_entry(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad_entry(struct build *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ERR(b, "%s:%d: %s", b->s->loc.file, b->e->line, msg);
}

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

static void daemon_key(struct build *b, void *obj)
{
    struct daemon_config *d = obj;
    const char *k = b->e->key;
    static const int64_t intervals[] = {300, 600, 900, 1800, 3600};
    if (strcmp(k, "listen") == 0) {
        char *copy = xstrdup(b->e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0) {
            bad_value(b, "has an empty address");
        } else {
            bool ok = true;
            for (int i = 0; i < n && ok; i++)
                if (!valid_listen(items[i])) {
                    bad_entry(b,
                              "listen address \"%s\" is not HOST:PORT (like 127.0.0.1:8086 or "
                              "[::1]:8086)",
                              items[i]);
                    ok = false;
                }
            if (ok) {
                for (size_t i = 0; i < d->n_listen; i++)
                    free(d->listen[i]);
                free(d->listen);
                d->listen = xcalloc((size_t)n, sizeof *d->listen);
                for (int i = 0; i < n; i++)
                    d->listen[i] = xstrdup(items[i]);
                d->n_listen = (size_t)n;
            }
        }
        free(copy);
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
        size(b, &d->max_backlog_bytes);
    } else if (strcmp(k, "max_body") == 0) {
        size(b, &d->max_body_bytes);
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
static void build_singleton(struct build *b, enum kind kind, entry_fn fn, void *obj)
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
                          kind_names[kind], first->line);
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
        char *copy = xstrdup(b->e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0)
            bad_value(b, "has an empty item");
        for (int i = 0; i < n; i++) {
            uint8_t digest[32];
            bool ok = strlen(items[i]) == 64;
            for (int j = 0; ok && j < 32; j++) {
                int hi = hexval(items[i][2 * j]), lo = hexval(items[i][2 * j + 1]);
                ok = hi >= 0 && lo >= 0;
                digest[j] = (uint8_t)(hi << 4 | lo);
            }
            if (!ok) {
                bad_entry(b, "token_sha256 \"%s\" is not a SHA-256 hex digest (64 hex digits)",
                          items[i]);
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
        unknown_key(b); /* tariff is resolved in pass two */
    }
}

/* --- [cluster] ------------------------------------------------------- */

static void cluster_key(struct build *b, void *obj)
{
    struct cluster *c = obj;
    const char *k = b->e->key;
    if (strcmp(k, "transformer_kva") == 0) {
        c->has_transformer_kva = dec_positive(b, 6, &c->transformer_micro_kva);
    } else if (strcmp(k, "contract_kw") == 0) {
        c->has_contract_kw = dec_positive(b, 6, &c->contract_micro_kw);
    } else if (strncmp(k, "inventory@", 10) == 0) {
        int32_t day;
        const char *why;
        if (!civil_parse_date(k + 10, &day, &why))
            bad_entry(b, "inventory date \"%s\" %s", k + 10, why);
    } else if (strcmp(k, "tenant") != 0 && strcmp(k, "site") != 0 && strcmp(k, "inventory") != 0) {
        unknown_key(b);
    }
}

/* --- [tariff NAME @ DATE] --------------------------------------------- */

static bool parse_period(const char *s, enum period *p)
{
    for (int i = 0; i < PERIOD_COUNT; i++)
        if (strcmp(s, period_names[i]) == 0) {
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
            bad_entry(b, "period \"%s\" has both price.%s (line %d) and ratio.%s", period_names[p],
                      period_names[p], tb->price_line[p], period_names[p]);
            continue;
        }
        if (!tb->has_floating || !tb->has_fixed) {
            bad_entry(b, "ratio.%s needs floating and fixed", period_names[p]);
            continue;
        }
        __int128 scaled12 = (__int128)tb->floating_micro_cny * tb->ratio_micro[p] +
                            (__int128)tb->fixed_micro_cny * 1000000;
        int64_t price = decimal_div_half_even(scaled12, 1000000);
        if (price < 0) {
            bad_entry(b, "ratio.%s gives a negative price", period_names[p]);
            continue;
        }
        v->price_micro_cny[p] = price;
        v->has_price[p] = true;
    }
}

static void hash_version(struct tariff_version *v)
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
                p->loc.file, p->loc.line, period_names[per], p->name, period_names[per],
                period_names[per]);
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

/* --- [programme] ----------------------------------------------------- */

static void programme_key(struct build *b, void *obj)
{
    struct programme *p = obj;
    const char *k = b->e->key;
    if (strcmp(k, "provinces") == 0) {
        char *copy = xstrdup(b->e->value), *items[MAX_LIST];
        int n = split_list(copy, items, MAX_LIST);
        if (n < 0)
            bad_value(b, "has an empty item");
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
        unknown_key(b); /* tenants are resolved in pass two */
    }
}

/* ------------------------------------------------------------------ */
/* Step 3: references and cross-section rules                          */

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
            continue; /* reported as a duplicate key in pass one */
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

static int cluster_id_order(const void *a, const void *b)
{
    return strcmp((*(const struct cluster *const *)a)->id, (*(const struct cluster *const *)b)->id);
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

bool config_finish(struct config *cfg, struct errors *errs)
{
    struct config_raw *raw = cfg->raw;
    struct build b = {.cfg = cfg, .errs = errs};
    size_t count[N_KINDS] = {0};
    if (raw->unreadable)
        return false; /* checking a partial file would only add noise */
    for (size_t i = 0; i < raw->n_sections; i++)
        if (!raw->sections[i].ignored)
            count[raw->sections[i].kind]++;

    /* The daemon section first: tariffs and programmes check against it. */
    build_singleton(&b, K_DAEMON, daemon_key, &cfg->daemon);
    build_singleton(&b, K_POSTGRES, postgres_key, &cfg->postgres);

    cfg->tenants = xcalloc(count[K_TENANT], sizeof *cfg->tenants);
    cfg->chips = xcalloc(count[K_CHIP], sizeof *cfg->chips);
    cfg->sites = xcalloc(count[K_SITE], sizeof *cfg->sites);
    cfg->clusters = xcalloc(count[K_CLUSTER], sizeof *cfg->clusters);
    cfg->tariffs = xcalloc(count[K_TARIFF], sizeof *cfg->tariffs);
    cfg->programmes = xcalloc(count[K_PROGRAMME], sizeof *cfg->programmes);

    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored || s->kind == K_DAEMON || s->kind == K_POSTGRES)
            continue;
        b.s = s;
        struct raw_entry **entries = entry_list(s);
        size_t n = s->n_entries;
        switch (s->kind) {
        case K_TENANT: {
            static const char *const req[] = {"token_sha256", NULL};
            struct tenant *t = &cfg->tenants[s->object = cfg->n_tenants++];
            t->id = xstrdup(s->name);
            t->loc = s->loc;
            each_entry(&b, entries, n, "token_sha256", tenant_key, t);
            require(&b, entries, n, req);
            if (!t->name)
                t->name = xstrdup(s->name);
            break;
        }
        case K_CHIP: {
            static const char *const req[] = {"vendor", "domestic", "rated_kw", NULL};
            struct chip *c = &cfg->chips[s->object = cfg->n_chips++];
            c->id = xstrdup(s->name);
            c->loc = s->loc;
            each_entry(&b, entries, n, NULL, chip_key, c);
            require(&b, entries, n, req);
            break;
        }
        case K_SITE: {
            static const char *const req[] = {"province", "tariff", NULL};
            struct site *st = &cfg->sites[s->object = cfg->n_sites++];
            st->id = xstrdup(s->name);
            st->loc = s->loc;
            each_entry(&b, entries, n, NULL, site_key, st);
            require(&b, entries, n, req);
            break;
        }
        case K_CLUSTER: {
            static const char *const req[] = {"tenant", "site", "inventory", NULL};
            struct cluster *c = &cfg->clusters[s->object = cfg->n_clusters++];
            c->id = xstrdup(s->name);
            c->loc = s->loc;
            each_entry(&b, entries, n, NULL, cluster_key, c);
            require(&b, entries, n, req);
            break;
        }
        case K_TARIFF:
            add_version(&b, build_tariff_version(&b, entries, n), s->name);
            break;
        case K_PROGRAMME: {
            static const char *const req[] = {"provinces",          "from", "rate", "basis",
                                              "min_domestic_share", "mode", NULL};
            struct programme *p = &cfg->programmes[s->object = cfg->n_programmes++];
            p->id = xstrdup(s->name);
            p->loc = s->loc;
            each_entry(&b, entries, n, NULL, programme_key, p);
            require(&b, entries, n, req);
            break;
        }
        default:
            break;
        }
        free(entries);
    }

    for (size_t i = 0; i < cfg->n_tariffs; i++) {
        struct tariff *t = &cfg->tariffs[i];
        qsort(t->versions, t->n_versions, sizeof *t->versions, version_order);
        for (size_t j = 0; j < t->n_versions; j++)
            hash_version(t->versions[j]);
    }

    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored)
            continue;
        b.s = s;
        struct raw_entry *e;
        if (s->kind == K_SITE && (e = find_entry(s, "tariff"))) {
            struct site *st = &cfg->sites[s->object];
            st->tariff = (struct tariff *)config_find_tariff(cfg, e->value);
            b.e = e;
            if (!st->tariff)
                bad_entry(&b, "unknown tariff \"%s\" in site \"%s\"", e->value, st->id);
        }
    }
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        if (s->ignored)
            continue;
        b.s = s;
        if (s->kind == K_CLUSTER)
            resolve_cluster(&b, &cfg->clusters[s->object]);
        else if (s->kind == K_PROGRAMME)
            resolve_programme(&b, &cfg->programmes[s->object]);
    }

    /* A row records the programmes that paid on it in a fixed array. */
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
                    ERR(&b, "%s:%d: more than %d programmes in province \"%s\"", p->loc.file,
                        p->loc.line, PROGRAMMES_PER_PROVINCE, province);
        }
    }

    cfg->clusters_by_id = xcalloc(cfg->n_clusters, sizeof *cfg->clusters_by_id);
    for (size_t i = 0; i < cfg->n_clusters; i++)
        cfg->clusters_by_id[i] = &cfg->clusters[i];
    qsort(cfg->clusters_by_id, cfg->n_clusters, sizeof *cfg->clusters_by_id, cluster_id_order);
    return !errors_any(errs);
}

/* ------------------------------------------------------------------ */

struct config *config_new(void)
{
    struct config *cfg = xcalloc(1, sizeof *cfg);
    cfg->raw = xcalloc(1, sizeof *cfg->raw);
    struct daemon_config *d = &cfg->daemon;
    d->listen = xcalloc(1, sizeof *d->listen);
    d->listen[0] = xstrdup("127.0.0.1:8086");
    d->n_listen = 1;
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

static void free_raw(struct config_raw *raw)
{
    if (!raw)
        return;
    for (size_t i = 0; i < raw->n_sections; i++) {
        struct raw_section *s = &raw->sections[i];
        for (size_t j = 0; j < s->n_entries; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
        }
        free(s->entries);
        free(s->name);
        free(s->title);
    }
    free(raw->sections);
    free(raw);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->daemon.n_listen; i++)
        free(cfg->daemon.listen[i]);
    free(cfg->daemon.listen);
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
    free_raw(cfg->raw);
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
