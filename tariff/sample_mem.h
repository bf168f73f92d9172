/*
 * sample_mem: the memory of one engine's sample buffers (meter.h).
 *
 * A fleet's buffers are many and all hot: every sample appends to one, and
 * a sample's neighbour in the input belongs to another meter. Taken from
 * malloc, they lie in 4 KiB pages all over the heap, so that every append
 * misses the TLB (a page walk, dearer still in a virtual machine) and,
 * while buffers grow, faults a page in. Here they are carved from regions
 * that the kernel is asked to back with 2 MiB pages (MADV_HUGEPAGE; where
 * transparent huge pages are off, it is a pool like any other).
 *
 * A block holds a power of two of samples, from SAMPLE_MEM_MIN (128 bytes)
 * to 1 MiB, cut from a 32 MiB region by halves (a buddy allocator): a block
 * given back joins its other half when that is free too, so the blocks a
 * fleet leaves behind as its buffers double merge into the larger ones it
 * asks for next, and a region wholly free again is unmapped (unless it is
 * the pool's only one). Larger blocks are mapped alone and unmapped when
 * given back. One pool belongs to one engine and is used as the engine is,
 * from one thread at a time.
 *
 * In a sanitizer build every block comes from malloc (SAMPLE_MEM_POOLED is
 * 0), so that AddressSanitizer sees each one on its own.
 */
#ifndef TARIFF_SAMPLE_MEM_H
#define TARIFF_SAMPLE_MEM_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define SAMPLE_MEM_POOLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAMPLE_MEM_POOLED 0
#endif
#endif
#ifndef SAMPLE_MEM_POOLED
#define SAMPLE_MEM_POOLED 1
#endif

struct sample;
struct sample_mem;

#define SAMPLE_MEM_MIN 8 /* samples in the smallest block */

struct sample_mem *sample_mem_new(void);

/* Unmaps the regions, with every block in them given back or not (a block
 * of more than 1 MiB, mapped alone, must have been given back; in a
 * sanitizer build, every block). NULL is a no-op. */
void sample_mem_free(struct sample_mem *mem);

/* A block of cap samples: cap is a power of two, at least SAMPLE_MEM_MIN.
 * Never NULL (out of memory aborts, as xmalloc does). */
struct sample *sample_mem_get(struct sample_mem *mem, size_t cap);

/* Gives back a block that sample_mem_get(mem, cap) returned. v NULL: a
 * no-op. */
void sample_mem_put(struct sample_mem *mem, struct sample *v, size_t cap);

/* Bytes mapped for blocks, in use or free (0 in a sanitizer build). */
size_t sample_mem_mapped(const struct sample_mem *mem);

#endif
