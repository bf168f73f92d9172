/*
 * config_read: step 1 of the config parser (config_private.h): the text
 * of each file into raw sections.
 *
 * inih does the INI tokenising; read_line feeds it one line at a time,
 * counting lines, classifying each exactly as inih will (so that section
 * headers and continuation lines are known) and refusing lines longer than
 * inih's buffer instead of letting it split them. on_key records each key
 * with its line, joins continuation lines with one space, and takes the
 * main file's `include` aside. Nothing here interprets a value.
 */
#include "config_private.h"

#include "civil.h"
#include "utf8.h"

#include <ini.h>

#include <stdlib.h>

static const char *const section_kind_names[SECTION_KIND_COUNT] = {
    "daemon", "postgres", "tenant", "chip", "site", "cluster", "tariff", "programme"};

const char *section_kind_name(enum section_kind k)
{
    return k < SECTION_KIND_COUNT ? section_kind_names[k] : "?";
}

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
    if (s->kind == SECTION_TARIFF) {
        civil_format_date(s->day, date, sizeof date);
        snprintf(buf, sizeof buf, "[tariff %s @ %s]", s->name, date);
    } else if (s->name) {
        snprintf(buf, sizeof buf, "[%s %s]", section_kind_name(s->kind), s->name);
    } else {
        snprintf(buf, sizeof buf, "[%s]", section_kind_name(s->kind));
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
    while (k < SECTION_KIND_COUNT && strcmp(inner, section_kind_names[k]) != 0)
        k++;
    if (k == SECTION_KIND_COUNT) {
        errors_add(r->errs,
                   "%s:%d: unknown section kind \"%s\" (expected daemon, postgres, tenant, chip, "
                   "site, cluster, tariff or programme)",
                   r->file, r->line, inner);
        return;
    }
    s->kind = (enum section_kind)k;
    if (s->kind == SECTION_DAEMON || s->kind == SECTION_POSTGRES) {
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
                   inner, inner, s->kind == SECTION_TARIFF ? " @ YYYY-MM-DD" : "");
        return;
    }
    char *name = rest;
    if (s->kind == SECTION_TARIFF) {
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
                   r->file, r->line, section_kind_names[k], name);
        return;
    }
    s->name = xstrdup(name);
    for (size_t i = 0; i + 1 < raw->n_sections; i++) {
        struct raw_section *o = &raw->sections[i];
        if (o->kind != s->kind || !o->name || strcmp(o->name, s->name) != 0)
            continue;
        if (s->kind == SECTION_TARIFF && o->day != s->day)
            continue;
        if (s->kind == SECTION_TARIFF) {
            char date[16];
            civil_format_date(s->day, date, sizeof date);
            errors_add(r->errs, "%s:%d: tariff \"%s\" version %s is defined twice (first at %s:%d)",
                       r->file, r->line, s->name, date, o->loc.file, o->loc.line);
        } else {
            errors_add(r->errs, "%s:%d: duplicate %s \"%s\" (first defined at %s:%d)", r->file,
                       r->line, section_kind_names[k], s->name, o->loc.file, o->loc.line);
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
    /* Names and values reach PostgreSQL as text (cluster and tenant ids,
     * tariff versions' text), which must be UTF-8. */
    const char *bad = utf8_invalid(p, len);
    if (bad != p + len) {
        errors_add(r->errs, "%s:%d: invalid UTF-8 at column %zu", r->file, r->line,
                   (size_t)(bad - p) + 1);
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
        if (s && s->kind == SECTION_DAEMON && strcmp(key, "include") == 0)
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
    if (s->kind == SECTION_DAEMON && strcmp(key, "include") == 0) {
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

void config_raw_free(struct config_raw *raw)
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
