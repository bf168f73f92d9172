/*
 * civil: calendar dates, local time and the small textual units of the
 * config (durations, sizes, UTC offsets, times of day).
 *
 * Time is always a parameter: instants are Unix seconds (ts_s, UTC), dates
 * are day numbers (days since 1970-01-01 in the proleptic Gregorian
 * calendar) and local time is UTC plus a tariff's utc_offset_s. Nothing here
 * reads a clock or the TZ database.
 */
#ifndef TARIFF_CIVIL_H
#define TARIFF_CIVIL_H

#include <stdbool.h>
#include <stdint.h>

struct civil_date {
    int32_t year;
    int32_t month; /* 1..12 */
    int32_t day;   /* 1..31 */
};

/* Day number of a proleptic Gregorian date (Howard Hinnant's algorithm). */
int32_t civil_to_day(struct civil_date d);
struct civil_date civil_from_day(int32_t day);

/* The first day of the month `day` is in, and of the month after it. */
int32_t civil_month_first(int32_t day);
int32_t civil_month_next(int32_t day);

/* floor(a / b) for b > 0. */
int64_t civil_floor_div(int64_t a, int64_t b);

/* The local day and second-of-day of instant ts_s at the given offset. */
int32_t civil_local_day(int64_t ts_s, int32_t utc_offset_s);
int32_t civil_local_second_of_day(int64_t ts_s, int32_t utc_offset_s);

/* The instant of local midnight starting `day` at the given offset. */
int64_t civil_day_start_ts(int32_t day, int32_t utc_offset_s);

/* Parsers return false with a reason in *why. */
bool civil_parse_date(const char *s, int32_t *day, const char **why);            /* 2025-11-01 */
bool civil_parse_utc_offset(const char *s, int32_t *offset_s, const char **why); /* +08:00 */
bool civil_parse_time_of_day(const char *s, int32_t *second_of_day, const char **why); /* 06:30 */
bool civil_parse_duration(const char *s, int64_t *seconds, const char **why);          /* 15m, 7d */
bool civil_parse_size(const char *s, uint64_t *bytes, const char **why);               /* 32MiB */

/* Formats a day number as YYYY-MM-DD (buf of at least 11 bytes). */
void civil_format_date(int32_t day, char *buf, int size);

#endif
