/*
 * config_private: what the three steps of the config parser share. Nothing
 * outside tariff/config*.c includes it.
 *
 * Sections may come in any order and every mistake is reported with the
 * line it is on, so the parser works in three steps, one file each:
 *
 *   1. read (config_read.c, config_parse_text): inih tokenises each file
 *      through our line reader; every key lands in a raw section with its
 *      file and line. Nothing is interpreted yet.
 *   2. build (config_build.c, config_build): each raw section becomes its
 *      object; values are parsed with their units, unknown, duplicate and
 *      missing keys reported.
 *   3. resolve (config_resolve.c, config_resolve): references (tenant,
 *      site, tariff, chip, province) become pointers, tariff versions are
 *      sorted and labelled, and the cross-section rules are checked.
 *
 * config.c's config_finish runs steps 2 and 3, once, after the last file.
 *
 * Memory: the raw sections belong to the config (cfg->raw) and hold their
 * own copies of every string; config_free releases them with the model.
 */
#ifndef TARIFF_CONFIG_PRIVATE_H
#define TARIFF_CONFIG_PRIVATE_H

#include "alloc.h"
#include "config.h"
#include "errors.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum section_kind {
    SECTION_DAEMON,
    SECTION_POSTGRES,
    SECTION_TENANT,
    SECTION_CHIP,
    SECTION_SITE,
    SECTION_CLUSTER,
    SECTION_TARIFF,
    SECTION_PROGRAMME,
    SECTION_KIND_COUNT
};

/* As written in a header: "daemon", "tariff", ... */
const char *section_kind_name(enum section_kind k);

/* ------------------------------------------------------------------ */
/* Step 1's output: raw sections                                       */

struct raw_entry {
    char *key;
    char *value;
    int line;
};

struct raw_section {
    enum section_kind kind;
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

/* Frees the raw sections with everything in them (config_read.c). */
void config_raw_free(struct config_raw *raw);

/* ------------------------------------------------------------------ */
/* Steps 2 and 3: where they are, and how they report                  */

struct build {
    struct config *cfg;
    struct errors *errs;
    struct raw_section *s; /* the section being looked at, for messages */
    struct raw_entry *e;   /* and the entry */
};

#define ERR(b, ...) errors_add((b)->errs, __VA_ARGS__)

/* Reports a bad value at the current entry: "FILE:LINE: key "value" why". */
static inline void bad_value(struct build *b, const char *why)
{
    ERR(b, "%s:%d: %s \"%s\" %s", b->s->loc.file, b->e->line, b->e->key, b->e->value, why);
}

static inline void bad_entry(struct build *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void bad_entry(struct build *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ERR(b, "%s:%d: %s", b->s->loc.file, b->e->line, msg);
}

/* Step 2: every raw section becomes its object (config.h's model, with
 * references still unresolved). */
void config_build(struct build *b);

/* Step 3: references, tariff versions in order with their labels, and the
 * rules that span sections. */
void config_resolve(struct build *b);

/* ------------------------------------------------------------------ */
/* The text of names and values                                        */

#define MAX_LIST 256 /* the most items in one comma list */

/* Strips leading and trailing white space, in place. */
static inline char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* A name of a section, profile or province: up to 63 letters, digits,
 * ".", "_" and "-", starting with a letter or digit. */
static inline bool valid_name(const char *s)
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
static inline int split_list(char *s, char **items, int max)
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

#endif
