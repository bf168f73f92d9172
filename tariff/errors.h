/*
 * errors: an ordered list of human-readable error messages.
 *
 * Every failure in the core is reported as a message the caller can print,
 * never by exiting. Messages follow PostgreSQL's style: lower case, no
 * trailing period, the location first ("tariffd.conf:42: unknown period
 * "peek" in profile "base"").
 *
 * The list owns its strings; errors_free() releases them. Adding to a list
 * never fails from the caller's point of view: on allocation failure the
 * message is replaced by a fixed "out of memory" marker, so a list that
 * should be non-empty always is.
 */
#ifndef TARIFF_ERRORS_H
#define TARIFF_ERRORS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* More messages than this are counted but not kept: a config with 5000
 * mistakes is better served by its first hundred. */
#define ERRORS_MAX_KEPT 100

struct errors {
    char **msgs;
    size_t n;       /* messages kept */
    size_t dropped; /* messages beyond ERRORS_MAX_KEPT */
};

void errors_add(struct errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void errors_addv(struct errors *e, const char *fmt, va_list ap);
bool errors_any(const struct errors *e);
void errors_free(struct errors *e);

/* A single error for functions that fail at most once. */
struct error {
    char msg[256];
};

void error_set(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
