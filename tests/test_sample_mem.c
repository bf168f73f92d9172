/*
 * Unit tests for the memory of sample buffers (tariff/sample_mem.c) and the
 * buffers on it (tariff/meter.c): blocks never overlap and keep what was
 * written in them, a block given back is reused for its size, a region's
 * rest is not wasted, large blocks are mapped alone and unmapped, and a
 * buffer keeps its samples in order through growth, inserts, drops and the
 * shrink of a quiet meter.
 *
 * In a sanitizer build every block comes from malloc (so that ASan sees
 * each one): the tests of where a block lies or what is mapped are left
 * out there; those of contents are not.
 */
#include "meter.h"
#include "sample_mem.h"

#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIB             ((size_t)1 << 20)
#define SAMPLES_PER_MIB (MIB / sizeof(struct sample))

static void fill(struct sample *v, size_t cap, int64_t tag)
{
    for (size_t i = 0; i < cap; i++)
        v[i] = (struct sample){tag * 1000000 + (int64_t)i, (double)tag};
}

/* Checked in a plain loop, then asserted once: each passing assertion of
 * Check costs a message to its parent process. */
static void check_filled(const struct sample *v, size_t cap, int64_t tag)
{
    size_t bad = cap;
    for (size_t i = 0; i < cap && bad == cap; i++)
        if (v[i].ts_ns != tag * 1000000 + (int64_t)i || v[i].value != (double)tag)
            bad = i;
    ck_assert_msg(bad == cap, "block %lld: sample %zu was overwritten", (long long)tag, bad);
}

START_TEST(test_blocks_of_every_size_keep_their_contents)
{
    struct sample_mem *mem = sample_mem_new();
    struct sample *v[64];
    size_t caps[64];
    for (int i = 0; i < 64; i++) {
        caps[i] = (size_t)SAMPLE_MEM_MIN << (i % 12);
        v[i] = sample_mem_get(mem, caps[i]);
        fill(v[i], caps[i], i);
    }
    for (int i = 0; i < 64; i++)
        check_filled(v[i], caps[i], i);
    for (int i = 0; i < 64; i += 2)
        sample_mem_put(mem, v[i], caps[i]);
    for (int i = 0; i < 64; i += 2) {
        v[i] = sample_mem_get(mem, caps[i]);
        fill(v[i], caps[i], 100 + i);
    }
    for (int i = 0; i < 64; i++) {
        check_filled(v[i], caps[i], i % 2 ? i : 100 + i);
        sample_mem_put(mem, v[i], caps[i]);
    }
    sample_mem_free(mem);
}
END_TEST

START_TEST(test_a_block_given_back_is_the_next_of_its_size)
{
    if (!SAMPLE_MEM_POOLED)
        return;
    struct sample_mem *mem = sample_mem_new();
    struct sample *a = sample_mem_get(mem, 64);
    struct sample *b = sample_mem_get(mem, 64); /* a's other half, held */
    sample_mem_put(mem, a, 64);
    ck_assert_ptr_eq(sample_mem_get(mem, 64), a);
    ck_assert_ptr_ne(sample_mem_get(mem, 64), a);
    sample_mem_put(mem, b, 64);
    sample_mem_free(mem);
}
END_TEST

/* A region is cut by halves: one block of every size from 128 bytes to
 * 1 MiB, then 31 of 1 MiB, fill it to the byte, with nothing wasted and no
 * second region. */
START_TEST(test_a_region_is_cut_without_waste)
{
    if (!SAMPLE_MEM_POOLED)
        return;
    struct sample_mem *mem = sample_mem_new();
    struct sample *v[64];
    size_t caps[64], n = 0;
    for (size_t cap = SAMPLE_MEM_MIN; cap < SAMPLES_PER_MIB; cap *= 2)
        caps[n++] = cap;
    caps[n++] = SAMPLE_MEM_MIN; /* with the first, 1 MiB in all */
    for (int i = 0; i < 31; i++)
        caps[n++] = SAMPLES_PER_MIB;
    for (size_t i = 0; i < n; i++) {
        v[i] = sample_mem_get(mem, caps[i]);
        fill(v[i], caps[i], (int64_t)i);
    }
    ck_assert_uint_eq(sample_mem_mapped(mem), 32 * MIB);
    for (size_t i = 0; i < n; i++)
        check_filled(v[i], caps[i], (int64_t)i);
    sample_mem_get(mem, SAMPLE_MEM_MIN); /* the region is full */
    ck_assert_uint_eq(sample_mem_mapped(mem), 64 * MIB);
    sample_mem_free(mem);
}
END_TEST

