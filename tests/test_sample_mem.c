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
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

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
                sample_buf_at(&b[m], i)->ts_ns != (int64_t)i || sample_buf_at(&b[m], i)->value != m;
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
            if (sample_buf_at(&b[k], i)->ts_ns != (int64_t)(10 * i) ||
                sample_buf_at(&b[k], i)->value != (double)(k * n + i))
                bad = i;
        ck_assert_msg(bad == n, "meter %d: sample %zu is wrong", k, bad);
    }
    /* An insert between two samples, a duplicate and a conflict. */
    size_t at;
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -1}, &at), SAMPLE_INSERTED);
    ck_assert_uint_eq(at, 2);
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -1}, &at), SAMPLE_DUPLICATE);
    ck_assert_int_eq(sample_buf_insert(mem, &b[1], (struct sample){15, -2}, &at), SAMPLE_CONFLICT);
    ck_assert_int_eq(sample_buf_at(&b[1], 3)->ts_ns, 20);
    ck_assert_uint_eq(b[1].n, n + 1);
    /* Meter 0 goes quiet: all but its last 100 samples age out, and its
     * buffer shrinks to the smallest size that holds them four times. */
    sample_buf_drop_front(mem, &b[0], n - 100);
    ck_assert_uint_eq(b[0].n, 100);
    ck_assert_uint_eq(b[0].cap, 256);
    for (size_t i = 0; i < 100; i++)
        if (sample_buf_at(&b[0], i)->ts_ns != (int64_t)(10 * (n - 100 + i)))
            ck_abort_msg("sample %zu is wrong after the drop", i);
    ck_assert_uint_eq(sample_buf_lower_bound(&b[0], 10 * (int64_t)(n - 50)), 50);
    /* The others are untouched by its moves. */
    ck_assert(sample_buf_at(&b[2], n - 1)->value == (double)(3 * n - 1));
    sample_buf_drop_front(mem, &b[0], 100);
    ck_assert_uint_eq(b[0].n, 0);
    ck_assert_uint_eq(b[0].cap, SAMPLE_MEM_MIN);
    sample_buf_append(mem, &b[0], (struct sample){5, 5});
    ck_assert_int_eq(sample_buf_at(&b[0], 0)->ts_ns, 5);
    for (int k = 0; k < 3; k++) {
        sample_buf_free(mem, &b[k]);
        ck_assert_ptr_null(b[k].v);
    }
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
