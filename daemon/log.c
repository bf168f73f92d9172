#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void log_msg(int priority, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One write per event, so lines from threads never interleave. */
    fprintf(stderr, "<%d>%s\n", priority, line);
}
