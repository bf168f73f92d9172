#include "ledger_rows.h"

#include "storage/columns.h"
#include "tariff/alloc.h"
#include "tariff/decimal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NULL_LEN 0xffffffffu

static void reserve(struct ledger_rows *r, size_t n)
{
    if (r->len + n <= r->cap)
        return;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n)
        cap *= 2;
    r->p = xrealloc(r->p, cap);
    r->cap = cap;
}

static void begin(struct ledger_rows *r, enum ledger_kind kind, int n)
{
    reserve(r, 2);
    r->p[r->len++] = (unsigned char)kind;
    r->p[r->len++] = (unsigned char)n;
    r->n++;
}

/* A value with its NUL, so the writer can hand libpq pointers into the
 * buffer; NULL for SQL NULL. */
static void value(struct ledger_rows *r, const char *s)
{
    uint32_t len = s ? (uint32_t)strlen(s) : NULL_LEN;
    reserve(r, sizeof len + (s ? len + 1 : 0));
    memcpy(r->p + r->len, &len, sizeof len);
    r->len += sizeof len;
    if (s) {
        memcpy(r->p + r->len, s, len + 1);
        r->len += len + 1;
    }
}

static void number(struct ledger_rows *r, int64_t v, int scale)
{
    char buf[48];
    decimal_format(v, scale, buf, sizeof buf);
    value(r, buf);
}

static void values(struct ledger_rows *r, const struct row_values *v)
{
    for (int i = 0; i < v->n; i++)
        value(r, v->v[i]);
}

/* The subsidy lines as {names} and {amounts} array literals. */
static void lines(struct ledger_rows *r, const struct paid_line *l, size_t n)
{
    char names[PRICE_MAX_PAID * 2 * 66 + 3] = "{", amounts[PRICE_MAX_PAID * 2 * 24 + 3] = "{";
    size_t a = 1, b = 1;
    for (size_t i = 0; i < n; i++) {
        a += (size_t)snprintf(names + a, sizeof names - a, "%s%s", i ? "," : "", l[i].programme);
        if (i)
            amounts[b++] = ',';
        b += (size_t)decimal_format(l[i].amount_cny4, 4, amounts + b, sizeof amounts - b);
    }
    snprintf(names + a, sizeof names - a, "}");
    snprintf(amounts + b, sizeof amounts - b, "}");
    value(r, names);
    value(r, amounts);
}

void ledger_add_billing(struct ledger_rows *r, const struct billing_row *row)
{
    struct row_values v;
    billing_values(row, &v);
    begin(r, LEDGER_BILLING, BILLING_COLUMNS + 3);
    values(r, &v);
    number(r, row->year, 0);
    lines(r, row->lines, row->n_lines);
}

void ledger_add_demand(struct ledger_rows *r, const struct demand_row *row)
{
    struct row_values v;
    demand_values(row, &v);
    begin(r, LEDGER_DEMAND, DEMAND_COLUMNS + 3);
    values(r, &v);
    number(r, row->year, 0);
    lines(r, row->lines, row->n_lines);
}

void ledger_add_quarantine(struct ledger_rows *r, const struct engine_sample *s, const char *reason,
                           int64_t received_ns)
{
    begin(r, LEDGER_QUARANTINE, 6);
    value(r, s->cluster);
    value(r, s->meter);
    number(r, s->ts_ns, 0);
    char v[40];
    snprintf(v, sizeof v, "%.17g", s->value);
    value(r, v);
    value(r, s->kind == SAMPLE_COUNTER ? "counter" : "power");
    value(r, reason);
    (void)received_ns; /* received_at defaults to now() at insert */
}

void ledger_add_release(struct ledger_rows *r, int64_t quarantined_id, int64_t released_ns)
{
    begin(r, LEDGER_RELEASE, 2);
    number(r, quarantined_id, 0);
    number(r, released_ns, 0);
}

bool ledger_next(const struct ledger_rows *r, size_t *offset, struct ledger_row *out)
{
    size_t o = *offset;
    if (o + 2 > r->len)
        return false;
    out->kind = (enum ledger_kind)r->p[o];
    out->n = r->p[o + 1];
    o += 2;
    for (int i = 0; i < out->n; i++) {
        uint32_t len;
        memcpy(&len, r->p + o, sizeof len);
        o += sizeof len;
        if (len == NULL_LEN) {
            out->values[i] = NULL;
        } else {
            out->values[i] = (const char *)r->p + o;
            o += len + 1;
        }
    }
    *offset = o;
    return true;
}

void ledger_rows_free(struct ledger_rows *r)
{
    free(r->p);
    memset(r, 0, sizeof *r);
}
