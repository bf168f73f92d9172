#include "daemon/textbuf.h"

#include "tariff/alloc.h"
#include "tariff/decimal.h"

#include <stdarg.h>
#include <stdio.h>

void textbuf_printf(struct textbuf *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->p = xrealloc(t->p, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

const char *textbuf_signed(int64_t v, int scale, char *buf, size_t size)
{
    char digits[32];
    decimal_format(v, scale, digits, sizeof digits);
    snprintf(buf, size, "%s%s", v > 0 ? "+" : "", digits);
    return buf;
}
