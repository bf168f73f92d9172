#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char oom_marker[] = "out of memory";

void errors_addv(struct errors *e, const char *fmt, va_list ap)
{
    if (e->n >= ERRORS_MAX_KEPT) {
        e->dropped++;
        return;
    }
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = oom_marker;
    char **grown = realloc(e->msgs, (e->n + 1) * sizeof *grown);
    if (!grown) {
        if (msg != oom_marker)
            free(msg);
        e->dropped++;
        return;
    }
    e->msgs = grown;
    e->msgs[e->n++] = msg;
}

void errors_add(struct errors *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errors_addv(e, fmt, ap);
    va_end(ap);
}

bool errors_any(const struct errors *e)
{
    return e->n > 0 || e->dropped > 0;
}

void errors_free(struct errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->msgs[i] != oom_marker)
            free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
    e->dropped = 0;
}

void error_set(struct error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}
