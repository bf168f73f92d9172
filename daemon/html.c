#include "html.h"

#include "tariff/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void reserve(struct html *h, size_t more)
{
    if (h->len + more + 1 <= h->cap)
        return;
    size_t cap = h->cap ? h->cap : 4096;
    while (cap < h->len + more + 1)
        cap *= 2;
    h->buf = xrealloc(h->buf, cap);
    h->cap = cap;
}

static void append(struct html *h, const char *s, size_t n)
{
    reserve(h, n);
    memcpy(h->buf + h->len, s, n);
    h->len += n;
    h->buf[h->len] = '\0';
}

void html_raw(struct html *h, const char *markup)
{
    append(h, markup, strlen(markup));
}

void html_printf(struct html *h, const char *fmt, ...)
{
    /* Most pieces are short: format into the stack, and only a longer one
     * a second time into the buffer. */
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    if ((size_t)n < sizeof small) {
        append(h, small, (size_t)n);
        return;
    }
    reserve(h, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(h->buf + h->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->len += (size_t)n;
}

void html_text(struct html *h, const char *s)
{
    for (const char *p = s; *p; p++) {
        size_t plain = strcspn(p, "&<>\"'");
        append(h, p, plain);
        p += plain;
        switch (*p) {
        case '&':
            html_raw(h, "&amp;");
            break;
        case '<':
            html_raw(h, "&lt;");
            break;
        case '>':
            html_raw(h, "&gt;");
            break;
        case '"':
            html_raw(h, "&quot;");
            break;
        case '\'':
            html_raw(h, "&#39;");
            break;
        default: /* the end of s */
            return;
        }
    }
}

void html_free(struct html *h)
{
    free(h->buf);
    *h = (struct html){0};
}
