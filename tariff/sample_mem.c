#include "sample_mem.h"

#include "alloc.h"
#include "meter.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

static bool valid_cap(size_t cap)
{
    return cap >= SAMPLE_MEM_MIN && (cap & (cap - 1)) == 0;
}

#if SAMPLE_MEM_POOLED

#define REGION    ((size_t)32 << 20)
#define MIN_BLOCK (SAMPLE_MEM_MIN * sizeof(struct sample)) /* 128 bytes */
/* Orders: a block of order k is MIN_BLOCK << k bytes; TOP is a region. */
#define TOP 18
/* Blocks up to this order (1 MiB) come from regions; larger ones are
 * mapped alone. */
#define MAX_POOLED 13

struct free_block {
    struct free_block *next, *prev;
};

struct region {
    char *base; /* REGION bytes, aligned to REGION */
    /* Per MIN_BLOCK of the region: k + 1 where a free block of order k
     * starts, 0 elsewhere (in use, or inside a larger free block). */
    uint8_t *free_order;
};

struct sample_mem {
    struct free_block *free[TOP + 1]; /* per order, doubly linked */
    struct region *regions;
    size_t n_regions, cap_regions;
    size_t mapped;
};

/* bytes of fresh memory aligned to `align` (a multiple of HUGE_PAGE_BYTES),
 * which the kernel is asked to back with huge pages. */
static void *map_aligned(size_t bytes, size_t align)
{
    size_t len = bytes + align;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    char *at = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (at > p)
        munmap(p, (size_t)(at - p));
    size_t after = (size_t)(p + len - (at + bytes));
    if (after > 0)
        munmap(at + bytes, after);
    /* Advice only: without transparent huge pages it fails, harmlessly. */
    (void)madvise(at, bytes, MADV_HUGEPAGE);
    return at;
}

static unsigned order_of(size_t cap)
{
    return (unsigned)__builtin_ctzll(cap / SAMPLE_MEM_MIN);
}

static struct region *region_of(struct sample_mem *mem, const void *p)
{
    char *base = (char *)((uintptr_t)p & ~(uintptr_t)(REGION - 1));
    for (size_t i = 0; i < mem->n_regions; i++)
        if (mem->regions[i].base == base)
            return &mem->regions[i];
    abort(); /* not a block of this pool */
}

static size_t slot_of(const struct region *r, const void *p)
{
    return (size_t)((const char *)p - r->base) / MIN_BLOCK;
}

static void push_free(struct sample_mem *mem, struct region *r, void *p, unsigned k)
{
    struct free_block *f = p;
    f->prev = NULL;
    f->next = mem->free[k];
    if (f->next)
        f->next->prev = f;
    mem->free[k] = f;
    r->free_order[slot_of(r, p)] = (uint8_t)(k + 1);
}

static void unlink_free(struct sample_mem *mem, struct region *r, struct free_block *f, unsigned k)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        mem->free[k] = f->next;
    if (f->next)
        f->next->prev = f->prev;
    r->free_order[slot_of(r, f)] = 0;
}

static void new_region(struct sample_mem *mem)
{
    if (mem->n_regions == mem->cap_regions) {
        mem->cap_regions = mem->cap_regions ? 2 * mem->cap_regions : 4;
        mem->regions = xrealloc_array(mem->regions, mem->cap_regions, sizeof *mem->regions);
    }
    struct region *r = &mem->regions[mem->n_regions++];
    r->base = map_aligned(REGION, REGION);
    r->free_order = xcalloc(REGION / MIN_BLOCK, 1);
    mem->mapped += REGION;
    push_free(mem, r, r->base, TOP);
}

/* A region wholly free again is unmapped, unless it is the only one. */
static void drop_region(struct sample_mem *mem, struct region *r)
{
    unlink_free(mem, r, (struct free_block *)r->base, TOP);
    munmap(r->base, REGION);
    free(r->free_order);
    mem->mapped -= REGION;
    *r = mem->regions[--mem->n_regions];
}

struct sample_mem *sample_mem_new(void)
{
    return xcalloc(1, sizeof(struct sample_mem));
}

void sample_mem_free(struct sample_mem *mem)
{
    if (!mem)
        return;
    for (size_t i = 0; i < mem->n_regions; i++) {
        munmap(mem->regions[i].base, REGION);
        free(mem->regions[i].free_order);
    }
    free(mem->regions);
    free(mem);
}

size_t sample_mem_mapped(const struct sample_mem *mem)
{
    return mem->mapped;
}

struct sample *sample_mem_get(struct sample_mem *mem, size_t cap)
{
    if (!valid_cap(cap))
        abort();
    unsigned k = order_of(cap);
    if (k > MAX_POOLED) {
        size_t bytes = cap * sizeof(struct sample);
        mem->mapped += bytes;
        return map_aligned(bytes, HUGE_PAGE_BYTES);
    }
    unsigned j = k;
    while (j <= TOP && !mem->free[j])
        j++;
    if (j > TOP) {
        new_region(mem);
        j = TOP;
    }
    struct free_block *f = mem->free[j];
    struct region *r = region_of(mem, f);
    unlink_free(mem, r, f, j);
    /* Split down to order k: each upper half waits on its order's list. */
    while (j > k) {
        j--;
        push_free(mem, r, (char *)f + (MIN_BLOCK << j), j);
    }
    return (struct sample *)f;
}

void sample_mem_put(struct sample_mem *mem, struct sample *v, size_t cap)
{
    if (!v)
        return;
    if (!valid_cap(cap))
        abort();
    unsigned k = order_of(cap);
    if (k > MAX_POOLED) {
        size_t bytes = cap * sizeof(struct sample);
        munmap(v, bytes);
        mem->mapped -= bytes;
        return;
    }
    struct region *r = region_of(mem, v);
    char *p = (char *)v;
    /* Merged with its buddy for as long as the buddy is free and whole. */
    while (k < TOP) {
        size_t off = (size_t)(p - r->base);
        char *buddy = r->base + (off ^ (MIN_BLOCK << k));
        if (r->free_order[slot_of(r, buddy)] != k + 1)
            break;
        unlink_free(mem, r, (struct free_block *)buddy, k);
        if (buddy < p)
            p = buddy;
        k++;
    }
    push_free(mem, r, p, k);
    if (k == TOP && mem->n_regions > 1)
        drop_region(mem, r);
}

#else

struct sample_mem {
    size_t mapped; /* always 0: every block is malloc's */
};

struct sample_mem *sample_mem_new(void)
{
    return xcalloc(1, sizeof(struct sample_mem));
}

void sample_mem_free(struct sample_mem *mem)
{
    free(mem);
}

size_t sample_mem_mapped(const struct sample_mem *mem)
{
    return mem->mapped;
}

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

#endif
