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

/* NULL with errs filled when any file cannot be read or the config is
 * invalid. */
struct config *loader_load(const char *path, struct errors *errs);

#endif
