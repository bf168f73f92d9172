#include "csv.h"

#include "storage/columns.h"

#include <stdio.h>
#include <string.h>

void csv_text(char *buf, size_t *len, const char *s)
{
    if (!s)
        return; /* NULL: an empty field */
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    size_t n = *len;
    if (quote)
        buf[n++] = '"';
    for (const char *p = s; *p && n < CSV_LINE_MAX - 8; p++) {
        if (*p == '"')
            buf[n++] = '"';
        buf[n++] = *p;
    }
    if (quote)
        buf[n++] = '"';
    buf[n] = '\0';
    *len = n;
}

/* Names or values joined with commas, each quoted as RFC 4180 needs (a
 * number never does); NULL as an empty field. */
static size_t line(char *buf, const char *const *v, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) {
            buf[len++] = ',';
            buf[len] = '\0';
        }
        csv_text(buf, &len, v[i]);
    }
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

size_t csv_billing_header(char *buf)
{
    return line(buf, billing_column_names, BILLING_COLUMNS);
}

size_t csv_demand_header(char *buf)
{
    return line(buf, demand_column_names, DEMAND_COLUMNS);
}

size_t csv_billing_row(const struct billing_row *r, char *buf)
{
    struct row_values v;
    billing_values(r, &v);
    return line(buf, v.v, v.n);
}

size_t csv_demand_row(const struct demand_row *r, char *buf)
{
    struct row_values v;
    demand_values(r, &v);
    return line(buf, v.v, v.n);
}