/* Two halves given back are one block again: the next block of twice
 * their size is where they were. */
START_TEST(test_buddies_given_back_merge)
{
    if (!SAMPLE_MEM_POOLED)
        return;
    struct sample_mem *mem = sample_mem_new();
    struct sample *a = sample_mem_get(mem, 64);
    struct sample *b = sample_mem_get(mem, 64);
    struct sample *c = sample_mem_get(mem, 64);
    ck_assert_ptr_eq(b, a + 64); /* the other half of a's 128 */
    sample_mem_put(mem, a, 64);
    ck_assert_ptr_ne(sample_mem_get(mem, 128), a); /* b is in use: no merge */
    sample_mem_put(mem, b, 64);
    ck_assert_ptr_eq(sample_mem_get(mem, 128), a);
    sample_mem_put(mem, c, 64);
    sample_mem_free(mem);
}
END_TEST

/* A fleet whose buffers double together leaves a block of every smaller
 * size behind per meter: merged, they hold the larger blocks that come
 * next, and 24 MiB of buffers take one region, where blocks waiting on
 * free lists for their own size alone would take two. */
START_TEST(test_a_fleet_growing_together_reuses_what_it_leaves)
{
    struct sample_mem *mem = sample_mem_new();
    enum { METERS = 1500 };
    static struct sample_buf b[METERS];
    for (int i = 0; i < 1024; i++)
        for (int m = 0; m < METERS; m++)
            sample_buf_append(mem, &b[m], (struct sample){i, m});
    if (SAMPLE_MEM_POOLED)
        ck_assert_uint_eq(sample_mem_mapped(mem), 32 * MIB);
    size_t bad = 0;
    for (int m = 0; m < METERS; m++)
        for (size_t i = 0; i < 1024; i++)
            bad +=
                sample_buf_get(&b[m], i).ts_ns != (int64_t)i || sample_buf_get(&b[m], i).value != m;
    ck_assert_uint_eq(bad, 0);
    for (int m = 0; m < METERS; m++)
        sample_buf_free(mem, &b[m]);
    sample_mem_free(mem);
}
END_TEST

/* A region wholly free again goes back to the kernel, unless it is the
 * pool's last. */
START_TEST(test_a_region_wholly_free_is_unmapped)
{
    if (!SAMPLE_MEM_POOLED)
        return;
    struct sample_mem *mem = sample_mem_new();
    struct sample *v[33];
    for (int i = 0; i < 33; i++)
        v[i] = sample_mem_get(mem, SAMPLES_PER_MIB);
    ck_assert_uint_eq(sample_mem_mapped(mem), 64 * MIB);
    sample_mem_put(mem, v[32], SAMPLES_PER_MIB);
    ck_assert_uint_eq(sample_mem_mapped(mem), 32 * MIB);
    for (int i = 0; i < 32; i++)
        sample_mem_put(mem, v[i], SAMPLES_PER_MIB);
    ck_assert_uint_eq(sample_mem_mapped(mem), 32 * MIB);
    char *first = (char *)v[0];
    char *again = (char *)sample_mem_get(mem, 2 * SAMPLE_MEM_MIN);
    ck_assert(again >= first && again < first + 32 * MIB);
    sample_mem_free(mem);
}
END_TEST

START_TEST(test_large_blocks_are_mapped_alone_and_unmapped)
{
    struct sample_mem *mem = sample_mem_new();
    size_t cap = 4 * SAMPLES_PER_MIB; /* 4 MiB */
    struct sample *v = sample_mem_get(mem, cap);
    fill(v, cap, 7);
    check_filled(v, cap, 7);
    if (SAMPLE_MEM_POOLED) {
        ck_assert_uint_eq(sample_mem_mapped(mem), 4 * MIB);
        ck_assert_uint_eq((uintptr_t)v % (2 * MIB), 0); /* on a huge page's edge */
    }
    sample_mem_put(mem, v, cap);
    ck_assert_uint_eq(sample_mem_mapped(mem), 0);
    sample_mem_free(mem);
}
END_TEST

