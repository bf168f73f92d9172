#include "sample_mem.h"

#include "alloc.h"
#include "meter.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define SAMPLE_MEM_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAMPLE_MEM_MALLOC 1
#endif
#endif

#define HUGE_PAGE ((size_t)2 << 20)
#define REGION    ((size_t)32 << 20)
/* Blocks of SAMPLE_MEM_MIN << k samples for k < CLASSES (128 B to 1 MiB)
 * come from regions; larger ones are mapped alone. */
#define CLASSES 14

struct free_block {
    struct free_block *next;
};

struct sample_mem {
    struct free_block *free[CLASSES];
    char *bump, *end; /* the newest region's part not yet carved */
    void **regions;
    size_t n_regions, cap_regions;
    size_t mapped;
};

static bool valid_cap(size_t cap)
{
    return cap >= SAMPLE_MEM_MIN && (cap & (cap - 1)) == 0;
}

struct sample_mem *sample_mem_new(void)
{
    return xcalloc(1, sizeof(struct sample_mem));
}

void sample_mem_free(struct sample_mem *mem)
{
    if (!mem)
        return;
    for (size_t i = 0; i < mem->n_regions; i++)
        munmap(mem->regions[i], REGION);
    free(mem->regions);
    free(mem);
}

size_t sample_mem_mapped(const struct sample_mem *mem)
{
    return mem->mapped;
}

#ifdef SAMPLE_MEM_MALLOC

struct sample *sample_mem_get(struct sample_mem *mem, size_t cap)
{
    (void)mem;
    if (!valid_cap(cap))
        abort();
    return xrealloc_array(NULL, cap, sizeof(struct sample));
}

void sample_mem_put(struct sample_mem *mem, struct sample *v, size_t cap)
{
    (void)mem;
    if (v && !valid_cap(cap))
        abort();
    free(v);
}

#else

static size_t block_bytes(size_t cap)
{
    return cap * sizeof(struct sample);
}

static unsigned class_of(size_t cap)
{
    return (unsigned)__builtin_ctzll(cap / SAMPLE_MEM_MIN);
}

/* bytes of fresh memory aligned to a huge page, which the kernel is asked
 * to back with huge pages. */
static void *map_huge(size_t bytes)
{
    size_t len = bytes + HUGE_PAGE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    char *at = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (at > p)
        munmap(p, (size_t)(at - p));
    size_t after = (size_t)(p + len - (at + bytes));
    if (after > 0)
        munmap(at + bytes, after);
    /* Advice only: without transparent huge pages it fails, harmlessly. */
    (void)madvise(at, bytes, MADV_HUGEPAGE);
    return at;
}

static void push_free(struct sample_mem *mem, void *block, unsigned k)
{
    struct free_block *f = block;
    f->next = mem->free[k];
    mem->free[k] = f;
}

/* The rest of the newest region goes to the free lists, as blocks of
 * every size its length has a bit for, and a new region is mapped. */
static void new_region(struct sample_mem *mem)
{
    for (unsigned k = CLASSES; k-- > 0;) {
        size_t bytes = block_bytes((size_t)SAMPLE_MEM_MIN << k);
        if ((size_t)(mem->end - mem->bump) >= bytes) {
            push_free(mem, mem->bump, k);
            mem->bump += bytes;
        }
    }
    if (mem->n_regions == mem->cap_regions) {
        mem->cap_regions = mem->cap_regions ? 2 * mem->cap_regions : 8;
        mem->regions = xrealloc_array(mem->regions, mem->cap_regions, sizeof *mem->regions);
    }
    mem->bump = map_huge(REGION);
    mem->end = mem->bump + REGION;
    mem->regions[mem->n_regions++] = mem->bump;
    mem->mapped += REGION;
}

struct sample *sample_mem_get(struct sample_mem *mem, size_t cap)
{
    if (!valid_cap(cap))
        abort();
    size_t bytes = block_bytes(cap);
    unsigned k = class_of(cap);
    if (k >= CLASSES) {
        mem->mapped += bytes;
        return map_huge(bytes);
    }
    if (mem->free[k]) {
        struct free_block *f = mem->free[k];
        mem->free[k] = f->next;
        return (struct sample *)f;
    }
    if ((size_t)(mem->end - mem->bump) < bytes)
        new_region(mem);
    struct sample *v = (struct sample *)mem->bump;
    mem->bump += bytes;
    return v;
}

void sample_mem_put(struct sample_mem *mem, struct sample *v, size_t cap)
{
    if (!v)
        return;
    if (!valid_cap(cap))
        abort();
    unsigned k = class_of(cap);
    if (k >= CLASSES) {
        munmap(v, block_bytes(cap));
        mem->mapped -= block_bytes(cap);
        return;
    }
    push_free(mem, v, k);
}

#endif
