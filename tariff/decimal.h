/*
 * decimal: exact fixed-point numbers as scaled integers.
 *
 * A value v at scale k is the integer v * 10^k (price_micro_cny is a price at
 * scale 6, a charge in 1e-4 CNY is at scale 4). Parsing accepts exactly what
 * a person writes in a config or a tariff table ("0.7443", "-1", "12500") and
 * refuses anything it would have to round: rounding belongs to the pricing
 * rules, never to the parser. Rounding is half-even everywhere
 * (docs/design.md section 5).
 *
 * Nothing here allocates.
 */
#ifndef TARIFF_DECIMAL_H
#define TARIFF_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DECIMAL_MAX_SCALE 12

/* 10^k for 0 <= k <= 18. */
int64_t decimal_pow10(int k);

/* Parses s ("[+-]digits[.digits]") at the given scale into *out. Returns
 * false with a reason in *why ("has more than 6 decimals", "is not a
 * number", "is out of range") when s is not exactly representable. */
bool decimal_parse(const char *s, int scale, int64_t *out, const char **why);

/* num / den rounded half-even; den != 0. The quotient must fit in int64. */
int64_t decimal_div_half_even(__int128 num, __int128 den);

/* Rescales v from scale `from` down to scale `to` (to <= from), rounding
 * half-even. */
int64_t decimal_rescale_half_even(int64_t v, int from, int to);

/* Formats v at the given scale with exactly `scale` decimals ("0.250000");
 * never "-0". Returns the length written (buf must hold 32 bytes). */
int decimal_format(int64_t v, int scale, char *buf, size_t size);

#endif