START_TEST(test_a_size_not_a_power_of_two_aborts)
{
    struct sample_mem *mem = sample_mem_new();
    sample_mem_get(mem, 24);
}
END_TEST

START_TEST(test_a_size_below_the_smallest_aborts)
{
    struct sample_mem *mem = sample_mem_new();
    sample_mem_get(mem, SAMPLE_MEM_MIN / 2);
}
END_TEST

/* Three meters' buffers take turns, as a fleet's do: each keeps its own
 * samples in order as they grow through every size, take samples in the
 * middle, drop their front and shrink when they go quiet. */
START_TEST(test_buffers_keep_their_samples_through_growth_and_shrink)
{
    struct sample_mem *mem = sample_mem_new();
    struct sample_buf b[3] = {{0}};
    const size_t n = 100000;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            sample_buf_append(mem, &b[k], (struct sample){(int64_t)(10 * i), (double)(k * n + i)});
    for (int k = 0; k < 3; k++) {
        ck_assert_uint_eq(b[k].n, n);
        ck_assert_uint_eq(b[k].cap, 131072);
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++)
            if (sample_buf_get(&b[k], i).ts_ns != (int64_t)(10 * i) ||
                sample_buf_get(&b[k], i).value != (double)(k * n + i))
                bad = i;
        ck_assert_msg(bad == n, "meter %d: sample %zu is wrong", k, bad);
    }
    /* An insert between two samples, a duplicate and a conflict. */
    size_t at;
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -1}, &at), SAMPLE_INSERTED);
    ck_assert_uint_eq(at, 2);
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -1}, &at), SAMPLE_DUPLICATE);
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -2}, &at), SAMPLE_CONFLICT);
    ck_assert_int_eq(sample_buf_get(&b[1], 3).ts_ns, 20);
    ck_assert_uint_eq(b[1].n, n + 1);
    /* Meter 0 goes quiet: all but its last 100 samples age out, and its
     * buffer shrinks to the smallest size that holds them four times. */
    sample_buf_drop_front(mem, &b[0], n - 100);
    ck_assert_uint_eq(b[0].n, 100);
    ck_assert_uint_eq(b[0].cap, 256);
    for (size_t i = 0; i < 100; i++)
        if (sample_buf_get(&b[0], i).ts_ns != (int64_t)(10 * (n - 100 + i)))
            ck_abort_msg("sample %zu is wrong after the drop", i);
    ck_assert_uint_eq(sample_buf_lower_bound(&b[0], 10 * (int64_t)(n - 50)), 50);
    /* The others are untouched by its moves. */
    ck_assert(sample_buf_get(&b[2], n - 1).value == (double)(3 * n - 1));
    sample_buf_drop_front(mem, &b[0], 100);
    ck_assert_uint_eq(b[0].n, 0);
    ck_assert_uint_eq(b[0].cap, SAMPLE_MEM_MIN);
    sample_buf_append(mem, &b[0], (struct sample){5, 5});
    ck_assert_int_eq(sample_buf_get(&b[0], 0).ts_ns, 5);
    for (int k = 0; k < 3; k++) {
        sample_buf_free(mem, &b[k]);
        ck_assert_ptr_null(b[k].v);
    }
    sample_mem_free(mem);
}
END_TEST

/* Bit for bit: -0.0 is not 0.0, and one NaN is not another. */
static bool same_sample(struct sample a, struct sample b)
{
    return a.ts_ns == b.ts_ns && memcmp(&a.value, &b.value, sizeof a.value) == 0;
}

#define SEC ((int64_t)1000000000)

/* Telemetry as it usually comes, whole seconds and a few decimals, is
 * kept in 8 bytes a sample: 1,024 samples take a 8 KiB block. */
