/*
 * html: a growing text buffer for writing an HTML page, with escaping.
 *
 * Every string that did not come from a literal in the code (a tenant's
 * name, a cluster id, a tariff label, an error text) goes through
 * html_text, which escapes & < > " and ' so it is safe both as element
 * content and inside a double- or single-quoted attribute. html_raw and
 * html_printf write markup as it is: their format strings and arguments are
 * the code's own (numbers, literal tags), never data.
 *
 * The buffer owns its bytes (html_free); it is always NUL-terminated.
 * Allocation cannot fail (tariff/alloc.h aborts).
 */
#ifndef DAEMON_HTML_H
#define DAEMON_HTML_H

#include <stddef.h>

struct html {
    char *buf;
    size_t len, cap;
};

void html_raw(struct html *h, const char *markup);
void html_printf(struct html *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s with & < > " ' escaped as character references. */
void html_text(struct html *h, const char *s);

void html_free(struct html *h);

#endif
