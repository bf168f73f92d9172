/*
 * alloc: allocation that cannot fail, for tariff/ and the daemon around it.
 *
 * Running out of memory is not an error a caller could report: a request
 * the process cannot hold has no useful answer, so these abort instead of
 * returning NULL. A request for zero bytes gets a real, freeable block, so
 * NULL never means "empty". Every block comes from malloc (or
 * aligned_alloc): free() it.
 *
 * Code that can give up gracefully instead (errors.c drops a message,
 * meter.c keeps a buffer it failed to shrink) calls the C library itself.
 */
#ifndef TARIFF_ALLOC_H
#define TARIFF_ALLOC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static inline void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        abort();
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static inline void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        abort();
    return q;
}

/* xrealloc to n elements of size bytes; a count whose size overflows aborts. */
static inline void *xrealloc_array(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        abort();
    return xrealloc(p, bytes);
}

static inline char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

/* Asks the kernel to back the whole pages of block [p, p + bytes) with
 * huge pages (transparent huge pages, which Debian leaves to this advice):
 * an array of a million meters or keys, reached at random, then costs a
 * TLB miss far less often. Blocks under HUGE_ADVICE_MIN are left alone.
 * Advice only: where it is refused, nothing changes. */
#define HUGE_ADVICE_MIN ((size_t)4 << 20)

static inline void advise_huge(void *p, size_t bytes)
{
    if (bytes < HUGE_ADVICE_MIN)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)p + bytes) & ~(page - 1);
    (void)madvise((void *)from, to - from, MADV_HUGEPAGE);
}

/* xrealloc for an array that may grow large, used_bytes of it in use. At
 * HUGE_ADVICE_MIN and over, the new block is advised (advise_huge) before
 * anything is copied into it: the copy then faults its pages in 2 MiB at
 * a time, not 4 KiB, and on a virtual machine each fault is dear. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

static inline void *xrealloc_huge(void *p, size_t used_bytes, size_t bytes)
{
    if (used_bytes > bytes)
        abort(); /* used_bytes is at most the old size and the new one */
    if (bytes < HUGE_ADVICE_MIN)
        return xrealloc(p, bytes);
    size_t rounded;
    if (__builtin_add_overflow(bytes, HUGE_PAGE_BYTES - 1, &rounded))
        abort();
    rounded &= ~(HUGE_PAGE_BYTES - 1);
    void *q = aligned_alloc(HUGE_PAGE_BYTES, rounded);
    if (!q)
        abort();
    advise_huge(q, rounded);
    if (used_bytes)
        memcpy(q, p, used_bytes);
    free(p);
    return q;
}

/* xrealloc_huge to n elements of size bytes, used of them in use; a count
 * whose size overflows aborts. */
static inline void *xrealloc_huge_array(void *p, size_t used, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        abort();
    return xrealloc_huge(p, used * size, bytes);
}

/* Makes room for `more` elements beyond the `n` used of a growing array
 * `arr` of `cap` allocated ones (at least doubling, so a run of calls
 * costs its elements once). */
#define ARRAY_RESERVE(arr, n, cap, more)                                                           \
    do {                                                                                           \
        if ((more) > (cap) - (n)) {                                                                \
            size_t want_ = (n) + (more);                                                           \
            (cap) = (cap)*2 > want_ ? (cap)*2 : want_;                                             \
            (arr) = xrealloc_array((arr), (cap), sizeof *(arr));                                   \
        }                                                                                          \
    } while (0)

/* Makes room for one more element in a growing array `arr` of `n` used
 * and `cap` allocated elements (doubling, from 8). */
#define ARRAY_RESERVE_ONE(arr, n, cap)                                                             \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap)*2 : 8;                                                           \
            (arr) = xrealloc_array((arr), (cap), sizeof *(arr));                                   \
        }                                                                                          \
    } while (0)

#endif