START_TEST(test_whole_seconds_and_cents_pack_in_8_bytes)
{
    struct sample_mem *mem = sample_mem_new();
    struct sample_buf b = {0};
    for (int i = 0; i < 1024; i++)
        sample_buf_append(mem, &b, (struct sample){1764518400 * SEC + 10 * i * SEC, 1467.91 + i});
    ck_assert_int_eq(b.unit, SAMPLES_SECONDS);
    ck_assert_int_eq(b.decimals, 2); /* 1467.91: 146791 hundredths */
    ck_assert_uint_eq(b.cap, 1024);
    if (SAMPLE_MEM_POOLED) /* 1,024 x 8 bytes: a 8 KiB block, the rest of the region free */
        ck_assert_uint_eq(sample_mem_mapped(mem), 32 * MIB);
    for (int i = 0; i < 1024; i++)
        ck_assert(same_sample(sample_buf_get(&b, i),
                              (struct sample){1764518400 * SEC + 10 * i * SEC, 1467.91 + i}));
    ck_assert_int_eq(sample_buf_ts(&b, 1023), 1764518400 * SEC + 10230 * SEC);
    sample_buf_free(mem, &b);
    sample_mem_free(mem);
}
END_TEST

/* A sample finer than the buffer's unit, or with more decimals, repacks
 * every sample in a finer unit or with more decimals; one that cannot be
 * packed at all (a nanosecond, a value of 1e12) makes the buffer wide. An
 * empty buffer packs again from its next sample. */
START_TEST(test_a_sample_that_does_not_fit_repacks_or_widens)
{
    struct sample_mem *mem = sample_mem_new();
    struct sample_buf b = {0};
    struct sample want[6] = {
        {100 * SEC, 5},     {110 * SEC, 6.5},      {120 * SEC + 250000000, 7.25},
        {130 * SEC, 8.125}, {140 * SEC + 1000, 9}, {150 * SEC + 1, 1e12},
    };
    sample_buf_append(mem, &b, want[0]);
    ck_assert_int_eq(b.unit, SAMPLES_SECONDS);
    ck_assert_int_eq(b.decimals, 0);
    sample_buf_append(mem, &b, want[1]);
    ck_assert_int_eq(b.decimals, 1);
    sample_buf_append(mem, &b, want[2]);
    ck_assert_int_eq(b.unit, SAMPLES_MILLIS);
    ck_assert_int_eq(b.decimals, 2);
    sample_buf_append(mem, &b, want[3]);
    ck_assert_int_eq(b.decimals, 3);
    sample_buf_append(mem, &b, want[4]);
    ck_assert_int_eq(b.unit, SAMPLES_MICROS);
    for (int i = 0; i < 5; i++)
        ck_assert(same_sample(sample_buf_get(&b, i), want[i]));
    sample_buf_append(mem, &b, want[5]);
    ck_assert_int_eq(b.unit, SAMPLES_WIDE);
    for (int i = 0; i < 6; i++)
        ck_assert(same_sample(sample_buf_get(&b, i), want[i]));
    sample_buf_drop_front(mem, &b, 6);
    sample_buf_append(mem, &b, (struct sample){200 * SEC, 1.5});
    ck_assert_int_eq(b.unit, SAMPLES_SECONDS);
    ck_assert(same_sample(sample_buf_get(&b, 0), (struct sample){200 * SEC, 1.5}));
    sample_buf_free(mem, &b);
    sample_mem_free(mem);
}
END_TEST

/* The edges of what packs: a value of 2^31 - 1 units does, 2^31 does
 * not; -0.0 and NaN never do (they would come back as 0.0 and another
 * value); a timestamp 2^31 - 1 seconds from the first sample does, one
 * more second does not. Each comes back as it went in. */
