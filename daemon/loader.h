/*
 * loader: reads the configuration files from disk and hands their text to
 * the pure parser in tariff/config.h: the main file, then every "*.conf" in
 * the `include` directory (relative to the main file), sorted by name.
 *
 * The caller owns the returned config (config_free) and the error list.
 */
#ifndef DAEMON_LOADER_H
#define DAEMON_LOADER_H

#include "tariff/config.h"

/* The text of every file a config was built from, in the order parsed:
 * the main file first, then the include directory's files by name. Enough
 * to build the same config again with nothing read from disk: the journal
 * keeps it (a reload replayed after a crash is the reload that happened). */
struct config_file {
    char *name;
    char *text;
    size_t len;
};

struct config_source {
    struct config_file *files;
    size_t n;
};

/* NULL with errs filled when any file cannot be read or the config is
 * invalid. src (may be NULL) receives the texts read, also on failure;
 * the caller frees it with config_source_free. */
struct config *loader_load(const char *path, struct config_source *src, struct errors *errs);

/* The config src describes, with nothing read from disk: NULL with errs
 * filled when it is invalid (or src holds no file). */
struct config *loader_build(const struct config_source *src, struct errors *errs);

void config_source_free(struct config_source *src);

#endif
