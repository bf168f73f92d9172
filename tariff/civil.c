#include "civil.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int64_t civil_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0)
        q--;
    return q;
}

int32_t civil_to_day(struct civil_date d)
{
    int32_t y = d.year - (d.month <= 2);
    int32_t era = (y >= 0 ? y : y - 399) / 400;
    int32_t yoe = y - era * 400;
    int32_t doy = (153 * (d.month + (d.month > 2 ? -3 : 9)) + 2) / 5 + d.day - 1;
    int32_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

struct civil_date civil_from_day(int32_t day)
{
    int32_t z = day + 719468;
    int32_t era = (z >= 0 ? z : z - 146096) / 146097;
    int32_t doe = z - era * 146097;
    int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int32_t mp = (5 * doy + 2) / 153;
    struct civil_date d;
    d.day = doy - (153 * mp + 2) / 5 + 1;
    d.month = mp < 10 ? mp + 3 : mp - 9;
    d.year = yoe + era * 400 + (d.month <= 2);
    return d;
}

int32_t civil_month_first(int32_t day)
{
    struct civil_date d = civil_from_day(day);
    d.day = 1;
    return civil_to_day(d);
}

int32_t civil_month_next(int32_t day)
{
    struct civil_date d = civil_from_day(day);
    d.day = 1;
    d.month = d.month == 12 ? 1 : d.month + 1;
    d.year += d.month == 1;
    return civil_to_day(d);
}

int32_t civil_local_day(int64_t ts_s, int32_t utc_offset_s)
{
    return (int32_t)civil_floor_div(ts_s + utc_offset_s, 86400);
}

int32_t civil_local_second_of_day(int64_t ts_s, int32_t utc_offset_s)
{
    int64_t local = ts_s + utc_offset_s;
    return (int32_t)(local - civil_floor_div(local, 86400) * 86400);
}

int64_t civil_day_start_ts(int32_t day, int32_t utc_offset_s)
{
    return (int64_t)day * 86400 - utc_offset_s;
}

/* Reads exactly n digits. */
static bool digits(const char *s, int n, int32_t *out)
{
    int32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool is_leap(int32_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool civil_parse_date(const char *s, int32_t *day, const char **why)
{
    static const int32_t mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct civil_date d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &d.year) ||
        !digits(s + 5, 2, &d.month) || !digits(s + 8, 2, &d.day)) {
        *why = "is not a date (expected YYYY-MM-DD)";
        return false;
    }
    if (d.year < 1970 || d.month < 1 || d.month > 12 || d.day < 1 ||
        d.day > mdays[d.month - 1] + (d.month == 2 && is_leap(d.year))) {
        *why = "is not a valid date";
        return false;
    }
    *day = civil_to_day(d);
    return true;
}

bool civil_parse_utc_offset(const char *s, int32_t *offset_s, const char **why)
{
    int32_t h, m;
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' || !digits(s + 1, 2, &h) ||
        !digits(s + 4, 2, &m) || h > 14 || m > 59) {
        *why = "is not a UTC offset (expected +HH:MM or -HH:MM)";
        return false;
    }
    *offset_s = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

bool civil_parse_time_of_day(const char *s, int32_t *second_of_day, const char **why)
{
    int32_t h, m;
    if (strlen(s) != 5 || s[2] != ':' || !digits(s, 2, &h) || !digits(s + 3, 2, &m) || h > 23 ||
        m > 59) {
        *why = "is not a time of day (expected HH:MM, 00:00 to 23:59)";
        return false;
    }
    *second_of_day = h * 3600 + m * 60;
    return true;
}

/* A positive whole number followed by a unit from `units`. */
static bool number_with_unit(const char *s, uint64_t *n, const char **unit)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    *n = v;
    *unit = p;
    return true;
}

bool civil_parse_duration(const char *s, int64_t *seconds, const char **why)
{
    uint64_t n;
    const char *unit;
    int64_t mult = 0;
    if (number_with_unit(s, &n, &unit)) {
        if (strcmp(unit, "s") == 0)
            mult = 1;
        else if (strcmp(unit, "m") == 0)
            mult = 60;
        else if (strcmp(unit, "h") == 0)
            mult = 3600;
        else if (strcmp(unit, "d") == 0)
            mult = 86400;
    }
    if (mult == 0) {
        *why = "is not a duration (expected a whole number with s, m, h or d, like 15m)";
        return false;
    }
    if (n > (uint64_t)(INT64_MAX / 86400 / 1000000000LL)) {
        *why = "is out of range";
        return false;
    }
    *seconds = (int64_t)n * mult;
    return true;
}

bool civil_parse_size(const char *s, uint64_t *bytes, const char **why)
{
    uint64_t n;
    const char *unit;
    uint64_t mult = 0;
    if (number_with_unit(s, &n, &unit)) {
        if (strcmp(unit, "") == 0 || strcmp(unit, "B") == 0)
            mult = 1;
        else if (strcmp(unit, "KiB") == 0)
            mult = 1ULL << 10;
        else if (strcmp(unit, "MiB") == 0)
            mult = 1ULL << 20;
        else if (strcmp(unit, "GiB") == 0)
            mult = 1ULL << 30;
    }
    if (mult == 0) {
        *why = "is not a size (expected a whole number with KiB, MiB or GiB, like 32MiB)";
        return false;
    }
    if (n > UINT64_MAX / mult / 2) {
        *why = "is out of range";
        return false;
    }
    *bytes = n * mult;
    return true;
}

void civil_format_date(int32_t day, char *buf, int size)
{
    struct civil_date d = civil_from_day(day);
    snprintf(buf, (size_t)size, "%04d-%02d-%02d", (int)d.year, (int)d.month, (int)d.day);
}