START_TEST(test_the_edges_of_what_packs)
{
    struct {
        double first, second;
        int64_t second_ts_s;
        bool packs;
    } cases[] = {
        {1, 2147483647.0, 1, true},  {1, 2147483648.0, 1, false},
        {1, -2147483648.0, 1, true}, {1, -2147483649.0, 1, false},
        {1, 214748364.7, 1, true},   {1, 214748364.75, 1, false}, /* 2 decimals: too big */
        {1, -0.0, 1, false},         {1, NAN, 1, false},
        {1, 0.1 + 0.2, 1, false},    {1, 1e-9, 1, true},
        {1, 2, 2147483647, true},    {1, 2, 2147483648, false},
        {1, 2, -2147483648, true},   {1, 2, -2147483649, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct sample_mem *mem = sample_mem_new();
        struct sample_buf b = {0};
        struct sample s0 = {0, cases[c].first}, s1 = {cases[c].second_ts_s * SEC, cases[c].second};
        size_t at;
        sample_buf_append(mem, &b, s0);
        ck_assert_int_eq(sample_buf_insert(mem, &b, s1, &at), SAMPLE_INSERTED);
        ck_assert_msg((b.unit != SAMPLES_WIDE) == cases[c].packs, "case %zu: unit %d", c, b.unit);
        ck_assert_msg(same_sample(sample_buf_get(&b, at), s1), "case %zu: changed", c);
        ck_assert_msg(same_sample(sample_buf_get(&b, 1 - at), s0), "case %zu: changed", c);
        sample_buf_free(mem, &b);
        sample_mem_free(mem);
    }
    /* Timestamps at both ends of int64: their difference does not fit it
     * (UBSan would tell an overflowing subtraction). */
    struct sample_mem *mem = sample_mem_new();
    struct sample_buf b = {0};
    struct sample lo = {-9223372036 * SEC, 1}, hi = {9223372036 * SEC, 2};
    sample_buf_append(mem, &b, lo);
    sample_buf_append(mem, &b, hi);
    ck_assert_int_eq(b.unit, SAMPLES_WIDE);
    ck_assert(same_sample(sample_buf_get(&b, 0), lo) && same_sample(sample_buf_get(&b, 1), hi));
    sample_buf_free(mem, &b);
    /* Lookups among samples centuries apart: the guess from the last step
     * must not overflow (UBSan) nor land outside the buffer (ASan). */
    for (int k = 0; k < 10; k++)
        sample_buf_append(mem, &b, (struct sample){-9000000000 * SEC + k * SEC, 1});
    sample_buf_append(mem, &b, (struct sample){8000000000 * SEC, 2});
    for (int k = -1; k <= 10; k++)
        ck_assert_uint_eq(sample_buf_lower_bound(&b, -9000000000 * SEC + k * SEC), k < 0 ? 0 : k);
    ck_assert_uint_eq(sample_buf_lower_bound(&b, 8000000000 * SEC), 10);
    ck_assert_uint_eq(sample_buf_lower_bound(&b, INT64_MIN), 0);
    ck_assert_uint_eq(sample_buf_lower_bound(&b, INT64_MAX), 11);
    sample_buf_free(mem, &b);
    /* Nanoseconds apart at today's times, where doubles are 256 ns apart:
     * the guess divides 0 by 0, and must still look inside the buffer. */
    int64_t t = 1764518400 * SEC;
    sample_buf_append(mem, &b, (struct sample){t, 1});
    sample_buf_append(mem, &b, (struct sample){t + 100, 2});
    ck_assert_uint_eq(sample_buf_lower_bound(&b, t + 50), 1);
    ck_assert_uint_eq(sample_buf_lower_bound(&b, t + 100), 1);
    ck_assert_uint_eq(sample_buf_lower_bound(&b, t), 0);
    sample_buf_free(mem, &b);
    for (int k = 0; k < 10; k++)
        sample_buf_append(mem, &b, (struct sample){-9000000000 * SEC + k * SEC, 1});
    sample_buf_append(mem, &b, (struct sample){8000000000 * SEC, 2});
    /* A power segment centuries long carries no energy: all its time in
     * [a, b) is missing (its length does not fit int64). */
    double kwh = 0;
    int64_t missing_ns = 0;
    meter_integrate(&b, false, 0, 900 * SEC, 600 * SEC, &kwh, &missing_ns);
    ck_assert(kwh == 0);
    ck_assert_int_eq(missing_ns, 900 * SEC);
    sample_buf_free(mem, &b);
    sample_mem_free(mem);
}
END_TEST

/* A live meter's buffer is never empty, and its samples move on in time:
 * its base moves with them, so milliseconds still pack after 2^31 of
 * them (24.8 days) from its first sample. Every 10 s for 40 days, with
 * the last 2,160 (6 h) kept. */
START_TEST(test_a_live_buffer_packs_for_ever)
{
    struct sample_mem *mem = sample_mem_new();
    struct sample_buf b = {0};
    int64_t t0 = 1764518400 * SEC + 250000000; /* a quarter second: milliseconds */
    const int per_day = 8640, keep = 2160;
    for (int i = 0; i < 40 * per_day; i++) {
        sample_buf_append(mem, &b, (struct sample){t0 + (int64_t)i * 10 * SEC, 1 + i % 1000});
        if (b.n > (size_t)keep)
            sample_buf_drop_front(mem, &b, b.n - keep);
    }
    ck_assert_int_eq(b.unit, SAMPLES_MILLIS);
    size_t bad = 0;
    for (int k = 0; k < keep; k++) {
        int i = 40 * per_day - keep + k;
        bad += !same_sample(sample_buf_get(&b, k),
                            (struct sample){t0 + (int64_t)i * 10 * SEC, 1 + i % 1000});
    }
    ck_assert_uint_eq(bad, 0);
    sample_buf_free(mem, &b);
    sample_mem_free(mem);
}
END_TEST

static uint64_t rng_next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* A sample from the mix a buffer may meet: whole seconds, milli- and
 * microseconds, nanoseconds, and values with 0 to 12 decimals, huge,
 * tiny, negative, -0.0, NaN, any bit pattern. variety 0 to 7: how much
 * of that (0: milliseconds at most; below 4, values of up to 3 decimals). */
static struct sample random_sample(uint64_t *rng, int64_t around_ns, unsigned variety)
{
    uint64_t r = rng_next(rng);
    int64_t step = (int64_t)(r % 100) - 30;
    int64_t ts = around_ns + step * SEC;
    switch ((r >> 8) % (variety + 1)) {
    case 0:
        ts += (int64_t)(r >> 20) % 1000 * 1000000;
        break;
    case 1:
        ts += (int64_t)(r >> 20) % 1000000 * 1000;
        break;
    case 2:
        ts += (int64_t)(r >> 20) % SEC;
        break;
    case 3:
        ts += (int64_t)(r >> 20) % 3 * ((int64_t)1 << 31) * SEC; /* past 68 years */
        break;
    }
    uint64_t v = rng_next(rng);
    double value;
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
    switch (variety < 4 ? 15 : v % 16) {
    case 0:
        value = -0.0;
        break;
    case 1: {
        uint64_t bits = rng_next(rng);
        memcpy(&value, &bits, sizeof value); /* NaNs, infinities, subnormals */
        break;
    }
    case 2:
        value = (double)(int64_t)(rng_next(rng) >> 1) / pow10[(v >> 8) % 13];
        break;
    default:
        value = (double)((int64_t)((v >> 8) % 4000000) - 1000000) /
                pow10[(v >> 40) % (variety < 4 ? 4 : 13)];
        break;
    }
    return (struct sample){ts, value};
}

/* Against a plain sorted array of struct sample: whatever comes in, in
 * whatever order, with drops from the front between, every sample reads
 * back bit for bit, lookups agree, and duplicates and conflicts are told
 * apart as before. The mix must leave buffers in every format. */
START_TEST(test_packed_buffers_agree_with_plain_samples)
{
    uint64_t rng = 0x9e3779b97f4a7c15u;
    size_t formats[SAMPLES_MICROS + 1] = {0};
    struct sample_mem *mem = sample_mem_new();
    enum { MAX = 600 };
    static struct sample want[MAX];
    for (int round = 0; round < 400; round++) {
        struct sample_buf b = {0};
        size_t n = 0;
        int64_t now_ns = 1764518400 * SEC + (int64_t)(rng_next(&rng) % 1000) * SEC;
        unsigned nasty = (unsigned)(rng_next(&rng) % 4); /* how often a sample is odd */
        unsigned variety = (unsigned)(rng_next(&rng) % 8);
        size_t bad = 0;
        for (int op = 0; op < 500 && !bad; op++) {
            struct sample s = {now_ns + (int64_t)(rng_next(&rng) % 3 + 1) * SEC,
                               (double)(rng_next(&rng) % 500000) / 100};
            if (rng_next(&rng) % 16 < nasty)
                s = random_sample(&rng, now_ns, variety);
            unsigned what = (unsigned)(rng_next(&rng) % 20);
            if (what == 0 && n > 0) {
                size_t k = rng_next(&rng) % (n + 1);
                sample_buf_drop_front(mem, &b, k);
                memmove(want, want + k, (n - k) * sizeof *want);
                n -= k;
                continue;
            }
            if (what == 1 && n > 0) /* a retry or a conflict */
                s = (struct sample){want[rng_next(&rng) % n].ts_ns, s.value};
            size_t i = 0;
            while (i < n && want[i].ts_ns < s.ts_ns)
                i++;
            if (n == MAX && !(i < n && want[i].ts_ns == s.ts_ns))
                continue;
            bool appended = i == n;
            if (appended && what % 2) {
                sample_buf_append(mem, &b, s);
            } else {
                size_t at;
                enum sample_insert got = sample_buf_insert(mem, &b, s, &at);
                enum sample_insert expect =
                    i < n && want[i].ts_ns == s.ts_ns
                        ? (want[i].value == s.value ? SAMPLE_DUPLICATE : SAMPLE_CONFLICT)
                        : SAMPLE_INSERTED;
                ck_assert_int_eq(got, expect);
                ck_assert_uint_eq(at, i);
                if (got != SAMPLE_INSERTED)
                    continue;
            }
            memmove(want + i + 1, want + i, (n - i) * sizeof *want);
            want[i] = s;
            n++;
            if (s.ts_ns > now_ns && s.ts_ns - now_ns < 1000 * SEC) /* not a far one */
                now_ns = s.ts_ns;
            ck_assert_uint_eq(b.n, n);
            for (size_t k = 0; k < n && !bad; k++)
                if (!same_sample(sample_buf_get(&b, k), want[k]) ||
                    sample_buf_ts(&b, k) != want[k].ts_ns)
                    bad = k + 1;
            size_t probe = rng_next(&rng) % (n + 1);
            int64_t t = probe < n ? want[probe].ts_ns - (int64_t)(rng_next(&rng) % 2) : INT64_MAX;
            size_t lb = 0;
            while (lb < n && want[lb].ts_ns < t)
                lb++;
            ck_assert_uint_eq(sample_buf_lower_bound(&b, t), lb);
        }
        ck_assert_msg(!bad, "round %d: sample %zu reads back changed", round, bad - 1);
        formats[b.unit]++;
        sample_buf_free(mem, &b);
    }
    for (int f = 0; f <= SAMPLES_MICROS; f++)
        ck_assert_msg(formats[f] > 0, "no buffer ended in format %d", f);
    sample_mem_free(mem);
}
END_TEST

static Suite *sample_mem_suite(void)
{
    Suite *s = suite_create("sample_mem");
    TCase *tc = tcase_create("blocks");
    tcase_add_test(tc, test_blocks_of_every_size_keep_their_contents);
    tcase_add_test(tc, test_a_block_given_back_is_the_next_of_its_size);
    tcase_add_test(tc, test_a_region_is_cut_without_waste);
    tcase_add_test(tc, test_buddies_given_back_merge);
    tcase_add_test(tc, test_a_fleet_growing_together_reuses_what_it_leaves);
    tcase_add_test(tc, test_a_region_wholly_free_is_unmapped);
    tcase_add_test(tc, test_large_blocks_are_mapped_alone_and_unmapped);
    tcase_add_test_raise_signal(tc, test_a_size_not_a_power_of_two_aborts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_a_size_below_the_smallest_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    tc = tcase_create("buffers");
    tcase_add_test(tc, test_buffers_keep_their_samples_through_growth_and_shrink);
    tcase_add_test(tc, test_whole_seconds_and_cents_pack_in_8_bytes);
    tcase_add_test(tc, test_a_sample_that_does_not_fit_repacks_or_widens);
    tcase_add_test(tc, test_the_edges_of_what_packs);
    tcase_add_test(tc, test_packed_buffers_agree_with_plain_samples);
    tcase_add_test(tc, test_a_live_buffer_packs_for_ever);
    tcase_set_timeout(tc, 60); /* the random test, under ASan on a busy machine */
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sample_mem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
