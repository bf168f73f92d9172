#include "decimal.h"

#include <stdio.h>

int64_t decimal_pow10(int k)
{
    int64_t p = 1;
    while (k-- > 0)
        p *= 10;
    return p;
}

bool decimal_parse(const char *s, int scale, int64_t *out, const char **why)
{
    static const char *not_number = "is not a number";
    static const char *too_precise[] = {
        "has decimals but must be a whole number",
        "has more than 1 decimal",
        "has more than 2 decimals",
        "has more than 3 decimals",
        "has more than 4 decimals",
        "has more than 5 decimals",
        "has more than 6 decimals",
        "has more than 7 decimals",
        "has more than 8 decimals",
        "has more than 9 decimals",
        "has more than 10 decimals",
        "has more than 11 decimals",
        "has more than 12 decimals",
    };
    const char *p = s;
    bool negative = false;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';

    __int128 v = 0;
    int int_digits = 0, frac_digits = 0;
    const __int128 limit = (__int128)INT64_MAX;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        int_digits++;
        if (v > limit) {
            *why = "is out of range";
            return false;
        }
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (frac_digits == scale) {
                /* Trailing zeros beyond the scale are exact; anything else
                 * would need rounding. */
                if (*p != '0') {
                    *why = too_precise[scale];
                    return false;
                }
                p++;
                continue;
            }
            v = v * 10 + (*p++ - '0');
            frac_digits++;
            if (v > limit) {
                *why = "is out of range";
                return false;
            }
        }
        if (frac_digits == 0 && int_digits == 0) {
            *why = not_number;
            return false;
        }
    }
    if (int_digits == 0 && frac_digits == 0) {
        *why = not_number;
        return false;
    }
    if (*p != '\0') {
        *why = not_number;
        return false;
    }
    for (; frac_digits < scale; frac_digits++) {
        v *= 10;
        if (v > limit) {
            *why = "is out of range";
            return false;
        }
    }
    *out = (int64_t)(negative ? -v : v);
    return true;
}

int64_t decimal_div_half_even(__int128 num, __int128 den)
{
    if (den < 0) {
        num = -num;
        den = -den;
    }
    __int128 q = num / den, r = num % den;
    /* C truncates toward zero; make r non-negative so q is the floor. */
    if (r < 0) {
        q -= 1;
        r += den;
    }
    __int128 twice = 2 * r;
    if (twice > den || (twice == den && (q & 1) != 0))
        q += 1;
    return (int64_t)q;
}

int64_t decimal_rescale_half_even(int64_t v, int from, int to)
{
    if (from <= to)
        return v * decimal_pow10(to - from);
    return decimal_div_half_even(v, decimal_pow10(from - to));
}

int decimal_format(int64_t v, int scale, char *buf, size_t size)
{
    /* Work in unsigned magnitude so INT64_MIN formats correctly. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t unit = (uint64_t)decimal_pow10(scale);
    const char *sign = v < 0 ? "-" : "";
    if (scale == 0)
        return snprintf(buf, size, "%s%llu", sign, (unsigned long long)mag);
    return snprintf(buf, size, "%s%llu.%0*llu", sign, (unsigned long long)(mag / unit), scale,
                    (unsigned long long)(mag % unit));
}
