#include "loader.h"
#include "tariff/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A config file larger than this is a mistake (a log file, a binary). */
#define MAX_CONFIG_BYTES (16u << 20)

static char *read_file(const char *path, size_t *len, struct errors *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        errors_add(errs, "%s: could not open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_CONFIG_BYTES) {
                errors_add(errs, "%s: larger than %u MiB", path, MAX_CONFIG_BYTES >> 20);
                free(buf);
                buf = NULL;
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                errors_add(errs, "%s: could not read: %s", path, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (buf)
        *len = n;
    else if (!errors_any(errs))
        errors_add(errs, "%s: out of memory", path);
    return buf;
}

static bool parse_file(struct config *cfg, const char *path, bool is_main,
                       struct config_source *src, struct errors *errs)
{
    size_t len;
    char *text = read_file(path, &len, errs);
    if (!text)
        return false;
    config_parse_text(cfg, path, text, len, is_main, errs);
    if (src) {
        src->files = xrealloc(src->files, (src->n + 1) * sizeof *src->files);
        src->files[src->n++] = (struct config_file){xstrdup(path), text, len};
    } else {
        free(text);
    }
    return true;
}

static int is_conf(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Returns whether the directory and every file in it could be read. */
static bool parse_include(struct config *cfg, const char *main_path, struct config_source *src,
                          struct errors *errs)
{
    const char *dir = cfg->daemon.include;
    char path[4096];
    const char *slash = strrchr(main_path, '/');
    if (dir[0] == '/' || !slash)
        snprintf(path, sizeof path, "%s", dir);
    else
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - main_path), main_path, dir);

    struct dirent **names;
    int n = scandir(path, &names, is_conf, by_name);
    if (n < 0) {
        errors_add(errs, "%s:%d: include directory \"%s\" could not be read: %s",
                   cfg->daemon.include_loc.file, cfg->daemon.include_loc.line, path,
                   strerror(errno));
        return false;
    }
    bool read_all = true;
    for (int i = 0; i < n; i++) {
        char file[4096 + 256];
        snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
        read_all &= parse_file(cfg, file, false, src, errs);
        free(names[i]);
    }
    free(names);
    return read_all;
}

struct config *loader_load(const char *path, struct config_source *src, struct errors *errs)
{
    struct config *cfg = config_new();
    bool read_all = parse_file(cfg, path, true, src, errs);
    if (read_all && cfg->daemon.include)
        read_all = parse_include(cfg, path, src, errs);
    /* Finish even after syntax errors, to report every mistake at once; but
     * not with a file missing, which would only add noise ("unknown tariff"
     * for each tariff in the unread file). */
    if (!read_all || !config_finish(cfg, errs) || errors_any(errs)) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct config *loader_build(const struct config_source *src, struct errors *errs)
{
    if (!src->n) {
        errors_add(errs, "no configuration file");
        return NULL;
    }
    struct config *cfg = config_new();
    for (size_t i = 0; i < src->n; i++)
        config_parse_text(cfg, src->files[i].name, src->files[i].text, src->files[i].len, i == 0,
                          errs);
    if (!config_finish(cfg, errs) || errors_any(errs)) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

void config_source_free(struct config_source *src)
{
    for (size_t i = 0; i < src->n; i++) {
        free(src->files[i].name);
        free(src->files[i].text);
    }
    free(src->files);
    memset(src, 0, sizeof *src);
}
